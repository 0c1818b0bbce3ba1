//! Seeded chaos schedules of the whole pipeline, on the local adapters and again with the stages'
//! queues on a real Redis and a real RabbitMQ (started on free ports). Each schedule builds an org,
//! then runs the pipeline several times while the org changes between runs (inserts, updates,
//! deletes, a new field) and faults are injected during runs: duplicate deliveries, random delays
//! that reorder messages, a crash at one port call (before or after its effect) followed by
//! redelivery, Salesforce 5xx, REQUEST_LIMIT_EXCEEDED, session expiry, connections dropped
//! mid-page, slow and failed Bulk jobs, blob-store write failures and warehouse failures in the
//! middle of a merge. After every run the invariant is checked:
//!
//! - every object is exact (every live Id once, field for field, deleted rows flagged), unless a
//!   message about it sits in a dead-letter queue with its reason;
//! - every dead-lettered message carries a reason, and is one a fault that fired in this run
//!   causes: a Bulk job the simulator failed on purpose (everything else must be retried);
//! - no watermark moved backwards;
//!
//! and after a final run without faults, every object is exact. Salesforce's faults are counted
//! when they fire (`Simulator::take_fired_faults`), not when they are set.
//!
//! `cargo test -p sfpipe-tests --test chaos` runs 200 schedules on in-process queues and 50 on
//! each broker; for more: `cargo test --release -p sfpipe-tests --test chaos -- --schedules 5000
//! [--broker-schedules 500] [--brokers local,redis,rabbitmq] [--seed 1] [--jobs 4]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sfpipe_shared::deadline::{FunctionLimits, StageLimits};
use sfpipe_simulator::{Fault, FiredFault, SimConfig};
use sfpipe_tests::faults::{ChaosSends, FailWhen, FaultPlan, SendBehaviour};
use sfpipe_tests::harness::{Harness, HarnessOptions};

const OBJECTS: [&str; 4] = ["Account", "Contact", "Opportunity", "Invoice__c"];
/// Port calls of one small run are in the tens; a crash is picked among the first this many.
const CRASH_WINDOW: u64 = 80;

#[derive(Debug, Default, Clone)]
struct Totals {
    schedules: u64,
    runs: u64,
    faults: BTreeMap<&'static str, u64>,
    rows_checked: u64,
    fields_checked: u64,
    dead_letters: u64,
    /// Objects the loader's probe found unchanged, so ran nothing for.
    unchanged: u64,
    violations: Vec<String>,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.schedules += other.schedules;
        self.runs += other.runs;
        for (k, v) in other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        self.rows_checked += other.rows_checked;
        self.fields_checked += other.fields_checked;
        self.dead_letters += other.dead_letters;
        self.unchanged += other.unchanged;
        self.violations.extend(other.violations);
    }
}

