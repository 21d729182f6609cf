//! The `storage-events` function under the Lambda Runtime API emulator of
//! `lambda`: invoked with native S3 event notifications and EventBridge
//! events (not HTTP events), it registers the uploaded model; a store
//! outage is an invocation error (Lambda retries), a malformed event is not.
//! Bytes in s3s-fs, metadata in dynalite (the servers `make test` starts).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use registry_test_support::{Process, free_port, http_client, server_env, uniq};

use crate::lambda::{Outcome, RuntimeApi};

/// The configuration of a function on dynalite (`dynamodb`) and s3s-fs.
fn env(dynamodb: &str, table: &str, bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MR_STORE", "dynamodb".into()),
        ("MR_CREATE_TABLE", "true".into()),
        ("MR_TABLE", table.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb.into()),
        ("AWS_ENDPOINT_URL_S3", server_env("MR_TEST_S3_ENDPOINT")),
        ("AWS_ACCESS_KEY_ID", server_env("MR_TEST_S3_ACCESS_KEY")),
        ("AWS_SECRET_ACCESS_KEY", server_env("MR_TEST_S3_SECRET_KEY")),
        ("MR_ARTIFACT_BUCKET", bucket.into()),
    ]
}

/// An S3 event notification for one object, as S3 invokes Lambda with it.
fn s3_notification(bucket: &str, key: &str, size: usize, sequencer: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "registry",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                          "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size, "sequencer": sequencer}}
    }]})
}

fn report(outcome: Outcome, process: &Process) -> Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(kind, body) => panic!("invocation error {kind}: {body}\n{}", process.log()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_notifications_and_eventbridge_events_register_a_model_under_lambda() {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(server_env("MR_TEST_S3_ENDPOINT"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                server_env("MR_TEST_S3_ACCESS_KEY"),
                server_env("MR_TEST_S3_SECRET_KEY"),
                None,
                None,
                "tests",
            ))
            .build(),
    );
    let bucket = uniq("fn-lambda");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let model = uniq("lambda-model");
    let (weights, config) = (b"lambda weights".to_vec(), br#"{"layers": 2}"#.to_vec());
    let keys = [
        format!("models/{model}/1.0.0/model.onnx"),
        format!("models/{model}/1.0.0/config.json"),
    ];
    for (key, body) in keys.iter().zip([&weights, &config]) {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }

    let dynamodb = server_env("MR_TEST_DYNAMODB_ENDPOINT");
    let table = uniq("fn-lambda");
    let lambda = RuntimeApi::start().await;
    let function = lambda.spawn_with(
        "storage-events",
        free_port(),
        &env(&dynamodb, &table, &bucket),
    );

    // A native S3 notification (what S3 invokes the function with).
    let first = s3_notification(&bucket, &keys[0], weights.len(), "0062E99A88DC407460");
    let r = report(lambda.invoke(first.clone(), &function).await, &function);
    assert_eq!(r["verdict"], "done", "{r}");
    assert_eq!(r["events"][0]["outcome"], "registered", "{r}");
    assert_eq!(r["events"][0]["artifactState"], "LIVE", "{r}");
    // An EventBridge event (an EventBridge rule's target) for the second file.
    let eventbridge = json!({
        "version": "0", "id": "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
        "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "time": "2026-11-27T12:00:01Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": keys[1], "size": config.len(), "sequencer": "0062E99A88DC407461"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}
    });
    let r = report(lambda.invoke(eventbridge, &function).await, &function);
    assert_eq!(r["events"][0]["outcome"], "registered", "{r}");
    // The same notification again (S3 delivers at least once): nothing changes.
    let r = report(lambda.invoke(first, &function).await, &function);
    assert_eq!(r["events"][0]["applied"], false, "{r}");
    // A malformed event is answered (not an error, so Lambda does not retry it).
    let r = report(
        lambda
            .invoke(json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]}), &function)
            .await,
        &function,
    );
    assert_eq!(r["verdict"], "malformed", "{r}");

    // The registration, read through the API of another binary on the table.
    let (_reader, base) =
        Process::start_http("registry-local", &env(&dynamodb, &table, &bucket)).await;
    let http = http_client();
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let api = format!("{base}/api/model_registry/v1");
    let m = get(format!("{api}/registered_model?name={model}")).await;
    let versions = get(format!(
        "{api}/registered_models/{}/versions",
        m["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(versions["size"], 1, "{versions}");
    let v = &versions["items"][0];
    assert_eq!(v["name"], "1.0.0");
    let artifacts = get(format!(
        "{api}/model_versions/{}/artifacts",
        v["id"].as_str().unwrap()
    ))
    .await;
    assert_eq!(artifacts["size"], 1, "{artifacts}");
    let a = &artifacts["items"][0];
    assert_eq!(a["name"], model.as_str());
    assert_eq!(a["state"], "LIVE");
    assert_eq!(a["uri"], format!("s3://{bucket}/models/{model}/1.0.0"));
    assert_eq!(a["customProperties"]["file_count"]["int_value"], "2");
    let listing = format!(
        "{}  config.json\n{}  model.onnx\n",
        hex::encode(Sha256::digest(&config)),
        hex::encode(Sha256::digest(&weights))
    );
    assert_eq!(
        a["customProperties"]["sha256"]["string_value"],
        hex::encode(Sha256::digest(listing.as_bytes()))
    );

    // The store unreachable: an invocation error, so Lambda delivers again.
    let down = RuntimeApi::start().await;
    let mut broken = env("http://127.0.0.1:1", &table, &bucket);
    broken.retain(|(k, _)| *k != "MR_CREATE_TABLE");
    let unlucky = down.spawn_with("storage-events", free_port(), &broken);
    let event = s3_notification(&bucket, &keys[0], weights.len(), "0062E99A88DC407462");
    match down.invoke(event, &unlucky).await {
        Outcome::Error(kind, body) => {
            assert!(!kind.is_empty(), "{body}");
            assert!(
                body["errorMessage"].as_str().unwrap().contains("retried"),
                "{body}"
            );
        }
        Outcome::Response(v) => panic!("expected an invocation error, got {v}"),
    }
}
