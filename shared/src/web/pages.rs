//! The pages (see the module above): each reads what it shows in a pinned
//! number of store calls (no call per row, but the models page's latest
//! versions: one Query per model on the page, at once).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery, State};
use maud::{Markup, html};

use super::chart::bar_chart;
use super::{Page, PageError, WebState, bad_request, layout, who};
use crate::api::guard::Identity;
use crate::domain::access::Permission;
use crate::domain::entity::{APPROVAL_PROPERTY, Entity, Family, Kind, parse_id};
use crate::domain::governance::AuditQuery;
use crate::domain::paging::{ListParams, OrderBy, RawListParams, decode_token, encode_token};
use crate::domain::registry::{Narrow, Scope};
use crate::domain::value::MetadataValue;

/// The query string, decoded (repeated keys kept in order).
pub(super) struct Args(Vec<(String, String)>);

impl Args {
    pub(super) fn parse(raw: Option<String>) -> Result<Args, PageError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
            .map(Args)
            .map_err(|e| bad_request(format!("invalid query string: {e}")))
    }
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
    }
    fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// This query string with `key` set to `value` (for pager links).
    fn with(&self, key: &str, value: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .0
            .iter()
            .filter(|(k, _)| k != key)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push((key, value));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// Epoch ms as `2026-11-30 19:50`.
fn when(ms: u64) -> String {
    let t = crate::domain::rfc3339(ms);
    format!("{} {}", &t[..10], &t[11..16])
}

fn text(v: &MetadataValue) -> String {
    match v {
        MetadataValue::String(s) if s.is_empty() => "(label)".into(),
        MetadataValue::String(s) => s.clone(),
        MetadataValue::Int(i) => i.to_string(),
        MetadataValue::Double(d) => format!("{d}"),
        MetadataValue::Bool(b) => b.to_string(),
        MetadataValue::Struct(_) => "(struct)".into(),
    }
}

fn number(v: &MetadataValue) -> Option<f64> {
    match v {
        MetadataValue::Int(i) => Some(*i as f64),
        MetadataValue::Double(d) if d.is_finite() => Some(*d),
        _ => None,
    }
}

fn field<'a>(e: &'a Entity, name: &str) -> &'a str {
    e.text(name).unwrap_or("")
}

