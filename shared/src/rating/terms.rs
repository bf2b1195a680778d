//! A customer's billing terms for a period: who is billed (with or without usage), their
//! service period (proration), tax rate, coupons, prepaid credits and included units rolled
//! over from the last period. Read from `customers.json` (`aforo-replay rate --customers`) or
//! the agent's catalog, with errors that name the JSON path.

use super::plan::{decimal, decimal_at, percent};
use crate::environment::Environment;
use crate::strict_json::{index, numbers_as_strings, parse_json, FieldError, ObjReader};
use crate::time::{parse_rfc3339, Timestamp};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// How much a coupon takes off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CouponOff {
    /// A fixed amount (what exceeds the invoice is dropped, as Stripe does).
    Amount(Decimal),
    /// A percent of what is left, 0..=100.
    Percent(Decimal),
}

/// For how many periods a coupon applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CouponDuration {
    /// The first period only.
    Once,
    /// Every period.
    Forever,
    /// The first N periods.
    Repeating(u32),
}

/// A coupon applied to a customer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coupon {
    /// Shown on the invoice.
    pub id: String,
    /// What it takes off.
    pub off: CouponOff,
    /// For how long.
    pub duration: CouponDuration,
    /// Periods it was already applied in (the invoice says whether it applies to this one).
    pub periods_used: u32,
}

impl Coupon {
    /// Whether it applies to the invoice being made.
    pub fn applies(&self) -> bool {
        match self.duration {
            CouponDuration::Once => self.periods_used == 0,
            CouponDuration::Forever => true,
            CouponDuration::Repeating(n) => self.periods_used < n,
        }
    }
}

/// One customer billed in the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    /// The customer id events carry.
    pub id: String,
    /// Where it is billed (a sandbox invoice is a simulation).
    pub environment: Environment,
    /// The plan's name, checked against the plan rated.
    pub plan: Option<String>,
    /// `[start, end)` the subscription covers; `None`: the whole period.
    pub service_period: Option<(Timestamp, Timestamp)>,
    /// Tax in percent, instead of the plan's.
    pub tax_rate_percent: Option<Decimal>,
    /// In the order given: each applies to what the ones before left.
    pub coupons: Vec<Coupon>,
    /// Credits bought in advance, applied after tax.
    pub prepaid_credits: Decimal,
    /// Least margin in percent, instead of the plan's.
    pub min_margin_percent: Option<Decimal>,
    /// Included units of a charge (by id) unused last period and carried into this one.
    pub rollover_in: BTreeMap<String, Decimal>,
}

const FILE: &[&str] = &["customers"];
const CUSTOMER: &[&str] = &[
    "id",
    "environment",
    "plan",
    "service_period",
    "tax_rate_percent",
    "coupons",
    "prepaid_credits",
    "min_margin_percent",
    "rollover_in",
];
const COUPON: &[&str] = &[
    "id",
    "percent_off",
    "amount_off",
    "duration",
    "periods",
    "periods_used",
];

fn whole(r: &ObjReader<'_>, key: &str) -> Result<Option<u32>, FieldError> {
    match decimal(r, key)? {
        None => Ok(None),
        Some(d) if d.fract().is_zero() => u32::try_from(d)
            .map(Some)
            .map_err(|_| FieldError::new(r.field_path(key), "is too large")),
        Some(d) => Err(FieldError::new(
            r.field_path(key),
            format!("must be a whole number, got {d}"),
        )),
    }
}

fn time(r: &ObjReader<'_>, key: &str) -> Result<Timestamp, FieldError> {
    let s = r.required_string(key)?;
    parse_rfc3339(s).map_err(|e| FieldError::new(r.field_path(key), e.to_string()))
}

impl Terms {
    /// Parses `{"customers": [...]}`; numbers keep every digit.
    pub fn list_from_json(bytes: &[u8]) -> Result<Vec<Terms>, FieldError> {
        parse_json("the customers file", bytes)?;
        let text = String::from_utf8_lossy(bytes);
        let v = parse_json("the customers file", numbers_as_strings(&text).as_bytes())?;
        let r = ObjReader::new("", &v, FILE)?;
        let list = r.array("customers")?.ok_or_else(|| {
            FieldError::new("customers", "is required: a list of the customers billed")
        })?;
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for (i, c) in list.iter().enumerate() {
            let t = Terms::from_value(&index("customers", i), c)?;
            if !seen.insert((t.environment, t.id.clone())) {
                return Err(FieldError::new(
                    format!("{}.id", index("customers", i)),
                    format!("{:?} in {} is listed twice", t.id, t.environment),
                ));
            }
            out.push(t);
        }
        Ok(out)
    }

