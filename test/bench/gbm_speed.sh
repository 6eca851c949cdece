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
# SCORE_RUNS (3).
# Prints a Markdown report and writes it to test/bench/out/gbm_speed.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
ROWS=${ROWS:-1000000}
QROWS=${QROWS:-250000}
RUNS=${RUNS:-3}
SCORE_RUNS=${SCORE_RUNS:-3}
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

# route_run RUN: \copy out (timed here), then gbm_route.py with nthread 1
# and 2 (each reads the CSV itself); their key/value lines into $TMP
route_run() {
	local r=$1 t0 t1 nt
	t0=$(date +%s.%N)
	psql -X -q -v ON_ERROR_STOP=1 -c "\\copy (SELECT created_date, closed_date, industry, region, product_type, lead_source, sales_rep_id, deal_amount, sales_cycle_days, dealrisk.is_won(outcome)::int AS won FROM $T WHERE dealrisk.is_won(outcome) IS NOT NULL) TO '$TMP/deals.csv' WITH (FORMAT csv, HEADER)"
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", b - a}' >"$TMP/copy.$r"
	CSV_MB=$(awk -v b="$(stat -c %s "$TMP/deals.csv")" 'BEGIN {printf "%.1f", b / 1048576}')
	for nt in 1 2; do
		/usr/bin/python3 test/bench/gbm_route.py "$TMP/deals.csv" --cutoff "$CUTOFF" --halflife-days "$HALFLIFE" \
			--nthread "$nt" >"$TMP/route.$nt.$r"
	done
}

HALFLIFE=$(psql_at -c "SELECT dealrisk.outcome_class('') IS NULL" -c "SHOW dealrisk.recency_halflife_days" | tail -n 1)
serial=() parallel=() 
for r in $(seq "$RUNS"); do
	note "run $r of $RUNS: train(method => 'gbm') on $T, serial..."
	IFS='|' read -r secs id h0 h1 shm < <(train_run "$T" spd_gbm 0 gbm "")
	serial+=("$secs"); GBM_ID=$id; H0=$h0; H1=$h1; SHM=$shm
	note "  $secs s (model $id)"
	CUTOFF=$(psql_at -c "SELECT metrics->>'holdout_from' FROM dealrisk.models WHERE id = $id")
	note "run $r of $RUNS: train(method => 'gbm') on $T, up to 2 parallel workers..."
	IFS='|' read -r secs id _ _ _ < <(train_run "$T" spd_gbm_par 2 gbm "")
	parallel+=("$secs"); PAR_ID=$id
	note "  $secs s (model $id)"
	note "run $r of $RUNS: the route (\\copy, pandas, xgboost nthread 1 and 2)..."
	route_run "$r"
	note "  copy $(cat "$TMP/copy.$r") s, python $(awk -F '\t' '$1 == "python_total_s" {print $2}' "$TMP/route.1.$r") s (1 thread), $(awk -F '\t' '$1 == "python_total_s" {print $2}' "$TMP/route.2.$r") s (2 threads)"
done
note "memory: train(method => 'gbm') on $TQ, serial..."
IFS='|' read -r Q_SECS Q_ID QH0 QH1 QSHM < <(train_run "$TQ" spd_gbm_q 0 gbm "")

# the models scored: the last serial 'gbm' model, a 300-tree one (trained
# on the smaller table with learning_rate 0.02 and no early stopping, so
# that every round improves the holdout and all 300 trees are kept), and
# the logistic model on the same table and columns
note "training the logistic model on $T and a 300-tree model on $TQ..."
IFS='|' read -r LOG_SECS LOG_ID _ _ _ < <(train_run "$T" spd_log 0 logistic "")
IFS='|' read -r _ G300_ID _ _ _ < <(train_run "$TQ" spd_gbm300 0 gbm '{"learning_rate": 0.02, "early_stopping_rounds": 0}')
psql_at -c "SET client_min_messages = warning" -c "SELECT dealrisk.activate(id, true) FROM dealrisk.models WHERE id IN ($GBM_ID, $LOG_ID, $G300_ID)" >/dev/null

