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

CREATE FUNCTION dealrisk.train(source regclass, history regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true,
	method text DEFAULT 'auto', params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	target		text;
	n			bigint;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'created_date', 'closed_date']);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	-- the snapshots take the source's name, so the model says what it was
	-- trained on: deals_point_in_time
	SELECT pg_catalog.left(c.relname, 40) || '_point_in_time' INTO target
	FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	n := dealrisk._pit_rows(source, history, target);
	RAISE NOTICE 'dealrisk.train: point in time: % closed deals of %, each as it stood on one day while open (stage from %)',
		n, dealrisk._source_name(source), dealrisk._source_name(history);
	RETURN dealrisk.train(pg_catalog.format('pg_temp.%I', target)::regclass, name, features, l2, holdout, activate, method, params);
END
$fn$;
COMMENT ON FUNCTION dealrisk.train(regclass, regclass, text, text[], float8, float8, boolean, text, jsonb) IS
	'Trains a point-in-time model: train() on the closed deals of source as each stood on one day while it was open (its stage then from the stage history, its age and days in stage on that day, its final outcome), so the model learns from the same kind of row it scores; deal_stage is a feature, age and time in stage are scored in bins (no survivor curves); returns the model id';
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

