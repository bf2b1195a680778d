//! `aforo-replay send`: the same traffic against a live gateway, over HTTP/1.1.

use crate::http1::{Client, Response};
use crate::replay::report::{decisions_table, table, Decisions};
use crate::traffic::{Entry, Traffic};
use aforo_core::config::Endpoint;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// What the gateway answered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SendReport {
    /// Requests sent.
    pub total: u64,
    /// By status.
    pub by_status: BTreeMap<u16, u64>,
    /// By decision (`allowed`, or the `error.code` of a gateway denial).
    pub by_decision: Decisions,
    /// By the traffic's customer label.
    pub by_customer: BTreeMap<String, Decisions>,
    /// Requests that failed at the transport level.
    pub transport_errors: u64,
    /// Status per request, in traffic order (0 = transport error).
    #[serde(skip)]
    pub statuses: Vec<u16>,
}

/// The gateway's decision from an answer: its `error.code` when it is a gateway denial.
pub fn decision_of_response(r: &Response) -> String {
    if matches!(r.status, 401 | 403 | 429 | 503) {
        if let Some(code) = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        {
            return code;
        }
    }
    "allowed".into()
}

impl SendReport {
    /// For a person.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Sent {} requests ({} transport errors)\n",
            self.total, self.transport_errors
        );
        let rows: Vec<Vec<String>> = self
            .by_decision
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect();
        out.push_str(&table(&["decision", "requests"], &rows));
        if !self.by_customer.is_empty() {
            let _ = writeln!(out, "\nDecisions by customer");
            out.push_str(&decisions_table(&self.by_customer));
        }
        out
    }
}

/// Sends every entry to `target` (`http://host:port`), with `concurrency` connections.
pub fn send(target: &str, traffic: &Traffic, concurrency: usize) -> Result<SendReport, String> {
    let ep = Endpoint::parse(target).map_err(|e| format!("--target {target:?}: {e}"))?;
    if ep.tls {
        return Err("--target: https is not supported by this sender; point it at the gateway's plain HTTP listener".into());
    }
    let addr = ep.host_port();
    let results: Mutex<Vec<Option<Response>>> = Mutex::new(vec![None; traffic.len()]);
    let workers = concurrency.clamp(1, traffic.len().max(1));
    std::thread::scope(|s| {
        for w in 0..workers {
            let results = &results;
            let addr = addr.clone();
            let base = ep.path.clone();
            s.spawn(move || {
                let mut client = Client::new(&addr);
                for (i, e) in traffic.iter().enumerate().skip(w).step_by(workers) {
                    let e: &Entry = e.as_ref();
                    let mut headers = vec![("host".to_string(), e.request.authority.clone())];
                    headers.extend(
                        e.request
                            .headers
                            .iter()
                            .filter(|(k, _)| k != "host")
                            .cloned(),
                    );
                    let path = format!("{base}{}", e.request.path);
                    let r = client
                        .request(&e.request.method, &path, &headers, &e.request.body)
                        .ok();
                    if let Ok(mut all) = results.lock() {
                        all[i] = r;
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| "a sender thread failed".to_string())?;
    let mut report = SendReport::default();
    for (e, r) in traffic.iter().zip(results) {
        let e: &Entry = e.as_ref();
        report.total += 1;
        match r {
            None => {
                report.transport_errors += 1;
                report.statuses.push(0);
            }
            Some(r) => {
                let d = decision_of_response(&r);
                *report.by_status.entry(r.status).or_default() += 1;
                if let Some(c) = &e.customer {
                    *report
                        .by_customer
                        .entry(c.clone())
                        .or_default()
                        .entry(d.clone())
                        .or_default() += 1;
                }
                *report.by_decision.entry(d).or_default() += 1;
                report.statuses.push(r.status);
            }
        }
    }
    Ok(report)
}
