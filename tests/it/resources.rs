//! The cases every resource of the API shares (create, get, find, list,
//! PATCH, validation, 404/400/409/422), run over one table of resources:
//! registered models, model versions, serving environments, inference
//! services, experiments and experiment runs. Each case is one test per
//! resource (a module per resource at the end of this file), on both API
//! prefixes of one server. What only one resource does is in its own file
//! (serving.rs, experiments.rs, lists.rs).

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::common::*;
use crate::harness::Server;

/// The entity a resource is created under.
struct Parent {
    /// The field naming it in a body, e.g. `registeredModelId`.
    field: &'static str,
    /// Its collection (`/registered_models`); the fixtures create one by name.
    of: &'static str,
    /// Below `{of}/{id}`: where its children are created and listed (`/versions`).
    children: &'static str,
}

/// What a create without a name does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nameless {
    Refused,
    Named,
}

/// One resource, as the shared cases see it.
struct Resource {
    /// Short label for names and messages.
    label: &'static str,
    /// The collection: POST creates, GET lists; `/{id}` gets and patches.
    collection: &'static str,
    /// Find one: `?name=` (with `parentResourceId` under a parent) or `?externalId=`.
    find: &'static str,
    parent: Option<Parent>,
    /// Other entities a body must name, created by the fixtures: (field, collection).
    references: &'static [(&'static str, &'static str)],
    /// A create without a name: refused (422), or given a generated one.
    nameless: Nameless,
    /// Every optional field with a value, customProperties included (the
    /// cases add the name, the parent, the references and an externalId).
    full: fn() -> Value,
    /// What a create without them fills in.
    defaults: &'static [(&'static str, &'static str)],
    /// Optional fields a create without them leaves out of the response.
    optional: &'static [&'static str],
    /// Fields a create sets that PATCHes without them keep.
    kept: fn() -> Value,
    /// Fields a PATCH sets along with `description`.
    patched: fn() -> Value,
    /// A state a PATCH moves the entity to (and back to its default): (field, value).
    transition: Option<(&'static str, &'static str)>,
    /// Values refused (400) on create and on PATCH: (field, value).
    invalid: fn() -> Vec<(&'static str, Value)>,
}

const OPTIONAL_MODEL_FIELDS: &[&str] = &[
    "description",
    "externalId",
    "owner",
    "readme",
    "maturity",
    "language",
    "tasks",
    "provider",
    "logo",
    "license",
    "licenseLink",
    "libraryName",
];

static REGISTERED_MODELS: Resource = Resource {
    label: "rm",
    collection: "/registered_models",
    find: "/registered_model",
    parent: None,
    references: &[],
    nameless: Nameless::Refused,
    full: || {
        json!({
            "description": "A model with every field set",
            "owner": "alice",
            "state": "ARCHIVED",
            "readme": "# Title\n\nSome *markdown*.",
            "maturity": "Generally Available",
            "language": ["en", "es", "cz"],
            "tasks": ["text-generation", "summarization"],
            "provider": "IBM",
            "logo": "data:image/png;base64,iVBORw0KGgo=",
            "license": "apache-2.0",
            "licenseLink": "https://www.apache.org/licenses/LICENSE-2.0",
            "libraryName": "transformers",
            "customProperties": {
                "framework": cp_str("pytorch"),
                "label": cp_str(""),
                "epochs": cp_int(10),
                "negative": cp_int(-7),
                "accuracy": cp_double(0.95),
                "prod": cp_bool(true),
                "config": cp_struct(&json!({"layers": 12, "act": "gelu", "nested": {"a": [1, 2]}})),
            }
        })
    },
    defaults: &[("state", "LIVE")],
    optional: OPTIONAL_MODEL_FIELDS,
    kept: || json!({"owner": "alice", "language": ["en"]}),
    patched: || json!({"provider": "acme"}),
    transition: Some(("state", "ARCHIVED")),
    invalid: || {
        vec![
            ("state", json!("BOGUS")),
            ("state", json!("DELETED")),
            ("state", json!("live")),
            ("language", json!("en")),
        ]
    },
};

static MODEL_VERSIONS: Resource = Resource {
    label: "mv",
    collection: "/model_versions",
    find: "/model_version",
    parent: Some(Parent {
        field: "registeredModelId",
        of: "/registered_models",
        children: "/versions",
    }),
    references: &[],
    nameless: Nameless::Refused,
    full: || {
        json!({
            "description": "first",
            "author": "alice",
            "state": "LIVE",
            "customProperties": {"stage": cp_str("dev"), "n": cp_int(3)}
        })
    },
    defaults: &[("state", "LIVE")],
    optional: &["description", "externalId", "author"],
    kept: || json!({"author": "alice"}),
    patched: || json!({}),
    transition: Some(("state", "ARCHIVED")),
    invalid: || vec![("state", json!("DELETED")), ("state", json!("BOGUS"))],
};

