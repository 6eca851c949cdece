-- pgTAP: the joint driver analysis (issue #13): drivers(), the adjusted
-- columns of win_rate_drivers(), diagnose()'s causes and shadows, the
-- checks of _drivers_fit, hostile names, a role that is not superuser, the
-- parallel path and the number of reads of the source.  The planted
-- scenarios over several seeds are in test/scenarios.sql.
\ir harness/pgtap_setup.psql
SELECT plan(44);

\ir harness/error_of.psql

-- Independent dimensions, constant main effects; in Q2-2024 FinTech's
-- log-odds fall by 1.6 (the only change).  10,000 closed deals.
CREATE TABLE drv_collapse AS
WITH b AS (
	SELECT i, DATE '2024-01-01' + floor(182 * dealrisk.hash_uniform(7, i, 1))::int AS closed_date,
		   (ARRAY['SaaS', 'FinTech', 'HealthTech', 'EdTech', 'Ecommerce'])[1 + floor(5 * dealrisk.hash_uniform(7, i, 2))::int] AS industry,
		   (ARRAY['North America', 'Europe', 'APAC', 'India'])[1 + floor(4 * dealrisk.hash_uniform(7, i, 3))::int] AS region,
		   (ARRAY['Core', 'Pro', 'Enterprise'])[1 + floor(3 * dealrisk.hash_uniform(7, i, 4))::int] AS product_type,
		   (ARRAY['Outbound', 'Inbound', 'Referral', 'Partner'])[1 + floor(4 * dealrisk.hash_uniform(7, i, 5))::int] AS lead_source,
		   'rep_' || (1 + floor(20 * dealrisk.hash_uniform(7, i, 6))::int) AS sales_rep_id,
		   dealrisk.hash_uniform(7, i, 7) AS u
	FROM generate_series(1, 10000) AS i
)
SELECT b.i::text AS deal_id, b.closed_date, b.industry, b.region, b.product_type, b.lead_source, b.sales_rep_id,
	   CASE WHEN b.u < 1 / (1 + exp(-(0.1 - 0.8 * (b.lead_source = 'Outbound')::int + 0.3 * (b.industry = 'SaaS')::int
									  - CASE WHEN b.closed_date >= DATE '2024-04-01' AND b.industry = 'FinTech' THEN 1.6 ELSE 0 END)))
			THEN 'Won' ELSE 'Lost' END AS outcome
FROM b;
ANALYZE drv_collapse;

-- drivers() ------------------------------------------------------------------

SELECT has_function('dealrisk', 'drivers', ARRAY['regclass', 'text[]', 'daterange', 'daterange'], 'drivers() exists');
SELECT is((SELECT p.provolatile::text || p.proparallel::text FROM pg_proc p
		   WHERE p.oid = 'dealrisk.drivers(regclass, text[], daterange, daterange)'::regprocedure),
	'sr', 'drivers() is STABLE and PARALLEL RESTRICTED (a source may be a temporary table)');
SELECT is((SELECT array_agg(kind || ':' || driver ORDER BY rank) FILTER (WHERE rank IS NOT NULL) FROM dealrisk.drivers('drv_collapse')),
	'{"rate:industry = FinTech"}', 'one collapsed industry: the only cause named');
SELECT is((SELECT array_agg(kind ORDER BY kind) FILTER (WHERE rank IS NULL) FROM dealrisk.drivers('drv_collapse')),
	'{remainder,total}', 'then the remainder and the total');
SELECT is((SELECT round((sum(contribution) FILTER (WHERE kind <> 'total') - sum(contribution) FILTER (WHERE kind = 'total'))::numeric, 12)
		   FROM dealrisk.drivers('drv_collapse')),
	0.000000000000, 'causes + remainder = the total change');
SELECT is((SELECT round(contribution::numeric, 6) FROM dealrisk.drivers('drv_collapse') WHERE kind = 'total'),
	(SELECT round((avg((outcome = 'Won')::int) FILTER (WHERE closed_date >= '2024-04-01')
				 - avg((outcome = 'Won')::int) FILTER (WHERE closed_date < '2024-04-01'))::numeric, 6) FROM drv_collapse),
	'the total is the change of the win rate between the windows');
SELECT ok((SELECT contribution < -0.04 AND ci_low < contribution AND contribution < ci_high AND q_value < 0.001
		   FROM dealrisk.drivers('drv_collapse') WHERE rank = 1),
	'the collapse: a large negative contribution inside its interval, q < 0.001');
SELECT ok((SELECT 'product_type = Pro' = ANY (explains) AND 'region = APAC' = ANY (explains)
		   FROM dealrisk.drivers('drv_collapse') WHERE rank = 1),
	'its shadows in other dimensions are listed in explains');
SELECT is((SELECT array_agg(kind ORDER BY kind) FROM dealrisk.drivers('drv_collapse', ARRAY['region', 'product_type'])),
	'{overall,remainder,total}', 'without the industry dimension the collapse shows as every segment alike, not as a region or tier');
SELECT is((SELECT count(*)::int FROM dealrisk.drivers('drv_collapse', ARRAY['industry'],
			'[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)') WHERE rank IS NOT NULL),
	1, 'explicit windows and one dimension');

-- the one read of the source
SELECT pg_stat_get_xact_numscans('drv_collapse'::regclass) AS before_scans \gset
SELECT count(*) FROM dealrisk.drivers('drv_collapse', NULL, '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)') \gset
SELECT is(pg_stat_get_xact_numscans('drv_collapse'::regclass) - :before_scans, 1::bigint,
	'drivers() with windows given reads the source once');
SELECT pg_stat_get_xact_numscans('drv_collapse'::regclass) AS before_scans \gset
SELECT count(*) FROM dealrisk.win_rate_drivers('drv_collapse', 'region') \gset
SELECT is(pg_stat_get_xact_numscans('drv_collapse'::regclass) - :before_scans, 2::bigint,
	'win_rate_drivers() reads it twice: the default windows, then the joint analysis');

-- errors
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', '{}')$$)).state, '22023', 'no dimension: 22023');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', ARRAY['region', NULL])$$)).state, '22023', 'a NULL dimension: 22023');
SELECT is(pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', ARRAY['segment'])$$),
	ROW('42703'::text, 'column "segment" does not exist in source "public.drv_collapse"'::text), 'a missing column: 42703 naming it');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', NULL, '[2024-04-01,2024-04-01)')$$)).state, '22023', 'an empty window: 22023');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', NULL, '[2024-03-01,2024-07-01)', '[2024-01-01,2024-04-01)')$$)).msg,
	'recent window [2024-03-01,2024-07-01) overlaps baseline window [2024-01-01,2024-04-01)', 'overlapping windows: named');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', NULL, '[2025-01-01,2025-04-01)')$$)).msg,
	'recent window [2025-01-01,2025-04-01) has no closed deals in source "public.drv_collapse"', 'an empty recent window: named');
