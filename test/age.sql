-- pgTAP: open deals scored by their age and time in stage (issue #9,
-- section 2): the survivor curves, deals older than every closed one, NULL
-- and infinite dates, old models without curves, and explanations that
-- print numbers for people (section 6).
\ir harness/pgtap_setup.psql
SELECT plan(33);

SET LOCAL dealrisk.as_of_date = '2025-06-30';

-- 600 closed deals with cycles of 10 to 138 days (each length about 4.7
-- times) and 2 to 41 days in their last stage, then open deals that differ
-- only in their age, or only in their time in stage.  In age_lose slow
-- deals and long stays lose; in age_win (the shape of issue #9's example)
-- slow deals win more often.
CREATE FUNCTION pg_temp.age_fixture(slow_wins boolean)
RETURNS TABLE (deal_id text, created_date date, closed_date date, industry text, deal_stage text,
               deal_amount numeric, outcome text, stage_entered_date date)
LANGUAGE sql AS $$
	SELECT 'C' || lpad(i::text, 4, '0'), created, created + cycle, (ARRAY['A', 'B', 'C'])[1 + i % 3],
	       (ARRAY['Qualified', 'Demo', 'Proposal'])[1 + (i / 3) % 3], 1000 + (i * 53) % 5000,
	       CASE WHEN u < CASE WHEN slow_wins THEN 0.2 + 0.6 * (cycle - 10) / 128.0
	                          ELSE 0.8 - 0.5 * (cycle - 10) / 128.0 - 0.3 * (stay > 25)::int END
	            THEN 'Won' ELSE 'Lost' END,
	       created + cycle - least(stay, cycle)
	FROM (SELECT i, DATE '2023-01-01' + (i * 7) % 600 AS created, 10 + (i * 37) % 129 AS cycle,
	             2 + (i * 13) % 40 AS stay, ((i * 7919) % 100) / 100.0 AS u
	      FROM generate_series(1, 600) i) x
	UNION ALL
	SELECT 'OA' || lpad(age::text, 3, '0'), DATE '2025-06-30' - age, NULL, 'A', 'Demo', 102292, NULL,
	       DATE '2025-06-30' - least(age, 5)
	FROM unnest(ARRAY[3, 5, 20, 60, 100, 138, 139, 200, 423]) age
	UNION ALL
	SELECT 'OS' || lpad(days::text, 3, '0'), DATE '2025-06-30' - 400, NULL, 'A', 'Demo', 102292, NULL,
	       DATE '2025-06-30' - days
	FROM unnest(ARRAY[1, 10, 30, 60, 399]) days
	UNION ALL
	SELECT 'ON' || k, c, NULL, 'A', 'Demo', 102292, NULL, DATE '2025-06-30' - 5
	FROM unnest(ARRAY[NULL, 'infinity', '-infinity']::date[]) WITH ORDINALITY AS t(c, k)
$$;
CREATE TABLE public.age_lose AS SELECT * FROM pg_temp.age_fixture(false);
CREATE TABLE public.age_win AS SELECT * FROM pg_temp.age_fixture(true);

SET LOCAL client_min_messages = error;
SELECT dealrisk.train('public.age_lose', 'age_lose', ARRAY['industry', 'deal_amount', 'cycle_days', 'stage_time'],
	activate => false, method => 'logistic') AS lose_id \gset
SELECT dealrisk.train('public.age_win', 'age_win', ARRAY['industry', 'deal_amount', 'cycle_days', 'stage_time'],
	activate => false, method => 'logistic') AS win_id \gset
SET LOCAL client_min_messages = warning;
\o /dev/null
SELECT dealrisk.activate(:lose_id, force => true), dealrisk.activate(:win_id, force => true);

-- the same models without their survivor curves: how 0.2.0 scored
SELECT dealrisk.import_model(jsonb_set(e, '{spec,features}', (
	SELECT jsonb_agg(f - '{open_knots,open_terms,open_closed,open_won,longest,quantiles}'::text[] ORDER BY o)
	FROM jsonb_array_elements(e->'spec'->'features') WITH ORDINALITY x(f, o))), n || '_bins') AS id
FROM (VALUES (dealrisk.export_model(:lose_id), 'age_lose'), (dealrisk.export_model(:win_id), 'age_win')) v(e, n);
SELECT dealrisk.activate(id, force => true) FROM dealrisk.models WHERE name LIKE '%\_bins';
\o

CREATE TEMP TABLE curve AS
SELECT m.name, f->>'name' AS feature, f->'open_knots' AS knots, f->'open_terms' AS terms,
       (f->>'longest')::float8 AS longest
FROM dealrisk.models m, jsonb_array_elements(m.feature_spec->'features') f
WHERE m.id IN (:lose_id, :win_id) AND f ? 'open_knots';
SELECT is((SELECT string_agg(name || ':' || feature, ', ' ORDER BY name, feature) FROM curve
	WHERE jsonb_array_length(terms) = jsonb_array_length(knots)),
	'age_lose:cycle_days, age_lose:stage_time, age_win:cycle_days, age_win:stage_time',
	'training stores a survivor curve, a term per knot, for the age and the time in stage');
SELECT is((SELECT longest FROM curve WHERE name = 'age_lose' AND feature = 'cycle_days'), 138::float8,
	'... whose longest value is the longest closed cycle');
SELECT is((SELECT count(*) FROM curve, LATERAL (SELECT t::float8 AS t, lag(t::float8) OVER (ORDER BY o) AS prev
	FROM jsonb_array_elements_text(terms) WITH ORDINALITY x(t, o)) x WHERE x.t > x.prev), 0::bigint,
	'... and whose terms never increase with age');

-- risk by age, by time in stage, under each model
CREATE TEMP TABLE risk AS
SELECT m AS model, d.deal_id, dealrisk.deal_risk(d, m) AS risk
FROM (SELECT * FROM public.age_lose WHERE outcome IS NULL) d, unnest(ARRAY['age_lose', 'age_lose_bins']) m
UNION ALL
SELECT m, d.deal_id, dealrisk.deal_risk(d, m)
FROM (SELECT * FROM public.age_win WHERE outcome IS NULL) d, unnest(ARRAY['age_win', 'age_win_bins']) m;
CREATE FUNCTION pg_temp.r(text, text) RETURNS float8 LANGUAGE sql
AS $$ SELECT r.risk FROM risk r WHERE r.model = $1 AND r.deal_id = $2 $$;

SELECT is((SELECT count(*) FROM (SELECT risk < lag(risk) OVER (PARTITION BY model ORDER BY deal_id) AS dropped
	FROM risk WHERE deal_id LIKE 'OA%' AND model IN ('age_lose', 'age_win')) x WHERE dropped), 0::bigint,
	'an open deal''s risk never drops as it ages (3 to 423 days, both data sets)');
SELECT ok(pg_temp.r('age_lose', 'OA423') >= pg_temp.r('age_lose', 'OA138')
	AND pg_temp.r('age_lose', 'OA423') >= pg_temp.r('age_lose', 'OA003'),
	'a deal older than every closed deal is at least as risky as a younger, otherwise identical one');
SELECT is(pg_temp.r('age_lose', 'OA423'), pg_temp.r('age_lose', 'OA139'),
	'past the oldest closed deal the risk is held, not extrapolated');
SELECT ok(pg_temp.r('age_lose', 'OA100') > pg_temp.r('age_lose', 'OA020') + 5,
	'where slow deals lose, the risk rises as the deal outlives the typical cycle');
SELECT ok(pg_temp.r('age_win', 'OA423') >= (SELECT max(risk) FROM risk WHERE model = 'age_win' AND deal_id LIKE 'OA%'),
	'where slow deals win, a deal open 423 days is still at least as risky as any younger one');
SELECT ok(pg_temp.r('age_win_bins', 'OA423') < pg_temp.r('age_win_bins', 'OA003'),
	'... whereas the top bin of closed cycles (0.2.0) made it less risky than a 3-day-old deal');
SELECT is((SELECT count(*) FROM (SELECT risk < lag(risk) OVER (PARTITION BY model ORDER BY deal_id) AS dropped
	FROM risk WHERE deal_id LIKE 'OS%' AND model IN ('age_lose', 'age_win')) x WHERE dropped), 0::bigint,
	'the risk never drops with the time in the current stage (1 to 399 days)');
SELECT ok(pg_temp.r('age_lose', 'OS399') >= pg_temp.r('age_lose', 'OS060')
	AND pg_temp.r('age_lose', 'OS399') > pg_temp.r('age_lose', 'OS001'),
	'a deal longer in its stage than any closed deal is riskier than one just arrived');

-- explanations
CREATE TEMP TABLE why AS
SELECT m AS model, d.deal_id, e.*
FROM (SELECT * FROM public.age_lose WHERE outcome IS NULL) d, unnest(ARRAY['age_lose', 'age_lose_bins']) m,
     dealrisk.deal_risk_explain(d, m) e
UNION ALL
SELECT m, d.deal_id, e.*
FROM (SELECT * FROM public.age_win WHERE outcome IS NULL) d, unnest(ARRAY['age_win', 'age_win_bins']) m,
     dealrisk.deal_risk_explain(d, m) e;
CREATE FUNCTION pg_temp.why(text, text, text) RETURNS text LANGUAGE sql
AS $$ SELECT w.reason FROM why w WHERE w.model = $1 AND w.deal_id = $2 AND w.factor = $3 $$;

SELECT is(pg_temp.why('age_lose', 'OA423', 'cycle_days'),
	'Open 423 days, older than every deal closed so far (longest 138 days)',
	'the explanation says plainly that the deal is older than every closed deal');
SELECT is(pg_temp.why('age_win', 'OA200', 'cycle_days'),
	'Open 200 days, older than every deal closed so far (longest 138 days)',
	'... in either data set');
SELECT matches(pg_temp.why('age_lose', 'OA060', 'cycle_days'),
	'^Open 60 days; of the [0-9]+ closed deals that took [0-9]+ days or more, [0-9]+% were won \([0-9]+% of all 600\)$',
	'a younger deal is explained by the closed deals that were still open at its age');
SELECT matches(pg_temp.why('age_lose', 'OA003', 'cycle_days'),
	'^Open 3 days, no longer than the quickest closed deals took: scored like all closed deals \([0-9]+% won\)$',
	'... and a deal younger than every closed deal by all of them');
SELECT ok((SELECT effect > 0 FROM why WHERE model = 'age_lose' AND deal_id = 'OA423' AND factor = 'cycle_days'),
	'... which raises the risk of the oldest deal where slow deals lose');
SELECT ok(pg_temp.why('age_win', 'OA423', 'cycle_days') NOT LIKE '%more often%'
	AND pg_temp.why('age_win_bins', 'OA423', 'cycle_days') LIKE '%deals like this win more often%',
	'where slow deals win, the 423-day-old deal is no longer explained as "deals like this win more often"');
SELECT matches(pg_temp.why('age_lose', 'OS399', 'stage_time'),
	'^In ''Demo'' for 399 days \(typical [0-9.]+\), [0-9.,]+ times the typical: longer than any closed deal stayed in its last stage \(at most [0-9.]+ times\)$',
	'a deal longer in its stage than any closed deal is explained so');
SELECT matches(pg_temp.why('age_lose', 'OS030', 'stage_time'),
	'^In ''Demo'' for 30 days \(typical [0-9.]+\); of the [0-9]+ closed deals that stayed [0-9.]+ times the typical or longer in their last stage, [0-9]+% were won \([0-9]+% of all [0-9]+\)$',
	'... a shorter stay by the closed deals that stayed as long');

-- NULL and infinite created dates: age unknown, scored as average
SELECT is((SELECT count(DISTINCT risk) FROM risk WHERE model = 'age_lose' AND deal_id LIKE 'ON%'), 1::bigint,
	'a NULL, infinite or minus infinite created_date scores alike');
SELECT is((SELECT count(*) FROM why WHERE model = 'age_lose' AND deal_id LIKE 'ON%' AND factor = 'cycle_days'
	AND effect = 0 AND value IS NULL
	AND reason ~ '^Age unknown \(no finite created_date\): scored like all closed deals \([0-9]+% won\)$'),
	3::bigint, '... as a just-created deal (no effect of the age), and says why');
SELECT is(pg_temp.r('age_lose', 'ON1'), pg_temp.r('age_lose', 'OA005'), '... the same risk as a deal younger than every closed one');
SELECT ok((SELECT bool_and(risk BETWEEN 0 AND 100) FROM risk), 'every risk is a number between 0 and 100');

-- closed deals are scored as the model was fitted: with the bins
SELECT is((SELECT count(*) FROM public.age_lose d WHERE outcome IS NOT NULL
	AND dealrisk.deal_risk(d, 'age_lose') IS DISTINCT FROM dealrisk.deal_risk(d, 'age_lose_bins')), 0::bigint,
	'closed deals score the same with and without the survivor curves');
SELECT is((SELECT auc FROM dealrisk.evaluate(:lose_id, 'public.age_lose')),
	(SELECT auc FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'age_lose_bins'), 'public.age_lose')),
	'... so evaluate() gives the same AUC');
