/*
 * outcome.c
 *	  Outcome labels (won / lost / open) and the stage table.
 *
 * Labels come from the dealrisk.*_labels GUCs, parsed once after each change
 * into a list kept in TopMemoryContext; classifying a row allocates nothing.
 * Stages come from dealrisk.stages, read once per backend and snapshot into
 * TopMemoryContext.
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "dealrisk.h"
#include "model.h"

PG_FUNCTION_INFO_V1(dr_is_won);
PG_FUNCTION_INFO_V1(dr_outcome_class);
PG_FUNCTION_INFO_V1(dr_stage_position);
PG_FUNCTION_INFO_V1(dr_stage_key);
PG_FUNCTION_INFO_V1(dr_label_guess);

typedef struct DrLabel
{
	char	   *text;			/* lower-cased, trimmed */
	int			len;
	DrOutcome	cls;
} DrLabel;

static DrLabel labels[DR_MAX_LABELS * 3];
static int	nlabels = 0;
static MemoryContext label_cxt = NULL;

/* Bounds of s[0..len) without leading and trailing white space. */
static void
trim_bounds(const char **s, int *len)
{
	while (*len > 0 && isspace((unsigned char) (*s)[0]))
	{
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char) (*s)[*len - 1]))
		(*len)--;
}

/* Add the comma-separated labels of one GUC to the parsed list. */
static void
parse_label_list(const char *list, DrOutcome cls, const char *gucname)
{
	const char *p = list ? list : "";
	int			count = 0;

	while (*p)
	{
		const char *start = p;
		int			len;
		int			i;

		while (*p && *p != ',')
			p++;
		len = p - start;
		if (*p == ',')
			p++;
		trim_bounds(&start, &len);
		if (len == 0)
			continue;
		if (++count > DR_MAX_LABELS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s lists more than %d labels", gucname, DR_MAX_LABELS)));
		labels[nlabels].text = MemoryContextAlloc(label_cxt, len + 1);
		for (i = 0; i < len; i++)
			labels[nlabels].text[i] = pg_tolower((unsigned char) start[i]);
		labels[nlabels].text[len] = '\0';
		labels[nlabels].len = len;
		labels[nlabels].cls = cls;
		nlabels++;
	}
}

/*
 * The last labels classified, as stored (untrimmed), one slot per length
 * modulo MEMO_SLOTS: a column holds a handful of labels, so most rows are
 * answered by one comparison instead of a trim and case-insensitive
 * matches.  Emptied whenever the label lists are parsed again.
 */
#define MEMO_SLOTS 4
#define MEMO_MAX_LEN 32
typedef struct LabelMemo
{
	int			len;			/* 0: empty slot */
	DrOutcome	cls;
	char		text[MEMO_MAX_LEN];
} LabelMemo;
static LabelMemo memo[MEMO_SLOTS];

/* Re-read the label GUCs if one changed since the last parse. */
static void
refresh_labels(void)
{
	if (!dr_labels_dirty)
		return;
	if (label_cxt == NULL)
		label_cxt = AllocSetContextCreate(TopMemoryContext, "dealrisk labels",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(label_cxt);
	nlabels = 0;
	memset(memo, 0, sizeof(memo));
	parse_label_list(dr_won_labels, DR_OUTCOME_WON, "dealrisk.won_labels");
	parse_label_list(dr_lost_labels, DR_OUTCOME_LOST, "dealrisk.lost_labels");
	parse_label_list(dr_open_labels, DR_OUTCOME_OPEN, "dealrisk.open_labels");
	dr_labels_dirty = false;
}

/*
 * Classify an outcome label (not NUL-terminated) without allocating.  The
 * first list that names it wins, in the order won, lost, open.
 */
DrOutcome
dr_classify_outcome(const char *s, int len)
{
	LabelMemo  *m = &memo[len % MEMO_SLOTS];
	const char *t = s;
	int			tlen = len;
	DrOutcome	cls = DR_OUTCOME_UNKNOWN;
	int			i;

	refresh_labels();
	if (len > 0 && m->len == len && memcmp(m->text, s, len) == 0)
		return m->cls;
	trim_bounds(&t, &tlen);
	if (tlen == 0)
		cls = DR_OUTCOME_NONE;
	else
	{
		for (i = 0; i < nlabels; i++)
		{
			if (labels[i].len == tlen && pg_strncasecmp(labels[i].text, t, tlen) == 0)
			{
				cls = labels[i].cls;
				break;
			}
		}
	}
	if (len > 0 && len <= MEMO_MAX_LEN)
	{
		m->len = len;
		m->cls = cls;
		memcpy(m->text, s, len);
	}
	return cls;
}

/*
 * Whether the lower-cased word w occurs in s[0..len) as a whole word
 * (bounded by non-letters), compared without case.
 */
static bool
has_word(const char *s, int len, const char *w)
{
	int			wlen = strlen(w);

	for (int i = 0; i + wlen <= len; i++)
	{
		int			j;

		if (i > 0 && isalpha((unsigned char) s[i - 1]))
			continue;
		if (i + wlen < len && isalpha((unsigned char) s[i + wlen]))
			continue;
		for (j = 0; j < wlen; j++)
			if (pg_tolower((unsigned char) s[i + j]) != w[j])
				break;
		if (j == wlen)
			return true;
	}
	return false;
}

/*
 * What an unknown outcome label most likely means, from its words: won
 * ("Won", "Closed - Booked"), lost ("Lost", "Disqualified"), else open (a
 * stage name such as "Engaging"); DR_OUTCOME_UNKNOWN when it names both or
 * only says "closed".  Used to point the user at the right label list.
 */
DrOutcome
dr_guess_outcome(const char *s, int len)
{
	static const char *const won_words[] = {"won", "win", "wins", "booked", "signed", "success",
	"successful", "closedwon", "purchased", NULL};
	static const char *const lost_words[] = {"lost", "loss", "lose", "dead", "disqualified",
		"unqualified", "rejected", "declined", "cancelled", "canceled", "churned", "closedlost",
	"abandoned", "no deal", NULL};
	bool		won = false;
	bool		lost = false;

	for (int i = 0; won_words[i]; i++)
		won |= has_word(s, len, won_words[i]);
	for (int i = 0; lost_words[i]; i++)
		lost |= has_word(s, len, lost_words[i]);
	if (won != lost)
		return won ? DR_OUTCOME_WON : DR_OUTCOME_LOST;
	if (won || has_word(s, len, "closed"))
		return DR_OUTCOME_UNKNOWN;
	return DR_OUTCOME_OPEN;
}

/* The GUC holding the labels of an outcome class (the won list for unknown). */
static const char *
label_guc(DrOutcome cls, const char **value)
{
	switch (cls)
	{
		case DR_OUTCOME_LOST:
			*value = dr_lost_labels;
			return "dealrisk.lost_labels";
		case DR_OUTCOME_OPEN:
		case DR_OUTCOME_NONE:
			*value = dr_open_labels;
			return "dealrisk.open_labels";
		default:
			*value = dr_won_labels;
			return "dealrisk.won_labels";
	}
}

/*
 * How many bytes of s[0..len) a message repeats: at most DR_MESSAGE_BYTES,
 * cut at a character boundary (half a character would make the message
 * fail to convert to the client's encoding, hiding the error it reports).
 */
#define DR_MESSAGE_BYTES 200
static int
message_len(const char *s, int len)
{
	return len > DR_MESSAGE_BYTES ? pg_mbcliplen(s, len, DR_MESSAGE_BYTES) : len;
}

/*
 * The statement that adds label s[0..len) to the label list guc whose value
 * is list, with the value quoted for SQL (a hint is run as written, and a
 * label may hold quotes), or NULL when no such statement exists: the list
 * is comma-separated, so a label holding a comma cannot be listed, and a
 * label too long for the message is not repeated in it.
 */
static char *
label_set_statement(const char *guc, const char *list, const char *s, int len)
{
	StringInfoData value;
	const char *p = list ? list : "";

	if (len > DR_MESSAGE_BYTES || memchr(s, ',', len) != NULL)
		return NULL;
	initStringInfo(&value);
	while (*p && isspace((unsigned char) *p))
		p++;
	if (*p)						/* keep the labels the list holds */
		appendStringInfo(&value, "%s,", list);
	appendBinaryStringInfo(&value, s, len);
	return psprintf("SET %s = %s", guc, quote_literal_cstr(value.data));
}

/*
 * Map an outcome to won (true) / lost (false) / open (*isnull); an unknown
 * label is an error that names it and says which list it probably belongs
 * to, with the statement that adds it there.
 */
bool
dr_outcome_is_won(text *outcome, bool *isnull)
{
	int			len = VARSIZE_ANY_EXHDR(outcome);
	const char *s = VARDATA_ANY(outcome);
	DrOutcome	guess;
	const char *list;
	const char *guc;
	char	   *set;
	int			shown;

	*isnull = false;
	switch (dr_classify_outcome(s, len))
	{
		case DR_OUTCOME_WON:
			return true;
		case DR_OUTCOME_LOST:
			return false;
		case DR_OUTCOME_NONE:
		case DR_OUTCOME_OPEN:
			*isnull = true;
			return false;
		case DR_OUTCOME_UNKNOWN:
			break;
	}
	guess = dr_guess_outcome(s, len);
	guc = label_guc(guess, &list);
	set = label_set_statement(guc, list, s, len);
	shown = message_len(s, len);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown outcome label \"%.*s\"", shown, s),
			 errdetail("Known labels: won = \"%s\"; lost = \"%s\"; open = \"%s\".",
					   dr_won_labels, dr_lost_labels, dr_open_labels),
			 set == NULL ?
			 errhint("%sAdd the label to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels; dealrisk.check_source() lists every unknown label with the statement that adds it.",
					 memchr(s, ',', len) != NULL ?
					 "The label lists are comma-separated, so a label holding a comma cannot be listed: rename it in a view over your table (docs/data-contract.md). " : "") :
			 guess == DR_OUTCOME_UNKNOWN ?
			 errhint("Add the label to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels, e.g. %s (or ALTER DATABASE ... SET to keep it); dealrisk.check_source() lists every unknown label.",
					 set) :
			 errhint("\"%.*s\" looks like %s deal: %s (or ALTER DATABASE ... SET to keep it); dealrisk.check_source() lists every unknown label.",
					 shown, s, guess == DR_OUTCOME_WON ? "a won" : guess == DR_OUTCOME_LOST ? "a lost" : "an open",
					 set)));
	return false;				/* keep compiler quiet */
}

