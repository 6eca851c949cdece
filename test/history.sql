-- pgTAP: stage history (issue #14): the generator and its planted facts,
-- _km_quantiles against hand-counted Kaplan-Meier estimates, funnel(source,
-- history) on a hand-made history whose every number is counted below,
-- check_source(source, history) on a history with one of each problem,
-- stage_conversion_trend recovering exactly the planted collapse on several
-- seeds, and bad input.
\ir harness/pgtap_setup.psql
\ir harness/error_of.psql
SELECT plan(90);
SET dealrisk.as_of_date = '2024-12-31';

-- 1. Kaplan-Meier quantiles -------------------------------------------------
SELECT is(dealrisk._km_quantiles('{1,2,3,4}', '{t,t,t,t}', '{0.5,0.9}'), '{2,4}'::float8[],
	'every stay ended: the plain median and 90th percentile');
-- t=1 leaves 3/4; t=2 is censored; t=3: 1 of 2 at risk leaves, 3/8 remain
SELECT is(dealrisk._km_quantiles('{1,2,3,4}', '{t,f,t,f}', '{0.5,0.9}'), '{3,NULL}'::float8[],
	'unfinished stays count until last seen; a quantile the estimate never reaches is NULL');
SELECT is(dealrisk._km_quantiles('{2,2,5}', '{f,t,t}', '{0.3}'), '{2}'::float8[],
	'at a tie the ended stay leaves first: 1 of 3 at risk at day 2');
SELECT is(dealrisk._km_quantiles('{1,NaN,Infinity,-1,NULL,2}', '{t,t,t,t,t,t}', '{0.5,0.9}'), '{1,2}'::float8[],
	'NULL, NaN, infinite and negative lengths are left out');
SELECT is(dealrisk._km_quantiles('{}', '{}', '{0.5}'), '{NULL}'::float8[], 'no stays: NULL');
SELECT is(dealrisk._km_quantiles('{1}', '{t}', '{}'), '{}'::float8[], 'no probabilities: an empty array');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT dealrisk._km_quantiles('{1,2}', '{t}', '{0.5}')$$)), '2202E',
	'days and ended of different lengths: an error');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT dealrisk._km_quantiles('{1}', '{t}', '{1}')$$)), '22023',
	'a probability of 1: an error');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT dealrisk._km_quantiles('{1}', '{t}', '{NULL}')$$)), '22023',
	'a NULL probability: an error');

-- 2. A hand-made history ----------------------------------------------------
-- A won (every stage), B lost in Demo without a closing row, C open in
-- Demo, D moved back from Demo to Qualified and was lost, E skipped Demo
-- and won, H lost in Qualified, F has no history, G is no deal.
CREATE TABLE hand_deals (deal_id text, outcome text, closed_date date, created_date date);
INSERT INTO hand_deals VALUES
	('A', 'Won', '2024-03-01', '2024-01-01'), ('B', 'Lost', '2024-02-01', '2024-01-01'),
	('C', NULL, NULL, '2024-12-01'), ('D', 'Lost', '2024-05-01', '2024-04-01'),
	('E', 'Won', '2024-07-01', '2024-06-01'), ('F', 'Lost', '2024-02-01', '2024-01-01'),
	('H', 'Lost', '2024-08-31', '2024-08-01');
CREATE TABLE hand_history (deal_id text, stage text, entered_at date, note text);
INSERT INTO hand_history (deal_id, stage, entered_at) VALUES
	('A', 'Qualified', '2024-01-01'), ('A', 'Demo', '2024-01-11'), ('A', 'Proposal', '2024-01-31'),
	('A', 'Negotiation', '2024-02-10'), ('A', 'Closed Won', '2024-03-01'),
	('B', 'qualified ', '2024-01-01'), ('B', 'Demo', '2024-01-21'),
	('C', 'Qualified', '2024-12-01'), ('C', 'Demo', '2024-12-21'),
	('D', 'Qualified', '2024-04-01'), ('D', 'Demo', '2024-04-05'), ('D', 'Qualified', '2024-04-10'), ('D', 'Closed Lost', '2024-05-01'),
	('E', 'Qualified', '2024-06-01'), ('E', 'Proposal', '2024-06-11'), ('E', 'Negotiation', '2024-06-21'), ('E', 'Closed Won', '2024-07-01'),
	('H', 'Qualified', '2024-08-01'), ('H', 'Closed Lost', '2024-08-31'),
	('G', 'Qualified', '2024-01-01');

