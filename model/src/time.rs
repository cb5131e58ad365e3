//! Time: event timestamps, the dataflow's processing epochs, and watermark reports.

use serde::{Deserialize, Serialize};

/// The timely timestamp of the dataflow: a processing epoch in wall-clock milliseconds
/// since the Unix epoch. Event time (a trade's `ts`) lives in the data; the pipeline
/// watermark travels separately as [`WatermarkReport`]s.
pub type Time = u64;

/// Smallest valid event timestamp: 2000-01-01T00:00:00Z in ms (SPEC 2).
pub const MIN_TS: i64 = 946_684_800_000;
/// Exclusive upper bound of valid event timestamps: 2100-01-01T00:00:00Z in ms.
pub const MAX_TS: i64 = 4_102_444_800_000;

/// True when `ts` (ms since the epoch) is a valid trade timestamp.
pub fn ts_in_range(ts: i64) -> bool {
    (MIN_TS..MAX_TS).contains(&ts)
}

/// A promise from one source instance (one source on one worker): every trade it emits
/// at a later epoch has `ts >= low`. `i64::MAX` means it will emit nothing more.
///
/// The pipeline watermark at an epoch is the minimum of the latest reports of all
/// reporters; a window is final when that minimum reaches its end.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WatermarkReport {
    /// Which reporter: `source_index * peers + worker_index`.
    pub reporter: u32,
    /// The lower bound on event times still to come from this reporter.
    pub low: i64,
    /// The reporter stopped because its process was asked to (Ctrl-C, SIGTERM, a sink
    /// that failed): reports are broadcast to every worker of every process, so each
    /// process that sees one stops as well, and a signal to one process of a `-n` run
    /// stops the whole run.
    #[serde(default)]
    pub stop: bool,
}

/// Formats an event timestamp (ms) as RFC 3339 UTC with milliseconds, for logs and errors.
pub fn format_ts(ts: i64) -> String {
    if ts == i64::MAX {
        return "+inf".into();
    }
    if ts == i64::MIN {
        return "-inf".into();
    }
    let days = ts.div_euclid(86_400_000);
    let ms_of_day = ts.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// The proleptic Gregorian date (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC date of an event timestamp as `YYYY-MM-DD`, the value of the lake's `date=`
/// partition.
pub fn date_of(ts: i64) -> String {
    let (y, m, d) = civil_from_days(ts.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `1234567` -> `1,234,567`, for counts in progress lines and summaries.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_the_spec() {
        assert!(!ts_in_range(946_684_799_999));
        assert!(ts_in_range(946_684_800_000));
        assert!(ts_in_range(4_102_444_799_999));
        assert!(!ts_in_range(4_102_444_800_000));
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_ts(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_ts(MIN_TS), "2000-01-01T00:00:00.000Z");
        assert_eq!(date_of(1_700_000_000_123), "2023-11-14");
        assert_eq!(date_of(MAX_TS - 1), "2099-12-31");
    }
}
