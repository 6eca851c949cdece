#!/usr/bin/env bash
# Point-in-time training against final-state training (issue #14, item 5):
# on generated deals whose open deals' final outcomes are known
# (sample_pipeline's final_outcome), as of 2024-12-31, for each seed and
# method: the holdout AUC train() reports, the AUC of the model's risk on
# the deals still open then against how they ended, and the mean P(win) of
# those deals (count and value) against what they won; then the 90-day
# forecast() of those deals under each model against what they won by
# 2025-03-31.  Usage: bash
# test/bench/pit_quality.sh (a database with dealrisk: PGDATABASE etc.;
# make cluster-start gives one).  Environment: BENCH_ROWS (default 20000),
# BENCH_SEEDS (default "42 7 3").  Writes test/bench/out/pit_quality.md.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
ROWS=${BENCH_ROWS:-20000}
SEEDS=${BENCH_SEEDS:-42 7 3}
OUT=$TOP/test/bench/out
mkdir -p "$OUT"
psql -X -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS pit_forecast" \
	-c "CREATE TABLE pit_forecast (seed int, method text, trained_on text, expected numeric, low numeric, high numeric, actual numeric)"
{
	echo "Deals: $ROWS per seed; as of 2024-12-31; $(date -u +%Y-%m-%d); PostgreSQL $(psql -X -At -c 'SHOW server_version')."
	echo
	echo "| seed | method | trained on | holdout AUC (train) | open deals | AUC on open deals | mean P(win) | won share | expected won value | actual won value |"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
	for seed in $SEEDS; do
		psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
SET dealrisk.as_of_date = '2024-12-31';
DROP TABLE IF EXISTS pit_deals, pit_history;
CREATE TABLE pit_deals AS SELECT * FROM dealrisk.sample_pipeline($ROWS, $seed);
CREATE TABLE pit_history AS SELECT * FROM dealrisk.sample_stage_history($ROWS, $seed);
DELETE FROM dealrisk.models WHERE name LIKE 'pitq_%';
SELECT dealrisk.train('pit_deals', name => 'pitq_final_' || m, method => m) IS NOT NULL,
       dealrisk.train('pit_deals', history => 'pit_history', name => 'pitq_pit_' || m, method => m) IS NOT NULL
FROM unnest(ARRAY['logistic', 'gbm']) m;
WITH s AS (
	SELECT mo.name, mo.metrics->>'auc' AS holdout_auc, d.final_outcome = 'Won' AS won, d.deal_amount,
	       1 - dealrisk.deal_risk(d.*, mo.name) / 100 AS p
	FROM dealrisk.models mo CROSS JOIN pit_deals d
	WHERE mo.name LIKE 'pitq_%' AND mo.active AND d.outcome IS NULL
), r AS (
	SELECT s.*, (rank() OVER w + rank() OVER w + count(*) OVER (PARTITION BY s.name, s.p) - 1) / 2.0 AS rk
	FROM s WINDOW w AS (PARTITION BY s.name ORDER BY s.p)
)
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |', $seed,
	split_part(name, '_', 3), CASE WHEN name LIKE 'pitq_pit%' THEN 'point in time' ELSE 'final state' END,
	round(max(holdout_auc)::numeric, 3), count(*),
	round(((sum(rk) FILTER (WHERE won) - count(*) FILTER (WHERE won) * (count(*) FILTER (WHERE won) + 1) / 2.0)
	       / (count(*) FILTER (WHERE won) * count(*) FILTER (WHERE NOT won)))::numeric, 3),
	round(avg(p)::numeric, 3), round(avg(won::int)::numeric, 3),
	round(sum(p * deal_amount)), round(sum(deal_amount) FILTER (WHERE won)))
FROM r GROUP BY name ORDER BY split_part(name, '_', 3), name DESC;
-- the 90-day forecast of the open deals under each model, against what
-- they won by 2025-03-31
INSERT INTO pit_forecast
SELECT $seed, split_part(m.name, '_', 3), CASE WHEN m.name LIKE 'pitq_pit%' THEN 'point in time' ELSE 'final state' END,
       round(f.expected_won_value), f.won_value_low, f.won_value_high,
       (SELECT sum(d.deal_amount) FROM pit_deals d WHERE d.outcome IS NULL AND d.final_outcome = 'Won'
                                                   AND d.final_closed_date <= DATE '2025-03-31')
FROM dealrisk.models m, LATERAL dealrisk.forecast('pit_deals', model => m.name) f
WHERE m.name LIKE 'pitq_%' AND m.active AND f.is_total;
SQL
	done
	echo
	echo "| seed | method | trained on | forecast won value (90 days) | 90% interval | actual won value | in interval | actual / forecast |"
	echo "|---:|---|---|---:|---:|---:|:---:|---:|"
	psql -X -q -At -v ON_ERROR_STOP=1 -c "SELECT format('| %s | %s | %s | %s | %s - %s | %s | %s | %s |', seed, method, trained_on, expected,
		low, high, actual, CASE WHEN actual BETWEEN low AND high THEN 'yes' ELSE 'no' END, round(actual / expected, 3))
		FROM pit_forecast ORDER BY seed DESC, method, trained_on DESC"
} | tee "$OUT/pit_quality.md"
