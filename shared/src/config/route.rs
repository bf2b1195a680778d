//! Routes: which requests are which feature, which metric they meter, and how much.

use crate::strict_json::{index, short, FieldError, ObjReader};
use serde_json::Value;

/// Names (features, metrics, products) follow the event fields' rule.
pub use crate::validate::is_name;

/// Where the metered quantity of a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantitySource {
    /// A fixed decimal amount per request, such as `1` call.
    Constant(crate::event::Quantity),
    /// Bytes of the request body.
    RequestBytes,
    /// Bytes of the response body.
    ResponseBytes,
    /// A decimal number in a response header (`x-usage-units`).
    ResponseHeader(String),
    /// A number at a JSON pointer in the response body (`/usage/total_tokens`).
    ResponseJson(String),
}

impl QuantitySource {
    /// Whether the quantity is known before the upstream answers (so quota can be reserved).
    pub fn constant_units(&self) -> Option<u64> {
        match self {
            QuantitySource::Constant(q) => {
                let units = q.ceil_units();
                (crate::event::Quantity::from_u64(units) == *q).then_some(units)
            }
            _ => None,
        }
    }

    /// Whether the response body must be read to know the quantity.
    pub fn needs_response_body(&self) -> bool {
        matches!(
            self,
            QuantitySource::ResponseBytes | QuantitySource::ResponseJson(_)
        )
    }
}

/// HTTP method filter of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodMatch {
    /// Any method.
    Any,
    /// Exactly this method (upper case).
    Exact(String),
}

/// One metric a route meters, and where its quantity comes from: each is its own event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meter {
    /// Metric of the usage event recorded after serving.
    pub metric: String,
    /// Where the quantity comes from.
    pub quantity: QuantitySource,
}

/// Most meters one route may have (an LLM call: input, output, cached tokens, …).
pub const MAX_METERS: usize = 8;

/// Most properties one route may read from bodies.
pub const MAX_PROPERTIES: usize = 8;

/// Longest property value kept from a body (a longer string is not stored).
pub const MAX_PROPERTY_BYTES: usize = 256;

/// Property names the gateway writes itself (`estimated` on an estimated quantity).
pub const GATEWAY_PROPERTIES: &[&str] = &[
    "endpoint",
    "method",
    "status",
    "feature",
    "source",
    "key_id",
    "estimated",
    "leased",
];

/// What a route does when a response's JSON quantity never arrives (a stream that ends or is
/// cut off without its usage, a body without the field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMissing {
    /// Refuse the event `quantity_unavailable`, kept as a dead letter to replay (the default).
    DeadLetter,
    /// Bill the request body's bytes instead, with the property `estimated: request_bytes`.
    EstimateRequestBytes,
}

/// Which body a property is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySide {
    /// The request body (the client wrote it: a model it asked for).
    Request,
    /// The response body, or its streamed events (the upstream wrote it).
    Response,
}

/// A property stored on each of the route's events, read from a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// Its name in the event's `properties`.
    pub name: String,
    /// The body it is read from.
    pub from: BodySide,
    /// JSON pointer to a string, number or boolean.
    pub pointer: String,
}

/// One route: method + path prefix → feature, and the metrics it meters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Method filter.
    pub method: MethodMatch,
    /// Path prefix, matched on segment boundaries (`/v1/search` matches `/v1/search/x`, not `/v1/searchx`).
    pub path_prefix: String,
    /// Entitlement feature checked before serving.
    pub feature: String,
    /// What is metered after serving, one event each (never empty); the feature's quota counts
    /// the first.
    pub meters: Vec<Meter>,
    /// Product id for this route's events, overriding the global one.
    pub product_id: Option<String>,
    /// Properties read from the request or response JSON, stored on each event.
    pub properties: Vec<Property>,
    /// A JSON quantity that never arrives: dead letter, or an estimate.
    pub on_missing: OnMissing,
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "*",
];

const ROUTE_FIELDS: &[&str] = &[
    "method",
    "path_prefix",
    "feature",
    "metric",
    "quantity",
    "meters",
    "product_id",
    "properties",
    "on_missing",
];

const PROPERTY_FIELDS: &[&str] = &["from", "pointer"];

const METER_FIELDS: &[&str] = &["metric", "quantity"];

