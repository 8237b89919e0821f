//! Mesos duration strings: `100ns`, `5us`, `10ms`, `5secs`, `1mins`, `2hrs`, `3days`,
//! `1weeks` (a number, possibly fractional, and a unit).

use std::time::Duration;

const UNITS: [(&str, f64); 8] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("ms", 1e-3),
    ("secs", 1.0),
    ("mins", 60.0),
    ("hrs", 3600.0),
    ("days", 86400.0),
    ("weeks", 604800.0),
];

/// Parses a Mesos duration string.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("'{text}' has no unit (use ns, us, ms, secs, mins, hrs, days or weeks)")
        })?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a number"))?;
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, scale)| *scale)
        .ok_or_else(|| format!("'{unit}' in '{text}' is not a duration unit (use ns, us, ms, secs, mins, hrs, days or weeks)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("'{text}': {e}"))
}

/// Formats a duration the way Mesos prints it (`5secs`, `100ms`).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs_f64();
    for (name, scale) in UNITS.iter().rev() {
        if secs >= *scale && (secs / scale).fract().abs() < 1e-9 {
            return format!("{}{}", (secs / scale).round() as u64, name);
        }
    }
    format!("{}ns", d.as_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("5secs").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("1.5mins").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse("2weeks").unwrap(), Duration::from_secs(1_209_600));
        assert!(parse("5").is_err());
        assert!(parse("5years").is_err());
        assert!(parse("secs").is_err());
    }

    #[test]
    fn formats_round_trip() {
        for d in ["5secs", "100ms", "10mins", "3days", "7ns"] {
            assert_eq!(format(parse(d).unwrap()), d);
        }
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
