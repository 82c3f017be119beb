# Sourced by the benchmark scripts: builds the release binary and starts it on a fresh
# database (`$backend`: sqlite, or postgres with the database huimin_bench recreated at
# 127.0.0.1:5432) on `$port`; sets `bin`, `work`, `base` and exports `TOKEN`. The server and
# its files go away when the calling script exits, unless BENCH_KEEP names a directory: then
# the SQLite data (or, on postgres, the database huimin_bench) is kept there and reused.
# BENCH_BIN runs another binary instead (an earlier build, to compare on the same machine).
# BENCH_PG_PARAMS is appended to the PostgreSQL URL (e.g. `?sslmode=disable`), and
# BENCH_AFTER_START is a command run once the server answers (e.g. a psql schema experiment).
# BENCH_DB names the PostgreSQL database (default huimin_bench, which the city benchmarks keep;
# the scripts that need only a throwaway database name their own).
target="${CARGO_TARGET_DIR:-target}"
if [ -n "${BENCH_BIN:-}" ]; then
  bin="$BENCH_BIN"
else
  cargo build --release --quiet --bin huimin
  bin="$target/release/huimin"
fi
work=$(mktemp -d)
data="$work/data"
if [ -n "${BENCH_KEEP:-}" ]; then
  mkdir -p "$BENCH_KEEP"
  data="$BENCH_KEEP"
fi
base="http://127.0.0.1:$port"
export HUIMIN_DATA_DIR="$data" HUIMIN_LISTEN="127.0.0.1:$port" HUIMIN_LOG_LEVEL=warn
db="${BENCH_DB:-huimin_bench}"
if [ "$backend" = postgres ] && [ -z "${BENCH_KEEP:-}" ]; then
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" postgres
fi
if [ "$backend" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $db" postgres 2>/dev/null || true
  export HUIMIN_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db${BENCH_PG_PARAMS:-}"
fi
"$bin" serve 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.2; done
if [ -n "${BENCH_AFTER_START:-}" ]; then bash -c "$BENCH_AFTER_START"; fi
TOKEN=$("$bin" token --role his --org Organization/bench --scope 'system/*.cruds' 2>/dev/null)
export TOKEN
