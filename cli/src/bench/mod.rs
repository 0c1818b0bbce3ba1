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
//! Results go to `<out>/results.md`, `<out>/results.json` and `<out>/throughput.png`. With
//! `--cost`, a day of runs' cost instead (`<out>/cost.md`); with `--brokers`, the brokers against
//! the in-process queue (`<out>/brokers.md`, `<out>/brokers.json`).

pub mod brokers;
mod chart;
mod child;
pub mod cost;
mod report;

use chart::*;
pub use child::*;
pub use report::*;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub const OBJECT: &str = "Bench__c";

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
    /// Instead of throughput: what a day of scheduled runs costs, idle and with a trickle of
    /// changes, in API calls, Bulk jobs, requests, warehouse seconds and dollars.
    #[arg(long)]
    pub cost: bool,
    /// The cost scenario's org size, in objects.
    #[arg(long, default_value_t = 50)]
    pub cost_objects: u32,
    /// The cost scenario's scheduled runs per phase (compressed: 15 minutes apart in simulated
    /// time).
    #[arg(long, default_value_t = 8)]
    pub cost_runs: u32,
    /// Rows changed per object before each run of the trickle phase (208: a million a day over
    /// 50 objects at 96 runs a day).
    #[arg(long, default_value_t = 208)]
    pub trickle: u64,
    /// Instead of throughput: these brokers (`redis://...`, `amqp://...`, comma-separated)
    /// against the in-process queue, in messages per second and end-to-end rows per second.
    #[arg(long, value_delimiter = ',')]
    pub brokers: Vec<String>,
    /// Messages each queue sends, receives and deletes (with --brokers).
    #[arg(long, default_value_t = 5_000)]
    pub broker_messages: u64,
    /// Rows per object of the end-to-end load (with --brokers): the demo's million.
    #[arg(long, default_value_t = 1_000_000)]
    pub broker_rows: u64,
    /// Objects of the end-to-end load (with --brokers).
    #[arg(long, default_value_t = 1)]
    pub broker_objects: usize,
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
    /// The longest single handling of a message by a stage (what must fit in its function's
    /// timeout), from the stage's usage receipts; 0 for the references.
    #[serde(default)]
    pub longest_invocation_s: f64,
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
            longest_invocation_s: stages
                .iter()
                .map(|m| m.longest_invocation_s)
                .fold(0.0, f64::max),
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
    if options.cost {
        let scenario = cost::CostScenario {
            rows: 2_000,
            runs: options.cost_runs,
            trickle: options.trickle,
            objects: options.cost_objects,
            runs_per_day: 96.0,
            api_limit: 100_000,
        };
        let phases = cost::run_cost_scenario(&scenario).await?;
        let table = cost::render(&phases, &scenario);
        std::fs::create_dir_all(&options.out)?;
        std::fs::write(options.out.join("cost.md"), &table)?;
        return Ok(table);
    }
    if !options.brokers.is_empty() {
        let bench = brokers::run(
            &options.brokers,
            options.broker_messages,
            options.broker_rows,
            options.broker_objects,
            options.page_records,
        )
        .await?;
        let table = brokers::render(&bench);
        std::fs::create_dir_all(&options.out)?;
        std::fs::write(options.out.join("brokers.md"), &table)?;
        std::fs::write(
            options.out.join("brokers.json"),
            serde_json::to_vec_pretty(&bench)?,
        )?;
        return Ok(table);
    }
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
                // Salesforce sizes resultPages' pages; here as the deployment's PageRecords.
                .args(["--result-page-rows", &options.page_records.to_string()])
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
