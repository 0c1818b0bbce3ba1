//! The results as a Markdown table: rows per second, ratios to the reference and the peer, CPU
//! and memory, and what a run would cost on Lambda.

use super::{Measurement, Round};

pub(super) fn rate(rows: u64, m: &Measurement) -> f64 {
    rows as f64 / m.wall_s.max(1e-9)
}

/// The markdown report: throughput, resources, the targets, and the Lambda cost model.
pub fn report(rounds: &[Round], page_records: u64) -> String {
    let mut out = String::from(
        "| rows | what | wall s | rows/s | CSV MB/s | CPU s | peak RSS MB |\n|---:|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rounds {
        let mb = r.csv_bytes as f64 / 1e6;
        let e2e = r.end_to_end();
        let mut lines: Vec<(&str, &Measurement)> = vec![
            ("reference: download (gzip) over loopback", &r.download),
            ("reference: gzip the CSV", &r.gzip),
            ("sfpipe extract", &r.extract),
            ("sfpipe upload", &r.upload),
            ("sfpipe merge (SQLite)", &r.merge),
            ("sfpipe end to end (stages in turn)", &e2e),
        ];
        if let Some(peer) = &r.peer {
            lines.push(("simple-salesforce bulk2 download", peer));
        }
        for (what, m) in lines {
            out.push_str(&format!(
                "| {} | {what} | {:.2} | {:.0} | {:.1} | {:.2} | {:.1} |\n",
                r.rows,
                m.wall_s,
                rate(r.rows, m),
                mb / m.wall_s.max(1e-9),
                m.cpu_s,
                m.peak_rss_mb
            ));
        }
    }
    out.push_str(
        "\n**Targets**\n\n| rows | upload ÷ download | upload ÷ simple-salesforce (rows/s) | \
         upload CPU s per million rows | end to end ÷ simple-salesforce (rows/s) | \
         simple-salesforce RSS ÷ sfpipe RSS | max stage RSS MB |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rounds {
        let e2e = r.end_to_end();
        let versus_peer = |m: &Measurement| {
            r.peer.as_ref().map_or("n/a".to_string(), |p| {
                format!("{:.1}×", rate(r.rows, m) / rate(r.rows, p))
            })
        };
        let memory = r.peer.as_ref().map_or("n/a".to_string(), |p| {
            format!("{:.1}×", p.peak_rss_mb / e2e.peak_rss_mb.max(1e-9))
        });
        out.push_str(&format!(
            "| {} | {:.2} | {} | {:.2} | {} | {memory} | {:.1} |\n",
            r.rows,
            rate(r.rows, &r.upload) / rate(r.rows, &r.download),
            versus_peer(&r.upload),
            r.upload.cpu_s * 1e6 / r.rows.max(1) as f64,
            versus_peer(&e2e),
            e2e.peak_rss_mb
        ));
    }
    out.push_str(&envelope(rounds));
    // The same list prices as `sfpipe cost`.
    let prices = sfpipe_shared::cost::Prices::default();
    out.push_str(&format!(
        "\n**Lambda cost per million rows** (arm64, ${} per GB-second, \
         ${} per request, {:.0} MB per function as template.yaml sets; billed \
         duration taken as the measured wall time; Snowflake's own compute for the merge not \
         included, and the SQLite merge time used as the merge function's duration)\n\n\
         | rows | extract | upload | merge | total |\n|---:|---:|---:|---:|---:|\n",
        prices.lambda_gb_second,
        prices.lambda_request,
        prices.lambda_memory_gb * 1024.0
    ));
    for r in rounds {
        let per_million = 1e6 / r.rows as f64;
        let cost = |m: &Measurement, requests: f64| {
            m.wall_s * per_million * prices.lambda_memory_gb * prices.lambda_gb_second
                + requests * prices.lambda_request
        };
        let uploads = (1e6 / page_records as f64).ceil();
        let (e, u, m) = (
            cost(&r.extract, 3.0 * per_million),
            cost(&r.upload, uploads),
            cost(&r.merge, per_million),
        );
        out.push_str(&format!(
            "| {} | ${e:.6} | ${u:.6} | ${m:.6} | ${:.6} |\n",
            r.rows,
            e + u + m
        ));
    }
    out
}

/// Each stage's longest single handling against its function's timeout (the template's): how
/// much room the envelope leaves at each size.
fn envelope(rounds: &[Round]) -> String {
    let limits = sfpipe_shared::deadline::StageLimits::TEMPLATE;
    let mut out = String::from(
        "\n**The envelope**: each stage's longest single handling (one message, as one Lambda \
         invocation handles it), as a share of its function's timeout, and the process's peak \
         memory against the functions' 256 MB. Here on one machine, over loopback, on the local \
         adapters; the bandwidth model (`--stream-mbps`, `--first-byte-ms`) paces the downloads \
         as a real org's.\n\n\
         | rows | extract (120 s) | upload (300 s) | merge (900 s) | end to end s | peak RSS MB |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rounds {
        let share = |m: &Measurement, timeout: std::time::Duration| {
            format!(
                "{:.1} s, {:.0}%",
                m.longest_invocation_s,
                100.0 * m.longest_invocation_s / timeout.as_secs_f64()
            )
        };
        let e2e = r.end_to_end();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |\n",
            r.rows,
            share(&r.extract, limits.extract.timeout),
            share(&r.upload, limits.upload.timeout),
            share(&r.merge, limits.merge.timeout),
            e2e.wall_s,
            e2e.peak_rss_mb
        ));
    }
    out
}
