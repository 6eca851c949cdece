-- pgTAP: the deal risk model: training, activation, rollback, export and
-- import, scoring, explanation, actions, evaluation, and their bad input.
\ir harness/pgtap_setup.psql
SELECT plan(87);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TABLE tdeals AS SELECT * FROM dealrisk.sample_deals(6000, 7);
\ir fixtures/skygeni.sql

-- training on the sample with planted effects
SELECT lives_ok($$SELECT dealrisk.train('tdeals', method => 'logistic')$$, 'train() on the sample');
SELECT is((SELECT count(*)::int FROM dealrisk.models WHERE name = 'default' AND active), 1,
	'the trained model is active');
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.6 FROM dealrisk.models WHERE name = 'default'),
	'holdout AUC above 0.6 on planted effects');
SELECT ok((SELECT (metrics->>'brier')::float8 < (metrics->>'brier_base')::float8 FROM dealrisk.models WHERE name = 'default'),
	'the model beats the base rate on Brier score');
SELECT ok((SELECT (metrics->>'converged')::boolean FROM dealrisk.models WHERE name = 'default'), 'IRLS converged');
SELECT is((SELECT metrics ?& ARRAY['auc', 'log_loss', 'brier', 'accuracy', 'base_rate', 'n_train', 'n_test',
	'won_total', 'lost_total', 'iterations', 'converged'] FROM dealrisk.models WHERE name = 'default'),
	true, 'metrics hold what the issue lists');
SELECT is((SELECT pg_catalog.cardinality(coefficients) FROM dealrisk.models WHERE name = 'default'),
	(SELECT dealrisk._validate_model(feature_spec, NULL) FROM dealrisk.models WHERE name = 'default'),
	'one coefficient per model column');
SELECT ok(NOT (SELECT feature_spec::text LIKE '%stage_time%' FROM dealrisk.models WHERE name = 'default'),
	'stage time is left out when deal_stage records the outcome');

-- scoring
SELECT ok((SELECT bool_and(r >= 0 AND r <= 100) FROM (SELECT dealrisk.deal_risk(d.*) r FROM tdeals d) s),
	'risks are between 0 and 100');
SELECT is((SELECT count(*) FROM tdeals d WHERE dealrisk.deal_risk(d.*) IS NULL), 0::bigint, 'every deal gets a score');
SELECT is(dealrisk.deal_risk(NULL::tdeals), NULL, 'a NULL row scores NULL');
SELECT ok((SELECT avg(dealrisk.deal_risk(d.*)) FILTER (WHERE lead_source = 'Outbound')
	> avg(dealrisk.deal_risk(d.*)) FILTER (WHERE lead_source <> 'Outbound') FROM tdeals d),
	'planted: Outbound tdeals score riskier');
SELECT ok((SELECT avg(dealrisk.deal_risk(d.*)) FILTER (WHERE sales_rep_id = 'rep_7')
	> avg(dealrisk.deal_risk(d.*)) FILTER (WHERE sales_rep_id = 'rep_3') FROM tdeals d),
	'planted: rep_7 tdeals score riskier than rep_3 tdeals');
SELECT ok((SELECT corr(dealrisk.deal_risk(d.*), 1 - planted_win_prob) > 0.3 FROM tdeals d),
	'scores follow the planted probabilities');
SELECT is(dealrisk.deal_risk(d.*), dealrisk.deal_risk(d.*, 'default'), 'the default model by name')
	FROM tdeals d WHERE deal_id = 'D0000042';
SELECT throws_ok($$SELECT dealrisk.deal_risk(d.*, 'nope') FROM tdeals d LIMIT 1$$, 'P0002',
	'no active deal risk model named "nope"', 'an unknown model name');
SELECT throws_ok($$SELECT dealrisk.deal_risk(d.*, NULL) FROM tdeals d LIMIT 1$$, '22004',
	'model name must not be NULL', 'a NULL model name');

