//! Aggregation of a metric's events into one charge's quantity, incrementally, so a million
//! events are rated without being kept.

use super::plan::{Aggregation, Charge, Model};
use crate::event::UsageEvent;
use crate::time::Timestamp;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashSet;

/// Running state of one charge for one customer.
#[derive(Clone, Debug, PartialEq)]
pub enum Accumulator {
    /// Sum of quantities.
    Sum(Decimal),
    /// Number of events.
    Count(u64),
    /// Largest quantity.
    Max(Decimal),
    /// Distinct property values.
    Unique(HashSet<String>),
    /// Per-event amounts (percentage), ordered at rating time.
    Amounts(Vec<(Timestamp, String, Decimal)>),
    /// Flat fees need no usage.
    None,
}

/// A property's value as a decimal amount, if it is one.
pub fn property_amount(event: &UsageEvent, property: &str) -> Option<Decimal> {
    match event.properties.get(property)? {
        Value::Number(n) => crate::event::Quantity::parse(&n.to_string())
            .ok()
            .map(|q| q.decimal()),
        Value::String(s) => crate::event::Quantity::parse(s).ok().map(|q| q.decimal()),
        _ => None,
    }
}

impl Accumulator {
    /// The empty state for a charge.
    pub fn for_charge(c: &Charge) -> Self {
        match (&c.model, &c.aggregation) {
            (Model::Flat { .. }, _) => Accumulator::None,
            (Model::Percentage { .. }, _) => Accumulator::Amounts(Vec::new()),
            (_, Aggregation::Sum) => Accumulator::Sum(Decimal::ZERO),
            (_, Aggregation::Count) => Accumulator::Count(0),
            (_, Aggregation::Max) => Accumulator::Max(Decimal::ZERO),
            (_, Aggregation::UniqueCount(_)) => Accumulator::Unique(HashSet::new()),
        }
    }

    /// Adds one event; `false` when the event lacked what this charge needs (counted as skipped).
    pub fn add(&mut self, c: &Charge, e: &UsageEvent) -> bool {
        match self {
            Accumulator::None => true,
            Accumulator::Sum(s) => match s.checked_add(e.quantity.decimal()) {
                Some(v) => {
                    *s = v;
                    true
                }
                None => false,
            },
            Accumulator::Count(n) => {
                *n += 1;
                true
            }
            Accumulator::Max(m) => {
                *m = (*m).max(e.quantity.decimal());
                true
            }
            Accumulator::Unique(set) => {
                let Aggregation::UniqueCount(p) = &c.aggregation else {
                    return false;
                };
                match e.properties.get(p) {
                    None | Some(Value::Null) => false,
                    Some(Value::String(s)) => {
                        set.insert(s.clone());
                        true
                    }
                    Some(other) => {
                        set.insert(other.to_string());
                        true
                    }
                }
            }
            Accumulator::Amounts(list) => {
                let Some(p) = &c.property else { return false };
                match property_amount(e, p) {
                    Some(a) => {
                        list.push((e.timestamp, e.id.clone(), a));
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// The aggregated quantity (for percentage: the amounts in event order).
    pub fn quantity(&self) -> Decimal {
        match self {
            Accumulator::None => Decimal::ONE,
            Accumulator::Sum(s) | Accumulator::Max(s) => *s,
            Accumulator::Count(n) => Decimal::from(*n),
            Accumulator::Unique(set) => Decimal::from(set.len() as u64),
            Accumulator::Amounts(list) => list.iter().map(|(_, _, a)| *a).sum(),
        }
    }

    /// Percentage amounts ordered by time, then id (deterministic).
    pub fn ordered_amounts(&self) -> Vec<Decimal> {
        match self {
            Accumulator::Amounts(list) => {
                let mut l: Vec<&(Timestamp, String, Decimal)> = list.iter().collect();
                l.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                l.into_iter().map(|x| x.2).collect()
            }
            _ => Vec::new(),
        }
    }
}
