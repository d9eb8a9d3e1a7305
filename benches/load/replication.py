#!/usr/bin/env python3
"""Replication's figures (issue 15), on a redis-server of the script's own (AOF on,
`appendfsync everysec`, as README recommends) and instances of BINARY on 127.0.0.1:

1. writes/s: WRITES `POST /api/posts` from CONC client threads (keep-alive connections),
   against one instance without replication, then spread over three instances with
   `REPLICATION=redis` (each write answers once its own instance applied its entry).
   Throughput and the write latency p50/p99.
2. replication lag under a steady write load: RATE writes/s for SECONDS on instance a;
   for every write, the time from a's answer until the post is readable on b and on c
   (`GET /api/posts/{id}` polled every 2 ms, in write order). p50/p99/max per instance.
3. catch-up: an instance started on an empty DATA_DIR after everything above is in the
   stream (every entry from the first): entries applied per second, from its first
   health answer to `applied` reaching the stream's head (its start-up time apart).

While the script runs, a member record pinned at the stream's start (`bench-pin`, as an
instance that stopped a moment ago would leave) keeps the instances from trimming the
stream, so the late instance of step 3 can read it from the first entry.

Usage: benches/load/replication.py [BINARY] [WRITES] [CONC] [RATE] [SECONDS]
       (default target/release/amber, 3000 writes, 8 threads, 100 writes/s for 20 s)
Needs redis-server and redis-cli on PATH. Run from the repository root.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/amber"
WRITES = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
CONC = int(sys.argv[3]) if len(sys.argv) > 3 else 8
RATE = float(sys.argv[4]) if len(sys.argv) > 4 else 100.0
SECONDS = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
SECRET = "replication-bench-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


WORK = tempfile.mkdtemp(prefix="amber-repl-bench-")
PROCS = []


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(WORK, ignore_errors=True)


REDIS_PORT = free_port()
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}"
CLUSTER = f"bench-{int(time.time())}"
STREAM = "amber:repl:{" + CLUSTER + "}"


def redis_cli(*args):
    return subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


class Instance:
    def __init__(self, name, replicated, extra=None):
        self.name = name
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir)
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("X_", "REDIS", "REPLICATION", "NOTIFY"))
        }
        env.update({
            "HOST": "127.0.0.1", "PORT": "0", "DATA_DIR": self.dir, "RUST_LOG": "warn",
            "LOG_FORMAT": "json", "ADMIN_JWT_SECRET": SECRET, "RATE_LIMITING_ENABLED": "false",
            "X_INGEST_ENABLED": "false", "SEED_FILE": os.path.abspath("data/leaders.json"),
        })
        if replicated:
            env.update({"REDIS_URL": REDIS_URL, "REPLICATION": "redis",
                        "REPLICATION_CLUSTER": CLUSTER})
        env.update(extra or {})
        self.env = env
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BINARY], env=env, stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.dir, "log"), "w"), text=True,
        )
        PROCS.append(self.proc)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} exited; see {self.dir}/log")
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                break
            sys.stderr.write(f"{name}: {line}")
        self.listening = time.monotonic()
        self.port = int(json.loads(line)["address"].rsplit(":", 1)[1])
        # Keep draining stdout so the instance never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.token = subprocess.run(
            [BINARY, "token", "--sub", "bench"], env=env, capture_output=True, text=True,
            check=True,
        ).stdout.strip()

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def health(self, conn=None):
        c = conn or self.conn()
        c.request("GET", "/api/health")
        r = c.getresponse()
        return json.loads(r.read())["checks"].get("replication", {})

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def create(conn, token, text):
    body = json.dumps({"leaderId": 1, "platform": "news", "content": text})
    conn.request("POST", "/api/posts", body=body, headers={
        "content-type": "application/json", "authorization": f"Bearer {token}"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 201:
        raise RuntimeError(f"write answered {r.status}: {data[:200]!r}")
    return int(json.loads(data)["id"])


def write_burst(instances, n, conc, tag):
    """n writes from conc threads, thread i writing to instances[i % len]."""
    lat, errors = [], []
    lock = threading.Lock()
    counter = iter(range(n))

    def worker(i):
        inst = instances[i % len(instances)]
        conn = inst.conn()
        mine = []
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                break
            t = time.perf_counter()
            try:
                create(conn, inst.token, f"{tag} {k}")
            except Exception as e:  # noqa: BLE001 (counted and shown)
                errors.append(str(e))
                conn = inst.conn()
                continue
            mine.append(time.perf_counter() - t)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    return {"writes": len(lat), "errors": len(errors), "seconds": round(secs, 2),
            "writes_per_s": round(len(lat) / secs, 1),
            "p50_ms": round(pct(lat, 50) * 1000, 2), "p99_ms": round(pct(lat, 99) * 1000, 2),
            "first_error": errors[0] if errors else None}


def wait_converged(instances, deadline=120):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        hs = [i.health() for i in instances]
        if len({h.get("position") for h in hs}) == 1 and all(h.get("lagEntries") == 0 for h in hs):
            return hs[0]
        time.sleep(0.2)
    raise RuntimeError("instances did not converge")


def steady_lag(writer, followers, rate, seconds):
    queues = {f.name: [] for f in followers}
    cond = threading.Condition()
    done = threading.Event()
    lags = {f.name: [] for f in followers}

    def follow(f):
        conn = f.conn()
        k = 0
        while True:
            with cond:
                while k >= len(queues[f.name]) and not done.is_set():
                    cond.wait(0.1)
                if k >= len(queues[f.name]):
                    return
                pid, acked = queues[f.name][k]
            while True:
                conn.request("GET", f"/api/posts/{pid}")
                r = conn.getresponse()
                r.read()
                if r.status == 200:
                    break
                time.sleep(0.002)
            lags[f.name].append(time.perf_counter() - acked)
            k += 1

    threads = [threading.Thread(target=follow, args=(f,)) for f in followers]
    for t in threads:
        t.start()
    conn = writer.conn()
    n = int(rate * seconds)
    t0 = time.perf_counter()
    write_lat = []
    for k in range(n):
        due = t0 + k / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        t = time.perf_counter()
        pid = create(conn, writer.token, f"steady {k}")
        acked = time.perf_counter()
        write_lat.append(acked - t)
        with cond:
            for q in queues.values():
                q.append((pid, acked))
            cond.notify_all()
    achieved = n / (time.perf_counter() - t0)
    done.set()
    with cond:
        cond.notify_all()
    for t in threads:
        t.join()
    out = {"writes": n, "achieved_per_s": round(achieved, 1),
           "write_p50_ms": round(pct(write_lat, 50) * 1000, 2),
           "write_p99_ms": round(pct(write_lat, 99) * 1000, 2)}
    for name, xs in lags.items():
        out[name] = {"lag_p50_ms": round(pct(xs, 50) * 1000, 2),
                     "lag_p99_ms": round(pct(xs, 99) * 1000, 2),
                     "lag_max_ms": round(max(xs) * 1000, 2)}
    return out


def main():
    redis_dir = os.path.join(WORK, "redis")
    os.makedirs(redis_dir)
    PROCS.append(subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "yes",
         "--appendfsync", "everysec", "--dir", redis_dir],
        stdout=subprocess.DEVNULL))
    for _ in range(100):
        try:
            if redis_cli("ping") == "PONG":
                break
        except subprocess.CalledProcessError:
            pass
        time.sleep(0.05)
    stop_pin = threading.Event()

    def pin():
        while not stop_pin.is_set():
            redis_cli("HSET", STREAM + ":members", "bench-pin", f"{int(time.time() * 1000)} 0-1")
            stop_pin.wait(1)

    threading.Thread(target=pin, daemon=True).start()
    print(f"load average before: {os.getloadavg()}", flush=True)

    single = Instance("single", replicated=False)
    create(single.conn(), single.token, "warm-up")
    base = write_burst([single], WRITES, CONC, "single")
    print("one instance, no replication:", json.dumps(base), flush=True)
    single.stop()

    a, b, c = (Instance(n, replicated=True) for n in "abc")
    wait_converged([a, b, c])
    repl = write_burst([a, b, c], WRITES, CONC, "replicated")
    print("three instances, writes spread over them:", json.dumps(repl), flush=True)
    repl_one = write_burst([a], WRITES, CONC, "replicated-a")
    print("three instances, every write to a:", json.dumps(repl_one), flush=True)
    wait_converged([a, b, c])

    lag = steady_lag(a, [b, c], RATE, SECONDS)
    print(f"steady load of {RATE:g} writes/s on a for {SECONDS:g} s:", json.dumps(lag),
          flush=True)
    head = wait_converged([a, b, c])

    late = Instance("late", replicated=True, extra={"SEED_LEADERS": "false"})
    conn = late.conn()
    first = late.health(conn)
    t0 = time.monotonic()
    target = head["applied"]
    while True:
        h = late.health(conn)
        if h.get("applied", 0) >= target:
            break
        time.sleep(0.05)
    now = time.monotonic()
    secs, whole = now - t0, now - late.started
    print("catch-up:", json.dumps({
        "entries": target, "applied_at_first_answer": first.get("applied", 0),
        "seconds_from_first_answer": round(secs, 2),
        "entries_per_s_from_first_answer": round((target - first.get("applied", 0)) / secs, 1),
        "seconds_from_process_start": round(whole, 2),
        "entries_per_s_from_process_start": round(target / whole, 1),
        "startup_s": round(late.listening - late.started, 2)}), flush=True)
    stop_pin.set()
    print(f"load average after: {os.getloadavg()}", flush=True)


# A SIGTERM (e.g. `timeout`) ends through `finally` too: no instance or redis-server left.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
try:
    main()
finally:
    cleanup()
