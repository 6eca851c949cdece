-- pgTAP: the crashes and bad numbers of issue #8 (each crashed the server,
-- read out of bounds or returned NaN before it was fixed), the bounds on
-- models, and the settings' checks.
\ir harness/pgtap_setup.psql
SELECT plan(58);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TABLE sdeals AS SELECT * FROM dealrisk.sample_deals(300, 3);

-- a non-finite score never indexes memory: a valid model with a 0
-- coefficient on a numeric feature, and deals with an infinite amount
-- (0 * Infinity was NaN, a NaN calibration bin a SIGSEGV)
UPDATE sdeals SET deal_amount = 'Infinity' WHERE deal_id IN
	(SELECT deal_id FROM sdeals WHERE dealrisk.is_won(outcome) IS NOT NULL ORDER BY deal_id LIMIT 3);
UPDATE sdeals SET deal_amount = '-Infinity' WHERE deal_id IN
	(SELECT deal_id FROM sdeals WHERE dealrisk.is_won(outcome) IS NOT NULL ORDER BY deal_id DESC LIMIT 3);
INSERT INTO dealrisk.models (name, feature_spec, coefficients, active) VALUES ('amount',
	'{"features": [{"name": "deal_amount", "kind": "numeric", "column": "deal_amount", "mean": 1000, "sd": 500}]}',
	'{0.5, 0}', true);
SELECT is((SELECT n FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'amount'), 'sdeals')),
	(SELECT count(*) FROM sdeals WHERE dealrisk.is_won(outcome) IS NOT NULL),
	'evaluate() counts deals with an infinite amount (they used to crash the server)');
SELECT ok((SELECT calibration::text NOT LIKE '%NaN%' AND log_loss = log_loss
	FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'amount'), 'sdeals')),
	'and its metrics are numbers');
SELECT is((SELECT round(dealrisk.deal_risk(d.*, 'amount')::numeric, 6) FROM sdeals d WHERE deal_amount = 'Infinity' LIMIT 1),
	round(100 * (1 - 1 / (1 + exp(-0.5)))::numeric, 6), 'an infinite amount times a 0 coefficient adds nothing');
SELECT lives_ok($$SET LOCAL dealrisk.min_training_deals = 5;
	SELECT dealrisk.train('sdeals', 'inf_amounts', features => ARRAY['deal_amount', 'industry'], activate => false)$$,
	'training on deals with infinite amounts works');

-- hand-edited coefficients that are not finite, or past the bound, are
-- refused where they are read, naming them
UPDATE dealrisk.models SET coefficients = '{0.5, NaN}' WHERE name = 'amount';
SELECT throws_ok($$SELECT * FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'amount'), 'sdeals')$$,
	'22023', 'coefficient 2 is NaN, not a finite number within +-1e+06', 'evaluate() refuses a NaN coefficient');
UPDATE dealrisk.models SET coefficients = '{1e308, 0}' WHERE name = 'amount';
SELECT throws_ok($$SELECT * FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'amount'), 'sdeals')$$,
	'22023', 'coefficient 1 is 1e+308, not a finite number within +-1e+06', 'evaluate() refuses a huge coefficient');
SELECT throws_ok($$SELECT dealrisk.deal_risk(d.*, 'amount') FROM sdeals d LIMIT 1$$,
	'22023', NULL, 'scoring refuses a model with a huge coefficient');

-- a standardisation so extreme that a finite amount encodes as Infinity
UPDATE dealrisk.models SET coefficients = '{0.5, 1}',
	feature_spec = '{"features": [{"name": "deal_amount", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 1e-308}]}'
WHERE name = 'amount';
SELECT ok((SELECT log_loss = log_loss AND calibration::text NOT LIKE '%NaN%'
	FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'amount'), 'sdeals')),
	'evaluate() gives numbers for scores that would overflow');
SELECT ok((SELECT bool_and(r BETWEEN 0 AND 100) FROM (SELECT dealrisk.deal_risk(d.*, 'amount') r FROM sdeals d) s),
	'so does scoring');
UPDATE dealrisk.models SET coefficients = '{0.5, 0}',
	feature_spec = '{"features": [{"name": "r", "kind": "rate", "column": "sales_rep_id", "levels": ["rep_1"],
		"won": [1e308], "closed": [1e308], "prior": 1, "strength": 1e308, "mean": 0, "sd": 1e-308}]}'
WHERE name = 'amount';
SELECT ok((SELECT bool_and(r BETWEEN 0 AND 100) FROM (SELECT dealrisk.deal_risk(d.*, 'amount') r FROM sdeals d) s),
	'a rate feature whose rate is Infinity / Infinity scores a number');

