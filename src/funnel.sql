-- funnel.sql: stage funnel and late-stage loss aggregates (src/funnel.c).

CREATE FUNCTION dealrisk._stage_funnel_accum(bigint[], text, boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_funnel_accum'
LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION dealrisk._stage_funnel_final(bigint[])
RETURNS jsonb AS 'MODULE_PATHNAME', 'dr_funnel_final'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._stage_funnel_accum(bigint[], text, boolean) IS 'stage_funnel transition (internal)';
COMMENT ON FUNCTION dealrisk._stage_funnel_final(bigint[]) IS 'stage_funnel final function (internal)';

CREATE AGGREGATE dealrisk.stage_funnel(stage text, won boolean) (
	SFUNC = dealrisk._stage_funnel_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._stage_funnel_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.stage_funnel(text, boolean) IS
	'Stage funnel as a jsonb array (stage, position, is_late, reached, won, lost, lost_here, open_here, win_rate, conversion_to_next); deal_stage is the last stage a deal reached; open deals (won NULL) only in open_here';

CREATE FUNCTION dealrisk._late_stage_loss_accum(bigint[], text, boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_late_loss_accum'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._late_stage_loss_final(bigint[])
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_late_loss_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._late_stage_loss_accum(bigint[], text, boolean) IS 'late_stage_loss_ratio transition (internal)';
COMMENT ON FUNCTION dealrisk._late_stage_loss_final(bigint[]) IS 'late_stage_loss_ratio final function (internal)';

CREATE AGGREGATE dealrisk.late_stage_loss_ratio(stage text, won boolean) (
	SFUNC = dealrisk._late_stage_loss_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._late_stage_loss_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.late_stage_loss_ratio(text, boolean) IS
	'Share of lost deals whose last stage is a late one (dealrisk.stages.is_late); NULL when no lost deal';
