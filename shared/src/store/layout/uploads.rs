//! The upload extension's items, written with optimistic versions:
//!
//! - session: `pk = UPLOAD@<session id>`, `sk = -` (one partition each),
//!   the [`Session`] as JSON
//!   (without its files' keys, which are set again on load);
//! - path claim: `pk = UPLOAD#PATH#<bucket>#<folder>`, `sk = <path>` (inside
//!   the version folder), a [`PathClaim`] naming the one session that may
//!   write that path. A folder's claims are one partition, read together
//!   with one consistent Query.
//!
//! What a session's state and a claim mean is the extension's
//! (`crate::domain::upload_sessions`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::error::{Error, Result};
use crate::domain::upload_sessions::Session;
use crate::store::port::{Cond, Item, StoreError, Table, read_partition};

/// Prefix of the partitions of session items, one per session.
const SESSIONS: &str = "UPLOAD@";
/// Sort key of a session item.
const SESSION: &str = "-";
/// Prefix of the partitions of path claims, one per bucket and folder.
const CLAIMS: &str = "UPLOAD#PATH#";

/// The body of a path claim: which session holds the path, and when that
/// session expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathClaim {
    pub session: String,
    pub expires_ms: u64,
}

/// Upload sessions and the path claims of their version folders: see the
/// module's doc.
#[derive(Clone)]
pub struct UploadItems {
    table: Arc<dyn Table>,
}

impl UploadItems {
    pub(super) fn new(table: Arc<dyn Table>) -> Self {
        UploadItems { table }
    }

    /// Session `id` as stored (its files' keys empty), with the version of
    /// its item, if there is one (one consistent read).
    pub async fn session(&self, id: &str) -> Result<Option<(Session, u64)>> {
        let Some(item) = self.table.get(&format!("{SESSIONS}{id}"), SESSION).await? else {
            return Ok(None);
        };
        let session = serde_json::from_str(&item.body)
            .map_err(|e| Error::internal(format!("corrupt upload session {id}: {e}")))?;
        Ok(Some((session, item.version)))
    }

    /// Write `session`: over its item at version `expected`, or, with
    /// `None`, as a new one. False when that condition failed (it changed
    /// concurrently, or the id is taken).
    pub async fn put_session(&self, session: &Session, expected: Option<u64>) -> Result<bool> {
        let (version, cond) = match expected {
            Some(v) => (v.saturating_add(1), Cond::Version(v)),
            None => (1, Cond::Absent),
        };
        match self.table.put(session_item(session, version)?, cond).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The path claims of version folder `folder` of `bucket`.
    pub fn claims(&self, bucket: &str, folder: &str) -> PathClaims {
        PathClaims {
            table: self.table.clone(),
            partition: format!("{CLAIMS}{bucket}#{folder}"),
        }
    }
}

/// The item that stores `session` at `version`.
fn session_item(session: &Session, version: u64) -> Result<Item> {
    let body = serde_json::to_string(session).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Item::plain(
        format!("{SESSIONS}{}", session.id),
        SESSION,
        version,
        body,
    ))
}

/// The item `session` would be stored as, at the largest version: for the
/// test that the largest session the extension's limits allow fits one item.
#[cfg(test)]
pub(crate) fn largest_session_item(session: &Session) -> Item {
    session_item(session, u64::MAX).expect("a session serializes")
}

/// The path claims of one version folder, by path (relative to the folder).
#[derive(Clone)]
pub struct PathClaims {
    table: Arc<dyn Table>,
    partition: String,
}

impl PathClaims {
    /// The claim on `path` and the version of its item, if there is one.
    pub async fn get(&self, path: &str) -> Result<Option<(PathClaim, u64)>> {
        match self.table.get(&self.partition, path).await? {
            Some(item) => Ok(Some((decode_claim(&item)?, item.version))),
            None => Ok(None),
        }
    }