const QUANTITY_FIELDS: &[&str] = &["from", "value", "name", "pointer"];

const QUANTITY_KINDS: &[&str] = &[
    "constant",
    "request_bytes",
    "response_bytes",
    "response_header",
    "response_json",
];

/// What a host's body phases must look at for a request's route (every host asks the same).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyNeeds {
    /// Count request body bytes.
    pub request_bytes: bool,
    /// Keep the request body (a property reads its JSON).
    pub request_json: bool,
    /// Count response body bytes.
    pub response_bytes: bool,
    /// Read the response body (a meter or property reads its JSON).
    pub response_json: bool,
}

impl Route {
    /// The first meter: the one the feature's quota counts (parsing never makes a route
    /// without one, but a route built by hand could have none).
    pub fn first(&self) -> Option<&Meter> {
        self.meters.first()
    }

    /// Whether any meter reads the response body.
    pub fn needs_response_body(&self) -> bool {
        self.meters.iter().any(|m| m.quantity.needs_response_body())
            || self.reads_json(BodySide::Response)
    }

    /// Whether a meter or a property reads a value from `side`'s JSON (so that body is kept,
    /// bounded, or read event by event when streamed).
    pub fn reads_json(&self, side: BodySide) -> bool {
        self.properties.iter().any(|p| p.from == side)
            || (side == BodySide::Response
                && self
                    .meters
                    .iter()
                    .any(|m| matches!(m.quantity, QuantitySource::ResponseJson(_))))
    }

    /// What a host's body phases must look at for this route, decided once per request.
    pub fn body_needs(&self) -> BodyNeeds {
        let has = |q: QuantitySource| self.meters.iter().any(|m| m.quantity == q);
        BodyNeeds {
            // An estimate from the request's size needs it counted.
            request_bytes: has(QuantitySource::RequestBytes)
                || self.on_missing == OnMissing::EstimateRequestBytes,
            request_json: self.reads_json(BodySide::Request),
            response_bytes: has(QuantitySource::ResponseBytes),
            response_json: self.reads_json(BodySide::Response),
        }
    }

    /// The built-in route of a configuration without routes: every request is one unit of
    /// `name`, as feature and metric, so a key alone is enough to meter.
    pub fn every_request(name: &str) -> Route {
        Route {
            method: MethodMatch::Any,
            path_prefix: "/".into(),
            feature: name.into(),
            meters: vec![Meter {
                metric: name.into(),
                quantity: QuantitySource::Constant(crate::event::Quantity::from_u64(1)),
            }],
            product_id: None,
            properties: Vec::new(),
            on_missing: OnMissing::DeadLetter,
        }
    }

    /// Whether this route takes a request with `method` and `path` (query string allowed).
    pub fn matches(&self, method: &str, path: &str) -> bool {
        if let MethodMatch::Exact(m) = &self.method {
            if !m.eq_ignore_ascii_case(method) {
                return false;
            }
        }
        path_has_prefix(path, &self.path_prefix)
    }
}

/// Segment-aware prefix test: the prefix must end at `/`, `?`, `#` or the end of the path.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    if prefix.ends_with('/') {
        return true;
    }
    matches!(
        path.as_bytes().get(prefix.len()),
        None | Some(b'/' | b'?' | b'#')
    )
}

/// Parses the `routes` array.
pub fn parse_routes(path: &str, value: &[Value]) -> Result<Vec<Route>, FieldError> {
    value
        .iter()
        .enumerate()
        .map(|(i, v)| parse_route(&index(path, i), v))
        .collect()
}

fn name_field(r: &ObjReader<'_>, key: &str) -> Result<String, FieldError> {
    let s = r.required_string(key)?;
    if !is_name(s) {
        return Err(FieldError::new(
            r.field_path(key),
            format!("must be 1..=128 letters, digits or _-.: characters, got {s:?}"),
        ));
    }
    Ok(s.to_string())
}

