//! The calls waiting for their replies, each tied to the reply consumer it waits on: when a
//! consumer ends (its connection was lost, its queue deleted), the calls waiting on it fail at
//! once and visibly, and only those; calls already waiting on a newer consumer are untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;

use fjord_oslo::envelope::Reply;

/// One reply consumer's identity, unique within a transport.
pub(crate) type ConsumerId = u64;

struct Waiter {
    consumer: ConsumerId,
    replies: mpsc::UnboundedSender<Reply>,
}

/// Every call of a transport that waits for a reply, by `_msg_id`.
#[derive(Clone, Default)]
pub(crate) struct Waiters {
    calls: Arc<Mutex<HashMap<String, Waiter>>>,
}

/// A registered call: receives its heartbeats and its reply; unregisters when dropped, however
/// the call ends. The receiver yields `None` when the call's consumer ended.
pub(crate) struct Registration {
    waiters: Waiters,
    msg_id: String,
    pub(crate) replies: mpsc::UnboundedReceiver<Reply>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.msg_id);
    }
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        // Every step leaves the map consistent: a panic elsewhere cannot have broken it.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the call `msg_id`, which waits on `consumer`.
    pub(crate) fn register(&self, msg_id: &str, consumer: ConsumerId) -> Registration {
        let (tx, replies) = mpsc::unbounded_channel();
        self.lock().insert(
            msg_id.to_string(),
            Waiter {
                consumer,
                replies: tx,
            },
        );
        Registration {
            waiters: self.clone(),
            msg_id: msg_id.to_string(),
            replies,
        }
    }

    /// Hands `reply` to the call waiting for it; `false` when none is (a late reply, a call
    /// that gave up, or one failed with its consumer).
    pub(crate) fn deliver(&self, reply: Reply) -> bool {
        let waiter = self.lock().get(&reply.msg_id).map(|w| w.replies.clone());
        waiter.is_some_and(|tx| tx.send(reply).is_ok())
    }

    /// The consumer `consumer` ended: the calls waiting on it fail (their receivers close), the
    /// others stay. Returns how many failed.
    pub(crate) fn fail_consumer(&self, consumer: ConsumerId) -> usize {
        let mut calls = self.lock();
        let before = calls.len();
        calls.retain(|_, w| w.consumer != consumer);
        before - calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bug this module exists for: the end of an old session's consumer emptied the whole
    /// map, failing calls already waiting on the new session.
    #[tokio::test]
    async fn a_dead_consumer_fails_only_its_own_calls() {
        let waiters = Waiters::default();
        let mut old = waiters.register("old-call", 1);
        let mut new = waiters.register("new-call", 2);
        assert_eq!(waiters.fail_consumer(1), 1);
        assert!(
            old.replies.recv().await.is_none(),
            "the old call fails at once"
        );
        assert!(waiters.deliver(Reply::ok("new-call", 5.into())));
        assert_eq!(new.replies.recv().await.unwrap().result, 5);
        assert!(
            !waiters.deliver(Reply::ok("old-call", 5.into())),
            "nobody waits for it"
        );
        assert_eq!(waiters.fail_consumer(1), 0);
    }

    #[test]
    fn a_call_unregisters_when_it_ends() {
        let waiters = Waiters::default();
        let call = waiters.register("m", 1);
        drop(call);
        assert!(!waiters.deliver(Reply::ok("m", 1.into())));
        assert_eq!(waiters.fail_consumer(1), 0);
    }
}
