-- dealrisk install script, assembled by the Makefile from src/*.sql.
\echo Use "CREATE EXTENSION dealrisk" to load this file. \quit
-- stats.sql: statistical helpers (src/stats.c).

CREATE TYPE dealrisk.rate_interval AS (
	rate     float8,
	ci_low   float8,
	ci_high  float8,
	won      bigint,
	closed   bigint,
	level    float8
);
COMMENT ON TYPE dealrisk.rate_interval IS
	'A win rate with its Wilson score interval: rate, ci_low, ci_high, won, closed, confidence level';

CREATE FUNCTION dealrisk.wilson_interval(won bigint, closed bigint, level float8 DEFAULT 0.95,
	OUT ci_low float8, OUT ci_high float8)
RETURNS record
AS 'MODULE_PATHNAME', 'dr_sql_wilson_interval'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.wilson_interval(bigint, bigint, float8) IS
	'Wilson score interval for won successes out of closed trials at a confidence level (default 0.95); NULL when closed = 0';

CREATE FUNCTION dealrisk.two_proportion_p(won1 bigint, closed1 bigint, won2 bigint, closed2 bigint)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_two_proportion_p'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.two_proportion_p(bigint, bigint, bigint, bigint) IS
	'Two-sided p-value of the pooled two-proportion z-test of won1/closed1 against won2/closed2; NULL when a sample is empty';

CREATE FUNCTION dealrisk.welch_p(mean1 float8, sd1 float8, n1 bigint, mean2 float8, sd2 float8, n2 bigint)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_welch_p'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.welch_p(float8, float8, bigint, float8, float8, bigint) IS
	'Two-sided p-value of Welch''s t-test for two means given standard deviations and sizes; NULL when a sample has fewer than 2 rows';

CREATE FUNCTION dealrisk.normal_quantile(p float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_normal_quantile'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.normal_quantile(float8) IS
	'Inverse standard normal CDF: z such that P(Z <= z) = p, for 0 < p < 1';

CREATE FUNCTION dealrisk.hash_uniform(seed bigint, i bigint, stream int)
RETURNS float8
AS 'MODULE_PATHNAME', 'dr_sql_hash_uniform'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.hash_uniform(bigint, bigint, int) IS
	'Deterministic pseudo-random number in [0, 1) from (seed, row number, stream): same result in any scan order or worker';
-- outcome.sql: outcome labels and the stage table (src/outcome.c).

CREATE FUNCTION dealrisk.is_won(outcome text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dr_is_won'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.is_won(text) IS
	'true for a won label, false for a lost label, NULL for an open or empty outcome (labels from dealrisk.won_labels / lost_labels / open_labels, case-insensitive); an unknown label is an error';

CREATE FUNCTION dealrisk.outcome_class(outcome text)
RETURNS text
AS 'MODULE_PATHNAME', 'dr_outcome_class'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.outcome_class(text) IS
	'won, lost, open (also for an empty label) or unknown: like is_won but never raises an error';

-- Configuration tables (the stages here, the action rules in model.sql) are
-- views over two tables: the extension's defaults, which CREATE EXTENSION
-- fills and pg_dump leaves out, and the user's edits (added, changed and
-- removed rows), which start empty and pg_dump keeps whole.  A dump and
-- restore therefore gives back exactly what the user had: restoring the
-- edits never collides with the defaults a new CREATE EXTENSION inserts.
-- INSERT, UPDATE and DELETE on the views write the edits (_config_edit).

-- The INSTEAD OF trigger of a configuration view: TG_ARGV are the defaults
-- table, the edits table and the key column.  An edit that gives a default
-- row back its default values is dropped, so the edits stay minimal.
CREATE FUNCTION dealrisk._config_edit()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	defaults regclass := TG_ARGV[0]::regclass;
	edits regclass := TG_ARGV[1]::regclass;
	key text := TG_ARGV[2];
	view_name text := pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
	old_key text;
	new_key text;
	found_row boolean;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		old_key := pg_catalog.to_jsonb(OLD) ->> key;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		new_key := pg_catalog.to_jsonb(NEW) ->> key;
		IF new_key IS NULL THEN
			RAISE EXCEPTION 'null value in column "%" of %', key, view_name
				USING ERRCODE = 'not_null_violation';
		END IF;
		IF old_key IS DISTINCT FROM new_key THEN
			EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s v WHERE v.%I::text = $1)', view_name, key)
				INTO found_row USING new_key;
			IF found_row THEN
				RAISE EXCEPTION 'duplicate key value violates the key of %', view_name
					USING ERRCODE = 'unique_violation',
					      DETAIL = pg_catalog.format('Key (%s)=(%s) already exists.', key, new_key),
					      HINT = pg_catalog.format('Change that row with UPDATE %s instead.', view_name);
			END IF;
		END IF;
	END IF;
	IF old_key IS NOT NULL THEN
		-- the old row goes: its edit is dropped, and a default is marked removed
		EXECUTE pg_catalog.format('DELETE FROM %s e WHERE e.%I::text = $1', edits, key) USING old_key;
		IF old_key IS DISTINCT FROM new_key THEN
			EXECUTE pg_catalog.format(
				'INSERT INTO %s SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r'
				' WHERE EXISTS (SELECT 1 FROM %s d WHERE d.%I::text = $2)', edits, edits, defaults, key)
				USING pg_catalog.jsonb_build_object(key, old_key, 'removed', true), old_key;
		END IF;
	END IF;
	IF new_key IS NOT NULL THEN
		-- the new row replaces the mark of a removed default of its key, and
		-- is an edit unless it is that default as it was shipped
		EXECUTE pg_catalog.format('DELETE FROM %s e WHERE e.%I::text = $1', edits, key) USING new_key;
		EXECUTE pg_catalog.format(
			'INSERT INTO %s SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r'
			' WHERE NOT EXISTS (SELECT 1 FROM %s d WHERE pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.=) $1 - ''removed'')',
			edits, edits, defaults)
			USING pg_catalog.to_jsonb(NEW) || '{"removed": false}';
		RETURN NEW;
	END IF;
	RETURN OLD;
END
$$;
COMMENT ON FUNCTION dealrisk._config_edit() IS
	'INSTEAD OF trigger of the configuration views (stages, action_rules): records added, changed and removed rows in the edits table (internal)';

CREATE TABLE dealrisk.stage_defaults (
	stage    text PRIMARY KEY,
	position int NOT NULL,
	is_late  boolean NOT NULL
);
GRANT SELECT ON dealrisk.stage_defaults TO PUBLIC;
COMMENT ON TABLE dealrisk.stage_defaults IS
	'The stages dealrisk ships with (read dealrisk.stages, which applies your edits)';
INSERT INTO dealrisk.stage_defaults (stage, position, is_late) VALUES
	('Qualified', 1, false),
	('Demo', 2, false),
	('Proposal', 3, true),
	('Negotiation', 4, true),
	('Closed', 5, true);

CREATE TABLE dealrisk.stage_edits (
	stage    text PRIMARY KEY CHECK (pg_catalog.btrim(stage) <> ''),
	position int,
	is_late  boolean,
	removed  boolean NOT NULL DEFAULT false,
	CHECK (removed OR (position IS NOT NULL AND is_late IS NOT NULL))
);
COMMENT ON TABLE dealrisk.stage_edits IS
	'Your edits of dealrisk.stages: stages added or changed, and shipped stages removed (removed = true); kept by pg_dump. Edit dealrisk.stages, not this table.';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.stage_edits', '');

CREATE VIEW dealrisk.stages AS
	SELECT e.stage, e.position, e.is_late FROM dealrisk.stage_edits e WHERE NOT e.removed
	UNION ALL
	SELECT d.stage, d.position, d.is_late FROM dealrisk.stage_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stage_edits e WHERE e.stage OPERATOR(pg_catalog.=) d.stage);
ALTER VIEW dealrisk.stages ALTER COLUMN is_late SET DEFAULT false;
COMMENT ON VIEW dealrisk.stages IS
	'Pipeline stages in order (position) and whether each is a late stage; edit it (INSERT, UPDATE, DELETE) to match your CRM; positions are any integers (a stage before the first takes 0 or below) and are checked at the end of each statement, so stages can be renumbered in one UPDATE. deal_stage is matched without case. Your edits are kept in dealrisk.stage_edits and survive pg_dump/pg_restore.';
CREATE TRIGGER stages_edit INSTEAD OF INSERT OR UPDATE OR DELETE ON dealrisk.stages
	FOR EACH ROW EXECUTE FUNCTION dealrisk._config_edit('dealrisk.stage_defaults', 'dealrisk.stage_edits', 'stage');

-- After each statement that changes dealrisk.stages: no two stages share a
-- position.
CREATE FUNCTION dealrisk._stages_check()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pos int;
	names text;
BEGIN
	SELECT s.position, pg_catalog.string_agg(s.stage, ', ' ORDER BY s.stage) INTO pos, names
	FROM dealrisk.stages s GROUP BY s.position HAVING pg_catalog.count(*) > 1
	ORDER BY s.position LIMIT 1;
	IF pos IS NOT NULL THEN
		RAISE EXCEPTION 'stages % share position %', names, pos
			USING ERRCODE = 'unique_violation',
			      HINT = 'Each stage needs its own position; renumber several stages in one UPDATE.';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._stages_check() IS
	'Statement trigger of dealrisk.stages: no two stages share a position (internal)';
CREATE TRIGGER stages_check AFTER INSERT OR UPDATE OR DELETE ON dealrisk.stages
	FOR EACH STATEMENT EXECUTE FUNCTION dealrisk._stages_check();

CREATE FUNCTION dealrisk.stage_position(stage text)
RETURNS int
AS 'MODULE_PATHNAME', 'dr_stage_position'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.stage_position(text) IS
	'Position of a stage in dealrisk.stages (matched without case); an unknown stage is an error';
-- winrate.sql: win-rate aggregates (src/winrate.c).

CREATE FUNCTION dealrisk._win_rate_accum(bigint[], boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_winrate_accum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_inv(bigint[], boolean)
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_winrate_inv'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._int8_state_combine(bigint[], bigint[])
RETURNS bigint[] AS 'MODULE_PATHNAME', 'dr_int8_state_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_final(bigint[])
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_winrate_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_accum(bigint[], boolean) IS 'win_rate transition (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_inv(bigint[], boolean) IS 'win_rate moving-aggregate inverse (internal)';
COMMENT ON FUNCTION dealrisk._int8_state_combine(bigint[], bigint[]) IS 'merges count states of parallel partial aggregates (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_final(bigint[]) IS 'win_rate final function (internal)';

CREATE AGGREGATE dealrisk.win_rate(won boolean) (
	SFUNC = dealrisk._win_rate_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._win_rate_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{0,0}',
	MSFUNC = dealrisk._win_rate_accum,
	MINVFUNC = dealrisk._win_rate_inv,
	MSTYPE = bigint[],
	MFINALFUNC = dealrisk._win_rate_final,
	MINITCOND = '{0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate(boolean) IS
	'Share of closed deals that were won: true = won, false = lost, NULL (open) ignored; NULL when no closed deal. Supports moving windows.';

CREATE FUNCTION dealrisk._win_rate_ci_final(bigint[])
RETURNS dealrisk.rate_interval AS 'MODULE_PATHNAME', 'dr_winrate_ci_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_ci_final(bigint[]) IS 'win_rate_ci final function (internal)';

CREATE AGGREGATE dealrisk.win_rate_ci(won boolean) (
	SFUNC = dealrisk._win_rate_accum,
	STYPE = bigint[],
	FINALFUNC = dealrisk._win_rate_ci_final,
	COMBINEFUNC = dealrisk._int8_state_combine,
	INITCOND = '{0,0}',
	MSFUNC = dealrisk._win_rate_accum,
	MINVFUNC = dealrisk._win_rate_inv,
	MSTYPE = bigint[],
	MFINALFUNC = dealrisk._win_rate_ci_final,
	MINITCOND = '{0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate_ci(boolean) IS
	'Win rate with a 95% Wilson score interval and counts (dealrisk.rate_interval); NULL when no closed deal';

CREATE FUNCTION dealrisk._win_rate_ci_level_accum(float8[], boolean, float8)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_accum'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_ci_level_combine(float8[], float8[])
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_ci_level_final(float8[])
RETURNS dealrisk.rate_interval AS 'MODULE_PATHNAME', 'dr_winrate_ci_level_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_accum(float8[], boolean, float8) IS 'win_rate_ci(won, level) transition (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_combine(float8[], float8[]) IS 'win_rate_ci(won, level) combine (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_ci_level_final(float8[]) IS 'win_rate_ci(won, level) final function (internal)';

CREATE AGGREGATE dealrisk.win_rate_ci(won boolean, level float8) (
	SFUNC = dealrisk._win_rate_ci_level_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._win_rate_ci_level_final,
	COMBINEFUNC = dealrisk._win_rate_ci_level_combine,
	INITCOND = '{0,0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate_ci(boolean, float8) IS
	'Win rate with a Wilson score interval at the given confidence level (0 < level < 1, constant per group)';

CREATE FUNCTION dealrisk._win_rate_amount_accum(float8[], boolean, numeric)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_winrate_amount_accum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._float8_state_combine(float8[], float8[])
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_float8_state_combine'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION dealrisk._win_rate_amount_final(float8[])
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_winrate_amount_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._win_rate_amount_accum(float8[], boolean, numeric) IS 'value-weighted win_rate transition (internal)';
COMMENT ON FUNCTION dealrisk._float8_state_combine(float8[], float8[]) IS 'merges sum states of parallel partial aggregates (internal)';
COMMENT ON FUNCTION dealrisk._win_rate_amount_final(float8[]) IS 'value-weighted win_rate final function (internal)';

CREATE AGGREGATE dealrisk.win_rate(won boolean, amount numeric) (
	SFUNC = dealrisk._win_rate_amount_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._win_rate_amount_final,
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{0,0,0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk.win_rate(boolean, numeric) IS
	'Value-weighted win rate: won amount / closed amount; rows with NULL won or amount ignored; a negative or NaN amount is an error';
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
-- sample.sql: a deterministic sample-deal generator with planted effects.
-- docs/sample-data.md describes the data and every planted effect.

CREATE FUNCTION dealrisk._sample_deals_n(n bigint, seed bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF n IS NULL OR n < 1 THEN
		RAISE EXCEPTION 'number of sample deals must be at least 1, got %',
			coalesce(n::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF seed IS NULL THEN
		RAISE EXCEPTION 'seed of the sample deals must not be NULL'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk._sample_deals_n(bigint, bigint) IS
	'sample_deals argument check: returns n, or raises an error for n < 1 or a NULL argument (internal)';

-- The generator is one SQL SELECT over generate_series, so the planner
-- inlines it.  Each nesting level computes its columns once per row: OFFSET
-- NULL (no offset) keeps the levels from being flattened into one another,
-- which would repeat their expressions at every use.  (OFFSET 0 would do the
-- same but, being a cast to bigint until planning, makes PostgreSQL 15 treat
-- the levels as not parallel safe.)  Every random number is
-- hash_uniform(seed, i, stream) with its own stream, so a row depends only on
-- (seed, i): the same in any scan order or worker.  Streams: 1 created,
-- 2 industry, 3 region, 4 product, 5 lead source, 6 new-rep choice, 7 rep,
-- 8 quick-deal choice, 9 cycle, 10 amount, 11 stale, 12 activity gap,
-- 13 outcome, 14 lost stage; a new draw takes a new stream.
-- The body is SQL-standard (BEGIN ATOMIC): it is parsed when the extension
-- is created, so every name and operator in it is bound then, whatever the
-- caller's search_path.  That is what SET search_path gives the other
-- functions; a SET clause would also keep the planner from inlining the
-- generator, which makes it serial.  test/hostile.sql checks that every SQL
-- function without SET search_path has such a body.
CREATE FUNCTION dealrisk.sample_deals(n bigint DEFAULT 5000, seed bigint DEFAULT 42)
RETURNS TABLE (
	deal_id            text,
	created_date       date,
	closed_date        date,
	sales_rep_id       text,
	industry           text,
	region             text,
	product_type       text,
	lead_source        text,
	deal_stage         text,
	deal_amount        numeric,
	sales_cycle_days   int,
	outcome            text,
	last_activity_date date,
	stage_entered_date date,
	planted_win_prob   float8
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
SELECT
	'D' || lpad(s.i::text, s.id_width, '0'),
	s.created,
	CASE WHEN NOT s.is_open THEN s.created + s.cycle END,
	s.rep,
	s.industry,
	s.region,
	s.product,
	s.lead_source,
	(ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation', 'Closed'])[s.stage_pos],
	s.amount,
	CASE WHEN NOT s.is_open THEN s.cycle END,
	CASE WHEN s.is_open THEN NULL WHEN s.won THEN 'Won' ELSE 'Lost' END,
	s.created + s.span - s.gap,
	-- stages are evenly spaced over the cycle; a won deal enters Closed on
	-- its close date, a lost one stays in the stage it dropped out of
	CASE WHEN s.stage_pos = 5 THEN s.created + s.cycle
		ELSE s.created + (s.cycle * (s.stage_pos - 1)) / 4 END,
	s.win_prob
FROM (
	-- level 4: the outcome and the stage the deal is in (open) or ended in
	SELECT p.*,
		NOT p.is_open AND p.u_outcome < p.win_prob AS won,
		CASE
			WHEN p.is_open THEN 1 + (4 * p.span) / p.cycle
			WHEN p.u_outcome < p.win_prob THEN 5
			WHEN p.cycle > 90 THEN
				CASE WHEN p.u_stage < 0.45 THEN 1 WHEN p.u_stage < 0.80 THEN 2
					WHEN p.u_stage < 0.92 THEN 3 ELSE 4 END
			WHEN p.product = 'Enterprise' THEN
				CASE WHEN p.u_stage < 0.10 THEN 1 WHEN p.u_stage < 0.30 THEN 2
					WHEN p.u_stage < 0.65 THEN 3 ELSE 4 END
			ELSE
				CASE WHEN p.u_stage < 0.25 THEN 1 WHEN p.u_stage < 0.50 THEN 2
					WHEN p.u_stage < 0.75 THEN 3 ELSE 4 END
		END AS stage_pos
	FROM (
		-- level 3: the planted win probability
		SELECT e.*,
			1.0::float8 / (1.0::float8 + exp(-(0.45::float8
				- 1.6::float8 * (e.industry = 'FinTech' AND NOT e.is_open
						 AND e.created + e.cycle >= DATE '2024-10-01')::int
				- 0.8::float8 * (e.lead_source = 'Outbound')::int
				- 0.9::float8 * (e.cycle > 90)::int
				- 0.4::float8 * (e.cycle < 7)::int
				- 0.9::float8 * (e.rep = 'rep_7')::int
				+ 0.6::float8 * (e.rep = 'rep_3')::int
				- 1.0::float8 * (e.gap > 21)::int))) AS win_prob
		FROM (
			-- level 2: CRM activity: gap = days from the last activity to the
			-- close (or to the as-of date); more than 21 days is stale
			SELECT c.*,
				CASE WHEN c.span > 28 AND c.u_stale < 0.25
					THEN 22 + floor(c.u_gap * (least(c.span, 120) - 21))::int
					ELSE floor(c.u_gap * (least(c.span, 21) + 1))::int
				END AS gap
			FROM (
				-- open or closed as of 2024-12-31; span = days from creation
				-- to the close or to the as-of date
				SELECT r.*,
					r.created + r.cycle > DATE '2024-12-31' AS is_open,
					least(r.cycle, DATE '2024-12-31' - r.created) AS span
				FROM (
					-- level 1: attributes and the (latent) cycle length
					SELECT b.i, b.id_width, b.created,
						b.u_outcome, b.u_stage, b.u_stale, b.u_gap,
						CASE WHEN b.u_industry < 0.25 THEN 'SaaS'
							WHEN b.u_industry < 0.45 THEN 'FinTech'
							WHEN b.u_industry < 0.65 THEN 'HealthTech'
							WHEN b.u_industry < 0.80 THEN 'EdTech'
							ELSE 'Ecommerce' END AS industry,
						CASE WHEN b.u_region < 0.35 THEN 'North America'
							WHEN b.u_region < 0.60 THEN 'Europe'
							WHEN b.u_region < 0.80 THEN 'APAC'
							ELSE 'India' END AS region,
						CASE WHEN b.u_product < 0.50 THEN 'Core'
							WHEN b.u_product < 0.80 THEN 'Pro'
							ELSE 'Enterprise' END AS product,
						-- Outbound: 15% of the deals created before 2024-08-01,
						-- 45% after; the rest splits 40/30/30
						CASE WHEN b.u_source < CASE WHEN b.created >= DATE '2024-08-01'
								THEN 0.45 ELSE 0.15 END THEN 'Outbound'
							WHEN b.u_source < CASE WHEN b.created >= DATE '2024-08-01'
								THEN 0.67 ELSE 0.49 END THEN 'Inbound'
							WHEN b.u_source < CASE WHEN b.created >= DATE '2024-08-01'
								THEN 0.835 ELSE 0.745 END THEN 'Referral'
							ELSE 'Partner' END AS lead_source,
						-- rep_26..rep_28 join in Q4-2024 and take 15% of its deals
						CASE WHEN b.created >= DATE '2024-10-01' AND b.u_newrep < 0.15
							THEN 'rep_' || (26 + floor(b.u_rep * 3)::int)
							ELSE 'rep_' || (1 + floor(b.u_rep * 25)::int) END AS rep,
						greatest(1, round(exp(
							CASE WHEN b.u_product < 0.50 THEN ln(8000)
								WHEN b.u_product < 0.80 THEN ln(18000)
								ELSE ln(60000) END
							+ 0.8 * dealrisk.normal_quantile(0.5e-9 + b.u_amount * (1 - 1e-9)))))::numeric
							AS amount,
						-- 7% quick deals (1..10 days), else log-normal around 50 days;
						-- Pro x1.1, Enterprise x1.35; created from 2024-06-01 x1.25
						least(540, greatest(1, round(
							CASE WHEN b.u_quick < 0.07 THEN 1 + floor(b.u_cycle * 10)
								ELSE exp(ln(50) + 0.6 * dealrisk.normal_quantile(
									0.5e-9 + b.u_cycle * (1 - 1e-9)))
									* CASE WHEN b.u_product < 0.50 THEN 1.0::float8
										WHEN b.u_product < 0.80 THEN 1.1::float8 ELSE 1.35::float8 END
							END
							* CASE WHEN b.created >= DATE '2024-06-01' THEN 1.25::float8 ELSE 1.0::float8 END)))::int
							AS cycle
					FROM (
						-- level 0: the row number, its creation date and its draws
						SELECT g.i,
							greatest(7, length(sample_deals.n::text)) AS id_width,
							DATE '2023-01-01'
								+ floor(731 * dealrisk.hash_uniform(sample_deals.seed, g.i, 1))::int
								AS created,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 2) AS u_industry,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 3) AS u_region,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 4) AS u_product,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 5) AS u_source,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 6) AS u_newrep,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 7) AS u_rep,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 8) AS u_quick,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 9) AS u_cycle,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 10) AS u_amount,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 11) AS u_stale,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 12) AS u_gap,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 13) AS u_outcome,
							dealrisk.hash_uniform(sample_deals.seed, g.i, 14) AS u_stage
						FROM generate_series(1, dealrisk._sample_deals_n(sample_deals.n, sample_deals.seed)) AS g(i)
						OFFSET NULL
					) AS b
					OFFSET NULL
				) AS r
			) AS c
			OFFSET NULL
		) AS e
		OFFSET NULL
	) AS p
	OFFSET NULL
) AS s;
END;
COMMENT ON FUNCTION dealrisk.sample_deals(bigint, bigint) IS
	'n synthetic deals (2023-2024, as of 2024-12-31) in the data contract''s columns plus planted_win_prob, with planted effects (see docs/sample-data.md); the same (n, seed) always gives the same rows';
-- diagnostics.sql: set-returning diagnostics over a deal source and the
-- plain-English report (SQL and PL/pgSQL over the aggregates).
--
-- A deal source is any table or view in the layout of docs/data-contract.md,
-- passed as a regclass.  Its name is spliced into queries only as the
-- regclass's own text (quoted by PostgreSQL) and column names only through
-- format('%I'), so no name can inject SQL.  The functions that read the
-- source are PARALLEL RESTRICTED: the source may be a temporary table, which
-- a parallel worker cannot read.

-- Validation helpers ------------------------------------------------------

-- A source's name for messages, unquoted like PostgreSQL's own messages:
-- schema-qualified unless the relation is visible in the search path.
CREATE FUNCTION dealrisk._source_name(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT CASE WHEN pg_catalog.pg_table_is_visible(c.oid) THEN c.relname::text
					ELSE n.nspname || '.' || c.relname END
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = source::pg_catalog.oid);
COMMENT ON FUNCTION dealrisk._source_name(regclass) IS
	'The name of a relation for error messages, unquoted, schema-qualified unless visible (internal)';

-- Whether a relation has a column of that name (not dropped).
CREATE FUNCTION dealrisk._has_column(rel regclass, col text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = rel::pg_catalog.oid AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped);
COMMENT ON FUNCTION dealrisk._has_column(regclass, text) IS
	'Whether a relation has a column of that name (internal)';

-- Whether code of a role may run with the caller's privileges: the caller,
-- a member of the caller, a superuser, or a role in dealrisk.trusted_owners
-- (src/trust.c).
CREATE FUNCTION dealrisk._trusted_owner(role oid)
RETURNS boolean AS 'MODULE_PATHNAME', 'dr_trusted_owner'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trusted_owner(oid) IS
	'Whether code of a role may run with the current user''s privileges: the user, a member of the user, a superuser or a role of dealrisk.trusted_owners (internal)';

-- Whether reading a value of a type runs no code of a role less trusted
-- than the caller: the type (or, for a domain, its base type) belongs to a
-- superuser (the built-in types, and those of extensions a superuser
-- installed) or to a role _trusted_owner accepts.  A type's owner
-- can give it casts and operators, which run with the privileges of whoever
-- reads the column; casts are not found through the search_path, so
-- pinning it does not help.
CREATE FUNCTION dealrisk._trusted_type(typ oid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (WITH RECURSIVE base AS (
	        SELECT t.oid, t.typowner, t.typbasetype, 1 AS depth FROM pg_catalog.pg_type t WHERE t.oid = typ
	        UNION ALL
	        SELECT t.oid, t.typowner, t.typbasetype, b.depth + 1
	        FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.typbasetype
	        WHERE b.typbasetype <> 0 AND b.depth < 32)
        SELECT dealrisk._trusted_owner(b.typowner) FROM base b ORDER BY b.depth DESC LIMIT 1);
COMMENT ON FUNCTION dealrisk._trusted_type(oid) IS
	'Whether reading a value of a type runs no code of a role less trusted than the caller: the (base) type belongs to a superuser or to a member of the caller (internal)';

-- An error unless each named column of rel that exists has a trusted type.
CREATE FUNCTION dealrisk._check_column_types(rel regclass, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	col text;
	typ oid;
BEGIN
	SELECT a.attname, a.atttypid INTO col, typ
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = rel::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text = ANY (columns) AND NOT coalesce(dealrisk._trusted_type(a.atttypid), false)
	ORDER BY a.attnum LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of "%" has type %, which belongs to role "%"', col, dealrisk._source_name(rel),
			pg_catalog.format_type(typ, NULL), (SELECT pg_catalog.pg_get_userbyid(t.typowner) FROM pg_catalog.pg_type t WHERE t.oid = typ)
			USING ERRCODE = '42804',
			      DETAIL = pg_catalog.format('Reading a column of a type can run the casts and operators its owner gave it, with the privileges of role %s.', CURRENT_USER),
			      HINT = 'Use a column of a type that a superuser or you own (text, numeric, date, ...); a cast of another role''s type is that role''s code too. A superuser may trust the type''s owner with dealrisk.trusted_owners.';
	END IF;
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_column_types(regclass, text[]) IS
	'Raises an error naming the first of the given columns of a relation whose type is not built in (internal)';

-- Locks every relation reading a source involves (the source, its
-- inheritance children and partitions, the relations and functions of a
-- view, recursively) and raises an error for the first whose owner the
-- caller does not trust (src/trust.c).
CREATE FUNCTION dealrisk._check_relation_trust(source regclass)
RETURNS void AS 'MODULE_PATHNAME', 'dr_check_relation_trust'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION dealrisk._check_relation_trust(regclass) IS
	'Locks the relations a source reads and raises an error when one of them, or a function of a view among them, belongs to a role the caller does not trust (internal)';

-- An error unless reading source runs no code of a role the caller does
-- not trust (_check_relation_trust), and while schema dealrisk holds
-- functions that are not the extension's: whoever created them could run
-- code as every caller of the extension.
CREATE FUNCTION dealrisk._check_trust(source regclass)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	foreign_fn	text;
BEGIN
	SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid) INTO foreign_fn
	FROM pg_catalog.pg_proc p
	WHERE p.pronamespace = 'dealrisk'::regnamespace::pg_catalog.oid
	  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
	                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass::pg_catalog.oid AND d.objid = p.oid
	                    AND d.deptype = 'e');
	IF foreign_fn IS NOT NULL THEN
		RAISE EXCEPTION 'schema dealrisk holds functions that are not part of the extension: %', foreign_fn
			USING ERRCODE = '42501',
			      DETAIL = 'A function created in schema dealrisk can take the place of the extension''s own and run with the privileges of its callers.',
			      HINT = 'Drop them, and revoke CREATE on schema dealrisk from every role but its owner (docs/security.md).';
	END IF;
	PERFORM dealrisk._check_relation_trust(source);
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_trust(regclass) IS
	'Raises an error when reading a source could run code of a role the caller does not trust, or schema dealrisk holds functions that are not the extension''s (internal)';

-- What type a column of the contract needs, when its type is not one the
-- functions can read: 'a date' and 'a number' for the columns every reader
-- casts, 'text' for outcome and deal_stage, which the model reads as text
-- (the diagnostics cast them); NULL when the type is fine or the column is
-- not the contract's.  The one statement of these rules: _check_source()
-- raises on the first two, check_source() reports all three.
CREATE FUNCTION dealrisk._contract_type_problem(col text, typ regtype)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE
	WHEN col IN ('created_date', 'closed_date', 'last_activity_date', 'stage_entered_date')
		 AND typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) THEN 'a date'
	WHEN col IN ('deal_amount', 'sales_cycle_days')
		 AND typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
						 'numeric'::regtype, 'real'::regtype, 'double precision'::regtype) THEN 'a number'
	WHEN col IN ('outcome', 'deal_stage')
		 AND typ NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN 'text'
END;
COMMENT ON FUNCTION dealrisk._contract_type_problem(text, regtype) IS
	'The kind of type a contract column needs when its type cannot be read (a date, a number, or text for the model), else NULL (internal)';

CREATE FUNCTION dealrisk._check_source(source regclass, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	kind		"char";
	col			text;
	typ			regtype;
	need		text;
BEGIN
	IF source IS NULL THEN
		RAISE EXCEPTION 'source must not be NULL'
			USING ERRCODE = '22004',
				  HINT = 'Pass a table or view in the data contract''s layout, e.g. ''public.deals''.';
	END IF;
	SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', source::oid
			USING ERRCODE = '42P01';
	END IF;
	IF kind NOT IN ('r', 'p', 'v', 'm', 'f') THEN
		RAISE EXCEPTION 'source "%" is not a table or view', dealrisk._source_name(source)
			USING ERRCODE = '42809',
				  HINT = 'Pass a table, view, materialized view or foreign table.';
	END IF;
	PERFORM dealrisk._check_trust(source);
	-- every column of the contract the source has, and those asked for, is
	-- of a type that runs no less trusted role's code
	PERFORM dealrisk._check_column_types(source, coalesce(columns, '{}') ||
		ARRAY['deal_id', 'created_date', 'closed_date', 'sales_rep_id', 'industry', 'region', 'product_type',
		      'lead_source', 'deal_stage', 'deal_amount', 'sales_cycle_days', 'outcome', 'last_activity_date',
		      'stage_entered_date']);
	FOREACH col IN ARRAY coalesce(columns, '{}') LOOP
		SELECT a.atttypid::regtype INTO typ
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attname = col
			AND a.attnum > 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" is missing from source "%"', col, dealrisk._source_name(source)
				USING ERRCODE = '42703',
					  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
		END IF;
		-- Dates and numbers are cast in the queries: only castable types pass.
		need := dealrisk._contract_type_problem(col, typ);
		IF need IN ('a date', 'a number') THEN
			RAISE EXCEPTION 'column "%" of source "%" has type %, not %', col, dealrisk._source_name(source),
				pg_catalog.format_type(typ, NULL), CASE need WHEN 'a date' THEN 'date' ELSE need END
				USING ERRCODE = '42804',
					  HINT = pg_catalog.format('Cast it to %s in a view, see docs/data-contract.md.',
											   CASE need WHEN 'a date' THEN 'date' ELSE 'numeric' END);
		END IF;
	END LOOP;
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_source(regclass, text[]) IS
	'Raises an error unless source is a table or view with the given columns (date and number columns of a castable type) (internal)';

CREATE FUNCTION dealrisk._check_period(period text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := pg_catalog.lower(pg_catalog.btrim(period));
BEGIN
	IF p IN ('week', 'month', 'quarter', 'year') THEN
		RETURN p;
	END IF;
	IF period IS NULL THEN
		RAISE EXCEPTION 'period must not be NULL'
			USING ERRCODE = '22023', HINT = 'Use one of week, month, quarter, year.';
	END IF;
	RAISE EXCEPTION 'invalid period "%"', period
		USING ERRCODE = '22023', HINT = 'Use one of week, month, quarter, year.';
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_period(text) IS
	'The period name lower-cased (week, month, quarter or year); any other value is an error (internal)';

-- The columns named by a dimension string: names separated by commas, each
-- either plain (matched exactly, else in lower case like an unquoted SQL
-- identifier) or double-quoted (matched exactly, "" for a quote).
CREATE FUNCTION dealrisk._dimension_columns(source regclass, dimension text)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	parts		text[] := '{}';
	quoted		boolean[] := '{}';
	cols		text[] := '{}';
	cur			text := '';
	is_quoted	boolean := false;
	in_quote	boolean := false;
	after_quote boolean := false;
	c			text;
	i			int := 1;
	n			int;
	name		text;
	found_name	text;
	valid		text;
BEGIN
	IF dimension IS NULL OR pg_catalog.btrim(dimension) = '' THEN
		RAISE EXCEPTION 'dimension must name at least one column'
			USING ERRCODE = '22023',
				  HINT = 'Pass a column name, or several separated by commas, e.g. ''region,lead_source''.';
	END IF;
	n := pg_catalog.length(dimension);
	WHILE i <= n + 1 LOOP
		c := CASE WHEN i <= n THEN pg_catalog.substr(dimension, i, 1) END;
		IF in_quote THEN
			IF c IS NULL THEN
				RAISE EXCEPTION 'unterminated quoted column name in dimension "%"', dimension
					USING ERRCODE = '42601';
			ELSIF c = '"' AND pg_catalog.substr(dimension, i + 1, 1) = '"' THEN
				cur := cur || '"';
				i := i + 1;
			ELSIF c = '"' THEN
				in_quote := false;
				after_quote := true;
			ELSE
				cur := cur || c;
			END IF;
		ELSIF c IS NULL OR c = ',' THEN
			IF NOT is_quoted THEN
				cur := pg_catalog.btrim(cur);
			END IF;
			IF cur = '' THEN
				RAISE EXCEPTION 'empty column name in dimension "%"', dimension
					USING ERRCODE = '22023',
						  HINT = 'Separate column names with single commas, e.g. ''region,lead_source''.';
			END IF;
			parts := parts || cur;
			quoted := quoted || is_quoted;
			cur := '';
			is_quoted := false;
			after_quote := false;
		ELSIF after_quote THEN
			IF c !~ '^\s$' THEN
				RAISE EXCEPTION 'unexpected text after quoted column name in dimension "%"', dimension
					USING ERRCODE = '42601',
						  HINT = 'Separate column names with commas.';
			END IF;
		ELSIF c = '"' AND pg_catalog.btrim(cur) = '' THEN
			in_quote := true;
			is_quoted := true;
			cur := '';
		ELSE
			cur := cur || c;
		END IF;
		i := i + 1;
	END LOOP;

	FOR i IN 1 .. pg_catalog.array_length(parts, 1) LOOP
		name := parts[i];
		SELECT a.attname INTO found_name
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
			AND (a.attname = name OR (NOT quoted[i] AND a.attname = pg_catalog.lower(name)))
		ORDER BY a.attname = name DESC
		LIMIT 1;
		IF NOT FOUND THEN
			SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
				INTO valid
			FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
			RAISE EXCEPTION 'column "%" does not exist in source "%"', name, dealrisk._source_name(source)
				USING ERRCODE = '42703',
					  HINT = pg_catalog.format('Valid columns are: %s.', valid);
		END IF;
		IF found_name = ANY (cols) THEN
			RAISE EXCEPTION 'column "%" appears twice in dimension "%"', found_name, dimension
				USING ERRCODE = '22023';
		END IF;
		cols := cols || found_name;
	END LOOP;
	PERFORM dealrisk._check_column_types(source, cols);
	RETURN cols;
END
$fn$;
COMMENT ON FUNCTION dealrisk._dimension_columns(regclass, text) IS
	'Parses a comma-separated list of column names and checks each exists in source (internal)';

-- Default comparison windows: the last complete calendar quarter of the
-- closed deals (complete when the last closed_date is on or after its last
-- day) and the quarter before it.
CREATE FUNCTION dealrisk._default_windows(source regclass,
	OUT recent daterange, OUT baseline daterange, OUT last_closed date)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	q			date;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.max(d.closed_date::date)
		   FROM %s AS d
		   WHERE dealrisk.outcome_class(d.outcome::text) IN ('won', 'lost')
			 AND pg_catalog.isfinite(d.closed_date::date)$q$,
		source::text)
		INTO last_closed;
	IF last_closed IS NULL THEN
		RAISE EXCEPTION 'source "%" has no closed deal with a closed_date', dealrisk._source_name(source)
			USING ERRCODE = '22023',
				  HINT = 'Windows default to the last complete quarter of the closed deals.';
	END IF;
	q := (pg_catalog.date_trunc('quarter', (last_closed + 1)::timestamp) - interval '3 months')::date;
	recent := pg_catalog.daterange(q, (q + interval '3 months')::date);
	baseline := pg_catalog.daterange((q - interval '3 months')::date, q);
END
$fn$;
COMMENT ON FUNCTION dealrisk._default_windows(regclass) IS
	'The last complete calendar quarter of closed deals in source, the quarter before it, and the last closed_date (internal)';

-- Trends --------------------------------------------------------------------

-- A period is partial when it ends after the newest closed_date of the
-- closed deals the trend counts: the data cannot hold all of it (its last
-- day is after that date).  Only the last period can be partial.
CREATE FUNCTION dealrisk.win_rate_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n,
				   pg_catalog.count(*) FILTER (WHERE x.won) AS w,
				   pg_catalog.max(x.closed_date) AS last_cl
			FROM (SELECT d.closed_date::date AS closed_date,
						 dealrisk.is_won(d.outcome::text) AS won
				  FROM %s AS d) x
			WHERE x.won IS NOT NULL AND pg_catalog.isfinite(x.closed_date)
			GROUP BY 1
		), l AS (
			SELECT g.ps, g.n, g.w, g.w::float8 / g.n AS r,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.n) OVER o AS prev_n,
				   pg_catalog.lag(g.w) OVER o AS prev_w,
				   pg_catalog.max(g.last_cl) OVER () AS last_cl
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		)
		SELECT l.ps, l.n, l.w, l.r, ci.ci_low, ci.ci_high,
			   CASE WHEN l.adjacent THEN l.r - l.prev_w::float8 / l.prev_n END,
			   CASE WHEN l.adjacent THEN dealrisk.two_proportion_p(l.w, l.n, l.prev_w, l.prev_n) END,
			   (l.ps + $2)::date > l.last_cl + 1
		FROM l, LATERAL dealrisk.wilson_interval(l.w, l.n) ci
		ORDER BY l.ps$q$,
		source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_trend(regclass, text) IS
	'Win rate of closed deals per week, month, quarter or year of closed_date, with a 95% Wilson interval, the change from the previous period, the two-proportion p-value of that change, and is_partial for a period that ends after the newest closed_date';

-- The cycle is sales_cycle_days, else closed_date - created_date: a source
-- needs one of the two columns.  is_partial as in win_rate_trend.
CREATE FUNCTION dealrisk.cycle_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, median_days float8, p75_days float8,
			  mean_days float8, change_median float8, p_value float8, significant boolean,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
	has_days	boolean;
	has_created	boolean;
	cyc			text;
BEGIN
	has_days := coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false);
	has_created := coalesce(dealrisk._has_column(source, 'created_date'), false);
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']
		|| CASE WHEN has_days THEN ARRAY['sales_cycle_days'] ELSE '{}' END
		|| CASE WHEN has_created THEN ARRAY['created_date'] ELSE '{}' END);
	IF NOT has_days AND NOT has_created THEN
		RAISE EXCEPTION 'source "%" has neither a sales_cycle_days nor a created_date column', dealrisk._source_name(source)
			USING ERRCODE = '42703',
				  DETAIL = 'A sales cycle is sales_cycle_days, or closed_date - created_date.',
				  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
	END IF;
	cyc := CASE WHEN has_created
				THEN 'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN (d.closed_date::date - d.created_date::date)::float8 END'
				ELSE 'NULL::float8' END;
	IF has_days THEN
		cyc := pg_catalog.format('coalesce(d.sales_cycle_days::float8, %s)', cyc);
	END IF;
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH x AS (
			SELECT d.closed_date::date AS closed_date,
				   %s AS cyc
			FROM %s AS d
			WHERE dealrisk.is_won(d.outcome::text) IS NOT NULL
			  AND pg_catalog.isfinite(d.closed_date::date)
		), g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n_closed,
				   pg_catalog.count(x.cyc) AS n,
				   pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY x.cyc) AS med,
				   pg_catalog.percentile_cont(0.75) WITHIN GROUP (ORDER BY x.cyc) AS p75,
				   pg_catalog.avg(x.cyc) AS mean,
				   pg_catalog.stddev_samp(x.cyc) AS sd,
				   pg_catalog.max(x.closed_date) AS last_cl
			FROM x
			GROUP BY 1
		), l AS (
			SELECT g.*,
				   pg_catalog.max(g.last_cl) OVER () AS all_last_cl,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.med) OVER o AS prev_med,
				   pg_catalog.lag(g.mean) OVER o AS prev_mean,
				   pg_catalog.lag(g.sd) OVER o AS prev_sd,
				   pg_catalog.lag(g.n) OVER o AS prev_n
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		), t AS (
			SELECT l.*,
				   CASE WHEN l.adjacent
						THEN dealrisk.welch_p(l.mean, l.sd, l.n, l.prev_mean, l.prev_sd, l.prev_n)
				   END AS pv
			FROM l
		)
		SELECT t.ps, t.n_closed, t.med, t.p75, t.mean,
			   CASE WHEN t.adjacent THEN t.med - t.prev_med END,
			   t.pv, t.pv < 0.05, (t.ps + $2)::date > t.all_last_cl + 1
		FROM t
		ORDER BY t.ps$q$,
		cyc, source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk.cycle_trend(regclass, text) IS
	'Sales cycle length (sales_cycle_days, else closed_date - created_date; a source needs one of them) of closed deals per week, month, quarter or year of closed_date: median, 75th percentile, mean, change of the median from the previous period, Welch''s t-test p-value of the change of the mean, and is_partial for a period that ends after the newest closed_date';

-- Multiple testing ----------------------------------------------------------

-- Benjamini-Hochberg adjusted p-values (q-values) of a family of tests, in
-- the order given.  With the non-NULL p-values sorted, p(1) <= ... <= p(m),
-- q(i) = min over j >= i of p(j) m / j (at most p(m) <= 1): rejecting every
-- test with q < alpha keeps the expected share of false discoveries among
-- the rejections at most alpha (for independent or positively dependent
-- tests).
-- A NULL p-value is a test that was not made: it stays NULL and does not
-- count in m.
CREATE FUNCTION dealrisk.bh_adjust(p_values float8[])
RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	bad			float8;
	bad_at		bigint;
	q			float8[];
BEGIN
	IF pg_catalog.array_ndims(p_values) > 1 THEN
		RAISE EXCEPTION 'p_values must be a one-dimensional array, not % dimensions', pg_catalog.array_ndims(p_values)
			USING ERRCODE = '22023';
	END IF;
	SELECT u.p, u.o INTO bad, bad_at
	FROM pg_catalog.unnest(p_values) WITH ORDINALITY AS u(p, o)
	WHERE u.p IS NOT NULL AND NOT (u.p >= 0 AND u.p <= 1)	-- NaN compares above 1
	ORDER BY u.o LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'p-value % (element %) is not between 0 and 1', bad, bad_at
			USING ERRCODE = '22023',
				  HINT = 'Pass p-values of tests, or NULL for a test that was not made.';
	END IF;
	-- m / i >= 1 is rounded to a float >= 1, so q >= p holds exactly.
	WITH u AS (
		SELECT u.p, u.o FROM pg_catalog.unnest(p_values) WITH ORDINALITY AS u(p, o)
	), r AS (
		SELECT u.o, u.p,
			   pg_catalog.row_number() OVER (ORDER BY u.p, u.o) AS i,
			   pg_catalog.count(*) OVER () AS m
		FROM u WHERE u.p IS NOT NULL
	), a AS (
		SELECT r.o,
			   pg_catalog.min(r.p * (r.m::float8 / r.i))
				   OVER (ORDER BY r.i DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS q
		FROM r
	)
	SELECT coalesce(pg_catalog.array_agg(a.q ORDER BY u.o), '{}')
		INTO q
	FROM u LEFT JOIN a ON a.o = u.o;
	RETURN q;
END
$fn$;
COMMENT ON FUNCTION dealrisk.bh_adjust(float8[]) IS
	'Benjamini-Hochberg adjusted p-values (q-values) of a family of p-values, in the same order; NULL p-values are tests not made: they stay NULL and do not count in the family size';

-- Drivers -------------------------------------------------------------------

CREATE FUNCTION dealrisk.win_rate_drivers(source regclass, dimension text,
	recent daterange DEFAULT NULL, baseline daterange DEFAULT NULL)
RETURNS TABLE(segment text, baseline_closed bigint, baseline_win_rate float8,
			  baseline_share float8, recent_closed bigint, recent_win_rate float8,
			  recent_share float8, rate_effect float8, mix_effect float8,
			  contribution float8, p_value float8, q_value float8, significant boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	cols		text[];
	label		text;
	win			record;
	segs		text[];
	b_n			bigint[];
	b_w			bigint[];
	r_n			bigint[];
	r_w			bigint[];
	n0			bigint;
	w0			bigint;
	n1			bigint;
	rate0		float8;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	cols := dealrisk._dimension_columns(source, dimension);

	IF pg_catalog.isempty(recent) THEN
		RAISE EXCEPTION 'recent window is empty'
			USING ERRCODE = '22023',
				  DETAIL = 'A daterange whose lower and upper bounds are equal holds no date.',
				  HINT = 'Pass a daterange with lower < upper, e.g. ''[2024-04-01,2024-07-01)''.';
	END IF;
	IF pg_catalog.isempty(baseline) THEN
		RAISE EXCEPTION 'baseline window is empty'
			USING ERRCODE = '22023',
				  DETAIL = 'A daterange whose lower and upper bounds are equal holds no date.',
				  HINT = 'Pass a daterange with lower < upper, e.g. ''[2024-01-01,2024-04-01)''.';
	END IF;
	IF recent IS NULL THEN
		SELECT * INTO win FROM dealrisk._default_windows(source);
		recent := win.recent;
		baseline := coalesce(baseline, win.baseline);
	ELSIF baseline IS NULL THEN
		IF pg_catalog.lower_inf(recent) OR pg_catalog.upper_inf(recent) THEN
			RAISE EXCEPTION 'cannot derive a baseline window from the unbounded recent window %', recent
				USING ERRCODE = '22023',
					  HINT = 'Pass a bounded recent window, or pass baseline too.';
		END IF;
		-- the window of the same length just before recent
		baseline := pg_catalog.daterange(
			pg_catalog.lower(recent) - (pg_catalog.upper(recent) - pg_catalog.lower(recent)),
			pg_catalog.lower(recent));
	END IF;
	IF recent && baseline THEN
		RAISE EXCEPTION 'recent window % overlaps baseline window %', recent, baseline
			USING ERRCODE = '22023',
				  HINT = 'The windows are compared as independent samples: make them disjoint.';
	END IF;

	SELECT pg_catalog.string_agg(
			pg_catalog.format('coalesce(d.%I::text, %L)', c, '(missing)'), ', ' ORDER BY o)
		INTO label
	FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u(c, o);

	EXECUTE pg_catalog.format(
		$q$SELECT coalesce(pg_catalog.array_agg(g.seg ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.b_n ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.b_w ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.r_n ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.r_w ORDER BY g.seg), '{}')
		   FROM (SELECT x.seg,
						pg_catalog.count(*) FILTER (WHERE NOT x.in_recent) AS b_n,
						pg_catalog.count(*) FILTER (WHERE NOT x.in_recent AND x.won) AS b_w,
						pg_catalog.count(*) FILTER (WHERE x.in_recent) AS r_n,
						pg_catalog.count(*) FILTER (WHERE x.in_recent AND x.won) AS r_w
				 FROM (SELECT pg_catalog.concat_ws(' / ', %s) AS seg,
							  d.closed_date::date <@ $1 AS in_recent,
							  dealrisk.is_won(d.outcome::text) AS won
					   FROM %s AS d
					   WHERE d.closed_date::date <@ $1 OR d.closed_date::date <@ $2) x
				 WHERE x.won IS NOT NULL
				 GROUP BY x.seg) g$q$,
		label, source::text)
		INTO segs, b_n, b_w, r_n, r_w
		USING recent, baseline;

	SELECT coalesce(pg_catalog.sum(u.bn), 0), coalesce(pg_catalog.sum(u.bw), 0),
		   coalesce(pg_catalog.sum(u.rn), 0)
		INTO n0, w0, n1
	FROM ROWS FROM (pg_catalog.unnest(b_n), pg_catalog.unnest(b_w), pg_catalog.unnest(r_n))
		AS u(bn, bw, rn);
	IF n1 = 0 THEN
		RAISE EXCEPTION 'recent window % has no closed deals in source "%"', recent, dealrisk._source_name(source)
			USING ERRCODE = '22023',
				  HINT = 'Pass a recent window (a daterange over closed_date) that holds closed deals.';
	END IF;
	IF n0 = 0 THEN
		RAISE EXCEPTION 'baseline window % has no closed deals in source "%"', baseline, dealrisk._source_name(source)
			USING ERRCODE = '22023',
				  HINT = 'Pass a baseline window (a daterange over closed_date) that holds closed deals.';
	END IF;
	rate0 := w0::float8 / n0;

	-- rate_effect = s1 (r1 - r0), mix_effect = (s1 - s0) (r0 - R0); a segment
	-- missing from the baseline takes r0 = R0, one missing from the recent
	-- window has s1 = 0.  Summed over segments: R1 - R0.  The segments are
	-- tested together, so significance is judged on the Benjamini-Hochberg
	-- q-values over the segments of this call (those with a p-value).
	RETURN QUERY
	WITH k AS (
		SELECT u.seg, u.bn, u.bw, u.rn, u.rw,
			   u.bn::float8 / n0 AS s0,
			   u.rn::float8 / n1 AS s1,
			   CASE WHEN u.bn > 0 THEN u.bw::float8 / u.bn END AS r0,
			   CASE WHEN u.rn > 0 THEN u.rw::float8 / u.rn END AS r1
		FROM ROWS FROM (pg_catalog.unnest(segs), pg_catalog.unnest(b_n), pg_catalog.unnest(b_w),
						pg_catalog.unnest(r_n), pg_catalog.unnest(r_w)) AS u(seg, bn, bw, rn, rw)
	), e AS (
		SELECT k.*,
			   CASE WHEN k.rn > 0 THEN k.s1 * (k.r1 - coalesce(k.r0, rate0)) ELSE 0 END AS re,
			   (k.s1 - k.s0) * (coalesce(k.r0, rate0) - rate0) AS me,
			   dealrisk.two_proportion_p(k.rw, k.rn, k.bw, k.bn) AS pv,
			   pg_catalog.row_number() OVER (ORDER BY k.seg)::int AS j
		FROM k
	), f AS (
		SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(e.pv ORDER BY e.j), '{}')) AS qs FROM e
	)
	SELECT e.seg, e.bn, e.r0, e.s0, e.rn, e.r1, e.s1, e.re, e.me, e.re + e.me,
		   e.pv, f.qs[e.j], f.qs[e.j] < 0.05
	FROM e, f
	ORDER BY e.re + e.me, e.seg;
END
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_drivers(regclass, text, daterange, daterange) IS
	'Decomposes the change of the win rate between a baseline and a recent window of closed_date into per-segment rate and mix effects (summing to the overall change), with a two-proportion p-value per segment, its Benjamini-Hochberg q-value over the segments of the call, and significant = q < 0.05; dimension names one or more columns separated by commas; windows default to the last complete quarter and the one before';

-- Funnel --------------------------------------------------------------------

CREATE FUNCTION dealrisk.funnel(source regclass, since date DEFAULT NULL)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	why			text;
BEGIN
	-- created_date only filters (since)
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']
		|| CASE WHEN since IS NOT NULL THEN ARRAY['created_date'] ELSE '{}' END);
	-- the funnel assumes deal_stage holds the stage each closed deal
	-- reached: when the won deals say otherwise, every row says so
	why := dealrisk._stage_semantics(source);
	IF why IS NOT NULL THEN
		RAISE WARNING 'the funnel of % cannot be read from deal_stage', dealrisk._source_name(source)
			USING DETAIL = why || '.', HINT = dealrisk._stage_semantics_hint();
		why := 'not a funnel: ' || why;
	END IF;
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$SELECT f.stage, f."position", f.is_late, f.reached, f.won, f.lost_here,
				  f.open_here, f.conversion_to_next,
				  f.reached::float8
					/ NULLIF(pg_catalog.first_value(f.reached) OVER (ORDER BY f."position"), 0),
				  f.win_rate, $2
		   FROM (SELECT dealrisk.stage_funnel(
						NULLIF(pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013'), ''),
						dealrisk.is_won(d.outcome::text)) AS j
				 FROM %s AS d
				 %s) s,
				pg_catalog.jsonb_to_recordset(s.j)
					AS f(stage text, "position" int, is_late boolean, reached bigint,
						 won bigint, lost_here bigint, open_here bigint,
						 conversion_to_next float8, win_rate float8)
		   ORDER BY f."position"$q$,
		source::text, CASE WHEN since IS NOT NULL THEN 'WHERE d.created_date::date >= $1' ELSE '' END)
		USING since, why;
END
$fn$;
COMMENT ON FUNCTION dealrisk.funnel(regclass, date) IS
	'The stage funnel of the deals created on or after since (all deals when NULL), one row per stage of dealrisk.stages: closed deals that reached the stage, won from there, lost there, open there, conversion to the next stage, cumulative conversion from the first stage and win rate from the stage; caveat is NULL when deal_stage can be read as the stage each closed deal reached, else why the numbers are not a funnel (with a WARNING)';

-- Data quality --------------------------------------------------------------

CREATE FUNCTION dealrisk.data_quality(source regclass)
RETURNS TABLE(check_name text, description text, "rows" bigint, example_deal_id text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 15
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	n			bigint[];
	ex			text[];
	stage_names text[];
	dates		text;
	absent		text[];
	dup_rows	bigint;
	dup_example text;
	skipped		int[] := '{}';
	expr		text[];
BEGIN
	-- deal_id and outcome are needed; a check on any other column the
	-- source lacks is not run (its rows are NULL)
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	SELECT pg_catalog.array_agg(c) INTO absent
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
	WHERE NOT dealrisk._has_column(source, c);
	absent := coalesce(absent, '{}');
	PERFORM dealrisk._check_source(source,
		ARRAY(SELECT c FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
		      WHERE NOT c = ANY (absent)));
	SELECT pg_catalog.array_agg(CASE WHEN c = ANY (absent) THEN 'NULL::' || t ELSE pg_catalog.format('d.%I::%s', c, t) END ORDER BY o)
		INTO expr
	FROM ROWS FROM (pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']),
	                pg_catalog.unnest(ARRAY['date', 'date', 'text', 'numeric', 'numeric'])) WITH ORDINALITY u(c, t, o);
	-- the checks (numbered as in the list at the end) each absent column
	-- rules out
	IF 'created_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 12, 14]; END IF;
	IF 'closed_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 4, 5, 12]; END IF;
	IF 'deal_stage' = ANY (absent) THEN skipped := skipped || ARRAY[10, 11]; END IF;
	IF 'deal_amount' = ANY (absent) THEN skipped := skipped || ARRAY[6, 7, 8]; END IF;
	IF 'sales_cycle_days' = ANY (absent) THEN skipped := skipped || ARRAY[12, 13]; END IF;
	SELECT coalesce(pg_catalog.array_agg(pg_catalog.lower(s.stage)), '{}')
		INTO stage_names
	FROM dealrisk.stages s;
	-- an infinite date in any date column of the contract the source has
	SELECT pg_catalog.string_agg(pg_catalog.format('NOT pg_catalog.isfinite(d.%I::date)', c), ' OR ')
		INTO dates
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'stage_entered_date', 'last_activity_date']) c
	WHERE dealrisk._has_column(source, c);
	-- Every test below is written so that no value can make it raise.
	EXECUTE pg_catalog.format(
		$q$WITH x AS (
			SELECT d.deal_id::text AS id,
				   %s AS cr,
				   %s AS cl,
				   %s AS stage,
				   %s AS amount,
				   %s AS cyc,
				   coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls,
				   %s AS dups,
				   coalesce(%s, false) AS inf_date
			FROM %s AS d
		), c AS (
			SELECT x.*,
				   pg_catalog.btrim(x.stage, E' \t\n\r\f\013') AS st,
				   x.cr IS NOT NULL AND x.cl IS NOT NULL
					 AND pg_catalog.isfinite(x.cr) AND pg_catalog.isfinite(x.cl) AS both_dates
			FROM x
		), t AS (
			SELECT
				c.id IS NULL OR pg_catalog.btrim(c.id) = '' AS t1,
				c.id IS NOT NULL AND c.dups > 1 AS t2,
				c.cl < c.cr AS t3,
				c.cls IN ('won', 'lost') AND c.cl IS NULL AS t4,
				c.cls = 'open' AND c.cl IS NOT NULL AS t5,
				c.amount IS NULL AS t6,
				c.amount IS NOT NULL
				  AND (c.amount = 'NaN'::numeric OR c.amount = 'Infinity'::numeric
					   OR c.amount = '-Infinity'::numeric) AS t7,
				c.amount < 0 AND c.amount <> '-Infinity'::numeric AS t8,
				c.cls = 'unknown' AS t9,
				c.st IS NULL OR c.st = '' AS t10,
				c.st <> '' AND pg_catalog.lower(c.st) <> ALL ($1) AS t11,
				c.both_dates AND c.cyc IS NOT NULL AND c.cyc <> (c.cl - c.cr) AS t12,
				c.cyc < 0 AS t13,
				c.cr > CURRENT_DATE AND c.cr <> 'infinity'::date AS t14,
				c.inf_date AS t15,
				c.id
			FROM c
			OFFSET 0	-- evaluate each test once, not once per aggregate
		)
		SELECT ARRAY[pg_catalog.count(*) FILTER (WHERE t.t1),
					 pg_catalog.count(*) FILTER (WHERE t.t2),
					 pg_catalog.count(*) FILTER (WHERE t.t3),
					 pg_catalog.count(*) FILTER (WHERE t.t4),
					 pg_catalog.count(*) FILTER (WHERE t.t5),
					 pg_catalog.count(*) FILTER (WHERE t.t6),
					 pg_catalog.count(*) FILTER (WHERE t.t7),
					 pg_catalog.count(*) FILTER (WHERE t.t8),
					 pg_catalog.count(*) FILTER (WHERE t.t9),
					 pg_catalog.count(*) FILTER (WHERE t.t10),
					 pg_catalog.count(*) FILTER (WHERE t.t11),
					 pg_catalog.count(*) FILTER (WHERE t.t12),
					 pg_catalog.count(*) FILTER (WHERE t.t13),
					 pg_catalog.count(*) FILTER (WHERE t.t14),
					 pg_catalog.count(*) FILTER (WHERE t.t15)],
			   ARRAY[NULL,
					 pg_catalog.min(t.id) FILTER (WHERE t.t2),
					 pg_catalog.min(t.id) FILTER (WHERE t.t3),
					 pg_catalog.min(t.id) FILTER (WHERE t.t4),
					 pg_catalog.min(t.id) FILTER (WHERE t.t5),
					 pg_catalog.min(t.id) FILTER (WHERE t.t6),
					 pg_catalog.min(t.id) FILTER (WHERE t.t7),
					 pg_catalog.min(t.id) FILTER (WHERE t.t8),
					 pg_catalog.min(t.id) FILTER (WHERE t.t9),
					 pg_catalog.min(t.id) FILTER (WHERE t.t10),
					 pg_catalog.min(t.id) FILTER (WHERE t.t11),
					 pg_catalog.min(t.id) FILTER (WHERE t.t12),
					 pg_catalog.min(t.id) FILTER (WHERE t.t13),
					 pg_catalog.min(t.id) FILTER (WHERE t.t14),
					 pg_catalog.min(t.id) FILTER (WHERE t.t15)]
		FROM t$q$,
		expr[1], expr[2], expr[3], expr[4], expr[5],
		'1::bigint',	-- duplicates are counted below
		coalesce(dates, 'false'), source::text)
		INTO n, ex
		USING stage_names;
	-- duplicate deal ids, by a hash aggregate (a sort of the whole source
	-- in the scan above cost more); none to count when a unique index on
	-- deal_id alone rules them out
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
	                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	               WHERE i.indrelid = source::pg_catalog.oid AND i.indisunique AND i.indisvalid
	                 AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
	                 AND a.attname = 'deal_id'
	                 AND a.atttypid IN ('text'::regtype::pg_catalog.oid, 'varchar'::regtype::pg_catalog.oid,
	                                    'int2'::regtype::pg_catalog.oid, 'int4'::regtype::pg_catalog.oid,
	                                    'int8'::regtype::pg_catalog.oid, 'uuid'::regtype::pg_catalog.oid)
	                 -- (an inheritance parent's index does not cover its children)
	                 AND (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent = i.indrelid)
	                      OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = i.indrelid) = 'p')) THEN
		EXECUTE pg_catalog.format(
			$q$SELECT coalesce(pg_catalog.sum(x.k), 0)::bigint, pg_catalog.min(x.id)
			   FROM (SELECT d.deal_id::text AS id, pg_catalog.count(*) AS k FROM %s AS d
			         WHERE d.deal_id IS NOT NULL GROUP BY 1 HAVING pg_catalog.count(*) > 1) x$q$,
			source::text)
			INTO dup_rows, dup_example;
		n[2] := dup_rows;
		ex[2] := dup_example;
	END IF;

	RETURN QUERY
	SELECT v.name,
		   v.descr || CASE WHEN v.i = ANY (skipped) THEN ' (not checked: the source lacks a column it needs)' ELSE '' END,
		   CASE WHEN v.i = ANY (skipped) THEN NULL ELSE n[v.i] END,
		   CASE WHEN v.i = ANY (skipped) THEN NULL ELSE ex[v.i] END
	FROM (VALUES
		(1, 'null_deal_id', 'deal_id is NULL or blank'),
		(2, 'duplicate_deal_id', 'deal_id shared with another row (every such row is counted)'),
		(3, 'closed_before_created', 'closed_date is before created_date'),
		(4, 'closed_without_closed_date', 'won or lost deal without a closed_date (left out of trends and drivers)'),
		(5, 'open_with_closed_date', 'open deal (NULL or open outcome) with a closed_date'),
		(6, 'null_amount', 'deal_amount is NULL'),
		(7, 'invalid_amount', 'deal_amount is NaN or infinite'),
		(8, 'negative_amount', 'deal_amount is below zero'),
		(9, 'unknown_outcome', 'outcome is not a known won, lost or open label (is_won raises an error on it)'),
		(10, 'null_stage', 'deal_stage is NULL or blank (left out of the funnel)'),
		(11, 'unknown_stage', 'deal_stage is not in dealrisk.stages (stage_funnel raises an error on it)'),
		(12, 'cycle_days_mismatch', 'sales_cycle_days differs from closed_date - created_date'),
		(13, 'negative_cycle_days', 'sales_cycle_days is below zero'),
		(14, 'future_created_date', 'created_date is after today'),
		(15, 'infinite_date', 'a date (created, closed, stage entered, last activity) is infinity or -infinity: treated as missing')
	) AS v(i, name, descr)
	ORDER BY v.i;
END
$fn$;
COMMENT ON FUNCTION dealrisk.data_quality(regclass) IS
	'Data-quality checks of a deal source, one row per check in a fixed order (all checks, zero counts included): rows failing it and the smallest failing deal_id; a check needing a column the source lacks has NULL rows; never raises an error on bad data';

-- The report ----------------------------------------------------------------

CREATE FUNCTION dealrisk._pct(x float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(pg_catalog.to_char(pg_catalog.round((x * 100)::numeric, 1), 'FM990.0') || '%', 'n/a');
COMMENT ON FUNCTION dealrisk._pct(float8) IS 'A share as a percentage with one decimal (internal)';

CREATE FUNCTION dealrisk._pts(x float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(pg_catalog.to_char(pg_catalog.round((x * 100)::numeric, 1), 'FMS990.0'), 'n/a');
COMMENT ON FUNCTION dealrisk._pts(float8) IS 'A difference of shares in percentage points, signed, one decimal (internal)';

CREATE FUNCTION dealrisk._pval(p float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN p IS NULL THEN 'p n/a'
			WHEN p < 0.001 THEN 'p < 0.001'
			ELSE 'p = ' || pg_catalog.to_char(p, 'FM0.000') END;
COMMENT ON FUNCTION dealrisk._pval(float8) IS 'A p-value for the report (internal)';

CREATE FUNCTION dealrisk._num(n bigint)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.to_char(n, 'FM999,999,999,999,990');
COMMENT ON FUNCTION dealrisk._num(bigint) IS 'A count with thousands separators (internal)';

CREATE FUNCTION dealrisk._quarter_label(d date)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.to_char(d, '"Q"Q-YYYY');
COMMENT ON FUNCTION dealrisk._quarter_label(date) IS 'Q1-2024 style label of the quarter holding d (internal)';

-- The report reads only outcome for sure: each section checks the columns it
-- needs and, when one is missing, says so on its line instead of failing.
-- Quarters are compared only when complete (_default_windows); the partial
-- quarter after them is named as such, never as the latest change.  The
-- segments of all dimensions are one family of tests: their q-values are
-- adjusted over all of them (Benjamini-Hochberg), not per dimension.
CREATE FUNCTION dealrisk.diagnose(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	lines		text[] := '{}';
	total		bigint;
	n_won		bigint;
	n_lost		bigint;
	n_open		bigint;
	n_unknown	bigint;
	odd_label	text;
	first_cl	date;
	last_cl		date;
	last_cr		date;
	cut_off		boolean := false;
	summary		text;
	n_signif	bigint := 0;
	n_tests		bigint := 0;
	top_drag	text;
	recent		daterange;
	baseline	daterange;
	rq			text;
	bq			text;
	cur			record;
	prev		record;
	part		record;
	ccur		record;
	cprev		record;
	cpart		record;
	r			record;
	seg_lines	text[] := '{}';
	f			record;
	shown		int := 0;
	has_closed	boolean;
	has_created	boolean;
	present		text[];
	dims		text[];
	no_dims		text[];
	partial_note text := '';
	line		text;
	has_part	boolean := false;
	has_cpart	boolean := false;
	why_no_funnel text;
	n_errors	bigint;
	n_warnings	bigint;
	pre_lines	text[];
	notes		text;
BEGIN
	-- outcome is needed; every other contract column the source has is
	-- checked (type, trust) and used where a section needs it
	SELECT coalesce(pg_catalog.array_agg(u.c ORDER BY u.o), '{}') INTO present
	FROM pg_catalog.unnest(ARRAY['deal_id', 'created_date', 'closed_date', 'sales_rep_id', 'industry', 'region',
								 'product_type', 'lead_source', 'deal_stage', 'deal_amount', 'sales_cycle_days'])
			WITH ORDINALITY AS u(c, o)
	WHERE dealrisk._has_column(source, u.c);
	PERFORM dealrisk._check_source(source, ARRAY['outcome'] || present);
	has_closed := 'closed_date' = ANY (present);
	has_created := 'created_date' = ANY (present);
	SELECT coalesce(pg_catalog.array_agg(u.c ORDER BY u.o) FILTER (WHERE u.c = ANY (present)), '{}'),
		   coalesce(pg_catalog.array_agg(u.c ORDER BY u.o) FILTER (WHERE u.c <> ALL (present)), '{}')
		INTO dims, no_dims
	FROM pg_catalog.unnest(ARRAY['industry', 'region', 'lead_source', 'product_type', 'sales_rep_id'])
			WITH ORDINALITY AS u(c, o);

	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.count(*),
				  pg_catalog.count(*) FILTER (WHERE x.cls = 'won'),
				  pg_catalog.count(*) FILTER (WHERE x.cls = 'lost'),
				  pg_catalog.count(*) FILTER (WHERE x.cls = 'open'),
				  pg_catalog.count(*) FILTER (WHERE x.cls = 'unknown'),
				  pg_catalog.min(x.outcome) FILTER (WHERE x.cls = 'unknown'),
				  pg_catalog.min(x.cl) FILTER (WHERE x.cls IN ('won', 'lost') AND pg_catalog.isfinite(x.cl)),
				  pg_catalog.max(x.cl) FILTER (WHERE x.cls IN ('won', 'lost') AND pg_catalog.isfinite(x.cl)),
				  pg_catalog.max(x.cr) FILTER (WHERE pg_catalog.isfinite(x.cr))
		   FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls,
						d.outcome::text AS outcome,
						%s AS cl, %s AS cr
				 FROM %s AS d) x$q$,
		CASE WHEN has_closed THEN 'd.closed_date::date' ELSE 'NULL::date' END,
		CASE WHEN has_created THEN 'd.created_date::date' ELSE 'NULL::date' END,
		source::text)
		INTO total, n_won, n_lost, n_open, n_unknown, odd_label, first_cl, last_cl, last_cr;

	lines := lines || pg_catalog.format('Win-rate diagnosis of %s: %s %s, %s closed (%s won, %s lost), %s open%s%s.',
		source::text, dealrisk._num(total), CASE WHEN total = 1 THEN 'deal' ELSE 'deals' END,
		dealrisk._num(n_won + n_lost), dealrisk._num(n_won),
		dealrisk._num(n_lost), dealrisk._num(n_open),
		CASE WHEN n_unknown > 0
			 THEN pg_catalog.format(', %s with an unknown outcome', dealrisk._num(n_unknown)) ELSE '' END,
		CASE WHEN first_cl IS NOT NULL
			 THEN pg_catalog.format('; closed between %s and %s',
					pg_catalog.to_char(first_cl, 'YYYY-MM-DD'), pg_catalog.to_char(last_cl, 'YYYY-MM-DD'))
			 WHEN NOT has_closed THEN '; no closed_date column'
			 ELSE '' END);

	IF n_unknown > 0 THEN
		lines := lines || pg_catalog.format('Cannot analyse: outcome labels such as "%s" are not known, so won and lost cannot be told apart. Add them to dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels (see docs/data-contract.md).',
			odd_label);
	ELSIF n_won + n_lost = 0 THEN
		lines := lines || 'No closed deals: there is no win rate to diagnose yet.'::text;
	ELSE
		lines := lines || pg_catalog.format('Win rate: %s of closed deals (95%% CI %s to %s).',
			dealrisk._pct(n_won::float8 / (n_won + n_lost)),
			dealrisk._pct((dealrisk.wilson_interval(n_won, n_won + n_lost)).ci_low),
			dealrisk._pct((dealrisk.wilson_interval(n_won, n_won + n_lost)).ci_high));

		-- The windows compared below: the last complete quarter and the one before.
		IF NOT has_closed THEN
			summary := 'the source has no closed_date column, so only the overall win rate can be reported: not its trend, the segments that drag it or the sales cycle';
			lines := lines || 'Trend: not available: the source has no closed_date column, so closed deals cannot be placed in time (map the close date to closed_date, see docs/data-contract.md).'::text;
		ELSE
			BEGIN
				SELECT w.recent, w.baseline INTO recent, baseline
				FROM dealrisk._default_windows(source) w;
				rq := dealrisk._quarter_label(pg_catalog.lower(recent));
				bq := dealrisk._quarter_label(pg_catalog.lower(baseline));
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Trend: not available: ' || SQLERRM);
			END;
		END IF;

		-- An extract cut off by created_date before the end of the recent
		-- window holds only the recent window's longer-cycle deals.
		IF recent IS NOT NULL AND last_cr < pg_catalog.upper(recent) - 1 THEN
			cut_off := true;
			lines := lines || pg_catalog.format('Caution: the newest deal was created on %s, before %s ended, so %s lacks the short-cycle deals created after that: its cycle lengths are biased upward.',
				pg_catalog.to_char(last_cr, 'YYYY-MM-DD'), rq, rq);
		END IF;

		-- Trend: the two complete quarters; a partial quarter after them
		-- (closed deals only up to last_cl) is shown as such, not compared.
		IF recent IS NOT NULL THEN
			BEGIN
				FOR r IN SELECT * FROM dealrisk.win_rate_trend(source, 'quarter') t
						 WHERE t.period_start IN (pg_catalog.lower(recent), pg_catalog.lower(baseline))
							OR t.is_partial
				LOOP
					IF r.is_partial THEN
						part := r;
						has_part := true;
					ELSIF r.period_start = pg_catalog.lower(recent) THEN
						cur := r;
					ELSE
						prev := r;
					END IF;
				END LOOP;
				IF has_part THEN
					partial_note := pg_catalog.format(' %s is partial (closed deals only up to %s) and is not compared: %s won of %s closed so far.',
						dealrisk._quarter_label(part.period_start), pg_catalog.to_char(last_cl, 'YYYY-MM-DD'),
						dealrisk._num(part.won), dealrisk._num(part.closed));
				END IF;
				IF cur IS NULL OR prev IS NULL THEN
					lines := lines || (pg_catalog.format('Trend: %s (the last complete quarter) or %s has no closed deals to compare.',
						rq, bq) || partial_note);
				ELSE
					summary := pg_catalog.format('the win rate %s %s points from %s to %s (%s), %s',
						CASE WHEN cur.change < 0 THEN 'fell' ELSE 'rose' END,
						pg_catalog.ltrim(dealrisk._pts(pg_catalog.abs(cur.change)), '+'), bq, rq,
						dealrisk._pval(cur.p_value),
						CASE WHEN cur.p_value < 0.05 THEN 'a significant change'
							 ELSE 'within noise' END);
					lines := lines || (pg_catalog.format('Trend: %s in %s (%s closed) vs %s in %s (%s closed): %s points, %s: %s.',
						dealrisk._pct(cur.win_rate), rq, dealrisk._num(cur.closed),
						dealrisk._pct(prev.win_rate), bq, dealrisk._num(prev.closed),
						dealrisk._pts(cur.change), dealrisk._pval(cur.p_value),
						CASE WHEN cur.p_value < 0.05
							 THEN CASE WHEN cur.change < 0 THEN 'a significant drop'
									   ELSE 'a significant rise' END
							 ELSE 'within noise, not a significant change' END) || partial_note);
				END IF;
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Trend: not available: ' || SQLERRM);
			END;
		END IF;

		-- Funnel: where deals are lost, and the late-stage share of the
		-- losses, when deal_stage holds the stage closed deals reached;
		-- otherwise why it cannot be read (check_source's stage_semantics).
		IF dealrisk._has_column(source, 'deal_stage') THEN
			why_no_funnel := dealrisk._stage_semantics(source);
		END IF;
		IF why_no_funnel IS NOT NULL THEN
			lines := lines || ('Funnel: not shown: deal_stage does not hold the stage closed deals reached (preflight, stage_semantics), so conversion between stages, where deals are lost and late-stage losses would be read from the wrong column. '
				|| dealrisk._stage_semantics_hint());
		ELSE
		BEGIN
			WITH s AS MATERIALIZED (
				SELECT s.*, pg_catalog.lead(s.stage) OVER (ORDER BY s."position") AS next_stage
				FROM dealrisk.funnel(source) s
			)
			SELECT (SELECT pg_catalog.sum(s.lost_here)::bigint FROM s) AS lost_total,
				   (SELECT pg_catalog.sum(s.lost_here)::bigint FROM s WHERE s.is_late) AS late_lost,
				   (SELECT pg_catalog.string_agg(s.stage, ', ' ORDER BY s."position")
					FROM s WHERE s.is_late) AS late_names,
				   (SELECT s.stage FROM s ORDER BY s.lost_here DESC, s."position" LIMIT 1) AS top_stage,
				   (SELECT s.lost_here FROM s ORDER BY s.lost_here DESC, s."position" LIMIT 1) AS top_lost,
				   (SELECT s.stage FROM s WHERE s.conversion_to_next IS NOT NULL
					ORDER BY s.conversion_to_next, s."position" LIMIT 1) AS weak_stage,
				   (SELECT s.next_stage FROM s WHERE s.conversion_to_next IS NOT NULL
					ORDER BY s.conversion_to_next, s."position" LIMIT 1) AS weak_next,
				   (SELECT s.conversion_to_next FROM s WHERE s.conversion_to_next IS NOT NULL
					ORDER BY s.conversion_to_next, s."position" LIMIT 1) AS weak_conv
				INTO f;
			IF coalesce(f.lost_total, 0) = 0 THEN
				lines := lines || 'Funnel: no lost deal with a stage.'::text;
			ELSE
				lines := lines || pg_catalog.format('Funnel: most lost deals were lost at %s (%s of %s, %s).',
					f.top_stage, dealrisk._num(f.top_lost), dealrisk._num(f.lost_total), dealrisk._pct(f.top_lost::float8 / f.lost_total));
				IF f.weak_stage IS NOT NULL THEN
					lines := lines || pg_catalog.format('Weakest step: %s -> %s, where %s of the closed deals that reached %s moved on.',
						f.weak_stage, f.weak_next, dealrisk._pct(f.weak_conv), f.weak_stage);
				END IF;
				lines := lines || pg_catalog.format('Late-stage losses: %s of lost deals were lost at a late stage (%s).',
					dealrisk._pct(coalesce(f.late_lost, 0)::float8 / f.lost_total),
					coalesce(f.late_names, 'none is marked late in dealrisk.stages'));
			END IF;
		EXCEPTION WHEN OTHERS THEN
			lines := lines || ('Funnel: not available: ' || SQLERRM);
		END;
		END IF;


		-- Segments that drag the win rate, across the usual dimensions the
		-- source has.  All their segments are one family of tests: q is the
		-- Benjamini-Hochberg adjustment over every segment with a p-value.
		IF NOT has_closed THEN
			lines := lines || 'Segments: not available: the source has no closed_date column, so there are no two quarters to compare.'::text;
		ELSIF recent IS NULL THEN
			lines := lines || 'Segments: not available: there are no two quarters to compare (see Trend).'::text;
		ELSIF pg_catalog.cardinality(dims) = 0 THEN
			lines := lines || 'Segments: not available: the source has none of the columns industry, region, lead_source, product_type, sales_rep_id.'::text;
		ELSE
			BEGIN
				FOR r IN
					WITH d AS (
						SELECT dm.dim, dm.o, dr.*
						FROM pg_catalog.unnest(dims) WITH ORDINALITY AS dm(dim, o),
							 LATERAL dealrisk.win_rate_drivers(source, dm.dim, recent, baseline) dr
					), n AS (
						SELECT d.*, pg_catalog.row_number() OVER (ORDER BY d.o, d.segment)::int AS k
						FROM d
					), fam AS (
						SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(n.p_value ORDER BY n.k), '{}')) AS qs,
							   pg_catalog.count(n.p_value) AS m
						FROM n
					), a AS (
						SELECT n.dim, n.o, n.segment, n.contribution, n.rate_effect, n.mix_effect,
							   n.recent_win_rate, n.baseline_win_rate, n.p_value,
							   fam.qs[n.k] AS q, fam.m,
							   pg_catalog.count(*) FILTER (WHERE fam.qs[n.k] < 0.05) OVER () AS n_sig
						FROM n, fam
					)
					SELECT a.* FROM a
					WHERE a.contribution < 0
					ORDER BY a.contribution, a.o, a.segment
					LIMIT 5
				LOOP
					shown := shown + 1;
					n_tests := r.m;
					n_signif := r.n_sig;
					IF shown = 1 THEN
						top_drag := pg_catalog.format('the biggest drag is %s = %s (%s points, %s)',
							r.dim, r.segment, dealrisk._pts(r.contribution),
							CASE WHEN r.q < 0.05 THEN 'significant' ELSE 'not significant' END);
					END IF;
					seg_lines := seg_lines || pg_catalog.format('  %s = %s: %s (rate %s, mix %s); win rate %s vs %s, %s, %s, %s',
						r.dim, r.segment, dealrisk._pts(r.contribution), dealrisk._pts(r.rate_effect),
						dealrisk._pts(r.mix_effect), dealrisk._pct(r.recent_win_rate),
						dealrisk._pct(r.baseline_win_rate), dealrisk._pval(r.p_value),
						CASE WHEN r.q IS NULL THEN 'q n/a'
							 WHEN r.q < 0.001 THEN 'q < 0.001'
							 ELSE 'q = ' || pg_catalog.to_char(r.q, 'FM0.000') END,
						CASE WHEN r.q < 0.05 THEN 'significant'
							 WHEN r.p_value < 0.05 THEN pg_catalog.format('within noise for %s tests', dealrisk._num(r.m))
							 ELSE 'within noise' END);
				END LOOP;
				lines := lines || pg_catalog.format('Segments dragging the win rate, %s vs %s (contribution = rate effect + mix effect, in points; q = p adjusted for the %s segments tested, Benjamini-Hochberg):',
					rq, bq, CASE WHEN shown > 0 THEN dealrisk._num(n_tests) ELSE 'n/a' END);
				IF shown = 0 THEN
					lines := lines || '  none: no segment lowered the win rate.'::text;
				ELSE
					lines := lines || seg_lines;
				END IF;
				IF pg_catalog.cardinality(no_dims) > 0 THEN
					lines := lines || pg_catalog.format('  not analysed: %s (no such column in the source).',
						pg_catalog.array_to_string(no_dims, ', '));
				END IF;
				IF top_drag IS NOT NULL THEN
					summary := coalesce(summary || '; ', '') || top_drag
						|| CASE WHEN n_signif = 0
								THEN pg_catalog.format('; no segment''s change is significant among the %s tested',
									dealrisk._num(n_tests))
								ELSE '' END;
				END IF;
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Segments: not available: ' || SQLERRM);
			END;
		END IF;

		-- Sales cycle: the same two quarters, and the partial one named.
		IF NOT has_closed THEN
			lines := lines || 'Sales cycle: not available: the source has no closed_date column.'::text;
		ELSIF recent IS NULL THEN
			lines := lines || 'Sales cycle: not available: there are no two quarters to compare (see Trend).'::text;
		ELSIF NOT has_created AND NOT 'sales_cycle_days' = ANY (present) THEN
			lines := lines || 'Sales cycle: not available: the source has neither a sales_cycle_days nor a created_date column.'::text;
		ELSE
			BEGIN
				FOR r IN SELECT * FROM dealrisk.cycle_trend(source, 'quarter') t
						 WHERE t.period_start IN (pg_catalog.lower(recent), pg_catalog.lower(baseline))
							OR t.is_partial
				LOOP
					IF r.is_partial THEN
						cpart := r;
						has_cpart := true;
					ELSIF r.period_start = pg_catalog.lower(recent) THEN
						ccur := r;
					ELSE
						cprev := r;
					END IF;
				END LOOP;
				partial_note := '';
				IF has_cpart THEN
					partial_note := pg_catalog.format(' %s is partial and is not compared.',
						dealrisk._quarter_label(cpart.period_start));
				END IF;
				IF ccur IS NULL OR cprev IS NULL THEN
					line := pg_catalog.format('Sales cycle: no closed deals in %s or %s to compare.', rq, bq);
				ELSIF ccur.median_days IS NULL OR cprev.median_days IS NULL THEN
					line := pg_catalog.format('Sales cycle: no cycle lengths in %s or %s to compare.', rq, bq);
				ELSE
					line := pg_catalog.format('Sales cycle: median %s days in %s vs %s in %s; mean %s vs %s days, %s: %s.',
						pg_catalog.to_char(ccur.median_days, 'FM9999990.0'), rq,
						pg_catalog.to_char(cprev.median_days, 'FM9999990.0'), bq,
						pg_catalog.to_char(ccur.mean_days, 'FM9999990.0'),
						pg_catalog.to_char(cprev.mean_days, 'FM9999990.0'),
						dealrisk._pval(ccur.p_value),
						CASE WHEN NOT coalesce(ccur.significant, false) THEN 'no significant change'
							 WHEN cut_off THEN 'not comparable, the difference comes from the cut-off above'
							 WHEN NOT has_created
							 THEN pg_catalog.format('cycles are getting %s, unless the extract was cut off by creation date (without a created_date column that cannot be checked)',
								CASE WHEN ccur.mean_days > cprev.mean_days THEN 'longer' ELSE 'shorter' END)
							 WHEN ccur.mean_days > cprev.mean_days THEN 'cycles are getting longer'
							 ELSE 'cycles are getting shorter' END);
				END IF;
				lines := lines || (line || partial_note);
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Sales cycle: not available: ' || SQLERRM);
			END;
		END IF;
	END IF;

	-- The preflight (check_source, which includes data_quality): its errors
	-- and warnings go right under the headline.
	BEGIN
		SELECT pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'error'),
			   pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'warning'),
			   coalesce(pg_catalog.array_agg(pg_catalog.format('  - %s: %s.', c."check", c.finding) ORDER BY c.o)
						FILTER (WHERE c.severity IN ('error', 'warning')), '{}'),
			   -- row-level notes of data_quality(), one line
			   pg_catalog.string_agg(pg_catalog.format('%s %s', c."check", pg_catalog.split_part(c.finding, ':', 1)), ', ' ORDER BY c.o)
						FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'info'
								AND c."check" NOT IN ('outcomes', 'columns', 'summary'))
			INTO n_errors, n_warnings, pre_lines, notes
		FROM dealrisk.check_source(source) WITH ORDINALITY AS c("check", severity, finding, hint, o);
		IF notes IS NOT NULL THEN
			pre_lines := pre_lines || ('  - notes: ' || notes || '.');
		END IF;
		pre_lines := CASE WHEN n_errors + n_warnings = 0 AND notes IS NULL
						  THEN ARRAY['Preflight: no error or warning (dealrisk.check_source).']
						  WHEN n_errors + n_warnings = 0
						  THEN ARRAY[pg_catalog.format('Preflight: no error or warning; notes: %s (SELECT * FROM dealrisk.check_source(%L)).',
							   notes, source::text)]
						  ELSE pg_catalog.format('Preflight: %s; the fixes: SELECT * FROM dealrisk.check_source(%L);',
							   pg_catalog.concat_ws(', ',
								   CASE WHEN n_errors = 1 THEN '1 error' WHEN n_errors > 1 THEN n_errors || ' errors' END,
								   CASE WHEN n_warnings = 1 THEN '1 warning' WHEN n_warnings > 1 THEN n_warnings || ' warnings' END),
							   source::text) || pre_lines END;
	EXCEPTION WHEN OTHERS THEN
		pre_lines := ARRAY['Preflight: not available: ' || SQLERRM];
	END;
	lines := lines[1:1] || pre_lines || lines[2:];

	IF summary IS NOT NULL THEN
		lines := lines[1:1]
			|| ('In short: ' || pg_catalog.upper(pg_catalog.left(summary, 1))
				|| pg_catalog.substr(summary, 2) || '.')
			|| lines[2:];
	END IF;

	RETURN pg_catalog.array_to_string(lines, E'\n');
END
$fn$;
COMMENT ON FUNCTION dealrisk.diagnose(regclass) IS
	'A plain-English report on a deal source: the errors and warnings of check_source(), win rate and its trend over complete quarters, where the funnel loses deals (or why deal_stage cannot tell), late-stage losses, the segments that drag the win rate (q-values over all segments tested) and the sales-cycle trend; a section whose columns the source lacks says so';
-- checks.sql: the preflight of a deal source, dealrisk.check_source(): what
-- the data can and cannot support, before anyone acts on a number computed
-- from it (issue #9).  diagnose() summarises it at the top of its report,
-- train() stops on its errors and records its warnings.

-- What an unknown outcome label most likely means ('won', 'lost', 'open'
-- or 'unknown'), from its words (src/outcome.c, which uses the same guess
-- for the hint of its unknown-label error).
CREATE FUNCTION dealrisk._label_guess(label text)
RETURNS text AS 'MODULE_PATHNAME', 'dr_label_guess'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._label_guess(text) IS
	'What an unknown outcome label most likely means, from its words: won, lost, open (a stage name) or unknown (internal)';

-- Whether deal_stage can be read as the stage each closed deal reached,
-- which the funnel assumes: NULL when it can (or there is too little to
-- tell), else why not.  A deal is won at the end of the pipeline, so when
-- more than a tenth of the won deals (and at least 10) sit at earlier
-- stages than the last stage holding won deals, the column holds something
-- else (the stage at export, or the stage a deal entered the CRM at).
CREATE FUNCTION dealrisk._stage_semantics(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	won_staged	bigint;
	final_stage text;
	n_final		bigint;
	first_stage text;
	n_first		bigint;
	n_stages	int;
	n_with_won	int;
	n_closed	bigint;
	n_closed_staged bigint;
BEGIN
	IF NOT dealrisk._has_column(source, 'deal_stage') OR NOT dealrisk._has_column(source, 'outcome') THEN
		RETURN NULL;
	END IF;
	-- callable by anyone, so it checks what it reads like every reader
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']);
	-- one scan: deals per stage and outcome class, then the stage table
	EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.lower(pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013')) AS st,
			       dealrisk.outcome_class(d.outcome::text) AS cls, pg_catalog.count(*) AS n
			FROM %s AS d
			GROUP BY 1, 2
		), w AS (
			SELECT s.stage, s."position", coalesce(pg_catalog.sum(g.n), 0)::bigint AS n
			FROM dealrisk.stages s
			LEFT JOIN g ON g.st OPERATOR(pg_catalog.=) pg_catalog.lower(s.stage) AND g.cls OPERATOR(pg_catalog.=) 'won'
			GROUP BY s.stage, s."position"
		)
		SELECT (SELECT pg_catalog.sum(w.n)::bigint FROM w),
		       (SELECT w.stage FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.n FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.stage FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT w.n FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT pg_catalog.count(*)::int FROM w),
		       (SELECT pg_catalog.count(*)::int FROM w WHERE w.n > 0),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost')),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost') AND g.st <> '')$q$,
		source::text)
		INTO won_staged, final_stage, n_final, first_stage, n_first, n_stages, n_with_won, n_closed, n_closed_staged;
	IF n_closed > 0 AND n_closed_staged = 0 THEN
		RETURN pg_catalog.format('none of the %s closed deals has a deal_stage, so there is no funnel to read', dealrisk._num(n_closed));
	END IF;
	IF won_staged IS NULL OR n_final IS NULL OR won_staged - n_final < 10 OR (won_staged - n_final) * 10 <= won_staged THEN
		RETURN NULL;
	END IF;
	RETURN pg_catalog.format('%s of %s won deals (%s) sit at stages before %s, %s at %s, the first stage; won deals are found at %s of %s stages. deal_stage does not hold the stage a deal reached before it closed (it may be its stage at export, or when it entered the CRM), so conversion between stages, where deals are lost and late-stage losses cannot be read from it',
		dealrisk._num(won_staged - n_final), dealrisk._num(won_staged),
		dealrisk._pct((won_staged - n_final)::float8 / won_staged), final_stage,
		dealrisk._num(n_first), first_stage, n_with_won, n_stages);
END
$fn$;
COMMENT ON FUNCTION dealrisk._stage_semantics(regclass) IS
	'NULL when deal_stage can be read as the stage each closed deal reached (the funnel''s assumption), else why not: too many won deals sit at early stages (internal)';

-- The hint that says what would let the funnel be read.
CREATE FUNCTION dealrisk._stage_semantics_hint()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 'The funnel needs, for every closed deal, the last stage it reached before it was won or lost: map a column that holds it as deal_stage, or keep the stage history (the date each deal entered each stage). Win rates, drivers and risk scores do not depend on it.';
COMMENT ON FUNCTION dealrisk._stage_semantics_hint() IS
	'What data would let the funnel be read when deal_stage cannot support it (internal)';

-- A SET line and its ALTER DATABASE twin that add labels to a label list
-- setting, keeping the labels it holds; the user runs them as written.
-- The list is comma-separated and holds at most 64 labels (DR_MAX_LABELS,
-- src/dealrisk.c), so a label holding a comma cannot be listed (it would
-- be split in two labels, neither of them it) and labels past the 64th
-- would make the SET fail: the hint names those instead.
CREATE FUNCTION dealrisk._label_fix(setting text, labels text[])
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	held		text := NULLIF(pg_catalog.btrim(pg_catalog.current_setting(setting, true)), '');
	room		int;
	listable	text[];
	commas		text[];
	val			text;
	fix			text;
BEGIN
	room := 64 - coalesce(pg_catalog.cardinality(pg_catalog.string_to_array(held, ',')), 0);
	SELECT coalesce(pg_catalog.array_agg(u.l ORDER BY u.o) FILTER (WHERE pg_catalog.strpos(u.l, ',') = 0), '{}'),
	       coalesce(pg_catalog.array_agg(u.l ORDER BY u.o) FILTER (WHERE pg_catalog.strpos(u.l, ',') > 0), '{}')
		INTO listable, commas
	FROM pg_catalog.unnest(labels) WITH ORDINALITY AS u(l, o)
	WHERE u.l IS NOT NULL;
	IF pg_catalog.cardinality(listable) > 0 AND room > 0 THEN
		val := pg_catalog.concat_ws(',', held, pg_catalog.array_to_string(listable[1:room], ','));
		fix := pg_catalog.format('SET %s = %L; to keep it: ALTER DATABASE %I SET %s = %L;',
		                         setting, val, pg_catalog.current_database(), setting, val);
	END IF;
	IF pg_catalog.cardinality(listable) > greatest(room, 0) THEN
		fix := pg_catalog.concat_ws(' ', fix, pg_catalog.format(
			'%s more cannot be added: %s holds at most 64 labels; map them to fewer labels in a view over your table (docs/data-contract.md).',
			pg_catalog.cardinality(listable) - greatest(room, 0), setting));
	END IF;
	IF pg_catalog.cardinality(commas) > 0 THEN
		fix := pg_catalog.concat_ws(' ', fix, pg_catalog.format(
			'%s cannot be listed: %s is comma-separated; rename %s in a view over your table, e.g. pg_catalog.replace(outcome, '','', '' '') AS outcome, and list the new %s.',
			(SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ') FROM pg_catalog.unnest(commas[1:10]) c)
			|| CASE WHEN pg_catalog.cardinality(commas) > 10
			        THEN pg_catalog.format(' and %s more', pg_catalog.cardinality(commas) - 10) ELSE '' END, setting,
			CASE WHEN pg_catalog.cardinality(commas) = 1 THEN 'it' ELSE 'them' END,
			CASE WHEN pg_catalog.cardinality(commas) = 1 THEN 'label' ELSE 'labels' END));
	END IF;
	RETURN fix;
END
$fn$;
COMMENT ON FUNCTION dealrisk._label_fix(text, text[]) IS
	'The SET and ALTER DATABASE statements that add labels to a label list, keeping its labels; labels it cannot hold (a comma, past the 64th) are named instead (internal)';

CREATE FUNCTION dealrisk.check_source(source regclass)
RETURNS TABLE("check" text, severity text, finding text, hint text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c_check		text[] := '{}';
	c_sev		text[] := '{}';
	c_find		text[] := '{}';
	c_hint		text[] := '{}';
	name		text := dealrisk._source_name(source);
	cols		text[];
	types		regtype[];
	col			text;
	need		text;
	missing		text[];
	fatal		boolean := false;
	has_created boolean;
	has_closed	boolean;
	has_stage	boolean;
	date_cols	text[];
	newest_expr text;
	n_total		bigint;
	n_won		bigint;
	n_lost		bigint;
	n_open		bigint;
	newest		date;
	newest_created date;
	oldest_open date;
	n_open_dated bigint;
	max_cycle	float8;
	n_older		bigint;
	unknown		record;
	labels		text[];
	r			record;
	stage_fix	text;
	n_unknown_stages int;
	status_labels text;
	status_in	text;
	semantics	text;
	min_n		int;
	as_of_set	text;
	as_of		date;
	dq			record;
BEGIN
	PERFORM dealrisk._check_source(source, NULL);	-- a relation, trusted
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings

	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), pg_catalog.array_agg(a.atttypid::regtype ORDER BY a.attnum)
		INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
	cols := coalesce(cols, '{}');

	-- Columns: the two every function needs, and what each missing optional
	-- one takes away.
	FOREACH col IN ARRAY ARRAY['deal_id', 'outcome'] LOOP
		IF NOT col = ANY (cols) THEN
			fatal := true;
			c_check := c_check || 'columns'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s is missing: %s', col,
				CASE col WHEN 'deal_id' THEN 'deals cannot be told apart (duplicates, scores, alerts)'
				         ELSE 'won, lost and open deals cannot be told apart' END);
			c_hint := c_hint || CASE col
				WHEN 'deal_id' THEN 'Map your CRM''s columns with a view: SELECT <your id column> AS deal_id, ... (docs/data-contract.md).'
				ELSE 'Map the column holding won/lost/open as outcome in a view; a single status column holding both stages and outcomes is split there too (docs/data-contract.md).' END;
		END IF;
	END LOOP;
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		col := cols[i];
		need := dealrisk._contract_type_problem(cols[i], types[i]);
		CONTINUE WHEN need IS NULL;
		-- a date or number every reader casts: nothing runs; a label or
		-- stage column of another type: the diagnostics cast it, the model
		-- cannot read it
		fatal := fatal OR need <> 'text';
		c_check := c_check || 'column_types'::text;
		c_sev := c_sev || CASE WHEN need = 'text' THEN 'warning' ELSE 'error' END;
		c_find := c_find || pg_catalog.format('column %s has type %s, not %s%s', col, pg_catalog.format_type(types[i], NULL), need,
			CASE WHEN need = 'text' THEN ': the diagnostics read it, train() and scoring cannot' ELSE '' END);
		c_hint := c_hint || pg_catalog.format('Cast it in a view: %s AS %I (docs/data-contract.md).',
			pg_catalog.format(CASE need WHEN 'a date' THEN '%I::date' WHEN 'text' THEN '%I::text' ELSE '%I::numeric' END, col), col);
	END LOOP;
	has_created := 'created_date' = ANY (cols);
	has_closed := 'closed_date' = ANY (cols);
	has_stage := 'deal_stage' = ANY (cols);
	IF NOT has_closed THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || 'column closed_date is missing: no win-rate or cycle trends and no drivers over time; train() holds out a hash sample of deals instead of the newest ones and cannot weight recent deals more'::text;
		c_hint := c_hint || 'Map the date each deal was won or lost as closed_date if your CRM has it.'::text;
	END IF;
	IF NOT has_created THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column created_date is missing: no deal age, so %s',
			CASE WHEN 'sales_cycle_days' = ANY (cols) THEN 'open deals are scored without their age'
			     ELSE 'no sales-cycle lengths and open deals are scored without their age' END);
		c_hint := c_hint || 'Map the date each deal was created as created_date if your CRM has it.'::text;
	END IF;
	IF NOT has_stage THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'column deal_stage is missing: no funnel and no time-in-stage feature'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	SELECT pg_catalog.array_agg(m ORDER BY o) INTO missing
	FROM pg_catalog.unnest(ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount'])
		WITH ORDINALITY u(m, o)
	WHERE NOT m = ANY (cols);
	IF missing IS NOT NULL THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('segment and amount columns missing: %s; diagnose() and train() use the others, and any column named in dimension => or features =>',
			pg_catalog.array_to_string(missing, ', '));
		c_hint := c_hint || NULL::text;
	END IF;

	IF fatal THEN
		RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
			pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
			ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
		RETURN;
	END IF;

	-- Outcomes: counts, and unknown labels by what they look like.
	SELECT pg_catalog.array_agg(pg_catalog.format('pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.%1$I::date) THEN d.%1$I::date END)', c))
		INTO date_cols
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'last_activity_date', 'stage_entered_date']) c
	WHERE c = ANY (cols);
	newest_expr := CASE WHEN date_cols IS NULL THEN 'NULL::date'
	                    ELSE 'greatest(' || pg_catalog.array_to_string(date_cols, ', ') || ')' END;
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.count(*),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'won'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'lost'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open'),
		          %s, %s, %s
		   FROM (SELECT d.*, coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls FROM %s AS d) d$q$,
		newest_expr,
		CASE WHEN 'created_date' = ANY (cols)
		     THEN 'pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END)'
		     ELSE 'NULL::date' END,
		-- for stale open deals: the longest closed cycle, the oldest open
		-- deal and how many open deals have a creation date
		CASE WHEN 'created_date' = ANY (cols) AND 'closed_date' = ANY (cols)
		     THEN $e$pg_catalog.max(d.closed_date::date - d.created_date::date)
		                FILTER (WHERE d.cls IN ('won', 'lost') AND pg_catalog.isfinite(d.created_date::date)
		                          AND pg_catalog.isfinite(d.closed_date::date) AND d.closed_date::date >= d.created_date::date),
		              pg_catalog.min(d.created_date::date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date)),
		              pg_catalog.count(d.created_date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date))$e$
		     ELSE 'NULL::int, NULL::date, 0::bigint' END,
		source::text)
		INTO n_total, n_won, n_lost, n_open, newest, newest_created, max_cycle, oldest_open, n_open_dated;

	FOR unknown IN EXECUTE pg_catalog.format(
		$q$SELECT dealrisk._label_guess(x.label) AS guess,
		          pg_catalog.array_agg(x.label ORDER BY x.n DESC, x.label) AS labels,
		          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.label, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.label) AS listed,
		          pg_catalog.sum(x.n)::bigint AS n, pg_catalog.count(*) AS k
		   FROM (SELECT pg_catalog.btrim(d.outcome::text) AS label, pg_catalog.count(*) AS n
		         FROM %s AS d
		         WHERE dealrisk.outcome_class(d.outcome::text) OPERATOR(pg_catalog.=) 'unknown'
		         GROUP BY 1) x
		   GROUP BY 1
		   ORDER BY pg_catalog.array_position(ARRAY['open', 'won', 'lost', 'unknown'], dealrisk._label_guess(x.label))$q$,
		source::text)
	LOOP
		labels := unknown.labels;
		c_check := c_check || 'outcome_labels'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('%s %s of %s %s not known (%s of %s deals): %s; %s',
			unknown.k, CASE WHEN unknown.k = 1 THEN 'outcome label' ELSE 'outcome labels' END, name,
			CASE WHEN unknown.k = 1 THEN 'is' ELSE 'are' END, dealrisk._num(unknown.n), dealrisk._num(n_total),
			unknown.listed,
			CASE unknown.guess WHEN 'open' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a stage of an open deal' ELSE 'they look like stages of open deals' END
			                   WHEN 'won' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a won deal' ELSE 'they look like won deals' END
			                   WHEN 'lost' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a lost deal' ELSE 'they look like lost deals' END
			                   ELSE 'it is not clear whether they mean won, lost or open' END);
		c_hint := c_hint || CASE unknown.guess
			WHEN 'open' THEN dealrisk._label_fix('dealrisk.open_labels', labels)
			WHEN 'won' THEN dealrisk._label_fix('dealrisk.won_labels', labels)
			WHEN 'lost' THEN dealrisk._label_fix('dealrisk.lost_labels', labels)
			ELSE 'Add each to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels, e.g. '
			     || dealrisk._label_fix('dealrisk.won_labels', labels[1:1]) END;
		fatal := true;
	END LOOP;
	-- (the checks below read labels with outcome_class, which never fails:
	-- deals with unknown labels count as neither won, lost nor open)

	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	c_check := c_check || 'outcomes'::text;
	IF n_won + n_lost = 0 THEN
		c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('no closed deal among %s deals: there is no win rate and nothing to train on', dealrisk._num(n_total));
		c_hint := c_hint || 'Check which labels mean won and lost: dealrisk.won_labels and dealrisk.lost_labels.'::text;
	ELSIF n_won < min_n OR n_lost < min_n THEN
		c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost and %s open deals: train() needs at least %s won and %s lost',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._num(n_open), min_n, min_n);
		c_hint := c_hint || 'Collect more closed deals; win rates of so few deals have wide intervals.'::text;
	ELSE
		c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost (win rate %s) and %s open deals',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._pct(n_won::float8 / (n_won + n_lost)), dealrisk._num(n_open));
		c_hint := c_hint || NULL::text;
	END IF;

	-- Stages: values dealrisk.stages does not know, outcomes in the stage
	-- column, and whether the column records the stage a deal reached.
	IF has_stage THEN
		EXECUTE pg_catalog.format(
			$q$SELECT pg_catalog.count(*)::int,
			          pg_catalog.string_agg(pg_catalog.format('(%%L, %%s, false)', x.st, x.base + x.k), ', ' ORDER BY x.k)
			              FILTER (WHERE NOT x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.st, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.quote_literal(x.st), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome)
			   FROM (SELECT y.st, y.n, y.is_outcome,
			                pg_catalog.row_number() OVER (PARTITION BY y.is_outcome ORDER BY y.st) AS k,
			                coalesce((SELECT pg_catalog.max(s."position") FROM dealrisk.stages s), 0) AS base
			         FROM (SELECT z.st, z.n, dealrisk.outcome_class(z.st) IN ('won', 'lost') AS is_outcome
			               FROM (SELECT pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') AS st, pg_catalog.count(*) AS n
			                     FROM %s AS d
			                     WHERE pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') <> ''
			                     GROUP BY 1) z
			               WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages s
			                                 WHERE pg_catalog.lower(s.stage) OPERATOR(pg_catalog.=) pg_catalog.lower(z.st))) y) x$q$,
			source::text)
			INTO n_unknown_stages, stage_fix, status_labels, status_in;
		IF status_labels IS NOT NULL THEN
			c_check := c_check || 'status_column'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds outcome labels: %s; it is a single status column holding both the stage of open deals and the outcome of closed ones, so it says nothing about the stage closed deals reached',
				status_labels);
			c_hint := c_hint || pg_catalog.format('Split it in a view over your table: CASE WHEN status IN (%1$s) THEN status END AS outcome, CASE WHEN status NOT IN (%1$s) THEN status END AS deal_stage (docs/data-contract.md).',
				status_in);
		END IF;
		IF stage_fix IS NOT NULL THEN
			c_check := c_check || 'unknown_stages'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds stages that dealrisk.stages does not list: the funnel cannot be computed until they are added')::text;
			c_hint := c_hint || pg_catalog.format('Add them in pipeline order, e.g. INSERT INTO dealrisk.stages (stage, position, is_late) VALUES %s; then correct position and is_late (a stage before the first one takes position 0 or below).',
				stage_fix);
		END IF;
		semantics := dealrisk._stage_semantics(source);
		IF semantics IS NOT NULL THEN
			c_check := c_check || 'stage_semantics'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || semantics;
			c_hint := c_hint || dealrisk._stage_semantics_hint();
		END IF;
	END IF;

	-- Columns that record the outcome instead of predicting it.
	FOR r IN SELECT * FROM dealrisk._feature_leaks(source, NULL) LOOP
		c_check := c_check || 'outcome_leaks'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column %s leaks the outcome: %s', r.feature, r.reason);
		c_hint := c_hint || 'Map only what is known while a deal is open (docs/data-contract.md); train() leaves such a column out.'::text;
	END LOOP;

	-- Dates: the day open deals are scored at, against the data.
	as_of_set := NULLIF(pg_catalog.current_setting('dealrisk.as_of_date', true), '');
	as_of := coalesce(as_of_set::date, CURRENT_DATE);
	IF n_open > 0 AND newest IS NOT NULL THEN
		IF as_of_set IS NULL AND as_of - newest > 90 THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('open deals are scored as of today, %s, %s days after the newest date in the source (%s): their ages and times in stage are measured to today, which makes every open deal look stale',
				as_of, dealrisk._num((as_of - newest)::bigint), newest);
			-- (the date as ISO text, which means the same date under any
			-- DateStyle of the sessions that read the setting)
			c_hint := c_hint || pg_catalog.format('If the data is an export from %s, score as of then: SET dealrisk.as_of_date = %L; to keep it: ALTER DATABASE %I SET dealrisk.as_of_date = %L;',
				newest, pg_catalog.to_char(newest, 'YYYY-MM-DD'), pg_catalog.current_database(), pg_catalog.to_char(newest, 'YYYY-MM-DD'));
		ELSIF as_of < newest_created THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('dealrisk.as_of_date (%s) is before the newest created_date in the source (%s): deals created after it get negative ages',
				as_of, newest_created);
			c_hint := c_hint || pg_catalog.format('SET dealrisk.as_of_date = %L, or later.', pg_catalog.to_char(newest_created, 'YYYY-MM-DD'));
		END IF;
	END IF;
	-- (when open deals are scored as of a date long after the data, the
	-- warning above says why they all look old)
	IF has_created AND has_closed AND n_open > 0 AND NOT 'scoring_date' = ANY (c_check) THEN
		-- (counted only when the oldest open deal is that old)
		IF max_cycle IS NOT NULL AND n_open_dated > 0 AND as_of - oldest_open > max_cycle THEN
			EXECUTE pg_catalog.format(
				$q$SELECT pg_catalog.count(*) FROM %s AS d
				   WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
				     AND pg_catalog.isfinite(d.created_date::date) AND $1 - d.created_date::date > $2$q$,
				source::text)
				INTO n_older USING as_of, max_cycle::int;
			IF n_older > 0 THEN
				c_check := c_check || 'stale_open_deals'::text; c_sev := c_sev || 'warning'::text;
				c_find := c_find || pg_catalog.format('%s of %s open deals are older on %s than every closed deal was when it closed (longest cycle %s days; the oldest open deal was created on %s): they may be dead deals never closed in the CRM',
					dealrisk._num(n_older), dealrisk._num(n_open_dated), as_of, dealrisk._num(max_cycle::bigint), oldest_open);
				c_hint := c_hint || 'Close or remove them in the CRM, or leave them out of the source; if the data is an older export, set dealrisk.as_of_date to its date.'::text;
			END IF;
		END IF;
	END IF;

	-- Row-level problems, from data_quality() (the checks it can run on the
	-- columns the source has).
	FOR dq IN SELECT * FROM dealrisk.data_quality(source) q
	          WHERE q."rows" > 0 AND q.check_name NOT IN ('unknown_outcome', 'unknown_stage')
	LOOP
		c_check := c_check || dq.check_name;
		c_sev := c_sev || CASE WHEN dq.check_name IN ('open_with_closed_date', 'null_amount', 'null_stage', 'cycle_days_mismatch')
		                       THEN 'info' ELSE 'warning' END;
		c_find := c_find || pg_catalog.format('%s %s: %s%s', dealrisk._num(dq."rows"),
			CASE WHEN dq."rows" = 1 THEN 'row' ELSE 'rows' END, dq.description,
			CASE WHEN dq.example_deal_id IS NOT NULL THEN pg_catalog.format(' (e.g. deal_id %s)', dq.example_deal_id) ELSE '' END);
		c_hint := c_hint || CASE dq.check_name
			WHEN 'duplicate_deal_id' THEN 'Keep one row per deal (watch() refuses open deals that share a deal_id).'
			WHEN 'null_deal_id' THEN 'Give every deal an id; rows without one cannot be scored or alerted on.'
			WHEN 'closed_before_created' THEN 'Fix the dates in the CRM or the mapping view; cycle lengths of these deals are negative and left out.'
			WHEN 'closed_without_closed_date' THEN 'These deals count in win rates but are left out of trends, drivers and the time-based holdout.'
			WHEN 'invalid_amount' THEN 'NaN and infinite amounts are treated as missing; fix them at the source.'
			WHEN 'infinite_date' THEN 'Infinite dates are treated as missing; fix them at the source.'
			WHEN 'negative_amount' THEN 'Check whether negative amounts are refunds or errors; they fall in the lowest amount bin.'
			WHEN 'negative_cycle_days' THEN 'Negative cycle lengths are left out of cycle statistics.'
			WHEN 'future_created_date' THEN 'Deals created in the future get negative ages; check the dates or dealrisk.as_of_date.'
			END;
	END LOOP;

	IF NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(c_sev) s WHERE s IN ('error', 'warning')) THEN
		c_check := c_check || 'summary'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'no error or warning: every diagnostic and train() can run on this source'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
		pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
		ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
END
$fn$;
COMMENT ON FUNCTION dealrisk.check_source(regclass) IS
	'Preflight of a deal source: one row per finding (check, severity error/warning/info, finding, hint): missing columns and what they take away, unknown outcome labels (with the SET line that fixes them), unknown stages (with the INSERT that adds them), a status column holding outcomes, whether deal_stage can support a funnel, outcome leaks, the scoring date against the data, open deals older than every closed one, and row-level problems of data_quality()';
-- model.sql: the deal risk model: table, training, activation, export and
-- import, scoring and explanation (src/features.c, model.c, train.c, score.c).

CREATE TABLE dealrisk.models (
	id            bigserial PRIMARY KEY,
	name          text NOT NULL CHECK (btrim(name) <> ''),
	created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
	source        text,
	feature_spec  jsonb NOT NULL,
	coefficients  float8[] NOT NULL,
	metrics       jsonb NOT NULL DEFAULT '{}',
	active        boolean NOT NULL DEFAULT false,
	activated_at  timestamptz,
	trained_by    text DEFAULT CURRENT_USER
);
CREATE UNIQUE INDEX models_one_active_per_name ON dealrisk.models (name) WHERE active;
COMMENT ON TABLE dealrisk.models IS
	'Deal risk models: feature specification (with dictionaries and standardisation), coefficients (intercept first), holdout metrics; at most one active model per name';
COMMENT ON COLUMN dealrisk.models.trained_by IS
	'The role that stored the model (train() or import_model(), or an INSERT): a role granted INSERT on the other columns cannot set it; NULL for models stored before 0.3.0';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.models', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.models_id_seq', '');

CREATE TABLE dealrisk.model_activations (
	name          text NOT NULL,
	model_id      bigint NOT NULL REFERENCES dealrisk.models (id) ON DELETE CASCADE,
	activated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	forced        boolean NOT NULL DEFAULT false
);
CREATE INDEX ON dealrisk.model_activations (name, activated_at);
COMMENT ON TABLE dealrisk.model_activations IS
	'History of model activations per name, used by dealrisk.rollback()';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.model_activations', '');

CREATE FUNCTION dealrisk._models_changed()
RETURNS trigger AS 'MODULE_PATHNAME', 'dr_models_changed'
LANGUAGE C;
COMMENT ON FUNCTION dealrisk._models_changed() IS
	'Trigger: makes every backend drop its cached models when dealrisk.models changes (internal)';
CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
	ON dealrisk.models FOR EACH STATEMENT EXECUTE FUNCTION dealrisk._models_changed();

CREATE FUNCTION dealrisk._validate_model(spec jsonb, coefficients float8[])
RETURNS int AS 'MODULE_PATHNAME', 'dr_validate_model'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._validate_model(jsonb, float8[]) IS
	'Checks a feature specification and its coefficients; returns the number of model columns or raises an error naming the problem (internal)';

-- Training and evaluation passes read each deal as its column values (row
-- type, column names, values: see _row_args), not as a composite value, so
-- a pass builds no row per deal and reads only the columns the model needs.

-- One IRLS pass: the state sums the weighted log-likelihood, gradient and
-- information of the closed deals at the given coefficients.
CREATE FUNCTION dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8,
	regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_irls_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'IRLS pass transition (internal)';
-- split: 0 every closed deal, 1 closed before cutoff, 2 closed on or after
-- it; each deal weighs 0.5 ^ ((ref - closed_date) / halflife).
CREATE AGGREGATE dealrisk._irls_pass(spec jsonb, beta float8[], split int,
	cutoff date, ref date, halflife float8, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._irls_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._irls_pass(jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'One Newton/IRLS pass over closed deals: {rows, weight, log-likelihood, gradient, information} (internal)';

CREATE FUNCTION dealrisk._model_columns(spec jsonb)
RETURNS text[] AS 'MODULE_PATHNAME', 'dr_model_columns'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._model_columns(jsonb) IS
	'The columns the encoder reads a row of a model from: contract columns by name, then feature columns (internal)';

-- The arguments that pass a row of source (alias d) to the passes above:
-- its row type, the names of the columns a model of spec reads, and those
-- columns.  A model reading more than 90 columns would exceed the 100
-- arguments a call can take: its rows are passed whole instead (row type,
-- NULL, d.*), which is slower but has no limit.
CREATE FUNCTION dealrisk._row_args(source regclass, spec jsonb)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.count(*) > 90
	            THEN pg_catalog.format('%s::pg_catalog.regtype, NULL::text[], d.*', c.reltype::pg_catalog.oid)
	            ELSE pg_catalog.format('%s::pg_catalog.regtype, %L::text[], %s',
	                         c.reltype::pg_catalog.oid,
	                         pg_catalog.array_agg(a.attname::text ORDER BY a.attnum),
	                         pg_catalog.string_agg(pg_catalog.format('d.%I', a.attname), ', ' ORDER BY a.attnum)) END
	FROM pg_catalog.pg_class c
	JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
	WHERE c.oid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text = ANY (dealrisk._model_columns(spec))
	GROUP BY c.reltype
$$;
COMMENT ON FUNCTION dealrisk._row_args(regclass, jsonb) IS
	'Row type, column names and column list that pass the rows of a source to the training passes (internal)';

CREATE FUNCTION dealrisk._irls_solve(state float8[], beta float8[], l2 float8)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_irls_solve'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_solve(float8[], float8[], float8) IS
	'Newton step on the L2-penalised log-likelihood from an IRLS pass state (internal)';

CREATE FUNCTION dealrisk._irls_decrement(state float8[], beta float8[], new_beta float8[], l2 float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_irls_decrement'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_decrement(float8[], float8[], float8[], float8) IS
	'Gain in penalised log-likelihood promised by a Newton step; tiny when converged (internal)';

CREATE FUNCTION dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_eval_accum'
LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION dealrisk._eval_final(float8[])
RETURNS jsonb AS 'MODULE_PATHNAME', 'dr_eval_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], "any") IS
	'evaluation transition (internal)';
COMMENT ON FUNCTION dealrisk._eval_final(float8[]) IS 'evaluation final function: metrics as jsonb (internal)';
CREATE AGGREGATE dealrisk._evaluate(spec jsonb, beta float8[], split int, cutoff date,
	row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._eval_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._eval_final,
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._evaluate(jsonb, float8[], int, date, regtype, text[], "any") IS
	'Holdout metrics of coefficients on closed deals: AUC, log loss, Brier, accuracy, calibration (internal)';

-- Quantile edges of a numeric expression over a filtered source: distinct,
-- increasing, finite.
CREATE FUNCTION dealrisk._quantile_edges(source regclass, expr text, filter text, probs float8[])
RETURNS float8[]
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	edges float8[];
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_cont($1) WITHIN GROUP (ORDER BY (%s)::float8) FROM %s d WHERE %s AND (%s) IS NOT NULL'
		' AND (%s)::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity''))) q',
		expr, source, filter, expr, expr)
		INTO edges USING probs;
	RETURN edges;
END
$$;
COMMENT ON FUNCTION dealrisk._quantile_edges(regclass, text, text, float8[]) IS
	'Distinct quantiles of an expression over a source, used as bin edges (internal)';

-- The knots of an open deal's survivor curve (docs/model.md, "Open deals"):
-- distinct values of a closed deal's age (or stage time) expression at
-- every 5th percentile, and the 97.5th, 99th and 100th, from dict (the
-- training sample), and the longest value over every closed deal of source.
CREATE FUNCTION dealrisk._open_knots(dict regclass, source regclass, expr text, filter text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	knots float8[];
	longest float8;
	finite text := pg_catalog.format('(%s) IS NOT NULL AND (%s)::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'')', expr, expr);
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_disc($1) WITHIN GROUP (ORDER BY (%s)::float8) FROM %s d WHERE %s AND %s)) q',
		expr, dict, filter, finite)
		INTO knots
		USING ARRAY(SELECT k / 20.0 FROM pg_catalog.generate_series(0, 19) k)::float8[] || '{0.975,0.99,1}'::float8[];
	IF pg_catalog.cardinality(knots) IS NULL THEN
		RETURN '{}';
	END IF;
	longest := knots[pg_catalog.cardinality(knots)];
	IF dict::pg_catalog.oid <> source::pg_catalog.oid THEN
		EXECUTE pg_catalog.format('SELECT max((%s)::float8) FROM %s d WHERE %s AND %s', expr, source, filter, finite)
			INTO longest;
	END IF;
	RETURN pg_catalog.jsonb_build_object('open_knots', pg_catalog.to_jsonb(knots),
		'longest', greatest(longest, knots[pg_catalog.cardinality(knots)]));
END
$$;
COMMENT ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text) IS
	'Knots of the survivor curve of open deals (quantiles of the closed deals'' age or stage time) and its longest value (internal)';

-- A pass of the survivor curves' fit: per knot, the score and information
-- of the closed deals at or past it at the given terms, and their counts.
CREATE FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[],
	regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'Survivor curve pass transition (internal)';
CREATE AGGREGATE dealrisk._open_pass(spec jsonb, beta float8[], split int, cutoff date, ref date,
	halflife float8, terms float8[], row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._open_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'One pass of the survivor curves'' fit over closed deals: {rows, per knot: score, information, closed, won} (internal)';

CREATE FUNCTION dealrisk._open_step(spec jsonb, state float8[], terms float8[], monotone boolean)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_step'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_step(jsonb, float8[], float8[], boolean) IS
	'Newton step of the survivor curves from a pass state, or (monotone) the curves made non-increasing (internal)';

-- The survivor curves of open deals for the features of spec that have
-- knots, fitted with coefficients beta on the closed deals of source that
-- pass filter (weighted as in training: ref, halflife): spec with each
-- such feature's open_terms, open_closed and open_won (docs/model.md).
CREATE FUNCTION dealrisk._open_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n int;
	terms float8[];
	next float8[];
	state float8[];
	passes int := 0;
	q text;
BEGIN
	SELECT coalesce(sum(pg_catalog.jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM pg_catalog.jsonb_array_elements(spec->'features') e
	WHERE pg_catalog.jsonb_typeof(e->'open_knots') = 'array';
	IF n = 0 THEN
		RETURN spec;
	END IF;
	q := pg_catalog.format('SELECT dealrisk._open_pass($1, $2, 0, NULL, $3, $4, $5, %s) FROM %s d WHERE %s',
	                       dealrisk._row_args(source, spec), source, filter);
	terms := pg_catalog.array_fill(0::float8, ARRAY[n]);
	LOOP
		EXECUTE q INTO state USING spec, beta, ref, halflife, terms;
		IF state IS NULL OR pg_catalog.cardinality(state) = 0 THEN
			RETURN spec;	-- no closed deal: open deals stay binned
		END IF;
		passes := passes + 1;
		next := dealrisk._open_step(spec, state, terms, false);
		EXIT WHEN passes >= 30 OR
			(SELECT max(abs(x.a - x.b)) FROM ROWS FROM (pg_catalog.unnest(next), pg_catalog.unnest(terms)) x(a, b)) < 1e-6;
		terms := next;
	END LOOP;
	terms := dealrisk._open_step(spec, state, next, true);
	RAISE NOTICE 'dealrisk.train: survivor curves of open deals fitted in % passes', passes;
	RETURN pg_catalog.jsonb_set(spec, '{features}', (
		SELECT pg_catalog.jsonb_agg(CASE WHEN x.len > 0 THEN x.e || pg_catalog.jsonb_build_object(
			'open_terms', (SELECT pg_catalog.jsonb_agg(terms[x.o + k] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_closed', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k)] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_won', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k) + 1] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k))
			ELSE x.e END ORDER BY x.ord)
		FROM (SELECT f.e, f.ord, f.len,
		             coalesce(sum(f.len) OVER (ORDER BY f.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::int AS o
		      FROM (SELECT t.e, t.ord, CASE WHEN pg_catalog.jsonb_typeof(t.e->'open_knots') = 'array'
		                                    THEN pg_catalog.jsonb_array_length(t.e->'open_knots') ELSE 0 END AS len
		            FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY AS t(e, ord)) f) x));
END
$$;
COMMENT ON FUNCTION dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8) IS
	'Fits the survivor curves that score open deals by age and stage time, and writes them into a feature specification (internal)';

-- One scan of the closed deals of source for what training needs exactly
-- (the dictionaries come from a sample): won and lost counts, the newest
-- close date, and the shrunk win-rate feature of column key (the rep) twice,
-- over every closed deal and over those for which train_expr holds (the
-- holdout model's).  Each rate feature holds per key the won and closed
-- counts, the overall rate (prior) they are shrunk toward with a strength of
-- 20 deals, and the mean and sd of the shrunk rate over deals, for
-- standardising.  key NULL: counts and date only.
CREATE FUNCTION dealrisk._census(source regclass, key text, train_expr text, has_closed_date boolean,
	OUT n_won bigint, OUT n_lost bigint, OUT ref date, OUT rate_all jsonb, OUT rate_train jsonb)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE pg_catalog.format($q$
		WITH g AS (
			SELECT %s k, dealrisk.is_won(d.outcome) won, count(*) n, count(*) FILTER (WHERE %s) nb, %s m
			FROM %s d GROUP BY 1, 2),
		c AS (
			SELECT k, coalesce(sum(n) FILTER (WHERE won), 0)::float8 w, sum(n)::float8 n,
			       coalesce(sum(nb) FILTER (WHERE won), 0)::float8 wb, sum(nb)::float8 nb, max(m) m
			FROM g WHERE won IS NOT NULL GROUP BY k),
		a AS (SELECT 'all' part, k, w, n FROM c WHERE k IS NOT NULL
		      UNION ALL SELECT 'train', k, wb, nb FROM c WHERE k IS NOT NULL AND nb > 0),
		p AS (SELECT part, sum(w) / sum(n) prior FROM a GROUP BY part),
		r AS (SELECT a.part, a.n, (a.w + $1 * p.prior) / (a.n + $1) rate FROM a JOIN p USING (part)),
		m AS (SELECT part, sum(n * rate) / sum(n) mean, sum(n * rate * rate) / sum(n) sq FROM r GROUP BY part),
		f AS (
			SELECT p.part, pg_catalog.jsonb_build_object(
				'name', 'rep_win_rate', 'kind', 'rate', 'column', $2,
				'prior', p.prior, 'strength', $1::float8, 'mean', m.mean,
				'sd', CASE WHEN m.sq - m.mean * m.mean > 1e-18 THEN sqrt(m.sq - m.mean * m.mean) ELSE 1 END,
				'levels', (SELECT pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part),
				'won', (SELECT pg_catalog.jsonb_agg(w ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part),
				'closed', (SELECT pg_catalog.jsonb_agg(n ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part)) j
			FROM p JOIN m USING (part))
		SELECT coalesce(sum(w), 0)::bigint, coalesce(sum(n - w), 0)::bigint, max(m),
		       (SELECT j FROM f WHERE part = 'all'), (SELECT j FROM f WHERE part = 'train')
		FROM c $q$,
		CASE WHEN key IS NULL THEN 'NULL::text' ELSE pg_catalog.format('d.%I::text', key) END,
		train_expr,
		CASE WHEN has_closed_date THEN 'max(d.closed_date) FILTER (WHERE pg_catalog.isfinite(d.closed_date))'
		     ELSE 'NULL::date' END,
		source)
		INTO n_won, n_lost, ref, rate_all, rate_train USING 20::float8, key;
END
$$;
COMMENT ON FUNCTION dealrisk._census(regclass, text, text, boolean) IS
	'Won and lost counts, newest close date and the rep win-rate features (all deals, training split) of a source, from one scan (internal)';

-- A date column of a deal (alias d) as the encoder reads it: NULL when the
-- column is not among cols or the date is infinite.
CREATE FUNCTION dealrisk._finite_date(col text, cols text[])
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN col = ANY (cols)
	            THEN pg_catalog.format('CASE WHEN pg_catalog.isfinite(d.%1$I) THEN d.%1$I END', col)
	            ELSE 'NULL::date' END
$$;
COMMENT ON FUNCTION dealrisk._finite_date(text, text[]) IS
	'SQL for a date column of a deal row as the model reads it: NULL when absent or infinite (internal)';

-- A feature as train(features => ...) names it: a derived feature or a
-- column, optionally followed by how a numeric column enters the model:
-- 'days_in_stage:bins' (the default: quantile bins, each with its own
-- weight) or 'days_in_stage:linear' (one standardised number).  A name that
-- is itself a column of the source is taken whole.  Returns the column (or
-- derived feature) and the entry (NULL when none was given).
CREATE FUNCTION dealrisk._feature_entry(source regclass, feature text, OUT col text, OUT entry text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	typ text;
BEGIN
	IF feature IS NULL OR pg_catalog.btrim(feature) = '' THEN
		RAISE EXCEPTION 'a feature name must not be NULL or empty, got %', coalesce(pg_catalog.quote_literal(feature), 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	col := feature;
	IF pg_catalog.strpos(feature, ':') = 0 OR dealrisk._has_column(source, feature) THEN
		RETURN;
	END IF;
	col := pg_catalog.substring(feature, '^(.*):');
	entry := pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(feature, ':([^:]*)$')));
	IF entry NOT IN ('bins', 'linear') THEN
		RAISE EXCEPTION 'unknown entry "%" in feature "%"', pg_catalog.substring(feature, ':([^:]*)$'), feature
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A numeric column enters the model as quantile bins (column or column:bins) or as one standardised number (column:linear).';
	END IF;
	SELECT pg_catalog.format_type(a.atttypid, NULL) INTO typ
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attname::text = col AND a.attnum > 0 AND NOT a.attisdropped;
	IF typ IS NULL OR typ NOT IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
		RAISE EXCEPTION 'feature "%": only a numeric column of % can be entered as %, and "%" is %', feature, source, entry, col,
			CASE WHEN typ IS NOT NULL THEN 'of type ' || typ
			     WHEN col IN ('cycle_days', 'stage_time', 'activity_gap') THEN 'a derived feature (always bins)'
			     ELSE 'not a column of it' END
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Write column:linear or column:bins for a numeric column; other features take no entry.';
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._feature_entry(regclass, text) IS
	'The column (or derived feature) a feature name of train() reads and how a numeric column enters the model (bins, linear, or NULL for the default bins); an unknown entry is an error (internal)';

-- Features that record the outcome instead of predicting it: columns of
-- source among features (default: the contract's feature columns it has;
-- derived features and names that are no column are skipped) that are
--   - filled on closed deals and empty on open ones (at least 10 open
--     deals, at most 5% of them filled, at least half of the closed deals
--     filled): the value is written when a deal closes (a close value, a
--     close reason), so it is unknown for the deals to be scored;
--   - or whose value alone separates won from lost closed deals almost
--     perfectly: the AUC of the value's own win rate, each closed deal
--     scored by the win rate of its level without itself (shrunk toward the
--     overall rate by 20 deals), is at least 0.95 (at least 10 won and 10
--     lost deals).  Levels are the text of a text column and the decile of
--     a number (a value many deals share, such as the 0 of every lost deal,
--     is a level of its own rather than the low end of a decile); empty
--     ('', NULL, NaN, +-Infinity) is a level too, so a column filled only on
--     won deals separates as well.  Leaving a deal out of its own level's
--     rate keeps a column with a value per deal (an id, a note) at chance,
--     and the shrinking keeps small levels near the overall rate: an honest
--     strong feature (a rep who wins 70%) stays far below 0.95.
-- One row per leaking feature, named as given, with why in words.  Reads
-- the source twice at most (the deciles of the number columns, then the
-- levels of every column in one scan with a grouping set per column); of a
-- table of more than 60,000 rows, a repeatable sample of its pages of about
-- 30,000 rows, which tells shares and a near-perfect separation as well as
-- every row would.
CREATE FUNCTION dealrisk._feature_leaks(source regclass, features text[] DEFAULT NULL)
RETURNS TABLE (feature text, reason text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text[] := '{}';
	cols text[] := '{}';
	kinds text[] := '{}';
	types text[] := '{}';
	f text;
	c text;
	t text;
	kind "char";
	est float8;
	scan text;
	sampled text := '';
	num text;
	deciles text[];
	lv text;
	sel text := '';
	sets text := '';
	which text := '';
	val text := '';
	i int;
	j int := 0;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	FOREACH f IN ARRAY coalesce(features, ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount']) LOOP
		CONTINUE WHEN features IS NULL AND NOT dealrisk._has_column(source, f);
		c := (dealrisk._feature_entry(source, f)).col;
		SELECT pg_catalog.format_type(a.atttypid, NULL) INTO t
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attname::text = c AND a.attnum > 0 AND NOT a.attisdropped;
		CONTINUE WHEN t IS NULL OR c = ANY (cols) OR c IN ('cycle_days', 'stage_time', 'activity_gap');
		IF t IN ('text', 'character varying', 'character', 'boolean') THEN
			kinds := kinds || 'text'::text;
		ELSIF t IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
			kinds := kinds || 'number'::text;
		ELSE
			CONTINUE;	-- not a type a feature can have: train() says so
		END IF;
		names := names || f;
		cols := cols || c;
		types := types || t;
	END LOOP;
	IF pg_catalog.cardinality(cols) = 0 THEN
		RETURN;
	END IF;
	-- the columns' types run no less trusted role's code when read
	PERFORM dealrisk._check_source(source, ARRAY['outcome'] || cols);

	SELECT r.relkind, r.reltuples INTO kind, est FROM pg_catalog.pg_class r WHERE r.oid = source::pg_catalog.oid;
	scan := pg_catalog.format('%s d', source);
	IF kind IN ('r', 'm') AND est > 60000 THEN
		scan := pg_catalog.format('%s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42)', source, 100 * 30000 / est);
		sampled := ' sampled';
	END IF;

	-- a number column's finite values; its deciles over the closed deals
	-- (one scan for all of them), as text of an array of its own type
	SELECT pg_catalog.string_agg(pg_catalog.format(
	           '(percentile_disc($1) WITHIN GROUP (ORDER BY %s))::text',
	           CASE WHEN types[k] IN ('numeric', 'real', 'double precision')
	                THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[k])
	                ELSE pg_catalog.format('d.%I', cols[k]) END), ', ' ORDER BY k)
	INTO num
	FROM pg_catalog.generate_subscripts(cols, 1) k WHERE kinds[k] = 'number';
	IF num IS NOT NULL THEN
		EXECUTE pg_catalog.format('SELECT ARRAY[%s] FROM %s WHERE dealrisk.outcome_class(d.outcome::text) IN (''won'', ''lost'')',
		                          num, scan)
			INTO deciles USING '{0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9}'::float8[];
	END IF;

	-- each column's level per deal (NULL when empty), counted by outcome
	-- class in one grouping set per column
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		IF kinds[i] = 'text' THEN
			lv := pg_catalog.format('CASE WHEN pg_catalog.btrim(d.%1$I::text) <> '''' THEN d.%1$I::text END', cols[i]);
		ELSE
			j := j + 1;
			lv := CASE WHEN deciles[j] IS NULL THEN 'NULL::text'
			           ELSE pg_catalog.format('CASE WHEN %1$s = ANY (%2$L::%3$s[]) THEN ''='' || (%1$s)::text ELSE pg_catalog.width_bucket(%1$s, %2$L::%3$s[])::text END',
			                                  CASE WHEN types[i] IN ('numeric', 'real', 'double precision')
			                                       THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[i])
			                                       ELSE pg_catalog.format('d.%I', cols[i]) END,
			                                  deciles[j], types[i]) END;
		END IF;
		sel := sel || pg_catalog.format(', %s AS l%s', lv, i);
		sets := sets || pg_catalog.format(', (cls, l%s)', i);
		which := which || pg_catalog.format(' WHEN GROUPING(l%1$s) = 0 THEN %1$s', i);
		val := val || pg_catalog.format(' WHEN GROUPING(l%1$s) = 0 THEN l%1$s', i);
	END LOOP;

	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH g AS (
			SELECT CASE %s END k, CASE %s END v, cls, count(*) n
			FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') cls %s FROM %s) x
			GROUP BY GROUPING SETS (%s)),
		lv AS (
			SELECT k, v, coalesce(sum(n) FILTER (WHERE cls = 'won'), 0) w, coalesce(sum(n) FILTER (WHERE cls = 'lost'), 0) l,
			       coalesce(sum(n) FILTER (WHERE cls = 'open'), 0) o
			FROM g GROUP BY k, v),
		tot AS (
			SELECT k, sum(w) w, sum(l) l, sum(o) o,
			       coalesce(sum(w + l) FILTER (WHERE v IS NOT NULL), 0) filled_closed,
			       coalesce(sum(o) FILTER (WHERE v IS NOT NULL), 0) filled_open
			FROM lv GROUP BY k),
		-- the score of a level's won deals and of its lost deals: the
		-- level's win rate without the deal, shrunk toward the overall rate
		sc AS (
			SELECT lv.k, s.score, sum(s.nw) nw, sum(s.nl) nl
			FROM lv JOIN tot USING (k),
			LATERAL (VALUES
				(pg_catalog.round((lv.w - 1 + 20 * tot.w / (tot.w + tot.l)) / (lv.w + lv.l - 1 + 20), 12), lv.w, 0::numeric),
				(pg_catalog.round((lv.w + 20 * tot.w / (tot.w + tot.l)) / (lv.w + lv.l - 1 + 20), 12), 0, lv.l)) s(score, nw, nl)
			WHERE tot.w > 0 AND tot.l > 0 AND lv.w + lv.l > 0
			GROUP BY lv.k, s.score),
		-- AUC: the chance that a won deal scores above a lost one (ties half)
		auc AS (
			SELECT k, sum(nw * (below + nl / 2)) / (sum(nw) * sum(nl)) auc
			FROM (SELECT k, nw, nl, coalesce(sum(nl) OVER (PARTITION BY k ORDER BY score
			                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) below
			      FROM sc) x
			GROUP BY k HAVING sum(nw) > 0 AND sum(nl) > 0),
		why AS (
			SELECT t.k,
			       CASE WHEN t.o >= 10 AND t.filled_open <= 0.05 * t.o AND t.filled_closed >= 0.5 * (t.w + t.l)
			            THEN pg_catalog.format('it is filled on %%s%%%% of the closed deals but on %%s%%%% of the %%s open deals%s: it is written when a deal closes, so it is unknown for the deals to be scored',
			                                   pg_catalog.round(100 * t.filled_closed / (t.w + t.l)),
			                                   pg_catalog.round(100 * t.filled_open / t.o), t.o) END fill,
			       CASE WHEN t.w >= 10 AND t.l >= 10 AND a.auc >= 0.95
			            THEN pg_catalog.format('its value alone separates won from lost closed deals almost perfectly (single-feature AUC %%s over %%s closed deals%s): it records the outcome rather than predicting it',
			                                   pg_catalog.round(a.auc, 3), t.w + t.l) END sep
			FROM tot t LEFT JOIN auc a USING (k))
		SELECT ($1::text[])[k], pg_catalog.concat_ws('; and ', fill, sep)
		FROM why WHERE fill IS NOT NULL OR sep IS NOT NULL
		ORDER BY k $q$, which, val, sel, scan, pg_catalog.substr(sets, 3), sampled, sampled)
		USING names;
END
$$;
COMMENT ON FUNCTION dealrisk._feature_leaks(regclass, text[]) IS
	'Feature columns of a source that record the outcome: filled on closed deals but empty on open ones, or separating won from lost almost perfectly on their own; one row per feature with the reason (internal)';

-- The feature specification learned from the closed deals of source that
-- pass filter: dictionaries, bin edges, typical stage times.  They are
-- learned from dict_source (a sample of source; default source itself); the
-- rep win-rate feature, which needs exact counts, is left as a placeholder
-- for the caller to fill from _census.
CREATE FUNCTION dealrisk._build_spec(source regclass, features text[], filter text,
	dict_source regclass DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols text[];
	types text[];
	want text[];
	f text;
	spec jsonb := '[]';
	skipped jsonb := '{}';
	n bigint;
	min_level bigint;
	levels jsonb;
	pooled jsonb;
	edges float8[];
	typical jsonb;
	mean float8;
	sd float8;
	t text;
	end_expr text;
	age_expr text;
	created_col text;
	closed_col text;
	stage_days text;
	dfilter text := filter;
	src regclass := source;
	entry text;
BEGIN
	source := coalesce(dict_source, source);	-- dictionaries read the sample
	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum),
	       pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, NULL) ORDER BY a.attnum)
	INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;

	IF features IS NULL THEN
		want := ARRAY['industry', 'region', 'product_type', 'lead_source',
		              'sales_rep_id', 'deal_amount', 'cycle_days', 'stage_time'];
		IF 'last_activity_date' = ANY (cols) THEN
			want := want || 'activity_gap'::text;
		END IF;
	ELSE
		want := features;
	END IF;

	EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, dfilter) INTO n;
	min_level := greatest(20, (n * 0.005)::bigint);
	-- dates as features.c reads them: an absent column or an infinite date
	-- is missing (NULL)
	created_col := dealrisk._finite_date('created_date', cols);
	closed_col := dealrisk._finite_date('closed_date', cols);
	-- the day a deal's clock stops: its close, else the as-of date
	end_expr := pg_catalog.format(
		'CASE WHEN dealrisk.is_won(d.outcome) IS NOT NULL AND (%1$s) IS NOT NULL THEN %1$s ELSE (SELECT dealrisk._as_of()) END',
		closed_col);
	-- a closed deal's cycle, else the days from creation to its close (or to
	-- the as-of date when that is missing)
	age_expr := pg_catalog.format(
		'CASE WHEN dealrisk.is_won(d.outcome) IS NOT NULL THEN coalesce(%s (%s) - (%s), (SELECT dealrisk._as_of()) - (%s)) ELSE (SELECT dealrisk._as_of()) - (%s) END',
		CASE WHEN 'sales_cycle_days' = ANY (cols)
		     THEN 'CASE WHEN d.sales_cycle_days::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.sales_cycle_days END,'
		     ELSE '' END,
		closed_col, created_col, created_col, created_col);
	stage_days := pg_catalog.format('(%s) - coalesce(%s, %s)', end_expr,
		dealrisk._finite_date('stage_entered_date', cols), created_col);

	FOREACH f IN ARRAY want LOOP
		-- 'column:linear' / 'column:bins': how a numeric column enters
		SELECT e.col, e.entry INTO f, entry FROM dealrisk._feature_entry(src, f) e;
		IF f = 'cycle_days' THEN
			-- closed deals: bins of the cycle; open deals: the survivor curve
			-- of the age (knots here, terms once fitted: _open_terms)
			edges := dealrisk._quantile_edges(source, age_expr, dfilter, '{0.1,0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || (pg_catalog.jsonb_build_object('name', 'cycle_days', 'kind', 'bins',
					'derived', 'age_days', 'edges', pg_catalog.to_jsonb(edges))
					|| CASE WHEN pg_catalog.cardinality(edges) = 5 THEN '{"quantiles": [0.1, 0.25, 0.5, 0.75, 0.9]}'
					        ELSE '{}' END::jsonb
					|| dealrisk._open_knots(source, src, age_expr, dfilter));
			END IF;
		ELSIF f = 'stage_time' THEN
			-- a stage that only won (or only lost) deals end in records the
			-- outcome: time in it would teach the model the answer, not the risk
			-- said in one line: "closed deals in 'Closed' all won; closed
			-- deals in 'Demo', 'Qualified' and 2 more all lost"
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.string_agg(pg_catalog.format(''closed deals in %%s all %%s'','
				'  CASE WHEN y.n <= 3 THEN y.l ELSE y.l || pg_catalog.format('' and %%s more'', y.n - 2) END,'
				'  CASE WHEN y.won THEN ''won'' ELSE ''lost'' END), ''; '' ORDER BY y.won DESC) FROM ('
				' SELECT x.r >= 0.99 won, count(*) n,'
				'  pg_catalog.array_to_string((pg_catalog.array_agg(pg_catalog.quote_literal(x.s) ORDER BY x.c DESC, x.s))'
				'   [1:CASE WHEN count(*) <= 3 THEN 3 ELSE 2 END], '', '') l'
				' FROM (SELECT d.deal_stage s, count(*) c, avg(dealrisk.is_won(d.outcome)::int) r'
				'  FROM %s d WHERE %s AND d.deal_stage IS NOT NULL GROUP BY 1) x'
				' WHERE x.c >= 0.05 * $1 AND (x.r >= 0.99 OR x.r <= 0.01) GROUP BY 1) y', source, dfilter)
				INTO t USING n;
			IF t IS NOT NULL THEN
				RAISE NOTICE 'dealrisk.train: stage_time left out: deal_stage gives the outcome away (%)', t;
				skipped := skipped || pg_catalog.jsonb_build_object('stage_time',
					pg_catalog.format('deal_stage gives the outcome away (%s)', t));
				CONTINUE;
			END IF;
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.jsonb_object_agg(s, m) FROM (SELECT d.deal_stage s,'
				' greatest(1, percentile_cont(0.5) WITHIN GROUP (ORDER BY (%s)::float8)) m'
				' FROM %s d WHERE %s AND d.deal_stage IS NOT NULL AND (%s) IS NOT NULL GROUP BY d.deal_stage) x',
				stage_days, source, dfilter, stage_days) INTO typical;
			IF typical IS NOT NULL THEN
				edges := dealrisk._quantile_edges(source,
					pg_catalog.format('(%s)::float8 / greatest(1, (%L::jsonb ->> d.deal_stage)::float8)',
					                  stage_days, typical),
					dfilter || ' AND d.deal_stage IS NOT NULL', '{0.25,0.5,0.75,0.9}');
				IF pg_catalog.cardinality(edges) > 0 THEN
					spec := spec || (pg_catalog.jsonb_build_object('name', 'stage_time', 'kind', 'bins',
						'derived', 'stage_ratio', 'edges', pg_catalog.to_jsonb(edges), 'typical', typical)
						|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.25, 0.5, 0.75, 0.9]}'
						        ELSE '{}' END::jsonb
						|| dealrisk._open_knots(source, src,
							pg_catalog.format('(%s)::float8 / greatest(1, (%L::jsonb ->> d.deal_stage)::float8)',
							                  stage_days, typical),
							dfilter || ' AND d.deal_stage IS NOT NULL'));
				END IF;
			END IF;
		ELSIF f = 'activity_gap' THEN
			IF NOT 'last_activity_date' = ANY (cols) THEN
				RAISE EXCEPTION 'feature "activity_gap" needs column "last_activity_date", which % lacks', src
					USING ERRCODE = 'undefined_column';
			END IF;
			edges := dealrisk._quantile_edges(source, pg_catalog.format('(%s) - (%s)', end_expr,
			                                  dealrisk._finite_date('last_activity_date', cols)),
			                                  dfilter, '{0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || (pg_catalog.jsonb_build_object('name', 'activity_gap', 'kind', 'bins',
					'derived', 'activity_gap', 'edges', pg_catalog.to_jsonb(edges))
					|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.25, 0.5, 0.75, 0.9]}'
					        ELSE '{}' END::jsonb);
			END IF;
		ELSIF f = 'sales_rep_id' THEN
			IF NOT f = ANY (cols) THEN
				RAISE EXCEPTION 'column "%" is missing from source %', f, src
					USING ERRCODE = 'undefined_column';
			END IF;
			spec := spec || pg_catalog.jsonb_build_object('name', 'rep_win_rate', 'kind', 'rate',
			                                              'column', f, 'pending', true);
		ELSIF f = ANY (cols) THEN
			t := types[pg_catalog.array_position(cols, f)];
			IF t IN ('text', 'character varying', 'character', 'boolean') THEN
				EXECUTE pg_catalog.format(
					'SELECT pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FILTER (WHERE c >= $1),'
					'       pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FILTER (WHERE c < $1)'
					' FROM (SELECT d.%I::text k, count(*) c FROM %s d WHERE %s AND d.%I IS NOT NULL GROUP BY 1) x',
					f, source, dfilter, f) INTO levels, pooled USING min_level;
				IF pooled IS NOT NULL THEN
					levels := coalesce(levels, '[]') || '"(other)"'::jsonb;
				END IF;
				IF levels IS NOT NULL THEN
					spec := spec || pg_catalog.jsonb_build_object('name', f, 'kind', 'categorical',
						'column', f, 'levels', levels, 'pooled', coalesce(pooled, '[]'));
				END IF;
			ELSIF t IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
				-- quintile bins (scorecard style: each bin its own weight, so
				-- an effect need not be a straight line), unless :linear
				IF entry IS DISTINCT FROM 'linear' THEN
					edges := dealrisk._quantile_edges(source, pg_catalog.format('d.%I', f), dfilter,
					                                  '{0.2,0.4,0.6,0.8}');
					IF pg_catalog.cardinality(edges) > 0 THEN
						-- (quantiles: explanations name the fifth a value is in)
						spec := spec || (pg_catalog.jsonb_build_object('name', f, 'kind', 'bins',
							'column', f, 'edges', pg_catalog.to_jsonb(edges))
							|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.2, 0.4, 0.6, 0.8]}'
							        ELSE '{}' END::jsonb);
					END IF;
				ELSE
					EXECUTE pg_catalog.format(
						'SELECT avg(d.%1$I::float8), stddev_pop(d.%1$I::float8) FROM %2$s d WHERE %3$s'
						' AND d.%1$I::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'')',
						f, source, dfilter) INTO mean, sd;
					spec := spec || pg_catalog.jsonb_build_object('name', f, 'kind', 'numeric',
						'column', f, 'mean', coalesce(mean, 0),
						'sd', CASE WHEN coalesce(sd, 0) > 1e-12 THEN sd ELSE 1 END);
				END IF;
			ELSE
				RAISE EXCEPTION 'column "%" of % has type %, which cannot be a feature', f, src, t
					USING ERRCODE = 'datatype_mismatch',
					      HINT = 'Features are text (categorical) or numeric columns; cast others in a view.';
			END IF;
		ELSE
			RAISE EXCEPTION 'feature "%" is neither a column of % nor a derived feature', f, src
				USING ERRCODE = 'undefined_column',
				      HINT = 'Derived features: cycle_days, stage_time, activity_gap (and sales_rep_id as a shrunk rep win rate).';
		END IF;
	END LOOP;
	IF pg_catalog.jsonb_array_length(spec) = 0 THEN
		RAISE EXCEPTION 'no usable feature in %', src USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- (left_out: why a feature asked for was left out, for train() to
	-- record; not part of the stored specification)
	RETURN pg_catalog.jsonb_build_object('format', 'dealrisk/1', 'features', spec)
		|| CASE WHEN skipped <> '{}' THEN pg_catalog.jsonb_build_object('left_out', skipped) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION dealrisk._build_spec(regclass, text[], text, regclass) IS
	'Learns a feature specification (dictionaries, bins, typical stage times) from the closed deals of a source (internal)';

CREATE FUNCTION dealrisk._as_of()
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(pg_catalog.current_setting('dealrisk.as_of_date', true), '')::date, CURRENT_DATE) $$;
COMMENT ON FUNCTION dealrisk._as_of() IS
	'The date open deals are scored at: dealrisk.as_of_date when set, else today (internal)';

-- Fit the coefficients of a spec by IRLS on the closed deals passing filter
-- and split (see _irls_pass), starting from beta0 (NULL: the intercept at the
-- log-odds of prior).  Each iteration is one aggregate pass; it stops when
-- the Newton step promises less than tolerance (relative) more
-- log-likelihood, and returns the coefficients after that last step.
CREATE FUNCTION dealrisk._fit(source regclass, spec jsonb, filter text, split int, cutoff date,
	ref date, halflife float8, l2 float8, beta0 float8[], prior float8,
	eval_spec jsonb DEFAULT NULL, eval_cutoff date DEFAULT NULL, tolerance float8 DEFAULT 1e-5,
	OUT beta float8[], OUT iterations int, OUT converged boolean, OUT loglik float8,
	OUT eval_metrics jsonb, OUT n_rows bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p int := dealrisk._validate_model(spec, NULL);
	state float8[];
	next float8[];
	gain float8;
	q text := pg_catalog.format('SELECT dealrisk._irls_pass($1, $2, $3, $4, $5, $6, %s) FROM %s d WHERE %s',
	                            dealrisk._row_args(source, spec), source, filter);
BEGIN
	beta := coalesce(beta0, pg_catalog.array_fill(0::float8, ARRAY[p]));
	IF beta0 IS NULL AND prior > 0 AND prior < 1 THEN
		beta[1] := ln(prior / (1 - prior));
	END IF;
	converged := false;
	FOR i IN 1 .. 30 LOOP
		IF i = 1 AND eval_spec IS NOT NULL THEN
			-- the same scan also scores the holdout (closed from eval_cutoff
			-- on) with the starting coefficients and eval_spec
			EXECUTE pg_catalog.format('SELECT dealrisk._irls_pass($1, $2, $3, $4, $5, $6, %s),'
			                          ' dealrisk._evaluate($7, $2, 2, $8, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec), dealrisk._row_args(source, eval_spec),
			                          source, filter)
				INTO state, eval_metrics USING spec, beta, split, cutoff, ref, halflife, eval_spec, eval_cutoff;
		ELSE
			EXECUTE q INTO state USING spec, beta, split, cutoff, ref, halflife;
		END IF;
		IF state IS NULL OR pg_catalog.cardinality(state) = 0 OR state[1] = 0 THEN
			RAISE EXCEPTION 'no closed deal in % to train on', source USING ERRCODE = 'no_data_found';
		END IF;
		n_rows := state[1];
		loglik := state[3] - l2 / 2 * (SELECT coalesce(sum(b * b), 0) FROM pg_catalog.unnest(beta[2:]) b);
		RAISE NOTICE 'dealrisk.train: iteration %, penalised log-likelihood %', i, pg_catalog.round(loglik::numeric, 4);
		next := dealrisk._irls_solve(state, beta, l2);
		gain := dealrisk._irls_decrement(state, beta, next, l2);
		beta := next;
		iterations := i;
		-- Newton converges quadratically: once a step promises less than
		-- the tolerance, what is left after it is negligible
		IF gain <= tolerance * (abs(loglik) + 1) THEN
			converged := true;
			EXIT;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION dealrisk._fit(regclass, jsonb, text, int, date, date, float8, float8, float8[], float8, jsonb, date, float8) IS
	'IRLS driver: one aggregate pass per Newton step until the step promises no more gain (internal)';

-- A holdout AUC above dealrisk.max_plausible_auc (0.95) is a problem too:
-- deals are won and lost for reasons no CRM records, so a model that ranks
-- them almost perfectly has most likely been shown the outcome (a field
-- filled in at close) and would call every open deal safe.
CREATE FUNCTION dealrisk._quality_problem(metrics jsonb)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN metrics->>'auc' IS NULL THEN 'it has no holdout AUC (the holdout had only one outcome)'
		WHEN (metrics->>'auc')::float8 > coalesce(nullif(pg_catalog.current_setting('dealrisk.max_plausible_auc', true), ''), '0.95')::float8 THEN
			pg_catalog.format('its holdout AUC %s is implausibly high for CRM data (above dealrisk.max_plausible_auc = %s): a feature most likely records the outcome, such as a value or reason filled in when a deal closes',
			                  pg_catalog.round((metrics->>'auc')::numeric, 3),
			                  coalesce(nullif(pg_catalog.current_setting('dealrisk.max_plausible_auc', true), ''), '0.95'))
		WHEN (metrics->>'auc')::float8 < 0.55 THEN
			pg_catalog.format('its holdout AUC %s is below 0.55: it ranks deals little better than chance',
			                  pg_catalog.round((metrics->>'auc')::numeric, 3))
		WHEN (metrics->>'brier')::float8 >= (metrics->>'brier_base')::float8 THEN
			pg_catalog.format('its holdout Brier score %s is no better than always predicting the base rate (%s)',
			                  pg_catalog.round((metrics->>'brier')::numeric, 4),
			                  pg_catalog.round((metrics->>'brier_base')::numeric, 4))
	END
$$;
COMMENT ON FUNCTION dealrisk._quality_problem(jsonb) IS
	'Why a model''s holdout metrics are not good enough (or too good to be true) to activate, or NULL when they are fine (internal)';

CREATE FUNCTION dealrisk.activate(model_id bigint, force boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
	problem text;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM dealrisk._validate_model(m.feature_spec, m.coefficients);
	problem := dealrisk._quality_problem(m.metrics);
	IF problem IS NOT NULL AND NOT force THEN
		RAISE EXCEPTION 'model % ("%") was not activated: %', m.id, m.name, problem
			USING ERRCODE = 'check_violation',
			      HINT = pg_catalog.format('Collect more or better data, or pass force => true: SELECT dealrisk.activate(%s, force => true).', m.id);
	END IF;
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('dealrisk.models:' || m.name));
	UPDATE dealrisk.models SET active = false WHERE name = m.name AND active AND id <> m.id;
	UPDATE dealrisk.models SET active = true, activated_at = pg_catalog.now() WHERE id = m.id;
	INSERT INTO dealrisk.model_activations (name, model_id, forced) VALUES (m.name, m.id, problem IS NOT NULL);
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.activate(bigint, boolean) IS
	'Makes a model the active one of its name; refused (unless force) when its holdout AUC < 0.55, implausibly high (> dealrisk.max_plausible_auc) or its Brier score is no better than the base rate';

CREATE FUNCTION dealrisk.rollback(name text DEFAULT 'default')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur bigint;
	prev bigint;
BEGIN
	SELECT id INTO cur FROM dealrisk.models m WHERE m.name = rollback.name AND m.active;
	SELECT a.model_id INTO prev FROM dealrisk.model_activations a
	WHERE a.name = rollback.name AND a.model_id IS DISTINCT FROM cur
	  AND a.activated_at < coalesce((SELECT max(b.activated_at) FROM dealrisk.model_activations b
	                                 WHERE b.name = rollback.name AND b.model_id = cur), 'infinity')
	ORDER BY a.activated_at DESC LIMIT 1;
	IF prev IS NULL THEN
		RAISE EXCEPTION 'model name "%" has no previously active model to return to', rollback.name
			USING ERRCODE = 'no_data_found';
	END IF;
	UPDATE dealrisk.models SET active = false WHERE models.name = rollback.name AND active;
	UPDATE dealrisk.models SET active = true, activated_at = pg_catalog.now() WHERE id = prev;
	INSERT INTO dealrisk.model_activations (name, model_id, forced) VALUES (rollback.name, prev, true);
	RETURN prev;
END
$$;
COMMENT ON FUNCTION dealrisk.rollback(text) IS
	'Re-activates the model that was active before the current one of this name; returns its id';

CREATE FUNCTION dealrisk.train(source regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	closed_filter text := 'dealrisk.is_won(d.outcome) IS NOT NULL';
	has_closed_date boolean;
	n_won bigint;
	n_lost bigint;
	min_n int;
	halflife float8;
	cutoff date;
	ref date;
	dict_source regclass;
	train_filter text;
	test_filter text;
	split_train int := 0;
	train_expr text;
	n_rows float8;
	is_table boolean;
	share float8;
	n_sampled bigint;
	resampled boolean := false;
	rate_key text;
	census record;
	spec jsonb;
	spec_train jsonb;
	pos int;
	fit record;
	test_metrics jsonb;
	final_fit record;
	new_id bigint;
	problem text;
	pos_col name;
	pos_type oid;
	has_created boolean;
	has_cycle boolean;
	want text[];
	kept text[] := '{}';
	kept_cols text[] := '{}';
	feat text;
	fcol text;
	why text;
	left_out jsonb := '{}';
	leak record;
	leaks text;
	split_why text;
	pre record;
	preflight jsonb := '[]';
BEGIN
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings
	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	halflife := pg_catalog.current_setting('dealrisk.recency_halflife_days')::float8;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF l2 IS NULL OR NOT (l2 >= 0) OR l2 IN ('Infinity', 'NaN') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', coalesce(l2::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF holdout IS NULL OR NOT (holdout > 0 AND holdout < 0.9) THEN
		RAISE EXCEPTION 'holdout must be a share between 0 and 0.9, got %', coalesce(holdout::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- activation is the operator's: a role that may not activate (an
	-- analyst) trains candidates, and hears so before the work is done
	IF activate AND NOT (pg_catalog.has_function_privilege('dealrisk.activate(bigint, boolean)', 'EXECUTE')
	                     AND pg_catalog.has_column_privilege('dealrisk.models', 'active', 'UPDATE')
	                     AND pg_catalog.has_table_privilege('dealrisk.model_activations', 'INSERT')) THEN
		RAISE EXCEPTION 'role % may train models but not activate them', CURRENT_USER
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Train a candidate with dealrisk.train(..., activate => false); a role that may activate models (the operator) activates it with dealrisk.activate(id).';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	-- the model reads labels and stages as text (src/features.c): say so
	-- before a pass trips over another type
	SELECT a.attname, a.atttypid INTO pos_col, pos_type
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname IN ('outcome', 'deal_stage')
	  AND a.atttypid NOT IN ('text'::regtype::pg_catalog.oid, 'varchar'::regtype::pg_catalog.oid, 'bpchar'::regtype::pg_catalog.oid)
	ORDER BY a.attnum LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of source % has type %, which the model cannot read', pos_col, source,
			pg_catalog.format_type(pos_type, NULL)
			USING ERRCODE = 'datatype_mismatch',
			      HINT = pg_catalog.format('Cast it to text in a view of yours (%I::text AS %I) and train on the view; see docs/data-contract.md.', pos_col, pos_col);
	END IF;
	-- The preflight: an error stops training; a warning is a NOTICE and
	-- stays in the model's metrics (missing columns and leaks are reported
	-- feature by feature below).
	FOR pre IN SELECT * FROM dealrisk.check_source(source) c WHERE c.severity IN ('error', 'warning') LOOP
		IF pre.severity = 'error' THEN
			RAISE EXCEPTION 'cannot train on %: %', source, pre.finding
				USING ERRCODE = CASE pre."check" WHEN 'outcome_labels' THEN 'invalid_parameter_value'
				                                 WHEN 'outcomes' THEN 'insufficient_resources'
				                                 WHEN 'column_types' THEN 'datatype_mismatch'
				                                 ELSE 'data_exception' END,
				      DETAIL = pg_catalog.format('dealrisk.check_source(%L) reports it as %s.', source::text, pre."check"),
				      HINT = coalesce(pre.hint, 'See SELECT * FROM dealrisk.check_source(source).');
		END IF;
		preflight := preflight || pg_catalog.jsonb_build_object('check', pre."check", 'finding', pre.finding);
		IF pre."check" NOT IN ('columns', 'outcome_leaks') THEN
			RAISE NOTICE 'dealrisk.train: % (%)', pre.finding, pre."check";
		END IF;
	END LOOP;
	has_closed_date := dealrisk._has_column(source, 'closed_date');
	has_created := dealrisk._has_column(source, 'created_date');
	has_cycle := dealrisk._has_column(source, 'sales_cycle_days');

	-- The features: those asked for, or the contract's.  A default one
	-- the source cannot support is left out (a NOTICE, and metrics ->
	-- 'features_left_out' say why); one asked for is an error.  The dates
	-- decide the derived ones: a deal's age needs created_date for open
	-- deals and closed_date (or sales_cycle_days) for closed ones; time in
	-- stage and the activity gap run to the close, so they need closed_date.
	want := coalesce(features, ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id',
	                                 'deal_amount', 'cycle_days', 'stage_time', 'activity_gap']);
	FOREACH feat IN ARRAY want LOOP
		fcol := (dealrisk._feature_entry(source, feat)).col;
		IF fcol = ANY (kept_cols) THEN
			RAISE EXCEPTION 'feature "%" is named twice', fcol USING ERRCODE = 'invalid_parameter_value';
		END IF;
		why := CASE
			WHEN fcol = 'cycle_days' AND NOT has_created THEN
				'the source has no created_date column, so the age of an open deal is unknown'
			WHEN fcol = 'cycle_days' AND NOT (has_closed_date OR has_cycle) THEN
				'the source has neither closed_date nor sales_cycle_days, so how long a closed deal took is unknown'
			WHEN fcol = 'stage_time' AND NOT dealrisk._has_column(source, 'deal_stage') THEN
				'the source has no deal_stage column'
			WHEN fcol = 'stage_time' AND NOT has_created THEN
				'the source has no created_date column, which time in stage counts from when stage_entered_date is empty'
			WHEN fcol = 'stage_time' AND NOT has_closed_date THEN
				'the source has no closed_date column, so how long a closed deal stayed in its stage is unknown'
			WHEN fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date') THEN
				'the source has no last_activity_date column'
			WHEN fcol = 'activity_gap' AND NOT has_closed_date THEN
				'the source has no closed_date column, so the gap before a deal closed is unknown'
			WHEN features IS NULL AND fcol NOT IN ('cycle_days', 'stage_time', 'activity_gap')
			     AND NOT dealrisk._has_column(source, fcol) THEN
				pg_catalog.format('the source has no %s column', fcol)
		END;
		IF why IS NOT NULL AND features IS NOT NULL THEN
			RAISE EXCEPTION 'feature "%" cannot be learned from %: %', feat, source, why
				USING ERRCODE = 'undefined_column',
				      HINT = 'Leave it out of features, or add the column (a view can map it).';
		ELSIF why IS NOT NULL THEN
			-- the default activity gap of a source without activity dates
			-- was always left out quietly
			IF NOT (fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date')) THEN
				RAISE NOTICE 'dealrisk.train: feature % left out: %', fcol, why;
			END IF;
			left_out := left_out || pg_catalog.jsonb_build_object(fcol, why);
		ELSE
			kept := kept || feat;
			kept_cols := kept_cols || fcol;
		END IF;
	END LOOP;
	-- outcome leaks: a column written at close, or one that alone tells
	-- won from lost, would teach the model the answer
	FOR leak IN SELECT * FROM dealrisk._feature_leaks(source, kept) LOOP
		RAISE NOTICE 'dealrisk.train: feature % left out: %', leak.feature, leak.reason;
		fcol := kept_cols[pg_catalog.array_position(kept, leak.feature)];
		left_out := left_out || pg_catalog.jsonb_build_object(fcol, 'outcome leak: ' || leak.reason);
		kept_cols := pg_catalog.array_remove(kept_cols, fcol);
		kept := pg_catalog.array_remove(kept, leak.feature);
		leaks := pg_catalog.concat_ws('; ', leaks, pg_catalog.format('%s: %s', leak.feature, leak.reason));
	END LOOP;
	IF pg_catalog.cardinality(kept) = 0 AND leaks IS NOT NULL THEN
		RAISE EXCEPTION 'every feature of % leaks the outcome: nothing is left to train on', source
			USING ERRCODE = 'data_exception', DETAIL = leaks,
			      HINT = 'Train on columns that are known while a deal is still open (features => ARRAY[...]); see docs/data-contract.md.';
	ELSIF pg_catalog.cardinality(kept) = 0 THEN
		RAISE EXCEPTION 'no usable feature in %', source USING ERRCODE = 'invalid_parameter_value',
			DETAIL = (SELECT pg_catalog.string_agg(pg_catalog.format('%s: %s', k, v), '; ') FROM pg_catalog.jsonb_each_text(left_out) x(k, v));
	END IF;

	-- Dictionaries and bin edges come from about 50,000 closed deals at most
	-- (a repeatable sample of a table's pages, or of a view's rows by deal_id,
	-- read once into a temporary table); counts and fits read every deal.
	-- A view's closed deals are counted to size its sample (and a table's
	-- when the catalog has no estimate).  A table's sample is first sized
	-- from the catalog's row estimate (no scan), then,
	-- when open deals or a stale estimate left it with fewer than 40,000
	-- closed deals, taken again at the share that gives 50,000 — or not at
	-- all when that share is the whole table.
	SELECT c.relkind IN ('r', 'm'), c.reltuples INTO is_table, n_rows
	FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF NOT is_table OR n_rows < 1 THEN
		-- a view, or a table never vacuumed or analyzed: count
		EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, closed_filter) INTO n_rows;
	END IF;
	dict_source := source;
	share := CASE WHEN n_rows >= 1 THEN 50000 / n_rows ELSE 1 END;
	WHILE share < 1 LOOP
		DROP TABLE IF EXISTS pg_temp.dealrisk_train_sample;
		IF is_table THEN
			-- a table: read only a repeatable sample of its pages
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42) WHERE %s',
			                          source, 100 * share, closed_filter);
		ELSE
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d WHERE %s AND pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 100000 < %s',
			                          source, closed_filter, ceil(100000 * share)::int);
		END IF;
		GET DIAGNOSTICS n_sampled = ROW_COUNT;
		dict_source := 'pg_temp.dealrisk_train_sample'::regclass;
		EXIT WHEN NOT is_table OR resampled;
		-- the share of the table that the closed deals found imply for
		-- 50,000 of them: all of it (no sample), or another sample when
		-- this one came out short
		IF share * 50000 / greatest(n_sampled, 1) >= 1 THEN
			DROP TABLE pg_temp.dealrisk_train_sample;
			dict_source := source;
			EXIT;
		END IF;
		EXIT WHEN n_sampled >= 40000;
		share := share * 50000 / greatest(n_sampled, 1);
		resampled := true;
	END LOOP;

	IF has_closed_date THEN
		EXECUTE pg_catalog.format('SELECT percentile_disc($1) WITHIN GROUP (ORDER BY d.closed_date)'
		                          ' FROM %s d WHERE %s AND pg_catalog.isfinite(d.closed_date)', dict_source, closed_filter)
			INTO cutoff USING 1 - holdout;
	END IF;
	-- the newest closes are the holdout; without close dates (no column, or
	-- none filled in), a hash of deal_id picks it
	IF cutoff IS NOT NULL THEN
		train_expr := pg_catalog.format('d.closed_date < %L::date', cutoff);
		-- the passes skip open deals and pick their split themselves
		train_filter := 'true';
		split_train := 1;
	ELSE
		train_expr := pg_catalog.format('pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 1000 >= %s', (holdout * 1000)::int);
		train_filter := pg_catalog.format('%s AND %s', closed_filter, train_expr);
		test_filter := pg_catalog.format('%s AND NOT (%s)', closed_filter, train_expr);
		halflife := 0;
		split_why := CASE WHEN has_closed_date THEN 'no closed deal has a closed_date'
		                  ELSE 'the source has no closed_date column' END;
		RAISE NOTICE 'dealrisk.train: holdout chosen by a hash of deal_id and no recency weighting: %', split_why;
	END IF;

	-- the exact counts, the newest close and the rep win rates (over every
	-- closed deal, and over the training split for the holdout model), from
	-- one scan
	IF 'sales_rep_id' = ANY (kept) THEN
		rate_key := 'sales_rep_id';
	END IF;
	SELECT * INTO census FROM dealrisk._census(source, rate_key, train_expr, has_closed_date);
	n_won := census.n_won;
	n_lost := census.n_lost;
	ref := census.ref;
	IF n_won < min_n OR n_lost < min_n THEN
		RAISE EXCEPTION 'not enough closed deals to train on: % has % won and % lost, at least % of each are needed',
			source, n_won, n_lost, min_n
			USING ERRCODE = 'insufficient_resources',
			      HINT = 'Collect more closed deals, or lower dealrisk.min_training_deals (at the price of a weaker model).';
	END IF;

	-- 1. the dictionaries, learned once from the closed deals (of the
	-- sample); the rep win rates from the census
	spec := dealrisk._build_spec(source, kept, closed_filter, dict_source);
	left_out := left_out || coalesce(spec->'left_out', '{}');
	spec := spec - 'left_out';
	spec_train := spec;
	SELECT o - 1 INTO pos FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o)
	WHERE f->>'kind' = 'rate';
	IF pos IS NOT NULL THEN
		IF census.rate_all IS NULL OR census.rate_train IS NULL THEN
			-- no rep on any (older) closed deal: leave the feature out
			spec := pg_catalog.jsonb_set(spec, '{features}', (spec->'features') - pos);
			spec_train := spec;
		ELSE
			spec := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_all);
			spec_train := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_train);
		END IF;
	END IF;

	-- 2. fit on the older deals.  This fit is only measured (and starts the
	-- refit), so it stops once a Newton step promises less than 1e-3 of the
	-- log-likelihood: Newton's quadratic convergence leaves next to nothing
	-- after that step (docs/model.md); the stored model is fitted to 1e-5.
	fit := dealrisk._fit(source, spec_train, train_filter, split_train, cutoff, ref, halflife, l2, NULL,
	                     n_won::float8 / (n_won + n_lost), tolerance => 1e-3);

	-- 3. refit on every closed deal for the stored model, from the holdout
	-- fit; its first pass also measures the holdout fit on the newest deals
	IF cutoff IS NOT NULL THEN
		final_fit := dealrisk._fit(source, spec, 'true', 0, NULL, ref, halflife, l2, fit.beta, NULL,
		                           spec_train, cutoff);
		test_metrics := final_fit.eval_metrics;
	ELSE
		EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d WHERE %s',
		                          dealrisk._row_args(source, spec_train), source, test_filter)
			INTO test_metrics USING spec_train, fit.beta;
		final_fit := dealrisk._fit(source, spec, closed_filter, 0, NULL, ref, halflife, l2, fit.beta, NULL);
	END IF;
	IF test_metrics IS NULL THEN
		RAISE EXCEPTION 'the holdout of % is empty', source USING ERRCODE = 'no_data_found',
			HINT = 'Use a larger holdout share.';
	END IF;
	-- a feature kept so far that the specification lacks learned nothing
	-- from the closed deals (no value, or _build_spec said why)
	SELECT left_out || coalesce(pg_catalog.jsonb_object_agg(k,
	           'not learned from the closed deals: none of them has a usable value'), '{}')
	INTO left_out
	FROM pg_catalog.unnest(kept_cols) k
	WHERE NOT left_out ? k AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(spec->'features') e
	                  WHERE e->>'name' = CASE k WHEN 'sales_rep_id' THEN 'rep_win_rate' ELSE k END);

	-- open deals: the survivor curves of age and stage time, fitted with
	-- the stored coefficients on the closed deals (of the sample)
	spec := dealrisk._open_terms(dict_source, closed_filter, spec, final_fit.beta, ref, halflife);

	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (train.name, source::text, spec || pg_catalog.jsonb_build_object('l2', l2, 'recency_halflife_days', halflife),
	        final_fit.beta,
	        test_metrics || pg_catalog.jsonb_build_object(
	            'n_train', fit.n_rows,
	            'n_test', (test_metrics->>'n')::bigint,
	            'won_total', n_won, 'lost_total', n_lost,
	            'iterations', final_fit.iterations, 'converged', final_fit.converged,
	            'holdout_iterations', fit.iterations, 'holdout', holdout,
	            'holdout_from', cutoff,
	            'holdout_split', CASE WHEN cutoff IS NOT NULL THEN 'closed_date' ELSE 'deal_id hash' END,
	            'recency_weighted', halflife > 0,
	            'features_left_out', left_out,
	            'preflight', preflight)
	        || CASE WHEN split_why IS NOT NULL
	                THEN pg_catalog.jsonb_build_object('holdout_split_reason', split_why) ELSE '{}' END)
	RETURNING id INTO new_id;

	IF activate THEN
		problem := dealrisk._quality_problem(test_metrics);
		IF problem IS NULL THEN
			PERFORM dealrisk.activate(new_id);
		ELSE
			RAISE WARNING 'model % ("%") was stored but not activated: %', new_id, name, problem
				USING HINT = pg_catalog.format('Inspect it with SELECT metrics FROM dealrisk.models WHERE id = %s; activate anyway with dealrisk.activate(%s, force => true).', new_id, new_id);
		END IF;
	END IF;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean) IS
	'Trains an L2-regularised logistic deal risk model on the closed deals of source after its preflight (check_source(): errors stop it, warnings go into metrics->''preflight''; IRLS, one parallel aggregate pass per iteration), leaving out features the source''s dates cannot support and features that leak the outcome (metrics->''features_left_out''), measures it on the newest holdout share (a hash of deal_id without close dates), refits on all, stores it in dealrisk.models and activates it if good enough and the caller may (activate => false: a candidate); returns the model id';

CREATE FUNCTION dealrisk._deal_risk_row(model text, row_type regtype, columns text[], VARIADIC "any")
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk_row'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._deal_risk_row(text, regtype, text[], "any") IS
	'deal_risk of a row passed as its column values; the planner calls it for deal_risk(d) on a table (internal)';

CREATE FUNCTION dealrisk._deal_risk_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_deal_risk_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._deal_risk_support(internal) IS
	'Planner support for deal_risk: passes a table''s columns instead of building its whole row (internal)';

CREATE FUNCTION dealrisk._scoring_model(model text)
RETURNS bigint AS 'MODULE_PATHNAME', 'dr_scoring_model_id'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._scoring_model(text) IS
	'The id of the model deal_risk(d, model) scores with in this snapshot; refresh() writes it beside each score (internal)';

CREATE FUNCTION dealrisk.deal_risk(deal record)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk'
LANGUAGE C STABLE PARALLEL SAFE SUPPORT dealrisk._deal_risk_support;
COMMENT ON FUNCTION dealrisk.deal_risk(record) IS
	'Risk that a deal is lost, 0-100, from the active ''default'' model; works on any row with the model''s feature columns';

CREATE FUNCTION dealrisk.deal_risk(deal record, model text)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk'
LANGUAGE C STABLE PARALLEL SAFE SUPPORT dealrisk._deal_risk_support;
COMMENT ON FUNCTION dealrisk.deal_risk(record, text) IS
	'Risk that a deal is lost, 0-100, from the active model of the given name';

CREATE FUNCTION dealrisk.deal_risk_explain(deal record, model text DEFAULT 'default',
	OUT factor text, OUT value text, OUT effect float8, OUT reason text)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'dr_deal_risk_explain'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION dealrisk.deal_risk_explain(record, text) IS
	'Why a deal scores as it does: per feature, its value, its effect in risk points (risk minus risk with the feature at baseline) and a plain-words reason; biggest risk first';

CREATE FUNCTION dealrisk.risk_band(score float8)
RETURNS text AS 'MODULE_PATHNAME', 'dr_risk_band'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.risk_band(float8) IS
	'low / medium / high / critical for a risk score, at the thresholds dealrisk.band_medium (30), band_high (60), band_critical (80)';

-- Recommended actions: a configuration view over the shipped rules and your
-- edits, like dealrisk.stages (see src/outcome.sql).
CREATE TABLE dealrisk.action_rule_defaults (
	id          int PRIMARY KEY,
	priority    int NOT NULL,
	factor      text NOT NULL,
	min_effect  float8 NOT NULL,
	min_risk    float8 NOT NULL,
	action      text NOT NULL
);
GRANT SELECT ON dealrisk.action_rule_defaults TO PUBLIC;
COMMENT ON TABLE dealrisk.action_rule_defaults IS
	'The action rules dealrisk ships with (read dealrisk.action_rules, which applies your edits)';
INSERT INTO dealrisk.action_rule_defaults (id, priority, factor, min_effect, min_risk, action) VALUES
	(1, 10, 'stage_time', 3, 30, 'Call the client today, or mark the deal Lost to clean the pipeline'),
	(2, 20, 'activity_gap', 3, 30, 'Log the last contact or book a call this week: no recent activity is on record'),
	(3, 30, 'rep_win_rate', 3, 30, 'Pair the rep with a senior seller for the next meeting'),
	(4, 40, 'lead_source', 3, 30, 'Re-qualify: confirm budget, authority and timeline before investing more time'),
	(5, 50, 'cycle_days', 3, 30, 'Agree a mutual close plan with dated next steps'),
	(6, 60, 'industry', 3, 30, 'Bring in a reference customer or a specialist from this industry'),
	(7, 70, 'deal_amount', 3, 30, 'Check the deal size against the buyer''s budget; consider a phased offer'),
	(8, 900, '*', 0, 60, 'Review the deal with the sales manager this week'),
	(9, 1000, '*', -1e300, 0, 'On track: keep the next step on the calendar');

CREATE TABLE dealrisk.action_rule_edits (
	id          int PRIMARY KEY,
	priority    int,
	factor      text,
	min_effect  float8,
	min_risk    float8,
	action      text CHECK (pg_catalog.btrim(action) <> ''),
	removed     boolean NOT NULL DEFAULT false,
	CHECK (removed OR (priority IS NOT NULL AND factor IS NOT NULL AND min_effect IS NOT NULL
	                   AND min_risk IS NOT NULL AND action IS NOT NULL))
);
COMMENT ON TABLE dealrisk.action_rule_edits IS
	'Your edits of dealrisk.action_rules: rules added or changed, and shipped rules removed (removed = true); kept by pg_dump. Edit dealrisk.action_rules, not this table.';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.action_rule_edits', '');
-- ids of the rules you add start above the shipped ones
CREATE SEQUENCE dealrisk.action_rules_id_seq AS int START 101;
SELECT pg_catalog.pg_extension_config_dump('dealrisk.action_rules_id_seq', '');

CREATE VIEW dealrisk.action_rules AS
	SELECT e.id, e.priority, e.factor, e.min_effect, e.min_risk, e.action
	FROM dealrisk.action_rule_edits e WHERE NOT e.removed
	UNION ALL
	SELECT d.id, d.priority, d.factor, d.min_effect, d.min_risk, d.action FROM dealrisk.action_rule_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.action_rule_edits e WHERE e.id OPERATOR(pg_catalog.=) d.id);
ALTER VIEW dealrisk.action_rules ALTER COLUMN id SET DEFAULT pg_catalog.nextval('dealrisk.action_rules_id_seq'::regclass);
ALTER VIEW dealrisk.action_rules ALTER COLUMN priority SET DEFAULT 100;
ALTER VIEW dealrisk.action_rules ALTER COLUMN min_effect SET DEFAULT 0;
ALTER VIEW dealrisk.action_rules ALTER COLUMN min_risk SET DEFAULT 0;
COMMENT ON VIEW dealrisk.action_rules IS
	'Recommended actions: for a deal whose risk is at least min_risk, the rule of the factor (a feature name of deal_risk_explain) that adds the most risk, at least min_effect points; * rules apply when no factor rule does; priority breaks ties. Edit it (INSERT, UPDATE, DELETE); your edits are kept in dealrisk.action_rule_edits and survive pg_dump/pg_restore.';
CREATE TRIGGER action_rules_edit INSTEAD OF INSERT OR UPDATE OR DELETE ON dealrisk.action_rules
	FOR EACH ROW EXECUTE FUNCTION dealrisk._config_edit('dealrisk.action_rule_defaults', 'dealrisk.action_rule_edits', 'id');

CREATE FUNCTION dealrisk.recommended_action(deal record, model text DEFAULT 'default')
RETURNS text AS 'MODULE_PATHNAME', 'dr_recommended_action'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.recommended_action(record, text) IS
	'The recommended action for a deal: the dealrisk.action_rules rule of the factor that adds the most risk (see the table''s comment)';

CREATE FUNCTION dealrisk.export_model(model_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN pg_catalog.jsonb_build_object(
		'format', 'dealrisk-model/1', 'id', m.id, 'name', m.name, 'created_at', m.created_at,
		'source', m.source, 'spec', m.feature_spec,
		'coefficients', pg_catalog.to_jsonb(m.coefficients), 'metrics', m.metrics);
END
$$;
COMMENT ON FUNCTION dealrisk.export_model(bigint) IS
	'A model as JSON (format dealrisk-model/1, see docs/model.md): spec, coefficients (intercept first), metrics';

CREATE FUNCTION dealrisk.import_model(model jsonb, name text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coefs float8[];
	new_id bigint;
BEGIN
	IF model IS NULL OR pg_catalog.jsonb_typeof(model) <> 'object' THEN
		RAISE EXCEPTION 'a model to import is a JSON object, got %', coalesce(pg_catalog.jsonb_typeof(model), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'See docs/model.md for the format.';
	END IF;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF model->>'format' IS DISTINCT FROM 'dealrisk-model/1' THEN
		RAISE EXCEPTION 'unknown model format %', coalesce(pg_catalog.quote_literal(model->>'format'), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Set "format": "dealrisk-model/1"; see docs/model.md.';
	END IF;
	IF pg_catalog.jsonb_typeof(model->'coefficients') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the model has no "coefficients" array' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(model->'coefficients') c
	           WHERE pg_catalog.jsonb_typeof(c) <> 'number') THEN
		RAISE EXCEPTION 'every coefficient must be a JSON number' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	coefs := ARRAY(SELECT c::float8 FROM pg_catalog.jsonb_array_elements_text(model->'coefficients') c);
	PERFORM dealrisk._validate_model(model->'spec', coefs);
	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (name, model->>'source', model->'spec', coefs,
	        coalesce(model->'metrics', '{}') || '{"imported": true}')
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION dealrisk.import_model(jsonb, text) IS
	'Stores a model exported by export_model or fitted elsewhere (format in docs/model.md) after checking its dimensions, numbers and feature kinds; not activated';

CREATE FUNCTION dealrisk.evaluate(model_id bigint, source regclass,
	OUT auc float8, OUT log_loss float8, OUT brier float8, OUT brier_base float8,
	OUT accuracy float8, OUT base_rate float8, OUT n bigint, OUT calibration jsonb)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
	r jsonb;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d',
	                          dealrisk._row_args(source, m.feature_spec), source)
		INTO r USING m.feature_spec, m.coefficients;
	IF r IS NULL THEN
		RAISE EXCEPTION 'source % has no closed deal to evaluate on', source USING ERRCODE = 'no_data_found';
	END IF;
	auc := (r->>'auc')::float8;
	log_loss := (r->>'log_loss')::float8;
	brier := (r->>'brier')::float8;
	brier_base := (r->>'brier_base')::float8;
	accuracy := (r->>'accuracy')::float8;
	base_rate := (r->>'base_rate')::float8;
	n := (r->>'n')::bigint;
	calibration := r->'calibration';
END
$$;
COMMENT ON FUNCTION dealrisk.evaluate(bigint, regclass) IS
	'Metrics of a model on the closed deals of a source: AUC, log loss, Brier (and the base-rate Brier), accuracy, base rate, n, and calibration by decile of predicted win probability (jsonb)';

CREATE FUNCTION dealrisk.lost_lookalikes(source regclass, lost_since date DEFAULT NULL, k int DEFAULT 20)
RETURNS TABLE (deal_id text, similarity float8, shared_traits text[])
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	traits text[] := ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_stage'];
	present text[];
	since date := lost_since;
	unions text;
	recent_l text := 'l.closed_date >= $1';
	recent_d text := 'd.closed_date >= $1';
	losses text := 'recent losses';
BEGIN
	IF k IS NULL OR k < 1 THEN
		RAISE EXCEPTION 'k must be at least 1, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	-- without close dates no loss is more recent than another: open deals
	-- are compared with every lost deal, and a NOTICE says so
	IF NOT dealrisk._has_column(source, 'closed_date') THEN
		IF lost_since IS NOT NULL THEN
			RAISE EXCEPTION 'lost_since needs a closed_date column, which source % lacks', source
				USING ERRCODE = 'undefined_column',
				      HINT = 'Call lost_lookalikes(source) without lost_since to compare open deals with every lost deal.';
		END IF;
		RAISE NOTICE 'dealrisk.lost_lookalikes: % has no closed_date column: open deals are compared with every lost deal, not only recent ones', source;
		recent_l := 'true';
		recent_d := 'true';
		losses := 'lost deals';
	END IF;
	SELECT pg_catalog.array_agg(t ORDER BY pg_catalog.array_position(traits, t)) INTO present
	FROM pg_catalog.unnest(traits) t
	WHERE dealrisk._has_column(source, t);
	IF since IS NULL AND recent_d <> 'true' THEN
		EXECUTE pg_catalog.format('SELECT max(d.closed_date) - 30 FROM %s d WHERE dealrisk.is_won(d.outcome) IS NOT NULL', source)
			INTO since;
	END IF;
	SELECT pg_catalog.string_agg(pg_catalog.format('SELECT %L AS col, d.%I::text AS val, d.* FROM %s d', t, t, source), ' UNION ALL ')
	INTO unions FROM pg_catalog.unnest(present) t;
	-- lift of each trait: its share among the recent losses over its share among closed deals
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH long AS (%s),
		lift AS (
			SELECT l.col, l.val,
			       count(*) FILTER (WHERE NOT dealrisk.is_won(l.outcome) AND %s)::float8
			         / greatest(1, (SELECT count(*) FROM %s d WHERE NOT dealrisk.is_won(d.outcome) AND %s)) AS lost_share,
			       count(*) FILTER (WHERE dealrisk.is_won(l.outcome) IS NOT NULL)::float8
			         / greatest(1, (SELECT count(*) FROM %s d WHERE dealrisk.is_won(d.outcome) IS NOT NULL)) AS all_share
			FROM long l WHERE l.val IS NOT NULL GROUP BY l.col, l.val
		)
		SELECT l.deal_id::text,
		       sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) AS similarity,
		       pg_catalog.array_agg(pg_catalog.format('%%s = %%s (%%s%%%% of %s, %%s%%%% of closed deals)',
		                        f.col, f.val, pg_catalog.round((100 * f.lost_share)::numeric),
		                        pg_catalog.round((100 * f.all_share)::numeric))
		                 ORDER BY f.lost_share / f.all_share DESC) FILTER (WHERE f.lost_share >= 1.2 * f.all_share AND f.all_share > 0)
		FROM long l JOIN lift f ON f.col = l.col AND f.val = l.val
		WHERE dealrisk.is_won(l.outcome) IS NULL AND f.all_share > 0
		GROUP BY l.deal_id
		HAVING sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) > 0
		ORDER BY 2 DESC, 1
		LIMIT $2 $q$, unions, recent_l, source, recent_d, source, losses)
		USING since, k;
END
$$;
COMMENT ON FUNCTION dealrisk.lost_lookalikes(regclass, date, int) IS
	'Open deals that look most like the deals lost since a date (default: the last 30 days of closes; every lost deal when the source has no closed_date), with the traits they share and how over-represented those traits are among the recent losses';
-- ops.sql: operations (watch, refresh, schedule, history, alerts, digest,
-- track) and the privileges of the whole extension; see docs/operations.md
-- and docs/security.md.
--
-- The daily loop: watch() configures which deals are watched and the alert
-- policy (which open deals are high-risk: by default the riskiest 10%, at
-- risk 50 or more) and builds the materialized view
-- dealrisk_watch.high_risk_deals; refresh() (scheduled by pg_cron through
-- schedule()) rescores the open deals, appends the scores to
-- dealrisk.score_history, turns the policy into a cutoff, refreshes the view
-- concurrently and writes one alert per deal that became high-risk (or
-- whose risk rose sharply) into the outbox dealrisk.alerts, from which
-- mailers claim, render and acknowledge them.
--
-- Source names are spliced into SQL only as the regclass's own text (quoted
-- by PostgreSQL), column names only through format('%I'), literals through
-- format('%L') or parameters.  No function here is SECURITY DEFINER: each
-- runs with the caller's privileges, and the grants of docs/security.md say
-- who may call what.  This file is the last part of the install script: the
-- REVOKEs at its end cover the functions of the earlier parts too.

-- The schema of what watch() creates ------------------------------------
-- The materialized view dealrisk_watch.high_risk_deals is created by the role
-- that calls watch() (and refreshed by it: REFRESH needs the owner).  It
-- lives in a schema of its own so that an operator can be given CREATE there
-- without CREATE on dealrisk: a role that could create objects in dealrisk
-- could plant a function or an overload that other roles' calls resolve to
-- (docs/security.md).  Nothing in dealrisk resolves names in dealrisk_watch.
CREATE SCHEMA dealrisk_watch;
COMMENT ON SCHEMA dealrisk_watch IS
	'Objects dealrisk.watch() creates for the role that runs the daily loop: the materialized view high_risk_deals';

-- Configuration, history, outbox ----------------------------------------

CREATE TABLE dealrisk.watch_config (
	singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	source          regclass NOT NULL,
	threshold       float8 NOT NULL CHECK (threshold >= 0 AND threshold <= 100),
	model           text NOT NULL CHECK (pg_catalog.btrim(model) <> ''),
	configured_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
	configured_by   text NOT NULL DEFAULT CURRENT_USER,
	scored_at       timestamptz,
	view_definition text,
	top_fraction    float8 NOT NULL CHECK (top_fraction > 0 AND top_fraction <= 1),
	rise            float8 CHECK (rise > 0 AND rise <= 100),
	max_per_rep     int CHECK (max_per_rep >= 1),
	cutoff          float8
);
COMMENT ON TABLE dealrisk.watch_config IS
	'What dealrisk.refresh() watches (one row, set by dealrisk.watch()): the deal source, the model name, the alert policy (threshold, top_fraction, rise, max_per_rep), the cutoff it gave at the latest scoring, when the deals were last scored and the SQL of dealrisk_watch.high_risk_deals';
COMMENT ON COLUMN dealrisk.watch_config.threshold IS
	'The lowest risk (0-100) of a high-risk deal';
COMMENT ON COLUMN dealrisk.watch_config.top_fraction IS
	'At most this share of the open deals is high-risk: the riskiest ones (1: every open deal at or above the threshold)';
COMMENT ON COLUMN dealrisk.watch_config.rise IS
	'A high-risk deal whose risk rose at least this many points since its previous scoring is alerted again; NULL: never';
COMMENT ON COLUMN dealrisk.watch_config.max_per_rep IS
	'At most this many alerts per sales rep per refresh, the riskiest first; NULL: no cap';
COMMENT ON COLUMN dealrisk.watch_config.cutoff IS
	'The risk at or above which an open deal was high-risk at the latest scoring (watch() or refresh()): the threshold, or higher to keep to top_fraction; Infinity when no deal qualified';
COMMENT ON COLUMN dealrisk.watch_config.scored_at IS
	'Time of the latest scoring (watch() or refresh()): the scored_at of the view and of the latest score_history entries';
COMMENT ON COLUMN dealrisk.watch_config.view_definition IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals; watch() replaces the view only for another source or when the source gained or lost stage_entered_date';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.watch_config', '');

CREATE TABLE dealrisk.score_history (
	deal_id    text NOT NULL,
	scored_at  timestamptz NOT NULL,
	model_id   bigint,
	risk       float8 NOT NULL,
	PRIMARY KEY (deal_id, scored_at)
);
CREATE INDEX score_history_scored_at ON dealrisk.score_history (scored_at);
COMMENT ON TABLE dealrisk.score_history IS
	'Every open deal''s risk at every dealrisk.refresh(): deal_id, time, model id (dealrisk.models.id), risk 0-100';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.score_history', '');

CREATE TABLE dealrisk.alerts (
	id             bigserial PRIMARY KEY,
	deal_id        text NOT NULL,
	created_at     timestamptz NOT NULL,
	source         text NOT NULL,
	model_id       bigint,
	risk           float8 NOT NULL,
	previous_risk  float8,
	band           text NOT NULL,
	reason         text,
	action         text,
	industry       text,
	deal_amount    numeric,
	sales_rep_id   text,
	deal_stage     text,
	days_in_stage  int,
	payload        jsonb NOT NULL DEFAULT '{}',
	claimed_at     timestamptz,
	claimed_by     text,
	claims         int NOT NULL DEFAULT 0,
	acked_at       timestamptz,
	UNIQUE (deal_id, created_at)
);
CREATE INDEX alerts_unacked ON dealrisk.alerts (id) WHERE acked_at IS NULL;
COMMENT ON TABLE dealrisk.alerts IS
	'Outbox of risk alerts: one row per deal that became high-risk at a dealrisk.refresh() (or, already high-risk, whose risk rose sharply); mailers take rows with dealrisk.claim_alerts(), render them with dealrisk.alert_text() and confirm them with dealrisk.ack_alert()';
COMMENT ON COLUMN dealrisk.alerts.created_at IS 'The refresh that raised the alert (= score_history.scored_at)';
COMMENT ON COLUMN dealrisk.alerts.previous_risk IS 'The deal''s risk at its previous scoring; NULL when it was scored for the first time';
COMMENT ON COLUMN dealrisk.alerts.reason IS 'The top reason: the first row of dealrisk.deal_risk_explain()';
COMMENT ON COLUMN dealrisk.alerts.action IS
	'What to do: the recommended_action() of a factor rule, else the rule of the factor that adds the most risk, else a review naming that factor (dealrisk._alert_action); never the "On track" fallback';
COMMENT ON COLUMN dealrisk.alerts.payload IS
	'{"threshold", "top_fraction", "cutoff", "cause" (became high-risk / risk rose), "model", "explain": [{factor, value, effect, reason}, ...]}: everything a message needs';
COMMENT ON COLUMN dealrisk.alerts.claimed_at IS 'When a worker last claimed the alert; claimable again after the reclaim timeout unless acknowledged';
COMMENT ON COLUMN dealrisk.alerts.claims IS 'How many times the alert was claimed (more than one: a worker died or timed out)';
COMMENT ON COLUMN dealrisk.alerts.acked_at IS 'When delivery was confirmed (dealrisk.ack_alert()); acknowledged alerts are never claimed again';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.alerts_id_seq', '');

-- The record of refreshes and of the pg_cron job ----------------------------
-- refresh() appends a row in its own transaction: a row is a refresh that
-- committed (a failed one rolls back with its row; pg_cron's
-- cron.job_run_details says that it failed).  Dumped like the history and
-- the alerts it describes, so that after a restore dealrisk.refresh_status
-- tells the true age of the restored scores.  One row per refresh: 365 a
-- year for a daily job.
CREATE TABLE dealrisk.refresh_log (
	id              bigserial PRIMARY KEY,
	started_at      timestamptz NOT NULL,
	finished_at     timestamptz NOT NULL,
	scored_at       timestamptz NOT NULL,
	deals_scored    bigint NOT NULL,
	alerts_written  bigint NOT NULL,
	model_id        bigint,
	model           text,
	source          text,
	run_by          text NOT NULL DEFAULT CURRENT_USER,
	pid             int,
	cutoff          float8
);
CREATE INDEX refresh_log_finished_at ON dealrisk.refresh_log (finished_at);
COMMENT ON TABLE dealrisk.refresh_log IS
	'One row per dealrisk.refresh() that committed: when it started and finished, the scoring time, how many open deals it scored and alerts it wrote, the model, the source, the role and the backend (a failed refresh leaves no row: see dealrisk.refresh_status)';
COMMENT ON COLUMN dealrisk.refresh_log.scored_at IS 'The scoring time of the refresh (= score_history.scored_at and alerts.created_at)';
COMMENT ON COLUMN dealrisk.refresh_log.run_by IS 'current_user of the refresh (the pg_cron job''s role when pg_cron ran it)';
COMMENT ON COLUMN dealrisk.refresh_log.cutoff IS
	'The risk at or above which an open deal was high-risk at this refresh (dealrisk.watch_config.cutoff then); NULL for refreshes before dealrisk 0.3.0';
COMMENT ON COLUMN dealrisk.refresh_log.pid IS 'The backend''s process id (cron.job_run_details.job_pid when pg_cron ran it)';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_log', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_log_id_seq', '');

-- The pg_cron job of dealrisk.schedule() in this database, whoever owns it:
-- pg_cron shows a non-superuser only its own jobs (row-level security on
-- cron.job), so this row is how schedule() and unschedule() of one role know
-- about another role's job.  Dumped like cron.job, which pg_cron dumps.
CREATE TABLE dealrisk.refresh_job (
	singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	job_id        bigint NOT NULL,
	username      text NOT NULL,
	schedule      text NOT NULL,
	scheduled_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
	scheduled_by  text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE dealrisk.refresh_job IS
	'The pg_cron job ''dealrisk-refresh'' of this database (one row, kept by dealrisk.schedule() and dealrisk.unschedule()): its id, the role it runs as, its schedule, when and by which session user it was scheduled';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_job', '');

-- Helpers ---------------------------------------------------------------

-- The id of the active model of a name, or an error naming the name.
CREATE FUNCTION dealrisk._active_model(model text)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	mid bigint;
BEGIN
	IF model IS NULL THEN
		RAISE EXCEPTION 'model name must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'The default model is named ''default''.';
	END IF;
	SELECT m.id INTO mid FROM dealrisk.models m WHERE m.name = model AND m.active;
	IF mid IS NULL THEN
		RAISE EXCEPTION 'no active deal risk model named "%"', model
			USING ERRCODE = 'no_data_found',
			      HINT = pg_catalog.format('Train one first: SELECT dealrisk.train(''public.deals'', name => %L);', model);
	END IF;
	RETURN mid;
END
$$;
COMMENT ON FUNCTION dealrisk._active_model(text) IS
	'The id of the active model of a name; an error when there is none (internal)';

-- A relation's schema-qualified, quoted name, whatever the search_path.
CREATE FUNCTION dealrisk._qualified_name(rel regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = rel::pg_catalog.oid);
COMMENT ON FUNCTION dealrisk._qualified_name(regclass) IS
	'A relation''s schema-qualified name, quoted where needed (internal)';

-- The day an open deal of source (alias d) entered its current stage, as SQL:
-- stage_entered_date when the source has it, else created_date; an infinite
-- or missing date is NULL (the deal's days in stage are then unknown, and
-- never an error that stops a refresh).
CREATE FUNCTION dealrisk._stage_start_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format('coalesce(%s%s)',
	CASE WHEN dealrisk._has_column(source, 'stage_entered_date')
	     THEN 'CASE WHEN pg_catalog.isfinite(d.stage_entered_date::date) THEN d.stage_entered_date::date END, ' ELSE '' END,
	'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END');
COMMENT ON FUNCTION dealrisk._stage_start_sql(regclass) IS
	'SQL for the day an open deal entered its stage (stage_entered_date, else created_date; NULL when infinite) (internal)';

-- The cutoff of the alert policy over the risks of every open deal: the
-- threshold, raised when needed so that at most top_fraction of the open
-- deals (rounded down) are at or above it.  Deals that tie at the boundary
-- are all in or all out (out when taking them would pass the share), so the
-- share is a promise.  Infinity when no deal may be taken (e.g. 10% of nine
-- deals).  top_fraction 1 keeps the threshold itself.
CREATE FUNCTION dealrisk._high_risk_cutoff(risks float8[], threshold float8, top_fraction float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN top_fraction >= 1 THEN threshold
	       ELSE greatest(threshold, coalesce(
	            (SELECT pg_catalog.min(x.r)
	             FROM (SELECT u.r, pg_catalog.count(*) OVER (ORDER BY u.r DESC) AS taken
	                   FROM pg_catalog.unnest(risks) u(r) WHERE u.r IS NOT NULL) x
	             WHERE x.taken <= pg_catalog.floor(top_fraction::numeric
	                        * (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(risks) v(r) WHERE v.r IS NOT NULL))),
	            'Infinity'::float8)) END
$$;
COMMENT ON FUNCTION dealrisk._high_risk_cutoff(float8[], float8, float8) IS
	'The risk at or above which open deals are high-risk: the threshold, raised so that at most top_fraction of the deals qualify; Infinity when none may (internal)';

-- The action an alert carries.  An alert says a deal needs attention, so
-- the playbook's "*" fallbacks (the shipped rule 9 says "On track") are
-- not enough: an action of a factor rule, from recommended_action(), is
-- kept; else the rule of the factor that adds the most risk is taken even
-- below its min_effect and min_risk (the alert policy, not the rule, judged
-- the deal risky); else a review that names that factor, or says that no
-- factor adds risk.  top_* are the first row of deal_risk_explain();
-- factors and actions are the factor rules of dealrisk.action_rules (not
-- "*"), best first (priority, id), read once per statement by the caller:
-- looking the rules up per deal cost seven times as much.
CREATE FUNCTION dealrisk._alert_action(rule_action text, top_factor text, top_effect float8, top_reason text,
	factors text[], actions text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF rule_action OPERATOR(pg_catalog.=) ANY (actions) THEN
		RETURN rule_action;
	ELSIF top_effect > 0 THEN
		RETURN coalesce(actions[pg_catalog.array_position(factors, top_factor)],
		                'Review the deal with the sales manager this week, starting with what adds the most risk: ' || top_reason);
	END IF;
	RETURN 'Review the deal with the sales manager this week: no single factor adds to its risk, which is the model''s base risk for any deal';
END
$$;
COMMENT ON FUNCTION dealrisk._alert_action(text, text, float8, text, text[], text[]) IS
	'The action of an alert: a factor rule''s recommended action, else the rule of the factor that adds the most risk, else a review naming it; never a "*" fallback such as "On track"; factors and actions: the factor rules, best first (internal)';

-- The statement that creates dealrisk_watch.high_risk_deals over a source, named
-- schema-qualified (the statement is stored and may run again under another
-- search_path).  The cutoff of the alert policy, the model name and the
-- scoring time are read from dealrisk.watch_config at each refresh, so
-- watch() replaces the view only for another source (compared by OID: a
-- rename keeps it) or when this statement changed (the source gained or
-- lost stage_entered_date, or an upgrade of the extension changed the
-- view).  The scoring date is read once per refresh (an InitPlan), not once
-- per deal; the explanation and the action only for the deals kept.
CREATE FUNCTION dealrisk._view_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format($v$CREATE MATERIALIZED VIEW dealrisk_watch.high_risk_deals AS
SELECT s.deal_id, s.risk, dealrisk.risk_band(s.risk) AS band, t.reason AS top_reason,
       dealrisk._alert_action(dealrisk.recommended_action(s.deal, s.model), t.factor,
                              pg_catalog.round(t.effect::numeric, 2)::float8, t.reason,
                              r.factors, r.actions) AS recommended_action,
       s.deal_amount, s.sales_rep_id, s.deal_stage, s.days_in_stage, s.scored_at
FROM (
	SELECT d.deal_id::text AS deal_id, d AS deal, w.model, w.cutoff, w.scored_at,
	       dealrisk.deal_risk(d, w.model) AS risk,
	       d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
	       d.deal_stage::text AS deal_stage,
	       (SELECT dealrisk._as_of()) - %s AS days_in_stage
	FROM %s d CROSS JOIN dealrisk.watch_config w
	WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
	OFFSET 0
) s
CROSS JOIN (SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id) AS factors,
                   pg_catalog.array_agg(a.action ORDER BY a.priority, a.id) AS actions
            FROM dealrisk.action_rules a WHERE a.factor <> '*') r
LEFT JOIN LATERAL (SELECT e.factor, e.effect, e.reason FROM dealrisk.deal_risk_explain(s.deal, s.model) e LIMIT 1) t ON true
WHERE s.risk >= s.cutoff$v$,
	dealrisk._stage_start_sql(source),
	dealrisk._qualified_name(source));
COMMENT ON FUNCTION dealrisk._view_sql(regclass) IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals over a source (internal)';

-- A view statement of _view_sql with the source's name taken out, so that
-- statements for a renamed source compare equal (the view follows the
-- source by OID).
CREATE FUNCTION dealrisk._view_shape(view_sql text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.regexp_replace(view_sql, '\n\tFROM .* d CROSS JOIN dealrisk\.watch_config w\n',
                                 E'\n\tFROM <source> d CROSS JOIN dealrisk.watch_config w\n');
COMMENT ON FUNCTION dealrisk._view_shape(text) IS
	'A statement of _view_sql without the source''s name, to compare views across renames (internal)';

-- The error for open deals of a watched source that share a deal_id.
CREATE FUNCTION dealrisk._duplicate_deals(source regclass, detail text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'source "%" has open deals that share a deal_id', dealrisk._source_name(source)
		USING ERRCODE = 'unique_violation', DETAIL = coalesce(detail, ''),
		      HINT = 'deal_id must identify a deal: remove the duplicates, or watch a view that keeps one row per deal.';
END
$$;
COMMENT ON FUNCTION dealrisk._duplicate_deals(regclass, text) IS
	'Raises the error for a watched source whose open deals share a deal_id (internal)';

-- The alert policy of a watch configuration in words, e.g. "the riskiest
-- 10% of the open deals, at risk 50 or more".
CREATE FUNCTION dealrisk._policy_words(threshold float8, top_fraction float8)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN top_fraction >= 1 THEN pg_catalog.format('risk at least %s', threshold)
            ELSE pg_catalog.format('the riskiest %s%% of the open deals, at risk %s or more',
                                   pg_catalog.round((100 * top_fraction)::numeric, 2)::float8, threshold) END;
COMMENT ON FUNCTION dealrisk._policy_words(float8, float8) IS
	'The alert policy in words, e.g. ''the riskiest 10% of the open deals, at risk 50 or more'' (internal)';

-- Comments dealrisk_watch.high_risk_deals with what dealrisk.watch_config
-- says it holds (source, policy, model).
CREATE FUNCTION dealrisk._describe_view()
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO STRICT cfg FROM dealrisk.watch_config;
	EXECUTE pg_catalog.format('COMMENT ON MATERIALIZED VIEW dealrisk_watch.high_risk_deals IS %L',
		pg_catalog.format('High-risk open deals of %s under the active "%s" model: %s (dealrisk.watch_config.cutoff is the risk this took at the latest scoring), with their top reason and action; set up by dealrisk.watch(), refreshed by dealrisk.refresh() (docs/operations.md)',
		                  dealrisk._qualified_name(cfg.source), cfg.model, dealrisk._policy_words(cfg.threshold, cfg.top_fraction)));
END
$$;
COMMENT ON FUNCTION dealrisk._describe_view() IS
	'Sets the comment of dealrisk_watch.high_risk_deals from dealrisk.watch_config (internal)';

-- (Re)creates dealrisk_watch.high_risk_deals over a source, keeping the grants of
-- the view it replaces, with its unique index (for REFRESH CONCURRENTLY);
-- returns the statement, which watch_config keeps.
CREATE FUNCTION dealrisk._create_view(source regclass)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text := dealrisk._view_sql(source);
	old regclass := pg_catalog.to_regclass('dealrisk_watch.high_risk_deals');
	grants text[] := '{}';
	g text;
	detail text;
BEGIN
	IF old IS NOT NULL THEN
		SELECT coalesce(pg_catalog.array_agg(pg_catalog.format('GRANT %s ON dealrisk_watch.high_risk_deals TO %s%s',
			a.privilege_type,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
			CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)), '{}')
		INTO grants
		FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid = old::pg_catalog.oid AND a.grantee <> c.relowner;
		BEGIN
			DROP MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
		EXCEPTION WHEN dependent_objects_still_exist THEN
			GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
			RAISE EXCEPTION 'cannot replace dealrisk_watch.high_risk_deals for source "%": other objects depend on it',
				dealrisk._source_name(source)
				USING ERRCODE = 'dependent_objects_still_exist', DETAIL = detail,
				      HINT = 'Drop them, call dealrisk.watch() again and recreate them (watching the same source again keeps the view and its dependents).';
		END;
	END IF;
	EXECUTE view_sql;
	BEGIN
		CREATE UNIQUE INDEX high_risk_deals_deal_id ON dealrisk_watch.high_risk_deals (deal_id);
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		PERFORM dealrisk._duplicate_deals(source, detail);
	END;
	FOREACH g IN ARRAY grants LOOP
		EXECUTE g;
	END LOOP;
	PERFORM dealrisk._describe_view();
	RETURN view_sql;
END
$$;
COMMENT ON FUNCTION dealrisk._create_view(regclass) IS
	'(Re)creates dealrisk_watch.high_risk_deals with its unique index, keeping the grants of the view it replaces (internal)';

-- Refreshes dealrisk_watch.high_risk_deals: concurrently when it holds rows (its
-- readers keep reading the old rows meanwhile), fully when not populated.
CREATE FUNCTION dealrisk._refresh_view(source regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	detail text;
BEGIN
	IF NOT (SELECT c.relispopulated FROM pg_catalog.pg_class c WHERE c.oid = 'dealrisk_watch.high_risk_deals'::regclass::pg_catalog.oid) THEN
		REFRESH MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
	ELSE
		REFRESH MATERIALIZED VIEW CONCURRENTLY dealrisk_watch.high_risk_deals;
	END IF;
EXCEPTION WHEN unique_violation OR cardinality_violation THEN
	GET STACKED DIAGNOSTICS detail = MESSAGE_TEXT;
	PERFORM dealrisk._duplicate_deals(source, detail);
END
$$;
COMMENT ON FUNCTION dealrisk._refresh_view(regclass) IS
	'Refreshes dealrisk_watch.high_risk_deals, concurrently when it is populated (internal)';

-- Rebuilds dealrisk_watch.high_risk_deals of the same source with the
-- current statement (its old one came from an older version of dealrisk or
-- from the source's columns then).  When other objects depend on the view
-- it cannot be replaced: the old view is refreshed instead, the watch
-- configuration keeps its old statement, and a warning says how to move on.
CREATE FUNCTION dealrisk._rebuild_view(source regclass, old_definition text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text;
	detail text;
BEGIN
	BEGIN
		view_sql := dealrisk._create_view(source);
		UPDATE dealrisk.watch_config SET view_definition = view_sql;
	EXCEPTION WHEN dependent_objects_still_exist THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RAISE WARNING 'dealrisk_watch.high_risk_deals keeps its old definition: other objects depend on it'
			USING DETAIL = detail,
			      HINT = 'The view is refreshed as before. To get the new definition (infinite dates are read as missing), drop the objects that depend on it, call dealrisk.watch() again and recreate them.';
		UPDATE dealrisk.watch_config SET view_definition = old_definition;
		PERFORM dealrisk._refresh_view(source);
		PERFORM dealrisk._describe_view();
	END;
END
$$;
COMMENT ON FUNCTION dealrisk._rebuild_view(regclass, text) IS
	'Rebuilds dealrisk_watch.high_risk_deals with the current statement, or refreshes the old view with a warning while other objects depend on it (internal)';

-- The configuration row, or an error saying that watch() comes first.
CREATE FUNCTION dealrisk._watch_config()
RETURNS dealrisk.watch_config
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO cfg FROM dealrisk.watch_config;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no deal source is watched yet'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Call dealrisk.watch() first, e.g. SELECT dealrisk.watch(''public.deals'');';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cfg.source::pg_catalog.oid) THEN
		RAISE EXCEPTION 'the watched deal source (OID %) no longer exists', cfg.source::oid
			USING ERRCODE = 'undefined_table',
			      HINT = 'Watch another source: SELECT dealrisk.watch(''public.deals'');';
	END IF;
	RETURN cfg;
END
$$;
COMMENT ON FUNCTION dealrisk._watch_config() IS
	'The dealrisk.watch_config row; an error when nothing is watched or the source is gone (internal)';

-- An error unless dealrisk_watch.high_risk_deals is a materialized view
-- whose columns are of built-in types: it belongs to the role that called
-- watch(), and digest() and other readers must not run that role's code
-- (a plain view of the same name, or a column type with its own casts).
CREATE FUNCTION dealrisk._check_watch_view()
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v regclass := pg_catalog.to_regclass('dealrisk_watch.high_risk_deals');
BEGIN
	IF v IS NULL THEN
		RETURN;
	END IF;
	IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = v::pg_catalog.oid) <> 'm' THEN
		RAISE EXCEPTION 'dealrisk_watch.high_risk_deals is not the materialized view dealrisk.watch() creates'
			USING ERRCODE = '42809',
			      HINT = 'Drop it and call dealrisk.watch() again.';
	END IF;
	PERFORM dealrisk._check_column_types(v, ARRAY(
		SELECT a.attname::text FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = v::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped));
END
$$;
COMMENT ON FUNCTION dealrisk._check_watch_view() IS
	'Raises an error when dealrisk_watch.high_risk_deals is not a materialized view of built-in column types (internal)';

-- Watch and refresh -----------------------------------------------------

-- The alert policy (docs/operations.md): an open deal is high-risk when its
-- risk is at least the threshold and it is among the riskiest top_fraction
-- of the open deals.  With neither given: at least 50, the riskiest 10%.
-- A threshold alone keeps the meaning it had before 0.3.0 (every open deal
-- at or above it); top_fraction alone keeps the threshold 50.
CREATE FUNCTION dealrisk.watch(source regclass, threshold float8 DEFAULT NULL, model text DEFAULT 'default',
	top_fraction float8 DEFAULT NULL, rise float8 DEFAULT 15, max_per_rep int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text;
	old dealrisk.watch_config;
	ts timestamptz := pg_catalog.clock_timestamp();
	n bigint;
	thr float8 := coalesce(threshold, 50);
	top float8 := coalesce(top_fraction, CASE WHEN threshold IS NULL THEN 0.1 ELSE 1 END);
	risks float8[];
	cut float8;
BEGIN
	IF NOT (thr >= 0 AND thr <= 100) OR thr = 'NaN' THEN
		RAISE EXCEPTION 'threshold must be a risk score between 0 and 100, got %', thr
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Risk scores are percentages; leave it out for the default alert policy (the riskiest 10% of the open deals, at risk 50 or more).';
	END IF;
	IF NOT (top > 0 AND top <= 1) OR top = 'NaN' THEN
		RAISE EXCEPTION 'top_fraction must be a share of the open deals above 0 and at most 1, got %', top
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'E.g. 0.1 to alert on the riskiest 10% of the open deals; 1 to alert on every open deal at or above the threshold.';
	END IF;
	IF NOT (rise > 0 AND rise <= 100) OR rise = 'NaN' THEN
		RAISE EXCEPTION 'rise must be between 0 (exclusive) and 100 risk points, got %', rise
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A high-risk deal whose risk rose this many points since the last refresh is alerted again; NULL never alerts again.';
	END IF;
	IF max_per_rep < 1 THEN
		RAISE EXCEPTION 'max_per_rep must be at least 1, got %', max_per_rep
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The most alerts one sales rep gets from one refresh; NULL for no cap.';
	END IF;
	IF source::pg_catalog.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid THEN
		RAISE EXCEPTION 'dealrisk_watch.high_risk_deals cannot watch itself'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the table or view that holds the deals.';
	END IF;
	PERFORM dealrisk._check_source(source,
		ARRAY['deal_id', 'outcome', 'created_date', 'deal_amount', 'sales_rep_id', 'deal_stage']);
	PERFORM dealrisk._active_model(model);
	view_sql := dealrisk._view_sql(source);

	-- one watch() or refresh() at a time; readers are not blocked
	LOCK TABLE dealrisk.watch_config IN EXCLUSIVE MODE;
	SELECT * INTO old FROM dealrisk.watch_config;
	-- the cutoff over the open deals' scores of the moment
	IF top < 1 THEN
		EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(dealrisk.deal_risk(d, $1)) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', source)
			INTO risks USING model;
	END IF;
	cut := dealrisk._high_risk_cutoff(coalesce(risks, '{}'), thr, top);
	INSERT INTO dealrisk.watch_config AS w (singleton, source, threshold, model, configured_at, configured_by, scored_at,
	                                        view_definition, top_fraction, rise, max_per_rep, cutoff)
	VALUES (true, source, thr, model, ts, CURRENT_USER, ts, view_sql, top, rise, max_per_rep, cut)
	ON CONFLICT (singleton) DO UPDATE SET source = EXCLUDED.source, threshold = EXCLUDED.threshold,
		model = EXCLUDED.model, configured_at = EXCLUDED.configured_at, configured_by = EXCLUDED.configured_by,
		scored_at = EXCLUDED.scored_at, view_definition = EXCLUDED.view_definition,
		top_fraction = EXCLUDED.top_fraction, rise = EXCLUDED.rise, max_per_rep = EXCLUDED.max_per_rep,
		cutoff = EXCLUDED.cutoff;

	IF old.source OPERATOR(pg_catalog.=) source
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid
	               AND c.relkind = 'm') THEN
		IF dealrisk._view_shape(old.view_definition) = dealrisk._view_shape(view_sql) THEN
			-- same source (maybe renamed), same columns: keep the view (its
			-- grants and dependent views) and refresh it
			PERFORM dealrisk._refresh_view(source);
			PERFORM dealrisk._describe_view();
		ELSE
			-- the view of an older statement (an upgrade, a column gained or
			-- lost): rebuilt, or kept while other views depend on it
			PERFORM dealrisk._rebuild_view(source, old.view_definition);
		END IF;
	ELSE
		PERFORM dealrisk._create_view(source);
	END IF;
	-- the view belongs to its creator: count it only when that role's code
	-- may run as the caller (its indexes, say)
	PERFORM dealrisk._check_relation_trust('dealrisk_watch.high_risk_deals');
	SELECT count(*) INTO n FROM dealrisk_watch.high_risk_deals;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) IS
	'Watches the open deals of a source: remembers source, model and alert policy in dealrisk.watch_config and (re)builds the materialized view dealrisk_watch.high_risk_deals of the high-risk open deals (risk at least threshold, default 50, and among the riskiest top_fraction, default 0.1, or 1 when a threshold is given); rise re-alerts a high-risk deal whose risk rose that many points (default 15, NULL never), max_per_rep caps the alerts per rep and refresh (NULL: no cap); returns how many deals the view holds';

CREATE FUNCTION dealrisk.refresh()
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
	mid bigint;
	ts timestamptz;
	view_sql text;
	scored bigint;
	n_alerts bigint;
	max_id bigint;
	detail text;
	started timestamptz := pg_catalog.clock_timestamp();
	nestloop text;
	jit text;
	rule_factors text[];
	rule_actions text[];
	cut float8;
	risks float8[];
BEGIN
	-- one watch() or refresh() at a time (a second one waits, then scores anew)
	LOCK TABLE dealrisk.watch_config IN EXCLUSIVE MODE;
	-- and no model is activated meanwhile: every statement below (scores,
	-- view, alerts' reasons and actions) uses the model whose id is written
	LOCK TABLE dealrisk.models IN SHARE MODE;
	cfg := dealrisk._watch_config();
	PERFORM dealrisk._check_watch_view();
	PERFORM dealrisk._check_source(cfg.source,
		ARRAY['deal_id', 'outcome', 'created_date', 'deal_amount', 'sales_rep_id', 'deal_stage']);
	mid := dealrisk._active_model(cfg.model);
	ts := greatest(pg_catalog.clock_timestamp(), cfg.scored_at + interval '1 microsecond');
	UPDATE dealrisk.watch_config SET scored_at = ts;

	-- 1. every open deal's score
	BEGIN
		EXECUTE pg_catalog.format(
			'INSERT INTO dealrisk.score_history (deal_id, scored_at, model_id, risk)'
			' SELECT d.deal_id::text, $1, dealrisk._scoring_model($2), dealrisk.deal_risk(d, $2) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', cfg.source)
			USING ts, cfg.model;
		GET DIAGNOSTICS scored = ROW_COUNT;
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RAISE EXCEPTION 'source "%" has open deals that share a deal_id', dealrisk._source_name(cfg.source)
			USING ERRCODE = 'unique_violation', DETAIL = detail,
			      HINT = 'deal_id must identify a deal: remove the duplicates, or watch a view that keeps one row per deal.';
	END;

	-- 2. the cutoff of the alert policy over these scores: the view and
	-- the alerts below keep to it, and the refresh log remembers it (the
	-- next refresh compares with it)
	IF cfg.top_fraction < 1 THEN
		SELECT pg_catalog.array_agg(h.risk) INTO risks FROM dealrisk.score_history h WHERE h.scored_at = ts;
	END IF;
	cut := dealrisk._high_risk_cutoff(coalesce(risks, '{}'), cfg.threshold, cfg.top_fraction);
	UPDATE dealrisk.watch_config SET cutoff = cut;

	-- 3. the view, concurrently (readers keep reading the old rows); rebuilt
	-- when missing (dropped, or not restored).  A change in the source's
	-- columns is picked up by watch(), not here: rebuilding would fail when
	-- other views depend on the view.
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
	               WHERE c.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid AND c.relkind = 'm') THEN
		view_sql := dealrisk._create_view(cfg.source);
		UPDATE dealrisk.watch_config SET view_definition = view_sql;
	ELSIF dealrisk._view_shape(cfg.view_definition) <> dealrisk._view_shape(dealrisk._view_sql(cfg.source)) THEN
		PERFORM dealrisk._rebuild_view(cfg.source, cfg.view_definition);
	ELSE
		PERFORM dealrisk._refresh_view(cfg.source);
	END IF;

	-- 4. the alerts: a deal is alerted when it is high-risk now (risk at
	-- least the cutoff) and
	--   - became so: its previous score (none: a new deal) was below the
	--     cutoff of that refresh and below today's, so that a cutoff that
	--     moves with the pipeline does not alert deals whose risk did not
	--     move (a previous score without a known cutoff is compared with
	--     today's alone, as before 0.3.0); or
	--   - its risk rose at least `rise` points since that score;
	-- the riskiest max_per_rep of each rep when capped.
	-- The planner has no statistics of the scores this refresh has just
	-- written (scored_at = ts): it would expect a handful and rescan the
	-- source for each (minutes on a million deals without an index on
	-- deal_id).  Joining the source by hash is right whatever their number.
	-- The LATERAL joins still need nested loops, whose cost the setting
	-- inflates: the estimate would call for JIT compilation, which costs
	-- about a second per refresh and saves nothing here.
	nestloop := pg_catalog.current_setting('enable_nestloop');
	jit := pg_catalog.current_setting('jit');
	-- the factor rules, for the alerts' actions (dealrisk._alert_action)
	SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id), pg_catalog.array_agg(a.action ORDER BY a.priority, a.id)
	INTO rule_factors, rule_actions
	FROM dealrisk.action_rules a WHERE a.factor OPERATOR(pg_catalog.<>) '*';
	PERFORM pg_catalog.set_config('enable_nestloop', 'off', true);
	PERFORM pg_catalog.set_config('jit', 'off', true);
	EXECUTE pg_catalog.format($q$
		INSERT INTO dealrisk.alerts (deal_id, created_at, source, model_id, risk, previous_risk, band, reason, action,
		                             industry, deal_amount, sales_rep_id, deal_stage, days_in_stage, payload)
		SELECT c.deal_id, c.scored_at, $4, c.model_id, c.risk, c.prev_risk, dealrisk.risk_band(c.risk),
		       x.explain -> 0 ->> 'reason',
		       dealrisk._alert_action(dealrisk.recommended_action(c.deal, $3), x.explain -> 0 ->> 'factor',
		                              (x.explain -> 0 ->> 'effect')::float8, x.explain -> 0 ->> 'reason', $9, $10),
		       c.industry, c.deal_amount, c.sales_rep_id, c.deal_stage, c.days_in_stage,
		       pg_catalog.jsonb_build_object('threshold', $2, 'top_fraction', $6, 'cutoff', $5, 'cause', c.cause,
		                                     'model', $3, 'explain', coalesce(x.explain, '[]'))
		FROM (
			SELECT h.deal_id, h.scored_at, h.model_id, h.risk, prev.risk AS prev_risk, d AS deal,
			       %s AS industry, d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
			       d.deal_stage::text AS deal_stage, (SELECT dealrisk._as_of()) - %s AS days_in_stage,
			       CASE WHEN prev.risk IS NULL OR prev.risk < least(coalesce(pl.cutoff, $5), $5)
			            THEN 'became high-risk' ELSE 'risk rose' END AS cause,
			       pg_catalog.row_number() OVER (PARTITION BY d.sales_rep_id::text ORDER BY h.risk DESC, h.deal_id) AS rep_rank
			FROM dealrisk.score_history h
			JOIN %s d ON d.deal_id::text = h.deal_id AND dealrisk.is_won(d.outcome) IS NULL
			LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
			                   WHERE p.deal_id = h.deal_id AND p.scored_at < h.scored_at
			                   ORDER BY p.scored_at DESC LIMIT 1) prev ON true
			LEFT JOIN (SELECT DISTINCT ON (l.scored_at) l.scored_at, l.cutoff FROM dealrisk.refresh_log l
			           ORDER BY l.scored_at, l.id DESC) pl ON pl.scored_at = prev.scored_at
			WHERE h.scored_at = $1 AND h.risk >= $5
			  AND (prev.risk IS NULL OR prev.risk < least(coalesce(pl.cutoff, $5), $5)
			       OR h.risk - prev.risk >= $7)
		) c
		CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
		                              'factor', e.factor, 'value', e.value,
		                              'effect', pg_catalog.round(e.effect::numeric, 2), 'reason', e.reason)) AS explain
		                    FROM dealrisk.deal_risk_explain(c.deal, $3) e) x
		WHERE c.rep_rank <= coalesce($8, c.rep_rank)
		ORDER BY c.risk DESC, c.deal_id$q$,
		CASE WHEN dealrisk._has_column(cfg.source, 'industry') THEN 'd.industry::text' ELSE 'NULL::text' END,
		dealrisk._stage_start_sql(cfg.source),
		cfg.source)
		USING ts, cfg.threshold, cfg.model, dealrisk._qualified_name(cfg.source), cut, cfg.top_fraction, cfg.rise,
		      cfg.max_per_rep, rule_factors, rule_actions;
	GET DIAGNOSTICS n_alerts = ROW_COUNT;
	PERFORM pg_catalog.set_config('enable_nestloop', nestloop, true);
	PERFORM pg_catalog.set_config('jit', jit, true);

	-- 5. wake the mailers (delivered at commit, like everything above)
	IF n_alerts > 0 THEN
		SELECT pg_catalog.max(a.id) INTO max_id FROM dealrisk.alerts a WHERE a.created_at = ts;
		PERFORM pg_catalog.pg_notify('dealrisk_alerts',
			pg_catalog.json_build_object('count', n_alerts, 'max_id', max_id, 'scored_at', ts)::text);
	END IF;

	-- 6. the record of this refresh (committed with it, or not at all)
	INSERT INTO dealrisk.refresh_log (started_at, finished_at, scored_at, deals_scored, alerts_written,
	                                  model_id, model, source, run_by, pid, cutoff)
	VALUES (started, pg_catalog.clock_timestamp(), ts, scored, n_alerts,
	        mid, cfg.model, dealrisk._qualified_name(cfg.source), CURRENT_USER, pg_catalog.pg_backend_pid(), cut);
	RETURN scored;
END
$$;
COMMENT ON FUNCTION dealrisk.refresh() IS
	'Rescores the watched open deals: appends every score to dealrisk.score_history, applies the alert policy of dealrisk.watch_config (the cutoff), refreshes dealrisk_watch.high_risk_deals concurrently, writes an alert per deal that became high-risk (or whose risk rose sharply), sends NOTIFY dealrisk_alerts and records the run in dealrisk.refresh_log; all in the caller''s transaction; returns the number of open deals scored';

CREATE FUNCTION dealrisk.prune_history(older_than interval DEFAULT '13 months')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '1 day' THEN
		RAISE EXCEPTION 'older_than must be at least 1 day, got %', coalesce(older_than::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM dealrisk.score_history h WHERE h.scored_at < pg_catalog.now() - older_than;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.prune_history(interval) IS
	'Deletes score_history entries older than an interval (default 13 months); returns how many';

-- Scheduling with pg_cron -----------------------------------------------

-- Where pg_cron runs: cron.database_name (NULL when the library is not
-- loaded).  Only superusers and pg_read_all_settings may read it; for other
-- roles readable is false.
CREATE FUNCTION dealrisk._cron_database(OUT db text, OUT readable boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	db := pg_catalog.current_setting('cron.database_name', true);
	readable := true;
EXCEPTION WHEN insufficient_privilege THEN
	db := NULL;
	readable := false;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_database() IS
	'cron.database_name, NULL when pg_cron is not loaded, and whether this role may read it (internal)';

-- The error raised when pg_cron is not in this database: how to enable it,
-- or, when it runs in another database, the call to make there.
CREATE FUNCTION dealrisk._cron_missing(call_there text, cron_db text, this_db text, readable boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT readable THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'This role may not read cron.database_name (that needs superuser or pg_read_all_settings), so where pg_cron runs is not known.',
			      HINT = pg_catalog.format('If pg_cron runs in another database, run there: %s Otherwise set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L in postgresql.conf, restart the server and run CREATE EXTENSION pg_cron; in database "%s".',
			                               call_there, this_db, this_db);
	ELSIF cron_db IS NOT NULL AND cron_db <> this_db THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%": it runs in database "%"', this_db, cron_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = pg_catalog.format('cron.database_name is "%s"; pg_cron schedules jobs for every database from there.', cron_db),
			      HINT = pg_catalog.format('Connect to database "%s" as a superuser (pg_cron lets only superusers act for another database) and run: %s', cron_db, call_there);
	ELSIF cron_db IS NOT NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'The pg_cron library is loaded and cron.database_name names this database.',
			      HINT = 'Run CREATE EXTENSION pg_cron; in this database (as a superuser), then call this function again.';
	ELSE
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'The pg_cron library is not loaded (cron.database_name is not set).',
			      HINT = pg_catalog.format('In postgresql.conf set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L, restart the server, run CREATE EXTENSION pg_cron; in database "%s", then call this function again.',
			                               this_db, this_db);
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_missing(text, text, text, boolean) IS
	'Raises the error that explains how to enable pg_cron for dealrisk.schedule() (internal)';

-- The pg_cron job runs as the role that calls schedule() (cron.job.username
-- = current_user), connected to this database.  The error when that role
-- cannot log in, is past its VALID UNTIL or may not connect here, with the
-- statements of a working setup: the session's own LOGIN role when it has
-- this role's rights (and is no superuser: the job would run as one), else
-- a LOGIN member made for the job.
CREATE FUNCTION dealrisk._check_job_role(cron text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me name := CURRENT_USER;
	sess name := SESSION_USER;
	r record;
	via text := '';
	how text;
BEGIN
	SELECT a.rolcanlogin, a.rolvaliduntil INTO STRICT r FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	IF sess <> me THEN
		via := pg_catalog.format(' (set by SET ROLE in a session of "%s")', sess);
	END IF;
	IF sess <> me
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles s WHERE s.rolname = sess AND s.rolcanlogin AND NOT s.rolsuper
	               AND (s.rolvaliduntil IS NULL OR s.rolvaliduntil > pg_catalog.now()))
	   AND pg_catalog.pg_has_role(sess, me, 'USAGE')
	   AND pg_catalog.has_database_privilege(sess, pg_catalog.current_database(), 'CONNECT') THEN
		how := pg_catalog.format('Schedule as "%s", which can log in and has the rights of "%s": RESET ROLE; SELECT dealrisk.schedule(%L);',
		                         sess, me, cron);
	ELSE
		how := pg_catalog.format('Schedule as a LOGIN role with the rights of "%s": CREATE ROLE %I LOGIN IN ROLE %I; SET ROLE %I; SELECT dealrisk.schedule(%L);',
		                         me, me::text || '_cron', me, me::text || '_cron', cron);
	END IF;
	IF NOT r.rolcanlogin THEN
		RAISE EXCEPTION 'role "%" cannot log in: a pg_cron job running as it would fail every time', me
			USING ERRCODE = 'invalid_authorization_specification',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s, which is NOLOGIN: each run would fail with "role "%s" is not permitted to log in".',
			                                 me, via, me),
			      HINT = how || pg_catalog.format(' Or let the role log in: ALTER ROLE %I LOGIN;', me);
	END IF;
	IF r.rolvaliduntil < pg_catalog.now() THEN
		RAISE EXCEPTION 'role "%" is past its VALID UNTIL time (%): a pg_cron job must not run as it', me, r.rolvaliduntil
			USING ERRCODE = 'invalid_authorization_specification',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s. Its password has expired: where pg_cron connects with password authentication every run would fail.',
			                                 me, via),
			      HINT = how || pg_catalog.format(' Or renew the role: ALTER ROLE %I VALID UNTIL ''infinity'';', me);
	END IF;
	IF NOT pg_catalog.has_database_privilege(me, pg_catalog.current_database(), 'CONNECT') THEN
		RAISE EXCEPTION 'role "%" may not connect to database "%": a pg_cron job running as it would fail every time',
			me, pg_catalog.current_database()
			USING ERRCODE = 'insufficient_privilege',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s, connected to this database: each run would fail with "permission denied for database "%s"".',
			                                 me, via, pg_catalog.current_database()),
			      HINT = pg_catalog.format('Grant it: GRANT CONNECT ON DATABASE %I TO %I;', pg_catalog.current_database(), me);
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._check_job_role(text) IS
	'Raises an error with a working setup when the current role cannot run a pg_cron job here: NOLOGIN, past VALID UNTIL, no CONNECT (internal)';

-- Whether the pg_cron job of an id exists, for a role that cannot see it:
-- pg_cron hides other roles' jobs from non-superusers (row-level security
-- on cron.job), but its cron.unschedule(id) refuses another role's job with
-- 42501 and reports a missing one as another error.  The call runs in a
-- subtransaction that is always rolled back: it never removes a job.
CREATE FUNCTION dealrisk._cron_job_exists(job bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_it boolean := false;
BEGIN
	IF job IS NULL THEN
		RETURN false;
	END IF;
	BEGIN
		EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' INTO found_it USING job;
		found_it := coalesce(found_it, false);
		RAISE EXCEPTION 'dealrisk: undo the probe of pg_cron job %', job;
	EXCEPTION
		WHEN insufficient_privilege THEN
			found_it := true;
		WHEN OTHERS THEN
			NULL;
	END;
	RETURN found_it;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_job_exists(bigint) IS
	'Whether a pg_cron job exists, also when it is another role''s (probes cron.unschedule in a subtransaction that is rolled back) (internal)';

-- The 'dealrisk-refresh' jobs of this database that the caller sees in
-- cron.job: every role's for a superuser, its own for another role.
CREATE FUNCTION dealrisk._refresh_jobs(OUT job_id bigint, OUT username text, OUT schedule text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.username::pg_catalog.text, j.schedule::pg_catalog.text FROM cron.job j'
		' WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name AND j.database::pg_catalog.text OPERATOR(pg_catalog.=) $2'
		' ORDER BY j.jobid'
		USING 'dealrisk-refresh', pg_catalog.current_database()::text;
END
$$;
COMMENT ON FUNCTION dealrisk._refresh_jobs() IS
	'The pg_cron jobs ''dealrisk-refresh'' of this database that the caller sees (internal)';

CREATE FUNCTION dealrisk.schedule(cron text DEFAULT '0 6 * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint;
	cron_db record := dealrisk._cron_database();
	me name := CURRENT_USER;
	su boolean;
	rec dealrisk.refresh_job;
	other record;
BEGIN
	IF cron IS NULL OR pg_catalog.btrim(cron) = '' THEN
		RAISE EXCEPTION 'cron schedule must not be %', CASE WHEN cron IS NULL THEN 'NULL' ELSE 'empty' END
			USING ERRCODE = CASE WHEN cron IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      HINT = 'A cron expression, e.g. ''0 6 * * *'' for 06:00 every day (pg_cron reads it in GMT unless cron.timezone, pg_cron 1.5 or later, says otherwise).';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dealrisk._cron_missing(
			-- pg_cron lets one role have one job of a name: a job for another
			-- database gets that database's name, and runs as this role
			pg_catalog.format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
			                  'dealrisk-refresh-' || pg_catalog.current_database(), cron, 'SELECT dealrisk.refresh()',
			                  pg_catalog.current_database(), CURRENT_USER),
			cron_db.db, pg_catalog.current_database(), cron_db.readable);
	END IF;
	PERFORM dealrisk._watch_config();
	PERFORM dealrisk._check_job_role(cron);
	IF cron_db.readable AND cron_db.db IS NULL THEN
		RAISE WARNING 'pg_cron is installed in this database but its library is not loaded: the job will not run'
			USING HINT = 'Add pg_cron to shared_preload_libraries and restart the server.';
	END IF;

	-- one schedule() or unschedule() at a time
	LOCK TABLE dealrisk.refresh_job IN EXCLUSIVE MODE;
	SELECT a.rolsuper INTO su FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	-- pg_cron names jobs per role, across databases: the caller's job of
	-- that name for another database would get this schedule and keep
	-- running there
	EXECUTE 'SELECT j.jobid, j.database FROM cron.job j WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name'
		' AND j.username::pg_catalog.text OPERATOR(pg_catalog.=) $2 AND j.database::pg_catalog.text OPERATOR(pg_catalog.<>) $3'
		' ORDER BY j.jobid LIMIT 1'
		INTO other USING 'dealrisk-refresh', me::text, pg_catalog.current_database()::text;
	IF other.jobid IS NOT NULL THEN
		RAISE EXCEPTION 'role "%" already has the pg_cron job "dealrisk-refresh" for database "%" (job %)', me, other.database, other.jobid
			USING ERRCODE = 'duplicate_object',
			      DETAIL = pg_catalog.format('pg_cron names jobs per role: scheduling here would give that job the new schedule and leave it running in database "%s".',
			                                 other.database),
			      HINT = pg_catalog.format('Rename that job as a superuser (UPDATE cron.job SET jobname = %L WHERE jobid = %s;) or schedule here as another role.',
			                               'dealrisk-refresh ' || other.database, other.jobid);
	END IF;

	-- one refresh job per database, whoever owns it
	IF su THEN
		-- a superuser sees (and may remove) every role's job
		FOR other IN SELECT j.job_id, j.username FROM dealrisk._refresh_jobs() j WHERE j.username <> me::text LOOP
			EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' USING other.job_id;
			RAISE NOTICE 'removed the pg_cron job % of role "%": one dealrisk refresh job per database', other.job_id, other.username;
		END LOOP;
	ELSE
		-- another role sees only its own jobs: the job of record tells
		SELECT * INTO rec FROM dealrisk.refresh_job;
		IF rec.username <> me::text
		   AND NOT EXISTS (SELECT 1 FROM dealrisk._refresh_jobs() j WHERE j.job_id = rec.job_id)
		   AND dealrisk._cron_job_exists(rec.job_id) THEN
			RAISE EXCEPTION 'database "%" already has a dealrisk refresh job: pg_cron job % of role "%"',
				pg_catalog.current_database(), rec.job_id, rec.username
				USING ERRCODE = 'duplicate_object',
				      DETAIL = pg_catalog.format('One refresh job per database. pg_cron lets only the job''s role or a superuser change or remove it (scheduled %s by "%s", schedule %s).',
				                                 rec.scheduled_at, rec.scheduled_by, rec.schedule),
				      HINT = pg_catalog.format('As "%s" or as a superuser run SELECT dealrisk.unschedule(); then call dealrisk.schedule() again.', rec.username);
		END IF;
	END IF;

	-- pg_cron replaces a job of the same name and role
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
		USING 'dealrisk-refresh', cron, 'SELECT dealrisk.refresh()';
	INSERT INTO dealrisk.refresh_job AS r (singleton, job_id, username, schedule, scheduled_at, scheduled_by)
	VALUES (true, job, me, cron, pg_catalog.now(), SESSION_USER)
	ON CONFLICT (singleton) DO UPDATE SET job_id = EXCLUDED.job_id, username = EXCLUDED.username,
		schedule = EXCLUDED.schedule, scheduled_at = EXCLUDED.scheduled_at, scheduled_by = EXCLUDED.scheduled_by;
	RETURN job;
END
$$;
COMMENT ON FUNCTION dealrisk.schedule(text) IS
	'Schedules SELECT dealrisk.refresh() with pg_cron as job ''dealrisk-refresh'' of this database, run as the current role, which must be able to log in and connect (default 06:00 GMT daily); one job per database: scheduling again replaces it, a superuser replaces another role''s job, another role is refused; returns the pg_cron job id';

CREATE FUNCTION dealrisk.unschedule()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me name := CURRENT_USER;
	su boolean;
	rec dealrisk.refresh_job;
	j record;
	removed boolean := false;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dealrisk._cron_missing(pg_catalog.format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L;',
		                                                 'dealrisk-refresh-' || pg_catalog.current_database()),
			(dealrisk._cron_database()).db, pg_catalog.current_database(), (dealrisk._cron_database()).readable);
	END IF;
	LOCK TABLE dealrisk.refresh_job IN EXCLUSIVE MODE;
	SELECT a.rolsuper INTO su FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	-- a superuser sees every role's job of this database, another role its own
	FOR j IN SELECT r.job_id FROM dealrisk._refresh_jobs() r LOOP
		EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' USING j.job_id;
		removed := true;
	END LOOP;
	SELECT * INTO rec FROM dealrisk.refresh_job;
	IF FOUND THEN
		IF su OR rec.username = me::text OR NOT dealrisk._cron_job_exists(rec.job_id) THEN
			DELETE FROM dealrisk.refresh_job;
		ELSIF NOT removed THEN
			RAISE EXCEPTION 'the dealrisk refresh job of database "%" belongs to role "%" (pg_cron job %)',
				pg_catalog.current_database(), rec.username, rec.job_id
				USING ERRCODE = 'insufficient_privilege',
				      DETAIL = 'pg_cron lets only the job''s role or a superuser remove it.',
				      HINT = pg_catalog.format('Run SELECT dealrisk.unschedule(); as "%s" or as a superuser.', rec.username);
		END IF;
	END IF;
	RETURN removed;
END
$$;
COMMENT ON FUNCTION dealrisk.unschedule() IS
	'Removes the pg_cron job ''dealrisk-refresh'' of this database: a superuser''s call removes it whichever role owns it, another role''s call its own (and is refused for another role''s job); false when there was none';

-- Health ------------------------------------------------------------------

-- The latest run of this database's 'dealrisk-refresh' job in pg_cron's
-- cron.job_run_details and the job itself, as far as the caller may read
-- them (pg_cron shows each role its own jobs and runs, a superuser all);
-- NULLs when pg_cron is not in this database or the caller may not read it.
-- pg_cron's tables are read by dynamic SQL: the cron schema need not exist.
CREATE FUNCTION dealrisk._cron_status(OUT job_id bigint, OUT job_owner text, OUT job_schedule text,
	OUT run_status text, OUT run_message text, OUT run_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.to_regnamespace('cron') IS NULL OR NOT pg_catalog.has_schema_privilege('cron', 'USAGE')
	   OR pg_catalog.to_regclass('cron.job') IS NULL OR pg_catalog.to_regclass('cron.job_run_details') IS NULL THEN
		RETURN;
	END IF;
	SELECT j.job_id, j.username, j.schedule INTO job_id, job_owner, job_schedule
	FROM dealrisk._refresh_jobs() j ORDER BY j.job_id DESC LIMIT 1;
	EXECUTE 'SELECT r.status::pg_catalog.text, r.return_message::pg_catalog.text, r.start_time FROM cron.job_run_details r'
		' WHERE r.jobid OPERATOR(pg_catalog.=) ANY ($1) ORDER BY r.runid DESC LIMIT 1'
		INTO run_status, run_message, run_at
		USING ARRAY(SELECT j.job_id FROM dealrisk._refresh_jobs() j);
EXCEPTION WHEN insufficient_privilege OR undefined_table OR undefined_column OR undefined_function THEN
	job_id := NULL; job_owner := NULL; job_schedule := NULL;
	run_status := NULL; run_message := NULL; run_at := NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_status() IS
	'The dealrisk-refresh job of this database and its latest pg_cron run, as far as the caller may read them; NULLs without pg_cron here (internal)';

-- A duration in plain words: whole minutes under an hour, hours under
-- three days, days beyond.
CREATE FUNCTION dealrisk._duration_words(d interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT n || ' ' || u || CASE WHEN n = 1 THEN '' ELSE 's' END
        FROM (SELECT pg_catalog.floor(pg_catalog.date_part('epoch', d) / x.secs)::bigint AS n, x.u
              FROM (SELECT CASE WHEN d < interval '1 hour' THEN 60 WHEN d < interval '72 hours' THEN 3600 ELSE 86400 END AS secs,
                           CASE WHEN d < interval '1 hour' THEN 'minute' WHEN d < interval '72 hours' THEN 'hour' ELSE 'day' END AS u) x) y);
COMMENT ON FUNCTION dealrisk._duration_words(interval) IS
	'A duration in whole minutes (under an hour), hours (under three days) or days, e.g. ''27 hours'' (internal)';

CREATE VIEW dealrisk.refresh_status AS
SELECT s.last_refresh_at, s.last_refresh_succeeded, l.finished_at AS last_success_at, s.age,
       l.deals_scored, l.alerts_written, l.model_id, l.run_by,
       c.run_status AS last_cron_status, c.run_message AS last_cron_message, c.run_at AS last_cron_run_at,
       coalesce(c.job_id, j.job_id) AS job_id, coalesce(c.job_owner, j.username) AS job_owner,
       coalesce(c.job_schedule, j.schedule) AS job_schedule,
       CASE WHEN NOT s.last_refresh_succeeded
            THEN pg_catalog.format('failing: the pg_cron run at %s failed: %s (%s)',
                                   pg_catalog.date_trunc('second', c.run_at),
                                   coalesce(nullif(pg_catalog.btrim(pg_catalog.split_part(c.run_message, E'\n', 1)), ''), 'no message'),
                                   CASE WHEN l.id IS NULL THEN 'no successful refresh yet'
                                        ELSE 'last success ' || dealrisk._duration_words(s.age) || ' ago' END)
            WHEN l.id IS NULL THEN 'never refreshed'
            WHEN s.age OPERATOR(pg_catalog.>) interval '26 hours'
            THEN 'stale: no successful refresh for ' || dealrisk._duration_words(s.age)
            ELSE 'ok' END AS health
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT r.* FROM dealrisk.refresh_log r ORDER BY r.finished_at DESC, r.id DESC LIMIT 1) l ON true
LEFT JOIN dealrisk.refresh_job j ON true
CROSS JOIN dealrisk._cron_status() c
CROSS JOIN LATERAL (
	SELECT greatest(l.started_at, c.run_at) AS last_refresh_at,
	       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) l.finished_at AS age,
	       -- a pg_cron run after the latest success tells how the last refresh went
	       CASE WHEN c.run_at OPERATOR(pg_catalog.>) coalesce(l.started_at, '-infinity')
	            THEN CASE c.run_status WHEN 'failed' THEN false WHEN 'succeeded' THEN true END
	            WHEN l.id IS NOT NULL THEN true END AS last_refresh_succeeded) s;
COMMENT ON VIEW dealrisk.refresh_status IS
	'One row on the health of the daily refresh: when the last refresh ran and whether it succeeded, the last success (from dealrisk.refresh_log) and its age, deals scored and alerts written, the latest pg_cron run of the job (NULL without pg_cron here or when this role may not read it), the job, and health: ok, stale (no success for 26 hours), failing, never refreshed';
COMMENT ON COLUMN dealrisk.refresh_status.age IS 'clock_timestamp() - last_success_at: alert on it (e.g. age > interval ''26 hours'') or on health <> ''ok''';
COMMENT ON COLUMN dealrisk.refresh_status.last_refresh_succeeded IS
	'false when a pg_cron run after the last success failed; NULL while such a run is under way or when nothing ran yet';

-- The alert outbox --------------------------------------------------------

CREATE FUNCTION dealrisk.claim_alerts(max int DEFAULT 100, worker text DEFAULT NULL,
	reclaim_after interval DEFAULT '15 minutes')
RETURNS SETOF dealrisk.alerts
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE ROWS 100
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF claim_alerts.max IS NULL OR claim_alerts.max < 1 THEN
		RAISE EXCEPTION 'max must be at least 1, got %', coalesce(claim_alerts.max::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF reclaim_after IS NULL OR reclaim_after < interval '0' THEN
		RAISE EXCEPTION 'reclaim_after must be an interval of at least 0, got %', coalesce(reclaim_after::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'How long a claimed alert waits for its acknowledgement before another worker may take it, e.g. ''15 minutes''.';
	END IF;
	-- SKIP LOCKED: alerts another worker is claiming right now are left to it
	RETURN QUERY
	WITH c AS (
		UPDATE dealrisk.alerts a
		SET claimed_at = pg_catalog.clock_timestamp(),
		    claimed_by = coalesce(nullif(pg_catalog.btrim(worker), ''),
		                          pg_catalog.format('%s/%s', SESSION_USER, pg_catalog.pg_backend_pid())),
		    claims = a.claims + 1
		FROM (SELECT f.id FROM dealrisk.alerts f
		      WHERE f.acked_at IS NULL
		        AND (f.claimed_at IS NULL OR f.claimed_at <= pg_catalog.clock_timestamp() - reclaim_after)
		      ORDER BY f.id
		      LIMIT claim_alerts.max
		      FOR UPDATE SKIP LOCKED) free
		WHERE a.id = free.id
		RETURNING a.*)
	SELECT * FROM c ORDER BY c.id;
END
$$;
COMMENT ON FUNCTION dealrisk.claim_alerts(int, text, interval) IS
	'Takes up to max unacknowledged alerts that nobody holds (never claimed, or claimed longer than reclaim_after ago and not acknowledged) and marks them claimed by worker (default: session user/pid); FOR UPDATE SKIP LOCKED, so concurrent workers get disjoint alerts';

CREATE FUNCTION dealrisk.ack_alert(id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	was timestamptz;
BEGIN
	IF ack_alert.id IS NULL THEN
		RAISE EXCEPTION 'alert id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.acked_at INTO was FROM dealrisk.alerts a WHERE a.id = ack_alert.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert % does not exist', ack_alert.id USING ERRCODE = 'no_data_found';
	END IF;
	IF was IS NOT NULL THEN
		RETURN false;
	END IF;
	UPDATE dealrisk.alerts a SET acked_at = pg_catalog.clock_timestamp() WHERE a.id = ack_alert.id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.ack_alert(bigint) IS
	'Confirms that an alert was delivered, so it is never claimed again; false when it already was';

CREATE FUNCTION dealrisk.alert_text(alert_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a dealrisk.alerts;
	reasons text;
BEGIN
	IF alert_id IS NULL THEN
		RAISE EXCEPTION 'alert id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO a FROM dealrisk.alerts x WHERE x.id = alert_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert % does not exist', alert_id USING ERRCODE = 'no_data_found';
	END IF;
	-- the factors that add risk, biggest first (at most three), else the top one
	SELECT pg_catalog.string_agg('  - ' || r.reason, E'\n' ORDER BY r.n) INTO reasons
	FROM (SELECT e.value ->> 'reason' AS reason, e.n
	      FROM pg_catalog.jsonb_array_elements(a.payload -> 'explain') WITH ORDINALITY e(value, n)
	      WHERE (e.value ->> 'effect')::float8 > 0 OR e.n = 1
	      ORDER BY e.n LIMIT 3) r;
	RETURN pg_catalog.concat_ws(E'\n',
		'Risk Alert: Deal ' || a.deal_id || coalesce(' (' || a.industry || ')', ''),
		pg_catalog.format('Risk score: %s%% (%s)%s', pg_catalog.round(a.risk::numeric, 1), pg_catalog.initcap(a.band),
			CASE WHEN a.previous_risk IS NOT NULL
			     THEN pg_catalog.format(', up from %s%%', pg_catalog.round(a.previous_risk::numeric, 1)) ELSE '' END),
		CASE WHEN reasons IS NOT NULL THEN E'Reasons:\n' || reasons
		     WHEN a.reason IS NOT NULL THEN 'Reason: ' || a.reason END,
		'Recommended action: ' || coalesce(a.action, 'review the deal'),
		pg_catalog.concat_ws(' · ',
			'Rep ' || a.sales_rep_id,
			a.deal_stage || coalesce(' for ' || a.days_in_stage || ' days', ''),
			'Amount ' || pg_catalog.to_char(a.deal_amount, 'FM999,999,999,999,990'),
			'Alert ' || a.id || ' of ' || pg_catalog.to_char(a.created_at, 'YYYY-MM-DD')));
END
$$;
COMMENT ON FUNCTION dealrisk.alert_text(bigint) IS
	'The manager''s message for an alert, as plain text: deal and industry, risk score and band, the reasons, the recommended action, rep, stage and amount';

-- Digest and history ------------------------------------------------------

CREATE FUNCTION dealrisk.digest(period interval DEFAULT '7 days', min_change float8 DEFAULT 5)
RETURNS TABLE (sales_rep_id text, is_total boolean, open_deals bigint, pipeline_value numeric,
	high_risk_deals bigint, value_at_risk numeric, share_at_risk float8,
	became_high_risk bigint, risk_fell bigint, amounts_not_finite bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
	cut float8;
BEGIN
	IF period IS NULL OR period <= interval '0' THEN
		RAISE EXCEPTION 'period must be a positive interval, got %', coalesce(period::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. ''7 days'' for a weekly digest.';
	END IF;
	IF min_change IS NULL OR NOT (min_change > 0 AND min_change <= 100) THEN
		RAISE EXCEPTION 'min_change must be between 0 (exclusive) and 100 risk points, got %', coalesce(min_change::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	cfg := dealrisk._watch_config();
	-- reading the source must run no code of a role the caller does not
	-- trust (docs/security.md); the high-risk deals come from the latest
	-- refresh's scores in dealrisk.score_history, not from the view, which
	-- belongs to the operator
	PERFORM dealrisk._check_source(cfg.source, ARRAY['deal_id', 'outcome', 'sales_rep_id', 'deal_amount']);
	-- high-risk: at least the cutoff of the alert policy at the latest
	-- refresh (refresh_log; for scores without a log row, the configuration's)
	SELECT l.cutoff INTO cut FROM dealrisk.refresh_log l
	WHERE l.scored_at = (SELECT pg_catalog.max(x.scored_at) FROM dealrisk.score_history x)
	ORDER BY l.id DESC LIMIT 1;
	cut := coalesce(cut, cfg.cutoff, cfg.threshold);
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH r AS (
			SELECT d.deal_id::text AS deal_id, d.sales_rep_id::text AS rep, d.deal_amount::numeric AS raw_amount
			FROM %s d WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
		),
		o AS (
			-- a NaN or infinite amount is counted, and left out of the sums
			SELECT r.deal_id, r.rep,
			       CASE WHEN r.raw_amount NOT IN ('NaN', 'Infinity', '-Infinity') THEN r.raw_amount END AS amount,
			       (r.raw_amount IN ('NaN', 'Infinity', '-Infinity'))::int AS bad_amount
			FROM r
		),
		latest AS (
			SELECT DISTINCT ON (h.deal_id) h.deal_id, h.risk, h.scored_at
			FROM dealrisk.score_history h WHERE h.scored_at > pg_catalog.now() - $1
			ORDER BY h.deal_id, h.scored_at DESC
		),
		moved AS (
			-- the risk at the start of the period (the last score before it,
			-- else the first score in it) against the latest
			SELECT l.deal_id, coalesce(b.risk, f.risk) - l.risk AS fall
			FROM latest l
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at <= pg_catalog.now() - $1 ORDER BY p.scored_at DESC LIMIT 1) b ON true
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at > pg_catalog.now() - $1 ORDER BY p.scored_at LIMIT 1) f ON true
		),
		became AS (
			SELECT DISTINCT ON (a.deal_id) a.deal_id, a.sales_rep_id AS rep
			FROM dealrisk.alerts a WHERE a.created_at > pg_catalog.now() - $1
			  AND coalesce(a.payload ->> 'cause', 'became high-risk') = 'became high-risk'
			ORDER BY a.deal_id, a.created_at DESC
		),
		per_deal AS (
			SELECT o.rep, 1 AS open_deal, o.amount, (v.deal_id IS NOT NULL)::int AS high,
			       CASE WHEN v.deal_id IS NOT NULL THEN o.amount END AS amount_high, 0 AS became,
			       (m.fall >= $2)::int AS fell, o.bad_amount
			FROM o
			LEFT JOIN (SELECT h.deal_id FROM dealrisk.score_history h
			           WHERE h.scored_at = (SELECT max(x.scored_at) FROM dealrisk.score_history x)
			             AND h.risk >= $3) v ON v.deal_id = o.deal_id
			LEFT JOIN moved m ON m.deal_id = o.deal_id
			UNION ALL
			SELECT b.rep, 0, NULL, 0, NULL, 1, 0, 0 FROM became b
		)
		SELECT r.rep, GROUPING(r.rep) = 1, sum(r.open_deal)::bigint, coalesce(sum(r.amount), 0),
		       sum(r.high)::bigint, coalesce(sum(r.amount_high), 0),
		       CASE WHEN sum(r.amount) > 0 THEN (coalesce(sum(r.amount_high), 0) / sum(r.amount))::float8 END,
		       sum(r.became)::bigint, coalesce(sum(r.fell), 0)::bigint, sum(r.bad_amount)::bigint
		FROM per_deal r
		GROUP BY GROUPING SETS ((r.rep), ())
		ORDER BY GROUPING(r.rep), 6 DESC, 1 NULLS LAST$q$, cfg.source)
		USING period, min_change, cut;
END
$$;
COMMENT ON FUNCTION dealrisk.digest(interval, float8) IS
	'Weekly digest per sales rep and in total (is_total): open deals and pipeline value, high-risk deals (risk at least the cutoff of the alert policy at the latest refresh) and the value at risk and its share, deals that became high-risk in the period (their alerts; not the re-alerts of a risk that rose), open deals whose risk fell by at least min_change points over the period (score history), and open deals whose deal_amount is NaN or infinite (counted, left out of the sums)';

CREATE FUNCTION dealrisk.risk_changes(since timestamptz)
RETURNS TABLE (deal_id text, old_risk float8, new_risk float8, change float8,
	old_scored_at timestamptz, new_scored_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'E.g. now() - interval ''7 days''.';
	END IF;
	-- the score at since is the last one before it, else the first one after
	-- (two probes of the primary key per deal)
	RETURN QUERY
	SELECT l.deal_id, coalesce(b.risk, f.risk), l.risk, l.risk - coalesce(b.risk, f.risk),
	       coalesce(b.scored_at, f.scored_at), l.scored_at
	FROM (SELECT DISTINCT ON (h.deal_id) h.deal_id, h.risk, h.scored_at
	      FROM dealrisk.score_history h WHERE h.scored_at > since
	      ORDER BY h.deal_id, h.scored_at DESC) l
	LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
	                   WHERE p.deal_id = l.deal_id AND p.scored_at <= since
	                   ORDER BY p.scored_at DESC LIMIT 1) b ON true
	LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
	                   WHERE p.deal_id = l.deal_id AND p.scored_at > since
	                   ORDER BY p.scored_at LIMIT 1) f ON true
	ORDER BY abs(l.risk - coalesce(b.risk, f.risk)) DESC, l.deal_id;
END
$$;
COMMENT ON FUNCTION dealrisk.risk_changes(timestamptz) IS
	'Deals scored since a time, with their risk then (the last score before it, else the first after it) and now (the latest score), biggest move first';

-- Live feedback -----------------------------------------------------------

-- The NOTIFY payload for a deal whose risk was (re)computed, or NULL when it
-- is closed or its risk did not change.
CREATE FUNCTION dealrisk._risk_change(deal record, old_risk float8, is_new boolean, model text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_risk float8;
	reason text;
BEGIN
	IF dealrisk.is_won(deal.outcome) IS NOT NULL THEN
		RETURN NULL;
	END IF;
	new_risk := dealrisk.deal_risk(deal, model);
	IF NOT is_new AND pg_catalog.round(new_risk::numeric, 2) = pg_catalog.round(old_risk::numeric, 2) THEN
		RETURN NULL;
	END IF;
	SELECT e.reason INTO reason FROM dealrisk.deal_risk_explain(deal, model) e LIMIT 1;
	RETURN pg_catalog.jsonb_build_object(
		'deal_id', deal.deal_id::text,
		'old_risk', pg_catalog.round(old_risk::numeric, 2),
		'new_risk', pg_catalog.round(new_risk::numeric, 2),
		'change', pg_catalog.round((new_risk - old_risk)::numeric, 2),
		'band', dealrisk.risk_band(new_risk),
		'reason', reason);
END
$$;
COMMENT ON FUNCTION dealrisk._risk_change(record, float8, boolean, text) IS
	'The dealrisk_risk_changes notification of a deal row: deal_id, old and new risk, change, band, top reason; NULL for closed deals and unchanged risks (internal)';

CREATE FUNCTION dealrisk._track_trigger()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	model text := coalesce(TG_ARGV[0], 'default');
	payload jsonb;
BEGIN
	-- the write must never fail because of scoring
	BEGIN
		payload := dealrisk._risk_change(NEW,
			CASE WHEN TG_OP = 'UPDATE' AND dealrisk.is_won(OLD.outcome) IS NULL THEN dealrisk.deal_risk(OLD, model) END,
			TG_OP = 'INSERT', model);
		IF payload IS NOT NULL THEN
			PERFORM pg_catalog.pg_notify('dealrisk_risk_changes', payload::text);
		END IF;
	EXCEPTION WHEN OTHERS THEN
		RAISE WARNING 'dealrisk: the risk of a deal written to % was not computed: %',
			pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), SQLERRM
			USING HINT = 'The write went through; fix the model or the row, or stop tracking with dealrisk.untrack().';
	END;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._track_trigger() IS
	'Row trigger of dealrisk.track(): sends NOTIFY dealrisk_risk_changes with the new risk of an open deal; scoring errors become warnings (internal)';

CREATE FUNCTION dealrisk.track(source regclass, model text DEFAULT 'default')
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION 'source "%" is a %, not a table: live risk feedback needs a trigger on the table that is written',
			dealrisk._source_name(source),
			CASE kind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'relation' END
			USING ERRCODE = 'wrong_object_type',
			      HINT = 'Track the table the view reads from (with the data contract''s columns).';
	END IF;
	PERFORM dealrisk._active_model(model);
	EXECUTE pg_catalog.format(
		'CREATE OR REPLACE TRIGGER dealrisk_track AFTER INSERT OR UPDATE ON %s'
		' FOR EACH ROW EXECUTE FUNCTION dealrisk._track_trigger(%L)', source, model);
END
$$;
COMMENT ON FUNCTION dealrisk.track(regclass, text) IS
	'Installs the row trigger dealrisk_track on a deal table: each insert or update of an open deal sends NOTIFY dealrisk_risk_changes with deal_id, old and new risk and the top reason; a scoring error is a WARNING, never a failed write';

CREATE FUNCTION dealrisk.untrack(source regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF source IS NULL THEN
		RAISE EXCEPTION 'source must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = source::pg_catalog.oid AND t.tgname = 'dealrisk_track') THEN
		RETURN false;
	END IF;
	EXECUTE pg_catalog.format('DROP TRIGGER dealrisk_track ON %s', source);
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.untrack(regclass) IS
	'Removes the dealrisk_track trigger of dealrisk.track() from a table; false when there was none';

-- Privileges ----------------------------------------------------------------
-- No function is SECURITY DEFINER: each runs with its caller's privileges,
-- so calling one gives nobody more than the SQL it runs would.  Three kinds
-- of function are not executable by PUBLIC:
-- 1. what trains, activates, imports, watches, refreshes, schedules, tracks
--    or writes alerts: docs/security.md grants it to the roles that operate
--    dealrisk;
-- 2. the internal helpers only those functions call (an operator role gets
--    them with GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk);
-- 3. the support functions of aggregates, the planner and triggers, which
--    nobody calls directly: PostgreSQL checks the aggregate's owner, not its
--    caller, for an aggregate's support functions, and calls planner
--    support and trigger functions without a check.
-- Scoring, diagnostics and reading functions stay executable, and so do the
-- internal helpers they call (diagnostics helpers, _watch_config for
-- digest(), _row_args/_model_columns/_evaluate for evaluate(), _as_of,
-- _deal_risk_row into which the planner rewrites deal_risk(), _risk_change
-- for the track() trigger, which runs as whoever writes the deal table;
-- _cron_status, _refresh_jobs and _duration_words for the view
-- refresh_status, whose functions run as its reader).
-- These REVOKEs are at the end of the install script because they cover
-- functions of every part.
REVOKE EXECUTE ON FUNCTION
	dealrisk.train(regclass, text, text[], float8, float8, boolean),
	dealrisk.activate(bigint, boolean),
	dealrisk.rollback(text),
	dealrisk.import_model(jsonb, text),
	dealrisk.watch(regclass, float8, text, float8, float8, int),
	dealrisk.refresh(),
	dealrisk.prune_history(interval),
	dealrisk.schedule(text),
	dealrisk.unschedule(),
	dealrisk.track(regclass, text),
	dealrisk.untrack(regclass),
	dealrisk.claim_alerts(int, text, interval),
	dealrisk.ack_alert(bigint)
FROM PUBLIC;
-- 2. helpers of the functions above
REVOKE EXECUTE ON FUNCTION
	dealrisk._validate_model(jsonb, float8[]),
	dealrisk._irls_pass(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._irls_solve(float8[], float8[], float8),
	dealrisk._irls_decrement(float8[], float8[], float8[], float8),
	dealrisk._quantile_edges(regclass, text, text, float8[]),
	dealrisk._open_knots(regclass, regclass, text, text),
	dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_step(jsonb, float8[], float8[], boolean),
	dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),
	dealrisk._census(regclass, text, text, boolean),
	dealrisk._finite_date(text, text[]),
	dealrisk._build_spec(regclass, text[], text, regclass),
	dealrisk._fit(regclass, jsonb, text, int, date, date, float8, float8, float8[], float8, jsonb, date, float8),
	dealrisk._quality_problem(jsonb),
	dealrisk._active_model(text),
	dealrisk._scoring_model(text),
	dealrisk._qualified_name(regclass),
	dealrisk._stage_start_sql(regclass),
	dealrisk._high_risk_cutoff(float8[], float8, float8),
	dealrisk._alert_action(text, text, float8, text, text[], text[]),
	dealrisk._policy_words(float8, float8),
	dealrisk._view_sql(regclass),
	dealrisk._view_shape(text),
	dealrisk._duplicate_deals(regclass, text),
	dealrisk._describe_view(),
	dealrisk._rebuild_view(regclass, text),
	dealrisk._create_view(regclass),
	dealrisk._refresh_view(regclass),
	dealrisk._cron_database(),
	dealrisk._cron_missing(text, text, text, boolean),
	dealrisk._check_job_role(text),
	dealrisk._cron_job_exists(bigint)
FROM PUBLIC;
-- 3. support functions
REVOKE EXECUTE ON FUNCTION
	dealrisk._win_rate_accum(bigint[], boolean),
	dealrisk._win_rate_inv(bigint[], boolean),
	dealrisk._int8_state_combine(bigint[], bigint[]),
	dealrisk._win_rate_final(bigint[]),
	dealrisk._win_rate_ci_final(bigint[]),
	dealrisk._win_rate_ci_level_accum(float8[], boolean, float8),
	dealrisk._win_rate_ci_level_combine(float8[], float8[]),
	dealrisk._win_rate_ci_level_final(float8[]),
	dealrisk._win_rate_amount_accum(float8[], boolean, numeric),
	dealrisk._float8_state_combine(float8[], float8[]),
	dealrisk._win_rate_amount_final(float8[]),
	dealrisk._stage_funnel_accum(bigint[], text, boolean),
	dealrisk._stage_funnel_final(bigint[]),
	dealrisk._late_stage_loss_accum(bigint[], text, boolean),
	dealrisk._late_stage_loss_final(bigint[]),
	dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], "any"),
	dealrisk._eval_final(float8[]),
	dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._deal_risk_support(internal),
	dealrisk._models_changed(),
	dealrisk._track_trigger(),
	dealrisk._config_edit(),
	dealrisk._stages_check()
FROM PUBLIC;
