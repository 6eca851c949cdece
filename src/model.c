/*
 * model.c
 *	  The model: parse and validate a feature specification (jsonb) and its
 *	  coefficients into a DrModel, and keep the active models of this backend
 *	  in a cache that a relcache invalidation of dealrisk.models empties.
 *
 * The cache is per backend and reads only dealrisk.models on the node that
 * scores, so scoring works the same in parallel workers and on Citus
 * workers (where dealrisk.models is a reference table).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "dealrisk.h"
#include "model.h"
#include "trees.h"

PG_FUNCTION_INFO_V1(dr_models_changed);
PG_FUNCTION_INFO_V1(dr_validate_model);

#define DR_MAX_MODEL_COLUMNS 100000
#define DR_MAX_OPEN_KNOTS 1000

/*
 * One parsed row of dealrisk.models, known by the row version it was parsed
 * from: table, id, xmin, cmin and ctid change whenever the row is inserted
 * or updated (activation included), so a row edited by hand is parsed again.
 */
typedef struct CachedModel
{
	MemoryContext cxt;			/* holds the model; deleted with it */
	Oid			relid;
	int64		id;
	TransactionId xmin;
	CommandId	cmin;			/* tells a row re-inserted after a TRUNCATE
								 * in the same transaction from the old one */
	ItemPointerData ctid;
	bool		stale;			/* invalidated: not handed out again */
	uint64		serial;			/* unique per parse, for call sites */
	uint64		last_used;
	LocalTransactionId lxid;	/* transaction that last used it */
	DrModel    *model;
	struct CachedModel *next;
} CachedModel;

/* Which cached model a name resolved to, and under which snapshot. */
typedef struct CachedName
{
	char	   *name;
	DrSnapKey	key;
	CachedModel *version;		/* NULL: look it up again */
	uint64		last_used;
	struct CachedName *next;
} CachedName;

/* Models kept beyond those used in the current transaction, and names. */
#define DR_MAX_MODEL_VERSIONS 8
#define DR_MAX_MODEL_NAMES 64

static MemoryContext cache_cxt = NULL;
static CachedModel *versions = NULL;
static int	nversions = 0;
static CachedName *names = NULL;
static int	nnames = 0;
static uint64 serial_counter = 0;
static uint64 use_clock = 0;
static Oid	models_relid = InvalidOid;	/* table of the last model read */
static SPIPlanPtr check_plan = NULL;
static char *check_plan_table = NULL;	/* the relation check_plan reads */
uint64		dr_model_generation = 1;

/* Logistic function, safe for large |eta|. */
double
dr_logistic(double eta)
{
	if (eta >= 0)
		return 1.0 / (1.0 + exp(-eta));
	else
	{
		double		e = exp(eta);

		return e / (1.0 + e);
	}
}

/* Report an invalid model specification, naming the model and the problem. */
static void invalid_model(const char *label, const char *hint, const char *detail)
			pg_attribute_noreturn();
static void
invalid_model(const char *label, const char *hint, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("model %s is invalid: %s", label, detail),
			 errhint("%s", hint)));
}

/* A text[] SPI column as a C string array (copied into cxt); count in *n. */
static char **
text_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	char	  **out;
	int			i;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	out = palloc(sizeof(char *) * Max(1, *n));
	for (i = 0; i < *n; i++)
		out[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return out;
}

/* A float8[] SPI column as a C array; count in *n. */
static double *
float_array(HeapTuple tup, TupleDesc desc, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	double	   *out;
	int			i;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), FLOAT8OID, sizeof(float8),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, n);
	out = palloc(sizeof(double) * Max(1, *n));
	for (i = 0; i < *n; i++)
		out[i] = nulls[i] ? NAN : DatumGetFloat8(elems[i]);
	return out;
}

/* A float8 SPI column, NaN when NULL. */
static double
float_value(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NAN : DatumGetFloat8(d);
}

/* Comparison of C strings for qsort over an index array. */
static char **sort_keys;
static int
cmp_level_index(const void *a, const void *b)
{
	return strcmp(sort_keys[*(const int *) a], sort_keys[*(const int *) b]);
}

/*
 * Sort f->levels (byte order) keeping colpos, won and closed aligned;
 * duplicate or NULL levels are an error.
 */
static void
sort_levels(DrFeature *f, const char *label)
{
	int		   *order = palloc(sizeof(int) * Max(1, f->nlevels));
	char	  **levels = palloc(sizeof(char *) * Max(1, f->nlevels));
	double	   *won = f->won ? palloc(sizeof(double) * Max(1, f->nlevels)) : NULL;
	double	   *closed = f->closed ? palloc(sizeof(double) * Max(1, f->nlevels)) : NULL;
	int			i;

	for (i = 0; i < f->nlevels; i++)
	{
		if (f->levels[i] == NULL)
			invalid_model(label, "Levels must be non-NULL strings.",
						  psprintf("feature \"%s\" has a NULL level", f->name));
		order[i] = i;
	}
	sort_keys = f->levels;
	qsort(order, f->nlevels, sizeof(int), cmp_level_index);
	f->colpos = palloc(sizeof(int) * Max(1, f->nlevels));
	f->other_index = -1;
	for (i = 0; i < f->nlevels; i++)
	{
		levels[i] = f->levels[order[i]];
		f->colpos[i] = order[i];
		if (won)
			won[i] = f->won[order[i]];
		if (closed)
			closed[i] = f->closed[order[i]];
		if (i > 0 && strcmp(levels[i - 1], levels[i]) == 0)
			invalid_model(label, "Each level may appear once.",
						  psprintf("feature \"%s\" lists level \"%s\" twice", f->name, levels[i]));
		if (strcmp(levels[i], "(other)") == 0)
			f->other_index = i;
	}
	f->levels = levels;
	if (won)
		f->won = won;
	if (closed)
		f->closed = closed;
	if (f->npooled > 0)
	{
		int		   *po = palloc(sizeof(int) * f->npooled);
		char	  **pooled = palloc(sizeof(char *) * f->npooled);

		for (i = 0; i < f->npooled; i++)
		{
			if (f->pooled[i] == NULL)
				invalid_model(label, "Pooled levels must be non-NULL strings.",
							  psprintf("feature \"%s\" has a NULL pooled level", f->name));
			po[i] = i;
		}
		sort_keys = f->pooled;
		qsort(po, f->npooled, sizeof(int), cmp_level_index);
		for (i = 0; i < f->npooled; i++)
			pooled[i] = f->pooled[po[i]];
		f->pooled = pooled;
	}
}

