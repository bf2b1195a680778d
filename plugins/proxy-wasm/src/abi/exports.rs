//! The callbacks the host calls, dispatched to the root contexts (one per plugin configuration
//! in the VM) and the HTTP contexts (one per request), kept apart: Kong numbers roots by a
//! CRC32 and requests by a counter, so a request's id can equal a root's. The tables are not
//! held while a callback runs, so a host that calls back into the module during a host call
//! finds them free; a callback for a context that is gone, or re-entered while its callback
//! runs, is not run (a request callback then lets the stream go on; an answer is dropped).

use super::calls::{self, Action};
use crate::http::Http;
use crate::root::Root;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The context a call was sent from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Root(u32),
    Http(u32),
}

/// A context: a root, or a request with the id of its root.
#[derive(Clone)]
enum Context {
    Root(Rc<RefCell<Root>>),
    Http(u32, Rc<RefCell<Http>>),
}

/// Table keys keep roots and requests apart (one table: one copy of its code in the module).
const ROOT: u32 = 0;
const REQUEST: u32 = 1;

thread_local! {
    static CONTEXTS: RefCell<BTreeMap<(u32, u32), Context>> = const { RefCell::new(BTreeMap::new()) };
    /// The sender of each outstanding `http_call`, by (root id, token): Envoy and Kong deliver
    /// an answer with the id of the sender's root (tokens are unique per VM in Envoy, per
    /// worker in Kong; the root id is kept in case a host numbers them per root, so an answer
    /// never reaches another root's call).
    static CALLOUTS: RefCell<BTreeMap<(u32, u32), Sender>> = const { RefCell::new(BTreeMap::new()) };
    /// The root and the context whose callback is running (the sender of a call made now).
    static ACTIVE: Cell<Option<(u32, Sender)>> = const { Cell::new(None) };
}

/// Runs `f` with `active` as the sender of calls made meanwhile, then restores the one before
/// (a nested callback must not leave its context behind).
fn as_active<R>(active: (u32, Sender), f: impl FnOnce() -> R) -> R {
    let before = ACTIVE.with(|a| a.replace(Some(active)));
    let r = f();
    ACTIVE.with(|a| a.set(before));
    r
}

fn context(kind: u32, id: u32) -> Option<Context> {
    CONTEXTS.with(|t| t.try_borrow().ok()?.get(&(kind, id)).cloned())
}

fn insert(kind: u32, id: u32, context: Context) {
    CONTEXTS.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            t.insert((kind, id), context);
        }
    });
}

fn remove(kind: u32, id: u32) -> bool {
    CONTEXTS
        .with(|t| t.try_borrow_mut().ok()?.remove(&(kind, id)))
        .is_some()
}

fn root(id: u32) -> Option<Rc<RefCell<Root>>> {
    match context(ROOT, id)? {
        Context::Root(r) => Some(r),
        Context::Http(..) => None,
    }
}

fn request(id: u32) -> Option<(u32, Rc<RefCell<Http>>)> {
    match context(REQUEST, id)? {
        Context::Http(root_id, h) => Some((root_id, h)),
        Context::Root(_) => None,
    }
}

fn with_root<R>(id: u32, otherwise: R, f: impl FnOnce(&mut Root) -> R) -> R {
    let Some(r) = root(id) else { return otherwise };
    let Ok(mut r) = r.try_borrow_mut() else {
        return otherwise;
    };
    as_active((id, Sender::Root(id)), || f(&mut r))
}

fn with_http<R>(id: u32, otherwise: R, f: impl FnOnce(&mut Http) -> R) -> R {
    let Some((root_id, h)) = request(id) else {
        return otherwise;
    };
    let Ok(mut h) = h.try_borrow_mut() else {
        return otherwise;
    };
    as_active((root_id, Sender::Http(id)), || f(&mut h))
}

