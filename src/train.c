/*
 * train.c
 *	  Fitting the deal risk model: one streaming aggregate pass per Newton
 *	  (IRLS) iteration, and an evaluation pass for the holdout metrics.
 *
 * The IRLS state is a float8[] holding the weighted log-likelihood, the
 * gradient and the upper triangle of the Fisher information; its size
 * depends only on the number of model columns, never on the rows, and two
 * states merge by addition, so passes run in parallel.
 *
 *	  IRLS state:  {rows, sum of weights, log-likelihood, gradient[p],
 *	                information[p (p + 1) / 2]}            (p = model columns)
 *	  eval state:  {rows, won, log loss sum, Brier sum, correct,
 *	                won[NB], rows[NB], predicted sum[NB]}   (NB score bins)
 *	  open-curve state: {rows, then per knot of each survivor curve:
 *	                score, information, closed deals, won deals}
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "utils/date.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "dealrisk.h"
#include "model.h"
#include "trees.h"
#include "gbm.h"

PG_FUNCTION_INFO_V1(dr_irls_accum);
PG_FUNCTION_INFO_V1(dr_irls_solve);
PG_FUNCTION_INFO_V1(dr_irls_decrement);
PG_FUNCTION_INFO_V1(dr_eval_accum);
PG_FUNCTION_INFO_V1(dr_eval_final);
PG_FUNCTION_INFO_V1(dr_open_accum);
PG_FUNCTION_INFO_V1(dr_open_step);
PG_FUNCTION_INFO_V1(dr_open_rows);
PG_FUNCTION_INFO_V1(dr_open_rows_combine);
PG_FUNCTION_INFO_V1(dr_open_rows_serial);
PG_FUNCTION_INFO_V1(dr_open_rows_deserial);
PG_FUNCTION_INFO_V1(dr_open_fit_final);
PG_FUNCTION_INFO_V1(dr_gbm_rows);
PG_FUNCTION_INFO_V1(dr_gbm_combine);
PG_FUNCTION_INFO_V1(dr_gbm_serial);
PG_FUNCTION_INFO_V1(dr_gbm_deserial);
PG_FUNCTION_INFO_V1(dr_gbm_result);
PG_FUNCTION_INFO_V1(dr_eval_pair_accum);

#define IRLS_HEAD 3
#define EVAL_HEAD 5
#define EVAL_BINS 2000

/*
 * The widest model training takes.  The IRLS state holds p (p + 1) / 2
 * information entries and the Newton step factorises a p x p matrix: at
 * 4096 columns that is an 8.4 million entry (67 MB) state per aggregate
 * and a 134 MB matrix whose Cholesky factorisation (p^3 / 3 operations)
 * takes seconds per iteration.  Steps get slow well before, at about 11,600
 * columns, the matrix would no longer fit a 1 GB allocation.
 */
#define DR_MAX_TRAIN_COLUMNS 4096

/*
 * What a training or evaluation call site parses once and keeps, with the
 * arguments it came from: a rescan (a correlated subquery, say) may pass
 * other ones, which is noticed when a new aggregation starts.
 */
#define FIT_MAX_FIXED 10
typedef struct FitCache
{
	MemoryContext cxt;			/* all of the below */
	int			first_fixed;	/* the arguments the cache was built from: */
	int			nfixed;			/* spec through column names, copied */
	NullableDatum fixed[FIT_MAX_FIXED];
	bool		fixed_byval[FIT_MAX_FIXED];
	int16		fixed_len[FIT_MAX_FIXED];
	int			row_mode;		/* 0 not known yet, ROW_AS_VALUES, ROW_AS_COMPOSITE */
	DrModel    *model;
	DrRowReader *reader;
	DrEncoded  *enc;
	double	   *beta;			/* ncols, zeros when none given */
	int32		as_of;
	int32		ref;			/* recency weights: reference date and */
	double		halflife;		/* half-life in days (0: no weights) */
	double	   *weights;		/* weight by days before ref, 0 = not yet */
	double	   *terms;			/* open-curve passes: the terms per knot */
} FitCache;

/* How a pass receives its rows (see pass_row). */
#define ROW_AS_VALUES 1
#define ROW_AS_COMPOSITE 2

/* Recency weights are kept for deals closed up to this many days before ref. */
#define WEIGHT_DAYS 8192

/*
 * Keep copies of the arguments the cache is built from (first..last), which
 * must be constants or parameters: those hold still during an aggregation,
 * and a new one (a rescan with other parameters) is noticed by
 * same_fixed_args.  Values that vary by row would let hashed groups, which
 * share fn_extra, use each other's coefficients.
 */
static void
keep_fixed_args(FitCache *fc, FunctionCallInfo fcinfo, int first, int last)
{
	Aggref	   *aggref = AggGetAggref(fcinfo);
	int			argno;

	if (last - first >= FIT_MAX_FIXED)
		elog(ERROR, "too many cached arguments: %d", last - first + 1);
	fc->first_fixed = first;
	fc->nfixed = last - first + 1;
	for (argno = first; argno <= last; argno++)
	{
		NullableDatum *keep = &fc->fixed[argno - first];
		Oid			t = get_fn_expr_argtype(fcinfo->flinfo, argno);

		if (aggref != NULL)
		{
			/* the transition function's argument n is the aggregate's n - 1 */
			TargetEntry *tle = list_nth_node(TargetEntry, aggref->args, argno - 1);
			Node	   *e = (Node *) tle->expr;

			while (IsA(e, RelabelType))
				e = (Node *) ((RelabelType *) e)->arg;
			if (!IsA(e, Const) && !IsA(e, Param))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("argument %d of a training pass must be a constant or a parameter", argno),
						 errdetail("The model specification, coefficients, split, weights, row type and column names are read once per pass.")));
		}
		if (!OidIsValid(t))
			elog(ERROR, "could not determine the type of argument %d", argno);
		get_typlenbyval(t, &fc->fixed_len[argno - first], &fc->fixed_byval[argno - first]);
		keep->isnull = PG_ARGISNULL(argno);
		keep->value = keep->isnull ? (Datum) 0 :
			datumCopy(PG_GETARG_DATUM(argno), fc->fixed_byval[argno - first],
					  fc->fixed_len[argno - first]);
	}
}

/*
 * True when the arguments are those the cache was built from, compared as
 * stored (checked once per aggregation: the spec may be some kilobytes).
 */
static bool
same_fixed_args(FitCache *fc, FunctionCallInfo fcinfo)
{
	int			i;

	for (i = 0; i < fc->nfixed; i++)
	{
		NullableDatum *a = &fcinfo->args[fc->first_fixed + i];

		if (a->isnull != fc->fixed[i].isnull ||
			(!a->isnull && !datumIsEqual(a->value, fc->fixed[i].value,
										 fc->fixed_byval[i], fc->fixed_len[i])))
			return false;
	}
	return true;
}

/*
 * Parse the spec and coefficients of this call site once (fn_extra), and
 * read which closed deals it uses, from the arguments (split, cutoff) at
 * splitarg: split 0 = every closed deal, 1 = closed before cutoff
 * (training), 2 = closed on or after it (holdout).  The encoder skips the
 * other rows before reading their features.  With weighted, the arguments
 * (ref, halflife) follow: a deal then weighs 0.5 ^ (days before ref /
 * halflife) when halflife > 0, so that recent outcomes count more.  The
 * row type and column names at typarg (see pass_row) are kept with them.
 * These arguments are constants of the training queries.
 */
static FitCache *
fit_cache(FunctionCallInfo fcinfo, int specarg, int betaarg, int splitarg,
		  bool weighted, int typarg, bool new_run)
{
	FitCache   *fc = (FitCache *) fcinfo->flinfo->fn_extra;
	MemoryContext cxt;
	MemoryContext oldcxt;
	ArrayType  *beta;
	int			n,
				k;

	if (fc != NULL && (!new_run || same_fixed_args(fc, fcinfo)))
		return fc;
	if (PG_ARGISNULL(specarg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model specification must not be NULL")));
	if (fc != NULL)
		MemoryContextDelete(fc->cxt);
	cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "dealrisk fit cache",
								ALLOCSET_DEFAULT_SIZES);
	fc = MemoryContextAllocZero(cxt, sizeof(FitCache));
	fc->cxt = cxt;
	fcinfo->flinfo->fn_extra = NULL;	/* until it is complete */
	oldcxt = MemoryContextSwitchTo(cxt);
	keep_fixed_args(fc, fcinfo, specarg, typarg + 1);
	MemoryContextSwitchTo(oldcxt);
	fc->model = dr_model_from_spec(PG_GETARG_DATUM(specarg), NULL, 0, NULL, cxt);
	fc->enc = dr_encoded_alloc(fc->model, cxt);
	fc->beta = MemoryContextAllocZero(cxt, sizeof(double) * fc->model->ncols);
	fc->as_of = dr_as_of_date();
	fc->enc->closed_only = true;
	fc->enc->closed_from = fc->enc->closed_before = DR_NO_DATE;
	if (!PG_ARGISNULL(splitarg) && PG_GETARG_INT32(splitarg) != 0 &&
		!PG_ARGISNULL(splitarg + 1))
	{
		if (PG_GETARG_INT32(splitarg) == 1)
			fc->enc->closed_before = (int32) PG_GETARG_DATEADT(splitarg + 1);
		else
			fc->enc->closed_from = (int32) PG_GETARG_DATEADT(splitarg + 1);
	}
	if (weighted && !PG_ARGISNULL(splitarg + 2) && !PG_ARGISNULL(splitarg + 3) &&
		PG_GETARG_FLOAT8(splitarg + 3) > 0)
	{
		fc->ref = (int32) PG_GETARG_DATEADT(splitarg + 2);
		fc->halflife = PG_GETARG_FLOAT8(splitarg + 3);
		fc->weights = MemoryContextAllocZero(cxt, sizeof(double) * WEIGHT_DAYS);
	}
	if (!PG_ARGISNULL(betaarg))
	{
		beta = PG_GETARG_ARRAYTYPE_P(betaarg);
		if (ARR_NDIM(beta) != 0)
		{
			/* a tree model has one coefficient: its base margin */
			dr_state_array(beta, FLOAT8OID, fc->model->trees ? 1 : fc->model->ncols,
						   "coefficient");
			n = ARR_DIMS(beta)[0];
			memcpy(fc->beta, ARR_DATA_PTR(beta), sizeof(double) * n);
			for (k = 0; k < n; k++)
				if (isnan(fc->beta[k]) || fabs(fc->beta[k]) > DR_MAX_COEFFICIENT)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("coefficient %d is %.15g, not a finite number within +-%g",
									k + 1, fc->beta[k], DR_MAX_COEFFICIENT)));
		}
	}
	if (fc->model->trees != NULL)
	{
		fc->model->trees->base = fc->beta[0];
		dr_trees_check(fc->model->trees, fc->cxt);
	}
	fcinfo->flinfo->fn_extra = fc;
	return fc;
}

/* A zeroed float8 array of n elements in the current memory context. */
static ArrayType *
zero_float8_array(int n)
{
	Size		bytes;
	ArrayType  *a;

	if (n < 1 || n > MaxArraySize)
		elog(ERROR, "invalid state array length %d", n);
	bytes = ARR_OVERHEAD_NONULLS(1) + sizeof(double) * (Size) n;
	a = (ArrayType *) palloc0(bytes);

	SET_VARSIZE(a, bytes);
	a->ndim = 1;
	a->dataoffset = 0;
	a->elemtype = FLOAT8OID;
	ARR_DIMS(a)[0] = n;
	ARR_LBOUND(a)[0] = 1;
	return a;
}

/*
 * Length of the IRLS state of a model of p columns (see the file header),
 * after checking that training can hold such a model; computed in int64 so
 * that no width can overflow it.
 */
