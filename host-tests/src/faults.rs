//! Scripted ingest faults: `0s-30s:503,60s-65s:timeout,90s-91s:429`, times relative to the
//! start of the run.
//!
//! Kinds: an HTTP status (`503`, `500`, `401`…); `429` (with `Retry-After: 1`) or `429/5`
//! (`Retry-After: 5`); `timeout` (no answer: the caller's timeout fires); `delay=2s` (answers
//! normally, 2 s late); `partial` (answers 202 but rejects every other event).

use std::fmt;

/// What the ingest does during a fault window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with an empty body.
    Status(u16),
    /// Answer 429 with this `Retry-After` (seconds).
    TooMany(u64),
    /// Never answer.
    Timeout,
    /// Answer normally after this many milliseconds.
    Delay(u64),
    /// Reject every other event of each batch.
    Partial,
}

/// One fault window `[from_ms, to_ms)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Start, ms after the run start.
    pub from_ms: u64,
    /// End (exclusive).
    pub to_ms: u64,
    /// What happens.
    pub kind: FaultKind,
}

/// A fault spec that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpecError(pub String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--ingest-faults: {} (expected e.g. 0s-30s:503,60s-65s:timeout,90s-91s:429)",
            self.0
        )
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a signed duration such as `+6m` or `-90s` (how far the gateway's clock runs ahead of
/// the ingest's; negative: behind).
pub fn parse_skew_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, d) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let ms = i64::try_from(parse_duration_ms(d)?).ok()?;
    Some(if neg { -ms } else { ms })
}

/// Parses a comma-separated fault spec.
pub fn parse_faults(spec: &str) -> Result<Vec<Fault>, FaultSpecError> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (range, kind) = part.split_once(':').ok_or_else(|| {
            FaultSpecError(format!(
                "{part:?} lacks ':' between the time range and the fault"
            ))
        })?;
        let (a, b) = range
            .split_once('-')
            .ok_or_else(|| FaultSpecError(format!("{range:?} is not a range like 10s-20s")))?;
        let from_ms = parse_duration_ms(a)
            .ok_or_else(|| FaultSpecError(format!("{a:?} is not a duration")))?;
        let to_ms = parse_duration_ms(b)
            .ok_or_else(|| FaultSpecError(format!("{b:?} is not a duration")))?;
        if to_ms <= from_ms {
            return Err(FaultSpecError(format!("{range:?} ends before it starts")));
        }
        let kind = match kind.trim() {
            "timeout" => FaultKind::Timeout,
            "partial" => FaultKind::Partial,
            k if k.starts_with("delay=") => FaultKind::Delay(
                parse_duration_ms(&k[6..]).ok_or_else(|| FaultSpecError(format!("{k:?}: the delay is not a duration")))?,
            ),
            k if k.starts_with("429/") => FaultKind::TooMany(
                k[4..].parse().map_err(|_| FaultSpecError(format!("{k:?}: Retry-After must be whole seconds")))?,
            ),
            "429" => FaultKind::TooMany(1),
            k => match k.parse::<u16>() {
                Ok(s) if (400..=599).contains(&s) => FaultKind::Status(s),
                _ => {
                    return Err(FaultSpecError(format!(
                        "{k:?} is not a fault: use a 4xx/5xx status, 429/<secs>, timeout, delay=<dur> or partial"
                    )))
                }
            },
        };
        out.push(Fault {
            from_ms,
            to_ms,
            kind,
        });
    }
    Ok(out)
}

/// The fault active `elapsed_ms` after the start, if any (the first listed wins).
pub fn active(faults: &[Fault], elapsed_ms: u64) -> Option<&FaultKind> {
    faults
        .iter()
        .find(|f| (f.from_ms..f.to_ms).contains(&elapsed_ms))
        .map(|f| &f.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let f = parse_faults(
            "0s-30s:503, 60s-65s:timeout,90s-91s:429,100s-2m:429/7,2m-3m:delay=2s,3m-4m:partial",
        )
        .unwrap();
        assert_eq!(
            f[0],
            Fault {
                from_ms: 0,
                to_ms: 30_000,
                kind: FaultKind::Status(503)
            }
        );
        assert_eq!(f[1].kind, FaultKind::Timeout);
        assert_eq!(f[2].kind, FaultKind::TooMany(1));
        assert_eq!(
            f[3],
            Fault {
                from_ms: 100_000,
                to_ms: 120_000,
                kind: FaultKind::TooMany(7)
            }
        );
        assert_eq!(f[4].kind, FaultKind::Delay(2_000));
        assert_eq!(f[5].kind, FaultKind::Partial);
        assert_eq!(active(&f, 29_999), Some(&FaultKind::Status(503)));
        assert_eq!(active(&f, 30_000), None);
    }

    #[test]
    fn bad_specs_say_what() {
        for bad in [
            "0s-30s",
            "30s-10s:503",
            "0s-1s:200",
            "0s-1s:teapot",
            "x-1s:503",
            "0s-1s:429/x",
        ] {
            assert!(parse_faults(bad).is_err(), "{bad}");
        }
    }
}
