-- pgTAP: diagnostics functions (trend, drivers, funnel, cycle trend, data
-- quality, report) on the SkyGeni data and on small hand-made sources.
\ir harness/pgtap_setup.psql
\ir fixtures/skygeni.sql
SELECT plan(123);

-- The SQLSTATE, message and hint of the error a statement raises (NULLs if none).
CREATE FUNCTION pg_temp.error_of(q text, OUT state text, OUT msg text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END
$$;

-- A deal source in the contract's layout without constraints, for bad data.
CREATE TABLE public.dq_deals AS
	SELECT deal_id, created_date, closed_date, sales_rep_id, industry, region, product_type,
	       lead_source, deal_stage, deal_amount, sales_cycle_days, outcome
	FROM dealrisk.sample_deals(1, 1) WHERE false;
CREATE TABLE public.empty_deals (LIKE public.dq_deals);
CREATE TABLE public.open_deals (LIKE public.dq_deals);
INSERT INTO public.open_deals (deal_id, created_date, deal_stage, outcome) VALUES
	('O1', '2024-01-05', 'Demo', NULL),
	('O2', '2024-02-05', 'Proposal', 'Open'),
	('O3', '2024-03-05', 'Demo', '');
CREATE TABLE public.one_deal AS SELECT * FROM public.skygeni WHERE deal_id = 'D00001';

-- Functions, volatility, parallel safety, comments --------------------------

SELECT has_function('dealrisk', 'win_rate_trend', ARRAY['regclass', 'text'], 'win_rate_trend(regclass, text) exists');
SELECT has_function('dealrisk', 'win_rate_drivers', ARRAY['regclass', 'text', 'daterange', 'daterange'], 'win_rate_drivers(regclass, text, daterange, daterange) exists');
SELECT has_function('dealrisk', 'funnel', ARRAY['regclass', 'date', 'regclass'], 'funnel(regclass, date, regclass) exists');
SELECT has_function('dealrisk', 'cycle_trend', ARRAY['regclass', 'text'], 'cycle_trend(regclass, text) exists');
SELECT has_function('dealrisk', 'data_quality', ARRAY['regclass'], 'data_quality(regclass) exists');
SELECT has_function('dealrisk', 'diagnose', ARRAY['regclass', 'regclass'], 'diagnose(regclass, regclass) exists');
SELECT has_function('dealrisk', '_check_source', ARRAY['regclass', 'text[]'], '_check_source(regclass, text[]) exists');
SELECT is(
	(SELECT pg_catalog.array_agg(DISTINCT p.provolatile) FROM pg_proc p
	 WHERE p.pronamespace = 'dealrisk'::regnamespace
	   AND p.proname IN ('win_rate_trend', 'win_rate_drivers', 'funnel', 'cycle_trend',
						 'data_quality', 'diagnose', '_check_source')),
	ARRAY['s']::"char"[], 'the diagnostics functions are STABLE');
SELECT is(
	(SELECT pg_catalog.string_agg(p.proname || '=' || p.proparallel::text, ' ' ORDER BY p.proname)
	 FROM pg_proc p
	 WHERE p.pronamespace = 'dealrisk'::regnamespace
	   AND p.proname IN ('win_rate_trend', 'win_rate_drivers', 'funnel', 'cycle_trend',
						 'data_quality', 'diagnose')),
	'cycle_trend=r data_quality=r diagnose=u funnel=r win_rate_drivers=r win_rate_trend=r',
	'functions reading the source are PARALLEL RESTRICTED; diagnose (subtransactions) UNSAFE');
SELECT is(
	(SELECT pg_catalog.count(*) FROM pg_proc p
	 WHERE p.pronamespace = 'dealrisk'::regnamespace
	   AND p.proname IN ('win_rate_trend', 'win_rate_drivers', 'funnel', 'cycle_trend',
						 'data_quality', 'diagnose', '_check_source', '_check_period',
						 '_dimension_columns', '_default_windows', '_source_name')
	   AND pg_catalog.obj_description(p.oid, 'pg_proc') IS NULL),
	0::bigint, 'every diagnostics function has a comment');
SELECT is(
	(SELECT pg_catalog.count(*) FROM pg_proc p
	 WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.prosecdef),
	0::bigint, 'no function is SECURITY DEFINER');

-- win_rate_trend --------------------------------------------------------------

SELECT results_eq(
	$$SELECT pg_catalog.sum(won)::bigint, pg_catalog.sum(closed)::bigint FROM dealrisk.win_rate_trend('skygeni')$$,
	$$VALUES (2263::bigint, 5000::bigint)$$,
	'2,263 won of 5,000 closed deals');
SELECT results_eq(
	$$SELECT period_start, closed, won, round(win_rate::numeric, 3)
	  FROM dealrisk.win_rate_trend('skygeni') WHERE period_start >= '2024-01-01'$$,
	$$VALUES ('2024-01-01'::date, 990::bigint, 462::bigint, 0.467),
			 ('2024-04-01', 637, 279, 0.438),
			 ('2024-07-01', 29, 15, 0.517)$$,
	'Q1-2024 46.7%, Q2-2024 43.8%');
SELECT is(
	(SELECT round(change::numeric, 12) FROM dealrisk.win_rate_trend('skygeni') WHERE period_start = '2024-04-01'),
	round((279.0 / 637 - 462.0 / 990)::numeric, 12),
	'change is this quarter''s rate minus the previous one');
SELECT is(
	(SELECT p_value FROM dealrisk.win_rate_trend('skygeni') WHERE period_start = '2024-04-01'),
	dealrisk.two_proportion_p(279, 637, 462, 990),
	'p_value is the two-proportion test against the previous quarter');
SELECT is(
	(SELECT round(p_value::numeric, 3) FROM dealrisk.win_rate_trend('skygeni') WHERE period_start = '2024-04-01'),
	0.257, 'the Q2-2024 drop is not significant (p = 0.257)');
SELECT results_eq(
	$$SELECT ci_low, ci_high FROM dealrisk.win_rate_trend('skygeni') WHERE period_start = '2024-04-01'$$,
	$$SELECT ci_low, ci_high FROM dealrisk.wilson_interval(279, 637)$$,
	'the interval is the 95% Wilson interval');
SELECT ok(
	(SELECT change IS NULL AND p_value IS NULL FROM dealrisk.win_rate_trend('skygeni') ORDER BY period_start LIMIT 1),
	'the first period has no change and no p-value');
SELECT results_eq(
	$$SELECT count(*), sum(closed)::bigint, min(period_start), max(period_start) FROM dealrisk.win_rate_trend('skygeni', 'month')$$,
	$$VALUES (19::bigint, 5000::bigint, '2023-01-01'::date, '2024-07-01'::date)$$,
	'monthly trend: 19 months, all 5,000 deals');
SELECT ok(
	(SELECT bool_and(extract(isodow FROM period_start) = 1) FROM dealrisk.win_rate_trend('skygeni', 'week')),
	'weeks start on Monday');
SELECT results_eq(
	$$SELECT period_start, closed FROM dealrisk.win_rate_trend('skygeni', ' Year ')$$,
	$$VALUES ('2023-01-01'::date, 3344::bigint), ('2024-01-01', 1656)$$,
	'period names are trimmed and case-insensitive');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('skygeni', 'fortnight')$$, '22023',
	'invalid period "fortnight"', 'an unknown period is an error naming it');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.win_rate_trend('skygeni', 'day')$$)).hint,
	'Use one of week, month, quarter, year.', 'the period error lists the choices');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('skygeni', NULL)$$, '22023',
	'period must not be NULL', 'a NULL period is an error');

