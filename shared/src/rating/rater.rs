//! The rater: feed validated, deduplicated events; get one invoice per customer and environment.

use super::aggregate::Accumulator;
use super::invoice::{assemble, rate_charge, Invoice, RatingError};
use super::plan::Plan;
use crate::environment::Environment;
use crate::event::UsageEvent;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct CustomerState {
    accumulators: Vec<Accumulator>,
    skipped: Vec<u64>,
}

/// Aggregates events for a plan, customer by customer.
#[derive(Debug)]
pub struct Rater {
    plan: Plan,
    by_metric: HashMap<String, Vec<usize>>,
    /// Per environment (sandbox, production): customer → state.
    customers: [BTreeMap<String, CustomerState>; 2],
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
        }
    }

    fn new_state(plan: &Plan) -> CustomerState {
        CustomerState {
            accumulators: plan.charges.iter().map(Accumulator::for_charge).collect(),
            skipped: vec![0; plan.charges.len()],
        }
    }

    /// Adds one event (already validated and deduplicated). Every customer with an event gets
    /// an invoice, with the plan's flat fees, even when no charge prices its metrics.
    pub fn add(&mut self, e: &UsageEvent) {
        let Rater {
            plan,
            by_metric,
            customers,
        } = self;
        let per_env = &mut customers[e.environment.index()];
        if !per_env.contains_key(e.customer_id.as_str()) {
            per_env.insert(e.customer_id.clone(), Self::new_state(plan));
        }
        let (Some(state), Some(indices)) = (
            per_env.get_mut(e.customer_id.as_str()),
            by_metric.get(&e.metric),
        ) else {
            return;
        };
        for &i in indices {
            if let (Some(acc), Some(c)) = (state.accumulators.get_mut(i), plan.charges.get(i)) {
                if !acc.add(c, e) {
                    state.skipped[i] += 1;
                }
            }
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
                let lines = self
                    .plan
                    .charges
                    .iter()
                    .zip(&st.accumulators)
                    .zip(&st.skipped)
                    .map(|((c, acc), skipped)| rate_charge(&self.plan, c, acc, *skipped))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(assemble(&self.plan, env, customer, lines));
            }
        }
        Ok(out)
    }
}
