//! Where the test servers (dynalite, s3s-fs) are: an environment variable,
//! else the `.cache/servers/env` file that `tests/servers/servers.sh start`
//! writes.

/// The value of `key` (for example `MR_TEST_DYNAMODB_ENDPOINT`).
pub fn server_env(key: &str) -> String {
    if let Ok(v) = std::env::var(key) {
        return v;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.cache/servers/env");
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
        })
        .unwrap_or_else(|| {
            panic!("{key} not set: run `make test` or tests/servers/servers.sh start")
        })
}
