//! `fjord_client::generate!`: the typed clients compile over real WIT, and their types encode
//! exactly as fjord-host's `convert.rs` reads and writes WIT values (the expected JSON below is
//! written from that file's rules, not from serde's output).

use fjord_client::RpcClient;
use serde_json::{json, Value};

fjord_client::generate!({ path: "../wit/calculator" });
fjord_client::generate!({ path: "tests/wit/shapes", world: "shapes-endpoint" });

use shapes::{Color, Item, Perms, Point, RemoteError, Shape, WitResult};

fn round_trip<T>(value: &T, expected: Value)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_value(value).unwrap();
    assert_eq!(json, expected, "{value:?}");
    let back: T = serde_json::from_value(json).unwrap();
    assert_eq!(&back, value);
}

#[test]
fn versions_and_interfaces_come_from_the_wit() {
    assert_eq!(Calculator::VERSION, "1.0");
    assert_eq!(Calculator::INTERFACE, "fjord:calculator/calculator@1.0.0");
    assert_eq!(shapes::Shapes::VERSION, "2.1");
    assert_eq!(shapes::Shapes::INTERFACE, "example:shapes/shapes@2.1.0");
}

/// The methods exist with these exact types (checked by the compiler; never run: no broker).
#[allow(dead_code, unused_must_use)]
async fn signatures(client: &RpcClient) -> Result<(), fjord_client::RpcError> {
    let calc = Calculator::new(client);
    let _: i64 = calc.add(2, 3).await?;
    let _: i64 = calc
        .prepare()
        .server("host1")
        .version("1.0")
        .namespace("calc")
        .timeout(std::time::Duration::from_secs(2))
        .context(serde_json::Map::new())
        .build()
        .divide(7, 2, Some(calculator::Rounding::Nearest))
        .await?;
    let _: i64 = calc.sum(&[1, 2, 3]).await?;
    let _: Option<calculator::Point> = calc.centroid(&[]).await?;
    let _: String = calc.whoami().await?;
    calc.cast_add(1, 2).await?;

    let s = shapes::Shapes::new(client);
    let () = s
        .paint(
            &Shape::Dot,
            Color::Red,
            Perms::default(),
            Some("n"),
            None,
            &vec![1],
        )
        .await?;
    let _: Item = s.get(1).await?;
    let _: () = s.ping().await?;
    let _: &RpcClient = s.rpc_client();
    Ok(())
}

#[test]
fn records_are_objects_with_snake_case_keys() {
    round_trip(
        &Point {
            x: 1.5,
            y_pos: -2.0,
        },
        json!({"x": 1.5, "y_pos": -2.0}),
    );
    round_trip(
        &calculator::Point { x: 0.0, y: 3.0 },
        json!({"x": 0.0, "y": 3.0}),
    );
    round_trip(
        &RemoteError {
            module: "nova.exception".into(),
            class: "NoValidHost".into(),
            message: "none".into(),
        },
        json!({"module": "nova.exception", "class": "NoValidHost", "message": "none"}),
    );
}

fn item() -> Item {
    Item {
        id: u64::MAX,
        tags: vec!["a".into(), "b".into()],
        color: Some(Color::DarkGreen),
        outcome: WitResult::Ok(7),
        done: WitResult::Err("no".into()),
        pair: (-3, 'é'),
        fixed: [1, 2, 3, 4],
        perms: Perms {
            read: true,
            write_all: true,
        },
        r#type: "vm".into(),
    }
}

#[test]
fn every_shape_in_one_record() {
    round_trip(
        &item(),
        json!({
            "id": u64::MAX,
            "tags": ["a", "b"],
            "color": "dark_green",
            "outcome": {"ok": 7},
            "done": {"err": "no"},
            "pair": [-3, "é"],
            "fixed": [1, 2, 3, 4],
            "perms": ["read", "write_all"],
            "type": "vm",
        }),
    );
    let mut none = item();
    none.color = None;
    none.done = WitResult::Ok(());
    none.perms = Perms::default();
    let json = serde_json::to_value(&none).unwrap();
    assert_eq!(json["color"], Value::Null);
    assert_eq!(json["done"], json!({"ok": null}));
    assert_eq!(json["perms"], json!([]));
}

#[test]
fn an_absent_option_field_is_none_as_for_the_host() {
    let mut json = serde_json::to_value(item()).unwrap();
    json.as_object_mut().unwrap().remove("color");
    let back: Item = serde_json::from_value(json).unwrap();
    assert_eq!(back.color, None);
}

#[test]
fn enums_are_case_strings() {
    round_trip(&Color::Red, json!("red"));
    round_trip(&Color::DarkGreen, json!("dark_green"));
    round_trip(&calculator::Rounding::Nearest, json!("nearest"));
    assert!(serde_json::from_value::<Color>(json!("blue")).is_err());
}

#[test]
fn variants_are_a_case_object_or_the_bare_case() {
    round_trip(&Shape::Circle(1.5), json!({"circle": 1.5}));
    round_trip(&Shape::Dot, json!("dot"));
    round_trip(
        &Shape::Poly(vec![Point { x: 1.0, y_pos: 2.0 }]),
        json!({"poly": [{"x": 1.0, "y_pos": 2.0}]}),
    );
    round_trip(
        &Shape::Named(("n".into(), None)),
        json!({"named": ["n", null]}),
    );
    round_trip(
        &calculator::CalcError::DivisionByZero,
        json!("division_by_zero"),
    );
    round_trip(
        &calculator::CalcError::InvalidInput("x".into()),
        json!({"invalid_input": "x"}),
    );
    // The host also accepts (and a payload-less case may come as) `{"case": null}`.
    let dot: Shape = serde_json::from_value(json!({"dot": null})).unwrap();
    assert_eq!(dot, Shape::Dot);
}

#[test]
fn flags_are_arrays_of_names() {
    round_trip(
        &Perms {
            read: false,
            write_all: true,
        },
        json!(["write_all"]),
    );
    let both: Perms = serde_json::from_value(json!(["write_all", "read", "read"])).unwrap();
    assert!(both.read && both.write_all);
    assert!(serde_json::from_value::<Perms>(json!(["exec"])).is_err());
}

#[test]
fn nested_results_are_ok_or_err_objects() {
    round_trip(&WitResult::<u8, String>::Ok(1), json!({"ok": 1}));
    round_trip(
        &WitResult::<u8, String>::Err("e".into()),
        json!({"err": "e"}),
    );
    let r: Result<u8, String> = WitResult::Ok(1).into();
    assert_eq!(r, Ok(1));
}

#[test]
fn aliases_are_their_target() {
    let ids: shapes::Ids = vec![1, 2];
    round_trip(&ids, json!([1, 2]));
}
