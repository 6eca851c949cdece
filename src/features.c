/*
 * features.c
 *	  Turn a deal row of any row type into the model's feature vector.
 *
 * Column names are resolved to attribute numbers once per row type and kept
 * in a DrRowReader (callers cache a few in fn_extra, checked per row against
 * the row type's current descriptor); encoding a row reads the attributes it
 * needs and writes the non-zero model columns into a preallocated DrEncoded,
 * so the per-row path allocates nothing.  Non-finite numbers (NaN,
 * +-Infinity) count as missing, as infinite dates do.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "dealrisk.h"
#include "model.h"

char	   *dr_as_of_setting = NULL;

static const char *const fixed_names[DR_NUM_FIXED_COLUMNS] = {
	"created_date", "closed_date", "sales_cycle_days", "deal_stage",
	"stage_entered_date", "last_activity_date", "outcome", "dealrisk_as_of"
};

/*
 * The date "now" for open deals: dealrisk.as_of_date when set (replaying a
 * snapshot, tests), else the transaction's current date.  The setting is
 * parsed again when its text or DateStyle changed; an infinite date is an
 * error (ages and gaps would be meaningless).
 */
int32
dr_as_of_date(void)
{
	static char *parsed_from = NULL;
	static int	parsed_style = -1;
	static int	parsed_order = -1;
	static DateADT parsed = 0;

	if (dr_as_of_setting == NULL || dr_as_of_setting[0] == '\0')
		return (int32) GetSQLCurrentDate();
	if (parsed_from == NULL || strcmp(parsed_from, dr_as_of_setting) != 0 ||
		parsed_style != DateStyle || parsed_order != DateOrder)
	{
		DateADT		d = DatumGetDateADT(DirectFunctionCall1(date_in,
															CStringGetDatum(dr_as_of_setting)));

		if (DATE_NOT_FINITE(d))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("dealrisk.as_of_date must be a finite date, not \"%s\"", dr_as_of_setting),
					 errhint("Set it to a date such as '2024-12-31', or to '' for today.")));
		if (parsed_from)
			pfree(parsed_from);
		parsed_from = MemoryContextStrdup(TopMemoryContext, dr_as_of_setting);
		parsed_style = DateStyle;
		parsed_order = DateOrder;
		parsed = d;
	}
	return (int32) parsed;
}

/*
 * The as-of date for a call site, from its cache while the setting's text
 * (compared by content: a new value may reuse the old one's memory), the
 * DateStyle, the time zone (which decides "today") and the transaction are
 * the same.  A few comparisons per row.
 */
int32
dr_as_of_cached(DrAsOf *c)
{
	const char *s = dr_as_of_setting ? dr_as_of_setting : "";

	if (likely(c->valid && c->lxid == MyProc->lxid && c->tz == session_timezone &&
			   c->datestyle == DateStyle && c->dateorder == DateOrder &&
			   strcmp(c->text, s) == 0))
		return c->value;
	c->valid = false;
	c->value = dr_as_of_date();
	if (strlen(s) < sizeof(c->text))
	{
		strcpy(c->text, s);
		c->lxid = MyProc->lxid;
		c->tz = session_timezone;
		c->datestyle = DateStyle;
		c->dateorder = DateOrder;
		c->valid = true;
	}
	return c->value;
}

/* Attribute number of a column by exact name, or 0 when absent. */
static int
find_attno(TupleDesc desc, const char *name)
{
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return 0;
}

/* Error for a column the model needs that the row type lacks. */
static void
missing_column(DrModel *model, const char *column, Oid typid)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" required by model \"%s\" (id " INT64_FORMAT ") is missing from row type %s",
					column, model->name ? model->name : "(training)", model->id,
					format_type_be(typid)),
			 errhint("Score rows that have the model's feature columns, or map them with a view.")));
}

/* True for the numeric types a number feature can read. */
static bool
is_number_type(Oid t)
{
	return t == INT2OID || t == INT4OID || t == INT8OID || t == FLOAT4OID ||
		t == FLOAT8OID || t == NUMERICOID;
}

/* Check a fixed contract column has the type the encoder reads. */
static void
check_fixed_type(DrColumn c, Oid t, Oid typid)
{
	bool		ok;

	switch (c)
	{
		case DR_COL_CYCLE:
			ok = is_number_type(t);
			break;
		case DR_COL_STAGE:
		case DR_COL_OUTCOME:
			ok = (t == TEXTOID || t == VARCHAROID || t == BPCHAROID);
			break;
		default:
			ok = (t == DATEOID);
			break;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of row type %s has type %s, which the model cannot read",
						fixed_names[c], format_type_be(typid), format_type_be(t)),
				 errhint("See docs/data-contract.md for the column types; cast the column in a view.")));
}

/*
 * Resolve the columns the model needs in a row descriptor (which the reader
 * keeps, in cxt, the reader's own context); typid names the row type in
 * messages.  Missing required columns are errors.
 */
