//! Authentication under `MR_AUTH=jwt`: tokens from a test issuer (keys
//! generated here, JWKS from a file and from a local HTTP server), every
//! route of the route table refused without a token, health open.

use std::sync::{Arc, Mutex};

use registry_tests::issuer::{Alg, TestIssuer, now_secs};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Api, PREFIXES, V1, uniq};
use crate::harness::{Server, ServerOpts};

pub const ISSUER: &str = "https://issuer.test/realms/ml";
pub const AUDIENCE: &str = "model-registry";

/// A registry under `MR_AUTH=jwt` trusting `issuer` (JWKS in a file), with
/// `policy` (YAML; `None`: no policy file) and more environment.
pub struct Secured {
    pub server: Server,
    pub issuer: TestIssuer,
    pub dir: tempfile::TempDir,
}

impl Secured {
    pub async fn start(policy: Option<&str>, env: &[(&str, &str)]) -> Secured {
        let issuer = TestIssuer::new(ISSUER, AUDIENCE, "a");
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string()).expect("write JWKS");
        let mut vars = vec![
            ("MR_AUTH".to_string(), "jwt".to_string()),
            ("MR_JWT_ISSUER".to_string(), ISSUER.to_string()),
            ("MR_JWT_JWKS".to_string(), jwks.display().to_string()),
            ("MR_JWT_AUDIENCE".to_string(), AUDIENCE.to_string()),
        ];
        if let Some(policy) = policy {
            let path = dir.path().join("policy.yaml");
            std::fs::write(&path, policy).expect("write policy");
            vars.push(("MR_POLICY".into(), path.display().to_string()));
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let server = Server::start_with(ServerOpts {
            env: vars,
            ..Default::default()
        })
        .await;
        Secured {
            server,
            issuer,
            dir,
        }
    }

    /// A client of `prefix` authenticated as `user` in `groups`.
    pub fn as_user(&self, prefix: &'static str, user: &str, groups: &[&str]) -> Api {
        self.server
            .api(prefix)
            .with_bearer(&self.issuer.token(user, groups))
    }

    pub fn jwks_path(&self) -> std::path::PathBuf {
        self.dir.path().join("jwks.json")
    }
}

/// GET /registered_models with `token`: the status.
async fn status_with(api: &Api, token: &str) -> u16 {
    api.with_bearer(token)
        .get("/registered_models?pageSize=1")
        .await
        .status
}

