#!/usr/bin/env python3
"""Memory of open SSE clients (issue 12): RSS of the server idle, then with N clients on
GET /api/feed/events, then whether one new post reaches every one of them.

Usage: benches/load/sse_clients.py [BINARY] [N]   (default target/release/amber, 1000)

Starts its own server on a temp DATA_DIR (rate limiting off, connection caps raised so N
clients from 127.0.0.1 fit), prints one line per figure. Python's asyncio holds the
clients, so the server's RSS is the server's alone.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/amber"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SECRET = "bench-secret-bench-secret-bench-secret"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


async def client(port, ready, got, want):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/feed/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    buf = b""
    while b": connected" not in buf:
        buf += await reader.read(4096)
    assert buf.startswith(b"HTTP/1.1 200"), buf[:80]
    ready.append(1)
    while want[0] is None or want[0].encode() not in buf:
        chunk = await reader.read(4096)
        if not chunk:
            return writer
        buf = buf[-8192:] + chunk
    got.append(time.monotonic())
    return writer


async def main():
    data = tempfile.mkdtemp(prefix="amber-sse-bench-")
    env = dict(
        os.environ,
        PORT="0",
        HOST="127.0.0.1",
        DATA_DIR=data,
        LOG_FORMAT="json",
        RUST_LOG="warn,amber=info",
        ADMIN_JWT_SECRET=SECRET,
        RATE_LIMITING_ENABLED="false",
        MAX_CONNECTIONS_PER_IP=str(N + 100),
        MAX_CONNECTIONS=str(N + 500),
        SSE_MAX_CONNECTIONS=str(N + 10),
    )
    log = open(os.path.join(data, "server.log"), "w+")
    server = subprocess.Popen([BINARY], env=env, stderr=log, stdout=log)
    port = None
    for _ in range(600):
        time.sleep(0.1)
        log.seek(0)
        m = re.search(r"amber is listening.*?127\.0\.0\.1:(\d+)", log.read())
        if m:
            port = int(m.group(1))
            break
    assert port, "server did not start"
    token = subprocess.run(
        [BINARY, "token", "--sub", "bench", "--role", "admin"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip().split()[-1]
    # Warm: a few feed reads, so idle is a server that has served.
    for _ in range(20):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/feed").read()
    time.sleep(1)
    idle = rss_kib(server.pid)
    print(f"idle RSS: {idle / 1024:.1f} MiB")
    ready, got, want = [], [], [None]
    tasks = [asyncio.create_task(client(port, ready, got, want)) for _ in range(N)]
    while len(ready) < N:
        await asyncio.sleep(0.05)
        if all(t.done() for t in tasks):
            break
    await asyncio.sleep(2)
    open_rss = rss_kib(server.pid)
    print(f"{len(ready)} open SSE clients RSS: {open_rss / 1024:.1f} MiB "
          f"(+{(open_rss - idle) / 1024:.1f} MiB, {(open_rss - idle) / max(1, len(ready)):.1f} KiB a client)")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    gauge = re.search(r"^amber_feed_event_streams_open (\d+)", metrics, re.M)
    print(f"amber_feed_event_streams_open: {gauge.group(1) if gauge else 'missing'}")
    body = json.dumps({"leaderId": 1, "platform": "news", "content": "to everyone"}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/posts", data=body, method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    sent = time.monotonic()
    post = json.loads(urllib.request.urlopen(req).read())
    want[0] = f'"id":"{post["id"]}"'
    deadline = time.monotonic() + 30
    while len(got) < len(ready) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    lat = sorted(t - sent for t in got)
    if lat:
        print(f"one new post reached {len(got)}/{len(ready)} clients: "
              f"first {lat[0] * 1000:.0f} ms, median {lat[len(lat) // 2] * 1000:.0f} ms, "
              f"last {lat[-1] * 1000:.0f} ms after the POST was sent")
    print(f"RSS after the broadcast: {rss_kib(server.pid) / 1024:.1f} MiB")
    server.terminate()
    t0 = time.monotonic()
    server.wait(timeout=60)
    print(f"SIGTERM with {len(ready)} streams open: exited {server.returncode} in {time.monotonic() - t0:.2f} s")
    for t in tasks:
        t.cancel()
    subprocess.run(["rm", "-rf", data])


asyncio.run(main())
