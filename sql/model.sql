-- The deal risk model end to end on a small sample, with exact outputs.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dealrisk;
SET max_parallel_workers_per_gather = 0;
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE rdeals AS SELECT * FROM dealrisk.sample_deals(5000, 11);
SELECT dealrisk.train('rdeals', method => 'logistic') AS model_id \gset
SELECT name, active, source,
       round((metrics->>'auc')::numeric, 3) AS auc,
       round((metrics->>'brier')::numeric, 3) AS brier,
       round((metrics->>'brier_base')::numeric, 3) AS brier_base,
       metrics->>'n_train' AS n_train, metrics->>'n_test' AS n_test,
       metrics->>'converged' AS converged
FROM dealrisk.models WHERE id = :model_id;
SELECT f->>'name' AS feature, f->>'kind' AS kind, coalesce(f->>'column', f->>'derived') AS input,
       CASE f->>'kind' WHEN 'categorical' THEN jsonb_array_length(f->'levels')
            WHEN 'bins' THEN jsonb_array_length(f->'edges') + 1 ELSE 1 END AS columns
FROM dealrisk.models m, jsonb_array_elements(m.feature_spec->'features') f WHERE m.id = :model_id;
-- the five riskiest open deals, with band and action
SELECT deal_id, round(dealrisk.deal_risk(d.*)::numeric, 1) AS risk,
       dealrisk.risk_band(dealrisk.deal_risk(d.*)) AS band,
       dealrisk.recommended_action(d.*) AS action
FROM rdeals d WHERE outcome IS NULL
ORDER BY dealrisk.deal_risk(d.*) DESC, deal_id LIMIT 5;
-- why the riskiest one is risky
SELECT e.factor, e.value, round(e.effect::numeric, 2) AS effect, e.reason
FROM rdeals d, dealrisk.deal_risk_explain(d.*) e
WHERE d.deal_id = (SELECT deal_id FROM rdeals r WHERE outcome IS NULL
                   ORDER BY dealrisk.deal_risk(r.*) DESC, deal_id LIMIT 1);
-- band thresholds
SELECT s, dealrisk.risk_band(s) FROM unnest(ARRAY[0, 29.9, 30, 59.9, 60, 80, 100]::float8[]) s;
-- export keys; an import of the export scores alike
SELECT jsonb_object_keys(dealrisk.export_model(:model_id)) AS key ORDER BY 1;
SELECT dealrisk.import_model(dealrisk.export_model(:model_id), 'copy') > :model_id AS imported;
SELECT dealrisk.activate(id) FROM dealrisk.models WHERE name = 'copy';
SELECT count(*) AS deals, count(*) FILTER (WHERE dealrisk.deal_risk(d.*) = dealrisk.deal_risk(d.*, 'copy')) AS same
FROM rdeals d;
-- errors (terse: no line numbers of the functions)
\set VERBOSITY terse
SELECT dealrisk.train('rdeals', 'x', l2 => 'NaN');
SELECT dealrisk.deal_risk(ROW(1, 2));
SELECT dealrisk.activate(999999);
DROP TABLE rdeals;
DELETE FROM dealrisk.model_activations;
DELETE FROM dealrisk.models;
