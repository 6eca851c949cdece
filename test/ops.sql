-- pgTAP: operations: watch, refresh, score history, alerts (claim, ack,
-- text), digest, risk changes, schedule (pg_cron), track, privileges, and
-- their bad input.  Everything here runs in one transaction that is rolled
-- back; what needs commits or a second session is in test/ops_live.sql.
\ir harness/pgtap_setup.psql
SELECT plan(256);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(3000, 7);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SET LOCAL client_min_messages = error;
SELECT dealrisk.train('public.deals') AS model_id \gset
SET LOCAL client_min_messages = warning;
-- scores as the view computes them, for comparisons
CREATE TEMP TABLE open_scores AS
	SELECT d.deal_id, dealrisk.deal_risk(d.*) AS risk, d.deal_amount, d.sales_rep_id
	FROM public.deals d WHERE d.outcome IS NULL;

-- The SQLSTATE, message, detail and hint of the error a statement raises (NULLs if none).
CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT msg text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
END
$$;
-- Runs a query as another role: 'value=<first column>' or 'error=<SQLSTATE>: <message>'.
-- (pgTAP's own bookkeeping must run as the test's user, so the role is set
-- and reset inside.)
CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	res text;
BEGIN
	BEGIN
		EXECUTE pg_catalog.format('SET LOCAL ROLE %I', r);
		EXECUTE q INTO res;
		res := 'value=' || coalesce(res, 'NULL');
		RESET ROLE;
	EXCEPTION WHEN OTHERS THEN
		res := 'error=' || SQLSTATE || ': ' || SQLERRM;
	END;
	RETURN res;
