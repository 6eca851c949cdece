-- dealrisk on Citus (issue #12 on the layout of #11): forecast(), the views
-- of dealrisk_bi and report() over a distributed source answer as over a
-- local copy of it; and the workers read the stage table once per shard
-- task, not once per row (stage_funnel over 100,000 distributed deals took
-- 20 s instead of 0.1 s while they did).  Run by test/harness/citus.sh.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;

SELECT plan(7);

SELECT count(*) >= 0 AS distributed FROM dealrisk.distribute();
CREATE TABLE bi_deals AS SELECT * FROM dealrisk.sample_deals(20000, 7);
CREATE TABLE bi_deals_local AS SELECT * FROM bi_deals;
SELECT create_distributed_table('bi_deals', 'deal_id') IS NOT NULL AS created;

-- 1. The stage table is read once per shard task on the workers.  Their
-- statistics reach pg_stat_user_tables about a second after their
-- transactions end: wait for the count to move (at most 15 s).
CREATE TEMP TABLE scans_before AS
	SELECT sum(result::bigint) AS n FROM run_command_on_workers(
		$$SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname LIKE 'stage\_defaults\_%'$$);
SELECT dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)) IS NOT NULL AS counted FROM bi_deals;
CREATE TEMP TABLE scans_after (n bigint);
DO $$
DECLARE
	n bigint;
	i int := 0;
BEGIN
	LOOP
		SELECT sum(result::bigint) INTO n FROM run_command_on_workers(
			$q$SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_user_tables WHERE relname LIKE 'stage\_defaults\_%'$q$);
		EXIT WHEN n > (SELECT b.n FROM scans_before b) OR i >= 30;
		PERFORM pg_sleep(0.5);
		i := i + 1;
	END LOOP;
	INSERT INTO scans_after VALUES (n);
END
$$;
SELECT ok((SELECT a.n - b.n FROM scans_after a, scans_before b) BETWEEN 1 AND 500,
	'stage_funnel over 20000 distributed deals reads the stage table once per shard task ('
	|| (SELECT a.n - b.n FROM scans_after a, scans_before b) || ' reads), not once per deal');

-- 2. forecast(), the views and the report, as of the sample's end; the
-- as-of date reaches the workers as a SET LOCAL that Citus propagates
SET citus.propagate_set_commands = 'local';
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
SELECT dealrisk.train('bi_deals_local', 'bi_cit', method => 'logistic') IS NOT NULL AS trained;
SELECT is((SELECT array_agg(row(f.*)::text ORDER BY f.is_total, f.group_value) FROM dealrisk.forecast('bi_deals', 'region', model => 'bi_cit') f),
	(SELECT array_agg(row(f.*)::text ORDER BY f.is_total, f.group_value) FROM dealrisk.forecast('bi_deals_local', 'region', model => 'bi_cit') f),
	'forecast() by region is the same from the distributed table');
SELECT is((SELECT count(*) FILTER (WHERE note IS NULL) FROM dealrisk.set_source('bi_deals', 'bi_cit')), 10::bigint,
	'set_source() computes every view of dealrisk_bi from the distributed table');
CREATE TEMP TABLE dist_pipeline AS SELECT * FROM dealrisk_bi.open_pipeline;
CREATE TEMP TABLE dist_head AS SELECT deals, closed, won, lost, open, win_rate_pct, ci_low_pct, ci_high_pct, latest_quarter,
	latest_quarter_change_pts, open_deals, pipeline_value, high_risk_deals, high_risk_value FROM dealrisk_bi.headline;
CREATE TEMP TABLE dist_forecast AS SELECT * FROM dealrisk_bi.forecast;
SELECT count(*) >= 0 AS set FROM dealrisk.set_source('bi_deals_local', 'bi_cit');
SELECT is((SELECT count(*) FROM ((SELECT * FROM dist_pipeline EXCEPT SELECT * FROM dealrisk_bi.open_pipeline)
                                 UNION ALL (SELECT * FROM dealrisk_bi.open_pipeline EXCEPT SELECT * FROM dist_pipeline)) x),
	0::bigint, 'every open deal of the views, with its risk, reason, action and expected close, is the same');
SELECT is((SELECT row(h.*)::text FROM dist_head h),
	(SELECT row(deals, closed, won, lost, open, win_rate_pct, ci_low_pct, ci_high_pct, latest_quarter,
	            latest_quarter_change_pts, open_deals, pipeline_value, high_risk_deals, high_risk_value)::text FROM dealrisk_bi.headline),
	'... and so are the headline and');
SELECT is((SELECT count(*) FROM ((SELECT * FROM dist_forecast EXCEPT SELECT * FROM dealrisk_bi.forecast)
                                 UNION ALL (SELECT * FROM dealrisk_bi.forecast EXCEPT SELECT * FROM dist_forecast)) x),
	0::bigint, '... the forecast view');
SELECT is(dealrisk.report('bi_deals', 'bi_cit'),
	replace(dealrisk.report('bi_deals_local', 'bi_cit'), 'public.bi_deals_local', 'public.bi_deals'),
	'report() writes the same page from the distributed table');
COMMIT;

SELECT * FROM finish();
