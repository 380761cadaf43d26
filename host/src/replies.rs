//! Sending replies without holding up anything else.
//!
//! A reply is published once, at once, by the task that handled its call, holding one of a fixed number of
//! publishing slots (as many as calls may run; a call's in-flight permit is traded for a slot,
//! so a call never waits for its reply's confirm, and only a broker that stops confirming makes
//! calls wait). A reply that cannot be delivered (its reply queue is missing: NO_ROUTE on the
//! mandatory publish; or RabbitMQ is being reconnected) goes to a small retry budget of its
//! own: at most [`RETRY_QUEUE_LEN`] replies and [`RETRY_QUEUE_BYTES`] bytes wait, retried
//! [`RETRY_CONCURRENCY`] at a time every 250 ms within the retry window
//! (`kombu_missing_consumer_retry_timeout`, oslo's name; 3 s by default, where oslo holds a
//! worker for 60 s). Past that budget or that window a reply is dropped with a warning. So
//! callers naming reply queues that do not exist cost a bounded amount, and never delay others.

use crate::delivery::ReplyTo;
use fjord_oslo::envelope::Reply;
use fjord_oslo::topology::{self, PublishError};
use lapin::{Channel, Connection};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Replies that may wait for a retry at once.
pub const RETRY_QUEUE_LEN: usize = 256;
/// Bytes of reply bodies that may wait for a retry at once.
pub const RETRY_QUEUE_BYTES: usize = 16 << 20;
/// Retries published at once.
pub const RETRY_CONCURRENCY: usize = 8;
/// Pause between two tries of one reply.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// A publishing slot: held by a reply while its first publish waits for the broker's confirm.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// One reply waiting to be retried.
struct Pending {
    reply_q: String,
    msg_id: String,
    body: Vec<u8>,
    /// When the retry window closes.
    deadline: Instant,
    next_try: Instant,
}

#[derive(Default)]
struct RetryState {
    waiting: VecDeque<Pending>,
    /// Replies and bytes held by the retry budget: waiting, or being retried right now.
    held: usize,
    held_bytes: usize,
}

/// The reply sender of one host, shared by all its servers and kept across reconnections.
pub struct Replier {
    /// The channel replies go out on (in confirm mode); none while disconnected.
    channel: RwLock<Option<Channel>>,
    /// The connection, to open a new reply channel if the broker closes the current one.
    connection: RwLock<Option<Arc<Connection>>>,
    reopening: tokio::sync::Mutex<()>,
    slots: Arc<Semaphore>,
    slot_count: usize,
    retries: Mutex<RetryState>,
    retry_wake: Notify,
    window: Duration,
}

impl Replier {
    /// A sender with `slots` publishing slots and a retry window of `window`; starts its retry
    /// task (call within a tokio runtime).
    pub fn start(slots: usize, window: Duration) -> Arc<Replier> {
        let replier = Arc::new(Replier {
            channel: RwLock::new(None),
            connection: RwLock::new(None),
            reopening: tokio::sync::Mutex::new(()),
            slots: Arc::new(Semaphore::new(slots)),
            slot_count: slots,
            retries: Mutex::new(RetryState::default()),
            retry_wake: Notify::new(),
            window,
        });
        tokio::spawn(retry_loop(replier.clone()));
        replier
    }

    /// Replies go out on `channel` of `connection` from now on (`None` while disconnected).
    pub fn connect(&self, connection: Option<Arc<Connection>>, channel: Option<Channel>) {
        *self
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = connection;
        *self.channel.write().unwrap_or_else(PoisonError::into_inner) = channel;
    }

