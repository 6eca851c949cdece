-- Issue #10: tree ensembles in C (src/trees.c): margins and TreeSHAP;
-- boosting on a binned matrix (src/gbm.c).

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

-- Boosting on a binned matrix (src/gbm.c): codes n x nf row-major, -1 for
-- missing, codes of feature f below nbins[f]; the result is an ensemble in
-- the layout above (thresholds c + 0.5 on the codes), the rounds run and
-- kept, and the losses of every round.
CREATE FUNCTION dealrisk._gbm_fit(nbins int4[], codes int2[], y boolean[], w float8[], holdout boolean[],
	rounds float8, eta float8, max_depth float8, lambda float8, min_child_weight float8,
	subsample float8, colsample float8, early_stop float8, seed int8,
	OUT start int4[], OUT "left" int4[], OUT "right" int4[], OUT feature int4[], OUT threshold float8[],
	OUT default_left boolean[], OUT value float8[], OUT cover float8[], OUT base float8,
	OUT rounds_run int, OUT rounds_kept int, OUT train_loss float8[], OUT holdout_loss float8[])
RETURNS record
AS 'MODULE_PATHNAME', 'dr_gbm_fit'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._gbm_fit(int4[], int2[], boolean[], float8[], boolean[], float8, float8, float8, float8, float8, float8, float8, float8, int8) IS
	'Gradient-boosted trees (Newton boosting of the log loss, histogram splits, depth-limited, L2 leaves, minimum child weight, row and column subsampling, early stopping on the holdout rows) on a binned matrix (internal)';

-- Not for direct use yet: the gradient-boosted model will call them.
REVOKE EXECUTE ON FUNCTION
	dealrisk._trees_predict(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]),
	dealrisk._trees_shap(int4[], int4[], int4[], int4[], float8[], boolean[], float8[], float8[], float8, float8[]),
	dealrisk._gbm_fit(int4[], int2[], boolean[], float8[], boolean[], float8, float8, float8, float8, float8, float8, float8, float8, int8)
FROM PUBLIC;
