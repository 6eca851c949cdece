-- pgTAP: the planted scenarios of sample_scenario() (issue #13): the
-- signature, bad input, determinism, the contract's invariants, that each
-- scenario's planted change (and nothing else) shows in the data, and that
-- the diagnostics run on every scenario.
\ir harness/pgtap_setup.psql
SELECT plan(85);

-- The signatures and their properties
SELECT has_function('dealrisk', 'sample_scenario', ARRAY['text', 'bigint', 'bigint'],
	'sample_scenario(scenario, n, seed) exists');
SELECT has_function('dealrisk', 'sample_scenarios', ARRAY[]::text[], 'sample_scenarios() exists');
SELECT is((SELECT array_agg(provolatile::text || proparallel::text ORDER BY oid::regprocedure::text)
	FROM pg_proc WHERE oid IN ('dealrisk.sample_scenario(text, bigint, bigint)'::regprocedure,
		'dealrisk.sample_scenarios()'::regprocedure, 'dealrisk._sample_scenario_n(text, bigint, bigint)'::regprocedure)),
	ARRAY['is', 'is', 'is'], 'the generator, the list and the argument check are immutable and parallel safe');
SELECT is((SELECT count(*) FROM pg_proc WHERE oid IN ('dealrisk.sample_scenario(text, bigint, bigint)'::regprocedure,
		'dealrisk.sample_scenarios()'::regprocedure, 'dealrisk._sample_scenario_n(text, bigint, bigint)'::regprocedure)
	AND obj_description(oid, 'pg_proc') IS NOT NULL), 3::bigint, 'the three functions have comments');
SELECT ok(has_function_privilege('public', 'dealrisk.sample_scenario(text, bigint, bigint)', 'EXECUTE')
	AND has_function_privilege('public', 'dealrisk.sample_scenarios()', 'EXECUTE')
	AND has_function_privilege('public', 'dealrisk._sample_scenario_n(text, bigint, bigint)', 'EXECUTE'),
	'PUBLIC may run them, like sample_deals');
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r text; plan text := '';
BEGIN
	FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP plan := plan || r || E'\n'; END LOOP;
	RETURN plan;
END $f$;
SELECT unalike(pg_temp.plan_of($$SELECT * FROM dealrisk.sample_scenario('cell', 100, 1)$$), '%sample_scenario%',
	'sample_scenario is inlined into the query (no function scan of its own)');

-- The list of scenarios
SELECT is((SELECT array_agg(scenario) FROM dealrisk.sample_scenarios()),
	ARRAY['none', 'collapse', 'mix', 'two_causes', 'cell'], 'five scenarios, in this order');
SELECT is((SELECT array_agg(array_to_string(planted, ';') ORDER BY scenario) FROM dealrisk.sample_scenarios()),
	ARRAY['rate:region = APAC × lead_source = Outbound', 'rate:industry = FinTech', 'mix:lead_source = Outbound',
		  '', 'mix:lead_source = Outbound;rate:industry = FinTech'],
	'planted causes in the notation of drivers() (cell, collapse, mix, none, two_causes)');
SELECT is((SELECT planted FROM dealrisk.sample_scenarios() WHERE scenario = 'none'), '{}'::text[],
	'none plants nothing (an empty array, not NULL)');
SELECT is((SELECT count(*) FROM dealrisk.sample_scenarios() WHERE planted <> ARRAY(SELECT unnest(planted) ORDER BY 1)),
	0::bigint, 'planted arrays are sorted');
SELECT is((SELECT count(*) FROM dealrisk.sample_scenarios() WHERE coalesce(description, '') = ''), 0::bigint,
	'every scenario has a description');

-- Bad input
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario('bogus')$$, '22023',
	'sample scenario must be one of none, collapse, mix, two_causes, cell, got ''bogus''',
	'an unknown scenario is an error listing the valid names');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario('None')$$, '22023',
	'sample scenario must be one of none, collapse, mix, two_causes, cell, got ''None''',
	'scenario names are matched exactly');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario(NULL)$$, '22023',
	'sample scenario must be one of none, collapse, mix, two_causes, cell, got NULL', 'a NULL scenario is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario('none', 0)$$, '22023',
	'number of sample deals must be at least 1, got 0', 'n = 0 is an error naming the value');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario('mix', NULL)$$, '22023',
	'number of sample deals must be at least 1, got NULL', 'a NULL n is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_scenario('mix', 10, NULL)$$, '22023',
	'seed of the sample deals must not be NULL', 'a NULL seed is an error');
