-- pgTAP: fuzz every C entry point of dealrisk with hostile input.
--
-- The C functions are listed from pg_proc, so a new one is covered without
-- editing this file.  Each is called directly with its arguments replaced,
-- one at a time, by hostile values of their type (NULL, NaN, +-Infinity,
-- extreme numbers, empty, huge, multi-dimensional arrays, arrays with NULLs
-- or another lower bound, states of the wrong length or with impossible
-- counts, hostile jsonb specifications, wrong row types); the aggregates
-- are run the same way over a table, with custom aggregates that feed the
-- transition, combine and final functions hostile states inside an
-- aggregate, and again under forced parallel plans.  An ERROR is a fine
-- answer; a crash ends the session (and fails this file), and the server
-- log is read at the end for "terminated by signal".  No call may return
-- NaN, and none may fail with an internal error (elog, SQLSTATE XX000).
\ir harness/pgtap_setup.psql
SELECT plan(14);

SET LOCAL dealrisk.as_of_date = '2024-12-31';

-- where the harness writes the server log ($BASE/server.log beside
-- $BASE/data), and how long it is now: only what this file adds is read
CREATE TEMP TABLE fz_log_at AS
SELECT current_setting('data_directory') || '/../server.log' AS path,
	(pg_stat_file(current_setting('data_directory') || '/../server.log', true)).size AS size;

-- deals: a clean sample, and rows with hostile values
CREATE TABLE fz_deals AS SELECT * FROM dealrisk.sample_deals(40, 7);
ALTER TABLE fz_deals DROP COLUMN planted_win_prob;
CREATE TABLE fz_bad (LIKE fz_deals);
INSERT INTO fz_bad (deal_id, created_date, closed_date, sales_rep_id, industry, deal_stage,
	deal_amount, sales_cycle_days, outcome, last_activity_date, stage_entered_date) VALUES
	('b1', '2024-01-01', '2024-03-01', 'r1', 'SaaS', 'Demo', 'Infinity', 10, 'Won', '2024-02-01', '2024-01-10'),
	('b2', '2024-01-01', '2024-03-01', 'r2', 'SaaS', 'Demo', '-Infinity', 10, 'Lost', NULL, NULL),
	('b3', '2024-01-01', '2024-03-01', 'r1', 'FinTech', 'Proposal', 'NaN', 10, 'Won', '-infinity', 'infinity'),
	('b4', '-infinity', 'infinity', NULL, NULL, NULL, 1e300, 2147483647, 'Lost', 'infinity', '-infinity'),
	('b5', 'infinity', NULL, repeat('r', 5000), repeat('i', 5000), 'Demo', -1e300, -2147483648, NULL, '2024-01-01', NULL),
	('b6', NULL, NULL, '', '', '', 0, NULL, ' won ', NULL, NULL),
	('b7', '4713-01-01 BC', '5874897-12-31', 'r2', 'Retail', 'proposal', 1e-300, 0, 'Closed Lost', '4713-01-01 BC', '5874897-12-31');

-- a valid model with every kind of feature, stored and active as 'fz'; a
-- coefficient of 0 on deal_amount makes an infinite amount 0 * Infinity
CREATE TEMP TABLE fz_spec AS SELECT $${"features": [
	{"name": "industry", "kind": "categorical", "column": "industry", "levels": ["SaaS", "FinTech", "(other)"], "pooled": ["Retail"]},
	{"name": "deal_amount", "kind": "numeric", "column": "deal_amount", "mean": 1000, "sd": 500},
	{"name": "amount_bins", "kind": "bins", "column": "deal_amount", "edges": [100, 1000, 10000]},
	{"name": "rep", "kind": "rate", "column": "sales_rep_id", "levels": ["r1", "r2"], "won": [3, 1], "closed": [5, 4],
	 "prior": 0.45, "strength": 20, "mean": 0.45, "sd": 0.05},
	{"name": "cycle_days", "kind": "bins", "derived": "age_days", "edges": [10, 30, 90]},
	{"name": "stage_time", "kind": "numeric", "derived": "stage_ratio", "typical": {"Demo": 10, "Proposal": 20}, "mean": 1, "sd": 1},
	{"name": "activity_gap", "kind": "numeric", "derived": "activity_gap", "mean": 10, "sd": 5}]}$$::jsonb AS spec;
INSERT INTO dealrisk.models (name, feature_spec, coefficients, active)
SELECT 'fz', spec, ARRAY[0.1, 0.2, -0.3, 0, 0, 0.1, -0.1, 0.2, 0, 0.7, 0.1, 0, -0.2, 0.3, 0.4, -0.5]::float8[], true
FROM fz_spec;

