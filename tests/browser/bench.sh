#!/usr/bin/env bash
# Page figures for BENCHMARKS.md: page weight (HTML + CSS + JS, without the X widget) and
# time to first rendered post in headless Chromium on loopback, against the release binary
# with 45 seeded posts. Usage: tests/browser/bench.sh [runs]   (needs curl, node, chromium)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
bin=target/release/amber
[ -x "$bin" ] || cargo build --release --locked
data=$(mktemp -d)
secret=bench-secret-for-amber-page-figures
log="$data/server.log"
( cd "$data" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT=0 DATA_DIR="$data" \
    ADMIN_JWT_SECRET=$secret RUST_LOG=warn "$OLDPWD/$bin" serve ) > "$data/stdout" 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do grep -q "listening on" "$data/stdout" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/^amber listening on //p' "$data/stdout")
token=$(ADMIN_JWT_SECRET=$secret "$bin" token --sub bench)
for i in $(seq 0 44); do
  platform=$(echo x news facebook | cut -d' ' -f$((i % 3 + 1)))
  extra=""
  [ "$platform" = x ] && extra=",\"platformPostId\":\"$((1800000000000000000 + i))\""
  curl -sf -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"leaderId\":$((i % 3 + 1)),\"platform\":\"$platform\",\"content\":\"post $i\"$extra}" "$base/api/posts"
done

echo "== page weight (bytes; identity, then gzip as served to browsers) =="
total=0; gz=0
for path in / $(curl -s "$base/" | grep -o '/assets/[^"]*\.\(css\|js\)?v=[0-9a-f]*'); do
  n=$(curl -s "$base$path" | wc -c)
  g=$(curl -s -H 'Accept-Encoding: gzip' "$base$path" | wc -c)
  printf '%-40s %6d %6d\n' "${path%%\?*}" "$n" "$g"
  total=$((total + n)); gz=$((gz + g))
done
printf '%-40s %6d %6d\n' TOTAL "$total" "$gz"

echo "== time to first rendered post ($runs cold loads) =="
# A build without ingestion answers its status with 404: expected, not a page error.
expected='[]'
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/ingestion/status")" = 404 ] && expected='["404 /api/ingestion/status"]'
node tests/browser/run.mjs timing "$base" target/browser "{\"runs\":$runs,\"expectedFailures\":$expected}" | grep -v "^note:"
