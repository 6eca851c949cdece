#!/usr/bin/env bash
# Holdout quality of dealrisk's tree model (issue #10, "Measure"): holdout
# AUC and log loss of train(method => 'logistic' | 'gbm' | 'auto') next to
# scikit-learn's LogisticRegression and xgboost on the same split and
# columns, on (a) the bundled SkyGeni export and (b) the generator with
# planted interactions (test/bench/interactions.sql, 50,000 deals, seed 42).
#
#   . <(DEALRISK_PGPORT=54332 make -s cluster-start | ...)   # or set PG* by hand
#   PGDATABASE=gbmbench bash test/bench/gbm_quality.sh
#
# Needs a database with the extension (CREATE EXTENSION dealrisk), psql's
# environment (PGHOST, PGPORT, PGUSER, PGDATABASE), /usr/bin/python3 with
# python3-sklearn, python3-pandas, python3-xgboost (make bench-deps), and is
# run from the top of the checkout.  Each group of train() calls runs while
# holding /tmp/dealrisk-harness.lock, after `make -s install` of this
# checkout (the installed library is shared by every checkout).
# Environment: IX_ROWS (default 50000), SEED (42).
# Prints a Markdown report and writes it to test/bench/out/gbm_quality.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP"
IX_ROWS=${IX_ROWS:-50000}
SEED=${SEED:-42}
ASOF=2024-12-31
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
FEATURES="ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount', 'cycle_days']"
psql_at() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
note() { echo "gbm_quality: $*" >&2; }
IX=ix_q$IX_ROWS

# train_all TABLE: (install, then) the three methods, not activated; their
# model ids "logistic gbm auto" on stdout
train_inner() {
	make -s install >/dev/null
	local m
	for m in logistic gbm auto; do
		psql -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
			-c "SET dealrisk.as_of_date = '$ASOF'" \
			-c "SELECT dealrisk.train('$1', 'q_$1_$m', features => $FEATURES, activate => false, method => '$m')"
	done
}
train_all() {
	ASOF=$ASOF FEATURES=$FEATURES flock /tmp/dealrisk-harness.lock bash -c "$(declare -f train_inner); train_inner $1" | tr '\n' ' '
}

