#!/usr/bin/env bash
# dealrisk benchmark (issue #4 part): the daily loop on the bench_deals sample:
# watch(), then refresh() timed several times (the first one alerts every
# high-risk deal, the later ones find nothing new), digest() and
# risk_changes().  Like bench.sh it assumes PG* point at the benchmark
# database (make bench: PGDATABASE=dealrisk_bench on the scratch cluster) and
# reuses or generates bench_deals.  At the end it drops the view, the watch
# configuration and the history and alerts it wrote (so that bench.sh can
# regenerate bench_deals); the model it trained stays.
# Prints a Markdown report and writes it to test/bench/out/ops.md.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (refreshes, default 5),
# BENCH_THRESHOLD (default empty: the default alert policy, the riskiest 10%
# at risk 50 or more; a number: every deal at that risk or more), BENCH_AS_OF (scoring date, default 2024-12-31,
# the sample's last day; empty: today).
set -euo pipefail
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-5}
THRESHOLD=${BENCH_THRESHOLD:-}
WATCH="dealrisk.watch('bench_deals'${THRESHOLD:+, $THRESHOLD})"
POLICY=${THRESHOLD:+at risk >= $THRESHOLD}
POLICY=${POLICY:-high-risk under the default policy (the riskiest 10% at risk 50 or more)}
AS_OF=${BENCH_AS_OF-2024-12-31}
OUT=$(cd "$(dirname "$0")" && pwd)/out
mkdir -p "$OUT"
# every session: the same scoring date, no JIT (as in bench.sh)
export PGOPTIONS="${PGOPTIONS:-} -c jit=off -c dealrisk.as_of_date=$AS_OF -c client_min_messages=warning"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
val() { psql -X -At -v ON_ERROR_STOP=1 -c "$1"; }

. "$(dirname "$0")/lib.sh"
ensure_table bench_deals "$ROWS" "ALTER TABLE bench_deals ADD PRIMARY KEY (deal_id)"

# Milliseconds a statement takes in its own transaction (commit included).
time_ms() {
	psql -X -At -v ON_ERROR_STOP=1 \
		-c "SELECT set_config('bench.t0', clock_timestamp()::text, false) IS NULL" \
		-c "$1" \
		-c "SELECT round(extract(epoch FROM clock_timestamp() - current_setting('bench.t0')::timestamptz) * 1000, 1)" |
		tail -n 1
}

if [ "$(val "SELECT count(*) FROM dealrisk.models WHERE name = 'default' AND active")" = 0 ]; then
	echo "training a model on bench_deals..." >&2
	train_ms=$(time_ms "SELECT dealrisk.train('bench_deals')")
else
	train_ms="(model already trained)"
fi
start=$(val "SELECT clock_timestamp()")
open=$(val "SELECT count(*) FROM bench_deals WHERE outcome IS NULL")
watch_ms=$(time_ms "SELECT $WATCH")
high=$(val "SELECT count(*) FROM dealrisk_watch.high_risk_deals")

rows=()
for r in $(seq 1 "$RUNS"); do
	before=$(val "SELECT count(*) FROM dealrisk.alerts")
	ms=$(time_ms "SELECT dealrisk.refresh()")
	after=$(val "SELECT count(*) FROM dealrisk.alerts")
	rows+=("| $r | $ms | $((after - before)) |")
done
# the view alone, as refresh() refreshes it (it reads the latest refresh's scores)
view_ms=$(time_ms "REFRESH MATERIALIZED VIEW CONCURRENTLY dealrisk_watch.high_risk_deals")
digest_ms=$(time_ms "SELECT count(*) FROM dealrisk.digest()")
changes_ms=$(time_ms "SELECT count(*) FROM dealrisk.risk_changes(now() - interval '1 day')")
history=$(val "SELECT count(*) FROM dealrisk.score_history")
history_size=$(val "SELECT pg_size_pretty(pg_total_relation_size('dealrisk.score_history'))")

report=$OUT/ops.md
{
	echo "Rows: $ROWS deals, $open open, $high $POLICY (scored as of ${AS_OF:-today}); $(date -u +%Y-%m-%d); PostgreSQL $(val 'SHOW server_version'); JIT off."
	echo
	echo "| step | time (ms) |"
	echo "|---|---:|"
	echo "| \`train('bench_deals')\` | $train_ms |"
	echo "| \`${WATCH#dealrisk.}\` (builds the view) | $watch_ms |"
	echo "| \`REFRESH MATERIALIZED VIEW CONCURRENTLY\` of the view alone | $view_ms |"
	echo "| \`digest()\` | $digest_ms |"
	echo "| \`risk_changes(now() - '1 day')\` | $changes_ms |"
	echo
	echo "| \`refresh()\` run | time (ms) | alerts written |"
	echo "|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
	echo
	echo "Each refresh scores the $open open deals once (into score_history, whose scores the view and the alerts read) and explains the high-risk ones; watch() scores them once too (its rows are removed before it returns); score_history now holds $history rows ($history_size)."
} | tee "$report"

psql_q -c "DROP MATERIALIZED VIEW IF EXISTS dealrisk_watch.high_risk_deals" \
	-c "DELETE FROM dealrisk.watch_config" \
	-c "DELETE FROM dealrisk.score_history WHERE scored_at >= '$start'" \
	-c "DELETE FROM dealrisk.alerts WHERE created_at >= '$start'"