SELECT is(pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_collapse', ARRAY['deal_id'])$$),
	ROW('54000'::text, 'the dimensions {deal_id} have 10,000 segments in all; the joint driver analysis takes at most 1,900'::text),
	'a dimension named explicitly with too many segments: 54000, not a silent cut');
CREATE TABLE drv_nodims AS SELECT deal_id, closed_date, outcome FROM drv_collapse;
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.drivers('drv_nodims')$$)).state, '42703', 'a source without contract dimensions: 42703');

-- win_rate_drivers(): the adjusted columns ---------------------------------

SELECT ok((SELECT bool_or(q_value < 0.05) AND NOT bool_or(significant)
		   FROM dealrisk.win_rate_drivers('drv_collapse', 'product_type')),
	'product tiers: significant one at a time, not once industry is held fixed');
SELECT is((SELECT array_agg(DISTINCT explained_by) FROM dealrisk.win_rate_drivers('drv_collapse', 'product_type') WHERE q_value < 0.05),
	'{"industry = FinTech"}', '... and each such tier is explained by industry = FinTech');
SELECT ok((SELECT bool_and(adjusted_ci_low <= adjusted_rate_effect AND adjusted_rate_effect <= adjusted_ci_high)
		   FROM dealrisk.win_rate_drivers('drv_collapse', 'region')),
	'each adjusted effect lies in its interval');
SELECT ok((SELECT significant AND explained_by IS NULL AND adjusted_q_value < 0.001 AND adjusted_rate_effect < -0.04
		   FROM dealrisk.win_rate_drivers('drv_collapse', 'industry') WHERE segment = 'FinTech'),
	'FinTech itself: significant after adjustment, explained by nothing');
SELECT ok((SELECT bool_and(significant = coalesce(adjusted_q_value < 0.05, false))
		   FROM dealrisk.win_rate_drivers('drv_collapse', 'sales_rep_id')),
	'significant means adjusted_q_value < 0.05');
SELECT is((SELECT round(sum(contribution)::numeric, 10) FROM dealrisk.win_rate_drivers('drv_collapse', 'region')),
	(SELECT round(contribution::numeric, 10) FROM dealrisk.drivers('drv_collapse') WHERE kind = 'total'),
	'the one-at-a-time contributions still sum to the change');
-- a dimension of its own with too many segments: counts, no adjustment
SELECT is((SELECT count(*)::int || ' ' || count(adjusted_q_value)::int || ' ' || count(p_value)::int
		   FROM dealrisk.win_rate_drivers('drv_collapse', 'deal_id')),
	'10000 0 0', 'deal_id as a dimension: every segment, one-at-a-time columns, no adjusted test (a NOTICE says why)');

-- hostile names and a role that is not superuser -------------------------------