note "scoring $T ($SCORE_RUNS rounds after a warm-up, serial)..."
score=("SELECT count(*) FROM $T d"
	"SELECT sum(deal_amount) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_log')) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm')) FROM $T d"
	"SELECT sum(dealrisk.deal_risk(d.*, 'spd_gbm300')) FROM $T d")
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
TS=$(med "${serial[@]}"); TP=$(med "${parallel[@]}")
R1=$(route_total 1 | median %.2f); R2=$(route_total 2 | median %.2f)
N_CLOSED=$(psql_at -c "SELECT count(*) FROM $T WHERE dealrisk.is_won(outcome) IS NOT NULL")
NQ_CLOSED=$(psql_at -c "SELECT count(*) FROM $TQ WHERE dealrisk.is_won(outcome) IS NOT NULL")
{
	echo "$ROWS deals ($N_CLOSED closed) of test/bench/interactions.sql (seed 42); $(nproc) CPUs shared with other sessions; $(date -u +%Y-%m-%d);" \
		"PostgreSQL $(psql_at -c 'SHOW server_version'), shared_buffers $(psql_at -c 'SHOW shared_buffers'), work_mem $(psql_at -c 'SHOW work_mem'), JIT off;" \
		"$(/usr/bin/python3 -c 'import numpy, pandas, xgboost; print(f"numpy {numpy.__version__}, pandas {pandas.__version__}, xgboost {xgboost.__version__}")')." \
		"Columns: industry, region, product_type, lead_source, sales_rep_id, deal_amount, cycle_days; defaults otherwise (300 rounds at most, depth 6, eta 0.1, early stopping 30, refit)."
	echo
	echo "#### Training end to end: train() against the route, median of $RUNS interleaved runs"
	echo
	echo "| | seconds (median) | runs (s) |"
	echo "|---|---:|---|"
	echo "| \`train(method => 'gbm')\`, serial (max_parallel_workers_per_gather = 0) | **$TS** | $(printf '%s ' "${serial[@]}") |"
	echo "| \`train(method => 'gbm')\`, up to 2 parallel workers | $TP | $(printf '%s ' "${parallel[@]}") |"
	echo "| route, xgboost nthread = 1: total | **$R1** | $(route_total 1 | tr '\n' ' ') |"
	echo "| route, xgboost nthread = 2: total | $R2 | $(route_total 2 | tr '\n' ' ') |"
	echo
	echo "Stages of the route (medians; nthread 1 / nthread 2):"
	echo
	echo "| stage | nthread 1 (s) | nthread 2 (s) |"
	echo "|---|---:|---:|"
	echo "| \`\\copy (closed deals) TO csv\` with psql ($CSV_MB MB) | $(for r in $(seq "$RUNS"); do cat "$TMP/copy.$r"; done | median %.2f) | (the same file) |"
	echo "| python start-up (import numpy, pandas, xgboost, sklearn.metrics) | $(route_med 1 import_s) | $(route_med 2 import_s) |"
	echo "| \`pandas.read_csv\` | $(route_med 1 read_s) | $(route_med 2 read_s) |"
	echo "| encode (categories, cycle, split, weights) | $(route_med 1 encode_s) | $(route_med 2 encode_s) |"
	echo "| three DMatrix (training split, holdout, all) | $(route_med 1 dmatrix_s) | $(route_med 2 dmatrix_s) |"
	echo "| fit with early stopping on the holdout ($(rk rounds "$TMP/route.1.$RUNS")) | $(route_med 1 fit_s) | $(route_med 2 fit_s) |"
	echo "| predict the holdout ($(rk holdout "$TMP/route.1.$RUNS")) | $(route_med 1 predict_s) | $(route_med 2 predict_s) |"
	echo "| refit on all closed deals for the kept rounds | $(route_med 1 refit_s) | $(route_med 2 refit_s) |"
	echo
	echo "Route / train(), serial train(): **$(ratio "$R1" "$TS")** (nthread 1), $(ratio "$R2" "$TS") (nthread 2); against train() with 2 workers: $(ratio "$R1" "$TP"), $(ratio "$R2" "$TP")." \
		"The target (train() at least 1.5× faster, i.e. a ratio ≥ 1.5) is **$(awk -v a="$R1" -v b="$R2" -v t="$TS" 'BEGIN {r = (a < b ? a : b) / t; print (r >= 1.5) ? "met" : "not met"}')** against the faster route."
	echo
	echo "train()'s last serial model (id $GBM_ID): $(m "$GBM_ID" "(metrics->>'rounds_run') || ' rounds run, ' || (metrics->>'rounds_kept') || ' kept, ' || (metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes; holdout from ' || (metrics->>'holdout_from') || ', n_test ' || (metrics->>'n_test') || ', AUC ' || round((metrics->>'auc')::numeric, 4) || ', log loss ' || round((metrics->>'log_loss')::numeric, 4)")."
	echo
	echo "#### Peak memory of the training backend (serial; VmHWM of /proc/<pg_backend_pid()>/status, read in the same session before and after train())"
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
	lbl=("scan floor" "scan floor"
		"logistic, $(m "$LOG_ID" "cardinality(coefficients)") coefficients (id $LOG_ID)"
		"gbm as train() keeps it: $(m "$GBM_ID" "(metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes'") (id $GBM_ID)"
		"gbm, 300 trees kept ($(m "$G300_ID" "(metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes'"); trained on $TQ with learning_rate 0.02, no early stopping; id $G300_ID)")
	for i in "${!score[@]}"; do
		echo "| \`${score[$i]}\` | ${lbl[$i]} | ${s0[$i]} | $(awk -v ms="${s0[$i]}" -v n="$ROWS" 'BEGIN {printf "%.0f", ms * 1e6 / n}') | $(ratio "${s0[$i]}" "${s0[2]}") |"
	done
	echo
	echo "train(method => 'logistic') on $T, serial, same columns: $LOG_SECS s."
} | tee "$OUT/gbm_speed.md"
