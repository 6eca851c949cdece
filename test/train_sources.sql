-- pgTAP: training on sources as real CRM exports are (issue #9): without
-- date columns, with numeric columns of non-linear effect, with columns that
-- leak the outcome, with an implausibly good holdout; and analysts who train
-- candidate models that only the operator may activate.
\ir harness/pgtap_setup.psql
SELECT plan(91);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TABLE base AS SELECT * FROM dealrisk.sample_deals(3000, 5);

-- A pseudo-random number in [0, 1) from a text, the same on every run.
CREATE FUNCTION pg_temp.u(t text) RETURNS float8 LANGUAGE sql IMMUTABLE AS
	$$ SELECT (abs(hashtext(t)::int8) % 100000) / 100000.0 $$;

-- Sources without dates ------------------------------------------------------
CREATE TABLE nodates AS SELECT deal_id, sales_rep_id, industry, region, product_type, lead_source,
	deal_stage, deal_amount, outcome FROM base;
SELECT lives_ok($$SELECT dealrisk.train('nodates', 'nodates', activate => false)$$,
	'train() on a source with neither created_date nor closed_date');
SELECT is((SELECT metrics->>'holdout_split' FROM dealrisk.models WHERE name = 'nodates'), 'deal_id hash',
	'... holds out a hash split of deal_id');
SELECT is((SELECT metrics->>'holdout_split_reason' FROM dealrisk.models WHERE name = 'nodates'),
	'the source has no closed_date column', '... and says why');
SELECT is((SELECT (metrics->>'recency_weighted')::boolean FROM dealrisk.models WHERE name = 'nodates'), false,
	'... weighs no deal by recency');
SELECT is((SELECT (feature_spec->>'recency_halflife_days')::float8 FROM dealrisk.models WHERE name = 'nodates'), 0::float8,
	'... and its spec says so');
SELECT is((SELECT array_agg(k ORDER BY k) FROM dealrisk.models, jsonb_object_keys(metrics->'features_left_out') k
	WHERE name = 'nodates'), ARRAY['activity_gap', 'cycle_days', 'stage_time'],
	'... leaves out the age, time in stage and activity gap');
SELECT is((SELECT metrics->'features_left_out'->>'cycle_days' FROM dealrisk.models WHERE name = 'nodates'),
	'the source has no created_date column, so the age of an open deal is unknown', '... saying why');
SELECT is((SELECT array_agg(f->>'name' ORDER BY f->>'name') FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f
	WHERE name = 'nodates'), ARRAY['deal_amount', 'industry', 'lead_source', 'product_type', 'region', 'rep_win_rate'],
	'... and keeps the other default features');
SELECT ok((SELECT (metrics->>'n_test')::float8 / ((metrics->>'won_total')::int + (metrics->>'lost_total')::int) BETWEEN 0.15 AND 0.25
	FROM dealrisk.models WHERE name = 'nodates'), '... about a fifth of the closed deals is held out');
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.55 FROM dealrisk.models WHERE name = 'nodates'),
	'... and the model still ranks deals');
-- scoring the dateless model on the dateless source
SELECT ok(dealrisk.activate((SELECT id FROM dealrisk.models WHERE name = 'nodates')), 'it activates');
SELECT is((SELECT count(*) FROM nodates d WHERE dealrisk.deal_risk(d.*, 'nodates') BETWEEN 0 AND 100),
	(SELECT count(*) FROM nodates), 'deal_risk scores every deal of the dateless source');
SELECT is((SELECT count(DISTINCT e.factor)::int FROM nodates d, dealrisk.deal_risk_explain(d.*, 'nodates') e
	WHERE d.deal_id = (SELECT min(deal_id) FROM nodates WHERE outcome IS NULL)), 6, 'deal_risk_explain explains it');
SELECT is((SELECT count(*) FROM nodates d WHERE outcome IS NULL AND dealrisk.recommended_action(d.*, 'nodates') IS NOT NULL),
	(SELECT count(*) FROM nodates WHERE outcome IS NULL), 'recommended_action gives every open deal an action');
SELECT ok((SELECT n = (SELECT count(*) FROM nodates WHERE outcome IS NOT NULL) AND auc > 0.55
	FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'nodates'), 'nodates')),
	'evaluate() measures it on the dateless source');
SELECT ok((SELECT count(*) > 0 FROM dealrisk.lost_lookalikes('nodates')),
	'lost_lookalikes() compares open deals with every lost deal when there is no closed_date');
