//! S3 event notifications: `{"Records": [{"eventSource": "aws:s3", ...}]}`,
//! as S3 sends them to Lambda, SQS or SNS; MinIO sends the same records
//! with `minio:s3` and `s3:`-prefixed event names. Keys in notification
//! records are URL-encoded (`+` for a space) and are decoded here.
//!
//! (The `Records` array itself, and the SQS and SNS records wrapping a
//! notification, are read by [`super::read`], which finds out which shape a
//! payload has.)

use serde_json::{Value, json};

use super::fields::{form_decode, sequencer_at, size_at, str_at, time_at, unquote};
use super::{Change, Parsed, PayloadError, StorageEvent};

/// One S3 (or MinIO) notification record: an object change, or ignored
/// when its event neither adds nor removes an object.
pub(super) fn read_record(record: &Value) -> Result<Parsed, PayloadError> {
    let name = str_at(record, "/eventName").ok_or(PayloadError::Missing("eventName"))?;
    let bare = name.strip_prefix("s3:").unwrap_or(name);
    let change = if bare.starts_with("ObjectCreated:") {
        Change::Created
    } else if bare.starts_with("ObjectRemoved:") || bare.starts_with("LifecycleExpiration:") {
        Change::Removed
    } else {
        return Ok(Parsed::ignore(format!(
            "event {name} does not add or remove an object"
        )));
    };
    let bucket =
        str_at(record, "/s3/bucket/name").ok_or(PayloadError::Missing("s3.bucket.name"))?;
    let raw_key = str_at(record, "/s3/object/key").ok_or(PayloadError::Missing("s3.object.key"))?;
    let key = form_decode(raw_key).ok_or_else(|| PayloadError::KeyNotEncoded(raw_key.into()))?;
    Ok(Parsed::one(StorageEvent {
        bucket: bucket.to_string(),
        key,
        change,
        size: size_at(record, "/s3/object/size")?,
        etag: str_at(record, "/s3/object/eTag").map(unquote),
        sequencer: sequencer_at(record, "/s3/object/sequencer")?,
        time_ms: time_at(record, "/eventTime")?,
    }))
}

