-- report.sql: dealrisk.report(), one self-contained HTML page with inline
-- SVG charts of a deal source (issue #12; docs/bi.md#the-report).  No
-- scripts, no external assets: it opens from a file, mails as an
-- attachment and prints.  Every section is computed on its own: one that
-- cannot be read from the data (no closed_date, a funnel deal_stage cannot
-- support, no active model) says why in its place.

-- Text made safe for HTML (element content and quoted attributes).
CREATE FUNCTION dealrisk._html(t text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
	coalesce(t, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;');
COMMENT ON FUNCTION dealrisk._html(text) IS 'Text escaped for HTML content and attributes (internal)';

-- A label cut to n characters (with an ellipsis), escaped: chart labels
-- stay inside their box whatever the data holds.
CREATE FUNCTION dealrisk._svg_label(t text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN dealrisk._html(CASE WHEN pg_catalog.length(coalesce(t, '')) OPERATOR(pg_catalog.>) n
                           THEN pg_catalog.left(t, n OPERATOR(pg_catalog.-) 1) OPERATOR(pg_catalog.||) '…'
                           ELSE coalesce(t, '') END);
COMMENT ON FUNCTION dealrisk._svg_label(text, int) IS 'A chart label cut to n characters and escaped (internal)';

-- An amount in words of thousands or millions, e.g. 21.1M (internal).
CREATE FUNCTION dealrisk._money(v numeric)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN v IS NULL OR v OPERATOR(pg_catalog.=) ANY ('{NaN,Infinity,-Infinity}'::numeric[]) THEN 'n/a'
            WHEN pg_catalog.abs(v) OPERATOR(pg_catalog.>=) 1e6 THEN pg_catalog.round(v / 1e6, 1)::text OPERATOR(pg_catalog.||) 'M'
            WHEN pg_catalog.abs(v) OPERATOR(pg_catalog.>=) 1e3 THEN pg_catalog.round(v / 1e3, 1)::text OPERATOR(pg_catalog.||) 'k'
            ELSE pg_catalog.round(v)::text END;
COMMENT ON FUNCTION dealrisk._money(numeric) IS 'An amount as 21.1M, 640.2k or 950 (internal)';

-- The section of the report that could not be computed: its title and why.
CREATE FUNCTION dealrisk._report_why(id text, title text, why text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN '<section id="' OPERATOR(pg_catalog.||) id OPERATOR(pg_catalog.||) '"><h2>' OPERATOR(pg_catalog.||) dealrisk._html(title)
	OPERATOR(pg_catalog.||) '</h2><p class="why">' OPERATOR(pg_catalog.||) dealrisk._html(why) OPERATOR(pg_catalog.||) '</p></section>';
COMMENT ON FUNCTION dealrisk._report_why(text, text, text) IS 'A report section that says why it is missing (internal)';

CREATE FUNCTION dealrisk.report(source regclass DEFAULT NULL, model text DEFAULT 'default', history regclass DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	src regclass := source;
	mdl text := model;
	asof date := dealrisk._as_of();
	html text := '';
	svg text;
	msg text;
	r record;
	n int;
	i int;
	x float8;
	y float8;
	w float8;
	top float8;
	bottom float8;
	pts text;
	band_hi text;
	band_lo text;
	labels text;
	head record;
	has_model boolean;
	cum float8;
	vmax float8;
	vmin float8;
	section_html text;
	bins bigint[];
	names text[];
	kinds text[];
	contribs float8[];
	descs text[];
	mids float8[];
	lows float8[];
	highs float8[];
BEGIN
	IF src IS NULL THEN
		SELECT t.source, t.model INTO src, mdl FROM dealrisk._bi_target() t;
	END IF;
	PERFORM dealrisk._check_source(src, ARRAY['outcome']);
	has_model := EXISTS (SELECT 1 FROM dealrisk.models m WHERE m.name OPERATOR(pg_catalog.=) mdl AND m.active);

	-- 1. Headline numbers with their uncertainty
	BEGIN
		EXECUTE pg_catalog.format($q$
			SELECT pg_catalog.count(*) AS deals,
			       pg_catalog.count(*) FILTER (WHERE x.cls IN ('won', 'lost')) AS closed,
			       pg_catalog.count(*) FILTER (WHERE x.cls OPERATOR(pg_catalog.=) 'open') AS open,
			       dealrisk.win_rate_ci(CASE x.cls WHEN 'won' THEN true WHEN 'lost' THEN false END) AS ci
			FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls FROM %s d) x$q$, src)
			INTO head;
		section_html := pg_catalog.format(
			'<div class="kpi"><div class="v">%s%%</div><div class="l">win rate of %s closed deals<br>95%% interval %s%%–%s%%</div></div>'
			'<div class="kpi"><div class="v">%s</div><div class="l">open deals</div></div>',
			pg_catalog.round((100 * (head.ci).rate)::numeric, 1), head.closed,
			pg_catalog.round((100 * (head.ci).ci_low)::numeric, 1), pg_catalog.round((100 * (head.ci).ci_high)::numeric, 1),
			head.open);
		SELECT * INTO r FROM dealrisk.win_rate_trend(src, 'quarter') t WHERE NOT t.is_partial ORDER BY t.period_start DESC LIMIT 1;
		IF FOUND THEN
			section_html := section_html || pg_catalog.format(
				'<div class="kpi"><div class="v">%s%%</div><div class="l">%s win rate, %s points on the quarter before%s</div></div>',
				pg_catalog.round((100 * r.win_rate)::numeric, 1), pg_catalog.to_char(r.period_start, 'YYYY-"Q"Q'),
				coalesce(pg_catalog.to_char(100 * r.change, 'FMSG990.0'), 'n/a'),
				CASE WHEN r.p_value < 0.001 THEN ' (p &lt; 0.001)' WHEN r.p_value IS NOT NULL
				     THEN pg_catalog.format(' (p = %s)', pg_catalog.round(r.p_value::numeric, 3)) ELSE '' END);
		END IF;
		html := html || '<section id="headline"><h2>Headline</h2><div class="kpis">' || section_html || '</div></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('headline', 'Headline', msg);
	END;

	-- 2. Win-rate trend with its 95% band (the partial quarter hollow)
	BEGIN
		SELECT pg_catalog.count(*) INTO n FROM dealrisk.win_rate_trend(src, 'quarter');
		IF n < 2 THEN
			RAISE EXCEPTION 'fewer than two quarters of closed deals: no trend to draw';
		END IF;
		pts := ''; band_hi := ''; band_lo := ''; labels := ''; svg := '';
		FOR r IN SELECT t.*, pg_catalog.row_number() OVER (ORDER BY t.period_start) - 1 AS k
		         FROM (SELECT * FROM dealrisk.win_rate_trend(src, 'quarter') ORDER BY period_start DESC LIMIT 12) t
		         ORDER BY t.period_start LOOP
			x := 70 + r.k * 780.0 / greatest(least(n, 12) - 1, 1);
			y := 250 - 210 * r.win_rate;
			pts := pts || pg_catalog.format('%s,%s ', pg_catalog.round(x::numeric, 1), pg_catalog.round(y::numeric, 1));
			band_hi := band_hi || pg_catalog.format('%s,%s ', pg_catalog.round(x::numeric, 1), pg_catalog.round((250 - 210 * r.ci_high)::numeric, 1));
			band_lo := pg_catalog.format('%s,%s ', pg_catalog.round(x::numeric, 1), pg_catalog.round((250 - 210 * r.ci_low)::numeric, 1)) || band_lo;
			svg := svg || pg_catalog.format('<circle cx="%s" cy="%s" r="4" class="%s"/><text x="%s" y="%s" class="val">%s%%</text>',
				pg_catalog.round(x::numeric, 1), pg_catalog.round(y::numeric, 1), CASE WHEN r.is_partial THEN 'partial' ELSE 'dot' END,
				pg_catalog.round(x::numeric, 1), pg_catalog.round((y - 10)::numeric, 1), pg_catalog.round((100 * r.win_rate)::numeric, 0));
			labels := labels || pg_catalog.format('<text x="%s" y="272" class="axis">%s</text>', pg_catalog.round(x::numeric, 1),
				pg_catalog.to_char(r.period_start, 'YYYY-"Q"Q') || CASE WHEN r.is_partial THEN '*' ELSE '' END);
		END LOOP;
		html := html || '<section id="trend"><h2>Win rate by quarter</h2>'
			|| '<svg class="chart" data-chart="trend" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Win rate by quarter with its 95% interval">'
			|| '<line x1="60" y1="250" x2="870" y2="250" class="grid"/><line x1="60" y1="145" x2="870" y2="145" class="grid"/><line x1="60" y1="40" x2="870" y2="40" class="grid"/>'
			|| '<text x="52" y="254" class="yaxis">0%</text><text x="52" y="149" class="yaxis">50%</text><text x="52" y="44" class="yaxis">100%</text>'
			|| pg_catalog.format('<polygon points="%s%s" class="band"/>', band_hi, band_lo)
			|| pg_catalog.format('<polyline points="%s" class="line"/>', pts) || svg || labels || '</svg>'
			|| '<p class="note">Shaded: 95% Wilson interval. * the quarter is still under way: not a drop.</p></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('trend', 'Win rate by quarter', msg);
	END;

	-- 3. The funnel, or the reason it cannot be read; with a stage history,
	-- read from it (the share of the decided deals that moved on)
	BEGIN
		-- (with a history: the stages its deals entered, and whether deals
		-- of the source were left out for having none)
		SELECT pg_catalog.count(*), pg_catalog.max(f.reached),
		       CASE WHEN history IS NULL THEN pg_catalog.max(f.caveat)
		            ELSE pg_catalog.split_part(pg_catalog.min(f.caveat) FILTER (WHERE f.caveat LIKE '%no stage history%'), ';', 1) END
		INTO n, vmax, msg
		FROM dealrisk.funnel(src, NULL, history) f WHERE history IS NULL OR f.reached > 0;
		IF n = 0 THEN
			RAISE EXCEPTION 'no stages to draw';
		END IF;
		svg := '';
		FOR r IN SELECT f.stage, f.reached, coalesce(f.conversion, f.conversion_to_next) AS conversion_to_next,
		                pg_catalog.row_number() OVER (ORDER BY f."position") - 1 AS k
		         FROM dealrisk.funnel(src, NULL, history) f WHERE history IS NULL OR f.reached > 0
		         ORDER BY f."position" LIMIT 10 LOOP
			w := 560 * r.reached / greatest(vmax, 1);
			svg := svg || pg_catalog.format(
				'<text x="150" y="%s" class="lab">%s</text><rect x="160" y="%s" width="%s" height="20" class="bar"/>'
				'<text x="%s" y="%s" class="vall">%s%s</text>',
				32 + r.k * 28, dealrisk._svg_label(r.stage, 20), 18 + r.k * 28, pg_catalog.round(w::numeric, 1),
				pg_catalog.round((166 + w)::numeric, 1), 32 + r.k * 28, r.reached,
				CASE WHEN r.conversion_to_next IS NOT NULL
				     THEN pg_catalog.format(' (%s%% go on)', pg_catalog.round((100 * r.conversion_to_next)::numeric, 0)) ELSE '' END);
		END LOOP;
		html := html || '<section id="funnel"><h2>Stage funnel' || CASE WHEN history IS NOT NULL THEN ' (from the stage history)' ELSE '' END || '</h2>'
			|| CASE WHEN msg IS NOT NULL THEN '<p class="why">' || dealrisk._html(msg) || '</p>' ELSE '' END
			|| pg_catalog.format('<svg class="chart" data-chart="funnel" viewBox="0 0 900 %s" width="900" height="%s" role="img" aria-label="Deals that reached each stage">',
			                     30 + least(n, 10) * 28, 30 + least(n, 10) * 28)
			|| svg || '</svg></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('funnel', 'Stage funnel', msg);
	END;

	-- 4. The drivers of the latest change, as a waterfall from the baseline
	-- win rate through each driver and the remainder to the recent one
	BEGIN
		-- one call of drivers(): the total's two rates, then each row's
		-- name, contribution and sentence
		bottom := NULL; top := NULL;
		names := '{}'; contribs := '{}'; descs := '{}'; kinds := '{}';
		FOR r IN SELECT d.kind, d.driver, d.contribution, d.description, d.baseline_win_rate, d.recent_win_rate
		         FROM dealrisk.drivers(src) WITH ORDINALITY d(rank, kind, driver, dims, segments, baseline_closed,
		               baseline_win_rate, baseline_share, recent_closed, recent_win_rate, recent_share, effect, contribution,
		               ci_low, ci_high, p_value, q_value, explains, description, o)
		         ORDER BY d.o LOOP
			IF r.kind OPERATOR(pg_catalog.=) 'total' THEN
				bottom := r.baseline_win_rate;
				top := r.recent_win_rate;
			ELSE
				names := names || coalesce(r.driver, r.kind);
				contribs := contribs || coalesce(r.contribution, 0);
				kinds := kinds || r.kind;
			END IF;
			descs := descs || r.description;
		END LOOP;
		IF bottom IS NULL OR top IS NULL THEN
			RAISE EXCEPTION 'no change of the win rate to explain';
		END IF;
		-- the axis: every running total of the waterfall, with a margin
		vmin := least(bottom, top);
		vmax := greatest(bottom, top);
		cum := bottom;
		FOR i IN 1 .. coalesce(pg_catalog.array_length(contribs, 1), 0) LOOP
			cum := cum + contribs[i];
			vmin := least(vmin, cum);
			vmax := greatest(vmax, cum);
		END LOOP;
		n := coalesce(pg_catalog.array_length(contribs, 1), 0);
		vmin := greatest(0, vmin - 0.02); vmax := least(1, vmax + 0.02);
		n := least(n, 8) + 2;
		w := 800.0 / n;
		svg := pg_catalog.format('<rect x="%s" y="%s" width="%s" height="%s" class="total"/><text x="%s" y="272" class="axis">baseline</text>'
			'<text x="%s" y="%s" class="val">%s%%</text>',
			70, pg_catalog.round((250 - 210 * (bottom - vmin) / (vmax - vmin))::numeric, 1), pg_catalog.round((w * 0.7)::numeric, 1),
			pg_catalog.round((210 * (bottom - vmin) / (vmax - vmin))::numeric, 1), pg_catalog.round((70 + w * 0.35)::numeric, 1),
			pg_catalog.round((70 + w * 0.35)::numeric, 1), pg_catalog.round((244 - 210 * (bottom - vmin) / (vmax - vmin))::numeric, 1),
			pg_catalog.round((100 * bottom)::numeric, 1));
		cum := bottom;
		FOR i IN 1 .. least(coalesce(pg_catalog.array_length(contribs, 1), 0), 8) LOOP
			x := 70 + i * w;
			y := 250 - 210 * (greatest(cum, cum + contribs[i]) - vmin) / (vmax - vmin);
			svg := svg || pg_catalog.format('<rect x="%s" y="%s" width="%s" height="%s" class="%s"/><text x="%s" y="272" class="axis">%s</text>'
				'<text x="%s" y="%s" class="val">%s</text>',
				pg_catalog.round(x::numeric, 1), pg_catalog.round(y::numeric, 1), pg_catalog.round((w * 0.7)::numeric, 1),
				pg_catalog.round(greatest(1, 210 * pg_catalog.abs(contribs[i]) / (vmax - vmin))::numeric, 1),
				-- a segment's own rate moved: solid; its share of the deals
				-- (mix) moved: light; the remainder: grey
				CASE WHEN kinds[i] OPERATOR(pg_catalog.=) 'remainder' THEN 'rest'
				     WHEN kinds[i] OPERATOR(pg_catalog.=) 'mix' THEN CASE WHEN contribs[i] < 0 THEN 'downmix' ELSE 'upmix' END
				     ELSE CASE WHEN contribs[i] < 0 THEN 'down' ELSE 'up' END END,
				pg_catalog.round((x + w * 0.35)::numeric, 1), dealrisk._svg_label(names[i], (w / 6.5)::int),
				pg_catalog.round((x + w * 0.35)::numeric, 1), pg_catalog.round((y - 6)::numeric, 1),
				pg_catalog.to_char(100 * contribs[i], 'FMSG990.0'));
			cum := cum + contribs[i];
		END LOOP;
		x := 70 + (n - 1) * w;
		svg := svg || pg_catalog.format('<rect x="%s" y="%s" width="%s" height="%s" class="total"/><text x="%s" y="272" class="axis">recent</text>'
			'<text x="%s" y="%s" class="val">%s%%</text>',
			pg_catalog.round(x::numeric, 1), pg_catalog.round((250 - 210 * (top - vmin) / (vmax - vmin))::numeric, 1),
			pg_catalog.round((w * 0.7)::numeric, 1), pg_catalog.round((210 * (top - vmin) / (vmax - vmin))::numeric, 1),
			pg_catalog.round((x + w * 0.35)::numeric, 1), pg_catalog.round((x + w * 0.35)::numeric, 1),
			pg_catalog.round((244 - 210 * (top - vmin) / (vmax - vmin))::numeric, 1), pg_catalog.round((100 * top)::numeric, 1));
		html := html || '<section id="drivers"><h2>What moved the win rate</h2>'
			|| '<svg class="chart" data-chart="drivers" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Waterfall from the baseline to the recent win rate">'
			|| svg || '</svg>'
			|| pg_catalog.format('<p class="note">Percentage points of the overall win rate (axis from %s%% to %s%%); each driver holds the other dimensions fixed. Solid: the segment''s own win rate moved (rate); light: its share of the deals moved (mix); grey: the remainder.</p>',
			                     pg_catalog.round((100 * vmin)::numeric, 0), pg_catalog.round((100 * vmax)::numeric, 0))
			|| '<ul class="drivers">' || coalesce((SELECT pg_catalog.string_agg('<li>' || dealrisk._html(t.d) || '</li>', '' ORDER BY t.o)
			      FROM pg_catalog.unnest(descs) WITH ORDINALITY t(d, o)), '') || '</ul></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('drivers', 'What moved the win rate', msg);
	END;

	-- 5. Cycle length by quarter
	BEGIN
		SELECT pg_catalog.count(*), pg_catalog.max(c.p75_days) INTO n, vmax FROM dealrisk.cycle_trend(src, 'quarter') c;
		IF n < 2 THEN
			RAISE EXCEPTION 'fewer than two quarters of closed deals: no trend to draw';
		END IF;
		pts := ''; svg := ''; labels := '';
		FOR r IN SELECT t.*, pg_catalog.row_number() OVER (ORDER BY t.period_start) - 1 AS k
		         FROM (SELECT * FROM dealrisk.cycle_trend(src, 'quarter') ORDER BY period_start DESC LIMIT 12) t
		         ORDER BY t.period_start LOOP
			x := 70 + r.k * 780.0 / greatest(least(n, 12) - 1, 1);
			y := 250 - 210 * r.median_days / greatest(vmax, 1);
			pts := pts || pg_catalog.format('%s,%s ', pg_catalog.round(x::numeric, 1), pg_catalog.round(y::numeric, 1));
			svg := svg || pg_catalog.format('<circle cx="%s" cy="%s" r="4" class="%s"/><text x="%s" y="%s" class="val">%s</text>',
				pg_catalog.round(x::numeric, 1), pg_catalog.round(y::numeric, 1), CASE WHEN r.is_partial THEN 'partial' ELSE 'dot' END,
				pg_catalog.round(x::numeric, 1), pg_catalog.round((y - 10)::numeric, 1), pg_catalog.round(r.median_days::numeric, 0));
			labels := labels || pg_catalog.format('<text x="%s" y="272" class="axis">%s</text>', pg_catalog.round(x::numeric, 1),
				pg_catalog.to_char(r.period_start, 'YYYY-"Q"Q') || CASE WHEN r.is_partial THEN '*' ELSE '' END);
		END LOOP;
		html := html || '<section id="cycle"><h2>Sales cycle: median days from creation to close</h2>'
			|| '<svg class="chart" data-chart="cycle" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Median sales cycle by quarter">'
			|| '<line x1="60" y1="250" x2="870" y2="250" class="grid"/>'
			|| pg_catalog.format('<polyline points="%s" class="line"/>', pts) || svg || labels || '</svg></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('cycle', 'Sales cycle', msg);
	END;

	-- 6. Open deals: the distribution of their risk, and the riskiest
	BEGIN
		IF NOT has_model THEN
			RAISE EXCEPTION 'no active model named "%": train one (dealrisk.train(''%'')) to see the risk of the open deals', mdl, dealrisk._source_name(src);
		END IF;
		-- open deals per tenth of the risk scale
		EXECUTE pg_catalog.format($q$
			SELECT pg_catalog.array_agg(coalesce(c.c, 0) ORDER BY g.b), coalesce(pg_catalog.sum(c.c), 0)
			FROM pg_catalog.generate_series(0, 9) g(b)
			LEFT JOIN (SELECT least(pg_catalog.floor(dealrisk.deal_risk(d, $1) / 10), 9)::int AS b, pg_catalog.count(*) AS c
			           FROM %s d WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
			           GROUP BY 1) c ON c.b OPERATOR(pg_catalog.=) g.b$q$, src)
			INTO bins, n USING mdl;
		IF n = 0 THEN
			RAISE EXCEPTION 'no open deals';
		END IF;
		SELECT pg_catalog.max(b) INTO vmax FROM pg_catalog.unnest(bins) b;
		svg := '';
		FOR i IN 0 .. 9 LOOP
			x := 70 + i * 80;
			y := 250 - 200 * bins[i + 1] / greatest(vmax, 1);
			svg := svg || pg_catalog.format('<rect x="%s" y="%s" width="70" height="%s" class="%s"/><text x="%s" y="%s" class="val">%s</text>'
				'<text x="%s" y="272" class="axis">%s–%s</text>',
				x, pg_catalog.round(y::numeric, 1), pg_catalog.round((250 - y)::numeric, 1),
				CASE WHEN i >= 6 THEN 'down' ELSE 'bar' END, x + 35, pg_catalog.round((y - 6)::numeric, 1), bins[i + 1],
				x + 35, i * 10, i * 10 + 10);
		END LOOP;
		html := html || '<section id="risk"><h2>Risk of the open deals</h2>'
			|| '<svg class="chart" data-chart="risk" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Open deals by risk">'
			|| svg || '</svg>'
			|| pg_catalog.format('<p class="note">%s open deals by risk score (0–100) under model %s; red: 60 or more.</p>', n, dealrisk._html(mdl));
		-- the riskiest ten, with their reasons and actions
		EXECUTE pg_catalog.format($q$
			SELECT pg_catalog.string_agg(pg_catalog.format('<tr><td>%%s</td><td>%%s</td><td class="num">%%s</td><td class="num">%%s</td><td>%%s</td><td>%%s</td></tr>',
			           dealrisk._html(t.deal_id), dealrisk._html(t.rep), dealrisk._money(t.amount), pg_catalog.round(t.risk::numeric, 1),
			           dealrisk._html((SELECT e.reason FROM dealrisk.deal_risk_explain(t.d, $1) e LIMIT 1)),
			           dealrisk._html(dealrisk.recommended_action(t.d, $1))), '' ORDER BY t.risk DESC, t.deal_id)
			FROM (SELECT d.deal_id::text AS deal_id, %s AS rep, %s AS amount, dealrisk.deal_risk(d, $1) AS risk, d AS d
			      FROM %s d WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
			      ORDER BY 4 DESC, 1 LIMIT 10) t$q$,
			CASE WHEN dealrisk._has_column(src, 'sales_rep_id') THEN 'd.sales_rep_id::text' ELSE 'NULL::text' END,
			CASE WHEN dealrisk._has_column(src, 'deal_amount') THEN 'd.deal_amount::numeric' ELSE 'NULL::numeric' END, src)
			INTO section_html USING mdl;
		html := html || '<h3>The riskiest open deals</h3><table><thead><tr><th>deal</th><th>rep</th><th>amount</th><th>risk</th><th>main reason</th><th>recommended action</th></tr></thead><tbody>'
			|| coalesce(section_html, '') || '</tbody></table></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('risk', 'Risk of the open deals', msg);
	END;

	-- 7. The forecast of the next 90 days by month of expected close
	BEGIN
		IF NOT has_model THEN
			RAISE EXCEPTION 'no active model named "%": the forecast needs one', mdl;
		END IF;
		-- one call of forecast(): the total, and the first eight months
		names := '{}'; mids := '{}'; lows := '{}'; highs := '{}';
		FOR r IN SELECT * FROM dealrisk.forecast(src, 'close_month', interval '90 days', NULL, mdl) f
		         ORDER BY f.is_total, f.group_value LOOP
			IF r.is_total THEN
				head := r;
			ELSIF r.group_value IS NOT NULL AND coalesce(pg_catalog.array_length(names, 1), 0) < 8 THEN
				names := names || r.group_value;
				mids := mids || r.expected_won_value::float8;
				lows := lows || r.won_value_low::float8;
				highs := highs || r.won_value_high::float8;
			END IF;
		END LOOP;
		SELECT pg_catalog.max(h) INTO vmax FROM pg_catalog.unnest(highs) h;
		svg := '';
		FOR i IN 0 .. coalesce(pg_catalog.array_length(names, 1), 0) - 1 LOOP
			x := 90 + i * 100;
			y := 250 - 200 * mids[i + 1] / greatest(vmax, 1);
			svg := svg || pg_catalog.format('<rect x="%s" y="%s" width="60" height="%s" class="bar"/>'
				'<line x1="%s" y1="%s" x2="%s" y2="%s" class="whisker"/><text x="%s" y="%s" class="val">%s</text>'
				'<text x="%s" y="272" class="axis">%s</text>',
				x, pg_catalog.round(y::numeric, 1), pg_catalog.round((250 - y)::numeric, 1),
				x + 30, pg_catalog.round((250 - 200 * lows[i + 1] / greatest(vmax, 1))::numeric, 1),
				x + 30, pg_catalog.round((250 - 200 * highs[i + 1] / greatest(vmax, 1))::numeric, 1),
				x + 30, pg_catalog.round((244 - 200 * highs[i + 1] / greatest(vmax, 1))::numeric, 1), dealrisk._money(mids[i + 1]::numeric),
				x + 30, dealrisk._html(names[i + 1]));
		END LOOP;
		html := html || '<section id="forecast"><h2>Forecast: the next 90 days</h2>'
			|| pg_catalog.format('<div class="kpis"><div class="kpi"><div class="v">%s</div><div class="l">expected won value of a %s pipeline<br>90%% interval %s – %s</div></div>'
			                     '<div class="kpi"><div class="v">%s</div><div class="l">expected wins (%s – %s)</div></div></div>',
			                     dealrisk._money(head.expected_won_value), dealrisk._money(head.pipeline_value),
			                     dealrisk._money(head.won_value_low), dealrisk._money(head.won_value_high),
			                     pg_catalog.round(head.expected_wins::numeric, 0), head.wins_low, head.wins_high)
			|| '<svg class="chart" data-chart="forecast" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Expected won value by month of expected close">'
			|| svg || '</svg>'
			|| pg_catalog.format('<p class="note">Bars: expected won value by month of expected close; lines: 90%% interval. %s. Backtested on the sample''s history the actual won value came to 0.86 of the forecast (docs/model.md).</p>',
			                     dealrisk._html(head.interval_method))
			|| '</section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('forecast', 'Forecast: the next 90 days', msg);
	END;

	-- 8. The model's calibration on its holdout
	BEGIN
		IF NOT has_model THEN
			RAISE EXCEPTION 'no active model named "%"', mdl;
		END IF;
		svg := '<line x1="70" y1="250" x2="290" y2="30" class="diag"/><line x1="70" y1="250" x2="290" y2="250" class="grid"/><line x1="70" y1="250" x2="70" y2="30" class="grid"/>'
			|| '<text x="180" y="272" class="axis">predicted win %</text><text x="62" y="34" class="yaxis">100</text><text x="62" y="254" class="yaxis">0</text>';
		n := 0;
		FOR r IN SELECT (c.v OPERATOR(pg_catalog.->>) 'predicted')::float8 AS p, (c.v OPERATOR(pg_catalog.->>) 'observed')::float8 AS o
		         FROM dealrisk.models m
		         CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
		             CASE WHEN pg_catalog.jsonb_typeof(m.metrics OPERATOR(pg_catalog.->) 'calibration') OPERATOR(pg_catalog.=) 'array'
		                  THEN m.metrics OPERATOR(pg_catalog.->) 'calibration' ELSE '[]'::jsonb END) c(v)
		         WHERE m.name OPERATOR(pg_catalog.=) mdl AND m.active LOOP
			svg := svg || pg_catalog.format('<circle cx="%s" cy="%s" r="5" class="dot"/>',
				pg_catalog.round((70 + 220 * r.p)::numeric, 1), pg_catalog.round((250 - 220 * r.o)::numeric, 1));
			n := n + 1;
		END LOOP;
		IF n = 0 THEN
			RAISE EXCEPTION 'model "%" has no calibration on a holdout (imported?)', mdl;
		END IF;
		html := html || '<section id="calibration"><h2>Is the model calibrated?</h2>'
			|| '<svg class="chart" data-chart="calibration" viewBox="0 0 900 290" width="900" height="290" role="img" aria-label="Predicted against observed win rate by decile">'
			|| svg || '<text x="330" y="120" class="labl">Each dot: a tenth of the holdout deals,</text>'
			|| '<text x="330" y="140" class="labl">predicted (across) against observed (up) win rate.</text>'
			|| '<text x="330" y="160" class="labl">On the diagonal: the model means what it says.</text></svg></section>';
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
		html := html || dealrisk._report_why('calibration', 'Is the model calibrated?', msg);
	END;

	RETURN '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>dealrisk report: ' || dealrisk._html(dealrisk._source_name(src)) || '</title>'
		|| '<style>body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:940px;margin:24px auto;color:#1d2733;padding:0 10px}'
		|| 'h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dee6;padding-bottom:4px}h3{font-size:15px}'
		|| '.sub{color:#5b6b7c;font-size:13px}.kpis{display:flex;flex-wrap:wrap;gap:12px}.kpi{border:1px solid #d8dee6;border-radius:6px;padding:10px 14px;min-width:200px;flex:1}'
		|| '.kpi .v{font-size:26px;font-weight:600}.kpi .l{font-size:12px;color:#5b6b7c}.why{background:#fff6e5;border-left:4px solid #e0a100;padding:8px 12px;font-size:14px}'
		|| '.note{font-size:12px;color:#5b6b7c}svg.chart{display:block;max-width:100%;height:auto}svg text{font-size:11px;fill:#1d2733}'
		|| 'svg .axis,svg .val{text-anchor:middle}svg .yaxis,svg .lab{text-anchor:end}svg .vall,svg .labl{text-anchor:start}svg .grid{stroke:#d8dee6}svg .line{fill:none;stroke:#1f6feb;stroke-width:2}'
		|| 'svg .band{fill:#1f6feb;opacity:.15}svg .dot{fill:#1f6feb}svg .partial{fill:#fff;stroke:#1f6feb;stroke-width:2}svg .bar{fill:#6e9fd8}'
		|| 'svg .down{fill:#d1495b}svg .up{fill:#2e9d6a}svg .downmix{fill:#eba3ad}svg .upmix{fill:#97cfb5}svg .rest{fill:#b8c2cc}svg .total{fill:#5b6b7c}svg .whisker{stroke:#1d2733;stroke-width:2}svg .diag{stroke:#9aa7b4;stroke-dasharray:4 4}'
		|| 'table{border-collapse:collapse;width:100%;font-size:12px}td,th{border-bottom:1px solid #e4e9ef;padding:4px 6px;text-align:left;vertical-align:top}td.num{text-align:right}'
		|| 'ul.drivers{font-size:13px}@media print{body{margin:0}section{break-inside:avoid}}</style></head><body>'
		|| '<h1>Why are we winning less? ' || dealrisk._html(dealrisk._source_name(src)) || '</h1>'
		|| pg_catalog.format('<p class="sub">dealrisk report as of %s, generated %s.</p>', asof,
		                     pg_catalog.to_char(pg_catalog.now(), 'YYYY-MM-DD HH24:MI TZ'))
		|| html || '</body></html>';
END
$fn$;
COMMENT ON FUNCTION dealrisk.report(regclass, text, regclass) IS
	'One self-contained HTML page (inline SVG, no scripts, no external assets) on a deal source (NULL: the source of dealrisk_bi): headline numbers with their uncertainty, win-rate trend with its 95% band, funnel (from the stage history when history is given), drivers as a waterfall, cycle trend, risk of the open deals and the riskiest ones with reasons and actions, the 90-day forecast and the model''s calibration; a section that cannot be read from the data says why';