SELECT throws_ok($$SELECT * FROM (VALUES ('none'), ('nope')) v(s), LATERAL dealrisk.sample_scenario(v.s, 3) x$$, '22023',
	'sample scenario must be one of none, collapse, mix, two_causes, cell, got ''nope''',
	'a scenario from a column is checked at run time too');

-- Sizes, and the one deal of 2024-06-30
SELECT is((SELECT count(*) FROM dealrisk.sample_scenario('none')), 10000::bigint, 'default n is 10000 rows');
SELECT is((SELECT (deal_id, created_date, closed_date, sales_cycle_days) FROM dealrisk.sample_scenario('collapse', 1, 99)),
	('D0000001'::text, DATE '2024-06-30', DATE '2024-06-30', 0), 'n = 1: one deal, created and closed on 2024-06-30');
SELECT is((SELECT count(*) FROM dealrisk.sample_scenario('two_causes', 1234, 5)), 1234::bigint, 'n rows exactly');

-- Determinism
CREATE FUNCTION pg_temp.digest(sc text, n bigint, seed bigint) RETURNS text LANGUAGE sql AS $f$
	SELECT md5(string_agg(s::text, E'\n' ORDER BY s.deal_id)) FROM dealrisk.sample_scenario(sc, n, seed) s
$f$;
SELECT is(pg_temp.digest('two_causes', 3000, 7), pg_temp.digest('two_causes', 3000, 7), 'same arguments, same rows');
SELECT isnt(pg_temp.digest('two_causes', 3000, 7), pg_temp.digest('two_causes', 3000, 8), 'another seed, other rows');
SELECT set_eq($$SELECT * FROM dealrisk.sample_scenario('cell', 1000, 3)$$,
	$$SELECT * FROM dealrisk.sample_scenario('cell', 3000, 3) WHERE deal_id <= 'D0001000'$$,
	'the first 1000 rows do not depend on n');
CREATE ROLE sc_t_nobody;
-- (docs/security.md: a reader needs USAGE on the schema; nothing else)
GRANT USAGE ON SCHEMA dealrisk TO sc_t_nobody;
SET LOCAL ROLE sc_t_nobody;
CREATE TEMP TABLE by_nobody AS SELECT md5(string_agg(s::text, E'\n' ORDER BY s.deal_id)) AS digest
	FROM dealrisk.sample_scenario('two_causes', 500, 2) s;
RESET ROLE;
SELECT is((SELECT digest FROM by_nobody), pg_temp.digest('two_causes', 500, 2),
	'a role without privileges gets the same rows');

-- Generated in a parallel worker: the same rows
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL parallel_leader_participation = off;
DO $$BEGIN PERFORM set_config(name, 'on', true) FROM pg_settings
	WHERE name IN ('force_parallel_mode', 'debug_parallel_query'); END$$;
SELECT matches(pg_temp.plan_of($$SELECT * FROM dealrisk.sample_scenario('two_causes', 3000, 7)$$), 'Gather',
	'the forced parallel plan generates the rows in a worker');
CREATE TABLE par_rows AS SELECT * FROM dealrisk.sample_scenario('two_causes', 3000, 7);
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET parallel_leader_participation;
DO $$BEGIN PERFORM set_config(name, 'off', true) FROM pg_settings
	WHERE name IN ('force_parallel_mode', 'debug_parallel_query'); END$$;
SELECT is((SELECT md5(string_agg(s::text, E'\n' ORDER BY s.deal_id)) FROM par_rows s),
	pg_temp.digest('two_causes', 3000, 7), 'rows generated by a parallel worker are the serial ones');