/*
 * Hash of a short string from its length and its first and last four bytes:
 * constant time, which matters because it runs per value per row; levels
 * that collide are told apart by the probe's memcmp.
 */
static inline uint32
level_hash(const char *s, int len)
{
	uint32		a = 0,
				b = 0,
				h;
	int			i;

	if (len >= 4)
	{
		memcpy(&a, s, 4);
		memcpy(&b, s + len - 4, 4);
	}
	else
		for (i = 0; i < len; i++)
			a = (a << 8) | (unsigned char) s[i];
	h = (a * 0x9E3779B1u) ^ (b * 0x85EBCA77u) ^ ((uint32) len * 0xC2B2AE3Du);
	return h ^ (h >> 15);
}

/*
 * Build the hash table that finds a level by its bytes in one probe or two
 * (scoring looks up every categorical value of every row).
 */
static void
build_level_hash(DrFeature *f)
{
	int			size = 8;
	int			i;

	while (size < 2 * f->nlevels)
		size *= 2;
	f->hmask = size - 1;
	f->htab = palloc0(sizeof(int) * size);
	f->lens = palloc(sizeof(int) * Max(1, f->nlevels));
	for (i = 0; i < f->nlevels; i++)
	{
		uint32		h;

		f->lens[i] = strlen(f->levels[i]);
		h = level_hash(f->levels[i], f->lens[i]) & f->hmask;
		while (f->htab[h] != 0)
			h = (h + 1) & f->hmask;
		f->htab[h] = i + 1;
	}
}

/* Index of the level with bytes (s, len), or -1. */
int
dr_find_level(DrFeature *f, const char *s, int len)
{
	uint32		h;

	if (f->htab == NULL)
		return -1;
	h = level_hash(s, len) & f->hmask;
	while (f->htab[h] != 0)
	{
		int			i = f->htab[h] - 1;

		if (f->lens[i] == len)
		{
			const char *l = f->levels[i];
			int			k = 0;

			/* levels are short: an inline loop beats a call to memcmp */
			while (k < len && l[k] == s[k])
				k++;
			if (k == len)
				return i;
		}
		h = (h + 1) & f->hmask;
	}
	return -1;
}

/* Register a named input column of the model, returning its reader slot. */
static int
extra_column(DrModel *m, const char *col)
{
	int			i;

	for (i = 0; i < m->nextra; i++)
		if (strcmp(m->extra_columns[i], col) == 0)
			return i;
	m->extra_columns[m->nextra] = pstrdup(col);
	return m->nextra++;
}

/* True when x is a finite number. */
static inline bool
finite_number(double x)
{
	return !isnan(x) && !isinf(x);
}

/*
 * Check the optional keys of a bins feature that explanations and open deals
 * use (docs/model.md): "quantiles" (the share of deals below each edge),
 * and for a derived age or stage time the survivor curve of open deals:
 * "open_knots" (finite, strictly increasing), "open_terms" (finite log-odds
 * terms within +-DR_MAX_COEFFICIENT that never increase with the knot, so
 * that an open deal's risk never falls as it ages), the counts
 * "open_closed" and "open_won" (0 <= won <= closed) and "longest".
 */
static void
check_open_curve(DrFeature *f, const char *label)
{
	int			k;

	if (f->quantiles != NULL)
	{
		if (f->kind != DR_FEAT_BINS || f->nquantiles != f->nedges)
			invalid_model(label, "\"quantiles\" gives the share of deals below each edge of a bins feature.",
						  psprintf("feature \"%s\" has %d quantiles for %d edges",
								   f->name, f->nquantiles, f->nedges));
		for (k = 0; k < f->nquantiles; k++)
			if (!finite_number(f->quantiles[k]) || f->quantiles[k] <= 0 || f->quantiles[k] >= 1 ||
				(k > 0 && f->quantiles[k] <= f->quantiles[k - 1]))
				invalid_model(label, "Quantiles are strictly increasing shares between 0 and 1.",
							  psprintf("feature \"%s\" has a bad quantile at position %d: %g",
									   f->name, k + 1, f->quantiles[k]));
	}
	if (f->knots == NULL)
	{
		if (f->open_terms || f->open_closed || f->open_won)
			invalid_model(label, "Open terms and counts go with \"open_knots\".",
						  psprintf("feature \"%s\" has open terms or counts but no \"open_knots\"", f->name));
		return;
	}
	if (f->kind != DR_FEAT_BINS ||
		(f->derived != DR_DERIVED_AGE_DAYS && f->derived != DR_DERIVED_STAGE_RATIO))
		invalid_model(label, "Only bins of a derived age_days or stage_ratio have a survivor curve.",
					  psprintf("feature \"%s\" has \"open_knots\"", f->name));
	if (f->nknots < 1 || f->nknots > DR_MAX_OPEN_KNOTS)
		invalid_model(label, psprintf("A survivor curve has 1 to %d knots.", DR_MAX_OPEN_KNOTS),
					  psprintf("feature \"%s\" has %d knots", f->name, f->nknots));
	for (k = 0; k < f->nknots; k++)
	{
		if (!finite_number(f->knots[k]) || (k > 0 && f->knots[k] <= f->knots[k - 1]))
			invalid_model(label, "Knots are finite and strictly increasing.",
						  psprintf("feature \"%s\" has a bad knot at position %d: %g",
								   f->name, k + 1, f->knots[k]));
		if (f->open_terms &&
			(!finite_number(f->open_terms[k]) || fabs(f->open_terms[k]) > DR_MAX_COEFFICIENT ||
			 (k > 0 && f->open_terms[k] > f->open_terms[k - 1])))
			invalid_model(label,
						  psprintf("Open terms are finite, within +-%g, and never increase from one knot to the next.",
								   DR_MAX_COEFFICIENT),
						  psprintf("feature \"%s\" has a bad open term at position %d: %.15g",
								   f->name, k + 1, f->open_terms[k]));
		if ((f->open_closed == NULL) != (f->open_won == NULL))
			invalid_model(label, "\"open_closed\" and \"open_won\" go together.",
						  psprintf("feature \"%s\" has only one of them", f->name));
		if (f->open_closed &&
			(!finite_number(f->open_closed[k]) || !finite_number(f->open_won[k]) ||
			 f->open_won[k] < 0 || f->open_won[k] > f->open_closed[k]))
			invalid_model(label, "Counts are finite with 0 <= won <= closed.",
						  psprintf("feature \"%s\" has bad counts at knot %d: %g won of %g closed",
								   f->name, k + 1, f->open_won[k], f->open_closed[k]));
	}
	if (isnan(f->longest))
		f->longest = f->knots[f->nknots - 1];
	else if (isinf(f->longest) || f->longest < f->knots[f->nknots - 1])
		invalid_model(label, "\"longest\" is the largest value of a closed deal: at least the last knot.",
					  psprintf("feature \"%s\" has longest %g below its last knot %g",
							   f->name, f->longest, f->knots[f->nknots - 1]));
}

