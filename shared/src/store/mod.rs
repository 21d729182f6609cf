//! Storage: the port (a DynamoDB-shaped table) and its adapters.

pub mod embedded;
pub mod port;
