//! The exported `policy` interface, over aforo-core.

use crate::bindings::exports::aforo::metering::policy::{
    AccessDecision, AccessRequest, Guest, MeterRequest, Rejection, SnapshotInfo,
};
use crate::counters::ImportedCounters;
use crate::Component;
use aforo_core::entitlement::{admit, Credential, Refusal, Snapshot};
use aforo_core::event::{derive_event_id, encode_v1, Quantity, UsageEvent};
use aforo_core::time::parse_rfc3339;
use aforo_core::validate::validate_event;
use aforo_core::{Environment, Timestamp};
use std::cell::RefCell;

thread_local! {
    static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
}

fn env_of(s: &str) -> Environment {
    Environment::from_wire(s).unwrap_or(Environment::Sandbox)
}

fn reject(code: &str, field: Option<&str>, message: impl Into<String>) -> Rejection {
    Rejection {
        code: code.to_string(),
        field: field.map(str::to_string),
        message: message.into(),
    }
}

impl Guest for Component {
    fn load_snapshot(snapshot_json: String) -> Result<SnapshotInfo, String> {
        let s = Snapshot::from_json(snapshot_json.as_bytes()).map_err(|e| e.to_string())?;
        let info = SnapshotInfo {
            version: s.version,
            customers: s.customers.len() as u32,
            keys: s.keys.len() as u32,
        };
        SNAPSHOT.with(|cell| *cell.borrow_mut() = Some(s));
        Ok(info)
    }

    fn can_access(req: AccessRequest) -> AccessDecision {
        let now = Timestamp::from_unix_nanos(req.now_ns);
        let default_environment = env_of(&req.environment);
        let credential = match (&req.api_key, &req.tenant_id) {
            (Some(k), _) if !k.is_empty() => Credential::ConsumerKey(k),
            (_, Some(t)) if !t.is_empty() => Credential::Customer(t),
            _ => Credential::Missing,
        };
        let ip = req
            .client_ip
            .as_deref()
            .and_then(aforo_core::keys::parse_peer);
        let access = aforo_core::entitlement::AccessRequest {
            credential,
            feature: &req.feature_key,
            client_ip: ip,
            cost: req.cost,
            default_environment,
        };
        SNAPSHOT.with(|cell| {
            let guard = cell.borrow();
            let Some(snapshot) = guard.as_ref() else {
                let d = aforo_core::entitlement::Deny::unavailable(1);
                return refused(
                    &Refusal {
                        deny: d,
                        identity: None,
                    },
                    default_environment,
                );
            };
            match admit(snapshot, &access, now, &mut ImportedCounters) {
                Ok(a) => AccessDecision {
                    allowed: true,
                    status: 200,
                    code: None,
                    message: None,
                    customer_id: Some(a.identity.customer_id),
                    environment: a.identity.environment.as_str().to_string(),
                    quota: a.allowance.map(|x| x.limit),
                    remaining: a.allowance.map(|x| x.remaining),
                    resets_at_ns: a.allowance.map(|x| x.reset_at.unix_nanos()),
                    retry_after_secs: None,
                },
                Err(r) => refused(&r, default_environment),
            }
        })
    }

    fn build_event(req: MeterRequest) -> Result<String, Rejection> {
        let now = Timestamp::from_unix_nanos(req.now_ns);
        let environment = Environment::from_wire(&req.environment).ok_or_else(|| {
            reject(
                "invalid_field",
                Some("environment"),
                "must be sandbox or production",
            )
        })?;
        let id = match (&req.id, &req.request_id) {
            (Some(id), _) if !id.is_empty() => id.clone(),
            (_, Some(rid)) if !rid.is_empty() => {
                derive_event_id(environment, &req.tenant_id, &req.metric_key, rid)
            }
            _ => {
                return Err(reject(
                    "missing_field",
                    Some("id"),
                    "an id or a request id is required, so retries count once",
                ))
            }
        };
        let quantity = Quantity::parse(&req.quantity)
            .map_err(|e| reject("invalid_quantity", Some("quantity"), e.to_string()))?;
        let timestamp = match &req.timestamp {
            None => now,
            Some(t) => parse_rfc3339(t)
                .map_err(|e| reject("invalid_timestamp", Some("timestamp"), e.to_string()))?,
        };
        let properties = match &req.properties_json {
            None => Default::default(),
            Some(p) => match serde_json_object(p) {
                Some(m) => m,
                None => {
                    return Err(reject(
                        "invalid_field",
                        Some("properties"),
                        "must be a JSON object",
                    ))
                }
            },
        };
        let event = UsageEvent {
            id,
            customer_id: req.tenant_id.clone(),
            metric: req.metric_key.clone(),
            quantity,
            timestamp,
            product_id: req.product_id.clone(),
            environment,
            properties,
        };
        validate_event(&event, now, environment)
            .map_err(|r| reject(r.code.as_str(), r.field, r.message))?;
        String::from_utf8(encode_v1(&event))
            .map_err(|_| reject("invalid_field", None, "the event is not UTF-8"))
    }
}

fn serde_json_object(text: &str) -> Option<aforo_core::event::Properties> {
    aforo_core::event::parse_properties(text)
}

fn refused(r: &Refusal, default_environment: Environment) -> AccessDecision {
    let d = &r.deny;
    AccessDecision {
        allowed: false,
        status: d.code.status(),
        code: Some(d.code.as_str().to_string()),
        message: Some(d.message.clone()),
        customer_id: r.identity.as_ref().map(|i| i.customer_id.clone()),
        environment: r
            .identity
            .as_ref()
            .map_or(default_environment, |i| i.environment)
            .as_str()
            .to_string(),
        quota: d.allowance.map(|a| a.limit),
        remaining: d.allowance.map(|a| a.remaining),
        resets_at_ns: d.allowance.map(|a| a.reset_at.unix_nanos()),
        retry_after_secs: d.retry_after_secs,
    }
}
