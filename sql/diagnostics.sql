-- Diagnostics functions on the SkyGeni data: trend, drivers, funnel, cycle
-- trend, data quality and the report, with floats rounded for stable output.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dealrisk;
RESET client_min_messages;
\set QUIET 1
\i test/fixtures/skygeni.sql
\set QUIET 0
\set SHOW_CONTEXT never
SET DateStyle = 'ISO, YMD';

-- quarterly win rate: Q1-2024 46.7% -> Q2-2024 43.8%, within noise; the
-- data end on 2024-07-20, so Q3-2024 is partial
SELECT period_start, closed, won, round(win_rate::numeric, 4) AS win_rate,
       round(ci_low::numeric, 4) AS ci_low, round(ci_high::numeric, 4) AS ci_high,
       round(change::numeric, 4) AS change, round(p_value::numeric, 4) AS p_value, is_partial
FROM dealrisk.win_rate_trend('skygeni');

SELECT period_start, closed, won, round(win_rate::numeric, 4) AS win_rate,
       round(change::numeric, 4) AS change, round(p_value::numeric, 4) AS p_value, is_partial
FROM dealrisk.win_rate_trend('skygeni', 'year');

SELECT count(*) AS months, sum(closed) AS closed,
       count(*) FILTER (WHERE p_value < 0.05) AS significant_changes,
       string_agg(period_start::text, ', ') FILTER (WHERE is_partial) AS partial
FROM dealrisk.win_rate_trend('skygeni', 'month');

-- drivers of the change, default windows (Q2-2024 vs Q1-2024)
SELECT segment, baseline_closed AS b_n, round(baseline_win_rate::numeric, 4) AS b_rate,
       round(baseline_share::numeric, 4) AS b_share, recent_closed AS r_n,
       round(recent_win_rate::numeric, 4) AS r_rate, round(recent_share::numeric, 4) AS r_share,
       round(rate_effect::numeric, 4) AS rate_eff, round(mix_effect::numeric, 4) AS mix_eff,
       round(contribution::numeric, 4) AS contrib, round(p_value::numeric, 4) AS p_value,
       round(q_value::numeric, 4) AS q_value, significant
FROM dealrisk.win_rate_drivers('skygeni', 'industry');

SELECT segment, baseline_closed AS b_n, round(baseline_win_rate::numeric, 4) AS b_rate,
       recent_closed AS r_n, round(recent_win_rate::numeric, 4) AS r_rate,
       round(rate_effect::numeric, 4) AS rate_eff, round(mix_effect::numeric, 4) AS mix_eff,
       round(contribution::numeric, 4) AS contrib, round(p_value::numeric, 4) AS p_value,
       round(q_value::numeric, 4) AS q_value, significant
FROM dealrisk.win_rate_drivers('skygeni', 'lead_source');

SELECT segment, baseline_closed AS b_n, recent_closed AS r_n,
       round(recent_win_rate::numeric, 4) AS r_rate, round(contribution::numeric, 4) AS contrib,
       round(p_value::numeric, 4) AS p_value, round(q_value::numeric, 4) AS q_value
FROM dealrisk.win_rate_drivers('skygeni', 'region,lead_source')
LIMIT 5;

-- contributions add up to the overall change, for every dimension
SELECT d.dim, count(*) AS segments, round(sum(c.contribution)::numeric, 10) AS sum_contrib,
       round((279.0 / 637 - 462.0 / 990), 10) AS overall_change,
       count(*) FILTER (WHERE c.p_value < 0.05) AS p_below_05,
       count(*) FILTER (WHERE c.significant) AS significant
FROM unnest(ARRAY['industry', 'region', 'lead_source', 'product_type', 'sales_rep_id',
                  'region,lead_source']) AS d(dim),
     LATERAL dealrisk.win_rate_drivers('skygeni', d.dim) c
GROUP BY d.dim ORDER BY d.dim;

-- q-values: Benjamini-Hochberg over the segments of one call.  125 rep x
-- industry segments, Q1-2024 against Q4-2023: 8 have p < 0.05, none q < 0.05
SELECT count(*) AS segments, count(p_value) AS tested,
       count(*) FILTER (WHERE p_value < 0.05) AS p_below_05,
       count(*) FILTER (WHERE significant) AS significant, round(min(q_value)::numeric, 4) AS min_q
FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id,industry', '[2024-01-01,2024-04-01)', '[2023-10-01,2024-01-01)');
-- Q4-2023 against Q3-2023 by rep: three reps with p < 0.05, one with q < 0.05
SELECT segment, baseline_closed AS b_n, recent_closed AS r_n,
       round(baseline_win_rate::numeric, 4) AS b_rate, round(recent_win_rate::numeric, 4) AS r_rate,
       round(p_value::numeric, 4) AS p_value, round(q_value::numeric, 4) AS q_value, significant
