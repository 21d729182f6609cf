#!/usr/bin/env python3
"""Cold start, binary size and idle memory of the function binaries.

For each binary: its size on disk (the `deploy` profile strips it), the time
from exec to the first 200 answer on /readyz/health (median and spread of
--runs fresh processes), and its resident memory (VmRSS) once idle after a
few requests.

    python3 bench/coldstart.py [--profile deploy] [--runs 20] [--store embedded|dynamodb]
                               [--fresh-store] [--json FILE] BINARY...

With the embedded store every run opens the same store, created by a first
run that is not counted (a process starting on existing data); with
--fresh-store each run creates a new one (first start ever: the database file
is created and synced).

`make coldstart` builds the deploy binaries and runs this on every function.
With --store dynamodb the SDK is configured against an address where nothing
listens: start-up must not touch the store, so the numbers are the same kind.
Prints a Markdown table (for the README) and, with --json, one JSON object
per binary.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEALTH = b"GET /readyz/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_ok(port):
    """One GET /readyz/health; True on a 200 answer, False if not listening yet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(HEALTH)
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# What a binary needs beyond the store to start: the events function refuses
# to start without a sink. Nothing listens on port 9 (discard), and start-up
# never calls the sink.
START_ENV = {"events": {"MR_EVENTS_SINK": "http://127.0.0.1:9/"}}


def environment(binary, port, data_dir, store):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MR_", "AWS_"))}
    env.pop("PORT", None)
    env.update(PORT=str(port), MR_DATA_DIR=data_dir, MR_LOG="warn", AWS_EC2_METADATA_DISABLED="true")
    env.update(START_ENV.get(os.path.basename(binary), {}))
    if store == "dynamodb":
        env.update(
            MR_STORE="dynamodb",
            AWS_ENDPOINT_URL_DYNAMODB=f"http://127.0.0.1:{free_port()}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_REGION="us-east-1",
        )
    return env


def start(binary, store, data_dir):
    """Start the binary; return (process, port, seconds from exec to first 200)."""
    port = free_port()
    env = environment(binary, port, data_dir, store)
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 10
    while not health_ok(port):
        if proc.poll() is not None or time.perf_counter() > deadline:
            proc.kill()
            raise RuntimeError(f"{binary} did not answer 200 on port {port}")
        time.sleep(0.0002)
    return proc, port, time.perf_counter() - t0


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(binary, runs, store, fresh):
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, _, _ = start(binary, store, os.path.join(tmp, "run"))
        stop(proc)
        for i in range(runs):
            data = os.path.join(tmp, f"run-{i}" if fresh else "run")
            proc, _, seconds = start(binary, store, data)
            stop(proc)
            times.append(seconds * 1000)
        proc, port, _ = start(binary, store, os.path.join(tmp, "idle"))
        for _ in range(10):
            health_ok(port)
        time.sleep(0.5)
        rss = rss_kib(proc.pid)
        stop(proc)
    return {
        "binary": os.path.basename(binary),
        "store": store + (" (fresh)" if fresh else ""),
        "runs": runs,
        "cold_start_ms_median": round(statistics.median(times), 2),
        "cold_start_ms_min": round(min(times), 2),
        "cold_start_ms_max": round(max(times), 2),
        "size_mib": round(os.path.getsize(binary) / 2**20, 2),
        "idle_rss_mib": round(rss / 1024, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", help="binary names (under target/<profile>/) or paths")
    ap.add_argument("--profile", default="deploy")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--store", choices=["embedded", "dynamodb"], default="embedded")
    ap.add_argument("--fresh-store", action="store_true", help="a new embedded store for every run")
    ap.add_argument("--json", help="also write one JSON object per binary to this file")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    results = []
    for name in args.binaries:
        path = name if os.sep in name else os.path.join(target, args.profile, name)
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} not found: build it with cargo build --profile {args.profile}")
        results.append(measure(path, args.runs, args.store, args.fresh_store))
    kind = f"{args.store}{', fresh' if args.fresh_store else ''} store"
    print(f"| binary ({args.profile}, {kind}) | cold start median (min-max), {args.runs} runs | stripped size | idle RSS |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| `{r['binary']}` | {r['cold_start_ms_median']:.1f} ms "
            f"({r['cold_start_ms_min']:.1f}-{r['cold_start_ms_max']:.1f}) "
            f"| {r['size_mib']:.1f} MiB | {r['idle_rss_mib']:.1f} MiB |"
        )
    if args.json:
        with open(args.json, "w") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
