//! Prices that depend on an event property (the model an LLM call used): a charge's `filter`
//! selects the events it prices by property value, and `dimension` with `prices` writes one
//! charge per value (`{"dimension": "model", "prices": {"gpt-4o": {"unit_amount": "0.00001"},
//! …}}` becomes the charges `<id>:gpt-4o`, … each filtered to its value).

use crate::event::UsageEvent;
use crate::strict_json::{describe, FieldError};
use serde_json::{Map, Value};

/// Property values a charge's events must have (every listed property, any of its values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter(pub Vec<(String, Vec<String>)>);

/// A property's value as the text a filter compares (strings as they are, numbers and
/// booleans as JSON writes them).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
        _ => None,
    }
}

impl Filter {
    /// Whether the charge prices `e`.
    pub fn matches(&self, e: &UsageEvent) -> bool {
        self.0.iter().all(|(prop, values)| {
            e.properties
                .get(prop)
                .and_then(value_text)
                .is_some_and(|v| values.contains(&v))
        })
    }

    /// Whether it selects anything at all (an empty filter prices every event).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads `{"model": ["gpt-4o", "gpt-4o-mini"], "region": "eu"}` at `path`.
    pub fn parse(path: &str, v: Option<&Value>) -> Result<Filter, FieldError> {
        let Some(v) = v else {
            return Ok(Filter::default());
        };
        let map = v.as_object().ok_or_else(|| {
            FieldError::new(
                path,
                format!(
                    "must be an object of property → value or list of values, got {}",
                    describe(v)
                ),
            )
        })?;
        let mut out = Vec::with_capacity(map.len());
        for (prop, want) in map {
            let p = format!("{path}.{prop}");
            let values: Vec<String> = match want {
                Value::Array(list) if !list.is_empty() => list
                    .iter()
                    .map(|x| {
                        value_text(x).ok_or_else(|| {
                            FieldError::new(&p, "values must be strings, numbers or booleans")
                        })
                    })
                    .collect::<Result<_, _>>()?,
                other => vec![value_text(other).ok_or_else(|| {
                    FieldError::new(&p, "must be a value or a non-empty list of values")
                })?],
            };
            out.push((prop.clone(), values));
        }
        Ok(Filter(out))
    }
}

/// A charge as written, or the charges its `dimension` and `prices` stand for, each with the
/// path to name in errors.
pub fn expand(path: &str, v: &Value) -> Result<Vec<(String, Value)>, FieldError> {
    let Some(obj) = v.as_object() else {
        return Ok(vec![(path.to_string(), v.clone())]);
    };
    let (Some(dimension), prices) = (obj.get("dimension"), obj.get("prices")) else {
        if obj.contains_key("prices") {
            return Err(FieldError::new(
                format!("{path}.prices"),
                "prices per value need dimension: the property whose value picks the price",
            ));
        }
        return Ok(vec![(path.to_string(), v.clone())]);
    };
    let dim = dimension
        .as_str()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            FieldError::new(
                format!("{path}.dimension"),
                "must be a property name such as model",
            )
        })?;
    let prices = prices
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            FieldError::new(
                format!("{path}.prices"),
                "is required with dimension: an object of value → the pricing fields for it",
            )
        })?;
    let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
    let mut out = Vec::with_capacity(prices.len());
    for (value, fields) in prices {
        let p = format!("{path}.prices.{value}");
        let fields = fields.as_object().ok_or_else(|| {
            FieldError::new(
                &p,
                "must be an object of pricing fields such as unit_amount",
            )
        })?;
        let mut charge: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "dimension" && k.as_str() != "prices")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in fields {
            if k == "id" || k == "metric" || k == "filter" {
                return Err(FieldError::new(
                    format!("{p}.{k}"),
                    "is the charge's, not a price's: set it beside dimension",
                ));
            }
            charge.insert(k.clone(), v.clone());
        }
        charge.insert("id".into(), Value::from(format!("{id}:{value}")));
        let filter = charge
            .entry("filter")
            .or_insert_with(|| Value::Object(Map::new()));
        match filter {
            Value::Object(f) if !f.contains_key(dim) => {
                f.insert(dim.to_string(), Value::from(value.as_str()));
            }
            _ => {
                return Err(FieldError::new(
                    format!("{path}.filter"),
                    format!("must be an object without {dim:?}, which dimension sets"),
                ))
            }
        }
        out.push((p, Value::Object(charge)));
    }
    Ok(out)
}
