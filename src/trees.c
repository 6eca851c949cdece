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
 *
 * dr_trees_check also builds what the margin is computed from: a
 * branch-free form of the trees (fast_build), and, on first use for a set
 * of absent features, an ensemble with those features averaged out
 * (marg_build), so that an open deal costs a walk like a closed one.
 * TreeSHAP walks the arrays as given.
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

static void fast_build(DrTrees *t, MemoryContext cxt);

/* Sets of absent features a model keeps a compiled ensemble for (marg_for). */
#define DR_MARG_SETS 4

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
	t->cxt = cxt;
	t->nmarg = 0;
	t->marg_key = MemoryContextAlloc(cxt, sizeof(uint64) * t->words * DR_MARG_SETS);
	t->marg = MemoryContextAlloc(cxt, sizeof(DrTrees *) * DR_MARG_SETS);
	fast_build(t, cxt);
}


/*
 * The branch-free form of an ensemble, which dr_trees_margin walks when it
 * can (a tree model's scores cost the tree walk; issue #10, "Measure").
 *
 * A row's features become codes first: per feature, the number of the
 * ensemble's distinct thresholds on it (as float4) that are <= the value,
 * so that "x < threshold k" is "code <= k".  Each row gets two codes per
 * feature, differing only for a missing value: code[f] sends it right
 * (one past the largest code) and code[nfeatures + f] sends it left (0).
 * A node is one 64-bit word: its left child (the right one is next to
 * it) above (code index << 16) | k, and a step is
 * i = child + (code > k), with no branch to mispredict.  A leaf is its
 * own left child under k = 0xFFFF (no code is above it), so a walk of a
 * fixed number of steps stays on it.  The trees, ordered by depth, are
 * walked DR_BLOCK side by side for as many steps as the deepest of them,
 * so that their steps overlap, and the leaves they reach are added block
 * by block (the margin may differ from a walk in tree order by rounding,
 * 1e-13 or so).  An ensemble with a feature of 65535 or more thresholds
 * keeps the pointer walk.
 */
#define DR_BLOCK 4
#define DR_ALWAYS_LEFT 0xFFFF

typedef struct DrBlock
{
	int			ntrees;			/* 1 .. DR_BLOCK */
	int			depth;			/* steps: its deepest tree's depth */
	int32		tree[DR_BLOCK]; /* its trees */
	int64		complete;		/* its complete trees in t->complete, or -1 */
} DrBlock;

/*
 * A block of DR_BLOCK trees that are nearly complete is also kept as
 * complete trees of its depth, in half the bytes a step reads: inner
 * nodes as (code index << 16) | k at heap positions (a step is
 * i = 2i + 1 + (code > k)), a leaf above the depth as a node that always
 * goes left over copies of it, then the 2^depth leaves.  Only where the
 * padding at most doubles the nodes and the depth is at most
 * DR_COMPLETE_DEPTH.
 */
#define DR_COMPLETE_DEPTH 10

/* The code of value v among n sorted thresholds: how many are <= v. */
static inline int
fast_code(const float *thr, int n, float v)
{
	int			lo = 0;

	while (n > 0)
	{
		int			half = n / 2;

		if (thr[lo + half] <= v)
		{
			lo += half + 1;
			n -= half + 1;
		}
		else
			n = half;
	}
	return lo;
}

/* Sort callback for float4 thresholds. */
static int
cmp_float(const void *a, const void *b)
{
	float		x = *(const float *) a,
				y = *(const float *) b;

	return x < y ? -1 : x > y;
}

/* The depth of the tree at node i (tree-local), 0 for a leaf. */
static int
tree_depth(const DrTrees *t, int base, int i)
{
	int			g = base + i;

	if (t->left[g] < 0)
		return 0;
	return 1 + Max(tree_depth(t, base, t->left[g]), tree_depth(t, base, t->right[g]));
}

/* The code k of tree node g's threshold: "x < threshold" is "code <= k". */
static inline int
node_cut(const DrTrees *t, int g)
{
	int			f = t->feature[g];

	return fast_code(t->thr + t->thr_start[f], t->thr_start[f + 1] - t->thr_start[f],
					 (float) t->threshold[g]) - 1;
}

/* An inner node g as the branch-free walks read it: (code index << 16) | cut. */
static inline uint32
node_word(const DrTrees *t, int g)
{
	int			f = t->feature[g];
	int			cut = node_cut(t, g);

	Assert(cut >= 0 && t->thr[t->thr_start[f] + cut] == (float) t->threshold[g]);
	return ((uint32) (t->default_left[g] ? t->nfeatures + f : f) << 16) | (uint32) cut;
}