/* The SQL name of an outcome class: won, lost, open (also for none) or unknown. */
static const char *
outcome_class_name(DrOutcome cls)
{
	switch (cls)
	{
		case DR_OUTCOME_WON:
			return "won";
		case DR_OUTCOME_LOST:
			return "lost";
		case DR_OUTCOME_NONE:
		case DR_OUTCOME_OPEN:
			return "open";
		case DR_OUTCOME_UNKNOWN:
			break;
	}
	return "unknown";
}

/* SQL: _label_guess(label) -> 'won' | 'lost' | 'open' | 'unknown': what an unknown label likely means. */
Datum
dr_label_guess(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(outcome_class_name(dr_guess_outcome(VARDATA_ANY(t),
																		  VARSIZE_ANY_EXHDR(t)))));
}

/* SQL: is_won(outcome) -> true (won), false (lost), NULL (open or empty). */
Datum
dr_is_won(PG_FUNCTION_ARGS)
{
	bool		isnull;
	bool		won = dr_outcome_is_won(PG_GETARG_TEXT_PP(0), &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_BOOL(won);
}

/* SQL: outcome_class(outcome) -> 'won' | 'lost' | 'open' | 'unknown', never an error. */
Datum
dr_outcome_class(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(outcome_class_name(dr_classify_outcome(VARDATA_ANY(t),
																			 VARSIZE_ANY_EXHDR(t)))));
}