-- A period with no closed deals breaks the chain of changes.
CREATE TABLE public.gap_deals AS
	SELECT * FROM public.skygeni WHERE closed_date < '2023-07-01' OR closed_date >= '2023-10-01';
SELECT results_eq(
	$$SELECT period_start, change IS NULL, p_value IS NULL FROM dealrisk.win_rate_trend('gap_deals')
	  WHERE period_start BETWEEN '2023-04-01' AND '2024-01-01'$$,
	$$VALUES ('2023-04-01'::date, false, false), ('2023-10-01', true, true), ('2024-01-01', false, false)$$,
	'after a period without closed deals, change and p-value are NULL');

-- win_rate_drivers ------------------------------------------------------------

SELECT results_eq(
	$$SELECT sum(baseline_closed)::bigint, sum(recent_closed)::bigint FROM dealrisk.win_rate_drivers('skygeni', 'industry')$$,
	$$VALUES (990::bigint, 637::bigint)$$,
	'default windows: recent = Q2-2024 (637 deals), baseline = Q1-2024 (990 deals)');
SELECT results_eq(
	$$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'industry')$$,
	$$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'industry', '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)')$$,
	'defaults equal the explicit Q2-2024 vs Q1-2024 windows');
SELECT results_eq(
	$$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'industry', '[2024-04-01,2024-07-01)')$$,
	$$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'industry', '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)')$$,
	'without baseline, the window of the same length before recent is used');
SELECT results_eq(
	$$SELECT recent.lower, recent.upper, baseline.lower, baseline.upper
	  FROM dealrisk._default_windows('skygeni') w,
		   LATERAL (SELECT lower(w.recent), upper(w.recent)) recent(lower, upper),
		   LATERAL (SELECT lower(w.baseline), upper(w.baseline)) baseline(lower, upper)$$,
	$$VALUES ('2024-04-01'::date, '2024-07-01'::date, '2024-01-01'::date, '2024-04-01'::date)$$,
	'Q3-2024 is incomplete (data ends 2024-07-20): the last complete quarter is Q2-2024');
