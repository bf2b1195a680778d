//! One filter configuration in Envoy: an engine per worker (as the Wasm filter has one per
//! worker VM), the calls they asked for, and the tick. Requests run on their worker's engine;
//! ticks and the answers to calls run on Envoy's main thread, which is also the only thread that
//! starts calls, so nothing but a lock taken once per tick is shared with the request path.
//!
//! When Envoy replaces the configuration (a listener update), its engines, with the events they
//! still hold, are handed to the next configuration, which delivers them (`handoff`).

use crate::abi::{log, Config, Level, Scheduler};
use crate::handoff;
use crate::host::{NativeHost, Site};
use crate::metrics::MetricIds;
use crate::ticker::Ticker;
use aforo_core::config::Config as FilterConfig;
use aforo_core::gateway::Gateway;
use aforo_core::host::{CallResponse, OutboundRequest};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The scheduled event that runs every engine's tick.
pub const EVENT_TICK: u64 = 1;
/// The scheduled event that starts calls a worker asked for.
pub const EVENT_DISPATCH: u64 = 2;

/// How many rounds of calls one dispatch starts at most (a call refused at once is answered
/// as failed, and the engine may ask again; the next tick picks up the rest).
const MAX_DISPATCH_ROUNDS: usize = 8;

/// A call an engine asked for, not yet handed to Envoy.
struct Queued {
    engine: usize,
    token: u32,
    request: OutboundRequest,
}

/// Calls waiting for the main thread, and those Envoy is running.
#[derive(Default)]
pub struct Calls {
    queued: Vec<Queued>,
    in_flight: HashMap<u64, (usize, u32)>,
}

/// Call tokens, unique in the process: an engine handed to another configuration keeps the
/// tokens of its cancelled calls until they are answered there.
static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

impl Calls {
    /// Queues a call of engine `engine` for the main thread; the token is the engine's to
    /// match the answer.
    pub fn queue(&mut self, engine: usize, request: &OutboundRequest) -> u32 {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed).max(1);
        self.queued.push(Queued {
            engine,
            token,
            request: request.clone(),
        });
        token
    }
}

/// A worker's engine: `None` once it was handed over.
type Slot = Mutex<Option<Gateway>>;

/// An engine adopted from a replaced configuration, with its own part of the counter store.
struct Adopted {
    namespace: String,
    gateway: Gateway,
}

/// The state behind one `on_http_filter_config_new`.
pub struct Module {
    config: Config,
    /// The workers' engines.
    workers: Vec<Slot>,
    /// Engines adopted from replaced configurations (numbered after the workers'; `None` once
    /// delivered). Only the main thread uses them.
    adopted: Mutex<Vec<Option<Adopted>>>,
    /// Metric ids Envoy gave at configuration time.
    pub metrics: MetricIds,
    /// The prefix of this configuration's counters in the process-wide store.
    pub namespace: String,
    calls: Mutex<Calls>,
    scheduler: Mutex<Option<Arc<Scheduler>>>,
    ticker: Mutex<Option<Ticker>>,
    tick_ms: Arc<AtomicU64>,
    /// The largest body the engine keeps (from the configuration).
    pub max_body: usize,
}

