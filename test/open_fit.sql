-- pgTAP: the survivor curves of open deals fitted in one read of the closed
-- deals (dealrisk._open_fit, issue #10 speed work) give the curves the
-- Newton passes of _open_pass and _open_step gave, for a logistic model and
-- a tree model; a parallel read gives them up to rounding; a source with no
-- closed deal leaves the spec as it is.
\ir harness/pgtap_setup.psql
SELECT plan(9);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
SET LOCAL client_min_messages = warning;
CREATE SCHEMA of_t;
CREATE TABLE of_t.base AS SELECT * FROM dealrisk.sample_deals(3000, 17);
SELECT dealrisk.train('of_t.base', 'of_log', method => 'logistic', activate => false) AS log_id \gset
SELECT dealrisk.train('of_t.base', 'of_gbm', method => 'gbm', activate => false) AS gbm_id \gset

-- the curves as _open_terms fitted them before _open_fit: a read per step
CREATE FUNCTION pg_temp.passes_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
	n int;
	terms float8[];
	next float8[];
	state float8[];
	passes int := 0;
	q text;
BEGIN
	SELECT coalesce(sum(jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM jsonb_array_elements(spec->'features') e WHERE jsonb_typeof(e->'open_knots') = 'array';
	q := format('SELECT dealrisk._open_pass($1, $2, 0, NULL, $3, $4, $5, %s) FROM %s d WHERE %s',
	            dealrisk._row_args(source, spec), source, filter);
	terms := array_fill(0::float8, ARRAY[n]);
	LOOP
		EXECUTE q INTO state USING spec, beta, ref, halflife, terms;
		passes := passes + 1;
		next := dealrisk._open_step(spec, state, terms, false);
		EXIT WHEN passes >= 30 OR
			(SELECT max(abs(x.a - x.b)) FROM ROWS FROM (unnest(next), unnest(terms)) x(a, b)) < 1e-6;
		terms := next;
	END LOOP;
	terms := dealrisk._open_step(spec, state, next, true);
	RETURN jsonb_build_object('terms', to_jsonb(terms),
		'closed', (SELECT jsonb_agg(state[4 * k] ORDER BY k) FROM generate_series(1, n) k),
		'won', (SELECT jsonb_agg(state[4 * k + 1] ORDER BY k) FROM generate_series(1, n) k));
END $$;
-- the same three arrays of a spec _open_terms returned
CREATE FUNCTION pg_temp.curves(spec jsonb) RETURNS jsonb LANGUAGE sql AS $$
	SELECT jsonb_build_object(
		'terms', (SELECT jsonb_agg(t.v ORDER BY e.o, t.k) FROM jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o),
		                 jsonb_array_elements(e.f->'open_terms') WITH ORDINALITY t(v, k)),
		'closed', (SELECT jsonb_agg(t.v ORDER BY e.o, t.k) FROM jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o),
		                  jsonb_array_elements(e.f->'open_closed') WITH ORDINALITY t(v, k)),
		'won', (SELECT jsonb_agg(t.v ORDER BY e.o, t.k) FROM jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o),
		               jsonb_array_elements(e.f->'open_won') WITH ORDINALITY t(v, k)))
$$;
CREATE FUNCTION pg_temp.args(id bigint, OUT spec jsonb, OUT beta float8[], OUT ref date)
LANGUAGE sql AS $$
	SELECT m.feature_spec, m.coefficients, (SELECT max(closed_date) FROM of_t.base)
	FROM dealrisk.models m WHERE m.id = $1
$$;
CREATE TEMP TABLE fits AS
SELECT k.kind,
       pg_temp.curves(dealrisk._open_terms('of_t.base', 'dealrisk.is_won(d.outcome) IS NOT NULL', a.spec, a.beta, a.ref, 365)) AS one_read,
       pg_temp.passes_terms('of_t.base', 'dealrisk.is_won(d.outcome) IS NOT NULL', a.spec, a.beta, a.ref, 365) AS passes
