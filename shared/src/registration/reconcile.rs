//! Reconciliation: registry state derived from a version folder, not from
//! the event. The folder's state items are read with one consistent Query
//! (see [`super::ledger`]) and the model, version and model artifact are
//! brought to what they describe: found by their natural names (created if
//! missing, see [`super::find_or_create`]), written only where they differ,
//! and the manifest applied when its content changed (see
//! [`super::manifest`]). The folder is read again afterwards: if it changed
//! meanwhile (a concurrent delivery recorded something this one did not
//! see) the derivation runs again, so the last writer always wrote from a
//! complete view.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::convention::Location;
use super::find_or_create::{self, bare};
use super::ledger::{ObjectLedger, fingerprint};
use super::manifest::{self, MANIFEST_NAMES};
use super::registrar::Registration;
use crate::domain::entity::{Entity, Family, Kind, NewEntity};
use crate::domain::error::{Error, Result};
use crate::domain::registry::Registry;
use crate::domain::value::MetadataValue;
use crate::store::artifacts::ArtifactRead;
use crate::store::layout::objects::Recorded;

/// Custom properties of the model artifact that registration manages.
pub mod props {
    /// Total bytes of the version's files (manifest excluded).
    pub const SIZE: &str = "size_bytes";
    /// Number of files present.
    pub const FILE_COUNT: &str = "file_count";
    /// SHA-256 of the single file; with several files, the SHA-256 of their
    /// `sha256sum`-style listing (`<sha256>  <path>\n`, sorted by path).
    pub const SHA256: &str = "sha256";
    /// ETag of the single file (absent with several files).
    pub const ETAG: &str = "etag";
    /// Per file: `{"<path>": {"size", "etag", "sha256"}}` (a struct value),
    /// for folders of at most [`super::MAX_LISTED_FILES`] files.
    pub const FILES: &str = "files";
    /// SHA-256 of the manifest content last applied.
    pub const MANIFEST_SHA256: &str = "manifest_sha256";
    /// Why (part of) the manifest could not be applied.
    pub const MANIFEST_ERROR: &str = "manifest_error";

    /// The storage summary keys, rewritten on every change of the folder.
    pub const SUMMARY: [&str; 5] = [SIZE, FILE_COUNT, SHA256, ETAG, FILES];
}

/// Folders with more files than this get no per-file listing (`files`):
/// it would make the artifact item too large for DynamoDB (400 KB).
pub const MAX_LISTED_FILES: usize = 200;
/// Derivations of one folder before giving up (the folder keeps changing).
const RECONCILE_ROUNDS: usize = 8;

/// One present file of a version folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FileSummary {
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Bring the folder's registration to what its items describe, until a
/// derivation ran on a view of the folder that was still current after it.
/// `None` when the folder has no items (nothing of it was ever seen in
/// the bucket): nothing is registered.
pub(super) async fn reconcile(
    registry: &Registry,
    ledger: &ObjectLedger,
    store: &dyn ArtifactRead,
    location: &Location,
) -> Result<Option<Registration>> {
    let mut view = ledger.read_folder(location).await?;
    if view.is_empty() {
        return Ok(None);
    }
    for _ in 0..RECONCILE_ROUNDS {
        let registration = derive(registry, store, location, &view).await?;
        let again = ledger.read_folder(location).await?;
        if fingerprint(&again) == fingerprint(&view) {
            return Ok(Some(registration));
        }
        view = again;
    }
    Err(Error::unavailable(format!(
        "folder {} keeps changing, retry",
        location.folder
    )))
}

/// One derivation of the registration from a view of the folder.
async fn derive(
    registry: &Registry,
    store: &dyn ArtifactRead,
    location: &Location,
    view: &[Recorded],
) -> Result<Registration> {
    let is_manifest = |key: &str| {
        key.strip_prefix(location.folder.as_str())
            .is_some_and(|p| MANIFEST_NAMES.contains(&p))
    };
    let mut files: BTreeMap<String, FileSummary> = BTreeMap::new();
    let mut any_file = false;
    for r in view.iter().filter(|r| !is_manifest(&r.key)) {
        any_file = true;
        if r.state.present {
            let path = r.key[location.folder.len()..].to_string();
            files.insert(
                path,
                FileSummary {
                    size: r.state.size.unwrap_or(0),
                    etag: r.state.etag.clone(),
                    sha256: r.state.sha256.clone(),
                },
            );
        }
    }
    let manifest = MANIFEST_NAMES.iter().find_map(|name| {
        let key = format!("{}{name}", location.folder);
        view.iter().find(|r| r.key == key && r.state.present)
    });
    let state = if !files.is_empty() {
        "LIVE"
    } else if any_file {
        "DELETED"
    } else {
        "PENDING"
    };

    let (model_kind, version_kind) = (Kind::RegisteredModel, Kind::ModelVersion);
    let model = find_or_create::entity(registry, model_kind, &location.model, None, || {
        bare(model_kind, &location.model, None)
    })
    .await?;
    let version = find_or_create::entity(
        registry,
        version_kind,
        &location.version,
        Some(model.id),
        || bare(version_kind, &location.version, Some(model.id)),
    )
    .await?;
    let artifact = ensure_artifact(registry, store, version.id, location, state, &files).await?;
    let artifact = match manifest {
        Some(m) => manifest::apply(registry, store, m, &model, &version, artifact).await?,
        None => artifact,
    };
    Ok(Registration {
        registered_model_id: model.id.to_string(),
        model_version_id: version.id.to_string(),
        model_artifact_id: artifact.id.to_string(),
        artifact_state: artifact
            .fields
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or(state)
            .to_string(),
    })
}

