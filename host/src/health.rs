//! Whether the host is ready to serve: connected to the broker, and every queue it should consume
//! has a live consumer. `server.rs` reports each change; the admin listener's `/readyz` reads it.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// One queue's consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Consumer {
    Live,
    /// Why it is not consuming.
    Dead(String),
}

#[derive(Default)]
struct State {
    /// `None` while connected; otherwise why not.
    disconnected: Option<String>,
    queues: BTreeMap<String, Consumer>,
}

/// The host's readiness.
pub struct Health {
    state: Mutex<State>,
}

impl Health {
    fn new() -> Health {
        Health {
            state: Mutex::new(State {
                disconnected: Some("not connected yet".into()),
                queues: BTreeMap::new(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn connected(&self) {
        self.with(|s| s.disconnected = None);
    }

    /// The connection is gone: every consumer with it.
    pub fn disconnected(&self, why: &str) {
        self.with(|s| {
            s.disconnected = Some(why.to_string());
            for c in s.queues.values_mut() {
                *c = Consumer::Dead("the connection is lost".into());
            }
        });
    }

    pub fn consumer_up(&self, queue: &str) {
        self.with(|s| s.queues.insert(queue.to_string(), Consumer::Live));
    }

    pub fn consumer_down(&self, queue: &str, why: &str) {
        self.with(|s| {
            s.queues
                .insert(queue.to_string(), Consumer::Dead(why.to_string()))
        });
    }

    /// The queue is no longer served (its server was removed, or the host is stopping).
    pub fn forget(&self, queue: &str) {
        self.with(|s| s.queues.remove(queue));
    }

    /// `Ok` with the number of live consumers when ready; otherwise each reason, one per line.
    pub fn ready(&self) -> Result<usize, String> {
        self.with(|s| {
            let mut problems = Vec::new();
            if let Some(why) = &s.disconnected {
                problems.push(format!("not connected to the broker: {why}"));
            }
            for (queue, c) in &s.queues {
                if let Consumer::Dead(why) = c {
                    problems.push(format!("queue {queue} has no consumer: {why}"));
                }
            }
            if s.queues.is_empty() && problems.is_empty() {
                problems.push("no queues consumed yet".into());
            }
            if problems.is_empty() {
                Ok(s.queues.len())
            } else {
                Err(problems.join("\n"))
            }
        })
    }
}

/// The process' readiness.
pub fn get() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_consumer_is_named() {
        let h = Health::new();
        assert!(h.ready().is_err());
        h.connected();
        h.consumer_up("q1");
        h.consumer_up("q2");
        assert_eq!(h.ready(), Ok(2));
        h.consumer_down("q2", "the broker cancelled it");
        let why = h.ready().unwrap_err();
        assert!(why.contains("q2") && !why.contains("q1"), "{why}");
        h.consumer_up("q2");
        assert_eq!(h.ready(), Ok(2));
        h.disconnected("connection reset");
        let why = h.ready().unwrap_err();
        assert!(
            why.contains("connection reset") && why.contains("q1"),
            "{why}"
        );
        h.connected();
        h.consumer_up("q1");
        h.forget("q2");
        assert_eq!(h.ready(), Ok(1));
    }
}
