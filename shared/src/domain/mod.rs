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
