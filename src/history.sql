-- history.sql: stage history as an input (issue #14): a generator of deals
-- with their stage history and planted facts, the history's checks, and
-- the funnel read from the history.  docs/data-contract.md ("Stage
-- history") is the contract; docs/sample-data.md describes the generator.

-- The generator -------------------------------------------------------------
-- Every deal walks Qualified -> Demo -> Proposal -> Negotiation -> won; at
-- each step it moves on or is lost.  The walk is drawn to its end (past the
-- as-of date 2024-12-31): sample_pipeline() shows the deals as they stood
-- on 2024-12-31 plus their final outcome, sample_stage_history() the stages
-- they had entered by then.  A row depends only on (seed, i), through
-- hash_uniform(seed, i, stream); streams: 1 created, 2 industry, 3 region,
-- 4 product, 5 lead source, 6 rep, 7 amount, 11-14 days in stage 1-4,
-- 21-24 stall in stage 1-4, 31-34 moving on from stage 1-4, 43-44 a push
-- into stage 3-4, 45-46 its day, 50 activity gap.  Planted (the tests and
-- docs/sample-data.md rely on these and on nothing else changing):
--   * Demo -> Proposal moves on with probability 0.73, but 0.45 for deals
--     that entered Demo in 2024-Q2 (0.63 and 0.39 on average over stalls
--     and lead sources); no other step changes over time (Qualified ->
--     Demo 0.85, Proposal -> Negotiation 0.80, Negotiation -> won 0.80);
--   * a stall (20% of the stays in any stage) triples the days in the stage
--     and multiplies the chance of moving on by 0.45;
--   * rep_4 pushes 80% of the advances into Proposal and Negotiation that
--     would come in the first 30 days of a quarter into the last three days
--     of the quarter before, and a pushed deal moves on from that stage
--     with half the chance; when it is lost there, it is lost within a
--     third of its stay, its last activity logged 15-24 days before the
--     push.
-- Outbound deals (a steady 20%) move on with 0.85 of the chance at every
-- step; Enterprise deals stay 1.4 times as long in each stage.
-- Days of one stay in a stage: log-normal around mean (sd 0.5 on the log
-- scale), three times as long when stalled, 1.4 times for Enterprise.
CREATE FUNCTION dealrisk._sample_stay(mean float8, u float8, stalled boolean, enterprise boolean)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN greatest(1, round(exp(ln(mean) + 0.5 * dealrisk.normal_quantile(0.5e-9 + u * (1 - 1e-9)))
	* CASE WHEN stalled THEN 3.0::float8 ELSE 1.0::float8 END
	* CASE WHEN enterprise THEN 1.4::float8 ELSE 1.0::float8 END))::int;
COMMENT ON FUNCTION dealrisk._sample_stay(float8, float8, boolean, boolean) IS
	'Days of one stay in a stage of the generated walk: log-normal around mean, x3 when stalled, x1.4 for Enterprise (internal)';

CREATE FUNCTION dealrisk._sample_walk(n bigint, seed bigint)
RETURNS TABLE (
	i             bigint,
	deal_id       text,
	created       date,
	rep           text,
	industry      text,
	region        text,
	product       text,
	lead_source   text,
	amount        numeric,
	entered       date[],
	stalled       boolean[],
	pushed        boolean[],
	reached       int,
	closed        date,
	u_gap         float8
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
SELECT v.i, 'P' || lpad(v.i::text, greatest(7, length(_sample_walk.n::text)), '0'),
	v.created, v.rep, v.industry, v.region, v.product, v.lead_source, v.amount,
	ARRAY[v.e1, v.e2, v.e3, v.e4], ARRAY[v.s1, v.s2, v.s3, v.s4], ARRAY[false, false, v.p3, v.p4],
	-- how far the deal gets: the stage it is lost in, or 5 when it wins
	CASE WHEN NOT v.c1 THEN 1 WHEN NOT v.c2 THEN 2 WHEN NOT v.c3 THEN 3 WHEN NOT v.c4 THEN 4 ELSE 5 END,
	-- a lost deal closes when its stay in the stage it is lost in ends (a
	-- pushed one within a third of the stay: the push did not hold); a won
	-- one when its stay in Negotiation ends
	CASE WHEN NOT v.c1 THEN v.x1 WHEN NOT v.c2 THEN v.x2
		WHEN NOT v.c3 THEN CASE WHEN v.p3 THEN v.e3 + greatest(1, v.d3 / 3) ELSE v.x3 END
		WHEN NOT v.c4 AND v.p4 THEN v.e4 + greatest(1, v.d4 / 3)
		ELSE v.x4 END,
	v.v50
FROM (
	-- level 4: moving on from each stage
	SELECT t.*,
		t.u1 < 0.85::float8 * t.m1 AS c1,
		t.u2 < CASE WHEN t.e2 >= DATE '2024-04-01' AND t.e2 < DATE '2024-07-01'
				THEN 0.45::float8 ELSE 0.73::float8 END * t.m2 AS c2,
		t.u3 < 0.80::float8 * t.m3 * CASE WHEN t.p3 THEN 0.5::float8 ELSE 1.0::float8 END AS c3,
		t.u4 < 0.80::float8 * t.m4 * CASE WHEN t.p4 THEN 0.5::float8 ELSE 1.0::float8 END AS c4
	FROM (
		-- level 3: rep_4's push into Negotiation, after the one into Proposal
		SELECT r.*, CASE WHEN r.p4 THEN r.q4 - 1 - floor(3 * r.v46)::int ELSE r.x3 END AS e4
		FROM (
			SELECT q.*, q.rep = 'rep_4' AND q.v44 < 0.8 AND q.x3 - q.q4 < 30 AND q.q4 - 3 > q.e3 AS p4
			FROM (
				-- level 2: rep_4's push into Proposal: the stay in Demo ends on
				-- the pushed date, the one in Proposal when it would have
				SELECT p.*, CASE WHEN p.p3 THEN p.q3 - 1 - floor(3 * p.v45)::int ELSE p.x2 END AS e3
				FROM (
					SELECT a.*, a.rep = 'rep_4' AND a.v43 < 0.8 AND a.x2 - a.q3 < 30 AND a.q3 - 3 > a.e2 AS p3
					FROM (
						-- level 1: the unpushed dates (x_k: the end of the stay in
						-- stage k) and the first day of the quarters of x2 and x3
						SELECT c.*,
							c.created AS e1, c.created + c.d1 AS e2,
							c.created + c.d1 AS x1, c.created + c.d1 + c.d2 AS x2,
							c.created + c.d1 + c.d2 + c.d3 AS x3, c.created + c.d1 + c.d2 + c.d3 + c.d4 AS x4,
							date_trunc('quarter', c.created + c.d1 + c.d2)::date AS q3,
							date_trunc('quarter', c.created + c.d1 + c.d2 + c.d3)::date AS q4
						FROM (
							-- level 0b: attributes, stalls, days in each stage and the
							-- multipliers of the chance of moving on
							SELECT b.*,
								CASE WHEN b.u_industry < 0.25 THEN 'SaaS' WHEN b.u_industry < 0.45 THEN 'FinTech'
									WHEN b.u_industry < 0.65 THEN 'HealthTech' WHEN b.u_industry < 0.80 THEN 'EdTech'
									ELSE 'Ecommerce' END AS industry,
								CASE WHEN b.u_region < 0.35 THEN 'North America' WHEN b.u_region < 0.60 THEN 'Europe'
									WHEN b.u_region < 0.80 THEN 'APAC' ELSE 'India' END AS region,
								CASE WHEN b.u_product < 0.50 THEN 'Core' WHEN b.u_product < 0.80 THEN 'Pro'
									ELSE 'Enterprise' END AS product,
								CASE WHEN b.u_source < 0.20 THEN 'Outbound' WHEN b.u_source < 0.50 THEN 'Inbound'
									WHEN b.u_source < 0.75 THEN 'Referral' ELSE 'Partner' END AS lead_source,
								'rep_' || (1 + floor(12 * b.u_rep)::int) AS rep,
								greatest(1, round(exp(CASE WHEN b.u_product < 0.50 THEN ln(8000)
									WHEN b.u_product < 0.80 THEN ln(18000) ELSE ln(60000) END
									+ 0.8 * dealrisk.normal_quantile(0.5e-9 + b.u_amount * (1 - 1e-9)))))::numeric AS amount,
								b.w1 < 0.2 AS s1, b.w2 < 0.2 AS s2, b.w3 < 0.2 AS s3, b.w4 < 0.2 AS s4,
								dealrisk._sample_stay(14, b.t1, b.w1 < 0.2, b.u_product >= 0.80) AS d1,
								dealrisk._sample_stay(18, b.t2, b.w2 < 0.2, b.u_product >= 0.80) AS d2,
								dealrisk._sample_stay(21, b.t3, b.w3 < 0.2, b.u_product >= 0.80) AS d3,
								dealrisk._sample_stay(16, b.t4, b.w4 < 0.2, b.u_product >= 0.80) AS d4,
								CASE WHEN b.w1 < 0.2 THEN 0.45::float8 ELSE 1.0::float8 END * b.m_source AS m1,
								CASE WHEN b.w2 < 0.2 THEN 0.45::float8 ELSE 1.0::float8 END * b.m_source AS m2,
								CASE WHEN b.w3 < 0.2 THEN 0.45::float8 ELSE 1.0::float8 END * b.m_source AS m3,
								CASE WHEN b.w4 < 0.2 THEN 0.45::float8 ELSE 1.0::float8 END * b.m_source AS m4
							FROM (
								-- level 0a: the row number, its creation date and its draws
								SELECT g.i,
									DATE '2023-01-01' + floor(731 * dealrisk.hash_uniform(_sample_walk.seed, g.i, 1))::int AS created,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 2) AS u_industry,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 3) AS u_region,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 4) AS u_product,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 5) AS u_source,
									CASE WHEN dealrisk.hash_uniform(_sample_walk.seed, g.i, 5) < 0.20
										THEN 0.85::float8 ELSE 1.0::float8 END AS m_source,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 6) AS u_rep,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 7) AS u_amount,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 11) AS t1,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 12) AS t2,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 13) AS t3,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 14) AS t4,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 21) AS w1,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 22) AS w2,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 23) AS w3,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 24) AS w4,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 31) AS u1,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 32) AS u2,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 33) AS u3,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 34) AS u4,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 43) AS v43,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 44) AS v44,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 45) AS v45,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 46) AS v46,
									dealrisk.hash_uniform(_sample_walk.seed, g.i, 50) AS v50
								FROM generate_series(1, dealrisk._sample_deals_n(_sample_walk.n, _sample_walk.seed)) AS g(i)
								OFFSET NULL
							) AS b
							OFFSET NULL
						) AS c
						OFFSET NULL
					) AS a
					OFFSET NULL
				) AS p
				OFFSET NULL
			) AS q
			OFFSET NULL
		) AS r
		OFFSET NULL
	) AS t
	OFFSET NULL
) AS v;
END;
COMMENT ON FUNCTION dealrisk._sample_walk(bigint, bigint) IS
	'The walk of each generated deal through the stages, drawn to its end: entry dates, stalls, rep_4''s pushes, how far it gets (5 = won) and when it closes (internal)';