fn approval_of(v: &Entity) -> Option<String> {
    match v.custom.get(APPROVAL_PROPERTY) {
        Some(MetadataValue::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn approval_badge(state: Option<&str>) -> Markup {
    html! {
        @match state {
            Some(s) => span class={"badge " (s)} { (s) },
            None => span.muted { "—" },
        }
    }
}

/// A string for a filterQuery `LIKE` pattern: quotes doubled, pattern
/// characters literal.
fn like_literal(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\\\\\"),
            '%' | '_' => {
                out.push_str("\\\\");
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `/ui/`: models, searched by name, label and filterQuery, sorted, paged;
/// each with its latest version, its aliases and that version's approval.
pub async fn models(State(s): State<WebState>, id: Identity, RawQuery(q): RawQuery) -> Page {
    let args = Args::parse(q)?;
    let mut filters = Vec::new();
    if let Some(name) = args.get("q") {
        filters.push(format!("name ILIKE '%{}%'", like_literal(name)));
    }
    if let Some(label) = args.get("label") {
        if label.contains('`') {
            return Err(bad_request("a label may not contain a backquote"));
        }
        filters.push(format!("`{label}`.string_value = ''"));
    }
    if let Some(f) = args.get("filter") {
        filters.push(format!("({f})"));
    }
    let filter = filters.join(" AND ");
    let size = args.get("pageSize").unwrap_or("20");
    let sort = args.get("sort").unwrap_or("LAST_UPDATE_TIME");
    let order = args.get("order").unwrap_or("DESC");
    let params = ListParams::parse(
        &RawListParams {
            page_size: Some(size),
            order_by: Some(sort),
            sort_order: Some(order),
            next_page_token: args.get("token"),
            filter_query: (!filter.is_empty()).then_some(filter.as_str()),
        },
        true,
    )?;
    let page_size = params.page_size.clamp(1, 100);
    let params = ListParams {
        page_size,
        ..params
    };
    let page = s
        .registry
        .list(
            Family::RegisteredModel,
            Scope::All,
            &Narrow::default(),
            &params,
        )
        .await?;
    let mut rows = Vec::new();
    for m in page.items {
        if id.may_read(&s.owners, &m).await? {
            rows.push(m);
        }
    }
    let latest = s
        .registry
        .latest_versions(&rows.iter().map(|m| m.id).collect::<Vec<_>>())
        .await?;
    let body = html! {
        h1 { "Models" }
        form.filters method="get" action="/ui/" role="search" {
            label { "Name contains" input type="search" name="q" value=[args.get("q")]; }
            label { "Label" input type="text" name="label" value=[args.get("label")]; }
            label { "filterQuery" input.mono type="text" name="filter" size="30" value=[args.get("filter")] placeholder="state = 'LIVE'"; }
            label { "Sort by"
                select name="sort" {
                    @for (v, t) in [("LAST_UPDATE_TIME", "Last update"), ("CREATE_TIME", "Created"), ("NAME", "Name"), ("ID", "Id")] {
                        option value=(v) selected[sort == v] { (t) }
                    }
                }
            }
            label { "Order"
                select name="order" {
                    option value="DESC" selected[order == "DESC"] { "Descending" }
                    option value="ASC" selected[order == "ASC"] { "Ascending" }
                }
            }
            button type="submit" { "Search" }
        }
        @if rows.is_empty() && filter.is_empty() && args.get("token").is_none() {
            p { "No model is registered yet. From Python, with the upstream client (" code { "pip install model-registry" } "):" }
            pre.snippet tabindex="0" { code { (FIRST_MODEL) } }
            p.muted { "It appears here at once; its version page shows its artifacts, approval and how to deploy it." }
        } @else if rows.is_empty() {
            p.muted { "No model matches." }
        } @else {
            div.table-wrap {
                table {
                    caption.muted { (rows.len()) @if rows.len() == 1 { " model" } @else { " models" } " on this page" }
                    thead { tr { th { "Name" } th { "Latest version" } th { "Approval" } th { "Aliases" } th { "Updated" } } }
                    tbody {
                        @for (m, v) in rows.iter().zip(&latest) {
                            tr {
                                td {
                                    a href={"/ui/models/" (m.id)} { (m.name) }
                                    @if !field(m, "description").is_empty() { br; span.muted { (field(m, "description")) } }
                                }
                                td { @if let Some(v) = v { a href={"/ui/versions/" (v.id)} { (v.name) } } @else { span.muted { "none" } } }
                                td { (approval_badge(v.as_ref().and_then(approval_of).as_deref())) }
                                td { @for (alias, vid) in &m.gov.aliases { a.badge.alias href={"/ui/versions/" (vid)} { (alias) } } }
                                td { (when(m.update_ms)) }
                            }
                        }
                    }
                }
            }
        }
        @if !page.next_page_token.is_empty() {
            p.pager { a href={"/ui/?" (args.with("token", &page.next_page_token))} rel="next" { "Next page →" } }
        }
    };
    Ok(layout("Models", Some(&who(&s, &id)), body))
}

/// What the empty models page suggests (the README's first example).
const FIRST_MODEL: &str = r#"from model_registry import ModelRegistry

# this registry's address; add user_token=... where it asks for one
registry = ModelRegistry("http://localhost", port=8080, author="ada", is_secure=False)
registry.register_model(
    "mnist",
    "s3://models/mnist/1",
    version="1.0.0",
    model_format_name="onnx",
    model_format_version="1",
    metadata={"accuracy": 0.98},
)"#;

/// Numeric custom properties of the versions, most common first (at most
/// `limit`): the default metric columns.
fn metric_columns(versions: &[Entity], limit: usize) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in versions {
        for (k, value) in &v.custom {
            if number(value).is_some() {
                *counts.entry(k).or_default() += 1;
            }
        }
    }
    let mut keys: Vec<(&str, usize)> = counts.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    keys.into_iter()
        .take(limit)
        .map(|(k, _)| k.to_string())
        .collect()
}

fn facts(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows { dt { (k) } dd { (v) } }
        }
    }
}

fn custom_table(e: &Entity) -> Markup {
    html! {
        @if e.custom.is_empty() {
            p.muted { "None." }
        } @else {
            div.table-wrap { table {
                thead { tr { th { "Property" } th { "Value" } } }
                tbody { @for (k, v) in &e.custom { tr { td.mono { (k) } td { (text(v)) } } } }
            } }
        }
    }
}

/// `/ui/models/{id}`: the model and its versions (newest first, paged),
/// with metric columns, state, aliases, approval, author and dates; pick
/// versions to compare. Three store calls: the model, a Query and a
/// BatchGetItem of the page.
pub async fn model(
    State(s): State<WebState>,
    id: Identity,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Page {
    let mid = parse_id("id", &raw)?;
    let m = s.registry.get(Family::RegisteredModel, None, mid).await?;
    id.check(&s.owners, Permission::Read, &m).await?;
    let args = Args::parse(q)?;
    let params = ListParams::parse(
        &RawListParams {
            page_size: Some(args.get("pageSize").unwrap_or("50")),
            order_by: Some("ID"),
            sort_order: Some("DESC"),
            next_page_token: args.get("token"),
            filter_query: args.get("filter"),
        },
        true,
    )?;
    let params = ListParams {
        page_size: params.page_size.clamp(1, 200),
        ..params
    };
    let page = s
        .registry
        .list(
            Family::ModelVersion,
            Scope::Parent(mid),
            &Narrow::default(),
            &params,
        )
        .await?;
    let columns: Vec<String> = match args.get("columns") {
        Some(c) => c
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .take(20)
            .map(str::to_string)
            .collect(),
        None => metric_columns(&page.items, 6),
    };
    let mut aliases_of: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (alias, v) in &m.gov.aliases {
        aliases_of.entry(*v).or_default().push(alias);
    }
    let policy = m.gov.policy.as_ref();
    let may_write = id.access.allows(Permission::Write, Some(&m.name));
    let body = html! {
        p.muted { a href="/ui/" { "Models" } " / " (m.name) }
        h1 { (m.name) }
        (facts(&[
            ("Description", html! { (field(&m, "description")) }),
            ("State", html! { (field(&m, "state")) }),
            ("Owner", html! { (field(&m, "owner")) }),
            ("Created", html! { (when(m.create_ms)) }),
            ("Updated", html! { (when(m.update_ms)) }),
            ("Aliases", html! { @for (alias, v) in &m.gov.aliases { a.badge.alias href={"/ui/versions/" (v)} { (alias) " → " (v) } } }),
            ("Approval policy", html! {
                @if let Some(p) = policy {
                    (p.required_approvals) " approvals"
                    @for g in &p.gates { ", gate " code { (g) } }
                    @if !p.protected_aliases.is_empty() { ", protects " (p.protected_aliases.join(", ")) }
                } @else { span.muted { "none (one approval, no gate)" } }
            }),
        ]))
        h2 { "Versions" }
        form.filters method="get" action={"/ui/models/" (mid)} {
            label { "Metric columns (comma-separated)" input.mono type="text" name="columns" size="40" value=(columns.join(",")); }
            label { "filterQuery" input.mono type="text" name="filter" size="30" value=[args.get("filter")]; }
            button type="submit" { "Show" }
        }
        form method="get" action="/ui/compare" {
            div.table-wrap { table {
                thead { tr {
                    th { span.muted { "Compare" } }
                    th { "Version" } th { "State" } th { "Aliases" } th { "Approval" } th { "Author" } th { "Created" } th { "Updated" }
                    @for c in &columns { th.num { (c) } }
                } }
                tbody {
                    @for v in &page.items {
                        tr {
                            td { input type="checkbox" name="versions" value=(v.id) id={"pick-" (v.id)} aria-label={"Compare " (v.name)}; }
                            td { a href={"/ui/versions/" (v.id)} { (v.name) } }
                            td { (field(v, "state")) }
                            td { @for a in aliases_of.get(&v.id).into_iter().flatten() { span.badge.alias { (a) } } }
                            td { (approval_badge(approval_of(v).as_deref())) }
                            td { (field(v, "author")) }
                            td { (when(v.create_ms)) }
                            td { (when(v.update_ms)) }
                            @for c in &columns { td.num { @if let Some(x) = v.custom.get(c) { (text(x)) } } }
                        }
                    }
                }
            } }
            @if page.items.is_empty() { p.muted { "No versions." } }
            p { button type="submit" { "Compare selected versions" } " " span.muted { "(2 to 10)" } }
        }
        @if !page.next_page_token.is_empty() {
            p.pager { a href={"/ui/models/" (mid) "?" (args.with("token", &page.next_page_token))} rel="next" { "Older versions →" } }
        }
        @if may_write && !page.items.is_empty() {
            h2 { "Move an alias" }
            form.filters method="post" action={"/ui/models/" (mid) "/aliases"} {
                input type="hidden" name="csrf" value=(super::csrf::token(&id.caller.user));
                label { "Alias" input type="text" name="alias" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,62}" list="aliases"; }
                datalist id="aliases" { @for a in m.gov.aliases.keys() { option value=(a) {} } }
                label { "Version"
                    select name="version" { @for v in &page.items { option value=(v.id) { (v.name) } } }
                }
                button type="submit" { "Point the alias at it" }
                button type="submit" name="remove" value="1" formnovalidate { "Remove the alias" }
            }
        }
    };
    Ok(layout(&m.name, Some(&who(&s, &id)), body))
}

/// A KServe InferenceService (YAML) serving version `v` of model `m` by
/// `model-registry://<model>/<version>`, with the format of its first model
/// artifact that names one; each alias pointing at it as the alternative
/// that follows the alias. Names and values are YAML double-quoted strings
/// (JSON's), so nothing in them can change the document's shape.
fn deploy_snippet(m: &Entity, v: &Entity, files: &[Entity], aliases: &[&String]) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let format = files
        .iter()
        .find(|a| a.kind == Kind::ModelArtifact && !field(a, "modelFormatName").is_empty());
    let mut out = format!(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: {}\nspec:\n  predictor:\n    model:\n      modelFormat:\n",
        dns_label(&m.name)
    );
    match format {
        Some(a) => {
            out += &format!("        name: {}\n", quoted(field(a, "modelFormatName")));
            let version = field(a, "modelFormatVersion");
            if !version.is_empty() {
                out += &format!("        version: {}\n", quoted(version));
            }
        }
        None => out += "        name: \"\"  # no model artifact names its format: set it\n",
    }
    out += &format!(
        "      storageUri: {}\n",
        quoted(&format!("model-registry://{}/{}", m.name, v.name))
    );
    for alias in aliases {
        out += &format!(
            "      # or follow the alias: storageUri: {}\n",
            quoted(&format!("model-registry://{}/@{alias}", m.name))
        );
    }
    out
}

/// A Kubernetes name (DNS-1123 label) from a model's name: lower case,
/// letters, digits and `-`, at most 63, never empty.
fn dns_label(name: &str) -> String {
    let mut mapped = String::new();
    for c in name.chars() {
        match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => mapped.push(c),
            _ if !mapped.ends_with('-') => mapped.push('-'),
            _ => {}
        }
    }
    let mut label: String = mapped.trim_matches('-').chars().take(63).collect();
    while label.ends_with('-') {
        label.pop();
    }
    if label.is_empty() {
        "model".into()
    } else {
        label
    }
}

fn artifact_rows(artifacts: &[Entity]) -> Markup {
    html! {
        @if artifacts.is_empty() { p.muted { "None." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Type" } th { "URI" } th { "Format" } th { "State" } th { "Updated" } } }
                tbody { @for a in artifacts {
                    tr {
                        td { (a.name) }
                        td { (a.kind.artifact_type().unwrap_or("")) }
                        td.mono { (field(a, "uri")) }
                        td { (field(a, "modelFormatName")) " " (field(a, "modelFormatVersion")) }
                        td { (field(a, "state")) }
                        td { (when(a.update_ms)) }
                    }
                } }
            } }
        }
    }
}