END
$$;
-- The SQLSTATE, message, detail and hint of the error a query raises as
-- another role, in a session of another session user when sess is given
-- (SET SESSION AUTHORIZATION: the test runs as a superuser), ' | '-separated.
CREATE FUNCTION pg_temp.error_as(r text, q text, sess text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	msg text;
	detail text;
	hint text;
BEGIN
	IF sess IS NOT NULL THEN
		EXECUTE pg_catalog.format('SET LOCAL SESSION AUTHORIZATION %I', sess);
	END IF;
	EXECUTE pg_catalog.format('SET LOCAL ROLE %I', r);
	EXECUTE q;
	RESET ROLE;
	RESET SESSION AUTHORIZATION;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		hint = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', state, msg, nullif(detail, ''), nullif(hint, ''));
END
$$;

-- Objects -------------------------------------------------------------------

SELECT has_table('dealrisk', 'watch_config', 'config table watch_config');
SELECT has_table('dealrisk', 'score_history', 'table score_history');
SELECT has_table('dealrisk', 'alerts', 'outbox table alerts');
SELECT has_table('dealrisk', 'refresh_log', 'table refresh_log');
SELECT has_view('dealrisk', 'refresh_status', 'view refresh_status');
SELECT columns_are('dealrisk', 'refresh_status', ARRAY['last_refresh_at', 'last_refresh_succeeded', 'last_success_at', 'age',
	'deals_scored', 'alerts_written', 'model_id', 'run_by', 'last_cron_status', 'last_cron_message', 'last_cron_run_at',
	'job_id', 'job_owner', 'job_schedule', 'health'], 'refresh_status: last refresh, last success, age, counts, pg_cron run, job, health');
SELECT columns_are('dealrisk', 'score_history', ARRAY['deal_id', 'scored_at', 'model_id', 'risk'],
	'score_history(deal_id, scored_at, model_id, risk)');
SELECT ok((SELECT ARRAY['dealrisk.watch_config', 'dealrisk.score_history', 'dealrisk.alerts', 'dealrisk.alerts_id_seq',
	'dealrisk.refresh_log', 'dealrisk.refresh_log_id_seq', 'dealrisk.refresh_job']::regclass[]::oid[]
	<@ extconfig FROM pg_extension WHERE extname = 'dealrisk'), 'config, history, alerts, refresh log and job of record are kept by pg_dump');
SELECT is((SELECT string_agg(p.proname || '=' || p.provolatile::text || p.proparallel::text, ' ' ORDER BY p.proname)
	FROM pg_proc p WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.proname IN
	('watch', 'refresh', 'schedule', 'unschedule', 'claim_alerts', 'ack_alert', 'alert_text', 'digest',
	 'risk_changes', 'track', 'untrack', 'prune_history')),
	'ack_alert=vu alert_text=ss claim_alerts=vu digest=sr prune_history=vu refresh=vu risk_changes=ss schedule=vu track=vu unschedule=vu untrack=vu watch=vu',
	'volatility and parallel labels');
SELECT is((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'dealrisk'::regnamespace
	AND obj_description(p.oid, 'pg_proc') IS NULL), 0, 'every function has a comment');
SELECT is((SELECT count(*)::int FROM pg_proc p WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.prosecdef), 0,
	'no SECURITY DEFINER function');

-- Before watch() ------------------------------------------------------------

SELECT throws_ok($$SELECT dealrisk.refresh()$$, '55000', 'no deal source is watched yet', 'refresh() before watch()');
SELECT is((pg_temp.error_of($$SELECT dealrisk.refresh()$$)).hint,
	'Call dealrisk.watch() first, e.g. SELECT dealrisk.watch(''public.deals'');', '... with a hint');
SELECT throws_ok($$SELECT * FROM dealrisk.digest()$$, '55000', 'no deal source is watched yet', 'digest() before watch()');
SELECT throws_ok($$SELECT dealrisk.schedule()$$, '55000', 'no deal source is watched yet', 'schedule() before watch()');
DELETE FROM dealrisk.refresh_log;
SELECT is((SELECT (last_refresh_at, last_refresh_succeeded, last_success_at, age, deals_scored, health) FROM dealrisk.refresh_status),
	(NULL::timestamptz, NULL::boolean, NULL::timestamptz, NULL::interval, NULL::bigint, 'never refreshed'::text),
	'refresh_status before any refresh: never refreshed');

-- watch() -----------------------------------------------------------------------

SELECT is(dealrisk.watch('public.deals', 60), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'watch() with a threshold alone: every open deal at risk 60 or more, as before 0.3.0 (the policy: test/alerts.sql)');
SELECT has_materialized_view('dealrisk_watch', 'high_risk_deals', 'watch() creates dealrisk_watch.high_risk_deals');
SELECT columns_are('dealrisk_watch', 'high_risk_deals', ARRAY['deal_id', 'risk', 'band', 'top_reason', 'recommended_action',
	'deal_amount', 'sales_rep_id', 'deal_stage', 'days_in_stage', 'scored_at'], 'the view''s columns');
SELECT ok((SELECT i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL FROM pg_index i
	WHERE i.indrelid = 'dealrisk_watch.high_risk_deals'::regclass), 'a plain unique index (for REFRESH CONCURRENTLY)');
SELECT is(obj_description('dealrisk_watch.high_risk_deals'::regclass, 'pg_class'),
	'High-risk open deals of public.deals under the active "default" model: risk at least 60 (dealrisk.watch_config.cutoff is the risk this took at the latest scoring), with their top reason and action; set up by dealrisk.watch(), refreshed by dealrisk.refresh() (docs/operations.md)',
	'the view''s comment says what it holds');
SELECT is((SELECT (source::text, threshold, model, top_fraction, rise, max_per_rep, cutoff) FROM dealrisk.watch_config),
	('deals'::text, 60::float8, 'default'::text, 1::float8, 15::float8, NULL::int, 60::float8),
	'source, threshold, model and policy are remembered; the cutoff is the threshold');
SELECT set_eq($$SELECT deal_id FROM dealrisk_watch.high_risk_deals$$,
	$$SELECT deal_id FROM open_scores WHERE risk >= 60$$, 'the view holds exactly the open deals at risk >= 60');
SELECT is((SELECT count(*)::int FROM dealrisk_watch.high_risk_deals h JOIN open_scores s USING (deal_id)
	WHERE h.risk <> s.risk OR h.band <> dealrisk.risk_band(s.risk) OR h.deal_amount <> s.deal_amount
	   OR h.sales_rep_id <> s.sales_rep_id), 0, 'risk, band, amount and rep match deal_risk()');
SELECT is((SELECT count(*)::int FROM dealrisk_watch.high_risk_deals h JOIN public.deals d USING (deal_id)
	WHERE h.top_reason IS DISTINCT FROM (SELECT e.reason FROM dealrisk.deal_risk_explain(d.*) e LIMIT 1)
	   OR h.recommended_action IS DISTINCT FROM (SELECT dealrisk._alert_action(dealrisk.recommended_action(d.*), e.factor,
	                                                round(e.effect::numeric, 2)::float8, e.reason,
	                                                (SELECT array_agg(a.factor ORDER BY a.priority, a.id) FROM dealrisk.action_rules a WHERE a.factor <> '*'),
	                                                (SELECT array_agg(a.action ORDER BY a.priority, a.id) FROM dealrisk.action_rules a WHERE a.factor <> '*'))
	                                             FROM dealrisk.deal_risk_explain(d.*) e LIMIT 1)
	   OR h.days_in_stage <> '2024-12-31'::date - coalesce(d.stage_entered_date, d.created_date)
	   OR h.deal_stage <> d.deal_stage), 0, 'top reason, action, stage and days in stage');
SELECT is((SELECT count(DISTINCT scored_at)::int FROM dealrisk_watch.high_risk_deals), 1, 'one scoring time');
SELECT is((SELECT max(scored_at) FROM dealrisk_watch.high_risk_deals), (SELECT scored_at FROM dealrisk.watch_config),
	'the view''s scored_at is the configuration''s');
SELECT is((SELECT count(*)::int FROM dealrisk.score_history) + (SELECT count(*)::int FROM dealrisk.alerts), 0,
	'watch() writes no history and no alert');

-- watching again: same source keeps the view (its grants and dependents)
CREATE ROLE ops_t_reader NOLOGIN;
GRANT SELECT ON dealrisk_watch.high_risk_deals TO ops_t_reader;
SELECT 'dealrisk_watch.high_risk_deals'::regclass::oid AS view_oid \gset
CREATE VIEW public.hr_names AS SELECT deal_id FROM dealrisk_watch.high_risk_deals;
SELECT is(dealrisk.watch('public.deals', 80), (SELECT count(*) FROM open_scores WHERE risk >= 80), 'watch() with threshold 80');
SELECT ok((SELECT min(risk) >= 80 FROM dealrisk_watch.high_risk_deals), 'the view follows the new threshold');
SELECT is('dealrisk_watch.high_risk_deals'::regclass::oid, :'view_oid'::oid, 'the same source keeps the same view');
ALTER TABLE public.deals RENAME TO deals_renamed;
SELECT lives_ok($$SELECT dealrisk.watch('public.deals_renamed', 80)$$, 'watch() of the renamed source');
SELECT is('dealrisk_watch.high_risk_deals'::regclass::oid, :'view_oid'::oid, '... keeps the view and its dependents');
ALTER TABLE public.deals_renamed RENAME TO deals;
SELECT ok((SELECT obj_description('dealrisk_watch.high_risk_deals'::regclass, 'pg_class') LIKE '%: risk at least 80 (%'),
	'the comment follows the threshold');
-- another source replaces the view: grants kept, dependent views refused
CREATE TABLE public."we""ird; DROP TABLE public.deals; --" AS SELECT * FROM public.deals;
SELECT throws_ok($$SELECT dealrisk.watch('public."we""ird; DROP TABLE public.deals; --"')$$, '2BP01',
	'cannot replace dealrisk_watch.high_risk_deals for source "public.we"ird; DROP TABLE public.deals; --": other objects depend on it',
	'a view that depends on high_risk_deals blocks a change of source');
SELECT matches((pg_temp.error_of($$SELECT dealrisk.watch('public."we""ird; DROP TABLE public.deals; --"')$$)).detail,
	'view public.hr_names depends on', '... and the detail names it');
DROP VIEW public.hr_names;
SELECT is(dealrisk.watch('public."we""ird; DROP TABLE public.deals; --"', 60),
	(SELECT count(*) FROM open_scores WHERE risk >= 60), 'a hostile table name is quoted everywhere');
SELECT has_table('public', 'deals', '... and public.deals is still there');
SELECT ok(has_table_privilege('ops_t_reader', 'dealrisk_watch.high_risk_deals', 'SELECT'),
	'a replaced view keeps its grants');
SELECT ok((SELECT obj_description('dealrisk_watch.high_risk_deals'::regclass, 'pg_class')
	LIKE 'High-risk open deals of public."we""ird; DROP TABLE public.deals; --" under%'), 'the comment names the new source');
CREATE SCHEMA "s;p ""q";
CREATE TABLE "s;p ""q"."Deals" AS SELECT deal_id, created_date, closed_date, sales_rep_id, industry, region,
	product_type, lead_source, deal_stage, deal_amount, sales_cycle_days, outcome, last_activity_date FROM public.deals;
SELECT is(dealrisk.watch('"s;p ""q"."Deals"', 60), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'a hostile schema name, a mixed-case table, no stage_entered_date');
SELECT is((SELECT count(*)::int FROM dealrisk_watch.high_risk_deals h JOIN public.deals d USING (deal_id)
	WHERE h.days_in_stage <> '2024-12-31'::date - d.created_date), 0, 'without stage_entered_date: days since creation');
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh() of the hostile schema');

-- bad input
SELECT throws_ok($$SELECT dealrisk.watch('public.deals', 150)$$, '22023',
	'threshold must be a risk score between 0 and 100, got 150', 'threshold above 100');
SELECT throws_ok($$SELECT dealrisk.watch('public.deals', -1)$$, '22023',
	'threshold must be a risk score between 0 and 100, got -1', 'negative threshold');
SELECT throws_ok($$SELECT dealrisk.watch('public.deals', 'NaN')$$, '22023',
	'threshold must be a risk score between 0 and 100, got NaN', 'NaN threshold');
SELECT is(dealrisk.watch('"s;p ""q"."Deals"', NULL), dealrisk.watch('"s;p ""q"."Deals"'),
	'a NULL threshold is the default policy');
SELECT is((SELECT (threshold, top_fraction) FROM dealrisk.watch_config), (50::float8, 0.1::float8),
	'... at risk 50 or more, the riskiest 10%');
SELECT lives_ok($$SELECT dealrisk.watch('"s;p ""q"."Deals"', 60)$$, '(back to 60)');
SELECT throws_ok($$SELECT dealrisk.watch(NULL)$$, '22004', 'source must not be NULL', 'NULL source');
SELECT throws_ok($$SELECT dealrisk.watch('public.no_such_table')$$, '42P01', NULL, 'a missing table');
SELECT throws_ok($$SELECT dealrisk.watch('public.deals', 60, 'nope')$$, 'P0002',
	'no active deal risk model named "nope"', 'a missing model');
SELECT is((pg_temp.error_of($$SELECT dealrisk.watch('public.deals', 60, 'nope')$$)).hint,
	'Train one first: SELECT dealrisk.train(''public.deals'', name => ''nope'');', '... with a hint');
SELECT throws_ok($$SELECT dealrisk.watch('public.deals', 60, NULL)$$, '22004', 'model name must not be NULL', 'NULL model');
CREATE VIEW public.thin_deals AS SELECT deal_id, created_date, outcome, deal_amount, sales_rep_id FROM public.deals;
SELECT throws_ok($$SELECT dealrisk.watch('public.thin_deals')$$, '42703',
	'column "deal_stage" is missing from source "public.thin_deals"', 'a source without deal_stage');
SELECT throws_ok($$SELECT dealrisk.watch('public.deals_pkey')$$, '42809',
	'source "public.deals_pkey" is not a table or view', 'an index is no source');
SELECT throws_ok($$SELECT dealrisk.watch('dealrisk_watch.high_risk_deals')$$, '22023',
	'dealrisk_watch.high_risk_deals cannot watch itself', 'the view cannot watch itself');
CREATE VIEW public.dup_deals AS SELECT * FROM public.deals
	UNION ALL SELECT * FROM public.deals WHERE deal_id = (SELECT deal_id FROM public.deals d WHERE outcome IS NULL
	                                                     ORDER BY dealrisk.deal_risk(d) DESC LIMIT 1);
SELECT throws_ok($$SELECT dealrisk.watch('public.dup_deals')$$, '23505',
	'source "public.dup_deals" has open deals that share a deal_id', 'duplicate open deal_ids');
SELECT is((SELECT source FROM dealrisk.watch_config), '"s;p ""q"."Deals"'::regclass,
	'a failed watch() changes nothing');

-- refresh() ---------------------------------------------------------------------

SELECT is(dealrisk.watch('public.deals', 60), (SELECT count(*) FROM open_scores WHERE risk >= 60), 'back to public.deals');
DELETE FROM dealrisk.score_history;
DELETE FROM dealrisk.alerts;
DELETE FROM dealrisk.refresh_log;
SELECT is(dealrisk.refresh(), (SELECT count(*) FROM open_scores), 'refresh() returns the number of open deals scored');
SELECT is((SELECT (scored_at, deals_scored, alerts_written, model_id, model, source, run_by, pid, started_at <= finished_at)
	FROM dealrisk.refresh_log),
	((SELECT scored_at FROM dealrisk.watch_config), (SELECT count(*) FROM open_scores), (SELECT count(*) FROM dealrisk.alerts),
	 :model_id::bigint, 'default'::text, 'public.deals'::text, (current_user COLLATE "default")::text, pg_backend_pid(), true),
	'refresh() records itself in refresh_log: time, deals scored, alerts, model, source, role, backend');
SELECT is((SELECT (last_refresh_succeeded, last_success_at, deals_scored, alerts_written, model_id, run_by, health,
	age >= '0' AND age < '1 hour', last_refresh_at = (SELECT started_at FROM dealrisk.refresh_log)) FROM dealrisk.refresh_status),
	(true, (SELECT finished_at FROM dealrisk.refresh_log), (SELECT count(*) FROM open_scores), (SELECT count(*) FROM dealrisk.alerts),
	 :model_id::bigint, (current_user COLLATE "default")::text, 'ok'::text, true, true),
	'refresh_status after a refresh: ok, when, how many deals and alerts, which model');
SELECT is((SELECT count(*) FROM dealrisk.score_history), (SELECT count(*) FROM open_scores), 'one history entry per open deal');
SELECT is((SELECT count(*)::int FROM dealrisk.score_history h JOIN open_scores s USING (deal_id)
	WHERE h.risk = s.risk AND h.model_id = :model_id AND h.scored_at = (SELECT scored_at FROM dealrisk.watch_config)),
	(SELECT count(*)::int FROM open_scores), 'history: risk, model id and the refresh time');
SELECT is((SELECT max(scored_at) FROM dealrisk_watch.high_risk_deals), (SELECT max(scored_at) FROM dealrisk.score_history),
	'the view and the history share the refresh time');
SELECT is((SELECT count(*) FROM dealrisk.alerts), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'first refresh: an alert for every high-risk deal');
SELECT set_eq($$SELECT deal_id, risk, band, reason, action, deal_amount, sales_rep_id, deal_stage, days_in_stage
	FROM dealrisk.alerts$$, $$SELECT deal_id, risk, band, top_reason, recommended_action, deal_amount, sales_rep_id,
	deal_stage, days_in_stage FROM dealrisk_watch.high_risk_deals$$, 'the alerts carry what the view shows');
SELECT is((SELECT count(*)::int FROM dealrisk.alerts a JOIN public.deals d USING (deal_id)
	WHERE a.industry = d.industry AND a.previous_risk IS NULL AND a.source = 'public.deals' AND a.model_id = :model_id
	  AND jsonb_array_length(a.payload -> 'explain') >= 5 AND (a.payload ->> 'threshold')::float8 = 60
	  AND a.payload -> 'explain' -> 0 ->> 'reason' = a.reason AND a.claimed_at IS NULL AND a.acked_at IS NULL),
	(SELECT count(*)::int FROM dealrisk.alerts), 'industry, no previous risk, payload with the explanation');
SELECT results_eq($$SELECT id FROM dealrisk.alerts ORDER BY id$$,
	$$SELECT id FROM dealrisk.alerts ORDER BY risk DESC, deal_id$$, 'alerts are numbered riskiest first');
SELECT is(dealrisk.refresh(), (SELECT count(*) FROM open_scores), 'a second refresh');
SELECT is((SELECT count(*) FROM dealrisk.alerts), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'nothing changed: no new alert');
SELECT is((SELECT count(DISTINCT scored_at)::int FROM dealrisk.score_history), 2, 'history has both refreshes');

-- a deal that becomes high-risk
SELECT deal_id AS calm_id, risk AS calm_risk FROM open_scores WHERE risk < 40 ORDER BY risk DESC, deal_id LIMIT 1 \gset
UPDATE public.deals SET lead_source = 'Outbound', sales_rep_id = 'rep_7', industry = 'FinTech',
	last_activity_date = '2024-06-01', created_date = '2024-03-01' WHERE deal_id = :'calm_id';
SELECT ok((SELECT dealrisk.deal_risk(d.*) >= 60 FROM public.deals d WHERE deal_id = :'calm_id'),
	'precondition: the changed deal is now high-risk');
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh after the change');
SELECT results_eq($$SELECT deal_id, round(previous_risk::numeric, 6) FROM dealrisk.alerts WHERE created_at = (SELECT scored_at FROM dealrisk.watch_config)$$,
	format($$VALUES (%L, round(%s::numeric, 6))$$, :'calm_id', :'calm_risk'),
	'exactly one alert: the deal that crossed the threshold, with its previous risk');
SELECT ok((SELECT deal_id = :'calm_id' FROM dealrisk_watch.high_risk_deals WHERE deal_id = :'calm_id'), 'it is in the view');
-- a new deal, and a deal whose previous score was low
CREATE TEMP TABLE new_deal AS SELECT * FROM public.deals WHERE deal_id = :'calm_id';
UPDATE new_deal SET deal_id = 'NEW-1';
INSERT INTO public.deals SELECT * FROM new_deal;
SELECT deal_id AS hot_id FROM open_scores WHERE risk >= 60 ORDER BY risk DESC, deal_id LIMIT 1 \gset
UPDATE dealrisk.score_history SET risk = 10 WHERE deal_id = :'hot_id'
	AND scored_at = (SELECT max(scored_at) FROM dealrisk.score_history);
SELECT is(dealrisk.refresh(), (SELECT count(*) FROM open_scores) + 1, 'the new deal is scored too');
SELECT set_eq($$SELECT deal_id, previous_risk FROM dealrisk.alerts WHERE created_at = (SELECT scored_at FROM dealrisk.watch_config)$$,
	format($$VALUES ('NEW-1', NULL::float8), (%L, 10::float8)$$, :'hot_id'),
	'alerts for a new high-risk deal and for one that was low at its previous scoring');

-- the view comes back when dropped or not populated
DROP MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh() rebuilds a dropped view');
SELECT is((SELECT count(*) FROM dealrisk_watch.high_risk_deals), (SELECT count(*) FROM open_scores WHERE risk >= 60) + 2,
	'... with its rows');
REFRESH MATERIALIZED VIEW dealrisk_watch.high_risk_deals WITH NO DATA;
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh() of a view that is not populated');
SELECT ok((SELECT relispopulated FROM pg_class WHERE oid = 'dealrisk_watch.high_risk_deals'::regclass), '... populates it');

-- a failing refresh writes nothing
SELECT count(*) AS hist_before FROM dealrisk.score_history \gset
SELECT scored_at AS scored_before FROM dealrisk.watch_config \gset
ALTER TABLE dealrisk.alerts ADD CONSTRAINT ops_t_block CHECK (risk < 0) NOT VALID;
UPDATE dealrisk.score_history SET risk = 0 WHERE deal_id = :'hot_id' AND scored_at = :'scored_before';
SELECT throws_ok($$SELECT dealrisk.refresh()$$, '23514', NULL, 'refresh() fails when it cannot write its alerts');
SELECT is((SELECT count(*) FROM dealrisk.score_history), :'hist_before'::bigint, '... and leaves no history entry');
SELECT is((SELECT scored_at FROM dealrisk.watch_config), :'scored_before'::timestamptz, '... nor a new scoring time');
SELECT is((SELECT max(scored_at) FROM dealrisk_watch.high_risk_deals), :'scored_before'::timestamptz, '... nor a refreshed view');
SELECT is((SELECT max(scored_at) FROM dealrisk.refresh_log), :'scored_before'::timestamptz, '... nor a refresh_log row');
ALTER TABLE dealrisk.alerts DROP CONSTRAINT ops_t_block;

-- refresh errors
UPDATE dealrisk.models SET active = false WHERE id = :model_id;
SELECT throws_ok($$SELECT dealrisk.refresh()$$, 'P0002', 'no active deal risk model named "default"',
	'refresh() without an active model');
UPDATE dealrisk.models SET active = true WHERE id = :model_id;
CREATE TABLE public.dup_low AS SELECT * FROM public.deals;
SELECT lives_ok($$SELECT dealrisk.watch('public.dup_low')$$, 'watch a copy');
INSERT INTO public.dup_low SELECT * FROM public.deals WHERE deal_id = (SELECT deal_id FROM open_scores ORDER BY risk LIMIT 1);
SELECT throws_ok($$SELECT dealrisk.refresh()$$, '23505', 'source "public.dup_low" has open deals that share a deal_id',
	'refresh() of a source with duplicate open deal_ids');
SELECT lives_ok($$SELECT dealrisk.watch('public.deals', 60)$$, 'back to public.deals');
UPDATE new_deal SET deal_id = 'NEW-2';
INSERT INTO public.deals SELECT * FROM new_deal;

-- Alerts: claim, acknowledge, reclaim, text ---------------------------------

SELECT count(*) AS n_alerts FROM dealrisk.alerts \gset
CREATE TEMP TABLE claim1 AS SELECT * FROM dealrisk.claim_alerts(5, 'mailer-1');
SELECT results_eq($$SELECT id FROM claim1$$, $$SELECT id FROM dealrisk.alerts ORDER BY id LIMIT 5$$,
	'claim_alerts(5) returns the five oldest alerts, in order');
SELECT is((SELECT count(*)::int FROM dealrisk.alerts WHERE claimed_by = 'mailer-1' AND claimed_at IS NOT NULL AND claims = 1), 5,
	'they are marked claimed by the worker');
CREATE TEMP TABLE claim2 AS SELECT * FROM dealrisk.claim_alerts(max => 1000);
SELECT is((SELECT count(*) FROM claim2), :n_alerts - 5::bigint, 'the next claim takes the rest');
SELECT is((SELECT count(*)::int FROM claim1 JOIN claim2 USING (id)), 0, 'claims are disjoint');
SELECT is((SELECT DISTINCT claimed_by FROM claim2), session_user || '/' || pg_backend_pid(),
	'the default worker name is the session user and pid');
SELECT is((SELECT count(*)::int FROM dealrisk.claim_alerts()), 0, 'nothing left to claim');
SELECT ok(dealrisk.ack_alert((SELECT min(id) FROM claim1)), 'ack_alert() confirms a claimed alert');
SELECT ok(NOT dealrisk.ack_alert((SELECT min(id) FROM claim1)), 'a second ack returns false');
SELECT ok(dealrisk.ack_alert((SELECT max(id) FROM claim2)), 'ack another');
SELECT is((SELECT count(*) FROM dealrisk.claim_alerts(1000, 'mailer-2', reclaim_after => '0')), :n_alerts - 2::bigint,
	'unacknowledged claims past the timeout are claimable again; acknowledged ones never');
SELECT is((SELECT count(*)::int FROM dealrisk.alerts WHERE claims = 2 AND claimed_by = 'mailer-2'), :n_alerts::int - 2,
	'reclaimed alerts count their claims');
SELECT is((SELECT count(*)::int FROM dealrisk.claim_alerts(1000, 'mailer-3')), 0,
	'within the timeout nothing is reclaimed');
SELECT throws_ok($$SELECT dealrisk.claim_alerts(0)$$, '22023', 'max must be at least 1, got 0', 'max 0');
SELECT throws_ok($$SELECT dealrisk.claim_alerts(NULL)$$, '22023', 'max must be at least 1, got NULL', 'max NULL');
SELECT throws_ok($$SELECT dealrisk.claim_alerts(5, 'w', '-1 minute')$$, '22023',
	'reclaim_after must be an interval of at least 0, got -00:01:00', 'negative reclaim_after');
SELECT throws_ok($$SELECT dealrisk.ack_alert(-5)$$, 'P0002', 'alert -5 does not exist', 'ack of an unknown alert');
SELECT throws_ok($$SELECT dealrisk.ack_alert(NULL)$$, '22004', 'alert id must not be NULL', 'ack of NULL');

-- the message
SELECT matches(dealrisk.alert_text(a.id),
	'^Risk Alert: Deal D\d+ \(\w+\)\nRisk score: \d+\.\d% \((High|Critical)\)\nReasons:\n(  - [^\n]+\n){1,3}Recommended action: [^\n]+\nRep rep_\d+ · \w+ for \d+ days · Amount [\d,]+ · Alert \d+ of \d{4}-\d\d-\d\d$',
	'alert_text() of a real alert: deal, industry, score, band, reasons, action, details')
FROM dealrisk.alerts a ORDER BY a.id LIMIT 1;
INSERT INTO dealrisk.alerts (id, deal_id, created_at, source, risk, previous_risk, band, reason, action, industry,
	deal_amount, sales_rep_id, deal_stage, days_in_stage, payload)
VALUES (-1, 'D01413', '2024-12-31 06:00+00', 'public.deals', 62.14, 41.5, 'high', 'Stuck in ''Qualified'' for 119 days',
	'Call client today or mark as ''Lost'' to clean pipeline', 'EdTech', 48200, 'rep_3', 'Qualified', 119,
	'{"explain": [{"factor": "stage_time", "effect": 9.1, "reason": "Stuck in ''Qualified'' for 119 days"},
	              {"factor": "industry", "effect": 2.2, "reason": "Industry ''EdTech'' wins less often than average"},
	              {"factor": "region", "effect": -1.0, "reason": "Region ''Europe'' wins more often than average"}]}');