SELECT ok(
	(SELECT abs(sum(contribution) - (279.0 / 637 - 462.0 / 990)::float8) < 1e-12
	 FROM dealrisk.win_rate_drivers('skygeni', 'industry')),
	'industry contributions sum to the overall change');
SELECT ok(
	(SELECT abs(sum(contribution) - (279.0 / 637 - 462.0 / 990)::float8) < 1e-12
	 FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id')),
	'sales rep contributions sum to the overall change');
SELECT ok(
	(SELECT abs(sum(contribution) - (279.0 / 637 - 462.0 / 990)::float8) < 1e-12
	 FROM dealrisk.win_rate_drivers('skygeni', 'region,lead_source')),
	'two-column contributions sum to the overall change');
SELECT ok(
	(SELECT abs((SELECT sum(d.contribution)
				 FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2023-10-01,2024-01-01)', '[2023-01-01,2023-07-01)') d)
				- ((SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM skygeni
					WHERE closed_date >= '2023-10-01' AND closed_date < '2024-01-01')
				   - (SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM skygeni
					  WHERE closed_date >= '2023-01-01' AND closed_date < '2023-07-01'))) < 1e-12),
	'contributions sum to the change for windows of different lengths');
SELECT ok(
	(SELECT bool_and(abs(rate_effect + mix_effect - contribution) < 1e-15)
			AND abs(sum(baseline_share) - 1) < 1e-12 AND abs(sum(recent_share) - 1) < 1e-12
	 FROM dealrisk.win_rate_drivers('skygeni', 'product_type')),
	'contribution = rate_effect + mix_effect; shares sum to 1');
SELECT results_eq(
	$$SELECT segment, recent_closed, round(recent_win_rate::numeric, 4), baseline_closed,
			 round(baseline_win_rate::numeric, 4), round(rate_effect::numeric, 6),
			 round(mix_effect::numeric, 6), round(p_value::numeric, 4), significant
	  FROM dealrisk.win_rate_drivers('skygeni', 'lead_source')$$,
	$$VALUES ('Inbound', 168::bigint, 0.4048, 254::bigint, 0.4882, -0.022003, 0.000154, 0.0920, false),
			 ('Outbound', 174, 0.4195, 260, 0.4538, -0.009371, -0.000135, 0.4804, false),
			 ('Partner', 129, 0.4186, 235, 0.4596, -0.008297, 0.000247, 0.4519, false),
			 ('Referral', 166, 0.5060, 241, 0.4647, 0.010761, -0.000033, 0.4126, false)$$,
	'lead_source drivers, biggest drag first');
SELECT results_eq(
	$$SELECT p_value FROM dealrisk.win_rate_drivers('skygeni', 'lead_source') WHERE segment = 'Inbound'$$,
	$$VALUES (dealrisk.two_proportion_p(68, 168, 124, 254))$$,
	'a segment''s p-value compares its recent and baseline rates');
SELECT results_eq(
	$$SELECT count(*), count(*) FILTER (WHERE segment = 'Europe / Partner')
	  FROM dealrisk.win_rate_drivers('skygeni', 'region, lead_source')$$,
	$$VALUES (16::bigint, 1::bigint)$$,
	'two columns: 4 regions x 4 lead sources, labels joined with " / "');
SELECT ok(
	(SELECT bool_and(c >= lag_c) FROM (
		SELECT contribution AS c, lag(contribution) OVER (ORDER BY ordinality) AS lag_c
		FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id') WITH ORDINALITY) s
	 WHERE lag_c IS NOT NULL),
	'rows are sorted by contribution, biggest drag first');
SELECT ok(
	(SELECT bool_and(significant IS NOT DISTINCT FROM (adjusted_q_value < 0.05)) FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id', '[2023-10-01,2024-01-01)', '[2023-07-01,2023-10-01)')),
	'significant means adjusted_q_value < 0.05 (NULL when the adjusted test was not made)');

-- Segments present in one window only, and NULL values.
CREATE TABLE public.mix_deals (LIKE public.dq_deals);
INSERT INTO public.mix_deals (deal_id, closed_date, region, outcome) VALUES
	('b1', '2024-01-10', 'A', 'Won'), ('b2', '2024-01-11', 'A', 'Won'),
	('b3', '2024-01-12', 'A', 'Lost'), ('b4', '2024-01-13', 'A', 'Lost'),
	('b5', '2024-02-10', 'C', 'Lost'), ('b6', '2024-02-11', 'C', 'Lost'),
	('r1', '2024-04-10', 'A', 'Won'), ('r2', '2024-04-11', 'A', 'Lost'),
	('r3', '2024-05-10', NULL, 'Won'), ('r4', '2024-05-11', NULL, 'Won'),
	('o1', NULL, 'A', NULL);
SELECT results_eq(
	$$SELECT segment, baseline_closed, baseline_win_rate, round(baseline_share::numeric, 6),
			 recent_closed, recent_win_rate, recent_share,
			 round(rate_effect::numeric, 6), round(mix_effect::numeric, 6),
			 round(contribution::numeric, 6), p_value IS NULL, significant
	  FROM dealrisk.win_rate_drivers('mix_deals', 'region', '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)')$$,
	$$VALUES ('A', 4::bigint, 0.5::float8, 0.666667, 2::bigint, 0.5::float8, 0.5::float8, 0.000000, -0.027778, -0.027778, false, NULL::boolean),
			 ('C', 2, 0, 0.333333, 0, NULL, 0, 0.000000, 0.111111, 0.111111, true, NULL),
			 ('(missing)', 0, NULL, 0.000000, 2, 1, 0.5, 0.333333, 0.000000, 0.333333, true, NULL)$$,
	'new segment uses r0 = R0, vanished segment has s1 = 0, NULL values are "(missing)"');
SELECT ok(
	(SELECT abs(sum(contribution) - (0.75 - 2.0 / 6)::float8) < 1e-12
	 FROM dealrisk.win_rate_drivers('mix_deals', 'region', '[2024-04-01,2024-07-01)', '[2024-01-01,2024-04-01)')),
	'contributions still sum to the change when segments come and go');

-- Window errors.
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,2024-04-01)')$$,
	'22023', 'recent window is empty', 'an empty recent window is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,2024-07-01)', 'empty')$$,
	'22023', 'baseline window is empty', 'an empty baseline window is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', daterange('2024-07-01', '2024-04-01'))$$,
	'22000', NULL, 'an inverted daterange is rejected');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,2024-07-01)', '[2024-03-01,2024-05-01)')$$,
	'22023', 'recent window [2024-04-01,2024-07-01) overlaps baseline window [2024-03-01,2024-05-01)',
	'overlapping windows are an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,)')$$,
	'22023', 'cannot derive a baseline window from the unbounded recent window [2024-04-01,)',
	'an unbounded recent window needs an explicit baseline');
