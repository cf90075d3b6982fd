//! The one duration parser and formatter. Durations as written in lifeos.toml (`500ms`, `30s`, `5m`, `2h`, `7d`, `1w`), with the
//! range each field accepts. Parsing never panics: a value too large for the field, or one
//! that rounds to less than a millisecond, is an error that says what the field takes.

use std::time::Duration;

/// What one duration field accepts.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The field's name in messages.
    pub field: &'static str,
    /// `0s` is meaningful (e.g. no start period).
    pub zero: bool,
    pub max: Duration,
}

const MIN: Duration = Duration::from_millis(1);
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

pub const TIMEOUT: Bounds = Bounds {
    field: "timeout",
    zero: false,
    max: Duration::from_secs(7 * DAY),
};
pub const HEALTH_INTERVAL: Bounds = Bounds {
    field: "health interval",
    zero: false,
    max: Duration::from_secs(HOUR),
};
pub const HEALTH_TIMEOUT: Bounds = Bounds {
    field: "health timeout",
    zero: false,
    max: Duration::from_secs(HOUR),
};
pub const START_PERIOD: Bounds = Bounds {
    field: "health start_period",
    zero: true,
    max: Duration::from_secs(DAY),
};
pub const CACHE_EVERY: Bounds = Bounds {
    field: "cache window",
    zero: false,
    max: Duration::from_secs(400 * DAY),
};

/// `NUMBER UNIT` with a unit of ms, s, m, h, d or w, as a non-negative count of
/// seconds (possibly infinite); `None` when it is not written that way.
fn seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        _ => return None,
    };
    // Digits alone never make NaN; too many make infinity, which is just "too long".
    Some(n * scale)
}

/// A positive duration without a field's bounds (`--older-than`): `None` for anything
/// malformed, zero or too large to represent.
pub fn parse(s: &str) -> Option<Duration> {
    let secs = seconds(s)?;
    let d = Duration::try_from_secs_f64(secs).ok()?;
    (!d.is_zero()).then_some(d)
}

/// A duration for a field, or what is wrong with it (the label of a config error).
pub fn parse_in(s: &str, b: Bounds) -> Result<Duration, String> {
    let shape = "expected a duration such as \"500ms\", \"30s\", \"5m\", \"2h\", \"7d\"";
    let Some(secs) = seconds(s) else {
        return Err(shape.into());
    };
    if secs == 0.0 {
        return if b.zero {
            Ok(Duration::ZERO)
        } else {
            Err(format!("the {} must be more than zero", b.field))
        };
    }
    if secs > b.max.as_secs_f64() {
        return Err(format!("the {} may be at most {}", b.field, show(b.max)));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d >= MIN => Ok(d),
        _ => Err(format!(
            "the {} must be at least 1ms{}",
            b.field,
            if b.zero { " (or 0s)" } else { "" }
        )),
    }
}

/// A duration as a user writes it: `500ms`, `1.5s`, `90s`, `2m`, `7d` (messages, bounds,
/// timeouts and cache windows all say it this way).
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 {
        return if s == 0 {
            format!("{}ms", d.as_millis())
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    if s > 0 && s.is_multiple_of(DAY) {
        format!("{}d", s / DAY)
    } else if s > 0 && s.is_multiple_of(HOUR) {
        format!("{}h", s / HOUR)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_written() {
        assert_eq!(show(Duration::from_millis(500)), "500ms");
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(120)), "2m");
        assert_eq!(show(Duration::from_secs(86400)), "1d");
        assert_eq!(show(Duration::from_secs(7 * 86400)), "7d");
    }

    #[test]
    fn units() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("1.5m"), Some(Duration::from_secs(90)));
        for bad in [
            "ten", "10", "", "s", ".s", "1..2s", "-5s", "1e3s", "5x", "0s",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn values_beyond_any_duration_are_errors_not_panics() {
        let huge = format!("{}s", "9".repeat(400));
        for s in ["99999999999999999999s", "999999999999999d", huge.as_str()] {
            assert_eq!(parse(s), None, "{s}");
        }
        for s in ["99999999999999999999s", "99999999999d", huge.as_str()] {
            assert!(parse_in(s, TIMEOUT).unwrap_err().contains("at most 7d"));
        }
    }

    #[test]
    fn each_field_has_its_range() {
        assert!(parse_in("8d", TIMEOUT).is_err());
        assert!(parse_in("7d", TIMEOUT).is_ok());
        assert!(parse_in("2h", HEALTH_INTERVAL).is_err());
        assert!(parse_in("99999999999d", HEALTH_TIMEOUT).is_err());
        assert!(parse_in("401d", CACHE_EVERY).is_err());
        assert_eq!(parse_in("0s", START_PERIOD), Ok(Duration::ZERO));
        assert!(parse_in("0s", TIMEOUT)
            .unwrap_err()
            .contains("more than zero"));
    }

    #[test]
    fn values_that_round_below_a_millisecond_are_refused() {
        for b in [TIMEOUT, START_PERIOD, CACHE_EVERY] {
            let e = parse_in("0.0000000001s", b).unwrap_err();
            assert!(e.contains("at least 1ms"), "{e}");
        }
        assert_eq!(parse_in("1ms", TIMEOUT), Ok(Duration::from_millis(1)));
    }
}