-- Qualified: stays 10 (A), 20 (B), 20 (C), 4 and 21 (D), 10 (E), 30 (H),
-- all ended: median 20, P90 30.  Demo: 20 (A), 11 (B, to its close), 10
-- (C, still going on 2024-12-31), 5 (D): Kaplan-Meier 3/4 after day 5, 3/8
-- after day 11, 0 after day 20.  Negotiation: 20 (A), 10 (E).
SELECT results_eq(
	$$SELECT stage, reached, moved_on, lost_here, open_here, round(conversion::numeric, 4), won, round(win_rate::numeric, 4),
	         median_days, p90_days
	  FROM dealrisk.funnel('hand_deals', history => 'hand_history')$$,
	$$VALUES ('Qualified', 6::bigint, 5::bigint, 1::bigint, 0::bigint, 0.8333, 2::bigint, 0.4000, 20::float8, 30::float8),
	         ('Demo', 4, 1, 2, 1, 0.3333, 1, 0.3333, 11, 20),
	         ('Proposal', 2, 2, 0, 0, 1.0000, 2, 1.0000, 10, 10),
	         ('Negotiation', 2, 2, 0, 0, 1.0000, 2, 1.0000, 10, 20),
	         ('Closed', 0, 0, 0, 0, NULL, 0, NULL, NULL, NULL)$$,
	'the funnel of the hand-made history, counted by hand: D lost at Demo (the furthest it got), E not counted in Demo');
SELECT is((SELECT row(round(ci_low::numeric, 4), round(ci_high::numeric, 4))::text
           FROM dealrisk.funnel('hand_deals', history => 'hand_history') WHERE stage = 'Demo'),
	(SELECT row(round(w.ci_low::numeric, 4), round(w.ci_high::numeric, 4))::text FROM dealrisk.wilson_interval(1, 3) w),
	'conversion''s interval: Wilson of moved on / decided (1 of 3)');
SELECT is((SELECT caveat FROM dealrisk.funnel('hand_deals', history => 'hand_history') WHERE stage = 'Qualified'),
	'1 of 7 deals have no stage history and are left out; only 6 decided deals: read the conversion with its interval',
	'the caveat names the deals left out and the small sample');
SELECT is((SELECT caveat FROM dealrisk.funnel('hand_deals', history => 'hand_history') WHERE stage = 'Closed'),
	'1 of 7 deals have no stage history and are left out; no deal of the history entered this stage',
	'a stage nobody entered says so');
-- the same history with timestamps, in another time zone, in a schema and
-- under names that need quoting
CREATE SCHEMA "odd ""schema""";
CREATE VIEW "odd ""schema"""."Stage History" AS
	SELECT deal_id, stage, entered_at::timestamptz AS entered_at FROM hand_history;
SET timezone = 'America/New_York';
SELECT results_eq(
	$$SELECT stage, reached, moved_on, lost_here, open_here, median_days, p90_days
	  FROM dealrisk.funnel('hand_deals', history => '"odd ""schema"""."Stage History"')$$,
	$$SELECT stage, reached, moved_on, lost_here, open_here, median_days, p90_days
	  FROM dealrisk.funnel('hand_deals', history => 'hand_history')$$,
	'entered_at as timestamptz across a DST change, under quoted names: the same funnel');
RESET timezone;

-- 3. check_source(source, history) ------------------------------------------
SELECT set_eq(
	$$SELECT "check" || ':' || severity FROM dealrisk.check_source('hand_deals', 'hand_history') WHERE "check" LIKE 'history%'$$,
	ARRAY['history_deals:warning', 'history_unknown_deals:warning', 'history_funnel:info', 'history_order:info', 'history_skips:info'],
	'the hand-made history: F without history, G without a deal, D moved back, E skipped a stage, and the verdict');
SELECT is((SELECT finding FROM dealrisk.check_source('hand_deals', 'hand_history') WHERE "check" = 'history_funnel'),
	'funnel(source, history) reads 6 of 7 deals (85.7%) through 4 stages: deals reaching, leaving and lost in each stage, conversions of decided steps and days in stage',
	'the verdict says what the funnel reads');
CREATE TABLE bad_history AS SELECT * FROM hand_history;
INSERT INTO bad_history (deal_id, stage, entered_at) VALUES
	('H', 'Discovery', '2024-08-02'), ('H', ' ', '2024-08-03'), ('A', 'Proposal', '2024-01-31'),
	('B', 'Proposal', '2024-03-01'), ('C', 'Negotiation', '2025-02-01'), ('C', 'Qualified', NULL),
	('E', 'Closed Lost', '2024-07-01');
SELECT set_eq(
	$$SELECT "check" || ':' || severity FROM dealrisk.check_source('hand_deals', 'bad_history') WHERE "check" LIKE 'history%'$$,
	ARRAY['history_stages:error', 'history_deals:warning', 'history_unknown_deals:warning', 'history_funnel:info',
	      'history_dates:warning', 'history_after_close:warning', 'history_future:warning', 'history_outcome:warning',
	      'history_duplicates:info', 'history_order:info', 'history_skips:info'],
	'one of each problem: each is found');
