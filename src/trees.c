/*
 * trees.c
 *	  Tree ensembles (gradient-boosted trees): a validated in-memory form,
 *	  the margin of a feature vector, and its exact per-feature contributions
 *	  (path-dependent TreeSHAP), in dealrisk's own C so that no library is on
 *	  the scoring path.
 *
 * An ensemble is given flattened: node arrays of every tree one after the
 * other (tree t holds nodes start[t] .. start[t+1]-1, its root first), with
 * for each node its left and right child (tree-local indexes, -1 for a
 * leaf), the feature it splits on, the threshold (a value below it goes
 * left; value and threshold are compared as float4, as xgboost does, so
 * that an imported model walks the same way), where a missing (NaN) value goes, the value (the
 * leaf's output, already scaled by the learning rate; ignored for inner
 * nodes) and the cover (the hessian sum of the training rows that reached
 * it, which TreeSHAP weighs the paths by).  A child's index is always
 * greater than its parent's, so a valid tree has no cycle.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "dealrisk.h"
#include "trees.h"

PG_FUNCTION_INFO_V1(dr_sql_trees_predict);
PG_FUNCTION_INFO_V1(dr_sql_trees_shap);

/* Deepest tree accepted: TreeSHAP's path buffers grow with its square. */
#define DR_MAX_TREE_DEPTH 64

/* Report an invalid ensemble, naming the node and what is wrong with it. */
static void invalid_trees(int tree, int node, const char *what) pg_attribute_noreturn();
static void
invalid_trees(int tree, int node, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("tree %d is invalid at node %d: %s", tree + 1, node, what)));
}

/* A one-dimensional array argument of the given type and length, without NULLs. */
static void *
tree_array(ArrayType *a, Oid type, int len, const char *name)
{
	if (ARR_NDIM(a) > 1 || ARR_ELEMTYPE(a) != type || ARR_HASNULL(a) ||
		ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) != len)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tree array \"%s\" must have %d elements and no NULL", name, len)));
	return ARR_DATA_PTR(a);
}

/*
 * Check a flattened ensemble and point a DrTrees at its arrays (which must
 * outlive it): every index in range, children after their parent, finite
 * numbers, covers that TreeSHAP can divide by, a bounded depth.
 */
