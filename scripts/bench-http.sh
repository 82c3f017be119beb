#!/usr/bin/env bash
# Load test of the release build on loopback: create Patient and read Patient by id with wrk,
# 16 connections, 2 wrk threads (on the same cores as the server).
#
#   scripts/bench-http.sh [sqlite|postgres] [seconds]
#
# PostgreSQL mode uses (and recreates) the database huimin_bench at 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
secs="${2:-20}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet --bin huimin
bin="$target/release/huimin"
work=$(mktemp -d)
port=18080
export HUIMIN_DATA_DIR="$work/data" HUIMIN_LISTEN="127.0.0.1:$port" HUIMIN_LOG_LEVEL=warn
if [ "$backend" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS huimin_bench" -c "CREATE DATABASE huimin_bench" postgres
  export HUIMIN_DATABASE_URL="postgres://postgres@127.0.0.1:5432/huimin_bench"
fi
"$bin" serve 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
export TOKEN=$("$bin" token --role his --org Organization/bench --scope 'system/*.cruds' 2>/dev/null)

echo "== $backend: create Patient, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -s scripts/load/create-patient.lua "http://127.0.0.1:$port"

curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/fhir/Patient?_count=1000" \
  | python3 -c 'import json,sys; [print(e["resource"]["id"]) for e in json.load(sys.stdin)["entry"]]' > "$work/ids"
export IDS="$work/ids"
echo "== $backend: read Patient by id ($(wc -l < "$IDS") ids), 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -s scripts/load/read-patient.lua "http://127.0.0.1:$port"
