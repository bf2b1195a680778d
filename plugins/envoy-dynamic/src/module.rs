//! One filter configuration in Envoy: an engine per worker (as the Wasm filter has one per
//! worker VM), the calls they asked for, and the tick. Requests run on their worker's engine;
//! ticks and the answers to calls run on Envoy's main thread, which is also the only thread that
//! starts calls, so nothing but a lock taken once per tick is shared with the request path.

use crate::abi::{log, Config, Level, Scheduler};
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
    worker: usize,
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
    /// Queues a call for the main thread; the token is the engine's to match the answer.
    pub fn queue(&mut self, worker: usize, request: &OutboundRequest) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let token = self.next_token;
        self.queued.push(Queued {
            worker,
            token,
            request: request.clone(),
        });
        token
    }
}

/// The state behind one `on_http_filter_config_new`.
pub struct Module {
    config: Config,
    workers: Vec<Mutex<Gateway>>,
    /// Metric ids Envoy gave at configuration time.
    pub metrics: MetricIds,
    calls: Mutex<Calls>,
    scheduler: Mutex<Option<Arc<Scheduler>>>,
    ticker: Mutex<Option<Ticker>>,
    tick_ms: Arc<AtomicU64>,
    /// The largest body the engine keeps (from the configuration).
    pub max_body: usize,
}

/// Locks a mutex, also after a panic elsewhere left it poisoned (the engine's state is
/// still consistent per call: every rule returns before it mutates, or mutates in one step).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Module {
    /// Engines for `workers` workers, metrics defined, the tick started.
    pub fn start(
        config: Config,
        filter_config: FilterConfig,
        workers: usize,
        ticking: bool,
    ) -> Arc<Module> {
        let seed = seed();
        let max_body = filter_config.max_body_bytes;
        let engines: Vec<Mutex<Gateway>> = (0..workers.max(1))
            .map(|i| {
                Mutex::new(Gateway::new(
                    filter_config.clone(),
                    seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ))
            })
            .collect();
        let tick = engines
            .first()
            .map(|g| lock(g).tick_period_ms())
            .unwrap_or(1_000);
        let module = Arc::new(Module {
            config,
            workers: engines,
            metrics: MetricIds::define(config),
            calls: Mutex::new(Calls::default()),
            scheduler: Mutex::new(None),
            ticker: Mutex::new(None),
            tick_ms: Arc::new(AtomicU64::new(tick)),
            max_body,
        });
        let scheduler = if ticking { config.scheduler() } else { None };
        match scheduler {
            Some(s) => {
                let s = Arc::new(s);
                *lock(&module.ticker) = Ticker::start(s.clone(), module.tick_ms.clone());
                *lock(&module.scheduler) = Some(s);
            }
            None if !ticking => {}
            None => log(
                Level::Error,
                "aforo: Envoy gave no scheduler: events are not flushed and the snapshot is not synced",
            ),
        }
        module
    }

    /// The engine of `worker` (an index past the engines wraps: Envoy's worker count is read
    /// once, at configuration time).
    pub fn engine(&self, worker: usize) -> &Mutex<Gateway> {
        &self.workers[worker % self.workers.len()]
    }

    /// The configuration handle (main-thread metrics and calls).
    pub fn config(&self) -> Config {
        self.config
    }

    /// The call queue.
    pub fn calls(&self) -> &Mutex<Calls> {
        &self.calls
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
            for worker in 0..self.workers.len() {
                let mut host = NativeHost::new(self, worker, Site::Main);
                let mut g = lock(&self.workers[worker]);
                g.on_tick(&mut host);
                period = period.min(g.tick_period_ms());
            }
            if period != u64::MAX {
                self.tick_ms.store(period, Ordering::Relaxed);
            }
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
                        lock(&self.calls).in_flight.insert(id, (q.worker, q.token));
                    }
                    Err(why) => {
                        log(Level::Warn, &format!("aforo: {}", why.0));
                        self.answer(q.worker, q.token, CallResponse::failed());
                    }
                }
            }
        }
    }

    /// Main thread: the answer to call `id`.
    pub fn on_callout_done(&self, id: u64, response: CallResponse) {
        let Some((worker, token)) = lock(&self.calls).in_flight.remove(&id) else {
            return;
        };
        self.answer(worker, token, response);
        self.dispatch();
    }

    fn answer(&self, worker: usize, token: u32, response: CallResponse) {
        let mut host = NativeHost::new(self, worker, Site::Main);
        lock(self.engine(worker)).on_call_response(&mut host, token, response);
    }

    /// Main thread, when Envoy drops the configuration: stop the tick, send what is buffered
    /// (best effort: the answers may not arrive; the documented loss window of a shutdown).
    pub fn shutdown(&self) {
        if let Some(t) = lock(&self.ticker).take() {
            t.stop();
        }
        for worker in 0..self.workers.len() {
            let mut host = NativeHost::new(self, worker, Site::Main);
            let mut g = lock(&self.workers[worker]);
            let buffered = g.counters().buffered;
            if buffered > 0 {
                log(
                    Level::Warn,
                    &format!("aforo: shutting down with {buffered} events buffered; flushing"),
                );
            }
            g.flush_now(&mut host);
        }
        self.dispatch();
        lock(&self.scheduler).take();
    }
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
