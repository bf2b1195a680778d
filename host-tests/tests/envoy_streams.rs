//! Streamed LLM responses through the filter (the Wasm filter and the native module) in a real
//! Envoy 1.40: a loopback upstream sends OpenAI- and Anthropic-shaped `text/event-stream` bodies
//! cut at random boundaries; the client receives each stream byte for byte, and the ingest receives the usage read from the stream's
//! events. A stream cut off by the client or by the upstream is never billed as zero: its event
//! is refused `quantity_unavailable`, kept as a dead letter, and the log says why. Every process
//! is stopped when its guard drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::envoy::{bootstrap, cluster, free_port, Envoy, FilterKind};
use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::IngestServer;
use aforo_host_tests::sse_upstream::{anthropic_stream, openai_stream, Answer, SseUpstream};
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn answer(path: &str) -> Answer {
    let n: u64 = path
        .rsplit('/')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if path.starts_with("/v1/chat/openai/") {
        Answer {
            body: openai_stream(100 + n, 7 + n),
            reset_after: None,
        }
    } else if path.starts_with("/v1/messages/") {
        Answer {
            body: anthropic_stream(30 + n, 12 + n),
            reset_after: None,
        }
    } else if path.starts_with("/v1/chat/reset/") {
        let body = openai_stream(5, 5);
        Answer {
            reset_after: Some(body.len() / 2),
            body,
        }
    } else {
        // A slow stream the client leaves early.
        let mut body = Vec::new();
        for _ in 0..40 {
            body.extend_from_slice(&openai_stream(1, 1)[..120]);
        }
        Answer {
            body,
            reset_after: None,
        }
    }
}

struct Stack {
    kind: FilterKind,
    envoy: Envoy,
    ingest: IngestServer,
    _upstream: SseUpstream,
}

impl Stack {
    /// One of the filter's stats under its build's prefix.
    fn stat(&self, name: &str) -> Option<i64> {
        self.envoy.stat(&self.kind.stat(name))
    }
}

