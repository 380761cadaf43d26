//! A private RabbitMQ node for fault injection: its own name, ports, data directory and Erlang
//! cookie, so that stopping, killing or alarming it can never touch the shared broker on 5672.
//! Stopped (and its files removed) when dropped, also when a test fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where Debian puts the real scripts (the /usr/sbin wrappers switch user and drop our env).
fn tool(name: &str) -> PathBuf {
    let lib = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if lib.exists() {
        lib
    } else {
        PathBuf::from(name)
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// TLS files made with openssl for the node's TLS listener (CN/SAN localhost).
pub struct Tls {
    pub port: u16,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct Broker {
    pub node: String,
    pub port: u16,
    pub tls: Option<Tls>,
    dir: PathBuf,
    dist_port: u16,
}

impl Broker {
    /// Starts a node with a plain and a TLS (client certificate required) listener.
    pub fn start() -> Broker {
        let broker = Broker::prepare(&uuid::Uuid::new_v4().simple().to_string(), true);
        broker.launch();
        broker
    }

    /// Writes a node's files (cookie, config; TLS certificates when `tls`) without starting it.
    /// Nodes given the same `cookie` can form a cluster (see `cluster.rs`); every node
    /// notices a frozen peer within about 4 s (`net_ticktime`), as a cluster test needs.
    pub fn prepare(cookie: &str, tls: bool) -> Broker {
        let dir = std::env::temp_dir().join(super::harness::unique("fjord-fault"));
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        std::fs::create_dir_all(dir.join("home")).unwrap();
        let cookie_file = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie_file, cookie).unwrap();
        std::fs::set_permissions(
            &cookie_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o400),
        )
        .unwrap();
        let (port, dist_port) = (free_port(), free_port());
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n");
        let tls = if tls {
            let tls = make_certs(&dir);
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                tls.port,
                tls.ca.display(),
                dir.join("server.pem").display(),
                dir.join("server.key").display(),
            ));
            Some(tls)
        } else {
            None
        };
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        // net_ticktime 4 s: a SIGSTOPped peer is declared down in seconds, not a minute.
        std::fs::write(
            dir.join("advanced.config"),
            "[{kernel, [{net_ticktime, 4}]}].\n",
        )
        .unwrap();
        Broker {
            node: format!("{name}@localhost"),
            port,
            tls,
            dir,
            dist_port,
        }
    }

    pub fn url(&self) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{}/", self.port)
    }

    fn env(&self, cmd: &mut Command) {
        let d = &self.dir;
        cmd.env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1");
    }

    /// Starts the Erlang node (detached) and waits until RabbitMQ runs.
    pub fn launch(&self) {
        let mut cmd = Command::new(tool("rabbitmq-server"));
        self.env(&mut cmd);
        let status = cmd.arg("-detached").status().unwrap();
        assert!(status.success(), "rabbitmq-server -detached failed");
        self.await_startup();
    }

    pub fn await_startup(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .ctl(&["await_startup", "--timeout", "30"])
                .status
                .success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "private RabbitMQ did not start");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `rabbitmqctl -n <this node> ...`: never the shared node.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.cli("rabbitmqctl", args)
    }

    /// One of RabbitMQ's CLI tools (`rabbitmqctl`, `rabbitmq-queues`...) run against this node.
    pub fn cli(&self, name: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(tool(name));
        self.env(&mut cmd);
        cmd.arg("-n").arg(&self.node).args(args).output().unwrap()
    }

    /// Runs a rabbitmqctl command that must succeed.
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until a memory alarm is (or is no longer) raised.
    pub fn wait_alarm(&self, raised: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let alarms = self.must(&["eval", "rabbit_alarm:get_alarms()."]);
            if alarms.contains("memory") == raised {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "memory alarm raised={raised}: {alarms}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a signal (`-STOP`, `-CONT`...) to the broker's Erlang VM.
    pub fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap();
        let status = Command::new("kill")
            .args([sig, pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The process id of the node's Erlang VM.
    pub fn pid(&self) -> u32 {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap();
        pid.trim().parse().unwrap()
    }

    /// Whether the node's AMQP port accepts connections.
    pub fn listening(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// Stops the node as an operator would (`rabbitmqctl stop`), waiting until its port closes.
    pub fn stop(&self) {
        self.must(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.listening() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the broker's Erlang VM.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("pid")).unwrap();
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
        // Wait until the port is closed, so a restart does not race the dying VM.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.listening() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate (PKCS#8 key).
fn make_certs(dir: &Path) -> Tls {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=fjord-test-ca",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
    }
    Tls {
        port: free_port(),
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}
