-- dealrisk on Citus (issue #11): the daily loop (watch(), refresh(), the
-- materialized view, alerts, digest(), risk_changes()) on a distributed
-- source gives what it gives on a local copy of it; track() refuses Citus
-- tables with a reason.  The history, alerts, view and logs live on the
-- coordinator (docs/scaling.md).
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;

SELECT plan(12);

SELECT count(*) >= 0 AS distributed FROM dealrisk.distribute() \gset
CREATE TABLE w_deals AS SELECT * FROM dealrisk.sample_deals(6000, 11);
ALTER TABLE w_deals ADD PRIMARY KEY (deal_id);
CREATE TABLE w_local AS SELECT * FROM w_deals;
ALTER TABLE w_local ADD PRIMARY KEY (deal_id);
SELECT create_distributed_table('w_deals', 'deal_id') IS NOT NULL AS created \gset
-- the as-of date reaches the workers as a SET LOCAL (docs/scaling.md)
SET citus.propagate_set_commands = 'local';
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-09-30';
SELECT dealrisk.train('w_local', 'wmodel', method => 'logistic') IS NOT NULL AS trained \gset
COMMIT;

\set src w_local
\set tag local
\ir watch_run.psql
\set src w_deals
\set tag dist
\ir watch_run.psql

SELECT is(:'watched_dist'::text, :'watched_local'::text, 'watch() of the distributed source keeps as many deals in the view');
SELECT is(:'first_dist'::text || '/' || :'second_dist', :'first_local'::text || '/' || :'second_local',
	'refresh() scores as many open deals, twice');
SELECT ok((SELECT count(*) FROM v_local) > 0 AND NOT EXISTS (
	(SELECT * FROM v_dist EXCEPT ALL SELECT * FROM v_local) UNION ALL (SELECT * FROM v_local EXCEPT ALL SELECT * FROM v_dist)),
	'dealrisk_watch.high_risk_deals holds the same deals, risks, reasons and actions');
SELECT ok((SELECT count(*) FROM a_local) > 0 AND NOT EXISTS (
	(SELECT * FROM a_dist EXCEPT ALL SELECT * FROM a_local) UNION ALL (SELECT * FROM a_local EXCEPT ALL SELECT * FROM a_dist)),
	'the alerts are the same (deal, risk, previous risk, reason, action, payload)');
SELECT is((SELECT array_agg(DISTINCT payload->>'cause' ORDER BY payload->>'cause') FROM a_dist),
	ARRAY['became high-risk', 'risk rose'], '(both kinds of alert are among them)');
SELECT ok((SELECT count(*) FROM g_local) > 1 AND NOT EXISTS (
	(SELECT * FROM g_dist EXCEPT ALL SELECT * FROM g_local) UNION ALL (SELECT * FROM g_local EXCEPT ALL SELECT * FROM g_dist)),
	'digest() is the same');
SELECT ok((SELECT count(*) FROM c_local) > 0 AND NOT EXISTS (
	(SELECT * FROM c_dist EXCEPT ALL SELECT * FROM c_local) UNION ALL (SELECT * FROM c_local EXCEPT ALL SELECT * FROM c_dist)),
	'risk_changes() is the same');
SELECT is((SELECT source FROM dealrisk.refresh_log ORDER BY id DESC LIMIT 1), 'public.w_deals',
	'the refresh log names the distributed source');

-- track(): a trigger on a Citus table would run on the workers
SELECT throws_ok($$SELECT dealrisk.track('w_deals', 'wmodel')$$, '0A000',
	'source "public.w_deals" is a Citus distributed table: live risk feedback cannot be tracked on it',
	'track() refuses a distributed table, saying why');
CREATE TABLE w_ref AS SELECT * FROM w_local LIMIT 20;
SELECT create_reference_table('w_ref') IS NOT NULL AS created \gset
SELECT throws_ok($$SELECT dealrisk.track('w_ref', 'wmodel')$$, '0A000',
	'source "public.w_ref" is a Citus reference table: live risk feedback cannot be tracked on it',
	'... and a reference table');
SELECT lives_ok($$SELECT dealrisk.track('w_local', 'wmodel')$$, '... but tracks a table of the coordinator');
SELECT ok(dealrisk.untrack('w_local'), '(and untracks it)');

SELECT * FROM finish();
DROP MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
DELETE FROM dealrisk.watch_config;
DROP TABLE w_ref, w_deals, w_local;
