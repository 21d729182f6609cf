//! Storage: the port (a DynamoDB-shaped table) and its adapters.

pub mod artifacts;
pub mod coalesce;
pub mod dynamodb;
pub mod embedded;
pub mod layout;
pub mod port;
