#!/usr/bin/env bash
# Syndication feeds over real HTTP on loopback (issue 13), side by side in one run with a
# bare actix-web server (examples/bare_server.rs, a process of its own) answering a static
# body of the same size as the full feed:
#   benches/load/feeds.sh
# Rows: the static body; GET /feeds/all.rss (50 items) answered in full (200, the rendered
# feed from memory); the same with the feed's ETag in If-None-Match (304, no body). Each
# row prints req/s, its share of that round's static figure, p50 and p99. Rate limiting is
# off (a 304 costs one token, a full answer two: see README). Needs wrk. PROFILE (default
# bench) picks the cargo profile; TARGET (default target) the CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-10000}
PORT=${PORT:-5087}
BARE_PORT=${BARE_PORT:-5088}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-bench}
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
CARGO_TARGET_DIR=$TARGET cargo build --profile "$PROFILE" --bin amber --example seed_store --example bare_server >/dev/null 2>&1
BIN=$TARGET/release
[ "$PROFILE" = dev ] && BIN=$TARGET/debug
WORK=$(mktemp -d)
trap 'kill $(cat "$WORK/pid" "$WORK/bare" 2>/dev/null) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$BIN/examples/seed_store" "$WORK/store" "$N" >/dev/null
echo "$(date -u +%FT%TZ) $(uptime)"
DATA_DIR=$WORK/store PORT=$PORT RATE_LIMITING_ENABLED=false RUST_LOG=warn \
  "$BIN/amber" >"$WORK/out" 2>"$WORK/err" &
echo $! >"$WORK/pid"
"$BIN/examples/bare_server" "$BARE_PORT" &
echo $! >"$WORK/bare"
until curl -s -o /dev/null "http://127.0.0.1:$PORT/livez" && curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/hello"; do sleep 0.01; done
FEED="http://127.0.0.1:$PORT/feeds/all.rss"
BYTES=$(curl -s "$FEED" | wc -c)
ITEMS=$(curl -s "$FEED" | grep -o '<item>' | wc -l)
ETAG=$(curl -s -D - -o /dev/null "$FEED" | awk 'tolower($1) == "etag:" {sub(/\r$/, ""); print $2}')
CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$FEED")
echo "full feed: $ITEMS items, $BYTES bytes, ETag $ETAG (conditional GET answers $CODE); static body the same size from bare_server"

wrk_row() { # url [wrk args...]
  local url=$1
  shift
  wrk -t2 -c32 -d"$DURATION" --latency "$@" "$url" |
    awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2} /Non-2xx/ {bad=$5}
      END {printf "%s %s %s %s\n", rps, p50, p99, bad+0}'
}
wrk -t2 -c32 -d2s "$FEED" >/dev/null
printf '%-6s %-12s %10s %8s %9s %9s %s\n' round route req/s share p50 p99 non-2xx
for round in $(seq "$ROUNDS"); do
  read -r base p50 p99 bad < <(wrk_row "http://127.0.0.1:$BARE_PORT/static/$BYTES")
  printf '%-6s %-12s %10s %8s %9s %9s %s\n' "$round" static "$base" 100% "$p50" "$p99" "$bad"
  read -r rps p50 p99 bad < <(wrk_row "$FEED")
  printf '%-6s %-12s %10s %7.0f%% %9s %9s %s\n' "$round" full-200 "$rps" "$(echo "100 * $rps / $base" | bc -l)" "$p50" "$p99" "$bad"
  read -r rps p50 p99 bad < <(wrk_row "$FEED" -H "If-None-Match: $ETAG")
  # Every answer here is a 304 (wrk's non-2xx column counts neither 2xx nor 3xx).
  printf '%-6s %-12s %10s %7.0f%% %9s %9s %s\n' "$round" 304 "$rps" "$(echo "100 * $rps / $base" | bc -l)" "$p50" "$p99" "$bad"
done
echo "$(date -u +%FT%TZ) $(uptime)"
