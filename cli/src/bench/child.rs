//! One measured role, in a child process of its own: it does its work once and reports its wall
//! time, CPU time and peak RSS as JSON on stdout.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use sfpipe_shared::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, MergeMessage, Mode, ObjectName, RunId,
    UploadMessage, Window,
};
use sfpipe_shared::local::pipeline::LocalPipelineConfig;
use sfpipe_shared::local::{LocalPipeline, NoEvents};
use sfpipe_shared::ports::OutgoingMessage;
use sfpipe_shared::salesforce::{Credentials, JobState, SalesforceClient, SalesforceConfig};
use sfpipe_shared::stages::Stage;

use super::{ChildOptions, Measurement, OBJECT, Role};

/// This process's CPU seconds and peak RSS, from /proc.
pub(super) fn own_usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, peak_kb / 1024.0)
}

/// The child's Salesforce client. It downloads `concurrency` pages at once: deployed, each
/// upload function has a client of its own, and `UploadConcurrency` of them run at once.
pub(super) fn client(
    login_url: &str,
    ca_cert: &Path,
    concurrency: usize,
) -> anyhow::Result<Arc<SalesforceClient>> {
    let defaults = sfpipe_simulator::SimConfig::default();
    Ok(Arc::new(SalesforceClient::new(
        SalesforceConfig {
            extra_ca_pem: Some(std::fs::read(ca_cert)?),
            max_concurrent_downloads: concurrency.max(1),
            ..SalesforceConfig::new(login_url)
        },
        Credentials::ClientCredentials {
            client_id: defaults.client_id,
            client_secret: SecretString::from(defaults.client_secret),
        },
    )?))
}

/// The SOQL of every field Bulk can read (no compound or base64 fields).
pub(super) async fn bench_soql(client: &SalesforceClient) -> anyhow::Result<String> {
    let describe = client.describe(OBJECT).await?;
    let fields: Vec<String> = describe
        .fields
        .iter()
        .filter(|f| !matches!(f.field_type.as_str(), "address" | "location" | "base64"))
        .map(|f| f.name.clone())
        .collect();
    Ok(format!("SELECT {} FROM {OBJECT}", fields.join(", ")))
}