SELECT is((SELECT finding || ' | ' || hint FROM dealrisk.check_source('hand_deals', 'bad_history') WHERE "check" = 'history_stages'),
	'2 stage names of history public.bad_history are not in dealrisk.stages: ''(blank)'' (1 rows), ''Discovery'' (1 rows); funnel(source, history) refuses the history until each is placed | Add each in its place: INSERT INTO dealrisk.stages (stage, position, is_late) VALUES (''Discovery'', <position>, <is_late>); or map them to your stages in the history''s view; blank stages are left out there (WHERE stage <> '''').',
	'unknown stages are named with the INSERT that places them');
SELECT is((SELECT row(state, msg)::text FROM pg_temp.error_of($$SELECT * FROM dealrisk.funnel('hand_deals', history => 'bad_history')$$)),
	row('22023', '2 rows of history "public.bad_history" name 2 stages not in dealrisk.stages: ''(blank)'' (1 rows), ''Discovery'' (1 rows)')::text,
	'funnel() refuses a history with unknown stages, naming them');
CREATE TABLE label_history AS SELECT * FROM hand_history;
UPDATE label_history SET stage = 'Closed - Won' WHERE stage = 'Closed Won';
SELECT is((SELECT string_agg("check" || ': ' || finding || ' | ' || hint, '; ') FROM dealrisk.check_source('hand_deals', 'label_history')
           WHERE "check" IN ('history_outcome_labels', 'history_stages')),
	'history_outcome_labels: history public.label_history closes deals with labels dealrisk does not know: ''Closed - Won'' (2 rows); they read as stages, which dealrisk.stages lacks | '
	|| dealrisk._label_fix('dealrisk.won_labels', ARRAY['Closed - Won']),
	'a closing label dealrisk does not know: the SET that adds it to the won labels, not an INSERT of a stage');
SELECT matches((SELECT msg FROM pg_temp.error_of($$SELECT * FROM dealrisk.funnel('hand_deals', history => 'label_history')$$)),
	'name 1 stage not in dealrisk.stages: ''Closed - Won'' \(2 rows\)$', 'funnel() refuses it');
SET LOCAL dealrisk.won_labels = 'won,closed won,Closed - Won';
SELECT results_eq($$SELECT reached, moved_on, lost_here, median_days FROM dealrisk.funnel('hand_deals', history => 'label_history')$$,
	$$SELECT reached, moved_on, lost_here, median_days FROM dealrisk.funnel('hand_deals', history => 'hand_history')$$,
	'... and with the label added, reads it as before');
RESET dealrisk.won_labels;
SELECT is((SELECT "check" || ': ' || finding FROM dealrisk.check_source('hand_deals', 'hand_deals') WHERE "check" LIKE 'history%'),
	'history_columns: column "stage" is missing from source "public.hand_deals"',
	'a history without its columns: one error row, the source''s own checks still run');
SELECT is((SELECT finding FROM dealrisk.check_source('hand_deals', '"odd ""schema"""."Stage History"') WHERE "check" = 'history_funnel'),
	'funnel(source, history) reads 6 of 7 deals (85.7%) through 4 stages: deals reaching, leaving and lost in each stage, conversions of decided steps and days in stage',
	'a history under quoted names, with timestamps');
CREATE TABLE other_ids AS SELECT lower(deal_id) AS deal_id, stage, entered_at FROM hand_history;
SELECT is((SELECT severity || ': ' || finding FROM dealrisk.check_source('hand_deals', 'other_ids') WHERE "check" = 'history_deals'),
	'error: no row of history public.other_ids names a deal_id of public.hand_deals (20 history rows, 7 deals): the history has ''a'', the deals e.g. ''A''',
	'ids that do not match: an error showing one of each');

CREATE TABLE hand_deals2 AS SELECT *, 'rep_' || ascii(deal_id) % 2 AS sales_rep_id FROM hand_deals;
-- 4. Bad input and the other form -----------------------------------------------
CREATE TABLE dealrisk_sample AS SELECT * FROM dealrisk.sample_deals(2000, 1);
SELECT results_eq(
	$$SELECT stage, reached, moved_on, lost_here, open_here, won FROM dealrisk.funnel('hand_deals', '2024-04-01', 'hand_history')$$,
	$$VALUES ('Qualified', 4::bigint, 3::bigint, 1::bigint, 0::bigint, 1::bigint), ('Demo', 2, 0, 1, 1, 0), ('Proposal', 1, 1, 0, 0, 1),
	         ('Negotiation', 1, 1, 0, 0, 1), ('Closed', 0, 0, 0, 0, 0)$$,
	'since with a history: only the deals created since then (C, D, E, H)');
SELECT is((SELECT count(*) FROM dealrisk.funnel((SELECT 'dealrisk_sample'::regclass), '2024-01-01')
           WHERE moved_on IS NOT NULL OR conversion IS NOT NULL OR ci_low IS NOT NULL OR median_days IS NOT NULL), 0::bigint,
	'0.3.0''s call funnel(source, ''2024-01-01'') still resolves, and without a history the history''s columns are NULL');
CREATE TABLE text_dates AS SELECT deal_id, stage, entered_at::text AS entered_at FROM hand_history;
SELECT is((SELECT row(state, msg)::text FROM pg_temp.error_of($$SELECT * FROM dealrisk.funnel('hand_deals', history => 'text_dates')$$)),
	row('42804', 'column "entered_at" of history "public.text_dates" has type text, not date or timestamp')::text,
	'entered_at as text: an error naming the type');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM dealrisk.funnel('hand_deals', history => 'hand_deals')$$)), '42703',
	'a history without stage: an error');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM dealrisk.stage_conversion_trend('hand_deals', 'hand_history', 'fortnight')$$)), '22023',
	'an unknown period: an error');
