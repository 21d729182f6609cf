"""The upstream client's `upload_artifact_and_register_model` with `S3Params`
pointed at s3s-fs, then the storage events S3 would send for that upload,
delivered to our `/events/storage` as Knative would (CloudEvents, binary
mode): the events converge on the client's entities (same version, same
model artifact, named after the model) and add the files' digests; no
duplicate version or artifact appears.

Needs the server on an S3 bucket: tests/run.sh sets MR_ARTIFACT_BUCKET,
AWS_ENDPOINT_URL_S3 and the s3s-fs keys (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY) for the server and this file; without them the
tests are skipped. Requires boto3 (installed by tests/compat/run.sh).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from model_registry import ModelRegistry
from model_registry.types import ArtifactState

from test_client import AUTHOR, connect, server_address, uniq

BUCKET = os.environ.get("MR_ARTIFACT_BUCKET")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL_S3")
ACCESS_KEY = os.environ.get("AWS_ACCESS_KEY_ID")
SECRET_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.skipif(
    not (BUCKET and ENDPOINT and ACCESS_KEY and SECRET_KEY),
    reason="the server has no S3 artifact bucket (MR_ARTIFACT_BUCKET, AWS_ENDPOINT_URL_S3)",
)

try:
    from model_registry.utils import S3Params
except ImportError:  # pragma: no cover - every tested client version has it
    S3Params = None


@pytest.fixture(scope="module")
def s3():
    boto3 = pytest.importorskip("boto3")
    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    try:
        client.create_bucket(Bucket=BUCKET)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    except client.exceptions.BucketAlreadyExists:
        pass
    return client


def base_url() -> str:
    host, port = server_address()
    return f"{host}:{port}"


def http(method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    headers = dict(headers or {})
    if os.environ.get("MR_USER_TOKEN"):  # the server runs with MR_AUTH=jwt
        headers["Authorization"] = "Bearer " + os.environ["MR_USER_TOKEN"]
    req = urllib.request.Request(base_url() + path, data=body, method=method, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def deliver_created(s3, key: str, sequencer: str) -> dict:
    """The ObjectCreated event S3 would emit for `key`, as a binary-mode
    CloudEvent (what Knative delivers), built from the object's metadata."""
    head = s3.head_object(Bucket=BUCKET, Key=key)
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": head["LastModified"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {
                "key": urllib.parse.quote(key, safe="/").replace("%20", "+"),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
                "sequencer": sequencer,
            },
        },
    }
    status, report = http(
        "POST",
        "/events/storage",
        json.dumps({"Records": [record]}).encode(),
        {
            "ce-specversion": "1.0",
            "ce-id": uuid.uuid4().hex,
            "ce-source": f"arn:aws:s3:::{BUCKET}",
            "ce-type": "com.amazonaws.s3.ObjectCreated:Put",
            "content-type": "application/json",
        },
    )
    assert status == 202, report
    return report["events"][0]


def test_client_upload_and_our_storage_events_make_one_version(tmp_path: Path, s3):
    if S3Params is None:
        pytest.skip("this client has no S3Params")
    files = {
        "model.onnx": b"onnx model bytes " * 1000,
        "tokenizer/vocab.json": b'{"vocab": ["a", "b", "c"]}',
    }
    for rel, content in files.items():
        path = tmp_path / "model" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    name = uniq("s3-upload")
    version = "1.0.0"
    prefix = f"models/{name}/{version}"
    registry: ModelRegistry = connect()
    registry.upload_artifact_and_register_model(
        name,
        str(tmp_path / "model"),
        upload_params=S3Params(
            bucket_name=BUCKET,
            s3_prefix=prefix,
            endpoint_url=ENDPOINT,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
        ),
        version=version,
        model_format_name="onnx",
        model_format_version="1",
        author=AUTHOR,
        metadata={"accuracy": 0.91, "framework": "pytorch"},
    )
    before = registry.get_model_artifact(name, version)
    assert before is not None
    assert before.uri.startswith(f"s3://{BUCKET}/{prefix}")

    # S3's events for the two uploaded objects, delivered (twice: at least once).
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"])
    assert keys == [f"{prefix}/{rel}" for rel in sorted(files)]
    for i, key in enumerate(keys):
        outcome = deliver_created(s3, key, f"{0x62 << 48 | i:018X}")
        assert outcome["outcome"] == "registered", outcome
        assert outcome["applied"] is True, outcome
        again = deliver_created(s3, key, f"{0x62 << 48 | i:018X}")
        assert again["applied"] is False, again

    # One version, one model artifact: the client's, now with digests.
    versions = list(registry.get_model_versions(name))
    assert [v.name for v in versions] == [version]
    status, artifacts = http("GET", f"/api/model_registry/v1/model_versions/{versions[0].id}/artifacts")
    assert status == 200, artifacts
    assert artifacts["size"] == 1, artifacts
    artifact = artifacts["items"][0]
    assert artifact["artifactType"] == "model-artifact"
    assert artifact["id"] == before.id
    assert artifact["name"] == name
    assert artifact["uri"] == before.uri, "the client's URI (with its endpoint) is kept"
    assert artifact["state"] == "LIVE"
    assert artifact["modelFormatName"] == "onnx"
    custom = artifact["customProperties"]
    assert custom["file_count"]["int_value"] == "2"
    assert custom["size_bytes"]["int_value"] == str(sum(len(c) for c in files.values()))
    listing = "".join(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n" for rel in sorted(files))
    assert custom["sha256"]["string_value"] == hashlib.sha256(listing.encode()).hexdigest()

    # The client reads it as before; the version keeps its metadata.
    after = registry.get_model_artifact(name, version)
    assert after.id == before.id
    assert after.state == ArtifactState.LIVE
    mv = registry.get_model_version(name, version)
    assert mv.custom_properties["accuracy"] == pytest.approx(0.91)
    assert mv.custom_properties["framework"] == "pytorch"
    assert len(list(registry.get_model_versions(name))) == 1
