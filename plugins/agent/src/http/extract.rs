//! Who is calling and which environment it may read, as axum extractors every handler uses:
//! the rules are written once, here.

use super::ApiError;
use crate::app::App;
use aforo_core::environment::environment_of_key;
use aforo_core::keys::{hash_key, KeyHash};
use aforo_core::Environment;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A gateway's key: its environment and hash. 401 without a key this agent accepts, 403 for an
/// environment it does not serve (a live key at a sandbox agent and the reverse).
#[derive(Clone, Copy, Debug)]
pub struct Gateway {
    /// The key's environment.
    pub env: Environment,
    /// Its hash (rate limits, `tenant_keys`).
    pub key: KeyHash,
}

impl Gateway {
    fn check(app: &App, headers: &HeaderMap) -> Result<Gateway, ApiError> {
        let key = bearer(headers).ok_or_else(|| {
            ApiError::new(
                401,
                "invalid_key",
                "Authorization: Bearer sk_test_… or sk_live_… is required",
            )
        })?;
        let env = environment_of_key(key)
            .map_err(|e| ApiError::new(401, "invalid_key", format!("the key is not valid: {e}")))?;
        let hash = hash_key(key);
        if !app.config.api_keys.is_empty() {
            // Compare against every configured key in constant time, without an early exit.
            let mut found = false;
            for (h, _) in &app.config.api_keys {
                found |= h.ct_eq(&hash);
            }
            if !found {
                return Err(ApiError::new(
                    401,
                    "invalid_key",
                    "the key is not one this agent accepts",
                ));
            }
        }
        if !app.config.serves(env) {
            let served: Vec<&str> = app.config.environments.iter().map(|e| e.as_str()).collect();
            return Err(ApiError::new(
                403,
                "wrong_environment",
                format!(
                    "this agent serves {} only; a {env} key cannot read or write here",
                    served.join(" and ")
                ),
            ));
        }
        Ok(Gateway { env, key: hash })
    }
}

impl FromRequestParts<Arc<App>> for Gateway {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Gateway::check(app, &parts.headers)
    }
}

/// The admin key: 401 without it, 403 when the admin API is off.
pub struct Admin;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Some(expected) = &app.config.admin_key else {
            return Err(ApiError::new(
                403,
                "admin_disabled",
                "the admin API is off: set admin_key (AFORO_AGENT_ADMIN_KEY)",
            ));
        };
        let given = bearer(&parts.headers).map(hash_key).ok_or_else(|| {
            ApiError::new(
                401,
                "invalid_key",
                "Authorization: Bearer adm_… is required",
            )
        })?;
        if !given.ct_eq(expected) {
            return Err(ApiError::new(
                401,
                "invalid_key",
                "the admin key is not valid",
            ));
        }
        Ok(Admin)
    }
}

/// Which environment a read serves when `?environment=` is not given.
pub trait DefaultEnvironment {
    /// The environment for a key of `key_env`.
    fn default_for(key_env: Environment) -> Environment;
    /// Said in the refusal when the default was the reason.
    const HINT: &'static str;
}

/// The key's own environment (snapshots, dead letters).
pub struct KeysOwn;

impl DefaultEnvironment for KeysOwn {
    fn default_for(key_env: Environment) -> Environment {
        key_env
    }
    const HINT: &'static str = "";
}

/// Production, as the product's usage reports do; sandbox only when asked for.
pub struct ProductionUnlessAsked;

impl DefaultEnvironment for ProductionUnlessAsked {
    fn default_for(_: Environment) -> Environment {
        Environment::Production
    }
    const HINT: &'static str =
        " (reports show production unless ?environment=sandbox is asked for)";
}

/// A read of one environment's data: `?environment=` (or `D`'s default), which must be the
/// key's own: a sandbox key never reads production data, nor the reverse. Carries the query.
pub struct Scoped<D> {
    /// The environment read.
    pub env: Environment,
    /// The whole query string, for the handler's other parameters.
    pub query: HashMap<String, String>,
    default: PhantomData<D>,
}

impl<D: DefaultEnvironment + Send + Sync> FromRequestParts<Arc<App>> for Scoped<D> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let gateway = Gateway::check(app, &parts.headers)?;
        let Query(query) = Query::<HashMap<String, String>>::from_request_parts(parts, app)
            .await
            .map_err(|e| ApiError::new(400, "invalid_query", e.body_text()))?;
        let asked = query.get("environment");
        let env = match asked {
            None => D::default_for(gateway.env),
            Some(e) => Environment::from_wire(e).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_query",
                    "environment",
                    format!("must be sandbox or production, got {e:?}"),
                )
            })?,
        };
        if env != gateway.env {
            let hint = if asked.is_none() { D::HINT } else { "" };
            return Err(ApiError::new(
                403,
                "wrong_environment",
                format!("a {} key cannot read {env} data{hint}", gateway.env),
            ));
        }
        Ok(Scoped {
            env,
            query,
            default: PhantomData,
        })
    }
}

impl<D> Scoped<D> {
    /// 422 naming a query parameter the endpoint does not take (a typo is not silently
    /// ignored); `environment` is always taken.
    pub fn only(&self, names: &[&str]) -> Result<(), ApiError> {
        match self
            .query
            .keys()
            .find(|k| k.as_str() != "environment" && !names.contains(&k.as_str()))
        {
            None => Ok(()),
            Some(k) => Err(ApiError::invalid(
                "invalid_query",
                k.clone(),
                format!(
                    "is not a parameter of this endpoint; it takes {}",
                    names.join(", ")
                ),
            )),
        }
    }

    /// `?name=` as a whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_query",
                        name,
                        format!("must be a whole number from {min} to {max}, got {v:?}"),
                    )
                }),
        }
    }

    /// `?name=` as an RFC 3339 time.
    pub fn time(&self, name: &str) -> Result<Option<aforo_core::Timestamp>, ApiError> {
        self.query
            .get(name)
            .map(|v| {
                aforo_core::time::parse_rfc3339(v)
                    .map_err(|e| ApiError::invalid("invalid_query", name, e.to_string()))
            })
            .transpose()
    }
}
