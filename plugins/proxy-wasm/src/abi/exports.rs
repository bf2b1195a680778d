//! The callbacks the host calls, dispatched to the root contexts (one per plugin configuration
//! in the VM) and the HTTP contexts (one per request). The table is not held while a callback
//! runs, so a host that calls back into the module during a host call finds it free; a callback
//! for a context that is gone, or already in a callback, does nothing (and lets the stream go on).

use super::calls::{self, Action};
use crate::http::Http;
use crate::root::Root;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Clone)]
enum Context {
    Root(Rc<RefCell<Root>>),
    Http(Rc<RefCell<Http>>),
}

thread_local! {
    static CONTEXTS: RefCell<BTreeMap<u32, Context>> = const { RefCell::new(BTreeMap::new()) };
    /// The context that sent each outstanding `http_call`, by token.
    static CALLOUTS: RefCell<BTreeMap<u32, u32>> = const { RefCell::new(BTreeMap::new()) };
    /// The context whose callback is running (the sender of any call made now).
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

fn context(id: u32) -> Option<Context> {
    ACTIVE.with(|a| a.set(id));
    CONTEXTS.with(|c| c.try_borrow().ok()?.get(&id).cloned())
}

fn with_root<R>(id: u32, otherwise: R, f: impl FnOnce(&mut Root) -> R) -> R {
    match context(id) {
        Some(Context::Root(r)) => match r.try_borrow_mut() {
            Ok(mut root) => f(&mut root),
            Err(_) => otherwise,
        },
        _ => otherwise,
    }
}

fn with_http<R>(id: u32, otherwise: R, f: impl FnOnce(&mut Http) -> R) -> R {
    match context(id) {
        Some(Context::Http(h)) => match h.try_borrow_mut() {
            Ok(mut http) => f(&mut http),
            Err(_) => otherwise,
        },
        _ => otherwise,
    }
}

/// Remembers which context sent the call with `token`.
pub(super) fn register_callout(token: u32) {
    let sender = ACTIVE.with(Cell::get);
    CALLOUTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.insert(token, sender);
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

/// The host's allocator for buffers it hands to the module (taken back by `calls::owned`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    // Not zeroed: the host fills all of it before handing it back.
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)) as *mut u8
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(id: u32, root_id: u32) {
    let context = if root_id == 0 {
        Context::Root(Rc::new(RefCell::new(Root::default())))
    } else {
        let http = match context(root_id) {
            Some(Context::Root(r)) => r.try_borrow().map(|r| r.new_http()).ok(),
            _ => None,
        };
        // Without its root (never, in a host that keeps the ABI) the request passes untouched.
        Context::Http(Rc::new(RefCell::new(http.unwrap_or_else(Http::detached))))
    };
    CONTEXTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.insert(id, context);
        }
    });
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
    u32::from(with_root(id, true, Root::on_done))
}

#[no_mangle]
pub extern "C" fn proxy_on_log(id: u32) {
    with_http(id, (), Http::on_log);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(id: u32) {
    CONTEXTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.remove(&id);
        }
    });
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

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _id: u32,
    token: u32,
    _headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    let sender = CALLOUTS.with(|c| c.try_borrow_mut().ok()?.remove(&token));
    // An answer for a context that went away (or a token never sent) is dropped.
    let Some(sender) = sender else { return };
    match context(sender) {
        Some(Context::Root(_)) => {
            calls::set_effective_context(sender);
            with_root(sender, (), |r| r.on_call_response(token, body_size));
        }
        Some(Context::Http(_)) => {
            calls::set_effective_context(sender);
            with_http(sender, (), |h| h.on_call_response(token, body_size));
        }
        None => {}
    }
}
