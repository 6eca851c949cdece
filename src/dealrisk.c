/*
 * dealrisk.c
 *	  Module entry point: the module magic, the configuration parameters and
 *	  the model cache's invalidation callback.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "utils/guc.h"

#include "dealrisk.h"
#include "model.h"

PG_MODULE_MAGIC;

char	   *dr_won_labels = NULL;
char	   *dr_lost_labels = NULL;
char	   *dr_open_labels = NULL;
bool		dr_labels_dirty = true;
int			dr_min_training_deals = 40;
double		dr_recency_halflife_days = 365.0;
double		dr_band_medium = 30.0;
double		dr_band_high = 60.0;
double		dr_band_critical = 80.0;

void		_PG_init(void);

/* Mark the parsed label lists stale whenever a label GUC changes. */
static void
assign_labels(const char *newval, void *extra)
{
	dr_labels_dirty = true;
}

/*
 * Report an aggregate state array whose shape is right but whose values
 * cannot have been made by its aggregate (a hand-made state), with detail.
 */
void
dr_state_value_error(const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("invalid %s state array", what),
			 errdetail_internal("%s", detail)));
	pg_unreachable();
}

/*
 * Report a NULL state passed to a transition function (an aggregate made
 * over it without an initial state): its own aggregates start from '{}'.
 */
void
dr_null_state_error(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("%s state must not be NULL", what),
			 errhint("Call it through its dealrisk aggregate, whose initial state is not NULL.")));
	pg_unreachable();
}

/* Register the GUCs; called once per backend when the library loads. */
void
_PG_init(void)
{
	DefineCustomStringVariable("dealrisk.won_labels",
							   "Outcome labels that mean a won deal (comma-separated, case-insensitive).",
							   NULL,
							   &dr_won_labels,
							   "won,closed won,closed-won,closed_won,win",
							   PGC_USERSET, 0,
							   NULL, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.lost_labels",
							   "Outcome labels that mean a lost deal (comma-separated, case-insensitive).",
							   NULL,
							   &dr_lost_labels,
							   "lost,closed lost,closed-lost,closed_lost,loss",
							   PGC_USERSET, 0,
							   NULL, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.open_labels",
							   "Outcome labels that mean a deal is still open (comma-separated, case-insensitive).",
							   NULL,
							   &dr_open_labels,
							   "open,pending,in progress,in_progress,active",
							   PGC_USERSET, 0,
							   NULL, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.as_of_date",
							   "Date at which open deals are scored (empty: today).",
							   "Set it to replay a snapshot of the CRM, e.g. '2024-12-31'.",
							   &dr_as_of_setting,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dealrisk.min_training_deals",
							"Fewest won and fewest lost closed deals dealrisk.train() accepts.",
							NULL,
							&dr_min_training_deals,
							40, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.recency_halflife_days",
							 "Age in days at which a closed deal counts half in training (0: all count the same).",
							 NULL,
							 &dr_recency_halflife_days,
							 365.0, 0.0, 100000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_medium",
							 "Lowest risk score of the medium band.",
							 NULL, &dr_band_medium, 30.0, 0.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_high",
							 "Lowest risk score of the high band.",
							 NULL, &dr_band_high, 60.0, 0.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_critical",
							 "Lowest risk score of the critical band.",
							 NULL, &dr_band_critical, 80.0, 0.0, 100.0,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	dr_model_cache_init();
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("dealrisk");
#else
	EmitWarningsOnPlaceholders("dealrisk");
#endif
}
