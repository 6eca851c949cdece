/*
 * stats.c
 *	  Pure numerics for dealrisk: normal distribution, Wilson interval,
 *	  two-proportion and Welch tests, a counter-based random generator and
 *	  the Cholesky factorisation the model fits share.
 *	  Nothing here touches the catalog, so every function is parallel safe.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_sql_wilson_interval);
PG_FUNCTION_INFO_V1(dr_sql_two_proportion_p);
PG_FUNCTION_INFO_V1(dr_sql_welch_p);
PG_FUNCTION_INFO_V1(dr_sql_normal_quantile);
PG_FUNCTION_INFO_V1(dr_sql_hash_uniform);

/* Standard normal cumulative distribution, via the complementary error function. */
double
dr_normal_cdf(double z)
{
	return 0.5 * erfc(-z / M_SQRT2);
}

/*
 * Inverse of the standard normal CDF: a rational first guess on the central
 * or tail region, polished by three Halley steps against erfc, which brings it
 * to double precision.
 */
double
dr_normal_quantile(double p)
{
	double		x;
	int			i;

	if (p <= 0.0)
		return -INFINITY;
	if (p >= 1.0)
		return INFINITY;

	/* first guess: logistic-shaped approximation, good to about 1e-2 */
	if (p < 0.5)
	{
		double		t = sqrt(-2.0 * log(p));

		x = -(t - (2.30753 + 0.27061 * t) / (1.0 + 0.99229 * t + 0.04481 * t * t));
	}
	else
	{
		double		t = sqrt(-2.0 * log(1.0 - p));

		x = t - (2.30753 + 0.27061 * t) / (1.0 + 0.99229 * t + 0.04481 * t * t);
	}

	/*
	 * Halley refinement: f(x) = Phi(x) - p, f' = phi(x), f'' = -x phi(x).
	 * Far in the tails (p below about 1e-308) 1 / phi(x) overflows; the
	 * first guess is then kept rather than turned into NaN.
	 */
	for (i = 0; i < 3; i++)
	{
		double		e = dr_normal_cdf(x) - p;
		double		u = e * sqrt(2.0 * M_PI) * exp(x * x / 2.0);
		double		next = x - u / (1.0 + x * u / 2.0);

		if (isnan(next) || isinf(next))
			break;
		x = next;
	}
	return x;
}

/*
 * Wilson score interval for won successes out of n at normal quantile z.
 * With n = 0 there is no information: the interval is the whole [0, 1].
 */
void
dr_wilson(double won, double n, double z, double *lo, double *hi)
{
	double		p,
				z2,
				denom,
				centre,
				half;

	if (n <= 0)
	{
		*lo = 0.0;
		*hi = 1.0;
		return;
	}
	p = won / n;
	z2 = z * z;
	denom = 1.0 + z2 / n;
	centre = (p + z2 / (2.0 * n)) / denom;
	half = z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom;
	*lo = Max(0.0, centre - half);
	*hi = Min(1.0, centre + half);
}

/*
 * Two-sided p-value of the pooled two-proportion z-test of x1/n1 against
 * x2/n2.  Returns NaN when either sample is empty; 1 when the pooled rate is
 * 0 or 1 (no variance, no evidence of a difference).
 */
double
dr_two_proportion_p(double x1, double n1, double x2, double n2)
{
	double		pooled,
				se,
				z;

	if (n1 <= 0 || n2 <= 0)
		return NAN;
	pooled = (x1 + x2) / (n1 + n2);
	se = sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2));
	if (se <= 0)
		return 1.0;
	z = fabs(x1 / n1 - x2 / n2) / se;
	return 2.0 * dr_normal_cdf(-z);
}

/*
 * Continued fraction for the regularised incomplete beta function, evaluated
 * with the modified Lentz method; converges fast for x < (a+1)/(a+b+2).
 */
