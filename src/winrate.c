/*
 * winrate.c
 *	  Win-rate aggregates: plain, value-weighted and with a Wilson interval.
 *
 * States are plain arrays so that parallel query (and Citus) can ship and
 * merge them:
 *	  win_rate(bool), win_rate_ci(bool):   int8[2]   {won, closed}
 *	  win_rate_ci(bool, level):            float8[3] {won, closed, level}
 *	  win_rate(bool, numeric):             float8[3] {won amount, closed amount, closed}
 * Transition functions update the state in place, which is allowed because
 * the state lives in the aggregate's memory context (checked).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_winrate_accum);
PG_FUNCTION_INFO_V1(dr_winrate_inv);
PG_FUNCTION_INFO_V1(dr_int8_state_combine);
PG_FUNCTION_INFO_V1(dr_winrate_final);
PG_FUNCTION_INFO_V1(dr_winrate_ci_final);
PG_FUNCTION_INFO_V1(dr_winrate_ci_level_accum);
PG_FUNCTION_INFO_V1(dr_winrate_ci_level_combine);
PG_FUNCTION_INFO_V1(dr_winrate_ci_level_final);
PG_FUNCTION_INFO_V1(dr_winrate_amount_accum);
PG_FUNCTION_INFO_V1(dr_float8_state_combine);
PG_FUNCTION_INFO_V1(dr_winrate_amount_final);

#define DEFAULT_LEVEL 0.95

/* Combine loops check for interrupts every this many elements. */
#define COMBINE_STRIDE 65536

/*
 * Check the counts a final function reads from a state: finite, with
 * 0 <= won <= closed.  States made by the aggregates always are; a
 * hand-made one that is not would give a rate outside [0, 1] or NaN.
 */
static void
check_counts(const char *what, double won, double closed)
{
	if (!(won >= 0 && won <= closed) || isinf(closed))
		dr_state_value_error(what,
							 psprintf("It counts %g won of %g closed deals.", won, closed));
}

/* Count one closed deal into an int8[2] {won, closed} state. */
Datum
dr_winrate_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	int64	   *v;

	dr_require_agg_context(fcinfo, "win_rate_accum");
	v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "win_rate"));
	v[0] += PG_GETARG_BOOL(1) ? 1 : 0;
	v[1] += 1;
	PG_RETURN_ARRAYTYPE_P(state);
}

/* Remove one deal from the window frame (moving-aggregate inverse). */
Datum
dr_winrate_inv(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	int64	   *v;

	dr_require_agg_context(fcinfo, "win_rate_inv");
	v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "win_rate"));
	v[0] -= PG_GETARG_BOOL(1) ? 1 : 0;
	v[1] -= 1;
	PG_RETURN_ARRAYTYPE_P(state);
}

/*
 * Merge two int8 count states of equal length (parallel partials); either
 * may be the empty initial state '{}' of an aggregate that sizes its state
 * on the first row.
 */
Datum
dr_int8_state_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b = PG_GETARG_ARRAYTYPE_P(1);
	int64	   *va,
			   *vb;
	int			n,
				i;

	dr_require_agg_context(fcinfo, "int8_state_combine");
	if (ARR_NDIM(b) == 0)
		PG_RETURN_ARRAYTYPE_P(a);
	if (ARR_NDIM(a) == 0)
		PG_RETURN_ARRAYTYPE_P(b);
	dr_state_array(a, INT8OID, -1, "count");
	n = ARR_DIMS(a)[0];
	dr_state_array(b, INT8OID, n, "count");
	va = (int64 *) ARR_DATA_PTR(a);
	vb = (int64 *) ARR_DATA_PTR(b);
	for (i = 0; i < n; i++)
	{
		int64		sum;

		if ((i % COMBINE_STRIDE) == 0)
			CHECK_FOR_INTERRUPTS();
		if (pg_add_s64_overflow(va[i], vb[i], &sum))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("count " INT64_FORMAT " + " INT64_FORMAT " overflows at state entry %d",
							va[i], vb[i], i + 1)));
		va[i] = sum;
	}
	PG_RETURN_ARRAYTYPE_P(a);
}

/* won / closed, or NULL when no closed deal was seen. */
Datum
dr_winrate_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	int64	   *v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "win_rate"));

	check_counts("win_rate", (double) v[0], (double) v[1]);
	if (v[1] <= 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8((double) v[0] / (double) v[1]);
}

/* Build the rate_interval composite for won of n at a confidence level. */
static Datum
make_interval_datum(FunctionCallInfo fcinfo, double won, double n, double level)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false, false, false, false, false, false};
	double		lo,
				hi;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	dr_wilson(won, n, dr_normal_quantile(0.5 + level / 2.0), &lo, &hi);
	values[0] = Float8GetDatum(won / n);
	values[1] = Float8GetDatum(lo);
	values[2] = Float8GetDatum(hi);
	values[3] = Int64GetDatum((int64) won);
	values[4] = Int64GetDatum((int64) n);
	values[5] = Float8GetDatum(level);
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* win_rate_ci(bool): rate with a 95% Wilson interval, NULL without closed deals. */
Datum
dr_winrate_ci_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	int64	   *v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "win_rate"));

	check_counts("win_rate", (double) v[0], (double) v[1]);
	if (v[1] <= 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(make_interval_datum(fcinfo, (double) v[0], (double) v[1],
										DEFAULT_LEVEL));
}

/*
 * win_rate_ci(bool, level) transition: counts plus the level, which must be
 * valid and the same on every row of the group.
 */
