//! Pricing plans as JSON, validated with errors that name the JSON path
//! (`charges[1].tiers[2].up_to: must be greater than 10`).

use super::dimension::{expand, Filter};
use super::money::minor_units;
use crate::config::is_name;
use crate::strict_json::{describe, index, numbers_as_strings, parse_json, FieldError, ObjReader};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashSet;
#[cfg(test)]
use std::str::FromStr;

/// One tier: `up_to` inclusive (the next tier starts above it), `None` unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Inclusive upper bound.
    pub up_to: Option<Decimal>,
    /// Price per unit in this tier.
    pub unit_amount: Decimal,
    /// Fee for entering this tier (graduated) or for landing in it (volume, stairstep).
    pub flat_amount: Decimal,
}

/// How a charge turns a quantity into money.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Model {
    /// A fixed amount per period, whatever the usage.
    Flat {
        /// The amount.
        amount: Decimal,
    },
    /// Units × price.
    Unit {
        /// Price per unit.
        unit_amount: Decimal,
    },
    /// Whole packages, rounded up: `ceil(units / size) × amount`.
    Package {
        /// Units per package.
        size: Decimal,
        /// Price per package.
        amount: Decimal,
    },
    /// Each tier prices the units inside it; a tier's flat fee once it is entered.
    Graduated(Vec<Tier>),
    /// Every unit at the price of the one tier the total lands in, plus its flat fee.
    Volume(Vec<Tier>),
    /// The flat amount of the tier the total lands in.
    Stairstep(Vec<Tier>),
    /// A rate (percent) on a property's amount per event, plus a fixed fee per paid event.
    Percentage {
        /// Percent, 0..=100.
        rate: Decimal,
        /// Fee per paid event.
        fixed_amount: Decimal,
        /// The first events that are free.
        free_events: u64,
        /// Total amount (of the property) that is free; events stay free while within it.
        free_amount: Option<Decimal>,
    },
}

impl Model {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            Model::Flat { .. } => "flat",
            Model::Unit { .. } => "unit",
            Model::Package { .. } => "package",
            Model::Graduated(_) => "graduated",
            Model::Volume(_) => "volume",
            Model::Stairstep(_) => "stairstep",
            Model::Percentage { .. } => "percentage",
        }
    }
}

/// How events become a charge's quantity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Sum of quantities (the default).
    Sum,
    /// Number of events.
    Count,
    /// Largest quantity.
    Max,
    /// Number of distinct values of a property.
    UniqueCount(String),
}

/// One line of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Unique id, shown on invoice lines.
    pub id: String,
    /// Metric whose events it prices (`None` for flat fees).
    pub metric: Option<String>,
    /// Pricing model.
    pub model: Model,
    /// Aggregation of the metric's events.
    pub aggregation: Aggregation,
    /// Property carrying the amount (percentage).
    pub property: Option<String>,
    /// Free units subtracted from the quantity before pricing.
    pub included: Decimal,
    /// Least amount of the line.
    pub minimum: Option<Decimal>,
    /// Largest amount of the line.
    pub maximum: Option<Decimal>,
    /// Units taken off the quantity before pricing (Orb's usage discount).
    pub usage_discount: Decimal,
    /// Amount taken off the priced line.
    pub amount_discount: Decimal,
    /// Percent taken off the priced line after the amount discount, 0..=100.
    pub percentage_discount: Decimal,
    /// A flat charge billed for the part of the period the subscription covers.
    pub prorated: bool,
    /// Unused included units carried into the next period, at most this many (`Some(None)`:
    /// no cap); `None`: no rollover.
    pub rollover: Option<Option<Decimal>>,
    /// What one unit costs the seller (margin figures).
    pub unit_cost: Option<Decimal>,
    /// The events it prices, by property value (empty: all of its metric's).
    pub filter: Filter,
}