static DrRowReader *
row_reader(DrModel *model, TupleDesc desc, Oid typid, MemoryContext cxt)
{
	DrRowReader *r;
	MemoryContext oldcxt;
	bool		need[DR_NUM_FIXED_COLUMNS] = {0};
	int			i;

	oldcxt = MemoryContextSwitchTo(cxt);
	r = palloc0(sizeof(DrRowReader));
	r->typid = typid;
	r->tupdesc = desc;
	r->mcxt = cxt;
	r->id_attno = find_attno(desc, "deal_id");

	for (i = 0; i < model->nfeatures; i++)
	{
		switch (model->features[i].derived)
		{
			case DR_DERIVED_AGE_DAYS:
				need[DR_COL_CREATED] = true;
				break;
			case DR_DERIVED_STAGE_RATIO:
				need[DR_COL_CREATED] = need[DR_COL_STAGE] = true;
				break;
			case DR_DERIVED_STAGE_DAYS:
				need[DR_COL_CREATED] = true;
				break;
			case DR_DERIVED_ACTIVITY_GAP:
				need[DR_COL_LAST_ACTIVITY] = true;
				break;
			case DR_DERIVED_NONE:
				break;
		}
	}
	for (i = 0; i < DR_NUM_FIXED_COLUMNS; i++)
	{
		r->fixed_attno[i] = find_attno(desc, fixed_names[i]);
		if (r->fixed_attno[i] == 0)
		{
			if (need[i])
				missing_column(model, fixed_names[i], typid);
			continue;
		}
		r->fixed_type[i] = TupleDescAttr(desc, r->fixed_attno[i] - 1)->atttypid;
		check_fixed_type((DrColumn) i, r->fixed_type[i], typid);
	}

	r->values = palloc(sizeof(Datum) * Max(1, desc->natts));
	r->isnull = palloc(sizeof(bool) * Max(1, desc->natts));
	r->extra_attno = palloc0(sizeof(int) * Max(1, model->nextra));
	r->extra_type = palloc0(sizeof(Oid) * Max(1, model->nextra));
	r->extra_out = palloc0(sizeof(FmgrInfo) * Max(1, model->nextra));
	for (i = 0; i < model->nextra; i++)
	{
		Oid			t;
		Oid			outfn;
		bool		varlena;

		r->extra_attno[i] = find_attno(desc, model->extra_columns[i]);
		if (r->extra_attno[i] == 0)
			missing_column(model, model->extra_columns[i], typid);
		t = TupleDescAttr(desc, r->extra_attno[i] - 1)->atttypid;
		r->extra_type[i] = t;
		getTypeOutputInfo(t, &outfn, &varlena);
		fmgr_info_cxt(outfn, &r->extra_out[i], cxt);
	}
	/* number features need number columns: checked once per row type */
	for (i = 0; i < model->nfeatures; i++)
	{
		DrFeature  *f = &model->features[i];

		if (f->derived == DR_DERIVED_NONE &&
			(f->kind == DR_FEAT_BINS || f->kind == DR_FEAT_NUMERIC) &&
			!is_number_type(r->extra_type[f->colidx]))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of model \"%s\" must be numeric, not %s",
							f->column, model->name ? model->name : "(training)",
							format_type_be(r->extra_type[f->colidx]))));
	}

	/* deal_id is read too, to name the row in messages */
	r->maxattno = r->id_attno;
	for (i = 0; i < DR_NUM_FIXED_COLUMNS; i++)
		r->maxattno = Max(r->maxattno, r->fixed_attno[i]);
	for (i = 0; i < model->nextra; i++)
		r->maxattno = Max(r->maxattno, r->extra_attno[i]);
	MemoryContextSwitchTo(oldcxt);
	return r;
}

/*
 * A memory context for a reader being built: a child of the current one, so
 * that an error (a missing column) frees it; the caller moves it under its
 * own context once the reader is complete.
 */
static MemoryContext
reader_context(void)
{
	return AllocSetContextCreate(CurrentMemoryContext, "dealrisk row reader",
								 ALLOCSET_SMALL_SIZES);
}

/*
 * A reader for composite values of (typid, typmod), in a new context that
 * ends up under cxt.  A named row type's descriptor is the typcache's, whose
 * tupDesc_identifier changes whenever the type does (ALTER TABLE), so the
 * reader can tell when it is out of date; a registered record type never
 * changes.
 */