CREATE TABLE inf_history AS SELECT * FROM hand_history;
INSERT INTO inf_history (deal_id, stage, entered_at) VALUES ('B', 'Proposal', 'infinity'), ('C', 'Proposal', '-infinity');
SELECT results_eq($$SELECT reached, median_days FROM dealrisk.funnel('hand_deals', history => 'inf_history')$$,
	$$SELECT reached, median_days FROM dealrisk.funnel('hand_deals', history => 'hand_history')$$,
	'infinite entry dates are left out, not counted');
SELECT is((SELECT finding FROM dealrisk.check_source('hand_deals', 'inf_history') WHERE "check" = 'history_dates'),
	'2 rows of history public.inf_history have no finite entered_at (e.g. deal ''B''): left out', 'and check_source says so');

-- 5. The generator ------------------------------------------------------------
CREATE TABLE p AS SELECT * FROM dealrisk.sample_pipeline(3000, 5);
CREATE TABLE ph AS SELECT * FROM dealrisk.sample_stage_history(3000, 5);
SELECT is((SELECT md5(string_agg(x::text, ',' ORDER BY x.deal_id)) FROM dealrisk.sample_pipeline(3000, 5) x),
	(SELECT md5(string_agg(x::text, ',' ORDER BY x.deal_id)) FROM p x), 'the same (n, seed): the same deals');
SELECT is((SELECT count(*) FROM p x JOIN ph h USING (deal_id) WHERE h.stage = 'Qualified' AND h.entered_at <> x.created_date), 0::bigint,
	'every deal enters Qualified when it is created');
SELECT is((SELECT count(*) FROM p x WHERE x.stage_entered_date IS DISTINCT FROM
              (SELECT max(h.entered_at) FROM ph h WHERE h.deal_id = x.deal_id AND h.stage = x.deal_stage)), 0::bigint,
	'deal_stage and stage_entered_date are the last stage of the history and its entry');
SELECT is((SELECT count(*) FROM p x WHERE (x.outcome IS NOT NULL) <> EXISTS
              (SELECT 1 FROM ph h WHERE h.deal_id = x.deal_id AND h.stage = 'Closed ' || x.final_outcome AND h.entered_at = x.closed_date)),
	0::bigint, 'a deal has a closing row on its closed_date exactly when it is closed, matching its outcome');
SELECT is((SELECT count(*) FROM p x WHERE x.outcome IS DISTINCT FROM x.final_outcome AND x.outcome IS NOT NULL
              OR x.final_closed_date <= '2024-12-31' AND x.outcome IS NULL), 0::bigint,
	'final_outcome is the outcome of every closed deal; open deals close after 2024-12-31');
SELECT is((SELECT max(entered_at) FROM ph), '2024-12-31'::date, 'no entry after 2024-12-31');
SELECT is((SELECT row(state, msg)::text FROM pg_temp.error_of($$SELECT count(*) FROM dealrisk.sample_pipeline(9223372036854775807, 1)$$)),
	row('22023', 'number of sample deals must be at most 1,000,000,000, got 9223372036854775807')::text,
	'a number of deals that would fill the disk: an error before a row is made');
SELECT is((SELECT count(*) FROM dealrisk.check_source('p', 'ph') WHERE "check" LIKE 'history%' AND severity <> 'info'), 0::bigint,
	'the generated history passes check_source');
SELECT results_eq($$SELECT reached, moved_on + lost_here + open_here FROM dealrisk.funnel('p', history => 'ph')$$,
	$$SELECT reached, reached FROM dealrisk.funnel('p', history => 'ph')$$,
	'every deal that reached a stage moved on, was lost there or is still there');
-- rep_4 pushes advances into the last three days of a quarter
SELECT ok((SELECT avg((h.entered_at >= (date_trunc('quarter', h.entered_at) + interval '3 months' - interval '3 days')::date)::int)
                  FILTER (WHERE x.sales_rep_id = 'rep_4')
           > 3 * avg((h.entered_at >= (date_trunc('quarter', h.entered_at) + interval '3 months' - interval '3 days')::date)::int)
                  FILTER (WHERE x.sales_rep_id <> 'rep_4')
           FROM p x JOIN ph h USING (deal_id) WHERE h.stage IN ('Proposal', 'Negotiation')),
	'planted: rep_4 enters Proposal and Negotiation in the last three days of a quarter three times as often as the others');
-- a stalled stay (three times as long) loses more: open deals aside, the
-- deals whose Demo stay was among its longest tenth moved on far less
SELECT ok((SELECT avg((s.later > 2 OR s.won)::int) FILTER (WHERE s.days > 40) < 0.7 * avg((s.later > 2 OR s.won)::int) FILTER (WHERE s.days <= 40)
           FROM (SELECT x.*, max(x.position) OVER (PARTITION BY x.deal_id) AS later
                 FROM dealrisk._stage_stays('p', 'ph') x) s
           WHERE s.position = 2 AND s.won IS NOT NULL),
	'planted: deals that stayed long in Demo moved on far less often');