    /// A catalog customer's `billing` object as its terms in `environment` (numbers may be
    /// JSON numbers or strings; every digit is kept).
    pub fn from_billing(
        path: &str,
        id: &str,
        environment: Environment,
        billing: &Value,
    ) -> Result<Terms, FieldError> {
        let text = numbers_as_strings(&billing.to_string());
        let mut v = parse_json("the billing terms", text.as_bytes())?;
        if let Some(o) = v.as_object_mut() {
            for k in ["id", "environment"] {
                if o.contains_key(k) {
                    return Err(FieldError::new(
                        crate::strict_json::join(path, k),
                        "is the customer's own: leave it out of billing",
                    ));
                }
            }
            o.insert("id".into(), Value::from(id));
            o.insert("environment".into(), Value::from(environment.as_str()));
        }
        Terms::from_value(path, &v)
    }

    /// One customer's terms (numbers as strings).
    pub fn from_value(path: &str, v: &Value) -> Result<Terms, FieldError> {
        let r = ObjReader::new(path, v, CUSTOMER)?;
        let id = r.required_string("id")?.to_string();
        let environment = match r.choice("environment", &["sandbox", "production"])? {
            Some("production") => Environment::Production,
            _ => Environment::Sandbox,
        };
        let service_period = match r.get("service_period") {
            None | Some(Value::Null) => None,
            Some(sp) => {
                let sr = ObjReader::new(&r.field_path("service_period"), sp, &["start", "end"])?;
                let (start, end) = (time(&sr, "start")?, time(&sr, "end")?);
                if end <= start {
                    return Err(FieldError::new(sr.field_path("end"), "must be after start"));
                }
                Some((start, end))
            }
        };
        let mut coupons = Vec::new();
        for (i, c) in r.array("coupons")?.into_iter().flatten().enumerate() {
            coupons.push(coupon(&index(&r.field_path("coupons"), i), c)?);
        }
        let mut rollover_in = BTreeMap::new();
        if let Some(obj) = r.get("rollover_in") {
            let path = r.field_path("rollover_in");
            let map = obj
                .as_object()
                .ok_or_else(|| FieldError::new(&path, "must be an object of charge id → units"))?;
            for (charge, units) in map {
                rollover_in.insert(
                    charge.clone(),
                    decimal_at(&crate::strict_json::join(&path, charge), units)?,
                );
            }
        }
        Ok(Terms {
            id,
            environment,
            plan: r.string("plan")?.map(str::to_string),
            service_period,
            tax_rate_percent: percent(&r, "tax_rate_percent")?,
            coupons,
            prepaid_credits: decimal(&r, "prepaid_credits")?.unwrap_or(Decimal::ZERO),
            min_margin_percent: percent(&r, "min_margin_percent")?,
            rollover_in,
        })
    }
}

fn coupon(path: &str, v: &Value) -> Result<Coupon, FieldError> {
    let r = ObjReader::new(path, v, COUPON)?;
    let id = r.required_string("id")?.to_string();
    let off = match (percent(&r, "percent_off")?, decimal(&r, "amount_off")?) {
        (Some(p), None) => CouponOff::Percent(p),
        (None, Some(a)) => CouponOff::Amount(a),
        _ => {
            return Err(FieldError::new(
                path,
                "needs exactly one of percent_off or amount_off",
            ))
        }
    };
    let duration = match r.choice("duration", &["once", "forever", "repeating"])? {
        None | Some("once") => CouponDuration::Once,
        Some("forever") => CouponDuration::Forever,
        Some(_) => CouponDuration::Repeating(whole(&r, "periods")?.ok_or_else(|| {
            FieldError::new(
                r.field_path("periods"),
                "is required with duration repeating: the number of periods",
            )
        })?),
    };
    if r.get("periods").is_some() && !matches!(duration, CouponDuration::Repeating(_)) {
        return Err(FieldError::new(
            r.field_path("periods"),
            "is used with duration repeating only",
        ));
    }
    Ok(Coupon {
        id,
        off,
        duration,
        periods_used: whole(&r, "periods_used")?.unwrap_or(0),
    })
}
