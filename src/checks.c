/*
 * checks.c
 *	  The row-level tests of the preflight (checks.sql, _source_profile),
 *	  computed in C: a million deals' rows through fifteen SQL CASE tests
 *	  cost seconds of expression evaluation, one call costs a fraction.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/numeric.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_quality_flags);

/* Whether a text datum equals a short ASCII word. */
static inline bool
text_is(text *t, const char *word)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	return len == (int) strlen(word) && memcmp(VARDATA_ANY(t), word, len) == 0;
}

/*
 * Whether _stage_key(stage) = key: the stage (already trimmed of white
 * space) with its ASCII letters in lower case equals the key byte for byte.
 */
static bool
stage_key_is(const char *stage, int len, text *key)
{
	const char *k = VARDATA_ANY(key);
	int			i;

	if (VARSIZE_ANY_EXHDR(key) != len)
		return false;
	for (i = 0; i < len; i++)
		if (pg_ascii_tolower((unsigned char) stage[i]) != (unsigned char) k[i])
			return false;
	return true;
}

/* Whether a numeric is below zero (NaN is not; -Infinity is). */
static inline bool
numeric_negative(Numeric n)
{
	return !numeric_is_nan(n) &&
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(n),
										  NumericGetDatum(int64_to_numeric(0)))) < 0;
}

/*
 * SQL: _quality_flags(id text, cr date, cl date, st text, amount numeric,
 * cyc numeric, cls text, both_dates boolean, inf_date boolean, stage_keys
 * text[]) -> int: the bits of data_quality()'s tests a row fails, as
 * _source_profile's CASE tests computed them (st is the stage trimmed of
 * white space, cls the outcome class, stage_keys the _stage_key of every
 * stage of dealrisk.stages); a NULL argument fails no test that needs it.
 *   1 no deal_id (NULL or only spaces)      4 closed before created
 *   8 won or lost without closed_date      16 open with a closed_date
 *  32 no amount                            64 amount NaN or infinite
 * 128 negative amount (not -Infinity)     256 unknown outcome label
 * 512 no stage                           1024 a stage not in dealrisk.stages
 * 2048 sales_cycle_days other than closed - created (both dates finite)
 * 4096 negative sales_cycle_days         8192 created in the future
 * 16384 an infinite date
 * (2, duplicate deal ids, is counted apart.)
 */
Datum
dr_quality_flags(PG_FUNCTION_ARGS)
{
	int32		f = 0;
	bool		has_cr = !PG_ARGISNULL(1),
				has_cl = !PG_ARGISNULL(2);
	DateADT		cr = has_cr ? PG_GETARG_DATEADT(1) : 0,
				cl = has_cl ? PG_GETARG_DATEADT(2) : 0;
	text	   *cls = PG_ARGISNULL(6) ? NULL : PG_GETARG_TEXT_PP(6);
	bool		won_or_lost = cls != NULL && (text_is(cls, "won") || text_is(cls, "lost"));
	bool		open = cls != NULL && text_is(cls, "open");

	if (PG_ARGISNULL(0))
		f |= 1;
	else
	{
		text	   *id = PG_GETARG_TEXT_PP(0);
		const char *s = VARDATA_ANY(id);
		int			len = VARSIZE_ANY_EXHDR(id),
					i;

		/* btrim(id) = '': btrim's default trims spaces only */
		for (i = 0; i < len && s[i] == ' '; i++)
			;
		if (i == len)
			f |= 1;
	}
	if (has_cr && has_cl && cl < cr)
		f |= 4;
	if (won_or_lost && !has_cl)
		f |= 8;
	if (open && has_cl)
		f |= 16;
	if (PG_ARGISNULL(4))
		f |= 32;
	else
	{
		Numeric		amount = PG_GETARG_NUMERIC(4);

		if (numeric_is_nan(amount) || numeric_is_inf(amount))
			f |= 64;
		if (numeric_negative(amount) && !numeric_is_inf(amount))
			f |= 128;
	}
	if (cls != NULL && text_is(cls, "unknown"))
		f |= 256;
	if (PG_ARGISNULL(3))
		f |= 512;
	else
	{
		text	   *st = PG_GETARG_TEXT_PP(3);
		int			len = VARSIZE_ANY_EXHDR(st);

		if (len == 0)
			f |= 512;
		else if (!PG_ARGISNULL(9))
		{
			ArrayType  *keys = PG_GETARG_ARRAYTYPE_P(9);
			Datum	   *elems;
			bool	   *nulls;
			int			n,
						k;
			bool		known = false,
						unknown_null = false;

			if (ARR_ELEMTYPE(keys) != TEXTOID)
				elog(ERROR, "stage keys must be text");
			deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
			for (k = 0; k < n && !known; k++)
			{
				if (nulls[k])
				{
					unknown_null = true;	/* x <> NULL is NULL: not counted */
					continue;
				}
				known = stage_key_is(VARDATA_ANY(st), len, DatumGetTextPP(elems[k]));
			}
			if (!known && !unknown_null)
				f |= 1024;
		}
	}
	if (!PG_ARGISNULL(5))
	{
		Numeric		cyc = PG_GETARG_NUMERIC(5);

		if (!PG_ARGISNULL(7) && PG_GETARG_BOOL(7) && has_cr && has_cl &&
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(cyc),
											  NumericGetDatum(int64_to_numeric((int64) cl - cr)))) != 0)
			f |= 2048;
		if (numeric_negative(cyc))
			f |= 4096;
	}
	if (has_cr && cr > GetSQLCurrentDate() && cr != DATEVAL_NOEND)
		f |= 8192;
	if (!PG_ARGISNULL(8) && PG_GETARG_BOOL(8))
		f |= 16384;
	PG_RETURN_INT32(f);
}
