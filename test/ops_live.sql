-- pgTAP: the operations that need commits and other sessions: NOTIFY
-- payloads, two workers claiming alerts at the same time, a backend killed
-- in the middle of refresh(), live risk-change notifications and a real
-- pg_cron run.  Unlike the other suites this file does not run in one rolled
-- back transaction (harness/pgtap_setup.psql): it commits its objects (schema
-- ops_live, a model named 'ops_live', the watch configuration) and removes
-- them at the end, also after a failed test (errors do not stop the file).
-- Second sessions come from dblink over this server's Unix socket.
-- It needs a database where nothing is watched, no alert waits and no
-- dealrisk-refresh job exists (like the one `make test` creates); otherwise
-- it skips.  Waiting for pg_cron's next minute makes it take 10 to 75
-- seconds (at most about 2.5 minutes when pg_cron is slow to report); when
-- pg_cron's launcher is not running it fails at once instead of waiting.
\set QUIET 1
\set ON_ERROR_STOP 0
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;

-- The scratch cluster runs with synchronous_commit = off for speed; a test
-- that kills a backend must not lose commits it then checks, so this file
-- and its second sessions commit synchronously.
SET synchronous_commit = on;
SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'dblink') AS own_dblink \gset
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS dblink;

-- Removes what this file commits, also what a failed earlier run left.
CREATE FUNCTION pg_temp.ops_live_cleanup() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	ours boolean;
BEGIN
	SELECT NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = w.source)
	       OR (SELECT c.relnamespace = pg_catalog.to_regnamespace('ops_live') FROM pg_class c WHERE c.oid = w.source)
	INTO ours FROM dealrisk.watch_config w;
	IF coalesce(ours, false) THEN
		IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
			DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron.job WHERE jobname = 'dealrisk-refresh');
			PERFORM dealrisk.unschedule();
		END IF;
		DROP MATERIALIZED VIEW IF EXISTS dealrisk_watch.high_risk_deals;
		DELETE FROM dealrisk.watch_config;
	END IF;
	DELETE FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%';
	DELETE FROM dealrisk.refresh_log WHERE source LIKE 'ops_live.%';
	DELETE FROM dealrisk.score_history WHERE deal_id LIKE 'LIVE-%';
	DELETE FROM dealrisk.models WHERE name = 'ops_live';
	DROP SCHEMA IF EXISTS ops_live CASCADE;
END
$$;
SELECT pg_temp.ops_live_cleanup() IS NULL AS cleaned \gset

