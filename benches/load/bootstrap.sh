#!/bin/bash
# Bootstrap from a snapshot (issue 15): an instance on a seeded store (examples/seed_store),
# its snapshot served alone and beside 200 sequential writes, then a fresh instance that
# bootstraps from it after the stream was trimmed; both exports compared.
# usage: benches/load/bootstrap.sh STORE   (a directory under $STORES, e.g. s100000)
# needs: a Redis on 127.0.0.1:6379, curl, bc, redis-cli, ports 5911/5912 free
set -e
STORE=$1
BIN=${AMBER_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/fastrel/amber}
STORES=${STORES:-/work/stores}
B=${TMPDIR:-/tmp}/amber-bootstrap-bench/$STORE
rm -rf $B; mkdir -p $B/a $B/b
cp -r $STORES/$STORE/. $B/a/
CL=bench-bootstrap-$(date +%s%N)
export REDIS_URL=redis://127.0.0.1:6379 REPLICATION=redis REPLICATION_CLUSTER=$CL RATE_LIMITING_ENABLED=false ADMIN_JWT_SECRET=bench-secret-0123456789 SLED_CACHE_MB=64 LOG_FORMAT=json HOST=127.0.0.1
(cd $B/a && DATA_DIR=$B/a PORT=5911 exec $BIN > $B/a.out 2> $B/a.log) &
APID=$!
until curl -fs localhost:5911/api/health >/dev/null; do sleep 0.5; done
TOKEN=$(cd $B && ADMIN_JWT_SECRET=bench-secret-0123456789 $BIN token --sub bench)
curl -fs -XPOST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' localhost:5911/api/posts -d '{"leaderId":1,"platform":"news","content":"bench"}' >/dev/null
until [ "$(redis-cli xlen "amber:repl:{$CL}")" -le 1 ] && [ "$(redis-cli xrange "amber:repl:{$CL}" - + | sed -n 3p)" != "1" ]; do sleep 0.5; done
echo "load: $(cat /proc/loadavg)"
S=$(date +%s.%N)
curl -fs -H "Authorization: Bearer $TOKEN" localhost:5911/api/admin/replication/snapshot -o $B/snap
E=$(date +%s.%N)
echo "snapshot: $(stat -c %s $B/snap) bytes in $(echo "$E - $S" | bc) s"
# writes during a snapshot: 200 sequential creates while one is streamed
( for i in $(seq 1 200); do curl -fs -o /dev/null -w '%{time_total}\n' -XPOST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' localhost:5911/api/posts -d "{\"leaderId\":1,\"platform\":\"news\",\"content\":\"during $i\"}"; done > $B/lat.txt ) &
WP=$!
S=$(date +%s.%N)
curl -fs -H "Authorization: Bearer $TOKEN" localhost:5911/api/admin/replication/snapshot -o $B/snap2
E=$(date +%s.%N)
echo "snapshot beside writes: $(stat -c %s $B/snap2) bytes in $(echo "$E - $S" | bc) s; writes done meanwhile: $(wc -l < $B/lat.txt)"
wait $WP
sort -n $B/lat.txt | awk '{a[NR]=$1} END {print "write latency p50 " a[int(NR*0.5)] " s, p99 " a[int(NR*0.99)] " s, max " a[NR] " s (n=" NR ")"}'
grep -o '"fixed_up":[0-9]*' $B/a.log | tail -2
# bootstrap a fresh instance from a's advertised snapshot
until [ "$(redis-cli xlen "amber:repl:{$CL}")" -le 1 ]; do sleep 0.5; done
S=$(date +%s.%N)
(cd $B/b && DATA_DIR=$B/b PORT=5912 SEED_LEADERS=false exec $BIN > $B/b.out 2> $B/b.log) &
BPID=$!
until curl -fs localhost:5912/api/health 2>/dev/null | grep -q '"lagEntries":0' && ! curl -fs localhost:5912/api/health | grep -q bootstrapping && grep -q "bootstrapped from a snapshot" $B/b.log; do sleep 0.2; done
E=$(date +%s.%N)
echo "bootstrap (start to following the stream): $(echo "$E - $S" | bc) s"
curl -fs -H "Authorization: Bearer $TOKEN" localhost:5911/api/admin/export | md5sum
curl -fs -H "Authorization: Bearer $TOKEN" localhost:5912/api/admin/export | md5sum
grep -o '"message":"[^"]*bootstrap[^"]*"' $B/b.log | head -5
echo "load: $(cat /proc/loadavg)"
kill $APID $BPID; wait $APID $BPID 2>/dev/null || true
du -sh $B/a/db $B/b/db
redis-cli del "amber:repl:{$CL}" "amber:repl:{$CL}:n" "amber:repl:{$CL}:members" "amber:repl:{$CL}:snapshots" >/dev/null
rm -rf "$B"
