//! An API Gateway request as the core reads it: method, path, lower-case headers, source IP.

use aforo_core::gateway::RequestView;
use serde_json::{Map, Value};

/// The request fields the JavaScript handler extracts from an authorizer event.
pub struct LambdaRequest {
    method: String,
    path: String,
    headers: Map<String, Value>,
    source_ip: Option<String>,
}

impl LambdaRequest {
    /// Reads `{"method", "path", "headers": {...}, "sourceIp"}`; names what is missing.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| format!("the request is not JSON: {e}"))?;
        let field = |name: &str| -> Result<String, String> {
            v.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the request lacks {name:?} (a string)"))
        };
        let headers = v
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(LambdaRequest {
            method: field("method")?.to_ascii_uppercase(),
            path: field("path")?,
            headers,
            source_ip: v
                .get("sourceIp")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

impl RequestView for LambdaRequest {
    fn header(&self, name: &str) -> Option<String> {
        match name {
            ":method" => Some(self.method.clone()),
            ":path" => Some(self.path.clone()),
            _ => self
                .headers
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    fn peer_address(&self) -> Option<String> {
        self.source_ip.clone()
    }
}
