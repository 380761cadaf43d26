//! The sandbox every call runs in: one [`Engine`], a fresh [`Store`] and instance per call, a deadline
//! enforced by epoch interruption (plus a wall-clock bound on time blocked in host calls), a memory
//! cap, capped tables and instances, a bounded wasm stack, and WASI that grants only what the
//! endpoint's [`Capabilities`] say (by default nothing: no files, no environment, no sockets;
//! stdout and stderr are captured and go to the host log, tagged with endpoint, method and request id).

use crate::capabilities::Capabilities;
use crate::guest_api::fjord::endpoint::log::Level;
use crate::guest_api::{self, CallInfo};
use crate::guest_log::{self, LogBudget};
use crate::guest_output::CapturedOutput;
use crate::keyvalue::{CallKeyvalue, Keyvalue, KeyvalueView};
use crate::outgoing::{CallOutgoing, Outgoing};
use anyhow::Context as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, Val,
};
use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    ResourceLimiter, Store, Trap, UpdateDeadline, WasmBacktrace,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the ticker thread advances the epoch: the granularity of deadlines.
const TICK: Duration = Duration::from_millis(5);
/// How long past its deadline a call blocked in a host call (a WASI sleep...) is abandoned. Guest
/// code itself is stopped by the epoch within one tick of the deadline.
const HOST_CALL_GRACE: Duration = Duration::from_millis(50);
/// The wasm stack of one call: unbounded recursion is a trap, not a host crash.
pub const MAX_WASM_STACK: usize = 1 << 20;
/// Tables, instances and memories one call may create (a component has a handful of each).
const MAX_TABLE_ELEMENTS: usize = 100_000;
const MAX_INSTANCES: usize = 32;
const MAX_TABLES: usize = 32;
const MAX_MEMORIES: usize = 8;

/// Calls that may run at once in one host by default (oslo's threading executor runs 64 too;
/// `executor_thread_pool_size` in the config); the instance pool is sized from it.
pub const MAX_CONCURRENT_CALLS: u32 = 64;

/// Per-endpoint limits on one call (`deadline_ms`, `memory_mib`, `max_request_kib`,
/// `max_reply_kib` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for instantiation plus the call. Default 10 s.
    pub deadline: Duration,
    /// Linear memory, in bytes, of each of the instance's memories. Default 64 MiB.
    pub memory_bytes: usize,
    /// The largest request message body (the AMQP body, envelope included). Default 1 MiB.
    pub max_request_bytes: usize,
    /// The largest result, or error message, as JSON text. Default 1 MiB.
    pub max_reply_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(10),
            memory_bytes: 64 << 20,
            max_request_bytes: 1 << 20,
            max_reply_bytes: 1 << 20,
        }
    }
}

/// How a call ended when it did not return normally. Each maps to its own failure class.
#[derive(Debug, thiserror::Error)]
pub enum GuestFailure {
    #[error("the call exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error("the call exceeded its memory limit of {} MiB", .0 >> 20)]
    Memory(usize),
    #[error("{0}")]
    Trap(String),
    /// The sandbox could not be set up (a granted directory has gone...): the host's fault.
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
    /// The function's result is larger than its budget (see `lift_budget`): refused while it was
    /// still in the guest's memory, before the host allocated it.
    #[error("the result is too large to lift")]
    ResultTooLarge,
    /// The guest passed more data to one host call (a log message, a WASI write) than its
    /// budget of `0` bytes: the call trapped before the host allocated it.
    #[error("guest trapped: it passed more than {0} bytes of data to one host call")]
    HostCallTooLarge(usize),
    /// The guest reported the exception it was dying of (`fjord:endpoint/failure.raise`), then
    /// trapped: the caller gets that exception instead of a `GuestTrap`.
    #[error("{}.{}: {}", .0.module, .0.class, .0.message)]
    Raised(Raised),
}

/// An exception a guest reported through `fjord:endpoint/failure.raise`, checked: `module` and
/// `class` are usable names (`dispatch::usable_remote_name`), `message` at most
/// [`guest_api::MAX_RAISED_MESSAGE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub module: String,
    pub class: String,
    pub message: String,
}

/// How wasmtime says that lifting values out of the guest ran out of hostcall fuel (its error
/// type is private; the tests in `host/tests/all/bounds.rs` pin this text).
pub const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Store data of one call.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    pub(crate) call: Arc<CallInfo>,
    keyvalue: CallKeyvalue,
    /// The log import's share of the host's log in this call.
    pub(crate) log: LogBudget,
    /// The exception the guest said it is failing with, if it did (the first report counts).
    pub(crate) raised: Option<Raised>,
    /// What `fjord:endpoint/rpc` may do in this call.
    pub(crate) rpc: CallOutgoing,
}