SELECT lives_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-01-01,)', '[,2024-01-01)')$$,
	'unbounded windows are fine when both are given');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2025-04-01,2025-07-01)')$$,
	'22023', 'recent window [2025-04-01,2025-07-01) has no closed deals in source "public.skygeni"',
	'a recent window without closed deals is an error naming it');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,2024-07-01)', '[2022-01-01,2022-04-01)')$$,
	'22023', 'baseline window [2022-01-01,2022-04-01) has no closed deals in source "public.skygeni"',
	'a baseline window without closed deals is an error naming it');

-- Dimension errors.
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'regio')$$, '42703',
	'column "regio" does not exist in source "public.skygeni"', 'an unknown dimension column is an error naming it');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'regio')$$)).hint,
	'Valid columns are: deal_id, created_date, closed_date, sales_rep_id, industry, region, product_type, lead_source, deal_stage, deal_amount, sales_cycle_days, outcome.',
	'the hint lists the valid columns');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region,nope')$$, '42703',
	'column "nope" does not exist in source "public.skygeni"', 'every column of a multi-column dimension is checked');
SELECT results_eq(
	$$SELECT count(*) FROM dealrisk.win_rate_drivers('skygeni', 'Region')$$, $$VALUES (4::bigint)$$,
	'an unquoted name matches like an SQL identifier (Region = region)');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', '"Region"')$$, '42703',
	'column "Region" does not exist in source "public.skygeni"', 'a quoted name matches exactly');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region,,industry')$$, '22023',
	'empty column name in dimension "region,,industry"', 'an empty name is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', '')$$, '22023',
	'dimension must name at least one column', 'an empty dimension is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', NULL)$$, '22023',
	'dimension must name at least one column', 'a NULL dimension is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region,REGION')$$, '22023',
	'column "region" appears twice in dimension "region,REGION"', 'a repeated column is an error');

-- Hostile names ---------------------------------------------------------------

CREATE TABLE public.x (a int);
CREATE TABLE public."deals""; DROP TABLE x; --" AS SELECT * FROM public.skygeni;
ALTER TABLE public."deals""; DROP TABLE x; --" ADD COLUMN "we""ird" text DEFAULT 'q';
ALTER TABLE public."deals""; DROP TABLE x; --" ADD COLUMN "a,b" text DEFAULT 'ab';
SELECT results_eq(
	$$SELECT * FROM dealrisk.win_rate_trend('public."deals""; DROP TABLE x; --"')$$,
	$$SELECT * FROM dealrisk.win_rate_trend('skygeni')$$,
	'a hostile table name is just a table name');
SELECT results_eq(
	$$SELECT segment, recent_closed FROM dealrisk.win_rate_drivers('public."deals""; DROP TABLE x; --"', 'we"ird')$$,
	$$VALUES ('q'::text, 637::bigint)$$,
	'a column name with a quote works unquoted in a dimension');