/// Remembers which context sent the call with `token`.
pub(super) fn register_callout(token: u32) {
    let Some((root_id, sender)) = ACTIVE.with(Cell::get) else {
        return;
    };
    CALLOUTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.insert((root_id, token), sender);
        }
    });
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Called once when the VM starts (a WASI reactor's entry point).
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: the WASI reactor's constructors, run once before anything else, as the
    // toolchain expects of an `_initialize` written by hand.
    unsafe {
        __wasm_call_ctors();
    }
    // A trap says why in the host's log (at critical level) instead of only "unreachable".
    std::panic::set_hook(Box::new(|info| calls::log(5, &info.to_string())));
}

/// Tells hosts which ABI the module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's allocator for buffers it hands to the module (taken back by `calls::owned` as a
/// `Vec<u8>` of exactly `size`); null when there is no memory, for the host to report.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return std::ptr::NonNull::<u8>::dangling().as_ptr();
    }
    match std::alloc::Layout::array::<u8>(size) {
        // SAFETY: a layout of non-zero size; the memory is not read before the host fills it.
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, root_id: u32) {
    if root_id == 0 {
        insert(
            ROOT,
            id,
            Context::Root(Rc::new(RefCell::new(Root::default()))),
        );
        return;
    }
    let http = root(root_id).and_then(|r| r.try_borrow().ok().map(|r| r.new_http()));
    // Without its root (never, in a host that keeps the ABI) the request passes untouched.
    let http = http.unwrap_or_else(|| {
        calls::log(
            4,
            "aforo: a request came for a root context this VM does not have; it passes unmetered",
        );
        Http::detached()
    });
    let http = Rc::new(RefCell::new(http));
    insert(REQUEST, id, Context::Http(root_id, http));
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_id: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> u32 {
    u32::from(with_root(id, false, |r| r.on_configure(size)))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(id: u32) {
    with_root(id, (), Root::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_done(id: u32) -> u32 {
    if request(id).is_some() {
        return 1;
    }
    u32::from(with_root(id, true, Root::on_done))
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    with_http(id, (), Http::on_log);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    // A request first, as the host ends far more of those; then a root.
    if remove(REQUEST, id) {
        // Its unanswered calls go with it (a host may never answer them).
        CALLOUTS.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.retain(|_, sender| *sender != Sender::Http(id));
            }
        });
        return;
    }
    if remove(ROOT, id) {
        CALLOUTS.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.retain(|(root_id, _), _| *root_id != id);
            }
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(id: u32, _headers: usize, _end: u32) -> u32 {
    with_http(id, Action::Continue, Http::on_request_headers) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(id: u32, size: usize, end: u32) -> u32 {
    with_http(id, Action::Continue, |h| h.on_request_body(size, end != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(id: u32, _trailers: usize) -> u32 {
    with_http(id, Action::Continue, Http::on_request_trailers) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(id: u32, _headers: usize, end: u32) -> u32 {
    with_http(id, Action::Continue, |h| h.on_response_headers(end != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(id: u32, size: usize, end: u32) -> u32 {
    with_http(id, Action::Continue, |h| h.on_response_body(size, end != 0)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_id: u32, _trailers: usize) -> u32 {
    Action::Continue as u32
}

/// An answer to a call, delivered with the id of the sender's root (Envoy and Kong both).
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root_id: u32,
    token: u32,
    _headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    // A host that answers with the sender's own id instead of its root's: that request's root.
    let root_id = match (root(root_id), request(root_id)) {
        (None, Some((its_root, _))) => its_root,
        _ => root_id,
    };
    let sender = CALLOUTS.with(|c| c.try_borrow_mut().ok()?.remove(&(root_id, token)));
    // An answer for a context that went away (or a token never sent) is dropped.
    match sender {
        Some(Sender::Root(id)) => {
            calls::set_effective_context(id);
            with_root(id, (), |r| r.on_call_response(token, body_size));
        }
        Some(Sender::Http(id)) => {
            calls::set_effective_context(id);
            with_http(id, (), |h| h.on_call_response(token, body_size));
        }
        None => {}
    }
}
