/*
 * score.c
 *	  Scoring deal rows with the active model: deal_risk() and
 *	  deal_risk_explain().
 *
 * Per call site (fn_extra) we keep the model with the snapshot it was
 * checked under, the row readers of the last few row types and the
 * encoding buffers; a row then costs one pass over its features and no
 * catalog or table access (dealrisk.models is read again only when the
 * snapshot may see another model: see dr_model_lookup).
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "parser/parse_func.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "dealrisk.h"
#include "model.h"
#include "trees.h"

PG_FUNCTION_INFO_V1(dr_deal_risk);
PG_FUNCTION_INFO_V1(dr_deal_risk_row);
PG_FUNCTION_INFO_V1(dr_deal_risk_support);
PG_FUNCTION_INFO_V1(dr_row_arg_support);
PG_FUNCTION_INFO_V1(dr_deal_risk_explain);
PG_FUNCTION_INFO_V1(dr_deal_risk_contributions);
PG_FUNCTION_INFO_V1(dr_risk_band);
PG_FUNCTION_INFO_V1(dr_recommended_action);

extern double dr_band_medium;
extern double dr_band_high;
extern double dr_band_critical;

/*
 * What a scoring call site keeps: the model it scores with and the snapshot
 * that model was checked under, the model name it was asked for (compared
 * on every call: a call site inside a PL/pgSQL function lives for the
 * transaction and is called with other parameter values), the row readers
 * and encoding buffers built for that model, and the as-of date.
 */
typedef struct ScoreCache
{
	DrSnapKey	key;			/* model checked under this snapshot */
	uint64		serial;			/* which parse of the model (dr_model_lookup) */
	char	   *name;			/* the name asked for, in fn_mcxt */
	int			namelen;
	int			namesize;		/* bytes allocated for name */
	DrModel    *model;			/* NULL until checked */
	DrRowReader *reader;
	DrEncoded  *enc;
	MemoryContext cxt;			/* readers and buffers; reset with the model */
	DrAsOf		as_of;
} ScoreCache;

/* The model name argument (default 'default'), which must not be NULL. */
static void
model_name_arg(FunctionCallInfo fcinfo, int argno, const char **name, int *len)
{
	text	   *t;

	if (PG_NARGS() <= argno)
	{
		*name = "default";
		*len = 7;
		return;
	}
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model name must not be NULL")));
	t = PG_GETARG_TEXT_PP(argno);
	*name = VARDATA_ANY(t);
	*len = VARSIZE_ANY_EXHDR(t);
}

/*
 * Look the model of the name up again (see dr_model_lookup) and, when it is
 * not the one the call site built its readers and buffers for, drop them.
 */
static void
score_cache_check(ScoreCache *sc, FunctionCallInfo fcinfo, const char *name, int len)
{
	uint64		serial;
	DrModel    *m;

	sc->model = NULL;
	sc->key.valid = false;
	if (len + 1 > sc->namesize)
	{
		if (sc->name)
			pfree(sc->name);
		sc->namesize = Max(len + 1, 32);
		sc->name = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sc->namesize);
	}
	memcpy(sc->name, name, len);
	sc->name[len] = '\0';
	sc->namelen = len;
	m = dr_model_lookup(sc->name, &serial, &sc->key);
	if (serial != sc->serial || sc->enc == NULL)
	{
		MemoryContextReset(sc->cxt);
		sc->reader = NULL;
		sc->enc = NULL;
		sc->enc = dr_encoded_alloc(m, sc->cxt);
		sc->serial = serial;
	}
	sc->model = m;
}

/*
 * The call site's cache, with the active model of the name argument as
 * this snapshot sees it.  Per call this costs a comparison of the name and
 * of the snapshot (dr_snapshot_key_current); the table is read again only
 * when the snapshot may see another model.
 */
static ScoreCache *
score_cache_in(FunctionCallInfo fcinfo, int namearg, ScoreCache **slot)
{
	ScoreCache *sc = *slot;
	const char *name;
	int			len;

	model_name_arg(fcinfo, namearg, &name, &len);
	if (sc == NULL)
	{
		sc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ScoreCache));
		sc->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "dealrisk score cache",
										ALLOCSET_SMALL_SIZES);
		*slot = sc;
	}
	if (unlikely(sc->model == NULL || sc->namelen != len ||
				 memcmp(sc->name, name, len) != 0 ||
				 !dr_snapshot_key_current(&sc->key)))
		score_cache_check(sc, fcinfo, name, len);
	return sc;
}

/* The score cache of a function whose fn_extra holds nothing else. */
static inline ScoreCache *
score_cache(FunctionCallInfo fcinfo, int namearg)
{
	return score_cache_in(fcinfo, namearg, (ScoreCache **) &fcinfo->flinfo->fn_extra);
}

/* Error for a row whose log-odds overflowed: name the row and the model. */
static void
eta_out_of_range(ScoreCache *sc, double eta)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("deal risk of %s is out of range under model " INT64_FORMAT " (\"%s\")",
					dr_row_label(sc->reader), sc->model->id, sc->model->name),
			 errdetail("The model's log-odds for the row are %g.", eta),
			 errhint("Check the row's numeric columns and the model's coefficients for extreme values.")));
}

