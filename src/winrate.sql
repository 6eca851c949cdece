-- winrate.sql: win-rate aggregates (src/winrate.c).

CREATE FUNCTION dealrisk._win_rate_accum(bigint[], boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_winrate_accum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_inv(bigint[], boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_winrate_inv'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._int8_state_combine(bigint[], bigint[])
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_int8_state_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_final(bigint[])
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_winrate_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_accum(bigint[], boolean) IS 'win_rate transition (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_inv(bigint[], boolean) IS 'win_rate moving-aggregate inverse (internal)';
COMMENT ON FUNCTION dealrisk._int8_state_combine(bigint[], bigint[]) IS 'merges count states of parallel partial aggregates (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_final(bigint[]) IS 'win_rate final function (internal)';

CREATE AGGREGATE dealrisk.win_rate(won boolean) (
	SFUNC = dealrisk._win_rate_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._win_rate_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{0,0}',
	MSFUNC = dealrisk._win_rate_accum,
	MINVFUNC = dealrisk._win_rate_inv,
	MSTYPE = bigint[],
	MFINALFUNC = dealrisk._win_rate_final,
	MINITCOND = '{0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate(boolean) IS
	'Share of closed deals that were won: true = won, false = lost, NULL (open) ignored; NULL when no closed deal. Supports moving windows.';

CREATE FUNCTION dealrisk._win_rate_ci_final(bigint[])
RETURNS dealrisk.rate_interval AS 'MODULE_PATHNAME', 'dr_winrate_ci_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_ci_final(bigint[]) IS 'win_rate_ci final function (internal)';

CREATE AGGREGATE dealrisk.win_rate_ci(won boolean) (
	SFUNC = dealrisk._win_rate_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._win_rate_ci_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{0,0}',
	MSFUNC = dealrisk._win_rate_accum,
	MINVFUNC = dealrisk._win_rate_inv,
	MSTYPE = bigint[],
	MFINALFUNC = dealrisk._win_rate_ci_final,
	MINITCOND = '{0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate_ci(boolean) IS
	'Win rate with a 95% Wilson score interval and counts (dealrisk.rate_interval); NULL when no closed deal';

CREATE FUNCTION dealrisk._win_rate_ci_level_accum(float8[], boolean, float8)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_ci_level_combine(float8[], float8[])
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_ci_level_final(float8[])
RETURNS dealrisk.rate_interval AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_accum(float8[], boolean, float8) IS 'win_rate_ci(won, level) transition (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_combine(float8[], float8[]) IS 'win_rate_ci(won, level) combine (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_final(float8[]) IS 'win_rate_ci(won, level) final function (internal)';

CREATE AGGREGATE dealrisk.win_rate_ci(won boolean, level float8) (
	SFUNC = dealrisk._win_rate_ci_level_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._win_rate_ci_level_final,
	COMBINEFUNC = dealrisk._win_rate_ci_level_combine,
	INITCOND = '{0,0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate_ci(boolean, float8) IS
	'Win rate with a Wilson score interval at the given confidence level (0 < level < 1, constant per group)';

CREATE FUNCTION dealrisk._win_rate_amount_accum(float8[], boolean, numeric)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_amount_accum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._float8_state_combine(float8[], float8[])
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_float8_state_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_amount_final(float8[])
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_winrate_amount_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_amount_accum(float8[], boolean, numeric) IS 'value-weighted win_rate transition (internal)';
COMMENT ON FUNCTION dealrisk._float8_state_combine(float8[], float8[]) IS 'merges sum states of parallel partial aggregates (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_amount_final(float8[]) IS 'value-weighted win_rate final function (internal)';

CREATE AGGREGATE dealrisk.win_rate(won boolean, amount numeric) (
	SFUNC = dealrisk._win_rate_amount_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._win_rate_amount_final,
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{0,0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate(boolean, numeric) IS
	'Value-weighted win rate: won amount / closed amount; rows with NULL won or amount ignored; a negative or NaN amount is an error';