-- hostile values per argument type; ord 1 is the well-formed base value
CREATE TEMP TABLE fz_pool (typ regtype, ord int, expr text);
INSERT INTO fz_pool
SELECT 'float8'::regtype, ordinality, e FROM unnest(ARRAY[
	'0.5::float8', 'NULL::float8', $$'NaN'::float8$$, $$'Infinity'::float8$$, $$'-Infinity'::float8$$,
	'0::float8', '-1::float8', '1::float8', '1e308::float8', '-1e308::float8', '4.9e-324::float8', '1e-310::float8'
]) WITH ORDINALITY e
UNION ALL
SELECT 'bigint'::regtype, ordinality, e FROM unnest(ARRAY[
	'10::bigint', 'NULL::bigint', '0::bigint', '-1::bigint', '3::bigint',
	'9223372036854775807::bigint', '(-9223372036854775807 - 1)::bigint'
]) WITH ORDINALITY e
UNION ALL
SELECT 'integer'::regtype, ordinality, e FROM unnest(ARRAY[
	'1', 'NULL::int', '0', '-1', '2', '3', '2147483647', '(-2147483647 - 1)'
]) WITH ORDINALITY e
UNION ALL
SELECT 'boolean'::regtype, ordinality, e FROM unnest(ARRAY['true', 'NULL::boolean', 'false']) WITH ORDINALITY e
UNION ALL
SELECT 'text'::regtype, ordinality, e FROM unnest(ARRAY[
	$$'fz'::text$$, 'NULL::text', $$''::text$$, $$' '::text$$, $$'Demo'::text$$, $$'Won'::text$$,
	$$'NaN'::text$$, $$'default'::text$$, $$repeat('x', 100000)$$, $$E'\u00e9\t,'::text$$
]) WITH ORDINALITY e
UNION ALL
SELECT 'numeric'::regtype, ordinality, e FROM unnest(ARRAY[
	'100::numeric', 'NULL::numeric', $$'NaN'::numeric$$, $$'Infinity'::numeric$$, $$'-Infinity'::numeric$$,
	'-5::numeric', '0::numeric', '1e300::numeric', '1e400::numeric', '1e-400::numeric'
]) WITH ORDINALITY e
UNION ALL
SELECT 'date'::regtype, ordinality, e FROM unnest(ARRAY[
	$$'2024-06-30'::date$$, 'NULL::date', $$'infinity'::date$$, $$'-infinity'::date$$,
	$$'4713-01-01 BC'::date$$, $$'5874897-12-31'::date$$
]) WITH ORDINALITY e
UNION ALL
SELECT 'float8[]'::regtype, ordinality, e FROM unnest(ARRAY[
	$${0}$$, NULL, $${}$$, $${NaN}$$, $${Infinity,-Infinity,NaN}$$, $${1,NULL}$$, $${NULL}$$,
	$${{1,2},{3,4}}$$, $$[5:7]={1,2,3}$$, $${10,10,-5,1,2.5}$$, $${1,2,0.9}$$, $${5,2,0.9}$$, $${1,2,5}$$,
	$${-1,2,0.5}$$, $${0,0,0}$$, $${1e308,1e308,1e308}$$
]::text[]) WITH ORDINALITY e0, LATERAL (SELECT CASE WHEN e0 IS NULL THEN 'NULL::float8[]'
	ELSE quote_literal(e0) || '::float8[]' END) x(e)
UNION ALL
SELECT 'float8[]'::regtype, 100 + ordinality, e FROM unnest(ARRAY[
	'array_fill(0::float8, ARRAY[16])', 'array_fill(0::float8, ARRAY[6005])',
	$$array_fill('NaN'::float8, ARRAY[6005])$$, 'array_fill(-1::float8, ARRAY[6005])',
	'array_fill(1e308::float8, ARRAY[6005])', 'array_fill(1::float8, ARRAY[155])',
	'array_fill(1e308::float8, ARRAY[65535])', 'array_fill(0::float8, ARRAY[32770])',
	'array_fill(0::float8, ARRAY[2, 3])'
]) WITH ORDINALITY e
UNION ALL
SELECT 'bigint[]'::regtype, ordinality, e FROM unnest(ARRAY[
	$${0,0}$$, NULL, $${}$$, $${5,2}$$, $${-1,2}$$, $${1,NULL}$$, $${{1,2},{3,4}}$$, $$[0:1]={1,2}$$,
	$${9223372036854775807,9223372036854775807}$$, $${-9223372036854775808,0}$$, $${1,2,3}$$
]::text[]) WITH ORDINALITY e0, LATERAL (SELECT CASE WHEN e0 IS NULL THEN 'NULL::bigint[]'
	ELSE quote_literal(e0) || '::bigint[]' END) x(e)