SELECT throws_ok($$SELECT * FROM dealrisk.lost_lookalikes('nodates', '2024-01-01')$$, '42703',
	'lost_since needs a closed_date column, which source public.nodates lacks', '... and refuses a lost_since it cannot apply');
SELECT throws_ok($$SELECT dealrisk.train('nodates', 'x', features => ARRAY['industry', 'cycle_days'], activate => false)$$,
	'42703', 'feature "cycle_days" cannot be learned from public.nodates: the source has no created_date column, so the age of an open deal is unknown',
	'an age asked for explicitly from a dateless source is an error naming the missing column');

-- created_date without closed_date: an age needs how long closed deals took
CREATE TABLE created_only AS SELECT deal_id, created_date, sales_rep_id, industry, region, product_type, lead_source,
	deal_stage, deal_amount, outcome FROM base;
SELECT lives_ok($$SELECT dealrisk.train('created_only', 'created_only', activate => false)$$,
	'train() on a source with created_date but no closed_date');
SELECT is((SELECT metrics->>'holdout_split' || ' / ' || (metrics->'features_left_out'->>'cycle_days')
	FROM dealrisk.models WHERE name = 'created_only'),
	'deal_id hash / the source has neither closed_date nor sales_cycle_days, so how long a closed deal took is unknown',
	'... hash split, and no age: a closed deal''s cycle is unknown');
CREATE TABLE created_cycle AS SELECT deal_id, created_date, sales_cycle_days, sales_rep_id, industry, lead_source,
	deal_amount, outcome FROM base;
SELECT lives_ok($$SELECT dealrisk.train('created_cycle', 'created_cycle', activate => false)$$,
	'train() on created_date and sales_cycle_days without closed_date');
SELECT ok((SELECT feature_spec::text LIKE '%"age_days"%' AND NOT metrics->'features_left_out' ? 'cycle_days'
	FROM dealrisk.models WHERE name = 'created_cycle'), '... learns the age from them');
SELECT dealrisk.activate(id, force => true) FROM dealrisk.models WHERE name = 'created_cycle' \g /dev/null
SELECT ok((SELECT count(*) = (SELECT count(*) FROM created_cycle) FROM created_cycle d
	WHERE dealrisk.deal_risk(d.*, 'created_cycle') IS NOT NULL), '... and scores with it');
-- closed_date without created_date: split by date, weighted, no age
CREATE TABLE closed_only AS SELECT deal_id, closed_date, sales_rep_id, industry, region, product_type, lead_source,
	deal_stage, deal_amount, outcome, last_activity_date FROM base;
SELECT lives_ok($$SELECT dealrisk.train('closed_only', 'closed_only', activate => false)$$,
	'train() on a source with closed_date but no created_date');
SELECT is((SELECT metrics->>'holdout_split' || ' / ' || (metrics->>'recency_weighted') || ' / ' ||
	(SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(metrics->'features_left_out') k)
	FROM dealrisk.models WHERE name = 'closed_only'), 'closed_date / true / cycle_days,stage_time',
	'... holds out the newest closes, weighs by recency, leaves out age and time in stage');
SELECT ok((SELECT feature_spec::text LIKE '%"activity_gap"%' FROM dealrisk.models WHERE name = 'closed_only'),
	'... and keeps the activity gap, which runs to the close');
SELECT dealrisk.activate(id, force => true) FROM dealrisk.models WHERE name = 'closed_only' \g /dev/null
SELECT ok((SELECT count(*) = (SELECT count(*) FROM closed_only) FROM closed_only d
	WHERE dealrisk.deal_risk(d.*, 'closed_only') IS NOT NULL), '... and it scores the source');

-- Numeric columns: bins by default, :linear on request ------------------------
-- x wins in the middle of its range and loses at both ends: a straight
-- line cannot say that, bins can
CREATE TABLE curve AS
	SELECT 'C' || lpad(i::text, 5, '0') AS deal_id, x, bucket,
	       CASE WHEN i % 10 = 0 THEN NULL
	            WHEN pg_temp.u('o' || i) < CASE WHEN x BETWEEN 30 AND 70 THEN 0.75 ELSE 0.25 END THEN 'Won' ELSE 'Lost' END AS outcome
	FROM (SELECT i, round((100 * pg_temp.u('x' || i))::numeric, 2) AS x, (i % 3)::text AS bucket
	      FROM generate_series(1, 3000) i) s;
