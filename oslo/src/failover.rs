//! Which broker of a multi-host URL to try next, as oslo and kombu choose it.
//!
//! oslo shuffles the URL's hosts once, when it creates a connection, and hands them to kombu, whose
//! `kombu_failover_strategy` picks the next host after a failure: `round-robin` (the default) cycles
//! through the shuffled list in order, `shuffle` picks at random each time. fjord does the same,
//! except that after a lost connection the host it was connected to is tried last rather than
//! first: a frozen node accepts TCP and would hold the first attempt for the whole connect timeout.

use std::sync::Mutex;

/// `kombu_failover_strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverStrategy {
    /// Cycle through the hosts (shuffled once) in order.
    #[default]
    RoundRobin,
    /// A fresh random order at each reconnection.
    Shuffle,
}

impl FailoverStrategy {
    /// oslo's spelling of the option value.
    pub fn parse(value: &str) -> Option<FailoverStrategy> {
        match value {
            "round-robin" => Some(FailoverStrategy::RoundRobin),
            "shuffle" => Some(FailoverStrategy::Shuffle),
            _ => None,
        }
    }
}

/// The failover state of one connection's life: the shuffled host order and where it stands.
///
/// ```
/// use fjord_oslo::failover::{Failover, FailoverStrategy};
/// let failover = Failover::new(3, FailoverStrategy::RoundRobin);
/// let first = failover.attempts();
/// failover.connected(first[0]);
/// // After losing that host, the next one in the order comes first and the lost one last.
/// let next = failover.attempts();
/// assert_eq!(next[0], first[1]);
/// assert_eq!(next[2], first[0]);
/// ```
#[derive(Debug)]
pub struct Failover {
    strategy: FailoverStrategy,
    /// A permutation of the host indices, fixed for round-robin.
    order: Vec<usize>,
    /// The position in `order` of the host last connected to.
    current: Mutex<Option<usize>>,
}

impl Failover {
    /// The state for a URL of `hosts` hosts, shuffled once as oslo does.
    pub fn new(hosts: usize, strategy: FailoverStrategy) -> Failover {
        Failover {
            strategy,
            order: shuffled(hosts),
            current: Mutex::new(None),
        }
    }

    /// Host indices in the order to try them now: every host once.
    pub fn attempts(&self) -> Vec<usize> {
        if self.strategy == FailoverStrategy::Shuffle {
            return shuffled(self.order.len());
        }
        let current = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        let start = current.map_or(0, |c| c.saturating_add(1));
        self.order
            .iter()
            .copied()
            .cycle()
            .skip(start)
            .take(self.order.len())
            .collect()
    }

    /// Records that host `index` of the URL accepted the connection.
    pub fn connected(&self, index: usize) {
        if let Some(position) = self.order.iter().position(|&h| h == index) {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(position);
        }
    }
}

/// Host indices in random order.
pub(crate) fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    // uuid4 bytes are a good enough random source for picking a broker; no rand dependency.
    for i in (1..n).rev() {
        let r = uuid::Uuid::new_v4().as_u128();
        let bound = u128::try_from(i).unwrap_or(u128::MAX).saturating_add(1);
        let j = usize::try_from(r % bound).unwrap_or(0);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation() {
        for n in 0..6 {
            let mut s = shuffled(n);
            s.sort();
            assert_eq!(s, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn round_robin_cycles_through_the_order() {
        let f = Failover::new(3, FailoverStrategy::RoundRobin);
        let order = f.attempts();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let next = f.attempts();
            assert_eq!(next.len(), 3);
            f.connected(next[0]);
            seen.push(next[0]);
        }
        // Three failovers visit the three hosts in the shuffled order, then start over.
        assert_eq!(seen, order);
        assert_eq!(f.attempts()[0], order[0]);
    }

    #[test]
    fn shuffle_tries_every_host_once() {
        let f = Failover::new(4, FailoverStrategy::Shuffle);
        f.connected(2);
        let mut a = f.attempts();
        a.sort();
        assert_eq!(a, vec![0, 1, 2, 3]);
    }

    #[test]
    fn no_hosts_no_attempts() {
        assert!(Failover::new(0, FailoverStrategy::RoundRobin)
            .attempts()
            .is_empty());
    }
}
