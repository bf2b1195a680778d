//! `aforo-replay rate`: events (ingest v1 objects, one per line) through the same validation and
//! dedup as the ingest, relative to `--now`, then rated with a plan.

use crate::replay::report::invoices_table;
use aforo_core::dedup::{DedupWindow, Seen};
use aforo_core::event::parse_wire_event;
use aforo_core::rating::{Invoice, Plan, Rater, Terms};
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
    /// Valid events outside `--period` (not rated).
    #[serde(skip_serializing_if = "is_zero")]
    pub outside_period: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
            "Events: accepted {}, duplicates {}, rejected {}, late {}{}",
            self.events.accepted,
            self.events.duplicates,
            if rejected.is_empty() {
                "0".into()
            } else {
                rejected.join(", ")
            },
            self.events.late,
            if self.events.outside_period > 0 {
                format!(", outside the period {}", self.events.outside_period)
            } else {
                String::new()
            }
        );
        out
    }
}

/// Rates the events of a JSONL text; `Err` says which line is not JSON.
pub fn rate(plan: Plan, file: &str, text: &str, now: Timestamp) -> Result<RateReport, String> {
    rate_for(plan, file, text, now, &Billing::default())
}

/// Who is billed and for which period (`aforo-replay rate --customers --period`).
#[derive(Clone, Debug, Default)]
pub struct Billing {
    /// Customers invoiced on their terms, with or without events.
    pub customers: Vec<Terms>,
    /// The invoice period `[start, end)`: prorates flat fees; with `only_in_period`, events
    /// outside it are not rated.
    pub period: Option<(Timestamp, Timestamp)>,
    /// Rate only the events whose timestamp is in the period (`--period` given).
    pub only_in_period: bool,
}

/// As `rate`, for the customers and period of `billing`.
pub fn rate_for(
    plan: Plan,
    file: &str,
    text: &str,
    now: Timestamp,
    billing: &Billing,
) -> Result<RateReport, String> {
    let mut rater = Rater::new(plan);
    if let Some((start, end)) = billing.period {
        rater.set_period(start, end);
    }
    for t in &billing.customers {
        rater.subscribe(t.clone());
    }
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
                    if billing.only_in_period
                        && billing
                            .period
                            .is_some_and(|(s, e)| event.timestamp < s || event.timestamp >= e)
                    {
                        counts.outside_period += 1;
                        continue;
                    }
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
