//! One proxy-wasm VM (a worker): instantiate the module once, then drive its callbacks for
//! many requests, ticks and call answers, as a proxy does.

use super::profile::Profile;
use super::state::{
    refill_pairs, CallAnswer, CallRequest, HostState, LocalReply, Phase, StreamData,
};
use super::world::SharedWorld;
use super::{imports, wasi};
use crate::traffic::Entry;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimitsBuilder, TypedFunc};

/// What went wrong with a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmError {
    /// The module could not be loaded or linked.
    Load(String),
    /// The module refused its configuration (`on_configure` returned false); with its logs.
    ConfigRefused(String),
    /// The module trapped (a proxy answers 503 under FAIL_CLOSED).
    Trap(String),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Load(m) => write!(f, "cannot load the module: {m}"),
            VmError::ConfigRefused(m) => write!(f, "the module refused its configuration: {m}"),
            VmError::Trap(m) => write!(f, "the module trapped: {m}"),
        }
    }
}

impl std::error::Error for VmError {}

/// The result of one request through the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Status the client got.
    pub status: u16,
    /// The local reply, when the filter answered itself.
    pub local_reply: Option<LocalReply>,
    /// Request headers as forwarded upstream (after the filter; with `capture_headers`).
    pub upstream_headers: Vec<(String, String)>,
    /// Response headers as sent to the client (with `capture_headers`; empty otherwise).
    pub response_headers: Vec<(String, String)>,
    /// The module trapped on this request (the proxy answered 503).
    pub trapped: bool,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut cfg = Config::new();
        cfg.epoch_interruption(true);
        // AFORO_PERFMAP=1 writes /tmp/perf-<pid>.map so `perf report` names guest functions.
        if std::env::var_os("AFORO_PERFMAP").is_some() {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&cfg).unwrap_or_default();
        let e = engine.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            e.increment_epoch();
        });
        engine
    })
}

fn linker() -> Result<&'static Linker<HostState>, VmError> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let mut l = Linker::new(engine());
            imports::add(&mut l).map_err(|e| e.to_string())?;
            wasi::add(&mut l).map_err(|e| e.to_string())?;
            Ok(l)
        })
        .as_ref()
        .map_err(|e| VmError::Load(e.clone()))
}

/// Compiles a module once per process and path (tests share it).
pub fn compile(path: &Path) -> Result<Module, VmError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(m) = cache.lock().ok().and_then(|c| c.get(path).cloned()) {
        return Ok(m);
    }
    let bytes =
        std::fs::read(path).map_err(|e| VmError::Load(format!("{}: {e}", path.display())))?;
    let module = Module::new(engine(), &bytes)
        .map_err(|e| VmError::Load(format!("{}: {e}", path.display())))?;
    if let Ok(mut c) = cache.lock() {
        c.insert(path.to_path_buf(), module.clone());
    }
    Ok(module)
}