fn value_of(a: &Entity) -> String {
    match a.fields.get("value") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) if !v.is_null() => v.to_string(),
        _ => String::new(),
    }
}

/// `/ui/versions/{id}`: a version's artifacts, metrics and parameters,
/// properties, approval, lineage, deployments, usage and history.
pub async fn version(State(s): State<WebState>, id: Identity, Path(raw): Path<String>) -> Page {
    let vid = parse_id("id", &raw)?;
    let v = s.registry.get(Family::ModelVersion, None, vid).await?;
    id.check(&s.owners, Permission::Read, &v).await?;
    let (lineage, usage, history) = tokio::try_join!(
        s.registry.lineage_of(v.clone()),
        s.registry.usage(Some(vid), None, None, 20),
        s.registry.history(Family::ModelVersion, vid, None, 20),
    )?;
    let m = &lineage.model;
    // Its gates judged on the artifacts just read, when they are all there.
    let all = (!lineage.artifacts_cut).then_some(&lineage.artifacts[..]);
    let approval = s.registry.approval_from(m, &v, all).await?;
    // The form shows only to callers who may use it (four eyes included).
    let may_decide = id.access.allows(Permission::Approve, Some(&m.name))
        && approval.author.as_deref() != Some(id.caller.user.as_str());
    let aliases: Vec<&String> = m
        .gov
        .aliases
        .iter()
        .filter(|(_, x)| **x == vid)
        .map(|(a, _)| a)
        .collect();
    let (measures, files): (Vec<Entity>, Vec<Entity>) = lineage
        .artifacts
        .iter()
        .cloned()
        .partition(|a| matches!(a.kind, Kind::Metric | Kind::Parameter));
    let body = html! {
        p.muted { a href="/ui/" { "Models" } " / " a href={"/ui/models/" (m.id)} { (m.name) } " / " (v.name) }
        h1 { (m.name) " " (v.name) }
        (facts(&[
            ("Description", html! { (field(&v, "description")) }),
            ("State", html! { (field(&v, "state")) }),
            ("Author", html! { (field(&v, "author")) }),
            ("Aliases", html! { @for a in &aliases { span.badge.alias { (a) } } }),
            ("Approval", approval_badge(Some(approval.state.wire()))),
            ("Created", html! { (when(v.create_ms)) }),
            ("Updated", html! { (when(v.update_ms)) }),
        ]))
        h2 { "Artifacts" }
        (artifact_rows(&files))
        h2 { "Metrics and parameters" }
        @if measures.is_empty() { p.muted { "None logged as artifacts; see the properties below." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Kind" } th.num { "Value" } } }
                tbody { @for a in &measures { tr { td { (a.name) } td { (a.kind.artifact_type().unwrap_or("")) } td.num { (value_of(a)) } } } }
            } }
        }
        h2 { "Properties" }
        (custom_table(&v))
        h2 { "Approval" }
        p { (approval_badge(Some(approval.state.wire()))) " " (approval.required) " approvals required"
            @if let Some(a) = &approval.author { "; written by " (a) " (who may not approve it)" } }
        @if !approval.votes.is_empty() {
            div.table-wrap { table {
                thead { tr { th { "Approver" } th { "Decision" } th { "Comment" } th { "When" } } }
                tbody { @for d in &approval.votes { tr { td { (d.actor) } td { (format!("{:?}", d.decision).to_uppercase()) } td { (d.comment) } td { (when(d.at_ms)) } } } }
            } }
        }
        @if !approval.gates.is_empty() {
            ul { @for (g, passed) in &approval.gates { li { code { (g) } ": " @if *passed { "passes" } @else { strong { "fails" } } } } }
        }
        @if may_decide {
            form method="post" action={"/ui/versions/" (vid) "/decision"} {
                input type="hidden" name="csrf" value=(super::csrf::token(&id.caller.user));
                fieldset {
                    legend { "Your decision" }
                    label { input type="radio" name="decision" value="APPROVE" required; " Approve" } " "
                    label { input type="radio" name="decision" value="REJECT"; " Reject" }
                    p { label { "Comment " br; textarea name="comment" rows="2" cols="50" maxlength="2000" {} } }
                    button type="submit" { "Record decision" }
                }
            }
        }
        h2 { "Deploy" }
        p { "A KServe InferenceService that serves this version (through the model registry's storage initializer):" }
        pre.snippet tabindex="0" { code { (deploy_snippet(m, &v, &files, &aliases)) } }
        h2 { "Lineage" }
        @if lineage.runs.is_empty() && lineage.datasets().is_empty() { p.muted { "No run or dataset recorded." } }
        @for r in &lineage.runs {
            h3 { "Run " (r.run.name) @if let Some(e) = &r.experiment { " of experiment " (e.name) } }
            (artifact_rows(&r.artifacts))
        }
        @let datasets = lineage.datasets();
        @if !datasets.is_empty() {
            h3 { "Datasets" }
            ul { @for d in datasets { li { (d.name) " " span.mono { (field(d, "uri")) } } } }
        }
        h2 { "Deployments" }
        @if lineage.serving.is_empty() { p.muted { "Not served." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Inference service" } th { "Environment" } th { "State" } th { "How" } } }
                tbody { @for sv in &lineage.serving { tr {
                    td { (sv.inference_service.name) }
                    td { @if let Some(e) = &sv.serving_environment { (e.name) } }
                    td { (field(&sv.inference_service, "desiredState")) }
                    td { @if sv.pinned { "this version" } @else { "the model's latest" } }
                } } }
            } }
        }
        h2 { "Who used it" }
        @if usage.items.is_empty() { p.muted { "No reads recorded." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Caller" } th { "Day" } th { "First" } th { "Last" } th.num { "Reads (at least)" } } }
                tbody { @for u in &usage.items { tr {
                    td { a href={"/ui/usage?" (serde_urlencoded::to_string([("actor", u.actor.as_str())]).unwrap_or_default())} { (u.actor) } } td { (crate::domain::civil_date(u.day)) } td { (when(u.first_ms)) } td { (when(u.last_ms)) } td.num { (u.count) }
                } } }
            } }
        }
        h2 { "History" }
        div.table-wrap { table {
            thead { tr { th { "Revision" } th { "When" } th { "Who" } th { "What" } th { "Changed" } } }
            tbody { @for h in &history.0 { tr {
                td.num { (h.record.revision) @if !h.applied { " (did not happen)" } }
                td { (when(h.record.at_ms)) }
                td { (h.record.actor) }
                td { (h.record.action.wire()) }
                td { @for c in &h.record.changes { code { (c.field) } " " } }
            } } }
        } }
    };
    Ok(layout(
        &format!("{} {}", m.name, v.name),
        Some(&who(&s, &id)),
        body,
    ))
}

