//! The domain: entities, their rules, the filter language and paging.
//! Nothing here knows HTTP or AWS.

pub mod access;
pub mod entity;
pub mod error;
pub mod filter;
pub mod ownership;
pub mod paging;
pub mod registry;
pub mod upload_sessions;
pub mod value;
