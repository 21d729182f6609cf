//! `registry-local`: every API slice on one port, on the configured store.
//! Used by `make run` and the tests.

#[tokio::main]
async fn main() {
    if let Err(e) = registry::runtime::serve(&registry::api::Slice::ALL).await {
        eprintln!("registry-local: {e}");
        std::process::exit(1);
    }
}
