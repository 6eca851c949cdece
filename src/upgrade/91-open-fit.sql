-- Issue #10 (speed): the survivor curves of open deals are fitted in one
-- read of the closed deals (_open_fit) instead of one read per Newton step
-- (_open_pass, which stays for anyone who calls it).

-- The survivor curves' fit in one read of the closed deals: the rows an
-- _open_pass would sum are kept in memory (per curve, each deal's log-odds
-- without that feature and the knots its value reaches), and the final
-- function runs the Newton steps of _open_step over them until they
-- settle, then makes the curves non-increasing.  {passes, terms, the last
-- pass's state}, NULL without a closed deal.
CREATE FUNCTION dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8,
	regtype, text[], VARIADIC "any")
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'Survivor curve fit transition: keeps each closed deal''s weight, outcome, log-odds without the curve''s feature and knots reached (internal)';
CREATE FUNCTION dealrisk._open_rows_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows_combine'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_combine(internal, internal) IS
	'Survivor curve fit: the rows of two partial states (internal)';
CREATE FUNCTION dealrisk._open_rows_serial(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'dr_open_rows_serial'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_serial(internal) IS
	'Survivor curve fit: a partial state as bytea (internal)';
CREATE FUNCTION dealrisk._open_rows_deserial(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows_deserial'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_deserial(bytea, internal) IS
	'Survivor curve fit: a partial state from bytea, every field checked (internal)';
CREATE FUNCTION dealrisk._open_fit_final(internal)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_fit_final'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_fit_final(internal) IS
	'Survivor curve fit: the Newton steps over the kept rows; {passes, terms, state} (internal)';
CREATE AGGREGATE dealrisk._open_fit(spec jsonb, beta float8[], split int, cutoff date, ref date,
	halflife float8, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._open_rows,
	STYPE = internal,
	FINALFUNC = dealrisk._open_fit_final,
	COMBINEFUNC = dealrisk._open_rows_combine,
	SERIALFUNC = dealrisk._open_rows_serial,
	DESERIALFUNC = dealrisk._open_rows_deserial,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'The survivor curves'' fit over closed deals in one read: {passes, terms, state of the last pass} (internal)';

-- The survivor curves of open deals for the features of spec that have
-- knots, fitted with coefficients beta on the closed deals of source that
-- pass filter (weighted as in training: ref, halflife): spec with each
-- such feature's open_terms, open_closed and open_won (docs/model.md).
CREATE OR REPLACE FUNCTION dealrisk._open_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n int;
	res float8[];
	terms float8[];
	state float8[];
BEGIN
	SELECT coalesce(sum(pg_catalog.jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM pg_catalog.jsonb_array_elements(spec->'features') e
	WHERE pg_catalog.jsonb_typeof(e->'open_knots') = 'array';
	IF n = 0 THEN
		RETURN spec;
	END IF;
	EXECUTE pg_catalog.format('SELECT dealrisk._open_fit($1, $2, 0, NULL, $3, $4, %s) FROM %s d WHERE %s',
	                          dealrisk._row_args(source, spec), source, filter)
		INTO res USING spec, beta, ref, halflife;
	IF res IS NULL THEN
		RETURN spec;	-- no closed deal: open deals stay binned
	END IF;
	terms := res[2:n + 1];
	state := res[n + 2:];
	RAISE NOTICE 'dealrisk.train: survivor curves of open deals fitted in % passes', res[1]::int;
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
	dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._open_rows_combine(internal, internal),
	dealrisk._open_rows_serial(internal),
	dealrisk._open_rows_deserial(bytea, internal),
	dealrisk._open_fit_final(internal)
FROM PUBLIC;
-- The roles that could run the survivor curves' passes can run the new fit.
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any")'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
		  AND a.grantee OPERATOR(pg_catalog.<>) 0
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any") TO %I%s',
			pg_catalog.pg_get_userbyid(g.grantee),
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;