static SERVING_ENVIRONMENTS: Resource = Resource {
    label: "env",
    collection: "/serving_environments",
    find: "/serving_environment",
    parent: None,
    references: &[],
    nameless: Nameless::Refused,
    full: || {
        json!({
            "description": "k8s prod cluster",
            "customProperties": {"region": cp_str("eu-west-1"), "gpus": cp_int(8)}
        })
    },
    defaults: &[],
    optional: &["description", "externalId"],
    kept: || json!({"externalId": uniq("kept")}),
    patched: || json!({}),
    transition: None,
    // Serving environments have no state.
    invalid: || vec![("state", json!("LIVE"))],
};

static INFERENCE_SERVICES: Resource = Resource {
    label: "isvc",
    collection: "/inference_services",
    find: "/inference_service",
    parent: Some(Parent {
        field: "servingEnvironmentId",
        of: "/serving_environments",
        children: "/inference_services",
    }),
    references: &[("registeredModelId", "/registered_models")],
    nameless: Nameless::Named,
    full: || {
        json!({
            "runtime": "kserve-ovms",
            "desiredState": "DEPLOYED",
            "description": "first deployment",
            "customProperties": {"url": cp_str("https://mnist.example.com")}
        })
    },
    defaults: &[("desiredState", "DEPLOYED")],
    optional: &["modelVersionId", "runtime", "description", "externalId"],
    kept: || json!({"runtime": "kserve"}),
    patched: || json!({}),
    transition: Some(("desiredState", "UNDEPLOYED")),
    invalid: || {
        vec![
            ("desiredState", json!("RUNNING")),
            ("desiredState", json!("STOPPED")),
            ("desiredState", json!("deployed")),
            ("modelVersionId", json!(7)),
        ]
    },
};

static EXPERIMENTS: Resource = Resource {
    label: "exp",
    collection: "/experiments",
    find: "/experiment",
    parent: None,
    references: &[],
    nameless: Nameless::Refused,
    full: || {
        json!({
            "owner": "ada",
            "description": "tune the lr",
            "state": "LIVE",
            "customProperties": {"team": cp_str("vision"), "budget": cp_double(12.5)}
        })
    },
    defaults: &[("state", "LIVE")],
    optional: &["owner", "description", "externalId"],
    kept: || json!({"owner": "ada"}),
    patched: || json!({}),
    transition: Some(("state", "ARCHIVED")),
    invalid: || vec![("state", json!("RUNNING")), ("state", json!("DELETED"))],
};

static EXPERIMENT_RUNS: Resource = Resource {
    label: "run",
    collection: "/experiment_runs",
    find: "/experiment_run",
    parent: Some(Parent {
        field: "experimentId",
        of: "/experiments",
        children: "/experiment_runs",
    }),
    references: &[],
    nameless: Nameless::Named,
    full: || {
        json!({
            "owner": "ada",
            "description": "first try",
            "status": "RUNNING",
            "state": "LIVE",
            "startTimeSinceEpoch": "1700000000000",
            "customProperties": {"seed": cp_int(42)}
        })
    },
    defaults: &[("state", "LIVE")],
    optional: &["owner", "description", "externalId", "endTimeSinceEpoch"],
    kept: || json!({"status": "RUNNING", "startTimeSinceEpoch": "1700000000000"}),
    patched: || json!({"endTimeSinceEpoch": "1700000360000"}),
    transition: Some(("state", "ARCHIVED")),
    invalid: || {
        vec![
            ("status", json!("DONE")),
            ("status", json!("finished")),
            ("state", json!("FINISHED")),
            ("startTimeSinceEpoch", json!("yesterday")),
            ("endTimeSinceEpoch", json!("tomorrow")),
        ]
    },
};

// ---------------------------------------------------------------- fixtures

/// What a body of the resource must name: a new parent, new references.
struct Fixture {
    /// The parent's id (resources with a parent).
    parent: Option<String>,
    /// The parent and reference fields, with their ids.
    refs: Map<String, Value>,
}

/// `a` with the fields of `b` (objects).
fn merged(mut a: Value, b: Value) -> Value {
    let a_obj = a.as_object_mut().expect("an object");
    for (k, v) in b.as_object().expect("an object") {
        a_obj.insert(k.clone(), v.clone());
    }
    a
}

fn object(v: &Value) -> &Map<String, Value> {
    v.as_object().expect("an object")
}

