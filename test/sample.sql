-- pgTAP: the sample-deal generator: determinism, the data contract's
-- invariants, bad input, and the planted effects of docs/sample-data.md.
\ir harness/pgtap_setup.psql
SELECT plan(70);

-- The signature and its properties
SELECT has_function('dealrisk', 'sample_deals', ARRAY['bigint', 'bigint'], 'sample_deals(n, seed) exists');
SELECT volatility_is('dealrisk', 'sample_deals', ARRAY['bigint', 'bigint'], 'immutable',
	'sample_deals is immutable: its rows depend on (n, seed) only');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'dealrisk.sample_deals(bigint, bigint)'::regprocedure),
	's'::"char", 'sample_deals is parallel safe');
SELECT isnt(obj_description('dealrisk.sample_deals(bigint, bigint)'::regprocedure, 'pg_proc'), NULL,
	'sample_deals has a comment');

CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE r text; plan text := '';
BEGIN
	FOR r IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP plan := plan || r || E'\n'; END LOOP;
	RETURN plan;
END $f$;
SELECT unalike(pg_temp.plan_of('SELECT * FROM dealrisk.sample_deals(100, 1)'), '%sample_deals%',
	'sample_deals is inlined into the query (no function scan of its own)');

-- Sizes and ids
SELECT is((SELECT count(*) FROM dealrisk.sample_deals()), 5000::bigint, 'default n is 5000 rows');
SELECT is((SELECT count(*) FROM dealrisk.sample_deals(1)), 1::bigint, 'n = 1 gives one row');
SELECT is((SELECT deal_id FROM dealrisk.sample_deals(1)), 'D0000001', 'deal ids are D and 7 digits');
SELECT is((SELECT count(*) FROM dealrisk.sample_deals(1234, 5)), 1234::bigint, 'n rows exactly');
SELECT is((SELECT max(deal_id) FROM dealrisk.sample_deals(1234, 5)), 'D0001234', 'the last id is D || n');

-- Bad input
SELECT throws_ok($$SELECT * FROM dealrisk.sample_deals(0)$$, '22023',
	'number of sample deals must be at least 1, got 0', 'n = 0 is an error naming the value');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_deals(-5, 1)$$, '22023',
	'number of sample deals must be at least 1, got -5', 'negative n is an error naming the value');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_deals(NULL)$$, '22023',
	'number of sample deals must be at least 1, got NULL', 'NULL n is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.sample_deals(10, NULL)$$, '22023',
	'seed of the sample deals must not be NULL', 'NULL seed is an error');
SELECT throws_ok($$SELECT * FROM (VALUES (3), (0)) v(k), LATERAL dealrisk.sample_deals(v.k) s$$, '22023',
	'number of sample deals must be at least 1, got 0', 'n from a column is checked at run time too');

-- Determinism: same seed same rows; another seed other rows; a row depends
-- only on (seed, row number), not on n or on the other rows
CREATE FUNCTION pg_temp.digest(n bigint, seed bigint) RETURNS text LANGUAGE sql AS $f$
	SELECT md5(string_agg(s::text, E'\n' ORDER BY s.deal_id)) FROM dealrisk.sample_deals(n, seed) s
$f$;
SELECT is(pg_temp.digest(3000, 42), pg_temp.digest(3000, 42), 'same seed, same rows');
SELECT isnt(pg_temp.digest(3000, 42), pg_temp.digest(3000, 43), 'another seed, other rows');
SELECT is((SELECT count(*) FROM dealrisk.sample_deals(3000, 42) a JOIN dealrisk.sample_deals(3000, 43) b
	ON a.created_date = b.created_date AND a.sales_rep_id = b.sales_rep_id AND a.deal_amount = b.deal_amount
	AND a.deal_id = b.deal_id), 0::bigint, 'no row of seed 42 is repeated under seed 43');
SELECT set_eq($$SELECT * FROM dealrisk.sample_deals(1000, 42)$$,
	$$SELECT * FROM dealrisk.sample_deals(3000, 42) WHERE deal_id <= 'D0001000'$$,
	'the first 1000 rows do not depend on n');
SELECT is((SELECT s::text FROM dealrisk.sample_deals(3000, 42) s WHERE deal_id = 'D0002345'),
	(SELECT s::text FROM (SELECT * FROM dealrisk.sample_deals(3000, 42) ORDER BY deal_id OFFSET 2344 LIMIT 1) s),
	'a filtered row is the same row');

