//! Who may do what: callers, roles, and the policy that binds them to
//! models.
//!
//! A policy is a list of bindings (`MR_POLICY`, YAML):
//!
//! ```yaml
//! bindings:
//!   - role: writer            # reader | writer | approver | admin
//!     users: [data-scientist@example.com]
//!     groups: [ml-team]
//!     models: ["churn-*"]     # optional: registered-model name globs; absent = all
//! ```
//!
//! A binding applies to a caller named in `users` or member of one of
//! `groups`, on the registered models whose name matches one of `models`
//! (everything under them too: versions, artifacts, deployments) or, without
//! `models`, on everything, including what belongs to no model (experiments,
//! runs, serving environments, standalone artifacts).
//!
//! `reader` reads; `writer` also creates and updates; `approver` reads and
//! decides approvals; `admin` may do everything. A caller's rights are the
//! union of its bindings. Callers without credentials are the user
//! [`ANONYMOUS`], which a binding may name.

use serde::Deserialize;

/// The user of requests that carry no credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Most bindings in one policy, and most names/globs in one binding: a
/// policy is read at start-up, but it is still input.
const MAX_BINDINGS: usize = 10_000;
const MAX_LIST: usize = 10_000;
const MAX_GLOB: usize = 255;

/// Who is calling, as authenticated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user (`sub` of a token, `kubeflow-userid`, ...) or [`ANONYMOUS`].
    pub user: String,
    pub groups: Vec<String>,
}

impl Caller {
    pub fn anonymous() -> Caller {
        Caller {
            user: ANONYMOUS.to_string(),
            groups: Vec::new(),
        }
    }

    /// True for a request that carried no credentials.
    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS
    }
}

/// What a binding grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Writer,
    Approver,
    Admin,
}

/// One kind of action, checked against roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Gets, finds, lists.
    Read,
    /// Creates and updates.
    Write,
    /// Approval decisions.
    Approve,
    /// Everything else (policy, ledger verification).
    Admin,
}

impl Role {
    pub fn grants(self, p: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Writer => matches!(p, Permission::Read | Permission::Write),
            Role::Approver => matches!(p, Permission::Read | Permission::Approve),
            Role::Reader => p == Permission::Read,
        }
    }
}

/// A registered-model name pattern: `*` is any run of characters, `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("a model pattern must not be empty".into());
        }
        if pattern.chars().count() > MAX_GLOB {
            return Err(format!(
                "model pattern '{pattern}' is longer than {MAX_GLOB} characters"
            ));
        }
        Ok(Glob(pattern.chars().collect()))
    }

    /// Wildcard match with one backtracking point: O(len(name) × len(pattern)),
    /// both at most 255 characters.
    pub fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        let p = &self.0;
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            match p.get(pi) {
                Some('*') => {
                    star = Some((pi, ti));
                    pi += 1;
                }
                Some(&c) if c == '?' || c == text[ti] => {
                    pi += 1;
                    ti += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        pi = sp + 1;
                        ti = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// One binding of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub role: Role,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// `None`: every model and everything that belongs to none.
    pub models: Option<Vec<Glob>>,
}

impl Binding {
    fn applies_to(&self, caller: &Caller) -> bool {
        self.users.contains(&caller.user)
            || (!caller.is_anonymous() && self.groups.iter().any(|g| caller.groups.contains(g)))
    }
}

/// What is wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// Who may do what (`MR_POLICY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    bindings: Vec<BindingFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingFile {
    role: Role,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
}

impl Policy {
    /// Everyone may do everything: `MR_AUTH=none` without a policy (a laptop).
    pub fn allow_all() -> Policy {
        Policy {
            bindings: vec![Binding {
                role: Role::Admin,
                users: vec![ANONYMOUS.to_string()],
                groups: Vec::new(),
                models: None,
            }],
        }
    }

    /// Every authenticated caller may do everything, anonymous callers
    /// nothing: authentication without a policy (upstream's all-or-nothing
    /// proxy model).
    pub fn authenticated_all() -> Policy {
        Policy {
            bindings: Vec::new(),
        }
        .with_authenticated_admin()
    }

    fn with_authenticated_admin(mut self) -> Policy {
        self.bindings.push(Binding {
            role: Role::Admin,
            users: Vec::new(),
            groups: vec![AUTHENTICATED_GROUP.to_string()],
            models: None,
        });
        self
    }

    /// Parse a policy file (YAML or JSON), with a message that says what is wrong.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text).map_err(PolicyError)
    }

    fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        if file.bindings.len() > MAX_BINDINGS {
            return Err(format!("at most {MAX_BINDINGS} bindings"));
        }
        let mut bindings = Vec::with_capacity(file.bindings.len());
        for (i, b) in file.bindings.into_iter().enumerate() {
            let at = |msg: String| format!("bindings[{i}]: {msg}");
            if b.users.is_empty() && b.groups.is_empty() {
                return Err(at("names no users and no groups".into()));
            }
            if b.users.len() > MAX_LIST || b.groups.len() > MAX_LIST {
                return Err(at(format!("at most {MAX_LIST} users and groups")));
            }
            if let Some(empty) = b
                .users
                .iter()
                .chain(&b.groups)
                .find(|s| s.trim().is_empty())
            {
                return Err(at(format!("'{empty}' is not a user or group name")));
            }
            let models = match b.models {
                None => None,
                Some(list) if list.is_empty() => {
                    return Err(at(
                        "models is empty (leave it out to cover every model)".into()
                    ));
                }
                Some(list) if list.len() > MAX_LIST => {
                    return Err(at(format!("at most {MAX_LIST} model patterns")));
                }
                Some(list) => Some(
                    list.iter()
                        .map(|g| Glob::new(g))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(at)?,
                ),
            };
            bindings.push(Binding {
                role: b.role,
                users: b.users,
                groups: b.groups,
                models,
            });
        }
        Ok(Policy { bindings })
    }

    /// The rights of one caller.
    pub fn access(&self, caller: &Caller) -> Access {
        let mut who = caller.clone();
        if !caller.is_anonymous() {
            who.groups.push(AUTHENTICATED_GROUP.to_string());
        }
        Access {
            grants: self
                .bindings
                .iter()
                .filter(|b| b.applies_to(&who))
                .map(|b| (b.role, b.models.clone()))
                .collect(),
        }
    }
}

