//! The lease call between a gateway filter and its agent (`POST /v1/leases`): the filter is a
//! lease node like any agent, and the agent runs its renewals in the shared store under the
//! node name `gw/<source>`, so the store's rule (`lease.rs`) bounds every node the same way.
//! Written by hand over `serde_json::Value` (no derive code in the Wasm filter).

use super::lease::{LeaseGrant, Renewal};
use crate::event::write_json_str;
use crate::time::Timestamp;
use serde_json::{json, Map, Value};

/// The store's node name of a gateway's leases: `gw/` and its source (source names never
/// hold `/`, so no agent's node id can take a gateway's pool).
pub fn gateway_node(source: &str) -> String {
    format!("gw/{source}")
}

/// One renewal a gateway asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The gateway's source name (its events carry it too).
    pub source: String,
    /// The core's counter key.
    pub key: String,
    /// The renewal, as the gateway's book made it.
    pub renewal: Renewal,
}

impl LeaseAsk {
    /// The request body, written by hand (the filter links no JSON writer for values).
    pub fn to_json(&self) -> Vec<u8> {
        let r = &self.renewal;
        let mut out = Vec::with_capacity(160 + self.key.len());
        out.extend_from_slice(b"{\"source\":");
        write_json_str(&mut out, &self.source);
        out.extend_from_slice(b",\"key\":");
        write_json_str(&mut out, &self.key);
        let mut field = |name: &str, v: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(v.as_bytes());
        };
        field("window_start", &r.window_start.unix_nanos().to_string());
        field("window_end", &r.window_end.unix_nanos().to_string());
        field("quota", &r.quota.to_string());
        match r.give_back {
            Some((id, unspent)) => field("give_back", &format!("[{id},{unspent}]")),
            None => field("give_back", "null"),
        }
        field("want", &r.want.to_string());
        field("need", &r.need.to_string());
        out.push(b'}');
        out
    }

    /// Reads a request body; the error names the field at fault.
    pub fn from_json(body: &[u8]) -> Result<LeaseAsk, String> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let o = v.as_object().ok_or("body must be a JSON object")?;
        let text = |name: &str| -> Result<String, String> {
            o.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("{name} must be a string"))
        };
        let give_back = match o.get("give_back") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => match (
                a.first().and_then(Value::as_u64),
                a.get(1).and_then(Value::as_u64),
                a.len(),
            ) {
                (Some(id), Some(unspent), 2) => Some((id, unspent)),
                _ => return Err("give_back must be [lease id, unspent units] or null".into()),
            },
            Some(_) => return Err("give_back must be [lease id, unspent units] or null".into()),
        };
        let renewal = Renewal {
            window_start: Timestamp::from_unix_nanos(int(o, "window_start")?),
            window_end: Timestamp::from_unix_nanos(int(o, "window_end")?),
            quota: unsigned(o, "quota")?,
            give_back,
            want: unsigned(o, "want")?,
            need: unsigned(o, "need")?,
        };
        if renewal.window_end <= renewal.window_start {
            return Err("window_end must be after window_start".into());
        }
        Ok(LeaseAsk {
            source: text("source")?,
            key: text("key")?,
            renewal,
        })
    }
}

fn int(o: &Map<String, Value>, name: &str) -> Result<i64, String> {
    o.get(name)
        .and_then(Value::as_i64)
        .ok_or(format!("{name} must be an integer (ns since the epoch)"))
}

fn unsigned(o: &Map<String, Value>, name: &str) -> Result<u64, String> {
    o.get(name)
        .and_then(Value::as_u64)
        .ok_or(format!("{name} must be a non-negative integer"))
}

/// The agent's answer body.
pub fn grant_to_json(g: &LeaseGrant) -> Value {
    json!({
        "lease": g.lease,
        "units": g.units,
        "left": g.left,
        "returning": g.returning,
        "current": g.current,
    })
}

/// Reads the agent's answer.
pub fn grant_from_json(body: &[u8]) -> Result<LeaseGrant, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not a JSON object")?;
    Ok(LeaseGrant {
        lease: unsigned(o, "lease")?,
        units: unsigned(o, "units")?,
        left: unsigned(o, "left")?,
        returning: unsigned(o, "returning")?,
        current: o
            .get("current")
            .and_then(Value::as_bool)
            .ok_or("current must be true or false")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_and_a_grant_round_trip_and_bad_fields_are_named() {
        let ask = LeaseAsk {
            source: "envoy-1".into(),
            key: "aforo:q:sandbox:acme:search".into(),
            renewal: Renewal {
                window_start: Timestamp::from_unix_secs(1_796_083_200),
                window_end: Timestamp::from_unix_secs(1_796_083_260),
                quota: 60,
                give_back: Some((7, 3)),
                want: 4,
                need: 1,
            },
        };
        assert_eq!(LeaseAsk::from_json(&ask.to_json()), Ok(ask.clone()));
        let g = LeaseGrant {
            lease: 9,
            units: 4,
            left: 20,
            returning: 0,
            current: true,
        };
        assert_eq!(
            grant_from_json(grant_to_json(&g).to_string().as_bytes()),
            Ok(g)
        );
        for (body, field) in [
            (
                r#"{"source":"a","key":"k","window_start":1,"window_end":2,"quota":-1,"want":1,"need":1}"#,
                "quota",
            ),
            (
                r#"{"source":"a","key":"k","window_start":1,"window_end":2,"quota":1,"want":1,"need":1,"give_back":[1]}"#,
                "give_back",
            ),
            (
                r#"{"source":"a","key":"k","window_start":2,"window_end":2,"quota":1,"want":1,"need":1}"#,
                "window_end",
            ),
            (
                r#"{"key":"k","window_start":1,"window_end":2,"quota":1,"want":1,"need":1}"#,
                "source",
            ),
        ] {
            let e = LeaseAsk::from_json(body.as_bytes()).unwrap_err();
            assert!(e.contains(field), "{e}");
        }
        assert_eq!(gateway_node("envoy-1"), "gw/envoy-1");
        // The counter key holds a customer id, which callers' keys lead to: quotes, a forged
        // field, CR/LF and non-ASCII travel as text and come back byte for byte.
        for customer in ["\",\"key\":\"x", "a\r\nb", "{}\"]", "ünï\u{0}"] {
            let hostile = LeaseAsk {
                key: format!("aforo:q:sandbox:{customer}:search"),
                ..ask.clone()
            };
            let back = LeaseAsk::from_json(&hostile.to_json()).unwrap();
            assert_eq!(back, hostile, "{customer:?}");
        }
    }
}