/*
 * Encode the row loaded in sc->reader and return the model's log-odds of
 * winning, which is finite (else an error naming the row): a risk is never
 * NaN.
 */
static double
loaded_row_eta(ScoreCache *sc)
{
	double		eta = 0;
	int			k;

	dr_encode_row(sc->model, sc->reader, dr_as_of_cached(&sc->as_of), false, sc->enc);
	if (sc->model->trees != NULL)
	{
		const bool *absent;
		const double *x = dr_tree_values(sc->model, sc->enc, &absent);

		/* an open deal: its age averaged out, and its survivor terms */
		eta = dr_trees_margin(sc->model->trees, x, absent) + sc->enc->offset;
	}
	else
	{
		for (k = 0; k < sc->enc->nnz; k++)
			eta += sc->model->beta[sc->enc->idx[k]] * sc->enc->val[k];
		eta += sc->enc->offset;		/* open deals' survivor terms */
	}
	if (unlikely(isnan(eta) || isinf(eta)))
		eta_out_of_range(sc, eta);
	return eta;
}

/* The model's log-odds of winning for a composite row. */
static double
row_eta(ScoreCache *sc, HeapTupleHeader rec)
{
	sc->reader = dr_row_from_tuple(sc->model, rec, sc->cxt, sc->reader);
	return loaded_row_eta(sc);
}

/* SQL: deal_risk(deal record [, model text]) -> probability of losing, 0-100. */
Datum
dr_deal_risk(PG_FUNCTION_ARGS)
{
	ScoreCache *sc;
	double		eta;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	sc = score_cache(fcinfo, 1);
	eta = row_eta(sc, PG_GETARG_HEAPTUPLEHEADER(0));
	PG_RETURN_FLOAT8(100.0 * (1.0 - dr_logistic(eta)));
}

/*
 * SQL: _deal_risk_row(model text, row_type regtype, columns text[],
 * VARIADIC "any") -> the same score as deal_risk, for a row passed as its
 * column values (see dr_row_from_args).  The planner turns deal_risk(d)
 * on a table into this call (dr_deal_risk_support), which spares building
 * and taking apart a composite value per row.
 */
Datum
dr_deal_risk_row(PG_FUNCTION_ARGS)
{
	ScoreCache *sc = score_cache(fcinfo, 0);

	sc->reader = dr_row_from_args(sc->model, fcinfo, 1, sc->cxt, sc->reader);
	PG_RETURN_FLOAT8(100.0 * (1.0 - dr_logistic(loaded_row_eta(sc))));
}

/* True when a query has an outer join, whose nulled rows a column list cannot tell. */
static bool
has_outer_join(Query *parse)
{
	ListCell   *lc;

	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = (RangeTblEntry *) lfirst(lc);

		if (rte->rtekind == RTE_JOIN && rte->jointype != JOIN_INNER)
			return true;
	}
	return false;
}

/*
 * The whole row of a view, flattened by the planner into ROW(col, ...) of
 * the view's row type, as a RowExpr that is printed with its type: Citus
 * sends a worker the text of the query it plans, and ROW(...) without the
 * cast would reach the worker as an anonymous record whose columns have no
 * names (f1, f2, ...), so that no model could find its columns in it.
 * NULL when expr is not such a row.
 */
static RowExpr *
typed_view_row(Node *expr)
{
	RowExpr    *row;

	if (expr == NULL || !IsA(expr, RowExpr))
		return NULL;
	row = (RowExpr *) expr;
	if (row->row_typeid == RECORDOID || row->row_format == COERCE_EXPLICIT_CAST)
		return NULL;
	row = copyObject(row);
	row->row_format = COERCE_EXPLICIT_CAST;
	return row;
}

/*
 * Planner support for the functions that take a deal's row (deal_risk's
 * fallback, deal_risk_explain, deal_risk_contributions, recommended_action):
 * a view's flattened row keeps its type in the query's text (typed_view_row).
 */
Datum
dr_row_arg_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	RowExpr    *row;
	FuncExpr   *call;

	if (!IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	dr_warn_node_settings(req->root);
	if (list_length(req->fcall->args) < 1 ||
		(row = typed_view_row(linitial(req->fcall->args))) == NULL)
		PG_RETURN_POINTER(NULL);
	call = copyObject(req->fcall);
	linitial(call->args) = row;
	PG_RETURN_POINTER(call);
}

/*
 * Planner support for deal_risk(d [, model]): when d is the whole row of a
 * table of the query (d.* or d), or the row of a view that the planner has
 * flattened into ROW(col, ...) of the view's type, call _deal_risk_row with
 * the columns instead, so the executor hands over the scanned values and no
 * composite value is built per row.  Every column is passed, so the plan
 * stays right whichever model is active when it runs.  Left alone: rows
 * that are not a plain table's or a view's, rows an outer join or grouping
 * sets can turn into NULL (a NULL row scores NULL, a row of NULLs does
 * not), and rows too wide for a function call (a view's row then keeps its
 * type, as in dr_row_arg_support).
 */
