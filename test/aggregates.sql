-- pgTAP: behaviour and bad input of the win-rate and funnel aggregates.
\ir harness/pgtap_setup.psql
SELECT plan(36);

CREATE TEMP TABLE t (stage text, outcome text, amount numeric, level float8);
INSERT INTO t VALUES
	('Qualified', 'Lost', 100, 0.9), ('Demo', 'Lost', 200, 0.9),
	('Proposal', 'Lost', 300, 0.9), ('Closed', 'Won', 400, 0.9),
	('Closed', 'Won', 600, 0.9), ('Demo', NULL, 50, 0.9),
	('negotiation', 'Lost', NULL, 0.9);

SELECT is((SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM t), 2 / 6.0::float8, 'open deals are ignored');
SELECT is((SELECT dealrisk.win_rate(dealrisk.is_won(outcome), amount) FROM t), 1000 / 1600.0::float8,
	'value-weighted rate skips NULL amounts and open deals');
SELECT is((SELECT (dealrisk.win_rate_ci(dealrisk.is_won(outcome), level)).level FROM t), 0.9::float8, 'level is kept');
SELECT is((SELECT dealrisk.late_stage_loss_ratio(stage, dealrisk.is_won(outcome)) FROM t), 0.5::float8,
	'2 of 4 losses are late (Proposal, Negotiation)');
SELECT is((SELECT (e->>'open_here')::int FROM jsonb_array_elements(
	(SELECT dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) FROM t)) e WHERE e->>'stage' = 'Demo'),
	1, 'open deals are counted where they stand');
SELECT is((SELECT (e->>'reached')::int FROM jsonb_array_elements(
	(SELECT dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) FROM t)) e WHERE e->>'stage' = 'Proposal'),
	4, 'reached counts closed deals at or past a stage');
SELECT is((SELECT (e->>'conversion_to_next')::float8 FROM jsonb_array_elements(
	(SELECT dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) FROM t)) e WHERE e->>'stage' = 'Qualified'),
	5 / 6.0::float8, 'conversion to the next stage');

-- bad input
SELECT throws_ok($$SELECT dealrisk.win_rate_ci(true, 1.5)$$, '22023',
	'confidence level must be between 0 and 1 exclusive, got 1.5', 'level out of range');
SELECT throws_ok($$SELECT dealrisk.win_rate_ci(x, l) FROM (VALUES (true, 0.9), (false, 0.8)) v(x, l)$$,
	'22023', 'confidence level changed within a group: 0.9 then 0.8', 'level must be constant');
SELECT throws_ok($$SELECT dealrisk.win_rate(true, -5::numeric)$$, '22023',
	'deal amount must be a finite non-negative number, got -5', 'negative amount names the value');
SELECT throws_ok($$SELECT dealrisk.win_rate(true, 'NaN'::numeric)$$, '22023',
	'deal amount is NaN', 'NaN amount');
SELECT throws_ok($$SELECT dealrisk.stage_funnel(s, true) FROM (VALUES ('Demo'), ('Pitch')) v(s)$$,
	'22023', 'unknown deal stage "Pitch"', 'unknown stage in the funnel');
SELECT throws_ok($$SELECT dealrisk.late_stage_loss_ratio('Nowhere', false)$$,
	'22023', 'unknown deal stage "Nowhere"', 'unknown stage in the late-stage ratio');
SELECT throws_ok($$SELECT dealrisk.win_rate(dealrisk.is_won(o)) FROM (VALUES ('Won'), ('Stalled')) v(o)$$,
	'22023', 'unknown outcome label "Stalled"', 'unknown outcome inside an aggregate');
SELECT throws_ok($$SELECT dealrisk._win_rate_accum('{0,0}', true)$$, '0A000',
	'win_rate_accum called in non-aggregate context', 'transition functions refuse direct calls');
SELECT throws_ok($$SELECT dealrisk._win_rate_final('{1,2,3}')$$, '22000',
	'invalid win_rate state array', 'a state of the wrong length is rejected');
SELECT throws_ok($$SELECT dealrisk._win_rate_final('{1,NULL}')$$, '22000',
	'invalid win_rate state array', 'a state with NULLs is rejected');
SELECT throws_ok($$SELECT dealrisk._win_rate_final('{{1,2},{3,4}}')$$, '22000',
	'invalid win_rate state array', 'a two-dimensional state is rejected');