-- import_model bounds coefficients and the spec's numbers, naming them
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, 1e308],
	"spec": {"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 1}]}}', 'x')$$,
	'22023', 'model "(import)" is invalid: coefficient 2 is 1e+308', 'a 1e308 coefficient is refused');
SELECT throws_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, -1000001],
	"spec": {"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 1}]}}', 'x')$$,
	'22023', 'model "(import)" is invalid: coefficient 2 is -1000001', 'so is one just past -1e6');
SELECT lives_ok($$SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0.1, -1e6],
	"spec": {"features": [{"name": "a", "kind": "numeric", "column": "deal_amount", "mean": 0, "sd": 1}]}}', 'x')$$,
	'a coefficient of -1e6 is accepted');
SELECT throws_ok($$SELECT dealrisk._validate_model('{"features": [{"name": "a", "kind": "numeric", "column": "c", "mean": 0, "sd": 0}]}', NULL)$$,
	'22023', 'model "(import)" is invalid: feature "a" has mean 0 and sd 0', 'an sd of 0 is named');
SELECT throws_ok($$SELECT dealrisk._validate_model('{"features": [{"name": "a", "kind": "numeric", "column": "c", "mean": "Infinity", "sd": 1}]}', NULL)$$,
	'22023', 'model "(import)" is invalid: feature "a" has mean Infinity and sd 1', 'an infinite mean is named');
SELECT throws_ok($$SELECT dealrisk._validate_model('{"features": [{"name": "b", "kind": "bins", "column": "c", "edges": [1, "NaN"]}]}', NULL)$$,
	'22023', 'model "(import)" is invalid: feature "b" has a bad edge at position 2: NaN', 'a NaN edge is named');
SELECT throws_ok($$SELECT dealrisk._validate_model('{"features": [{"name": "r", "kind": "rate", "column": "c", "levels": ["x"],
	"won": [3], "closed": [2], "prior": 0.5, "strength": 1, "mean": 0, "sd": 1}]}', NULL)$$,
	'22023', 'model "(import)" is invalid: feature "r" has bad counts for level 1: 3 won of 2 closed', 'bad counts are named');
SELECT throws_ok($$SELECT dealrisk._validate_model('{"features": [{"name": "s", "kind": "numeric", "derived": "stage_ratio",
	"typical": {"Demo": "-Infinity"}, "mean": 0, "sd": 1}]}', NULL)$$,
	'22023', 'model "(import)" is invalid: feature "s" has typical days -Infinity for stage "Demo"', 'bad typical days are named');
SELECT throws_ok(format('SELECT dealrisk._validate_model(%L, NULL)', jsonb_build_object('features', jsonb_build_array(
	jsonb_build_object('name', 'c', 'kind', 'categorical', 'column', 'c',
		'levels', (SELECT jsonb_agg(i::text) FROM generate_series(1, 100001) i))))),
	'22023', 'model "(import)" is invalid: feature "c" would take the model past 100000 columns',
	'a model past 100000 columns is refused before its levels are sorted');

-- size arithmetic: p (p + 1) / 2 overflowed int, so a 65535-wide
-- coefficient array made a 32770-long state look right and was read past
SELECT throws_ok($$SELECT dealrisk._irls_decrement(array_fill(0::float8, ARRAY[32770]), array_fill(0::float8, ARRAY[65535]),
	array_fill(1::float8, ARRAY[65535]), 0)$$,
	'54000', 'a model of 65535 columns is too wide to train: at most 4096 model columns can be trained',
	'_irls_decrement refuses a model too wide to train (it read out of bounds)');
SELECT throws_ok($$SELECT dealrisk._irls_solve(array_fill(0::float8, ARRAY[32770]), array_fill(0::float8, ARRAY[65535]), 0)$$,
	'54000', 'a model of 65535 columns is too wide to train: at most 4096 model columns can be trained',
	'so does _irls_solve');
SELECT throws_ok($$SELECT dealrisk._irls_decrement('{1,1,0,0,1}', '{0}', '{0}', 'NaN')$$,
	'22023', 'l2 penalty must be a finite number >= 0, got NaN', '_irls_decrement checks l2 (it returned NaN)');
SELECT throws_ok($$SELECT dealrisk._irls_decrement('{1,1,0,NaN,1}', '{0}', '{1}', 0)$$,
	'22003', 'the gain of the Newton step is not finite (NaN)', 'and a gain that is not a number');