-- A connection string for a second session to this database.
CREATE FUNCTION pg_temp.conninfo() RETURNS text
LANGUAGE sql AS $$
	SELECT pg_catalog.format('host=''%s'' port=%s dbname=''%s'' user=''%s'' options=''-c synchronous_commit=on''',
		replace(coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''), 'localhost'), '''', '\'''),
		current_setting('port'), replace(current_database(), '''', '\'''), replace(current_user, '''', '\'''))
$$;
-- The payloads of the notifications a dblink connection received on a
-- channel, waiting up to timeout seconds for the first.
CREATE FUNCTION pg_temp.notifications(conn text, channel text, timeout float8) RETURNS jsonb[]
LANGUAGE plpgsql AS $$
DECLARE
	got jsonb[] := '{}';
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		got := got || ARRAY(SELECT n.extra::jsonb FROM dblink_get_notify(conn) n WHERE n.notify_name = channel);
		EXIT WHEN cardinality(got) > 0 OR clock_timestamp() - t0 > make_interval(secs => timeout);
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN got;
END
$$;
-- Waits until a condition (a query returning boolean) holds, at most timeout seconds.
CREATE FUNCTION pg_temp.wait_until(q text, timeout float8) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	ok boolean;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();	-- else pg_stat_activity stays as first read
		EXECUTE q INTO ok;
		IF ok THEN RETURN true; END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout) THEN RETURN false; END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
-- Waits for pg_cron to finish a run of a job started after a time: its status.
CREATE FUNCTION pg_temp.wait_cron(job bigint, after timestamptz, timeout float8, OUT status text, OUT message text)
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		SELECT r.status, r.return_message INTO status, message FROM cron.job_run_details r
		WHERE r.jobid = job AND r.start_time >= after AND r.status IN ('succeeded', 'failed')
		ORDER BY r.runid DESC LIMIT 1;
		EXIT WHEN status IS NOT NULL;
		IF clock_timestamp() - t0 > make_interval(secs => timeout) THEN
			status := 'timeout';
			EXIT;
		END IF;
		PERFORM pg_sleep(1);
	END LOOP;
END
$$;

SELECT NOT EXISTS (SELECT 1 FROM dealrisk.watch_config)
       AND NOT EXISTS (SELECT 1 FROM dealrisk.alerts WHERE acked_at IS NULL)
       AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron' AND
                       EXISTS (SELECT 1 FROM cron.job WHERE jobname = 'dealrisk-refresh')) AS clean \gset
\if :clean
SELECT plan(40);

-- Setup, committed -------------------------------------------------------------

CREATE SCHEMA ops_live;
CREATE TABLE ops_live.deals AS SELECT * FROM dealrisk.sample_deals(3000, 11);
UPDATE ops_live.deals SET deal_id = 'LIVE-' || deal_id;
ALTER TABLE ops_live.deals ADD PRIMARY KEY (deal_id);
SET client_min_messages = error;
SELECT dealrisk.train('ops_live.deals', 'ops_live') AS model_id \gset
SET client_min_messages = warning;
SELECT ok(dealrisk.watch('ops_live.deals', 60, 'ops_live') > 0, 'watch() a committed table');
SELECT dblink_connect('listener', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT ok(:'connected', 'a second session over dblink');
SELECT dblink_exec('listener', 'LISTEN dealrisk_alerts') = 'LISTEN' AS listening \gset
SELECT dblink_exec('listener', 'LISTEN dealrisk_risk_changes') = 'LISTEN' AS listening \gset

-- NOTIFY dealrisk_alerts ----------------------------------------------------------

SELECT is(dealrisk.refresh(), (SELECT count(*) FROM ops_live.deals WHERE outcome IS NULL), 'refresh() commits');
CREATE TEMP TABLE got AS SELECT pg_temp.notifications('listener', 'dealrisk_alerts', 5) AS n;
SELECT is((SELECT cardinality(n) FROM got), 1, 'one NOTIFY dealrisk_alerts');
SELECT is((SELECT (n[1] ->> 'count')::bigint FROM got), (SELECT count(*) FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'),
	'... with the number of new alerts');
SELECT is((SELECT (n[1] ->> 'max_id')::bigint FROM got), (SELECT max(id) FROM dealrisk.alerts), '... and the highest id');
SELECT ok((SELECT count(*) > 10 FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'), 'enough alerts for the claim tests');
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'a refresh without new alerts');
SELECT is((SELECT pg_temp.notifications('listener', 'dealrisk_alerts', 0.5)), '{}'::jsonb[], '... sends no NOTIFY');

-- Two workers claim at the same time ----------------------------------------------

-- worker A holds its claim in an open transaction while B claims
SELECT dblink_connect('a', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT dblink_connect('b', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT dblink_exec('a', 'BEGIN') = 'BEGIN' AS began \gset
CREATE TEMP TABLE claim_a AS SELECT * FROM dblink('a', $$SELECT id FROM dealrisk.claim_alerts(10, 'A')$$) AS t(id bigint);
CREATE TEMP TABLE claim_b AS SELECT * FROM dblink('b', $$SELECT id FROM dealrisk.claim_alerts(100000, 'B')$$) AS t(id bigint);
SELECT dblink_exec('a', 'COMMIT') = 'COMMIT' AS committed \gset
SELECT is((SELECT count(*)::int FROM claim_a), 10, 'worker A claims 10 alerts in an open transaction');
SELECT is((SELECT count(*) FROM claim_b), (SELECT count(*) - 10 FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'),
	'worker B, meanwhile, gets all the others (SKIP LOCKED)');
SELECT is((SELECT count(*)::int FROM claim_a JOIN claim_b USING (id)), 0, 'the claims are disjoint');
SELECT set_eq($$SELECT id FROM claim_a UNION ALL SELECT id FROM claim_b$$,
	$$SELECT id FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'$$, 'together they hold every alert: none lost');
SELECT is((SELECT string_agg(DISTINCT claimed_by, ',' ORDER BY claimed_by) FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'),
	'A,B', 'claims are recorded with the workers'' names');
-- both at once, from scratch
UPDATE dealrisk.alerts SET claimed_at = NULL, claimed_by = NULL WHERE deal_id LIKE 'LIVE-%';
SELECT dblink_send_query('a', $$SELECT id FROM dealrisk.claim_alerts(100000, 'A2')$$) = 1 AS sent \gset
SELECT dblink_send_query('b', $$SELECT id FROM dealrisk.claim_alerts(100000, 'B2')$$) = 1 AS sent \gset
CREATE TEMP TABLE claim_a2 AS SELECT * FROM dblink_get_result('a') AS t(id bigint);
CREATE TEMP TABLE claim_b2 AS SELECT * FROM dblink_get_result('b') AS t(id bigint);
SELECT count(*) FROM dblink_get_result('a') AS t(id bigint) \gset done_
SELECT count(*) FROM dblink_get_result('b') AS t(id bigint) \gset done_
SELECT is((SELECT count(*)::int FROM claim_a2 JOIN claim_b2 USING (id)), 0, 'simultaneous claims are disjoint');
SELECT set_eq($$SELECT id FROM claim_a2 UNION ALL SELECT id FROM claim_b2$$,
	$$SELECT id FROM dealrisk.alerts WHERE deal_id LIKE 'LIVE-%'$$, '... and lose nothing');
SELECT is((SELECT count(*)::int FROM dealrisk.claim_alerts(100000, 'C')), 0, 'a third worker finds nothing left');
SELECT dblink_disconnect('a') = 'OK' AS disconnected \gset
SELECT dblink_disconnect('b') = 'OK' AS disconnected \gset

-- A backend killed in the middle of refresh() --------------------------------------

-- make the next refresh raise one alert, and hold the outbox so that refresh()
-- stops there, after it has written the history and refreshed the view
UPDATE dealrisk.score_history SET risk = 0
	WHERE deal_id = (SELECT deal_id FROM dealrisk_watch.high_risk_deals ORDER BY risk DESC, deal_id LIMIT 1)
	  AND scored_at = (SELECT scored_at FROM dealrisk.watch_config);
SELECT count(*) AS hist_before FROM dealrisk.score_history \gset
SELECT count(*) AS alerts_before FROM dealrisk.alerts \gset
SELECT scored_at AS scored_before FROM dealrisk.watch_config \gset
SELECT dblink_connect('locker', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT dblink_exec('locker', 'BEGIN') = 'BEGIN' AS began \gset
SELECT dblink_exec('locker', 'LOCK TABLE dealrisk.alerts IN EXCLUSIVE MODE') = 'LOCK TABLE' AS locked \gset
SELECT dblink_connect('worker', pg_temp.conninfo()) = 'OK' AS connected \gset
SELECT pid AS worker_pid FROM dblink('worker', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT is((SELECT v FROM dblink('worker', 'SHOW synchronous_commit') AS t(v text)), 'on',
	'the session that is killed commits synchronously (the cluster''s default is off)');
SELECT dblink_send_query('worker', 'SELECT dealrisk.refresh()') = 1 AS sent \gset
SELECT ok(pg_temp.wait_until(format($$SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = %s AND NOT l.granted
	AND l.relation = 'dealrisk.alerts'::regclass)$$, :worker_pid), 10), 'refresh() in another session waits for the outbox');
SELECT ok(EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = :worker_pid AND l.granted AND l.mode = 'RowExclusiveLock'
	AND l.relation = 'dealrisk.score_history'::regclass), '... after writing the score history');
SELECT ok(EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = :worker_pid AND l.granted AND l.mode = 'ExclusiveLock'
	AND l.relation = 'dealrisk_watch.high_risk_deals'::regclass), '... and refreshing the view concurrently');
SET lock_timeout = '2s';
SELECT is((SELECT count(*) FROM dealrisk_watch.high_risk_deals), (SELECT count(*) FROM dealrisk_watch.high_risk_deals),
	'readers of the view are not blocked meanwhile');
RESET lock_timeout;
SELECT ok(pg_terminate_backend(:worker_pid), 'kill that backend');
SELECT ok(pg_temp.wait_until(format('SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)', :worker_pid), 10),
	'... it is gone');
SELECT dblink_disconnect('worker') = 'OK' AS disconnected \gset
SELECT dblink_exec('locker', 'ROLLBACK') = 'ROLLBACK' AS rolled_back \gset
SELECT dblink_disconnect('locker') = 'OK' AS disconnected \gset
SELECT is((SELECT count(*) FROM dealrisk.score_history), :hist_before::bigint, 'no history entry from the killed refresh');
SELECT is((SELECT count(*) FROM dealrisk.alerts), :alerts_before::bigint, 'no alert from it');
SELECT is((SELECT scored_at FROM dealrisk.watch_config), :'scored_before'::timestamptz, 'no new scoring time');
SELECT is((SELECT max(scored_at) FROM dealrisk_watch.high_risk_deals), :'scored_before'::timestamptz, 'the view as before');
SELECT lives_ok($$SELECT dealrisk.refresh()$$, 'the next refresh() runs');
SELECT is((SELECT count(*) FROM dealrisk.alerts), :alerts_before + 1::bigint, '... and raises the alert the killed one did not');

-- Live risk changes ---------------------------------------------------------------

SELECT pg_temp.notifications('listener', 'dealrisk_alerts', 0) IS NOT NULL AS drained \gset
SELECT lives_ok($$SELECT dealrisk.track('ops_live.deals', 'ops_live')$$, 'track() the table');
SELECT deal_id AS moved_id FROM ops_live.deals WHERE outcome IS NULL ORDER BY deal_id LIMIT 1 \gset
SELECT dealrisk.deal_risk(d, 'ops_live') AS old_risk FROM ops_live.deals d WHERE deal_id = :'moved_id' \gset
UPDATE ops_live.deals SET lead_source = CASE WHEN lead_source = 'Outbound' THEN 'Referral' ELSE 'Outbound' END,
	last_activity_date = CURRENT_DATE WHERE deal_id = :'moved_id';
CREATE TEMP TABLE moved AS SELECT pg_temp.notifications('listener', 'dealrisk_risk_changes', 5) AS n;
SELECT is((SELECT n[1] - 'reason' - 'band' - 'change' FROM moved),
	(SELECT jsonb_build_object('deal_id', :'moved_id'::text, 'old_risk', round(:old_risk::numeric, 2),
		'new_risk', round(dealrisk.deal_risk(d, 'ops_live')::numeric, 2)) FROM ops_live.deals d WHERE deal_id = :'moved_id'),
	'an update sends NOTIFY dealrisk_risk_changes with deal_id, old and new risk');
SELECT is((SELECT n[1] ->> 'reason' FROM moved),
	(SELECT e.reason FROM ops_live.deals d, dealrisk.deal_risk_explain(d, 'ops_live') e WHERE deal_id = :'moved_id' LIMIT 1),
	'... and the main reason');
SELECT ok(dealrisk.untrack('ops_live.deals'), 'untrack()');

-- A real pg_cron run ---------------------------------------------------------------

-- pg_cron's launcher stops for good (exit code 0, never restarted) when its
-- database is dropped WITH (FORCE): then only a server restart brings it back.
SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'
               AND datname = current_database()) AS cron_running \gset
SELECT ok(:'cron_running', 'the pg_cron scheduler runs for this database');
\if :cron_running
SELECT scored_at AS scored_before FROM dealrisk.watch_config \gset
SELECT clock_timestamp() AS scheduled_at \gset
SELECT dealrisk.schedule('* * * * *') AS job_id \gset
SELECT is((SELECT (pg_temp.wait_cron(:job_id, :'scheduled_at', 130)).status), 'succeeded',
	'pg_cron runs SELECT dealrisk.refresh() every minute: a run succeeded');
SELECT ok((SELECT max(scored_at) FROM dealrisk_watch.high_risk_deals) > :'scored_before'::timestamptz,
	'... and the view was refreshed (scored_at newer)');
SELECT is((SELECT (l.run_by, l.deals_scored)::text FROM dealrisk.refresh_log l
	JOIN cron.job_run_details r ON r.job_pid = l.pid AND r.jobid = :job_id AND r.status = 'succeeded'
	ORDER BY l.id DESC LIMIT 1),
	(current_user::text, (SELECT count(*) FROM ops_live.deals WHERE outcome IS NULL))::text,
	'refresh_log has the run pg_cron made (its backend), its role and the deals it scored');
SELECT is((SELECT concat_ws(', ', last_cron_status, job_id, job_owner, last_refresh_succeeded, health) FROM dealrisk.refresh_status),
	concat_ws(', ', 'succeeded', :job_id, current_user, true, 'ok'), 'refresh_status: the pg_cron run succeeded, health ok');
SELECT ok(dealrisk.unschedule(), 'unschedule()');
DELETE FROM cron.job_run_details WHERE jobid = :job_id;
\else
SELECT diag('no pg_cron launcher is connected to this database: it stops for good when its database is dropped',
	' (DROP DATABASE ... WITH (FORCE)); restart the server (pg_ctl restart) and run this file again');
SELECT fail('pg_cron runs SELECT dealrisk.refresh() every minute: a run succeeded');
SELECT fail('... and the view was refreshed (scored_at newer)');
SELECT fail('refresh_log has the run pg_cron made (its backend), its role and the deals it scored');
SELECT fail('refresh_status: the pg_cron run succeeded, health ok');
SELECT fail('unschedule()');
\endif

SELECT * FROM finish();
SELECT dblink_disconnect('listener') = 'OK' AS disconnected \gset
\else
SELECT plan(1);
SELECT skip('a watch configuration, unacknowledged alerts or a dealrisk-refresh job exist in this database: the live tests would change them', 1);
SELECT * FROM finish();
\endif

SELECT pg_temp.ops_live_cleanup() IS NULL AS cleaned \gset
\if :own_dblink
DROP EXTENSION dblink;
\endif