-- Serial and parallel: the same rows, generated and aggregated either way
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TABLE sd_serial AS SELECT * FROM dealrisk.sample_deals(20000, 42);
CREATE TEMP TABLE serial_digest AS
	SELECT md5(string_agg(s::text, E'\n' ORDER BY deal_id)) AS digest,
	       dealrisk.win_rate(dealrisk.is_won(outcome)) AS win_rate,
	       sum(deal_amount) AS amount, sum(sales_cycle_days) AS days
	FROM sd_serial s;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL parallel_leader_participation = off;
-- force_parallel_mode in PostgreSQL 15, debug_parallel_query from 16
DO $$BEGIN PERFORM set_config(name, 'on', true) FROM pg_settings
	WHERE name IN ('force_parallel_mode', 'debug_parallel_query'); END$$;
SELECT matches(pg_temp.plan_of('SELECT * FROM dealrisk.sample_deals(20000, 42)'), 'Gather',
	'the forced parallel plan generates the rows in a worker');
CREATE TABLE sd_parallel AS SELECT * FROM dealrisk.sample_deals(20000, 42);
SELECT is((SELECT md5(string_agg(s::text, E'\n' ORDER BY deal_id)) FROM sd_parallel s),
	(SELECT digest FROM serial_digest), 'rows generated by a parallel worker are the same');
ANALYZE sd_serial;
SELECT matches(pg_temp.plan_of('SELECT dealrisk.win_rate(dealrisk.is_won(outcome)), sum(deal_amount) FROM sd_serial'),
	'Partial Aggregate', 'the forced parallel aggregate is partial');
SELECT is((SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM sd_serial),
	(SELECT win_rate FROM serial_digest), 'parallel win rate over the rows is the serial one');
SELECT is((SELECT (sum(deal_amount), sum(sales_cycle_days)) FROM sd_serial),
	(SELECT (amount, days) FROM serial_digest), 'parallel sums over the rows are the serial ones');
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET parallel_leader_participation;
DO $$BEGIN PERFORM set_config(name, 'off', true) FROM pg_settings
	WHERE name IN ('force_parallel_mode', 'debug_parallel_query'); END$$;

-- The data contract's invariants, on 20,000 deals
CREATE TEMP TABLE sd AS SELECT * FROM sd_serial;
SELECT is((SELECT count(*) FROM sd), 20000::bigint, '20000 rows');
SELECT is((SELECT count(DISTINCT deal_id) FROM sd), 20000::bigint, 'deal ids are unique');
SELECT is((SELECT count(*) FROM sd WHERE deal_id !~ '^D[0-9]{7}$'), 0::bigint, 'deal ids are D and 7 digits');
SELECT is((SELECT count(*) FROM sd WHERE deal_id IS NULL OR created_date IS NULL OR sales_rep_id IS NULL
	OR industry IS NULL OR region IS NULL OR product_type IS NULL OR lead_source IS NULL
	OR deal_stage IS NULL OR deal_amount IS NULL OR last_activity_date IS NULL
	OR stage_entered_date IS NULL OR planted_win_prob IS NULL), 0::bigint,
	'only closed_date, sales_cycle_days and outcome may be NULL');
SELECT is((SELECT (min(created_date), max(created_date)) FROM sd),
	(DATE '2023-01-01', DATE '2024-12-31'), 'created dates span 2023-01-01 .. 2024-12-31');
SELECT is((SELECT count(*) FROM sd WHERE closed_date < created_date OR closed_date > DATE '2024-12-31'),
	0::bigint, 'closed between creation and the as-of date 2024-12-31');
SELECT is((SELECT count(*) FROM sd WHERE sales_cycle_days IS DISTINCT FROM closed_date - created_date),
	0::bigint, 'sales_cycle_days = closed_date - created_date (both NULL when open)');
SELECT is((SELECT count(*) FROM sd WHERE (outcome IS NULL) <> (closed_date IS NULL)), 0::bigint,
	'open deals (no outcome) and only they have no closed_date');
SELECT is((SELECT count(*) FROM sd WHERE outcome NOT IN ('Won', 'Lost')), 0::bigint, 'outcomes are Won or Lost');
SELECT is((SELECT count(*) FROM sd WHERE (deal_stage = 'Closed') <> coalesce(outcome = 'Won', false)),
	0::bigint, 'won deals and only they are at Closed');
SELECT is((SELECT count(*) FROM sd WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages st WHERE st.stage = sd.deal_stage)),
	0::bigint, 'every stage is in dealrisk.stages');
SELECT is((SELECT count(*) FROM sd WHERE deal_amount <= 0 OR deal_amount <> round(deal_amount)), 0::bigint,
	'amounts are positive whole units');
