-- Review of 0.4.0: one statement of a segment's one-at-a-time effects
-- (_segment_effects) for win_rate_drivers and diagnose; _driver_analysis
-- lists the segments once.

CREATE FUNCTION dealrisk._segment_effects(bn bigint, bw bigint, rn bigint, rw bigint,
	n0 bigint, w0 bigint, n1 bigint, OUT rate_effect float8, OUT mix_effect float8)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT CASE WHEN rn > 0 THEN (rn::float8 / n1) * (rw::float8 / rn - x.r0) ELSE 0 END,
		   (rn::float8 / n1 - bn::float8 / n0) * (x.r0 - w0::float8 / n0)
	FROM (SELECT coalesce(bw::float8 / NULLIF(bn, 0), w0::float8 / n0) AS r0) x
$fn$;
COMMENT ON FUNCTION dealrisk._segment_effects(bigint, bigint, bigint, bigint, bigint, bigint, bigint) IS
	'A segment''s one-at-a-time rate and mix effects on the change of the win rate between two windows (internal)';