Datum
dr_winrate_ci_level_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	double	   *v;
	double		level;

	dr_require_agg_context(fcinfo, "win_rate_ci_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("win_rate_ci");
	state = PG_GETARG_ARRAYTYPE_P(0);
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 3, "win_rate_ci"));
	if (PG_ARGISNULL(1))
		PG_RETURN_ARRAYTYPE_P(state);
	level = PG_ARGISNULL(2) ? DEFAULT_LEVEL : PG_GETARG_FLOAT8(2);
	if (isnan(level) || level <= 0.0 || level >= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence level must be between 0 and 1 exclusive, got %g", level),
				 errhint("Use for example 0.95 for a 95%% interval.")));
	if (v[2] != 0.0 && v[2] != level)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence level changed within a group: %g then %g", v[2], level),
				 errhint("Pass a constant level to win_rate_ci.")));
	v[0] += PG_GETARG_BOOL(1) ? 1.0 : 0.0;
	v[1] += 1.0;
	v[2] = level;
	PG_RETURN_ARRAYTYPE_P(state);
}

/* Merge two {won, closed, level} states; an empty partial has level 0. */
Datum
dr_winrate_ci_level_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b = PG_GETARG_ARRAYTYPE_P(1);
	double	   *va,
			   *vb;

	dr_require_agg_context(fcinfo, "win_rate_ci_combine");
	va = (double *) ARR_DATA_PTR(dr_state_array(a, FLOAT8OID, 3, "win_rate_ci"));
	vb = (double *) ARR_DATA_PTR(dr_state_array(b, FLOAT8OID, 3, "win_rate_ci"));
	if (va[2] != 0.0 && vb[2] != 0.0 && va[2] != vb[2])
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence level changed within a group: %g then %g", va[2], vb[2]),
				 errhint("Pass a constant level to win_rate_ci.")));
	va[0] += vb[0];
	va[1] += vb[1];
	if (va[2] == 0.0)
		va[2] = vb[2];
	PG_RETURN_ARRAYTYPE_P(a);
}

/* win_rate_ci(bool, level) final: the interval at the given level. */
Datum
dr_winrate_ci_level_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	double	   *v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 3, "win_rate_ci"));

	check_counts("win_rate_ci", v[0], v[1]);
	if (v[1] <= 0)
		PG_RETURN_NULL();
	if (v[1] >= (double) PG_INT64_MAX)
		dr_state_value_error("win_rate_ci",
							 psprintf("It counts %g closed deals, more than a bigint holds.", v[1]));
	if (!(v[2] > 0.0 && v[2] < 1.0))
		dr_state_value_error("win_rate_ci",
							 psprintf("Its confidence level %g is not between 0 and 1 exclusive.", v[2]));
	PG_RETURN_DATUM(make_interval_datum(fcinfo, v[0], v[1], v[2]));
}

/*
 * Value-weighted transition: adds the amount to the closed total, and to the
 * won total when won.  A negative or NaN amount has no meaning as a weight
 * and is an error naming it; NULL won or amount rows are skipped (strict).
 */
Datum
dr_winrate_amount_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	bool		won = PG_GETARG_BOOL(1);
	Numeric		amount = PG_GETARG_NUMERIC(2);
	double	   *v;
	double		a;

	dr_require_agg_context(fcinfo, "win_rate_amount_accum");
	v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 3, "weighted win_rate"));
	if (numeric_is_nan(amount))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deal amount is NaN"),
				 errhint("Filter the row out or fix it; dealrisk.data_quality() lists such rows.")));
	a = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
										   NumericGetDatum(amount)));
	if (a < 0 || isinf(a))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deal amount must be a finite non-negative number, got %s",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount)))),
				 errhint("Filter the row out or fix it; dealrisk.data_quality() lists such rows.")));
	if (isinf(v[1] + a))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the closed amount total overflows adding deal amount %s",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount)))),
				 errhint("Amounts this large are likely a data error; dealrisk.data_quality() lists outliers.")));
	if (won)
		v[0] += a;
	v[1] += a;
	v[2] += 1.0;
	PG_RETURN_ARRAYTYPE_P(state);
}

/*
 * Merge two float8 sum states of equal length elementwise (weighted win
 * rate, training and evaluation passes); '{}' is the empty state.
 */
Datum
dr_float8_state_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b = PG_GETARG_ARRAYTYPE_P(1);
	double	   *va,
			   *vb;
	int			n,
				i;

	dr_require_agg_context(fcinfo, "float8_state_combine");
	if (ARR_NDIM(b) == 0)
		PG_RETURN_ARRAYTYPE_P(a);
	if (ARR_NDIM(a) == 0)
		PG_RETURN_ARRAYTYPE_P(b);
	dr_state_array(a, FLOAT8OID, -1, "sum");
	n = ARR_DIMS(a)[0];
	dr_state_array(b, FLOAT8OID, n, "sum");
	va = (double *) ARR_DATA_PTR(a);
	vb = (double *) ARR_DATA_PTR(b);
	for (i = 0; i < n; i++)
	{
		if ((i % COMBINE_STRIDE) == 0)
			CHECK_FOR_INTERRUPTS();
		va[i] += vb[i];
	}
	PG_RETURN_ARRAYTYPE_P(a);
}

/* Won value / closed value; NULL with no closed deal or zero closed value. */
Datum
dr_winrate_amount_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	double	   *v = (double *) ARR_DATA_PTR(dr_state_array(state, FLOAT8OID, 3, "weighted win_rate"));

	check_counts("weighted win_rate", v[0], v[1]);
	if (!(v[2] >= 0) || isinf(v[2]))
		dr_state_value_error("weighted win_rate",
							 psprintf("It counts %g closed deals.", v[2]));
	if (v[2] <= 0 || v[1] <= 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(v[0] / v[1]);
}
