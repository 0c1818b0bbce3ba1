//! `sfpipe`: run the whole pipeline on one machine (`demo`, or `run` against any org), check
//! that everything a load needs works (`check`), see what it has done (`status`, `trace`), merge
//! or read again (`replay`, `backfill`), measure it (`bench`), or serve the Salesforce simulator
//! (`sim`).
//! Exits non-zero when an object did not merge (`run`, `demo`) or a run failed (`status`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sfpipe_cli::demo::{DemoOptions, render, run_demo};
use sfpipe_simulator::{SimConfig, Simulator};

#[derive(Parser)]
#[command(
    name = "sfpipe",
    version,
    about = "Salesforce to Snowflake, serverless: the local tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the simulator and all four stages on this machine, into a SQLite warehouse.
    /// Run it again to mutate the org and load incrementally.
    Demo {
        /// Rows per object.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Where the blobs, the warehouse and the simulator's state live.
        #[arg(long, default_value = ".sfpipe-demo")]
        dir: PathBuf,
        /// Forget earlier runs in DIR and start over.
        #[arg(long)]
        fresh: bool,
        /// Skip the field-for-field comparison of warehouse and org at the end.
        #[arg(long)]
        no_verify: bool,
    },
    /// Run the pipeline on this machine against a Salesforce org (real, or `sfpipe sim` elsewhere)
    /// into a SQLite warehouse, or into Snowflake through S3. Run again to load incrementally.
    Run(sfpipe_cli::run::RunOptions),
    /// Run the extract, upload and merge stages (any subset) as a long-lived process on a
    /// message broker (`redis://`), until SIGINT or SIGTERM; start as many as the load needs.
    Worker(sfpipe_cli::worker::WorkerOptions),
    /// Queue a run of the objects on a broker for `sfpipe worker`s, as the scheduled job-loader
    /// does (for cron or a Kubernetes CronJob).
    Load(sfpipe_cli::worker::LoadOptions),
    /// Whether each thing a load needs works: the Salesforce login, S3 access, the Snowflake
    /// login, its stage and grants; a pass or fail line for each, with what to fix.
    Check(sfpipe_cli::check::CheckOptions),
    /// Per object: the last runs (window, stage reached, job, counts, receipt), the watermark,
    /// open holes and dead letters, from a local directory or a deployed stack.
    Status(sfpipe_cli::status::StatusOptions),
    /// What the stored runs cost, from their usage records and list prices: each service's
    /// requests, the warehouse's billed seconds, a day of scheduled runs, per million changed rows.
    Cost(sfpipe_cli::cost::CostOptions),
    /// Where a warehouse row came from: its run, window, Salesforce job, part file and record.
    Trace(sfpipe_cli::trace::TraceOptions),
    /// Merge a stored run again from its files, without calling Salesforce (changes nothing a
    /// later run changed: the newest version wins).
    Replay(sfpipe_cli::replay::ReplayOptions),
    /// Extract a window of objects again: here, or (--print-event) as the stack's job-loader
    /// event. Redrives an extract whose Bulk job failed.
    Backfill(sfpipe_cli::replay::BackfillOptions),
    /// Measure the stages against the physical limit and simple-salesforce (see bench/README.md).
    Bench(sfpipe_cli::bench::BenchOptions),
    /// One measured process of `sfpipe bench` (internal).
    #[command(hide = true)]
    BenchChild(sfpipe_cli::bench::ChildOptions),
    /// Serve the simulated Salesforce org until interrupted.
    Sim {
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 1_000)]
        rows: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Serve HTTPS with a self-signed certificate for 127.0.0.1, written to --cert-file.
        #[arg(long)]
        tls: bool,
        #[arg(long, default_value = "sfpipe-sim-cert.pem")]
        cert_file: PathBuf,
        /// Also serve Bench__c, a 50-field object (what `sfpipe bench` reads).
        #[arg(long)]
        bench_object: bool,
        /// Also serve AccountHistory, a field history object with CreatedDate and no SystemModstamp.
        #[arg(long)]
        history_object: bool,
        /// Pace each Bulk result page at this many megabits per second, as a real org's
        /// downloads are (default: as fast as loopback allows).
        #[arg(long)]
        stream_mbps: Option<f64>,
        /// Hold each Bulk result page this many milliseconds before its first byte.
        #[arg(long, default_value_t = 0)]
        first_byte_ms: u64,
        /// Records per page of `resultPages`: Salesforce's choice, whatever the client asks.
        #[arg(long, default_value_t = 50_000)]
        result_page_rows: u64,
        /// Take this many milliseconds to answer each REST query page (a real org takes 300
        /// to 2,000 for 2,000 wide rows).
        #[arg(long, default_value_t = 0)]
        query_page_latency_ms: u64,
        /// Also serve this many small custom objects, Extra000__c on (an org of hundreds).
        #[arg(long, default_value_t = 0)]
        extra_objects: u32,
        /// Accept SOAP login() (API 64.0 and lower), as an org whose admin enabled it; off, as
        /// in orgs created from Winter '26.
        #[arg(long)]
        soap_login: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal; plain text for a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Demo {
            rows,
            seed,
            dir,
            fresh,
            no_verify,
        } => {
            let mut options = DemoOptions::new(dir, rows, seed);
            options.fresh = fresh;
            options.verify = !no_verify;
            options.progress = true;
            let outcome = run_demo(&options).await?;
            print!("{}", render(&outcome));
            if !outcome.is_exact() {
                anyhow::bail!("the warehouse does not match Salesforce; see above");
            }
        }
        Command::Worker(options) => sfpipe_cli::worker::worker(&options).await?,
        Command::Load(options) => print!("{}", sfpipe_cli::worker::load(&options).await?),
        Command::Run(options) => {
            let outcome = sfpipe_cli::run::run(&options).await?;
            print!("{}", outcome.summary);
            if !outcome.failures.is_empty() {
                anyhow::bail!(
                    "{} of the run's objects did not merge: {}",
                    outcome.failures.len(),
                    outcome
                        .failures
                        .iter()
                        .map(|f| f.object.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Command::Check(options) => {
            let lines = sfpipe_cli::check::check(&options, None).await?;
            print!("{}", sfpipe_cli::check::render(&lines));
            let failed = lines.iter().filter(|l| !l.passed).count();
            if failed > 0 {
                anyhow::bail!("{failed} checks failed; see above");
            }
        }
        Command::Trace(options) => {
            let trace = sfpipe_cli::trace::trace(&options).await?;
            if options.json {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{}", trace.render());
            }
        }
        Command::Replay(options) => match sfpipe_cli::replay::replay(&options).await? {
            sfpipe_cli::replay::Replayed::Merged(record) => println!(
                "replayed run {} of {}: {} rows read, {} changed",
                record.run_id, options.object, record.report.rows_read, record.report.rows_changed
            ),
            sfpipe_cli::replay::Replayed::Queued { queue } => println!(
                "queued the merge of run {} of {} on {queue}",
                options.run, options.object
            ),
        },
        Command::Backfill(options) => {
            if options.print_event {
                let objects = sfpipe_shared::lambda::parse_object_list(&options.objects)?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&sfpipe_cli::replay::backfill_event(
                        &objects,
                        options.since,
                        options.until,
                        chrono::Utc::now(),
                    ))?
                );
            } else {
                let outcome = sfpipe_cli::run::run_window(
                    &options.run_options()?,
                    Some(options.since),
                    options.until,
                    None,
                )
                .await?;
                print!("{}", outcome.summary);
                if !outcome.failures.is_empty() {
                    anyhow::bail!("{} objects did not merge", outcome.failures.len());
                }
            }
        }
        Command::Cost(options) => {
            if options.print_prices {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&sfpipe_cli::cost::prices(&options)?)?
                );
                return Ok(());
            }
            let report = sfpipe_cli::cost::cost(&options).await?;
            if options.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render(options.last));
            }
        }
        Command::Status(options) => {
            if options.serve {
                let address = std::net::SocketAddr::new(options.bind, options.port);
                return sfpipe_cli::status_page::serve(options, address).await;
            }
            let report = sfpipe_cli::status::status(&options).await?;
            if let Some(path) = &options.html {
                let page = sfpipe_cli::status_page::render(
                    &report,
                    &sfpipe_cli::status_page::source_of(&options),
                    chrono::Utc::now(),
                    false,
                );
                std::fs::write(path, page)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if options.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            if report.failures() > 0 {
                anyhow::bail!(
                    "{} failed runs or dead letters; see above",
                    report.failures()
                );
            }
        }
        Command::Bench(options) => {
            let report = sfpipe_cli::bench::run(&options).await?;
            print!("{report}");
            println!("written to {}", options.out.display());
        }
        Command::BenchChild(options) => sfpipe_cli::bench::child(&options).await?,
        Command::Sim {
            port,
            rows,
            seed,
            tls,
            cert_file,
            bench_object,
            history_object,
            stream_mbps,
            first_byte_ms,
            result_page_rows,
            query_page_latency_ms,
            extra_objects,
            soap_login,
        } => {
            let config = SimConfig {
                rows,
                seed,
                bench_object,
                history_object,
                result_page_rows,
                query_page_latency: std::time::Duration::from_millis(query_page_latency_ms),
                extra_objects,
                soap_login,
                bandwidth: sfpipe_simulator::bandwidth::Bandwidth {
                    megabits_per_second: stream_mbps,
                    first_byte: std::time::Duration::from_millis(first_byte_ms),
                },
                ..SimConfig::default()
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let simulator = if tls {
                Simulator::start_tls(config.clone(), addr, &cert_file).await?
            } else {
                Simulator::start(config.clone(), addr).await?
            };
            println!("Salesforce simulator at {}", simulator.url());
            if tls {
                println!(
                    "  its certificate (trust it, e.g. with REQUESTS_CA_BUNDLE): {}",
                    cert_file.display()
                );
            }
            println!("  login URL and instance URL: {}", simulator.url());
            println!(
                "  client credentials: client_id={} client_secret={}",
                config.client_id, config.client_secret
            );
            println!(
                "  password flow: username={} password={}",
                config.username, config.password
            );
            println!(
                "  refresh token flow: refresh_token={} (with the client credentials)",
                config.refresh_token
            );
            println!(
                "  JWT bearer flow: client_id={}, sub={}, signed with simulator/keys/demo-connected-app.key.pem",
                config.client_id, config.username
            );
            if soap_login {
                println!(
                    "  SOAP login() (API 64.0 and lower): username={} password={}",
                    config.username, config.password
                );
            } else {
                println!(
                    "  SOAP login(): refused, as in orgs created from Winter '26 (--soap-login accepts it)"
                );
            }
            println!(
                "  objects: Account, Contact, Opportunity, Lead, Case, Invoice__c ({rows} rows each, seed {seed})"
            );
            if extra_objects > 0 {
                println!("  and Extra000__c to Extra{:03}__c", extra_objects - 1);
            }
            println!("Ctrl-C stops it.");
            tokio::signal::ctrl_c().await?;
            simulator.stop().await;
        }
    }
    Ok(())
}