fn stack(kind: FilterKind) -> Stack {
    let upstream = SseUpstream::start(7, answer).unwrap();
    let ingest = IngestServer::start(None).unwrap();
    let config = json!({
        "api_key": "sk_test_streams",
        "product_id": "prod_llm",
        "flush_interval_ms": 200,
        "customer_header": "x-customer-id",
        "max_body_bytes": 4096,
        "routes": [
            {"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "meters": [
                {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/usage/prompt_tokens"}},
                {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/usage/completion_tokens"}}
            ], "properties": {"model": {"from": "response_json", "pointer": "/model"},
                              "asked": {"from": "request_json", "pointer": "/model"}}},
            {"method": "POST", "path_prefix": "/v1/messages", "feature": "chat", "meters": [
                {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/message/usage/input_tokens"}},
                {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/usage/output_tokens"}}
            ], "properties": {"model": {"from": "response_json", "pointer": "/message/model"}}}
        ]
    });
    let (port, admin) = (free_port(), free_port());
    let filter = kind
        .filter(&serde_json::to_string_pretty(&config).unwrap(), &[])
        .unwrap();
    let yaml = bootstrap(
        port,
        admin,
        upstream.port(),
        &filter,
        &cluster("aforo_ingest_sandbox", ingest.port()),
    );
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    Stack {
        kind,
        envoy,
        ingest,
        _upstream: upstream,
    }
}

fn post(envoy: &Envoy, path: &str, customer: &str) -> (u16, Vec<u8>) {
    let r = Client::new(&format!("127.0.0.1:{}", envoy.port))
        .with_timeout(Duration::from_secs(10))
        .request(
            "POST",
            path,
            &[
                ("x-customer-id".into(), customer.into()),
                ("content-type".into(), "application/json".into()),
            ],
            br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
    (r.status, r.body)
}

fn streamed_usage_reaches_the_ingest_and_the_client_gets_every_byte(kind: FilterKind) {
    let s = stack(kind);
    for n in 0..4u64 {
        let (status, body) = post(&s.envoy, &format!("/v1/chat/openai/{n}"), "acme");
        assert_eq!(status, 200);
        assert_eq!(body, openai_stream(100 + n, 7 + n), "stream {n} changed");
        let (status, body) = post(&s.envoy, &format!("/v1/messages/{n}"), "globex");
        assert_eq!(status, 200);
        assert_eq!(body, anthropic_stream(30 + n, 12 + n), "stream {n} changed");
    }
    assert_eq!(s.ingest.wait_for(16, Duration::from_secs(10)), 16);
    let mut got: Vec<(String, String, String)> = s
        .ingest
        .stored()
        .iter()
        .map(|e| {
            let props: serde_json::Value = serde_json::from_str(&e.properties).unwrap();
            // The model that answered, from the stream; and what the client asked for.
            let model = props["model"].as_str().unwrap_or("").to_string();
            if e.customer_id == "acme" {
                assert_eq!(props["asked"], "gpt-4o-mini", "{props}");
            }
            (
                e.customer_id.clone(),
                format!("{}@{model}", e.metric),
                e.quantity.clone(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String)> = (0..4u64)
        .flat_map(|n| {
            [
                ("acme", "input_tokens@gpt-4o-mini", 100 + n),
                ("acme", "output_tokens@gpt-4o-mini", 7 + n),
                ("globex", "input_tokens@claude-sonnet-4", 30 + n),
                ("globex", "output_tokens@claude-sonnet-4", 12 + n),
            ]
            .map(|(c, m, q)| (c.to_string(), m.to_string(), q.to_string()))
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
}

fn a_stream_cut_off_is_a_dead_letter_with_its_reason_never_a_zero(kind: FilterKind) {
    let s = stack(kind);
    // The upstream fails halfway, before the usage event.
    let r = Client::new(&format!("127.0.0.1:{}", s.envoy.port))
        .with_timeout(Duration::from_secs(10))
        .request(
            "POST",
            "/v1/chat/reset/1",
            &[("x-customer-id".into(), "acme".into())],
            b"{}",
        );
    // The client sees the 200 and a broken body (or an error), never a complete stream.
    if let Ok(r) = &r {
        assert_ne!(r.body, openai_stream(5, 5));
    }
    // The client goes away after the first bytes of a long stream.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", s.envoy.port)).unwrap();
    raw.write_all(b"POST /v1/chat/slow/1 HTTP/1.1\r\nhost: x\r\nx-customer-id: globex\r\ncontent-length: 2\r\n\r\n{}")
        .unwrap();
    let mut first = [0u8; 200];
    let _ = raw.read(&mut first).unwrap();
    drop(raw);
    assert!(
        s.envoy.wait_log(
            "the event stream was cut off before /usage/completion_tokens arrived",
            1,
            Duration::from_secs(10)
        ) >= 1,
        "{}",
        s.envoy.log_tail(40)
    );
    // Both streams' two meters refused with the reason, none delivered: nothing billed as zero.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && s.stat("aforo_events_rejected_total") != Some(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.stat("aforo_events_rejected_total"),
        Some(4),
        "{}",
        s.envoy.log_tail(40)
    );
    // The counter moves at once, the log file every 100 ms: wait for the lines themselves.
    assert_eq!(
        s.envoy.wait_log(
            "quantity_unavailable: the event stream was cut off",
            4,
            Duration::from_secs(10)
        ),
        4,
        "{}",
        s.envoy.log_tail(40)
    );
    // Every event the filter made is one of those four: none was queued for the ingest.
    assert_eq!(s.stat("aforo_events_received_total"), Some(4));
    assert_eq!(s.stat("aforo_events_delivered_total"), Some(0));
    assert!(s.ingest.stored().is_empty(), "{:?}", s.ingest.stored());
}

// Each case, once per build of the filter: `wasm::…` and `native::…`.
aforo_host_tests::for_both_filters!(
    streamed_usage_reaches_the_ingest_and_the_client_gets_every_byte,
    a_stream_cut_off_is_a_dead_letter_with_its_reason_never_a_zero,
);
