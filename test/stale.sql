-- pgTAP: wrong or stale answers from the backend's caches.  The model a
-- score uses must be the one dealrisk.models shows as active in the same
-- snapshot (a repeatable read transaction keeps its model, the next
-- transaction and the next read committed statement see a new one), and the
-- model id written beside a score must be that model's.  Call sites that
-- live for a transaction (PL/pgSQL) must notice a new model name, row type,
-- column list, stage table, action rule or as-of date.  A row reader is
-- kept per row type, a few per call site, not one more per change of type.
-- Non-finite numbers count as missing in training, scoring, explanation and
-- evaluation; a risk is never NaN.  The C code's queries are immune to
-- operators, functions and types planted earlier in the search_path.
--
-- Like ops_live.sql this file commits (schema stale, models named stale_*)
-- so that a second session (dblink) sees them, and removes them at the end,
-- also after a failed test.
\set QUIET 1
\set ON_ERROR_STOP 0
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
SET max_parallel_workers_per_gather = 0;

SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'dblink') AS own_dblink \gset
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dblink;

-- Removes what this file commits, also what a failed earlier run left.
CREATE FUNCTION pg_temp.stale_cleanup() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	DELETE FROM dealrisk.models WHERE name LIKE 'stale\_%';
	DROP SCHEMA IF EXISTS stale CASCADE;
	DROP SCHEMA IF EXISTS stale_evil CASCADE;
END
$$;
SELECT pg_temp.stale_cleanup() IS NULL AS cleaned \gset

