//! Runs the Azure APIM policy fragments of `deploy-examples/azure-apim` for the parts they use:
//! `set-variable`, `send-request`, `send-one-way-request`, `choose`/`when`, `return-response`,
//! `{{named values}}`, and a small evaluator for the C# policy expressions they contain
//! (`context.Request…`, `context.Variables.GetValueOrDefault<T>(…)`, `IResponse` status, headers
//! and body, `new JObject(new JProperty(…))`, `==`, `!=`, `<`, `&&`). An expression outside
//! that model fails the test, so an example cannot drift out of what this contract checks.

use super::{send, AgentCall, GatewayRequest, Outcome};
use roxmltree::{Document, Node};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::path::Path;

/// An answer `send-request` stored in a variable.
#[derive(Clone, Debug)]
struct AgentResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// A value of the expression language, as far as the fragments use it.
#[derive(Clone, Debug)]
enum Val {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Json(Json),
    Resp(AgentResponse),
    Context,
    /// The `string` type, for `string.IsNullOrEmpty(…)`.
    StringType,
    Variables,
    Request,
    Response,
    Api,
    Headers(Vec<(String, String)>),
    Body(AgentResponse),
    JObject(Map<String, Json>),
    JProperty(String, Json),
}

impl Val {
    fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Num(n) => Json::from(*n),
            Val::Str(s) => Json::String(s.clone()),
            Val::Json(j) => j.clone(),
            Val::JObject(m) => Json::Object(m.clone()),
            other => panic!("{other:?} cannot go into a JSON body"),
        }
    }
    fn as_string(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Str(s) => Some(s.clone()),
            Val::Num(n) => Some(n.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            Val::Json(Json::String(s)) => Some(s.clone()),
            Val::Json(Json::Null) => None,
            Val::Json(j) => Some(j.to_string()),
            Val::JObject(m) => Some(Json::Object(m.clone()).to_string()),
            other => panic!("{other:?} is not a string"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum T {
    Ident(String),
    Str(String),
    Num(i64),
    P(&'static str),
}

fn lex(s: &str) -> Vec<T> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    const PUNCT: [&str; 16] = [
        "&&", "||", "==", "!=", "<=", ">=", "??", "?.", ".", "(", ")", "[", "]", ",", "<", ">",
    ];
    'outer: while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
            continue;
        }
        if ch == '"' {
            let mut j = i + 1;
            let mut lit = String::new();
            while j < c.len() && c[j] != '"' {
                if c[j] == '\\' && j + 1 < c.len() {
                    j += 1;
                }
                lit.push(c[j]);
                j += 1;
            }
            out.push(T::Str(lit));
            i = j + 1;
            continue;
        }
        if ch.is_ascii_digit() {
            let mut j = i;
            while j < c.len() && c[j].is_ascii_digit() {
                j += 1;
            }
            out.push(T::Num(c[i..j].iter().collect::<String>().parse().unwrap()));
            i = j;
            continue;
        }
        if ch.is_alphanumeric() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            out.push(T::Ident(c[i..j].iter().collect()));
            i = j;
            continue;
        }
        for p in PUNCT {
            let pc: Vec<char> = p.chars().collect();
            if c[i..].starts_with(&pc) {
                out.push(T::P(p));
                i += pc.len();
                continue 'outer;
            }
        }
        if ch == ':' || ch == '!' {
            out.push(T::P(if ch == ':' { ":" } else { "!" }));
            i += 1;
            continue;
        }
        panic!("APIM expression: unexpected {ch:?} in {s:?}");
    }
    out
}

/// The state one request's policies see.
pub struct Ctx<'a> {
    req: &'a GatewayRequest,
    api_name: String,
    response_status: u16,
    vars: HashMap<String, Val>,
}

