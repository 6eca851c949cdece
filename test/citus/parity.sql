-- dealrisk on Citus (issue #11): the same deals in a distributed table
-- (hash-distributed by deal_id over two workers) and in a local table of
-- the coordinator; every function must answer the same on both.  Run by
-- test/harness/citus.sh (make test-citus) on a fresh database of a
-- coordinator and two workers with citus, dealrisk and pgtap created.
--
-- Tolerances: counts, rates of counts and everything computed from them are
-- compared exactly; sums of floating-point numbers that Citus adds in the
-- order the shards answer (means, p-values of means, model coefficients)
-- within 1e-9 relative.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only true
SET client_min_messages = warning;

SELECT plan(34);

-- 1. distribute(): the configuration and model tables become reference
-- tables, on every node.
SELECT is((SELECT count(*) FROM dealrisk.distribute() WHERE action = 'made a reference table'), 6::bigint,
	'distribute() makes six reference tables');
SELECT is((SELECT pg_catalog.array_agg(logicalrelid::text ORDER BY logicalrelid::text) FROM pg_dist_partition
           WHERE partmethod = 'n' AND repmodel = 't' AND logicalrelid::text LIKE 'dealrisk.%'),
	ARRAY['dealrisk.action_rule_defaults', 'dealrisk.action_rule_edits', 'dealrisk.model_activations',
	      'dealrisk.models', 'dealrisk.stage_defaults', 'dealrisk.stage_edits'],
	'the stages, action rules, models and activations are reference tables');
SELECT is((SELECT count(*) FROM dealrisk.distribute() WHERE action = 'already a Citus table'), 6::bigint,
	'distribute() again changes nothing');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgrelid = 'dealrisk.models'::regclass AND NOT tgisinternal), 0::bigint,
	'dealrisk.models has no trigger');

-- The deals: distributed and local copies of the same 20000.
CREATE TABLE deals AS SELECT * FROM dealrisk.sample_deals(20000, 42);
CREATE TABLE deals_local AS SELECT * FROM deals;
SELECT create_distributed_table('deals', 'deal_id') IS NOT NULL;
SELECT ok(dealrisk._distributed('deals') AND NOT dealrisk._distributed('deals_local'),
	'_distributed() tells the distributed table from the local one');
CREATE VIEW deals_view AS SELECT * FROM deals WHERE deal_amount >= 0;
SELECT ok(dealrisk._distributed('deals_view'), '_distributed() sees a distributed table through a view');

