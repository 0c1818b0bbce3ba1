//! `sfpipe bench`: sfpipe's stages against the physical limit and a peer, side by side on the same
//! data. The simulator serves `Bench__c` (50 fields) with N rows over HTTPS on loopback, in a
//! process of its own. Every measured thing is a child process that reports its own wall time,
//! CPU time and peak RSS (from /proc, or getrusage for the Python peer):
//!
//! - the physical reference: downloading the same result pages (gzip, as the upload stage asks),
//!   and gzipping their CSV;
//! - extract, upload and merge, each alone (the messages one stage sends are handed to the next);
//! - the peer: simple-salesforce's `bulk2 ... download` to files.
//!
//! Results go to `<out>/results.md`, `<out>/results.json` and `<out>/throughput.png`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sfpipe_shared::contracts::{
    CONTRACT_VERSION, Contract, ExtractMessage, MergeMessage, Mode, ObjectName, RunId,
    UploadMessage, Window,
};
use sfpipe_shared::local::pipeline::LocalPipelineConfig;
use sfpipe_shared::local::{LocalPipeline, NoEvents};
use sfpipe_shared::ports::OutgoingMessage;
use sfpipe_shared::salesforce::JobState;
use sfpipe_shared::salesforce::{Credentials, SalesforceClient, SalesforceConfig};
use sfpipe_shared::stages::Stage;

pub const OBJECT: &str = "Bench__c";
/// Lambda's price for arm64 (us-east-1, first tier), per GB-second and per request.
pub const PRICE_PER_GB_SECOND: f64 = 0.000_013_333_4;
pub const PRICE_PER_REQUEST: f64 = 0.000_000_2;
/// `MemorySize` of every function in template.yaml.
pub const LAMBDA_MEMORY_GB: f64 = 0.25;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Rows of the benchmark object, one round per value (comma-separated).
    #[arg(long, default_value = "100000,1000000,5000000")]
    pub rows: String,
    /// Where the table and the chart go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Skip the simple-salesforce peer.
    #[arg(long)]
    pub no_peer: bool,
    /// A Python with simple-salesforce (default: the test tools' venv, ~/.cache/sfpipe/venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The peer's script, `simple_salesforce_bench.py` (default: found beside the binary, in
    /// `../share/sfpipe/` from it, or in `bench/` of the current directory or of a checkout the
    /// binary was built in).
    #[arg(long)]
    pub peer_script: Option<PathBuf>,
    /// Records per Bulk result page (the deployment's `PageRecords`).
    #[arg(long, default_value_t = 50_000)]
    pub page_records: u64,
    /// Result pages the upload stage (and the download reference) read at once: the
    /// deployment's `UploadConcurrency`, whose default is 10.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Pace the simulator's result pages as a real org's downloads are: megabits per second per
    /// page (see bench/README.md for the setting used and where it comes from).
    #[arg(long)]
    pub stream_mbps: Option<f64>,
    /// Hold each result page this long before its first byte (milliseconds).
    #[arg(long, default_value_t = 0)]
    pub first_byte_ms: u64,
    /// Working directory for the parts and the SQLite warehouse (default: a temporary one).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Role {
    Download,
    Gzip,
    Extract,
    Upload,
    Merge,
}

/// One measured child process (hidden subcommand `sfpipe bench-child`).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildOptions {
    #[arg(long, value_enum)]
    pub role: Role,
    #[arg(long)]
    pub login_url: String,
    #[arg(long)]
    pub ca_cert: PathBuf,
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 50_000)]
    pub page_records: u64,
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Measurement {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub peak_rss_mb: f64,
    /// Bytes the process handled (uncompressed CSV, where it saw it).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub rows: u64,
}