-- All five scenarios of seed 1, as the drivers tests use them
CREATE TEMP TABLE sc AS
	SELECT s.scenario, d.*, d.closed_date >= DATE '2024-04-01' AS q2
	FROM dealrisk.sample_scenarios() s, LATERAL dealrisk.sample_scenario(s.scenario, 10000, 1) d;
ANALYZE sc;
-- the scenarios share their draws: a scenario's rows are those of none
-- except where it changes something
SELECT is((SELECT count(*) FROM sc a JOIN sc b USING (deal_id)
	WHERE a.scenario = 'none' AND b.scenario <> 'none' AND NOT a.q2
	  AND (a.created_date, a.closed_date, a.sales_rep_id, a.industry, a.region, a.product_type, a.lead_source,
		   a.deal_stage, a.deal_amount, a.sales_cycle_days, a.outcome, a.planted_win_prob)
	   IS DISTINCT FROM (b.created_date, b.closed_date, b.sales_rep_id, b.industry, b.region, b.product_type, b.lead_source,
		   b.deal_stage, b.deal_amount, b.sales_cycle_days, b.outcome, b.planted_win_prob)),
	0::bigint, 'Q1-2024 is the same in every scenario');
SELECT is((SELECT count(*) FROM sc a JOIN sc b USING (deal_id)
	WHERE a.scenario = 'none' AND b.scenario IN ('collapse', 'cell')
	  AND (a.created_date, a.closed_date, a.sales_rep_id, a.industry, a.region, a.product_type, a.lead_source, a.deal_amount)
	   IS DISTINCT FROM (b.created_date, b.closed_date, b.sales_rep_id, b.industry, b.region, b.product_type, b.lead_source, b.deal_amount)),
	0::bigint, 'collapse and cell change no attribute of a deal, only its win probability');

-- The contract's invariants, on the 50,000 rows
SELECT is((SELECT count(*) FROM sc), 50000::bigint, '5 x 10000 rows');
SELECT is((SELECT count(*) FROM (SELECT DISTINCT scenario, deal_id FROM sc) x), 50000::bigint, 'deal ids are unique per scenario');
SELECT is((SELECT count(*) FROM sc WHERE deal_id IS NULL OR created_date IS NULL OR closed_date IS NULL
	OR sales_rep_id IS NULL OR industry IS NULL OR region IS NULL OR product_type IS NULL OR lead_source IS NULL
	OR deal_stage IS NULL OR deal_amount IS NULL OR sales_cycle_days IS NULL OR outcome IS NULL
	OR planted_win_prob IS NULL), 0::bigint, 'no column is NULL: every deal is closed');
SELECT is((SELECT (min(closed_date), max(closed_date)) FROM sc), (DATE '2024-01-01', DATE '2024-06-30'),
	'closed dates span 2024-01-01 .. 2024-06-30');
SELECT is((SELECT count(*) FROM sc WHERE sales_cycle_days <> closed_date - created_date OR sales_cycle_days < 0
	OR sales_cycle_days > 365), 0::bigint, 'sales_cycle_days = closed_date - created_date, 0 .. 365 days');
SELECT ok((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY sales_cycle_days) FROM sc) BETWEEN 35 AND 60,
	'a plausible median cycle (35 .. 60 days)');
SELECT is((SELECT count(*) FROM sc WHERE outcome NOT IN ('Won', 'Lost')), 0::bigint, 'outcomes are Won or Lost');
SELECT is((SELECT count(*) FROM sc WHERE (deal_stage = 'Closed') <> (outcome = 'Won')), 0::bigint,
	'won deals and only they are at Closed');
SELECT is((SELECT count(*) FROM sc WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages st WHERE st.stage = sc.deal_stage)),
	0::bigint, 'every stage is in dealrisk.stages');
SELECT is((SELECT count(*) FROM sc WHERE deal_amount <= 0 OR deal_amount <> round(deal_amount)), 0::bigint,
	'amounts are positive whole units');
SELECT is((SELECT count(*) FROM sc WHERE NOT planted_win_prob > 0 OR NOT planted_win_prob < 1), 0::bigint,
	'planted_win_prob is a probability');
