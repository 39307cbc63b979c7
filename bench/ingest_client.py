"""One /import client process: `python -m bench.ingest_client URL SECRET JSONL CLIENT CLIENTS BATCH LIMIT`.

Takes every CLIENTS-th batch (starting at CLIENT) of BATCH events from the first LIMIT lines of
JSONL, gzips each batch body before the clock starts, prints `ready`, waits for a line on stdin,
posts its batches one after another on one keep-alive connection (`/import?strict=1`, Basic auth
with the project secret, `Content-Encoding: gzip`), and prints a JSON summary.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from base64 import b64encode
from itertools import islice
from urllib.parse import urlsplit

from isal import isal_zlib


def main(argv: list[str]) -> None:
    url, secret, jsonl, client, clients, batch, limit = argv
    me, n_clients, batch_size, n_limit = int(client), int(clients), int(batch), int(limit)
    bodies: list[tuple[int, bytes]] = []
    with open(jsonl, "rb") as f:
        lines = islice(f, n_limit)
        index = 0
        while True:
            events = [line.rstrip(b"\n") for line in islice(lines, batch_size)]
            if not events:
                break
            if index % n_clients == me:
                raw = b"[" + b",".join(events) + b"]"
                compressor = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)
                bodies.append((len(events), compressor.compress(raw) + compressor.flush()))
            index += 1
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
    headers = {
        "Authorization": "Basic " + b64encode(f"{secret}:".encode()).decode(),
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    sent = 0
    failures = 0
    latencies: list[float] = []
    for count, body in bodies:
        t0 = time.monotonic()
        conn.request("POST", "/import?strict=1", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append(time.monotonic() - t0)
        if response.status == 200:
            sent += count
        else:
            failures += 1
            if failures == 1:
                print(f"error {response.status}: {payload[:300]!r}", file=sys.stderr)
    finished = time.monotonic()
    latencies.sort()
    summary = {
        "events": sent,
        "failures": failures,
        "started": started,
        "finished": finished,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
