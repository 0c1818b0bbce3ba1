//! `sfpipe sim` prints every credential it accepts, so a third-party client can log in with any
//! flow it prints: each printed secret is one the simulator takes.

#![allow(clippy::expect_used)] // test support: a panic is a failure

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sfpipe_simulator::SimConfig;

/// A child process killed when dropped, so a failed assertion leaves no server behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sim_prints_every_credential_it_accepts() {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_sfpipe"))
            .args(["sim", "--port", "0", "--rows", "10", "--soap-login"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sfpipe sim"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut printed = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        let done = line.starts_with("Ctrl-C stops it.");
        printed.push_str(&line);
        printed.push('\n');
        if done {
            break;
        }
    }
    let defaults = SimConfig::default();
    for (what, secret) in [
        ("client id", &defaults.client_id),
        ("client secret", &defaults.client_secret),
        ("username", &defaults.username),
        ("password", &defaults.password),
        ("refresh token", &defaults.refresh_token),
    ] {
        assert!(
            printed.contains(secret.as_str()),
            "no {what} in:\n{printed}"
        );
    }
    assert!(printed.contains("SOAP login()"), "{printed}");
    assert!(printed.contains("http://127.0.0.1:"), "{printed}");
}