impl GuestState {
    /// What `wasi:keyvalue` works on: the call's grants and the resource table.
    fn keyvalue_view(&mut self) -> KeyvalueView<'_> {
        KeyvalueView {
            kv: &mut self.keyvalue,
            table: &mut self.table,
            call: &self.call,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps memory and counts of instances and tables, and remembers whether the cap was hit so that a
/// guest dying of an allocation failure is reported as a memory failure, not a trap.
struct Limiter {
    memory_bytes: usize,
    memory_hit: bool,
    /// The largest memory granted, for `fjord_guest_memory_peak_bytes`.
    peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
    fn tables(&self) -> usize {
        MAX_TABLES
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// The engine, the linker with everything the host gives guests, and the epoch ticker.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<GuestState>,
    /// The host's key-value store, when some endpoint is granted a bucket.
    keyvalue: Option<Arc<Keyvalue>>,
    /// The host's client connection, when some endpoint is granted `calls`.
    outgoing: Option<Arc<Outgoing>>,
}

impl Sandbox {
    pub fn new() -> anyhow::Result<Self> {
        Sandbox::for_calls(MAX_CONCURRENT_CALLS)
    }

    /// A sandbox for up to `calls` calls at once, and as many more waiting on outgoing calls
    /// (`outgoing::InFlight`): three times as many instance slots, so instances still being
    /// torn down never make a new call wait or fail.
    pub fn for_calls(calls: u32) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        let calls = calls.clamp(1, crate::config::MAX_IN_FLIGHT);
        tune_for_fresh_instances(&mut config, 3 * calls);
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;
        spawn_ticker(&engine)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI into the sandbox: {e}"))?;
        guest_api::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link fjord's host API: {e}"))?;
        crate::keyvalue::add_to_linker(&mut linker, GuestState::keyvalue_view)
            .map_err(|e| anyhow::anyhow!("cannot link wasi:keyvalue: {e}"))?;
        Ok(Sandbox {
            engine,
            linker,
            keyvalue: None,
            outgoing: None,
        })
    }

    /// Gives the endpoints granted `calls` this client connection for their outgoing calls.
    pub fn with_outgoing(mut self, outgoing: Option<Arc<Outgoing>>) -> Self {
        self.outgoing = outgoing;
        self
    }

    /// Gives the granted endpoints' calls this key-value store.
    pub fn with_keyvalue(mut self, keyvalue: Option<Arc<Keyvalue>>) -> Self {
        self.keyvalue = keyvalue;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component read from `path` (named in errors), or takes it from wasmtime's
    /// cache of compiled code.
    pub fn compile(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<Component> {
        Component::new(&self.engine, bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a valid component: {e}", path.display()))
    }

    /// Resolves every import once, so each call only has to instantiate.
    pub fn prepare(&self, component: &Component) -> anyhow::Result<InstancePre<GuestState>> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Runs one call in a fresh instance and returns its results.
    // Each argument is a distinct part of the call; a struct around them would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub async fn call(
        &self,
        pre: &InstancePre<GuestState>,
        func: &ComponentExportIndex,
        params: &[Val],
        results_len: usize,
        call: Arc<CallInfo>,
        limits: Limits,
        hostcall_fuel: usize,
        capabilities: &Capabilities,
    ) -> Result<Vec<Val>, GuestFailure> {
        let stdout = CapturedOutput::new(guest_log::CAPTURE_BYTES);
        let stderr = CapturedOutput::new(guest_log::CAPTURE_BYTES);
        let wasi = capabilities
            .wasi(stdout.clone(), stderr.clone())
            .map_err(|e| GuestFailure::Setup(format!("{e:#}")))?;
        let deadline = Instant::now() + limits.deadline;
        let mut store = Store::new(
            &self.engine,
            GuestState {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: limits.memory_bytes,
                    memory_hit: false,
                    peak: 0,
                },
                call: call.clone(),
                keyvalue: CallKeyvalue::new(self.keyvalue.clone(), capabilities.keyvalue.clone()),
                log: LogBudget::default(),
                raised: None,
                rpc: CallOutgoing {
                    outgoing: self.outgoing.clone(),
                    grants: capabilities.calls.clone(),
                    deadline,
                    max_result_bytes: limits.max_request_bytes,
                },
            },
        );
        store.limiter(|state| &mut state.limiter);
        // What the guest may hand the host at once: its result, or what it passes to one host
        // call; refused before the host allocates it.
        store.set_hostcall_fuel(hostcall_fuel);
        store.set_epoch_deadline(1);
        // Yield to the executor at every tick so a spinning guest never starves other calls, and
        // stop it once its wall-clock deadline has passed.
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let run = async {
            let started = Instant::now();
            let instance = pre.instantiate_async(&mut store).await?;
            crate::metrics::get()
                .instantiate
                .observe(started.elapsed().as_secs_f64());
            let func = instance
                .get_func(&mut store, func)
                .ok_or_else(|| wasmtime::format_err!("the export is not a function"))?;
            let mut results = vec![Val::Bool(false); results_len];
            func.call_async(&mut store, params, &mut results).await?;
            Ok::<_, wasmtime::Error>(results)
        };
        // The epoch stops guest code; this also bounds time spent blocked in host calls.
        let outcome = tokio::time::timeout(limits.deadline + HOST_CALL_GRACE, run).await;

        log_output(&call, "stdout", &stdout);
        let stderr = log_output(&call, "stderr", &stderr);
        guest_log::warn_dropped(&call, "log", store.data().log.dropped());
        crate::metrics::get().memory_peak(&call.endpoint, store.data().limiter.peak);
        let raised = store.data_mut().raised.take();
        match outcome {
            Ok(Ok(results)) => {
                if let Some(raised) = raised {
                    // The guest reported an exception but then returned: it handled it (or the
                    // report came from a library). What it returned is the answer.
                    tracing::debug!(
                        endpoint = %call.endpoint, method = %call.method,
                        request_id = call.request_id().unwrap_or("-"),
                        "the guest reported {}.{} but returned normally; report dropped",
                        raised.module, raised.class
                    );
                }
                Ok(results)
            }
            Err(_elapsed) => Err(GuestFailure::Deadline(limits.deadline)),
            Ok(Err(error)) => {
                if store.data().limiter.memory_hit {
                    Err(GuestFailure::Memory(limits.memory_bytes))
                } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                    Err(GuestFailure::Deadline(limits.deadline))
                } else if fuel_exhausted(&error) {
                    // Inside a host call the guest is on the stack (a wasm backtrace); lifting
                    // the results happens after it returned.
                    if error.downcast_ref::<WasmBacktrace>().is_some() {
                        Err(GuestFailure::HostCallTooLarge(hostcall_fuel))
                    } else {
                        Err(GuestFailure::ResultTooLarge)
                    }
                } else if let Some(raised) = raised {
                    // Deadline, memory and size failures above are fjord's and win (a Python
                    // guest out of memory raises MemoryError first); a trap after a report is
                    // the exception the guest reported.
                    Err(GuestFailure::Raised(raised))
                } else {
                    Err(GuestFailure::Trap(trap_message(&error, &stderr)))
                }
            }
        }
    }
}

fn fuel_exhausted(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.to_string().contains(FUEL_EXHAUSTED))
}

/// A trap's message, with the guest's panic message first when it printed one.
fn trap_message(error: &wasmtime::Error, stderr: &[u8]) -> String {
    let trap = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    let stderr = String::from_utf8_lossy(stderr);
    // Rust guests print "thread '..' panicked at file:line:col:\n<message>" before aborting.
    let panic = stderr
        .split_once("panicked at ")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, message)| message.lines().next().unwrap_or("").trim().to_string())
        .filter(|m| !m.is_empty());
    match panic {
        Some(panic) => format!("guest panicked: {panic} ({trap})"),
        None => format!("guest trapped: {trap}"),
    }
}

