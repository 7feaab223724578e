//! `gavel serve` as a child process, for the tests that kill it with SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::helpers::client;

pub struct ChildServer {
    child: Child,
    pub base: String,
    /// Lines in which the saga says it froze at a pause point (`GAVEL_FAULTS__PAUSE_AT`).
    pub paused: mpsc::UnboundedReceiver<String>,
}

impl ChildServer {
    /// Starts `gavel serve` (API and workers, test config) on `db`, with `env`
    /// laid over, and waits until it is ready.
    pub async fn start(db: &str, env: &[(&str, String)]) -> Self {
        Self::start_roles(db, &[], env).await
    }

    /// [`ChildServer::start`] with `--role` for each of `roles` (none: all).
    /// `base` is the API, or the operations listener of a process without it.
    pub async fn start_roles(db: &str, roles: &[&str], env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gavel"));
        cmd.arg("serve");
        for role in roles {
            cmd.args(["--role", role]);
        }
        cmd.env("DATABASE_URL", db)
            .env("GAVEL_ENV", "test")
            .env("GAVEL_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("GAVEL_OPS_ADDR", format!("127.0.0.1:{port}"))
            .env("GAVEL_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn gavel");
        let (tx, paused) = mpsc::unbounded_channel();
        if let Some(stderr) = child.stderr.take() {
            // Drained to the end, so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("gavel: paused at") {
                        let _ = tx.send(line);
                    }
                }
            });
        }
        // Owned by `ChildServer` from here on, so every path (a panic included) reaps it.
        let server = Self { child, base: format!("http://127.0.0.1:{port}"), paused };
        for _ in 0..200 {
            let ready = client().get(format!("{}/readyz", server.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gavel did not become ready on {}", server.base);
    }

    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (through `kill(1)`: the crates forbid `unsafe`).
    pub fn terminate(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.as_ref().is_ok_and(|s| s.success()), "kill -TERM failed: {sent:?}");
    }

    /// The exit status if the process ends within `within`.
    pub async fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) {
        self.child.kill().expect("kill the child process");
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a local socket")
}