SELECT lives_ok($$SELECT dealrisk.train('curve', 'binned', features => ARRAY['x', 'bucket'], activate => false, method => 'logistic')$$,
	'a numeric column named in features');
SELECT is((SELECT f->>'kind' FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f
	WHERE name = 'binned' AND f->>'name' = 'x'), 'bins', '... enters as quantile bins by default');
SELECT is((SELECT jsonb_array_length(f->'edges') FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f
	WHERE name = 'binned' AND f->>'name' = 'x'), 4, '... quintiles, like the deal amount');
SELECT lives_ok($$SELECT dealrisk.train('curve', 'linear', features => ARRAY['x:linear', 'bucket'], activate => false, method => 'logistic')$$,
	'the same column with :linear');
SELECT is((SELECT f->>'kind' FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f
	WHERE name = 'linear' AND f->>'name' = 'x'), 'numeric', '... enters as one standardised number');
SELECT lives_ok($$SELECT dealrisk.train('curve', 'binned2', features => ARRAY['x: Bins ', 'bucket'], activate => false, method => 'logistic')$$,
	':bins, in any case and spacing');
SELECT is((SELECT feature_spec FROM dealrisk.models WHERE name = 'binned2'),
	(SELECT feature_spec FROM dealrisk.models WHERE name = 'binned'), '... is the default');
SELECT ok((SELECT (b.metrics->>'auc')::float8 > (l.metrics->>'auc')::float8 + 0.1
	FROM dealrisk.models b, dealrisk.models l WHERE b.name = 'binned' AND l.name = 'linear'),
	'with a non-linear effect, binned entry beats linear entry on holdout AUC');
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.65 FROM dealrisk.models WHERE name = 'binned'),
	'... and finds the effect');
SELECT throws_ok($$SELECT dealrisk.train('curve', 'x', features => ARRAY['x:log'], activate => false)$$,
	'22023', 'unknown entry "log" in feature "x:log"', 'an unknown entry is an error naming it');
SELECT throws_ok($$SELECT dealrisk.train('curve', 'x', features => ARRAY['bucket:linear'], activate => false)$$,
	'22023', 'feature "bucket:linear": only a numeric column of public.curve can be entered as linear, and "bucket" is of type text',
	'... and so is an entry for a text column');
SELECT throws_ok($$SELECT dealrisk.train('base', 'x', features => ARRAY['cycle_days:linear'], activate => false)$$,
	'22023', 'feature "cycle_days:linear": only a numeric column of public.base can be entered as linear, and "cycle_days" is a derived feature (always bins)',
	'... or a derived feature');
SELECT throws_ok($$SELECT dealrisk.train('curve', 'x', features => ARRAY['x', 'x:linear'], activate => false)$$,
	'22023', 'feature "x" is named twice', 'a column named twice');
SELECT throws_ok($$SELECT dealrisk.train('curve', 'x', features => ARRAY['x', NULL], activate => false)$$,
	'22023', 'a feature name must not be NULL or empty, got NULL', 'a NULL feature name');
CREATE TABLE colon AS SELECT deal_id, x AS "a:linear", outcome FROM curve;
SELECT lives_ok($$SELECT dealrisk.train('colon', 'colon', features => ARRAY['a:linear'], activate => false)$$,
	'a column whose name has a colon is taken whole');
SELECT is((SELECT f->>'kind' FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f WHERE name = 'colon'),
	'bins', '... and binned');

