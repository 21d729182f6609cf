//! `test-issuer`: a token issuer for shell scripts (the upstream client's
//! runs under `MR_AUTH=jwt`, the benchmarks), and an OpenID Connect provider
//! on the same keys for trying the browser login by hand or from a script.
//!
//!     test-issuer jwks  DIR ISSUER AUDIENCE            # prints the JWKS (keys kept in DIR)
//!     test-issuer token DIR ISSUER AUDIENCE USER [GROUP...]   # prints a token valid for an hour
//!     test-issuer oidc  DIR PORT CLIENT_ID REDIRECT_URI [CLIENT_SECRET]
//!         # serves the provider on 127.0.0.1:PORT until killed, after
//!         # printing its issuer URL (`jwks DIR http://127.0.0.1:PORT AUD`
//!         # prints its keys)

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use registry_tests::issuer::TestIssuer;
use registry_tests::oidc::{Provider, ProviderOpts};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, dir, port, client_id, redirect_uri, secret @ ..]
            if cmd == "oidc" && secret.len() <= 1 =>
        {
            let Ok(port) = port.parse() else {
                return usage();
            };
            oidc(ProviderOpts {
                client_id: client_id.clone(),
                client_secret: secret.first().cloned(),
                redirect_uris: vec![redirect_uri.clone()],
                keys_dir: Some(dir.into()),
                port,
            })
        }
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

/// Runs the provider; the issuer URL on stdout tells a script it is ready.
fn oidc(opts: ProviderOpts) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let provider = Provider::start(opts).await;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", provider.issuer()).expect("stdout");
        stdout.flush().expect("stdout");
        match provider.serve_forever().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("test-issuer oidc: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: test-issuer jwks DIR ISSUER AUDIENCE\n       \
         test-issuer token DIR ISSUER AUDIENCE USER [GROUP...]\n       \
         test-issuer oidc DIR PORT CLIENT_ID REDIRECT_URI [CLIENT_SECRET]"
    );
    ExitCode::from(2)
}