-- The generated deals as they stood on 2024-12-31, in the data contract's
-- columns, plus how each one really ended (final_outcome, final_closed_date:
-- known for the deals still open then too, to measure a model on them).
CREATE FUNCTION dealrisk.sample_pipeline(n bigint DEFAULT 5000, seed bigint DEFAULT 42)
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
	final_outcome      text,
	final_closed_date  date
)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
SELECT w.deal_id, w.created, CASE WHEN k.is_closed THEN w.closed END,
	w.rep, w.industry, w.region, w.product, w.lead_source,
	(ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation'])[k.stage],
	w.amount,
	CASE WHEN k.is_closed THEN w.closed - w.created END,
	CASE WHEN NOT k.is_closed THEN NULL WHEN w.reached = 5 THEN 'Won' ELSE 'Lost' END,
	-- the last activity: days before the close, or before 2024-12-31 while
	-- open (weeks before it when the deal stalls in its stage now); a deal
	-- rep_4 pushed into the stage it was then lost in: weeks before the push
	greatest(w.created, CASE
		WHEN k.is_closed AND w.reached IN (3, 4) AND w.pushed[w.reached]
			THEN w.entered[w.reached] - 15 - floor(10 * w.u_gap)::int
		WHEN k.is_closed THEN w.closed - floor(5 * w.u_gap)::int
		WHEN w.stalled[k.stage] THEN DATE '2024-12-31' - 15 - floor(30 * w.u_gap)::int
		ELSE DATE '2024-12-31' - floor(7 * w.u_gap)::int END),
	w.entered[k.stage],
	CASE WHEN w.reached = 5 THEN 'Won' ELSE 'Lost' END,
	w.closed
FROM dealrisk._sample_walk(sample_pipeline.n, sample_pipeline.seed) AS w
CROSS JOIN LATERAL (SELECT w.closed <= DATE '2024-12-31' AS is_closed,
	-- the stage it is in on 2024-12-31, or ended in (Negotiation when won)
	1 + (w.reached >= 2 AND w.entered[2] <= DATE '2024-12-31')::int
	  + (w.reached >= 3 AND w.entered[3] <= DATE '2024-12-31')::int
	  + (w.reached >= 4 AND w.entered[4] <= DATE '2024-12-31')::int AS stage) AS k;
END;
COMMENT ON FUNCTION dealrisk.sample_pipeline(bigint, bigint) IS
	'n synthetic deals (2023-2024, as of 2024-12-31) whose stage history sample_stage_history(n, seed) gives, in the data contract''s columns plus final_outcome and final_closed_date (how each ended, also after 2024-12-31); planted: Demo -> Proposal falls from 63% to 39% for deals entering Demo in 2024-Q2, stalls predict loss, rep_4 pushes advances to quarter ends (docs/sample-data.md)';

-- The stage history of sample_pipeline(n, seed) on 2024-12-31: one row per
-- stage entered by then, and Closed Won / Closed Lost on the close date.
CREATE FUNCTION dealrisk.sample_stage_history(n bigint DEFAULT 5000, seed bigint DEFAULT 42)
RETURNS TABLE (deal_id text, stage text, entered_at date)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
SELECT w.deal_id, e.stage, e.entered_at
FROM dealrisk._sample_walk(sample_stage_history.n, sample_stage_history.seed) AS w
CROSS JOIN LATERAL (VALUES
	(1, 'Qualified', w.entered[1]),
	(2, 'Demo', w.entered[2]),
	(3, 'Proposal', w.entered[3]),
	(4, 'Negotiation', w.entered[4]),
	(5, CASE WHEN w.reached = 5 THEN 'Closed Won' ELSE 'Closed Lost' END, w.closed)) AS e(k, stage, entered_at)
WHERE (e.k <= w.reached OR e.k = 5) AND e.entered_at <= DATE '2024-12-31'
ORDER BY w.i, e.k;
END;
COMMENT ON FUNCTION dealrisk.sample_stage_history(bigint, bigint) IS
	'The stage history of sample_pipeline(n, seed) on 2024-12-31 in the history contract (deal_id, stage, entered_at): each stage a deal entered by then, and Closed Won or Closed Lost on its close date';

-- Reading a history ---------------------------------------------------------

CREATE FUNCTION dealrisk._km_quantiles(days float8[], ended boolean[], probs float8[])
RETURNS float8[]
AS 'MODULE_PATHNAME', 'dr_km_quantiles'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._km_quantiles(float8[], boolean[], float8[]) IS
	'For each p of probs, the fewest days after which at most 1 - p of the stays is estimated to go on (Kaplan-Meier: a stay not ended counts until it was last seen); NULL where unfinished stays keep the estimate above 1 - p (internal)';

-- Raises an error unless history is a stage history a caller may read:
-- deal_id, stage, entered_at (a date or a timestamp).
CREATE FUNCTION dealrisk._check_history(history regclass)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	typ			regtype;
BEGIN
	IF history IS NULL THEN
		RAISE EXCEPTION 'history must not be NULL'
			USING ERRCODE = '22004',
				  HINT = 'Pass a table or view with deal_id, stage and entered_at, e.g. ''public.stage_history'' (docs/data-contract.md, "Stage history").';
	END IF;
	PERFORM dealrisk._check_source(history, ARRAY['deal_id', 'stage', 'entered_at']);
	SELECT a.atttypid::regtype INTO typ FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = history::pg_catalog.oid AND a.attname = 'entered_at' AND a.attnum > 0 AND NOT a.attisdropped;
	IF typ NOT IN ('date'::regtype, 'timestamp without time zone'::regtype, 'timestamp with time zone'::regtype) THEN
		RAISE EXCEPTION 'column "entered_at" of history "%" has type %, not date or timestamp', dealrisk._source_name(history),
			pg_catalog.format_type(typ, NULL)
			USING ERRCODE = '42804', HINT = 'Cast it in a view: <your column>::timestamptz AS entered_at (docs/data-contract.md, "Stage history").';
	END IF;
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_history(regclass) IS
	'Raises an error unless history is a table or view the caller may read with deal_id, stage and entered_at (a date or timestamp) (internal)';

-- The stages a history names that dealrisk.stages does not know (and that
-- are not outcome labels), with the rows naming each; blank stages count as
-- one.
CREATE FUNCTION dealrisk._history_unknown_stages(history regclass)
RETURNS TABLE(stage text, "rows" bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_source(history, NULL);	-- (callable on its own)
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$SELECT coalesce(NULLIF(pg_catalog.btrim(h.stage::text), ''), '(blank)'), pg_catalog.count(*)
		   FROM %s h
		   WHERE h.deal_id IS NOT NULL
		     AND dealrisk.outcome_class(coalesce(h.stage::text, '')) OPERATOR(pg_catalog.<>) ALL (ARRAY['won', 'lost'])
		     AND (dealrisk._stage_key(h.stage::text) IS NULL
		          OR NOT EXISTS (SELECT 1 FROM dealrisk.stages s
		                         WHERE dealrisk._stage_key(s.stage) OPERATOR(pg_catalog.=) dealrisk._stage_key(h.stage::text)))
		   GROUP BY 1 ORDER BY 2 DESC, 1$q$, history);
END
$fn$;
COMMENT ON FUNCTION dealrisk._history_unknown_stages(regclass) IS
	'The stage names of a history that are neither in dealrisk.stages nor outcome labels, with their row counts (internal)';

-- Raises an error when a history names stages dealrisk.stages does not
-- know: a stay in an unknown stage cannot be placed in the funnel.
CREATE FUNCTION dealrisk._history_stages_known(history regclass)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	names		text;
	n			bigint;
	k			int;
BEGIN
	SELECT pg_catalog.string_agg(pg_catalog.format('%L (%s rows)', u.stage, u."rows"), ', ') FILTER (WHERE u.o <= 5),
	       pg_catalog.sum(u."rows"), pg_catalog.count(*)
	INTO names, n, k
	FROM (SELECT x.*, pg_catalog.row_number() OVER () AS o FROM dealrisk._history_unknown_stages(history) x) u;
	IF k > 0 THEN
		RAISE EXCEPTION '% rows of history "%" name % stage% not in dealrisk.stages: %', n, dealrisk._source_name(history), k,
			CASE WHEN k > 1 THEN 's' ELSE '' END,
			names || CASE WHEN k > 5 THEN pg_catalog.format(' and %s more', k - 5) ELSE '' END
			USING ERRCODE = '22023',
			      HINT = CASE WHEN EXISTS (SELECT 1 FROM dealrisk._history_unknown_stages(history) u
			                               WHERE u.stage <> '(blank)' AND dealrisk._label_guess(u.stage) IN ('won', 'lost'))
			                  THEN 'A name that closes a deal (won or lost) belongs in dealrisk.won_labels or dealrisk.lost_labels, not in dealrisk.stages; ' ELSE '' END
			             || 'add a stage in its place: INSERT INTO dealrisk.stages (stage, position, is_late) VALUES (...); or map it to one of yours in the history''s view (docs/data-contract.md, "Stage history"). dealrisk.check_source(source, history) gives the statements.';
	END IF;
END
$fn$;
COMMENT ON FUNCTION dealrisk._history_stages_known(regclass) IS
	'Raises an error naming the stages of a history that dealrisk.stages does not know (internal)';

-- Every stay of a deal of the source in a stage, from its history: when it
-- began, when it ended (the next entry, or the deal's close) or that it
-- goes on (an open deal's last stay, counted until the as-of date), the
-- position of the next stage entered, whether it is the deal's last stay,
-- and the deal's outcome.  Terminal rows (outcome labels such as Closed
-- Won) end a stay and begin none; entries are ordered by time, then a stage
-- before a terminal row, then by position.  A stay in a stage
-- dealrisk.stages does not know has no position: callers refuse such a
-- history first (_history_stages_known), in a statement of its own so that
-- the error comes without this query as its context.
CREATE FUNCTION dealrisk._stage_stays(source regclass, history regclass, since date DEFAULT NULL)
RETURNS TABLE(deal_id text, "position" int, entered timestamp, days float8, ended boolean,
			  next_position int, is_last boolean, won boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'closed_date']
		|| CASE WHEN since IS NOT NULL THEN ARRAY['created_date'] ELSE '{}' END);
	PERFORM dealrisk._check_history(history);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH st AS MATERIALIZED (
			SELECT dealrisk._stage_key(s.stage) AS k, s.position FROM dealrisk.stages s
		), d AS (
			-- one row a deal (a deal_id given twice: the row closed last,
			-- so that it is not counted twice; check_source reports the
			-- duplicates); the close date of a closed deal only (an open
			-- deal's closed_date is often an expected one)
			SELECT DISTINCT ON (d.deal_id::text) d.deal_id::text AS deal_id, dealrisk.is_won(d.outcome::text) AS won,
			       CASE WHEN dealrisk.is_won(d.outcome::text) IS NOT NULL AND pg_catalog.isfinite(d.closed_date::date)
			            THEN d.closed_date::date END AS closed
			FROM %s d WHERE d.deal_id IS NOT NULL%s
			ORDER BY d.deal_id::text, d.closed_date::date DESC NULLS LAST
		), x AS (
			-- each entry once (a history exported twice repeats them), up to
			-- the as-of date: an entry after it has not happened yet
			SELECT DISTINCT h.deal_id::text AS deal_id, h.entered_at::timestamp AS t,
			       dealrisk.outcome_class(coalesce(h.stage::text, '')) OPERATOR(pg_catalog.=) ANY (ARRAY['won', 'lost']) AS terminal,
			       st.position
			FROM %s h LEFT JOIN st ON st.k OPERATOR(pg_catalog.=) dealrisk._stage_key(h.stage::text)
			WHERE h.deal_id IS NOT NULL AND h.entered_at IS NOT NULL AND pg_catalog.isfinite(h.entered_at)
			  AND h.entered_at::date <= $1
		), y AS (
			SELECT x.deal_id, x.t, x.terminal, x.position,
			       pg_catalog.lead(x.t) OVER w AS next_t,
			       pg_catalog.lead(x.position) OVER w AS next_pos,
			       pg_catalog.row_number() OVER (PARTITION BY x.deal_id, x.terminal ORDER BY x.t DESC, x.position DESC) AS back
			FROM x
			WINDOW w AS (PARTITION BY x.deal_id ORDER BY x.t, x.terminal, x.position)
		)
		SELECT y.deal_id, y.position, y.t,
		       -- (at least 0: an entry during the as-of day, after its
		       -- midnight, has lasted no day yet)
		       greatest(0, pg_catalog.date_part('epoch', coalesce(y.next_t, d.closed::timestamp, $1::timestamp) OPERATOR(pg_catalog.-) y.t)
		           OPERATOR(pg_catalog./) 86400),
		       CASE WHEN y.next_t IS NOT NULL OR d.closed IS NOT NULL THEN true
		            WHEN d.won IS NULL THEN false END,
		       y.next_pos, y.back OPERATOR(pg_catalog.=) 1, d.won
		FROM y JOIN d ON d.deal_id OPERATOR(pg_catalog.=) y.deal_id
		WHERE NOT y.terminal$q$, source,
		CASE WHEN since IS NOT NULL THEN ' AND d.created_date::date >= $2' ELSE '' END, history)
		USING dealrisk._as_of(), since;
END
$fn$;
COMMENT ON FUNCTION dealrisk._stage_stays(regclass, regclass, date) IS
	'Every stay of a deal of the source (created on or after since, when given) in a stage of its history: start, days (to the next entry, the close, or the as-of date while it goes on), ended (NULL when a closed deal''s stay has no end date), the next stage''s position, whether it is the deal''s last stay, and the deal''s outcome (internal)';

-- The funnel ----------------------------------------------------------------

-- One funnel(): from deal_stage (0.3.0's signature, whose calls keep
-- working: funnel('deals', '2024-01-01')), or from a stage history
-- (funnel('deals', history => 'stage_history')), with the columns only a
-- history can fill after the old ones.  (A second funnel(regclass,
-- regclass) would make every funnel('deals', '2024-01-01') ambiguous.)
DROP FUNCTION IF EXISTS dealrisk.funnel(regclass, date);
CREATE FUNCTION dealrisk.funnel(source regclass, since date DEFAULT NULL, history regclass DEFAULT NULL)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text,
			  moved_on bigint, conversion float8, ci_low float8, ci_high float8,
			  median_days float8, p90_days float8)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	why			text;
	n_deals		bigint;