void
dr_trees_check(DrTrees *t, MemoryContext cxt)
{
	int			k;

	if (t->ntrees < 0 || t->nfeatures < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("an ensemble needs at least one feature, got %d", t->nfeatures)));
	if (!isfinite(t->base))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the base margin of an ensemble must be finite, got %g", t->base)));
	t->maxdepth = 0;
	for (k = 0; k < t->ntrees; k++)
	{
		int			base = t->start[k];
		int			n = (k + 1 < t->ntrees ? t->start[k + 1] : t->nnodes) - base;
		int			i;

		if (base < 0 || n < 1 || base + n > t->nnodes)
			invalid_trees(k, 0, "its node range is empty or out of bounds");
		for (i = 0; i < n; i++)
		{
			int			l = t->left[base + i],
						r = t->right[base + i];
			double		c = t->cover[base + i];

			if (!isfinite(c) || c < 0)
				invalid_trees(k, i, "cover must be a finite number >= 0");
			if (l < 0 || r < 0)
			{
				if (l != -1 || r != -1)
					invalid_trees(k, i, "a leaf has both children -1");
				if (!isfinite(t->value[base + i]))
					invalid_trees(k, i, "a leaf value must be finite");
				continue;
			}
			if (l <= i || r <= i || l >= n || r >= n || l == r)
				invalid_trees(k, i, "children must be distinct nodes after their parent in the same tree");
			if (t->feature[base + i] < 0 || t->feature[base + i] >= t->nfeatures)
				invalid_trees(k, i, "its feature is out of range");
			if (isnan(t->threshold[base + i]))
				invalid_trees(k, i, "its threshold is NaN");
			if (!(c > 0))
				invalid_trees(k, i, "an inner node needs a cover > 0");
		}
		/* depth: children after parents, so one backward pass suffices */
		{
			int		   *d = palloc(sizeof(int) * n);

			for (i = n - 1; i >= 0; i--)
			{
				int			l = t->left[base + i];

				d[i] = l < 0 ? 0 : 1 + Max(d[l], d[t->right[base + i]]);
			}
			if (d[0] > DR_MAX_TREE_DEPTH)
				invalid_trees(k, 0, "it is deeper than 64 levels");
			t->maxdepth = Max(t->maxdepth, d[0]);
			pfree(d);
		}
	}

	/* the walker's form: nodes in one array, each tree's features as a set */
	t->words = (t->nfeatures + 63) / 64;
	t->nodes = MemoryContextAlloc(cxt, sizeof(DrNode) * Max(t->nnodes, 1));
	t->uses = MemoryContextAllocZero(cxt, sizeof(uint64) * Max((Size) t->ntrees * t->words, 1));
	t->xf = MemoryContextAlloc(cxt, sizeof(float) * t->nfeatures);
	t->absent_set = MemoryContextAlloc(cxt, sizeof(uint64) * t->words);
	for (k = 0; k < t->ntrees; k++)
	{
		int			end = k + 1 < t->ntrees ? t->start[k + 1] : t->nnodes;
		int			g;

		for (g = t->start[k]; g < end; g++)
		{
			DrNode	   *nd = &t->nodes[g];

			nd->left = t->left[g];
			nd->right = t->right[g];
			nd->value = t->value[g];
			nd->threshold = nd->left < 0 ? 0 : (float) t->threshold[g];
			nd->feature_dl = nd->left < 0 ? 0 :
				((uint32) t->feature[g] << 1) | (t->default_left[g] ? 1 : 0);
			if (nd->left >= 0)
				t->uses[(Size) k * t->words + t->feature[g] / 64] |= UINT64CONST(1) << (t->feature[g] % 64);
		}
	}
}

/* The leaf value a feature vector (as float4, NaN missing) reaches in tree k. */
static inline double
leaf_value(const DrTrees *t, int k, const float *x)
{
	const DrNode *base = t->nodes + t->start[k];
	const DrNode *nd = base;

	while (nd->left >= 0)
	{
		float		v = x[nd->feature_dl >> 1];

		if (isnan(v))
			nd = base + ((nd->feature_dl & 1) ? nd->left : nd->right);
		else
			nd = base + (v < nd->threshold ? nd->left : nd->right);
	}
	return nd->value;
}

/* The share of a split node's cover that its child goes with. */
static inline double
cover_share(const DrTrees *t, int base, int node, int child)
{
	double		l = t->cover[base + t->left[base + node]],
				r = t->cover[base + t->right[base + node]];

	return l + r > 0 ? t->cover[base + child] / (l + r) : 0.5;
}

/*
 * The value of the subtree at node for x when the features marked absent
 * are unknown: a split on one of them is averaged over both sides by
 * their cover (the expectation TreeSHAP takes for a feature outside a
 * coalition); other splits follow x.
 */
static double
absent_value(const DrTrees *t, int base, int node, const double *x, const bool *absent)
{
	const DrNode *nodes = t->nodes + base;
	const DrNode *nd = nodes + node;

	while (nd->left >= 0)
	{
		int			f = nd->feature_dl >> 1;
		double		v = x[f];

		if (absent[f])
			return cover_share(t, base, nd - nodes, nd->left) *
				absent_value(t, base, nd->left, x, absent) +
				cover_share(t, base, nd - nodes, nd->right) *
				absent_value(t, base, nd->right, x, absent);
		if (isnan(v))
			nd = nodes + ((nd->feature_dl & 1) ? nd->left : nd->right);
		else
			nd = nodes + ((float) v < nd->threshold ? nd->left : nd->right);
	}
	return nd->value;
}

