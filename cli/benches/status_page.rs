//! How long the status page takes to render for a big deployment: 500 objects with 100 runs
//! each, every run merged with a usage record and three parts, as `sfpipe status --last 100` would read them.
//! `cargo bench -p sfpipe-cli --bench status_page`; the target is under a second.

use std::time::Instant;

use chrono::{Duration, Utc};
use sfpipe_shared::contracts::{Mode, Window};
use sfpipe_shared::status::{ObjectStatus, PartStatus, RunStatus, StatusReport};
use sfpipe_shared::usage::RunUsage;

fn report(objects: usize, runs: usize) -> StatusReport {
    let now = Utc::now();
    let objects = (0..objects)
        .map(|o| ObjectStatus {
            object: format!("Object{o}__c"),
            watermark: Some(now),
            watermark_unknown: None,
            holes: Vec::new(),
            runs: (0..runs)
                .map(|r| {
                    let until = now - Duration::minutes((runs - r) as i64 * 15);
                    RunStatus {
                        run_id: format!("20261207T{r:06}Z-{o:08x}"),
                        mode: Some(Mode::Incremental),
                        window: Some(Window {
                            since: Some(until - Duration::minutes(15)),
                            until,
                        }),
                        stage: "merged",
                        job_id: Some(format!("750{o:06}{r:06}")),
                        parts_stored: 3,
                        parts_expected: Some(3),
                        salesforce_records: Some(1_000),
                        records_in_parts: 1_000,
                        rows_read: Some(1_000),
                        rows_changed: Some(990),
                        started_at: Some(until),
                        merged_at: Some(until + Duration::seconds(40)),
                        seconds: Some(40.0),
                        problem: None,
                        usage: Some(RunUsage::default()),
                        parts: (1..=3)
                            .map(|part| PartStatus {
                                part,
                                records: 334,
                                bytes: 40_000,
                                crc64nvme: "q3Fq8Gz9Xxk=".into(),
                                key: format!("runs/Object{o}__c/{r}/part-{part:05}.csv.gz"),
                            })
                            .collect(),
                    }
                })
                .collect(),
            dead_letters: Vec::new(),
        })
        .collect();
    StatusReport {
        objects,
        unattributed: Vec::new(),
        queues: Vec::new(),
    }
}

fn main() {
    let report = report(500, 100);
    for served in [false, true] {
        let started = Instant::now();
        let page = sfpipe_cli::status_page::render(&report, "bench", Utc::now(), served);
        println!(
            "status page, 500 objects x 100 runs, {}: {:.0} ms, {:.1} MB",
            if served { "served" } else { "static report" },
            started.elapsed().as_secs_f64() * 1000.0,
            page.len() as f64 / 1e6
        );
    }
}