-- (helpers of this session only: Citus need not create them on the workers)
SET client_min_messages = error;
-- A statement's plan as text.
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
-- Two JSON values equal but for numbers within 1e-9 relative, at any depth.
CREATE FUNCTION pg_temp.close(a jsonb, b jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	k text;
	i int;
BEGIN
	IF jsonb_typeof(a) = 'number' AND jsonb_typeof(b) = 'number' THEN
		RETURN abs(a::text::numeric - b::text::numeric) <= 1e-9 * greatest(1, abs(a::text::numeric));
	ELSIF jsonb_typeof(a) = 'array' AND jsonb_typeof(b) = 'array' THEN
		IF jsonb_array_length(a) <> jsonb_array_length(b) THEN
			RETURN false;
		END IF;
		FOR i IN 0 .. jsonb_array_length(a) - 1 LOOP
			IF NOT pg_temp.close(a->i, b->i) THEN
				RETURN false;
			END IF;
		END LOOP;
		RETURN true;
	ELSIF jsonb_typeof(a) = 'object' AND jsonb_typeof(b) = 'object' THEN
		IF (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(a) x) IS DISTINCT FROM
		   (SELECT array_agg(x ORDER BY x) FROM jsonb_object_keys(b) x) THEN
			RETURN false;
		END IF;
		FOR k IN SELECT jsonb_object_keys(a) LOOP
			IF NOT pg_temp.close(a->k, b->k) THEN
				RETURN false;
			END IF;
		END LOOP;
		RETURN true;
	END IF;
	RETURN a IS NOT DISTINCT FROM b;
END
$$;
-- Compare two queries' rows (ordered by their first column), numbers
-- within 1e-9 relative; NULL when they agree, else the first difference.
CREATE FUNCTION pg_temp.differ(a text, b text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	ja jsonb;
	jb jsonb;
	i int;
	k text;
BEGIN
	EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY (SELECT j.value FROM json_each_text(row_to_json(x)) j LIMIT 1)), ''[]'') FROM (%s) x', a) INTO ja;
	EXECUTE format('SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY (SELECT j.value FROM json_each_text(row_to_json(x)) j LIMIT 1)), ''[]'') FROM (%s) x', b) INTO jb;
	IF jsonb_array_length(ja) <> jsonb_array_length(jb) THEN
		RETURN format('%s rows against %s', jsonb_array_length(ja), jsonb_array_length(jb));
	END IF;
	FOR i IN 0 .. jsonb_array_length(ja) - 1 LOOP
		FOR k IN SELECT jsonb_object_keys(ja->i) LOOP
			IF NOT pg_temp.close(ja->i->k, jb->i->k) THEN
				RETURN format('row %s, %s: %s against %s', i + 1, k, ja->i->k, jb->i->k);
			END IF;
		END LOOP;
	END LOOP;
	RETURN NULL;
END
$$;
SET client_min_messages = warning;

-- 2. Aggregates: split over the shards, the same results.
SELECT is(
	(SELECT ROW(dealrisk.win_rate(dealrisk.is_won(outcome)), dealrisk.win_rate_ci(dealrisk.is_won(outcome)),
	            dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.9), dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)),
	            dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome)))::text FROM deals),
	(SELECT ROW(dealrisk.win_rate(dealrisk.is_won(outcome)), dealrisk.win_rate_ci(dealrisk.is_won(outcome)),
	            dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.9), dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)),
	            dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome)))::text FROM deals_local),
	'the count aggregates are bit-identical on the distributed table');
SELECT is(pg_temp.differ(
	'SELECT region, dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount) r FROM deals GROUP BY region',
	'SELECT region, dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount) r FROM deals_local GROUP BY region'),
	NULL, 'the value-weighted win rate per region agrees');
SELECT matches(
	pg_temp.plan_of('SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM deals'),
	'Query: SELECT worker_partial_agg\(''dealrisk\.win_rate\(boolean\)''',
	'EXPLAIN: win_rate() is aggregated on the workers and combined on the coordinator');

-- 3. The diagnostics, through Citus's planner.
SELECT is(pg_temp.differ(format('SELECT * FROM dealrisk.%s(''deals''%s)', f, a), format('SELECT * FROM dealrisk.%s(''deals_local''%s)', f, a)),
	NULL, f || '() agrees')
FROM (VALUES ('win_rate_trend', ', ''quarter'''), ('cycle_trend', ', ''quarter'''),
             ('win_rate_drivers', ', ''industry'', NULL, NULL'), ('funnel', ', NULL'),
             ('data_quality', ''), ('drivers', ', NULL, NULL, NULL'), ('check_source', ''),
             ('lost_lookalikes', ', NULL, 10')) v(f, a);
SELECT is((SELECT string_agg(x, E'\n') FROM dealrisk.diagnose('deals') x),
	(SELECT replace(string_agg(x, E'\n'), 'public.deals_local', 'public.deals') FROM dealrisk.diagnose('deals_local') x),
	'diagnose() says the same of both');

