//! The registrar: what a storage event (or the upload extension's
//! completion) does to the registry. It brings the object's state item to
//! what the bucket holds ([`super::ledger`]), then the version folder's
//! registration to what its items describe ([`super::reconcile`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::convention::{FolderConvention, Location};
use super::events::StorageEvent;
use super::find_or_create;
use super::ledger::{Asker, ItemChange, ObjectLedger};
use super::reconcile::reconcile;
use crate::domain::entity::{Entity, Kind, NewEntity};
use crate::domain::error::Result;
use crate::domain::registry::Registry;
use crate::store::artifacts::{ArtifactRead, ObjectInfo};

/// The entities an upload registered, and the artifact's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub registered_model_id: String,
    pub model_version_id: String,
    pub model_artifact_id: String,
    pub artifact_state: String,
}

/// What a storage event did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The folder's registration is up to date. `applied` is false when the
    /// event was a duplicate or older than what was already recorded.
    Registered {
        applied: bool,
        registration: Registration,
    },
    /// Not an object of the convention (other bucket or prefix, folder
    /// marker, unusable name), or an object that was never in the bucket:
    /// acknowledged and ignored.
    Ignored { reason: String },
}

/// Turns storage events (and the registry's own observations) into registry
/// state, following the folder convention. It only reads the bucket.
#[derive(Clone)]
pub struct Registrar {
    registry: Registry,
    store: Arc<dyn ArtifactRead>,
    convention: FolderConvention,
    ledger: ObjectLedger,
}

