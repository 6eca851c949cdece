/*
 * gbm.c
 *	  Gradient-boosted trees on a binned matrix: second-order (Newton)
 *	  boosting of the log loss with histogram splits, depth-limited trees,
 *	  a learning rate, L2 on leaf weights, a minimum child weight, row and
 *	  column subsampling and early stopping on a holdout (issue #10).
 *
 * The matrix holds one small code per feature per row: the bin of a
 * number or the level of a category, -1 for a missing value.  A split
 * sends codes <= c left (stored as threshold c + 0.5 for the tree walker
 * of trees.c, which sends x < threshold left) and missing values to the
 * side that gains more.  Randomness (subsampling) comes from
 * dr_hash_uniform(seed, ...), so a fit is deterministic.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dealrisk.h"
#include "model.h"
#include "trees.h"
#include "gbm.h"

PG_FUNCTION_INFO_V1(dr_gbm_fit);

/* Gradient and hessian of a row, or their sums over a histogram slot. */
typedef struct GbmGH
{
	double		g;
	double		h;
} GbmGH;

/*
 * A node being grown: its rows are begin .. end of the round's gathered rows
 * (their codes, gradients and row numbers, kept in node order) in the
 * buffers GBM_LEVEL(depth) names; hist is its histogram (NULL when it
 * will not be split); applied, that its rows' margins already have its value.
 */
typedef struct GbmNode
{
	int			begin;
	int			end;
	int			depth;
	double		g;
	double		h;
	int			out;			/* its index in the output tree */
	GbmGH	   *hist;
	bool		applied;
} GbmNode;

/* Append a node (a leaf for now) to the output; returns its tree-local index. */
static int
out_node(GbmOut *o, int tree_start, double cover)
{
	if (o->nnodes == o->cap)
	{
		o->cap *= 2;
		o->left = repalloc(o->left, sizeof(int32) * o->cap);
		o->right = repalloc(o->right, sizeof(int32) * o->cap);
		o->feature = repalloc(o->feature, sizeof(int32) * o->cap);
		o->threshold = repalloc(o->threshold, sizeof(double) * o->cap);
		o->dl = repalloc(o->dl, sizeof(bool) * o->cap);
		o->value = repalloc(o->value, sizeof(double) * o->cap);
		o->cover = repalloc(o->cover, sizeof(double) * o->cap);
	}
	o->left[o->nnodes] = o->right[o->nnodes] = -1;
	o->feature[o->nnodes] = 0;
	o->threshold[o->nnodes] = 0;
	o->dl[o->nnodes] = false;
	o->value[o->nnodes] = 0;
	o->cover[o->nnodes] = cover;
	return o->nnodes++ - tree_start;
}

/* Copy a gathered row of stride bytes (a multiple of 8) in words. */
static inline void
copy_row(uint8 *dst, const uint8 *src, int stride)
{
	int			q;

	for (q = 0; q < stride; q += 8)
		memcpy(dst + q, src + q, 8);
}

/* Sum the gradients of gathered rows begin .. end into a histogram. */
static void
build_hist(GbmGH *hist, int slots, const uint8 *pcode, const GbmGH *pgh, int begin, int end,
		   int nf, int stride, const int *hoff)
{
	int			i,
				f;

	memset(hist, 0, sizeof(GbmGH) * slots);
	for (i = begin; i < end; i++)
	{
		const uint8 *c = pcode + (Size) i * stride;
		double		g = pgh[i].g,
					h = pgh[i].h;

		for (f = 0; f < nf; f++)
		{
			GbmGH	   *s = &hist[hoff[f] + c[f]];

			s->g += g;
			s->h += h;
		}
	}
}

/*
 * Whether (1) or not (0) a row with this code goes left at a split that
 * sends codes <= cut left and the missing code miss (the largest code) to
 * the side dl says.
 */
static inline int
goes_left(int code, int miss, int cut, bool dl)
{
	/* no branch: the side is a coin toss to the CPU; miss > cut always */
	return (code <= cut) | ((code == miss) & (int) dl);
}

