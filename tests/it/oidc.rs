//! The web interface's login under `MR_AUTH=jwt`: the OpenID Connect
//! authorization-code flow with PKCE against a strict test provider
//! (`registry_tests::oidc`, real HTTP on both sides), the session cookie it
//! leaves, and every way a login must fail. The registry finds the
//! provider's keys through its discovery document (no `MR_JWT_JWKS`).

use std::collections::BTreeMap;
use std::time::Duration;

use registry_test_support::{Launch, free_port, server_bin};
use registry_tests::oidc::{Provider, ProviderOpts, Tamper, hidden_inputs};
use serde_json::json;

use crate::common::{Api, V1, id, uniq};
use crate::harness::{Server, ServerOpts};

const CLIENT: &str = "model-registry-web";
const SECRET: &str = "client secret with +/% in it";
const WEB_SECRET: &str = "a web secret of more than thirty-two characters";

/// A registry whose pages log in through a test provider.
pub(crate) struct Login {
    pub(crate) provider: Provider,
    pub(crate) server: Server,
    /// No redirects followed: each step of the flow is looked at.
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Login {
    pub(crate) async fn start(policy: Option<&str>) -> Login {
        let port = free_port();
        let redirect = format!("http://localhost:{port}/ui/auth/callback");
        let provider = Provider::start(ProviderOpts {
            client_id: CLIENT.into(),
            client_secret: Some(SECRET.into()),
            redirect_uris: vec![redirect.clone()],
            keys_dir: None,
            port: 0,
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("PORT", port.to_string()),
            ("MR_AUTH", "jwt".into()),
            ("MR_JWT_ISSUER", provider.issuer()),
            ("MR_JWT_AUDIENCE", "model-registry".into()),
            ("MR_OIDC_ISSUER", provider.issuer()),
            ("MR_OIDC_CLIENT_ID", CLIENT.into()),
            ("MR_OIDC_CLIENT_SECRET", SECRET.into()),
            ("MR_OIDC_REDIRECT_URL", redirect),
            ("MR_WEB_SECRET", WEB_SECRET.into()),
        ];
        if let Some(policy) = policy {
            let path = dir.path().join("policy.yaml");
            std::fs::write(&path, policy).unwrap();
            env.push(("MR_POLICY", path.display().to_string()));
        }
        let server = Server::start_with(ServerOpts {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        })
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Login {
            provider,
            server,
            http,
            _dir: dir,
        }
    }

    /// `user`'s API client (a bearer token of the provider's keys).
    pub(crate) fn api(&self, user: &str) -> Api {
        self.server
            .api(V1)
            .with_bearer(&self.provider.keys().token(user, &[]))
    }

    async fn get(&self, url: &str, jar: &Jar) -> Answer {
        let r = self
            .http
            .get(url)
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        Answer::of(r).await
    }

    /// Start a login for `next`: the provider's authorization URL, with the
    /// login cookie in `jar`.
    async fn begin(&self, next: &str, jar: &mut Jar) -> String {
        let url = self.server.url(&format!(
            "/ui/login?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap()
        ));
        let a = self.get(&url, jar).await;
        assert_eq!(a.status, 303, "{}", a.body);
        jar.take(&a);
        a.location()
    }

    /// At the provider: the login page, then its form sent as `user` in
    /// `groups`: the URL the provider sends the browser back to.
    async fn sign_in_at_provider(&self, authorize: &str, user: &str, groups: &str) -> String {
        let page = self.get(authorize, &Jar::default()).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let mut form = hidden_inputs(&page.body);
        form.push(("username".into(), user.into()));
        form.push(("groups".into(), groups.into()));
        let r = self
            .http
            .post(format!("{}/authorize", self.provider.issuer()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&form).unwrap())
            .send()
            .await
            .unwrap();
        let a = Answer::of(r).await;
        assert_eq!(a.status, 303, "{}", a.body);
        a.location()
    }

    /// The provider's redirect, sent to this server (the redirect URL names
    /// `localhost`; the test talks to 127.0.0.1).
    async fn back(&self, callback: &str, jar: &mut Jar) -> Answer {
        let path = &callback[callback.find("/ui/").expect("a callback path")..];
        let a = self.get(&self.server.url(path), jar).await;
        jar.take(&a);
        a
    }

    /// A whole login of `user` coming back to `next`; the answer of the callback.
    async fn log_in(&self, user: &str, groups: &str, next: &str, jar: &mut Jar) -> Answer {
        let authorize = self.begin(next, jar).await;
        let callback = self.sign_in_at_provider(&authorize, user, groups).await;
        self.back(&callback, jar).await
    }
}

/// Status, headers and body of an answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    async fn of(r: reqwest::Response) -> Answer {
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap_or_default(),
        }
    }

    fn location(&self) -> String {
        self.headers
            .get("location")
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// `Set-Cookie` values by cookie name.
    fn set_cookies(&self) -> BTreeMap<String, String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .map(|c| (c.split('=').next().unwrap().to_string(), c))
            .collect()
    }
}