/// A validated pricing plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// ISO 4217 code.
    pub currency: String,
    /// Decimal places of the currency's minor unit.
    pub minor_units: u32,
    /// Charges in invoice order.
    pub charges: Vec<Charge>,
    /// Commitment topped up at the end.
    pub minimum: Option<Decimal>,
    /// Tax in percent, unless the customer has its own.
    pub tax_rate_percent: Option<Decimal>,
    /// Tax included in the prices (backed out) rather than added on top.
    pub tax_inclusive: bool,
    /// Least margin (percent of the net revenue) before an invoice is flagged `margin_guard`.
    pub min_margin_percent: Option<Decimal>,
    /// A customer flagged `margin_guard` is also refused production requests until its margin
    /// is back (`"margin_action": "block"`; default `flag`).
    pub margin_blocks: bool,
}

const PLAN_FIELDS: &[&str] = &[
    "currency",
    "charges",
    "minimum",
    "name",
    "description",
    "tax_rate_percent",
    "tax_behavior",
    "min_margin_percent",
    "margin_action",
];
const CHARGE_FIELDS: &[&str] = &[
    "id",
    "metric",
    "filter",
    "model",
    "aggregation",
    "property",
    "included",
    "minimum",
    "maximum",
    "amount",
    "unit_amount",
    "package_size",
    "package_amount",
    "tiers",
    "rate",
    "fixed_amount",
    "free_events",
    "free_amount",
    "description",
    "adjustments",
    "proration",
    "rollover",
    "unit_cost",
];
const ADJUSTMENTS: &[&str] = &[
    "usage_discount",
    "amount_discount",
    "percentage_discount",
    "minimum",
    "maximum",
];
const TIER_FIELDS: &[&str] = &["up_to", "unit_amount", "flat_amount"];
const MODELS: &[&str] = &[
    "flat",
    "unit",
    "package",
    "graduated",
    "volume",
    "stairstep",
    "percentage",
];

/// Which charge fields each model uses (besides the common ones).
fn model_fields(model: &str) -> &'static [&'static str] {
    match model {
        "flat" => &["amount"],
        "unit" => &["unit_amount"],
        "package" => &["package_size", "package_amount"],
        "graduated" | "volume" | "stairstep" => &["tiers"],
        _ => &["rate", "fixed_amount", "free_events", "free_amount"],
    }
}

const MODEL_SPECIFIC: &[&str] = &[
    "amount",
    "unit_amount",
    "package_size",
    "package_amount",
    "tiers",
    "rate",
    "fixed_amount",
    "free_events",
    "free_amount",
];

/// A non-negative decimal written as a string (numbers are read as strings, every digit kept).
pub(super) fn decimal_at(path: &str, v: &Value) -> Result<Decimal, FieldError> {
    let text = match v {
        Value::String(s) => s.as_str(),
        other => {
            return Err(FieldError::new(
                path,
                format!(
                    "must be a decimal such as \"0.25\", got {}",
                    describe(other)
                ),
            ))
        }
    };
    let d = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    }
    .map_err(|_| {
        FieldError::new(
            path,
            format!("must be a decimal such as \"0.25\", got {text:?}"),
        )
    })?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(FieldError::new(path, format!("must be >= 0, got {text}")));
    }
    Ok(d.normalize())
}

pub(super) fn decimal(r: &ObjReader<'_>, key: &str) -> Result<Option<Decimal>, FieldError> {
    match r.get(key) {
        None => Ok(None),
        Some(v) => decimal_at(&r.field_path(key), v).map(Some),
    }
}

fn required_decimal(r: &ObjReader<'_>, key: &str, model: &str) -> Result<Decimal, FieldError> {
    decimal(r, key)?
        .ok_or_else(|| FieldError::new(r.field_path(key), format!("is required for model {model}")))
}