/// A group every authenticated caller is in (the default policy binds it);
/// `:` keeps it apart from group names of identity providers.
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What one caller may do: the bindings that apply to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    grants: Vec<(Role, Option<Vec<Glob>>)>,
}

impl Access {
    /// May the caller do `p` on the registered model named `model`, or, with
    /// `None`, on something that belongs to no model?
    pub fn allows(&self, p: Permission, model: Option<&str>) -> bool {
        self.grants.iter().any(|(role, models)| {
            role.grants(p)
                && match (models, model) {
                    (None, _) => true,
                    (Some(globs), Some(name)) => globs.iter().any(|g| g.matches(name)),
                    (Some(_), None) => false,
                }
        })
    }

    /// May the caller do `p` on everything (no per-entity check needed)?
    pub fn allows_everywhere(&self, p: Permission) -> bool {
        self.grants
            .iter()
            .any(|(role, models)| models.is_none() && role.grants(p))
    }

    /// Does the caller have any right at all?
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, groups: &[&str]) -> Caller {
        Caller {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    const POLICY: &str = r#"
bindings:
  - role: writer
    users: [ada@example.com]
    groups: [ml-team]
    models: ["churn-*"]
  - role: reader
    users: [anonymous]
    models: ["public-?"]
  - role: approver
    groups: [risk]
  - role: admin
    users: [root]
"#;

    #[test]
    fn bindings_grant_by_user_group_and_model() {
        let p = Policy::from_yaml(POLICY).unwrap();
        let ada = p.access(&caller("ada@example.com", &[]));
        assert!(ada.allows(Permission::Write, Some("churn-v2")));
        assert!(ada.allows(Permission::Read, Some("churn-")));
        assert!(!ada.allows(Permission::Read, Some("fraud")));
        assert!(!ada.allows(Permission::Read, None));
        assert!(!ada.allows_everywhere(Permission::Read));
        let team = p.access(&caller("bob", &["ml-team"]));
        assert!(team.allows(Permission::Write, Some("churn-x")));
        let anon = p.access(&Caller::anonymous());
        assert!(anon.allows(Permission::Read, Some("public-1")));
        assert!(!anon.allows(Permission::Read, Some("public-10")));
        assert!(!anon.allows(Permission::Write, Some("public-1")));
        let risk = p.access(&caller("eve", &["risk"]));
        assert!(risk.allows(Permission::Approve, Some("anything")));
        assert!(risk.allows(Permission::Read, None));
        assert!(!risk.allows(Permission::Write, Some("anything")));
        let root = p.access(&caller("root", &[]));
        assert!(root.allows_everywhere(Permission::Admin));
        assert!(p.access(&caller("nobody", &[])).is_empty());
    }

    #[test]
    fn anonymous_is_never_in_a_group() {
        let p = Policy::from_yaml("bindings: [{role: admin, groups: [x]}]").unwrap();
        let mut anon = Caller::anonymous();
        anon.groups.push("x".into());
        assert!(p.access(&anon).is_empty());
    }

    #[test]
    fn defaults() {
        assert!(
            Policy::allow_all()
                .access(&Caller::anonymous())
                .allows_everywhere(Permission::Admin)
        );
        let auth = Policy::authenticated_all();
        assert!(auth.access(&Caller::anonymous()).is_empty());
        assert!(
            auth.access(&caller("x", &[]))
                .allows_everywhere(Permission::Write)
        );
    }

    #[test]
    fn invalid_policies_say_why() {
        for (text, says) in [
            ("bindings: [{role: owner, users: [a]}]", "unknown variant"),
            ("bindings: [{role: reader}]", "no users and no groups"),
            (
                "bindings: [{role: reader, users: [a], model: [x]}]",
                "unknown field",
            ),
            (
                "bindings: [{role: reader, users: [a], models: []}]",
                "models is empty",
            ),
            (
                "bindings: [{role: reader, users: ['']}]",
                "not a user or group",
            ),
            ("rules: []", "unknown field"),
        ] {
            let err = Policy::from_yaml(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn globs() {
        let g = |p: &str, s: &str| Glob::new(p).unwrap().matches(s);
        assert!(g("*", ""));
        assert!(g("churn-*", "churn-"));
        assert!(g("*-prod", "a-b-prod"));
        assert!(g("a*b*c", "aXXbYYc"));
        assert!(!g("a*b*c", "aXXbYY"));
        assert!(g("m?", "m1"));
        assert!(!g("m?", "m"));
        assert!(g("é*", "été"));
        assert!(!g("exact", "exactly"));
    }
}
