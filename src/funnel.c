/*
 * funnel.c
 *	  Stage funnel and late-stage loss aggregates.
 *
 * deal_stage is taken as the last stage a deal reached, so a closed deal has
 * reached every stage up to and including its own.  Open deals are counted
 * where they stand but not in the conversions (their path is not finished).
 *
 * States:
 *	  stage_funnel:           int8[3 * stages] {won here, lost here, open here}
 *	                          per stage in position order ('{}' until first row)
 *	  late_stage_loss_ratio:  int8[2] {lost at a late stage, lost}
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "dealrisk.h"

PG_FUNCTION_INFO_V1(dr_funnel_accum);
PG_FUNCTION_INFO_V1(dr_funnel_final);
PG_FUNCTION_INFO_V1(dr_late_loss_accum);
PG_FUNCTION_INFO_V1(dr_late_loss_final);

/* A zeroed int8 array of n elements. */
static ArrayType *
zero_int8_array(int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * (Size) n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(0);
	return construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * Length of the stage_funnel state for a stage list: three counts per
 * stage, computed in int64 and checked against the largest array.
 */
static int
funnel_state_len(DrStageList *stages)
{
	int64		len = (int64) 3 * stages->count;

	if (stages->count < 1 || len > (int64) MaxArraySize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stage_funnel cannot count %d stages", stages->count),
				 errdetail("Its state holds three counts per stage, at most %d in all.", (int) MaxArraySize)));
	return (int) len;
}

/* True for the empty initial state '{}'. */
static inline bool
state_is_empty(ArrayType *a)
{
	return ARR_NDIM(a) == 0;
}

/* Count one deal at its stage: won, lost, or open (won IS NULL). */
Datum
dr_funnel_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	DrStageList *stages;
	int64	   *v;
	int			idx;

	dr_require_agg_context(fcinfo, "stage_funnel_accum");
	if (PG_ARGISNULL(0))
		dr_null_state_error("stage_funnel");
	state = PG_GETARG_ARRAYTYPE_P(0);
	if (PG_ARGISNULL(1))
		PG_RETURN_ARRAYTYPE_P(state);	/* no stage: nothing to count */

	stages = dr_stage_list(fcinfo);
	idx = dr_stage_index(stages, PG_GETARG_TEXT_PP(1));
	if (idx < 0)
		PG_RETURN_ARRAYTYPE_P(state);	/* blank stage: like NULL */
	if (state_is_empty(state))
		state = zero_int8_array(funnel_state_len(stages));
	v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, funnel_state_len(stages),
											  "stage_funnel"));
	if (PG_ARGISNULL(2))
		v[3 * idx + 2]++;
	else if (PG_GETARG_BOOL(2))
		v[3 * idx]++;
	else
		v[3 * idx + 1]++;
	PG_RETURN_ARRAYTYPE_P(state);
}

/* Append a ratio to a JSON object, or null when the denominator is zero. */
static void
append_ratio(StringInfo buf, const char *key, int64 num, int64 den)
{
	if (den > 0)
		appendStringInfo(buf, ", \"%s\": %.17g", key, (double) num / (double) den);
	else
		appendStringInfo(buf, ", \"%s\": null", key);
}

/*
 * The funnel as a jsonb array, one object per stage in position order:
 * stage, position, is_late, reached, won, lost, lost_here, open_here,
 * win_rate, conversion_to_next.  NULL when no deal was counted.
 */
Datum
dr_funnel_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	DrStageList *stages;
	int64	   *v,
			   *reached,
			   *won,
			   *lost;
	int			k,
				i;
	StringInfoData buf;

	if (state_is_empty(state))
		PG_RETURN_NULL();
	stages = dr_stage_list(fcinfo);
	k = stages->count;
	v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, funnel_state_len(stages),
											  "stage_funnel"));

	/* cumulative from the last stage down: a deal at stage j reached all i <= j */
	reached = palloc0(sizeof(int64) * ((Size) k + 1));
	won = palloc0(sizeof(int64) * ((Size) k + 1));
	lost = palloc0(sizeof(int64) * ((Size) k + 1));
	for (i = k - 1; i >= 0; i--)
	{
		if (v[3 * i] < 0 || v[3 * i + 1] < 0 || v[3 * i + 2] < 0 ||
			pg_add_s64_overflow(won[i + 1], v[3 * i], &won[i]) ||
			pg_add_s64_overflow(lost[i + 1], v[3 * i + 1], &lost[i]) ||
			pg_add_s64_overflow(won[i], lost[i], &reached[i]))
			dr_state_value_error("stage_funnel",
								 psprintf("Stage %d counts " INT64_FORMAT " won, " INT64_FORMAT " lost and " INT64_FORMAT " open deals.",
										  i + 1, v[3 * i], v[3 * i + 1], v[3 * i + 2]));
	}

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (i = 0; i < k; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, "{\"stage\": ");
		escape_json(&buf, stages->stages[i].name);
		appendStringInfo(&buf,
						 ", \"position\": %d, \"is_late\": %s, \"reached\": " INT64_FORMAT
						 ", \"won\": " INT64_FORMAT ", \"lost\": " INT64_FORMAT
						 ", \"lost_here\": " INT64_FORMAT ", \"open_here\": " INT64_FORMAT,
						 stages->stages[i].position,
						 stages->stages[i].is_late ? "true" : "false",
						 reached[i], won[i], lost[i], v[3 * i + 1], v[3 * i + 2]);
		append_ratio(&buf, "win_rate", won[i], reached[i]);
		if (i + 1 < k)
			append_ratio(&buf, "conversion_to_next", reached[i + 1], reached[i]);
		else
			appendStringInfoString(&buf, ", \"conversion_to_next\": null");
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Count a lost deal, and whether its last stage is a late one.  A lost deal
 * without a stage (NULL or blank) is left out of both counts: the ratio is
 * over the losses whose stage is known.
 */
Datum
dr_late_loss_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	DrStageList *stages;
	int64	   *v;
	int			idx;

	dr_require_agg_context(fcinfo, "late_stage_loss_accum");
	v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "late_stage_loss_ratio"));
	if (PG_GETARG_BOOL(2))
		PG_RETURN_ARRAYTYPE_P(state);	/* won: not a loss */
	stages = dr_stage_list(fcinfo);
	idx = dr_stage_index(stages, PG_GETARG_TEXT_PP(1));
	if (idx < 0)
		PG_RETURN_ARRAYTYPE_P(state);	/* blank stage: like NULL */
	if (stages->stages[idx].is_late)
		v[0]++;
	v[1]++;
	PG_RETURN_ARRAYTYPE_P(state);
}

/* Share of lost deals lost at a late stage; NULL with no lost deal. */
Datum
dr_late_loss_final(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	int64	   *v = (int64 *) ARR_DATA_PTR(dr_state_array(state, INT8OID, 2, "late_stage_loss_ratio"));

	if (v[0] < 0 || v[0] > v[1])
		dr_state_value_error("late_stage_loss_ratio",
							 psprintf("It counts " INT64_FORMAT " late losses of " INT64_FORMAT " losses.",
									  v[0], v[1]));
	if (v[1] <= 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8((double) v[0] / (double) v[1]);
}
