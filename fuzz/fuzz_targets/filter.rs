//! The real `aforo_metering.wasm` in the replay harness, fed random requests and responses:
//! any method, path, headers (names and values, including the keys and forwarding headers the
//! filter reads), bodies split into random chunks, answers to its ingest calls. The module must
//! never trap: a trap is a 503 for every request in a proxy.
#![no_main]

use aforo_core::keys::hash_key;
use aforo_core::Timestamp;
use aforo_host_tests::abi::{compile, Profile, Vm, World};
use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::traffic::{Entry, Request, Response};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    route: u8,
    path_tail: String,
    headers: Vec<(u8, String)>,
    extra_headers: Vec<(String, String)>,
    request_body: Vec<u8>,
    status: u16,
    response_headers: Vec<(String, String)>,
    response_body: Vec<u8>,
    chunk: u8,
    advance_ms: u16,
    ingest_status: u16,
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const ROUTES: [&str; 4] = ["/v1/search", "/v1/chat", "/v1/export", "/"];
/// The headers the filter reads, so random values reach its parsers.
const HEADERS: [&str; 6] = [
    "x-api-key",
    "x-customer-id",
    "x-request-id",
    "x-forwarded-for",
    "content-length",
    "authorization",
];

fn config() -> Vec<u8> {
    serde_json::json!({
        "api_key": "sk_test_fuzz",
        "product_id": "prod_fuzz",
        "ingest_url": "http://ingest.aforo.test:8080",
        "customer_header": "x-customer-id",
        "trusted_proxies": ["10.0.0.0/8", "fd00::/8"],
        "flush_interval_ms": 1000,
        "max_buffer_events": 200,
        "routes": [
            {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "metric": "tokens",
             "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"}},
            {"path_prefix": "/v1/export", "feature": "export", "metric": "bytes",
             "quantity": {"from": "response_bytes"}}
        ],
        "entitlements": {
            "customers": {
                "cust_a": {"features": {"search": {"quota": 1000000}, "chat": {}, "export": {}}},
                "cust_ip": {"ip_allowlist": ["203.0.113.0/24", "2001:db8::/32"], "features": {"search": {}}}
            },
            "consumer_keys": [{"key_id": "k1", "hash": hash_key("ck_fuzz").to_text(), "customer_id": "cust_a"}]
        }
    })
    .to_string()
    .into_bytes()
}

struct State {
    vm: Vm,
    now: i64,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

fn with_vm(f: impl FnOnce(&mut State)) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.is_none() {
            let module = compile(&filter_module().unwrap_or_else(|e| panic!("{e}")))
                .unwrap_or_else(|e| panic!("{e}"));
            // 2026-03-15T12:00:00Z.
            let now = 1_773_576_000i64 * 1_000_000_000;
            let vm = Vm::start(&module, World::new(Profile::Envoy), &config(), &[], now, 1)
                .unwrap_or_else(|e| panic!("{e}"));
            *s = Some(State { vm, now });
        }
        if let Some(state) = s.as_mut() {
            f(state);
        }
    });
}

fuzz_target!(|input: Input| {
    with_vm(|s| {
        let mut headers: Vec<(String, String)> = input
            .headers
            .into_iter()
            .map(|(i, v)| (HEADERS[i as usize % HEADERS.len()].to_string(), v))
            .collect();
        headers.extend(input.extra_headers);
        let entry = Entry {
            time: Timestamp::from_unix_nanos(s.now),
            request: Request {
                method: METHODS[input.method as usize % METHODS.len()].to_string(),
                path: format!(
                    "{}{}",
                    ROUTES[input.route as usize % ROUTES.len()],
                    input.path_tail
                ),
                authority: "api.example.com".to_string(),
                headers,
                body: input.request_body,
                peer: "10.1.2.3:4000".to_string(),
            },
            response: Response {
                status: input.status,
                headers: input.response_headers,
                body: input.response_body,
            },
            customer: None,
        };
        s.vm.body_chunk = input.chunk as usize;
        let out =
            s.vm.request(&entry)
                .unwrap_or_else(|e| panic!("host error: {e}"));
        assert!(!out.trapped, "the module trapped: {:?}", s.vm.dead());
        // Time passes; ticks flush; the ingest answers with a random status.
        s.now += i64::from(input.advance_ms) * 1_000_000;
        s.vm.set_now(s.now);
        if s.vm.next_tick().is_some_and(|t| t <= s.now) {
            s.vm.tick().unwrap_or_else(|e| panic!("tick: {e}"));
        }
        for call in s.vm.take_calls() {
            let answer = Some((input.ingest_status, Vec::new(), b"{}".to_vec()));
            s.vm.deliver(&call, answer)
                .unwrap_or_else(|e| panic!("deliver: {e}"));
        }
        assert!(s.vm.dead().is_none(), "the module died: {:?}", s.vm.dead());
    });
});