SELECT is(dealrisk.alert_text(-1), E'Risk Alert: Deal D01413 (EdTech)\n'
	'Risk score: 62.1% (High), up from 41.5%\n'
	'Reasons:\n'
	'  - Stuck in ''Qualified'' for 119 days\n'
	'  - Industry ''EdTech'' wins less often than average\n'
	'Recommended action: Call client today or mark as ''Lost'' to clean pipeline\n'
	'Rep rep_3 · Qualified for 119 days · Amount 48,200 · Alert -1 of 2024-12-31',
	'alert_text(): the manager''s message; only the factors that add risk');
UPDATE dealrisk.alerts SET industry = NULL, sales_rep_id = NULL, deal_stage = NULL, deal_amount = NULL,
	previous_risk = NULL, payload = '{}' WHERE id = -1;
SELECT is(dealrisk.alert_text(-1), E'Risk Alert: Deal D01413\n'
	'Risk score: 62.1% (High)\n'
	'Reason: Stuck in ''Qualified'' for 119 days\n'
	'Recommended action: Call client today or mark as ''Lost'' to clean pipeline\n'
	'Alert -1 of 2024-12-31', 'alert_text() without the optional details');
DELETE FROM dealrisk.alerts WHERE id = -1;
SELECT throws_ok($$SELECT dealrisk.alert_text(-7)$$, 'P0002', 'alert -7 does not exist', 'alert_text of an unknown alert');
SELECT throws_ok($$SELECT dealrisk.alert_text(NULL)$$, '22004', 'alert id must not be NULL', 'alert_text of NULL');