/// The versions a compare page shows: `versions=1,2,3` or repeated.
fn picked(args: &Args) -> Result<Vec<u64>, PageError> {
    let mut ids = Vec::new();
    for raw in args.all("versions") {
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let id = parse_id("versions", part)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if !(2..=10).contains(&ids.len()) {
        return Err(bad_request(format!(
            "compare 2 to 10 versions ({} given): /ui/compare?versions=1,2,3",
            ids.len()
        )));
    }
    Ok(ids)
}

/// `/ui/compare?versions=1,2,3`: metrics and parameters side by side,
/// differences highlighted, a chart per numeric metric (one bar per
/// version).
pub async fn compare(State(s): State<WebState>, id: Identity, RawQuery(q): RawQuery) -> Page {
    let args = Args::parse(q)?;
    let ids = picked(&args)?;
    let found = s.registry.get_many(Family::ModelVersion, &ids).await?;
    let mut versions = Vec::new();
    for (vid, v) in ids.iter().zip(found) {
        let v = v.ok_or_else(|| {
            PageError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("model version {vid} not found"),
            )
        })?;
        id.check(&s.owners, Permission::Read, &v).await?;
        versions.push(v);
    }
    let models: Vec<u64> = versions.iter().filter_map(|v| v.parent).collect();
    let models = s
        .registry
        .get_many(Family::RegisteredModel, &models)
        .await?;
    let label = |i: usize| -> String {
        let model = models
            .get(i)
            .and_then(|m| m.as_ref())
            .map_or("?", |m| m.name.as_str());
        format!("{model} {}", versions[i].name)
    };
    // Every property of any version, and its value in each.
    let keys: BTreeSet<&String> = versions
        .iter()
        .flat_map(|v| v.custom.keys())
        .filter(|k| k.as_str() != APPROVAL_PROPERTY)
        .collect();
    let rows: Vec<(&String, Vec<Option<&MetadataValue>>)> = keys
        .into_iter()
        .map(|k| (k, versions.iter().map(|v| v.custom.get(k)).collect()))
        .collect();
    let charts: Vec<Markup> = rows
        .iter()
        .filter(|(_, vals)| vals.iter().flatten().any(|v| number(v).is_some()))
        .take(24)
        .map(|(k, vals)| {
            let bars: Vec<(String, Option<f64>)> = vals
                .iter()
                .enumerate()
                .map(|(i, v)| (label(i), v.and_then(number)))
                .collect();
            bar_chart(k, &bars)
        })
        .collect();
    let labels: Vec<String> = (0..versions.len()).map(label).collect();
    let histories = run_histories(&s, &versions, &labels).await?;
    let body = html! {
        h1 { "Compare " (versions.len()) " versions" }
        div.table-wrap { table {
            thead { tr { th { "Property" } @for i in 0..versions.len() { th { a href={"/ui/versions/" (versions[i].id)} { (label(i)) } } } } }
            tbody {
                tr { td { "State" } @for v in &versions { td { (field(v, "state")) } } }
                tr { td { "Approval" } @for v in &versions { td { (approval_badge(approval_of(v).as_deref())) } } }
                tr { td { "Created" } @for v in &versions { td { (when(v.create_ms)) } } }
                @for (k, vals) in &rows {
                    @let differs = vals.windows(2).any(|w| w[0] != w[1]);
                    tr class=[differs.then_some("diff")] {
                        td.mono { (k) @if differs { span.muted { " (differs)" } } }
                        @for v in vals { td.num { @if let Some(v) = v { (text(v)) } @else { span.muted { "—" } } } }
                    }
                }
            }
        } }
        h2 { "Charts" }
        @if charts.is_empty() { p.muted { "No numeric property to chart." } }
        div.charts { @for c in &charts { (c) } }
        @if !histories.is_empty() {
            h2 { "Metric histories of the runs that produced them" }
            div.charts { @for c in &histories { (c) } }
        }
    };
    Ok(layout("Compare versions", Some(&who(&s, &id)), body))
}

/// For versions produced by runs (an artifact names its `experimentRunId`),
/// each metric the runs logged over steps as one line chart, a line per
/// version: a Query of each version's artifacts, and of each run's history.
async fn run_histories(
    s: &WebState,
    versions: &[Entity],
    labels: &[String],
) -> Result<Vec<Markup>, PageError> {
    let all = Narrow::default();
    let artifacts = futures_util::future::try_join_all(
        versions
            .iter()
            .map(|v| recent(s, Family::Artifact, Scope::Parent(v.id), &all, 100, None)),
    )
    .await?;
    let runs: Vec<Option<u64>> = artifacts
        .iter()
        .map(|page| {
            page.items
                .iter()
                .find_map(|a| a.reference(crate::domain::entity::fields::EXPERIMENT_RUN_ID))
        })
        .collect();
    let params = ListParams::parse(
        &RawListParams {
            page_size: Some("2000"),
            ..RawListParams::default()
        },
        true,
    )?;
    let histories = futures_util::future::try_join_all(runs.iter().map(|run| {
        let params = params.clone();
        async move {
            match run {
                Some(r) => s
                    .registry
                    .list(
                        Family::MetricHistory,
                        Scope::Parent(*r),
                        &Narrow::default(),
                        &params,
                    )
                    .await
                    .map(|p| p.items),
                None => Ok(Vec::new()),
            }
        }
    }))
    .await?;
    let mut metrics: BTreeMap<String, Vec<super::chart::Series>> = BTreeMap::new();
    for (i, points) in histories.iter().enumerate() {
        let mut by_name: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
        for h in points {
            if let (Some(step), Some(v)) = (
                h.step(),
                h.fields.get("value").and_then(serde_json::Value::as_f64),
            ) {
                by_name.entry(&h.name).or_default().push((step as f64, v));
            }
        }
        for (name, mut p) in by_name {
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            metrics
                .entry(name.to_string())
                .or_default()
                .push((labels[i].clone(), p));
        }
    }
    Ok(metrics
        .iter()
        .take(12)
        .map(|(name, series)| super::chart::line_chart(name, series))
        .collect())
}

