//! The web interface in a real browser: Debian's headless Chromium driven
//! over the W3C WebDriver protocol (chromedriver, plain HTTP with
//! `reqwest`), against a `registry-local` seeded through the API. A person's
//! path must work by clicking (search a model, open it, tick versions,
//! compare them; sign in through an OpenID Connect provider and out
//! again), every page must pass axe-core without a serious or critical
//! violation, and the tables must stay reachable on a phone.
//!
//! Needs `chromedriver` (`MR_TEST_CHROMEDRIVER`, else `PATH`) and axe-core's
//! `axe.min.js` (`MR_TEST_AXE_JS`, else `.cache/npm`): tests/browser/setup.sh
//! installs both and tests/run.sh calls it. Without them the test fails
//! when `CI` is set and says it SKIPPED otherwise. A screenshot of every
//! page goes to `<target dir>/screenshots/`; with `MR_SCREENSHOTS_DIR` set
//! (`make screenshots`; relative to the workspace root) the README's
//! `compare.png` and `version.png` are written there too.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{V1, cp_double, cp_str, id, truncate};
use crate::harness::Server;
use crate::oidc::Login;
use registry_test_support::{bin_dir, free_port, http_client};

/// The key of an element reference in WebDriver answers (W3C).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// In a model's description: shown as text, never run.
const HOSTILE: &str = "<script>window.xss = 1</script>";
const MODEL: &str = "churn-classifier";
/// How long an element or a page may take to appear.
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_person_compares_versions_by_clicking_and_every_page_passes_axe() {
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(why) => return unavailable(&why),
    };
    let s = Server::start().await;
    let api = s.api(V1);
    let model = api
        .create_model_body(
            json!({"name": MODEL, "description": format!("Predicts churn {HOSTILE}")}),
        )
        .await;
    let mid = id(&model);
    api.create_model_body(json!({"name": "fraud-detector"}))
        .await;
    let metrics = [
        (0.912, 0.874),
        (0.887, 0.861),
        (0.934, 0.902),
        (0.951, 0.928),
    ];
    let mut versions = Vec::new();
    for (i, (accuracy, f1)) in metrics.into_iter().enumerate() {
        let v = api
            .post(
                "/model_versions",
                &json!({
                    "name": format!("v{}", i + 1),
                    "registeredModelId": mid,
                    "author": "ada",
                    "description": format!("gradient boosting, {} trees", 200 * (i + 1)),
                    "customProperties": {
                        "accuracy": cp_double(accuracy),
                        "f1": cp_double(f1),
                        "framework": cp_str(if i < 2 { "xgboost" } else { "lightgbm" }),
                    },
                }),
            )
            .await
            .ok(201);
        versions.push(id(&v));
    }
    api.upsert_new_artifact(
        &versions[3],
        json!({"artifactType": "model-artifact", "name": "churn-classifier", "uri": "s3://models/churn-classifier/v4/",
               "modelFormatName": "lightgbm", "modelFormatVersion": "4.5"}),
    )
    .await;

    let driver = ChromeDriver::start(&tools.chromedriver).await;
    let b = Browser::open(&driver).await;
    let shots = Shots::new();
    let mut violations = Vec::new();

    // axe finds what it should: an image without a text alternative.
    b.goto("data:text/html,<!doctype html><html lang=en><title>t</title><main><img src=x.png></main></html>")
        .await;
    let canary = b.axe(&tools).await;
    assert!(
        canary
            .iter()
            .any(|v| v["id"] == "image-alt" && v["impact"] == "critical"),
        "axe-core does not report an image without alt: {canary:?}"
    );

    // Models: search by name; only the matching model's row stays.
    b.goto(&s.url("/ui/")).await;
    let search = b
        .xpath("//form[@role='search']//label[contains(., 'Name contains')]//input")
        .await;
    assert_eq!(b.attr(&search, "name").await.as_deref(), Some("q"));
    b.type_into(&search, "churn").await;
    let button = b
        .xpath("//form[@role='search']//button[normalize-space()='Search']")
        .await;
    b.click(&button).await;
    b.wait_url(|u| u.contains("q=churn")).await;
    let link = b
        .wait_css(&format!("table a[href='/ui/models/{mid}']"))
        .await;
    assert_eq!(b.text(&link[0]).await, MODEL);
    assert_eq!(
        b.all_css("a[href^='/ui/models/']").await.len(),
        1,
        "the search leaves one model: {}",
        b.run("return document.querySelector('main').innerText", json!([]))
            .await
    );
    let row = b
        .run(
            "return document.querySelector('main table').innerText",
            json!([]),
        )
        .await;
    assert!(
        row.as_str().is_some_and(|t| t.contains(HOSTILE)),
        "the description shows as text: {row}"
    );
    violations.extend(b.check_page("models", &tools, &shots).await);

    // The model: tick three of its four versions, compare them.
    b.click(&link[0]).await;
    b.wait_url(|u| u.ends_with(&format!("/ui/models/{mid}")))
        .await;
    assert_eq!(b.text(&b.css("h1").await).await, MODEL);
    let picked = [&versions[0], &versions[1], &versions[3]];
    for vid in picked {
        let checkbox = b
            .css(&format!(
                "input[type='checkbox'][name='versions'][value='{vid}']"
            ))
            .await;
        b.click(&checkbox).await;
        assert!(b.selected(&checkbox).await, "version {vid} is ticked");
    }
    violations.extend(b.check_page("model", &tools, &shots).await);
    let compare = b
        .xpath("//button[normalize-space()='Compare selected versions']")
        .await;
    b.click(&compare).await;

    // The comparison: the three versions, one accuracy bar each.
    let url = b.wait_url(|u| u.contains("/ui/compare?")).await;
    let parsed = reqwest::Url::parse(&url).expect("the page's URL");
    let mut in_url: Vec<String> = parsed
        .query_pairs()
        .filter(|(k, _)| k == "versions")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect();
    in_url.sort();
    let mut expected: Vec<String> = picked.iter().map(|v| v.to_string()).collect();
    expected.sort();
    assert_eq!(
        in_url, expected,
        "the compare URL names the ticked versions: {url}"
    );
    let charts = b.charts().await;
    let accuracy = charts
        .iter()
        .find(|(metric, _)| metric == "accuracy")
        .unwrap_or_else(|| panic!("an accuracy chart: {charts:?}"));
    let mut marks = accuracy.1.clone();
    marks.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, f64)> = [(1, 0), (2, 1), (4, 3)]
        .into_iter()
        .map(|(n, i)| (format!("{MODEL} v{n}"), metrics[i].0))
        .collect();
    assert_eq!(marks, want, "one accuracy mark per compared version");
    assert!(
        charts
            .iter()
            .any(|(metric, marks)| metric == "f1" && marks.len() == 3),
        "an f1 chart with three marks: {charts:?}"
    );
    violations.extend(b.check_page("compare", &tools, &shots).await);

    // A version, reached from the comparison's column header.
    let v4 = &versions[3];
    b.click(&b.css(&format!("thead a[href='/ui/versions/{v4}']")).await)
        .await;
    b.wait_url(|u| u.ends_with(&format!("/ui/versions/{v4}")))
        .await;
    assert_eq!(b.text(&b.css("h1").await).await, format!("{MODEL} v4"));
    let main = b.text(&b.css("main").await).await;
    assert!(main.contains("s3://models/churn-classifier/v4/"), "{main}");
    violations.extend(b.check_page("version", &tools, &shots).await);

    // The audit, from the header's navigation.
    b.click(&b.xpath("//header//nav//a[normalize-space()='Audit']").await)
        .await;
    b.wait_url(|u| u.ends_with("/ui/audit")).await;
    let audit = b.text(&b.css("main table").await).await;
    assert!(audit.contains("CREATE") && audit.contains(MODEL), "{audit}");
    violations.extend(b.check_page("audit", &tools, &shots).await);
    // The caller's usage, from the navigation too.
    b.click(&b.xpath("//header//nav//a[normalize-space()='Usage']").await)
        .await;
    b.wait_url(|u| u.ends_with("/ui/usage")).await;
    assert!(b.text(&b.css("h1").await).await.starts_with("Usage of"));
    violations.extend(b.check_page("usage", &tools, &shots).await);

    // A phone: main stays on the screen; a wide table scrolls in its own box.
    b.resize(390, 844).await;
    b.goto("data:text/html,<!doctype html><body><main><table style='width:900px'><tr><td>x</td></tr></table></main>")
        .await;
    let canary = b.run(PHONE_LAYOUT, json!([])).await;
    assert!(
        canary["inMain"].as_array().is_some_and(|a| !a.is_empty()),
        "a table wider than the phone, in no scrolling box, is caught: {canary}"
    );
    b.goto(&s.url("/ui/?q=churn")).await;
    b.wait_css(&format!("table a[href='/ui/models/{mid}']"))
        .await;
    let layout = b.run(PHONE_LAYOUT, json!([])).await;
    if let Some(note) = assert_reachable(&layout) {
        panic!("models at 390 px: {note}");
    }
    violations.extend(b.check_page("models-phone", &tools, &shots).await);

    b.quit().await;
    assert!(
        violations.is_empty(),
        "axe-core found serious or critical violations:\n{}",
        violations.join("\n")
    );
}