-- Digest and risk changes -----------------------------------------------------

SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'refresh before the digest');
SELECT deal_id AS low_id, risk AS low_risk FROM open_scores ORDER BY risk, deal_id LIMIT 1 \gset
INSERT INTO dealrisk.score_history VALUES (:'low_id', now() - interval '8 days', :model_id, 99);
CREATE TEMP TABLE dg AS SELECT * FROM dealrisk.digest();
SELECT is((SELECT (open_deals, pipeline_value, high_risk_deals, value_at_risk) FROM dg WHERE is_total),
	(SELECT (count(*), sum(d.deal_amount), count(h.deal_id), sum(d.deal_amount) FILTER (WHERE h.deal_id IS NOT NULL))
	 FROM public.deals d LEFT JOIN dealrisk_watch.high_risk_deals h USING (deal_id) WHERE d.outcome IS NULL),
	'total row: open deals, pipeline value, high-risk deals, value at risk');
SELECT is((SELECT sales_rep_id FROM dg WHERE is_total), NULL, 'the total row has no rep');
SELECT ok((SELECT abs(share_at_risk - value_at_risk / pipeline_value) < 1e-12 FROM dg WHERE is_total), 'share at risk');
SELECT is((SELECT (sum(open_deals), sum(pipeline_value), sum(high_risk_deals), sum(value_at_risk), sum(became_high_risk), sum(risk_fell))
	FROM dg WHERE NOT is_total),
	(SELECT (open_deals::numeric, pipeline_value, high_risk_deals::numeric, value_at_risk, became_high_risk::numeric, risk_fell::numeric)
	 FROM dg WHERE is_total), 'the reps add up to the total');
SELECT is((SELECT became_high_risk FROM dg WHERE is_total), (SELECT count(DISTINCT deal_id) FROM dealrisk.alerts),
	'became high-risk in the period: the alerted deals');
SELECT is((SELECT risk_fell FROM dg WHERE is_total), 1::bigint, 'risk fell: the deal scored 99 eight days ago');
SELECT is((SELECT risk_fell FROM dg WHERE sales_rep_id = (SELECT sales_rep_id FROM public.deals WHERE deal_id = :'low_id')),
	1::bigint, '... counted for its rep');
SELECT is((SELECT risk_fell FROM dealrisk.digest('7 days', 100) WHERE is_total), 0::bigint, 'min_change 100: none fell that far');
SELECT is((SELECT array_agg(is_total ORDER BY ord) FROM (SELECT is_total, row_number() OVER () ord FROM dg) x),
	(SELECT array_agg(false) || true FROM dg WHERE NOT is_total), 'the total row comes last');
SELECT is((SELECT risk_fell FROM dealrisk.digest('1 day') WHERE is_total), 1::bigint,
	'the last score before the period is the risk at its start');
SELECT throws_ok($$SELECT * FROM dealrisk.digest(NULL)$$, '22023', 'period must be a positive interval, got NULL', 'NULL period');
SELECT throws_ok($$SELECT * FROM dealrisk.digest('-1 day')$$, '22023', 'period must be a positive interval, got -1 days', 'negative period');
SELECT throws_ok($$SELECT * FROM dealrisk.digest('7 days', 0)$$, '22023',
	'min_change must be between 0 (exclusive) and 100 risk points, got 0', 'min_change 0');

CREATE TEMP TABLE rc AS SELECT * FROM dealrisk.risk_changes(now() - interval '7 days');
SELECT is((SELECT (deal_id, old_risk, new_risk) FROM rc LIMIT 1), (:'low_id'::text, 99::float8, :'low_risk'::float8),
	'risk_changes(): the biggest move first, from the score before since to the latest');
SELECT ok((SELECT bool_and(change = new_risk - old_risk) FROM rc), 'change = new - old');
SELECT results_eq($$SELECT deal_id FROM rc$$, $$SELECT deal_id FROM rc ORDER BY abs(change) DESC, deal_id$$,
	'ordered by the size of the change');
SELECT is((SELECT count(*) FROM rc), (SELECT count(DISTINCT deal_id) FROM dealrisk.score_history WHERE scored_at > now() - interval '7 days'),
	'one row per deal scored since');
SELECT is((SELECT (old_risk, new_risk) FROM rc WHERE deal_id = :'calm_id'),
	((SELECT risk FROM dealrisk.score_history WHERE deal_id = :'calm_id' ORDER BY scored_at LIMIT 1),
	 (SELECT risk FROM dealrisk.score_history WHERE deal_id = :'calm_id' ORDER BY scored_at DESC LIMIT 1)),
	'a deal first scored after since starts from its first score');