FROM (VALUES ('logistic', :log_id::bigint), ('gbm', :gbm_id::bigint)) k(kind, id), pg_temp.args(k.id) a;

SELECT ok((SELECT jsonb_array_length(one_read->'terms') > 5 AND jsonb_array_length(one_read->'closed') > 5
                  AND jsonb_array_length(passes->'closed') > 5 FROM fits WHERE kind = 'logistic'),
	'the logistic model has survivor curves to fit, with counts both ways');
SELECT is((SELECT (one_read->'terms')::text FROM fits WHERE kind = 'logistic'),
          (SELECT jsonb_agg(t)::text FROM fits, jsonb_array_elements(passes->'terms') t WHERE kind = 'logistic'),
	'logistic model: one read fits the same terms as a read per Newton step');
SELECT is((SELECT (one_read->'closed') || (one_read->'won') FROM fits WHERE kind = 'logistic'),
          (SELECT (passes->'closed') || (passes->'won') FROM fits WHERE kind = 'logistic'),
	'... and the same closed and won counts per knot');
SELECT is((SELECT (one_read->'terms')::text FROM fits WHERE kind = 'gbm'),
          (SELECT jsonb_agg(t)::text FROM fits, jsonb_array_elements(passes->'terms') t WHERE kind = 'gbm'),
	'tree model: the same terms');
SELECT is((SELECT (one_read->'closed') || (one_read->'won') FROM fits WHERE kind = 'gbm'),
          (SELECT (passes->'closed') || (passes->'won') FROM fits WHERE kind = 'gbm'),
	'... and the same counts');

-- a parallel read: workers keep their rows, send them serialised, and the
-- leader combines them ({passes, terms, state}: the same up to rounding)
SELECT format('PREPARE of_fit(jsonb, float8[]) AS SELECT dealrisk._open_fit($1, $2, 0, NULL, %L::date, 365::float8, %s)'
              ' FROM of_t.base d WHERE dealrisk.is_won(d.outcome) IS NOT NULL',
              (SELECT max(closed_date) FROM of_t.base), dealrisk._row_args('of_t.base', feature_spec)) AS prep,
       feature_spec AS log_spec, coefficients AS log_beta
FROM dealrisk.models WHERE id = :log_id \gset
:prep;
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE serial_fit AS EXECUTE of_fit(:'log_spec', :'log_beta');
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
CREATE FUNCTION pg_temp.plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || q;
END $$;
SELECT ok((SELECT count(*) FROM pg_temp.plan(format('EXECUTE of_fit(%L, %L)', :'log_spec', :'log_beta')) l
           WHERE l LIKE '%Partial Aggregate%') = 1, 'the fit is planned as a parallel aggregate');
CREATE TEMP TABLE parallel_fit AS EXECUTE of_fit(:'log_spec', :'log_beta');
SELECT is((SELECT cardinality(p._open_fit) = cardinality(s._open_fit) AND p._open_fit[1] = s._open_fit[1]
                  AND (SELECT max(abs(x.a - x.b)) FROM ROWS FROM (unnest(p._open_fit), unnest(s._open_fit)) x(a, b)) < 1e-9
           FROM parallel_fit p, serial_fit s), true,
	'a parallel read fits the terms, sums and counts of a serial one (up to rounding), in as many passes');
SELECT is((SELECT s._open_fit[2 + (cardinality(s._open_fit) - 2) / 5]
           FROM serial_fit s), (SELECT count(*)::float8 FROM of_t.base WHERE dealrisk.is_won(outcome) IS NOT NULL),
	'... whose last pass counts every closed deal');
RESET max_parallel_workers_per_gather;

-- no closed deal passes the filter: the spec comes back as it was
SELECT is((SELECT dealrisk._open_terms('of_t.base', 'false', a.spec, a.beta, a.ref, 365) = a.spec FROM pg_temp.args(:log_id) a),
	true, 'no closed deal: the spec is returned unchanged');

SELECT * FROM finish();
ROLLBACK;
