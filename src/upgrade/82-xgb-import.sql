-- Issue #10: tree models in dealrisk.models (spec "trees"), scored by
-- deal_risk with TreeSHAP reasons; import_model reads xgboost JSON.

CREATE FUNCTION dealrisk._xgboost_spec(xgb jsonb, columns jsonb, OUT spec jsonb, OUT base float8)
RETURNS record
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	l			jsonb := xgb -> 'learner';
	names		text[];
	unmapped	text;
	b			float8;
	bad			text;
BEGIN
	IF pg_catalog.jsonb_typeof(l) IS DISTINCT FROM 'object'
	   OR pg_catalog.jsonb_typeof(l #> '{gradient_booster,model,trees}') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the xgboost model has no learner.gradient_booster.model.trees array'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass the JSON that Booster.save_model(''model.json'') writes (xgboost 1.x or later).';
	END IF;
	IF l #>> '{objective,name}' IS DISTINCT FROM 'binary:logistic' THEN
		RAISE EXCEPTION 'the xgboost model''s objective is %, not binary:logistic', coalesce(l #>> '{objective,name}', 'missing')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Train with objective="binary:logistic" and label 1 for a won deal.';
	END IF;
	IF pg_catalog.jsonb_typeof(l -> 'feature_names') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the xgboost model has no feature names'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Train on a DataFrame, or set Booster.feature_names before saving, so that each feature can be mapped to a column.';
	END IF;
	names := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(l -> 'feature_names'));
	IF pg_catalog.jsonb_typeof(columns) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'an xgboost import needs "columns": an object from each feature name to a column of the deal source'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT pg_catalog.string_agg(n, ', ') INTO unmapped FROM pg_catalog.unnest(names) n
	WHERE pg_catalog.jsonb_typeof(columns -> n) IS DISTINCT FROM 'string' OR pg_catalog.btrim(columns ->> n) = '';
	IF unmapped IS NOT NULL THEN
		RAISE EXCEPTION 'xgboost features without a column: %', unmapped
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Map every feature name to a column name in "columns", e.g. {"deal_amount": "deal_amount"}.';
	END IF;
	SELECT pg_catalog.string_agg(DISTINCT t.st, ', ') INTO bad
	FROM pg_catalog.jsonb_array_elements(l #> '{gradient_booster,model,trees}') tr,
		 pg_catalog.jsonb_array_elements_text(tr -> 'split_type') t(st)
	WHERE t.st <> '0';
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'the xgboost model has categorical splits (split_type %), which dealrisk does not import', bad
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Train with numeric (or one-hot) features.';
	END IF;
	b := (l #>> '{learner_model_param,base_score}')::float8;
	IF NOT (b > 0 AND b < 1) THEN
		RAISE EXCEPTION 'the xgboost model''s base_score % is not a probability', b
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	base := pg_catalog.ln(b / (1 - b));
	WITH t AS (
		SELECT e.tr, e.o
		FROM pg_catalog.jsonb_array_elements(l #> '{gradient_booster,model,trees}') WITH ORDINALITY AS e(tr, o)
	), n AS (
		SELECT t.o, k.i, (t.tr -> 'left_children' ->> k.i)::int AS lc, (t.tr -> 'right_children' ->> k.i)::int AS rc,
			   (t.tr -> 'split_indices' ->> k.i)::int AS f, (t.tr -> 'split_conditions' ->> k.i)::float8 AS c,
			   (t.tr -> 'default_left' ->> k.i)::int OPERATOR(pg_catalog.=) 1 AS dl, (t.tr -> 'sum_hessian' ->> k.i)::float8 AS h
		FROM t, pg_catalog.generate_series(0, pg_catalog.jsonb_array_length(t.tr -> 'left_children') - 1) AS k(i)
	), s AS (
		SELECT n.o, (pg_catalog.sum(pg_catalog.count(*)) OVER (ORDER BY n.o) - pg_catalog.count(*))::int AS start
		FROM n GROUP BY n.o
	)
	SELECT pg_catalog.jsonb_build_object(
			   'features', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
								'name', x.n, 'kind', 'numeric', 'column', columns ->> x.n, 'mean', 0, 'sd', 1) ORDER BY x.o)
							FROM pg_catalog.unnest(names) WITH ORDINALITY AS x(n, o)),
			   'trees', pg_catalog.jsonb_build_object(
				   'start', (SELECT pg_catalog.jsonb_agg(s.start ORDER BY s.o) FROM s),
				   'left', pg_catalog.jsonb_agg(n.lc ORDER BY n.o, n.i),
				   'right', pg_catalog.jsonb_agg(n.rc ORDER BY n.o, n.i),
				   'feature', pg_catalog.jsonb_agg(CASE WHEN n.lc >= 0 THEN n.f ELSE 0 END ORDER BY n.o, n.i),
				   'threshold', pg_catalog.jsonb_agg(CASE WHEN n.lc >= 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i),
				   'default_left', pg_catalog.jsonb_agg(n.dl ORDER BY n.o, n.i),
				   'value', pg_catalog.jsonb_agg(CASE WHEN n.lc < 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i),
				   'cover', pg_catalog.jsonb_agg(n.h ORDER BY n.o, n.i)),
			   'imported_from', 'xgboost')
		INTO spec
	FROM n;
END
$fn$;
COMMENT ON FUNCTION dealrisk._xgboost_spec(jsonb, jsonb) IS
	'The feature specification (numeric features read from mapped columns, trees) and base margin of an xgboost binary:logistic model saved as JSON (internal)';

REVOKE EXECUTE ON FUNCTION dealrisk._xgboost_spec(jsonb, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION dealrisk.import_model(model jsonb, name text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coefs float8[];
	new_id bigint;
	spec jsonb;
BEGIN
	IF model IS NULL OR pg_catalog.jsonb_typeof(model) <> 'object' THEN
		RAISE EXCEPTION 'a model to import is a JSON object, got %', coalesce(pg_catalog.jsonb_typeof(model), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'See docs/model.md for the format.';
	END IF;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF model->>'format' = 'xgboost/json' THEN
		-- {"format": "xgboost/json", "model": <save_model JSON>, "columns": {feature: column}}
		SELECT x.spec, ARRAY[x.base] INTO spec, coefs FROM dealrisk._xgboost_spec(model->'model', model->'columns') x;
		PERFORM dealrisk._validate_model(spec, coefs);
		INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
		VALUES (name, model->>'source', spec, coefs, '{"imported": true, "imported_from": "xgboost"}')
		RETURNING id INTO new_id;
		RETURN new_id;
	END IF;
	IF model->>'format' IS DISTINCT FROM 'dealrisk-model/1' THEN
		RAISE EXCEPTION 'unknown model format %', coalesce(pg_catalog.quote_literal(model->>'format'), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Set "format": "dealrisk-model/1", or "xgboost/json" for a model saved by xgboost; see docs/model.md.';
	END IF;
	IF pg_catalog.jsonb_typeof(model->'coefficients') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the model has no "coefficients" array' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(model->'coefficients') c
	           WHERE pg_catalog.jsonb_typeof(c) <> 'number') THEN
		RAISE EXCEPTION 'every coefficient must be a JSON number' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	coefs := ARRAY(SELECT c::float8 FROM pg_catalog.jsonb_array_elements_text(model->'coefficients') c);
	PERFORM dealrisk._validate_model(model->'spec', coefs);
	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (name, model->>'source', model->'spec', coefs,
	        coalesce(model->'metrics', '{}') || '{"imported": true}')
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION dealrisk.import_model(jsonb, text) IS
	'Stores a model exported by export_model or fitted elsewhere (format in docs/model.md) after checking its dimensions, numbers and feature kinds; not activated';
