//! Authorization at the API edge: the caller of a request (put there by
//! the edge, see `edge`) and the checks handlers make before they act.
//!
//! A denied caller gets 401 when it sent no credentials (with
//! `WWW-Authenticate: Bearer`: it may authenticate and try again) and 403
//! otherwise. Lists do not deny: they leave out what the caller may not
//! read (see `lists`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::{ApiError, ApiResult};
use crate::domain::access::{Access, Caller, Permission};
use crate::domain::entity::{Entity, NewEntity};
use crate::domain::error::Error;
use crate::domain::ownership::Owners;

/// Who is calling and what it may do; every request behind the edge has one.
#[derive(Debug, Clone)]
pub struct Identity {
    pub caller: Arc<Caller>,
    pub access: Arc<Access>,
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
            Error::internal("request reached a handler without passing authentication").into()
        })
    }
}

fn verb(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::Write => "change",
        Permission::Approve => "approve",
        Permission::Admin => "administer",
    }
}

impl Identity {
    /// The refusal of `p` on `what`.
    pub fn denied(&self, p: Permission, what: &str) -> ApiError {
        let refusal = if self.caller.is_anonymous() {
            Error::Unauthenticated(format!("authentication required to {} {what}", verb(p)))
        } else {
            Error::Forbidden(format!("{} may not {} {what}", self.caller.user, verb(p)))
        };
        refusal.into()
    }

    /// Check `p` on the model named `model` (`None`: on what belongs to no model).
    pub fn check_model(&self, p: Permission, model: Option<&str>) -> ApiResult<()> {
        if self.access.allows(p, model) {
            return Ok(());
        }
        Err(match model {
            Some(name) => self.denied(p, &format!("registered model '{name}'")),
            None => self.denied(p, "entities outside registered models"),
        })
    }

    /// Check `p` on an existing entity.
    pub async fn check(&self, owners: &Owners, p: Permission, e: &Entity) -> ApiResult<()> {
        if self.access.allows_everywhere(p) {
            return Ok(());
        }
        let model = owners.of(e).await?;
        self.check_model(p, model.as_deref())
    }

    /// Check `p` (a create) for an entity that does not exist yet.
    pub async fn check_new(
        &self,
        owners: &Owners,
        p: Permission,
        new: &NewEntity,
    ) -> ApiResult<()> {
        if self.access.allows_everywhere(p) {
            return Ok(());
        }
        let model = owners.of_new(new).await?;
        self.check_model(p, model.as_deref())
    }

    /// May the caller read everything (lists need no per-item check)?
    pub fn reads_everything(&self) -> bool {
        self.access.allows_everywhere(Permission::Read)
    }

    /// May the caller read `e`? (Lists leave out what it may not.)
    pub async fn may_read(&self, owners: &Owners, e: &Entity) -> ApiResult<bool> {
        if self.reads_everything() {
            return Ok(true);
        }
        let model = owners.of(e).await?;
        Ok(self.access.allows(Permission::Read, model.as_deref()))
    }
}