/*
 * The margin (log-odds) of a feature vector: base plus every tree's leaf.
 * Features marked in absent (NULL: none) are averaged out as
 * absent_value says: an open deal's age, of which only a lower bound is
 * known (docs/model.md, "Open deals").
 */
double
dr_trees_margin(const DrTrees *t, const double *x, const bool *absent)
{
	double		m = t->base;
	int			k,
				w;
	bool		any = false;

	for (k = 0; k < t->nfeatures; k++)
		t->xf[k] = (float) x[k];
	if (absent != NULL)
	{
		memset(t->absent_set, 0, sizeof(uint64) * t->words);
		for (k = 0; k < t->nfeatures; k++)
			if (absent[k])
			{
				t->absent_set[k / 64] |= UINT64CONST(1) << (k % 64);
				any = true;
			}
	}
	for (k = 0; k < t->ntrees; k++)
	{
		bool		splits_absent = false;

		/* only a tree that splits on an absent feature averages it out */
		for (w = 0; any && w < t->words && !splits_absent; w++)
			splits_absent = (t->uses[(Size) k * t->words + w] & t->absent_set[w]) != 0;
		m += splits_absent ? absent_value(t, t->start[k], 0, x, absent) : leaf_value(t, k, t->xf);
	}
	return m;
}

/* One element of a TreeSHAP path: a feature and the shares that follow it. */
typedef struct ShapPath
{
	int			feature;
	double		zero_fraction;	/* share of the cover that goes this way */
	double		one_fraction;	/* 1 if x goes this way, else 0 */
	double		pweight;		/* permutation weight */
} ShapPath;

/* Grow the path by one feature, updating the permutation weights. */
static void
extend_path(ShapPath *p, int depth, double zero, double one, int feature)
{
	int			i;

	p[depth].feature = feature;
	p[depth].zero_fraction = zero;
	p[depth].one_fraction = one;
	p[depth].pweight = depth == 0 ? 1.0 : 0.0;
	for (i = depth - 1; i >= 0; i--)
	{
		p[i + 1].pweight += one * p[i].pweight * (i + 1) / (double) (depth + 1);
		p[i].pweight = zero * p[i].pweight * (depth - i) / (double) (depth + 1);
	}
}

/* Undo extend_path for the element at index k. */
static void
unwind_path(ShapPath *p, int depth, int k)
{
	double		one = p[k].one_fraction,
				zero = p[k].zero_fraction,
				next = p[depth].pweight;
	int			i;

	for (i = depth - 1; i >= 0; i--)
	{
		if (one != 0)
		{
			double		tmp = p[i].pweight;

			p[i].pweight = next * (depth + 1) / ((i + 1) * one);
			next = tmp - p[i].pweight * zero * (depth - i) / (double) (depth + 1);
		}
		else
			p[i].pweight = p[i].pweight * (depth + 1) / (zero * (depth - i));
	}
	for (i = k; i < depth; i++)
	{
		p[i].feature = p[i + 1].feature;
		p[i].zero_fraction = p[i + 1].zero_fraction;
		p[i].one_fraction = p[i + 1].one_fraction;
	}
}

/* Total permutation weight of the path with element k unwound (not changing it). */
static double
unwound_sum(const ShapPath *p, int depth, int k)
{
	double		one = p[k].one_fraction,
				zero = p[k].zero_fraction,
				next = p[depth].pweight,
				total = 0;
	int			i;

	for (i = depth - 1; i >= 0; i--)
	{
		if (one != 0)
		{
			double		tmp = next * (depth + 1) / ((i + 1) * one);

			total += tmp;
			next = p[i].pweight - tmp * zero * (depth - i) / (double) (depth + 1);
		}
		else if (zero != 0)
			total += p[i].pweight / zero / ((depth - i) / (double) (depth + 1));
	}
	return total;
}

/* feature argument of tree_shap: scale the path by zero, add no feature */
#define SHAP_SCALE (-2)

