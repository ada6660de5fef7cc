//! RFC 3339 timestamps in UTC (`Z`), from one date algorithm: whole seconds
//! (certificate expiry in the admin API) or milliseconds (access log).
//! Reads no clock and no time zone database.

use std::time::SystemTime;

/// Seconds since the epoch → `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian;
/// times before 1970 work too).
pub fn rfc3339_secs(secs: i64) -> String {
    let (date, time) = split(secs);
    format!("{date}T{time}Z")
}

/// A wall-clock time → `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before the epoch
/// are written as the epoch.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (date, time) = split(secs);
    format!("{date}T{time}.{:03}Z", d.subsec_millis())
}

/// `YYYY-MM-DD` and `HH:MM:SS` of a Unix time.
fn split(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 → (year, month, day): Howard Hinnant's
/// `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn whole_seconds() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_secs(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_627_013_967);
        assert_eq!(rfc3339_millis(t), "2026-11-25T17:16:53.967Z");
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn both_precisions_agree() {
        for secs in [0, 59, 86_399, 951_782_400, 1_795_627_013, 4_102_444_799] {
            let millis = rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs as u64));
            assert_eq!(millis.replace(".000Z", "Z"), rfc3339_secs(secs));
        }
    }
}