-- 4. train(): both kinds, from the distributed table and the local one.
-- The as-of date reaches the workers only as a SET LOCAL that Citus
-- propagates (docs/scaling.md).
SET citus.propagate_set_commands = 'local';
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
SELECT dealrisk.train('deals', 'dist_log', method => 'logistic') IS NOT NULL;
SELECT dealrisk.train('deals_local', 'local_log', method => 'logistic') IS NOT NULL;
SELECT dealrisk.train('deals', 'dist_gbm', method => 'gbm') IS NOT NULL;
SELECT dealrisk.train('deals_local', 'local_gbm', method => 'gbm') IS NOT NULL;
COMMIT;
SELECT is((SELECT source FROM dealrisk.models WHERE name = 'dist_log'), 'public.deals',
	'the model trained on the distributed table names it as its source');
SELECT is(pg_temp.differ(
	'SELECT c.ord, c.v FROM dealrisk.models m, unnest(m.coefficients) WITH ORDINALITY c(v, ord) WHERE m.name = ''dist_log''',
	'SELECT c.ord, c.v FROM dealrisk.models m, unnest(m.coefficients) WITH ORDINALITY c(v, ord) WHERE m.name = ''local_log'''),
	NULL, 'logistic coefficients agree within 1e-9');
SELECT is((SELECT (metrics->>'auc')::numeric FROM dealrisk.models WHERE name = 'dist_log'),
	(SELECT (metrics->>'auc')::numeric FROM dealrisk.models WHERE name = 'local_log'), 'the logistic holdout AUC is the same');
SELECT ok((SELECT abs((a.metrics->>'auc')::float8 - (b.metrics->>'auc')::float8) < 1e-6
	          AND abs((a.metrics->>'log_loss')::float8 - (b.metrics->>'log_loss')::float8) < 1e-6
	   FROM dealrisk.models a, dealrisk.models b WHERE a.name = 'dist_gbm' AND b.name = 'local_gbm'),
	'the trees'' holdout AUC and log loss agree within 1e-6');

-- 5. Scoring: deal_risk() runs on the workers, with the model just
-- trained on the coordinator, and scores as on one node.
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TEMP TABLE s_dist AS
	SELECT deal_id, dealrisk.deal_risk(d.*, 'local_log') lr, dealrisk.deal_risk(d.*, 'local_gbm') gr,
	       dealrisk.recommended_action(d.*, 'local_gbm') act
	FROM deals d;
CREATE TEMP TABLE e_dist AS
	SELECT d.deal_id, x.* FROM deals d, LATERAL dealrisk.deal_risk_explain(d.*, 'local_gbm') x;
CREATE TEMP TABLE s_local AS
	SELECT deal_id, dealrisk.deal_risk(d.*, 'local_log') lr, dealrisk.deal_risk(d.*, 'local_gbm') gr,
	       dealrisk.recommended_action(d.*, 'local_gbm') act
	FROM deals_local d;
CREATE TEMP TABLE e_local AS
	SELECT d.deal_id, x.* FROM deals_local d, LATERAL dealrisk.deal_risk_explain(d.*, 'local_gbm') x;
COMMIT;
SELECT is((SELECT count(*) FROM s_dist a JOIN s_local b USING (deal_id)
           WHERE a.lr IS NOT DISTINCT FROM b.lr AND a.gr IS NOT DISTINCT FROM b.gr
             AND a.act IS NOT DISTINCT FROM b.act), 20000::bigint,
	'every deal''s risk and action are identical on the workers');
SELECT ok((SELECT count(*) FROM e_local) > 20000 AND NOT EXISTS (
	(SELECT * FROM e_dist EXCEPT ALL SELECT * FROM e_local) UNION ALL (SELECT * FROM e_local EXCEPT ALL SELECT * FROM e_dist)),
	'every deal''s explanation (the trees'' reasons) is identical on the workers');
SELECT matches(
	pg_temp.plan_of('SELECT sum(dealrisk.deal_risk(d.*, ''switch'')) FROM deals d'),
	'Query: SELECT sum\(dealrisk\._deal_risk_row\(''switch''::text, ''public\.deals''::regtype',
	'EXPLAIN: deal_risk() is computed on the workers');
