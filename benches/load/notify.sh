#!/usr/bin/env bash
# Notifications/s to a local receiver (issue 13), end to end through the shipped binary:
#   benches/load/notify.sh
# For each TARGETS count (default "1 4"): `examples/seed_outbox` stores N new posts (as a
# scheduled run would) with that many json targets on `examples/bare_server`'s POST /hook
# (answers 200 with no body at once), so every queue is full; then `amber` starts on the
# store and its delivery actor empties the outbox over real HTTP on loopback. The receiver
# counts the deliveries and times the first to the last; the row prints deliveries/s over
# that span and the wall time from Amber's start until the receiver had them all.
# PROFILE (default release) picks the cargo profile; TARGET (default target) the
# CARGO_TARGET_DIR. NOTIFY_CONCURRENCY is passed through (Amber's default: 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-5000}
PORT=${PORT:-5089}
BARE_PORT=${BARE_PORT:-5090}
TARGETS=${TARGETS:-1 4}
PROFILE=${PROFILE:-release}
TARGET=${TARGET:-${CARGO_TARGET_DIR:-target}}
CARGO_TARGET_DIR=$TARGET cargo build --locked --profile "$PROFILE" --bin amber --example seed_outbox --example bare_server >/dev/null 2>&1
BIN=$TARGET/release
[ "$PROFILE" = dev ] && BIN=$TARGET/debug
WORK=$(mktemp -d)
trap 'kill $(cat "$WORK/pid" "$WORK/bare" 2>/dev/null) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "$(date -u +%FT%TZ) $(uptime)"
printf '%-8s %-11s %12s %14s %s\n' targets deliveries per-second wall-seconds concurrency
for t in $TARGETS; do
  rm -rf "$WORK/store"
  "$BIN/examples/bare_server" "$BARE_PORT" &
  echo $! >"$WORK/bare"
  until curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/hello"; do sleep 0.01; done
  "$BIN/examples/seed_outbox" "$WORK/store" "$N" "http://127.0.0.1:$BARE_PORT/hook" "$t" 2>/dev/null
  want=$((N * t))
  start=$(date +%s.%N)
  DATA_DIR=$WORK/store PORT=$PORT RATE_LIMITING_ENABLED=false RUST_LOG=warn \
    "$BIN/amber" >"$WORK/out" 2>"$WORK/err" &
  echo $! >"$WORK/pid"
  # A deadline that scales with the work: 2 ms a delivery, at least 60 s.
  deadline=$(echo "$start + 60 + $want * 0.002" | bc -l)
  while :; do
    read -r got secs < <(curl -s "http://127.0.0.1:$BARE_PORT/hook/stats")
    [ "$got" -ge "$want" ] && break
    if [ "$(echo "$(date +%s.%N) > $deadline" | bc -l)" = 1 ]; then
      echo "timed out: $got of $want deliveries" >&2
      exit 1
    fi
    sleep 0.2
  done
  wall=$(echo "$(date +%s.%N) - $start" | bc -l)
  printf '%-8s %-11s %12.0f %14.2f %s\n' "$t" "$got" "$(echo "($got - 1) / $secs" | bc -l)" "$wall" "${NOTIFY_CONCURRENCY:-4}"
  kill "$(cat "$WORK/pid")" "$(cat "$WORK/bare")"
  wait "$(cat "$WORK/pid")" "$(cat "$WORK/bare")" 2>/dev/null || true
done
echo "$(date -u +%FT%TZ) $(uptime)"
