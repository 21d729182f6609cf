//! The domain: entities, their rules, the filter language and paging.
//! Nothing here knows HTTP or AWS.

pub mod access;
pub mod actor;
pub mod entity;
pub mod error;
pub mod filter;
pub mod governance;
pub mod lineage;
pub mod ownership;
pub mod paging;
pub mod registry;
pub mod upload_sessions;
pub mod usage;
pub mod value;

/// Milliseconds since the Unix epoch by the system clock (0 before 1970,
/// saturating far in the future): the one clock of entities, sessions and
/// the storage-event ledger.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The civil date (UTC) of a day counted from the epoch, `YYYY-MM-DD`.
pub fn civil_date(days: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An instant (epoch milliseconds) as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: u64) -> String {
    let (day, rest) = (ms / 86_400_000, ms % 86_400_000);
    let (h, m, s, milli) = (
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    );
    format!("{}T{h:02}:{m:02}:{s:02}.{milli:03}Z", civil_date(day))
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn civil_dates_and_instants() {
        assert_eq!(super::civil_date(0), "1970-01-01");
        assert_eq!(super::civil_date(20_422), "2025-11-30");
        assert_eq!(super::civil_date(11_016), "2000-02-29");
        assert_eq!(
            super::rfc3339(1_764_532_244_123),
            "2025-11-30T19:50:44.123Z"
        );
    }
}