static DrRowReader *
tuple_reader(DrModel *model, Oid typid, int32 typmod, MemoryContext cxt)
{
	MemoryContext rcxt = reader_context();
	MemoryContext oldcxt;
	TypeCacheEntry *tce = NULL;
	uint64		tupdesc_id = 0;
	TupleDesc	copy;
	DrRowReader *r;

	if (typid != RECORDOID)
	{
		tce = lookup_type_cache(typid, TYPECACHE_TUPDESC);
		if (tce->tupDesc == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("type %s is not composite", format_type_be(typid))));
		oldcxt = MemoryContextSwitchTo(rcxt);
		copy = CreateTupleDescCopy(tce->tupDesc);
		MemoryContextSwitchTo(oldcxt);
		tupdesc_id = tce->tupDesc_identifier;
	}
	else
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, typmod);

		oldcxt = MemoryContextSwitchTo(rcxt);
		copy = CreateTupleDescCopy(desc);
		MemoryContextSwitchTo(oldcxt);
		ReleaseTupleDesc(desc);
	}
	r = row_reader(model, copy, typid, rcxt);
	r->typmod = typmod;
	r->tce = tce;
	r->tupdesc_id = tupdesc_id;
	MemoryContextSetParent(rcxt, cxt);
	return r;
}

/* True when a reader was built for the current descriptor of its row type. */
static inline bool
reader_current(DrRowReader *r)
{
	return r->tce == NULL || r->tce->tupDesc_identifier == r->tupdesc_id;
}

/*
 * The reader for (typid, typmod) among a call site's readers (the list
 * starting at head), moved to the front; readers of a row type whose
 * descriptor changed are dropped, a new one is built when none fits, and
 * the least recently used beyond DR_MAX_READERS are freed.  Returns the new
 * head of the list.
 */
static DrRowReader *
find_tuple_reader(DrModel *model, Oid typid, int32 typmod, MemoryContext cxt,
				  DrRowReader *head)
{
	DrRowReader **link = &head;
	DrRowReader *r;
	DrRowReader *found = NULL;
	int			n = 1;

	while ((r = *link) != NULL)
	{
		if (r->typid == typid && r->typmod == typmod)
		{
			*link = r->next;
			if (found == NULL && reader_current(r))
				found = r;
			else
				MemoryContextDelete(r->mcxt);
			continue;
		}
		link = &r->next;
	}
	if (found == NULL)
		found = tuple_reader(model, typid, typmod, cxt);
	found->next = head;
	head = found;
	for (r = head; r->next != NULL; r = r->next)
	{
		if (++n > DR_MAX_READERS)
		{
			DrRowReader *rest = r->next;

			r->next = NULL;
			while (rest != NULL)
			{
				DrRowReader *next = rest->next;

				MemoryContextDelete(rest->mcxt);
				rest = next;
			}
			break;
		}
	}
	return head;
}

/*
 * The reader for a composite value's row type (prev: the call site's
 * readers, see find_tuple_reader), with the row deformed into its
 * values/isnull.  Per row this compares the row type and, for a named one,
 * the typcache's descriptor identifier: no lookup.
 */
DrRowReader *
dr_row_from_tuple(DrModel *model, HeapTupleHeader rec, MemoryContext cxt,
				  DrRowReader *prev)
{
	DrRowReader *r = prev;
	Oid			typid = HeapTupleHeaderGetTypeId(rec);
	int32		typmod = HeapTupleHeaderGetTypMod(rec);
	HeapTupleData tup;

	if (unlikely(r == NULL || r->typid != typid || r->typmod != typmod ||
				 !reader_current(r)))
		r = find_tuple_reader(model, typid, typmod, cxt, prev);
	tup.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	tup.t_data = rec;
	heap_deform_tuple(&tup, r->tupdesc, r->values, r->isnull);
	return r;
}

/* True when argument argno of the call is a constant of the query. */
static bool
arg_is_const(FmgrInfo *flinfo, int argno)
{
	Node	   *expr = flinfo->fn_expr;
	List	   *args;

	if (expr == NULL || !IsA(expr, FuncExpr))
		return false;
	args = ((FuncExpr *) expr)->args;
	return argno < list_length(args) && IsA(list_nth(args, argno), Const);
}

/*
 * True when a reader of a row passed as values still fits the call: same
 * row type, and the same column names (compared by content unless they are
 * a constant of the query, such as the planner's rewrite passes).
 */
static bool
args_reader_current(DrRowReader *r, FunctionCallInfo fcinfo, int typarg)
{
	struct varlena *a;
	struct varlena *b;

	if (PG_ARGISNULL(typarg) || PG_ARGISNULL(typarg + 1) ||
		PG_GETARG_OID(typarg) != r->typid)
		return false;
	if (r->names_const)
		return true;
	a = PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(typarg + 1));
	b = (struct varlena *) DatumGetPointer(r->names);
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/*
 * The reader for a row passed as arguments: argument typarg names the row
 * type (for messages), typarg + 1 is a text[] of column names, and the
 * arguments after it are those columns' values.  This is how the planner
 * hands deal_risk(d) the columns of a table without building the composite
 * value (see dr_deal_risk_support), and how training passes read only the
 * columns a model needs.  The columns' types are the arguments' own (fixed
 * for a call site), so a hand-written call cannot make the encoder misread
 * a value.  The names must be a constant or a parameter (not a value that
 * varies by row); as a parameter may change between calls of a PL/pgSQL
 * function, the row type and names are compared on every call (unless a
 * constant) and the reader rebuilt when they changed.
 */
