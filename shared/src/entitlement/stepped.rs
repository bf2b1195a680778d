//! Reading a synced snapshot document a few entries at a time. A proxy worker that read a
//! 10,000-customer snapshot in one go stopped serving for tens of milliseconds on every sync;
//! read in steps of a bounded number of customers and keys, between requests, no request waits
//! for more than one step. The reader keeps only its place in the document (the caller keeps
//! the bytes), and each customer and key becomes its typed form as it comes, as in
//! `streamed.rs`, whose per-entry rules it shares. Results, errors included, are those of
//! `Snapshot::from_value`: a document of a shape the steps do not expect, or an entry that fails
//! to read, is read again as a whole tree, which reports the first error in the usual order.

use super::snapshot::Snapshot;
use super::streamed::Streamed;
use crate::strict_json::FieldError;
use serde_json::Value;
use std::fmt;

/// Where the reader is in the document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum At {
    /// Before the document's `{`.
    #[default]
    Start,
    /// Before a top-level field (or the closing `}`); `first` when none was read yet.
    Field { first: bool },
    /// Inside `customers` (an object) or `consumer_keys` (a list), before an entry or the end.
    Entries { keys: bool, first: bool },
}

/// The document does not read as steps: read it as a whole tree instead.
struct Stop;

/// How far a step got.
#[derive(Debug)]
pub enum Progress {
    /// More entries to read: call `step` again.
    More,
    /// The snapshot, or the error `Snapshot::from_value` gives for the document.
    Done(Result<Snapshot, FieldError>),
}

/// A snapshot document being read; `step` reads a bounded number of customers and keys.
#[derive(Default)]
pub struct SnapshotReader {
    pos: usize,
    at: At,
    read: Streamed,
}

impl fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("pos", &self.pos)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl SnapshotReader {
    /// Reads `doc` (the same bytes on every call) until `budget` more bytes of it are read (at
    /// least one value), stopping only between customers or keys; `Done` once it is all read.
    pub fn step(&mut self, doc: &[u8], budget: usize) -> Progress {
        match self.walk(doc, self.pos.saturating_add(budget.max(1))) {
            Ok(false) => Progress::More,
            // An error is reported as the whole tree reports it (the same words, first in
            // the same order); errors are rare, a good snapshot never pays for the tree.
            Ok(true) => match std::mem::take(&mut self.read).finish("") {
                Ok(s) => Progress::Done(Ok(s)),
                Err(_) => Progress::Done(whole_tree(doc)),
            },
            Err(Stop) => Progress::Done(whole_tree(doc)),
        }
    }

    /// How many bytes of the document are read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// `Ok(true)` at the end of the document, `Ok(false)` when the reader got past `stop_at`
    /// first (it stops between entries only).
    fn walk(&mut self, doc: &[u8], stop_at: usize) -> Result<bool, Stop> {
        loop {
            match self.at {
                At::Start => {
                    self.expect(doc, b'{')?;
                    self.at = At::Field { first: true };
                }
                At::Field { first } => {
                    if self.close(doc, b'}', first)? {
                        // Only whitespace may follow the document.
                        self.skip_space(doc);
                        return if self.pos == doc.len() {
                            Ok(true)
                        } else {
                            Err(Stop)
                        };
                    }
                    let name = self.name(doc)?;
                    self.expect(doc, b':')?;
                    // The two lists read entry by entry: customers an object, keys an array.
                    let keys = match name.as_str() {
                        "customers" => Some(false),
                        "consumer_keys" => Some(true),
                        _ => None,
                    };
                    match keys {
                        Some(keys) => {
                            self.expect(doc, if keys { b'[' } else { b'{' })?;
                            if keys {
                                self.read.restart_keys();
                            } else {
                                self.read.restart_customers();
                            }
                            self.at = At::Entries { keys, first: true };
                        }
                        None => {
                            let v = self.value(doc)?;
                            self.read.field(name, v);
                            self.at = At::Field { first: false };
                        }
                    }
                }
                At::Entries { keys, first } => {
                    if self.pos >= stop_at {
                        return Ok(false);
                    }
                    if self.close(doc, if keys { b']' } else { b'}' }, first)? {
                        self.at = At::Field { first: false };
                        continue;
                    }
                    let read = if keys {
                        let v = self.value(doc)?;
                        self.read.key("consumer_keys", &v)
                    } else {
                        let id = self.name(doc)?;
                        self.expect(doc, b':')?;
                        let v = self.value(doc)?;
                        self.read.customer("customers", id, &v)
                    };
                    read.map_err(|_| Stop)?;
                    self.at = At::Entries { keys, first: false };
                }
            }
        }
    }

