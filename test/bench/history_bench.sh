#!/usr/bin/env bash
# The cost of the stage-history functions of issue #14 on N generated deals
# (sample_pipeline) and their history (sample_stage_history, about 3.4 rows
# a deal), one session, each statement timed on the second of two runs:
# check_source(source, history), funnel(source, history => ...),
# stage_conversion_trend(), stage_velocity(), pipeline_gaming(),
# diagnose(source, history) and point-in-time train() (logistic).  Usage: bash test/bench/history_bench.sh (a
# database with dealrisk: PGDATABASE etc.; make cluster-start gives one).
# Environment: BENCH_ROWS (default 1000000).  Writes
# test/bench/out/history_<N>.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
ROWS=${BENCH_ROWS:-1000000}
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
# the tables, made once per size
if [ "$(psql -X -At -c "SELECT count(*) FROM pg_class WHERE relname = 'hist_deals_$ROWS'")" = 0 ]; then
	psql -X -q -v ON_ERROR_STOP=1 \
		-c "CREATE TABLE hist_deals_$ROWS AS SELECT * FROM dealrisk.sample_pipeline($ROWS, 42)" \
		-c "CREATE TABLE hist_stages_$ROWS AS SELECT * FROM dealrisk.sample_stage_history($ROWS, 42)" \
		-c "VACUUM ANALYZE hist_deals_$ROWS" -c "VACUUM ANALYZE hist_stages_$ROWS"
fi
time_once() {
	psql -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "SET dealrisk.as_of_date = '2024-12-31'" \
		-c "$1" -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n 1 | awk '{printf "%.0f", $1}'
}
rows=()
for s in "SELECT count(*) FROM dealrisk.check_source('hist_deals_$ROWS', 'hist_stages_$ROWS')" \
	"SELECT count(*) FROM dealrisk.funnel('hist_deals_$ROWS', history => 'hist_stages_$ROWS')" \
	"SELECT count(*) FROM dealrisk.stage_conversion_trend('hist_deals_$ROWS', 'hist_stages_$ROWS')" \
	"SELECT count(*) FROM dealrisk.stage_velocity('hist_deals_$ROWS', 'hist_stages_$ROWS')" \
	"SELECT count(*) FROM dealrisk.pipeline_gaming('hist_deals_$ROWS', 'hist_stages_$ROWS')" \
	"SELECT length(dealrisk.diagnose('hist_deals_$ROWS', 'hist_stages_$ROWS'))" \
	"SELECT dealrisk.train('hist_deals_$ROWS', history => 'hist_stages_$ROWS', name => 'hist_bench', method => 'logistic', activate => false) > 0"; do
	rows+=("| \`$s\` | $(time_once "$s") |")
done
{
	echo "Deals: $ROWS; history rows: $(psql -X -At -c "SELECT count(*) FROM hist_stages_$ROWS"); $(date -u +%Y-%m-%d); PostgreSQL $(psql -X -At -c 'SHOW server_version'); work_mem $(psql -X -At -c 'SHOW work_mem'); second of two runs, one session."
	echo
	echo "| statement | ms |"
	echo "|---|---:|"
	printf '%s\n' "${rows[@]}"
} | tee "$OUT/history_$ROWS.md"