/* What a call site keeps of the stage table, and the snapshot it was read under. */
typedef struct StageCache
{
	DrSnapKey	key;
	MemoryContext cxt;			/* the list; reset when read again */
	DrStageList *list;			/* NULL until read */
} StageCache;

/* The backend's copy of the stage table (dr_stage_list). */
static StageCache *stage_cache = NULL;

/*
 * The stage table ordered by position, read with SPI once per backend and
 * snapshot: it is read again when the snapshot may see other stages (see
 * DrSnapKey).  The copy is the backend's, not the call site's: Citus calls
 * an aggregate's transition function on a shard through a call site of its
 * own for every row (worker_partial_agg), which would read the table once
 * per row.  The columns are cast to the types read here.
 */
DrStageList *
dr_stage_list(FunctionCallInfo fcinfo)
{
	StageCache *sc = stage_cache;
	DrStageList *list;
	DrSnapKey	key;
	MemoryContext oldcxt;
	uint64		i;
	int			ret;
	char	   *edits;

	if (likely(sc != NULL && sc->list != NULL && dr_snapshot_key_current(&sc->key)))
		return sc->list;
	if (sc == NULL)
	{
		sc = MemoryContextAllocZero(TopMemoryContext, sizeof(StageCache));
		sc->cxt = AllocSetContextCreate(TopMemoryContext, "dealrisk stages",
										ALLOCSET_SMALL_SIZES);
		stage_cache = sc;
	}
	sc->list = NULL;
	MemoryContextReset(sc->cxt);
	dr_snapshot_key_set(&key);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * The view dealrisk.stages; on a Citus node whose configuration tables
	 * are reference tables, spelt out over their local placements
	 * (dr_config_placement).  Without Citus the view itself is read, with
	 * its privileges and whatever definition this install's version has.
	 */
	edits = dr_config_placement("stage_edits");
	if (edits == NULL)
		ret = SPI_execute("SELECT s.stage::pg_catalog.text, s.\"position\"::pg_catalog.int4,"
						  " s.is_late::pg_catalog.bool"
						  " FROM dealrisk.stages s ORDER BY 2",
						  true, 0);
	else
		ret = SPI_execute(psprintf("SELECT s.stage::pg_catalog.text, s.\"position\"::pg_catalog.int4,"
								   " s.is_late::pg_catalog.bool FROM ("
								   "SELECT e.stage, e.\"position\", e.is_late FROM %s e WHERE NOT e.removed"
								   " UNION ALL SELECT d.stage, d.\"position\", d.is_late FROM %s d"
								   " WHERE NOT EXISTS (SELECT 1 FROM %s e"
								   " WHERE e.stage OPERATOR(pg_catalog.=) d.stage)) s ORDER BY 2",
								   edits, dr_config_table("stage_defaults"), edits),
						  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading dealrisk.stages failed: %s", SPI_result_code_string(ret));

	oldcxt = MemoryContextSwitchTo(sc->cxt);
	list = palloc0(sizeof(DrStageList));
	list->count = 0;
	list->stages = palloc0(sizeof(DrStage) * Max(1, SPI_processed));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		DrStage    *st = &list->stages[list->count];
		bool		isnull;
		Datum		d;

		st->name = SPI_getvalue(tup, desc, 1);
		if (st->name == NULL)
			continue;			/* a NULL stage names nothing (the table forbids it) */
		d = SPI_getbinval(tup, desc, 2, &isnull);
		st->position = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		st->is_late = isnull ? false : DatumGetBool(d);
		list->count++;
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();

	if (list->count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dealrisk.stages is empty"),
				 errhint("Insert your pipeline's stages, e.g. INSERT INTO dealrisk.stages(stage, position, is_late) VALUES ('Qualified', 1, false).")));
	sc->list = list;
	sc->key = key;
	return list;
}

