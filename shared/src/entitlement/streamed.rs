//! Reading a snapshot document as a stream: each customer and each key becomes a JSON tree of
//! its own and is turned into its typed form at once, so a proxy VM never holds a tree of the
//! whole document (about ten times its size, and Wasm linear memory keeps its high-water mark).
//! Results, errors included, are those of `Snapshot::from_value`: the same checks run in the
//! same order (the scalar fields, customers by id, then keys by index). A customer or a key
//! that fails to read, or a document of another shape than expected, stops the stream; the
//! caller then reads the document as a whole tree, which reports the first error in the usual
//! order and words (errors cost a tree, a good snapshot never does).

use super::features::FeatureNames;
use super::snapshot::{customer_at, parse_key, Customer, Parts, Snapshot, TOP};
use crate::keys::ConsumerKey;
use crate::strict_json::{index, join, FieldError, ObjReader};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// Reads the object at `path` (`""` for a whole document) as a snapshot, or the first error
/// in it; any other shape is a deserializer error (read it as a whole tree for the message).
pub(crate) struct SnapshotSeed<'p> {
    /// Where the snapshot sits, for error paths (`entitlements` in a plugin configuration).
    pub path: &'p str,
}

#[derive(Default)]
struct Streamed {
    /// Every top-level field except the two lists (stand-ins take their place, or the value
    /// itself when it has another shape).
    head: Map<String, Value>,
    /// Customers read, straight into the snapshot's table (no second copy while reading; a
    /// repeated id replaces the earlier one, as in the whole tree).
    customers: HashMap<String, Customer>,
    keys: Vec<ConsumerKey>,
    /// Feature names, one copy each (handed to the snapshot's parts).
    names: FeatureNames,
}

impl Streamed {
    /// The snapshot, checked as `Snapshot::from_value(path, …)` checks the whole tree.
    fn finish(mut self, path: &str) -> Result<Snapshot, FieldError> {
        let head = Value::Object(std::mem::take(&mut self.head));
        let r = ObjReader::new(path, &head, TOP)?;
        let mut parts = Parts::read(&r)?;
        parts.names = self.names;
        parts.set_customers(self.customers);
        parts.add_keys(&r.field_path("consumer_keys"), self.keys)?;
        Ok(parts.finish())
    }
}

impl<'de> DeserializeSeed<'de> for SnapshotSeed<'_> {
    type Value = Result<Snapshot, FieldError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for SnapshotSeed<'_> {
    type Value = Result<Snapshot, FieldError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a snapshot object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        let mut s = Streamed::default();
        while let Some(k) = m.next_key::<String>()? {
            // A repeated field replaces the earlier one, as in the whole tree.
            match k.as_str() {
                "customers" => {
                    s.customers.clear();
                    m.next_value_seed(Customers {
                        s: &mut s,
                        path: self.path,
                    })?;
                    s.head.insert(k, Value::Object(Map::new()));
                }
                "consumer_keys" => {
                    s.keys.clear();
                    m.next_value_seed(Keys {
                        s: &mut s,
                        path: self.path,
                    })?;
                    s.head.insert(k, Value::Array(Vec::new()));
                }
                _ => {
                    let v: Value = m.next_value()?;
                    s.head.insert(k, v);
                }
            }
        }
        Ok(s.finish(self.path))
    }
}

/// The customers object, each customer read as it comes.
struct Customers<'a, 'p> {
    s: &'a mut Streamed,
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Customers<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Customers<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of customers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        let cpath = join(self.path, "customers");
        while let Some((id, v)) = m.next_entry::<String, Value>()? {
            let c = customer_at(&cpath, &id, &v, &mut self.s.names).map_err(stop)?;
            self.s.customers.insert(id, c);
        }
        Ok(())
    }
}

/// The consumer keys list, each key read as it comes.
struct Keys<'a, 'p> {
    s: &'a mut Streamed,
    path: &'p str,
}

impl<'de> DeserializeSeed<'de> for Keys<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Keys<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of consumer keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        let kpath = join(self.path, "consumer_keys");
        while let Some(v) = s.next_element::<Value>()? {
            let i = self.s.keys.len();
            let k = parse_key(&index(&kpath, i), &v).map_err(stop)?;
            self.s.keys.push(k);
        }
        Ok(())
    }
}

/// Stops the stream at an entry that fails to read: the whole tree reports it, first in order.
fn stop<E: serde::de::Error>(e: FieldError) -> E {
    E::custom(e)
}

/// A whole snapshot document read as a stream: the snapshot, or the error `from_value` gives
/// (read as a whole tree when the stream stops: an entry that fails, a shape it does not expect).
#[inline(never)] // one copy, not one per caller (the proxy-wasm module's size)
pub(super) fn from_json(bytes: &[u8]) -> Result<Snapshot, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = SnapshotSeed { path: "" };
    match seed.deserialize(&mut de).and_then(|r| de.end().map(|()| r)) {
        Ok(read) => read,
        Err(_) => {
            let v = crate::strict_json::parse_json("the entitlement snapshot", bytes)?;
            Snapshot::from_value("", &v)
        }
    }
}