UNION ALL
SELECT 'bigint[]'::regtype, 100 + ordinality, e FROM unnest(ARRAY[
	'array_fill(0::bigint, ARRAY[15])', 'array_fill(-1::bigint, ARRAY[15])',
	'array_fill(9223372036854775807::bigint, ARRAY[15])', 'array_fill(1::bigint, ARRAY[100000])'
]) WITH ORDINALITY e
UNION ALL
SELECT 'text[]'::regtype, ordinality, e FROM unnest(ARRAY[
	$$'{deal_amount}'::text[]$$, 'NULL::text[]', $$'{}'::text[]$$, $$'{NULL}'::text[]$$,
	$$'{{a,b},{c,d}}'::text[]$$, $$'{outcome,outcome,nope}'::text[]$$, $$ARRAY[repeat('x', 1000)]$$
]) WITH ORDINALITY e
UNION ALL
SELECT 'regtype'::regtype, ordinality, e FROM unnest(ARRAY[
	$$'fz_deals'::regtype$$, 'NULL::regtype', $$'int4'::regtype$$, $$'record'::regtype$$,
	$$'dealrisk.rate_interval'::regtype$$, $$'fz_bad'::regtype$$, $$'text'::regtype$$
]) WITH ORDINALITY e
UNION ALL
SELECT 'record'::regtype, ordinality, e FROM unnest(ARRAY[
	'd', 'NULL::fz_deals', 'NULL::record', $$ROW(1, 'x')$$, 'ROW(NULL)',
	'(SELECT b FROM fz_bad b WHERE deal_id = ''b1'')', '(SELECT b FROM fz_bad b WHERE deal_id = ''b4'')',
	'(SELECT b FROM fz_bad b WHERE deal_id = ''b5'')', '(SELECT c FROM pg_class c LIMIT 1)'
]) WITH ORDINALITY e
UNION ALL
SELECT 'internal'::regtype, 1, 'NULL';

-- hostile model specifications
INSERT INTO fz_pool
SELECT 'jsonb'::regtype, 1, quote_literal(spec) || '::jsonb' FROM fz_spec
UNION ALL
SELECT 'jsonb'::regtype, 1 + ordinality, CASE WHEN e IS NULL THEN 'NULL::jsonb' ELSE quote_literal(e) || '::jsonb' END
FROM unnest(ARRAY[
	NULL, 'null', '42', '"x"', '[]', '{}', '{"features": []}', '{"features": {}}', '{"features": null}',
	'{"features": [1, "x", null, [], {}]}',
	'{"features": [{"name": "a"}]}',
	'{"features": [{"name": "a", "kind": "nope", "column": "industry"}]}',
	'{"features": [{"name": "a", "kind": "numeric"}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": "NaN", "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 0}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": "-Infinity"}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 1e308, "sd": 1e-308}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": "x", "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": {"a": 1}, "sd": [1]}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "nope", "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "column": "industry", "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "deal_amount", "levels": ["1", "2"]}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": []}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": ["NaN"]}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": [3, 1]}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": ["Infinity"]}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": [null]}]}',
	'{"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": 5}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "industry", "levels": []}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "industry", "levels": [null]}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "industry", "levels": ["x", "x"]}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "industry", "levels": [{"x": 1}, [1], 2]}]}',
	'{"features": [{"name": "a", "kind": "categorical", "column": "industry", "levels": ["(other)"], "pooled": [null]}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": ["r1"], "won": [5], "closed": [2], "prior": 0.5, "strength": 1, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": ["r1"], "won": [1, 2], "closed": [2], "prior": 0.5, "strength": 1, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": ["r1"], "prior": 0.5, "strength": 1, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": [], "prior": 2, "strength": 0, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": ["r1"], "won": ["NaN"], "closed": ["Infinity"], "prior": 0.5, "strength": 1, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "rate", "column": "sales_rep_id", "levels": [], "prior": 0.5, "strength": 1e308, "mean": 1e308, "sd": 1e-308}]}',
	'{"features": [{"name": "a", "kind": "numeric", "derived": "nope", "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "categorical", "derived": "age_days", "levels": ["x"]}]}',
	'{"features": [{"name": "a", "kind": "numeric", "derived": "stage_ratio", "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "derived": "stage_ratio", "typical": {}, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "derived": "stage_ratio", "typical": {"Demo": -1}, "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "numeric", "derived": "stage_ratio", "typical": [1, 2], "mean": 0, "sd": 1}]}',
	'{"features": [{"name": "a", "kind": "bins", "derived": "activity_gap", "edges": [-1e308, 0, 1e308]}]}',
	'{"features": [{"name": "a", "kind": "bins", "derived": "age_days", "edges": [1]}, {"name": "a", "kind": "bins", "derived": "age_days", "edges": [1]}]}',
	'{"features": [{"name": {"deep": [[[[[[1]]]]]]}, "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 1}]}'
]) WITH ORDINALITY e
UNION ALL
-- a long name, a wide categorical (past what training takes) and one past what a model may hold
SELECT 'jsonb'::regtype, 100, quote_literal(jsonb_build_object('features', jsonb_build_array(jsonb_build_object(
	'name', repeat('n', 100000), 'kind', 'numeric', 'column', 'deal_amount', 'mean', 0, 'sd', 1)))) || '::jsonb'
