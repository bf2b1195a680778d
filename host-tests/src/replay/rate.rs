//! `aforo-replay rate`: events (ingest v1 objects, one per line) through the same validation and
//! dedup as the ingest, relative to `--now`, then rated with a plan.

use crate::replay::report::invoices_table;
use aforo_core::dedup::{DedupWindow, Seen};
use aforo_core::event::parse_wire_event;
use aforo_core::rating::{Invoice, Plan, Rater};
use aforo_core::time::NANOS_PER_DAY;
use aforo_core::validate::validate_event;
use aforo_core::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Event counts of a rating run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    /// Valid, new events (rated).
    pub accepted: u64,
    /// Repeated ids (not rated again).
    pub duplicates: u64,
    /// Refused events by code.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted events older than 24 hours.
    pub late: u64,
}

/// The output of `rate`.
#[derive(Clone, Debug, Serialize)]
pub struct RateReport {
    /// Invoices per environment and customer.
    pub invoices: Vec<Invoice>,
    /// What happened to the events.
    pub events: EventCounts,
}

impl RateReport {
    /// For a person.
    pub fn to_table(&self) -> String {
        let mut out = invoices_table(&self.invoices);
        let rejected: Vec<String> = self
            .events
            .rejected
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            out,
            "Events: accepted {}, duplicates {}, rejected {}, late {}",
            self.events.accepted,
            self.events.duplicates,
            if rejected.is_empty() {
                "0".into()
            } else {
                rejected.join(", ")
            },
            self.events.late
        );
        out
    }
}

/// Rates the events of a JSONL text; `Err` says which line is not JSON.
pub fn rate(plan: Plan, file: &str, text: &str, now: Timestamp) -> Result<RateReport, String> {
    let mut rater = Rater::new(plan);
    let mut seen = [
        DedupWindow::new(usize::MAX, 90 * NANOS_PER_DAY),
        DedupWindow::new(usize::MAX, 90 * NANOS_PER_DAY),
    ];
    let mut counts = EventCounts::default();
    let reject = |code: &str, counts: &mut EventCounts| {
        *counts.rejected.entry(code.to_string()).or_default() += 1
    };
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let raw: Box<RawValue> = serde_json::from_str(t)
            .map_err(|e| format!("{file}:{}: not a JSON event ({e})", i + 1))?;
        let event = match parse_wire_event(&raw) {
            Ok(e) => e,
            Err(e) => {
                reject(e.rejection.code.as_str(), &mut counts);
                continue;
            }
        };
        match validate_event(&event, now, event.environment) {
            Err(r) => reject(r.code.as_str(), &mut counts),
            Ok(flag) => match seen[event.environment.index()].check_and_insert(&event.id, now) {
                Seen::Duplicate => counts.duplicates += 1,
                Seen::New => {
                    counts.accepted += 1;
                    if flag.is_some() {
                        counts.late += 1;
                    }
                    rater.add(&event);
                }
            },
        }
    }
    let invoices = rater.invoices().map_err(|e| e.to_string())?;
    Ok(RateReport {
        invoices,
        events: counts,
    })
}
