#!/usr/bin/env bash
# Statistics on the release build: generate the synthetic city (RESIDENTS residents, seed 1),
# push it with 4 pushers, load its populations (`huimin stats population`), then evaluate
# every indicator for 2026 with all six stratifiers as the city's official, ROUNDS times each,
# and print each indicator's p50 / p99 / max answer time and the whole report's count. Last,
# one more bundle of new follow-ups is pushed and the time until the city's report counts it
# is printed (the statistics are kept in the writes' transactions: the next evaluation counts
# it). BENCH_KEEP=dir keeps (and reuses) the loaded data.
#
#   scripts/bench-stats.sh [sqlite|postgres] [residents] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
residents="${2:-10000}"
rounds="${3:-20}"
port=18097
export BENCH_PG_PARAMS="${BENCH_PG_PARAMS-?sslmode=disable}"
export BENCH_DB="${BENCH_DB:-huimin_bench_stats}"
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh

city="${CITY_DIR:-${TMPDIR:-/tmp}/huimin-city-$residents-seed1}"
if [ ! -f "$city/population.csv" ]; then
  rm -rf "$city"
  "$bin" fixtures generate --residents "$residents" --seed 1 --out "$city"
fi
OFFICIAL=$("$bin" token --role official --area 510100 --scope 'user/*.rs' --ttl 7200 2>/dev/null)
loaded=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$base/fhir/Organization/org-0")
if [ "$loaded" != 200 ]; then
  mkdir -p "$work/tokens"
  for d in "$city"/*/; do
    org=$(basename "$d")
    "$bin" token --role his --org "Organization/$org" --scope 'system/*.cruds' --ttl 7200 > "$work/tokens/$org" 2>/dev/null
  done
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/fhir+json" \
    --data-binary "@$city/registry.json" "$base/fhir"
  find "$city" -mindepth 2 -name 'bundle-*.json' | sort > "$work/bundles"
  start=$(date +%s)
  python3 scripts/load/push.py "$base" "$work/bundles" "$work/tokens" "$TOKEN" 4 "$work" > "$work/times"
  echo "pushed $(wc -l < "$work/bundles") bundles in $(( $(date +%s) - start )) s ($(grep -vc '^200' "$work/times" || true) failed)"
  "$bin" stats population "$city/population.csv"
fi
echo "== $backend: $residents residents, $rounds evaluations per indicator, all stratifiers"
python3 scripts/load/evaluate.py "$base" "$OFFICIAL" "$rounds"
# A bundle of follow-ups pushed now: how long until the city's report counts it.
python3 - "$base" "$OFFICIAL" "$("$bin" token --role his --org Organization/org-2 --scope 'system/*.cruds' 2>/dev/null)" <<'PY'
import json, sys, time, urllib.request
base, official, his = sys.argv[1:4]
def count():
    req = urllib.request.Request(
        f"{base}/fhir/Measure/ehr-use/$evaluate-measure?periodStart=2026-12-01&periodEnd=2026-12-31&stratifier=sex",
        headers={"Authorization": "Bearer " + official})
    with urllib.request.urlopen(req, timeout=120) as r:
        g = json.load(r)["group"][0]
    return next(p.get("count") for p in g["population"] if p["code"]["coding"][0]["code"] == "numerator")
before = count()
entries = []
for i in range(40):
    full = f"urn:uuid:00000000-0000-4000-9000-{i:012d}"
    entries.append({"fullUrl": full, "request": {"method": "POST", "url": "Patient"}, "resource": {
        "resourceType": "Patient", "identifier": [{"system": "urn:huimin:bench:mrn", "value": f"S{time.time_ns()}-{i}"}],
        "name": [{"text": f"统计{i}"}], "gender": "male", "birthDate": f"19{50 + i}-01-01",
        "address": [{"use": "home", "extension": [{"url": "urn:huimin:StructureDefinition:area-code", "valueCode": "510104001"}]}],
        "managingOrganization": {"reference": "Organization/org-2"}}})
    entries.append({"request": {"method": "POST", "url": "Encounter"}, "resource": {
        "resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": full}, "period": {"start": "2026-12-02T09:00:00+08:00", "end": "2026-12-02T09:30:00+08:00"},
        "serviceProvider": {"reference": "Organization/org-2"}}})
body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
t0 = time.perf_counter()
req = urllib.request.Request(base + "/fhir", body, {"Authorization": "Bearer " + his, "Content-Type": "application/fhir+json"})
urllib.request.urlopen(req, timeout=120).read()
while True:
    now = count()
    if now != before:
        break
    if time.perf_counter() - t0 > 120:
        sys.exit("the pushed bundle was not counted within 120 s")
print(f"pushed bundle counted {time.perf_counter() - t0:.2f} s after the push began (ehr-use numerator for December {before} -> {now})")
PY