/// A finished Bulk job's result page links.
pub(super) async fn finished_job_pages(client: &SalesforceClient) -> anyhow::Result<Vec<String>> {
    let soql = bench_soql(client).await?;
    let job = client.create_query_job(&soql, true).await?;
    loop {
        let info = client.query_job(&job.id).await?;
        match info.state {
            JobState::JobComplete => break,
            JobState::Failed | JobState::Aborted => {
                bail!("the benchmark's Bulk job ended {:?}", info.state)
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(sfpipe_shared::ports::salesforce::all_result_pages(client, &job.id).await?)
}

/// Runs one role in this process and prints its measurement as JSON.
pub async fn child(options: &ChildOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let salesforce = client(&options.login_url, &options.ca_cert, options.concurrency)?;
    let mut measured = Measurement::default();
    let mut timed = None;
    // The merge's rows are the table's, counted once the time and usage are taken.
    let mut merged_table = None;
    match options.role {
        Role::Download => {
            // What the upload stage transfers: the pages, gzip-encoded, as many at a time.
            let pages = finished_job_pages(&salesforce).await?;
            let downloads = futures::stream::iter(pages.into_iter().map(|page| {
                let salesforce = salesforce.clone();
                async move {
                    let result = salesforce.download_results(&page).await?;
                    let records = result.records.unwrap_or(0);
                    let bytes = result
                        .body
                        .try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
                        .await?;
                    anyhow::Ok((records, bytes))
                }
            }))
            .buffer_unordered(options.concurrency.max(1));
            let totals: Vec<(u64, u64)> = downloads.try_collect().await?;
            measured.rows = totals.iter().map(|t| t.0).sum();
            measured.bytes = totals.iter().map(|t| t.1).sum();
        }
        Role::Gzip => {
            // The CSV's own size, and the time to gzip it (only the compression is timed).
            let pages = finished_job_pages(&salesforce).await?;
            let mut compress = Duration::ZERO;
            for page in pages {
                let result = salesforce.download_results(&page).await?;
                measured.rows += result.records.unwrap_or(0);
                let compressed: Vec<u8> = result
                    .body
                    .try_fold(Vec::new(), |mut all, chunk| async move {
                        all.extend_from_slice(&chunk);
                        Ok(all)
                    })
                    .await?;
                let mut csv = Vec::new();
                if result.gzipped {
                    flate2::read::MultiGzDecoder::new(&compressed[..]).read_to_end(&mut csv)?;
                } else {
                    csv = compressed;
                }
                measured.bytes += csv.len() as u64;
                let start = Instant::now();
                let mut encoder =
                    flate2::write::GzEncoder::new(std::io::sink(), flate2::Compression::default());
                encoder.write_all(&csv)?;
                encoder.finish()?;
                compress += start.elapsed();
            }
            timed = Some(compress);
        }
        Role::Extract | Role::Upload | Role::Merge => {
            let config = LocalPipelineConfig {
                extract: sfpipe_shared::stages::extract::ExtractConfig {
                    page_records: options.page_records,
                    first_poll_delay: Duration::from_millis(20),
                    ..LocalPipelineConfig::default().extract
                },
                ..LocalPipelineConfig::default()
            };
            let (pipeline, warehouse_path) =
                LocalPipeline::in_directory(&options.dir, salesforce, config)?;
            if options.role == Role::Merge {
                merged_table = Some(warehouse_path);
            }
            let (stage, next, workers) = match options.role {
                Role::Extract => (Stage::Extract, Some(Stage::Upload), 1),
                Role::Upload => (Stage::Upload, Some(Stage::Merge), options.concurrency),
                _ => (Stage::Merge, None, 1),
            };
            let inbox = options.dir.join(format!("{stage}-messages.json"));
            let bodies: Vec<String> = if options.role == Role::Extract {
                let object = ObjectName::new(OBJECT)?;
                vec![
                    ExtractMessage {
                        v: CONTRACT_VERSION,
                        run_id: RunId::for_trigger(chrono::Utc::now(), "bench"),
                        object,
                        mode: Mode::Full,
                        window: Window {
                            since: None,
                            until: chrono::Utc::now(),
                        },
                        bulk_job: None,
                        rest: false,
                    }
                    .to_body(),
                ]
            } else {
                serde_json::from_slice(&std::fs::read(&inbox).with_context(|| {
                    format!("{}: run the stage before this one first", inbox.display())
                })?)?
            };
            let queue = pipeline.queue(stage);
            for body in bodies {
                let message = match stage {
                    Stage::Upload => {
                        let id = UploadMessage::from_body(&body)?.message_id();
                        OutgoingMessage::new(body, id)
                    }
                    Stage::Merge => {
                        let id = MergeMessage::from_body(&body)?.message_id();
                        OutgoingMessage::new(body, id).in_group(OBJECT)
                    }
                    _ => {
                        let id = ExtractMessage::from_body(&body)?.message_id();
                        OutgoingMessage::new(body, id)
                    }
                };
                queue.send(message).await?;
            }
            let dead = pipeline
                .drain_stage(stage, workers, Arc::new(NoEvents))
                .await;
            if let Some(letter) = dead.first() {
                bail!("{stage}: dead letter: {}", letter.reason);
            }
            // Each stage's rows, from what it stored: extract's job count, upload's manifests.
            let blobs = pipeline.blobs();
            for meta in blobs.list(&format!("runs/{OBJECT}/")).await? {
                if options.role == Role::Upload && meta.key.ends_with(".manifest.json") {
                    let manifest: sfpipe_shared::contracts::PartManifest =
                        serde_json::from_slice(&blobs.get_bytes(&meta.key).await?)?;
                    measured.rows += manifest.records;
                }
                if options.role == Role::Extract && meta.key.ends_with("/extracted.json") {
                    let extracted: sfpipe_shared::contracts::ExtractedRecord =
                        serde_json::from_slice(&blobs.get_bytes(&meta.key).await?)?;
                    measured.rows += extracted.salesforce_records.unwrap_or(0);
                }
            }
            // The longest single handling: what must fit in the function's timeout.
            measured.longest_invocation_s = sfpipe_shared::usage::kept_usage(
                blobs.as_ref(),
                &format!("{}{OBJECT}/", sfpipe_shared::usage::RECEIPTS_PREFIX),
            )
            .await?
            .iter()
            .filter(|r| r.stage == stage.to_string())
            .map(|r| r.duration_ms as f64 / 1000.0)
            .fold(0.0, f64::max);
            if let Some(next) = next {
                let pending = pipeline.pending(next);
                std::fs::write(
                    options.dir.join(format!("{next}-messages.json")),
                    serde_json::to_vec(&pending)?,
                )?;
            }
        }
    }
    measured.wall_s = timed.unwrap_or_else(|| started.elapsed()).as_secs_f64();
    let (cpu, rss) = own_usage();
    measured.cpu_s = cpu;
    measured.peak_rss_mb = rss;
    if let Some(path) = merged_table {
        let connection = rusqlite::Connection::open(path)?;
        let rows: i64 =
            connection.query_row(&format!("SELECT COUNT(*) FROM \"{OBJECT}\""), [], |row| {
                row.get(0)
            })?;
        measured.rows = u64::try_from(rows).unwrap_or_default();
    }
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}
