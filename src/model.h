/*
 * model.h
 *	  The deal risk model: feature specification, encoding of a deal row into
 *	  a feature vector, and the per-backend model cache.
 *
 * Layering: features.c and model.c know nothing of training or scoring;
 * train.c and score.c build on them.
 */
#ifndef DEALRISK_MODEL_H
#define DEALRISK_MODEL_H

#include "postgres.h"

#include <math.h>

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"
#include "utils/typcache.h"

/* How a feature turns column values into model columns. */
typedef enum DrFeatureKind
{
	DR_FEAT_CATEGORICAL,		/* one-hot over learned levels */
	DR_FEAT_BINS,				/* one-hot over quantile bins of a number */
	DR_FEAT_RATE,				/* shrunk win rate of a key (e.g. the rep) */
	DR_FEAT_NUMERIC				/* standardised number */
} DrFeatureKind;

/* Numbers derived from several contract columns. */
typedef enum DrDerived
{
	DR_DERIVED_NONE,			/* the feature reads its column */
	DR_DERIVED_AGE_DAYS,		/* cycle days (closed) or age (open) */
	DR_DERIVED_STAGE_RATIO,		/* days in current stage / stage's typical days */
	DR_DERIVED_ACTIVITY_GAP,	/* days since the last logged activity */
	DR_DERIVED_STAGE_DAYS		/* days in current stage (for the typical
								 * days a stage_ratio divides by) */
} DrDerived;

/* Contract columns a derived feature may need; index into DrRowReader. */
typedef enum DrColumn
{
	DR_COL_CREATED,
	DR_COL_CLOSED,
	DR_COL_CYCLE,
	DR_COL_STAGE,
	DR_COL_STAGE_ENTERED,
	DR_COL_LAST_ACTIVITY,
	DR_COL_OUTCOME,
	DR_COL_AS_OF,				/* a snapshot's date (point-in-time training) */
	DR_NUM_FIXED_COLUMNS
} DrColumn;

typedef struct DrFeature
{
	char	   *name;			/* shown in explanations */
	DrFeatureKind kind;
	DrDerived	derived;
	char	   *column;			/* source column, NULL for derived features */
	int			nlevels;		/* categorical levels / rate keys, sorted */
	char	  **levels;
	int			npooled;		/* categorical: rare levels pooled into "(other)" */
	char	  **pooled;
	int			other_index;	/* index of "(other)" in levels, or -1 */
	int		   *colpos;			/* sorted level -> its column within the feature */
	int		   *lens;			/* byte length of each level */
	int			hmask;			/* level hash table: size - 1 */
	int		   *htab;			/* level index + 1, 0 = empty slot */
	double	   *won;			/* rate: won and closed counts per key */
	double	   *closed;
	double		prior;			/* rate: overall rate and shrinkage strength */
	double		strength;
	int			nedges;			/* bins: nedges + 1 bins */
	double	   *edges;
	int			ntypical;		/* stage ratio: typical days per stage */
	char	  **typical_stage;
	double	   *typical_days;
	double		mean;			/* rate / numeric: standardisation */
	double		sd;
	int			nquantiles;		/* bins: the share of deals below each */
	double	   *quantiles;		/* edge (explanations), or 0 / NULL */
	int			nknots;			/* age or stage time of an open deal: */
	double	   *knots;			/* survivor curve knots (increasing), */
	double	   *open_terms;		/* its log-odds term per knot (NULL: the */
	double	   *open_closed;	/* open deal is binned like a closed one), */
	double	   *open_won;		/* closed and won deals at or past each knot */
	double		longest;		/* the longest closed deal (NaN: unknown) */
	double	   *tree_rank;		/* categorical of a tree model: the value its
								 * trees split on, per level (NULL: the level
								 * index) */
	int			ntree_edges;	/* training trees: the bins of a number */
	double	   *tree_edges;
	bool		month_end;		/* learned from month-end snapshots of open
								 * deals ("unit": "month_end"): counts and
								 * bins are of snapshots, not closed deals */
	int			offset;			/* first model column (1-based, 0 = intercept) */
	int			width;			/* number of model columns */
	int			colidx;			/* reader slot of column (-1 if derived) */
} DrFeature;

