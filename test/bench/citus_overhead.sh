#!/usr/bin/env bash
# dealrisk on Citus (issue #11): the cost of the sharded layout on this
# machine.  The same N sample deals in a table of the coordinator (c_local)
# and in a table hash-distributed by deal_id over the two workers (c_dist,
# 32 shards); each query below is timed on both, interleaved, and the
# median reported with the ratio.  Three nodes on one machine share its
# cores, so this measures what sharding costs, not what it gains.
# Run after `make citus-start` (the nodes stay up; `make citus-stop` stops
# them).  Prints a Markdown report and writes it to
# test/bench/out/citus_<N>.md.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 3; 0 times
# each statement once, without a warm-up), BENCH_TRAIN (default
# gbm,logistic: the methods whose train() is timed, once each; empty for
# none), BENCH_SKIP (an extended regular expression: statements matching it
# are not run, e.g. 'recommended_action' at 10M deals).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
. "$TOP/test/harness/common.sh"
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-3}
TRAIN=${BENCH_TRAIN-gbm,logistic}
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
export PGHOST=127.0.0.1 PGPORT=$((PORT + 10)) PGUSER=postgres PGDATABASE=${DEALRISK_CITUS_DB:-dealrisk_citus}
q() { psql -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" "$@"; }

if ! pg_isready -q; then
	echo "bench: no Citus coordinator on port $PGPORT: run make citus-start first" >&2
	exit 1
fi
q -c "SELECT count(*) FROM dealrisk.distribute()" >/dev/null
q -c "ALTER DATABASE $PGDATABASE SET dealrisk.as_of_date = '2024-12-31'"
have=$(q -c "SELECT count(*) FROM c_dist" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ]; then
	echo "bench: generating $ROWS deals into c_local and c_dist..." >&2
	q -c "DROP MATERIALIZED VIEW IF EXISTS dealrisk_watch.high_risk_deals" -c "DELETE FROM dealrisk.watch_config" \
		-c "DROP TABLE IF EXISTS c_local, c_dist" \
		-c "CREATE TABLE c_local AS SELECT * FROM dealrisk.sample_deals($ROWS, 42)" \
		-c "ALTER TABLE c_local ADD PRIMARY KEY (deal_id)" \
		-c "CREATE TABLE c_dist AS SELECT * FROM c_local" \
		-c "ALTER TABLE c_dist ADD PRIMARY KEY (deal_id)" \
		-c "SELECT create_distributed_table('c_dist', 'deal_id')" >/dev/null
	q -c "VACUUM ANALYZE c_local" -c "VACUUM ANALYZE c_dist"
fi
# the model every scoring query uses: trained once, on the local table
if [ "$(q -c "SELECT count(*) FROM dealrisk.models WHERE name = 'bench' AND active")" = 0 ]; then
	q -c "SELECT dealrisk.train('c_local', 'bench', method => 'gbm')" >/dev/null
fi

# Median wall time (ms, psql's \timing: the statement as the client waits
# for it) of a statement on each table, RUNS interleaved rounds after one
# warm-up; @T@ in the statement stands for the table.
time_pair() {
	local stmt=$1 runs=${2:-$RUNS} script out
	script=$(mktemp)
	{
		echo "SET client_min_messages = warning;"
		for r in $(seq 0 "$runs"); do
			for t in c_local c_dist; do
				echo "\\echo $t"
				echo "\\timing on"
				echo "${stmt//@T@/$t};"
				echo "\\timing off"
			done
		done
	} >"$script"
	out=$(psql -X -q -At -v ON_ERROR_STOP=1 -f "$script" | grep -E '^(c_local|c_dist)$|^Time: ')
	rm -f "$script"
	for t in c_local c_dist; do
		echo "$out" | awk -v t="$t" '/^c_/ {cur = $0; next} cur == t {sub(/^Time: /, ""); sub(/ ms.*/, ""); print}' |
			tail -n +$((runs > 0 ? 2 : 1)) | median "%.0f"
		echo
	done
}
median() {
	sort -g | awk -v f="${1:-%.1f}" '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf f, m}'
}

queries=(
	"SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM @T@"
	"SELECT region, dealrisk.win_rate_ci(dealrisk.is_won(outcome)) FROM @T@ GROUP BY region"
	"SELECT * FROM dealrisk.win_rate_trend('@T@')"
	"SELECT * FROM dealrisk.win_rate_drivers('@T@', 'industry')"
	"SELECT dealrisk.diagnose('@T@')"
	"SELECT sum(dealrisk.deal_risk(d.*, 'bench')) FROM @T@ d"
	"SELECT count(*) FROM @T@ d WHERE dealrisk.recommended_action(d.*, 'bench') IS NOT NULL AND dealrisk.is_won(d.outcome) IS NULL"
)
rows=()
for s in "${queries[@]}"; do
	if [ -n "${BENCH_SKIP:-}" ] && grep -qE -- "$BENCH_SKIP" <<<"$s"; then
		continue
	fi
	mapfile -t m < <(time_pair "$s")
	rows+=("| \`${s//@T@/deals}\` | ${m[0]} | ${m[1]} | $(awk -v a="${m[0]}" -v b="${m[1]}" 'BEGIN{printf "%.2f×", b/a}') |")
done
# the daily loop: watch() then refresh() of each table, once each
for t in c_local c_dist; do
	q -c "SELECT dealrisk.watch('$t', model => 'bench')" >/dev/null
	ms[$([ $t = c_local ] && echo 0 || echo 1)]=$(psql -X -q -At -c "SET client_min_messages = warning" -c '\timing on' -c "SELECT dealrisk.refresh()" |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | awk '{printf "%.0f", $1}')
done
rows+=("| \`SELECT dealrisk.refresh()\` (once, after watch()) | ${ms[0]} | ${ms[1]} | $(awk -v a="${ms[0]}" -v b="${ms[1]}" 'BEGIN{printf "%.2f×", b/a}') |")
IFS=, read -r -a methods <<<"$TRAIN"
for m in "${methods[@]}"; do
	mapfile -t tm < <(time_pair "SELECT dealrisk.train('@T@', 'bench_$m', method => '$m', activate => false)" 0)
	rows+=("| \`SELECT dealrisk.train('deals', method => '$m')\` (once) | ${tm[0]} | ${tm[1]} | $(awk -v a="${tm[0]}" -v b="${tm[1]}" 'BEGIN{printf "%.2f×", b/a}') |")
done
{
	echo "Rows: $ROWS; $(date -u +%Y-%m-%d); ${BENCH_SKIP:+not run: statements matching $BENCH_SKIP; } PostgreSQL $(q -c 'SHOW server_version'), Citus $(q -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'"); coordinator and two workers on one machine ($(nproc) cores); $(if [ "$RUNS" = 0 ]; then echo "each statement run once, without a warm-up"; else echo "median of $RUNS interleaved rounds after a warm-up unless marked once"; fi); wall time as psql waits for the statement."
	echo
	echo "| statement | local table (ms) | distributed (ms) | distributed / local |"
	echo "|---|---:|---:|---:|"
	printf '%s\n' "${rows[@]}"
} | tee "$OUT/citus_$ROWS.md"
