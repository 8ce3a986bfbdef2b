//! Human-written quantities in a pipeline file: durations (`30s`, `5m`) and
//! byte sizes (`256MiB`). Each checks itself while the TOML is parsed, so a
//! bad value is reported at its line and column.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A positive duration written with a unit: `500ms`, `30s`, `5m`, `1h`, or a
/// sum such as `1m30s`. Example: `timeout = "30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "toml::Value", into = "String")]
pub struct DurationSpec(pub Duration);

/// A positive byte size: `1048576`, `512KiB`, `256MiB`, `1GiB` (powers of
/// 1024) or `500KB`, `1MB`, `1GB` (powers of 1000). Example: `memory = "256MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "toml::Value", into = "String")]
pub struct ByteSize(pub u64);

/// The longest deadline a step may ask for; beyond it a typo is likelier than intent.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

impl TryFrom<toml::Value> for DurationSpec {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => return Err(format!("invalid duration `{n}`: give a unit, e.g. \"{n}s\"")),
            other => {
                return Err(format!("invalid duration: expected a string such as \"30s\", found {}", other.type_str()))
            }
        };
        positive_duration(&text, MAX_TIMEOUT, "24h").map(DurationSpec)
    }
}

/// How long a person may take to decide (`[approval.NAME] timeout`):
/// a duration as [`DurationSpec`] writes it, also in days (`3d`, `72h`),
/// up to a year. Example: `timeout = "72h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "toml::Value", into = "String")]
pub struct WaitSpec(pub Duration);

/// The longest an approval may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 60 * 60);

impl TryFrom<toml::Value> for WaitSpec {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let toml::Value::String(text) = value else {
            return Err("invalid duration: expected a string such as \"72h\" or \"3d\"".into());
        };
        positive_duration(&text, MAX_WAIT, "366d").map(WaitSpec)
    }
}

impl fmt::Display for WaitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&DurationSpec(self.0), f)
    }
}

impl From<WaitSpec> for String {
    fn from(w: WaitSpec) -> String {
        w.to_string()
    }
}

/// `text` as a duration above zero and at most `max` (`max_word` as written).
fn positive_duration(text: &str, max: Duration, max_word: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("invalid duration `{text}`: must be greater than zero"));
    }
    if duration > max {
        return Err(format!("invalid duration `{text}`: at most {max_word}"));
    }
    Ok(duration)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration `{text}`: write a number and a unit (ms, s, m, h), e.g. \"30s\" or \"1m30s\"");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

impl TryFrom<toml::Value> for ByteSize {
    type Error = String;
    fn try_from(value: toml::Value) -> Result<Self, String> {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) if n > 0 => return Ok(ByteSize(n.unsigned_abs())),
            toml::Value::Integer(n) => return Err(format!("invalid size `{n}`: must be greater than zero")),
            other => {
                return Err(format!("invalid size: expected a string such as \"256MiB\", found {}", other.type_str()))
            }
        };
        let bad = || {
            format!("invalid size `{text}`: write a number and a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"256MiB\"")
        };
        let trimmed = text.trim();
        let digits = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
        let number: u64 = trimmed[..digits].parse().map_err(|_| bad())?;
        let scale: u64 = match trimmed[digits..].trim() {
            "" | "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        match number.checked_mul(scale) {
            Some(0) => Err(format!("invalid size `{text}`: must be greater than zero")),
            Some(bytes) => Ok(ByteSize(bytes)),
            None => Err(format!("invalid size `{text}`: too large")),
        }
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// `bytes` for people: `812 B`, `4.0 KiB`, `1.4 MiB`, `2.3 GiB` (one
/// decimal, binary units), where [`ByteSize`] prints the exact value a
/// pipeline would be written with.
pub fn human_size(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 || unit == "GiB" {
            return if unit == "B" { format!("{bytes} B") } else { format!("{value:.1} {unit}") };
        }
        value /= 1024.0;
    }
    unreachable!("GiB returns")
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= scale && n.is_multiple_of(scale) {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}B")
    }
}

impl From<DurationSpec> for String {
    fn from(d: DurationSpec) -> String {
        d.to_string()
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_for_people_have_one_decimal_and_binary_units() {
        assert_eq!(super::human_size(812), "812 B");
        assert_eq!(super::human_size(4096), "4.0 KiB");
        assert_eq!(super::human_size(1_468_006), "1.4 MiB");
        assert_eq!(super::human_size(5 << 40), "5120.0 GiB");
    }

    use super::*;

    fn duration(text: &str) -> Result<Duration, String> {
        DurationSpec::try_from(toml::Value::String(text.into())).map(|d| d.0)
    }

    fn size(text: &str) -> Result<u64, String> {
        ByteSize::try_from(toml::Value::String(text.into())).map(|b| b.0)
    }

    #[test]
    fn durations_accept_units_and_sums() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn durations_reject_missing_units_zero_and_junk() {
        assert!(duration("30").unwrap_err().contains("unit"));
        assert!(duration("0s").unwrap_err().contains("greater than zero"));
        assert!(duration("30 seconds").is_err());
        assert!(duration("25h").unwrap_err().contains("at most 24h"));
        let err = DurationSpec::try_from(toml::Value::Integer(30)).unwrap_err();
        assert!(err.contains("\"30s\""), "{err}");
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(size("256MiB"), Ok(256 << 20));
        assert_eq!(size("1GB"), Ok(1_000_000_000));
        assert_eq!(size("4096"), Ok(4096));
    }

    #[test]
    fn sizes_reject_unknown_units_and_zero() {
        assert!(size("256mb").unwrap_err().contains("unit"));
        assert!(size("0MiB").unwrap_err().contains("greater than zero"));
        assert!(size("99999999999999GiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(DurationSpec(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
    }
}
