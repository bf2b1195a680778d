//! The replay report: requests by decision and status, the module's conservation counters, what
//! the ingest stored, and invoices; as JSON or as tables for a person.

use crate::abi::{LogLine, Outcome};
use crate::ingest_sim::{IngestStats, StoredEvent};
use aforo_core::rating::Invoice;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Decisions counted by code (`allowed`, `quota_exhausted`, …).
pub type Decisions = BTreeMap<String, u64>;

/// The decision a client saw: `allowed`, or the `error.code` of a local reply.
pub fn decision_of(o: &Outcome) -> Cow<'static, str> {
    if o.trapped {
        return "module_trap".into();
    }
    match &o.local_reply {
        None if o.status == 504 => "paused".into(),
        None => "allowed".into(),
        Some(r) => serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("local_{}", r.status))
            .into(),
    }
}

/// Counts one more `key` in `counts`, copying the key only the first time it is seen.
pub fn count_one(counts: &mut Decisions, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}

/// Requests seen.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RequestStats {
    /// All requests.
    pub total: u64,
    /// By status the client got.
    pub by_status: BTreeMap<u16, u64>,
    /// By decision.
    pub by_decision: Decisions,
}

/// The module's conservation counters (summed over workers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct EventStats {
    /// Events built.
    pub received: i64,
    /// Acknowledged by the ingest.
    pub delivered: i64,
    /// Of those, duplicates.
    pub duplicates: i64,
    /// Refused.
    pub rejected: i64,
    /// Dead-lettered now.
    pub dead_lettered: i64,
    /// Of those, only in the log.
    pub dead_letters_spilled: i64,
    /// Still buffered or in flight.
    pub buffered: i64,
    /// `received = delivered + rejected + dead_lettered + buffered`.
    pub balanced: bool,
}

/// What became of one event a request made, as the ingest answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The event's id.
    pub id: String,
    /// `stored`, `duplicate` (already stored: counted once) or `rejected`.
    pub outcome: &'static str,
    /// Why it was rejected (`timestamp_in_future`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// One request of the traffic and what it got: the answer a client saw and the events billed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestResult {
    /// Position in the traffic (0-based, after `repeat` expansion).
    pub index: u64,
    /// When it arrived (virtual time, RFC 3339).
    pub time: String,
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// The customer: the traffic's label, else the one its events were billed to, else the one
    /// another request with the same credential was billed to.
    pub customer: Option<String>,
    /// Status the client got.
    pub status: u16,
    /// `allowed`, or the error code of the filter's own reply (`quota_exhausted`, …).
    pub decision: String,
    /// Its events that reached the ingest, and what became of each (events still buffered or
    /// dead-lettered when the run ended are in the `events` totals only).
    pub events: Vec<EventOutcome>,
}

/// The whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// Module file.
    pub module: String,
    /// Host profile.
    pub profile: String,
    /// Worker VMs.
    pub workers: usize,
    /// Requests.
    pub requests: RequestStats,
    /// Decisions by customer: the traffic's label, else the customer the request was billed to
    /// or its credential was billed to elsewhere in the run.
    pub by_customer: BTreeMap<String, Decisions>,
    /// Module counters.
    pub events: EventStats,
    /// What the simulated ingest saw.
    pub ingest: IngestStats,
    /// First request time.
    pub started_at: String,
    /// Virtual time when the run ended (after draining).
    pub ended_at: String,
    /// Module traps (each one is a 503 under FAIL_CLOSED).
    pub traps: u64,
    /// Linear memory of the largest worker VM once configured, before any request (bytes).
    pub memory_bytes_configured: u64,
    /// Linear memory of the largest worker VM at the end: the peak, as Wasm memory never
    /// shrinks (bytes).
    pub memory_bytes_peak: u64,
    /// Log lines by level (trace, debug, info, warn, error, critical).
    pub log_counts: [u64; 6],
    /// Invoices, with `--plan`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoices: Option<Vec<Invoice>>,
    /// Every request with its status, decision and events, in traffic order.
    pub results: Vec<RequestResult>,
    /// Status of each request, in traffic order (not printed; for tests).
    #[serde(skip)]
    pub statuses: Vec<u16>,
    /// Decision of each request (`allowed` or the error code), in traffic order (for tests).
    #[serde(skip)]
    pub decisions: Vec<Cow<'static, str>>,
    /// Events the ingest stored, when recording (`RunOptions::record_events`).
    #[serde(rename = "stored_events")]
    pub stored: Vec<StoredEvent>,
    /// Module log lines kept (not printed; for tests).
    #[serde(skip)]
    pub logs: Vec<LogLine>,
}

