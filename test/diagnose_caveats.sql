-- pgTAP: statistics that do not cry wolf, and sources without some columns
-- (issue #9, sections 4 and 5): Benjamini-Hochberg q-values (bh_adjust,
-- win_rate_drivers, diagnose), partial periods (win_rate_trend, cycle_trend,
-- diagnose), and diagnose on sources that lack dates, stages or reps.
\ir harness/pgtap_setup.psql
\ir fixtures/skygeni.sql
SELECT plan(87);

\ir harness/error_of.psql

-- One line of a report: the first that starts with prefix.
CREATE FUNCTION pg_temp.line_of(report text, prefix text) RETURNS text
LANGUAGE sql AS $$
	SELECT l FROM pg_catalog.unnest(pg_catalog.string_to_array(report, E'\n')) WITH ORDINALITY AS u(l, o)
	WHERE pg_catalog.starts_with(l, prefix) ORDER BY o LIMIT 1
$$;

-- bh_adjust --------------------------------------------------------------------

SELECT has_function('dealrisk', 'bh_adjust', ARRAY['double precision[]'], 'bh_adjust(float8[]) exists');
SELECT is((SELECT p.provolatile::text || p.proparallel::text || p.proisstrict::text
		   FROM pg_proc p WHERE p.oid = 'dealrisk.bh_adjust(float8[])'::regprocedure),
	'istrue', 'bh_adjust is IMMUTABLE, PARALLEL SAFE and STRICT');
SELECT ok(has_function_privilege('public', 'dealrisk.bh_adjust(float8[])', 'EXECUTE'), 'anyone may call bh_adjust');

-- By hand: p = 0.01, 0.04, 0.03, 0.005 (m = 4).  Sorted 0.005, 0.01, 0.03,
-- 0.04; p m / rank = 0.02, 0.02, 0.04, 0.04; running minimum from the top:
-- 0.02, 0.02, 0.04, 0.04; back in the given order:
SELECT is((SELECT array_agg(round(q::numeric, 12) ORDER BY o)
		   FROM unnest(dealrisk.bh_adjust('{0.01,0.04,0.03,0.005}')) WITH ORDINALITY AS u(q, o)),
	'{0.02,0.04,0.04,0.02}'::numeric[], 'hand example: 0.01, 0.04, 0.03, 0.005 -> 0.02, 0.04, 0.04, 0.02');
-- p m / rank is not monotone here: 0.2*3/1 = 0.6, 0.5*3/2 = 0.75, 0.9 -> 0.6, 0.75, 0.9;
-- 0.04*3/1 = 0.12 > 0.05*3/2 = 0.075: the running minimum lowers the first
SELECT is((SELECT array_agg(round(q::numeric, 12) ORDER BY o)
		   FROM unnest(dealrisk.bh_adjust('{0.5,0.9,0.2}')) WITH ORDINALITY AS u(q, o)),
	'{0.75,0.9,0.6}'::numeric[], 'hand example: 0.5, 0.9, 0.2 -> 0.75, 0.9, 0.6');
SELECT is((SELECT array_agg(round(q::numeric, 12) ORDER BY o)
		   FROM unnest(dealrisk.bh_adjust('{0.05,0.04,0.5}')) WITH ORDINALITY AS u(q, o)),
	'{0.075,0.075,0.5}'::numeric[], 'hand example: the running minimum gives 0.04 the q of 0.05 (0.075, not 0.12)');
SELECT is(dealrisk.bh_adjust('{0.02,0.02,0.02}'), '{0.02,0.02,0.02}'::float8[], 'equal p-values get equal q-values');
SELECT is(dealrisk.bh_adjust('{0.3}'), '{0.3}'::float8[], 'a single test: q = p');
SELECT is(dealrisk.bh_adjust('{NULL,0.01,NULL,0.04}'), '{NULL,0.02,NULL,0.04}'::float8[],
	'NULL p-values stay NULL and do not count in m (m = 2)');
