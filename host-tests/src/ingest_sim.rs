//! A simulated ingest built from the same rules as the real one (`aforo_core::ingest`): auth by
//! key prefix, body limits, per-event validation, dedup, per-key rate limits, and scripted faults.
//! The replay harness drives it in virtual time; the end-to-end tests serve it over HTTP.

use crate::faults::{active, Fault, FaultKind};
use aforo_core::dedup::DedupWindow;
use aforo_core::entitlement::error_body;
use aforo_core::environment::environment_of_key;
use aforo_core::event::{Quantity, UsageEvent};
use aforo_core::ingest::{accept_batch, parse_batch, RejectedEvent};
use aforo_core::ratelimit::{RateLimit, WindowCounter};
use aforo_core::rating::{Invoice, Plan, Rater};
use aforo_core::time::NANOS_PER_DAY;
use aforo_core::{Environment, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the ingest says to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer, possibly late.
    Respond {
        /// Status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
        /// Milliseconds until the answer arrives.
        delay_ms: u64,
    },
    /// No answer at all (the caller's timeout fires).
    NoAnswer,
}

/// Counters of what the ingest saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    /// Requests received.
    pub requests: u64,
    /// Events newly stored.
    pub accepted: u64,
    /// Events already stored (not counted again).
    pub duplicates: u64,
    /// Refused events by code.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted events flagged late.
    pub late: u64,
    /// Answers by status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests answered by a scripted fault.
    pub faults_injected: u64,
}

/// One stored event, as the differential tests compare them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StoredEvent {
    /// Event id.
    pub id: String,
    /// Environment.
    pub environment: String,
    /// Customer.
    pub customer_id: String,
    /// Metric.
    pub metric: String,
    /// Quantity (canonical decimal text).
    pub quantity: String,
    /// Product.
    pub product_id: String,
    /// Event time (RFC 3339).
    pub timestamp: String,
    /// Properties (JSON text).
    pub properties: String,
}

/// What the ingest made of one event it received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Newly stored.
    Stored,
    /// Already stored under this id: not counted again.
    Duplicate,
    /// Refused, with the code the ingest answered.
    Rejected(String),
}

/// One event as it reached the ingest, with its fate: what ties a stored or refused event back
/// to the request that made it (recorded with `track_deliveries`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Event id.
    pub id: String,
    /// Customer.
    pub customer_id: String,
    /// Event time.
    pub timestamp: Timestamp,
    /// `properties.method`, when the event has it.
    pub method: Option<String>,
    /// `properties.endpoint` (the path without its query), when the event has it.
    pub endpoint: Option<String>,
    /// `properties.status` (the upstream's answer), when the event has it.
    pub status: Option<u16>,
    /// Which sender (the replay's worker VM) delivered it, when the caller said.
    pub origin: Option<usize>,
    /// What the ingest made of it.
    pub fate: Fate,
}

/// The simulated ingest.
#[derive(Debug)]
pub struct SimIngest {
    started_at: Timestamp,
    faults: Vec<Fault>,
    seen: [DedupWindow; 2],
    counters: HashMap<String, WindowCounter>,
    limits: [RateLimit; 2],
    stats: IngestStats,
    record: bool,
    stored: Vec<StoredEvent>,
    track: bool,
    deliveries: Vec<Delivery>,
    origin: Option<usize>,
    rater: Option<Rater>,
    snapshot: Option<Vec<u8>>,
    partial_flip: bool,
}

impl SimIngest {
    /// An ingest whose fault times count from `started_at`.
    pub fn new(started_at: Timestamp, faults: Vec<Fault>) -> Self {
        SimIngest {
            started_at,
            faults,
            seen: [
                DedupWindow::new(usize::MAX, 90 * NANOS_PER_DAY),
                DedupWindow::new(usize::MAX, 90 * NANOS_PER_DAY),
            ],
            counters: HashMap::new(),
            limits: [
                RateLimit::ingest_default(Environment::Sandbox),
                RateLimit::ingest_default(Environment::Production),
            ],
            stats: IngestStats::default(),
            record: false,
            stored: Vec::new(),
            track: false,
            deliveries: Vec::new(),
            origin: None,
            rater: None,
            snapshot: None,
            partial_flip: false,
        }
    }

    /// Keeps every stored event's id and quantity (for comparisons).
    pub fn record_events(mut self) -> Self {
        self.record = true;
        self
    }

    /// Keeps every event received with its fate (stored, duplicate, refused and why).
    pub fn track_deliveries(mut self) -> Self {
        self.track = true;
        self
    }

    /// Names the sender of the next requests (recorded on their deliveries).
    pub fn set_origin(&mut self, origin: usize) {
        self.origin = Some(origin);
    }

    /// Every event received with its fate, in arrival order (when tracking).
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// Rates stored events with `plan`.
    pub fn with_plan(mut self, plan: Plan) -> Self {
        self.rater = Some(Rater::new(plan));
        self
    }