SELECT is(pg_temp.differ(
	'SELECT * FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = ''local_gbm''), ''deals'')',
	'SELECT * FROM dealrisk.evaluate((SELECT id FROM dealrisk.models WHERE name = ''local_gbm''), ''deals_local'')'),
	NULL, 'evaluate() agrees on the distributed table');

-- 6. A model activated on the coordinator scores on the workers in the
-- next statement; so do stage and action rule edits.
CREATE TEMP TABLE ids AS SELECT name, id FROM dealrisk.models WHERE name IN ('local_log', 'local_gbm');
UPDATE dealrisk.models SET name = 'switch', active = false WHERE name IN ('local_log', 'local_gbm');
SELECT dealrisk.activate((SELECT id FROM ids WHERE name = 'local_gbm'));
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
SELECT is((SELECT count(*) FROM deals d JOIN s_local l USING (deal_id) WHERE dealrisk.deal_risk(d.*, 'switch') = l.gr), 20000::bigint,
	'the workers score with the model activated on the coordinator');
COMMIT;
SELECT dealrisk.activate((SELECT id FROM ids WHERE name = 'local_log'));
BEGIN;
SET LOCAL dealrisk.as_of_date = '2024-12-31';
SELECT is((SELECT count(*) FROM deals d JOIN s_local l USING (deal_id) WHERE dealrisk.deal_risk(d.*, 'switch') = l.lr), 20000::bigint,
	'and with the next one in the next statement');
COMMIT;
SELECT throws_ok($$SELECT sum(dealrisk.deal_risk(d.*, 'no_such_model')) FROM deals d$$, 'P0002', NULL,
	'an unknown model name is an error on the workers too');
INSERT INTO dealrisk.stages (stage, position, is_late) VALUES ('Zeta', 99, true);
CREATE TABLE stage_probe (deal_id text, stage text);
SELECT create_distributed_table('stage_probe', 'deal_id') IS NOT NULL;
INSERT INTO stage_probe SELECT 'P' || i, 'zeta ' FROM generate_series(1, 40) i;
SELECT is((SELECT min(dealrisk.stage_position(stage)) FROM stage_probe), 99,
	'a stage added on the coordinator is known on the workers');
-- Citus sends an UPDATE or DELETE of the configuration views to a worker,
-- where their INSTEAD OF trigger cannot write the reference tables: on Citus
-- the edits tables are changed directly (docs/scaling.md).
SELECT throws_ok($$DELETE FROM dealrisk.stages WHERE stage = 'Zeta'$$, NULL, NULL,
	'UPDATE and DELETE of dealrisk.stages fail on Citus (a known limit)');
DELETE FROM dealrisk.stage_edits WHERE stage = 'Zeta';
SELECT throws_ok($$SELECT min(dealrisk.stage_position(stage)) FROM stage_probe$$, NULL, NULL,
	'and forgotten there once removed');
INSERT INTO dealrisk.action_rule_edits (id, priority, factor, min_effect, min_risk, action)
	SELECT id, priority, factor, min_effect, min_risk, 'Citus rule ' || id FROM dealrisk.action_rule_defaults;
SELECT is((SELECT count(*) FROM deals d WHERE dealrisk.recommended_action(d.*, 'switch') LIKE 'Citus rule %'),
	(SELECT count(*) FROM deals_local d WHERE dealrisk.recommended_action(d.*, 'switch') LIKE 'Citus rule %'),
	'edited action rules apply on the workers');
SELECT cmp_ok((SELECT count(*) FROM deals_local d WHERE dealrisk.recommended_action(d.*, 'switch') LIKE 'Citus rule %'), '>', 0::bigint,
	'(and some deal gets one)');
DELETE FROM dealrisk.action_rule_edits;

SELECT * FROM finish();
DROP VIEW deals_view;
DROP TABLE stage_probe, deals, deals_local;
