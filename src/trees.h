/*
 * trees.h
 *	  Tree ensembles: the checked in-memory form, margins and TreeSHAP
 *	  contributions (trees.c).
 */
#ifndef DEALRISK_TREES_H
#define DEALRISK_TREES_H

#include "postgres.h"

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
} DrTrees;

extern void dr_trees_check(DrTrees *t);
extern double dr_trees_margin(const DrTrees *t, const double *x, const bool *absent);
extern void dr_trees_shap(const DrTrees *t, const double *x, const bool *absent,
						  double *phi);

#endif							/* DEALRISK_TREES_H */
