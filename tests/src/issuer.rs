//! A token issuer for tests: an RSA (RS256) and an EC P-256 (ES256) key
//! generated on the spot, their JWKS, and signed JWTs with any claims.
//! Signing is done here with aws-lc-rs, independently of the verifier the
//! server uses, so the server is checked against a second implementation.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

/// Which key signs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
}

/// An issuer with one RSA and one EC key.
pub struct TestIssuer {
    pub issuer: String,
    pub audience: String,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    /// kids of the two keys.
    pub rsa_kid: String,
    pub ec_kid: String,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

impl TestIssuer {
    /// New keys; `tag` makes the kids differ between issuers.
    pub fn new(issuer: &str, audience: &str, tag: &str) -> TestIssuer {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key");
        TestIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            rsa,
            ec,
            rsa_kid: format!("rsa-{tag}"),
            ec_kid: format!("ec-{tag}"),
        }
    }

    /// Keys kept in `dir` (created on first use), so separate processes
    /// (a shell script, then a test) sign with the same keys.
    pub fn in_dir(dir: &Path, issuer: &str, audience: &str) -> TestIssuer {
        let rsa_path = dir.join("rsa.pk8");
        let ec_path = dir.join("ec.pk8");
        if !rsa_path.exists() || !ec_path.exists() {
            std::fs::create_dir_all(dir).expect("issuer dir");
            let fresh = TestIssuer::new(issuer, audience, "1");
            let rsa_der = fresh.rsa.as_der().expect("RSA pkcs8");
            std::fs::write(&rsa_path, rsa_der.as_ref()).expect("write RSA key");
            std::fs::write(&ec_path, fresh.ec.to_pkcs8v1().expect("EC pkcs8").as_ref())
                .expect("write EC key");
        }
        let rsa = RsaKeyPair::from_pkcs8(&std::fs::read(&rsa_path).expect("read RSA key"))
            .expect("RSA key");
        let ec = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(&ec_path).expect("read EC key"),
        )
        .expect("EC key");
        TestIssuer {
            issuer: issuer.into(),
            audience: audience.into(),
            rsa,
            ec,
            rsa_kid: "rsa-1".into(),
            ec_kid: "ec-1".into(),
        }
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.rsa_jwk(), self.ec_jwk()]})
    }

    pub fn rsa_jwk(&self) -> Value {
        let (n, e) = rsa_components(self.rsa.public_key().as_ref());
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.rsa_kid,
               "n": B64.encode(n), "e": B64.encode(e)})
    }

    pub fn ec_jwk(&self) -> Value {
        let point = self.ec.public_key().as_ref(); // 0x04 || x || y
        json!({"kty": "EC", "use": "sig", "crv": "P-256", "kid": self.ec_kid,
               "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])})
    }

    /// Standard claims for `user` in `groups`, valid for an hour.
    pub fn claims(&self, user: &str, groups: &[&str]) -> Value {
        let now = now_secs();
        json!({"iss": self.issuer, "aud": self.audience, "sub": user,
               "groups": groups, "iat": now, "nbf": now, "exp": now + 3600})
    }

    /// A valid RS256 token for `user`.
    pub fn token(&self, user: &str, groups: &[&str]) -> String {
        self.sign(&self.claims(user, groups), Alg::Rs256, None)
    }

    /// Sign `claims` with the key of `alg`; `kid` overrides the key's kid.
    pub fn sign(&self, claims: &Value, alg: Alg, kid: Option<&str>) -> String {
        let (name, default_kid) = match alg {
            Alg::Rs256 => ("RS256", &self.rsa_kid),
            Alg::Es256 => ("ES256", &self.ec_kid),
        };
        let header = json!({"alg": name, "typ": "JWT", "kid": kid.unwrap_or(default_kid)});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match alg {
            Alg::Rs256 => {
                let mut sig = vec![0u8; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &rng,
                        input.as_bytes(),
                        &mut sig,
                    )
                    .expect("RSA sign");
                sig
            }
            Alg::Es256 => self
                .ec
                .sign(&rng, input.as_bytes())
                .expect("EC sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", B64.encode(sig))
    }

    /// An unsigned token (`alg: none`), as an attacker would send.
    pub fn unsigned(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT"});
        format!(
            "{}.{}.",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        )
    }

    /// An HS256 token keyed with the RSA public key's JWK text (the
    /// classic algorithm-confusion attack).
    pub fn hmac_confused(&self, claims: &Value) -> String {
        use aws_lc_rs::hmac;
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": self.rsa_kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.rsa_jwk().to_string().as_bytes());
        let tag = hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    }
}

/// `n` and `e` of a DER `RSAPublicKey` (RFC 8017: SEQUENCE { INTEGER n, INTEGER e }).
fn rsa_components(der: &[u8]) -> (&[u8], &[u8]) {
    fn element(input: &[u8], tag: u8) -> (&[u8], &[u8]) {
        assert_eq!(input[0], tag, "unexpected DER tag");
        let (len, start) = match input[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let bytes = (n & 0x7f) as usize;
                let len = input[2..2 + bytes]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                (len, 2 + bytes)
            }
        };
        (&input[start..start + len], &input[start + len..])
    }
    let (seq, _) = element(der, 0x30);
    let (n, rest) = element(seq, 0x02);
    let (e, _) = element(rest, 0x02);
    let trim = |v: &[u8]| -> usize { v.iter().take_while(|b| **b == 0).count().min(v.len() - 1) };
    (&n[trim(n)..], &e[trim(e)..])
}