fn watermarks(harness: &Harness) -> BTreeMap<String, String> {
    let connection = rusqlite::Connection::open(&harness.warehouse_path).expect("open warehouse");
    let mut statement = connection
        .prepare("SELECT object, watermark FROM _SFPIPE_STATE")
        .expect("state table");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// One schedule; on `broker` (a URL) its queues are that broker's, named after the seed.
async fn run_schedule(seed: u64, broker: Option<String>) -> Totals {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut totals = Totals {
        schedules: 1,
        ..Totals::default()
    };
    let mut objects: Vec<&'static str> = OBJECTS.to_vec();
    rng.shuffle(&mut objects);
    objects.truncate(rng.usize(1..=3));
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();

    let mut sim = SimConfig {
        seed,
        rows: rng.u64(8..40),
        bulk_polls_to_complete: rng.u32(0..4),
        result_page_rows: rng.u64(3..25),
        ..SimConfig::default()
    };
    if rng.u8(0..10) == 0 {
        sim.without_result_pages = true;
        note(&mut injected, "no resultPages (locator chain)");
        if rng.bool() {
            sim.short_pages = true;
            note(&mut injected, "short pages on the locator chain");
        }
    }
    if rng.u8(0..10) == 0 {
        sim.bulk_unsupported_objects = vec![objects[0].to_string()];
        note(&mut injected, "object refused by Bulk (REST path)");
    }
    // Short deadlines and slow services, drawn apart so the other schedules stay as they were:
    // upload and extract get a timeout of a few hundred milliseconds, an object refused by Bulk
    // spans several REST pages that each take a good part of it, and every call is a few
    // milliseconds away. Handlers must stop in time and go on in their next invocation; one
    // killed at its timeout is redelivered, and five kills dead-letter it (a violation).
    let mut deadlines = fastrand::Rng::with_seed(seed ^ 0x5eed_dead_11e5);
    let mut limits = None;
    if deadlines.u8(0..8) == 0 {
        let timeout = Duration::from_millis(deadlines.u64(300..600));
        // More than one REST page: Salesforce's smallest batch is 200 rows.
        sim.rows = sim.rows.max(deadlines.u64(210..450));
        sim.query_page_latency = timeout.mul_f64(deadlines.f64() * 0.25 + 0.3);
        sim.latency = Duration::from_millis(deadlines.u64(2..6));
        sim.bulk_unsupported_objects = vec![objects[0].to_string()];
        let short = FunctionLimits {
            timeout,
            visibility_timeout: Some(timeout * 6),
        };
        limits = Some(StageLimits {
            extract: short,
            upload: short,
            ..StageLimits::TEMPLATE
        });
        note(
            &mut injected,
            "short deadlines, slow REST pages (chained REST parts)",
        );
    }
    if rng.u8(0..8) == 0 {
        // Splitting stops at windows under a minute, and this test's runs are seconds apart: the
        // limit must stay above what a few mutation rounds change (about 3 rows each), or every
        // later window would rightly end in the dead-letter queue.
        sim.rows = sim.rows.max(30);
        sim.query_timeout_rows = Some(sim.rows / 2 + 2);
        note(
            &mut injected,
            "late query timeout: the job fails (window split)",
        );
    }
    if rng.u8(0..8) == 0 {
        sim.session_calls = Some(rng.u64(8..40));
        note(&mut injected, "session expiry every N calls");
    }
    // Each run is triggered two hours after the last, so a formula refresh (and a
    // reconciliation) is due at every run.
    let refresh_every_run = objects.contains(&"Contact") && rng.u8(0..6) == 0;
    if refresh_every_run {
        sim.cross_object_formula = true;
        note(
            &mut injected,
            "cross-object formula changing without SystemModstamp (refreshed every run)",
        );
    }
    if rng.u8(0..8) == 0 {
        sim.history_object = true;
        objects.push("AccountHistory");
        note(&mut injected, "history object (CreatedDate cursor)");
    }
    // Rows hard-deleted between runs (gone from queryAll too), found by a reconciliation of Ids
    // at every run.
    // Not with the late query timeout: the simulator times out any query matching more rows than
    // its limit, and a reconciliation's Ids query matches them all (it is refused, not split).
    let reconcile_every_run = rng.u8(0..5) == 0 && sim.query_timeout_rows.is_none();
    if reconcile_every_run {
        sim.hard_deletes = true;
        note(
            &mut injected,
            "hard deletes between runs (Ids reconciled every run)",
        );
    }
    // Half the schedules read small changes with the REST API (the loader's probe counts them);
    // the other half read every change with a Bulk job.
    let rest_below = if rng.bool() { 2_000 } else { 0 };
    if rest_below > 0 {
        note(&mut injected, "small changes read over REST");
    }
    let plan = FaultPlan::new(0, FailWhen::Before);
    let chaos = ChaosSends::new(seed);
    let harness = Harness::start(HarnessOptions {
        sim,
        objects: objects.clone(),
        plan: Some(plan.clone()),
        sends: SendBehaviour {
            chaos: Some(chaos.clone()),
            ..SendBehaviour::default()
        },
        page_records: rng.u64(3..25),
        rest_below,
        limits,
        broker: broker.map(|url| (url, format!("chaos-{seed}"))),
        formula_refresh: refresh_every_run.then(|| "1h".parse().expect("schedule")),
        reconcile: Some(
            if reconcile_every_run { "1h" } else { "off" }
                .parse()
                .expect("schedule"),
        ),
        ..HarnessOptions::default()
    })
    .await;
    let started = chrono::Utc::now();

    let runs = rng.u32(2..5);
    let mut previous_watermarks: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_dead_letters = 0;
    for run in 0..=runs {
        let last = run == runs;
        // Now and then nothing changes between runs: the probe must find every object unchanged
        // (and run nothing), and the warehouse must stay exact.
        let idle = run > 0 && rng.u8(0..4) == 0;
        if idle {
            note(&mut injected, "idle run (nothing changed)");
        }
        if run > 0 && !idle && rng.u8(0..4) == 0 {
            // A transaction that commits late, stamped as the newest row already merged: inside
            // the overlap, with a stamp the last merge stored, but a new Id.
            let object = objects[rng.usize(0..objects.len())];
            let stamp = previous_watermarks
                .get(object)
                .and_then(|w| chrono::DateTime::parse_from_rfc3339(w).ok())
                .map(|w| w.with_timezone(&chrono::Utc));
            if let Some(stamp) = stamp
                && harness.sim.insert_row(object, stamp).is_some()
            {
                note(&mut injected, "late commit with a merged row's stamp");
            }
        }
        if run > 0 && !idle {
            harness.mutate();
            if rng.u8(0..4) == 0 {
                let object = objects[rng.usize(0..objects.len())];
                if harness
                    .sim
                    .add_field(object, "Chaos_Region__c", chrono::Utc::now())
                {
                    note(&mut injected, "new field between runs");
                }
            }
        }
        let mut armed = false;
        if !last {
            let duplicate = rng.bool();
            let delay = if rng.bool() { rng.u64(1..40) } else { 0 };
            chaos.set(duplicate, delay);
            if duplicate {
                note(&mut injected, "duplicate deliveries");
            }
            if delay > 0 {
                note(&mut injected, "random delays (reordering)");
            }
            if rng.u8(0..3) > 0 {
                let when = if rng.bool() {
                    FailWhen::Before
                } else {
                    FailWhen::After
                };
                plan.arm(rng.u64(1..=CRASH_WINDOW), when);
                armed = true;
            } else {
                plan.arm(0, FailWhen::Before);
            }
            let mut faults = Vec::new();
            let path_fault = |path: &str, status: u16, code: &str, message: &str| Fault {
                path_contains: path.into(),
                drop_mid_body: false,
                status,
                error_code: code.into(),
                message: message.into(),
                remaining: 1,
            };
            if rng.u8(0..4) == 0 {
                faults.push(path_fault(
                    "/jobs/query",
                    503,
                    "SERVER_UNAVAILABLE",
                    "try later",
                ));
            }
            if rng.u8(0..4) == 0 {
                faults.push(path_fault(
                    "/jobs/query",
                    403,
                    "REQUEST_LIMIT_EXCEEDED",
                    "ConcurrentPerOrgLongTxn Limit exceeded",
                ));
            }
            if rng.u8(0..4) == 0 {
                faults.push(Fault {
                    drop_mid_body: true,
                    ..path_fault("/results", 200, "", "")
                });
            }
            if rng.u8(0..5) == 0 {
                harness.sim.expire_sessions();
                note(&mut injected, "sessions expired");
            }
            if rng.u8(0..5) == 0 {
                faults.push(path_fault(
                    "/composite",
                    503,
                    "SERVER_UNAVAILABLE",
                    "try later",
                ));
            }
            if rng.u8(0..5) == 0 {
                // The edge in front of the org: a routing or rate answer, no Salesforce error.
                let status = [406, 420, 429][rng.usize(0..3)];
                faults.push(path_fault("/describe", status, "", ""));
            }
            // A failed job is armed only where this run surely starts one for every object: a
            // changed org read with Bulk (an armed failure left for a later run would fail its
            // clean last run).
            if rng.u8(0..6) == 0 && !idle && rest_below == 0 {
                harness
                    .sim
                    .fail_jobs(objects[rng.usize(0..objects.len())], 1);
            }
            if !faults.is_empty() {
                harness.sim.inject(faults);
            }
        } else {
            chaos.set(false, 0);
            plan.arm(0, FailWhen::Before);
        }
        let result = if refresh_every_run || reconcile_every_run {
            let hours = 2 * i64::from(run);
            let at = chrono::Utc::now().max(started + chrono::Duration::hours(hours));
            harness.run_at(at).await
        } else {
            harness.run().await
        };
        totals.runs += 1;
        totals.unchanged += result.report.unchanged.len() as u64;
        if armed && let Some(failed) = plan.failed() {
            let kind = if failed.contains("merge") {
                "warehouse failure mid-merge"
            } else if failed.contains("put") || failed.contains("delete") {
                "blob-store write failure"
            } else if failed.contains("send") {
                "crash around a queue send"
            } else {
                "crash around a port call"
            };
            note(&mut injected, kind);
        }
        // Salesforce's faults count when they fire, not when they are set; a Bulk job failed on
        // purpose is the one fault that may stop an object (Salesforce's 5xx, limits and
        // dropped connections are retried).
        let mut failed_jobs = Vec::new();
        for fired in harness.sim.take_fired_faults() {
            let kind = match fired {
                FiredFault::JobFailed { object } => {
                    failed_jobs.push(object.to_ascii_lowercase());
                    "Bulk job failed"
                }
                FiredFault::Request(fault) if fault.drop_mid_body => "connection dropped mid-page",
                FiredFault::Request(fault) if fault.status >= 500 => "Salesforce 5xx",
                FiredFault::Request(fault) if fault.error_code == "REQUEST_LIMIT_EXCEEDED" => {
                    "REQUEST_LIMIT_EXCEEDED (concurrency)"
                }
                FiredFault::Request(_) => "other Salesforce error",
            };
            note(&mut injected, kind);
        }
        // The run's new dead letters: each must say why, and be what a fault that fired in this
        // run causes; only then is its object excused this run.
        let new_letters = &result.dead_letters[seen_dead_letters..];
        seen_dead_letters = result.dead_letters.len();
        totals.dead_letters += new_letters.len() as u64;
        let mut excused = Vec::new();
        for letter in new_letters {
            if std::env::var_os("SFPIPE_CHAOS_VERBOSE").is_some() {
                eprintln!(
                    "seed {seed} run {run}: dead letter in {}: {}",
                    letter.queue, letter.reason
                );
            }
            if letter.reason.trim().is_empty() {
                totals.violations.push(format!(
                    "seed {seed} run {run}: a dead letter without a reason in {}: {}",
                    letter.queue, letter.body
                ));
            }
            let object = letter.field("object");
            let failed_on_purpose = object
                .as_ref()
                .is_some_and(|o| failed_jobs.contains(&o.to_ascii_lowercase()))
                && letter.queue.contains("extract")
                && letter.reason.contains("ended Failed");
            match object {
                Some(object) if failed_on_purpose => excused.push(object),
                _ => totals.violations.push(format!(
                    "seed {seed} run {run}: a dead letter no fault of this run explains, in {}: {}",
                    letter.queue, letter.reason
                )),
            }
            if last {
                totals.violations.push(format!(
                    "seed {seed} run {run} (no faults): dead letter in {}: {}",
                    letter.queue, letter.reason
                ));
            }
        }
        // `sfpipe status` shows every dead letter with its reason (read as status reads the
        // directory, without the faults still armed).
        let fs = sfpipe_shared::local::FsBlobStore::new(&harness.blobs_path).expect("blobs");
        let blobs = &fs as &dyn sfpipe_shared::ports::BlobStore;
        let kept = sfpipe_shared::status::kept_dead_letters(blobs)
            .await
            .unwrap_or_default();
        match sfpipe_shared::status::read_status(blobs, None, &kept, &[], 1).await {
            Ok(status) => {
                let shown: Vec<(&str, &str)> = status
                    .objects
                    .iter()
                    .flat_map(|o| &o.dead_letters)
                    .chain(&status.unattributed)
                    .map(|d| (d.queue.as_str(), d.reason.as_str()))
                    .collect();
                for letter in new_letters {
                    if !shown.contains(&(letter.queue.as_str(), letter.reason.as_str())) {
                        totals.violations.push(format!(
                            "seed {seed} run {run}: sfpipe status does not show the dead letter in {}: {}",
                            letter.queue, letter.reason
                        ));
                    }
                }
            }
            Err(error) => totals.violations.push(format!(
                "seed {seed} run {run}: sfpipe status failed: {error}"
            )),
        }
        for check in harness.check() {
            totals.rows_checked += check.salesforce_rows;
            totals.fields_checked += check.fields_checked;
            if !check.is_exact() && !excused.contains(&check.object) {
                totals.violations.push(format!(
                    "seed {seed} run {run}: {} is not exact (faults so far: {:?}): {check:?}",
                    check.object, injected
                ));
            }
        }
        let current = watermarks(&harness);
        for (object, before) in &previous_watermarks {
            match current.get(object) {
                Some(now) if now >= before => {}
                other => totals.violations.push(format!(
                    "seed {seed} run {run}: the watermark of {object} moved from {before} to {other:?}"
                )),
            }
        }
        previous_watermarks = current;
    }
    totals.faults = injected;
    totals
}

fn note(injected: &mut BTreeMap<&'static str, u64>, kind: &'static str) {
    *injected.entry(kind).or_default() += 1;
}

fn argument(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}"))
        })
        .unwrap_or(default)
}