static int
irls_state_len(int64 p)
{
	int64		len;

	if (p < 1 || p > DR_MAX_TRAIN_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a model of " INT64_FORMAT " columns is too wide to train: at most %d model columns can be trained",
						p, DR_MAX_TRAIN_COLUMNS),
				 errdetail("Training holds a p x p information matrix, which grows with the square of the model columns."),
				 errhint("Pool rare levels, use fewer bins or leave out a feature with many levels.")));
	len = IRLS_HEAD + p + p * (p + 1) / 2;
	Assert(len <= MaxArraySize);
	return (int) len;
}

/*
 * The weight of the closed deal just encoded (see fit_cache): 1 without
 * recency weights, else 0.5 ^ (days before ref / halflife), from a table
 * filled as days are first seen.
 */
static inline double
row_weight(FitCache *fc)
{
	int32		closed = fc->enc->closed_date;
	int64		days;

	if (fc->weights == NULL || closed == DR_NO_DATE)
		return 1.0;
	days = (int64) fc->ref - closed;
	if (days < 0 || days >= WEIGHT_DAYS)
		return pow(0.5, (double) days / fc->halflife);
	if (fc->weights[days] == 0)
		fc->weights[days] = pow(0.5, (double) days / fc->halflife);
	return fc->weights[days];
}

/* A closed deal whose outcome label is not configured stops training. */
static void
check_outcome(DrEncoded *e, DrRowReader *r)
{
	if (e->outcome == -2)
	{
		bool		isnull = false;
		int			attno = r->fixed_attno[DR_COL_OUTCOME];

		(void) dr_outcome_is_won(DatumGetTextPP(r->values[attno - 1]), &isnull);	/* raises */
	}
}

/*
 * Load the row a pass receives from argument typarg on: (row type, column
 * names, values) as dr_row_from_args reads them, or, for a model reading
 * more columns than a call can take, (row type, NULL, the whole row as one
 * composite value) — see dealrisk._row_args.
 */
static DrRowReader *
pass_row(FitCache *fc, FunctionCallInfo fcinfo, int typarg)
{
	if (fc->row_mode == 0)
	{
		Oid			t = PG_NARGS() == typarg + 3 ?
			get_fn_expr_argtype(fcinfo->flinfo, typarg + 2) : InvalidOid;

		fc->row_mode = (PG_ARGISNULL(typarg + 1) && OidIsValid(t) && type_is_rowtype(t)) ?
			ROW_AS_COMPOSITE : ROW_AS_VALUES;
	}
	if (fc->row_mode == ROW_AS_COMPOSITE)
	{
		if (PG_ARGISNULL(typarg + 2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a deal row passed to a training pass must not be NULL")));
		return dr_row_from_tuple(fc->model, PG_GETARG_HEAPTUPLEHEADER(typarg + 2),
								 fc->cxt, fc->reader);
	}
	return dr_row_from_args(fc->model, fcinfo, typarg, fc->cxt, fc->reader);
}

/*
 * Read the row passed from typarg on (see pass_row), encode it, check its
 * outcome label, and return its x . beta, which is always finite.
 */
static double
encode_and_eta(FitCache *fc, FunctionCallInfo fcinfo, int typarg, bool leave_one_out)
{
	DrEncoded  *e = fc->enc;
	double		eta = 0;
	int			k;

	fc->reader = pass_row(fc, fcinfo, typarg);
	dr_encode_row(fc->model, fc->reader, fc->as_of, leave_one_out, e);
	check_outcome(e, fc->reader);
	if (e->skipped)
		return 0;
	if (fc->model->trees != NULL)
	{
		const bool *absent;
		const double *x = dr_tree_values(fc->model, e, &absent);

		eta = dr_trees_margin(fc->model->trees, x, absent);
	}
	else
	{
		for (k = 0; k < e->nnz; k++)
			eta += fc->beta[e->idx[k]] * e->val[k];
	}
	eta += e->offset;			/* 0: passes read closed deals only */
	/* can't happen: coefficients and encoded values are bounded (model.h) */
	if (unlikely(isnan(eta) || isinf(eta)))
		elog(ERROR, "the score of a deal is not finite: %g", eta);
	return eta;
}

/*
 * IRLS transition: add one closed deal's weighted log-likelihood, gradient
 * and information at the current coefficients.  Open deals, deals outside
 * the pass's split and rows with a non-positive weight are skipped.
 */
Datum
dr_irls_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	FitCache   *fc;
	DrEncoded  *e;
	double	   *v,
			   *grad,
			   *info;
	double		w,
				eta,
				mu,
				y;
	int			p,
				len,
				a,
				b;

	dr_require_agg_context(fcinfo, "irls_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("IRLS");
	state = PG_GETARG_ARRAYTYPE_P(0);

	/*
	 * The state is made at the first row of each aggregation, skipped or
	 * not, so an empty state means a new run: the arguments are checked
	 * against the cached ones then, not per row.
	 */
	fc = fit_cache(fcinfo, 1, 2, 3, true, 7, ARR_NDIM(state) == 0);
	p = fc->model->ncols;
	len = irls_state_len(p);
	if (ARR_NDIM(state) == 0)
		state = zero_float8_array(len);
	eta = encode_and_eta(fc, fcinfo, 7, true);
	e = fc->enc;
	if (e->skipped || e->outcome < 0)
		PG_RETURN_ARRAYTYPE_P(state);
	w = row_weight(fc);
	if (!(w > 0) || isinf(w))
		PG_RETURN_ARRAYTYPE_P(state);

	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, len, "IRLS"));
	grad = v + IRLS_HEAD;
	info = grad + p;

	y = (double) e->outcome;
	mu = dr_logistic(eta);
	v[0] += 1;
	v[1] += w;
	/*
	 * log-likelihood y eta - log(1 + e^eta) = y eta + log(1 - mu), reusing
	 * mu; for large eta, 1 - mu underflows, and log(1 + e^-eta) ~ e^-eta
	 */
	v[2] += w * (y * eta - (eta > 30 ? eta + exp(-eta) : -log1p(-mu)));
	/*
	 * The encoder lists a row's columns in increasing order (the intercept,
	 * then at most one column per feature, features in model order), so the
	 * pairs (a, b >= a) are exactly the upper triangle: row i of it starts
	 * at i p - i (i - 1) / 2, and (i, j) sits j - i further.
	 */
	for (a = 0; a < e->nnz; a++)
	{
		int			i = e->idx[a];
		double		wi = w * mu * (1 - mu) * e->val[a];
		double	   *row = info + (i * p - i * (i - 1) / 2) - i;

		if (unlikely(a > 0 && e->idx[a - 1] >= i))
			elog(ERROR, "encoded model columns are not in increasing order");
		grad[i] += w * (y - mu) * e->val[a];
		for (b = a; b < e->nnz; b++)
			row[e->idx[b]] += wi * e->val[b];
	}
	PG_RETURN_ARRAYTYPE_P(state);
}

/*
 * SQL: _irls_solve(state, beta, l2) -> new coefficients.  One Newton step on
 * the L2-penalised log-likelihood (the intercept is not penalised).  If the
 * information matrix is singular (a level never seen, say), a tiny ridge is
 * added until it factorises.
 */
Datum
dr_irls_solve(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *betaarr = PG_GETARG_ARRAYTYPE_P(1);
	double		l2 = PG_GETARG_FLOAT8(2);
	double	   *v,
			   *beta,
			   *grad,
			   *info,
			   *m,
			   *step;
	double		ridge = 0;
	int			p,
				n,
				i,
				j,
				tries;
	Datum	   *elems;

	if (!(l2 >= 0) || isinf(l2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("l2 penalty must be a finite number >= 0, got %g", l2)));
	dr_state_array(betaarr, FLOAT8OID, -1, "coefficient");
	p = ARR_DIMS(betaarr)[0];
	beta = (double *) ARR_DATA_PTR(betaarr);
	if (ARR_NDIM(state) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no closed deal to train on")));
	n = irls_state_len(p);
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, n, "IRLS"));
	if (!(v[1] > 0))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no closed deal to train on")));
	grad = v + IRLS_HEAD;
	info = grad + p;

	m = palloc(sizeof(double) * (Size) p * (Size) p);
	step = palloc(sizeof(double) * (Size) p);
	for (tries = 0; tries < 20; tries++)
	{
		for (i = 0; i < p; i++)
		{
			CHECK_FOR_INTERRUPTS();
			for (j = i; j < p; j++)
			{
				double		x = info[i * p - i * (i - 1) / 2 + (j - i)];

				if (i == j)
					x += (i > 0 ? l2 : 0) + ridge;
				m[i * p + j] = m[j * p + i] = x;
			}
		}
		if (dr_cholesky(m, p))
			break;
		ridge = (ridge == 0) ? 1e-8 * Max(1.0, v[1]) : ridge * 10;
	}
	if (tries == 20)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the training problem is singular even with a ridge of %g", ridge),
				 errhint("Use a larger l2 penalty or fewer features.")));
	for (i = 0; i < p; i++)
		step[i] = grad[i] - (i > 0 ? l2 * beta[i] : 0);
	dr_cholesky_solve(m, p, step);

	elems = palloc(sizeof(Datum) * p);
	for (i = 0; i < p; i++)
	{
		double		b = beta[i] + step[i];

		if (isnan(b) || isinf(b) || fabs(b) > DR_MAX_COEFFICIENT)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("training diverged: coefficient %d is %.15g, not a finite number within +-%g",
							i + 1, b, DR_MAX_COEFFICIENT),
					 errhint("Use a larger l2 penalty.")));
		elems[i] = Float8GetDatum(b);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, p, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * SQL: _irls_decrement(state, beta, new_beta, l2) -> the gain in penalised
 * log-likelihood that the Newton step promises, g'(new - old) / 2.  When it
 * is tiny the new coefficients are converged and no further pass is needed.
 */
Datum
dr_irls_decrement(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b0 = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *b1 = PG_GETARG_ARRAYTYPE_P(2);
	double		l2 = PG_GETARG_FLOAT8(3);
	double	   *v,
			   *old,
			   *new,
				dec = 0;
	int			p,
				i;

	if (!(l2 >= 0) || isinf(l2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("l2 penalty must be a finite number >= 0, got %g", l2)));
	dr_state_array(b0, FLOAT8OID, -1, "coefficient");
	p = ARR_DIMS(b0)[0];
	dr_state_array(b1, FLOAT8OID, p, "coefficient");
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID,
											   irls_state_len(p), "IRLS"));
	old = (double *) ARR_DATA_PTR(b0);
	new = (double *) ARR_DATA_PTR(b1);
	for (i = 0; i < p; i++)
		dec += (v[IRLS_HEAD + i] - (i > 0 ? l2 * old[i] : 0)) * (new[i] - old[i]);
	if (isnan(dec) || isinf(dec))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the gain of the Newton step is not finite (%g)", dec),
				 errdetail("The state, the coefficients or the l2 penalty %g hold numbers too large or not finite.", l2)));
	PG_RETURN_FLOAT8(dec / 2);
}

/*
 * Evaluation transition: score a closed deal with the given coefficients and
 * add it to the log loss, Brier score, accuracy and the score histogram
 * (for AUC and calibration).
 */
