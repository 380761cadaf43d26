//! Every delivery is settled exactly once: acked or rejected (without requeue). The acker is
//! moved into a [`Settlement`], whose `ack` and `reject` consume it, so a second settlement does
//! not compile; one dropped unsettled (a panic, a forgotten path) rejects its delivery, so a
//! message never sits unacknowledged in a prefetch slot for the life of the channel.

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::Acker;
use std::sync::Arc;

/// The duty to settle one delivery from `queue`.
pub struct Settlement {
    acker: Option<Acker>,
    queue: Arc<str>,
}

impl Settlement {
    pub fn new(acker: Acker, queue: Arc<str>) -> Settlement {
        Settlement {
            acker: Some(acker),
            queue,
        }
    }

    /// Acks the delivery (oslo acks every request on receipt: RPC is at-most-once).
    pub async fn ack(mut self) {
        if let Some(acker) = self.acker.take() {
            if let Err(e) = acker.ack(BasicAckOptions::default()).await {
                tracing::warn!("cannot ack a message on {}: {e}", self.queue);
            }
        }
    }

    /// Rejects the delivery without requeue: it is never seen again.
    pub async fn reject(mut self) {
        if let Some(acker) = self.acker.take() {
            if let Err(e) = acker.reject(BasicRejectOptions { requeue: false }).await {
                tracing::warn!("cannot reject a message on {}: {e}", self.queue);
            }
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        tracing::warn!(
            "a message on {} was left unsettled (the host failed while handling it); rejecting it",
            self.queue
        );
        // Drop cannot wait: the rejection goes out in a task of its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
            });
        }
    }
}
