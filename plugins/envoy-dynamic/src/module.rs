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
use std::sync::atomic::{AtomicU64, Ordering};
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
    next_token: u32,
    queued: Vec<Queued>,
    in_flight: HashMap<u64, (usize, u32)>,
}

impl Calls {
    /// Queues a call of engine `engine` for the main thread; the token is the engine's to
    /// match the answer.
    pub fn queue(&mut self, engine: usize, request: &OutboundRequest) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let token = self.next_token;
        self.queued.push(Queued {
            engine,
            token,
            request: request.clone(),
        });
        token
    }

    /// Whether engine `engine` waits for an answer.
    fn waits(&self, engine: usize) -> bool {
        self.queued.iter().any(|q| q.engine == engine)
            || self.in_flight.values().any(|(e, _)| *e == engine)
    }
}

/// A worker's engine: `None` once it was handed over.
type Slot = Mutex<Option<Gateway>>;

/// The state behind one `on_http_filter_config_new`.
pub struct Module {
    config: Config,
    /// The workers' engines.
    workers: Vec<Slot>,
    /// Engines adopted from replaced configurations (numbered after the workers'; `None` once
    /// delivered). Only the main thread uses them.
    adopted: Mutex<Vec<Option<Gateway>>>,
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

    /// Runs `f` on engine `i`: a worker's, or (past the workers) an adopted one.
    fn with_engine<R>(&self, i: usize, f: impl FnOnce(&mut Gateway) -> R) -> Option<R> {
        match self.workers.get(i) {
            Some(slot) => lock(slot).as_mut().map(f),
            None => lock(&self.adopted)
                .get_mut(i - self.workers.len())
                .and_then(Option::as_mut)
                .map(f),
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
                let mut host = NativeHost::new(self, i, Site::Main);
                if let Some(g) = lock(&self.workers[i]).as_mut() {
                    g.on_tick(&mut host);
                    period = period.min(g.tick_period_ms());
                }
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
        let mut host = NativeHost::new(self, engine, Site::Main);
        self.with_engine(engine, |g| g.on_call_response(&mut host, token, response));
    }

    /// Main thread: adopts the engines a replaced configuration left (Envoy creates the new
    /// configuration before it destroys the old one), and ticks them until they have
    /// delivered what they held.
    fn tick_adopted(&self) {
        let newly = handoff::adopt();
        let mut adopted = lock(&self.adopted);
        if !newly.is_empty() {
            let held: u64 = newly.iter().map(|g| g.counters().buffered).sum();
            log(
                Level::Info,
                &format!("aforo: delivering {held} events held by a replaced configuration"),
            );
            adopted.extend(newly.into_iter().map(Some));
        }
        let first = self.workers.len();
        for (n, slot) in adopted.iter_mut().enumerate() {
            let Some(g) = slot.as_mut() else { continue };
            let mut host = NativeHost::new(self, first + n, Site::Main);
            g.on_tick(&mut host);
            if g.counters().buffered == 0 && !lock(&self.calls).waits(first + n) {
                *slot = None;
            }
        }
    }

    /// When Envoy drops the configuration (no request uses it any more). Envoy cancels its
    /// calls, so their batches are marked failed, to be sent again; then every engine, with
    /// the events it holds, is handed to the next configuration. When Envoy is exiting there
    /// is none, and what is held is lost (the documented loss window of a shutdown).
    pub fn shutdown(&self) {
        if let Some(t) = lock(&self.ticker).take() {
            t.stop();
        }
        // Nothing may start a call from here on: an engine asking gets `Err` and retries later.
        let scheduler = lock(&self.scheduler).take();
        for _ in 0..MAX_DISPATCH_ROUNDS {
            let pending: Vec<(usize, u32)> = {
                let mut calls = lock(&self.calls);
                let mut p: Vec<(usize, u32)> = calls.in_flight.drain().map(|(_, v)| v).collect();
                p.extend(calls.queued.drain(..).map(|q| (q.engine, q.token)));
                p
            };
            if pending.is_empty() {
                break;
            }
            for (engine, token) in pending {
                self.answer(engine, token, CallResponse::failed());
            }
        }
        let mut engines: Vec<Gateway> =
            self.workers.iter().filter_map(|s| lock(s).take()).collect();
        engines.extend(lock(&self.adopted).drain(..).flatten());
        let held: u64 = engines.iter().map(|g| g.counters().buffered).sum();
        if held > 0 {
            log(
                Level::Info,
                &format!(
                    "aforo: configuration replaced or Envoy stopping with {held} events held; the next configuration delivers them"
                ),
            );
        }
        handoff::hand_over(engines);
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