BEGIN
	IF history IS NULL THEN
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
		RETURN QUERY SELECT f.*, NULL::bigint, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8
			FROM dealrisk._funnel_rows(source, since, why) f;
		RETURN;
	END IF;

	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'closed_date']
		|| CASE WHEN since IS NOT NULL THEN ARRAY['created_date'] ELSE '{}' END);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	EXECUTE pg_catalog.format('SELECT pg_catalog.count(DISTINCT d.deal_id::text) FROM %s d WHERE d.deal_id IS NOT NULL%s', source,
		CASE WHEN since IS NOT NULL THEN ' AND d.created_date::date >= $1' ELSE '' END)
		INTO n_deals USING since;
	RETURN QUERY
	WITH s AS MATERIALIZED (
		-- each stay, with the furthest stage its deal reached: a deal is
		-- lost, or still open, at the furthest stage it reached
		SELECT x.*, pg_catalog.max(x.position) OVER (PARTITION BY x.deal_id) AS furthest
		FROM dealrisk._stage_stays(source, history, since) x
	), n AS (
		-- the deals of the source the history says nothing about are left
		-- out: say how many
		SELECT CASE WHEN n_deals > pg_catalog.count(DISTINCT s.deal_id)
		            THEN pg_catalog.format('%s of %s deals have no stage history and are left out',
		                                   n_deals - pg_catalog.count(DISTINCT s.deal_id), n_deals) END AS note
		FROM s
	), a AS (
		SELECT s.position AS pos,
		       pg_catalog.count(DISTINCT s.deal_id) AS reached,
		       pg_catalog.count(DISTINCT s.deal_id) FILTER (WHERE s.furthest OPERATOR(pg_catalog.=) s.position AND s.won IS FALSE) AS lost_here,
		       pg_catalog.count(DISTINCT s.deal_id) FILTER (WHERE s.furthest OPERATOR(pg_catalog.=) s.position AND s.won IS NULL) AS open_here,
		       pg_catalog.count(DISTINCT s.deal_id) FILTER (WHERE s.won) AS won,
		       pg_catalog.count(DISTINCT s.deal_id) FILTER (WHERE s.won IS NOT NULL) AS closed,
		       dealrisk._km_quantiles(pg_catalog.array_agg(s.days), pg_catalog.array_agg(s.ended), '{0.5,0.9}') AS q,
		       pg_catalog.count(*) FILTER (WHERE s.ended IS NOT NULL AND s.days >= 0) AS stays
		FROM s
		GROUP BY s.position
	), b AS (
		SELECT st.stage, st.position, st.is_late,
		       coalesce(a.reached, 0) AS reached, coalesce(a.lost_here, 0) AS lost_here, coalesce(a.open_here, 0) AS open_here,
		       coalesce(a.won, 0) AS won, coalesce(a.closed, 0) AS closed, a.q, coalesce(a.stays, 0) AS stays
		FROM dealrisk.stages st LEFT JOIN a ON a.pos OPERATOR(pg_catalog.=) st.position
	)
	SELECT b.stage, b.position, b.is_late, b.reached, b.won, b.lost_here, b.open_here,
	       -- from the last stage any deal entered, the next step is the win
	       CASE WHEN b.won > 0 AND pg_catalog.max(b.reached) OVER (ORDER BY b.position
	                                 ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) = 0
	            THEN b.won::float8 / NULLIF(b.reached, 0)
	            ELSE pg_catalog.lead(b.reached) OVER (ORDER BY b.position)::float8 / NULLIF(b.reached, 0) END,
	       b.reached::float8 / NULLIF(pg_catalog.first_value(b.reached) OVER (ORDER BY b.position), 0),
	       b.won::float8 / NULLIF(b.closed, 0),
	       NULLIF(pg_catalog.concat_ws('; ', n.note,
	           CASE WHEN b.reached = 0 THEN 'no deal of the history entered this stage' END,
	           CASE WHEN b.stays > 0 AND b.q[2] IS NULL
	                THEN 'more than 10% of the stays in this stage have not ended: the 90th percentile is not known yet' END,
	           CASE WHEN b.reached > 0 AND b.reached - b.open_here < 30
	                THEN pg_catalog.format('only %s decided deals: read the conversion with its interval', b.reached - b.open_here) END), ''),
	       b.reached - b.lost_here - b.open_here,
	       (b.reached - b.lost_here - b.open_here)::float8 / NULLIF(b.reached - b.open_here, 0),
	       w.ci_low, w.ci_high,
	       pg_catalog.round(b.q[1]::numeric, 1)::float8, pg_catalog.round(b.q[2]::numeric, 1)::float8
	FROM b CROSS JOIN n
	LEFT JOIN LATERAL dealrisk.wilson_interval(b.reached - b.lost_here - b.open_here, b.reached - b.open_here) w ON true
	ORDER BY b.position;