-- 6. The planted collapse, and nothing else, on four seeds -------------------
CREATE FUNCTION pg_temp.significant_steps(seed int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE r text[];
BEGIN
	DROP TABLE IF EXISTS pd, phd;
	CREATE TEMP TABLE pd AS SELECT * FROM dealrisk.sample_pipeline(5000, seed);
	CREATE TEMP TABLE phd AS SELECT * FROM dealrisk.sample_stage_history(5000, seed);
	SELECT array_agg(from_stage || ' -> ' || to_stage || ' ' || period_start || CASE WHEN change < 0 THEN ' fell' ELSE ' rose' END
	                 ORDER BY period_start)
	INTO r FROM dealrisk.stage_conversion_trend('pd', 'phd') WHERE significant;
	RETURN r;
END $$;
SELECT is(pg_temp.significant_steps(s),
	ARRAY['Demo -> Proposal 2024-04-01 fell', 'Demo -> Proposal 2024-07-01 rose'],
	format('seed %s: only Demo -> Proposal changed, falling for deals entering Demo in 2024-Q2 and back after', s))
FROM unnest(ARRAY[2, 3, 42, 2024]) s;
-- the funnel recovers the planted chances of moving on: Qualified 0.85,
-- Proposal and Negotiation 0.80, each times 0.8633 on average (stalls
-- 0.8 + 0.2 x 0.45, Outbound 0.8 + 0.2 x 0.85); rep_4's pushes take about a
-- point off the two late steps, within their intervals.  (Demo's is a mix
-- of quarters, checked by the trend above.)
CREATE FUNCTION pg_temp.funnel_planted(seed int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
	DROP TABLE IF EXISTS fd, fhd;
	CREATE TEMP TABLE fd AS SELECT * FROM dealrisk.sample_pipeline(5000, seed);
	CREATE TEMP TABLE fhd AS SELECT * FROM dealrisk.sample_stage_history(5000, seed);
	SELECT string_agg(f.stage || CASE WHEN p.planted BETWEEN f.ci_low AND f.ci_high THEN ' ok' ELSE ' ' || round(f.conversion::numeric, 3) END,
	                  ', ' ORDER BY f."position")
	INTO r
	FROM dealrisk.funnel('fd', history => 'fhd') f
	JOIN (VALUES ('Qualified', 0.85 * 0.89 * 0.97), ('Proposal', 0.80 * 0.89 * 0.97), ('Negotiation', 0.80 * 0.89 * 0.97)) p(stage, planted)
	  ON p.stage = f.stage;
	RETURN r;
END $$;
SELECT is(pg_temp.funnel_planted(s), 'Qualified ok, Proposal ok, Negotiation ok',
	format('seed %s: each step''s conversion interval holds its planted chance', s))
FROM unnest(ARRAY[2, 3, 42, 2024]) s;
SELECT is((SELECT row(entered, converted, undecided, is_partial, change IS NULL, significant)::text
           FROM dealrisk.stage_conversion_trend('pd', 'phd') WHERE from_stage = 'Demo' AND period_start = '2024-10-01'),
	(SELECT row(count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM phd h2 WHERE h2.deal_id = h.deal_id AND h2.stage IN ('Proposal', 'Negotiation', 'Closed Won'))),
	            count(*) FILTER (WHERE x.outcome IS NULL AND x.deal_stage = 'Demo'), true, true, false)::text
	 FROM phd h JOIN pd x USING (deal_id) WHERE h.stage = 'Demo' AND h.entered_at >= '2024-10-01'),
	'the last quarter: its undecided deals are counted and it is not compared');

-- 7. Stage velocity -----------------------------------------------------------
SELECT is((SELECT row(v.*)::text FROM dealrisk.stage_velocity('hand_deals', 'hand_history') v),
	row('C', 'Demo', '2024-12-21 00:00:00'::timestamp, 10::float8, 20::float8, 20::float8, 1::bigint, NULL::boolean,
	    'in Demo for 10 days; too few won deals passed through Demo (1) to say what is slow')::text,
	'the one open deal: 10 days in Demo, against the one won deal''s 20; too few to call it stalled');
-- planted: a stall triples the stay and makes a loss likelier.  On 20,000
-- deals (seed 7: 300 of 1,916 open deals flagged, 93% of them planted
-- stalls; they went on to win 21.7% against 32.4%)
CREATE TEMP TABLE big_p AS SELECT * FROM dealrisk.sample_pipeline(20000, 7);
CREATE TEMP TABLE big_h AS SELECT * FROM dealrisk.sample_stage_history(20000, 7);
CREATE TEMP TABLE big_v AS SELECT v.*, x.final_outcome, w.stalled[dealrisk.stage_position(v.stage)] AS planted
	FROM dealrisk.stage_velocity('big_p', 'big_h') v JOIN big_p x USING (deal_id)
	JOIN dealrisk._sample_walk(20000, 7) w USING (deal_id);