impl Resource {
    /// A new parent and new references to create entities with.
    async fn fixture(&self, api: &Api) -> Fixture {
        let mut refs = Map::new();
        let mut parent = None;
        if let Some(p) = &self.parent {
            let e = api
                .post(p.of, &json!({"name": uniq("parent")}))
                .await
                .ok(201);
            refs.insert(p.field.into(), json!(id(&e)));
            parent = Some(id(&e));
        }
        for (field, of) in self.references {
            let e = api.post(of, &json!({"name": uniq("ref")})).await.ok(201);
            refs.insert((*field).into(), json!(id(&e)));
        }
        Fixture { parent, refs }
    }

    /// A body for the collection: the fixture's parent and references, `name`, `fields`.
    fn body(&self, fx: &Fixture, name: &str, fields: Value) -> Value {
        let mut b = Value::Object(fx.refs.clone());
        b["name"] = json!(name);
        merged(b, fields)
    }

    /// A body for the parent's route: [`Resource::body`] without the parent field.
    fn child_body(&self, fx: &Fixture, name: &str, fields: Value) -> Value {
        let mut b = self.body(fx, name, fields);
        if let Some(p) = &self.parent {
            b.as_object_mut().unwrap().remove(p.field);
        }
        b
    }

    /// POST to the collection, expecting 201.
    async fn create(&self, api: &Api, fx: &Fixture, name: &str, fields: Value) -> Value {
        api.post(self.collection, &self.body(fx, name, fields))
            .await
            .ok(201)
    }

    fn item(&self, id: &str) -> String {
        format!("{}/{id}", self.collection)
    }

    /// The route under parent `id` (resources with a parent).
    fn under(&self, id: &str) -> String {
        let p = self.parent.as_ref().expect("a resource with a parent");
        format!("{}/{id}{}", p.of, p.children)
    }

    /// Where the fixture's entities are listed: under its parent, else the collection.
    fn listed_at(&self, fx: &Fixture) -> String {
        match &fx.parent {
            Some(p) => self.under(p),
            None => self.collection.to_string(),
        }
    }

    /// Find by `name`, in the fixture's parent when there is one.
    async fn find_name(&self, api: &Api, fx: &Fixture, name: &str) -> Resp {
        let mut q = vec![("name", name)];
        if let Some(p) = &fx.parent {
            q.push(("parentResourceId", p));
        }
        api.get_q(self.find, &q).await
    }

    /// The longest name an entity of the fixture may have: 255, less
    /// "<parent id>:" under a parent (upstream stores that prefix).
    fn name_limit(&self, fx: &Fixture) -> usize {
        255 - fx.parent.as_ref().map_or(0, |p| p.len() + 1)
    }
}

/// `got` has exactly the custom properties `sent` has, with the same values
/// (a struct value compared decoded, a double to within 1e-9).
#[track_caller]
fn assert_same_properties(got: &Value, sent: &Value) {
    let (have, want) = (object(got), object(sent));
    assert_eq!(
        have.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly the sent custom properties: {got}"
    );
    for (k, w) in want {
        let h = &have[k];
        assert_eq!(h["metadataType"], w["metadataType"], "{k}: {got}");
        match w["metadataType"].as_str() {
            Some("MetadataStructValue") => {
                let s = h["struct_value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("struct_value must be a base64 string: {got}"));
                assert_eq!(
                    decode_struct(s),
                    decode_struct(w["struct_value"].as_str().unwrap()),
                    "struct_value must round-trip: {got}"
                );
            }
            Some("MetadataDoubleValue") => {
                assert_f64(&h["double_value"], w["double_value"].as_f64().unwrap(), k);
            }
            // Strings, bools, and ints as JSON strings ("10").
            _ => assert_eq!(h, w, "property `{k}`: {got}"),
        }
    }
}

/// Custom property values every create and PATCH refuses.
fn invalid_properties() -> Vec<Value> {
    vec![
        json!({"metadataType": "MetadataProtoValue", "type": "x", "proto_value": "AAEC"}),
        json!({"metadataType": "MetadataIntValue", "int_value": "abc"}),
        json!({"metadataType": "MetadataIntValue", "int_value": "1.5"}),
        json!({"metadataType": "MetadataBogusValue", "string_value": "x"}),
        json!({"string_value": "no metadataType"}),
        json!({"metadataType": "MetadataStringValue", "string_value": "x", "extra": 1}),
    ]
}

// ---------------------------------------------------------------- cases

async fn create_with_every_field_and_get_back(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let name = uniq(&format!("full-{}-{}", r.label, api.tag()));
        let mut body = r.body(&fx, &name, (r.full)());
        body["externalId"] = json!(uniq("ext"));
        let created = api.post(r.collection, &body).await.ok(201);
        assert_entity_basics(&created);
        for (f, sent) in object(&body) {
            if f != "customProperties" {
                assert_eq!(
                    created.get(f),
                    Some(sent),
                    "field `{f}` not echoed in {created}"
                );
            }
        }
        assert_same_properties(&created["customProperties"], &body["customProperties"]);
        let (c, u) = assert_timestamps(&created);
        assert_eq!(
            c, u,
            "a new entity has lastUpdate == create time: {created}"
        );
        let got = api.get(&r.item(&id(&created))).await.ok(200);
        assert_eq!(got, created, "GET must return what POST returned");
    }
}

