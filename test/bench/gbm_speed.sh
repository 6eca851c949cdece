#!/usr/bin/env bash
# Speed and memory of dealrisk's tree model at 1M deals (issue #10,
# "Measure"): train(method => 'gbm') end to end against the route a user
# takes instead (\copy the closed deals to CSV, pandas, xgboost with the
# same rounds, depth and early stopping, nthread 1 and 2, predict), the
# peak memory of the training backend at 250k and 1M deals, and scoring
# with sum(deal_risk(d.*)) under a tree model, the logistic model and the
# scan floor.
#
#   PGDATABASE=gbmbench bash test/bench/gbm_speed.sh     (from the top of the checkout)
#
# Needs what gbm_quality.sh needs (psql's environment pointing at a
# database with the extension, /usr/bin/python3 with pandas, sklearn and
# xgboost), the server on this machine and /proc/<backend pid>/status
# readable (root or the server's user).  Every train() and the scoring run
# while holding /tmp/dealrisk-harness.lock, right after `make -s install`
# of this checkout (the installed library is shared by all checkouts); the
# python route does not hold it.  Runs are sequential, never two at once.
# Environment: ROWS (1000000), QROWS (250000), RUNS (3: train() and the
# route are timed that many times, interleaved; medians are reported),
# SCORE_RUNS (3), PARAMS_B ('{"max_depth": 6}': a second serial train()
# with the route's parameters, '' to skip it), ROUTE_DEPTH (6: the route's
# max_depth), ROUTE_DEPTH_DEFAULT (4, train()'s default max_depth: the route
# is also run at that depth, on one thread, and compared with train()'s
# default params; '' skips it), ROUTE_THREADS ("1 2": the route's nthread values), PARALLEL
# (1: also time train() with up to 2 parallel workers; 0 skips it).
# Prints a Markdown report and writes it to test/bench/out/gbm_speed.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
ROWS=${ROWS:-1000000}
QROWS=${QROWS:-250000}
RUNS=${RUNS:-3}
SCORE_RUNS=${SCORE_RUNS:-3}
PARAMS_B=${PARAMS_B-'{"max_depth": 6}'}
ROUTE_DEPTH=${ROUTE_DEPTH:-6}
ROUTE_DEPTH_DEFAULT=${ROUTE_DEPTH_DEFAULT-4}
ROUTE_THREADS=${ROUTE_THREADS:-1 2}
PARALLEL=${PARALLEL:-1}
G300_PARAMS='{"max_depth": 6, "learning_rate": 0.02, "early_stopping_rounds": 0}'
ASOF=2024-12-31
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LOCK=/tmp/dealrisk-harness.lock
FEATURES="ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount', 'cycle_days']"
T=ix_$ROWS
TQ=ix_$QROWS
psql_at() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
note() { echo "gbm_speed: $(date -u +%H:%M:%S) $*" >&2; }
. "$TOP/test/bench/lib.sh"			# median, medians

