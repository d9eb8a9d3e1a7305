#!/usr/bin/env bash
# `amber import` of a large backup (issue 10): peak RSS (VmHWM, from /usr/bin/time -v) and
# posts per second, into a fresh DATA_DIR with the backup file on stdin.
#   benches/load/import.sh                                   # a fresh 100k-post store
#   STORE=target/p-data/s1000000 N=1000000 benches/load/import.sh   # a seeded store
#   BACKUP=b.jsonl benches/load/import.sh                    # an existing backup
# The store is exported with `amber export` (copied first: export opens it). PROFILE
# (default release) picks the cargo profile; AMBER names a prebuilt binary instead.
# SLED_CACHE_MB is passed through (unset: the import's own default).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
PROFILE=${PROFILE:-release}
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
[ "$PROFILE" = dev ] && BIN=${CARGO_TARGET_DIR:-target}/debug
if [ -z "${AMBER:-}" ]; then cargo build --profile "$PROFILE" --bin amber >/dev/null 2>&1; fi
AMBER=${AMBER:-$BIN/amber}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "$(date -u +%FT%TZ) $(uptime)"
if [ -z "${BACKUP:-}" ]; then
  if [ -n "${STORE:-}" ]; then
    cp -a "$STORE" "$WORK/store"
  else
    cargo build --profile "$PROFILE" --example seed_store >/dev/null 2>&1
    "$BIN/examples/seed_store" "$WORK/store" "$N" >/dev/null
  fi
  DATA_DIR=$WORK/store RUST_LOG=warn "$AMBER" export >"$WORK/backup.jsonl" 2>/dev/null
  rm -rf "$WORK/store"
  BACKUP=$WORK/backup.jsonl
fi
posts=$(grep -c '"kind":"post"' "$BACKUP" || true)
echo "backup: $(stat -c %s "$BACKUP") bytes, $posts posts"
mkdir "$WORK/data"
/usr/bin/time -v env DATA_DIR="$WORK/data" RUST_LOG=warn "$AMBER" import --progress-every 3600 \
  <"$BACKUP" 2>"$WORK/time" || { cat "$WORK/time"; exit 1; }
grep '^imported' "$WORK/time"
awk -v posts="$posts" '/Maximum resident/ {rss=$6} /Elapsed \(wall/ {split($8, t, ":"); s=(length(t)==3) ? t[1]*3600+t[2]*60+t[3] : t[1]*60+t[2]}
  END {printf "peak RSS %.1f MB, %.1f s, %.0f posts/s\n", rss/1024, s, posts/s}' "$WORK/time"
