//! State shared by every VM of one simulated proxy: shared data (with the profile's CAS rules),
//! shared queues, metrics (summed across workers, as Envoy's stats are) and logs.

use super::profile::{crc32, Profile};
use super::status;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// One log line from a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// proxy-wasm level (0 trace … 5 critical).
    pub level: i32,
    /// Text.
    pub message: String,
}

/// The shared world of one proxy process.
#[derive(Debug)]
pub struct World {
    /// Which host is imitated.
    pub profile: Profile,
    shared: HashMap<String, (Vec<u8>, u32)>,
    kong_shared: HashMap<u32, (String, Vec<u8>, u32)>,
    next_cas: u32,
    queues: Vec<(String, VecDeque<Vec<u8>>)>,
    metric_names: Vec<String>,
    metric_values: Vec<i64>,
    /// Log lines, all of them when `keep_logs` is set, else the last 1,000.
    pub logs: VecDeque<LogLine>,
    /// Keep every log line (security tests read them all).
    pub keep_logs: bool,
    /// Log lines by level.
    pub log_counts: [u64; 6],
    /// Echo log lines to stderr.
    pub echo_logs: bool,
    /// Envoy clusters that exist (`None`: any name is accepted).
    pub clusters: Option<Vec<String>>,
}

/// The world shared by the VMs of one proxy (single-threaded, like one harness run).
pub type SharedWorld = Rc<RefCell<World>>;

impl World {
    /// An empty world for `profile`.
    pub fn new(profile: Profile) -> SharedWorld {
        Rc::new(RefCell::new(World {
            profile,
            shared: HashMap::new(),
            kong_shared: HashMap::new(),
            next_cas: 0,
            queues: Vec::new(),
            metric_names: Vec::new(),
            metric_values: Vec::new(),
            logs: VecDeque::new(),
            keep_logs: false,
            log_counts: [0; 6],
            echo_logs: false,
            clusters: None,
        }))
    }

    fn cas(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        self.next_cas
    }