#[tokio::test]
async fn a_person_signs_in_through_the_identity_provider_and_out_again() {
    let tools = match Tools::find() {
        Ok(t) => t,
        Err(why) => return unavailable(&why),
    };
    let l = Login::start(None).await;
    let model = "credit-scorer";
    l.api("ada").create_model_body(json!({"name": model})).await;
    // The redirect URL and the cookies are on `localhost`, not 127.0.0.1.
    let mut origin = reqwest::Url::parse(&l.server.base_url()).expect("the server's URL");
    origin.set_host(Some("localhost")).expect("a host");
    let origin = origin.origin().ascii_serialization();
    let page = |path: &str| format!("{origin}{path}");
    let at_provider = |u: &str| u.starts_with(&format!("{}/authorize?", l.provider.issuer()));

    let driver = ChromeDriver::start(&tools.chromedriver).await;
    let b = Browser::open(&driver).await;
    let shots = Shots::new();
    let mut violations = Vec::new();

    // No session: the page sends the browser to the provider's login.
    b.goto(&page("/ui/")).await;
    b.wait_url(at_provider).await;
    b.type_into(&b.css("#username").await, "ada").await;
    b.type_into(&b.css("#groups").await, "risk").await;
    b.click(&b.css("#sign-in").await).await;

    // Back on the page asked for, signed in.
    b.wait_url(|u| u == page("/ui/")).await;
    let who = b.text(&b.css("header form.who").await).await;
    assert!(
        who.contains("Signed in as") && who.contains("ada"),
        "the header names the person: {who}"
    );
    let link = b.css("table a[href^='/ui/models/']").await;
    assert_eq!(b.text(&link).await, model);
    // Kept on http://localhost as sent: Secure, HttpOnly, SameSite=Lax; the
    // login cookie is gone.
    let cookies = b.cookies().await;
    let names: Vec<&String> = cookies.keys().collect();
    assert_eq!(names, ["__Host-mr_session"], "{cookies:?}");
    let session = &cookies["__Host-mr_session"];
    assert_eq!(
        (
            &session["secure"],
            &session["httpOnly"],
            &session["sameSite"]
        ),
        (&json!(true), &json!(true), &json!("Lax")),
        "{session}"
    );
    violations.extend(b.check_page("signed-in", &tools, &shots).await);

    // Signing out goes through the provider's logout and back.
    b.click(
        &b.xpath("//header//form[@action='/ui/logout']//button[normalize-space()='Sign out']")
            .await,
    )
    .await;
    b.wait_url(|u| u == page("/ui/signed-out")).await;
    assert_eq!(b.text(&b.css("h1").await).await, "You are signed out");
    assert_eq!(l.provider.logouts(), 1, "the provider's session ends too");
    assert!(b.cookies().await.is_empty(), "no session cookie left");
    let header = b.text(&b.css("header").await).await;
    assert!(!header.contains("Signed in as"), "{header}");
    violations.extend(b.check_page("signed-out", &tools, &shots).await);

    // No session left: the page asks for a login again.
    b.goto(&page("/ui/")).await;
    b.wait_url(at_provider).await;
    b.css("#username").await;

    b.quit().await;
    assert!(
        violations.is_empty(),
        "axe-core found serious or critical violations:\n{}",
        violations.join("\n")
    );
}

