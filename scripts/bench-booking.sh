#!/usr/bin/env bash
# The release rush on the release build: RESIDENTS residents (default 5,000; each with a token
# of their own) try to book PLACES places (default 200: 40 Slots of 5 places of one hospital)
# the instant the Slots are released, one `$book` each, all at once on keep-alive connections
# opened before. On postgres two server processes share the database (the residents are
# spread over both); on sqlite one process. Prints the answers by status and their latency,
# then checks in the database: exactly PLACES booked, no Slot above its capacity, no resident
# booked twice.
#
#   scripts/bench-booking.sh [sqlite|postgres] [residents] [places]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
residents="${2:-5000}"
places="${3:-200}"
per_slot=5
slots=$((places / per_slot))
port=18090
export BENCH_DB=huimin_bench_booking
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
bases="$base"
if [ "$backend" = postgres ]; then
  # A second process on the same database, with the first one's keys and token secret.
  data2="$work/data2"
  mkdir -p "$data2"
  cp "$data/keyring.json" "$data/dev-jwt-secret" "$data2/"
  HUIMIN_DATA_DIR="$data2" HUIMIN_LISTEN="127.0.0.1:$((port + 1))" "$bin" serve 2>"$work/server2.log" &
  server2=$!
  trap 'kill $server $server2 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$((port + 1))/healthz" >/dev/null && break; sleep 0.2; done
  bases="$base http://127.0.0.1:$((port + 1))"
fi
HIS=$("$bin" token --role his --org Organization/h1 --scope 'system/*.cruds' --ttl 7200 2>/dev/null)
RESIDENT=$("$bin" token --role resident --scope 'patient/*.cruds' --fhir-user Patient/x --ttl 7200 2>/dev/null)

echo "== $backend: $residents residents, $places places ($slots Slots of $per_slot), $(echo "$bases" | wc -w) server process(es)"
# The residents: Patients of the hospital with valid ID numbers (so each is a resident of the
# index), loaded in transaction bundles of 500; the Schedule and the Slots, released shortly.
python3 - "$base" "$HIS" "$residents" "$slots" "$per_slot" "$work" <<'EOF'
import json, sys, time, urllib.request
base, his, n, slots, per_slot, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
def id_number(i):
    day = 1 + (i // 900) % 28
    body = f"510104{1950 + (i // 25200) % 50}{1 + (i // 900 // 28) % 12:02d}{day:02d}{(i % 900) + 100:03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, W)) % 11]
def post(path, doc):
    req = urllib.request.Request(base + path, json.dumps(doc).encode(), {
        "Authorization": "Bearer " + his, "Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)
ids = []
for start in range(0, n, 500):
    entries = [{"resource": {"resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.156.10011.1.13", "value": f"RUSH-{i}"},
                               {"system": "urn:oid:2.16.156.10011.1.3", "value": id_number(i)}],
                "name": [{"text": f"居民{i}"}], "gender": "male" if i % 2 else "female", "birthDate": "1980-01-01"},
                "request": {"method": "POST", "url": "Patient"}} for i in range(start, min(n, start + 500))]
    out = post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    ids += [e["response"]["location"].split("/")[1] for e in out["entry"]]
role = post("/fhir/PractitionerRole", {"resourceType": "PractitionerRole", "organization": {"reference": "Organization/h1"}})
spec = [{"coding": [{"system": "urn:oid:2.16.156.10011.2.3.3.2", "code": "03"}]}]
sched = post("/fhir/Schedule", {"resourceType": "Schedule", "actor": [{"reference": "PractitionerRole/" + role["id"]}], "specialty": spec})
release_ms = int(time.time() * 1000) + 20000 + n * 2
visit = int(time.time()) + 3 * 86400
slot_ids = []
for k in range(slots):
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(visit + k * 900))
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(visit + k * 900 + 900))
    rel = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(release_ms / 1000)) + ".%03dZ" % (release_ms % 1000)
    s = post("/fhir/Slot", {"resourceType": "Slot", "schedule": {"reference": "Schedule/" + sched["id"]},
             "extension": [{"url": "urn:huimin:StructureDefinition:slot-capacity", "valueInteger": per_slot},
                           {"url": "urn:huimin:StructureDefinition:slot-release", "valueDateTime": rel}],
             "status": "free", "specialty": spec, "start": start, "end": end})
    slot_ids.append(s["id"])
with open(work + "/residents", "w") as f:
    for i, pid in enumerate(ids):
        f.write(f"{pid} {slot_ids[i % len(slot_ids)]}\n")
open(work + "/release", "w").write(str(release_ms))
EOF
python3 scripts/load/rush.py "$work/residents" "$data/dev-jwt-secret" "$RESIDENT" "$(cat "$work/release")" $bases > "$work/rush.json"
python3 - "$work/rush.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("answers:", r["status"], "of", r["requests"])
print("answer ms:", r["answer_ms"], " since the release:", r["since_release_ms"])
EOF
check="SELECT (SELECT count(*) FROM slot_claims WHERE state = 'booked'),
  (SELECT count(*) FROM slot_places WHERE taken_public + taken_referral > capacity),
  (SELECT count(*) FROM (SELECT resident FROM slot_claims WHERE state = 'booked' GROUP BY resident HAVING count(*) > 1) t),
  (SELECT count(*) FROM slot_places s WHERE (SELECT count(*) FROM slot_claims c WHERE c.slot_id = s.slot_id AND c.state = 'booked') <> s.taken_public + s.taken_referral)"
if [ "$backend" = postgres ]; then
  read -r booked over twice miscounted < <(psql -Atq -F ' ' -h 127.0.0.1 -U postgres -c "$check" "$BENCH_DB")
else
  read -r booked over twice miscounted < <(sqlite3 -separator ' ' "$data/huimin.db" "$check")
fi
echo "database: $booked booked, $over Slots above capacity, $twice residents booked twice, $miscounted Slots whose count differs from their claims"
# Every answer is a booking or a clear refusal.
errors=$(python3 -c 'import json,sys; print(sum(n for s, n in json.load(open(sys.argv[1]))["status"].items() if s not in ("200", "409")))' "$work/rush.json")
if [ "$booked" != "$places" ] || [ "$over" != 0 ] || [ "$twice" != 0 ] || [ "$miscounted" != 0 ] || [ "$errors" != 0 ]; then
  echo "FAILED: the rush did not book exactly $places places, each once" >&2
  exit 1
fi
# The same residents again, now that every place is gone: what refusing costs.
again=$(( $(date +%s%3N) + 3000 ))
python3 scripts/load/rush.py "$work/residents" "$data/dev-jwt-secret" "$RESIDENT" "$again" $bases > "$work/again.json"
python3 - "$work/again.json" <<'EOF2'
import json, sys
r = json.load(open(sys.argv[1]))
print("again, every place gone:", r["status"], "answer ms:", r["answer_ms"])
EOF2