impl Registrar {
    /// A registrar of the objects `convention` names, read from `store`.
    pub fn new(
        registry: Registry,
        store: Arc<dyn ArtifactRead>,
        convention: FolderConvention,
    ) -> Self {
        let ledger = ObjectLedger::new(
            registry.layout().objects(convention.bucket()),
            store.clone(),
        );
        Registrar {
            registry,
            store,
            convention,
            ledger,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn convention(&self) -> &FolderConvention {
        &self.convention
    }

    /// Apply one storage event: bring the object's state item to what the
    /// bucket holds (the event only says which object to look at), then the
    /// folder's registration to what its items describe. Safe to repeat, to
    /// run concurrently, and to receive from anyone: an event the bucket
    /// does not bear out changes nothing.
    pub async fn apply(&self, event: &StorageEvent) -> Result<Outcome> {
        let location = match self.convention.locate(&event.bucket, &event.key) {
            Ok(l) => l,
            Err(why) => {
                return Ok(Outcome::Ignored {
                    reason: why.to_string(),
                });
            }
        };
        let change = self
            .ledger
            .record(&location, &event.key, Asker::Event(event))
            .await?;
        self.settle(&location, change == ItemChange::Written, || {
            format!(
                "{} is not in the bucket and was never registered",
                event.key
            )
        })
        .await
    }

    /// Register what the store holds under `keys` of one version folder now
    /// (each key's info when the caller just looked, or `None` to look): the
    /// upload extension's in-process path, instead of (or besides)
    /// notifications. Keys outside the convention are ignored.
    pub async fn observe(&self, keys: Vec<(String, Option<ObjectInfo>)>) -> Result<Outcome> {
        let mut folder = None;
        let mut applied = false;
        for (key, info) in &keys {
            let location = match self.convention.locate(self.convention.bucket(), key) {
                Ok(l) => l,
                Err(why) => {
                    return Ok(Outcome::Ignored {
                        reason: why.to_string(),
                    });
                }
            };
            let change = self
                .ledger
                .record(&location, key, Asker::Registry(info.as_ref()))
                .await?;
            applied |= change == ItemChange::Written;
            folder = Some(location);
        }
        let Some(location) = folder else {
            return Ok(Outcome::Ignored {
                reason: "no objects".into(),
            });
        };
        self.settle(&location, applied, || {
            "none of the objects is in the bucket".into()
        })
        .await
    }

    /// The folder's registration after recording, or `Ignored` (with
    /// `why_not`) when nothing of the folder was ever in the bucket.
    async fn settle(
        &self,
        location: &Location,
        applied: bool,
        why_not: impl FnOnce() -> String,
    ) -> Result<Outcome> {
        let registration =
            reconcile(&self.registry, &self.ledger, self.store.as_ref(), location).await?;
        Ok(match registration {
            Some(registration) => Outcome::Registered {
                applied,
                registration,
            },
            None => Outcome::Ignored { reason: why_not() },
        })
    }

    /// The model artifact uploads to `version` (of `model`) will describe:
    /// found by name, or created `PENDING` with the folder's URI until the
    /// first file is registered.
    pub async fn prepare(&self, model: &Entity, version: &Entity) -> Result<Entity> {
        let folder = self.convention.folder(&model.name, &version.name)?;
        let uri = self.store.uri(folder.trim_end_matches('/'));
        let fresh = || {
            let mut new: NewEntity =
                find_or_create::bare(Kind::ModelArtifact, &model.name, Some(version.id));
            new.fields.insert("uri".into(), Value::from(uri.as_str()));
            new.fields.insert("state".into(), Value::from("PENDING"));
            new
        };
        find_or_create::entity(
            &self.registry,
            Kind::ModelArtifact,
            &model.name,
            Some(version.id),
            fresh,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::convention::LOCAL_BUCKET;
    use super::super::events::{Change, MAX_SEQUENCER_LEN};
    use super::super::ledger::order_key;
    use super::super::reconcile::props;
    use super::*;
    use crate::domain::entity::Family;
    use crate::domain::error::Error;
    use crate::domain::value::MetadataValue;
    use crate::store::artifacts::{
        ArtifactError, ArtifactLocator, ArtifactWrite, LocalArtifactStore,
    };
    use crate::store::layout::objects::ObjectState;

    /// What a folder registered, without ids and times.
    async fn registered(registrar: &Registrar, model: &str) -> Value {
        use crate::domain::paging::{ListParams, OrderBy};
        use crate::domain::registry::{Narrow, Scope};
        let registry = registrar.registry();
        let all = ListParams {
            page_size: 0,
            order_by: OrderBy::Name,
            descending: false,
            after: None,
            filter: None,
        };
        let m = registry
            .find(Family::RegisteredModel, None, Some(model), None, None)
            .await
            .unwrap();
        let strip = |e: &Entity| {
            let mut w = crate::api::codec::to_value(e);
            for k in [
                "id",
                "createTimeSinceEpoch",
                "lastUpdateTimeSinceEpoch",
                "registeredModelId",
            ] {
                w.as_object_mut().unwrap().remove(k);
            }
            w
        };
        let versions = registry
            .list(
                Family::ModelVersion,
                Scope::Parent(m.id),
                &Narrow::default(),
                &all,
            )
            .await
            .unwrap();
        let mut out = vec![strip(&m)];
        for v in &versions.items {
            out.push(strip(v));
            let artifacts = registry
                .list(
                    Family::Artifact,
                    Scope::Parent(v.id),
                    &Narrow::default(),
                    &all,
                )
                .await
                .unwrap();
            let mut arts: Vec<Value> = artifacts.items.iter().map(strip).collect();
            arts.sort_by_key(|a| a["name"].to_string());
            out.extend(arts);
        }
        Value::Array(out)
    }

    fn registrar_in(dir: &std::path::Path, store: Arc<dyn ArtifactRead>) -> Registrar {
        let table = crate::store::embedded::EmbeddedTable::open(dir).unwrap();
        let registry = Registry::new(Arc::new(table), Default::default());
        Registrar::new(
            registry,
            store,
            FolderConvention::new(LOCAL_BUCKET, "models/"),
        )
    }

    fn event(key: &str, change: Change, seq: u64) -> StorageEvent {
        StorageEvent {
            bucket: LOCAL_BUCKET.into(),
            key: key.into(),
            change,
            size: None,
            etag: None,
            sequencer: Some(format!("{seq:016X}")),
            time_ms: None,
        }
    }

    #[tokio::test]
    async fn any_delivery_order_with_duplicates_ends_like_one_in_order_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalArtifactStore::open(dir.path().join("files")).unwrap());
        let manifest = b"metrics: {acc: 0.5}\nparameters: {lr: 0.1}\nmodelFormatName: onnx\n";
        for (key, body) in [
            ("models/m/1/a.bin", b"aaa".as_slice()),
            ("models/m/1/b.bin", b"bbbb"),
            ("models/m/1/model-manifest.yaml", manifest),
        ] {
            store.put_bytes(key, body).await.unwrap();
        }
        for key in ["models/m/2/kept.bin", "models/m/2/gone.bin"] {
            store.put_bytes(key, b"x").await.unwrap();
        }
        store.delete("models/m/2/gone.bin").await.unwrap();
        let history = [
            event("models/m/1/a.bin", Change::Created, 1),
            event("models/m/1/b.bin", Change::Created, 2),
            event("models/m/1/model-manifest.yaml", Change::Created, 3),
            event("models/m/2/gone.bin", Change::Created, 4),
            event("models/m/2/gone.bin", Change::Removed, 5),
            event("models/m/2/kept.bin", Change::Created, 6),
        ];
        let in_order = registrar_in(&dir.path().join("a"), store.clone());
        for e in &history {
            in_order.apply(e).await.unwrap();
        }
        let expected = registered(&in_order, "m").await;
        assert_eq!(
            expected.as_array().unwrap().len(),
            1 + 1 + 3 + 1 + 1,
            "{expected:#}"
        );

        let shuffled = registrar_in(&dir.path().join("b"), store.clone());
        for i in [5, 4, 2, 4, 0, 3, 1, 1, 0, 2, 3, 5] {
            shuffled.apply(&history[i]).await.unwrap();
        }
        assert_eq!(registered(&shuffled, "m").await, expected);
        let stale = shuffled.apply(&history[3]).await.unwrap();
        assert!(
            matches!(stale, Outcome::Registered { applied: false, .. }),
            "{stale:?}"
        );
    }

    /// A registry on a local artifact store holding `models/m/1/w.bin`.
    async fn one_file(dir: &std::path::Path) -> (Registrar, Arc<LocalArtifactStore>) {
        let store = Arc::new(LocalArtifactStore::open(dir.join("files")).unwrap());
        store
            .put_bytes("models/m/1/w.bin", b"weights")
            .await
            .unwrap();
        (registrar_in(&dir.join("table"), store.clone()), store)
    }

    fn state_of(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Registered { registration, .. } => &registration.artifact_state,
            Outcome::Ignored { reason } => panic!("ignored: {reason}"),
        }
    }

    #[tokio::test]
    async fn a_forged_removal_of_a_present_object_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (registrar, store) = one_file(dir.path()).await;
        let created = registrar
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert_eq!(state_of(&created), "LIVE");
        let mut forged = event("models/m/1/w.bin", Change::Removed, 0);
        forged.sequencer = Some("F".repeat(MAX_SEQUENCER_LEN));
        forged.time_ms = Some(u64::MAX);
        let outcome = registrar.apply(&forged).await.unwrap();
        assert!(
            matches!(&outcome, Outcome::Registered { applied: false, registration } if registration.artifact_state == "LIVE"),
            "{outcome:?}"
        );
        // A genuine removal with a lower position still applies, and a new
        // upload brings the artifact back.
        store.delete("models/m/1/w.bin").await.unwrap();
        let removed = event("models/m/1/w.bin", Change::Removed, 2);
        assert_eq!(
            state_of(&registrar.apply(&removed).await.unwrap()),
            "DELETED"
        );
        store
            .put_bytes("models/m/1/w.bin", b"retrained")
            .await
            .unwrap();
        let again = event("models/m/1/w.bin", Change::Created, 3);
        assert_eq!(state_of(&registrar.apply(&again).await.unwrap()), "LIVE");
    }