SELECT results_eq(
	$$SELECT count(*) FROM dealrisk.win_rate_drivers('public."deals""; DROP TABLE x; --"', '"we""ird", "a,b", region')$$,
	$$VALUES (4::bigint)$$,
	'quoted names in a dimension may hold quotes and commas');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('public."deals""; DROP TABLE x; --"', 'region; DROP TABLE x; --')$$,
	'42703', 'column "region; DROP TABLE x; --" does not exist in source "public.deals"; DROP TABLE x; --"',
	'SQL in a dimension is just an unknown column name');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region") FROM x; --')$$,
	'42703', NULL, 'a closing quote in a dimension is just part of an unknown name');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', '"region')$$,
	'42601', 'unterminated quoted column name in dimension ""region"', 'an unterminated quote is a syntax error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('skygeni', '"region"x')$$,
	'42601', 'unexpected text after quoted column name in dimension ""region"x"', 'text after a quoted name is a syntax error');
SELECT lives_ok($$SELECT dealrisk.diagnose('public."deals""; DROP TABLE x; --"')$$, 'diagnose takes a hostile table name');
SELECT has_table('public', 'x', 'table x survived all of it');

-- Sources that break the contract ----------------------------------------------

CREATE VIEW public.no_outcome AS SELECT deal_id, created_date, closed_date, deal_stage FROM public.skygeni;
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('no_outcome')$$, '42703',
	'column "outcome" is missing from source "public.no_outcome"', 'a missing contract column is an error naming it');
SELECT is((pg_temp.error_of($$SELECT * FROM dealrisk.data_quality('no_outcome')$$)).hint,
	'Map your CRM''s columns with a view, see docs/data-contract.md.', 'the hint points at the data contract');
SELECT throws_ok($$SELECT * FROM dealrisk.cycle_trend('no_outcome')$$, '42703',
	'column "outcome" is missing from source "public.no_outcome"', 'cycle_trend checks its columns');
SELECT throws_ok($$SELECT * FROM dealrisk.funnel('no_outcome')$$, '42703',
	'column "outcome" is missing from source "public.no_outcome"', 'funnel checks its columns');
SELECT throws_ok($$SELECT dealrisk.diagnose('no_outcome')$$, '42703',
	'column "outcome" is missing from source "public.no_outcome"', 'diagnose needs outcome (other columns only per section)');
CREATE VIEW public.text_dates AS SELECT deal_id, closed_date::text AS closed_date, outcome FROM public.skygeni;
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('text_dates')$$, '42804',
	'column "closed_date" of source "public.text_dates" has type text, not date', 'a date column of another type is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('skygeni_pkey')$$, '42809',
	'source "public.skygeni_pkey" is not a table or view', 'an index is not a source');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend(NULL)$$, '22004',
	'source must not be NULL', 'a NULL source is an error');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('no_such_table')$$, '42P01', NULL,
	'an unknown relation is rejected by regclass');
CREATE VIEW public.ts_deals AS
	SELECT deal_id, created_date::timestamptz AS created_date, closed_date::timestamp AS closed_date,
		   sales_rep_id::varchar AS sales_rep_id, industry, region, product_type, lead_source,
		   deal_stage::varchar(20) AS deal_stage, deal_amount::float8 AS deal_amount,
		   sales_cycle_days::bigint AS sales_cycle_days, outcome::varchar AS outcome
	FROM public.skygeni;
SELECT results_eq($$SELECT * FROM dealrisk.win_rate_trend('ts_deals')$$,
	$$SELECT * FROM dealrisk.win_rate_trend('skygeni')$$, 'timestamp, varchar and float columns work through a view');
SELECT results_eq($$SELECT * FROM dealrisk.cycle_trend('ts_deals')$$,
	$$SELECT * FROM dealrisk.cycle_trend('skygeni')$$, 'cycle_trend through a view');

-- Empty, open-only and single-row sources -----------------------------------

SELECT is_empty($$SELECT * FROM dealrisk.win_rate_trend('empty_deals')$$, 'empty source: no trend rows');
SELECT is_empty($$SELECT * FROM dealrisk.cycle_trend('empty_deals')$$, 'empty source: no cycle rows');
SELECT is_empty($$SELECT * FROM dealrisk.funnel('empty_deals')$$, 'empty source: no funnel rows');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('empty_deals', 'region')$$, '22023',
	'source "public.empty_deals" has no closed deal with a closed_date', 'empty source: drivers say there is nothing to compare');
SELECT results_eq($$SELECT count(*), sum("rows")::bigint FROM dealrisk.data_quality('empty_deals')$$,
	$$VALUES (15::bigint, 0::bigint)$$, 'empty source: all checks, all zero');
SELECT matches(dealrisk.diagnose('empty_deals'), 'No closed deals', 'empty source: diagnose says so');

