-- Issue #10: train(method => 'logistic' | 'gbm' | 'auto', params): the
-- boosting pass over the closed deals (src/train.c) and the tree model's
-- training (_gbm_params, _gbm_train).  train() gains two arguments: its
-- old signature is dropped, and so are the grants made on it (re-grant
-- train to analysts with the new one, docs/upgrading.md).

-- The boosting pass (src/train.c): every closed deal of a source encoded
-- once into the aggregate's memory.  With a spec whose numbers have no
-- "tree_edges" yet (the sample pass) it returns them; with them, it fits
-- the trees (parameters in the spec's "gbm" object) and returns the
-- holdout fit's and the final fit's ensembles.  holdout: the deal is in the
-- holdout (NULL: by its close date against cutoff).
CREATE FUNCTION dealrisk._gbm_rows(internal, boolean, jsonb, float8[], int, date, date, float8, regtype, text[], VARIADIC "any")
RETURNS internal AS 'MODULE_PATHNAME', 'dr_gbm_rows'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_rows(internal, boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'boosting pass transition: one closed deal encoded into the pass''s matrix (internal)';
CREATE FUNCTION dealrisk._gbm_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_gbm_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_combine(internal, internal) IS
	'boosting pass combine: the rows of two partial passes (internal)';
CREATE FUNCTION dealrisk._gbm_serial(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'dr_gbm_serial'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_serial(internal) IS
	'boosting pass state to bytea, for parallel workers (internal)';
CREATE FUNCTION dealrisk._gbm_deserial(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_gbm_deserial'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_deserial(bytea, internal) IS
	'boosting pass state from bytea, every count, code and weight checked (internal)';
CREATE FUNCTION dealrisk._gbm_result(internal)
RETURNS jsonb AS 'MODULE_PATHNAME', 'dr_gbm_result'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_result(internal) IS
	'boosting pass final: the bins of the numbers, or the fitted ensembles (internal)';
CREATE AGGREGATE dealrisk._gbm_pass(holdout boolean, spec jsonb, beta float8[], split int,
	cutoff date, ref date, halflife float8, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._gbm_rows,
	STYPE = internal,
	FINALFUNC = dealrisk._gbm_result,
	FINALFUNC_MODIFY = READ_WRITE,
	COMBINEFUNC = dealrisk._gbm_combine,
	SERIALFUNC = dealrisk._gbm_serial,
	DESERIALFUNC = dealrisk._gbm_deserial,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._gbm_pass(boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'The boosting pass over closed deals: the bins of the numbers (sample pass), or the fitted tree ensembles (internal)';

-- Two models on the same closed deals (train()'s 'auto'): {rows, sum d,
-- sum d^2} of d = log loss under a - log loss under b.
CREATE FUNCTION dealrisk._eval_pair_accum(float8[], jsonb, float8[], jsonb, float8[], int, date, regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_eval_pair_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._eval_pair_accum(float8[], jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any") IS
	'paired evaluation transition (internal)';
CREATE AGGREGATE dealrisk._eval_pair(spec_a jsonb, beta_a float8[], spec_b jsonb, beta_b float8[], split int,
	cutoff date, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._eval_pair_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._eval_pair(jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any") IS
	'How much lower model b''s log loss is than model a''s on the same closed deals: {rows, sum, sum of squares} of the per-deal differences (internal)';

-- The parameters of a tree model: only known keys, each a number (refit a
-- boolean); src/train.c checks their ranges as the sample pass starts.
CREATE FUNCTION dealrisk._gbm_params(params jsonb)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	known text[] := ARRAY['rounds', 'learning_rate', 'max_depth', 'lambda', 'min_child_weight',
	                      'subsample', 'colsample', 'early_stopping_rounds', 'seed', 'refit'];
	k text;
	v jsonb;
BEGIN
	IF params IS NULL THEN
		RETURN '{}';
	END IF;
	IF pg_catalog.jsonb_typeof(params) <> 'object' THEN
		RAISE EXCEPTION 'params must be a JSON object, got %', params
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'For example params => ''{"rounds": 500, "max_depth": 4}''.';
	END IF;
	FOR k, v IN SELECT * FROM pg_catalog.jsonb_each(params) LOOP
		IF NOT k = ANY (known) THEN
			RAISE EXCEPTION 'unknown boosting parameter "%"', k
				USING ERRCODE = 'invalid_parameter_value',
				      HINT = 'The parameters are ' || pg_catalog.array_to_string(known, ', ') || '; see docs/model.md.';
		END IF;
		IF pg_catalog.jsonb_typeof(v) <> (CASE k WHEN 'refit' THEN 'boolean' ELSE 'number' END) THEN
			RAISE EXCEPTION 'boosting parameter "%" must be a %, got %', k,
				CASE k WHEN 'refit' THEN 'boolean' ELSE 'number' END, v
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF k IN ('rounds', 'max_depth', 'early_stopping_rounds', 'seed') AND (v::text)::numeric <> pg_catalog.trunc((v::text)::numeric) THEN
			RAISE EXCEPTION 'boosting parameter "%" must be a whole number, got %', k, v
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	RETURN params;
END
$$;
COMMENT ON FUNCTION dealrisk._gbm_params(jsonb) IS
	'Checks the params of a tree model: known keys with values of the right type (internal)';

-- spec with features[i] || {key: vals[i]} for each i where vals[i] is an
-- array (the tree bins and category ranks _gbm_pass returns per feature).
CREATE FUNCTION dealrisk._features_with(spec jsonb, key text, vals jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.jsonb_set(spec, '{features}', (
		SELECT pg_catalog.jsonb_agg(CASE WHEN pg_catalog.jsonb_typeof(vals->(x.o::int - 1)) = 'array'
		                                 THEN x.f || pg_catalog.jsonb_build_object(key, vals->(x.o::int - 1))
		                                 ELSE x.f END ORDER BY x.o)
		FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY x(f, o)))
$$;
COMMENT ON FUNCTION dealrisk._features_with(jsonb, text, jsonb) IS
	'A spec whose features get one more key each, from an array of per-feature values (internal)';

-- The tree model of train(): the bins of the numbers from the sample of
-- closed deals, then one pass over every closed deal that fits the trees
-- (on the older deals with early stopping on the holdout, then again on
-- all of them), the holdout measured with the holdout fit, and the
-- survivor curves of open deals.  hold_expr is the hash split's holdout
-- test (NULL: by close date against cutoff).
CREATE FUNCTION dealrisk._gbm_train(source regclass, dict_source regclass, closed_filter text,
	spec_train jsonb, spec jsonb, cutoff date, hold_expr text, ref date, halflife float8, params jsonb,
	OUT model_spec jsonb, OUT beta float8[], OUT eval_metrics jsonb, OUT info jsonb,
	OUT holdout_spec jsonb, OUT holdout_beta float8[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	gspec jsonb := spec_train || pg_catalog.jsonb_build_object('gbm', params);
	bins jsonb;
	res jsonb;
	hspec jsonb;
BEGIN
	-- 1. the bins of each number: quantiles of the sample's closed deals
	EXECUTE pg_catalog.format('SELECT dealrisk._gbm_pass(NULL, $1, NULL, 0, NULL, $2, $3, %s) FROM %s d WHERE %s',
	                          dealrisk._row_args(dict_source, gspec), dict_source, closed_filter)
		INTO bins USING gspec, ref, halflife;
	IF bins IS NULL THEN
		RAISE EXCEPTION 'no closed deal in % to train on', source USING ERRCODE = 'no_data_found';
	END IF;
	gspec := dealrisk._features_with(gspec, 'tree_edges', bins->'tree_edges');
	-- 2. every closed deal, once: both fits
	EXECUTE pg_catalog.format('SELECT dealrisk._gbm_pass(%s, $1, NULL, 0, $2, $3, $4, %s) FROM %s d WHERE %s',
	                          coalesce(hold_expr, 'NULL'), dealrisk._row_args(source, gspec), source, closed_filter)
		INTO res USING gspec, cutoff, ref, halflife;
	-- the ranks of the categories, into both specs
	hspec := dealrisk._features_with(spec_train, 'tree_rank', res->'tree_rank');
	model_spec := dealrisk._features_with(spec, 'tree_rank', res->'tree_rank');
	hspec := hspec || pg_catalog.jsonb_build_object('trees', res->'holdout_trees');
	holdout_spec := hspec;
	holdout_beta := ARRAY[(res->>'holdout_base')::float8];
	-- 3. the holdout, scored by the trees that did not see it
	IF hold_expr IS NULL THEN
		EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 2, $3, %s) FROM %s d WHERE %s',
		                          dealrisk._row_args(source, hspec), source, closed_filter)
			INTO eval_metrics USING hspec, ARRAY[(res->>'holdout_base')::float8], cutoff;
	ELSE
		EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d WHERE %s AND (%s)',
		                          dealrisk._row_args(source, hspec), source, closed_filter, hold_expr)
			INTO eval_metrics USING hspec, ARRAY[(res->>'holdout_base')::float8];
	END IF;
	-- 4. the stored model: the final fit, and the survivor curves of open deals
	model_spec := model_spec || pg_catalog.jsonb_build_object('trees', res->'trees', 'method', 'gbm', 'gbm', params);
	beta := ARRAY[(res->>'base')::float8];
	model_spec := dealrisk._open_terms(dict_source, closed_filter, model_spec, beta, ref, halflife);
	info := pg_catalog.jsonb_build_object('n_train', res->'n_train', 'n_final', res->'n_final',
	    'rounds_run', res->'rounds_run', 'rounds_kept', res->'rounds_kept', 'refit', res->'refit',
	    'trees', pg_catalog.jsonb_array_length(res->'trees'->'start'),
	    'nodes', pg_catalog.jsonb_array_length(res->'trees'->'left'),
	    'train_loss', res->'train_loss', 'holdout_loss', res->'holdout_loss');
END
$$;
COMMENT ON FUNCTION dealrisk._gbm_train(regclass, regclass, text, jsonb, jsonb, date, text, date, float8, jsonb) IS
	'Trains the gradient-boosted tree model of train(): bins, both fits in one pass, holdout metrics, survivor curves (internal)';

REVOKE EXECUTE ON FUNCTION
	dealrisk._gbm_pass(boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._gbm_rows(internal, boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._gbm_combine(internal, internal),
	dealrisk._gbm_serial(internal),
	dealrisk._gbm_deserial(bytea, internal),
	dealrisk._gbm_result(internal),
	dealrisk._gbm_params(jsonb),
	dealrisk._features_with(jsonb, text, jsonb),
	dealrisk._eval_pair(jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any"),
	dealrisk._eval_pair_accum(float8[], jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any"),
	dealrisk._gbm_train(regclass, regclass, text, jsonb, jsonb, date, text, date, float8, jsonb)
FROM PUBLIC;

CREATE FUNCTION dealrisk.train(source regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true,
	method text DEFAULT 'auto', params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	closed_filter text := 'dealrisk.is_won(d.outcome) IS NOT NULL';
	has_closed_date boolean;
	n_won bigint;
	n_lost bigint;
	min_n int;
	halflife float8;
	cutoff date;
	ref date;
	dict_source regclass;
	source_name text := source::text;
	train_filter text;
	test_filter text;
	split_train int := 0;
	train_expr text;
	n_rows float8;
	is_table boolean;
	share float8;
	n_sampled bigint;
	resampled boolean := false;
	rate_key text;
	census record;
	spec jsonb;
	spec_train jsonb;
	pos int;
	fit record;
	test_metrics jsonb;
	final_fit record;
	new_id bigint;
	problem text;
	pos_col name;
	pos_type oid;
	has_created boolean;
	has_cycle boolean;
	want text[];
	kept text[] := '{}';
	kept_cols text[] := '{}';
	feat text;
	fcol text;
	why text;
	left_out jsonb := '{}';
	leak record;
	leaks text;
	split_why text;
	pre record;
	preflight jsonb := '[]';
	hold_expr text;
	gbm_spec jsonb;
	gbm_beta float8[];
	gbm_metrics jsonb;
	gbm_info jsonb;
	gbm_hspec jsonb;
	gbm_hbeta float8[];
	pair float8[];
	gain float8;
	gain_se float8;
	auto_info jsonb := '{}';
	log_spec jsonb;
	log_metrics jsonb;
	cand jsonb := '{}';
	chosen text;
	stored_spec jsonb;
	stored_beta float8[];
	method_metrics jsonb;
BEGIN
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings
	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	halflife := pg_catalog.current_setting('dealrisk.recency_halflife_days')::float8;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- train('deals', 'stage_history') names a model: a history is passed
	-- as history => ...; say so when the name is that of a stage history
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c
	           WHERE c.relname OPERATOR(pg_catalog.=) train.name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	             AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
	                  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum > 0 AND NOT a.attisdropped
	                    AND a.attname IN ('deal_id', 'stage', 'entered_at')) = 3) THEN
		RAISE WARNING 'dealrisk.train: the model is named "%", like a stage history: this trains on final states, not point in time', name
			USING HINT = pg_catalog.format('For a point-in-time model pass the history by name: dealrisk.train(%L, history => %L).',
			                               source::text, name);
	END IF;
	IF l2 IS NULL OR NOT (l2 >= 0) OR l2 IN ('Infinity', 'NaN') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', coalesce(l2::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF method IS NULL OR method NOT IN ('auto', 'logistic', 'gbm') THEN
		RAISE EXCEPTION 'unknown training method "%"', method USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Methods are ''logistic'' (L2 logistic regression), ''gbm'' (gradient-boosted trees) and ''auto'' (both; the better holdout log loss is kept).';
	END IF;
	IF params IS NOT NULL AND method = 'logistic' THEN
		RAISE EXCEPTION 'params are the boosting parameters of methods ''gbm'' and ''auto'', not of method ''logistic'''
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The logistic model takes l2 => ...; leave params out, or train with method => ''gbm''.';
	END IF;
	params := dealrisk._gbm_params(params);
	IF holdout IS NULL OR NOT (holdout > 0 AND holdout < 0.9) THEN
		RAISE EXCEPTION 'holdout must be a share between 0 and 0.9, got %', coalesce(holdout::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- activation is the operator's: a role that may not activate (an
	-- analyst) trains candidates, and hears so before the work is done
	IF activate AND NOT (pg_catalog.has_function_privilege('dealrisk.activate(bigint, boolean)', 'EXECUTE')
	                     AND pg_catalog.has_column_privilege('dealrisk.models', 'active', 'UPDATE')
	                     AND pg_catalog.has_table_privilege('dealrisk.model_activations', 'INSERT')) THEN
		RAISE EXCEPTION 'role % may train models but not activate them', CURRENT_USER
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Train a candidate with dealrisk.train(..., activate => false); a role that may activate models (the operator) activates it with dealrisk.activate(id).';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	-- the model reads labels and stages as text (src/features.c): say so
	-- before a pass trips over another type
	SELECT a.attname, a.atttypid INTO pos_col, pos_type
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname IN ('outcome', 'deal_stage')
	  AND a.atttypid NOT IN ('text'::regtype::pg_catalog.oid, 'varchar'::regtype::pg_catalog.oid, 'bpchar'::regtype::pg_catalog.oid)
	ORDER BY a.attnum LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of source % has type %, which the model cannot read', pos_col, source,
			pg_catalog.format_type(pos_type, NULL)
			USING ERRCODE = 'datatype_mismatch',
			      HINT = pg_catalog.format('Cast it to text in a view of yours (%I::text AS %I) and train on the view; see docs/data-contract.md.', pos_col, pos_col);
	END IF;
	-- The preflight: an error stops training; a warning is a NOTICE and
	-- stays in the model's metrics (missing columns and leaks are reported
	-- feature by feature below).
	FOR pre IN SELECT * FROM dealrisk.check_source(source) c WHERE c.severity IN ('error', 'warning') LOOP
		IF pre.severity = 'error' THEN
			RAISE EXCEPTION 'cannot train on %: %', source, pre.finding
				USING ERRCODE = CASE pre."check" WHEN 'outcome_labels' THEN 'invalid_parameter_value'
				                                 WHEN 'outcomes' THEN 'insufficient_resources'
				                                 WHEN 'column_types' THEN 'datatype_mismatch'
				                                 ELSE 'data_exception' END,
				      DETAIL = pg_catalog.format('dealrisk.check_source(%L) reports it as %s.', source::text, pre."check"),
				      HINT = coalesce(pre.hint, 'See SELECT * FROM dealrisk.check_source(source).');
		END IF;
		preflight := preflight || pg_catalog.jsonb_build_object('check', pre."check", 'finding', pre.finding);
		IF pre."check" NOT IN ('columns', 'outcome_leaks') THEN
			RAISE NOTICE 'dealrisk.train: % (%)', pre.finding, pre."check";
		END IF;
	END LOOP;
	has_closed_date := dealrisk._has_column(source, 'closed_date');
	has_created := dealrisk._has_column(source, 'created_date');
	has_cycle := dealrisk._has_column(source, 'sales_cycle_days');

	-- The features: those asked for, or the contract's.  A default one
	-- the source cannot support is left out (a NOTICE, and metrics ->
	-- 'features_left_out' say why); one asked for is an error.  The dates
	-- decide the derived ones: a deal's age needs created_date for open
	-- deals and closed_date (or sales_cycle_days) for closed ones; time in
	-- stage and the activity gap run to the close, so they need closed_date.
	want := coalesce(features, ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id',
	                                 'deal_amount', 'cycle_days', 'stage_time', 'activity_gap']);
	-- the rows of a point-in-time source (train(source, history => ...))
	-- show each deal's stage on a day it was open: a feature, not a leak
	IF features IS NULL AND dealrisk._has_column(source, 'dealrisk_as_of') AND dealrisk._has_column(source, 'deal_stage') THEN
		want := want || 'deal_stage'::text;
	END IF;
	FOREACH feat IN ARRAY want LOOP
		fcol := (dealrisk._feature_entry(source, feat)).col;
		IF fcol = ANY (kept_cols) THEN
			RAISE EXCEPTION 'feature "%" is named twice', fcol USING ERRCODE = 'invalid_parameter_value';
		END IF;
		why := CASE
			WHEN fcol = 'cycle_days' AND NOT has_created THEN
				'the source has no created_date column, so the age of an open deal is unknown'
			WHEN fcol = 'cycle_days' AND NOT (has_closed_date OR has_cycle) THEN
				'the source has neither closed_date nor sales_cycle_days, so how long a closed deal took is unknown'
			WHEN fcol = 'stage_time' AND NOT dealrisk._has_column(source, 'deal_stage') THEN
				'the source has no deal_stage column'
			WHEN fcol = 'stage_time' AND NOT has_created THEN
				'the source has no created_date column, which time in stage counts from when stage_entered_date is empty'
			WHEN fcol = 'stage_time' AND NOT has_closed_date THEN
				'the source has no closed_date column, so how long a closed deal stayed in its stage is unknown'
			WHEN fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date') THEN
				'the source has no last_activity_date column'
			WHEN fcol = 'activity_gap' AND NOT has_closed_date THEN
				'the source has no closed_date column, so the gap before a deal closed is unknown'
			WHEN features IS NULL AND fcol NOT IN ('cycle_days', 'stage_time', 'activity_gap')
			     AND NOT dealrisk._has_column(source, fcol) THEN
				pg_catalog.format('the source has no %s column', fcol)
		END;
		IF why IS NOT NULL AND features IS NOT NULL THEN
			RAISE EXCEPTION 'feature "%" cannot be learned from %: %', feat, source, why
				USING ERRCODE = 'undefined_column',
				      HINT = 'Leave it out of features, or add the column (a view can map it).';
		ELSIF why IS NOT NULL THEN
			-- the default activity gap of a source without activity dates
			-- was always left out quietly
			IF NOT (fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date')) THEN
				RAISE NOTICE 'dealrisk.train: feature % left out: %', fcol, why;
			END IF;
			left_out := left_out || pg_catalog.jsonb_build_object(fcol, why);
		ELSE
			kept := kept || feat;
			kept_cols := kept_cols || fcol;
		END IF;
	END LOOP;
	-- outcome leaks: a column written at close, or one that alone tells
	-- won from lost, would teach the model the answer
	FOR leak IN SELECT * FROM dealrisk._feature_leaks(source, kept) LOOP
		RAISE NOTICE 'dealrisk.train: feature % left out: %', leak.feature, leak.reason;
		fcol := kept_cols[pg_catalog.array_position(kept, leak.feature)];
		left_out := left_out || pg_catalog.jsonb_build_object(fcol, 'outcome leak: ' || leak.reason);
		kept_cols := pg_catalog.array_remove(kept_cols, fcol);
		kept := pg_catalog.array_remove(kept, leak.feature);
		leaks := pg_catalog.concat_ws('; ', leaks, pg_catalog.format('%s: %s', leak.feature, leak.reason));
	END LOOP;
	IF pg_catalog.cardinality(kept) = 0 AND leaks IS NOT NULL THEN
		RAISE EXCEPTION 'every feature of % leaks the outcome: nothing is left to train on', source
			USING ERRCODE = 'data_exception', DETAIL = leaks,
			      HINT = 'Train on columns that are known while a deal is still open (features => ARRAY[...]); see docs/data-contract.md.';
	ELSIF pg_catalog.cardinality(kept) = 0 THEN
		RAISE EXCEPTION 'no usable feature in %', source USING ERRCODE = 'invalid_parameter_value',
			DETAIL = (SELECT pg_catalog.string_agg(pg_catalog.format('%s: %s', k, v), '; ') FROM pg_catalog.jsonb_each_text(left_out) x(k, v));
	END IF;

	-- A source on Citus distributed tables is read once into a temporary
	-- table of this node, and everything below reads that: the passes'
	-- aggregates take their columns as VARIADIC "any", which Citus cannot
	-- split over shards, and the trees need every row in one place anyway
	-- (docs/scaling.md).  The model is recorded with the source's name.
	IF dealrisk._distributed(source) THEN
		IF pg_catalog.to_regclass('pg_temp.dealrisk_train_rows') IS NOT NULL THEN
			DROP TABLE pg_temp.dealrisk_train_rows;
		END IF;
		EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_rows ON COMMIT DROP AS SELECT * FROM %s d', source);
		ANALYZE pg_temp.dealrisk_train_rows;
		source := 'pg_temp.dealrisk_train_rows'::regclass;
	END IF;

	-- Dictionaries and bin edges come from about 50,000 closed deals at most
	-- (a repeatable sample of a table's pages, or of a view's rows by deal_id,
	-- read once into a temporary table); counts and fits read every deal.
	-- A view's closed deals are counted to size its sample (and a table's
	-- when the catalog has no estimate).  A table's sample is first sized
	-- from the catalog's row estimate (no scan), then,
	-- when open deals or a stale estimate left it with fewer than 40,000
	-- closed deals, taken again at the share that gives 50,000 — or not at
	-- all when that share is the whole table.
	SELECT c.relkind IN ('r', 'm'), c.reltuples INTO is_table, n_rows
	FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF NOT is_table OR n_rows < 1 THEN
		-- a view, or a table never vacuumed or analyzed: count
		EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, closed_filter) INTO n_rows;
	END IF;
	dict_source := source;
	share := CASE WHEN n_rows >= 1 THEN 50000 / n_rows ELSE 1 END;
	WHILE share < 1 LOOP
		-- (without a NOTICE when this session has no temporary schema yet)
		IF pg_catalog.to_regclass('pg_temp.dealrisk_train_sample') IS NOT NULL THEN
			DROP TABLE pg_temp.dealrisk_train_sample;
		END IF;
		IF is_table THEN
			-- a table: read only a repeatable sample of its pages
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42) WHERE %s',
			                          source, 100 * share, closed_filter);
		ELSE
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d WHERE %s AND pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 100000 < %s',
			                          source, closed_filter, ceil(100000 * share)::int);
		END IF;
		GET DIAGNOSTICS n_sampled = ROW_COUNT;
		dict_source := 'pg_temp.dealrisk_train_sample'::regclass;
		EXIT WHEN NOT is_table OR resampled;
		-- the share of the table that the closed deals found imply for
		-- 50,000 of them: all of it (no sample), or another sample when
		-- this one came out short
		IF share * 50000 / greatest(n_sampled, 1) >= 1 THEN
			DROP TABLE pg_temp.dealrisk_train_sample;
			dict_source := source;
			EXIT;
		END IF;
		EXIT WHEN n_sampled >= 40000;
		share := share * 50000 / greatest(n_sampled, 1);
		resampled := true;
	END LOOP;

	IF has_closed_date THEN
		EXECUTE pg_catalog.format('SELECT percentile_disc($1) WITHIN GROUP (ORDER BY d.closed_date)'
		                          ' FROM %s d WHERE %s AND pg_catalog.isfinite(d.closed_date)', dict_source, closed_filter)
			INTO cutoff USING 1 - holdout;
	END IF;
	-- the newest closes are the holdout; without close dates (no column, or
	-- none filled in), a hash of deal_id picks it
	IF cutoff IS NOT NULL THEN
		train_expr := pg_catalog.format('d.closed_date < %L::date', cutoff);
		-- the passes skip open deals and pick their split themselves
		train_filter := 'true';
		split_train := 1;
	ELSE
		train_expr := pg_catalog.format('pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 1000 >= %s', (holdout * 1000)::int);
		train_filter := pg_catalog.format('%s AND %s', closed_filter, train_expr);
		test_filter := pg_catalog.format('%s AND NOT (%s)', closed_filter, train_expr);
		hold_expr := pg_catalog.format('NOT (%s)', train_expr);
		halflife := 0;
		split_why := CASE WHEN has_closed_date THEN 'no closed deal has a closed_date'
		                  ELSE 'the source has no closed_date column' END;
		RAISE NOTICE 'dealrisk.train: holdout chosen by a hash of deal_id and no recency weighting: %', split_why;
	END IF;

	-- the exact counts, the newest close and the rep win rates (over every
	-- closed deal, and over the training split for the holdout model), from
	-- one scan
	IF 'sales_rep_id' = ANY (kept) THEN
		rate_key := 'sales_rep_id';
	END IF;
	SELECT * INTO census FROM dealrisk._census(source, rate_key, train_expr, has_closed_date);
	n_won := census.n_won;
	n_lost := census.n_lost;
	ref := census.ref;
	IF n_won < min_n OR n_lost < min_n THEN
		RAISE EXCEPTION 'not enough closed deals to train on: % has % won and % lost, at least % of each are needed',
			source_name, n_won, n_lost, min_n
			USING ERRCODE = 'insufficient_resources',
			      HINT = 'Collect more closed deals, or lower dealrisk.min_training_deals (at the price of a weaker model).';
	END IF;

	-- 1. the dictionaries, learned once from the closed deals (of the
	-- sample); the rep win rates from the census
	spec := dealrisk._build_spec(source, kept, closed_filter, dict_source);
	left_out := left_out || coalesce(spec->'left_out', '{}');
	spec := spec - 'left_out';
	spec_train := spec;
	SELECT o - 1 INTO pos FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o)
	WHERE f->>'kind' = 'rate';
	IF pos IS NOT NULL THEN
		IF census.rate_all IS NULL OR census.rate_train IS NULL THEN
			-- no rep on any (older) closed deal: leave the feature out
			spec := pg_catalog.jsonb_set(spec, '{features}', (spec->'features') - pos);
			spec_train := spec;
		ELSE
			spec := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_all);
			spec_train := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_train);
		END IF;
	END IF;

	-- a feature kept so far that the specification lacks learned nothing
	-- from the closed deals (no value, or _build_spec said why)
	SELECT left_out || coalesce(pg_catalog.jsonb_object_agg(k,
	           'not learned from the closed deals: none of them has a usable value'), '{}')
	INTO left_out
	FROM pg_catalog.unnest(kept_cols) k
	WHERE NOT left_out ? k AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(spec->'features') e
	                  WHERE e->>'name' = CASE k WHEN 'sales_rep_id' THEN 'rep_win_rate' ELSE k END);

	IF method IN ('logistic', 'auto') THEN
		-- 2. fit on the older deals.  This fit is only measured (and starts
		-- the refit), so it stops once a Newton step promises less than 1e-3
		-- of the log-likelihood: Newton's quadratic convergence leaves next
		-- to nothing after that step (docs/model.md); the stored model is
		-- fitted to 1e-5.
		fit := dealrisk._fit(source, spec_train, train_filter, split_train, cutoff, ref, halflife, l2, NULL,
		                     n_won::float8 / (n_won + n_lost), tolerance => 1e-3);

		-- 3. refit on every closed deal for the stored model, from the
		-- holdout fit; its first pass also measures the holdout fit on the
		-- newest deals
		IF cutoff IS NOT NULL THEN
			final_fit := dealrisk._fit(source, spec, 'true', 0, NULL, ref, halflife, l2, fit.beta, NULL,
			                           spec_train, cutoff);
			log_metrics := final_fit.eval_metrics;
		ELSE
			EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, test_filter)
				INTO log_metrics USING spec_train, fit.beta;
			final_fit := dealrisk._fit(source, spec, closed_filter, 0, NULL, ref, halflife, l2, fit.beta, NULL);
		END IF;
		IF log_metrics IS NULL THEN
			RAISE EXCEPTION 'the holdout of % is empty', source_name USING ERRCODE = 'no_data_found',
				HINT = 'Use a larger holdout share.';
		END IF;
		-- open deals: the survivor curves of age and stage time, fitted
		-- with the stored coefficients on the closed deals (of the sample)
		log_spec := dealrisk._open_terms(dict_source, closed_filter, spec, final_fit.beta, ref, halflife);
		cand := cand || pg_catalog.jsonb_build_object('logistic', log_metrics - 'calibration');
	END IF;
	IF method IN ('gbm', 'auto') THEN
		-- the trees: both fits from one pass (src/trees.sql)
		SELECT g.model_spec, g.beta, g.eval_metrics, g.info, g.holdout_spec, g.holdout_beta
		INTO gbm_spec, gbm_beta, gbm_metrics, gbm_info, gbm_hspec, gbm_hbeta
		FROM dealrisk._gbm_train(source, dict_source, closed_filter, spec_train, spec,
		                         cutoff, hold_expr, ref, halflife, params) g;
		IF gbm_metrics IS NULL THEN
			RAISE EXCEPTION 'the holdout of % is empty', source_name USING ERRCODE = 'no_data_found',
				HINT = 'Use a larger holdout share.';
		END IF;
		cand := cand || pg_catalog.jsonb_build_object('gbm', gbm_metrics - 'calibration');
	END IF;

	-- 'auto': the trees only when they beat the logistic model by more than
	-- noise: the per-deal differences of the two holdout fits' log losses on
	-- the same holdout deals, their mean more than two standard errors
	-- above 0 (a paired test); otherwise the simpler model
	IF method = 'auto' THEN
		IF cutoff IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT dealrisk._eval_pair($1, $2, $3, $4, 2, $5, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, closed_filter)
				INTO pair USING spec_train, fit.beta, gbm_hspec, gbm_hbeta, cutoff;
		ELSE
			EXECUTE pg_catalog.format('SELECT dealrisk._eval_pair($1, $2, $3, $4, 0, NULL, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, test_filter)
				INTO pair USING spec_train, fit.beta, gbm_hspec, gbm_hbeta;
		END IF;
		gain := pair[2] / pair[1];
		gain_se := sqrt(greatest(pair[3] / pair[1] - gain * gain, 0) / greatest(pair[1] - 1, 1));
		chosen := CASE WHEN gain > 0 AND gain > 2 * gain_se THEN 'gbm' ELSE 'logistic' END;
		auto_info := pg_catalog.jsonb_build_object('auto', pg_catalog.jsonb_build_object(
			'kept', chosen, 'log_loss_gain_of_trees', gain, 'standard_error', gain_se, 'n', pair[1],
			'rule', 'trees when their holdout log loss is lower by more than two standard errors of the paired per-deal difference'));
		RAISE NOTICE 'dealrisk.train: method auto keeps %: the trees'' holdout log loss is % % (standard error %)%', chosen,
			pg_catalog.round(pg_catalog.abs(gain)::numeric, 4), CASE WHEN gain < 0 THEN 'higher' ELSE 'lower' END,
			pg_catalog.round(gain_se::numeric, 4),
			CASE WHEN chosen = 'gbm' THEN '' WHEN gain < 0 THEN ': the simpler model stays'
			     ELSE ', not surely lower: the simpler model stays' END;
	ELSE
		chosen := method;
	END IF;
	IF chosen = 'logistic' THEN
		stored_spec := log_spec || pg_catalog.jsonb_build_object('l2', l2, 'recency_halflife_days', halflife);
		stored_beta := final_fit.beta;
		test_metrics := log_metrics;
		method_metrics := pg_catalog.jsonb_build_object('n_train', fit.n_rows,
		    'iterations', final_fit.iterations, 'converged', final_fit.converged,
		    'holdout_iterations', fit.iterations);
	ELSE
		stored_spec := gbm_spec || pg_catalog.jsonb_build_object('recency_halflife_days', halflife);
		stored_beta := gbm_beta;
		test_metrics := gbm_metrics;
		method_metrics := gbm_info;
	END IF;
	method_metrics := method_metrics || pg_catalog.jsonb_build_object('method', chosen) || auto_info
		|| CASE WHEN method = 'auto' THEN pg_catalog.jsonb_build_object('candidates', cand) ELSE '{}' END;
	-- a point-in-time source: the rep's counts and the age's bins are of
	-- month-end snapshots of open deals, and the explanations say so
	IF dealrisk._has_column(source, 'dealrisk_as_of') THEN
		stored_spec := pg_catalog.jsonb_set(stored_spec, '{features}', (
			SELECT pg_catalog.jsonb_agg(CASE WHEN x.e->>'name' IN ('rep_win_rate', 'cycle_days')
			                                 THEN x.e || '{"unit": "month_end"}'::jsonb ELSE x.e END ORDER BY x.o)
			FROM pg_catalog.jsonb_array_elements(stored_spec->'features') WITH ORDINALITY x(e, o)));
		method_metrics := method_metrics || '{"point_in_time": true}'::jsonb;
	END IF;

	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (train.name, source_name, stored_spec, stored_beta,
	        test_metrics || method_metrics || pg_catalog.jsonb_build_object(
	            'n_test', (test_metrics->>'n')::bigint,
	            'won_total', n_won, 'lost_total', n_lost,
	            'holdout', holdout,
	            'holdout_from', cutoff,
	            'holdout_split', CASE WHEN cutoff IS NOT NULL THEN 'closed_date' ELSE 'deal_id hash' END,
	            'recency_weighted', halflife > 0,
	            'features_left_out', left_out,
	            'preflight', preflight)
	        || CASE WHEN split_why IS NOT NULL
	                THEN pg_catalog.jsonb_build_object('holdout_split_reason', split_why) ELSE '{}' END)
	RETURNING id INTO new_id;

	IF activate THEN
		problem := dealrisk._quality_problem(test_metrics);
		IF problem IS NULL THEN
			PERFORM dealrisk.activate(new_id);
		ELSE
			RAISE WARNING 'model % ("%") was stored but not activated: %', new_id, name, problem
				USING HINT = pg_catalog.format('Inspect it with SELECT metrics FROM dealrisk.models WHERE id = %s; activate anyway with dealrisk.activate(%s, force => true).', new_id, new_id);
		END IF;
	END IF;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb) IS
	'Trains a deal risk model (method: logistic = L2-regularised logistic regression, gbm = gradient-boosted trees tuned by params, auto = both, keeping the better holdout log loss) on the closed deals of source after its preflight (check_source(): errors stop it, warnings go into metrics->''preflight''; IRLS, one parallel aggregate pass per iteration), leaving out features the source''s dates cannot support and features that leak the outcome (metrics->''features_left_out''), measures it on the newest holdout share (a hash of deal_id without close dates), refits on all, stores it in dealrisk.models and activates it if good enough and the caller may (activate => false: a candidate); returns the model id';
REVOKE EXECUTE ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb) FROM PUBLIC;
-- The roles that may train keep train() (its new signature) and get the
-- helpers of the tree model.
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.train(regclass, text, text[], float8, float8, boolean)'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb) TO %s%s',
			CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		IF g.grantee OPERATOR(pg_catalog.<>) 0 THEN
			EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._gbm_params(jsonb),'
				' dealrisk._features_with(jsonb, text, jsonb),'
				' dealrisk._eval_pair(jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any"),'
				' dealrisk._gbm_train(regclass, regclass, text, jsonb, jsonb, date, text, date, float8, jsonb),'
				' dealrisk._gbm_pass(boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any") TO %I',
				pg_catalog.pg_get_userbyid(g.grantee));
		END IF;
	END LOOP;
END
$$;
DROP FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean);

CREATE FUNCTION dealrisk.deal_risk_contributions(deal record, model text DEFAULT 'default',
	OUT factor text, OUT contribution float8)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'dr_deal_risk_contributions'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION dealrisk.deal_risk_contributions(record, text) IS
	'Each feature''s contribution to a deal''s log-odds of winning (exact TreeSHAP values for a tree model), then (base): they add up to ln(p / (1 - p)) with p = 1 - deal_risk / 100';

