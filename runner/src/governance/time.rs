//! Instants as decisions record them: RFC 3339 in UTC to the millisecond
//! (`2026-11-27T21:30:00.000Z`), from and to milliseconds since the Unix epoch.
//! Kept here so that the journal, the approval timeouts and `stats --since`
//! read and write one spelling.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// Now, as RFC 3339 UTC.
pub fn now() -> String {
    format_ms(now_ms())
}

/// `ms` since the epoch as RFC 3339 UTC, to the millisecond.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` (also
/// with a space for `T`, fractional seconds, or a `+00:00` offset) into
/// milliseconds since the epoch; `None` for anything else.
pub fn parse_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (y, m, d) = (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = u64::try_from(days_from_civil(i64::try_from(y).ok()?, m, d)).ok()? * 86_400;
    let mut extra_ms = 0;
    if let Some(time) = time {
        let time = time.strip_suffix(['Z', 'z']).or_else(|| time.strip_suffix("+00:00")).ok_or(()).ok()?;
        let (time, millis) = match time.split_once('.') {
            Some((whole, fraction)) => {
                let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
                (whole, number(&digits)?)
            }
            None => (time, 0),
        };
        let mut hms = time.splitn(3, ':');
        let (h, mi, s) = (number(hms.next()?)?, number(hms.next()?)?, number(hms.next().unwrap_or("0"))?);
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + s;
        extra_ms = millis;
    }
    secs.checked_mul(1000)?.checked_add(extra_ms)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let (m, d) = (i64::try_from(m).unwrap_or(1), i64::try_from(d).unwrap_or(1));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u64::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u64::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_through_their_spelling() {
        for ms in [0, 951_782_400_000, 1_795_815_000_123, 4_102_444_799_999] {
            assert_eq!(parse_ms(&format_ms(ms)), Some(ms), "{}", format_ms(ms));
        }
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dates_and_offsets_parse_and_nonsense_does_not() {
        assert_eq!(parse_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_ms("2026-11-27T21:30:00.123+00:00").map(|ms| ms % 1000), Some(123));
        assert_eq!(parse_ms("2026-11-27T21:30:00.5Z"), parse_ms("2026-11-27T21:30:00Z").map(|ms| ms + 500));
        assert_eq!(parse_ms("2026-11-27 21:30:00Z"), parse_ms("2026-11-27T21:30:00Z"));
        for bad in ["", "yesterday", "2026-13-01", "2026-02-30", "2026-11-27T25:00:00Z", "2026-11-27T10:00:00+02:00"] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }
}