/// The version's model artifact (named after the model), with the
/// folder's URI, state and storage summary.
async fn ensure_artifact(
    registry: &Registry,
    store: &dyn ArtifactRead,
    version_id: u64,
    location: &Location,
    state: &str,
    files: &BTreeMap<String, FileSummary>,
) -> Result<Entity> {
    let folder_uri = store.uri(location.folder.trim_end_matches('/'));
    let summary = summary_properties(files)?;
    let fresh = || {
        let mut new = NewEntity {
            custom: summary.clone(),
            ..bare(Kind::ModelArtifact, &location.model, Some(version_id))
        };
        new.fields
            .insert("uri".into(), Value::from(folder_uri.as_str()));
        new.fields.insert("state".into(), Value::from(state));
        new
    };
    let artifact = find_or_create::entity(
        registry,
        Kind::ModelArtifact,
        &location.model,
        Some(version_id),
        fresh,
    )
    .await?;
    registry
        .modify(Family::Artifact, artifact.id, |e| {
            let before = e.clone();
            let keeps_uri = e
                .fields
                .get("uri")
                .and_then(Value::as_str)
                .is_some_and(|u| same_location(u, &folder_uri));
            if !keeps_uri {
                e.fields
                    .insert("uri".into(), Value::from(folder_uri.as_str()));
            }
            e.fields.insert("state".into(), Value::from(state));
            for key in props::SUMMARY {
                e.custom.remove(key);
            }
            e.custom.extend(summary.clone());
            Ok(*e != before)
        })
        .await
}

/// Does `uri` (perhaps with a query, as the upstream client writes
/// `s3://b/p?endpoint=...`) name the same place as `folder_uri`?
fn same_location(uri: &str, folder_uri: &str) -> bool {
    let bare = uri.split(['?', '#']).next().unwrap_or(uri);
    bare.trim_end_matches('/') == folder_uri.trim_end_matches('/')
}

/// The storage summary custom properties of the present files.
fn summary_properties(
    files: &BTreeMap<String, FileSummary>,
) -> Result<BTreeMap<String, MetadataValue>> {
    let mut out = BTreeMap::new();
    let total = files
        .values()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
    out.insert(
        props::SIZE.into(),
        MetadataValue::Int(i64::try_from(total).unwrap_or(i64::MAX)),
    );
    out.insert(
        props::FILE_COUNT.into(),
        MetadataValue::Int(i64::try_from(files.len()).unwrap_or(i64::MAX)),
    );
    if files.is_empty() {
        return Ok(out);
    }
    let digest = match files.iter().next() {
        Some((_, only)) if files.len() == 1 => only.sha256.clone(),
        _ if files.values().all(|f| f.sha256.is_some()) => {
            let listing: String = files
                .iter()
                .map(|(path, f)| format!("{}  {path}\n", f.sha256.as_deref().unwrap_or_default()))
                .collect();
            Some(hex::encode(Sha256::digest(listing.as_bytes())))
        }
        _ => None,
    };
    if let Some(d) = digest {
        out.insert(props::SHA256.into(), MetadataValue::String(d));
    }
    if let (1, Some(etag)) = (
        files.len(),
        files.values().next().and_then(|f| f.etag.clone()),
    ) {
        out.insert(props::ETAG.into(), MetadataValue::String(etag));
    }
    if files.len() > MAX_LISTED_FILES {
        return Ok(out);
    }
    let listing = serde_json::to_vec(&json!(files)).map_err(|e| Error::internal(e.to_string()))?;
    out.insert(
        props::FILES.into(),
        MetadataValue::Struct(base64::engine::general_purpose::STANDARD.encode(listing)),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_one_file_and_of_several() {
        let one = BTreeMap::from([(
            "model.onnx".to_string(),
            FileSummary {
                size: 3,
                etag: Some("e1".into()),
                sha256: Some("aa".into()),
            },
        )]);
        let p = summary_properties(&one).unwrap();
        assert_eq!(p[props::SHA256], MetadataValue::String("aa".into()));
        assert_eq!(p[props::ETAG], MetadataValue::String("e1".into()));
        assert_eq!(p[props::SIZE], MetadataValue::Int(3));
        let mut two = one.clone();
        two.insert(
            "config.json".into(),
            FileSummary {
                size: 4,
                etag: None,
                sha256: Some("bb".into()),
            },
        );
        let p = summary_properties(&two).unwrap();
        let expected = hex::encode(Sha256::digest(b"bb  config.json\naa  model.onnx\n"));
        assert_eq!(p[props::SHA256], MetadataValue::String(expected));
        assert!(!p.contains_key(props::ETAG));
        assert_eq!(p[props::FILE_COUNT], MetadataValue::Int(2));
        let empty = summary_properties(&BTreeMap::new()).unwrap();
        assert_eq!(empty.len(), 2);
    }

    #[test]
    fn client_uris_with_a_query_name_the_folder() {
        assert!(same_location(
            "s3://b/models/m/1?endpoint=http://x&defaultRegion=us-east-1",
            "s3://b/models/m/1"
        ));
        assert!(same_location("s3://b/models/m/1/", "s3://b/models/m/1"));
        assert!(!same_location("s3://b/models/m/12", "s3://b/models/m/1"));
    }
}