SELECT ok((SELECT avg(planted::int) FILTER (WHERE is_stalled) > 0.8 FROM big_v),
	'planted: the deals flagged as stalled are the planted stalls (more than 80% of them)');
SELECT ok((SELECT avg((final_outcome = 'Won')::int) FILTER (WHERE is_stalled)
                  < 0.8 * avg((final_outcome = 'Won')::int) FILTER (WHERE NOT is_stalled) FROM big_v),
	'planted: open deals past the 90th percentile of won deals'' stays went on to win less often');
SELECT is((SELECT count(*) FROM dealrisk.stage_velocity('pd', 'phd')), (SELECT count(*) FROM pd WHERE outcome IS NULL),
	'every open deal has a row');
SELECT ok((SELECT bool_and(v.reason = format('in %s for %s days; 90%% of the deals that won left it within %s',
                                             v.stage, round(v.days_in_stage::numeric), v.won_p90_days))
           FROM dealrisk.stage_velocity('pd', 'phd') v WHERE v.is_stalled),
	'a stalled deal''s reason names its days and the won deals'' 90th percentile');

-- 8. Pipeline gaming ----------------------------------------------------------
-- planted: rep_4 pushes advances into the last days of a quarter, and its
-- pushed deals that are lost are lost soon after; nobody else does anything
CREATE FUNCTION pg_temp.gaming(n int, seed int) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE r text[];
BEGIN
	DROP TABLE IF EXISTS gd, ghd;
	CREATE TEMP TABLE gd AS SELECT * FROM dealrisk.sample_pipeline(n, seed);
	CREATE TEMP TABLE ghd AS SELECT * FROM dealrisk.sample_stage_history(n, seed);
	SELECT coalesce(array_agg(sales_rep_id || ' ' || signal ORDER BY sales_rep_id, signal), '{}') INTO r
	FROM dealrisk.pipeline_gaming('gd', 'ghd');
	RETURN r;
END $$;
SELECT ok(pg_temp.gaming(5000, s) @> ARRAY['rep_4 no_activity_advance', 'rep_4 quarter_end_push']
          AND pg_temp.gaming(5000, s) <@ ARRAY['rep_4 quarter_end_push', 'rep_4 late_stage_fast_loss', 'rep_4 no_activity_advance'],
	format('seed %s: rep_4''s quarter-end push and silent advances are found, and nothing but what was planted', s))
FROM unnest(ARRAY[2, 3, 42]) s;
SELECT is(pg_temp.gaming(20000, 7), ARRAY['rep_4 late_stage_fast_loss', 'rep_4 no_activity_advance', 'rep_4 quarter_end_push'],
	'20,000 deals: the three planted signals of rep_4, and nothing else');
SELECT matches((SELECT sentence FROM dealrisk.pipeline_gaming('gd', 'ghd') WHERE signal = 'quarter_end_push'),
	'^rep_4 made [0-9]+ of [0-9]+ stage advances \([0-9.]+%\) in the last 5 days of a quarter, the other reps [0-9.]+% \(about 5% if spread evenly\) \(q < 0\.001\)$',
	'the push in a sentence');
SELECT is_empty($$SELECT * FROM dealrisk.pipeline_gaming('hand_deals2', 'hand_history')$$,
	'a handful of moves: nobody is tested, nothing is listed');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT * FROM dealrisk.pipeline_gaming('hand_deals', 'hand_history')$$)), '42703',
	'a source without sales_rep_id: an error');

-- 9. diagnose(source, history) ------------------------------------------------
CREATE TEMP TABLE dg AS SELECT * FROM dealrisk.sample_pipeline(5000, 42);
CREATE TEMP TABLE dgh AS SELECT * FROM dealrisk.sample_stage_history(5000, 42);
-- (and the funnel from deal_stage, whose won deals sit at Negotiation with
-- Closed unused: the last step is the win, not 0% to an empty Closed)
SELECT is((SELECT round(conversion_to_next::numeric, 4) FROM dealrisk.funnel('dg') WHERE stage = 'Negotiation'),
	(SELECT round((count(*) FILTER (WHERE outcome = 'Won'))::numeric / count(*), 4) FROM dg WHERE deal_stage = 'Negotiation' AND outcome IS NOT NULL),
	'funnel(source): from the last stage any deal reached, conversion is to the win');
SELECT matches(dealrisk.diagnose('dg', 'dgh'),
	'\nSteps: Demo -> Proposal fell from [0-9.]+% to [0-9.]+% for the deals that reached Demo in Q2-2024 \(q < 0\.001\); Demo -> Proposal rose from [0-9.]+% to [0-9.]+% for the deals that reached Demo in Q3-2024 \(q < 0\.001\); the other steps did not change \([0-9]+ comparisons',
	'diagnose() with the history names the planted collapse, and says the other steps did not change');
