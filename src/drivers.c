/*
 * drivers.c
 *	  The joint driver analysis behind dealrisk.drivers(): which segments
 *	  changed the win rate between a baseline and a recent window once the
 *	  other dimensions are held fixed, and which apparent changes are only
 *	  the shadows of those.
 *
 * Input is the table of cells of the closed deals of both windows: one cell
 * per (window, level of each dimension), with its deals n and wins w (SQL
 * builds it in one scan of the source).  Everything else runs on the cells:
 *
 * Rate changes.  A logistic model of winning with an intercept and a main
 * effect per level of every dimension (fitted over both windows, with a
 * ridge of DRV_LAMBDA_MAIN so that small and one-sided levels stay finite)
 * describes what the windows share.  A candidate driver is a set of recent
 * deals: a segment (one level of one dimension), a cell of two segments of
 * two dimensions, or every recent deal ("overall").  Forward selection adds
 * to the model one change term delta_j * [deal is recent and in j] at a
 * time: the candidate whose score test is strongest, while its p-value
 * passes the Benjamini-Hochberg step for the next rejection.  The score test
 * uses the efficient information (the candidate's information minus what
 * the terms already in the model explain of it), so a segment whose drop is
 * the shadow of a selected driver has nothing left to show.
 *
 * Mix changes.  A segment's share of the closed deals is compared between
 * the windows by a Cochran-Mantel-Haenszel test stratified by the selected
 * mix drivers of the other dimensions (deals of a selected segment of its
 * own dimension are left out), so that a share that moved only because
 * another segment's did is explained away; its effect on the win rate needs
 * its baseline rate to differ from the rest (an intersection-union test:
 * the larger of the two p-values).
 *
 * Both kinds form one family: every final p-value (likelihood-ratio tests of
 * the selected terms, score tests of the others in the final model, the
 * conditional mix tests) gets a Benjamini-Hochberg q-value, and a selected
 * driver whose q is not below the false-discovery level is dropped and the
 * selection run again without it.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dealrisk.h"
#include "model.h"

PG_FUNCTION_INFO_V1(dr_drivers_fit);

#define DRV_MAX_DIMS 16
#define DRV_MAX_PARAMS 2000		/* intercept + main effects + change terms */
#define DRV_MAX_SELECTED 20		/* drivers of each kind */
#define DRV_MAX_MIX_STRATA 10	/* mix drivers of other dimensions a test is
								 * stratified by */
#define DRV_PAIR_MAX_LEVELS 50	/* cells are formed of dimensions this small */
#define DRV_MIN_SEGMENT 10		/* deals in each window to test a segment */
#define DRV_MIN_CELL 20			/* and a cell of two segments */
#define DRV_LAMBDA_MAIN 1.0
#define DRV_LAMBDA_DELTA 1e-3
#define DRV_MAX_ITER 60

typedef enum DrvKind
{
	DRV_RATE,					/* a segment or cell's own win rate changed */
	DRV_OVERALL,				/* every recent deal's */
	DRV_MIX						/* a segment's share of the deals changed */
} DrvKind;

typedef struct DrvCand
{
	DrvKind		kind;
	int			d1,
				l1,
				d2,
				l2;				/* 0-based; d1 < 0 for overall, d2 < 0 for a
								 * segment */
	int64		n0,
				w0,
				n1,
				w1;
	int		   *mem;			/* member cells, both windows */
	int			nmem;
	bool		tested;
	bool		selected;
	bool		banned;
	int			param;			/* its change term's index while selected */
	double		p;
	double		q;
	double		effect;
	double		elo;
	double		ehi;
	double		contrib;
	int			explained_by;	/* candidate index, -1: none */
} DrvCand;

typedef struct Drv
{
	int			ndims;
	int			ncells;
	int		   *nlev;
	int		   *moff;			/* main effect offset of each dimension */
	int			p0;				/* intercept + main effects */
	const int32 *lev;			/* ncells x ndims, 0-based after loading */
	bool	   *rec;
	double	   *cn;
	double	   *cw;
	double		N0,
				W0,
				N1,
				W1;
	DrvCand    *cands;
	int			ncands;
	/* the selected rate terms, in model order */
	int			sel[DRV_MAX_SELECTED];
	int			nsel;
	/* per cell: the selected terms it belongs to (parameter indexes) */
	int		   *cellsel;
	int		   *ncellsel;
	/* the current fit */
	double	   *beta;
	double	   *eta;
	double	   *mu;
	double	   *chol;
	double		dev;
	int			p;
	double		alpha;
} Drv;