# metrics ID LABEL: a Markdown row of a stored model's holdout metrics
metrics_row() {
	local lbl=${2//\'/\'\'}
	psql_at -F ' | ' -c "SELECT '| $lbl', round((metrics->>'auc')::numeric, 4), round((metrics->>'log_loss')::numeric, 4),
		concat_ws(', ', 'n_test ' || (metrics->>'n_test'),
		          'kept ' || (metrics->>'method'),
		          CASE WHEN metrics ? 'rounds_kept' THEN (metrics->>'rounds_kept') || ' of ' || (metrics->>'rounds_run') || ' rounds, '
		               || (metrics->>'trees') || ' trees, ' || (metrics->>'nodes') || ' nodes' END,
		          CASE WHEN metrics ? 'iterations' THEN (metrics->>'iterations') || ' IRLS iterations' END,
		          CASE WHEN metrics ? 'candidates' THEN 'candidates: logistic ' ||
		               round((metrics->'candidates'->'logistic'->>'log_loss')::numeric, 4) || ', gbm ' ||
		               round((metrics->'candidates'->'gbm'->>'log_loss')::numeric, 4) END) || ' |'
		FROM dealrisk.models WHERE id = $1"
}

report() {
	local t=$1 title=$2 ids id_log id_gbm id_auto cutoff halflife
	note "$title: training..."
	ids=$(train_all "$t")
	read -r id_log id_gbm id_auto <<<"$ids"
	cutoff=$(psql_at -c "SELECT metrics->>'holdout_from' FROM dealrisk.models WHERE id = $id_gbm")
	halflife=$(psql_at -c "SELECT dealrisk.outcome_class('') IS NULL" -c "SHOW dealrisk.recency_halflife_days" | tail -n 1)
	note "$title: scikit-learn and xgboost..."
	/usr/bin/python3 test/bench/gbm_quality.py --source "$t" --cutoff "$cutoff" --halflife-days "$halflife" >"$OUT/gbm_quality.$t.tsv"
	echo "### $title"
	echo
	echo "Source \`$t\`: $(awk -F '\t' '$1 == "rows" {print $2}' "$OUT/gbm_quality.$t.tsv");" \
		"the holdout every model is measured on: closed_date >= $cutoff (train()'s metrics->>'holdout_from', the same for the three train() runs:" \
		"$(psql_at -c "SELECT string_agg(DISTINCT metrics->>'holdout_from', ', ') FROM dealrisk.models WHERE id IN ($id_log, $id_gbm, $id_auto)")); training rows weighted $(awk -F '\t' '$1 == "weights" {print $2}' "$OUT/gbm_quality.$t.tsv")."
	echo
	echo "| model | holdout AUC | holdout log loss | notes |"
	echo "|---|---:|---:|---|"
	metrics_row "$id_log" "dealrisk \`train(method => 'logistic')\`"
	metrics_row "$id_gbm" "dealrisk \`train(method => 'gbm')\`"
	metrics_row "$id_auto" "dealrisk \`train(method => 'auto')\`"
	awk -F '\t' '$1 == "model" {printf "| %s | %s | %s | %s |\n", $2, $3, $4, $5}' "$OUT/gbm_quality.$t.tsv"
	if [ "$(psql_at -c "SELECT count(*) FROM pg_attribute WHERE attrelid = '$t'::regclass AND attname = 'planted_win_prob'")" = 1 ]; then
		# the truth: the planted probabilities on the same holdout
		psql_at -F ' | ' -c "
			WITH h AS (SELECT planted_win_prob p, (outcome = 'Won')::int y FROM $t
			           WHERE outcome IS NOT NULL AND closed_date >= '$cutoff'),
			g AS (SELECT p, sum(y) pos, sum(1 - y) neg FROM h GROUP BY p),
			c AS (SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) below FROM g)
			SELECT '| the planted probabilities (the best any model can expect)',
			       round((sum(pos * (below + 0.5 * neg)) / (sum(pos) * sum(neg)))::numeric, 4),
			       (SELECT round(avg(-(y * ln(p) + (1 - y) * ln(1 - p)))::numeric, 4) FROM h), ' |' FROM c"
	fi
	echo
	echo "Noise: $(awk -F '\t' '$1 == "noise" {print $2}' "$OUT/gbm_quality.$t.tsv"); $(awk -F '\t' '$1 == "noise_auc" {print $2}' "$OUT/gbm_quality.$t.tsv")."
	echo
}

# the sources
note "loading the SkyGeni export and generating $IX_ROWS deals with interactions..."
load_inner() {
	make -s install >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS public.skygeni" -f test/fixtures/skygeni.sql
	psql -X -q -v ON_ERROR_STOP=1 -v tbl="$1" -v n="$2" -v seed="$3" -f test/bench/interactions.sql
}
flock /tmp/dealrisk-harness.lock bash -c "$(declare -f load_inner); load_inner $IX $IX_ROWS $SEED"
psql_at -c "DELETE FROM dealrisk.models WHERE name LIKE 'q\_%' AND NOT active" >/dev/null

{
	report skygeni "(a) The bundled SkyGeni export (test/data/skygeni_sales_data.csv)"
	report "$IX" "(b) Planted interactions: test/bench/interactions.sql, $IX_ROWS deals, seed $SEED"
	echo "Run $(date -u +%Y-%m-%d) on PostgreSQL $(psql_at -c 'SHOW server_version'), $(nproc) CPUs; $(awk -F '\t' '$1 == "versions" {print $2}' "$OUT/gbm_quality.$IX.tsv")."
} | tee "$OUT/gbm_quality.md"
