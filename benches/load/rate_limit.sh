#!/usr/bin/env bash
# Rate-limiting figures over real HTTP on loopback (issue 3), all against the release binary:
#   benches/load/rate_limit.sh
#   1. req/s of refused requests (the full SPEC 429) next to a bare actix-web hello route
#      (examples/bare_server.rs, a process of its own: no connection guard, middleware or
#      limiter), alternating ROUNDS times;
#   2. latency of an allowed feed request with per-instance limits and with Redis sync
#      (needs Redis on 127.0.0.1:6379), alternating ROUNDS times;
#   3. RSS while millions of distinct client addresses arrive through a trusted proxy,
#      and again after the idle sweep.
# Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${PORT:-5088}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
SPRAY=${SPRAY:-20s}
SECTIONS=${SECTIONS:-123}   # e.g. SECTIONS=1: only the refusal figures
BARE_PORT=${BARE_PORT:-5089}
PROFILE=${PROFILE:-bench}
# Binaries from $CARGO_TARGET_DIR (default target); AMBER, BARE and SEED name prebuilt ones
# instead (nothing is built then).
BIN=${CARGO_TARGET_DIR:-target}/release
if [ -z "${AMBER:-}" ]; then cargo build --profile "$PROFILE" --bin amber >/dev/null 2>&1; fi
if [ -z "${BARE:-}" ]; then cargo build --profile "$PROFILE" --example bare_server >/dev/null 2>&1; fi
if [ -z "${SEED:-}" ]; then cargo build --profile "$PROFILE" --example seed_store >/dev/null 2>&1; fi
AMBER=${AMBER:-$BIN/amber}
BARE=${BARE:-$BIN/examples/bare_server}
SEED=${SEED:-$BIN/examples/seed_store}
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/pid" "$DIR/bare" 2>/dev/null) 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$SEED" "$DIR" 1000 >/dev/null
echo "$(date -u +%FT%TZ) $(uptime)"
URL="http://127.0.0.1:$PORT"

start() {
  env DATA_DIR="$DIR" PORT="$PORT" RUST_LOG=warn AMBER_BENCH_ROUTES=true "$@" \
    "$AMBER" >"$DIR/out" 2>"$DIR/err" &
  echo $! >"$DIR/pid"
  until curl -s -o /dev/null "$URL/livez"; do sleep 0.01; done
}
stop() { kill -TERM "$(cat "$DIR/pid")"; while kill -0 "$(cat "$DIR/pid")" 2>/dev/null; do sleep 0.05; done; }
rss() { awk '/VmHWM|VmRSS/ {printf "%s %d MB  ", $1, $2 / 1024}' "/proc/$(cat "$DIR/pid")/status"; echo; }
evalsha_calls() { redis-cli info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $2}'; }

if [[ $SECTIONS == *1* ]]; then
echo "== 1. refusing is nearly free (REQUESTS_PER_MINUTE=1 BURST_SIZE=1: every feed request after the first is a 429)"
# AMBER_B=<another amber binary>: it is measured too, in the same rounds (bare, AMBER,
# AMBER_B, alternating), for an A/B against the same bare_server.
BINARIES=("$AMBER")
if [ -n "${AMBER_B:-}" ]; then BINARIES+=("$AMBER_B"); fi
"$BARE" "$BARE_PORT" &
echo $! >"$DIR/bare"
until curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/hello"; do sleep 0.01; done
rps() { wrk -t2 -c32 -d"$DURATION" "$1" |
  awk '/Requests\/sec/ {rps=$2} /Non-2xx/ {non=$5} /requests in/ {n=$1} END {printf "%s %s %s\n", rps, non+0, n}'; }
# Every Amber row runs between two bare rows and its share is of their mean: the bare
# server's own rate drifts by a third within a minute on a shared machine, so a share
# against one bare row taken before it measured the drift as much as the server.
read -r hello _ _ < <(rps "http://127.0.0.1:$BARE_PORT/hello")
for round in $(seq "$ROUNDS"); do
  for binary in "${BINARIES[@]}"; do
    AMBER=$binary start REQUESTS_PER_MINUTE=1 BURST_SIZE=1
    curl -s -o /dev/null "$URL/api/feed"
    if [ "$round" = 1 ]; then
      echo "$binary: the 429 is $(curl -s -D - "$URL/api/feed" | wc -c) bytes with its head; bare_server's /hello answers 12"
    fi
    read -r refused non n < <(rps "$URL/api/feed")
    stop
    read -r after _ _ < <(rps "http://127.0.0.1:$BARE_PORT/hello")
    printf 'round %s  bare /hello %s then %s req/s  %s 429 %s req/s (%s of %s not 2xx)  %.0f%%\n' \
      "$round" "$hello" "$after" "$binary" "$refused" "$non" "$n" \
      "$(echo "200 * $refused / ($hello + $after)" | bc -l)"
    hello=$after
  done
done
kill "$(cat "$DIR/bare")"
fi

if [[ $SECTIONS == *2* ]]; then
echo "== 2. allowed feed request latency: per-instance limits vs Redis sync (wrk -t1 -c4 --latency)"
for round in $(seq "$ROUNDS"); do
  for mode in local redis; do
    if [ "$mode" = redis ]; then
      start REQUESTS_PER_MINUTE=4000000000 BURST_SIZE=4000000000 REDIS_URL=redis://127.0.0.1:6379
      until curl -s "$URL/api/health" | grep -q '"redis":{"status":"ok"'; do sleep 0.05; done
      before=$(evalsha_calls)
    else
      start REQUESTS_PER_MINUTE=4000000000 BURST_SIZE=4000000000
    fi
    printf 'round %s %-6s ' "$round" "$mode"
    wrk -t1 -c4 -d"$DURATION" --latency "$URL/api/feed?page_size=20" |
      awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} /requests in/ {n=$1} END {printf "p50 %s  p99 %s  %s req/s  %s requests", p50, p99, rps, n}'
    if [ "$mode" = redis ]; then echo "  ($(( $(evalsha_calls) - before )) EVALSHA calls)"; else echo; fi
    stop
  done
done
fi

if [[ $SECTIONS == *3* ]]; then
echo "== 3. memory under an address-spraying client (TRUSTED_PROXIES=127.0.0.1/32, a new X-Forwarded-For per request)"
start TRUSTED_PROXIES=127.0.0.1/32
for _ in 1 2 3 4 5; do curl -s -o /dev/null "$URL/api/feed?page_size=1"; done
echo "idle:                $(rss)"
wrk -t2 -c32 -d"$SPRAY" -s benches/load/spray_addresses.lua "$URL" |
  awk '/requests in/ {print "requests:            " $1} /Non-2xx/ {print "refused (429):       " $5} /distinct/ {print "distinct addresses:  " $5}'
echo "right after:         $(rss)"
sleep 15
echo "15 s later (swept):  $(rss)"
stop
fi
