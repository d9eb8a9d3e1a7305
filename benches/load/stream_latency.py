#!/usr/bin/env python3
"""The Activity stream's figures (issue 12), against `amber demo` (the server and the fake
X API with its Activity API in one process):

1. event-to-feed latency: N times, a post is added to the fake and its `post.create` sent
   on the stream (`POST /_fake/activity/events`); timed from just before that control call
   to (a) the post's `new` event on an open `GET /api/feed/events` client and (b) the post
   being the first of `GET /api/feed?source=x` (polled in a tight loop). p50/p99/max.
2. events/s one instance absorbs: `POST /_fake/activity/burst` adds COUNT posts and writes
   a `post.create` for each on the stream as fast as it can; timed from the burst request
   to the stream's `events.post.create` counter (counted once a batch is stored) reaching
   COUNT more, and to `/api/feed`'s total showing every post.

Usage: benches/load/stream_latency.py [BINARY] [N] [COUNT]
       (default target/release/amber, 200 events, a 20,000-post burst)

The fake runs inside the demo process: the burst's rendering and writing share the two
cores with the server (the fake's own time is printed as `emit_ms`).
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/amber"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
COUNT = int(sys.argv[3]) if len(sys.argv) > 3 else 20000


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def thread_cpu(pid):
    """CPU seconds (user + system) per thread of `pid`, by thread id and name."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / hz)
    return out


def sse_reader(host, port, arrivals, ready):
    """Records the monotonic time of every `new` event on one event stream."""
    s = socket.create_connection((host, port))
    s.sendall(b"GET /api/feed/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        now = time.monotonic()
        buf += chunk
        if b": connected" in buf:
            ready.set()
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            if b"event: new\n" in block:
                arrivals.append(now)


def main():
    tmp = tempfile.mkdtemp(prefix="amber-stream-bench-")
    env = dict(
        os.environ, PORT="0", HOST="127.0.0.1", TMPDIR=tmp, LOG_FORMAT="json",
        RUST_LOG="warn", RATE_LIMITING_ENABLED="false",
    )
    demo = subprocess.Popen(
        [BINARY, "demo", "--leaders", "1", "--posts", "5", "--new-post-every", "0"],
        env=env, stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "server.log"), "w"),
        text=True,
    )
    try:
        run(demo)
    finally:
        demo.terminate()
        demo.wait(timeout=60)
        subprocess.run(["rm", "-rf", tmp])


def run(demo):
    address = demo.stdout.readline().strip().removeprefix("amber listening on ")
    control = re.search(r"simulated X API at (\S+)/2 ", demo.stdout.readline()).group(1)
    threading.Thread(target=lambda: [None for _ in demo.stdout], daemon=True).start()
    host, port = address.removeprefix("http://").rsplit(":", 1)
    status = f"{address}/api/ingestion/status"
    deadline = time.monotonic() + 120
    while True:
        try:
            s = get(status)["stream"]
            if s["connected"] and s["subscriptions"]["held"] == 2:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the demo's stream did not connect"
        time.sleep(0.2)
    arrivals, ready = [], threading.Event()
    threading.Thread(target=sse_reader, args=(host, int(port), arrivals, ready), daemon=True).start()
    assert ready.wait(30), "no event stream"
    while get(f"{address}/api/feed?source=x&page_size=1")["total"] < 5:  # the first poll
        assert time.monotonic() < deadline, "the demo's first poll did not end"
        time.sleep(0.2)
    user = get(f"{address}/api/feed?source=x&page_size=1")["posts"][0]["author"]["handle"]

    sse_ms, feed_ms = [], []
    feed = f"{address}/api/feed?source=x&page_size=1"
    for _ in range(N):
        pid = post(f"{control}/_fake/users/{user}/posts", {"count": 1})["ids"][0]
        seen = len(arrivals)
        t0 = time.monotonic()
        post(f"{control}/_fake/activity/events", {"event_type": "post.create", "post_id": pid})
        while True:
            top = get(feed)["posts"]
            if top and top[0]["platformPostId"] == pid:
                feed_ms.append((time.monotonic() - t0) * 1000)
                break
            assert time.monotonic() - t0 < 30, f"post {pid} not in the feed after 30 s"
        while len(arrivals) <= seen:
            assert time.monotonic() - t0 < 30, f"post {pid} not on the event stream after 30 s"
            time.sleep(0.001)
        sse_ms.append((arrivals[seen] - t0) * 1000)
        time.sleep(0.02)
    for name, xs in [("in /api/feed", feed_ms), ("on an SSE client", sse_ms)]:
        print(f"event-to-feed latency, {name} ({len(xs)} events): p50 {pct(xs, 50):.1f} ms, "
              f"p99 {pct(xs, 99):.1f} ms, max {max(xs):.1f} ms")

    before = get(status)["stream"]["events"]["post.create"]
    total_before = get(f"{address}/api/feed?source=x&page_size=1")["total"]
    cpu0 = thread_cpu(demo.pid)
    t0 = time.monotonic()
    burst = post(f"{control}/_fake/activity/burst", {"username": user, "count": COUNT})
    t_sent = time.monotonic() - t0
    assert burst["delivered"] == COUNT, burst
    while get(status)["stream"]["events"]["post.create"] < before + COUNT:
        assert time.monotonic() - t0 < 600, "the burst was not absorbed in 600 s"
        time.sleep(0.01)
    t_read = time.monotonic() - t0
    while get(f"{address}/api/feed?source=x&page_size=1")["total"] < total_before + COUNT:
        assert time.monotonic() - t0 < 600, "the burst is not all in the feed after 600 s"
        time.sleep(0.01)
    t_feed = time.monotonic() - t0
    cpu1 = thread_cpu(demo.pid)
    used = {}
    for tid, (name, secs) in cpu1.items():
        label = "main (actix System: stream driver, actors)" if tid == str(demo.pid) else name
        used[label] = used.get(label, 0) + secs - cpu0.get(tid, (name, 0))[1]
    total = sum(used.values())
    print(f"CPU during the burst: {total:.2f} s = {total / COUNT * 1e6:.0f} us an event "
          f"(the fake's rendering included); by thread: " + ", ".join(
              f"{k} {v:.2f} s" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.05))
    print(f"burst of {COUNT} post.create: the fake wrote them in {burst['emit_ms']} ms "
          f"(its answer after {t_sent:.2f} s); stored and counted by the stream after "
          f"{t_read:.2f} s = {COUNT / t_read:,.0f} events/s; all in /api/feed after "
          f"{t_feed:.2f} s = {COUNT / t_feed:,.0f} events/s")


main()
