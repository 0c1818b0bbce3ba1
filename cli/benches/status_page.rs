//! How long the status page takes to render for a big deployment: 500 objects with 100 runs
//! each, every run merged with a usage record and three parts, as `sfpipe status --last 100` would read them.
//! `cargo bench -p sfpipe-cli --bench status_page`; the target is under a second.

use std::time::Instant;

use chrono::{Duration, Utc};
use sfpipe_shared::contracts::{ContractError, Mode, ObjectName, PartManifest, RunId, Window};
use sfpipe_shared::status::{ObjectStatus, RunStatus, StatusReport};
use sfpipe_shared::usage::RunUsage;

fn report(objects: usize, runs: usize) -> Result<StatusReport, ContractError> {
    let now = Utc::now();
    let mut statuses = Vec::new();
    for o in 0..objects {
        let object = ObjectName::new(format!("Object{o}__c"))?;
        let mut run_statuses = Vec::new();
        for r in 0..runs {
            let until = now - Duration::minutes((runs - r) as i64 * 15);
            let run_id = RunId::new(format!("20261207T{r:06}Z-{o:08x}"))?;
            run_statuses.push(RunStatus {
                run_id: run_id.to_string(),
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
                    .map(|part| PartManifest {
                        object: object.clone(),
                        run_id: run_id.clone(),
                        part,
                        parts: 3,
                        key: format!("runs/{object}/{run_id}/part-{part:05}.csv.gz"),
                        records: 334,
                        bytes: 40_000,
                        crc64nvme: "q3Fq8Gz9Xxk=".into(),
                        stored_at: until,
                    })
                    .collect(),
            });
        }
        statuses.push(ObjectStatus {
            object: object.to_string(),
            watermark: Some(now),
            watermark_unknown: None,
            holes: Vec::new(),
            runs: run_statuses,
            dead_letters: Vec::new(),
        });
    }
    Ok(StatusReport {
        objects: statuses,
        unattributed: Vec::new(),
        queues: Vec::new(),
    })
}

fn main() -> Result<(), ContractError> {
    let report = report(500, 100)?;
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
    Ok(())
}