typedef struct DrModel
{
	int64		id;				/* 0 for a spec being trained */
	char	   *name;
	int			nfeatures;
	DrFeature  *features;
	int			ncols;			/* 1 + sum of widths */
	int		   *colfeat;		/* model column -> its feature (-1: intercept) */
	double	   *beta;			/* ncols coefficients, NULL while training */
	int			nextra;			/* named columns beyond the fixed ones */
	char	  **extra_columns;
	struct DrTrees *trees;		/* a tree model (spec "trees"), else NULL */
	double	   *tree_x;			/* scratch: one value per feature, */
	double	   *tree_phi;		/* and their contributions + expectation, */
	bool	   *tree_absent;	/* and which are averaged out (open deals) */
} DrModel;

/*
 * Column positions of one row type, for one model.  Each reader lives in its
 * own memory context (mcxt, a child of the caller's); the readers of a call
 * site form a short most-recently-used list (next), bounded by
 * DR_MAX_READERS, so rows whose type keeps changing cost no memory growth.
 */
typedef struct DrRowReader
{
	Oid			typid;			/* the row type (composite values) */
	int32		typmod;
	TypeCacheEntry *tce;		/* named composite: its typcache entry, whose */
	uint64		tupdesc_id;		/* tupDesc_identifier this reader was built for */
	MemoryContext mcxt;			/* holds the reader and everything below */
	struct DrRowReader *next;	/* older readers of the same call site */
	Datum		names;			/* row passed as values: column names, and */
	bool		names_const;	/* whether they are a constant of the query */
	TupleDesc	tupdesc;		/* the row's columns, in the reader's context */
	int			maxattno;		/* last attribute the model reads */
	int			id_attno;		/* deal_id, for messages (0 = absent) */
	int			fixed_attno[DR_NUM_FIXED_COLUMNS];	/* 0 = absent */
	Oid			fixed_type[DR_NUM_FIXED_COLUMNS];
	int		   *extra_attno;	/* per model extra column */
	Oid		   *extra_type;
	FmgrInfo   *extra_out;		/* output functions for non-text categoricals */
	Datum	   *values;			/* the row's attributes (at least up to maxattno) */
	bool	   *isnull;
} DrRowReader;

/* What encoding a row produced: the active columns and their values. */
typedef struct DrEncoded
{
	int			nnz;
	int		   *idx;			/* model columns that are non-zero */
	double	   *val;
	double	   *raw;			/* per feature: the raw number (or NaN) */
	double	   *term;			/* per feature: an open deal's survivor term */
	double		offset;			/* (NaN: none), and their sum */
	char	  **rawtext;		/* per feature: the raw text value (or NULL) */
	int		   *level;			/* per feature: level/bin index, -1 baseline */
	bool		want_text;		/* fill rawtext (explanations) */
	int			outcome;		/* 1 won, 0 lost, -1 open, -2 unknown label */
	bool		is_closed;		/* scored as a closed deal (see dr_encode_row) */
	int32		closed_date;	/* DateADT or DR_NO_DATE */
	bool		closed_only;	/* set by training: skip open deals, and */
	int32		closed_from;	/* closed deals outside [from, before) */
	int32		closed_before;	/* (DR_NO_DATE: unbounded) */
	bool		skipped;		/* the row was skipped: no features read */
} DrEncoded;

#define DR_NO_DATE PG_INT32_MIN

/* Readers kept per call site (see DrRowReader). */
#define DR_MAX_READERS 4

/*
 * What a cache remembers of the snapshot it was checked under.  Cached
 * table contents (the active model, the stages, the action rules) are
 * reused only while dr_snapshot_key_current() holds: same transaction, a
 * snapshot that sees the same committed transactions (PostgreSQL counts
 * completed transactions in snapXactCompletionCount: equal counts mean
 * equal sets; snapshots restored in parallel workers or imported with SET
 * TRANSACTION SNAPSHOT carry 0 and are fixed for their transaction) and the
 * same own commands (curcid), and no invalidation since (dr_model_generation,
 * bumped by a relcache invalidation of dealrisk.models, a subtransaction
 * abort and the eviction of a cached model).  Checking it is a few
 * comparisons, so it runs per row; reading the table again runs at most
 * once per snapshot and call site.
 */
