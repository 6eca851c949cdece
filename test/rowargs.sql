-- pgTAP: rows passed as column values.  The planner turns deal_risk(d) on
-- a table into _deal_risk_row(model, row type, names, columns...), and the
-- training passes read only the columns a model needs; both must score
-- exactly as the composite-row path does, stay out of cases where a column
-- list cannot stand for the row, and reject hand-written calls that do not
-- add up.
\ir harness/pgtap_setup.psql
SELECT plan(44);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
SET LOCAL max_parallel_workers_per_gather = 0;
CREATE TABLE rdeals AS SELECT * FROM dealrisk.sample_deals(3000, 5);
SELECT dealrisk.train('rdeals', method => 'logistic') IS NOT NULL AS trained \gset

-- plan text of a query, for checking what the planner made of deal_risk
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	line text;
	result text := '';
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || q LOOP
		result := result || line || E'\n';
	END LOOP;
	RETURN result;
END
$$;

-- the rewrite and its equivalence with the composite-row path
SELECT matches(pg_temp.plan_of('SELECT dealrisk.deal_risk(d.*) FROM rdeals d'),
	'dealrisk\._deal_risk_row\(''default''::text, ''rdeals''::regtype',
	'deal_risk(d.*) on a table is planned as _deal_risk_row with its columns');
SELECT matches(pg_temp.plan_of('SELECT dealrisk.deal_risk(d) FROM rdeals d'),
	'_deal_risk_row', 'so is deal_risk(d)');
SELECT matches(pg_temp.plan_of('SELECT dealrisk.deal_risk(d.*) FROM (SELECT * FROM rdeals OFFSET 0) d'),
	'dealrisk\.deal_risk\(d\.\*\)', 'a row of a subquery that is not flattened is passed whole');
SELECT is((SELECT count(*) FROM (SELECT deal_id, dealrisk.deal_risk(d) r FROM rdeals d) a
	JOIN (SELECT deal_id, dealrisk.deal_risk(d) r FROM (SELECT * FROM rdeals OFFSET 0) d) b USING (deal_id)
	WHERE a.r IS NOT DISTINCT FROM b.r), 3000::bigint,
	'every deal scores exactly the same both ways');
SELECT is((SELECT count(*) FROM rdeals d
	WHERE dealrisk.deal_risk(d.*, 'default') IS NOT DISTINCT FROM dealrisk.deal_risk(d.*)), 3000::bigint,
	'a named model is passed through the rewrite');
CREATE TEMP TABLE model_names (name text);
INSERT INTO model_names VALUES ('default');
SELECT is((SELECT count(*) FROM rdeals d, model_names m
	WHERE dealrisk.deal_risk(d, m.name) IS NOT DISTINCT FROM dealrisk.deal_risk(d)), 3000::bigint,
	'a model name from another table (not a constant) works too');
SELECT throws_ok($$SELECT dealrisk.deal_risk(d, NULL) FROM rdeals d$$, '22004',
	'model name must not be NULL', 'a NULL model name is still an error');

-- where a column list cannot stand for the row
SELECT is((SELECT dealrisk.deal_risk(d) FROM (VALUES (1)) v(x) LEFT JOIN rdeals d ON false), NULL,
	'the NULL row of an outer join scores NULL');
SELECT doesnt_match(pg_temp.plan_of('SELECT dealrisk.deal_risk(d) FROM (VALUES (1)) v(x) LEFT JOIN rdeals d ON true'),
	'_deal_risk_row', 'under an outer join the row is passed whole');
SELECT doesnt_match(pg_temp.plan_of('SELECT dealrisk.deal_risk(d) FROM rdeals d GROUP BY GROUPING SETS ((d), ())'),
	'_deal_risk_row', 'with grouping sets the row is passed whole');
SELECT is((SELECT count(*) FILTER (WHERE r IS NULL) FROM (SELECT dealrisk.deal_risk(d) r FROM rdeals d
	GROUP BY GROUPING SETS ((d), ())) g), 1::bigint, '... so the grand total row scores NULL');
CREATE VIEW rdeals_view AS SELECT * FROM rdeals;
SELECT is((SELECT count(*) FROM rdeals_view v JOIN rdeals d USING (deal_id)
	WHERE dealrisk.deal_risk(v) IS NOT DISTINCT FROM dealrisk.deal_risk(d)), 3000::bigint,
	'rows of a view score as the table''s');
