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
pub(super) struct Streamed {
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
    pub(super) fn finish(mut self, path: &str) -> Result<Snapshot, FieldError> {
        let head = Value::Object(std::mem::take(&mut self.head));
        let r = ObjReader::new(path, &head, TOP)?;
        let mut parts = Parts::read(&r)?;
        parts.names = self.names;
        parts.set_customers(self.customers);
        parts.add_keys(&r.field_path("consumer_keys"), self.keys)?;
        Ok(parts.finish())
    }

    /// Reads customer `id` of the customers object at `cpath` into the table (a repeated id
    /// replaces the earlier one, as in the whole tree).
    pub(super) fn customer(
        &mut self,
        cpath: &str,
        id: String,
        v: &Value,
    ) -> Result<(), FieldError> {
        let c = customer_at(cpath, &id, v, &mut self.names)?;
        self.customers.insert(id, c);
        Ok(())
    }

    /// Reads the next key of the list at `kpath`.
    pub(super) fn key(&mut self, kpath: &str, v: &Value) -> Result<(), FieldError> {
        let k = parse_key(&index(kpath, self.keys.len()), v)?;
        self.keys.push(k);
        Ok(())
    }

    /// Starts the customers object again (a repeated `customers` field replaces the earlier).
    pub(super) fn restart_customers(&mut self) {
        self.customers.clear();
        self.head
            .insert("customers".into(), Value::Object(Map::new()));
    }

    /// Starts the keys list again (a repeated `consumer_keys` field replaces the earlier).
    pub(super) fn restart_keys(&mut self) {
        self.keys.clear();
        self.head
            .insert("consumer_keys".into(), Value::Array(Vec::new()));
    }

    /// Keeps a top-level field other than the two lists.
    pub(super) fn field(&mut self, name: String, v: Value) {
        self.head.insert(name, v);
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
                    s.restart_customers();
                    m.next_value_seed(Customers {
                        s: &mut s,
                        path: self.path,
                    })?;
                }
                "consumer_keys" => {
                    s.restart_keys();
                    m.next_value_seed(Keys {
                        s: &mut s,
                        path: self.path,
                    })?;
                }
                _ => {
                    let v: Value = m.next_value()?;
                    s.field(k, v);
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
            self.s.customer(&cpath, id, &v).map_err(stop)?;
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
            self.s.key(&kpath, &v).map_err(stop)?;
        }
        Ok(())
    }
}

/// Stops the stream at an entry that fails to read: the whole tree reports it, first in order.
fn stop<E: serde::de::Error>(e: FieldError) -> E {
    E::custom(e)
}
