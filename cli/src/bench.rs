//! A load generator for any oslo.messaging RPC server, like oslo's simulator `rpc-client`:
//! `concurrency` callers share one [`RpcClient`] (one connection, one reply queue, as an oslo
//! service's threads do) and make `calls` calls in all; the report gives throughput and latency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use fjord_client::{RpcClient, RpcError};
use fjord_oslo::envelope::{new_id, Request};

/// The context key that [`pad_context`] fills. Every oslo server accepts unknown context keys
/// (the Python one hands them to the endpoint as part of `ctxt`), unlike extra arguments.
pub const PAD_KEY: &str = "fjord_bench_pad";

/// How much load to generate.
///
/// ```
/// let load = fjord_cli::bench::Load { concurrency: 16, calls: 10_000 };
/// assert_eq!(load.concurrency, 16);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Callers with a call in flight at any time.
    pub concurrency: usize,
    /// Calls in all, shared between the callers.
    pub calls: usize,
}

/// The outcome of a run; serialized, it is the one JSON line `fjord bench` ends with.
///
/// ```
/// let r = fjord_cli::bench::Report::from_latencies(1, 0.5, vec![std::time::Duration::from_millis(2)], 0);
/// assert_eq!(r.calls_per_s, 2.0);
/// assert_eq!(r.p50_ms, 2.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Calls made (successful or not).
    pub calls: usize,
    /// Callers in flight.
    pub concurrency: usize,
    /// Wall-clock time of the whole run.
    pub seconds: f64,
    /// `calls / seconds`.
    pub calls_per_s: f64,
    /// Median latency of the successful calls, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency of the successful calls, in milliseconds.
    pub p99_ms: f64,
    /// Calls that failed (remote error, timeout, transport trouble).
    pub errors: usize,
    /// CPU time this process spent in user mode over the timed calls, in seconds (null where the
    /// platform cannot say).
    pub cpu_user_s: Option<f64>,
    /// CPU time this process spent in the kernel over the timed calls, in seconds.
    pub cpu_sys_s: Option<f64>,
}

impl Report {
    /// Builds a report from the successful calls' latencies (in any order) and the error count.
    ///
    /// ```
    /// use std::time::Duration;
    /// let lat: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    /// let r = fjord_cli::bench::Report::from_latencies(4, 1.0, lat, 0);
    /// assert_eq!((r.calls, r.p50_ms, r.p99_ms), (100, 50.0, 99.0));
    /// ```
    pub fn from_latencies(
        concurrency: usize,
        seconds: f64,
        mut latencies: Vec<Duration>,
        errors: usize,
    ) -> Report {
        latencies.sort_unstable();
        let calls = latencies.len() + errors;
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        Report {
            calls,
            concurrency,
            seconds: (seconds * 1e3).round() / 1e3,
            calls_per_s: if seconds > 0.0 {
                (calls as f64 / seconds).round()
            } else {
                0.0
            },
            p50_ms: ms(percentile(&latencies, 50.0)),
            p99_ms: ms(percentile(&latencies, 99.0)),
            errors,
            cpu_user_s: None,
            cpu_sys_s: None,
        }
    }

    /// Adds the CPU time the process spent between `before` and `after` (see [`CpuTime::now`]).
    ///
    /// ```
    /// use fjord_cli::bench::{CpuTime, Report};
    /// let before = CpuTime { user_s: 1.0, sys_s: 0.5 };
    /// let after = CpuTime { user_s: 1.25, sys_s: 0.75 };
    /// let r = Report::from_latencies(1, 1.0, vec![], 0).with_cpu(Some(before), Some(after));
    /// assert_eq!((r.cpu_user_s, r.cpu_sys_s), (Some(0.25), Some(0.25)));
    /// ```
    pub fn with_cpu(mut self, before: Option<CpuTime>, after: Option<CpuTime>) -> Report {
        if let (Some(b), Some(a)) = (before, after) {
            let round = |s: f64| (s * 1e6).round() / 1e6;
            self.cpu_user_s = Some(round((a.user_s - b.user_s).max(0.0)));
            self.cpu_sys_s = Some(round((a.sys_s - b.sys_s).max(0.0)));
        }
        self
    }
}

/// CPU time used so far by this whole process (every thread), from `getrusage(RUSAGE_SELF)`.
///
/// ```
/// let t = fjord_cli::bench::CpuTime::now().unwrap();
/// assert!(t.user_s >= 0.0 && t.sys_s >= 0.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTime {
    /// Seconds in user mode.
    pub user_s: f64,
    /// Seconds in the kernel.
    pub sys_s: f64,
}

impl CpuTime {
    /// The process's CPU time now; `None` if the kernel refuses to say.
    pub fn now() -> Option<CpuTime> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage only writes a `struct rusage` into the pointer it is given, which
        // points to one; the value is read only when the call reports success.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(CpuTime {
            user_s: seconds(usage.ru_utime),
            sys_s: seconds(usage.ru_stime),
        })
    }
}