-- a view's row, flattened by the planner into ROW(...) of the view's type:
-- its columns are passed too, and the functions that take the whole row
-- get it with its type written out (Citus sends workers the query's text,
-- where an untyped ROW(...) would be a record without column names)
SELECT matches(pg_temp.plan_of('SELECT dealrisk.deal_risk(v) FROM rdeals_view v'),
	'dealrisk\._deal_risk_row\(''default''::text, ''rdeals_view''::regtype',
	'deal_risk() of a view''s row is planned as _deal_risk_row with the view''s columns');
SELECT matches(pg_temp.plan_of('SELECT dealrisk.recommended_action(v) FROM rdeals_view v'),
	'dealrisk\.recommended_action\(ROW\(.*\)::rdeals_view,',
	'recommended_action() gets a view''s row with its type written out');
SELECT matches(pg_temp.plan_of('SELECT x.* FROM rdeals_view v, dealrisk.deal_risk_explain(v) x'),
	'dealrisk\.deal_risk_explain\(ROW\(.*\)::rdeals_view,',
	'... and so do deal_risk_explain()');
SELECT matches(pg_temp.plan_of('SELECT x.* FROM rdeals_view v, dealrisk.deal_risk_contributions(v) x'),
	'dealrisk\.deal_risk_contributions\(ROW\(.*\)::rdeals_view,',
	'... and deal_risk_contributions()');
SELECT is((SELECT count(*) FROM rdeals_view v JOIN rdeals d USING (deal_id)
	WHERE dealrisk.recommended_action(v) IS NOT DISTINCT FROM dealrisk.recommended_action(d)
	  AND (SELECT array_agg(x.reason) FROM dealrisk.deal_risk_explain(v) x)
	      IS NOT DISTINCT FROM (SELECT array_agg(x.reason) FROM dealrisk.deal_risk_explain(d) x)), 3000::bigint,
	'a view''s rows get the table''s actions and explanations');
SELECT is((SELECT dealrisk.deal_risk(v) FROM (VALUES (1)) x(x) LEFT JOIN rdeals_view v ON false), NULL,
	'the NULL row of a view under an outer join still scores NULL');

-- dropped and hostile columns, a hostile table name, a very wide table
CREATE TABLE "odd ""deals"" table" AS
	SELECT 1 AS "first; DROP TABLE rdeals", d.*, 'x'::text AS "Quote""d col" FROM rdeals d;
ALTER TABLE "odd ""deals"" table" DROP COLUMN "first; DROP TABLE rdeals";
ALTER TABLE "odd ""deals"" table" DROP COLUMN planted_win_prob;
SELECT matches(pg_temp.plan_of('SELECT dealrisk.deal_risk(o) FROM "odd ""deals"" table" o'),
	'_deal_risk_row', 'a table with dropped and quoted columns is rewritten');
SELECT is((SELECT count(*) FROM "odd ""deals"" table" o JOIN rdeals d USING (deal_id)
	WHERE dealrisk.deal_risk(o) IS NOT DISTINCT FROM dealrisk.deal_risk(d)), 3000::bigint,
	'... and scores as the original table');
SELECT lives_ok($$SELECT dealrisk.train('"odd ""deals"" table"', 'odd')$$,
	'train() reads a table with dropped and quoted columns');
SELECT is((SELECT coefficients FROM dealrisk.models WHERE name = 'odd'),
	(SELECT coefficients FROM dealrisk.models WHERE name = 'default'),
	'... and fits the same coefficients as on the original table');
SELECT format('CREATE TABLE wide_deals AS SELECT d.*, %s FROM rdeals d',
	string_agg(format('0 AS c%s', i), ', ')) AS wide FROM generate_series(1, 100) i \gset
:wide;
SELECT doesnt_match(pg_temp.plan_of('SELECT dealrisk.deal_risk(w) FROM wide_deals w'),
	'_deal_risk_row', 'a table too wide for a function call is passed whole');
SELECT is((SELECT count(*) FROM wide_deals w JOIN rdeals d USING (deal_id)
	WHERE dealrisk.deal_risk(w) IS NOT DISTINCT FROM dealrisk.deal_risk(d)), 3000::bigint,
	'... and scores the same');