type F2 = TypedFunc<(i32, i32), ()>;
type F3 = TypedFunc<(i32, i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

struct Funcs {
    on_context_create: F2,
    on_request_headers: F3,
    on_request_body: Option<F3>,
    on_response_headers: Option<F3>,
    on_response_body: Option<F3>,
    on_log: Option<TypedFunc<i32, ()>>,
    on_done: Option<TypedFunc<i32, i32>>,
    on_delete: Option<TypedFunc<i32, ()>>,
    on_tick: Option<TypedFunc<i32, ()>>,
    on_http_call_response: Option<F5>,
}

/// A VM and its root context.
pub struct Vm {
    store: Store<HostState>,
    f: Funcs,
    next_context: u32,
    next_tick_nanos: Option<i64>,
    dead: Option<String>,
    profile: Profile,
    /// Split bodies into chunks of this many bytes (0: one chunk).
    pub body_chunk: usize,
    /// Split bodies at random places instead (1 to 64 bytes a chunk), from this seed: a fault
    /// that cuts lines, CRLFs and UTF-8 sequences of a stream anywhere.
    pub random_chunks: Option<u64>,
    /// Copy the headers after the filter into each `Outcome` (tests; costs two copies).
    pub capture_headers: bool,
}

const ROOT: i32 = 1;

/// The id of a VM's first request context under `profile` (see `Vm::next_context`).
fn first_request_context(profile: Profile) -> u32 {
    match profile {
        Profile::Envoy => 2,
        Profile::Kong => 1,
    }
}
const PAUSE: i32 = 1;
/// Epoch ticks (100 ms each) a single callback may run before it is interrupted.
const CALLBACK_DEADLINE: u64 = 100;

fn trap(e: wasmtime::Error) -> VmError {
    VmError::Trap(format!("{e:#}"))
}

impl Vm {
    /// Instantiates `module` and configures its root context like a proxy starting a plugin.
    pub fn start(
        module: &Module,
        world: SharedWorld,
        plugin_config: &[u8],
        env: &[(String, String)],
        now_nanos: i64,
        seed: u64,
    ) -> Result<Vm, VmError> {
        let profile = world.borrow().profile;
        let host = HostState {
            world: world.clone(),
            now_nanos,
            plugin_config: plugin_config.to_vec(),
            vm_config: Vec::new(),
            env: env.to_vec(),
            tick_period_ms: 0,
            effective_context: ROOT as u32,
            stream: StreamData::default(),
            calls: Vec::new(),
            next_token: 0,
            local_reply: None,
            phase: Phase::Start,
            rng: seed,
            memory: None,
            alloc: None,
            stdio: Vec::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(512 << 20)
                .instances(1)
                .build(),
        };
        let mut store = Store::new(engine(), host);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(CALLBACK_DEADLINE);
        store.epoch_deadline_trap();
        let mut l = linker()?.clone();
        l.define_unknown_imports_as_traps(module)
            .map_err(|e| VmError::Load(e.to_string()))?;
        let instance = l
            .instantiate(&mut store, module)
            .map_err(|e| VmError::Load(format!("{e:#}")))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(VmError::Load("the module exports no memory".into()))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .map_err(|_| {
                VmError::Load(
                    "the module exports neither proxy_on_memory_allocate nor malloc".into(),
                )
            })?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        if instance
            .get_export(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
            && instance
                .get_export(&mut store, "proxy_abi_version_0_2_0")
                .is_none()
        {
            return Err(VmError::Load(
                "the module does not export proxy_abi_version_0_2_1 (is it a proxy-wasm filter?)"
                    .into(),
            ));
        }
        fn opt<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
            i: &wasmtime::Instance,
            store: &mut Store<HostState>,
            name: &str,
        ) -> Option<TypedFunc<P, R>> {
            i.get_typed_func(&mut *store, name).ok()
        }
        let f = Funcs {
            on_context_create: instance
                .get_typed_func(&mut store, "proxy_on_context_create")
                .map_err(|e| VmError::Load(e.to_string()))?,
            on_request_headers: instance
                .get_typed_func(&mut store, "proxy_on_request_headers")
                .map_err(|e| VmError::Load(e.to_string()))?,
            on_request_body: opt(&instance, &mut store, "proxy_on_request_body"),
            on_response_headers: opt(&instance, &mut store, "proxy_on_response_headers"),
            on_response_body: opt(&instance, &mut store, "proxy_on_response_body"),
            on_log: opt(&instance, &mut store, "proxy_on_log"),
            on_done: opt(&instance, &mut store, "proxy_on_done"),
            on_delete: opt(&instance, &mut store, "proxy_on_delete"),
            on_tick: opt(&instance, &mut store, "proxy_on_tick"),
            on_http_call_response: opt(&instance, &mut store, "proxy_on_http_call_response"),
        };
        for init in ["_initialize", "_start"] {
            if let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, init) {
                func.call(&mut store, ()).map_err(trap)?;
                break;
            }
        }
        f.on_context_create
            .call(&mut store, (ROOT, 0))
            .map_err(trap)?;
        if let Ok(vm_start) =
            instance.get_typed_func::<(i32, i32), i32>(&mut store, "proxy_on_vm_start")
        {
            if vm_start.call(&mut store, (ROOT, 0)).map_err(trap)? == 0 {
                return Err(VmError::ConfigRefused(last_logs(&world)));
            }
        }
        let configure = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "proxy_on_configure")
            .map_err(|e| VmError::Load(e.to_string()))?;
        let ok = configure
            .call(&mut store, (ROOT, plugin_config.len() as i32))
            .map_err(trap)?;
        if ok == 0 {
            return Err(VmError::ConfigRefused(last_logs(&world)));
        }
        let period = store.data().tick_period_ms as i64;
        Ok(Vm {
            store,
            f,
            // Envoy numbers every context from one counter (the root is 1); Kong numbers its
            // roots by a CRC32 and each worker's requests by a counter from 1 (ngx_proxy_wasm.c,
            // `++next_id`), so a request's id can be a root's: here the first one is.
            next_context: first_request_context(profile),
            next_tick_nanos: (period > 0).then_some(now_nanos + period * 1_000_000),
            dead: None,
            profile,
            body_chunk: 0,
            random_chunks: None,
            capture_headers: false,
        })
    }

    /// Sets the virtual clock.
    pub fn set_now(&mut self, nanos: i64) {
        self.store.data_mut().now_nanos = nanos;
    }

    /// When the next tick is due (nanos), if the module asked for ticks.
    pub fn next_tick(&self) -> Option<i64> {
        if self.dead.is_some() {
            return None;
        }
        self.next_tick_nanos
    }

    /// Why the VM is dead, if it trapped.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Calls started since the last look.
    pub fn take_calls(&mut self) -> Vec<CallRequest> {
        std::mem::take(&mut self.store.data_mut().calls)
    }

    /// The module's linear memory now, in bytes. Wasm memory never shrinks, so this is also
    /// the peak so far.
    pub fn memory_bytes(&self) -> u64 {
        self.store
            .data()
            .memory
            .map(|m| m.data_size(&self.store) as u64)
            .unwrap_or(0)
    }

    /// What the module wrote to stdout/stderr.
    pub fn stdio(&self) -> String {
        String::from_utf8_lossy(&self.store.data().stdio).into_owned()
    }

    fn guard<T>(&mut self, r: wasmtime::Result<T>) -> Result<T, VmError> {
        self.store.set_epoch_deadline(CALLBACK_DEADLINE);
        r.map_err(|e| {
            let t = trap(e);
            self.dead = Some(t.to_string());
            t
        })
    }

    /// Runs the due tick at the current virtual time.
    pub fn tick(&mut self) -> Result<(), VmError> {
        let period = self.store.data().tick_period_ms as i64;
        if let Some(next) = self.next_tick_nanos {
            self.next_tick_nanos = Some(next + period.max(1) * 1_000_000);
        }
        let Some(f) = self.f.on_tick.clone() else {
            return Ok(());
        };
        self.store.data_mut().phase = Phase::Tick;
        self.store.data_mut().effective_context = ROOT as u32;
        self.store.set_epoch_deadline(CALLBACK_DEADLINE);
        let r = f.call(&mut self.store, ROOT);
        self.guard(r)?;
        // The module may have changed its period.
        let p = self.store.data().tick_period_ms as i64;
        if p != period && p > 0 {
            self.next_tick_nanos = Some(self.store.data().now_nanos + p * 1_000_000);
        }
        Ok(())
    }

    /// Delivers the answer (or the failure, with `None`) of an outbound call.
    pub fn deliver(
        &mut self,
        call: &CallRequest,
        answer: Option<CallAnswer>,
    ) -> Result<(), VmError> {
        let Some(f) = self.f.on_http_call_response.clone() else {
            return Ok(());
        };
        if self.dead.is_some() {
            return Ok(());
        }
        let (headers, body) = match answer {
            Some((status, mut headers, body)) => {
                headers.insert(0, (":status".to_string(), status.to_string()));
                (headers, body)
            }
            None if self.profile == Profile::Kong => (
                vec![(":dispatch_status".to_string(), "timeout".to_string())],
                Vec::new(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let failed = !headers.iter().any(|(k, _)| k == ":status");
        let nh = if failed { 0 } else { headers.len() as i32 };
        let bl = if failed { 0 } else { body.len() as i32 };
        let st = self.store.data_mut();
        st.stream.call_headers = headers;
        st.stream.call_body = body;
        st.phase = Phase::CallResponse;
        let r = f.call(
            &mut self.store,
            // With the root's id, whoever sent it: both hosts deliver answers to the root
            // (Envoy's call runs on the sender's root context; Kong passes `filter->id`).
            (ROOT, call.token as i32, nh, bl, 0),
        );
        self.guard(r)
    }

    fn call3(&mut self, f: Option<F3>, ctx: i32, a: i32, b: i32) -> Result<i32, VmError> {
        match f {
            None => Ok(0),
            Some(f) => {
                let r = f.call(&mut self.store, (ctx, a, b));
                self.guard(r)
            }
        }
    }

    fn call1(&mut self, f: Option<TypedFunc<i32, ()>>, ctx: i32) -> Result<(), VmError> {
        match f {
            None => Ok(()),
            Some(f) => {
                let r = f.call(&mut self.store, ctx);
                self.guard(r)
            }
        }
    }

    fn chunks(&mut self, len: usize) -> Vec<(usize, usize)> {
        if len == 0 {
            return Vec::new();
        }
        if let Some(state) = &mut self.random_chunks {
            let mut out = Vec::new();
            let mut at = 0;
            while at < len {
                // xorshift64: the same seed cuts the same traffic the same way.
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                let size = 1 + (*state % 64) as usize;
                out.push((at, (at + size).min(len)));
                at += size;
            }
            return out;
        }
        let size = if self.body_chunk == 0 {
            len
        } else {
            self.body_chunk
        };
        (0..len)
            .step_by(size)
            .map(|s| (s, (s + size).min(len)))
            .collect()
    }

    /// Runs one request and its recorded response through the filter.
    pub fn request(&mut self, entry: &Entry) -> Result<Outcome, VmError> {
        if let Some(why) = &self.dead {
            // A crashed VM under FAIL_CLOSED: every request gets 503.
            let _ = why;
            return Ok(Outcome {
                status: 503,
                local_reply: None,
                upstream_headers: Vec::new(),
                response_headers: Vec::new(),
                trapped: true,
            });
        }
        let ctx = self.next_context as i32;
        self.next_context = self
            .next_context
            .wrapping_add(1)
            .max(first_request_context(self.profile));
        let req = &entry.request;
        {
            let st = self.store.data_mut();
            let pseudo = [
                (":authority", req.authority.as_str()),
                (":path", req.path.as_str()),
                (":method", req.method.as_str()),
                (":scheme", "http"),
            ];
            let rest = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
            st.stream.begin(pseudo.into_iter().chain(rest), &req.peer);
            st.local_reply = None;
            st.phase = Phase::Request;
            st.effective_context = ctx as u32;
        }
        let r = self.f.on_context_create.call(&mut self.store, (ctx, ROOT));
        if let Err(e) = self.guard(r) {
            return Ok(self.trapped(e));
        }
        let kong = self.profile == Profile::Kong;
        let n = self.store.data().stream.request_headers.len() as i32;
        let eos = i32::from(req.body.is_empty() && !kong);
        let mut action = match self.call3(Some(self.f.on_request_headers.clone()), ctx, n, eos) {
            Ok(a) => a,
            Err(e) => return Ok(self.trapped(e)),
        };
        let chunks = self.chunks(req.body.len());
        for (i, (s, e)) in chunks.iter().enumerate() {
            if self.store.data().local_reply.is_some() || action == PAUSE {
                break;
            }
            self.store.data_mut().stream.request_body = req.body[*s..*e].to_vec();
            let last = i32::from(i + 1 == chunks.len());
            action = match self.call3(self.f.on_request_body.clone(), ctx, (*e - *s) as i32, last) {
                Ok(a) => a,
                Err(e) => return Ok(self.trapped(e)),
            };
        }
        let upstream_headers = if self.capture_headers {
            self.store.data().stream.request_headers.clone()
        } else {
            Vec::new()
        };
        let local = self.store.data_mut().local_reply.take();
        let (status, response_headers) = match &local {
            Some(reply) => {
                // Envoy runs the local reply through the encoder path, so the filter sees it.
                self.set_response_headers(reply.status, &reply.headers);
                self.store.data_mut().phase = Phase::Response;
                if !kong {
                    let n = self.store.data().stream.response_headers.len() as i32;
                    if let Err(e) = self.call3(self.f.on_response_headers.clone(), ctx, n, 0) {
                        return Ok(self.trapped(e));
                    }
                }
                (reply.status, self.captured_response_headers())
            }
            None if action == PAUSE => {
                // A paused request that is never resumed would hang a real proxy.
                (504, Vec::new())
            }
            None => {
                let res = &entry.response;
                self.set_response_headers(res.status, &res.headers);
                self.store.data_mut().phase = Phase::Response;
                let n = self.store.data().stream.response_headers.len() as i32;
                let eos = i32::from(res.body.is_empty() && !kong);
                if let Err(e) = self.call3(self.f.on_response_headers.clone(), ctx, n, eos) {
                    return Ok(self.trapped(e));
                }
                let chunks = self.chunks(res.body.len());
                for (i, (s, e)) in chunks.iter().enumerate() {
                    self.store.data_mut().stream.response_body = res.body[*s..*e].to_vec();
                    let last = i32::from(i + 1 == chunks.len());
                    if let Err(e) =
                        self.call3(self.f.on_response_body.clone(), ctx, (*e - *s) as i32, last)
                    {
                        return Ok(self.trapped(e));
                    }
                }
                (res.status, self.captured_response_headers())
            }
        };
        self.store.data_mut().phase = Phase::Log;
        if let Err(e) = self.call1(self.f.on_log.clone(), ctx) {
            return Ok(self.trapped(e));
        }
        if let Some(f) = self.f.on_done.clone() {
            let r = f.call(&mut self.store, ctx);
            if let Err(e) = self.guard(r) {
                return Ok(self.trapped(e));
            }
        }
        if let Err(e) = self.call1(self.f.on_delete.clone(), ctx) {
            return Ok(self.trapped(e));
        }
        Ok(Outcome {
            status,
            local_reply: local,
            upstream_headers,
            response_headers,
            trapped: false,
        })
    }

    /// The response headers the filter sees: `:status`, then `headers`.
    fn set_response_headers(&mut self, status: u16, headers: &[(String, String)]) {
        let mut digits = itoa::Buffer::new();
        let status = digits.format(status);
        let rest = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let st = self.store.data_mut();
        refill_pairs(
            &mut st.stream.response_headers,
            std::iter::once((":status", status)).chain(rest),
        );
    }

    /// The response headers after the filter, when `capture_headers` asks for them.
    fn captured_response_headers(&self) -> Vec<(String, String)> {
        if self.capture_headers {
            self.store.data().stream.response_headers.clone()
        } else {
            Vec::new()
        }
    }

    fn trapped(&mut self, e: VmError) -> Outcome {
        self.dead = Some(e.to_string());
        Outcome {
            status: 503,
            local_reply: None,
            upstream_headers: Vec::new(),
            response_headers: Vec::new(),
            trapped: true,
        }
    }

    /// Calls the root context's `on_done`, as Envoy does before removing the VM (Kong never
    /// calls a root's `on_done`: ngx_proxy_wasm.c calls it only from a request's log step).
    pub fn shutdown(&mut self) -> Result<(), VmError> {
        if self.dead.is_some() || self.profile == Profile::Kong {
            return Ok(());
        }
        if let Some(f) = self.f.on_done.clone() {
            self.store.data_mut().phase = Phase::Done;
            let r = f.call(&mut self.store, ROOT);
            self.guard(r)?;
        }
        Ok(())
    }
}

fn last_logs(world: &SharedWorld) -> String {
    let w = world.borrow();
    let lines: Vec<String> = w
        .logs
        .iter()
        .rev()
        .take(3)
        .map(|l| l.message.clone())
        .collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}