-- explanation and actions
CREATE TEMP TABLE ex AS
	SELECT e.* FROM tdeals d, dealrisk.deal_risk_explain(d.*) e WHERE d.deal_id = 'D0000042';
SELECT is((SELECT count(*)::int FROM ex),
	(SELECT jsonb_array_length(feature_spec->'features') FROM dealrisk.models WHERE name = 'default' AND active),
	'one explanation row per feature');
SELECT ok((SELECT bool_and(reason <> '') FROM ex), 'every factor has a reason');
SELECT results_eq($$SELECT effect FROM ex$$, $$SELECT effect FROM ex ORDER BY effect DESC$$,
	'factors are sorted by effect, biggest risk first');
CREATE TEMP TABLE odd AS SELECT * FROM tdeals WHERE deal_id = 'D0000042';
UPDATE odd SET industry = 'Aerospace', lead_source = NULL, sales_rep_id = 'rep_new';
SELECT ok((SELECT reason FROM odd d, dealrisk.deal_risk_explain(d.*) e WHERE e.factor = 'industry')
	LIKE 'Industry ''Aerospace'' was not seen in training%', 'an unseen category is explained as baseline');
SELECT is((SELECT effect FROM odd d, dealrisk.deal_risk_explain(d.*) e WHERE e.factor = 'industry'), 0::float8,
	'an unseen category has no effect');
SELECT ok((SELECT reason FROM odd d, dealrisk.deal_risk_explain(d.*) e WHERE e.factor = 'lead_source')
	LIKE 'Lead source is missing%', 'a NULL category is explained as missing');
SELECT ok((SELECT reason FROM odd d, dealrisk.deal_risk_explain(d.*) e WHERE e.factor = 'rep_win_rate')
	LIKE '%cold start%', 'a new rep gets the team rate (cold start)');
UPDATE odd SET deal_amount = 'NaN';
SELECT ok((SELECT dealrisk.deal_risk(d.*) FROM odd d) BETWEEN 0 AND 100, 'a NaN amount scores as baseline');
UPDATE odd SET deal_amount = 'Infinity';
SELECT ok((SELECT dealrisk.deal_risk(d.*) FROM odd d) BETWEEN 0 AND 100, 'an infinite amount scores as missing, in range');
UPDATE odd SET deal_amount = -500;
SELECT ok((SELECT dealrisk.deal_risk(d.*) FROM odd d) BETWEEN 0 AND 100, 'a negative amount falls in the bottom bin');
SELECT ok((SELECT dealrisk.recommended_action(d.*) FROM tdeals d WHERE deal_id = 'D0000042') IS NOT NULL,
	'every deal gets an action');
SELECT is((SELECT count(DISTINCT dealrisk.recommended_action(d.*)) > 1 FROM tdeals d WHERE outcome IS NULL), true,
	'actions differ between tdeals');
SELECT is(dealrisk.risk_band(10), 'low', 'band low');
SELECT is(dealrisk.risk_band(45), 'medium', 'band medium');
SELECT is(dealrisk.risk_band(65), 'high', 'band high');
SELECT is(dealrisk.risk_band(95), 'critical', 'band critical');
SET LOCAL dealrisk.band_high = 40;
SELECT is(dealrisk.risk_band(45), 'high', 'band thresholds are settings');
SELECT is(dealrisk.risk_band(NULL), NULL, 'band of NULL');

-- other row types: a view with fewer columns, a wrong type
CREATE VIEW thin AS SELECT deal_id, created_date, closed_date, industry, outcome FROM tdeals;
SELECT throws_like($$SELECT dealrisk.deal_risk(t.*) FROM thin t LIMIT 1$$,
	'column "last_activity_date" required by model "default" (id %) is missing from row type thin', 'a missing feature column names it and the model');
CREATE VIEW texty AS SELECT deal_id, created_date, closed_date, sales_rep_id, industry, region, product_type,
	lead_source, deal_stage, deal_amount::text AS deal_amount, sales_cycle_days, outcome, last_activity_date FROM tdeals;
