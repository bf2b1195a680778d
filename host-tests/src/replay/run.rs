//! `aforo-replay run`: traffic through N worker VMs of the real module, in virtual time, with
//! the simulated ingest answering their calls (and failing when scripted to).

use super::progress::Progress;
use super::report::{
    count_one, decision_of, Decisions, EventStats, RequestResult, RequestStats, RunReport,
};
use super::results::{attach, Arrival, Credentials};
use crate::abi::{compile, CallAnswer, CallRequest, Profile, Vm, VmError, World};
use crate::faults::Fault;
use crate::ingest_sim::{Answer, SimIngest};
use crate::traffic::{header, Traffic};
use aforo_core::rating::Plan;
use aforo_core::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::path::PathBuf;

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The module file.
    pub module: PathBuf,
    /// Plugin configuration bytes, as the proxy would pass them.
    pub config: Vec<u8>,
    /// Environment variables the module sees (`AFORO_*`).
    pub env: Vec<(String, String)>,
    /// Traffic, in order.
    pub traffic: Traffic,
    /// Plan for invoices.
    pub plan: Option<Plan>,
    /// Host profile.
    pub profile: Profile,
    /// Worker VMs (requests go round-robin).
    pub workers: usize,
    /// Scripted ingest faults.
    pub faults: Vec<Fault>,
    /// Snapshot served at `GET …/v1/entitlements`.
    pub snapshot: Option<Vec<u8>>,
    /// Virtual time allowed after the last request for flushes and retries.
    pub drain_ms: u64,
    /// Keep every module log line (default: the last 1,000).
    pub keep_logs: bool,
    /// Echo module logs to stderr.
    pub echo_logs: bool,
    /// Record stored events (ids and quantities) in the ingest.
    pub record_events: bool,
    /// List every request with its events (`RunReport::results`) and label requests without a
    /// customer by the one they resolved to; costs memory per request (about 1 KB).
    pub per_request: bool,
    /// Body chunk size (0: one chunk).
    pub body_chunk: usize,
    /// Cut bodies at random places (1 to 64 bytes a chunk) from this seed instead.
    pub random_chunks: Option<u64>,
    /// No progress bar.
    pub quiet: bool,
    /// Seed of the modules' randomness (WASI `random_get`).
    pub seed: u64,
    /// How far the gateway's clock runs ahead of the ingest's (negative: behind).
    pub gateway_skew_ms: i64,
}

impl RunOptions {
    /// Options with the defaults of the CLI.
    pub fn new(module: PathBuf, config: Vec<u8>, traffic: Traffic) -> Self {
        RunOptions {
            module,
            config,
            env: Vec::new(),
            traffic,
            plan: None,
            profile: Profile::Envoy,
            workers: 1,
            faults: Vec::new(),
            snapshot: None,
            drain_ms: 3_600_000,
            keep_logs: false,
            echo_logs: false,
            record_events: false,
            per_request: false,
            body_chunk: 0,
            random_chunks: None,
            quiet: true,
            seed: 42,
            gateway_skew_ms: 0,
        }
    }
}