/// Locks a mutex, also after a panic elsewhere left it poisoned. An engine is kept rather than
/// rebuilt: a rebuilt one would drop the events it holds, while a half-finished step can at
/// worst send an event twice, which the ingest stores once (events carry their ids).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Module {
    /// Engines for `workers` workers, plus those a replaced configuration handed over; metrics
    /// defined, the tick started.
    pub fn start(
        config: Config,
        filter_config: FilterConfig,
        workers: usize,
        ticking: bool,
    ) -> Arc<Module> {
        let seed = seed();
        let max_body = filter_config.max_body_bytes;
        let namespace = counter_namespace(&filter_config);
        let engines: Vec<Slot> = (0..workers.max(1))
            .map(|i| {
                Mutex::new(Some(Gateway::new(
                    filter_config.clone(),
                    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )))
            })
            .collect();
        let tick = engines
            .first()
            .and_then(|g| lock(g).as_ref().map(Gateway::tick_period_ms))
            .unwrap_or(1_000);
        let module = Arc::new(Module {
            config,
            workers: engines,
            adopted: Mutex::new(Vec::new()),
            metrics: MetricIds::define(config),
            namespace,
            calls: Mutex::new(Calls::default()),
            scheduler: Mutex::new(None),
            ticker: Mutex::new(None),
            tick_ms: Arc::new(AtomicU64::new(tick)),
            max_body,
        });
        if !ticking {
            return module;
        }
        match config.scheduler() {
            Some(s) => {
                let s = Arc::new(s);
                match Ticker::start(s.clone(), module.tick_ms.clone()) {
                    Some(t) => *lock(&module.ticker) = Some(t),
                    None => log(
                        Level::Error,
                        "aforo: could not start the tick thread: events are not flushed and the snapshot is not synced",
                    ),
                }
                *lock(&module.scheduler) = Some(s);
            }
            None => log(
                Level::Error,
                "aforo: Envoy gave no scheduler: events are not flushed and the snapshot is not synced",
            ),
        }
        module
    }

    /// The engine of `worker` (an index past the workers wraps: Envoy's worker count is read
    /// once, at configuration time).
    pub fn engine(&self, worker: usize) -> MutexGuard<'_, Option<Gateway>> {
        lock(&self.workers[worker % self.workers.len()])
    }

    /// Runs `f` on engine `i` (a worker's, or past the workers an adopted one) with a
    /// main-thread host for it.
    fn with_engine<R>(
        &self,
        i: usize,
        f: impl FnOnce(&mut Gateway, &mut NativeHost) -> R,
    ) -> Option<R> {
        match self.workers.get(i) {
            Some(slot) => {
                let mut host = NativeHost::new(self, i, Site::Main, &self.namespace);
                lock(slot).as_mut().map(|g| f(g, &mut host))
            }
            None => {
                let mut adopted = lock(&self.adopted);
                let a = adopted.get_mut(i - self.workers.len())?.as_mut()?;
                let mut host = NativeHost::new(self, i, Site::Adopted, &a.namespace);
                Some(f(&mut a.gateway, &mut host))
            }
        }
    }

    /// The configuration handle (main-thread metrics and calls).
    pub fn config(&self) -> Config {
        self.config
    }

    /// Queues a call for the main thread; `Err` when there is no main-thread scheduler to start
    /// it (the engine then retries, and says so).
    pub fn queue_call(&self, engine: usize, request: &OutboundRequest) -> Result<u32, String> {
        if lock(&self.scheduler).is_none() {
            return Err(
                "no Envoy scheduler: calls cannot be started (see the log at start)".into(),
            );
        }
        Ok(lock(&self.calls).queue(engine, request))
    }

    /// Wakes the main thread to start queued calls (from a worker).
    pub fn wake_for_calls(&self) {
        if let Some(s) = lock(&self.scheduler).as_ref() {
            s.commit(EVENT_DISPATCH);
        }
    }

    /// Main thread: a scheduled event.
    pub fn on_scheduled(&self, event: u64) {
        if event == EVENT_TICK {
            if let Some(t) = lock(&self.ticker).as_ref() {
                t.ticked();
            }
            let mut period = u64::MAX;
            for i in 0..self.workers.len() {
                self.with_engine(i, |g, host| {
                    g.on_tick(host);
                    period = period.min(g.tick_period_ms());
                });
            }
            if period != u64::MAX {
                self.tick_ms.store(period, Ordering::Relaxed);
            }
            self.tick_adopted();
        }
        self.dispatch();
    }

    /// Main thread: hands queued calls to Envoy; a call Envoy refuses is answered as failed.
    pub fn dispatch(&self) {
        for _ in 0..MAX_DISPATCH_ROUNDS {
            let queued = std::mem::take(&mut lock(&self.calls).queued);
            if queued.is_empty() {
                return;
            }
            for q in queued {
                let (cluster, headers) = (&q.request.upstream, &q.request.headers);
                match self
                    .config
                    .callout(cluster, headers, &q.request.body, q.request.timeout_ms)
                {
                    Ok(id) => {
                        lock(&self.calls).in_flight.insert(id, (q.engine, q.token));
                    }
                    Err(why) => {
                        log(Level::Warn, &format!("aforo: {}", why.0));
                        self.answer(q.engine, q.token, CallResponse::failed());
                    }
                }
            }
        }
    }

    /// Main thread: the answer to call `id`.
    pub fn on_callout_done(&self, id: u64, response: CallResponse) {
        let Some((engine, token)) = lock(&self.calls).in_flight.remove(&id) else {
            return;
        };
        self.answer(engine, token, response);
        self.dispatch();
    }

    fn answer(&self, engine: usize, token: u32, response: CallResponse) {
        self.with_engine(engine, |g, host| g.on_call_response(host, token, response));
    }

    /// Main thread: adopts the engines a replaced configuration left (Envoy creates the new
    /// configuration before it destroys the old one), answers their cancelled calls as failed
    /// (so they are sent again from here), and ticks them until they hold no more work.
    fn tick_adopted(&self) {
        let first = self.workers.len();
        let newly = handoff::adopt();
        if !newly.is_empty() {
            let held: u64 = newly.iter().map(|r| r.gateway.counters().buffered).sum();
            log(
                Level::Info,
                &format!("aforo: delivering {held} events held by a replaced configuration"),
            );
            let mut cancelled = Vec::new();
            {
                let mut adopted = lock(&self.adopted);
                for r in newly {
                    cancelled.extend(r.cancelled.iter().map(|t| (first + adopted.len(), *t)));
                    adopted.push(Some(Adopted {
                        namespace: r.namespace,
                        gateway: r.gateway,
                    }));
                }
            }
            for (engine, token) in cancelled {
                self.answer(engine, token, CallResponse::failed());
            }
        }
        let mut adopted = lock(&self.adopted);
        for (n, slot) in adopted.iter_mut().enumerate() {
            let Some(a) = slot.as_mut() else { continue };
            let mut host = NativeHost::new(self, first + n, Site::Adopted, &a.namespace);
            a.gateway.on_tick(&mut host);
            if !a.gateway.holds_work() {
                // Delivered: what is left (dead letters) goes to the log, and the slot empties.
                if let Some(done) = slot.take() {
                    let mut host = NativeHost::new(self, first + n, Site::Adopted, &done.namespace);
                    done.gateway.end(&mut host);
                }
            }
        }
    }

    /// When Envoy drops the configuration (no request uses it any more). Envoy cancels its
    /// calls without answering them; every engine, with what it holds and the tokens of those
    /// calls, leaves for the next configuration, which answers them as failed and delivers
    /// what the engine holds. When Envoy is exiting there is no next configuration, and what is
    /// held is lost (the documented loss window of a shutdown).
    pub fn shutdown(&self) {
        if let Some(t) = lock(&self.ticker).take() {
            t.stop();
        }
        let scheduler = lock(&self.scheduler).take();
        let mut cancelled: HashMap<usize, Vec<u32>> = HashMap::new();
        {
            let mut calls = lock(&self.calls);
            for (engine, token) in calls.in_flight.drain().map(|(_, v)| v) {
                cancelled.entry(engine).or_default().push(token);
            }
            for q in calls.queued.drain(..) {
                cancelled.entry(q.engine).or_default().push(q.token);
            }
        }
        let mut leaving = Vec::new();
        for (i, slot) in self.workers.iter().enumerate() {
            if let Some(mut g) = lock(slot).take() {
                let mut host = NativeHost::new(self, i, Site::Main, &self.namespace);
                g.leave(&mut host);
                leaving.push(handoff::Retired {
                    namespace: self.namespace.clone(),
                    gateway: g,
                    cancelled: cancelled.remove(&i).unwrap_or_default(),
                });
            }
        }
        let first = self.workers.len();
        for (n, slot) in lock(&self.adopted).drain(..).enumerate() {
            if let Some(mut a) = slot {
                let mut host = NativeHost::new(self, first + n, Site::Adopted, &a.namespace);
                a.gateway.leave(&mut host);
                leaving.push(handoff::Retired {
                    namespace: a.namespace,
                    gateway: a.gateway,
                    cancelled: cancelled.remove(&(first + n)).unwrap_or_default(),
                });
            }
        }
        let held: u64 = leaving.iter().map(|r| r.gateway.counters().buffered).sum();
        if held > 0 {
            log(
                Level::Info,
                &format!(
                    "aforo: configuration replaced or Envoy stopping with {held} events held; the next configuration delivers them"
                ),
            );
        }
        handoff::hand_over(leaving);
        drop(scheduler);
    }
}

/// The counters of configurations with the same API key are shared (two listeners of one
/// tenant count one quota); another key's are apart, even when customer ids collide.
/// The key is hashed with a random key of this process (the namespace never leaves it).
fn counter_namespace(config: &FilterConfig) -> String {
    use std::hash::BuildHasher;
    static KEYED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let h = KEYED
        .get_or_init(Default::default)
        .hash_one(config.api_key.expose_secret());
    format!("{h:016x}|")
}

/// A random 64-bit seed (retry jitter, ids of requests without one).
fn seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one(nanos)
}