SELECT is((SELECT count(*)::int FROM dealrisk.risk_changes(now() + interval '1 day')), 0, 'nothing after a future time');
SELECT throws_ok($$SELECT * FROM dealrisk.risk_changes(NULL)$$, '22004', 'since must not be NULL', 'NULL since');
SELECT is(dealrisk.prune_history('7 days'), 1::bigint, 'prune_history() deletes the old entries');
SELECT throws_ok($$SELECT dealrisk.prune_history('1 hour')$$, '22023', 'older_than must be at least 1 day, got 01:00:00',
	'prune_history() keeps at least a day');

-- Schedule with pg_cron -------------------------------------------------------

SELECT ok(dealrisk.schedule() > 0, 'schedule() returns the job id');
SELECT is((SELECT concat_ws(' | ', schedule, command, database, username) FROM cron.job WHERE jobname = 'dealrisk-refresh'),
	concat_ws(' | ', '0 6 * * *', 'SELECT dealrisk.refresh()', current_database(), current_user),
	'the job refreshes daily at 06:00 in this database');
SELECT (SELECT jobid FROM cron.job WHERE jobname = 'dealrisk-refresh') AS job_id \gset
SELECT is(dealrisk.schedule('*/10 * * * *'), :job_id::bigint, 'scheduling again replaces the job');
SELECT is((SELECT array_agg(schedule) FROM cron.job WHERE jobname = 'dealrisk-refresh'), ARRAY['*/10 * * * *'],
	'one job, with the new schedule');
SELECT is((SELECT (job_id, username, schedule, scheduled_by) FROM dealrisk.refresh_job),
	(:job_id::bigint, (current_user COLLATE "default")::text, '*/10 * * * *'::text, (session_user COLLATE "default")::text), 'the job of record');

-- refresh_status with pg_cron
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'a refresh');
SELECT is((SELECT (job_id, job_owner, job_schedule, last_cron_status, last_cron_run_at, health) FROM dealrisk.refresh_status),
	(:job_id::bigint, (current_user COLLATE "default")::text, '*/10 * * * *'::text, NULL::text, NULL::timestamptz, 'ok'::text),
	'refresh_status shows the job; no pg_cron run yet');
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, return_message, start_time, end_time)
VALUES (:job_id, nextval('cron.runid_seq'), 4242, current_database(), current_user, 'SELECT dealrisk.refresh()', 'failed',
	'ERROR:  no active deal risk model named "default"', clock_timestamp() + interval '1 minute',
	clock_timestamp() + interval '61 seconds');
SELECT is((SELECT (last_refresh_at, last_refresh_succeeded, last_cron_status, last_cron_message) FROM dealrisk.refresh_status),
	((SELECT max(start_time) FROM cron.job_run_details WHERE jobid = :job_id), false, 'failed'::text,
	 'ERROR:  no active deal risk model named "default"'::text),
	'a failed pg_cron run after the last success: the last refresh failed');
SELECT is((SELECT health FROM dealrisk.refresh_status),
	format('failing: the pg_cron run at %s failed: ERROR:  no active deal risk model named "default" (last success 0 minutes ago)',
	       (SELECT date_trunc('second', max(start_time)) FROM cron.job_run_details WHERE jobid = :job_id)),
	'... health says failing, with pg_cron''s message');
SELECT is((SELECT (last_success_at, deals_scored) FROM dealrisk.refresh_status),
	((SELECT max(finished_at) FROM dealrisk.refresh_log), (SELECT count(*) FROM public.deals WHERE outcome IS NULL)),
	'... and still tells the last success');
UPDATE cron.job_run_details SET start_time = start_time - interval '2 minutes' WHERE jobid = :job_id;
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'a refresh after the failed run');
SELECT is((SELECT (last_refresh_succeeded, health) FROM dealrisk.refresh_status), (true, 'ok'::text), '... is ok again');
UPDATE dealrisk.refresh_log SET started_at = clock_timestamp() - interval '27 hours 40 minutes',
	finished_at = clock_timestamp() - interval '27 hours 30 minutes';
UPDATE cron.job_run_details SET status = 'succeeded', return_message = '1 row', start_time = clock_timestamp() - interval '27 hours 40 minutes'
	WHERE jobid = :job_id;
SELECT is((SELECT (last_refresh_succeeded, health) FROM dealrisk.refresh_status),
	(true, 'stale: no successful refresh for 27 hours'::text), 'no success for 27 hours: stale');
SELECT is((SELECT date_trunc('minute', age + interval '30 seconds') FROM dealrisk.refresh_status), interval '27 hours 30 minutes',
	'... age: since the last success');
UPDATE dealrisk.refresh_log SET finished_at = clock_timestamp() - interval '4 days';
SELECT is((SELECT health FROM dealrisk.refresh_status), 'stale: no successful refresh for 4 days', '... in days after three days');
DELETE FROM dealrisk.refresh_log;
UPDATE cron.job_run_details SET status = 'failed', return_message = E'ERROR:  permission denied for table deals\nmore', start_time = clock_timestamp()
	WHERE jobid = :job_id;
SELECT is((SELECT health FROM dealrisk.refresh_status),
	format('failing: the pg_cron run at %s failed: ERROR:  permission denied for table deals (no successful refresh yet)',
	       (SELECT date_trunc('second', max(start_time)) FROM cron.job_run_details WHERE jobid = :job_id)),
	'failed runs and no success: failing, first line of the message');
DELETE FROM cron.job_run_details WHERE jobid = :job_id;
SELECT is((SELECT health FROM dealrisk.refresh_status), 'never refreshed', 'no run, no refresh: never refreshed');

SELECT throws_ok($$SELECT dealrisk.schedule('every day')$$, '22023', 'invalid schedule: every day', 'a bad cron expression');
SELECT throws_ok($$SELECT dealrisk.schedule(NULL)$$, '22004', 'cron schedule must not be NULL', 'a NULL schedule');
SELECT throws_ok($$SELECT dealrisk.schedule(' ')$$, '22023', 'cron schedule must not be empty', 'an empty schedule');
SELECT ok(dealrisk.unschedule(), 'unschedule() removes the job');
SELECT ok(NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'dealrisk-refresh'), '... it is gone');
SELECT ok(NOT dealrisk.unschedule(), 'unschedule() without a job returns false');
-- one job of that name per role in pg_cron: the caller's job for another
-- database is not taken over
SELECT cron.schedule_in_database('dealrisk-refresh', '0 8 * * *', 'SELECT 1', 'postgres') AS other_db_job \gset
SELECT is((SELECT concat_ws(' | ', state, msg, detail) FROM pg_temp.error_of($$SELECT dealrisk.schedule()$$)),
	format('42710 | role "%s" already has the pg_cron job "dealrisk-refresh" for database "postgres" (job %s)'
	       ' | pg_cron names jobs per role: scheduling here would give that job the new schedule and leave it running in database "postgres".',
	       current_user, :other_db_job),
	'schedule() refuses when the caller''s job of that name runs in another database');
SELECT is((SELECT (schedule, database) FROM cron.job WHERE jobid = :other_db_job), ('0 8 * * *'::text, 'postgres'::text),
	'... and leaves it alone');
SELECT ok(cron.unschedule(:other_db_job), '(remove it)');
-- without pg_cron: what to do, here or in the database where pg_cron runs
SELECT is((SELECT concat_ws(' | ', state, msg, detail, hint) FROM pg_temp.error_of($$SELECT dealrisk._cron_missing('SELECT 1;', 'postgres', 'sales')$$)),
	'55000 | pg_cron is not installed in database "sales": it runs in database "postgres"'
	' | cron.database_name is "postgres"; pg_cron schedules jobs for every database from there.'
	' | Connect to database "postgres" as a superuser (pg_cron lets only superusers act for another database) and run: SELECT 1;', 'pg_cron in another database: the call to run there');
SELECT is((pg_temp.error_of($$SELECT dealrisk._cron_missing('SELECT 1;', NULL, 'sales')$$)).hint,
	'In postgresql.conf set shared_preload_libraries = ''pg_cron'' and cron.database_name = ''sales'', restart the server, run CREATE EXTENSION pg_cron; in database "sales", then call this function again.',
	'pg_cron not loaded: how to enable it');
SELECT is((pg_temp.error_of($$SELECT dealrisk._cron_missing('SELECT 1;', 'sales', 'sales')$$)).hint,
	'Run CREATE EXTENSION pg_cron; in this database (as a superuser), then call this function again.',
	'pg_cron loaded for this database but not created');
SELECT is((pg_temp.error_of($$SELECT dealrisk._cron_missing('SELECT 1;', NULL, 'sales', false)$$)).hint,
	'If pg_cron runs in another database, run there: SELECT 1; Otherwise set shared_preload_libraries = ''pg_cron'' and cron.database_name = ''sales'' in postgresql.conf, restart the server and run CREATE EXTENSION pg_cron; in database "sales".',
	'a role that may not read cron.database_name: both ways');
-- (the pg_cron extension is dropped at the very end of this file)

-- Live feedback: track() --------------------------------------------------------

SELECT lives_ok($$SELECT dealrisk.track('public.deals')$$, 'track() a table');
SELECT has_trigger('public', 'deals', 'dealrisk_track', 'the trigger dealrisk_track is installed');
SELECT is((SELECT tgtype & (4 | 16) FROM pg_trigger WHERE tgname = 'dealrisk_track' AND tgrelid = 'public.deals'::regclass)::int,
	20, 'AFTER INSERT OR UPDATE, FOR EACH ROW');