fn parse_route(path: &str, v: &Value) -> Result<Route, FieldError> {
    let r = ObjReader::new(path, v, ROUTE_FIELDS)?;
    let method = match r.string("method")? {
        None | Some("*") => MethodMatch::Any,
        Some(m) => {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(FieldError::new(
                    r.field_path("method"),
                    format!("must be one of {}, got {m:?}", METHODS.join(", ")),
                ));
            }
            MethodMatch::Exact(upper)
        }
    };
    let path_prefix = r.required_string("path_prefix")?.to_string();
    if !path_prefix.starts_with('/') {
        return Err(FieldError::new(
            r.field_path("path_prefix"),
            format!("must start with '/', got {path_prefix:?}"),
        ));
    }
    let feature = name_field(&r, "feature")?;
    let meters = match r.array("meters")? {
        Some(list) => {
            for k in ["metric", "quantity"] {
                if r.get(k).is_some() {
                    return Err(FieldError::new(
                        r.field_path(k),
                        "set either meters or metric and quantity, not both",
                    ));
                }
            }
            parse_meters(&r.field_path("meters"), list)?
        }
        None => vec![parse_meter(&r)?],
    };
    let product_id = r.optional_name("product_id")?;
    Ok(Route {
        method,
        path_prefix,
        feature,
        meters,
        product_id,
        properties: match r.get("properties") {
            None => Vec::new(),
            Some(v) => parse_properties(&r.field_path("properties"), v)?,
        },
        on_missing: match r.choice("on_missing", &["dead_letter", "estimate_request_bytes"])? {
            Some("estimate_request_bytes") => OnMissing::EstimateRequestBytes,
            _ => OnMissing::DeadLetter,
        },
    })
}

fn parse_properties(path: &str, v: &Value) -> Result<Vec<Property>, FieldError> {
    let map = v.as_object().ok_or_else(|| {
        FieldError::new(
            path,
            "must be an object of name → {\"from\": \"request_json\" or \"response_json\", \"pointer\": \"/model\"}",
        )
    })?;
    if map.len() > MAX_PROPERTIES {
        return Err(FieldError::new(
            path,
            format!("at most {MAX_PROPERTIES} properties, got {}", map.len()),
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, pv) in map {
        let p = format!("{path}.{name}");
        if !is_name(name) || GATEWAY_PROPERTIES.contains(&name.as_str()) {
            return Err(FieldError::new(
                &p,
                format!(
                    "a property name must be 1..=128 letters, digits or _-.: characters and not one the gateway writes ({})",
                    GATEWAY_PROPERTIES.join(", ")
                ),
            ));
        }
        let r = ObjReader::new(&p, pv, PROPERTY_FIELDS)?;
        let from = match r.choice("from", &["request_json", "response_json"])? {
            Some("request_json") => BodySide::Request,
            Some(_) => BodySide::Response,
            None => {
                return Err(FieldError::new(
                    r.field_path("from"),
                    "is required: request_json or response_json",
                ))
            }
        };
        let pointer = r.required_string("pointer")?;
        if !pointer.starts_with('/') {
            return Err(FieldError::new(
                r.field_path("pointer"),
                format!("must be a JSON pointer such as /model, got {pointer:?}"),
            ));
        }
        out.push(Property {
            name: name.clone(),
            from,
            pointer: pointer.to_string(),
        });
    }
    Ok(out)
}

fn parse_meter(r: &ObjReader<'_>) -> Result<Meter, FieldError> {
    let metric = name_field(r, "metric")?;
    let quantity = match r.get("quantity") {
        None => QuantitySource::Constant(crate::event::Quantity::ONE),
        Some(q) => parse_quantity(&r.field_path("quantity"), q)?,
    };
    Ok(Meter { metric, quantity })
}

fn parse_meters(path: &str, list: &[Value]) -> Result<Vec<Meter>, FieldError> {
    if list.is_empty() || list.len() > MAX_METERS {
        return Err(FieldError::new(
            path,
            format!("must list 1..={MAX_METERS} meters, got {}", list.len()),
        ));
    }
    let mut meters: Vec<Meter> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let p = index(path, i);
        let r = ObjReader::new(&p, v, METER_FIELDS)?;
        let m = parse_meter(&r)?;
        if meters.iter().any(|o| o.metric == m.metric) {
            return Err(FieldError::new(
                r.field_path("metric"),
                format!(
                    "{:?} is metered twice on this route: one meter per metric",
                    m.metric
                ),
            ));
        }
        meters.push(m);
    }
    Ok(meters)
}

fn parse_quantity(path: &str, v: &Value) -> Result<QuantitySource, FieldError> {
    match v {
        Value::String(_) | Value::Number(_) => constant(path, v),
        _ => {
            let r = ObjReader::new(path, v, QUANTITY_FIELDS)?;
            let kind = r.choice("from", QUANTITY_KINDS)?.ok_or_else(|| {
                FieldError::new(
                    r.field_path("from"),
                    format!("is required: one of {}", QUANTITY_KINDS.join(", ")),
                )
            })?;
            let only = |allowed: &[&str]| -> Result<(), FieldError> {
                for k in QUANTITY_FIELDS {
                    if *k != "from" && !allowed.contains(k) && r.get(k).is_some() {
                        return Err(FieldError::new(
                            r.field_path(k),
                            format!("is not used when from is {kind:?}"),
                        ));
                    }
                }
                Ok(())
            };
            match kind {
                "constant" => {
                    only(&["value"])?;
                    let val = r.get("value").ok_or_else(|| {
                        FieldError::new(
                            r.field_path("value"),
                            "is required for a constant quantity",
                        )
                    })?;
                    constant(&r.field_path("value"), val)
                }
                "request_bytes" => only(&[]).map(|_| QuantitySource::RequestBytes),
                "response_bytes" => only(&[]).map(|_| QuantitySource::ResponseBytes),
                "response_header" => {
                    only(&["name"])?;
                    let name = r.required_string("name")?;
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err(FieldError::new(
                            r.field_path("name"),
                            format!("must be a header name, got {name:?}"),
                        ));
                    }
                    Ok(QuantitySource::ResponseHeader(name.to_ascii_lowercase()))
                }
                _ => {
                    only(&["pointer"])?;
                    let p = r.required_string("pointer")?;
                    if !p.starts_with('/') {
                        return Err(FieldError::new(
                            r.field_path("pointer"),
                            format!("must be a JSON pointer starting with '/', got {p:?}"),
                        ));
                    }
                    Ok(QuantitySource::ResponseJson(p.to_string()))
                }
            }
        }
    }
}

