//! Runs the Apigee shared flows of `deploy-examples/apigee` the way an Apigee message processor
//! does, for the parts they use: steps with conditions, KeyValueMapOperations, AssignMessage
//! (AssignVariable with a template), Javascript (run by Node.js with a `context` of flow
//! variables), ServiceCallout (with and without `<Response>`), ExtractVariables (JSONPath
//! `$.field`), RaiseFault, and the flow hooks' `continueOnError`. Anything else fails the test,
//! so the examples cannot silently grow a policy this contract does not check.
//!
//! Where Apigee's documentation leaves a behaviour open, the model takes the reading that is
//! worst for the example (`deploy-examples/apigee/SOURCES.md` has the quotes):
//! - a template substitutes a variable's value verbatim (no escaping);
//! - `request.header.NAME` reads only the text before the first comma;
//! - a ServiceCallout answer whose status is outside `success.codes` (default 1xx, 2xx, 3xx)
//!   is a failed callout: with `continueOnError="true"` the flow goes on, with
//!   `servicecallout.NAME.failed = true` and the `<Response>` variable NOT set;
//! - an agent that cannot be reached is a failed callout the same way;
//! - a flow hook with `continueOnError: true` swallows a fault its shared flow raises.

use super::{AgentCall, GatewayRequest, Outcome};
use roxmltree::{Document, Node};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A shared flow bundle: its steps and where its policies are.
pub struct Bundle {
    dir: PathBuf,
    steps: Vec<(String, Option<String>)>,
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text_of(n: Node<'_, '_>, name: &str) -> Option<String> {
    child(n, name).map(|c| c.text().unwrap_or("").trim().to_string())
}

impl Bundle {
    /// Loads `…/sharedflowbundle`: the base file must list every policy the flow uses.
    pub fn load(dir: &Path, name: &str) -> Bundle {
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let base = read(dir.join(format!("{name}.xml")));
        let base = Document::parse(&base).unwrap();
        let listed: Vec<String> = base
            .descendants()
            .filter(|n| n.has_tag_name("Policy"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        let flow = read(dir.join("sharedflows/default.xml"));
        let flow = Document::parse(&flow).unwrap();
        let steps: Vec<(String, Option<String>)> = flow
            .descendants()
            .filter(|n| n.has_tag_name("Step"))
            .map(|s| (text_of(s, "Name").unwrap(), text_of(s, "Condition")))
            .collect();
        for (step, _) in &steps {
            assert!(
                listed.contains(step),
                "{name}: step {step} is not listed in {name}.xml"
            );
            assert!(
                dir.join(format!("policies/{step}.xml")).is_file(),
                "{name}: policies/{step}.xml is missing"
            );
        }
        Bundle {
            dir: dir.to_path_buf(),
            steps,
        }
    }

    fn policy(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("policies/{name}.xml"))).unwrap()
    }
}

/// Flow variables (header names are case-insensitive, as in Apigee).
#[derive(Default)]
struct Vars(HashMap<String, String>);

fn norm(name: &str) -> String {
    match name.split_once(".header.") {
        Some((a, h)) => format!("{a}.header.{}", h.to_ascii_lowercase()),
        None => name.to_string(),
    }
}

impl Vars {
    fn set(&mut self, k: &str, v: impl Into<String>) {
        self.0.insert(norm(k), v.into());
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(&norm(k)).map(String::as_str)
    }
}

/// Resolves a message template (`{var}`, `{firstnonnull(a,b)}`, or a custom prefix/suffix).
fn resolve(
    template: &str,
    prefix: char,
    suffix: char,
    vars: &Vars,
    ignore_unresolved: bool,
) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        let after = &rest[i + prefix.len_utf8()..];
        let Some(j) = after.find(suffix) else {
            out.push_str(&rest[i..]);
            return out;
        };
        let expr = after[..j].trim();
        let value = if let Some(args) = expr
            .strip_prefix("firstnonnull(")
            .and_then(|a| a.strip_suffix(')'))
        {
            args.split(',')
                .find_map(|a| vars.get(a.trim()))
                .map(str::to_string)
        } else {
            assert!(
                !expr.contains('('),
                "template function {expr:?} is not modelled by the contract test"
            );
            vars.get(expr).map(str::to_string)
        };
        match value {
            Some(v) => out.push_str(&v),
            None if ignore_unresolved => {}
            None => panic!("unresolved variable {expr:?} without IgnoreUnresolvedVariables"),
        }
        rest = &after[j + suffix.len_utf8()..];
    }
    out.push_str(rest);
    out
}

