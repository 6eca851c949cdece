#!/usr/bin/env bash
# dealrisk model benchmark: scoring with deal_risk() against the same model
# written by hand as SQL, scoring in parallel, training time and memory at
# two table sizes, and the route a user would take instead (export the
# closed deals with \copy, fit sklearn's LogisticRegression).
# Assumes PGHOST/PGPORT/PGUSER/PGDATABASE point at a database with the
# extension (as `make bench` sets them; see test/harness/run.sh).
# Prints a Markdown report and writes it to test/bench/out/model.md.
# Environment: BENCH_ROWS (default 1000000), BENCH_RUNS (default 5),
# BENCH_TRAIN_RUNS (default 3: training and the sklearn route are timed that
# many times, interleaved, and the medians reported).
set -euo pipefail
ROWS=${BENCH_ROWS:-1000000}
RUNS=${BENCH_RUNS:-5}
TRAIN_RUNS=${BENCH_TRAIN_RUNS:-3}
QROWS=$((ROWS / 4))
ASOF=2024-12-31
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'touch "$TMP/stop" 2>/dev/null; rm -rf "$TMP"' EXIT
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
psql_at() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
note() { echo "model_bench: $*" >&2; }

# ---------------------------------------------------------------------------
# The tables: bench_deals (ROWS, shared with bench.sh) and bench_deals_q
# (ROWS/4, for the training memory at a second size); made as bench.sh does.
. "$HERE/lib.sh"
ensure_table bench_deals "$ROWS"
ensure_table bench_deals_q "$QROWS"

