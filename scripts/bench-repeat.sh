#!/usr/bin/env bash
# Run a benchmark script several times and summarise its throughput lines: this 2-core VM
# drifts by ±10 % within minutes, so one run says little at that margin. Prints every run's
# figures, then per figure the median, lowest and highest (bench-http.sh reports two phases,
# create then read).
#
#   scripts/bench-repeat.sh RUNS scripts/bench-ingest.sh sqlite 10000 4
#   BENCH_BIN=/path/to/earlier/huimin scripts/bench-repeat.sh 3 scripts/bench-http.sh sqlite 15
set -euo pipefail
runs="${1:?how many runs}"
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$runs"); do
  echo "== run $i of $runs: $*"
  "$@" 2>&1 | tee -a "$out" | grep -E 'resources/s|latency|Requests/sec|99%|failed: [1-9]' || true
done
python3 - "$out" <<'PY'
import re, statistics, sys
figures = {}
for line in open(sys.argv[1]):
    m = re.search(r"([\d,]+) resources/s", line)
    if m:
        figures.setdefault("resources/s", []).append(float(m.group(1).replace(",", "")))
    m = re.search(r"Requests/sec:\s+([\d.]+)", line)
    if m:
        figures.setdefault("requests/s", []).append(float(m.group(1)))
for name, values in figures.items():
    # Several phases (create, read) report requests/s in turn: summarise each phase.
    phases = [values] if name == "resources/s" else [values[i::2] for i in range(2)] if len(values) % 2 == 0 and len(values) > 1 else [values]
    for n, v in enumerate(phases):
        label = name if len(phases) == 1 else f"{name} (phase {n + 1})"
        print(f"{label}: median {statistics.median(v):,.0f}, low {min(v):,.0f}, high {max(v):,.0f} over {len(v)} runs")
PY