SELECT matches(dealrisk.diagnose('dg', 'dgh'),
	'\nPipeline gaming \(a reason to look at the deals, not a verdict\): rep_4 made [0-9]+ of [0-9]+ stage advances',
	'... and the rep who pushes');
SELECT matches(dealrisk.diagnose('dg', 'dgh'), '\nStalls: [0-9]+ of 441 open deals have been in their stage longer than 90% of the won deals took',
	'... and the stalled open deals');
SELECT ok(dealrisk.diagnose('dg', 'bad_history') ~ '\nStage history: not read: 2 rows of history "public.bad_history" name 2 stages not in dealrisk.stages'
          AND dealrisk.diagnose('dg', 'bad_history') ~ '\nWin rate: ',
	'a history with unknown stages: one line says why, the rest of the report runs');
SELECT ok(dealrisk.diagnose('dg') !~ 'stage history' AND dealrisk.diagnose('dg') ~ '\nFunnel: ',
	'diagnose(source) as before: the funnel from deal_stage');
SELECT matches(dealrisk.diagnose('hand_deals', 'hand_history'), '\nPipeline gaming: not available: the source has no sales_rep_id column\.',
	'no sales_rep_id: the gaming line says so');

-- (what the security review of the history functions found)
-- an open deal with an expected closed_date is still open: its stay goes on
CREATE TEMP TABLE dg_expected AS SELECT * FROM dg;
UPDATE dg_expected SET closed_date = '2025-02-15' WHERE outcome IS NULL;
SELECT results_eq($$SELECT * FROM dealrisk.stage_velocity('dg_expected', 'dgh')$$,
	$$SELECT * FROM dealrisk.stage_velocity('dg', 'dgh')$$,
	'an open deal''s expected closed_date does not end its stay');
-- a deal_id twice in the source, and every history row twice: the same funnel
CREATE TEMP TABLE dg_dup AS SELECT * FROM dg UNION ALL SELECT * FROM dg WHERE deal_id < 'P0001000';
CREATE TEMP TABLE dgh_dup AS SELECT * FROM dgh UNION ALL SELECT * FROM dgh;
SELECT results_eq($$SELECT * FROM dealrisk.funnel('dg_dup', history => 'dgh_dup')$$,
	$$SELECT * FROM dealrisk.funnel('dg', history => 'dgh')$$,
	'duplicated deals and history rows: counted once');
SELECT is((SELECT count(*) FROM dealrisk.check_source('dg_dup', 'dgh') WHERE "check" IN ('history_deals', 'history_duplicates')), 0::bigint,
	'... and check_source does not call the duplicated deals history-less, nor the history duplicated');
-- from the last stage the history's deals entered, the next step is the win
SELECT is((SELECT round(conversion_to_next::numeric, 4) FROM dealrisk.funnel('dg', history => 'dgh') WHERE stage = 'Negotiation'),
	(SELECT round(won::numeric / reached, 4) FROM dealrisk.funnel('dg', history => 'dgh') WHERE stage = 'Negotiation'),
	'funnel(source, history): conversion to the next stage from the last one entered is to the win, not 0');
-- an entry after the as-of date has not happened yet
CREATE TEMP TABLE dgh_future AS SELECT * FROM dgh UNION ALL
	SELECT deal_id, 'Negotiation', DATE '2025-03-01' FROM dg WHERE outcome IS NULL AND deal_stage = 'Proposal';
SELECT results_eq($$SELECT * FROM dealrisk.funnel('dg', history => 'dgh_future')$$,
	$$SELECT * FROM dealrisk.funnel('dg', history => 'dgh')$$,
	'entries after the as-of date are left out of the funnel (check_source reports them)');
-- a history that names none of the source's deals
CREATE TEMP TABLE dgh_lower AS SELECT lower(deal_id) AS deal_id, stage, entered_at FROM dgh;
SELECT matches(dealrisk.diagnose('dg', 'dgh_lower'), '\nStage history: not read: no row of dgh_lower names a deal of the source',
	'diagnose() with a history of no deal of the source says so, and draws no conclusion from it');

-- two stage names that match as one would count a stay twice
SELECT throws_ok($$INSERT INTO dealrisk.stages VALUES ('DEMO', 7, false)$$, '23505',
	'stages ''DEMO'', ''Demo'' are one stage: names are matched without case or surrounding blanks',
	'dealrisk.stages refuses a second name for the same stage');

-- 10. Point-in-time training ---------------------------------------------------
SET LOCAL client_min_messages = warning;
SELECT dealrisk.train('dg', history => 'dgh', name => 'pit_t', method => 'logistic') AS pit_id \gset
SELECT dealrisk.train('dg', name => 'final_t', method => 'logistic') AS final_id \gset
SELECT is((SELECT source FROM dealrisk.models WHERE id = :pit_id), 'dg_point_in_time_' || 'dg'::regclass::oid,
	'a point-in-time model names what it was trained on');
