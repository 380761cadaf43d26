//! Running real `fjord-host` processes against the real broker, and what tests need around them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const URL: &str = "rabbit://guest:guest@127.0.0.1:5672/";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A guest component built by `scripts/setup` (cargo build --release --target wasm32-wasip2 ...).
pub fn wasm(name: &str) -> PathBuf {
    let path = workspace().join(format!("target/wasm32-wasip2/release/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (or cargo build --release --target wasm32-wasip2 -p {name})",
        path.display()
    );
    path
}

/// The fjord-host binary the tests run: `FJORD_HOST_BIN` when set (a copy kept apart from a
/// target directory that another checkout's builds overwrite), else the one cargo built with
/// these tests.
pub fn host_bin() -> PathBuf {
    std::env::var_os("FJORD_HOST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fjord-host")))
}

/// A topic no other test uses, so tests can run in parallel on one broker.
/// A request context from a JSON object of its keys (`json!({"request_id": ...})`).
pub fn context(pairs: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .as_object()
        .cloned()
        .expect("a request context is a JSON object")
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// The host's log, shared with the thread that reads its stderr.
#[derive(Default)]
struct Log {
    text: Mutex<String>,
    changed: Condvar,
}

/// A running `fjord-host`; killed when dropped.
pub struct Host {
    child: Child,
    log: Arc<Log>,
    _dir: PathBuf,
}

impl Host {
    /// Starts a host with this config text and waits until it is consuming.
    pub fn start(config: &str) -> Host {
        let host = Host::spawn(config);
        if !host.wait_for("fjord-host ready", Duration::from_secs(120)) {
            panic!("fjord-host did not become ready:\n{}", host.log());
        }
        host
    }

    /// Starts a host without waiting: for tests of start-up failures.
    pub fn spawn(config: &str) -> Host {
        Host::spawn_with(config, &[], &[])
    }

    /// Starts a host with extra arguments and environment variables and waits until it is
    /// consuming.
    pub fn start_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Host {
        let host = Host::spawn_with(config, args, env);
        if !host.wait_for("fjord-host ready", Duration::from_secs(120)) {
            panic!("fjord-host did not become ready:\n{}", host.log());
        }
        host
    }

    /// [`Host::spawn`] with extra arguments and environment variables.
    pub fn spawn_with(config: &str, args: &[&str], env: &[(&str, &str)]) -> Host {
        let dir = workspace().join("target/test-configs").join(unique("host"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("fjord.toml");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new(host_bin())
            .arg("--config")
            .arg(&file)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,lapin=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start fjord-host");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut text = sink.text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                sink.changed.notify_all();
            }
        });
        Host {
            child,
            log,
            _dir: dir,
        }
    }

    /// The config file the host was started with (rewrite it, then SIGHUP, to reload).
    pub fn config_file(&self) -> PathBuf {
        self._dir.join("fjord.toml")
    }

    /// Sends SIGHUP: reload.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until `needle` occurs at least `n` times in the log.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.log.text.lock().unwrap();
        loop {
            if text.matches(needle).count() >= n {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = self
                .log
                .changed
                .wait_timeout(text, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The host's process id (for /proc/PID/status and for sending signals).
    /// A `/proc/PID/status` field of the host in KiB (`"VmRSS:"`, `"VmHWM:"`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
    }

    /// The host's resident set in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.text.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_count(needle, 1, timeout)
    }

    /// Waits for the process to exit (for hosts that must refuse to start).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the log reader a moment to drain stderr.
                std::thread::sleep(Duration::from_millis(100));
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Host {
    /// Asks the host to stop as an operator would (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Host {
    /// Kills the host at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Orderly first, so the host deletes its fanout queues; then for sure.
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Config text for one host: `servers` are (topic, server, endpoints as TOML array items).
pub fn config(servers: &[(&str, &str, &str)]) -> String {
    let mut text = format!("transport_url = \"{URL}\"\n");
    for (topic, server, endpoints) in servers {
        text.push_str(&format!(
            "\n[[server]]\ntopic = \"{topic}\"\nserver = \"{server}\"\nendpoints = [{endpoints}]\n"
        ));
    }
    text
}

/// A TOML string literal of a path.
pub fn path_item(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The calculators every calculator test runs against: the Rust `endpoints/calculator` and the
/// Python `endpoints/calculator-py` (same WIT, same answers), as `wasm()` names.
pub const CALCULATORS: [&str; 2] = ["calculator", "calculator-py"];

/// Runs each listed test function (`fn name(calculator: &str)`, async or not) once per calculator:
/// as `rust_calculator::name` with `"calculator"` and `python_calculator::name` with
/// `"calculator-py"` (the names of [`CALCULATORS`]), so a filter picks one language or both.
#[macro_export]
macro_rules! for_each_calculator {
    ($(async: [$($a:ident),* $(,)?])? $(sync: [$($s:ident),* $(,)?])?) => {
        /// Against the Rust calculator (`endpoints/calculator`).
        mod rust_calculator {
            $($( #[tokio::test] async fn $a() { super::$a($crate::harness::CALCULATORS[0]).await } )*)?
            $($( #[test] fn $s() { super::$s($crate::harness::CALCULATORS[0]) } )*)?
        }
        /// Against the Python calculator (`endpoints/calculator-py`, built by scripts/build-python).
        mod python_calculator {
            $($( #[tokio::test] async fn $a() { super::$a($crate::harness::CALCULATORS[1]).await } )*)?
            $($( #[test] fn $s() { super::$s($crate::harness::CALCULATORS[1]) } )*)?
        }
    };
}
