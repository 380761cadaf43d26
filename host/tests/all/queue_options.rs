//! oslo deployments' queue options (durable control exchange, quorum topic queues, transient
//! quorum fanout and reply queues, queue TTLs): a real oslo.messaging server configured with
//! them and fjord-host with the same options in its URL share a topic on a private node
//! (quorum queues are durable: they must not litter the shared broker), and their queues are
//! declared identically.

use crate::broker::Broker;
use crate::harness::{path_item, unique, wasm, workspace, Host};
use fjord_client::{RpcClient, Target, Transport, TransportUrl};
use serde_json::{json, Map};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const OPTIONS: &str = "rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true\
    &amqp_durable_queues=true&rabbit_transient_queues_ttl=120";

/// `name -> "durable auto_delete type arguments"` for every queue on the node.
fn queues(broker: &Broker) -> Vec<(String, String)> {
    broker
        .must(&[
            "list_queues",
            "-q",
            "name",
            "durable",
            "auto_delete",
            "type",
            "arguments",
        ])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(char::is_whitespace)?;
            let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
            // Argument order is not significant to RabbitMQ (lapin sorts, kombu does not).
            let (flags, args) = rest.split_once('[')?;
            let args = args.trim_start_matches('{').trim_end_matches(']');
            let mut args: Vec<&str> = args.trim_end_matches('}').split("},{").collect();
            args.sort_unstable();
            Some((
                name.to_string(),
                format!("{flags}[{{{}}}]", args.join("},{")),
            ))
        })
        .collect()
}

#[tokio::test]
async fn quorum_durable_and_ttl_options_match_oslo() {
    let broker = Broker::start();
    let topic = unique("qopts");
    let conf = std::env::temp_dir().join(format!("{topic}.conf"));
    std::fs::write(
        &conf,
        "[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n\
         rabbit_transient_quorum_queue = true\namqp_durable_queues = true\n\
         rabbit_transient_queues_ttl = 120\n",
    )
    .unwrap();
    let mut py = Command::new(crate::interop::python::python())
        .arg(workspace().join("interop/oslo_server.py"))
        .args([&broker.url(), &topic, "py"])
        .env("FJORD_OSLO_CONFIG", &conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(py.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "ready");

    // A flag that differed from oslo's on the shared topic queue would be a 406 here.
    let url = format!("{}?{OPTIONS}", broker.url());
    let host = Host::start(&format!(
        "transport_url = \"{url}\"\n\n[[server]]\ntopic = \"{topic}\"\nserver = \"fj\"\n\
         endpoints = [{}]\n",
        path_item(&wasm("calculator"))
    ));
    let transport = Transport::connect(&TransportUrl::parse(&url).unwrap())
        .await
        .unwrap();
    let client = RpcClient::new(transport.clone(), Target::new(&topic).server("fj"))
        .prepare()
        .timeout(Duration::from_secs(20))
        .build();
    let sum: i64 = client
        .call(&Map::new(), "add", json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 3);

    let all = queues(&broker);
    let get = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        all.iter()
            .filter(|(n, _)| pred(n))
            .map(|(_, props)| props.clone())
            .collect()
    };
    let py_server = get(&|n| n == format!("{topic}.py"));
    let fj_server = get(&|n| n == format!("{topic}.fj"));
    assert_eq!(py_server.len(), 1, "{all:?}");
    assert_eq!(py_server, fj_server, "{all:?}");
    assert!(py_server[0].starts_with("true false quorum"), "{all:?}");
    let fanouts = get(&|n| n.starts_with(&format!("{topic}_fanout_")));
    assert_eq!(fanouts.len(), 2, "{all:?}");
    assert_eq!(fanouts[0], fanouts[1], "{all:?}");
    assert!(fanouts[0].contains("x-expires\",120000"), "{all:?}");
    assert!(fanouts[0].contains("x-queue-type\",\"quorum"), "{all:?}");
    assert!(fanouts[0].starts_with("true false quorum"), "{all:?}");
    // The client's reply queue: a transient queue like the fanout ones.
    let reply = get(&|n| n == transport.reply_queue_name());
    assert_eq!(reply, vec![fanouts[0].clone()], "{all:?}");
    let exchanges = broker.must(&["list_exchanges", "-q", "name", "durable"]);
    assert!(
        exchanges
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["openstack", "true"]),
        "{exchanges}"
    );

    let _ = py.kill();
    let _ = py.wait();
    drop(host);
    let _ = std::fs::remove_file(conf);
}