Datum
dr_eval_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	FitCache   *fc;
	double	   *v,
				eta,
				mu,
				y;
	int			bin;

	dr_require_agg_context(fcinfo, "eval_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("evaluation");
	state = PG_GETARG_ARRAYTYPE_P(0);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("coefficients must not be NULL")));
	/* a new run when the state is empty, as in dr_irls_accum */
	fc = fit_cache(fcinfo, 1, 2, 3, false, 5, ARR_NDIM(state) == 0);
	if (ARR_NDIM(state) == 0)
		state = zero_float8_array(EVAL_HEAD + 3 * EVAL_BINS);
	/* scored as a new deal would be: no leave-one-out */
	eta = encode_and_eta(fc, fcinfo, 5, false);
	if (fc->enc->skipped || fc->enc->outcome < 0)
		PG_RETURN_ARRAYTYPE_P(state);
	mu = dr_logistic(eta);
	y = fc->enc->outcome;

	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, EVAL_HEAD + 3 * EVAL_BINS,
											   "evaluation"));
	v[0] += 1;
	v[1] += y;
	v[2] -= y * log(Max(mu, 1e-15)) + (1 - y) * log(Max(1 - mu, 1e-15));
	v[3] += (mu - y) * (mu - y);
	v[4] += ((mu >= 0.5) == (y == 1)) ? 1 : 0;
	/* eta is finite (encode_and_eta), so mu is in [0, 1]; clamp all the same */
	if (!(mu > 0))
		bin = 0;
	else if (mu >= 1)
		bin = EVAL_BINS - 1;
	else
		bin = Min((int) (mu * EVAL_BINS), EVAL_BINS - 1);
	v[EVAL_HEAD + bin] += y;
	v[EVAL_HEAD + EVAL_BINS + bin] += 1;
	v[EVAL_HEAD + 2 * EVAL_BINS + bin] += mu;
	PG_RETURN_ARRAYTYPE_P(state);
}

/*
 * Check that an evaluation state holds what eval_accum can make: finite
 * sums, counts with 0 <= won <= rows (overall and per bin) that add up, and
 * predicted sums within [0, rows] per bin.  A hand-made state that does not
 * is an error rather than NaN or nonsense metrics.
 */
static void
check_eval_state(const double *v, const double *won, const double *cnt,
				 const double *psum)
{
	double		rows = 0,
				wins = 0;
	int			b;

	for (b = 0; b < EVAL_HEAD; b++)
		if (isnan(v[b]) || isinf(v[b]))
			dr_state_value_error("evaluation",
								 psprintf("Entry %d is %g, not a finite number.", b + 1, v[b]));
	if (!(v[0] > 0 && v[1] >= 0 && v[1] <= v[0] && v[2] >= 0 && v[3] >= 0 &&
		  v[4] >= 0 && v[4] <= v[0]))
		dr_state_value_error("evaluation",
							 psprintf("Its totals (rows %g, won %g, log loss %g, Brier %g, correct %g) are not consistent.",
									  v[0], v[1], v[2], v[3], v[4]));
	for (b = 0; b < EVAL_BINS; b++)
	{
		if (!(won[b] >= 0 && won[b] <= cnt[b] && psum[b] >= 0 &&
			  psum[b] <= cnt[b] * (1 + 1e-12)) ||
			isinf(cnt[b]))
			dr_state_value_error("evaluation",
								 psprintf("Score bin %d has %g won of %g rows with predicted sum %g.",
										  b + 1, won[b], cnt[b], psum[b]));
		rows += cnt[b];
		wins += won[b];
	}
	if (fabs(rows - v[0]) > 1e-9 * v[0] || fabs(wins - v[1]) > 1e-9 * Max(v[1], 1.0))
		dr_state_value_error("evaluation",
							 psprintf("The score bins hold %g rows and %g won, the totals %g and %g.",
									  rows, wins, v[0], v[1]));
}

/*
 * Evaluation final: jsonb with n, won, lost, base_rate, auc, log_loss,
 * brier, brier_base (always predicting the base rate), accuracy and a
 * calibration table by decile of the predicted win probability.
 */
Datum
dr_eval_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	double	   *v,
			   *won,
			   *cnt,
			   *psum;
	double		n,
				pos,
				neg,
				base,
				auc = 0,
				neg_below = 0;
	StringInfoData buf;
	int			b,
				dec;
	double		acc_n = 0,
				acc_won = 0,
				acc_p = 0,
				seen = 0;

	if (ARR_NDIM(state) == 0)
		PG_RETURN_NULL();
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, EVAL_HEAD + 3 * EVAL_BINS,
											   "evaluation"));
	if (v[0] == 0)
		PG_RETURN_NULL();		/* rows were read, none of them counted */
	won = v + EVAL_HEAD;
	cnt = won + EVAL_BINS;
	psum = cnt + EVAL_BINS;
	check_eval_state(v, won, cnt, psum);
	n = v[0];
	pos = v[1];
	neg = n - pos;
	base = pos / n;
	for (b = 0; b < EVAL_BINS; b++)
	{
		double		nb = cnt[b] - won[b];

		auc += won[b] * (neg_below + 0.5 * nb);
		neg_below += nb;
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"n\": %.0f, \"won\": %.0f, \"lost\": %.0f, \"base_rate\": %.17g",
					 n, pos, neg, base);
	if (pos > 0 && neg > 0)
		appendStringInfo(&buf, ", \"auc\": %.17g", auc / (pos * neg));
	else
		appendStringInfoString(&buf, ", \"auc\": null");
	appendStringInfo(&buf, ", \"log_loss\": %.17g, \"brier\": %.17g, \"brier_base\": %.17g, \"accuracy\": %.17g",
					 v[2] / n, v[3] / n, base * (1 - base), v[4] / n);
	appendStringInfoString(&buf, ", \"calibration\": [");
	dec = 1;
	for (b = 0; b < EVAL_BINS; b++)
	{
		acc_n += cnt[b];
		acc_won += won[b];
		acc_p += psum[b];
		seen += cnt[b];
		if (acc_n > 0 && (seen >= dec * n / 10.0 - 1e-9 || b == EVAL_BINS - 1))
		{
			appendStringInfo(&buf, "%s{\"decile\": %d, \"n\": %.0f, \"predicted\": %.17g, \"observed\": %.17g}",
							 dec > 1 ? ", " : "", dec, acc_n, acc_p / acc_n, acc_won / acc_n);
			acc_n = acc_won = acc_p = 0;
			while (dec < 10 && seen >= dec * n / 10.0 - 1e-9)
				dec++;
			if (dec == 10 && seen >= n - 1e-9)
				break;
		}
	}
	appendStringInfoString(&buf, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Survivor curves of open deals (docs/model.md, "Open deals"): for each knot
 * t of the age (or stage time) of a feature, the log-odds term a(t) that,
 * added to the rest of the model's log-odds of each closed deal whose value
 * was at least t, makes the model's expected wins among those deals equal
 * their wins.  Neighbouring knots are tied by a random-walk penalty of
 * strength OPEN_LAMBDA (about 20 deals at p(1 - p) = 1/4), so that knots
 * with few deals lean on their neighbours, and the curve is then made
 * non-increasing (pool adjacent violators), so that an open deal's risk
 * never falls as it ages.
 */

/* The features of a model that have a survivor curve, and their knots. */
static int
open_knot_total(DrModel *m)
{
	int			i,
				n = 0;

	for (i = 0; i < m->nfeatures; i++)
		n += m->features[i].knots ? m->features[i].nknots : 0;
	return n;
}

/*
 * The log-odds of the deal encoded in fc->enc without feature i (eta: its
 * log-odds under a logistic model; a tree model's are walked here with
 * the feature averaged out), which a survivor curve's term is fitted on
 * top of.
 */
static double
open_rest(FitCache *fc, int i, double eta)
{
	DrModel    *m = fc->model;
	DrEncoded  *e = fc->enc;
	double		rest = eta;
	int			k;

	if (m->trees != NULL)
	{
		const bool *unused;
		const double *tx = dr_tree_values(m, e, &unused);

		memset(m->tree_absent, 0, sizeof(bool) * m->nfeatures);
		m->tree_absent[i] = true;
		return dr_trees_margin(m->trees, tx, m->tree_absent);
	}
	for (k = 1; k < e->nnz; k++)
		if (m->colfeat[e->idx[k]] == i)
			rest -= fc->beta[e->idx[k]] * e->val[k];
	return rest;
}

/*
 * Encode the row of a survivor curve pass (the arguments from typarg on)
 * into fc->enc: its log-odds under a logistic model into *eta (with the
 * rep's rate left out as in training; a tree model's are walked per curve,
 * so 0), its weight into *w.  False for a row the fit does not count: not
 * a closed deal, or without a positive weight.
 */
static bool
open_encode(FitCache *fc, FunctionCallInfo fcinfo, int typarg, double *eta, double *w)
{
	DrModel    *m = fc->model;

	if (m->trees == NULL)
		*eta = encode_and_eta(fc, fcinfo, typarg, true);
	else
	{
		fc->reader = pass_row(fc, fcinfo, typarg);
		dr_encode_row(m, fc->reader, fc->as_of, false, fc->enc);
		check_outcome(fc->enc, fc->reader);
		*eta = 0;
	}
	if (fc->enc->skipped || fc->enc->outcome < 0)
		return false;
	*w = row_weight(fc);
	return *w > 0 && !isinf(*w);
}

/* How many of a curve's knots a value reaches (is at or past). */
static inline int
open_reach(const DrFeature *f, double x)
{
	int			j = 0;

	while (j < f->nknots && f->knots[j] <= x)
		j++;
	return j;
}

/*
 * Add a closed deal to the knots it reaches of one curve (slots v, terms
 * a): the weighted score w (y - p) and information w p (1 - p), p =
 * logistic(rest + term), and its closed and won counts.
 */
static inline void
open_add_deal(double *v, const double *a, int reach, double rest, double w, double y)
{
	int			j;

	for (j = 0; j < reach; j++)
	{
		double		p = dr_logistic(rest + a[j]);
		double	   *slot = v + 4 * j;

		slot[0] += w * (y - p);
		slot[1] += w * p * (1 - p);
		slot[2] += 1;
		slot[3] += y;
	}
}

/*
 * SQL: _open_accum(state, spec, beta, split, cutoff, ref, halflife, terms,
 * row_type, columns, VARIADIC values): transition of _open_pass.  For a
 * closed deal, and each feature with a survivor curve whose value the deal
 * has, every knot at or below that value gets the deal's weighted score
 * w (y - p) and information w p (1 - p), where p = logistic(rest + term),
 * rest being the deal's log-odds without that feature; and its unweighted
 * closed and won counts (for explanations).
 */
Datum
dr_open_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	FitCache   *fc;
	DrModel    *m;
	DrEncoded  *e;
	double	   *v;
	double		eta,
				w,
				y;
	int			len,
				i,
				k,
				o = 0;

	dr_require_agg_context(fcinfo, "open_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("survivor curve");
	state = PG_GETARG_ARRAYTYPE_P(0);
	fc = fit_cache(fcinfo, 1, 2, 3, true, 8, ARR_NDIM(state) == 0);
	m = fc->model;
	len = 1 + 4 * open_knot_total(m);
	if (fc->terms == NULL)
	{
		ArrayType  *t;

		if (PG_ARGISNULL(7))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the terms of a survivor curve pass must not be NULL")));
		t = PG_GETARG_ARRAYTYPE_P(7);
		dr_state_array(t, FLOAT8OID, (len - 1) / 4, "survivor term");
		fc->terms = MemoryContextAlloc(fc->cxt, sizeof(double) * Max(1, (len - 1) / 4));
		memcpy(fc->terms, ARR_DATA_PTR(t), sizeof(double) * ((len - 1) / 4));
		for (k = 0; k < (len - 1) / 4; k++)
			if (isnan(fc->terms[k]) || fabs(fc->terms[k]) > DR_MAX_COEFFICIENT)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("survivor term %d is %.15g, not a finite number within +-%g",
								k + 1, fc->terms[k], DR_MAX_COEFFICIENT)));
	}
	if (len == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model has no feature with a survivor curve (\"open_knots\")")));
	if (ARR_NDIM(state) == 0)
		state = zero_float8_array(len);
	if (!open_encode(fc, fcinfo, 8, &eta, &w))
		PG_RETURN_ARRAYTYPE_P(state);
	e = fc->enc;
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, len, "survivor curve"));
	y = (double) e->outcome;
	v[0] += 1;
	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];
		double		x = e->raw[i];

		if (f->knots == NULL)
			continue;
		if (!isnan(x))
			open_add_deal(v + 1 + 4 * o, fc->terms + o, open_reach(f, x), open_rest(fc, i, eta), w, y);
		o += f->nknots;
	}
	PG_RETURN_ARRAYTYPE_P(state);
}