/// A create with nothing but the name (and the parent, from the path of the
/// parent's route, and the references) fills in the defaults and leaves
/// every other optional field out, `customProperties` being `{}`.
async fn minimal_create_defaults_and_omits_unset_fields(r: &Resource) {
    let srv = Server::start().await;
    let before = now_ms();
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let name = uniq(&format!("min-{}-{}", r.label, api.tag()));
        let m = match &fx.parent {
            Some(p) => api
                .post(&r.under(p), &r.child_body(&fx, &name, json!({})))
                .await
                .ok(201),
            None => r.create(&api, &fx, &name, json!({})).await,
        };
        assert_entity_basics(&m);
        assert_eq!(m["name"], json!(name));
        for (f, v) in &fx.refs {
            assert_eq!(&m[f], v, "`{f}` (the parent from the path): {m}");
        }
        for (f, default) in r.defaults {
            assert_eq!(m[f], *default, "{f} defaults to {default}: {m}");
        }
        assert_eq!(
            m["customProperties"],
            json!({}),
            "customProperties is {{}} when empty: {m}"
        );
        assert_absent(&m, r.optional);
        let (c, _) = assert_timestamps(&m);
        assert!(
            c + 5_000 >= before,
            "createTimeSinceEpoch {c} is not now-ish ({before})"
        );
        let got = api.get(&r.item(&id(&m))).await.ok(200);
        assert_absent(&got, r.optional);
        assert_eq!(got["customProperties"], json!({}));
        assert_eq!(got, m);
    }
}

async fn ids_are_decimal_strings_and_increase(r: &Resource) {
    let srv = Server::start().await;
    let api = srv.api(V1);
    let fx = r.fixture(&api).await;
    let mut last = 0;
    for i in 0..5 {
        let e = r
            .create(&api, &fx, &uniq(&format!("inc{i}")), json!({}))
            .await;
        assert_id_format(&e);
        let n = id_num(&e);
        assert!(n > last, "ids must increase over time: {n} after {last}");
        last = n;
    }
}

async fn unknown_or_malformed_ids(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        api.get(&r.item("999999")).await.err(404);
        api.get(&r.item("abc")).await.err(400);
        api.get(&r.item("12abc")).await.err(400);
        api.get(&r.item("99999999999999999999")).await.client_err();
        let patch = json!({"description": "x"});
        api.patch(&r.item("999999"), &patch).await.err(404);
        api.patch(&r.item("abc"), &patch).await.err(400);
    }
}