/// The test cannot run here: a failure under CI (or when README images
/// were asked for), a loud skip elsewhere.
fn unavailable(why: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if ci || std::env::var_os("MR_SCREENSHOTS_DIR").is_some() {
        panic!("browser test cannot run: {why}");
    }
    eprintln!("browser test SKIPPED: {why}");
}

/// What the test needs from outside the workspace.
struct Tools {
    chromedriver: PathBuf,
    /// The text of axe-core's `axe.min.js`.
    axe_js: String,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let setup = "bash tests/browser/setup.sh installs it";
        let chromedriver = match non_empty_env("MR_TEST_CHROMEDRIVER") {
            Some(p) if Path::new(&p).is_file() => PathBuf::from(p),
            Some(p) => return Err(format!("MR_TEST_CHROMEDRIVER={p} is not a file ({setup})")),
            None => on_path("chromedriver").ok_or_else(|| {
                format!("MR_TEST_CHROMEDRIVER is unset and chromedriver is not on PATH ({setup})")
            })?,
        };
        let axe = non_empty_env("MR_TEST_AXE_JS").map_or_else(
            || repo_root().join(".cache/npm/node_modules/axe-core/axe.min.js"),
            PathBuf::from,
        );
        let axe_js = std::fs::read_to_string(&axe)
            .map_err(|e| format!("axe-core's {}: {e} ({setup})", axe.display()))?;
        Ok(Tools {
            chromedriver,
            axe_js,
        })
    }
}

