//! Table 6: does the registry still answer its health check while the most
//! expensive filters run? Seeds models with long descriptions, then for a
//! while several clients list registered models with the worst `LIKE`
//! pattern the filter language takes, while one client probes
//! `/readyz/health` the way a kubelet does: a new connection each time, one
//! probe every 20 ms. A slow health check gets a healthy server restarted.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Client, StatusCode};

use crate::apis::Api;
use crate::load::{self, Call, Connections, Outcome, exchange, send};
use crate::results::{self, Record, Timing};

/// Models seeded with a long description.
pub const MODELS: usize = 16;
/// Clients sending the filter at once.
pub const ATTACK_CLIENTS: usize = 6;
/// From the start of one health probe to the start of the next.
pub const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Probes of the idle server before the attack.
const IDLE_PROBES: u64 = 50;
/// A probe without an answer by then has failed (and counts this long).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `LIKE` pattern the filter language takes, in characters
/// (`MAX_LIKE_PATTERN_LEN` in shared/src/domain/filter.rs).
pub const MAX_LIKE_PATTERN: usize = 1024;
/// Tries at finding a description length the server stores.
const FIT_TRIES: usize = 20;

pub struct HealthAttackArgs {
    pub api: Api,
    pub system: String,
    /// How long the attack runs.
    pub seconds: u64,
    /// Length of each seeded description, if the server stores that much.
    pub description_chars: usize,
    pub out: PathBuf,
}

/// The costliest pattern of at most [`MAX_LIKE_PATTERN`] characters: a
/// single segment between two `%`, as long as it can be, with a `_` every
/// other character, ending in a `b` that the descriptions (all `a`) never
/// contain, so every model is scanned to its end: `%a_a_…a_ab%`.
pub fn worst_like_pattern() -> String {
    let pairs = (MAX_LIKE_PATTERN - "%ab%".len()) / 2;
    format!("%{}ab%", "a_".repeat(pairs))
}

pub async fn run(args: HealthAttackArgs) -> Result<(), String> {
    let client = load::client(ATTACK_CLIENTS);
    let tag = format!("attack-{}", unix_ms());
    let chars = seed(&args.api, &client, &tag, args.description_chars).await?;
    if chars < args.description_chars {
        eprintln!(
            "  {:<16} the server refuses a {}-character description (413); seeded {chars}",
            args.system, args.description_chars
        );
    }

    let pattern = worst_like_pattern();
    let query = args
        .api
        .filter_models_call(&format!("description LIKE '{pattern}'"));
    let t = Instant::now();
    send(&client, &query)
        .await
        .map_err(|e| format!("the worst filter does not run: {e}"))?;
    eprintln!(
        "  {:<16} one worst filter alone: {:.1} ms ({MODELS} models of {chars} characters, pattern of {})",
        args.system,
        t.elapsed().as_secs_f64() * 1000.0,
        pattern.chars().count()
    );

    let prober = load::client_with(1, Connections::Fresh);
    let health = Call::get(format!("{}/readyz/health", args.api.base));
    let idle = probe(&prober, &health, IDLE_PROBES, Duration::from_secs(30)).await;

    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let attackers: Vec<_> = (0..ATTACK_CLIENTS)
        .map(|_| tokio::spawn(attack(client.clone(), query.clone(), until)))
        .collect();
    let during = probe(
        &prober,
        &health,
        u64::MAX,
        Duration::from_secs(args.seconds),
    )
    .await;
    let mut attack = empty_outcome();
    for attacker in attackers {
        let one = attacker
            .await
            .map_err(|e| format!("an attacker failed: {e}"))?;
        merge(&mut attack, one);
    }
    attack.wall = started.elapsed();

    let (idle, health, attack) = (
        Timing::of(&idle, 1),
        Timing::of(&during, 1),
        Timing::of(&attack, ATTACK_CLIENTS),
    );
    eprintln!(
        "  {:<16} health idle p50 {:.2} / p99 {:.2} ms; under attack p50 {:.2} / p99 {:.2} / max {:.2} ms ({} probes){}",
        args.system,
        idle.p50_ms,
        idle.p99_ms,
        health.p50_ms,
        health.p99_ms,
        health.max_ms,
        health.requests,
        health.error_note()
    );
    eprintln!(
        "  {:<16} attack: {} filter queries by {ATTACK_CLIENTS} clients in {:.1} s, p50 {:.1} ms{}",
        args.system,
        attack.requests,
        started.elapsed().as_secs_f64(),
        attack.p50_ms,
        attack.error_note()
    );
    results::append(
        &args.out,
        &Record::HealthUnderAttack {
            system: args.system.clone(),
            models: MODELS,
            description_chars: chars,
            description_chars_asked: args.description_chars,
            pattern_chars: pattern.chars().count(),
            attack_clients: ATTACK_CLIENTS,
            seconds: args.seconds as f64,
            idle_health: idle,
            health,
            attack,
        },
    )
}