SELECT is(dealrisk._irls_decrement('{10,10,-5,1,2.5}', '{0}', '{0.4}', 0), 0.2::float8, 'a sound decrement');
SELECT ok(abs((dealrisk._irls_solve('{10,10,-5,1,2.5}', '{0}', 0))[1] - 0.4) < 1e-12, 'a sound Newton step');

-- a 65,536-level spec overflowed the heap in _irls_pass
CREATE TEMP TABLE wide AS SELECT jsonb_build_object('features', jsonb_build_array(jsonb_build_object(
	'name', 'industry', 'kind', 'categorical', 'column', 'industry',
	'levels', (SELECT jsonb_agg('level ' || i) FROM generate_series(1, 65536) i)))) AS spec;
SELECT throws_ok(format('SELECT dealrisk._irls_pass(%L::jsonb, NULL, 0, NULL, NULL, 0, %s) FROM sdeals d',
	spec, dealrisk._row_args('sdeals', spec)),
	'54000', 'a model of 65537 columns is too wide to train: at most 4096 model columns can be trained',
	'_irls_pass refuses a 65,536-level spec') FROM wide;
SELECT lives_ok(format('SELECT dealrisk._evaluate(%L::jsonb, array_fill(0::float8, ARRAY[65537]), 0, NULL, %s) FROM sdeals d',
	spec, dealrisk._row_args('sdeals', spec)), 'evaluating it is fine (its state does not grow with the model)') FROM wide;

-- normal_quantile far in the tail was NaN
SELECT ok(dealrisk.normal_quantile(1e-310) BETWEEN -40 AND -37, 'normal_quantile(1e-310) is a number');
SELECT ok(dealrisk.normal_quantile(4.9e-324) < -37, 'normal_quantile of the smallest double is a number');

-- states with impossible contents are errors, not rates above 1 or NaN
SELECT throws_ok($$SELECT dealrisk._win_rate_final('{5,2}')$$, '22000', 'invalid win_rate state array',
	'more won than closed (it returned 2.5)');
SELECT throws_ok($$SELECT dealrisk._win_rate_ci_final('{-1,2}')$$, '22000', 'invalid win_rate state array',
	'negative counts');
SELECT throws_ok($$SELECT dealrisk._win_rate_ci_level_final('{1,2,5}')$$, '22000', 'invalid win_rate_ci state array',
	'a level of 5 (the interval was NaN)');
SELECT throws_ok($$SELECT dealrisk._win_rate_ci_level_final('{NaN,2,0.9}')$$, '22000', 'invalid win_rate_ci state array',
	'NaN counts');
SELECT throws_ok($$SELECT dealrisk._win_rate_amount_final('{1,Infinity,2}')$$, '22000', 'invalid weighted win_rate state array',
	'an infinite amount total (the rate was NaN)');
SELECT throws_ok($$SELECT dealrisk._late_stage_loss_final('{3,2}')$$, '22000', 'invalid late_stage_loss_ratio state array',
	'more late losses than losses');
SELECT throws_ok($$SELECT dealrisk._stage_funnel_final(array_cat('{9223372036854775807,0,0}'::bigint[], array_fill(9223372036854775807::bigint, ARRAY[12])))$$,
	'22000', 'invalid stage_funnel state array', 'funnel counts that overflow');
SELECT throws_ok($$SELECT dealrisk._eval_final(array_fill('NaN'::float8, ARRAY[6005]))$$, '22000',
	'invalid evaluation state array', 'a NaN evaluation state');
SELECT throws_ok($$SELECT dealrisk._eval_final(array_cat('{10,3,1,1,5}'::float8[], array_fill(0::float8, ARRAY[6000])))$$,
	'22000', 'invalid evaluation state array', 'an evaluation state whose bins do not add up');
SELECT throws_ok($$SELECT dealrisk.win_rate(true, a) FROM (VALUES (1e308::numeric), (1e308)) v(a)$$, '22003',
	'the closed amount total overflows adding deal amount ' || 1e308::numeric::text,
	'amount totals that overflow (the rate was NaN)');
CREATE AGGREGATE pg_temp.ci_merge(float8[]) (SFUNC = dealrisk._win_rate_ci_level_combine, STYPE = float8[], INITCOND = '{0,0,0}');
SELECT throws_ok($$SELECT pg_temp.ci_merge(s) FROM (VALUES ('{1,2,0.9}'::float8[]), ('{1,2,0.8}')) v(s)$$, '22023',
	'confidence level changed within a group: 0.9 then 0.8', 'partial states at two levels do not merge');
