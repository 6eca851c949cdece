-- stats.sql: statistical helpers (src/stats.c).

CREATE TYPE dealrisk.rate_interval AS (
	rate     float8,
	ci_low   float8,
	ci_high  float8,
	won      bigint,
	closed   bigint,
	level    float8
);
COMMENT ON TYPE dealrisk.rate_interval IS
	'A win rate with its Wilson score interval: rate, ci_low, ci_high, won, closed, confidence level';

CREATE FUNCTION dealrisk.wilson_interval(won bigint, closed bigint, level float8 DEFAULT 0.95,
	OUT ci_low float8, OUT ci_high float8)
RETURNS record
AS 'MODULE_PATHNAME', 'dr_sql_wilson_interval'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.wilson_interval(bigint, bigint, float8) IS
	'Wilson score interval for won successes out of closed trials at a confidence level (default 0.95); NULL when closed = 0';

CREATE FUNCTION dealrisk.two_proportion_p(won1 bigint, closed1 bigint, won2 bigint, closed2 bigint)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_two_proportion_p'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.two_proportion_p(bigint, bigint, bigint, bigint) IS
	'Two-sided p-value of the pooled two-proportion z-test of won1/closed1 against won2/closed2; NULL when a sample is empty';

CREATE FUNCTION dealrisk.welch_p(mean1 float8, sd1 float8, n1 bigint, mean2 float8, sd2 float8, n2 bigint)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_welch_p'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.welch_p(float8, float8, bigint, float8, float8, bigint) IS
	'Two-sided p-value of Welch''s t-test for two means given standard deviations and sizes; NULL when a sample has fewer than 2 rows';

CREATE FUNCTION dealrisk.normal_quantile(p float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_normal_quantile'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.normal_quantile(float8) IS
	'Inverse standard normal CDF: z such that P(Z <= z) = p, for 0 < p < 1';

CREATE FUNCTION dealrisk.hash_uniform(seed bigint, i bigint, stream int)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_hash_uniform'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.hash_uniform(bigint, bigint, int) IS
	'Deterministic pseudo-random number in [0, 1) from (seed, row number, stream): same result in any scan order or worker';
