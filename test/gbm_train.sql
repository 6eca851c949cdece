-- pgTAP: tree models trained in the database (issue #10): train(method =>
-- 'gbm' | 'auto', params) on deals with an interaction that a logistic
-- model cannot learn, scores and explanations of closed and open deals
-- (contributions that add up), the same trees from a serial and a
-- forced-parallel pass, the memory cap, and bad parameters.
\ir harness/pgtap_setup.psql
SELECT plan(37);

\ir harness/error_of.psql
SET LOCAL client_min_messages = warning;
SET LOCAL dealrisk.as_of_date = '2025-01-01';

-- 12,000 deals: product A wins in region North, product B elsewhere (an XOR
-- that no sum of a product term and a region term can express); a tenth
-- are open.  Closes run through 2024, so the newest fifth is the holdout.
CREATE TABLE xdeals AS
SELECT 'X' || lpad(i::text, 5, '0') AS deal_id,
       date '2023-01-01' + (i % 700) AS created_date,
       CASE WHEN i % 10 = 0 THEN NULL ELSE date '2023-01-01' + (i % 700) + 10 + (i * 7) % 50 END AS closed_date,
       CASE WHEN dealrisk.hash_uniform(3, i, 1) < 0.5 THEN 'A' ELSE 'B' END AS product_type,
       CASE WHEN dealrisk.hash_uniform(3, i, 2) < 0.5 THEN 'North' ELSE 'South' END AS region,
       'rep_' || (i % 12) AS sales_rep_id,
       round((1000 + 9000 * dealrisk.hash_uniform(3, i, 3))::numeric, 2) AS deal_amount,
       i
FROM generate_series(1, 12000) i;
ALTER TABLE xdeals ADD COLUMN outcome text;
UPDATE xdeals SET outcome = CASE
	WHEN closed_date IS NULL THEN 'Open'
	WHEN dealrisk.hash_uniform(3, i, 9) < CASE WHEN (product_type = 'A') = (region = 'North') THEN 0.8 ELSE 0.2 END
	THEN 'Closed Won' ELSE 'Closed Lost' END;
ANALYZE xdeals;

SELECT lives_ok($$SELECT dealrisk.train('xdeals', 'xlog', method => 'logistic', activate => false)$$,
	'a logistic model of the XOR deals');
SELECT lives_ok($$SELECT dealrisk.train('xdeals', 'xgbm', method => 'gbm', activate => false)$$,
	'a tree model of the same deals');
SELECT results_eq($$SELECT metrics->>'method', cardinality(coefficients), jsonb_typeof(feature_spec->'trees')
	FROM dealrisk.models WHERE name = 'xgbm'$$,
	$$VALUES ('gbm', 1, 'object')$$, '... stored as trees with one coefficient, its base margin');
SELECT ok((SELECT (metrics->>'rounds_kept')::int BETWEEN 1 AND (metrics->>'rounds_run')::int
	AND (metrics->>'rounds_run')::int <= 300 FROM dealrisk.models WHERE name = 'xgbm'),
	'... kept the rounds up to its best holdout loss');
SELECT ok((SELECT (g.metrics->>'auc')::float8 > (l.metrics->>'auc')::float8 + 0.15
	FROM dealrisk.models g, dealrisk.models l WHERE g.name = 'xgbm' AND l.name = 'xlog'),
	'the trees learn the interaction: holdout AUC above the logistic model''s by more than 0.15');
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.75 FROM dealrisk.models WHERE name = 'xgbm'),
	'... and near the 0.8 the data allows');
SELECT is((SELECT (metrics->>'n_test')::bigint FROM dealrisk.models WHERE name = 'xgbm'),
	(SELECT (metrics->>'n_test')::bigint FROM dealrisk.models WHERE name = 'xlog'),
	'both methods are measured on the same holdout');