struct Parser<'c, 'a> {
    t: Vec<T>,
    at: usize,
    ctx: &'c Ctx<'a>,
    src: String,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&T> {
        self.t.get(self.at)
    }
    fn eat(&mut self, p: &'static str) -> bool {
        if self.peek() == Some(&T::P(p)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &'static str) {
        assert!(
            self.eat(p),
            "APIM expression {:?}: expected {p} at token {}",
            self.src,
            self.at
        );
    }
    fn ident(&mut self) -> String {
        match self.t.get(self.at).cloned() {
            Some(T::Ident(s)) => {
                self.at += 1;
                s
            }
            other => panic!(
                "APIM expression {:?}: expected a name, got {other:?}",
                self.src
            ),
        }
    }

    fn or(&mut self) -> Val {
        let mut v = self.and();
        while self.eat("||") {
            let r = self.and();
            v = Val::Bool(truthy(&v) || truthy(&r));
        }
        v
    }
    fn and(&mut self) -> Val {
        let mut v = self.cmp();
        while self.eat("&&") {
            let r = self.cmp();
            v = Val::Bool(truthy(&v) && truthy(&r));
        }
        v
    }
    fn cmp(&mut self) -> Val {
        let l = self.coalesce();
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.eat(op) {
                let r = self.coalesce();
                return Val::Bool(compare(&l, op, &r));
            }
        }
        l
    }
    fn coalesce(&mut self) -> Val {
        let l = self.unary();
        if self.eat("??") {
            let r = self.unary();
            return if matches!(l, Val::Null) { r } else { l };
        }
        l
    }
    fn unary(&mut self) -> Val {
        if self.eat("!") {
            let v = self.unary();
            return Val::Bool(!truthy(&v));
        }
        // A cast: (string)expr
        if self.peek() == Some(&T::P("(")) {
            if let (Some(T::Ident(ty)), Some(T::P(")"))) =
                (self.t.get(self.at + 1), self.t.get(self.at + 2))
            {
                if ty == "string" {
                    self.at += 3;
                    let v = self.unary();
                    return v.as_string().map_or(Val::Null, Val::Str);
                }
            }
            self.at += 1;
            let v = self.or();
            self.expect(")");
            return self.postfix(v);
        }
        let v = self.primary();
        self.postfix(v)
    }
    fn primary(&mut self) -> Val {
        match self.t.get(self.at).cloned() {
            Some(T::Str(s)) => {
                self.at += 1;
                Val::Str(s)
            }
            Some(T::Num(n)) => {
                self.at += 1;
                Val::Num(n)
            }
            Some(T::Ident(id)) => {
                self.at += 1;
                match id.as_str() {
                    "context" => Val::Context,
                    "string" => Val::StringType,
                    "true" => Val::Bool(true),
                    "false" => Val::Bool(false),
                    "null" => Val::Null,
                    "new" => {
                        let ty = self.ident();
                        let args = self.args();
                        match ty.as_str() {
                            "JObject" => {
                                let mut m = Map::new();
                                for a in args {
                                    match a {
                                        Val::JProperty(k, v) => {
                                            m.insert(k, v);
                                        }
                                        other => panic!("JObject of {other:?}"),
                                    }
                                }
                                Val::JObject(m)
                            }
                            "JProperty" => {
                                let name = args[0].as_string().unwrap();
                                Val::JProperty(name, args[1].to_json())
                            }
                            other => panic!("new {other} is not modelled"),
                        }
                    }
                    other => panic!("APIM expression {:?}: {other} is not modelled", self.src),
                }
            }
            other => panic!("APIM expression {:?}: unexpected {other:?}", self.src),
        }
    }
    /// Call arguments; named arguments (`preserveContent: true`) are accepted and ignored.
    fn args(&mut self) -> Vec<Val> {
        self.expect("(");
        let mut out = Vec::new();
        if self.eat(")") {
            return out;
        }
        loop {
            if let (Some(T::Ident(_)), Some(T::P(":"))) =
                (self.t.get(self.at), self.t.get(self.at + 1))
            {
                self.at += 2;
                let _ = self.or();
            } else {
                out.push(self.or());
            }
            if self.eat(")") {
                return out;
            }
            self.expect(",");
        }
    }
    /// A generic argument list right after a method name: `<string>`, `<IResponse>`, `<JObject>`.
    fn generic(&mut self) -> Option<String> {
        if let (Some(T::P("<")), Some(T::Ident(t)), Some(T::P(">"))) = (
            self.t.get(self.at),
            self.t.get(self.at + 1),
            self.t.get(self.at + 2),
        ) {
            let t = t.clone();
            self.at += 3;
            return Some(t);
        }
        None
    }
    fn postfix(&mut self, mut v: Val) -> Val {
        loop {
            if self.eat(".") || self.eat("?.") {
                let name = self.ident();
                let generic = self.generic();
                if self.peek() == Some(&T::P("(")) {
                    let args = self.args();
                    v = self.call(v, &name, generic.as_deref(), args);
                } else {
                    v = self.member(v, &name);
                }
            } else if self.eat("[") {
                let k = self.or();
                self.expect("]");
                let k = k.as_string().unwrap();
                v = match v {
                    Val::Json(j) => Val::Json(j[k.as_str()].clone()),
                    Val::Variables => self
                        .ctx
                        .vars
                        .get(&k)
                        .cloned()
                        .unwrap_or_else(|| panic!("variable {k} is not set")),
                    other => panic!("indexing {other:?} is not modelled"),
                };
            } else {
                return v;
            }
        }
    }
    fn member(&self, v: Val, name: &str) -> Val {
        match (v, name) {
            (Val::Null, _) => Val::Null,
            (Val::Context, "Variables") => Val::Variables,
            (Val::Context, "Request") => Val::Request,
            (Val::Context, "Response") => Val::Response,
            (Val::Context, "Api") => Val::Api,
            (Val::Context, "RequestId") => Val::Str(self.ctx.req.request_id.clone()),
            (Val::Api, "Name") => Val::Str(self.ctx.api_name.clone()),
            (Val::Request, "Headers") => Val::Headers(self.ctx.req.headers.clone()),
            (Val::Request, "IpAddress") => Val::Str(self.ctx.req.client_ip.clone()),
            (Val::Response, "StatusCode") => Val::Num(i64::from(self.ctx.response_status)),
            (Val::Resp(r), "StatusCode") => Val::Num(i64::from(r.status)),
            (Val::Resp(r), "Headers") => Val::Headers(r.headers.clone()),
            (Val::Resp(r), "Body") => Val::Body(r),
            (other, n) => panic!("{other:?}.{n} is not modelled"),
        }
    }
    fn call(&self, v: Val, name: &str, generic: Option<&str>, args: Vec<Val>) -> Val {
        match (v, name) {
            (Val::StringType, "IsNullOrEmpty") => {
                Val::Bool(args[0].as_string().is_none_or(|s| s.is_empty()))
            }
            (Val::Null, _) => Val::Null,
            (Val::Variables, "GetValueOrDefault") => {
                let k = args[0].as_string().unwrap();
                match self.ctx.vars.get(&k) {
                    Some(v) => {
                        if generic == Some("IResponse") {
                            assert!(
                                matches!(v, Val::Resp(_) | Val::Null),
                                "{k} is not an IResponse"
                            );
                        }
                        v.clone()
                    }
                    None => args.get(1).cloned().unwrap_or(Val::Null),
                }
            }
            (Val::Variables, "ContainsKey") => {
                Val::Bool(self.ctx.vars.contains_key(&args[0].as_string().unwrap()))
            }
            // "Returns comma-separated request header values or defaultValue if the header is
            // not found" (APIM policy expressions reference).
            (Val::Headers(h), "GetValueOrDefault") => {
                let k = args[0].as_string().unwrap();
                let values: Vec<&str> = h
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(&k))
                    .map(|(_, v)| v.as_str())
                    .collect();
                if values.is_empty() {
                    args.get(1).cloned().unwrap_or(Val::Null)
                } else {
                    Val::Str(values.join(","))
                }
            }
            (Val::Body(r), "As") => match generic {
                Some("string") => Val::Str(r.body.clone()),
                Some("JObject") => Val::Json(serde_json::from_str(&r.body).unwrap_or(Json::Null)),
                other => panic!("Body.As<{other:?}> is not modelled"),
            },
            (Val::JObject(m), "ToString") => Val::Str(Json::Object(m).to_string()),
            (Val::Str(s), "ToString") => Val::Str(s),
            (other, n) => panic!("{other:?}.{n}(…) is not modelled"),
        }
    }
}

