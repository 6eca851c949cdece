-- dealrisk 0.2.0 -> 0.3.0: trust on real CRM exports (issue #9).
-- Released: frozen (it was assembled from one part per change of issue #9).
\echo Use "ALTER EXTENSION dealrisk UPDATE TO '0.3.0'" to load this file. \quit

-- Stages may take any position, so a stage goes before the first one in
-- one statement (position 0 or below).
ALTER TABLE dealrisk.stage_edits DROP CONSTRAINT stage_edits_position_check;
COMMENT ON VIEW dealrisk.stages IS
	'Pipeline stages in order (position) and whether each is a late stage; edit it (INSERT, UPDATE, DELETE) to match your CRM; positions are any integers (a stage before the first takes 0 or below) and are checked at the end of each statement, so stages can be renumbered in one UPDATE. deal_stage is matched without case. Your edits are kept in dealrisk.stage_edits and survive pg_dump/pg_restore.';

-- funnel() gains a caveat column: it says when deal_stage cannot be read as
-- the stage each closed deal reached (and warns).
DROP FUNCTION dealrisk.funnel(regclass, date);
CREATE FUNCTION dealrisk.funnel(source regclass, since date DEFAULT NULL)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	why			text;
BEGIN
	-- created_date only filters (since)
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
		USING since, why;
END
$fn$;
COMMENT ON FUNCTION dealrisk.funnel(regclass, date) IS
	'The stage funnel of the deals created on or after since (all deals when NULL), one row per stage of dealrisk.stages: closed deals that reached the stage, won from there, lost there, open there, conversion to the next stage, cumulative conversion from the first stage and win rate from the stage; caveat is NULL when deal_stage can be read as the stage each closed deal reached, else why the numbers are not a funnel (with a WARNING)';

-- data_quality() runs on sources that lack optional columns.
CREATE OR REPLACE FUNCTION dealrisk.data_quality(source regclass)
RETURNS TABLE(check_name text, description text, "rows" bigint, example_deal_id text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 15
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	n			bigint[];
	ex			text[];
	stage_names text[];
	dates		text;
	absent		text[];
	dup_rows	bigint;
	dup_example text;
	skipped		int[] := '{}';
	expr		text[];
BEGIN
	-- deal_id and outcome are needed; a check on any other column the
	-- source lacks is not run (its rows are NULL)
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	SELECT pg_catalog.array_agg(c) INTO absent
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
	WHERE NOT dealrisk._has_column(source, c);
	absent := coalesce(absent, '{}');
	PERFORM dealrisk._check_source(source,
		ARRAY(SELECT c FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
		      WHERE NOT c = ANY (absent)));
	SELECT pg_catalog.array_agg(CASE WHEN c = ANY (absent) THEN 'NULL::' || t ELSE pg_catalog.format('d.%I::%s', c, t) END ORDER BY o)
		INTO expr
	FROM ROWS FROM (pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']),
	                pg_catalog.unnest(ARRAY['date', 'date', 'text', 'numeric', 'numeric'])) WITH ORDINALITY u(c, t, o);
	-- the checks (numbered as in the list at the end) each absent column
	-- rules out
	IF 'created_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 12, 14]; END IF;
	IF 'closed_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 4, 5, 12]; END IF;
	IF 'deal_stage' = ANY (absent) THEN skipped := skipped || ARRAY[10, 11]; END IF;
	IF 'deal_amount' = ANY (absent) THEN skipped := skipped || ARRAY[6, 7, 8]; END IF;
	IF 'sales_cycle_days' = ANY (absent) THEN skipped := skipped || ARRAY[12, 13]; END IF;
	SELECT coalesce(pg_catalog.array_agg(pg_catalog.lower(s.stage)), '{}')
		INTO stage_names
	FROM dealrisk.stages s;
	-- an infinite date in any date column of the contract the source has
	SELECT pg_catalog.string_agg(pg_catalog.format('NOT pg_catalog.isfinite(d.%I::date)', c), ' OR ')
		INTO dates
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'stage_entered_date', 'last_activity_date']) c
	WHERE dealrisk._has_column(source, c);
	-- Every test below is written so that no value can make it raise.
	EXECUTE pg_catalog.format(
		$q$WITH x AS (
			SELECT d.deal_id::text AS id,
				   %s AS cr,
				   %s AS cl,
				   %s AS stage,
				   %s AS amount,
				   %s AS cyc,
				   coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls,
				   %s AS dups,
				   coalesce(%s, false) AS inf_date
			FROM %s AS d
		), c AS (
			SELECT x.*,
				   pg_catalog.btrim(x.stage, E' \t\n\r\f\013') AS st,
				   x.cr IS NOT NULL AND x.cl IS NOT NULL
					 AND pg_catalog.isfinite(x.cr) AND pg_catalog.isfinite(x.cl) AS both_dates
			FROM x
		), t AS (
			SELECT
				c.id IS NULL OR pg_catalog.btrim(c.id) = '' AS t1,
				c.id IS NOT NULL AND c.dups > 1 AS t2,
				c.cl < c.cr AS t3,
				c.cls IN ('won', 'lost') AND c.cl IS NULL AS t4,
				c.cls = 'open' AND c.cl IS NOT NULL AS t5,
				c.amount IS NULL AS t6,
				c.amount IS NOT NULL
				  AND (c.amount = 'NaN'::numeric OR c.amount = 'Infinity'::numeric
					   OR c.amount = '-Infinity'::numeric) AS t7,
				c.amount < 0 AND c.amount <> '-Infinity'::numeric AS t8,
				c.cls = 'unknown' AS t9,
				c.st IS NULL OR c.st = '' AS t10,
				c.st <> '' AND pg_catalog.lower(c.st) <> ALL ($1) AS t11,
				c.both_dates AND c.cyc IS NOT NULL AND c.cyc <> (c.cl - c.cr) AS t12,
				c.cyc < 0 AS t13,
				c.cr > CURRENT_DATE AND c.cr <> 'infinity'::date AS t14,
				c.inf_date AS t15,
				c.id
			FROM c
			OFFSET 0	-- evaluate each test once, not once per aggregate
		)
		SELECT ARRAY[pg_catalog.count(*) FILTER (WHERE t.t1),
					 pg_catalog.count(*) FILTER (WHERE t.t2),
					 pg_catalog.count(*) FILTER (WHERE t.t3),
					 pg_catalog.count(*) FILTER (WHERE t.t4),
					 pg_catalog.count(*) FILTER (WHERE t.t5),
					 pg_catalog.count(*) FILTER (WHERE t.t6),
					 pg_catalog.count(*) FILTER (WHERE t.t7),
					 pg_catalog.count(*) FILTER (WHERE t.t8),
					 pg_catalog.count(*) FILTER (WHERE t.t9),
					 pg_catalog.count(*) FILTER (WHERE t.t10),
					 pg_catalog.count(*) FILTER (WHERE t.t11),
					 pg_catalog.count(*) FILTER (WHERE t.t12),
					 pg_catalog.count(*) FILTER (WHERE t.t13),
					 pg_catalog.count(*) FILTER (WHERE t.t14),
					 pg_catalog.count(*) FILTER (WHERE t.t15)],
			   ARRAY[NULL,
					 pg_catalog.min(t.id) FILTER (WHERE t.t2),
					 pg_catalog.min(t.id) FILTER (WHERE t.t3),
					 pg_catalog.min(t.id) FILTER (WHERE t.t4),
					 pg_catalog.min(t.id) FILTER (WHERE t.t5),
					 pg_catalog.min(t.id) FILTER (WHERE t.t6),
					 pg_catalog.min(t.id) FILTER (WHERE t.t7),
					 pg_catalog.min(t.id) FILTER (WHERE t.t8),
					 pg_catalog.min(t.id) FILTER (WHERE t.t9),
					 pg_catalog.min(t.id) FILTER (WHERE t.t10),
					 pg_catalog.min(t.id) FILTER (WHERE t.t11),
					 pg_catalog.min(t.id) FILTER (WHERE t.t12),
					 pg_catalog.min(t.id) FILTER (WHERE t.t13),
					 pg_catalog.min(t.id) FILTER (WHERE t.t14),
					 pg_catalog.min(t.id) FILTER (WHERE t.t15)]
		FROM t$q$,
		expr[1], expr[2], expr[3], expr[4], expr[5],
		'1::bigint',	-- duplicates are counted below
		coalesce(dates, 'false'), source::text)
		INTO n, ex
		USING stage_names;
	-- duplicate deal ids, by a hash aggregate (a sort of the whole source
	-- in the scan above cost more); none to count when a unique index on
	-- deal_id alone rules them out
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
	                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
	               WHERE i.indrelid = source::pg_catalog.oid AND i.indisunique AND i.indisvalid
	                 AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL
	                 AND a.attname = 'deal_id'
	                 AND a.atttypid IN ('text'::regtype::pg_catalog.oid, 'varchar'::regtype::pg_catalog.oid,
	                                    'int2'::regtype::pg_catalog.oid, 'int4'::regtype::pg_catalog.oid,
	                                    'int8'::regtype::pg_catalog.oid, 'uuid'::regtype::pg_catalog.oid)
	                 -- (an inheritance parent's index does not cover its children)
	                 AND (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhparent = i.indrelid)
	                      OR (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = i.indrelid) = 'p')) THEN
		EXECUTE pg_catalog.format(
			$q$SELECT coalesce(pg_catalog.sum(x.k), 0)::bigint, pg_catalog.min(x.id)
			   FROM (SELECT d.deal_id::text AS id, pg_catalog.count(*) AS k FROM %s AS d
			         WHERE d.deal_id IS NOT NULL GROUP BY 1 HAVING pg_catalog.count(*) > 1) x$q$,
			source::text)
			INTO dup_rows, dup_example;
		n[2] := dup_rows;
		ex[2] := dup_example;
	END IF;

	RETURN QUERY
	SELECT v.name,
		   v.descr || CASE WHEN v.i = ANY (skipped) THEN ' (not checked: the source lacks a column it needs)' ELSE '' END,
		   CASE WHEN v.i = ANY (skipped) THEN NULL ELSE n[v.i] END,
		   CASE WHEN v.i = ANY (skipped) THEN NULL ELSE ex[v.i] END
	FROM (VALUES
		(1, 'null_deal_id', 'deal_id is NULL or blank'),
		(2, 'duplicate_deal_id', 'deal_id shared with another row (every such row is counted)'),
		(3, 'closed_before_created', 'closed_date is before created_date'),
		(4, 'closed_without_closed_date', 'won or lost deal without a closed_date (left out of trends and drivers)'),
		(5, 'open_with_closed_date', 'open deal (NULL or open outcome) with a closed_date'),
		(6, 'null_amount', 'deal_amount is NULL'),
		(7, 'invalid_amount', 'deal_amount is NaN or infinite'),
		(8, 'negative_amount', 'deal_amount is below zero'),
		(9, 'unknown_outcome', 'outcome is not a known won, lost or open label (is_won raises an error on it)'),
		(10, 'null_stage', 'deal_stage is NULL or blank (left out of the funnel)'),
		(11, 'unknown_stage', 'deal_stage is not in dealrisk.stages (stage_funnel raises an error on it)'),
		(12, 'cycle_days_mismatch', 'sales_cycle_days differs from closed_date - created_date'),
		(13, 'negative_cycle_days', 'sales_cycle_days is below zero'),
		(14, 'future_created_date', 'created_date is after today'),
		(15, 'infinite_date', 'a date (created, closed, stage entered, last activity) is infinity or -infinity: treated as missing')
	) AS v(i, name, descr)
	ORDER BY v.i;
END
$fn$;
COMMENT ON FUNCTION dealrisk.data_quality(regclass) IS
	'Data-quality checks of a deal source, one row per check in a fixed order (all checks, zero counts included): rows failing it and the smallest failing deal_id; a check needing a column the source lacks has NULL rows; never raises an error on bad data';

-- The preflight, dealrisk.check_source(), and its helpers.
-- What an unknown outcome label most likely means ('won', 'lost', 'open'
-- or 'unknown'), from its words (src/outcome.c, which uses the same guess
-- for the hint of its unknown-label error).
CREATE FUNCTION dealrisk._label_guess(label text)
RETURNS text AS 'MODULE_PATHNAME', 'dr_label_guess'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._label_guess(text) IS
	'What an unknown outcome label most likely means, from its words: won, lost, open (a stage name) or unknown (internal)';

-- Whether deal_stage can be read as the stage each closed deal reached,
-- which the funnel assumes: NULL when it can (or there is too little to
-- tell), else why not.  A deal is won at the end of the pipeline, so when
-- more than a tenth of the won deals (and at least 10) sit at earlier
-- stages than the last stage holding won deals, the column holds something
-- else (the stage at export, or the stage a deal entered the CRM at).
CREATE FUNCTION dealrisk._stage_semantics(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	won_staged	bigint;
	final_stage text;
	n_final		bigint;
	first_stage text;
	n_first		bigint;
	n_stages	int;
	n_with_won	int;
	n_closed	bigint;
	n_closed_staged bigint;
BEGIN
	IF NOT dealrisk._has_column(source, 'deal_stage') OR NOT dealrisk._has_column(source, 'outcome') THEN
		RETURN NULL;
	END IF;
	-- callable by anyone, so it checks what it reads like every reader
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']);
	-- one scan: deals per stage and outcome class, then the stage table
	EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.lower(pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013')) AS st,
			       dealrisk.outcome_class(d.outcome::text) AS cls, pg_catalog.count(*) AS n
			FROM %s AS d
			GROUP BY 1, 2
		), w AS (
			SELECT s.stage, s."position", coalesce(pg_catalog.sum(g.n), 0)::bigint AS n
			FROM dealrisk.stages s
			LEFT JOIN g ON g.st OPERATOR(pg_catalog.=) pg_catalog.lower(s.stage) AND g.cls OPERATOR(pg_catalog.=) 'won'
			GROUP BY s.stage, s."position"
		)
		SELECT (SELECT pg_catalog.sum(w.n)::bigint FROM w),
		       (SELECT w.stage FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.n FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.stage FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT w.n FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT pg_catalog.count(*)::int FROM w),
		       (SELECT pg_catalog.count(*)::int FROM w WHERE w.n > 0),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost')),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost') AND g.st <> '')$q$,
		source::text)
		INTO won_staged, final_stage, n_final, first_stage, n_first, n_stages, n_with_won, n_closed, n_closed_staged;
	IF n_closed > 0 AND n_closed_staged = 0 THEN
		RETURN pg_catalog.format('none of the %s closed deals has a deal_stage, so there is no funnel to read', dealrisk._num(n_closed));
	END IF;
	IF won_staged IS NULL OR n_final IS NULL OR won_staged - n_final < 10 OR (won_staged - n_final) * 10 <= won_staged THEN
		RETURN NULL;
	END IF;
	RETURN pg_catalog.format('%s of %s won deals (%s) sit at stages before %s, %s at %s, the first stage; won deals are found at %s of %s stages. deal_stage does not hold the stage a deal reached before it closed (it may be its stage at export, or when it entered the CRM), so conversion between stages, where deals are lost and late-stage losses cannot be read from it',
		dealrisk._num(won_staged - n_final), dealrisk._num(won_staged),
		dealrisk._pct((won_staged - n_final)::float8 / won_staged), final_stage,
		dealrisk._num(n_first), first_stage, n_with_won, n_stages);
END
$fn$;
COMMENT ON FUNCTION dealrisk._stage_semantics(regclass) IS
	'NULL when deal_stage can be read as the stage each closed deal reached (the funnel''s assumption), else why not: too many won deals sit at early stages (internal)';

-- The hint that says what would let the funnel be read.
CREATE FUNCTION dealrisk._stage_semantics_hint()
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN 'The funnel needs, for every closed deal, the last stage it reached before it was won or lost: map a column that holds it as deal_stage, or keep the stage history (the date each deal entered each stage). Win rates, drivers and risk scores do not depend on it.';
COMMENT ON FUNCTION dealrisk._stage_semantics_hint() IS
	'What data would let the funnel be read when deal_stage cannot support it (internal)';

-- A SET line and its ALTER DATABASE twin that add labels to a label list
-- setting, keeping the labels it holds.
CREATE FUNCTION dealrisk._label_fix(setting text, labels text[])
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (WITH v AS (
	        SELECT pg_catalog.concat_ws(',', NULLIF(pg_catalog.current_setting(setting, true), ''),
	                                    pg_catalog.array_to_string(labels, ',')) AS val)
        SELECT pg_catalog.format('SET %s = %L; to keep it: ALTER DATABASE %I SET %s = %L;',
                                 setting, v.val, pg_catalog.current_database(), setting, v.val)
        FROM v);
COMMENT ON FUNCTION dealrisk._label_fix(text, text[]) IS
	'The SET and ALTER DATABASE statements that add labels to a label list, keeping its labels (internal)';