SELECT is_empty($$SELECT * FROM dealrisk.win_rate_trend('open_deals')$$, 'open deals only: no trend rows');
SELECT results_eq(
	$$SELECT stage, reached, open_here, cumulative_conversion FROM dealrisk.funnel('open_deals') WHERE open_here > 0$$,
	$$VALUES ('Demo'::text, 0::bigint, 2::bigint, NULL::float8), ('Proposal', 0, 1, NULL)$$,
	'open deals only: the funnel counts them where they stand');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('open_deals', 'region')$$, '22023', NULL,
	'open deals only: drivers have nothing to compare');
SELECT matches(dealrisk.diagnose('open_deals'), '3 open.*No closed deals', 'open deals only: diagnose says so');

SELECT results_eq(
	$$SELECT period_start, closed, won, win_rate, change, p_value FROM dealrisk.win_rate_trend('one_deal')$$,
	$$VALUES ('2023-10-01'::date, 1::bigint, 1::bigint, 1::float8, NULL::float8, NULL::float8)$$,
	'single deal: one period, no change');
SELECT results_eq(
	$$SELECT closed, median_days, p75_days, mean_days, p_value, significant FROM dealrisk.cycle_trend('one_deal')$$,
	$$VALUES (1::bigint, 21::float8, 21::float8, 21::float8, NULL::float8, NULL::boolean)$$,
	'single deal: its cycle, no test');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_drivers('one_deal', 'region')$$, '22023',
	'recent window [2023-07-01,2023-10-01) has no closed deals in source "public.one_deal"',
	'single deal: the default recent window (last complete quarter) is empty');
SELECT lives_ok($$SELECT dealrisk.diagnose('one_deal')$$, 'single deal: diagnose works');

-- funnel ----------------------------------------------------------------------

SELECT results_eq(
	$$SELECT stage, "position", is_late, reached, won, lost_here, open_here,
			 round(conversion_to_next::numeric, 4), round(cumulative_conversion::numeric, 4),
			 round(win_rate::numeric, 4)
	  FROM dealrisk.funnel('skygeni')$$,
	$$VALUES ('Qualified'::text, 1, false, 5000::bigint, 2263::bigint, 552::bigint, 0::bigint, 0.8088, 1.0000, 0.4526),
			 ('Demo', 2, false, 4044, 1859, 565, 0, 0.7421, 0.8088, 0.4597),
			 ('Proposal', 3, true, 3001, 1381, 558, 0, 0.6638, 0.6002, 0.4602),
			 ('Negotiation', 4, true, 1992, 930, 531, 0, 0.5005, 0.3984, 0.4669),
			 ('Closed', 5, true, 997, 466, 531, 0, NULL, 0.1994, 0.4674)$$,
	'the SkyGeni funnel');
SELECT results_eq(
	$$SELECT reached FROM dealrisk.funnel('skygeni', '2024-01-01') WHERE "position" = 1$$,
	$$SELECT count(*) FROM skygeni WHERE created_date >= '2024-01-01'$$,
	'since keeps the deals created on or after it');
SELECT is_empty($$SELECT * FROM dealrisk.funnel('skygeni', '2030-01-01')$$, 'a since after all deals gives no rows');
CREATE TABLE public.limbo_deals AS SELECT * FROM public.one_deal;
UPDATE public.limbo_deals SET deal_stage = 'Limbo';
SELECT throws_ok($$SELECT * FROM dealrisk.funnel('limbo_deals')$$, '22023', 'unknown deal stage "Limbo"',
	'an unknown stage in the funnel is an error naming it');

-- cycle_trend -------------------------------------------------------------------

SELECT results_eq(
	$$SELECT period_start, closed, median_days, p75_days, round(mean_days::numeric, 4), change_median, significant
	  FROM dealrisk.cycle_trend('skygeni') WHERE period_start >= '2024-01-01'$$,
	$$VALUES ('2024-01-01'::date, 990::bigint, 63::float8, 91::float8, 63.1394, 0::float8, false),
			 ('2024-04-01', 637, 86, 102, 80.9215, 23, true),
			 ('2024-07-01', 29, 114, 117, 112.4138, 28, true)$$,
	'quarterly cycle lengths of 2024');
SELECT is(
	(SELECT round(p_value::numeric, 12) FROM dealrisk.cycle_trend('skygeni') WHERE period_start = '2024-01-01'),
	(SELECT round(dealrisk.welch_p(a.m, a.s, a.n, b.m, b.s, b.n)::numeric, 12)
	 FROM (SELECT avg(sales_cycle_days)::float8 m, stddev_samp(sales_cycle_days)::float8 s, count(*) n
		   FROM skygeni WHERE closed_date >= '2024-01-01' AND closed_date < '2024-04-01') a,
		  (SELECT avg(sales_cycle_days)::float8 m, stddev_samp(sales_cycle_days)::float8 s, count(*) n
		   FROM skygeni WHERE closed_date >= '2023-10-01' AND closed_date < '2024-01-01') b),
	'the cycle p-value is Welch''s test of this period''s mean against the previous one');
