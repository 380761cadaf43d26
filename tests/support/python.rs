//! The venv's Python and a real oslo.messaging server (`interop/oslo_server.py`) for interop tests.
//! Shared by the client's, the CLI's and the host's tests (each includes this file with `#[path]`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (the parent of every crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `.venv/bin/python`, which `scripts/setup` creates with oslo.messaging 18.3.1.
pub fn python() -> PathBuf {
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it creates .venv with oslo.messaging 18.3.1)",
        p.display()
    );
    p
}

/// A running Python oslo.messaging RPC server; killed on drop, even when the test fails.
pub struct PyServer {
    child: Child,
    lines: Receiver<String>,
    #[allow(dead_code)] // read by the client's tests only
    pub topic: String,
}

impl PyServer {
    /// Starts a server for `topic` and `server` at `url` and waits until it prints `ready`.
    pub fn spawn(url: &str, topic: &str, server: &str) -> PyServer {
        PyServer::spawn_env(url, topic, server, &[])
    }

    /// Like [`PyServer::spawn`], with extra environment (`FJORD_OSLO_CONFIG`...).
    pub fn spawn_env(url: &str, topic: &str, server: &str, env: &[(&str, &str)]) -> PyServer {
        PyServer::spawn_script("oslo_server.py", &[url, topic, server], topic, env)
    }

    /// Starts `interop/<script>` with `args` and waits until it prints `ready`.
    pub fn spawn_script(
        script: &str,
        args: &[&str],
        topic: &str,
        env: &[(&str, &str)],
    ) -> PyServer {
        let mut child = Command::new(python())
            .arg(workspace_root().join("interop").join(script))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start interop/{script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let server = PyServer {
            child,
            lines,
            topic: topic.to_string(),
        };
        let ready = server.next_line(Duration::from_secs(60));
        assert_eq!(
            ready.as_deref(),
            Some("ready"),
            "interop/{script} did not start"
        );
        server
    }

    /// The server's process id (its RabbitMQ connection is named `oslo_server.py:<pid>:<uuid>`).
    #[allow(dead_code)] // used by the host's cluster tests only
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the server printed, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next `record` line the server printed, parsed.
    #[allow(dead_code)] // used by the client's tests only
    pub fn next_record(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(line) = self.next_line(Duration::from_secs(1)) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v.is_object() {
                        return v;
                    }
                }
            }
        }
        panic!("the Python server printed no record");
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
