//! Work that runs in a task of its own while any number of callers wait for its outcome, none of
//! them holding a lock: a reconnection, or the start of a reply consumer. A caller that stops
//! waiting (its deadline passed) does not cancel the work; the next caller finds its result.

use std::future::Future;
use tokio::sync::watch;

/// The outcome of one piece of work, shared by whoever waits for it.
#[derive(Clone)]
pub(crate) struct Flight<T: Clone> {
    outcome: watch::Receiver<Option<Result<T, String>>>,
}

impl<T: Clone + Send + Sync + 'static> Flight<T> {
    /// Starts `work` in its own task.
    pub(crate) fn spawn(work: impl Future<Output = Result<T, String>> + Send + 'static) -> Self {
        let (tx, outcome) = watch::channel(None);
        tokio::spawn(async move {
            let done = work.await;
            // Nobody may be waiting any more: that is fine.
            let _ = tx.send(Some(done));
        });
        Flight { outcome }
    }

    /// Whether the work is over (also when its task died without an outcome): a flight left
    /// behind that way must not be waited on again.
    pub(crate) fn ended(&self) -> bool {
        self.outcome.borrow().is_some() || self.outcome.has_changed().is_err()
    }

    /// Waits for the outcome (an error text when the work failed or its task died).
    pub(crate) async fn outcome(mut self) -> Result<T, String> {
        match self.outcome.wait_for(Option::is_some).await {
            Ok(done) => done
                .clone()
                .unwrap_or_else(|| Err("the work ended without an outcome".into())),
            Err(_) => Err("the work ended without an outcome".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_gets_the_outcome_and_leaving_early_does_not_cancel() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let flight = Flight::spawn(async move {
            let _ = rx.await;
            Ok::<_, String>(7)
        });
        let early = tokio::time::timeout(Duration::from_millis(20), flight.clone().outcome()).await;
        assert!(early.is_err(), "no outcome yet");
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(flight.clone().outcome()))
            .collect();
        tx.send(()).unwrap();
        for w in waiters {
            assert_eq!(w.await.unwrap(), Ok(7));
        }
        assert_eq!(flight.outcome().await, Ok(7), "a late caller finds it too");
    }

    #[tokio::test]
    async fn a_failed_or_dead_task_is_an_error() {
        let failed = Flight::<u8>::spawn(async { Err("no broker".into()) });
        assert_eq!(failed.outcome().await, Err("no broker".to_string()));
        let died = Flight::<u8>::spawn(async { panic!("boom") });
        assert!(died.clone().outcome().await.is_err());
        assert!(died.ended());
    }
}