END
$fn$;
COMMENT ON FUNCTION dealrisk.funnel(regclass, date, regclass) IS
	'The stage funnel of the deals created on or after since (all deals when NULL), one row per stage of dealrisk.stages. Without a history, from deal_stage: closed deals that reached the stage, won from there, lost there, open there, conversion to the next stage, cumulative conversion from the first stage and win rate; caveat says when deal_stage cannot be read as the stage each closed deal reached (with a WARNING). With a stage history (deal_id, stage, entered_at): every deal that entered the stage, won, lost and still open at the furthest stage it reached, moved on (to a later stage or a win), conversion = moved on / decided with its 95% Wilson interval, and median and 90th percentile days in the stage (Kaplan-Meier: stays still going count until the as-of date); caveat says what is left out or uncertain';

-- The preflight of a history ------------------------------------------------

CREATE FUNCTION dealrisk.check_source(source regclass, history regclass)
RETURNS TABLE("check" text, severity text, finding text, hint text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 30
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c_check		text[] := '{}';
	c_sev		text[] := '{}';
	c_find		text[] := '{}';
	c_hint		text[] := '{}';
	hname		text;
	msg			text;
	hnt			text;
	names		text;
	k			int;
	n_deals		bigint;
	no_hist		text;
	s			record;
	has_outcome boolean;
	has_closed	boolean;
	won_guess	text[];
	lost_guess	text[];
BEGIN
	IF history IS NULL THEN
		RAISE EXCEPTION 'history must not be NULL'
			USING ERRCODE = '22004', HINT = 'Use check_source(source) for a deal source alone.';
	END IF;
	-- the source first: check_source(source) reads it below, and nothing of
	-- it may be read before its owner is trusted
	PERFORM dealrisk._check_source(source, NULL);
	hname := dealrisk._source_name(history);
	-- the history's columns; without them nothing else can be read
	BEGIN
		PERFORM dealrisk._check_history(history);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
		RETURN QUERY SELECT * FROM dealrisk.check_source(source)
			UNION ALL SELECT 'history_columns', 'error', msg, nullif(hnt, '');
		RETURN;
	END;
	IF NOT dealrisk._has_column(source, 'deal_id') THEN
		RETURN QUERY SELECT * FROM dealrisk.check_source(source)
			UNION ALL SELECT 'history_deals', 'error',
			                 pg_catalog.format('the history cannot be matched to deals: source %s has no deal_id', dealrisk._source_name(source)),
			                 'Map your CRM''s deal id as deal_id in both views (docs/data-contract.md).';
		RETURN;
	END IF;
	has_outcome := dealrisk._has_column(source, 'outcome');
	has_closed := dealrisk._has_column(source, 'closed_date');

	-- closing rows whose label dealrisk does not know: their words say won
	-- or lost, so the fix is a label, not a stage
	SELECT pg_catalog.string_agg(pg_catalog.format('%L (%s rows)', u.stage, u."rows"), ', '),
	       pg_catalog.array_agg(u.stage) FILTER (WHERE u.guess = 'won'), pg_catalog.array_agg(u.stage) FILTER (WHERE u.guess = 'lost')
	INTO names, won_guess, lost_guess
	FROM (SELECT x.*, dealrisk._label_guess(x.stage) AS guess FROM dealrisk._history_unknown_stages(history) x) u
	WHERE u.guess IN ('won', 'lost') AND u.stage <> '(blank)';
	IF names IS NOT NULL THEN
		c_check := c_check || 'history_outcome_labels'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('history %s closes deals with labels dealrisk does not know: %s; they read as stages, which dealrisk.stages lacks',
			hname, names);
		c_hint := c_hint || pg_catalog.concat_ws(' ',
			CASE WHEN won_guess IS NOT NULL THEN dealrisk._label_fix('dealrisk.won_labels', won_guess) END,
			CASE WHEN lost_guess IS NOT NULL THEN dealrisk._label_fix('dealrisk.lost_labels', lost_guess) END);
	END IF;
	-- stages dealrisk.stages does not know
	SELECT pg_catalog.string_agg(pg_catalog.format('%L (%s rows)', u.stage, u."rows"), ', ') FILTER (WHERE u.o <= 10),
	       pg_catalog.count(*),
	       pg_catalog.string_agg(pg_catalog.format('(%L, <position>, <is_late>)', u.stage), ', ') FILTER (WHERE u.o <= 10 AND u.stage <> '(blank)')
	INTO names, k, hnt
	FROM (SELECT x.*, pg_catalog.row_number() OVER () AS o FROM dealrisk._history_unknown_stages(history) x
	      WHERE x.stage = '(blank)' OR dealrisk._label_guess(x.stage) NOT IN ('won', 'lost')) u;
	IF k > 0 THEN
		c_check := c_check || 'history_stages'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('%s stage name%s of history %s %s not in dealrisk.stages: %s%s; funnel(source, history) refuses the history until each is placed',
			k, CASE WHEN k > 1 THEN 's' ELSE '' END, hname, CASE WHEN k > 1 THEN 'are' ELSE 'is' END, names,
			CASE WHEN k > 10 THEN pg_catalog.format(' and %s more', k - 10) ELSE '' END);
		c_hint := c_hint || (CASE WHEN hnt IS NOT NULL
			THEN pg_catalog.format('Add each in its place: INSERT INTO dealrisk.stages (stage, position, is_late) VALUES %s; ', hnt) ELSE '' END
			|| 'or map them to your stages in the history''s view; blank stages are left out there (WHERE stage <> '''').');
	END IF;

	-- one read of the history joined to the deals for every other test
	EXECUTE pg_catalog.format(
		$q$WITH st AS MATERIALIZED (
			SELECT dealrisk._stage_key(s.stage) AS k, pg_catalog.dense_rank() OVER (ORDER BY s.position) AS r
			FROM dealrisk.stages s
		), d AS (
			SELECT DISTINCT ON (d.deal_id::text) d.deal_id::text AS deal_id, %s AS cls, %s AS closed
			FROM %s d WHERE d.deal_id IS NOT NULL ORDER BY d.deal_id::text
		), h AS (
			SELECT h.deal_id::text AS deal_id, dealrisk._stage_key(h.stage::text) AS key,
			       CASE WHEN pg_catalog.isfinite(h.entered_at) THEN h.entered_at::timestamp END AS t,
			       dealrisk.outcome_class(coalesce(h.stage::text, '')) AS hcls, st.r
			FROM %s h LEFT JOIN st ON st.k OPERATOR(pg_catalog.=) dealrisk._stage_key(h.stage::text)
		), j AS (
			SELECT h.*, d.deal_id IS NOT NULL AS known, d.cls, d.closed,
			       h.hcls OPERATOR(pg_catalog.=) ANY (ARRAY['won', 'lost']) AS terminal,
			       pg_catalog.lag(h.r) OVER (PARTITION BY h.deal_id ORDER BY h.t, h.hcls OPERATOR(pg_catalog.=) ANY (ARRAY['won', 'lost']), h.r) AS prev_r
			FROM h LEFT JOIN d ON d.deal_id OPERATOR(pg_catalog.=) h.deal_id
			WHERE h.deal_id IS NOT NULL
		)
		SELECT pg_catalog.count(*) AS n_rows,
		       pg_catalog.count(DISTINCT j.deal_id) FILTER (WHERE j.known) AS deals_with,
		       pg_catalog.count(*) FILTER (WHERE j.t IS NULL) AS no_date, pg_catalog.min(j.deal_id) FILTER (WHERE j.t IS NULL) AS ex_no_date,
		       pg_catalog.count(*) FILTER (WHERE NOT j.known) AS unknown_rows,
		       pg_catalog.count(DISTINCT j.deal_id) FILTER (WHERE NOT j.known) AS unknown_deals,
		       pg_catalog.min(j.deal_id) FILTER (WHERE NOT j.known) AS ex_unknown,
		       pg_catalog.count(*) FILTER (WHERE j.known AND NOT j.terminal AND j.t::date > j.closed) AS after_close,
		       pg_catalog.min(j.deal_id) FILTER (WHERE j.known AND NOT j.terminal AND j.t::date > j.closed) AS ex_after_close,
		       pg_catalog.count(*) FILTER (WHERE j.t::date > $1) AS future, pg_catalog.min(j.deal_id) FILTER (WHERE j.t::date > $1) AS ex_future,
		       pg_catalog.count(DISTINCT j.deal_id) FILTER (WHERE j.known AND j.r < j.prev_r) AS backwards,
		       pg_catalog.min(j.deal_id) FILTER (WHERE j.known AND j.r < j.prev_r) AS ex_backwards,
		       pg_catalog.count(DISTINCT j.deal_id) FILTER (WHERE j.known AND j.r > j.prev_r + 1) AS skipped,
		       pg_catalog.min(j.deal_id) FILTER (WHERE j.known AND j.r > j.prev_r + 1) AS ex_skipped,
		       pg_catalog.count(DISTINCT j.deal_id) FILTER (WHERE j.known AND j.terminal AND j.cls IS NOT NULL
		                                                   AND j.hcls OPERATOR(pg_catalog.<>) j.cls) AS contradict,
		       pg_catalog.min(j.deal_id) FILTER (WHERE j.known AND j.terminal AND j.cls IS NOT NULL
		                                         AND j.hcls OPERATOR(pg_catalog.<>) j.cls) AS ex_contradict,
		       (SELECT pg_catalog.count(*) FROM h h2 WHERE h2.t IS NOT NULL AND h2.deal_id IS NOT NULL)
		         - (SELECT pg_catalog.count(*) FROM (SELECT DISTINCT h2.deal_id, h2.key, h2.t FROM h h2
		                                             WHERE h2.t IS NOT NULL AND h2.deal_id IS NOT NULL) u) AS duplicates,
		       pg_catalog.count(DISTINCT j.r) FILTER (WHERE j.known AND NOT j.terminal) AS stages_entered
		FROM j$q$,
		CASE WHEN has_outcome THEN 'dealrisk.outcome_class(coalesce(d.outcome::text, ''''))' ELSE 'NULL::text' END,
		CASE WHEN has_closed THEN 'CASE WHEN pg_catalog.isfinite(d.closed_date::date) THEN d.closed_date::date END' ELSE 'NULL::date' END,
		source, history)
	INTO s USING dealrisk._as_of();
	EXECUTE pg_catalog.format('SELECT pg_catalog.count(DISTINCT d.deal_id::text) FROM %s d WHERE d.deal_id IS NOT NULL', source) INTO n_deals;
	-- (an anti-join: a NOT EXISTS inside an aggregate would rescan the history per deal)
	EXECUTE pg_catalog.format('SELECT pg_catalog.min(d.deal_id::text) FROM %s d WHERE d.deal_id IS NOT NULL AND NOT EXISTS
		(SELECT 1 FROM %s h WHERE h.deal_id::text OPERATOR(pg_catalog.=) d.deal_id::text)', source, history) INTO no_hist;

	IF s.deals_with = 0 THEN
		c_check := c_check || 'history_deals'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('no row of history %s names a deal_id of %s (%s history rows, %s deals)%s',
			hname, dealrisk._source_name(source), s.n_rows, n_deals,
			CASE WHEN s.ex_unknown IS NOT NULL THEN pg_catalog.format(': the history has %L, the deals e.g. %L', s.ex_unknown, no_hist) ELSE '' END);
		c_hint := c_hint || 'Both views must give deal_id the same text: the same id column, same case and padding (docs/data-contract.md, "Stage history").'::text;
	ELSE
		IF s.deals_with < n_deals THEN
			c_check := c_check || 'history_deals'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('%s of %s deals (%s%%) have no row in history %s, e.g. %L: funnel(source, history) leaves them out',
				n_deals - s.deals_with, n_deals, pg_catalog.round(100.0 * (n_deals - s.deals_with) / n_deals, 1), hname, no_hist);
			c_hint := c_hint || 'Deals created before the CRM kept history, or imported without it, have none; the funnel describes the others.'::text;
		END IF;
		IF s.unknown_rows > 0 THEN
			c_check := c_check || 'history_unknown_deals'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('%s rows of history %s (%s deals, e.g. %L) name a deal_id the source does not have: left out',
				s.unknown_rows, hname, s.unknown_deals, s.ex_unknown);
			c_hint := c_hint || 'Deleted or filtered deals; if the ids differ only in format, give both views the same deal_id text.'::text;
		END IF;
		-- the verdict
		c_check := c_check || 'history_funnel'::text;
		c_sev := c_sev || CASE WHEN s.deals_with * 2 < n_deals THEN 'warning' ELSE 'info' END;
		c_find := c_find || pg_catalog.format('funnel(source, history) reads %s of %s deals (%s%%) through %s stage%s: deals reaching, leaving and lost in each stage, conversions of decided steps and days in stage%s',
			s.deals_with, n_deals, pg_catalog.round(100.0 * s.deals_with / n_deals, 1), s.stages_entered,
			CASE WHEN s.stages_entered <> 1 THEN 's' ELSE '' END,
			CASE WHEN s.deals_with * 2 < n_deals THEN '; fewer than half of the deals have a history, so it describes only them' ELSE '' END);
		c_hint := c_hint || NULL::text;
	END IF;
	IF s.no_date > 0 THEN
		c_check := c_check || 'history_dates'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s rows of history %s have no finite entered_at (e.g. deal %L): left out', s.no_date, hname, s.ex_no_date);
		c_hint := c_hint || NULL::text;
	END IF;
	IF s.after_close > 0 THEN
		c_check := c_check || 'history_after_close'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s stage entries of history %s come after their deal''s closed_date (e.g. deal %L): the stay before them seems to end late',
			s.after_close, hname, s.ex_after_close);
		c_hint := c_hint || 'A deal reopened, or a closed_date that is not the close; check a few deals in the CRM.'::text;
	END IF;
	IF s.future > 0 THEN
		c_check := c_check || 'history_future'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s rows of history %s are dated after the as-of date %s (e.g. deal %L)', s.future, hname, dealrisk._as_of(), s.ex_future);
		c_hint := c_hint || 'Set dealrisk.as_of_date to the date of the export, or check the time zone of entered_at.'::text;
	END IF;
	IF s.contradict > 0 THEN
		c_check := c_check || 'history_outcome'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s deals have a closing row in history %s that contradicts their outcome (e.g. deal %L): the funnel follows the outcome',
			s.contradict, hname, s.ex_contradict);
		c_hint := c_hint || NULL::text;
	END IF;
	IF s.duplicates > 0 THEN
		c_check := c_check || 'history_duplicates'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s rows of history %s repeat a (deal_id, stage, entered_at) of another row: a stay of no days', s.duplicates, hname);
		c_hint := c_hint || 'Use SELECT DISTINCT deal_id, stage, entered_at in the history''s view.'::text;
	END IF;
	IF s.backwards > 0 THEN
		c_check := c_check || 'history_order'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s deals moved back to an earlier stage (e.g. deal %L): the funnel counts each deal once per stage and loses or keeps it where it ended',
			s.backwards, s.ex_backwards);
		c_hint := c_hint || NULL::text;
	END IF;
	IF s.skipped > 0 THEN
		c_check := c_check || 'history_skips'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s deals skipped a stage (e.g. deal %L): they did not reach it, and the funnel does not count them there',
			s.skipped, s.ex_skipped);
		c_hint := c_hint || NULL::text;
	END IF;

	RETURN QUERY
	SELECT * FROM dealrisk.check_source(source)
	UNION ALL
	SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
		pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o);