SELECT is((SELECT (count(DISTINCT industry), count(DISTINCT region), count(DISTINCT product_type),
	count(DISTINCT lead_source), count(DISTINCT sales_rep_id)) FROM sc), (5::bigint, 4::bigint, 3::bigint, 4::bigint, 20::bigint),
	'5 industries, 4 regions, 3 products, 4 lead sources, 20 reps');
SELECT ok((SELECT avg((outcome = 'Won')::int) FROM sc WHERE scenario = 'none') BETWEEN 0.42 AND 0.48,
	'none: the win rate is about 45%');
SELECT ok((SELECT bool_and(abs(k.wr - k.p) < 0.02) FROM (SELECT scenario, q2, avg((outcome = 'Won')::int) AS wr,
	avg(planted_win_prob) AS p FROM sc GROUP BY 1, 2) k), 'outcomes follow planted_win_prob (every scenario and quarter within 2 points)');

-- Planted exactly: the log-odds of a deal differ from none's by the planted
-- change and nothing else (collapse and cell keep every attribute)
CREATE FUNCTION pg_temp.logit(p float8) RETURNS float8 LANGUAGE sql AS $f$ SELECT ln(p / (1 - p)) $f$;
SELECT is((SELECT array_agg(DISTINCT round((pg_temp.logit(b.planted_win_prob) - pg_temp.logit(a.planted_win_prob))::numeric, 9)
		|| CASE WHEN b.q2 AND b.industry = 'FinTech' THEN ' FinTech Q2' ELSE '' END)
	FROM sc a JOIN sc b USING (deal_id) WHERE a.scenario = 'none' AND b.scenario = 'collapse'),
	ARRAY['-1.600000000 FinTech Q2', '0.000000000'], 'collapse: log-odds -1.6 for FinTech in Q2-2024, unchanged elsewhere');
SELECT is((SELECT array_agg(DISTINCT round((pg_temp.logit(b.planted_win_prob) - pg_temp.logit(a.planted_win_prob))::numeric, 9)
		|| CASE WHEN b.q2 AND b.region = 'APAC' AND b.lead_source = 'Outbound' THEN ' cell Q2' ELSE '' END)
	FROM sc a JOIN sc b USING (deal_id) WHERE a.scenario = 'none' AND b.scenario = 'cell'),
	ARRAY['-2.000000000 cell Q2', '0.000000000'], 'cell: log-odds -2.0 for APAC x Outbound in Q2-2024, unchanged elsewhere');
-- mix: a deal's log-odds depend on its attributes only (what changes is
-- how many deals are Outbound)
SELECT is((SELECT count(*) FROM (SELECT industry, region, product_type, lead_source, sales_rep_id
	FROM sc WHERE scenario IN ('none', 'mix') GROUP BY 1, 2, 3, 4, 5
	HAVING max(planted_win_prob) - min(planted_win_prob) > 1e-12) x), 0::bigint,
	'mix: the same attributes, the same win probability in both quarters');

-- Planted, as seen in the data (seed 1, n = 10,000; the expected values in
-- the comments, the bounds leave at least 2.5 standard errors)
CREATE FUNCTION pg_temp.wr(sc text, q2 boolean, cond text) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE r float8;
BEGIN
	EXECUTE 'SELECT avg((outcome = ''Won'')::int) FROM sc WHERE scenario = $1 AND q2 = $2 AND ' || cond INTO r USING sc, q2;
	RETURN r;
END $f$;
CREATE FUNCTION pg_temp.change(sc text, cond text) RETURNS float8 LANGUAGE sql AS $f$
	SELECT pg_temp.wr(sc, true, cond) - pg_temp.wr(sc, false, cond)
$f$;
CREATE FUNCTION pg_temp.share(sc text, q2 boolean, cond text) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE r float8;
BEGIN
	EXECUTE 'SELECT avg((' || cond || ')::int) FROM sc WHERE scenario = $1 AND q2 = $2' INTO r USING sc, q2;
	RETURN r;
END $f$;
-- main effects that do not change: Outbound weak, Referral strong
SELECT ok(pg_temp.wr('none', false, $$lead_source = 'Outbound'$$) < pg_temp.wr('none', false, $$lead_source <> 'Outbound'$$) - 0.12,
	'Outbound wins over 12 points less than the other sources (expected 18)');
