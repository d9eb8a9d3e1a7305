#!/usr/bin/env bash
# Memory under mixed load (issue 11 item 9): the release server at the Pi setting
# (SLED_CACHE_MB=8) on a seeded store, with random feed pages (4 connections) and post
# creation through the admin API (1 connection) at once for DURATION seconds; RSS is
# sampled every 10 s. Kept out of `cargo test`; run it by hand:
#   benches/load/soak.sh                      # 10 minutes, 20k seeded posts
#   DURATION=120 N=5000 benches/load/soak.sh  # a short look
#   DISTINCT=2000 benches/load/soak.sh        # writes stop growing the store after 2,000
#                                             # posts: every later create is a duplicate (409)
# Prints `t_s rss_mb` rows, then the figures of the last half (min, max, drift).
# Needs wrk. BIN (default target/release/amber) and SEED (the seed_store example,
# default target/release/examples/seed_store, else target/debug's) can be given.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20000}
PORT=${PORT:-5079}
DURATION=${DURATION:-600}
CACHE_MB=${SLED_CACHE_MB:-8}
BIN=${BIN:-target/release/amber}
SEED=${SEED:-target/release/examples/seed_store}
[ -x "$SEED" ] || SEED=target/debug/examples/seed_store
[ -x "$BIN" ] || cargo build --release --bin amber
[ -x "$SEED" ] || cargo build --example seed_store
WORK=$(mktemp -d)
trap 'kill $(cat "$WORK/pid" 2>/dev/null) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
"$SEED" "$WORK/store" "$N" 2>/dev/null
SECRET=soak-secret-soak-secret-soak-secret
echo "$(date -u +%FT%TZ) load: $(uptime | sed 's/.*load/load/')  SLED_CACHE_MB=$CACHE_MB  N=$N  DURATION=${DURATION}s  DISTINCT=${DISTINCT:-all new}"
DATA_DIR=$WORK/store PORT=$PORT SLED_CACHE_MB=$CACHE_MB RATE_LIMITING_ENABLED=false \
  ADMIN_JWT_SECRET=$SECRET RUST_LOG=warn "$BIN" >"$WORK/out" 2>"$WORK/err" &
echo $! >"$WORK/pid"
PID=$(cat "$WORK/pid")
until curl -s -o /dev/null "http://127.0.0.1:$PORT/livez"; do sleep 0.05; done
TOKEN=$(DATA_DIR=$WORK/store ADMIN_JWT_SECRET=$SECRET "$BIN" token --sub soak 2>/dev/null)
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' /proc/"$PID"/status; }
echo "t_s rss_mb"
echo "0 $(rss)"
MODE=mix POSTS=$N SPAN=$N wrk -t2 -c4 -d"${DURATION}s" -s benches/load/feed_pages.lua \
  "http://127.0.0.1:$PORT" >"$WORK/reads" 2>&1 &
READS=$!
TOKEN=$TOKEN LEADER=1 PREFIX=77 wrk -t1 -c1 -d"${DURATION}s" -s benches/load/create_posts.lua \
  "http://127.0.0.1:$PORT" >"$WORK/writes" 2>&1 &
WRITES=$!
for ((t = 10; t <= DURATION; t += 10)); do
  sleep 10
  echo "$t $(rss)" | tee -a "$WORK/rss"
done
wait $READS $WRITES || true
echo "reads: $(grep -E 'Requests/sec|Non-2xx' "$WORK/reads" | tr -s ' ' | tr '\n' ' ')"
echo "writes: $(grep -E 'Requests/sec|Non-2xx' "$WORK/writes" | tr -s ' ' | tr '\n' ' ')"
echo "posts stored: $N seeded, $(curl -s "http://127.0.0.1:$PORT/api/health" | sed 's/.*"posts":\([0-9]*\).*/\1/') at the end"
awk -v half=$((DURATION / 2)) '$1 >= half { if (min == "" || $2 < min) min = $2; if ($2 > max) max = $2; if (first == "") first = $2; last = $2 }
  END { printf "last half: min %.1f MB, max %.1f MB, first %.1f -> last %.1f MB\n", min, max, first, last }' "$WORK/rss"
