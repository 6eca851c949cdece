-- Issue #13, item 5: diagnose() reads the source fewer times.  _trends
-- reads it once for the win-rate trend, the sales cycle and the default
-- windows (win_rate_trend and cycle_trend are built on it); diagnose takes
-- the stage verdict from the preflight it runs anyway.

CREATE FUNCTION dealrisk._windows_of(last_closed date, OUT recent daterange, OUT baseline daterange)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT pg_catalog.daterange(q, (q + interval '3 months')::date),
		   pg_catalog.daterange((q - interval '3 months')::date, q)
	FROM (SELECT (pg_catalog.date_trunc('quarter', (last_closed + 1)::timestamp) - interval '3 months')::date AS q) x
	WHERE last_closed IS NOT NULL
$fn$;
COMMENT ON FUNCTION dealrisk._windows_of(date) IS
	'The last complete calendar quarter before the day after last_closed, and the quarter before it (internal)';

CREATE FUNCTION dealrisk._trends(source regclass, period text, cycles boolean)
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean, median_days float8, p75_days float8, mean_days float8,
			  change_median float8, cycle_p_value float8, last_closed date)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
	has_days	boolean := false;
	has_created	boolean := false;
	cyc			text := 'NULL::float8';
BEGIN
	IF cycles THEN
		has_days := coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false);
		has_created := coalesce(dealrisk._has_column(source, 'created_date'), false);
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']
		|| CASE WHEN has_days THEN ARRAY['sales_cycle_days'] ELSE '{}' END
		|| CASE WHEN has_created THEN ARRAY['created_date'] ELSE '{}' END);
	IF has_created THEN
		cyc := 'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN (d.closed_date::date - d.created_date::date)::float8 END';
	END IF;
	IF has_days THEN
		cyc := pg_catalog.format('coalesce(d.sales_cycle_days::float8, %s)', cyc);
	END IF;
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n,
				   pg_catalog.count(*) FILTER (WHERE x.won) AS w,
				   pg_catalog.max(x.closed_date) AS last_cl,
				   pg_catalog.count(x.cyc) AS nc,
				   pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY x.cyc) AS med,
				   pg_catalog.percentile_cont(0.75) WITHIN GROUP (ORDER BY x.cyc) AS p75,
				   pg_catalog.avg(x.cyc) AS mean,
				   pg_catalog.stddev_samp(x.cyc) AS sd
			FROM (SELECT d.closed_date::date AS closed_date,
						 dealrisk.is_won(d.outcome::text) AS won,
						 %s AS cyc
				  FROM %s AS d) x
			WHERE x.won IS NOT NULL AND pg_catalog.isfinite(x.closed_date)
			GROUP BY 1
		), l AS (
			SELECT g.*, g.w::float8 / g.n AS r,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.n) OVER o AS prev_n,
				   pg_catalog.lag(g.w) OVER o AS prev_w,
				   pg_catalog.lag(g.med) OVER o AS prev_med,
				   pg_catalog.lag(g.mean) OVER o AS prev_mean,
				   pg_catalog.lag(g.sd) OVER o AS prev_sd,
				   pg_catalog.lag(g.nc) OVER o AS prev_nc,
				   pg_catalog.max(g.last_cl) OVER () AS all_last_cl
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		)
		SELECT l.ps, l.n, l.w, l.r, ci.ci_low, ci.ci_high,
			   CASE WHEN l.adjacent THEN l.r - l.prev_w::float8 / l.prev_n END,
			   CASE WHEN l.adjacent THEN dealrisk.two_proportion_p(l.w, l.n, l.prev_w, l.prev_n) END,
			   (l.ps + $2)::date > l.all_last_cl + 1,
			   l.med, l.p75, l.mean,
			   CASE WHEN l.adjacent THEN l.med - l.prev_med END,
			   CASE WHEN l.adjacent THEN dealrisk.welch_p(l.mean, l.sd, l.nc, l.prev_mean, l.prev_sd, l.prev_nc) END,
			   l.all_last_cl
		FROM l, LATERAL dealrisk.wilson_interval(l.w, l.n) ci
		ORDER BY l.ps$q$,
		cyc, source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk._trends(regclass, text, boolean) IS
	'Closed deals per period of closed_date in one read of the source: the columns of win_rate_trend and, with cycles, of cycle_trend, and the newest closed_date (internal)';

CREATE FUNCTION dealrisk._funnel_rows(source regclass, since date, note text)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	-- created_date only filters (since)
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']
		|| CASE WHEN since IS NOT NULL THEN ARRAY['created_date'] ELSE '{}' END);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$SELECT f.stage, f."position", f.is_late, f.reached, f.won, f.lost_here,
				  f.open_here,
				  -- from the last stage any closed deal reached, the next
				  -- step is the win (a stage after it that no deal uses,
				  -- such as an unused Closed, is not a step to fail)
				  CASE WHEN f.won > 0 AND pg_catalog.max(f.reached) OVER (ORDER BY f."position"
				                          ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) = 0
				       THEN f.won::float8 / NULLIF(f.reached, 0) ELSE f.conversion_to_next END,
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
		USING since, note;
END
$fn$;
COMMENT ON FUNCTION dealrisk._funnel_rows(regclass, date, text) IS
	'The rows of funnel() in one read of the source, with caveat = note (internal)';

CREATE OR REPLACE FUNCTION dealrisk._default_windows(source regclass,
	OUT recent daterange, OUT baseline daterange, OUT last_closed date)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
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
	SELECT w.recent, w.baseline INTO recent, baseline FROM dealrisk._windows_of(last_closed) w;
END
$fn$;
COMMENT ON FUNCTION dealrisk._default_windows(regclass) IS
	'The last complete calendar quarter of closed deals in source, the quarter before it, and the last closed_date (internal)';

CREATE OR REPLACE FUNCTION dealrisk.win_rate_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean)
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT t.period_start, t.closed, t.won, t.win_rate, t.ci_low, t.ci_high, t.change, t.p_value, t.is_partial
	FROM dealrisk._trends(source, period, false) t
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_trend(regclass, text) IS
	'Win rate of closed deals per week, month, quarter or year of closed_date, with a 95% Wilson interval, the change from the previous period, the two-proportion p-value of that change, and is_partial for a period that ends after the newest closed_date';

CREATE OR REPLACE FUNCTION dealrisk.cycle_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, median_days float8, p75_days float8,
			  mean_days float8, change_median float8, p_value float8, significant boolean,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_period(period);
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	IF NOT coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false)
	   AND NOT coalesce(dealrisk._has_column(source, 'created_date'), false) THEN
		RAISE EXCEPTION 'source "%" has neither a sales_cycle_days nor a created_date column', dealrisk._source_name(source)
			USING ERRCODE = '42703',
				  DETAIL = 'A sales cycle is sales_cycle_days, or closed_date - created_date.',
				  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
	END IF;
	RETURN QUERY
	SELECT t.period_start, t.closed, t.median_days, t.p75_days, t.mean_days, t.change_median,
		   t.cycle_p_value, t.cycle_p_value < 0.05, t.is_partial
	FROM dealrisk._trends(source, period, true) t;
END
$fn$;
COMMENT ON FUNCTION dealrisk.cycle_trend(regclass, text) IS
	'Sales cycle length (sales_cycle_days, else closed_date - created_date; a source needs one of them) of closed deals per week, month, quarter or year of closed_date: median, 75th percentile, mean, change of the median from the previous period, Welch''s t-test p-value of the change of the mean, and is_partial for a period that ends after the newest closed_date';

-- (funnel() itself is replaced in part 98: with the stage history it takes
-- a third argument.)