# the tables (not timed): the generator of interactions.sql, seed 42
gen_inner() {
	make -s install >/dev/null
	local t n
	for t in "$@"; do
		n=${t#ix_}
		if [ "$(psql -X -At -c "SELECT count(*) FROM $t" 2>/dev/null || echo 0)" != "$n" ]; then
			psql -X -q -v ON_ERROR_STOP=1 -v tbl="$t" -v n="$n" -v seed=42 -f test/bench/interactions.sql
		fi
	done
}
note "tables $T and $TQ..."
flock "$LOCK" bash -c "$(declare -f gen_inner); gen_inner $T $TQ"

# train_run TABLE NAME WORKERS METHOD PARAMS(json or empty): install, then
# train in a new session of its own, holding the lock; prints
# "seconds|model id|VmHWM before|VmHWM after|RssShmem after" (kB).  The
# clock is clock_timestamp() in the session, around the train() call only.
train_run() {
	local t=$1 name=$2 workers=$3 method=$4 params=$5 d
	d=$(mktemp -d "$TMP/train.XXXX")
	{
		echo "SET client_min_messages = warning;"
		echo "SET jit = off;"
		echo "SET dealrisk.as_of_date = '$ASOF';"
		echo "SET max_parallel_workers_per_gather = $workers;"
		echo "SELECT dealrisk.outcome_class('') IS NULL AS loaded \\gset"
		echo "SELECT pg_backend_pid() AS pid \\gset"
		echo "\\setenv DR_PID :pid"
		echo "\\! grep -E '^(VmHWM|RssShmem):' /proc/\$DR_PID/status >$d/before"
		echo "SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset"
		echo "SELECT dealrisk.train('$t', '$name', features => $FEATURES, activate => false, method => '$method'${params:+, params => '$params'}) AS id \\gset"
		echo "SELECT round(extract(epoch FROM clock_timestamp()) - :t0, 3) AS secs \\gset"
		echo "\\! grep -E '^(VmHWM|RssShmem):' /proc/\$DR_PID/status >$d/after"
		echo "SELECT :'secs' || '|' || :'id';"
	} >"$d/script.sql"
	flock "$LOCK" bash -c "make -s install >/dev/null && psql -X -q -At -v ON_ERROR_STOP=1 -f $d/script.sql" >"$d/res"
	kb() { awk -v k="$1:" '$1 == k {print $2}' "$2"; }
	echo "$(cat "$d/res")|$(kb VmHWM "$d/before")|$(kb VmHWM "$d/after")|$(kb RssShmem "$d/after")"
}

# route_run RUN: \copy out (timed here), then gbm_route.py with each
# nthread of ROUTE_THREADS (each reads the CSV itself); their key/value
# lines into $TMP
route_run() {
	local r=$1 t0 t1 nt
	t0=$(date +%s.%N)
	psql -X -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT created_date, closed_date, industry, region, product_type, lead_source, sales_rep_id, deal_amount, sales_cycle_days, dealrisk.is_won(outcome)::int AS won FROM $T WHERE dealrisk.is_won(outcome) IS NOT NULL) TO '$TMP/deals.csv' WITH (FORMAT csv, HEADER)"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' >"$TMP/copy.$r"
	CSV_MB=$(awk -v b="$(stat -c %s "$TMP/deals.csv")" 'BEGIN {printf "%.1f", b / 1048576}')
	for nt in $ROUTE_THREADS; do
		/usr/bin/python3 test/bench/gbm_route.py "$TMP/deals.csv" --cutoff "$CUTOFF" --halflife-days "$HALFLIFE" \
			--nthread "$nt" --depth "$ROUTE_DEPTH" >"$TMP/route.$nt.$r"
	done
	if [ -n "$ROUTE_DEPTH_DEFAULT" ]; then
		/usr/bin/python3 test/bench/gbm_route.py "$TMP/deals.csv" --cutoff "$CUTOFF" --halflife-days "$HALFLIFE" \
			--nthread 1 --depth "$ROUTE_DEPTH_DEFAULT" >"$TMP/route.d.$r"
	fi
}

HALFLIFE=$(psql_at -c "SELECT dealrisk.outcome_class('') IS NULL" -c "SHOW dealrisk.recency_halflife_days" | tail -n 1)
serial=() serial_b=() parallel=() GBM_B_ID=
for r in $(seq "$RUNS"); do
	note "run $r of $RUNS: train(method => 'gbm') on $T, serial..."
	IFS='|' read -r secs id h0 h1 shm < <(train_run "$T" spd_gbm 0 gbm "")
	serial+=("$secs"); GBM_ID=$id; H0=$h0; H1=$h1; SHM=$shm
	note "  $secs s (model $id)"
	CUTOFF=$(psql_at -c "SELECT metrics->>'holdout_from' FROM dealrisk.models WHERE id = $id")
	if [ -n "$PARAMS_B" ]; then
		note "run $r of $RUNS: train(method => 'gbm', params => '$PARAMS_B') on $T, serial..."
		IFS='|' read -r secs id _ _ _ < <(train_run "$T" spd_gbm_b 0 gbm "$PARAMS_B")
		serial_b+=("$secs"); GBM_B_ID=$id
		note "  $secs s (model $id)"
	fi
	if [ "$PARALLEL" = 1 ]; then
		note "run $r of $RUNS: train(method => 'gbm') on $T, up to 2 parallel workers..."
		IFS='|' read -r secs id _ _ _ < <(train_run "$T" spd_gbm_par 2 gbm "")
		parallel+=("$secs"); PAR_ID=$id
		note "  $secs s (model $id)"
	fi
	note "run $r of $RUNS: the route (\\copy, pandas, xgboost depth $ROUTE_DEPTH, nthread $ROUTE_THREADS)..."
	route_run "$r"
	for nt in $ROUTE_THREADS; do
		note "  copy $(cat "$TMP/copy.$r") s, python $(awk -F '\t' '$1 == "python_total_s" {print $2}' "$TMP/route.$nt.$r") s ($nt thread(s))"
	done
	if [ -n "$ROUTE_DEPTH_DEFAULT" ]; then
		note "  depth $ROUTE_DEPTH_DEFAULT: python $(awk -F '\t' '$1 == "python_total_s" {print $2}' "$TMP/route.d.$r") s"
	fi