SELECT is(dealrisk.bh_adjust('{NULL,NULL}'), '{NULL,NULL}'::float8[], 'only NULLs: only NULLs');
SELECT is(dealrisk.bh_adjust('{}'), '{}'::float8[], 'an empty family gives an empty array');
SELECT is(dealrisk.bh_adjust(NULL), NULL, 'a NULL array gives NULL');
SELECT is(dealrisk.bh_adjust('{0,1}'), '{0,1}'::float8[], '0 and 1 are valid p-values');
SELECT is(dealrisk.bh_adjust('[5:6]={0.01,0.02}'), '{0.02,0.02}'::float8[], 'any lower bound: the result starts at 1');
SELECT throws_ok($$SELECT dealrisk.bh_adjust('{0.1,NaN}')$$, '22023', 'p-value NaN (element 2) is not between 0 and 1',
	'NaN is refused, naming it and its place');
SELECT throws_ok($$SELECT dealrisk.bh_adjust('{-0.1}')$$, '22023', 'p-value -0.1 (element 1) is not between 0 and 1',
	'a negative p-value is refused');
SELECT throws_ok($$SELECT dealrisk.bh_adjust('{0.2,1.5}')$$, '22023', 'p-value 1.5 (element 2) is not between 0 and 1',
	'a p-value above 1 is refused');
SELECT throws_ok($$SELECT dealrisk.bh_adjust('{Infinity}')$$, '22023', 'p-value Infinity (element 1) is not between 0 and 1',
	'an infinite p-value is refused');
SELECT throws_ok($$SELECT dealrisk.bh_adjust('{{0.1,0.2},{0.3,0.4}}')$$, '22023',
	'p_values must be a one-dimensional array, not 2 dimensions', 'a two-dimensional array is refused');

-- Properties on 300 pseudo-random p-values (a tenth NULL, a few ties), and
-- the definition computed another way: q(i) = min over p(j) >= p(i) of
-- p(j) m / rank(j).
CREATE TEMP TABLE bh_in AS
	SELECT o, CASE WHEN dealrisk.hash_uniform(7, o, 1) < 0.1 THEN NULL
				   WHEN o % 50 = 0 THEN 0.25
				   ELSE dealrisk.hash_uniform(7, o, 2) ^ 3 END AS p
	FROM generate_series(1, 300) AS o;
CREATE TEMP TABLE bh_out AS
	SELECT b.o, b.p, q.q
	FROM bh_in b
	JOIN unnest(dealrisk.bh_adjust((SELECT array_agg(p ORDER BY o) FROM bh_in))) WITH ORDINALITY AS q(q, o) ON q.o = b.o;
SELECT ok((SELECT bool_and(q >= p) AND bool_and(q <= 1) FROM bh_out WHERE p IS NOT NULL), 'q >= p and q <= 1');
SELECT ok((SELECT bool_and(q IS NULL) FROM bh_out WHERE p IS NULL) AND (SELECT count(*) > 0 FROM bh_out WHERE p IS NULL),
	'NULL in, NULL out');
SELECT ok((SELECT bool_and(a.q <= b.q) FROM bh_out a JOIN bh_out b ON a.p < b.p),
	'monotone: a smaller p never gets a larger q');
SELECT ok((SELECT count(DISTINCT q) = 1 FROM bh_out WHERE p = 0.25), 'ties get one q');
WITH r AS (SELECT o, p, row_number() OVER (ORDER BY p, o) AS i, count(*) OVER () AS m FROM bh_in WHERE p IS NOT NULL)
SELECT ok((SELECT bool_and(abs(x.q - (SELECT min(r2.p * r2.m / r2.i) FROM r r2 WHERE r2.i >= r.i)) < 1e-12)
		   FROM r JOIN bh_out x ON x.o = r.o),
	'equals the definition computed with a correlated minimum');

-- win_rate_drivers: q over the segments of one call ------------------------

