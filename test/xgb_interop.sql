-- pgTAP: an xgboost model (test/data/xgb_small.json, 20 trees of depth 3
-- saved by python3-xgboost 1.7.4 with Booster.save_model; made by
-- test/bench/make_xgb_reference.py) walked by dealrisk's own tree code:
-- the margins and the TreeSHAP contributions of 50 cases
-- (test/data/xgb_small_cases.csv, xgboost's output_margin and
-- pred_contribs) agree to 1e-6 (xgboost sums in float4).  No xgboost is
-- needed to run it: the reference numbers are in the files.
\ir harness/pgtap_setup.psql
SELECT plan(15);

\ir harness/error_of.psql

\set xgb `cat test/data/xgb_small.json`
CREATE TEMP TABLE xj AS SELECT :'xgb'::jsonb -> 'learner' AS j;
CREATE TEMP TABLE cases (case_id text, deal_amount float8, cycle_days float8, activity_gap float8,
	created_month float8, amount_per_day float8, margin float8, prob float8,
	c1 float8, c2 float8, c3 float8, c4 float8, c5 float8, bias float8);
\copy cases FROM 'test/data/xgb_small_cases.csv' WITH (FORMAT csv, HEADER true)

-- the trees in dealrisk's flattened layout: a leaf's value is its
-- split_condition, a node's cover its sum_hessian
CREATE TEMP TABLE ens AS
WITH t AS (
	SELECT e.tr, e.o
	FROM xj, jsonb_array_elements(xj.j -> 'gradient_booster' -> 'model' -> 'trees') WITH ORDINALITY AS e(tr, o)
), n AS (
	SELECT t.o, k.i, (t.tr -> 'left_children' ->> k.i)::int AS l, (t.tr -> 'right_children' ->> k.i)::int AS r,
		   (t.tr -> 'split_indices' ->> k.i)::int AS f, (t.tr -> 'split_conditions' ->> k.i)::float8 AS c,
		   (t.tr -> 'default_left' ->> k.i)::int = 1 AS dl, (t.tr -> 'sum_hessian' ->> k.i)::float8 AS h
	FROM t, generate_series(0, jsonb_array_length(t.tr -> 'left_children') - 1) AS k(i)
), s AS (
	SELECT n.o, (sum(count(*)) OVER (ORDER BY n.o) - count(*))::int AS start FROM n GROUP BY n.o
)
SELECT (SELECT array_agg(s.start ORDER BY s.o) FROM s) AS start,
	   array_agg(n.l ORDER BY n.o, n.i) AS l, array_agg(n.r ORDER BY n.o, n.i) AS r,
	   array_agg(CASE WHEN n.l >= 0 THEN n.f ELSE 0 END ORDER BY n.o, n.i) AS f,
	   array_agg(CASE WHEN n.l >= 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i) AS th,
	   array_agg(n.dl ORDER BY n.o, n.i) AS dl,
	   array_agg(CASE WHEN n.l < 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i) AS v,
	   array_agg(n.h ORDER BY n.o, n.i) AS cv,
	   (SELECT ln(b / (1 - b)) FROM (SELECT (xj.j -> 'learner_model_param' ->> 'base_score')::float8 AS b FROM xj) x) AS base
FROM n;
CREATE TEMP TABLE got AS
SELECT c.*, dealrisk._trees_predict(e.start, e.l, e.r, e.f, e.th, e.dl, e.v, e.cv, e.base, x.x) AS m,
	   dealrisk._trees_shap(e.start, e.l, e.r, e.f, e.th, e.dl, e.v, e.cv, e.base, x.x) AS phi
FROM cases c, ens e,
	 LATERAL (SELECT ARRAY[c.deal_amount, c.cycle_days, c.activity_gap, c.created_month, c.amount_per_day] AS x) x;

SELECT is((SELECT count(*) FROM got), 50::bigint, 'the 50 reference cases are loaded');
SELECT cmp_ok((SELECT max(abs(m - margin)) FROM got), '<', 1e-6::float8,
	'margins agree with xgboost''s output_margin to 1e-6 (missing values and values on thresholds included)');
SELECT cmp_ok((SELECT max(greatest(abs(phi[1] - c1), abs(phi[2] - c2), abs(phi[3] - c3), abs(phi[4] - c4), abs(phi[5] - c5)))
			   FROM got), '<', 1e-6::float8,
	'per-feature contributions agree with xgboost''s pred_contribs to 1e-6');
SELECT cmp_ok((SELECT max(abs(phi[6] - bias)) FROM got), '<', 1e-6::float8, '... and so does the bias (the expected margin)');

