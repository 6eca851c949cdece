-- Issue #10, item 6: the numbers derived from a deal's dates (age or
-- cycle, days and time in stage, activity gap) are computed by the encoder
-- alone: training's SQL bins them through dealrisk._feature_raw instead
-- of SQL expressions of its own, and _finite_date, which those used, goes.

CREATE FUNCTION dealrisk._raw_expr(source regclass, derived text, typical jsonb DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.format('dealrisk._feature_raw(%L::jsonb, %s)', s.spec, dealrisk._row_args(source, s.spec))
	FROM (SELECT pg_catalog.jsonb_build_object('features', pg_catalog.jsonb_build_array(
		pg_catalog.jsonb_build_object('name', derived, 'kind', 'numeric', 'derived', derived, 'mean', 0, 'sd', 1)
		|| CASE WHEN typical IS NOT NULL THEN pg_catalog.jsonb_build_object('typical', typical) ELSE '{}' END))) s(spec)
$$;
COMMENT ON FUNCTION dealrisk._raw_expr(regclass, text, jsonb) IS
	'The SQL expression of a number derived from a deal''s dates, computed by the encoder (internal)';

CREATE FUNCTION dealrisk._feature_raw(spec jsonb, row_type regtype, columns text[], VARIADIC "any")
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_feature_raw'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._feature_raw(jsonb, regtype, text[], "any") IS
	'The number the encoder derives for a spec''s first feature from a row passed as values, NULL when missing (internal)';

CREATE OR REPLACE FUNCTION dealrisk._quantile_edges(source regclass, expr text, filter text, probs float8[])
RETURNS float8[]
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	edges float8[];
BEGIN
	-- one evaluation of expr per row: the ordered-set aggregate skips NULLs,
	-- and infinite or NaN values are left out as the encoder leaves them out
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_cont($1) WITHIN GROUP (ORDER BY x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x'
		' WHERE x.v NOT IN (''NaN'', ''Infinity'', ''-Infinity''))) q',
		expr, source, filter)
		INTO edges USING probs;
	RETURN edges;
END
$$;
COMMENT ON FUNCTION dealrisk._quantile_edges(regclass, text, text, float8[]) IS
	'Distinct quantiles of an expression over a source, used as bin edges (internal)';

CREATE OR REPLACE FUNCTION dealrisk._open_knots(dict regclass, source regclass, expr text, filter text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	knots float8[];
	longest float8;
	-- expr evaluated once per row; NULL, NaN and infinite values left out
	finite text := 'x.v NOT IN (''NaN'', ''Infinity'', ''-Infinity'')';
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_disc($1) WITHIN GROUP (ORDER BY x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x WHERE %s)) q',
		expr, dict, filter, finite)
		INTO knots
		USING ARRAY(SELECT k / 20.0 FROM pg_catalog.generate_series(0, 19) k)::float8[] || '{0.975,0.99,1}'::float8[];
	IF pg_catalog.cardinality(knots) IS NULL THEN
		RETURN '{}';
	END IF;
	longest := knots[pg_catalog.cardinality(knots)];
	IF dict::pg_catalog.oid <> source::pg_catalog.oid THEN
		EXECUTE pg_catalog.format('SELECT max(x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x WHERE %s',
		                          expr, source, filter, finite)
			INTO longest;
	END IF;
	RETURN pg_catalog.jsonb_build_object('open_knots', pg_catalog.to_jsonb(knots),
		'longest', greatest(longest, knots[pg_catalog.cardinality(knots)]));
END
$$;
COMMENT ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text) IS
	'Knots of the survivor curve of open deals (quantiles of the closed deals'' age or stage time) and its longest value (internal)';

REVOKE EXECUTE ON FUNCTION
	dealrisk._raw_expr(regclass, text, jsonb),
	dealrisk._feature_raw(jsonb, regtype, text[], "any")
FROM PUBLIC;
-- the roles that may train get them, as they had _finite_date
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT a.grantee
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk._finite_date(text, text[])'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._raw_expr(regclass, text, jsonb),'
			' dealrisk._feature_raw(jsonb, regtype, text[], "any") TO %I', pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;
DROP FUNCTION dealrisk._finite_date(text, text[]);