SELECT matches(pg_temp.why('age_lose_bins', 'OA060', 'cycle_days'),
	'^60 days since the deal was created \(range [0-9] of 6 of closed cycles, [0-9.]+ to [0-9.]+ days: deals like this win (less|more) often\)$',
	'a model without curves explains an open deal''s age as before, with the bin');

-- numbers for people
SELECT matches(pg_temp.why('age_lose', 'OA060', 'deal_amount'),
	'^Deal amount 102,292 is in the top fifth \(≥ [0-9],[0-9]{3}\), which wins (less|more) often$',
	'a number in an explanation has thousands separators and no spurious decimals, and names its fifth');
SELECT dealrisk.import_model(jsonb_set(e, '{spec,features}', (
	SELECT jsonb_agg(CASE WHEN f->>'name' = 'deal_amount' THEN f || '{"quantiles": [0.2, 0.4, 0.6, 0.8]}' ELSE f END
	                 ORDER BY o)
	FROM jsonb_array_elements(e->'spec'->'features') WITH ORDINALITY x(f, o))), 'age_quintiles') AS qid
FROM (SELECT dealrisk.export_model(:lose_id) e) v \gset
SELECT dealrisk.activate(:qid, force => true) AS activated \gset
SELECT matches((SELECT e.reason FROM public.age_lose d, dealrisk.deal_risk_explain(d, 'age_quintiles') e
	WHERE d.deal_id = 'OA060' AND e.factor = 'deal_amount'),
	'^Deal amount 102,292 is in the top fifth \(≥ [0-9],[0-9]{3}\), which wins (less|more) often$',
	'a bin learned at quintiles is named as a fifth');
