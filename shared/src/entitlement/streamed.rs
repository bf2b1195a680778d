//! Reading a snapshot document as a stream: each customer and each key becomes a JSON tree of
//! its own and is turned into its typed form at once, so a proxy VM never holds a tree of the
//! whole document (about ten times its size, and Wasm linear memory keeps its high-water mark).
//! Results, errors included, are those of `Snapshot::from_value`: the same checks run in the
//! same order (customers by id, then keys by index).

use super::snapshot::{customer_at, parse_key, Customer, Parts, Snapshot, TOP};
use crate::keys::ConsumerKey;
use crate::strict_json::{index, FieldError, ObjReader};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Default)]
struct Streamed {
    /// Every top-level field except the two lists (stand-ins take their place).
    head: Map<String, Value>,
    customers: BTreeMap<String, Result<Customer, FieldError>>,
    keys: Vec<Result<ConsumerKey, FieldError>>,
}

/// The snapshot, or `None` when the document's shape is unexpected (not an object, a list
/// that is not a list): the caller then reads it as a whole tree for the exact message.
pub(super) fn from_json(bytes: &[u8]) -> Option<Result<Snapshot, FieldError>> {
    let mut s = Streamed::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(Top(&mut s)).ok()?;
    de.end().ok()?;
    let head = Value::Object(std::mem::take(&mut s.head));
    Some((|| {
        let r = ObjReader::new("", &head, TOP)?;
        let mut parts = Parts::read(&r)?;
        for (id, c) in std::mem::take(&mut s.customers) {
            parts.add_parsed_customer(id, c)?;
        }
        let kpath = r.field_path("consumer_keys");
        for (i, k) in s.keys.into_iter().enumerate() {
            parts.add_parsed_key(&index(&kpath, i), k)?;
        }
        Ok(parts.finish())
    })())
}

struct Top<'a>(&'a mut Streamed);

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a snapshot object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<String>()? {
            match k.as_str() {
                "customers" => {
                    self.0.customers.clear();
                    m.next_value_seed(Customers(self.0))?;
                    self.0.head.insert(k, Value::Object(Map::new()));
                }
                "consumer_keys" => {
                    self.0.keys.clear();
                    m.next_value_seed(Keys(self.0))?;
                    self.0.head.insert(k, Value::Array(Vec::new()));
                }
                _ => {
                    let v: Value = m.next_value()?;
                    self.0.head.insert(k, v);
                }
            }
        }
        Ok(())
    }
}

struct Customers<'a>(&'a mut Streamed);

impl<'de> DeserializeSeed<'de> for Customers<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Customers<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of customers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some((id, v)) = m.next_entry::<String, Value>()? {
            let c = customer_at("customers", &id, &v);
            self.0.customers.insert(id, c);
        }
        Ok(())
    }
}

struct Keys<'a>(&'a mut Streamed);

impl<'de> DeserializeSeed<'de> for Keys<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of consumer keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while let Some(v) = s.next_element::<Value>()? {
            let i = self.0.keys.len();
            let k = parse_key(&index("consumer_keys", i), &v);
            self.0.keys.push(k);
        }
        Ok(())
    }
}
