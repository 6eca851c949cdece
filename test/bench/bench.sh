#!/usr/bin/env bash
# dealrisk benchmark (issue #2 part): aggregates vs built-in expressions with
# 0, 1 and 2 parallel workers, and the diagnostics on 1M deals.
# Run through `make bench` (it starts the scratch cluster and sets PG*).
# Prints a Markdown report and writes it to test/bench/out/aggregates.md.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 7).
set -euo pipefail
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-7}
OUT=$(cd "$(dirname "$0")" && pwd)/out
mkdir -p "$OUT"
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

have=$(psql -X -At -c "SELECT count(*) FROM bench_deals" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ]; then
	echo "generating $ROWS deals..." >&2
	psql_q -c "DROP TABLE IF EXISTS bench_deals" \
		-c "CREATE TABLE bench_deals AS SELECT * FROM dealrisk.sample_deals($ROWS, 42)" \
		-c "ALTER TABLE bench_deals SET (parallel_workers = 2)" \
		-c "VACUUM ANALYZE bench_deals"
fi

# Median execution time (ms) of a query with a given number of workers,
# from EXPLAIN ANALYZE (no client transfer); checks the workers launched.
median_ms() {
	local workers=$1 query=$2 i t launched times=()
	for i in $(seq 0 "$RUNS"); do
		plan=$(psql -X -At -v ON_ERROR_STOP=1 \
			-c "SET max_parallel_workers_per_gather = $workers" \
			-c "SET parallel_setup_cost = 0" -c "SET parallel_tuple_cost = 0" \
			-c "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) $query")
		t=$(echo "$plan" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p')
		launched=$(echo "$plan" | sed -n 's/.*Workers Launched: \([0-9]*\).*/\1/p' | head -n 1)
		if [ "$workers" -gt 0 ] && [ "${launched:-0}" != "$workers" ]; then
			echo "warning: asked for $workers workers, got ${launched:-0}: $query" >&2
		fi
		[ "$i" -gt 0 ] && times+=("$t")	# run 0 warms the cache
	done
	printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'
}

declare -A Q=(
	[c_aggregate]="SELECT dealrisk.win_rate(outcome = 'Won') FROM bench_deals"
	[builtin_avg]="SELECT avg((outcome = 'Won')::int) FROM bench_deals"
	[c_aggregate_is_won]="SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM bench_deals"
)
order=(builtin_avg c_aggregate c_aggregate_is_won)

report=$OUT/aggregates.md
{
	echo "Rows: $ROWS; median of $RUNS runs after one warm-up; $(date -u +%Y-%m-%d); $(psql -X -At -c 'SHOW server_version')."
	echo
	echo "| query | 0 workers (ms) | 1 worker (ms) | 2 workers (ms) | speed-up 0→2 |"
	echo "|---|---:|---:|---:|---:|"
	for k in "${order[@]}"; do
		t0=$(median_ms 0 "${Q[$k]}")
		t1=$(median_ms 1 "${Q[$k]}")
		t2=$(median_ms 2 "${Q[$k]}")
		echo "| \`${Q[$k]}\` | $t0 | $t1 | $t2 | $(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.2f×", a/b}') |"
	done
	echo
	echo "| diagnostic on $ROWS rows | 0 workers (ms) | 2 workers (ms) |"
	echo "|---|---:|---:|"
	for q in "SELECT * FROM dealrisk.win_rate_drivers('bench_deals', 'industry')" \
		"SELECT * FROM dealrisk.win_rate_drivers('bench_deals', 'region,lead_source')" \
		"SELECT * FROM dealrisk.funnel('bench_deals')" \
		"SELECT * FROM dealrisk.win_rate_trend('bench_deals')" \
		"SELECT dealrisk.diagnose('bench_deals')"; do
		echo "| \`$q\` | $(median_ms 0 "$q") | $(median_ms 2 "$q") |"
	done
} | tee "$report"