DrRowReader *
dr_row_from_args(DrModel *model, FunctionCallInfo fcinfo, int typarg,
				 MemoryContext cxt, DrRowReader *prev)
{
	DrRowReader *r = prev;
	int			i;

	if (r != NULL && unlikely(!args_reader_current(r, fcinfo, typarg)))
	{
		MemoryContextDelete(r->mcxt);
		r = NULL;
	}
	if (r == NULL)
	{
		Oid			typid;
		ArrayType  *names;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		TupleDesc	desc;
		MemoryContext rcxt;
		MemoryContext oldcxt;

		if (PG_ARGISNULL(typarg) || PG_ARGISNULL(typarg + 1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("row type and column names must not be NULL")));
		/* (an aggregate's arguments appear as parameters: not checked) */
		if (!AggCheckCallContext(fcinfo, NULL) &&
			!get_fn_expr_arg_stable(fcinfo->flinfo, typarg + 1))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column names of a row passed as values must be a constant")));
		typid = PG_GETARG_OID(typarg);
		/* a row type OID passed by hand to _deal_risk_row may name nothing */
		if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(typid)))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("type with OID %u does not exist", typid),
					 errhint("Call dealrisk.deal_risk(row) and let the planner pass the row's columns.")));
		names = PG_GETARG_ARRAYTYPE_P(typarg + 1);
		if (ARR_NDIM(names) > 1 || ARR_ELEMTYPE(names) != TEXTOID)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("column names must be a one-dimensional text array")));
		deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
		if (n != PG_NARGS() - typarg - 2)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%d column names given for %d values", n, PG_NARGS() - typarg - 2)));
		rcxt = reader_context();
		oldcxt = MemoryContextSwitchTo(rcxt);
		desc = CreateTemplateTupleDesc(n);
		for (i = 0; i < n; i++)
		{
			Oid			t = get_fn_expr_argtype(fcinfo->flinfo, typarg + 2 + i);

			if (nulls[i] || !OidIsValid(t))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("column %d of a row passed as values has no name or no known type", i + 1)));
			TupleDescInitEntry(desc, i + 1, TextDatumGetCString(elems[i]), t, -1, 0);
		}
		MemoryContextSwitchTo(oldcxt);
		r = row_reader(model, desc, typid, rcxt);
		r->typmod = -1;
		r->names_const = arg_is_const(fcinfo->flinfo, typarg + 1);
		if (!r->names_const)
		{
			oldcxt = MemoryContextSwitchTo(rcxt);
			r->names = PointerGetDatum(PG_DETOAST_DATUM_COPY(PG_GETARG_DATUM(typarg + 1)));
			MemoryContextSwitchTo(oldcxt);
		}
		MemoryContextSetParent(rcxt, cxt);
	}
	for (i = 0; i < r->maxattno; i++)
	{
		r->values[i] = fcinfo->args[typarg + 2 + i].value;
		r->isnull[i] = fcinfo->args[typarg + 2 + i].isnull;
	}
	return r;
}

/*
 * How to name the row a reader holds in a message: its deal_id when the row
 * has one, else its row type.  Only for errors: it looks up an output
 * function.
 */
char *
dr_row_label(DrRowReader *r)
{
	if (r != NULL && r->id_attno > 0 && r->id_attno <= r->maxattno &&
		!r->isnull[r->id_attno - 1])
	{
		Oid			t = TupleDescAttr(r->tupdesc, r->id_attno - 1)->atttypid;
		Oid			outfn;
		bool		varlena;
		char	   *s;

		getTypeOutputInfo(t, &outfn, &varlena);
		s = OidOutputFunctionCall(outfn, r->values[r->id_attno - 1]);
		return psprintf("the deal with deal_id '%.200s'", s);
	}
	if (r != NULL && OidIsValid(r->typid))
		return psprintf("a row of type %s without a deal_id", format_type_be(r->typid));
	return pstrdup("a row without a deal_id");
}

/*
 * SQL: _model_columns(spec) -> the columns a row of this model is read
 * from: the contract columns the encoder looks for by name, then the
 * feature columns.  Training passes hand over only these (_row_args).
 */