SELECT throws_ok($$SELECT dealrisk._stage_funnel_final('{1,2}')$$, '22000',
	'invalid stage_funnel state array', 'a funnel state that does not match the stages is rejected');

SELECT is((SELECT dealrisk.stage_funnel(s, w)->0->>'reached' FROM (VALUES ('Demo', true), ('  ', false), (NULL, false)) v(s, w)),
	'1', 'blank and NULL stages are skipped alike by the funnel');
SELECT is((SELECT dealrisk.late_stage_loss_ratio(s, w) FROM (VALUES ('Proposal', false), ('', false), (NULL, false), ('Demo', false)) v(s, w)),
	0.5::float8, 'losses without a stage are left out of the late-stage ratio');
SELECT is(dealrisk.stage_position(' '), NULL, 'a blank stage has no position');
SELECT throws_ok($$SELECT dealrisk.welch_p(1, -1, 10, 2, 1, 10)$$, '22023',
	'standard deviations must be >= 0, got -1 and 1', 'welch_p rejects a negative sd');
SELECT throws_ok($$SELECT dealrisk.two_proportion_p(1, 0, 1, 1)$$, '22023',
	'success counts must lie between 0 and their totals, got 1/0 and 1/1', 'impossible counts are an error');
SELECT is(dealrisk.two_proportion_p(0, 0, 1, 1), NULL, 'two_proportion_p is NULL for an empty sample');
SELECT ok(abs(dealrisk.normal_quantile(0.975) - 1.959963984540054) < 1e-12, 'normal quantile at 0.975');

-- edge sizes
SELECT is(dealrisk._win_rate_final('{3000000000,5000000000}'), 0.6::float8, 'counts beyond 32 bits');
SELECT is((SELECT dealrisk.win_rate(i % 4 = 0) FROM generate_series(1, 1000000) i), 0.25::float8,
	'a million rows');
SELECT is((SELECT dealrisk.win_rate(x) FROM (SELECT NULL::boolean x) s), NULL, 'NULL only');

-- serial and parallel plans agree; labels set in the session reach the workers
CREATE TABLE big AS
	SELECT i, (ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation', 'Closed'])[1 + i % 5] AS stage,
	       CASE WHEN i % 7 = 0 THEN NULL WHEN i % 3 = 0 THEN 'Booked' ELSE 'Lost' END AS outcome,
	       (i % 1000)::numeric AS amount
	FROM generate_series(1, 200000) i;
ANALYZE big;
SET LOCAL dealrisk.won_labels = 'Booked';
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE serial AS
	SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) a, dealrisk.win_rate(dealrisk.is_won(outcome), amount) b,
	       dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.8) c, dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) d,
	       dealrisk.late_stage_loss_ratio(stage, dealrisk.is_won(outcome)) e FROM big;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL parallel_leader_participation = off;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r text; plan text := '';
BEGIN
	FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP plan := plan || r || E'\n'; END LOOP;
	RETURN plan;
END $f$;
SELECT matches(pg_temp.plan_of('SELECT dealrisk.win_rate(dealrisk.is_won(outcome)), dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) FROM big'),
	'Partial Aggregate', 'the forced parallel plan has a Partial Aggregate');
SELECT is((SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM big), (SELECT a FROM serial), 'parallel win_rate');
SELECT ok(abs((SELECT dealrisk.win_rate(dealrisk.is_won(outcome), amount) FROM big) - (SELECT b FROM serial)) < 1e-12,
	'parallel weighted win_rate');
SELECT is((SELECT dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.8) FROM big), (SELECT c FROM serial), 'parallel win_rate_ci');
SELECT is((SELECT dealrisk.stage_funnel(stage, dealrisk.is_won(outcome)) FROM big), (SELECT d FROM serial), 'parallel stage_funnel');
SELECT is((SELECT dealrisk.late_stage_loss_ratio(stage, dealrisk.is_won(outcome)) FROM big), (SELECT e FROM serial),
	'parallel late_stage_loss_ratio');

DELETE FROM dealrisk.stages;
SELECT throws_ok($$SELECT dealrisk.stage_funnel('Demo', true)$$, '55000', 'dealrisk.stages is empty',
	'an empty stage table is an error with a hint');

SELECT * FROM finish();
ROLLBACK;