SELECT is((SELECT string_agg(DISTINCT substring(e.reason FROM '^Deal amount [0-9,]+ is in (the [a-z]+ fifth) '), ', ')
	FROM public.age_lose d, dealrisk.deal_risk_explain(d, 'age_quintiles') e WHERE e.factor = 'deal_amount'),
	'the bottom fifth, the fourth fifth, the middle fifth, the second fifth, the top fifth',
	'... each of the five');
SELECT dealrisk.import_model('{"format": "dealrisk-model/1", "coefficients": [0, 0.1], "spec": {"features":
	[{"name": "deal_amount", "kind": "numeric", "column": "deal_amount", "mean": 1234.56, "sd": 10}]}}', 'age_numeric') AS nid \gset
SELECT dealrisk.activate(:nid, force => true) AS activated \gset
CREATE TEMP TABLE amounts (deal_amount numeric);
INSERT INTO amounts VALUES (1234567.891), (12.345), (2.5), (0.0456), (-0.00042), (0), (1e20);
SELECT is((SELECT string_agg(e.reason, ' | ' ORDER BY a.deal_amount)
	FROM amounts a, dealrisk.deal_risk_explain(a, 'age_numeric') e),
	'Deal amount -0.00042 (average 1,235) lowers the chance to win | '
	'Deal amount 0 (average 1,235) lowers the chance to win | '
	'Deal amount 0.046 (average 1,235) lowers the chance to win | '
	'Deal amount 2.5 (average 1,235) lowers the chance to win | '
	'Deal amount 12.3 (average 1,235) lowers the chance to win | '
	'Deal amount 1,234,568 (average 1,235) raises the chance to win | '
	'Deal amount 1e+20 (average 1,235) raises the chance to win',
	'numbers are rounded for people: separators from 1,000, decimals only below 100, two significant digits below 1');

