#!/usr/bin/env bash
# The cost of the BI layer of issue #12 on N sample deals, one session,
# each statement timed once after one warm-up run: set_source() (every view
# of dealrisk_bi), forecast() in total and by close month, and report().
# Usage: bash test/bench/bi_bench.sh (a database with dealrisk: PGDATABASE
# etc.; make cluster-start gives one).  Environment: BENCH_ROWS (default
# 1000000), BENCH_TRAIN (default logistic: the model's method).  Writes
# test/bench/out/bi_<N>.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
. "$TOP/test/bench/lib.sh"
ROWS=${BENCH_ROWS:-1000000}
METHOD=${BENCH_TRAIN:-logistic}
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
ensure_table bi_deals "$ROWS" "ALTER TABLE bi_deals ADD PRIMARY KEY (deal_id)"
psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "SET dealrisk.as_of_date = '2024-12-31'" \
	-c "SELECT dealrisk.train('bi_deals', 'bi_bench', method => '$METHOD') IS NOT NULL" >/dev/null
# ms of the second of two runs of a statement
time_once() {
	psql -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "SET dealrisk.as_of_date = '2024-12-31'" \
		-c "$1" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1 | awk '{printf "%.0f", $1}'
}
rows=()
for s in "SELECT count(*) FROM dealrisk.set_source('bi_deals', 'bi_bench')" \
	"SELECT count(*) FROM dealrisk.forecast('bi_deals', model => 'bi_bench')" \
	"SELECT count(*) FROM dealrisk.forecast('bi_deals', 'close_month', model => 'bi_bench')" \
	"SELECT length(dealrisk.report('bi_deals', 'bi_bench'))" \
	"SELECT count(*) FROM dealrisk_bi.open_pipeline" \
	"SELECT count(*) FROM dealrisk_bi.risk_by_segment"; do
	rows+=("| \`$s\` | $(time_once "$s") |")
done
{
	echo "Rows: $ROWS ($(psql -X -At -c "SELECT count(*) FROM bi_deals WHERE outcome IS NULL") open); $(date -u +%Y-%m-%d); PostgreSQL $(psql -X -At -c 'SHOW server_version'); a $METHOD model; second of two runs, one session."
	echo
	echo "| statement | ms |"
	echo "|---|---:|"
	printf '%s\n' "${rows[@]}"
} | tee "$OUT/bi_$ROWS.md"