SELECT ok(abs(pg_temp.change('none', 'true')) < 0.03, 'none: the overall win rate does not move (within 3 points)');
-- collapse
SELECT ok(pg_temp.change('collapse', $$industry = 'FinTech'$$) < -0.20,
	'collapse: FinTech falls over 20 points in Q2 (expected about 32)');
SELECT ok(abs(pg_temp.change('none', $$industry = 'FinTech'$$)) < 0.08, 'none: FinTech does not (within 8 points)');
SELECT ok(abs(pg_temp.change('collapse', $$industry <> 'FinTech'$$)) < 0.04,
	'collapse: the other industries do not move (within 4 points)');
SELECT ok(pg_temp.change('collapse', 'true') < -0.03, 'collapse: the overall win rate falls over 3 points (expected 6)');
-- mix
SELECT ok(pg_temp.share('mix', false, $$lead_source = 'Outbound'$$) BETWEEN 0.12 AND 0.18
	AND pg_temp.share('mix', true, $$lead_source = 'Outbound'$$) BETWEEN 0.41 AND 0.49,
	'mix: Outbound is about 15% of the deals in Q1, 45% in Q2');
SELECT ok(pg_temp.share('none', true, $$lead_source = 'Outbound'$$) BETWEEN 0.12 AND 0.18,
	'none: Outbound stays about 15% in Q2');
SELECT ok(abs(pg_temp.change('mix', $$lead_source = 'Outbound'$$)) < 0.08
	AND abs(pg_temp.change('mix', $$lead_source <> 'Outbound'$$)) < 0.05,
	'mix: neither Outbound''s win rate nor the others'' moves (within 8 and 5 points)');
SELECT ok(pg_temp.change('mix', 'true') < -0.03, 'mix: the overall win rate falls over 3 points (expected 5)');
-- (FinTech as a whole falls about 6 points: the shadow of the mix shift)
SELECT ok(abs(pg_temp.change('mix', $$industry = 'FinTech' AND lead_source <> 'Outbound'$$)) < 0.08,
	'mix: FinTech outside Outbound does not collapse (within 8 points)');
-- two causes
SELECT ok(pg_temp.change('two_causes', $$industry = 'FinTech' AND lead_source <> 'Outbound'$$) < -0.20
	AND pg_temp.share('two_causes', true, $$lead_source = 'Outbound'$$) BETWEEN 0.41 AND 0.49,
	'two_causes: FinTech collapses and Outbound takes 45%');
SELECT ok(abs(pg_temp.change('two_causes', $$industry <> 'FinTech' AND lead_source <> 'Outbound'$$)) < 0.05,
	'two_causes: non-FinTech deals of the other sources do not move (within 5 points)');
-- cell
SELECT ok(pg_temp.change('cell', $$region = 'APAC' AND lead_source = 'Outbound'$$) < -0.10,
	'cell: APAC x Outbound falls over 10 points (expected about 22)');
SELECT ok(abs(pg_temp.change('none', $$region = 'APAC' AND lead_source = 'Outbound'$$)) < 0.12,
	'none: APAC x Outbound does not (within 12 points, on about 170 deals a quarter)');
SELECT ok(abs(pg_temp.change('cell', $$region = 'APAC' AND lead_source <> 'Outbound'$$)) < 0.06,
	'cell: APAC outside Outbound does not move (within 6 points)');
SELECT ok(abs(pg_temp.change('cell', $$region <> 'APAC' AND lead_source = 'Outbound'$$)) < 0.08,
	'cell: Outbound outside APAC does not move (within 8 points)');

-- The diagnostics run on every scenario: the windows are Q2 vs Q1-2024,
-- check_source finds nothing wrong and diagnose() completes
DO $$
DECLARE s text;
BEGIN
	FOR s IN SELECT scenario FROM dealrisk.sample_scenarios() LOOP
		EXECUTE format('CREATE TABLE public.%I AS SELECT * FROM dealrisk.sample_scenario(%L, 10000, 1)', 'sc_' || s, s);
		EXECUTE format('ALTER TABLE public.%I ADD PRIMARY KEY (deal_id)', 'sc_' || s);
	END LOOP;
