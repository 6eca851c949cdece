-- Issue #11: lost_lookalikes() orders deals that tie (the same traits) the
-- same way whatever order their rows were added in (another plan, a Citus
-- table's shards): by the similarity to 9 decimals, then by deal_id.
CREATE OR REPLACE FUNCTION dealrisk.lost_lookalikes(source regclass, lost_since date DEFAULT NULL, k int DEFAULT 20)
RETURNS TABLE (deal_id text, similarity float8, shared_traits text[])
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	traits text[] := ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_stage'];
	present text[];
	since date := lost_since;
	unions text;
	recent_l text := 'l.closed_date >= $1';
	recent_d text := 'd.closed_date >= $1';
	losses text := 'recent losses';
BEGIN
	IF k IS NULL OR k < 1 THEN
		RAISE EXCEPTION 'k must be at least 1, got %', coalesce(k::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	-- without close dates no loss is more recent than another: open deals
	-- are compared with every lost deal, and a NOTICE says so
	IF NOT dealrisk._has_column(source, 'closed_date') THEN
		IF lost_since IS NOT NULL THEN
			RAISE EXCEPTION 'lost_since needs a closed_date column, which source % lacks', source
				USING ERRCODE = 'undefined_column',
				      HINT = 'Call lost_lookalikes(source) without lost_since to compare open deals with every lost deal.';
		END IF;
		RAISE NOTICE 'dealrisk.lost_lookalikes: % has no closed_date column: open deals are compared with every lost deal, not only recent ones', source;
		recent_l := 'true';
		recent_d := 'true';
		losses := 'lost deals';
	END IF;
	SELECT pg_catalog.array_agg(t ORDER BY pg_catalog.array_position(traits, t)) INTO present
	FROM pg_catalog.unnest(traits) t
	WHERE dealrisk._has_column(source, t);
	IF since IS NULL AND recent_d <> 'true' THEN
		EXECUTE pg_catalog.format('SELECT max(d.closed_date) - 30 FROM %s d WHERE dealrisk.is_won(d.outcome) IS NOT NULL', source)
			INTO since;
	END IF;
	SELECT pg_catalog.string_agg(pg_catalog.format('SELECT %L AS col, d.%I::text AS val, d.* FROM %s d', t, t, source), ' UNION ALL ')
	INTO unions FROM pg_catalog.unnest(present) t;
	-- lift of each trait: its share among the recent losses over its share among closed deals
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH long AS (%s),
		lift AS (
			SELECT l.col, l.val,
			       count(*) FILTER (WHERE NOT dealrisk.is_won(l.outcome) AND %s)::float8
			         / greatest(1, (SELECT count(*) FROM %s d WHERE NOT dealrisk.is_won(d.outcome) AND %s)) AS lost_share,
			       count(*) FILTER (WHERE dealrisk.is_won(l.outcome) IS NOT NULL)::float8
			         / greatest(1, (SELECT count(*) FROM %s d WHERE dealrisk.is_won(d.outcome) IS NOT NULL)) AS all_share
			FROM long l WHERE l.val IS NOT NULL GROUP BY l.col, l.val
		)
		SELECT q.deal_id, q.similarity, q.shared_traits FROM (
		SELECT l.deal_id::text AS deal_id,
		       sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) AS similarity,
		       pg_catalog.array_agg(pg_catalog.format('%%s = %%s (%%s%%%% of %s, %%s%%%% of closed deals)',
		                        f.col, f.val, pg_catalog.round((100 * f.lost_share)::numeric),
		                        pg_catalog.round((100 * f.all_share)::numeric))
		                 ORDER BY f.lost_share / f.all_share DESC) FILTER (WHERE f.lost_share >= 1.2 * f.all_share AND f.all_share > 0)
		         AS shared_traits
		FROM long l JOIN lift f ON f.col = l.col AND f.val = l.val
		WHERE dealrisk.is_won(l.outcome) IS NULL AND f.all_share > 0
		GROUP BY l.deal_id
		HAVING sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) > 0
		) q
		-- deals with the same traits tie: their sums may differ in the last
		-- bits with the order the rows were added in (another plan, the
		-- shards of a Citus table), so they are ordered by the similarity
		-- to 9 decimals, then by deal_id, the same way every time
		ORDER BY pg_catalog.round(q.similarity::numeric, 9) DESC, q.deal_id
		LIMIT $2 $q$, unions, recent_l, source, recent_d, source, losses)
		USING since, k;
END
$$;
