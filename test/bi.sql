-- pgTAP: the views of dealrisk_bi (issue #12): set_source(), the snapshot
-- that it and refresh() compute, the views' names, types and units, a BI
-- role that has only SELECT on the views, sources that lack columns or
-- hold non-finite amounts, and a source that is dropped.
\ir harness/pgtap_setup.psql
SELECT plan(63);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE SCHEMA bi_t;
CREATE TABLE bi_t.deals AS SELECT * FROM dealrisk.sample_deals(3000, 7);
ALTER TABLE bi_t.deals ADD PRIMARY KEY (deal_id);
SET LOCAL client_min_messages = error;
SELECT dealrisk.train('bi_t.deals') AS model_id \gset
SET LOCAL client_min_messages = warning;

-- pg_temp.as_role(role, q): the first value of q run as role, or its error
CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v text;
BEGIN
	EXECUTE pg_catalog.format('SET LOCAL ROLE %I', r);
	BEGIN
		EXECUTE q INTO v;
		v := 'value=' || coalesce(v, 'NULL');
	EXCEPTION WHEN OTHERS THEN
		v := 'error=' || SQLSTATE || ': ' || SQLERRM;
	END;
	RESET ROLE;
	RETURN v;
END
$$;

-- 1. Stable names and types ------------------------------------------------
SELECT tables_are('dealrisk_bi', '{}'::name[], 'dealrisk_bi holds no tables');
SELECT views_are('dealrisk_bi', ARRAY['status', 'headline', 'win_rate_by_quarter', 'win_rate_by_month',
	'cycle_by_quarter', 'funnel', 'drivers', 'open_pipeline', 'risk_by_rep', 'risk_by_segment', 'source_checks',
	'diagnosis', 'model_quality', 'model_calibration', 'refresh_status', 'value_at_risk_by_week', 'forecast'],
	'the views of dealrisk_bi');
SELECT columns_are('dealrisk_bi', 'win_rate_by_quarter', ARRAY['period', 'period_start', 'period_end', 'closed', 'won',
	'lost', 'win_rate_pct', 'ci_low_pct', 'ci_high_pct', 'change_pts', 'p_value', 'is_partial'],
	'win_rate_by_quarter: its columns');
SELECT col_type_is('dealrisk_bi', 'win_rate_by_quarter', 'win_rate_pct', 'numeric', 'rates are numeric percents');
SELECT columns_are('dealrisk_bi', 'open_pipeline', ARRAY['deal_id', 'sales_rep_id', 'industry', 'region', 'product_type',
	'lead_source', 'deal_stage', 'deal_amount', 'created_date', 'days_open', 'days_in_stage', 'risk', 'band',
	'high_risk', 'top_factor', 'top_reason', 'action', 'expected_close_date'], 'open_pipeline: its columns');
SELECT is((SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'dealrisk_bi' AND obj_description(c.oid, 'pg_class') IS NULL), 0::bigint,
	'every view of dealrisk_bi has a comment');

-- 2. Before set_source() ---------------------------------------------------
SELECT is((SELECT count(*) FROM dealrisk_bi.status), 0::bigint, 'no snapshot before set_source()');
SELECT throws_ok($$SELECT * FROM dealrisk.set_source()$$, '22023', 'set_source() needs a source: nothing is watched',
	'set_source() without a source while nothing is watched');
SELECT throws_ok($$SELECT * FROM dealrisk.set_source('bi_t.deals', ' ')$$, '22023', NULL, 'an empty model name');
SELECT throws_like($$SELECT * FROM dealrisk.set_source('bi_t.nope')$$, '%bi_t.nope%', 'a source that does not exist');

-- 3. The snapshot of a source ----------------------------------------------
SELECT set_eq($$SELECT view_name, note IS NULL FROM dealrisk.set_source('bi_t.deals')$$,
	$$VALUES ('headline', true), ('win_rate_by_quarter', true), ('win_rate_by_month', true), ('cycle_by_quarter', true),
	         ('funnel', true), ('drivers', true), ('source_checks', true), ('diagnosis', true), ('open_pipeline', true),
	         ('forecast', true)$$,
	'set_source() computes every section of the sample without a note');
SELECT is((SELECT row(deals, closed, won, lost, open)::text FROM dealrisk_bi.headline),
	(SELECT row(count(*), count(*) FILTER (WHERE outcome IS NOT NULL), count(*) FILTER (WHERE outcome = 'Won'),
	            count(*) FILTER (WHERE outcome = 'Lost'), count(*) FILTER (WHERE outcome IS NULL))::text FROM bi_t.deals),
	'the headline counts the deals');
SELECT is((SELECT win_rate_pct FROM dealrisk_bi.headline),
	(SELECT round((100 * (dealrisk.win_rate_ci(dealrisk.is_won(outcome))).rate)::numeric, 2) FROM bi_t.deals),
	'the headline win rate is win_rate_ci() in percent');
SELECT set_eq($$SELECT period, closed, won, win_rate_pct, ci_low_pct, ci_high_pct, change_pts, is_partial
                FROM dealrisk_bi.win_rate_by_quarter$$,
	$$SELECT to_char(period_start, 'YYYY-"Q"Q'), closed, won, round((100 * win_rate)::numeric, 2) a,
	         round((100 * ci_low)::numeric, 2) b, round((100 * ci_high)::numeric, 2) c, round((100 * change)::numeric, 2) d, is_partial
	  FROM dealrisk.win_rate_trend('bi_t.deals', 'quarter')$$,
	'win_rate_by_quarter is win_rate_trend() by quarter, in percent');
SELECT is((SELECT period || ' ' || period_start || ' ' || period_end FROM dealrisk_bi.win_rate_by_quarter
           ORDER BY period_start DESC LIMIT 1), '2024-Q4 2024-10-01 2024-12-31', 'quarters are labelled 2024-Q4');
SELECT is((SELECT period || ' ' || period_end FROM dealrisk_bi.win_rate_by_month ORDER BY period_start DESC LIMIT 1),
	'2024-12 2024-12-31', 'months are labelled 2024-12');
SELECT is((SELECT count(*) FROM dealrisk_bi.funnel), (SELECT count(*) FROM dealrisk.funnel('bi_t.deals')),
	'the funnel view has a row per stage of funnel()');
SELECT is((SELECT string_agg(description, ' | ' ORDER BY row_order) FROM dealrisk_bi.drivers),
	(SELECT string_agg(description, ' | ') FROM dealrisk.drivers('bi_t.deals')), 'the drivers view is drivers()');
SELECT is((SELECT string_agg(line, E'\n' ORDER BY line_no) FROM dealrisk_bi.diagnosis), dealrisk.diagnose('bi_t.deals'),
	'the diagnosis view is diagnose(), line by line');
SELECT is((SELECT count(*) FROM dealrisk_bi.open_pipeline), (SELECT count(*) FROM bi_t.deals WHERE outcome IS NULL),
	'open_pipeline has every open deal');
SELECT is((SELECT count(*) FROM dealrisk_bi.open_pipeline p JOIN bi_t.deals d USING (deal_id)
           WHERE p.risk IS DISTINCT FROM round(dealrisk.deal_risk(d)::numeric, 1)
              OR p.action IS DISTINCT FROM dealrisk.recommended_action(d)
              OR p.top_reason IS DISTINCT FROM (SELECT e.reason FROM dealrisk.deal_risk_explain(d) e LIMIT 1)
              OR p.days_open IS DISTINCT FROM '2024-12-31'::date - d.created_date), 0::bigint,
	'... each with the risk, action and top reason of the active model, and its age as of the scoring date');
SELECT ok((SELECT high_risk_deals <= floor(0.1 * open_deals) AND high_risk_deals > 0 FROM dealrisk_bi.headline),
	'high-risk deals follow the default alert policy (at most the riskiest 10%), not the band');
SELECT is((SELECT sum(open_deals)::bigint FROM dealrisk_bi.risk_by_rep), (SELECT open_deals FROM dealrisk_bi.headline),
	'risk_by_rep adds up to the open pipeline');
SELECT is((SELECT count(DISTINCT dimension) FROM dealrisk_bi.risk_by_segment), 5::bigint,
	'risk_by_segment covers five dimensions');
SELECT is((SELECT row(open_deals, expected_won_value, won_value_low, won_value_high)::text FROM dealrisk_bi.forecast WHERE group_by = 'total'),
	(SELECT row(open_deals, expected_won_value, won_value_low, won_value_high)::text FROM dealrisk.forecast('bi_t.deals') WHERE is_total),
	'the forecast view is forecast() of the next 90 days');
SELECT ok((SELECT abs(sum(expected_won_value) - (SELECT expected_won_value FROM dealrisk_bi.forecast WHERE group_by = 'total'))
                  <= 0.005 * count(*)
           FROM dealrisk_bi.forecast WHERE group_by = 'sales_rep_id'), '... its reps add up to the total (to the cent each)');
SELECT is((SELECT row(sum(open_deals), sum(pipeline_value))::text FROM dealrisk_bi.value_at_risk_by_week),
	(SELECT row(open_deals, pipeline_value)::text FROM dealrisk_bi.headline), 'value_at_risk_by_week covers the open pipeline');
SELECT ok((SELECT bool_and(extract(isodow FROM week_start) = 1 AND week_end = week_start + 6) FROM dealrisk_bi.value_at_risk_by_week
           WHERE week_start IS NOT NULL), '... in weeks from Monday to Sunday');
SELECT is((SELECT row(model_id, holdout_auc)::text FROM dealrisk_bi.model_quality),
	(SELECT row(id, round((metrics->>'auc')::numeric, 4))::text FROM dealrisk.models WHERE id = :model_id),
	'model_quality shows the active model and its holdout AUC');
SELECT is((SELECT sum(deals) FROM dealrisk_bi.model_calibration), (SELECT (metrics->>'n_test')::numeric FROM dealrisk.models
	WHERE id = :model_id), 'model_calibration covers the holdout by decile');

-- 4. A role with SELECT on the views only ---------------------------------
CREATE ROLE bi_t_reader NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk_bi TO bi_t_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk_bi TO bi_t_reader;
SELECT matches(pg_temp.as_role('bi_t_reader', $q$SELECT string_agg(v, ',' ORDER BY v) FROM (VALUES
	((SELECT count(*) FROM dealrisk_bi.headline)::text), ((SELECT count(*) FROM dealrisk_bi.win_rate_by_quarter)::text),
	((SELECT count(*) FROM dealrisk_bi.win_rate_by_month)::text), ((SELECT count(*) FROM dealrisk_bi.cycle_by_quarter)::text),
	((SELECT count(*) FROM dealrisk_bi.funnel)::text), ((SELECT count(*) FROM dealrisk_bi.drivers)::text),
	((SELECT count(*) FROM dealrisk_bi.open_pipeline)::text), ((SELECT count(*) FROM dealrisk_bi.risk_by_rep)::text),
	((SELECT count(*) FROM dealrisk_bi.risk_by_segment)::text), ((SELECT count(*) FROM dealrisk_bi.source_checks)::text),
	((SELECT count(*) FROM dealrisk_bi.diagnosis)::text), ((SELECT count(*) FROM dealrisk_bi.model_quality)::text),
	((SELECT count(*) FROM dealrisk_bi.model_calibration)::text), ((SELECT count(*) FROM dealrisk_bi.status)::text),
	((SELECT count(*) FROM dealrisk_bi.value_at_risk_by_week)::text), ((SELECT count(*) FROM dealrisk_bi.forecast)::text),
	((SELECT health FROM dealrisk_bi.refresh_status))) v(v)$q$), '^value=',
	'a role with only SELECT on the views reads every view');
-- the panel queries of docs/bi.md, "A dashboard"
SELECT is(pg_temp.as_role('bi_t_reader', format('SELECT count(*) FROM (%s) q', q)), 'value=' || n,
	'the dashboard query runs for the reader: ' || q)
FROM (VALUES
	('SELECT win_rate_pct, ci_low_pct, ci_high_pct FROM dealrisk_bi.headline', 1),
	('SELECT period_start AS time, win_rate_pct, ci_low_pct, ci_high_pct FROM dealrisk_bi.win_rate_by_quarter WHERE NOT is_partial ORDER BY 1',
	 (SELECT count(*) FROM dealrisk.win_rate_trend('bi_t.deals') WHERE NOT is_partial)),
	('SELECT driver, kind, contribution_pts, q_value FROM dealrisk_bi.drivers ORDER BY row_order',
	 (SELECT count(*) FROM dealrisk.drivers('bi_t.deals'))),
	('SELECT stage, reached, conversion_to_next_pct, caveat FROM dealrisk_bi.funnel ORDER BY position',
	 (SELECT count(*) FROM dealrisk.funnel('bi_t.deals'))),
	('SELECT period_start AS time, median_days, p75_days FROM dealrisk_bi.cycle_by_quarter WHERE NOT is_partial ORDER BY 1',
	 (SELECT count(*) FROM dealrisk.cycle_trend('bi_t.deals') WHERE NOT is_partial)),
	('SELECT sales_rep_id, high_risk_value, expected_lost_value FROM dealrisk_bi.risk_by_rep ORDER BY expected_lost_value DESC',
	 (SELECT count(DISTINCT sales_rep_id) FROM bi_t.deals WHERE outcome IS NULL)),
	('SELECT deal_id, sales_rep_id, deal_amount, risk, top_reason, action FROM dealrisk_bi.open_pipeline WHERE high_risk ORDER BY risk DESC',
	 (SELECT high_risk_deals FROM dealrisk_bi.headline)),
	('SELECT predicted_win_pct, observed_win_pct FROM dealrisk_bi.model_calibration WHERE model_name = ''default'' ORDER BY decile', 10),
	('SELECT health, built_at FROM dealrisk_bi.refresh_status, (SELECT max(built_at) AS built_at FROM dealrisk_bi.status) s', 1),
	('SELECT view_name, note FROM dealrisk_bi.status WHERE note IS NOT NULL', 0),
	('SELECT expected_won_value, won_value_low, won_value_high, pipeline_value FROM dealrisk_bi.forecast WHERE group_by = ''total''', 1),
	('SELECT week_start AS time, pipeline_value, expected_lost_value FROM dealrisk_bi.value_at_risk_by_week WHERE week_start IS NOT NULL ORDER BY 1',
	 (SELECT count(DISTINCT date_trunc('week', f.expected_close)) FROM dealrisk._forecast_deals('bi_t.deals', 90, 'default', NULL) f))) v(q, n);
SELECT is(pg_temp.as_role('bi_t_reader', $$SELECT count(*) FROM bi_t.deals$$),
	'error=42501: permission denied for schema bi_t', '... but not the deals');
SELECT is(pg_temp.as_role('bi_t_reader', $$SELECT count(*) FROM dealrisk.models$$),
	'error=42501: permission denied for schema dealrisk', '... nor dealrisk''s tables');
SELECT is(pg_temp.as_role('bi_t_reader', $$SELECT count(*) FROM dealrisk.set_source('bi_t.deals')$$),
	'error=42501: permission denied for schema dealrisk', '... nor set_source()');

-- 5. Sources that do not follow the contract -------------------------------
-- an export with one status column and a close date, nothing else: every
-- section that can be computed is, and the others say why
CREATE TABLE bi_t.thin AS SELECT deal_id, outcome, closed_date FROM bi_t.deals;
CREATE TEMP TABLE thin_run AS SELECT * FROM dealrisk.set_source('bi_t.thin');
SELECT is((SELECT "rows" FROM thin_run WHERE view_name = 'win_rate_by_quarter'), 8::bigint,
	'a thin source still has its win rate by quarter');
SELECT is((SELECT note FROM thin_run WHERE view_name = 'funnel'), 'column "deal_stage" is missing from source "bi_t.thin"',
	'... its funnel says why it is empty');
SELECT is((SELECT row("rows", note)::text FROM thin_run WHERE view_name = 'open_pipeline'),
	row((SELECT count(*) FROM bi_t.deals WHERE outcome IS NULL),
	    'risk, band, reason and action are empty: model ''default'' cannot score this source: column "created_date" required by model "default" (id '
	    || :model_id || ') is missing from row type bi_t.thin; the source has no sales_rep_id, industry, region, product_type, lead_source, deal_stage, deal_amount, created_date, stage_entered_date: empty in every row')::text,
	'... and its open deals are listed unscored, saying why');
SELECT is((SELECT count(*) FROM dealrisk_bi.open_pipeline WHERE risk IS NOT NULL OR band IS NOT NULL OR high_risk IS NOT NULL),
	0::bigint, '... with no risk invented');

-- non-finite amounts: no value, counted, said
CREATE TABLE bi_t.odd AS SELECT * FROM bi_t.deals;
ALTER TABLE bi_t.odd ALTER COLUMN deal_amount TYPE float8;
UPDATE bi_t.odd SET deal_amount = CASE WHEN right(deal_id, 1) IN ('1', '2') THEN 'NaN'::float8 ELSE 'Infinity'::float8 END
WHERE outcome IS NULL AND right(deal_id, 1) IN ('1', '2', '3');
SELECT matches((SELECT note FROM dealrisk.set_source('bi_t.odd') WHERE view_name = 'open_pipeline'),
	'^\d+ open deals have no finite deal_amount: counted in open_deals, not in the values$',
	'non-finite amounts are said');
SELECT is((SELECT row(count(*) FILTER (WHERE deal_amount IS NULL), sum(deal_amount))::text FROM dealrisk_bi.open_pipeline),
	(SELECT row(count(*) FILTER (WHERE NOT deal_amount::numeric BETWEEN -1e300 AND 1e300),
	            sum(deal_amount::numeric) FILTER (WHERE deal_amount::numeric BETWEEN -1e300 AND 1e300))::text
	 FROM bi_t.odd WHERE outcome IS NULL),
	'... their deals are listed without an amount, and the pipeline value is finite');
SELECT is((SELECT pipeline_value FROM dealrisk_bi.headline), (SELECT sum(deal_amount) FROM dealrisk_bi.open_pipeline),
	'... in the headline too');

-- 6. Following the watch, through refresh() ---------------------------------
SELECT dealrisk.watch('bi_t.deals') IS NOT NULL AS watched \gset
SELECT is((SELECT count(*) FROM dealrisk.set_source()), 10::bigint, 'set_source() without a source follows the watch');
SELECT is((SELECT DISTINCT source FROM dealrisk_bi.status), 'bi_t.deals', '... the views report on the watched source');
SELECT set_eq($$SELECT deal_id FROM dealrisk_bi.open_pipeline WHERE high_risk$$,
	$$SELECT deal_id FROM dealrisk_watch.high_risk_deals$$,
	'the high-risk deals of the views are those of dealrisk_watch.high_risk_deals');
INSERT INTO bi_t.deals SELECT 'X' || deal_id, created_date, NULL, sales_rep_id, industry, region, product_type, lead_source,
	deal_stage, deal_amount, NULL, NULL, last_activity_date, stage_entered_date
FROM bi_t.deals WHERE outcome IS NULL LIMIT 5;
SELECT dealrisk.refresh() IS NOT NULL AS refreshed \gset
SELECT is((SELECT open_deals FROM dealrisk_bi.headline), (SELECT count(*) FROM bi_t.deals WHERE outcome IS NULL),
	'refresh() recomputes the views');
SELECT set_eq($$SELECT deal_id FROM dealrisk_bi.open_pipeline WHERE high_risk$$,
	$$SELECT deal_id FROM dealrisk_watch.high_risk_deals$$, '... with the high-risk deals of the refresh');

-- a source that is gone: refresh() still refreshes and warns; the views keep
-- their numbers
CREATE TABLE bi_t.gone AS SELECT * FROM bi_t.deals;
SELECT count(*) AS n FROM dealrisk.set_source('bi_t.gone') \gset
DROP TABLE bi_t.gone;
SELECT built_at AS built FROM dealrisk_bi.status WHERE view_name = 'headline' \gset
SET LOCAL client_min_messages = error;
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh() succeeds when the source of the views is gone');
SET LOCAL client_min_messages = warning;
SELECT is((SELECT built_at FROM dealrisk_bi.status WHERE view_name = 'headline'), :'built'::timestamptz,
	'... and the views keep their numbers');
SELECT throws_like($$SELECT * FROM dealrisk._bi_build()$$, 'the deal source of dealrisk_bi (oid %) no longer exists',
	'... which is gone, as the build says');

-- 7. The operator of docs/security.md, without superuser --------------------
CREATE ROLE bi_t_operator NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk, bi_t TO bi_t_operator;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk TO bi_t_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dealrisk TO bi_t_operator;
GRANT SELECT ON bi_t.deals TO bi_t_operator;
SELECT is(pg_temp.as_role('bi_t_operator', $$SELECT count(*) FILTER (WHERE note IS NULL) FROM dealrisk.set_source('bi_t.deals')$$),
	'value=10', 'the operator sets the source of the views');
SELECT is(pg_temp.as_role('bi_t_reader', $$SELECT count(*) FROM dealrisk_bi.open_pipeline$$),
	'value=' || (SELECT count(*) FROM bi_t.deals WHERE outcome IS NULL), '... and the reader reads them');

SELECT * FROM finish();
ROLLBACK;
