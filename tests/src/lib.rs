//! Test-only package: see it/. Its library holds what more than one test
//! target (and the `test-issuer` tool that `make test` and `make bench`
//! use from the shell) needs: a token issuer with keys of its own.

pub mod issuer;
