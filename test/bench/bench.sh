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

. "$(dirname "$0")/lib.sh"
ensure_table bench_deals "$ROWS"

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