/*
 * Whether two stage names are the same stage: equal once surrounding white
 * space is trimmed and ASCII letters are folded to lower case.  The one
 * definition of stage matching: the stage table, the model's typical stage
 * times and the SQL of the preflight (via dealrisk._stage_key) all use it.
 */
bool
dr_stage_equal(const char *a, int alen, const char *b, int blen)
{
	trim_bounds(&a, &alen);
	trim_bounds(&b, &blen);
	return alen == blen && pg_strncasecmp(a, b, alen) == 0;
}

/*
 * SQL: _stage_key(stage text) -> the stage name as dr_stage_equal compares
 * it (trimmed, ASCII letters in lower case), NULL for a blank one: what SQL
 * groups and joins stage names by.
 */
Datum
dr_stage_key(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	char	   *out;
	int			i;

	trim_bounds(&s, &len);
	if (len == 0)
		PG_RETURN_NULL();
	out = palloc(len + 1);
	for (i = 0; i < len; i++)
		out[i] = pg_ascii_tolower((unsigned char) s[i]);
	out[len] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, len));
}

/*
 * Index (0-based, in position order) of a stage name, compared as
 * dr_stage_equal says; -1 for a blank name, which callers treat like NULL.
 * An unknown stage is an error naming it.
 */
int
dr_stage_index(DrStageList *list, text *stage)
{
	const char *s = VARDATA_ANY(stage);
	int			len = VARSIZE_ANY_EXHDR(stage);
	int			i;

	trim_bounds(&s, &len);
	if (len == 0)
		return -1;
	for (i = 0; i < list->count; i++)
	{
		const char *name = list->stages[i].name;

		if (dr_stage_equal(name, strlen(name), s, len))
			return i;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown deal stage \"%.*s\"", message_len(s, len), s),
			 len > DR_MESSAGE_BYTES ?
			 errhint("Add it to the stage table (INSERT INTO dealrisk.stages(stage, position, is_late) VALUES (...)); dealrisk.check_source() gives the statement.") :
			 errhint("Add it to the stage table: INSERT INTO dealrisk.stages(stage, position, is_late) VALUES (%s, <position>, <is_late>).",
					 quote_literal_cstr(pnstrdup(s, len)))));
	return -1;					/* keep compiler quiet */
}

/* SQL: stage_position(stage) -> its position in dealrisk.stages, error if unknown. */
Datum
dr_stage_position(PG_FUNCTION_ARGS)
{
	DrStageList *list = dr_stage_list(fcinfo);
	int			idx = dr_stage_index(list, PG_GETARG_TEXT_PP(0));

	if (idx < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(list->stages[idx].position);
}

/* Report an aggregate state array that dr_state_array() refused. */
void
dr_state_array_error(const char *what, int nelems)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("invalid %s state array", what),
			 nelems >= 0 ?
			 errdetail("Expected a one-dimensional array of %d non-NULL elements.", nelems) :
			 errdetail("Expected a non-empty one-dimensional array without NULLs.")));
	pg_unreachable();
}

/* Report a transition function called outside an aggregate. */
void
dr_agg_context_error(const char *fname)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s called in non-aggregate context", fname)));
	pg_unreachable();
}