/// The name libtest would give this test, for `cargo test <filter>`.
const TEST_NAME: &str = "chaos_schedules";

/// Whether `cargo test`'s filters select this test, as libtest reads them: positional arguments
/// are name filters (substrings, or the whole name with `--exact`), `--skip F` excludes, and
/// `--ignored` runs only ignored tests (this one is not).
fn selected(args: &[String]) -> bool {
    const VALUED: [&str; 8] = [
        "--schedules",
        "--broker-schedules",
        "--brokers",
        "--seed",
        "--jobs",
        "--skip",
        "--test-threads",
        "--format",
    ];
    let exact = args.iter().any(|a| a == "--exact");
    let matches = |filter: &str| {
        if exact {
            filter == TEST_NAME
        } else {
            TEST_NAME.contains(filter)
        }
    };
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--ignored" {
            return false;
        }
        if VALUED.contains(&arg.as_str()) {
            let value = rest.next();
            if arg == "--skip" {
                skips.extend(value);
            }
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    !skips.iter().any(|s| TEST_NAME.contains(s.as_str()))
        && (filters.is_empty() || filters.iter().any(|f| matches(f)))
}

fn main() {
    if std::env::var_os("SFPIPE_CHAOS_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().collect();
    // `cargo test` passes libtest's flags (--list, filters): a listing shows the one test.
    if args.iter().any(|a| a == "--list") {
        println!("chaos_schedules: test");
        return;
    }
    if !selected(&args) {
        println!("chaos: chaos_schedules filtered out");
        return;
    }
    let schedules = argument(&args, "--schedules", 200);
    let first_seed = argument(&args, "--seed", 1);
    let jobs = argument(&args, "--jobs", 4).max(1) as usize;
    let broker_schedules = argument(&args, "--broker-schedules", 50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failed = false;
    for broker in brokers(&args) {
        let count = if broker == "local" {
            schedules
        } else {
            broker_schedules
        };
        if count == 0 {
            continue;
        }
        failed |= runtime.block_on(run_on(broker, count, first_seed, jobs));
    }
    if failed {
        std::process::exit(1);
    }
}

/// Where schedules run: `local` (in-process queues), `redis`, `rabbitmq`; `--brokers` picks
/// (all three by default).
fn brokers(args: &[String]) -> Vec<&'static str> {
    let chosen = args
        .iter()
        .position(|a| a == "--brokers")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or("local,redis,rabbitmq");
    ["local", "redis", "rabbitmq"]
        .into_iter()
        .filter(|b| chosen.split(',').any(|c| c.trim() == *b))
        .collect()
}

/// The broker's server, started for the schedules and stopped (dropped) after them.
enum Server {
    Local,
    Redis(sfpipe_tests::redis::RedisServer),
    RabbitMq(sfpipe_tests::rabbitmq::RabbitServer),
}

impl Server {
    fn url(&self) -> Option<String> {
        match self {
            Self::Local => None,
            Self::Redis(server) => Some(server.url.clone()),
            Self::RabbitMq(server) => Some(server.url.clone()),
        }
    }
}

/// Runs `schedules` schedules on `broker`, prints the totals; `true` when any was violated.
async fn run_on(broker: &'static str, schedules: u64, first_seed: u64, jobs: usize) -> bool {
    let server = match broker {
        "redis" => Server::Redis(sfpipe_tests::redis::RedisServer::start().await),
        "rabbitmq" => Server::RabbitMq(sfpipe_tests::rabbitmq::RabbitServer::start().await),
        _ => Server::Local,
    };
    let url = server.url();
    let started = std::time::Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut tasks = tokio::task::JoinSet::new();
    for seed in first_seed..first_seed + schedules {
        let permit = semaphore.clone().acquire_owned().await.expect("semaphore");
        let url = url.clone();
        tasks.spawn(async move {
            let totals = run_schedule(seed, url).await;
            drop(permit);
            totals
        });
    }
    let mut totals = Totals::default();
    while let Some(done) = tasks.join_next().await {
        totals.add(done.expect("a schedule panicked"));
    }
    drop(server);
    let injected: u64 = totals.faults.values().sum();
    println!(
        "chaos on {broker}: {} schedules (seeds {first_seed}..{}), {} runs, {injected} faults \
         injected, {} rows and {} fields checked, {} dead letters (each with its reason), {} \
         objects found unchanged (no run), {} violations, {:.0} s",
        totals.schedules,
        first_seed + schedules - 1,
        totals.runs,
        totals.rows_checked,
        totals.fields_checked,
        totals.dead_letters,
        totals.unchanged,
        totals.violations.len(),
        started.elapsed().as_secs_f64()
    );
    for (kind, count) in &totals.faults {
        println!("  {count:>6}  {kind}");
    }
    // Idle runs are a quarter of the later runs: a probe that never finds an object unchanged
    // has stopped working (every run would read and merge again), not merely been unlucky.
    if schedules >= 50 && totals.unchanged == 0 {
        totals
            .violations
            .push("no idle run found any object unchanged".into());
    }
    for violation in totals.violations.iter().take(20) {
        eprintln!("VIOLATION ({broker}) {violation}");
    }
    !totals.violations.is_empty()
}
