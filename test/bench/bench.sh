#!/usr/bin/env bash
# dealrisk benchmark (issue #2 part): aggregates vs built-in expressions with
# 0, 1 and 2 parallel workers, and the diagnostics on 1M deals.
# Run through `make bench` (it starts the scratch cluster and sets PG*).
# Prints a Markdown report and writes it to test/bench/out/aggregates.md.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 11).
set -euo pipefail
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-11}
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

# Median of a list of numbers on stdin.
median() {
	sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'
}

# Time the queries (arguments) with a number of parallel workers, all in one
# session (a new backend pays page faults on shared buffers that would blur
# the comparison): one warm-up round, then RUNS rounds in which every query
# runs once, so drift on the machine touches them alike.  Times are the
# executor's (EXPLAIN ANALYZE, no client transfer).  With workers > 0 the
# leader does not scan (parallel_leader_participation = off), so "2 workers"
# is two processes on this 2-core machine.  JIT is off: its compile time
# would swamp the serial plans (the parallel ones fall below jit_above_cost).
# Prints one median per query, in order.
medians() {
	local workers=$1 r i script out
	shift
	local -a q=("$@")
	script=$(mktemp)
	{
		echo "SET jit = off;"
		if [ "$workers" -gt 0 ]; then
			# plan for 2 workers, launch at most $workers: with the leader off,
			# the planner would not choose a 1-worker plan by itself
			echo "SET max_parallel_workers_per_gather = 2;"
			echo "SET max_parallel_workers = $workers;"
			echo "SET parallel_leader_participation = off;"
		else
			echo "SET max_parallel_workers_per_gather = 0;"
		fi
		for r in $(seq 0 "$RUNS"); do
			for i in "${!q[@]}"; do echo "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) ${q[$i]};"; done
		done
	} >"$script"
	out=$(psql -X -At -v ON_ERROR_STOP=1 -f "$script")
	rm -f "$script"
	if [ "$workers" -gt 0 ] && echo "$out" | grep -q "Workers Launched: [0-$((workers - 1))]$"; then
		echo "warning: a Gather launched fewer than $workers workers" >&2
	fi
	if [ "$workers" -gt 0 ] && [ "$#" -gt 0 ] && ! echo "$out" | grep -q "Workers Launched"; then
		echo "note: some queries ran without a Gather at workers=$workers" >&2
	fi
	# the k-th "Execution Time" is query (k-1) mod n of round (k-1) div n
	echo "$out" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' |
		awk -v n="${#q[@]}" 'NR > n {print (NR - 1) % n, $1}' >"$OUT/times.$workers"
	for i in "${!q[@]}"; do
		awk -v i="$i" '$1 == i {print $2}' "$OUT/times.$workers" | median
		echo
	done
}

report=$OUT/aggregates.md
agg=("SELECT avg((outcome = 'Won')::int) FROM bench_deals"
	"SELECT dealrisk.win_rate(outcome = 'Won') FROM bench_deals"
	"SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM bench_deals")
diag=("SELECT * FROM dealrisk.win_rate_drivers('bench_deals', 'industry')"
	"SELECT * FROM dealrisk.win_rate_drivers('bench_deals', 'region,lead_source')"
	"SELECT * FROM dealrisk.funnel('bench_deals')"
	"SELECT * FROM dealrisk.win_rate_trend('bench_deals')"
	"SELECT dealrisk.diagnose('bench_deals')")
mapfile -t a0 < <(medians 0 "${agg[@]}")
mapfile -t a1 < <(medians 1 "${agg[@]}")
mapfile -t a2 < <(medians 2 "${agg[@]}")
mapfile -t d0 < <(medians 0 "${diag[@]}")
mapfile -t d2 < <(medians 2 "${diag[@]}")
{
	echo "Rows: $ROWS; median of $RUNS interleaved rounds after one warm-up; $(date -u +%Y-%m-%d); PostgreSQL $(psql -X -At -c 'SHOW server_version')."
	echo
	echo "| query | serial (ms) | 1 worker (ms) | 2 workers (ms) | speed-up 1→2 workers | speed-up serial→2 |"
	echo "|---|---:|---:|---:|---:|---:|"
	for i in "${!agg[@]}"; do
		echo "| \`${agg[$i]}\` | ${a0[$i]} | ${a1[$i]} | ${a2[$i]} | $(awk -v a="${a1[$i]}" -v b="${a2[$i]}" 'BEGIN{printf "%.2f×", a/b}') | $(awk -v a="${a0[$i]}" -v b="${a2[$i]}" 'BEGIN{printf "%.2f×", a/b}') |"
	done
	echo
	echo "| diagnostic on $ROWS rows | serial (ms) | up to 2 workers (ms) |"
	echo "|---|---:|---:|"
	for i in "${!diag[@]}"; do
		echo "| \`${diag[$i]}\` | ${d0[$i]} | ${d2[$i]} |"
	done
} | tee "$report"