-- 'auto' fits both and keeps the better holdout log loss
SELECT lives_ok($$SELECT dealrisk.train('xdeals', 'xauto', activate => false)$$, 'method auto');
SELECT results_eq($$SELECT metrics->>'method', (SELECT count(*) FROM jsonb_object_keys(metrics->'candidates'))::int
	FROM dealrisk.models WHERE name = 'xauto'$$,
	$$VALUES ('gbm', 2)$$, '... keeps the trees and records both candidates');
SELECT ok((SELECT (metrics->'candidates'->'gbm'->>'log_loss')::float8 < (metrics->'candidates'->'logistic'->>'log_loss')::float8
	AND metrics->>'log_loss' = metrics->'candidates'->'gbm'->>'log_loss' FROM dealrisk.models WHERE name = 'xauto'),
	'... whose holdout log loss is lower');
SELECT ok((SELECT metrics->'auto'->>'kept' = 'gbm'
	AND (metrics->'auto'->>'log_loss_gain_of_trees')::float8 > 2 * (metrics->'auto'->>'standard_error')::float8
	FROM dealrisk.models WHERE name = 'xauto'), '... by more than two standard errors of the paired difference');
-- additive effects (product and region each move the log-odds by the
-- same amount whatever the other is): the logistic model is the right
-- one, the trees can only match it, and auto keeps the simpler model
CREATE TABLE xadd AS SELECT deal_id, created_date, closed_date, product_type, region, sales_rep_id, deal_amount,
	CASE WHEN closed_date IS NULL THEN 'Open'
	     WHEN dealrisk.hash_uniform(7, i, 1) < 1 / (1 + exp(-(-0.8 + 0.8 * (product_type = 'A')::int + 0.8 * (region = 'North')::int)))
	     THEN 'Closed Won' ELSE 'Closed Lost' END AS outcome
	FROM xdeals;
SELECT lives_ok($$SELECT dealrisk.train('xadd', 'xa', activate => false)$$, 'method auto on additive effects');
SELECT results_eq($$SELECT metrics->>'method', (metrics->'auto'->>'log_loss_gain_of_trees')::float8 <= 2 * (metrics->'auto'->>'standard_error')::float8
	FROM dealrisk.models WHERE name = 'xa'$$, $$VALUES ('logistic', true)$$,
	'... keeps the logistic model: the trees are not surely better');
SELECT is((SELECT feature_spec->'trees' FROM dealrisk.models WHERE name = 'xauto'),
	(SELECT feature_spec->'trees' FROM dealrisk.models WHERE name = 'xgbm'),
	'... the same trees as method gbm: training is deterministic');

-- scores: finite for every deal, open ones too; contributions add up to
-- the log-odds of every deal, open deals (whose age is averaged out of
-- the trees and scored by the survivor curve) included
SELECT dealrisk.activate(id) AS activated FROM dealrisk.models WHERE name = 'xgbm' \gset
SELECT is((SELECT count(*) FILTER (WHERE r > 0 AND r < 100)::int FROM (SELECT dealrisk.deal_risk(d, 'xgbm') r FROM xdeals d) s
	WHERE true), 12000, 'every deal gets a risk strictly between 0 and 100');
SELECT is((SELECT count(*)::int FROM xdeals d,
	LATERAL (SELECT sum(c.contribution) s FROM dealrisk.deal_risk_contributions(d, 'xgbm') c) t,
	LATERAL (SELECT 1 - dealrisk.deal_risk(d, 'xgbm') / 100 p) q
	WHERE abs(t.s - ln(q.p / (1 - q.p))) > 1e-9), 0,
	'the contributions of every deal add up to its log-odds of winning');
SELECT is((SELECT count(*)::int FROM xdeals d, LATERAL dealrisk.deal_risk_contributions(d, 'xgbm') c
	WHERE d.outcome = 'Open' AND c.factor = 'cycle_days' AND c.contribution = 0), 0,
	'an open deal''s age contributes its survivor term, not nothing');
SELECT is((SELECT count(DISTINCT c.contribution)::int FROM xdeals d, LATERAL dealrisk.deal_risk_contributions(d, 'xgbm') c
	WHERE c.factor = '(base)'), 1, 'the base is the same for every deal');
