//! A customer's features, held compactly: a snapshot keeps one per customer (10,000 customers
//! in a proxy VM), so each is one small boxed list whose names are shared across the snapshot,
//! not a hash map with its own copy of every name (BENCHMARKS.md, "Memory of one filter VM").

use super::snapshot::Entitlement;
use std::collections::HashSet;
use std::ops::Index;
use std::sync::Arc;

/// Feature name → entitlement for one customer. Read from a JSON object, the names are unique
/// and (serde_json's map is ordered) sorted, so a lookup searches by halves; a list that is not
/// sorted is searched in order (never a wrong answer, whatever builds it).
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    list: Box<[(Arc<str>, Entitlement)]>,
    sorted: bool,
}

impl Default for Features {
    /// No features (an empty list is sorted, as one collected from nothing is).
    fn default() -> Self {
        Features {
            list: Box::default(),
            sorted: true,
        }
    }
}

impl Features {
    /// The entitlement to `name`, if the customer has the feature.
    pub fn get(&self, name: &str) -> Option<&Entitlement> {
        if self.sorted {
            let i = self.list.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
            self.list.get(i).map(|(_, e)| e)
        } else {
            self.list.iter().find(|(n, _)| &**n == name).map(|(_, e)| e)
        }
    }

    /// Every feature, in the order read.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entitlement)> {
        self.list.iter().map(|(n, e)| (&**n, e))
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the customer has no features.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl FromIterator<(Arc<str>, Entitlement)> for Features {
    /// The features as given: names are expected unique (a JSON object's keys); with a name
    /// twice, lookups find one of them.
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Entitlement)>>(iter: I) -> Self {
        let list: Box<[(Arc<str>, Entitlement)]> = iter.into_iter().collect();
        let sorted = list.windows(2).all(|w| match w {
            [a, b] => a.0 < b.0,
            _ => true,
        });
        Features { list, sorted }
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
    fn names_are_shared_and_lookups_find_every_feature_sorted_or_not() {
        let mut names = FeatureNames::default();
        let a = names.intern("search");
        let b = names.intern("search");
        assert!(Arc::ptr_eq(&a, &b), "one copy of a name per snapshot");
        drop(b);
        // Sorted (as read from a JSON object): searched by halves.
        let names_in_order = ["a", "chat", "export", "search", "zz"];
        let f: Features = names_in_order
            .iter()
            .enumerate()
            .map(|(i, n)| (names.intern(n), ent(i as u64)))
            .collect();
        assert!(f.sorted);
        for (i, n) in names_in_order.iter().enumerate() {
            assert_eq!(f.get(n).and_then(|e| e.quota), Some(i as u64), "{n}");
        }
        for absent in ["", "b", "sear", "searchx", "zzz", "A"] {
            assert!(f.get(absent).is_none(), "{absent}");
        }
        // In another order: searched in order, the same answers.
        let f: Features = [(a, ent(3)), (names.intern("chat"), ent(2))]
            .into_iter()
            .collect();
        assert!(!f.sorted);
        assert_eq!(f.len(), 2);
        assert_eq!(f["search"].quota, Some(3));
        assert_eq!(f["chat"].quota, Some(2));
        assert!(f.get("sear").is_none() && f.get("").is_none());
        let none: Features = std::iter::empty().collect();
        assert_eq!(none, Features::default());
        assert!(none.get("search").is_none() && none.is_empty());
    }
}