/// The audit query a page's (or an export's) filters ask for, after
/// checking the caller may read the one entity it names.
async fn audit_query(
    s: &WebState,
    id: &Identity,
    args: &Args,
    page_size: usize,
) -> Result<AuditQuery, PageError> {
    let families = crate::store::layout::FAMILY_ORDER;
    let family = match args.get("entityType") {
        None => None,
        Some(t) => Some(
            families
                .into_iter()
                .find(|f| crate::api::extension::entity_type(*f) == t)
                .ok_or_else(|| bad_request(format!("unknown entity type '{t}'")))?,
        ),
    };
    let entity = match (family, args.get("entityId")) {
        (Some(f), Some(e)) => Some((f, parse_id("entityId", e)?)),
        (None, Some(_)) => return Err(bad_request("an entity id needs its type")),
        _ => None,
    };
    if let Some((f, e)) = entity {
        let e = s.registry.get(f, None, e).await?;
        id.check(&s.owners, Permission::Read, &e).await?;
    }
    let day = |key: &str, end: bool| -> Result<Option<u64>, PageError> {
        let Some(d) = args.get(key) else {
            return Ok(None);
        };
        let days = parse_day(d)
            .ok_or_else(|| bad_request(format!("{key}: '{d}' is not a date (YYYY-MM-DD)")))?;
        Ok(Some(days * 86_400_000 + if end { 86_399_999 } else { 0 }))
    };
    let after = match args.get("token") {
        Some(t) => Some(decode_token(t, OrderBy::CreateTime, true)?),
        None => None,
    };
    Ok(AuditQuery {
        entity,
        family,
        actor: args.get("actor").map(str::to_string),
        since_ms: day("since", false)?,
        until_ms: day("until", true)?,
        page_size,
        after,
    })
}

