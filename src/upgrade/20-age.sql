-- Age-aware risk for open deals (issue #9, section 2) and explanations with
-- numbers for people (section 6): open deals are scored by the survivor
-- curves of their age and time in stage (docs/model.md, "Open deals"),
-- stored in the feature specification by train(); models without them
-- score as before.

-- The knots of an open deal's survivor curve (docs/model.md, "Open deals"):
-- distinct values of a closed deal's age (or stage time) expression at
-- every 5th percentile, and the 97.5th, 99th and 100th, from dict (the
-- training sample), and the longest value over every closed deal of source.
CREATE FUNCTION dealrisk._open_knots(dict regclass, source regclass, expr text, filter text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	knots float8[];
	longest float8;
	finite text := pg_catalog.format('(%s) IS NOT NULL AND (%s)::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'')', expr, expr);
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_disc($1) WITHIN GROUP (ORDER BY (%s)::float8) FROM %s d WHERE %s AND %s)) q',
		expr, dict, filter, finite)
		INTO knots
		USING ARRAY(SELECT k / 20.0 FROM pg_catalog.generate_series(0, 19) k)::float8[] || '{0.975,0.99,1}'::float8[];
	IF pg_catalog.cardinality(knots) IS NULL THEN
		RETURN '{}';
	END IF;
	longest := knots[pg_catalog.cardinality(knots)];
	IF dict::pg_catalog.oid <> source::pg_catalog.oid THEN
		EXECUTE pg_catalog.format('SELECT max((%s)::float8) FROM %s d WHERE %s AND %s', expr, source, filter, finite)
			INTO longest;
	END IF;
	RETURN pg_catalog.jsonb_build_object('open_knots', pg_catalog.to_jsonb(knots),
		'longest', greatest(longest, knots[pg_catalog.cardinality(knots)]));
END
$$;
COMMENT ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text) IS
	'Knots of the survivor curve of open deals (quantiles of the closed deals'' age or stage time) and its longest value (internal)';

-- A pass of the survivor curves' fit: per knot, the score and information
-- of the closed deals at or past it at the given terms, and their counts.
CREATE FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[],
	regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'Survivor curve pass transition (internal)';