    #[tokio::test]
    async fn a_forged_creation_of_an_absent_object_registers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (registrar, _store) = one_file(dir.path()).await;
        let mut ghost = event("models/ghost/1/w.bin", Change::Created, 0);
        ghost.sequencer = Some("F".repeat(MAX_SEQUENCER_LEN));
        ghost.size = Some(1);
        ghost.etag = Some("0123".into());
        let outcome = registrar.apply(&ghost).await.unwrap();
        assert!(matches!(outcome, Outcome::Ignored { .. }), "{outcome:?}");
        let found = registrar
            .registry()
            .find(Family::RegisteredModel, None, Some("ghost"), None, None)
            .await;
        assert!(matches!(found, Err(Error::NotFound(_))), "{found:?}");
        // Nor does a forged file in a registered folder count as a file.
        registrar
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        let outcome = registrar
            .apply(&event("models/m/1/ghost.bin", Change::Created, 9))
            .await
            .unwrap();
        let Outcome::Registered { applied, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(!applied);
        let artifact = registrar
            .registry()
            .find(
                Family::Artifact,
                Some(Kind::ModelArtifact),
                Some("m"),
                None,
                None,
            )
            .await;
        let count = artifact.map(|a| a.custom.get(props::FILE_COUNT).cloned());
        assert!(
            matches!(&count, Ok(Some(MetadataValue::Int(1)))),
            "{count:?}"
        );
    }