-- Outcome leaks -------------------------------------------------------------
-- close_value: the amount on won deals, 0 on lost ones, empty on open ones
-- (Maven's); close_reason: filled only at close; crm_status: filled on
-- every deal, but one value on won and another on lost deals; discount: a
-- number that tells won from lost; rep: a strong but honest rep
CREATE TABLE leaky AS
	SELECT b.*,
	       CASE WHEN dealrisk.is_won(outcome) THEN deal_amount WHEN NOT dealrisk.is_won(outcome) THEN 0 END AS close_value,
	       CASE WHEN dealrisk.is_won(outcome) THEN 'Signed' WHEN NOT dealrisk.is_won(outcome)
	            THEN (ARRAY['Price', 'Timing', 'Competitor'])[1 + abs(hashtext(deal_id)) % 3] END AS close_reason,
	       CASE WHEN dealrisk.is_won(outcome) THEN 'Booked' WHEN NOT dealrisk.is_won(outcome) THEN 'Dead'
	            ELSE (ARRAY['Working', 'Dead', 'Booked'])[1 + abs(hashtext(deal_id)) % 3] END AS crm_status,
	       CASE WHEN dealrisk.is_won(outcome) THEN 10 + 10 * pg_temp.u('d' || deal_id)
	            ELSE 10 * pg_temp.u('d' || deal_id) END::float8 AS discount
	FROM base b;
-- non-finite and empty numbers are read as missing
UPDATE leaky SET discount = 'NaN' WHERE deal_id IN (SELECT deal_id FROM leaky ORDER BY deal_id LIMIT 5);
UPDATE leaky SET discount = 'Infinity' WHERE deal_id IN (SELECT deal_id FROM leaky ORDER BY deal_id DESC LIMIT 5);
UPDATE leaky SET close_value = 'NaN' WHERE deal_id IN (SELECT deal_id FROM leaky WHERE outcome IS NULL ORDER BY deal_id LIMIT 3);
SELECT results_eq($$SELECT feature, split_part(reason, ':', 1) FROM dealrisk._feature_leaks('leaky',
		ARRAY['industry', 'close_value', 'close_reason', 'crm_status', 'discount', 'sales_rep_id', 'lead_source', 'deal_amount:linear'])$$,
	$$VALUES ('close_value', 'it is filled on 100% of the closed deals but on 0% of the 322 open deals'),
	         ('close_reason', 'it is filled on 100% of the closed deals but on 0% of the 322 open deals'),
	         ('crm_status', 'its value alone separates won from lost closed deals almost perfectly (single-feature AUC 1.000 over 2678 closed deals)'),
	         ('discount', 'its value alone separates won from lost closed deals almost perfectly (single-feature AUC 0.993 over 2678 closed deals)')$$,
	'_feature_leaks finds the columns filled at close and those that alone tell won from lost, and nothing else');
SELECT alike((SELECT reason FROM dealrisk._feature_leaks('leaky', ARRAY['close_value'])),
	'%written when a deal closes, so it is unknown for the deals to be scored; and its value alone separates won from lost%',
	'... giving every reason that applies');
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('leaky')), 0::bigint,
	'the contract''s feature columns of the sample do not leak');
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('leaky', '{}')), 0::bigint, 'no feature, no leak');
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('leaky', ARRAY['cycle_days', 'nonsense', 'created_date'])), 0::bigint,
	'derived features and columns no feature can be are not its business');
SELECT throws_ok($$SELECT * FROM dealrisk._feature_leaks(NULL)$$, '22004', 'source must not be NULL', 'a NULL source');
UPDATE leaky SET discount = NULL;
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('leaky', ARRAY['discount'])), 0::bigint,
	'a column that is always empty does not leak');
CREATE VIEW maven AS SELECT deal_id, created_date, closed_date, sales_rep_id, industry, lead_source,
	close_value AS deal_amount, outcome FROM leaky;
SELECT lives_ok($$SELECT dealrisk.train('maven', 'maven', activate => false)$$,
	'train() on a close value mapped as deal_amount');
SELECT ok((SELECT metrics->'features_left_out'->>'deal_amount' LIKE 'outcome leak: it is filled on 100%% of the closed deals%'
	AND feature_spec::text NOT LIKE '%deal_amount%' FROM dealrisk.models WHERE name = 'maven'),
	'... leaves it out and says why in the metrics');
SELECT ok((SELECT (metrics->>'auc')::float8 < 0.9 FROM dealrisk.models WHERE name = 'maven'),
	'... so the holdout AUC is what the honest features give');
SELECT lives_ok($$SELECT dealrisk.train('leaky', 'leaky', features => ARRAY['industry', 'crm_status', 'sales_rep_id', 'close_reason'],
	activate => false)$$, 'train() with two leaking features named explicitly');
SELECT is((SELECT array_agg(f->>'name' ORDER BY f->>'name') FROM dealrisk.models, jsonb_array_elements(feature_spec->'features') f
	WHERE name = 'leaky'), ARRAY['industry', 'rep_win_rate'], '... trains on the others');
SELECT throws_ok($$SELECT dealrisk.train('leaky', 'x', features => ARRAY['crm_status', 'close_value'], activate => false)$$,
	'22000', 'every feature of public.leaky leaks the outcome: nothing is left to train on',
	'train() refuses when every feature leaks');