#define OPEN_LAMBDA 5.0			/* random-walk penalty between knots */
#define OPEN_MAX_STEP 2.0		/* damping of a Newton step, in log-odds */
#define OPEN_MAX_TERM 50.0		/* |term| kept below this (p saturates) */

/*
 * One damped Newton step for the terms of one curve (n knots, state slots
 * s, terms a, written to out): maximises the knots' log-likelihoods minus
 * OPEN_LAMBDA / 2 times the sum of squared differences of neighbouring
 * terms.  The system is tridiagonal (Thomas algorithm); every pivot is at
 * least the first knot's information, which holds every closed deal.
 */
static void
open_newton(const double *s, const double *a, int n, double *out)
{
	double	   *c = palloc(sizeof(double) * n);
	double	   *d = palloc(sizeof(double) * n);
	int			j;

	for (j = 0; j < n; j++)
	{
		double		diag = s[4 * j + 1];
		double		rhs = s[4 * j];

		if (j > 0)
		{
			diag += OPEN_LAMBDA;
			rhs -= OPEN_LAMBDA * (a[j] - a[j - 1]);
		}
		if (j < n - 1)
		{
			diag += OPEN_LAMBDA;
			rhs -= OPEN_LAMBDA * (a[j] - a[j + 1]);
		}
		/* forward elimination with the off-diagonal -OPEN_LAMBDA */
		if (j > 0)
		{
			diag -= OPEN_LAMBDA * c[j - 1];
			rhs += OPEN_LAMBDA * d[j - 1];
		}
		if (!(diag > 1e-12))
		{
			/* no information at all (a curve of one knot without deals) */
			c[j] = 0;
			d[j] = 0;
			continue;
		}
		c[j] = (j < n - 1) ? OPEN_LAMBDA / diag : 0;
		d[j] = rhs / diag;
	}
	for (j = n - 1; j >= 0; j--)
	{
		double		step = d[j] + (j < n - 1 ? c[j] * (out[j + 1] - a[j + 1]) : 0);

		step = Max(-OPEN_MAX_STEP, Min(OPEN_MAX_STEP, step));
		out[j] = Max(-OPEN_MAX_TERM, Min(OPEN_MAX_TERM, a[j] + step));
	}
}

/*
 * Make the terms of one curve non-increasing, the least-squares way
 * weighted by each knot's information plus OPEN_LAMBDA (pool adjacent
 * violators): a later knot never gets a higher term than an earlier one.
 */
static void
open_monotone(const double *s, const double *a, int n, double *out)
{
	double	   *val = palloc(sizeof(double) * n);
	double	   *wt = palloc(sizeof(double) * n);
	int		   *len = palloc(sizeof(int) * n);
	int			nb = 0,
				j,
				k,
				o = 0;

	for (j = 0; j < n; j++)
	{
		val[nb] = a[j];
		wt[nb] = s[4 * j + 1] + OPEN_LAMBDA;
		len[nb] = 1;
		nb++;
		/* a block above the one before it breaks "non-increasing": pool */
		while (nb > 1 && val[nb - 1] > val[nb - 2])
		{
			double		w = wt[nb - 2] + wt[nb - 1];

			val[nb - 2] = (wt[nb - 2] * val[nb - 2] + wt[nb - 1] * val[nb - 1]) / w;
			wt[nb - 2] = w;
			len[nb - 2] += len[nb - 1];
			nb--;
		}
	}
	for (j = 0; j < nb; j++)
		for (k = 0; k < len[j]; k++)
			out[o++] = val[j];
}

/*
 * One step of every survivor curve (nk[q] knots for the q-th of nc
 * curves, their terms one after the other): a damped Newton step, or with
 * monotone the terms made non-increasing.
 */
static void
open_steps(const int *nk, int nc, const double *v, const double *a, double *out, bool monotone)
{
	int			q,
				o = 0;

	for (q = 0; q < nc; q++)
	{
		if (monotone)
			open_monotone(v + 1 + 4 * o, a + o, nk[q], out + o);
		else
			open_newton(v + 1 + 4 * o, a + o, nk[q], out + o);
		o += nk[q];
	}
}

/*
 * SQL: _open_step(spec, state, terms, monotone) -> new terms.  Without
 * monotone, one damped Newton step of every survivor curve of the spec from
 * an _open_pass state at the given terms; with it, the terms made
 * non-increasing along each curve (the last step of training).
 */
Datum
dr_open_step(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *terms = PG_GETARG_ARRAYTYPE_P(2);
	bool		monotone = PG_GETARG_BOOL(3);
	DrModel    *m;
	double	   *v,
			   *a,
			   *out;
	Datum	   *elems;
	int			n,
				i,
				k,
				o = 0;

	m = dr_model_from_spec(PG_GETARG_DATUM(0), NULL, 0, NULL, CurrentMemoryContext);
	n = open_knot_total(m);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the model has no feature with a survivor curve (\"open_knots\")")));
	if (ARR_NDIM(state) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no closed deal to fit the survivor curves on")));
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 1 + 4 * n, "survivor curve"));
	a = (double *) ARR_DATA_PTR(dr_state_array(terms, FLOAT8OID, n, "survivor term"));
	for (k = 0; k < 1 + 4 * n; k++)
		if (isnan(v[k]) || isinf(v[k]) || (k > 0 && (k - 1) % 4 != 0 && v[k] < 0))
			dr_state_value_error("survivor curve",
								 psprintf("entry %d is %g: sums are finite, and information and counts not negative", k + 1, v[k]));
	for (k = 0; k < n; k++)
		if (isnan(a[k]) || fabs(a[k]) > DR_MAX_COEFFICIENT)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("survivor term %d is %.15g, not a finite number within +-%g",
							k + 1, a[k], DR_MAX_COEFFICIENT)));
	out = palloc(sizeof(double) * n);
	{
		int		   *nk = palloc(sizeof(int) * m->nfeatures);

		for (i = 0; i < m->nfeatures; i++)
			if (m->features[i].knots != NULL)
				nk[o++] = m->features[i].nknots;
		open_steps(nk, o, v, a, out, monotone);
	}
	elems = palloc(sizeof(Datum) * n);
	for (k = 0; k < n; k++)
		elems[k] = Float8GetDatum(out[k]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The survivor curves' fit in one read (_open_fit, docs/model.md "Open
 * deals").  _open_pass reads every closed deal once per Newton step; this
 * aggregate reads them once, keeps what a step needs of each (its weight,
 * outcome, and per curve its log-odds without that feature and how many
 * of the curve's knots its value reaches), and its final function runs
 * the same steps in memory.
 */
#define OPEN_MAGIC 0x44524f46	/* "DROF": a serialised _open_fit state */
#define OPEN_MAX_CURVES 1000
#define OPEN_MAX_KNOTS 100000

typedef struct OpenRows
{
	int			nc;				/* curves (features with knots) */
	int			nterms;			/* their knots in all */
	int		   *nk;				/* knots per curve */
	int64		seen;			/* rows the transition saw */
	int64		n;				/* rows kept */
	int64		cap;
	double	   *w;
	bool	   *y;
	double	   *rest;			/* n x nc */
	int32	   *reach;			/* n x nc: knots at or below the value */
} OpenRows;

/* A state for nc curves of nk knots each, with room for cap rows, in cxt. */
static OpenRows *
open_rows_new(MemoryContext cxt, int nc, const int *nk, int64 cap)
{
	OpenRows   *st = MemoryContextAllocZero(cxt, sizeof(OpenRows));
	int			q;

	st->nc = nc;
	st->nk = MemoryContextAlloc(cxt, sizeof(int) * Max(nc, 1));
	for (q = 0; q < nc; q++)
	{
		st->nk[q] = nk[q];
		st->nterms += nk[q];
	}
	st->cap = Max(cap, 1);
	st->w = MemoryContextAllocHuge(cxt, sizeof(double) * st->cap);
	st->y = MemoryContextAllocHuge(cxt, sizeof(bool) * st->cap);
	st->rest = MemoryContextAllocHuge(cxt, sizeof(double) * st->cap * Max(nc, 1));
	st->reach = MemoryContextAllocHuge(cxt, sizeof(int32) * st->cap * Max(nc, 1));
	return st;
}

/* Room for extra more rows, within dealrisk.train_memory. */
static void
open_rows_reserve(OpenRows *st, int64 extra)
{
	int64		row = sizeof(double) + sizeof(bool) + (int64) Max(st->nc, 1) * (sizeof(double) + sizeof(int32));
	int64		most = (int64) dr_train_memory_mb * 1024 * 1024 / row;
	int64		cap = st->cap;

	if (st->n + extra <= st->cap)
		return;
	if (st->n + extra > most)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fitting the survivor curves on more than " INT64_FORMAT " closed deals needs more memory than dealrisk.train_memory (%d MB) allows",
						st->n, dr_train_memory_mb),
				 errdetail("The fit holds " INT64_FORMAT " bytes per closed deal.", row),
				 errhint("Raise dealrisk.train_memory (SET dealrisk.train_memory = '4GB'), or train on a view of fewer deals.")));
	while (cap < st->n + extra)
		cap *= 2;
	cap = Min(cap, most);
	st->w = repalloc_huge(st->w, sizeof(double) * cap);
	st->y = repalloc_huge(st->y, sizeof(bool) * cap);
	st->rest = repalloc_huge(st->rest, sizeof(double) * cap * Max(st->nc, 1));
	st->reach = repalloc_huge(st->reach, sizeof(int32) * cap * Max(st->nc, 1));
	st->cap = cap;
}

/*
 * SQL: _open_rows(state, spec, beta, split, cutoff, ref, halflife,
 * row_type, columns, VARIADIC values): transition of _open_fit.  A closed
 * deal with a positive weight is kept as _open_accum would count it.
 */
Datum
dr_open_rows(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	OpenRows   *st = PG_ARGISNULL(0) ? NULL : (OpenRows *) PG_GETARG_POINTER(0);
	FitCache   *fc;
	DrModel    *m;
	DrEncoded  *e;
	double		eta,
				w;
	int			i,
				q = 0;
	int64		row;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("open_rows");
	fc = fit_cache(fcinfo, 1, 2, 3, true, 7, st == NULL);
	m = fc->model;
	if (st == NULL)
	{
		int		   *nk = palloc(sizeof(int) * m->nfeatures);

		for (i = 0; i < m->nfeatures; i++)
			if (m->features[i].knots != NULL)
				nk[q++] = m->features[i].nknots;
		if (q == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the model has no feature with a survivor curve (\"open_knots\")")));
		st = open_rows_new(aggcxt, q, nk, 1024);
		pfree(nk);
	}
	st->seen++;
	if (!open_encode(fc, fcinfo, 7, &eta, &w))
		PG_RETURN_POINTER(st);
	e = fc->enc;
	open_rows_reserve(st, 1);
	row = st->n++;
	st->w[row] = w;
	st->y[row] = e->outcome > 0;
	for (i = 0, q = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];
		double		x = e->raw[i];

		if (f->knots == NULL)
			continue;
		st->rest[row * st->nc + q] = isnan(x) ? 0 : open_rest(fc, i, eta);
		st->reach[row * st->nc + q] = isnan(x) ? 0 : open_reach(f, x);
		q++;
	}
	PG_RETURN_POINTER(st);
}

