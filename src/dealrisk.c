/*
 * dealrisk.c
 *	  Module entry point: the module magic, the configuration parameters and
 *	  the model cache's invalidation callback.
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "dealrisk.h"
#include "model.h"

PG_MODULE_MAGIC;

char	   *dr_trusted_owners = NULL;
char	   *dr_won_labels = NULL;
char	   *dr_lost_labels = NULL;
char	   *dr_open_labels = NULL;
bool		dr_labels_dirty = true;
int			dr_train_memory_mb = 1024;
int			dr_min_training_deals = 40;
double		dr_recency_halflife_days = 365.0;
static double dr_max_plausible_auc = 0.95;
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
 * Check hook of dealrisk.trusted_owners: a comma-separated list of role
 * names (identifiers, quoted where needed).  Roles that do not exist are
 * allowed (they may be created later) and simply match nobody.
 */
static bool
check_trusted_owners(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	List	   *names;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	copy = pstrdup(*newval);
	ok = SplitIdentifierString(copy, ',', &names);
	list_free(names);
	pfree(copy);
	if (!ok)
	{
		GUC_check_errdetail("The list of role names cannot be read.");
		GUC_check_errhint("Separate role names with commas, e.g. 'crm_owner, etl'; quote names with capitals or commas.");
	}
	return ok;
}

/*
 * Check hook of the label lists: comma-separated labels, at most
 * DR_MAX_LABELS of them, none empty (",," or a trailing comma is
 * a typo that would otherwise pass unnoticed).  A blank list is allowed:
 * it names no label.
 */
static bool
check_labels(char **newval, void **extra, GucSource source)
{
	const char *p = *newval ? *newval : "";
	const char *q;
	int			count = 0;

	for (q = p; *q && isspace((unsigned char) *q); q++)
		;
	if (*q == '\0')
		return true;
	for (;;)
	{
		bool		blank = true;

		while (*p && *p != ',')
		{
			if (!isspace((unsigned char) *p))
				blank = false;
			p++;
		}
		count++;
		if (blank)
		{
			GUC_check_errdetail("Label %d of the list is empty.", count);
			GUC_check_errhint("Separate labels with single commas, e.g. 'won,closed won'.");
			return false;
		}
		if (count > DR_MAX_LABELS)
		{
			GUC_check_errdetail("The list has more than %d labels.", DR_MAX_LABELS);
			return false;
		}
		if (*p == '\0')
			break;
		p++;					/* the comma */
	}
	return true;
}

/*
 * Check hook of dealrisk.as_of_date: empty (today) or a finite date that
 * the date type accepts.  Words for a date relative to today ("today",
 * "yesterday", ...) are refused: the date is parsed once per value and
 * would not move with the clock; leave the setting empty for today.
 */
static bool
check_as_of_date(char **newval, void **extra, GucSource source)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf,
				dtype,
				tzp,
				dterr,
				i;
	struct pg_tm tt;
	fsec_t		fsec;
	int			jd;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	dterr = ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nf);

	/*
	 * A date has no time zone, and a zone name (which DecodeDateTime of
	 * PostgreSQL 15 looks up, raising an error when it is unknown: a check
	 * hook must not raise, above all when the library loads) is refused.
	 */
	for (i = 0; dterr == 0 && i < nf; i++)
		if (ftype[i] == DTK_DATE && isalpha((unsigned char) field[i][0]))
		{
			GUC_check_errdetail("\"%s\" names a time zone; a date has none.", *newval);
			GUC_check_errhint("Use an ISO date such as '2024-12-31', or '' for today.");
			return false;
		}
	if (dterr == 0)
	{
#if PG_VERSION_NUM >= 160000
		DateTimeErrorExtra dtextra;

		dterr = DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tzp, &dtextra);
#else
		dterr = DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tzp);
#endif
	}
	if (dterr != 0)
	{
		GUC_check_errdetail("\"%s\" is not a date.", *newval);
		GUC_check_errhint("Use an ISO date such as '2024-12-31', or '' for today.");
		return false;
	}
	if (dtype == DTK_LATE || dtype == DTK_EARLY)
	{
		GUC_check_errdetail("\"%s\" is not a finite date.", *newval);
		GUC_check_errhint("Use a date such as '2024-12-31', or '' for today.");
		return false;
	}
	if (dtype != DTK_DATE)
	{
		GUC_check_errdetail("\"%s\" is not a date.", *newval);
		GUC_check_errhint("Use an ISO date such as '2024-12-31', or '' for today.");
		return false;
	}
	for (i = 0; i < nf; i++)
		if (strcmp(field[i], "today") == 0 || strcmp(field[i], "tomorrow") == 0 ||
			strcmp(field[i], "yesterday") == 0 || strcmp(field[i], "now") == 0)
		{
			GUC_check_errdetail("\"%s\" is a date relative to today, which the setting would not follow as days pass.",
								*newval);
			GUC_check_errhint("Leave dealrisk.as_of_date empty to score as of today.");
			return false;
		}
	jd = IS_VALID_JULIAN(tt.tm_year, tt.tm_mon, tt.tm_mday) ?
		date2j(tt.tm_year, tt.tm_mon, tt.tm_mday) - POSTGRES_EPOCH_JDATE : INT_MIN;
	if (jd == INT_MIN || !IS_VALID_DATE(jd))
	{
		GUC_check_errdetail("Date \"%s\" is out of range.", *newval);
		return false;
	}
	return true;
}