/// Required name (422, or a generated one), strict decoding and enums
/// (400), custom property values, malformed JSON, the name's length;
/// nothing refused is created.
async fn create_validation_errors(r: &Resource) {
    let srv = Server::start().await;
    let mut created = Vec::new();
    for api in srv.apis() {
        let t = api.tag();
        let fx = r.fixture(&api).await;
        let mut nameless = r.body(&fx, "x", json!({"description": "no name"}));
        nameless.as_object_mut().unwrap().remove("name");
        let named = match r.nameless {
            Nameless::Refused => {
                api.post(r.collection, &nameless).await.err(422);
                None
            }
            Nameless::Named => {
                let e = api.post(r.collection, &nameless).await.ok(201);
                assert!(
                    e["name"].as_str().is_some_and(|n| !n.is_empty()),
                    "created without a name, it gets one: {e}"
                );
                Some(id(&e))
            }
        };
        api.post(r.collection, &r.body(&fx, "", json!({})))
            .await
            .err(422);

        let unknown = uniq(&format!("unknown-{t}"));
        api.post(
            r.collection,
            &r.body(&fx, &unknown, json!({"notAField": "x"})),
        )
        .await
        .err(400);
        r.find_name(&api, &fx, &unknown).await.err(404);
        for (f, v) in (r.invalid)() {
            api.post(r.collection, &r.body(&fx, &uniq("bad"), json!({ f: v })))
                .await
                .err(400);
        }
        api.post(
            r.collection,
            &merged(r.body(&fx, "x", json!({})), json!({"name": 42})),
        )
        .await
        .err(400);
        api.post(r.collection, &r.body(&fx, &uniq("s"), json!({"id": "5"})))
            .await
            .err(400);
        for bad in invalid_properties() {
            api.post(
                r.collection,
                &r.body(&fx, &uniq("cp"), json!({"customProperties": {"k": bad}})),
            )
            .await
            .err(400);
        }
        api.post(r.collection, &r.body(&fx, "v\u{0}x", json!({})))
            .await
            .err(400);
        api.raw(Method::POST, r.collection, "{\"name\": \"x\",")
            .await
            .err(400);
        api.raw(Method::POST, r.collection, "not json")
            .await
            .err(400);
        api.raw(Method::POST, r.collection, "[]").await.client_err();

        let limit = r.name_limit(&fx);
        let ok_name = format!("{t}-{}", "n".repeat(limit - 3));
        assert_eq!(ok_name.chars().count(), limit);
        let e = r.create(&api, &fx, &ok_name, json!({})).await;
        assert_eq!(e["name"], json!(ok_name));
        let before = created.len();
        created.extend(named);
        created.push(id(&e));
        for long in [
            format!("{t}{}", "x".repeat(limit - 1)),
            format!("{t}{}", "y".repeat(10_000)),
        ] {
            api.post(r.collection, &r.body(&fx, &long, json!({})))
                .await
                .client_err();
        }
        let listed = api.list(&r.listed_at(&fx), &[]).await;
        let expected = if fx.parent.is_some() {
            &created[before..]
        } else {
            &created[..]
        };
        assert_eq!(
            ids_of(&items(&listed)),
            expected,
            "nothing refused was created: {listed}"
        );
    }
}

/// Under a parent: the parent is required and must exist, from the body or
/// from the path of the parent's route (where a body may repeat it, not
/// contradict it); so must the references.
async fn parent_and_reference_errors(r: &Resource) {
    let p = r.parent.as_ref().expect("a resource with a parent");
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let other = r.fixture(&api).await;
        let pid = fx.parent.clone().unwrap();
        let under = r.under(&pid);

        api.post(r.collection, &r.child_body(&fx, "orphan", json!({})))
            .await
            .err(422);
        api.post(
            r.collection,
            &r.body(&fx, "x", json!({ p.field: "999999" })),
        )
        .await
        .err(404);
        api.post(&r.under("999999"), &r.child_body(&fx, "x", json!({})))
            .await
            .err(404);
        api.post(r.collection, &r.body(&fx, "x", json!({ p.field: "abc" })))
            .await
            .err(400);
        api.post(&r.under("abc"), &r.child_body(&fx, "x", json!({})))
            .await
            .err(400);
        let repeated = api
            .post(&under, &r.body(&fx, "repeated", json!({})))
            .await
            .ok(201);
        assert_eq!(repeated[p.field], json!(pid), "{repeated}");
        api.post(
            &under,
            &r.body(&fx, "x", json!({ p.field: other.parent.clone().unwrap() })),
        )
        .await
        .err(400);

        for (field, _) in r.references {
            for (path, mut body) in [
                (r.collection.to_string(), r.body(&fx, "x", json!({}))),
                (under.clone(), r.child_body(&fx, "x", json!({}))),
            ] {
                body.as_object_mut().unwrap().remove(*field);
                let resp = api.post(&path, &body).await;
                resp.client_err();
                assert!(
                    [400, 422].contains(&resp.status),
                    "missing {field}: 422 or 400, got {}",
                    resp.status
                );
            }
            api.post(r.collection, &r.body(&fx, "x", json!({ *field: "999999" })))
                .await
                .err(404);
            api.post(r.collection, &r.body(&fx, "x", json!({ *field: "abc" })))
                .await
                .err(400);
        }

        let listed = api.list(&under, &[]).await;
        assert_eq!(
            names_of(&items(&listed)),
            vec!["repeated"],
            "nothing refused was created: {listed}"
        );
        api.get(&r.under("999999")).await.err(404);
        api.get(&r.under("abc")).await.err(400);
    }
}