SELECT throws_ok($$SELECT dealrisk.deal_risk(t.*) FROM texty t LIMIT 1$$, '42804',
	'column "deal_amount" of model "default" must be numeric, not text', 'a wrong column type is an error');

-- parallel scoring gives the serial answer
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE serial_sum AS SELECT sum(dealrisk.deal_risk(d.*)) s FROM tdeals d;
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SELECT ok(abs((SELECT sum(dealrisk.deal_risk(d.*)) FROM tdeals d) - (SELECT s FROM serial_sum)) < 1e-6,
	'parallel scoring sums to the serial answer');
RESET max_parallel_workers_per_gather;

-- tampering with the stored model: errors, never a crash; the cache notices
UPDATE dealrisk.models SET coefficients = coefficients[1:3] WHERE name = 'default' AND active;
SELECT throws_like($$SELECT dealrisk.deal_risk(d.*) FROM tdeals d LIMIT 1$$,
	'model % ("default") is invalid: 3 coefficients for % model columns', 'too few coefficients');
UPDATE dealrisk.models m SET coefficients = (SELECT array_agg(CASE WHEN i = 2 THEN 'NaN'::float8 ELSE 0.5 END)
	FROM generate_series(1, dealrisk._validate_model(m.feature_spec, NULL)) i) WHERE name = 'default' AND active;
SELECT throws_like($$SELECT dealrisk.deal_risk(d.*) FROM tdeals d LIMIT 1$$,
	'model % ("default") is invalid: coefficient 2 is NaN', 'a non-finite coefficient');
UPDATE dealrisk.models m SET coefficients = (SELECT array_agg(0::float8)
	FROM generate_series(1, dealrisk._validate_model(m.feature_spec, NULL)) i) WHERE name = 'default' AND active;
SELECT is((SELECT dealrisk.deal_risk(d.*) FROM tdeals d LIMIT 1), 50::float8,
	'the cached model is reloaded after an UPDATE (all-zero model scores 50)');
UPDATE dealrisk.models SET feature_spec = jsonb_set(feature_spec, '{features,0,kind}', '"magic"')
	WHERE name = 'default' AND active;
SELECT throws_like($$SELECT dealrisk.deal_risk(d.*) FROM tdeals d LIMIT 1$$,
	'model % ("default") is invalid: feature "%" has unknown kind "magic"', 'an unknown feature kind');

-- activation, quality gate, rollback
SELECT lives_ok($$SELECT dealrisk.train('tdeals', 'v')$$, 'train a first model v');
SELECT lives_ok($$SELECT dealrisk.train('tdeals', 'v', l2 => 5)$$, 'train a second model v');
SELECT is((SELECT count(*)::int FROM dealrisk.models WHERE name = 'v' AND active), 1, 'one active model per name');
SELECT is(dealrisk.rollback('v'), (SELECT min(id) FROM dealrisk.models WHERE name = 'v'), 'rollback returns the previous model');
SELECT is((SELECT id FROM dealrisk.models WHERE name = 'v' AND active), (SELECT min(id) FROM dealrisk.models WHERE name = 'v'),
	'after rollback the previous model is active');
SELECT throws_ok($$SELECT dealrisk.rollback('nobody')$$, 'P0002',
	'model name "nobody" has no previously active model to return to', 'rollback without history');
SELECT throws_ok($$INSERT INTO dealrisk.models (name, feature_spec, coefficients, active)
	SELECT 'v', feature_spec, coefficients, true FROM dealrisk.models WHERE name = 'v' LIMIT 1$$, '23505', NULL,
	'a second active model of a name is refused');