// --- Conditions: `(a = 200) and (b != null)`, `x < 400`, `or`, parentheses.

#[derive(Clone, Debug)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn tokenize(s: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if quoted {
            cur.push(c);
            if c == '"' {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' => {
                cur.push(c);
                quoted = true;
            }
            '(' | ')' | ' ' | '\t' | '\n' => {
                if !cur.is_empty() {
                    toks.push(Tok::Word(std::mem::take(&mut cur)));
                }
                if c == '(' {
                    toks.push(Tok::Open);
                } else if c == ')' {
                    toks.push(Tok::Close);
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        toks.push(Tok::Word(cur));
    }
    toks
}

struct Cond<'v> {
    toks: Vec<Tok>,
    at: usize,
    vars: &'v Vars,
}

impl Cond<'_> {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.at) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
    fn or(&mut self) -> bool {
        let mut v = self.and();
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            let r = self.and();
            v = v || r;
        }
        v
    }
    fn and(&mut self) -> bool {
        let mut v = self.atom();
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            let r = self.atom();
            v = v && r;
        }
        v
    }
    fn atom(&mut self) -> bool {
        if matches!(self.toks.get(self.at), Some(Tok::Open)) {
            self.at += 1;
            let v = self.or();
            assert!(
                matches!(self.toks.get(self.at), Some(Tok::Close)),
                "unbalanced condition"
            );
            self.at += 1;
            return v;
        }
        let word = |c: &mut Self| match c.toks.get(c.at).cloned() {
            Some(Tok::Word(w)) => {
                c.at += 1;
                w
            }
            other => panic!("condition: expected a word, got {other:?}"),
        };
        let left = word(self);
        let op = word(self);
        let right = word(self);
        let value = |w: &str| -> Option<String> {
            if w == "null" {
                None
            } else if let Some(s) = w.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(s.to_string())
            } else if w.parse::<f64>().is_ok() {
                Some(w.to_string())
            } else {
                self.vars.get(w).map(str::to_string)
            }
        };
        let (l, r) = (value(&left), value(&right));
        let num = |x: &Option<String>| x.as_deref().and_then(|s| s.parse::<f64>().ok());
        let eq = match (num(&l), num(&r)) {
            (Some(a), Some(b)) => a == b,
            _ => l == r,
        };
        match op.to_ascii_lowercase().as_str() {
            "=" | "==" | "equals" => eq,
            "!=" | "notequals" => !eq,
            "<" | ">" | "<=" | ">=" => match (num(&l), num(&r)) {
                (Some(a), Some(b)) => match op.as_str() {
                    "<" => a < b,
                    ">" => a > b,
                    "<=" => a <= b,
                    _ => a >= b,
                },
                _ => false,
            },
            other => panic!("condition operator {other:?} is not modelled"),
        }
    }
}

fn condition_holds(cond: &str, vars: &Vars) -> bool {
    let mut c = Cond {
        toks: tokenize(cond),
        at: 0,
        vars,
    };
    let v = c.or();
    assert_eq!(c.at, c.toks.len(), "trailing tokens in condition {cond:?}");
    v
}

/// Whether `status` is in a `success.codes` list (`1xx,2xx,3xx,4xx`, or exact codes).
fn status_listed(list: &str, status: u16) -> bool {
    list.split(',').map(str::trim).any(|c| {
        match c.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
            Some(class) => status / 100 == class,
            None => c.parse::<u16>().ok() == Some(status),
        }
    })
}