/* Which of lcode/lgh/lidx (gbm_fit) holds the rows of a node of depth d. */
#define GBM_LEVEL(d) ((d) == 0 ? 0 : 2 - ((d) & 1))

/* Whether a node of this depth and weight may be split at all. */
static inline bool
splittable(const GbmParams *p, int depth, double h, int rows)
{
	return depth < p->max_depth && h >= 2 * p->min_child_weight && rows >= 2;
}

/*
 * Fit the ensemble.  codes: n x nf row-major, codes of feature f are <
 * nbins[f], nbins[f] itself marks a missing value; role says which rows
 * are trained on and which are only measured (the holdout).  Returns the
 * number of rounds run; o keeps the trees up to the best holdout loss (all
 * of them without a holdout).  A child's histogram is its parent's minus
 * its sibling's, so only the smaller child of a split is scanned.
 */
int
gbm_fit(int n, int nf, const uint8 *code8, const int32 *nbins, const bool *y,
		const double *w, const uint8 *role, const GbmParams *p, GbmOut *o,
		double *base, double *train_loss, double *hold_loss)
{
	double	   *m = palloc(sizeof(double) * n),
			   *pr = palloc(sizeof(double) * n);
	bool	   *train = palloc(sizeof(bool) * n),
			   *hold = palloc(sizeof(bool) * n),
			   *colon = palloc(sizeof(bool) * nf);
	/*
	 * The round's rows gathered in node order (codes padded to whole words,
	 * gradients, row numbers), twice: a split moves its node's rows from
	 * the buffer of its depth to the other one (below the root, which may
	 * have buffers of its own).
	 */
	int			stride = (nf + 7) & ~7;
	uint8	   *bcode[2];
	GbmGH	   *bgh[2];
	int		   *bidx[2];

	/*
	 * Where the rows of each depth are (see GBM_LEVEL): the root's, then
	 * the odd depths' (buffer 1), then the even depths' below the root
	 * (buffer 0).  Without row subsampling the root's codes and row numbers
	 * are the same every round: the codes are copied once, padded, into
	 * rcode, and the row numbers are rows[].
	 */
	uint8	   *lcode[3];
	GbmGH	   *lgh[3];
	int		   *lidx[3];
	uint8	   *rcode = NULL;
	bool	   *used = palloc(sizeof(bool) * n);
	/* the training rows, then the holdout rows, each in row order */
	int		   *rows = palloc(sizeof(int) * n);
	int			ntrain = 0;
	int		   *hoff = palloc(sizeof(int) * (nf + 1));
	int			maxnodes = 2 << Min(p->max_depth, GBM_MAX_DEPTH);
	GbmNode    *queue = palloc(sizeof(GbmNode) * maxnodes);
	GbmGH	  **freelist;		/* histograms not in use, kept across rounds */
	int			nfree = 0,
				npool = 0,
				slots;
	double		sw = 0,
				swy = 0,
				best = INFINITY;
	int			i,
				f,
				r,
				best_round = 0,
				nhold = 0,
				best_nodes = 0;

	/* histogram offsets: nbins[f] + 1 slots (the last for missing) */
	hoff[0] = 0;
	for (f = 0; f < nf; f++)
		hoff[f + 1] = hoff[f] + nbins[f] + 1;
	slots = hoff[nf];
	/* one histogram per node that may be split: at most maxnodes at a time */
	freelist = palloc(sizeof(GbmGH *) * maxnodes);
	for (i = 0; i < 2; i++)
	{
		bcode[i] = palloc0((Size) n * stride);
		bgh[i] = palloc(sizeof(GbmGH) * n);
		bidx[i] = palloc(sizeof(int) * n);
	}

	for (i = 0; i < n; i++)
	{
		hold[i] = role[i] == GBM_HOLDOUT;
		train[i] = role[i] == GBM_TRAIN;
		if (hold[i])
			nhold++;
		else if (!train[i])
			continue;
		else
		{
			sw += w[i];
			swy += y[i] ? w[i] : 0;
		}
	}
	for (i = 0; i < n; i++)
	{
		used[i] = true;
		if (train[i])
			rows[ntrain++] = i;
	}
	for (i = 0, f = ntrain; i < n; i++)
		if (hold[i])
			rows[f++] = i;
	if (!(sw > 0) || swy <= 0 || swy >= sw)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("boosting needs won and lost deals with positive weight in the training rows")));
	*base = log(swy / (sw - swy));
	if (p->subsample >= 1.0)
	{
		int			k;

		rcode = palloc0((Size) Max(ntrain, 1) * stride);
		for (k = 0; k < ntrain; k++)
			memcpy(rcode + (Size) k * stride, code8 + (Size) rows[k] * nf, nf);
	}
	lcode[0] = rcode != NULL ? rcode : bcode[0];
	lidx[0] = rcode != NULL ? rows : bidx[0];
	lgh[0] = bgh[0];
	lcode[1] = bcode[1];
	lidx[1] = bidx[1];
	lgh[1] = bgh[1];
	lcode[2] = bcode[0];
	lidx[2] = bidx[0];
	lgh[2] = bgh[0];
	for (i = 0; i < n; i++)
	{
		m[i] = *base;
		pr[i] = dr_logistic(*base);
	}

	for (r = 0; r < p->rounds; r++)
	{
		int			tree_start = o->nnodes;
		int			nq = 0,
					qi = 0,
					nuse = 0;

		CHECK_FOR_INTERRUPTS();
		if (o->ntrees == o->tcap)
		{
			o->tcap *= 2;
			o->start = repalloc(o->start, sizeof(int32) * o->tcap);
		}
		o->start[o->ntrees] = tree_start;

		for (f = 0; f < nf; f++)
			colon[f] = p->colsample >= 1.0 ||
				dr_hash_uniform(p->seed, (int64) r * nf + f, 102) < p->colsample;

		/*
		 * The root: the rows of this round and their gradients, gathered so
		 * that every scan below is sequential.
		 */
		{
			double		G = 0,
						H = 0;
			int			k;
			uint8	   *pcode = lcode[0];
			GbmGH	   *pgh = lgh[0];
			int		   *pidx = lidx[0];

			for (k = 0; k < ntrain; k++)
			{
				double		gi,
							hi;

				i = rows[k];
				if (rcode == NULL)
				{
					used[i] = dr_hash_uniform(p->seed, (int64) r * n + i, 101) < p->subsample;
					if (!used[i])
						continue;
					pidx[nuse] = i;
					memcpy(pcode + (Size) nuse * stride, code8 + (Size) i * nf, nf);
				}
				gi = w[i] * (pr[i] - (y[i] ? 1.0 : 0.0));
				hi = w[i] * Max(pr[i] * (1.0 - pr[i]), 1e-16);
				pgh[nuse].g = gi;
				pgh[nuse].h = hi;
				G += gi;
				H += hi;
				nuse++;
			}
			queue[nq].begin = 0;
			queue[nq].end = nuse;
			queue[nq].depth = 0;
			queue[nq].g = G;
			queue[nq].h = H;
			queue[nq].out = out_node(o, tree_start, H);
			queue[nq].hist = NULL;
			queue[nq].applied = false;
			if (splittable(p, 0, H, nuse))
			{
				queue[nq].hist = nfree > 0 ? freelist[--nfree] :
					(npool++, palloc(sizeof(GbmGH) * slots));
				build_hist(queue[nq].hist, slots, pcode, pgh, 0, nuse, nf, stride, hoff);
			}
			nq++;
		}

		while (qi < nq)
		{
			GbmNode    *nd = &queue[qi++];
			double		parent = nd->g * nd->g / (nd->h + p->lambda);
			double		best_gain = 0;
			int			bf = -1,
						bc = 0;
			bool		bdl = false;
			double		bgl = 0,
						bhl = 0;
			int			gnode = tree_start + nd->out;
			GbmGH	   *hist = nd->hist;

			/* a leaf unless a split gains */
			o->value[gnode] = -p->eta * nd->g / (nd->h + p->lambda);
			if (hist == NULL)
				continue;
			for (f = 0; f < nf; f++)
			{
				double		mg = hist[hoff[f] + nbins[f]].g,
							mh = hist[hoff[f] + nbins[f]].h,
							gl = 0,
							hl = 0;
				int			c;

				if (!colon[f])
					continue;
				for (c = 0; c < nbins[f] - 1; c++)
				{
					int			side;

					gl += hist[hoff[f] + c].g;
					hl += hist[hoff[f] + c].h;
					/* missing values left (side 0) or right (side 1) */
					for (side = 0; side < 2; side++)
					{
						double		GL = gl + (side == 0 ? mg : 0),
									HL = hl + (side == 0 ? mh : 0),
									GR = nd->g - GL,
									HR = nd->h - HL,
									gain;

						if (HL < p->min_child_weight || HR < p->min_child_weight)
							continue;
						gain = GL * GL / (HL + p->lambda) + GR * GR / (HR + p->lambda) - parent;
						if (gain > best_gain + 1e-12)
						{
							best_gain = gain;
							bf = f;
							bc = c;
							bdl = side == 0;
							bgl = GL;
							bhl = HL;
						}
					}
				}
			}
			if (bf < 0)
			{
				freelist[nfree++] = hist;
				continue;
			}

			/* partition the node's rows: left first */
			{
				int			nl = 0,
							k,
							j,
							sl,
							sr,
							from = GBM_LEVEL(nd->depth),
							to = GBM_LEVEL(nd->depth + 1);
				const uint8 *fcode = lcode[from];
				const GbmGH *fgh = lgh[from];
				const int  *fidx = lidx[from];
				uint8	   *pcode = lcode[to];
				GbmGH	   *pgh = lgh[to];
				GbmNode    *lc,
						   *rc,
						   *small,
						   *large;

				/*
				 * Children at the depth limit are leaves whatever their row
				 * counts, and their rows do not move: no need to count them
				 * (their ranges are then not set; applied leaves' are unread).
				 */
				if (nd->depth + 1 < p->max_depth)
					for (j = nd->begin; j < nd->end; j++)
					{
						int			code = fcode[(Size) j * stride + bf];

						nl += goes_left(code, nbins[bf], bc, bdl);
					}
				k = nd->begin + nl;
				o->feature[gnode] = bf;
				o->threshold[gnode] = bc + 0.5;
				o->dl[gnode] = bdl;
				lc = &queue[nq++];
				lc->begin = nd->begin;
				lc->end = k;
				lc->depth = nd->depth + 1;
				lc->g = bgl;
				lc->h = bhl;
				lc->out = out_node(o, tree_start, bhl);
				lc->hist = NULL;
				lc->applied = false;
				rc = &queue[nq++];
				rc->begin = k;
				rc->end = nd->end;
				rc->depth = nd->depth + 1;
				rc->g = nd->g - bgl;
				rc->h = nd->h - bhl;
				rc->out = out_node(o, tree_start, nd->h - bhl);
				rc->hist = NULL;
				rc->applied = false;
				o->left[gnode] = lc->out;
				o->right[gnode] = rc->out;
				sl = splittable(p, lc->depth, lc->h, lc->end - lc->begin);
				sr = splittable(p, rc->depth, rc->h, rc->end - rc->begin);

				if (!sl && !sr)
				{
					/* two leaves: their values go to the margins, no rows move */
					double		v[2];

					/* v[1] left, v[0] right: picked by index, not by a branch */
					v[1] = -p->eta * lc->g / (lc->h + p->lambda);
					v[0] = -p->eta * rc->g / (rc->h + p->lambda);
					for (j = nd->begin; j < nd->end; j++)
					{
						int			code = fcode[(Size) j * stride + bf];

						m[fidx[j]] += v[goes_left(code, nbins[bf], bc, bdl)];
					}
					lc->applied = rc->applied = true;
					freelist[nfree++] = hist;
					continue;
				}

				/*
				 * Rows move to the other buffer, left ones from begin and right
				 * ones from k, in order; the side is a coin toss to the CPU, so
				 * it picks the address rather than a branch.
				 */
				{
					int			at_left = nd->begin,
								at_right = k;
					int		   *pidx = lidx[to];

					for (j = nd->begin; j < nd->end; j++)
					{
						const uint8 *c = fcode + (Size) j * stride;
						int			go = goes_left(c[bf], nbins[bf], bc, bdl);
						int			d = go ? at_left : at_right;

						at_left += go;
						at_right += 1 - go;
						copy_row(pcode + (Size) d * stride, c, stride);
						pgh[d] = fgh[j];
						pidx[d] = fidx[j];
					}
				}

				/* children's histograms: scan the smaller, subtract for the larger */
				sl = splittable(p, lc->depth, lc->h, lc->end - lc->begin);
				sr = splittable(p, rc->depth, rc->h, rc->end - rc->begin);
				small = (lc->end - lc->begin <= rc->end - rc->begin) ? lc : rc;
				large = small == lc ? rc : lc;
				if (sl || sr)
				{
					GbmGH	   *hs = nfree > 0 ? freelist[--nfree] :
						(npool++, palloc(sizeof(GbmGH) * slots));

					build_hist(hs, slots, pcode, pgh, small->begin, small->end, nf, stride, hoff);
					if (small == lc ? sr : sl)
					{
						int			q;

						/* the parent's histogram becomes the larger child's */
						for (q = 0; q < slots; q++)
						{
							hist[q].g -= hs[q].g;
							hist[q].h -= hs[q].h;
						}
						large->hist = hist;
						hist = NULL;
					}
					if (small == lc ? sl : sr)
						small->hist = hs;
					else
						freelist[nfree++] = hs;
				}
				if (hist != NULL)
					freelist[nfree++] = hist;
			}
		}
		o->ntrees++;

		/*
		 * New margins of every row (the tree's nodes copied into a compact
		 * form for the walk), the probabilities the next round's gradients
		 * use, and the losses, with one exp and one log1p per row.
		 */
		{
			int			tn = o->nnodes - tree_start,
						k;
			int16	   *wf = palloc(sizeof(int16) * tn),
					   *wl = palloc(sizeof(int16) * tn),
					   *wr = palloc(sizeof(int16) * tn);
			uint8	   *wcut = palloc(tn),
					   *wmiss = palloc(tn);
			bool	   *wdl = palloc(sizeof(bool) * tn);
			double		lt = 0,
						wt = 0,
						lh = 0,
						wh = 0,
						lprod = 1;	/* product of up to 32 holdout rows' 1 + e */
			int			nprod = 0;
			/* the training loss is only reported: every 10th and the last round */
			bool		want_train = (r + 1) % 10 == 0 || r == 0 || r + 1 == p->rounds;

			for (k = 0; k < tn; k++)
			{
				wl[k] = (int16) o->left[tree_start + k];
				wr[k] = (int16) o->right[tree_start + k];
				wf[k] = (int16) o->feature[tree_start + k];
				wcut[k] = (uint8) (o->threshold[tree_start + k] - 0.5);
				wmiss[k] = (uint8) nbins[wf[k]];
				wdl[k] = o->dl[tree_start + k];
			}
			/* the rows of this round: the partition put them in their leaf */
			for (k = 0; k < nq; k++)
			{
				int			g = tree_start + queue[k].out,
							j;
				const int  *pidx = lidx[GBM_LEVEL(queue[k].depth)];

				if (o->left[g] >= 0 || queue[k].applied)
					continue;
				for (j = queue[k].begin; j < queue[k].end; j++)
					m[pidx[j]] += o->value[g];
			}
			for (k = 0; k < ntrain + nhold; k++)
			{
				double		mi,
							e,
							loss;

				i = rows[k];
				if (k >= ntrain || !used[i])
				{
					/* the holdout, and rows subsampling left out: walked */
					const uint8 *c = code8 + (Size) i * nf;
					int			node = 0;

					while (wl[node] >= 0)
					{
						int			code = c[wf[node]];
						bool		go_left = goes_left(code, wmiss[node], wcut[node], wdl[node]);

						node = go_left ? wl[node] : wr[node];
					}
					m[i] += o->value[tree_start + node];
				}
				mi = m[i];
				e = exp(-fabs(mi));
				pr[i] = mi >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
				if (k >= ntrain)
				{
					/*
					 * Unweighted, as the holdout metrics are; the log of 1 + e
					 * is taken once per 32 rows, of their product (at most
					 * 2^32): the holdout loss is summed every round.
					 */
					lh += y[i] ? (mi >= 0 ? 0 : -mi) : (mi >= 0 ? mi : 0);
					lprod *= 1.0 + e;
					if (++nprod == 32)
					{
						lh += log(lprod);
						lprod = 1;
						nprod = 0;
					}
					wh += 1;
				}
				else if (want_train)
				{
					loss = (y[i] ? (mi >= 0 ? 0 : -mi) : (mi >= 0 ? mi : 0)) + log1p(e);
					lt += w[i] * loss;
					wt += w[i];
				}
			}
			lh += log(lprod);
			pfree(wf);
			pfree(wl);
			pfree(wr);
			pfree(wcut);
			pfree(wmiss);
			pfree(wdl);
			train_loss[r] = want_train && wt > 0 ? lt / wt : NAN;
			hold_loss[r] = wh > 0 ? lh / wh : NAN;
			if (p->notices && ((r + 1) % 50 == 0 || r + 1 == p->rounds))
				ereport(NOTICE,
						(errmsg("dealrisk.train: round %d, train loss %.4f, holdout loss %.4f",
								r + 1, train_loss[r], hold_loss[r])));
		}
		if (nhold == 0 || hold_loss[r] < best - 1e-12)
		{
			best = nhold > 0 ? hold_loss[r] : best;
			best_round = r + 1;
			best_nodes = o->nnodes;
		}
		else if (p->early_stop > 0 && r + 1 - best_round >= p->early_stop)
		{
			if (p->notices)
				ereport(NOTICE,
						(errmsg("dealrisk.train: round %d, holdout loss %.4f; no better for %d rounds: the trees of round %d are kept",
								r + 1, hold_loss[r], p->early_stop, best_round)));
			r++;
			break;
		}
	}
	/* keep the trees up to the best round (all of them without early stopping) */
	if (p->early_stop > 0)
	{
		o->ntrees = best_round;
		o->nnodes = best_nodes;
	}
	pfree(m);
	pfree(pr);
	pfree(train);
	pfree(hold);
	pfree(colon);
	for (i = 0; i < 2; i++)
	{
		pfree(bcode[i]);
		pfree(bgh[i]);
		pfree(bidx[i]);
	}
	pfree(used);
	pfree(rows);
	if (rcode != NULL)
		pfree(rcode);
	while (nfree > 0)
		pfree(freelist[--nfree]);
	pfree(freelist);
	pfree(queue);
	pfree(hoff);
	return r;
}