#[tokio::test]
async fn tokens_are_verified_fully() {
    let s = Secured::start(None, &[]).await;
    let api = s.server.api(V1);
    let i = &s.issuer;
    let now = now_secs();
    let with = |patch: Value| {
        let mut c = i.claims("ada@example.com", &["ml-team"]);
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Valid tokens, both algorithms; the audience may be one of several.
    assert_eq!(
        status_with(&api, &i.token("ada@example.com", &[])).await,
        200
    );
    let es = i.sign(&with(json!({})), Alg::Es256, None);
    assert_eq!(status_with(&api, &es).await, 200);
    let multi_aud = with(json!({"aud": ["other", AUDIENCE]}));
    assert_eq!(
        status_with(&api, &i.sign(&multi_aud, Alg::Rs256, None)).await,
        200
    );
    // Without aud, a client_id naming the audience (Cognito's access
    // tokens), as API Gateway's JWT authorizer accepts.
    let cognito_access = with(json!({"aud": null, "client_id": AUDIENCE, "token_use": "access"}));
    assert_eq!(
        status_with(&api, &i.sign(&cognito_access, Alg::Rs256, None)).await,
        200
    );
    // Clock skew within 60 s is tolerated.
    let just_expired = with(json!({"exp": now - 30}));
    assert_eq!(
        status_with(&api, &i.sign(&just_expired, Alg::Rs256, None)).await,
        200
    );

    let other = TestIssuer::new(ISSUER, AUDIENCE, "a"); // same kids, other keys
    let refused: Vec<(&str, String)> = vec![
        (
            "expired",
            i.sign(&with(json!({"exp": now - 120})), Alg::Rs256, None),
        ),
        (
            "not yet valid",
            i.sign(&with(json!({"nbf": now + 300})), Alg::Es256, None),
        ),
        (
            "wrong issuer",
            i.sign(
                &with(json!({"iss": "https://evil.example"})),
                Alg::Rs256,
                None,
            ),
        ),
        (
            "wrong audience",
            i.sign(&with(json!({"aud": "someone-else"})), Alg::Rs256, None),
        ),
        (
            "no audience",
            i.sign(&with(json!({"aud": null})), Alg::Rs256, None),
        ),
        (
            "another client, no audience",
            i.sign(
                &with(json!({"aud": null, "client_id": "someone-else"})),
                Alg::Rs256,
                None,
            ),
        ),
        (
            "another audience, whatever the client",
            i.sign(
                &with(json!({"aud": "someone-else", "client_id": AUDIENCE})),
                Alg::Rs256,
                None,
            ),
        ),
        (
            "no expiry",
            i.sign(&with(json!({"exp": null})), Alg::Rs256, None),
        ),
        (
            "wrong signature",
            other.sign(&with(json!({})), Alg::Rs256, None),
        ),
        (
            "wrong signature (EC)",
            other.sign(&with(json!({})), Alg::Es256, None),
        ),
        ("alg none", i.unsigned(&with(json!({})))),
        (
            "HMAC with the public key",
            i.hmac_confused(&with(json!({}))),
        ),
        (
            "unknown kid",
            i.sign(&with(json!({})), Alg::Rs256, Some("nobody")),
        ),
        (
            "EC key for RS256",
            i.sign(&with(json!({})), Alg::Rs256, Some(&i.ec_kid)),
        ),
        (
            "no subject",
            i.sign(&with(json!({"sub": null})), Alg::Rs256, None),
        ),
        (
            "reserved subject",
            i.sign(&with(json!({"sub": "anonymous"})), Alg::Rs256, None),
        ),
        ("garbage", "not.a.token".to_string()),
    ];
    for (what, token) in refused {
        let r = api.with_bearer(&token).get("/registered_models").await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        r.err(401);
    }
    // Another scheme is not ignored (it would pass as anonymous).
    let r = api
        .send(
            api.request(Method::GET, "/registered_models")
                .header("authorization", "Basic YWRhOnB3"),
            None,
        )
        .await;
    r.err(401);
}

#[tokio::test]
async fn a_rotated_key_in_the_jwks_file_is_picked_up() {
    let s = Secured::start(None, &[("MR_JWT_REFRESH_SECS", "1")]).await;
    let api = s.server.api(V1);
    let rotated = TestIssuer::new(ISSUER, AUDIENCE, "b");
    let token = rotated.token("ada@example.com", &[]);
    // Unknown kid: the file is read again (once), the key is still not there.
    assert_eq!(status_with(&api, &token).await, 401);
    let mut jwks = s.issuer.jwks();
    jwks["keys"].as_array_mut().unwrap().push(rotated.rsa_jwk());
    std::fs::write(s.jwks_path(), jwks.to_string()).unwrap();
    // Reloads are rate-limited (MR_JWT_REFRESH_SECS: 1 s here, 10 s by default).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if status_with(&api, &token).await == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated key was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// A JWKS served over HTTP on 127.0.0.1, whose keys the test can change;
/// counts its fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<u32>>,
}

impl JwksServer {
    async fn start(jwks: Value) -> JwksServer {
        let keys = Arc::new(Mutex::new(jwks));
        let fetches = Arc::new(Mutex::new(0u32));
        let (k, f) = (keys.clone(), fetches.clone());
        let app = axum::Router::new().route(
            "/keys",
            axum::routing::get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    *f.lock().unwrap() += 1;
                    axum::Json(k.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/keys",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { url, keys, fetches }
    }
}

#[tokio::test]
async fn keys_from_a_url_are_fetched_once_and_again_for_an_unknown_kid() {
    let issuer = TestIssuer::new(ISSUER, AUDIENCE, "a");
    let jwks = JwksServer::start(issuer.jwks()).await;
    let server = Server::start_with(ServerOpts {
        env: vec![
            ("MR_AUTH".into(), "jwt".into()),
            ("MR_JWT_ISSUER".into(), ISSUER.into()),
            ("MR_JWT_JWKS".into(), jwks.url.clone()),
            ("MR_JWT_AUDIENCE".into(), AUDIENCE.into()),
            ("MR_JWT_REFRESH_SECS".into(), "0".into()),
        ],
        ..Default::default()
    })
    .await;
    let api = server.api(V1);
    // Start-up fetched nothing; the first token does.
    assert_eq!(*jwks.fetches.lock().unwrap(), 0);
    for _ in 0..5 {
        assert_eq!(status_with(&api, &issuer.token("ada", &[])).await, 200);
    }
    assert_eq!(*jwks.fetches.lock().unwrap(), 1, "keys are cached");
    let rotated = TestIssuer::new(ISSUER, AUDIENCE, "b");
    let token = rotated.sign(&rotated.claims("ada", &[]), Alg::Es256, None);
    assert_eq!(status_with(&api, &token).await, 401);
    let mut doc = issuer.jwks();
    doc["keys"].as_array_mut().unwrap().push(rotated.ec_jwk());
    *jwks.keys.lock().unwrap() = doc;
    assert_eq!(
        status_with(&api, &token).await,
        200,
        "refetched for the new kid"
    );
    assert_eq!(status_with(&api, &issuer.token("ada", &[])).await, 200);
}

/// Every route of both prefixes (from the server's own route table), of
/// the upload extension and the storage-event endpoint.
fn every_route() -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for prefix in PREFIXES {
        for (method, path) in registry::api::openapi::operations() {
            routes.push((method.to_string(), format!("{prefix}{path}")));
        }
        routes.push(("get".into(), format!("{prefix}/openapi.json")));
        routes.push(("get".into(), format!("{prefix}/openapi.yaml")));
    }
    for (method, path) in registry::api::uploads::ROUTES
        .into_iter()
        .chain(registry::api::EXTENSION_ROUTES)
    {
        routes.push((
            method.to_string(),
            format!("{}{path}", registry::api::uploads::PREFIX),
        ));
    }
    routes.push((
        "post".into(),
        registry::api::storage_events::PATH.to_string(),
    ));
    routes
        .into_iter()
        .map(|(m, p)| (m, p.replace("{id}", "1").replace("{token}", "t")))
        .collect()
}

#[tokio::test]
async fn every_route_needs_a_token() {
    let s = Secured::start(None, &[]).await;
    let client = s.server.client();
    let routes = every_route();
    assert!(routes.len() > 100, "{} routes", routes.len());
    for (method, path) in &routes {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = client
            .request(method.clone(), s.server.url(path))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{method} {path}");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{method} {path}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "Unauthorized", "{method} {path}");
    }
    // Health stays open.
    for path in ["/readyz/health", "/readyz/isDirty"] {
        let r = client.get(s.server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // With a token the same routes answer something else than 401.
    let token = s.issuer.token("root", &[]);
    let r = client
        .get(s.server.url(&format!("{V1}/registered_models")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn without_a_policy_every_authenticated_caller_may_write() {
    let s = Secured::start(None, &[]).await;
    let api = s.as_user(V1, "anyone", &[]);
    api.create_model(&uniq("free-for-all")).await;
    // Anonymous callers get nothing.
    s.server
        .api(V1)
        .post("/registered_models", &json!({"name": uniq("anon")}))
        .await
        .err(401);
}

#[tokio::test]
async fn a_bad_token_is_refused_even_when_anonymous_may_read() {
    let policy = "bindings:\n  - role: reader\n    users: [anonymous]\n";
    let s = Secured::start(Some(policy), &[]).await;
    let anon = s.server.api(V1);
    anon.get("/registered_models").await.check(200);
    anon.post("/registered_models", &json!({"name": "x"}))
        .await
        .err(401);
    anon.with_bearer("garbage.token.here")
        .get("/registered_models")
        .await
        .err(401);
}

#[tokio::test]
async fn several_issuers_each_with_its_own_keys() {
    // Users' tokens from the identity provider, and the cluster's
    // service-account tokens (pipelines, Knative Eventing's OIDC sender identity).
    let users = TestIssuer::new(ISSUER, AUDIENCE, "u");
    let cluster = TestIssuer::new("https://kubernetes.default.svc", AUDIENCE, "k");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("users.json"),
        dir.path().join("cluster.json"),
    );
    std::fs::write(&a, users.jwks().to_string()).unwrap();
    std::fs::write(&b, cluster.jwks().to_string()).unwrap();
    let server = Server::start_with(ServerOpts {
        env: vec![
            ("MR_AUTH".into(), "jwt".into()),
            (
                "MR_JWT_ISSUER".into(),
                format!("{ISSUER},https://kubernetes.default.svc"),
            ),
            (
                "MR_JWT_JWKS".into(),
                format!("{},{}", a.display(), b.display()),
            ),
            ("MR_JWT_AUDIENCE".into(), AUDIENCE.into()),
        ],
        ..Default::default()
    })
    .await;
    let api = server.api(V1);
    assert_eq!(status_with(&api, &users.token("ada", &[])).await, 200);
    let sa = "system:serviceaccount:knative-eventing:broker";
    assert_eq!(status_with(&api, &cluster.token(sa, &[])).await, 200);
    // A token claiming the users' issuer but signed by the cluster's key.
    let forged = cluster.sign(
        &users.claims("ada", &[]),
        Alg::Rs256,
        Some(&cluster.rsa_kid),
    );
    assert_eq!(status_with(&api, &forged).await, 401);
}
