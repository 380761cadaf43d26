//! When to try RabbitMQ again after losing it, and the one log line per outage and per recovery.

use std::time::{Duration, Instant};

/// Exponential backoff with full jitter, capped low: an outage of a few seconds must not turn
/// into a minute of deafness, and many processes reconnecting at once must not storm the broker.
///
/// ```
/// use std::time::Duration;
/// let mut b = fjord_oslo::reconnect::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// for _ in 0..10 {
///     assert!(b.next_delay() <= Duration::from_secs(1));
/// }
/// b.reset();
/// assert!(b.next_delay() <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// Delays start near `first` and double up to `max`.
    ///
    /// ```
    /// let b = fjord_oslo::reconnect::Backoff::new(std::time::Duration::from_millis(50), std::time::Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            current: first,
        }
    }

    /// The next delay: uniformly random in [current/2, current], then current doubles.
    ///
    /// ```
    /// let mut b = fjord_oslo::reconnect::Backoff::new(std::time::Duration::from_millis(10), std::time::Duration::from_millis(40));
    /// assert!(b.next_delay() >= std::time::Duration::from_millis(5));
    /// ```
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = ceiling / 2;
        // uuid4 bytes are a good enough random source for jitter; no rand dependency.
        let r = uuid::Uuid::new_v4().as_u128() % 1_000_000;
        half + half.mul_f64(r as f64 / 1_000_000.0)
    }

    /// Back to the first delay, after a success.
    ///
    /// ```
    /// let mut b = fjord_oslo::reconnect::Backoff::new(std::time::Duration::from_millis(10), std::time::Duration::from_secs(1));
    /// b.next_delay();
    /// b.reset();
    /// ```
    pub fn reset(&mut self) {
        self.current = self.first;
    }
}

/// Tracks one outage so that it is logged once when it starts and once when it ends.
///
/// ```
/// let mut o = fjord_oslo::reconnect::Outage::default();
/// assert!(o.begin("connection reset", "fjord-client"));
/// assert!(!o.begin("connection refused", "fjord-client")); // same outage, no new line
/// assert!(o.end("fjord-client").is_some());
/// assert!(o.end("fjord-client").is_none());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records that RabbitMQ is unreachable; logs and returns true only for a new outage.
    ///
    /// ```
    /// let mut o = fjord_oslo::reconnect::Outage::default();
    /// assert!(o.begin("gone", "me"));
    /// ```
    pub fn begin(&mut self, why: &str, who: &str) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(Instant::now());
        tracing::warn!("{who}: lost RabbitMQ ({why}); reconnecting");
        true
    }

    /// Whether an outage is under way.
    ///
    /// ```
    /// assert!(!fjord_oslo::reconnect::Outage::default().is_down());
    /// ```
    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }

    /// Records a successful reconnection; logs and returns the outage's length if there was one.
    ///
    /// ```
    /// let mut o = fjord_oslo::reconnect::Outage::default();
    /// assert!(o.end("me").is_none());
    /// ```
    pub fn end(&mut self, who: &str) -> Option<Duration> {
        let since = self.since.take()?;
        let length = since.elapsed();
        tracing::info!(
            "{who}: reconnected to RabbitMQ after {:.1} s",
            length.as_secs_f64()
        );
        Some(length)
    }
}