-- SkyGeni: outcomes close to random; the model must say so
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT dealrisk.train('skygeni', 'sky')$$, 'train on the SkyGeni export');
SET LOCAL client_min_messages = warning;
SELECT is((SELECT active FROM dealrisk.models WHERE name = 'sky'), false, 'a model without skill is not activated');
SELECT ok((SELECT (metrics->>'auc')::float8 < 0.55 FROM dealrisk.models WHERE name = 'sky'), 'its holdout AUC shows no skill');
SELECT throws_like($$SELECT dealrisk.activate(id) FROM dealrisk.models WHERE name = 'sky'$$,
	'model % ("sky") was not activated: its holdout AUC % is below 0.55%', 'activate refuses it');
SELECT ok((SELECT dealrisk.activate(id, force => true) FROM dealrisk.models WHERE name = 'sky'), 'force activates it');

-- minimum data and bad arguments
CREATE TABLE few AS SELECT * FROM tdeals WHERE outcome IS NOT NULL ORDER BY deal_id LIMIT 30;
SELECT throws_like($$SELECT dealrisk.train('few')$$,
	'not enough closed deals to train on: public.few has % won and % lost, at least 40 of each are needed', 'too few deals');
CREATE TABLE empty_deals AS SELECT * FROM tdeals WHERE false;
SELECT throws_like($$SELECT dealrisk.train('empty_deals')$$, 'cannot train on %empty_deals: no closed deal among 0 deals%', 'an empty source');
SELECT throws_ok($$SELECT dealrisk.train('tdeals', holdout => 0)$$, '22023', 'holdout must be a share between 0 and 0.9, got 0', 'bad holdout');
SELECT throws_ok($$SELECT dealrisk.train('tdeals', l2 => -1)$$, '22023', 'l2 must be a finite number >= 0, got -1', 'bad l2');
SELECT throws_ok($$SELECT dealrisk.train('tdeals', features => ARRAY['nonsense'])$$, '42703',
	'feature "nonsense" is neither a column of public.tdeals nor a derived feature', 'an unknown feature');

-- without close dates (no column, or never filled in) the holdout is a
-- hash split of deal_id; a close dated infinity does not set the weights
CREATE VIEW undated AS SELECT deal_id, created_date, sales_rep_id, industry, region, product_type, lead_source,
	deal_stage, deal_amount, sales_cycle_days, outcome, last_activity_date FROM tdeals;
CREATE TABLE blank_dates AS SELECT * FROM tdeals;
UPDATE blank_dates SET closed_date = NULL;
SELECT lives_ok($$SELECT dealrisk.train('undated', 'undated', activate => false)$$, 'train() on a source without closed_date');
SELECT lives_ok($$SELECT dealrisk.train('blank_dates', 'blank', activate => false)$$,
	'train() on a source whose closed_date is never filled in');
SELECT results_eq($$SELECT name, metrics->>'holdout_from',
		(metrics->>'n_train')::int + (metrics->>'n_test')::int = (metrics->>'won_total')::int + (metrics->>'lost_total')::int,
		(metrics->>'n_test')::float8 / ((metrics->>'won_total')::int + (metrics->>'lost_total')::int) BETWEEN 0.15 AND 0.25
	FROM dealrisk.models WHERE name IN ('blank', 'undated') ORDER BY name$$,
	$$VALUES ('blank'::text, NULL::text, true, true), ('undated', NULL, true, true)$$,
	'both hold out about a fifth of the closed deals by hash, each deal in one part');
CREATE TABLE inf_dates AS SELECT * FROM tdeals;
UPDATE inf_dates SET closed_date = 'infinity'
	WHERE deal_id = (SELECT min(deal_id) FROM tdeals WHERE outcome IS NOT NULL);
SELECT lives_ok($$SELECT dealrisk.train('inf_dates', 'inf', activate => false)$$, 'train() with a close dated infinity');
SELECT is((SELECT metrics->>'holdout_from' FROM dealrisk.models WHERE name = 'inf'),
	(SELECT metrics->>'holdout_from' FROM dealrisk.models WHERE name = 'default'), '... the same holdout cutoff');
SELECT ok((SELECT (m.metrics->>'n_train')::int >= (d.metrics->>'n_train')::int - 1
	FROM dealrisk.models m, dealrisk.models d WHERE m.name = 'inf' AND d.name = 'default'),
	'... and the other deals keep their weights');

