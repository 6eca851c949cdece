/*
 * dealrisk.h
 *	  Declarations shared by the dealrisk C files.
 *
 * Layering: stats (pure math) <- outcome (labels, stages) <- winrate/funnel.
 */
#ifndef DEALRISK_H
#define DEALRISK_H

#include "postgres.h"
#include "fmgr.h"
#include "utils/array.h"

/* Outcome classes returned by dr_classify_outcome(). */
typedef enum DrOutcome
{
	DR_OUTCOME_NONE,			/* NULL or empty: no outcome yet */
	DR_OUTCOME_WON,
	DR_OUTCOME_LOST,
	DR_OUTCOME_OPEN,
	DR_OUTCOME_UNKNOWN
} DrOutcome;

/* Most labels one label setting may list (checked when set, and when parsed). */
#define DR_MAX_LABELS 64

/* GUC storage (dealrisk.c). */
extern char *dr_trusted_owners;
extern char *dr_won_labels;
extern char *dr_lost_labels;
extern char *dr_open_labels;
extern bool dr_labels_dirty;

/* dealrisk.c: risk_band() checks the band thresholds' order before use. */
extern void dr_check_risk_bands(void);

/* stats.c: pure numerics, no catalog access. */
extern double dr_normal_cdf(double z);
extern double dr_normal_quantile(double p);
extern void dr_wilson(double won, double n, double z, double *lo, double *hi);
extern double dr_two_proportion_p(double x1, double n1, double x2, double n2);
extern double dr_student_t_two_sided_p(double t, double df);
extern double dr_welch_p(double m1, double s1, double n1,
						 double m2, double s2, double n2);
extern double dr_hash_uniform(int64 seed, int64 i, int32 stream);
extern int	dr_train_memory_mb;	/* dealrisk.train_memory */
extern bool dr_cholesky(double *m, int n);
extern void dr_cholesky_solve(const double *l, int n, double *b);

/* outcome.c: outcome labels and the stage table. */
extern DrOutcome dr_classify_outcome(const char *s, int len);
extern DrOutcome dr_guess_outcome(const char *s, int len);
extern bool dr_outcome_is_won(text *outcome, bool *isnull);

typedef struct DrStage
{
	char	   *name;
	int32		position;
	bool		is_late;
} DrStage;

typedef struct DrStageList
{
	int			count;
	DrStage    *stages;			/* ordered by position */
} DrStageList;

extern DrStageList *dr_stage_list(FunctionCallInfo fcinfo);
extern int	dr_stage_index(DrStageList *list, text *stage);
extern bool dr_stage_equal(const char *a, int alen, const char *b, int blen);

/* State arrays of aggregates: checked, then used in place. */
extern void dr_state_array_error(const char *what, int nelems) pg_attribute_noreturn();
extern void dr_agg_context_error(const char *fname) pg_attribute_noreturn();
extern void dr_state_value_error(const char *what, const char *detail) pg_attribute_noreturn();
extern void dr_null_state_error(const char *what) pg_attribute_noreturn();

/* citus.c: the warning for settings that Citus workers would not see */
struct PlannerInfo;
extern void dr_warn_node_settings(struct PlannerInfo *root);

/*
 * Check that an aggregate state array is one-dimensional, of the given
 * element type and length (nelems < 0: any non-zero length), and has no
 * NULLs; a hand-made state that is not is an error, not a crash.  Inline:
 * it runs once per row.
 */
static inline ArrayType *
dr_state_array(ArrayType *arr, Oid elemtype, int nelems, const char *what)
{
	if (unlikely(ARR_NDIM(arr) != 1 || ARR_ELEMTYPE(arr) != elemtype ||
				 ARR_HASNULL(arr) ||
				 (nelems >= 0 ? ARR_DIMS(arr)[0] != nelems : ARR_DIMS(arr)[0] < 1)))
		dr_state_array_error(what, nelems);
	return arr;
}

/* Refuse to run a state-mutating transition function outside an aggregate. */
static inline void
dr_require_agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	if (unlikely(!AggCheckCallContext(fcinfo, NULL)))
		dr_agg_context_error(fname);
}

#endif							/* DEALRISK_H */
