//! `sfpipe worker` processes on one Redis broker, as a fleet runs them beside `sfpipe load`:
//! three of them load the org exactly, and a worker killed with SIGKILL while it holds messages
//! loses nothing and duplicates nothing (its messages come back after their visibility timeout).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sfpipe_simulator::{SimConfig, Simulator};
use sfpipe_tests::rabbitmq::RabbitServer;
use sfpipe_tests::redis::RedisServer;

const OBJECTS: &str = "Account,Contact,Opportunity";
/// Every stage's timeout and visibility timeout a hundredth of the template's (upload: 3 s and
/// 18 s), so a killed worker's messages come back within the test.
const LIMITS_SCALE: &str = "0.01";

/// The `sfpipe` binary, built now if this test runs alone (`cargo test --workspace` built it).
fn sfpipe() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "sfpipe-cli",
            "--bin",
            "sfpipe",
        ])
        .current_dir(root)
        .status()
        .expect("cargo build");
    assert!(built.success(), "cargo build -p sfpipe-cli failed");
    let exe = std::env::current_exe().expect("this test's path");
    // <target>/debug/deps/<this test> -> <target>/debug/sfpipe
    exe.parent()
        .and_then(Path::parent)
        .expect("the target directory")
        .join("sfpipe")
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The broker a fleet shares, started on a free port and stopped when dropped.
enum Broker {
    Redis(RedisServer),
    RabbitMq(RabbitServer),
}

#[derive(Clone, Copy)]
enum BrokerKind {
    Redis,
    RabbitMq,
}

impl Broker {
    async fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Redis => Self::Redis(RedisServer::start().await),
            BrokerKind::RabbitMq => Self::RabbitMq(RabbitServer::start().await),
        }
    }
    fn url(&self) -> &str {
        match self {
            Self::Redis(server) => &server.url,
            Self::RabbitMq(server) => &server.url,
        }
    }
}

struct Fleet {
    bin: PathBuf,
    broker: Broker,
    sim: Simulator,
    dir: tempfile::TempDir,
    credentials: PathBuf,
}

impl Fleet {
    async fn start(kind: BrokerKind) -> Self {
        let bin = sfpipe();
        let broker = Broker::start(kind).await;
        let sim = sfpipe_tests::simulator(SimConfig {
            rows: 400,
            // Several parts a run, so work is in flight across the fleet.
            result_page_rows: 100,
            ..SimConfig::default()
        })
        .await;
        let dir = tempfile::tempdir().expect("dir");
        let credentials = dir.path().join("salesforce.json");
        let config = sim.config();
        std::fs::write(
            &credentials,
            serde_json::json!({"flow": "client_credentials", "client_id": config.client_id,
                               "client_secret": config.client_secret})
            .to_string(),
        )
        .expect("credentials");
        Self {
            bin,
            broker,
            sim,
            dir,
            credentials,
        }
    }

    fn common(&self, command: &mut Command) {
        command
            .args([
                "--broker",
                self.broker.url(),
                "--limits-scale",
                LIMITS_SCALE,
            ])
            .args(["--login-url", self.sim.url()])
            .arg("--credentials")
            .arg(&self.credentials)
            .arg("--dir")
            .arg(self.dir.path().join("out"));
    }

    fn worker(&self, name: &str) -> Process {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("log");
        let mut command = Command::new(&self.bin);
        command.args(["worker", "--workers", "2"]);
        self.common(&mut command);
        Process(
            command
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sfpipe worker"),
        )
    }

    async fn load(&self) -> Output {
        self.load_objects(OBJECTS).await
    }