/* SQL: _open_rows_combine(a, b): the rows of both states (parallel workers). */
Datum
dr_open_rows_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	OpenRows   *a = PG_ARGISNULL(0) ? NULL : (OpenRows *) PG_GETARG_POINTER(0);
	OpenRows   *b = PG_ARGISNULL(1) ? NULL : (OpenRows *) PG_GETARG_POINTER(1);
	MemoryContext old;
	int			q;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("open_rows_combine");
	if (b == NULL)
		PG_RETURN_POINTER(a);
	old = MemoryContextSwitchTo(aggcxt);
	if (a == NULL)
	{
		a = open_rows_new(aggcxt, b->nc, b->nk, b->n);
		a->seen = 0;
	}
	if (a->nc != b->nc)
		dr_state_value_error("survivor curve rows", "the two states have different curves");
	for (q = 0; q < a->nc; q++)
		if (a->nk[q] != b->nk[q])
			dr_state_value_error("survivor curve rows", "the two states have different knots");
	open_rows_reserve(a, b->n);
	memcpy(a->w + a->n, b->w, sizeof(double) * b->n);
	memcpy(a->y + a->n, b->y, sizeof(bool) * b->n);
	memcpy(a->rest + a->n * a->nc, b->rest, sizeof(double) * b->n * b->nc);
	memcpy(a->reach + a->n * a->nc, b->reach, sizeof(int32) * b->n * b->nc);
	a->n += b->n;
	a->seen += b->seen;
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(a);
}

/* SQL: _open_rows_serial(state) -> bytea, for a parallel worker's state. */
Datum
dr_open_rows_serial(PG_FUNCTION_ARGS)
{
	OpenRows   *st = (OpenRows *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint32(&buf, OPEN_MAGIC);
	pq_sendint32(&buf, st->nc);
	for (int q = 0; q < st->nc; q++)
		pq_sendint32(&buf, st->nk[q]);
	pq_sendint64(&buf, st->seen);
	pq_sendint64(&buf, st->n);
	pq_sendbytes(&buf, (const char *) st->w, sizeof(double) * st->n);
	pq_sendbytes(&buf, (const char *) st->y, sizeof(bool) * st->n);
	pq_sendbytes(&buf, (const char *) st->rest, sizeof(double) * st->n * st->nc);
	pq_sendbytes(&buf, (const char *) st->reach, sizeof(int32) * st->n * st->nc);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/*
 * SQL: _open_rows_deserial(bytea, internal) -> the state, every field
 * checked: the counts, the lengths, finite positive weights, finite
 * log-odds, reaches within their curve's knots.
 */
Datum
dr_open_rows_deserial(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	MemoryContext aggcxt;
	StringInfoData buf;
	OpenRows   *st;
	int			nc,
				q,
				nk[OPEN_MAX_CURVES];
	int64		seen,
				n,
				k,
				total = 0;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("open_rows_deserial");
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < 8 || pq_getmsgint(&buf, 4) != (int) OPEN_MAGIC)
		dr_state_value_error("survivor curve rows", "not a serialised _open_fit state");
	nc = pq_getmsgint(&buf, 4);
	if (nc < 1 || nc > OPEN_MAX_CURVES)
		dr_state_value_error("survivor curve rows", psprintf("%d curves", nc));
	for (q = 0; q < nc; q++)
	{
		nk[q] = pq_getmsgint(&buf, 4);
		if (nk[q] < 1 || nk[q] > OPEN_MAX_KNOTS)
			dr_state_value_error("survivor curve rows", psprintf("curve %d has %d knots", q + 1, nk[q]));
		total += nk[q];
	}
	if (total > OPEN_MAX_KNOTS)
		dr_state_value_error("survivor curve rows", psprintf(INT64_FORMAT " knots", total));
	seen = pq_getmsgint64(&buf);
	n = pq_getmsgint64(&buf);
	if (n < 0 || seen < n || n > buf.len ||
		(int64) (buf.len - buf.cursor) != n * (int64) (sizeof(double) + sizeof(bool) + nc * (sizeof(double) + sizeof(int32))))
		dr_state_value_error("survivor curve rows", psprintf(INT64_FORMAT " rows do not fit in %d bytes", n, buf.len - buf.cursor));
	st = open_rows_new(aggcxt, nc, nk, n);
	st->seen = seen;
	st->n = n;
	pq_copymsgbytes(&buf, (char *) st->w, sizeof(double) * n);
	pq_copymsgbytes(&buf, (char *) st->y, sizeof(bool) * n);
	pq_copymsgbytes(&buf, (char *) st->rest, sizeof(double) * n * nc);
	pq_copymsgbytes(&buf, (char *) st->reach, sizeof(int32) * n * nc);
	for (k = 0; k < n; k++)
	{
		if (!(st->w[k] > 0) || isinf(st->w[k]))
			dr_state_value_error("survivor curve rows", psprintf("row " INT64_FORMAT " has weight %g", k + 1, st->w[k]));
		st->y[k] = st->y[k] != 0;
		for (q = 0; q < nc; q++)
			if (!isfinite(st->rest[k * nc + q]) || st->reach[k * nc + q] < 0 || st->reach[k * nc + q] > nk[q])
				dr_state_value_error("survivor curve rows", psprintf("row " INT64_FORMAT " is out of range", k + 1));
	}
	PG_RETURN_POINTER(st);
}

/*
 * The _open_pass state of the kept rows at terms a, into v (1 + 4 *
 * nterms): the rows, and per knot the weighted score and information and
 * the closed and won counts, summed in the order _open_accum sums them.
 */
static void
open_rows_state(const OpenRows *st, const double *a, double *v)
{
	int64		k;
	int			q;

	memset(v, 0, sizeof(double) * (1 + 4 * st->nterms));
	for (k = 0; k < st->n; k++)
	{
		double		w = st->w[k],
					y = st->y[k] ? 1.0 : 0.0;
		int			o = 0;

		if ((k & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
		v[0] += 1;
		for (q = 0; q < st->nc; q++)
		{
			open_add_deal(v + 1 + 4 * o, a + o, st->reach[k * st->nc + q],
						  st->rest[k * st->nc + q], w, y);
			o += st->nk[q];
		}
	}
}

/*
 * SQL: _open_fit_final(state) -> float8[]: {passes, the fitted terms, the
 * state of the last pass}, or NULL without a closed deal; the loop that
 * _open_terms ran over _open_pass and _open_step: Newton steps from 0 until
 * no term moves by 1e-6 (30 at most), then the terms made non-increasing.
 */
Datum
dr_open_fit_final(PG_FUNCTION_ARGS)
{
	OpenRows   *st = PG_ARGISNULL(0) ? NULL : (OpenRows *) PG_GETARG_POINTER(0);
	double	   *a,
			   *next,
			   *v,
			   *out;
	Datum	   *elems;
	int			n,
				passes = 0,
				k;

	if (st == NULL || st->seen == 0)
		PG_RETURN_NULL();
	n = st->nterms;
	a = palloc0(sizeof(double) * n);
	next = palloc(sizeof(double) * n);
	v = palloc(sizeof(double) * (1 + 4 * n));
	for (;;)
	{
		double		moved = 0;

		open_rows_state(st, a, v);
		passes++;
		open_steps(st->nk, st->nc, v, a, next, false);
		for (k = 0; k < n; k++)
			moved = Max(moved, fabs(next[k] - a[k]));
		if (passes >= 30 || moved < 1e-6)
			break;
		memcpy(a, next, sizeof(double) * n);
	}
	out = palloc(sizeof(double) * n);
	open_steps(st->nk, st->nc, v, next, out, true);
	elems = palloc(sizeof(Datum) * (2 + 5 * n));
	elems[0] = Float8GetDatum((double) passes);
	for (k = 0; k < n; k++)
		elems[1 + k] = Float8GetDatum(out[k]);
	for (k = 0; k < 1 + 4 * n; k++)
		elems[1 + n + k] = Float8GetDatum(v[k]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, 2 + 5 * n, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The boosting pass (_gbm_pass, docs/model.md "Tree models").  Each closed
 * deal is encoded once with the dictionaries of the spec; its feature
 * values, outcome, recency weight and role are kept in the aggregate's
 * memory.  Run on the sample of closed deals with a spec that has no bins
 * for the trees yet, the pass keeps each number as a float4 and its final
 * returns the bins ("tree_edges", up to 254 quantiles per number).  Run on
 * every closed deal with those bins, it keeps one byte per feature (a
 * number's bin, a category's level) and its final fits the trees: on the
 * older deals with early stopping on the holdout, then again on every
 * closed deal for as many rounds as the first fit kept.
 */
#define GBM_MAGIC 0x44524742	/* "DRGB": a serialised pass state */
#define GBM_WON 0x01			/* flags: won; bits 1-2 the holdout fit's role */
#define GBM_ROLE_SHIFT 1
#define GBM_MAX_LEVELS 254		/* codes of a category, with one for missing */
#define GBM_MAX_FEATURES 10000	/* features of a serialised state */
#define GBM_MAX_ROWS 200000000	/* rows of a pass: n * features stays in int64 */

typedef struct GbmPass
{
	int32		nf;
	bool		edges_mode;		/* values are float4 (the bins pass) */
	int64		n;
	int64		cap;
	char	   *values;			/* n x nf: float4 or uint8 codes */
	double	   *w;				/* recency weight */
	uint8	   *flags;			/* GBM_WON | role << GBM_ROLE_SHIFT */
	int32	   *nbins;			/* per feature; a code of nbins = missing */
	bool	   *categorical;	/* per feature */
	int32	   *edgeoff;		/* per feature: first of its edges (nf + 1) */
	float	   *edges;
	int32	   *catoff;			/* per feature: first level slot (nf + 1) */
	int32	   *catpos;			/* per level slot: the level's spec position */
	double	   *catwon;			/* per level slot: won and closed deals */
	double	   *catn;			/* trained on by the holdout fit */
	GbmParams	params;
	bool		refit;
} GbmPass;

/* A palloc'd copy of len bytes at p (at least one byte is allocated). */
static void *
gbm_dup(const void *p, Size len)
{
	void	   *c = palloc(Max(len, 1));

	memcpy(c, p, len);
	return c;
}

/* Bytes per row a pass and its fits hold (see dealrisk.train_memory). */
static inline int64
gbm_row_bytes(int nf, bool edges_mode)
{
	return edges_mode ? 4 * (int64) nf + 9 : 90 + 4 * (int64) nf;
}

/* A number from the "gbm" object of a spec, or dflt when absent. */
static double
gbm_param(Jsonb *spec, const char *key, double dflt)
{
	JsonbValue	k,
			   *obj,
			   *v;
	Jsonb	   *inner;

	k.type = jbvString;
	k.val.string.val = "gbm";
	k.val.string.len = 3;
	obj = findJsonbValueFromContainer(&spec->root, JB_FOBJECT, &k);
	if (obj == NULL || obj->type != jbvBinary)
		return dflt;
	inner = JsonbValueToJsonb(obj);
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&inner->root, JB_FOBJECT, &k);
	if (v == NULL)
		return dflt;
	if (v->type == jbvBool)
		return v->val.boolean ? 1 : 0;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("boosting parameter \"%s\" must be a number", key)));
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
}

/* A checked boosting parameter of the spec. */
static double
gbm_checked(Jsonb *spec, const char *key, double dflt, double lo, double hi, bool lo_open)
{
	return gbm_check_param(key, gbm_param(spec, key, dflt), lo, hi, lo_open);
}

/* Grow the pass's row arrays to hold at least one more row. */
static void
gbm_pass_grow(GbmPass *s, MemoryContext cxt)
{
	int64		cap = s->cap == 0 ? 1024 : 2 * s->cap;
	int64		limit = (int64) dr_train_memory_mb * 1024 * 1024;
	int			width = s->edges_mode ? 4 * s->nf : s->nf;

	int64		most = Min(limit / gbm_row_bytes(s->nf, s->edges_mode), GBM_MAX_ROWS);

	if (s->n + 1 > most)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("training a tree model on more than " INT64_FORMAT " closed deals needs more memory than dealrisk.train_memory (%d MB) allows",
						s->n, dr_train_memory_mb),
				 errdetail("A tree model holds about " INT64_FORMAT " bytes per closed deal while it is trained.",
						   gbm_row_bytes(s->nf, s->edges_mode)),
				 errhint("Raise dealrisk.train_memory (SET dealrisk.train_memory = '4GB'), or train on a view of fewer deals.")));
	cap = Min(cap, most);
	if (s->cap == 0)
	{
		s->values = MemoryContextAllocHuge(cxt, (Size) cap * width);
		s->w = MemoryContextAllocHuge(cxt, (Size) cap * sizeof(double));
		s->flags = MemoryContextAllocHuge(cxt, (Size) cap);
	}
	else
	{
		s->values = repalloc_huge(s->values, (Size) cap * width);
		s->w = repalloc_huge(s->w, (Size) cap * sizeof(double));
		s->flags = repalloc_huge(s->flags, (Size) cap);
	}
	s->cap = cap;
}