SELECT ok((SELECT avg((x.f IN ('product_type', 'region'))::int) > 0.8 FROM (
	SELECT (SELECT e.factor FROM dealrisk.deal_risk_explain(d, 'xgbm') e ORDER BY abs(e.effect) DESC LIMIT 1) f
	FROM xdeals d WHERE d.outcome <> 'Open') x),
	'the strongest reason of four closed deals in five is their product or their region');
SELECT is((SELECT count(*)::int FROM xdeals d WHERE dealrisk.recommended_action(d, 'xgbm') IS NULL
	AND dealrisk.deal_risk(d, 'xgbm') >= 50), 0, 'every high-risk deal gets an action');

SELECT is((SELECT e.reason FROM xdeals d, dealrisk.deal_risk_explain(d, 'xgbm') e
	WHERE d.deal_id = 'X00001' AND e.factor = 'product_type'),
	(SELECT format('Product ''%s'' %s this deal''s risk', d.product_type, CASE WHEN e.effect > 0 THEN 'raises' ELSE 'lowers' END)
	 FROM xdeals d, dealrisk.deal_risk_explain(d, 'xgbm') e WHERE d.deal_id = 'X00001' AND e.factor = 'product_type'),
	'a tree model''s reason says what the value does to this deal, not how such deals fare on average');

SELECT is((SELECT e.reason FROM (SELECT (x).* FROM (SELECT x FROM xdeals x WHERE deal_id = 'X00002') y) d0,
	LATERAL (SELECT d0.deal_id, d0.created_date, d0.closed_date, d0.product_type, d0.region, d0.sales_rep_id,
	                NULL::numeric AS deal_amount, d0.i, d0.outcome) d,
	LATERAL dealrisk.deal_risk_explain(d, 'xgbm') e WHERE e.factor = 'deal_amount'),
	'Deal amount unknown: scored as missing values were in training',
	'a missing value of a tree model is not said to be scored as average');

-- An ensemble whose open-deal form is too large to compile (trees.c,
-- DR_MARG_NODES): the xgbm model with its trees replaced by one whose root
-- splits on the age into two depth-12 trees on the amount with thresholds
-- of their own (the average of the two needs a leaf per gap between their
-- 8,190 thresholds), and one small tree that does not split on the age;
-- each node's cover is its leaves (TreeSHAP weighs paths by it).
-- Open deals then take the averaging walk for the first and the
-- branch-free walk for the second: their margin is still the sum of their
-- contributions, which TreeSHAP computes by the averaging walk.
CREATE TEMP TABLE deep AS
WITH f AS (
	SELECT (SELECT o - 1 FROM jsonb_array_elements(feature_spec->'features') WITH ORDINALITY e(x, o) WHERE x->>'name' = 'cycle_days') AS age,
	       (SELECT o - 1 FROM jsonb_array_elements(feature_spec->'features') WITH ORDINALITY e(x, o) WHERE x->>'name' = 'deal_amount') AS amt
	FROM dealrisk.models WHERE name = 'xgbm'
), sub AS (
	-- side s (0 left, 1 right) of the root: heap node j of a depth-12 tree
	SELECT s, j, floor(log(2, j + 1))::int AS lvl FROM generate_series(0, 1) s, generate_series(0, 8190) j
), nodes AS (
	SELECT 0 AS g, 1 AS l, 8192 AS r, (SELECT age FROM f) AS feat, 30::float8 AS th, true AS dl, 0::float8 AS v,
	       8192::float8 AS c
	UNION ALL
	SELECT 1 + s * 8191 + j,
	       CASE WHEN lvl < 12 THEN 1 + s * 8191 + 2 * j + 1 ELSE -1 END,
	       CASE WHEN lvl < 12 THEN 1 + s * 8191 + 2 * j + 2 ELSE -1 END,
	       (SELECT amt FROM f),
	       CASE WHEN lvl < 12 THEN 1000 + 9000 * (2 * (j - (2 ^ lvl - 1)) + 1) / 2 ^ (lvl + 1) + 0.5 * s ELSE 0 END,
	       j % 3 = 0,
	       CASE WHEN lvl < 12 THEN 0 ELSE (j % 7 - 3) / 100.0 + s / 10.0 END,
	       2 ^ (12 - lvl)
	FROM sub
)
SELECT array_agg(l ORDER BY g) AS l, array_agg(r ORDER BY g) AS r, array_agg(feat ORDER BY g) AS feat,
       array_agg(th ORDER BY g) AS th, array_agg(dl ORDER BY g) AS dl, array_agg(v ORDER BY g) AS v,
       array_agg(c ORDER BY g) AS c, (SELECT amt FROM f) AS amt