fn non_empty_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Where screenshots go: every page's to `<target dir>/screenshots/`, and
/// the README's (`compare`, `version`) to `MR_SCREENSHOTS_DIR` when set.
struct Shots {
    dir: PathBuf,
    readme: Option<PathBuf>,
}

impl Shots {
    fn new() -> Shots {
        let target = bin_dir()
            .parent()
            .expect("the profile directory is in the target directory")
            .to_path_buf();
        let readme = non_empty_env("MR_SCREENSHOTS_DIR").map(|d| repo_root().join(d));
        let dir = target.join("screenshots");
        for d in std::iter::once(&dir).chain(readme.as_ref()) {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        Shots { dir, readme }
    }

    fn save(&self, page: &str, png: &[u8]) {
        let mut paths = vec![self.dir.join(format!("{page}.png"))];
        if let Some(readme) = &self.readme
            && ["compare", "version"].contains(&page)
        {
            paths.push(readme.join(format!("{page}.png")));
        }
        for p in paths {
            std::fs::write(&p, png).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            eprintln!("screenshot: {} ({} bytes)", p.display(), png.len());
        }
    }
}

/// The page's horizontal layout at the current window size (see
/// [`assert_reachable`]): what sticks out of the viewport is listed as its
/// outermost elements, those inside `main` apart (a table that scrolls in
/// its own box does not count: the box clips it).
const PHONE_LAYOUT: &str = r#"
const viewport = document.documentElement.clientWidth;
const main = document.querySelector('main');
const right = e => Math.ceil(e.getBoundingClientRect().right);
const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
const name = e => e.tagName.toLowerCase()
  + (e.className ? '.' + String(e.className).trim().replace(/\s+/g, '.') : '')
  + ' (right ' + right(e) + ')';
const sticksOut = e => right(e) > viewport
  && (!e.parentElement || right(e.parentElement) <= viewport)
  && !(e.parentElement && e.parentElement.closest('.table-wrap') && scrolls(e.parentElement.closest('.table-wrap')));
const outside = [...document.body.querySelectorAll('*')].filter(sticksOut);
const tables = [...main.querySelectorAll('table')].map(t => {
  const wrap = t.closest('.table-wrap');
  return { right: right(t), scrolls: !!wrap && scrolls(wrap), wrapRight: wrap ? right(wrap) : null };
});
return {
  viewport,
  page: document.documentElement.scrollWidth,
  main: right(main),
  inMain: outside.filter(e => main.contains(e)).slice(0, 5).map(name),
  elsewhere: outside.filter(e => !main.contains(e)).slice(0, 5).map(name),
  tables,
};
"#;

/// `main` and what is in it stay inside the viewport sideways, and a table
/// wider than the screen sits in a box of its own that scrolls. Returns
/// what else sticks out (the header, say), for a note.
#[track_caller]
fn assert_reachable(layout: &Value) -> Option<String> {
    let n = |v: &Value| v.as_f64().unwrap_or(f64::MAX);
    let viewport = n(&layout["viewport"]);
    assert!(viewport <= 400.0, "a phone-sized viewport: {layout}");
    assert!(
        n(&layout["main"]) <= viewport,
        "main is wider than the screen: {layout}"
    );
    assert!(
        layout["inMain"].as_array().is_some_and(Vec::is_empty),
        "content of main sticks out of the screen: {layout}"
    );
    let tables = layout["tables"].as_array().cloned().unwrap_or_default();
    assert!(!tables.is_empty(), "the models table: {layout}");
    for t in &tables {
        let fits = n(&t["right"]) <= viewport;
        let scrolls = t["scrolls"] == json!(true) && n(&t["wrapRight"]) <= viewport;
        assert!(fits || scrolls, "a table out of reach: {t} in {layout}");
    }
    (n(&layout["page"]) > viewport).then(|| {
        format!(
            "the page is {} px wide in a {viewport} px viewport, because of {}",
            layout["page"], layout["elsewhere"]
        )
    })
}

/// `chromedriver` in a process group of its own, with the browsers it
/// starts: the whole group is killed when this is dropped, whatever
/// happened, and its directory (the log, the browser's profile) removed.
struct ChromeDriver {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start(program: &Path) -> ChromeDriver {
        let mut dir = tempfile::Builder::new()
            .prefix("mr-browser-")
            .tempdir()
            .expect("temporary directory");
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(dir.path().join("chromedriver.log"))
                .expect("chromedriver log");
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log handle"))
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut driver = ChromeDriver {
                child,
                url: format!("http://127.0.0.1:{port}"),
                dir,
            };
            match driver.wait_ready().await {
                Ok(()) => return driver,
                Err(e) => failures.push(format!("port {port}: {e}:\n{}", driver.log_tail())),
            }
            // Dropping it kills it; its directory goes too, so take a new one.
            dir = tempfile::Builder::new()
                .prefix("mr-browser-")
                .tempdir()
                .expect("temporary directory");
        }
        panic!(
            "chromedriver did not start 3 times:\n{}",
            failures.join("\n----\n")
        );
    }

