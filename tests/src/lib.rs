//! Test-only package: see it/, events/ and functions/ (test support shared by
//! all of them is the `registry-test-support` crate in support/). Its library
//! holds what the test targets and this package's tools share:
//! - `issuer`: a token issuer with keys of its own (the tests, and the
//!   `test-issuer` tool that `make test` and `make bench` use from the shell);
//! - `oidc`: an OpenID Connect provider (authorization code with PKCE) on
//!   those keys, for tests of the browser login (`test-issuer oidc` runs it);
//! - `routing`: the routing of infra/knative/routing.yaml by method and path,
//!   and what its Knative Services run (the manifest tests, and
//!   `functions-gateway`, which routes by it).

pub mod issuer;
pub mod oidc;
pub mod routing;