/// Most records one export holds.
const EXPORT_MAX: usize = 5_000;
/// Most audit pages (each scanning at most the audit's own limit) and time
/// one export reads.
const EXPORT_PAGES: usize = 10;
const EXPORT_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// `/ui/audit.csv?<the audit page's filters>`: the records, newest first,
/// as CSV for a spreadsheet (at most [`EXPORT_MAX`]; narrow the dates for
/// more). Cells that a spreadsheet would run as a formula are quoted with
/// a leading `'`.
pub async fn audit_csv(
    State(s): State<WebState>,
    id: Identity,
    RawQuery(q): RawQuery,
) -> Result<axum::response::Response, PageError> {
    use std::fmt::Write as _;
    let args = Args::parse(q)?;
    let mut query = audit_query(&s, &id, &args, 1_000).await?;
    let mut out = String::from(
        "time,actor,action,applied,entity_type,entity_id,entity_name,revision,changed\r\n",
    );
    let mut rows = 0;
    let mut more = false;
    // Bounded in work too: a caller who may read few of many records
    // would otherwise have the whole ledger read for them.
    let deadline = std::time::Instant::now() + EXPORT_TIME;
    let mut pages = 0;
    'pages: loop {
        if pages == EXPORT_PAGES || std::time::Instant::now() > deadline {
            more = true;
            break;
        }
        pages += 1;
        let answer = s.registry.audit(&query).await?;
        for h in answer.items {
            if rows == EXPORT_MAX {
                more = true;
                break 'pages;
            }
            let r = &h.record;
            if query.entity.is_none() && !id.may_read(&s.owners, &r.entity).await? {
                continue;
            }
            let changed: Vec<&str> = r.changes.iter().map(|c| c.field.as_str()).collect();
            let cells = [
                crate::domain::rfc3339(r.at_ms),
                r.actor.clone(),
                r.action.wire().to_string(),
                h.applied.to_string(),
                crate::api::extension::entity_type(r.entity.kind.family()).to_string(),
                r.entity.id.to_string(),
                r.entity.name.clone(),
                r.revision.to_string(),
                changed.join(" "),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            let _ = write!(out, "{}\r\n", line.join(","));
            rows += 1;
        }
        match answer.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let mut response = axum::response::IntoResponse::into_response(out);
    let h = response.headers_mut();
    use axum::http::{HeaderValue, header};
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"audit.csv\""),
    );
    if more {
        // The export stopped at its limit: say so where a script looks.
        h.insert("x-truncated", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, quote or line
/// break; a leading `=`, `+`, `-`, `@`, tab or carriage return (a formula
/// to a spreadsheet) behind a `'`.
fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// `/ui/audit`: the ledger, newest first, by entity, actor and time.
pub async fn audit(State(s): State<WebState>, id: Identity, RawQuery(q): RawQuery) -> Page {
    let args = Args::parse(q)?;
    let families = crate::store::layout::FAMILY_ORDER;
    let query = audit_query(&s, &id, &args, 50).await?;
    let entity = query.entity;
    let answer = s.registry.audit(&query).await?;
    let mut shown = Vec::new();
    let mut hidden = 0;
    for h in answer.items {
        if entity.is_some() || id.may_read(&s.owners, &h.record.entity).await? {
            shown.push(h);
        } else {
            hidden += 1;
        }
    }
    let link = |f: Family, e: &Entity| -> Option<String> {
        match f {
            Family::RegisteredModel => Some(format!("/ui/models/{}", e.id)),
            Family::ModelVersion => Some(format!("/ui/versions/{}", e.id)),
            _ => None,
        }
    };
    let selected = args.get("entityType").unwrap_or("");
    let body = html! {
        h1 { "Audit" }
        form.filters method="get" action="/ui/audit" {
            label { "Entity type"
                select name="entityType" {
                    option value="" { "any" }
                    @for f in families { @let t = crate::api::extension::entity_type(f); option value=(t) selected[selected == t] { (t) } }
                }
            }
            label { "Entity id" input type="text" name="entityId" size="8" inputmode="numeric" value=[args.get("entityId")]; }
            label { "Actor" input type="text" name="actor" value=[args.get("actor")]; }
            label { "Since" input type="date" name="since" value=[args.get("since")]; }
            label { "Until" input type="date" name="until" value=[args.get("until")]; }
            button type="submit" { "Filter" }
        }
        p { a href={"/ui/audit.csv?" (args.with("token", ""))} download="audit.csv" { "Download these records as CSV" } " (up to 5,000, newest first)" }
        @if hidden > 0 { p.muted { (hidden) " records of entities you may not read are left out." } }
        div.table-wrap { table {
            thead { tr { th { "When" } th { "Who" } th { "What" } th { "Entity" } th.num { "Revision" } th { "Changed" } } }
            tbody { @for h in &shown {
                @let r = &h.record;
                @let f = r.entity.kind.family();
                tr {
                    td { (when(r.at_ms)) }
                    td { (r.actor) }
                    td { (r.action.wire()) @if !h.applied { " (did not happen)" } }
                    td { (crate::api::extension::entity_type(f)) " "
                        @if let Some(l) = link(f, &r.entity) { a href=(l) { (r.entity.name) } } @else { (r.entity.name) } }
                    td.num { (r.revision) }
                    td { @for c in r.changes.iter().take(6) { code { (c.field) } " " } }
                }
            } }
        } }
        @if shown.is_empty() { p.muted { "No record matches." } }
        @if let Some(next) = &answer.next {
            p.pager { a href={"/ui/audit?" (args.with("token", &encode_token(next, OrderBy::CreateTime, true)))} rel="next" { "Older records →" } }
        }
    };
    Ok(layout("Audit", Some(&who(&s, &id)), body))
}

/// Days since the epoch of `YYYY-MM-DD`.
fn parse_day(s: &str) -> Option<u64> {
    let mut parts = s.split('-');
    let (y, m, d): (i64, i64, i64) = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    if parts.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(1970..=9999).contains(&y)
    {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let days = u64::try_from(days).ok()?;
    (crate::domain::civil_date(days) == s).then_some(days)
}

/// A page of `family` (all, or the children of `parent`), newest first.
async fn recent(
    s: &WebState,
    family: Family,
    scope: Scope,
    narrow: &Narrow,
    size: usize,
    token: Option<&str>,
) -> Result<crate::domain::registry::ListPage, PageError> {
    let params = ListParams::parse(
        &RawListParams {
            page_size: Some(&size.to_string()),
            order_by: Some("ID"),
            sort_order: Some("DESC"),
            next_page_token: token,
            filter_query: None,
        },
        true,
    )?;
    Ok(s.registry.list(family, scope, narrow, &params).await?)
}

/// `/ui/experiments`: experiments, newest first.
pub async fn experiments(State(s): State<WebState>, id: Identity, RawQuery(q): RawQuery) -> Page {
    let args = Args::parse(q)?;
    let page = recent(
        &s,
        Family::Experiment,
        Scope::All,
        &Narrow::default(),
        50,
        args.get("token"),
    )
    .await?;
    let mut rows = Vec::new();
    for e in page.items {
        if id.may_read(&s.owners, &e).await? {
            rows.push(e);
        }
    }
    let body = html! {
        h1 { "Experiments" }
        @if rows.is_empty() { p.muted { "No experiments." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Owner" } th { "State" } th { "Created" } } }
                tbody { @for e in &rows { tr {
                    td { a href={"/ui/experiments/" (e.id)} { (e.name) } @if !field(e, "description").is_empty() { br; span.muted { (field(e, "description")) } } }
                    td { (field(e, "owner")) } td { (field(e, "state")) } td { (when(e.create_ms)) }
                } } }
            } }
        }
        @if !page.next_page_token.is_empty() {
            p.pager { a href={"/ui/experiments?" (args.with("token", &page.next_page_token))} rel="next" { "Older experiments →" } }
        }
    };
    Ok(layout("Experiments", Some(&who(&s, &id)), body))
}

/// `/ui/experiments/{id}`: an experiment's runs, newest first, with their
/// numeric properties as columns.
pub async fn experiment(
    State(s): State<WebState>,
    id: Identity,
    Path(raw): Path<String>,
    RawQuery(q): RawQuery,
) -> Page {
    let eid = parse_id("id", &raw)?;
    let e = s.registry.get(Family::Experiment, None, eid).await?;
    id.check(&s.owners, Permission::Read, &e).await?;
    let args = Args::parse(q)?;
    let page = recent(
        &s,
        Family::ExperimentRun,
        Scope::Parent(eid),
        &Narrow::default(),
        50,
        args.get("token"),
    )
    .await?;
    let columns = metric_columns(&page.items, 6);
    let body = html! {
        p.muted { a href="/ui/experiments" { "Experiments" } " / " (e.name) }
        h1 { (e.name) }
        (facts(&[
            ("Description", html! { (field(&e, "description")) }),
            ("Owner", html! { (field(&e, "owner")) }),
            ("Created", html! { (when(e.create_ms)) }),
        ]))
        h2 { "Runs" }
        @if page.items.is_empty() { p.muted { "No runs." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Run" } th { "Status" } th { "Started" } th { "Ended" } @for c in &columns { th.num { (c) } } } }
                tbody { @for r in &page.items { tr {
                    td { a href={"/ui/runs/" (r.id)} { (r.name) } }
                    td { (field(r, "status")) }
                    td { (ms_field(r, "startTimeSinceEpoch")) }
                    td { (ms_field(r, "endTimeSinceEpoch")) }
                    @for c in &columns { td.num { @if let Some(x) = r.custom.get(c) { (text(x)) } } }
                } } }
            } }
        }
        @if !page.next_page_token.is_empty() {
            p.pager { a href={"/ui/experiments/" (eid) "?" (args.with("token", &page.next_page_token))} rel="next" { "Older runs →" } }
        }
    };
    Ok(layout(&e.name, Some(&who(&s, &id)), body))
}

/// An epoch-ms own field as a time.
fn ms_field(e: &Entity, name: &str) -> String {
    e.text(name)
        .and_then(|v| v.parse::<u64>().ok())
        .map(when)
        .unwrap_or_default()
}

/// Most metric history points a run page plots.
const MAX_POINTS: usize = 5_000;

/// `/ui/runs/{id}`: a run's parameters, metrics and artifacts, and each
/// metric's history as a line over steps.
pub async fn run(State(s): State<WebState>, id: Identity, Path(raw): Path<String>) -> Page {
    let rid = parse_id("id", &raw)?;
    let r = s.registry.get(Family::ExperimentRun, None, rid).await?;
    id.check(&s.owners, Permission::Read, &r).await?;
    let experiment = match r.parent {
        Some(p) => s.registry.get(Family::Experiment, None, p).await.ok(),
        None => None,
    };
    let artifacts = recent(
        &s,
        Family::Artifact,
        Scope::Parent(rid),
        &Narrow::default(),
        500,
        None,
    )
    .await?;
    let params = ListParams::parse(
        &RawListParams {
            page_size: Some(&MAX_POINTS.to_string()),
            ..RawListParams::default()
        },
        true,
    )?;
    let history = s
        .registry
        .list(
            Family::MetricHistory,
            Scope::Parent(rid),
            &Narrow::default(),
            &params,
        )
        .await?;
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for h in &history.items {
        let (Some(step), Some(value)) = (
            h.step(),
            h.fields.get("value").and_then(serde_json::Value::as_f64),
        ) else {
            continue;
        };
        series
            .entry(h.name.clone())
            .or_default()
            .push((step as f64, value));
    }
    let charts: Vec<Markup> = series
        .into_iter()
        .take(24)
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            super::chart::line_chart(&name, &[(name.clone(), points)])
        })
        .collect();
    let (measures, files): (Vec<Entity>, Vec<Entity>) = artifacts
        .items
        .into_iter()
        .partition(|a| matches!(a.kind, Kind::Metric | Kind::Parameter));
    let body = html! {
        p.muted { a href="/ui/experiments" { "Experiments" } " / "
            @if let Some(e) = &experiment { a href={"/ui/experiments/" (e.id)} { (e.name) } " / " } (r.name) }
        h1 { "Run " (r.name) }
        (facts(&[
            ("Status", html! { (field(&r, "status")) }),
            ("Owner", html! { (field(&r, "owner")) }),
            ("Started", html! { (ms_field(&r, "startTimeSinceEpoch")) }),
            ("Ended", html! { (ms_field(&r, "endTimeSinceEpoch")) }),
        ]))
        h2 { "Metrics and parameters" }
        @if measures.is_empty() { p.muted { "None logged." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Name" } th { "Kind" } th.num { "Value" } } }
                tbody { @for a in &measures { tr { td { (a.name) } td { (a.kind.artifact_type().unwrap_or("")) } td.num { (value_of(a)) } } } }
            } }
        }
        h2 { "Metric history" }
        @if charts.is_empty() { p.muted { "No metric logged over steps." } }
        div.charts { @for c in &charts { (c) } }
        @if history.items.len() >= MAX_POINTS { p.muted { "Showing the first " (MAX_POINTS) " points." } }
        h2 { "Artifacts" }
        (artifact_rows(&files))
        h2 { "Properties" }
        (custom_table(&r))
    };
    Ok(layout(
        &format!("Run {}", r.name),
        Some(&who(&s, &id)),
        body,
    ))
}