END $$;
SELECT is((SELECT array_agg(DISTINCT (w.recent, w.baseline)::text) FROM dealrisk.sample_scenarios() s,
	LATERAL dealrisk._default_windows(('public.sc_' || s.scenario)::regclass) w),
	ARRAY['("[2024-04-01,2024-07-01)","[2024-01-01,2024-04-01)")'],
	'the default windows are Q2-2024 (recent) and Q1-2024 (baseline) in every scenario');
SELECT is((SELECT string_agg(s.scenario || ': ' || c.finding, '; ') FROM dealrisk.sample_scenarios() s,
	LATERAL dealrisk.check_source(('public.sc_' || s.scenario)::regclass) c WHERE c.severity IN ('error', 'warning')),
	NULL, 'check_source reports no error or warning on any scenario');
SELECT is((SELECT string_agg(s.scenario, ', ') FROM dealrisk.sample_scenarios() s,
	LATERAL dealrisk.diagnose(('public.sc_' || s.scenario)::regclass) d
	WHERE d NOT LIKE 'Win-rate diagnosis of public.sc_%Q2-2024 vs Q1-2024%'), NULL,
	'diagnose() runs on every scenario and compares Q2-2024 with Q1-2024');
SELECT alike(dealrisk.diagnose('public.sc_none'), '%The win rate % from Q1-2024 to Q2-2024 %within noise%',
	'none: diagnose() finds the overall change within noise');

-- drivers() names exactly the planted causes, nothing else (issue #13,
-- item 4): every scenario, seeds 1, 2 and 3 (chosen before any result was
-- seen), 10,000 deals each.  The causes are its rows of kind rate, mix and
-- overall, as kind:driver; the planted ones are sorted the same way.
-- Seed 2 names more than the planted causes in four scenarios; it is kept
-- (not replaced by a luckier seed) and its exact answer is asserted:
-- its data holds two chance changes, FinTech -7.8 points in every scenario
-- (p = 1.0e-4 .. 1.6e-4 among 488 candidates: q = 0.078 in none, but
-- ranked second behind a real cause it passes Benjamini-Hochberg at
-- q = 0.026 .. 0.032), and product_type = Core x rep_20 (its non-FinTech
-- deals 49% -> 27%; with the FinTech collapse on top, q = 0.006).  The
-- false discovery rate is the stated 5%; over seeds 1 .. 50
-- (test/bench/drivers_fdr.sh, docs/diagnostics.md) drivers() names exactly
-- the planted set in 47 or 48 of 50 per scenario and never misses one.
DO $$
DECLARE s text; k int;
BEGIN
	FOR s, k IN SELECT x.scenario, g FROM dealrisk.sample_scenarios() x, generate_series(1, 3) g LOOP
		EXECUTE format('CREATE TABLE public.%I AS SELECT * FROM dealrisk.sample_scenario(%L, 10000, %s)',
			'drv_' || s || '_' || k, s, k);
	END LOOP;
END $$;
CREATE TEMP TABLE drv AS
	SELECT s.scenario, g AS seed, d.*
	FROM dealrisk.sample_scenarios() s, generate_series(1, 3) g,
		 LATERAL dealrisk.drivers(format('public.%I', 'drv_' || s.scenario || '_' || g)::regclass) d;
CREATE FUNCTION pg_temp.named(sc text, seed int) RETURNS text[] LANGUAGE sql AS $f$
	SELECT coalesce(array_agg(d.kind || ':' || d.driver ORDER BY d.kind || ':' || d.driver)
			FILTER (WHERE d.kind IN ('rate', 'mix', 'overall')), '{}')
	FROM drv d WHERE d.scenario = sc AND d.seed = named.seed
$f$;
CREATE FUNCTION pg_temp.planted(sc text) RETURNS text[] LANGUAGE sql AS $f$
	SELECT ARRAY(SELECT unnest(s.planted) ORDER BY 1) FROM dealrisk.sample_scenarios() s WHERE s.scenario = sc
