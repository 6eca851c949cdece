-- trees.sql: tree ensembles (src/trees.c), the building block of the
-- gradient-boosted model (issue #10): the margin of a feature vector and
-- its exact per-feature contributions (path-dependent TreeSHAP).  The
-- ensemble is passed flattened: see the header of src/trees.c.

CREATE FUNCTION dealrisk._trees_predict(start int4[], "left" int4[], "right" int4[], feature int4[],
	threshold float8[], default_left boolean[], value float8[], cover float8[], base float8, x float8[])
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_trees_predict'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trees_predict(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]) IS
	'The margin (log-odds) a tree ensemble gives feature vector x, NULL elements missing; the ensemble is checked first (internal)';

CREATE FUNCTION dealrisk._trees_shap(start int4[], "left" int4[], "right" int4[], feature int4[],
	threshold float8[], default_left boolean[], value float8[], cover float8[], base float8, x float8[])
RETURNS float8[]
AS 'MODULE_PATHNAME', 'dr_sql_trees_shap'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trees_shap(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]) IS
	'Path-dependent TreeSHAP of feature vector x under a tree ensemble: one contribution per feature, then the expected margin; they add up to _trees_predict (internal)';

-- Not for direct use yet: the gradient-boosted model will call them.
REVOKE EXECUTE ON FUNCTION
	dealrisk._trees_predict(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]),
	dealrisk._trees_shap(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[])
FROM PUBLIC;
