"""Evaluate every indicator ROUNDS times for one period with all six stratifiers and print
each one's p50 / p99 / max answer time and the whole report's counts.

    python3 scripts/load/evaluate.py BASE TOKEN ROUNDS [PERIOD_START PERIOD_END]
"""
import json
import sys
import time
import urllib.request

base, token, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
start, end = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("2026-01-01", "2026-12-31")
names = ["ehr-coverage", "ehr-use", "health-card-issuance", "hypertension-management",
         "hypertension-standard-management", "hypertension-control", "diabetes-management",
         "diabetes-standard-management", "diabetes-control", "elderly-health-management",
         "child-health-management", "family-doctor-signing", "booking-rate", "booking-lead-time",
         "no-show-rate", "data-timeliness"]
worst = 0.0
for name in names:
    times, report = [], None
    for _ in range(rounds):
        req = urllib.request.Request(
            f"{base}/fhir/Measure/{name}/$evaluate-measure?periodStart={start}&periodEnd={end}",
            headers={"Authorization": "Bearer " + token})
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=600) as r:
            report = json.load(r)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    def pct(p):
        return times[min(len(times) - 1, int(p * len(times)))]
    worst = max(worst, pct(0.99))
    pops = {p["code"]["coding"][0]["code"]: p.get("count", "masked")
            for p in report["group"][0]["population"]}
    score = report["group"][0].get("measureScore", {}).get("value")
    print(f"{name:34} p50 {pct(0.5):7.1f}  p99 {pct(0.99):7.1f}  max {times[-1]:7.1f} ms   {pops} score {score}")
print(f"worst p99: {worst:.1f} ms")
