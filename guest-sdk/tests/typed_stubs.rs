//! `fjord_guest::generate_client!`: typed stubs over the `rpc` import compile over real WIT
//! (natively here: the import exists only in a component, so nothing is called), and their
//! types encode as fjord-host's `convert.rs` expects.

use fjord_guest::rpc::{Client, Error, Target};
use serde_json::json;

fjord_guest::generate_client!({ path: "../wit/compute" });
// wit/scheduler/deps/endpoint is a plain file (not yet a symlink) in this tree: the same WIT
// through a deps/ symlink to wit/endpoint.
fjord_guest::generate_client!({ path: "tests/wit/scheduler" });
fjord_guest::generate_client!({ path: "../client/tests/wit/shapes" });

/// The stubs exist with these exact types (checked by the compiler; never run).
#[allow(dead_code)]
fn signatures() -> Result<(), Error> {
    let compute = Compute::new(&Client::new(Target::topic("compute")));
    let node = compute
        .prepare()
        .server("node1")
        .version("5.0")
        .namespace("n")
        .timeout(std::time::Duration::from_secs(1))
        .context(&json!({"user_id": "alice"}))?
        .build();
    let _: compute::Resources = node.free_resources()?;
    let () = node.build_and_run_instance(&compute::Instance {
        name: "vm".into(),
        ram_mb: 1,
    })?;
    node.cast_build_and_run_instance(&compute::Instance {
        name: "vm".into(),
        ram_mb: 1,
    })?;
    let _: Vec<String> = node.instances()?;

    let scheduler = Scheduler::new(&Client::new(Target::topic("scheduler")));
    let _: scheduler::Destination = scheduler.select_destinations(&scheduler::RequestSpec {
        name: "vm".into(),
        ram_mb: 1,
    })?;
    let _: &Client = scheduler.rpc_client();
    Ok(())
}

#[test]
fn versions_come_from_the_wit() {
    assert_eq!(Compute::VERSION, "5.0");
    assert_eq!(Scheduler::VERSION, "4.5");
    assert_eq!(Scheduler::INTERFACE, "fjord:scheduler/scheduler@4.5.0");
    assert_eq!(shapes::Shapes::VERSION, "2.1");
}

#[test]
fn the_version_is_asked_for_unless_the_client_names_one() {
    let plain = Compute::new(&Client::new(Target::topic("compute")));
    assert_eq!(plain.rpc_client().target().version.as_deref(), Some("5.0"));
    let pinned = Client::new(Target::topic("compute"))
        .prepare()
        .version("5.1")
        .build();
    let typed = Compute::new(&pinned);
    assert_eq!(typed.rpc_client().target().version.as_deref(), Some("5.1"));
    let node = typed.prepare().server("node1").build();
    assert_eq!(node.rpc_client().target().server.as_deref(), Some("node1"));
}

#[test]
fn types_encode_as_the_host_reads_them() {
    let spec = scheduler::RequestSpec {
        name: "vm".into(),
        ram_mb: 512,
    };
    assert_eq!(
        serde_json::to_value(&spec).unwrap(),
        json!({"name": "vm", "ram_mb": 512})
    );
    let shape = shapes::Shape::Named(("n".into(), Some(shapes::Color::DarkGreen)));
    assert_eq!(
        serde_json::to_value(&shape).unwrap(),
        json!({"named": ["n", "dark_green"]})
    );
    let e: scheduler::RemoteError = serde_json::from_value(
        json!({"module": "nova.exception", "class": "NoValidHost", "message": "m"}),
    )
    .unwrap();
    assert_eq!(e.class, "NoValidHost");
}