UNION ALL
SELECT 'jsonb'::regtype, 101, quote_literal(jsonb_build_object('features', jsonb_build_array(jsonb_build_object(
	'name', 'wide', 'kind', 'categorical', 'column', 'industry',
	'levels', (SELECT jsonb_agg('l' || i) FROM generate_series(1, 5000) i))))) || '::jsonb'
UNION ALL
SELECT 'jsonb'::regtype, 102, quote_literal(jsonb_build_object('features', jsonb_build_array(jsonb_build_object(
	'name', 'too_wide', 'kind', 'bins', 'column', 'deal_amount',
	'edges', (SELECT jsonb_agg(i) FROM generate_series(1, 100001) i))))) || '::jsonb';

-- the tails a VARIADIC "any" argument gets: the base is the row of d as the
-- training passes send it (see dealrisk._row_args); each tail comes with
-- the row type and column names it is sent with
CREATE TEMP TABLE fz_tail (ord int, expr text);
INSERT INTO fz_tail
SELECT 1, dealrisk._row_args('fz_deals', spec) FROM fz_spec
UNION ALL
SELECT 1 + ordinality, e FROM unnest(ARRAY[
	$$'fz_deals'::regtype, NULL::text[], d$$,
	$$'fz_deals'::regtype, NULL::text[], NULL::fz_deals$$,
	$$'fz_deals'::regtype, NULL::text[], ROW(1, 'x')$$,
	$$'fz_deals'::regtype, '{deal_amount}'::text[], NULL::numeric$$,
	$$'fz_deals'::regtype, '{deal_amount}'::text[], 'Infinity'::numeric$$,
	$$'fz_deals'::regtype, '{deal_amount}'::text[], 'NaN'::float8$$,
	$$'fz_deals'::regtype, '{deal_amount,industry}'::text[], d.deal_amount$$,
	$$'fz_deals'::regtype, '{deal_amount}'::text[], d.deal_amount, d.industry, d.outcome$$,
	$$'fz_deals'::regtype, '{industry,deal_amount}'::text[], d.deal_amount, d.industry$$,
	$$'fz_deals'::regtype, '{nope}'::text[], 1$$,
	$$'fz_deals'::regtype, '{outcome}'::text[], 42$$,
	$$'fz_deals'::regtype, '{deal_amount}'::text[], VARIADIC ARRAY[1, 2]$$,
	$$'int4'::regtype, '{deal_amount}'::text[], d.deal_amount$$,
	$$'int4'::regtype, NULL::text[], d$$,
	$$NULL::regtype, NULL::text[], d$$,
	$$'record'::regtype, NULL::text[], ROW(1, 2)$$,
	$$'fz_bad'::regtype, NULL::text[], (SELECT b FROM fz_bad b WHERE deal_id = 'b1')$$,
	$$'pg_class'::regtype, NULL::text[], (SELECT c FROM pg_class c LIMIT 1)$$
]) WITH ORDINALITY e;

-- the C functions and aggregates of the extension, and the argument
-- lists that reach past their argument checks (generic ones otherwise)
CREATE TEMP TABLE fz_fn AS
SELECT p.oid, p.oid::regprocedure::text AS sig, p.proname::text AS name, p.prokind,
	coalesce((SELECT array_agg(t::regtype ORDER BY o) FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(t, o)),
	         '{}') AS argtypes,
	p.provariadic <> 0 AS variadic, p.proretset