/* Softplus log(1 + e^x) without overflow. */
static inline double
softplus(double x)
{
	return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

/* Whether cell c holds deals of candidate j (either window). */
static inline bool
cand_has(const Drv *dv, const DrvCand *j, int c)
{
	const int32 *l = dv->lev + (Size) c * dv->ndims;

	if (j->d1 < 0)
		return true;
	if (l[j->d1] != j->l1)
		return false;
	return j->d2 < 0 || l[j->d2] == j->l2;
}

/* Two-sided normal p-value of a chi-square statistic with one degree of freedom. */
static double
chi2_p(double chi2)
{
	if (!(chi2 > 0))
		return 1.0;
	return 2.0 * dr_normal_cdf(-sqrt(chi2));
}

/* Rebuild, for every cell, the list of selected change terms it belongs to. */
static void
index_selection(Drv *dv)
{
	int			i,
				m;

	memset(dv->ncellsel, 0, sizeof(int) * dv->ncells);
	for (i = 0; i < dv->nsel; i++)
	{
		DrvCand    *j = &dv->cands[dv->sel[i]];

		j->param = dv->p0 + i;
		for (m = 0; m < j->nmem; m++)
		{
			int			c = j->mem[m];

			if (dv->rec[c])
				dv->cellsel[(Size) c * DRV_MAX_SELECTED + dv->ncellsel[c]++] = j->param;
		}
	}
	dv->p = dv->p0 + dv->nsel;
}

/* Linear predictor of every cell and the penalised deviance at beta. */
static double
evaluate(Drv *dv, const double *beta, double *eta)
{
	double		dev = 0;
	int			c,
				d,
				k;

	for (c = 0; c < dv->ncells; c++)
	{
		const int32 *l = dv->lev + (Size) c * dv->ndims;
		double		e = beta[0];

		for (d = 0; d < dv->ndims; d++)
			e += beta[dv->moff[d] + l[d]];
		for (k = 0; k < dv->ncellsel[c]; k++)
			e += beta[dv->cellsel[(Size) c * DRV_MAX_SELECTED + k]];
		eta[c] = e;
		dev += 2.0 * (dv->cw[c] * softplus(-e) + (dv->cn[c] - dv->cw[c]) * softplus(e));
	}
	for (k = 1; k < dv->p; k++)
		dev += (k < dv->p0 ? DRV_LAMBDA_MAIN : DRV_LAMBDA_DELTA) * beta[k] * beta[k];
	return dev;
}

/* Penalised information matrix and score at the fit's eta, into h and g. */
static void
information(Drv *dv, const double *beta, double *h, double *g)
{
	int			p = dv->p;
	int			idx[DRV_MAX_DIMS + 1 + DRV_MAX_SELECTED];
	int			c,
				a,
				b,
				na,
				d,
				k;

	memset(h, 0, sizeof(double) * (Size) p * p);
	memset(g, 0, sizeof(double) * p);
	for (c = 0; c < dv->ncells; c++)
	{
		const int32 *l = dv->lev + (Size) c * dv->ndims;
		double		mu = dr_logistic(dv->eta[c]);
		double		v = dv->cn[c] * mu * (1.0 - mu);
		double		r = dv->cw[c] - dv->cn[c] * mu;

		if ((c & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
		na = 0;
		idx[na++] = 0;
		for (d = 0; d < dv->ndims; d++)
			idx[na++] = dv->moff[d] + l[d];
		for (k = 0; k < dv->ncellsel[c]; k++)
			idx[na++] = dv->cellsel[(Size) c * DRV_MAX_SELECTED + k];
		for (a = 0; a < na; a++)
		{
			g[idx[a]] += r;
			for (b = 0; b < na; b++)
				h[(Size) idx[a] * p + idx[b]] += v;
		}
	}
	for (k = 1; k < p; k++)
	{
		double		lam = k < dv->p0 ? DRV_LAMBDA_MAIN : DRV_LAMBDA_DELTA;

		h[(Size) k * p + k] += lam;
		g[k] -= lam * beta[k];
	}
}

/*
 * Fit the model with the current selection by penalised Newton steps with
 * step halving, from the coefficients in dv->beta; leaves eta, mu, the
 * deviance and the Cholesky factor of the information at the optimum.
 */
static void
fit(Drv *dv)
{
	int			p,
				it,
				i,
				half;
	double	   *g,
			   *trial,
			   *teta;

	index_selection(dv);
	p = dv->p;
	g = palloc(sizeof(double) * p);
	trial = palloc(sizeof(double) * p);
	teta = palloc(sizeof(double) * dv->ncells);
	dv->dev = evaluate(dv, dv->beta, dv->eta);
	for (it = 0; it < DRV_MAX_ITER; it++)
	{
		double		maxstep = 0;
		double		newdev = dv->dev;

		CHECK_FOR_INTERRUPTS();
		information(dv, dv->beta, dv->chol, g);
		if (!dr_cholesky(dv->chol, p))
			elog(ERROR, "driver model information is not positive definite");
		dr_cholesky_solve(dv->chol, p, g);
		for (i = 0; i < p; i++)
			maxstep = Max(maxstep, fabs(g[i]));
		if (maxstep < 1e-9)
			break;
		for (half = 0; half < 30; half++)
		{
			for (i = 0; i < p; i++)
				trial[i] = dv->beta[i] + g[i];
			newdev = evaluate(dv, trial, teta);
			if (newdev <= dv->dev + 1e-9 * (1.0 + fabs(dv->dev)))
				break;
			for (i = 0; i < p; i++)
				g[i] *= 0.5;
		}
		if (half == 30)
			break;				/* no step lowers the deviance: at the optimum */
		memcpy(dv->beta, trial, sizeof(double) * p);
		memcpy(dv->eta, teta, sizeof(double) * dv->ncells);
		if (dv->dev - newdev < 1e-10 * (1.0 + fabs(newdev)) && maxstep < 1e-5)
		{
			dv->dev = newdev;
			break;
		}
		dv->dev = newdev;
	}
	for (i = 0; i < dv->ncells; i++)
		dv->mu[i] = dr_logistic(dv->eta[i]);
	information(dv, dv->beta, dv->chol, g);
	if (!dr_cholesky(dv->chol, p))
		elog(ERROR, "driver model information is not positive definite");
	pfree(g);
	pfree(trial);
	pfree(teta);
}

/* Put candidate j's change term into the model (coefficient 0 to start). */
static void
select_rate(Drv *dv, int j)
{
	dv->beta[dv->p0 + dv->nsel] = 0;
	dv->sel[dv->nsel++] = j;
	dv->cands[j].selected = true;
	fit(dv);
}

/* Take candidate j's change term out of the model. */
static void
unselect_rate(Drv *dv, int j)
{
	int			i,
				k = 0;

	for (i = 0; i < dv->nsel; i++)
	{
		if (dv->sel[i] == j)
			continue;
		dv->beta[dv->p0 + k] = dv->beta[dv->p0 + i];
		dv->sel[k++] = dv->sel[i];
	}
	dv->nsel = k;
	dv->cands[j].selected = false;
	fit(dv);
}

/*
 * Score test of adding candidate j's change term to the current fit: the
 * efficient score statistic, and the one-step estimate of the term and its
 * standard error.  False when the term adds nothing the model cannot
 * already express (no recent deals, or collinear with its terms).
 */
static bool
score_test(Drv *dv, const DrvCand *j, double *chi2, double *est, double *se, double *work)
{
	int			p = dv->p;
	double		u = 0,
				info = 0,
				explained = 0,
				ieff;
	int			m,
				d,
				k,
				i;

	memset(work, 0, sizeof(double) * p);
	for (m = 0; m < j->nmem; m++)
	{
		int			c = j->mem[m];
		const int32 *l = dv->lev + (Size) c * dv->ndims;
		double		v;

		if (!dv->rec[c])
			continue;
		v = dv->cn[c] * dv->mu[c] * (1.0 - dv->mu[c]);
		u += dv->cw[c] - dv->cn[c] * dv->mu[c];
		info += v;
		work[0] += v;
		for (d = 0; d < dv->ndims; d++)
			work[dv->moff[d] + l[d]] += v;
		for (k = 0; k < dv->ncellsel[c]; k++)
			work[dv->cellsel[(Size) c * DRV_MAX_SELECTED + k]] += v;
	}
	/* b' H^-1 b = |L^-1 b|^2 */
	for (i = 0; i < p; i++)
	{
		double		s = work[i];

		for (k = 0; k < i; k++)
			s -= dv->chol[(Size) i * p + k] * work[k];
		work[i] = s / dv->chol[(Size) i * p + i];
		explained += work[i] * work[i];
	}
	ieff = info - explained;
	if (!(info > 0) || !(ieff > 1e-9 * info))
		return false;
	*chi2 = u * u / ieff;
	*est = u / ieff;
	*se = 1.0 / sqrt(ieff);
	return true;
}

/*
 * Change of candidate j's recent win rate when its change term moves from
 * "from" to "to" (the linear predictors of the fit otherwise unchanged).
 */
static double
rate_shift(const Drv *dv, const DrvCand *j, double from, double to)
{
	double		s = 0;
	int			m;

	if (j->n1 <= 0)
		return 0;
	for (m = 0; m < j->nmem; m++)
	{
		int			c = j->mem[m];

		if (dv->rec[c])
			s += dv->cn[c] * (dr_logistic(dv->eta[c] - from + to) - dr_logistic(dv->eta[c] - from));
	}
	return s / (double) j->n1;
}

/*
 * Cochran-Mantel-Haenszel statistic of candidate j's share of the deals,
 * recent against baseline, stratified by membership in the mix drivers
 * cond[] of other dimensions; deals of a driver of j's own dimension are
 * left out.  False when there is nothing to compare.
 */
static bool
cmh_test(const Drv *dv, const DrvCand *j, const int *cond, int ncond, double *chi2, double *work)
{
	int			other[DRV_MAX_MIX_STRATA];
	int			nother = 0;
	int			nstrata,
				c,
				k,
				h;
	double	   *n1,
			   *n0,
			   *s,
			   *a;
	double		dev = 0,
				var = 0;

	for (k = 0; k < ncond && nother < DRV_MAX_MIX_STRATA; k++)
		if (dv->cands[cond[k]].d1 != j->d1)
			other[nother++] = cond[k];
	nstrata = 1 << nother;
	n1 = work;
	n0 = n1 + nstrata;
	s = n0 + nstrata;
	a = s + nstrata;
	memset(work, 0, sizeof(double) * 4 * nstrata);
	for (c = 0; c < dv->ncells; c++)
	{
		const int32 *l = dv->lev + (Size) c * dv->ndims;
		bool		skip = false,
					in;

		for (k = 0; k < ncond; k++)
		{
			const DrvCand *q = &dv->cands[cond[k]];

			if (q->d1 == j->d1 && l[q->d1] == q->l1)
				skip = true;
		}
		if (skip)
			continue;
		h = 0;
		for (k = 0; k < nother; k++)
			if (l[dv->cands[other[k]].d1] == dv->cands[other[k]].l1)
				h |= 1 << k;
		in = l[j->d1] == j->l1;
		if (dv->rec[c])
		{
			n1[h] += dv->cn[c];
			if (in)
				a[h] += dv->cn[c];
		}
		else
			n0[h] += dv->cn[c];
		if (in)
			s[h] += dv->cn[c];
	}
	for (h = 0; h < nstrata; h++)
	{
		double		n = n1[h] + n0[h];

		if (n < 2 || n1[h] <= 0 || n0[h] <= 0)
			continue;
		dev += a[h] - n1[h] * s[h] / n;
		var += n1[h] * n0[h] * s[h] * (n - s[h]) / (n * n * (n - 1));
	}
	if (!(var > 0))
		return false;
	*chi2 = dev * dev / var;
	return true;
}

/* p-value of a mix candidate given the mix drivers cond[]: see the header. */
static bool
mix_p(const Drv *dv, const DrvCand *j, const int *cond, int ncond, double *p, double *work)
{
	double		chi2,
				gap;

	if (!cmh_test(dv, j, cond, ncond, &chi2, work))
		return false;
	gap = dr_two_proportion_p((double) j->w0, (double) j->n0,
							  dv->W0 - (double) j->w0, dv->N0 - (double) j->n0);
	if (isnan(gap))
		return false;
	*p = Max(chi2_p(chi2), gap);
	return true;
}

/* The selected mix drivers other than candidate skip, into out[]. */
static int
mix_selection(const Drv *dv, int skip, int *out)
{
	int			i,
				n = 0;

	for (i = 0; i < dv->ncands; i++)
		if (i != skip && dv->cands[i].kind == DRV_MIX && dv->cands[i].selected)
			out[n++] = i;
	return n;
}

/* Benjamini-Hochberg q-values of the tested candidates. */
static int
cmp_p(const void *a, const void *b, void *arg)
{
	const DrvCand *c = (const DrvCand *) arg;
	double		pa = c[*(const int *) a].p,
				pb = c[*(const int *) b].p;

	return pa < pb ? -1 : pa > pb ? 1 : (*(const int *) a - *(const int *) b);
}

/* Assign Benjamini-Hochberg q-values to every tested candidate. */
static void
bh(Drv *dv)
{
	int		   *order = palloc(sizeof(int) * dv->ncands);
	int			m = 0,
				i;
	double		run = 1.0;

	for (i = 0; i < dv->ncands; i++)
		if (dv->cands[i].tested)
			order[m++] = i;
	qsort_arg(order, m, sizeof(int), cmp_p, dv->cands);
	for (i = m - 1; i >= 0; i--)
	{
		double		q = dv->cands[order[i]].p * ((double) m / (i + 1));

		run = Min(run, q);
		dv->cands[order[i]].q = run;
	}
	pfree(order);
}

/*
 * The final p-value of every tested candidate under the current selection:
 * likelihood ratio for a selected rate term, score test for the others, the
 * conditional share test for mix candidates.
 */
static void
final_tests(Drv *dv, double *work)
{
	int			i;
	int			cond[DRV_MAX_SELECTED];
	double	   *keep = palloc(sizeof(double) * (dv->p0 + DRV_MAX_SELECTED));
	double		fulldev = dv->dev;

	for (i = 0; i < dv->ncands; i++)
	{
		DrvCand    *j = &dv->cands[i];
		double		chi2,
					est,
					se;

		CHECK_FOR_INTERRUPTS();
		if (!j->tested || j->kind == DRV_MIX || j->selected)
			continue;
		j->p = score_test(dv, j, &chi2, &est, &se, work) ? chi2_p(chi2) : 1.0;
	}
	for (i = 0; i < dv->ncands; i++)
	{
		DrvCand    *j = &dv->cands[i];
		int			ncond;

		if (!j->tested || j->kind != DRV_MIX)
			continue;
		ncond = mix_selection(dv, i, cond);
		if (!mix_p(dv, j, cond, ncond, &j->p, work))
			j->p = 1.0;
	}
	/* likelihood ratios: refit without each selected term, then restore */
	memcpy(keep, dv->beta, sizeof(double) * dv->p);
	{
		int			sel[DRV_MAX_SELECTED];
		int			nsel = dv->nsel,
					k;

		memcpy(sel, dv->sel, sizeof(int) * nsel);
		for (k = 0; k < nsel; k++)
		{
			int			j = sel[k];

			unselect_rate(dv, j);
			dv->cands[j].p = chi2_p(dv->dev - fulldev);
			/* restore the full model */
			dv->nsel = nsel;
			memcpy(dv->sel, sel, sizeof(int) * nsel);
			memcpy(dv->beta, keep, sizeof(double) * (dv->p0 + nsel));
			dv->cands[j].selected = true;
			fit(dv);
		}
	}
	pfree(keep);
	bh(dv);
}

/*
 * Forward selection while the best remaining candidate passes the
 * Benjamini-Hochberg step for the next rejection among m tests.
 */
static void
forward(Drv *dv, int m, double *work)
{
	int			cond[DRV_MAX_SELECTED];

	for (;;)
	{
		int			best = -1,
					i,
					k = 0,
					nmix = 0;
		double		bestp = 2.0;

		for (i = 0; i < dv->ncands; i++)
			if (dv->cands[i].selected)
			{
				k++;
				if (dv->cands[i].kind == DRV_MIX)
					nmix++;
			}
		for (i = 0; i < dv->ncands; i++)
		{
			DrvCand    *j = &dv->cands[i];
			double		chi2,
						est,
						se,
						p;

			CHECK_FOR_INTERRUPTS();
			if (!j->tested || j->selected || j->banned)
				continue;
			if (j->kind == DRV_MIX)
			{
				int			ncond;

				if (nmix >= DRV_MAX_SELECTED)
					continue;
				ncond = mix_selection(dv, -1, cond);
				if (!mix_p(dv, j, cond, ncond, &p, work))
					continue;
			}
			else
			{
				if (dv->nsel >= DRV_MAX_SELECTED)
					continue;
				if (!score_test(dv, j, &chi2, &est, &se, work))
					continue;
				p = chi2_p(chi2);
			}
			if (p < bestp)
			{
				bestp = p;
				best = i;
			}
		}
		if (best < 0 || !(bestp <= dv->alpha * (k + 1) / m))
			break;
		if (dv->cands[best].kind == DRV_MIX)
			dv->cands[best].selected = true;
		else
			select_rate(dv, best);
	}
}

/* Add a candidate (its member cells are found later). */
static int
add_cand(Drv *dv, DrvKind kind, int d1, int l1, int d2, int l2)
{
	DrvCand    *j = &dv->cands[dv->ncands];

	memset(j, 0, sizeof(DrvCand));
	j->kind = kind;
	j->d1 = d1;
	j->l1 = l1;
	j->d2 = d2;
	j->l2 = l2;
	j->explained_by = -1;
	j->p = 1.0;
	return dv->ncands++;
}

/* An int4/int8/bool/float argument array's data, checked for shape and NULLs. */
static void *
arg_array(ArrayType *a, Oid type, int len, const char *name)
{
	if (ARR_NDIM(a) > 1 || ARR_ELEMTYPE(a) != type || ARR_HASNULL(a) ||
		(len >= 0 && ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) != len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument %s of _drivers_fit is not a one-dimensional array of %d elements without NULLs",
						name, len)));
	return ARR_DATA_PTR(a);
}

/*
 * SQL: _drivers_fit(nlevels int4[], levels int4[], recent bool[], n int8[],
 * w int8[], fdr float8) -> the candidates of the joint analysis (see the
 * file header); levels holds each cell's 1-based level of every dimension.
 */
Datum
dr_drivers_fit(PG_FUNCTION_ARGS)
{
	ArrayType  *nlevarr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *levarr = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *recarr = PG_GETARG_ARRAYTYPE_P(2);
	ArrayType  *narr = PG_GETARG_ARRAYTYPE_P(3);
	ArrayType  *warr = PG_GETARG_ARRAYTYPE_P(4);
	double		alpha = PG_GETARG_FLOAT8(5);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext cxt,
				old;
	Drv			dv;
	int32	   *nl,
			   *lv;
	bool	   *rc;
	int64	   *nn,
			   *ww;
	int			ndims,
				ncells,
				d,
				d2,
				c,
				i,
				maxcands,
				tested = 0,
				rounds;
	int32	   *lev0;
	int64		totlev = 0;
	double	   *work;
	int		   *pairidx;
	int			cond[DRV_MAX_SELECTED] = {0};

	InitMaterializedSRF(fcinfo, 0);
	if (!(alpha > 0 && alpha < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("false-discovery level must be between 0 and 1, got %g", alpha)));
	if (ARR_NDIM(nlevarr) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nlevels of _drivers_fit must be a one-dimensional array")));
	ndims = ARR_DIMS(nlevarr)[0];
	if (ndims < 1 || ndims > DRV_MAX_DIMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the joint driver analysis takes 1 to %d dimensions, got %d",
						DRV_MAX_DIMS, ndims)));
	nl = arg_array(nlevarr, INT4OID, ndims, "nlevels");
	ncells = ArrayGetNItems(ARR_NDIM(recarr), ARR_DIMS(recarr));
	rc = arg_array(recarr, BOOLOID, ncells, "recent");
	nn = arg_array(narr, INT8OID, ncells, "n");
	ww = arg_array(warr, INT8OID, ncells, "w");
	if ((int64) ncells * ndims > MaxAllocSize / sizeof(int32))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many cells for the joint driver analysis: %d", ncells)));
	lv = arg_array(levarr, INT4OID, ncells * ndims, "levels");
	for (d = 0; d < ndims; d++)
	{
		if (nl[d] < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("dimension %d has %d levels", d + 1, nl[d])));
		totlev += nl[d];
	}
	if (totlev + 1 + DRV_MAX_SELECTED > DRV_MAX_PARAMS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the dimensions have %lld segments in all; the joint driver analysis takes at most %d",
						(long long) totlev, DRV_MAX_PARAMS - 1 - DRV_MAX_SELECTED),
				 errhint("Leave out a dimension with many segments (such as a rep or account id).")));
	if (ncells == 0)
		return (Datum) 0;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "dealrisk drivers", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);

	memset(&dv, 0, sizeof(dv));
	dv.alpha = alpha;
	dv.ndims = ndims;
	dv.ncells = ncells;
	dv.nlev = nl;
	dv.moff = palloc(sizeof(int) * ndims);
	dv.p0 = 1;
	for (d = 0; d < ndims; d++)
	{
		dv.moff[d] = dv.p0;
		dv.p0 += nl[d];
	}
	lev0 = palloc(sizeof(int32) * (Size) ncells * ndims);
	dv.rec = rc;
	dv.cn = palloc(sizeof(double) * ncells);
	dv.cw = palloc(sizeof(double) * ncells);
	for (c = 0; c < ncells; c++)
	{
		if (nn[c] < 1 || ww[c] < 0 || ww[c] > nn[c])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cell %d has %lld wins of %lld deals", c + 1,
							(long long) ww[c], (long long) nn[c])));
		for (d = 0; d < ndims; d++)
		{
			int32		l = lv[(Size) c * ndims + d];

			if (l < 1 || l > nl[d])
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("cell %d has level %d of dimension %d, which has %d levels",
								c + 1, l, d + 1, nl[d])));
			lev0[(Size) c * ndims + d] = l - 1;
		}
		dv.cn[c] = (double) nn[c];
		dv.cw[c] = (double) ww[c];
		if (rc[c])
		{
			dv.N1 += dv.cn[c];
			dv.W1 += dv.cw[c];
		}
		else
		{
			dv.N0 += dv.cn[c];
			dv.W0 += dv.cw[c];
		}
	}
	dv.lev = lev0;
	if (!(dv.N0 > 0 && dv.N1 > 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the joint driver analysis needs closed deals in both windows, got %.0f baseline and %.0f recent",
						dv.N0, dv.N1)));

	/* candidates: segments, overall, cells of two small dimensions, mix */
	maxcands = 2 * totlev + 1;
	for (d = 0; d < ndims; d++)
		for (d2 = d + 1; d2 < ndims; d2++)
			if (nl[d] <= DRV_PAIR_MAX_LEVELS && nl[d2] <= DRV_PAIR_MAX_LEVELS)
				maxcands += nl[d] * nl[d2];
	dv.cands = palloc(sizeof(DrvCand) * maxcands);
	for (d = 0; d < ndims; d++)
		for (i = 0; i < nl[d]; i++)
			add_cand(&dv, DRV_RATE, d, i, -1, -1);
	add_cand(&dv, DRV_OVERALL, -1, -1, -1, -1);
	pairidx = palloc(sizeof(int) * DRV_PAIR_MAX_LEVELS * DRV_PAIR_MAX_LEVELS);
	for (d = 0; d < ndims; d++)
		for (d2 = d + 1; d2 < ndims; d2++)
		{
			if (nl[d] > DRV_PAIR_MAX_LEVELS || nl[d2] > DRV_PAIR_MAX_LEVELS)
				continue;
			for (i = 0; i < nl[d] * nl[d2]; i++)
				pairidx[i] = -1;
			for (c = 0; c < ncells; c++)
			{
				int			k = lev0[(Size) c * ndims + d] * nl[d2] + lev0[(Size) c * ndims + d2];

				if (pairidx[k] < 0)
					pairidx[k] = add_cand(&dv, DRV_RATE, d, k / nl[d2], d2, k % nl[d2]);
			}
		}
	for (d = 0; d < ndims; d++)
		for (i = 0; i < nl[d]; i++)
			add_cand(&dv, DRV_MIX, d, i, -1, -1);

	/* member cells and counts */
	{
		int		   *cnt = palloc0(sizeof(int) * dv.ncands);

		for (i = 0; i < dv.ncands; i++)
		{
			DrvCand    *j = &dv.cands[i];

			CHECK_FOR_INTERRUPTS();
			for (c = 0; c < ncells; c++)
				if (cand_has(&dv, j, c))
					cnt[i]++;
			j->mem = palloc(sizeof(int) * Max(cnt[i], 1));
			for (c = 0; c < ncells; c++)
				if (cand_has(&dv, j, c))
				{
					j->mem[j->nmem++] = c;
					if (rc[c])
					{
						j->n1 += nn[c];
						j->w1 += ww[c];
					}
					else
					{
						j->n0 += nn[c];
						j->w0 += ww[c];
					}
				}
		}
		pfree(cnt);
	}

	/* the base model: intercept and main effects */
	dv.cellsel = palloc(sizeof(int) * (Size) ncells * DRV_MAX_SELECTED);
	dv.ncellsel = palloc0(sizeof(int) * ncells);
	dv.beta = palloc0(sizeof(double) * (dv.p0 + DRV_MAX_SELECTED));
	dv.eta = palloc(sizeof(double) * ncells);
	dv.mu = palloc(sizeof(double) * ncells);
	dv.chol = palloc(sizeof(double) * (Size) (dv.p0 + DRV_MAX_SELECTED) * (dv.p0 + DRV_MAX_SELECTED));
	work = palloc(sizeof(double) * Max(dv.p0 + DRV_MAX_SELECTED, 4 << DRV_MAX_MIX_STRATA));
	fit(&dv);

	/* which candidates are tested: enough deals, and something to test */
	for (i = 0; i < dv.ncands; i++)
	{
		DrvCand    *j = &dv.cands[i];
		int64		minn = j->kind == DRV_RATE && j->d2 >= 0 ? DRV_MIN_CELL : DRV_MIN_SEGMENT;
		double		chi2,
					est,
					se,
					p;

		if (j->kind == DRV_MIX)
			j->tested = j->n0 >= DRV_MIN_SEGMENT && j->n0 + j->n1 >= 2 * DRV_MIN_SEGMENT &&
				mix_p(&dv, j, cond, 0, &p, work);
		else
			j->tested = j->n0 >= minn && j->n1 >= minn &&
				score_test(&dv, j, &chi2, &est, &se, work);
		if (j->tested)
			tested++;
	}

	/* forward selection; drop a selected driver BH does not keep, again */
	for (rounds = 0; tested > 0 && rounds < dv.ncands; rounds++)
	{
		int			worst = -1;

		forward(&dv, tested, work);
		final_tests(&dv, work);
		for (i = 0; i < dv.ncands; i++)
			if (dv.cands[i].selected && !(dv.cands[i].q < alpha) &&
				(worst < 0 || dv.cands[i].p > dv.cands[worst].p))
				worst = i;
		if (worst < 0)
			break;
		dv.cands[worst].banned = true;
		if (dv.cands[worst].kind == DRV_MIX)
			dv.cands[worst].selected = false;
		else
			unselect_rate(&dv, worst);
	}

	/* effects and contributions in the final model */
	for (i = 0; i < dv.ncands; i++)
	{
		DrvCand    *j = &dv.cands[i];
		double		chi2,
					est,
					se,
					delta;

		CHECK_FOR_INTERRUPTS();
		j->effect = j->elo = j->ehi = j->contrib = NAN;
		if (j->kind == DRV_MIX)
		{
			double		s0 = dv.N0 > 0 ? j->n0 / dv.N0 : 0,
						s1 = dv.N1 > 0 ? j->n1 / dv.N1 : 0,
						r0 = j->n0 > 0 ? (double) j->w0 / j->n0 : dv.W0 / dv.N0;

			j->effect = s1 - s0;
			j->contrib = (s1 - s0) * (r0 - dv.W0 / dv.N0);
			continue;
		}
		if (j->n1 <= 0)
			continue;
		if (j->selected)
		{
			double	   *e = work;

			memset(e, 0, sizeof(double) * dv.p);
			e[j->param] = 1.0;
			dr_cholesky_solve(dv.chol, dv.p, e);
			delta = dv.beta[j->param];
			se = sqrt(Max(e[j->param], 0));
			j->effect = rate_shift(&dv, j, delta, delta);
			j->elo = rate_shift(&dv, j, delta, delta - 1.959963984540054 * se);
			j->ehi = rate_shift(&dv, j, delta, delta + 1.959963984540054 * se);
		}
		else if (j->n0 > 0 && score_test(&dv, j, &chi2, &est, &se, work))
		{
			j->effect = rate_shift(&dv, j, 0, est);
			j->elo = rate_shift(&dv, j, 0, est - 1.959963984540054 * se);
			j->ehi = rate_shift(&dv, j, 0, est + 1.959963984540054 * se);
		}
		else
			continue;
		j->contrib = j->effect * j->n1 / dv.N1;
	}

	/* a selected mix driver carries the mix of the unselected segments of its dimension */
	for (d = 0; d < ndims; d++)
	{
		double		selshift = 0,
					rest = 0;

		for (i = 0; i < dv.ncands; i++)
		{
			DrvCand    *j = &dv.cands[i];

			if (j->kind != DRV_MIX || j->d1 != d)
				continue;
			if (j->selected)
				selshift += fabs(j->effect);
			else
				rest += j->contrib;
		}
		if (!(selshift > 0))
			continue;
		for (i = 0; i < dv.ncands; i++)
		{
			DrvCand    *j = &dv.cands[i];

			if (j->kind == DRV_MIX && j->d1 == d && j->selected)
				j->contrib += rest * fabs(j->effect) / selshift;
		}
	}

	/*
	 * explained_by: the selected driver that accounts for most of a
	 * significant (unadjusted p < alpha) change of a segment on its own
	 */
	for (i = 0; i < dv.ncands; i++)
	{
		DrvCand    *j = &dv.cands[i];
		double		marginal,
					best = 0;
		int			who = -1,
					k,
					mm;

		CHECK_FOR_INTERRUPTS();
		if (j->selected || j->n0 <= 0 || j->n1 <= 0)
			continue;
		if (j->kind == DRV_MIX)
		{
			double		u,
						cchi2;
			int			one;

			if (!j->tested || !cmh_test(&dv, j, cond, 0, &u, work) || !(chi2_p(u) < alpha))
				continue;
			for (k = 0; k < dv.ncands; k++)
			{
				if (dv.cands[k].kind != DRV_MIX || !dv.cands[k].selected)
					continue;
				one = k;
				if (cmh_test(&dv, j, &one, 1, &cchi2, work) && cchi2 <= 0.5 * u &&
					u - cchi2 > best)
				{
					best = u - cchi2;
					who = k;
				}
			}
			j->explained_by = who;
			continue;
		}
		marginal = (double) j->w1 / j->n1 - (double) j->w0 / j->n0;
		if (marginal == 0 ||
			!(dr_two_proportion_p((double) j->w1, (double) j->n1,
								  (double) j->w0, (double) j->n0) < alpha))
			continue;			/* no marginal change to explain */
		/* the selected change terms */
		for (k = 0; k < dv.nsel; k++)
		{
			DrvCand    *q = &dv.cands[dv.sel[k]];
			double		delta = dv.beta[q->param],
						s = 0;

			for (mm = 0; mm < j->nmem; mm++)
			{
				int			c = j->mem[mm];

				if (dv.rec[c] && cand_has(&dv, q, c))
					s += dv.cn[c] * (dv.mu[c] - dr_logistic(dv.eta[c] - delta));
			}
			s /= j->n1;
			if (s * (marginal > 0 ? 1 : -1) > best)
			{
				best = s * (marginal > 0 ? 1 : -1);
				who = dv.sel[k];
			}
		}
		/* the composition along a dimension with a selected mix driver */
		for (d = 0; d < ndims; d++)
		{
			int			top = -1;
			double		mb = 0,
						s = 0;

			for (k = 0; k < dv.ncands; k++)
				if (dv.cands[k].kind == DRV_MIX && dv.cands[k].d1 == d && dv.cands[k].selected &&
					(top < 0 || fabs(dv.cands[k].effect) > fabs(dv.cands[top].effect)))
					top = k;
			if (top < 0)
				continue;
			for (mm = 0; mm < j->nmem; mm++)
			{
				int			c = j->mem[mm];

				if (!dv.rec[c])
					mb += dv.cn[c] * dv.beta[dv.moff[d] + lev0[(Size) c * ndims + d]];
			}
			mb /= j->n0;
			for (mm = 0; mm < j->nmem; mm++)
			{
				int			c = j->mem[mm];
				double		e0 = dv.eta[c];

				if (!dv.rec[c])
					continue;
				for (k = 0; k < dv.ncellsel[c]; k++)
					e0 -= dv.beta[dv.cellsel[(Size) c * DRV_MAX_SELECTED + k]];
				s += dv.cn[c] * (dr_logistic(e0) -
								 dr_logistic(e0 - dv.beta[dv.moff[d] + lev0[(Size) c * ndims + d]] + mb));
			}
			s /= j->n1;
			if (s * (marginal > 0 ? 1 : -1) > best)
			{
				best = s * (marginal > 0 ? 1 : -1);
				who = top;
			}
		}
		if (who >= 0 && best >= 0.5 * fabs(marginal))
			j->explained_by = who;
	}

	MemoryContextSwitchTo(old);

	/* one row per candidate: untested cells are left out */
	for (i = 0; i < dv.ncands; i++)
	{
		DrvCand    *j = &dv.cands[i];
		Datum		values[19];
		bool		nulls[19];

		if (j->kind == DRV_RATE && j->d2 >= 0 && !j->tested)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(i + 1);
		values[1] = CStringGetTextDatum(j->kind == DRV_MIX ? "mix" :
										j->kind == DRV_OVERALL ? "overall" : "rate");
		values[2] = Int32GetDatum(j->d1 + 1);
		values[3] = Int32GetDatum(j->l1 + 1);
		values[4] = Int32GetDatum(j->d2 + 1);
		values[5] = Int32GetDatum(j->l2 + 1);
		nulls[2] = nulls[3] = j->d1 < 0;
		nulls[4] = nulls[5] = j->d2 < 0;
		values[6] = Int64GetDatum(j->n0);
		values[7] = Int64GetDatum(j->w0);
		values[8] = Int64GetDatum(j->n1);
		values[9] = Int64GetDatum(j->w1);
		values[10] = BoolGetDatum(j->tested);
		values[11] = BoolGetDatum(j->selected && j->tested);
		values[12] = Float8GetDatum(j->effect);
		values[13] = Float8GetDatum(j->elo);
		values[14] = Float8GetDatum(j->ehi);
		values[15] = Float8GetDatum(j->contrib);
		nulls[12] = isnan(j->effect) || isinf(j->effect);
		nulls[13] = isnan(j->elo) || isinf(j->elo);
		nulls[14] = isnan(j->ehi) || isinf(j->ehi);
		nulls[15] = isnan(j->contrib) || isinf(j->contrib);
		values[16] = Float8GetDatum(j->p);
		values[17] = Float8GetDatum(j->q);
		nulls[16] = nulls[17] = !j->tested;
		values[18] = Int32GetDatum(j->explained_by + 1);
		nulls[18] = j->explained_by < 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(cxt);
	return (Datum) 0;
}
