//! A RabbitMQ node on free ports of 127.0.0.1 (AMQP, Erlang distribution and its own epmd), with
//! its data in a temporary directory, stopped when dropped. `scripts/test` installs Debian's
//! rabbitmq-server where it is missing; without it these tests fail and say how to get it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RabbitServer {
    node: Child,
    epmd: Child,
    ports: Ports,
    pub url: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The server script that runs the node in the foreground (Debian's `/usr/sbin` one switches to
/// the rabbitmq user and its fixed directories).
fn rabbitmq_server() -> String {
    std::env::var("SFPIPE_RABBITMQ_SERVER")
        .unwrap_or_else(|_| "/usr/lib/rabbitmq/bin/rabbitmq-server".into())
}

const INSTALL: &str = "run ./scripts/test, which installs Debian's rabbitmq-server where it is \
     missing (as root), or apt-get install rabbitmq-server, or set SFPIPE_RABBITMQ_SERVER to its \
     rabbitmq-server script";

impl RabbitServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (amqp, dist, epmd_port) = (free_port(), free_port(), free_port());
        let path = dir.path();
        std::fs::write(path.join("enabled_plugins"), "[].\n").expect("plugins file");
        // A worker holds a message for as long as its visibility timeout (hours for the
        // template's); the broker's default consumer_timeout (30 minutes) would close its channel.
        std::fs::write(
            path.join("rabbitmq.conf"),
            "consumer_timeout = 86400000\nlog.console = true\nlog.console.level = warning\n",
        )
        .expect("config file");
        // Its own epmd on a free port, so nothing listens on epmd's well-known 4369.
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("epmd could not be started ({e}): {INSTALL}"));
        let ports = Ports {
            amqp,
            dist,
            epmd: epmd_port,
        };
        let node = spawn_node(path, ports);
        let mut server = Self {
            node,
            epmd,
            ports,
            url: format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f"),
            dir,
        };
        server.wait_until_listening().await;
        server
    }

    /// Stops the node (SIGTERM: a clean shutdown, as an operator's restart) and starts it again
    /// on the same ports and data: durable queues and persistent messages survive.
    pub async fn restart(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.node.id().to_string()])
            .status();
        let _ = self.node.wait();
        while std::net::TcpStream::connect(("127.0.0.1", self.ports.amqp)).is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.node = spawn_node(self.dir.path(), self.ports);
        self.wait_until_listening().await;
    }

    /// The AMQP listener opens last, once the node has booted.
    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(("127.0.0.1", self.ports.amqp)).is_err() {
            if let Ok(Some(status)) = self.node.try_wait() {
                panic!("rabbitmq-server exited ({status}) before it listened: {INSTALL}");
            }
            assert!(
                Instant::now() < deadline,
                "rabbitmq-server did not listen within 90 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Clone, Copy)]
struct Ports {
    amqp: u16,
    dist: u16,
    epmd: u16,
}

fn spawn_node(path: &std::path::Path, ports: Ports) -> Child {
    Command::new(rabbitmq_server())
        .current_dir(path)
        .env("HOME", path)
        // The VM replaces the script, so killing the child stops the node.
        .env("RABBITMQ_ALLOW_INPUT", "1")
        .env(
            "RABBITMQ_NODENAME",
            format!("sfpipe-{}@localhost", ports.amqp),
        )
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", ports.amqp.to_string())
        .env("RABBITMQ_DIST_PORT", ports.dist.to_string())
        .env("ERL_EPMD_PORT", ports.epmd.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-noinput")
        .env("RABBITMQ_MNESIA_BASE", path.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", path.join("log"))
        .env("RABBITMQ_LOGS", "-")
        .env(
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            path.join("enabled_plugins"),
        )
        .env("RABBITMQ_CONFIG_FILE", path.join("rabbitmq"))
        .env("RABBITMQ_PID_FILE", path.join("pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("rabbitmq-server could not be started ({e}): {INSTALL}"))
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
        let _ = self.epmd.kill();
        let _ = self.epmd.wait();
    }
}
