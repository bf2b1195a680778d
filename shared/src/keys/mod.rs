//! Consumer keys and network identity: hashed keys, scopes, expiry, revocation, IP allowlists.

mod cidr;
mod client_ip;
mod consumer;
mod hash;
mod hash_cache;

pub use cidr::{any_contains, canonical, Cidr, CidrError};
pub use client_ip::{client_ip, parse_peer};
pub use consumer::{
    generate_consumer_key, ConsumerKey, ConsumerKeyTable, KeyDenial, CONSUMER_KEY_PREFIX,
};
pub use hash::{hash_key, KeyHash};
pub use hash_cache::KeyHashCache;
