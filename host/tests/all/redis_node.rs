//! Redis for the keyvalue tests: the shared one on 127.0.0.1:6379 (with a key prefix unique to each
//! test, removed afterwards), or a PRIVATE `redis-server` on a port of its own for tests that stop
//! Redis (the shared one is never stopped).

use crate::broker::free_port;
use crate::harness::unique;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SHARED_URL: &str = "redis://127.0.0.1:6379/0";

/// A key prefix no other test uses; its keys are deleted when dropped.
pub struct Prefix {
    pub prefix: String,
}

impl Prefix {
    pub fn new(test: &str) -> Prefix {
        Prefix {
            prefix: format!("{}:", unique(&format!("fjord-test-{test}"))),
        }
    }

    /// The `[keyvalue]` section for the shared Redis with this prefix.
    pub fn section(&self) -> String {
        format!(
            "\n[keyvalue]\nurl = \"{SHARED_URL}\"\nprefix = \"{}\"\n",
            self.prefix
        )
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(SHARED_URL) else {
            return;
        };
        let Ok(mut c) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}

/// A private Redis; killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis {
            port: free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on its port and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = self.url();
        loop {
            let ping = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not answer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