SELECT lives_ok($$SELECT dealrisk.track('public.deals')$$, 'track() twice replaces the trigger');
SELECT lives_ok($$UPDATE public.deals SET deal_stage = 'Proposal' WHERE deal_id = 'NEW-2'$$, 'an update of a tracked open deal');
SELECT lives_ok($$INSERT INTO public.deals (deal_id, created_date, outcome) VALUES ('NEW-3', '2024-12-01', NULL)$$,
	'an insert of a tracked deal');
SELECT is((SELECT dealrisk._risk_change(d, 40, false, 'default') - 'reason' FROM public.deals d WHERE deal_id = :'calm_id'),
	(SELECT jsonb_build_object('deal_id', :'calm_id'::text, 'old_risk', 40, 'new_risk', round(dealrisk.deal_risk(d)::numeric, 2),
		'change', round((dealrisk.deal_risk(d) - 40)::numeric, 2), 'band', dealrisk.risk_band(dealrisk.deal_risk(d)))
	 FROM public.deals d WHERE deal_id = :'calm_id'), 'the notification: deal_id, old and new risk, change, band');
SELECT is((SELECT dealrisk._risk_change(d, 40, false, 'default') ->> 'reason' FROM public.deals d WHERE deal_id = :'calm_id'),
	(SELECT e.reason FROM public.deals d, dealrisk.deal_risk_explain(d) e WHERE deal_id = :'calm_id' LIMIT 1),
	'... and the top reason');
SELECT is((SELECT dealrisk._risk_change(d, dealrisk.deal_risk(d), false, 'default') FROM public.deals d WHERE deal_id = :'calm_id'),
	NULL, 'no notification when the risk did not change');
SELECT is((SELECT dealrisk._risk_change(d, NULL, true, 'default') ->> 'old_risk' FROM public.deals d WHERE deal_id = :'calm_id'),
	NULL, 'a new deal has no old risk');
SELECT is((SELECT dealrisk._risk_change(d, 40, false, 'default') FROM public.deals d WHERE outcome = 'Won' LIMIT 1),
	NULL, 'no notification for a closed deal');
UPDATE dealrisk.models SET active = false WHERE id = :model_id;
SET LOCAL client_min_messages = error;
SELECT lives_ok($$UPDATE public.deals SET deal_stage = 'Negotiation' WHERE deal_id = 'NEW-2'$$,
	'a scoring error never fails the write');
SET LOCAL client_min_messages = warning;
SELECT is((SELECT deal_stage FROM public.deals WHERE deal_id = 'NEW-2'), 'Negotiation', '... the row is written');
UPDATE dealrisk.models SET active = true WHERE id = :model_id;
SELECT lives_ok($$SELECT dealrisk.track('public."we""ird; DROP TABLE public.deals; --"')$$, 'track() a hostile table name');
SELECT lives_ok($$UPDATE public."we""ird; DROP TABLE public.deals; --" SET deal_amount = deal_amount + 1 WHERE deal_id = 'D0000005'$$,
	'... its trigger fires');
SELECT ok(dealrisk.untrack('public."we""ird; DROP TABLE public.deals; --"'), 'untrack() a hostile table name');
SELECT ok(dealrisk.untrack('public.deals'), 'untrack() removes the trigger');
SELECT hasnt_trigger('public', 'deals', 'dealrisk_track', '... it is gone');
SELECT ok(NOT dealrisk.untrack('public.deals'), 'untrack() without a trigger returns false');
CREATE TABLE public.thin_table AS SELECT deal_id, created_date FROM public.deals;
SELECT throws_ok($$SELECT dealrisk.track('public.thin_table')$$, '42703', 'column "outcome" is missing from source "public.thin_table"',
	'track() checks the columns');
CREATE VIEW public.open_view AS SELECT * FROM public.deals WHERE outcome IS NULL;
SELECT throws_ok($$SELECT dealrisk.track('public.open_view')$$, '42809',
	'source "public.open_view" is a view, not a table: live risk feedback needs a trigger on the table that is written',
	'track() of a view');
SELECT throws_ok($$SELECT dealrisk.track(NULL)$$, '22004', 'source must not be NULL', 'track(NULL)');
SELECT throws_ok($$SELECT dealrisk.track('public.deals', 'nope')$$, 'P0002', 'no active deal risk model named "nope"',
	'track() with a missing model');
SELECT throws_ok($$SELECT dealrisk.untrack(NULL)$$, '22004', 'source must not be NULL', 'untrack(NULL)');

-- Privileges ----------------------------------------------------------------
CREATE ROLE ops_t_nobody0 NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO ops_t_nobody0;

SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
	FROM pg_proc p WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.proname !~ '^_'
	  AND NOT has_function_privilege('public', p.oid, 'EXECUTE')),
	'dealrisk.ack_alert(bigint), dealrisk.activate(bigint,boolean), '
	'dealrisk.claim_alerts(integer,text,interval), dealrisk.distribute(), dealrisk.import_model(jsonb,text), dealrisk.prune_history(interval), '
	'dealrisk.refresh(), dealrisk.rollback(text), dealrisk.schedule(text), dealrisk.set_source(regclass,text), '
	'dealrisk.track(regclass,text), dealrisk.train(regclass,regclass,text,text[],double precision,double precision,boolean,text,jsonb), '
	'dealrisk.train(regclass,text,text[],double precision,double precision,boolean,text,jsonb), '
	'dealrisk.unschedule(), dealrisk.untrack(regclass), dealrisk.watch(regclass,double precision,text,double precision,double precision,integer)',
	'exactly the functions that train, activate, import, watch, refresh, schedule, track, distribute or write are not PUBLIC');
-- an internal helper is PUBLIC only when a PUBLIC function calls it (src/ops.sql, Privileges)
SELECT is((SELECT string_agg(p.proname, ', ' ORDER BY p.proname)
	FROM pg_proc p WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.proname ~ '^_'
	  AND has_function_privilege('public', p.oid, 'EXECUTE')),
	'_as_of, _bernoulli_sum, _check_column_types, _check_history, _check_period, _check_relation_trust, _check_source, _check_trust, _check_watch_view, _comparison_windows, _contract_dimensions, _contract_type_problem, _cron_status, _deal_risk_row, _default_windows, _diagnose_history, _dimension_columns, _distributed, _driver_analysis, _drivers_fit, '
	'_duration_words, _evaluate, _feature_entry, _feature_leak_sql, _feature_leaks, _forecast_deals, _funnel_rows, _has_column, _history_stages_known, _history_unknown_stages, _html, _km_quantiles, _label_fix, _label_guess, _model_columns, _money, _num, _pct, _pts, _pval, _qtext, _quality_flags, _quality_rows, _quarter_label, _refresh_jobs, _report_why, '
	'_risk_change, _row_args, _sample_deals_n, _sample_scenario_n, _sample_stay, _sample_walk, _scan, _segment_effects, _source_name, _source_profile, _stage_key, _stage_semantics, _stage_semantics_hint, _stage_semantics_of, _stage_stays, _svg_label, _trends, _trusted_owner, _trusted_type, _watch_config, _windows_of',
	'exactly the internal helpers of PUBLIC functions are PUBLIC');
SELECT is(pg_temp.as_role('ops_t_nobody0', $$SELECT dealrisk._irls_solve('{1}', '{0}', 0)$$),
	'error=42501: permission denied for function _irls_solve', 'a training helper is not PUBLIC');
SELECT is(pg_temp.as_role('ops_t_nobody0', $$SELECT dealrisk._win_rate_accum('{0,0}', true)$$),
	'error=42501: permission denied for function _win_rate_accum', '... nor an aggregate''s support function');
SELECT is(pg_temp.as_role('ops_t_nobody0', $$SELECT round(dealrisk.win_rate(dealrisk.is_won(outcome))::numeric, 6) FROM dealrisk.sample_deals(500, 3)$$),
	'value=' || (SELECT round(dealrisk.win_rate(dealrisk.is_won(outcome))::numeric, 6) FROM dealrisk.sample_deals(500, 3)),
	'... while the aggregate works for anyone');
SELECT ok(has_function_privilege('public', 'dealrisk.deal_risk(record)', 'EXECUTE')
	AND has_function_privilege('public', 'dealrisk.digest(interval, float8)', 'EXECUTE')
	AND has_function_privilege('public', 'dealrisk.alert_text(bigint)', 'EXECUTE')
	AND has_function_privilege('public', 'dealrisk.diagnose(regclass, regclass)', 'EXECUTE'), 'scoring and reading functions are');

CREATE ROLE ops_t_nobody NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO ops_t_nobody;
GRANT SELECT ON public.deals TO ops_t_nobody;
SELECT is(pg_temp.as_role('ops_t_nobody', $$SELECT dealrisk.train('public.deals')$$),
	'error=42501: permission denied for function train', 'a role without grants cannot train');
SELECT is(pg_temp.as_role('ops_t_nobody', $$SELECT dealrisk.watch('public.deals')$$),
	'error=42501: permission denied for function watch', '... nor watch');
SELECT is(pg_temp.as_role('ops_t_nobody', $$SELECT dealrisk.refresh()$$),
	'error=42501: permission denied for function refresh', '... nor refresh');