impl Plan {
    /// Parses and validates a plan from JSON bytes; numbers keep every digit.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FieldError> {
        parse_json("the plan", bytes)?;
        let text = String::from_utf8_lossy(bytes);
        let v = parse_json("the plan", numbers_as_strings(&text).as_bytes())?;
        Self::from_value(&v)
    }

    /// Validates a plan whose numbers are strings (see `numbers_as_strings`).
    pub fn from_value(v: &Value) -> Result<Self, FieldError> {
        let r = ObjReader::new("", v, PLAN_FIELDS)?;
        let currency = r.required_string("currency")?.to_string();
        let minor = minor_units(&currency).ok_or_else(|| {
            FieldError::new(
                "currency",
                format!("must be an ISO 4217 code such as USD, EUR or JPY, got {currency:?}"),
            )
        })?;
        let list = r
            .array("charges")?
            .ok_or_else(|| FieldError::new("charges", "is required: a list of charges"))?;
        if list.is_empty() {
            return Err(FieldError::new("charges", "must have at least one charge"));
        }
        let mut ids = HashSet::new();
        let mut charges = Vec::with_capacity(list.len());
        for (i, written) in list.iter().enumerate() {
            for (path, c) in expand(&index("charges", i), written)? {
                let charge = parse_charge(&path, &c)?;
                if !ids.insert(charge.id.clone()) {
                    return Err(FieldError::new(
                        format!("{path}.id"),
                        format!(
                            "{:?} is used by an earlier charge; ids must be unique",
                            charge.id
                        ),
                    ));
                }
                charges.push(charge);
            }
        }
        Ok(Plan {
            currency,
            minor_units: minor,
            charges,
            minimum: decimal(&r, "minimum")?,
            tax_rate_percent: percent(&r, "tax_rate_percent")?,
            tax_inclusive: r.choice("tax_behavior", &["exclusive", "inclusive"])?
                == Some("inclusive"),
            min_margin_percent: percent(&r, "min_margin_percent")?,
            margin_blocks: r.choice("margin_action", &["flag", "block"])? == Some("block"),
        })
    }
}