    /// Claim `path` if nobody does: false when a claim is there. A new
    /// claim's item is at version 1.
    pub async fn insert(&self, path: &str, claim: &PathClaim) -> Result<bool> {
        let item = Item::plain(self.partition.as_str(), path, 1, claim_body(claim)?);
        match self.table.put(item, Cond::Absent).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Put `claim` on `path` over the claim read at `version`: the new
    /// version of its item, or `None` when it changed meanwhile.
    pub async fn replace(
        &self,
        path: &str,
        claim: &PathClaim,
        version: u64,
    ) -> Result<Option<u64>> {
        let next = version.saturating_add(1);
        let item = Item::plain(self.partition.as_str(), path, next, claim_body(claim)?);
        match self.table.put(item, Cond::Version(version)).await {
            Ok(()) => Ok(Some(next)),
            Err(StoreError::ConditionFailed) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Take the claim on `path` away if its item is still at `version`:
    /// false when it changed or is gone.
    pub async fn delete(&self, path: &str, version: u64) -> Result<bool> {
        match self
            .table
            .delete(&self.partition, path, Cond::Version(version))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every claim of the folder: path → (claim, item version).
    pub async fn all(&self) -> Result<BTreeMap<String, (PathClaim, u64)>> {
        read_partition(self.table.as_ref(), &self.partition, "")
            .await?
            .iter()
            .map(|item| Ok((item.sk.clone(), (decode_claim(item)?, item.version))))
            .collect()
    }
}

fn claim_body(claim: &PathClaim) -> Result<String> {
    serde_json::to_string(claim).map_err(|e| Error::internal(e.to_string()))
}

fn decode_claim(item: &Item) -> Result<PathClaim> {
    serde_json::from_str(&item.body).map_err(|e| {
        Error::internal(format!(
            "corrupt upload path claim ({}, {}): {e}",
            item.pk, item.sk
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::upload_sessions::{SessionFile, SessionState};
    use crate::store::embedded::EmbeddedTable;

    fn table(dir: &std::path::Path) -> Arc<dyn Table> {
        Arc::new(EmbeddedTable::open(dir).unwrap())
    }

    fn claim(session: &str) -> PathClaim {
        PathClaim {
            session: session.into(),
            expires_ms: 5,
        }
    }

    /// Claims written before the layout moved here must read the same, and
    /// new ones must be written the same way; each condition holds.
    #[tokio::test]
    async fn path_claims_keep_their_keys_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path());
        let claims = UploadItems::new(table.clone()).claims("bucket", "models/m/1/");
        let pk = "UPLOAD#PATH#bucket#models/m/1/";
        assert!(claims.insert("a.bin", &claim("s1")).await.unwrap());
        assert!(!claims.insert("a.bin", &claim("s2")).await.unwrap());
        let raw = table.get(pk, "a.bin").await.unwrap().unwrap();
        assert_eq!(
            (raw.version, raw.body.as_str()),
            (1, r#"{"session":"s1","expires_ms":5}"#)
        );

        let old = Item::plain(
            pk,
            "b/c.bin",
            4,
            r#"{"session":"s0","expires_ms":9}"#.into(),
        );
        table.put(old, Cond::Absent).await.unwrap();
        let held = PathClaim {
            session: "s0".into(),
            expires_ms: 9,
        };
        assert_eq!(
            claims.get("b/c.bin").await.unwrap(),
            Some((held.clone(), 4))
        );
        let all: Vec<_> = claims.all().await.unwrap().into_iter().collect();
        assert_eq!(
            all,
            [
                ("a.bin".to_string(), (claim("s1"), 1)),
                ("b/c.bin".to_string(), (held, 4))
            ]
        );

        assert_eq!(
            claims.replace("a.bin", &claim("s2"), 2).await.unwrap(),
            None
        );
        assert_eq!(
            claims.replace("a.bin", &claim("s2"), 1).await.unwrap(),
            Some(2)
        );
        assert!(!claims.delete("a.bin", 1).await.unwrap());
        assert!(claims.delete("a.bin", 2).await.unwrap());
        assert_eq!(claims.get("a.bin").await.unwrap(), None);
        let other = UploadItems::new(table).claims("other", "models/m/1/");
        assert!(other.all().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sessions_keep_their_keys_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let table = table(dir.path());
        let uploads = UploadItems::new(table.clone());
        let mut session = Session {
            id: "abc".into(),
            model_version_id: 2,
            model_artifact_id: 3,
            folder: "models/m/1/".into(),
            state: SessionState::Pending,
            create_ms: 1,
            expires_ms: 5,
            files: vec![SessionFile {
                path: "w.bin".into(),
                key: String::new(),
                size: 1,
                sha256: "f".into(),
                multipart: None,
                token: None,
            }],
            problems: vec![],
            registration: None,
        };
        assert!(uploads.put_session(&session, None).await.unwrap());
        assert!(!uploads.put_session(&session, None).await.unwrap());
        let raw = table.get("UPLOAD@abc", "-").await.unwrap().unwrap();
        assert_eq!(raw.version, 1);
        assert_eq!(
            raw.body,
            r#"{"id":"abc","model_version_id":2,"model_artifact_id":3,"folder":"models/m/1/","state":"PENDING","create_ms":1,"expires_ms":5,"files":[{"path":"w.bin","size":1,"sha256":"f"}]}"#
        );
        assert_eq!(
            uploads.session("abc").await.unwrap(),
            Some((session.clone(), 1))
        );
        session.state = SessionState::Failed;
        assert!(!uploads.put_session(&session, Some(2)).await.unwrap());
        assert!(uploads.put_session(&session, Some(1)).await.unwrap());
        assert_eq!(uploads.session("abc").await.unwrap(), Some((session, 2)));
        assert_eq!(uploads.session("abd").await.unwrap(), None);
    }
}
