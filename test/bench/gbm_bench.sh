#!/bin/bash
# Speed of the boosting core (_gbm_fit) on a synthetic binned matrix:
# N rows x F features of B bins, 300 rounds of depth 6 (eta 0.1), as the
# issue's xgboost reference.  Connection from the environment (PGHOST,
# PGPORT, PGUSER, PGDATABASE); N, F, ROUNDS override the defaults.
set -euo pipefail
N=${N:-1000000}; F=${F:-15}; B=${B:-32}; ROUNDS=${ROUNDS:-300}
psql -v ON_ERROR_STOP=1 -q <<SQL
\timing on
DROP TABLE IF EXISTS gbm_bench_m;
CREATE TEMP TABLE x AS
SELECT i, array_agg(floor($B * dealrisk.hash_uniform(11, i, k))::int2 ORDER BY k) AS c
FROM generate_series(1, $N) i, generate_series(1, $F) k GROUP BY i;
CREATE TEMP TABLE yy AS
SELECT i, dealrisk.hash_uniform(11, i, 999) < 1 / (1 + exp(-((c[1] < $B / 2) <> (c[2] < $B / 2))::int * 2 + 1 - 0.05 * c[3])) AS y,
       i % 5 = 0 AS hold FROM x;
\echo fit:
SELECT rounds_run, rounds_kept, round(holdout_loss[rounds_kept]::numeric, 4) AS holdout_loss, cardinality(value) AS nodes
FROM (SELECT (dealrisk._gbm_fit(array_fill($B, ARRAY[$F]),
		(SELECT array_agg(v ORDER BY i, o) FROM x, unnest(c) WITH ORDINALITY u(v, o)),
		(SELECT array_agg(y ORDER BY i) FROM yy), array_fill(1.0::float8, ARRAY[$N]),
		(SELECT array_agg(hold ORDER BY i) FROM yy),
		$ROUNDS, 0.1, 6, 1, 1, 1, 1, 0, 1)).*) m;
SQL
