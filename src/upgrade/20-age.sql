-- Age-aware risk for open deals (issue #9, section 2) and explanations with
-- numbers for people (section 6): open deals are scored by the survivor
-- curves of their age and time in stage (docs/model.md, "Open deals"),
-- stored in the feature specification by train(); models without them
-- score as before.

-- The knots of an open deal's survivor curve (docs/model.md, "Open deals"):
-- distinct values of a closed deal's age (or stage time) expression at
-- every 5th percentile, and the 97.5th, 99th and 100th, from dict (the
-- training sample), and the longest value over every closed deal of source.
CREATE FUNCTION dealrisk._open_knots(dict regclass, source regclass, expr text, filter text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	knots float8[];
	longest float8;
	finite text := pg_catalog.format('(%s) IS NOT NULL AND (%s)::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'')', expr, expr);
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_disc($1) WITHIN GROUP (ORDER BY (%s)::float8) FROM %s d WHERE %s AND %s)) q',
		expr, dict, filter, finite)
		INTO knots
		USING ARRAY(SELECT k / 20.0 FROM pg_catalog.generate_series(0, 19) k)::float8[] || '{0.975,0.99,1}'::float8[];
	IF pg_catalog.cardinality(knots) IS NULL THEN
		RETURN '{}';
	END IF;
	longest := knots[pg_catalog.cardinality(knots)];
	IF dict::pg_catalog.oid <> source::pg_catalog.oid THEN
		EXECUTE pg_catalog.format('SELECT max((%s)::float8) FROM %s d WHERE %s AND %s', expr, source, filter, finite)
			INTO longest;
	END IF;
	RETURN pg_catalog.jsonb_build_object('open_knots', pg_catalog.to_jsonb(knots),
		'longest', greatest(longest, knots[pg_catalog.cardinality(knots)]));
END
$$;
COMMENT ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text) IS
	'Knots of the survivor curve of open deals (quantiles of the closed deals'' age or stage time) and its longest value (internal)';

-- A pass of the survivor curves' fit: per knot, the score and information
-- of the closed deals at or past it at the given terms, and their counts.
CREATE FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[],
	regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'Survivor curve pass transition (internal)';
CREATE AGGREGATE dealrisk._open_pass(spec jsonb, beta float8[], split int, cutoff date, ref date,
	halflife float8, terms float8[], row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._open_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'One pass of the survivor curves'' fit over closed deals: {rows, per knot: score, information, closed, won} (internal)';

CREATE FUNCTION dealrisk._open_step(spec jsonb, state float8[], terms float8[], monotone boolean)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_step'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_step(jsonb, float8[], float8[], boolean) IS
	'Newton step of the survivor curves from a pass state, or (monotone) the curves made non-increasing (internal)';

-- The survivor curves of open deals for the features of spec that have
-- knots, fitted with coefficients beta on the closed deals of source that
-- pass filter (weighted as in training: ref, halflife): spec with each
-- such feature's open_terms, open_closed and open_won (docs/model.md).
CREATE FUNCTION dealrisk._open_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n int;
	terms float8[];
	next float8[];
	state float8[];
	passes int := 0;
	q text;
BEGIN
	SELECT coalesce(sum(pg_catalog.jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM pg_catalog.jsonb_array_elements(spec->'features') e
	WHERE pg_catalog.jsonb_typeof(e->'open_knots') = 'array';
	IF n = 0 THEN
		RETURN spec;
	END IF;
	q := pg_catalog.format('SELECT dealrisk._open_pass($1, $2, 0, NULL, $3, $4, $5, %s) FROM %s d WHERE %s',
	                       dealrisk._row_args(source, spec), source, filter);
	terms := pg_catalog.array_fill(0::float8, ARRAY[n]);
	LOOP
		EXECUTE q INTO state USING spec, beta, ref, halflife, terms;
		IF state IS NULL OR pg_catalog.cardinality(state) = 0 THEN
			RETURN spec;	-- no closed deal: open deals stay binned
		END IF;
		passes := passes + 1;
		next := dealrisk._open_step(spec, state, terms, false);
		EXIT WHEN passes >= 30 OR
			(SELECT max(abs(x.a - x.b)) FROM ROWS FROM (pg_catalog.unnest(next), pg_catalog.unnest(terms)) x(a, b)) < 1e-6;
		terms := next;
	END LOOP;
	terms := dealrisk._open_step(spec, state, next, true);
	RAISE NOTICE 'dealrisk.train: survivor curves of open deals fitted in % passes', passes;
	RETURN pg_catalog.jsonb_set(spec, '{features}', (
		SELECT pg_catalog.jsonb_agg(CASE WHEN x.len > 0 THEN x.e || pg_catalog.jsonb_build_object(
			'open_terms', (SELECT pg_catalog.jsonb_agg(terms[x.o + k] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_closed', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k)] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_won', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k) + 1] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k))
			ELSE x.e END ORDER BY x.ord)
		FROM (SELECT f.e, f.ord, f.len,
		             coalesce(sum(f.len) OVER (ORDER BY f.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::int AS o
		      FROM (SELECT t.e, t.ord, CASE WHEN pg_catalog.jsonb_typeof(t.e->'open_knots') = 'array'
		                                    THEN pg_catalog.jsonb_array_length(t.e->'open_knots') ELSE 0 END AS len
		            FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY AS t(e, ord)) f) x));
END
$$;
COMMENT ON FUNCTION dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8) IS
	'Fits the survivor curves that score open deals by age and stage time, and writes them into a feature specification (internal)';
REVOKE EXECUTE ON FUNCTION
	dealrisk._open_knots(regclass, regclass, text, text),
	dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_step(jsonb, float8[], float8[], boolean),
	dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),
	dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any")
FROM PUBLIC;

-- _build_spec (the knots of the age and stage time curves, the bins'
-- quantiles, a one-line NOTICE when stage_time is left out) and train()
-- (which fits the curves) are replaced in 25-train.sql, with that part's
-- changes.