Datum
dr_deal_risk_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSimplify *req;
	FuncExpr   *call;
	Node	   *first;
	Var		   *var = NULL;
	RowExpr    *rowexpr = NULL;
	RowExpr    *typed;
	Oid			rowtype;
	Query	   *parse;
	TupleDesc	desc;
	List	   *args;
	List	   *vals = NIL;
	Datum	   *names;
	int			nnames = 0;
	Oid			argtypes[4] = {TEXTOID, REGTYPEOID, TEXTARRAYOID, ANYOID};
	Oid			fn;
	List	   *fname;
	FuncExpr   *result;
	int			i;

	if (!IsA(rawreq, SupportRequestSimplify))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSimplify *) rawreq;
	dr_warn_node_settings(req->root);
	call = req->fcall;
	if (list_length(call->args) < 1)
		PG_RETURN_POINTER(NULL);
	first = linitial(call->args);
	typed = typed_view_row(first);
	parse = req->root != NULL ? req->root->parse : NULL;
	if (parse == NULL || parse->groupingSets != NIL || has_outer_join(parse))
		goto fallback;
	if (IsA(first, Var))
	{
		RangeTblEntry *rte;

		var = (Var *) first;
		if (var->varattno != InvalidAttrNumber || var->varlevelsup != 0 ||
			var->varno < 1 || var->varno > list_length(parse->rtable))
			goto fallback;
		rte = rt_fetch(var->varno, parse->rtable);
		if (rte->rtekind != RTE_RELATION || var->vartype != get_rel_type_id(rte->relid))
			goto fallback;
		rowtype = var->vartype;
	}
	else if (IsA(first, RowExpr) && ((RowExpr *) first)->row_typeid != RECORDOID)
	{
		rowexpr = (RowExpr *) first;
		rowtype = rowexpr->row_typeid;
	}
	else
		goto fallback;

	fname = list_make2(makeString(get_namespace_name(get_func_namespace(call->funcid))),
					   makeString("_deal_risk_row"));
	fn = LookupFuncName(fname, 4, argtypes, true);
	if (!OidIsValid(fn))
		goto fallback;

	desc = lookup_rowtype_tupdesc(rowtype, -1);
	if (rowexpr != NULL && list_length(rowexpr->args) != desc->natts)
	{
		ReleaseTupleDesc(desc);
		goto fallback;
	}
	names = palloc(sizeof(Datum) * Max(1, desc->natts));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		names[nnames++] = CStringGetTextDatum(NameStr(att->attname));
		if (var != NULL)
			vals = lappend(vals, makeVar(var->varno, att->attnum, att->atttypid,
										 att->atttypmod, att->attcollation, 0));
		else
			vals = lappend(vals, list_nth(rowexpr->args, i));
	}
	ReleaseTupleDesc(desc);
	if (nnames + 3 > FUNC_MAX_ARGS)
		goto fallback;

	args = list_make1(list_length(call->args) > 1 ? lsecond(call->args) :
					  makeConst(TEXTOID, -1, DEFAULT_COLLATION_OID, -1,
								CStringGetTextDatum("default"), false, false));
	args = lappend(args, makeConst(REGTYPEOID, -1, InvalidOid, sizeof(Oid),
								   ObjectIdGetDatum(rowtype), false, true));
	args = lappend(args, makeConst(TEXTARRAYOID, -1, InvalidOid, -1,
								   PointerGetDatum(construct_array(names, nnames, TEXTOID,
																   -1, false, TYPALIGN_INT)),
								   false, false));
	args = list_concat(args, vals);
	result = makeFuncExpr(fn, FLOAT8OID, args, InvalidOid, InvalidOid,
						  COERCE_EXPLICIT_CALL);
	result->location = call->location;
	PG_RETURN_POINTER(result);

fallback:
	/* the call as it is, with a view's row typed (dr_row_arg_support) */
	if (typed == NULL)
		PG_RETURN_POINTER(NULL);
	call = copyObject(call);
	linitial(call->args) = typed;
	PG_RETURN_POINTER(call);
}

/* A readable label for a feature's column. */
static const char *
column_label(DrFeature *f)
{
	if (f->column == NULL)
		return f->name;
	if (strcmp(f->column, "industry") == 0)
		return "Industry";
	if (strcmp(f->column, "region") == 0)
		return "Region";
	if (strcmp(f->column, "lead_source") == 0)
		return "Lead source";
	if (strcmp(f->column, "product_type") == 0)
		return "Product";
	if (strcmp(f->column, "sales_rep_id") == 0)
		return "Rep";
	if (strcmp(f->column, "deal_stage") == 0)
		return "Stage";
	if (strcmp(f->column, "deal_amount") == 0)
		return "Deal amount";
	return f->column;
}

/*
 * A number for people: thousands separators and no spurious decimals (whole
 * numbers from 100 on, one decimal from 10, two from 1, two significant
 * digits below 1), e.g. 102,292 for 102292.4 and 2.5 for 2.5000.
 */