/// `/ui/deployments`: serving environments, their inference services and
/// the model version each serves (a pinned number of calls: the two global
/// pages and a BatchGetItem each of versions and models).
pub async fn deployments(State(s): State<WebState>, id: Identity) -> Page {
    let all = Narrow::default();
    let (environments, services) = tokio::try_join!(
        recent(&s, Family::ServingEnvironment, Scope::All, &all, 100, None),
        recent(&s, Family::InferenceService, Scope::All, &all, 500, None),
    )?;
    let cut = !environments.next_page_token.is_empty() || !services.next_page_token.is_empty();
    // Environments belong to no model: shown only to callers who may read them.
    let mut shown_environments = Vec::new();
    for env in environments.items {
        if id.may_read(&s.owners, &env).await? {
            shown_environments.push(env);
        }
    }
    let mut visible = Vec::new();
    for sv in services.items {
        if id.may_read(&s.owners, &sv).await? {
            visible.push(sv);
        }
    }
    let version_ids: Vec<u64> = visible
        .iter()
        .filter_map(|sv| sv.model_version_id())
        .collect();
    let model_ids: Vec<u64> = visible
        .iter()
        .filter_map(|sv| sv.registered_model_id())
        .collect();
    let (versions, models) = tokio::try_join!(
        by_id(&s, Family::ModelVersion, &version_ids),
        by_id(&s, Family::RegisteredModel, &model_ids),
    )?;
    let body = html! {
        h1 { "Deployments" }
        @if cut {
            p.muted role="note" { "Showing the 100 newest serving environments and the 500 newest inference services; the API lists them all (" code { "/serving_environments" } ", " code { "/inference_services" } ")." }
        }
        @if shown_environments.is_empty() { p.muted { "No serving environments." } }
        @for env in &shown_environments {
            @let here: Vec<&Entity> = visible.iter().filter(|sv| sv.parent == Some(env.id)).collect();
            h2 { (env.name) }
            @if here.is_empty() { p.muted { "No inference services." } } @else {
                div.table-wrap { table {
                    thead { tr { th { "Inference service" } th { "Model" } th { "Version" } th { "Desired state" } th { "Runtime" } } }
                    tbody { @for sv in here { tr {
                        td { (sv.name) }
                        td { @if let Some(m) = sv.registered_model_id().and_then(|m| models.get(&m)) { a href={"/ui/models/" (m.id)} { (m.name) } } }
                        td { @match sv.model_version_id().and_then(|v| versions.get(&v)) {
                            Some(v) => a href={"/ui/versions/" (v.id)} { (v.name) },
                            None => span.muted { "the model's latest" },
                        } }
                        td { (field(sv, "desiredState")) }
                        td { (field(sv, "runtime")) }
                    } } }
                } }
            }
        }
    };
    Ok(layout("Deployments", Some(&who(&s, &id)), body))
}

/// A form body (`application/x-www-form-urlencoded`), bounded by the edge.
fn form(body: &axum::body::Bytes) -> Result<Args, PageError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(Args)
        .map_err(|e| bad_request(format!("invalid form: {e}")))
}

/// The form's CSRF token must be one shown to this caller.
pub(super) fn checked_form(id: &Identity, body: &axum::body::Bytes) -> Result<Args, PageError> {
    let args = form(body)?;
    if !super::csrf::check(&id.caller.user, args.get("csrf").unwrap_or("")) {
        return Err(PageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "this form has expired or was not shown to you: reload the page and send it again",
        ));
    }
    Ok(args)
}

/// Back to `to` after a form was handled (so a reload does not send it again).
fn see_other(to: String) -> axum::response::Response {
    axum::response::IntoResponse::into_response(axum::response::Redirect::to(&to))
}