END
$fn$;
COMMENT ON FUNCTION dealrisk.check_source(regclass, regclass) IS
	'Preflight of a deal source and its stage history: the rows of check_source(source), then the history''s (history_*): its columns, stages dealrisk.stages does not know (with the INSERT that adds them), deals without history and history rows without a deal, entries after the close or the as-of date, closing rows that contradict the outcome, duplicates, moves back and skipped stages, and what funnel(source, history) can read';

-- Conversion of each step over time -----------------------------------------

CREATE FUNCTION dealrisk.stage_conversion_trend(source regclass, history regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, from_stage text, to_stage text, entered bigint, converted bigint, undecided bigint,
			  rate float8, ci_low float8, ci_high float8, change float8, p_value float8, q_value float8,
			  significant boolean, is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 40
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
	asof		date := dealrisk._as_of();
	step		interval := CASE p WHEN 'week' THEN interval '7 days' WHEN 'month' THEN interval '1 month'
	                                   WHEN 'quarter' THEN interval '3 months' ELSE interval '1 year' END;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'closed_date']);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	RETURN QUERY
	WITH s AS MATERIALIZED (
		-- each stay, with the furthest stage the deal entered after it began
		SELECT x.deal_id, x.position, x.entered, x.won,
		       pg_catalog.max(x.position) OVER (PARTITION BY x.deal_id ORDER BY x.entered, x.position
		                                        ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS later,
		       pg_catalog.row_number() OVER (PARTITION BY x.deal_id, x.position ORDER BY x.entered) AS nth
		FROM dealrisk._stage_stays(source, history) x
	), steps AS (
		-- the steps: each stage the history enters to the next one it
		-- enters, the last one to the win
		SELECT st.position, st.stage AS from_stage,
		       coalesce(pg_catalog.lead(st.stage) OVER (ORDER BY st.position), 'won') AS to_stage
		FROM dealrisk.stages st
		WHERE EXISTS (SELECT 1 FROM s WHERE s.position OPERATOR(pg_catalog.=) st.position)
	), c AS (
		-- a deal's first stay in a stage: moved past it (a later stage
		-- entered after it began, or a win), lost without, or undecided
		SELECT pg_catalog.date_trunc(p, s.entered)::date AS ps, s.position,
		       pg_catalog.count(*) AS entered,
		       pg_catalog.count(*) FILTER (WHERE s.later > s.position OR s.won) AS converted,
		       pg_catalog.count(*) FILTER (WHERE s.won IS NULL AND coalesce(s.later, s.position) <= s.position) AS undecided
		FROM s WHERE s.nth OPERATOR(pg_catalog.=) 1 AND s.entered::date <= asof
		GROUP BY 1, 2
	), r AS (
		SELECT c.*, steps.from_stage, steps.to_stage,
		       c.entered - c.undecided AS decided,
		       -- a period still running, or with more than 5% of its deals
		       -- undecided, is not compared: its decided deals are the fast ones
		       (c.ps + step)::date > asof + 1 OR c.undecided * 20 > c.entered AS partial
		FROM c JOIN steps ON steps.position OPERATOR(pg_catalog.=) c.position
	), t AS (
		SELECT r.*,
		       pg_catalog.lag(r.converted) OVER w AS prev_converted, pg_catalog.lag(r.decided) OVER w AS prev_decided,
		       pg_catalog.lag(r.partial) OVER w AS prev_partial, pg_catalog.lag(r.ps) OVER w AS prev_ps
		FROM r
		WINDOW w AS (PARTITION BY r.position ORDER BY r.ps)
	), v AS (
		SELECT t.*,
		       CASE WHEN NOT t.partial AND NOT t.prev_partial AND t.prev_ps OPERATOR(pg_catalog.=) (t.ps - step)::date
		            THEN dealrisk.two_proportion_p(t.converted, t.decided, t.prev_converted, t.prev_decided) END AS pv
		FROM t
	), q AS (
		SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(v.pv ORDER BY v.position, v.ps) FILTER (WHERE v.pv IS NOT NULL), '{}')) AS qs
		FROM v
	), o AS (
		SELECT v.*, CASE WHEN v.pv IS NOT NULL
		                 THEN pg_catalog.row_number() OVER (PARTITION BY v.pv IS NOT NULL ORDER BY v.position, v.ps) END AS j
		FROM v
	)
	SELECT o.ps, o.from_stage, o.to_stage, o.entered, o.converted, o.undecided,
	       o.converted::float8 / NULLIF(o.decided, 0), w.ci_low, w.ci_high,
	       CASE WHEN o.pv IS NOT NULL THEN o.converted::float8 / NULLIF(o.decided, 0)
	                                       - o.prev_converted::float8 / NULLIF(o.prev_decided, 0) END,
	       o.pv, q.qs[o.j], coalesce(q.qs[o.j] < 0.05, false), o.partial
	FROM o CROSS JOIN q
	LEFT JOIN LATERAL dealrisk.wilson_interval(o.converted, o.decided) w ON true
	ORDER BY o.position, o.ps;