typedef struct DrSnapKey
{
	bool		valid;
	LocalTransactionId lxid;
	TransactionId xmin;
	TransactionId xmax;
	CommandId	curcid;
	uint64		completion;
	uint64		generation;
} DrSnapKey;

extern uint64 dr_model_generation;

/* Remember the current snapshot in key (invalid when there is none). */
static inline void
dr_snapshot_key_set(DrSnapKey *key)
{
	Snapshot	snap;

	key->valid = ActiveSnapshotSet();
	if (!key->valid)
		return;
	snap = GetActiveSnapshot();
	key->lxid = MyProc->lxid;
	key->xmin = snap->xmin;
	key->xmax = snap->xmax;
	key->curcid = snap->curcid;
	key->completion = snap->snapXactCompletionCount;
	key->generation = dr_model_generation;
}

/* True when what was read under key is still what this snapshot sees. */
static inline bool
dr_snapshot_key_current(const DrSnapKey *key)
{
	Snapshot	snap;

	if (!key->valid || key->generation != dr_model_generation ||
		key->lxid != MyProc->lxid || !ActiveSnapshotSet())
		return false;
	snap = GetActiveSnapshot();
	return snap->curcid == key->curcid &&
		snap->snapXactCompletionCount == key->completion &&
		snap->xmin == key->xmin && snap->xmax == key->xmax;
}

/* The as-of date of a call site, worked out again only when it can change. */
typedef struct DrAsOf
{
	bool		valid;
	LocalTransactionId lxid;	/* empty setting: today, per transaction */
	struct pg_tz *tz;			/* ... and time zone */
	int			datestyle;		/* how the setting was parsed */
	int			dateorder;
	char		text[32];		/* the setting it came from */
	int32		value;
} DrAsOf;

/* features.c */
extern DrRowReader *dr_row_from_tuple(DrModel *model, HeapTupleHeader rec,
									  MemoryContext cxt, DrRowReader *prev);
extern DrRowReader *dr_row_from_args(DrModel *model, FunctionCallInfo fcinfo,
									 int typarg, MemoryContext cxt,
									 DrRowReader *prev);
extern DrEncoded *dr_encoded_alloc(DrModel *model, MemoryContext cxt);
extern void dr_encode_row(DrModel *model, DrRowReader *reader, int32 as_of,
						  bool leave_one_out, DrEncoded *out);
extern const double *dr_tree_values(DrModel *m, DrEncoded *e, const bool **absent);
extern int32 dr_as_of_date(void);
extern int32 dr_as_of_cached(DrAsOf *cache);
extern char *dr_row_label(DrRowReader *r);
extern double dr_open_term(const DrFeature *f, double v, int *knot);
extern double dr_typical_days(const DrFeature *f, const char *s, int len);
extern char *dr_as_of_setting;

/* model.c */
#define DR_MAX_COEFFICIENT 1e6	/* bound on |coefficient| (docs/model.md) */
#define DR_MAX_STANDARDISED 1e100	/* bound on |standardised value| */

/*
 * (x - mean) / sd, clamped to +-DR_MAX_STANDARDISED (0, the mean, if it is
 * not a number): with coefficients within +-DR_MAX_COEFFICIENT and at most
 * 100000 model columns, x . beta is then always a finite number, whatever
 * the data and however extreme the model's standardisation.
 */
static inline double
dr_standardise(const DrFeature *f, double x)
{
	double		z = (x - f->mean) / f->sd;

	if (isnan(z))
		return 0.0;
	return Max(-DR_MAX_STANDARDISED, Min(DR_MAX_STANDARDISED, z));
}
extern DrModel *dr_model_from_spec(Datum spec, ArrayType *coefs, int64 id,
								   const char *name, MemoryContext cxt);
extern DrModel *dr_active_model(const char *name);
extern DrModel *dr_model_lookup(const char *name, uint64 *serial, DrSnapKey *key);
extern void dr_model_cache_init(void);
extern char *dr_config_placement(const char *relname);
extern char *dr_config_table(const char *relname);
extern int	dr_find_level(DrFeature *f, const char *s, int len);
extern double dr_logistic(double eta);

#endif							/* DEALRISK_MODEL_H */
