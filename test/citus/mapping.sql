-- dealrisk on Citus (issue #11): a CRM's own tables mapped to the data
-- contract by a view, as docs/data-contract.md recommends, with the
-- opportunities and accounts hash-distributed by account_id in one
-- co-location group and the reps in a reference table, so that the view's
-- joins run on the workers.  Every function reads the view as it reads the
-- same view over local copies of the tables.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;

SELECT plan(12);

SELECT count(*) >= 0 AS distributed FROM dealrisk.distribute() \gset
-- The CRM's layout: accounts own an industry and a region, reps have
-- names, opportunities name their account and owner.
CREATE TEMP TABLE src AS SELECT * FROM dealrisk.sample_deals(12000, 23);
CREATE TABLE m_accounts AS
	SELECT DISTINCT (dense_rank() OVER (ORDER BY industry, region)) * 1000 + abs(hashtext(deal_id)) % 40 AS account_id,
	       industry AS account_industry, region AS account_region
	FROM src;
CREATE TABLE m_reps AS
	SELECT DISTINCT abs(hashtext(sales_rep_id)) AS rep_key, sales_rep_id AS rep_name FROM src;
CREATE TABLE m_opps AS
	SELECT deal_id AS opp_id,
	       (dense_rank() OVER (ORDER BY industry, region)) * 1000 + abs(hashtext(deal_id)) % 40 AS account_id,
	       abs(hashtext(sales_rep_id)) AS owner_key, created_date AS opened_on, closed_date AS closed_on,
	       deal_stage AS stage_name, deal_amount AS amount, product_type AS product, lead_source AS channel,
	       outcome AS status, stage_entered_date AS stage_since
	FROM src;
ALTER TABLE m_accounts ADD PRIMARY KEY (account_id);
ALTER TABLE m_reps ADD PRIMARY KEY (rep_key);
ALTER TABLE m_opps ADD PRIMARY KEY (account_id, opp_id);
CREATE TABLE m_accounts_l AS SELECT * FROM m_accounts;
CREATE TABLE m_reps_l AS SELECT * FROM m_reps;
CREATE TABLE m_opps_l AS SELECT * FROM m_opps;
SELECT create_distributed_table('m_accounts', 'account_id') IS NOT NULL AS created \gset
SELECT create_distributed_table('m_opps', 'account_id', colocate_with => 'm_accounts') IS NOT NULL AS created \gset
SELECT create_reference_table('m_reps') IS NOT NULL AS created \gset
-- the mapping view (docs/data-contract.md), over each set of tables
CREATE VIEW m_deals AS
	SELECT o.opp_id AS deal_id, o.opened_on AS created_date, o.closed_on AS closed_date, r.rep_name AS sales_rep_id,
	       a.account_industry AS industry, a.account_region AS region, o.product AS product_type,
	       o.channel AS lead_source, o.stage_name AS deal_stage, o.amount AS deal_amount, o.status AS outcome,
	       o.stage_since AS stage_entered_date
	FROM m_opps o JOIN m_accounts a ON a.account_id = o.account_id JOIN m_reps r ON r.rep_key = o.owner_key;
SET client_min_messages = error;  -- (Citus says that it keeps the local view local)
CREATE VIEW m_deals_l AS
	SELECT o.opp_id AS deal_id, o.opened_on AS created_date, o.closed_on AS closed_date, r.rep_name AS sales_rep_id,
	       a.account_industry AS industry, a.account_region AS region, o.product AS product_type,
	       o.channel AS lead_source, o.stage_name AS deal_stage, o.amount AS deal_amount, o.status AS outcome,
	       o.stage_since AS stage_entered_date
	FROM m_opps_l o JOIN m_accounts_l a ON a.account_id = o.account_id JOIN m_reps_l r ON r.rep_key = o.owner_key;
SET client_min_messages = warning;

SELECT ok(dealrisk._distributed('m_deals') AND NOT dealrisk._distributed('m_deals_l'),
	'the mapping view reads distributed tables');
SELECT is((SELECT count(*) FROM m_deals), 12000::bigint, 'the view maps every opportunity');

-- (a statement's plan as text)
SET client_min_messages = error;
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	l text;
	r text := '';
BEGIN
	FOR l IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
		r := r || l || E'\n';
	END LOOP;
	RETURN r;
END
$$;
SET client_min_messages = warning;

-- Diagnostics: the aggregates over the co-located join on the workers
SELECT is(
	(SELECT ROW(dealrisk.win_rate(dealrisk.is_won(outcome)), dealrisk.win_rate_ci(dealrisk.is_won(outcome)),
	            dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)))::text FROM m_deals),
	(SELECT ROW(dealrisk.win_rate(dealrisk.is_won(outcome)), dealrisk.win_rate_ci(dealrisk.is_won(outcome)),
	            dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)))::text FROM m_deals_l),
	'the aggregates over the view are bit-identical');