/// This process's CPU seconds and peak RSS, from /proc.
fn own_usage() -> (f64, f64) {
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
fn client(
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
async fn bench_soql(client: &SalesforceClient) -> anyhow::Result<String> {
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
async fn finished_job_pages(
    client: &SalesforceClient,
    page_records: u64,
) -> anyhow::Result<Vec<String>> {
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
    Ok(client.result_pages(&job.id, page_records).await?)
}

/// Runs one role in this process and prints its measurement as JSON.
pub async fn child(options: &ChildOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let salesforce = client(&options.login_url, &options.ca_cert, options.concurrency)?;
    let mut measured = Measurement::default();
    let mut timed = None;
    match options.role {
        Role::Download => {
            // What the upload stage transfers: the pages, gzip-encoded, as many at a time.
            let pages = finished_job_pages(&salesforce, options.page_records).await?;
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
            let pages = finished_job_pages(&salesforce, options.page_records).await?;
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
            let (pipeline, _) = LocalPipeline::in_directory(&options.dir, salesforce, config)?;
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
            if options.role == Role::Upload {
                let blobs = pipeline.blobs();
                for meta in blobs.list(&format!("runs/{OBJECT}/")).await? {
                    if meta.key.ends_with(".manifest.json") {
                        let manifest: sfpipe_shared::contracts::PartManifest =
                            serde_json::from_slice(&blobs.get_bytes(&meta.key).await?)?;
                        measured.rows += manifest.records;
                    }
                }
            }
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
    println!("{}", serde_json::to_string(&measured)?);
    Ok(())
}

/// One round's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub rows: u64,
    /// Uncompressed CSV bytes of the object.
    pub csv_bytes: u64,
    pub download: Measurement,
    pub gzip: Measurement,
    pub extract: Measurement,
    pub upload: Measurement,
    pub merge: Measurement,
    pub peer: Option<Measurement>,
}

impl Round {
    fn end_to_end(&self) -> Measurement {
        let stages = [&self.extract, &self.upload, &self.merge];
        Measurement {
            wall_s: stages.iter().map(|m| m.wall_s).sum(),
            cpu_s: stages.iter().map(|m| m.cpu_s).sum(),
            peak_rss_mb: stages.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max),
            bytes: self.csv_bytes,
            rows: self.rows,
        }
    }
}

fn measure(command: &mut Command, what: &str) -> anyhow::Result<Measurement> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{what} printed {text:?}"))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct SimProcess(std::process::Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PEER_SCRIPT: &str = "simple_salesforce_bench.py";

/// The peer's script: the one given, else beside the binary, in `../share/sfpipe/` from it (an
/// install), in `bench/` of the current directory, or in `bench/` of a directory above the binary
/// (a checkout's `target/`). A binary moved elsewhere is told to say where it is.
pub fn find_peer_script(given: Option<&Path>, exe: &Path) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(
            path.is_file(),
            "--peer-script {} is not a file",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    let exe_dir = exe.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![
        exe_dir.join(PEER_SCRIPT),
        exe_dir.join("../share/sfpipe").join(PEER_SCRIPT),
        Path::new("bench").join(PEER_SCRIPT),
    ];
    candidates.extend(
        exe_dir
            .ancestors()
            .map(|dir| dir.join("bench").join(PEER_SCRIPT)),
    );
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find the peer's script {PEER_SCRIPT} (looked beside {}, in ../share/sfpipe/ \
                 from it, in ./bench/ and in bench/ above it): give --peer-script PATH (it is \
                 bench/{PEER_SCRIPT} in the source), or --no-peer",
                exe.display()
            )
        })
}