    /// The reply channel, opened again if the broker closed it while the connection lives.
    async fn channel(&self) -> Option<Channel> {
        let current = self
            .channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(channel) = &current {
            if channel.status().connected() {
                return current;
            }
        }
        let connection = self
            .connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        if !connection.status().connected() {
            return None;
        }
        let _one_at_a_time = self.reopening.lock().await;
        // Another task may have reopened it meanwhile.
        if let Some(channel) = self
            .channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|c| c.status().connected())
        {
            return Some(channel);
        }
        match open_reply_channel(&connection).await {
            Ok(channel) => {
                tracing::warn!("the reply channel was closed; opened a new one");
                *self.channel.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(channel.clone());
                Some(channel)
            }
            Err(e) => {
                tracing::debug!("cannot open a new reply channel: {e}");
                None
            }
        }
    }

    /// Waits for a publishing slot (at once, unless the broker has stopped confirming).
    pub async fn slot(&self) -> Option<Slot> {
        self.slots.clone().acquire_owned().await.ok().map(Slot)
    }

    /// Publishes `reply` to `to` and waits for its confirm, holding `slot`; a reply that cannot
    /// be delivered goes to the retry budget. Awaited by the task that handled the call (which
    /// has given up its in-flight permit by then), rather than in a task of its own: one spawn
    /// less per call.
    pub async fn send(&self, slot: Slot, to: &ReplyTo, reply: &Reply) {
        let body = reply.encode();
        let outcome = self.publish(&to.reply_q, &body).await;
        drop(slot);
        if let Err(e) = outcome {
            self.retry_later(to.reply_q.clone(), to.msg_id.clone(), body, e);
        }
    }

    async fn publish(&self, reply_q: &str, body: &[u8]) -> Result<(), String> {
        let Some(channel) = self.channel().await else {
            return Err("not connected to RabbitMQ".into());
        };
        match topology::publish(&channel, "", reply_q, body, None, true).await {
            Ok(()) => Ok(()),
            Err(e @ PublishError::Name(_)) => Err(format!("{e} (not retried)")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn retry_later(&self, reply_q: String, msg_id: String, body: Vec<u8>, error: String) {
        if self.window.is_zero() || error.ends_with("(not retried)") {
            crate::metrics::get().reply_drops.inc();
            tracing::warn!("dropping the reply to {msg_id} on {reply_q}: {error}");
            return;
        }
        let now = Instant::now();
        let mut state = self.retries.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = state.held_bytes.saturating_add(body.len());
        if state.held >= RETRY_QUEUE_LEN || bytes > RETRY_QUEUE_BYTES {
            let held = state.held;
            drop(state);
            crate::metrics::get().reply_drops.inc();
            tracing::warn!(
                "dropping the reply to {msg_id} on {reply_q}: {error}; the retry budget is full \
                 ({held} replies wait)"
            );
            return;
        }
        state.held += 1;
        state.held_bytes = bytes;
        tracing::debug!("cannot reply to {reply_q} yet: {error}");
        state.waiting.push_back(Pending {
            reply_q,
            msg_id,
            body,
            deadline: now + self.window,
            next_try: now + RETRY_PAUSE,
        });
        drop(state);
        self.retry_wake.notify_one();
    }

    /// One call-monitor heartbeat; not retried (the next one follows soon).
    pub async fn heartbeat(&self, to: &ReplyTo) {
        if let Some(channel) = self.channel().await {
            let heartbeat = Reply::heartbeat(to.msg_id.clone());
            if let Err(e) = topology::publish_reply(&channel, &to.reply_q, &heartbeat).await {
                tracing::debug!("cannot send a heartbeat to {}: {e}", to.reply_q);
            }
        }
    }

    /// Replies waiting for a retry, and their bytes.
    pub fn retry_backlog(&self) -> (usize, usize) {
        let state = self.retries.lock().unwrap_or_else(PoisonError::into_inner);
        (state.held, state.held_bytes)
    }

    /// Waits until every reply is out or dropped, for at most `limit` (a graceful stop).
    pub async fn drain(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let all = u32::try_from(self.slot_count).unwrap_or(u32::MAX);
        if tokio::time::timeout_at(until, self.slots.acquire_many(all))
            .await
            .is_err()
        {
            return;
        }
        while self.retry_backlog().0 > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A channel for replies: publisher confirms on, so a missing reply queue is seen (NO_ROUTE).
pub async fn open_reply_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(Default::default()).await?;
    Ok(channel)
}

/// Retries what waits, a few at a time, for as long as the host runs.
async fn retry_loop(me: Arc<Replier>) {
    loop {
        let due: Vec<Pending> = {
            let mut state = me.retries.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let (due, later): (Vec<Pending>, Vec<Pending>) =
                state.waiting.drain(..).partition(|p| p.next_try <= now);
            state.waiting.extend(later);
            due
        };
        let mut tries = tokio::task::JoinSet::new();
        let mut due = due.into_iter();
        let mut finished = Vec::new();
        loop {
            while tries.len() < RETRY_CONCURRENCY {
                let Some(p) = due.next() else { break };
                let me = me.clone();
                tries.spawn(async move {
                    let outcome = me.publish(&p.reply_q, &p.body).await;
                    (p, outcome)
                });
            }
            match tries.join_next().await {
                Some(Ok(done)) => finished.push(done),
                Some(Err(e)) => tracing::warn!("a reply retry failed: {e}"),
                None => break,
            }
        }
        let now = Instant::now();
        for (mut p, outcome) in finished {
            let give_up = match outcome {
                Ok(()) => None,
                Err(e) if now + RETRY_PAUSE > p.deadline => Some(e),
                Err(_) => {
                    p.next_try = now + RETRY_PAUSE;
                    me.retries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .waiting
                        .push_back(p);
                    continue;
                }
            };
            if let Some(e) = give_up {
                crate::metrics::get().reply_drops.inc();
                tracing::warn!(
                    "dropping the reply to {} on {} after {:.1} s: {e}",
                    p.msg_id,
                    p.reply_q,
                    me.window.as_secs_f64()
                );
            }
            let mut state = me.retries.lock().unwrap_or_else(PoisonError::into_inner);
            state.held = state.held.saturating_sub(1);
            state.held_bytes = state.held_bytes.saturating_sub(p.body.len());
        }
        let idle = me
            .retries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .is_empty();
        if idle {
            // Nothing waits: sleep until something does (a notification sent meanwhile is kept).
            me.retry_wake.notified().await;
        } else {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
