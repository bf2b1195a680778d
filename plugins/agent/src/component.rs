//! Hosting aforo_policy.wasm: a pool of warm component instances (pooling allocator), each
//! call under a fuel budget and an epoch deadline, so a misbehaving module traps instead of
//! hanging the agent. The component reads and writes the agent's counters through its import,
//! and takes reservations from the agent's quota leases when it has them.

use crate::counters::{Served, SharedCounters};
use aforo_core::entitlement::Leased;
use aforo_core::Timestamp;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

wasmtime::component::bindgen!({ world: "metering", path: "../wasi/wit" });

pub use exports::aforo::metering::policy::{
    AccessDecision, AccessRequest, MeterRequest, Rejection,
};

/// Per-instance host state.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    counters: SharedCounters,
    /// Whether a counter operation of the current call was answered by the local fallback.
    fell_back: bool,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl aforo::metering::counters::Host for State {
    fn read(&mut self, key: String) -> Option<(Vec<u8>, u32)> {
        let (v, served) = self.counters.read_served(&key);
        self.fell_back |= served == Served::Fallback;
        v
    }

    fn write(&mut self, key: String, value: Vec<u8>, cas: u32) -> bool {
        let (r, served) = self.counters.write_served(&key, &value, cas);
        self.fell_back |= served == Served::Fallback;
        r.is_ok()
    }

    fn take(
        &mut self,
        key: String,
        window_start_ns: i64,
        window_end_ns: i64,
        quota: u64,
        cost: u64,
        now_ns: i64,
    ) -> Option<aforo::metering::counters::Leased> {
        use aforo::metering::counters::Leased as Wit;
        let window = (
            Timestamp::from_unix_nanos(window_start_ns),
            Timestamp::from_unix_nanos(window_end_ns),
        );
        let now = Timestamp::from_unix_nanos(now_ns);
        self.counters
            .take_leased(&key, window, quota, cost, now)
            .map(|l| match l {
                Leased::Admitted { remaining } => Wit::Admitted(remaining),
                Leased::Refused {
                    remaining,
                    retry_at,
                } => Wit::Refused((remaining, retry_at.unix_nanos())),
            })
    }

    fn give_back(&mut self, key: String, window_start_ns: i64, units: u64) {
        self.counters
            .give_leased(&key, Timestamp::from_unix_nanos(window_start_ns), units);
    }
}

struct Instance {
    store: Store<State>,
    bindings: Metering,
    snapshot_version: u64,
}

/// The component, its warm instances, and the snapshot they should hold.
pub struct PolicyHost {
    engine: Engine,
    pre: MeteringPre<State>,
    pool: Mutex<Vec<Instance>>,
    pool_size: usize,
    fuel: u64,
    deadline_ticks: u64,
    counters: SharedCounters,
    snapshot: Mutex<(u64, Arc<String>)>,
}

/// A decision, and where its counters came from.
pub struct Decided {
    /// The component's answer.
    pub decision: AccessDecision,
    /// Made on the local copy of the shared counters (Redis unreachable).
    pub on_fallback: bool,
}

/// A component failure: it could not be loaded, or a call trapped.
#[derive(Debug)]
pub struct ComponentError(pub String);

impl std::fmt::Display for ComponentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ComponentError {}

fn e(err: wasmtime::Error) -> ComponentError {
    ComponentError(format!("{err:#}"))
}