FROM nodes;
INSERT INTO dealrisk.models (name, feature_spec, coefficients, active)
SELECT 'xdeep', jsonb_set(m.feature_spec, '{trees}', jsonb_build_object(
	'start', jsonb_build_array(0, cardinality(d.l)),
	'left', to_jsonb(d.l || ARRAY[1, -1, -1]), 'right', to_jsonb(d.r || ARRAY[2, -1, -1]),
	'feature', to_jsonb(d.feat || ARRAY[d.amt, 0, 0]), 'threshold', to_jsonb(d.th || ARRAY[5000, 0, 0]::float8[]),
	'default_left', to_jsonb(d.dl || ARRAY[false, false, false]), 'value', to_jsonb(d.v || ARRAY[0, 0.3, -0.2]::float8[]),
	'cover', to_jsonb(d.c || ARRAY[2, 1, 1]::float8[]))),
	m.coefficients, true
FROM dealrisk.models m, deep d WHERE m.name = 'xgbm';
SELECT is((SELECT count(*)::int FROM (SELECT * FROM xdeals WHERE outcome = 'Open' ORDER BY deal_id LIMIT 40) d,
	LATERAL (SELECT sum(c.contribution) s FROM dealrisk.deal_risk_contributions(d, 'xdeep') c) t,
	LATERAL (SELECT 1 - dealrisk.deal_risk(d, 'xdeep') / 100 p) q
	WHERE abs(t.s - ln(q.p / (1 - q.p))) > 1e-9), 0,
	'too large to compile for open deals: 40 open deals still score the sum of their contributions');
SELECT is((SELECT count(*)::int FROM (SELECT * FROM xdeals WHERE outcome <> 'Open' ORDER BY deal_id LIMIT 40) d,
	LATERAL (SELECT sum(c.contribution) s FROM dealrisk.deal_risk_contributions(d, 'xdeep') c) t,
	LATERAL (SELECT 1 - dealrisk.deal_risk(d, 'xdeep') / 100 p) q
	WHERE abs(t.s - ln(q.p / (1 - q.p))) > 1e-9), 0,
	'... and so do 40 closed deals');

-- export and import: the same scores
SELECT lives_ok($$SELECT dealrisk.import_model(dealrisk.export_model(id), 'xcopy') FROM dealrisk.models WHERE name = 'xgbm'$$,
	'export_model and import_model of a trained tree model');
SELECT dealrisk.activate(id, force => true) AS activated FROM dealrisk.models WHERE name = 'xcopy' \gset
SELECT is((SELECT count(*)::int FROM xdeals d WHERE dealrisk.deal_risk(d, 'xcopy') <> dealrisk.deal_risk(d, 'xgbm')), 0,
	'... scores every deal the same');

-- serial and forced-parallel passes fit the same trees
SET LOCAL max_parallel_workers_per_gather = 0;
SELECT dealrisk.train('xdeals', 'xserial', method => 'gbm', activate => false) AS serial_id \gset
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL parallel_leader_participation = off;
SELECT dealrisk.train('xdeals', 'xparallel', method => 'gbm', activate => false) AS parallel_id \gset
RESET max_parallel_workers_per_gather;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET parallel_leader_participation;
SELECT is((SELECT feature_spec->'trees' FROM dealrisk.models WHERE name = 'xparallel'),
	(SELECT feature_spec->'trees' FROM dealrisk.models WHERE name = 'xserial'),
	'a forced-parallel pass (workers only) fits the trees of a serial one');