-- A connection string for a second session to this database.
CREATE FUNCTION pg_temp.conninfo() RETURNS text
LANGUAGE sql AS $$
	SELECT pg_catalog.format('host=''%s'' port=%s dbname=''%s'' user=''%s''',
		replace(coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''), 'localhost'), '''', '\'''),
		current_setting('port'), replace(current_database(), '''', '\'''), replace(current_user, '''', '\'''))
$$;

SELECT plan(46);

-- Setup, committed ----------------------------------------------------------

CREATE SCHEMA stale;
CREATE TABLE stale.deals (deal_id text PRIMARY KEY, deal_amount numeric, created_date date, outcome text);
INSERT INTO stale.deals VALUES
	('S1', 2, '2024-01-01', NULL),
	('S-inf', 'Infinity', '2024-01-01', NULL),
	('S-minf', '-Infinity', '2024-01-01', NULL),
	('S-nan', 'NaN', '2024-01-01', NULL),
	('S-null', NULL, '2024-01-01', NULL),
	('S-huge', 1e308, '2024-01-01', NULL);
-- A model of one numeric feature (deal_amount, standardised with mean 0 and
-- sd) with the given intercept and slope: risk = 100 * (1 - logistic(b0 + b1 * x / sd)).
CREATE FUNCTION stale.model(name text, b0 float8, b1 float8, sd float8 DEFAULT 1, active boolean DEFAULT true)
RETURNS bigint LANGUAGE sql AS $$
	INSERT INTO dealrisk.models (name, feature_spec, coefficients, active)
	VALUES (name, pg_catalog.jsonb_build_object('features', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
	        'name', 'amount', 'kind', 'numeric', 'column', 'deal_amount', 'mean', 0, 'sd', sd))),
	        ARRAY[b0, b1], active)
	RETURNING id
$$;
-- risk of the deals above, as a constant model gives it
CREATE FUNCTION stale.risk(b0 float8) RETURNS float8 LANGUAGE sql AS $$ SELECT 100 * (1 - 1 / (1 + exp(-b0))) $$;
-- the C function behind the dealrisk._scoring_model() the SQL is to get
CREATE FUNCTION stale.scoring_model(text) RETURNS bigint
	AS '$libdir/dealrisk', 'dr_scoring_model_id' LANGUAGE C STABLE STRICT;
SELECT stale.model('stale_a', 0, 0) AS model_a \gset
SELECT stale.model('stale_b', ln(3), 0) AS model_b \gset
SELECT stale.model('stale_c', -ln(3), 0) AS model_c \gset
SELECT stale.model('stale_slope', 0, 1) AS model_slope \gset
SELECT stale.model('stale_rr', 0, 0) AS rr_a \gset
SELECT stale.model('stale_rr', ln(3), 0, 1, false) AS rr_b \gset
SELECT stale.model('stale_rc', 0, 0) AS rc_a \gset
SELECT stale.model('stale_rc', ln(3), 0, 1, false) AS rc_b \gset
SELECT stale.model('stale_zero', 0, 0, 0.5) AS model_zero \gset
INSERT INTO dealrisk.models (name, feature_spec, coefficients, active) VALUES
	('stale_bins', '{"features": [{"name": "amount", "kind": "bins", "column": "deal_amount", "edges": [10]}]}', '{0, 0, 1}', true),
	('stale_age', '{"features": [{"name": "age", "kind": "bins", "derived": "age_days", "edges": [100]}]}', '{0, 0, 1}', true);

-- PL/pgSQL call sites live for the transaction ------------------------------

CREATE FUNCTION stale.risk_of(d stale.deals, m text) RETURNS float8
LANGUAGE plpgsql AS $$ BEGIN RETURN dealrisk.deal_risk(d, m); END $$;
CREATE FUNCTION stale.action_of(d stale.deals, m text) RETURNS text
LANGUAGE plpgsql AS $$ BEGIN RETURN dealrisk.recommended_action(d, m); END $$;
CREATE FUNCTION stale.effect_of(d stale.deals, m text) RETURNS float8
LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT e.effect FROM dealrisk.deal_risk_explain(d, m) e); END $$;
CREATE FUNCTION stale.row_risk(m text, cols text[], a numeric, b numeric) RETURNS float8
LANGUAGE plpgsql AS $$ BEGIN RETURN dealrisk._deal_risk_row(m, 'stale.deals'::regtype, cols, a, b); END $$;

SELECT is((SELECT array_agg(round(stale.risk_of(d, v.m)::numeric, 6) ORDER BY v.ord)
	FROM (VALUES (1, 'stale_a'), (2, 'stale_b'), (3, 'stale_a')) v(ord, m), stale.deals d WHERE d.deal_id = 'S1'),
	ARRAY[round(stale.risk(0)::numeric, 6), round(stale.risk(ln(3))::numeric, 6), round(stale.risk(0)::numeric, 6)],
	'a model name passed as a PL/pgSQL parameter is not taken for a constant');
SELECT is((SELECT array_agg(stale.action_of(d, v.m) ORDER BY v.ord)
	FROM (VALUES (1, 'stale_a'), (2, 'stale_c')) v(ord, m), stale.deals d WHERE d.deal_id = 'S1'),
	ARRAY['On track: keep the next step on the calendar', 'Review the deal with the sales manager this week'],
	'... in recommended_action');
SELECT ok((SELECT array_agg(sign(stale.effect_of(d, v.m)) ORDER BY v.ord)
	FROM (VALUES (1, 'stale_slope'), (2, 'stale_a')) v(ord, m), stale.deals d WHERE d.deal_id = 'S1') = ARRAY[-1, 0]::float8[],
	'... in deal_risk_explain');
SELECT is((SELECT array_agg(round(stale.row_risk(v.m, v.cols, v.a, v.b)::numeric, 6) ORDER BY v.ord)
	FROM (VALUES (1, 'stale_slope', '{deal_amount,x}'::text[], 2, 0), (2, 'stale_slope', '{x,deal_amount}', 0, 2),
	             (3, 'stale_a', '{x,deal_amount}', 0, 2)) v(ord, m, cols, a, b)),
	ARRAY[round(stale.risk(2)::numeric, 6), round(stale.risk(2)::numeric, 6), round(stale.risk(0)::numeric, 6)],
	'a row passed as values: column names and model name passed as parameters are compared on each call');

-- stages and action rules edited in the transaction
\set pos_before '0'
\set pos_after 'NULL'
\set pos_sub 'NULL'
\set pos_rolled_back 'NULL'
\set action_before 'none'
\set action_after 'none'
BEGIN;
CREATE FUNCTION pg_temp.stage_pos(s text) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN dealrisk.stage_position(s); END $$;
SELECT pg_temp.stage_pos('Qualified') AS pos_before \gset
UPDATE dealrisk.stages SET position = position + 1000 WHERE stage = 'Qualified';
SELECT pg_temp.stage_pos('Qualified') AS pos_after \gset
SAVEPOINT s;
UPDATE dealrisk.stages SET position = position + 1000 WHERE stage = 'Qualified';
SELECT pg_temp.stage_pos('Qualified') AS pos_sub \gset
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.stage_pos('Qualified') AS pos_rolled_back \gset
SELECT stale.action_of(d, 'stale_c') AS action_before FROM stale.deals d WHERE deal_id = 'S1' \gset
UPDATE dealrisk.action_rules SET action = 'Changed in this transaction' WHERE factor = '*' AND min_risk = 60;
SELECT stale.action_of(d, 'stale_c') AS action_after FROM stale.deals d WHERE deal_id = 'S1' \gset
ROLLBACK;
SELECT is(:pos_after, :pos_before + 1000, 'a stage renumbered in the transaction is seen by a PL/pgSQL call site');
SELECT is(ARRAY[:pos_sub, :pos_rolled_back], ARRAY[:pos_before + 2000, :pos_before + 1000],
	'... and so is a change rolled back to a savepoint');
SELECT is(ARRAY[:'action_before', :'action_after'],
	ARRAY['Review the deal with the sales manager this week', 'Changed in this transaction'],
	'an action rule edited in the transaction is seen too');

-- the as-of date is compared by its text, not by where it is stored
CREATE FUNCTION stale.risk_at(d stale.deals, m text, a1 text, a2 text) RETURNS float8
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM set_config('dealrisk.as_of_date', a1, true);
	PERFORM set_config('dealrisk.as_of_date', a2, true);
	RETURN dealrisk.deal_risk(d, m);
END
$$;
SELECT is((SELECT array_agg(round(stale.risk_at(d, 'stale_age', v.a1, v.a2)::numeric, 6) ORDER BY v.ord)
	FROM (VALUES (1, '2024-02-01', '2024-02-01'), (2, '2024-03-01', '2024-12-01'), (3, '2024-06-01', '2024-02-01'),
	             (4, '2024-12-01', '2024-12-01')) v(ord, a1, a2), stale.deals d WHERE d.deal_id = 'S1'),
	ARRAY[round(stale.risk(0)::numeric, 6), round(stale.risk(1)::numeric, 6), round(stale.risk(0)::numeric, 6),
	      round(stale.risk(1)::numeric, 6)],
	'a changed dealrisk.as_of_date is seen by a call site that lives for the transaction');
SELECT throws_like($$SET dealrisk.as_of_date = 'infinity'$$, '%dealrisk.as_of_date%',
	'an infinite as-of date is refused when it is set');
RESET dealrisk.as_of_date;

-- Row types that change ------------------------------------------------------

-- the SQLSTATE a statement fails with, or 'ok'
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

\set risk_before '-1'
\set risk_readded 'NULL'
\set dropped_state 'none'
BEGIN;
CREATE TABLE stale.altered (deal_id text, deal_amount numeric, note text);
INSERT INTO stale.altered VALUES ('A1', 2, 'x');
CREATE FUNCTION pg_temp.risk_altered(d stale.altered) RETURNS float8
LANGUAGE plpgsql AS $$ BEGIN RETURN dealrisk.deal_risk(d, 'stale_slope'); END $$;
SELECT pg_temp.risk_altered(a) AS risk_before FROM stale.altered a \gset
ALTER TABLE stale.altered DROP COLUMN deal_amount;
ALTER TABLE stale.altered ADD COLUMN deal_amount numeric;
UPDATE stale.altered SET deal_amount = 2;
SELECT pg_temp.risk_altered(a) AS risk_readded FROM stale.altered a \gset
ALTER TABLE stale.altered DROP COLUMN deal_amount;
SELECT pg_temp.sqlstate_of('SELECT pg_temp.risk_altered(a) FROM stale.altered a') AS dropped_state \gset
ROLLBACK;
SELECT is(round(:risk_readded::numeric, 6), round(:risk_before::numeric, 6),
	'a column dropped and added again in the transaction is read where it now is');
SELECT is(:'dropped_state'::text, '42703', '... and a dropped column is an error, not a NULL');

CREATE TABLE stale.t1 (deal_id text, deal_amount numeric, x int);
CREATE TABLE stale.t2 (y int, deal_amount float8, deal_id text);
INSERT INTO stale.t1 VALUES ('T1', 1, 1);
INSERT INTO stale.t2 VALUES (1, 3, 'T2');
CREATE FUNCTION stale.either(i int) RETURNS record LANGUAGE plpgsql AS $$
BEGIN
	IF i % 2 = 0 THEN RETURN (SELECT a FROM stale.t1 a); END IF;
	RETURN (SELECT b FROM stale.t2 b);
END
$$;
SELECT is((SELECT array_agg(round(dealrisk.deal_risk(stale.either(i), 'stale_slope')::numeric, 6) ORDER BY i)
	FROM generate_series(1, 4) i),
	ARRAY[round(stale.risk(3)::numeric, 6), round(stale.risk(1)::numeric, 6), round(stale.risk(3)::numeric, 6),
	      round(stale.risk(1)::numeric, 6)],
	'rows of two types, alternating, each read as its type');
SELECT cmp_ok((SELECT (SELECT sum(total_bytes) FROM pg_backend_memory_contexts
	                        WHERE name LIKE 'dealrisk%' AND name NOT IN ('dealrisk model cache', 'dealrisk model'))
	FROM generate_series(1, 20000) i HAVING count(dealrisk.deal_risk(stale.either(i), 'stale_slope')) = 20000),
	'<', 262144::numeric, 'alternating row types do not make the readers grow (20000 changes of type)');

-- Non-finite numbers -----------------------------------------------------------

SELECT is((SELECT array_agg(round(dealrisk.deal_risk(d, 'stale_zero')::numeric, 6) ORDER BY deal_id)
	FROM stale.deals d WHERE deal_id IN ('S-inf', 'S-minf', 'S-nan', 'S-null')),
	array_fill(round(stale.risk(0)::numeric, 6), ARRAY[4]), 'NaN and +-Infinity score as missing (numeric feature)');
SELECT is((SELECT array_agg(round(dealrisk.deal_risk(d, 'stale_bins')::numeric, 6) ORDER BY deal_id)
	FROM stale.deals d WHERE deal_id IN ('S-inf', 'S-minf', 'S-nan', 'S-null')),
	array_fill(round(stale.risk(0)::numeric, 6), ARRAY[4]), '... and as missing in bins, not in the outer bins');
SELECT is((SELECT array_agg(e.value IS NULL AND e.reason LIKE '%missing%' ORDER BY d.deal_id)
	FROM stale.deals d, dealrisk.deal_risk_explain(d, 'stale_slope') e WHERE deal_id IN ('S-inf', 'S-nan')),
	ARRAY[true, true], '... and are explained as missing');
SELECT is((SELECT count(*) FROM stale.deals d WHERE deal_id <> 'S-huge'
	AND NOT (dealrisk.deal_risk(d, m.name) BETWEEN 0 AND 100)) , 0::bigint,
	'every risk is a number in [0, 100]') FROM (VALUES ('stale_zero'), ('stale_bins'), ('stale_slope')) m(name);
-- a finite value too large to standardise is held at the largest
-- standardised value (src/model.h, dr_standardise): a number, never NaN
SELECT is((SELECT count(*) FROM stale.deals d, (VALUES ('stale_zero'), ('stale_bins'), ('stale_slope')) m(name)
	WHERE d.deal_id = 'S-huge' AND dealrisk.deal_risk(d, m.name) BETWEEN 0 AND 100), 3::bigint,
	'a value whose standardised value overflows still scores a number in [0, 100]');

-- training and evaluation: the same deals with NULL or non-finite amounts
CREATE TABLE stale.null_deals AS SELECT * FROM dealrisk.sample_deals(2000, 21);
UPDATE stale.null_deals SET deal_amount = NULL WHERE hashtext(deal_id) % 7 = 0;
CREATE TABLE stale.inf_deals AS SELECT * FROM stale.null_deals;
UPDATE stale.inf_deals SET deal_amount = (ARRAY['Infinity', '-Infinity', 'NaN'])[1 + abs(hashtext(deal_id)) % 3]::numeric
	WHERE deal_amount IS NULL;
SET dealrisk.as_of_date = '2024-12-31';
SET client_min_messages = error;
SELECT dealrisk.train('stale.null_deals', 'stale_null', ARRAY['deal_amount', 'industry'], activate => false) AS null_model \gset
SELECT dealrisk.train('stale.inf_deals', 'stale_inf', ARRAY['deal_amount', 'industry'], activate => false) AS inf_model \gset
SET client_min_messages = warning;
SELECT ok((SELECT max(abs(a - b)) < 1e-9 FROM unnest(
	(SELECT coefficients FROM dealrisk.models WHERE id = :null_model),
	(SELECT coefficients FROM dealrisk.models WHERE id = :inf_model)) u(a, b)),
	'training treats non-finite amounts as missing: the same coefficients as with NULLs');
SELECT ok((SELECT abs(a.auc - b.auc) < 1e-9 AND abs(a.log_loss - b.log_loss) < 1e-9
	FROM dealrisk.evaluate(:null_model, 'stale.null_deals') a, dealrisk.evaluate(:null_model, 'stale.inf_deals') b),
	'evaluation too: the same metrics');
SELECT dealrisk.activate(:inf_model, force => true) IS NOT NULL AS activated \gset
SELECT is((SELECT count(*) FROM stale.inf_deals d WHERE dealrisk.deal_risk(d, 'stale_inf') IS NOT DISTINCT FROM
	(SELECT dealrisk.deal_risk(n, 'stale_inf') FROM stale.null_deals n WHERE n.deal_id = d.deal_id)),
	2000::bigint, 'scoring too: every deal scores as with a NULL amount');
RESET dealrisk.as_of_date;

-- The active model as the snapshot sees it (a second session) ---------------

SELECT dblink_connect('stale_s2', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT ok(:'connected', 'a second session over dblink');
CREATE FUNCTION pg_temp.s2(q text) RETURNS text LANGUAGE sql AS $$
	SELECT r FROM dblink('stale_s2', q) AS t(r text)
$$;
CREATE FUNCTION pg_temp.s2_exec(q text) RETURNS text LANGUAGE sql AS $$ SELECT dblink_exec('stale_s2', q) $$;
-- what the second session scores S1 with under a model name, and
-- "<model id of _active_model> <model id of the cache> <risk>"
\set risk_q 'SELECT round(dealrisk.deal_risk(d, ''stale_rr'')::numeric, 6)::text FROM stale.deals d WHERE deal_id = ''S1'''
\set score_q 'SELECT dealrisk._active_model(''stale_rr'') || '' '' || stale.scoring_model(''stale_rr'') || '' '' || round(dealrisk.deal_risk(d, ''stale_rr'')::numeric, 6) FROM stale.deals d WHERE deal_id = ''S1'''
\set rc_q 'SELECT round(dealrisk.deal_risk(d, ''stale_rc'')::numeric, 6)::text FROM stale.deals d WHERE deal_id = ''S1'''
\set rc_score_q 'SELECT dealrisk._active_model(''stale_rc'') || '' '' || stale.scoring_model(''stale_rc'') || '' '' || round(dealrisk.deal_risk(d, ''stale_rc'')::numeric, 6) FROM stale.deals d WHERE deal_id = ''S1'''
SELECT format('%s %s %s', :rr_a, :rr_a, round(stale.risk(0)::numeric, 6)) AS as_a,
       format('%s %s %s', :rr_b, :rr_b, round(stale.risk(ln(3))::numeric, 6)) AS as_b,
       format('%s %s %s', :rc_b, :rc_b, round(stale.risk(ln(3))::numeric, 6)) AS as_rc_b,
       round(stale.risk(0)::numeric, 6) AS risk_a, round(stale.risk(ln(3))::numeric, 6) AS risk_b \gset