/// Names are unique (in their parent), externalIds among the resource's
/// entities (and a PATCH cannot take one either); the original stays.
async fn duplicate_name_or_external_id_conflicts(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let name = uniq(&format!("dup-{}-{}", r.label, api.tag()));
        let ext = uniq("dup-ext");
        let m = r
            .create(
                &api,
                &fx,
                &name,
                json!({"externalId": ext, "description": "first"}),
            )
            .await;
        api.post(
            r.collection,
            &r.body(&fx, &name, json!({"description": "second"})),
        )
        .await
        .err(409);
        if let Some(p) = &fx.parent {
            api.post(&r.under(p), &r.child_body(&fx, &name, json!({})))
                .await
                .err(409);
        }
        api.post(
            r.collection,
            &r.body(&fx, &uniq("other"), json!({"externalId": ext})),
        )
        .await
        .err(409);
        // The original is untouched and still the only match.
        assert_eq!(r.find_name(&api, &fx, &name).await.ok(200), m);

        if fx.parent.is_some() {
            // The same name in another parent is another entity.
            let elsewhere = r.fixture(&api).await;
            let b = r.create(&api, &elsewhere, &name, json!({})).await;
            assert_ne!(id(&b), id(&m));
            assert_eq!(
                b["name"],
                json!(name),
                "names are not prefixed on the wire: {b}"
            );
            api.post(
                r.collection,
                &r.body(&elsewhere, &uniq("e2"), json!({"externalId": ext})),
            )
            .await
            .err(409);
        }

        // Taking another entity's externalId through PATCH is a conflict too.
        let other = r.create(&api, &fx, &uniq("other2"), json!({})).await;
        api.patch(&r.item(&id(&other)), &json!({"externalId": ext}))
            .await
            .err(409);
        let other_now = api.get(&r.item(&id(&other))).await.ok(200);
        assert!(other_now.get("externalId").is_none(), "{other_now}");
    }
}

/// Present fields overwrite, absent and null ones keep, customProperties is
/// replaced as a whole ({} clears it), every PATCH moves lastUpdateTime
/// forward and never createTime.
async fn patch_merge_semantics(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let name = uniq(&format!("patch-{}-{}", r.label, api.tag()));
        let kept = (r.kept)();
        let m = r
            .create(
                &api,
                &fx,
                &name,
                merged(
                    json!({"description": "old",
                           "customProperties": {"a": cp_str("1"), "b": cp_int(2)}}),
                    kept.clone(),
                ),
            )
            .await;
        let path = r.item(&id(&m));
        let (created, mut last_update) = assert_timestamps(&m);
        let assert_kept = |e: &Value| {
            for (f, v) in object(&kept) {
                assert_eq!(&e[f], v, "absent field `{f}` kept: {e}");
            }
        };

        let patched = (r.patched)();
        let p1 = api
            .patch(
                &path,
                &merged(json!({"description": "new"}), patched.clone()),
            )
            .await
            .ok(200);
        assert_entity_basics(&p1);
        assert_eq!(p1["description"], "new");
        for (f, v) in object(&patched) {
            assert_eq!(&p1[f], v, "`{f}` set: {p1}");
        }
        assert_kept(&p1);
        assert_eq!(p1["name"], json!(name), "name kept: {p1}");
        for (f, v) in &fx.refs {
            assert_eq!(&p1[f], v, "`{f}` kept: {p1}");
        }
        for (f, default) in r.defaults {
            assert_eq!(p1[f], *default, "{p1}");
        }
        assert_eq!(p1["id"], m["id"]);
        assert_eq!(
            p1["customProperties"], m["customProperties"],
            "absent customProperties kept"
        );
        let (c1, u1) = assert_timestamps(&p1);
        assert_eq!(c1, created, "createTimeSinceEpoch never changes");
        assert!(
            u1 > last_update,
            "lastUpdate must increase: {u1} <= {last_update}"
        );
        last_update = u1;

        // null keeps the value too.
        let mut nulls = json!({"description": null});
        for f in object(&kept).keys() {
            nulls[f] = Value::Null;
        }
        let p2 = api.patch(&path, &nulls).await.ok(200);
        assert_eq!(p2["description"], "new", "null keeps the value: {p2}");
        assert_kept(&p2);

        // customProperties replaces the whole map.
        let p3 = api
            .patch(&path, &json!({"customProperties": {"c": cp_bool(false)}}))
            .await
            .ok(200);
        assert_eq!(
            p3["customProperties"],
            json!({"c": cp_bool(false)}),
            "customProperties must be replaced, not merged"
        );
        assert_eq!(p3["description"], "new");
        let (_, u3) = assert_timestamps(&p3);
        assert!(u3 > last_update);
        last_update = u3;

        // {} clears it.
        let mut last = api
            .patch(&path, &json!({"customProperties": {}}))
            .await
            .ok(200);
        assert_eq!(last["customProperties"], json!({}), "{{}} clears: {last}");

        // A state change (archive, undeploy), and back.
        if let Some((f, to)) = r.transition {
            let p5 = api.patch(&path, &json!({ f: to })).await.ok(200);
            assert_eq!(p5[f], to);
            let (_, u5) = assert_timestamps(&p5);
            assert!(u5 > last_update);
            let back = r
                .defaults
                .iter()
                .find(|(d, _)| *d == f)
                .map(|(_, v)| *v)
                .expect("the transition's field has a default");
            last = api.patch(&path, &json!({ f: back })).await.ok(200);
            assert_eq!(last[f], back);
            let p6 = api.patch(&path, &json!({ f: to })).await.ok(200);
            assert_eq!(p6[f], to);
            last = p6;
        }

        // GET shows the final state.
        let got = api.get(&path).await.ok(200);
        assert_eq!(got, last, "GET after PATCH must equal the PATCH response");
        assert_eq!(got["description"], "new");
        assert_kept(&got);
        for (f, v) in object(&patched) {
            assert_eq!(&got[f], v);
        }
        assert_eq!(got["customProperties"], json!({}));
    }
}

