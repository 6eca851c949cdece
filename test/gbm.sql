-- pgTAP: boosting on a binned matrix (src/gbm.c, issue #10): it learns an
-- interaction a logistic model cannot, its trees reproduce its own
-- margins through the tree walker, its contributions add up, it is
-- deterministic, it stops early, and bad input is an error.
\ir harness/pgtap_setup.psql
SELECT plan(12);

\ir harness/error_of.psql

-- 4,000 rows, features a and b (10 bins, a 5% missing) and noise c: the
-- win probability is high when exactly one of a < 5 and b < 5 holds (XOR).
-- Every fifth row is held out.
CREATE TEMP TABLE d AS
SELECT i,
	   CASE WHEN dealrisk.hash_uniform(5, i, 4) < 0.05 THEN -1 ELSE floor(10 * dealrisk.hash_uniform(5, i, 1))::int END AS a,
	   floor(10 * dealrisk.hash_uniform(5, i, 2))::int AS b,
	   floor(10 * dealrisk.hash_uniform(5, i, 3))::int AS c,
	   i % 5 = 0 AS hold
FROM generate_series(1, 4000) i;
ALTER TABLE d ADD COLUMN y boolean;
UPDATE d SET y = dealrisk.hash_uniform(5, i, 9) <
	1 / (1 + exp(-(CASE WHEN (a BETWEEN 0 AND 4) <> (b < 5) THEN 1.5 ELSE -1.5 END)));
CREATE TEMP TABLE m AS
SELECT (dealrisk._gbm_fit('{10,10,10}',
			(SELECT array_agg(v::int2 ORDER BY i, k) FROM d, LATERAL (VALUES (1, a), (2, b), (3, c)) x(k, v)),
			(SELECT array_agg(y ORDER BY i) FROM d), (SELECT array_agg(1.0::float8 ORDER BY i) FROM d),
			(SELECT array_agg(hold ORDER BY i) FROM d),
			100, 0.3, 3, 1, 1, 1, 1, 10, 42)).*;
-- the margin of each row through the tree walker (codes as numbers, -1 missing)
CREATE TEMP TABLE pr AS
SELECT d.i, d.y, d.hold,
	   dealrisk._trees_predict(m.start, m."left", m."right", m.feature, m.threshold, m.default_left, m.value, m.cover, m.base,
		   ARRAY[NULLIF(d.a, -1), d.b, d.c]::float8[]) AS margin,
	   dealrisk._trees_shap(m.start, m."left", m."right", m.feature, m.threshold, m.default_left, m.value, m.cover, m.base,
		   ARRAY[NULLIF(d.a, -1), d.b, d.c]::float8[]) AS phi
FROM d, m;

SELECT ok((SELECT rounds_kept BETWEEN 2 AND rounds_run FROM m), 'it kept some rounds');
SELECT ok((SELECT holdout_loss[rounds_kept] < 0.62 AND holdout_loss[rounds_kept] < holdout_loss[1] FROM m),
	'the holdout log loss falls well below the constant model''s 0.69: it learned the interaction');
SELECT is((SELECT round(avg(CASE WHEN y THEN -ln(1 / (1 + exp(-margin))) ELSE -ln(1 - 1 / (1 + exp(-margin))) END)::numeric, 9)
		   FROM pr WHERE hold),
	(SELECT round(holdout_loss[rounds_kept]::numeric, 9) FROM m),
	'the stored trees, walked by _trees_predict, give the trainer''s own holdout loss (missing values included)');
SELECT is((SELECT count(*) FROM pr WHERE abs((SELECT sum(u) FROM unnest(phi) u) - margin) > 1e-9), 0::bigint,
	'the contributions add up to the margin on all 4,000 rows');
SELECT ok((SELECT avg(abs(phi[3])) < 0.25 * least(avg(abs(phi[1])), avg(abs(phi[2]))) FROM pr),
	'the noise feature c contributes far less than a and b');

SELECT is((SELECT (dealrisk._gbm_fit('{10,10,10}',
			(SELECT array_agg(v::int2 ORDER BY i, k) FROM d, LATERAL (VALUES (1, a), (2, b), (3, c)) x(k, v)),
			(SELECT array_agg(y ORDER BY i) FROM d), (SELECT array_agg(1.0::float8 ORDER BY i) FROM d),
			(SELECT array_agg(hold ORDER BY i) FROM d),
			100, 0.3, 3, 1, 1, 1, 1, 10, 42)).value), (SELECT value FROM m), 'deterministic: the same fit twice');
SELECT ok((SELECT x.value IS DISTINCT FROM (SELECT value FROM m) FROM (SELECT (dealrisk._gbm_fit('{10,10,10}',
			(SELECT array_agg(v::int2 ORDER BY i, k) FROM d, LATERAL (VALUES (1, a), (2, b), (3, c)) x(k, v)),
			(SELECT array_agg(y ORDER BY i) FROM d), (SELECT array_agg(1.0::float8 ORDER BY i) FROM d),
			(SELECT array_agg(hold ORDER BY i) FROM d),
			100, 0.3, 3, 1, 1, 0.7, 0.7, 10, 42)).*) x), 'row and column subsampling change the fit');
SELECT ok((SELECT x.rounds_run < 300 AND x.rounds_kept = x.rounds_run - 5 FROM (SELECT (dealrisk._gbm_fit('{10,10,10}',
			(SELECT array_agg(v::int2 ORDER BY i, k) FROM d, LATERAL (VALUES (1, a), (2, b), (3, c)) x(k, v)),
			(SELECT array_agg(y ORDER BY i) FROM d), (SELECT array_agg(1.0::float8 ORDER BY i) FROM d),
			(SELECT array_agg(hold ORDER BY i) FROM d),
			300, 1, 6, 0, 0, 1, 1, 5, 42)).*) x), 'early stopping: a greedy fit stops 5 rounds after its best holdout loss and keeps the best');

SELECT is((pg_temp.error_of($$SELECT dealrisk._gbm_fit('{2}', '{0,2}', '{t,f}', '{1,1}', '{f,f}', 10, 0.3, 3, 1, 1, 1, 1, 0, 1)$$)).msg,
	'row 2 has code 2 for feature 1, which has 2 bins', 'a code beyond its feature''s bins');
SELECT is((pg_temp.error_of($$SELECT dealrisk._gbm_fit('{2}', '{0,1}', '{t,f}', '{1,1}', '{f,f}', 10, 0, 3, 1, 1, 1, 1, 0, 1)$$)).msg,
	'boosting parameter eta must be in (0, 1], got 0', 'a learning rate of 0');
SELECT is((pg_temp.error_of($$SELECT dealrisk._gbm_fit('{2}', '{0,1}', '{t,t}', '{1,1}', '{f,f}', 10, 0.3, 3, 1, 1, 1, 1, 0, 1)$$)).msg,
	'boosting needs won and lost deals with positive weight in the training rows', 'one class only');
SELECT is((pg_temp.error_of($$SELECT dealrisk._gbm_fit('{2}', '{0,1}', '{t,f}', '{1,NaN}', '{f,f}', 10, 0.3, 3, 1, 1, 1, 1, 0, 1)$$)).msg,
	'row 2 has weight NaN; weights are finite and >= 0', 'a NaN weight');

SELECT * FROM finish();