-- a source without dates: the hash of deal_id picks the holdout
CREATE TABLE xnodates AS SELECT deal_id, product_type, region, sales_rep_id, deal_amount, outcome FROM xdeals;
SELECT lives_ok($$SELECT dealrisk.train('xnodates', 'xnd', method => 'auto', activate => false)$$,
	'method auto on a source without dates');
SELECT results_eq($$SELECT metrics->>'holdout_split', (metrics->'candidates'->'gbm'->>'n')::int = (metrics->'candidates'->'logistic'->>'n')::int
	FROM dealrisk.models WHERE name = 'xnd'$$, $$VALUES ('deal_id hash', true)$$,
	'... both candidates measured on the same hashed holdout');

-- row and column subsampling: the rows of each round are drawn (gathered
-- afresh, not kept in place across rounds), deterministically by seed
SELECT lives_ok($$SELECT dealrisk.train('xdeals', 'xsub' || k, method => 'gbm', activate => false,
		params => '{"subsample": 0.6, "colsample": 0.8, "seed": 7}') FROM generate_series(1, 2) k$$,
	'subsampled rows and columns, twice with the same seed');
SELECT ok((SELECT a.feature_spec = b.feature_spec AND a.feature_spec <> g.feature_spec
	FROM dealrisk.models a, dealrisk.models b, dealrisk.models g
	WHERE a.name = 'xsub1' AND b.name = 'xsub2' AND g.name = 'xgbm'),
	'... the same trees from the same seed, other trees than without subsampling');
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.75 FROM dealrisk.models WHERE name = 'xsub1'),
	'... which still learn the interaction');
SELECT lives_ok($$SELECT dealrisk.train('xdeals', 'xall', method => 'gbm', activate => false,
		params => '{"subsample": 0.999999999999}')$$,
	'a subsample that (with this seed) draws every row');
SELECT ok((SELECT a.feature_spec->'trees' = g.feature_spec->'trees'
	FROM dealrisk.models a, dealrisk.models g WHERE a.name = 'xall' AND g.name = 'xgbm'),
	'... grows, through the drawn rows'' buffers, the trees of the rows kept in place');

-- bad input
SELECT results_eq($$SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'xgboost')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm', params => '{"depth": 4}')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm', params => '{"rounds": "many"}')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm', params => '{"max_depth": 2.5}')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm', params => '{"rounds": 0}')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm', params => '{"learning_rate": 1.5}')$q$)
	UNION ALL SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'logistic', params => '{"rounds": 10}')$q$)$$,
	$$VALUES ('22023', 'unknown training method "xgboost"'),
	         ('22023', 'unknown boosting parameter "depth"'),
	         ('22023', 'boosting parameter "rounds" must be a number, got "many"'),
	         ('22023', 'boosting parameter "max_depth" must be a whole number, got 2.5'),
	         ('22023', 'boosting parameter rounds must be in [1, 100000], got 0'),
	         ('22023', 'boosting parameter learning_rate must be in (0, 1], got 1.5'),
	         ('22023', 'params are the boosting parameters of methods ''gbm'' and ''auto'', not of method ''logistic''')$$,
	'a bad method or boosting parameter is an error that names it');
SET LOCAL dealrisk.train_memory = '1MB';
SELECT results_eq($$SELECT * FROM pg_temp.error_of($q$SELECT dealrisk.train('xdeals', 'e', method => 'gbm')$q$)$$,
	$$VALUES ('54000', 'training a tree model on more than 9532 closed deals needs more memory than dealrisk.train_memory (1 MB) allows')$$,
	'past dealrisk.train_memory, a clear error');
RESET dealrisk.train_memory;
SELECT is((SELECT count(*)::int FROM dealrisk.models WHERE name = 'e'), 0, '... and no model is stored');

SELECT * FROM finish();
ROLLBACK;