static char *
human_number(double x)
{
	char		buf[64];
	char		out[96];
	double		ax = fabs(x);
	int			decimals;
	int			len,
				intlen,
				i,
				o = 0;
	const char *p;

	if (isnan(x))
		return pstrdup("unknown");
	if (isinf(x))
		return pstrdup(x > 0 ? "infinity" : "-infinity");
	if (ax >= 1e15)
		return psprintf("%.3g", x);
	if (ax >= 100)
		decimals = 0;
	else if (ax >= 10)
		decimals = 1;
	else if (ax >= 1)
		decimals = 2;
	else if (ax > 0)
		decimals = Min(12, 1 - (int) floor(log10(ax)));
	else
		decimals = 0;
	snprintf(buf, sizeof(buf), "%.*f", decimals, ax);
	len = strlen(buf);
	if (decimals > 0)
	{
		while (buf[len - 1] == '0')
			buf[--len] = '\0';
		if (buf[len - 1] == '.')
			buf[--len] = '\0';
	}
	p = strchr(buf, '.');
	intlen = p ? (int) (p - buf) : len;
	/* a minus sign only when something non-zero is left after rounding */
	if (x < 0 && strspn(buf, "0.") != (size_t) len)
		out[o++] = '-';
	for (i = 0; i < intlen; i++)
	{
		if (i > 0 && (intlen - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = buf[i];
	}
	strcpy(out + o, buf + intlen);
	return pstrdup(out);
}

/* "1 day", "12 days", "1,234 days" */
static char *
days_text(double d)
{
	char	   *n = human_number(d);

	return psprintf("%s %s", n, strcmp(n, "1") == 0 ? "day" : "days");
}

/*
 * A share as a whole percentage, "38%"; the share is taken first, so that
 * counts near the largest double (an imported model's) give no "inf%".
 */
static char *
percent_text(double part, double whole)
{
	return psprintf("%.0f%%", whole > 0 ? 100.0 * (part / whole) : 0.0);
}

/* An ordinal of a percentile, "25th", "1st", "97.5th". */
static char *
percentile_text(double q)
{
	double		p = 100.0 * q;
	long		r = lround(p);
	const char *suffix = "th";

	if (fabs(p - r) > 1e-9)
		return psprintf("%sth", human_number(p));
	if (r % 100 < 11 || r % 100 > 13)
	{
		if (r % 10 == 1)
			suffix = "st";
		else if (r % 10 == 2)
			suffix = "nd";
		else if (r % 10 == 3)
			suffix = "rd";
	}
	return psprintf("%ld%s", r, suffix);
}

/*
 * Where bin b of a bins feature lies among the deals it was learned from:
 * "the top fifth", "the second quarter", "the bottom 10%", "between the
 * 50th and 75th percentiles" when the spec says which quantiles its edges
 * are; else only its rank, "the highest of 6 ranges".
 */
static char *
bin_position(DrFeature *f, int b)
{
	int			nb = f->nedges + 1;

	if (f->quantiles != NULL && f->nquantiles == f->nedges)
	{
		static const char *const parts[] = {NULL, NULL, "half", "third", "quarter", "fifth"};
		static const char *const ordinals[] = {"bottom", "second", "third", "fourth", "fifth",
		"sixth", "seventh", "eighth", "ninth"};
		bool		even = true;
		int			k;

		for (k = 0; k < f->nedges; k++)
			if (fabs(f->quantiles[k] - (double) (k + 1) / nb) > 1e-9)
				even = false;
		if (even && (nb <= 5 || nb == 10))
		{
			const char *part = nb == 10 ? "tenth" : parts[nb];

			if (b == 0)
				return psprintf("the bottom %s", part);
			if (b == nb - 1)
				return psprintf("the top %s", part);
			if (2 * b + 1 == nb)
				return psprintf("the middle %s", part);
			return psprintf("the %s %s", ordinals[b], part);
		}
		if (b == 0)
			return psprintf("the bottom %s%%", human_number(100.0 * f->quantiles[0]));
		if (b == f->nedges)
			return psprintf("the top %s%%", human_number(100.0 * (1.0 - f->quantiles[b - 1])));
		return psprintf("between the %s and %s percentiles", percentile_text(f->quantiles[b - 1]),
						percentile_text(f->quantiles[b]));
	}
	if (b == 0)
		return psprintf("the lowest of %d ranges", nb);
	if (b == f->nedges)
		return psprintf("the highest of %d ranges", nb);
	return psprintf("range %d of %d", b + 1, nb);
}

/* The values of bin b: "< 5,790", "5,790 to 10,251", "≥ 39,422" (with unit). */
static char *
bin_range(DrFeature *f, int b, const char *unit)
{
	if (b <= 0)
		return psprintf("< %s%s", human_number(f->edges[0]), unit);
	if (b >= f->nedges)
		return psprintf("≥ %s%s", human_number(f->edges[f->nedges - 1]), unit);
	return psprintf("%s to %s%s", human_number(f->edges[b - 1]), human_number(f->edges[b]), unit);
}

/* Typical days of a stage (at least 1, as the encoder divides), NaN when unknown. */
static double
stage_typical(DrFeature *f, const char *stage)
{
	double		typ = stage ? dr_typical_days(f, stage, strlen(stage)) : NAN;

	return isnan(typ) ? NAN : Max(typ, 1.0);
}

/*
 * Why an open deal's age (or stage time) counts as it does under the
 * feature's survivor curve: what the closed deals that lasted as long say,
 * or that the deal is older than every closed one.
 */
static char *
open_reason(DrFeature *f, DrEncoded *e, int i, double effect)
{
	double		v = e->raw[i];
	int			j = e->level[i];
	const char *dir = effect > 0 ? "less" : "more";
	bool		counts = f->open_closed != NULL && f->open_won != NULL &&
		f->open_closed[0] > 0;
	char	   *all = counts ? psprintf("%s of all %s", percent_text(f->open_won[0], f->open_closed[0]),
										human_number(f->open_closed[0])) : NULL;
	char	   *past = (counts && j > 0) ?
		psprintf("%s closed deals", human_number(f->open_closed[j])) : NULL;

	if (isnan(v))
		return psprintf("%s unknown (%s): scored like all closed deals%s",
						f->derived == DR_DERIVED_AGE_DAYS ? "Age" : "Time in stage",
						f->derived == DR_DERIVED_AGE_DAYS ? "no finite created_date" :
						"no stage, a stage without a typical time, or no finite dates",
						counts ? psprintf(" (%s won)", percent_text(f->open_won[0], f->open_closed[0])) : "");
	if (f->derived == DR_DERIVED_AGE_DAYS)
	{
		if (v < 0)
			return psprintf("Created %s after the as-of date: scored as a new deal",
							days_text(-v));
		if (v > f->longest)
			return psprintf("Open %s, older than every deal closed so far (longest %s)",
							days_text(v), days_text(f->longest));
		if (!counts)
			return psprintf("Open %s: deals still open this long win %s often", days_text(v), dir);
		if (j <= 0)
			return psprintf("Open %s, no longer than the quickest closed deals took: scored like all closed deals (%s won)",
							days_text(v), percent_text(f->open_won[0], f->open_closed[0]));
		return psprintf("Open %s; of the %s that took %s or more, %s were won (%s)",
						days_text(v), past, days_text(f->knots[j]),
						percent_text(f->open_won[j], f->open_closed[j]), all);
	}
	else
	{
		const char *stage = e->rawtext[i] ? e->rawtext[i] : "?";
		double		typ = stage_typical(f, e->rawtext[i]);
		char	   *in = isnan(typ) ? psprintf("In '%s' for %s times the stage's typical time",
											   stage, human_number(v))
			: psprintf("In '%s' for %s (typical %s)", stage, days_text(v * typ), human_number(typ));

		if (v > f->longest)
			return psprintf("%s, %s times the typical: longer than any closed deal stayed in its last stage (at most %s times)",
							in, human_number(v), human_number(f->longest));
		if (!counts)
			return psprintf("%s: deals that stay this long in a stage win %s often", in, dir);
		if (j <= 0)
			return psprintf("%s, no longer than the quickest closed deals stayed in their last stage: scored like all closed deals (%s won)",
							in, percent_text(f->open_won[0], f->open_closed[0]));
		return psprintf("%s; of the %s that stayed %s times the typical or longer in their last stage, %s were won (%s)",
						in, past, human_number(f->knots[j]),
						percent_text(f->open_won[j], f->open_closed[j]), all);
	}
}

/*
 * Plain-words reason for one feature of one deal; effect > 0 means the
 * feature raises the risk.
 */
static char *
reason_text(DrFeature *f, DrEncoded *e, int i, double effect, double prior_rate, bool trees)
{
	const char *lbl = column_label(f);
	const char *txt = e->rawtext[i];
	double		raw = e->raw[i];
	int			lvl = e->level[i];
	const char *dir = effect > 0 ? "less" : "more";
	/*
	 * A logistic term is the same for every deal with the value, so it says
	 * how deals like it fare; a tree model's contribution is this deal's
	 * own (it depends on the deal's other values): say only what it does.
	 */
	const char *does = effect > 0 ? "raises this deal's risk" : "lowers this deal's risk";
	const char *fares = trees ? does : (effect > 0 ? "wins less often" : "wins more often");
	/* a tree sends a missing value the way missing values went in training */
	const char *as_missing = trees ? "scored as missing values were in training" : "scored as average";

	switch (f->kind)
	{
		case DR_FEAT_CATEGORICAL:
			if (txt == NULL)
				return psprintf("%s is missing: %s", lbl, as_missing);
			if (lvl < 0)
				return psprintf("%s '%s' was not seen in training: %s", lbl, txt, as_missing);
			if (f->other_index == lvl)
				return trees ? psprintf("%s '%s' is rare, pooled with other rare values: it %s", lbl, txt, does)
					: psprintf("%s '%s' is rare: pooled with other rare values, which win %s often than average",
							   lbl, txt, dir);
			return trees ? psprintf("%s '%s' %s", lbl, txt, does)
				: psprintf("%s '%s' wins %s often than average", lbl, txt, dir);
		case DR_FEAT_RATE:
			if (txt == NULL)
				return psprintf("%s is missing: the overall rate %.0f%% stands in", lbl, 100 * prior_rate);
			if (lvl < 0 || f->closed[lvl] == 0)
				return psprintf("%s %s has no closed deals yet: the overall rate %.0f%% stands in (cold start)",
								lbl, txt, 100 * f->prior);
			if (f->month_end)
				return psprintf("%s %s: %.0f%% of its deals open at a month end went on to win (team %.0f%%, %s month-end snapshots)",
								lbl, txt, 100 * f->won[lvl] / f->closed[lvl], 100 * f->prior,
								human_number(f->closed[lvl]));
			return psprintf("%s %s wins %.0f%% of closed deals (team %.0f%%, %s closed)",
							lbl, txt, 100 * f->won[lvl] / f->closed[lvl], 100 * f->prior,
							human_number(f->closed[lvl]));
		case DR_FEAT_BINS:
			if (!isnan(e->term[i]))
				return open_reason(f, e, i, effect);
			if (isnan(raw))
			{
				if (f->derived == DR_DERIVED_ACTIVITY_GAP)
					return psprintf("No activity date logged: %s", as_missing);
				if (f->derived == DR_DERIVED_AGE_DAYS)
					return psprintf("Age unknown (no finite created_date, nor a cycle length for a closed deal): %s", as_missing);
				if (f->derived == DR_DERIVED_STAGE_RATIO)
					return psprintf("Time in stage unknown (no stage, a stage without a typical time, or no finite dates): %s", as_missing);
				return psprintf("%s unknown: %s", lbl, as_missing);
			}
			switch (f->derived)
			{
				case DR_DERIVED_STAGE_RATIO:
					{
						double		typ = stage_typical(f, txt);

						if (!isnan(typ))
							return psprintf("%s in '%s' for %s (typical %s)",
											raw >= 1.0 ? "Stuck" : "Only", txt ? txt : "?",
											days_text(raw * typ), human_number(typ));
						return psprintf("Time in stage is %s times the typical", human_number(raw));
					}
				case DR_DERIVED_ACTIVITY_GAP:
					if (effect > 0)
						return psprintf("No activity logged for %s — CRM may be stale", days_text(raw));
					return psprintf("Activity logged %s ago", days_text(raw));
				case DR_DERIVED_AGE_DAYS:
					if (e->is_closed)
						return psprintf("Closed after %s, in %s of cycles (%s), which %s",
										days_text(raw), bin_position(f, lvl),
										bin_range(f, lvl, " days"), fares);
					{
						/* the bins: of final cycles, or of open deals' ages */
						const char *of = f->month_end ? "of the ages of deals open at a month end" : "of closed cycles";

						return trees ? psprintf("%s since the deal was created (%s %s, %s), which %s",
												days_text(raw), bin_position(f, lvl), of,
												bin_range(f, lvl, " days"), does)
							: psprintf("%s since the deal was created (%s %s, %s: deals like this win %s often)",
									   days_text(raw), bin_position(f, lvl), of,
									   bin_range(f, lvl, " days"), dir);
					}
				case DR_DERIVED_STAGE_DAYS:
					return psprintf("In its stage for %s", days_text(raw));
				case DR_DERIVED_NONE:
					break;
			}
			return psprintf("%s %s is in %s (%s), which %s", lbl, human_number(raw),
							bin_position(f, lvl), bin_range(f, lvl, ""), fares);
		case DR_FEAT_NUMERIC:
			if (isnan(raw))
				return psprintf("%s is missing: %s", lbl, as_missing);
			return psprintf("%s %s (average %s) %s the chance to win", lbl, human_number(raw),
							human_number(f->mean), effect > 0 ? "lowers" : "raises");
	}
	return pstrdup("");
}

/*
 * Score a row and put in contrib[] each feature's contribution to its
 * log-odds of winning, and in *base what no feature accounts for (the
 * intercept, or the trees' expected margin): base plus the contributions
 * is the log-odds.  An open deal's age or stage time on a survivor curve
 * contributes the curve's term.  Returns the log-odds.
 */
static double
feature_contributions(ScoreCache *sc, HeapTupleHeader rec, double *contrib, double *base)
{
	DrModel    *m = sc->model;
	DrEncoded  *e = sc->enc;
	double		eta = row_eta(sc, rec);
	int			i,
				k;

	for (i = 0; i < m->nfeatures; i++)
		contrib[i] = 0;
	if (m->trees != NULL)
	{
		const bool *absent;
		const double *x = dr_tree_values(m, e, &absent);

		/* a tree model: each feature's TreeSHAP contribution */
		dr_trees_shap(m->trees, x, absent, m->tree_phi);
		for (i = 0; i < m->nfeatures; i++)
			contrib[i] = m->tree_phi[i];
		*base = m->tree_phi[m->nfeatures];
	}
	else
	{
		for (k = 1; k < e->nnz; k++)
			contrib[m->colfeat[e->idx[k]]] += m->beta[e->idx[k]] * e->val[k];
		*base = m->beta[0];
	}
	for (i = 0; i < m->nfeatures; i++)
		if (!isnan(e->term[i]))
			contrib[i] += e->term[i];
	return eta;
}

/*
 * Score a row and put in effects[] each feature's effect in risk points: the
 * risk minus the risk with that feature at its baseline (its contribution
 * zero; for an open deal's age or stage time on a survivor curve, the
 * curve's first knot, where the feature says nothing).  Returns the risk.
 */
static double
feature_effects(ScoreCache *sc, HeapTupleHeader rec, double *effects)
{
	DrModel    *m = sc->model;
	DrEncoded  *e = sc->enc;
	double		base;
	double		eta = feature_contributions(sc, rec, effects, &base);
	double		risk = 100.0 * (1.0 - dr_logistic(eta));
	int			i;

	for (i = 0; i < m->nfeatures; i++)
	{
		if (!isnan(e->term[i]))
			effects[i] -= m->features[i].open_terms[0];
		effects[i] = risk - 100.0 * (1.0 - dr_logistic(eta - effects[i]));
	}
	return risk;
}

/*
 * SQL: deal_risk_contributions(deal record [, model text]) -> rows (factor,
 * contribution): each feature's contribution to the deal's log-odds of
 * winning (TreeSHAP for a tree model), then "(base)"; they add up to the
 * log-odds, logit(1 - deal_risk / 100).
 */
Datum
dr_deal_risk_contributions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ScoreCache *sc;
	double	   *contrib;
	double		base;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	sc = score_cache(fcinfo, 1);
	contrib = palloc0(sizeof(double) * Max(sc->model->nfeatures, 1));
	(void) feature_contributions(sc, PG_GETARG_HEAPTUPLEHEADER(0), contrib, &base);
	for (i = 0; i < sc->model->nfeatures; i++)
	{
		values[0] = CStringGetTextDatum(sc->model->features[i].name);
		values[1] = Float8GetDatum(contrib[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	values[0] = CStringGetTextDatum("(base)");
	values[1] = Float8GetDatum(base);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * SQL: deal_risk_explain(deal record [, model text]) -> rows (factor, value,
 * effect, reason).  The effect of a feature is the deal's risk minus its
 * risk with that feature at its baseline (see feature_effects), in risk
 * points; sorted with the largest risk increase first.
 */
Datum
dr_deal_risk_explain(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ScoreCache *sc;
	DrModel    *m;
	DrEncoded  *e;
	double		risk;
	double	   *contrib;
	int			i,
				k;
	int		   *order;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	sc = score_cache(fcinfo, 1);
	m = sc->model;
	e = sc->enc;
	contrib = palloc0(sizeof(double) * m->nfeatures);
	e->want_text = true;
	risk = feature_effects(sc, PG_GETARG_HEAPTUPLEHEADER(0), contrib);
	e->want_text = false;
	(void) risk;
	order = palloc(sizeof(int) * m->nfeatures);
	for (i = 0; i < m->nfeatures; i++)
		order[i] = i;
	/* insertion sort by effect, descending (few features) */
	for (i = 1; i < m->nfeatures; i++)
	{
		int			x = order[i];

		k = i - 1;
		while (k >= 0 && contrib[order[k]] < contrib[x])
		{
			order[k + 1] = order[k];
			k--;
		}
		order[k + 1] = x;
	}

	for (k = 0; k < m->nfeatures; k++)
	{
		DrFeature  *f;
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		double		raw;

		i = order[k];
		f = &m->features[i];
		raw = e->raw[i];
		values[0] = CStringGetTextDatum(f->name);
		if (f->kind == DR_FEAT_CATEGORICAL || (f->kind == DR_FEAT_RATE && e->rawtext[i]))
		{
			if (e->rawtext[i])
				values[1] = CStringGetTextDatum(e->rawtext[i]);
			else
				nulls[1] = true;
		}
		else if (!isnan(raw))
			values[1] = CStringGetTextDatum(raw == rint(raw) && fabs(raw) < 1e15 ?
											psprintf("%.0f", raw) : psprintf("%g", raw));
		else
			nulls[1] = true;
		values[2] = Float8GetDatum(contrib[i]);
		/*
		 * A tree model's numeric feature has no average to compare with
		 * (an imported model's mean is a placeholder): say what it does.
		 */
		if (m->trees != NULL && f->kind == DR_FEAT_NUMERIC)
			values[3] = CStringGetTextDatum(isnan(raw)
											? psprintf("%s is missing", column_label(f))
											: psprintf("%s %s %s the chance to win", column_label(f),
													   human_number(raw), contrib[i] > 0 ? "lowers" : "raises"));
		else
			values[3] = CStringGetTextDatum(reason_text(f, e, i, contrib[i], f->prior, m->trees != NULL));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* SQL: risk_band(score) -> low / medium / high / critical at the band GUCs. */
Datum
dr_risk_band(PG_FUNCTION_ARGS)
{
	double		score = PG_GETARG_FLOAT8(0);
	const char *band;

	if (isnan(score))
		PG_RETURN_NULL();
	dr_check_risk_bands();
	if (score >= dr_band_critical)
		band = "critical";
	else if (score >= dr_band_high)
		band = "high";
	else if (score >= dr_band_medium)
		band = "medium";
	else
		band = "low";
	PG_RETURN_TEXT_P(cstring_to_text(band));
}

/* One row of dealrisk.action_rules. */
typedef struct ActionRule
{
	int32		priority;
	int32		id;
	char	   *factor;			/* feature name, or "*" */
	double		min_effect;
	double		min_risk;
	text	   *action;
} ActionRule;

/*
 * What recommended_action keeps per call site: the score cache and the rules,
 * read again when the snapshot may see other ones (as the model is).
 */
typedef struct ActionCache
{
	ScoreCache *sc;				/* the model and row reader of this call site */
	DrSnapKey	rules_key;		/* the rules were read under this snapshot */
	MemoryContext rules_cxt;	/* the rules; reset when read again */
	int			nrules;
	ActionRule *rules;
	double	   *effects;
	int			neffects;
} ActionCache;

/*
 * Read dealrisk.action_rules into ac (in ac->rules_cxt).  The columns are
 * cast to the types read here, so an altered table cannot be misread; a
 * rule with a NULL (the table forbids them) is left out.
 */
static void
load_rules(ActionCache *ac)
{
	uint64		i;
	int			n = 0;
	int			ret;
	MemoryContext old;
	DrSnapKey	key;
	char	   *edits;

	ac->nrules = 0;
	ac->rules_key.valid = false;
	MemoryContextReset(ac->rules_cxt);
	dr_snapshot_key_set(&key);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/*
	 * The view dealrisk.action_rules, or on a Citus node the same view
	 * spelt out over its tables' local placements (see dr_stage_list)
	 */
	edits = dr_config_placement("action_rule_edits");
	if (edits == NULL)
		ret = SPI_execute("SELECT r.priority::pg_catalog.int4, r.id::pg_catalog.int4,"
						  " r.factor::pg_catalog.text, r.min_effect::pg_catalog.float8,"
						  " r.min_risk::pg_catalog.float8, r.action::pg_catalog.text"
						  " FROM dealrisk.action_rules r",
						  true, 0);
	else
		ret = SPI_execute(psprintf("SELECT r.priority::pg_catalog.int4, r.id::pg_catalog.int4,"
								   " r.factor::pg_catalog.text, r.min_effect::pg_catalog.float8,"
								   " r.min_risk::pg_catalog.float8, r.action::pg_catalog.text FROM ("
								   "SELECT e.id, e.priority, e.factor, e.min_effect, e.min_risk, e.action"
								   " FROM %s e WHERE NOT e.removed UNION ALL"
								   " SELECT d.id, d.priority, d.factor, d.min_effect, d.min_risk, d.action"
								   " FROM %s d WHERE NOT EXISTS (SELECT 1 FROM %s e"
								   " WHERE e.id OPERATOR(pg_catalog.=) d.id)) r",
								   edits, dr_config_table("action_rule_defaults"), edits),
						  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading dealrisk.action_rules failed: %s", SPI_result_code_string(ret));
	old = MemoryContextSwitchTo(ac->rules_cxt);
	ac->rules = palloc0(sizeof(ActionRule) * Max(1, SPI_processed));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ActionRule *rule = &ac->rules[n];
		bool		nulls[6];
		Datum		d[6];
		int			c;
		bool		anynull = false;

		for (c = 0; c < 6; c++)
		{
			d[c] = SPI_getbinval(tup, desc, c + 1, &nulls[c]);
			anynull |= nulls[c];
		}
		if (anynull)
			continue;
		rule->priority = DatumGetInt32(d[0]);
		rule->id = DatumGetInt32(d[1]);
		rule->factor = TextDatumGetCString(d[2]);
		rule->min_effect = DatumGetFloat8(d[3]);
		rule->min_risk = DatumGetFloat8(d[4]);
		rule->action = DatumGetTextPCopy(d[5]);
		n++;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	ac->nrules = n;
	ac->rules_key = key;
}

/*
 * SQL: recommended_action(deal record [, model text]) -> text.  Among the
 * rules whose factor adds at least min_effect risk points to a deal whose
 * risk is at least min_risk, the one of the factor that adds the most risk;
 * "*" rules only when no factor rule applies; priority, then id, break ties.
 */
Datum
dr_recommended_action(PG_FUNCTION_ARGS)
{
	ActionCache *ac = (ActionCache *) fcinfo->flinfo->fn_extra;
	ScoreCache *sc;
	DrModel    *m;
	double		risk;
	ActionRule *best = NULL;
	double		best_effect = 0;
	int			r,
				i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (ac == NULL)
	{
		ac = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ActionCache));
		ac->rules_cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "dealrisk action rules",
											  ALLOCSET_SMALL_SIZES);
		fcinfo->flinfo->fn_extra = ac;
	}
	sc = score_cache_in(fcinfo, 1, &ac->sc);
	if (unlikely(!dr_snapshot_key_current(&ac->rules_key)))
		load_rules(ac);
	m = sc->model;
	if (ac->neffects < m->nfeatures)
	{
		ac->effects = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(double) * m->nfeatures);
		ac->neffects = m->nfeatures;
	}
	risk = feature_effects(sc, PG_GETARG_HEAPTUPLEHEADER(0), ac->effects);

	for (r = 0; r < ac->nrules; r++)
	{
		ActionRule *rule = &ac->rules[r];
		bool		any = (strcmp(rule->factor, "*") == 0);

		if (risk < rule->min_risk)
			continue;
		for (i = 0; i < m->nfeatures; i++)
		{
			double		eff = ac->effects[i];
			bool		better;

			if (!any && strcmp(rule->factor, m->features[i].name) != 0)
				continue;
			if (eff < rule->min_effect)
				continue;
			if (best == NULL)
				better = true;
			else
			{
				bool		best_any = (strcmp(best->factor, "*") == 0);

				if (best_any != any)
					better = best_any;	/* a factor rule beats a * rule */
				else if (eff != best_effect)
					better = eff > best_effect;
				else if (rule->priority != best->priority)
					better = rule->priority < best->priority;
				else
					better = rule->id < best->id;
			}
			if (better)
			{
				best = rule;
				best_effect = eff;
			}
		}
	}
	if (best == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(best->action);
}
