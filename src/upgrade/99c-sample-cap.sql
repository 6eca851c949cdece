-- The sample generators refuse more than a billion rows (a typo fills the
-- disk before it fails; issue #14's review).
CREATE OR REPLACE FUNCTION dealrisk._sample_deals_n(n bigint, seed bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'number of sample deals must be at least 1, got %',
			coalesce(n::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF seed IS NULL THEN
		RAISE EXCEPTION 'seed of the sample deals must not be NULL'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- (a billion rows is hundreds of gigabytes: a typo, not a sample)
	IF n > 1000000000 THEN
		RAISE EXCEPTION 'number of sample deals must be at most 1,000,000,000, got %', n
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Generate a larger set in pieces: the rows of (n, seed) are the first n of any larger n with the same seed.';
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk._sample_deals_n(bigint, bigint) IS
	'sample_deals argument check: returns n, or raises an error for n < 1, n > 1,000,000,000 or a NULL argument (internal)';
