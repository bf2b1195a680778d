//! Real HTTP servers on loopback for end-to-end runs: a demo upstream API and an ingest that
//! applies the real ingest rules and records what it stores (with switchable faults).

use crate::faults::parse_faults;
use crate::http1::{serve, serve_on, Handler, Request, Response, Server};
use crate::ingest_sim::{Answer, IngestStats, SimIngest, StoredEvent};
use aforo_core::Timestamp;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Wall-clock now.
pub fn wall_now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(d.as_nanos() as i64)
}

/// The demo upstream: answers every request with JSON (including LLM-style token usage) and
/// counts what reached it.
pub struct Upstream {
    server: Server,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    /// Starts it on a free port.
    pub fn start() -> std::io::Result<Upstream> {
        Upstream::start_on(0)
    }

    /// Starts it on `port` of 127.0.0.1 (0: a free one).
    pub fn start_on(port: u16) -> std::io::Result<Upstream> {
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let handler: Handler = Arc::new(move |req: Request| {
            h.fetch_add(1, Ordering::SeqCst);
            let tokens = 10 + req.body.len() as u64;
            let body = format!(
                r#"{{"ok":true,"path":{:?},"usage":{{"total_tokens":{tokens}}}}}"#,
                req.path
            );
            let mut r = Response::json(200, body.into_bytes());
            r.headers.push(("x-usage-units".into(), "3".into()));
            r
        });
        Ok(Upstream {
            server: serve_on(port, handler)?,
            hits,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Requests that reached it.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An ingest over HTTP built on [`SimIngest`].
pub struct IngestServer {
    server: Server,
    ingest: Arc<Mutex<SimIngest>>,
}

impl IngestServer {
    /// Starts an ingest on a free port, recording what it stores; serves `snapshot` at
    /// `GET /v1/entitlements` when given.
    pub fn start(snapshot: Option<Vec<u8>>) -> std::io::Result<IngestServer> {
        let mut sim = SimIngest::new(wall_now(), Vec::new()).record_events();
        if let Some(s) = snapshot {
            sim = sim.with_snapshot(s);
        }
        let ingest = Arc::new(Mutex::new(sim));
        let i = ingest.clone();
        let handler: Handler = Arc::new(move |req: Request| {
            let answer = match i.lock() {
                Ok(mut sim) => {
                    sim.handle(&req.method, &req.path, &req.headers, &req.body, wall_now())
                }
                Err(_) => return Response::json(500, b"{}".to_vec()),
            };
            match answer {
                Answer::Respond {
                    status,
                    headers,
                    body,
                    delay_ms,
                } => {
                    if delay_ms > 0 {
                        std::thread::sleep(Duration::from_millis(delay_ms));
                    }
                    Response {
                        status,
                        headers,
                        body,
                    }
                }
                Answer::NoAnswer => {
                    // Longer than any caller's timeout in the tests.
                    std::thread::sleep(Duration::from_secs(20));
                    Response::json(504, b"{}".to_vec())
                }
            }
        });
        Ok(IngestServer {
            server: serve(handler)?,
            ingest,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Applies a fault spec counted from now (`"0s-3s:503"`), or clears faults with `""`.
    pub fn set_faults(&self, spec: &str) -> Result<(), String> {
        let faults = parse_faults(spec).map_err(|e| e.to_string())?;
        if let Ok(mut i) = self.ingest.lock() {
            i.set_faults(faults, wall_now());
        }
        Ok(())
    }

    /// Stored events, sorted.
    pub fn stored(&self) -> Vec<StoredEvent> {
        self.ingest.lock().map(|i| i.stored()).unwrap_or_default()
    }

    /// What it saw.
    pub fn stats(&self) -> IngestStats {
        self.ingest
            .lock()
            .map(|i| i.stats().clone())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` until `n` events are stored; returns how many are.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let have = self.stored().len();
            if have >= n || std::time::Instant::now() > deadline {
                return have;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One request a [`WebhookReceiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    /// `Aforo-Signature`.
    pub signature: Option<String>,
    /// `Aforo-Webhook-Id`.
    pub webhook_id: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver on loopback: records every request and answers with a status the test
/// switches (a 500 makes the sender retry).
pub struct WebhookReceiver {
    server: Server,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU64>,
    held: Arc<(Mutex<bool>, Condvar)>,
}

/// Longest an answer is held: a test that forgets to release never hangs a thread for good.
const LONGEST_HOLD: Duration = Duration::from_secs(30);

impl WebhookReceiver {
    /// Starts it on a free port, answering 200.
    pub fn start() -> std::io::Result<WebhookReceiver> {
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU64::new(200));
        let held = Arc::new((Mutex::new(false), Condvar::new()));
        let (g, s, h) = (got.clone(), status.clone(), held.clone());
        let handler: Handler = Arc::new(move |req: Request| {
            let answer = s.load(Ordering::SeqCst) as u16;
            if let Ok(mut list) = g.lock() {
                list.push(Received {
                    signature: req.header("aforo-signature").map(str::to_string),
                    webhook_id: req.header("aforo-webhook-id").map(str::to_string),
                    body: req.body.clone(),
                    status: answer,
                });
            }
            let (lock, released) = &*h;
            if let Ok(guard) = lock.lock() {
                let _ = released.wait_timeout_while(guard, LONGEST_HOLD, |held| *held);
            }
            Response::json(answer, b"{}".to_vec())
        });
        Ok(WebhookReceiver {
            server: serve(handler)?,
            got,
            status,
            held,
        })
    }

    /// From now on, each request is recorded at once but answered only after `release_answers`
    /// (or 30 s): a sender stopped in between never learns it was delivered.
    pub fn hold_answers(&self) {
        if let Ok(mut held) = self.held.0.lock() {
            *held = true;
        }
    }

    /// Answers the held requests and every following one at once.
    pub fn release_answers(&self) {
        if let Ok(mut held) = self.held.0.lock() {
            *held = false;
        }
        self.held.1.notify_all();
    }

    /// Where to point an endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.server.port())
    }

    /// The status every following request is answered with.
    pub fn set_status(&self, status: u16) {
        self.status.store(u64::from(status), Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Waits until `done` holds for what was received, or `timeout`; returns what was.
    pub fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