/*
 * A new pass state for the model of fc, in the aggregate's context cxt:
 * the bins of each feature from the spec (edges mode when a number has
 * none) and the boosting parameters.
 */
static GbmPass *
gbm_pass_new(FitCache *fc, Jsonb *spec, MemoryContext cxt)
{
	DrModel    *m = fc->model;
	GbmPass    *s = MemoryContextAllocZero(cxt, sizeof(GbmPass));
	int			i,
				k,
				nedges = 0,
				nslots = 0;

	s->nf = m->nfeatures;
	s->nbins = MemoryContextAllocZero(cxt, sizeof(int32) * m->nfeatures);
	s->categorical = MemoryContextAlloc(cxt, sizeof(bool) * m->nfeatures);
	s->edgeoff = MemoryContextAlloc(cxt, sizeof(int32) * (m->nfeatures + 1));
	s->catoff = MemoryContextAlloc(cxt, sizeof(int32) * (m->nfeatures + 1));
	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];

		s->categorical[i] = f->kind == DR_FEAT_CATEGORICAL;
		s->edgeoff[i] = nedges;
		s->catoff[i] = nslots;
		if (s->categorical[i])
		{
			if (f->nlevels > GBM_MAX_LEVELS)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("feature \"%s\" has %d levels; the trees of a model split categories of at most %d levels",
								f->name, f->nlevels, GBM_MAX_LEVELS),
						 errhint("Pool rare levels into \"(other)\".")));
			s->nbins[i] = f->nlevels;
			nslots += f->nlevels;
		}
		else if (f->tree_edges == NULL)
			s->edges_mode = true;
		else
		{
			s->nbins[i] = f->ntree_edges + 1;
			nedges += f->ntree_edges;
		}
	}
	s->edgeoff[m->nfeatures] = nedges;
	s->catoff[m->nfeatures] = nslots;
	s->edges = MemoryContextAlloc(cxt, sizeof(float) * Max(nedges, 1));
	s->catpos = MemoryContextAlloc(cxt, sizeof(int32) * Max(nslots, 1));
	s->catwon = MemoryContextAllocZero(cxt, sizeof(double) * Max(nslots, 1));
	s->catn = MemoryContextAllocZero(cxt, sizeof(double) * Max(nslots, 1));
	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];

		for (k = 0; !s->categorical[i] && f->tree_edges && k < f->ntree_edges; k++)
			s->edges[s->edgeoff[i] + k] = (float) f->tree_edges[k];
		for (k = 0; s->categorical[i] && k < f->nlevels; k++)
			s->catpos[s->catoff[i] + k] = f->colpos[k];
	}
	s->params.rounds = (int) gbm_checked(spec, "rounds", 300, 1, GBM_MAX_ROUNDS, false);
	s->params.eta = gbm_checked(spec, "learning_rate", 0.1, 0, 1, true);
	s->params.max_depth = (int) gbm_checked(spec, "max_depth", 4, 1, GBM_MAX_DEPTH, false);
	s->params.lambda = gbm_checked(spec, "lambda", 1, 0, GBM_MAX_LAMBDA, false);
	s->params.min_child_weight = gbm_checked(spec, "min_child_weight", 1, 0, GBM_MAX_CHILD_WEIGHT, false);
	s->params.subsample = gbm_checked(spec, "subsample", 1, 0, 1, true);
	s->params.colsample = gbm_checked(spec, "colsample", 1, 0, 1, true);
	s->params.early_stop = (int) gbm_checked(spec, "early_stopping_rounds", 30, 0, GBM_MAX_ROUNDS, false);
	s->params.seed = (int64) gbm_checked(spec, "seed", 42, 0, 2147483647, false);
	s->refit = gbm_checked(spec, "refit", 1, 0, 1, false) != 0;
	s->params.notices = true;
	return s;
}