PG_FUNCTION_INFO_V1(dr_model_columns);
PG_FUNCTION_INFO_V1(dr_feature_raw);
Datum
dr_model_columns(PG_FUNCTION_ARGS)
{
	DrModel    *m;
	Datum	   *names;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model specification must not be NULL")));
	m = dr_model_from_spec(PG_GETARG_DATUM(0), NULL, 0, NULL, CurrentMemoryContext);
	names = palloc(sizeof(Datum) * (DR_NUM_FIXED_COLUMNS + m->nextra));
	for (i = 0; i < DR_NUM_FIXED_COLUMNS; i++)
		names[i] = CStringGetTextDatum(fixed_names[i]);
	for (i = 0; i < m->nextra; i++)
		names[DR_NUM_FIXED_COLUMNS + i] = CStringGetTextDatum(m->extra_columns[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(names, DR_NUM_FIXED_COLUMNS + m->nextra, TEXTOID,
										  -1, false, TYPALIGN_INT));
}

/* Buffers for encoding rows of a model, allocated once per call site. */
DrEncoded *
dr_encoded_alloc(DrModel *model, MemoryContext cxt)
{
	DrEncoded  *e = MemoryContextAllocZero(cxt, sizeof(DrEncoded));
	int			n = model->nfeatures + 1;

	e->idx = MemoryContextAllocZero(cxt, sizeof(int) * (n + 1));
	e->val = MemoryContextAllocZero(cxt, sizeof(double) * (n + 1));
	e->raw = MemoryContextAllocZero(cxt, sizeof(double) * n);
	e->term = MemoryContextAllocZero(cxt, sizeof(double) * n);
	e->rawtext = MemoryContextAllocZero(cxt, sizeof(char *) * n);
	e->level = MemoryContextAllocZero(cxt, sizeof(int) * n);
	return e;
}

/*
 * A numeric as a double, read from its stored digits without a copy or a
 * text round trip.  The layout is numeric's on-disk format (a uint16 header,
 * short or long, then base-10000 int16 digits), which pg_upgrade keeps
 * stable.  Only cases that give the correctly rounded double, the same as
 * numeric::float8, are taken here: every digit summed exactly (< 2^53) and
 * scaled by an exact power of 10000.  Anything else (NaN, infinities, many
 * digits, large exponents) goes through PostgreSQL's own conversion.
 */
static double
numeric_datum_to_double(Datum d)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (!VARATT_IS_EXTENDED(v) || VARATT_IS_SHORT(v))
	{
		const unsigned char *p = (const unsigned char *) VARDATA_ANY(v);
		int			len = VARSIZE_ANY_EXHDR(v);
		uint16		h;
		int			weight,
					hdr,
					ndigits,
					i,
					e;
		bool		neg;
		double		acc = 0;

		if (len < 2)
			goto slow;
		memcpy(&h, p, 2);
		if ((h & 0xC000) == 0xC000)
			goto slow;			/* NaN, +-Infinity */
		if (h & 0x8000)
		{
			/* short format: sign, display scale, 7-bit signed weight */
			neg = (h & 0x2000) != 0;
			weight = (h & 0x0040) ? (int) (h | ~0x003F) : (int) (h & 0x003F);
			hdr = 2;
		}
		else
		{
			int16		w;

			if (len < 4)
				goto slow;
			neg = (h & 0xC000) == 0x4000;
			memcpy(&w, p + 2, 2);
			weight = w;
			hdr = 4;
		}
		ndigits = (len - hdr) / 2;
		if (ndigits == 0)
			return 0.0;
		if (ndigits > 4)
			goto slow;
		for (i = 0; i < ndigits; i++)
		{
			int16		dg;

			memcpy(&dg, p + hdr + 2 * i, 2);
			if (dg < 0 || dg >= 10000)
				goto slow;
			acc = acc * 10000 + dg;
		}
		if (acc >= 9007199254740992.0)
			goto slow;			/* not exact in a double any more */
		/* value = acc * 10000^(weight - ndigits + 1) */
		e = weight - ndigits + 1;
		if (e > 0 || e < -4)
			goto slow;
		{
			static const double pow10000[] = {1.0, 1e4, 1e8, 1e12, 1e16};

			acc = acc / pow10000[-e];
		}
		return neg ? -acc : acc;
	}
slow:
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, d));
}

/*
 * A number from a column of one of the numeric types; NaN (missing) when it
 * is not finite: NaN and +-Infinity count as missing, like NULL.
 */
static double
datum_to_double(Datum d, Oid t)
{
	double		v;

	switch (t)
	{
		case INT2OID:
			return (double) DatumGetInt16(d);
		case INT4OID:
			return (double) DatumGetInt32(d);
		case INT8OID:
			return (double) DatumGetInt64(d);
		case FLOAT4OID:
			v = (double) DatumGetFloat4(d);
			break;
		case FLOAT8OID:
			v = DatumGetFloat8(d);
			break;
		case NUMERICOID:
			v = numeric_datum_to_double(d);
			break;
		default:
			elog(ERROR, "unexpected numeric type %u", t);
			return 0;			/* keep compiler quiet */
	}
	return isfinite(v) ? v : NAN;
}

