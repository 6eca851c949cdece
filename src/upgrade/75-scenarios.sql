-- 75-scenarios: sample_scenario() and sample_scenarios(), planted scenarios
-- for the drivers analysis (issue #13, item 4); copied from src/sample.sql.

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
