#!/usr/bin/env bash
# Statistics at a larger scale than the pushes reach in a session: the SQLite data a
# `BENCH_KEEP=DIR scripts/bench-stats.sh sqlite N` run kept is copied, its statistics tables
# (`stat_residents`, `stat_facts`) replicated FACTOR times under new resident and resource ids
# (the resources themselves are not: an evaluation reads only the statistics tables), and its
# aggregates emptied; the server is started on the copy (timing the start-up, which sums the
# aggregates from the facts again), and every indicator is evaluated for 2026 as the city's
# official, ROUNDS times each, then once for a run of months that is not a calendar period
# (counted from the members' facts).
#
#   scripts/bench-stats-scale.sh DIR [factor] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
kept="$1"
factor="${2:-10}"
rounds="${3:-20}"
backend=sqlite
port=18098
copy="${TMPDIR:-/tmp}/huimin-stats-scale-$factor"
rm -rf "$copy"
cp -r "$kept" "$copy"
file="$copy/huimin.db"
start=$(date +%s)
{
  echo "BEGIN;"
  for k in $(seq 1 $((factor - 1))); do
    echo "INSERT INTO stat_residents SELECT resident || '~$k', area, sex, birth, org, since, card, golden FROM stat_residents WHERE resident NOT LIKE '%~%';"
    echo "INSERT INTO stat_facts SELECT res_type, res_id || '~$k', kind, CASE WHEN resident IS NULL THEN NULL ELSE resident || '~$k' END, org, at, until_at, value, flag FROM stat_facts WHERE res_id NOT LIKE '%~%';"
  done
  echo "DELETE FROM stat_cells;"
  echo "COMMIT;"
} | sqlite3 "$file"
echo "replicated x$factor in $(( $(date +%s) - start )) s: $(sqlite3 "$file" 'SELECT COUNT(*) FROM stat_residents') residents, $(sqlite3 "$file" 'SELECT COUNT(*) FROM stat_facts') facts"
BENCH_KEEP="$copy"
t0=$(date +%s.%N)
# shellcheck source=load/start-server.sh
source scripts/load/start-server.sh
until curl -sf "$base/healthz" >/dev/null; do sleep 0.5; done
echo "started (the aggregates summed from the facts) in $(echo "$(date +%s.%N) - $t0" | bc) s: $(sqlite3 "$file" 'SELECT COUNT(*) FROM stat_cells') cells"
OFFICIAL=$("$bin" token --role official --area 510100 --scope 'user/*.rs' --ttl 7200 2>/dev/null)
echo "== calendar year 2026, $rounds evaluations per indicator, all stratifiers"
python3 scripts/load/evaluate.py "$base" "$OFFICIAL" "$rounds"
echo "== 2026-02-01 to 2026-11-30 (not a calendar period: the members' facts), once each"
python3 scripts/load/evaluate.py "$base" "$OFFICIAL" 1 2026-02-01 2026-11-30
