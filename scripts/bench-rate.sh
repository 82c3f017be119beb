#!/usr/bin/env bash
# Read latency at a fixed request rate (not at saturation): hey with 16 workers reads one
# Patient by id at RATE requests/second for SECS seconds on the release build, fresh database.
# The cost of per-request work (an audit record per read) shows here as latency, without the
# queueing a saturating load adds.
#
#   scripts/bench-rate.sh [sqlite|postgres] [rate] [secs]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
rate="${2:-2000}"
secs="${3:-10}"
port=18085
# A database of its own: the city benchmarks keep huimin_bench.
export BENCH_DB=huimin_bench_rate
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
id=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/fhir+json' \
  -d '{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.156.10011.1.13","value":"RATE-1"}],"name":[{"family":"测试","given":["甲"]}],"gender":"female"}' \
  "$base/fhir/Patient" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "== $backend: read Patient by id at $rate/s, 16 workers, ${secs}s"
hey -z "${secs}s" -c 16 -q $((rate / 16)) -H "Authorization: Bearer $TOKEN" "$base/fhir/Patient/$id" \
  | grep -E "Requests/sec|  50%|  90%|  99%"
