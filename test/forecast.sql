-- pgTAP: dealrisk.forecast() and the distribution under it,
-- dealrisk._bernoulli_sum (issue #12): exact intervals against the
-- binomial and hand-counted outcomes, the simulation against the binomial
-- and against itself, bad input, and forecast() on the sample: totals that
-- add up, groups, the deals it cannot forecast, errors.
\ir harness/pgtap_setup.psql
SELECT plan(37);

-- 1. The distribution ------------------------------------------------------
-- two deals of 10 and 20 at even odds: 0, 10, 20, 30 each with 1/4
SELECT is((SELECT row(value_mean, value_low, value_high, wins_mean, wins_low, wins_high, method)::text
           FROM dealrisk._bernoulli_sum('{10,20}', '{0.5,0.5}', '{1,1}', 0, 0, 0.5)),
	'(15,0,20,1,0,1,exact)', 'two deals: the quartiles of their four outcomes, exactly');
-- sixteen deals of 1 at even odds: Binomial(16, 1/2), whose 5% and 95%
-- points are 5 and 11 (P(X <= 4) = 0.038, P(X <= 5) = 0.105; P(X <= 10) = 0.895, P(X <= 11) = 0.962)
SELECT is((SELECT row(wins_low, wins_high, value_low, value_high, method)::text
           FROM dealrisk._bernoulli_sum(array_fill(1::float8, ARRAY[16]), array_fill(0.5::float8, ARRAY[16]),
                                        array_fill(1::float8, ARRAY[16]), 0, 0, 0.9)),
	'(5,11,5,11,exact)', 'sixteen even deals: the binomial''s 5% and 95% points, exactly');
-- 400 deals: simulated; Binomial(400, 1/2) has its 5% and 95% points at 184 and 216
SELECT ok((SELECT wins_low BETWEEN 182 AND 186 AND wins_high BETWEEN 214 AND 218 AND wins_mean = 200
               AND method = 'simulation (10000 draws)'
           FROM dealrisk._bernoulli_sum(array_fill(1::float8, ARRAY[400]), array_fill(0.5::float8, ARRAY[400]),
                                        array_fill(1::float8, ARRAY[400]), 0, 0, 0.9)),
	'400 even deals: the simulation finds the binomial''s 5% and 95% points within 2');
SELECT is((SELECT row(s.*)::text FROM dealrisk._bernoulli_sum(array_fill(3::float8, ARRAY[300]), array_fill(0.3::float8, ARRAY[300]),
                                        array_fill(0.9::float8, ARRAY[300]), 0.2, 0.3, 0.8) s),
	(SELECT row(s.*)::text FROM dealrisk._bernoulli_sum(array_fill(3::float8, ARRAY[300]), array_fill(0.3::float8, ARRAY[300]),
                                        array_fill(0.9::float8, ARRAY[300]), 0.2, 0.3, 0.8) s),
	'the simulation is seeded: the same deals give the same interval');
SELECT ok((SELECT s.value_high - s.value_low FROM dealrisk._bernoulli_sum(array_fill(1::float8, ARRAY[400]),
               array_fill(0.5::float8, ARRAY[400]), array_fill(1::float8, ARRAY[400]), 0, 0.5, 0.9) s)
          > 2 * (SELECT s.value_high - s.value_low FROM dealrisk._bernoulli_sum(array_fill(1::float8, ARRAY[400]),
               array_fill(0.5::float8, ARRAY[400]), array_fill(1::float8, ARRAY[400]), 0, 0, 0.9) s),
	'a shared shock widens the interval');
SELECT is((SELECT row(value_mean, value_low, value_high, wins_low, wins_high)::text
           FROM dealrisk._bernoulli_sum('{7,5,100}', '{1,0,0.5}', '{1,1,0}', 0, 0, 0.9)),
	'(7,7,7,1,1)', 'certain deals count in full, impossible ones not at all');
SELECT is((SELECT row(value_mean, value_low, value_high, wins_mean, method)::text FROM dealrisk._bernoulli_sum('{}', '{}', '{}', 0, 0, 0.9)),
	'(0,0,0,0,exact)', 'no deals: nothing');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1}', '{NaN}', '{1}', 0, 0, 0.9)$$, '22003',
	'probabilities of deal 1 must be between 0 and 1, got NaN and 1', 'a NaN probability');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{Infinity}', '{0.5}', '{1}', 0, 0, 0.9)$$, '22003',
	'amount 1 is not finite: Infinity', 'an infinite amount');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1,2}', '{0.5}', '{1}', 0, 0, 0.9)$$, '2202E',
	'amounts, p_win and p_close must have the same length, got 2, 1 and 1', 'arrays of different lengths');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1}', '{0.5}', '{1}', 0, 0, 1)$$, '22023', NULL, 'a level of 1');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1}', '{0.5}', '{1}', 0, 'NaN', 0.9)$$, '22023', NULL, 'a NaN shock');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1,NULL}', '{0.5,0.5}', '{1,1}', 0, 0, 0.9)$$, '22004', NULL, 'a NULL amount');
