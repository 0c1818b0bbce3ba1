//! CRC-64/NVME, the checksum S3 verifies on upload and reports as `x-amz-checksum-crc64nvme`.
//! Both blob stores compute it over the bytes they store, as they store them, and the upload
//! stage records it in each part's manifest. It replaced a SHA-256 of our own, which S3 could not
//! check and which cost far more CPU: a part needs protection from corruption, not tampering.

use base64::Engine;

/// A running CRC-64/NVME.
#[derive(Clone)]
pub struct Crc64Nvme(crc_fast::Digest);

impl Default for Crc64Nvme {
    fn default() -> Self {
        Self(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc64Nvme))
    }
}

impl std::fmt::Debug for Crc64Nvme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64Nvme({})", self.base64())
    }
}

impl Crc64Nvme {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn value(&self) -> u64 {
        self.0.finalize()
    }

    /// As S3 writes it in `x-amz-checksum-crc64nvme`: the eight big-endian bytes in base64.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.value().to_be_bytes())
    }
}

/// The CRC-64/NVME of `bytes`, as S3 writes it.
pub fn crc64nvme(bytes: &[u8]) -> String {
    let mut crc = Crc64Nvme::default();
    crc.update(bytes);
    crc.base64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_value_and_s3s_encoding() {
        // The catalogue's check value of CRC-64/NVME: the CRC of "123456789".
        let mut crc = Crc64Nvme::default();
        crc.update(b"1234");
        crc.update(b"56789");
        assert_eq!(crc.value(), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc64nvme(b"123456789"), "rosUhgp5mIg=");
        // The empty object's checksum, as S3 reports it for a zero-byte object.
        assert_eq!(crc64nvme(b""), "AAAAAAAAAAA=");
    }
}