# The outcome values of bench_deals that dealrisk counts as closed (won or
# lost) and as won: the hand-written SQL and the export filter on them.
IFS='|' read -r CLOSED_IN WON_LIST N_CLOSED < <(psql_at -c "
	SELECT string_agg(quote_literal(o), ', ' ORDER BY o), string_agg(o, ',' ORDER BY o) FILTER (WHERE w), sum(n)
	FROM (SELECT outcome o, dealrisk.is_won(outcome) w, count(*) n FROM bench_deals
	      WHERE dealrisk.is_won(outcome) IS NOT NULL GROUP BY 1, 2) x")
HALFLIFE=$(psql_at -c "SELECT dealrisk.outcome_class('') IS NULL" -c "SELECT current_setting('dealrisk.recency_halflife_days')" | tail -n 1)

# The model 'default' that section (a) scores with: trained on bench_deals
# unless the active one already is (not measured).
have_model=$(psql_at -c "SELECT count(*) FROM dealrisk.models WHERE name = 'default' AND active
	AND source = 'bench_deals' AND (metrics->>'won_total')::bigint + (metrics->>'lost_total')::bigint = $N_CLOSED")
if [ "$have_model" != 1 ]; then
	note "training the model 'default' on bench_deals..."
	psql_q -c "SET client_min_messages = warning" -c "SET jit = off" -c "SET dealrisk.as_of_date = '$ASOF'" \
		-c "SELECT dealrisk.train('bench_deals')" >/dev/null
fi

# ---------------------------------------------------------------------------
# The same model written by hand as one SQL expression, generated from the
# stored spec and coefficients (model columns as src/model.c lays them out:
# intercept, then each feature's columns in spec order; values read as
# src/features.c reads them).  Form 'case': a CASE per feature (categorical
# and rate: CASE col WHEN 'level' THEN beta...; bins: CASE WHEN x < e1 THEN
# b0 WHEN x < e2 ...).  Form 'bucket': bins as
# (ARRAY[b0, ...])[width_bucket(x, ARRAY[e1, ...]) + 1], which reads x once.
# Missing values add 0, as in the C.
hand_sql() {
	psql_at -v form="$1" -v closed_in="$CLOSED_IN" -v asof="$ASOF" <<'SQL'
CREATE FUNCTION pg_temp.hand_sql(model text, src regclass, form text, closed_in text, asof date)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	spec jsonb;
	c float8[];
	f jsonb;
	off int := 1;			-- first model column of the feature (0 = intercept)
	terms text[];
	t text;
	v text;					-- the feature's input as an SQL expression
	vtype text;				-- int, numeric or float: how edges are written
	coltype text;
	n int;
	lvl text;
	other float8;
	s float8;
	rate float8;
	is_closed text;
	end_expr text;
	edge_lits text[];
BEGIN
	SELECT m.feature_spec, m.coefficients INTO spec, c FROM dealrisk.models m
	WHERE m.name = model AND m.active;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no active model %', model;
	END IF;
	-- features.c: a deal is closed when its outcome is won or lost; a closed
	-- deal ends on its close date, an open one at the as-of date
	is_closed := format('d.outcome IN (%s)', closed_in);
	end_expr := format('CASE WHEN %s THEN coalesce(d.closed_date, DATE %L) ELSE DATE %L END', is_closed, asof, asof);
	terms := ARRAY[format('%L::float8', c[1])];
	FOR f IN SELECT e.j FROM jsonb_array_elements(spec->'features') WITH ORDINALITY e(j, o) ORDER BY e.o LOOP
		IF f ? 'column' AND NOT f ? 'derived' THEN
			SELECT format_type(a.atttypid, NULL) INTO coltype FROM pg_attribute a
			WHERE a.attrelid = src AND a.attname = f->>'column' AND a.attnum > 0 AND NOT a.attisdropped;
			v := format('d.%I', f->>'column');
			IF f->>'kind' IN ('categorical', 'rate') AND coltype NOT IN ('text', 'character varying', 'character') THEN
				v := v || '::text';
			END IF;
			vtype := CASE WHEN coltype IN ('integer', 'bigint', 'smallint') THEN 'int'
			              WHEN coltype = 'numeric' THEN 'numeric' ELSE 'float' END;
		ELSIF f->>'derived' = 'age_days' THEN
			-- closed: sales_cycle_days, else end - created
			v := format('CASE WHEN %s THEN coalesce(d.sales_cycle_days, coalesce(d.closed_date, DATE %L) - d.created_date)'
			            ' ELSE DATE %L - d.created_date END', is_closed, asof, asof);
			vtype := 'int';
		ELSIF f->>'derived' = 'activity_gap' THEN
			v := format('(%s - d.last_activity_date)', end_expr);
			vtype := 'int';
		ELSIF f->>'derived' = 'stage_ratio' THEN
			v := format('((%s - coalesce(d.stage_entered_date, d.created_date))::float8 / CASE lower(d.deal_stage)%s END)',
			            end_expr, (SELECT string_agg(format(' WHEN %L THEN %L::float8', lower(k), greatest(x::float8, 1)), '')
			                       FROM jsonb_each_text(f->'typical') AS j(k, x)));
			vtype := 'float';
		ELSE
			RAISE EXCEPTION 'feature % cannot be written by hand here', f->>'name';
		END IF;

		CASE f->>'kind'
		WHEN 'categorical' THEN
			n := jsonb_array_length(f->'levels');
			t := 'CASE ' || v;
			other := NULL;
			FOR i IN 0 .. n - 1 LOOP
				lvl := f->'levels'->>i;
				t := t || format(' WHEN %L THEN %L::float8', lvl, c[off + i + 1]);
				IF lvl = '(other)' THEN
					other := c[off + i + 1];
				END IF;
			END LOOP;
			IF other IS NOT NULL THEN	-- rare levels pooled into "(other)"
				FOR lvl IN SELECT jsonb_array_elements_text(f->'pooled') LOOP
					t := t || format(' WHEN %L THEN %L::float8', lvl, other);
				END LOOP;
			END IF;
			terms := terms || (t || ' ELSE 0::float8 END');
			off := off + n;
		WHEN 'rate' THEN
			-- beta * standardised shrunk win rate; unseen or NULL: the prior
			n := jsonb_array_length(f->'levels');
			s := (f->>'strength')::float8;
			t := 'CASE ' || v;
			FOR i IN 0 .. n - 1 LOOP
				rate := ((f->'won'->>i)::float8 + s * (f->>'prior')::float8) / ((f->'closed'->>i)::float8 + s);
				t := t || format(' WHEN %L THEN %L::float8', f->'levels'->>i,
				                 c[off + 1] * ((rate - (f->>'mean')::float8) / (f->>'sd')::float8));
			END LOOP;
			rate := (0 + s * (f->>'prior')::float8) / (0 + s);
			terms := terms || (t || format(' ELSE %L::float8 END', c[off + 1] * ((rate - (f->>'mean')::float8) / (f->>'sd')::float8)));
			off := off + 1;
		WHEN 'numeric' THEN
			terms := terms || format('coalesce(((%s)::float8 - %L::float8) / %L::float8 * %L::float8, 0::float8)',
			                         v, (f->>'mean')::float8, (f->>'sd')::float8, c[off + 1]);
			off := off + 1;
		WHEN 'bins' THEN
			n := jsonb_array_length(f->'edges');
			IF form = 'bucket' THEN
				t := format('coalesce((ARRAY[%s])[width_bucket((%s)::float8, ARRAY[%s]) + 1], 0::float8)',
					(SELECT string_agg(format('%L::float8', c[off + i + 1]), ', ' ORDER BY i) FROM generate_series(0, n) i),
					v, (SELECT string_agg(format('%L::float8', (f->'edges'->>i)::float8), ', ' ORDER BY i)
					    FROM generate_series(0, n - 1) i));
			ELSE
				-- edges in the input's own type: x < e for integer x is x < ceil(e)
				edge_lits := ARRAY(SELECT CASE vtype
						WHEN 'int' THEN ceil((f->'edges'->>i)::numeric)::text
						WHEN 'numeric' THEN (f->'edges'->>i)
						ELSE format('%L::float8', (f->'edges'->>i)::float8) END
					FROM generate_series(0, n - 1) i ORDER BY i);
				t := 'CASE';
				FOR i IN 1 .. n LOOP
					t := t || format(' WHEN %s < %s THEN %L::float8', v, edge_lits[i], c[off + i]);
				END LOOP;
				t := t || format(' WHEN %s IS NOT NULL THEN %L::float8 ELSE 0::float8 END', v, c[off + n + 1]);
			END IF;
			IF f ? 'open_terms' THEN
				-- an open deal's age (stage time): the survivor curve's term,
				-- linear between knots, flat outside them (src/features.c)
				t := format('CASE WHEN %s THEN %s ELSE CASE WHEN %s IS NULL OR %s < %L::float8 THEN %L::float8',
				            is_closed, t, v, v, (f->'open_knots'->>0)::float8, (f->'open_terms'->>0)::float8);
				FOR i IN 1 .. jsonb_array_length(f->'open_knots') - 1 LOOP
					t := t || format(' WHEN %s < %L::float8 THEN %L::float8 + (%L::float8 - %L::float8) * ((%s)::float8 - %L::float8) / (%L::float8 - %L::float8)',
						v, (f->'open_knots'->>i)::float8,
						(f->'open_terms'->>(i - 1))::float8, (f->'open_terms'->>i)::float8, (f->'open_terms'->>(i - 1))::float8,
						v, (f->'open_knots'->>(i - 1))::float8, (f->'open_knots'->>i)::float8, (f->'open_knots'->>(i - 1))::float8);
				END LOOP;
				t := t || format(' ELSE %L::float8 END END', (f->'open_terms'->>(jsonb_array_length(f->'open_terms') - 1))::float8);
			END IF;
			terms := terms || t;
			off := off + n + 1;
		END CASE;
	END LOOP;
	IF off <> cardinality(c) THEN
		RAISE EXCEPTION 'the spec has % model columns but % coefficients', off, cardinality(c);
	END IF;
	RETURN format('100 * (1 - 1 / (1 + exp(-(%s))))', array_to_string(terms, ' + '));
END
$$;
SELECT pg_temp.hand_sql('default', 'bench_deals', :'form', :'closed_in', :'asof');
SQL
}
HAND=$(hand_sql case)
BUCKET=$(hand_sql bucket)
{
	echo "-- model 'default' as SQL (CASE form), generated by test/bench/model_bench.sh"
	echo "SELECT sum($HAND) FROM bench_deals d;"
	echo
	echo "-- the same, bins with width_bucket"
	echo "SELECT sum($BUCKET) FROM bench_deals d;"
} >"$OUT/model_hand.sql"

# Check: the hand-written SQL gives the same risks as deal_risk (sums within
# a relative 1e-6, and the largest per-row difference).
IFS='|' read -r S_DR S_HAND S_BUCKET REL_HAND REL_BUCKET MAXDIFF < <(psql_at \
	-c "SET dealrisk.as_of_date = '$ASOF'" -c "SET max_parallel_workers_per_gather = 0" -c "SET jit = off" -c "
	SELECT a, b, c, abs(b - a) / abs(a), abs(c - a) / abs(a), m FROM (
		SELECT sum(r) a, sum(h) b, sum(k) c, max(greatest(abs(h - r), abs(k - r))) m FROM (
			SELECT dealrisk.deal_risk(d.*) r, $HAND h, $BUCKET k FROM bench_deals d) x) y")
CHECK=$(awk -v a="$REL_HAND" -v b="$REL_BUCKET" 'BEGIN { print (a < 1e-6 && b < 1e-6) ? "OK" : "FAILED" }')
[ "$CHECK" = OK ] || note "hand-written SQL does not match deal_risk (relative differences $REL_HAND, $REL_BUCKET)"

BENCH_SET="SET dealrisk.as_of_date = '$ASOF';"

# ---------------------------------------------------------------------------
# (a) scoring in one process and (b) with 1 and 2 parallel workers.
# The last query scores whole-row values: a subquery the planner keeps
# (OFFSET 0) hands deal_risk a composite value per row, where on a table it
# passes the columns (src/score.c, dr_deal_risk_support).
score=("SELECT sum(deal_amount) FROM bench_deals"
	"SELECT sum(dealrisk.deal_risk(d.*)) FROM bench_deals d"
	"SELECT sum($HAND) FROM bench_deals d"
	"SELECT sum($BUCKET) FROM bench_deals d"
	"SELECT sum(dealrisk.deal_risk(d.*)) FROM (SELECT * FROM bench_deals OFFSET 0) d")
label=("scan floor: \`sum(deal_amount)\`"
	"\`sum(dealrisk.deal_risk(d.*))\`"
	"hand-written SQL, CASE per feature"
	"hand-written SQL, bins by \`width_bucket\`"
	"\`deal_risk\` on composite values (\`FROM (SELECT * FROM bench_deals OFFSET 0) d\`)")
note "scoring: serial..."
mapfile -t s0 < <(medians 0 "${score[@]}")
# (not the composite-value query in parallel: its OFFSET 0 keeps the
# scoring above the Gather, in the leader)
note "scoring: 1 worker..."
mapfile -t s1 < <(medians 1 "${score[@]:0:4}")
note "scoring: 2 workers..."
mapfile -t s2 < <(medians 2 "${score[@]:0:4}")

# ---------------------------------------------------------------------------
# (c) training: wall time of dealrisk.train() (clock_timestamp around it, in
# its session) and the memory of the backend that ran it, read from
# /proc/<pid>/status: VmHWM (peak resident set, which counts the shared
# buffers the backend touched as well as its private memory), RssAnon (its
# private memory, sampled every 20 ms during training; the peak is kept) and
# RssShmem (shared buffers mapped at the end).  Needs the server on this
# machine and /proc readable (root, or the server's user).
cat >"$TMP/sampler.sh" <<'SH'
# sampler.sh PID OUTFILE STOPFILE: peak RssAnon (kB) of PID until STOPFILE exists
pid=$1 max=0
while [ ! -e "$3" ] && [ -r "/proc/$pid/status" ]; do
	while read -r k v _; do
		if [ "$k" = RssAnon: ]; then
			[ "$v" -gt "$max" ] && max=$v
			break
		fi
	done <"/proc/$pid/status" 2>/dev/null || true
	sleep 0.02
done
echo "$max" >"$2"
SH
# train_run TABLE MODEL WORKERS -> "seconds|hwm_before|hwm_after|anon_peak|shmem_after|model_id" (kB)
train_run() {
	local table=$1 model=$2 workers=$3 d=$TMP/train.$2.$3 i secs id
	mkdir -p "$d"
	rm -f "$d/stop" "$d/anon" "$d/before" "$d/after"
	{
		echo "SET client_min_messages = warning;"
		echo "SET jit = off;"
		echo "SET dealrisk.as_of_date = '$ASOF';"
		echo "SET max_parallel_workers_per_gather = $workers;"
		echo "DELETE FROM dealrisk.models WHERE name = '$model';"
		echo "SELECT dealrisk.outcome_class('') IS NULL AS loaded \\gset"
		echo "SELECT pg_backend_pid() AS pid \\gset"
		echo "\\setenv DR_PID :pid"
		echo "\\! grep -E '^(Name|VmHWM|RssAnon|RssShmem):' /proc/\$DR_PID/status >$d/before 2>/dev/null; bash $TMP/sampler.sh \$DR_PID $d/anon $d/stop >/dev/null 2>&1 &"
		echo "SELECT extract(epoch FROM clock_timestamp()) AS t0 \\gset"
		echo "SELECT dealrisk.train('$table', '$model') AS id \\gset"
		echo "SELECT extract(epoch FROM clock_timestamp()) - :t0 AS secs \\gset"
		echo "\\! grep -E '^(Name|VmHWM|RssAnon|RssShmem):' /proc/\$DR_PID/status >$d/after 2>/dev/null; touch $d/stop"
		echo "SELECT :'secs' || '|' || :'id';"
	} >"$d/script.sql"
	IFS='|' read -r secs id < <(psql_at -f "$d/script.sql")
	for i in $(seq 50); do [ -e "$d/anon" ] && break; sleep 0.1; done
	kb() { awk -v k="$1:" '$1 == k {print $2}' "$2" 2>/dev/null; }
	if grep -q '^Name:.*postgres' "$d/before" 2>/dev/null && [ -s "$d/after" ]; then
		echo "$secs|$(kb VmHWM "$d/before")|$(kb VmHWM "$d/after")|$(cat "$d/anon" 2>/dev/null || echo -)|$(kb RssShmem "$d/after")|$id"
	else
		echo "$secs|-|-|-|-|$id"
	fi
}
# train_median TABLE MODEL WORKERS: train_run TRAIN_RUNS times -> the
# median seconds, then train_run's other fields from the last run, then
# every run's seconds (comma-separated).
train_median() {
	local i line last secs=()
	for i in $(seq "$TRAIN_RUNS"); do
		line=$(train_run "$@")
		secs+=("${line%%|*}")
		last=$line
	done
	echo "$(printf '%s\n' "${secs[@]}" | median %.3f)|${last#*|}|$(printf '%.2f,' "${secs[@]}" | sed 's/,$//')"
}
note "training on bench_deals_q (serial, $TRAIN_RUNS runs)..."
IFS='|' read -r tq_s tq_h0 tq_h1 tq_anon tq_shm tq_id tq_all < <(train_median bench_deals_q bench_q 0)
note "training on bench_deals (up to 2 workers, $TRAIN_RUNS runs)..."
IFS='|' read -r tp_s _ _ _ _ tp_id tp_all < <(train_median bench_deals bench 2)
closed_q=$(psql_at -c "SELECT count(*) FROM bench_deals_q WHERE dealrisk.is_won(outcome) IS NOT NULL")

# In-sample AUC of the stored 'bench' model (exact, ties count half) and its
# own holdout AUC, for the comparison with sklearn below.
IFS='|' read -r DR_AUC DR_HOLDOUT_AUC DR_COLS DR_ITER < <(psql_at -c "SET dealrisk.as_of_date = '$ASOF'" -c "
	WITH s AS (SELECT 1 - dealrisk.deal_risk(d.*, 'bench') / 100 p, dealrisk.is_won(d.outcome)::int y
	           FROM bench_deals d WHERE dealrisk.is_won(d.outcome) IS NOT NULL),
	g AS (SELECT p, sum(y) pos, sum(1 - y) neg FROM s GROUP BY p),
	c AS (SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) below FROM g)
	SELECT round(sum(pos * (below + 0.5 * neg)) / (sum(pos) * sum(neg)), 6),
	       (SELECT round((metrics->>'auc')::numeric, 6) FROM dealrisk.models WHERE id = $tp_id),
	       (SELECT cardinality(coefficients) FROM dealrisk.models WHERE id = $tp_id),
	       (SELECT metrics->>'iterations' FROM dealrisk.models WHERE id = $tp_id)
	FROM c")

# ---------------------------------------------------------------------------
# (d) the route a user would take instead: \copy the closed deals out with
# psql, then test/bench/sklearn_fit.py loads them with pandas, builds the
# same kind of features and fits LogisticRegression(C = 1 / l2 = 1.0),
# weighted by recency as dealrisk.train is.  Debian's python3-sklearn and
# python3-pandas, under /usr/bin/python3 (the default python3 may be a
# pyenv one without them).
PY=/usr/bin/python3
SK=
if ! "$PY" -c 'import sklearn, pandas' 2>/dev/null; then
	if [ "$(id -u)" = 0 ]; then
		note "installing python3-sklearn python3-pandas..."
		if ! DEBIAN_FRONTEND=noninteractive apt-get install -y python3-sklearn python3-pandas >"$TMP/apt.log" 2>&1; then
			DEBIAN_FRONTEND=noninteractive apt-get update >>"$TMP/apt.log" 2>&1 || true
			DEBIAN_FRONTEND=noninteractive apt-get install -y python3-sklearn python3-pandas >>"$TMP/apt.log" 2>&1 || tail -n 5 "$TMP/apt.log" >&2
		fi
	fi
	if ! "$PY" -c 'import sklearn, pandas' 2>/dev/null; then
		SK="skipped: $PY cannot import sklearn and pandas; install them with \`sudo apt-get install python3-sklearn python3-pandas\` and run this again."
		note "$SK"
	fi
fi
# The serial training on bench_deals and the route are timed in turns, so
# that drift on the machine touches both alike; medians of TRAIN_RUNS runs.
sk_run() {
	local run=$1 csv=$TMP/closed_deals.csv t0 t1 copy
	t0=$(date +%s.%N)
	psql_q -c "\\copy (SELECT created_date, closed_date, sales_rep_id, industry, region, product_type, lead_source, deal_amount, sales_cycle_days, outcome, last_activity_date FROM bench_deals WHERE outcome IN ($CLOSED_IN)) TO '$csv' WITH (FORMAT csv, HEADER)"
	t1=$(date +%s.%N)
	copy=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
	CSV_MB=$(awk -v b="$(stat -c %s "$csv")" 'BEGIN {printf "%.1f", b / 1048576}')
	"$PY" "$HERE/sklearn_fit.py" "$csv" --won "$WON_LIST" --C 1.0 --max-iter 1000 \
		--halflife-days "$HALFLIFE" >"$TMP/sk.$run.out"
	printf 'copy_s\t%s\n' "$copy" >>"$TMP/sk.$run.out"
	awk -F '\t' '$1 ~ /^(copy|imports|load|features|fit)_s$/ {t += $2} END {printf "total_s\t%.3f\n", t}' \
		"$TMP/sk.$run.out" >>"$TMP/sk.$run.out"
}
tf_list=()
for run in $(seq "$TRAIN_RUNS"); do
	note "training on bench_deals (serial), run $run of $TRAIN_RUNS..."
	IFS='|' read -r secs tf_h0 tf_h1 tf_anon tf_shm tf_id < <(train_run bench_deals bench 0)
	tf_list+=("$secs")
	if [ -z "$SK" ]; then
		note "sklearn route, run $run of $TRAIN_RUNS..."
		sk_run "$run"
	fi
done
tf_s=$(printf '%s\n' "${tf_list[@]}" | median %.3f)
tf_all=$(printf '%.2f,' "${tf_list[@]}" | sed 's/,$//')
if [ -z "$SK" ]; then
	# sk KEY: the median of KEY over the runs for times (*_s), else the last run's value
	sk() {
		case $1 in
		*_s) awk -F '\t' -v k="$1" '$1 == k {print $2}' "$TMP"/sk.*.out | median %.3f ;;
		*) awk -F '\t' -v k="$1" '$1 == k {print $2}' "$TMP/sk.$TRAIN_RUNS.out" ;;
		esac
	}
	COPY_S=$(sk copy_s)
	ROUTE_S=$(sk total_s)
	ROUTE_ALL=$(awk -F '\t' '$1 == "total_s" {printf "%s%.2f", s, $2; s = ","}' "$TMP"/sk.*.out)
fi

# ---------------------------------------------------------------------------
# The report.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f×", a / b; else printf "-"}'; }
mb() { [ "$1" = - ] || [ -z "$1" ] && { echo -; return; }; awk -v k="$1" 'BEGIN {printf "%.0f", k / 1024}'; }
ns_row() { awk -v ms="$1" -v n="$ROWS" 'BEGIN {printf "%.0f", ms * 1e6 / n}'; }
report=$OUT/model.md
{
	echo "## Deal risk model benchmark"
	echo
	echo "Rows: $ROWS ($N_CLOSED closed); $(nproc) CPUs; $(date -u +%Y-%m-%d); PostgreSQL $(psql_at -c 'SHOW server_version');" \
		"JIT off; as-of date $ASOF; shared_buffers $(psql_at -c 'SHOW shared_buffers'), work_mem $(psql_at -c 'SHOW work_mem')."
	echo "Scoring times are the executor's (EXPLAIN ANALYZE), median of $RUNS interleaved rounds after one warm-up, one session per setting."
	echo
	echo "### (a) Scoring in one process"
	echo
	echo "Model 'default' ($(psql_at -c "SELECT cardinality(coefficients) || ' model columns: ' || string_agg(f->>'name', ', ' ORDER BY o) FROM dealrisk.models m, jsonb_array_elements(m.feature_spec->'features') WITH ORDINALITY e(f, o) WHERE name = 'default' AND active GROUP BY coefficients")) written by hand as SQL from its stored spec and coefficients (\`test/bench/out/model_hand.sql\`)."
	echo "Check, sum of risks over $ROWS deals: deal_risk $S_DR, hand SQL (CASE) $S_HAND, hand SQL (width_bucket) $S_BUCKET;" \
		"relative differences $(printf '%.2g' "$REL_HAND") and $(printf '%.2g' "$REL_BUCKET") (< 1e-6 required), largest per-row difference $(printf '%.2g' "$MAXDIFF") risk points: **$CHECK**."
	echo
	echo "| query | serial (ms) | ns per row | above the scan floor (ms) | time / deal_risk's |"
	echo "|---|---:|---:|---:|---:|"
	for i in "${!score[@]}"; do
		echo "| ${label[$i]} | ${s0[$i]} | $(ns_row "${s0[$i]}") | $(awk -v a="${s0[$i]}" -v f="${s0[0]}" 'BEGIN {printf "%.1f", a - f}') | $(ratio "${s0[$i]}" "${s0[1]}") |"
	done
	echo
	echo "Hand-written SQL (CASE) / deal_risk: **$(ratio "${s0[2]}" "${s0[1]}")** (target ≥ 2×); width_bucket form / deal_risk: $(ratio "${s0[3]}" "${s0[1]}");" \
		"above the scan floor: $(awk -v h="${s0[2]}" -v d="${s0[1]}" -v f="${s0[0]}" 'BEGIN {if (d > f) printf "%.2f×", (h - f) / (d - f); else printf "-"}') and $(awk -v h="${s0[3]}" -v d="${s0[1]}" -v f="${s0[0]}" 'BEGIN {if (d > f) printf "%.2f×", (h - f) / (d - f); else printf "-"}')."
	echo
	echo "### (b) Scoring with parallel workers"
	echo
	echo "The same parallel plan (made for 2 workers; parallel_setup_cost and parallel_tuple_cost 0 so that a small table gets it too), run with max_parallel_workers = 1 or 2; the leader does not scan (parallel_leader_participation = off)."
	echo
	echo "| query | 1 worker (ms) | 2 workers (ms) | speed-up 1→2 | serial→2 |"
	echo "|---|---:|---:|---:|---:|"
	for i in "${!s1[@]}"; do
		echo "| ${label[$i]} | ${s1[$i]} | ${s2[$i]} | $(ratio "${s1[$i]}" "${s2[$i]}") | $(ratio "${s0[$i]}" "${s2[$i]}") |"
	done
	echo
	echo "### (c) Training: \`dealrisk.train(source, name)\`"
	echo
	echo "Median of $TRAIN_RUNS runs each (sample the dictionaries, count, fit on the older deals, refit on all while measuring the holdout, store):" \
		"wall time from clock_timestamp() around the call; memory of the backend (last run) from /proc/<pid>/status."
	echo
	echo "| source | rows | closed | parallel workers | wall (s), median | runs (s) | VmHWM before → after (MB) | peak private RssAnon (MB) | RssShmem at end (MB) |"
	echo "|---|---:|---:|---|---:|---|---:|---:|---:|"
	echo "| bench_deals_q | $QROWS | $closed_q | none | $(printf '%.2f' "$tq_s") | $tq_all | $(mb "$tq_h0") → $(mb "$tq_h1") | $(mb "$tq_anon") | $(mb "$tq_shm") |"
	echo "| bench_deals | $ROWS | $N_CLOSED | none | $(printf '%.2f' "$tf_s") | $tf_all | $(mb "$tf_h0") → $(mb "$tf_h1") | $(mb "$tf_anon") | $(mb "$tf_shm") |"
	echo "| bench_deals | $ROWS | $N_CLOSED | up to 2 (leader too) | $(printf '%.2f' "$tp_s") | $tp_all | | | |"
	echo
	if [ "$tf_h1" = - ]; then
		echo "Memory: /proc/<backend pid>/status was not readable (server on another machine, or not run as root or the server's user)."
	else
		echo "VmHWM counts the shared buffers the backend read (they grow with the table up to shared_buffers) as well as its private memory;" \
			"the private memory (RssAnon, sampled every 20 ms) is what training allocates: $(mb "$tq_anon") MB at $QROWS rows, $(mb "$tf_anon") MB at $ROWS rows" \
			"(ratio $(ratio "$tf_anon" "$tq_anon") for 4× the rows); the IRLS state has a fixed size (model columns squared), the sorts for the quantile bin edges use up to work_mem." \
			"Parallel workers' memory is in their own processes, not shown."
	fi
	echo
	echo "### (d) The route a user would take instead: \\copy out, pandas, sklearn"
	echo
	if [ -n "$SK" ]; then
		echo "$SK"
	else
		echo "Median of $TRAIN_RUNS runs, each run right after a serial \`train\` run (totals of the runs: $ROUTE_ALL s)."
		echo
		echo "| part | seconds (median) |"
		echo "|---|---:|"
		echo "| \`\\copy (closed deals) TO file\` with psql ($(sk rows) rows, $CSV_MB MB CSV) | $COPY_S |"
		echo "| python start-up: import numpy, pandas, sklearn | $(sk imports_s) |"
		echo "| load the CSV (pandas.read_csv) | $(sk load_s) |"
		echo "| features: derived days, quantile bins, one-hot ($(sk columns) columns with the intercept) | $(sk features_s) |"
		echo "| fit \`LogisticRegression(C=1.0)\` ($(sk solver), $(sk n_iter) iterations, weights: $(sk weighted)) | $(sk fit_s) |"
		echo "| **total** (median of the runs' totals) | **$ROUTE_S** |"
		echo "| \`dealrisk.train\` on the same table, serial / up to 2 workers | $(printf '%.2f / %.2f' "$tf_s" "$tp_s") |"
		echo
		echo "(copy + python start-up + load + features + fit) / train: **$(ratio "$ROUTE_S" "$tf_s")** against serial training, $(ratio "$ROUTE_S" "$tp_s") against training with up to 2 workers (target ≥ 2×);" \
			"without the python start-up $(ratio "$(awk -v a="$ROUTE_S" -v b="$(sk imports_s)" 'BEGIN {print a - b}')" "$tf_s") and $(ratio "$(awk -v a="$ROUTE_S" -v b="$(sk imports_s)" 'BEGIN {print a - b}')" "$tp_s");" \
			"the fit alone $(ratio "$(sk fit_s)" "$tf_s") and $(ratio "$(sk fit_s)" "$tp_s"). train() does more than one fit: it also builds a spec, fits and evaluates a holdout model before the final fit."
		echo
		echo "In-sample AUC on the $N_CLOSED closed deals: dealrisk $DR_AUC ($DR_COLS model columns, $DR_ITER IRLS iterations; its own holdout AUC $DR_HOLDOUT_AUC)," \
			"sklearn $(sk auc) ($(sk columns) columns: one-hot reps where dealrisk uses one shrunk rep win rate)."
		echo
		echo "Environment of the fit: Python $(sk python); numpy $(sk numpy), pandas $(sk pandas), scikit-learn $(sk sklearn);" \
			"thread pools (threadpoolctl): $(sk threadpools); BLAS/LAPACK/OpenMP libraries mapped: $(sk blas_libs);" \
			"OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}; BLAS/OMP variables: $(sk blas_env)."
	fi
} | tee "$report"