fn truthy(v: &Val) -> bool {
    match v {
        Val::Bool(b) => *b,
        other => panic!("{other:?} is not a boolean"),
    }
}

fn compare(l: &Val, op: &str, r: &Val) -> bool {
    let num = |v: &Val| match v {
        Val::Num(n) => Some(*n),
        _ => None,
    };
    match op {
        "==" | "!=" => {
            let eq = match (l, r) {
                (Val::Null, Val::Null) => true,
                (Val::Null, _) | (_, Val::Null) => false,
                _ => match (num(l), num(r)) {
                    (Some(a), Some(b)) => a == b,
                    _ => l.as_string() == r.as_string(),
                },
            };
            (op == "==") == eq
        }
        _ => match (num(l), num(r)) {
            (Some(a), Some(b)) => match op {
                "<" => a < b,
                ">" => a > b,
                "<=" => a <= b,
                _ => a >= b,
            },
            _ => false,
        },
    }
}

impl Ctx<'_> {
    fn eval(&self, src: &str) -> Val {
        let mut p = Parser {
            t: lex(src),
            at: 0,
            ctx: self,
            src: src.to_string(),
        };
        let v = p.or();
        assert_eq!(p.at, p.t.len(), "APIM expression {src:?}: trailing tokens");
        v
    }

    /// A policy value: a literal, or `@(expression)`, after `{{named value}}` substitution.
    fn value(&self, raw: &str, named: &HashMap<String, String>) -> Val {
        let mut s = raw.trim().to_string();
        while let Some(i) = s.find("{{") {
            let j = s[i..].find("}}").map(|j| i + j).unwrap();
            let name = &s[i + 2..j];
            let v = named
                .get(name)
                .unwrap_or_else(|| panic!("named value {name} is not set"));
            s = format!("{}{}{}", &s[..i], v, &s[j + 2..]);
        }
        match s.strip_prefix("@(").and_then(|e| e.strip_suffix(')')) {
            Some(expr) => self.eval(expr),
            None => Val::Str(s),
        }
    }
}