/// Name, ids, timestamps, the parent and references cannot be patched;
/// unknown fields, invalid values and malformed JSON are refused; a refused
/// PATCH changes nothing.
async fn patch_rejects_read_only_unknown_and_invalid_fields(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let other = r.fixture(&api).await;
        let m = r
            .create(
                &api,
                &fx,
                &uniq(&format!("ro-{}-{}", r.label, api.tag())),
                merged(json!({"description": "d"}), (r.kept)()),
            )
            .await;
        let path = r.item(&id(&m));
        let mut bad = vec![
            json!({"name": "renamed"}),
            json!({"id": "1"}),
            json!({"id": id(&m)}),
            json!({"bogusField": 1}),
            json!({"createTimeSinceEpoch": "1"}),
            json!({"lastUpdateTimeSinceEpoch": "1"}),
            json!({"description": "ok", "unknown": true}),
        ];
        bad.extend(
            invalid_properties()
                .into_iter()
                .map(|p| json!({"customProperties": {"p": p}})),
        );
        bad.extend((r.invalid)().into_iter().map(|(f, v)| json!({ f: v })));
        for (f, v) in fx.refs.iter().chain(&other.refs) {
            bad.push(json!({ f: v }));
        }
        for b in &bad {
            api.patch(&path, b).await.err(400);
        }
        api.raw(Method::PATCH, &path, "{\"description\": ")
            .await
            .err(400);
        let got = api.get(&path).await.ok(200);
        assert_eq!(got, m, "rejected PATCHes must not change the entity");
        if let (Some(mine), Some(theirs)) = (&fx.parent, &other.parent) {
            // Still listed under its parent, not under the other.
            let l = api.list(&r.under(mine), &[]).await;
            assert_eq!(ids_of(&items(&l)), vec![id(&m)]);
            let lo = api.list(&r.under(theirs), &[]).await;
            assert!(items(&lo).is_empty(), "{lo}");
        }
    }
}

/// By name (in a parent: with `parentResourceId`), by externalId, by both;
/// no match is a 404, no criteria a 400.
async fn find_by_name_and_external_id(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let name = uniq(&format!("find-{}-{}", r.label, api.tag()));
        let ext = uniq("find-ext");
        let m = r.create(&api, &fx, &name, json!({"externalId": ext})).await;
        // A decoy, so "first entity" is not accidentally right.
        r.create(&api, &fx, &uniq("decoy"), json!({})).await;

        assert_eq!(
            r.find_name(&api, &fx, &name).await.ok(200),
            m,
            "find by name"
        );
        let by_ext = api.get_q(r.find, &[("externalId", &ext)]).await.ok(200);
        assert_eq!(by_ext, m, "find by externalId");
        let mut both = vec![("name", name.as_str()), ("externalId", ext.as_str())];
        if let Some(p) = &fx.parent {
            both.push(("parentResourceId", p));
        }
        let found = api.get_q(r.find, &both).await.ok(200);
        assert_eq!(id(&found), id(&m), "find by name and externalId");

        r.find_name(&api, &fx, "no-such-name-xyz").await.err(404);
        api.get_q(r.find, &[("externalId", "no-such-ext-xyz")])
            .await
            .err(404);
        api.get(r.find).await.err(400);

        if let Some(pid) = &fx.parent {
            // The same name in another parent: the parent tells them apart.
            let elsewhere = r.fixture(&api).await;
            let b = r.create(&api, &elsewhere, &name, json!({})).await;
            let solo = r.create(&api, &elsewhere, "solo", json!({})).await;
            assert_eq!(r.find_name(&api, &elsewhere, &name).await.ok(200), b);
            assert_eq!(r.find_name(&api, &elsewhere, "solo").await.ok(200), solo);
            r.find_name(&api, &fx, "solo").await.err(404);
            api.get_q(r.find, &[("name", &name), ("parentResourceId", "999999")])
                .await
                .err(404);
            // A name in two parents, without a parent, is not one match.
            api.get_q(r.find, &[("name", &name)]).await.client_err();
            api.get_q(r.find, &[("name", &name), ("parentResourceId", "abc")])
                .await
                .err(400);
            assert_eq!(
                api.get_q(r.find, &[("name", &name), ("parentResourceId", pid)])
                    .await
                    .ok(200),
                m
            );
        }
    }
}

