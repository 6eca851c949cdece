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
	-- (a billion rows is hundreds of gigabytes: a typo, not a sample)
	IF n > 1000000000 THEN
		RAISE EXCEPTION 'number of sample deals must be at most 1,000,000,000, got %', n
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Generate a larger set in pieces: the rows of (n, seed) are the first n of any larger n with the same seed.';
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk._sample_deals_n(bigint, bigint) IS
	'sample_deals argument check: returns n, or raises an error for n < 1, n > 1,000,000,000 or a NULL argument (internal)';

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

-- Planted scenarios -----------------------------------------------------------
-- sample_scenario() makes closed deals of two quarters, Q1-2024 (the
-- baseline) and Q2-2024 (the recent window), in which only known things
-- change between the quarters: what the drivers analysis must find, and
-- nothing else.  sample_scenarios() lists the scenarios and their planted
-- causes in the notation of drivers() (kind:driver).

-- The scenarios, their planted causes (sorted) and what changes.  The list
-- is also what _sample_scenario_n() accepts.
CREATE FUNCTION dealrisk.sample_scenarios()
RETURNS TABLE (scenario text, planted text[], description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE ROWS 5
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
SELECT v.scenario, v.planted, v.description
FROM (VALUES
	(1, 'none', '{}'::text[],
		'Nothing changes between Q1-2024 and Q2-2024: every segment keeps its win rate and its share'),
	(2, 'collapse', '{"rate:industry = FinTech"}'::text[],
		'In Q2-2024 the log-odds of winning a FinTech deal fall by 1.6 (a single-segment collapse); nothing else changes'),
	(3, 'mix', '{"mix:lead_source = Outbound"}'::text[],
		'In Q2-2024 Outbound, always the weakest lead source, takes 45% of the deals instead of 15% (a mix shift); no win rate changes'),
	(4, 'two_causes', '{"mix:lead_source = Outbound","rate:industry = FinTech"}'::text[],
		'The FinTech collapse and the shift to Outbound together, drawn independently of each other'),
	(5, 'cell', '{"rate:region = APAC × lead_source = Outbound"}'::text[],
		'In Q2-2024 the log-odds of winning fall by 2.0 for APAC deals from Outbound only (a collapse confined to one region x lead-source cell); APAC deals from other sources and Outbound deals elsewhere do not change')
	) AS v(k, scenario, planted, description)
ORDER BY v.k;
END;
COMMENT ON FUNCTION dealrisk.sample_scenarios() IS
	'The scenarios of sample_scenario(): name, the causes planted in Q2-2024 in the notation of drivers() (kind:driver, sorted; empty for none) and what changes';

CREATE FUNCTION dealrisk._sample_scenario_n(scenario text, n bigint, seed bigint)
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names		text;
BEGIN
	IF scenario IS NULL OR NOT EXISTS (
			SELECT 1 FROM dealrisk.sample_scenarios() s
			WHERE s.scenario OPERATOR(pg_catalog.=) _sample_scenario_n.scenario) THEN
		SELECT pg_catalog.string_agg(s.scenario, ', ') INTO names FROM dealrisk.sample_scenarios() s;
		RAISE EXCEPTION 'sample scenario must be one of %, got %', names,
			coalesce(pg_catalog.quote_literal(scenario), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'SELECT * FROM dealrisk.sample_scenarios() describes them.';
	END IF;
	RETURN dealrisk._sample_deals_n(n, seed);
END
$$;
COMMENT ON FUNCTION dealrisk._sample_scenario_n(text, bigint, bigint) IS
	'sample_scenario argument check: returns n, or raises an error for an unknown scenario, n < 1 or a NULL argument (internal)';

-- Built like sample_deals (one inlined SELECT, levels kept apart by OFFSET
-- NULL, a SQL-standard body bound at creation; see there), with its own
-- streams of hash_uniform(seed, i, stream): 1 close date, 2 industry,
-- 3 region, 4 product, 5 lead source, 6 rep, 7 cycle, 8 amount, 9 outcome,
-- 10 lost stage.  The dimensions are drawn independently of each other, so
-- a scenario's cause leaves a shadow on every other dimension only through
-- its own segment.  Deal 1 is created and closed on 2024-06-30, whatever n
-- is: Q2-2024 is the last complete quarter of closed deals (the default
-- recent window), and the data is not cut off by created_date before its
-- end (diagnose() would caution that the recent cycles are biased).
CREATE FUNCTION dealrisk.sample_scenario(scenario text, n bigint DEFAULT 10000, seed bigint DEFAULT 1)
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
	planted_win_prob   float8
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
SELECT
	'D' || lpad(s.i::text, s.id_width, '0'),
	s.closed - s.cycle,
	s.closed,
	'rep_' || s.rep,
	s.industry,
	s.region,
	s.product,
	s.lead_source,
	CASE WHEN s.won THEN 'Closed'
		ELSE (ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation'])[1 + floor(4 * s.u_stage)::int] END,
	s.amount,
	s.cycle,
	CASE WHEN s.won THEN 'Won' ELSE 'Lost' END,
	s.win_prob
FROM (
	-- level 3: the outcome
	SELECT e.*, e.u_outcome < e.win_prob AS won
	FROM (
		-- level 2: the planted win probability: constant main effects, and
		-- the scenario's change in Q2-2024
		SELECT a.*,
			1.0::float8 / (1.0::float8 + exp(-(-0.35::float8
				+ CASE a.industry WHEN 'SaaS' THEN 0.3::float8 WHEN 'FinTech' THEN 0.2::float8
					WHEN 'EdTech' THEN -0.3::float8 WHEN 'Ecommerce' THEN -0.2::float8 ELSE 0.0::float8 END
				+ CASE a.region WHEN 'North America' THEN 0.2::float8 WHEN 'India' THEN -0.3::float8
					ELSE 0.0::float8 END
				+ CASE a.product WHEN 'Pro' THEN 0.2::float8 WHEN 'Enterprise' THEN -0.4::float8
					ELSE 0.0::float8 END
				+ CASE a.lead_source WHEN 'Outbound' THEN -0.8::float8 WHEN 'Inbound' THEN 0.3::float8
					WHEN 'Referral' THEN 0.5::float8 ELSE 0.0::float8 END
				+ (ARRAY[0.4, -0.3, 0.2, 0.0, -0.5, 0.3, -0.2, 0.1, 0.0, -0.1,
						 0.5, -0.4, 0.2, -0.2, 0.0, 0.3, -0.3, 0.1, -0.1, 0.0]::float8[])[a.rep]
				- 1.6::float8 * (a.collapse AND a.is_recent AND a.industry = 'FinTech')::int
				- 2.0::float8 * (a.cell AND a.is_recent AND a.region = 'APAC'
								 AND a.lead_source = 'Outbound')::int))) AS win_prob
		FROM (
			-- level 1: the attributes, the cycle and the amount
			SELECT b.i, b.id_width, b.closed, b.is_recent, b.collapse, b.cell,
				b.u_outcome, b.u_stage,
				CASE WHEN b.u_industry < 0.25 THEN 'SaaS'
					WHEN b.u_industry < 0.45 THEN 'FinTech'
					WHEN b.u_industry < 0.65 THEN 'HealthTech'
					WHEN b.u_industry < 0.80 THEN 'EdTech'
					ELSE 'Ecommerce' END AS industry,
				CASE WHEN b.u_region < 0.35 THEN 'North America'
					WHEN b.u_region < 0.60 THEN 'Europe'
					WHEN b.u_region < 0.85 THEN 'APAC'
					ELSE 'India' END AS region,
				CASE WHEN b.u_product < 0.50 THEN 'Core'
					WHEN b.u_product < 0.80 THEN 'Pro'
					ELSE 'Enterprise' END AS product,
				-- Outbound takes share o (15%, or 45% in a mix shift's
				-- Q2-2024); the rest splits 40/30/30
				CASE WHEN b.u_source < b.outbound THEN 'Outbound'
					WHEN b.u_source < b.outbound + 0.40 * (1 - b.outbound) THEN 'Inbound'
					WHEN b.u_source < b.outbound + 0.70 * (1 - b.outbound) THEN 'Referral'
					ELSE 'Partner' END AS lead_source,
				1 + floor(20 * b.u_rep)::int AS rep,
				-- log-normal, median 40 days (Pro x1.2, Enterprise x1.6), log-sd
				-- 0.5; deal 1 is created and closed on 2024-06-30
				CASE WHEN b.i = 1 THEN 0
					ELSE least(365, greatest(1, round(exp(ln(40) + 0.5 * dealrisk.normal_quantile(
							0.5e-9 + b.u_cycle * (1 - 1e-9)))
						* CASE WHEN b.u_product < 0.50 THEN 1.0::float8
							WHEN b.u_product < 0.80 THEN 1.2::float8 ELSE 1.6::float8 END)))::int
				END AS cycle,
				greatest(1, round(exp(
					CASE WHEN b.u_product < 0.50 THEN ln(8000)
						WHEN b.u_product < 0.80 THEN ln(18000)
						ELSE ln(60000) END
					+ 0.8 * dealrisk.normal_quantile(0.5e-9 + b.u_amount * (1 - 1e-9)))))::numeric AS amount
			FROM (
				-- level 0: the row number, its close date, its draws and the
				-- scenario's switches
				SELECT c.*,
					c.closed >= DATE '2024-04-01' AS is_recent,
					CASE WHEN c.mix AND c.closed >= DATE '2024-04-01' THEN 0.45 ELSE 0.15 END AS outbound
				FROM (
					SELECT g.i,
						greatest(7, length(sample_scenario.n::text)) AS id_width,
						-- 182 days: 2024-01-01 .. 2024-06-30 (Q1 and Q2 have 91 each)
						CASE WHEN g.i = 1 THEN DATE '2024-06-30'
							ELSE DATE '2024-01-01'
								+ floor(182 * dealrisk.hash_uniform(sample_scenario.seed, g.i, 1))::int
						END AS closed,
						sample_scenario.scenario IN ('collapse', 'two_causes') AS collapse,
						sample_scenario.scenario IN ('mix', 'two_causes') AS mix,
						sample_scenario.scenario = 'cell' AS cell,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 2) AS u_industry,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 3) AS u_region,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 4) AS u_product,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 5) AS u_source,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 6) AS u_rep,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 7) AS u_cycle,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 8) AS u_amount,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 9) AS u_outcome,
						dealrisk.hash_uniform(sample_scenario.seed, g.i, 10) AS u_stage
					FROM generate_series(1, dealrisk._sample_scenario_n(sample_scenario.scenario,
						sample_scenario.n, sample_scenario.seed)) AS g(i)
					OFFSET NULL
				) AS c
			) AS b
			OFFSET NULL
		) AS a
		OFFSET NULL
	) AS e
	OFFSET NULL
) AS s;
END;
COMMENT ON FUNCTION dealrisk.sample_scenario(text, bigint, bigint) IS
	'n synthetic closed deals of Q1-2024 and Q2-2024 in the data contract''s columns plus planted_win_prob, with constant segment effects and the changes in Q2-2024 of one scenario of sample_scenarios() (none, collapse, mix, two_causes, cell; see docs/sample-data.md); the same (scenario, n, seed) always gives the same rows';
