//! Time: the clock, FHIR instants and HTTP dates.

use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    let now = OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A FHIR instant with millisecond precision in UTC: `2026-11-23T09:30:00.123Z`.
pub fn instant(ms: i64) -> String {
    let f =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at(ms).format(&f).unwrap_or_default()
}

/// An HTTP date for `Last-Modified`: `Mon, 23 Nov 2026 09:30:00 GMT`.
pub fn http_date(ms: i64) -> String {
    let f = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    at(ms).format(&f).unwrap_or_default()
}

/// Parse a FHIR `instant`, `dateTime` or `date` (as the start of the period it names) to
/// milliseconds since the epoch. Partial dates without a time are taken in UTC.
pub fn parse_fhir_datetime(s: &str) -> Option<i64> {
    let dt = if s.len() > 10 {
        OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
            // dateTime without seconds or with a time but no zone is not valid FHIR.
            PrimitiveDateTime::parse(
                s,
                &format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
            )
            .ok()
            .map(|p| p.assume_offset(UtcOffset::UTC))
        })?
    } else {
        let mut parts = s.split('-');
        let year: i32 = parts.next()?.parse().ok()?;
        if s.len() < 4 {
            return None;
        }
        let month = match parts.next() {
            Some(m) if m.len() == 2 => Month::try_from(m.parse::<u8>().ok()?).ok()?,
            Some(_) => return None,
            None => Month::January,
        };
        let day = match parts.next() {
            Some(d) if d.len() == 2 => d.parse::<u8>().ok()?,
            Some(_) => return None,
            None => 1,
        };
        if parts.next().is_some() {
            return None;
        }
        Date::from_calendar_date(year, month, day)
            .ok()?
            .midnight()
            .assume_offset(UtcOffset::UTC)
    };
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Today's date in local time ([`LOCAL_OFFSET_SECS`]) as `YYYYMMDD`.
pub fn today_digits() -> String {
    let local = UtcOffset::from_whole_seconds(LOCAL_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    let now = at(now_millis()).to_offset(local);
    format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// The days of month `month` (1–12) of `year` (0 for a month that does not exist).
pub fn days_in_month(year: i32, month: u32) -> u32 {
    u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .map_or(0, |m| u32::from(m.length(year)))
}

/// The offset applied to dates and times written without a zone: China Standard Time
/// (UTC+8, no daylight saving), the local time of every institution the platform serves.
pub const LOCAL_OFFSET_SECS: i32 = 8 * 3600;

/// The period a FHIR `date`, `dateTime` or `instant` names, as inclusive milliseconds
/// `[low, high]`: `2020` is the whole year, `2020-03-04T10:00` the whole minute, an instant with
/// milliseconds a single millisecond. Values without a zone are taken at [`LOCAL_OFFSET_SECS`].
pub fn period_of(s: &str) -> Option<(i64, i64)> {
    use time::{Duration, PrimitiveDateTime, Time};
    let local = UtcOffset::from_whole_seconds(LOCAL_OFFSET_SECS).ok()?;
    let ms = |dt: OffsetDateTime| i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok();
    if s.len() <= 10 {
        let start = parse_fhir_datetime(s)?; // UTC midnight of the first day of the period
        let first =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(start) * 1_000_000).ok()?;
        let first = PrimitiveDateTime::new(first.date(), Time::MIDNIGHT).assume_offset(local);
        let next = match s.len() {
            4 => first.replace_year(first.year() + 1).ok()?,
            7 => {
                let (y, m) = (first.year(), first.month());
                let (ny, nm) = if m == Month::December {
                    (y + 1, Month::January)
                } else {
                    (y, m.next())
                };
                first
                    .replace_day(1)
                    .ok()?
                    .replace_month(nm)
                    .ok()?
                    .replace_year(ny)
                    .ok()?
            }
            10 => first + Duration::days(1),
            _ => return None,
        };
        return Some((ms(first)?, ms(next)? - 1));
    }
    let (time_part, has_zone) = match s.find('T') {
        Some(t) => {
            let rest = &s[t + 1..];
            (
                rest,
                rest.ends_with('Z') || rest.contains('+') || rest.contains('-'),
            )
        }
        None => return None,
    };
    let with_zone = if has_zone {
        s.to_owned()
    } else {
        format!("{s}+08:00")
    };
    // Precision: minutes, seconds, or fractional seconds.
    let digits_before_zone = time_part.split(['Z', '+', '-']).next().unwrap_or("");
    let (parsed, width_ms) = match digits_before_zone.len() {
        5 => (
            OffsetDateTime::parse(
                &with_zone.replacen(digits_before_zone, &format!("{digits_before_zone}:00"), 1),
                &Rfc3339,
            )
            .ok()?,
            60_000,
        ),
        8 => (OffsetDateTime::parse(&with_zone, &Rfc3339).ok()?, 1_000),
        n if n > 9 => {
            let frac = n - 9;
            let width = if frac >= 3 {
                1
            } else {
                10_i64.pow(u32::try_from(3 - frac).ok()?)
            };
            (OffsetDateTime::parse(&with_zone, &Rfc3339).ok()?, width)
        }
        _ => return None,
    };
    let low = ms(parsed)?;
    Some((low, low + width_ms - 1))
}

/// Parse an HTTP date (`If-Modified-Since` style).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(s, &Rfc2822).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The local day ([`LOCAL_OFFSET_SECS`]) of instant `ms`, as `YYYY-MM-DD`.
pub fn local_day(ms: i64) -> String {
    let local = UtcOffset::from_whole_seconds(LOCAL_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    let t = at(ms).to_offset(local);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The local month ([`LOCAL_OFFSET_SECS`]) of instant `ms`, as (year, month 1–12).
pub fn local_month(ms: i64) -> (i32, u32) {
    let local = UtcOffset::from_whole_seconds(LOCAL_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    let t = at(ms).to_offset(local);
    (t.year(), u32::from(u8::from(t.month())))
}

/// The first millisecond of the local day of instant `ms`.
pub fn local_midnight(ms: i64) -> i64 {
    period_of(&local_day(ms)).map_or(ms, |(low, _)| low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            http_date(1_700_000_000_123),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    #[test]
    fn periods() {
        let day = 86_400_000;
        let cst = 8 * 3_600_000;
        let (lo, hi) = period_of("1970-01-02").unwrap();
        assert_eq!((lo, hi), (day - cst, 2 * day - cst - 1));
        let (lo, hi) = period_of("1970").unwrap();
        assert_eq!(lo, -cst);
        assert_eq!(hi, 365 * day - cst - 1);
        let (lo, hi) = period_of("1970-12").unwrap();
        assert_eq!(hi - lo + 1, 31 * day);
        assert_eq!(period_of("1970-01-01T00:00:00Z"), Some((0, 999)));
        assert_eq!(period_of("1970-01-01T08:00:00"), Some((0, 999)));
        assert_eq!(period_of("1970-01-01T00:00:00.5Z"), Some((500, 599)));
        assert_eq!(period_of("1970-01-01T00:00:00.123+00:00"), Some((123, 123)));
        assert_eq!(period_of("1970-01-01T00:01Z"), Some((60_000, 119_999)));
        assert_eq!(period_of("nonsense"), None);
    }

    #[test]
    fn parses() {
        assert_eq!(parse_fhir_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_fhir_datetime("1970-01-01T08:00:00+08:00"), Some(0));
        assert_eq!(parse_fhir_datetime("1970"), Some(0));
        assert_eq!(parse_fhir_datetime("1970-02"), Some(31 * 86_400_000));
        assert_eq!(
            parse_fhir_datetime("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_fhir_datetime("yesterday"), None);
        assert_eq!(parse_fhir_datetime("2023-13-01"), None);
        assert!(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT").is_some());
    }
}