-- export and import
SELECT ok(dealrisk.activate(dealrisk.import_model(dealrisk.export_model((SELECT id FROM dealrisk.models WHERE name = 'v' AND active)), 'copy')),
	'an exported model imports and activates (its metrics travel with it)');
SELECT is((SELECT dealrisk.deal_risk(d.*, 'copy') FROM tdeals d WHERE deal_id = 'D0000042'),
	(SELECT dealrisk.deal_risk(d.*, 'v') FROM tdeals d WHERE deal_id = 'D0000042'), 'the copy scores the same');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "sklearn"}', 'x')$$, '22023',
	'unknown model format ''sklearn''', 'unknown format');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [1, "Infinity"]}', 'x')$$,
	'22023', 'every coefficient must be a JSON number', 'non-numeric coefficient');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, 1, 2],
	"spec": {"features": [{"name": "i", "kind": "categorical", "column": "industry", "levels": ["A", "B", "A"]}]}}', 'x')$$,
	'22023', 'model "(import)" is invalid: feature "i" lists level "A" twice', 'duplicate levels');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, 1],
	"spec": {"features": [{"name": "i", "kind": "categorical", "column": "industry", "levels": ["A", "B"]}]}}', 'x')$$,
	'22023', 'model "(import)" is invalid: 2 coefficients for 3 model columns', 'wrong number of coefficients');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, 1],
	"spec": {"features": [{"name": "a", "kind": "bins", "column": "deal_amount", "edges": [5, 1]}]}}', 'x')$$,
	'22023', 'model "(import)" is invalid: feature "a" has a bad edge at position 2: 1', 'unsorted bin edges');

-- numeric inputs read exactly as numeric::float8 would
CREATE TEMP TABLE nums (x numeric);
INSERT INTO nums VALUES (0), (1), (-1), (0.5), (-2.25), (12345.6789), (0.0001), (-0.00012345),
	(9999999.99), (12345678.9012), (1234567.890123456789), (1e-20), (98765432.1), (3.14159265358979323846),
	(-7.000), (100.10), ('NaN'), ('Infinity'), ('-Infinity'), (NULL);
SELECT ok(dealrisk.activate(dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0, 1e-6],
	"spec": {"features": [{"name": "x", "kind": "numeric", "column": "x", "mean": 0, "sd": 1}]}}', 'num'), force => true),
	'a one-number model');
SELECT is((SELECT count(*) FROM nums n
	WHERE NOT abs(dealrisk.deal_risk(n.*, 'num') -
	              CASE WHEN x IS NULL OR x IN ('NaN', 'Infinity', '-Infinity') THEN 50::float8
	                   ELSE 100.0::float8 * (1 - 1 / (1 + exp(-(0.000001::float8 * x::float8)))) END) < 1e-9), 0::bigint,
	'numeric inputs read as numeric::float8 does (sign, scale, weight; NaN and infinities are missing)');

-- evaluation and lookalikes
SELECT ok((SELECT auc > 0.5 AND n > 0 AND jsonb_array_length(calibration) BETWEEN 1 AND 10
	FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'v' AND active), 'tdeals')),
	'evaluate() gives AUC and a calibration table');
SELECT ok((SELECT count(*) BETWEEN 1 AND 5 FROM dealrisk.lost_lookalikes('tdeals', k => 5)), 'lookalikes: at most k open tdeals');
SELECT ok((SELECT bool_and(NOT EXISTS (SELECT 1 FROM tdeals d WHERE d.deal_id = l.deal_id AND d.outcome IS NOT NULL))
	FROM dealrisk.lost_lookalikes('tdeals') l), 'lookalikes are open tdeals');