SELECT is((SELECT count(*) FROM sd WHERE last_activity_date < created_date
	OR last_activity_date > coalesce(closed_date, DATE '2024-12-31')), 0::bigint,
	'last activity between creation and the close (or as-of date)');
SELECT is((SELECT count(*) FROM sd WHERE stage_entered_date < created_date
	OR stage_entered_date > coalesce(closed_date, DATE '2024-12-31')), 0::bigint,
	'stage entered between creation and the close (or as-of date)');
SELECT is((SELECT count(*) FROM sd WHERE outcome = 'Won' AND stage_entered_date <> closed_date), 0::bigint,
	'won deals enter Closed on their close date');
SELECT is((SELECT count(*) FROM sd WHERE NOT planted_win_prob > 0 OR NOT planted_win_prob < 1), 0::bigint,
	'planted_win_prob is a probability');
SELECT set_eq($$SELECT DISTINCT industry FROM sd$$,
	ARRAY['SaaS', 'FinTech', 'HealthTech', 'EdTech', 'Ecommerce'], 'the five industries');
SELECT set_eq($$SELECT DISTINCT region FROM sd$$,
	ARRAY['North America', 'Europe', 'APAC', 'India'], 'the four regions');
SELECT set_eq($$SELECT DISTINCT product_type FROM sd$$, ARRAY['Core', 'Pro', 'Enterprise'], 'the three products');
SELECT set_eq($$SELECT DISTINCT lead_source FROM sd$$,
	ARRAY['Inbound', 'Referral', 'Partner', 'Outbound'], 'the four lead sources');
SELECT set_eq($$SELECT DISTINCT sales_rep_id FROM sd$$,
	$$SELECT 'rep_' || k FROM generate_series(1, 28) k$$, 'reps rep_1 .. rep_28');
SELECT is((SELECT count(*) FROM sd WHERE sales_rep_id IN ('rep_26', 'rep_27', 'rep_28')
	AND created_date < DATE '2024-10-01'), 0::bigint, 'the new reps start in Q4-2024');
SELECT ok((SELECT bool_and(n BETWEEN 20 AND 100) FROM
	(SELECT count(outcome) AS n FROM sd WHERE sales_rep_id IN ('rep_26', 'rep_27', 'rep_28') GROUP BY sales_rep_id) x),
	'the new reps have few closed deals (cold start)');
SELECT is((SELECT array_agg(stage ORDER BY age) FROM
	(SELECT deal_stage AS stage, avg(DATE '2024-12-31' - created_date) AS age FROM sd
	 WHERE outcome IS NULL GROUP BY deal_stage) x),
	ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation'],
	'open deals: the older, the later their stage on average');
SELECT cmp_ok((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY deal_amount) FROM sd WHERE product_type = 'Enterprise'),
	'>', 3 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY deal_amount) FROM sd WHERE product_type = 'Core'),
	'Enterprise deals are larger (median over 3x Core)');

-- The planted effects, seen in the raw data with plain SQL
CREATE FUNCTION pg_temp.wr(q text) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE r float8;
BEGIN
	EXECUTE 'SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM sd WHERE ' || q INTO r;
	RETURN r;
END $f$;
SELECT ok(pg_temp.wr('true') BETWEEN 0.45 AND 0.50, 'the overall win rate is 45-50%');
SELECT ok(abs(pg_temp.wr('true') - (SELECT avg(planted_win_prob) FROM sd WHERE outcome IS NOT NULL)) < 0.02,
	'outcomes follow planted_win_prob (mean within 2 points)');
SELECT ok(pg_temp.wr($$closed_date >= '2024-10-01'$$) < pg_temp.wr($$closed_date BETWEEN '2024-01-01' AND '2024-06-30'$$) - 0.08,
	'the win rate drops by over 8 points in Q4-2024 against H1-2024');
-- 1. FinTech collapse in Q4-2024
SELECT ok(pg_temp.wr($$industry = 'FinTech' AND closed_date >= '2024-10-01'$$)
	< pg_temp.wr($$industry = 'FinTech' AND closed_date BETWEEN '2024-07-01' AND '2024-09-30'$$) - 0.15,
	'FinTech: Q4-2024 win rate over 15 points below Q3-2024');
SELECT ok(abs(pg_temp.wr($$industry = 'FinTech' AND closed_date < '2024-10-01'$$)
	- pg_temp.wr($$industry <> 'FinTech' AND closed_date < '2024-10-01'$$)) < 0.03,
	'FinTech: average before Q4-2024 (within 3 points of the others)');