pub async fn run(options: &BenchOptions) -> anyhow::Result<String> {
    let rows: Vec<u64> = options
        .rows
        .split(',')
        .map(|r| r.trim().replace('_', "").parse())
        .collect::<Result<_, _>>()
        .context("--rows takes numbers separated by commas")?;
    let exe = std::env::current_exe()?;
    let temp = tempfile::tempdir()?;
    let work = options
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let python = options.python.clone().unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/sfpipe/venv/bin/python")
    });
    let peer_script = if options.no_peer {
        PathBuf::new()
    } else {
        find_peer_script(options.peer_script.as_deref(), &exe)?
    };
    let mut rounds = Vec::new();
    for n in rows {
        let dir = work.join(format!("rows-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let cert = dir.join("sim-cert.pem");
        let port = free_port()?;
        let sim = SimProcess(
            Command::new(&exe)
                .args(["sim", "--tls", "--bench-object", "--seed", "7"])
                .args(["--rows", &n.to_string(), "--port", &port.to_string()])
                .args(["--first-byte-ms", &options.first_byte_ms.to_string()])
                .args(
                    options
                        .stream_mbps
                        .map(|mbps| vec!["--stream-mbps".to_string(), mbps.to_string()])
                        .unwrap_or_default(),
                )
                .arg("--cert-file")
                .arg(&cert)
                .stdout(Stdio::null())
                .stdin(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !cert.exists() {
            if Instant::now() > deadline {
                bail!("the simulator did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("https://127.0.0.1:{port}");
        let run_child = |role: &str| -> anyhow::Result<Measurement> {
            eprintln!("bench: {n} rows: {role}");
            measure(
                Command::new(&exe)
                    .args(["bench-child", "--role", role, "--login-url", &url])
                    .arg("--ca-cert")
                    .arg(&cert)
                    .arg("--dir")
                    .arg(&dir)
                    .args(["--page-records", &options.page_records.to_string()])
                    .args(["--concurrency", &options.concurrency.to_string()]),
                role,
            )
        };
        if options.stream_mbps.is_some() || options.first_byte_ms > 0 {
            // A real org has a job's results stored when the job completes; the simulator keeps
            // each page it renders under the model, so one unmeasured download stores them all.
            run_child("download")?;
        }
        let download = run_child("download")?;
        let gzip = run_child("gzip")?;
        let extract = run_child("extract")?;
        let upload = run_child("upload")?;
        let merge = run_child("merge")?;
        let peer = if options.no_peer {
            None
        } else {
            eprintln!("bench: {n} rows: simple-salesforce");
            Some(measure(
                Command::new(&python)
                    .arg(&peer_script)
                    .args([&url, OBJECT, &options.page_records.to_string()])
                    .arg(dir.join("peer"))
                    .env("REQUESTS_CA_BUNDLE", &cert),
                "the simple-salesforce peer",
            )?)
        };
        drop(sim);
        let _ = std::fs::remove_dir_all(&dir);
        rounds.push(Round {
            rows: n,
            csv_bytes: gzip.bytes,
            download,
            gzip,
            extract,
            upload,
            merge,
            peer,
        });
    }
    std::fs::create_dir_all(&options.out)?;
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_vec_pretty(&rounds)?,
    )?;
    let setting = match options.stream_mbps {
        Some(mbps) => format!(
            "Result pages paced at {mbps} Mbit/s each, {} ms to first byte.\n\n",
            options.first_byte_ms
        ),
        None if options.first_byte_ms > 0 => format!(
            "Result pages held {} ms before their first byte, then as fast as loopback allows.\n\n",
            options.first_byte_ms
        ),
        None => "Result pages as fast as loopback allows (no bandwidth model).\n\n".to_string(),
    };
    let setting = format!(
        "{setting}Upload and the download reference read {} result pages at a time (the \
         deployment's `UploadConcurrency`); simple-salesforce reads them in turn.\n\n",
        options.concurrency
    );
    let table = setting + &report(&rounds, options.page_records);
    std::fs::write(options.out.join("results.md"), &table)?;
    let chart = options.out.join("throughput.png");
    match draw_chart(&rounds, &chart) {
        Ok(()) => {}
        Err(error) => eprintln!("bench: no chart ({error})"),
    }
    Ok(table)
}

fn rate(rows: u64, m: &Measurement) -> f64 {
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
    out.push_str(&format!(
        "\n**Lambda cost per million rows** (arm64, ${PRICE_PER_GB_SECOND} per GB-second, \
         ${PRICE_PER_REQUEST} per request, {:.0} MB per function as template.yaml sets; billed \
         duration taken as the measured wall time; Snowflake's own compute for the merge not \
         included, and the SQLite merge time used as the merge function's duration)\n\n\
         | rows | extract | upload | merge | total |\n|---:|---:|---:|---:|---:|\n",
        LAMBDA_MEMORY_GB * 1024.0
    ));
    for r in rounds {
        let per_million = 1e6 / r.rows as f64;
        let cost = |m: &Measurement, requests: f64| {
            m.wall_s * per_million * LAMBDA_MEMORY_GB * PRICE_PER_GB_SECOND
                + requests * PRICE_PER_REQUEST
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

/// One plotted value of a round (rows/s), where the round has it.
type RoundValue = dyn Fn(&Round) -> Option<f64>;

fn draw_chart(rounds: &[Round], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    // The font is built in, so the chart never depends on what the machine has installed.
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("the built-in font could not be loaded"))?;
    let series: Vec<(&str, RGBColor, Box<RoundValue>)> = vec![
        (
            "download reference",
            BLACK,
            Box::new(|r: &Round| Some(rate(r.rows, &r.download))),
        ),
        (
            "gzip reference",
            RGBColor(120, 120, 120),
            Box::new(|r: &Round| Some(rate(r.rows, &r.gzip))),
        ),
        (
            "sfpipe upload",
            BLUE,
            Box::new(|r: &Round| Some(rate(r.rows, &r.upload))),
        ),
        (
            "sfpipe merge",
            GREEN,
            Box::new(|r: &Round| Some(rate(r.rows, &r.merge))),
        ),
        (
            "sfpipe end to end",
            RGBColor(0, 0, 120),
            Box::new(|r: &Round| Some(rate(r.rows, &r.end_to_end()))),
        ),
        (
            "simple-salesforce",
            RED,
            Box::new(|r: &Round| r.peer.as_ref().map(|p| rate(r.rows, p))),
        ),
    ];
    let max = rounds
        .iter()
        .flat_map(|r| series.iter().filter_map(move |(_, _, f)| f(r)))
        .fold(1.0, f64::max);
    let min = rounds
        .iter()
        .flat_map(|r| series.iter().filter_map(move |(_, _, f)| f(r)))
        .fold(max, f64::min);
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let xs: Vec<f64> = rounds.iter().map(|r| r.rows as f64).collect();
    let (x_min, x_max) = (
        xs.iter().cloned().fold(f64::MAX, f64::min) * 0.7,
        xs.iter().cloned().fold(1.0, f64::max) * 1.4,
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Bench__c (50 fields): rows per second, log scales",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_min..x_max).log_scale(),
            ((min * 0.5)..(max * 2.0)).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("rows in the object")
        .y_desc("rows/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, color, value) in &series {
        let points: Vec<(f64, f64)> = rounds
            .iter()
            .filter_map(|r| value(r).map(|v| (r.rows as f64, v)))
            .collect();
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
