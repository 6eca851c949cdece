-- forecast.sql: what the open pipeline will close within a horizon
-- (issue #12; src/forecast.c, docs/diagnostics.md#forecast).
--
-- Each open deal wins within the horizon with probability
--   P(win) x P(closes within the horizon | it wins, it is still open at its age)
-- P(win) is 1 - deal_risk / 100 of the active model (which already knows
-- the deal's age).  The second factor comes from the sales cycles of the
-- won deals like it (the same product_type when at least 50 of them won,
-- else all won deals): of the won deals whose cycle was longer than this
-- deal's age, the share that closed within age + horizon.  A deal older
-- than every such won deal has no estimate and is counted apart, not
-- given a chance.  The deals are taken as independent: the won value is a
-- sum of Bernoulli deals weighted by their amounts, whose interval
-- dealrisk._bernoulli_sum computes (exact, or a seeded simulation).

CREATE FUNCTION dealrisk._bernoulli_sum(amounts float8[], p_win float8[], p_close float8[], shift float8,
	shock_sd float8, level float8,
	OUT value_mean float8, OUT value_low float8, OUT value_high float8,
	OUT wins_mean float8, OUT wins_low float8, OUT wins_high float8, OUT method text)
RETURNS record
AS 'MODULE_PATHNAME', 'dr_bernoulli_sum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._bernoulli_sum(float8[], float8[], float8[], float8, float8, float8) IS
	'Mean and equal-tailed interval at a level of sum(amount_i X_i) and sum(X_i), X_i ~ Bernoulli(expit(logit(p_win_i) + shift + e) p_close_i) with e ~ N(0, shock_sd) shared by all deals: exact without a shock up to 16 uncertain deals, else a seeded simulation (internal)';

-- Every open deal of a source with what the forecast needs: its group
-- value (a contract dimension, or NULL), amount (NULL unless finite), age,
-- P(win) under the model, P(closing within the horizon | it wins) and the
-- expected close date (NULL when the history gives it none: no age, or
-- older than every won deal like it, then past is true).  The caller has
-- checked the source and the model.
CREATE FUNCTION dealrisk._forecast_deals(source regclass, horizon_days int, model text, by text)
RETURNS TABLE(deal_id text, grp text, amount float8, age int, p_win float8, p_close float8,
			  expected_close date, past boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	pool_expr text := CASE WHEN dealrisk._has_column(source, 'product_type') THEN 'd.product_type::text' ELSE 'NULL::text' END;
	grp_expr text := CASE WHEN by IS NOT NULL AND dealrisk._has_column(source, by) THEN pg_catalog.format('d.%I::text', by)
	                      ELSE 'NULL::text' END;
BEGIN
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH won_all AS MATERIALIZED (
			-- the cycle lengths of the won deals closed by the scoring date
			SELECT %s AS pool, (d.closed_date::date OPERATOR(pg_catalog.-) d.created_date::date) AS cyc,
			       d.created_date::date OPERATOR(pg_catalog.<=) ($1 OPERATOR(pg_catalog.-) 180) AS settled
			FROM %s d
			WHERE dealrisk.outcome_class(d.outcome::text) OPERATOR(pg_catalog.=) 'won'
			  AND pg_catalog.isfinite(d.closed_date::date) AND pg_catalog.isfinite(d.created_date::date)
			  AND d.closed_date::date OPERATOR(pg_catalog.<=) $1
			  AND d.closed_date::date OPERATOR(pg_catalog.>=) d.created_date::date
		),
		won AS MATERIALIZED (
			-- recent deals that won are those with short cycles (their long
			-- siblings are still open): the deals created 180 days or more
			-- before the scoring date, when 50 of them won, else all
			SELECT w.pool, w.cyc FROM won_all w
			WHERE w.settled OR (SELECT pg_catalog.count(*) FROM won_all v WHERE v.settled) OPERATOR(pg_catalog.<) 50
		),
		pools AS MATERIALIZED (
			SELECT w.pool, pg_catalog.array_agg(w.cyc ORDER BY w.cyc) AS cycles
			FROM won w WHERE w.pool IS NOT NULL GROUP BY w.pool HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>=) 50
			UNION ALL
			SELECT NULL, pg_catalog.array_agg(w.cyc ORDER BY w.cyc) FROM won w
		),
		open AS MATERIALIZED (
			SELECT d.deal_id::text AS deal_id, %s AS grp, %s AS pool,
			       CASE WHEN d.deal_amount::pg_catalog.float8 OPERATOR(pg_catalog.<>) ALL ('{NaN,Infinity,-Infinity}'::pg_catalog.float8[])
			            THEN d.deal_amount::pg_catalog.float8 END AS amount,
			       CASE WHEN pg_catalog.isfinite(d.created_date::date)
			            THEN greatest($1 OPERATOR(pg_catalog.-) d.created_date::date, 0) END AS age,
			       d.created_date::date AS created,
			       1 - dealrisk.deal_risk(d, $3) / 100 AS p_win
			FROM %s d
			WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
		)
		SELECT o.deal_id, o.grp, o.amount, o.age, o.p_win,
		       -- P(closing within the horizon | it wins, still open at its age)
		       CASE WHEN o.age IS NULL OR c.n OPERATOR(pg_catalog.=) c.older THEN 0::pg_catalog.float8
		            ELSE (c.within OPERATOR(pg_catalog.-) c.older)::pg_catalog.float8
		                 / (c.n OPERATOR(pg_catalog.-) c.older)::pg_catalog.float8 END,
		       CASE WHEN o.age IS NOT NULL AND c.n OPERATOR(pg_catalog.>) c.older
		            THEN o.created OPERATOR(pg_catalog.+) c.median_left END,
		       o.age IS NOT NULL AND c.n OPERATOR(pg_catalog.=) c.older
		FROM open o
		LEFT JOIN pools pp ON pp.pool OPERATOR(pg_catalog.=) o.pool
		CROSS JOIN LATERAL (
			-- the won cycles of its pool (its product_type's, else all):
			-- n in all, older how many were no longer than its age, within
			-- how many ended by age + horizon, median_left the median of
			-- those longer than its age
			SELECT coalesce(pg_catalog.cardinality(y.cycles), 0) AS n, y.older, y.within,
			       y.cycles[y.older OPERATOR(pg_catalog.+) ((pg_catalog.cardinality(y.cycles) OPERATOR(pg_catalog.-) y.older OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog./) 2)] AS median_left
			FROM (SELECT z.cycles, coalesce(pg_catalog.width_bucket(o.age, z.cycles), 0) AS older,
			             coalesce(pg_catalog.width_bucket(o.age OPERATOR(pg_catalog.+) $2, z.cycles), 0) AS within
			      FROM (SELECT coalesce(pp.cycles, (SELECT p.cycles FROM pools p WHERE p.pool IS NULL)) AS cycles) z) y
		) c$q$,
		pool_expr, source, grp_expr, pool_expr, source)
	USING dealrisk._as_of(), horizon_days, model;
END
$fn$;
COMMENT ON FUNCTION dealrisk._forecast_deals(regclass, int, text, text) IS
	'Every open deal of a source with its group value, amount, age, P(win), P(closing within the horizon | it wins) from the cycles of settled won deals like it, and expected close date (internal)';

CREATE FUNCTION dealrisk.forecast(source regclass, by text DEFAULT NULL, horizon interval DEFAULT '90 days',
	target numeric DEFAULT NULL, model text DEFAULT 'default', level float8 DEFAULT 0.9)
RETURNS TABLE(group_value text, is_total boolean, open_deals bigint, pipeline_value numeric,
			  expected_wins float8, wins_low float8, wins_high float8,
			  expected_won_value numeric, won_value_low numeric, won_value_high numeric,
			  pipeline_coverage float8, expected_attainment_pct float8,
			  deals_past_won_cycles bigint, deals_without_age bigint, deals_without_amount bigint,
			  shared_shock_sd float8, interval_method text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	dims text[] := ARRAY['sales_rep_id', 'industry', 'region', 'product_type', 'lead_source', 'deal_stage'];
	asof date := dealrisk._as_of();
	h_days int;
	shock float8 := 0;
	tgt float8 := target::float8;
BEGIN
	IF by IS NOT NULL AND NOT (by OPERATOR(pg_catalog.=) ANY (dims || ARRAY['close_month', 'close_week'])) THEN
		RAISE EXCEPTION 'by must be NULL, close_month, close_week or one of %, got %', pg_catalog.array_to_string(dims, ', '), by
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'E.g. forecast(''deals'', ''sales_rep_id'') for one row per rep, plus the total.';
	END IF;
	IF horizon IS NULL OR NOT pg_catalog.isfinite(horizon) OR horizon OPERATOR(pg_catalog.<) interval '1 day' THEN
		RAISE EXCEPTION 'horizon must be a finite interval of at least 1 day, got %', coalesce(horizon::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. interval ''90 days'' or ''3 months''.';
	END IF;
	IF level IS NULL OR NOT (level > 0 AND level < 1) THEN
		RAISE EXCEPTION 'level must be between 0 and 1 (exclusive), got %', coalesce(level::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. 0.9 for the 5th to the 95th percentile.';
	END IF;
	IF NOT (target > 0) OR target OPERATOR(pg_catalog.=) 'Infinity'::numeric THEN
		RAISE EXCEPTION 'target must be a positive finite amount, got %', target
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Leave it NULL for no coverage columns.';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'created_date', 'closed_date', 'deal_amount']
		|| CASE WHEN by OPERATOR(pg_catalog.=) ANY (dims) THEN ARRAY[by] ELSE '{}'::text[] END);
	IF model IS NULL OR NOT EXISTS (SELECT 1 FROM dealrisk.models m WHERE m.name OPERATOR(pg_catalog.=) model AND m.active) THEN
		RAISE EXCEPTION 'no active deal risk model named "%"', model
			USING ERRCODE = 'no_data_found',
			      HINT = pg_catalog.format('Train one first: SELECT dealrisk.train(%L, name => %L);',
			                               dealrisk._source_name(source), coalesce(model, 'default'));
	END IF;
	h_days := (asof OPERATOR(pg_catalog.+) horizon)::date OPERATOR(pg_catalog.-) asof;

	-- The shared shock: how much the win rate of whole quarters moved beyond
	-- the binomial noise of their deals (log-odds, the last eight complete
	-- quarters with 30 closed deals or more).  Deals of one quarter win or
	-- lose together by that much, which independent deals would not show.
	SELECT pg_catalog.sqrt(greatest(0, pg_catalog.var_samp(t.lo) - pg_catalog.avg(t.noise)))
	INTO shock
	FROM (SELECT pg_catalog.ln(w.win_rate / (1 - w.win_rate)) AS lo,
	             1 / (w.closed * w.win_rate * (1 - w.win_rate)) AS noise
	      FROM dealrisk.win_rate_trend(source, 'quarter') w
	      WHERE NOT w.is_partial AND w.closed OPERATOR(pg_catalog.>=) 30 AND w.win_rate > 0 AND w.win_rate < 1
	      ORDER BY w.period_start DESC LIMIT 8) t
	HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>=) 3;
	shock := coalesce(shock, 0);

	RETURN QUERY
	WITH deals AS MATERIALIZED (
		SELECT f.*, CASE WHEN by IS NULL THEN NULL
		                 WHEN by OPERATOR(pg_catalog.=) 'close_month' THEN pg_catalog.to_char(f.expected_close, 'YYYY-MM')
		                 WHEN by OPERATOR(pg_catalog.=) 'close_week'
		                 THEN pg_catalog.date_trunc('week', f.expected_close::timestamp)::date::text
		                 ELSE f.grp END AS g
		FROM dealrisk._forecast_deals(source, h_days, model, by) f
	),
	grouped AS (
		SELECT x.g AS group_value, false AS is_total, x.* FROM deals x WHERE by IS NOT NULL
		UNION ALL
		SELECT NULL, true, x.* FROM deals x
	)
	SELECT a.group_value, a.is_total, a.n, a.pipeline, (a.s).wins_mean, (a.s).wins_low, (a.s).wins_high,
	       pg_catalog.round((a.s).value_mean::numeric, 2),
	       pg_catalog.round((a.s).value_low::numeric, 2), pg_catalog.round((a.s).value_high::numeric, 2),
	       CASE WHEN a.is_total THEN a.pipeline::float8 / tgt END,
	       CASE WHEN a.is_total THEN 100 * (a.s).value_mean / tgt END,
	       a.past, a.no_age, a.no_amount, shock, (a.s).method
	FROM (
		SELECT gr.group_value, gr.is_total, pg_catalog.count(*) AS n,
		       coalesce(pg_catalog.sum(gr.amount::numeric), 0) AS pipeline,
		       pg_catalog.count(*) FILTER (WHERE gr.past) AS past,
		       pg_catalog.count(*) FILTER (WHERE gr.age IS NULL) AS no_age,
		       pg_catalog.count(*) FILTER (WHERE gr.amount IS NULL) AS no_amount,
		       -- the distribution: a deal without an amount can win and adds
		       -- no value; in the order of deal_id, so that the simulation's
		       -- draws (and the interval) are the same on every call
		       dealrisk._bernoulli_sum(
		           coalesce(pg_catalog.array_agg(coalesce(gr.amount, 0) ORDER BY gr.deal_id) FILTER (WHERE gr.p_close > 0), '{}'),
		           coalesce(pg_catalog.array_agg(gr.p_win ORDER BY gr.deal_id) FILTER (WHERE gr.p_close > 0), '{}'),
		           coalesce(pg_catalog.array_agg(gr.p_close ORDER BY gr.deal_id) FILTER (WHERE gr.p_close > 0), '{}'),
		           0, shock, level) AS s
		FROM grouped gr
		GROUP BY gr.is_total, gr.group_value
	) a
	ORDER BY a.is_total, a.group_value;
END
$fn$;
COMMENT ON FUNCTION dealrisk.forecast(regclass, text, interval, numeric, text, float8) IS
	'Risk-adjusted forecast of the open pipeline within a horizon (default 90 days), in total and per group (by a contract dimension, close_month or close_week): pipeline value, expected wins and won value (P(win) of the model times P(closing within the horizon) from the cycles of won deals like it) with an equal-tailed interval at level (default 0.9) that adds a shock shared by all deals as large as the quarter-to-quarter moves of the win rate, coverage of a target, and the deals left out (older than every won deal like them, without a created_date, without an amount)';