/// Logs a captured stream line by line; returns what was kept.
fn log_output(call: &CallInfo, stream: &str, output: &CapturedOutput) -> Vec<u8> {
    let (bytes, dropped) = output.contents();
    guest_log::write(
        call,
        Some(stream),
        Level::Info,
        &String::from_utf8_lossy(&bytes),
    );
    guest_log::warn_dropped(call, stream, dropped);
    bytes
}

/// Makes a fresh instance per call cheap: a pooling allocator with a slot per possible in-flight
/// call (no mmap/munmap per call), copy-on-write memory images (instantiation maps the initial
/// heap instead of copying it), and wasmtime's on-disk cache of compiled code (a restart
/// deserializes instead of running Cranelift again).
fn tune_for_fresh_instances(config: &mut Config, slots: u32) {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_stacks(slots)
        // A Rust wasip2 component is a handful of core instances (program, adapter, shims), with
        // one or two memories and a few tables between them.
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        // Keep up to 256 KiB of a reused slot mapped (64 MiB at most over the whole pool), and
        // let the kernel's PAGEMAP_SCAN (Linux 6.7+; ignored elsewhere) say which pages a call
        // dirtied: only those are reset, with memset instead of madvise, so the next call neither
        // page-faults its stack and data back in nor makes the kernel unmap pages (median of
        // instantiate + call + teardown 11.9 -> 6.5 us).
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(16 << 10)
        .pagemap_scan(wasmtime::Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.memory_init_cow(true);
    match Cache::new(CacheConfig::new()) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        // Only start-up gets slower: components are compiled each time.
        Err(e) => tracing::warn!("no cache for compiled components: {e}"),
    }
}

/// One thread (not a tokio task: a spinning guest must not starve it) advancing the epoch for as
/// long as the engine lives.
fn spawn_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("fjord-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .context("cannot start the epoch ticker thread")?;
    Ok(())
}