/// Runs a JavaScript policy under Node.js: `context.getVariable` / `setVariable` over the flow
/// variables (a missing one is `null`, values are strings, as Apigee's are).
fn run_javascript(source: &str, vars: &mut Vars) {
    const SHIM: &str = r#"
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const { vars, source } = JSON.parse(input);
  const norm = (n) => { const i = n.indexOf('.header.'); return i < 0 ? n : n.slice(0, i + 8) + n.slice(i + 8).toLowerCase(); };
  const context = {
    getVariable: (n) => (Object.prototype.hasOwnProperty.call(vars, norm(n)) ? vars[norm(n)] : null),
    setVariable: (n, v) => { vars[norm(n)] = v === null || v === undefined ? null : String(v); },
  };
  new Function('context', source)(context);
  process.stdout.write(JSON.stringify(vars));
});
"#;
    use std::io::Write;
    let mut child = std::process::Command::new("node")
        .args(["-e", SHIM])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("node (Node.js runs the Apigee JavaScript policies; scripts/setup.sh installs it): {e}"));
    let input = serde_json::json!({"vars": vars.0, "source": source}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the JavaScript policy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: HashMap<String, Option<String>> = serde_json::from_slice(&out.stdout).unwrap();
    vars.0 = after
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
}

/// The two shared flows, a KVM, the flow hooks, and the agent they call.
pub struct Apigee {
    agent: String,
    check: Bundle,
    meter: Bundle,
    /// `continueOnError` of the PreProxyFlowHook and PostProxyFlowHook (`flowhooks.json`).
    hooks_continue_on_error: (bool, bool),
    kvm: HashMap<(String, String), String>,
    /// Every call the policies made, in order.
    pub calls: Vec<AgentCall>,
}