fn parse_charge(path: &str, v: &Value) -> Result<Charge, FieldError> {
    let r = ObjReader::new(path, v, CHARGE_FIELDS)?;
    let id = r.required_string("id")?;
    if !is_name(id) {
        return Err(FieldError::new(
            r.field_path("id"),
            format!("must be 1..=128 letters, digits or _-.: characters, got {id:?}"),
        ));
    }
    let model_name = r.choice("model", MODELS)?.ok_or_else(|| {
        FieldError::new(
            r.field_path("model"),
            format!("is required: one of {}", MODELS.join(", ")),
        )
    })?;
    for k in MODEL_SPECIFIC {
        if r.get(k).is_some() && !model_fields(model_name).contains(k) {
            return Err(FieldError::new(
                r.field_path(k),
                format!("is not used by model {model_name}"),
            ));
        }
    }
    let metric = match r.string("metric")? {
        Some(m) if !is_name(m) => {
            return Err(FieldError::new(
                r.field_path("metric"),
                format!("must be 1..=128 letters, digits or _-.: characters, got {m:?}"),
            ))
        }
        Some(m) => Some(m.to_string()),
        None if model_name == "flat" => None,
        None => {
            return Err(FieldError::new(
                r.field_path("metric"),
                format!("is required for model {model_name}"),
            ))
        }
    };
    let property = r.non_empty_string("property")?.map(str::to_string);
    let aggregation = match r.choice("aggregation", &["sum", "count", "max", "unique_count"])? {
        None | Some("sum") => Aggregation::Sum,
        Some("count") => Aggregation::Count,
        Some("max") => Aggregation::Max,
        Some(_) => Aggregation::UniqueCount(property.clone().ok_or_else(|| {
            FieldError::new(r.field_path("property"), "is required with aggregation unique_count: the property whose distinct values are counted")
        })?),
    };
    let model = match model_name {
        "flat" => Model::Flat {
            amount: required_decimal(&r, "amount", "flat")?,
        },
        "unit" => Model::Unit {
            unit_amount: required_decimal(&r, "unit_amount", "unit")?,
        },
        "package" => {
            let size = required_decimal(&r, "package_size", "package")?;
            if size.is_zero() {
                return Err(FieldError::new(
                    r.field_path("package_size"),
                    "must be greater than 0",
                ));
            }
            Model::Package {
                size,
                amount: required_decimal(&r, "package_amount", "package")?,
            }
        }
        "graduated" => Model::Graduated(tiers(&r, model_name)?),
        "volume" => Model::Volume(tiers(&r, model_name)?),
        "stairstep" => Model::Stairstep(tiers(&r, model_name)?),
        _ => {
            if property.is_none() {
                return Err(FieldError::new(
                    r.field_path("property"),
                    "is required for model percentage: the event property carrying the amount",
                ));
            }
            if r.get("aggregation").is_some() {
                return Err(FieldError::new(
                    r.field_path("aggregation"),
                    "is not used by model percentage (it rates each event)",
                ));
            }
            let rate = required_decimal(&r, "rate", "percentage")?;
            if rate > Decimal::ONE_HUNDRED {
                return Err(FieldError::new(
                    r.field_path("rate"),
                    format!("is a percentage and must be 0..=100, got {rate}"),
                ));
            }
            let free_events = match decimal(&r, "free_events")? {
                None => 0,
                Some(d) if d.fract().is_zero() => u64::try_from(d)
                    .map_err(|_| FieldError::new(r.field_path("free_events"), "is too large"))?,
                Some(d) => {
                    return Err(FieldError::new(
                        r.field_path("free_events"),
                        format!("must be a whole number, got {d}"),
                    ))
                }
            };
            Model::Percentage {
                rate,
                fixed_amount: decimal(&r, "fixed_amount")?.unwrap_or(Decimal::ZERO),
                free_events,
                free_amount: decimal(&r, "free_amount")?,
            }
        }
    };
    let included = decimal(&r, "included")?.unwrap_or(Decimal::ZERO);
    if !included.is_zero() && matches!(model, Model::Flat { .. } | Model::Percentage { .. }) {
        return Err(FieldError::new(
            r.field_path("included"),
            format!(
                "is not used by model {model_name} (percentage has free_events and free_amount)"
            ),
        ));
    }
    let adj = adjustments(&r)?;
    let shorthand = |k: &str, from_list: Option<Decimal>| -> Result<Option<Decimal>, FieldError> {
        match (decimal(&r, k)?, from_list) {
            (Some(_), Some(_)) => Err(FieldError::new(
                r.field_path(k),
                format!("is given twice: here and as an adjustment of type {k}; keep one"),
            )),
            (a, b) => Ok(a.or(b)),
        }
    };
    let minimum = shorthand("minimum", adj.minimum)?;
    let maximum = shorthand("maximum", adj.maximum)?;
    let prorated = match r.choice("proration", &["none", "by_duration"])? {
        Some("by_duration") if !matches!(model, Model::Flat { .. }) => {
            return Err(FieldError::new(
                r.field_path("proration"),
                format!("by_duration prorates flat fees only, not model {model_name}"),
            ))
        }
        p => p == Some("by_duration"),
    };
    let rollover = match r.get("rollover") {
        None | Some(Value::Null) => None,
        Some(v) => {
            if included.is_zero() {
                return Err(FieldError::new(
                    r.field_path("rollover"),
                    "rolls unused included units over: set included too",
                ));
            }
            let rr = ObjReader::new(&r.field_path("rollover"), v, &["max"])?;
            Some(decimal(&rr, "max")?)
        }
    };
    if let (Some(lo), Some(hi)) = (minimum, maximum) {
        if hi < lo {
            return Err(FieldError::new(
                r.field_path("maximum"),
                format!("must be >= minimum ({lo}), got {hi}"),
            ));
        }
    }
    Ok(Charge {
        id: id.to_string(),
        metric,
        model,
        aggregation,
        property,
        included,
        minimum,
        maximum,
        usage_discount: adj.usage_discount,
        amount_discount: adj.amount_discount,
        percentage_discount: adj.percentage_discount,
        prorated,
        rollover,
        unit_cost: decimal(&r, "unit_cost")?,
        filter: Filter::parse(&r.field_path("filter"), r.get("filter"))?,
    })
}

/// A percent, 0..=100.
pub(super) fn percent(r: &ObjReader<'_>, key: &str) -> Result<Option<Decimal>, FieldError> {
    match decimal(r, key)? {
        Some(p) if p > Decimal::ONE_HUNDRED => Err(FieldError::new(
            r.field_path(key),
            format!("is a percentage and must be 0..=100, got {p}"),
        )),
        p => Ok(p),
    }
}

