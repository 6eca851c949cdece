-- Win-rate, interval, funnel and late-stage aggregates on the SkyGeni data,
-- serial and in a forced parallel plan.
CREATE EXTENSION IF NOT EXISTS dealrisk;
\set ECHO none
\set QUIET 1
\i test/fixtures/skygeni.sql
\set QUIET 0
\set ECHO all

-- 2,263 won of 5,000 closed deals
SELECT count(*) AS deals,
       count(*) FILTER (WHERE dealrisk.is_won(outcome)) AS won,
       round(dealrisk.win_rate(dealrisk.is_won(outcome))::numeric, 4) AS win_rate
FROM skygeni;

-- Q1-2024 46.7% vs Q2-2024 43.8%
SELECT date_trunc('quarter', closed_date)::date AS quarter,
       count(*) AS closed,
       round(dealrisk.win_rate(outcome = 'Won')::numeric, 3) AS win_rate
FROM skygeni
WHERE closed_date >= '2024-01-01' AND closed_date < '2024-07-01'
GROUP BY 1 ORDER BY 1;

-- value-weighted and with a Wilson interval
SELECT round(weighted::numeric, 4) AS value_weighted,
       round((ci).rate::numeric, 4) AS rate, round((ci).ci_low::numeric, 4) AS ci_low,
       round((ci).ci_high::numeric, 4) AS ci_high, (ci).won, (ci).closed, (ci).level
FROM (SELECT dealrisk.win_rate_ci(dealrisk.is_won(outcome)) AS ci,
             dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount) AS weighted
      FROM skygeni) s;

SELECT round((dealrisk.win_rate_ci(outcome = 'Won', 0.99)).ci_low::numeric, 4) AS ci99_low,
       round((dealrisk.win_rate_ci(outcome = 'Won', 0.99)).ci_high::numeric, 4) AS ci99_high
FROM skygeni;

-- per-industry rates with intervals
SELECT industry, (ci).closed, (ci).won, round((ci).rate::numeric, 3) AS rate,
       round((ci).ci_low::numeric, 3) AS lo, round((ci).ci_high::numeric, 3) AS hi
FROM (SELECT industry, dealrisk.win_rate_ci(dealrisk.is_won(outcome)) AS ci
      FROM skygeni GROUP BY industry) s
ORDER BY industry;

-- funnel and late-stage loss ratio
SELECT f.*
FROM (SELECT dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)) AS j FROM skygeni) s,
     jsonb_to_recordset(s.j) AS f(stage text, "position" int, is_late boolean, reached bigint,
                                  won bigint, lost bigint, lost_here bigint, open_here bigint)
ORDER BY f."position";
SELECT round(dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome))::numeric, 4)
       AS late_stage_loss_ratio
FROM skygeni;

-- moving window: 90-day trailing win rate at a few dates
SELECT closed_date, round(r::numeric, 4) AS trailing_90d, round(r, 10) = round(a, 10) AS matches_avg
FROM (SELECT DISTINCT closed_date,
             dealrisk.win_rate(dealrisk.is_won(outcome))
                 OVER (ORDER BY closed_date RANGE BETWEEN '90 days' PRECEDING AND CURRENT ROW)::numeric AS r,
             avg((outcome = 'Won')::int)
                 OVER (ORDER BY closed_date RANGE BETWEEN '90 days' PRECEDING AND CURRENT ROW) AS a
      FROM skygeni) s
WHERE closed_date IN ('2023-06-30', '2023-12-31', '2024-06-30')
ORDER BY closed_date;

-- empty and NULL-only inputs
SELECT dealrisk.win_rate(x) AS empty_rate, dealrisk.win_rate_ci(x) IS NULL AS empty_ci,
       dealrisk.stage_funnel(NULL::text, x) AS empty_funnel,
       dealrisk.late_stage_loss_ratio(NULL::text, x) AS empty_late
FROM (SELECT NULL::boolean AS x FROM generate_series(1, 3)) s;
SELECT dealrisk.win_rate(x) FROM (SELECT true AS x WHERE false) s;
SELECT dealrisk.win_rate(true) AS one_won, dealrisk.win_rate(false) AS one_lost;

-- forced parallel plan: Partial Aggregate, and the same answers
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM skygeni;
EXPLAIN (COSTS OFF)
SELECT dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome)) FROM skygeni;
SELECT round(dealrisk.win_rate(dealrisk.is_won(outcome))::numeric, 4) AS win_rate,
       round(dealrisk.win_rate(dealrisk.is_won(outcome), deal_amount)::numeric, 4) AS weighted,
       (dealrisk.win_rate_ci(dealrisk.is_won(outcome), 0.9)).won AS ci_won,
       (dealrisk.win_rate_ci(dealrisk.is_won(outcome))).closed AS ci_closed,
       round(dealrisk.late_stage_loss_ratio(deal_stage, dealrisk.is_won(outcome))::numeric, 4) AS late,
       dealrisk.stage_funnel(deal_stage, dealrisk.is_won(outcome))->0->>'reached' AS reached_first
FROM skygeni;
RESET ALL;
DROP TABLE skygeni;