/* Index of (s, len) among sorted levels, or -1. */
static int
find_level(char **levels, int nlevels, const char *s, int len)
{
	int			lo = 0,
				hi = nlevels - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strncmp(levels[mid], s, len);

		if (c == 0 && levels[mid][len] != '\0')
			c = 1;
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * The text of an attribute as (pointer, length) without copying when it is
 * a text type; other types go through their output function.  false if NULL.
 */
static bool
attr_text(DrRowReader *r, int attno, Oid t, FmgrInfo *out,
		  const char **s, int *len)
{
	Datum		d = r->values[attno - 1];

	if (r->isnull[attno - 1])
		return false;
	if (t == BOOLOID)
	{
		/* as the training queries see it: boolean::text */
		*s = DatumGetBool(d) ? "true" : "false";
		*len = strlen(*s);
	}
	else if (t == TEXTOID || t == VARCHAROID || t == BPCHAROID)
	{
		text	   *tx = (text *) DatumGetPointer(d);

		/* pg_detoast_datum_packed's test, without a call for plain values */
		if (VARATT_IS_COMPRESSED(tx) || VARATT_IS_EXTERNAL(tx))
			tx = DatumGetTextPP(d);

		*s = VARDATA_ANY(tx);
		*len = VARSIZE_ANY_EXHDR(tx);
		if (t == BPCHAROID)
			while (*len > 0 && (*s)[*len - 1] == ' ')
				(*len)--;
	}
	else
	{
		*s = OutputFunctionCall(out, d);
		*len = strlen(*s);
	}
	return true;
}

/* A date attribute, or DR_NO_DATE when absent, NULL or infinite. */
static int32
attr_date(DrRowReader *r, int attno)
{
	DateADT		d;

	if (attno == 0 || r->isnull[attno - 1])
		return DR_NO_DATE;
	d = DatumGetDateADT(r->values[attno - 1]);
	if (DATE_NOT_FINITE(d))
		return DR_NO_DATE;
	return (int32) d;
}

/* Typical days in a stage (matched as dr_stage_equal says), or NaN when unknown. */
double
dr_typical_days(const DrFeature *f, const char *s, int len)
{
	int			i;

	for (i = 0; i < f->ntypical; i++)
		if (dr_stage_equal(f->typical_stage[i], strlen(f->typical_stage[i]), s, len))
			return f->typical_days[i];
	return NAN;
}

/*
 * The log-odds term of an open deal whose age (or stage time) is v, from the
 * feature's survivor curve: the term at the knots, linear between them, the
 * first knot's below the first and the last knot's past the last (beyond
 * the oldest closed deal there is no data to go further, and the term must
 * not rise: risk never falls with age).  *knot gets the last knot at or
 * below v, or -1 when v is below every knot.  v must be a number.
 */
double
dr_open_term(const DrFeature *f, double v, int *knot)
{
	int			lo = 0,
				hi = f->nknots - 1;

	if (v < f->knots[0])
	{
		*knot = -1;
		return f->open_terms[0];
	}
	if (v >= f->knots[hi])
	{
		*knot = hi;
		return f->open_terms[hi];
	}
	/* knots[lo] <= v < knots[hi] */
	while (hi - lo > 1)
	{
		int			mid = (lo + hi) / 2;

		if (f->knots[mid] <= v)
			lo = mid;
		else
			hi = mid;
	}
	*knot = lo;
	return f->open_terms[lo] + (f->open_terms[hi] - f->open_terms[lo]) *
		((v - f->knots[lo]) / (f->knots[hi] - f->knots[lo]));
}

/*
 * Encode the row loaded in r: out->idx/val get the non-zero model columns (the
 * intercept first), out->level the level or bin of each feature (-1 for the
 * baseline: NULL, unseen), out->raw the number a feature read.  With
 * leave_one_out the row's own outcome is taken out of rate features (so
 * training does not see its own label).  With out->closed_only, open deals
 * and deals closed outside [closed_from, closed_before) are only marked
 * skipped, their features not read.  With out->want_text, rawtext
 * gets a copy of each text input (in the current, per-row memory context).
 */
void
dr_encode_row(DrModel *model, DrRowReader *r, int32 as_of, bool leave_one_out,
			  DrEncoded *out)
{
	int32		created,
				closed,
				snapshot,
				end;
	bool		is_closed;
	int			i;
	int			nnz = 0;

	/* outcome: 1 won, 0 lost, -1 open or unreadable */
	out->outcome = -1;
	out->offset = 0;
	if (r->fixed_attno[DR_COL_OUTCOME])
	{
		const char *s;
		int			len;

		if (attr_text(r, r->fixed_attno[DR_COL_OUTCOME],
					  r->fixed_type[DR_COL_OUTCOME], NULL, &s, &len))
		{
			DrOutcome	o = dr_classify_outcome(s, len);

			if (o == DR_OUTCOME_WON)
				out->outcome = 1;
			else if (o == DR_OUTCOME_LOST)
				out->outcome = 0;
			else if (o == DR_OUTCOME_UNKNOWN)
				out->outcome = -2;
		}
	}
	created = attr_date(r, r->fixed_attno[DR_COL_CREATED]);
	closed = attr_date(r, r->fixed_attno[DR_COL_CLOSED]);
	out->closed_date = closed;
	is_closed = (out->outcome >= 0) ||
		(r->fixed_attno[DR_COL_OUTCOME] == 0 && closed != DR_NO_DATE);
	out->is_closed = is_closed;

	/*
	 * A training pass skips open deals and those outside its window (a
	 * deal without a close date is outside any bounded window; DR_NO_DATE
	 * sorts below every date).
	 */
	out->skipped = false;
	if (out->closed_only &&
		(out->outcome == -1 ||
		 (out->closed_from != DR_NO_DATE && closed < out->closed_from) ||
		 (out->closed_before != DR_NO_DATE &&
		  (closed == DR_NO_DATE || closed >= out->closed_before))))
	{
		out->skipped = true;
		out->nnz = 0;
		return;
	}
	/*
	 * The date the deal is seen at: a snapshot's own date (a row of a
	 * point-in-time training source, dealrisk_as_of: the deal as it stood
	 * then, its outcome the final one), else its close, else the as-of date.
	 */
	snapshot = attr_date(r, r->fixed_attno[DR_COL_AS_OF]);
	if (snapshot != DR_NO_DATE)
		end = snapshot;
	else
		end = (is_closed && closed != DR_NO_DATE) ? closed : as_of;

	out->idx[nnz] = 0;
	out->val[nnz++] = 1.0;

	for (i = 0; i < model->nfeatures; i++)
	{
		DrFeature  *f = &model->features[i];
		double		v = NAN;
		const char *s = NULL;
		int			len = 0;
		int			lvl = -1;
		bool		have_text = false;

		out->rawtext[i] = NULL;
		out->term[i] = NAN;
		/* read the input: text for categorical/rate, a number otherwise */
		if (f->derived == DR_DERIVED_NONE)
		{
			int			attno = r->extra_attno[f->colidx];
			Oid			t = r->extra_type[f->colidx];

			if (f->kind == DR_FEAT_CATEGORICAL || f->kind == DR_FEAT_RATE)
				have_text = attr_text(r, attno, t, &r->extra_out[f->colidx], &s, &len);
			else
			{
				Datum		d = r->values[attno - 1];

				if (!r->isnull[attno - 1])
					v = datum_to_double(d, t);
			}
		}
		else if (f->derived == DR_DERIVED_AGE_DAYS)
		{
			bool		got = false;

			/*
			 * a closed deal's cycle, unless missing (NULL, NaN, infinite); a
			 * snapshot's age at its date
			 */
			if (is_closed && snapshot == DR_NO_DATE && r->fixed_attno[DR_COL_CYCLE] &&
				!r->isnull[r->fixed_attno[DR_COL_CYCLE] - 1])
			{
				v = datum_to_double(r->values[r->fixed_attno[DR_COL_CYCLE] - 1],
									r->fixed_type[DR_COL_CYCLE]);
				got = !isnan(v);
			}
			if (!got && created != DR_NO_DATE)
				v = (double) end - (double) created;
		}
		else if (f->derived == DR_DERIVED_STAGE_RATIO)
		{
			const char *st;
			int			stlen;

			if (attr_text(r, r->fixed_attno[DR_COL_STAGE],
						  r->fixed_type[DR_COL_STAGE], NULL, &st, &stlen))
			{
				double		typ = dr_typical_days(f, st, stlen);
				int32		entered = attr_date(r, r->fixed_attno[DR_COL_STAGE_ENTERED]);

				if (entered == DR_NO_DATE)
					entered = created;
				if (!isnan(typ) && entered != DR_NO_DATE)
					v = ((double) end - (double) entered) / Max(typ, 1.0);
				s = st;
				len = stlen;
				have_text = true;
			}
		}
		else if (f->derived == DR_DERIVED_STAGE_DAYS)
		{
			int32		entered = attr_date(r, r->fixed_attno[DR_COL_STAGE_ENTERED]);

			if (entered == DR_NO_DATE)
				entered = created;
			if (entered != DR_NO_DATE)
				v = (double) end - (double) entered;
		}
		else if (f->derived == DR_DERIVED_ACTIVITY_GAP)
		{
			int32		last = attr_date(r, r->fixed_attno[DR_COL_LAST_ACTIVITY]);

			if (last != DR_NO_DATE)
				v = (double) end - (double) last;
		}

		out->raw[i] = v;
		if (have_text && out->want_text)
			out->rawtext[i] = pnstrdup(s, len);

		switch (f->kind)
		{
			case DR_FEAT_CATEGORICAL:
				if (have_text)
					lvl = dr_find_level(f, s, len);
				/* a rare level of the training data counts as "(other)" */
				if (lvl < 0 && have_text && f->other_index >= 0 &&
					find_level(f->pooled, f->npooled, s, len) >= 0)
					lvl = f->other_index;
				if (lvl >= 0)
				{
					out->idx[nnz] = f->offset + f->colpos[lvl];
					out->val[nnz++] = 1.0;
				}
				break;
			case DR_FEAT_BINS:
				if (!is_closed && f->open_terms != NULL)
				{
					/*
					 * An open deal's age (or stage time) is a lower bound of
					 * the cycle the bins were fitted on: it gets the survivor
					 * curve's term instead of a bin (docs/model.md); when it
					 * is unknown, the first knot's, which every closed deal
					 * shares.
					 */
					out->term[i] = isnan(v) ? f->open_terms[0] : dr_open_term(f, v, &lvl);
					out->offset += out->term[i];
				}
				else if (!isnan(v))
				{
					int			b = 0;

					while (b < f->nedges && v >= f->edges[b])
						b++;
					lvl = b;
					out->idx[nnz] = f->offset + b;
					out->val[nnz++] = 1.0;
				}
				break;
			case DR_FEAT_RATE:
				{
					double		won = 0,
								n = 0,
								rate;

					if (have_text)
						lvl = dr_find_level(f, s, len);
					if (lvl >= 0)
					{
						won = f->won[lvl];
						n = f->closed[lvl];
						if (leave_one_out && out->outcome >= 0 && n >= 1)
						{
							won -= out->outcome;
							n -= 1;
						}
					}
					rate = (won + f->strength * f->prior) / (n + f->strength);
					out->raw[i] = rate;
					out->idx[nnz] = f->offset;
					out->val[nnz++] = dr_standardise(f, rate);
				}
				break;
			case DR_FEAT_NUMERIC:
				if (!isnan(v))
				{
					lvl = 0;
					out->idx[nnz] = f->offset;
					out->val[nnz++] = dr_standardise(f, v);
				}
				break;
		}
		out->level[i] = lvl;
	}
	out->nnz = nnz;
}

/*
 * The value of each feature a tree model splits on, from an encoded row: a
 * category's rank (or level index), else the feature's number (NaN when
 * missing).  *absent is set to the features an open deal's survivor curve
 * stands in for (its age, its time in stage: only a lower bound of the
 * closed deals' value is known), or NULL when there are none.
 */
const double *
dr_tree_values(DrModel *m, DrEncoded *e, const bool **absent)
{
	bool		any = false;
	int			i;

	for (i = 0; i < m->nfeatures; i++)
	{
		DrFeature  *f = &m->features[i];
		int			lvl = e->level[i];

		if (f->kind == DR_FEAT_CATEGORICAL)
			m->tree_x[i] = lvl < 0 ? NAN : f->tree_rank != NULL ? f->tree_rank[lvl] : (double) lvl;
		else
			m->tree_x[i] = e->raw[i];
		m->tree_absent[i] = !isnan(e->term[i]);
		any |= m->tree_absent[i];
	}
	*absent = any ? m->tree_absent : NULL;
	return m->tree_x;
}

/* What a _feature_raw call site keeps: its spec and the model parsed from it. */
typedef struct RawCache
{
	MemoryContext cxt;
	Datum		spec;			/* a copy of the spec the model came from */
	DrModel    *model;
	DrRowReader *reader;
	DrEncoded  *enc;
	DrAsOf		as_of;
} RawCache;

/*
 * SQL: _feature_raw(spec jsonb, row_type regtype, columns text[], VARIADIC
 * values) -> float8: the number the encoder derives for the spec's first
 * feature from a row (a deal's age or cycle, its days or time in stage,
 * its activity gap), NULL when it is missing.  Training's SQL bins these
 * numbers by calling it, so that they are derived in one place, the
 * encoder, for training, scoring and explanations alike.
 */
Datum
dr_feature_raw(PG_FUNCTION_ARGS)
{
	RawCache   *rc = (RawCache *) fcinfo->flinfo->fn_extra;
	Datum		spec;
	double		v;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model specification must not be NULL")));
	spec = PG_GETARG_DATUM(0);
	if (rc == NULL || !datumIsEqual(spec, rc->spec, false, -1))
	{
		MemoryContext cxt;
		MemoryContext old;

		if (rc != NULL)
			MemoryContextDelete(rc->cxt);
		fcinfo->flinfo->fn_extra = NULL;
		cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "dealrisk feature values",
									ALLOCSET_SMALL_SIZES);
		old = MemoryContextSwitchTo(cxt);
		rc = palloc0(sizeof(RawCache));
		rc->cxt = cxt;
		rc->spec = PointerGetDatum(PG_DETOAST_DATUM_COPY(spec));
		MemoryContextSwitchTo(old);
		rc->model = dr_model_from_spec(rc->spec, NULL, 0, NULL, cxt);
		rc->enc = dr_encoded_alloc(rc->model, cxt);
		fcinfo->flinfo->fn_extra = rc;
	}
	rc->reader = dr_row_from_args(rc->model, fcinfo, 1, rc->cxt, rc->reader);
	dr_encode_row(rc->model, rc->reader, dr_as_of_cached(&rc->as_of), false, rc->enc);
	v = rc->enc->raw[0];
	if (isnan(v))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(v);
}
