//! A strict reader for JSON objects: every error names the field's path and what is allowed,
//! and unknown fields are refused with a suggestion, so a typo never passes silently.

use serde_json::{Map, Value};
use std::fmt;

/// A refused field: where it is (`charges[1].tiers[2].up_to`) and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, or the environment variable it came from.
    pub path: String,
    /// What is allowed, and what was found.
    pub message: String,
}

impl FieldError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// Joins a parent path and a field name (`routes[0]` + `method`).
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a parent path and an array index (`charges` + 1).
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Describes a JSON value for "got …" in messages, without dumping large values.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let cut: String = s.chars().take(40).collect();
            format!("the string {:?}…", cut)
        }
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// Reads the fields of one JSON object, tracking which were used.
pub struct ObjReader<'a> {
    path: String,
    map: &'a Map<String, Value>,
    allowed: &'static [&'static str],
}

impl<'a> ObjReader<'a> {
    /// Starts reading `value`, which must be an object whose keys are all in `allowed`.
    pub fn new(
        path: &str,
        value: &'a Value,
        allowed: &'static [&'static str],
    ) -> Result<Self, FieldError> {
        let map = value.as_object().ok_or_else(|| {
            FieldError::new(path, format!("must be an object, got {}", describe(value)))
        })?;
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(unknown_field(path, key, allowed));
            }
        }
        Ok(ObjReader {
            path: path.to_string(),
            map,
            allowed,
        })
    }

    /// The path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of one of its fields.
    pub fn field_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A field's raw value; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(self.allowed.contains(&key), "field {key} not declared");
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// An optional string field.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.type_error(key, "a string", v)),
        }
    }

    /// A required string field.
    pub fn required_string(&self, key: &str) -> Result<&'a str, FieldError> {
        self.string(key)?
            .ok_or_else(|| FieldError::new(self.field_path(key), "is required"))
    }

    /// An optional identifier-like name (`product_id`): letters, digits, `_ - . :`,
    /// 1..=128 bytes, as event fields are (an empty string is refused).
    pub fn optional_name(&self, key: &str) -> Result<Option<String>, FieldError> {
        match self.non_empty_string(key)? {
            Some(n) if crate::validate::is_name(n) => Ok(Some(n.to_string())),
            Some(n) => Err(FieldError::new(
                self.field_path(key),
                format!("must be 1..=128 letters, digits or _-.: characters, got {n:?}"),
            )),
            None => Ok(None),
        }
    }

    /// An optional non-empty string field.
    pub fn non_empty_string(&self, key: &str) -> Result<Option<&'a str>, FieldError> {
        match self.string(key)? {
            Some(s) if s.trim().is_empty() => {
                Err(FieldError::new(self.field_path(key), "must not be empty"))
            }
            other => Ok(other),
        }
    }

    /// An optional boolean field.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_error(key, "true or false", v)),
        }
    }

    /// An optional unsigned integer field within `min..=max`.
    pub fn u64_in(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(FieldError::new(
                    self.field_path(key),
                    format!("must be {min}..={max}, got {}", short(v)),
                )),
            },
        }
    }

    /// An optional array field.
    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.type_error(key, "an array", v)),
        }
    }

    /// An optional string chosen from `choices`.
    pub fn choice(
        &self,
        key: &str,
        choices: &'static [&'static str],
    ) -> Result<Option<&'a str>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if choices.contains(&s.as_str()) => Ok(Some(s.as_str())),
            Some(v) => Err(FieldError::new(
                self.field_path(key),
                format!("must be one of {}, got {}", choices.join(", "), short(v)),
            )),
        }
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> FieldError {
        FieldError::new(
            self.field_path(key),
            format!("must be {expected}, got {}", describe(got)),
        )
    }
}

/// `0`, `"abc"`, `true`: a short rendering for range errors.
pub fn short(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        other => describe(other),
    }
}

fn unknown_field(path: &str, key: &str, allowed: &[&str]) -> FieldError {
    let mut msg = String::from("unknown field");
    if let Some(best) = closest(key, allowed) {
        msg.push_str(&format!(" (did you mean {best:?}?)"));
    }
    msg.push_str(&format!("; allowed fields: {}", allowed.join(", ")));
    FieldError::new(join(path, key), msg)
}

