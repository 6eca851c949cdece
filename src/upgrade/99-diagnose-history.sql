-- diagnose(source, history): with a stage history it reads the funnel, the
-- steps over time, stalls and gaming from it (issue #14).  A second
-- argument with a default: 0.3.0's diagnose(regclass) is dropped, and
-- diagnose('deals') calls the new one.
DROP FUNCTION dealrisk.diagnose(regclass);
CREATE FUNCTION dealrisk.diagnose(source regclass, history regclass DEFAULT NULL)
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
		IF history IS NOT NULL THEN
			-- a stage history: the funnel, its steps over time, stalls and
			-- gaming read from it (deal_stage is not needed)
			lines := lines || dealrisk._diagnose_history(source, history);
		ELSIF dealrisk._has_column(source, 'deal_stage') THEN
			-- the preflight's verdict when it got as far as reading the rows
			why_no_funnel := CASE WHEN coalesce(pre_ran, false) THEN pre_semantics
								  ELSE dealrisk._stage_semantics(source) END;
		END IF;
		IF history IS NOT NULL THEN
			NULL;
		ELSIF why_no_funnel IS NOT NULL THEN
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
							   ef.rate_effect + ef.mix_effect AS marginal,
							   dealrisk.two_proportion_p(a.recent_won, a.recent_closed, a.baseline_won, a.baseline_closed) AS pv,
							   pg_catalog.row_number() OVER (ORDER BY a.id)::int AS j
						FROM a, t,
							 LATERAL dealrisk._segment_effects(a.baseline_closed, a.baseline_won, a.recent_closed, a.recent_won,
															   t.n0, t.w0, t.n1) ef
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
COMMENT ON FUNCTION dealrisk.diagnose(regclass, regclass) IS
	'A plain-English report on a deal source: the errors and warnings of check_source(), win rate and its trend over complete quarters, where the funnel loses deals (or why deal_stage cannot tell), late-stage losses; with a stage history, the funnel read from it, the steps whose conversion changed between quarters, stalled open deals and reps whose stage moves stand out; the segments that drag the win rate (q-values over all segments tested) and the sales-cycle trend; a section whose columns the source lacks says so';