$f$;
CREATE FUNCTION pg_temp.label(sc text, seed int) RETURNS text LANGUAGE sql AS $f$
	SELECT format('%s, seed %s: drivers() names exactly %s', sc, seed,
		coalesce(nullif(array_to_string(pg_temp.planted(sc), ' and '), ''), 'no cause'))
$f$;
SELECT is(pg_temp.named('none', 1), pg_temp.planted('none'), pg_temp.label('none', 1));
SELECT is(pg_temp.named('none', 2), pg_temp.planted('none'), pg_temp.label('none', 2));
SELECT is(pg_temp.named('none', 3), pg_temp.planted('none'), pg_temp.label('none', 3));
SELECT is(pg_temp.named('collapse', 1), pg_temp.planted('collapse'), pg_temp.label('collapse', 1));
SELECT is(pg_temp.named('collapse', 2), '{"rate:industry = FinTech","rate:product_type = Core × sales_rep_id = rep_20"}'::text[],
	'collapse, seed 2: the planted causes, plus the chance changes seed 2''s data holds (see above): false discoveries at the stated rate, pinned so that a change of behaviour shows');
SELECT is(pg_temp.named('collapse', 3), pg_temp.planted('collapse'), pg_temp.label('collapse', 3));
SELECT is(pg_temp.named('mix', 1), pg_temp.planted('mix'), pg_temp.label('mix', 1));
SELECT is(pg_temp.named('mix', 2), '{"mix:lead_source = Outbound","rate:industry = FinTech"}'::text[],
	'mix, seed 2: the planted causes, plus the chance changes seed 2''s data holds (see above): false discoveries at the stated rate, pinned so that a change of behaviour shows');
SELECT is(pg_temp.named('mix', 3), pg_temp.planted('mix'), pg_temp.label('mix', 3));
SELECT is(pg_temp.named('two_causes', 1), pg_temp.planted('two_causes'), pg_temp.label('two_causes', 1));
SELECT is(pg_temp.named('two_causes', 2), '{"mix:lead_source = Outbound","rate:industry = FinTech","rate:product_type = Core × sales_rep_id = rep_20"}'::text[],
	'two_causes, seed 2: the planted causes, plus the chance changes seed 2''s data holds (see above): false discoveries at the stated rate, pinned so that a change of behaviour shows');
SELECT is(pg_temp.named('two_causes', 3), pg_temp.planted('two_causes'), pg_temp.label('two_causes', 3));
SELECT is(pg_temp.named('cell', 1), pg_temp.planted('cell'), pg_temp.label('cell', 1));
SELECT is(pg_temp.named('cell', 2), '{"rate:industry = FinTech","rate:region = APAC × lead_source = Outbound"}'::text[],
	'cell, seed 2: the planted causes, plus the chance changes seed 2''s data holds (see above): false discoveries at the stated rate, pinned so that a change of behaviour shows');
SELECT is(pg_temp.named('cell', 3), pg_temp.planted('cell'), pg_temp.label('cell', 3));
SELECT is((SELECT string_agg(format('%s seed %s misses %s', x.scenario, x.seed, p), '; ')
	FROM (SELECT DISTINCT scenario, seed FROM drv) x, unnest(pg_temp.planted(x.scenario)) p
	WHERE p <> ALL (pg_temp.named(x.scenario, x.seed))), NULL,
	'drivers() misses no planted cause in any of the 15 runs');
SELECT is((SELECT count(*) FROM (SELECT scenario, seed FROM drv GROUP BY 1, 2
	HAVING count(*) FILTER (WHERE kind = 'total') = 1 AND count(*) FILTER (WHERE kind = 'remainder') = 1
	   AND count(*) FILTER (WHERE kind IN ('rate', 'mix', 'overall')) = count(rank)) x), 15::bigint,
	'every run has one total row, one remainder row, and a rank for each cause');
SELECT is((SELECT count(*) FROM (SELECT scenario, seed FROM drv GROUP BY 1, 2
	HAVING abs(sum(contribution) FILTER (WHERE kind <> 'total') - sum(contribution) FILTER (WHERE kind = 'total')) > 1e-12) x),
	0::bigint, 'the causes and the remainder add up to the total change');

SELECT * FROM finish();
ROLLBACK;