FROM pg_proc p
WHERE p.pronamespace = 'dealrisk'::regnamespace
  AND (p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c') OR p.prokind = 'a');

CREATE TEMP TABLE fz_base (name text, nargs int, args text[]);
INSERT INTO fz_base VALUES
	('_irls_solve', 3, ARRAY['''{10,10,-5,1,2.5}''::float8[]', '''{0}''::float8[]', '1::float8']),
	('_irls_decrement', 4, ARRAY['''{10,10,-5,1,2.5}''::float8[]', '''{0}''::float8[]', '''{0.1}''::float8[]', '1::float8']),
	('_eval_final', 1, ARRAY[$$array_cat(ARRAY[2, 1, 1, 0.5, 1]::float8[], array_fill(0::float8, ARRAY[6000]))$$]),
	('_win_rate_ci_level_final', 1, ARRAY['''{1,2,0.9}''::float8[]']),
	('_win_rate_amount_final', 1, ARRAY['''{1,2,2}''::float8[]']),
	('_stage_funnel_final', 1, ARRAY['array_fill(1::bigint, ARRAY[15])']),
	('_win_rate_final', 1, ARRAY['''{1,2}''::bigint[]']),
	('_win_rate_ci_final', 1, ARRAY['''{1,2}''::bigint[]']),
	('_late_stage_loss_final', 1, ARRAY['''{1,2}''::bigint[]']),
	('wilson_interval', 3, ARRAY['3::bigint', '10::bigint', '0.95::float8']),
	('two_proportion_p', 4, ARRAY['3::bigint', '10::bigint', '4::bigint', '10::bigint']),
	('welch_p', 6, ARRAY['1::float8', '1::float8', '10::bigint', '2::float8', '1::float8', '10::bigint']),
	('hash_uniform', 3, ARRAY['1::bigint', '2::bigint', '3']),
	('deal_risk', 1, ARRAY['d']),
	('deal_risk', 2, ARRAY['d', '''fz''::text']),
	('deal_risk_explain', 2, ARRAY['d', '''fz''::text']),
	('recommended_action', 2, ARRAY['d', '''fz''::text']),
	('_deal_risk_row', 1, ARRAY['''fz''::text']),
	-- aggregates: per-row arguments from the deals
	('win_rate', 1, ARRAY['dealrisk.is_won(d.outcome)']),
	('win_rate', 2, ARRAY['dealrisk.is_won(d.outcome)', 'd.deal_amount']),
	('win_rate_ci', 1, ARRAY['dealrisk.is_won(d.outcome)']),
	('win_rate_ci', 2, ARRAY['dealrisk.is_won(d.outcome)', '0.9::float8']),
	('stage_funnel', 2, ARRAY['d.deal_stage', 'dealrisk.is_won(d.outcome)']),
	('late_stage_loss_ratio', 2, ARRAY['d.deal_stage', 'dealrisk.is_won(d.outcome)']),
	('_irls_pass', 6, (SELECT ARRAY[quote_literal(spec) || '::jsonb', 'NULL::float8[]', '0', 'NULL::date',
		'''2024-12-31''::date', '365::float8'] FROM fz_spec)),
	('_evaluate', 4, (SELECT ARRAY[quote_literal(spec) || '::jsonb',
		'''{0.1,0.2,-0.3,0,0,0.1,-0.1,0.2,0,0.7,0.1,0,-0.2,0.3,0.4,-0.5}''::float8[]', '0', 'NULL::date'] FROM fz_spec));

-- every call and its outcome: ok, NaN (a NaN in the result) or the SQLSTATE
CREATE TEMP TABLE fz_result (sig text, call text, outcome text, message text);

-- Run one call in a subtransaction and record what it did.
CREATE FUNCTION pg_temp.fz_run(sig text, call text, src text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	r text;
	st text;
	msg text;
BEGIN
	EXECUTE format('SELECT string_agg(x::text, %L) FROM (SELECT (%s) AS x FROM %s) s', '|', call, src) INTO r;
	INSERT INTO fz_result VALUES (sig, call,
		CASE WHEN r ~* '(^|[^a-z])nan([^a-z]|$)' THEN 'NaN' ELSE 'ok' END, left(r, 200));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
	INSERT INTO fz_result VALUES (sig, call, st, msg);
END
$$;

-- The argument lists of one function: its base, then each argument in
-- turn replaced by every hostile value of its type (for VARIADIC "any",
-- the row type, column names and values are replaced together).
CREATE FUNCTION pg_temp.fz_arglists(f fz_fn) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	nfixed int := cardinality(f.argtypes) - CASE WHEN f.variadic THEN 3 ELSE 0 END;
	base text[];
	tailbase text;
	pos int;
	v text;
BEGIN
	IF f.variadic AND f.argtypes[cardinality(f.argtypes)] <> '"any"'::regtype THEN
		nfixed := cardinality(f.argtypes);	-- a typed variadic: treat as fixed
	END IF;
	SELECT args INTO base FROM fz_base b WHERE b.name = f.name AND b.nargs = nfixed;
	IF base IS NULL OR cardinality(base) <> nfixed THEN
		base := ARRAY(SELECT coalesce((SELECT expr FROM fz_pool p WHERE p.typ = f.argtypes[i] AND p.ord = 1),
		                              'NULL::' || f.argtypes[i]::text)
		              FROM generate_series(1, nfixed) i);
	END IF;
	tailbase := CASE WHEN nfixed < cardinality(f.argtypes) THEN (SELECT expr FROM fz_tail WHERE ord = 1) END;
	RETURN NEXT array_to_string(base || tailbase, ', ');
	FOR pos IN 1 .. nfixed LOOP
		FOR v IN SELECT expr FROM fz_pool p WHERE p.typ = f.argtypes[pos] AND p.ord > 1 ORDER BY ord LOOP
			RETURN NEXT array_to_string(base[1:pos - 1] || v || base[pos + 1:] || tailbase, ', ');
		END LOOP;
	END LOOP;
	IF tailbase IS NOT NULL THEN
		FOR v IN SELECT expr FROM fz_tail WHERE ord > 1 ORDER BY ord LOOP
			RETURN NEXT array_to_string(base || v, ', ');
		END LOOP;
	END IF;
	-- all NULL
	IF nfixed > 0 THEN
		RETURN NEXT array_to_string(array_fill('NULL'::text, ARRAY[nfixed])
			|| CASE WHEN tailbase IS NOT NULL THEN 'NULL::regtype, NULL::text[], NULL'::text END, ', ');
	END IF;
END
$$;

-- 1. every C function, called directly (aggregates' own functions included)
DO $$
DECLARE
	f fz_fn;
	a text;
BEGIN
	FOR f IN SELECT * FROM fz_fn WHERE prokind = 'f' ORDER BY sig LOOP
		FOR a IN SELECT * FROM pg_temp.fz_arglists(f) LOOP
			PERFORM pg_temp.fz_run(f.sig, format('dealrisk.%I(%s)', f.name, a),
				'fz_deals d WHERE d.deal_id = (SELECT min(deal_id) FROM fz_deals)');
		END LOOP;
	END LOOP;
END
$$;

-- 2. every aggregate over the deals (and over the hostile rows) with its
-- arguments replaced the same way
DO $$
DECLARE
	f fz_fn;
	a text;
	tail_deals text := (SELECT expr FROM fz_tail WHERE ord = 1);
	tail_bad text := (SELECT dealrisk._row_args('fz_bad', spec) FROM fz_spec);
BEGIN
	FOR f IN SELECT * FROM fz_fn WHERE prokind = 'a' ORDER BY sig LOOP
		FOR a IN SELECT * FROM pg_temp.fz_arglists(f) LOOP
			PERFORM pg_temp.fz_run(f.sig, format('dealrisk.%I(%s)', f.name, a), 'fz_deals d');
		END LOOP;
		FOR a IN SELECT * FROM pg_temp.fz_arglists(f) LIMIT 1 LOOP
			PERFORM pg_temp.fz_run(f.sig, format('dealrisk.%I(%s)', f.name, replace(a, tail_deals, tail_bad)),
				'fz_bad d');
		END LOOP;
	END LOOP;
END
$$;

-- 3. the transition, moving-aggregate and combine functions inside
-- aggregates that start from hostile states, and the final functions fed a
-- hostile state by a combine function
CREATE TEMP TABLE fz_state (typ regtype, lit text);
INSERT INTO fz_state
SELECT 'float8[]'::regtype, e FROM unnest(ARRAY['{}', '{0}', '{0,0,0}', '{1,2,0.9}', '{5,2,0.9}', '{NaN,NaN,NaN}',
	'{Infinity,Infinity,0.5}', '{-1,-1,-1}', '{1,NULL,1}', '{{1,2},{3,4}}', '[3:5]={0,0,0}',
	'{1e308,1e308,1e308}', '{0,0,0,0,0}']) e
UNION ALL
SELECT 'float8[]'::regtype, array_fill(x, ARRAY[n])::text FROM (VALUES (0::float8, 6005), ('NaN', 6005), (-1, 6005),
	(0, 155), ('Infinity', 155), (0, 65535)) v(x, n)
UNION ALL
SELECT 'bigint[]'::regtype, e FROM unnest(ARRAY['{}', '{0}', '{0,0}', '{5,2}', '{-1,2}', '{1,NULL}', '{{1,2},{3,4}}',
	'[0:1]={0,0}', '{9223372036854775807,9223372036854775807}', '{0,0,0}']) e
UNION ALL
SELECT 'bigint[]'::regtype, array_fill(x, ARRAY[n])::text FROM (VALUES (0::bigint, 15), (-1, 15),
	(9223372036854775807, 15), (0, 16)) v(x, n);

DO $$
DECLARE
	ag record;
	st fz_state;
	f fz_fn;
	a text;
	kind text;
	n int := 0;
BEGIN
	-- transition and inverse functions with hostile initial states (and none)
	FOR ag IN
		SELECT DISTINCT ON (sfn) a.aggfnoid, sfn, a.aggtranstype::regtype AS stype, p.proname::text AS aggname
		FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
		CROSS JOIN LATERAL (VALUES (a.aggtransfn), (a.aggmtransfn), (a.aggminvtransfn)) s(sfn)
		WHERE p.pronamespace = 'dealrisk'::regnamespace AND sfn <> 0
		ORDER BY sfn
	LOOP
		SELECT * INTO f FROM fz_fn WHERE oid = ag.aggfnoid;
		SELECT x INTO a FROM pg_temp.fz_arglists(f) x LIMIT 1;
		FOR st IN SELECT * FROM fz_state WHERE typ = ag.stype UNION ALL SELECT ag.stype, NULL LOOP
			n := n + 1;
			BEGIN
				EXECUTE format('CREATE AGGREGATE pg_temp.fz_agg_%s(%s) (SFUNC = %s, STYPE = %s%s)',
					n, pg_get_function_identity_arguments(ag.aggfnoid), ag.sfn::regproc, ag.stype,
					CASE WHEN st.lit IS NOT NULL THEN format(', INITCOND = %L', st.lit) ELSE '' END);
			EXCEPTION WHEN invalid_function_definition THEN
				CONTINUE;		-- a strict function needs an initial state
			END;
			-- the result is the state itself: "state " marks it (NaN in, NaN out)
			PERFORM pg_temp.fz_run('state ' || ag.sfn::regproc::text, format('pg_temp.fz_agg_%s(%s)', n, a), 'fz_deals d');
		END LOOP;
	END LOOP;

	-- combine functions as transition functions over hostile states, and
	-- final functions fed a hostile state through them
	FOR ag IN
		SELECT DISTINCT a.aggcombinefn, a.aggfinalfn, a.aggtranstype::regtype AS stype, a.agginitval
		FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
		WHERE p.pronamespace = 'dealrisk'::regnamespace AND a.aggcombinefn <> 0
	LOOP
		n := n + 1;
		kind := CASE WHEN ag.aggfinalfn = 0 THEN 'state ' ELSE '' END;
		EXECUTE format('CREATE AGGREGATE pg_temp.fz_agg_%s(%s) (SFUNC = %s, STYPE = %s, INITCOND = %L%s)',
			n, ag.stype, ag.aggcombinefn::regproc, ag.stype, ag.agginitval,
			CASE WHEN ag.aggfinalfn <> 0 THEN ', FINALFUNC = ' || ag.aggfinalfn::regproc::text ELSE '' END);
		FOR st IN SELECT * FROM fz_state WHERE typ = ag.stype LOOP
			PERFORM pg_temp.fz_run(kind || ag.aggcombinefn::regproc::text,
				format('pg_temp.fz_agg_%s(x::%s)', n, ag.stype), format('(VALUES (%L)) v(x)', st.lit));
			PERFORM pg_temp.fz_run(kind || ag.aggcombinefn::regproc::text,
				format('pg_temp.fz_agg_%s(x::%s)', n, ag.stype), format('(VALUES (%L), (%L)) v(x)', st.lit, st.lit));
		END LOOP;
		PERFORM pg_temp.fz_run(kind || ag.aggcombinefn::regproc::text, format('pg_temp.fz_agg_%s(x::%s)', n, ag.stype),
			format('(SELECT lit FROM fz_state WHERE typ = %L) v(x)', ag.stype));
	END LOOP;
END
$$;

SELECT cmp_ok((SELECT count(*) FROM fz_result), '>', 1500::bigint, 'the fuzz made its calls');
SELECT is((SELECT count(DISTINCT sig) FROM fz_result WHERE call LIKE 'dealrisk.%'),
	(SELECT count(*) FROM fz_fn), 'every C function and aggregate was called');
SELECT cmp_ok((SELECT count(*) FROM fz_result WHERE outcome = 'ok'), '>', 300::bigint, 'many calls succeed');
-- (a text result that echoes the text 'NaN' it was given, as _stage_key
-- does, is not a NaN number)
SELECT is_empty($$SELECT sig, call, message FROM fz_result WHERE outcome = 'NaN' AND sig NOT LIKE 'state %'
	AND NOT (call LIKE '%''NaN''::text%'
	         AND (SELECT p.prorettype FROM pg_proc p WHERE p.oid = to_regprocedure(sig)) = 'text'::regtype)$$,
	'no call returns NaN (but a state made from a NaN state, or text echoing ''NaN'')');
SELECT is_empty($$SELECT sig, call, outcome, message FROM fz_result WHERE outcome LIKE 'XX%'$$,
	'no call fails with an internal error');

-- 4. forced parallel plans: partial states from workers are combined
CREATE TABLE fz_big AS SELECT * FROM dealrisk.sample_deals(20000, 11);
ALTER TABLE fz_big DROP COLUMN planted_win_prob;
UPDATE fz_big SET deal_amount = CASE WHEN random() < 0.5 THEN 'Infinity'::numeric ELSE 'NaN' END,
	created_date = 'infinity', last_activity_date = '-infinity'
WHERE deal_id IN (SELECT deal_id FROM fz_big ORDER BY deal_id LIMIT 50);
ANALYZE fz_big;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_leader_participation = off;

CREATE FUNCTION pg_temp.fz_plan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	l text;
	r text := '';
BEGIN
	FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
		r := r || l || E'\n';
	END LOOP;
	RETURN r;
END
$$;
SELECT matches(pg_temp.fz_plan($$SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM fz_big$$),
	'Partial Aggregate', 'aggregates run in parallel workers');
SELECT matches(pg_temp.fz_plan(format('SELECT dealrisk._irls_pass(%s::jsonb, NULL, 0, NULL, NULL, 0, %s) FROM fz_big d',
	quote_literal(spec), dealrisk._row_args('fz_big', spec))) , 'Partial Aggregate', 'training passes run in parallel workers')
FROM fz_spec;

CREATE TEMP TABLE fz_par (q text, outcome text, message text);
DO $$
DECLARE
	q text;
	spec jsonb := (SELECT spec FROM fz_spec);
	st text;
	msg text;
BEGIN
	FOR q IN SELECT unnest(ARRAY[
		'SELECT dealrisk.win_rate(dealrisk.is_won(outcome))::text FROM fz_big',
		'SELECT dealrisk.win_rate_ci(dealrisk.is_won(outcome))::text FROM fz_big',
		'SELECT dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.9)::text FROM fz_big',
		'SELECT dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount)::text FROM fz_big',
		'SELECT dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount)::text FROM fz_big WHERE deal_amount < 1e12',
		'SELECT dealrisk.win_rate_ci(dealrisk.is_won(outcome), CASE WHEN hashtext(deal_id) % 2 = 0 THEN 0.9 ELSE 0.8 END)::text FROM fz_big',
		'SELECT dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome))::text FROM fz_big',
		'SELECT dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome))::text FROM fz_big',
		'SELECT string_agg(r::text, '','') FROM (SELECT region, dealrisk.win_rate(dealrisk.is_won(outcome)) r FROM fz_big GROUP BY region) s',
		format('SELECT dealrisk._irls_pass(%L::jsonb, NULL, 0, NULL, NULL, 0, %s)::text FROM fz_big d',
			spec, dealrisk._row_args('fz_big', spec)),
		format('SELECT dealrisk._irls_pass(%L::jsonb, NULL, 1, ''2024-06-30'', ''2024-12-31'', 365, %s)::text FROM fz_big d',
			spec, dealrisk._row_args('fz_big', spec)),
		format('SELECT dealrisk._evaluate(%L::jsonb, (SELECT coefficients FROM dealrisk.models WHERE name = ''fz''), 0, NULL, %s)::text FROM fz_big d',
			spec, dealrisk._row_args('fz_big', spec)),
		format('SELECT dealrisk._irls_pass(%L::jsonb, NULL, 0, NULL, NULL, 0, ''fz_big''::regtype, NULL, d)::text FROM fz_big d',
			spec),
		'SELECT sum(dealrisk.deal_risk(d, ''fz''))::text FROM fz_big d',
		'SELECT count(dealrisk.recommended_action(d, ''fz''))::text FROM fz_big d',
		'SELECT count(*)::text FROM fz_big d, dealrisk.deal_risk_explain(d, ''fz'')',
		'SELECT (dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = ''fz''), ''fz_big''))::text'
	]) LOOP
		BEGIN
			EXECUTE q INTO msg;
			INSERT INTO fz_par VALUES (q, CASE WHEN msg ~* '(^|[^a-z])nan([^a-z]|$)' THEN 'NaN' ELSE 'ok' END, left(msg, 200));
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
			INSERT INTO fz_par VALUES (q, st, msg);
		END;
	END LOOP;
END
$$;
SELECT is((SELECT count(*) FROM fz_par), 17::bigint, 'the parallel queries ran');
SELECT is_empty($$SELECT q, outcome, message FROM fz_par WHERE outcome = 'NaN' OR outcome LIKE 'XX%'$$,
	'parallel queries return no NaN and no internal error');
SELECT is((SELECT outcome FROM fz_par WHERE q LIKE '%win_rate(dealrisk.is_won(outcome), deal_amount)::text FROM fz_big'),
	'22023', 'an infinite amount found by a worker is an error');
SELECT is((SELECT outcome FROM fz_par WHERE q LIKE '%THEN 0.9 ELSE 0.8%'), '22023',
	'a level that changes within a group is an error in parallel too');
SELECT is((SELECT outcome FROM fz_par WHERE q LIKE '%dealrisk._evaluate(%'), 'ok',
	'the evaluation pass scores deals with infinite amounts');

-- 5. the server is still up, and wrote no crash to its log while this ran
SELECT ok((SELECT count(*) FROM pg_stat_activity WHERE pid = pg_backend_pid()) = 1, 'the server is still up');
SELECT CASE WHEN size IS NULL THEN skip('the server log is not where the harness puts it', 1)
	ELSE unalike(pg_read_file(path, size, (pg_stat_file(path)).size - size), '%terminated ' || 'by signal%',
		'the server log shows no crash')
	END
FROM fz_log_at;

SELECT * FROM finish();
ROLLBACK;
