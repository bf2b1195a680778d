//! Partners and their consumer keys, kept in the control store: create, rotate, revoke, and
//! the `sandbox_mode` toggle (which moves a partner's usage to the sandbox without touching keys).

use aforo_core::keys::{generate_consumer_key, hash_key, KeyHash};
use aforo_core::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

/// 24 bytes from the operating system's generator.
pub fn random_bytes() -> Result<[u8; 24], String> {
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(b)
}

/// A key as listed (never the secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Public id.
    pub key_id: String,
    /// Its customer.
    pub customer_id: String,
    /// Features it may use (empty: all).
    pub scopes: Vec<String>,
    /// Revoked keys are refused.
    pub revoked: bool,
    /// Expiry, RFC 3339.
    pub expires_at: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last presented to `/v1/canAccess`, RFC 3339 (to the minute).
    pub last_used_at: Option<String>,
    /// `active`, `rotating` (replaced, working until `expires_at`), `expired` or `revoked`.
    pub status: &'static str,
}

/// A key just created: the secret is shown once.
#[derive(Clone, Debug, Serialize)]
pub struct NewKey {
    /// Public id.
    pub key_id: String,
    /// The secret, to give the partner; only its hash is stored.
    pub api_key: String,
    /// Its customer.
    pub customer_id: String,
}

