/*
 * trees.h
 *	  Tree ensembles: the checked in-memory form, margins and TreeSHAP
 *	  contributions (trees.c).
 */
#ifndef DEALRISK_TREES_H
#define DEALRISK_TREES_H

#include "postgres.h"

#include "utils/palloc.h"

/*
 * One node as the walker reads it: everything a step needs in one place
 * (24 bytes), so that a step touches one cache line instead of seven
 * arrays.  feature_dl is the feature index times 2, plus 1 when a missing
 * value goes left.
 */
typedef struct DrNode
{
	int32		left;			/* tree-local child indexes, -1 at a leaf */
	int32		right;
	uint32		feature_dl;
	float		threshold;		/* x < threshold (as float4) goes left */
	double		value;			/* leaf output */
} DrNode;

/* A flattened ensemble; the arrays belong to the caller. */
typedef struct DrTrees
{
	int			ntrees;
	int			nnodes;
	int			nfeatures;
	int			maxdepth;		/* set by dr_trees_check */
	double		base;			/* margin before the first tree */
	const int32 *start;			/* first node of each tree */
	const int32 *left;			/* tree-local child indexes, -1 at a leaf */
	const int32 *right;
	const int32 *feature;
	const double *threshold;	/* x < threshold (as float4) goes left */
	const bool *default_left;	/* where a missing (NaN) value goes */
	const double *value;		/* leaf output */
	const double *cover;		/* hessian sum of the training rows */
	/* built by dr_trees_check, in the memory context it is given: */
	DrNode	   *nodes;			/* the nodes in the walker's form */
	int			words;			/* 64-bit words of a feature set */
	uint64	   *uses;			/* per tree: the features it splits on */
	float	   *xf;				/* scratch: a feature vector as float4 */
	uint64	   *absent_set;		/* scratch: the absent features as a set */
	/* the branch-free form (NULL blocks: none), see fast_build in trees.c */
	int32	   *thr_start;		/* per feature: its first threshold in thr */
	float	   *thr;			/* per feature: its distinct split thresholds, sorted */
	uint16	   *code;			/* scratch: 2 * nfeatures codes of a row */
	int			nblocks;
	struct DrBlock *blocks;		/* trees walked side by side, DR_BLOCK at a time */
	uint64	   *cnodes;			/* per node: left child, code index, cut */
	double	   *cval;			/* per node: a leaf's value */
	int32	   *troot;			/* per tree: its root in cnodes */
	int32	   *tdepth;			/* per tree: its depth */
	uint32	   *complete;		/* blocks kept as complete trees too */
	/* the ensemble with absent features averaged out, per absent set */
	MemoryContext cxt;			/* where dr_trees_check built the above */
	int			nmarg;
	uint64	   *marg_key;		/* DR_MARG_SETS absent sets of words each */
	struct DrTrees **marg;		/* their ensembles, NULL where too large */
} DrTrees;

extern void dr_trees_check(DrTrees *t, MemoryContext cxt);
extern double dr_trees_margin(const DrTrees *t, const double *x, const bool *absent);
extern void dr_trees_shap(const DrTrees *t, const double *x, const bool *absent,
						  double *phi);

#endif							/* DEALRISK_TREES_H */
