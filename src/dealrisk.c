/*
 * dealrisk.c
 *	  Module entry point: the module magic and the configuration parameters.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "dealrisk.h"

PG_MODULE_MAGIC;

char	   *dr_won_labels = NULL;
char	   *dr_lost_labels = NULL;
char	   *dr_open_labels = NULL;
bool		dr_labels_dirty = true;

void		_PG_init(void);

/* Mark the parsed label lists stale whenever a label GUC changes. */
static void
assign_labels(const char *newval, void *extra)
{
	dr_labels_dirty = true;
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
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("dealrisk");
#else
	EmitWarningsOnPlaceholders("dealrisk");
#endif
}