SELECT ('pg_temp.dg_point_in_time_' || 'dg'::regclass::oid) AS snaps \gset
SELECT ok((SELECT feature_spec->'features' @> '[{"name": "deal_stage"}]' AND NOT feature_spec::text LIKE '%open_knots%'
           FROM dealrisk.models WHERE id = :pit_id),
	'its stage (then) is a feature, and it has no survivor curves: an open deal''s age is scored in the bins');
SELECT is((SELECT count(*) FROM :snaps s
           WHERE s.dealrisk_as_of <> (date_trunc('month', s.dealrisk_as_of) + interval '1 month' - interval '1 day')::date
              OR s.dealrisk_as_of < s.created_date OR s.dealrisk_as_of >= s.closed_date), 0::bigint,
	'every snapshot is a month end at which its deal was open');
SELECT is((SELECT count(*) FROM :snaps s
           WHERE s.deal_stage IS DISTINCT FROM (SELECT h.stage FROM dgh h WHERE h.deal_id = split_part(s.deal_id, '@', 1)
                                                 AND h.entered_at <= s.dealrisk_as_of AND h.stage NOT LIKE 'Closed%'
                                                 ORDER BY h.entered_at DESC LIMIT 1)), 0::bigint,
	'... and holds the stage the history says the deal was in that day');
SELECT is((SELECT count(*) FROM :snaps s JOIN dg d ON d.deal_id = split_part(s.deal_id, '@', 1)
           WHERE d.outcome IS DISTINCT FROM s.outcome OR d.outcome IS NULL), 0::bigint,
	'... with its final outcome, and only closed deals');
SELECT ok((SELECT NOT (metrics->'preflight')::text LIKE '%stage_semantics%' FROM dealrisk.models WHERE id = :pit_id),
	'the preflight does not read the snapshots'' stages as final stages');
-- on the deals open on 2024-12-31, against how they ended
CREATE TEMP TABLE pit_auc AS
	SELECT m.name, d.final_outcome = 'Won' AS won, dealrisk.deal_risk(d.*, m.name) AS risk
	FROM dg d CROSS JOIN (VALUES ('pit_t'), ('final_t')) m(name) WHERE d.outcome IS NULL;
CREATE FUNCTION pg_temp.auc(m text) RETURNS float8 LANGUAGE sql AS $$
	SELECT avg(CASE WHEN a.risk < b.risk THEN 1 WHEN a.risk = b.risk THEN 0.5 ELSE 0 END)
	FROM pit_auc a JOIN pit_auc b ON a.name = b.name WHERE a.name = m AND a.won AND NOT b.won $$;
SELECT ok(pg_temp.auc('pit_t') > 0.62 AND pg_temp.auc('pit_t') > pg_temp.auc('final_t') + 0.08,
	format('the point-in-time model ranks the open deals by how they ended (AUC %s), the final-state one barely (%s)',
	       round(pg_temp.auc('pit_t')::numeric, 3), round(pg_temp.auc('final_t')::numeric, 3)));
-- (a source column named like the snapshot builder's own: no clash)
CREATE TEMP TABLE dg_cols AS SELECT *, 1 AS dealrisk_pit_t, 'x' AS dealrisk_pit_id FROM dg;
SELECT ok(dealrisk.train('dg_cols', history => 'dgh', name => 'pit_cols', method => 'logistic', activate => false) > 0,
	'a source with columns named like the snapshot builder''s trains');
SELECT is((SELECT state FROM pg_temp.error_of($$SELECT dealrisk.train('dg', history => 'bad_history')$$)), '22023',
	'a history with unknown stages: an error before anything is trained');
-- a stall feeds the score and its reason (and so the alerts)
SELECT matches((SELECT e.factor || ': ' || e.reason FROM dg d, dealrisk.deal_risk_explain(d.*, 'pit_t') e
                WHERE d.deal_id = (SELECT v.deal_id FROM dealrisk.stage_velocity('dg', 'dgh') v LIMIT 1) LIMIT 1),
	'^stage_time: Stuck in ''[A-Za-z]+'' for [0-9]+ days \(typical [0-9]+\)$',
	'the most overdue open deal: its top reason under the point-in-time model is its stall');
SELECT matches((SELECT e.reason FROM dg d, dealrisk.deal_risk_explain(d.*, 'pit_t') e
                WHERE d.outcome IS NULL AND e.factor = 'rep_win_rate' LIMIT 1),
	'^Rep rep_[0-9]+: [0-9]+% of its deals open at a month end went on to win \(team [0-9]+%, [0-9,]+ month-end snapshots\)$',
	'the rep''s rate says it counts month-end snapshots, not closed deals');
SELECT is((SELECT e.state FROM dealrisk.models m,
               pg_temp.error_of(format($$SELECT dealrisk.import_model(%L::jsonb, 'bad_unit')$$,
                   jsonb_build_object('format', 'dealrisk-model/1', 'coefficients', m.coefficients,
                                      'spec', jsonb_set(m.feature_spec, '{features,0,unit}', '"weeks"')))) e
           WHERE m.id = :pit_id), '22023',
	'a feature unit other than month_end: an invalid model');

SELECT * FROM finish();
ROLLBACK;
