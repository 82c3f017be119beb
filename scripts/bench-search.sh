#!/usr/bin/env bash
# Search load test on the release build: fill the database with synthetic Patients for
# LOAD_SECS seconds (16 concurrent creators), then run Patient?identifier=system|value lookups
# with wrk (16 connections, 2 threads) for SEARCH_SECS seconds and print the query plan.
#
#   scripts/bench-search.sh [sqlite|postgres] [load seconds] [search seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
load_secs="${2:-40}"
search_secs="${3:-20}"
port=18081
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh

echo "== $backend: loading Patients for ${load_secs}s"
wrk -t2 -c16 -d"${load_secs}s" -s scripts/load/create-patient.lua "$base" | grep -E "requests in|Requests/sec"
total=$(curl -s -H "Authorization: Bearer $TOKEN" "$base/fhir/Patient?_summary=count" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
echo "Patients stored: $total"
# Institution Patients only: golden residents without an ID number carry no identifier.
curl -s -H "Authorization: Bearer $TOKEN" "$base/fhir/Patient?_count=1000&_elements=identifier&_tag:not=urn:huimin:CodeSystem:resident-index|golden" \
  | python3 -c 'import json,sys; [print(e["resource"]["identifier"][0]["value"]) for e in json.load(sys.stdin)["entry"]]' > "$work/ids"
export IDS="$work/ids"
echo "== $backend: Patient?identifier=system|value, 16 connections, ${search_secs}s"
wrk -t2 -c16 -d"${search_secs}s" --latency -s scripts/load/search-identifier.lua "$base"

echo "== query plan of the identifier lookup"
sql="SELECT r.res_id FROM resources r WHERE r.res_type = 'Patient' AND r.deleted = false AND r.res_id IN (SELECT x.res_id FROM search_token x WHERE x.res_type = 'Patient' AND x.param = 'identifier' AND x.system = 'urn:oid:2.16.156.10011.1.13' AND x.code = '$(head -1 "$IDS")') ORDER BY r.res_id LIMIT 51"
if [ "$backend" = postgres ]; then
  psql -h 127.0.0.1 -U postgres -d huimin_bench -c "EXPLAIN $sql"
else
  sqlite3 "$data/huimin.db" "EXPLAIN QUERY PLAN $sql"
fi