    /// Serves this snapshot at `GET …/v1/entitlements`.
    pub fn with_snapshot(mut self, snapshot: Vec<u8>) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// Overrides the per-key rate limit of an environment.
    pub fn with_rate_limit(mut self, env: Environment, limit: RateLimit) -> Self {
        self.limits[env.index()] = limit;
        self
    }

    /// Replaces the fault script (for live servers switching modes).
    pub fn set_faults(&mut self, faults: Vec<Fault>, started_at: Timestamp) {
        self.faults = faults;
        self.started_at = started_at;
    }

    /// What the ingest saw.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Stored events (when recording), sorted.
    pub fn stored(&self) -> Vec<StoredEvent> {
        let mut s = self.stored.clone();
        s.sort();
        s
    }

    /// Invoices of the stored events (with a plan).
    pub fn invoices(&self) -> Option<Result<Vec<Invoice>, aforo_core::rating::RatingError>> {
        self.rater.as_ref().map(Rater::invoices)
    }

    fn reply(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay_ms: u64,
    ) -> Answer {
        *self.stats.by_status.entry(status).or_default() += 1;
        Answer::Respond {
            status,
            headers,
            body,
            delay_ms,
        }
    }

    fn error(&mut self, status: u16, code: &str, message: &str) -> Answer {
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        self.reply(status, headers, error_body(code, message), 0)
    }