/// The two fragments, the named values, and the agent they call.
pub struct Apim {
    agent: String,
    inbound: String,
    outbound: String,
    named: HashMap<String, String>,
    /// Every call the fragments made, in order.
    pub calls: Vec<AgentCall>,
}

/// APIM accepts policy expressions with raw `"`, `<` and `&&` inside attributes and text (it
/// reads `@(…)` before the XML); escape them so a strict XML parser reads the file.
fn escape_expressions(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find("@(") {
        out.push_str(&rest[..i]);
        let expr = &rest[i..];
        let mut depth = 0usize;
        let mut in_str = false;
        let mut end = expr.len();
        for (j, ch) in expr.char_indices().skip(1) {
            match ch {
                '"' => in_str = !in_str,
                '(' if !in_str => depth += 1,
                ')' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        for ch in expr[..end].chars() {
            match ch {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            }
        }
        rest = &expr[end..];
    }
    out.push_str(rest);
    out
}

fn kids<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

impl Apim {
    /// Loads `deploy-examples/azure-apim`, with the named values the fragments use.
    pub fn load(root: &Path, agent: &str, gateway_key: &str) -> Apim {
        let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
        let mut named = HashMap::new();
        named.insert("aforo-agent-url".to_string(), format!("http://{agent}"));
        named.insert("aforo-gateway-key".to_string(), gateway_key.to_string());
        Apim {
            agent: agent.to_string(),
            inbound: escape_expressions(&read("fragments/aforo-check.xml")),
            outbound: escape_expressions(&read("fragments/aforo-meter.xml")),
            named,
            calls: Vec::new(),
        }
    }

    /// One request: inbound fragment → (backend answers 200) → outbound fragment. `customer`
    /// is what an earlier policy put in `aforo-customer-id`.
    pub fn run(&mut self, req: &GatewayRequest, customer: Option<&str>) -> Outcome {
        let mut ctx = Ctx {
            req,
            api_name: req.feature.clone(),
            response_status: 200,
            vars: HashMap::new(),
        };
        if let Some(c) = customer {
            ctx.vars
                .insert("aforo-customer-id".into(), Val::Str(c.to_string()));
        }
        let inbound = self.inbound.clone();
        let doc = Document::parse(&inbound).unwrap();
        if let Some(o) = self.block(doc.root_element(), &mut ctx) {
            return o;
        }
        let outbound = self.outbound.clone();
        let doc = Document::parse(&outbound).unwrap();
        let o = self.block(doc.root_element(), &mut ctx);
        assert!(
            o.is_none(),
            "the outbound fragment returned a response: {o:?}"
        );
        Outcome::allowed()
    }

    fn block(&mut self, n: Node<'_, '_>, ctx: &mut Ctx<'_>) -> Option<Outcome> {
        for el in kids(n) {
            match el.tag_name().name() {
                "set-variable" => {
                    let v = ctx.value(el.attribute("value").unwrap(), &self.named);
                    ctx.vars
                        .insert(el.attribute("name").unwrap().to_string(), v);
                }
                "send-request" | "send-one-way-request" => {
                    let mut url = String::new();
                    let mut method = "GET".to_string();
                    let mut headers = Vec::new();
                    let mut body = String::new();
                    for c in kids(el) {
                        let text = c.text().unwrap_or("");
                        match c.tag_name().name() {
                            "set-url" => url = ctx.value(text, &self.named).as_string().unwrap(),
                            "set-method" => method = text.trim().to_string(),
                            "set-header" => {
                                for v in kids(c) {
                                    let value = ctx.value(v.text().unwrap_or(""), &self.named);
                                    headers.push((
                                        c.attribute("name").unwrap().to_string(),
                                        value.as_string().unwrap_or_default(),
                                    ));
                                }
                            }
                            "set-body" => {
                                body = ctx.value(text, &self.named).as_string().unwrap_or_default()
                            }
                            other => panic!("{other} in {} is not modelled", el.tag_name().name()),
                        }
                    }
                    let r = send(&self.agent, &method, &url, &headers, &body);
                    self.calls.push(AgentCall {
                        method,
                        path: super::path_of(&url),
                        body,
                        status: r.status,
                    });
                    if el.tag_name().name() == "send-request" {
                        assert_eq!(
                            el.attribute("ignore-error"),
                            Some("true"),
                            "an agent outage must not fail API calls"
                        );
                        let var = el.attribute("response-variable-name").unwrap();
                        ctx.vars.insert(
                            var.to_string(),
                            Val::Resp(AgentResponse {
                                status: r.status,
                                headers: r.headers.clone(),
                                body: String::from_utf8_lossy(&r.body).to_string(),
                            }),
                        );
                    }
                }
                "choose" => {
                    for branch in kids(el) {
                        let take = match branch.tag_name().name() {
                            "when" => truthy(
                                &ctx.value(branch.attribute("condition").unwrap(), &self.named),
                            ),
                            "otherwise" => true,
                            other => panic!("{other} in choose"),
                        };
                        if take {
                            if let Some(o) = self.block(branch, ctx) {
                                return Some(o);
                            }
                            break;
                        }
                    }
                }
                "return-response" => {
                    let mut status = 200;
                    let mut retry_after = None;
                    let mut body = String::new();
                    for c in kids(el) {
                        match c.tag_name().name() {
                            "set-status" => status = c.attribute("code").unwrap().parse().unwrap(),
                            "set-header" => {
                                let v: Vec<String> = kids(c)
                                    .filter_map(|v| {
                                        ctx.value(v.text().unwrap_or(""), &self.named).as_string()
                                    })
                                    .collect();
                                if c.attribute("name")
                                    .unwrap()
                                    .eq_ignore_ascii_case("retry-after")
                                {
                                    retry_after = v.first().cloned();
                                }
                            }
                            "set-body" => {
                                body = ctx
                                    .value(c.text().unwrap_or(""), &self.named)
                                    .as_string()
                                    .unwrap_or_default()
                            }
                            other => panic!("{other} in return-response is not modelled"),
                        }
                    }
                    return Some(Outcome::refused(status, body.as_bytes(), retry_after));
                }
                other => panic!("APIM policy {other} is not modelled by the contract test"),
            }
        }
        None
    }
}