CREATE FUNCTION dealrisk.check_source(source regclass)
RETURNS TABLE("check" text, severity text, finding text, hint text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c_check		text[] := '{}';
	c_sev		text[] := '{}';
	c_find		text[] := '{}';
	c_hint		text[] := '{}';
	name		text := dealrisk._source_name(source);
	cols		text[];
	types		regtype[];
	col			text;
	typ			regtype;
	missing		text[];
	fatal		boolean := false;
	has_created boolean;
	has_closed	boolean;
	has_stage	boolean;
	date_cols	text[];
	newest_expr text;
	n_total		bigint;
	n_won		bigint;
	n_lost		bigint;
	n_open		bigint;
	newest		date;
	newest_created date;
	oldest_open date;
	n_open_dated bigint;
	max_cycle	float8;
	n_older		bigint;
	unknown		record;
	labels		text[];
	r			record;
	stage_fix	text;
	n_unknown_stages int;
	status_labels text;
	status_in	text;
	semantics	text;
	min_n		int;
	as_of_set	text;
	as_of		date;
	dq			record;
BEGIN
	PERFORM dealrisk._check_source(source, NULL);	-- a relation, trusted
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings

	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), pg_catalog.array_agg(a.atttypid::regtype ORDER BY a.attnum)
		INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
	cols := coalesce(cols, '{}');

	-- Columns: the two every function needs, and what each missing optional
	-- one takes away.
	FOREACH col IN ARRAY ARRAY['deal_id', 'outcome'] LOOP
		IF NOT col = ANY (cols) THEN
			fatal := true;
			c_check := c_check || 'columns'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s is missing: %s', col,
				CASE col WHEN 'deal_id' THEN 'deals cannot be told apart (duplicates, scores, alerts)'
				         ELSE 'won, lost and open deals cannot be told apart' END);
			c_hint := c_hint || CASE col
				WHEN 'deal_id' THEN 'Map your CRM''s columns with a view: SELECT <your id column> AS deal_id, ... (docs/data-contract.md).'
				ELSE 'Map the column holding won/lost/open as outcome in a view; a single status column holding both stages and outcomes is split there too (docs/data-contract.md).' END;
		END IF;
	END LOOP;
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		col := cols[i];
		typ := types[i];
		IF (col IN ('created_date', 'closed_date', 'last_activity_date', 'stage_entered_date')
		    AND typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype))
		   OR (col IN ('deal_amount', 'sales_cycle_days')
		       AND typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
		                       'numeric'::regtype, 'real'::regtype, 'double precision'::regtype))
		   OR (col IN ('outcome', 'deal_stage')
		       AND typ NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype)) THEN
			fatal := true;
			c_check := c_check || 'column_types'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s has type %s, not %s', col, pg_catalog.format_type(typ, NULL),
				CASE WHEN col LIKE '%date' THEN 'a date' WHEN col IN ('outcome', 'deal_stage') THEN 'text' ELSE 'a number' END);
			c_hint := c_hint || pg_catalog.format('Cast it in a view: %s AS %I (docs/data-contract.md).',
				pg_catalog.format(CASE WHEN col LIKE '%date' THEN '%I::date' WHEN col IN ('outcome', 'deal_stage') THEN '%I::text'
				                       ELSE '%I::numeric' END, col), col);
		END IF;
	END LOOP;
	has_created := 'created_date' = ANY (cols);
	has_closed := 'closed_date' = ANY (cols);
	has_stage := 'deal_stage' = ANY (cols);
	IF NOT has_closed THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || 'column closed_date is missing: no win-rate or cycle trends and no drivers over time; train() holds out a hash sample of deals instead of the newest ones and cannot weight recent deals more'::text;
		c_hint := c_hint || 'Map the date each deal was won or lost as closed_date if your CRM has it.'::text;
	END IF;
	IF NOT has_created THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column created_date is missing: no deal age, so %s',
			CASE WHEN 'sales_cycle_days' = ANY (cols) THEN 'open deals are scored without their age'
			     ELSE 'no sales-cycle lengths and open deals are scored without their age' END);
		c_hint := c_hint || 'Map the date each deal was created as created_date if your CRM has it.'::text;
	END IF;
	IF NOT has_stage THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'column deal_stage is missing: no funnel and no time-in-stage feature'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	SELECT pg_catalog.array_agg(m ORDER BY o) INTO missing
	FROM pg_catalog.unnest(ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount'])
		WITH ORDINALITY u(m, o)
	WHERE NOT m = ANY (cols);
	IF missing IS NOT NULL THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('segment and amount columns missing: %s; diagnose() and train() use the others, and any column named in dimension => or features =>',
			pg_catalog.array_to_string(missing, ', '));
		c_hint := c_hint || NULL::text;
	END IF;

	IF fatal THEN
		RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
			pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
			ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
		RETURN;
	END IF;

	-- Outcomes: counts, and unknown labels by what they look like.
	SELECT pg_catalog.array_agg(pg_catalog.format('pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.%1$I::date) THEN d.%1$I::date END)', c))
		INTO date_cols
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'last_activity_date', 'stage_entered_date']) c
	WHERE c = ANY (cols);
	newest_expr := CASE WHEN date_cols IS NULL THEN 'NULL::date'
	                    ELSE 'greatest(' || pg_catalog.array_to_string(date_cols, ', ') || ')' END;
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.count(*),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'won'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'lost'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open'),
		          %s, %s, %s
		   FROM (SELECT d.*, coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls FROM %s AS d) d$q$,
		newest_expr,
		CASE WHEN 'created_date' = ANY (cols)
		     THEN 'pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END)'
		     ELSE 'NULL::date' END,
		-- for stale open deals: the longest closed cycle, the oldest open
		-- deal and how many open deals have a creation date
		CASE WHEN 'created_date' = ANY (cols) AND 'closed_date' = ANY (cols)
		     THEN $e$pg_catalog.max(d.closed_date::date - d.created_date::date)
		                FILTER (WHERE d.cls IN ('won', 'lost') AND pg_catalog.isfinite(d.created_date::date)
		                          AND pg_catalog.isfinite(d.closed_date::date) AND d.closed_date::date >= d.created_date::date),
		              pg_catalog.min(d.created_date::date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date)),
		              pg_catalog.count(d.created_date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date))$e$
		     ELSE 'NULL::int, NULL::date, 0::bigint' END,
		source::text)
		INTO n_total, n_won, n_lost, n_open, newest, newest_created, max_cycle, oldest_open, n_open_dated;

	FOR unknown IN EXECUTE pg_catalog.format(
		$q$SELECT dealrisk._label_guess(x.label) AS guess,
		          pg_catalog.array_agg(x.label ORDER BY x.n DESC, x.label) AS labels,
		          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.label, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.label) AS listed,
		          pg_catalog.sum(x.n)::bigint AS n, pg_catalog.count(*) AS k
		   FROM (SELECT pg_catalog.btrim(d.outcome::text) AS label, pg_catalog.count(*) AS n
		         FROM %s AS d
		         WHERE dealrisk.outcome_class(d.outcome::text) OPERATOR(pg_catalog.=) 'unknown'
		         GROUP BY 1) x
		   GROUP BY 1
		   ORDER BY pg_catalog.array_position(ARRAY['open', 'won', 'lost', 'unknown'], dealrisk._label_guess(x.label))$q$,
		source::text)
	LOOP
		labels := unknown.labels;
		c_check := c_check || 'outcome_labels'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('%s %s of %s %s not known (%s of %s deals): %s; %s',
			unknown.k, CASE WHEN unknown.k = 1 THEN 'outcome label' ELSE 'outcome labels' END, name,
			CASE WHEN unknown.k = 1 THEN 'is' ELSE 'are' END, dealrisk._num(unknown.n), dealrisk._num(n_total),
			unknown.listed,
			CASE unknown.guess WHEN 'open' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a stage of an open deal' ELSE 'they look like stages of open deals' END
			                   WHEN 'won' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a won deal' ELSE 'they look like won deals' END
			                   WHEN 'lost' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a lost deal' ELSE 'they look like lost deals' END
			                   ELSE 'it is not clear whether they mean won, lost or open' END);
		c_hint := c_hint || CASE unknown.guess
			WHEN 'open' THEN dealrisk._label_fix('dealrisk.open_labels', labels)
			WHEN 'won' THEN dealrisk._label_fix('dealrisk.won_labels', labels)
			WHEN 'lost' THEN dealrisk._label_fix('dealrisk.lost_labels', labels)
			ELSE 'Add each to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels, e.g. '
			     || dealrisk._label_fix('dealrisk.won_labels', labels[1:1]) END;
		fatal := true;
	END LOOP;
	-- (the checks below read labels with outcome_class, which never fails:
	-- deals with unknown labels count as neither won, lost nor open)

	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	c_check := c_check || 'outcomes'::text;
	IF n_won + n_lost = 0 THEN
		c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('no closed deal among %s deals: there is no win rate and nothing to train on', dealrisk._num(n_total));
		c_hint := c_hint || 'Check which labels mean won and lost: dealrisk.won_labels and dealrisk.lost_labels.'::text;
	ELSIF n_won < min_n OR n_lost < min_n THEN
		c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost and %s open deals: train() needs at least %s won and %s lost',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._num(n_open), min_n, min_n);
		c_hint := c_hint || 'Collect more closed deals; win rates of so few deals have wide intervals.'::text;
	ELSE
		c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost (win rate %s) and %s open deals',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._pct(n_won::float8 / (n_won + n_lost)), dealrisk._num(n_open));
		c_hint := c_hint || NULL::text;
	END IF;

	-- Stages: values dealrisk.stages does not know, outcomes in the stage
	-- column, and whether the column records the stage a deal reached.
	IF has_stage THEN
		EXECUTE pg_catalog.format(
			$q$SELECT pg_catalog.count(*)::int,
			          pg_catalog.string_agg(pg_catalog.format('(%%L, %%s, false)', x.st, x.base + x.k), ', ' ORDER BY x.k)
			              FILTER (WHERE NOT x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.st, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.quote_literal(x.st), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome)
			   FROM (SELECT y.st, y.n, y.is_outcome,
			                pg_catalog.row_number() OVER (PARTITION BY y.is_outcome ORDER BY y.st) AS k,
			                coalesce((SELECT pg_catalog.max(s."position") FROM dealrisk.stages s), 0) AS base
			         FROM (SELECT z.st, z.n, dealrisk.outcome_class(z.st) IN ('won', 'lost') AS is_outcome
			               FROM (SELECT pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') AS st, pg_catalog.count(*) AS n
			                     FROM %s AS d
			                     WHERE pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') <> ''
			                     GROUP BY 1) z
			               WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages s
			                                 WHERE pg_catalog.lower(s.stage) OPERATOR(pg_catalog.=) pg_catalog.lower(z.st))) y) x$q$,
			source::text)
			INTO n_unknown_stages, stage_fix, status_labels, status_in;
		IF status_labels IS NOT NULL THEN
			c_check := c_check || 'status_column'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds outcome labels: %s; it is a single status column holding both the stage of open deals and the outcome of closed ones, so it says nothing about the stage closed deals reached',
				status_labels);
			c_hint := c_hint || pg_catalog.format('Split it in a view over your table: CASE WHEN status IN (%1$s) THEN status END AS outcome, CASE WHEN status NOT IN (%1$s) THEN status END AS deal_stage (docs/data-contract.md).',
				status_in);
		END IF;
		IF stage_fix IS NOT NULL THEN
			c_check := c_check || 'unknown_stages'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds stages that dealrisk.stages does not list: the funnel cannot be computed until they are added')::text;
			c_hint := c_hint || pg_catalog.format('Add them in pipeline order, e.g. INSERT INTO dealrisk.stages (stage, position, is_late) VALUES %s; then correct position and is_late (a stage before the first one takes position 0 or below).',
				stage_fix);
		END IF;
		semantics := dealrisk._stage_semantics(source);
		IF semantics IS NOT NULL THEN
			c_check := c_check || 'stage_semantics'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || semantics;
			c_hint := c_hint || dealrisk._stage_semantics_hint();
		END IF;
	END IF;

	-- Columns that record the outcome instead of predicting it.
	FOR r IN SELECT * FROM dealrisk._feature_leaks(source, NULL) LOOP
		c_check := c_check || 'outcome_leaks'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column %s leaks the outcome: %s', r.feature, r.reason);
		c_hint := c_hint || 'Map only what is known while a deal is open (docs/data-contract.md); train() leaves such a column out.'::text;
	END LOOP;

	-- Dates: the day open deals are scored at, against the data.
	as_of_set := NULLIF(pg_catalog.current_setting('dealrisk.as_of_date', true), '');
	as_of := coalesce(as_of_set::date, CURRENT_DATE);
	IF n_open > 0 AND newest IS NOT NULL THEN
		IF as_of_set IS NULL AND as_of - newest > 90 THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('open deals are scored as of today, %s, %s days after the newest date in the source (%s): their ages and times in stage are measured to today, which makes every open deal look stale',
				as_of, dealrisk._num((as_of - newest)::bigint), newest);
			-- (the date as ISO text, which means the same date under any
			-- DateStyle of the sessions that read the setting)
			c_hint := c_hint || pg_catalog.format('If the data is an export from %s, score as of then: SET dealrisk.as_of_date = %L; to keep it: ALTER DATABASE %I SET dealrisk.as_of_date = %L;',
				newest, pg_catalog.to_char(newest, 'YYYY-MM-DD'), pg_catalog.current_database(), pg_catalog.to_char(newest, 'YYYY-MM-DD'));
		ELSIF as_of < newest_created THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('dealrisk.as_of_date (%s) is before the newest created_date in the source (%s): deals created after it get negative ages',
				as_of, newest_created);
			c_hint := c_hint || pg_catalog.format('SET dealrisk.as_of_date = %L, or later.', pg_catalog.to_char(newest_created, 'YYYY-MM-DD'));
		END IF;
	END IF;
	-- (when open deals are scored as of a date long after the data, the
	-- warning above says why they all look old)
	IF has_created AND has_closed AND n_open > 0 AND NOT 'scoring_date' = ANY (c_check) THEN
		-- (counted only when the oldest open deal is that old)
		IF max_cycle IS NOT NULL AND n_open_dated > 0 AND as_of - oldest_open > max_cycle THEN
			EXECUTE pg_catalog.format(
				$q$SELECT pg_catalog.count(*) FROM %s AS d
				   WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
				     AND pg_catalog.isfinite(d.created_date::date) AND $1 - d.created_date::date > $2$q$,
				source::text)
				INTO n_older USING as_of, max_cycle::int;
			IF n_older > 0 THEN
				c_check := c_check || 'stale_open_deals'::text; c_sev := c_sev || 'warning'::text;
				c_find := c_find || pg_catalog.format('%s of %s open deals are older on %s than every closed deal was when it closed (longest cycle %s days; the oldest open deal was created on %s): they may be dead deals never closed in the CRM',
					dealrisk._num(n_older), dealrisk._num(n_open_dated), as_of, dealrisk._num(max_cycle::bigint), oldest_open);
				c_hint := c_hint || 'Close or remove them in the CRM, or leave them out of the source; if the data is an older export, set dealrisk.as_of_date to its date.'::text;
			END IF;
		END IF;
	END IF;

	-- Row-level problems, from data_quality() (the checks it can run on the
	-- columns the source has).
	FOR dq IN SELECT * FROM dealrisk.data_quality(source) q
	          WHERE q."rows" > 0 AND q.check_name NOT IN ('unknown_outcome', 'unknown_stage')
	LOOP
		c_check := c_check || dq.check_name;
		c_sev := c_sev || CASE WHEN dq.check_name IN ('open_with_closed_date', 'null_amount', 'null_stage', 'cycle_days_mismatch')
		                       THEN 'info' ELSE 'warning' END;
		c_find := c_find || pg_catalog.format('%s %s: %s%s', dealrisk._num(dq."rows"),
			CASE WHEN dq."rows" = 1 THEN 'row' ELSE 'rows' END, dq.description,
			CASE WHEN dq.example_deal_id IS NOT NULL THEN pg_catalog.format(' (e.g. deal_id %s)', dq.example_deal_id) ELSE '' END);
		c_hint := c_hint || CASE dq.check_name
			WHEN 'duplicate_deal_id' THEN 'Keep one row per deal (watch() refuses open deals that share a deal_id).'
			WHEN 'null_deal_id' THEN 'Give every deal an id; rows without one cannot be scored or alerted on.'
			WHEN 'closed_before_created' THEN 'Fix the dates in the CRM or the mapping view; cycle lengths of these deals are negative and left out.'
			WHEN 'closed_without_closed_date' THEN 'These deals count in win rates but are left out of trends, drivers and the time-based holdout.'
			WHEN 'invalid_amount' THEN 'NaN and infinite amounts are treated as missing; fix them at the source.'
			WHEN 'infinite_date' THEN 'Infinite dates are treated as missing; fix them at the source.'
			WHEN 'negative_amount' THEN 'Check whether negative amounts are refunds or errors; they fall in the lowest amount bin.'
			WHEN 'negative_cycle_days' THEN 'Negative cycle lengths are left out of cycle statistics.'
			WHEN 'future_created_date' THEN 'Deals created in the future get negative ages; check the dates or dealrisk.as_of_date.'
			END;
	END LOOP;

	IF NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(c_sev) s WHERE s IN ('error', 'warning')) THEN
		c_check := c_check || 'summary'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'no error or warning: every diagnostic and train() can run on this source'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
		pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
		ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
END
$fn$;
COMMENT ON FUNCTION dealrisk.check_source(regclass) IS
	'Preflight of a deal source: one row per finding (check, severity error/warning/info, finding, hint): missing columns and what they take away, unknown outcome labels (with the SET line that fixes them), unknown stages (with the INSERT that adds them), a status column holding outcomes, whether deal_stage can support a funnel, outcome leaks, the scoring date against the data, open deals older than every closed one, and row-level problems of data_quality()';
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
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
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