CREATE TABLE public.nocycle_deals AS SELECT * FROM public.skygeni WHERE closed_date < '2023-04-01';
UPDATE public.nocycle_deals SET sales_cycle_days = NULL WHERE deal_id < 'D01000';
SELECT results_eq(
	$$SELECT * FROM dealrisk.cycle_trend('nocycle_deals')$$,
	$$SELECT * FROM dealrisk.cycle_trend('skygeni') WHERE period_start < '2023-04-01'$$,
	'without sales_cycle_days the cycle is closed_date - created_date');
SELECT throws_ok($$SELECT * FROM dealrisk.cycle_trend('skygeni', 'decade')$$, '22023',
	'invalid period "decade"', 'cycle_trend checks the period');

-- data_quality ------------------------------------------------------------------

SELECT results_eq(
	$$SELECT check_name, "rows" FROM dealrisk.data_quality('skygeni')$$,
	$$VALUES ('null_deal_id'::text, 0::bigint), ('duplicate_deal_id', 0), ('closed_before_created', 0),
			 ('closed_without_closed_date', 0), ('open_with_closed_date', 0), ('null_amount', 0),
			 ('invalid_amount', 0), ('negative_amount', 0), ('unknown_outcome', 0), ('null_stage', 0),
			 ('unknown_stage', 0), ('cycle_days_mismatch', 0), ('negative_cycle_days', 0),
			 ('future_created_date', 0), ('infinite_date', 0)$$,
	'SkyGeni passes every check; all checks are listed in a fixed order');