/// The notification record S3 would send for `event` (its key URL-encoded):
/// what tests and tools deliver, as Knative's S3 sources do (one record per
/// CloudEvent).
pub fn to_record(event: &StorageEvent) -> Value {
    let name = match event.change {
        Change::Created => "ObjectCreated:Put",
        Change::Removed => "ObjectRemoved:Delete",
    };
    let key: String = event
        .key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": event.bucket},
            "object": {"key": key, "size": event.size, "eTag": event.etag, "sequencer": event.sequencer}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::fields::MAX_EVENT_SIZE;
    use super::super::{MAX_RECORDS, MAX_SEQUENCER_LEN, read};
    use super::*;
    use crate::registration::explain;

    fn s3_record(name: &str, key: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-03-04T05:06:07.089Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "ml", "arn": "arn:aws:s3:::ml"},
                   "object": {"key": key, "size": 42, "eTag": "0123abcd", "sequencer": "0062E99A88DC407460"}}
        })
    }

    /// Why `payload` is malformed, as the sender is told.
    fn malformed(payload: &Value) -> String {
        explain(&read(payload, None).unwrap_err())
    }

    #[test]
    fn a_record_we_write_reads_back() {
        let event = StorageEvent {
            bucket: "ml".into(),
            key: "models/my model/1/a+b€.onnx".into(),
            change: Change::Created,
            size: Some(3),
            etag: Some("e".into()),
            sequencer: Some("0A".into()),
            time_ms: None,
        };
        let parsed = read(&json!({"Records": [to_record(&event)]}), None).unwrap();
        assert_eq!(parsed.events, vec![event]);
    }

    #[test]
    fn reads_s3_notifications() {
        let p = read(
            &json!({"Records": [s3_record("ObjectCreated:Put", "models/my+model/1/a%2Bb.onnx")]}),
            None,
        )
        .unwrap();
        assert_eq!(p.events.len(), 1);
        let e = &p.events[0];
        assert_eq!(e.bucket, "ml");
        assert_eq!(e.key, "models/my model/1/a+b.onnx");
        assert_eq!(e.change, Change::Created);
        assert_eq!(e.size, Some(42));
        assert_eq!(e.etag.as_deref(), Some("0123abcd"));
        assert_eq!(e.sequencer.as_deref(), Some("0062E99A88DC407460"));
        assert_eq!(e.time_ms, Some(1_772_600_767_089));
        let removed = read(&s3_record("ObjectRemoved:DeleteMarkerCreated", "k"), None).unwrap();
        assert_eq!(removed.events[0].change, Change::Removed);
        let restore = read(
            &json!({"Records": [s3_record("ObjectRestore:Post", "k")]}),
            None,
        )
        .unwrap();
        assert!(restore.events.is_empty() && restore.ignored.len() == 1);
    }

    #[test]
    fn reads_minio_webhooks() {
        let mut record = s3_record(
            "s3:ObjectCreated:CompleteMultipartUpload",
            "models%2Fm%2F1%2Fw.bin",
        );
        record["eventSource"] = json!("minio:s3");
        record["s3"]["object"]["size"] = json!("7");
        let p = read(&json!({"EventName": "s3:ObjectCreated:CompleteMultipartUpload", "Key": "ml/models/m/1/w.bin", "Records": [record]}), None).unwrap();
        assert_eq!(p.events[0].key, "models/m/1/w.bin");
        assert_eq!(p.events[0].size, Some(7));
    }

    #[test]
    fn unwraps_sqs_and_sns() {
        let notification = json!({"Records": [s3_record("ObjectCreated:Put", "models/m/1/f")]});
        let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": notification.to_string()}}]});
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "1", "body": sns.to_string()}]});
        assert_eq!(read(&sqs, None).unwrap().events[0].key, "models/m/1/f");
    }

    #[test]
    fn malformed_and_unrelated() {
        assert!(read(&json!({"Records": "x"}), None).is_err());
        let mut no_key = s3_record("ObjectCreated:Put", "k");
        no_key["s3"]["object"]
            .as_object_mut()
            .unwrap()
            .remove("key");
        assert!(malformed(&json!({"Records": [no_key]})).contains("Records[0]"));
        assert!(read(&s3_record("ObjectCreated:Put", "bad%zz"), None).is_err());
        let mut bad_time = s3_record("ObjectCreated:Put", "k");
        bad_time["eventTime"] = json!("yesterday");
        assert!(read(&bad_time, None).is_err());
        for unrelated in [
            json!({"hello": "world"}),
            json!([1, 2]),
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "ml"}),
            json!({"Records": [{"eventSource": "aws:dynamodb"}]}),
            json!({"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {}}),
        ] {
            let p = read(&unrelated, None).unwrap();
            assert!(p.events.is_empty() && !p.ignored.is_empty(), "{unrelated}");
        }
    }

    #[test]
    fn numbers_out_of_range_make_the_record_malformed() {
        for (field, value, expect) in [
            (
                "eventTime",
                json!("1000000000000-01-01T00:00:00Z"),
                "eventTime",
            ),
            ("eventTime", json!(1_700_000_000_000u64), "eventTime"),
            ("size", json!(-1), "s3.object.size"),
            ("size", json!(1.5), "s3.object.size"),
            ("size", json!(1e300), "s3.object.size"),
            ("size", json!(u64::MAX), "s3.object.size"),
            ("size", json!("99999999999999999999999"), "s3.object.size"),
            ("size", json!("-1"), "s3.object.size"),
            (
                "sequencer",
                json!("F".repeat(MAX_SEQUENCER_LEN + 1)),
                "sequencer",
            ),
            ("sequencer", json!("not hex"), "sequencer"),
            ("sequencer", json!(12), "sequencer"),
        ] {
            let mut record = s3_record("ObjectRemoved:Delete", "models/m/1/f");
            match field {
                "eventTime" => record["eventTime"] = value,
                other => record["s3"]["object"][other] = value,
            }
            let err = malformed(&json!({"Records": [record]}));
            assert!(err.contains(expect), "{field}: {err}");
        }
        let mut fine = s3_record("ObjectCreated:Put", "models/m/1/f");
        fine["s3"]["object"]["size"] = json!(MAX_EVENT_SIZE);
        fine["s3"]["object"]["sequencer"] = json!("F".repeat(MAX_SEQUENCER_LEN));
        fine["eventTime"] = json!("9999-12-31T23:59:59.999Z");
        let e = &read(&fine, None).unwrap().events[0];
        assert_eq!(e.size, Some(MAX_EVENT_SIZE));
        assert_eq!(e.time_ms, Some(253_402_300_799_999));
    }

    #[test]
    fn at_most_so_many_records() {
        let records =
            |n: usize| json!({"Records": vec![s3_record("ObjectCreated:Put", "datasets/x"); n]});
        assert_eq!(
            read(&records(MAX_RECORDS), None).unwrap().events.len(),
            MAX_RECORDS
        );
        let err = malformed(&records(MAX_RECORDS + 1));
        assert!(err.contains("at most 1000 records"), "{err}");
    }
}