SELECT results_eq(
	$$SELECT segment, q_value FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id') ORDER BY segment$$,
	$$SELECT d.segment, q.q
	  FROM (SELECT segment, p_value, row_number() OVER (ORDER BY segment) AS k
			FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id')) d,
		   LATERAL (SELECT (dealrisk.bh_adjust(array_agg(p_value ORDER BY segment)))[d.k::int] AS q
					FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id')) q
	  ORDER BY d.segment$$,
	'q_value is bh_adjust over the p-values of the call''s segments');
SELECT ok((SELECT bool_and(q_value >= p_value) FROM dealrisk.win_rate_drivers('skygeni', 'region,lead_source')),
	'q_value >= p_value');
-- Q4-2023 against Q3-2023 by rep: three p-values below 0.05, one q
SELECT results_eq(
	$$SELECT segment, round(p_value::numeric, 4), round(q_value::numeric, 4), significant
	  FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id', '[2023-10-01,2024-01-01)', '[2023-07-01,2023-10-01)')
	  WHERE p_value < 0.05 ORDER BY p_value$$,
	$$VALUES ('rep_20'::text, 0.0017, 0.0427, false), ('rep_7', 0.0300, 0.3754, false), ('rep_1', 0.0477, 0.3877, false)$$,
	'p < 0.05 for three reps, q < 0.05 one at a time only for rep_20, and not significant among the tests of the joint analysis');
SELECT results_eq(
	$$SELECT count(*) FILTER (WHERE p_value < 0.05), count(*) FILTER (WHERE significant)
	  FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id,industry', '[2024-01-01,2024-04-01)', '[2023-10-01,2024-01-01)')$$,
	$$VALUES (8::bigint, 0::bigint)$$,
	'125 rep x industry segments: 8 with p < 0.05, none significant');
CREATE TABLE public.mix_deals (deal_id text, closed_date date, region text, outcome text);
INSERT INTO public.mix_deals VALUES
	('b1', '2024-01-10', 'A', 'Won'), ('b2', '2024-01-11', 'A', 'Lost'), ('b3', '2024-02-10', 'C', 'Lost'),
	('r1', '2024-04-10', 'A', 'Won'), ('r2', '2024-04-11', 'A', 'Lost'), ('r3', '2024-05-10', 'N', 'Won');
SELECT results_eq(
	$$SELECT segment, p_value IS NULL, q_value IS NULL, significant IS NULL, q_value = p_value
	  FROM dealrisk.win_rate_drivers('mix_deals', 'region', '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)') ORDER BY segment$$,
	$$VALUES ('A'::text, false, false, true, true), ('C', true, true, true, NULL), ('N', true, true, true, NULL)$$,
	'a segment in one window only has no test: p, q and significant NULL, and it does not count in m');

-- Partial periods ----------------------------------------------------------------

-- Q1-2024 and Q2-2024 complete (400 deals each; region A falls from 50% to
-- 10%), Q3-2024 partial: 10 deals closed 2024-07-02 .. 2024-07-11, plus
-- open deals, one of them with an expected close date in December that must
-- not count.
CREATE TABLE public.pp_deals AS
	SELECT 'b' || i AS deal_id, ('2024-01-01'::date + i % 90) - 30 AS created_date,
		   '2024-01-01'::date + i % 90 AS closed_date, CASE WHEN i % 2 = 0 THEN 'A' ELSE 'B' END AS region,
		   'rep' || (i / 2) % 4 AS sales_rep_id, 30 AS sales_cycle_days, 'Demo'::text AS deal_stage, 100::numeric AS deal_amount,
		   CASE WHEN i % 4 IN (0, 1) THEN 'Won' ELSE 'Lost' END AS outcome
	FROM generate_series(1, 400) AS i
	UNION ALL
	SELECT 'r' || i, ('2024-04-01'::date + i % 91) - 40, '2024-04-01'::date + i % 91,
		   CASE WHEN i % 2 = 0 THEN 'A' ELSE 'B' END, 'rep' || (i / 2) % 4, 40, 'Demo', 100,
		   CASE WHEN i % 2 = 0 THEN CASE WHEN i % 20 = 0 THEN 'Won' ELSE 'Lost' END
				ELSE CASE WHEN i % 4 = 1 THEN 'Won' ELSE 'Lost' END END
	FROM generate_series(1, 400) AS i
	UNION ALL
	SELECT 'p' || i, '2024-06-01'::date, '2024-07-01'::date + i, 'B', 'rep1', NULL, 'Demo', 100,
		   CASE WHEN i <= 6 THEN 'Won' ELSE 'Lost' END
	FROM generate_series(1, 10) AS i
	UNION ALL
	SELECT 'o' || i, '2024-07-01'::date, CASE WHEN i = 1 THEN '2024-12-31'::date END, 'B', 'rep1', NULL, 'Demo', 100, NULL
	FROM generate_series(1, 5) AS i;

SELECT results_eq(
	$$SELECT period_start, closed, won, is_partial FROM dealrisk.win_rate_trend('pp_deals')$$,
	$$VALUES ('2024-01-01'::date, 400::bigint, 200::bigint, false), ('2024-04-01', 400, 120, false),
			 ('2024-07-01', 10, 6, true)$$,
	'the quarter the data end in (last close 2024-07-11) is partial, the others are not');
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.cycle_trend('pp_deals')$$,
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_deals')$$,
	'cycle_trend marks the same period partial');
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_deals', 'month') WHERE period_start >= '2024-06-01'$$,
	$$VALUES ('2024-06-01'::date, false), ('2024-07-01', true)$$,
	'by month: July 2024 is partial, June is complete');
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_deals', 'year')$$,
	$$VALUES ('2024-01-01'::date, true)$$,
	'by year: 2024 is partial');