mod erased {
    /// A line that writes itself as compact JSON (lets one closure take lines of any item).
    pub trait Line {
        fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }

    impl<T: serde::Serialize> Line for super::Line<'_, T> {
        fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(out, self).map_err(std::io::Error::other)
        }
    }
}

fn row(out: &mut String, cells: &[String], widths: &[usize]) {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (c, w))| {
            if i == 0 {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            }
        })
        .collect();
    let _ = writeln!(out, "  {}", line.join("  "));
}

/// Renders a table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    row(
        &mut out,
        &header.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        &widths,
    );
    row(
        &mut out,
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        &widths,
    );
    for r in rows {
        row(&mut out, r, &widths);
    }
    out
}

/// Decisions by customer as a table (customer × decision).
pub fn decisions_table(by_customer: &BTreeMap<String, Decisions>) -> String {
    let mut codes: Vec<&String> = by_customer.values().flat_map(|d| d.keys()).collect();
    codes.sort();
    codes.dedup();
    let mut header = vec!["customer"];
    header.extend(codes.iter().map(|c| c.as_str()));
    let rows: Vec<Vec<String>> = by_customer
        .iter()
        .map(|(cust, d)| {
            let mut r = vec![cust.clone()];
            r.extend(
                codes
                    .iter()
                    .map(|c| d.get(*c).copied().unwrap_or(0).to_string()),
            );
            r
        })
        .collect();
    table(&header, &rows)
}

/// Invoices as tables.
pub fn invoices_table(invoices: &[Invoice]) -> String {
    let mut out = String::new();
    for inv in invoices {
        let note = if inv.environment == aforo_core::Environment::Sandbox {
            " (sandbox: preview, never billed)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "Invoice {} / {} in {}{note}",
            inv.environment, inv.customer_id, inv.currency
        );
        let rows: Vec<Vec<String>> = inv
            .lines
            .iter()
            .map(|l| {
                vec![
                    l.charge.clone(),
                    l.metric.clone().unwrap_or_default(),
                    l.model.to_string(),
                    l.quantity.to_string(),
                    l.amount.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["charge", "metric", "model", "quantity", "amount"],
            &rows,
        ));
        let _ = writeln!(
            out,
            "  subtotal {}   minimum true-up {}   discounts {}   tax {}   total {}   credits {}   amount due {}",
            inv.subtotal,
            inv.minimum_true_up,
            inv.discounts,
            inv.tax,
            inv.total,
            inv.credits_applied,
            inv.amount_due
        );
        for f in &inv.flags {
            let _ = writeln!(out, "  {}: {}", f.code, f.message);
        }
        out.push('\n');
    }
    out
}

/// One line of `--format jsonl`: its kind, then the item's own fields.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
}

impl RunReport {
    /// The totals alone: every field but the per-request and per-event lists (what scenario
    /// checks compare and the JSON-lines summary holds, without copying 100,000 results).
    pub fn totals(&self) -> RunReport {
        RunReport {
            module: self.module.clone(),
            profile: self.profile.clone(),
            workers: self.workers,
            requests: self.requests.clone(),
            by_customer: self.by_customer.clone(),
            events: self.events.clone(),
            ingest: self.ingest.clone(),
            started_at: self.started_at.clone(),
            ended_at: self.ended_at.clone(),
            traps: self.traps,
            memory_bytes_configured: self.memory_bytes_configured,
            memory_bytes_peak: self.memory_bytes_peak,
            log_counts: self.log_counts,
            invoices: self.invoices.clone(),
            ..RunReport::default()
        }
    }