CREATE AGGREGATE pg_temp.count_merge(bigint[]) (SFUNC = dealrisk._int8_state_combine, STYPE = bigint[], INITCOND = '{}');
SELECT throws_ok($$SELECT pg_temp.count_merge(s) FROM (VALUES ('{9223372036854775807,1}'::bigint[]), ('{1,1}')) v(s)$$,
	'22003', 'count 9223372036854775807 + 1 overflows at state entry 1', 'counts that overflow when merged');
CREATE AGGREGATE pg_temp.no_init(boolean, float8) (SFUNC = dealrisk._win_rate_ci_level_accum, STYPE = float8[]);
SELECT throws_ok($$SELECT pg_temp.no_init(x, 0.9) FROM (VALUES (true)) v(x)$$, '22004', 'win_rate_ci state must not be NULL',
	'a NULL state is a user error, not an internal one');

-- settings are checked when set
SELECT throws_ok($$SET LOCAL dealrisk.as_of_date = 'infinity'$$, '22023',
	'invalid value for parameter "dealrisk.as_of_date": "infinity"', 'as_of_date refuses infinity');
SELECT throws_ok($$SET LOCAL dealrisk.as_of_date = 'someday'$$, '22023',
	'invalid value for parameter "dealrisk.as_of_date": "someday"', 'as_of_date refuses a non-date');
SELECT throws_ok($$SET LOCAL dealrisk.as_of_date = '2024-02-30'$$, '22023',
	'invalid value for parameter "dealrisk.as_of_date": "2024-02-30"', 'as_of_date refuses a day that does not exist');
SELECT throws_ok($$SET LOCAL dealrisk.as_of_date = 'today'$$, '22023',
	'invalid value for parameter "dealrisk.as_of_date": "today"', 'as_of_date refuses today (leave it empty)');
SELECT throws_ok($$SET LOCAL dealrisk.as_of_date = '2024-12-31 Nowhere/City'$$, '22023',
	'invalid value for parameter "dealrisk.as_of_date": "2024-12-31 Nowhere/City"',
	'as_of_date refuses a time zone name (an unknown one made the check raise)');
SELECT lives_ok($$SET LOCAL dealrisk.as_of_date = ''; SET LOCAL dealrisk.as_of_date = 'Dec 31 2024'$$,
	'as_of_date takes empty and a date');
SELECT is(current_setting('dealrisk.as_of_date'), 'Dec 31 2024', 'and keeps it as given');
SELECT throws_ok($$SET LOCAL dealrisk.won_labels = 'won,,closed won'$$, '22023',
	'invalid value for parameter "dealrisk.won_labels": "won,,closed won"', 'an empty label is refused');
SELECT throws_ok(format('SET LOCAL dealrisk.lost_labels = %L', (SELECT string_agg('l' || i, ',') FROM generate_series(1, 65) i)),
	'22023', NULL, 'more than 64 labels are refused');
SELECT lives_ok($$SET LOCAL dealrisk.open_labels = ''; SET LOCAL dealrisk.open_labels = 'open, pending'$$,
	'a blank label list and a plain one are accepted');
SELECT throws_ok($$SET LOCAL dealrisk.band_high = 'NaN'$$, '22023', NULL, 'a NaN band threshold is refused');
SELECT throws_ok($$SET LOCAL dealrisk.band_high = 101$$, '22023', NULL, 'a band threshold above 100 is refused');
SET LOCAL dealrisk.band_medium = 70;
SELECT throws_ok($$SELECT dealrisk.risk_band(50)$$, '22023',
	'risk band thresholds are out of order: dealrisk.band_medium = 70, dealrisk.band_high = 60, dealrisk.band_critical = 80',
	'risk_band() refuses thresholds out of order');
SET LOCAL dealrisk.band_high = 75;
SELECT is(dealrisk.risk_band(72), 'medium', 'thresholds set in order work');

-- The training split hash of a deal whose hashtext is INT_MIN: abs() of it
-- overflowed int4, and training without close dates failed on such data.
SELECT is(hashtext('D2410425962'), -2147483648, 'D2410425962 hashes to INT_MIN');
CREATE TABLE public.int_min_deals AS SELECT * FROM dealrisk.sample_deals(2000, 5);
UPDATE public.int_min_deals SET deal_id = 'D2410425962'
	WHERE deal_id = (SELECT min(deal_id) FROM public.int_min_deals WHERE outcome IS NOT NULL);
ALTER TABLE public.int_min_deals DROP COLUMN closed_date;
SET LOCAL client_min_messages = warning;
SELECT lives_ok($$SELECT dealrisk.train('public.int_min_deals', 'int_min', activate => false)$$,
	'training with a hash split over a deal whose hash is INT_MIN');

SELECT * FROM finish();
ROLLBACK;