-- strong but honest features are kept: one rep wins 70% of deals, the rest
-- 35%; referrals win 80%, cold calls 15%
CREATE TABLE honest AS
	SELECT 'H' || lpad(i::text, 5, '0') AS deal_id, rep AS sales_rep_id, src AS lead_source,
	       CASE WHEN i % 8 = 0 THEN NULL
	            WHEN pg_temp.u('h' || i) < CASE WHEN rep = 'ace' THEN 0.7 ELSE 0.35 END THEN 'Won' ELSE 'Lost' END AS outcome,
	       CASE WHEN i % 8 = 0 THEN NULL
	            WHEN pg_temp.u('s' || i) < CASE src WHEN 'Referral' THEN 0.8 WHEN 'Cold' THEN 0.15 ELSE 0.5 END THEN 'Won' ELSE 'Lost' END AS outcome2
	FROM (SELECT i, CASE WHEN i % 5 = 0 THEN 'ace' ELSE 'rep_' || (i % 7) END AS rep,
	             (ARRAY['Referral', 'Cold', 'Web'])[1 + i % 3] AS src FROM generate_series(1, 3000) i) s;
SELECT is((SELECT round(avg(dealrisk.is_won(outcome)::int), 1) FROM honest WHERE sales_rep_id = 'ace'), 0.7,
	'the fixture''s ace wins 70%');
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('honest', ARRAY['sales_rep_id', 'lead_source'])), 0::bigint,
	'a rep winning 70% is not a leak');
CREATE VIEW honest2 AS SELECT deal_id, sales_rep_id, lead_source, outcome2 AS outcome FROM honest;
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('honest2', ARRAY['sales_rep_id', 'lead_source'])), 0::bigint,
	'nor a lead source whose deals win 80% against 15%');
SELECT lives_ok($$SELECT dealrisk.train('honest', 'honest', features => ARRAY['sales_rep_id', 'lead_source'], activate => false)$$,
	'train() on the strong honest features');
SELECT is((SELECT metrics->'features_left_out' FROM dealrisk.models WHERE name = 'honest'), '{}'::jsonb,
	'... leaves none of them out');

-- An implausibly good holdout is not activated without force ----------------
-- each of x1, x2 alone ranks deals fairly; together they decide every
-- outcome, as no CRM field honestly can
CREATE TABLE too_good AS
	SELECT 'T' || lpad(i::text, 5, '0') AS deal_id, x1, x2, CASE WHEN x1 + x2 > 1 THEN 'Won' ELSE 'Lost' END AS outcome
	FROM (SELECT i, pg_temp.u('a' || i) AS x1, pg_temp.u('b' || i) AS x2 FROM generate_series(1, 2000) i) s;
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('too_good', ARRAY['x1', 'x2'])), 0::bigint,
	'no single feature of the fixture leaks');
SET LOCAL client_min_messages = error;	-- the WARNING that it is not activated
SELECT lives_ok($$SELECT dealrisk.train('too_good', 'too_good', features => ARRAY['x1:linear', 'x2:linear'])$$,
	'train() on features that together decide the outcome');
SET LOCAL client_min_messages = warning;
SELECT ok((SELECT (metrics->>'auc')::float8 > 0.95 FROM dealrisk.models WHERE name = 'too_good'), '... holdout AUC above 0.95');
SELECT is((SELECT active FROM dealrisk.models WHERE name = 'too_good'), false, '... so the model is stored but not activated');
SELECT throws_like($$SELECT dealrisk.activate(id) FROM dealrisk.models WHERE name = 'too_good'$$,
	'model % ("too_good") was not activated: its holdout AUC % is implausibly high for CRM data (above dealrisk.max_plausible_auc = 0.95): a feature most likely records the outcome%',
	'activate() refuses it, saying why');
SELECT ok((SELECT dealrisk.activate(id, force => true) FROM dealrisk.models WHERE name = 'too_good'), 'force activates it');
SELECT is((SELECT forced FROM dealrisk.model_activations a JOIN dealrisk.models m ON m.id = a.model_id WHERE m.name = 'too_good'),
	true, '... and the activation is recorded as forced');
SET LOCAL dealrisk.max_plausible_auc = 1;
SELECT is(dealrisk._quality_problem('{"auc": 0.999, "brier": 0.01, "brier_base": 0.25}'), NULL,
	'dealrisk.max_plausible_auc = 1 turns the check off');