fn db<T>(
    c: &Mutex<Connection>,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, String> {
    let g = c
        .lock()
        .map_err(|_| "the control store lock was poisoned".to_string())?;
    f(&g).map_err(|e| format!("control store: {e}"))
}

/// Creates a key for a customer. With `new_partner_mode`, a customer without a partner row
/// becomes a partner in that mode (sandbox unless the catalog says otherwise); an existing
/// partner keeps its mode, and a rotation (`None`) never changes one.
pub fn create(
    c: &Mutex<Connection>,
    customer_id: &str,
    new_partner_mode: Option<bool>,
    scopes: &[String],
    ip_allowlist: &[String],
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<NewKey, String> {
    let secret = generate_consumer_key(random_bytes()?);
    let key_id = format!("key_{}", &aforo_core::event::to_hex(&random_bytes()?)[..16]);
    let scopes_json = serde_json::to_string(scopes).map_err(|e| e.to_string())?;
    let ips_json = serde_json::to_string(ip_allowlist).map_err(|e| e.to_string())?;
    db(c, |c| {
        // The partner row and the key commit together: a key never exists without the mode
        // its partner was given.
        let tx = c.unchecked_transaction()?;
        if let Some(sandbox) = new_partner_mode {
            tx.execute(
                "INSERT INTO partners (customer_id, sandbox_mode, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT(customer_id) DO NOTHING",
                params![customer_id, i64::from(sandbox), now.unix_nanos()],
            )?;
        }
        tx.execute(
            "INSERT INTO keys (key_id, customer_id, hash, scopes, ip_allowlist, expires_at, revoked, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
            params![key_id, customer_id, hash_key(&secret).to_text(), scopes_json, ips_json, expires_at.map(|t| t.unix_nanos()), now.unix_nanos()],
        )?;
        tx.commit()
    })?;
    Ok(NewKey {
        key_id,
        api_key: secret,
        customer_id: customer_id.to_string(),
    })
}

/// Revokes a key; `false` when there is no such key.
pub fn revoke(c: &Mutex<Connection>, key_id: &str) -> Result<bool, String> {
    db(c, |c| {
        c.execute(
            "UPDATE keys SET revoked = 1 WHERE key_id = ?1",
            params![key_id],
        )
    })
    .map(|n| n == 1)
}

/// Replaces an active key by a new one with the same customer, scopes and allowlist. The old
/// one keeps working for `grace_secs` (never past its own expiry), so callers can switch without
/// downtime; 0 revokes it at once. Returns the new key and when the old one stops (`None`:
/// revoked now); `None` when there is no active key `key_id`.
pub fn rotate(
    c: &Mutex<Connection>,
    key_id: &str,
    grace_secs: u64,
    now: Timestamp,
) -> Result<Option<(NewKey, Option<Timestamp>)>, String> {
    // A key already replaced (in its grace period) is not rotated again: its expiry is now the
    // grace deadline, which a second successor would inherit.
    let row: Option<(String, String, String, Option<i64>)> = db(c, |c| {
        c.query_row("SELECT customer_id, scopes, ip_allowlist, expires_at FROM keys WHERE key_id = ?1 AND revoked = 0 AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > ?2)", params![key_id, now.unix_nanos()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
    })?;
    let Some((customer, scopes, ips, expires)) = row else {
        return Ok(None);
    };
    let scopes: Vec<String> = serde_json::from_str(&scopes).unwrap_or_default();
    let ips: Vec<String> = serde_json::from_str(&ips).unwrap_or_default();
    let new = create(
        c,
        &customer,
        None,
        &scopes,
        &ips,
        expires.map(Timestamp::from_unix_nanos),
        now,
    )?;
    db(c, |c| {
        c.execute(
            "UPDATE keys SET replaced_by = ?2 WHERE key_id = ?1",
            params![key_id, new.key_id],
        )
    })?;
    if grace_secs == 0 {
        revoke(c, key_id)?;
        return Ok(Some((new, None)));
    }
    let grace_ns = i64::try_from(grace_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    let until = now.unix_nanos().saturating_add(grace_ns);
    let until = expires.map_or(until, |e| e.min(until));
    db(c, |c| {
        c.execute(
            "UPDATE keys SET expires_at = ?2 WHERE key_id = ?1",
            params![key_id, until],
        )
    })?;
    Ok(Some((new, Some(Timestamp::from_unix_nanos(until)))))
}

/// A partner's sandbox mode: its own row, else what the catalog says (`catalog_default`).
pub fn sandbox_mode(
    c: &Mutex<Connection>,
    customer_id: &str,
    catalog_default: bool,
) -> Result<bool, String> {
    db(c, |c| {
        c.query_row(
            "SELECT sandbox_mode FROM partners WHERE customer_id = ?1",
            params![customer_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    })
    .map(|v| v.map_or(catalog_default, |v| v != 0))
}

/// Sets (or flips, with `None`) a partner's sandbox mode; returns the new value. A partner
/// without a row of its own flips from what the catalog says (`catalog_default`).
pub fn set_sandbox(
    c: &Mutex<Connection>,
    customer_id: &str,
    value: Option<bool>,
    catalog_default: bool,
    now: Timestamp,
) -> Result<bool, String> {
    db(c, |c| {
        // Read and written under one lock, so two flips at once are two flips.
        let current = c
            .query_row(
                "SELECT sandbox_mode FROM partners WHERE customer_id = ?1",
                params![customer_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map_or(catalog_default, |v| v != 0);
        let next = value.unwrap_or(!current);
        c.execute(
            "INSERT INTO partners (customer_id, sandbox_mode, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT(customer_id) DO UPDATE SET sandbox_mode = ?2, updated_at = ?3",
            params![customer_id, i64::from(next), now.unix_nanos()],
        )?;
        Ok(next)
    })
}

/// Whether the customer already has a partner row or a key made here.
pub fn is_known_partner(c: &Mutex<Connection>, customer_id: &str) -> Result<bool, String> {
    db(c, |c| {
        c.query_row(
            "SELECT EXISTS(SELECT 1 FROM partners WHERE customer_id = ?1) OR EXISTS(SELECT 1 FROM keys WHERE customer_id = ?1)",
            params![customer_id],
            |r| r.get::<_, bool>(0),
        )
    })
}

/// Partners' sandbox flags.
pub fn partners(c: &Mutex<Connection>) -> Result<HashMap<String, bool>, String> {
    db(c, |c| {
        let mut st = c.prepare("SELECT customer_id, sandbox_mode FROM partners")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
        })?;
        rows.collect()
    })
}

/// Keys as snapshot `consumer_keys` entries.
pub fn snapshot_keys(c: &Mutex<Connection>) -> Result<Vec<Value>, String> {
    db(c, |c| {
        let mut st = c.prepare("SELECT key_id, customer_id, hash, scopes, ip_allowlist, expires_at, revoked FROM keys ORDER BY created_at")?;
        let rows = st.query_map([], |r| {
            let scopes: String = r.get(3)?;
            let ips: String = r.get(4)?;
            let expires: Option<i64> = r.get(5)?;
            Ok(json!({
                "key_id": r.get::<_, String>(0)?,
                "customer_id": r.get::<_, String>(1)?,
                "hash": r.get::<_, String>(2)?,
                "scopes": serde_json::from_str::<Value>(&scopes).unwrap_or(json!([])),
                "ip_allowlist": serde_json::from_str::<Value>(&ips).unwrap_or(json!([])),
                "expires_at": expires.map(|t| Timestamp::from_unix_nanos(t).to_rfc3339()),
                "revoked": r.get::<_, i64>(6)? != 0,
            }))
        })?;
        rows.collect()
    })
}

/// Keys as listed, with their state at `now`.
pub fn list(c: &Mutex<Connection>, now: Timestamp) -> Result<Vec<KeyInfo>, String> {
    db(c, |c| {
        let mut st = c.prepare("SELECT key_id, customer_id, scopes, revoked, expires_at, created_at, last_used_at, replaced_by FROM keys ORDER BY created_at")?;
        let rows = st.query_map([], |r| {
            let scopes: String = r.get(2)?;
            let revoked = r.get::<_, i64>(3)? != 0;
            let expires: Option<i64> = r.get(4)?;
            let replaced: Option<String> = r.get(7)?;
            let expired = expires.is_some_and(|t| t <= now.unix_nanos());
            let status = match (revoked, expired, replaced.is_some()) {
                (true, _, _) => "revoked",
                (false, true, _) => "expired",
                (false, false, true) => "rotating",
                (false, false, false) => "active",
            };
            let rfc = |n: Option<i64>| n.map(|t| Timestamp::from_unix_nanos(t).to_rfc3339());
            Ok(KeyInfo {
                key_id: r.get(0)?,
                customer_id: r.get(1)?,
                scopes: serde_json::from_str(&scopes).unwrap_or_default(),
                revoked,
                expires_at: rfc(expires),
                created_at: rfc(r.get(5)?).unwrap_or_default(),
                last_used_at: rfc(r.get(6)?),
                status,
            })
        })?;
        rows.collect()
    })
}

/// When each key was last presented to `/v1/canAccess`, written at most once a minute per key
/// (gateways that decide from their snapshot, like the Envoy filter, do not report key use).
#[derive(Default)]
pub struct KeyUse {
    written: Mutex<HashMap<KeyHash, Timestamp>>,
}

impl KeyUse {
    /// Records a use of the key with hash `hash` at `now`.
    pub fn touch(&self, c: &Mutex<Connection>, hash: KeyHash, now: Timestamp) {
        const EVERY_NS: i64 = 60 * 1_000_000_000;
        let due = match self.written.lock() {
            Ok(mut w) => {
                let due = w
                    .get(&hash)
                    .is_none_or(|last| now.unix_nanos() - last.unix_nanos() >= EVERY_NS);
                if due {
                    if w.len() > 100_000 {
                        w.clear();
                    }
                    w.insert(hash, now);
                }
                due
            }
            Err(_) => false,
        };
        if due {
            let _ = db(c, |c| {
                c.execute(
                    "UPDATE keys SET last_used_at = ?1 WHERE hash = ?2",
                    params![now.unix_nanos(), hash.to_text()],
                )
            });
        }
    }
}