/*
 * Path-dependent TreeSHAP of one tree (Lundberg et al.'s algorithm 2): add
 * each feature's contribution to phi.  parent is the path so far; this
 * call's path is written just after it in the same buffer.  A split on an
 * absent feature (see absent_value) is not a player: both sides are
 * followed with the path's weights scaled by their cover share, so the
 * contributions add up to the margin with that feature averaged out.
 */
static void
tree_shap(const DrTrees *t, int base, int node, const double *x, const bool *absent,
		  double *phi, ShapPath *parent, int depth, double zero, double one, int feature)
{
	ShapPath   *p = parent + depth + 1;
	int			g = base + node;
	int			l = t->left[g];

	memcpy(p, parent, sizeof(ShapPath) * (depth + 1));
	if (feature == SHAP_SCALE)
	{
		int			i;

		/* the path of the absent split's parent, weighted by the share */
		depth--;
		for (i = 0; i <= depth; i++)
			p[i].pweight *= zero;
	}
	else
		extend_path(p, depth, zero, one, feature);
	if (l < 0)
	{
		int			i;

		for (i = 1; i <= depth; i++)
		{
			double		w = unwound_sum(p, depth, i);

			phi[p[i].feature] += w * (p[i].one_fraction - p[i].zero_fraction) * t->value[g];
		}
	}
	else if (absent != NULL && absent[t->feature[g]])
	{
		int			r = t->right[g];

		tree_shap(t, base, l, x, absent, phi, p, depth + 1,
				  cover_share(t, base, node, l), 1.0, SHAP_SCALE);
		tree_shap(t, base, r, x, absent, phi, p, depth + 1,
				  cover_share(t, base, node, r), 1.0, SHAP_SCALE);
	}
	else
	{
		int			f = t->feature[g],
					r = t->right[g];
		double		v = x[f];
		bool		go_left = isnan(v) ? t->default_left[g] : (float) v < (float) t->threshold[g];
		int			hot = go_left ? l : r,
					cold = go_left ? r : l;
		double		cover = t->cover[g],
					in_zero = 1.0,
					in_one = 1.0;
		int			k;

		/* a feature met again on the path: its earlier split is undone */
		for (k = 1; k <= depth; k++)
			if (p[k].feature == f)
				break;
		if (k <= depth)
		{
			in_zero = p[k].zero_fraction;
			in_one = p[k].one_fraction;
			unwind_path(p, depth, k);
			depth--;
		}
		tree_shap(t, base, hot, x, absent, phi, p, depth + 1,
				  in_zero * t->cover[base + hot] / cover, in_one, f);
		tree_shap(t, base, cold, x, absent, phi, p, depth + 1,
				  in_zero * t->cover[base + cold] / cover, 0, f);
	}
}

/* The cover-weighted mean leaf value of the subtree at node: its expectation. */
static double
expected_value(const DrTrees *t, int base, int node)
{
	int			g = base + node;
	int			l = t->left[g];

	if (l < 0)
		return t->value[g];
	return (t->cover[base + l] * expected_value(t, base, l) +
			t->cover[base + t->right[g]] * expected_value(t, base, t->right[g])) / t->cover[g];
}

/*
 * The contributions of each feature to the margin of x, into phi[0 ..
 * nfeatures-1], and the expected margin into phi[nfeatures]: they add up to
 * dr_trees_margin(x, absent) up to rounding (absent features get 0).
 */
void
dr_trees_shap(const DrTrees *t, const double *x, const bool *absent, double *phi)
{
	Size		buflen = (Size) (t->maxdepth + 2) * (t->maxdepth + 3) / 2;
	ShapPath   *buf = palloc(sizeof(ShapPath) * buflen);
	int			k;

	memset(phi, 0, sizeof(double) * (t->nfeatures + 1));
	phi[t->nfeatures] = t->base;
	for (k = 0; k < t->ntrees; k++)
	{
		CHECK_FOR_INTERRUPTS();
		phi[t->nfeatures] += expected_value(t, t->start[k], 0);
		if (t->left[t->start[k]] >= 0)
			tree_shap(t, t->start[k], 0, x, absent, phi, buf, 0, 1.0, 1.0, -1);
	}
	pfree(buf);
}