-- import_model reads the same file as a tree model; deal_risk scores rows
-- with it like xgboost, and deal_risk_explain's effects come from TreeSHAP
CREATE TABLE xgb_deals AS
	SELECT case_id AS deal_id, deal_amount AS amount, cycle_days, activity_gap, created_month, amount_per_day, 'Open'::text AS outcome
	FROM cases;
SELECT dealrisk.import_model(jsonb_build_object('format', 'xgboost/json', 'model', :'xgb'::jsonb,
	'columns', '{"deal_amount": "amount", "cycle_days": "cycle_days", "activity_gap": "activity_gap",
				 "created_month": "created_month", "amount_per_day": "amount_per_day"}'::jsonb), 'xgb') AS xgb_id \gset
SELECT is((SELECT feature_spec ? 'trees' AND coefficients = ARRAY[(SELECT ln(b / (1 - b)) FROM (SELECT (xj.j -> 'learner_model_param' ->> 'base_score')::float8 AS b FROM xj) x)]
		   FROM dealrisk.models WHERE id = :xgb_id), true, 'import_model stores the trees and the base margin');
SELECT is((pg_temp.error_of(format('SELECT dealrisk.activate(%s)', :xgb_id))).state, '23514',
	'the quality gate holds an imported model without holdout metrics back...');
SELECT lives_ok(format('SELECT dealrisk.activate(%s, force => true)', :xgb_id), '... until it is activated with force');
SELECT cmp_ok((SELECT max(abs(dealrisk.deal_risk(d.*, 'xgb') - 100 * (1 - 1 / (1 + exp(-c.margin)))))
			   FROM xgb_deals d JOIN cases c ON c.case_id = d.deal_id), '<', 1e-4::float8,
	'deal_risk(d.*, ''xgb'') is 100 x (1 - xgboost''s probability) on all 50 cases (to 1e-4 risk points)');
SELECT is((SELECT count(*) FROM xgb_deals d JOIN got g ON g.case_id = d.deal_id,
			LATERAL (SELECT e.factor, e.effect FROM dealrisk.deal_risk_explain(d.*, 'xgb') e ORDER BY abs(e.effect) DESC LIMIT 1) top
		   WHERE top.factor <> (SELECT n FROM unnest(ARRAY['deal_amount', 'cycle_days', 'activity_gap', 'created_month', 'amount_per_day'], g.phi[1:5])
									AS u(n, p) ORDER BY abs(p) DESC LIMIT 1)), 0::bigint,
	'the top factor of deal_risk_explain is the feature with the largest TreeSHAP contribution, on every case');
SELECT is((SELECT count(*) FROM xgb_deals d, dealrisk.deal_risk_explain(d.*, 'xgb') e
		   WHERE e.reason LIKE '%average%' OR e.reason !~ '(raises|lowers) the chance to win$|is missing$'), 0::bigint,
	'a tree model''s reasons say what each value does, without an average it does not have');
-- export_model writes the trees in dealrisk's own format; importing that
-- gives a model that scores the same
SELECT dealrisk.import_model(dealrisk.export_model(:xgb_id), 'xgb_copy') AS copy_id \gset
SELECT lives_ok(format('SELECT dealrisk.activate(%s, force => true)', :copy_id), 'the exported copy imports and activates');
SELECT is((SELECT count(*) FROM xgb_deals d WHERE dealrisk.deal_risk(d.*, 'xgb_copy') IS DISTINCT FROM dealrisk.deal_risk(d.*, 'xgb')),
	0::bigint, 'export and import keep every score to the last bit');
SELECT is((pg_temp.error_of(format($q$SELECT dealrisk.import_model(jsonb_build_object('format', 'xgboost/json', 'model', %L::jsonb,
	'columns', '{"deal_amount": "amount"}'::jsonb), 'xgb2')$q$, :'xgb'))).msg,
	'xgboost features without a column: cycle_days, activity_gap, created_month, amount_per_day', 'an unmapped feature is named');
SELECT is((pg_temp.error_of($q$SELECT dealrisk.import_model('{"format": "xgboost/json", "model": {"learner": {}}, "columns": {}}', 'xgb3')$q$)).state,
	'22023', 'a JSON that is no xgboost model: 22023');
SELECT is((pg_temp.error_of(format($q$SELECT dealrisk.import_model(jsonb_build_object('format', 'dealrisk-model/1', 'coefficients', '[0]'::jsonb,
	'spec', (SELECT feature_spec FROM dealrisk.models WHERE id = %s) #- '{trees,cover,0}'), 'xgb4')$q$, :xgb_id))).msg,
	'model "(import)" is invalid: the tree arrays differ in length or hold nulls', 'a tree model with a short array is refused');

SELECT * FROM finish();
