-- Issue #10, item 6: one definition of stage matching.  Stage names are
-- matched trimmed and with ASCII letters folded to lower case everywhere:
-- the stage table (C), the model's typical stage times (C and
-- _build_spec), and the preflight's SQL, through dealrisk._stage_key.

CREATE FUNCTION dealrisk._stage_key(stage text)
RETURNS text
AS 'MODULE_PATHNAME', 'dr_stage_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._stage_key(text) IS
	'A stage name as stages are matched everywhere: surrounding white space trimmed, ASCII letters in lower case; NULL when blank (internal)';

CREATE OR REPLACE FUNCTION dealrisk._build_spec(source regclass, features text[], filter text,
	dict_source regclass DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cols text[];
	types text[];
	want text[];
	f text;
	spec jsonb := '[]';
	skipped jsonb := '{}';
	n bigint;
	min_level bigint;
	levels jsonb;
	pooled jsonb;
	edges float8[];
	typical jsonb;
	mean float8;
	sd float8;
	t text;
	age_expr text;
	stage_days text;
	ratio_expr text;
	dfilter text := filter;
	src regclass := source;
	entry text;
	-- a point-in-time source: its rows are deals as they stood on
	-- dealrisk_as_of while open, so age and time in stage are read there,
	-- like an open deal's, and deal_stage is the stage then (no leak)
	pit boolean := dealrisk._has_column(source, 'dealrisk_as_of');
BEGIN
	source := coalesce(dict_source, source);	-- dictionaries read the sample
	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum),
	       pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, NULL) ORDER BY a.attnum)
	INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;

	IF features IS NULL THEN
		want := ARRAY['industry', 'region', 'product_type', 'lead_source',
		              'sales_rep_id', 'deal_amount', 'cycle_days', 'stage_time'];
		IF 'last_activity_date' = ANY (cols) THEN
			want := want || 'activity_gap'::text;
		END IF;
		IF pit AND 'deal_stage' = ANY (cols) THEN
			want := want || 'deal_stage'::text;
		END IF;
	ELSE
		want := features;
	END IF;

	EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, dfilter) INTO n;
	min_level := greatest(20, (n * 0.005)::bigint);
	-- the numbers derived from dates (a deal's age or cycle, its days in
	-- stage, its activity gap) as the encoder derives them for scoring
	-- (src/features.c, through dealrisk._feature_raw): one definition
	age_expr := dealrisk._raw_expr(source, 'age_days');
	stage_days := dealrisk._raw_expr(source, 'stage_days');

	FOREACH f IN ARRAY want LOOP
		-- 'column:linear' / 'column:bins': how a numeric column enters
		SELECT e.col, e.entry INTO f, entry FROM dealrisk._feature_entry(src, f) e;
		IF f = 'cycle_days' THEN
			-- closed deals: bins of the cycle; open deals: the survivor curve
			-- of the age (knots here, terms once fitted: _open_terms)
			edges := dealrisk._quantile_edges(source, age_expr, dfilter, '{0.1,0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || (pg_catalog.jsonb_build_object('name', 'cycle_days', 'kind', 'bins',
					'derived', 'age_days', 'edges', pg_catalog.to_jsonb(edges))
					|| CASE WHEN pg_catalog.cardinality(edges) = 5 THEN '{"quantiles": [0.1, 0.25, 0.5, 0.75, 0.9]}'
					        ELSE '{}' END::jsonb
					-- (survivor curves only for a final-state source: a
					-- point-in-time model scores an open deal's age in the bins)
					|| CASE WHEN pit THEN '{}'::jsonb ELSE dealrisk._open_knots(source, src, age_expr, dfilter) END);
			END IF;
		ELSIF f = 'stage_time' THEN
			-- a stage that only won (or only lost) deals end in records the
			-- outcome: time in it would teach the model the answer, not the risk
			-- said in one line: "closed deals in 'Closed' all won; closed
			-- deals in 'Demo', 'Qualified' and 2 more all lost"
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.string_agg(pg_catalog.format(''closed deals in %%s all %%s'','
				'  CASE WHEN y.n <= 3 THEN y.l ELSE y.l || pg_catalog.format('' and %%s more'', y.n - 2) END,'
				'  CASE WHEN y.won THEN ''won'' ELSE ''lost'' END), ''; '' ORDER BY y.won DESC) FROM ('
				' SELECT x.r >= 0.99 won, count(*) n,'
				'  pg_catalog.array_to_string((pg_catalog.array_agg(pg_catalog.quote_literal(x.s) ORDER BY x.c DESC, x.s))'
				'   [1:CASE WHEN count(*) <= 3 THEN 3 ELSE 2 END], '', '') l'
				' FROM (SELECT min(d.deal_stage) s, count(*) c, avg(dealrisk.is_won(d.outcome)::int) r'
				'  FROM %s d WHERE %s AND dealrisk._stage_key(d.deal_stage) IS NOT NULL GROUP BY dealrisk._stage_key(d.deal_stage)) x'
				' WHERE x.c >= 0.05 * $1 AND (x.r >= 0.99 OR x.r <= 0.01) GROUP BY 1) y', source, dfilter)
				INTO t USING n;
			IF t IS NOT NULL THEN
				RAISE NOTICE 'dealrisk.train: stage_time left out: deal_stage gives the outcome away (%)', t;
				skipped := skipped || pg_catalog.jsonb_build_object('stage_time',
					pg_catalog.format('deal_stage gives the outcome away (%s)', t));
				CONTINUE;
			END IF;
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.jsonb_object_agg(s, m) FROM (SELECT dealrisk._stage_key(d.deal_stage) s,'
				' greatest(1, percentile_cont(0.5) WITHIN GROUP (ORDER BY (%s)::float8)) m'
				' FROM %s d WHERE %s AND dealrisk._stage_key(d.deal_stage) IS NOT NULL AND (%s) IS NOT NULL GROUP BY 1) x',
				stage_days, source, dfilter, stage_days) INTO typical;
			IF typical IS NOT NULL THEN
				ratio_expr := dealrisk._raw_expr(source, 'stage_ratio', typical);
				edges := dealrisk._quantile_edges(source, ratio_expr,
					dfilter || ' AND dealrisk._stage_key(d.deal_stage) IS NOT NULL', '{0.25,0.5,0.75,0.9}');
				IF pg_catalog.cardinality(edges) > 0 THEN
					spec := spec || (pg_catalog.jsonb_build_object('name', 'stage_time', 'kind', 'bins',
						'derived', 'stage_ratio', 'edges', pg_catalog.to_jsonb(edges), 'typical', typical)
						|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.25, 0.5, 0.75, 0.9]}'
						        ELSE '{}' END::jsonb
						|| CASE WHEN pit THEN '{}'::jsonb ELSE dealrisk._open_knots(source, src, ratio_expr,
							dfilter || ' AND dealrisk._stage_key(d.deal_stage) IS NOT NULL') END);
				END IF;
			END IF;
		ELSIF f = 'activity_gap' THEN
			IF NOT 'last_activity_date' = ANY (cols) THEN
				RAISE EXCEPTION 'feature "activity_gap" needs column "last_activity_date", which % lacks', src
					USING ERRCODE = 'undefined_column';
			END IF;
			edges := dealrisk._quantile_edges(source, dealrisk._raw_expr(source, 'activity_gap'),
			                                  dfilter, '{0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || (pg_catalog.jsonb_build_object('name', 'activity_gap', 'kind', 'bins',
					'derived', 'activity_gap', 'edges', pg_catalog.to_jsonb(edges))
					|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.25, 0.5, 0.75, 0.9]}'
					        ELSE '{}' END::jsonb);
			END IF;
		ELSIF f = 'sales_rep_id' THEN
			IF NOT f = ANY (cols) THEN
				RAISE EXCEPTION 'column "%" is missing from source %', f, src
					USING ERRCODE = 'undefined_column';
			END IF;
			spec := spec || pg_catalog.jsonb_build_object('name', 'rep_win_rate', 'kind', 'rate',
			                                              'column', f, 'pending', true);
		ELSIF f = ANY (cols) THEN
			t := types[pg_catalog.array_position(cols, f)];
			IF t IN ('text', 'character varying', 'character', 'boolean') THEN
				EXECUTE pg_catalog.format(
					'SELECT pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FILTER (WHERE c >= $1),'
					'       pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FILTER (WHERE c < $1)'
					' FROM (SELECT d.%I::text k, count(*) c FROM %s d WHERE %s AND d.%I IS NOT NULL GROUP BY 1) x',
					f, source, dfilter, f) INTO levels, pooled USING min_level;
				IF pooled IS NOT NULL THEN
					levels := coalesce(levels, '[]') || '"(other)"'::jsonb;
				END IF;
				IF levels IS NOT NULL THEN
					spec := spec || pg_catalog.jsonb_build_object('name', f, 'kind', 'categorical',
						'column', f, 'levels', levels, 'pooled', coalesce(pooled, '[]'));
				END IF;
			ELSIF t IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
				-- quintile bins (scorecard style: each bin its own weight, so
				-- an effect need not be a straight line), unless :linear
				IF entry IS DISTINCT FROM 'linear' THEN
					edges := dealrisk._quantile_edges(source, pg_catalog.format('d.%I', f), dfilter,
					                                  '{0.2,0.4,0.6,0.8}');
					IF pg_catalog.cardinality(edges) > 0 THEN
						-- (quantiles: explanations name the fifth a value is in)
						spec := spec || (pg_catalog.jsonb_build_object('name', f, 'kind', 'bins',
							'column', f, 'edges', pg_catalog.to_jsonb(edges))
							|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.2, 0.4, 0.6, 0.8]}'
							        ELSE '{}' END::jsonb);
					END IF;
				ELSE
					EXECUTE pg_catalog.format(
						'SELECT avg(d.%1$I::float8), stddev_pop(d.%1$I::float8) FROM %2$s d WHERE %3$s'
						' AND d.%1$I::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'')',
						f, source, dfilter) INTO mean, sd;
					spec := spec || pg_catalog.jsonb_build_object('name', f, 'kind', 'numeric',
						'column', f, 'mean', coalesce(mean, 0),
						'sd', CASE WHEN coalesce(sd, 0) > 1e-12 THEN sd ELSE 1 END);
				END IF;
			ELSE
				RAISE EXCEPTION 'column "%" of % has type %, which cannot be a feature', f, src, t
					USING ERRCODE = 'datatype_mismatch',
					      HINT = 'Features are text (categorical) or numeric columns; cast others in a view.';
			END IF;
		ELSE
			RAISE EXCEPTION 'feature "%" is neither a column of % nor a derived feature', f, src
				USING ERRCODE = 'undefined_column',
				      HINT = 'Derived features: cycle_days, stage_time, activity_gap (and sales_rep_id as a shrunk rep win rate).';
		END IF;
	END LOOP;
	IF pg_catalog.jsonb_array_length(spec) = 0 THEN
		RAISE EXCEPTION 'no usable feature in %', src USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- (left_out: why a feature asked for was left out, for train() to
	-- record; not part of the stored specification)
	RETURN pg_catalog.jsonb_build_object('format', 'dealrisk/1', 'features', spec)
		|| CASE WHEN skipped <> '{}' THEN pg_catalog.jsonb_build_object('left_out', skipped) ELSE '{}' END;
END
$$;
COMMENT ON FUNCTION dealrisk._build_spec(regclass, text[], text, regclass) IS
	'Learns a feature specification (dictionaries, bins, typical stage times) from the closed deals of a source (internal)';

COMMENT ON FUNCTION dealrisk.stage_position(text) IS
	'Position of a stage in dealrisk.stages (matched as _stage_key says: trimmed, ASCII case folded); an unknown stage is an error';