/*
 * Check hook of the risk band thresholds: a finite number (the range 0-100
 * is the variables' own limit).  Their order is checked where they are
 * used (dr_check_risk_bands): check hooks see one value at a time, and a
 * parallel worker or ALTER ... SET applies the three in an order of its own.
 */
static bool
check_band(double *newval, void **extra, GucSource source)
{
	if (isnan(*newval) || isinf(*newval))
	{
		GUC_check_errdetail("A risk band threshold is a number from 0 to 100.");
		return false;
	}
	return true;
}

/*
 * Raise an error unless band_medium <= band_high <= band_critical; called by
 * risk_band() before it reads them.
 */
void
dr_check_risk_bands(void)
{
	if (!(dr_band_medium <= dr_band_high && dr_band_high <= dr_band_critical))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("risk band thresholds are out of order: dealrisk.band_medium = %g, dealrisk.band_high = %g, dealrisk.band_critical = %g",
						dr_band_medium, dr_band_high, dr_band_critical),
				 errhint("Set them so that band_medium <= band_high <= band_critical.")));
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
							   check_labels, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.lost_labels",
							   "Outcome labels that mean a lost deal (comma-separated, case-insensitive).",
							   NULL,
							   &dr_lost_labels,
							   "lost,closed lost,closed-lost,closed_lost,loss",
							   PGC_USERSET, 0,
							   check_labels, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.open_labels",
							   "Outcome labels that mean a deal is still open (comma-separated, case-insensitive).",
							   NULL,
							   &dr_open_labels,
							   "open,pending,in progress,in_progress,active",
							   PGC_USERSET, 0,
							   check_labels, assign_labels, NULL);
	DefineCustomStringVariable("dealrisk.trusted_owners",
							   "Roles whose deal sources every caller of dealrisk trusts (comma-separated role names).",
							   "Reading a relation runs code its owner chose with the reader's privileges; dealrisk reads only what the caller, a member of the caller, a superuser or a role listed here owns. Only superusers may set it.",
							   &dr_trusted_owners,
							   "",
							   PGC_SUSET, 0,
							   check_trusted_owners, NULL, NULL);
	DefineCustomStringVariable("dealrisk.as_of_date",
							   "Date at which open deals are scored (empty: today).",
							   "Set it to replay a snapshot of the CRM, e.g. '2024-12-31'.",
							   &dr_as_of_setting,
							   "",
							   PGC_USERSET, 0,
							   check_as_of_date, NULL, NULL);
	DefineCustomIntVariable("dealrisk.min_training_deals",
							"Fewest won and fewest lost closed deals dealrisk.train() accepts.",
							NULL,
							&dr_min_training_deals,
							40, 1, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dealrisk.train_memory",
							"Most memory dealrisk.train() may hold for the rows of a tree model.",
							"Training a tree model reads the closed deals into memory: about 90 bytes plus 3 per feature for each deal.",
							&dr_train_memory_mb,
							1024, 1, MAX_KILOBYTES / 1024,
							PGC_USERSET, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.recency_halflife_days",
							 "Age in days at which a closed deal counts half in training (0: all count the same).",
							 NULL,
							 &dr_recency_halflife_days,
							 365.0, 0.0, 100000.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.max_plausible_auc",
							 "Highest holdout AUC a model may have and still be activated without force.",
							 "Deals are won and lost for reasons no CRM records: a model that ranks them almost perfectly has most likely been shown the outcome (a field filled in at close). 1 turns the check off.",
							 &dr_max_plausible_auc,
							 0.95, 0.5, 1.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_medium",
							 "Lowest risk score of the medium band.",
							 NULL, &dr_band_medium, 30.0, 0.0, 100.0,
							 PGC_USERSET, 0, check_band, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_high",
							 "Lowest risk score of the high band.",
							 NULL, &dr_band_high, 60.0, 0.0, 100.0,
							 PGC_USERSET, 0, check_band, NULL, NULL);
	DefineCustomRealVariable("dealrisk.band_critical",
							 "Lowest risk score of the critical band.",
							 NULL, &dr_band_critical, 80.0, 0.0, 100.0,
							 PGC_USERSET, 0, check_band, NULL, NULL);
	dr_model_cache_init();
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("dealrisk");
#else
	EmitWarningsOnPlaceholders("dealrisk");
#endif
}
