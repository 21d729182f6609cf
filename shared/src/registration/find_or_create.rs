//! Find-or-create with retry on conflict: how registration writes what
//! concurrent deliveries of the same folder may be writing too (the model,
//! the version, the model artifact, the manifest's metrics and parameters).
//! Of two deliveries creating the same name, the registry's name claim lets
//! one through and answers the other 409; that one waits a moment and finds
//! what the first created.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use crate::domain::entity::{Entity, Kind, NewEntity};
use crate::domain::error::{Error, Result};
use crate::domain::registry::Registry;

/// Attempts while another delivery holds the name.
const ATTEMPTS: u32 = 20;

/// `find` what is wanted; when it is not there, `create` it; when the
/// create meets a conflict (another delivery is writing the same name),
/// wait a little longer each time and start again. After [`ATTEMPTS`], the
/// error is [`Error::Unavailable`] with the message `busy` gives (the
/// delivery is retried later).
pub(super) async fn find_or_create<T, Found, Created>(
    busy: impl FnOnce() -> String,
    find: impl Fn() -> Found,
    create: impl Fn() -> Created,
) -> Result<T>
where
    Found: Future<Output = Result<Option<T>>>,
    Created: Future<Output = Result<T>>,
{
    for attempt in 0..ATTEMPTS {
        if let Some(found) = find().await? {
            return Ok(found);
        }
        match create().await {
            Ok(created) => return Ok(created),
            Err(Error::Conflict(_)) => {
                let wait = 10 * u64::from(attempt + 1);
                tokio::time::sleep(Duration::from_millis(wait.min(200))).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::unavailable(busy()))
}

/// The entity of `kind` named `name` (under `parent`), found by its natural
/// name, or created as `fresh` gives it.
pub(super) async fn entity(
    registry: &Registry,
    kind: Kind,
    name: &str,
    parent: Option<u64>,
    fresh: impl Fn() -> NewEntity,
) -> Result<Entity> {
    find_or_create(
        || {
            format!(
                "{} '{name}' is still being created elsewhere, retry",
                kind.family().label()
            )
        },
        || async move {
            match registry
                .find(kind.family(), Some(kind), Some(name), None, parent)
                .await
            {
                Ok(e) => Ok(Some(e)),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            }
        },
        || registry.create(fresh()),
    )
    .await
}

/// A new entity with nothing but its kind, name and parent.
pub(super) fn bare(kind: Kind, name: &str, parent: Option<u64>) -> NewEntity {
    NewEntity {
        kind,
        name: Some(name.to_string()),
        external_id: None,
        parent,
        fields: Default::default(),
        custom: BTreeMap::new(),
    }
}