SELECT is(pg_temp.as_role('ops_t_nobody', $$SELECT count(*) FROM dealrisk.claim_alerts()$$),
	'error=42501: permission denied for function claim_alerts', '... nor claim alerts');
SELECT is(pg_temp.as_role('ops_t_nobody', $$SELECT count(*) FROM dealrisk_watch.high_risk_deals$$),
	'error=42501: permission denied for schema dealrisk_watch', '... nor read the view');

-- the analyst of docs/security.md
CREATE ROLE ops_t_analyst NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO ops_t_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk TO ops_t_analyst;
GRANT USAGE ON SCHEMA dealrisk_watch TO ops_t_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk_watch TO ops_t_analyst;
GRANT SELECT ON public.deals TO ops_t_analyst;
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT count(*) FROM dealrisk_watch.high_risk_deals$$),
	'value=' || (SELECT count(*) FROM dealrisk_watch.high_risk_deals), 'the analyst reads the view');
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT value_at_risk FROM dealrisk.digest() WHERE is_total$$),
	'value=' || (SELECT value_at_risk FROM dealrisk.digest() WHERE is_total), '... the digest');
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT count(*) FROM dealrisk.risk_changes(now() - interval '1 day')$$),
	'value=' || (SELECT count(*) FROM dealrisk.risk_changes(now() - interval '1 day')), '... the risk changes');
SELECT is(pg_temp.as_role('ops_t_analyst', format($$SELECT dealrisk.deal_risk(d) FROM public.deals d WHERE deal_id = %L$$, :'calm_id')),
	'value=' || (SELECT dealrisk.deal_risk(d) FROM public.deals d WHERE deal_id = :'calm_id'), '... scores deals');
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT dealrisk.watch('public.deals')$$),
	'error=42501: permission denied for function watch', '... but cannot watch');
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT dealrisk.train('public.deals')$$),
	'error=42501: permission denied for function train', '... nor train');

-- the mailer of docs/security.md
UPDATE dealrisk.alerts SET claimed_at = NULL, acked_at = NULL;
CREATE ROLE ops_t_mailer NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO ops_t_mailer;
GRANT EXECUTE ON FUNCTION dealrisk.claim_alerts(int, text, interval), dealrisk.ack_alert(bigint) TO ops_t_mailer;
GRANT SELECT, UPDATE (claimed_at, claimed_by, claims, acked_at) ON dealrisk.alerts TO ops_t_mailer;
SELECT is(pg_temp.as_role('ops_t_mailer', $$SELECT count(*) FROM dealrisk.claim_alerts(3, 'mailer')$$),
	'value=3', 'the mailer claims alerts');
SELECT is(pg_temp.as_role('ops_t_mailer', $$SELECT dealrisk.alert_text(min(id)) IS NOT NULL FROM dealrisk.alerts WHERE claimed_by = 'mailer'$$),
	'value=true', '... renders them');
SELECT is(pg_temp.as_role('ops_t_mailer', $$SELECT dealrisk.ack_alert(min(id)) FROM dealrisk.alerts WHERE claimed_by = 'mailer'$$),
	'value=true', '... acknowledges them');
SELECT is(pg_temp.as_role('ops_t_mailer', $$UPDATE dealrisk.alerts SET risk = 0$$),
	'error=42501: permission denied for table alerts', '... but cannot change them otherwise');
SELECT is(pg_temp.as_role('ops_t_mailer', $$SELECT count(*) FROM public.deals$$),
	'error=42501: permission denied for table deals', '... nor read the deals');
SELECT is(pg_temp.as_role('ops_t_mailer', $$SELECT dealrisk.refresh()$$),
	'error=42501: permission denied for function refresh', '... nor refresh');

-- a rep sees only their own high-risk deals (docs/security.md)
CREATE TABLE public.rep_logins (login name PRIMARY KEY, sales_rep_id text NOT NULL);
CREATE VIEW public.my_high_risk_deals WITH (security_barrier) AS
	SELECT h.* FROM dealrisk_watch.high_risk_deals h
	WHERE h.sales_rep_id IN (SELECT m.sales_rep_id FROM public.rep_logins m WHERE m.login = current_user);
CREATE ROLE ops_t_rep NOLOGIN;
INSERT INTO public.rep_logins VALUES ('ops_t_rep', 'rep_7');
GRANT SELECT ON public.my_high_risk_deals TO ops_t_rep;
SELECT is(pg_temp.as_role('ops_t_rep', $$SELECT string_agg(DISTINCT sales_rep_id, ',') || ':' || count(*) FROM public.my_high_risk_deals$$),
	'value=rep_7:' || (SELECT count(*) FROM dealrisk_watch.high_risk_deals WHERE sales_rep_id = 'rep_7'),
	'a rep sees only their own high-risk deals through the security-barrier view');
SELECT is(pg_temp.as_role('ops_t_rep', $$SELECT count(*) FROM dealrisk_watch.high_risk_deals$$),
	'error=42501: permission denied for schema dealrisk_watch', '... and not the view itself');

-- the operator of docs/security.md runs the daily loop without superuser
CREATE ROLE ops_t_operator NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO ops_t_operator;
GRANT USAGE, CREATE ON SCHEMA dealrisk_watch TO ops_t_operator;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk TO ops_t_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dealrisk TO ops_t_operator;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dealrisk TO ops_t_operator;
GRANT SELECT, TRIGGER ON public.deals TO ops_t_operator;
GRANT USAGE ON SCHEMA cron TO ops_t_operator;
ALTER MATERIALIZED VIEW dealrisk_watch.high_risk_deals OWNER TO ops_t_operator;
SELECT matches(pg_temp.as_role('ops_t_operator', $$SELECT dealrisk.train('public.deals', 'op')$$), '^value=\d+$',
	'the operator trains');
SELECT is(pg_temp.as_role('ops_t_operator', $$SELECT dealrisk.watch('public.deals', 70)$$),
	'value=' || (SELECT count(*) FROM public.deals d WHERE outcome IS NULL AND dealrisk.deal_risk(d) >= 70),
	'the operator watches');
SELECT is(pg_temp.as_role('ops_t_operator', $$SELECT dealrisk.refresh()$$),
	'value=' || (SELECT count(*) FROM public.deals WHERE outcome IS NULL), '... refreshes');
SELECT is(pg_temp.as_role('ops_t_operator', $$SELECT dealrisk.track('public.deals')::text$$), 'value=', '... tracks');
SELECT is(pg_temp.as_role('ops_t_operator', $$SELECT dealrisk.untrack('public.deals')$$),
	'error=42501: must be owner of relation deals', '... but only the table''s owner untracks');
SELECT is(pg_temp.as_role('ops_t_operator', $$SELECT count(*) FROM dealrisk.claim_alerts(2)$$), 'value=2', '... claims');
-- the operator is a NOLOGIN group role: a pg_cron job running as it would
-- fail every run with "role is not permitted to log in"
SELECT is(pg_temp.error_as('ops_t_operator', $$SELECT dealrisk.schedule()$$),
	'28000 | role "ops_t_operator" cannot log in: a pg_cron job running as it would fail every time'
	' | pg_cron runs the job as the role that calls dealrisk.schedule(), here "ops_t_operator" (set by SET ROLE in a session of "'
	|| session_user || '"), which is NOLOGIN: each run would fail with "role "ops_t_operator" is not permitted to log in".'
	' | Schedule as a LOGIN role with the rights of "ops_t_operator": CREATE ROLE ops_t_operator_cron LOGIN IN ROLE ops_t_operator;'
	' SET ROLE ops_t_operator_cron; SELECT dealrisk.schedule(''0 6 * * *''); Or let the role log in: ALTER ROLE ops_t_operator LOGIN;',
	'schedule() as a NOLOGIN operator is refused, with a working setup');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'dealrisk-refresh'), 0, '... and schedules nothing');
CREATE ROLE ops_t_alice LOGIN IN ROLE ops_t_operator;
SELECT is(split_part(pg_temp.error_as('ops_t_operator', $$SELECT dealrisk.schedule('0 5 * * *')$$, 'ops_t_alice'), ' | ', 4),
	'Schedule as "ops_t_alice", which can log in and has the rights of "ops_t_operator": RESET ROLE; SELECT dealrisk.schedule(''0 5 * * *'');'
	' Or let the role log in: ALTER ROLE ops_t_operator LOGIN;',
	'... a LOGIN member who did SET ROLE is told to schedule as itself');
-- the working setup: a LOGIN member of the operator schedules
CREATE ROLE ops_t_operator_cron LOGIN IN ROLE ops_t_operator;
SELECT matches(pg_temp.as_role('ops_t_operator_cron', $$SELECT dealrisk.schedule()$$), '^value=\d+$', 'a LOGIN operator schedules');
SELECT is((SELECT concat_ws(' | ', username, database, command) FROM cron.job WHERE jobname = 'dealrisk-refresh'),
	'ops_t_operator_cron | ' || current_database() || ' | SELECT dealrisk.refresh()', '... a job that runs as it, here');
SELECT (SELECT jobid FROM cron.job WHERE jobname = 'dealrisk-refresh') AS op_job \gset
SELECT is(pg_temp.as_role('ops_t_operator_cron', $$SELECT dealrisk.refresh()$$),
	'value=' || (SELECT count(*) FROM public.deals WHERE outcome IS NULL), '... which may refresh (the view''s owner is its group)');
