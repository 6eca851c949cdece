#!/usr/bin/env bash
# dealrisk.forecast() backtested on the sample's history (issue #12).
# For each as-of date D, the CRM is rebuilt as it stood on D: the deals
# created by D, with the outcome and close date only of those closed by D
# (the columns that only the future knows -- deal_stage, stage_entered_date,
# last_activity_date, sales_cycle_days -- are left out).  A model is trained
# on that snapshot as of D and forecast() predicts, per sales rep and in
# total, the value the deals open on D win within 90 days; the actual value
# is what those deals did win by D + 90 days.  Coverage is the share of
# (date, group) pairs whose actual value lies in the forecast's interval.
# Usage: bash test/bench/forecast_backtest.sh (a database with dealrisk:
# PGDATABASE etc.; make cluster-start gives one).  Environment:
# BACKTEST_ROWS (default 20000), BACKTEST_SEED (42), BACKTEST_LEVEL (0.9).
# Writes test/bench/out/forecast_backtest.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
ROWS=${BACKTEST_ROWS:-20000}
SEED=${BACKTEST_SEED:-42}
LEVEL=${BACKTEST_LEVEL:-0.9}
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
psql -X -q -v ON_ERROR_STOP=1 -At <<SQL | tee "$OUT/forecast_backtest.md"
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS fbt CASCADE;
CREATE SCHEMA fbt;
CREATE TABLE fbt.history AS SELECT * FROM dealrisk.sample_deals($ROWS, $SEED);
CREATE TABLE fbt.result (as_of date, group_value text, is_total boolean, open_deals bigint, pipeline numeric,
	expected numeric, low numeric, high numeric, actual numeric, expected_wins float8, wins_low float8, wins_high float8,
	actual_wins bigint, method text);
DO \$\$
DECLARE
	d date;
	mid bigint;
BEGIN
	FOREACH d IN ARRAY ARRAY['2023-06-30', '2023-09-30', '2023-12-31', '2024-03-31', '2024-06-30', '2024-09-30']::date[] LOOP
		PERFORM set_config('dealrisk.as_of_date', d::text, true);
		DROP TABLE IF EXISTS fbt.snapshot;
		CREATE TABLE fbt.snapshot AS
			SELECT h.deal_id, h.created_date, CASE WHEN h.closed_date <= d THEN h.closed_date END AS closed_date,
			       h.sales_rep_id, h.industry, h.region, h.product_type, h.lead_source, h.deal_amount,
			       CASE WHEN h.closed_date <= d THEN h.outcome END AS outcome
			FROM fbt.history h WHERE h.created_date <= d;
		mid := dealrisk.train('fbt.snapshot', 'fbt', method => 'logistic', activate => false);
		PERFORM dealrisk.activate(mid, true);
		INSERT INTO fbt.result
		SELECT d, f.group_value, f.is_total, f.open_deals, f.pipeline_value, f.expected_won_value, f.won_value_low,
		       f.won_value_high, coalesce(a.won, 0), f.expected_wins, f.wins_low, f.wins_high, coalesce(a.n, 0),
		       f.interval_method
		FROM dealrisk.forecast('fbt.snapshot', 'sales_rep_id', interval '90 days', level => $LEVEL, model => 'fbt') f
		LEFT JOIN (SELECT CASE WHEN g.is_total THEN NULL ELSE g.rep END AS rep, g.is_total,
		                  sum(g.deal_amount) AS won, count(*) AS n
		           FROM (SELECT h.sales_rep_id AS rep, h.deal_amount, t.is_total
		                 FROM fbt.history h CROSS JOIN (VALUES (false), (true)) t(is_total)
		                 WHERE h.created_date <= d AND (h.closed_date > d OR h.closed_date IS NULL)
		                   AND h.outcome = 'Won' AND h.closed_date <= d + 90) g
		           GROUP BY 1, 2) a
		  ON a.is_total = f.is_total AND a.rep IS NOT DISTINCT FROM f.group_value;
	END LOOP;
END
\$\$;
\echo '### Forecast backtest: $ROWS sample deals (seed $SEED), 90-day horizon, $LEVEL interval'
\echo
\echo '| as of | open deals | pipeline | forecast won value | interval | actual won value | in interval | expected wins | actual wins |'
\echo '|---|---:|---:|---:|---:|---:|:---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s – %s | %s | %s | %s | %s |', as_of, open_deals, round(pipeline), round(expected),
	round(low), round(high), round(actual), CASE WHEN actual BETWEEN low AND high THEN 'yes' ELSE 'no' END,
	round(expected_wins::numeric, 1), actual_wins)
FROM fbt.result WHERE is_total ORDER BY as_of;
\echo
\echo '| groups | pairs | value in interval | wins in interval | actual / forecast value | actual above / below the interval |'
\echo '|---|---:|---:|---:|---:|---:|'
SELECT format('| %s | %s | %s%% | %s%% | %s | %s / %s |', CASE WHEN is_total THEN 'total per date' ELSE 'rep per date' END,
	count(*), round(100.0 * count(*) FILTER (WHERE actual BETWEEN low AND high) / count(*), 1),
	round(100.0 * count(*) FILTER (WHERE actual_wins BETWEEN wins_low AND wins_high) / count(*), 1),
	round(sum(actual) / nullif(sum(expected), 0), 3),
	count(*) FILTER (WHERE actual > high), count(*) FILTER (WHERE actual < low))
FROM fbt.result GROUP BY is_total ORDER BY is_total;
SQL