CREATE TABLE "drv ""odd""; table" AS SELECT deal_id, closed_date, outcome, industry AS "seg; DROP TABLE x; --" FROM drv_collapse;
SELECT is((SELECT array_agg(driver ORDER BY rank) FILTER (WHERE rank IS NOT NULL)
		   FROM dealrisk.drivers('"drv ""odd""; table"', ARRAY['"seg; DROP TABLE x; --"'])),
	'{"\"seg; DROP TABLE x; --\" = FinTech"}', 'quoted table and column names are only names');
CREATE ROLE drv_t_analyst LOGIN;
GRANT USAGE ON SCHEMA dealrisk TO drv_t_analyst;
GRANT SELECT ON drv_collapse TO drv_t_analyst;
SET ROLE drv_t_analyst;
SELECT is((SELECT array_agg(driver ORDER BY rank) FILTER (WHERE rank IS NOT NULL) FROM dealrisk.drivers('drv_collapse')),
	'{"industry = FinTech"}', 'a role with SELECT on the source only runs drivers()');
SELECT ok(dealrisk.diagnose('drv_collapse') LIKE '%the cause: industry = FinTech%', '... and diagnose()');
RESET ROLE;

-- the parallel path: the cells query under forced parallelism ----------------

SELECT array_agg(kind || ':' || coalesce(driver, '') || ':' || round(contribution::numeric, 12) ORDER BY kind, driver) AS serial_rows
FROM dealrisk.drivers('drv_collapse') \gset
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT is((SELECT array_agg(kind || ':' || coalesce(driver, '') || ':' || round(contribution::numeric, 12) ORDER BY kind, driver)
		   FROM dealrisk.drivers('drv_collapse'))::text,
	:'serial_rows', 'the same answer with parallel workers');
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- diagnose(): causes and shadows ----------------------------------------------

SELECT dealrisk.diagnose('drv_collapse') AS report \gset
SELECT ok(:'report' LIKE E'%\n  industry = FinTech: -%points; its win rate % -> %, -%points with the other dimensions held fixed, q < 0.001\n%',
	'diagnose lists the independent cause');
SELECT ok(:'report' LIKE '%Shadows (significant one segment at a time, explained away): %explained by industry = FinTech (%after accounting for it)%',
	'... and names the shadows as such');
SELECT ok(:'report' NOT LIKE E'%\n  product_type = %: %points; its win rate%',
	'... without listing a product tier as a cause');
SELECT ok(:'report' LIKE '%In short: The win rate fell % points from Q1-2024 to Q2-2024 (p < 0.001), a significant change; the cause: industry = FinTech (-% points, %% of the change).%',
	'the headline names the cause and its share of the change');
SELECT pg_stat_get_xact_numscans('drv_collapse'::regclass) AS before_scans \gset
SELECT length(dealrisk.diagnose('drv_collapse')) > 0 AS ran \gset
SELECT is(pg_stat_get_xact_numscans('drv_collapse'::regclass) - :before_scans, 5::bigint,
	'diagnose() reads the source 5 times: the preflight (2), the headline, the trends and the joint analysis (20 in 0.3.0)');

-- a cause of one kind is not listed again as another's shadow
CREATE TABLE drv_two AS SELECT * FROM dealrisk.sample_scenario('two_causes', 10000, 1);
SELECT dealrisk.diagnose('drv_two') AS two_report \gset
SELECT ok(:'two_report' LIKE E'%\n  lead_source = Outbound (share): %' AND :'two_report' LIKE E'%\n  industry = FinTech: %'
		  AND :'two_report' NOT LIKE '%explained away): %lead_source = Outbound: %',
	'two causes: both listed, and Outbound (a share cause) is not also a shadow of FinTech');

-- _drivers_fit: checked input --------------------------------------------------

SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit('{2}', '{1,2}', '{t}', '{5,5}', '{1,1}')$$)).state, '22023', 'arrays of different lengths: 22023');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit('{2}', '{1,3}', '{t,f}', '{5,5}', '{1,1}')$$)).msg,
	'cell 2 has level 3 of dimension 1, which has 2 levels', 'a level out of range: named, no memory read');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit('{2}', '{1,2}', '{t,f}', '{5,5}', '{1,6}')$$)).msg,
	'cell 2 has 6 wins of 5 deals', 'more wins than deals: named');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit('{2}', '{1,2}', '{t,f}', '{5,5}', '{1,1}', 'NaN')$$)).state, '22023', 'a NaN false-discovery level: 22023');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit(array_fill(1, ARRAY[17]), array_fill(1, ARRAY[17]), '{t}', '{5}', '{1}')$$)).state, '54000', '17 dimensions: 54000');
SELECT is((SELECT count(*)::int FROM dealrisk._drivers_fit('{2}', '{}', '{}', '{}', '{}')), 0, 'no cells: no rows');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk._drivers_fit('{2}', '{1,2}', '{t,t}', '{5,5}', '{1,1}')$$)).state, '22023', 'no baseline deals: 22023');

SELECT * FROM finish();
