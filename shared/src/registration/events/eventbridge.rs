//! EventBridge events from S3 (`source: aws.s3`, `detail-type: "Object
//! Created" | "Object Deleted"`), as the bucket sends them when
//! `EventBridgeEnabled` is on, or their `detail` alone when a CloudEvent's
//! type says which change it is. Keys are taken as they are (EventBridge
//! does not URL-encode them).

use serde_json::Value;

use super::fields::{sequencer_at, size_at, str_at, time_at, unquote};
use super::{Change, Parsed, PayloadError, StorageEvent};

/// A whole EventBridge event (`source`, `detail-type`, `detail`, `time`):
/// an object change, or ignored when it is not one of S3's.
pub(super) fn read_event(event: &Value) -> Result<Parsed, PayloadError> {
    let source = str_at(event, "/source").unwrap_or_default();
    let detail_type = str_at(event, "/detail-type").unwrap_or_default();
    if source != "aws.s3" {
        return Ok(Parsed::ignore(format!("EventBridge event from '{source}'")));
    }
    let change = match detail_type {
        "Object Created" => Change::Created,
        "Object Deleted" => Change::Removed,
        other => {
            return Ok(Parsed::ignore(format!(
                "S3 EventBridge event '{other}' does not add or remove an object"
            )));
        }
    };
    let time_ms = time_at(event, "/time")?;
    let detail = event.get("detail").ok_or(PayloadError::Missing("detail"))?;
    Ok(Parsed::one(read_detail(detail, change, time_ms)?))
}

/// The `detail` of an S3 EventBridge event, whose change and time come
/// from elsewhere (the event around it, or a CloudEvent's type).
pub(super) fn read_detail(
    detail: &Value,
    change: Change,
    time_ms: Option<u64>,
) -> Result<StorageEvent, PayloadError> {
    let bucket =
        str_at(detail, "/bucket/name").ok_or(PayloadError::Missing("detail.bucket.name"))?;
    let key = str_at(detail, "/object/key").ok_or(PayloadError::Missing("detail.object.key"))?;
    Ok(StorageEvent {
        bucket: bucket.to_string(),
        key: key.to_string(),
        change,
        size: size_at(detail, "/object/size")?,
        etag: str_at(detail, "/object/etag").map(unquote),
        sequencer: sequencer_at(detail, "/object/sequencer")?,
        time_ms,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::read;
    use super::*;
    use crate::registration::explain;

    #[test]
    fn reads_eventbridge() {
        let event = json!({
            "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": "111122223333",
            "time": "2021-11-12T00:00:00Z", "region": "ca-central-1",
            "resources": ["arn:aws:s3:::ml"],
            "detail": {"version": "0", "bucket": {"name": "ml"},
                       "object": {"key": "models/m/1/f.bin", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184", "sequencer": "00617F08299329D189"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}
        });
        let e = &read(&event, None).unwrap().events[0];
        assert_eq!(e.key, "models/m/1/f.bin");
        assert_eq!(e.change, Change::Created);
        assert_eq!(e.time_ms, Some(1_636_675_200_000));
        let mut deleted = event.clone();
        deleted["detail-type"] = json!("Object Deleted");
        assert_eq!(
            read(&deleted, None).unwrap().events[0].change,
            Change::Removed
        );
        let mut tags = event.clone();
        tags["detail-type"] = json!("Object Tags Added");
        assert!(read(&tags, None).unwrap().events.is_empty());
        let detail_only = read(&event["detail"], Some("com.amazonaws.s3.ObjectCreated")).unwrap();
        assert_eq!(detail_only.events[0].bucket, "ml");
        let unknown = read(&event["detail"], Some("com.example.other")).unwrap();
        assert!(unknown.events.is_empty());
    }

    #[test]
    fn numbers_out_of_range_make_the_event_malformed() {
        let mut bridge = json!({"detail-type": "Object Deleted", "source": "aws.s3",
            "time": "1000000000000-01-01T00:00:00Z",
            "detail": {"bucket": {"name": "ml"}, "object": {"key": "models/m/1/f"}}});
        assert!(explain(&read(&bridge, None).unwrap_err()).contains("time"));
        bridge["time"] = json!("2026-01-01T00:00:00Z");
        bridge["detail"]["object"]["size"] = json!(-5);
        assert!(explain(&read(&bridge, None).unwrap_err()).contains("object.size"));
    }
}