-- a model whose open terms rise with age, or do not match its knots, is refused
SELECT throws_ok(format($$SELECT dealrisk.import_model(jsonb_set(dealrisk.export_model(%s), '{spec,features}', (
	SELECT jsonb_agg(CASE WHEN f->>'name' = 'cycle_days' THEN jsonb_set(f, '{open_terms,0}', '-5') ELSE f END ORDER BY o)
	FROM jsonb_array_elements(dealrisk.export_model(%s)->'spec'->'features') WITH ORDINALITY x(f, o))), 'bad')$$,
	:lose_id, :lose_id),
	'22023', NULL, 'a survivor curve whose terms rise with age is refused');
SELECT throws_like(format($$SELECT dealrisk.import_model(jsonb_set(dealrisk.export_model(%s), '{spec,features}', (
	SELECT jsonb_agg(CASE WHEN f->>'name' = 'cycle_days' THEN f || '{"open_terms": [0]}' ELSE f END ORDER BY o)
	FROM jsonb_array_elements(dealrisk.export_model(%s)->'spec'->'features') WITH ORDINALITY x(f, o))), 'bad')$$,
	:lose_id, :lose_id),
	'%knots but 1 open terms%', '... and one whose terms do not match its knots');

-- scoring by a role that only reads the deals
CREATE ROLE age_t_reader NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO age_t_reader;
GRANT SELECT ON public.age_lose, dealrisk.models TO age_t_reader;	-- as docs/security.md's analyst
SET LOCAL ROLE age_t_reader;
SELECT dealrisk.deal_risk(d, 'age_lose') AS reader_risk FROM public.age_lose d WHERE deal_id = 'OA423' \gset
RESET ROLE;
SELECT is(:'reader_risk'::float8, pg_temp.r('age_lose', 'OA423'),
	'an analyst role (reads the deals and the models) scores an old open deal alike');

SELECT * FROM finish();
ROLLBACK;
