//! Running the host as a service: `fjord-host check`, the transport URL from the environment or a
//! file, the admin listener (/metrics counted exactly, /healthz, /readyz failing on a dead
//! consumer and recovering), JSON logs carrying the request ids, the control endpoint from the
//! real oslo.messaging client.

use crate::harness::{path_item, unique, wasm, workspace, Host, URL};
use crate::interop::oslo_client;
use fjord_client::{RpcError, TransportUrl};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use crate::rpc::client;

/// A port nobody listens on now (bound and released: a small race, on loopback only).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the admin listener: (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The value of one sample line (`name{labels}` exactly) in a /metrics text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn check_command(config: &Path, cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(crate::harness::host_bin())
        .arg("check")
        .arg("--config")
        .arg(config)
        .current_dir(cwd)
        .env_remove("FJORD_TRANSPORT_URL")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// A directory of its own under target/test-configs.
pub fn scratch(prefix: &str) -> PathBuf {
    let dir = workspace().join("target/test-configs").join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The README's `scripts/run` serves the repository's own my.toml: it must stay valid as the
/// examples change (the guests are the release builds scripts/setup makes).
#[test]
fn the_repository_my_toml_checks_with_every_example_and_grant() {
    let root = workspace();
    for name in ["calculator", "counter", "scheduler", "compute"] {
        wasm(name);
    }
    let out = check_command(&root.join("my.toml"), &root, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for needle in [
        "server test.server1",
        "server counter.server1",
        "server scheduler.sched1",
        "select_destinations(spec)",
        "    may call compute.*",
        "server compute.node1",
        "free_resources(), instances()",
        "    may open buckets compute",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
}

#[test]
fn check_prints_what_each_server_serves_with_relative_paths_from_anywhere() {
    let dir = scratch("check");
    std::fs::copy(wasm("calculator"), dir.join("calc.wasm")).unwrap();
    std::fs::write(
        dir.join("my.toml"),
        "transport_url = \"rabbit://guest:guest@127.0.0.1:5999/\"\n\
         [admin]\nlisten = \"127.0.0.1:9464\"\n\
         [[server]]\ntopic = \"test\"\nserver = \"server1\"\ncontrol = true\nendpoints = [\"calc.wasm\"]\n",
    )
    .unwrap();
    // Run from the parent directory with a relative --config: `calc.wasm` is found next to the
    // config, not in the working directory; no broker is needed (none listens on 5999).
    let parent = dir.parent().unwrap();
    let relative = Path::new(dir.file_name().unwrap()).join("my.toml");
    let out = check_command(&relative, parent, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for needle in [
        "my.toml: ok",
        "server test.server1 on exchange openstack",
        "fjord:calculator/calculator@1.0.0 version 1.0 namespace -",
        "add(a, b)",
        "divide(dividend, divisor, rounding)",
        "calc.wasm",
        "admin http://127.0.0.1:9464/metrics",
        "control endpoint version 1.0 namespace fjord.control: ping, reload, status, stop",
        "rabbit://guest:****@127.0.0.1:5999/ (from transport_url)",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    assert!(
        !stdout.contains("guest:guest"),
        "password printed:\n{stdout}"
    );
}

#[test]
fn check_fails_with_the_one_line_the_host_refuses_with() {
    let dir = scratch("check-bad");
    let calculator = path_item(&wasm("calculator"));
    let text = format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"t\"\nserver = \"s\"\nendpoints = [{calculator}, {calculator}]\n"
    );
    std::fs::write(dir.join("bad.toml"), &text).unwrap();
    let out = check_command(&dir.join("bad.toml"), &dir, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("method `add`") && stderr.contains("calculator.wasm"),
        "{stderr}"
    );
    // The host itself refuses to start with the same line.
    let mut host = Host::spawn(&text);
    assert!(!host.wait_exit(Duration::from_secs(60)).unwrap().success());
    assert_eq!(host.log().trim(), stderr.trim());

    std::fs::write(
        dir.join("typo.toml"),
        "transport_url = \"rabbit://\"\n[admin]\nlisten = \"localhost\"\n[[server]]\ntopic='t'\nserver='s'\nendpoints=['x.wasm']\n",
    )
    .unwrap();
    let out = check_command(&dir.join("typo.toml"), &dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("[admin] listen"), "{stderr}");
}

#[test]
fn the_transport_url_comes_from_the_environment_or_a_file_and_its_password_is_never_printed() {
    let dir = scratch("check-url");
    let calculator = path_item(&wasm("calculator"));
    std::fs::write(
        dir.join("url.txt"),
        "rabbit://fjord:fromfile-s3cret@127.0.0.1:5998/\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("file.toml"),
        format!("transport_url_file = \"url.txt\"\n[[server]]\ntopic = \"t\"\nserver = \"s\"\nendpoints = [{calculator}]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("none.toml"),
        format!("[[server]]\ntopic = \"t\"\nserver = \"s\"\nendpoints = [{calculator}]\n"),
    )
    .unwrap();
    let out = check_command(&dir.join("file.toml"), Path::new("/"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("rabbit://fjord:****@127.0.0.1:5998/ (from transport_url_file "),
        "{stdout}"
    );
    let env = [(
        "FJORD_TRANSPORT_URL",
        "rabbit://fjord:fromenv-s3cret@127.0.0.1:5997/",
    )];
    for file in ["file.toml", "none.toml"] {
        let out = check_command(&dir.join(file), &dir, &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout.contains("rabbit://fjord:****@127.0.0.1:5997/ (from FJORD_TRANSPORT_URL)"),
            "{stdout}"
        );
        assert!(!stdout.contains("s3cret"), "{stdout}");
    }
    let out = check_command(&dir.join("none.toml"), &dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("FJORD_TRANSPORT_URL"),
        "{stderr}"
    );
    // The host connects with the URL from the environment (the file's one has no broker): a
    // refused connection names the address, never the password.
    let mut host = Host::spawn_with(
        &std::fs::read_to_string(dir.join("file.toml"))
            .unwrap()
            .replace("url.txt", &dir.join("url.txt").display().to_string()),
        &[],
        &env,
    );
    assert!(!host.wait_exit(Duration::from_secs(60)).unwrap().success());
    let log = host.log();
    assert!(log.contains("127.0.0.1:5997"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");
}

fn admin_config(topic: &str, port: u16, endpoints: &str) -> String {
    format!(
        "transport_url = \"{URL}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\n\
         [[server]]\ntopic = \"{topic}\"\nserver = \"server1\"\nendpoints = [{endpoints}]\n"
    )
}

/// After a known mix of calls, every counter is exactly what was done.
#[tokio::test]
async fn metrics_count_a_known_mix_of_calls_exactly() {
    let topic = unique("ops-metrics");
    let port = free_port();
    let host = Host::start(&admin_config(&topic, port, &path_item(&wasm("calculator"))));
    let c = client(&topic).await;
    let ctx = Map::new();
    for i in 0..3 {
        let sum: i64 = c.call(&ctx, "add", json!({"a": i, "b": 1})).await.unwrap();
        assert_eq!(sum, i + 1);
    }
    for _ in 0..2 {
        let e = c
            .call::<Value>(&ctx, "divide", json!({"dividend": 1, "divisor": 0}))
            .await;
        assert!(matches!(e, Err(RpcError::Remote(_))), "{e:?}");
    }
    let e = c.call::<Value>(&ctx, "no_such", json!({})).await;
    assert!(matches!(e, Err(RpcError::Remote(_))), "{e:?}");
    c.cast(&ctx, "add", json!({"a": 1, "b": 1})).await.unwrap();

    let server = format!("server=\"{topic}.server1\"");
    let endpoint = "endpoint=\"fjord:calculator/calculator@1.0.0\"";
    let add_ok = format!("fjord_calls_total{{{server},{endpoint},method=\"add\",outcome=\"ok\"}}");
    // The cast is counted once it has run.
    let started = Instant::now();
    let text = loop {
        let (status, text) = get(port, "/metrics");
        assert_eq!(status, 200);
        if sample(&text, &add_ok) == Some(4.0) || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("/metrics after 3 adds, 1 cast add, 2 divisions by zero, 1 unknown method:\n{text}");
    let expect = [
        (add_ok.clone(), 4.0),
        (
            format!("fjord_calls_total{{{server},{endpoint},method=\"divide\",outcome=\"error\"}}"),
            2.0,
        ),
        (
            format!("fjord_rejected_total{{{server},reason=\"NoSuchMethod\"}}"),
            1.0,
        ),
        (
            format!("fjord_call_duration_seconds_count{{{server},{endpoint},method=\"add\"}}"),
            4.0,
        ),
        (
            format!("fjord_call_duration_seconds_count{{{server},{endpoint},method=\"divide\"}}"),
            2.0,
        ),
        ("fjord_instantiate_duration_seconds_count".to_string(), 6.0),
        ("fjord_calls_in_flight".to_string(), 0.0),
        ("fjord_reconnects_total".to_string(), 0.0),
        ("fjord_reply_drops_total".to_string(), 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, &series), Some(value), "{series}:\n{text}");
    }
    let calls: usize = text
        .lines()
        .filter(|l| l.starts_with("fjord_calls_total{"))
        .count();
    assert_eq!(calls, 2, "only the two series that happened:\n{text}");
    let peak = sample(
        &text,
        "fjord_guest_memory_peak_bytes{endpoint=\"fjord:calculator/calculator@1.0.0\"}",
    )
    .unwrap();
    assert!(peak >= 65536.0, "at least one wasm page: {peak}");
    assert!(text.contains("# TYPE fjord_call_duration_seconds histogram"));
    assert_eq!(get(port, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(port, "/nothing-here").0, 404);
    drop(host);
}

/// /readyz fails naming the queue whose consumer is dead, and recovers once it consumes again.
/// The queue is deleted (which cancels the host's consumer) and its name held by an exclusive
/// queue of the test's own connection, so the host cannot take it back until the test lets go.
#[tokio::test]
async fn readyz_names_a_dead_consumer_and_recovers() {
    let topic = unique("ops-ready");
    let port = free_port();
    let host = Host::start(&admin_config(&topic, port, &path_item(&wasm("calculator"))));
    let (status, body) = get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("3 queues consumed"), "{body}");

    let server_queue = format!("{topic}.server1");
    let url = TransportUrl::parse(URL).unwrap();
    let admin = fjord_oslo::connect(&url, "test-readyz").await.unwrap();
    let mut held = None;
    for _ in 0..50 {
        let channel = admin.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(server_queue.as_str().into(), Default::default())
            .await;
        let exclusive = lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        if channel
            .queue_declare(server_queue.as_str().into(), exclusive, Default::default())
            .await
            .is_ok()
        {
            held = Some(channel);
            break;
        }
        // The host re-declared it first: delete it again.
    }
    assert!(held.is_some(), "could not hold the queue name");
    let started = Instant::now();
    let failed = loop {
        let (status, body) = get(port, "/readyz");
        if status == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "/readyz stayed ready:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("/readyz with the consumer dead: {failed}");
    assert!(failed.contains(&server_queue), "{failed}");
    assert_eq!(get(port, "/healthz").0, 200, "alive all the same");
    let _ = admin.close(200, "let go".into()).await;
    let started = Instant::now();
    loop {
        let (status, body) = get(port, "/readyz");
        if status == 200 {
            assert!(body.contains("3 queues consumed"), "{body}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz did not recover: {body}\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = client(&topic).await;
    let seven: i64 = c
        .prepare()
        .server("server1")
        .build()
        .call(&Map::new(), "add", json!({"a": 3, "b": 4}))
        .await
        .unwrap();
    assert_eq!(seven, 7);
}

/// `--log-format json`: one JSON object per line, and every line of a call, the guest's own
/// included, carries the call's request_id and global_request_id.
#[tokio::test]
async fn json_logs_carry_the_request_ids() {
    let topic = unique("ops-json");
    let host = Host::start_with(
        &crate::harness::config(&[(&topic, "server1", &path_item(&wasm("calculator")))]),
        &["--log-format", "json"],
        &[],
    );
    let c = client(&topic).await;
    let ctx: Map<String, Value> = json!({
        "request_id": "req-json-1",
        "global_request_id": "greq-json-2",
        "user": "alice",
    })
    .as_object()
    .unwrap()
    .clone();
    let who: String = c.call(&ctx, "whoami", json!({})).await.unwrap();
    assert_eq!(who, "alice@anonymous");
    let e = c
        .call::<Value>(&ctx, "divide", json!({"dividend": 1, "divisor": 0}))
        .await;
    assert!(e.is_err());
    assert!(host.wait_for("DivisionByZero", Duration::from_secs(10)));
    let log = host.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let of_call: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l.to_string().contains("whoami for request") || l.to_string().contains("DivisionByZero")
        })
        .collect();
    assert_eq!(of_call.len(), 2, "{log}");
    for line in of_call {
        assert_eq!(line["span"]["request_id"], "req-json-1", "{line}");
        assert_eq!(line["span"]["global_request_id"], "greq-json-2", "{line}");
    }
}

/// `control = true`: the real oslo.messaging client pings the host, reads its status, finds
/// no other method there, and stops it.
#[test]
fn the_control_endpoint_from_the_real_oslo_client() {
    let topic = unique("ops-control");
    let mut host = Host::start(&format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"server1\"\ncontrol = true\nendpoints = [{}]\n",
        path_item(&wasm("calculator"))
    ));
    let control = |id: &str, method: &str| {
        json!({"id": id, "kind": "call", "method": method, "args": {},
               "namespace": "fjord.control", "server": "server1"})
    };
    let out = oslo_client(
        &topic,
        &[
            json!({"id": "add", "kind": "call", "method": "add", "args": {"a": 2, "b": 3}}),
            control("ping", "ping"),
            control("status", "status"),
            control("nope", "nope"),
            json!({"id": "args", "kind": "call", "method": "ping", "args": {"x": 1},
                   "namespace": "fjord.control", "server": "server1"}),
        ],
    );
    assert_eq!(out["add"]["result"], 5, "{out:?}");
    assert_eq!(out["ping"]["result"], "pong", "{out:?}");
    let status = &out["status"]["result"];
    assert_eq!(status["server"], format!("{topic}.server1"), "{status}");
    assert_eq!(
        status["endpoints"][0]["interface"],
        "fjord:calculator/calculator@1.0.0"
    );
    assert_eq!(status["calls"]["ok"], 2, "add and ping so far: {status}");
    assert_eq!(out["nope"]["exc_type"], "NoSuchMethod", "{out:?}");
    assert_eq!(out["args"]["exception"], "TypeError", "{out:?}");
    let out = oslo_client(&topic, &[control("stop", "stop")]);
    assert_eq!(out["stop"]["result"], "stopping", "{out:?}");
    let status = host
        .wait_exit(Duration::from_secs(30))
        .expect("still running");
    assert!(status.success(), "{status:?}\n{}", host.log());
    assert!(host.log().contains("stopped"), "{}", host.log());
}
