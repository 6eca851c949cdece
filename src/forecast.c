/*
 * forecast.c
 *	  The distribution of what an open pipeline closes: each open deal wins
 *	  (within the horizon) with its own probability, independently of the
 *	  others, so the won value is a sum of independent Bernoulli deals
 *	  weighted by their amounts and the number of wins a Poisson-binomial
 *	  variable.  Neither has a closed form for its quantiles when the amounts
 *	  differ: up to MAX_EXACT uncertain deals every outcome is enumerated
 *	  (exact); above that the deals are drawn a fixed, seeded number of times
 *	  (a simulation whose result is the same on every call).  A normal
 *	  approximation is not used: a few large deals make the sum skewed and
 *	  lumpy, which is exactly when a forecast interval matters.
 *
 *	  Deals are not quite independent: a quarter in which the whole team
 *	  wins less moves every deal at once.  The simulation can draw such a
 *	  shared shock per draw, a normal shift of every deal's log-odds of
 *	  winning with the standard deviation the caller measured, which widens
 *	  the interval where the history says whole periods move together.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_bernoulli_sum);

/* At most this many deals with 0 < p < 1 are enumerated (2^16 outcomes). */
#define MAX_EXACT 16
/* The simulation: deals x draws at most this many coin flips ... */
#define SIM_WORK 50000000.0
/* ... with at least and at most this many draws. */
#define SIM_MIN_DRAWS 1000
#define SIM_MAX_DRAWS 10000
/* Fixed seed: the same pipeline gives the same interval on every call. */
#define SIM_SEED UINT64CONST(0x6465616c7269736b)

typedef struct WeightedOutcome
{
	double		value;
	double		prob;
} WeightedOutcome;

/* qsort comparator of doubles, ascending. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* qsort comparator of weighted outcomes by value, ascending. */
static int
cmp_outcome(const void *a, const void *b)
{
	return cmp_double(&((const WeightedOutcome *) a)->value, &((const WeightedOutcome *) b)->value);
}

/* The smallest value whose cumulative probability reaches q (outcomes sorted). */
static double
weighted_quantile(const WeightedOutcome *o, int n, double q)
{
	double		cum = 0.0;
	int			i;

	for (i = 0; i < n; i++)
	{
		cum += o[i].prob;
		/* a relative slack absorbs the rounding of the summed probabilities */
		if (cum >= q * (1.0 - 1e-12))
			return o[i].value;
	}
	return o[n - 1].value;
}

/* The order statistic of sorted draws at the level q (type 1: no interpolation). */
static double
draw_quantile(const double *d, int n, double q)
{
	int			k = (int) ceil(q * n) - 1;

	if (k < 0)
		k = 0;
	if (k >= n)
		k = n - 1;
	return d[k];
}

/* Reads a float8[] without NULLs into a palloc'd C array; names the argument on error. */
static double *
float8_array(ArrayType *arr, const char *what, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	double	   *out;
	int			i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	out = palloc(sizeof(double) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not hold NULLs (element %d)", what, i + 1)));
		out[i] = DatumGetFloat8(elems[i]);
	}
	return out;
}

/* The probability p moved by shift on the log-odds scale (0 and 1 stay). */
static inline double
shift_probability(double p, double shift)
{
	if (shift == 0.0 || p <= 0.0 || p >= 1.0)
		return p;
	return 1.0 / (1.0 + exp(-(log(p / (1.0 - p)) + shift)));
}

/*
 * _bernoulli_sum(amounts float8[], p_win float8[], p_close float8[],
 *                shift float8, shock_sd float8, level float8):
 * the won value sum(amount_i * X_i) and the wins sum(X_i) of deals that win
 * with probability expit(logit(p_win_i) + shift + e) * p_close_i, e a shock
 * shared by every deal, N(0, shock_sd): their means without the shock
 * (exact, so that the means of groups add up to the mean of their union),
 * their equal-tailed intervals at level with it, and the method used.  Without a shock and with at
 * most MAX_EXACT uncertain deals, exact; else simulated.
 */