done
note "memory: train(method => 'gbm') on $TQ, serial..."
IFS='|' read -r Q_SECS Q_ID QH0 QH1 QSHM < <(train_run "$TQ" spd_gbm_q 0 gbm "")

# the models scored: the last serial 'gbm' model (default params), a
# 300-tree depth-6 one (trained on the smaller table with learning_rate
# 0.02 and early_stopping_rounds 0, which keeps every round), and the
# logistic model on the same table and columns
note "training the logistic model on $T and a 300-tree model on $TQ..."
IFS='|' read -r LOG_SECS LOG_ID _ _ _ < <(train_run "$T" spd_log 0 logistic "")
IFS='|' read -r _ G300_ID _ _ _ < <(train_run "$TQ" spd_gbm300 0 gbm "$G300_PARAMS")
psql_at -c "SET client_min_messages = warning" -c "SELECT dealrisk.activate(id, true) FROM dealrisk.models WHERE id IN ($GBM_ID, $LOG_ID, $G300_ID)" >/dev/null

note "scoring $T ($SCORE_RUNS rounds after a warm-up, serial)..."
score=("SELECT count(*) FROM $T d"
	"SELECT sum(deal_amount) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_log')) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm')) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm300')) FROM $T d"
	"SELECT count(*) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NOT NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_log')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NOT NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NOT NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm300')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NOT NULL"
	"SELECT count(*) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_log')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NULL"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm300')) FROM $T d WHERE dealrisk.is_won(d.outcome) IS NULL")
score_inner() {
	make -s install >/dev/null
	. test/bench/lib.sh
	BENCH_SET="SET dealrisk.as_of_date = '$ASOF';" RUNS=$SCORE_RUNS medians 0 "$@"
}
mapfile -t s0 < <(ASOF=$ASOF SCORE_RUNS=$SCORE_RUNS flock "$LOCK" bash -c "$(declare -f score_inner); score_inner \"\$@\"" _ "${score[@]}")

# ---------------------------------------------------------------------------
med() { printf '%s\n' "$@" | median %.2f; }
rk() { awk -F '\t' -v k="$1" '$1 == k {print $2}' "$2"; }
# route_med NTHREAD KEY: median over the runs
route_med() { local r; for r in $(seq "$RUNS"); do rk "$2" "$TMP/route.$1.$r"; done | median %.2f; }
route_total() { local r; for r in $(seq "$RUNS"); do awk -v c="$(cat "$TMP/copy.$r")" -v p="$(rk python_total_s "$TMP/route.$1.$r")" 'BEGIN {printf "%.3f\n", c + p}'; done; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f×", a / b}'; }
mb() { awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
m() { psql_at -c "SELECT $2 FROM dealrisk.models WHERE id = $1"; }
fitdesc() { m "$1" "(metrics->>'rounds_run') || ' rounds run, ' || (metrics->>'rounds_kept') || ' kept, ' || (metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes; holdout from ' || (metrics->>'holdout_from') || ', n_test ' || (metrics->>'n_test') || ', AUC ' || round((metrics->>'auc')::numeric, 4) || ', log loss ' || round((metrics->>'log_loss')::numeric, 4)"; }
TS=$(med "${serial[@]}")
[ -n "$ROUTE_DEPTH_DEFAULT" ] && RTD=$(route_total d | median %.2f)
[ -n "$PARAMS_B" ] && TB=$(med "${serial_b[@]}")
[ "$PARALLEL" = 1 ] && TP=$(med "${parallel[@]}")
declare -A RT
FASTEST=
for nt in $ROUTE_THREADS; do
	RT[$nt]=$(route_total "$nt" | median %.2f)
	if [ -z "$FASTEST" ] || awk -v a="${RT[$nt]}" -v b="$FASTEST" 'BEGIN {exit !(a < b)}'; then FASTEST=${RT[$nt]}; fi
done
N_CLOSED=$(psql_at -c "SELECT count(*) FROM $T WHERE dealrisk.is_won(outcome) IS NOT NULL")
NQ_CLOSED=$(psql_at -c "SELECT count(*) FROM $TQ WHERE dealrisk.is_won(outcome) IS NOT NULL")
target() { awk -v r="$FASTEST" -v t="$1" 'BEGIN {print (r / t >= 1.5) ? "met" : "not met"}'; }
target_of() { awk -v r="$1" -v t="$2" 'BEGIN {print (r / t >= 1.5) ? "met" : "not met"}'; }
{
	echo "$ROWS deals ($N_CLOSED closed) of test/bench/interactions.sql (seed 42); $(nproc) CPUs shared with other sessions; $(date -u +%Y-%m-%d); commit $(git rev-parse --short HEAD);" \
		"PostgreSQL $(psql_at -c 'SHOW server_version'), shared_buffers $(psql_at -c 'SHOW shared_buffers'), work_mem $(psql_at -c 'SHOW work_mem'), JIT off;" \
		"$(/usr/bin/python3 -c 'import numpy, pandas, xgboost; print(f"numpy {numpy.__version__}, pandas {pandas.__version__}, xgboost {xgboost.__version__}")')." \
		"Columns: industry, region, product_type, lead_source, sales_rep_id, deal_amount, cycle_days; train()'s defaults otherwise (300 rounds at most, depth 4, eta 0.1, early stopping 30, refit);" \
		"the route: depth $ROUTE_DEPTH, 300 rounds at most, eta 0.1, early stopping 30, refit."
	echo
	echo "#### Training end to end: train() against the route, median of $RUNS interleaved runs"
	echo
	echo "| | seconds (median) | runs (s) |"
	echo "|---|---:|---|"
	echo "| \`train(method => 'gbm')\`, default params (depth 4), serial (max_parallel_workers_per_gather = 0) | **$TS** | $(printf '%s ' "${serial[@]}") |"
	[ -n "$PARAMS_B" ] && echo "| \`train(method => 'gbm', params => '$PARAMS_B')\`, serial | **$TB** | $(printf '%s ' "${serial_b[@]}") |"
	[ "$PARALLEL" = 1 ] && echo "| \`train(method => 'gbm')\`, default params, up to 2 parallel workers | $TP | $(printf '%s ' "${parallel[@]}") |"
	for nt in $ROUTE_THREADS; do
		echo "| route, xgboost depth $ROUTE_DEPTH, nthread = $nt: total | **${RT[$nt]}** | $(route_total "$nt" | tr '\n' ' ') |"
	done
	if [ -n "$ROUTE_DEPTH_DEFAULT" ]; then
		echo "| route, xgboost depth $ROUTE_DEPTH_DEFAULT (train()'s default), nthread = 1: total | **$RTD** | $(route_total d | tr '\n' ' ') ($(rk rounds "$TMP/route.d.$RUNS"); $(rk holdout "$TMP/route.d.$RUNS")) |"
	fi
	echo
	echo "Stages of the route (medians; nthread $(echo $ROUTE_THREADS | sed 's/ / \/ /g')):"
	echo
	echo "| stage |$(for nt in $ROUTE_THREADS; do printf ' nthread %s (s) |' "$nt"; done)"
	echo "|---|$(for nt in $ROUTE_THREADS; do printf -- '---:|'; done)"
	row() { local lbl=$1 key=$2 nt; printf '| %s |' "$lbl"; for nt in $ROUTE_THREADS; do printf ' %s |' "$(route_med "$nt" "$key")"; done; echo; }
	echo "| \`\\copy (closed deals) TO csv\` with psql ($CSV_MB MB) | $(for r in $(seq "$RUNS"); do cat "$TMP/copy.$r"; done | median %.2f) |$(for nt in $ROUTE_THREADS; do [ "$nt" = "${ROUTE_THREADS%% *}" ] || printf ' (the same file) |'; done)"
	row "python start-up (import numpy, pandas, xgboost, sklearn.metrics)" import_s
	row "\`pandas.read_csv\`" read_s
	row "encode (categories, cycle, split, weights)" encode_s
	row "three DMatrix (training split, holdout, all)" dmatrix_s
	nt1=${ROUTE_THREADS%% *}
	row "fit with early stopping on the holdout ($(rk rounds "$TMP/route.$nt1.$RUNS"))" fit_s
	row "predict the holdout ($(rk holdout "$TMP/route.$nt1.$RUNS"))" predict_s
	row "refit on all closed deals for the kept rounds" refit_s
	echo
	if [ -n "$ROUTE_DEPTH_DEFAULT" ]; then
		echo "Route at depth $ROUTE_DEPTH_DEFAULT (train()'s default depth; $RTD s) / train() with default params: $(ratio "$RTD" "$TS"), target **$(target_of "$RTD" "$TS")**."
		echo
	fi
	echo "Route (fastest, $FASTEST s) / train(): $(ratio "$FASTEST" "$TS") against train() with default params, serial: the 1.5× target is **$(target "$TS")**." \
		"$([ -n "$PARAMS_B" ] && echo "Against train() with $PARAMS_B (the route's depth), serial: $(ratio "$FASTEST" "$TB"), target **$(target "$TB")**.")" \
		"$([ "$PARALLEL" = 1 ] && echo "Against train() with default params and 2 workers: $(ratio "$FASTEST" "$TP").")"
	echo
	echo "train()'s last serial model with default params (id $GBM_ID): $(fitdesc "$GBM_ID")."
	[ -n "$PARAMS_B" ] && echo "With $PARAMS_B (id $GBM_B_ID): $(fitdesc "$GBM_B_ID")."
	echo
	echo "#### Peak memory of the training backend (serial, default params; VmHWM of /proc/<pg_backend_pid()>/status, read in the same session before and after train())"
	echo
	echo "| table | closed deals | train() (s) | VmHWM before (MB) | VmHWM after (MB) | RssShmem after (MB) |"
	echo "|---|---:|---:|---:|---:|---:|"
	echo "| $TQ | $NQ_CLOSED | $Q_SECS | $(mb "$QH0") | $(mb "$QH1") | $(mb "$QSHM") |"
	echo "| $T | $N_CLOSED | ${serial[$((RUNS - 1))]} | $(mb "$H0") | $(mb "$H1") | $(mb "$SHM") |"
	echo
	echo "VmHWM is the peak resident set: private memory plus the shared buffers the backend touched (RssShmem)."
	echo
	echo "#### Scoring $ROWS deals: serial, executor time (EXPLAIN ANALYZE), median of $SCORE_RUNS rounds after a warm-up, as-of $ASOF"
	echo
	echo "| query | model | ms (median) | ns per row | / logistic |"
	echo "|---|---|---:|---:|---:|"
	L_LOG="logistic, $(m "$LOG_ID" "cardinality(coefficients)") coefficients (id $LOG_ID)"
	L_GBM="gbm as train() keeps it with default params: $(m "$GBM_ID" "(metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes'") (id $GBM_ID)"
	L_300="gbm, 300 trees, depth 6 ($(m "$G300_ID" "(metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes'"); trained on $TQ with $G300_PARAMS; id $G300_ID)"
	N_OPEN=$((ROWS - N_CLOSED))
	lbl=("scan floor" "scan floor" "$L_LOG" "$L_GBM" "$L_300"
		"scan floor, closed deals ($N_CLOSED)" "$L_LOG" "$L_GBM" "$L_300"
		"scan floor, open deals ($N_OPEN)" "$L_LOG" "$L_GBM" "$L_300")
	nrows=("$ROWS" "$ROWS" "$ROWS" "$ROWS" "$ROWS" "$N_CLOSED" "$N_CLOSED" "$N_CLOSED" "$N_CLOSED" "$N_OPEN" "$N_OPEN" "$N_OPEN" "$N_OPEN")
	logi=(2 2 2 2 2 6 6 6 6 10 10 10 10)
	for i in "${!score[@]}"; do
		echo "| \`${score[$i]}\` | ${lbl[$i]} | ${s0[$i]} | $(awk -v ms="${s0[$i]}" -v n="${nrows[$i]}" 'BEGIN {printf "%.0f", ms * 1e6 / n}') | $(ratio "${s0[$i]}" "${s0[${logi[$i]}]}") |"
	done
	echo
	echo "ns per row: over the rows the query scores (all, closed or open deals); / logistic: against the logistic model on the same rows."
	echo
	echo "train(method => 'logistic') on $T, serial, same columns: $LOG_SECS s."
} | tee "$OUT/gbm_speed.md"