-- _build_spec (the knots of the age and stage time curves, the bins'
-- quantiles, a one-line NOTICE when stage_time is left out) and train()
-- (which fits the curves) are replaced in 25-train.sql, with that part's
-- changes.
-- 25-train: training on real CRM exports (issue #9, sections 4, 1 and 6):
-- sources without dates, numeric columns binned by default (column:linear
-- on request), features that leak the outcome left out, an implausibly
-- high holdout AUC not activated without force, and analysts who train
-- candidate models (dealrisk.models.trained_by).

ALTER TABLE dealrisk.models ADD COLUMN trained_by text;
ALTER TABLE dealrisk.models ALTER COLUMN trained_by SET DEFAULT CURRENT_USER;
COMMENT ON COLUMN dealrisk.models.trained_by IS
	'The role that stored the model (train() or import_model(), or an INSERT): a role granted INSERT on the other columns cannot set it; NULL for models stored before 0.3.0';

-- new helpers, executable by PUBLIC (dealrisk.check_source() calls _feature_leaks)
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

CREATE FUNCTION dealrisk._feature_leaks(source regclass, features text[] DEFAULT NULL)
RETURNS TABLE (feature text, reason text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
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
	sampled text := '';
	num text;
	deciles text[];
	lv text;
	sel text := '';
	sets text := '';
	which text := '';
	val text := '';
	i int;
	j int := 0;
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
	IF pg_catalog.cardinality(cols) = 0 THEN
		RETURN;
	END IF;
	-- the columns' types run no less trusted role's code when read
	PERFORM dealrisk._check_source(source, ARRAY['outcome'] || cols);

	SELECT r.relkind, r.reltuples INTO kind, est FROM pg_catalog.pg_class r WHERE r.oid = source::pg_catalog.oid;
	scan := pg_catalog.format('%s d', source);
	IF kind IN ('r', 'm') AND est > 60000 THEN
		scan := pg_catalog.format('%s d TABLESAMPLE SYSTEM (%s) REPEATABLE (42)', source, 100 * 30000 / est);
		sampled := ' sampled';
	END IF;

	-- a number column's finite values; its deciles over the closed deals
	-- (one scan for all of them), as text of an array of its own type
	SELECT pg_catalog.string_agg(pg_catalog.format(
	           '(percentile_disc($1) WITHIN GROUP (ORDER BY %s))::text',
	           CASE WHEN types[k] IN ('numeric', 'real', 'double precision')
	                THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[k])
	                ELSE pg_catalog.format('d.%I', cols[k]) END), ', ' ORDER BY k)
	INTO num
	FROM pg_catalog.generate_subscripts(cols, 1) k WHERE kinds[k] = 'number';
	IF num IS NOT NULL THEN
		EXECUTE pg_catalog.format('SELECT ARRAY[%s] FROM %s WHERE dealrisk.outcome_class(d.outcome::text) IN (''won'', ''lost'')',
		                          num, scan)
			INTO deciles USING '{0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9}'::float8[];
	END IF;

	-- each column's level per deal (NULL when empty), counted by outcome
	-- class in one grouping set per column
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		IF kinds[i] = 'text' THEN
			lv := pg_catalog.format('CASE WHEN pg_catalog.btrim(d.%1$I::text) <> '''' THEN d.%1$I::text END', cols[i]);
		ELSE
			j := j + 1;
			lv := CASE WHEN deciles[j] IS NULL THEN 'NULL::text'
			           ELSE pg_catalog.format('CASE WHEN %1$s = ANY (%2$L::%3$s[]) THEN ''='' || (%1$s)::text ELSE pg_catalog.width_bucket(%1$s, %2$L::%3$s[])::text END',
			                                  CASE WHEN types[i] IN ('numeric', 'real', 'double precision')
			                                       THEN pg_catalog.format('CASE WHEN d.%1$I NOT IN (''NaN'', ''Infinity'', ''-Infinity'') THEN d.%1$I END', cols[i])
			                                       ELSE pg_catalog.format('d.%I', cols[i]) END,
			                                  deciles[j], types[i]) END;
		END IF;
		sel := sel || pg_catalog.format(', %s AS l%s', lv, i);
		sets := sets || pg_catalog.format(', (cls, l%s)', i);
		which := which || pg_catalog.format(' WHEN GROUPING(l%1$s) = 0 THEN %1$s', i);
		val := val || pg_catalog.format(' WHEN GROUPING(l%1$s) = 0 THEN l%1$s', i);
	END LOOP;

	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH g AS (
			SELECT CASE %s END k, CASE %s END v, cls, count(*) n
			FROM (SELECT coalesce(dealrisk.outcome_class(d.outcome::text), 'open') cls %s FROM %s) x
			GROUP BY GROUPING SETS (%s)),
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
		SELECT ($1::text[])[k], pg_catalog.concat_ws('; and ', fill, sep)
		FROM why WHERE fill IS NOT NULL OR sep IS NOT NULL
		ORDER BY k $q$, which, val, sel, scan, pg_catalog.substr(sets, 3), sampled, sampled)
		USING names;
END
$$;
COMMENT ON FUNCTION dealrisk._feature_leaks(regclass, text[]) IS
	'Feature columns of a source that record the outcome: filled on closed deals but empty on open ones, or separating won from lost almost perfectly on their own; one row per feature with the reason (internal)';

-- numeric columns: bins unless column:linear
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
	end_expr text;
	age_expr text;
	created_col text;
	closed_col text;
	stage_days text;
	dfilter text := filter;
	src regclass := source;
	entry text;
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
				skipped := skipped || pg_catalog.jsonb_build_object('stage_time',
					pg_catalog.format('deal_stage gives the outcome away (%s)', t));
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

-- an implausibly high holdout AUC is a problem too (reads a setting: STABLE)
CREATE OR REPLACE FUNCTION dealrisk._quality_problem(metrics jsonb)
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

COMMENT ON FUNCTION dealrisk.activate(bigint, boolean) IS
	'Makes a model the active one of its name; refused (unless force) when its holdout AUC < 0.55, implausibly high (> dealrisk.max_plausible_auc) or its Brier score is no better than the base rate';

-- dates decide the derived features, leaks are left out, analysts train candidates
CREATE OR REPLACE FUNCTION dealrisk.train(source regclass, name text DEFAULT 'default', features text[] DEFAULT NULL,
	l2 float8 DEFAULT 1.0, holdout float8 DEFAULT 0.2, activate boolean DEFAULT true)
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
			source, n_won, n_lost, min_n
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
	-- a feature kept so far that the specification lacks learned nothing
	-- from the closed deals (no value, or _build_spec said why)
	SELECT left_out || coalesce(pg_catalog.jsonb_object_agg(k,
	           'not learned from the closed deals: none of them has a usable value'), '{}')
	INTO left_out
	FROM pg_catalog.unnest(kept_cols) k
	WHERE NOT left_out ? k AND NOT EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(spec->'features') e
	                  WHERE e->>'name' = CASE k WHEN 'sales_rep_id' THEN 'rep_win_rate' ELSE k END);

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
COMMENT ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean) IS
	'Trains an L2-regularised logistic deal risk model on the closed deals of source after its preflight (check_source(): errors stop it, warnings go into metrics->''preflight''; IRLS, one parallel aggregate pass per iteration), leaving out features the source''s dates cannot support and features that leak the outcome (metrics->''features_left_out''), measures it on the newest holdout share (a hash of deal_id without close dates), refits on all, stores it in dealrisk.models and activates it if good enough and the caller may (activate => false: a candidate); returns the model id';

-- sources without closed_date
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
		SELECT l.deal_id::text,
		       sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) AS similarity,
		       pg_catalog.array_agg(pg_catalog.format('%%s = %%s (%%s%%%% of %s, %%s%%%% of closed deals)',
		                        f.col, f.val, pg_catalog.round((100 * f.lost_share)::numeric),
		                        pg_catalog.round((100 * f.all_share)::numeric))
		                 ORDER BY f.lost_share / f.all_share DESC) FILTER (WHERE f.lost_share >= 1.2 * f.all_share AND f.all_share > 0)
		FROM long l JOIN lift f ON f.col = l.col AND f.val = l.val
		WHERE dealrisk.is_won(l.outcome) IS NULL AND f.all_share > 0
		GROUP BY l.deal_id
		HAVING sum(pg_catalog.ln(f.lost_share / f.all_share)) FILTER (WHERE f.lost_share > f.all_share) > 0
		ORDER BY 2 DESC, 1
		LIMIT $2 $q$, unions, recent_l, source, recent_d, source, losses)
		USING since, k;
END
$$;
COMMENT ON FUNCTION dealrisk.lost_lookalikes(regclass, date, int) IS
	'Open deals that look most like the deals lost since a date (default: the last 30 days of closes; every lost deal when the source has no closed_date), with the traits they share and how over-represented those traits are among the recent losses';
-- Alerts a manager can act on (issue #9, section 3): the alert policy.
-- watch_config gains the policy (top_fraction, rise, max_per_rep) and the
-- cutoff it gave; refresh_log remembers each refresh's cutoff; watch() takes
-- the policy (a new signature); the view, refresh() and digest() keep to
-- the cutoff; alerts never carry a "*" fallback action such as "On track".

-- The configuration row of 0.2.0 becomes what watch(source, threshold,
-- model) writes in 0.3.0: a threshold alone keeps its meaning (every open
-- deal at or above it, top_fraction 1), and a high-risk deal whose risk
-- rises 15 points is alerted again.  No deal that was not alerted before is
-- left out, and no policy changes behind the user's back.  (0.2.0's
-- default threshold, 60, alerts on about half the open deals of a typical
-- pipeline: docs/operations.md says how to move to the new default.  A
-- NOTICE here would not be seen: extension scripts run with
-- client_min_messages at WARNING.)
-- (columns without a default, so that no "missing value" stays behind in
-- the catalog: an upgraded table dumps like a fresh one)
ALTER TABLE dealrisk.watch_config
	ADD COLUMN top_fraction float8 CHECK (top_fraction > 0 AND top_fraction <= 1),
	ADD COLUMN rise float8 CHECK (rise > 0 AND rise <= 100),
	ADD COLUMN max_per_rep int CHECK (max_per_rep >= 1),
	ADD COLUMN cutoff float8;
UPDATE dealrisk.watch_config SET top_fraction = 1, rise = 15;
ALTER TABLE dealrisk.watch_config ALTER COLUMN top_fraction SET NOT NULL;
COMMENT ON TABLE dealrisk.watch_config IS
	'What dealrisk.refresh() watches (one row, set by dealrisk.watch()): the deal source, the model name, the alert policy (threshold, top_fraction, rise, max_per_rep), the cutoff it gave at the latest scoring, when the deals were last scored and the SQL of dealrisk_watch.high_risk_deals';
COMMENT ON COLUMN dealrisk.watch_config.threshold IS
	'The lowest risk (0-100) of a high-risk deal';
COMMENT ON COLUMN dealrisk.watch_config.top_fraction IS
	'At most this share of the open deals is high-risk: the riskiest ones (1: every open deal at or above the threshold)';
COMMENT ON COLUMN dealrisk.watch_config.rise IS
	'A high-risk deal whose risk rose at least this many points since its previous scoring is alerted again; NULL: never';
COMMENT ON COLUMN dealrisk.watch_config.max_per_rep IS
	'At most this many alerts per sales rep per refresh, the riskiest first; NULL: no cap';
COMMENT ON COLUMN dealrisk.watch_config.cutoff IS
	'The risk at or above which an open deal was high-risk at the latest scoring (watch() or refresh()): the threshold, or higher to keep to top_fraction; Infinity when no deal qualified';

-- Each refresh's cutoff (unknown for the refreshes before 0.3.0: NULL).
ALTER TABLE dealrisk.refresh_log ADD COLUMN cutoff float8;
COMMENT ON COLUMN dealrisk.refresh_log.cutoff IS
	'The risk at or above which an open deal was high-risk at this refresh (dealrisk.watch_config.cutoff then); NULL for refreshes before dealrisk 0.3.0';

COMMENT ON TABLE dealrisk.alerts IS
	'Outbox of risk alerts: one row per deal that became high-risk at a dealrisk.refresh() (or, already high-risk, whose risk rose sharply); mailers take rows with dealrisk.claim_alerts(), render them with dealrisk.alert_text() and confirm them with dealrisk.ack_alert()';
COMMENT ON COLUMN dealrisk.alerts.payload IS
	'{"threshold", "top_fraction", "cutoff", "cause" (became high-risk / risk rose), "model", "explain": [{factor, value, effect, reason}, ...]}: everything a message needs';
COMMENT ON COLUMN dealrisk.alerts.action IS
	'What to do: the recommended_action() of a factor rule, else the rule of the factor that adds the most risk, else a review naming that factor (dealrisk._alert_action); never the "On track" fallback';

-- New helpers (not PUBLIC, like the helpers of refresh() and watch()).
CREATE FUNCTION dealrisk._high_risk_cutoff(risks float8[], threshold float8, top_fraction float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN top_fraction >= 1 THEN threshold
	       ELSE greatest(threshold, coalesce(
	            (SELECT pg_catalog.min(x.r)
	             FROM (SELECT u.r, pg_catalog.count(*) OVER (ORDER BY u.r DESC) AS taken
	                   FROM pg_catalog.unnest(risks) u(r) WHERE u.r IS NOT NULL) x
	             WHERE x.taken <= pg_catalog.floor(top_fraction::numeric
	                        * (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(risks) v(r) WHERE v.r IS NOT NULL))),
	            'Infinity'::float8)) END
$$;
COMMENT ON FUNCTION dealrisk._high_risk_cutoff(float8[], float8, float8) IS
	'The risk at or above which open deals are high-risk: the threshold, raised so that at most top_fraction of the deals qualify; Infinity when none may (internal)';

CREATE FUNCTION dealrisk._alert_action(rule_action text, top_factor text, top_effect float8, top_reason text,
	factors text[], actions text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF rule_action OPERATOR(pg_catalog.=) ANY (actions) THEN
		RETURN rule_action;
	ELSIF top_effect > 0 THEN
		RETURN coalesce(actions[pg_catalog.array_position(factors, top_factor)],
		                'Review the deal with the sales manager this week, starting with what adds the most risk: ' || top_reason);
	END IF;
	RETURN 'Review the deal with the sales manager this week: no single factor adds to its risk, which is the model''s base risk for any deal';
END
$$;
COMMENT ON FUNCTION dealrisk._alert_action(text, text, float8, text, text[], text[]) IS
	'The action of an alert: a factor rule''s recommended action, else the rule of the factor that adds the most risk, else a review naming it; never a "*" fallback such as "On track"; factors and actions: the factor rules, best first (internal)';

CREATE FUNCTION dealrisk._policy_words(threshold float8, top_fraction float8)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN top_fraction >= 1 THEN pg_catalog.format('risk at least %s', threshold)
            ELSE pg_catalog.format('the riskiest %s%% of the open deals, at risk %s or more',
                                   pg_catalog.round((100 * top_fraction)::numeric, 2)::float8, threshold) END;
COMMENT ON FUNCTION dealrisk._policy_words(float8, float8) IS
	'The alert policy in words, e.g. ''the riskiest 10% of the open deals, at risk 50 or more'' (internal)';

REVOKE EXECUTE ON FUNCTION
	dealrisk._high_risk_cutoff(float8[], float8, float8),
	dealrisk._alert_action(text, text, float8, text, text[], text[]),
	dealrisk._policy_words(float8, float8)
FROM PUBLIC;

-- The view's statement, its comment and the configuration's error hint.
CREATE OR REPLACE FUNCTION dealrisk._view_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format($v$CREATE MATERIALIZED VIEW dealrisk_watch.high_risk_deals AS
SELECT s.deal_id, s.risk, dealrisk.risk_band(s.risk) AS band, t.reason AS top_reason,
       dealrisk._alert_action(dealrisk.recommended_action(s.deal, s.model), t.factor,
                              pg_catalog.round(t.effect::numeric, 2)::float8, t.reason,
                              r.factors, r.actions) AS recommended_action,
       s.deal_amount, s.sales_rep_id, s.deal_stage, s.days_in_stage, s.scored_at
FROM (
	SELECT d.deal_id::text AS deal_id, d AS deal, w.model, w.cutoff, w.scored_at,
	       dealrisk.deal_risk(d, w.model) AS risk,
	       d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
	       d.deal_stage::text AS deal_stage,
	       (SELECT dealrisk._as_of()) - %s AS days_in_stage
	FROM %s d CROSS JOIN dealrisk.watch_config w
	WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
	OFFSET 0
) s
CROSS JOIN (SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id) AS factors,
                   pg_catalog.array_agg(a.action ORDER BY a.priority, a.id) AS actions
            FROM dealrisk.action_rules a WHERE a.factor <> '*') r
LEFT JOIN LATERAL (SELECT e.factor, e.effect, e.reason FROM dealrisk.deal_risk_explain(s.deal, s.model) e LIMIT 1) t ON true
WHERE s.risk >= s.cutoff$v$,
	dealrisk._stage_start_sql(source),
	dealrisk._qualified_name(source));
COMMENT ON FUNCTION dealrisk._view_sql(regclass) IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals over a source (internal)';

CREATE OR REPLACE FUNCTION dealrisk._describe_view()
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO STRICT cfg FROM dealrisk.watch_config;
	EXECUTE pg_catalog.format('COMMENT ON MATERIALIZED VIEW dealrisk_watch.high_risk_deals IS %L',
		pg_catalog.format('High-risk open deals of %s under the active "%s" model: %s (dealrisk.watch_config.cutoff is the risk this took at the latest scoring), with their top reason and action; set up by dealrisk.watch(), refreshed by dealrisk.refresh() (docs/operations.md)',
		                  dealrisk._qualified_name(cfg.source), cfg.model, dealrisk._policy_words(cfg.threshold, cfg.top_fraction)));
END
$$;
COMMENT ON FUNCTION dealrisk._describe_view() IS
	'Sets the comment of dealrisk_watch.high_risk_deals from dealrisk.watch_config (internal)';

CREATE OR REPLACE FUNCTION dealrisk._watch_config()
RETURNS dealrisk.watch_config
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO cfg FROM dealrisk.watch_config;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no deal source is watched yet'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Call dealrisk.watch() first, e.g. SELECT dealrisk.watch(''public.deals'');';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cfg.source::pg_catalog.oid) THEN
		RAISE EXCEPTION 'the watched deal source (OID %) no longer exists', cfg.source::oid
			USING ERRCODE = 'undefined_table',
			      HINT = 'Watch another source: SELECT dealrisk.watch(''public.deals'');';
	END IF;
	RETURN cfg;
END
$$;
COMMENT ON FUNCTION dealrisk._watch_config() IS
	'The dealrisk.watch_config row; an error when nothing is watched or the source is gone (internal)';

-- watch() takes the policy: a new signature.  The roles that could call
-- the old one may call the new one (made first, so that the old one's
-- grants can be read), then the old one goes.
CREATE FUNCTION dealrisk.watch(source regclass, threshold float8 DEFAULT NULL, model text DEFAULT 'default',
	top_fraction float8 DEFAULT NULL, rise float8 DEFAULT 15, max_per_rep int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text;
	old dealrisk.watch_config;
	ts timestamptz := pg_catalog.clock_timestamp();
	n bigint;
	thr float8 := coalesce(threshold, 50);
	top float8 := coalesce(top_fraction, CASE WHEN threshold IS NULL THEN 0.1 ELSE 1 END);
	risks float8[];
	cut float8;
BEGIN
	IF NOT (thr >= 0 AND thr <= 100) OR thr = 'NaN' THEN
		RAISE EXCEPTION 'threshold must be a risk score between 0 and 100, got %', thr
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'Risk scores are percentages; leave it out for the default alert policy (the riskiest 10% of the open deals, at risk 50 or more).';
	END IF;
	IF NOT (top > 0 AND top <= 1) OR top = 'NaN' THEN
		RAISE EXCEPTION 'top_fraction must be a share of the open deals above 0 and at most 1, got %', top
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'E.g. 0.1 to alert on the riskiest 10% of the open deals; 1 to alert on every open deal at or above the threshold.';
	END IF;
	IF NOT (rise > 0 AND rise <= 100) OR rise = 'NaN' THEN
		RAISE EXCEPTION 'rise must be between 0 (exclusive) and 100 risk points, got %', rise
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'A high-risk deal whose risk rose this many points since the last refresh is alerted again; NULL never alerts again.';
	END IF;
	IF max_per_rep < 1 THEN
		RAISE EXCEPTION 'max_per_rep must be at least 1, got %', max_per_rep
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'The most alerts one sales rep gets from one refresh; NULL for no cap.';
	END IF;
	IF source::pg_catalog.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid THEN
		RAISE EXCEPTION 'dealrisk_watch.high_risk_deals cannot watch itself'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass the table or view that holds the deals.';
	END IF;
	PERFORM dealrisk._check_source(source,
		ARRAY['deal_id', 'outcome', 'created_date', 'deal_amount', 'sales_rep_id', 'deal_stage']);
	PERFORM dealrisk._active_model(model);
	view_sql := dealrisk._view_sql(source);

	-- one watch() or refresh() at a time; readers are not blocked
	LOCK TABLE dealrisk.watch_config IN EXCLUSIVE MODE;
	SELECT * INTO old FROM dealrisk.watch_config;
	-- the cutoff over the open deals' scores of the moment
	IF top < 1 THEN
		EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(dealrisk.deal_risk(d, $1)) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', source)
			INTO risks USING model;
	END IF;
	cut := dealrisk._high_risk_cutoff(coalesce(risks, '{}'), thr, top);
	INSERT INTO dealrisk.watch_config AS w (singleton, source, threshold, model, configured_at, configured_by, scored_at,
	                                        view_definition, top_fraction, rise, max_per_rep, cutoff)
	VALUES (true, source, thr, model, ts, CURRENT_USER, ts, view_sql, top, rise, max_per_rep, cut)
	ON CONFLICT (singleton) DO UPDATE SET source = EXCLUDED.source, threshold = EXCLUDED.threshold,
		model = EXCLUDED.model, configured_at = EXCLUDED.configured_at, configured_by = EXCLUDED.configured_by,
		scored_at = EXCLUDED.scored_at, view_definition = EXCLUDED.view_definition,
		top_fraction = EXCLUDED.top_fraction, rise = EXCLUDED.rise, max_per_rep = EXCLUDED.max_per_rep,
		cutoff = EXCLUDED.cutoff;

	IF old.source OPERATOR(pg_catalog.=) source
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid
	               AND c.relkind = 'm') THEN
		IF dealrisk._view_shape(old.view_definition) = dealrisk._view_shape(view_sql) THEN
			-- same source (maybe renamed), same columns: keep the view (its
			-- grants and dependent views) and refresh it
			PERFORM dealrisk._refresh_view(source);
			PERFORM dealrisk._describe_view();
		ELSE
			-- the view of an older statement (an upgrade, a column gained or
			-- lost): rebuilt, or kept while other views depend on it
			PERFORM dealrisk._rebuild_view(source, old.view_definition);
		END IF;
	ELSE
		PERFORM dealrisk._create_view(source);
	END IF;
	-- the view belongs to its creator: count it only when that role's code
	-- may run as the caller (its indexes, say)
	PERFORM dealrisk._check_relation_trust('dealrisk_watch.high_risk_deals');
	SELECT count(*) INTO n FROM dealrisk_watch.high_risk_deals;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) IS
	'Watches the open deals of a source: remembers source, model and alert policy in dealrisk.watch_config and (re)builds the materialized view dealrisk_watch.high_risk_deals of the high-risk open deals (risk at least threshold, default 50, and among the riskiest top_fraction, default 0.1, or 1 when a threshold is given); rise re-alerts a high-risk deal whose risk rose that many points (default 15, NULL never), max_per_rep caps the alerts per rep and refresh (NULL: no cap); returns how many deals the view holds';
REVOKE EXECUTE ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) FROM PUBLIC;
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.watch(regclass, float8, text)'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) TO %s%s',
			CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;
DROP FUNCTION dealrisk.watch(regclass, float8, text);

CREATE OR REPLACE FUNCTION dealrisk.refresh()
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
	mid bigint;
	ts timestamptz;
	view_sql text;
	scored bigint;
	n_alerts bigint;
	max_id bigint;
	detail text;
	started timestamptz := pg_catalog.clock_timestamp();
	nestloop text;
	jit text;
	rule_factors text[];
	rule_actions text[];
	cut float8;
	risks float8[];
BEGIN
	-- one watch() or refresh() at a time (a second one waits, then scores anew)
	LOCK TABLE dealrisk.watch_config IN EXCLUSIVE MODE;
	-- and no model is activated meanwhile: every statement below (scores,
	-- view, alerts' reasons and actions) uses the model whose id is written
	LOCK TABLE dealrisk.models IN SHARE MODE;
	cfg := dealrisk._watch_config();
	PERFORM dealrisk._check_watch_view();
	PERFORM dealrisk._check_source(cfg.source,
		ARRAY['deal_id', 'outcome', 'created_date', 'deal_amount', 'sales_rep_id', 'deal_stage']);
	mid := dealrisk._active_model(cfg.model);
	ts := greatest(pg_catalog.clock_timestamp(), cfg.scored_at + interval '1 microsecond');
	UPDATE dealrisk.watch_config SET scored_at = ts;

	-- 1. every open deal's score
	BEGIN
		EXECUTE pg_catalog.format(
			'INSERT INTO dealrisk.score_history (deal_id, scored_at, model_id, risk)'
			' SELECT d.deal_id::text, $1, dealrisk._scoring_model($2), dealrisk.deal_risk(d, $2) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', cfg.source)
			USING ts, cfg.model;
		GET DIAGNOSTICS scored = ROW_COUNT;
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RAISE EXCEPTION 'source "%" has open deals that share a deal_id', dealrisk._source_name(cfg.source)
			USING ERRCODE = 'unique_violation', DETAIL = detail,
			      HINT = 'deal_id must identify a deal: remove the duplicates, or watch a view that keeps one row per deal.';
	END;

	-- 2. the cutoff of the alert policy over these scores: the view and
	-- the alerts below keep to it, and the refresh log remembers it (the
	-- next refresh compares with it)
	IF cfg.top_fraction < 1 THEN
		SELECT pg_catalog.array_agg(h.risk) INTO risks FROM dealrisk.score_history h WHERE h.scored_at = ts;
	END IF;
	cut := dealrisk._high_risk_cutoff(coalesce(risks, '{}'), cfg.threshold, cfg.top_fraction);
	UPDATE dealrisk.watch_config SET cutoff = cut;

	-- 3. the view, concurrently (readers keep reading the old rows); rebuilt
	-- when missing (dropped, or not restored).  A change in the source's
	-- columns is picked up by watch(), not here: rebuilding would fail when
	-- other views depend on the view.
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
	               WHERE c.oid = pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::pg_catalog.oid AND c.relkind = 'm') THEN
		view_sql := dealrisk._create_view(cfg.source);
		UPDATE dealrisk.watch_config SET view_definition = view_sql;
	ELSIF dealrisk._view_shape(cfg.view_definition) <> dealrisk._view_shape(dealrisk._view_sql(cfg.source)) THEN
		PERFORM dealrisk._rebuild_view(cfg.source, cfg.view_definition);
	ELSE
		PERFORM dealrisk._refresh_view(cfg.source);
	END IF;

	-- 4. the alerts: a deal is alerted when it is high-risk now (risk at
	-- least the cutoff) and
	--   - became so: its previous score (none: a new deal) was below the
	--     cutoff of that refresh and below today's, so that a cutoff that
	--     moves with the pipeline does not alert deals whose risk did not
	--     move (a previous score without a known cutoff is compared with
	--     today's alone, as before 0.3.0); or
	--   - its risk rose at least `rise` points since that score;
	-- the riskiest max_per_rep of each rep when capped.
	-- The planner has no statistics of the scores this refresh has just
	-- written (scored_at = ts): it would expect a handful and rescan the
	-- source for each (minutes on a million deals without an index on
	-- deal_id).  Joining the source by hash is right whatever their number.
	-- The LATERAL joins still need nested loops, whose cost the setting
	-- inflates: the estimate would call for JIT compilation, which costs
	-- about a second per refresh and saves nothing here.
	nestloop := pg_catalog.current_setting('enable_nestloop');
	jit := pg_catalog.current_setting('jit');
	-- the factor rules, for the alerts' actions (dealrisk._alert_action)
	SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id), pg_catalog.array_agg(a.action ORDER BY a.priority, a.id)
	INTO rule_factors, rule_actions
	FROM dealrisk.action_rules a WHERE a.factor OPERATOR(pg_catalog.<>) '*';
	PERFORM pg_catalog.set_config('enable_nestloop', 'off', true);
	PERFORM pg_catalog.set_config('jit', 'off', true);
	EXECUTE pg_catalog.format($q$
		INSERT INTO dealrisk.alerts (deal_id, created_at, source, model_id, risk, previous_risk, band, reason, action,
		                             industry, deal_amount, sales_rep_id, deal_stage, days_in_stage, payload)
		SELECT c.deal_id, c.scored_at, $4, c.model_id, c.risk, c.prev_risk, dealrisk.risk_band(c.risk),
		       x.explain -> 0 ->> 'reason',
		       dealrisk._alert_action(dealrisk.recommended_action(c.deal, $3), x.explain -> 0 ->> 'factor',
		                              (x.explain -> 0 ->> 'effect')::float8, x.explain -> 0 ->> 'reason', $9, $10),
		       c.industry, c.deal_amount, c.sales_rep_id, c.deal_stage, c.days_in_stage,
		       pg_catalog.jsonb_build_object('threshold', $2, 'top_fraction', $6, 'cutoff', $5, 'cause', c.cause,
		                                     'model', $3, 'explain', coalesce(x.explain, '[]'))
		FROM (
			SELECT h.deal_id, h.scored_at, h.model_id, h.risk, prev.risk AS prev_risk, d AS deal,
			       %s AS industry, d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
			       d.deal_stage::text AS deal_stage, (SELECT dealrisk._as_of()) - %s AS days_in_stage,
			       CASE WHEN prev.risk IS NULL OR prev.risk < least(coalesce(pl.cutoff, $5), $5)
			            THEN 'became high-risk' ELSE 'risk rose' END AS cause,
			       pg_catalog.row_number() OVER (PARTITION BY d.sales_rep_id::text ORDER BY h.risk DESC, h.deal_id) AS rep_rank
			FROM dealrisk.score_history h
			JOIN %s d ON d.deal_id::text = h.deal_id AND dealrisk.is_won(d.outcome) IS NULL
			LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
			                   WHERE p.deal_id = h.deal_id AND p.scored_at < h.scored_at
			                   ORDER BY p.scored_at DESC LIMIT 1) prev ON true
			LEFT JOIN (SELECT DISTINCT ON (l.scored_at) l.scored_at, l.cutoff FROM dealrisk.refresh_log l
			           ORDER BY l.scored_at, l.id DESC) pl ON pl.scored_at = prev.scored_at
			WHERE h.scored_at = $1 AND h.risk >= $5
			  AND (prev.risk IS NULL OR prev.risk < least(coalesce(pl.cutoff, $5), $5)
			       OR h.risk - prev.risk >= $7)
		) c
		CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
		                              'factor', e.factor, 'value', e.value,
		                              'effect', pg_catalog.round(e.effect::numeric, 2), 'reason', e.reason)) AS explain
		                    FROM dealrisk.deal_risk_explain(c.deal, $3) e) x
		WHERE c.rep_rank <= coalesce($8, c.rep_rank)
		ORDER BY c.risk DESC, c.deal_id$q$,
		CASE WHEN dealrisk._has_column(cfg.source, 'industry') THEN 'd.industry::text' ELSE 'NULL::text' END,
		dealrisk._stage_start_sql(cfg.source),
		cfg.source)
		USING ts, cfg.threshold, cfg.model, dealrisk._qualified_name(cfg.source), cut, cfg.top_fraction, cfg.rise,
		      cfg.max_per_rep, rule_factors, rule_actions;
	GET DIAGNOSTICS n_alerts = ROW_COUNT;
	PERFORM pg_catalog.set_config('enable_nestloop', nestloop, true);
	PERFORM pg_catalog.set_config('jit', jit, true);

	-- 5. wake the mailers (delivered at commit, like everything above)
	IF n_alerts > 0 THEN
		SELECT pg_catalog.max(a.id) INTO max_id FROM dealrisk.alerts a WHERE a.created_at = ts;
		PERFORM pg_catalog.pg_notify('dealrisk_alerts',
			pg_catalog.json_build_object('count', n_alerts, 'max_id', max_id, 'scored_at', ts)::text);
	END IF;

	-- 6. the record of this refresh (committed with it, or not at all)
	INSERT INTO dealrisk.refresh_log (started_at, finished_at, scored_at, deals_scored, alerts_written,
	                                  model_id, model, source, run_by, pid, cutoff)
	VALUES (started, pg_catalog.clock_timestamp(), ts, scored, n_alerts,
	        mid, cfg.model, dealrisk._qualified_name(cfg.source), CURRENT_USER, pg_catalog.pg_backend_pid(), cut);
	RETURN scored;
END
$$;
COMMENT ON FUNCTION dealrisk.refresh() IS
	'Rescores the watched open deals: appends every score to dealrisk.score_history, applies the alert policy of dealrisk.watch_config (the cutoff), refreshes dealrisk_watch.high_risk_deals concurrently, writes an alert per deal that became high-risk (or whose risk rose sharply), sends NOTIFY dealrisk_alerts and records the run in dealrisk.refresh_log; all in the caller''s transaction; returns the number of open deals scored';

CREATE OR REPLACE FUNCTION dealrisk.digest(period interval DEFAULT '7 days', min_change float8 DEFAULT 5)
RETURNS TABLE (sales_rep_id text, is_total boolean, open_deals bigint, pipeline_value numeric,
	high_risk_deals bigint, value_at_risk numeric, share_at_risk float8,
	became_high_risk bigint, risk_fell bigint, amounts_not_finite bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
	cut float8;
BEGIN
	IF period IS NULL OR period <= interval '0' THEN
		RAISE EXCEPTION 'period must be a positive interval, got %', coalesce(period::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. ''7 days'' for a weekly digest.';
	END IF;
	IF min_change IS NULL OR NOT (min_change > 0 AND min_change <= 100) THEN
		RAISE EXCEPTION 'min_change must be between 0 (exclusive) and 100 risk points, got %', coalesce(min_change::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	cfg := dealrisk._watch_config();
	-- reading the source must run no code of a role the caller does not
	-- trust (docs/security.md); the high-risk deals come from the latest
	-- refresh's scores in dealrisk.score_history, not from the view, which
	-- belongs to the operator
	PERFORM dealrisk._check_source(cfg.source, ARRAY['deal_id', 'outcome', 'sales_rep_id', 'deal_amount']);
	-- high-risk: at least the cutoff of the alert policy at the latest
	-- refresh (refresh_log; for scores without a log row, the configuration's)
	SELECT l.cutoff INTO cut FROM dealrisk.refresh_log l
	WHERE l.scored_at = (SELECT pg_catalog.max(x.scored_at) FROM dealrisk.score_history x)
	ORDER BY l.id DESC LIMIT 1;
	cut := coalesce(cut, cfg.cutoff, cfg.threshold);
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH r AS (
			SELECT d.deal_id::text AS deal_id, d.sales_rep_id::text AS rep, d.deal_amount::numeric AS raw_amount
			FROM %s d WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
		),
		o AS (
			-- a NaN or infinite amount is counted, and left out of the sums
			SELECT r.deal_id, r.rep,
			       CASE WHEN r.raw_amount NOT IN ('NaN', 'Infinity', '-Infinity') THEN r.raw_amount END AS amount,
			       (r.raw_amount IN ('NaN', 'Infinity', '-Infinity'))::int AS bad_amount
			FROM r
		),
		latest AS (
			SELECT DISTINCT ON (h.deal_id) h.deal_id, h.risk, h.scored_at
			FROM dealrisk.score_history h WHERE h.scored_at > pg_catalog.now() - $1
			ORDER BY h.deal_id, h.scored_at DESC
		),
		moved AS (
			-- the risk at the start of the period (the last score before it,
			-- else the first score in it) against the latest
			SELECT l.deal_id, coalesce(b.risk, f.risk) - l.risk AS fall
			FROM latest l
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at <= pg_catalog.now() - $1 ORDER BY p.scored_at DESC LIMIT 1) b ON true
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at > pg_catalog.now() - $1 ORDER BY p.scored_at LIMIT 1) f ON true
		),
		became AS (
			SELECT DISTINCT ON (a.deal_id) a.deal_id, a.sales_rep_id AS rep
			FROM dealrisk.alerts a WHERE a.created_at > pg_catalog.now() - $1
			  AND coalesce(a.payload ->> 'cause', 'became high-risk') = 'became high-risk'
			ORDER BY a.deal_id, a.created_at DESC
		),
		per_deal AS (
			SELECT o.rep, 1 AS open_deal, o.amount, (v.deal_id IS NOT NULL)::int AS high,
			       CASE WHEN v.deal_id IS NOT NULL THEN o.amount END AS amount_high, 0 AS became,
			       (m.fall >= $2)::int AS fell, o.bad_amount
			FROM o
			LEFT JOIN (SELECT h.deal_id FROM dealrisk.score_history h
			           WHERE h.scored_at = (SELECT max(x.scored_at) FROM dealrisk.score_history x)
			             AND h.risk >= $3) v ON v.deal_id = o.deal_id
			LEFT JOIN moved m ON m.deal_id = o.deal_id
			UNION ALL
			SELECT b.rep, 0, NULL, 0, NULL, 1, 0, 0 FROM became b
		)
		SELECT r.rep, GROUPING(r.rep) = 1, sum(r.open_deal)::bigint, coalesce(sum(r.amount), 0),
		       sum(r.high)::bigint, coalesce(sum(r.amount_high), 0),
		       CASE WHEN sum(r.amount) > 0 THEN (coalesce(sum(r.amount_high), 0) / sum(r.amount))::float8 END,
		       sum(r.became)::bigint, coalesce(sum(r.fell), 0)::bigint, sum(r.bad_amount)::bigint
		FROM per_deal r
		GROUP BY GROUPING SETS ((r.rep), ())
		ORDER BY GROUPING(r.rep), 6 DESC, 1 NULLS LAST$q$, cfg.source)
		USING period, min_change, cut;
END
$$;
COMMENT ON FUNCTION dealrisk.digest(interval, float8) IS
	'Weekly digest per sales rep and in total (is_total): open deals and pipeline value, high-risk deals (risk at least the cutoff of the alert policy at the latest refresh) and the value at risk and its share, deals that became high-risk in the period (their alerts; not the re-alerts of a risk that rose), open deals whose risk fell by at least min_change points over the period (score history), and open deals whose deal_amount is NaN or infinite (counted, left out of the sums)';

-- The roles that may run the daily loop (EXECUTE on refresh() or on
-- watch()) get the new helpers that refresh() and the rebuilt view call,
-- as GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk gave them the others
-- (docs/security.md).
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT a.grantee
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) ANY (ARRAY['dealrisk.refresh()'::regprocedure::oid,
		          'dealrisk.watch(regclass, float8, text, float8, float8, int)'::regprocedure::oid])
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._high_risk_cutoff(float8[], float8, float8),'
			' dealrisk._alert_action(text, text, float8, text, text[], text[]), dealrisk._policy_words(float8, float8) TO %I',
			pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;
-- Issue #9, section 5 and the diagnostics half of section 4: q-values
-- (Benjamini-Hochberg) for win_rate_drivers() and diagnose(), partial
-- periods marked in win_rate_trend() and cycle_trend(), cycle_trend() with
-- either sales_cycle_days or created_date, and a diagnose() that says which
-- section a missing column stops instead of failing.

-- Multiple testing: new in 0.3.0.

-- Benjamini-Hochberg adjusted p-values (q-values) of a family of tests, in
-- the order given.  With the non-NULL p-values sorted, p(1) <= ... <= p(m),
-- q(i) = min over j >= i of p(j) m / j (at most p(m) <= 1): rejecting every
-- test with q < alpha keeps the expected share of false discoveries among
-- the rejections at most alpha (for independent or positively dependent
-- tests).
-- A NULL p-value is a test that was not made: it stays NULL and does not
-- count in m.
CREATE FUNCTION dealrisk.bh_adjust(p_values float8[])
RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	bad			float8;
	bad_at		bigint;
	q			float8[];
BEGIN
	IF pg_catalog.array_ndims(p_values) > 1 THEN
		RAISE EXCEPTION 'p_values must be a one-dimensional array, not % dimensions', pg_catalog.array_ndims(p_values)
			USING ERRCODE = '22023';
	END IF;
	SELECT u.p, u.o INTO bad, bad_at
	FROM pg_catalog.unnest(p_values) WITH ORDINALITY AS u(p, o)
	WHERE u.p IS NOT NULL AND NOT (u.p >= 0 AND u.p <= 1)	-- NaN compares above 1
	ORDER BY u.o LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'p-value % (element %) is not between 0 and 1', bad, bad_at
			USING ERRCODE = '22023',
				  HINT = 'Pass p-values of tests, or NULL for a test that was not made.';
	END IF;
	-- m / i >= 1 is rounded to a float >= 1, so q >= p holds exactly.
	WITH u AS (
		SELECT u.p, u.o FROM pg_catalog.unnest(p_values) WITH ORDINALITY AS u(p, o)
	), r AS (
		SELECT u.o, u.p,
			   pg_catalog.row_number() OVER (ORDER BY u.p, u.o) AS i,
			   pg_catalog.count(*) OVER () AS m
		FROM u WHERE u.p IS NOT NULL
	), a AS (
		SELECT r.o,
			   pg_catalog.min(r.p * (r.m::float8 / r.i))
				   OVER (ORDER BY r.i DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS q
		FROM r
	)
	SELECT coalesce(pg_catalog.array_agg(a.q ORDER BY u.o), '{}')
		INTO q
	FROM u LEFT JOIN a ON a.o = u.o;
	RETURN q;
END
$fn$;
COMMENT ON FUNCTION dealrisk.bh_adjust(float8[]) IS
	'Benjamini-Hochberg adjusted p-values (q-values) of a family of p-values, in the same order; NULL p-values are tests not made: they stay NULL and do not count in the family size';

-- The result type gains a column: dropped and created again (EXECUTE
-- stays with PUBLIC, as in a fresh install).
DROP FUNCTION dealrisk.win_rate_trend(regclass, text);
-- A period is partial when it ends after the newest closed_date of the
-- closed deals the trend counts: the data cannot hold all of it (its last
-- day is after that date).  Only the last period can be partial.
CREATE FUNCTION dealrisk.win_rate_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n,
				   pg_catalog.count(*) FILTER (WHERE x.won) AS w,
				   pg_catalog.max(x.closed_date) AS last_cl
			FROM (SELECT d.closed_date::date AS closed_date,
						 dealrisk.is_won(d.outcome::text) AS won
				  FROM %s AS d) x
			WHERE x.won IS NOT NULL AND pg_catalog.isfinite(x.closed_date)
			GROUP BY 1
		), l AS (
			SELECT g.ps, g.n, g.w, g.w::float8 / g.n AS r,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.n) OVER o AS prev_n,
				   pg_catalog.lag(g.w) OVER o AS prev_w,
				   pg_catalog.max(g.last_cl) OVER () AS last_cl
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		)
		SELECT l.ps, l.n, l.w, l.r, ci.ci_low, ci.ci_high,
			   CASE WHEN l.adjacent THEN l.r - l.prev_w::float8 / l.prev_n END,
			   CASE WHEN l.adjacent THEN dealrisk.two_proportion_p(l.w, l.n, l.prev_w, l.prev_n) END,
			   (l.ps + $2)::date > l.last_cl + 1
		FROM l, LATERAL dealrisk.wilson_interval(l.w, l.n) ci
		ORDER BY l.ps$q$,
		source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_trend(regclass, text) IS
	'Win rate of closed deals per week, month, quarter or year of closed_date, with a 95% Wilson interval, the change from the previous period, the two-proportion p-value of that change, and is_partial for a period that ends after the newest closed_date';

-- The result type gains a column: dropped and created again (EXECUTE
-- stays with PUBLIC, as in a fresh install).
DROP FUNCTION dealrisk.cycle_trend(regclass, text);
-- The cycle is sales_cycle_days, else closed_date - created_date: a source
-- needs one of the two columns.  is_partial as in win_rate_trend.
CREATE FUNCTION dealrisk.cycle_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, median_days float8, p75_days float8,
			  mean_days float8, change_median float8, p_value float8, significant boolean,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
	has_days	boolean;
	has_created	boolean;
	cyc			text;
BEGIN
	has_days := coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false);
	has_created := coalesce(dealrisk._has_column(source, 'created_date'), false);
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']
		|| CASE WHEN has_days THEN ARRAY['sales_cycle_days'] ELSE '{}' END
		|| CASE WHEN has_created THEN ARRAY['created_date'] ELSE '{}' END);
	IF NOT has_days AND NOT has_created THEN
		RAISE EXCEPTION 'source "%" has neither a sales_cycle_days nor a created_date column', dealrisk._source_name(source)
			USING ERRCODE = '42703',
				  DETAIL = 'A sales cycle is sales_cycle_days, or closed_date - created_date.',
				  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
	END IF;
	cyc := CASE WHEN has_created
				THEN 'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN (d.closed_date::date - d.created_date::date)::float8 END'
				ELSE 'NULL::float8' END;
	IF has_days THEN
		cyc := pg_catalog.format('coalesce(d.sales_cycle_days::float8, %s)', cyc);
	END IF;
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH x AS (
			SELECT d.closed_date::date AS closed_date,
				   %s AS cyc
			FROM %s AS d
			WHERE dealrisk.is_won(d.outcome::text) IS NOT NULL
			  AND pg_catalog.isfinite(d.closed_date::date)
		), g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n_closed,
				   pg_catalog.count(x.cyc) AS n,
				   pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY x.cyc) AS med,
				   pg_catalog.percentile_cont(0.75) WITHIN GROUP (ORDER BY x.cyc) AS p75,
				   pg_catalog.avg(x.cyc) AS mean,
				   pg_catalog.stddev_samp(x.cyc) AS sd,
				   pg_catalog.max(x.closed_date) AS last_cl
			FROM x
			GROUP BY 1
		), l AS (
			SELECT g.*,
				   pg_catalog.max(g.last_cl) OVER () AS all_last_cl,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.med) OVER o AS prev_med,
				   pg_catalog.lag(g.mean) OVER o AS prev_mean,
				   pg_catalog.lag(g.sd) OVER o AS prev_sd,
				   pg_catalog.lag(g.n) OVER o AS prev_n
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		), t AS (
			SELECT l.*,
				   CASE WHEN l.adjacent
						THEN dealrisk.welch_p(l.mean, l.sd, l.n, l.prev_mean, l.prev_sd, l.prev_n)
				   END AS pv
			FROM l
		)
		SELECT t.ps, t.n_closed, t.med, t.p75, t.mean,
			   CASE WHEN t.adjacent THEN t.med - t.prev_med END,
			   t.pv, t.pv < 0.05, (t.ps + $2)::date > t.all_last_cl + 1
		FROM t
		ORDER BY t.ps$q$,
		cyc, source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk.cycle_trend(regclass, text) IS
	'Sales cycle length (sales_cycle_days, else closed_date - created_date; a source needs one of them) of closed deals per week, month, quarter or year of closed_date: median, 75th percentile, mean, change of the median from the previous period, Welch''s t-test p-value of the change of the mean, and is_partial for a period that ends after the newest closed_date';

-- The result type gains a column: dropped and created again (EXECUTE
-- stays with PUBLIC, as in a fresh install).
DROP FUNCTION dealrisk.win_rate_drivers(regclass, text, daterange, daterange);
CREATE FUNCTION dealrisk.win_rate_drivers(source regclass, dimension text,
	recent daterange DEFAULT NULL, baseline daterange DEFAULT NULL)
RETURNS TABLE(segment text, baseline_closed bigint, baseline_win_rate float8,
			  baseline_share float8, recent_closed bigint, recent_win_rate float8,
			  recent_share float8, rate_effect float8, mix_effect float8,
			  contribution float8, p_value float8, q_value float8, significant boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	cols		text[];
	label		text;
	win			record;
	segs		text[];
	b_n			bigint[];
	b_w			bigint[];
	r_n			bigint[];
	r_w			bigint[];
	n0			bigint;
	w0			bigint;
	n1			bigint;
	rate0		float8;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	cols := dealrisk._dimension_columns(source, dimension);

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
		-- the window of the same length just before recent
		baseline := pg_catalog.daterange(
			pg_catalog.lower(recent) - (pg_catalog.upper(recent) - pg_catalog.lower(recent)),
			pg_catalog.lower(recent));
	END IF;
	IF recent && baseline THEN
		RAISE EXCEPTION 'recent window % overlaps baseline window %', recent, baseline
			USING ERRCODE = '22023',
				  HINT = 'The windows are compared as independent samples: make them disjoint.';
	END IF;

	SELECT pg_catalog.string_agg(
			pg_catalog.format('coalesce(d.%I::text, %L)', c, '(missing)'), ', ' ORDER BY o)
		INTO label
	FROM pg_catalog.unnest(cols) WITH ORDINALITY AS u(c, o);

	EXECUTE pg_catalog.format(
		$q$SELECT coalesce(pg_catalog.array_agg(g.seg ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.b_n ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.b_w ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.r_n ORDER BY g.seg), '{}'),
				  coalesce(pg_catalog.array_agg(g.r_w ORDER BY g.seg), '{}')
		   FROM (SELECT x.seg,
						pg_catalog.count(*) FILTER (WHERE NOT x.in_recent) AS b_n,
						pg_catalog.count(*) FILTER (WHERE NOT x.in_recent AND x.won) AS b_w,
						pg_catalog.count(*) FILTER (WHERE x.in_recent) AS r_n,
						pg_catalog.count(*) FILTER (WHERE x.in_recent AND x.won) AS r_w
				 FROM (SELECT pg_catalog.concat_ws(' / ', %s) AS seg,
							  d.closed_date::date <@ $1 AS in_recent,
							  dealrisk.is_won(d.outcome::text) AS won
					   FROM %s AS d
					   WHERE d.closed_date::date <@ $1 OR d.closed_date::date <@ $2) x
				 WHERE x.won IS NOT NULL
				 GROUP BY x.seg) g$q$,
		label, source::text)
		INTO segs, b_n, b_w, r_n, r_w
		USING recent, baseline;

	SELECT coalesce(pg_catalog.sum(u.bn), 0), coalesce(pg_catalog.sum(u.bw), 0),
		   coalesce(pg_catalog.sum(u.rn), 0)
		INTO n0, w0, n1
	FROM ROWS FROM (pg_catalog.unnest(b_n), pg_catalog.unnest(b_w), pg_catalog.unnest(r_n))
		AS u(bn, bw, rn);
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
	rate0 := w0::float8 / n0;

	-- rate_effect = s1 (r1 - r0), mix_effect = (s1 - s0) (r0 - R0); a segment
	-- missing from the baseline takes r0 = R0, one missing from the recent
	-- window has s1 = 0.  Summed over segments: R1 - R0.  The segments are
	-- tested together, so significance is judged on the Benjamini-Hochberg
	-- q-values over the segments of this call (those with a p-value).
	RETURN QUERY
	WITH k AS (
		SELECT u.seg, u.bn, u.bw, u.rn, u.rw,
			   u.bn::float8 / n0 AS s0,
			   u.rn::float8 / n1 AS s1,
			   CASE WHEN u.bn > 0 THEN u.bw::float8 / u.bn END AS r0,
			   CASE WHEN u.rn > 0 THEN u.rw::float8 / u.rn END AS r1
		FROM ROWS FROM (pg_catalog.unnest(segs), pg_catalog.unnest(b_n), pg_catalog.unnest(b_w),
						pg_catalog.unnest(r_n), pg_catalog.unnest(r_w)) AS u(seg, bn, bw, rn, rw)
	), e AS (
		SELECT k.*,
			   CASE WHEN k.rn > 0 THEN k.s1 * (k.r1 - coalesce(k.r0, rate0)) ELSE 0 END AS re,
			   (k.s1 - k.s0) * (coalesce(k.r0, rate0) - rate0) AS me,
			   dealrisk.two_proportion_p(k.rw, k.rn, k.bw, k.bn) AS pv,
			   pg_catalog.row_number() OVER (ORDER BY k.seg)::int AS j
		FROM k
	), f AS (
		SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(e.pv ORDER BY e.j), '{}')) AS qs FROM e
	)
	SELECT e.seg, e.bn, e.r0, e.s0, e.rn, e.r1, e.s1, e.re, e.me, e.re + e.me,
		   e.pv, f.qs[e.j], f.qs[e.j] < 0.05
	FROM e, f
	ORDER BY e.re + e.me, e.seg;
END
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_drivers(regclass, text, daterange, daterange) IS
	'Decomposes the change of the win rate between a baseline and a recent window of closed_date into per-segment rate and mix effects (summing to the overall change), with a two-proportion p-value per segment, its Benjamini-Hochberg q-value over the segments of the call, and significant = q < 0.05; dimension names one or more columns separated by commas; windows default to the last complete quarter and the one before';

-- The report reads only outcome for sure: each section checks the columns it
-- needs and, when one is missing, says so on its line instead of failing.
-- Quarters are compared only when complete (_default_windows); the partial
-- quarter after them is named as such, never as the latest change.  The
-- segments of all dimensions are one family of tests: their q-values are
-- adjusted over all of them (Benjamini-Hochberg), not per dimension.
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
	n_signif	bigint := 0;
	n_tests		bigint := 0;
	top_drag	text;
	recent		daterange;
	baseline	daterange;
	rq			text;
	bq			text;
	cur			record;
	prev		record;
	part		record;
	ccur		record;
	cprev		record;
	cpart		record;
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
	has_cpart	boolean := false;
	why_no_funnel text;
	n_errors	bigint;
	n_warnings	bigint;
	pre_lines	text[];
	notes		text;
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
				SELECT w.recent, w.baseline INTO recent, baseline
				FROM dealrisk._default_windows(source) w;
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
				FOR r IN SELECT * FROM dealrisk.win_rate_trend(source, 'quarter') t
						 WHERE t.period_start IN (pg_catalog.lower(recent), pg_catalog.lower(baseline))
							OR t.is_partial
				LOOP
					IF r.is_partial THEN
						part := r;
						has_part := true;
					ELSIF r.period_start = pg_catalog.lower(recent) THEN
						cur := r;
					ELSE
						prev := r;
					END IF;
				END LOOP;
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
			why_no_funnel := dealrisk._stage_semantics(source);
		END IF;
		IF why_no_funnel IS NOT NULL THEN
			lines := lines || ('Funnel: not shown: deal_stage does not hold the stage closed deals reached (preflight, stage_semantics), so conversion between stages, where deals are lost and late-stage losses would be read from the wrong column. '
				|| dealrisk._stage_semantics_hint());
		ELSE
		BEGIN
			WITH s AS MATERIALIZED (
				SELECT s.*, pg_catalog.lead(s.stage) OVER (ORDER BY s."position") AS next_stage
				FROM dealrisk.funnel(source) s
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
		-- source has.  All their segments are one family of tests: q is the
		-- Benjamini-Hochberg adjustment over every segment with a p-value.
		IF NOT has_closed THEN
			lines := lines || 'Segments: not available: the source has no closed_date column, so there are no two quarters to compare.'::text;
		ELSIF recent IS NULL THEN
			lines := lines || 'Segments: not available: there are no two quarters to compare (see Trend).'::text;
		ELSIF pg_catalog.cardinality(dims) = 0 THEN
			lines := lines || 'Segments: not available: the source has none of the columns industry, region, lead_source, product_type, sales_rep_id.'::text;
		ELSE
			BEGIN
				FOR r IN
					WITH d AS (
						SELECT dm.dim, dm.o, dr.*
						FROM pg_catalog.unnest(dims) WITH ORDINALITY AS dm(dim, o),
							 LATERAL dealrisk.win_rate_drivers(source, dm.dim, recent, baseline) dr
					), n AS (
						SELECT d.*, pg_catalog.row_number() OVER (ORDER BY d.o, d.segment)::int AS k
						FROM d
					), fam AS (
						SELECT dealrisk.bh_adjust(coalesce(pg_catalog.array_agg(n.p_value ORDER BY n.k), '{}')) AS qs,
							   pg_catalog.count(n.p_value) AS m
						FROM n
					), a AS (
						SELECT n.dim, n.o, n.segment, n.contribution, n.rate_effect, n.mix_effect,
							   n.recent_win_rate, n.baseline_win_rate, n.p_value,
							   fam.qs[n.k] AS q, fam.m,
							   pg_catalog.count(*) FILTER (WHERE fam.qs[n.k] < 0.05) OVER () AS n_sig
						FROM n, fam
					)
					SELECT a.* FROM a
					WHERE a.contribution < 0
					ORDER BY a.contribution, a.o, a.segment
					LIMIT 5
				LOOP
					shown := shown + 1;
					n_tests := r.m;
					n_signif := r.n_sig;
					IF shown = 1 THEN
						top_drag := pg_catalog.format('the biggest drag is %s = %s (%s points, %s)',
							r.dim, r.segment, dealrisk._pts(r.contribution),
							CASE WHEN r.q < 0.05 THEN 'significant' ELSE 'not significant' END);
					END IF;
					seg_lines := seg_lines || pg_catalog.format('  %s = %s: %s (rate %s, mix %s); win rate %s vs %s, %s, %s, %s',
						r.dim, r.segment, dealrisk._pts(r.contribution), dealrisk._pts(r.rate_effect),
						dealrisk._pts(r.mix_effect), dealrisk._pct(r.recent_win_rate),
						dealrisk._pct(r.baseline_win_rate), dealrisk._pval(r.p_value),
						CASE WHEN r.q IS NULL THEN 'q n/a'
							 WHEN r.q < 0.001 THEN 'q < 0.001'
							 ELSE 'q = ' || pg_catalog.to_char(r.q, 'FM0.000') END,
						CASE WHEN r.q < 0.05 THEN 'significant'
							 WHEN r.p_value < 0.05 THEN pg_catalog.format('within noise for %s tests', dealrisk._num(r.m))
							 ELSE 'within noise' END);
				END LOOP;
				lines := lines || pg_catalog.format('Segments dragging the win rate, %s vs %s (contribution = rate effect + mix effect, in points; q = p adjusted for the %s segments tested, Benjamini-Hochberg):',
					rq, bq, CASE WHEN shown > 0 THEN dealrisk._num(n_tests) ELSE 'n/a' END);
				IF shown = 0 THEN
					lines := lines || '  none: no segment lowered the win rate.'::text;
				ELSE
					lines := lines || seg_lines;
				END IF;
				IF pg_catalog.cardinality(no_dims) > 0 THEN
					lines := lines || pg_catalog.format('  not analysed: %s (no such column in the source).',
						pg_catalog.array_to_string(no_dims, ', '));
				END IF;
				IF top_drag IS NOT NULL THEN
					summary := coalesce(summary || '; ', '') || top_drag
						|| CASE WHEN n_signif = 0
								THEN pg_catalog.format('; no segment''s change is significant among the %s tested',
									dealrisk._num(n_tests))
								ELSE '' END;
				END IF;
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
				FOR r IN SELECT * FROM dealrisk.cycle_trend(source, 'quarter') t
						 WHERE t.period_start IN (pg_catalog.lower(recent), pg_catalog.lower(baseline))
							OR t.is_partial
				LOOP
					IF r.is_partial THEN
						cpart := r;
						has_cpart := true;
					ELSIF r.period_start = pg_catalog.lower(recent) THEN
						ccur := r;
					ELSE
						cprev := r;
					END IF;
				END LOOP;
				partial_note := '';
				IF has_cpart THEN
					partial_note := pg_catalog.format(' %s is partial and is not compared.',
						dealrisk._quarter_label(cpart.period_start));
				END IF;
				IF ccur IS NULL OR cprev IS NULL THEN
					line := pg_catalog.format('Sales cycle: no closed deals in %s or %s to compare.', rq, bq);
				ELSIF ccur.median_days IS NULL OR cprev.median_days IS NULL THEN
					line := pg_catalog.format('Sales cycle: no cycle lengths in %s or %s to compare.', rq, bq);
				ELSE
					line := pg_catalog.format('Sales cycle: median %s days in %s vs %s in %s; mean %s vs %s days, %s: %s.',
						pg_catalog.to_char(ccur.median_days, 'FM9999990.0'), rq,
						pg_catalog.to_char(cprev.median_days, 'FM9999990.0'), bq,
						pg_catalog.to_char(ccur.mean_days, 'FM9999990.0'),
						pg_catalog.to_char(cprev.mean_days, 'FM9999990.0'),
						dealrisk._pval(ccur.p_value),
						CASE WHEN NOT coalesce(ccur.significant, false) THEN 'no significant change'
							 WHEN cut_off THEN 'not comparable, the difference comes from the cut-off above'
							 WHEN NOT has_created
							 THEN pg_catalog.format('cycles are getting %s, unless the extract was cut off by creation date (without a created_date column that cannot be checked)',
								CASE WHEN ccur.mean_days > cprev.mean_days THEN 'longer' ELSE 'shorter' END)
							 WHEN ccur.mean_days > cprev.mean_days THEN 'cycles are getting longer'
							 ELSE 'cycles are getting shorter' END);
				END IF;
				lines := lines || (line || partial_note);
			EXCEPTION WHEN OTHERS THEN
				lines := lines || ('Sales cycle: not available: ' || SQLERRM);
			END;
		END IF;
	END IF;

	-- The preflight (check_source, which includes data_quality): its errors
	-- and warnings go right under the headline.
	BEGIN
		SELECT pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'error'),
			   pg_catalog.count(*) FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'warning'),
			   coalesce(pg_catalog.array_agg(pg_catalog.format('  - %s: %s.', c."check", c.finding) ORDER BY c.o)
						FILTER (WHERE c.severity IN ('error', 'warning')), '{}'),
			   -- row-level notes of data_quality(), one line
			   pg_catalog.string_agg(pg_catalog.format('%s %s', c."check", pg_catalog.split_part(c.finding, ':', 1)), ', ' ORDER BY c.o)
						FILTER (WHERE c.severity OPERATOR(pg_catalog.=) 'info'
								AND c."check" NOT IN ('outcomes', 'columns', 'summary'))
			INTO n_errors, n_warnings, pre_lines, notes
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
-- Security and robustness review of 0.3.0 (issue #9): what the review
-- changed, in the order of the findings.

-- 1. The survivor-curve helpers that train() calls are new and not
-- executable by PUBLIC: the roles that may train (EXECUTE on train(), as
-- GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk gave the operator the
-- other helpers, docs/security.md) get them, else their train() fails after
-- the upgrade with "permission denied for function _open_knots".
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT a.grantee
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.train(regclass, text, text[], float8, float8, boolean)'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text),'
			' dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),'
			' dealrisk._open_step(jsonb, float8[], float8[], boolean),'
			' dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),'
			' dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") TO %I',
			pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;

-- 2. Hints that users run as written: _label_fix names the labels a list
-- cannot hold (a comma, past the 64th) instead of a SET that splits or
-- refuses them; check_source() passes every unknown label to it and writes
-- dates in ISO form (the same date under any DateStyle).
CREATE OR REPLACE FUNCTION dealrisk._label_fix(setting text, labels text[])
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	held		text := NULLIF(pg_catalog.btrim(pg_catalog.current_setting(setting, true)), '');
	room		int;
	listable	text[];
	commas		text[];
	val			text;
	fix			text;
BEGIN
	room := 64 - coalesce(pg_catalog.cardinality(pg_catalog.string_to_array(held, ',')), 0);
	SELECT coalesce(pg_catalog.array_agg(u.l ORDER BY u.o) FILTER (WHERE pg_catalog.strpos(u.l, ',') = 0), '{}'),
	       coalesce(pg_catalog.array_agg(u.l ORDER BY u.o) FILTER (WHERE pg_catalog.strpos(u.l, ',') > 0), '{}')
		INTO listable, commas
	FROM pg_catalog.unnest(labels) WITH ORDINALITY AS u(l, o)
	WHERE u.l IS NOT NULL;
	IF pg_catalog.cardinality(listable) > 0 AND room > 0 THEN
		val := pg_catalog.concat_ws(',', held, pg_catalog.array_to_string(listable[1:room], ','));
		fix := pg_catalog.format('SET %s = %L; to keep it: ALTER DATABASE %I SET %s = %L;',
		                         setting, val, pg_catalog.current_database(), setting, val);
	END IF;
	IF pg_catalog.cardinality(listable) > greatest(room, 0) THEN
		fix := pg_catalog.concat_ws(' ', fix, pg_catalog.format(
			'%s more cannot be added: %s holds at most 64 labels; map them to fewer labels in a view over your table (docs/data-contract.md).',
			pg_catalog.cardinality(listable) - greatest(room, 0), setting));
	END IF;
	IF pg_catalog.cardinality(commas) > 0 THEN
		fix := pg_catalog.concat_ws(' ', fix, pg_catalog.format(
			'%s cannot be listed: %s is comma-separated; rename %s in a view over your table, e.g. pg_catalog.replace(outcome, '','', '' '') AS outcome, and list the new %s.',
			(SELECT pg_catalog.string_agg(pg_catalog.quote_literal(c), ', ') FROM pg_catalog.unnest(commas[1:10]) c)
			|| CASE WHEN pg_catalog.cardinality(commas) > 10
			        THEN pg_catalog.format(' and %s more', pg_catalog.cardinality(commas) - 10) ELSE '' END, setting,
			CASE WHEN pg_catalog.cardinality(commas) = 1 THEN 'it' ELSE 'them' END,
			CASE WHEN pg_catalog.cardinality(commas) = 1 THEN 'label' ELSE 'labels' END));
	END IF;
	RETURN fix;
END
$fn$;
COMMENT ON FUNCTION dealrisk._label_fix(text, text[]) IS
	'The SET and ALTER DATABASE statements that add labels to a label list, keeping its labels; labels it cannot hold (a comma, past the 64th) are named instead (internal)';

CREATE OR REPLACE FUNCTION dealrisk.check_source(source regclass)
RETURNS TABLE("check" text, severity text, finding text, hint text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c_check		text[] := '{}';
	c_sev		text[] := '{}';
	c_find		text[] := '{}';
	c_hint		text[] := '{}';
	name		text := dealrisk._source_name(source);
	cols		text[];
	types		regtype[];
	col			text;
	typ			regtype;
	missing		text[];
	fatal		boolean := false;
	has_created boolean;
	has_closed	boolean;
	has_stage	boolean;
	date_cols	text[];
	newest_expr text;
	n_total		bigint;
	n_won		bigint;
	n_lost		bigint;
	n_open		bigint;
	newest		date;
	newest_created date;
	oldest_open date;
	n_open_dated bigint;
	max_cycle	float8;
	n_older		bigint;
	unknown		record;
	labels		text[];
	r			record;
	stage_fix	text;
	n_unknown_stages int;
	status_labels text;
	status_in	text;
	semantics	text;
	min_n		int;
	as_of_set	text;
	as_of		date;
	dq			record;
BEGIN
	PERFORM dealrisk._check_source(source, NULL);	-- a relation, trusted
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings

	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), pg_catalog.array_agg(a.atttypid::regtype ORDER BY a.attnum)
		INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
	cols := coalesce(cols, '{}');

	-- Columns: the two every function needs, and what each missing optional
	-- one takes away.
	FOREACH col IN ARRAY ARRAY['deal_id', 'outcome'] LOOP
		IF NOT col = ANY (cols) THEN
			fatal := true;
			c_check := c_check || 'columns'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s is missing: %s', col,
				CASE col WHEN 'deal_id' THEN 'deals cannot be told apart (duplicates, scores, alerts)'
				         ELSE 'won, lost and open deals cannot be told apart' END);
			c_hint := c_hint || CASE col
				WHEN 'deal_id' THEN 'Map your CRM''s columns with a view: SELECT <your id column> AS deal_id, ... (docs/data-contract.md).'
				ELSE 'Map the column holding won/lost/open as outcome in a view; a single status column holding both stages and outcomes is split there too (docs/data-contract.md).' END;
		END IF;
	END LOOP;
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		col := cols[i];
		typ := types[i];
		IF (col IN ('created_date', 'closed_date', 'last_activity_date', 'stage_entered_date')
		    AND typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype))
		   OR (col IN ('deal_amount', 'sales_cycle_days')
		       AND typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
		                       'numeric'::regtype, 'real'::regtype, 'double precision'::regtype))
		   OR (col IN ('outcome', 'deal_stage')
		       AND typ NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype)) THEN
			fatal := true;
			c_check := c_check || 'column_types'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s has type %s, not %s', col, pg_catalog.format_type(typ, NULL),
				CASE WHEN col LIKE '%date' THEN 'a date' WHEN col IN ('outcome', 'deal_stage') THEN 'text' ELSE 'a number' END);
			c_hint := c_hint || pg_catalog.format('Cast it in a view: %s AS %I (docs/data-contract.md).',
				pg_catalog.format(CASE WHEN col LIKE '%date' THEN '%I::date' WHEN col IN ('outcome', 'deal_stage') THEN '%I::text'
				                       ELSE '%I::numeric' END, col), col);
		END IF;
	END LOOP;
	has_created := 'created_date' = ANY (cols);
	has_closed := 'closed_date' = ANY (cols);
	has_stage := 'deal_stage' = ANY (cols);
	IF NOT has_closed THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || 'column closed_date is missing: no win-rate or cycle trends and no drivers over time; train() holds out a hash sample of deals instead of the newest ones and cannot weight recent deals more'::text;
		c_hint := c_hint || 'Map the date each deal was won or lost as closed_date if your CRM has it.'::text;
	END IF;
	IF NOT has_created THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column created_date is missing: no deal age, so %s',
			CASE WHEN 'sales_cycle_days' = ANY (cols) THEN 'open deals are scored without their age'
			     ELSE 'no sales-cycle lengths and open deals are scored without their age' END);
		c_hint := c_hint || 'Map the date each deal was created as created_date if your CRM has it.'::text;
	END IF;
	IF NOT has_stage THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'column deal_stage is missing: no funnel and no time-in-stage feature'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	SELECT pg_catalog.array_agg(m ORDER BY o) INTO missing
	FROM pg_catalog.unnest(ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount'])
		WITH ORDINALITY u(m, o)
	WHERE NOT m = ANY (cols);
	IF missing IS NOT NULL THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('segment and amount columns missing: %s; diagnose() and train() use the others, and any column named in dimension => or features =>',
			pg_catalog.array_to_string(missing, ', '));
		c_hint := c_hint || NULL::text;
	END IF;

	IF fatal THEN
		RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
			pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
			ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
		RETURN;
	END IF;

	-- Outcomes: counts, and unknown labels by what they look like.
	SELECT pg_catalog.array_agg(pg_catalog.format('pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.%1$I::date) THEN d.%1$I::date END)', c))
		INTO date_cols
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'last_activity_date', 'stage_entered_date']) c
	WHERE c = ANY (cols);
	newest_expr := CASE WHEN date_cols IS NULL THEN 'NULL::date'
	                    ELSE 'greatest(' || pg_catalog.array_to_string(date_cols, ', ') || ')' END;
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.count(*),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'won'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'lost'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open'),
		          %s, %s, %s
		   FROM (SELECT d.*, coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls FROM %s AS d) d$q$,
		newest_expr,
		CASE WHEN 'created_date' = ANY (cols)
		     THEN 'pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END)'
		     ELSE 'NULL::date' END,
		-- for stale open deals: the longest closed cycle, the oldest open
		-- deal and how many open deals have a creation date
		CASE WHEN 'created_date' = ANY (cols) AND 'closed_date' = ANY (cols)
		     THEN $e$pg_catalog.max(d.closed_date::date - d.created_date::date)
		                FILTER (WHERE d.cls IN ('won', 'lost') AND pg_catalog.isfinite(d.created_date::date)
		                          AND pg_catalog.isfinite(d.closed_date::date) AND d.closed_date::date >= d.created_date::date),
		              pg_catalog.min(d.created_date::date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date)),
		              pg_catalog.count(d.created_date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date))$e$
		     ELSE 'NULL::int, NULL::date, 0::bigint' END,
		source::text)
		INTO n_total, n_won, n_lost, n_open, newest, newest_created, max_cycle, oldest_open, n_open_dated;

	FOR unknown IN EXECUTE pg_catalog.format(
		$q$SELECT dealrisk._label_guess(x.label) AS guess,
		          pg_catalog.array_agg(x.label ORDER BY x.n DESC, x.label) AS labels,
		          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.label, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.label) AS listed,
		          pg_catalog.sum(x.n)::bigint AS n, pg_catalog.count(*) AS k
		   FROM (SELECT pg_catalog.btrim(d.outcome::text) AS label, pg_catalog.count(*) AS n
		         FROM %s AS d
		         WHERE dealrisk.outcome_class(d.outcome::text) OPERATOR(pg_catalog.=) 'unknown'
		         GROUP BY 1) x
		   GROUP BY 1
		   ORDER BY pg_catalog.array_position(ARRAY['open', 'won', 'lost', 'unknown'], dealrisk._label_guess(x.label))$q$,
		source::text)
	LOOP
		labels := unknown.labels;
		c_check := c_check || 'outcome_labels'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('%s %s of %s %s not known (%s of %s deals): %s; %s',
			unknown.k, CASE WHEN unknown.k = 1 THEN 'outcome label' ELSE 'outcome labels' END, name,
			CASE WHEN unknown.k = 1 THEN 'is' ELSE 'are' END, dealrisk._num(unknown.n), dealrisk._num(n_total),
			unknown.listed,
			CASE unknown.guess WHEN 'open' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a stage of an open deal' ELSE 'they look like stages of open deals' END
			                   WHEN 'won' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a won deal' ELSE 'they look like won deals' END
			                   WHEN 'lost' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a lost deal' ELSE 'they look like lost deals' END
			                   ELSE 'it is not clear whether they mean won, lost or open' END);
		c_hint := c_hint || CASE unknown.guess
			WHEN 'open' THEN dealrisk._label_fix('dealrisk.open_labels', labels)
			WHEN 'won' THEN dealrisk._label_fix('dealrisk.won_labels', labels)
			WHEN 'lost' THEN dealrisk._label_fix('dealrisk.lost_labels', labels)
			ELSE 'Add each to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels, e.g. '
			     || dealrisk._label_fix('dealrisk.won_labels', labels[1:1]) END;
		fatal := true;
	END LOOP;
	-- (the checks below read labels with outcome_class, which never fails:
	-- deals with unknown labels count as neither won, lost nor open)

	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	c_check := c_check || 'outcomes'::text;
	IF n_won + n_lost = 0 THEN
		c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('no closed deal among %s deals: there is no win rate and nothing to train on', dealrisk._num(n_total));
		c_hint := c_hint || 'Check which labels mean won and lost: dealrisk.won_labels and dealrisk.lost_labels.'::text;
	ELSIF n_won < min_n OR n_lost < min_n THEN
		c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost and %s open deals: train() needs at least %s won and %s lost',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._num(n_open), min_n, min_n);
		c_hint := c_hint || 'Collect more closed deals; win rates of so few deals have wide intervals.'::text;
	ELSE
		c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost (win rate %s) and %s open deals',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._pct(n_won::float8 / (n_won + n_lost)), dealrisk._num(n_open));
		c_hint := c_hint || NULL::text;
	END IF;

	-- Stages: values dealrisk.stages does not know, outcomes in the stage
	-- column, and whether the column records the stage a deal reached.
	IF has_stage THEN
		EXECUTE pg_catalog.format(
			$q$SELECT pg_catalog.count(*)::int,
			          pg_catalog.string_agg(pg_catalog.format('(%%L, %%s, false)', x.st, x.base + x.k), ', ' ORDER BY x.k)
			              FILTER (WHERE NOT x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.st, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.quote_literal(x.st), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome)
			   FROM (SELECT y.st, y.n, y.is_outcome,
			                pg_catalog.row_number() OVER (PARTITION BY y.is_outcome ORDER BY y.st) AS k,
			                coalesce((SELECT pg_catalog.max(s."position") FROM dealrisk.stages s), 0) AS base
			         FROM (SELECT z.st, z.n, dealrisk.outcome_class(z.st) IN ('won', 'lost') AS is_outcome
			               FROM (SELECT pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') AS st, pg_catalog.count(*) AS n
			                     FROM %s AS d
			                     WHERE pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') <> ''
			                     GROUP BY 1) z
			               WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages s
			                                 WHERE pg_catalog.lower(s.stage) OPERATOR(pg_catalog.=) pg_catalog.lower(z.st))) y) x$q$,
			source::text)
			INTO n_unknown_stages, stage_fix, status_labels, status_in;
		IF status_labels IS NOT NULL THEN
			c_check := c_check || 'status_column'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds outcome labels: %s; it is a single status column holding both the stage of open deals and the outcome of closed ones, so it says nothing about the stage closed deals reached',
				status_labels);
			c_hint := c_hint || pg_catalog.format('Split it in a view over your table: CASE WHEN status IN (%1$s) THEN status END AS outcome, CASE WHEN status NOT IN (%1$s) THEN status END AS deal_stage (docs/data-contract.md).',
				status_in);
		END IF;
		IF stage_fix IS NOT NULL THEN
			c_check := c_check || 'unknown_stages'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds stages that dealrisk.stages does not list: the funnel cannot be computed until they are added')::text;
			c_hint := c_hint || pg_catalog.format('Add them in pipeline order, e.g. INSERT INTO dealrisk.stages (stage, position, is_late) VALUES %s; then correct position and is_late (a stage before the first one takes position 0 or below).',
				stage_fix);
		END IF;
		semantics := dealrisk._stage_semantics(source);
		IF semantics IS NOT NULL THEN
			c_check := c_check || 'stage_semantics'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || semantics;
			c_hint := c_hint || dealrisk._stage_semantics_hint();
		END IF;
	END IF;

	-- Columns that record the outcome instead of predicting it.
	FOR r IN SELECT * FROM dealrisk._feature_leaks(source, NULL) LOOP
		c_check := c_check || 'outcome_leaks'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column %s leaks the outcome: %s', r.feature, r.reason);
		c_hint := c_hint || 'Map only what is known while a deal is open (docs/data-contract.md); train() leaves such a column out.'::text;
	END LOOP;

	-- Dates: the day open deals are scored at, against the data.
	as_of_set := NULLIF(pg_catalog.current_setting('dealrisk.as_of_date', true), '');
	as_of := coalesce(as_of_set::date, CURRENT_DATE);
	IF n_open > 0 AND newest IS NOT NULL THEN
		IF as_of_set IS NULL AND as_of - newest > 90 THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('open deals are scored as of today, %s, %s days after the newest date in the source (%s): their ages and times in stage are measured to today, which makes every open deal look stale',
				as_of, dealrisk._num((as_of - newest)::bigint), newest);
			-- (the date as ISO text, which means the same date under any
			-- DateStyle of the sessions that read the setting)
			c_hint := c_hint || pg_catalog.format('If the data is an export from %s, score as of then: SET dealrisk.as_of_date = %L; to keep it: ALTER DATABASE %I SET dealrisk.as_of_date = %L;',
				newest, pg_catalog.to_char(newest, 'YYYY-MM-DD'), pg_catalog.current_database(), pg_catalog.to_char(newest, 'YYYY-MM-DD'));
		ELSIF as_of < newest_created THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('dealrisk.as_of_date (%s) is before the newest created_date in the source (%s): deals created after it get negative ages',
				as_of, newest_created);
			c_hint := c_hint || pg_catalog.format('SET dealrisk.as_of_date = %L, or later.', pg_catalog.to_char(newest_created, 'YYYY-MM-DD'));
		END IF;
	END IF;
	-- (when open deals are scored as of a date long after the data, the
	-- warning above says why they all look old)
	IF has_created AND has_closed AND n_open > 0 AND NOT 'scoring_date' = ANY (c_check) THEN
		-- (counted only when the oldest open deal is that old)
		IF max_cycle IS NOT NULL AND n_open_dated > 0 AND as_of - oldest_open > max_cycle THEN
			EXECUTE pg_catalog.format(
				$q$SELECT pg_catalog.count(*) FROM %s AS d
				   WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
				     AND pg_catalog.isfinite(d.created_date::date) AND $1 - d.created_date::date > $2$q$,
				source::text)
				INTO n_older USING as_of, max_cycle::int;
			IF n_older > 0 THEN
				c_check := c_check || 'stale_open_deals'::text; c_sev := c_sev || 'warning'::text;
				c_find := c_find || pg_catalog.format('%s of %s open deals are older on %s than every closed deal was when it closed (longest cycle %s days; the oldest open deal was created on %s): they may be dead deals never closed in the CRM',
					dealrisk._num(n_older), dealrisk._num(n_open_dated), as_of, dealrisk._num(max_cycle::bigint), oldest_open);
				c_hint := c_hint || 'Close or remove them in the CRM, or leave them out of the source; if the data is an older export, set dealrisk.as_of_date to its date.'::text;
			END IF;
		END IF;
	END IF;

	-- Row-level problems, from data_quality() (the checks it can run on the
	-- columns the source has).
	FOR dq IN SELECT * FROM dealrisk.data_quality(source) q
	          WHERE q."rows" > 0 AND q.check_name NOT IN ('unknown_outcome', 'unknown_stage')
	LOOP
		c_check := c_check || dq.check_name;
		c_sev := c_sev || CASE WHEN dq.check_name IN ('open_with_closed_date', 'null_amount', 'null_stage', 'cycle_days_mismatch')
		                       THEN 'info' ELSE 'warning' END;
		c_find := c_find || pg_catalog.format('%s %s: %s%s', dealrisk._num(dq."rows"),
			CASE WHEN dq."rows" = 1 THEN 'row' ELSE 'rows' END, dq.description,
			CASE WHEN dq.example_deal_id IS NOT NULL THEN pg_catalog.format(' (e.g. deal_id %s)', dq.example_deal_id) ELSE '' END);
		c_hint := c_hint || CASE dq.check_name
			WHEN 'duplicate_deal_id' THEN 'Keep one row per deal (watch() refuses open deals that share a deal_id).'
			WHEN 'null_deal_id' THEN 'Give every deal an id; rows without one cannot be scored or alerted on.'
			WHEN 'closed_before_created' THEN 'Fix the dates in the CRM or the mapping view; cycle lengths of these deals are negative and left out.'
			WHEN 'closed_without_closed_date' THEN 'These deals count in win rates but are left out of trends, drivers and the time-based holdout.'
			WHEN 'invalid_amount' THEN 'NaN and infinite amounts are treated as missing; fix them at the source.'
			WHEN 'infinite_date' THEN 'Infinite dates are treated as missing; fix them at the source.'
			WHEN 'negative_amount' THEN 'Check whether negative amounts are refunds or errors; they fall in the lowest amount bin.'
			WHEN 'negative_cycle_days' THEN 'Negative cycle lengths are left out of cycle statistics.'
			WHEN 'future_created_date' THEN 'Deals created in the future get negative ages; check the dates or dealrisk.as_of_date.'
			END;
	END LOOP;

	IF NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(c_sev) s WHERE s IN ('error', 'warning')) THEN
		c_check := c_check || 'summary'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'no error or warning: every diagnostic and train() can run on this source'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
		pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
		ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
END
$fn$;

-- 3. _stage_semantics() is executable by anyone: it checks the source it
-- reads (trust, column types) like every other reader.
CREATE OR REPLACE FUNCTION dealrisk._stage_semantics(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	won_staged	bigint;
	final_stage text;
	n_final		bigint;
	first_stage text;
	n_first		bigint;
	n_stages	int;
	n_with_won	int;
	n_closed	bigint;
	n_closed_staged bigint;
BEGIN
	IF NOT dealrisk._has_column(source, 'deal_stage') OR NOT dealrisk._has_column(source, 'outcome') THEN
		RETURN NULL;
	END IF;
	-- callable by anyone, so it checks what it reads like every reader
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']);
	-- one scan: deals per stage and outcome class, then the stage table
	EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.lower(pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013')) AS st,
			       dealrisk.outcome_class(d.outcome::text) AS cls, pg_catalog.count(*) AS n
			FROM %s AS d
			GROUP BY 1, 2
		), w AS (
			SELECT s.stage, s."position", coalesce(pg_catalog.sum(g.n), 0)::bigint AS n
			FROM dealrisk.stages s
			LEFT JOIN g ON g.st OPERATOR(pg_catalog.=) pg_catalog.lower(s.stage) AND g.cls OPERATOR(pg_catalog.=) 'won'
			GROUP BY s.stage, s."position"
		)
		SELECT (SELECT pg_catalog.sum(w.n)::bigint FROM w),
		       (SELECT w.stage FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.n FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
		       (SELECT w.stage FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT w.n FROM w ORDER BY w."position" LIMIT 1),
		       (SELECT pg_catalog.count(*)::int FROM w),
		       (SELECT pg_catalog.count(*)::int FROM w WHERE w.n > 0),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost')),
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE g.cls IN ('won', 'lost') AND g.st <> '')$q$,
		source::text)
		INTO won_staged, final_stage, n_final, first_stage, n_first, n_stages, n_with_won, n_closed, n_closed_staged;
	IF n_closed > 0 AND n_closed_staged = 0 THEN
		RETURN pg_catalog.format('none of the %s closed deals has a deal_stage, so there is no funnel to read', dealrisk._num(n_closed));
	END IF;
	IF won_staged IS NULL OR n_final IS NULL OR won_staged - n_final < 10 OR (won_staged - n_final) * 10 <= won_staged THEN
		RETURN NULL;
	END IF;
	RETURN pg_catalog.format('%s of %s won deals (%s) sit at stages before %s, %s at %s, the first stage; won deals are found at %s of %s stages. deal_stage does not hold the stage a deal reached before it closed (it may be its stage at export, or when it entered the CRM), so conversion between stages, where deals are lost and late-stage losses cannot be read from it',
		dealrisk._num(won_staged - n_final), dealrisk._num(won_staged),
		dealrisk._pct((won_staged - n_final)::float8 / won_staged), final_stage,
		dealrisk._num(n_first), first_stage, n_with_won, n_stages);
END
$fn$;

-- One statement of which types the contract's columns need
-- (_contract_type_problem), used by _check_source() and check_source(); an
-- outcome or deal_stage of another type than text is a warning of
-- check_source() (the diagnostics cast it; the model cannot read it), not
-- an error.
CREATE FUNCTION dealrisk._contract_type_problem(col text, typ regtype)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE
	WHEN col IN ('created_date', 'closed_date', 'last_activity_date', 'stage_entered_date')
		 AND typ NOT IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype) THEN 'a date'
	WHEN col IN ('deal_amount', 'sales_cycle_days')
		 AND typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
						 'numeric'::regtype, 'real'::regtype, 'double precision'::regtype) THEN 'a number'
	WHEN col IN ('outcome', 'deal_stage')
		 AND typ NOT IN ('text'::regtype, 'character varying'::regtype, 'character'::regtype) THEN 'text'
END;
COMMENT ON FUNCTION dealrisk._contract_type_problem(text, regtype) IS
	'The kind of type a contract column needs when its type cannot be read (a date, a number, or text for the model), else NULL (internal)';

CREATE OR REPLACE FUNCTION dealrisk._check_source(source regclass, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	kind		"char";
	col			text;
	typ			regtype;
	need		text;
BEGIN
	IF source IS NULL THEN
		RAISE EXCEPTION 'source must not be NULL'
			USING ERRCODE = '22004',
				  HINT = 'Pass a table or view in the data contract''s layout, e.g. ''public.deals''.';
	END IF;
	SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'relation with OID % does not exist', source::oid
			USING ERRCODE = '42P01';
	END IF;
	IF kind NOT IN ('r', 'p', 'v', 'm', 'f') THEN
		RAISE EXCEPTION 'source "%" is not a table or view', dealrisk._source_name(source)
			USING ERRCODE = '42809',
				  HINT = 'Pass a table, view, materialized view or foreign table.';
	END IF;
	PERFORM dealrisk._check_trust(source);
	-- every column of the contract the source has, and those asked for, is
	-- of a type that runs no less trusted role's code
	PERFORM dealrisk._check_column_types(source, coalesce(columns, '{}') ||
		ARRAY['deal_id', 'created_date', 'closed_date', 'sales_rep_id', 'industry', 'region', 'product_type',
		      'lead_source', 'deal_stage', 'deal_amount', 'sales_cycle_days', 'outcome', 'last_activity_date',
		      'stage_entered_date']);
	FOREACH col IN ARRAY coalesce(columns, '{}') LOOP
		SELECT a.atttypid::regtype INTO typ
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attname = col
			AND a.attnum > 0 AND NOT a.attisdropped;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'column "%" is missing from source "%"', col, dealrisk._source_name(source)
				USING ERRCODE = '42703',
					  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
		END IF;
		-- Dates and numbers are cast in the queries: only castable types pass.
		need := dealrisk._contract_type_problem(col, typ);
		IF need IN ('a date', 'a number') THEN
			RAISE EXCEPTION 'column "%" of source "%" has type %, not %', col, dealrisk._source_name(source),
				pg_catalog.format_type(typ, NULL), CASE need WHEN 'a date' THEN 'date' ELSE need END
				USING ERRCODE = '42804',
					  HINT = pg_catalog.format('Cast it to %s in a view, see docs/data-contract.md.',
											   CASE need WHEN 'a date' THEN 'date' ELSE 'numeric' END);
		END IF;
	END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION dealrisk.check_source(source regclass)
RETURNS TABLE("check" text, severity text, finding text, hint text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c_check		text[] := '{}';
	c_sev		text[] := '{}';
	c_find		text[] := '{}';
	c_hint		text[] := '{}';
	name		text := dealrisk._source_name(source);
	cols		text[];
	types		regtype[];
	col			text;
	need		text;
	missing		text[];
	fatal		boolean := false;
	has_created boolean;
	has_closed	boolean;
	has_stage	boolean;
	date_cols	text[];
	newest_expr text;
	n_total		bigint;
	n_won		bigint;
	n_lost		bigint;
	n_open		bigint;
	newest		date;
	newest_created date;
	oldest_open date;
	n_open_dated bigint;
	max_cycle	float8;
	n_older		bigint;
	unknown		record;
	labels		text[];
	r			record;
	stage_fix	text;
	n_unknown_stages int;
	status_labels text;
	status_in	text;
	semantics	text;
	min_n		int;
	as_of_set	text;
	as_of		date;
	dq			record;
BEGIN
	PERFORM dealrisk._check_source(source, NULL);	-- a relation, trusted
	PERFORM dealrisk.outcome_class('');	-- loads the library, which defines the settings

	SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum), pg_catalog.array_agg(a.atttypid::regtype ORDER BY a.attnum)
		INTO cols, types
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
	cols := coalesce(cols, '{}');

	-- Columns: the two every function needs, and what each missing optional
	-- one takes away.
	FOREACH col IN ARRAY ARRAY['deal_id', 'outcome'] LOOP
		IF NOT col = ANY (cols) THEN
			fatal := true;
			c_check := c_check || 'columns'::text; c_sev := c_sev || 'error'::text;
			c_find := c_find || pg_catalog.format('column %s is missing: %s', col,
				CASE col WHEN 'deal_id' THEN 'deals cannot be told apart (duplicates, scores, alerts)'
				         ELSE 'won, lost and open deals cannot be told apart' END);
			c_hint := c_hint || CASE col
				WHEN 'deal_id' THEN 'Map your CRM''s columns with a view: SELECT <your id column> AS deal_id, ... (docs/data-contract.md).'
				ELSE 'Map the column holding won/lost/open as outcome in a view; a single status column holding both stages and outcomes is split there too (docs/data-contract.md).' END;
		END IF;
	END LOOP;
	FOR i IN 1 .. pg_catalog.cardinality(cols) LOOP
		col := cols[i];
		need := dealrisk._contract_type_problem(cols[i], types[i]);
		CONTINUE WHEN need IS NULL;
		-- a date or number every reader casts: nothing runs; a label or
		-- stage column of another type: the diagnostics cast it, the model
		-- cannot read it
		fatal := fatal OR need <> 'text';
		c_check := c_check || 'column_types'::text;
		c_sev := c_sev || CASE WHEN need = 'text' THEN 'warning' ELSE 'error' END;
		c_find := c_find || pg_catalog.format('column %s has type %s, not %s%s', col, pg_catalog.format_type(types[i], NULL), need,
			CASE WHEN need = 'text' THEN ': the diagnostics read it, train() and scoring cannot' ELSE '' END);
		c_hint := c_hint || pg_catalog.format('Cast it in a view: %s AS %I (docs/data-contract.md).',
			pg_catalog.format(CASE need WHEN 'a date' THEN '%I::date' WHEN 'text' THEN '%I::text' ELSE '%I::numeric' END, col), col);
	END LOOP;
	has_created := 'created_date' = ANY (cols);
	has_closed := 'closed_date' = ANY (cols);
	has_stage := 'deal_stage' = ANY (cols);
	IF NOT has_closed THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || 'column closed_date is missing: no win-rate or cycle trends and no drivers over time; train() holds out a hash sample of deals instead of the newest ones and cannot weight recent deals more'::text;
		c_hint := c_hint || 'Map the date each deal was won or lost as closed_date if your CRM has it.'::text;
	END IF;
	IF NOT has_created THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column created_date is missing: no deal age, so %s',
			CASE WHEN 'sales_cycle_days' = ANY (cols) THEN 'open deals are scored without their age'
			     ELSE 'no sales-cycle lengths and open deals are scored without their age' END);
		c_hint := c_hint || 'Map the date each deal was created as created_date if your CRM has it.'::text;
	END IF;
	IF NOT has_stage THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'column deal_stage is missing: no funnel and no time-in-stage feature'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	SELECT pg_catalog.array_agg(m ORDER BY o) INTO missing
	FROM pg_catalog.unnest(ARRAY['industry', 'region', 'product_type', 'lead_source', 'sales_rep_id', 'deal_amount'])
		WITH ORDINALITY u(m, o)
	WHERE NOT m = ANY (cols);
	IF missing IS NOT NULL THEN
		c_check := c_check || 'columns'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('segment and amount columns missing: %s; diagnose() and train() use the others, and any column named in dimension => or features =>',
			pg_catalog.array_to_string(missing, ', '));
		c_hint := c_hint || NULL::text;
	END IF;

	IF fatal THEN
		RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
			pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
			ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
		RETURN;
	END IF;

	-- Outcomes: counts, and unknown labels by what they look like.
	SELECT pg_catalog.array_agg(pg_catalog.format('pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.%1$I::date) THEN d.%1$I::date END)', c))
		INTO date_cols
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'last_activity_date', 'stage_entered_date']) c
	WHERE c = ANY (cols);
	newest_expr := CASE WHEN date_cols IS NULL THEN 'NULL::date'
	                    ELSE 'greatest(' || pg_catalog.array_to_string(date_cols, ', ') || ')' END;
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.count(*),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'won'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'lost'),
		          pg_catalog.count(*) FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open'),
		          %s, %s, %s
		   FROM (SELECT d.*, coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls FROM %s AS d) d$q$,
		newest_expr,
		CASE WHEN 'created_date' = ANY (cols)
		     THEN 'pg_catalog.max(CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END)'
		     ELSE 'NULL::date' END,
		-- for stale open deals: the longest closed cycle, the oldest open
		-- deal and how many open deals have a creation date
		CASE WHEN 'created_date' = ANY (cols) AND 'closed_date' = ANY (cols)
		     THEN $e$pg_catalog.max(d.closed_date::date - d.created_date::date)
		                FILTER (WHERE d.cls IN ('won', 'lost') AND pg_catalog.isfinite(d.created_date::date)
		                          AND pg_catalog.isfinite(d.closed_date::date) AND d.closed_date::date >= d.created_date::date),
		              pg_catalog.min(d.created_date::date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date)),
		              pg_catalog.count(d.created_date)
		                FILTER (WHERE d.cls OPERATOR(pg_catalog.=) 'open' AND pg_catalog.isfinite(d.created_date::date))$e$
		     ELSE 'NULL::int, NULL::date, 0::bigint' END,
		source::text)
		INTO n_total, n_won, n_lost, n_open, newest, newest_created, max_cycle, oldest_open, n_open_dated;

	FOR unknown IN EXECUTE pg_catalog.format(
		$q$SELECT dealrisk._label_guess(x.label) AS guess,
		          pg_catalog.array_agg(x.label ORDER BY x.n DESC, x.label) AS labels,
		          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.label, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.label) AS listed,
		          pg_catalog.sum(x.n)::bigint AS n, pg_catalog.count(*) AS k
		   FROM (SELECT pg_catalog.btrim(d.outcome::text) AS label, pg_catalog.count(*) AS n
		         FROM %s AS d
		         WHERE dealrisk.outcome_class(d.outcome::text) OPERATOR(pg_catalog.=) 'unknown'
		         GROUP BY 1) x
		   GROUP BY 1
		   ORDER BY pg_catalog.array_position(ARRAY['open', 'won', 'lost', 'unknown'], dealrisk._label_guess(x.label))$q$,
		source::text)
	LOOP
		labels := unknown.labels;
		c_check := c_check || 'outcome_labels'::text; c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('%s %s of %s %s not known (%s of %s deals): %s; %s',
			unknown.k, CASE WHEN unknown.k = 1 THEN 'outcome label' ELSE 'outcome labels' END, name,
			CASE WHEN unknown.k = 1 THEN 'is' ELSE 'are' END, dealrisk._num(unknown.n), dealrisk._num(n_total),
			unknown.listed,
			CASE unknown.guess WHEN 'open' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a stage of an open deal' ELSE 'they look like stages of open deals' END
			                   WHEN 'won' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a won deal' ELSE 'they look like won deals' END
			                   WHEN 'lost' THEN CASE WHEN unknown.k = 1 THEN 'it looks like a lost deal' ELSE 'they look like lost deals' END
			                   ELSE 'it is not clear whether they mean won, lost or open' END);
		c_hint := c_hint || CASE unknown.guess
			WHEN 'open' THEN dealrisk._label_fix('dealrisk.open_labels', labels)
			WHEN 'won' THEN dealrisk._label_fix('dealrisk.won_labels', labels)
			WHEN 'lost' THEN dealrisk._label_fix('dealrisk.lost_labels', labels)
			ELSE 'Add each to the list it means: dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels, e.g. '
			     || dealrisk._label_fix('dealrisk.won_labels', labels[1:1]) END;
		fatal := true;
	END LOOP;
	-- (the checks below read labels with outcome_class, which never fails:
	-- deals with unknown labels count as neither won, lost nor open)

	min_n := pg_catalog.current_setting('dealrisk.min_training_deals')::int;
	c_check := c_check || 'outcomes'::text;
	IF n_won + n_lost = 0 THEN
		c_sev := c_sev || 'error'::text;
		c_find := c_find || pg_catalog.format('no closed deal among %s deals: there is no win rate and nothing to train on', dealrisk._num(n_total));
		c_hint := c_hint || 'Check which labels mean won and lost: dealrisk.won_labels and dealrisk.lost_labels.'::text;
	ELSIF n_won < min_n OR n_lost < min_n THEN
		c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost and %s open deals: train() needs at least %s won and %s lost',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._num(n_open), min_n, min_n);
		c_hint := c_hint || 'Collect more closed deals; win rates of so few deals have wide intervals.'::text;
	ELSE
		c_sev := c_sev || 'info'::text;
		c_find := c_find || pg_catalog.format('%s won, %s lost (win rate %s) and %s open deals',
			dealrisk._num(n_won), dealrisk._num(n_lost), dealrisk._pct(n_won::float8 / (n_won + n_lost)), dealrisk._num(n_open));
		c_hint := c_hint || NULL::text;
	END IF;

	-- Stages: values dealrisk.stages does not know, outcomes in the stage
	-- column, and whether the column records the stage a deal reached.
	IF has_stage THEN
		EXECUTE pg_catalog.format(
			$q$SELECT pg_catalog.count(*)::int,
			          pg_catalog.string_agg(pg_catalog.format('(%%L, %%s, false)', x.st, x.base + x.k), ', ' ORDER BY x.k)
			              FILTER (WHERE NOT x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.format('%%L (%%s)', x.st, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome),
			          pg_catalog.string_agg(pg_catalog.quote_literal(x.st), ', ' ORDER BY x.n DESC, x.st)
			              FILTER (WHERE x.is_outcome)
			   FROM (SELECT y.st, y.n, y.is_outcome,
			                pg_catalog.row_number() OVER (PARTITION BY y.is_outcome ORDER BY y.st) AS k,
			                coalesce((SELECT pg_catalog.max(s."position") FROM dealrisk.stages s), 0) AS base
			         FROM (SELECT z.st, z.n, dealrisk.outcome_class(z.st) IN ('won', 'lost') AS is_outcome
			               FROM (SELECT pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') AS st, pg_catalog.count(*) AS n
			                     FROM %s AS d
			                     WHERE pg_catalog.btrim(d.deal_stage::text, E' \t\n\r\f\013') <> ''
			                     GROUP BY 1) z
			               WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages s
			                                 WHERE pg_catalog.lower(s.stage) OPERATOR(pg_catalog.=) pg_catalog.lower(z.st))) y) x$q$,
			source::text)
			INTO n_unknown_stages, stage_fix, status_labels, status_in;
		IF status_labels IS NOT NULL THEN
			c_check := c_check || 'status_column'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds outcome labels: %s; it is a single status column holding both the stage of open deals and the outcome of closed ones, so it says nothing about the stage closed deals reached',
				status_labels);
			c_hint := c_hint || pg_catalog.format('Split it in a view over your table: CASE WHEN status IN (%1$s) THEN status END AS outcome, CASE WHEN status NOT IN (%1$s) THEN status END AS deal_stage (docs/data-contract.md).',
				status_in);
		END IF;
		IF stage_fix IS NOT NULL THEN
			c_check := c_check || 'unknown_stages'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('deal_stage holds stages that dealrisk.stages does not list: the funnel cannot be computed until they are added')::text;
			c_hint := c_hint || pg_catalog.format('Add them in pipeline order, e.g. INSERT INTO dealrisk.stages (stage, position, is_late) VALUES %s; then correct position and is_late (a stage before the first one takes position 0 or below).',
				stage_fix);
		END IF;
		semantics := dealrisk._stage_semantics(source);
		IF semantics IS NOT NULL THEN
			c_check := c_check || 'stage_semantics'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || semantics;
			c_hint := c_hint || dealrisk._stage_semantics_hint();
		END IF;
	END IF;

	-- Columns that record the outcome instead of predicting it.
	FOR r IN SELECT * FROM dealrisk._feature_leaks(source, NULL) LOOP
		c_check := c_check || 'outcome_leaks'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column %s leaks the outcome: %s', r.feature, r.reason);
		c_hint := c_hint || 'Map only what is known while a deal is open (docs/data-contract.md); train() leaves such a column out.'::text;
	END LOOP;

	-- Dates: the day open deals are scored at, against the data.
	as_of_set := NULLIF(pg_catalog.current_setting('dealrisk.as_of_date', true), '');
	as_of := coalesce(as_of_set::date, CURRENT_DATE);
	IF n_open > 0 AND newest IS NOT NULL THEN
		IF as_of_set IS NULL AND as_of - newest > 90 THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('open deals are scored as of today, %s, %s days after the newest date in the source (%s): their ages and times in stage are measured to today, which makes every open deal look stale',
				as_of, dealrisk._num((as_of - newest)::bigint), newest);
			-- (the date as ISO text, which means the same date under any
			-- DateStyle of the sessions that read the setting)
			c_hint := c_hint || pg_catalog.format('If the data is an export from %s, score as of then: SET dealrisk.as_of_date = %L; to keep it: ALTER DATABASE %I SET dealrisk.as_of_date = %L;',
				newest, pg_catalog.to_char(newest, 'YYYY-MM-DD'), pg_catalog.current_database(), pg_catalog.to_char(newest, 'YYYY-MM-DD'));
		ELSIF as_of < newest_created THEN
			c_check := c_check || 'scoring_date'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || pg_catalog.format('dealrisk.as_of_date (%s) is before the newest created_date in the source (%s): deals created after it get negative ages',
				as_of, newest_created);
			c_hint := c_hint || pg_catalog.format('SET dealrisk.as_of_date = %L, or later.', pg_catalog.to_char(newest_created, 'YYYY-MM-DD'));
		END IF;
	END IF;
	-- (when open deals are scored as of a date long after the data, the
	-- warning above says why they all look old)
	IF has_created AND has_closed AND n_open > 0 AND NOT 'scoring_date' = ANY (c_check) THEN
		-- (counted only when the oldest open deal is that old)
		IF max_cycle IS NOT NULL AND n_open_dated > 0 AND as_of - oldest_open > max_cycle THEN
			EXECUTE pg_catalog.format(
				$q$SELECT pg_catalog.count(*) FROM %s AS d
				   WHERE coalesce(dealrisk.outcome_class(d.outcome::text), 'open') OPERATOR(pg_catalog.=) 'open'
				     AND pg_catalog.isfinite(d.created_date::date) AND $1 - d.created_date::date > $2$q$,
				source::text)
				INTO n_older USING as_of, max_cycle::int;
			IF n_older > 0 THEN
				c_check := c_check || 'stale_open_deals'::text; c_sev := c_sev || 'warning'::text;
				c_find := c_find || pg_catalog.format('%s of %s open deals are older on %s than every closed deal was when it closed (longest cycle %s days; the oldest open deal was created on %s): they may be dead deals never closed in the CRM',
					dealrisk._num(n_older), dealrisk._num(n_open_dated), as_of, dealrisk._num(max_cycle::bigint), oldest_open);
				c_hint := c_hint || 'Close or remove them in the CRM, or leave them out of the source; if the data is an older export, set dealrisk.as_of_date to its date.'::text;
			END IF;
		END IF;
	END IF;

	-- Row-level problems, from data_quality() (the checks it can run on the
	-- columns the source has).
	FOR dq IN SELECT * FROM dealrisk.data_quality(source) q
	          WHERE q."rows" > 0 AND q.check_name NOT IN ('unknown_outcome', 'unknown_stage')
	LOOP
		c_check := c_check || dq.check_name;
		c_sev := c_sev || CASE WHEN dq.check_name IN ('open_with_closed_date', 'null_amount', 'null_stage', 'cycle_days_mismatch')
		                       THEN 'info' ELSE 'warning' END;
		c_find := c_find || pg_catalog.format('%s %s: %s%s', dealrisk._num(dq."rows"),
			CASE WHEN dq."rows" = 1 THEN 'row' ELSE 'rows' END, dq.description,
			CASE WHEN dq.example_deal_id IS NOT NULL THEN pg_catalog.format(' (e.g. deal_id %s)', dq.example_deal_id) ELSE '' END);
		c_hint := c_hint || CASE dq.check_name
			WHEN 'duplicate_deal_id' THEN 'Keep one row per deal (watch() refuses open deals that share a deal_id).'
			WHEN 'null_deal_id' THEN 'Give every deal an id; rows without one cannot be scored or alerted on.'
			WHEN 'closed_before_created' THEN 'Fix the dates in the CRM or the mapping view; cycle lengths of these deals are negative and left out.'
			WHEN 'closed_without_closed_date' THEN 'These deals count in win rates but are left out of trends, drivers and the time-based holdout.'
			WHEN 'invalid_amount' THEN 'NaN and infinite amounts are treated as missing; fix them at the source.'
			WHEN 'infinite_date' THEN 'Infinite dates are treated as missing; fix them at the source.'
			WHEN 'negative_amount' THEN 'Check whether negative amounts are refunds or errors; they fall in the lowest amount bin.'
			WHEN 'negative_cycle_days' THEN 'Negative cycle lengths are left out of cycle statistics.'
			WHEN 'future_created_date' THEN 'Deals created in the future get negative ages; check the dates or dealrisk.as_of_date.'
			END;
	END LOOP;

	IF NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(c_sev) s WHERE s IN ('error', 'warning')) THEN
		c_check := c_check || 'summary'::text; c_sev := c_sev || 'info'::text;
		c_find := c_find || 'no error or warning: every diagnostic and train() can run on this source'::text;
		c_hint := c_hint || NULL::text;
	END IF;
	RETURN QUERY SELECT u.c, u.s, u.f, u.h FROM ROWS FROM (pg_catalog.unnest(c_check), pg_catalog.unnest(c_sev),
		pg_catalog.unnest(c_find), pg_catalog.unnest(c_hint)) WITH ORDINALITY AS u(c, s, f, h, o)
		ORDER BY pg_catalog.array_position(ARRAY['error', 'warning', 'info'], u.s), u.o;
END
$fn$;
