//! List responses, streamed: items go to the client as they are read from
//! the store, one store page at a time, so a list of any length (upstream's
//! default `pageSize` is 0: everything) is served in bounded memory.
//!
//! The envelope is `{"items": [...], "nextPageToken", "pageSize", "size"}`
//! with the items first: the token and the size are known only at the end.
//! The first batch is read before the response starts, so a failure to
//! read at all is still a proper error status; a failure later cuts the
//! response off (the client sees an incomplete body, never a short list
//! passed off as whole).
//!
//! A page (`pageSize` > 0) whose filter has scanned for longer than
//! [`SCAN_BUDGET`] ends early, with a `nextPageToken` at the position the
//! scan reached (like a DynamoDB Scan page), so one request never holds a
//! worker for long; following the token goes on where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiResult, HttpError};
use super::guard::Identity;
use crate::domain::error::Error;
use crate::domain::ownership::Owners;
use crate::domain::paging::{ListParams, encode_token};
use crate::domain::registry::{Found, Scan};

/// How long a page may scan for matches before it ends early with a token.
pub const SCAN_BUDGET: Duration = Duration::from_secs(5);
/// Lists up to this size are sent as one body with a length, not streamed.
const SINGLE_BODY_BYTES: usize = 64 * 1024;
/// How long a request waits for a list slot before it is shed (503).
const SLOT_WAIT: Duration = Duration::from_secs(30);

/// Lists that may read at once (each holds about one store page), so many
/// concurrent big lists cannot take the process past its memory limit.
#[derive(Clone)]
pub struct ListSlots(Arc<Semaphore>);

impl ListSlots {
    pub fn new(n: usize) -> Self {
        ListSlots(Arc::new(Semaphore::new(n.max(1))))
    }

    async fn take(&self) -> ApiResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(SLOT_WAIT, self.0.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::unavailable("too many lists are being read; retry shortly").into()),
        }
    }
}

/// Which items of a list the caller may see.
pub enum Visibility {
    /// All of them (the caller reads everything, or the list is under a
    /// parent it may read).
    All,
    /// Those of models it may read.
    Checked(Identity, Box<Owners>),
}

/// A list on its way out.
struct Listing {
    scan: Scan,
    visibility: Visibility,
    /// 0: everything.
    page_size: usize,
    params: ListParams,
    emitted: usize,
    /// Cursor of the last item sent.
    last: Option<Found>,
    deadline: Instant,
    started: bool,
    finished: bool,
    _slot: OwnedSemaphorePermit,
}

impl Listing {
    /// The next visible items (at most `wanted`).
    async fn next_items(&mut self, wanted: usize) -> ApiResult<Vec<Found>> {
        let mut batch = self.scan.next_batch(wanted).await?;
        if let Visibility::Checked(identity, owners) = &self.visibility {
            let mut kept = Vec::with_capacity(batch.len());
            for f in batch {
                if identity.may_read(owners, &f.entity).await? {
                    kept.push(f);
                }
            }
            batch = kept;
        }
        Ok(batch)
    }

    /// How many more items to send (`usize::MAX` when unbounded), plus the
    /// one that tells whether a next page exists.
    fn wanted(&self) -> usize {
        if self.page_size == 0 {
            usize::MAX
        } else {
            (self.page_size + 1).saturating_sub(self.emitted)
        }
    }

    /// The next chunk of the body: items, then the tail; `None` at the end.
    async fn next_chunk(&mut self, first: &mut Option<Vec<Found>>) -> Option<ApiResult<Bytes>> {
        if self.finished {
            return None;
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.extend_from_slice(b"{\"items\":[");
        }
        let mut token = String::new();
        loop {
            let batch = match first.take() {
                Some(b) => b,
                None if self.scan.is_done() => break,
                None => match self.next_items(self.wanted()).await {
                    Ok(b) => b,
                    Err(e) => return Some(Err(e)),
                },
            };
            for found in batch {
                if self.page_size > 0 && self.emitted == self.page_size {
                    // One more exists: the page ends at the last one sent.
                    if let Some(last) = &self.last {
                        token = encode_token(
                            &last.cursor,
                            self.params.order_by,
                            self.params.descending,
                        );
                    }
                    return Some(Ok(self.tail(out, token)));
                }
                if self.emitted > 0 {
                    out.push(b',');
                }
                if let Err(e) = serde_json::to_writer(&mut out, &super::codec::Wire(&found.entity))
                {
                    return Some(Err(HttpError::Encoding(e.to_string()).into()));
                }
                self.emitted += 1;
                self.last = Some(found);
            }
            if self.page_size > 0 && !self.scan.is_done() && Instant::now() > self.deadline {
                // Scanned long enough: end the page where the scan is.
                if let Some(at) = self.scan.position() {
                    token = encode_token(at, self.params.order_by, self.params.descending);
                }
                return Some(Ok(self.tail(out, token)));
            }
            if !out.is_empty() {
                return Some(Ok(Bytes::from(out)));
            }
        }
        Some(Ok(self.tail(out, token)))
    }

    fn tail(&mut self, mut out: Vec<u8>, token: String) -> Bytes {
        self.finished = true;
        out.extend_from_slice(b"],\"nextPageToken\":");
        let _ = serde_json::to_writer(&mut out, &token);
        out.extend_from_slice(
            format!(
                ",\"pageSize\":{},\"size\":{}}}",
                self.page_size, self.emitted
            )
            .as_bytes(),
        );
        Bytes::from(out)
    }
}

/// Answer a list: 200 with the streamed envelope, or an error status when
/// the first read fails.
pub async fn respond(
    scan: Scan,
    params: ListParams,
    visibility: Visibility,
    slots: &ListSlots,
) -> ApiResult<Response> {
    let slot = slots.take().await?;
    let mut listing = Listing {
        scan,
        visibility,
        page_size: params.page_size,
        params,
        emitted: 0,
        last: None,
        deadline: Instant::now() + SCAN_BUDGET,
        started: false,
        finished: false,
        _slot: slot,
    };
    let wanted = listing.wanted();
    let mut first = Some(listing.next_items(wanted).await?);
    // A small list (most pages) goes out as one body with its length: one
    // write, no chunked encoding. A big one streams from where this stops.
    let mut head = Vec::new();
    while head.len() < SINGLE_BODY_BYTES {
        match listing.next_chunk(&mut first).await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => {
                return Ok((
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    head,
                )
                    .into_response());
            }
        }
    }
    let head = futures_util::stream::once(async move { Ok(Bytes::from(head)) });
    let rest = futures_util::stream::unfold(
        (listing, first),
        |(mut listing, mut first)| async move {
            let chunk = listing.next_chunk(&mut first).await?;
            let chunk = chunk.map_err(|e| {
                tracing::error!(status = %e.status(), message = e.message(), "list cut off: reading it failed");
                std::io::Error::other(e.message().to_string())
            });
            Some((chunk, (listing, first)))
        },
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(futures_util::StreamExt::chain(head, rest)),
    )
        .into_response())
}
