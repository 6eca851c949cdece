-- dealrisk on Citus (issue #14): the stage-history functions over a
-- distributed source and a distributed history (both by deal_id) answer as
-- over local copies of them, and point-in-time training reads them.  Run
-- by test/harness/citus.sh.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;

SELECT plan(7);

SELECT count(*) >= 0 AS distributed FROM dealrisk.distribute();
CREATE TABLE h_deals AS SELECT * FROM dealrisk.sample_pipeline(5000, 42);
CREATE TABLE h_stages AS SELECT * FROM dealrisk.sample_stage_history(5000, 42);
CREATE TABLE h_deals_local AS SELECT * FROM h_deals;
CREATE TABLE h_stages_local AS SELECT * FROM h_stages;
SELECT create_distributed_table('h_deals', 'deal_id') IS NOT NULL AS created;
SELECT create_distributed_table('h_stages', 'deal_id', colocate_with => 'h_deals') IS NOT NULL AS created;

SELECT results_eq($$SELECT * FROM dealrisk.funnel('h_deals', history => 'h_stages')$$,
	$$SELECT * FROM dealrisk.funnel('h_deals_local', history => 'h_stages_local')$$,
	'funnel(source, history) over distributed tables: the local answer');
SELECT results_eq($$SELECT * FROM dealrisk.stage_conversion_trend('h_deals', 'h_stages')$$,
	$$SELECT * FROM dealrisk.stage_conversion_trend('h_deals_local', 'h_stages_local')$$,
	'stage_conversion_trend(): the local answer');
SELECT results_eq($$SELECT * FROM dealrisk.stage_velocity('h_deals', 'h_stages')$$,
	$$SELECT * FROM dealrisk.stage_velocity('h_deals_local', 'h_stages_local')$$,
	'stage_velocity(): the local answer');
SELECT results_eq($$SELECT * FROM dealrisk.pipeline_gaming('h_deals', 'h_stages')$$,
	$$SELECT * FROM dealrisk.pipeline_gaming('h_deals_local', 'h_stages_local')$$,
	'pipeline_gaming(): the local answer');
SELECT results_eq($$SELECT "check", severity, replace(finding, '_local', '') FROM dealrisk.check_source('h_deals', 'h_stages') WHERE "check" LIKE 'history%'$$,
	$$SELECT "check", severity, replace(finding, '_local', '') FROM dealrisk.check_source('h_deals_local', 'h_stages_local') WHERE "check" LIKE 'history%'$$,
	'check_source(source, history): the local findings');
SELECT is(replace(dealrisk.diagnose('h_deals', 'h_stages'), 'h_deals', 'X'),
	replace(dealrisk.diagnose('h_deals_local', 'h_stages_local'), 'h_deals_local', 'X'),
	'diagnose(source, history): the local report');
SELECT is((SELECT row(metrics->>'auc', feature_spec->'features' @> '[{"name": "deal_stage"}]')::text FROM dealrisk.models
           WHERE id = dealrisk.train('h_deals', history => 'h_stages', name => 'pit_d', method => 'logistic')),
          (SELECT row(metrics->>'auc', feature_spec->'features' @> '[{"name": "deal_stage"}]')::text FROM dealrisk.models
           WHERE id = dealrisk.train('h_deals_local', history => 'h_stages_local', name => 'pit_l', method => 'logistic')),
	'point-in-time train() over distributed tables: the model of the local copies');

SELECT * FROM finish();