END
$fn$;
COMMENT ON FUNCTION dealrisk.stage_conversion_trend(regclass, regclass, text) IS
	'Conversion of each step of the funnel (a stage the history enters to the next one, the last to won) by the week, month, quarter or year in which deals first entered the step''s stage: entered, converted (moved past the stage: a later stage or a win), undecided (still there), rate = converted / decided with its 95% Wilson interval, change from the previous period and its p-value, the Benjamini-Hochberg q-value over every step and period, significant = q < 0.05; a period still running or with more than 5% undecided is_partial and not compared';

-- Stage velocity --------------------------------------------------------------

CREATE FUNCTION dealrisk.stage_velocity(source regclass, history regclass)
RETURNS TABLE(deal_id text, stage text, entered_at timestamp, days_in_stage float8,
			  won_p50_days float8, won_p90_days float8, won_deals bigint, is_stalled boolean, reason text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'closed_date']);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	RETURN QUERY
	WITH s AS MATERIALIZED (
		SELECT * FROM dealrisk._stage_stays(source, history)
	), w AS (
		-- how long the deals that won stayed in each stage (every such
		-- stay has ended)
		SELECT s.position, pg_catalog.count(DISTINCT s.deal_id) AS n,
		       dealrisk._km_quantiles(pg_catalog.array_agg(s.days), pg_catalog.array_agg(s.ended), '{0.5,0.9}') AS q
		FROM s WHERE s.won AND s.ended
		GROUP BY s.position
	)
	SELECT o.deal_id, st.stage, o.entered, pg_catalog.round(o.days::numeric, 1)::float8,
	       w.q[1], w.q[2], coalesce(w.n, 0),
	       CASE WHEN coalesce(w.n, 0) >= 30 THEN o.days > w.q[2] END,
	       CASE WHEN coalesce(w.n, 0) < 30
	            THEN pg_catalog.format('in %s for %s days; too few won deals passed through %s (%s) to say what is slow',
	                                   st.stage, pg_catalog.round(o.days::numeric), st.stage, coalesce(w.n, 0))
	            WHEN o.days > w.q[2]
	            THEN pg_catalog.format('in %s for %s days; 90%% of the deals that won left it within %s',
	                                   st.stage, pg_catalog.round(o.days::numeric), w.q[2])
	            ELSE pg_catalog.format('in %s for %s days; the deals that won took %s days there at the median, %s at the 90th percentile',
	                                   st.stage, pg_catalog.round(o.days::numeric), w.q[1], w.q[2]) END
	FROM s o
	JOIN dealrisk.stages st ON st.position OPERATOR(pg_catalog.=) o.position
	LEFT JOIN w ON w.position OPERATOR(pg_catalog.=) o.position
	WHERE o.is_last AND o.won IS NULL AND o.ended IS FALSE
	ORDER BY o.days - coalesce(w.q[2], 'Infinity'::float8) DESC, o.deal_id;
END
$fn$;
COMMENT ON FUNCTION dealrisk.stage_velocity(regclass, regclass) IS
	'Every open deal of the source in the stage it is in now (from its stage history): days in the stage by the as-of date, the median and 90th percentile days the deals that won spent in that stage, how many won deals that is, is_stalled = longer than the 90th percentile (NULL under 30 won deals), and the reason in words; the most overdue first';

-- Pipeline gaming -------------------------------------------------------------

CREATE FUNCTION dealrisk.pipeline_gaming(source regclass, history regclass)
RETURNS TABLE(sales_rep_id text, signal text, events bigint, out_of bigint, rep_rate float8, peer_rate float8,
			  p_value float8, q_value float8, sentence text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'closed_date', 'sales_rep_id']);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH s AS MATERIALIZED (
			SELECT x.*, r.rep, r.last_activity,
			       pg_catalog.lag(x.position) OVER (PARTITION BY x.deal_id ORDER BY x.entered, x.position) AS prev_position
			FROM dealrisk._stage_stays($1, $2) x
			JOIN (SELECT d.deal_id::text AS deal_id, d.sales_rep_id::text AS rep, %s AS last_activity FROM %s d
			      WHERE d.sales_rep_id IS NOT NULL) r ON r.deal_id OPERATOR(pg_catalog.=) x.deal_id
		), rk AS MATERIALIZED (
			SELECT st.position, st.is_late, pg_catalog.dense_rank() OVER (ORDER BY st.position) AS rank FROM dealrisk.stages st
		), m AS (
			-- every move from one stage to another: the stay it begins
			SELECT s.rep, s.deal_id, s.entered, s.days, s.ended, s.won, s.is_last, s.last_activity,
			       s.position > s.prev_position AS advance,
			       s.position < s.prev_position AS back,
			       b.rank - a.rank > 1 AS skip, b.is_late AS into_late,
			       s.entered::date >= (pg_catalog.date_trunc('quarter', s.entered) + interval '3 months' - interval '5 days')::date AS at_end
			FROM s JOIN rk a ON a.position OPERATOR(pg_catalog.=) s.prev_position
			       JOIN rk b ON b.position OPERATOR(pg_catalog.=) s.position
			WHERE s.prev_position IS NOT NULL AND s.position OPERATOR(pg_catalog.<>) s.prev_position
		), c AS (
			-- per rep and signal: events out of the moves that could be one
			SELECT m.rep, v.signal, pg_catalog.count(*) FILTER (WHERE v.hit) AS k, pg_catalog.count(*) AS n,
			       pg_catalog.count(*) FILTER (WHERE v.hit AND m.at_end) AS k_end
			FROM m CROSS JOIN LATERAL (VALUES
				('quarter_end_push', m.advance, m.advance AND m.at_end),
				('skipped_stage', m.advance, m.advance AND m.skip),
				('regression', true, m.back),
				('late_stage_fast_loss', m.advance AND m.into_late,
				 m.advance AND m.into_late AND m.is_last AND m.won IS FALSE AND m.ended AND m.days <= 30),
				-- the deal's last logged activity more than 14 days before
				-- the advance: nothing in the two weeks before it, nor since
				('no_activity_advance', m.advance AND m.last_activity IS NOT NULL,
				 m.advance AND m.entered::date > m.last_activity + 14)) v(signal, eligible, hit)
			WHERE v.eligible
			GROUP BY m.rep, v.signal
		), t AS (
			SELECT c.rep, c.signal, c.k, c.n,
			       c.k::float8 / c.n AS rate,
			       (pg_catalog.sum(c.k) OVER w - c.k)::float8 / NULLIF(pg_catalog.sum(c.n) OVER w - c.n, 0) AS peer,
			       dealrisk.two_proportion_p(c.k, c.n, (pg_catalog.sum(c.k) OVER w - c.k)::bigint, (pg_catalog.sum(c.n) OVER w - c.n)::bigint) AS p2,
			       (pg_catalog.sum(c.k) OVER w - c.k)::bigint AS peer_k, (pg_catalog.sum(c.n) OVER w - c.n)::bigint AS peer_n
			FROM c
			WINDOW w AS (PARTITION BY c.signal)
		), u AS (
			-- one-sided: only a rate above the peers' is a signal; reps with
			-- fewer than 20 moves that could be one are not tested
			SELECT t.*, CASE WHEN t.rate > t.peer THEN t.p2 / 2 ELSE 1 - t.p2 / 2 END AS p,
			       pg_catalog.row_number() OVER (ORDER BY t.signal, t.rep) AS j
			FROM t WHERE t.n >= 20 AND t.p2 IS NOT NULL
		), q AS (
			SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(u.p ORDER BY u.j), '{}')) AS qs FROM u
		)
		SELECT u.rep, u.signal, u.k, u.n, u.rate, u.peer, u.p, q.qs[u.j],
		       CASE u.signal
		       WHEN 'quarter_end_push' THEN pg_catalog.format(
		           '%%s made %%s of %%s stage advances (%%s) in the last 5 days of a quarter, the other reps %%s (about 5%%%% if spread evenly) (q %%s)',
		           u.rep, u.k, u.n, dealrisk._pct(u.rate), dealrisk._pct(u.peer), dealrisk._qtext(q.qs[u.j]))
		       WHEN 'skipped_stage' THEN pg_catalog.format(
		           '%%s skipped a stage in %%s of %%s advances (%%s), the other reps in %%s (q %%s)',
		           u.rep, u.k, u.n, dealrisk._pct(u.rate), dealrisk._pct(u.peer), dealrisk._qtext(q.qs[u.j]))
		       WHEN 'regression' THEN pg_catalog.format(
		           '%%s moved deals back in %%s of %%s stage changes (%%s), the other reps in %%s (q %%s)',
		           u.rep, u.k, u.n, dealrisk._pct(u.rate), dealrisk._pct(u.peer), dealrisk._qtext(q.qs[u.j]))
		       WHEN 'no_activity_advance' THEN pg_catalog.format(
		           '%%s made %%s of %%s stage advances (%%s) with no activity logged in the 14 days before them or since, the other reps %%s (q %%s)',
		           u.rep, u.k, u.n, dealrisk._pct(u.rate), dealrisk._pct(u.peer), dealrisk._qtext(q.qs[u.j]))
		       ELSE pg_catalog.format(
		           '%%s lost %%s of %%s deals within 30 days of moving them into a late stage (%%s), the other reps %%s (q %%s)',
		           u.rep, u.k, u.n, dealrisk._pct(u.rate), dealrisk._pct(u.peer), dealrisk._qtext(q.qs[u.j])) END
		FROM u CROSS JOIN q
		WHERE q.qs[u.j] < 0.05 AND u.rate > u.peer
		  -- a push: the rep's advances per day in the last 5 days of a
		  -- quarter at least twice its rate in the rest of the quarter
		  AND (u.signal OPERATOR(pg_catalog.<>) 'quarter_end_push' OR u.rate >= 2 * 5.0 / 91 / (1 + 5.0 / 91))
		ORDER BY q.qs[u.j], u.rep, u.signal$q$,
		CASE WHEN dealrisk._has_column(source, 'last_activity_date')
		     THEN 'CASE WHEN pg_catalog.isfinite(d.last_activity_date::date) THEN d.last_activity_date::date END'
		     ELSE 'NULL::date' END, source)
	USING source, history;
