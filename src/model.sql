-- model.sql: the deal risk model: table, training, activation, export and
-- import, scoring and explanation (src/features.c, model.c, train.c, score.c).

CREATE TABLE dealrisk.models (
	id            bigserial PRIMARY KEY,
	name          text NOT NULL CHECK (btrim(name) <> ''),
	created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
	source        text,
	feature_spec  jsonb NOT NULL,
	coefficients  float8[] NOT NULL,
	metrics       jsonb NOT NULL DEFAULT '{}',
	active        boolean NOT NULL DEFAULT false,
	activated_at  timestamptz,
	trained_by    text DEFAULT CURRENT_USER
);
CREATE UNIQUE INDEX models_one_active_per_name ON dealrisk.models (name) WHERE active;
COMMENT ON TABLE dealrisk.models IS
	'Deal risk models: feature specification (with dictionaries and standardisation), coefficients (intercept first), holdout metrics; at most one active model per name';
COMMENT ON COLUMN dealrisk.models.trained_by IS
	'The role that stored the model (train() or import_model(), or an INSERT): a role granted INSERT on the other columns cannot set it; NULL for models stored before 0.3.0';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.models', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.models_id_seq', '');

CREATE TABLE dealrisk.model_activations (
	name          text NOT NULL,
	model_id      bigint NOT NULL REFERENCES dealrisk.models (id) ON DELETE CASCADE,
	activated_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	forced        boolean NOT NULL DEFAULT false
);
CREATE INDEX ON dealrisk.model_activations (name, activated_at);
COMMENT ON TABLE dealrisk.model_activations IS
	'History of model activations per name, used by dealrisk.rollback()';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.model_activations', '');

-- No trigger on dealrisk.models: a scoring call checks the row it scores
-- with under its snapshot (src/model.c, dr_model_lookup), and Citus cannot
-- make a table with triggers a reference table (dealrisk.distribute()).

CREATE FUNCTION dealrisk._validate_model(spec jsonb, coefficients float8[])
RETURNS int AS 'MODULE_PATHNAME', 'dr_validate_model'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._validate_model(jsonb, float8[]) IS
	'Checks a feature specification and its coefficients; returns the number of model columns or raises an error naming the problem (internal)';

-- Training and evaluation passes read each deal as its column values (row
-- type, column names, values: see _row_args), not as a composite value, so
-- a pass builds no row per deal and reads only the columns the model needs.

-- One IRLS pass: the state sums the weighted log-likelihood, gradient and
-- information of the closed deals at the given coefficients.
CREATE FUNCTION dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8,
	regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_irls_accum'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'IRLS pass transition (internal)';
-- split: 0 every closed deal, 1 closed before cutoff, 2 closed on or after
-- it; each deal weighs 0.5 ^ ((ref - closed_date) / halflife).
CREATE AGGREGATE dealrisk._irls_pass(spec jsonb, beta float8[], split int,
	cutoff date, ref date, halflife float8, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._irls_accum,
	STYPE = float8[],
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._irls_pass(jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'One Newton/IRLS pass over closed deals: {rows, weight, log-likelihood, gradient, information} (internal)';

CREATE FUNCTION dealrisk._model_columns(spec jsonb)
RETURNS text[] AS 'MODULE_PATHNAME', 'dr_model_columns'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._model_columns(jsonb) IS
	'The columns the encoder reads a row of a model from: contract columns by name, then feature columns (internal)';

-- The arguments that pass a row of source (alias d) to the passes above:
-- its row type, the names of the columns a model of spec reads, and those
-- columns.  A model reading more than 90 columns would exceed the 100
-- arguments a call can take: its rows are passed whole instead (row type,
-- NULL, d.*), which is slower but has no limit.
CREATE FUNCTION dealrisk._row_args(source regclass, spec jsonb)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN pg_catalog.count(*) > 90
	            THEN pg_catalog.format('%s::pg_catalog.regtype, NULL::text[], d.*', c.reltype::pg_catalog.oid)
	            ELSE pg_catalog.format('%s::pg_catalog.regtype, %L::text[], %s',
	                         c.reltype::pg_catalog.oid,
	                         pg_catalog.array_agg(a.attname::text ORDER BY a.attnum),
	                         pg_catalog.string_agg(pg_catalog.format('d.%I', a.attname), ', ' ORDER BY a.attnum)) END
	FROM pg_catalog.pg_class c
	JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
	WHERE c.oid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text = ANY (dealrisk._model_columns(spec))
	GROUP BY c.reltype
$$;
COMMENT ON FUNCTION dealrisk._row_args(regclass, jsonb) IS
	'Row type, column names and column list that pass the rows of a source to the training passes (internal)';

CREATE FUNCTION dealrisk._irls_solve(state float8[], beta float8[], l2 float8)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_irls_solve'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_solve(float8[], float8[], float8) IS
	'Newton step on the L2-penalised log-likelihood from an IRLS pass state (internal)';

CREATE FUNCTION dealrisk._irls_decrement(state float8[], beta float8[], new_beta float8[], l2 float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_irls_decrement'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._irls_decrement(float8[], float8[], float8[], float8) IS
	'Gain in penalised log-likelihood promised by a Newton step; tiny when converged (internal)';

CREATE FUNCTION dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], VARIADIC "any")
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_eval_accum'
LANGUAGE C STABLE PARALLEL SAFE;
CREATE FUNCTION dealrisk._eval_final(float8[])
RETURNS jsonb AS 'MODULE_PATHNAME', 'dr_eval_final'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], "any") IS
	'evaluation transition (internal)';
