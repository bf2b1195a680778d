//! Sandbox or production, decided by the API key's prefix alone.

use std::fmt;

/// Where an event belongs; sandbox and production data never mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Environment {
    /// `sk_test_…` keys: free, isolated, never billed.
    Sandbox,
    /// `sk_live_…` keys: billed.
    Production,
}

/// Prefix of sandbox API keys.
pub const SANDBOX_PREFIX: &str = "sk_test_";
/// Prefix of production API keys.
pub const PRODUCTION_PREFIX: &str = "sk_live_";

impl Environment {
    /// Both environments, sandbox first, for loops over per-environment state.
    pub const ALL: [Environment; 2] = [Environment::Sandbox, Environment::Production];

    /// The wire name used in events and reports (`sandbox` / `production`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Environment::Sandbox => "sandbox",
            Environment::Production => "production",
        }
    }

    /// Parses the wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Environment::Sandbox),
            "production" => Some(Environment::Production),
            _ => None,
        }
    }

    /// The default ingest endpoint of this environment.
    pub const fn default_ingest_url(self) -> &'static str {
        match self {
            Environment::Sandbox => "https://ingest-sandbox.aforo.ai",
            Environment::Production => "https://ingest.aforo.ai",
        }
    }

    /// Default ingest rate limit in events per hour per key.
    pub const fn default_events_per_hour(self) -> u64 {
        match self {
            Environment::Sandbox => 10_000,
            Environment::Production => 1_000_000,
        }
    }

    /// Default retention of stored events, in days.
    pub const fn retention_days(self) -> u32 {
        match self {
            Environment::Sandbox => 30,
            Environment::Production => 730,
        }
    }

    /// Index 0 / 1, for two-slot per-environment arrays.
    pub const fn index(self) -> usize {
        match self {
            Environment::Sandbox => 0,
            Environment::Production => 1,
        }
    }
}

impl serde::Serialize for Environment {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an API key was refused; the message never contains the secret part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// No key at all.
    Empty,
    /// A prefix other than `sk_test_` / `sk_live_`.
    UnknownPrefix(String),
    /// The right prefix but nothing (or something unusable) after it.
    Malformed(&'static str),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => {
                f.write_str("is empty: set an sk_test_… (sandbox) or sk_live_… (production) key")
            }
            KeyError::UnknownPrefix(p) => write!(
                f,
                "unknown key prefix {p:?}: use sk_test_… for sandbox or sk_live_… for production"
            ),
            KeyError::Malformed(why) => write!(f, "malformed key: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// The environment a key belongs to; refuses any other prefix.
pub fn environment_of_key(key: &str) -> Result<Environment, KeyError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    let (env, rest) = if let Some(rest) = key.strip_prefix(SANDBOX_PREFIX) {
        (Environment::Sandbox, rest)
    } else if let Some(rest) = key.strip_prefix(PRODUCTION_PREFIX) {
        (Environment::Production, rest)
    } else {
        return Err(KeyError::UnknownPrefix(visible_prefix(key)));
    };
    if rest.is_empty() {
        return Err(KeyError::Malformed("nothing follows the prefix"));
    }
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(KeyError::Malformed(
            "only letters, digits, '_' and '-' may follow the prefix",
        ));
    }
    Ok(env)
}

/// The shown part of an unknown key: up to its second underscore, at most 8 characters.
fn visible_prefix(key: &str) -> String {
    let mut end = 0;
    let mut underscores = 0;
    for (i, c) in key.char_indices() {
        if i >= 8 {
            break;
        }
        end = i + c.len_utf8();
        if c == '_' {
            underscores += 1;
            if underscores == 2 {
                break;
            }
        }
    }
    let shown = &key[..end];
    if end < key.len() && underscores < 2 {
        format!("{shown}…")
    } else {
        shown.to_string()
    }
}

/// An API key whose `Debug` and `Display` never reveal the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    secret: String,
    environment: Environment,
}

impl ApiKey {
    /// Validates the key and remembers its environment.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        let environment = environment_of_key(key)?;
        Ok(ApiKey {
            secret: key.trim().to_string(),
            environment,
        })
    }

    /// The environment this key writes to.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The secret itself, for an `Authorization` header and nothing else.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::redact::redact_secrets(&self.secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_decides_the_environment() {
        assert_eq!(
            environment_of_key("sk_test_abc123"),
            Ok(Environment::Sandbox)
        );
        assert_eq!(
            environment_of_key("sk_live_abc123"),
            Ok(Environment::Production)
        );
    }

    #[test]
    fn other_prefixes_are_refused_without_echoing_the_secret() {
        let e = environment_of_key("sk_prod_supersecret").unwrap_err();
        assert_eq!(e, KeyError::UnknownPrefix("sk_prod_".into()));
        assert!(!e.to_string().contains("supersecret"));
        let e = environment_of_key("pk_live12345678").unwrap_err();
        assert!(!e.to_string().contains("12345678"), "{e}");
        assert_eq!(environment_of_key("  "), Err(KeyError::Empty));
        assert!(matches!(
            environment_of_key("sk_test_"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            environment_of_key("sk_test_a b"),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            environment_of_key("SK_TEST_abc"),
            Err(KeyError::UnknownPrefix(_))
        ));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let k = ApiKey::parse("sk_live_0123456789abcdef").unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.starts_with("sk_live_"));
    }
}
