//! A customer's features, held compactly: a snapshot keeps one per customer (10,000 customers
//! in a proxy VM), so each is one small boxed list whose names are shared across the snapshot,
//! not a hash map with its own copy of every name (BENCHMARKS.md, "Memory of one filter VM").

use super::snapshot::Entitlement;
use std::collections::HashSet;
use std::ops::Index;
use std::sync::Arc;

/// Feature name → entitlement for one customer. Customers have a handful of features, so a
/// linear scan is as fast as a hash lookup and costs no table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Features(Box<[(Arc<str>, Entitlement)]>);

impl Features {
    /// The entitlement to `name`, if the customer has the feature.
    pub fn get(&self, name: &str) -> Option<&Entitlement> {
        self.0.iter().find(|(n, _)| &**n == name).map(|(_, e)| e)
    }

    /// Every feature, in the order read.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entitlement)> {
        self.0.iter().map(|(n, e)| (&**n, e))
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the customer has no features.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(Arc<str>, Entitlement)> for Features {
    /// Later entries with a name already seen replace the earlier one (as a map would).
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Entitlement)>>(iter: I) -> Self {
        let mut list: Vec<(Arc<str>, Entitlement)> = Vec::new();
        for (name, e) in iter {
            match list.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = e,
                None => list.push((name, e)),
            }
        }
        Features(list.into_boxed_slice())
    }
}

impl Index<&str> for Features {
    type Output = Entitlement;

    /// The entitlement to `name`; panics when absent, as a map's index does (tests and reports).
    #[allow(clippy::panic)]
    fn index(&self, name: &str) -> &Entitlement {
        match self.get(name) {
            Some(e) => e,
            None => panic!("no feature {name:?}"),
        }
    }
}

/// The feature names of a snapshot being read, each stored once.
#[derive(Debug, Default)]
pub struct FeatureNames(HashSet<Arc<str>>);

impl FeatureNames {
    /// The shared copy of `name`.
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.0.get(name) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(name);
        self.0.insert(n.clone());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::{Period, QuotaWindow};
    use crate::Timestamp;

    fn ent(quota: u64) -> Entitlement {
        Entitlement {
            allowed: true,
            quota: Some(quota),
            used: 0,
            used_by_source: None,
            used_window_start: None,
            window: QuotaWindow {
                period: Period::Month,
                anchor: Timestamp::EPOCH,
            },
            rate_limit: None,
        }
    }

    #[test]
    fn names_are_shared_and_lookups_find_each_feature_once() {
        let mut names = FeatureNames::default();
        let a = names.intern("search");
        let b = names.intern("search");
        assert!(Arc::ptr_eq(&a, &b), "one copy of a name per snapshot");
        let f: Features = [(a, ent(1)), (names.intern("chat"), ent(2)), (b, ent(3))]
            .into_iter()
            .collect();
        assert_eq!(f.len(), 2);
        assert_eq!(
            f.get("search").and_then(|e| e.quota),
            Some(3),
            "the last one wins"
        );
        assert_eq!(f["chat"].quota, Some(2));
        assert!(f.get("sear").is_none() && f.get("").is_none());
    }
}