COMMENT ON FUNCTION dealrisk._eval_final(float8[]) IS 'evaluation final function: metrics as jsonb (internal)';
CREATE AGGREGATE dealrisk._evaluate(spec jsonb, beta float8[], split int, cutoff date,
	row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._eval_accum,
	STYPE = float8[],
	FINALFUNC = dealrisk._eval_final,
	COMBINEFUNC = dealrisk._float8_state_combine,
	INITCOND = '{}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._evaluate(jsonb, float8[], int, date, regtype, text[], "any") IS
	'Holdout metrics of coefficients on closed deals: AUC, log loss, Brier, accuracy, calibration (internal)';

-- Quantile edges of a numeric expression over a filtered source: distinct,
-- increasing, finite.
CREATE FUNCTION dealrisk._quantile_edges(source regclass, expr text, filter text, probs float8[])
RETURNS float8[]
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	edges float8[];
BEGIN
	-- one evaluation of expr per row: the ordered-set aggregate skips NULLs,
	-- and infinite or NaN values are left out as the encoder leaves them out
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_cont($1) WITHIN GROUP (ORDER BY x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x'
		' WHERE x.v NOT IN (''NaN'', ''Infinity'', ''-Infinity''))) q',
		expr, source, filter)
		INTO edges USING probs;
	RETURN edges;
END
$$;
COMMENT ON FUNCTION dealrisk._quantile_edges(regclass, text, text, float8[]) IS
	'Distinct quantiles of an expression over a source, used as bin edges (internal)';

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
	-- expr evaluated once per row; NULL, NaN and infinite values left out
	finite text := 'x.v NOT IN (''NaN'', ''Infinity'', ''-Infinity'')';
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(DISTINCT q ORDER BY q) FROM pg_catalog.unnest('
		'(SELECT percentile_disc($1) WITHIN GROUP (ORDER BY x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x WHERE %s)) q',
		expr, dict, filter, finite)
		INTO knots
		USING ARRAY(SELECT k / 20.0 FROM pg_catalog.generate_series(0, 19) k)::float8[] || '{0.975,0.99,1}'::float8[];
	IF pg_catalog.cardinality(knots) IS NULL THEN
		RETURN '{}';
	END IF;
	longest := knots[pg_catalog.cardinality(knots)];
	IF dict::pg_catalog.oid <> source::pg_catalog.oid THEN
		EXECUTE pg_catalog.format('SELECT max(x.v) FROM (SELECT (%s)::float8 AS v FROM %s d WHERE %s) x WHERE %s',
		                          expr, source, filter, finite)
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

-- The survivor curves' fit in one read of the closed deals: the rows an
-- _open_pass would sum are kept in memory (per curve, each deal's log-odds
-- without that feature and the knots its value reaches), and the final
-- function runs the Newton steps of _open_step over them until they
-- settle, then makes the curves non-increasing.  {passes, terms, the last
-- pass's state}, NULL without a closed deal.
CREATE FUNCTION dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8,
	regtype, text[], VARIADIC "any")
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'Survivor curve fit transition: keeps each closed deal''s weight, outcome, log-odds without the curve''s feature and knots reached (internal)';
CREATE FUNCTION dealrisk._open_rows_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows_combine'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_combine(internal, internal) IS
	'Survivor curve fit: the rows of two partial states (internal)';
CREATE FUNCTION dealrisk._open_rows_serial(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'dr_open_rows_serial'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_serial(internal) IS
	'Survivor curve fit: a partial state as bytea (internal)';
CREATE FUNCTION dealrisk._open_rows_deserial(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_open_rows_deserial'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_rows_deserial(bytea, internal) IS
	'Survivor curve fit: a partial state from bytea, every field checked (internal)';
CREATE FUNCTION dealrisk._open_fit_final(internal)
RETURNS float8[] AS 'MODULE_PATHNAME', 'dr_open_fit_final'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._open_fit_final(internal) IS
	'Survivor curve fit: the Newton steps over the kept rows; {passes, terms, state} (internal)';
CREATE AGGREGATE dealrisk._open_fit(spec jsonb, beta float8[], split int, cutoff date, ref date,
	halflife float8, row_type regtype, columns text[], VARIADIC "any") (
	SFUNC = dealrisk._open_rows,
	STYPE = internal,
	FINALFUNC = dealrisk._open_fit_final,
	COMBINEFUNC = dealrisk._open_rows_combine,
	SERIALFUNC = dealrisk._open_rows_serial,
	DESERIALFUNC = dealrisk._open_rows_deserial,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any") IS
	'The survivor curves'' fit over closed deals in one read: {passes, terms, state of the last pass} (internal)';

-- The survivor curves of open deals for the features of spec that have
-- knots, fitted with coefficients beta on the closed deals of source that
-- pass filter (weighted as in training: ref, halflife): spec with each
-- such feature's open_terms, open_closed and open_won (docs/model.md).
CREATE FUNCTION dealrisk._open_terms(source regclass, filter text, spec jsonb, beta float8[],
	ref date, halflife float8)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n int;
	res float8[];
	terms float8[];
	state float8[];
BEGIN
	SELECT coalesce(sum(pg_catalog.jsonb_array_length(e->'open_knots')), 0) INTO n
	FROM pg_catalog.jsonb_array_elements(spec->'features') e
	WHERE pg_catalog.jsonb_typeof(e->'open_knots') = 'array';
	IF n = 0 THEN
		RETURN spec;
	END IF;
	EXECUTE pg_catalog.format('SELECT dealrisk._open_fit($1, $2, 0, NULL, $3, $4, %s) FROM %s d WHERE %s',
	                          dealrisk._row_args(source, spec), source, filter)
		INTO res USING spec, beta, ref, halflife;
	IF res IS NULL THEN
		RETURN spec;	-- no closed deal: open deals stay binned
	END IF;
	terms := res[2:n + 1];
	state := res[n + 2:];
	RAISE NOTICE 'dealrisk.train: survivor curves of open deals fitted in % passes', res[1]::int;
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

-- One scan of the closed deals of source for what training needs exactly
-- (the dictionaries come from a sample): won and lost counts, the newest
-- close date, and the shrunk win-rate feature of column key (the rep) twice,
-- over every closed deal and over those for which train_expr holds (the
-- holdout model's).  Each rate feature holds per key the won and closed
-- counts, the overall rate (prior) they are shrunk toward with a strength of
-- 20 deals, and the mean and sd of the shrunk rate over deals, for
-- standardising.  key NULL: counts and date only.
CREATE FUNCTION dealrisk._census(source regclass, key text, train_expr text, has_closed_date boolean,
	OUT n_won bigint, OUT n_lost bigint, OUT ref date, OUT rate_all jsonb, OUT rate_train jsonb)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	EXECUTE pg_catalog.format($q$
		WITH g AS (
			SELECT %s k, dealrisk.is_won(d.outcome) won, count(*) n, count(*) FILTER (WHERE %s) nb, %s m
			FROM %s d GROUP BY 1, 2),
		c AS (
			SELECT k, coalesce(sum(n) FILTER (WHERE won), 0)::float8 w, sum(n)::float8 n,
			       coalesce(sum(nb) FILTER (WHERE won), 0)::float8 wb, sum(nb)::float8 nb, max(m) m
			FROM g WHERE won IS NOT NULL GROUP BY k),
		a AS (SELECT 'all' part, k, w, n FROM c WHERE k IS NOT NULL
		      UNION ALL SELECT 'train', k, wb, nb FROM c WHERE k IS NOT NULL AND nb > 0),
		p AS (SELECT part, sum(w) / sum(n) prior FROM a GROUP BY part),
		r AS (SELECT a.part, a.n, (a.w + $1 * p.prior) / (a.n + $1) rate FROM a JOIN p USING (part)),
		m AS (SELECT part, sum(n * rate) / sum(n) mean, sum(n * rate * rate) / sum(n) sq FROM r GROUP BY part),
		f AS (
			SELECT p.part, pg_catalog.jsonb_build_object(
				'name', 'rep_win_rate', 'kind', 'rate', 'column', $2,
				'prior', p.prior, 'strength', $1::float8, 'mean', m.mean,
				'sd', CASE WHEN m.sq - m.mean * m.mean > 1e-18 THEN sqrt(m.sq - m.mean * m.mean) ELSE 1 END,
				'levels', (SELECT pg_catalog.jsonb_agg(k ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part),
				'won', (SELECT pg_catalog.jsonb_agg(w ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part),
				'closed', (SELECT pg_catalog.jsonb_agg(n ORDER BY k COLLATE "C") FROM a WHERE a.part = p.part)) j
			FROM p JOIN m USING (part))
		SELECT coalesce(sum(w), 0)::bigint, coalesce(sum(n - w), 0)::bigint, max(m),
		       (SELECT j FROM f WHERE part = 'all'), (SELECT j FROM f WHERE part = 'train')
		FROM c $q$,
		CASE WHEN key IS NULL THEN 'NULL::text' ELSE pg_catalog.format('d.%I::text', key) END,
		train_expr,
		CASE WHEN has_closed_date THEN 'max(d.closed_date) FILTER (WHERE pg_catalog.isfinite(d.closed_date))'
		     ELSE 'NULL::date' END,
		source)
		INTO n_won, n_lost, ref, rate_all, rate_train USING 20::float8, key;
END
$$;
COMMENT ON FUNCTION dealrisk._census(regclass, text, text, boolean) IS
	'Won and lost counts, newest close date and the rep win-rate features (all deals, training split) of a source, from one scan (internal)';

-- A feature as train(features => ...) names it: a derived feature or a
-- column, optionally followed by how a numeric column enters the model:
-- 'days_in_stage:bins' (the default: quantile bins, each with its own
-- weight) or 'days_in_stage:linear' (one standardised number).  A name that
-- is itself a column of the source is taken whole.  Returns the column (or
-- derived feature) and the entry (NULL when none was given).
CREATE FUNCTION dealrisk._feature_entry(source regclass, feature text, OUT col text, OUT entry text)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	typ text;
BEGIN
	IF feature IS NULL OR pg_catalog.btrim(feature) = '' THEN
		RAISE EXCEPTION 'a feature name must not be NULL or empty, got %', coalesce(pg_catalog.quote_literal(feature), 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	col := feature;
	IF pg_catalog.strpos(feature, ':') = 0 OR dealrisk._has_column(source, feature) THEN
		RETURN;
	END IF;
	col := pg_catalog.substring(feature, '^(.*):');
	entry := pg_catalog.lower(pg_catalog.btrim(pg_catalog.substring(feature, ':([^:]*)$')));
	IF entry NOT IN ('bins', 'linear') THEN
		RAISE EXCEPTION 'unknown entry "%" in feature "%"', pg_catalog.substring(feature, ':([^:]*)$'), feature
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A numeric column enters the model as quantile bins (column or column:bins) or as one standardised number (column:linear).';
	END IF;
	SELECT pg_catalog.format_type(a.atttypid, NULL) INTO typ
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attname::text = col AND a.attnum > 0 AND NOT a.attisdropped;
	IF typ IS NULL OR typ NOT IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
		RAISE EXCEPTION 'feature "%": only a numeric column of % can be entered as %, and "%" is %', feature, source, entry, col,
			CASE WHEN typ IS NOT NULL THEN 'of type ' || typ
			     WHEN col IN ('cycle_days', 'stage_time', 'activity_gap') THEN 'a derived feature (always bins)'
			     ELSE 'not a column of it' END
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Write column:linear or column:bins for a numeric column; other features take no entry.';
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._feature_entry(regclass, text) IS
	'The column (or derived feature) a feature name of train() reads and how a numeric column enters the model (bins, linear, or NULL for the default bins); an unknown entry is an error (internal)';

-- Features that record the outcome instead of predicting it: columns of
-- source among features (default: the contract's feature columns it has;
-- derived features and names that are no column are skipped) that are
--   - filled on closed deals and empty on open ones (at least 10 open
--     deals, at most 5% of them filled, at least half of the closed deals
--     filled): the value is written when a deal closes (a close value, a
--     close reason), so it is unknown for the deals to be scored;
--   - or whose value alone separates won from lost closed deals almost
--     perfectly: the AUC of the value's own win rate, each closed deal
--     scored by the win rate of its level without itself (shrunk toward the
--     overall rate by 20 deals), is at least 0.95 (at least 10 won and 10
--     lost deals).  Levels are the text of a text column and the decile of
--     a number (a value many deals share, such as the 0 of every lost deal,
--     is a level of its own rather than the low end of a decile); empty
--     ('', NULL, NaN, +-Infinity) is a level too, so a column filled only on
--     won deals separates as well.  Leaving a deal out of its own level's
--     rate keeps a column with a value per deal (an id, a note) at chance,
--     and the shrinking keeps small levels near the overall rate: an honest
--     strong feature (a rep who wins 70%) stays far below 0.95.
-- One row per leaking feature, named as given, with why in words.  Reads
-- the source twice at most, in one statement (the deciles of the number
-- columns, then the levels of every column with a grouping set per
-- column); of a table of more than 60,000 rows, a repeatable sample of its
-- pages of about 30,000 rows, which tells shares and a near-perfect
-- separation as well as every row would.  _feature_leak_sql writes that
-- statement: over the source (or its sample), or over the rows of it that
-- the calling statement holds in src (materialized => true: check_source
-- reads the source once), unless it samples the source.
CREATE FUNCTION dealrisk._feature_leak_sql(source regclass, features text[], materialized boolean,
	OUT query text, OUT sampled boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	names text[] := '{}';
	cols text[] := '{}';
	kinds text[] := '{}';
	types text[] := '{}';
	f text;
	c text;
	t text;
	kind "char";
	est float8;
	scan text;
	sample_words text := '';
	num text;
	lv text;
	sel text := '';
	vals text := '';
	i int;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	FOREACH f IN ARRAY coalesce(features, ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount']) LOOP
		CONTINUE WHEN features IS NULL AND NOT dealrisk._has_column(source, f);
		c := (dealrisk._feature_entry(source, f)).col;
		SELECT pg_catalog.format_type(a.atttypid, NULL) INTO t
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attname::text = c AND a.attnum > 0 AND NOT a.attisdropped;
		CONTINUE WHEN t IS NULL OR c = ANY (cols) OR c IN ('cycle_days', 'stage_time', 'activity_gap');
		IF t IN ('text', 'character varying', 'character', 'boolean') THEN
			kinds := kinds || 'text'::text;
		ELSIF t IN ('numeric', 'integer', 'bigint', 'smallint', 'real', 'double precision') THEN
			kinds := kinds || 'number'::text;
		ELSE
			CONTINUE;	-- not a type a feature can have: train() says so
		END IF;
		names := names || f;
		cols := cols || c;
		types := types || t;
	END LOOP;
	sampled := false;
	IF pg_catalog.cardinality(cols) = 0 THEN
		RETURN;
	END IF;
	-- the columns' types run no less trusted role's code when read
	PERFORM dealrisk._check_source(source, ARRAY['outcome'] || cols);

	SELECT r.relkind, r.reltuples INTO kind, est FROM pg_catalog.pg_class r WHERE r.oid = source::pg_catalog.oid;
	scan := CASE WHEN materialized THEN 'src d' ELSE pg_catalog.format('%s d', source) END;
	IF kind IN ('r', 'm') AND est > 60000 THEN
		scan := pg_catalog.format('%s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42)', source, 100 * 30000 / est);
		sampled := true;
		sample_words := ' sampled';
	END IF;

	-- a number column's finite values; its deciles over the closed deals
	-- (one scan for all of them), each an array of the column's type in
	-- the one row of q
	SELECT pg_catalog.string_agg(pg_catalog.format(
	           'percentile_disc(%L::float8[]) WITHIN GROUP (ORDER BY %s) AS q%s', '{0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9}',
	           CASE WHEN types[k] IN ('numeric', 'real', 'double precision')
	                THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[k])
	                ELSE pg_catalog.format('d.%I', cols[k]) END, k), ', ' ORDER BY k)
	INTO num
	FROM pg_catalog.generate_subscripts(cols, 1) k WHERE kinds[k] = 'number';

	-- each column's level per deal (NULL when empty), counted by outcome
	-- class: the columns unpivoted to (k, level) rows and counted in one
	-- GROUP BY (GROUPING SETS would do the same, but Citus cannot run them
	-- on a distributed table)
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		IF kinds[i] = 'text' THEN
			lv := pg_catalog.format('CASE WHEN pg_catalog.btrim(d.%1$I::text) <> '''' THEN d.%1$I::text END', cols[i]);
		ELSE
			lv := pg_catalog.format('CASE WHEN %1$s = ANY (q.q%2$s) THEN ''='' || (%1$s)::text ELSE pg_catalog.width_bucket(%1$s, q.q%2$s)::text END',
			                        CASE WHEN types[i] IN ('numeric', 'real', 'double precision')
			                             THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[i])
			                             ELSE pg_catalog.format('d.%I', cols[i]) END, i);
		END IF;
		sel := sel || pg_catalog.format(', %s AS l%s', lv, i);
		vals := vals || pg_catalog.format(', (%1$s, x.l%1$s)', i);
	END LOOP;

	query := pg_catalog.format($q$
		WITH %s
		g AS (
			SELECT u.k, u.v, x.cls, count(*) n
			FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') cls %s FROM %s) x
			CROSS JOIN LATERAL (VALUES %s) u(k, v)
			GROUP BY u.k, u.v, x.cls),
		lv AS (
			SELECT k, v, coalesce(sum(n) FILTER (WHERE cls = 'won'), 0) w, coalesce(sum(n) FILTER (WHERE cls = 'lost'), 0) l,
			       coalesce(sum(n) FILTER (WHERE cls = 'open'), 0) o
			FROM g GROUP BY k, v),
		tot AS (
			SELECT k, sum(w) w, sum(l) l, sum(o) o,
			       coalesce(sum(w + l) FILTER (WHERE v IS NOT NULL), 0) filled_closed,
			       coalesce(sum(o) FILTER (WHERE v IS NOT NULL), 0) filled_open
			FROM lv GROUP BY k),
		-- the score of a level's won deals and of its lost deals: the
		-- level's win rate without the deal, shrunk toward the overall rate
		sc AS (
			SELECT lv.k, s.score, sum(s.nw) nw, sum(s.nl) nl
			FROM lv JOIN tot USING (k),
			LATERAL (VALUES
				(pg_catalog.round((lv.w - 1 + 20 * tot.w / (tot.w + tot.l)) / (lv.w + lv.l - 1 + 20), 12), lv.w, 0::numeric),
				(pg_catalog.round((lv.w + 20 * tot.w / (tot.w + tot.l)) / (lv.w + lv.l - 1 + 20), 12), 0, lv.l)) s(score, nw, nl)
			WHERE tot.w > 0 AND tot.l > 0 AND lv.w + lv.l > 0
			GROUP BY lv.k, s.score),
		-- AUC: the chance that a won deal scores above a lost one (ties half)
		auc AS (
			SELECT k, sum(nw * (below + nl / 2)) / (sum(nw) * sum(nl)) auc
			FROM (SELECT k, nw, nl, coalesce(sum(nl) OVER (PARTITION BY k ORDER BY score
			                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) below
			      FROM sc) x
			GROUP BY k HAVING sum(nw) > 0 AND sum(nl) > 0),
		why AS (
			SELECT t.k,
			       CASE WHEN t.o >= 10 AND t.filled_open <= 0.05 * t.o AND t.filled_closed >= 0.5 * (t.w + t.l)
			            THEN pg_catalog.format('it is filled on %%s%%%% of the closed deals but on %%s%%%% of the %%s open deals%s: it is written when a deal closes, so it is unknown for the deals to be scored',
			                                   pg_catalog.round(100 * t.filled_closed / (t.w + t.l)),
			                                   pg_catalog.round(100 * t.filled_open / t.o), t.o) END fill,
			       CASE WHEN t.w >= 10 AND t.l >= 10 AND a.auc >= 0.95
			            THEN pg_catalog.format('its value alone separates won from lost closed deals almost perfectly (single-feature AUC %%s over %%s closed deals%s): it records the outcome rather than predicting it',
			                                   pg_catalog.round(a.auc, 3), t.w + t.l) END sep
			FROM tot t LEFT JOIN auc a USING (k))
		SELECT k, (%L::text[])[k] feature, pg_catalog.concat_ws('; and ', fill, sep) reason
		FROM why WHERE fill IS NOT NULL OR sep IS NOT NULL $q$,
		CASE WHEN num IS NOT NULL
		     THEN pg_catalog.format('q AS (SELECT %s FROM %s WHERE dealrisk.outcome_class(d.outcome::text) IN (''won'', ''lost'')),', num, scan)
		     ELSE '' END,
		sel, scan || CASE WHEN num IS NOT NULL THEN ' CROSS JOIN q' ELSE '' END, pg_catalog.substr(vals, 3), sample_words, sample_words, names);
END
$$;
COMMENT ON FUNCTION dealrisk._feature_leak_sql(regclass, text[], boolean) IS
	'The statement that finds the feature columns of a source that record the outcome (k, feature, reason), over the source, its sample (sampled) or the rows the calling statement holds in src; NULL when there is no column to check (internal)';

CREATE FUNCTION dealrisk._feature_leaks(source regclass, features text[] DEFAULT NULL)
RETURNS TABLE (feature text, reason text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	leak record;
BEGIN
	SELECT * INTO leak FROM dealrisk._feature_leak_sql(source, features, false);
	IF leak.query IS NOT NULL THEN
		RETURN QUERY EXECUTE pg_catalog.format('SELECT l.feature, l.reason FROM (%s) l ORDER BY l.k', leak.query);
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._feature_leaks(regclass, text[]) IS
	'Feature columns of a source that record the outcome: filled on closed deals but empty on open ones, or separating won from lost almost perfectly on their own; one row per feature with the reason (internal)';

-- The feature specification learned from the closed deals of source that
-- pass filter: dictionaries, bin edges, typical stage times.  They are
-- learned from dict_source (a sample of source; default source itself); the
-- rep win-rate feature, which needs exact counts, is left as a placeholder
-- for the caller to fill from _census.
-- The SQL expression, over rows d of source, of a number the encoder
-- derives from dates (derived: age_days, stage_days, stage_ratio with the
-- typical days per stage, activity_gap): a call of dealrisk._feature_raw.
CREATE FUNCTION dealrisk._raw_expr(source regclass, derived text, typical jsonb DEFAULT NULL)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT pg_catalog.format('dealrisk._feature_raw(%L::jsonb, %s)', s.spec, dealrisk._row_args(source, s.spec))
	FROM (SELECT pg_catalog.jsonb_build_object('features', pg_catalog.jsonb_build_array(
		pg_catalog.jsonb_build_object('name', derived, 'kind', 'numeric', 'derived', derived, 'mean', 0, 'sd', 1)
		|| CASE WHEN typical IS NOT NULL THEN pg_catalog.jsonb_build_object('typical', typical) ELSE '{}' END))) s(spec)
$$;
COMMENT ON FUNCTION dealrisk._raw_expr(regclass, text, jsonb) IS
	'The SQL expression of a number derived from a deal''s dates, computed by the encoder (internal)';

CREATE FUNCTION dealrisk._feature_raw(spec jsonb, row_type regtype, columns text[], VARIADIC "any")
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_feature_raw'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._feature_raw(jsonb, regtype, text[], "any") IS
	'The number the encoder derives for a spec''s first feature from a row passed as values, NULL when missing (internal)';

CREATE FUNCTION dealrisk._build_spec(source regclass, features text[], filter text,
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

CREATE FUNCTION dealrisk._as_of()
RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(nullif(pg_catalog.current_setting('dealrisk.as_of_date', true), '')::date, CURRENT_DATE) $$;
COMMENT ON FUNCTION dealrisk._as_of() IS
	'The date open deals are scored at: dealrisk.as_of_date when set, else today (internal)';

-- Fit the coefficients of a spec by IRLS on the closed deals passing filter
-- and split (see _irls_pass), starting from beta0 (NULL: the intercept at the
-- log-odds of prior).  Each iteration is one aggregate pass; it stops when
-- the Newton step promises less than tolerance (relative) more
-- log-likelihood, and returns the coefficients after that last step.
CREATE FUNCTION dealrisk._fit(source regclass, spec jsonb, filter text, split int, cutoff date,
	ref date, halflife float8, l2 float8, beta0 float8[], prior float8,
	eval_spec jsonb DEFAULT NULL, eval_cutoff date DEFAULT NULL, tolerance float8 DEFAULT 1e-5,
	OUT beta float8[], OUT iterations int, OUT converged boolean, OUT loglik float8,
	OUT eval_metrics jsonb, OUT n_rows bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p int := dealrisk._validate_model(spec, NULL);
	state float8[];
	next float8[];
	gain float8;
	q text := pg_catalog.format('SELECT dealrisk._irls_pass($1, $2, $3, $4, $5, $6, %s) FROM %s d WHERE %s',
	                            dealrisk._row_args(source, spec), source, filter);
BEGIN
	beta := coalesce(beta0, pg_catalog.array_fill(0::float8, ARRAY[p]));
	IF beta0 IS NULL AND prior > 0 AND prior < 1 THEN
		beta[1] := ln(prior / (1 - prior));
	END IF;
	converged := false;
	FOR i IN 1 .. 30 LOOP
		IF i = 1 AND eval_spec IS NOT NULL THEN
			-- the same scan also scores the holdout (closed from eval_cutoff
			-- on) with the starting coefficients and eval_spec
			EXECUTE pg_catalog.format('SELECT dealrisk._irls_pass($1, $2, $3, $4, $5, $6, %s),'
			                          ' dealrisk._evaluate($7, $2, 2, $8, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec), dealrisk._row_args(source, eval_spec),
			                          source, filter)
				INTO state, eval_metrics USING spec, beta, split, cutoff, ref, halflife, eval_spec, eval_cutoff;
		ELSE
			EXECUTE q INTO state USING spec, beta, split, cutoff, ref, halflife;
		END IF;
		IF state IS NULL OR pg_catalog.cardinality(state) = 0 OR state[1] = 0 THEN
			RAISE EXCEPTION 'no closed deal in % to train on', source USING ERRCODE = 'no_data_found';
		END IF;
		n_rows := state[1];
		loglik := state[3] - l2 / 2 * (SELECT coalesce(sum(b * b), 0) FROM pg_catalog.unnest(beta[2:]) b);
		RAISE NOTICE 'dealrisk.train: iteration %, penalised log-likelihood %', i, pg_catalog.round(loglik::numeric, 4);
		next := dealrisk._irls_solve(state, beta, l2);
		gain := dealrisk._irls_decrement(state, beta, next, l2);
		beta := next;
		iterations := i;
		-- Newton converges quadratically: once a step promises less than
		-- the tolerance, what is left after it is negligible
		IF gain <= tolerance * (abs(loglik) + 1) THEN
			converged := true;
			EXIT;
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION dealrisk._fit(regclass, jsonb, text, int, date, date, float8, float8, float8[], float8, jsonb, date, float8) IS
	'IRLS driver: one aggregate pass per Newton step until the step promises no more gain (internal)';

-- A holdout AUC above dealrisk.max_plausible_auc (0.95) is a problem too:
-- deals are won and lost for reasons no CRM records, so a model that ranks
-- them almost perfectly has most likely been shown the outcome (a field
-- filled in at close) and would call every open deal safe.
CREATE FUNCTION dealrisk._quality_problem(metrics jsonb)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE
		WHEN metrics->>'auc' IS NULL THEN 'it has no holdout AUC (the holdout had only one outcome)'
		WHEN (metrics->>'auc')::float8 > coalesce(nullif(pg_catalog.current_setting('dealrisk.max_plausible_auc', true), ''), '0.95')::float8 THEN
			pg_catalog.format('its holdout AUC %s is implausibly high for CRM data (above dealrisk.max_plausible_auc = %s): a feature most likely records the outcome, such as a value or reason filled in when a deal closes',
			                  pg_catalog.round((metrics->>'auc')::numeric, 3),
			                  coalesce(nullif(pg_catalog.current_setting('dealrisk.max_plausible_auc', true), ''), '0.95'))
		WHEN (metrics->>'auc')::float8 < 0.55 THEN
			pg_catalog.format('its holdout AUC %s is below 0.55: it ranks deals little better than chance',
			                  pg_catalog.round((metrics->>'auc')::numeric, 3))
		WHEN (metrics->>'brier')::float8 >= (metrics->>'brier_base')::float8 THEN
			pg_catalog.format('its holdout Brier score %s is no better than always predicting the base rate (%s)',
			                  pg_catalog.round((metrics->>'brier')::numeric, 4),
			                  pg_catalog.round((metrics->>'brier_base')::numeric, 4))
	END
$$;
COMMENT ON FUNCTION dealrisk._quality_problem(jsonb) IS
	'Why a model''s holdout metrics are not good enough (or too good to be true) to activate, or NULL when they are fine (internal)';

CREATE FUNCTION dealrisk.activate(model_id bigint, force boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
	problem text;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM dealrisk._validate_model(m.feature_spec, m.coefficients);
	problem := dealrisk._quality_problem(m.metrics);
	IF problem IS NOT NULL AND NOT force THEN
		RAISE EXCEPTION 'model % ("%") was not activated: %', m.id, m.name, problem
			USING ERRCODE = 'check_violation',
			      HINT = pg_catalog.format('Collect more or better data, or pass force => true: SELECT dealrisk.activate(%s, force => true).', m.id);
	END IF;
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('dealrisk.models:' || m.name));
	UPDATE dealrisk.models SET active = false WHERE name = m.name AND active AND id <> m.id;
	UPDATE dealrisk.models SET active = true, activated_at = pg_catalog.now() WHERE id = m.id;
	INSERT INTO dealrisk.model_activations (name, model_id, forced) VALUES (m.name, m.id, problem IS NOT NULL);
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.activate(bigint, boolean) IS
	'Makes a model the active one of its name; refused (unless force) when its holdout AUC < 0.55, implausibly high (> dealrisk.max_plausible_auc) or its Brier score is no better than the base rate';

CREATE FUNCTION dealrisk.rollback(name text DEFAULT 'default')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur bigint;
	prev bigint;
BEGIN
	SELECT id INTO cur FROM dealrisk.models m WHERE m.name = rollback.name AND m.active;
	SELECT a.model_id INTO prev FROM dealrisk.model_activations a
	WHERE a.name = rollback.name AND a.model_id IS DISTINCT FROM cur
	  -- (on Citus the activations keep no foreign key: see distribute())
	  AND EXISTS (SELECT 1 FROM dealrisk.models x WHERE x.id = a.model_id)
	  AND a.activated_at < coalesce((SELECT max(b.activated_at) FROM dealrisk.model_activations b
	                                 WHERE b.name = rollback.name AND b.model_id = cur), 'infinity')
	ORDER BY a.activated_at DESC LIMIT 1;
	IF prev IS NULL THEN
		RAISE EXCEPTION 'model name "%" has no previously active model to return to', rollback.name
			USING ERRCODE = 'no_data_found';
	END IF;
	UPDATE dealrisk.models SET active = false WHERE models.name = rollback.name AND active;
	UPDATE dealrisk.models SET active = true, activated_at = pg_catalog.now() WHERE id = prev;
	INSERT INTO dealrisk.model_activations (name, model_id, forced) VALUES (rollback.name, prev, true);
	RETURN prev;
END
$$;
COMMENT ON FUNCTION dealrisk.rollback(text) IS
	'Re-activates the model that was active before the current one of this name; returns its id';

CREATE FUNCTION dealrisk.train(source regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true,
	method text DEFAULT 'auto', params jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
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
	source_name text := source::text;
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
	has_created boolean;
	has_cycle boolean;
	want text[];
	kept text[] := '{}';
	kept_cols text[] := '{}';
	feat text;
	fcol text;
	why text;
	left_out jsonb := '{}';
	leak record;
	leaks text;
	split_why text;
	pre record;
	preflight jsonb := '[]';
	hold_expr text;
	gbm_spec jsonb;
	gbm_beta float8[];
	gbm_metrics jsonb;
	gbm_info jsonb;
	gbm_hspec jsonb;
	gbm_hbeta float8[];
	pair float8[];
	gain float8;
	gain_se float8;
	auto_info jsonb := '{}';
	log_spec jsonb;
	log_metrics jsonb;
	cand jsonb := '{}';
	chosen text;
	stored_spec jsonb;
	stored_beta float8[];
	method_metrics jsonb;
BEGIN
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings
	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	halflife := pg_catalog.current_setting('dealrisk.recency_halflife_days')::float8;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- train('deals', 'stage_history') names a model: a history is passed
	-- as history => ...; say so when the name is that of a stage history
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c
	           WHERE c.relname OPERATOR(pg_catalog.=) train.name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
	             AND (SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute a
	                  WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND a.attnum > 0 AND NOT a.attisdropped
	                    AND a.attname IN ('deal_id', 'stage', 'entered_at')) = 3) THEN
		RAISE WARNING 'dealrisk.train: the model is named "%", like a stage history: this trains on final states, not point in time', name
			USING HINT = pg_catalog.format('For a point-in-time model pass the history by name: dealrisk.train(%L, history => %L).',
			                               source::text, name);
	END IF;
	IF l2 IS NULL OR NOT (l2 >= 0) OR l2 IN ('Infinity', 'NaN') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', coalesce(l2::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF method IS NULL OR method NOT IN ('auto', 'logistic', 'gbm') THEN
		RAISE EXCEPTION 'unknown training method "%"', method USING ERRCODE = 'invalid_parameter_value',
			HINT = 'Methods are ''logistic'' (L2 logistic regression), ''gbm'' (gradient-boosted trees) and ''auto'' (both; the better holdout log loss is kept).';
	END IF;
	IF params IS NOT NULL AND method = 'logistic' THEN
		RAISE EXCEPTION 'params are the boosting parameters of methods ''gbm'' and ''auto'', not of method ''logistic'''
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The logistic model takes l2 => ...; leave params out, or train with method => ''gbm''.';
	END IF;
	params := dealrisk._gbm_params(params);
	IF holdout IS NULL OR NOT (holdout > 0 AND holdout < 0.9) THEN
		RAISE EXCEPTION 'holdout must be a share between 0 and 0.9, got %', coalesce(holdout::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- activation is the operator's: a role that may not activate (an
	-- analyst) trains candidates, and hears so before the work is done
	IF activate AND NOT (pg_catalog.has_function_privilege('dealrisk.activate(bigint, boolean)', 'EXECUTE')
	                     AND pg_catalog.has_column_privilege('dealrisk.models', 'active', 'UPDATE')
	                     AND pg_catalog.has_table_privilege('dealrisk.model_activations', 'INSERT')) THEN
		RAISE EXCEPTION 'role % may train models but not activate them', CURRENT_USER
			USING ERRCODE = 'insufficient_privilege',
			      HINT = 'Train a candidate with dealrisk.train(..., activate => false); a role that may activate models (the operator) activates it with dealrisk.activate(id).';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
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
	-- The preflight: an error stops training; a warning is a NOTICE and
	-- stays in the model's metrics (missing columns and leaks are reported
	-- feature by feature below).
	FOR pre IN SELECT * FROM dealrisk.check_source(source) c WHERE c.severity IN ('error', 'warning') LOOP
		IF pre.severity = 'error' THEN
			RAISE EXCEPTION 'cannot train on %: %', source, pre.finding
				USING ERRCODE = CASE pre."check" WHEN 'outcome_labels' THEN 'invalid_parameter_value'
				                                 WHEN 'outcomes' THEN 'insufficient_resources'
				                                 WHEN 'column_types' THEN 'datatype_mismatch'
				                                 ELSE 'data_exception' END,
				      DETAIL = pg_catalog.format('dealrisk.check_source(%L) reports it as %s.', source::text, pre."check"),
				      HINT = coalesce(pre.hint, 'See SELECT * FROM dealrisk.check_source(source).');
		END IF;
		preflight := preflight || pg_catalog.jsonb_build_object('check', pre."check", 'finding', pre.finding);
		IF pre."check" NOT IN ('columns', 'outcome_leaks') THEN
			RAISE NOTICE 'dealrisk.train: % (%)', pre.finding, pre."check";
		END IF;
	END LOOP;
	has_closed_date := dealrisk._has_column(source, 'closed_date');
	has_created := dealrisk._has_column(source, 'created_date');
	has_cycle := dealrisk._has_column(source, 'sales_cycle_days');

	-- The features: those asked for, or the contract's.  A default one
	-- the source cannot support is left out (a NOTICE, and metrics ->
	-- 'features_left_out' say why); one asked for is an error.  The dates
	-- decide the derived ones: a deal's age needs created_date for open
	-- deals and closed_date (or sales_cycle_days) for closed ones; time in
	-- stage and the activity gap run to the close, so they need closed_date.
	want := coalesce(features, ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id',
	                                 'deal_amount', 'cycle_days', 'stage_time', 'activity_gap']);
	-- the rows of a point-in-time source (train(source, history => ...))
	-- show each deal's stage on a day it was open: a feature, not a leak
	IF features IS NULL AND dealrisk._has_column(source, 'dealrisk_as_of') AND dealrisk._has_column(source, 'deal_stage') THEN
		want := want || 'deal_stage'::text;
	END IF;
	FOREACH feat IN ARRAY want LOOP
		fcol := (dealrisk._feature_entry(source, feat)).col;
		IF fcol = ANY (kept_cols) THEN
			RAISE EXCEPTION 'feature "%" is named twice', fcol USING ERRCODE = 'invalid_parameter_value';
		END IF;
		why := CASE
			WHEN fcol = 'cycle_days' AND NOT has_created THEN
				'the source has no created_date column, so the age of an open deal is unknown'
			WHEN fcol = 'cycle_days' AND NOT (has_closed_date OR has_cycle) THEN
				'the source has neither closed_date nor sales_cycle_days, so how long a closed deal took is unknown'
			WHEN fcol = 'stage_time' AND NOT dealrisk._has_column(source, 'deal_stage') THEN
				'the source has no deal_stage column'
			WHEN fcol = 'stage_time' AND NOT has_created THEN
				'the source has no created_date column, which time in stage counts from when stage_entered_date is empty'
			WHEN fcol = 'stage_time' AND NOT has_closed_date THEN
				'the source has no closed_date column, so how long a closed deal stayed in its stage is unknown'
			WHEN fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date') THEN
				'the source has no last_activity_date column'
			WHEN fcol = 'activity_gap' AND NOT has_closed_date THEN
				'the source has no closed_date column, so the gap before a deal closed is unknown'
			WHEN features IS NULL AND fcol NOT IN ('cycle_days', 'stage_time', 'activity_gap')
			     AND NOT dealrisk._has_column(source, fcol) THEN
				pg_catalog.format('the source has no %s column', fcol)
		END;
		IF why IS NOT NULL AND features IS NOT NULL THEN
			RAISE EXCEPTION 'feature "%" cannot be learned from %: %', feat, source, why
				USING ERRCODE = 'undefined_column',
				      HINT = 'Leave it out of features, or add the column (a view can map it).';
		ELSIF why IS NOT NULL THEN
			-- the default activity gap of a source without activity dates
			-- was always left out quietly
			IF NOT (fcol = 'activity_gap' AND NOT dealrisk._has_column(source, 'last_activity_date')) THEN
				RAISE NOTICE 'dealrisk.train: feature % left out: %', fcol, why;
			END IF;
			left_out := left_out || pg_catalog.jsonb_build_object(fcol, why);
		ELSE
			kept := kept || feat;
			kept_cols := kept_cols || fcol;
		END IF;
	END LOOP;
	-- outcome leaks: a column written at close, or one that alone tells
	-- won from lost, would teach the model the answer
	FOR leak IN SELECT * FROM dealrisk._feature_leaks(source, kept) LOOP
		RAISE NOTICE 'dealrisk.train: feature % left out: %', leak.feature, leak.reason;
		fcol := kept_cols[pg_catalog.array_position(kept, leak.feature)];
		left_out := left_out || pg_catalog.jsonb_build_object(fcol, 'outcome leak: ' || leak.reason);
		kept_cols := pg_catalog.array_remove(kept_cols, fcol);
		kept := pg_catalog.array_remove(kept, leak.feature);
		leaks := pg_catalog.concat_ws('; ', leaks, pg_catalog.format('%s: %s', leak.feature, leak.reason));
	END LOOP;
	IF pg_catalog.cardinality(kept) = 0 AND leaks IS NOT NULL THEN
		RAISE EXCEPTION 'every feature of % leaks the outcome: nothing is left to train on', source
			USING ERRCODE = 'data_exception', DETAIL = leaks,
			      HINT = 'Train on columns that are known while a deal is still open (features => ARRAY[...]); see docs/data-contract.md.';
	ELSIF pg_catalog.cardinality(kept) = 0 THEN
		RAISE EXCEPTION 'no usable feature in %', source USING ERRCODE = 'invalid_parameter_value',
			DETAIL = (SELECT pg_catalog.string_agg(pg_catalog.format('%s: %s', k, v), '; ') FROM pg_catalog.jsonb_each_text(left_out) x(k, v));
	END IF;

	-- A source on Citus distributed tables is read once into a temporary
	-- table of this node, and everything below reads that: the passes'
	-- aggregates take their columns as VARIADIC "any", which Citus cannot
	-- split over shards, and the trees need every row in one place anyway
	-- (docs/scaling.md).  The model is recorded with the source's name.
	IF dealrisk._distributed(source) THEN
		IF pg_catalog.to_regclass('pg_temp.dealrisk_train_rows') IS NOT NULL THEN
			DROP TABLE pg_temp.dealrisk_train_rows;
		END IF;
		EXECUTE pg_catalog.format('CREATE TEMP TABLE dealrisk_train_rows ON COMMIT DROP AS SELECT * FROM %s d', source);
		ANALYZE pg_temp.dealrisk_train_rows;
		source := 'pg_temp.dealrisk_train_rows'::regclass;
	END IF;

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
		-- (without a NOTICE when this session has no temporary schema yet)
		IF pg_catalog.to_regclass('pg_temp.dealrisk_train_sample') IS NOT NULL THEN
			DROP TABLE pg_temp.dealrisk_train_sample;
		END IF;
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
		hold_expr := pg_catalog.format('NOT (%s)', train_expr);
		halflife := 0;
		split_why := CASE WHEN has_closed_date THEN 'no closed deal has a closed_date'
		                  ELSE 'the source has no closed_date column' END;
		RAISE NOTICE 'dealrisk.train: holdout chosen by a hash of deal_id and no recency weighting: %', split_why;
	END IF;

	-- the exact counts, the newest close and the rep win rates (over every
	-- closed deal, and over the training split for the holdout model), from
	-- one scan
	IF 'sales_rep_id' = ANY (kept) THEN
		rate_key := 'sales_rep_id';
	END IF;
	SELECT * INTO census FROM dealrisk._census(source, rate_key, train_expr, has_closed_date);
	n_won := census.n_won;
	n_lost := census.n_lost;
	ref := census.ref;
	IF n_won < min_n OR n_lost < min_n THEN
		RAISE EXCEPTION 'not enough closed deals to train on: % has % won and % lost, at least % of each are needed',
			source_name, n_won, n_lost, min_n
			USING ERRCODE = 'insufficient_resources',
			      HINT = 'Collect more closed deals, or lower dealrisk.min_training_deals (at the price of a weaker model).';
	END IF;

	-- 1. the dictionaries, learned once from the closed deals (of the
	-- sample); the rep win rates from the census
	spec := dealrisk._build_spec(source, kept, closed_filter, dict_source);
	left_out := left_out || coalesce(spec->'left_out', '{}');
	spec := spec - 'left_out';
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

	-- a feature kept so far that the specification lacks learned nothing
	-- from the closed deals (no value, or _build_spec said why)
	SELECT left_out || coalesce(pg_catalog.jsonb_object_agg(k,
	           'not learned from the closed deals: none of them has a usable value'), '{}')
	INTO left_out
	FROM pg_catalog.unnest(kept_cols) k
	WHERE NOT left_out ? k AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(spec->'features') e
	                  WHERE e->>'name' = CASE k WHEN 'sales_rep_id' THEN 'rep_win_rate' ELSE k END);

	IF method IN ('logistic', 'auto') THEN
		-- 2. fit on the older deals.  This fit is only measured (and starts
		-- the refit), so it stops once a Newton step promises less than 1e-3
		-- of the log-likelihood: Newton's quadratic convergence leaves next
		-- to nothing after that step (docs/model.md); the stored model is
		-- fitted to 1e-5.
		fit := dealrisk._fit(source, spec_train, train_filter, split_train, cutoff, ref, halflife, l2, NULL,
		                     n_won::float8 / (n_won + n_lost), tolerance => 1e-3);

		-- 3. refit on every closed deal for the stored model, from the
		-- holdout fit; its first pass also measures the holdout fit on the
		-- newest deals
		IF cutoff IS NOT NULL THEN
			final_fit := dealrisk._fit(source, spec, 'true', 0, NULL, ref, halflife, l2, fit.beta, NULL,
			                           spec_train, cutoff);
			log_metrics := final_fit.eval_metrics;
		ELSE
			EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, test_filter)
				INTO log_metrics USING spec_train, fit.beta;
			final_fit := dealrisk._fit(source, spec, closed_filter, 0, NULL, ref, halflife, l2, fit.beta, NULL);
		END IF;
		IF log_metrics IS NULL THEN
			RAISE EXCEPTION 'the holdout of % is empty', source_name USING ERRCODE = 'no_data_found',
				HINT = 'Use a larger holdout share.';
		END IF;
		-- open deals: the survivor curves of age and stage time, fitted
		-- with the stored coefficients on the closed deals (of the sample)
		log_spec := dealrisk._open_terms(dict_source, closed_filter, spec, final_fit.beta, ref, halflife);
		cand := cand || pg_catalog.jsonb_build_object('logistic', log_metrics - 'calibration');
	END IF;
	IF method IN ('gbm', 'auto') THEN
		-- the trees: both fits from one pass (src/trees.sql)
		SELECT g.model_spec, g.beta, g.eval_metrics, g.info, g.holdout_spec, g.holdout_beta
		INTO gbm_spec, gbm_beta, gbm_metrics, gbm_info, gbm_hspec, gbm_hbeta
		FROM dealrisk._gbm_train(source, dict_source, closed_filter, spec_train, spec,
		                         cutoff, hold_expr, ref, halflife, params) g;
		IF gbm_metrics IS NULL THEN
			RAISE EXCEPTION 'the holdout of % is empty', source_name USING ERRCODE = 'no_data_found',
				HINT = 'Use a larger holdout share.';
		END IF;
		cand := cand || pg_catalog.jsonb_build_object('gbm', gbm_metrics - 'calibration');
	END IF;

	-- 'auto': the trees only when they beat the logistic model by more than
	-- noise: the per-deal differences of the two holdout fits' log losses on
	-- the same holdout deals, their mean more than two standard errors
	-- above 0 (a paired test); otherwise the simpler model
	IF method = 'auto' THEN
		IF cutoff IS NOT NULL THEN
			EXECUTE pg_catalog.format('SELECT dealrisk._eval_pair($1, $2, $3, $4, 2, $5, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, closed_filter)
				INTO pair USING spec_train, fit.beta, gbm_hspec, gbm_hbeta, cutoff;
		ELSE
			EXECUTE pg_catalog.format('SELECT dealrisk._eval_pair($1, $2, $3, $4, 0, NULL, %s) FROM %s d WHERE %s',
			                          dealrisk._row_args(source, spec_train), source, test_filter)
				INTO pair USING spec_train, fit.beta, gbm_hspec, gbm_hbeta;
		END IF;
		gain := pair[2] / pair[1];
		gain_se := sqrt(greatest(pair[3] / pair[1] - gain * gain, 0) / greatest(pair[1] - 1, 1));
		chosen := CASE WHEN gain > 0 AND gain > 2 * gain_se THEN 'gbm' ELSE 'logistic' END;
		auto_info := pg_catalog.jsonb_build_object('auto', pg_catalog.jsonb_build_object(
			'kept', chosen, 'log_loss_gain_of_trees', gain, 'standard_error', gain_se, 'n', pair[1],
			'rule', 'trees when their holdout log loss is lower by more than two standard errors of the paired per-deal difference'));
		RAISE NOTICE 'dealrisk.train: method auto keeps %: the trees'' holdout log loss is % % (standard error %)%', chosen,
			pg_catalog.round(pg_catalog.abs(gain)::numeric, 4), CASE WHEN gain < 0 THEN 'higher' ELSE 'lower' END,
			pg_catalog.round(gain_se::numeric, 4),
			CASE WHEN chosen = 'gbm' THEN '' WHEN gain < 0 THEN ': the simpler model stays'
			     ELSE ', not surely lower: the simpler model stays' END;
	ELSE
		chosen := method;
	END IF;
	IF chosen = 'logistic' THEN
		stored_spec := log_spec || pg_catalog.jsonb_build_object('l2', l2, 'recency_halflife_days', halflife);
		stored_beta := final_fit.beta;
		test_metrics := log_metrics;
		method_metrics := pg_catalog.jsonb_build_object('n_train', fit.n_rows,
		    'iterations', final_fit.iterations, 'converged', final_fit.converged,
		    'holdout_iterations', fit.iterations);
	ELSE
		stored_spec := gbm_spec || pg_catalog.jsonb_build_object('recency_halflife_days', halflife);
		stored_beta := gbm_beta;
		test_metrics := gbm_metrics;
		method_metrics := gbm_info;
	END IF;
	method_metrics := method_metrics || pg_catalog.jsonb_build_object('method', chosen) || auto_info
		|| CASE WHEN method = 'auto' THEN pg_catalog.jsonb_build_object('candidates', cand) ELSE '{}' END;
	-- a point-in-time source: the rep's counts and the age's bins are of
	-- month-end snapshots of open deals, and the explanations say so
	IF dealrisk._has_column(source, 'dealrisk_as_of') THEN
		stored_spec := pg_catalog.jsonb_set(stored_spec, '{features}', (
			SELECT pg_catalog.jsonb_agg(CASE WHEN x.e->>'name' IN ('rep_win_rate', 'cycle_days')
			                                 THEN x.e || '{"unit": "month_end"}'::jsonb ELSE x.e END ORDER BY x.o)
			FROM pg_catalog.jsonb_array_elements(stored_spec->'features') WITH ORDINALITY x(e, o)));
		method_metrics := method_metrics || '{"point_in_time": true}'::jsonb;
	END IF;

	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (train.name, source_name, stored_spec, stored_beta,
	        test_metrics || method_metrics || pg_catalog.jsonb_build_object(
	            'n_test', (test_metrics->>'n')::bigint,
	            'won_total', n_won, 'lost_total', n_lost,
	            'holdout', holdout,
	            'holdout_from', cutoff,
	            'holdout_split', CASE WHEN cutoff IS NOT NULL THEN 'closed_date' ELSE 'deal_id hash' END,
	            'recency_weighted', halflife > 0,
	            'features_left_out', left_out,
	            'preflight', preflight)
	        || CASE WHEN split_why IS NOT NULL
	                THEN pg_catalog.jsonb_build_object('holdout_split_reason', split_why) ELSE '{}' END)
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
COMMENT ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb) IS
	'Trains a deal risk model (method: logistic = L2-regularised logistic regression, gbm = gradient-boosted trees tuned by params, auto = both, keeping the better holdout log loss) on the closed deals of source after its preflight (check_source(): errors stop it, warnings go into metrics->''preflight''; IRLS, one parallel aggregate pass per iteration), leaving out features the source''s dates cannot support and features that leak the outcome (metrics->''features_left_out''), measures it on the newest holdout share (a hash of deal_id without close dates), refits on all, stores it in dealrisk.models and activates it if good enough and the caller may (activate => false: a candidate); returns the model id';

CREATE FUNCTION dealrisk._deal_risk_row(model text, row_type regtype, columns text[], VARIADIC "any")
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk_row'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._deal_risk_row(text, regtype, text[], "any") IS
	'deal_risk of a row passed as its column values; the planner calls it for deal_risk(d) on a table (internal)';

CREATE FUNCTION dealrisk._deal_risk_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_deal_risk_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._deal_risk_support(internal) IS
	'Planner support for deal_risk: passes a table''s columns instead of building its whole row (internal)';

CREATE FUNCTION dealrisk._row_arg_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_row_arg_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._row_arg_support(internal) IS
	'Planner support for the functions that take a deal''s row: a view''s row keeps its type in the text of the query that Citus sends a worker (internal)';

CREATE FUNCTION dealrisk._scoring_model(model text)
RETURNS bigint AS 'MODULE_PATHNAME', 'dr_scoring_model_id'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._scoring_model(text) IS
	'The id of the model deal_risk(d, model) scores with in this snapshot; refresh() writes it beside each score (internal)';

CREATE FUNCTION dealrisk.deal_risk(deal record)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk'
LANGUAGE C STABLE PARALLEL SAFE SUPPORT dealrisk._deal_risk_support;
COMMENT ON FUNCTION dealrisk.deal_risk(record) IS
	'Risk that a deal is lost, 0-100, from the active ''default'' model; works on any row with the model''s feature columns';

CREATE FUNCTION dealrisk.deal_risk(deal record, model text)
RETURNS float8 AS 'MODULE_PATHNAME', 'dr_deal_risk'
LANGUAGE C STABLE PARALLEL SAFE SUPPORT dealrisk._deal_risk_support;
COMMENT ON FUNCTION dealrisk.deal_risk(record, text) IS
	'Risk that a deal is lost, 0-100, from the active model of the given name';

CREATE FUNCTION dealrisk.deal_risk_explain(deal record, model text DEFAULT 'default',
	OUT factor text, OUT value text, OUT effect float8, OUT reason text)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'dr_deal_risk_explain'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10 SUPPORT dealrisk._row_arg_support;
COMMENT ON FUNCTION dealrisk.deal_risk_explain(record, text) IS
	'Why a deal scores as it does: per feature, its value, its effect in risk points (risk minus risk with the feature at baseline) and a plain-words reason; biggest risk first';

CREATE FUNCTION dealrisk.deal_risk_contributions(deal record, model text DEFAULT 'default',
	OUT factor text, OUT contribution float8)
RETURNS SETOF record AS 'MODULE_PATHNAME', 'dr_deal_risk_contributions'
LANGUAGE C STABLE PARALLEL SAFE ROWS 10 SUPPORT dealrisk._row_arg_support;
COMMENT ON FUNCTION dealrisk.deal_risk_contributions(record, text) IS
	'Each feature''s contribution to a deal''s log-odds of winning (exact TreeSHAP values for a tree model), then (base): they add up to ln(p / (1 - p)) with p = 1 - deal_risk / 100';

CREATE FUNCTION dealrisk.risk_band(score float8)
RETURNS text AS 'MODULE_PATHNAME', 'dr_risk_band'
LANGUAGE C STABLE STRICT PARALLEL SAFE SUPPORT dealrisk._settings_support;
COMMENT ON FUNCTION dealrisk.risk_band(float8) IS
	'low / medium / high / critical for a risk score, at the thresholds dealrisk.band_medium (30), band_high (60), band_critical (80)';

-- Recommended actions: a configuration view over the shipped rules and your
-- edits, like dealrisk.stages (see src/outcome.sql).
CREATE TABLE dealrisk.action_rule_defaults (
	id          int PRIMARY KEY,
	priority    int NOT NULL,
	factor      text NOT NULL,
	min_effect  float8 NOT NULL,
	min_risk    float8 NOT NULL,
	action      text NOT NULL
);
GRANT SELECT ON dealrisk.action_rule_defaults TO PUBLIC;
COMMENT ON TABLE dealrisk.action_rule_defaults IS
	'The action rules dealrisk ships with (read dealrisk.action_rules, which applies your edits)';
INSERT INTO dealrisk.action_rule_defaults (id, priority, factor, min_effect, min_risk, action) VALUES
	(1, 10, 'stage_time', 3, 30, 'Call the client today, or mark the deal Lost to clean the pipeline'),
	(2, 20, 'activity_gap', 3, 30, 'Log the last contact or book a call this week: no recent activity is on record'),
	(3, 30, 'rep_win_rate', 3, 30, 'Pair the rep with a senior seller for the next meeting'),
	(4, 40, 'lead_source', 3, 30, 'Re-qualify: confirm budget, authority and timeline before investing more time'),
	(5, 50, 'cycle_days', 3, 30, 'Agree a mutual close plan with dated next steps'),
	(6, 60, 'industry', 3, 30, 'Bring in a reference customer or a specialist from this industry'),
	(7, 70, 'deal_amount', 3, 30, 'Check the deal size against the buyer''s budget; consider a phased offer'),
	(8, 900, '*', 0, 60, 'Review the deal with the sales manager this week'),
	(9, 1000, '*', -1e300, 0, 'On track: keep the next step on the calendar');

CREATE TABLE dealrisk.action_rule_edits (
	id          int PRIMARY KEY,
	priority    int,
	factor      text,
	min_effect  float8,
	min_risk    float8,
	action      text CHECK (pg_catalog.btrim(action) <> ''),
	removed     boolean NOT NULL DEFAULT false,
	CHECK (removed OR (priority IS NOT NULL AND factor IS NOT NULL AND min_effect IS NOT NULL
	                   AND min_risk IS NOT NULL AND action IS NOT NULL))
);
COMMENT ON TABLE dealrisk.action_rule_edits IS
	'Your edits of dealrisk.action_rules: rules added or changed, and shipped rules removed (removed = true); kept by pg_dump. Edit dealrisk.action_rules, not this table.';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.action_rule_edits', '');
-- ids of the rules you add start above the shipped ones
CREATE SEQUENCE dealrisk.action_rules_id_seq AS int START 101;
SELECT pg_catalog.pg_extension_config_dump('dealrisk.action_rules_id_seq', '');

CREATE VIEW dealrisk.action_rules AS
	SELECT e.id, e.priority, e.factor, e.min_effect, e.min_risk, e.action
	FROM dealrisk.action_rule_edits e WHERE NOT e.removed
	UNION ALL
	SELECT d.id, d.priority, d.factor, d.min_effect, d.min_risk, d.action FROM dealrisk.action_rule_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.action_rule_edits e WHERE e.id OPERATOR(pg_catalog.=) d.id);
ALTER VIEW dealrisk.action_rules ALTER COLUMN id SET DEFAULT pg_catalog.nextval('dealrisk.action_rules_id_seq'::regclass);
ALTER VIEW dealrisk.action_rules ALTER COLUMN priority SET DEFAULT 100;
ALTER VIEW dealrisk.action_rules ALTER COLUMN min_effect SET DEFAULT 0;
ALTER VIEW dealrisk.action_rules ALTER COLUMN min_risk SET DEFAULT 0;
COMMENT ON VIEW dealrisk.action_rules IS
	'Recommended actions: for a deal whose risk is at least min_risk, the rule of the factor (a feature name of deal_risk_explain) that adds the most risk, at least min_effect points; * rules apply when no factor rule does; priority breaks ties. Edit it (INSERT, UPDATE, DELETE); your edits are kept in dealrisk.action_rule_edits and survive pg_dump/pg_restore.';
CREATE TRIGGER action_rules_edit INSTEAD OF INSERT OR UPDATE OR DELETE ON dealrisk.action_rules
	FOR EACH ROW EXECUTE FUNCTION dealrisk._config_edit('dealrisk.action_rule_defaults', 'dealrisk.action_rule_edits', 'id');

CREATE FUNCTION dealrisk.recommended_action(deal record, model text DEFAULT 'default')
RETURNS text AS 'MODULE_PATHNAME', 'dr_recommended_action'
LANGUAGE C STABLE PARALLEL SAFE SUPPORT dealrisk._row_arg_support;
COMMENT ON FUNCTION dealrisk.recommended_action(record, text) IS
	'The recommended action for a deal: the dealrisk.action_rules rule of the factor that adds the most risk (see the table''s comment)';

CREATE FUNCTION dealrisk.export_model(model_id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	RETURN pg_catalog.jsonb_build_object(
		'format', 'dealrisk-model/1', 'id', m.id, 'name', m.name, 'created_at', m.created_at,
		'source', m.source, 'spec', m.feature_spec,
		'coefficients', pg_catalog.to_jsonb(m.coefficients), 'metrics', m.metrics);
END
$$;
COMMENT ON FUNCTION dealrisk.export_model(bigint) IS
	'A model as JSON (format dealrisk-model/1, see docs/model.md): spec, coefficients (intercept first), metrics';

-- An xgboost model (Booster.save_model('m.json'), objective
-- binary:logistic with label 1 = won) as a dealrisk tree model: one
-- numeric feature per xgboost feature, read from the column the mapping
-- names; the trees in the layout of src/trees.c; the base margin (xgboost
-- stores base_score as a probability) as the one coefficient.
CREATE FUNCTION dealrisk._xgboost_spec(xgb jsonb, columns jsonb, OUT spec jsonb, OUT base float8)
RETURNS record
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	l			jsonb := xgb -> 'learner';
	names		text[];
	unmapped	text;
	b			float8;
	bad			text;
BEGIN
	IF pg_catalog.jsonb_typeof(l) IS DISTINCT FROM 'object'
	   OR pg_catalog.jsonb_typeof(l #> '{gradient_booster,model,trees}') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the xgboost model has no learner.gradient_booster.model.trees array'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass the JSON that Booster.save_model(''model.json'') writes (xgboost 1.x or later).';
	END IF;
	IF l #>> '{objective,name}' IS DISTINCT FROM 'binary:logistic' THEN
		RAISE EXCEPTION 'the xgboost model''s objective is %, not binary:logistic', coalesce(l #>> '{objective,name}', 'missing')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Train with objective="binary:logistic" and label 1 for a won deal.';
	END IF;
	IF pg_catalog.jsonb_typeof(l -> 'feature_names') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the xgboost model has no feature names'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Train on a DataFrame, or set Booster.feature_names before saving, so that each feature can be mapped to a column.';
	END IF;
	names := ARRAY(SELECT pg_catalog.jsonb_array_elements_text(l -> 'feature_names'));
	IF pg_catalog.jsonb_typeof(columns) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'an xgboost import needs "columns": an object from each feature name to a column of the deal source'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT pg_catalog.string_agg(n, ', ') INTO unmapped FROM pg_catalog.unnest(names) n
	WHERE pg_catalog.jsonb_typeof(columns -> n) IS DISTINCT FROM 'string' OR pg_catalog.btrim(columns ->> n) = '';
	IF unmapped IS NOT NULL THEN
		RAISE EXCEPTION 'xgboost features without a column: %', unmapped
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Map every feature name to a column name in "columns", e.g. {"deal_amount": "deal_amount"}.';
	END IF;
	SELECT pg_catalog.string_agg(DISTINCT t.st, ', ') INTO bad
	FROM pg_catalog.jsonb_array_elements(l #> '{gradient_booster,model,trees}') tr,
		 pg_catalog.jsonb_array_elements_text(tr -> 'split_type') t(st)
	WHERE t.st <> '0';
	IF bad IS NOT NULL THEN
		RAISE EXCEPTION 'the xgboost model has categorical splits (split_type %), which dealrisk does not import', bad
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Train with numeric (or one-hot) features.';
	END IF;
	b := (l #>> '{learner_model_param,base_score}')::float8;
	IF NOT (b > 0 AND b < 1) THEN
		RAISE EXCEPTION 'the xgboost model''s base_score % is not a probability', b
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	base := pg_catalog.ln(b / (1 - b));
	WITH t AS (
		SELECT e.tr, e.o
		FROM pg_catalog.jsonb_array_elements(l #> '{gradient_booster,model,trees}') WITH ORDINALITY AS e(tr, o)
	), n AS (
		SELECT t.o, k.i, (t.tr -> 'left_children' ->> k.i)::int AS lc, (t.tr -> 'right_children' ->> k.i)::int AS rc,
			   (t.tr -> 'split_indices' ->> k.i)::int AS f, (t.tr -> 'split_conditions' ->> k.i)::float8 AS c,
			   (t.tr -> 'default_left' ->> k.i)::int OPERATOR(pg_catalog.=) 1 AS dl, (t.tr -> 'sum_hessian' ->> k.i)::float8 AS h
		FROM t, pg_catalog.generate_series(0, pg_catalog.jsonb_array_length(t.tr -> 'left_children') - 1) AS k(i)
	), s AS (
		SELECT n.o, (pg_catalog.sum(pg_catalog.count(*)) OVER (ORDER BY n.o) - pg_catalog.count(*))::int AS start
		FROM n GROUP BY n.o
	)
	SELECT pg_catalog.jsonb_build_object(
			   'features', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
								'name', x.n, 'kind', 'numeric', 'column', columns ->> x.n, 'mean', 0, 'sd', 1) ORDER BY x.o)
							FROM pg_catalog.unnest(names) WITH ORDINALITY AS x(n, o)),
			   'trees', pg_catalog.jsonb_build_object(
				   'start', (SELECT pg_catalog.jsonb_agg(s.start ORDER BY s.o) FROM s),
				   'left', pg_catalog.jsonb_agg(n.lc ORDER BY n.o, n.i),
				   'right', pg_catalog.jsonb_agg(n.rc ORDER BY n.o, n.i),
				   'feature', pg_catalog.jsonb_agg(CASE WHEN n.lc >= 0 THEN n.f ELSE 0 END ORDER BY n.o, n.i),
				   'threshold', pg_catalog.jsonb_agg(CASE WHEN n.lc >= 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i),
				   'default_left', pg_catalog.jsonb_agg(n.dl ORDER BY n.o, n.i),
				   'value', pg_catalog.jsonb_agg(CASE WHEN n.lc < 0 THEN n.c ELSE 0 END ORDER BY n.o, n.i),
				   'cover', pg_catalog.jsonb_agg(n.h ORDER BY n.o, n.i)),
			   'imported_from', 'xgboost')
		INTO spec
	FROM n;
END
$fn$;
COMMENT ON FUNCTION dealrisk._xgboost_spec(jsonb, jsonb) IS
	'The feature specification (numeric features read from mapped columns, trees) and base margin of an xgboost binary:logistic model saved as JSON (internal)';

CREATE FUNCTION dealrisk.import_model(model jsonb, name text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	coefs float8[];
	new_id bigint;
	spec jsonb;
BEGIN
	IF model IS NULL OR pg_catalog.jsonb_typeof(model) <> 'object' THEN
		RAISE EXCEPTION 'a model to import is a JSON object, got %', coalesce(pg_catalog.jsonb_typeof(model), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'See docs/model.md for the format.';
	END IF;
	IF name IS NULL OR pg_catalog.btrim(name) = '' THEN
		RAISE EXCEPTION 'model name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF model->>'format' = 'xgboost/json' THEN
		-- {"format": "xgboost/json", "model": <save_model JSON>, "columns": {feature: column}}
		SELECT x.spec, ARRAY[x.base] INTO spec, coefs FROM dealrisk._xgboost_spec(model->'model', model->'columns') x;
		PERFORM dealrisk._validate_model(spec, coefs);
		INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
		VALUES (name, model->>'source', spec, coefs, '{"imported": true, "imported_from": "xgboost"}')
		RETURNING id INTO new_id;
		RETURN new_id;
	END IF;
	IF model->>'format' IS DISTINCT FROM 'dealrisk-model/1' THEN
		RAISE EXCEPTION 'unknown model format %', coalesce(pg_catalog.quote_literal(model->>'format'), 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Set "format": "dealrisk-model/1", or "xgboost/json" for a model saved by xgboost; see docs/model.md.';
	END IF;
	IF pg_catalog.jsonb_typeof(model->'coefficients') IS DISTINCT FROM 'array' THEN
		RAISE EXCEPTION 'the model has no "coefficients" array' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(model->'coefficients') c
	           WHERE pg_catalog.jsonb_typeof(c) <> 'number') THEN
		RAISE EXCEPTION 'every coefficient must be a JSON number' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	coefs := ARRAY(SELECT c::float8 FROM pg_catalog.jsonb_array_elements_text(model->'coefficients') c);
	PERFORM dealrisk._validate_model(model->'spec', coefs);
	INSERT INTO dealrisk.models (name, source, feature_spec, coefficients, metrics)
	VALUES (name, model->>'source', model->'spec', coefs,
	        coalesce(model->'metrics', '{}') || '{"imported": true}')
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION dealrisk.import_model(jsonb, text) IS
	'Stores a model exported by export_model or fitted elsewhere (format in docs/model.md) after checking its dimensions, numbers and feature kinds; not activated';

CREATE FUNCTION dealrisk.evaluate(model_id bigint, source regclass,
	OUT auc float8, OUT log_loss float8, OUT brier float8, OUT brier_base float8,
	OUT accuracy float8, OUT base_rate float8, OUT n bigint, OUT calibration jsonb)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
	r jsonb;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d',
	                          dealrisk._row_args(source, m.feature_spec), dealrisk._scan(source))
		INTO r USING m.feature_spec, m.coefficients;
	IF r IS NULL THEN
		RAISE EXCEPTION 'source % has no closed deal to evaluate on', source USING ERRCODE = 'no_data_found';
	END IF;
	auc := (r->>'auc')::float8;
	log_loss := (r->>'log_loss')::float8;
	brier := (r->>'brier')::float8;
	brier_base := (r->>'brier_base')::float8;
	accuracy := (r->>'accuracy')::float8;
	base_rate := (r->>'base_rate')::float8;
	n := (r->>'n')::bigint;
	calibration := r->'calibration';
END
$$;
COMMENT ON FUNCTION dealrisk.evaluate(bigint, regclass) IS
	'Metrics of a model on the closed deals of a source: AUC, log loss, Brier (and the base-rate Brier), accuracy, base rate, n, and calibration by decile of predicted win probability (jsonb)';

CREATE FUNCTION dealrisk.lost_lookalikes(source regclass, lost_since date DEFAULT NULL, k int DEFAULT 20)
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
COMMENT ON FUNCTION dealrisk.lost_lookalikes(regclass, date, int) IS
	'Open deals that look most like the deals lost since a date (default: the last 30 days of closes; every lost deal when the source has no closed_date), with the traits they share and how over-represented those traits are among the recent losses';
