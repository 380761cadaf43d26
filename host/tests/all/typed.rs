//! Typed clients generated from WIT (`fjord_client::generate!`) against a real fjord-host: the
//! generated types must encode as the host decodes them (`convert.rs`), every shape of the
//! `types` component echoed back unchanged, and the calculator's failures arriving as the
//! exceptions the WIT names.

use crate::harness::{path_item, unique, wasm, Host, URL};
use crate::rpc::client;
use fjord_client::RpcError;

fjord_client::generate!({ path: "../wit/calculator" });
fjord_client::generate!({ path: "../tests/components/types/wit" });

fn typed_host(topic: &str) -> Host {
    Host::start(&format!(
        "transport_url = \"{URL}\"\n[[server]]\ntopic = \"{topic}\"\nserver = \"s1\"\n\
         endpoints = [{}, {{ path = {}, namespace = \"types\" }}]\n",
        path_item(&wasm("calculator")),
        path_item(&wasm("types")),
    ))
}

#[tokio::test]
async fn a_typed_calculator_calls_casts_and_gets_its_failures() {
    let topic = unique("typed-calc");
    let _host = typed_host(&topic);
    let c = client(&topic).await;
    let calc = Calculator::new(&c);
    assert_eq!(Calculator::VERSION, "1.0");
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    let up = calc
        .prepare()
        .server("s1")
        .build()
        .divide(7, 2, Some(calculator::Rounding::Up))
        .await;
    assert_eq!(up.unwrap(), 4);
    assert_eq!(calc.divide(7, 2, None).await.unwrap(), 3);
    let Err(RpcError::Remote(e)) = calc.divide(1, 0, None).await else {
        panic!("dividing by zero succeeded")
    };
    assert_eq!(
        (e.class.as_str(), e.module.as_str()),
        ("DivisionByZero", "fjord:calculator/calculator")
    );
    let points = [
        calculator::Point { x: 0.0, y: 0.0 },
        calculator::Point { x: 2.0, y: 4.0 },
    ];
    let centre = calc.centroid(&points).await.unwrap().unwrap();
    assert_eq!((centre.x, centre.y), (1.0, 2.0));
    assert_eq!(calc.centroid(&[]).await.unwrap(), None);
    calc.cast_add(1, 1).await.unwrap();
    // A version the server does not serve is refused as by any oslo server.
    let future = calc.prepare().version("2.0").build();
    let Err(RpcError::Remote(e)) = future.add(1, 1).await else {
        panic!("version 2.0 was served")
    };
    assert_eq!(e.class, "UnsupportedVersion");
}

#[tokio::test]
async fn every_generated_shape_round_trips_through_the_host() {
    let topic = unique("typed-echo");
    let _host = typed_host(&topic);
    let c = client(&topic).await;
    let echo = Echo::new(&c.prepare().namespace("types").build());
    let info = echo::ServerInfo {
        host_name: "node-1".into(),
        port: 5672,
        tags: vec!["a".into(), "b".into()],
        weight: None,
    };
    assert_eq!(echo.echo_record(&info).await.unwrap(), info);
    let heavy = echo::ServerInfo {
        weight: Some(0.5),
        ..info
    };
    assert_eq!(echo.echo_record(&heavy).await.unwrap(), heavy);
    for color in [echo::Color::Red, echo::Color::DarkGreen, echo::Color::Blue] {
        assert_eq!(echo.echo_enum(color).await.unwrap(), color);
    }
    for shape in [
        echo::Shape::Circle(1.5),
        echo::Shape::Square(2.0),
        echo::Shape::UnitPoint,
    ] {
        assert_eq!(echo.echo_variant(&shape).await.unwrap(), shape);
    }
    let perms = echo::Perms {
        read: true,
        write: false,
        exec_all: true,
    };
    assert_eq!(echo.echo_flags(perms).await.unwrap(), perms);
    assert_eq!(
        echo.echo_flags(echo::Perms::default()).await.unwrap(),
        echo::Perms::default()
    );
    assert_eq!(echo.echo_char('ø').await.unwrap(), 'ø');
    assert_eq!(echo.echo_u64(u64::MAX).await.unwrap(), u64::MAX);
    assert_eq!(echo.echo_s8(-128).await.unwrap(), -128);
    assert_eq!(
        echo.echo_tuple(&("x".to_string(), 7)).await.unwrap(),
        ("x".to_string(), 7)
    );
    let nested = vec![vec!["a".to_string()], vec![]];
    assert_eq!(echo.echo_nested(&nested).await.unwrap(), nested);
    assert_eq!(echo.echo_option(None).await.unwrap(), None);
    assert_eq!(echo.echo_option(Some("y")).await.unwrap(), Some("y".into()));
    assert_eq!(
        echo.many_args("Ada", "Lovelace", Some(36)).await.unwrap(),
        "Ada Lovelace (36)"
    );
    assert_eq!(
        echo.many_args("Ada", "Lovelace", None).await.unwrap(),
        "Ada Lovelace"
    );
    echo.nothing().await.unwrap();
}
