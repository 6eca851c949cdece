/*
 * history.c
 *	  Stage history: how long deals stay in a stage.
 *
 * A stay that has not ended (the deal is still in the stage) says only that
 * the stay is at least that long.  Quantiles of plain ended stays would
 * leave out exactly the long ones, so days in stage are read from the
 * Kaplan-Meier estimate of the share of stays still going after t days,
 * which counts an unfinished stay as at risk until it was last seen.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_km_quantiles);

typedef struct Stay
{
	double		days;
	bool		ended;
} Stay;

/* Order stays by length; at a tie an ended stay comes first (it left before
 * the unfinished one was last seen, as Kaplan-Meier counts ties). */
static int
stay_cmp(const void *a, const void *b)
{
	const Stay *x = (const Stay *) a;
	const Stay *y = (const Stay *) b;

	if (x->days < y->days)
		return -1;
	if (x->days > y->days)
		return 1;
	return (int) y->ended - (int) x->ended;
}

/* The elements of a one-dimensional array argument, NULLs marked; errors
 * name the argument. */
static void
array_elems(ArrayType *a, Oid elemtype, const char *what, Datum **values, bool **nulls, int *n)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array, got %d dimensions", what, ARR_NDIM(a))));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elemtype, typlen, typbyval, typalign, values, nulls, n);
}

/*
 * dealrisk._km_quantiles(days float8[], ended boolean[], probs float8[])
 *		For each p of probs, the fewest days after which at most a share 1 - p
 *		of the stays is estimated to go on (Kaplan-Meier): p = 0.5 is the
 *		median stay.  NULL where unfinished stays leave the estimate above
 *		1 - p, and for every p when no stay is usable.  Stays with a NULL,
 *		negative or non-finite length, or a NULL ended, are left out.
 */
Datum
dr_km_quantiles(PG_FUNCTION_ARGS)
{
	ArrayType  *days_a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *ended_a = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *probs_a = PG_GETARG_ARRAYTYPE_P(2);
	Datum	   *days;
	bool	   *days_null;
	Datum	   *ended;
	bool	   *ended_null;
	Datum	   *probs;
	bool	   *probs_null;
	int			n_days,
				n_ended,
				n_probs;
	Stay	   *stays;
	int			n = 0;
	Datum	   *out;
	bool	   *out_null;
	int			dims[1];
	int			lbs[1] = {1};
	double		surv = 1.0;
	int			i,
				j;

	array_elems(days_a, FLOAT8OID, "days", &days, &days_null, &n_days);
	array_elems(ended_a, BOOLOID, "ended", &ended, &ended_null, &n_ended);
	array_elems(probs_a, FLOAT8OID, "probs", &probs, &probs_null, &n_probs);
	if (n_days != n_ended)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("days and ended must have the same length, got %d and %d", n_days, n_ended)));
	for (j = 0; j < n_probs; j++)
	{
		double		p = probs_null[j] ? NAN : DatumGetFloat8(probs[j]);

		if (!(p > 0.0 && p < 1.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("probs must lie strictly between 0 and 1, got %s",
							probs_null[j] ? "NULL" : float8out_internal(p)),
					 errhint("E.g. '{0.5,0.9}' for the median and the 90th percentile.")));
	}

	/* (n_days is an int from deconstruct_array: the product cannot overflow Size) */
	stays = palloc_extended(sizeof(Stay) * (Size) Max(n_days, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < n_days; i++)
	{
		double		d;

		if (days_null[i] || ended_null[i])
			continue;
		d = DatumGetFloat8(days[i]);
		if (!isfinite(d) || d < 0.0)
			continue;
		stays[n].days = d;
		stays[n].ended = DatumGetBool(ended[i]);
		n++;
	}
	qsort(stays, n, sizeof(Stay), stay_cmp);

	out = palloc(sizeof(Datum) * (Size) Max(n_probs, 1));
	out_null = palloc(sizeof(bool) * (Size) Max(n_probs, 1));
	for (j = 0; j < n_probs; j++)
		out_null[j] = true;

	/* walk the distinct lengths: at each, the stays ended there leave */
	i = 0;
	while (i < n)
	{
		double		t = stays[i].days;
		int64		at_risk = n - i;
		int64		left = 0;

		CHECK_FOR_INTERRUPTS();
		while (i < n && stays[i].days == t)
		{
			if (stays[i].ended)
				left++;
			i++;
		}
		if (left == 0)
			continue;
		surv *= 1.0 - (double) left / (double) at_risk;
		for (j = 0; j < n_probs; j++)
		{
			/* (a relative slack so that 0.5 of 10 stays is reached at the 5th) */
			if (out_null[j] && surv <= 1.0 - DatumGetFloat8(probs[j]) + 1e-12)
			{
				out[j] = Float8GetDatum(t);
				out_null[j] = false;
			}
		}
	}

	if (n_probs == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(FLOAT8OID));
	dims[0] = n_probs;
	PG_RETURN_ARRAYTYPE_P(construct_md_array(out, out_null, 1, dims, lbs, FLOAT8OID,
											 sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