SELECT throws_ok($$SELECT dealrisk._bernoulli_sum('{1e308,1e308}', '{1,1}', '{1,1}', 0, 0, 0.9)$$, '22003',
	'the amounts are too large to add up in double precision', 'amounts whose sum overflows');

-- 2. forecast() on the sample ---------------------------------------------
SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE SCHEMA fc_t;
CREATE TABLE fc_t.deals AS SELECT * FROM dealrisk.sample_deals(3000, 5);
SET LOCAL client_min_messages = error;
SELECT dealrisk.train('fc_t.deals', method => 'logistic') AS model_id \gset
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE fc_total AS SELECT * FROM dealrisk.forecast('fc_t.deals', target => 5000000);
CREATE TEMP TABLE fc_rep AS SELECT * FROM dealrisk.forecast('fc_t.deals', 'sales_rep_id');
SELECT is((SELECT row(count(*), bool_and(is_total), sum(open_deals), sum(pipeline_value))::text FROM fc_total),
	(SELECT row(1, true, count(*), sum(deal_amount))::text FROM fc_t.deals WHERE outcome IS NULL),
	'one total row over every open deal and its pipeline value');
SELECT ok((SELECT won_value_low <= expected_won_value AND expected_won_value <= won_value_high
               AND wins_low <= expected_wins AND expected_wins <= wins_high
               AND expected_won_value > 0 AND expected_won_value < pipeline_value FROM fc_total),
	'the expected value lies in its interval, under the pipeline value');
SELECT is((SELECT round(pipeline_coverage::numeric, 6) FROM fc_total),
	(SELECT round(sum(deal_amount) / 5000000, 6) FROM fc_t.deals WHERE outcome IS NULL), 'pipeline coverage of the target');
SELECT is((SELECT round(expected_attainment_pct::numeric, 6) FROM fc_total),
	(SELECT round(100 * expected_won_value / 5000000, 6) FROM fc_total), 'expected attainment of the target, in percent');
SELECT is((SELECT count(*) FROM fc_rep WHERE NOT is_total), (SELECT count(DISTINCT sales_rep_id) FROM fc_t.deals WHERE outcome IS NULL),
	'by sales_rep_id: one row per rep with open deals');
SELECT is((SELECT row(sum(open_deals), sum(pipeline_value), round(sum(expected_won_value)))::text FROM fc_rep WHERE NOT is_total),
	(SELECT row(open_deals, pipeline_value, round(expected_won_value))::text FROM fc_rep WHERE is_total),
	'the reps add up to the total');
SELECT is((SELECT row(open_deals, expected_won_value, won_value_low, won_value_high)::text FROM fc_rep WHERE is_total),
	(SELECT row(open_deals, expected_won_value, won_value_low, won_value_high)::text FROM fc_total),
	'the total is the same with or without groups');
SELECT ok((SELECT shared_shock_sd > 0 AND interval_method LIKE 'simulation (% draws, shared shock sd %)' FROM fc_total),
	'the interval adds the shock measured from the quarters');
SELECT is((SELECT sum(open_deals) FROM dealrisk.forecast('fc_t.deals', 'close_month') WHERE NOT is_total),
	(SELECT count(*)::numeric FROM fc_t.deals WHERE outcome IS NULL), 'by close_month: every open deal in a month or in none');
SELECT ok((SELECT bool_and(group_value ~ '^\d{4}-\d{2}$' AND group_value >= '2025-01') FROM dealrisk.forecast('fc_t.deals', 'close_month')
           WHERE NOT is_total AND group_value IS NOT NULL), '... months after the scoring date, labelled 2025-01');

