//! The exported `policy` interface: WIT records to and from `aforo_core::policy`.

use crate::bindings::exports::aforo::metering::policy::{
    AccessDecision, AccessRequest, Guest, MeterRequest, Rejection, SnapshotInfo,
};
use crate::counters::ImportedCounters;
use crate::Component;
use aforo_core::entitlement::Snapshot;
use aforo_core::event::encode_v1;
use aforo_core::policy::{build_event, can_access, event_as_given, AccessQuery, MeterQuery};
use aforo_core::{Environment, Timestamp};
use std::cell::RefCell;

thread_local! {
    static SNAPSHOT: RefCell<Option<Snapshot>> = const { RefCell::new(None) };
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
        let q = AccessQuery {
            tenant_id: req.tenant_id.as_deref(),
            api_key: req.api_key.as_deref(),
            feature_key: &req.feature_key,
            client_ip: req.client_ip.as_deref(),
            cost: req.cost,
            environment: Environment::from_wire(&req.environment).unwrap_or(Environment::Sandbox),
            now: Timestamp::from_unix_nanos(req.now_ns),
        };
        let a = SNAPSHOT.with(|cell| can_access(cell.borrow().as_ref(), &q, &mut ImportedCounters));
        AccessDecision {
            allowed: a.allowed,
            status: a.status,
            code: a.code,
            message: a.message,
            customer_id: a.customer_id,
            environment: a.environment.as_str().to_string(),
            quota: a.quota,
            remaining: a.remaining,
            resets_at_ns: a.resets_at.map(|t| t.unix_nanos()),
            retry_after_secs: a.retry_after_secs,
        }
    }

    fn build_event(req: MeterRequest) -> Result<String, Rejection> {
        let q = MeterQuery {
            tenant_id: &req.tenant_id,
            metric_key: &req.metric_key,
            quantity: &req.quantity,
            properties_json: req.properties_json.as_deref(),
            id: req.id.as_deref(),
            request_id: req.request_id.as_deref(),
            timestamp: req.timestamp.as_deref(),
            product_id: &req.product_id,
            environment: &req.environment,
            now: Timestamp::from_unix_nanos(req.now_ns),
        };
        let refused = |code: String, field: Option<String>, message: String| {
            let (event_id, event_json) = event_as_given(&q);
            Rejection {
                code,
                field,
                message,
                event_id,
                event_json,
            }
        };
        let event = build_event(&q).map_err(|r| refused(r.code, r.field, r.message))?;
        String::from_utf8(encode_v1(&event)).map_err(|_| {
            refused(
                "invalid_field".into(),
                None,
                "the event is not UTF-8".into(),
            )
        })
    }
}
