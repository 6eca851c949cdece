-- Model quality report for docs/model.md: run with psql against a database
-- with the extension (make cluster-start, then
--   psql -X -h <socket> -p 54329 -U postgres -d dealrisk -f test/bench/model_quality.sql).
-- Trains on the sample generator (planted effects) and on the SkyGeni
-- export, and prints metrics next to what the truth allows.
\set QUIET 1
\pset footer off
SET client_min_messages = warning;
SET dealrisk.as_of_date = '2024-12-31';
DROP TABLE IF EXISTS mq_sample, skygeni;
CREATE TABLE mq_sample AS SELECT * FROM dealrisk.sample_deals(:n, 42);
\ir ../fixtures/skygeni.sql
DELETE FROM dealrisk.models WHERE name IN ('mq_sample', 'mq_skygeni');
\echo '== sample generator: holdout metrics of the model'
SELECT dealrisk.train('mq_sample', 'mq_sample') AS model_id \gset
SELECT (metrics->>'n_train')::int AS n_train, (metrics->>'n_test')::int AS n_test,
       round((metrics->>'auc')::numeric, 4) AS auc, round((metrics->>'log_loss')::numeric, 4) AS log_loss,
       round((metrics->>'brier')::numeric, 4) AS brier, round((metrics->>'brier_base')::numeric, 4) AS brier_base,
       round((metrics->>'accuracy')::numeric, 4) AS accuracy, round((metrics->>'base_rate')::numeric, 4) AS base_rate,
       metrics->>'holdout_from' AS holdout_from, active
FROM dealrisk.models WHERE id = :model_id;
\echo '== sample generator: AUC of the true (planted) probabilities on the same holdout'
WITH h AS (SELECT planted_win_prob p, (outcome = 'Won')::int y FROM mq_sample
           WHERE outcome IS NOT NULL
             AND closed_date >= (SELECT (metrics->>'holdout_from')::date FROM dealrisk.models WHERE id = :model_id)),
g AS (SELECT p, sum(y) pos, sum(1 - y) neg FROM h GROUP BY p),
c AS (SELECT pos, neg, coalesce(sum(neg) OVER (ORDER BY p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) below FROM g)
SELECT round((sum(pos * (below + 0.5 * neg)) / (sum(pos) * sum(neg)))::numeric, 4) AS oracle_auc FROM c;
\echo '== sample generator: factors by mean absolute effect on open deals (risk points)'
SELECT e.factor, round(avg(abs(e.effect))::numeric, 2) AS mean_abs_effect,
       round(max(e.effect)::numeric, 2) AS max_effect
FROM mq_sample d, dealrisk.deal_risk_explain(d.*, 'mq_sample') e
WHERE d.outcome IS NULL
GROUP BY 1 ORDER BY 2 DESC;
\echo '== sample generator: calibration on the holdout (predicted vs observed win rate by decile)'
SELECT c->>'decile' AS decile, c->>'n' AS n, round((c->>'predicted')::numeric, 3) AS predicted,
       round((c->>'observed')::numeric, 3) AS observed
FROM dealrisk.models m, jsonb_array_elements(m.metrics->'calibration') c WHERE m.id = :model_id;
\echo '== SkyGeni export: holdout metrics (outcomes near random)'
SELECT dealrisk.train('skygeni', 'mq_skygeni') AS sky_id \gset
SELECT (metrics->>'n_train')::int AS n_train, (metrics->>'n_test')::int AS n_test,
       round((metrics->>'auc')::numeric, 4) AS auc, round((metrics->>'brier')::numeric, 4) AS brier,
       round((metrics->>'brier_base')::numeric, 4) AS brier_base,
       round((metrics->>'accuracy')::numeric, 4) AS accuracy, active,
       dealrisk._quality_problem(metrics) AS why_not_active
FROM dealrisk.models WHERE id = :sky_id;
DROP TABLE mq_sample, skygeni;