SELECT ok((SELECT bool_and(extract(isodow FROM group_value::date) = 1) AND sum(open_deals) = (SELECT count(*) FROM fc_t.deals WHERE outcome IS NULL AND created_date > '2023-01-01')
           FROM dealrisk.forecast('fc_t.deals', 'close_week') WHERE NOT is_total AND group_value IS NOT NULL),
	'by close_week: weeks start on Monday');

-- the expected value is the sum over deals of amount x P(win) x P(closing)
-- (checked with a horizon that every won cycle fits in: P(closing) = 1 for
-- every deal younger than the longest won cycle)
SELECT is((SELECT round(expected_won_value) FROM dealrisk.forecast('fc_t.deals', horizon => '10 years')),
	(SELECT round(sum(d.deal_amount * (1 - dealrisk.deal_risk(d) / 100))::numeric) FROM fc_t.deals d
	 WHERE d.outcome IS NULL AND '2024-12-31'::date - d.created_date <
	       (SELECT max(closed_date - created_date) FROM fc_t.deals WHERE outcome = 'Won')),
	'with a long horizon the expected value is the sum of amount x P(win)');
SELECT ok((SELECT a.expected_won_value < b.expected_won_value
           FROM dealrisk.forecast('fc_t.deals', horizon => '30 days') a, dealrisk.forecast('fc_t.deals', horizon => '180 days') b),
	'a longer horizon expects more');

-- deals it cannot forecast are counted, not guessed
CREATE TABLE fc_t.odd AS SELECT * FROM fc_t.deals;
ALTER TABLE fc_t.odd ALTER COLUMN deal_amount TYPE float8;
UPDATE fc_t.odd SET deal_amount = 'NaN' WHERE deal_id IN (SELECT deal_id FROM fc_t.odd WHERE outcome IS NULL ORDER BY deal_id LIMIT 3);
UPDATE fc_t.odd SET created_date = '2021-01-01' WHERE deal_id IN (SELECT deal_id FROM fc_t.odd WHERE outcome IS NULL ORDER BY deal_id DESC LIMIT 2);
UPDATE fc_t.odd SET created_date = NULL WHERE deal_id IN (SELECT deal_id FROM fc_t.odd WHERE outcome IS NULL ORDER BY deal_id DESC OFFSET 2 LIMIT 1);
SELECT is((SELECT row(deals_without_amount, deals_past_won_cycles, deals_without_age)::text
           FROM dealrisk.forecast('fc_t.odd')),
	'(3,2,1)', 'deals without an amount, older than every won deal or without a created_date are counted apart');
SELECT ok((SELECT pipeline_value < (SELECT pipeline_value FROM fc_total) AND expected_won_value > 0 FROM dealrisk.forecast('fc_t.odd')),
	'... and a NaN amount adds nothing to the values');

-- errors
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', 'deal_amount')$$, '22023',
	'by must be NULL, close_month, close_week or one of sales_rep_id, industry, region, product_type, lead_source, deal_stage, got deal_amount',
	'by a column that is not a dimension');
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', horizon => '0 days')$$, '22023', NULL, 'a horizon of 0 days');
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', horizon => NULL)$$, '22023', NULL, 'a NULL horizon');
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', target => 0)$$, '22023', NULL, 'a target of 0');
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', level => 1.5)$$, '22023', NULL, 'a level above 1');
SELECT throws_ok($$SELECT * FROM dealrisk.forecast('fc_t.deals', model => 'nope')$$, 'P0002', 'no active deal risk model named "nope"',
	'a model that does not exist');
CREATE TABLE fc_t.nodates AS SELECT deal_id, outcome, deal_amount FROM fc_t.deals;
SELECT throws_like($$SELECT * FROM dealrisk.forecast('fc_t.nodates')$$, '%created_date%', 'a source without dates');

-- a role that may read the deals and the models (as an analyst of docs/security.md) forecasts
CREATE ROLE fc_t_reader NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk, fc_t TO fc_t_reader;
GRANT SELECT ON fc_t.deals, dealrisk.models TO fc_t_reader;
SELECT expected_won_value AS expected FROM fc_total \gset
SET LOCAL ROLE fc_t_reader;
SELECT is((SELECT expected_won_value FROM dealrisk.forecast('fc_t.deals', target => 5000000)),
	:'expected'::numeric, 'a role with SELECT on the deals forecasts');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