/* The bin of a number among sorted float4 edges: how many are <= x. */
static inline int
gbm_bin(const float *edges, int nedges, double x)
{
	float		v = (float) x;
	int			lo = 0,
				hi = nedges;

	/* the first edge e with v < e, as the tree walker compares (trees.c) */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (v < edges[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/*
 * SQL: _gbm_rows(state, holdout, spec, beta, split, cutoff, ref, halflife,
 * row_type, columns, VARIADIC values): transition of _gbm_pass.  holdout
 * says whether a deal is in the holdout (NULL: closed on or after cutoff
 * is, one without a close date is left out of the holdout fit).
 */
Datum
dr_gbm_rows(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	GbmPass    *s;
	FitCache   *fc;
	DrEncoded  *e;

	double		w;
	int			i,
				role;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("_gbm_rows");
	s = PG_ARGISNULL(0) ? NULL : (GbmPass *) PG_GETARG_POINTER(0);
	fc = fit_cache(fcinfo, 2, 3, 4, true, 8, s == NULL);

	if (s == NULL)
		s = gbm_pass_new(fc, PG_GETARG_JSONB_P(2), aggcxt);
	/*
	 * No leave-one-out for trees: a deal's rep rate without its own outcome
	 * is lower when it won, which trees would split on to read the answer.
	 */
	(void) encode_and_eta(fc, fcinfo, 8, false);
	e = fc->enc;
	if (e->skipped || e->outcome < 0)
		PG_RETURN_POINTER(s);
	w = row_weight(fc);
	if (!(w > 0) || isinf(w))
		PG_RETURN_POINTER(s);
	if (!PG_ARGISNULL(1))
		role = PG_GETARG_BOOL(1) ? GBM_HOLDOUT : GBM_TRAIN;
	else if (PG_ARGISNULL(5))
		role = GBM_TRAIN;
	else if (e->closed_date == DR_NO_DATE)
		role = GBM_SKIP;		/* the refit only */
	else
		role = e->closed_date >= PG_GETARG_DATEADT(5) ? GBM_HOLDOUT : GBM_TRAIN;
	if (s->n == s->cap)
		gbm_pass_grow(s, aggcxt);
	s->w[s->n] = w;
	s->flags[s->n] = (e->outcome == 1 ? GBM_WON : 0) | (role << GBM_ROLE_SHIFT);
	for (i = 0; i < s->nf; i++)
	{
		int			lvl = e->level[i];

		if (s->edges_mode)
		{
			float	   *v = (float *) s->values + (Size) s->n * s->nf;

			v[i] = s->categorical[i] ? 0 : (float) e->raw[i];
		}
		else
		{
			uint8	   *c = (uint8 *) s->values + (Size) s->n * s->nf;

			if (s->categorical[i])
			{
				c[i] = lvl < 0 ? (uint8) s->nbins[i] : (uint8) lvl;
				if (lvl >= 0 && role == GBM_TRAIN)
				{
					s->catn[s->catoff[i] + lvl] += 1;
					s->catwon[s->catoff[i] + lvl] += e->outcome;
				}
			}
			else
				c[i] = isnan(e->raw[i]) ? (uint8) s->nbins[i] :
					(uint8) gbm_bin(s->edges + s->edgeoff[i], s->nbins[i] - 1, e->raw[i]);
		}
	}
	s->n++;
	PG_RETURN_POINTER(s);
}

/* Whether two pass states can be merged: the same features and bins. */
static bool
gbm_pass_compatible(const GbmPass *a, const GbmPass *b)
{
	return a->nf == b->nf && a->edges_mode == b->edges_mode &&
		memcmp(a->nbins, b->nbins, sizeof(int32) * a->nf) == 0 &&
		memcmp(a->categorical, b->categorical, sizeof(bool) * a->nf) == 0 &&
		memcmp(a->edgeoff, b->edgeoff, sizeof(int32) * (a->nf + 1)) == 0 &&
		memcmp(a->catoff, b->catoff, sizeof(int32) * (a->nf + 1)) == 0 &&
		memcmp(a->edges, b->edges, sizeof(float) * a->edgeoff[a->nf]) == 0 &&
		memcmp(a->catpos, b->catpos, sizeof(int32) * a->catoff[a->nf]) == 0 &&
		memcmp(&a->params, &b->params, sizeof(GbmParams)) == 0 &&
		a->refit == b->refit;
}

/* SQL: _gbm_combine(a, b): a with b's rows and level counts appended. */
Datum
dr_gbm_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt,
				old;
	GbmPass    *a = PG_ARGISNULL(0) ? NULL : (GbmPass *) PG_GETARG_POINTER(0);
	GbmPass    *b = PG_ARGISNULL(1) ? NULL : (GbmPass *) PG_GETARG_POINTER(1);
	int			width;
	int64		k;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("_gbm_combine");
	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
	{
		/* copy b into the aggregate's context */
		old = MemoryContextSwitchTo(aggcxt);
		a = palloc(sizeof(GbmPass));
		*a = *b;
		a->n = a->cap = 0;
		a->values = NULL;
		a->nbins = gbm_dup(b->nbins, sizeof(int32) * b->nf);
		a->categorical = gbm_dup(b->categorical, sizeof(bool) * b->nf);
		a->edgeoff = gbm_dup(b->edgeoff, sizeof(int32) * (b->nf + 1));
		a->catoff = gbm_dup(b->catoff, sizeof(int32) * (b->nf + 1));
		a->edges = gbm_dup(b->edges, sizeof(float) * Max(b->edgeoff[b->nf], 1));
		a->catpos = gbm_dup(b->catpos, sizeof(int32) * Max(b->catoff[b->nf], 1));
		a->catwon = palloc0(sizeof(double) * Max(b->catoff[b->nf], 1));
		a->catn = palloc0(sizeof(double) * Max(b->catoff[b->nf], 1));
		MemoryContextSwitchTo(old);
	}
	else if (!gbm_pass_compatible(a, b))
		elog(ERROR, "boosting pass states of different models cannot be merged");
	width = a->edges_mode ? 4 * a->nf : a->nf;
	for (k = 0; k < b->n; k++)
	{
		if ((k & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
		if (a->n == a->cap)
			gbm_pass_grow(a, aggcxt);
		memcpy(a->values + (Size) a->n * width, b->values + (Size) k * width, width);
		a->w[a->n] = b->w[k];
		a->flags[a->n] = b->flags[k];
		a->n++;
	}
	for (k = 0; k < a->catoff[a->nf]; k++)
	{
		a->catwon[k] += b->catwon[k];
		a->catn[k] += b->catn[k];
	}
	PG_RETURN_POINTER(a);
}

/* Append n bytes at p to buf. */
#define GBM_PUT(buf, p, len) appendBinaryStringInfo((buf), (const char *) (p), (len))

/* SQL: _gbm_serial(state) -> bytea, for parallel workers. */
Datum
dr_gbm_serial(PG_FUNCTION_ARGS)
{
	GbmPass    *s = (GbmPass *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int32		head[4];
	int			width = s->edges_mode ? 4 * s->nf : s->nf;
	bytea	   *out;

	if (!AggCheckCallContext(fcinfo, NULL))
		dr_agg_context_error("_gbm_serial");
	initStringInfo(&buf);
	head[0] = GBM_MAGIC;
	head[1] = s->nf;
	head[2] = s->edges_mode;
	head[3] = s->refit;
	GBM_PUT(&buf, head, sizeof(head));
	GBM_PUT(&buf, &s->n, sizeof(int64));
	GBM_PUT(&buf, &s->params, sizeof(GbmParams));
	GBM_PUT(&buf, s->nbins, sizeof(int32) * s->nf);
	GBM_PUT(&buf, s->categorical, sizeof(bool) * s->nf);
	GBM_PUT(&buf, s->edgeoff, sizeof(int32) * (s->nf + 1));
	GBM_PUT(&buf, s->catoff, sizeof(int32) * (s->nf + 1));
	GBM_PUT(&buf, s->edges, sizeof(float) * s->edgeoff[s->nf]);
	GBM_PUT(&buf, s->catpos, sizeof(int32) * s->catoff[s->nf]);
	GBM_PUT(&buf, s->catwon, sizeof(double) * s->catoff[s->nf]);
	GBM_PUT(&buf, s->catn, sizeof(double) * s->catoff[s->nf]);
	GBM_PUT(&buf, s->values, (Size) s->n * width);
	GBM_PUT(&buf, s->w, sizeof(double) * s->n);
	GBM_PUT(&buf, s->flags, s->n);
	out = (bytea *) palloc(VARHDRSZ + buf.len);
	SET_VARSIZE(out, VARHDRSZ + buf.len);
	memcpy(VARDATA(out), buf.data, buf.len);
	pfree(buf.data);
	PG_RETURN_BYTEA_P(out);
}

/* Take len bytes from a serialised state, or fail: it is shorter than it says. */
static const char *
gbm_take(const char **p, const char *end, Size len)
{
	const char *at = *p;

	if ((Size) (end - at) < len)
		dr_state_value_error("boosting pass", "The serialised state is shorter than its header says.");
	*p += len;
	return at;
}

/*
 * SQL: _gbm_deserial(bytea, internal) -> state.  Every count, offset, code,
 * weight and flag is checked, so that a forged state cannot index past an
 * array or feed the fit a non-finite weight.
 */
Datum
dr_gbm_deserial(PG_FUNCTION_ARGS)
{
	bytea	   *in = PG_GETARG_BYTEA_PP(0);
	const char *p = VARDATA_ANY(in),
			   *end = p + VARSIZE_ANY_EXHDR(in);
	MemoryContext aggcxt,
				old;
	GbmPass    *s;
	int32		head[4];
	int			i,
				width;
	int64		k,
				nslots,
				nedges;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		dr_agg_context_error("_gbm_deserial");
	old = MemoryContextSwitchTo(aggcxt);
	s = palloc0(sizeof(GbmPass));
	memcpy(head, gbm_take(&p, end, sizeof(head)), sizeof(head));
	if (head[0] != GBM_MAGIC || head[1] < 1 || head[1] > GBM_MAX_FEATURES ||
		(head[2] != 0 && head[2] != 1) || (head[3] != 0 && head[3] != 1))
		dr_state_value_error("boosting pass", "Its header is not one a pass writes.");
	s->nf = head[1];
	s->edges_mode = head[2];
	s->refit = head[3];
	memcpy(&s->n, gbm_take(&p, end, sizeof(int64)), sizeof(int64));
	memcpy(&s->params, gbm_take(&p, end, sizeof(GbmParams)), sizeof(GbmParams));
	if (s->n < 0 || s->n > GBM_MAX_ROWS || !gbm_params_valid(&s->params))
		dr_state_value_error("boosting pass", "Its row count or parameters are out of range.");
	s->nbins = gbm_dup(gbm_take(&p, end, sizeof(int32) * s->nf), sizeof(int32) * s->nf);
	s->categorical = gbm_dup(gbm_take(&p, end, sizeof(bool) * s->nf), sizeof(bool) * s->nf);
	s->edgeoff = gbm_dup(gbm_take(&p, end, sizeof(int32) * (s->nf + 1)), sizeof(int32) * (s->nf + 1));
	s->catoff = gbm_dup(gbm_take(&p, end, sizeof(int32) * (s->nf + 1)), sizeof(int32) * (s->nf + 1));
	if (s->edgeoff[0] != 0 || s->catoff[0] != 0)
		dr_state_value_error("boosting pass", "Its offsets do not start at 0.");
	for (i = 0; i < s->nf; i++)
	{
		int			ne = s->edgeoff[i + 1] - s->edgeoff[i],
					nl = s->catoff[i + 1] - s->catoff[i];

		if ((s->categorical[i] != 0 && s->categorical[i] != 1) ||
			s->nbins[i] < 0 || s->nbins[i] > GBM_MAX_BINS ||
			ne < 0 || ne > GBM_MAX_BINS - 1 || nl < 0 || nl > GBM_MAX_LEVELS ||
			(s->categorical[i] ? (ne != 0 || nl != s->nbins[i]) :
			 (nl != 0 || (!s->edges_mode && ne + 1 != s->nbins[i]))))
			dr_state_value_error("boosting pass",
								 psprintf("Feature %d has inconsistent bins.", i + 1));
	}
	nedges = s->edgeoff[s->nf];
	nslots = s->catoff[s->nf];
	s->edges = gbm_dup(gbm_take(&p, end, sizeof(float) * nedges), sizeof(float) * Max(nedges, 1));
	s->catpos = gbm_dup(gbm_take(&p, end, sizeof(int32) * nslots), sizeof(int32) * Max(nslots, 1));
	s->catwon = gbm_dup(gbm_take(&p, end, sizeof(double) * nslots), sizeof(double) * Max(nslots, 1));
	s->catn = gbm_dup(gbm_take(&p, end, sizeof(double) * nslots), sizeof(double) * Max(nslots, 1));
	for (i = 0; i < s->nf; i++)
		for (k = s->edgeoff[i]; k < s->edgeoff[i + 1]; k++)
			if (!isfinite(s->edges[k]) || (k > s->edgeoff[i] && s->edges[k] <= s->edges[k - 1]))
				dr_state_value_error("boosting pass", "Its bin edges are not finite and increasing.");
	for (k = 0; k < nslots; k++)
		if (!(s->catn[k] >= 0 && s->catwon[k] >= 0 && s->catwon[k] <= s->catn[k]) ||
			isinf(s->catn[k]) || s->catpos[k] < 0 || s->catpos[k] >= GBM_MAX_LEVELS)
			dr_state_value_error("boosting pass", "Its level counts are not consistent.");
	width = s->edges_mode ? 4 * s->nf : s->nf;
	s->cap = s->n;
	{
		/* sizes checked against the input before anything is allocated */
		const char *vals = gbm_take(&p, end, (Size) s->n * width);
		const char *ws = gbm_take(&p, end, sizeof(double) * s->n);
		const char *fl = gbm_take(&p, end, s->n);

		s->values = MemoryContextAllocHuge(aggcxt, (Size) Max(s->n, 1) * width);
		memcpy(s->values, vals, (Size) s->n * width);
		s->w = MemoryContextAllocHuge(aggcxt, sizeof(double) * Max(s->n, 1));
		memcpy(s->w, ws, sizeof(double) * s->n);
		s->flags = MemoryContextAllocHuge(aggcxt, Max(s->n, 1));
		memcpy(s->flags, fl, s->n);
	}
	if (p != end)
		dr_state_value_error("boosting pass", "The serialised state is longer than its header says.");
	for (k = 0; k < s->n; k++)
	{
		if ((k & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
		if (!(s->w[k] > 0) || isinf(s->w[k]) || (s->flags[k] >> GBM_ROLE_SHIFT) > GBM_HOLDOUT ||
			(s->flags[k] & ~((3 << GBM_ROLE_SHIFT) | GBM_WON)) != 0)
			dr_state_value_error("boosting pass", psprintf("Row " INT64_FORMAT " has a bad weight or flags.", k + 1));
		for (i = 0; !s->edges_mode && i < s->nf; i++)
			if (((uint8 *) s->values)[(Size) k * s->nf + i] > s->nbins[i])
				dr_state_value_error("boosting pass",
									 psprintf("Row " INT64_FORMAT " has a code past the bins of feature %d.", k + 1, i + 1));
	}
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(s);
}

/* qsort comparator of float4 values. */
static int
cmp_float4(const void *a, const void *b)
{
	float		x = *(const float *) a,
				y = *(const float *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The bins pass's final: per number, its distinct values when there are at
 * most 255 of them (each but the smallest an edge), else the values at
 * the 1/255 .. 254/255 quantiles, without repeats.
 */
static Datum
gbm_edges_result(GbmPass *s)
{
	StringInfoData buf;
	float	   *v = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(float) * Max(s->n, 1));
	int			i;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"tree_edges\": [");
	for (i = 0; i < s->nf; i++)
	{
		int64		cnt = 0,
					k,
					distinct = 0;
		float		last = 0;
		int			nout = 0;

		CHECK_FOR_INTERRUPTS();
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (s->categorical[i])
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		for (k = 0; k < s->n; k++)
		{
			float		x = ((float *) s->values)[(Size) k * s->nf + i];

			if ((k & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();

			/* an infinite number still splits: only NaN is missing */
			if (!isnan(x))
				v[cnt++] = x;
		}
		qsort(v, cnt, sizeof(float), cmp_float4);
		for (k = 0; k < cnt; k++)
			if (k == 0 || v[k] != v[k - 1])
				distinct++;
		appendStringInfoChar(&buf, '[');
		for (k = 1; k < cnt && distinct <= GBM_MAX_BINS; k++)
			if (v[k] != v[k - 1] && isfinite(v[k]))
				appendStringInfo(&buf, "%s%.9g", nout++ > 0 ? ", " : "", v[k]);
		for (k = 1; k < GBM_MAX_BINS && distinct > GBM_MAX_BINS; k++)
		{
			float		e = v[(int64) ((double) k * cnt / GBM_MAX_BINS)];

			if (e > v[0] && (nout == 0 || e > last) && isfinite(e))
			{
				appendStringInfo(&buf, "%s%.9g", nout++ > 0 ? ", " : "", e);
				last = e;
			}
		}
		appendStringInfoChar(&buf, ']');
	}
	appendStringInfoString(&buf, "]}");
	pfree(v);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/* Sort context: rows compared by their codes, then flags, then weight. */
typedef struct GbmSortCxt
{
	const uint8 *codes;
	const uint8 *flags;
	const double *w;
	int			nf;
} GbmSortCxt;

/* qsort_arg comparator of row indexes (see GbmSortCxt). */
static int
cmp_gbm_row(const void *a, const void *b, void *arg)
{
	const GbmSortCxt *c = arg;
	int64		i = *(const int64 *) a,
				j = *(const int64 *) b;
	int			r = memcmp(c->codes + (Size) i * c->nf, c->codes + (Size) j * c->nf, c->nf);

	if (r != 0)
		return r;
	if (c->flags[i] != c->flags[j])
		return c->flags[i] < c->flags[j] ? -1 : 1;
	return c->w[i] < c->w[j] ? -1 : c->w[i] > c->w[j] ? 1 : 0;
}

/* Append an ensemble to buf as the spec's "trees" object, thresholds in feature units. */
static void
gbm_append_trees(StringInfo buf, const GbmOut *o, const GbmPass *s)
{
	int			k;

	appendStringInfoString(buf, "{\"start\": [");
	for (k = 0; k < o->ntrees; k++)
		appendStringInfo(buf, "%s%d", k ? ", " : "", o->start[k]);
	appendStringInfoString(buf, "], \"left\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%d", k ? ", " : "", o->left[k]);
	appendStringInfoString(buf, "], \"right\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%d", k ? ", " : "", o->right[k]);
	appendStringInfoString(buf, "], \"feature\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%d", k ? ", " : "", o->feature[k]);
	appendStringInfoString(buf, "], \"threshold\": [");
	for (k = 0; k < o->nnodes; k++)
	{
		int			f = o->feature[k];
		double		t = o->threshold[k];

		/* a number's bin c + 0.5 is its edge c: x < edge goes left */
		if (o->left[k] >= 0 && !s->categorical[f])
			appendStringInfo(buf, "%s%.9g", k ? ", " : "",
							 (double) s->edges[s->edgeoff[f] + (int) (t - 0.5)]);
		else
			appendStringInfo(buf, "%s%.17g", k ? ", " : "", o->left[k] >= 0 ? t : 0.0);
	}
	appendStringInfoString(buf, "], \"default_left\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%s", k ? ", " : "", o->dl[k] ? "true" : "false");
	appendStringInfoString(buf, "], \"value\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%.17g", k ? ", " : "", o->value[k]);
	appendStringInfoString(buf, "], \"cover\": [");
	for (k = 0; k < o->nnodes; k++)
		appendStringInfo(buf, "%s%.17g", k ? ", " : "", o->cover[k]);
	appendStringInfoString(buf, "]}");
}

/* Append losses as a JSON array, null where a round's loss was not measured. */
static void
gbm_append_losses(StringInfo buf, const double *loss, int n)
{
	int			k;

	appendStringInfoChar(buf, '[');
	for (k = 0; k < n; k++)
	{
		if (isnan(loss[k]))
			appendStringInfo(buf, "%snull", k ? ", " : "");
		else
			appendStringInfo(buf, "%s%.6g", k ? ", " : "", loss[k]);
	}
	appendStringInfoChar(buf, ']');
}

/*
 * SQL: _gbm_result(state) -> jsonb, the final of _gbm_pass.  The bins pass
 * returns {"tree_edges"}; the training pass ranks each category's levels
 * by their win rate in the holdout fit's training rows (so that a split on
 * the rank separates better from worse levels), puts the rows in an order
 * that does not depend on the scan (parallel or not), fits, and returns
 * the holdout fit's and the final fit's ensembles, the ranks (per level in
 * the spec's order), the rounds and the losses.
 */
Datum
dr_gbm_result(PG_FUNCTION_ARGS)
{
	GbmPass    *s;
	uint8	   *codes,
			   *sorted,
			   *role,
			   *flags;
	bool	   *y;
	double	   *w,
			   *tl,
			   *hl,
				base = 0,
				hbase = 0;
	int64	   *order;
	int32	  **rank;
	GbmSortCxt	sc;
	GbmOut		ho,
				fo;
	GbmParams	refit;
	StringInfoData buf;
	int			i,
				run,
				n;
	int64		k,
				ntrain = 0,
				nhold = 0;

	if (!AggCheckCallContext(fcinfo, NULL))
		dr_agg_context_error("_gbm_result");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	s = (GbmPass *) PG_GETARG_POINTER(0);
	if (s->n == 0)
		PG_RETURN_NULL();
	if (s->edges_mode)
		PG_RETURN_DATUM(gbm_edges_result(s));
	n = (int) s->n;
	codes = (uint8 *) s->values;

	/* each category's levels ranked by their smoothed win rate */
	rank = palloc(sizeof(int32 *) * s->nf);
	for (i = 0; i < s->nf; i++)
	{
		int			nl = s->nbins[i],
					a,
					b;
		double	   *rate;
		int32	   *ord;

		rank[i] = NULL;
		if (!s->categorical[i])
			continue;
		rate = palloc(sizeof(double) * Max(nl, 1));
		ord = palloc(sizeof(int32) * Max(nl, 1));
		for (a = 0; a < nl; a++)
		{
			rate[a] = (s->catwon[s->catoff[i] + a] + 1.0) / (s->catn[s->catoff[i] + a] + 2.0);
			ord[a] = a;
		}
		/* insertion sort: at most 254 levels; ties keep level order */
		for (a = 1; a < nl; a++)
			for (b = a; b > 0 && rate[ord[b - 1]] > rate[ord[b]]; b--)
			{
				int32		t = ord[b];

				ord[b] = ord[b - 1];
				ord[b - 1] = t;
			}
		rank[i] = palloc(sizeof(int32) * Max(nl, 1));
		for (a = 0; a < nl; a++)
			rank[i][ord[a]] = a;
		for (k = 0; k < n; k++)
		{
			uint8	   *c = codes + (Size) k * s->nf + i;

			if (*c < nl)
				*c = (uint8) rank[i][*c];
		}
	}

	/* rows in an order of their own: codes, flags, weight */
	order = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * n);
	for (k = 0; k < n; k++)
		order[k] = k;
	sc.codes = codes;
	sc.flags = s->flags;
	sc.w = s->w;
	sc.nf = s->nf;
	qsort_arg(order, n, sizeof(int64), cmp_gbm_row, &sc);
	sorted = MemoryContextAllocHuge(CurrentMemoryContext, (Size) n * s->nf);
	w = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(double) * n);
	y = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(bool) * n);
	role = MemoryContextAllocHuge(CurrentMemoryContext, n);
	flags = s->flags;
	for (k = 0; k < n; k++)
	{
		if ((k & 0xFFFF) == 0)
			CHECK_FOR_INTERRUPTS();
		memcpy(sorted + (Size) k * s->nf, codes + (Size) order[k] * s->nf, s->nf);
		w[k] = s->w[order[k]];
		y[k] = (flags[order[k]] & GBM_WON) != 0;
		role[k] = flags[order[k]] >> GBM_ROLE_SHIFT;
		ntrain += role[k] == GBM_TRAIN;
		nhold += role[k] == GBM_HOLDOUT;
	}
	pfree(order);
	/* the pass's matrix is no longer needed */
	pfree(s->values);
	s->values = NULL;
	s->n = s->cap = 0;

	if (nhold == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("the holdout of the tree model is empty"),
				 errhint("Use a larger holdout share.")));
	tl = palloc(sizeof(double) * s->params.rounds);
	hl = palloc(sizeof(double) * s->params.rounds);
	gbm_out_init(&ho);
	run = gbm_fit(n, s->nf, sorted, s->nbins, y, w, role, &s->params, &ho, &hbase, tl, hl);

	/* the final fit: every closed deal, as many rounds as the first kept */
	gbm_out_init(&fo);
	if (s->refit && ho.ntrees > 0)
	{
		double	   *tl2 = palloc(sizeof(double) * ho.ntrees),
				   *hl2 = palloc(sizeof(double) * ho.ntrees);

		for (k = 0; k < n; k++)
			role[k] = GBM_TRAIN;
		refit = s->params;
		refit.rounds = ho.ntrees;
		refit.early_stop = 0;
		refit.notices = false;
		(void) gbm_fit(n, s->nf, sorted, s->nbins, y, w, role, &refit, &fo, &base, tl2, hl2);
	}

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"rounds_run\": %d, \"rounds_kept\": %d, \"n_train\": " INT64_FORMAT
					 ", \"n_holdout\": " INT64_FORMAT ", \"n_final\": %d, \"refit\": %s",
					 run, ho.ntrees, ntrain, nhold, s->refit && ho.ntrees > 0 ? n : (int) ntrain,
					 s->refit && ho.ntrees > 0 ? "true" : "false");
	appendStringInfo(&buf, ", \"holdout_base\": %.17g, \"holdout_trees\": ", hbase);
	gbm_append_trees(&buf, &ho, s);
	if (s->refit && ho.ntrees > 0)
	{
		appendStringInfo(&buf, ", \"base\": %.17g, \"trees\": ", base);
		gbm_append_trees(&buf, &fo, s);
	}
	else
	{
		appendStringInfo(&buf, ", \"base\": %.17g, \"trees\": ", hbase);
		gbm_append_trees(&buf, &ho, s);
	}
	appendStringInfoString(&buf, ", \"train_loss\": ");
	gbm_append_losses(&buf, tl, run);
	appendStringInfoString(&buf, ", \"holdout_loss\": ");
	gbm_append_losses(&buf, hl, run);
	appendStringInfoString(&buf, ", \"tree_rank\": [");
	for (i = 0; i < s->nf; i++)
	{
		int			a;

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (rank[i] == NULL)
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		{
			/* per level in the spec's order */
			int32	   *bypos = palloc(sizeof(int32) * Max(s->nbins[i], 1));

			for (a = 0; a < s->nbins[i]; a++)
				bypos[s->catpos[s->catoff[i] + a]] = rank[i][a];
			appendStringInfoChar(&buf, '[');
			for (a = 0; a < s->nbins[i]; a++)
				appendStringInfo(&buf, "%s%d", a ? ", " : "", bypos[a]);
			appendStringInfoChar(&buf, ']');
		}
	}
	appendStringInfoString(&buf, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* The two models of a paired evaluation (see dr_eval_pair_accum). */
typedef struct PairCache
{
	FitCache   *a;
	FitCache   *b;
} PairCache;

/* The log loss of a closed deal's outcome y under log-odds eta, without overflow. */
static inline double
deal_log_loss(double eta, int y)
{
	double		z = y ? eta : -eta;	/* log-odds of what happened */

	return z >= 0 ? log1p(exp(-z)) : -z + log1p(exp(z));
}

/*
 * SQL: _eval_pair_accum(state, spec_a, beta_a, spec_b, beta_b, split,
 * cutoff, row_type, columns, VARIADIC values): transition of _eval_pair.
 * Scores a closed deal with both models and adds d = (log loss under a) -
 * (log loss under b) to {rows, sum d, sum d^2}: how much better b does on
 * the same deals, and how surely (train()'s 'auto').
 */
Datum
dr_eval_pair_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	PairCache  *pc;
	FitCache   *fa,
			   *fb;
	double	   *v,
				d,
				eta_a,
				eta_b;
	bool		new_run;

	dr_require_agg_context(fcinfo, "eval_pair_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("paired evaluation");
	state = PG_GETARG_ARRAYTYPE_P(0);
	new_run = ARR_NDIM(state) == 0;
	pc = (PairCache *) fcinfo->flinfo->fn_extra;
	if (pc == NULL)
		pc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PairCache));
	/* each model keeps its own cache: fit_cache keeps it in fn_extra */
	fcinfo->flinfo->fn_extra = pc->a;
	fa = fit_cache(fcinfo, 1, 2, 5, false, 7, new_run);
	fcinfo->flinfo->fn_extra = pc->b;
	fb = fit_cache(fcinfo, 3, 4, 5, false, 7, new_run);
	pc->a = fa;
	pc->b = fb;
	fcinfo->flinfo->fn_extra = pc;
	if (new_run)
		state = zero_float8_array(3);
	eta_a = encode_and_eta(fa, fcinfo, 7, false);
	if (fa->enc->skipped || fa->enc->outcome < 0)
		PG_RETURN_ARRAYTYPE_P(state);
	eta_b = encode_and_eta(fb, fcinfo, 7, false);
	d = deal_log_loss(eta_a, fa->enc->outcome) - deal_log_loss(eta_b, fa->enc->outcome);
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 3, "paired evaluation"));
	v[0] += 1;
	v[1] += d;
	v[2] += d * d;
	PG_RETURN_ARRAYTYPE_P(state);
}