/// The allowed name closest to a typo, if any is close enough to be a likely intent.
pub fn closest<'s>(typo: &str, names: &[&'s str]) -> Option<&'s str> {
    let typo_l = typo.to_ascii_lowercase();
    names
        .iter()
        .map(|n| (edit_distance(&typo_l, &n.to_ascii_lowercase()), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Parses bytes as JSON with an error that says where (line and column). Configuration and
/// snapshots come from the operator; bodies a caller writes go through `parse_unique`.
pub fn parse_json(what: &str, bytes: &[u8]) -> Result<Value, FieldError> {
    serde_json::from_slice(bytes).map_err(|e| not_json(what, &e))
}

/// The error for `what` that does not parse as JSON, with serde_json's reason, line and column.
pub fn not_json(what: &str, e: &serde_json::Error) -> FieldError {
    FieldError::new(
        "",
        format!(
            "{what} is not valid JSON: {} at line {} column {}",
            json_error_kind(e),
            e.line(),
            e.column()
        ),
    )
}

/// Parses JSON like `serde_json::from_slice`, refusing a key that appears twice in one object
/// (the error names the key, with serde_json's line and column): parsers disagree on which copy
/// wins (serde_json keeps the last), so a repeated `"tenantId"` could mean one customer to a
/// gateway and another to us. For bodies and log lines a caller can shape; the filter does not
/// link it (it parses only its operator's configuration and snapshots).
pub fn parse_unique(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = UniqueKeys.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Builds a `Value` as serde_json does, but fails on a repeated object key.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(UniqueKeys)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let v = map.next_value_seed(UniqueKeys)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn json_error_kind(e: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; keep only the reason.
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Rewrites JSON text so every number literal becomes a string (`1.10` → `"1.10"`), so decimal
/// fields keep every digit when read through `serde_json::Value` (which stores floats).
/// Call it on text that already parsed as JSON.
pub fn numbers_as_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    let mut in_string = false;
    let mut start = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if c == b'-' || c.is_ascii_digit() {
            let n_start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b"+-.eE".contains(&b[i])) {
                i += 1;
            }
            out.push_str(&text[start..n_start]);
            out.push('"');
            out.push_str(&text[n_start..i]);
            out.push('"');
            start = i;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_become_strings_outside_strings_only() {
        let t = r#"{"a": 1.10, "b": [-2e3, 0], "c": "x 1 \" 2", "d": true}"#;
        let v: Value = serde_json::from_str(&numbers_as_strings(t)).unwrap();
        assert_eq!(
            v,
            json!({"a": "1.10", "b": ["-2e3", "0"], "c": "x 1 \" 2", "d": true})
        );
    }

    const FIELDS: &[&str] = &["batch_size", "debug", "name"];

    #[test]
    fn unknown_fields_are_refused_with_a_suggestion() {
        let v = json!({"batchsize": 3});
        let e = ObjReader::new("", &v, FIELDS).err().unwrap();
        assert_eq!(e.path, "batchsize");
        assert!(e.message.contains("did you mean \"batch_size\""), "{e}");
    }

    #[test]
    fn range_and_type_errors_name_the_field() {
        let v = json!({"batch_size": 0, "debug": "yes", "name": 3});
        let r = ObjReader::new("cfg", &v, FIELDS).unwrap();
        assert_eq!(
            r.u64_in("batch_size", 1, 1000).unwrap_err().to_string(),
            "cfg.batch_size: must be 1..=1000, got 0"
        );
        assert_eq!(
            r.bool("debug").unwrap_err().to_string(),
            "cfg.debug: must be true or false, got the string \"yes\""
        );
        assert!(r
            .string("name")
            .unwrap_err()
            .to_string()
            .starts_with("cfg.name: must be a string"));
    }

    #[test]
    fn a_key_given_twice_is_refused_by_name() {
        let e = parse_unique(br#"{"apiKey": "", "x": {"a": 1}, "apiKey": "k"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#"the key "apiKey" appears twice"#), "{e}");
        assert!(e.contains("line 1 column"), "{e}");
        let e = parse_unique(br#"[{"a": {"b": 1, "b": 2}}]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#""b" appears twice"#), "{e}");
        // The same key in two objects is fine, and values come out as serde_json makes them.
        let text = br#"{"a": {"k": 1.5}, "b": {"k": [true, null, -2, "s"]}}"#;
        assert_eq!(
            parse_unique(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
        assert!(parse_unique(b"{} x").is_err(), "trailing bytes");
    }

    #[test]
    fn json_syntax_errors_say_where() {
        let e = parse_json("configuration", b"{\n  \"a\": }").unwrap_err();
        assert!(e.message.contains("line 2"), "{e}");
    }
}