CREATE AGGREGATE dealrisk._open_pass(spec jsonb, beta float8[], split int, cutoff date, ref date,
	halflife float8, terms float8[], row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._open_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") IS
	'One pass of the survivor curves'' fit over closed deals: {rows, per knot: score, information, closed, won} (internal)';

CREATE FUNCTION dealrisk._open_step(spec jsonb, state float8[], terms float8[], monotone boolean)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_step'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_step(jsonb, float8[], float8[], boolean) IS
	'Newton step of the survivor curves from a pass state, or (monotone) the curves made non-increasing (internal)';

-- The survivor curves of open deals for the features of spec that have
-- knots, fitted with coefficients beta on the closed deals of source that
-- pass filter (weighted as in training: ref, halflife): spec with each
-- such feature's open_terms, open_closed and open_won (docs/model.md).
CREATE FUNCTION dealrisk._open_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n int;
	terms float8[];
	next float8[];
	state float8[];
	passes int := 0;
	q text;
BEGIN
	SELECT coalesce(sum(pg_catalog.jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM pg_catalog.jsonb_array_elements(spec->'features') e
	WHERE pg_catalog.jsonb_typeof(e->'open_knots') = 'array';
	IF n = 0 THEN
		RETURN spec;
	END IF;
	q := pg_catalog.format('SELECT dealrisk._open_pass($1, $2, 0, NULL, $3, $4, $5, %s) FROM %s d WHERE %s',
	                       dealrisk._row_args(source, spec), source, filter);
	terms := pg_catalog.array_fill(0::float8, ARRAY[n]);
	LOOP
		EXECUTE q INTO state USING spec, beta, ref, halflife, terms;
		IF state IS NULL OR pg_catalog.cardinality(state) = 0 THEN
			RETURN spec;	-- no closed deal: open deals stay binned
		END IF;
		passes := passes + 1;
		next := dealrisk._open_step(spec, state, terms, false);
		EXIT WHEN passes >= 30 OR
			(SELECT max(abs(x.a - x.b)) FROM ROWS FROM (pg_catalog.unnest(next), pg_catalog.unnest(terms)) x(a, b)) < 1e-6;
		terms := next;
	END LOOP;
	terms := dealrisk._open_step(spec, state, next, true);
	RAISE NOTICE 'dealrisk.train: survivor curves of open deals fitted in % passes', passes;
	RETURN pg_catalog.jsonb_set(spec, '{features}', (
		SELECT pg_catalog.jsonb_agg(CASE WHEN x.len > 0 THEN x.e || pg_catalog.jsonb_build_object(
			'open_terms', (SELECT pg_catalog.jsonb_agg(terms[x.o + k] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_closed', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k)] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k),
			'open_won', (SELECT pg_catalog.jsonb_agg(state[4 * (x.o + k) + 1] ORDER BY k) FROM pg_catalog.generate_series(1, x.len) k))
			ELSE x.e END ORDER BY x.ord)
		FROM (SELECT f.e, f.ord, f.len,
		             coalesce(sum(f.len) OVER (ORDER BY f.ord ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::int AS o
		      FROM (SELECT t.e, t.ord, CASE WHEN pg_catalog.jsonb_typeof(t.e->'open_knots') = 'array'
		                                    THEN pg_catalog.jsonb_array_length(t.e->'open_knots') ELSE 0 END AS len
		            FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY AS t(e, ord)) f) x));
END
$$;
COMMENT ON FUNCTION dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8) IS
	'Fits the survivor curves that score open deals by age and stage time, and writes them into a feature specification (internal)';
REVOKE EXECUTE ON FUNCTION
	dealrisk._open_knots(regclass, regclass, text, text),
	dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_step(jsonb, float8[], float8[], boolean),
	dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),
	dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any")
FROM PUBLIC;

-- _build_spec: the knots of the age and stage time curves, bins' quantiles,
-- and a one-line NOTICE when stage_time is left out
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
	n bigint;
	min_level bigint;
	levels jsonb;
	pooled jsonb;
	edges float8[];
	typical jsonb;
	mean float8;
	sd float8;
	t text;
	end_expr text;
	age_expr text;
	created_col text;
	closed_col text;
	stage_days text;
	dfilter text := filter;
	src regclass := source;
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
	ELSE
		want := features;
	END IF;

	EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, dfilter) INTO n;
	min_level := greatest(20, (n * 0.005)::bigint);
	-- dates as features.c reads them: an absent column or an infinite date
	-- is missing (NULL)
	created_col := dealrisk._finite_date('created_date', cols);
	closed_col := dealrisk._finite_date('closed_date', cols);
	-- the day a deal's clock stops: its close, else the as-of date
	end_expr := pg_catalog.format(
		'CASE WHEN dealrisk.is_won(d.outcome) IS NOT NULL AND (%1$s) IS NOT NULL THEN %1$s ELSE (SELECT dealrisk._as_of()) END',
		closed_col);
	-- a closed deal's cycle, else the days from creation to its close (or to
	-- the as-of date when that is missing)
	age_expr := pg_catalog.format(
		'CASE WHEN dealrisk.is_won(d.outcome) IS NOT NULL THEN coalesce(%s (%s) - (%s), (SELECT dealrisk._as_of()) - (%s)) ELSE (SELECT dealrisk._as_of()) - (%s) END',
		CASE WHEN 'sales_cycle_days' = ANY (cols)
		     THEN 'CASE WHEN d.sales_cycle_days::float8 NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.sales_cycle_days END,'
		     ELSE '' END,
		closed_col, created_col, created_col, created_col);
	stage_days := pg_catalog.format('(%s) - coalesce(%s, %s)', end_expr,
		dealrisk._finite_date('stage_entered_date', cols), created_col);

	FOREACH f IN ARRAY want LOOP
		IF f = 'cycle_days' THEN
			-- closed deals: bins of the cycle; open deals: the survivor curve
			-- of the age (knots here, terms once fitted: _open_terms)
			edges := dealrisk._quantile_edges(source, age_expr, dfilter, '{0.1,0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || (pg_catalog.jsonb_build_object('name', 'cycle_days', 'kind', 'bins',
					'derived', 'age_days', 'edges', pg_catalog.to_jsonb(edges))
					|| CASE WHEN pg_catalog.cardinality(edges) = 5 THEN '{"quantiles": [0.1, 0.25, 0.5, 0.75, 0.9]}'
					        ELSE '{}' END::jsonb
					|| dealrisk._open_knots(source, src, age_expr, dfilter));
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
				' FROM (SELECT d.deal_stage s, count(*) c, avg(dealrisk.is_won(d.outcome)::int) r'
				'  FROM %s d WHERE %s AND d.deal_stage IS NOT NULL GROUP BY 1) x'
				' WHERE x.c >= 0.05 * $1 AND (x.r >= 0.99 OR x.r <= 0.01) GROUP BY 1) y', source, dfilter)
				INTO t USING n;
			IF t IS NOT NULL THEN
				RAISE NOTICE 'dealrisk.train: stage_time left out: deal_stage gives the outcome away (%)', t;
				CONTINUE;
			END IF;
			EXECUTE pg_catalog.format(
				'SELECT pg_catalog.jsonb_object_agg(s, m) FROM (SELECT d.deal_stage s,'
				' greatest(1, percentile_cont(0.5) WITHIN GROUP (ORDER BY (%s)::float8)) m'
				' FROM %s d WHERE %s AND d.deal_stage IS NOT NULL AND (%s) IS NOT NULL GROUP BY d.deal_stage) x',
				stage_days, source, dfilter, stage_days) INTO typical;
			IF typical IS NOT NULL THEN
				edges := dealrisk._quantile_edges(source,
					pg_catalog.format('(%s)::float8 / greatest(1, (%L::jsonb ->> d.deal_stage)::float8)',
					                  stage_days, typical),
					dfilter || ' AND d.deal_stage IS NOT NULL', '{0.25,0.5,0.75,0.9}');
				IF pg_catalog.cardinality(edges) > 0 THEN
					spec := spec || (pg_catalog.jsonb_build_object('name', 'stage_time', 'kind', 'bins',
						'derived', 'stage_ratio', 'edges', pg_catalog.to_jsonb(edges), 'typical', typical)
						|| CASE WHEN pg_catalog.cardinality(edges) = 4 THEN '{"quantiles": [0.25, 0.5, 0.75, 0.9]}'
						        ELSE '{}' END::jsonb
						|| dealrisk._open_knots(source, src,
							pg_catalog.format('(%s)::float8 / greatest(1, (%L::jsonb ->> d.deal_stage)::float8)',
							                  stage_days, typical),
							dfilter || ' AND d.deal_stage IS NOT NULL'));
				END IF;
			END IF;
		ELSIF f = 'activity_gap' THEN
			IF NOT 'last_activity_date' = ANY (cols) THEN
				RAISE EXCEPTION 'feature "activity_gap" needs column "last_activity_date", which % lacks', src
					USING ERRCODE = 'undefined_column';
			END IF;
			edges := dealrisk._quantile_edges(source, pg_catalog.format('(%s) - (%s)', end_expr,
			                                  dealrisk._finite_date('last_activity_date', cols)),
			                                  dfilter, '{0.25,0.5,0.75,0.9}');
			IF pg_catalog.cardinality(edges) > 0 THEN
				spec := spec || pg_catalog.jsonb_build_object('name', 'activity_gap', 'kind', 'bins',
					'derived', 'activity_gap', 'edges', pg_catalog.to_jsonb(edges));
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
				IF features IS NULL OR f = 'deal_amount' THEN
					edges := dealrisk._quantile_edges(source, pg_catalog.format('d.%I', f), dfilter,
					                                  '{0.2,0.4,0.6,0.8}');
					IF pg_catalog.cardinality(edges) > 0 THEN
						spec := spec || pg_catalog.jsonb_build_object('name', f, 'kind', 'bins',
							'column', f, 'edges', pg_catalog.to_jsonb(edges));
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
	RETURN pg_catalog.jsonb_build_object('format', 'dealrisk/1', 'features', spec);
END
$$;

-- train(): fits the survivor curves of the stored model
CREATE OR REPLACE FUNCTION dealrisk.train(source regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	closed_filter text := 'dealrisk.is_won(d.outcome) IS NOT NULL';
	has_closed_date boolean;
	n_won bigint;
	n_lost bigint;
	min_n int;
	halflife float8;
	cutoff date;
	ref date;
	dict_source regclass;
	train_filter text;
	test_filter text;
	split_train int := 0;
	train_expr text;
	n_rows float8;
	is_table boolean;
	share float8;
	n_sampled bigint;
	resampled boolean := false;
	rate_key text;
	census record;
	spec jsonb;
	spec_train jsonb;
	pos int;
	fit record;
	test_metrics jsonb;
	final_fit record;
	new_id bigint;
	problem text;
	pos_col name;
	pos_type oid;
BEGIN
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings
	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	halflife := pg_catalog.current_setting('dealrisk.recency_halflife_days')::float8;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF l2 IS NULL OR NOT (l2 >= 0) OR l2 IN ('Infinity', 'NaN') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', coalesce(l2::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF holdout IS NULL OR NOT (holdout > 0 AND holdout < 0.9) THEN
		RAISE EXCEPTION 'holdout must be a share between 0 and 0.9, got %', coalesce(holdout::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome', 'created_date']);
	-- the model reads labels and stages as text (src/features.c): say so
	-- before a pass trips over another type
	SELECT a.attname, a.atttypid INTO pos_col, pos_type
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname IN ('outcome', 'deal_stage')
	  AND a.atttypid NOT IN ('text'::regtype::pg_catalog.oid, 'varchar'::regtype::pg_catalog.oid, 'bpchar'::regtype::pg_catalog.oid)
	ORDER BY a.attnum LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of source % has type %, which the model cannot read', pos_col, source,
			pg_catalog.format_type(pos_type, NULL)
			USING ERRCODE = 'datatype_mismatch',
			      HINT = pg_catalog.format('Cast it to text in a view of yours (%I::text AS %I) and train on the view; see docs/data-contract.md.', pos_col, pos_col);
	END IF;
	has_closed_date := dealrisk._has_column(source, 'closed_date');

	-- Dictionaries and bin edges come from about 50,000 closed deals at most
	-- (a repeatable sample of a table's pages, or of a view's rows by deal_id,
	-- read once into a temporary table); counts and fits read every deal.
	-- A view's closed deals are counted to size its sample (and a table's
	-- when the catalog has no estimate).  A table's sample is first sized
	-- from the catalog's row estimate (no scan), then,
	-- when open deals or a stale estimate left it with fewer than 40,000
	-- closed deals, taken again at the share that gives 50,000 — or not at
	-- all when that share is the whole table.
	SELECT c.relkind IN ('r', 'm'), c.reltuples INTO is_table, n_rows
	FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF NOT is_table OR n_rows < 1 THEN
		-- a view, or a table never vacuumed or analyzed: count
		EXECUTE pg_catalog.format('SELECT count(*) FROM %s d WHERE %s', source, closed_filter) INTO n_rows;
	END IF;
	dict_source := source;
	share := CASE WHEN n_rows >= 1 THEN 50000 / n_rows ELSE 1 END;
	WHILE share < 1 LOOP
		DROP TABLE IF EXISTS pg_temp.dealrisk_train_sample;
		IF is_table THEN
			-- a table: read only a repeatable sample of its pages
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42) WHERE %s',
			                          source, 100 * share, closed_filter);
		ELSE
			EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_sample ON COMMIT DROP AS'
			                          ' SELECT * FROM %s d WHERE %s AND pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 100000 < %s',
			                          source, closed_filter, ceil(100000 * share)::int);
		END IF;
		GET DIAGNOSTICS n_sampled = ROW_COUNT;
		dict_source := 'pg_temp.dealrisk_train_sample'::regclass;
		EXIT WHEN NOT is_table OR resampled;
		-- the share of the table that the closed deals found imply for
		-- 50,000 of them: all of it (no sample), or another sample when
		-- this one came out short
		IF share * 50000 / greatest(n_sampled, 1) >= 1 THEN
			DROP TABLE pg_temp.dealrisk_train_sample;
			dict_source := source;
			EXIT;
		END IF;
		EXIT WHEN n_sampled >= 40000;
		share := share * 50000 / greatest(n_sampled, 1);
		resampled := true;
	END LOOP;

	IF has_closed_date THEN
		EXECUTE pg_catalog.format('SELECT percentile_disc($1) WITHIN GROUP (ORDER BY d.closed_date)'
		                          ' FROM %s d WHERE %s AND pg_catalog.isfinite(d.closed_date)', dict_source, closed_filter)
			INTO cutoff USING 1 - holdout;
	END IF;
	-- the newest closes are the holdout; without close dates (no column, or
	-- none filled in), a hash of deal_id picks it
	IF cutoff IS NOT NULL THEN
		train_expr := pg_catalog.format('d.closed_date < %L::date', cutoff);
		-- the passes skip open deals and pick their split themselves
		train_filter := 'true';
		split_train := 1;
	ELSE
		train_expr := pg_catalog.format('pg_catalog.abs(pg_catalog.hashtext(d.deal_id::text)::pg_catalog.int8) %% 1000 >= %s', (holdout * 1000)::int);
		train_filter := pg_catalog.format('%s AND %s', closed_filter, train_expr);
		test_filter := pg_catalog.format('%s AND NOT (%s)', closed_filter, train_expr);
		halflife := 0;
	END IF;

	-- the exact counts, the newest close and the rep win rates (over every
	-- closed deal, and over the training split for the holdout model), from
	-- one scan
	IF (features IS NULL OR 'sales_rep_id' = ANY (features)) AND dealrisk._has_column(source, 'sales_rep_id') THEN
		rate_key := 'sales_rep_id';
	END IF;
	SELECT * INTO census FROM dealrisk._census(source, rate_key, train_expr, has_closed_date);
	n_won := census.n_won;
	n_lost := census.n_lost;
	ref := census.ref;
	IF n_won < min_n OR n_lost < min_n THEN
		RAISE EXCEPTION 'not enough closed deals to train on: % has % won and % lost, at least % of each are needed',
			source, n_won, n_lost, min_n
			USING ERRCODE = 'insufficient_resources',
			      HINT = 'Collect more closed deals, or lower dealrisk.min_training_deals (at the price of a weaker model).';
	END IF;

	-- 1. the dictionaries, learned once from the closed deals (of the
	-- sample); the rep win rates from the census
	spec := dealrisk._build_spec(source, features, closed_filter, dict_source);
	spec_train := spec;
	SELECT o - 1 INTO pos FROM pg_catalog.jsonb_array_elements(spec->'features') WITH ORDINALITY e(f, o)
	WHERE f->>'kind' = 'rate';
	IF pos IS NOT NULL THEN
		IF census.rate_all IS NULL OR census.rate_train IS NULL THEN
			-- no rep on any (older) closed deal: leave the feature out
			spec := pg_catalog.jsonb_set(spec, '{features}', (spec->'features') - pos);
			spec_train := spec;
		ELSE
			spec := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_all);
			spec_train := pg_catalog.jsonb_set(spec, ARRAY['features', pos::text], census.rate_train);
		END IF;
	END IF;

	-- 2. fit on the older deals.  This fit is only measured (and starts the
	-- refit), so it stops once a Newton step promises less than 1e-3 of the
	-- log-likelihood: Newton's quadratic convergence leaves next to nothing
	-- after that step (docs/model.md); the stored model is fitted to 1e-5.
	fit := dealrisk._fit(source, spec_train, train_filter, split_train, cutoff, ref, halflife, l2, NULL,
	                     n_won::float8 / (n_won + n_lost), tolerance => 1e-3);

	-- 3. refit on every closed deal for the stored model, from the holdout
	-- fit; its first pass also measures the holdout fit on the newest deals
	IF cutoff IS NOT NULL THEN
		final_fit := dealrisk._fit(source, spec, 'true', 0, NULL, ref, halflife, l2, fit.beta, NULL,
		                           spec_train, cutoff);
		test_metrics := final_fit.eval_metrics;
	ELSE
		EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d WHERE %s',
		                          dealrisk._row_args(source, spec_train), source, test_filter)
			INTO test_metrics USING spec_train, fit.beta;
		final_fit := dealrisk._fit(source, spec, closed_filter, 0, NULL, ref, halflife, l2, fit.beta, NULL);
	END IF;
	IF test_metrics IS NULL THEN
		RAISE EXCEPTION 'the holdout of % is empty', source USING ERRCODE = 'no_data_found',
			HINT = 'Use a larger holdout share.';
	END IF;

	-- open deals: the survivor curves of age and stage time, fitted with
	-- the stored coefficients on the closed deals (of the sample)
	spec := dealrisk._open_terms(dict_source, closed_filter, spec, final_fit.beta, ref, halflife);

	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (train.name, source::text, spec || pg_catalog.jsonb_build_object('l2', l2, 'recency_halflife_days', halflife),
	        final_fit.beta,
	        test_metrics || pg_catalog.jsonb_build_object(
	            'n_train', fit.n_rows,
	            'n_test', (test_metrics->>'n')::bigint,
	            'won_total', n_won, 'lost_total', n_lost,
	            'iterations', final_fit.iterations, 'converged', final_fit.converged,
	            'holdout_iterations', fit.iterations, 'holdout', holdout,
	            'holdout_from', cutoff))
	RETURNING id INTO new_id;

	IF activate THEN
		problem := dealrisk._quality_problem(test_metrics);
		IF problem IS NULL THEN
			PERFORM dealrisk.activate(new_id);
		ELSE
			RAISE WARNING 'model % ("%") was stored but not activated: %', new_id, name, problem
				USING HINT = pg_catalog.format('Inspect it with SELECT metrics FROM dealrisk.models WHERE id = %s; activate anyway with dealrisk.activate(%s, force => true).', new_id, new_id);
		END IF;
	END IF;
	RETURN new_id;
END
$$;