    /// Until `GET /status` says ready.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status})"));
            }
            if let Ok(r) = http.get(format!("{}/status", self.url)).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == json!(true)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("not ready after 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default();
        let cut = log.len().saturating_sub(4000);
        let cut = (cut..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log[cut..].to_string()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let log = self.log_tail();
        if std::thread::panicking() && !log.trim().is_empty() {
            eprintln!("---- chromedriver log (tail) ----\n{log}\n---- end ----");
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver session (one headless Chromium); elements are the
/// driver's reference strings.
struct Browser {
    http: reqwest::Client,
    /// `<driver>/session/<id>`.
    session: String,
}

impl Browser {
    async fn open(driver: &ChromeDriver) -> Browser {
        let http = http_client();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--hide-scrollbars", format!("--user-data-dir={}", driver.profile().display()),
            ]},
        }}});
        let url = format!("{}/session", driver.url);
        let value = call(&http, Method::POST, &url, Some(caps)).await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {value}"));
        let b = Browser {
            http,
            session: format!("{url}/{id}"),
        };
        b.cmd(
            Method::POST,
            "/timeouts",
            json!({"script": 60_000, "pageLoad": 30_000, "implicit": 0}),
        )
        .await;
        b
    }

    async fn cmd(&self, method: Method, path: &str, body: Value) -> Value {
        let body = (method != Method::GET && method != Method::DELETE).then_some(body);
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        let v = self.cmd(Method::GET, "/url", Value::Null).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Until the current URL satisfies `ok`; returns it.
    async fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if ok(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url} after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find_all(&self, from: Option<&str>, using: &str, value: &str) -> Vec<String> {
        let path = match from {
            Some(e) => format!("/element/{e}/elements"),
            None => "/elements".to_string(),
        };
        let v = self
            .cmd(Method::POST, &path, json!({"using": using, "value": value}))
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    async fn all_css(&self, css: &str) -> Vec<String> {
        self.find_all(None, "css selector", css).await
    }

    /// The elements `css` selects, waiting until there is one.
    async fn wait_css(&self, css: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.all_css(css).await;
            if !found.is_empty() {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} at {} after {WAIT:?}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn css(&self, css: &str) -> String {
        self.wait_css(css).await.swap_remove(0)
    }

    async fn xpath(&self, xpath: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_all(None, "xpath", xpath).await.into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {xpath} at {} after {WAIT:?}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, element: &str) {
        self.cmd(
            Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.cmd(
            Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        )
        .await;
        self.cmd(
            Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, element: &str) -> String {
        let v = self
            .cmd(
                Method::GET,
                &format!("/element/{element}/text"),
                Value::Null,
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    async fn attr(&self, element: &str, name: &str) -> Option<String> {
        let v = self
            .cmd(
                Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                Value::Null,
            )
            .await;
        v.as_str().map(str::to_string)
    }

    async fn selected(&self, element: &str) -> bool {
        let v = self
            .cmd(
                Method::GET,
                &format!("/element/{element}/selected"),
                Value::Null,
            )
            .await;
        v == json!(true)
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn run(&self, script: &str, args: Value) -> Value {
        self.cmd(
            Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The charts of a compare page: each metric (its caption) with its
    /// marks, `(data-version, data-value)`.
    async fn charts(&self) -> Vec<(String, Vec<(String, f64)>)> {
        let mut charts = Vec::new();
        for figure in self.all_css("figure.chart").await {
            let caption = self
                .find_all(Some(&figure), "css selector", "figcaption")
                .await;
            let metric = match caption.first() {
                Some(c) => self.text(c).await,
                None => String::new(),
            };
            let mut marks = Vec::new();
            for mark in self
                .find_all(Some(&figure), "css selector", "rect.mark")
                .await
            {
                let version = self.attr(&mark, "data-version").await.unwrap_or_default();
                let value = self.attr(&mark, "data-value").await.unwrap_or_default();
                let value = value
                    .parse()
                    .unwrap_or_else(|_| panic!("data-value {value:?} of {version}"));
                marks.push((version, value));
            }
            charts.push((metric, marks));
        }
        charts
    }

    /// The cookies the browser holds for the current page, by name (as
    /// WebDriver shows them: `secure`, `httpOnly`, `sameSite`, ...).
    async fn cookies(&self) -> BTreeMap<String, Value> {
        let v = self.cmd(Method::GET, "/cookie", Value::Null).await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["name"].as_str()?.to_string(), c.clone())))
            .collect()
    }

    /// Screenshot of the window, PNG.
    async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd(Method::GET, "/screenshot", Value::Null).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("the screenshot is base64")
    }

    async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Screenshot of the page, no script of the registry's data ran, and
    /// axe-core's serious and critical violations (one line each; all of
    /// them are printed).
    async fn check_page(&self, page: &str, tools: &Tools, shots: &Shots) -> Vec<String> {
        shots.save(page, &self.screenshot().await);
        let xss = self.run("return typeof window.xss", json!([])).await;
        assert_eq!(
            xss,
            json!("undefined"),
            "{page}: a description ran as script"
        );
        // The style sheet applies under the pages' Content-Security-Policy
        // (allowed by its hash): the header has its dark background.
        let background = self
            .run(
                "return getComputedStyle(document.querySelector('header')).backgroundColor",
                json!([]),
            )
            .await;
        assert_eq!(
            background,
            json!("rgb(13, 43, 78)"),
            "{page}: the style sheet did not apply"
        );
        let found = self.axe(tools).await;
        let mut lines = Vec::new();
        for v in found {
            let targets: Vec<String> = v["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| t.as_str().unwrap_or_default().to_string())
                .collect();
            let line = format!(
                "{page}: {} ({}): {} [{} nodes: {}]",
                v["id"].as_str().unwrap_or("?"),
                v["impact"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or("?"),
                v["nodes"],
                targets.join(" | ")
            );
            eprintln!("axe: {line}");
            if matches!(v["impact"].as_str(), Some("serious" | "critical")) {
                lines.push(line);
            }
        }
        lines
    }

    /// axe-core's violations on the current page (all impacts).
    async fn axe(&self, tools: &Tools) -> Vec<Value> {
        self.run(&tools.axe_js, json!([])).await;
        let found = self
            .cmd(
                Method::POST,
                "/execute/async",
                json!({"script": AXE_RUN, "args": []}),
            )
            .await;
        match found.as_array() {
            Some(found) => found.clone(),
            None => panic!("axe.run failed at {}: {found}", self.url().await),
        }
    }

    async fn quit(self) {
        call(&self.http, Method::DELETE, &self.session, None).await;
    }
}

/// `axe.run()` on the page; its violations, each with the selectors of its
/// first three nodes.
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] })
  .then(r => done(r.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length,
    targets: v.nodes.slice(0, 3).map(n => n.target.join(' ')),
  }))))
  .catch(e => done({ error: String(e) }));
"#;

/// One WebDriver command; its `value`, or a panic that says what failed.
async fn call(http: &reqwest::Client, method: Method, url: &str, body: Option<Value>) -> Value {
    let mut rb = http.request(method.clone(), url);
    if let Some(b) = &body {
        rb = rb.json(b);
    }
    let what = format!("WebDriver {method} {url}");
    let r = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: transport error: {e}"));
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what}: {status}, not JSON: {}", truncate(&text, 500)));
    if !status.is_success() {
        panic!(
            "{what}: {status} {}: {}",
            v["value"]["error"].as_str().unwrap_or("?"),
            truncate(v["value"]["message"].as_str().unwrap_or(&text), 1000)
        );
    }
    v["value"].clone()
}
