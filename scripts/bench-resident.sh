#!/usr/bin/env bash
# Resident index reads on the release build: ingest the synthetic city (RESIDENTS residents)
# once into BENCH_KEEP (default /tmp/huimin-resident-<backend>-<residents>), then measure with
# wrk (4 connections, SECS seconds each) `Patient/$everything` for the complex chronic patients
# (records of about 500 resources) and for the 200 largest other records, and `Patient/$match` for 200 institution Patients stripped of their ID numbers.
#
#   scripts/bench-resident.sh [sqlite|postgres] [residents] [secs]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
residents="${2:-10000}"
secs="${3:-15}"
export BENCH_KEEP="${BENCH_KEEP:-${TMPDIR:-/tmp}/huimin-resident-$backend-$residents}"
if [ ! -f "$BENCH_KEEP/.loaded" ]; then
  rm -rf "$BENCH_KEEP"
  # A kept PostgreSQL database is reused as it is: start this one empty.
  if [ "$backend" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS huimin_bench" postgres
  fi
  BENCH_NO_QUALITY=1 scripts/bench-ingest.sh "$backend" "$residents" 4
  touch "$BENCH_KEEP/.loaded"
fi
port=18084
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
sizes="SELECT resident, count(*) AS n FROM resources WHERE resident IS NOT NULL AND deleted = false GROUP BY resident ORDER BY n DESC"
if [ "$backend" = postgres ]; then
  psql -Atq -F ' ' -h 127.0.0.1 -U postgres -c "$sizes" huimin_bench > "$work/sizes"
else
  sqlite3 -separator ' ' "$data/huimin.db" "$sizes" > "$work/sizes"
fi
# The complex chronic patients' records (400 resources and more; the generator makes one per
# 2,000 residents), then the 200 largest ordinary records.
awk '$2 >= 400' "$work/sizes" > "$work/large"
awk '$2 < 400 && n++ < 200' "$work/sizes" > "$work/top"
everything() {
  cut -d' ' -f1 "$1" > "$work/ids"
  echo "== $backend, $residents residents: \$everything of $(wc -l < "$1") records of $(tail -1 "$1" | cut -d' ' -f2) to $(head -1 "$1" | cut -d' ' -f2) resources"
  IDS="$work/ids" wrk -t2 -c4 -d"${secs}s" --latency -s scripts/load/everything.lua "$base" | grep -E "Latency|50%|99%|Requests/sec|Non-2xx"
}
if [ -s "$work/large" ]; then
  everything "$work/large"
fi
everything "$work/top"
curl -s -H "Authorization: Bearer $TOKEN" "$base/fhir/Patient?_count=200&_tag:not=urn:huimin:CodeSystem:resident-index|golden" \
  | python3 -c '
import json, sys
for e in json.load(sys.stdin)["entry"]:
    p = e["resource"]
    p.pop("id", None); p.pop("meta", None); p.pop("link", None)
    p["identifier"] = [i for i in p.get("identifier", []) if "10011.1.3" not in i["system"] and "10011.1.19" not in i["system"]]
    print(json.dumps({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]}, ensure_ascii=False))
' > "$work/bodies"
echo "== $backend: \$match of 200 institution Patients without their ID numbers"
BODIES="$work/bodies" wrk -t2 -c4 -d"${secs}s" --latency -s scripts/load/match.lua "$base" | grep -E "Latency|50%|99%|Requests/sec|Non-2xx"
