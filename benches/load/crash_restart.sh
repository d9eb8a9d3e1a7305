#!/usr/bin/env bash
# Start-up after kill -9 mid-write (issue 14): copies a seeded store (STORE, e.g. 1M posts
# from examples/seed_store), starts Amber on it, creates posts through the admin API with
# wrk (benches/load/create_posts.lua) and kill -9s the server while they arrive, ROUNDS
# times. After each kill it times the restart to the first answer, checks that every
# acknowledged post is there (the feed's total), and reads the idle RSS.
#   STORE=target/p-data/s1000000 benches/load/crash_restart.sh
# Also measures one clean restart (SIGTERM) at the end. Needs wrk; PROFILE, CARGO_TARGET_DIR
# and AMBER (a prebuilt binary: nothing is built) as feed.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${PORT:-5079}
ROUNDS=${ROUNDS:-3}
WRITE_FOR=${WRITE_FOR:-4}
PROFILE=${PROFILE:-bench}
: "${STORE:?STORE=<a DATA_DIR filled by examples/seed_store>}"
BIN=${CARGO_TARGET_DIR:-target}/release
[ "$PROFILE" = dev ] && BIN=${CARGO_TARGET_DIR:-target}/debug
if [ -z "${AMBER:-}" ]; then cargo build --profile "$PROFILE" --bin amber >/dev/null 2>&1; fi
AMBER=${AMBER:-$BIN/amber}
WORK=$(mktemp -d -p "${TMPDIR:-/tmp}")
trap 'kill -9 $(cat "$WORK/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cp -a "$STORE" "$WORK/store"
SECRET=crash-restart-bench-secret-0123456789abcdef
export ADMIN_JWT_SECRET=$SECRET
TOKEN=$("$AMBER" token --sub crash-bench --role admin)
URL="http://127.0.0.1:$PORT"
echo "$(date -u +%FT%TZ) $(uptime)"

start() {
  local t0 t1
  t0=$(date +%s%N)
  DATA_DIR=$WORK/store PORT=$PORT RATE_LIMITING_ENABLED=false RUST_LOG=info \
    "$AMBER" >>"$WORK/out" 2>>"$WORK/err" &
  echo $! >"$WORK/pid"
  until curl -s -o /dev/null "$URL/livez"; do sleep 0.002; done
  t1=$(date +%s%N)
  echo "start-up to first answer: $(( (t1 - t0) / 1000000 )) ms ($1)"
}
total() { curl -s "$URL/api/feed?page_size=1" | sed -E 's/.*"total":([0-9]+).*/\1/'; }
rss() { awk '/VmRSS/ {printf "%d MB", $2 / 1024}' "/proc/$(cat "$WORK/pid")/status"; }

start "first start on the copied store"
before=$(total)
echo "posts: $before; idle RSS after 2 s: $(sleep 2; rss)"
for round in $(seq "$ROUNDS"); do
  TOKEN=$TOKEN PREFIX="$round$RANDOM" wrk -t2 -c8 -d30s -s benches/load/create_posts.lua "$URL" >"$WORK/wrk" 2>&1 &
  wrk_pid=$!
  sleep "$WRITE_FOR"
  kill -9 "$(cat "$WORK/pid")"
  wait "$(cat "$WORK/pid")" 2>/dev/null || true   # gone, its port free, before the restart
  kill -INT "$wrk_pid"   # wrk stops and reports what it counted
  wait "$wrk_pid" || true
  acked=$(awk '/^acknowledged [0-9]+$/ {print $2}' "$WORK/wrk")
  # No count, no verdict: a missing line must not read as "nothing was acknowledged".
  [ -n "$acked" ] || { echo "round $round: wrk printed no 'acknowledged N' line:"; cat "$WORK/wrk"; exit 1; }
  start "round $round: after kill -9 with writes in flight"
  now=$(total)
  verdict=ok; [ "$now" -ge $((before + acked)) ] || verdict="LOST $((before + acked - now))"
  echo "  acknowledged $acked creates; posts $before -> $now ($verdict); idle RSS after 2 s: $(sleep 2; rss)"
  grep -h "feed index" "$WORK/err" | tail -1 | sed -E 's/^.*(feed index[^"]*).*(posts[^ ]*( replayed[^ ]*)?).*/  log: \1 \2/' || true
  before=$now
done
kill -TERM "$(cat "$WORK/pid")"
while kill -0 "$(cat "$WORK/pid")" 2>/dev/null; do sleep 0.05; done
start "after a clean stop (SIGTERM)"
echo "idle RSS after 2 s: $(sleep 2; rss)"
echo "$(date -u +%FT%TZ) $(uptime)"
