//! Per-request results: which events each request made and who it was from, so a report can be
//! read request by request instead of by replaying prefixes of the traffic.
//!
//! The module keeps its events in its own memory until it flushes them, so the harness ties an
//! event to its request by what the event says about it: the event's time is the request's
//! arrival (to the millisecond), and its `method` and `endpoint` properties are the request's.

use super::report::{EventOutcome, RequestResult};
use crate::ingest_sim::{Delivery, Fate};
use crate::traffic::Request;
use aforo_core::config::{Config, StatusRanges};
use std::collections::HashMap;

/// What the filter's own configuration says about requests: which headers name the caller,
/// which upstream statuses are metered.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    customer_header: Option<String>,
    consumer_key_header: Option<String>,
    billable: Option<StatusRanges>,
}

impl Credentials {
    /// The headers the filter identifies callers by, from its configuration bytes and
    /// environment (none when the configuration does not parse: the module refuses it too).
    pub fn of(config: &[u8], env: &[(String, String)]) -> Self {
        // Only what the module sees: the run's configuration and its environment.
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        match Config::parse(config, &lookup) {
            Ok(c) => Credentials {
                customer_header: c.customer_header,
                consumer_key_header: c.consumer_key_header,
                billable: Some(c.billable_status),
            },
            Err(_) => Credentials::default(),
        }
    }

    /// Whether the filter meters a request that got `status` from upstream (the filter's own
    /// replies never are).
    pub fn is_billable(&self, status: u16) -> bool {
        self.billable.as_ref().is_some_and(|b| b.contains(status))
    }

    /// What identifies this request's caller (a customer header or a consumer key), if any.
    pub fn of_request(&self, r: &Request) -> Option<String> {
        let value = |name: &Option<String>| {
            let name = name.as_deref()?;
            r.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        value(&self.customer_header)
            .map(|c| format!("customer:{c}"))
            .or_else(|| value(&self.consumer_key_header).map(|k| format!("key:{k}")))
    }
}

/// What the run remembers of each request beyond its result.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// The worker VM that served it (its events leave from that VM).
    pub worker: usize,
    /// When the module saw it (the gateway's clock, nanoseconds).
    pub at_nanos: i64,
    /// The endpoint its events carry: the path without query or fragment.
    pub endpoint: String,
    /// Who the caller said it was (see `Credentials::of_request`).
    pub credential: Option<String>,
    /// Upstream answered it with a metered status (so it may have made events).
    pub billable: bool,
}

/// Ties every delivery to the request that made it, then labels unlabelled requests with the
/// customer they were billed to, or that their credential was billed to elsewhere in the run.
///
/// A delivery matches the metered requests that arrived in its millisecond with its method,
/// endpoint and status, served by the worker that delivered it; a retry joins the request
/// already holding its id; otherwise the matching request with the fewest events takes it
/// (one labelled with another customer last, the earliest on a tie), so requests that cannot
/// be told apart get one event each.
pub fn attach(results: &mut [RequestResult], arrivals: &[Arrival], deliveries: &[Delivery]) {
    let mut by_ms: HashMap<i64, Vec<usize>> = HashMap::new();
    for (i, a) in arrivals.iter().enumerate() {
        if a.billable {
            by_ms
                .entry(a.at_nanos.div_euclid(1_000_000))
                .or_default()
                .push(i);
        }
    }
    let mut billed_to: HashMap<usize, String> = HashMap::new();
    for d in deliveries {
        let ms = d.timestamp.unix_nanos().div_euclid(1_000_000);
        let Some(candidates) = by_ms.get(&ms) else {
            continue;
        };
        let fits = |i: &usize| {
            let (r, a) = (&results[*i], &arrivals[*i]);
            d.method.as_deref().is_none_or(|m| m == r.method)
                && d.endpoint.as_deref().is_none_or(|e| e == a.endpoint)
                && d.status.is_none_or(|s| s == r.status)
                && d.origin.is_none_or(|w| w == a.worker)
        };
        // A retry joins the request that already holds its id.
        let holder = candidates
            .iter()
            .copied()
            .filter(fits)
            .find(|i| results[*i].events.iter().any(|e| e.id == d.id));
        let Some(i) = holder.or_else(|| {
            candidates
                .iter()
                .copied()
                .filter(fits)
                // A request labelled with another customer is the last choice.
                .min_by_key(|i| {
                    let other = results[*i]
                        .customer
                        .as_deref()
                        .is_some_and(|c| c != d.customer_id);
                    (other, results[*i].events.len())
                })
        }) else {
            continue;
        };
        billed_to.entry(i).or_insert_with(|| d.customer_id.clone());
        settle(&mut results[i].events, d);
    }
    for (i, customer) in &billed_to {
        if results[*i].customer.is_none() {
            results[*i].customer = Some(customer.clone());
        }
    }
    let mut known: HashMap<&str, String> = HashMap::new();
    for (r, a) in results.iter().zip(arrivals) {
        if let (Some(c), Some(cred)) = (&r.customer, &a.credential) {
            known.entry(cred.as_str()).or_insert_with(|| c.clone());
        }
    }
    for (r, a) in results.iter_mut().zip(arrivals) {
        if r.customer.is_none() {
            r.customer = a.credential.as_deref().and_then(|c| known.get(c).cloned());
        }
    }
}

