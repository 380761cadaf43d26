//! The host's counters, in Prometheus' text format on the admin listener's `/metrics`
//! (see [`crate::admin`]).
//!
//! One registry per process, always counting (a counter is an atomic add; without an admin
//! listener nobody reads them). Built on `prometheus-client`, the Prometheus project's own Rust
//! client: typed label sets, OpenMetrics-conformant text, no global macros.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `fjord_calls_total` | server, endpoint, method, outcome | calls run, by how they ended |
//! | `fjord_call_duration_seconds` | server, endpoint, method | time from taking a call to its result |
//! | `fjord_instantiate_duration_seconds` | | time to instantiate a call's sandbox |
//! | `fjord_calls_in_flight` | | calls running now |
//! | `fjord_rejected_total` | server, reason | messages not run: `unanswerable` (rejected), `dropped` (acked, nobody to answer), or the failure class answered at once (`TypeError`, `NoSuchMethod`, ...) |
//! | `fjord_reconnects_total` | | sessions rebuilt after the connection was lost |
//! | `fjord_reply_drops_total` | | replies given up (reply queue gone past the retry window, budget full) |
//! | `fjord_guest_memory_peak_bytes` | endpoint | largest linear memory one call of the endpoint reached |
//! | `fjord_reloads_total` | outcome | reloads applied (`ok`) or refused (`failed`) |
//!
//! `outcome` is `ok`, `error` (the endpoint returned its own error), or one of fjord's failure
//! classes in snake case (`deadline_exceeded`, `memory_limit_exceeded`, `guest_trap`,
//! `reply_too_large`, `sandbox_error`, `internal_error`).

use crate::dispatch::FJORD_MODULE;
use fjord_oslo::failure::Failure;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub server: String,
    pub endpoint: String,
    pub method: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub server: String,
    pub endpoint: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub server: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the host.
pub struct Metrics {
    registry: Registry,
    pub calls: Family<CallLabels, Counter>,
    pub call_duration: HistogramFamily<MethodLabels>,
    pub instantiate: Histogram,
    pub in_flight: Gauge,
    pub rejected: Family<RejectLabels, Counter>,
    pub reconnects: Counter,
    pub reply_drops: Counter,
    pub memory_peak: Family<EndpointLabels, Gauge>,
    pub reloads: Family<OutcomeLabels, Counter>,
}

/// Call latency buckets: 50 us to about 26 s, doubling.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fjord");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("calls", "Calls run, by how they ended", calls.clone());
        let call_duration: HistogramFamily<MethodLabels> =
            Family::new_with_constructor(call_buckets as fn() -> Histogram);
        registry.register(
            "call_duration_seconds",
            "Time from taking a call to its result",
            call_duration.clone(),
        );
        // 5 us to about 80 ms, doubling: a pooled instantiation takes some microseconds.
        let instantiate = Histogram::new(exponential_buckets(0.000_005, 2.0, 15));
        registry.register(
            "instantiate_duration_seconds",
            "Time to instantiate a call's sandbox",
            instantiate.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("calls_in_flight", "Calls running now", in_flight.clone());
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register("rejected", "Messages not run, by reason", rejected.clone());
        let reconnects = Counter::default();
        registry.register(
            "reconnects",
            "Sessions rebuilt after the connection to the broker was lost",
            reconnects.clone(),
        );
        let reply_drops = Counter::default();
        registry.register(
            "reply_drops",
            "Replies given up without reaching their reply queue",
            reply_drops.clone(),
        );
        let memory_peak = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "guest_memory_peak_bytes",
            "Largest linear memory one call of the endpoint reached",
            memory_peak.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the config and components",
            reloads.clone(),
        );
        Metrics {
            registry,
            calls,
            call_duration,
            instantiate,
            in_flight,
            rejected,
            reconnects,
            reply_drops,
            memory_peak,
            reloads,
        }
    }

    /// The registry in Prometheus' text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one call that ran.
    pub fn call_done(
        &self,
        server: &str,
        endpoint: &str,
        method: &str,
        outcome: &str,
        took: Duration,
    ) {
        let labels = MethodLabels {
            server: server.to_string(),
            endpoint: endpoint.to_string(),
            method: method.to_string(),
        };
        self.call_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.calls
            .get_or_create(&CallLabels {
                server: labels.server,
                endpoint: labels.endpoint,
                method: labels.method,
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one message that was not run.
    pub fn rejected(&self, server: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabels {
                server: server.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Remembers the largest memory a call of `endpoint` reached.
    pub fn memory_peak(&self, endpoint: &str, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.memory_peak
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .inner()
            .fetch_max(bytes, Ordering::Relaxed);
    }

    /// Counts a reload, applied or refused.
    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

/// The process' metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The `outcome` label of a call's result: a bounded set, whatever the endpoint's errors are.
pub fn outcome_class(outcome: Result<(), &Failure>) -> String {
    match outcome {
        Ok(()) => "ok".to_string(),
        Err(f) if f.module == FJORD_MODULE => snake(&f.class),
        Err(_) => "error".to_string(),
    }
}

/// `DeadlineExceeded` -> `deadline_exceeded`.
fn snake(class: &str) -> String {
    let mut out = String::with_capacity(class.len() + 4);
    for (i, c) in class.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts the calls in flight while it lives.
pub struct InFlight;

impl InFlight {
    pub fn start() -> InFlight {
        get().in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        get().in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classes_are_bounded() {
        let own = Failure::new("DivisionByZero", "fjord:calculator/calculator@1.0.0", "x");
        assert_eq!(outcome_class(Err(&own)), "error");
        let deadline = Failure::new("DeadlineExceeded", FJORD_MODULE, "x");
        assert_eq!(outcome_class(Err(&deadline)), "deadline_exceeded");
        assert_eq!(outcome_class(Ok(())), "ok");
    }

    #[test]
    fn text_format() {
        let m = Metrics::new();
        m.call_done("t.s", "e", "add", "ok", Duration::from_millis(1));
        m.memory_peak("e", 1 << 20);
        m.memory_peak("e", 1 << 10);
        let text = m.encode();
        assert!(
            text.contains(
                "fjord_calls_total{server=\"t.s\",endpoint=\"e\",method=\"add\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("fjord_guest_memory_peak_bytes{endpoint=\"e\"} 1048576"),
            "{text}"
        );
    }
}