    async fn load_objects(&self, objects: &str) -> Output {
        let mut command = Command::new(&self.bin);
        command.args(["load", "--objects", objects]);
        self.common(&mut command);
        let output = tokio::task::spawn_blocking(move || command.output().expect("sfpipe load"))
            .await
            .expect("load");
        assert!(
            output.status.success(),
            "sfpipe load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn warehouse(&self) -> PathBuf {
        self.dir.path().join("out").join("warehouse.sqlite")
    }

    fn parts_stored(&self) -> usize {
        walk(&self.dir.path().join("out").join("blobs"))
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
            .count()
    }

    /// Waits until the warehouse equals the org, every Id once; panics with the workers' logs
    /// after `patience`.
    async fn wait_until_exact(&self, patience: Duration) {
        let deadline = Instant::now() + patience;
        let only: Vec<&str> = OBJECTS.split(',').collect();
        loop {
            let checks = self
                .sim
                .with_org(|org| sfpipe_cli::verify::compare_objects(org, &self.warehouse(), &only));
            if let Ok(checks) = &checks
                && checks.len() == only.len()
                && checks.iter().all(|c| c.is_exact())
            {
                return;
            }
            if Instant::now() > deadline {
                let logs: String = ["a", "b", "c"]
                    .iter()
                    .map(|n| {
                        std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join("\n---\n");
                panic!("not exact after {patience:?}: {checks:?}\n{}", tail(&logs));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// An object the org lacks is queued too; extract stops it with a dead letter, whose notice
/// lands in the data directory (no alarm topic given), and the other objects load exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_redis_load_the_org_exactly() {
    three_workers_load_the_org_exactly(BrokerKind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_rabbitmq_load_the_org_exactly() {
    three_workers_load_the_org_exactly(BrokerKind::RabbitMq).await;
}

async fn three_workers_load_the_org_exactly(kind: BrokerKind) {
    let fleet = Fleet::start(kind).await;
    let _workers = [fleet.worker("a"), fleet.worker("b"), fleet.worker("c")];
    let output = fleet.load_objects(&format!("{OBJECTS},Nope__c")).await;
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("(4 objects)"), "{printed}");
    fleet.wait_until_exact(Duration::from_secs(120)).await;
    let notices = fleet.dir.path().join("out").join("notices.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        let sent = sfpipe_shared::local::FileNotifier::read(&notices).expect("notices");
        if !sent.is_empty() || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].subject.contains("Nope__c"), "{sent:?}");
    assert!(sent[0].message.contains("reason: "), "{sent:?}");
    // `sfpipe status --broker` shows the letter, with its reason, from the broker's queue, and
    // leaves it there.
    for _ in 0..2 {
        let status = sfpipe_cli::status::status(&sfpipe_cli::status::StatusOptions {
            broker: Some(fleet.broker.url().to_string()),
            json: true,
            ..sfpipe_cli::status::StatusOptions::for_dir(fleet.dir.path().join("out"))
        })
        .await
        .expect("status");
        let letters: Vec<_> = status
            .objects
            .iter()
            .flat_map(|o| &o.dead_letters)
            .chain(&status.unattributed)
            .collect();
        assert_eq!(letters.len(), 1, "{}", status.render());
        assert_eq!(letters[0].queue, "sfpipe-extract-dlq");
        assert!(!letters[0].reason.is_empty(), "{}", status.render());
    }
}

/// Worker a takes the run's first messages alone and is killed (SIGKILL) while it holds some;
/// b and c, started after, finish the run exactly: a's messages come back after their
/// visibility timeout, and a part stored twice is merged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_on_redis_loses_nothing_and_duplicates_nothing() {
    a_killed_worker_loses_nothing(BrokerKind::Redis).await;
}

/// On RabbitMQ the killed worker's connection drops, and the broker hands its messages back at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_on_rabbitmq_loses_nothing_and_duplicates_nothing() {
    a_killed_worker_loses_nothing(BrokerKind::RabbitMq).await;
}

async fn a_killed_worker_loses_nothing(kind: BrokerKind) {
    let fleet = Fleet::start(kind).await;
    let mut a = fleet.worker("a");
    fleet.load().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.parts_stored() == 0 {
        assert!(Instant::now() < deadline, "worker a stored no part");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.0.kill().expect("SIGKILL worker a");
    let _ = a.0.wait();
    let _others = [fleet.worker("b"), fleet.worker("c")];
    fleet.wait_until_exact(Duration::from_secs(180)).await;
}
