/*
 * gbm.h
 *	  The boosting core (gbm.c): fits tree ensembles on a binned matrix.
 */
#ifndef DEALRISK_GBM_H
#define DEALRISK_GBM_H

#include "postgres.h"

#define GBM_MAX_BINS 255		/* codes 0..254 per feature; nbins[f] marks missing */
#define GBM_MAX_DEPTH 16
/* the ranges of the parameters (gbm_check_param, gbm_params_valid) */
#define GBM_MAX_ROUNDS 100000
#define GBM_MAX_LAMBDA 1e6
#define GBM_MAX_CHILD_WEIGHT 1e9

typedef struct GbmParams
{
	int			rounds;
	double		eta;
	int			max_depth;
	double		lambda;
	double		min_child_weight;
	double		subsample;
	double		colsample;
	int			early_stop;
	int64		seed;
	bool		notices;		/* a NOTICE every 50 rounds (train()) */
} GbmParams;

/* The growing output: flattened trees in trees.c's layout. */
typedef struct GbmOut
{
	int			nnodes;
	int			cap;
	int32	   *left;
	int32	   *right;
	int32	   *feature;
	double	   *threshold;
	bool	   *dl;
	double	   *value;
	double	   *cover;
	int			ntrees;
	int			tcap;
	int32	   *start;
} GbmOut;

/* What a row is to a fit: left out, trained on, or the holdout. */
#define GBM_SKIP 0
#define GBM_TRAIN 1
#define GBM_HOLDOUT 2

extern double gbm_check_param(const char *name, double v, double lo, double hi, bool lo_open);
extern bool gbm_params_valid(const GbmParams *p);
extern void gbm_out_init(GbmOut *o);
extern int	gbm_fit(int n, int nf, const uint8 *codes, const int32 *nbins, const bool *y,
					const double *w, const uint8 *role, const GbmParams *p, GbmOut *o,
					double *base, double *train_loss, double *hold_loss);

#endif							/* DEALRISK_GBM_H */
