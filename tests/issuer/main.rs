//! `test-issuer`: a token issuer for shell scripts (the upstream client's
//! runs under `MR_AUTH=jwt`, the benchmarks).
//!
//!     test-issuer jwks  DIR ISSUER AUDIENCE            # prints the JWKS (keys kept in DIR)
//!     test-issuer token DIR ISSUER AUDIENCE USER [GROUP...]   # prints a token valid for an hour

use std::path::Path;
use std::process::ExitCode;

use registry_tests::issuer::TestIssuer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir, iss, aud, rest @ ..] => {
            let issuer = TestIssuer::in_dir(Path::new(dir), iss, aud);
            match (cmd.as_str(), rest) {
                ("jwks", []) => println!("{}", issuer.jwks()),
                ("token", [user, groups @ ..]) => {
                    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
                    println!("{}", issuer.token(user, &groups));
                }
                _ => return usage(),
            }
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: test-issuer jwks DIR ISSUER AUDIENCE\n       test-issuer token DIR ISSUER AUDIENCE USER [GROUP...]"
    );
    ExitCode::from(2)
}