/* Build a checked DrTrees from the SQL arguments shared by the two functions. */
static void
trees_from_args(FunctionCallInfo fcinfo, DrTrees *t, double **x)
{
	ArrayType  *start = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *left = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *xarr = PG_GETARG_ARRAYTYPE_P(9);
	int			i;

	memset(t, 0, sizeof(DrTrees));
	if (ARR_NDIM(start) > 1 || ARR_NDIM(left) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tree arrays must be one-dimensional")));
	t->ntrees = ArrayGetNItems(ARR_NDIM(start), ARR_DIMS(start));
	t->nnodes = ArrayGetNItems(ARR_NDIM(left), ARR_DIMS(left));
	t->start = tree_array(start, INT4OID, t->ntrees, "start");
	t->left = tree_array(left, INT4OID, t->nnodes, "left");
	t->right = tree_array(PG_GETARG_ARRAYTYPE_P(2), INT4OID, t->nnodes, "right");
	t->feature = tree_array(PG_GETARG_ARRAYTYPE_P(3), INT4OID, t->nnodes, "feature");
	t->threshold = tree_array(PG_GETARG_ARRAYTYPE_P(4), FLOAT8OID, t->nnodes, "threshold");
	t->default_left = tree_array(PG_GETARG_ARRAYTYPE_P(5), BOOLOID, t->nnodes, "default_left");
	t->value = tree_array(PG_GETARG_ARRAYTYPE_P(6), FLOAT8OID, t->nnodes, "value");
	t->cover = tree_array(PG_GETARG_ARRAYTYPE_P(7), FLOAT8OID, t->nnodes, "cover");
	t->base = PG_GETARG_FLOAT8(8);
	if (ARR_NDIM(xarr) > 1 || ARR_ELEMTYPE(xarr) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the feature vector must be a one-dimensional float8 array")));
	t->nfeatures = ArrayGetNItems(ARR_NDIM(xarr), ARR_DIMS(xarr));
	/* feature values: NULL is missing (NaN); infinities compare as usual */
	*x = palloc(sizeof(double) * Max(t->nfeatures, 1));
	{
		bits8	   *nb = ARR_NULLBITMAP(xarr);
		double	   *d = (double *) ARR_DATA_PTR(xarr);
		int			j = 0;

		for (i = 0; i < t->nfeatures; i++)
		{
			if (nb && !(nb[i / 8] & (1 << (i % 8))))
				(*x)[i] = NAN;
			else
				(*x)[i] = d[j++];
		}
	}
	dr_trees_check(t, CurrentMemoryContext);
}

/*
 * SQL: _trees_predict(start, left, right, feature, threshold, default_left,
 * value, cover, base, x) -> the margin of feature vector x (NULL elements
 * are missing values).
 */
Datum
dr_sql_trees_predict(PG_FUNCTION_ARGS)
{
	DrTrees		t;
	double	   *x;

	trees_from_args(fcinfo, &t, &x);
	PG_RETURN_FLOAT8(dr_trees_margin(&t, x, NULL));
}

/*
 * SQL: _trees_shap(same arguments) -> float8[]: the contribution of each
 * feature to the margin of x, then the expected margin (the bias).
 */
Datum
dr_sql_trees_shap(PG_FUNCTION_ARGS)
{
	DrTrees		t;
	double	   *x,
			   *phi;
	Datum	   *elems;
	int			i;

	trees_from_args(fcinfo, &t, &x);
	phi = palloc(sizeof(double) * (t.nfeatures + 1));
	dr_trees_shap(&t, x, NULL, phi);
	elems = palloc(sizeof(Datum) * (t.nfeatures + 1));
	for (i = 0; i <= t.nfeatures; i++)
		elems[i] = Float8GetDatum(phi[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, t.nfeatures + 1, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