END
$fn$;
COMMENT ON FUNCTION dealrisk.pipeline_gaming(regclass, regclass) IS
	'Reps whose stage moves show a pattern their peers'' do not (from the stage history): quarter_end_push (advances in the last 5 days of a quarter), skipped_stage, regression (moves back), late_stage_fast_loss (deals lost within 30 days of an advance into a late stage), no_activity_advance (advances with no activity logged in the 14 days before or since: needs last_activity_date); per rep and signal the events, out of how many moves, the rep''s and the other reps'' rates, a one-sided p-value, the Benjamini-Hochberg q-value over every rep and signal, and a sentence; only q < 0.05 is listed (a rep with no unusual pattern is not); reps with fewer than 20 moves are not tested';

-- A q-value in words.
CREATE FUNCTION dealrisk._qtext(q float8)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN q IS NULL THEN 'n/a' WHEN q < 0.001 THEN '< 0.001' ELSE '= ' || pg_catalog.to_char(q, 'FM0.000') END;
COMMENT ON FUNCTION dealrisk._qtext(float8) IS 'A q-value in words: < 0.001, or = 0.012 (internal)';

-- diagnose(source, history) -----------------------------------------------------

-- The lines diagnose() writes about a stage history: the funnel read from
-- it, the steps whose conversion changed between quarters, stalled open
-- deals and reps whose stage moves stand out; a section that cannot be read
-- says why on its line.
CREATE FUNCTION dealrisk._diagnose_history(source regclass, history regclass)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	lines		text[] := '{}';
	f			record;
	r			record;
	steps		text[] := '{}';
	f_stage		text[];
	f_reached	bigint[];
	f_lost		bigint[];
	f_moved		bigint[];
	f_late		boolean[];
	f_conv		float8[];
	f_lo		float8[];
	f_hi		float8[];
	left_out	text;
	lost_total	bigint;
	late_lost	bigint := 0;
	late_names	text[] := '{}';
	top			int;
	weak		int;
	nxt			text;
	covered		boolean;
	n_cmp		bigint;
	part		text;
	msg			text;
	hnt			text;
BEGIN
	BEGIN
		PERFORM dealrisk._check_history(history);
		PERFORM dealrisk._history_stages_known(history);
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
		RETURN ARRAY['Stage history: not read: ' || msg || '. ' || coalesce(hnt, '')];
	END;
	-- a history that names no deal of the source has nothing to say: not
	-- "no lost deal", "no open deal"
	EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s h JOIN %s d ON d.deal_id::text OPERATOR(pg_catalog.=) h.deal_id::text)',
		history, source) INTO covered;
	IF NOT covered THEN
		RETURN ARRAY[pg_catalog.format('Stage history: not read: no row of %s names a deal of the source (the same deal_id text in both: SELECT * FROM dealrisk.check_source(%L, %L) shows an id of each).',
			dealrisk._source_name(history), dealrisk._source_name(source), dealrisk._source_name(history))];
	END IF;

	-- the funnel, read once into arrays (stage order)
	BEGIN
		SELECT pg_catalog.array_agg(x.stage ORDER BY x."position"), pg_catalog.array_agg(x.reached ORDER BY x."position"),
		       pg_catalog.array_agg(x.lost_here ORDER BY x."position"), pg_catalog.array_agg(x.moved_on ORDER BY x."position"),
		       pg_catalog.array_agg(x.is_late ORDER BY x."position"), pg_catalog.array_agg(x.conversion ORDER BY x."position"),
		       pg_catalog.array_agg(x.ci_low ORDER BY x."position"), pg_catalog.array_agg(x.ci_high ORDER BY x."position"),
		       pg_catalog.min(x.caveat) FILTER (WHERE x.caveat LIKE '%no stage history%')
		INTO f_stage, f_reached, f_lost, f_moved, f_late, f_conv, f_lo, f_hi, left_out
		FROM dealrisk.funnel(source, NULL, history) x;
		lost_total := 0;
		FOR i IN 1 .. coalesce(pg_catalog.cardinality(f_stage), 0) LOOP
			lost_total := lost_total + f_lost[i];
			IF f_late[i] THEN
				late_lost := late_lost + f_lost[i];
				IF f_reached[i] > 0 THEN late_names := late_names || f_stage[i]; END IF;
			END IF;
			IF top IS NULL OR f_lost[i] > f_lost[top] THEN top := i; END IF;
			-- the weakest step among those with 30 decided deals or more
			IF f_moved[i] + f_lost[i] >= 30 AND (weak IS NULL OR f_conv[i] < f_conv[weak]) THEN weak := i; END IF;
		END LOOP;
		IF lost_total = 0 THEN
			lines := lines || 'Funnel (stage history): no lost deal in the history.'::text;
		ELSE
			lines := lines || pg_catalog.format('Funnel (stage history%s): most lost deals were lost at %s (%s of %s, %s).',
				CASE WHEN left_out IS NOT NULL THEN '; ' || pg_catalog.split_part(left_out, ';', 1) ELSE '' END,
				f_stage[top], dealrisk._num(f_lost[top]), dealrisk._num(lost_total), dealrisk._pct(f_lost[top]::float8 / lost_total));
			IF weak IS NOT NULL THEN
				-- the next stage any deal of the history entered, else the win
				nxt := 'won';
				FOR i IN weak + 1 .. pg_catalog.cardinality(f_stage) LOOP
					IF f_reached[i] > 0 THEN nxt := f_stage[i]; EXIT; END IF;
				END LOOP;
				lines := lines || pg_catalog.format('Weakest step: %s -> %s, where %s of the deals decided there moved on (95%% CI %s to %s).',
					f_stage[weak], nxt, dealrisk._pct(f_conv[weak]), dealrisk._pct(f_lo[weak]), dealrisk._pct(f_hi[weak]));
			END IF;
			lines := lines || pg_catalog.format('Late-stage losses: %s of lost deals were lost at a late stage (%s).',
				dealrisk._pct(late_lost::float8 / lost_total),
				coalesce(pg_catalog.array_to_string(NULLIF(late_names, '{}'), ', '), 'no late stage of dealrisk.stages is in the history'));
		END IF;
	EXCEPTION WHEN OTHERS THEN
		lines := lines || ('Funnel (stage history): not available: ' || SQLERRM);
	END;

	-- the steps over time (one call: the rows in period and stage order)
	BEGIN
		n_cmp := 0;
		FOR r IN SELECT t.*, pg_catalog.max(t.period_start) OVER () AS last_period
		         FROM dealrisk.stage_conversion_trend(source, history, 'quarter') t
		         JOIN dealrisk.stages st ON st.stage OPERATOR(pg_catalog.=) t.from_stage
		         ORDER BY t.period_start, st.position LOOP
			IF r.p_value IS NOT NULL THEN n_cmp := n_cmp + 1; END IF;
			IF r.significant THEN
				steps := steps || pg_catalog.format('%s -> %s %s from %s to %s for the deals that reached %s in %s (q %s)',
					r.from_stage, r.to_stage, CASE WHEN r.change < 0 THEN 'fell' ELSE 'rose' END,
					dealrisk._pct(r.rate - r.change), dealrisk._pct(r.rate), r.from_stage, dealrisk._quarter_label(r.period_start),
					dealrisk._qtext(r.q_value));
			END IF;
			IF r.is_partial AND r.undecided > 0 AND r.period_start OPERATOR(pg_catalog.=) r.last_period THEN
				part := pg_catalog.concat_ws(', ', part, pg_catalog.format('%s in %s (%s of its deals undecided)', r.from_stage,
					dealrisk._quarter_label(r.period_start), dealrisk._pct(r.undecided::float8 / NULLIF(r.entered, 0))));
			END IF;
		END LOOP;
		IF n_cmp = 0 THEN
			lines := lines || 'Steps: no two complete quarters to compare yet.'::text;
		ELSIF pg_catalog.cardinality(steps) = 0 THEN
			lines := lines || pg_catalog.format('Steps: no step''s conversion changed from one quarter to the next beyond noise (%s comparisons, Benjamini-Hochberg q >= 0.05).', n_cmp);
		ELSE
			lines := lines || pg_catalog.format('Steps: %s; the other steps did not change (%s comparisons, q = p adjusted by Benjamini-Hochberg).',
				pg_catalog.array_to_string(steps, '; '), n_cmp);
		END IF;
		IF part IS NOT NULL THEN
			lines := lines || pg_catalog.format('  not compared yet: %s.', part);
		END IF;
	EXCEPTION WHEN OTHERS THEN
		lines := lines || ('Steps: not available: ' || SQLERRM);
	END;

	-- stalls
	BEGIN
		SELECT pg_catalog.count(*) AS n, pg_catalog.count(*) FILTER (WHERE v.is_stalled) AS stalled,
		       (pg_catalog.array_agg(v.reason || ' (' || v.deal_id || ')' ORDER BY v.days_in_stage - v.won_p90_days DESC) FILTER (WHERE v.is_stalled))[1] AS worst,
		       pg_catalog.count(*) FILTER (WHERE v.is_stalled IS NULL) AS unknown
		INTO f FROM dealrisk.stage_velocity(source, history) v;
		IF f.n = 0 THEN
			lines := lines || 'Stalls: no open deal in the history.'::text;
		ELSE
			lines := lines || pg_catalog.format('Stalls: %s of %s open deals have been in their stage longer than 90%% of the won deals took%s%s.',
				dealrisk._num(f.stalled), dealrisk._num(f.n),
				CASE WHEN f.worst IS NOT NULL THEN '; the most overdue: ' || f.worst ELSE '' END,
				CASE WHEN f.unknown > 0 THEN pg_catalog.format('; %s sit in stages too few won deals passed through to judge', dealrisk._num(f.unknown)) ELSE '' END);
		END IF;
	EXCEPTION WHEN OTHERS THEN
		lines := lines || ('Stalls: not available: ' || SQLERRM);
	END;

	-- gaming
	IF NOT dealrisk._has_column(source, 'sales_rep_id') THEN
		lines := lines || 'Pipeline gaming: not available: the source has no sales_rep_id column.'::text;
	ELSE
		BEGIN
			SELECT pg_catalog.array_agg(g.sentence ORDER BY g.q_value, g.sales_rep_id) INTO steps FROM dealrisk.pipeline_gaming(source, history) g;
			IF steps IS NULL THEN
				lines := lines || 'Pipeline gaming: no rep''s stage moves stand out from the other reps'' (quarter-end pushes, skipped stages, moves back, late-stage losses soon after an advance, advances with no activity logged).'::text;
			ELSE
				lines := lines || ('Pipeline gaming (a reason to look at the deals, not a verdict): ' || pg_catalog.array_to_string(steps, '; ') || '.');
			END IF;
		EXCEPTION WHEN OTHERS THEN
			lines := lines || ('Pipeline gaming: not available: ' || SQLERRM);
		END;
	END IF;
	RETURN lines;
