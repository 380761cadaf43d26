//! What the host gives every guest (`wit/endpoint`): the request context of the call and the log.

use crate::guest_log;
use crate::sandbox::GuestState;
use serde_json::{Map, Value};
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../wit/endpoint",
    world: "imports",
});

use fjord::endpoint::{context, log};

/// The call a store serves: which endpoint and method, and the caller's context.
#[derive(Debug, Default)]
pub struct CallInfo {
    pub endpoint: String,
    pub method: String,
    pub context: Map<String, Value>,
}

impl CallInfo {
    pub fn request_id(&self) -> Option<&str> {
        self.context.get("request_id").and_then(Value::as_str)
    }

    /// The first of `keys` that holds a string.
    fn first_str(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| self.context.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    }
}

pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    Imports::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

impl context::Host for GuestState {
    fn request_id(&mut self) -> Option<String> {
        self.call.first_str(&["request_id"])
    }

    fn user(&mut self) -> Option<String> {
        self.call.first_str(&["user_id", "user"])
    }

    fn project(&mut self) -> Option<String> {
        self.call.first_str(&["project_id", "project", "tenant"])
    }

    fn get(&mut self, key: String) -> Option<String> {
        self.call.context.get(&key).map(Value::to_string)
    }

    fn keys(&mut self) -> Vec<String> {
        self.call.context.keys().cloned().collect()
    }
}

impl log::Host for GuestState {
    /// Logs `message` tagged with the call, within the call's share of the log
    /// (`guest_log::CAPTURE_BYTES`): the rest is dropped and counted, for one warning at the end.
    fn log(&mut self, level: log::Level, message: String) {
        let kept = self.log.take(&message);
        guest_log::write(&self.call, None, level, kept);
    }
}