INSERT INTO public.dq_deals VALUES
	('ok1',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Won'),
	(NULL,     '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Won'),
	('  ',     '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Won'),
	('dup',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Won'),
	('dup',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Lost'),
	('cbc',    '2024-03-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, NULL, 'Lost'),
	('nocl',   '2024-01-01', NULL,         'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, NULL, 'won'),
	('opencl', '2024-01-01', '2024-05-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, NULL, 'Open'),
	('nullamt','2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', NULL, 31, 'Won'),
	('nan',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 'NaN', 31, 'Won'),
	('inf',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', '-Infinity', 31, 'Won'),
	('neg',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', -5, 31, 'Won'),
	('unk',    '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 31, 'Stalled'),
	('nostage','2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', E' \t', 100, 31, 'Won'),
	('nullst', '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', NULL, 100, 31, 'Won'),
	('limbo',  '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Limbo', 100, 31, 'Won'),
	('trim',   '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', E' negotiation\t', 100, 31, 'Won'),
	('mism',   '2024-01-01', '2024-02-01', 'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 30, 'Won'),
	('negcyc', '2024-01-01', NULL,         'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, -3, NULL),
	('future', CURRENT_DATE + 30, NULL,   'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, NULL, NULL),
	('infdate','-infinity', 'infinity',    'r1', 'SaaS', 'APAC', 'Core', 'Inbound', 'Demo', 100, 3, 'Lost');
SELECT results_eq(
	$$SELECT check_name, "rows", example_deal_id FROM dealrisk.data_quality('dq_deals')$$,
	$$VALUES ('null_deal_id'::text, 2::bigint, NULL::text), ('duplicate_deal_id', 2, 'dup'),
			 ('closed_before_created', 1, 'cbc'), ('closed_without_closed_date', 1, 'nocl'),
			 ('open_with_closed_date', 1, 'opencl'), ('null_amount', 1, 'nullamt'),
			 ('invalid_amount', 2, 'inf'), ('negative_amount', 1, 'neg'),
			 ('unknown_outcome', 1, 'unk'), ('null_stage', 2, 'nostage'),
			 ('unknown_stage', 1, 'limbo'), ('cycle_days_mismatch', 1, 'mism'),
			 ('negative_cycle_days', 1, 'negcyc'), ('future_created_date', 1, 'future'),
			 ('infinite_date', 1, 'infdate')$$,
	'data_quality finds each planted bad row');
-- the optional date columns are checked too
CREATE TABLE public.dq_dates AS SELECT * FROM dealrisk.sample_deals(20, 3);
SELECT array_agg(deal_id ORDER BY deal_id) AS dq_ids FROM public.dq_dates \gset
UPDATE public.dq_dates SET stage_entered_date = 'infinity' WHERE deal_id = (:'dq_ids'::text[])[4];
UPDATE public.dq_dates SET last_activity_date = '-infinity' WHERE deal_id IN ((:'dq_ids'::text[])[7], (:'dq_ids'::text[])[9]);
SELECT results_eq(format($$SELECT "rows", example_deal_id = %L FROM dealrisk.data_quality('dq_dates') WHERE check_name = 'infinite_date'$$,
	(:'dq_ids'::text[])[4]), $$VALUES (3::bigint, true)$$, 'an infinite stage_entered_date or last_activity_date is reported');
SELECT ok((SELECT bool_and(description <> '') FROM dealrisk.data_quality('dq_deals')), 'every check is described');
SELECT throws_ok($$SELECT * FROM dealrisk.win_rate_trend('dq_deals')$$, '22023', 'unknown outcome label "Stalled"',
	'the analyses refuse an unknown label that data_quality reports');
SELECT matches(dealrisk.diagnose('dq_deals'), 'Cannot analyse: outcome labels such as "Stalled"',
	'diagnose explains an unknown label instead of failing');
SELECT matches(dealrisk.diagnose('dq_deals'), E'\n  - null_deal_id: 2 rows: [^\n]*\n  - duplicate_deal_id: 2 rows: ',
	'diagnose lists the failing checks under Preflight, unknown label or not');
DELETE FROM public.dq_deals WHERE outcome = 'Stalled';
SELECT lives_ok($$SELECT dealrisk.diagnose('dq_deals')$$, 'diagnose survives NaN, infinite dates and unknown stages');
SELECT matches(dealrisk.diagnose('dq_deals'), E'\nSegments: not available: recent window \\[2023-10-01,2024-01-01\\) has no closed deals in source "public.dq_deals"\n',
	'a section that cannot run says why');

-- diagnose ----------------------------------------------------------------------

SELECT matches(dealrisk.diagnose('skygeni'),
	'43\.8% in Q2-2024 \(637 closed\) vs 46\.7% in Q1-2024 \(990 closed\): -2\.9 points, p = 0\.257: within noise',
	'diagnose: the trend, plainly within noise');
SELECT matches(dealrisk.diagnose('skygeni'), E'\nFunnel: not shown: deal_stage does not hold the stage closed deals reached \\(preflight, stage_semantics\\)',
	'diagnose: no funnel from SkyGeni''s deal_stage, where won deals sit at every stage (issue #9)');
SELECT doesnt_match(dealrisk.diagnose('skygeni'), '(Late-stage losses|Weakest step|most lost deals were lost at)',
	'diagnose: so no late-stage loss ratio, weakest step or stage of most losses');
SELECT matches(dealrisk.diagnose('skygeni'), E'\n  none: no segment changed the win rate once the others are held fixed\.\n',
	'diagnose: no segment is a cause of SkyGeni''s drop (within noise), and none is listed as one');
SELECT matches(dealrisk.diagnose('skygeni'), 'Caution: the newest deal was created on 2024-03-26',
	'diagnose: warns that the extract is cut off by creation date');
SELECT matches(dealrisk.diagnose('skygeni'), 'Sales cycle: median 86\.0 days in Q2-2024 vs 63\.0 in Q1-2024',
	'diagnose: the cycle trend');
SELECT ok((SELECT array_length(string_to_array(dealrisk.diagnose('skygeni'), E'\n'), 1) BETWEEN 10 AND 30),
	'diagnose: 10 to 30 lines');
SELECT matches(dealrisk.diagnose('skygeni'), E'\nPreflight: 1 warning; the fixes: SELECT \\* FROM dealrisk.check_source\\(''public.skygeni''\\);\n  - stage_semantics: ',
	'diagnose: the preflight line (data quality passes; the one warning is the stage column)');

-- Search path, temporary tables, parallel plans ----------------------------------

SET LOCAL search_path = '';
CREATE TEMPORARY TABLE sp_out AS
	SELECT (SELECT pg_catalog.count(*) FROM dealrisk.win_rate_drivers('public.skygeni', 'region,lead_source')) AS drivers,
		   (SELECT pg_catalog.count(*) FROM dealrisk.data_quality('public.dq_deals')) AS checks,
		   dealrisk.diagnose('public.skygeni') AS report;
RESET search_path;
SELECT results_eq($$SELECT drivers, checks FROM sp_out$$, $$VALUES (16::bigint, 15::bigint)$$,
	'drivers and data_quality work with an empty search_path');
SELECT is((SELECT report FROM sp_out), dealrisk.diagnose('skygeni'),
	'diagnose gives the same report with an empty search_path');

CREATE TEMPORARY TABLE tmp_deals AS SELECT * FROM public.skygeni;
SELECT results_eq($$SELECT * FROM dealrisk.funnel('tmp_deals')$$, $$SELECT * FROM dealrisk.funnel('skygeni')$$,
	'a temporary table is a source');

SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT results_eq(
	$$SELECT stage, reached, lost_here FROM dealrisk.funnel('skygeni')$$,
	$$VALUES ('Qualified'::text, 5000::bigint, 552::bigint), ('Demo', 4044, 565), ('Proposal', 3001, 558),
			 ('Negotiation', 1992, 531), ('Closed', 997, 531)$$,
	'funnel with parallel plans allowed');
SELECT results_eq($$SELECT sum(won)::bigint FROM dealrisk.win_rate_trend('skygeni')$$, $$VALUES (2263::bigint)$$,
	'trend with parallel plans allowed');
SELECT lives_ok($$SELECT dealrisk.diagnose('skygeni')$$, 'diagnose with parallel plans allowed');

SELECT * FROM finish();
ROLLBACK;