    /// `proxy_get_shared_data`.
    pub fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match self.profile {
            Profile::Envoy => self.shared.get(key).cloned(),
            // Kong finds entries by CRC32 only: two keys with the same CRC32 alias.
            Profile::Kong => self
                .kong_shared
                .get(&crc32(key.as_bytes()))
                .map(|(_, v, c)| (v.clone(), *c)),
        }
    }

    /// `proxy_set_shared_data`, with each host's CAS rules; returns a status.
    pub fn set_shared(&mut self, key: &str, value: Option<&[u8]>, cas: u32) -> i32 {
        match self.profile {
            Profile::Envoy => {
                let next = self.cas();
                match self.shared.get_mut(key) {
                    Some((_, current)) if cas != 0 && cas != *current => status::CAS_MISMATCH,
                    Some(entry) => {
                        *entry = (value.unwrap_or_default().to_vec(), next);
                        status::OK
                    }
                    None => {
                        self.shared
                            .insert(key.to_string(), (value.unwrap_or_default().to_vec(), next));
                        status::OK
                    }
                }
            }
            Profile::Kong => {
                let id = crc32(key.as_bytes());
                let current = self.kong_shared.get(&id).map(|(_, _, c)| *c).unwrap_or(0);
                if cas != current {
                    return status::CAS_MISMATCH;
                }
                match value {
                    None => {
                        self.kong_shared.remove(&id);
                    }
                    Some(v) => {
                        let next = self.cas();
                        self.kong_shared
                            .insert(id, (key.to_string(), v.to_vec(), next));
                    }
                }
                status::OK
            }
        }
    }

    /// Number of shared-data entries (for memory checks).
    pub fn shared_len(&self) -> usize {
        self.shared.len() + self.kong_shared.len()
    }

    /// `proxy_register_shared_queue` / resolve: the queue id of a name.
    pub fn queue_id(&mut self, name: &str, create: bool) -> Option<u32> {
        if let Some(i) = self.queues.iter().position(|(n, _)| n == name) {
            return Some(i as u32 + 1);
        }
        if !create {
            return None;
        }
        self.queues.push((name.to_string(), VecDeque::new()));
        Some(self.queues.len() as u32)
    }

    /// The queue with an id.
    pub fn queue(&mut self, id: u32) -> Option<&mut VecDeque<Vec<u8>>> {
        self.queues
            .get_mut(id.checked_sub(1)? as usize)
            .map(|(_, q)| q)
    }

    /// `proxy_define_metric`: one id per name, shared by all VMs.
    pub fn define_metric(&mut self, name: &str) -> u32 {
        if let Some(i) = self.metric_names.iter().position(|n| n == name) {
            return i as u32 + 1;
        }
        self.metric_names.push(name.to_string());
        self.metric_values.push(0);
        self.metric_names.len() as u32
    }

    /// Adds to a metric.
    pub fn increment_metric(&mut self, id: u32, delta: i64) -> bool {
        match id
            .checked_sub(1)
            .and_then(|i| self.metric_values.get_mut(i as usize))
        {
            Some(v) => {
                *v = v.saturating_add(delta);
                true
            }
            None => false,
        }
    }

    /// Sets a metric.
    pub fn record_metric(&mut self, id: u32, value: u64) -> bool {
        match id
            .checked_sub(1)
            .and_then(|i| self.metric_values.get_mut(i as usize))
        {
            Some(v) => {
                *v = value as i64;
                true
            }
            None => false,
        }
    }

    /// A metric by id.
    pub fn metric_by_id(&self, id: u32) -> Option<i64> {
        self.metric_values.get(id.checked_sub(1)? as usize).copied()
    }

    /// A metric's value by name (0 when undefined).
    pub fn metric(&self, name: &str) -> i64 {
        self.metric_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| self.metric_values.get(i).copied())
            .unwrap_or(0)
    }

    /// Every metric, by name.
    pub fn metrics(&self) -> Vec<(String, i64)> {
        self.metric_names
            .iter()
            .cloned()
            .zip(self.metric_values.iter().copied())
            .collect()
    }

    /// Records a log line.
    pub fn log(&mut self, level: i32, message: String) {
        if let Some(c) = self.log_counts.get_mut(level.clamp(0, 5) as usize) {
            *c += 1;
        }
        if self.echo_logs {
            eprintln!("[module {}] {message}", level_name(level));
        }
        if !self.keep_logs && self.logs.len() >= 1_000 {
            self.logs.pop_front();
        }
        self.logs.push_back(LogLine { level, message });
    }
}

/// The name of a proxy-wasm log level.
pub fn level_name(level: i32) -> &'static str {
    match level {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_cas_zero_overwrites_kong_cas_zero_must_not_exist() {
        let envoy = World::new(Profile::Envoy);
        let mut w = envoy.borrow_mut();
        assert_eq!(w.set_shared("k", Some(b"a"), 0), status::OK);
        assert_eq!(
            w.set_shared("k", Some(b"b"), 0),
            status::OK,
            "Envoy: cas 0 overwrites"
        );
        let (_, cas) = w.get_shared("k").unwrap();
        assert_eq!(w.set_shared("k", Some(b"c"), cas + 1), status::CAS_MISMATCH);
        assert_eq!(w.set_shared("k", None, cas), status::OK);
        assert_eq!(
            w.get_shared("k").unwrap().0,
            b"",
            "Envoy stores empty for None"
        );

        let kong = World::new(Profile::Kong);
        let mut k = kong.borrow_mut();
        assert_eq!(k.set_shared("k", Some(b"a"), 0), status::OK);
        assert_eq!(
            k.set_shared("k", Some(b"b"), 0),
            status::CAS_MISMATCH,
            "Kong: cas 0 means must not exist"
        );
        let (_, cas) = k.get_shared("k").unwrap();
        assert_eq!(k.set_shared("k", None, cas), status::OK);
        assert_eq!(k.get_shared("k"), None, "Kong deletes on None");
    }

    #[test]
    fn kong_keys_alias_by_crc32() {
        // "plumless" and "buckeroo" share a CRC32 (a classic collision pair).
        assert_eq!(crc32(b"plumless"), crc32(b"buckeroo"));
        let kong = World::new(Profile::Kong);
        let mut k = kong.borrow_mut();
        k.set_shared("plumless", Some(b"x"), 0);
        assert_eq!(k.get_shared("buckeroo").unwrap().0, b"x");
    }
}
