//! Storage events and the upload extension, end to end, against real
//! servers: s3s-fs (S3 API) for the bytes and dynalite (DynamoDB API) for the
//! metadata, both started by `make test` (tests/servers/servers.sh). s3s-fs
//! sends no notifications, so the tests upload real objects and then deliver
//! the events S3 would have sent, built from each object's real metadata,
//! the way Knative Eventing delivers them (CloudEvents over HTTP).
//!
//! - `registration`: uploads become model, version and artifact (digests,
//!   manifest); removals mark the artifact; unrelated and malformed events;
//!   the `storage-events` function at `/`.
//! - `faults`: duplicated, reversed, concurrent and failed (503) deliveries
//!   end in the state of one clean delivery.
//! - `forgery`: events are hints, the bucket is the truth: forged removals
//!   and creations change nothing, whatever position they claim; numbers
//!   out of range, oversized deliveries and manifests are refused.
//! - `uploads`: the upload extension over plain HTTP: presigned single and
//!   multipart uploads on S3, the relay on the embedded store, digest and
//!   size mismatches.
//! - `latency`: time from upload to visible registration.
//!
//! `support` holds what these share; what every test target shares (the
//! processes, the API client) is `registry-test-support` (tests/support/).

mod support;

mod faults;
mod forgery;
mod latency;
mod registration;
mod uploads;