/// Lists hold every entity in ID order: the collection all of them, the
/// parent's route only its own (newest first with sortOrder=DESC).
async fn listed_in_id_order(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let other_fx = r.fixture(&api).await;
        let mut mine = Vec::new();
        for i in 0..3 {
            mine.push(
                r.create(&api, &fx, &uniq(&format!("l{i}-{}", r.label)), json!({}))
                    .await,
            );
        }
        let other = r.create(&api, &other_fx, &uniq("l-other"), json!({})).await;

        if let (Some(p1), Some(p2)) = (&fx.parent, &other_fx.parent) {
            let l1 = api.list(&r.under(p1), &[]).await;
            assert_eq!(items(&l1), mine, "the parent's own, default order ID ASC");
            assert_eq!(l1["nextPageToken"], "");
            let l2 = api.list(&r.under(p2), &[]).await;
            assert_eq!(items(&l2), vec![other.clone()]);
            // KServe's "latest version" query.
            let latest = api.list(&r.under(p1), &[("sortOrder", "DESC")]).await;
            assert_eq!(ids_of(&items(&latest))[0], id(&mine[2]));
            api.get(&r.under("999999")).await.err(404);
        }

        let all = api.list(r.collection, &[]).await;
        let all_ids = ids_of(&items(&all));
        for e in mine.iter().chain([&other]) {
            assert!(all_ids.contains(&id(e)), "{} missing from {all}", id(e));
        }
        let mut sorted = all_ids.clone();
        sorted.sort_by_key(|s| s.parse::<u64>().unwrap());
        assert_eq!(all_ids, sorted, "default order is ID ascending");
    }
}

async fn last_update_time_strictly_increases_on_rapid_patches(r: &Resource) {
    let srv = Server::start().await;
    for api in srv.apis() {
        let fx = r.fixture(&api).await;
        let e = r
            .create(&api, &fx, &uniq(&format!("rapid-{}", api.tag())), json!({}))
            .await;
        let path = r.item(&id(&e));
        let (created, mut last) = assert_timestamps(&e);
        for i in 0..6 {
            let p = api
                .patch(&path, &json!({"description": format!("d{i}")}))
                .await
                .ok(200);
            let (c, u) = assert_timestamps(&p);
            assert_eq!(c, created);
            assert!(
                u > last,
                "PATCH #{i}: lastUpdateTimeSinceEpoch must strictly increase ({u} <= {last})"
            );
            last = u;
        }
        let got = api.get(&path).await.ok(200);
        assert_eq!(num_str(&got, "lastUpdateTimeSinceEpoch"), last);
    }
}

// ---------------------------------------------------------------- the tests

/// One test per case for `$resource`, in module `$module`; `$extra` cases
/// only apply to some resources.
macro_rules! resource_tests {
    ($module:ident: $resource:ident $(+ $extra:ident)*) => {
        mod $module {
            resource_tests!(@cases $resource:
                create_with_every_field_and_get_back,
                minimal_create_defaults_and_omits_unset_fields,
                ids_are_decimal_strings_and_increase,
                unknown_or_malformed_ids,
                create_validation_errors,
                duplicate_name_or_external_id_conflicts,
                patch_merge_semantics,
                patch_rejects_read_only_unknown_and_invalid_fields,
                find_by_name_and_external_id,
                listed_in_id_order,
                last_update_time_strictly_increases_on_rapid_patches
                $(, $extra)*
            );
        }
    };
    (@cases $resource:ident: $($case:ident),*) => {
        $(#[tokio::test]
        async fn $case() {
            super::$case(&super::$resource).await
        })*
    };
}

resource_tests!(registered_models: REGISTERED_MODELS);
resource_tests!(model_versions: MODEL_VERSIONS + parent_and_reference_errors);
resource_tests!(serving_environments: SERVING_ENVIRONMENTS);
resource_tests!(inference_services: INFERENCE_SERVICES + parent_and_reference_errors);
resource_tests!(experiments: EXPERIMENTS);
resource_tests!(experiment_runs: EXPERIMENT_RUNS + parent_and_reference_errors);