Datum
dr_bernoulli_sum(PG_FUNCTION_ARGS)
{
	ArrayType  *amounts_arr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *win_arr = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *close_arr = PG_GETARG_ARRAYTYPE_P(2);
	double		shift = PG_GETARG_FLOAT8(3);
	double		shock_sd = PG_GETARG_FLOAT8(4);
	double		level = PG_GETARG_FLOAT8(5);
	double	   *amounts;
	double	   *p_win;
	double	   *p_close;
	double	   *probs;
	int			n,
				np,
				nc,
				i,
				k = 0;
	double		value_mean = 0.0,
				wins_mean = 0.0;
	int		   *uncertain;
	double		sure_value = 0.0;
	int64		sure_wins = 0;
	double		lo_q,
				hi_q;
	double		value_lo,
				value_hi,
				wins_lo,
				wins_hi;
	char		method[64];
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	if (!(level > 0.0 && level < 1.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("level must be between 0 and 1 (exclusive), got %g", level),
				 errhint("E.g. 0.9 for the interval from the 5th to the 95th percentile.")));
	if (!isfinite(shift) || !(shock_sd >= 0.0 && shock_sd <= 10.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shift must be finite and shock_sd between 0 and 10, got %g and %g", shift, shock_sd)));
	amounts = float8_array(amounts_arr, "amounts", &n);
	p_win = float8_array(win_arr, "p_win", &np);
	p_close = float8_array(close_arr, "p_close", &nc);
	if (n != np || n != nc)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("amounts, p_win and p_close must have the same length, got %d, %d and %d", n, np, nc)));
	probs = palloc(sizeof(double) * Max(n, 1));

	uncertain = palloc(sizeof(int) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (!isfinite(amounts[i]))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("amount %d is not finite: %g", i + 1, amounts[i]),
					 errhint("Leave deals without a finite amount out of the value, and count them.")));
		if (!(p_win[i] >= 0.0 && p_win[i] <= 1.0) || !(p_close[i] >= 0.0 && p_close[i] <= 1.0))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("probabilities of deal %d must be between 0 and 1, got %g and %g",
							i + 1, p_win[i], p_close[i])));
		probs[i] = shift_probability(p_win[i], shift) * p_close[i];
		value_mean += amounts[i] * probs[i];
		wins_mean += probs[i];
		if (probs[i] >= 1.0)
		{
			sure_value += amounts[i];
			sure_wins++;
		}
		else if (probs[i] > 0.0)
			uncertain[k++] = i;
	}
	lo_q = (1.0 - level) / 2.0;
	hi_q = (1.0 + level) / 2.0;

	if (k <= MAX_EXACT && shock_sd == 0.0)
	{
		/* every one of the 2^k outcomes with its probability */
		int			m = 1 << k;
		WeightedOutcome *ov = palloc(sizeof(WeightedOutcome) * m);
		WeightedOutcome *ow = palloc(sizeof(WeightedOutcome) * m);
		int			s,
					j;

		for (s = 0; s < m; s++)
		{
			double		p = 1.0,
						v = 0.0;
			int			w = 0;

			for (j = 0; j < k; j++)
			{
				double		q = probs[uncertain[j]];

				if (s & (1 << j))
				{
					p *= q;
					v += amounts[uncertain[j]];
					w++;
				}
				else
					p *= 1.0 - q;
			}
			ov[s].value = v;
			ov[s].prob = p;
			ow[s].value = w;
			ow[s].prob = p;
		}
		qsort(ov, m, sizeof(WeightedOutcome), cmp_outcome);
		qsort(ow, m, sizeof(WeightedOutcome), cmp_outcome);
		value_lo = weighted_quantile(ov, m, lo_q);
		value_hi = weighted_quantile(ov, m, hi_q);
		wins_lo = weighted_quantile(ow, m, lo_q);
		wins_hi = weighted_quantile(ow, m, hi_q);
		snprintf(method, sizeof(method), "exact");
	}
	else
	{
		/* a seeded simulation: the same deals give the same interval */
		int			draws = (int) Min((double) SIM_MAX_DRAWS, Max((double) SIM_MIN_DRAWS, SIM_WORK / k));
		double	   *dv = palloc(sizeof(double) * draws);
		double	   *dw = palloc(sizeof(double) * draws);
		pg_prng_state rng;
		int			d,
					j;

		pg_prng_seed(&rng, SIM_SEED);
		for (d = 0; d < draws; d++)
		{
			double		v = 0.0;
			int64		w = 0;

			CHECK_FOR_INTERRUPTS();
			if (shock_sd > 0.0)
			{
				/* this draw's shared shock, through the normal quantile */
				double		u = pg_prng_double(&rng);
				double		e = shock_sd * dr_normal_quantile(Max(u, 1e-12));

				for (j = 0; j < k; j++)
				{
					int			x = uncertain[j];

					if (pg_prng_double(&rng) < shift_probability(p_win[x], shift + e) * p_close[x])
					{
						v += amounts[x];
						w++;
					}
				}
			}
			else
			{
				for (j = 0; j < k; j++)
				{
					if (pg_prng_double(&rng) < probs[uncertain[j]])
					{
						v += amounts[uncertain[j]];
						w++;
					}
				}
			}
			dv[d] = v;
			dw[d] = (double) w;
		}
		qsort(dv, draws, sizeof(double), cmp_double);
		qsort(dw, draws, sizeof(double), cmp_double);
		value_lo = draw_quantile(dv, draws, lo_q);
		value_hi = draw_quantile(dv, draws, hi_q);
		wins_lo = draw_quantile(dw, draws, lo_q);
		wins_hi = draw_quantile(dw, draws, hi_q);
		if (shock_sd > 0.0)
			snprintf(method, sizeof(method), "simulation (%d draws, shared shock sd %.3g)", draws, shock_sd);
		else
			snprintf(method, sizeof(method), "simulation (%d draws)", draws);
	}

	if (!isfinite(sure_value + value_lo) || !isfinite(sure_value + value_hi))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("the amounts are too large to add up in double precision")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_bernoulli_sum must return a composite type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Float8GetDatum(value_mean);
	values[1] = Float8GetDatum(sure_value + value_lo);
	values[2] = Float8GetDatum(sure_value + value_hi);
	values[3] = Float8GetDatum(wins_mean);
	values[4] = Float8GetDatum((double) sure_wins + wins_lo);
	values[5] = Float8GetDatum((double) sure_wins + wins_hi);
	values[6] = CStringGetTextDatum(method);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
