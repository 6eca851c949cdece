-- trees.sql: tree ensembles (src/trees.c), the building block of the
-- gradient-boosted model (issue #10): the margin of a feature vector and
-- its exact per-feature contributions (path-dependent TreeSHAP).  The
-- ensemble is passed flattened: see the header of src/trees.c.

CREATE FUNCTION dealrisk._trees_predict(start int4[], "left" int4[], "right" int4[], feature int4[],
	threshold float8[], default_left boolean[], value float8[], cover float8[], base float8, x float8[])
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_trees_predict'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trees_predict(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]) IS
	'The margin (log-odds) a tree ensemble gives feature vector x, NULL elements missing; the ensemble is checked first (internal)';

CREATE FUNCTION dealrisk._trees_shap(start int4[], "left" int4[], "right" int4[], feature int4[],
	threshold float8[], default_left boolean[], value float8[], cover float8[], base float8, x float8[])
RETURNS float8[]
AS 'MODULE_PATHNAME', 'dr_sql_trees_shap'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trees_shap(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]) IS
	'Path-dependent TreeSHAP of feature vector x under a tree ensemble: one contribution per feature, then the expected margin; they add up to _trees_predict (internal)';

-- Boosting on a binned matrix (src/gbm.c): codes n x nf row-major, -1 for
-- missing, codes of feature f below nbins[f]; the result is an ensemble in
-- the layout above (thresholds c + 0.5 on the codes), the rounds run and
-- kept, and the losses of every round.
CREATE FUNCTION dealrisk._gbm_fit(nbins int4[], codes int2[], y boolean[], w float8[], holdout boolean[],
	rounds float8, eta float8, max_depth float8, lambda float8, min_child_weight float8,
	subsample float8, colsample float8, early_stop float8, seed int8,
	OUT start int4[], OUT "left" int4[], OUT "right" int4[], OUT feature int4[], OUT threshold float8[],
	OUT default_left boolean[], OUT value float8[], OUT cover float8[], OUT base float8,
	OUT rounds_run int, OUT rounds_kept int, OUT train_loss float8[], OUT holdout_loss float8[])
RETURNS record
AS 'MODULE_PATHNAME', 'dr_gbm_fit'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_fit(int4[], int2[], boolean[], float8[], boolean[], float8, float8, float8, float8, float8, float8, float8, float8, int8) IS
	'Gradient-boosted trees (Newton boosting of the log loss, histogram splits, depth-limited, L2 leaves, minimum child weight, row and column subsampling, early stopping on the holdout rows) on a binned matrix (internal)';

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

-- Not for direct use: train() and the tests call them.
REVOKE EXECUTE ON FUNCTION
	dealrisk._trees_predict(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]),
	dealrisk._trees_shap(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]),
	dealrisk._gbm_fit(int4[], int2[], boolean[], float8[], boolean[], float8, float8, float8, float8, float8, float8, float8, float8, int8),
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
