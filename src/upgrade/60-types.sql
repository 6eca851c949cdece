
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