SET LOCAL dealrisk.max_plausible_auc = 0.6;
SELECT alike(dealrisk._quality_problem('{"auc": 0.65, "brier": 0.2, "brier_base": 0.25}'),
	'its holdout AUC 0.650 is implausibly high for CRM data (above dealrisk.max_plausible_auc = 0.6)%', '... and a lower one applies');
RESET dealrisk.max_plausible_auc;
SELECT throws_ok($$SET LOCAL dealrisk.max_plausible_auc = 0.4$$, '22023', NULL, 'a threshold below 0.5 is refused');

-- Analysts train candidates; the operator activates ---------------------------
-- (the grants of docs/security.md, "Analysts who train candidate models")
CREATE ROLE dealrisk_t_analyst NOLOGIN;
CREATE ROLE dealrisk_t_operator NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO dealrisk_t_analyst, dealrisk_t_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk TO dealrisk_t_analyst;
GRANT SELECT ON base, nodates TO dealrisk_t_analyst;
GRANT EXECUTE ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb),
	dealrisk._census(regclass, text, text, boolean),
	dealrisk._build_spec(regclass, text[], text, regclass),
	dealrisk._quantile_edges(regclass, text, text, float8[]),
	dealrisk._raw_expr(regclass, text, jsonb),
	dealrisk._feature_raw(jsonb, regtype, text[], "any"),
	dealrisk._fit(regclass, jsonb, text, int, date, date, float8, float8, float8[], float8, jsonb, date, float8),
	dealrisk._validate_model(jsonb, float8[]),
	dealrisk._irls_pass(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._irls_solve(float8[], float8[], float8),
	dealrisk._open_knots(regclass, regclass, text, text),
	dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),
	dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_step(jsonb, float8[], float8[], boolean),
	dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._irls_decrement(float8[], float8[], float8[], float8),
	dealrisk._gbm_params(jsonb),
	dealrisk._features_with(jsonb, text, jsonb),
	dealrisk._eval_pair(jsonb, float8[], jsonb, float8[], int, date, regtype, text[], "any"),
	dealrisk._gbm_train(regclass, regclass, text, jsonb, jsonb, date, text, date, float8, jsonb),
	dealrisk._gbm_pass(boolean, jsonb, float8[], int, date, date, float8, regtype, text[], "any")
	TO dealrisk_t_analyst;
GRANT INSERT (name, source, feature_spec, coefficients, metrics) ON dealrisk.models TO dealrisk_t_analyst;
GRANT USAGE ON SEQUENCE dealrisk.models_id_seq TO dealrisk_t_analyst;
-- the operator as docs/security.md sets it up
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk TO dealrisk_t_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dealrisk TO dealrisk_t_operator;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dealrisk TO dealrisk_t_operator;
GRANT SELECT ON base TO dealrisk_t_operator;

CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	res text;
BEGIN
	BEGIN
		EXECUTE format('SET LOCAL ROLE %I', r);
		EXECUTE q INTO res;
		res := 'value=' || coalesce(res, 'NULL');
		RESET ROLE;
	EXCEPTION WHEN OTHERS THEN
		res := 'error=' || SQLSTATE || ': ' || SQLERRM;
	END;
	RETURN res;
END
$$;
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.train('base', 'default')$$),
	'error=42501: role dealrisk_t_analyst may train models but not activate them',
	'an analyst''s train() with activation is refused before any work');
SELECT alike(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.train('base', 'default', activate => false)$$),
	'value=%', 'an analyst trains a candidate with activate => false');
SELECT is((SELECT active::text || ' ' || trained_by FROM dealrisk.models WHERE trained_by = 'dealrisk_t_analyst'),
	'false dealrisk_t_analyst', '... stored inactive, and the model says who trained it');
