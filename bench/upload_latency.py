#!/usr/bin/env python3
"""Time from upload to visible registration, against a running registry whose
artifact store is S3 (MR_ARTIFACT_BUCKET, e.g. on s3s-fs), two ways:

- storage event: the bytes go to the bucket (a presigned PUT, no client
  credentials needed), then the event S3 would send is delivered to
  /events/storage as Knative would (a binary-mode CloudEvent), and the model
  artifact is polled through the API until it reads LIVE;
- upload extension: start a session, PUT the bytes, call completion (which
  verifies and registers in-process); the artifact is then LIVE.

The clock starts before the PUT and stops when a client sees the artifact
LIVE. A deployment adds the notification delay of S3 (not measured here).
Standard library only.

    upload_latency.py --url http://127.0.0.1:8080 [--uploads 30] [--bytes 262144]
                      [--system NAME] [--results results.jsonl]

Prints a JSON summary; with --results, appends one `workload` record per way
(the shape of bench/loadgen's results.jsonl).
"""

import argparse
import hashlib
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
API = "/api/model_registry/v1"
EXT = "/api/registry_ext/v1"


def call(method, url, body=None, headers=None, raw=False):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and not raw and "content-type" not in {k.lower() for k in req.headers}:
        req.add_header("content-type", "application/json")
    try:
        with OPENER.open(req, timeout=60) as resp:
            payload = resp.read()
            return resp.status, dict(resp.headers), (json.loads(payload) if payload and not raw else payload)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def expect(status, want, what, body):
    if status != want:
        sys.exit(f"{what}: HTTP {status} (expected {want}): {body!r}")


def version(base, model, name):
    s, _, m = call("POST", f"{base}{API}/registered_models", {"name": model})
    expect(s, 201, "create model", m)
    s, _, v = call("POST", f"{base}{API}/model_versions", {"name": name, "registeredModelId": m["id"]})
    expect(s, 201, "create version", v)
    return v["id"]


def start(base, vid, payload):
    files = [{"path": "model.bin", "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}]
    s, _, session = call("POST", f"{base}{EXT}/model_versions/{vid}/uploads", {"files": files})
    expect(s, 201, "start upload", session)
    return session


def put(url, payload):
    s, headers, body = call("PUT", url, payload, raw=True)
    expect(s, 200, "PUT", body)
    return {k.lower(): v for k, v in headers.items()}.get("etag", "").strip('"')


def visible(base, model, vid, deadline_s=30):
    query = urllib.parse.urlencode({"name": model, "parentResourceId": vid})
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        s, _, a = call("GET", f"{base}{API}/model_artifact?{query}")
        if s == 200 and a.get("state") == "LIVE":
            return
        time.sleep(0.002)
    sys.exit(f"{model}: not LIVE within {deadline_s}s")


def via_event(base, bucket, i, payload):
    model, name = f"latency-ev-{uuid.uuid4().hex[:8]}", str(i)
    vid = version(base, model, name)
    session = start(base, vid, payload)
    key = session["files"][0]["key"]
    began = time.monotonic()
    etag = put(session["files"][0]["upload"]["url"], payload)
    record = {
        "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": urllib.parse.quote(key, safe="/"), "size": len(payload),
                          "eTag": etag, "sequencer": f"{time.time_ns():020X}"}},
    }
    s, _, report = call("POST", f"{base}/events/storage", {"Records": [record]}, {
        "ce-specversion": "1.0", "ce-id": uuid.uuid4().hex, "ce-source": f"arn:aws:s3:::{bucket}",
        "ce-type": "com.amazonaws.s3.ObjectCreated:Put", "content-type": "application/json"})
    expect(s, 202, "deliver event", report)
    visible(base, model, vid)
    return time.monotonic() - began


def via_extension(base, i, payload):
    model, name = f"latency-ext-{uuid.uuid4().hex[:8]}", str(i)
    vid = version(base, model, name)
    session = start(base, vid, payload)
    began = time.monotonic()
    put(session["files"][0]["upload"]["url"], payload)
    s, _, done = call("POST", session["complete"]["url"], {})
    expect(s, 200, "complete", done)
    if done["modelArtifact"]["state"] != "LIVE":
        sys.exit(f"completion did not register: {done}")
    return time.monotonic() - began


def summary(samples):
    ms = sorted(x * 1000 for x in samples)
    q = lambda p: ms[min(len(ms) - 1, round((len(ms) - 1) * p))]
    total = sum(samples)
    return {"requests": len(ms), "errors": 0, "concurrency": 1,
            "ops_per_s": len(ms) / total if total else 0.0,
            "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": ms[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="registry base URL (registry-local on S3)")
    ap.add_argument("--uploads", type=int, default=30)
    ap.add_argument("--bytes", type=int, default=256 * 1024)
    ap.add_argument("--system", default="ours")
    ap.add_argument("--results", help="append workload records to this results.jsonl")
    args = ap.parse_args()
    base = args.url.rstrip("/")
    payload = bytes(i % 241 for i in range(args.bytes))
    # The bucket name, from where the registry puts a version's files.
    probe = start(base, version(base, f"latency-probe-{uuid.uuid4().hex[:8]}", "0"), payload)
    url = probe["files"][0]["upload"]["url"]
    if "/api/registry_ext/" in url:
        sys.exit("the registry has no S3 bucket (MR_ARTIFACT_BUCKET): uploads go through it")
    bucket = urllib.parse.urlparse(url).path.lstrip("/").split("/", 1)[0]
    event = [via_event(base, bucket, i, payload) for i in range(args.uploads)]
    extension = [via_extension(base, i, payload) for i in range(args.uploads)]
    out = {"object_bytes": args.bytes,
           "upload to visible (storage event)": summary(event),
           "upload to visible (upload extension)": summary(extension)}
    print(json.dumps(out, indent=2))
    if args.results:
        with open(args.results, "a") as f:
            for op in ("upload to visible (storage event)", "upload to visible (upload extension)"):
                f.write(json.dumps({"kind": "workload", "system": args.system, "op": op, **out[op]}) + "\n")


if __name__ == "__main__":
    main()
