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

PG_FUNCTION_INFO_V1(dr_irls_accum);
PG_FUNCTION_INFO_V1(dr_irls_solve);
PG_FUNCTION_INFO_V1(dr_irls_decrement);
PG_FUNCTION_INFO_V1(dr_eval_accum);
PG_FUNCTION_INFO_V1(dr_eval_final);
PG_FUNCTION_INFO_V1(dr_open_accum);
PG_FUNCTION_INFO_V1(dr_open_step);

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
			dr_state_array(beta, FLOAT8OID, fc->model->ncols, "coefficient");
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
	for (k = 0; k < e->nnz; k++)
		eta += fc->beta[e->idx[k]] * e->val[k];
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
	eta = encode_and_eta(fc, fcinfo, 8, true);
	e = fc->enc;
	if (e->skipped || e->outcome < 0)
		PG_RETURN_ARRAYTYPE_P(state);
	w = row_weight(fc);
	if (!(w > 0) || isinf(w))
		PG_RETURN_ARRAYTYPE_P(state);
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, len, "survivor curve"));
	y = (double) e->outcome;
	v[0] += 1;
	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];
		double		x = e->raw[i];
		double		rest = eta;
		int			j;

		if (f->knots == NULL)
			continue;
		if (!isnan(x))
		{
			for (k = 1; k < e->nnz; k++)
				if (m->colfeat[e->idx[k]] == i)
					rest -= fc->beta[e->idx[k]] * e->val[k];
			for (j = 0; j < f->nknots && f->knots[j] <= x; j++)
			{
				double		p = dr_logistic(rest + fc->terms[o + j]);
				double	   *slot = v + 1 + 4 * (o + j);

				slot[0] += w * (y - p);
				slot[1] += w * p * (1 - p);
				slot[2] += 1;
				slot[3] += y;
			}
		}
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
	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];

		if (f->knots == NULL)
			continue;
		if (monotone)
			open_monotone(v + 1 + 4 * o, a + o, f->nknots, out + o);
		else
			open_newton(v + 1 + 4 * o, a + o, f->nknots, out + o);
		o += f->nknots;
	}
	elems = palloc(sizeof(Datum) * n);
	for (k = 0; k < n; k++)
		elems[k] = Float8GetDatum(out[k]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