/* Write tree node i (tree-local, from base) at heap position pos of a complete tree. */
static void
complete_fill(const DrTrees *t, int base, int i, int64 pos, int level, int depth,
			  uint32 *nodes, double *leaves)
{
	int			g = base + i;

	if (level == depth)
	{
		leaves[pos - ((INT64CONST(1) << depth) - 1)] = t->value[g];
		return;
	}
	if (t->left[g] < 0)
	{
		nodes[pos] = DR_ALWAYS_LEFT;
		complete_fill(t, base, i, 2 * pos + 1, level + 1, depth, nodes, leaves);
		complete_fill(t, base, i, 2 * pos + 2, level + 1, depth, nodes, leaves);
		return;
	}
	nodes[pos] = node_word(t, g);
	complete_fill(t, base, t->left[g], 2 * pos + 1, level + 1, depth, nodes, leaves);
	complete_fill(t, base, t->right[g], 2 * pos + 2, level + 1, depth, nodes, leaves);
}

/* Sort context of trees by depth (then index). */
static int
cmp_depth(const void *a, const void *b, void *arg)
{
	const int  *depth = arg;
	int			x = *(const int *) a,
				y = *(const int *) b;

	if (depth[x] != depth[y])
		return depth[x] < depth[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* Build the branch-free form of a checked ensemble in cxt, when it can hold it. */
static void
fast_build(DrTrees *t, MemoryContext cxt)
{
	int		   *count,
			   *order,
			   *depth,
			   *queue,
			   *outi;
	int			f,
				g,
				k,
				b,
				next = 0;

	t->nblocks = 0;
	t->blocks = NULL;
	if (t->ntrees == 0 || t->nfeatures > 32767)
		return;
	/* the distinct thresholds of each feature, sorted */
	count = palloc0(sizeof(int) * t->nfeatures);
	for (g = 0; g < t->nnodes; g++)
		if (t->left[g] >= 0)
			count[t->feature[g]]++;
	t->thr_start = MemoryContextAlloc(cxt, sizeof(int32) * (t->nfeatures + 1));
	t->thr_start[0] = 0;
	for (f = 0; f < t->nfeatures; f++)
		t->thr_start[f + 1] = t->thr_start[f] + count[f];
	t->thr = MemoryContextAlloc(cxt, sizeof(float) * Max(t->thr_start[t->nfeatures], 1));
	memset(count, 0, sizeof(int) * t->nfeatures);
	for (g = 0; g < t->nnodes; g++)
		if (t->left[g] >= 0)
		{
			f = t->feature[g];
			t->thr[t->thr_start[f] + count[f]++] = (float) t->threshold[g];
		}
	for (f = 0; f < t->nfeatures; f++)
	{
		float	   *a = t->thr + t->thr_start[f];
		int			n = 0;

		qsort(a, count[f], sizeof(float), cmp_float);
		for (k = 0; k < count[f]; k++)
			if (n == 0 || a[k] != a[n - 1])
				a[n++] = a[k];
		/* codes run 0 .. n + 1 and must stay below DR_ALWAYS_LEFT */
		if (n + 1 >= DR_ALWAYS_LEFT)
		{
			pfree(count);
			return;
		}
		count[f] = n;
	}
	/* compact the lists: feature f keeps its first count[f] entries */
	{
		int32		at = 0;

		for (f = 0; f < t->nfeatures; f++)
		{
			memmove(t->thr + at, t->thr + t->thr_start[f], sizeof(float) * count[f]);
			t->thr_start[f] = at;
			at += count[f];
		}
		t->thr_start[t->nfeatures] = at;
	}
	pfree(count);

	/*
	 * The nodes of each tree in breadth-first order, siblings side by side:
	 * queue holds a tree's nodes in the order they are placed.
	 */
	t->cnodes = MemoryContextAlloc(cxt, sizeof(uint64) * t->nnodes);
	t->cval = MemoryContextAlloc(cxt, sizeof(double) * t->nnodes);
	t->troot = MemoryContextAlloc(cxt, sizeof(int32) * t->ntrees);
	t->tdepth = MemoryContextAlloc(cxt, sizeof(int32) * t->ntrees);
	t->code = MemoryContextAlloc(cxt, sizeof(uint16) * 2 * t->nfeatures);
	queue = palloc(sizeof(int) * t->nnodes);
	outi = palloc(sizeof(int) * t->nnodes);
	for (k = 0; k < t->ntrees; k++)
	{
		int			base = t->start[k],
					head = 0,
					tail = 0;

		t->troot[k] = next;
		t->tdepth[k] = tree_depth(t, base, 0);
		queue[tail++] = 0;
		outi[0] = next++;
		while (head < tail)
		{
			int			i = queue[head++],
						o = outi[i];

			g = base + i;
			if (t->left[g] < 0)
			{
				t->cnodes[o] = ((uint64) o << 32) | DR_ALWAYS_LEFT;
				t->cval[o] = t->value[g];
				continue;
			}
			t->cnodes[o] = ((uint64) next << 32) | node_word(t, g);
			t->cval[o] = 0;
			outi[t->left[g]] = next++;
			outi[t->right[g]] = next++;
			queue[tail++] = t->left[g];
			queue[tail++] = t->right[g];
		}
	}
	pfree(queue);
	pfree(outi);

	/* blocks of DR_BLOCK trees of about the same depth */
	order = palloc(sizeof(int) * t->ntrees);
	depth = palloc(sizeof(int) * t->ntrees);
	for (k = 0; k < t->ntrees; k++)
	{
		order[k] = k;
		depth[k] = t->tdepth[k];
	}
	qsort_arg(order, t->ntrees, sizeof(int), cmp_depth, depth);
	t->nblocks = (t->ntrees + DR_BLOCK - 1) / DR_BLOCK;
	t->blocks = MemoryContextAlloc(cxt, sizeof(DrBlock) * t->nblocks);
	for (b = 0; b < t->nblocks; b++)
	{
		DrBlock    *bl = &t->blocks[b];

		bl->ntrees = Min(DR_BLOCK, t->ntrees - b * DR_BLOCK);
		bl->depth = 0;
		for (k = 0; k < bl->ntrees; k++)
		{
			bl->tree[k] = order[b * DR_BLOCK + k];
			bl->depth = Max(bl->depth, depth[bl->tree[k]]);
		}
	}
	pfree(order);
	pfree(depth);

	/* the blocks of nearly complete trees, once more as complete trees */
	{
		int64		words = 0;

		for (b = 0; b < t->nblocks; b++)
		{
			DrBlock    *bl = &t->blocks[b];
			int64		nodes = 0,
						padded;

			bl->complete = -1;
			if (bl->ntrees < DR_BLOCK || bl->depth > DR_COMPLETE_DEPTH)
				continue;
			for (k = 0; k < DR_BLOCK; k++)
			{
				int			tr = bl->tree[k];

				nodes += (tr + 1 < t->ntrees ? t->start[tr + 1] : t->nnodes) - t->start[tr];
			}
			padded = (int64) DR_BLOCK * ((INT64CONST(2) << bl->depth) - 1);
			if (padded > 2 * nodes)
				continue;
			bl->complete = words;
			/* inner nodes (4 bytes) then leaves (8 bytes), in 4-byte words */
			words += (int64) DR_BLOCK * (((INT64CONST(1) << bl->depth) - 1) + 2 * (INT64CONST(1) << bl->depth));
		}
		t->complete = MemoryContextAlloc(cxt, sizeof(uint32) * Max(words, 2));
		for (b = 0; b < t->nblocks; b++)
		{
			DrBlock    *bl = &t->blocks[b];
			int64		inner = (INT64CONST(1) << bl->depth) - 1;
			uint32	   *nodes = t->complete + bl->complete;
			double	   *leaves = (double *) (nodes + DR_BLOCK * inner + (DR_BLOCK * inner) % 2);

			if (bl->complete < 0)
				continue;
			for (k = 0; k < DR_BLOCK; k++)
				complete_fill(t, t->start[bl->tree[k]], 0, 0, 0, bl->depth,
							  nodes + k * inner, leaves + ((int64) k << bl->depth));
		}
	}
}

/* The codes of a feature vector (NaN missing) for the branch-free form. */
static inline void
fast_codes(const DrTrees *t, const double *x)
{
	int			f;

	for (f = 0; f < t->nfeatures; f++)
	{
		int			n = t->thr_start[f + 1] - t->thr_start[f];

		if (isnan(x[f]))
		{
			t->code[f] = (uint16) (n + 1);	/* missing goes right */
			t->code[t->nfeatures + f] = 0;	/* missing goes left */
		}
		else
			t->code[f] = t->code[t->nfeatures + f] =
				(uint16) fast_code(t->thr + t->thr_start[f], n, (float) x[f]);
	}
}

/* One step of the branch-free walk from node i. */
#define FAST_STEP(i, nodes, code) \
	do { \
		uint64		w_ = (nodes)[i]; \
		(i) = (uint32) (w_ >> 32) + \
			((uint32) (code)[(uint32) (w_ >> 16) & 0xFFFF] > (uint32) (w_ & 0xFFFF)); \
	} while (0)

/* The leaf value tree k reaches (codes already computed). */
static inline double
fast_tree(const DrTrees *t, int k)
{
	uint32		i = t->troot[k];
	int			l;

	for (l = 0; l < t->tdepth[k]; l++)
		FAST_STEP(i, t->cnodes, t->code);
	return t->cval[i];
}

/* m plus the leaves of a block's trees (codes already computed). */
static inline double
fast_block(const DrTrees *t, const DrBlock *bl, double m)
{
	const uint64 *nodes = t->cnodes;
	const uint16 *code = t->code;
	uint32		i0,
				i1,
				i2,
				i3;
	int			l;

	StaticAssertStmt(DR_BLOCK == 4, "fast_block walks four trees");
	if (bl->ntrees < DR_BLOCK)
	{
		for (l = 0; l < bl->ntrees; l++)
			m += fast_tree(t, bl->tree[l]);
		return m;
	}
	if (bl->complete >= 0)
	{
		uint32		inner = ((uint32) 1 << bl->depth) - 1;
		const uint32 *n0 = t->complete + bl->complete,
				   *n1 = n0 + inner,
				   *n2 = n1 + inner,
				   *n3 = n2 + inner;
		const double *lv = (const double *) (n0 + DR_BLOCK * inner + (DR_BLOCK * inner) % 2);

		i0 = i1 = i2 = i3 = 0;
		for (l = 0; l < bl->depth; l++)
		{
			uint32		w0 = n0[i0],
						w1 = n1[i1],
						w2 = n2[i2],
						w3 = n3[i3];

			i0 = 2 * i0 + 1 + ((uint32) code[w0 >> 16] > (w0 & 0xFFFF));
			i1 = 2 * i1 + 1 + ((uint32) code[w1 >> 16] > (w1 & 0xFFFF));
			i2 = 2 * i2 + 1 + ((uint32) code[w2 >> 16] > (w2 & 0xFFFF));
			i3 = 2 * i3 + 1 + ((uint32) code[w3 >> 16] > (w3 & 0xFFFF));
		}
		m += lv[i0 - inner];
		m += lv[(inner + 1) + i1 - inner];
		m += lv[2 * (inner + 1) + i2 - inner];
		m += lv[3 * (inner + 1) + i3 - inner];
		return m;
	}
	i0 = t->troot[bl->tree[0]];
	i1 = t->troot[bl->tree[1]];
	i2 = t->troot[bl->tree[2]];
	i3 = t->troot[bl->tree[3]];
	for (l = 0; l < bl->depth; l++)
	{
		FAST_STEP(i0, nodes, code);
		FAST_STEP(i1, nodes, code);
		FAST_STEP(i2, nodes, code);
		FAST_STEP(i3, nodes, code);
	}
	m += t->cval[i0];
	m += t->cval[i1];
	m += t->cval[i2];
	m += t->cval[i3];
	return m;
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
 * Absent features compiled out (dr_trees_margin): for an absent set, each
 * tree that splits on it becomes a tree over the other features whose
 * leaves hold what absent_value would return in that region.  Built once
 * per absent set and kept with the ensemble, so that an open deal costs a
 * walk down every tree like a closed one instead of a walk down both sides
 * of every split on its age.  A region is tracked as per-feature code
 * ranges (fast_build's codes) and whether a missing value can be in it;
 * a split it decides is not output.  An ensemble whose compiled form
 * would outgrow DR_MARG_NODES nodes per tree (or 64 levels) is not
 * compiled, and absent_value serves it as before.
 */
#define DR_MARG_NODES 8192

typedef struct MargItem
{
	int			node;			/* a node of the tree (tree-local) */
	double		w;				/* the weight its subtree enters with */
} MargItem;

typedef struct MargBuild
{
	const DrTrees *t;
	const uint64 *aset;			/* the absent features */
	int			base;			/* the tree's first node */
	int			size;			/* its number of nodes */
	int			out_start;		/* its first output node */
	int		   *lo;				/* per feature: codes lo .. hi remain */
	int		   *hi;
	bool	   *miss;			/* per feature: a missing value remains */
	int			n;				/* output nodes so far */
	int			cap;
	int			limit;
	bool		overflow;
	int32	   *left;
	int32	   *right;
	int32	   *feature;
	double	   *threshold;
	bool	   *dl;
	double	   *value;
} MargBuild;

/* Append an output node (a leaf of value v for now); returns its index. */
static int
marg_out(MargBuild *b, double v)
{
	if (b->n == b->cap)
	{
		b->cap *= 2;
		b->left = repalloc(b->left, sizeof(int32) * b->cap);
		b->right = repalloc(b->right, sizeof(int32) * b->cap);
		b->feature = repalloc(b->feature, sizeof(int32) * b->cap);
		b->threshold = repalloc(b->threshold, sizeof(double) * b->cap);
		b->dl = repalloc(b->dl, sizeof(bool) * b->cap);
		b->value = repalloc(b->value, sizeof(double) * b->cap);
	}
	b->left[b->n] = b->right[b->n] = -1;
	b->feature[b->n] = 0;
	b->threshold[b->n] = 0;
	b->dl[b->n] = false;
	b->value[b->n] = v;
	return b->n++;
}

/*
 * Output the subtree for a region: the sum of the weighted subtrees items
 * plus carry.  Items are first followed down every split the region
 * decides and both ways down every absent split; what is left is split on
 * the first undecided node.
 */
static void
marg_node(MargBuild *b, const MargItem *items, int ni, double carry, int depth)
{
	const DrTrees *t = b->t;
	/* the items are nodes none of which is under another: at most size */
	MargItem   *work = palloc(sizeof(MargItem) * (b->size + 1));
	MargItem   *next = palloc(sizeof(MargItem) * (b->size + 1));
	int			nw = ni,
				nn = 0,
				o;

	memcpy(work, items, sizeof(MargItem) * ni);
	while (nw > 0 && !b->overflow)
	{
		MargItem	it = work[--nw];
		int			g = b->base + it.node,
					f,
					k;
		bool		left_all,
					right_all,
					empty;

		if (t->left[g] < 0)
		{
			carry += it.w * t->value[g];
			continue;
		}
		f = t->feature[g];
		if (b->aset[f / 64] & (UINT64CONST(1) << (f % 64)))
		{
			work[nw].node = t->left[g];
			work[nw++].w = it.w * cover_share(t, b->base, it.node, t->left[g]);
			work[nw].node = t->right[g];
			work[nw++].w = it.w * cover_share(t, b->base, it.node, t->right[g]);
			continue;
		}
		k = node_cut(t, g);
		empty = b->lo[f] > b->hi[f];
		left_all = (empty || b->hi[f] <= k) && (!b->miss[f] || t->default_left[g]);
		right_all = (empty || b->lo[f] > k) && (!b->miss[f] || !t->default_left[g]);
		if (left_all)
			work[nw++].node = t->left[g], work[nw - 1].w = it.w;
		else if (right_all)
			work[nw++].node = t->right[g], work[nw - 1].w = it.w;
		else
			next[nn++] = it;
	}
	if (nn == 0 || b->overflow)
	{
		marg_out(b, carry);
		pfree(work);
		pfree(next);
		return;
	}
	if (depth >= DR_MAX_TREE_DEPTH || b->n + 3 > b->limit)
	{
		b->overflow = true;
		pfree(work);
		pfree(next);
		return;
	}
	{
		int			g = b->base + next[0].node,
					f = t->feature[g],
					k = node_cut(t, g),
					lo = b->lo[f],
					hi = b->hi[f];
		bool		miss = b->miss[f],
					dl = t->default_left[g];

		o = marg_out(b, 0);
		b->feature[o] = f;
		b->threshold[o] = t->threshold[g];
		b->dl[o] = dl;
		b->left[o] = b->n - b->out_start;
		b->hi[f] = Min(hi, k);
		b->miss[f] = miss && dl;
		marg_node(b, next, nn, carry, depth + 1);
		b->hi[f] = hi;
		b->right[o] = b->n - b->out_start;
		b->lo[f] = Max(lo, k + 1);
		b->miss[f] = miss && !dl;
		marg_node(b, next, nn, carry, depth + 1);
		b->lo[f] = lo;
		b->miss[f] = miss;
	}
	pfree(work);
	pfree(next);
}

/* The ensemble of t with the features of aset averaged out, or NULL when too large. */
static DrTrees *
marg_build(const DrTrees *t, const uint64 *aset)
{
	MemoryContext old = MemoryContextSwitchTo(t->cxt);
	DrTrees    *mt = palloc0(sizeof(DrTrees));
	MargBuild	b;
	int32	   *start = palloc(sizeof(int32) * Max(t->ntrees, 1));
	int			k,
				f;

	memset(&b, 0, sizeof(b));
	b.t = t;
	b.aset = aset;
	b.cap = Max(t->nnodes, 16);
	b.left = palloc(sizeof(int32) * b.cap);
	b.right = palloc(sizeof(int32) * b.cap);
	b.feature = palloc(sizeof(int32) * b.cap);
	b.threshold = palloc(sizeof(double) * b.cap);
	b.dl = palloc(sizeof(bool) * b.cap);
	b.value = palloc(sizeof(double) * b.cap);
	b.lo = palloc(sizeof(int) * t->nfeatures);
	b.hi = palloc(sizeof(int) * t->nfeatures);
	b.miss = palloc(sizeof(bool) * t->nfeatures);
	for (k = 0; k < t->ntrees && !b.overflow; k++)
	{
		MargItem	root = {0, 1.0};

		CHECK_FOR_INTERRUPTS();
		for (f = 0; f < t->nfeatures; f++)
		{
			b.lo[f] = 0;
			b.hi[f] = t->thr_start[f + 1] - t->thr_start[f];
			b.miss[f] = true;
		}
		b.base = t->start[k];
		b.size = (k + 1 < t->ntrees ? t->start[k + 1] : t->nnodes) - b.base;
		start[k] = b.out_start = b.n;
		b.limit = b.n + DR_MARG_NODES;
		marg_node(&b, &root, 1, 0.0, 0);
	}
	pfree(b.lo);
	pfree(b.hi);
	pfree(b.miss);
	if (b.overflow)
	{
		MemoryContextSwitchTo(old);
		return NULL;
	}
	mt->ntrees = t->ntrees;
	mt->nnodes = b.n;
	mt->nfeatures = t->nfeatures;
	mt->base = t->base;
	mt->start = start;
	mt->left = b.left;
	mt->right = b.right;
	mt->feature = b.feature;
	mt->threshold = b.threshold;
	mt->default_left = b.dl;
	mt->value = b.value;
	{
		double	   *cover = palloc(sizeof(double) * Max(b.n, 1));

		for (k = 0; k < b.n; k++)
			cover[k] = 1;		/* not used: mt is only walked */
		mt->cover = cover;
	}
	MemoryContextSwitchTo(old);
	dr_trees_check(mt, t->cxt);
	return mt;
}

/* The compiled ensemble for t->absent_set (built on first use), or NULL. */
static const DrTrees *
marg_for(DrTrees *t)
{
	int			i;

	for (i = 0; i < t->nmarg; i++)
		if (memcmp(t->marg_key + (Size) i * t->words, t->absent_set, sizeof(uint64) * t->words) == 0)
			return t->marg[i];
	if (t->blocks == NULL || t->nmarg == DR_MARG_SETS)
		return NULL;
	memcpy(t->marg_key + (Size) t->nmarg * t->words, t->absent_set, sizeof(uint64) * t->words);
	t->marg[t->nmarg] = marg_build(t, t->absent_set);
	return t->marg[t->nmarg++];
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
				w,
				b;
	bool		any = false;

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
	if (any)
	{
		const DrTrees *mt = marg_for((DrTrees *) t);

		if (mt != NULL)
		{
			return dr_trees_margin(mt, x, NULL);
		}
	}
	if (t->blocks != NULL)
	{
		fast_codes(t, x);
		if (!any)
		{
			/* the trees side by side, their leaves added block by block */
			for (b = 0; b < t->nblocks; b++)
				m = fast_block(t, &t->blocks[b], m);
			return m;
		}
	}
	if (t->blocks == NULL)
		for (k = 0; k < t->nfeatures; k++)
			t->xf[k] = (float) x[k];	/* for the pointer walk */
	for (k = 0; k < t->ntrees; k++)
	{
		bool		splits_absent = false;

		/* only a tree that splits on an absent feature averages it out */
		for (w = 0; any && w < t->words && !splits_absent; w++)
			splits_absent = (t->uses[(Size) k * t->words + w] & t->absent_set[w]) != 0;
		if (splits_absent)
			m += absent_value(t, t->start[k], 0, x, absent);
		else if (t->blocks != NULL)
			m += fast_tree(t, k);
		else
			m += leaf_value(t, k, t->xf);
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
