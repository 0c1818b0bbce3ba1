//! The header line of a gzipped CSV part, read as the part streams past: upload checks it against
//! the run's columns without holding the part (constant memory: at most the first line).

use std::io::Write;

use flate2::write::GzDecoder;

/// A header longer than this is not a Salesforce header (800 fields of 40 characters fit).
const MAX_HEADER_BYTES: usize = 1 << 20;

pub(crate) struct HeaderProbe {
    decoder: GzDecoder<Vec<u8>>,
    done: bool,
}

impl HeaderProbe {
    pub(crate) fn new() -> Self {
        Self {
            decoder: GzDecoder::new(Vec::new()),
            done: false,
        }
    }

    /// Feeds the next gzipped bytes of the part; stops decoding once the first line is in.
    pub(crate) fn feed(&mut self, gzipped: &[u8]) {
        if self.done {
            return;
        }
        if self.decoder.write_all(gzipped).is_err() {
            self.done = true;
            return;
        }
        let seen = self.decoder.get_ref();
        if seen.contains(&b'\n') || seen.len() > MAX_HEADER_BYTES {
            self.done = true;
        }
    }

    /// The header's field names, once the part has streamed past; `None` if there was none.
    pub(crate) fn header(mut self) -> Option<Vec<String>> {
        if !self.done {
            // A part that ends within its first line: take what the stream held.
            let _ = self.decoder.try_finish();
        }
        let seen = self.decoder.get_ref();
        let line = match seen.iter().position(|&b| b == b'\n') {
            Some(end) => &seen[..=end],
            None => &seen[..],
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line);
        let record = reader.records().next()?.ok()?;
        Some(record.iter().map(str::to_string).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn the_first_line_is_read_from_any_chunking() {
        let body = gzip("\"Id\",\"Name\"\n\"001\",\"a,b\"\n");
        for size in [1, 3, 7, body.len()] {
            let mut probe = HeaderProbe::new();
            for chunk in body.chunks(size) {
                probe.feed(chunk);
            }
            assert_eq!(
                probe.header(),
                Some(vec!["Id".into(), "Name".into()]),
                "{size}"
            );
        }
        let mut header_only = HeaderProbe::new();
        header_only.feed(&gzip("\"Id\",\"Name\""));
        assert_eq!(header_only.header(), Some(vec!["Id".into(), "Name".into()]));
        assert_eq!(HeaderProbe::new().header(), None);
    }
}