SELECT throws_ok($$SELECT * FROM dealrisk.lost_lookalikes('tdeals', k => 0)$$, '22023', 'k must be at least 1, got 0', 'bad k');
-- deals with the same traits tie: ordered by the similarity to 9 decimals,
-- then by deal_id, whatever the last bits of their sums
SELECT is((SELECT count(*) FROM (
	SELECT l.deal_id, l.similarity, lag(l.deal_id) OVER w AS prev_id, lag(l.similarity) OVER w AS prev_sim
	FROM dealrisk.lost_lookalikes('tdeals', k => 50) WITH ORDINALITY l(deal_id, similarity, shared_traits, o)
	WINDOW w AS (ORDER BY l.o)) x
	WHERE round(x.similarity::numeric, 9) > round(x.prev_sim::numeric, 9)
	   OR (round(x.similarity::numeric, 9) = round(x.prev_sim::numeric, 9) AND x.deal_id < x.prev_id)), 0::bigint,
	'lookalikes: ties in the order of deal_id');

-- the model tables are kept by pg_dump
SELECT ok((SELECT 'dealrisk.models'::regclass = ANY (extconfig) AND 'dealrisk.action_rule_edits'::regclass = ANY (extconfig)
	FROM pg_extension WHERE extname = 'dealrisk'), 'models and action rule edits are configuration tables');

-- one definition of stage matching (issue #10, item 6): the same stage
-- spelled with other case or surrounding spaces is one stage to the
-- stage table, the model's typical stage times and the preflight
SELECT results_eq($$SELECT dealrisk._stage_key(E'  Demo\t'), dealrisk._stage_key('   '), dealrisk.stage_position(' demo ')$$,
	$$VALUES ('demo', NULL::text, (SELECT "position" FROM dealrisk.stages WHERE stage = 'Demo'))$$,
	'_stage_key trims and folds ASCII case; blank is NULL; stage_position matches the same way');
CREATE TABLE spelled AS SELECT deal_id, created_date, closed_date, outcome, industry,
	CASE WHEN deal_id::text ~ '[02468]$' THEN ' ' || upper(s.st) || E'\t' ELSE s.st END AS deal_stage
	FROM tdeals, LATERAL (SELECT (ARRAY['Qualified', 'Demo', 'Proposal'])[1 + abs(hashtext(deal_id::text)) % 3] AS st) s;
SELECT lives_ok($$SELECT dealrisk.train('spelled', 'spelled', features => ARRAY['industry', 'stage_time'], activate => false, method => 'logistic')$$,
	'train on stages spelled two ways');
SELECT is((SELECT array_agg(k ORDER BY k) FROM dealrisk.models m, jsonb_array_elements(m.feature_spec->'features') f,
	jsonb_object_keys(f->'typical') k WHERE m.name = 'spelled' AND f->>'name' = 'stage_time'),
	ARRAY['demo', 'proposal', 'qualified'],
	'... one typical time per stage, whatever the spelling');
SELECT is((SELECT count(*)::int FROM dealrisk.check_source('spelled') WHERE finding ILIKE '%unknown stage%' OR "check" = 'stages'), 0,
	'... and the preflight knows every spelling');

-- the cache follows a dropped and recreated extension (new table oid)
SELECT ok((SELECT dealrisk.deal_risk(d.*, 'v') FROM tdeals d LIMIT 1) IS NOT NULL, 'score once to fill the cache');
DROP EXTENSION dealrisk CASCADE;
CREATE EXTENSION dealrisk;
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT dealrisk.train('tdeals', 'v', method => 'logistic')$$, 'train in the recreated extension');
SET LOCAL client_min_messages = warning;
UPDATE dealrisk.models m SET coefficients = (SELECT array_agg(0::float8)
	FROM generate_series(1, dealrisk._validate_model(m.feature_spec, NULL)) i) WHERE name = 'v';
SELECT is((SELECT dealrisk.deal_risk(d.*, 'v') FROM tdeals d LIMIT 1), 50::float8,
	'after DROP/CREATE EXTENSION the cache still sees changes to the new models table');

SELECT * FROM finish();
ROLLBACK;