SELECT matches(
	pg_temp.plan_of('SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM m_deals'),
	'Query: SELECT worker_partial_agg\(''dealrisk\.win_rate\(boolean\)''',
	'EXPLAIN: the view''s win rate is aggregated on the workers');
SELECT is((SELECT string_agg(x, E'\n') FROM dealrisk.diagnose('m_deals') x),
	(SELECT replace(string_agg(x, E'\n'), 'public.m_deals_l', 'public.m_deals') FROM dealrisk.diagnose('m_deals_l') x),
	'diagnose() says the same of the view over distributed tables');
SELECT is((SELECT jsonb_agg(to_jsonb(c) ORDER BY c."check", c.finding) FROM dealrisk.check_source('m_deals') c)::text,
	(SELECT replace(jsonb_agg(to_jsonb(c) ORDER BY c."check", c.finding)::text, 'public.m_deals_l', 'public.m_deals') FROM dealrisk.check_source('m_deals_l') c),
	'check_source() says the same');

-- The model: trained from the view over distributed tables, scored on the
-- workers through the view
SET citus.propagate_set_commands = 'local';
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
SELECT dealrisk.train('m_deals', 'm_dist', method => 'gbm') IS NOT NULL AS trained \gset
SELECT dealrisk.train('m_deals_l', 'm_local', method => 'gbm') IS NOT NULL AS trained \gset
CREATE TEMP TABLE s_dist AS SELECT deal_id, dealrisk.deal_risk(d.*, 'm_local') r, dealrisk.recommended_action(d.*, 'm_local') a FROM m_deals d;
CREATE TEMP TABLE s_local AS SELECT deal_id, dealrisk.deal_risk(d.*, 'm_local') r, dealrisk.recommended_action(d.*, 'm_local') a FROM m_deals_l d;
CREATE TEMP TABLE e_dist AS SELECT d.deal_id, x.* FROM m_deals d, LATERAL dealrisk.deal_risk_explain(d.*, 'm_local') x;
CREATE TEMP TABLE e_local AS SELECT d.deal_id, x.* FROM m_deals_l d, LATERAL dealrisk.deal_risk_explain(d.*, 'm_local') x;
COMMIT;
SELECT is((SELECT source FROM dealrisk.models WHERE name = 'm_dist'), 'public.m_deals', 'the model names the view as its source');
SELECT ok((SELECT abs((a.metrics->>'auc')::float8 - (b.metrics->>'auc')::float8) < 1e-6
	          AND abs((a.metrics->>'log_loss')::float8 - (b.metrics->>'log_loss')::float8) < 1e-6
	   FROM dealrisk.models a, dealrisk.models b WHERE a.name = 'm_dist' AND b.name = 'm_local'),
	'the trees trained from the view agree with the local ones (holdout AUC and log loss within 1e-6)');
SELECT is((SELECT count(*) FROM s_dist a JOIN s_local b USING (deal_id) WHERE a.r = b.r AND a.a IS NOT DISTINCT FROM b.a),
	12000::bigint, 'every deal of the view scores and gets its action as on one node');
SELECT ok((SELECT count(*) FROM e_local) > 12000 AND NOT EXISTS (
	(SELECT * FROM e_dist EXCEPT ALL SELECT * FROM e_local) UNION ALL (SELECT * FROM e_local EXCEPT ALL SELECT * FROM e_dist)),
	'every deal of the view gets the same explanation on the workers');
SELECT matches(
	pg_temp.plan_of('SELECT sum(dealrisk.deal_risk(d.*, ''m_local'')) FROM m_deals d'),
	'Task Count: [0-9]+.*Query: SELECT sum\(dealrisk\._deal_risk_row\(',
	'EXPLAIN: deal_risk() over the view runs on the workers, next to the joined rows');
SELECT ok((SELECT count(*) = 7 AND bool_and(abs(a.value::float8 - b.value::float8) <= 1e-9 * greatest(1, abs(a.value::float8)))
	FROM jsonb_each_text((SELECT to_jsonb(e) - 'calibration' FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'm_local'), 'm_deals') e)) a
	JOIN jsonb_each_text((SELECT to_jsonb(e) - 'calibration' FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = 'm_local'), 'm_deals_l') e)) b
	USING (key)),
	'evaluate() reads the view as on one node (within 1e-9: Citus sums in the order the shards answer)');

SELECT * FROM finish();
DROP VIEW m_deals, m_deals_l;
DROP TABLE m_opps, m_accounts, m_reps, m_opps_l, m_accounts_l, m_reps_l;