FROM dealrisk.win_rate_drivers('skygeni', 'sales_rep_id', '[2023-10-01,2024-01-01)', '[2023-07-01,2023-10-01)')
WHERE p_value < 0.05 ORDER BY p_value;
-- by hand: sorted p 0.005, 0.01, 0.03, 0.04 (m = 4) -> p m / rank 0.02, 0.02,
-- 0.04, 0.04 -> running minimum from the top; NULL is no test
SELECT o, p, round(q::numeric, 12) AS q
FROM unnest('{0.01,0.04,0.03,0.005,NULL}'::float8[],
            dealrisk.bh_adjust('{0.01,0.04,0.03,0.005,NULL}')) WITH ORDINALITY AS u(p, q, o);

-- explicit windows: H2-2023 against H1-2023
SELECT segment, baseline_closed AS b_n, recent_closed AS r_n,
       round(baseline_win_rate::numeric, 4) AS b_rate, round(recent_win_rate::numeric, 4) AS r_rate,
       round(contribution::numeric, 4) AS contrib, round(p_value::numeric, 4) AS p_value
FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2023-07-01,2024-01-01)', '[2023-01-01,2023-07-01)');

-- funnel
SELECT stage, "position", is_late, reached, won, lost_here, open_here,
       round(conversion_to_next::numeric, 4) AS conv_next,
       round(cumulative_conversion::numeric, 4) AS cumulative,
       round(win_rate::numeric, 4) AS win_rate
FROM dealrisk.funnel('skygeni');

SELECT stage, reached, won, lost_here, round(cumulative_conversion::numeric, 4) AS cumulative
FROM dealrisk.funnel('skygeni', '2024-01-01');

-- sales cycle
SELECT period_start, closed, median_days, p75_days, round(mean_days::numeric, 2) AS mean_days,
       change_median, round(p_value::numeric, 4) AS p_value, significant, is_partial
FROM dealrisk.cycle_trend('skygeni');

-- data quality: clean SkyGeni data, then planted problems
SELECT * FROM dealrisk.data_quality('skygeni');

CREATE TABLE dq (LIKE skygeni);
ALTER TABLE dq ALTER deal_id DROP NOT NULL, ALTER created_date DROP NOT NULL;
INSERT INTO dq SELECT * FROM skygeni WHERE deal_id <= 'D00010';
INSERT INTO dq (deal_id, created_date, closed_date, deal_stage, deal_amount, sales_cycle_days, outcome) VALUES
    ('D00001', '2024-01-01', '2024-01-11', 'Demo', 100, 10, 'Won'),
    (NULL, '2024-01-01', '2024-01-11', 'Demo', 100, 10, 'Won'),
    ('X1', '2024-02-01', '2024-01-11', 'Demo', 'NaN', NULL, 'Lost'),
    ('X2', '2024-01-01', NULL, 'Discovery', -10, 5, 'Closed Won'),
    ('X3', '2024-01-01', '2024-03-01', NULL, NULL, 3, 'Maybe');
SELECT * FROM dealrisk.data_quality('dq');

-- the report
\pset format unaligned
\pset tuples_only on
SELECT dealrisk.diagnose('skygeni');
SELECT dealrisk.diagnose('dq');

-- sources without some columns: each section that needs one says so
CREATE TABLE nodates AS
    SELECT deal_id, outcome, industry, region, lead_source, deal_amount FROM skygeni;
CREATE VIEW nostage AS
    SELECT deal_id, created_date, closed_date, sales_rep_id, industry, region, product_type,
           lead_source, deal_amount, sales_cycle_days, outcome
    FROM skygeni;
CREATE VIEW norep AS
    SELECT deal_id, created_date, closed_date, industry, region, product_type, lead_source,
           deal_stage, deal_amount, sales_cycle_days, outcome
    FROM skygeni;
CREATE VIEW nocreated AS
    SELECT deal_id, closed_date, industry, sales_cycle_days, outcome FROM skygeni;
SELECT dealrisk.diagnose('nodates');
SELECT dealrisk.diagnose('nostage');
SELECT dealrisk.diagnose('norep');
SELECT dealrisk.diagnose('nocreated');
\pset format aligned
\pset tuples_only off

-- the functions a section calls still raise on a missing column
SELECT * FROM dealrisk.win_rate_trend('nodates');
SELECT * FROM dealrisk.win_rate_drivers('nodates', 'region');
CREATE VIEW nocycle AS SELECT deal_id, closed_date, outcome FROM skygeni;
SELECT * FROM dealrisk.cycle_trend('nocycle');
SELECT period_start, closed, median_days, is_partial FROM dealrisk.cycle_trend('nocreated') WHERE period_start >= '2024-01-01';

-- errors name the offending value
SELECT * FROM dealrisk.win_rate_trend('skygeni', 'fortnight');
SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'regio');
SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2025-01-01,2025-04-01)');
SELECT * FROM dealrisk.win_rate_drivers('skygeni', 'region', '[2024-04-01,2024-07-01)', '[2024-06-01,2024-09-01)');
CREATE VIEW no_outcome AS SELECT deal_id, closed_date FROM skygeni;
SELECT * FROM dealrisk.win_rate_trend('no_outcome');
SELECT dealrisk.diagnose('no_outcome');

DROP VIEW no_outcome, nostage, norep, nocreated, nocycle;
DROP TABLE nodates;
DROP TABLE dq;
DROP TABLE skygeni;
RESET DateStyle;
