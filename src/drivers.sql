-- drivers.sql: the joint driver analysis (src/drivers.c): which segments
-- changed the win rate once the other dimensions are held fixed, which
-- apparent changes are the shadows of those, and dealrisk.drivers(), the
-- ranked list of independent causes.  docs/diagnostics.md explains the
-- method and why it was chosen.

-- The recent and baseline windows of a comparison: as given, recent
-- defaulting to the last complete quarter of closed deals and baseline to
-- the window of the same length just before recent.
CREATE FUNCTION dealrisk._comparison_windows(source regclass, INOUT recent daterange, INOUT baseline daterange)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	win			record;
BEGIN
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
		baseline := pg_catalog.daterange(
			pg_catalog.lower(recent) - (pg_catalog.upper(recent) - pg_catalog.lower(recent)),
			pg_catalog.lower(recent));
	END IF;
	IF recent && baseline THEN
		RAISE EXCEPTION 'recent window % overlaps baseline window %', recent, baseline
			USING ERRCODE = '22023',
				  HINT = 'The windows are compared as independent samples: make them disjoint.';
	END IF;
END
$fn$;
COMMENT ON FUNCTION dealrisk._comparison_windows(regclass, daterange, daterange) IS
	'The recent and baseline windows of a win-rate comparison: as given, recent defaulting to the last complete quarter and baseline to the window of the same length before recent; errors for empty or overlapping windows (internal)';

-- The joint analysis of a source's closed deals in two windows over the
-- given dimensions (each one column, or several separated by commas): one
-- read of the source builds the cells (window x segment of every
-- dimension) and _drivers_fit does the rest.  One row per candidate:
-- every segment (kinds rate and mix), every cell of two segments that was
-- tested, and the overall change; id 0 is the totals of the windows.
CREATE FUNCTION dealrisk._drivers_fit(nlevels int4[], levels int4[], recent boolean[],
	n int8[], w int8[], fdr float8 DEFAULT 0.05)
RETURNS TABLE(id int, kind text, dim1 int, level1 int, dim2 int, level2 int,
			  n0 bigint, w0 bigint, n1 bigint, w1 bigint, tested boolean, selected boolean,
			  effect float8, effect_low float8, effect_high float8, contribution float8,
			  p_value float8, q_value float8, explained_by int)
AS 'MODULE_PATHNAME', 'dr_drivers_fit'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 1000;
COMMENT ON FUNCTION dealrisk._drivers_fit(int4[], int4[], boolean[], int8[], int8[], float8) IS
	'The joint driver analysis on cells of closed deals (window, level of each dimension, deals, wins): forward-selected change terms in a logistic model with main effects, conditional share tests, Benjamini-Hochberg q-values (internal)';

CREATE FUNCTION dealrisk._driver_analysis(source regclass, dimensions text[],
	recent daterange, baseline daterange, keep int, must_fit boolean)
