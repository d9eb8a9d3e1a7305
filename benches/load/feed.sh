#!/usr/bin/env bash
# Load test of the feed over real HTTP on loopback (issue 2's figures):
#   benches/load/feed.sh            # 100k posts
#   N=10000 benches/load/feed.sh    # another store size
# Needs wrk (apt-get install wrk). Builds the release binary and the seed_store example,
# fills a temp DATA_DIR with N synthetic X posts, then measures start-up, idle RSS and
# req/s of /api/feed next to /bench/fixed (the same number of bytes, no work) in one run.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
PORT=${PORT:-5077}
DURATION=${DURATION:-15s}
cargo build --release --bin amber --example seed_store >/dev/null 2>&1
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$DIR"' EXIT
./target/release/examples/seed_store "$DIR" "$N"

start() {
  local t0 t1
  t0=$(date +%s%N)
  DATA_DIR=$DIR PORT=$PORT AMBER_BENCH_ROUTES=true RATE_LIMITING_ENABLED=false RUST_LOG=warn \
    ./target/release/amber >"$DIR/out" 2>"$DIR/err" &
  echo $! >"$DIR/pid"
  until curl -s -o /dev/null "http://127.0.0.1:$PORT/livez"; do sleep 0.002; done
  t1=$(date +%s%N)
  echo "start-up to first answer: $(( (t1 - t0) / 1000000 )) ms ($1)"
}
stop() { kill -TERM "$(cat "$DIR/pid")"; while kill -0 "$(cat "$DIR/pid")" 2>/dev/null; do sleep 0.05; done; }

start "after seeding: index rebuilt from sled"
stop
start "after a clean shutdown: index from its snapshot"
sleep 2
echo "idle RSS: $(grep VmRSS /proc/"$(cat "$DIR/pid")"/status | awk '{print $2 " " $3}')"

BYTES=$(curl -s "http://127.0.0.1:$PORT/api/feed?page_size=20" | wc -c)
echo "feed page of 20 = $BYTES bytes"
run() { printf '%-40s %s\n' "$1" "$(wrk -t2 -c32 -d"$DURATION" ${3:-} "http://127.0.0.1:$PORT$2" | awk '/Requests\/sec/ {print $2 " req/s"} /Latency/ {lat=$2} END {print "avg latency " lat}' | paste -sd' ')"; }
run "fixed bytes (the ceiling)" "/bench/fixed?bytes=$BYTES"
run "feed page 1" "/api/feed?page_size=20"
run "feed page 4000" "/api/feed?page_size=20&page=4000"
run "feed, random page of 5000 (uncached)" "/api/feed" "-s benches/load/random_pages.lua"
run "fixed bytes again" "/bench/fixed?bytes=$BYTES"
echo "RSS after load: $(grep VmRSS /proc/"$(cat "$DIR/pid")"/status | awk '{print $2 " " $3}')"
stop
