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

CREATE OR REPLACE FUNCTION dealrisk.funnel(source regclass, since date DEFAULT NULL)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	why			text;
BEGIN
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
	RETURN QUERY SELECT * FROM dealrisk._funnel_rows(source, since, why);
END
$fn$;
COMMENT ON FUNCTION dealrisk.funnel(regclass, date) IS
	'The stage funnel of the deals created on or after since (all deals when NULL), one row per stage of dealrisk.stages: closed deals that reached the stage, won from there, lost there, open there, conversion to the next stage, cumulative conversion from the first stage and win rate from the stage; caveat is NULL when deal_stage can be read as the stage each closed deal reached, else why the numbers are not a funnel (with a WARNING)';

CREATE OR REPLACE FUNCTION dealrisk.diagnose(source regclass)
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
	n_tests		bigint := 0;
	top_drag	text;
	remainder	float8;
	n_shadows	int := 0;
	shadow_list	text[] := '{}';
	recent		daterange;
	baseline	daterange;
	rq			text;
	bq			text;
	cur			record;
	prev		record;
	part		record;
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
	why_no_funnel text;
	n_errors	bigint;
	n_warnings	bigint;
	pre_lines	text[];
	notes		text;
	pre_ran		boolean;
	pre_semantics text;
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

	-- The preflight (check_source, which includes data_quality): its errors
	-- and warnings go right under the headline.  (Run first: its one read
	-- also tells the funnel section whether deal_stage can be read.)
	BEGIN
		SELECT pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'error'),
			   pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'warning'),
			   coalesce(pg_catalog.array_agg(pg_catalog.format('  - %s: %s.', c."check", c.finding) ORDER BY c.o)
						FILTER (WHERE c.severity IN ('error', 'warning')), '{}'),
			   -- row-level notes of data_quality(), one line
			   pg_catalog.string_agg(pg_catalog.format('%s %s', c."check", pg_catalog.split_part(c.finding, ':', 1)), ', ' ORDER BY c.o)
						FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'info'
								AND c."check" NOT IN ('outcomes', 'columns', 'summary')),
			   pg_catalog.bool_or(c."check" OPERATOR(pg_catalog.=) 'outcomes'),
			   pg_catalog.max(c.finding) FILTER (WHERE c."check" OPERATOR(pg_catalog.=) 'stage_semantics')
			INTO n_errors, n_warnings, pre_lines, notes, pre_ran, pre_semantics
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
				-- one read for the windows, the trend and the sales cycle
				FOR r IN SELECT t.*, w.recent AS w_recent, w.baseline AS w_baseline
						 FROM dealrisk._trends(source, 'quarter', has_created OR 'sales_cycle_days' = ANY (present)) t,
							  LATERAL dealrisk._windows_of(t.last_closed) w
				LOOP
					recent := r.w_recent;
					baseline := r.w_baseline;
					IF r.is_partial THEN
						part := r;
						has_part := true;
					ELSIF r.period_start = pg_catalog.lower(recent) THEN
						cur := r;
					ELSIF r.period_start = pg_catalog.lower(baseline) THEN
						prev := r;
					END IF;
				END LOOP;
				IF recent IS NULL THEN
					PERFORM dealrisk._default_windows(source);	-- raises the reason
				END IF;
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
			-- the preflight's verdict when it got as far as reading the rows
			why_no_funnel := CASE WHEN coalesce(pre_ran, false) THEN pre_semantics
								  ELSE dealrisk._stage_semantics(source) END;
		END IF;
		IF why_no_funnel IS NOT NULL THEN
			lines := lines || ('Funnel: not shown: deal_stage does not hold the stage closed deals reached (preflight, stage_semantics), so conversion between stages, where deals are lost and late-stage losses would be read from the wrong column. '
				|| dealrisk._stage_semantics_hint());
		ELSE
		BEGIN
			WITH s AS MATERIALIZED (
				SELECT s.*, pg_catalog.lead(s.stage) OVER (ORDER BY s."position") AS next_stage
				FROM dealrisk._funnel_rows(source, NULL, NULL) s
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
		-- source has: the independent causes of the joint analysis (one read
		-- of the source, src/drivers.sql), and the segments that one-at-a-time
		-- tests would flag but that a cause explains away (their shadows).
		IF NOT has_closed THEN
			lines := lines || 'Segments: not available: the source has no closed_date column, so there are no two quarters to compare.'::text;
		ELSIF recent IS NULL THEN
			lines := lines || 'Segments: not available: there are no two quarters to compare (see Trend).'::text;
		ELSIF pg_catalog.cardinality(dims) = 0 THEN
			lines := lines || 'Segments: not available: the source has none of the columns industry, region, lead_source, product_type, sales_rep_id.'::text;
		ELSE
			BEGIN
				FOR r IN
					WITH a AS MATERIALIZED (
						SELECT * FROM dealrisk._driver_analysis(source, dims, recent, baseline, 0, false)
					), t AS MATERIALIZED (
						SELECT a.baseline_closed AS n0, a.baseline_won AS w0, a.recent_closed AS n1, a.recent_won AS w1,
							   a.recent_won::float8 / a.recent_closed - a.baseline_won::float8 / a.baseline_closed AS change,
							   (SELECT pg_catalog.count(*) FROM a x WHERE x.tested) AS m
						FROM a WHERE a.id = 0
					), one AS (
						-- the one-at-a-time view: each segment's contribution (rate
						-- effect + mix effect) and its two-proportion test
						SELECT a.driver, a.explained_by, a.contribution AS adj,
							   CASE WHEN a.recent_closed > 0 THEN (a.recent_closed::float8 / t.n1)
									* (a.recent_won::float8 / a.recent_closed
									   - coalesce(a.baseline_won::float8 / NULLIF(a.baseline_closed, 0), t.w0::float8 / t.n0)) ELSE 0 END
								 + (a.recent_closed::float8 / t.n1 - a.baseline_closed::float8 / t.n0)
									* (coalesce(a.baseline_won::float8 / NULLIF(a.baseline_closed, 0), t.w0::float8 / t.n0) - t.w0::float8 / t.n0)
								 AS marginal,
							   dealrisk.two_proportion_p(a.recent_won, a.recent_closed, a.baseline_won, a.baseline_closed) AS pv,
							   pg_catalog.row_number() OVER (ORDER BY a.id)::int AS j
						FROM a, t
						WHERE a.kind = 'rate' AND pg_catalog.cardinality(a.segments) = 1
					), oneq AS MATERIALIZED (
						SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(one.pv ORDER BY one.j), '{}')) AS qs FROM one
					)
					SELECT 1 AS part, a.kind, a.driver, a.contribution, a.effect, a.p_value, a.q_value,
						   a.baseline_closed::float8 / t.n0 AS s0, a.recent_closed::float8 / t.n1 AS s1,
						   a.baseline_won::float8 / NULLIF(a.baseline_closed, 0) AS r0,
						   a.recent_won::float8 / NULLIF(a.recent_closed, 0) AS r1,
						   t.w0::float8 / t.n0 AS rate0, t.change, t.m, NULL::text AS expl
					FROM a, t
					WHERE a.selected AND a.q_value < 0.05
					UNION ALL
					SELECT 2, NULL, one.driver, one.marginal, one.adj, one.pv, oneq.qs[one.j],
						   NULL, NULL, NULL, NULL, NULL, t.change, t.m, one.explained_by
					FROM one, oneq, t
					WHERE one.explained_by IS NOT NULL AND oneq.qs[one.j] < 0.05
					  AND one.marginal * t.change > 0
					  -- a cause of another kind (a share that moved) is listed above
					  AND NOT EXISTS (SELECT 1 FROM a c WHERE c.selected AND c.q_value < 0.05
									  AND c.driver OPERATOR(pg_catalog.=) one.driver)
					UNION ALL
					SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, t.change, t.m, NULL
					FROM t
					ORDER BY 1, 4, 3
				LOOP
					n_tests := r.m;
					IF r.part = 1 THEN
						shown := shown + 1;
						seg_lines := seg_lines || CASE r.kind
							WHEN 'mix' THEN pg_catalog.format('  %s (share): %s points; share of closed deals %s -> %s, at a baseline win rate of %s (%s overall), q %s',
								r.driver, dealrisk._pts(r.contribution), dealrisk._pct(r.s0), dealrisk._pct(r.s1),
								dealrisk._pct(r.r0), dealrisk._pct(r.rate0),
								CASE WHEN r.q_value < 0.001 THEN '< 0.001' ELSE '= ' || pg_catalog.to_char(r.q_value, 'FM0.000') END)
							WHEN 'overall' THEN pg_catalog.format('  every segment alike: %s points beyond the causes above, q %s',
								dealrisk._pts(r.contribution),
								CASE WHEN r.q_value < 0.001 THEN '< 0.001' ELSE '= ' || pg_catalog.to_char(r.q_value, 'FM0.000') END)
							ELSE pg_catalog.format('  %s: %s points; its win rate %s -> %s, %s points with the other dimensions held fixed, q %s',
								r.driver, dealrisk._pts(r.contribution), dealrisk._pct(r.r0), dealrisk._pct(r.r1),
								dealrisk._pts(r.effect),
								CASE WHEN r.q_value < 0.001 THEN '< 0.001' ELSE '= ' || pg_catalog.to_char(r.q_value, 'FM0.000') END) END;
						top_drag := coalesce(top_drag || ', ', '') || pg_catalog.format('%s (%s points%s)',
							CASE r.kind WHEN 'mix' THEN r.driver || '''s share' WHEN 'overall' THEN 'every segment alike' ELSE r.driver END,
							dealrisk._pts(r.contribution),
							CASE WHEN cur.p_value < 0.05 AND r.contribution * r.change > 0
								 THEN pg_catalog.format(', %s%% of the change', pg_catalog.round((100 * r.contribution / r.change)::numeric))
								 ELSE '' END);
						remainder := coalesce(remainder, r.change) - r.contribution;
					ELSIF r.part = 2 THEN
						n_shadows := n_shadows + 1;
						IF n_shadows <= 5 THEN
							shadow_list := shadow_list || pg_catalog.format('%s: %s points, explained by %s (%s after accounting for it)',
								r.driver, dealrisk._pts(r.contribution), r.expl, dealrisk._pts(r.effect));
						END IF;
					ELSE
						remainder := coalesce(remainder, r.change);
					END IF;
				END LOOP;
				lines := lines || pg_catalog.format('Segments dragging the win rate, %s vs %s: the independent causes, %s, in points of the overall win rate (q = p adjusted for the %s tests of the joint analysis, Benjamini-Hochberg; see docs/diagnostics.md):',
					rq, bq,
					CASE WHEN pg_catalog.cardinality(dims) = 1
						 THEN pg_catalog.format('over %s alone (the source has no other segment column to hold fixed)', dims[1])
						 ELSE pg_catalog.format('each segment''s change with the other dimensions (%s) held fixed',
								pg_catalog.array_to_string(dims, ', ')) END,
					dealrisk._num(n_tests));
				IF shown = 0 THEN
					lines := lines || '  none: no segment changed the win rate once the others are held fixed.'::text;
				ELSE
					lines := lines || seg_lines
						|| pg_catalog.format('  not accounted for by these: %s points.', dealrisk._pts(remainder));
				END IF;
				IF n_shadows > 0 THEN
					lines := lines || pg_catalog.format('  Shadows (significant one segment at a time, explained away): %s%s.',
						pg_catalog.array_to_string(shadow_list, '; '),
						CASE WHEN n_shadows > 5 THEN pg_catalog.format('; and %s more', n_shadows - 5) ELSE '' END);
				END IF;
				IF pg_catalog.cardinality(no_dims) > 0 THEN
					lines := lines || pg_catalog.format('  not analysed: %s (no such column in the source).',
						pg_catalog.array_to_string(no_dims, ', '));
				END IF;
				summary := coalesce(summary || '; ', '') || CASE
					WHEN shown = 0 THEN pg_catalog.format('no segment accounts for it once the others are held fixed (%s tests)', dealrisk._num(n_tests))
					WHEN shown = 1 THEN 'the cause: ' || top_drag
					ELSE 'the causes: ' || top_drag END;
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
				-- (the rows the trend read: _trends gave their cycles too)
				partial_note := '';
				IF has_part THEN
					partial_note := pg_catalog.format(' %s is partial and is not compared.',
						dealrisk._quarter_label(part.period_start));
				END IF;
				IF cur IS NULL OR prev IS NULL THEN
					line := pg_catalog.format('Sales cycle: no closed deals in %s or %s to compare.', rq, bq);
				ELSIF cur.median_days IS NULL OR prev.median_days IS NULL THEN
					line := pg_catalog.format('Sales cycle: no cycle lengths in %s or %s to compare.', rq, bq);
				ELSE
					line := pg_catalog.format('Sales cycle: median %s days in %s vs %s in %s; mean %s vs %s days, %s: %s.',
						pg_catalog.to_char(cur.median_days, 'FM9999990.0'), rq,
						pg_catalog.to_char(prev.median_days, 'FM9999990.0'), bq,
						pg_catalog.to_char(cur.mean_days, 'FM9999990.0'),
						pg_catalog.to_char(prev.mean_days, 'FM9999990.0'),
						dealrisk._pval(cur.cycle_p_value),
						CASE WHEN NOT coalesce(cur.cycle_p_value < 0.05, false) THEN 'no significant change'
							 WHEN cut_off THEN 'not comparable, the difference comes from the cut-off above'
							 WHEN NOT has_created
							 THEN pg_catalog.format('cycles are getting %s, unless the extract was cut off by creation date (without a created_date column that cannot be checked)',
								CASE WHEN cur.mean_days > prev.mean_days THEN 'longer' ELSE 'shorter' END)
							 WHEN cur.mean_days > prev.mean_days THEN 'cycles are getting longer'
							 ELSE 'cycles are getting shorter' END);
				END IF;
				lines := lines || (line || partial_note);
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Sales cycle: not available: ' || SQLERRM);
			END;
		END IF;
	END IF;


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