SELECT is((SELECT count(*) FROM dealrisk.win_rate_trend('pp_deals', 'week') WHERE is_partial), 1::bigint,
	'by week: only the last week can be partial');
-- the boundary: a period is complete once a deal closed on its last day
CREATE VIEW public.pp_q2 AS SELECT * FROM public.pp_deals WHERE closed_date < '2024-07-01' OR closed_date IS NULL;
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_q2')$$,
	$$VALUES ('2024-01-01'::date, false), ('2024-04-01', false)$$,
	'data ending on 2024-06-30, the last day of Q2: Q2 is complete');
CREATE VIEW public.pp_q2_early AS SELECT * FROM public.pp_deals WHERE closed_date < '2024-06-30' OR closed_date IS NULL;
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_q2_early')$$,
	$$VALUES ('2024-01-01'::date, false), ('2024-04-01', true)$$,
	'data ending on 2024-06-29: Q2 is partial');
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_q2_early', 'week') ORDER BY period_start DESC LIMIT 1$$,
	$$VALUES ('2024-06-24'::date, true)$$,
	'by week: data ending on Saturday 2024-06-29 leave the week of Monday 2024-06-24 partial');
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_q2', 'week') ORDER BY period_start DESC LIMIT 1$$,
	$$VALUES ('2024-06-24'::date, false)$$,
	'... and data ending on Sunday 2024-06-30 complete it');
-- an infinite close date is no date
CREATE VIEW public.pp_inf AS
	SELECT deal_id, CASE WHEN deal_id = 'b1' THEN 'infinity'::date ELSE closed_date END AS closed_date, outcome
	FROM public.pp_q2;
SELECT results_eq(
	$$SELECT period_start, is_partial FROM dealrisk.win_rate_trend('pp_inf')$$,
	$$VALUES ('2024-01-01'::date, false), ('2024-04-01', false)$$,
	'an infinite closed_date does not make the last period partial');
SELECT is_empty($$SELECT * FROM dealrisk.win_rate_trend('pp_inf') WHERE period_start IS NULL$$, '... nor a period of its own');

-- diagnose compares the complete quarters and names the partial one
SELECT dealrisk.diagnose('pp_deals') AS pp_report \gset
SELECT is(pg_temp.line_of(:'pp_report', 'Trend:'),
	'Trend: 30.0% in Q2-2024 (400 closed) vs 50.0% in Q1-2024 (400 closed): -20.0 points, p < 0.001: a significant drop. Q3-2024 is partial (closed deals only up to 2024-07-11) and is not compared: 6 won of 10 closed so far.',
	'diagnose: the trend compares Q2 with Q1 and says Q3-2024 is partial');
SELECT matches(pg_temp.line_of(:'pp_report', 'Sales cycle:'), 'Q3-2024 is partial and is not compared\.$',
	'diagnose: the sales-cycle line says so too');
SELECT matches(pg_temp.line_of(:'pp_report', 'In short:'), '^In short: The win rate fell 20\.0 points from Q1-2024 to Q2-2024',
	'diagnose: the latest change in the summary is between complete quarters');
SELECT doesnt_match(pg_temp.line_of(:'pp_report', 'In short:'), 'Q3-2024', '... and the summary does not mention the partial quarter');
SELECT matches(:'pp_report'::text, E'\n  region = A: -20\\.0 points; its win rate 50\\.0% -> 10\\.0%, -40\\.0 points with the other dimensions held fixed, q < 0\\.001\n',
	'diagnose: a real drop is a cause after the adjustment');
