//! Who the current change is made by, for the ledger: the caller of the
//! request being served (set by the API's edge around every handler), or
//! [`SYSTEM`] for work no request asked for.

use std::future::Future;

/// The actor of changes made outside any request.
pub const SYSTEM: &str = "system";

tokio::task_local! {
    static ACTOR: String;
}

/// Run `work` as `actor`: the changes it makes are recorded as theirs.
pub async fn acting<F: Future>(actor: impl Into<String>, work: F) -> F::Output {
    ACTOR.scope(actor.into(), work).await
}

/// The actor of the change being made.
pub fn current() -> String {
    ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| SYSTEM.to_string())
}
