//! The convention that says which model version an object belongs to:
//! under the prefix (`MR_EVENTS_PREFIX`, default `models/`) of the artifact
//! bucket, `<prefix><model>/<version>/<path...>` is a file of version
//! `<version>` of model `<model>`. Objects elsewhere, in other buckets,
//! folder markers and names that cannot be entity names are none of ours.

use crate::domain::entity::MAX_NAME;
use crate::domain::error::{Error, Result};
use crate::store::artifacts::{ArtifactError, validate_key};

/// Default `MR_EVENTS_PREFIX`.
pub const DEFAULT_PREFIX: &str = "models/";
/// The bucket name events carry for the local artifact store (no
/// `MR_ARTIFACT_BUCKET`): `make run` users can post events for it by hand.
pub const LOCAL_BUCKET: &str = "local";

/// Where an object sits in the convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub model: String,
    pub version: String,
    /// `<prefix><model>/<version>/`
    pub folder: String,
    /// The object's path inside the folder.
    pub path: String,
}

/// Why an object is none of the convention's (its events are ignored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    #[error("bucket '{bucket}' is not the artifact bucket '{artifact_bucket}'")]
    OtherBucket {
        bucket: String,
        artifact_bucket: String,
    },
    #[error("key is outside the prefix '{0}'")]
    OutsidePrefix(String),
    /// The key is not `<prefix><model>/<version>/<file>` (the prefix given).
    #[error("key is not {0}<model>/<version>/<file>")]
    NotInVersionFolder(String),
    #[error("key is a folder marker")]
    FolderMarker,
    #[error("{what} '{name}' is not allowed")]
    DotName { what: &'static str, name: String },
    #[error("{what} is longer than {MAX_NAME} characters")]
    NameTooLong { what: &'static str },
    #[error("{what} contains control characters")]
    ControlCharacters { what: &'static str },
    /// A key no artifact store takes.
    #[error(transparent)]
    Key(ArtifactError),
}

/// The bucket and prefix whose objects register models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderConvention {
    bucket: String,
    prefix: String,
}

impl FolderConvention {
    /// `prefix` is empty or ends with `/`.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        FolderConvention {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where `key` of `bucket` belongs, or why the object is none of ours.
    pub fn locate(&self, bucket: &str, key: &str) -> std::result::Result<Location, NotOurs> {
        if bucket != self.bucket {
            return Err(NotOurs::OtherBucket {
                bucket: bucket.to_string(),
                artifact_bucket: self.bucket.clone(),
            });
        }
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return Err(NotOurs::OutsidePrefix(self.prefix.clone()));
        };
        let mut parts = rest.splitn(3, '/');
        let (model, version, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(v), Some(p)) if !m.is_empty() && !v.is_empty() && !p.is_empty() => {
                (m, v, p)
            }
            _ => return Err(NotOurs::NotInVersionFolder(self.prefix.clone())),
        };
        if path.ends_with('/') {
            return Err(NotOurs::FolderMarker);
        }
        check_segment("model name", model)?;
        check_segment("version name", version)?;
        validate_key(key).map_err(NotOurs::Key)?;
        Ok(Location {
            model: model.to_string(),
            version: version.to_string(),
            folder: format!("{}{model}/{version}/", self.prefix),
            path: path.to_string(),
        })
    }

    /// The folder of version `version` of model `model`, for uploads through
    /// the registry: names that cannot be one path segment are refused.
    pub fn folder(&self, model: &str, version: &str) -> Result<String> {
        for (what, name) in [("model name", model), ("version name", version)] {
            if name.contains('/') || name == "." || name == ".." {
                return Err(Error::BadRequest(format!(
                    "{what} '{name}' cannot be a folder of the upload convention \
                     ({}<model>/<version>/): it contains '/' or is '.' or '..'",
                    self.prefix
                )));
            }
        }
        let folder = format!("{}{model}/{version}/", self.prefix);
        match self.locate(&self.bucket, &format!("{folder}x")) {
            Ok(_) => Ok(folder),
            Err(why) => Err(Error::BadRequest(format!(
                "cannot upload model '{model}' version '{version}': {why}"
            ))),
        }
    }
}

/// A model or version name as one segment of a key.
fn check_segment(what: &'static str, s: &str) -> std::result::Result<(), NotOurs> {
    if s == "." || s == ".." {
        return Err(NotOurs::DotName {
            what,
            name: s.to_string(),
        });
    }
    if s.chars().count() > MAX_NAME {
        return Err(NotOurs::NameTooLong { what });
    }
    if s.chars().any(char::is_control) {
        return Err(NotOurs::ControlCharacters { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convention() -> FolderConvention {
        FolderConvention::new("ml", "models/")
    }

    #[test]
    fn locates_objects_of_the_convention() {
        let l = convention()
            .locate("ml", "models/mnist/1.0.0/onnx/model.onnx")
            .unwrap();
        assert_eq!(l.model, "mnist");
        assert_eq!(l.version, "1.0.0");
        assert_eq!(l.folder, "models/mnist/1.0.0/");
        assert_eq!(l.path, "onnx/model.onnx");
        let root = FolderConvention::new("ml", "");
        assert_eq!(root.locate("ml", "m/v/f").unwrap().folder, "m/v/");
    }

    #[test]
    fn ignores_what_is_not_ours() {
        let c = convention();
        for (bucket, key) in [
            ("other", "models/m/v/f"),
            ("ml", "datasets/m/v/f"),
            ("ml", "models/m/v"),
            ("ml", "models/m/v/"),
            ("ml", "models/m//f"),
            ("ml", "models/m/v/dir/"),
            ("ml", "models/../v/f"),
            ("ml", "models/m/v/a//b"),
            ("ml", "models/m\u{1}/v/f"),
        ] {
            assert!(c.locate(bucket, key).is_err(), "{bucket}/{key}");
        }
        let long = "m".repeat(MAX_NAME + 1);
        assert!(c.locate("ml", &format!("models/{long}/v/f")).is_err());
        assert_eq!(
            c.locate("other", "models/m/v/f").unwrap_err().to_string(),
            "bucket 'other' is not the artifact bucket 'ml'"
        );
    }

    #[test]
    fn folders_for_uploads_refuse_names_that_are_not_one_segment() {
        let c = convention();
        assert_eq!(c.folder("mnist", "1").unwrap(), "models/mnist/1/");
        assert!(c.folder("team/mnist", "1").is_err());
        assert!(c.folder("mnist", "..").is_err());
    }
}