SELECT doesnt_match(dealrisk.diagnose('pp_q2'), 'partial', 'a source ending on the last day of a quarter has no partial quarter');
SELECT is(pg_temp.line_of(dealrisk.diagnose('pp_q2_early'), 'Trend'),
	'Trend: Q1-2024 (the last complete quarter) or Q4-2023 has no closed deals to compare. Q2-2024 is partial (closed deals only up to 2024-06-29) and is not compared: 119 won of 396 closed so far.',
	'data ending before the last day of Q2: Q2 is partial and not compared, even when nothing else can be');
SELECT matches(dealrisk.diagnose('skygeni'),
	'Q3-2024 is partial \(closed deals only up to 2024-07-20\) and is not compared: 15 won of 29 closed so far\.',
	'diagnose on SkyGeni: Q3-2024 (29 deals up to 2024-07-20) is named partial');

-- diagnose: q over all the segments it tests -------------------------------

CREATE VIEW public.sky_q3 AS SELECT * FROM public.skygeni WHERE closed_date < '2023-10-01';
SELECT dealrisk.diagnose('sky_q3') AS q3_report \gset
SELECT is(
	(SELECT 'q = ' || to_char((dealrisk.bh_adjust(array_agg(dr.p_value ORDER BY dm.o, dr.segment)))[
				(SELECT k FROM (SELECT dm2.dim, dr2.segment, row_number() OVER (ORDER BY dm2.o, dr2.segment) AS k
								FROM unnest(ARRAY['industry', 'region', 'lead_source', 'product_type', 'sales_rep_id']) WITH ORDINALITY AS dm2(dim, o),
									 LATERAL dealrisk.win_rate_drivers('sky_q3', dm2.dim) dr2) z
				 WHERE z.dim = 'region' AND z.segment = 'Europe')::int], 'FM0.000')
	 FROM unnest(ARRAY['industry', 'region', 'lead_source', 'product_type', 'sales_rep_id']) WITH ORDINALITY AS dm(dim, o),
		  LATERAL dealrisk.win_rate_drivers('sky_q3', dm.dim) dr),
	'q = 0.576', 'the q of region = Europe is bh_adjust over all 41 segments of the five dimensions');
SELECT matches(:'q3_report'::text, E'\n  none: no segment changed the win rate once the others are held fixed\\.\n',
	'diagnose: p = 0.022 alone does not make region = Europe a cause');
SELECT ok((SELECT significant FROM dealrisk.win_rate_drivers('sky_q3', 'region') WHERE segment = 'Europe') = false,
	'... nor by win_rate_drivers over the 4 regions (q = 0.088)');
SELECT matches(:'q3_report'::text, 'no segment accounts for it once the others are held fixed \(178 tests\)\.',
	'diagnose: the summary counts the tests');
SELECT matches(:'q3_report'::text, 'q = p adjusted for the 178 tests of the joint analysis, Benjamini-Hochberg; see docs/diagnostics\.md\):', 'diagnose: the segments header says what q is');

-- diagnose on sources without some columns ------------------------------------

CREATE TABLE public.nodates AS
	SELECT deal_id, outcome, industry, region, lead_source, deal_amount FROM public.skygeni;
SELECT lives_ok($$SELECT dealrisk.diagnose('nodates')$$, 'no dates: diagnose runs');
SELECT dealrisk.diagnose('nodates') AS nd_report \gset
SELECT is(pg_temp.line_of(:'nd_report', 'Win-rate diagnosis'),
	'Win-rate diagnosis of public.nodates: 5,000 deals, 5,000 closed (2,263 won, 2,737 lost), 0 open; no closed_date column.',
	'no dates: the header counts the deals and says there is no closed_date');
SELECT is(pg_temp.line_of(:'nd_report', 'Win rate:'), 'Win rate: 45.3% of closed deals (95% CI 43.9% to 46.6%).',
	'no dates: the overall win rate is still reported');
SELECT is(pg_temp.line_of(:'nd_report', 'Trend:'),
	'Trend: not available: the source has no closed_date column, so closed deals cannot be placed in time (map the close date to closed_date, see docs/data-contract.md).',
	'no dates: the trend says which column it lacks');
SELECT is(pg_temp.line_of(:'nd_report', 'Segments'),
	'Segments: not available: the source has no closed_date column, so there are no two quarters to compare.',
	'no dates: so do the segments');
SELECT is(pg_temp.line_of(:'nd_report', 'Sales cycle'),
	'Sales cycle: not available: the source has no closed_date column.', 'no dates: and the sales cycle');
