//! The nova flow across languages with the real oslo.messaging 18.3.1: a Python conductor
//! (`interop/nova_conductor.py`) calls the fjord scheduler (`endpoints/scheduler` in Rust, or
//! `endpoints/scheduler-py` in Python), which asks a Python compute server
//! (`interop/nova_compute.py`) and a fjord compute server (`endpoints/compute`) for their free
//! RAM, casts the build to one, or raises `NoValidHost`.

use crate::harness::{path_item, unique, wasm, workspace, Host, URL};
use crate::interop::python::{python, PyServer};
use crate::rpc::client;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A host serving the scheduler component `scheduler_wasm` (on `scheduler`/`sched1`, granted
/// `<compute>.*`) and one fjord compute node `node-rs` with `ram_mb`.
pub fn nova_config(
    scheduler_wasm: &str,
    scheduler: &str,
    compute: &str,
    hosts: &str,
    ram_mb: u64,
) -> String {
    format!(
        "transport_url = \"{URL}\"\n\
         [[server]]\ntopic = \"{scheduler}\"\nserver = \"sched1\"\n\
         endpoints = [{{ path = {}, calls = [\"{compute}.*\"], \
         env = {{ COMPUTE_HOSTS = \"{hosts}\", COMPUTE_TOPIC = \"{compute}\" }} }}]\n\
         [[server]]\ntopic = \"{compute}\"\nserver = \"node-rs\"\n\
         endpoints = [{{ path = {}, keyvalue = [\"compute\"], \
         env = {{ COMPUTE_HOST = \"node-rs\", COMPUTE_RAM_MB = \"{ram_mb}\" }} }}]\n\
         [keyvalue]\npath = {}\n",
        path_item(&wasm(scheduler_wasm)),
        path_item(&wasm("compute")),
        path_item(&std::env::temp_dir().join(format!("{}.redb", unique("nova")))),
    )
}

/// Runs the conductor's cases; each case's answer by id.
fn conductor(scheduler: &str, cases: &[Value]) -> HashMap<String, Value> {
    let mut child = Command::new(python())
        .arg(workspace().join("interop/nova_conductor.py"))
        .args([URL, scheduler])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run interop/nova_conductor.py");
    {
        let mut stdin = child.stdin.take().unwrap();
        for case in cases {
            writeln!(stdin, "{case}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v["id"].as_str()?.to_string(), v)))
        .collect();
    assert_eq!(
        answers.len(),
        cases.len(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    answers
}

#[tokio::test]
async fn a_python_conductor_schedules_onto_python_and_fjord_compute_nodes() {
    schedule_onto_python_and_fjord_compute_nodes("scheduler").await;
}

/// The same flow with the scheduler written in Python (`fjord_guest.rpc`).
#[tokio::test]
async fn the_python_scheduler_endpoint_schedules_the_same() {
    schedule_onto_python_and_fjord_compute_nodes("scheduler-py").await;
}

async fn schedule_onto_python_and_fjord_compute_nodes(scheduler_wasm: &str) {
    let scheduler = unique("scheduler");
    let compute = unique("compute");
    let py_compute = PyServer::spawn_script(
        "nova_compute.py",
        &[URL, &compute, "node-py", "2048"],
        &compute,
        &[],
    );
    let host = Host::start(&nova_config(
        scheduler_wasm,
        &scheduler,
        &compute,
        "node-py,node-rs",
        4096,
    ));
    let spec = |name: &str, ram: u64| json!({"name": name, "ram_mb": ram});
    let answers = conductor(
        &scheduler,
        &[
            // Only the fjord node (4096 MB) fits 3000 MB.
            json!({"id": "big", "spec": spec("vm1", 3000)}),
            // Now the Python node (2048) has the most free RAM (node-rs has 1096 left).
            json!({"id": "small", "spec": spec("vm2", 1500)}),
            json!({"id": "none", "spec": spec("vm3", 100_000), "exmods": true}),
            json!({"id": "none-plain", "spec": spec("vm3", 100_000)}),
            json!({"id": "invalid", "spec": spec("", 0)}),
        ],
    );
    assert_eq!(answers["big"]["result"]["host"], "node-rs", "{answers:?}");
    assert_eq!(answers["small"]["result"]["host"], "node-py", "{answers:?}");
    let none = &answers["none"];
    assert_eq!(
        (&none["module"], &none["class"]),
        (&json!("nova.exception"), &json!("NoValidHost")),
        "{none}"
    );
    assert_eq!(none["is_novalidhost"], true, "{none}");
    let plain = &answers["none-plain"];
    assert_eq!(
        (&plain["class"], &plain["exc_type"]),
        (&json!("RemoteError"), &json!("NoValidHost")),
        "{plain}"
    );
    // A builtins class is raised as itself, not as a `_Remote` subclass.
    assert_eq!(answers["invalid"]["raised"], "ValueError", "{answers:?}");

    // The casts arrived: vm2 at the Python node (with the conductor's request id passed on),
    // vm1 at the fjord node.
    let built: Value = loop {
        let line = py_compute
            .next_line(Duration::from_secs(10))
            .expect("the Python compute node got no build");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            break v;
        }
    };
    assert_eq!(built["built"]["name"], "vm2");
    assert_eq!(built["ctxt"]["request_id"], "req-small");
    assert_eq!(built["ctxt"]["global_request_id"], "req-small");
    let node_rs = client(&compute)
        .await
        .prepare()
        .server("node-rs")
        .version("5.0")
        .build();
    let instances: Vec<String> = node_rs
        .call(&Map::new(), "instances", json!({}))
        .await
        .unwrap();
    assert_eq!(instances, ["vm1"], "{}", host.log());
}
