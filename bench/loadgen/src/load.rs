//! Fixed-count load: N requests of one operation shared by C concurrent
//! workers over keep-alive connections, every latency recorded in an HDR
//! histogram (microseconds). A warm-up of the same operation at the same
//! concurrency runs first and is not recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, Method, StatusCode};

/// One HTTP request of an operation.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub url: String,
    pub body: Option<String>,
    /// `Authorization` header (`Bearer …`), for a registry with `MR_AUTH=jwt`.
    pub authorization: Option<HeaderValue>,
}

impl Call {
    pub fn get(url: String) -> Call {
        Call {
            method: Method::GET,
            url,
            body: None,
            authorization: None,
        }
    }

    pub fn post(url: String, body: String) -> Call {
        Call {
            method: Method::POST,
            url,
            body: Some(body),
            authorization: None,
        }
    }

    /// The same call with this `Authorization` header (none: without).
    pub fn authorized(mut self, authorization: Option<&HeaderValue>) -> Call {
        self.authorization = authorization.cloned();
        self
    }
}

/// Builds request number `seq` of an operation; `seq` is unique within a
/// run (warm-up included), so creates can derive unique names from it.
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// What one measured run gave.
pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    /// The first failure, to print: status and the start of the body.
    pub first_error: Option<String>,
    pub wall: Duration,
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    pub fn ops_per_s(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// How the client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connections {
    /// One keep-alive connection per worker (the default).
    KeepAlive,
    /// A new connection for every request.
    Fresh,
}

impl Connections {
    pub fn parse(s: &str) -> Result<Connections, String> {
        match s {
            "keepalive" => Ok(Connections::KeepAlive),
            "fresh" => Ok(Connections::Fresh),
            other => Err(format!(
                "--connections: '{other}' is not keepalive or fresh"
            )),
        }
    }
}

/// An HTTP client for `concurrency` workers: one keep-alive connection each.
pub fn client(concurrency: usize) -> Client {
    client_with(concurrency, Connections::KeepAlive)
}

/// An HTTP client for `concurrency` workers that uses `connections`.
pub fn client_with(concurrency: usize, connections: Connections) -> Client {
    let idle = match connections {
        Connections::KeepAlive => concurrency.max(1),
        Connections::Fresh => 0,
    };
    Client::builder()
        .pool_max_idle_per_host(idle)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("the HTTP client builds (no TLS, no proxies)")
}

/// Send one call; the body on a 2xx answer, else the status and body start.
pub async fn send(client: &Client, call: &Call) -> Result<String, String> {
    let (status, text) = exchange(client, call).await?;
    if status.is_success() {
        Ok(text)
    } else {
        let start: String = text.chars().take(200).collect();
        Err(format!("{} {}: {status}: {start}", call.method, call.url))
    }
}

/// Send one call; the status and body of any answer (an error only when
/// there is no answer).
pub async fn exchange(client: &Client, call: &Call) -> Result<(StatusCode, String), String> {
    let mut request = client.request(call.method.clone(), &call.url);
    if let Some(body) = &call.body {
        request = request
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    if let Some(authorization) = &call.authorization {
        request = request.header(AUTHORIZATION, authorization.clone());
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    Ok((status, text))
}

/// `warmup` unrecorded requests, then `n` recorded ones, both at `concurrency`.
pub async fn measure(
    client: &Client,
    make: &MakeCall,
    warmup: u64,
    n: u64,
    concurrency: usize,
) -> Outcome {
    if warmup > 0 {
        run(client, make, 0, warmup, concurrency).await;
    }
    run(client, make, warmup, n, concurrency).await
}

/// Requests `first_seq .. first_seq + n`, pulled by `concurrency` workers.
pub async fn run(
    client: &Client,
    make: &MakeCall,
    first_seq: u64,
    n: u64,
    concurrency: usize,
) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let (client, make, next) = (client.clone(), make.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let (mut errors, mut first_error) = (0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let call = make(first_seq + i);
                let t = Instant::now();
                let result = send(&client, &call).await;
                hist.saturating_record((t.elapsed().as_micros() as u64).max(1));
                if let Err(e) = result {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (hist, errors, first_error)
        }));
    }
    let mut outcome = Outcome {
        requests: n,
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        latency_us: new_histogram(),
    };
    for worker in workers {
        let (hist, errors, first_error) = worker.await.expect("a load worker panicked");
        outcome
            .latency_us
            .add(&hist)
            .expect("histograms of the same bounds add");
        outcome.errors += errors;
        if outcome.first_error.is_none() {
            outcome.first_error = first_error;
        }
    }
    outcome.wall = start.elapsed();
    outcome
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}