static double
incbeta_cf(double a, double b, double x)
{
	const double tiny = 1e-300;
	double		c = 1.0,
				d,
				f;
	int			m;

	d = 1.0 - (a + b) * x / (a + 1.0);
	if (fabs(d) < tiny)
		d = tiny;
	d = 1.0 / d;
	f = d;
	for (m = 1; m <= 300; m++)
	{
		double		num;
		int			k;

		for (k = 0; k < 2; k++)
		{
			if (k == 0)
				num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
			else
				num = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
			d = 1.0 + num * d;
			if (fabs(d) < tiny)
				d = tiny;
			c = 1.0 + num / c;
			if (fabs(c) < tiny)
				c = tiny;
			d = 1.0 / d;
			f *= c * d;
		}
		if (fabs(c * d - 1.0) < 1e-15)
			break;
	}
	return f;
}

/* Regularised incomplete beta I_x(a, b), for a, b > 0 and 0 <= x <= 1. */
static double
incbeta(double a, double b, double x)
{
	double		front;

	if (x <= 0.0)
		return 0.0;
	if (x >= 1.0)
		return 1.0;
	front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) +
				a * log(x) + b * log1p(-x));
	if (x < (a + 1.0) / (a + b + 2.0))
		return front * incbeta_cf(a, b, x) / a;
	return 1.0 - front * incbeta_cf(b, a, 1.0 - x) / b;
}

/* Two-sided p-value of Student's t statistic with df degrees of freedom. */
double
dr_student_t_two_sided_p(double t, double df)
{
	if (isnan(t) || isnan(df) || df <= 0)
		return NAN;
	if (isinf(t))
		return 0.0;
	return incbeta(df / 2.0, 0.5, df / (df + t * t));
}

/*
 * Welch's unequal-variance t-test of two means given their standard
 * deviations and sizes; two-sided p-value (NaN when a sample has < 2 rows).
 */
double
dr_welch_p(double m1, double s1, double n1, double m2, double s2, double n2)
{
	double		v1,
				v2,
				se2,
				df;

	if (n1 < 2 || n2 < 2)
		return NAN;
	v1 = s1 * s1 / n1;
	v2 = s2 * s2 / n2;
	se2 = v1 + v2;
	if (se2 <= 0)
		return (m1 == m2) ? 1.0 : 0.0;
	df = se2 * se2 / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0));
	return dr_student_t_two_sided_p((m1 - m2) / sqrt(se2), df);
}

/*
 * In-place Cholesky factorisation of a symmetric positive definite matrix
 * (row-major n x n, lower triangle used); false when it is not.
 */
bool
dr_cholesky(double *m, int n)
{
	int			i,
				j,
				k;

	for (j = 0; j < n; j++)
	{
		double		d = m[j * n + j];

		CHECK_FOR_INTERRUPTS();

		for (k = 0; k < j; k++)
			d -= m[j * n + k] * m[j * n + k];
		if (!(d > 0))
			return false;
		d = sqrt(d);
		m[j * n + j] = d;
		for (i = j + 1; i < n; i++)
		{
			double		s = m[i * n + j];

			for (k = 0; k < j; k++)
				s -= m[i * n + k] * m[j * n + k];
			m[i * n + j] = s / d;
		}
	}
	return true;
}

/* Solve L L' x = b given the Cholesky factor L (in place in b). */
void
dr_cholesky_solve(const double *l, int n, double *b)
{
	int			i,
				k;

	for (i = 0; i < n; i++)
	{
		double		s = b[i];

		CHECK_FOR_INTERRUPTS();
		for (k = 0; k < i; k++)
			s -= l[i * n + k] * b[k];
		b[i] = s / l[i * n + i];
	}
	for (i = n - 1; i >= 0; i--)
	{
		double		s = b[i];

		for (k = i + 1; k < n; k++)
			s -= l[k * n + i] * b[k];
		b[i] = s / l[i * n + i];
	}
}

/*
 * A uniform number in [0, 1) that depends only on (seed, i, stream): the
 * splitmix64 finaliser over a mix of the three.  Generated data is then the
 * same whatever the scan order or the number of parallel workers.
 */