-- the parallel path
SET LOCAL max_parallel_workers_per_gather = 2;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SELECT matches(pg_temp.plan_of('SELECT sum(dealrisk.deal_risk(d)) FROM rdeals d'),
	'Partial Aggregate(.|\n)*_deal_risk_row', 'the rewritten call runs in parallel workers');
SELECT sum(dealrisk.deal_risk(d)) AS par FROM rdeals d \gset
SET LOCAL max_parallel_workers_per_gather = 0;
SELECT is(round(:par::numeric, 6), round(sum(dealrisk.deal_risk(d))::numeric, 6),
	'the parallel sum equals the serial one') FROM rdeals d;

-- hand-written calls that do not add up
SELECT throws_ok($$SELECT dealrisk._deal_risk_row('default', 'rdeals', ARRAY['industry', 'region'], d.industry) FROM rdeals d$$,
	'22023', '2 column names given for 1 values', 'more names than values');
SELECT throws_ok($$SELECT dealrisk._deal_risk_row('default', 'rdeals', NULL, d.industry) FROM rdeals d$$,
	'22004', 'row type and column names must not be NULL', 'NULL column names');
SELECT throws_ok($$SELECT dealrisk._deal_risk_row('default', 'rdeals', ARRAY[m.name], d.industry) FROM rdeals d, model_names m$$,
	'22023', 'column names of a row passed as values must be a constant', 'column names that vary by row');
SELECT throws_ok($$SELECT dealrisk._deal_risk_row('default', 'rdeals', ARRAY['industry'], d.industry) FROM rdeals d$$,
	'42703', NULL, 'a row without the model''s columns');
SELECT throws_like($$SELECT dealrisk._deal_risk_row('default', 'rdeals',
	ARRAY['created_date', 'closed_date', 'sales_rep_id', 'industry', 'region', 'product_type', 'lead_source',
	      'deal_stage', 'deal_amount', 'sales_cycle_days', 'outcome', 'last_activity_date'],
	d.created_date, d.closed_date, d.sales_rep_id, d.industry, d.region, d.product_type, d.lead_source,
	d.deal_stage, d.deal_amount::text, d.sales_cycle_days, d.outcome, d.last_activity_date) FROM rdeals d$$,
	'%"deal_amount"%must be numeric%', 'a number column passed as text');
SELECT throws_ok($$SELECT dealrisk._deal_risk_row('default', 'int4', ARRAY['industry'], 'x'::text)$$,
	'42703', NULL, 'a row type with none of the columns');
SELECT is(dealrisk._deal_risk_row('default', 'rdeals',
	ARRAY['created_date', 'closed_date', 'sales_rep_id', 'industry', 'region', 'product_type', 'lead_source',
	      'deal_stage', 'deal_amount', 'sales_cycle_days', 'outcome', 'last_activity_date'],
	d.created_date, d.closed_date, d.sales_rep_id, d.industry, d.region, d.product_type, d.lead_source,
	d.deal_stage, d.deal_amount, d.sales_cycle_days, d.outcome, d.last_activity_date),
	dealrisk.deal_risk(d), 'columns in any order, extra ones left out, score alike')
FROM (SELECT * FROM rdeals ORDER BY deal_id LIMIT 1) d;

-- the training aggregates cache their arguments per call site; a rescan
-- with other arguments (a correlated subquery) must not reuse them
SELECT feature_spec AS spec, coefficients AS beta FROM dealrisk.models WHERE name = 'default' AND active \gset
SELECT dealrisk._row_args('rdeals', :'spec') AS args \gset
SELECT array_agg(-x) AS neg_beta FROM unnest(:'beta'::float8[]) x \gset
SELECT (dealrisk._evaluate(:'spec', :'beta', 0, NULL, :args)->>'log_loss')::float8 AS loss1,
	dealrisk._irls_pass(:'spec', :'beta', 0, NULL, NULL, NULL, :args) AS state1 FROM rdeals d \gset
SELECT (dealrisk._evaluate(:'spec', :'neg_beta', 0, NULL, :args)->>'log_loss')::float8 AS loss2,
	dealrisk._irls_pass(:'spec', :'neg_beta', 0, NULL, NULL, NULL, :args) AS state2 FROM rdeals d \gset