/* An empty output with room to grow. */
void
gbm_out_init(GbmOut *o)
{
	memset(o, 0, sizeof(*o));
	o->cap = 1024;
	o->left = palloc(sizeof(int32) * o->cap);
	o->right = palloc(sizeof(int32) * o->cap);
	o->feature = palloc(sizeof(int32) * o->cap);
	o->threshold = palloc(sizeof(double) * o->cap);
	o->dl = palloc(sizeof(bool) * o->cap);
	o->value = palloc(sizeof(double) * o->cap);
	o->cover = palloc(sizeof(double) * o->cap);
	o->tcap = 64;
	o->start = palloc(sizeof(int32) * o->tcap);
}

/* An int4[] of n values. */
static Datum
int_array(const int32 *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			k;

	for (k = 0; k < n; k++)
		d[k] = Int32GetDatum(v[k]);
	return PointerGetDatum(construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT));
}

/* A float8[] of n values. */
static Datum
float_array(const double *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			k;

	for (k = 0; k < n; k++)
		d[k] = Float8GetDatum(v[k]);
	return PointerGetDatum(construct_array(d, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * A float8[] of the losses of the rounds run: NULL for a round whose loss
 * was not measured; the whole array NULL when none was.
 */
static Datum
loss_array(const double *loss, int run, bool *isnull)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(run, 1));
	bool	   *nl = palloc(sizeof(bool) * Max(run, 1));
	int			dims[1] = {run},
				lbs[1] = {1},
				k,
				any = 0;

	for (k = 0; k < run; k++)
	{
		nl[k] = isnan(loss[k]);
		d[k] = Float8GetDatum(nl[k] ? 0 : loss[k]);
		any += !nl[k];
	}
	*isnull = any == 0;
	return PointerGetDatum(construct_md_array(d, nl, 1, dims, lbs, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* A boosting parameter checked against its range: an error names it. */
double
gbm_check_param(const char *name, double v, double lo, double hi, bool lo_open)
{
	if (isnan(v) || (lo_open ? v <= lo : v < lo) || v > hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("boosting parameter %s must be in %s%g, %g], got %g",
						name, lo_open ? "(" : "[", lo, hi, v)));
	return v;
}

/* Whether parameters (say, of a serialised pass) are within their ranges. */
bool
gbm_params_valid(const GbmParams *p)
{
	return p->rounds >= 1 && p->rounds <= GBM_MAX_ROUNDS &&
		p->max_depth >= 1 && p->max_depth <= GBM_MAX_DEPTH &&
		p->eta > 0 && p->eta <= 1 &&
		p->lambda >= 0 && p->lambda <= GBM_MAX_LAMBDA &&
		p->min_child_weight >= 0 && p->min_child_weight <= GBM_MAX_CHILD_WEIGHT &&
		p->subsample > 0 && p->subsample <= 1 &&
		p->colsample > 0 && p->colsample <= 1 &&
		p->early_stop >= 0 && p->early_stop <= GBM_MAX_ROUNDS;
}

/* A parameter's value from the SQL arguments, checked against its range. */
static double
param(FunctionCallInfo fcinfo, int arg, const char *name, double lo, double hi, bool lo_open)
{
	return gbm_check_param(name, PG_GETARG_FLOAT8(arg), lo, hi, lo_open);
}

/*
 * SQL: _gbm_fit(nbins int4[], codes int2[], y bool[], w float8[], holdout
 * bool[], rounds, eta, max_depth, lambda, min_child_weight, subsample,
 * colsample, early_stop, seed) -> the ensemble in trees.c's layout, the
 * rounds run and kept, and the train and holdout loss of every round.
 */
Datum
dr_gbm_fit(PG_FUNCTION_ARGS)
{
	ArrayType  *nbarr = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *carr = PG_GETARG_ARRAYTYPE_P(1);
	ArrayType  *yarr = PG_GETARG_ARRAYTYPE_P(2);
	ArrayType  *warr = PG_GETARG_ARRAYTYPE_P(3);
	ArrayType  *harr = PG_GETARG_ARRAYTYPE_P(4);
	GbmParams	p;
	TupleDesc	desc;
	GbmOut		o;
	int			n,
				nf,
				i,
				run;
	const int32 *nbins;
	const int16 *codes;
	uint8	   *code8,
			   *role;
	const double *w;
	double		base,
			   *tl,
			   *hl;
	Datum		values[13];
	bool		nulls[13];

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_gbm_fit must return a record");
	p.rounds = (int) param(fcinfo, 5, "rounds", 1, GBM_MAX_ROUNDS, false);
	p.eta = param(fcinfo, 6, "eta", 0, 1, true);
	p.max_depth = (int) param(fcinfo, 7, "max_depth", 1, GBM_MAX_DEPTH, false);
	p.lambda = param(fcinfo, 8, "lambda", 0, GBM_MAX_LAMBDA, false);
	p.min_child_weight = param(fcinfo, 9, "min_child_weight", 0, GBM_MAX_CHILD_WEIGHT, false);
	p.subsample = param(fcinfo, 10, "subsample", 0, 1, true);
	p.colsample = param(fcinfo, 11, "colsample", 0, 1, true);
	p.early_stop = (int) param(fcinfo, 12, "early_stop", 0, GBM_MAX_ROUNDS, false);
	p.seed = PG_GETARG_INT64(13);
	p.notices = false;

	if (ARR_NDIM(nbarr) != 1 || ARR_ELEMTYPE(nbarr) != INT4OID || ARR_HASNULL(nbarr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nbins must be a one-dimensional int4 array without NULLs")));
	nf = ARR_DIMS(nbarr)[0];
	nbins = (const int32 *) ARR_DATA_PTR(nbarr);
	for (i = 0; i < nf; i++)
		if (nbins[i] < 1 || nbins[i] > GBM_MAX_BINS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("feature %d has %d bins; a feature has 1 to %d", i + 1, nbins[i], GBM_MAX_BINS)));
	n = ArrayGetNItems(ARR_NDIM(yarr), ARR_DIMS(yarr));
	if (ARR_NDIM(yarr) > 1 || ARR_ELEMTYPE(yarr) != BOOLOID || ARR_HASNULL(yarr) ||
		ARR_NDIM(warr) > 1 || ARR_ELEMTYPE(warr) != FLOAT8OID || ARR_HASNULL(warr) ||
		ArrayGetNItems(ARR_NDIM(warr), ARR_DIMS(warr)) != n ||
		ARR_NDIM(harr) > 1 || ARR_ELEMTYPE(harr) != BOOLOID || ARR_HASNULL(harr) ||
		ArrayGetNItems(ARR_NDIM(harr), ARR_DIMS(harr)) != n ||
		ARR_ELEMTYPE(carr) != INT2OID || ARR_HASNULL(carr) ||
		(int64) ArrayGetNItems(ARR_NDIM(carr), ARR_DIMS(carr)) != (int64) n * nf)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("y, w and holdout must be arrays of one element per row without NULLs, and codes one per row and feature")));
	if (nf < 1 || n < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("boosting needs at least one feature and two rows, got %d and %d", nf, n)));
	codes = (const int16 *) ARR_DATA_PTR(carr);
	for (i = 0; i < n * nf; i++)
		if (codes[i] < -1 || codes[i] >= nbins[i % nf])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("row %d has code %d for feature %d, which has %d bins",
							i / nf + 1, codes[i], i % nf + 1, nbins[i % nf])));
	w = (const double *) ARR_DATA_PTR(warr);
	for (i = 0; i < n; i++)
		if (!isfinite(w[i]) || w[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("row %d has weight %g; weights are finite and >= 0", i + 1, w[i])));

	code8 = palloc((Size) n * nf);
	for (i = 0; i < n * nf; i++)
		code8[i] = (uint8) (codes[i] < 0 ? nbins[i % nf] : codes[i]);
	role = palloc(n);
	for (i = 0; i < n; i++)
		role[i] = ((const bool *) ARR_DATA_PTR(harr))[i] ? GBM_HOLDOUT : GBM_TRAIN;
	gbm_out_init(&o);
	tl = palloc(sizeof(double) * p.rounds);
	hl = palloc(sizeof(double) * p.rounds);
	run = gbm_fit(n, nf, code8, nbins, (const bool *) ARR_DATA_PTR(yarr), w,
				  role, &p, &o, &base, tl, hl);

	memset(nulls, 0, sizeof(nulls));
	{
		values[0] = int_array(o.start, o.ntrees);
		values[1] = int_array(o.left, o.nnodes);
		values[2] = int_array(o.right, o.nnodes);
		values[3] = int_array(o.feature, o.nnodes);
		values[4] = float_array(o.threshold, o.nnodes);
		{
			Datum	   *d = palloc(sizeof(Datum) * Max(o.nnodes, 1));
			int			k;

			for (k = 0; k < o.nnodes; k++)
				d[k] = BoolGetDatum(o.dl[k]);
			values[5] = PointerGetDatum(construct_array(d, o.nnodes, BOOLOID, 1, true, TYPALIGN_CHAR));
		}
		values[6] = float_array(o.value, o.nnodes);
		values[7] = float_array(o.cover, o.nnodes);
		values[8] = Float8GetDatum(base);
		values[9] = Int32GetDatum(run);
		values[10] = Int32GetDatum(o.ntrees);
		values[11] = loss_array(tl, run, &nulls[11]);
		values[12] = loss_array(hl, run, &nulls[12]);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
