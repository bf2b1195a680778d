//! The plugin configuration's bytes as a JSON object, with an inline snapshot (`entitlements`)
//! read as a stream on the way: a 10,000-customer snapshot inline would otherwise become a JSON
//! tree about ten times its size, which a proxy VM's linear memory keeps as its high-water mark.
//! A configuration the stream does not expect (a string holding JSON, another shape, a mistake)
//! is read as a whole tree, which gives the same result or the usual error.

use crate::entitlement::{Snapshot, SnapshotSeed};
use crate::strict_json::{describe, parse_json, FieldError};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The configuration object, and the inline snapshot already read when `entitlements` was read
/// as a stream (the object then holds `{}` in its place).
pub struct HostConfig {
    /// Every field, `entitlements` as described.
    pub fields: Map<String, Value>,
    /// The inline snapshot, or the first error in it; `None` when not read as a stream.
    pub inline: Option<Result<Snapshot, FieldError>>,
}

/// Host configuration bytes as a JSON object: accepts an object, a JSON string holding an object
/// (Kong with a meta.json schema encodes string configs), or nothing.
pub fn decode_host_config(bytes: &[u8]) -> Result<HostConfig, FieldError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Ok(empty());
    }
    decode(trimmed, "the plugin configuration", true)
}

fn empty() -> HostConfig {
    HostConfig {
        fields: Map::new(),
        inline: None,
    }
}

/// `bytes` (not blank) as an object; the outer bytes may be a string holding one, which is
/// read as it is (blank text, Unicode spaces included, is an empty configuration).
fn decode(bytes: &[u8], what: &str, outer: bool) -> Result<HostConfig, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Ok(c) = de.deserialize_map(Top).and_then(|c| de.end().map(|()| c)) {
        return Ok(c);
    }
    match parse_json(what, bytes)? {
        Value::Object(fields) => Ok(HostConfig {
            fields,
            inline: None,
        }),
        Value::String(inner) if outer && inner.trim().is_empty() => Ok(empty()),
        Value::String(inner) if outer => decode(
            inner.as_bytes(),
            "the plugin configuration (a JSON string holding JSON)",
            false,
        ),
        v => Err(FieldError::new(
            "",
            format!(
                "the plugin configuration must be a JSON object, got {}",
                describe(&v)
            ),
        )),
    }
}

/// The top-level object, `entitlements` streamed.
struct Top;