/// A charge's `adjustments`, each type at most once; applied in one fixed order whatever the
/// list's (Orb's): usage discount, amount discount, percentage discount, minimum, maximum.
#[derive(Default)]
struct Adjustments {
    usage_discount: Decimal,
    amount_discount: Decimal,
    percentage_discount: Decimal,
    minimum: Option<Decimal>,
    maximum: Option<Decimal>,
}

fn adjustments(r: &ObjReader<'_>) -> Result<Adjustments, FieldError> {
    let mut out = Adjustments::default();
    let Some(list) = r.array("adjustments")? else {
        return Ok(out);
    };
    let mut seen = HashSet::new();
    for (i, a) in list.iter().enumerate() {
        let path = index(&r.field_path("adjustments"), i);
        let probe = ObjReader::new(&path, a, &["type", "quantity", "amount", "percent"])?;
        let kind = probe.choice("type", ADJUSTMENTS)?.ok_or_else(|| {
            FieldError::new(
                probe.field_path("type"),
                format!("is required: one of {}", ADJUSTMENTS.join(", ")),
            )
        })?;
        if !seen.insert(kind) {
            return Err(FieldError::new(
                probe.field_path("type"),
                format!("{kind} is given twice; each adjustment type applies once"),
            ));
        }
        let field = match kind {
            "usage_discount" => "quantity",
            "percentage_discount" => "percent",
            _ => "amount",
        };
        let fields: &'static [&'static str] = match field {
            "quantity" => &["type", "quantity"],
            "percent" => &["type", "percent"],
            _ => &["type", "amount"],
        };
        let ar = ObjReader::new(&path, a, fields)?;
        let value = decimal(&ar, field)?.ok_or_else(|| {
            FieldError::new(ar.field_path(field), format!("is required for {kind}"))
        })?;
        match kind {
            "usage_discount" => out.usage_discount = value,
            "amount_discount" => out.amount_discount = value,
            "percentage_discount" => {
                out.percentage_discount = percent(&ar, field)?.unwrap_or(value);
            }
            "minimum" => out.minimum = Some(value),
            _ => out.maximum = Some(value),
        }
    }
    Ok(out)
}

fn tiers(r: &ObjReader<'_>, model: &str) -> Result<Vec<Tier>, FieldError> {
    let list = r.array("tiers")?.ok_or_else(|| {
        FieldError::new(
            r.field_path("tiers"),
            format!("is required for model {model}"),
        )
    })?;
    if list.is_empty() {
        return Err(FieldError::new(
            r.field_path("tiers"),
            "must have at least one tier",
        ));
    }
    let base = r.field_path("tiers");
    let mut out: Vec<Tier> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = index(&base, i);
        let tr = ObjReader::new(&path, t, TIER_FIELDS)?;
        let up_to = decimal(&tr, "up_to")?;
        let last = i + 1 == list.len();
        match (up_to, out.last().and_then(|p| p.up_to), last) {
            (None, _, false) => {
                return Err(FieldError::new(
                    tr.field_path("up_to"),
                    "only the last tier may be unbounded (null)",
                ))
            }
            (Some(_), _, true) => {
                return Err(FieldError::new(
                    tr.field_path("up_to"),
                    "the last tier must be unbounded: set up_to to null",
                ))
            }
            (Some(u), Some(prev), _) if u <= prev => {
                return Err(FieldError::new(
                    tr.field_path("up_to"),
                    format!("must be greater than {prev}"),
                ))
            }
            (Some(u), None, _) if u.is_zero() && i == 0 && model == "stairstep" => {
                return Err(FieldError::new(
                    tr.field_path("up_to"),
                    "must be greater than 0",
                ))
            }
            _ => {}
        }
        let unit_amount = decimal(&tr, "unit_amount")?;
        let flat_amount = decimal(&tr, "flat_amount")?;
        if model == "stairstep" {
            if unit_amount.is_some() {
                return Err(FieldError::new(
                    tr.field_path("unit_amount"),
                    "is not used by stairstep tiers (they have a flat_amount)",
                ));
            }
            if flat_amount.is_none() {
                return Err(FieldError::new(
                    tr.field_path("flat_amount"),
                    "is required for stairstep tiers",
                ));
            }
        } else if unit_amount.is_none() && flat_amount.is_none() {
            return Err(FieldError::new(
                &path,
                "needs unit_amount, flat_amount or both",
            ));
        }
        out.push(Tier {
            up_to,
            unit_amount: unit_amount.unwrap_or(Decimal::ZERO),
            flat_amount: flat_amount.unwrap_or(Decimal::ZERO),
        });
    }
    Ok(out)
}

