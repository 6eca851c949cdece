-- pgTAP: NaN and infinite values in a deal source: training, scoring,
-- explanation, evaluation, watch(), refresh(), the view and digest() treat
-- them as missing and never return NaN or fail (issue #8, section 4).
\ir harness/pgtap_setup.psql
SELECT plan(14);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.nf_deals AS SELECT * FROM dealrisk.sample_deals(3000, 21);
ALTER TABLE public.nf_deals ADD PRIMARY KEY (deal_id);
-- closed deals with non-finite amounts and cycle lengths
UPDATE public.nf_deals SET deal_amount = 'NaN' WHERE outcome IS NOT NULL AND deal_id < 'D00200';
UPDATE public.nf_deals SET deal_amount = 'Infinity', sales_cycle_days = NULL
	WHERE outcome IS NOT NULL AND deal_id BETWEEN 'D00200' AND 'D00300';
UPDATE public.nf_deals SET closed_date = 'infinity' WHERE outcome IS NOT NULL AND deal_id BETWEEN 'D00300' AND 'D00320';

SET LOCAL client_min_messages = error;
SELECT dealrisk.train('public.nf_deals') AS model_id \gset
SET LOCAL client_min_messages = warning;
SELECT ok((SELECT bool_and(c = c AND c NOT IN ('Infinity', '-Infinity')) FROM dealrisk.models m, unnest(m.coefficients) c
	WHERE m.id = :model_id), 'training on NaN and infinite amounts gives finite coefficients');
SELECT ok((SELECT active FROM dealrisk.models WHERE id = :model_id), '... and a model good enough to activate');

-- open deals with every kind of non-finite value
SELECT array_agg(deal_id ORDER BY deal_id) AS odd FROM (SELECT deal_id FROM public.nf_deals WHERE outcome IS NULL
	ORDER BY deal_id LIMIT 6) x \gset
UPDATE public.nf_deals SET deal_amount = 'NaN' WHERE deal_id = (:'odd'::text[])[1];
UPDATE public.nf_deals SET deal_amount = '-Infinity' WHERE deal_id = (:'odd'::text[])[2];
UPDATE public.nf_deals SET stage_entered_date = 'infinity' WHERE deal_id = (:'odd'::text[])[3];
UPDATE public.nf_deals SET created_date = '-infinity', stage_entered_date = NULL WHERE deal_id = (:'odd'::text[])[4];
UPDATE public.nf_deals SET last_activity_date = 'infinity' WHERE deal_id = (:'odd'::text[])[5];
UPDATE public.nf_deals SET created_date = 'infinity', stage_entered_date = '-infinity' WHERE deal_id = (:'odd'::text[])[6];

SELECT is((SELECT count(*) FROM public.nf_deals d WHERE d.deal_id = ANY (:'odd'::text[])
	AND dealrisk.deal_risk(d) BETWEEN 0 AND 100), 6::bigint, 'every such deal scores between 0 and 100');
SELECT is((SELECT count(*) FROM public.nf_deals d, dealrisk.deal_risk_explain(d) e
	WHERE d.deal_id = ANY (:'odd'::text[]) AND (e.effect <> e.effect OR e.reason IS NULL)), 0::bigint,
	'... and is explained without NaN effects');
SELECT is((SELECT count(*) FROM public.nf_deals d WHERE d.deal_id = ANY (:'odd'::text[])
	AND dealrisk.recommended_action(d) IS NOT NULL), 6::bigint, '... with an action');

SELECT lives_ok($$SELECT dealrisk.watch('public.nf_deals', 0)$$, 'watch() with infinite dates on open deals');
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh() too');
SELECT is((SELECT count(*) FROM dealrisk.score_history WHERE risk <> risk OR risk < 0 OR risk > 100), 0::bigint,
	'every score in the history is a number between 0 and 100');
SELECT is((SELECT array_agg(deal_id ORDER BY deal_id) FROM dealrisk_watch.high_risk_deals
	WHERE deal_id = ANY (:'odd'::text[]) AND days_in_stage IS NULL),
	ARRAY[(:'odd'::text[])[4], (:'odd'::text[])[6]],
	'the view has no days in stage where both stage dates are infinite');
SELECT is((SELECT days_in_stage FROM dealrisk_watch.high_risk_deals WHERE deal_id = (:'odd'::text[])[3]),
	(SELECT '2024-12-31'::date - created_date FROM public.nf_deals WHERE deal_id = (:'odd'::text[])[3]),
	'an infinite stage_entered_date falls back to created_date');

CREATE TEMP TABLE dg AS SELECT * FROM dealrisk.digest() WHERE is_total;
SELECT is((SELECT amounts_not_finite FROM dg), 2::bigint, 'digest() counts the NaN and infinite amounts');
SELECT is((SELECT pipeline_value FROM dg),
	(SELECT sum(deal_amount) FROM public.nf_deals WHERE outcome IS NULL AND deal_amount NOT IN ('NaN', '-Infinity')),
	'... and leaves them out of the pipeline value, which is a number');
SELECT ok((SELECT value_at_risk = value_at_risk AND share_at_risk = share_at_risk FROM dg),
	'... and of the value at risk');

SELECT ok((SELECT auc = auc AND brier = brier AND log_loss = log_loss FROM dealrisk.evaluate(:model_id, 'public.nf_deals')),
	'evaluate() on rows with NaN and infinite amounts gives numbers');

SELECT * FROM finish();
ROLLBACK;
