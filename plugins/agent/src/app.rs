//! The agent as an application: the state every part shares (configuration, stores, counters,
//! catalog, the component, metrics, the clock), built once in `main` and handed to the HTTP
//! layer, the forwarders and the reconciler. Domain steps live here and in `ingest`; the HTTP
//! handlers only translate.

use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::component::PolicyHost;
use crate::config::AgentConfig;
use crate::keys;
use crate::metrics::Metrics;
use crate::notifier::Notifier;
use crate::store::Stores;
use crate::usage::Usage;
use aforo_core::keys::KeyHash;
use aforo_core::ratelimit::{Per, RateLimit, WindowCounter};
use aforo_core::{Environment, Timestamp};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// Everything the agent's parts share.
pub struct App {
    /// Configuration.
    pub config: AgentConfig,
    /// Durable stores.
    pub stores: Stores,
    /// Live usage and counters.
    pub usage: Arc<Usage>,
    /// The catalog.
    pub catalog: Arc<RwLock<Catalog>>,
    /// The component.
    pub policy: PolicyHost,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// The clock.
    pub clock: SharedClock,
    /// Ingest rate-limit windows per key.
    limits: Mutex<HashMap<KeyHash, WindowCounter>>,
    /// Version of catalog + partners + keys, bumped on every admin change.
    control_version: AtomicU64,
    /// Wakes the forwarders when events are stored.
    forward_wake: Option<Arc<(Mutex<bool>, Condvar)>>,
    /// Webhook notices: the sender's wake-up and the marks already made.
    pub webhooks: Notifier,
    /// When consumer keys were last used.
    pub key_use: keys::KeyUse,
    /// Customers whose margin this month is below their plan's floor, with a plan that blocks.
    pub margin_blocked: RwLock<HashSet<String>>,
}

/// A key over its hourly event budget.
#[derive(Clone, Copy, Debug)]
pub struct OverRate {
    /// The key's environment.
    pub env: Environment,
    /// The environment's limit per hour.
    pub limit: u64,
    /// Seconds until the window frees room.
    pub retry_after_secs: u64,
}

impl App {
    /// The application, from its parts; `forward_wake` when forwarders run.
    pub fn new(
        config: AgentConfig,
        stores: Stores,
        usage: Arc<Usage>,
        catalog: Arc<RwLock<Catalog>>,
        policy: PolicyHost,
        clock: SharedClock,
        forward_wake: Option<Arc<(Mutex<bool>, Condvar)>>,
    ) -> App {
        App {
            config,
            stores,
            usage,
            catalog,
            policy,
            metrics: Metrics::default(),
            clock,
            limits: Mutex::new(HashMap::new()),
            control_version: AtomicU64::new(0),
            forward_wake,
            webhooks: Notifier::default(),
            key_use: keys::KeyUse::default(),
            margin_blocked: RwLock::new(HashSet::new()),
        }
    }

    /// The current time, from the injected clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The snapshot without usage, for the component; pushed when the control data changes.
    pub fn refresh_policy_snapshot(&self) -> Result<(), String> {
        let version = self.control_version.fetch_add(1, Ordering::SeqCst) + 1;
        let partners = keys::partners(&self.stores.control)?;
        let extra = keys::snapshot_keys(&self.stores.control)?;
        let catalog = self
            .catalog
            .read()
            .map_err(|_| "catalog lock poisoned".to_string())?;
        let blocked = self.margin_blocked_now();
        let v = catalog.snapshot_value(&partners, &extra, &blocked, version);
        self.policy.set_snapshot(version, v.to_string());
        Ok(())
    }

    /// The customers refused `margin_guard` now.
    pub fn margin_blocked_now(&self) -> HashSet<String> {
        self.margin_blocked
            .read()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    /// The version of the control data the last snapshot was built from.
    pub fn control_version(&self) -> u64 {
        self.control_version.load(Ordering::SeqCst)
    }

    /// Takes `n` events from the key's hourly budget of its environment.
    pub fn take_rate(
        &self,
        env: Environment,
        key: KeyHash,
        n: u64,
        now: Timestamp,
    ) -> Result<(), OverRate> {
        let limit = RateLimit {
            limit: self.config.events_per_hour[env.index()],
            per: Per::Hour,
        };
        // A poisoned lock only means a panic elsewhere: the windows themselves are whole.
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limits
            .entry(key)
            .or_default()
            .try_take(&limit, now, n)
            .map(|_| ())
            .map_err(|x| OverRate {
                env,
                limit: limit.limit,
                retry_after_secs: x.retry_after_secs,
            })
    }

    /// Wakes the forwarders.
    pub fn wake_forwarders(&self) {
        if let Some(w) = &self.forward_wake {
            if let Ok(mut flag) = w.0.lock() {
                *flag = true;
                w.1.notify_all();
            }
        }
    }
}