    /// At the end of a container (`close`, consumed: true), or past the `,` before its next
    /// member (false). A step that runs out of budget stops before this, so the next one
    /// starts here.
    fn close(&mut self, doc: &[u8], close: u8, first: bool) -> Result<bool, Stop> {
        self.skip_space(doc);
        if doc.get(self.pos) == Some(&close) {
            self.pos += 1;
            return Ok(true);
        }
        if !first {
            self.expect(doc, b',')?;
        }
        Ok(false)
    }

    fn skip_space(&mut self, doc: &[u8]) {
        while matches!(doc.get(self.pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, doc: &[u8], byte: u8) -> Result<(), Stop> {
        self.skip_space(doc);
        if doc.get(self.pos) != Some(&byte) {
            return Err(Stop);
        }
        self.pos += 1;
        Ok(())
    }

    /// One JSON value at the reader's place: its extent found by a scan of the bytes, then read
    /// by the same parser as a whole document (one parser in the module, not a second).
    fn value(&mut self, doc: &[u8]) -> Result<Value, Stop> {
        self.skip_space(doc);
        let start = self.pos;
        let end = value_end(doc, start).ok_or(Stop)?;
        self.pos = end;
        serde_json::from_slice(&doc[start..end]).map_err(|_| Stop)
    }

    /// A JSON string at the reader's place (a field name or a customer id).
    fn name(&mut self, doc: &[u8]) -> Result<String, Stop> {
        match self.value(doc)? {
            Value::String(s) => Ok(s),
            _ => Err(Stop),
        }
    }
}

/// Where the JSON value starting at `start` ends, by its brackets and strings alone (the
/// parser then checks it); `None` when the document ends first.
fn value_end(doc: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match *doc.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *doc.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            // Between the members of a container.
            b',' | b':' | b' ' | b'\n' | b'\r' | b'\t' if depth > 0 => i += 1,
            // A scalar: up to the next delimiter (at least one byte).
            _ => {
                i += 1;
                while !matches!(
                    doc.get(i),
                    None | Some(b',' | b':' | b'}' | b']' | b'"' | b' ' | b'\n' | b'\r' | b'\t')
                ) {
                    i += 1;
                }
            }
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

/// The document as a whole tree: the error in the usual order and words (or, for a document
/// the steps could not follow but the strict reader accepts, its snapshot).
fn whole_tree(doc: &[u8]) -> Result<Snapshot, FieldError> {
    let v = crate::strict_json::parse_json("the entitlement snapshot", doc)?;
    Snapshot::from_value("", &v)
}

/// A whole snapshot document at once (an inline configuration's, or a first sync).
#[inline(never)] // one copy, not one per caller (the proxy-wasm module's size)
pub(super) fn from_json(doc: &[u8]) -> Result<Snapshot, FieldError> {
    match SnapshotReader::default().step(doc, usize::MAX) {
        Progress::Done(r) => r,
        // Unreachable with an unlimited budget; read it whole rather than fail.
        Progress::More => whole_tree(doc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc(customers: usize, keys: usize) -> String {
        let cs: Vec<String> = (0..customers)
            .map(|i| {
                format!(
                    r#""cust_{i}": {{"features": {{"search": {{"quota": {}}}, "chat": {{}}}}}}"#,
                    10 + i
                )
            })
            .collect();
        let ks: Vec<String> = (0..keys)
            .map(|i| {
                format!(
                    r#"{{"key_id": "k{i}", "hash": "sha256:{:064x}", "customer_id": "cust_{}"}}"#,
                    i + 1,
                    i % customers.max(1)
                )
            })
            .collect();
        format!(
            "{{ \"version\": 7, \"environment\": \"production\",\n \"customers\": {{ {} }},\n \"consumer_keys\": [ {} ] }}\n",
            cs.join(",\n "),
            ks.join(", ")
        )
    }

    fn stepped(d: &[u8], budget: usize) -> (Result<Snapshot, FieldError>, usize) {
        let mut r = SnapshotReader::default();
        let mut steps = 1;
        loop {
            match r.step(d, budget) {
                Progress::More => steps += 1,
                Progress::Done(s) => return (s, steps),
            }
        }
    }

    #[test]
    fn a_large_snapshot_reads_in_steps_of_the_budget_and_equals_the_whole_read() {
        let d = doc(1000, 1000);
        let whole = Snapshot::from_value("", &serde_json::from_str(&d).unwrap()).unwrap();
        let mut r = SnapshotReader::default();
        let (mut steps, mut longest) = (0, 0);
        let read = loop {
            let before = r.position();
            let p = r.step(d.as_bytes(), 4096);
            steps += 1;
            longest = longest.max(r.position() - before);
            if let Progress::Done(s) = p {
                break s;
            }
        };
        assert_eq!(read.unwrap().to_value(), whole.to_value());
        assert_eq!(whole.customers.len(), 1000);
        assert_eq!(whole.keys.len(), 1000);
        // Each step stops at the first entry past its 4,096 bytes (entries are ~100 bytes here).
        assert!(longest < 4096 + 200, "a step read {longest} bytes");
        let expected = d.len() / 4096;
        assert!(
            (expected..=expected + 2).contains(&steps),
            "{steps} steps for {} bytes",
            d.len()
        );
    }

    #[test]
    fn a_budget_of_one_byte_reads_one_value_a_step() {
        let d = doc(3, 3);
        let (read, steps) = stepped(d.as_bytes(), 1);
        assert!(read.is_ok());
        // Six entries at most one a step; the steps that read the top-level fields and the end
        // read no entry: no step reads more than one, and none reads nothing.
        assert!((7..=6 + 4 + 1).contains(&steps), "{steps} steps");
        let mut r = SnapshotReader::default();
        loop {
            let before = r.position();
            let done = matches!(r.step(d.as_bytes(), 1), Progress::Done(_));
            let read = &d[before..r.position()];
            assert!(!read.is_empty(), "a step read nothing");
            let entries = read.matches("\"features\"").count() + read.matches("\"key_id\"").count();
            assert!(entries <= 1, "one step read {entries} entries: {read}");
            if done {
                break;
            }
        }
    }

    #[test]
    fn an_entry_that_fails_is_reported_as_the_whole_tree_reports_it() {
        // cust_5 has a negative quota; cust_2 a quota that is not a number: the whole tree
        // reports cust_2 first (customers by id), whichever the steps meet first.
        let d = doc(10, 3)
            .replace(r#""quota": 15"#, r#""quota": -1"#)
            .replace(r#""quota": 12"#, r#""quota": "x""#);
        let want = Snapshot::from_value("", &serde_json::from_str(&d).unwrap()).unwrap_err();
        let (got, _) = stepped(d.as_bytes(), 2);
        assert_eq!(got.unwrap_err().to_string(), want.to_string());
        assert!(want.to_string().contains("cust_2"), "{want}");
    }

    #[test]
    fn shapes_the_steps_do_not_follow_read_as_a_whole_tree() {
        for bad in [
            "",
            "[]",
            "{\"customers\": []}",
            "{\"consumer_keys\": {}}",
            "{\"version\": 1,}",
            "{\"version\": 1} trailing",
            "{\"customers\": {\"a\": {}} ",
            "{\"customers\": {\"a\" {}}}",
        ] {
            let (got, _) = stepped(bad.as_bytes(), 1);
            let err = got.expect_err(bad);
            let want =
                match crate::strict_json::parse_json("the entitlement snapshot", bad.as_bytes()) {
                    Err(e) => e,
                    Ok(v) => Snapshot::from_value("", &v).unwrap_err(),
                };
            assert_eq!(err.to_string(), want.to_string(), "{bad}");
        }
    }

    #[test]
    fn hostile_ids_and_escapes_read_as_the_whole_tree_reads_them() {
        let d = r#"{"customers": {"a\"b,\"c\":{": {"features": {}}, "\u00e9\n": {}}, "consumer_keys": [], "version": 2}"#;
        let whole = Snapshot::from_value("", &serde_json::from_str(d).unwrap()).unwrap();
        let (s, _) = stepped(d.as_bytes(), 1);
        let s = s.unwrap();
        assert_eq!(s.to_value(), whole.to_value());
        assert!(s.customers.contains_key("a\"b,\"c\":{"));
        assert!(s.customers.contains_key("é\n"));
    }

    proptest! {
        /// Any budget gives what the whole read gives, for good and broken documents alike.
        #[test]
        fn any_budget_gives_the_whole_read(
            customers in 0usize..40,
            keys in 0usize..40,
            budget in 1usize..600,
            cut in proptest::option::of(0usize..4000),
        ) {
            let mut d = doc(customers, keys);
            if let Some(c) = cut {
                d.truncate(c.min(d.len()));
            }
            let want = match crate::strict_json::parse_json("the entitlement snapshot", d.as_bytes()) {
                Err(e) => Err(e),
                Ok(v) => Snapshot::from_value("", &v),
            };
            let (got, _) = stepped(d.as_bytes(), budget);
            match (got, want) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.to_value(), b.to_value()),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "stepped {:?} whole {:?}", a.is_ok(), b.is_ok()),
            }
        }
    }
}