END
$fn$;
COMMENT ON FUNCTION dealrisk._diagnose_history(regclass, regclass) IS
	'The lines of diagnose() on a stage history: funnel, steps that changed between quarters, stalled open deals, pipeline gaming; a section that cannot be read says why (internal)';

-- Point-in-time training ------------------------------------------------------

-- The closed deals of a source as they stood at the end of every month
-- while they were open: dealrisk_as_of the month's last day, the stage then
-- (the history's last entry on or before it) and when it was entered, the
-- outcome the final one.  The deals open at a month end are the population
-- a model scores on a day (a long deal is open at more of them, as it is
-- more likely to be open on the day of scoring); a deal open at no month
-- end gives no row.  The snapshots of a deal share its closed_date, so the
-- holdout (the newest closes) takes all of them or none; its rep's win rate
-- leaves out only the row's own outcome, so a deal's other snapshots stay
-- in it (measured in docs/model.md: no difference in AUC without the rate).
-- sales_cycle_days and last_activity_date are left out: they are known
-- only at the close.
CREATE FUNCTION dealrisk._pit_rows(source regclass, history regclass, target text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	cols		text;
	dcols		text;
	n			bigint;
BEGIN
	SELECT pg_catalog.string_agg(pg_catalog.format('x.%I', a.attname), ', ' ORDER BY a.attnum),
	       pg_catalog.string_agg(pg_catalog.format('d.%I', a.attname), ', ' ORDER BY a.attnum)
	INTO cols, dcols
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text <> ALL (ARRAY['deal_id', 'deal_stage', 'stage_entered_date', 'sales_cycle_days',
	                                    'last_activity_date', 'dealrisk_as_of', 'dealrisk_pit_id', 'dealrisk_pit_t']);
	EXECUTE pg_catalog.format('DROP TABLE IF EXISTS pg_temp.%I', target);
	EXECUTE pg_catalog.format(
		$q$CREATE TEMP TABLE %I ON COMMIT DROP AS
		WITH x AS MATERIALIZED (
			SELECT %s%s d.deal_id::text AS dealrisk_pit_id, m.t AS dealrisk_pit_t
			FROM %s d
			-- (month starts, then the day before: a month end plus a month
			-- is not always a month end; timestamps without a time zone keep
			-- the series immutable, which Citus needs to run it on the shards)
			CROSS JOIN LATERAL (SELECT (g - interval '1 day')::date AS t FROM pg_catalog.generate_series(
				pg_catalog.date_trunc('month', d.created_date::date::timestamp) + interval '1 month',
				d.closed_date::date::timestamp, interval '1 month') g) m
			WHERE d.deal_id IS NOT NULL AND dealrisk.is_won(d.outcome::text) IS NOT NULL
			  AND pg_catalog.isfinite(d.created_date::date) AND pg_catalog.isfinite(d.closed_date::date)
			  AND m.t >= d.created_date::date
		), h AS (
			SELECT DISTINCT ON (x.dealrisk_pit_id, x.dealrisk_pit_t) x.dealrisk_pit_id, x.dealrisk_pit_t,
			       h.stage::text AS stage, h.entered_at::date AS entered
			FROM %s h JOIN x ON x.dealrisk_pit_id OPERATOR(pg_catalog.=) h.deal_id::text
			WHERE pg_catalog.isfinite(h.entered_at) AND h.entered_at::date <= x.dealrisk_pit_t
			  AND dealrisk.outcome_class(coalesce(h.stage::text, '')) OPERATOR(pg_catalog.<>) ALL (ARRAY['won', 'lost'])
			ORDER BY x.dealrisk_pit_id, x.dealrisk_pit_t, h.entered_at DESC, dealrisk.stage_position(h.stage::text) DESC
		)
		SELECT %s%s x.dealrisk_pit_id || '@' || x.dealrisk_pit_t AS deal_id, x.dealrisk_pit_t AS dealrisk_as_of,
		       h.stage AS deal_stage, h.entered AS stage_entered_date
		FROM x LEFT JOIN h ON h.dealrisk_pit_id OPERATOR(pg_catalog.=) x.dealrisk_pit_id
		                   AND h.dealrisk_pit_t OPERATOR(pg_catalog.=) x.dealrisk_pit_t$q$,
		target, dcols, CASE WHEN dcols IS NOT NULL THEN ',' ELSE '' END, source, history,
		cols, CASE WHEN cols IS NOT NULL THEN ',' ELSE '' END);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$fn$;
COMMENT ON FUNCTION dealrisk._pit_rows(regclass, regclass, text) IS
	'Creates temporary table target (dropped at commit): each closed deal of source as it stood at every month end while open (dealrisk_as_of), its stage then from the history, its final outcome; returns its rows (internal)';

CREATE FUNCTION dealrisk.train(source regclass, history regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true,
	method text DEFAULT 'auto', params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	target		text;
	n			bigint;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'created_date', 'closed_date']);
	PERFORM dealrisk._check_history(history);
	PERFORM dealrisk._history_stages_known(history);
	-- the snapshots take the source's name, so the model says what it was
	-- trained on, and its OID, so that two sources never share a table:
	-- deals_point_in_time_16384
	SELECT pg_catalog.left(c.relname, 30) || '_point_in_time_' || c.oid INTO target
	FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	n := dealrisk._pit_rows(source, history, target);
	RAISE NOTICE 'dealrisk.train: point in time: % snapshots of the closed deals of %, each as it stood at a month end while open (stage from %)',
		n, dealrisk._source_name(source), dealrisk._source_name(history);
	RETURN dealrisk.train(pg_catalog.format('pg_temp.%I', target)::regclass, name, features, l2, holdout, activate, method, params);
END
$fn$;
COMMENT ON FUNCTION dealrisk.train(regclass, regclass, text, text[], float8, float8, boolean, text, jsonb) IS
	'Trains a point-in-time model: train() on the closed deals of source as they stood at every month end while they were open (the stage then from the stage history, age and days in stage on that day, the final outcome), so the model learns from the same kind of row it scores; deal_stage is a feature, age and time in stage are scored in bins (no survivor curves); returns the model id';
REVOKE EXECUTE ON FUNCTION dealrisk.train(regclass, regclass, text, text[], float8, float8, boolean, text, jsonb),
	dealrisk._pit_rows(regclass, regclass, text) FROM PUBLIC;
