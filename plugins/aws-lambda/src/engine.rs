//! The wasm-bindgen surface: one `Engine` per Lambda instance, kept across invocations.

use crate::host::LambdaHost;
use crate::request::LambdaRequest;
use aforo_core::config::Config;
use aforo_core::entitlement::LocalReply;
use aforo_core::gateway::{Gateway, LoggedRequest, NotMetered, RequestVerdict};
use aforo_core::host::{CallResponse, LogLevel};
use aforo_core::time::parse_rfc3339;
use aforo_core::{Environment, Timestamp};
use serde_json::{json, Map, Value};
use wasm_bindgen::prelude::*;

fn at(now_ms: f64) -> Timestamp {
    Timestamp::from_unix_nanos((now_ms as i64).saturating_mul(1_000_000))
}

/// The core's gateway engine with its Lambda host.
#[wasm_bindgen]
pub struct Engine {
    gw: Gateway,
    host: LambdaHost,
}

fn config_from(config_json: &str, env_json: &str) -> Result<Config, String> {
    let mut config = if config_json.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str::<Value>(config_json) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err("AFORO_CONFIG: must be a JSON object".into()),
            Err(e) => return Err(format!("AFORO_CONFIG: not JSON: {e}")),
        }
    };
    // A Lambda calls URLs, not Envoy clusters.
    config
        .entry("dispatch")
        .or_insert_with(|| Value::String("authority".into()));
    let env: Map<String, Value> = match serde_json::from_str::<Value>(env_json) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let lookup = |name: &str| env.get(name).and_then(Value::as_str).map(str::to_string);
    let c = Config::parse(Value::Object(config).to_string().as_bytes(), &lookup)
        .map_err(|e| e.to_string())?;
    if c.quota_leases.is_some() {
        return Err("quota_leases: not available in the Lambda authorizer (a request cannot wait there for the agent's answer); the agent's /v1/canAccess takes reservations from leases when it runs with max_overshoot".into());
    }
    Ok(c)
}

/// `$context.path` of a REST API starts with the stage on the default endpoint
/// (`/prod/v1/search`); routes are written without it.
fn strip_stage(path: &str, stage: Option<&str>) -> String {
    if let Some(stage) = stage.filter(|s| !s.is_empty() && *s != "$default") {
        let prefix = format!("/{stage}");
        if let Some(rest) = path.strip_prefix(&prefix) {
            if rest.is_empty() {
                return "/".to_string();
            }
            if rest.starts_with('/') {
                return rest.to_string();
            }
        }
    }
    path.to_string()
}

fn reply_json(r: &LocalReply) -> Value {
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let header = |n: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    let num = |n: &str| header(n).and_then(|v| v.parse::<u64>().ok());
    json!({
        "allowed": false,
        "status": r.status,
        "code": body["error"]["code"],
        "message": body["error"]["message"],
        "quota": num("ratelimit-limit"),
        "remaining": num("ratelimit-remaining"),
        "retryAfter": num("retry-after"),
        "headers": r.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<String, Value>>(),
        "body": String::from_utf8_lossy(&r.body),
    })
}

