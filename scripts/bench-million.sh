#!/usr/bin/env bash
# The search benchmark at scale, on the release build: load RESIDENTS synthetic residents
# (each a Patient and 9 Observations, so 100,000 residents = 1,000,000 resources) through the
# REST API (PUT, 16 connections), then run two searches with wrk (2 threads, 16 connections,
# SEARCH_SECS seconds each) and print their query plans:
#   Patient?identifier=system|value
#   Observation?subject=…&code=…&date=ge2019-01-01&_sort=-date&_count=20
#
#   scripts/bench-million.sh [sqlite|postgres] [residents] [search seconds]
#
# With BENCH_KEEP=<dir> the database is kept (SQLite under <dir>, PostgreSQL as huimin_bench)
# and a second run with the same BENCH_KEEP skips the load when it is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
residents="${2:-100000}"
search_secs="${3:-30}"
port=18082
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
export RESIDENTS="$residents" THREADS=2

count() {
  curl -s -H "Authorization: Bearer $TOKEN" "$base/fhir/$1?_summary=count" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}

if [ "$(count Observation)" -lt $((residents * 9)) ]; then
  echo "== $backend: loading $residents residents ($((residents * 10)) resources)"
  export DONE_DIR="$work/done"
  mkdir -p "$DONE_DIR"
  start=$(date +%s)
  wrk -t2 -c16 -d24h -s scripts/load/seed-residents.lua "$base" > "$work/load.txt" &
  loader=$!
  while [ "$(find "$DONE_DIR" -type f | wc -l)" -lt 2 ]; do sleep 1; done
  sleep 2 # the last requests in flight
  kill -INT $loader
  wait $loader || true
  secs=$(($(date +%s) - start))
  grep -E "requests in|Requests/sec|Non-2xx" "$work/load.txt" || true
  echo "loaded in ${secs}s: $((residents * 10 / secs)) resources/s"
fi
echo "Patients: $(count Patient), Observations: $(count Observation)"
du -sh "$data" 2>/dev/null | sed 's/^/data directory: /' || true

echo "== $backend: Patient?identifier=system|value, 16 connections, ${search_secs}s"
wrk -t2 -c16 -d"${search_secs}s" --latency -s scripts/load/search-identifier-n.lua "$base"
echo "== $backend: Observation?subject&code&date&_sort=-date&_count=20, 16 connections, ${search_secs}s"
wrk -t2 -c16 -d"${search_secs}s" --latency -s scripts/load/search-observations.lua "$base"

echo "== query plans"
# The SQL the server compiles for these searches (on SQLite, per-resource lookups name their index).
date_hint="" offset=" OFFSET 0"
if [ "$backend" = sqlite ]; then
  date_hint="INDEXED BY search_date_resource" offset=""
fi
ident="SELECT r.res_id, r.content FROM resources r WHERE r.res_type = 'Patient' AND r.deleted = false AND r.res_id IN (SELECT x.res_id FROM search_token x WHERE x.res_type = 'Patient' AND x.param = 'identifier' AND ((x.system = 'urn:oid:2.16.156.10011.1.13' AND x.code = 'BENCH-0000042'))) ORDER BY r.res_id LIMIT 51"
obs="SELECT s.res_id, s.content FROM (SELECT r.res_id, r.content, (SELECT MAX(x.high) FROM search_date x $date_hint WHERE x.res_type = 'Observation' AND x.res_id = r.res_id AND x.param = 'date') AS k0 FROM resources r WHERE r.res_type = 'Observation' AND r.deleted = false AND r.res_id IN (SELECT x.res_id FROM search_reference x WHERE x.res_type = 'Observation' AND x.param = 'subject' AND ((x.target_id = 'bench-42' AND x.target_type = 'Patient'))) AND EXISTS (SELECT 1 FROM search_token x WHERE x.res_type = 'Observation' AND x.res_id = r.res_id AND x.param = 'code' AND ((x.system = 'http://loinc.org' AND x.code = '8867-4'))$offset) AND EXISTS (SELECT 1 FROM search_date x $date_hint WHERE x.res_type = 'Observation' AND x.res_id = r.res_id AND x.param = 'date' AND ((x.high >= 1546272000000))$offset)) s ORDER BY s.k0 DESC NULLS LAST, s.res_id LIMIT 21"
if [ "$backend" = postgres ]; then
  psql -h 127.0.0.1 -U postgres -d huimin_bench -c "EXPLAIN ANALYZE $ident" -c "EXPLAIN ANALYZE $obs"
else
  sqlite3 "$data/huimin.db" "EXPLAIN QUERY PLAN $ident" "EXPLAIN QUERY PLAN $obs"
fi