RETURNS TABLE(id int, kind text, dims text[], segments text[], driver text,
			  baseline_closed bigint, baseline_won bigint, recent_closed bigint, recent_won bigint,
			  tested boolean, selected boolean, effect float8, effect_low float8, effect_high float8,
			  contribution float8, p_value float8, q_value float8, explained_by text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 100
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	nd			int := pg_catalog.cardinality(dimensions);
	keys		text := '';
	labels		text := '';
	cols		text[];
	rec			boolean[];
	cn			int8[];
	cw			int8[];
	ck			text[];
	lev			int4[];
	nlev		int4[];
	lab_d		int[];
	lab_l		int[];
	lab_k		text[];
	n0			bigint;
	w0			bigint;
	n1			bigint;
	w1			bigint;
	drop_d		int;
	fits		boolean;
	max_segments CONSTANT int := 1900;	-- _drivers_fit's DRV_MAX_PARAMS - 1 - DRV_MAX_SELECTED, rounded down
BEGIN
	IF nd IS NULL OR nd = 0 THEN
		RAISE EXCEPTION 'the driver analysis needs at least one dimension'
			USING ERRCODE = '22023';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	FOR i IN 1 .. nd LOOP
		cols := dealrisk._dimension_columns(source, dimensions[i]);
		labels := labels || pg_catalog.format('%spg_catalog.concat_ws(%L, %s)',
			CASE WHEN i > 1 THEN ', ' ELSE '' END, ' / ',
			(SELECT pg_catalog.string_agg(pg_catalog.format('coalesce(d.%I::text, %L)', c, '(missing)'), ', ' ORDER BY o)
			 FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u(c, o)));
	END LOOP;

	-- the one read of the source: the cells
	EXECUTE pg_catalog.format(
		$q$SELECT coalesce(pg_catalog.array_agg(g.r ORDER BY g.k), '{}'),
				  coalesce(pg_catalog.array_agg(g.n ORDER BY g.k), '{}'),
				  coalesce(pg_catalog.array_agg(g.w ORDER BY g.k), '{}'),
				  coalesce(pg_catalog.array_agg(g.k ORDER BY g.k), '{}')
		   FROM (SELECT x.r, x.k, pg_catalog.count(*) AS n, pg_catalog.count(*) FILTER (WHERE x.won) AS w
				 FROM (SELECT d.closed_date::date <@ $1 AS r,
							  dealrisk.is_won(d.outcome::text) AS won,
							  ARRAY[%s] AS k
					   FROM %s AS d
					   WHERE d.closed_date::date <@ $1 OR d.closed_date::date <@ $2) x
				 WHERE x.won IS NOT NULL
				 GROUP BY x.r, x.k) g$q$,
		labels, source::text)
		INTO rec, cn, cw, ck
		USING recent, baseline;

	SELECT coalesce(pg_catalog.sum(u.n) FILTER (WHERE NOT u.r), 0), coalesce(pg_catalog.sum(u.w) FILTER (WHERE NOT u.r), 0),
		   coalesce(pg_catalog.sum(u.n) FILTER (WHERE u.r), 0), coalesce(pg_catalog.sum(u.w) FILTER (WHERE u.r), 0)
		INTO n0, w0, n1, w1
	FROM ROWS FROM (pg_catalog.unnest(rec), pg_catalog.unnest(cn), pg_catalog.unnest(cw)) AS u(r, n, w);
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

	LOOP
		-- segments numbered per dimension in label order
		-- (unnest reads the 2-D array of keys once, in row-major order;
		-- subscripting it per element would walk it from the start every time)
		WITH u AS (
			SELECT (x.o - 1) / nd + 1 AS c, (x.o - 1) % nd + 1 AS d, x.k
			FROM pg_catalog.unnest(ck) WITH ORDINALITY AS x(k, o)
		), r AS (
			SELECT u.c, u.d, u.k, pg_catalog.dense_rank() OVER (PARTITION BY u.d ORDER BY u.k)::int AS l FROM u
		), s AS MATERIALIZED (
			SELECT DISTINCT r.d, r.l, r.k FROM r
		)
		SELECT (SELECT pg_catalog.array_agg(r.l ORDER BY r.c, r.d) FROM r),
			   (SELECT pg_catalog.array_agg(m.l ORDER BY m.d) FROM (SELECT s.d, pg_catalog.max(s.l) AS l FROM s GROUP BY s.d) m),
			   (SELECT pg_catalog.array_agg(s.d ORDER BY s.d, s.l) FROM s),
			   (SELECT pg_catalog.array_agg(s.l ORDER BY s.d, s.l) FROM s),
			   (SELECT pg_catalog.array_agg(s.k ORDER BY s.d, s.l) FROM s)
			INTO lev, nlev, lab_d, lab_l, lab_k;
		fits := (SELECT pg_catalog.sum(x) FROM pg_catalog.unnest(nlev) AS x) <= max_segments;
		EXIT WHEN fits OR (SELECT pg_catalog.sum(x) FROM pg_catalog.unnest(nlev[1:keep]) AS x) > max_segments;
		-- too many segments to hold fixed: leave out the dimension with the
		-- most of them, among those after the first keep
		SELECT u.o INTO drop_d FROM pg_catalog.unnest(nlev) WITH ORDINALITY AS u(x, o)
		WHERE u.o > keep ORDER BY u.x DESC, u.o DESC LIMIT 1;
		EXIT WHEN drop_d IS NULL;
		RAISE NOTICE 'dimension % has % segments: it is not held fixed in the joint driver analysis, which takes at most % segments in all',
			dimensions[drop_d], dealrisk._num(nlev[drop_d]), dealrisk._num(max_segments);
		WITH u AS (
			SELECT (x.o - 1) / nd + 1 AS c, (x.o - 1) % nd + 1 AS d, x.k
			FROM pg_catalog.unnest(ck) WITH ORDINALITY AS x(k, o)
		), kk AS (
			SELECT u.c, pg_catalog.array_agg(u.k ORDER BY u.d) FILTER (WHERE u.d <> drop_d) AS k
			FROM u GROUP BY u.c
		), cc AS (
			SELECT x.o AS c, x.r, x.n, x.w
			FROM ROWS FROM (pg_catalog.unnest(rec), pg_catalog.unnest(cn), pg_catalog.unnest(cw)) WITH ORDINALITY AS x(r, n, w, o)
		), g AS (
			SELECT cc.r, kk.k, pg_catalog.sum(cc.n)::int8 AS n, pg_catalog.sum(cc.w)::int8 AS w
			FROM cc JOIN kk ON kk.c = cc.c GROUP BY cc.r, kk.k
		)
		SELECT pg_catalog.array_agg(g.r ORDER BY g.k, g.r), pg_catalog.array_agg(g.n ORDER BY g.k, g.r),
			   pg_catalog.array_agg(g.w ORDER BY g.k, g.r), pg_catalog.array_agg(g.k ORDER BY g.k, g.r)
			INTO rec, cn, cw, ck
		FROM g;
		dimensions := dimensions[1:drop_d - 1] || dimensions[drop_d + 1:];
		nd := nd - 1;
		drop_d := NULL;
	END LOOP;
	IF NOT fits THEN
		IF must_fit THEN
			RAISE EXCEPTION 'the dimensions % have % segments in all; the joint driver analysis takes at most %',
				dimensions, dealrisk._num((SELECT pg_catalog.sum(x) FROM pg_catalog.unnest(nlev) AS x)::bigint), dealrisk._num(max_segments)
				USING ERRCODE = '54000',
					  HINT = 'Leave out a dimension with many segments, such as a rep or account id.';
		END IF;
		RAISE NOTICE 'the dimensions % have % segments in all: no adjusted effects (the joint driver analysis takes at most %)',
			dimensions, dealrisk._num((SELECT pg_catalog.sum(x) FROM pg_catalog.unnest(nlev) AS x)::bigint), dealrisk._num(max_segments);
	END IF;

	RETURN QUERY
	WITH lab AS (
		SELECT u.d, u.l, u.k FROM ROWS FROM (pg_catalog.unnest(lab_d), pg_catalog.unnest(lab_l), pg_catalog.unnest(lab_k)) AS u(d, l, k)
	), f AS (
		SELECT f.*,
			   CASE WHEN f.dim1 IS NULL THEN NULL
					WHEN f.dim2 IS NULL THEN ARRAY[dimensions[f.dim1]]
					ELSE ARRAY[dimensions[f.dim1], dimensions[f.dim2]] END AS fdims,
			   CASE WHEN f.dim1 IS NULL THEN NULL
					WHEN f.dim2 IS NULL THEN ARRAY[a.k]
					ELSE ARRAY[a.k, b.k] END AS fsegs
		FROM (SELECT * FROM dealrisk._drivers_fit(CASE WHEN fits THEN nlev END, lev, rec, cn, cw)
			  UNION ALL
			  -- too many segments: their counts only, nothing tested
			  SELECT NULL::int, k.kind, s.d, s.l, NULL::int, NULL::int,
					 pg_catalog.sum(cc.n) FILTER (WHERE NOT cc.r)::int8, pg_catalog.sum(cc.w) FILTER (WHERE NOT cc.r)::int8,
					 pg_catalog.sum(cc.n) FILTER (WHERE cc.r)::int8, pg_catalog.sum(cc.w) FILTER (WHERE cc.r)::int8,
					 false, false, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::int
			  FROM (SELECT (x.o - 1) / nd + 1 AS c, (x.o - 1) % nd + 1 AS d, x.l
					FROM pg_catalog.unnest(lev) WITH ORDINALITY AS x(l, o)) s
				   JOIN ROWS FROM (pg_catalog.unnest(rec), pg_catalog.unnest(cn), pg_catalog.unnest(cw))
						WITH ORDINALITY AS cc(r, n, w, o) ON cc.o = s.c
				   CROSS JOIN (VALUES ('rate'), ('mix')) AS k(kind)
			  WHERE NOT fits
			  GROUP BY k.kind, s.d, s.l) f
			 LEFT JOIN lab a ON a.d = f.dim1 AND a.l = f.level1
			 LEFT JOIN lab b ON b.d = f.dim2 AND b.l = f.level2
	), g AS (
		SELECT f.*,
			   CASE WHEN f.dim1 IS NULL THEN 'all deals'
					ELSE (SELECT pg_catalog.string_agg(pg_catalog.format('%s = %s', x.dm, x.sg), ' × ' ORDER BY x.o)
						  FROM ROWS FROM (pg_catalog.unnest(f.fdims), pg_catalog.unnest(f.fsegs)) WITH ORDINALITY AS x(dm, sg, o))
			   END AS label
		FROM f
	)
	SELECT 0, 'total'::text, NULL::text[], NULL::text[], NULL::text, n0, w0, n1, w1, NULL::boolean, NULL::boolean,
		   NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::float8, NULL::text
	UNION ALL
	SELECT g.id, g.kind, g.fdims, g.fsegs, g.label, g.n0, g.w0, g.n1, g.w1, g.tested, g.selected,
		   g.effect, g.effect_low, g.effect_high, g.contribution, g.p_value, g.q_value,
		   CASE e.kind WHEN 'mix' THEN e.label || ' (mix)' WHEN 'overall' THEN 'all deals (overall change)'
					   ELSE e.label END
	FROM g LEFT JOIN g e ON e.id = g.explained_by;
END
$fn$;
COMMENT ON FUNCTION dealrisk._driver_analysis(regclass, text[], daterange, daterange, int, boolean) IS
	'The joint driver analysis of the closed deals of a source in two windows over the given dimensions, in one read of the source: every candidate with its counts, adjusted effect, contribution, p- and q-value and the driver that explains it; row id 0 holds the totals; dimensions after the first keep are left out (NOTICE) while there are too many segments, and then it is an error if must_fit, else segments come with counts only (internal)';

-- A segment's one-at-a-time effects on the change of the win rate: with
-- s its share and r its win rate (0 baseline, 1 recent) and R0 the
-- baseline rate, rate effect s1 (r1 - r0) and mix effect (s1 - s0)(r0 - R0);
-- a segment missing from the baseline takes r0 = R0, one missing from the
-- recent window a rate effect of 0.  Summed over a dimension: R1 - R0.
CREATE FUNCTION dealrisk._segment_effects(bn bigint, bw bigint, rn bigint, rw bigint,
	n0 bigint, w0 bigint, n1 bigint, OUT rate_effect float8, OUT mix_effect float8)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT CASE WHEN rn > 0 THEN (rn::float8 / n1) * (rw::float8 / rn - x.r0) ELSE 0 END,
		   (rn::float8 / n1 - bn::float8 / n0) * (x.r0 - w0::float8 / n0)
	FROM (SELECT coalesce(bw::float8 / NULLIF(bn, 0), w0::float8 / n0) AS r0) x
$fn$;
COMMENT ON FUNCTION dealrisk._segment_effects(bigint, bigint, bigint, bigint, bigint, bigint, bigint) IS
	'A segment''s one-at-a-time rate and mix effects on the change of the win rate between two windows (internal)';

-- The contract's segment dimensions a source has.
CREATE FUNCTION dealrisk._contract_dimensions(source regclass)
RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT coalesce(pg_catalog.array_agg(u.c ORDER BY u.o), '{}')
		FROM pg_catalog.unnest(ARRAY['industry', 'region', 'lead_source', 'product_type', 'sales_rep_id'])
				WITH ORDINALITY AS u(c, o)
		WHERE dealrisk._has_column(source, u.c));
