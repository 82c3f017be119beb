#!/usr/bin/env bash
# Ingest benchmark on the release build: generate the synthetic city (RESIDENTS residents,
# seed 1), start a fresh server, push the registry, then every institution's transaction
# bundles with PUSHERS concurrent pushers (scripts/load/push.py: a thread and a kept-alive
# connection per pusher). Prints resources/second over the whole push
# and the p50/p99/max bundle latency, then the precision and recall of the resident index's
# links against the generator's truth (BENCH_NO_QUALITY=1 skips that).
#
#   scripts/bench-ingest.sh [sqlite|postgres] [residents] [pushers]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
residents="${2:-10000}"
pushers="${3:-4}"
port=18083
# PostgreSQL runs on this machine: connect as a deployment with its database on the same host
# should (README, "Running with PostgreSQL"), without TLS on loopback. BENCH_PG_PARAMS= (empty)
# keeps libpq's default.
export BENCH_PG_PARAMS="${BENCH_PG_PARAMS-?sslmode=disable}"
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh

city="${CITY_DIR:-${TMPDIR:-/tmp}/huimin-city-$residents-seed1}"
if [ ! -f "$city/manifest.json" ]; then
  "$bin" fixtures generate --residents "$residents" --seed 1 --out "$city"
fi
# Entries of the institution bundles (the registry is pushed before timing starts).
entries=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["entries"] - len(json.load(open(sys.argv[2]))["entry"]))' "$city/manifest.json" "$city/registry.json")
# Each institution's system pushes its own bundles (a hospital system writes for its own
# institution): one token per institution directory.
mkdir -p "$work/tokens"
for d in "$city"/*/; do
  org=$(basename "$d")
  "$bin" token --role his --org "Organization/$org" --scope 'system/*.cruds' > "$work/tokens/$org" 2>/dev/null
done
curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/fhir+json" \
  --data-binary "@$city/registry.json" "$base/fhir"
find "$city" -mindepth 2 -name 'bundle-*.json' | sort > "$work/bundles"
echo "== $backend: $(wc -l < "$work/bundles") bundles, $entries entries, $pushers pushers"
cpu_snapshot() {
  # utime+stime (clock ticks) of the server and of every PostgreSQL process, one "pid ticks" per line.
  for pid in $server $([ "$backend" = postgres ] && pgrep -x postgres); do
    [ -r "/proc/$pid/stat" ] && awk -v p="$pid" '{ sub(/^.*\) /, ""); print p, $12 + $13 }' "/proc/$pid/stat" || true
  done
}
pg_stats() {
  # Checkpoints (timed, requested), buffers written by backends, and the WAL position.
  [ "$backend" = postgres ] || return 0
  psql -Atq -h 127.0.0.1 -U postgres -F ' ' -c "SELECT checkpoints_timed, checkpoints_req, buffers_backend, pg_current_wal_lsn() - '0/0'::pg_lsn FROM pg_stat_bgwriter" huimin_bench
}
pg_before=$(pg_stats)
cpu_snapshot > "$work/cpu-start"
start=$(date +%s.%N)
python3 scripts/load/push.py "$base" "$work/bundles" "$work/tokens" "$TOKEN" "$pushers" "$work" > "$work/times"
end=$(date +%s.%N)
cpu_snapshot > "$work/cpu-end"
if [ "$backend" = postgres ]; then
  read -r ct0 cr0 bb0 wal0 <<< "$pg_before"
  read -r ct1 cr1 bb1 wal1 <<< "$(pg_stats)"
  echo "postgres: $((ct1 - ct0)) timed + $((cr1 - cr0)) requested checkpoints, $((bb1 - bb0)) buffers written by backends, $(((wal1 - wal0) / 1048576)) MiB WAL"
fi
python3 - "$work/times" "$start" "$end" "$entries" "$work/cpu-start" "$work/cpu-end" "$server" <<'PY'
import os, sys
lines = [l.split() for l in open(sys.argv[1])]
bad = [l for l in lines if l[0] != "200"]
t = sorted(float(l[1]) * 1000 for l in lines)
secs = float(sys.argv[3]) - float(sys.argv[2])
n = int(sys.argv[4])
pct = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f"bundles: {len(lines)}, failed: {len(bad)}")
print(f"wall: {secs:.1f} s, {n / secs:,.0f} resources/s")
print(f"bundle latency: p50 {pct(0.50):.0f} ms, p99 {pct(0.99):.0f} ms, max {t[-1]:.0f} ms")
# CPU time per 1,000 resources: less sensitive to the VM's speed drift than wall time when two
# builds are compared (PostgreSQL backends that exited during the push are not counted).
snap = lambda f: dict(map(int, l.split()) for l in open(f) if l.strip())
a, b = snap(sys.argv[5]), snap(sys.argv[6])
hz = os.sysconf("SC_CLK_TCK")
server = int(sys.argv[7])
srv = (b.get(server, 0) - a.get(server, 0)) / hz
db = sum(v - a.get(p, 0) for p, v in b.items() if p != server) / hz
print(f"cpu: server {srv:.1f} s, postgres {db:.1f} s; {(srv + db) * 1000 / n:.3f} cpu-s per 1,000 resources")
PY
for f in $(find "$work" -maxdepth 1 -name 'failed-*' | head -3); do
  echo "$(basename "$f"): $(head -c 400 "$f")"
done
# The resident index's quality on the city (not timed).
if [ -f "$city/truth.tsv" ] && [ -z "${BENCH_NO_QUALITY:-}" ]; then
  python3 scripts/match-quality.py "$base" "$city/truth.tsv"
  if [ "$backend" = postgres ]; then
    reviews=$(psql -Atq -h 127.0.0.1 -U postgres -c "SELECT count(*) FROM resident_reviews" huimin_bench)
  else
    reviews=$(sqlite3 "$data/huimin.db" "SELECT count(*) FROM resident_reviews")
  fi
  echo "review list: $reviews possible matches"
fi