/// Parses a decimal literal in tests.
#[cfg(test)]
pub(crate) fn dec(text: &str) -> Option<Decimal> {
    Decimal::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(plan: &str) -> String {
        Plan::from_json(plan.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn a_full_plan_parses_with_exact_numbers() {
        let p = Plan::from_json(br#"{"currency": "USD", "minimum": 100, "charges": [
            {"id": "base", "model": "flat", "amount": 49},
            {"id": "calls", "metric": "api_calls", "model": "unit", "unit_amount": 0.12345678901234567, "included": 1000},
            {"id": "tok", "metric": "tokens", "model": "graduated", "tiers": [{"up_to": 10, "unit_amount": "1"}, {"up_to": null, "unit_amount": "0.5"}]}
        ]}"#).unwrap();
        assert_eq!(p.minor_units, 2);
        assert_eq!(p.minimum, dec("100"));
        assert_eq!(
            p.charges[1].model,
            Model::Unit {
                unit_amount: dec("0.12345678901234567").unwrap()
            }
        );
        assert_eq!(p.charges[1].included, dec("1000").unwrap());
    }

    #[test]
    fn errors_name_the_json_path() {
        let tiers = |t: &str| {
            format!(
                r#"{{"currency":"USD","charges":[{{"id":"a","model":"flat","amount":1}},{{"id":"b","metric":"m","model":"graduated","tiers":{t}}}]}}"#
            )
        };
        assert_eq!(
            err(&tiers(
                r#"[{"up_to":5,"unit_amount":1},{"up_to":10,"unit_amount":1},{"up_to":10,"unit_amount":1},{"up_to":null,"unit_amount":1}]"#
            )),
            "charges[1].tiers[2].up_to: must be greater than 10"
        );
        assert_eq!(
            err(&tiers(
                r#"[{"up_to":null,"unit_amount":1},{"up_to":null,"unit_amount":1}]"#
            )),
            "charges[1].tiers[0].up_to: only the last tier may be unbounded (null)"
        );
        assert_eq!(
            err(&tiers(r#"[{"up_to":5,"unit_amount":1}]"#)),
            "charges[1].tiers[0].up_to: the last tier must be unbounded: set up_to to null"
        );
        assert!(err(&tiers(r#"[{"up_to":null,"unit_amount":-1}]"#))
            .starts_with("charges[1].tiers[0].unit_amount: must be >= 0"));
        assert!(err(&tiers(r#"[{"up_to":null,"unt_amount":1}]"#))
            .contains("did you mean \"unit_amount\""));
        assert!(
            err(r#"{"currency":"USDX","charges":[{"id":"a","model":"flat","amount":1}]}"#)
                .starts_with("currency:")
        );
        assert_eq!(
            err(r#"{"currency":"USD","charges":[]}"#),
            "charges: must have at least one charge"
        );
        assert!(
            err(r#"{"currency":"USD","charges":[{"id":"a","model":"unit"}]}"#)
                .starts_with("charges[0].metric: is required")
        );
        assert!(
            err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"unit"}]}"#)
                .starts_with("charges[0].unit_amount: is required")
        );
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"unit","unit_amount":1,"tiers":[]}]}"#).starts_with("charges[0].tiers: is not used by model unit"));
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"unit","unit_amount":1,"minimum":5,"maximum":2}]}"#).starts_with("charges[0].maximum: must be >= minimum"));
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"package","package_size":0,"package_amount":1}]}"#).starts_with("charges[0].package_size"));
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","model":"flat","amount":1},{"id":"a","model":"flat","amount":1}]}"#).starts_with("charges[1].id"));
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"percentage","rate":1}]}"#).starts_with("charges[0].property"));
        assert!(err(r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"unit","unit_amount":1,"aggregation":"unique_count"}]}"#).starts_with("charges[0].property"));
        assert!(err("{\"currency\": ").contains("line 1"));
    }
}
