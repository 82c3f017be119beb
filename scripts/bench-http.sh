#!/usr/bin/env bash
# Load test of the release build on loopback: create Patient and read Patient by id with wrk,
# 16 connections, 2 wrk threads (on the same cores as the server).
#
#   scripts/bench-http.sh [sqlite|postgres] [seconds]
#
# PostgreSQL mode uses (and recreates) the database huimin_bench_http at 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
secs="${2:-20}"
port=18080
# A database of its own: the city benchmarks keep huimin_bench.
export BENCH_DB=huimin_bench_http
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh

echo "== $backend: create Patient, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -s scripts/load/create-patient.lua "$base"

curl -s -H "Authorization: Bearer $TOKEN" "$base/fhir/Patient?_count=1000" \
  | python3 -c 'import json,sys; [print(e["resource"]["id"]) for e in json.load(sys.stdin)["entry"]]' > "$work/ids"
export IDS="$work/ids"
echo "== $backend: read Patient by id ($(wc -l < "$IDS") ids), 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -s scripts/load/read-patient.lua "$base"