    /// The report as JSON lines: every request (`"type": "request"`), every stored event
    /// (`"type": "event"`), then the rest of the report (`"type": "summary"`), one object per
    /// line so tools can read it as it comes.
    pub fn write_jsonl(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let line = |out: &mut dyn std::io::Write, v: &dyn erased::Line| -> std::io::Result<()> {
            v.write_to(out)?;
            out.write_all(b"\n")
        };
        for r in &self.results {
            line(
                out,
                &Line {
                    kind: "request",
                    item: r,
                },
            )?;
        }
        for e in &self.stored {
            line(
                out,
                &Line {
                    kind: "event",
                    item: e,
                },
            )?;
        }
        let mut summary = serde_json::to_value(self.totals()).map_err(std::io::Error::other)?;
        if let Some(m) = summary.as_object_mut() {
            m.remove("results");
            m.remove("stored_events");
        }
        line(
            out,
            &Line {
                kind: "summary",
                item: &summary,
            },
        )
    }

    /// The report for a person.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Replay of {} requests through {} ({} profile, {} worker(s)), {} → {}\n",
            self.requests.total,
            self.module,
            self.profile,
            self.workers,
            self.started_at,
            self.ended_at
        );
        let rows: Vec<Vec<String>> = self
            .requests
            .by_decision
            .iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect();
        let _ = writeln!(out, "Decisions");
        out.push_str(&table(&["decision", "requests"], &rows));
        let rows: Vec<Vec<String>> = self
            .requests
            .by_status
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()])
            .collect();
        let _ = writeln!(out, "\nStatuses");
        out.push_str(&table(&["status", "requests"], &rows));
        if !self.by_customer.is_empty() {
            let _ = writeln!(out, "\nDecisions by customer");
            out.push_str(&decisions_table(&self.by_customer));
        }
        let e = &self.events;
        let _ = writeln!(
            out,
            "\nEvents: received {}, delivered {} ({} duplicates), rejected {}, dead-lettered {}, buffered {} — {}",
            e.received,
            e.delivered,
            e.duplicates,
            e.rejected,
            e.dead_lettered,
            e.buffered,
            if e.balanced { "balanced" } else { "NOT BALANCED" }
        );
        let i = &self.ingest;
        let rejected: Vec<String> = i.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "Ingest: {} requests, accepted {}, duplicates {}, rejected {}, late {}, faults injected {}",
            i.requests,
            i.accepted,
            i.duplicates,
            if rejected.is_empty() { "0".to_string() } else { rejected.join(", ") },
            i.late,
            i.faults_injected
        );
        if self.traps > 0 {
            let _ = writeln!(
                out,
                "Module traps: {} (a proxy answers 503 under FAIL_CLOSED)",
                self.traps
            );
        }
        if let Some(inv) = &self.invoices {
            let _ = writeln!(out);
            out.push_str(&invoices_table(inv));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `totals` keeps every field but the two lists: a field added to the report and forgotten
    /// there would vanish from scenario checks.
    #[test]
    fn totals_are_the_report_without_its_lists() {
        // Every field set away from its default, so a field `totals` forgot would differ.
        let mut r = RunReport {
            module: "m.wasm".into(),
            profile: "kong".into(),
            workers: 2,
            started_at: "a".into(),
            ended_at: "b".into(),
            traps: 1,
            memory_bytes_configured: 7,
            memory_bytes_peak: 8,
            invoices: Some(Vec::new()),
            log_counts: [1, 2, 3, 4, 5, 6],
            ..RunReport::default()
        };
        r.requests.total = 3;
        r.by_customer.insert("c".into(), Decisions::new());
        r.events.received = 4;
        r.ingest.accepted = 5;
        let keys = serde_json::to_value(&r).unwrap().as_object().unwrap().len();
        let defaults = serde_json::to_value(RunReport::default()).unwrap();
        for (k, v) in serde_json::to_value(r.totals())
            .unwrap()
            .as_object()
            .unwrap()
        {
            if k != "results" && k != "stored_events" {
                assert_ne!(
                    Some(v),
                    defaults.get(k),
                    "{k} is left at its default in this test"
                );
            }
        }
        assert_eq!(
            keys,
            defaults.as_object().unwrap().len() + 1,
            "invoices is the only optional field"
        );
        let mut full = serde_json::to_value(&r).unwrap();
        let totals = serde_json::to_value(r.totals()).unwrap();
        full["results"] = serde_json::json!([]);
        full["stored_events"] = serde_json::json!([]);
        assert_eq!(full, totals);
    }
}