/* One array column of the tree query, copied into the current context. */
static void *
tree_column(HeapTuple tup, TupleDesc desc, int col, Oid type, int len, const char *label)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);
	ArrayType  *a;
	Size		width = type == BOOLOID ? sizeof(bool) : type == INT4OID ? sizeof(int32) : sizeof(double);
	void	   *out;

	if (isnull)
		invalid_model(label, "See docs/model.md for the tree format.", "a tree array is missing");
	a = DatumGetArrayTypeP(d);
	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a) || ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a)) != len)
		invalid_model(label, "The arrays of \"trees\" have one element per node (start: per tree).",
					  "the tree arrays differ in length or hold nulls");
	out = palloc(width * Max(len, 1));
	if (len > 0)
		memcpy(out, ARR_DATA_PTR(a), width * len);
	return out;
}

/*
 * A tree model: the spec's "trees" object (arrays start, left, right,
 * feature, threshold, default_left, value, cover; see src/trees.c) into
 * m->trees, in the current memory context.  Its base margin is the model's
 * one coefficient; dr_trees_check runs once that is known.
 */
static void
tree_spec(DrModel *m, Datum spec, const char *label)
{
	static const char *query =
		"SELECT pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'trees'),"
		" ARRAY(SELECT x::pg_catalog.int4 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,start}') x),"
		" ARRAY(SELECT x::pg_catalog.int4 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,left}') x),"
		" ARRAY(SELECT x::pg_catalog.int4 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,right}') x),"
		" ARRAY(SELECT x::pg_catalog.int4 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,feature}') x),"
		" ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,threshold}') x),"
		" ARRAY(SELECT x::pg_catalog.bool FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,default_left}') x),"
		" ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,value}') x),"
		" ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text($1 OPERATOR(pg_catalog.#>) '{trees,cover}') x)";
	Oid			argtypes[1] = {JSONBOID};
	Datum		args[1] = {spec};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		kind;
	DrTrees    *t;
	ArrayType  *left,
			   *start;

	MemoryContext mcxt = CurrentMemoryContext;

	/* (SPI returns in its own procedure context, freed by SPI_finish) */
	if (SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read the trees of model %s", label);
	MemoryContextSwitchTo(mcxt);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	kind = SPI_getbinval(tup, desc, 1, &isnull);
	if (isnull)
		return;					/* no trees: a logistic model */
	if (strcmp(TextDatumGetCString(kind), "object") != 0)
		invalid_model(label, "\"trees\" is an object of arrays; see docs/model.md.", "\"trees\" is not an object");
	t = palloc0(sizeof(DrTrees));
	left = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 3, &isnull));
	start = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull));
	t->nnodes = ArrayGetNItems(ARR_NDIM(left), ARR_DIMS(left));
	t->ntrees = ArrayGetNItems(ARR_NDIM(start), ARR_DIMS(start));
	t->nfeatures = m->nfeatures;
	t->start = tree_column(tup, desc, 2, INT4OID, t->ntrees, label);
	t->left = tree_column(tup, desc, 3, INT4OID, t->nnodes, label);
	t->right = tree_column(tup, desc, 4, INT4OID, t->nnodes, label);
	t->feature = tree_column(tup, desc, 5, INT4OID, t->nnodes, label);
	t->threshold = tree_column(tup, desc, 6, FLOAT8OID, t->nnodes, label);
	t->default_left = tree_column(tup, desc, 7, BOOLOID, t->nnodes, label);
	t->value = tree_column(tup, desc, 8, FLOAT8OID, t->nnodes, label);
	t->cover = tree_column(tup, desc, 9, FLOAT8OID, t->nnodes, label);
	m->trees = t;
	m->tree_x = palloc(sizeof(double) * Max(m->nfeatures, 1));
	m->tree_phi = palloc(sizeof(double) * (m->nfeatures + 1));
	m->tree_absent = palloc0(sizeof(bool) * Max(m->nfeatures, 1));
}

/*
 * Parse a feature specification (jsonb, format in docs/model.md) and, when
 * given, its coefficients into a DrModel allocated in cxt; every problem is
 * an error that names the model and the feature.
 */