COMMENT ON FUNCTION dealrisk._contract_dimensions(regclass) IS
	'The segment dimensions of the data contract (industry, region, lead_source, product_type, sales_rep_id) that a source has (internal)';

CREATE FUNCTION dealrisk.drivers(source regclass, dimensions text[] DEFAULT NULL,
	recent daterange DEFAULT NULL, baseline daterange DEFAULT NULL)
RETURNS TABLE(rank int, kind text, driver text, dims text[], segments text[],
			  baseline_closed bigint, baseline_win_rate float8, baseline_share float8,
			  recent_closed bigint, recent_win_rate float8, recent_share float8,
			  effect float8, contribution float8, ci_low float8, ci_high float8,
			  p_value float8, q_value float8, explains text[], description text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	dims		text[] := dimensions;
	w			record;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	IF dims IS NULL THEN
		dims := dealrisk._contract_dimensions(source);
		IF pg_catalog.cardinality(dims) = 0 THEN
			RAISE EXCEPTION 'source "%" has none of the columns industry, region, lead_source, product_type, sales_rep_id', dealrisk._source_name(source)
				USING ERRCODE = '42703',
					  HINT = 'Pass the dimensions to analyse, e.g. dimensions => ARRAY[''segment'', ''country''].';
		END IF;
	ELSIF pg_catalog.cardinality(dims) = 0 OR pg_catalog.array_position(dims, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'dimensions must name at least one column and hold no NULL'
			USING ERRCODE = '22023',
				  HINT = 'Pass NULL for every contract dimension the source has.';
	END IF;
	SELECT * INTO w FROM dealrisk._comparison_windows(source, recent, baseline);

	RETURN QUERY
	WITH a AS MATERIALIZED (
		SELECT * FROM dealrisk._driver_analysis(source, dims, w.recent, w.baseline,
			CASE WHEN dimensions IS NULL THEN 0 ELSE pg_catalog.cardinality(dims) END, true)
	), t AS (
		SELECT a.baseline_closed AS n0, a.baseline_won AS w0, a.recent_closed AS n1, a.recent_won AS w1,
			   a.recent_won::float8 / a.recent_closed - a.baseline_won::float8 / a.baseline_closed AS change
		FROM a WHERE a.id = 0
	), c AS (
		SELECT a.*,
			   (SELECT pg_catalog.array_agg(e.driver ORDER BY e.id) FROM a e
				WHERE e.explained_by = CASE a.kind WHEN 'mix' THEN a.driver || ' (mix)'
										WHEN 'overall' THEN 'all deals (overall change)' ELSE a.driver END
				  AND e.kind <> 'overall'
				  AND pg_catalog.cardinality(e.segments) = 1) AS expl,
			   pg_catalog.row_number() OVER (ORDER BY a.contribution * pg_catalog.sign(t.change) DESC NULLS LAST, a.id)::int AS rk
		FROM a, t
		WHERE a.selected AND a.q_value < 0.05
	)
	SELECT c.rk, c.kind, c.driver, c.dims, c.segments,
		   c.baseline_closed, c.baseline_won::float8 / NULLIF(c.baseline_closed, 0), c.baseline_closed::float8 / t.n0,
		   c.recent_closed, c.recent_won::float8 / NULLIF(c.recent_closed, 0), c.recent_closed::float8 / t.n1,
		   c.effect, c.contribution,
		   CASE WHEN c.kind <> 'mix' THEN c.effect_low * c.recent_closed / t.n1 END,
		   CASE WHEN c.kind <> 'mix' THEN c.effect_high * c.recent_closed / t.n1 END,
		   c.p_value, c.q_value, coalesce(c.expl, '{}'),
		   CASE c.kind
			   WHEN 'mix' THEN pg_catalog.format('%s: share of closed deals %s -> %s, at a baseline win rate of %s against %s overall: %s points',
					c.driver, dealrisk._pct(c.baseline_closed::float8 / t.n0), dealrisk._pct(c.recent_closed::float8 / t.n1),
					dealrisk._pct(c.baseline_won::float8 / NULLIF(c.baseline_closed, 0)), dealrisk._pct(t.w0::float8 / t.n0),
					dealrisk._pts(c.contribution))
			   WHEN 'overall' THEN pg_catalog.format('every segment alike: win rate %s points beyond the drivers above: %s points',
					dealrisk._pts(c.effect), dealrisk._pts(c.contribution))
			   ELSE pg_catalog.format('%s: win rate %s -> %s, %s points once the other dimensions are held fixed: %s points of the overall rate',
					c.driver, dealrisk._pct(c.baseline_won::float8 / NULLIF(c.baseline_closed, 0)),
					dealrisk._pct(c.recent_won::float8 / NULLIF(c.recent_closed, 0)),
					dealrisk._pts(c.effect), dealrisk._pts(c.contribution)) END
	FROM c, t
	UNION ALL
	SELECT NULL::int, 'remainder'::text, NULL::text, NULL::text[], NULL::text[], NULL::bigint, NULL::float8, NULL::float8,
		   NULL::bigint, NULL::float8, NULL::float8, NULL::float8,
		   t.change - coalesce((SELECT pg_catalog.sum(c.contribution) FROM c), 0),
		   NULL::float8, NULL::float8, NULL::float8, NULL::float8, '{}'::text[],
		   pg_catalog.format('not accounted for by the drivers above (noise, and changes too small to tell from it): %s points',
				dealrisk._pts(t.change - coalesce((SELECT pg_catalog.sum(c.contribution) FROM c), 0)))
	FROM t
	UNION ALL
	SELECT NULL::int, 'total'::text, NULL::text, NULL::text[], NULL::text[], t.n0, t.w0::float8 / t.n0, 1::float8,
		   t.n1, t.w1::float8 / t.n1, 1::float8, t.change, t.change,
		   NULL::float8, NULL::float8, dealrisk.two_proportion_p(t.w1, t.n1, t.w0, t.n0), NULL::float8, '{}'::text[],
		   pg_catalog.format('win rate %s -> %s: %s points', dealrisk._pct(t.w0::float8 / t.n0),
				dealrisk._pct(t.w1::float8 / t.n1), dealrisk._pts(t.change))
	FROM t
	ORDER BY 1 NULLS LAST, 2;
END
$fn$;
COMMENT ON FUNCTION dealrisk.drivers(regclass, text[], daterange, daterange) IS
	'The independent causes of the change of the win rate between a baseline and a recent window, across all dimensions at once (default: the contract dimensions the source has): segments or two-segment cells whose win rate changed with the other dimensions held fixed (kind rate), segments whose share moved the rate (kind mix), a change of every segment alike (kind overall), each with its contribution in points and a q-value; then the remainder and the total change';
