//! Interpreters for the gateway policies in `deploy-examples` (Apigee shared flows, APIM policy
//! fragments, the Kong Lua plugin): each turns one table case into the HTTP calls the policy
//! makes to the agent and into the answer the client gets.

#![allow(dead_code)]

pub mod apigee;
pub mod apim;
pub mod kong;

use aforo_host_tests::http1::{Client, Response};

/// What the client of the gateway sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    /// `allowed` or the error code of the JSON body.
    pub decision: String,
    pub retry_after: Option<String>,
}

impl Outcome {
    pub fn allowed() -> Outcome {
        Outcome {
            status: 200,
            decision: "allowed".into(),
            retry_after: None,
        }
    }

    pub fn refused(status: u16, body: &[u8], retry_after: Option<String>) -> Outcome {
        let code = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("no error code in {:?}", String::from_utf8_lossy(body)));
        Outcome {
            status,
            decision: code,
            retry_after: retry_after.filter(|s| !s.is_empty()),
        }
    }
}

/// One request of a case, as the gateway sees it.
pub struct GatewayRequest {
    pub headers: Vec<(String, String)>,
    pub client_ip: String,
    pub feature: String,
    pub request_id: String,
}

/// A call a policy made to the agent, and the answer.
#[derive(Debug)]
pub struct AgentCall {
    pub method: String,
    pub path: String,
    pub body: String,
    pub status: u16,
}

/// The path of a policy's URL (`http://host:port/v1/x` → `/v1/x`): the test sends it to the
/// agent it started, wherever the example points.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".into(),
    }
}

/// Sends one policy-made request to the agent.
pub fn send(
    agent_addr: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> Response {
    Client::new(agent_addr)
        .request(method, &path_of(url), headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Sends one policy-made request; `None` when the agent cannot be reached (a gateway's failed
/// callout).
pub fn try_send(
    agent_addr: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> Option<Response> {
    Client::new(agent_addr)
        .request(method, &path_of(url), headers, body.as_bytes())
        .ok()
}