SELECT is((SELECT (job_id, job_owner) FROM dealrisk.refresh_status), (:op_job::bigint, 'ops_t_operator_cron'::text),
	'refresh_status names the job and its role');
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, return_message, start_time)
VALUES (:op_job, nextval('cron.runid_seq'), 4243, current_database(), 'ops_t_operator_cron', 'SELECT dealrisk.refresh()', 'failed',
	'ERROR:  boom', clock_timestamp());
SELECT is(pg_temp.as_role('ops_t_operator_cron', $$SELECT concat_ws(', ', last_cron_status, job_owner, health) FROM dealrisk.refresh_status$$),
	'value=failed, ops_t_operator_cron, failing: the pg_cron run at '
	|| (SELECT date_trunc('second', start_time) FROM cron.job_run_details WHERE jobid = :op_job) || ' failed: ERROR:  boom (last success 0 minutes ago)',
	'the job''s role reads its pg_cron runs in refresh_status');
SELECT is(pg_temp.as_role('ops_t_analyst', $$SELECT concat_ws(', ', coalesce(last_cron_status, 'no pg_cron run'), job_owner,
	deals_scored, health) FROM dealrisk.refresh_status$$),
	'value=no pg_cron run, ops_t_operator_cron, ' || (SELECT count(*) FROM public.deals WHERE outcome IS NULL) || ', ok',
	'the analyst reads refresh_status; pg_cron''s runs are hidden from it (no USAGE on cron)');
DELETE FROM cron.job_run_details WHERE jobid = :op_job;
-- a second role: no second job
CREATE ROLE ops_t_bob LOGIN IN ROLE ops_t_operator;
SELECT is(pg_temp.error_as('ops_t_bob', $$SELECT dealrisk.schedule('0 7 * * *')$$),
	format('42710 | database "%s" already has a dealrisk refresh job: pg_cron job %s of role "ops_t_operator_cron"'
	       ' | One refresh job per database. pg_cron lets only the job''s role or a superuser change or remove it (scheduled %s by "%s", schedule 0 6 * * *).'
	       ' | As "ops_t_operator_cron" or as a superuser run SELECT dealrisk.unschedule(); then call dealrisk.schedule() again.',
	       current_database(), :op_job, now(), session_user),
	'schedule() by a second role is refused, naming the job''s role');
SELECT is((SELECT array_agg(concat_ws(' ', jobid, username, schedule)) FROM cron.job WHERE jobname = 'dealrisk-refresh'),
	ARRAY[:op_job || ' ops_t_operator_cron 0 6 * * *'], '... one job, unchanged');
SELECT is(pg_temp.as_role('ops_t_bob', $$SELECT dealrisk.unschedule()$$),
	format('error=42501: the dealrisk refresh job of database "%s" belongs to role "ops_t_operator_cron" (pg_cron job %s)',
	       current_database(), :op_job), '... and its unschedule() says whose job it is');
-- a superuser's unschedule() finds another role's job
SELECT ok(dealrisk.unschedule(), 'unschedule() by a superuser removes the operator''s job');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'dealrisk-refresh') + (SELECT count(*)::int FROM dealrisk.refresh_job), 0,
	'... no job left, no job of record');
-- a superuser's schedule() replaces another role's job
SELECT matches(pg_temp.as_role('ops_t_operator_cron', $$SELECT dealrisk.schedule()$$), '^value=\d+$', 'the operator schedules again');
SELECT ok(dealrisk.schedule('0 4 * * *') > 0, 'a superuser schedules');
SELECT is((SELECT array_agg(concat_ws(' ', username, schedule)) FROM cron.job WHERE jobname = 'dealrisk-refresh'),
	ARRAY[current_user || ' 0 4 * * *'], '... replacing the operator''s job: one job');
SELECT ok(dealrisk.unschedule(), '(unschedule)');
-- a job of record that pg_cron no longer has (removed with cron.unschedule) does not block
SELECT pg_temp.as_role('ops_t_operator_cron', $$SELECT dealrisk.schedule()$$) AS op_sched \gset
SELECT cron.unschedule(job_id) AS removed FROM dealrisk.refresh_job \gset
SELECT matches(pg_temp.as_role('ops_t_bob', $$SELECT dealrisk.schedule()$$), '^value=\d+$',
	'a job of record that is gone does not stop another role');
SELECT is((SELECT array_agg(username) FROM cron.job WHERE jobname = 'dealrisk-refresh'), ARRAY['ops_t_bob'], '... one job, its own');
SELECT is(pg_temp.as_role('ops_t_bob', $$SELECT dealrisk.unschedule()$$), 'value=true', '... and it unschedules');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'dealrisk-refresh') + (SELECT count(*)::int FROM dealrisk.refresh_job), 0,
	'... gone');
-- a role past VALID UNTIL, a role without CONNECT
CREATE ROLE ops_t_expired LOGIN VALID UNTIL '2001-02-03 04:05:06+00' IN ROLE ops_t_operator;
SELECT is(pg_temp.as_role('ops_t_expired', $$SELECT dealrisk.schedule()$$),
	format('error=28000: role "ops_t_expired" is past its VALID UNTIL time (%s): a pg_cron job must not run as it',
	       '2001-02-03 04:05:06+00'::timestamptz), 'an expired role is refused');
SELECT is(split_part(pg_temp.error_as('ops_t_expired', $$SELECT dealrisk.schedule()$$), ' | ', 4),
	'Schedule as a LOGIN role with the rights of "ops_t_expired": CREATE ROLE ops_t_expired_cron LOGIN IN ROLE ops_t_expired;'
	' SET ROLE ops_t_expired_cron; SELECT dealrisk.schedule(''0 6 * * *''); Or renew the role: ALTER ROLE ops_t_expired VALID UNTIL ''infinity'';',
	'... with a hint');
SELECT format('REVOKE CONNECT ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT is(pg_temp.error_as('ops_t_operator_cron', $$SELECT dealrisk.schedule()$$),
	format('42501 | role "ops_t_operator_cron" may not connect to database "%s": a pg_cron job running as it would fail every time'
	       ' | pg_cron runs the job as the role that calls dealrisk.schedule(), here "ops_t_operator_cron" (set by SET ROLE in a session of "%s"),'
	       ' connected to this database: each run would fail with "permission denied for database "%s"".'
	       ' | Grant it: GRANT CONNECT ON DATABASE %I TO ops_t_operator_cron;',
	       current_database(), session_user, current_database(), current_database()),
	'a role that may not connect to this database is refused');
SELECT format('GRANT CONNECT ON DATABASE %I TO PUBLIC', current_database()) \gexec
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'dealrisk-refresh'), 0, 'none of them scheduled anything');

-- the source disappears
DROP VIEW public.my_high_risk_deals;
DROP TABLE public."we""ird; DROP TABLE public.deals; --";
-- the operator owns the view: a superuser's watch() would read the operator's
-- relation (test/trust.sql), so the view goes back to the superuser first
SELECT ok((pg_temp.error_of($$SELECT dealrisk.watch('public.deals')$$)).msg LIKE
	'relation dealrisk_watch.high_risk_deals, read for source "high_risk_deals", belongs to role "ops_t_operator"%',
	'a superuser''s watch() does not count the operator''s view');
ALTER MATERIALIZED VIEW dealrisk_watch.high_risk_deals OWNER TO CURRENT_USER;
SELECT is(dealrisk.watch('public.deals', 60), (SELECT count(*) FROM public.deals d WHERE outcome IS NULL AND dealrisk.deal_risk(d) >= 60),
	'watch public.deals again');
CREATE TABLE public.gone AS SELECT * FROM public.deals;
SELECT lives_ok($$SELECT dealrisk.watch('public.gone')$$, 'watch a table');
DROP TABLE public.gone CASCADE;
SELECT throws_like($$SELECT dealrisk.refresh()$$, 'the watched deal source (OID %) no longer exists',
	'refresh() when the watched table was dropped');

-- pg_cron missing in this database (last: the rest of the file needs it)
DROP EXTENSION pg_cron;
SELECT throws_ok($$SELECT dealrisk.schedule()$$, '55000', format('pg_cron is not installed in database "%s"', current_database()),
	'schedule() without pg_cron');
SELECT is((pg_temp.error_of($$SELECT dealrisk.schedule()$$)).hint,
	CASE WHEN current_setting('cron.database_name', true) = current_database()
	THEN 'Run CREATE EXTENSION pg_cron; in this database (as a superuser), then call this function again.'
	ELSE (pg_temp.error_of($$SELECT dealrisk.schedule()$$)).hint END, '... says how to enable it');
SELECT throws_ok($$SELECT dealrisk.unschedule()$$, '55000', format('pg_cron is not installed in database "%s"', current_database()),
	'unschedule() without pg_cron');
SELECT is((SELECT (last_cron_status, last_cron_message, last_cron_run_at, health) FROM dealrisk.refresh_status),
	(NULL::text, NULL::text, NULL::timestamptz, 'ok'::text), 'refresh_status without pg_cron: from refresh_log alone');

SELECT * FROM finish();
ROLLBACK;