fn constant(path: &str, v: &Value) -> Result<QuantitySource, FieldError> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(FieldError::new(
                path,
                format!("must be a decimal >= 0, got {}", short(other)),
            ))
        }
    };
    match crate::event::Quantity::parse(&text) {
        Ok(q) => Ok(QuantitySource::Constant(q)),
        Err(e) => Err(FieldError::new(path, e.to_string())),
    }
}

/// Inclusive ranges of upstream statuses that are billable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    /// Parses `200-399` or `200-299,304`.
    pub fn parse(path: &str, text: &str) -> Result<Self, FieldError> {
        let bad = || {
            FieldError::new(
                path,
                format!("must be status ranges like 200-299,304 (100..=599), got {text:?}"),
            )
        };
        let mut out = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
                return Err(bad());
            }
            out.push((a, b));
        }
        if out.is_empty() {
            return Err(bad());
        }
        Ok(StatusRanges(out))
    }

    /// Whether `status` is billable.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(path_has_prefix("/v1/search", "/v1/search"));
        assert!(path_has_prefix("/v1/search/x", "/v1/search"));
        assert!(path_has_prefix("/v1/search?q=1", "/v1/search"));
        assert!(!path_has_prefix("/v1/searchx", "/v1/search"));
        assert!(path_has_prefix("/anything", "/"));
        assert!(path_has_prefix("/v1/a", "/v1/"));
    }

    #[test]
    fn routes_parse_with_every_quantity_source() {
        let v = json!([
            {"method": "get", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"path_prefix": "/v1/chat", "feature": "llm", "metric": "tokens",
             "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"}},
            {"path_prefix": "/v1/upload", "feature": "upload", "metric": "bytes", "quantity": {"from": "request_bytes"}},
            {"path_prefix": "/v1/h", "feature": "h", "metric": "units", "quantity": {"from": "response_header", "name": "X-Units"}},
            {"path_prefix": "/v1/c", "feature": "c", "metric": "units", "quantity": 2.5}
        ]);
        let routes = parse_routes("routes", v.as_array().unwrap()).unwrap();
        assert_eq!(routes[0].method, MethodMatch::Exact("GET".into()));
        assert_eq!(
            routes[0].first().unwrap().quantity,
            QuantitySource::Constant(crate::event::Quantity::ONE)
        );
        assert_eq!(
            routes[0].first().unwrap().quantity.constant_units(),
            Some(1)
        );
        assert_eq!(
            routes[1].first().unwrap().quantity,
            QuantitySource::ResponseJson("/usage/total_tokens".into())
        );
        assert_eq!(
            routes[2].first().unwrap().quantity,
            QuantitySource::RequestBytes
        );
        assert_eq!(
            routes[3].first().unwrap().quantity,
            QuantitySource::ResponseHeader("x-units".into())
        );
        assert_eq!(
            routes[4].first().unwrap().quantity.to_owned(),
            QuantitySource::Constant(crate::event::Quantity::parse("2.5").unwrap())
        );
        assert_eq!(routes[4].first().unwrap().quantity.constant_units(), None);
    }

    #[test]
    fn route_errors_name_the_path() {
        let cases = [
            (
                json!([{"path_prefix": "v1", "feature": "f", "metric": "m"}]),
                "routes[0].path_prefix",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "f", "metric": "m", "method": "FETCH"}]),
                "routes[0].method",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "", "metric": "m"}]),
                "routes[0].feature",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "f", "metric": "m", "quantity": -1}]),
                "routes[0].quantity",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "f", "metric": "m", "quantity": {"from": "response_json"}}]),
                "routes[0].quantity.pointer",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "f", "metric": "m", "quantity": {"from": "request_bytes", "pointer": "/x"}}]),
                "routes[0].quantity.pointer",
            ),
            (
                json!([{}, {"path_prefix": "/a", "feature": "f", "metric": "m", "featur": 1}]),
                "routes[0].path_prefix",
            ),
            (
                json!([{"path_prefix": "/a", "feature": "f", "metric": "m", "featur": 1}]),
                "routes[0].featur",
            ),
        ];
        for (v, path) in cases {
            let e = parse_routes("routes", v.as_array().unwrap()).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
    }

    #[test]
    fn status_ranges() {
        let r = StatusRanges::parse("billable_status", "200-299, 304").unwrap();
        assert!(r.contains(200) && r.contains(299) && r.contains(304));
        assert!(!r.contains(300) && !r.contains(500));
        for bad in ["", "abc", "300-200", "99", "200-600"] {
            assert!(
                StatusRanges::parse("billable_status", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_route_meters_several_metrics_or_says_what_is_wrong() {
        let ok = json!([{"path_prefix": "/v1/chat", "feature": "chat", "meters": [
            {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/usage/prompt_tokens"}},
            {"metric": "requests"}
        ]}]);
        let routes = parse_routes("routes", ok.as_array().unwrap()).unwrap();
        assert_eq!(routes[0].meters.len(), 2);
        assert_eq!(routes[0].first().unwrap().metric, "input_tokens");
        assert!(routes[0].needs_response_body());
        assert_eq!(routes[0].meters[1].quantity.constant_units(), Some(1));
        for (route, path, text) in [
            (
                json!({"path_prefix": "/", "feature": "f", "metric": "m", "meters": [{"metric": "a"}]}),
                "routes[0].metric",
                "not both",
            ),
            (
                json!({"path_prefix": "/", "feature": "f", "meters": []}),
                "routes[0].meters",
                "1..=8",
            ),
            (
                json!({"path_prefix": "/", "feature": "f", "meters": [{"metric": "a"}, {"metric": "a"}]}),
                "routes[0].meters[1].metric",
                "twice",
            ),
            (
                json!({"path_prefix": "/", "feature": "f", "meters": [{"metric": "a", "pointer": "/x"}]}),
                "routes[0].meters[0].pointer",
                "unknown",
            ),
            (
                json!({"path_prefix": "/", "feature": "f", "meters": [{"quantity": "2"}]}),
                "routes[0].meters[0].metric",
                "required",
            ),
        ] {
            let e = parse_routes("routes", std::slice::from_ref(&route)).unwrap_err();
            assert_eq!(e.path, path, "{route} → {e}");
            assert!(e.to_string().contains(text), "{route} → {e}");
        }
    }
}