SELECT matches(pg_temp.line_of(:'nd_report', 'In short:'), 'no closed_date column, so only the overall win rate can be reported',
	'no dates: the summary says what the report can and cannot say');
SELECT ok(pg_temp.line_of(:'nd_report', 'Funnel') IS NOT NULL AND pg_temp.line_of(:'nd_report', 'Preflight') IS NOT NULL,
	'no dates: the funnel and preflight lines are still there');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('nodates')$$, '42703',
	'column "closed_date" is missing from source "public.nodates"', 'no dates: win_rate_trend called directly still raises');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('nodates', 'region')$$, '42703',
	'column "closed_date" is missing from source "public.nodates"', 'no dates: win_rate_drivers called directly still raises');
SELECT throws_ok($$SELECT * FROM dealrisk.cycle_trend('nodates')$$, '42703',
	'column "closed_date" is missing from source "public.nodates"', 'no dates: cycle_trend called directly still raises');

CREATE VIEW public.nostage AS
	SELECT deal_id, created_date, closed_date, sales_rep_id, industry, region, product_type, lead_source,
		   deal_amount, sales_cycle_days, outcome
	FROM public.skygeni;
SELECT dealrisk.diagnose('nostage') AS ns_report \gset
SELECT is(pg_temp.line_of(:'ns_report', 'Funnel'), 'Funnel: not available: column "deal_stage" is missing from source "public.nostage"',
	'no deal_stage: the funnel says so');
SELECT is(pg_temp.line_of(:'ns_report', 'Preflight'), 'Preflight: no error or warning (dealrisk.check_source).',
	'no deal_stage: the preflight runs without it (and the stage warning of the full source goes)');
SELECT is(
	(SELECT array_agg(l ORDER BY o) FROM unnest(string_to_array(:'ns_report', E'\n')) WITH ORDINALITY AS u(l, o)
	 WHERE o > 1 AND l !~ '^(Funnel|Weakest|Late-stage|Preflight|  - )'),
	(SELECT array_agg(l ORDER BY o) FROM unnest(string_to_array(dealrisk.diagnose('skygeni'), E'\n')) WITH ORDINALITY AS u(l, o)
	 WHERE o > 1 AND l !~ '^(Funnel|Weakest|Late-stage|Preflight|  - )'),
	'no deal_stage: the other sections are those of the full source');

CREATE VIEW public.norep AS
	SELECT deal_id, created_date, closed_date, industry, region, product_type, lead_source, deal_stage,
		   deal_amount, sales_cycle_days, outcome
	FROM public.skygeni;
SELECT dealrisk.diagnose('norep') AS nr_report \gset
SELECT matches(:'nr_report'::text, E'\n  not analysed: sales_rep_id \\(no such column in the source\\)\\.\n',
	'no sales_rep_id: the segments say which dimension is not analysed');
SELECT matches(:'nr_report'::text, 'the other dimensions \(industry, region, lead_source, product_type\) held fixed',
	'no sales_rep_id: the joint analysis holds the other four dimensions fixed');
SELECT matches(:'nr_report'::text, 'q = p adjusted for the 125 tests of the joint analysis',
	'no sales_rep_id: the family is the 125 tests over the other four dimensions (not 175 with the reps)');
SELECT is(pg_temp.line_of(:'nr_report', 'Trend:'), pg_temp.line_of(dealrisk.diagnose('skygeni'), 'Trend:'),
	'no sales_rep_id: the trend is unchanged');
SELECT matches(pg_temp.line_of(:'nr_report', 'Preflight'), '^Preflight: 1 warning;',
	'no sales_rep_id: the preflight does not need it (its one warning is about deal_stage)');

CREATE VIEW public.nocreated AS SELECT deal_id, closed_date, industry, sales_cycle_days, outcome FROM public.skygeni;
SELECT dealrisk.diagnose('nocreated') AS nc_report \gset
SELECT is(pg_temp.line_of(:'nc_report', 'Caution'), NULL, 'no created_date: no cut-off caution can be given');
SELECT matches(pg_temp.line_of(:'nc_report', 'Sales cycle'),
	'cycles are getting longer, unless the extract was cut off by creation date \(without a created_date column that cannot be checked\)',
	'no created_date: the cycle line says the cut-off cannot be checked');