SELECT alike(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.train('nodates', 'nd', activate => false)$$),
	'value=%', '... also on a source without dates');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.activate(max(id)) FROM dealrisk.models$$),
	'error=42501: permission denied for function activate', 'the analyst cannot activate');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.rollback()$$),
	'error=42501: permission denied for function rollback', '... nor roll back');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$UPDATE dealrisk.models SET active = true WHERE trained_by = 'dealrisk_t_analyst' RETURNING id$$),
	'error=42501: permission denied for table models', '... nor set a model active');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$UPDATE dealrisk.models SET coefficients = coefficients WHERE name = 'nodates' RETURNING id$$),
	'error=42501: permission denied for table models', '... nor overwrite one');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$DELETE FROM dealrisk.models WHERE name = 'nodates' RETURNING id$$),
	'error=42501: permission denied for table models', '... nor delete one');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$INSERT INTO dealrisk.models (name, feature_spec, coefficients, active)
	VALUES ('default', '{"features": []}', '{0}', true) RETURNING id$$),
	'error=42501: permission denied for table models', '... nor store a model as active');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$INSERT INTO dealrisk.models (id, name, feature_spec, coefficients)
	VALUES (1, 'x', '{"features": []}', '{0}') RETURNING id$$),
	'error=42501: permission denied for table models', '... nor choose its id');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$INSERT INTO dealrisk.models (name, feature_spec, coefficients, trained_by)
	VALUES ('x', '{"features": []}', '{0}', 'dealrisk_t_operator') RETURNING id$$),
	'error=42501: permission denied for table models', '... nor pass a model off as another role''s');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$INSERT INTO dealrisk.model_activations (name, model_id) VALUES ('default', 1) RETURNING 1$$),
	'error=42501: permission denied for table model_activations', '... nor write the activation history');
SELECT is(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.import_model(dealrisk.export_model(max(id)), 'imp') FROM dealrisk.models$$),
	'error=42501: permission denied for function import_model', '... nor import models');
-- the analyst's own view with its own function: the operator's train()
-- does not run it
CREATE SCHEMA analyst_s;
GRANT USAGE, CREATE ON SCHEMA analyst_s TO dealrisk_t_analyst;
GRANT USAGE ON SCHEMA analyst_s TO dealrisk_t_operator;
SET LOCAL ROLE dealrisk_t_analyst;
CREATE FUNCTION analyst_s.peek(t text) RETURNS text LANGUAGE sql AS $$ SELECT t $$;
CREATE VIEW analyst_s.deals AS SELECT deal_id, analyst_s.peek(industry) AS industry, lead_source, outcome FROM public.base;
GRANT SELECT ON analyst_s.deals TO dealrisk_t_operator;
RESET ROLE;
SELECT alike(pg_temp.as_role('dealrisk_t_operator', $$SELECT dealrisk.train('analyst_s.deals', 'bait', activate => false)$$),
	'error=42501: %dealrisk_t_analyst%', 'the operator''s train() refuses a source the analyst owns (it would run her code)');
-- the operator activates the analyst's candidate
SELECT is(pg_temp.as_role('dealrisk_t_operator', $$SELECT dealrisk.activate(id) FROM dealrisk.models WHERE trained_by = 'dealrisk_t_analyst' AND name = 'default'$$),
	'value=true', 'the operator activates the analyst''s candidate');
SELECT is((SELECT trained_by FROM dealrisk.models WHERE name = 'default' AND active), 'dealrisk_t_analyst',
	'... which is now the active default model');

-- point-in-time training (issue #14) by the analyst, with the two grants
-- docs/security.md adds for it
CREATE TABLE pit_base AS SELECT * FROM dealrisk.sample_pipeline(2000, 5);
CREATE TABLE pit_hist AS SELECT * FROM dealrisk.sample_stage_history(2000, 5);
GRANT SELECT ON pit_base, pit_hist TO dealrisk_t_analyst;
SELECT alike(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.train('pit_base', history => 'pit_hist', name => 'pit', activate => false)$$),
	'error=42501: permission denied for function train%', 'point-in-time training needs its own grant');
GRANT EXECUTE ON FUNCTION dealrisk.train(regclass, regclass, text, text[], float8, float8, boolean, text, jsonb),
	dealrisk._pit_rows(regclass, regclass, text) TO dealrisk_t_analyst;
SELECT alike(pg_temp.as_role('dealrisk_t_analyst', $$SELECT dealrisk.train('pit_base', history => 'pit_hist', name => 'pit', activate => false)$$),
	'value=%', '... with it the analyst trains a point-in-time candidate');
SELECT is((SELECT row(source, trained_by, active)::text FROM dealrisk.models WHERE name = 'pit'),
	row('pit_base_point_in_time_' || 'pit_base'::regclass::oid, 'dealrisk_t_analyst', false)::text, '... stored inactive, as hers');

SELECT * FROM finish();
ROLLBACK;