impl Apigee {
    /// Loads `deploy-examples/apigee`; `gateway_key` is what the KVM `aforo` holds.
    pub fn load(root: &Path, agent: &str, gateway_key: &str) -> Apigee {
        let mut kvm = HashMap::new();
        kvm.insert(
            ("aforo".into(), "gateway_key".into()),
            gateway_key.to_string(),
        );
        let hooks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("flowhooks.json")).unwrap())
                .unwrap();
        // The flow hook API's default is true ("execution should continue if the flow hook
        // throws an exception").
        let coe = |h: &str| hooks[h]["continueOnError"].as_bool().unwrap_or(true);
        assert_eq!(hooks["PreProxyFlowHook"]["sharedFlow"], "aforo-check");
        assert_eq!(hooks["PostProxyFlowHook"]["sharedFlow"], "aforo-meter");
        Apigee {
            agent: agent.to_string(),
            check: Bundle::load(&root.join("aforo-check/sharedflowbundle"), "aforo-check"),
            meter: Bundle::load(&root.join("aforo-meter/sharedflowbundle"), "aforo-meter"),
            hooks_continue_on_error: (coe("PreProxyFlowHook"), coe("PostProxyFlowHook")),
            kvm,
            calls: Vec::new(),
        }
    }

    /// Points the ServiceCallouts at another address (an agent that is down).
    pub fn set_agent(&mut self, agent: &str) {
        self.agent = agent.to_string();
    }

    /// One request through PreProxyFlowHook → (target answers 200) → PostProxyFlowHook.
    pub fn run(&mut self, req: &GatewayRequest) -> Outcome {
        let mut vars = Vars::default();
        for (k, v) in &req.headers {
            // "If the header contains a comma, upon read you will receive only the segment of
            // the text up to the first comma" (Apigee flow variables reference).
            let first = v.split(',').next().unwrap_or("");
            vars.set(&format!("request.header.{k}"), first.to_string());
        }
        vars.set("client.ip", req.client_ip.clone());
        vars.set("apiproxy.name", req.feature.clone());
        vars.set("messageid", req.request_id.clone());
        vars.set("request.verb", "GET");
        let check = std::mem::replace(
            &mut self.check,
            Bundle {
                dir: PathBuf::new(),
                steps: Vec::new(),
            },
        );
        let fault = self.flow(&check, &mut vars);
        self.check = check;
        if let Some(f) = fault {
            if !self.hooks_continue_on_error.0 {
                return f;
            }
            // Swallowed by the flow hook: the request goes on (the documented default).
        }
        vars.set("response.status.code", "200");
        let meter = std::mem::replace(
            &mut self.meter,
            Bundle {
                dir: PathBuf::new(),
                steps: Vec::new(),
            },
        );
        let fault = self.flow(&meter, &mut vars);
        self.meter = meter;
        assert!(fault.is_none(), "the meter flow raised a fault: {fault:?}");
        Outcome::allowed()
    }

    fn flow(&mut self, bundle: &Bundle, vars: &mut Vars) -> Option<Outcome> {
        for (name, cond) in &bundle.steps {
            if let Some(c) = cond {
                if !condition_holds(c, vars) {
                    continue;
                }
            }
            let xml = bundle.policy(name);
            let doc = Document::parse(&xml).unwrap();
            if let Some(o) = self.policy(&bundle.dir, doc.root_element(), vars) {
                return Some(o);
            }
        }
        None
    }

    fn policy(&mut self, dir: &Path, p: Node<'_, '_>, vars: &mut Vars) -> Option<Outcome> {
        let ignore = text_of(p, "IgnoreUnresolvedVariables").as_deref() == Some("true");
        match p.tag_name().name() {
            "KeyValueMapOperations" => {
                let map = p.attribute("mapIdentifier").unwrap().to_string();
                for get in p.children().filter(|c| c.has_tag_name("Get")) {
                    let to = get.attribute("assignTo").unwrap();
                    let key = get
                        .descendants()
                        .find(|n| n.has_tag_name("Parameter"))
                        .and_then(|n| n.text())
                        .unwrap()
                        .trim()
                        .to_string();
                    let v = self
                        .kvm
                        .get(&(map.clone(), key.clone()))
                        .unwrap_or_else(|| {
                            panic!("KVM {map} has no key {key} in the contract test")
                        });
                    vars.set(to, v.clone());
                }
                None
            }
            "AssignMessage" => {
                for av in p.children().filter(|c| c.has_tag_name("AssignVariable")) {
                    let name = text_of(av, "Name").unwrap();
                    let value = if let Some(t) = text_of(av, "Template") {
                        Some(resolve(&t, '{', '}', vars, ignore))
                    } else if let Some(r) = text_of(av, "Ref") {
                        vars.get(&r).map(str::to_string)
                    } else {
                        text_of(av, "Value")
                    };
                    if let Some(v) = value {
                        vars.set(&name, v);
                    }
                }
                None
            }
            "ServiceCallout" => {
                assert_eq!(
                    p.attribute("continueOnError"),
                    Some("true"),
                    "{}: an agent outage must not fail API calls",
                    p.attribute("name").unwrap_or("")
                );
                let request = child(p, "Request").unwrap();
                let ignore =
                    text_of(request, "IgnoreUnresolvedVariables").as_deref() == Some("true");
                let set = child(request, "Set").unwrap();
                let verb = text_of(set, "Verb").unwrap_or_else(|| "POST".into());
                let headers: Vec<(String, String)> = child(set, "Headers")
                    .map(|h| {
                        h.children()
                            .filter(|c| c.has_tag_name("Header"))
                            .map(|c| {
                                (
                                    c.attribute("name").unwrap().to_string(),
                                    resolve(c.text().unwrap_or(""), '{', '}', vars, ignore),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let payload = child(set, "Payload").unwrap();
                let pre = payload
                    .attribute("variablePrefix")
                    .and_then(|s| s.chars().next())
                    .unwrap_or('{');
                let suf = payload
                    .attribute("variableSuffix")
                    .and_then(|s| s.chars().next())
                    .unwrap_or('}');
                let body = resolve(payload.text().unwrap_or(""), pre, suf, vars, ignore);
                let url = child(p, "HTTPTargetConnection")
                    .and_then(|h| text_of(h, "URL"))
                    .unwrap();
                let name = p.attribute("name").unwrap();
                let success = child(p, "HTTPTargetConnection")
                    .and_then(|h| child(h, "Properties"))
                    .and_then(|ps| {
                        ps.children()
                            .filter(|c| c.has_tag_name("Property"))
                            .find(|c| c.attribute("name") == Some("success.codes"))
                            .map(|c| c.text().unwrap_or("").trim().to_string())
                    })
                    .unwrap_or_else(|| "1xx,2xx,3xx".into());
                let answer = super::try_send(&self.agent, &verb, &url, &headers, &body);
                self.calls.push(AgentCall {
                    method: verb,
                    path: super::path_of(&url),
                    body,
                    status: answer.as_ref().map_or(0, |r| r.status),
                });
                let r = match answer {
                    Some(r) if status_listed(&success, r.status) => r,
                    // No answer, or a status Apigee treats as an error: the callout failed and
                    // the flow goes on (continueOnError), with no response to read.
                    _ => {
                        vars.set(&format!("servicecallout.{name}.failed"), "true");
                        return None;
                    }
                };
                if let Some(var) = text_of(p, "Response") {
                    vars.set(&format!("{var}.status.code"), r.status.to_string());
                    for (k, v) in &r.headers {
                        vars.set(&format!("{var}.header.{k}"), v.clone());
                    }
                    vars.set(
                        &format!("{var}.content"),
                        String::from_utf8_lossy(&r.body).to_string(),
                    );
                }
                None
            }
            "Javascript" => {
                let url = text_of(p, "ResourceURL").unwrap();
                let file = url
                    .strip_prefix("jsc://")
                    .unwrap_or_else(|| panic!("ResourceURL {url} is not jsc://"));
                let source = std::fs::read_to_string(dir.join("resources/jsc").join(file))
                    .unwrap_or_else(|e| panic!("resources/jsc/{file}: {e}"));
                run_javascript(&source, vars);
                None
            }
            "ExtractVariables" => {
                let source = text_of(p, "Source").unwrap();
                let prefix = text_of(p, "VariablePrefix").unwrap();
                let content = vars
                    .get(&format!("{source}.content"))
                    .unwrap_or("")
                    .to_string();
                let json: serde_json::Value = serde_json::from_str(&content).unwrap_or_default();
                for v in child(p, "JSONPayload")
                    .unwrap()
                    .children()
                    .filter(|c| c.has_tag_name("Variable"))
                {
                    let name = v.attribute("name").unwrap();
                    let path = text_of(v, "JSONPath").unwrap();
                    let field = path
                        .strip_prefix("$.")
                        .unwrap_or_else(|| panic!("JSONPath {path} is not modelled"));
                    match &json[field] {
                        serde_json::Value::Null => {}
                        serde_json::Value::String(s) => {
                            vars.set(&format!("{prefix}.{name}"), s.clone())
                        }
                        other => vars.set(&format!("{prefix}.{name}"), other.to_string()),
                    }
                }
                None
            }
            "RaiseFault" => {
                let set = child(child(p, "FaultResponse").unwrap(), "Set").unwrap();
                let status: u16 = text_of(set, "StatusCode").unwrap().parse().unwrap();
                let mut retry_after = None;
                if let Some(h) = child(set, "Headers") {
                    for c in h.children().filter(|c| c.has_tag_name("Header")) {
                        let v = resolve(c.text().unwrap_or(""), '{', '}', vars, ignore);
                        if c.attribute("name")
                            .unwrap()
                            .eq_ignore_ascii_case("retry-after")
                        {
                            retry_after = Some(v);
                        }
                    }
                }
                let payload = resolve(
                    &text_of(set, "Payload").unwrap_or_default(),
                    '{',
                    '}',
                    vars,
                    ignore,
                );
                Some(Outcome::refused(status, payload.as_bytes(), retry_after))
            }
            other => panic!("policy type {other} is not modelled by the contract test"),
        }
    }
}