/// Where the component is by default: next to the agent binary's target directory.
pub fn default_component_path() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("aforo_policy.wasm"));
        for up in dir.ancestors().take(3) {
            candidates.push(
                up.join("wasm32-wasip2")
                    .join("wasm-release")
                    .join("aforo_policy.wasm"),
            );
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

impl PolicyHost {
    /// Loads and compiles the component. A call is interrupted after `deadline_ticks` epochs
    /// of 10 ms (time in host calls counts: with Redis, its round trips).
    pub fn load(
        path: &Path,
        pool_size: usize,
        fuel: u64,
        deadline_ticks: u64,
        counters: SharedCounters,
    ) -> Result<PolicyHost, ComponentError> {
        let mut cfg = Config::new();
        cfg.consume_fuel(true);
        cfg.epoch_interruption(true);
        let mut pooling = PoolingAllocationConfig::default();
        pooling.total_component_instances(pool_size as u32 + 16);
        pooling.total_core_instances(4 * (pool_size as u32 + 16));
        pooling.total_memories(4 * (pool_size as u32 + 16));
        pooling.total_tables(4 * (pool_size as u32 + 16));
        pooling.max_memory_size(256 << 20);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&cfg).map_err(e)?;
        let component = Component::from_file(&engine, path)
            .map_err(|err| ComponentError(format!("{}: {err:#} (build it with: cargo build -p aforo-wasi --target wasm32-wasip2 --profile wasm-release)", path.display())))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(e)?;
        Metering::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(e)?;
        let pre = MeteringPre::new(linker.instantiate_pre(&component).map_err(e)?).map_err(e)?;
        // The epoch ticks every 10 ms; a call gets `deadline_ticks` before it is interrupted.
        let ticker = engine.clone();
        std::thread::Builder::new()
            .name("aforo-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(10));
                ticker.increment_epoch();
            })
            .map_err(|err| ComponentError(err.to_string()))?;
        Ok(PolicyHost {
            engine,
            pre,
            pool: Mutex::new(Vec::new()),
            pool_size,
            fuel,
            deadline_ticks,
            counters,
            snapshot: Mutex::new((0, Arc::new(String::new()))),
        })
    }

    /// Sets the snapshot instances must hold (loaded lazily, once per instance and version).
    pub fn set_snapshot(&self, version: u64, json: String) {
        if let Ok(mut s) = self.snapshot.lock() {
            *s = (version, Arc::new(json));
        }
    }

    fn instance(&self) -> Result<Instance, ComponentError> {
        if let Some(i) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(i);
        }
        let state = State {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            counters: self.counters.clone(),
            fell_back: false,
        };
        let mut store = Store::new(&self.engine, state);
        store.set_fuel(self.fuel).map_err(e)?;
        store.set_epoch_deadline(self.deadline_ticks);
        let bindings = self.pre.instantiate(&mut store).map_err(e)?;
        Ok(Instance {
            store,
            bindings,
            snapshot_version: 0,
        })
    }

    fn release(&self, i: Instance) {
        if let Ok(mut p) = self.pool.lock() {
            if p.len() < self.pool_size {
                p.push(i);
            }
        }
    }

    /// Runs `f` on a warm instance holding the current snapshot. A trap discards the instance.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Instance) -> wasmtime::Result<T>,
    ) -> Result<T, ComponentError> {
        let mut inst = self.instance()?;
        inst.store.set_fuel(self.fuel).map_err(e)?;
        inst.store.set_epoch_deadline(self.deadline_ticks);
        let (version, json) = self
            .snapshot
            .lock()
            .map(|s| (s.0, s.1.clone()))
            .map_err(|_| ComponentError("snapshot lock poisoned".into()))?;
        if inst.snapshot_version != version {
            let loaded = inst
                .bindings
                .aforo_metering_policy()
                .call_load_snapshot(&mut inst.store, &json)
                .map_err(e)?;
            loaded
                .map_err(|m| ComponentError(format!("the component refused the snapshot: {m}")))?;
            inst.snapshot_version = version;
        }
        let out = f(&mut inst).map_err(e)?;
        self.release(inst);
        Ok(out)
    }

    /// `can-access`, and whether the decision was made on the local fallback of the shared
    /// counters (Redis unreachable).
    pub fn can_access(&self, req: &AccessRequest) -> Result<Decided, ComponentError> {
        self.with(|i| {
            i.store.data_mut().fell_back = false;
            let decision = i
                .bindings
                .aforo_metering_policy()
                .call_can_access(&mut i.store, req)?;
            Ok(Decided {
                decision,
                on_fallback: i.store.data().fell_back,
            })
        })
    }

    /// `build-event`.
    pub fn build_event(
        &self,
        req: &MeterRequest,
    ) -> Result<Result<String, Rejection>, ComponentError> {
        self.with(|i| {
            i.bindings
                .aforo_metering_policy()
                .call_build_event(&mut i.store, req)
        })
    }
}
