//! Timestamps.
//!
//! A [`Timestamp`] is nanoseconds since the Unix epoch, stamped by the gateway on each
//! command (the engine never reads a clock). The API renders it as RFC 3339 UTC with
//! microseconds: `2026-11-21T10:00:00.123456Z`.

use std::fmt;

/// Nanoseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time (for the gateway; never called inside the engine).
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }

    /// The UTC calendar month it falls in: (year, month 1-12).
    pub fn year_month(self) -> (i64, u32) {
        let days = self.0.div_euclid(86_400 * 1_000_000_000);
        let (y, m, _) = civil_from_days(days);
        (y, m)
    }

    /// Microseconds since the epoch (the API's and the stores' precision), rounded down.
    pub fn as_micros(self) -> i64 {
        self.0.div_euclid(1_000)
    }

    /// RFC 3339 UTC with microseconds.
    pub fn to_rfc3339(self) -> String {
        self.to_string()
    }

    /// Parses what [`Timestamp::to_rfc3339`] renders (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`,
    /// UTC only), for clients of the API such as the load tester.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let rest = s.get(19..)?.strip_suffix('Z')?;
        let nanos = match rest.strip_prefix('.') {
            None if rest.is_empty() => 0,
            Some(frac) if (1..=9).contains(&frac.len()) && frac.bytes().all(|c| c.is_ascii_digit()) => {
                frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        Some(Self((days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000_000 + nanos))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0.div_euclid(1_000);
        let secs = micros.div_euclid(1_000_000);
        let sub = micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{sub:06}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
    }
}

/// Days since the epoch → (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since the epoch (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_micros() {
        assert_eq!(Timestamp(0).year_month(), (1970, 1));
        assert_eq!(Timestamp(-1).year_month(), (1969, 12));
        assert_eq!(Timestamp(1_795_255_200_123_456_789).year_month(), (2026, 11));
        assert_eq!(Timestamp(1_795_255_200_123_456_789).as_micros(), 1_795_255_200_123_456);
        assert_eq!(Timestamp(-1).as_micros(), -1);
    }

    #[test]
    fn renders_rfc3339_with_micros() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // 2026-11-21T10:00:00.123456Z
        assert_eq!(Timestamp(1_795_255_200_123_456_789).to_string(), "2026-11-21T10:00:00.123456Z");
        assert_eq!(Timestamp(951_782_400_000_000_000).to_string(), "2000-02-29T00:00:00.000000Z");
        assert_eq!(Timestamp(-1_000).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_it_renders() {
        for ns in [0, 1_795_255_200_123_456_000, 951_782_400_000_000_000, -1_000, 4_102_444_799_999_999_000] {
            let t = Timestamp(ns);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-11-21T10:00:00Z"), Some(Timestamp(1_795_255_200_000_000_000)));
        assert_eq!(Timestamp::parse_rfc3339("2026-11-21T10:00:00.5Z"), Some(Timestamp(1_795_255_200_500_000_000)));
        for bad in ["", "2026-11-21 10:00:00Z", "2026-13-21T10:00:00Z", "2026-11-21T10:00:00", "2026-11-21T10:00:00.Z"]
        {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