DrModel *
dr_model_from_spec(Datum spec, ArrayType *coefs, int64 id, const char *name,
				   MemoryContext cxt)
{
	/*
	 * Every function, operator and type is schema-qualified: SPI runs under
	 * the caller's search_path, where a role may have planted look-alikes.
	 */
	static const char *query =
		"SELECT e.j OPERATOR(pg_catalog.->>) 'name', e.j OPERATOR(pg_catalog.->>) 'kind',"
		" e.j OPERATOR(pg_catalog.->>) 'column', e.j OPERATOR(pg_catalog.->>) 'derived',"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'levels') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'levels')) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'pooled') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'pooled')) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'edges') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'edges') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'won') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'won') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'closed') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'closed') x) END,"
		" (e.j OPERATOR(pg_catalog.->>) 'prior')::pg_catalog.float8, (e.j OPERATOR(pg_catalog.->>) 'strength')::pg_catalog.float8,"
		" (e.j OPERATOR(pg_catalog.->>) 'mean')::pg_catalog.float8, (e.j OPERATOR(pg_catalog.->>) 'sd')::pg_catalog.float8,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'typical') OPERATOR(pg_catalog.=) 'object'"
		"  THEN ARRAY(SELECT k FROM pg_catalog.jsonb_object_keys(e.j OPERATOR(pg_catalog.->) 'typical') k ORDER BY k) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'typical') OPERATOR(pg_catalog.=) 'object'"
		"  THEN ARRAY(SELECT (e.j OPERATOR(pg_catalog.->) 'typical' OPERATOR(pg_catalog.->>) k)::pg_catalog.float8"
		"   FROM pg_catalog.jsonb_object_keys(e.j OPERATOR(pg_catalog.->) 'typical') k ORDER BY k) END,"
		" pg_catalog.jsonb_typeof($1), pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'features'), e.ord,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'quantiles') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'quantiles') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'open_knots') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'open_knots') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'open_terms') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'open_terms') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'open_closed') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'open_closed') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'open_won') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'open_won') x) END,"
		" (e.j OPERATOR(pg_catalog.->>) 'longest')::pg_catalog.float8,"
		" e.j OPERATOR(pg_catalog.?) 'open_terms',"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'tree_rank') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'tree_rank') x) END,"
		" CASE WHEN pg_catalog.jsonb_typeof(e.j OPERATOR(pg_catalog.->) 'tree_edges') OPERATOR(pg_catalog.=) 'array'"
		"  THEN ARRAY(SELECT x::pg_catalog.float8 FROM pg_catalog.jsonb_array_elements_text(e.j OPERATOR(pg_catalog.->) 'tree_edges') x) END,"
		" e.j OPERATOR(pg_catalog.->>) 'unit'"
		" FROM (SELECT 1) one LEFT JOIN LATERAL pg_catalog.jsonb_array_elements("
		"   CASE WHEN pg_catalog.jsonb_typeof($1 OPERATOR(pg_catalog.->) 'features') OPERATOR(pg_catalog.=) 'array'"
		"   THEN $1 OPERATOR(pg_catalog.->) 'features' ELSE '[]'::pg_catalog.jsonb END"
		" ) WITH ORDINALITY AS e(j, ord) ON true ORDER BY e.ord";
	Oid			argtypes[1] = {JSONBOID};
	Datum		args[1];
	MemoryContext oldcxt;
	DrModel    *m;
	char	   *label;
	uint64		i;
	int			ret;
	int			col;

	label = (id > 0) ? psprintf("%" INT64_MODIFIER "d (\"%s\")", id, name ? name : "?")
		: psprintf("\"%s\"", name ? name : "(new)");
	args[0] = spec;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "parsing the model specification failed: %s", SPI_result_code_string(ret));

	oldcxt = MemoryContextSwitchTo(cxt);
	m = palloc0(sizeof(DrModel));
	m->id = id;
	m->name = pstrdup(name ? name : "(training)");
	label = pstrdup(label);

	{
		char	   *t1 = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 16);
		char	   *t2 = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 17);

		if (t1 == NULL || strcmp(t1, "object") != 0 || t2 == NULL || strcmp(t2, "array") != 0)
			invalid_model(label, "A model specification is a JSON object with a \"features\" array.",
						  "the specification has no \"features\" array");
	}
	if (SPI_processed == 1 &&
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 18) == NULL)
		invalid_model(label, "List at least one feature.", "the \"features\" array is empty");

	m->nfeatures = (int) SPI_processed;
	m->features = palloc0(sizeof(DrFeature) * m->nfeatures);
	m->extra_columns = palloc0(sizeof(char *) * m->nfeatures);
	col = 1;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DrFeature  *f = &m->features[i];
		char	   *kind = SPI_getvalue(tup, desc, 2);
		char	   *derived = SPI_getvalue(tup, desc, 4);
		int			n;
		int			k;

		CHECK_FOR_INTERRUPTS();	/* a specification may list many features */
		f->name = SPI_getvalue(tup, desc, 1);
		if (f->name == NULL)
			invalid_model(label, "Every feature needs a \"name\".",
						  psprintf("feature %d has no name", (int) i + 1));
		f->column = SPI_getvalue(tup, desc, 3);
		f->colidx = -1;
		if (kind == NULL)
			invalid_model(label, "Kinds are categorical, bins, rate and numeric.",
						  psprintf("feature \"%s\" has no kind", f->name));
		else if (strcmp(kind, "categorical") == 0)
			f->kind = DR_FEAT_CATEGORICAL;
		else if (strcmp(kind, "bins") == 0)
			f->kind = DR_FEAT_BINS;
		else if (strcmp(kind, "rate") == 0)
			f->kind = DR_FEAT_RATE;
		else if (strcmp(kind, "numeric") == 0)
			f->kind = DR_FEAT_NUMERIC;
		else
			invalid_model(label, "Kinds are categorical, bins, rate and numeric.",
						  psprintf("feature \"%s\" has unknown kind \"%s\"", f->name, kind));

		f->derived = DR_DERIVED_NONE;
		if (derived != NULL)
		{
			if (strcmp(derived, "age_days") == 0)
				f->derived = DR_DERIVED_AGE_DAYS;
			else if (strcmp(derived, "stage_ratio") == 0)
				f->derived = DR_DERIVED_STAGE_RATIO;
			else if (strcmp(derived, "activity_gap") == 0)
				f->derived = DR_DERIVED_ACTIVITY_GAP;
			else if (strcmp(derived, "stage_days") == 0)
				f->derived = DR_DERIVED_STAGE_DAYS;
			else
				invalid_model(label, "Derived inputs are age_days, stage_ratio, stage_days and activity_gap.",
							  psprintf("feature \"%s\" has unknown derived input \"%s\"", f->name, derived));
			if (f->kind != DR_FEAT_BINS && f->kind != DR_FEAT_NUMERIC)
				invalid_model(label, "Derived inputs are numbers: use kind bins or numeric.",
							  psprintf("feature \"%s\" derives a number but has kind %s", f->name, kind));
			f->column = NULL;
		}
		else if (f->column == NULL)
			invalid_model(label, "A feature reads a \"column\" or a \"derived\" input.",
						  psprintf("feature \"%s\" has neither", f->name));
		else
			f->colidx = extra_column(m, f->column);

		f->levels = text_array(tup, desc, 5, &f->nlevels);
		f->pooled = text_array(tup, desc, 6, &f->npooled);
		f->edges = float_array(tup, desc, 7, &f->nedges);
		f->won = float_array(tup, desc, 8, &n);
		if (f->won && n != f->nlevels)
			invalid_model(label, "\"won\" and \"closed\" have one count per level.",
						  psprintf("feature \"%s\" has %d levels but %d won counts", f->name, f->nlevels, n));
		f->closed = float_array(tup, desc, 9, &n);
		if (f->closed && n != f->nlevels)
			invalid_model(label, "\"won\" and \"closed\" have one count per level.",
						  psprintf("feature \"%s\" has %d levels but %d closed counts", f->name, f->nlevels, n));
		f->prior = float_value(tup, desc, 10);
		f->strength = float_value(tup, desc, 11);
		f->mean = float_value(tup, desc, 12);
		f->sd = float_value(tup, desc, 13);
		f->typical_stage = text_array(tup, desc, 14, &f->ntypical);
		f->typical_days = float_array(tup, desc, 15, &n);
		f->quantiles = float_array(tup, desc, 19, &f->nquantiles);
		f->knots = float_array(tup, desc, 20, &f->nknots);
		f->open_terms = float_array(tup, desc, 21, &n);
		if (f->open_terms && n != f->nknots)
			invalid_model(label, "\"open_terms\" has one term per entry of \"open_knots\".",
						  psprintf("feature \"%s\" has %d knots but %d open terms", f->name, f->nknots, n));
		if (f->open_terms == NULL && SPI_getvalue(tup, desc, 25) != NULL &&
			strcmp(SPI_getvalue(tup, desc, 25), "t") == 0)
			invalid_model(label, "\"open_terms\" is an array of numbers, one per knot.",
						  psprintf("feature \"%s\" has \"open_terms\" that is not an array", f->name));
		f->open_closed = float_array(tup, desc, 22, &n);
		if (f->open_closed && n != f->nknots)
			invalid_model(label, "\"open_closed\" and \"open_won\" have one count per knot.",
						  psprintf("feature \"%s\" has %d knots but %d closed counts", f->name, f->nknots, n));
		f->open_won = float_array(tup, desc, 23, &n);
		if (f->open_won && n != f->nknots)
			invalid_model(label, "\"open_closed\" and \"open_won\" have one count per knot.",
						  psprintf("feature \"%s\" has %d knots but %d won counts", f->name, f->nknots, n));
		f->longest = float_value(tup, desc, 24);
		f->tree_rank = float_array(tup, desc, 26, &n);
		if (f->tree_rank && (f->kind != DR_FEAT_CATEGORICAL || n != f->nlevels))
			invalid_model(label, "\"tree_rank\" gives a categorical feature's trees one number per level.",
						  psprintf("feature \"%s\" has %d levels but %d tree ranks", f->name, f->nlevels, n));
		f->tree_edges = float_array(tup, desc, 27, &f->ntree_edges);
		{
			char	   *unit = SPI_getvalue(tup, desc, 28);

			if (unit != NULL && strcmp(unit, "month_end") != 0)
				invalid_model(label, "A feature's \"unit\" is \"month_end\" (point-in-time snapshots) or absent.",
							  psprintf("feature \"%s\" has unit \"%s\"", f->name, unit));
			f->month_end = unit != NULL;
		}
		if (f->tree_edges && (f->kind == DR_FEAT_CATEGORICAL || f->ntree_edges > 254))
			invalid_model(label, "\"tree_edges\" bins a number for training trees: at most 254 edges.",
						  psprintf("feature \"%s\" has %d tree edges", f->name, f->ntree_edges));
		for (k = 0; f->tree_edges && k < f->ntree_edges; k++)
			if (!finite_number(f->tree_edges[k]) ||
				(k > 0 && (float) f->tree_edges[k] <= (float) f->tree_edges[k - 1]))
				invalid_model(label, "Tree edges are finite and strictly increasing as float4.",
							  psprintf("feature \"%s\" has a bad tree edge at position %d: %g",
									   f->name, k + 1, f->tree_edges[k]));
		for (k = 0; f->tree_rank && k < n; k++)
			if (!finite_number(f->tree_rank[k]))
				invalid_model(label, "Tree ranks are finite numbers.",
							  psprintf("feature \"%s\" has tree rank %g at position %d", f->name, f->tree_rank[k], k + 1));
		/* refuse a feature too wide before sorting and hashing its levels */
		if ((f->kind == DR_FEAT_CATEGORICAL && (int64) col + f->nlevels > DR_MAX_MODEL_COLUMNS) ||
			(f->kind == DR_FEAT_BINS && (int64) col + f->nedges + 1 > DR_MAX_MODEL_COLUMNS))
			invalid_model(label, "Pool rare levels or use fewer bins.",
						  psprintf("feature \"%s\" would take the model past %d columns",
								   f->name, DR_MAX_MODEL_COLUMNS));

		switch (f->kind)
		{
			case DR_FEAT_CATEGORICAL:
				if (f->nlevels < 1)
					invalid_model(label, "A categorical feature lists its \"levels\".",
								  psprintf("feature \"%s\" has no levels", f->name));
				f->won = f->closed = NULL;
				sort_levels(f, label);
				build_level_hash(f);
				if (f->tree_rank != NULL)
				{
					/* the ranks follow the levels into byte order */
					double	   *rank = palloc(sizeof(double) * f->nlevels);

					for (k = 0; k < f->nlevels; k++)
						rank[k] = f->tree_rank[f->colpos[k]];
					f->tree_rank = rank;
				}
				f->width = f->nlevels;
				break;
			case DR_FEAT_RATE:
				if (f->nlevels > 0 && (f->won == NULL || f->closed == NULL))
					invalid_model(label, "A rate feature has \"won\" and \"closed\" counts per level.",
								  psprintf("feature \"%s\" lacks its counts", f->name));
				for (k = 0; k < f->nlevels; k++)
					if (!finite_number(f->won[k]) || !finite_number(f->closed[k]) ||
						f->won[k] < 0 || f->won[k] > f->closed[k])
						invalid_model(label, "Counts are finite with 0 <= won <= closed.",
									  psprintf("feature \"%s\" has bad counts for level %d: %g won of %g closed",
											   f->name, k + 1, f->won[k], f->closed[k]));
				if (!finite_number(f->prior) || f->prior < 0 || f->prior > 1 ||
					!finite_number(f->strength) || f->strength <= 0)
					invalid_model(label, "\"prior\" is a rate in [0, 1] and \"strength\" a positive number.",
								  psprintf("feature \"%s\" has prior %g and strength %g",
										   f->name, f->prior, f->strength));
				f->npooled = 0;
				sort_levels(f, label);
				build_level_hash(f);
				f->width = 1;
				break;
			case DR_FEAT_BINS:
				if (f->nedges < 1)
					invalid_model(label, "A bins feature lists at least one edge.",
								  psprintf("feature \"%s\" has no \"edges\"", f->name));
				for (k = 0; k < f->nedges; k++)
					if (!finite_number(f->edges[k]) || (k > 0 && f->edges[k] <= f->edges[k - 1]))
						invalid_model(label, "Edges are finite and strictly increasing.",
									  psprintf("feature \"%s\" has a bad edge at position %d: %g",
											   f->name, k + 1, f->edges[k]));
				f->width = f->nedges + 1;
				break;
			case DR_FEAT_NUMERIC:
				f->width = 1;
				break;
		}
		if ((f->kind == DR_FEAT_RATE || f->kind == DR_FEAT_NUMERIC) &&
			(!finite_number(f->mean) || !finite_number(f->sd) || f->sd <= 0))
			invalid_model(label, "Standardised features have a finite \"mean\" and a positive, finite \"sd\".",
						  psprintf("feature \"%s\" has mean %g and sd %g", f->name, f->mean, f->sd));
		if (f->derived == DR_DERIVED_STAGE_RATIO)
		{
			if (f->ntypical < 1 || f->typical_days == NULL)
				invalid_model(label, "A stage_ratio feature has \"typical\" days per stage.",
							  psprintf("feature \"%s\" has no typical days", f->name));
			for (k = 0; k < f->ntypical; k++)
				if (!finite_number(f->typical_days[k]) || f->typical_days[k] <= 0)
					invalid_model(label, "Typical days are positive, finite numbers.",
								  psprintf("feature \"%s\" has typical days %g for stage \"%s\"",
										   f->name, f->typical_days[k], f->typical_stage[k]));
		}
		check_open_curve(f, label);
		f->offset = col;
		col += f->width;
		if (col > DR_MAX_MODEL_COLUMNS)
			invalid_model(label, "Pool rare levels or use fewer bins.",
						  psprintf("more than %d model columns", DR_MAX_MODEL_COLUMNS));
	}
	m->ncols = col;
	m->colfeat = palloc(sizeof(int) * col);
	m->colfeat[0] = -1;			/* the intercept */
	for (i = 0; i < (uint64) m->nfeatures; i++)
	{
		int			c;

		for (c = 0; c < m->features[i].width; c++)
			m->colfeat[m->features[i].offset + c] = (int) i;
	}

	tree_spec(m, spec, label);
	if (coefs != NULL)
	{
		int			n;

		if (ARR_NDIM(coefs) != 1 || ARR_ELEMTYPE(coefs) != FLOAT8OID || ARR_HASNULL(coefs))
			invalid_model(label, "Coefficients are a one-dimensional float8 array without NULLs.",
						  "the coefficients are not a plain float8 array");
		n = ARR_DIMS(coefs)[0];
		if (m->trees != NULL && n != 1)
			invalid_model(label, "A tree model has one coefficient: the margin before the first tree.",
						  psprintf("%d coefficients for a tree model", n));
		if (m->trees == NULL && n != m->ncols)
			invalid_model(label, "There is one coefficient for the intercept and one per model column.",
						  psprintf("%d coefficients for %d model columns", n, m->ncols));
		m->beta = palloc(sizeof(double) * n);
		memcpy(m->beta, ARR_DATA_PTR(coefs), sizeof(double) * n);
		for (i = 0; i < (uint64) n; i++)
			if (!finite_number(m->beta[i]) || fabs(m->beta[i]) > DR_MAX_COEFFICIENT)
				invalid_model(label,
							  psprintf("Coefficients are finite numbers within +-%g.", DR_MAX_COEFFICIENT),
							  psprintf("coefficient %d is %.15g", (int) i + 1, m->beta[i]));
	}
	if (m->trees != NULL && m->beta != NULL)
	{
		m->trees->base = m->beta[0];
		dr_trees_check(m->trees, cxt);
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	return m;
}