/// Adds a delivery to a request's events: a later delivery of the same id (a retry) keeps
/// `stored` if any delivery was stored.
fn settle(events: &mut Vec<EventOutcome>, d: &Delivery) {
    let (outcome, code) = match &d.fate {
        Fate::Stored => ("stored", None),
        Fate::Duplicate => ("duplicate", None),
        Fate::Rejected(c) => ("rejected", Some(c.clone())),
    };
    match events.iter_mut().find(|e| e.id == d.id) {
        Some(e) if e.outcome == "stored" => {}
        Some(e) => {
            e.outcome = outcome;
            e.code = code;
        }
        None => events.push(EventOutcome {
            id: d.id.clone(),
            outcome,
            code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aforo_core::Timestamp;

    fn result(i: u64) -> RequestResult {
        RequestResult {
            index: i,
            time: String::new(),
            method: "GET".into(),
            path: "/v1/search?q=1".into(),
            customer: None,
            status: 200,
            decision: "allowed".into(),
            events: Vec::new(),
        }
    }

    fn arrival(ms: i64, credential: &str, billable: bool) -> Arrival {
        Arrival {
            worker: 0,
            at_nanos: ms * 1_000_000 + 123,
            endpoint: "/v1/search".into(),
            credential: Some(credential.into()),
            billable,
        }
    }

    fn delivery(id: &str, ms: i64, customer: &str, fate: Fate) -> Delivery {
        Delivery {
            id: id.into(),
            customer_id: customer.into(),
            timestamp: Timestamp::from_unix_nanos(ms * 1_000_000),
            method: Some("GET".into()),
            endpoint: Some("/v1/search".into()),
            status: Some(200),
            origin: None,
            fate,
        }
    }

    #[test]
    fn events_join_their_request_and_a_denied_request_is_labelled_by_its_key() {
        let mut results = vec![result(0), result(1), result(2)];
        results[2].status = 429;
        results[2].decision = "quota_exhausted".into();
        let arrivals = vec![
            arrival(10, "key:a", true),
            arrival(11, "key:b", true),
            arrival(12, "key:a", false),
        ];
        let deliveries = vec![
            delivery(
                "e2",
                11,
                "cust_b",
                Fate::Rejected("timestamp_in_future".into()),
            ),
            delivery("e1", 10, "cust_a", Fate::Stored),
            // A retry of e1 answered as a duplicate does not undo its being stored.
            delivery("e1", 10, "cust_a", Fate::Duplicate),
        ];
        attach(&mut results, &arrivals, &deliveries);
        assert_eq!(results[0].customer.as_deref(), Some("cust_a"));
        assert_eq!(
            results[0].events,
            vec![EventOutcome {
                id: "e1".into(),
                outcome: "stored",
                code: None
            }]
        );
        assert_eq!(results[1].events[0].outcome, "rejected");
        assert_eq!(
            results[1].events[0].code.as_deref(),
            Some("timestamp_in_future")
        );
        assert_eq!(results[1].customer.as_deref(), Some("cust_b"));
        // The 429 made no event; its key was billed to cust_a elsewhere in the run.
        assert!(results[2].events.is_empty());
        assert_eq!(results[2].customer.as_deref(), Some("cust_a"));
    }

    #[test]
    fn requests_that_cannot_be_told_apart_get_one_event_each_and_other_endpoints_never_match() {
        let mut results = vec![result(0), result(1)];
        let arrivals = vec![arrival(10, "key:a", true), arrival(10, "key:a", true)];
        let mut other = delivery("x", 10, "cust_a", Fate::Stored);
        other.endpoint = Some("/v1/other".into());
        let deliveries = vec![
            delivery("e1", 10, "cust_a", Fate::Stored),
            delivery("e2", 10, "cust_a", Fate::Stored),
            other,
        ];
        attach(&mut results, &arrivals, &deliveries);
        assert_eq!(results[0].events.len(), 1);
        assert_eq!(results[0].events[0].id, "e1");
        assert_eq!(results[1].events.len(), 1);
        assert_eq!(results[1].events[0].id, "e2");
    }
}