SELECT results_eq(
	$$SELECT period_start, closed, median_days, mean_days FROM dealrisk.cycle_trend('nocreated')$$,
	$$SELECT period_start, closed, median_days, mean_days FROM dealrisk.cycle_trend('skygeni')$$,
	'cycle_trend works from sales_cycle_days alone');
CREATE VIEW public.nodays AS SELECT deal_id, created_date, closed_date, outcome FROM public.skygeni;
SELECT results_eq(
	$$SELECT period_start, closed, median_days, mean_days FROM dealrisk.cycle_trend('nodays')$$,
	$$SELECT period_start, closed, median_days, mean_days FROM dealrisk.cycle_trend('skygeni')$$,
	'... and from closed_date - created_date alone (SkyGeni''s sales_cycle_days agree with the dates)');
CREATE VIEW public.nocycle AS SELECT deal_id, closed_date, outcome FROM public.skygeni;
SELECT throws_ok($$SELECT * FROM dealrisk.cycle_trend('nocycle')$$, '42703',
	'source "public.nocycle" has neither a sales_cycle_days nor a created_date column',
	'cycle_trend without either cycle column is an error naming both');
SELECT is(pg_temp.line_of(dealrisk.diagnose('nocycle'), 'Sales cycle'),
	'Sales cycle: not available: the source has neither a sales_cycle_days nor a created_date column.',
	'diagnose says so on the sales-cycle line');

CREATE VIEW public.nodims AS SELECT deal_id, created_date, closed_date, sales_cycle_days, outcome FROM public.skygeni;
SELECT is(pg_temp.line_of(dealrisk.diagnose('nodims'), 'Segments'),
	'Segments: not available: the source has none of the columns industry, region, lead_source, product_type, sales_rep_id.',
	'no segment column: the segments line says which columns it looks for');

CREATE VIEW public.nullclosed AS SELECT deal_id, NULL::date AS closed_date, region, outcome FROM public.skygeni;
SELECT dealrisk.diagnose('nullclosed') AS nn_report \gset
SELECT is(pg_temp.line_of(:'nn_report', 'Trend'),
	'Trend: not available: source "public.nullclosed" has no closed deal with a closed_date',
	'closed_date always NULL: the trend says why');
SELECT is(pg_temp.line_of(:'nn_report', 'Segments'),
	'Segments: not available: there are no two quarters to compare (see Trend).', '... and so do the segments');
SELECT is(pg_temp.line_of(:'nn_report', 'Sales cycle'),
	'Sales cycle: not available: there are no two quarters to compare (see Trend).', '... and the sales cycle');

CREATE VIEW public.onlyoutcome AS SELECT outcome FROM public.skygeni;
SELECT matches(dealrisk.diagnose('onlyoutcome'), E'^Win-rate diagnosis of public\\.onlyoutcome: 5,000 deals[^\n]*\nIn short: [^\n]*\nPreflight: [^\n]*\n(  - [^\n]*\n)*Win rate: 45\\.3%',
	'a source with only outcome: the counts and the win rate');
CREATE VIEW public.text_closed AS SELECT deal_id, closed_date::text AS closed_date, outcome FROM public.skygeni;
SELECT throws_ok($$SELECT dealrisk.diagnose('text_closed')$$, '42804',
	'column "closed_date" of source "public.text_closed" has type text, not date',
	'a column that is there with a type that cannot be used is still an error');
CREATE VIEW public.no_outcome AS SELECT deal_id, closed_date, region FROM public.skygeni;
SELECT throws_ok($$SELECT dealrisk.diagnose('no_outcome')$$, '42703',
	'column "outcome" is missing from source "public.no_outcome"', 'without outcome there is nothing to diagnose');

-- a role that may only read (the analyst of docs/security.md) gets the same report
CREATE ROLE diag_t_reader NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO diag_t_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk TO diag_t_reader;
GRANT SELECT ON public.nodates, public.norep TO diag_t_reader;
SET LOCAL ROLE diag_t_reader;
CREATE TEMP TABLE reader_reports AS
	SELECT dealrisk.diagnose('public.nodates') AS nd, dealrisk.diagnose('public.norep') AS nr;
RESET ROLE;
SELECT is((SELECT nd FROM reader_reports), :'nd_report', 'a non-superuser reader gets the same dateless report');
SELECT is((SELECT nr FROM reader_reports), :'nr_report', '... and the same report without sales_rep_id');

SELECT * FROM finish();
ROLLBACK;