/// `POST /ui/versions/{id}/decision`: an approver's decision, from the
/// version page's form.
pub async fn decide(
    State(s): State<WebState>,
    id: Identity,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, PageError> {
    let vid = parse_id("id", &raw)?;
    let args = checked_form(&id, &body)?;
    let v = s.registry.get(Family::ModelVersion, None, vid).await?;
    id.check(&s.owners, Permission::Approve, &v).await?;
    let decision = match args.get("decision") {
        Some("APPROVE") => crate::domain::entity::Decision::Approve,
        Some("REJECT") => crate::domain::entity::Decision::Reject,
        _ => return Err(bad_request("choose APPROVE or REJECT")),
    };
    let comment = args.get("comment").unwrap_or("").to_string();
    // (The edge runs the handler as the caller: the ledger names them.)
    s.registry.decide(vid, decision, &comment).await?;
    Ok(see_other(format!("/ui/versions/{vid}")))
}

/// `POST /ui/models/{id}/aliases`: point an alias at a version, or (with
/// `remove`) take it away, from the model page's form.
pub async fn move_alias(
    State(s): State<WebState>,
    id: Identity,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, PageError> {
    let mid = parse_id("id", &raw)?;
    let args = checked_form(&id, &body)?;
    let m = s.registry.get(Family::RegisteredModel, None, mid).await?;
    id.check(&s.owners, Permission::Write, &m).await?;
    let alias = args
        .get("alias")
        .ok_or_else(|| bad_request("name the alias"))?;
    let to = match (args.get("remove"), args.get("version")) {
        (Some(_), _) => None,
        (None, Some(v)) => Some(parse_id("version", v)?),
        (None, None) => return Err(bad_request("choose a version")),
    };
    s.registry.set_alias(mid, alias, to).await?;
    Ok(see_other(format!("/ui/models/{mid}")))
}

/// The entities of `family` with these ids that exist, by id (one
/// BatchGetItem per 100).
async fn by_id(
    s: &WebState,
    family: Family,
    ids: &[u64],
) -> Result<BTreeMap<u64, Entity>, PageError> {
    Ok(s.registry
        .get_many(family, ids)
        .await?
        .into_iter()
        .flatten()
        .map(|e| (e.id, e))
        .collect())
}

/// `/ui/usage?actor=`: what a caller read, newest day first (one's own, or
/// anyone's for a caller who may read everything): versions, their models,
/// days and how many reads.
pub async fn usage(State(s): State<WebState>, id: Identity, RawQuery(q): RawQuery) -> Page {
    let args = Args::parse(q)?;
    let actor = args.get("actor").unwrap_or(&id.caller.user).to_string();
    if actor != id.caller.user && !id.reads_everything() {
        return Err(id
            .denied(Permission::Read, &format!("the usage of {actor}"))
            .into());
    }
    let after = match args.get("token") {
        Some(t) => Some(decode_token(t, OrderBy::CreateTime, true)?),
        None => None,
    };
    let page = s.registry.usage(None, Some(&actor), after, 50).await?;
    let version_ids: Vec<u64> = page.items.iter().map(|u| u.version).collect();
    let versions = by_id(&s, Family::ModelVersion, &version_ids).await?;
    let model_ids: Vec<u64> = versions.values().filter_map(|v| v.parent).collect();
    let models = by_id(&s, Family::RegisteredModel, &model_ids).await?;
    // Rights change: what the caller may no longer read is left out.
    let mut rows = Vec::new();
    let mut hidden = 0;
    for u in &page.items {
        match versions.get(&u.version) {
            Some(v) if id.may_read(&s.owners, v).await? => rows.push((u, Some(v))),
            Some(_) => hidden += 1,
            None => rows.push((u, None)),
        }
    }
    let body = html! {
        h1 { "Usage of " (actor) }
        form.filters method="get" action="/ui/usage" {
            label { "Caller" input type="text" name="actor" value=(actor); }
            button type="submit" { "Show" }
        }
        p.muted { "Reads of versions and their artifacts, a line per version and day (UTC); counts are at least these (each instance writes a caller's reads of a day once)." }
        @if hidden > 0 { p.muted { (hidden) " lines about versions you may not read are left out." } }
        @if rows.is_empty() { p.muted { "No reads recorded." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Day" } th { "Model" } th { "Version" } th { "First" } th { "Last" } th.num { "Reads (at least)" } } }
                tbody { @for (u, v) in &rows { tr {
                    td { (crate::domain::civil_date(u.day)) }
                    td { @if let Some(m) = v.and_then(|v| v.parent).and_then(|m| models.get(&m)) { a href={"/ui/models/" (m.id)} { (m.name) } } }
                    td { @match v { Some(v) => a href={"/ui/versions/" (v.id)} { (v.name) }, None => span.muted { "version " (u.version) " (deleted)" } } }
                    td { (when(u.first_ms)) }
                    td { (when(u.last_ms)) }
                    td.num { (u.count) }
                } } }
            } }
        }
        @if let Some(next) = &page.next {
            p.pager { a href={"/ui/usage?" (args.with("token", &encode_token(next, OrderBy::CreateTime, true)))} rel="next" { "Older →" } }
        }
    };
    Ok(layout("Usage", Some(&who(&s, &id)), body))
}

/// Versions the inbox looks through: the most recently changed.
const INBOX_SCAN: usize = 300;

/// `/ui/approvals`: versions waiting for the caller's decision: among the
/// most recently changed versions, those of models with an approval policy
/// that the caller may approve, not approved or rejected yet, not decided
/// by the caller, not written by the caller.
pub async fn approvals(State(s): State<WebState>, id: Identity) -> Page {
    let recent = ListParams::parse(
        &RawListParams {
            page_size: Some(&INBOX_SCAN.to_string()),
            order_by: Some("LAST_UPDATE_TIME"),
            sort_order: Some("DESC"),
            ..RawListParams::default()
        },
        true,
    )?;
    let versions = s
        .registry
        .list(
            Family::ModelVersion,
            Scope::All,
            &Narrow::default(),
            &recent,
        )
        .await?
        .items;
    let model_ids: Vec<u64> = versions.iter().filter_map(|v| v.parent).collect();
    let models = by_id(&s, Family::RegisteredModel, &model_ids).await?;
    let me = id.caller.user.clone();
    let mut waiting = Vec::new();
    for v in versions {
        let Some(m) = v.parent.and_then(|p| models.get(&p)) else {
            continue;
        };
        let decided = matches!(approval_of(&v).as_deref(), Some("APPROVED" | "REJECTED"));
        if m.gov.policy.is_none()
            || decided
            || field(&v, "author") == me
            || v.gov.votes.iter().any(|d| d.actor == me)
            || !id.access.allows(Permission::Approve, Some(&m.name))
        {
            continue;
        }
        waiting.push((m.clone(), v));
    }
    let body = html! {
        h1 { "Waiting for your approval" }
        p.muted { "Among the " (INBOX_SCAN) " most recently changed versions: those of models with an approval policy that you may approve and have not decided on." }
        @if waiting.is_empty() { p { "Nothing waits for you." } } @else {
            div.table-wrap { table {
                thead { tr { th { "Model" } th { "Version" } th { "Approval" } th { "Decisions" } th { "Updated" } } }
                tbody { @for (m, v) in &waiting { tr {
                    td { a href={"/ui/models/" (m.id)} { (m.name) } }
                    td { a href={"/ui/versions/" (v.id)} { (v.name) } }
                    td { (approval_badge(approval_of(v).as_deref().or(Some("PENDING")))) }
                    td { (v.gov.votes.len()) " of " (m.gov.policy.as_ref().map_or(1, |p| p.required_approvals)) }
                    td { (when(v.update_ms)) }
                } } }
            } }
        }
    };
    Ok(layout("Approvals", Some(&who(&s, &id)), body))
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn days_round_trip() {
        assert_eq!(super::parse_day("1970-01-01"), Some(0));
        assert_eq!(super::parse_day("2025-11-30"), Some(20_422));
        assert_eq!(super::parse_day("2025-02-30"), None);
        assert_eq!(super::parse_day("yesterday"), None);
    }

    #[test]
    fn deploy_names_are_kubernetes_labels() {
        use super::dns_label;
        assert_eq!(dns_label("Churn Classifier v2"), "churn-classifier-v2");
        assert_eq!(dns_label("--x--"), "x");
        assert_eq!(dns_label("a  &  b"), "a-b");
        assert_eq!(dns_label("<script>"), "script");
        assert_eq!(dns_label("日本"), "model");
        let long = dns_label(&"a-".repeat(100));
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("=A1,B1"), "\"'=A1,B1\"");
    }

    #[test]
    fn like_literals_are_literal() {
        assert_eq!(super::like_literal("it's 50%_"), "it''s 50\\\\%\\\\_");
    }
}