double
dr_hash_uniform(int64 seed, int64 i, int32 stream)
{
	uint64		z = (uint64) seed * UINT64CONST(0x9E3779B97F4A7C15);

	z ^= (uint64) i + UINT64CONST(0x632BE59BD9B4E019) + (z << 6) + (z >> 2);
	z ^= (uint64) (uint32) stream * UINT64CONST(0xD1B54A32D192ED03);
	z += UINT64CONST(0x9E3779B97F4A7C15);
	z = (z ^ (z >> 30)) * UINT64CONST(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64CONST(0x94D049BB133111EB);
	z = z ^ (z >> 31);
	return (double) (z >> 11) * (1.0 / 9007199254740992.0);
}

/* Reject a confidence level outside (0, 1), naming it. */
static double
level_to_z(double level)
{
	if (isnan(level) || level <= 0.0 || level >= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("confidence level must be between 0 and 1 exclusive, got %g", level),
				 errhint("Use for example 0.95 for a 95%% interval.")));
	return dr_normal_quantile(0.5 + level / 2.0);
}

/* SQL: wilson_interval(won, closed, level) -> (ci_low, ci_high). */
Datum
dr_sql_wilson_interval(PG_FUNCTION_ARGS)
{
	int64		won = PG_GETARG_INT64(0);
	int64		n = PG_GETARG_INT64(1);
	double		z = level_to_z(PG_GETARG_FLOAT8(2));
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	double		lo,
				hi;

	if (n < 0 || won < 0 || won > n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("won count " INT64_FORMAT " is not between 0 and closed count " INT64_FORMAT,
						won, n)));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (n == 0)
		PG_RETURN_NULL();
	dr_wilson((double) won, (double) n, z, &lo, &hi);
	values[0] = Float8GetDatum(lo);
	values[1] = Float8GetDatum(hi);
	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* SQL: two_proportion_p(won1, closed1, won2, closed2) -> p-value or NULL. */
Datum
dr_sql_two_proportion_p(PG_FUNCTION_ARGS)
{
	int64		x1 = PG_GETARG_INT64(0);
	int64		n1 = PG_GETARG_INT64(1);
	int64		x2 = PG_GETARG_INT64(2);
	int64		n2 = PG_GETARG_INT64(3);
	double		p;

	if (x1 < 0 || x1 > n1 || x2 < 0 || x2 > n2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("success counts must lie between 0 and their totals, got " INT64_FORMAT "/" INT64_FORMAT " and " INT64_FORMAT "/" INT64_FORMAT,
						x1, n1, x2, n2)));
	p = dr_two_proportion_p((double) x1, (double) n1, (double) x2, (double) n2);
	if (isnan(p))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(p);
}

/* SQL: welch_p(mean1, sd1, n1, mean2, sd2, n2) -> p-value or NULL. */
Datum
dr_sql_welch_p(PG_FUNCTION_ARGS)
{
	double		p;

	if (!(PG_GETARG_FLOAT8(1) >= 0) || !(PG_GETARG_FLOAT8(4) >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("standard deviations must be >= 0, got %g and %g",
						PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(4))));
	p = dr_welch_p(PG_GETARG_FLOAT8(0), PG_GETARG_FLOAT8(1),
							   (double) PG_GETARG_INT64(2),
							   PG_GETARG_FLOAT8(3), PG_GETARG_FLOAT8(4),
							   (double) PG_GETARG_INT64(5));

	if (isnan(p))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(p);
}

/* SQL: normal_quantile(p) -> z with Phi(z) = p. */
Datum
dr_sql_normal_quantile(PG_FUNCTION_ARGS)
{
	double		p = PG_GETARG_FLOAT8(0);

	if (isnan(p) || p <= 0.0 || p >= 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("probability must be between 0 and 1 exclusive, got %g", p)));
	PG_RETURN_FLOAT8(dr_normal_quantile(p));
}

/* SQL: hash_uniform(seed, i, stream) -> deterministic uniform in [0, 1). */
Datum
dr_sql_hash_uniform(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(dr_hash_uniform(PG_GETARG_INT64(0), PG_GETARG_INT64(1),
									 PG_GETARG_INT32(2)));
}