/*
 * Mark every cached model stale when the relation cache entry of
 * dealrisk.models (or of the placement read) is invalidated, as a TRUNCATE,
 * DDL or a full reset does.  This only hurries things along: what a scoring
 * call uses is checked against the table under its snapshot, row version
 * by row version (dr_model_lookup), so no trigger on the table is needed
 * (Citus refuses reference tables with triggers).
 */
static void
models_relcache_cb(Datum arg, Oid relid)
{
	CachedModel *v;

	if (relid != InvalidOid && relid != models_relid)
		return;
	for (v = versions; v != NULL; v = v->next)
		v->stale = true;
	dr_model_generation++;
}

/*
 * A rolled back subtransaction may have changed what the snapshot sees
 * without moving its command id: make every cache check its table again.
 */
static void
models_subxact_cb(SubXactEvent event, SubTransactionId mySubid,
				  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		dr_model_generation++;
}

/* Register the invalidation callbacks; called from _PG_init. */
void
dr_model_cache_init(void)
{
	CacheRegisterRelcacheCallback(models_relcache_cb, (Datum) 0);
	RegisterSubXactCallback(models_subxact_cb, NULL);
}

/* Forget a cached model: names resolved to it are looked up again. */
static void
drop_version(CachedModel *v)
{
	CachedModel **link;
	CachedName *n;

	for (link = &versions; *link != NULL; link = &(*link)->next)
		if (*link == v)
		{
			*link = v->next;
			break;
		}
	for (n = names; n != NULL; n = n->next)
		if (n->version == v)
		{
			n->version = NULL;
			n->key.valid = false;
		}
	nversions--;
	MemoryContextDelete(v->cxt);
	/* call sites holding it must not use it again */
	dr_model_generation++;
}

