#!/usr/bin/env bash
# Feed pages over real HTTP on loopback (issues 2 and 14), side by side in one run with a
# bare actix-web server (examples/bare_server.rs, a process of its own) answering a static
# body of the same size as a page of 20:
#   benches/load/feed.sh                          # a fresh 100k-post store in a temp dir
#   STORE=target/p-data/s1000000 N=1000000 benches/load/feed.sh   # reuse a seeded store
# Every feed row is random pages of one shape (benches/load/feed_pages.lua: page numbers,
# cursors, one leader, three leaders, source, leader + source, three leaders + cursor, a
# mix), so no rendered answer is reused as is. ROUNDS rounds; every shape's row runs between
# two rows of the static body and prints req/s, its share of their mean, p50 and p99.
# Needs wrk. PROFILE (default bench: release settings with thin LTO and symbols, which
# builds faster; release gives the shipped binary) picks the cargo profile; binaries come
# from $CARGO_TARGET_DIR (default target). AMBER and BARE name prebuilt binaries instead
# (then nothing is built), e.g. to compare two builds of Amber against one bare_server.
# REFERENCE=scripted drives the static rows with the shape's own wrk script (below).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
SPAN=${SPAN:-100000}
PORT=${PORT:-5077}
BARE_PORT=${BARE_PORT:-5078}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-"page cursor leader leaders source leader_source leaders_cursor mix"}
PROFILE=${PROFILE:-bench}
BIN=${CARGO_TARGET_DIR:-target}/release
[ "$PROFILE" = dev ] && BIN=${CARGO_TARGET_DIR:-target}/debug
if [ -z "${AMBER:-}" ]; then cargo build --profile "$PROFILE" --bin amber >/dev/null 2>&1; fi
if [ -z "${BARE:-}" ]; then cargo build --profile "$PROFILE" --example bare_server >/dev/null 2>&1; fi
if [ -z "${STORE:-}" ]; then cargo build --profile "$PROFILE" --example seed_store >/dev/null 2>&1; fi
AMBER=${AMBER:-$BIN/amber}
BARE=${BARE:-$BIN/examples/bare_server}
WORK=$(mktemp -d)
if [ -n "${STORE:-}" ]; then DIR=$STORE; else DIR=$WORK/store; "$BIN/examples/seed_store" "$DIR" "$N"; fi
trap 'kill $(cat "$WORK/pid" "$WORK/bare" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "$(date -u +%FT%TZ) $(uptime)"

# wrk is one client address holding 32 connections, exactly MAX_CONNECTIONS_PER_IP's
# default: a row starting while the server still closes the last row's connections was
# refused 429 too_many_connections (the non-2xx some rows showed). The bench stands for
# many clients, so the per-address cap is raised here.
DATA_DIR=$DIR PORT=$PORT AMBER_BENCH_ROUTES=true RATE_LIMITING_ENABLED=false RUST_LOG=warn MAX_CONNECTIONS_PER_IP=${MAX_CONNECTIONS_PER_IP:-1024} \
  "$AMBER" >"$WORK/out" 2>"$WORK/err" &
echo $! >"$WORK/pid"
"$BARE" "$BARE_PORT" &
echo $! >"$WORK/bare"
until curl -s -o /dev/null "http://127.0.0.1:$PORT/livez" && curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/hello"; do sleep 0.01; done
# The start-up integrity check renders every post into the renderings file (docs/storage.md
# "Rendered posts and pages"); a server in service has long finished it, so wait for it
# (health says `"checked":true`; up to 10 minutes) rather than measure the fill.
for _ in $(seq 6000); do curl -s "http://127.0.0.1:$PORT/api/health" | grep -q '"checked":true' && break; sleep 0.1; done
echo "idle RSS: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/"$(cat "$WORK/pid")"/status)"
BYTES=$(curl -s "http://127.0.0.1:$PORT/api/feed?page_size=20&page=2" | wc -c)
echo "feed page of 20 = $BYTES bytes; static body the same size from bare_server"

wrk_row() { # label url [wrk args...]
  local label=$1 url=$2
  shift 2
  wrk -t2 -c32 -d"$DURATION" --latency "$@" "$url" |
    awk -v label="$label" '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$5}
      END {printf "%s %s %s %s %s\n", label, rps, p50, p99, bad+0}'
}
echo "warm-up: every shape once (fills the rendered-post cache as readers would)"
for m in $MODES; do MODE=$m POSTS=$N SPAN=$SPAN wrk -t2 -c32 -d3s -s benches/load/feed_pages.lua "http://127.0.0.1:$PORT" >/dev/null; done
# Each shape's row runs between two static rows, and its share is of their mean: the
# static body's own rate drifts by a third within a minute on a shared machine, so a
# share against one static row taken 40 s earlier measured the drift as much as the page.
# REFERENCE=scripted: the static rows around a shape's row are driven by the same wrk
# script as the shape (feed_pages.lua with STATIC: the same random URL drawn in Lua per
# request, sent to the static route, which ignores the query), so both sides of the share
# cost the client the same. The default (plain: wrk without a script, one fixed URL) is
# the method of every earlier figure; on 2 cores the client shares the CPU, and drawing a
# URL in Lua was ~5 us of wrk's ~14 us a request (2026-12-08), so against plain rows a
# share also measured the script. feed_pages.lua now draws URLS (default 10000) requests
# per wrk thread before the row starts and sends them in turn, so a feed row's client
# costs about what plain wrk's does; URLS=0 draws each request as it is sent (the method
# of the figures before 2026-12-08's second session).
REFERENCE=${REFERENCE:-plain}
static_row() { # static_row MODE: prints the static row; leaves its req/s in $base
  local p50 p99 bad label=static
  if [ "$REFERENCE" = scripted ]; then
    label=static~$1
    read -r _ base p50 p99 bad < <(STATIC=/static/$BYTES MODE=$1 POSTS=$N SPAN=$SPAN wrk_row "$label" "http://127.0.0.1:$BARE_PORT" -s benches/load/feed_pages.lua)
  else
    read -r _ base p50 p99 bad < <(wrk_row static "http://127.0.0.1:$BARE_PORT/static/$BYTES")
  fi
  printf '%-6s %-16s %10s %8s %9s %9s %s\n' "$round" "$label" "$base" - "$p50" "$p99" "$bad"
}
printf '%-6s %-16s %10s %8s %9s %9s %s\n' round route req/s share p50 p99 non-2xx
for round in $(seq "$ROUNDS"); do
  [ "$REFERENCE" = scripted ] || static_row
  for m in $MODES; do
    [ "$REFERENCE" = scripted ] && static_row "$m"
    before=$base
    read -r _ rps p50 p99 bad < <(MODE=$m POSTS=$N SPAN=$SPAN wrk_row "$m" "http://127.0.0.1:$PORT" -s benches/load/feed_pages.lua)
    next=$(static_row "$m")
    base=$(awk '{print $3}' <<<"$next")
    printf '%-6s %-16s %10s %7.0f%% %9s %9s %s\n' "$round" "$m" "$rps" "$(echo "200 * $rps / ($before + $base)" | bc -l)" "$p50" "$p99" "$bad"
    echo "$next"
  done
done
echo "RSS after load: $(awk '/VmRSS/ {print $2 / 1024 " MB"}' /proc/"$(cat "$WORK/pid")"/status)"
echo "$(date -u +%FT%TZ) $(uptime)"
kill -TERM "$(cat "$WORK/pid")"
while kill -0 "$(cat "$WORK/pid")" 2>/dev/null; do sleep 0.05; done
