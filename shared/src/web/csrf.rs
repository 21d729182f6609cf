//! Tokens that forms carry (defence in depth beside the edge, which
//! refuses writes from another origin): HMAC-SHA256 over the caller and an
//! expiry, under `MR_WEB_SECRET` (set the same secret on every instance;
//! without one each process draws its own, so a form posted to another
//! instance is refused and has to be sent again).

use crate::api::auth::session::{constant_time_eq, web_secret};
use crate::domain::now_ms;
use crate::events::hmac_sha256;

/// How long a form stays valid.
const LIFETIME_MS: u64 = 2 * 3600 * 1000;

fn sign(user: &str, expires: u64) -> String {
    hmac_sha256(
        web_secret(),
        format!("csrf\u{0}{user}\u{0}{expires}").as_bytes(),
    )
}

/// A token for a form `user` is shown.
pub fn token(user: &str) -> String {
    let expires = now_ms() + LIFETIME_MS;
    format!("{expires}.{}", sign(user, expires))
}

/// Does `token` come from a form shown to `user`, and is it still valid?
pub fn check(user: &str, token: &str) -> bool {
    let Some((expires, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    expires > now_ms() && constant_time_eq(mac.as_bytes(), sign(user, expires).as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_is_for_its_user_only() {
        let t = super::token("ada");
        assert!(super::check("ada", &t));
        assert!(!super::check("bob", &t));
        assert!(!super::check("ada", "1.abc"));
        assert!(!super::check("ada", ""));
    }
}