/// Why a run could not complete.
#[derive(Debug)]
pub enum RunError {
    /// A VM problem (load, configuration, trap at start).
    Vm(VmError),
    /// Nothing to replay.
    NoTraffic,
    /// Rating failed.
    Rating(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Vm(e) => e.fmt(f),
            RunError::NoTraffic => f.write_str("the traffic file has no requests"),
            RunError::Rating(e) => write!(f, "rating failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<VmError> for RunError {
    fn from(e: VmError) -> Self {
        RunError::Vm(e)
    }
}

/// An answer on its way back to a VM.
struct Pending {
    due: i64,
    seq: u64,
    vm: usize,
    call: CallRequest,
    answer: Option<CallAnswer>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

struct Sim {
    vms: Vec<Vm>,
    ingest: SimIngest,
    inflight: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    now: i64,
    skew: i64,
}

impl Sim {
    /// Hands the calls a VM just made to the ingest; answers come back at their due time.
    fn route_calls(&mut self, vm: usize) {
        let calls = self.vms[vm].take_calls();
        for call in calls {
            let timeout_ns = call.timeout_ms as i64 * 1_000_000;
            let (due, answer) = if call.fails_at_host {
                (self.now, None)
            } else {
                let method = header(&call.headers, ":method")
                    .unwrap_or("GET")
                    .to_string();
                let path = header(&call.headers, ":path").unwrap_or("/").to_string();
                self.ingest.set_origin(vm);
                match self.ingest.handle(
                    &method,
                    &path,
                    &call.headers,
                    &call.body,
                    Timestamp::from_unix_nanos(self.now),
                ) {
                    Answer::NoAnswer => (self.now + timeout_ns, None),
                    Answer::Respond { delay_ms, .. }
                        if delay_ms as i64 * 1_000_000 > timeout_ns =>
                    {
                        (self.now + timeout_ns, None)
                    }
                    Answer::Respond {
                        status,
                        headers,
                        body,
                        delay_ms,
                    } => (
                        self.now + delay_ms as i64 * 1_000_000,
                        Some((status, headers, body)),
                    ),
                }
            };
            self.seq += 1;
            self.inflight.push(Reverse(Pending {
                due,
                seq: self.seq,
                vm,
                call,
                answer,
            }));
        }
    }

    /// Runs every tick and answer due up to `t`, in time order.
    fn advance_to(&mut self, t: i64) -> Result<(), RunError> {
        loop {
            let next_answer = self.inflight.peek().map(|Reverse(p)| p.due);
            let next_tick = self
                .vms
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.next_tick().map(|n| (n - self.skew, i)))
                .min();
            let (when, is_tick, vm) = match (next_answer, next_tick) {
                (Some(a), Some((n, i))) if n < a => (n, true, i),
                (Some(a), _) => (a, false, 0),
                (None, Some((n, i))) => (n, true, i),
                (None, None) => break,
            };
            if when > t {
                break;
            }
            self.now = self.now.max(when);
            if is_tick {
                self.vms[vm].set_now(self.now + self.skew);
                self.vms[vm].tick()?;
                self.route_calls(vm);
            } else if let Some(Reverse(p)) = self.inflight.pop() {
                self.vms[p.vm].set_now(self.now + self.skew);
                self.vms[p.vm].deliver(&p.call, p.answer)?;
                self.route_calls(p.vm);
            }
        }
        self.now = self.now.max(t);
        Ok(())
    }
}

/// Replays `opts.traffic` and reports.
pub fn run(opts: &RunOptions) -> Result<RunReport, RunError> {
    let first = opts.traffic.first_time().ok_or(RunError::NoTraffic)?;
    let module = compile(&opts.module)?;
    let world = World::new(opts.profile);
    {
        let mut w = world.borrow_mut();
        w.keep_logs = opts.keep_logs;
        w.echo_logs = opts.echo_logs;
    }
    let mut vms = Vec::with_capacity(opts.workers.max(1));
    for i in 0..opts.workers.max(1) {
        let mut vm = Vm::start(
            &module,
            world.clone(),
            &opts.config,
            &opts.env,
            first.unix_nanos() + opts.gateway_skew_ms * 1_000_000,
            opts.seed.wrapping_add(i as u64),
        )?;
        vm.body_chunk = opts.body_chunk;
        vm.random_chunks = opts.random_chunks.map(|s| s | 1);
        vms.push(vm);
    }
    let mut ingest = SimIngest::new(first, opts.faults.clone());
    if opts.per_request {
        ingest = ingest.track_deliveries();
    }
    if opts.record_events {
        ingest = ingest.record_events();
    }
    if let Some(p) = &opts.plan {
        ingest = ingest.with_plan(p.clone());
    }
    if let Some(s) = &opts.snapshot {
        ingest = ingest.with_snapshot(s.clone());
    }
    let mut sim = Sim {
        vms,
        ingest,
        inflight: BinaryHeap::new(),
        seq: 0,
        now: first.unix_nanos(),
        skew: opts.gateway_skew_ms * 1_000_000,
    };
    for i in 0..sim.vms.len() {
        sim.route_calls(i);
    }
    let mut report = RunReport {
        module: opts.module.display().to_string(),
        profile: opts.profile.name().to_string(),
        workers: sim.vms.len(),
        started_at: first.to_rfc3339(),
        ..RunReport::default()
    };
    report.memory_bytes_configured = sim.vms.iter().map(Vm::memory_bytes).max().unwrap_or(0);
    let mut requests = RequestStats::default();
    let mut progress = Progress::new(opts.traffic.len() as u64, opts.quiet);
    report.statuses.reserve(opts.traffic.len());
    let credentials = Credentials::of(&opts.config, &opts.env);
    let mut arrivals: Vec<Arrival> = Vec::new();
    let mut cursor = opts.traffic.cursor();
    let mut i = 0usize;
    while let Some(entry) = cursor.next_entry() {
        let t = entry.time.unix_nanos().max(sim.now);
        sim.advance_to(t)?;
        let w = i % sim.vms.len();
        let at_nanos = sim.now + sim.skew;
        sim.vms[w].set_now(at_nanos);
        let outcome = sim.vms[w].request(entry)?;
        sim.route_calls(w);
        let decision = decision_of(&outcome);
        requests.total += 1;
        *requests.by_status.entry(outcome.status).or_default() += 1;
        if opts.per_request {
            let path = &entry.request.path;
            arrivals.push(Arrival {
                worker: w,
                at_nanos,
                endpoint: path[..path.find(['?', '#']).unwrap_or(path.len())].to_string(),
                credential: credentials.of_request(&entry.request),
                billable: outcome.local_reply.is_none()
                    && !outcome.trapped
                    && credentials.is_billable(outcome.status),
            });
            report.results.push(RequestResult {
                index: i as u64,
                time: Timestamp::from_unix_nanos(t).to_rfc3339(),
                method: entry.request.method.clone(),
                path: path.clone(),
                customer: entry.customer.clone(),
                status: outcome.status,
                decision: decision.to_string(),
                events: Vec::new(),
            });
        } else if let Some(c) = &entry.customer {
            // Looked up before inserting: a replay of a million requests copies each
            // customer's name once, not once a request.
            match report.by_customer.get_mut(c) {
                Some(d) => count_one(d, &decision),
                None => {
                    let mut d = Decisions::new();
                    count_one(&mut d, &decision);
                    report.by_customer.insert(c.clone(), d);
                }
            }
        }
        count_one(&mut requests.by_decision, &decision);
        report.decisions.push(decision);
        if outcome.trapped {
            report.traps += 1;
        }
        report.statuses.push(outcome.status);
        if i % 1024 == 0 {
            progress.update(i as u64);
        }
        i += 1;
    }
    progress.finish();
    // Drain: let ticks flush and retries run until nothing is buffered or in flight.
    let deadline = sim.now + opts.drain_ms as i64 * 1_000_000;
    let step = 1_000_000_000i64;
    while sim.now < deadline {
        let buffered = world.borrow().metric("aforo_events_buffered");
        if buffered <= 0 && sim.inflight.is_empty() {
            break;
        }
        let next = (sim.now + step).min(deadline);
        sim.advance_to(next)?;
    }
    for i in 0..sim.vms.len() {
        sim.vms[i].set_now(sim.now + sim.skew);
        // A trap in the root's on_done (the VM going away) counts as a trap too.
        match sim.vms[i].shutdown() {
            Ok(()) => sim.route_calls(i),
            Err(_) => report.traps += 1,
        }
    }
    // Answers to the final flush.
    sim.advance_to(sim.now + 60_000_000_000)?;
    report.memory_bytes_peak = sim.vms.iter().map(Vm::memory_bytes).max().unwrap_or(0);
    let w = world.borrow();
    let m = |n: &str| w.metric(n);
    let mut events = EventStats {
        received: m("aforo_events_received_total"),
        delivered: m("aforo_events_delivered_total"),
        duplicates: m("aforo_events_duplicate_total"),
        rejected: m("aforo_events_rejected_total"),
        dead_lettered: m("aforo_events_dead_lettered"),
        dead_letters_spilled: m("aforo_dead_letters_spilled_total"),
        buffered: m("aforo_events_buffered"),
        balanced: false,
    };
    events.balanced = events.received
        == events.delivered + events.rejected + events.dead_lettered + events.buffered;
    report.events = events;
    report.log_counts = w.log_counts;
    report.requests = requests;
    report.ingest = sim.ingest.stats().clone();
    attach(&mut report.results, &arrivals, sim.ingest.deliveries());
    for r in &report.results {
        if let Some(c) = &r.customer {
            *report
                .by_customer
                .entry(c.clone())
                .or_default()
                .entry(r.decision.clone())
                .or_default() += 1;
        }
    }
    report.ended_at = Timestamp::from_unix_nanos(sim.now).to_rfc3339();
    if let Some(inv) = sim.ingest.invoices() {
        report.invoices = Some(inv.map_err(|e| RunError::Rating(e.to_string()))?);
    }
    drop(w);
    report.stored = if opts.record_events {
        sim.ingest.stored()
    } else {
        Vec::new()
    };
    report.logs = world.borrow().logs.iter().cloned().collect();
    Ok(report)
}