    /// A bucket whose first HEAD answers what it held a moment ago: a look
    /// taken before a concurrent change, written late. The registrar only
    /// reads, so reading is all this double has to do.
    struct StaleOnce {
        inner: Arc<LocalArtifactStore>,
        stale: std::sync::Mutex<Option<ObjectInfo>>,
    }

    impl ArtifactLocator for StaleOnce {
        fn uri(&self, key: &str) -> String {
            self.inner.uri(key)
        }
    }

    #[async_trait::async_trait]
    impl ArtifactRead for StaleOnce {
        async fn get(&self, key: &str) -> std::result::Result<Vec<u8>, ArtifactError> {
            self.inner.get(key).await
        }
        async fn head(&self, key: &str) -> std::result::Result<Option<ObjectInfo>, ArtifactError> {
            let stale = self.stale.lock().unwrap().take();
            match stale {
                Some(info) => Ok(Some(info)),
                None => self.inner.head(key).await,
            }
        }
    }

    #[tokio::test]
    async fn a_stale_look_written_late_is_corrected_by_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (_, files) = one_file(dir.path()).await;
        let before = files.head("models/m/1/w.bin").await.unwrap();
        files.delete("models/m/1/w.bin").await.unwrap();
        // The delivery of the creation looked while the file was there; by
        // the time it writes, the file is gone (and the removal's delivery,
        // which saw it gone, found nothing to record).
        let store = Arc::new(StaleOnce {
            inner: files,
            stale: std::sync::Mutex::new(before),
        });
        let registrar = registrar_in(&dir.path().join("stale"), store);
        let outcome = registrar
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert_eq!(state_of(&outcome), "DELETED", "{outcome:?}");
        let location = registrar
            .convention()
            .locate(LOCAL_BUCKET, "models/m/1/w.bin")
            .unwrap();
        let items = registrar.ledger.read_folder(&location).await.unwrap();
        assert_eq!(items.len(), 1);
        assert!(!items[0].state.present, "{:?}", items[0]);
        assert_eq!(items[0].version, 2, "written stale, then corrected");
    }

    #[tokio::test]
    async fn a_state_item_the_bucket_contradicts_is_corrected_whatever_its_position() {
        // What the old rule let a forged event leave behind: the object
        // recorded absent at the highest position while it is present.
        let dir = tempfile::tempdir().unwrap();
        let (registrar, _store) = one_file(dir.path()).await;
        let location = registrar
            .convention()
            .locate(LOCAL_BUCKET, "models/m/1/w.bin")
            .unwrap();
        let pinned = ObjectState::of(order_key(Some(&"F".repeat(MAX_SEQUENCER_LEN)), 0), None);
        let written = registrar
            .registry()
            .layout()
            .objects(LOCAL_BUCKET)
            .write(&location.folder, "models/m/1/w.bin", &pinned, None)
            .await
            .unwrap();
        assert!(written);
        let outcome = registrar
            .apply(&event("models/m/1/w.bin", Change::Created, 1))
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::Registered { applied: true, registration } if registration.artifact_state == "LIVE"),
            "{outcome:?}"
        );
        // And the same for the registry's own observation (the upload
        // extension's completion).
        let observed = registrar
            .observe(vec![("models/m/1/w.bin".into(), None)])
            .await
            .unwrap();
        assert_eq!(state_of(&observed), "LIVE");
    }
}