impl<'de> Visitor<'de> for Top {
    type Value = HostConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<HostConfig, A::Error> {
        let mut c = HostConfig {
            fields: Map::new(),
            inline: None,
        };
        while let Some(k) = m.next_key::<String>()? {
            if k == "entitlements" {
                // A repeated field replaces the earlier one, as in the whole tree.
                c.inline = Some(m.next_value_seed(SnapshotSeed {
                    path: "entitlements",
                })?);
                c.fields.insert(k, Value::Object(Map::new()));
            } else {
                let v: Value = m.next_value()?;
                c.fields.insert(k, v);
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EntitlementSource};
    use crate::strict_json::FieldError;
    use serde_json::Value;

    fn parse(text: &str) -> Result<Config, FieldError> {
        Config::parse(text.as_bytes(), &|_| None)
    }

    fn with(entitlements: &str) -> String {
        format!(
            r#"{{"api_key": "sk_test_abc", "product_id": "p", "entitlements": {entitlements}}}"#
        )
    }

    fn customers(c: &Config) -> Vec<String> {
        match &c.entitlements {
            EntitlementSource::Inline(s) => {
                let mut ids: Vec<String> = s.customers.keys().cloned().collect();
                ids.sort();
                ids
            }
            other => panic!("not inline: {other:?}"),
        }
    }

    const GOOD: &str = r#"{"customers": {"c": {"features": {"f": {"quota": 5}}}}}"#;
    const BAD: &str = r#"{"customers": {"c": {"features": {"f": {"quota": "many"}}}}}"#;

    #[test]
    fn an_inline_snapshot_is_read_from_an_object_and_from_a_string_holding_one() {
        let c = parse(&with(GOOD)).unwrap();
        assert_eq!(customers(&c), ["c"]);
        let wrapped = Value::from(with(GOOD)).to_string();
        assert_eq!(customers(&parse(&wrapped).unwrap()), ["c"]);
        let e = parse(&Value::from(with(BAD)).to_string()).unwrap_err();
        assert_eq!(e.path, "entitlements.customers.c.features.f.quota");
    }

    #[test]
    fn a_repeated_field_keeps_the_last_value_and_its_errors() {
        let c = parse(&format!(
            r#"{{"api_key": "sk_test_abc", "product_id": "p", "entitlements": {BAD}, "entitlements": {GOOD}}}"#
        ))
        .unwrap();
        assert_eq!(customers(&c), ["c"]);
        let e = parse(&format!(
            r#"{{"api_key": "sk_test_abc", "product_id": "p", "entitlements": {GOOD}, "entitlements": {BAD}}}"#
        ))
        .unwrap_err();
        assert_eq!(e.path, "entitlements.customers.c.features.f.quota");
        // An object, then another shape: the other shape is what is checked.
        let e = parse(&format!(
            r#"{{"api_key": "sk_test_abc", "product_id": "p", "entitlements": {GOOD}, "entitlements": [1]}}"#
        ))
        .unwrap_err();
        assert_eq!(e.path, "entitlements");
    }

    #[test]
    fn errors_keep_their_order_their_paths_and_their_words() {
        // The snapshot is checked where the whole tree was: after the key.
        let e = parse(&format!(r#"{{"entitlements": {BAD}}}"#)).unwrap_err();
        assert_eq!(e.path, "api_key");
        for (doc, path, words) in [
            (with("5"), "entitlements", "an object"),
            (
                with(r#"{"customers": 5}"#),
                "entitlements.customers",
                "an object of customer id",
            ),
            (
                with(r#"{"consumer_keys": {}}"#),
                "entitlements.consumer_keys",
                "an array",
            ),
            (
                with(
                    r#"{"customers": {}, "consumer_keys": [{"key_id": "k", "hash": "x", "customer_id": "c"}]}"#,
                ),
                "entitlements.consumer_keys[0].hash",
                "sha256:",
            ),
            ("[1]".to_string(), "", "must be a JSON object"),
            (r#""[1]""#.to_string(), "", "must be a JSON object"),
            (with(r#"{"customers": {"c": }}"#), "", "not valid JSON"),
            (format!("{} x", with(GOOD)), "", "not valid JSON"),
        ] {
            let e = parse(&doc).unwrap_err();
            assert_eq!(e.path, path, "{doc} → {e}");
            assert!(
                e.to_string().contains(words),
                "{doc} → {e} (wanted {words:?})"
            );
        }
        let e = parse(&with(r#"{"customers": {"c": }}"#)).unwrap_err();
        assert!(e.to_string().contains("line 1 column"), "{e}");
    }

    #[test]
    fn a_string_holding_json_is_read_as_it_is() {
        let env = |k: &str| match k {
            "AFORO_API_KEY" => Some("sk_test_abc".to_string()),
            "AFORO_PRODUCT_ID" => Some("p".to_string()),
            _ => None,
        };
        let parse = |v: Value| Config::parse(v.to_string().as_bytes(), &env);
        // Unicode space alone: an empty configuration, as blank bytes are.
        assert!(parse(Value::from("\u{a0}\n")).is_ok());
        // Lines count from the string's own start.
        let e = parse(Value::from("\n{\"api_key\": }")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("a JSON string holding JSON"), "{e}");
        // What JSON does not call space is not trimmed away.
        let e = parse(Value::from("\u{c}{}")).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        // A string holding a string holding JSON is one level too many.
        let e = parse(Value::from(Value::from("{}").to_string())).unwrap_err();
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
    }

    #[test]
    fn null_and_nothing_mean_no_inline_snapshot() {
        let c = parse(&with("null")).unwrap();
        assert!(!matches!(c.entitlements, EntitlementSource::Inline(_)));
        let env = |k: &str| match k {
            "AFORO_API_KEY" => Some("sk_test_abc".to_string()),
            "AFORO_PRODUCT_ID" => Some("p".to_string()),
            _ => None,
        };
        for blank in ["", "  ", r#""  ""#] {
            let c = Config::parse(blank.as_bytes(), &env).unwrap();
            assert!(
                !matches!(c.entitlements, EntitlementSource::Inline(_)),
                "{blank:?}"
            );
        }
    }
}