SELECT is(pg_temp.s2_exec('BEGIN ISOLATION LEVEL REPEATABLE READ'), 'BEGIN', 'repeatable read session');
SELECT is(pg_temp.s2(:'risk_q'), :'risk_a', '... scores with the active model');
SELECT dealrisk.activate(:rr_b, force => true) IS NOT NULL AS activated \gset
SELECT is(pg_temp.s2(:'risk_q'), :'risk_a', '... keeps it after another model was activated and committed');
SELECT is(pg_temp.s2(:'score_q'), :'as_a', '... and the model id SQL and the cache give is that model''s');
SELECT is(pg_temp.s2_exec('COMMIT'), 'COMMIT', '... and commits');
SELECT is(pg_temp.s2(:'risk_q'), :'risk_b', 'its next transaction scores with the model active now');
SELECT is(pg_temp.s2(:'score_q'), :'as_b', '... and the model id SQL and the cache give is that model''s');

-- (a model of another name: the session has it cached when its transaction starts)
SELECT is(pg_temp.s2(:'rc_q'), :'risk_a', 'read committed session');
SELECT is(pg_temp.s2_exec('BEGIN'), 'BEGIN', '... in a transaction');
SELECT is(pg_temp.s2(:'rc_q'), :'risk_a', '... scores with the active model');
SELECT dealrisk.activate(:rc_b, force => true) IS NOT NULL AS activated \gset
SELECT is(pg_temp.s2(:'rc_q'), :'risk_b', '... its next statement sees the model activated in between');
SELECT is(pg_temp.s2(:'rc_score_q'), :'as_rc_b', '... and the model id SQL and the cache give is that model''s');
SELECT is(pg_temp.s2_exec('COMMIT'), 'COMMIT', '... and commits');