/*
 * Free stale models, and the least recently used ones beyond
 * DR_MAX_MODEL_VERSIONS among those not used in this transaction (a
 * statement may score with any number of models; they are trimmed later).
 */
static void
trim_versions(void)
{
	CachedModel *v;
	CachedModel *next;

	for (v = versions; v != NULL; v = next)
	{
		next = v->next;
		if (v->stale)
			drop_version(v);
	}
	while (nversions > DR_MAX_MODEL_VERSIONS)
	{
		CachedModel *lru = NULL;

		for (v = versions; v != NULL; v = v->next)
			if (v->lxid != MyProc->lxid && (lru == NULL || v->last_used < lru->last_used))
				lru = v;
		if (lru == NULL)
			break;
		drop_version(lru);
	}
}

/* The memo of a model name, or NULL. */
static CachedName *
find_name(const char *name)
{
	CachedName *n;

	for (n = names; n != NULL; n = n->next)
		if (strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

/* A new memo for a model name, dropping the least recently used beyond the bound. */
static CachedName *
add_name(const char *name)
{
	CachedName *n;

	if (nnames >= DR_MAX_MODEL_NAMES)
	{
		CachedName **link;
		CachedName **lru = &names;

		for (link = &names; *link != NULL; link = &(*link)->next)
			if ((*link)->last_used < (*lru)->last_used)
				lru = link;
		n = *lru;
		*lru = n->next;
		pfree(n->name);
		pfree(n);
		nnames--;
	}
	n = MemoryContextAllocZero(cache_cxt, sizeof(CachedName));
	n->name = MemoryContextStrdup(cache_cxt, name);
	n->next = names;
	names = n;
	nnames++;
	return n;
}

/*
 * The local placement of a configuration table of the extension, as a
 * quoted, schema-qualified name, when Citus has made dealrisk.<relname> a
 * reference table with a placement on this node; NULL otherwise.  Inside a
 * query that Citus runs on a shard, reading the reference table by its own
 * name would be a nested distributed query, which Citus refuses; its local
 * placement is a plain table of this node that every write to the
 * reference table reaches in the same transaction.  Must be called inside
 * an SPI connection.
 */
char *
dr_config_placement(const char *relname)
{
	static const char *query =
		"SELECT pg_catalog.shard_name(s.logicalrelid, s.shardid)"
		" FROM pg_catalog.pg_dist_shard s"
		" JOIN pg_catalog.pg_dist_placement p ON p.shardid OPERATOR(pg_catalog.=) s.shardid"
		" JOIN pg_catalog.pg_dist_local_group g ON g.groupid OPERATOR(pg_catalog.=) p.groupid"
		" WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1 LIMIT 1";
	Oid			nsp = get_namespace_oid("dealrisk", false);
	Oid			relid;
	Datum		args[1];
	Oid			argtypes[1] = {REGCLASSOID};
	int			ret;

	if (!OidIsValid(get_extension_oid("citus", true)) ||
		!OidIsValid(relid = get_relname_relid(relname, nsp)))
		return NULL;
	args[0] = ObjectIdGetDatum(relid);
	ret = SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading Citus's placements of dealrisk.%s failed: %s",
			 relname, SPI_result_code_string(ret));
	if (SPI_processed == 1)
		return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return NULL;
}

/*
 * The relation to read a configuration table of the extension from: its
 * local Citus placement (dr_config_placement) or dealrisk.<relname> itself.
 * Must be called inside an SPI connection.
 */
char *
dr_config_table(const char *relname)
{
	char	   *placement = dr_config_placement(relname);

	return placement != NULL ? placement : psprintf("dealrisk.%s", quote_identifier(relname));
}

/*
 * The active model of a name as the current snapshot sees it: from the
 * backend cache when the memo of the name was checked under a snapshot
 * that sees the same (dr_snapshot_key_current), else after reading the
 * model's row from dealrisk.models (or its placement on this node: see
 * dr_config_table) under the current snapshot, parsing it only when that
 * row version (table, id, xmin, cmin, ctid) is not cached yet.
 * So the model scored with is always the one a query of dealrisk.models
 * in the same snapshot returns: a repeatable read transaction keeps its
 * model to the end and the next transaction sees the new one.
 *
 * *serial (when given) identifies the parsed model: a call site compares it
 * to know whether what it built for the model is still right.  *key (when
 * given) gets the snapshot the answer holds for; the model may be used
 * while dr_snapshot_key_current(key) holds, and not after (it may be freed
 * by a later lookup).  Raises an error when no model of that name is active.
 */
DrModel *
dr_model_lookup(const char *name, uint64 *serial, DrSnapKey *key)
{
	static const char *query =
		"SELECT m.tableoid, m.id::pg_catalog.int8, m.xmin, m.ctid,"
		" m.feature_spec::pg_catalog.jsonb, m.coefficients::pg_catalog.float8[], m.cmin"
		" FROM %s m"
		" WHERE m.name::pg_catalog.text OPERATOR(pg_catalog.=) $1 AND m.active";
	char	   *table;
	CachedName *n = find_name(name);
	CachedModel *v;
	DrSnapKey	checked;
	Datum		args[1];
	Oid			argtypes[1] = {TEXTOID};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Oid			relid;
	int64		id;
	TransactionId xmin;
	CommandId	cmin;
	ItemPointerData ctid;
	int			ret;

	if (n != NULL && n->version != NULL && dr_snapshot_key_current(&n->key))
		goto found;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "dealrisk model cache",
										  ALLOCSET_SMALL_SIZES);
	trim_versions();
	if (n != NULL)
	{
		n->version = NULL;
		n->key.valid = false;
	}

	/*
	 * The snapshot is noted before the table is read: an invalidation that
	 * arrives while the table is locked leaves the answer already out of
	 * date, and the next call checks again.
	 */
	dr_snapshot_key_set(&checked);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	table = dr_config_table("models");
	if (check_plan != NULL && strcmp(check_plan_table, table) != 0)
	{
		SPI_freeplan(check_plan);
		check_plan = NULL;
		pfree(check_plan_table);
		check_plan_table = NULL;
	}
	if (check_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(psprintf(query, table), 1, argtypes);

		if (plan == NULL)
			elog(ERROR, "preparing the query of dealrisk.models failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		check_plan = plan;
		check_plan_table = MemoryContextStrdup(TopMemoryContext, table);
	}
	args[0] = CStringGetTextDatum(name);
	ret = SPI_execute_plan(check_plan, args, NULL, true, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading dealrisk.models failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("no active deal risk model named \"%s\"", name),
				 errhint("Train one with SELECT dealrisk.train('<your deal source>', %s), or activate one with dealrisk.activate(id).",
						 quote_literal_cstr(name))));
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("more than one active deal risk model is named \"%s\"", name),
				 errhint("Restore the unique index models_one_active_per_name and keep one model of the name active.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 3, &isnull));
	ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 4, &isnull)), &ctid);
	cmin = DatumGetCommandId(SPI_getbinval(tup, desc, 7, &isnull));
	models_relid = relid;

	for (v = versions; v != NULL; v = v->next)
		if (!v->stale && v->relid == relid && v->id == id &&
			TransactionIdEquals(v->xmin, xmin) && v->cmin == cmin &&
			ItemPointerEquals(&v->ctid, &ctid))
			break;

	if (v == NULL)
	{
		/*
		 * Parse the row into a context of its own, under SPI's (so an error
		 * frees it), and keep it only once it parsed.
		 */
		MemoryContext vcxt = AllocSetContextCreate(CurrentMemoryContext, "dealrisk model",
												   ALLOCSET_DEFAULT_SIZES);
		MemoryContext oldcxt;
		Datum		spec;
		Datum		coefs;

		spec = SPI_getbinval(tup, desc, 5, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("model " INT64_FORMAT " (\"%s\") has no feature specification", id, name)));
		coefs = SPI_getbinval(tup, desc, 6, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("model " INT64_FORMAT " (\"%s\") has no coefficients", id, name)));
		oldcxt = MemoryContextSwitchTo(vcxt);
		spec = PointerGetDatum(PG_DETOAST_DATUM_COPY(spec));
		coefs = PointerGetDatum(PG_DETOAST_DATUM_COPY(coefs));
		v = palloc0(sizeof(CachedModel));
		MemoryContextSwitchTo(oldcxt);

		v->model = dr_model_from_spec(spec, DatumGetArrayTypeP(coefs), id, name, vcxt);
		pfree(DatumGetPointer(spec));
		pfree(DatumGetPointer(coefs));
		v->cxt = vcxt;
		v->relid = relid;
		v->id = id;
		v->xmin = xmin;
		v->cmin = cmin;
		ItemPointerCopy(&ctid, &v->ctid);
		v->serial = ++serial_counter;
		MemoryContextSetParent(vcxt, cache_cxt);
		v->next = versions;
		versions = v;
		nversions++;
	}
	v->lxid = MyProc->lxid;
	SPI_finish();

	if (n == NULL)
		n = add_name(name);
	n->version = v;
	n->key = checked;