/// Create [`MODELS`] models named `{tag}-NN` whose description is `asked`
/// `a`s, or as many as the server stores when it refuses that many (413):
/// the length used.
async fn seed(api: &Api, client: &Client, tag: &str, asked: usize) -> Result<usize, String> {
    let mut chars = asked;
    let mut tries = 0;
    let mut k = 0;
    while k < MODELS {
        // Names of one length, so that every model's stored size is the same.
        let call = api.create_described_model_call(&format!("{tag}-{k:02}"), &"a".repeat(chars));
        let (status, body) = exchange(client, &call).await?;
        if status.is_success() {
            k += 1;
        } else if status == StatusCode::PAYLOAD_TOO_LARGE && k == 0 && tries < FIT_TRIES {
            tries += 1;
            chars = shorter(chars, &body);
            if chars == 0 {
                return Err(format!("the server stores no description: {body}"));
            }
        } else {
            let start: String = body.chars().take(300).collect();
            return Err(format!(
                "creating model {tag}-{k:02} ({chars} characters of description): {status}: {start}"
            ));
        }
    }
    Ok(chars)
}

/// The next length to try after a 413: this one less the excess the
/// message states (`… 150123 bytes stored, at most 65536 …`), else 10% less.
fn shorter(chars: usize, message: &str) -> usize {
    match excess(message) {
        Some(e) => chars.saturating_sub(e),
        None => chars * 9 / 10,
    }
}

fn excess(message: &str) -> Option<usize> {
    let (before, after) = message.split_once(" bytes stored, at most ")?;
    let stored: usize = before
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let max: usize = after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    stored.checked_sub(max).filter(|e| *e > 0)
}

/// One attacking client: `query` again and again until `until`.
async fn attack(client: Client, query: Call, until: Instant) -> Outcome {
    let mut outcome = empty_outcome();
    while Instant::now() < until {
        let t = Instant::now();
        let result = send(&client, &query).await;
        outcome
            .latency_us
            .saturating_record((t.elapsed().as_micros() as u64).max(1));
        outcome.requests += 1;
        if let Err(e) = result {
            outcome.errors += 1;
            outcome.first_error.get_or_insert(e);
        }
    }
    outcome
}

/// Health probes, one every [`PROBE_EVERY`] (the next one right away when
/// one took longer), at most `probes` of them, for at most `duration`.
async fn probe(client: &Client, health: &Call, probes: u64, duration: Duration) -> Outcome {
    let start = Instant::now();
    let mut outcome = empty_outcome();
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while outcome.requests < probes {
        tick.tick().await;
        if start.elapsed() >= duration {
            break;
        }
        let t = Instant::now();
        let result = match tokio::time::timeout(PROBE_TIMEOUT, send(client, health)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        outcome
            .latency_us
            .saturating_record((t.elapsed().as_micros() as u64).max(1));
        outcome.requests += 1;
        if let Err(e) = result {
            outcome.errors += 1;
            outcome.first_error.get_or_insert(e);
        }
    }
    outcome.wall = start.elapsed();
    outcome
}

fn empty_outcome() -> Outcome {
    Outcome {
        requests: 0,
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        latency_us: load::new_histogram(),
    }
}

fn merge(into: &mut Outcome, other: Outcome) {
    into.requests += other.requests;
    into.errors += other.errors;
    into.latency_us
        .add(&other.latency_us)
        .expect("histograms of the same bounds add");
    if into.first_error.is_none() {
        into.first_error = other.first_error;
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_pattern_is_as_long_as_the_server_takes() {
        let p = worst_like_pattern();
        assert_eq!(p.chars().count(), MAX_LIKE_PATTERN);
        assert!(p.starts_with("%a_a_") && p.ends_with("a_ab%"));
        // One segment: no `%` inside.
        assert_eq!(p.matches('%').count(), 2);
    }

    #[test]
    fn a_refusal_tells_how_much_shorter() {
        let m = r#"{"code":"413","message":"registered model is too large: 150321 bytes stored, at most 65536 (description 150000 bytes)"}"#;
        assert_eq!(shorter(150_000, m), 150_000 - (150_321 - 65_536));
        assert_eq!(shorter(1000, "too large"), 900);
    }
}