-- 2. Mix shift to Outbound
SELECT ok((SELECT avg((lead_source = 'Outbound')::int) FROM sd WHERE closed_date >= '2024-10-01')
	> (SELECT avg((lead_source = 'Outbound')::int) FROM sd WHERE closed_date BETWEEN '2024-07-01' AND '2024-09-30') + 0.15,
	'Outbound: share of Q4-2024 closings over 15 points above Q3-2024');
SELECT ok((SELECT avg((lead_source = 'Outbound')::int) FROM sd WHERE created_date >= '2024-08-01') BETWEEN 0.42 AND 0.48
	AND (SELECT avg((lead_source = 'Outbound')::int) FROM sd WHERE created_date < '2024-08-01') BETWEEN 0.13 AND 0.17,
	'Outbound: about 15% of deals created before 2024-08-01, 45% after');
SELECT ok(pg_temp.wr($$lead_source = 'Outbound'$$) < pg_temp.wr($$lead_source <> 'Outbound'$$) - 0.10,
	'Outbound: win rate over 10 points below the other sources');
-- 3. Slow deals lose more and end early; very short ones a little worse
SELECT ok(pg_temp.wr('sales_cycle_days > 90') < pg_temp.wr('sales_cycle_days BETWEEN 7 AND 90') - 0.10,
	'cycles over 90 days: win rate over 10 points lower');
SELECT ok(pg_temp.wr('sales_cycle_days < 7') < pg_temp.wr('sales_cycle_days BETWEEN 7 AND 28') - 0.03,
	'cycles under 7 days: win rate lower than 7-28 days');
SELECT ok((SELECT avg((deal_stage IN ('Qualified', 'Demo'))::int) FROM sd WHERE outcome = 'Lost' AND sales_cycle_days > 90) > 0.70
	AND (SELECT avg((deal_stage IN ('Qualified', 'Demo'))::int) FROM sd WHERE outcome = 'Lost' AND sales_cycle_days <= 90) < 0.55,
	'slow lost deals end at Qualified or Demo (over 70%, against under 55% for the others)');
SELECT ok((SELECT dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome)) FROM sd
		WHERE product_type = 'Enterprise' AND sales_cycle_days <= 90)
	> (SELECT dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome)) FROM sd
		WHERE product_type <> 'Enterprise' AND sales_cycle_days <= 90) + 0.10,
	'Enterprise deals lose later (late-stage loss ratio over 10 points higher)');
SELECT lives_ok($$SELECT dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)) FROM sd$$,
	'the stage funnel accepts every row');
-- 4. Weak and strong reps
SELECT ok(pg_temp.wr($$sales_rep_id = 'rep_7'$$) < pg_temp.wr('true') - 0.10, 'rep_7: over 10 points below overall');
SELECT ok(pg_temp.wr($$sales_rep_id = 'rep_3'$$) > pg_temp.wr('true') + 0.07, 'rep_3: over 7 points above overall');
-- 5. Stale CRM
SELECT ok(pg_temp.wr($$coalesce(closed_date, '2024-12-31') - last_activity_date > 21$$)
	< pg_temp.wr($$coalesce(closed_date, '2024-12-31') - last_activity_date <= 21$$) - 0.15,
	'stale deals (no activity for over 21 days before the close) win over 15 points less');
SELECT ok((SELECT avg((closed_date - last_activity_date > 21)::int) FROM sd WHERE outcome = 'Lost')
	> 1.5 * (SELECT avg((closed_date - last_activity_date > 21)::int) FROM sd WHERE outcome = 'Won'),
	'stale deals are more common among lost deals');
-- 6. Cycles getting longer
SELECT cmp_ok((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY sales_cycle_days) FROM sd WHERE closed_date >= '2024-10-01'),
	'>', 1.1 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY sales_cycle_days) FROM sd
		WHERE closed_date BETWEEN '2023-10-01' AND '2023-12-31'),
	'median cycle of Q4-2024 closings over 10% above Q4-2023');
SELECT cmp_ok((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY sales_cycle_days) FROM sd
		WHERE created_date BETWEEN '2024-06-01' AND '2024-07-31'),
	'>', 1.15 * (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY sales_cycle_days) FROM sd
		WHERE created_date BETWEEN '2024-01-01' AND '2024-02-29'),
	'deals created from 2024-06-01 take over 15% longer (both cohorts fully closed)');
-- No effect planted for region
SELECT ok((SELECT max(w) - min(w) FROM (SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) w FROM sd GROUP BY region) x) < 0.04,
	'regions: no planted effect (win rates within 4 points)');

SELECT * FROM finish();
ROLLBACK;