SELECT is(ARRAY(SELECT (SELECT (dealrisk._evaluate(:'spec', v.b, 0, NULL, :args)->>'log_loss')::float8 FROM rdeals d)
	FROM (VALUES (1, :'beta'::float8[]), (2, :'neg_beta'::float8[])) v(k, b) ORDER BY k),
	ARRAY[:loss1, :loss2]::float8[], 'a rescanned evaluation uses each rescan''s coefficients');
SELECT is(ARRAY(SELECT (SELECT dealrisk._irls_pass(:'spec', v.b, 0, NULL, NULL, NULL, :args) FROM rdeals d)[3]
	FROM (VALUES (1, :'beta'::float8[]), (2, :'neg_beta'::float8[])) v(k, b) ORDER BY k),
	ARRAY[(:'state1'::float8[])[3], (:'state2'::float8[])[3]], 'a rescanned IRLS pass too');
SELECT is((SELECT dealrisk._irls_pass(:'spec', :'beta', 1, '1900-01-01', NULL, NULL, :args) FROM rdeals d)[1:2],
	ARRAY[0, 0]::float8[], 'a pass that counts no deal has zero rows and weight');

SELECT throws_ok(format($$SELECT g.k, dealrisk._evaluate(%L, g.b, 0, NULL, 'rdeals'::regtype,
		ARRAY['outcome', 'industry'], d.outcome, d.industry)
	FROM rdeals d, (VALUES (1, %L::float8[]), (2, %L::float8[])) g(k, b) GROUP BY g.k$$,
	:'spec', :'beta', :'neg_beta'),
	'22023', 'argument 2 of a training pass must be a constant or a parameter',
	'coefficients that vary by row (hashed groups share a call site) are refused');
SELECT throws_ok(format($$SELECT g.k, dealrisk._evaluate(%L, %L, 0, NULL, 'rdeals'::regtype,
		g.n, d.outcome, d.industry)
	FROM rdeals d, (VALUES (1, ARRAY['outcome', 'industry']), (2, ARRAY['industry', 'outcome'])) g(k, n) GROUP BY g.k$$,
	:'spec', :'beta'),
	'22023', 'argument 6 of a training pass must be a constant or a parameter',
	'... and so are column names that vary by row');

-- a model reading more columns than a call can take gets whole rows
SELECT format('CREATE TABLE many_cols AS SELECT d.*, %s FROM rdeals d',
	string_agg(format('(hashtext(d.deal_id || %L) %% 1000)::float8 AS n%s', i, i), ', ') || ', 1 AS d') AS many
FROM generate_series(1, 95) i \gset
:many;
SELECT matches(dealrisk._row_args('many_cols', jsonb_build_object('format', 'dealrisk/1', 'features',
	(SELECT jsonb_agg(jsonb_build_object('name', 'n' || i, 'kind', 'numeric', 'column', 'n' || i, 'mean', 0, 'sd', 1))
	 FROM generate_series(1, 95) i))),
	', NULL::text\[\], d\.\*$', '_row_args passes whole rows past 90 columns');
SELECT lives_ok(format($$SELECT dealrisk.train('many_cols', 'many', features => %L, activate => false, method => 'logistic')$$,
	(SELECT array_agg('n' || i || ':linear') || ARRAY['industry'] FROM generate_series(1, 95) i)),
	'train() with 96 feature columns');
SELECT is((SELECT cardinality(coefficients) FROM dealrisk.models WHERE name = 'many'),
	(SELECT 1 + 95 + jsonb_array_length(f->'levels') FROM dealrisk.models m,
	 jsonb_array_elements(m.feature_spec->'features') f WHERE m.name = 'many' AND f->>'name' = 'industry'),
	'... one coefficient per numeric column and industry level');
SELECT ok((SELECT (metrics->>'n_test')::int > 0 FROM dealrisk.models WHERE name = 'many'),
	'... and its holdout was evaluated');
SELECT lives_ok(format($$SELECT dealrisk.train('many_cols', 'many_trees', features => %L, activate => false, method => 'gbm')$$,
	(SELECT array_agg('n' || i || ':linear') || ARRAY['industry'] FROM generate_series(1, 95) i)),
	'a tree model of the 96 columns, read as whole rows');
SELECT ok((SELECT (metrics->>'n_test')::int > 0 AND jsonb_array_length(feature_spec->'features') = 96
	FROM dealrisk.models WHERE name = 'many_trees'), '... and its holdout was evaluated');

SELECT * FROM finish();
ROLLBACK;
