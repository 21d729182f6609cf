//! Table 2: one model with many versions. Seeds them through the API, walks
//! the page tokens down to a deep offset, then times the first page, that
//! deep page (the same token repeated) and a filtered page, one at a time.

use std::path::PathBuf;
use std::sync::Arc;

use crate::apis::Api;
use crate::load::{self, Connections, MakeCall, send};
use crate::results::{self, Record, Timing};

pub struct ScaleArgs {
    pub api: Api,
    pub system: String,
    pub versions: u64,
    pub seed_concurrency: usize,
    pub page_size: usize,
    /// Items before the deep page; a multiple of `page_size`.
    pub deep_offset: u64,
    /// Timed requests per page kind (at concurrency 1).
    pub requests: u64,
    pub warmup: u64,
    pub connections: Connections,
    pub out: PathBuf,
}

/// Every 10th version has `stage=prod`.
fn stage(seq: u64) -> &'static str {
    if seq.is_multiple_of(10) {
        "prod"
    } else {
        "dev"
    }
}

pub async fn run(args: ScaleArgs) -> Result<(), String> {
    let api = &args.api;
    let client = load::client_with(args.seed_concurrency, args.connections);
    let model = api
        .create_model(&client, &format!("scale-{}", args.versions))
        .await?;

    let seed: MakeCall = {
        let (api, model) = (api.clone(), model.clone());
        Arc::new(move |seq| api.create_version_call(&model, &format!("s{seq}"), stage(seq)))
    };
    let outcome = load::run(&client, &seed, 0, args.versions, args.seed_concurrency).await;
    let timing = Timing::of(&outcome, args.seed_concurrency);
    eprintln!(
        "  {:<16} seeded {} versions in {:.1} s ({:.0}/s at c={}){}",
        args.system,
        args.versions,
        outcome.wall.as_secs_f64(),
        timing.ops_per_s,
        args.seed_concurrency,
        timing.error_note()
    );
    results::append(
        &args.out,
        &Record::Seed {
            system: args.system.clone(),
            versions: args.versions,
            seconds: outcome.wall.as_secs_f64(),
            timing,
        },
    )?;

    // Walk the tokens (untimed) to the page that starts at deep_offset.
    let mut token: Option<String> = None;
    for page in 0..args.deep_offset / args.page_size as u64 {
        let call = api.list_versions_call(&model, args.page_size, None, token.as_deref());
        let body = send(&client, &call).await?;
        token = api.next_token(&body);
        if token.is_none() {
            return Err(format!(
                "the list ended at page {page}, before offset {}",
                args.deep_offset
            ));
        }
    }
    let deep = api.list_versions_call(&model, args.page_size, None, token.as_deref());
    let deep_len = api.page_len(&send(&client, &deep).await?);
    if deep_len != args.page_size {
        return Err(format!(
            "the deep page holds {deep_len} items, not {}",
            args.page_size
        ));
    }

    let single = load::client_with(1, args.connections);
    let mut kinds = vec![
        (
            "first page",
            0,
            api.list_versions_call(&model, args.page_size, None, None),
        ),
        ("deep page", args.deep_offset, deep),
        (
            "filtered page",
            0,
            api.list_versions_call(&model, args.page_size, Some("prod"), None),
        ),
    ];
    if let Some(page) = api.model_page_call(&model) {
        kinds.push(("web model page", 0, page));
    }
    for (op, offset, call) in kinds {
        let make: MakeCall = Arc::new(move |_| call.clone());
        let outcome = load::measure(&single, &make, args.warmup, args.requests, 1).await;
        let timing = Timing::of(&outcome, 1);
        eprintln!(
            "  {:<16} {:<13} (offset {offset:>6}) p50 {:>8.2} ms  p99 {:>8.2} ms{}",
            args.system,
            op,
            timing.p50_ms,
            timing.p99_ms,
            timing.error_note()
        );
        results::append(
            &args.out,
            &Record::Scale {
                system: args.system.clone(),
                versions: args.versions,
                op: op.to_string(),
                page_size: args.page_size,
                offset,
                timing,
            },
        )?;
    }
    Ok(())
}