found:
	n->last_used = ++use_clock;
	n->version->last_used = use_clock;
	n->version->lxid = MyProc->lxid;
	if (serial)
		*serial = n->version->serial;
	if (key)
		*key = n->key;
	return n->version->model;
}

/*
 * The active model of a name under the current snapshot (see
 * dr_model_lookup; the pointer is good until the next lookup).
 */
DrModel *
dr_active_model(const char *name)
{
	return dr_model_lookup(name, NULL, NULL);
}

/*
 * SQL: _scoring_model(name) -> the id of the model deal_risk() scores with
 * under this snapshot: write it beside a score, in the same statement, and
 * the two always belong together.
 */
PG_FUNCTION_INFO_V1(dr_scoring_model_id);
Datum
dr_scoring_model_id(PG_FUNCTION_ARGS)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	PG_RETURN_INT64(dr_model_lookup(name, NULL, NULL)->id);
}

/*
 * Trigger of dealrisk 0.3.0 and before on dealrisk.models: tell every
 * backend to drop its cached models.  0.4.0 has no trigger (see
 * models_relcache_cb); the function stays for a library loaded under an
 * older version of the extension until ALTER EXTENSION UPDATE.
 */
Datum
dr_models_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("dealrisk._models_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}

/* SQL: _validate_model(spec, coefficients) -> number of model columns, or an error. */
Datum
dr_validate_model(PG_FUNCTION_ARGS)
{
	DrModel    *m;
	ArrayType  *coefs = PG_ARGISNULL(1) ? NULL : PG_GETARG_ARRAYTYPE_P(1);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model specification must not be NULL")));
	m = dr_model_from_spec(PG_GETARG_DATUM(0), coefs, 0, "(import)", CurrentMemoryContext);
	PG_RETURN_INT32(m->ncols);
}