/// The cookies a browser would hold.
#[derive(Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, a: &Answer) {
        for (name, line) in a.set_cookies() {
            let value = line.split(';').next().unwrap()[name.len() + 1..].to_string();
            if line.contains("Max-Age=0") {
                self.0.remove(&name);
            } else {
                self.0.insert(name, value);
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    fn session(&self) -> Option<&String> {
        self.0.get("__Host-mr_session")
    }
}

fn query(url: &str) -> BTreeMap<String, String> {
    serde_urlencoded::from_str(url.split_once('?').map_or("", |(_, q)| q)).unwrap()
}

fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Every attribute a session-bearing cookie needs.
fn assert_locked_down(line: &str) {
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{attribute} missing: {line}");
    }
    assert!(line.starts_with("__Host-"), "{line}");
    assert!(!line.contains("Domain="), "{line}");
}

#[tokio::test]
async fn a_person_logs_in_with_pkce_and_the_session_opens_only_the_pages() {
    let policy = r#"
bindings:
  - role: writer
    users: [ada, bob]
  - role: approver
    groups: [risk]
"#;
    let l = Login::start(Some(policy)).await;
    // bob registers a version through the API; its model asks for an approval.
    let bob = l.api("bob");
    let (m, v) = bob.model_and_version(&uniq("login")).await;
    let (mid, vid) = (id(&m), id(&v));
    let ext = Api::new(
        l.server.client().clone(),
        l.server.base_url(),
        "/api/registry_ext/v1",
    )
    .with_bearer(&l.provider.keys().token("bob", &[]));
    ext.raw(
        reqwest::Method::PUT,
        &format!("/registered_models/{mid}/approval_policy"),
        r#"{"requiredApprovals": 1}"#,
    )
    .await
    .check(200);

    // A page without a session sends the browser to the login, which comes
    // back to that page.
    let mut jar = Jar::default();
    let page = format!("/ui/versions/{vid}?tab=history");
    let a = l.get(&l.server.url(&page), &jar).await;
    assert_eq!(a.status, 303);
    let login = a.location();
    assert!(login.starts_with("/ui/login?"), "{login}");
    assert_eq!(query(&login)["next"], page);

    // The login: to the provider with a code challenge (S256), a state and
    // a nonce; a login cookie binds the state.
    let authorize = l.begin(&page, &mut jar).await;
    assert!(authorize.starts_with(&format!("{}/authorize?", l.provider.issuer())));
    let q = query(&authorize);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32, "{q:?}");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    assert!(q["redirect_uri"].ends_with("/ui/auth/callback"));
    assert!(!authorize.contains("code_verifier"));
    assert!(jar.0.contains_key("__Host-mr_login"));
    let login_cookie = jar.0["__Host-mr_login"].clone();
    assert!(
        !login_cookie.contains(&q["nonce"]),
        "the nonce stays on the server"
    );

    // At the provider, then back: the code is exchanged with the verifier
    // and the client's credentials; a session cookie, and the page.
    let callback = l.sign_in_at_provider(&authorize, "ada", "risk, ml").await;
    let back = l.back(&callback, &mut jar).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(back.location(), page);
    let cookies = back.set_cookies();
    assert_locked_down(&cookies["__Host-mr_session"]);
    assert!(
        cookies["__Host-mr_login"].contains("Max-Age=0"),
        "{cookies:?}"
    );
    assert!(!jar.0.contains_key("__Host-mr_login"));
    let exchange: BTreeMap<String, String> = l
        .provider
        .last_token_request()
        .expect("a token request")
        .into_iter()
        .collect();
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert!(exchange["code_verifier"].len() >= 43);
    assert!(
        exchange["authorization"].starts_with("Basic "),
        "client_secret_basic"
    );
    assert!(!exchange.contains_key("client_secret"));
    assert_eq!(l.provider.tokens_issued(), 1);

    // The session: ada, in group risk, an approver; the page shows the
    // decision form and the header a sign-out.
    let a = l.get(&l.server.url(&page), &jar).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("Signed in as <strong>ada</strong>"),
        "{}",
        a.body
    );
    assert!(a.body.contains("action=\"/ui/logout\""));
    assert!(a.body.contains("Record decision"), "{}", a.body);
    // A form posted with the session and the page's token lands, as ada.
    let token = csrf(&a.body);
    let posted = l
        .http
        .post(l.server.url(&format!("/ui/versions/{vid}/decision")))
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("csrf", token.as_str()),
                ("decision", "APPROVE"),
                ("comment", "signed in through OIDC"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 303);
    let approval = ext
        .get(&format!("/model_versions/{vid}/approval"))
        .await
        .ok(200);
    assert_eq!(approval["state"], "APPROVED");
    assert_eq!(approval["approvals"][0]["actor"], "ada");

    // The cookie opens pages only: the API wants a bearer token.
    let api = l
        .http
        .get(l.server.url_v1("/registered_models"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    // The provider's access token works there (its keys found by discovery).
    l.api("ada").get("/registered_models").await.ok(200);

    // A session cookie changed by hand is no session.
    let mut forged = jar.clone();
    let value = forged.session().unwrap().clone();
    let (payload, mac) = value.rsplit_once('.').unwrap();
    let mut changed = payload.to_string();
    changed.replace_range(0..1, if payload.starts_with('e') { "f" } else { "e" });
    forged
        .0
        .insert("__Host-mr_session".into(), format!("{changed}.{mac}"));
    let a = l.get(&l.server.url("/ui/"), &forged).await;
    assert_eq!(a.status, 303, "{}", a.body);

    // Signing out: from another site refused; with the form's token the
    // cookie goes and the provider ends its session too.
    let a = l.get(&l.server.url("/ui/"), &jar).await;
    let token = csrf(&a.body);
    let out = |origin: Option<&str>| {
        let mut rb = l
            .http
            .post(l.server.url("/ui/logout"))
            .header("cookie", jar.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={token}"));
        if let Some(o) = origin {
            rb = rb.header("origin", o);
        }
        rb.send()
    };
    assert_eq!(
        out(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    let a = Answer::of(out(None).await.unwrap()).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let to = a.location();
    assert!(
        to.starts_with(&format!("{}/logout?", l.provider.issuer())),
        "{to}"
    );
    assert!(query(&to)["post_logout_redirect_uri"].ends_with("/ui/signed-out"));
    assert!(a.set_cookies()["__Host-mr_session"].contains("Max-Age=0"));
    jar.take(&a);
    assert!(jar.session().is_none());
    let a = l.get(&l.server.url("/ui/signed-out"), &jar).await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("signed out"), "{}", a.body);
    assert_eq!(l.get(&l.server.url("/ui/"), &jar).await.status, 303);
    // A form sent after the session ended: to the login, then back to the
    // page the form was on (what it said is not kept).
    let late = l
        .http
        .post(l.server.url(&format!("/ui/versions/{vid}/decision")))
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&decision=REJECT"))
        .send()
        .await
        .unwrap();
    let late = Answer::of(late).await;
    assert_eq!(late.status, 303, "{}", late.body);
    assert_eq!(
        query(&late.location())["next"],
        format!("/ui/versions/{vid}")
    );
}

#[tokio::test]
async fn pages_anyone_may_read_offer_a_sign_in() {
    let policy = r#"
bindings:
  - role: reader
    users: [anonymous]
  - role: writer
    users: [ada]
"#;
    let l = Login::start(Some(policy)).await;
    let jar = Jar::default();
    let a = l.get(&l.server.url("/ui/"), &jar).await;
    assert_eq!(a.status, 200, "anonymous may read: {}", a.body);
    assert!(a.body.contains("href=\"/ui/login\""), "{}", a.body);
    assert!(!a.body.contains("Signed in as"), "{}", a.body);
}

#[tokio::test]
async fn logins_that_do_not_hold_are_refused_with_a_way_back() {
    let l = Login::start(None).await;

    // Back from the provider without the login cookie (another browser).
    let mut jar = Jar::default();
    let authorize = l.begin("/ui/", &mut jar).await;
    let callback = l.sign_in_at_provider(&authorize, "ada", "").await;
    let a = l.back(&callback, &mut Jar::default()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("Sign in again"), "{}", a.body);

    // Another login's state (a login cookie swapped for an attacker's).
    let mut other = Jar::default();
    l.begin("/ui/", &mut other).await;
    let a = l.back(&callback, &mut other).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("state"), "{}", a.body);

    // The code used once already (a reload of the callback): the provider
    // refuses it, the page says so.
    let mut jar = Jar::default();
    let authorize = l.begin("/ui/", &mut jar).await;
    let callback = l.sign_in_at_provider(&authorize, "ada", "").await;
    let mut kept = jar.clone();
    assert_eq!(l.back(&callback, &mut jar).await.status, 303);
    let a = l.back(&callback, &mut kept).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("invalid_grant"), "{}", a.body);

    // The person said no at the provider.
    let mut jar = Jar::default();
    let authorize = l.begin("/ui/", &mut jar).await;
    let q = query(&authorize);
    let denied = format!(
        "/ui/auth/callback?error=access_denied&error_description=the+user+denied&state={}",
        q["state"]
    );
    let a = l.back(&denied, &mut jar).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("access_denied"), "{}", a.body);

    // ID tokens that must not open a session.
    for (tamper, says) in [
        (Tamper::WrongNonce, "nonce"),
        (Tamper::WrongAudience, "refused"),
        (Tamper::Expired, "refused"),
        (Tamper::WrongIssuer, "refused"),
        (Tamper::ForeignKey, "refused"),
    ] {
        l.provider.set_tamper(tamper);
        let mut jar = Jar::default();
        let a = l.log_in("mallory", "", "/ui/", &mut jar).await;
        assert_eq!(a.status, 400, "{tamper:?}: {}", a.body);
        assert!(a.body.contains(says), "{tamper:?}: {}", a.body);
        assert!(jar.session().is_none(), "{tamper:?}");
    }
    l.provider.set_tamper(Tamper::NoIdToken);
    let a = l.log_in("mallory", "", "/ui/", &mut Jar::default()).await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert!(a.body.contains("without an ID token"), "{}", a.body);
    l.provider.set_tamper(Tamper::None);

    // A login never comes back to another site.
    for next in [
        "//evil.example/",
        "https://evil.example/ui/",
        "/api/model_registry/v1/registered_models",
    ] {
        let mut jar = Jar::default();
        let a = l.log_in("ada", "", next, &mut jar).await;
        assert_eq!(a.status, 303);
        assert_eq!(a.location(), "/ui/", "{next}");
    }

    // Too many groups for a cookie: said, not cut.
    let groups: Vec<String> = (0..200).map(|i| format!("group-number-{i}")).collect();
    let a = l
        .log_in("ada", &groups.join(","), "/ui/", &mut Jar::default())
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("too many groups"), "{}", a.body);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_clear_503_and_bad_settings_stop_start_up() {
    // Nothing listens at the issuer: the login says so, and the pages
    // still send people to it (it may come back).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let base_env = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut env = vec![
            ("MR_AUTH", "jwt"),
            ("MR_JWT_ISSUER", dead.as_str()),
            ("MR_JWT_AUDIENCE", "model-registry"),
            ("MR_OIDC_ISSUER", dead.as_str()),
            ("MR_OIDC_CLIENT_ID", CLIENT),
            ("MR_PUBLIC_URL", "http://localhost:8080"),
            ("MR_WEB_SECRET", WEB_SECRET),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            if !v.is_empty() {
                env.push((k, v));
            }
        }
        env.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let s = Server::start_with(ServerOpts {
        env: base_env(&[]),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(s.url("/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("cannot be reached"), "{body}");
    let r = http.get(s.url("/ui/")).send().await.unwrap();
    assert_eq!(r.status(), 303);

    // Settings that cannot work stop the start with what to set.
    for (change, says) in [
        (vec![("MR_WEB_SECRET", "")], "MR_WEB_SECRET"),
        (vec![("MR_WEB_SECRET", "short")], "at least 32"),
        (vec![("MR_OIDC_CLIENT_ID", "")], "MR_OIDC_CLIENT_ID"),
        (vec![("MR_PUBLIC_URL", "")], "MR_OIDC_REDIRECT_URL"),
        (
            vec![(
                "MR_OIDC_REDIRECT_URL",
                "http://registry.example.com/ui/auth/callback",
            )],
            "https",
        ),
        (vec![("MR_AUTH", "header")], "MR_AUTH=jwt"),
        (vec![("MR_OIDC_SCOPES", "profile email")], "openid"),
    ] {
        let mut p = Launch::program(server_bin())
            .envs(base_env(&change))
            .env("PORT", free_port().to_string())
            .spawn();
        let exit = p.wait_exit(Duration::from_secs(20)).await;
        let log = p.log();
        assert!(
            exit.is_some_and(|e| !e.success()),
            "{change:?} started: {log}"
        );
        assert!(log.contains(says), "{change:?}: {log}");
    }
}

#[tokio::test]
async fn the_web_login_needs_no_policy_change_for_bearer_callers() {
    // Scripts keep their bearer tokens on the pages too; the login is for browsers.
    let l = Login::start(None).await;
    let name = uniq("bearer-page");
    l.api("ada").create_model_body(json!({"name": name})).await;
    let r = l
        .http
        .get(l.server.url("/ui/"))
        .bearer_auth(l.provider.keys().token("ada", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains(&name), "{body}");
}