SELECT is(pg_temp.s2_exec('BEGIN ISOLATION LEVEL REPEATABLE READ'), 'BEGIN', 'repeatable read, a model changed by hand');
SELECT is(pg_temp.s2(:'risk_q'), :'risk_b', '... scores with it');
UPDATE dealrisk.models SET coefficients = ARRAY[0, 0] WHERE id = :rr_b;
SELECT is(pg_temp.s2(:'risk_q'), :'risk_b', '... and keeps its version for the transaction');
SELECT is(pg_temp.s2_exec('COMMIT'), 'COMMIT', '... and commits');
SELECT is(pg_temp.s2(:'risk_q'), :'risk_a', 'the next transaction scores with the edited coefficients');

-- Queries of the C code under a hostile search_path -----------------------

CREATE SCHEMA stale_evil;
CREATE FUNCTION stale_evil.always(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR stale_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = stale_evil.always);
CREATE FUNCTION stale_evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'null'::text $$;
CREATE FUNCTION stale_evil.nothing(jsonb, text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT NULL::text';
CREATE OPERATOR stale_evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = stale_evil.nothing);
CREATE DOMAIN stale_evil.float8 AS numeric;
-- a fresh session: nothing cached yet
SELECT dblink_disconnect('stale_s2') = 'OK' AS disconnected \gset
SELECT dblink_connect('stale_s2', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT is(pg_temp.s2_exec('SET search_path = stale_evil, pg_catalog, public'), 'SET', 'a session whose search_path puts planted objects first');
SELECT is(pg_temp.s2($$SELECT round(dealrisk.deal_risk(d, 'stale_b')::numeric, 6)::text FROM stale.deals d WHERE d.deal_id OPERATOR(pg_catalog.=) 'S1'$$),
	round(stale.risk(ln(3))::numeric, 6)::text, '... scores with the model of the name it asked for, parsed as stored');
SELECT is(pg_temp.s2($$SELECT dealrisk.stage_position('Qualified')::text$$),
	(SELECT position::text FROM dealrisk.stages WHERE stage = 'Qualified'), '... reads the stages');
SELECT is(pg_temp.s2($$SELECT dealrisk.recommended_action(d, 'stale_c') FROM stale.deals d WHERE d.deal_id OPERATOR(pg_catalog.=) 'S1'$$),
	'Review the deal with the sales manager this week', '... and the action rules');
SELECT dblink_disconnect('stale_s2') = 'OK' AS disconnected \gset

SELECT * FROM finish();

SELECT pg_temp.stale_cleanup() IS NULL AS cleaned \gset
\if :own_dblink
DROP EXTENSION dblink;
\endif