#[wasm_bindgen]
impl Engine {
    /// Builds an engine from the filter's configuration (`config_json`, may be empty) merged
    /// over `AFORO_*` variables (`env_json`, an object); the error names the field at fault.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, env_json: &str, seed: f64) -> Result<Engine, JsError> {
        let config = config_from(config_json, env_json).map_err(|e| JsError::new(&e))?;
        Ok(Engine {
            gw: Gateway::new(config, seed as u64),
            host: LambdaHost::default(),
        })
    }

    /// Whether a snapshot is installed (a cold start must sync before it decides).
    #[wasm_bindgen(js_name = hasSnapshot)]
    pub fn has_snapshot(&self) -> bool {
        self.gw.snapshot().is_some()
    }

    /// How often `tick` should run (flush deadlines, snapshot refresh), in ms.
    #[wasm_bindgen(js_name = tickPeriodMs)]
    pub fn tick_period_ms(&self) -> f64 {
        self.gw.tick_period_ms() as f64
    }

    /// Periodic work: flushes due batches, starts a snapshot refresh when one is due.
    pub fn tick(&mut self, now_ms: f64) {
        self.host.now = at(now_ms);
        self.gw.on_tick(&mut self.host);
    }

    /// Sends whatever is buffered now.
    pub fn flush(&mut self, now_ms: f64) {
        self.host.now = at(now_ms);
        self.gw.flush_now(&mut self.host);
    }

    /// Decides one request: `{"method", "path", "headers", "sourceIp"}` in, the decision as
    /// JSON out (`allowed`, `status`, `code`, `customerId`, `quota`, `remaining`, …).
    pub fn authorize(&mut self, request_json: &str, now_ms: f64) -> String {
        let req = match LambdaRequest::from_json(request_json) {
            Ok(r) => r,
            Err(e) => {
                return json!({"allowed": false, "status": 400, "code": "invalid_request", "message": e})
                    .to_string()
            }
        };
        self.host.now = at(now_ms);
        self.host.reply = None;
        match self.gw.on_request(&mut self.host, &req) {
            // Never: `quota_leases` is refused at configuration.
            RequestVerdict::Asking(_) => {
                json!({"allowed": false, "status": 503, "code": "entitlements_unavailable"})
                    .to_string()
            }
            RequestVerdict::Denied(status) => match self.host.reply.take() {
                Some(r) => reply_json(&r).to_string(),
                None => json!({"allowed": false, "status": status}).to_string(),
            },
            RequestVerdict::Continue {
                exchange,
                upstream_headers,
            } => {
                let would_deny = upstream_headers
                    .iter()
                    .find(|(k, _)| k == "x-aforo-would-deny")
                    .map(|(_, v)| v.clone());
                let Some(ex) = exchange else {
                    return json!({"allowed": true, "status": 200, "metered": false, "wouldDeny": would_deny})
                        .to_string();
                };
                let route = self.gw.config().routes.get(ex.route_index());
                let a = ex.allowance();
                let now = self.host.now;
                json!({
                    "allowed": true,
                    "status": 200,
                    // Served before any snapshot (failure_mode open): no customer to bill yet.
                    "metered": ex.customer_id().is_some(),
                    "customerId": ex.customer_id(),
                    "environment": ex.environment().as_str(),
                    "keyId": ex.key_id(),
                    "feature": route.map(|r| r.feature.clone()),
                    "metric": route.and_then(|r| r.first()).map(|m| m.metric.clone()),
                    "quota": a.map(|a| a.limit),
                    "remaining": a.map(|a| a.remaining),
                    "resetSeconds": a.map(|a| a.reset_at.millis_since(now).max(1000) / 1000),
                    "wouldDeny": would_deny,
                })
                .to_string()
            }
        }
    }

    /// Meters one access-log line (the fields of the deploy example's log format); answers
    /// `{"metered": true}`, `{"skipped": "no_route" | "not_billable"}` or `{"invalid": why}`.
    #[wasm_bindgen(js_name = meterLog)]
    pub fn meter_log(&mut self, line_json: &str, now_ms: f64) -> String {
        self.host.now = at(now_ms);
        match self.meter_line(line_json) {
            Ok(Ok(())) => json!({"metered": true}),
            Ok(Err(NotMetered::NoRoute)) => json!({"skipped": "no_route"}),
            Ok(Err(NotMetered::NotBillable(s))) => json!({"skipped": "not_billable", "status": s}),
            Err(why) => json!({"invalid": why}),
        }
        .to_string()
    }

    fn meter_line(&mut self, line_json: &str) -> Result<Result<(), NotMetered>, String> {
        // A key given twice would mean a value broke out of its string in the log format (the
        // last copy would win): such a line is refused, never billed to whoever it names.
        let v: Value = aforo_core::strict_json::parse_unique(line_json.as_bytes())
            .map_err(|e| format!("not JSON: {e}"))?;
        let text = |name: &str| -> Option<String> {
            match v.get(name)? {
                Value::String(s) if !s.is_empty() && s != "-" => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let need = |name: &str| text(name).ok_or_else(|| format!("{name:?} is missing"));
        let number = |name: &str| text(name).and_then(|s| s.parse::<u64>().ok());
        // Route and status first: a refused request (no authorizer context) or an unmetered
        // path is not an error.
        let method = need("httpMethod")?;
        let path = strip_stage(&need("path")?, text("stage").as_deref());
        let status = number("status")
            .and_then(|s| u16::try_from(s).ok())
            .ok_or("\"status\" is missing or not a status")?;
        if let Err(not) = self.gw.logged_route(&method, &path, status) {
            return Ok(Err(not));
        }
        // $context.extendedRequestId: API Gateway generates it and a caller cannot set it; a
        // REST API's $context.requestId takes the client's X-Amzn-RequestId, so ids from it
        // would let a client make many requests one event (deploy-examples/aws/SOURCES.md).
        let request_id = need("extendedRequestId").map_err(|_| {
            "\"extendedRequestId\" is missing: add \"extendedRequestId\":\"$context.extendedRequestId\" to the stage's access log format (a REST API's requestId can be set by the client, so events are not keyed on it)".to_string()
        })?;
        let customer_id = need("customerId").map_err(|_| {
            "\"customerId\" is missing: was the request authorized by the aforo authorizer?"
                .to_string()
        })?;
        // `requestTimeEpoch` (ms) is exact; `requestTime` in RFC 3339 is a fallback.
        let time = match number("requestTimeEpoch") {
            Some(ms) => Timestamp::from_unix_nanos((ms as i64).saturating_mul(1_000_000)),
            None => {
                parse_rfc3339(&need("requestTime")?).map_err(|e| format!("\"requestTime\": {e}"))?
            }
        };
        let environment = match text("environment") {
            Some(e) => Environment::from_wire(&e)
                .ok_or_else(|| format!("\"environment\": {e:?} is not sandbox or production"))?,
            None => self.gw.config().environment(),
        };
        let key_id = text("keyId");
        let line = LoggedRequest {
            request_id: &request_id,
            time,
            method: &method,
            path: &path,
            status,
            customer_id: &customer_id,
            environment,
            key_id: key_id.as_deref(),
            request_bytes: number("requestLength"),
            response_bytes: number("responseLength"),
        };
        Ok(self.gw.meter_logged(&mut self.host, &line))
    }

    /// The calls the engine started, as `[{token, method, url, headers, body, timeoutMs}]`,
    /// for JavaScript to make; each answer goes back through `onResponse` / `onFailure`.
    #[wasm_bindgen(js_name = takeCalls)]
    pub fn take_calls(&mut self) -> String {
        let calls: Vec<Value> = std::mem::take(&mut self.host.calls)
            .into_iter()
            .map(|(token, r)| {
                let h = |n: &str| {
                    r.headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                };
                let scheme = h(":scheme").unwrap_or_else(|| "http".into());
                let authority = h(":authority").unwrap_or_else(|| r.upstream.clone());
                let headers: Map<String, Value> = r
                    .headers
                    .iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                json!({
                    "token": token,
                    "method": h(":method").unwrap_or_else(|| "GET".into()),
                    "url": format!("{scheme}://{authority}{}", h(":path").unwrap_or_default()),
                    "headers": headers,
                    "body": String::from_utf8_lossy(&r.body),
                    "timeoutMs": r.timeout_ms,
                })
            })
            .collect();
        Value::Array(calls).to_string()
    }

    /// The answer to call `token`: status, headers (a JSON object) and body.
    #[wasm_bindgen(js_name = onResponse)]
    pub fn on_response(
        &mut self,
        token: u32,
        status: u16,
        headers_json: &str,
        body: &[u8],
        now_ms: f64,
    ) {
        self.host.now = at(now_ms);
        let headers = match serde_json::from_str::<Value>(headers_json) {
            Ok(Value::Object(m)) => m
                .into_iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.to_ascii_lowercase(), s.to_string())))
                .collect(),
            _ => Vec::new(),
        };
        let response = CallResponse {
            status: Some(status),
            headers,
            body: body.to_vec(),
        };
        self.gw.on_call_response(&mut self.host, token, response);
    }

    /// Call `token` got no answer (network error, timeout).
    #[wasm_bindgen(js_name = onFailure)]
    pub fn on_failure(&mut self, token: u32, now_ms: f64) {
        self.host.now = at(now_ms);
        self.gw
            .on_call_response(&mut self.host, token, CallResponse::failed());
    }

    /// Log lines since the last look, as `[{level, message}]` (keys are already redacted).
    #[wasm_bindgen(js_name = takeLogs)]
    pub fn take_logs(&mut self) -> String {
        let lines: Vec<Value> = std::mem::take(&mut *self.host.logs.borrow_mut())
            .into_iter()
            .map(|(level, message)| {
                let level = match level {
                    LogLevel::Trace | LogLevel::Debug => "debug",
                    LogLevel::Info => "info",
                    LogLevel::Warn => "warn",
                    LogLevel::Error => "error",
                };
                json!({"level": level, "message": message})
            })
            .collect();
        Value::Array(lines).to_string()
    }

    /// The conservation counters and every metric, as JSON.
    pub fn counters(&self) -> String {
        let c = self.gw.counters();
        let metrics: Map<String, Value> = self
            .host
            .metrics
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "received": c.received,
            "delivered": c.delivered,
            "duplicates": c.duplicates,
            "rejected": c.rejected,
            "deadLettered": c.dead_lettered,
            "buffered": c.buffered,
            "balanced": c.balanced(),
            "metrics": metrics,
        })
        .to_string()
    }

    /// A one-line summary of the configuration (keys redacted), for the cold-start log.
    pub fn summary(&self) -> String {
        self.gw.config().summary()
    }
}