/// The nearest-rank percentile `p` (0 to 100) of sorted values; zero when there are none.
///
/// ```
/// use std::time::Duration;
/// let v: Vec<Duration> = (1..=10).map(Duration::from_secs).collect();
/// assert_eq!(fjord_cli::bench::percentile(&v, 50.0), Duration::from_secs(5));
/// assert_eq!(fjord_cli::bench::percentile(&v, 99.0), Duration::from_secs(10));
/// ```
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Adds [`PAD_KEY`] to the context so that the encoded request of `method(args)` is about
/// `size` bytes (never less than the unpadded request). Returns the encoded size reached.
///
/// ```
/// let mut ctx = serde_json::Map::new();
/// let args = serde_json::json!({"a": 1, "b": 2}).as_object().cloned().unwrap();
/// let size = fjord_cli::bench::pad_context(&mut ctx, "add", &args, 2500);
/// assert!((2490..=2510).contains(&size), "{size}");
/// ```
pub fn pad_context(
    ctx: &mut Map<String, Value>,
    method: &str,
    args: &Map<String, Value>,
    size: usize,
) -> usize {
    ctx.remove(PAD_KEY);
    let encoded = |ctx: &Map<String, Value>| {
        let mut request = Request::new(method, args.clone());
        request.context = ctx.clone();
        // A call carries these; ids of the real length make the estimate exact.
        request.msg_id = Some(new_id());
        request.reply_q = Some(format!("reply_{}", new_id()));
        request.encode().len()
    };
    let bare = encoded(ctx);
    ctx.insert(PAD_KEY.to_string(), Value::String(String::new()));
    let with_key = encoded(ctx);
    if size <= with_key {
        ctx.remove(PAD_KEY);
        return bare;
    }
    // `x` needs no escaping, at either JSON level of the envelope: one byte per character.
    ctx.insert(
        PAD_KEY.to_string(),
        Value::String("x".repeat(size - with_key)),
    );
    encoded(ctx)
}

/// Makes `load.calls` calls of `method(args)` with `load.concurrency` callers in flight, after one
/// untimed warm-up call (which declares the reply queue). Failed calls are counted, not retried.
///
/// ```no_run
/// # async fn f(client: fjord_client::RpcClient) -> Result<(), fjord_client::RpcError> {
/// use fjord_cli::bench::{run, Load};
/// let args = serde_json::json!({"a": 2, "b": 3}).as_object().cloned().unwrap_or_default();
/// let report = run(&client, &Default::default(), "add", &args, Load { concurrency: 16, calls: 1000 }).await?;
/// println!("{}", serde_json::to_string(&report).unwrap_or_default());
/// # Ok(()) }
/// ```
pub async fn run(
    client: &RpcClient,
    ctx: &Map<String, Value>,
    method: &str,
    args: &Map<String, Value>,
    load: Load,
) -> Result<Report, RpcError> {
    // The warm-up fails the run early (wrong topic, bad arguments) instead of N times over.
    let _: Value = client.call(ctx, method, args.clone()).await?;

    let next = Arc::new(AtomicUsize::new(0));
    let concurrency = load.concurrency.clamp(1, load.calls.max(1));
    let cpu_before = CpuTime::now();
    let start = Instant::now();
    let mut callers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (client, ctx, args, next) = (client.clone(), ctx.clone(), args.clone(), next.clone());
        let method = method.to_string();
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(load.calls / concurrency + 1);
            let mut errors = 0;
            let mut first_error = None;
            while next.fetch_add(1, Ordering::Relaxed) < load.calls {
                let t = Instant::now();
                match client.call::<Value>(&ctx, &method, args.clone()).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::with_capacity(load.calls);
    let mut errors = 0;
    for caller in callers {
        match caller.await {
            Ok((l, e, first)) => {
                latencies.extend(l);
                errors += e;
                if let Some(e) = first {
                    tracing::warn!("a call failed: {e}");
                }
            }
            Err(e) => tracing::warn!("a caller task died: {e}"),
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_after = CpuTime::now();
    let lost = load.calls.saturating_sub(latencies.len() + errors);
    Ok(
        Report::from_latencies(concurrency, seconds, latencies, errors + lost)
            .with_cpu(cpu_before, cpu_after),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_size_leaves_the_context_alone() {
        let mut ctx = Map::new();
        let size = pad_context(&mut ctx, "add", &Map::new(), 10);
        assert!(ctx.is_empty());
        assert!(size > 10);
    }

    #[test]
    fn pads_to_64k() {
        let mut ctx = Map::new();
        ctx.insert("request_id".into(), "req-1".into());
        let size = pad_context(&mut ctx, "add", &Map::new(), 65_536);
        assert!((65_526..=65_546).contains(&size), "{size}");
        assert_eq!(ctx["request_id"], "req-1");
    }

    #[test]
    fn report_of_nothing() {
        let r = Report::from_latencies(1, 0.0, vec![], 3);
        assert_eq!(
            (r.calls, r.errors, r.calls_per_s, r.p99_ms),
            (3, 3, 0.0, 0.0)
        );
        let line = serde_json::to_string(&r).unwrap();
        assert!(
            line.starts_with("{\"calls\":3,\"concurrency\":1,\"seconds\":"),
            "{line}"
        );
    }
}
