-- Issue #13: drivers that explain each other away.  The joint analysis
-- (src/drivers.c, src/drivers.sql), dealrisk.drivers(), the adjusted columns
-- of win_rate_drivers() (a new result type: dropped and created again) and
-- diagnose() on them.

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

DROP FUNCTION dealrisk.win_rate_drivers(regclass, text, daterange, daterange);

CREATE FUNCTION dealrisk.win_rate_drivers(source regclass, dimension text,
	recent daterange DEFAULT NULL, baseline daterange DEFAULT NULL)
RETURNS TABLE(segment text, baseline_closed bigint, baseline_win_rate float8,
			  baseline_share float8, recent_closed bigint, recent_win_rate float8,
			  recent_share float8, rate_effect float8, mix_effect float8,
			  contribution float8, p_value float8, q_value float8, significant boolean,
			  adjusted_rate_effect float8, adjusted_ci_low float8, adjusted_ci_high float8,
			  adjusted_p_value float8, adjusted_q_value float8, explained_by text,
			  mix_q_value float8, mix_explained_by text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	cols		text[];
	dims		text[];
	w			record;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	cols := dealrisk._dimension_columns(source, dimension);
	SELECT * INTO w FROM dealrisk._comparison_windows(source, recent, baseline);
	dims := ARRAY[dimension] || ARRAY(SELECT c FROM pg_catalog.unnest(dealrisk._contract_dimensions(source)) AS c
									  WHERE c <> ALL (cols));

	-- rate_effect = s1 (r1 - r0), mix_effect = (s1 - s0) (r0 - R0); a segment
	-- missing from the baseline takes r0 = R0, one missing from the recent
	-- window has s1 = 0.  Summed over segments: R1 - R0.  The segments are
	-- tested together, so the one-at-a-time q-value is the Benjamini-Hochberg
	-- adjustment over the segments of this call (those with a p-value);
	-- significant is the adjusted test's.
	RETURN QUERY
	WITH a AS MATERIALIZED (
		SELECT * FROM dealrisk._driver_analysis(source, dims, w.recent, w.baseline, 1, false)
	), t AS MATERIALIZED (
		SELECT a.baseline_closed AS n0, a.baseline_won AS w0, a.recent_closed AS n1
		FROM a WHERE a.id = 0
	), s AS (
		-- the rate and mix rows of each segment of this dimension, side by side
		SELECT a.segments[1] AS seg,
			   pg_catalog.max(a.baseline_closed) FILTER (WHERE a.kind = 'rate') AS bn,
			   pg_catalog.max(a.baseline_won) FILTER (WHERE a.kind = 'rate') AS bw,
			   pg_catalog.max(a.recent_closed) FILTER (WHERE a.kind = 'rate') AS rn,
			   pg_catalog.max(a.recent_won) FILTER (WHERE a.kind = 'rate') AS rw,
			   pg_catalog.max(a.contribution) FILTER (WHERE a.kind = 'rate') AS adj,
			   pg_catalog.max(a.effect_low * a.recent_closed) FILTER (WHERE a.kind = 'rate') AS adj_lo,
			   pg_catalog.max(a.effect_high * a.recent_closed) FILTER (WHERE a.kind = 'rate') AS adj_hi,
			   pg_catalog.max(a.p_value) FILTER (WHERE a.kind = 'rate') AS adj_p,
			   pg_catalog.max(a.q_value) FILTER (WHERE a.kind = 'rate') AS adj_q,
			   pg_catalog.max(a.explained_by) FILTER (WHERE a.kind = 'rate') AS expl,
			   pg_catalog.max(a.q_value) FILTER (WHERE a.kind = 'mix') AS mix_q,
			   pg_catalog.max(a.explained_by) FILTER (WHERE a.kind = 'mix') AS mix_expl
		FROM a
		WHERE a.kind IN ('rate', 'mix') AND a.dims = ARRAY[dimension]
		GROUP BY a.segments[1]
	), k AS (
		SELECT s.seg, s.bn, s.bw, s.rn, s.rw,
			   s.bn::float8 / t.n0 AS s0,
			   s.rn::float8 / t.n1 AS s1,
			   CASE WHEN s.bn > 0 THEN s.bw::float8 / s.bn END AS r0,
			   CASE WHEN s.rn > 0 THEN s.rw::float8 / s.rn END AS r1,
			   t.w0::float8 / t.n0 AS rate0, t.n0, t.w0, t.n1,
			   s.adj, s.adj_lo / t.n1 AS adj_lo, s.adj_hi / t.n1 AS adj_hi,
			   s.adj_p, s.adj_q, s.expl, s.mix_q, s.mix_expl
		FROM s, t
	), e AS (
		SELECT k.*, ef.rate_effect AS re, ef.mix_effect AS me,
			   dealrisk.two_proportion_p(k.rw, k.rn, k.bw, k.bn) AS pv,
			   pg_catalog.row_number() OVER (ORDER BY k.seg)::int AS j
		FROM k, LATERAL dealrisk._segment_effects(k.bn, k.bw, k.rn, k.rw, k.n0, k.w0, k.n1) ef
	), f AS MATERIALIZED (	-- (once, not once per segment)
		SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(e.pv ORDER BY e.j), '{}')) AS qs FROM e
	)
	SELECT e.seg, e.bn, e.r0, e.s0, e.rn, e.r1, e.s1, e.re, e.me, e.re + e.me,
		   e.pv, f.qs[e.j], e.adj_q < 0.05,
		   e.adj, e.adj_lo, e.adj_hi, e.adj_p, e.adj_q, e.expl, e.mix_q, e.mix_expl
	FROM e, f
	ORDER BY e.re + e.me, e.seg;
END
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_drivers(regclass, text, daterange, daterange) IS
	'Decomposes the change of the win rate between a baseline and a recent window of closed_date into per-segment rate and mix effects (summing to the overall change) with one-at-a-time p- and q-values, and the adjusted rate effect of each segment with the other contract dimensions held fixed (its 95% interval, p- and q-value over the joint analysis, the driver that explains its marginal change, the mix q-value and what explains its share change); significant = adjusted q < 0.05; dimension names one or more columns separated by commas; windows default to the last complete quarter and the one before';

-- diagnose(source, history DEFAULT NULL): 0.3.0's diagnose(regclass) is
-- dropped, and diagnose('deals') calls this one (issue #14 added history).
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