    /// Answers one request at `now`.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
        now: Timestamp,
    ) -> Answer {
        let path_only = path.split('?').next().unwrap_or("");
        if method == "GET" && path_only.ends_with("/v1/entitlements") {
            return match self.snapshot.clone() {
                Some(s) => self.reply(
                    200,
                    vec![("content-type".into(), "application/json".into())],
                    s,
                    0,
                ),
                None => self.error(404, "not_found", "no snapshot is served here"),
            };
        }
        if method != "POST" || !path_only.ends_with("/v1/events") {
            return self.error(
                404,
                "not_found",
                "only POST /v1/events and GET /v1/entitlements are served",
            );
        }
        self.stats.requests += 1;
        let elapsed = now.millis_since(self.started_at).max(0) as u64;
        let mut delay_ms = 0;
        let mut partial = false;
        match active(&self.faults, elapsed).cloned() {
            None => {}
            Some(kind) => {
                self.stats.faults_injected += 1;
                match kind {
                    FaultKind::Timeout => return Answer::NoAnswer,
                    FaultKind::Status(s) => {
                        return self.error(s, "fault_injected", "scripted ingest fault")
                    }
                    FaultKind::TooMany(secs) => {
                        let headers = vec![("retry-after".to_string(), secs.to_string())];
                        return self.reply(
                            429,
                            headers,
                            error_body("rate_limited", "scripted ingest fault"),
                            0,
                        );
                    }
                    FaultKind::Delay(ms) => delay_ms = ms,
                    FaultKind::Partial => partial = true,
                }
            }
        }
        let auth = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().trim_start_matches("Bearer ").trim().to_string());
        let env = match auth.as_deref().map(environment_of_key) {
            Some(Ok(env)) => env,
            _ => {
                return self.error(
                    401,
                    "invalid_key",
                    "a Bearer sk_test_… or sk_live_… key is required",
                )
            }
        };
        let parsed = match parse_batch(body) {
            Ok(p) => p,
            Err(e) => return self.error(e.status(), e.code(), &e.to_string()),
        };
        let limit = self.limits[env.index()];
        let key = auth.unwrap_or_default();
        if let Err(x) =
            self.counters
                .entry(key)
                .or_default()
                .try_take(&limit, now, parsed.len() as u64)
        {
            let headers = vec![("retry-after".to_string(), x.retry_after_secs.to_string())];
            return self.reply(
                429,
                headers,
                error_body("rate_limited", "over the environment's event rate limit"),
                0,
            );
        }
        let mut parsed = parsed;
        let mut injected: Vec<RejectedEvent> = Vec::new();
        let mut injected_events: Vec<UsageEvent> = Vec::new();
        if partial {
            let mut kept = Vec::with_capacity(parsed.len());
            for item in parsed {
                self.partial_flip = !self.partial_flip;
                match (&item, self.partial_flip) {
                    (Ok(e), true) => {
                        injected.push(RejectedEvent {
                            id: e.id.clone(),
                            code: "fault_injected".into(),
                            field: None,
                            message: Some("scripted partial rejection".into()),
                        });
                        if self.track {
                            injected_events.push(e.clone());
                        }
                    }
                    _ => kept.push(item),
                }
            }
            parsed = kept;
        }
        let arrived: Vec<Delivery> = if self.track {
            parsed
                .iter()
                .flatten()
                .chain(injected_events.iter())
                .map(|e| Delivery {
                    origin: self.origin,
                    ..arrival(e)
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut out = accept_batch(parsed, env, now, &mut self.seen);
        out.answer.rejected.extend(injected);
        if self.track {
            self.settle(arrived, &out);
        }
        self.stats.accepted += out.answer.accepted;
        self.stats.duplicates += out.answer.duplicates;
        self.stats.late += out.answer.flagged.len() as u64;
        for r in &out.answer.rejected {
            *self.stats.rejected.entry(r.code.clone()).or_default() += 1;
        }
        for (e, _) in &out.accepted {
            self.store(e);
        }
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        self.reply(202, headers, out.answer.to_json(), delay_ms)
    }

    /// Gives each arrived event its fate from the batch's outcome.
    fn settle(&mut self, arrived: Vec<Delivery>, out: &aforo_core::ingest::BatchOutcome) {
        let mut stored: HashSet<&str> = out.accepted.iter().map(|(e, _)| e.id.as_str()).collect();
        let refused: HashMap<&str, &str> = out
            .answer
            .rejected
            .iter()
            .map(|r| (r.id.as_str(), r.code.as_str()))
            .collect();
        for mut d in arrived {
            // An id stored by this batch is stored once: a second event with it is a duplicate.
            d.fate = if stored.remove(d.id.as_str()) {
                Fate::Stored
            } else if let Some(code) = refused.get(d.id.as_str()) {
                Fate::Rejected((*code).to_string())
            } else {
                Fate::Duplicate
            };
            self.deliveries.push(d);
        }
    }

    fn store(&mut self, e: &UsageEvent) {
        if let Some(r) = &mut self.rater {
            r.add(e);
        }
        if self.record {
            self.stored.push(StoredEvent {
                id: e.id.clone(),
                environment: e.environment.to_string(),
                customer_id: e.customer_id.clone(),
                metric: e.metric.clone(),
                quantity: e.quantity.to_string(),
                product_id: e.product_id.clone(),
                timestamp: e.timestamp.to_rfc3339(),
                properties: serde_json::Value::Object(e.properties.clone()).to_string(),
            });
        }
    }

    /// Total quantity stored for a customer and metric (recording only).
    pub fn total(&self, customer: &str, metric: &str) -> Quantity {
        let sum = self
            .stored
            .iter()
            .filter(|e| e.customer_id == customer && e.metric == metric)
            .filter_map(|e| Quantity::parse(&e.quantity).ok())
            .map(Quantity::decimal)
            .sum();
        Quantity::from_decimal(sum).unwrap_or(Quantity::ZERO)
    }
}

/// An event as it arrived, before its fate is known.
fn arrival(e: &UsageEvent) -> Delivery {
    let text = |k: &str| {
        e.properties
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    Delivery {
        id: e.id.clone(),
        customer_id: e.customer_id.clone(),
        timestamp: e.timestamp,
        method: text("method"),
        endpoint: text("endpoint"),
        status: e
            .properties
            .get("status")
            .and_then(|v| v.as_u64())
            .and_then(|s| u16::try_from(s).ok()),
        origin: None,
        fate: Fate::Duplicate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::parse_faults;

    fn body(ids: &[&str]) -> Vec<u8> {
        let evs: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","customer_id":"c","metric":"m","quantity":"1","timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox"}}"#))
            .collect();
        format!("{{\"events\":[{}]}}", evs.join(",")).into_bytes()
    }

    fn auth() -> Vec<(String, String)> {
        vec![("authorization".into(), "Bearer sk_test_x".into())]
    }

    fn status(a: &Answer) -> u16 {
        match a {
            Answer::Respond { status, .. } => *status,
            Answer::NoAnswer => 0,
        }
    }

    #[test]
    fn faults_rate_limits_and_dedup() {
        let t0 = aforo_core::time::parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        let mut ing = SimIngest::new(
            t0,
            parse_faults("0s-10s:503,10s-20s:timeout,20s-30s:429/4").unwrap(),
        )
        .record_events()
        .with_rate_limit(
            Environment::Sandbox,
            RateLimit {
                limit: 3,
                per: aforo_core::ratelimit::Per::Hour,
            },
        );
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &auth(), &body(&["a"]), t0)),
            503
        );
        assert_eq!(
            ing.handle(
                "POST",
                "/v1/events",
                &auth(),
                &body(&["a"]),
                t0.plus_millis(10_000)
            ),
            Answer::NoAnswer
        );
        match ing.handle(
            "POST",
            "/v1/events",
            &auth(),
            &body(&["a"]),
            t0.plus_millis(20_000),
        ) {
            Answer::Respond {
                status: 429,
                headers,
                ..
            } => assert_eq!(headers[0], ("retry-after".into(), "4".into())),
            other => panic!("{other:?}"),
        }
        let t = t0.plus_millis(30_000);
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &[], &body(&["a"]), t)),
            401
        );
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &auth(), b"{", t)),
            400
        );
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &auth(), &body(&["a", "b"]), t)),
            202
        );
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &auth(), &body(&["a"]), t)),
            202
        );
        assert_eq!(
            status(&ing.handle("POST", "/v1/events", &auth(), &body(&["c"]), t)),
            429,
            "3 events per hour"
        );
        assert_eq!((ing.stats().accepted, ing.stats().duplicates), (2, 1));
        assert_eq!(ing.stored().len(), 2);
    }
}
