#!/usr/bin/env bash
# Notifications on the release build, against a local endpoint (scripts/load/hook.py).
# 1. Referral create-to-notification: RATE referrals a second (default 100) for SECONDS
#    (default 30) by `ServiceRequest/$refer`, the receiving hospital subscribed to its Tasks
#    with the full payload: from each referral's request leaving the client to its Task's
#    notification arriving at the endpoint, percentiles.
# 2. Outbox drain: EVENTS Patients (default 100,000) written in transaction bundles while the
#    endpoint answers 503, so that their notifications wait in the outbox; then the endpoint
#    answers again: how fast the outbox drains (first to last arrival).
#
#   scripts/bench-notify.sh [sqlite|postgres] [rate] [seconds] [events]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
rate="${2:-100}"
seconds="${3:-30}"
events="${4:-100000}"
port=18095
hook_port=18096
export BENCH_DB=huimin_bench_notify
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
python3 scripts/load/hook.py "$hook_port" "$work/arrivals" "$work/fail" &
hook=$!
trap 'kill $server $hook 2>/dev/null; rm -rf "$work"' EXIT
ADMIN=$("$bin" token --role admin --scope 'system/*.cruds' --ttl 7200 2>/dev/null)
CLINIC=$("$bin" token --role his --org Organization/clinic --scope 'system/*.cruds' --ttl 7200 2>/dev/null)
HOSPITAL=$("$bin" token --role his --org Organization/hospital --scope 'system/*.cruds' --ttl 7200 2>/dev/null)
echo "== $backend: $rate referrals/s for ${seconds}s, then an outbox of $events"

python3 - "$base" "$ADMIN" "$CLINIC" "$HOSPITAL" "$hook_port" "$work" <<'PY'
import json, sys, urllib.error, urllib.request
base, admin, clinic, hospital, hook, work = sys.argv[1:7]
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
def id_number(i):
    body = f"510104{1950 + i % 50}0{1 + i % 9}{10 + i % 18}{(i % 450) * 2 + 100:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, W)) % 11]
def call(method, path, token, doc):
    req = urllib.request.Request(base + path, json.dumps(doc).encode(), {
        "Authorization": "Bearer " + token, "Content-Type": "application/fhir+json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode()[:500]}")
for org, cat in (("clinic", "C210"), ("hospital", "A100")):
    call("PUT", f"/fhir/Organization/{org}", admin, {"resourceType": "Organization", "id": org, "name": org,
         "type": [{"coding": [{"system": "urn:huimin:institution-category", "code": cat}]}]})
role = call("POST", "/fhir/PractitionerRole", clinic, {"resourceType": "PractitionerRole",
            "organization": {"reference": "Organization/clinic"}})["id"]
entries = [{"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/clinic"},
            "identifier": [{"system": "urn:oid:2.16.156.10011.1.13", "value": f"REF-{i}"},
                           {"system": "urn:oid:2.16.156.10011.1.3", "value": id_number(i)}],
            "name": [{"text": f"居民{i}"}], "gender": "female", "birthDate": "1980-01-01"},
            "request": {"method": "POST", "url": "Patient"}} for i in range(200)]
out = call("POST", "/fhir", clinic, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
open(work + "/patients", "w").write("\n".join(e["response"]["location"].split("/")[1] for e in out["entry"]))
open(work + "/role", "w").write(role)
call("POST", "/fhir/Subscription", hospital, {"resourceType": "Subscription", "status": "requested",
     "reason": "referrals arriving", "criteria": "Task?owner=Organization/hospital",
     "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{hook}/hook", "payload": "application/fhir+json"}})
PY

python3 scripts/load/refer.py "$base" "$CLINIC" "$work/patients" "$rate" "$seconds" "$(cat "$work/role")" "$work/sent"
sleep 3
python3 - "$work/sent" "$work/arrivals" <<'PY'
import sys
sent = {}
statuses = {}
answers = []
for line in open(sys.argv[1]):
    t, mark, status, answered = line.split()
    sent[mark] = float(t)
    answers.append(float(answered) - float(t))
    statuses[status] = statuses.get(status, 0) + 1
lat = sorted(float(t) - sent[m] for t, m in (l.split() for l in open(sys.argv[2])) if m in sent)
answers.sort()
def pcts(xs):
    pct = lambda p: xs[min(len(xs) - 1, int(len(xs) * p))]
    return f"p50 {pct(0.5):.1f}  p90 {pct(0.9):.1f}  p99 {pct(0.99):.1f}  max {xs[-1]:.1f}"
print(f"referrals: {len(sent)} sent {statuses}, {len(lat)} notified")
if answers:
    print(f"$refer answered ms: {pcts(answers)}")
if lat:
    print(f"create-to-notification ms: {pcts(lat)}")
PY

# The outbox: the endpoint refuses while the Patients are written.
touch "$work/fail"
python3 - "$base" "$CLINIC" "$hook_port" "$events" <<'PY'
import json, sys, time, urllib.request
base, clinic, hook, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def post(path, doc):
    req = urllib.request.Request(base + path, json.dumps(doc).encode(), {
        "Authorization": "Bearer " + clinic, "Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)
post("/fhir/Subscription", {"resourceType": "Subscription", "status": "requested",
     "reason": "the clinic's new patients", "criteria": "Patient?organization=Organization/clinic",
     "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{hook}/hook", "payload": "application/fhir+json"}})
time.sleep(1.5)
t0 = time.time()
for start in range(0, n, 1000):
    post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/clinic"},
                      "identifier": [{"system": "urn:oid:2.16.156.10011.1.13", "value": f"OUTBOX-{i}"}],
                      "name": [{"text": f"居民{i}"}], "gender": ("male", "female")[i % 2],
                      "birthDate": f"{1930 + i % 80}-{1 + i // 80 % 12:02d}-{1 + i // 960 % 28:02d}"},
         "request": {"method": "POST", "url": "Patient"}} for i in range(start, min(n, start + 1000))]})
print(f"outbox: {n} Patients written in {time.time() - t0:.1f}s while the endpoint refused")
PY
before=$(grep -c ' -$' "$work/arrivals" || true)
rm -f "$work/fail"
released=$(date +%s.%N)
deadline=$((SECONDS + 900))
while [ "$(grep -c ' -$' "$work/arrivals" || true)" -lt $((before + events)) ] && [ $SECONDS -lt $deadline ]; do sleep 1; done
python3 - "$work/arrivals" "$before" "$events" "$released" <<'PY'
import sys
before, n, released = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) * 1000
times = [float(l.split()[0]) for l in open(sys.argv[1]) if l.split()[1] == "-"][before:]
if len(times) < 2:
    print(f"drain: only {len(times)} of {n} delivered"); sys.exit()
span = (times[-1] - times[0]) / 1000
print(f"drain: {len(times)} of {n} delivered; first {((times[0] - released) / 1000):.1f}s after the endpoint answered again, "
      f"then {len(times) / span:.0f}/s ({span:.1f}s first to last)")
PY
