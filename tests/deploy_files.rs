//! `deploy/Dockerfile`, `deploy/compose.yaml` and `deploy/compose.rabbitmq.yaml`, read as Docker
//! would read them: each compose file's commands are ones `sfpipe worker` and `sfpipe load`
//! accept, the broker they name is the file's own (Redis 7, RabbitMQ 3), the data directory they share is a volume, and the image builds the `sfpipe`
//! binary on a Rust the workspace allows. (No Docker daemon or registry is reachable here, so the
//! image is not built in the tests.)

use std::path::Path;

use clap::Parser;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
}

/// A compose file as JSON, parsed by PyYAML (from the test tools' venv).
fn compose(file: &str) -> serde_json::Value {
    let output = std::process::Command::new(sfpipe_tests::venv_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("deploy").join(file))
        .output()
        .expect("python (./scripts/tools makes the venv, or set SFPIPE_PYTHON)");
    assert!(
        output.status.success(),
        "{file} is not YAML: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[derive(Parser)]
struct Worker {
    #[command(flatten)]
    options: sfpipe_cli::worker::WorkerOptions,
}

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    options: sfpipe_cli::worker::LoadOptions,
}

fn command(service: &serde_json::Value) -> Vec<String> {
    service["command"]
        .as_array()
        .expect("a command list")
        .iter()
        .map(|a| a.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn the_compose_file_runs_workers_and_a_load_sfpipe_accepts_on_its_redis() {
    check_fleet("compose.yaml", "redis", "redis:7", "redis://redis:6379/");
}

#[test]
fn the_rabbitmq_compose_file_runs_the_same_fleet_on_its_rabbitmq() {
    check_fleet(
        "compose.rabbitmq.yaml",
        "rabbitmq",
        "rabbitmq:3",
        "amqp://guest:guest@rabbitmq:5672/%2f",
    );
    // A worker holds a message up to its visibility timeout: the broker must not close its
    // channel first (RabbitMQ's default consumer_timeout is 30 minutes).
    let compose = compose("compose.rabbitmq.yaml");
    let args =
        compose["services"]["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
            .as_str()
            .expect("the broker's arguments");
    let timeout_ms: u64 = args
        .split_whitespace()
        .skip_while(|a| *a != "consumer_timeout")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a consumer_timeout");
    let template = sfpipe_shared::deadline::StageLimits::TEMPLATE;
    let visibility = [template.extract, template.upload, template.merge]
        .iter()
        .map(|l| l.visibility_timeout.unwrap_or(l.timeout * 6))
        .max()
        .expect("three stages");
    assert!(
        u128::from(timeout_ms) > visibility.as_millis(),
        "consumer_timeout {timeout_ms} ms is not above the longest visibility timeout {visibility:?}"
    );
}

/// The file's broker service runs `image`, and its worker and load name it at `url`.
fn check_fleet(file: &str, broker: &str, image: &str, url: &str) {
    let compose = compose(file);
    let services = &compose["services"];
    let broker_image = services[broker]["image"].as_str().expect("broker image");
    assert!(broker_image.starts_with(image), "{broker_image}");

    let worker = command(&services["worker"]);
    assert_eq!(worker[0], "worker");
    let parsed = Worker::try_parse_from(
        std::iter::once("sfpipe").chain(worker[1..].iter().map(String::as_str)),
    )
    .unwrap_or_else(|e| panic!("sfpipe worker refuses the compose file's command: {e}"));
    assert_eq!(parsed.options.broker.broker, url);
    let load = command(&services["load"]);
    assert_eq!(load[0], "load");
    let parsed_load =
        Load::try_parse_from(std::iter::once("sfpipe").chain(load[1..].iter().map(String::as_str)))
            .unwrap_or_else(|e| panic!("sfpipe load refuses the compose file's command: {e}"));
    assert_eq!(
        parsed_load.options.broker.broker,
        parsed.options.broker.broker
    );
    assert_eq!(parsed_load.options.run.dir, parsed.options.dir);

    // Workers and the load share the data directory, on a volume.
    let dir = parsed.options.dir.to_string_lossy().to_string();
    for service in ["worker", "load"] {
        let mounts: Vec<&str> = services[service]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            mounts.iter().any(|m| m.ends_with(&format!(":{dir}"))
                && compose["volumes"]
                    .get(m.split(':').next().unwrap_or_default())
                    .is_some()),
            "{service} does not mount a volume at {dir}: {mounts:?}"
        );
    }
    // The worker is stopped with time to finish the message it holds.
    assert!(services["worker"]["stop_grace_period"].is_string());
}

#[test]
fn the_image_builds_the_sfpipe_binary_on_a_rust_the_workspace_allows() {
    let dockerfile =
        std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let wanted: Vec<u32> = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("rust-version")
        .split('.')
        .map(|n| n.parse().expect("a number"))
        .collect();
    let image: Vec<u32> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .and_then(|l| l.split('-').next())
        .expect("FROM rust:<version>")
        .split('.')
        .map(|n| n.parse().expect("a number"))
        .collect();
    assert!(
        image >= wanted,
        "rust:{image:?} is older than rust-version {wanted:?}"
    );
    assert!(dockerfile.contains("cargo build --release --locked -p sfpipe-cli --bin sfpipe"));
    assert!(dockerfile.contains("ENTRYPOINT [\"sfpipe\"]"));
    let cli = std::fs::read_to_string(root().join("cli/Cargo.toml")).expect("cli/Cargo.toml");
    assert!(cli.contains("[[bin]]\nname = \"sfpipe\""));
}
