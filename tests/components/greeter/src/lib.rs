//! Test component `fjord:greeter@1.3.0`: context, logging, failures, traps and deadlines.

wit_bindgen::generate!({
    world: "greeter-endpoint",
    path: "wit",
    with: { "fjord:endpoint/types@0.1.0": fjord_guest::types },
});

use exports::fjord::greeter::greeter::{GreetError, Guest};
use fjord_guest::context;

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        fjord_guest::info!(
            "greet called by {}",
            context::user().unwrap_or_else(|| "anonymous".into())
        );
        format!("Hello, {name}!")
    }

    fn context_json() -> String {
        let mut keys = context::keys();
        keys.sort();
        let fields: Vec<String> = keys
            .iter()
            .map(|k| {
                let value = context::get(k).unwrap_or_else(|| "null".to_string());
                format!("{}:{}", json_string(k), value)
            })
            .collect();
        format!("{{{}}}", fields.join(","))
    }

    fn fail(kind: String) -> Result<String, GreetError> {
        match kind.as_str() {
            "ok" => Ok("fine".to_string()),
            "not-found" => Err(GreetError::NotFound),
            _ => Err(GreetError::PermissionDenied),
        }
    }

    fn raise_remote(
        module: String,
        class: String,
        message: String,
    ) -> Result<u32, fjord_guest::RemoteError> {
        Err(fjord_guest::RemoteError::new(module, class, message))
    }

    fn fail_text() -> Result<u32, String> {
        Err("plain text failure".to_string())
    }

    fn crash() {
        panic!("boom");
    }

    fn raise_builtin(class: String, message: String) -> u32 {
        fjord_guest::failure::raise(fjord_guest::RemoteError::builtin(class, message))
    }

    fn sleep_ms(ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
    }

    fn log_lines() {
        println!("greeter: a line on stdout");
        eprintln!("greeter: a line on stderr");
        fjord_guest::log::trace("greeter: trace");
        fjord_guest::log::debug("greeter: debug");
        fjord_guest::log::info("greeter: info");
        fjord_guest::log::warn("greeter: warn");
        fjord_guest::log::error("greeter: error");
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

export!(Greeter);
