//! The rater: feed validated, deduplicated events; get one invoice per customer and environment.

use super::aggregate::Accumulator;
use super::invoice::{rate_line, LineTerms, RatingError};
use super::pipeline::{finish, Invoice, Usage};
use super::plan::Plan;
use super::terms::Terms;
use crate::environment::Environment;
use crate::event::UsageEvent;
use crate::time::Timestamp;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct CustomerState {
    accumulators: Vec<Accumulator>,
    skipped: Vec<u64>,
    events: u64,
    terms: Option<Terms>,
}

/// Aggregates events for a plan, customer by customer.
#[derive(Debug)]
pub struct Rater {
    plan: Plan,
    by_metric: HashMap<String, Vec<usize>>,
    /// Per environment (sandbox, production): customer → state.
    customers: [BTreeMap<String, CustomerState>; 2],
    /// The invoice period `[start, end)`, for proration.
    period: Option<(Timestamp, Timestamp)>,
}

impl Rater {
    /// A rater for `plan`.
    pub fn new(plan: Plan) -> Self {
        let mut by_metric: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in plan.charges.iter().enumerate() {
            if let Some(m) = &c.metric {
                by_metric.entry(m.clone()).or_default().push(i);
            }
        }
        Rater {
            plan,
            by_metric,
            customers: [BTreeMap::new(), BTreeMap::new()],
            period: None,
        }
    }

    /// Sets the invoice period `[start, end)`: a prorated flat fee is billed for the part of
    /// it a customer's service period covers.
    pub fn set_period(&mut self, start: Timestamp, end: Timestamp) {
        self.period = Some((start, end));
    }

    /// Bills a customer on its terms, with or without events.
    pub fn subscribe(&mut self, terms: Terms) {
        let env = terms.environment;
        self.add_customer(env, &terms.id);
        if let Some(st) = self.customers[env.index()].get_mut(terms.id.as_str()) {
            st.terms = Some(terms);
        }
    }

    fn new_state(plan: &Plan) -> CustomerState {
        CustomerState {
            accumulators: plan.charges.iter().map(Accumulator::for_charge).collect(),
            skipped: vec![0; plan.charges.len()],
            events: 0,
            terms: None,
        }
    }

    /// Adds one event (already validated and deduplicated). Every customer with an event gets
    /// an invoice, with the plan's flat fees, even when no charge prices its metrics.
    pub fn add(&mut self, e: &UsageEvent) {
        let Rater {
            plan,
            by_metric,
            customers,
            ..
        } = self;
        let per_env = &mut customers[e.environment.index()];
        if !per_env.contains_key(e.customer_id.as_str()) {
            per_env.insert(e.customer_id.clone(), Self::new_state(plan));
        }
        let Some(state) = per_env.get_mut(e.customer_id.as_str()) else {
            return;
        };
        state.events += 1;
        let Some(indices) = by_metric.get(&e.metric) else {
            return;
        };
        let mut priced = false;
        let mut first_filtered = None;
        for &i in indices {
            if let (Some(acc), Some(c)) = (state.accumulators.get_mut(i), plan.charges.get(i)) {
                if !c.filter.matches(e) {
                    first_filtered.get_or_insert(i);
                    continue;
                }
                priced = true;
                if !acc.add(c, e) {
                    state.skipped[i] += 1;
                }
            }
        }
        // Its metric is priced by property value, and no charge has its value (a model the
        // plan does not price): counted where it shows on the invoice, never silently free.
        if let (false, Some(i)) = (priced, first_filtered) {
            state.skipped[i] += 1;
        }
    }

    /// Makes sure a customer gets an invoice even with no events (flat fees, minimums).
    pub fn add_customer(&mut self, environment: Environment, customer_id: &str) {
        let per_env = &mut self.customers[environment.index()];
        if !per_env.contains_key(customer_id) {
            per_env.insert(customer_id.to_string(), Self::new_state(&self.plan));
        }
    }

    /// The plan being rated.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Invoices ordered by environment (sandbox first) and customer id.
    pub fn invoices(&self) -> Result<Vec<Invoice>, RatingError> {
        let mut out = Vec::new();
        for env in Environment::ALL {
            for (customer, st) in &self.customers[env.index()] {
                let terms = st.terms.as_ref();
                let rollover_in = |charge: &str| {
                    terms
                        .and_then(|t| t.rollover_in.get(charge).copied())
                        .unwrap_or(Decimal::ZERO)
                };
                let covered = self.covered(terms);
                let lines = self
                    .plan
                    .charges
                    .iter()
                    .zip(&st.accumulators)
                    .zip(&st.skipped)
                    .map(|((c, acc), skipped)| {
                        let lt = LineTerms {
                            rollover_in: rollover_in(&c.id),
                            covered,
                        };
                        rate_line(&self.plan, c, acc, *skipped, lt)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(finish(
                    &self.plan,
                    env,
                    customer,
                    lines,
                    terms,
                    Usage { events: st.events },
                    &rollover_in,
                ));
            }
        }
        Ok(out)
    }

    /// The part of the invoice period a customer's service period covers, exactly (days of
    /// the period's real length, to the nanosecond); `None` when either is not known.
    fn covered(&self, terms: Option<&Terms>) -> Option<Decimal> {
        let (ps, pe) = self.period?;
        let (ss, se) = terms?.service_period?;
        let whole = pe.unix_nanos() - ps.unix_nanos();
        if whole <= 0 {
            return None;
        }
        let overlap =
            (se.unix_nanos().min(pe.unix_nanos()) - ss.unix_nanos().max(ps.unix_nanos())).max(0);
        Some(Decimal::from(overlap) / Decimal::from(whole))
    }
}
