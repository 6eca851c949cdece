-- diagnostics.sql: set-returning diagnostics over a deal source and the
-- plain-English report (SQL and PL/pgSQL over the aggregates).
--
-- A deal source is any table or view in the layout of docs/data-contract.md,
-- passed as a regclass.  Its name is spliced into queries only as the
-- regclass's own text (quoted by PostgreSQL) and column names only through
-- format('%I'), so no name can inject SQL.  The functions that read the
-- source are PARALLEL RESTRICTED: the source may be a temporary table, which
-- a parallel worker cannot read.

-- Validation helpers ------------------------------------------------------

-- A source's name for messages, unquoted like PostgreSQL's own messages:
-- schema-qualified unless the relation is visible in the search path.
CREATE FUNCTION dealrisk._source_name(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT CASE WHEN pg_catalog.pg_table_is_visible(c.oid) THEN c.relname::text
					ELSE n.nspname || '.' || c.relname END
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = source::pg_catalog.oid);
COMMENT ON FUNCTION dealrisk._source_name(regclass) IS
	'The name of a relation for error messages, unquoted, schema-qualified unless visible (internal)';

-- Whether a relation has a column of that name (not dropped).
CREATE FUNCTION dealrisk._has_column(rel regclass, col text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
               WHERE a.attrelid = rel::pg_catalog.oid AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped);
COMMENT ON FUNCTION dealrisk._has_column(regclass, text) IS
	'Whether a relation has a column of that name (internal)';

-- Whether code of a role may run with the caller's privileges: the caller,
-- a member of the caller, a superuser, or a role in dealrisk.trusted_owners
-- (src/trust.c).
CREATE FUNCTION dealrisk._trusted_owner(role oid)
RETURNS boolean AS 'MODULE_PATHNAME', 'dr_trusted_owner'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._trusted_owner(oid) IS
	'Whether code of a role may run with the current user''s privileges: the user, a member of the user, a superuser or a role of dealrisk.trusted_owners (internal)';

-- Whether reading a value of a type runs no code of a role less trusted
-- than the caller: the type (or, for a domain, its base type) belongs to a
-- superuser (the built-in types, and those of extensions a superuser
-- installed) or to a role _trusted_owner accepts.  A type's owner
-- can give it casts and operators, which run with the privileges of whoever
-- reads the column; casts are not found through the search_path, so
-- pinning it does not help.
CREATE FUNCTION dealrisk._trusted_type(typ oid)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (WITH RECURSIVE base AS (
	        SELECT t.oid, t.typowner, t.typbasetype, 1 AS depth FROM pg_catalog.pg_type t WHERE t.oid = typ
	        UNION ALL
	        SELECT t.oid, t.typowner, t.typbasetype, b.depth + 1
	        FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.typbasetype
	        WHERE b.typbasetype <> 0 AND b.depth < 32)
        SELECT dealrisk._trusted_owner(b.typowner) FROM base b ORDER BY b.depth DESC LIMIT 1);
COMMENT ON FUNCTION dealrisk._trusted_type(oid) IS
	'Whether reading a value of a type runs no code of a role less trusted than the caller: the (base) type belongs to a superuser or to a member of the caller (internal)';

-- An error unless each named column of rel that exists has a trusted type.
CREATE FUNCTION dealrisk._check_column_types(rel regclass, columns text[])
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	col text;
	typ oid;
BEGIN
	SELECT a.attname, a.atttypid INTO col, typ
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = rel::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text = ANY (columns) AND NOT coalesce(dealrisk._trusted_type(a.atttypid), false)
	ORDER BY a.attnum LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'column "%" of "%" has type %, which belongs to role "%"', col, dealrisk._source_name(rel),
			pg_catalog.format_type(typ, NULL), (SELECT pg_catalog.pg_get_userbyid(t.typowner) FROM pg_catalog.pg_type t WHERE t.oid = typ)
			USING ERRCODE = '42804',
			      DETAIL = pg_catalog.format('Reading a column of a type can run the casts and operators its owner gave it, with the privileges of role %s.', CURRENT_USER),
			      HINT = 'Use a column of a type that a superuser or you own (text, numeric, date, ...); a cast of another role''s type is that role''s code too. A superuser may trust the type''s owner with dealrisk.trusted_owners.';
	END IF;
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_column_types(regclass, text[]) IS
	'Raises an error naming the first of the given columns of a relation whose type is not built in (internal)';

-- Locks every relation reading a source involves (the source, its
-- inheritance children and partitions, the relations and functions of a
-- view, recursively) and raises an error for the first whose owner the
-- caller does not trust (src/trust.c).
CREATE FUNCTION dealrisk._check_relation_trust(source regclass)
RETURNS void AS 'MODULE_PATHNAME', 'dr_check_relation_trust'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION dealrisk._check_relation_trust(regclass) IS
	'Locks the relations a source reads and raises an error when one of them, or a function of a view among them, belongs to a role the caller does not trust (internal)';

-- An error unless reading source runs no code of a role the caller does
-- not trust (_check_relation_trust), and while schema dealrisk holds
-- functions that are not the extension's: whoever created them could run
-- code as every caller of the extension.
CREATE FUNCTION dealrisk._check_trust(source regclass)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	foreign_fn	text;
BEGIN
	SELECT pg_catalog.string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid) INTO foreign_fn
	FROM pg_catalog.pg_proc p
	WHERE p.pronamespace = 'dealrisk'::regnamespace::pg_catalog.oid
	  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
	                  WHERE d.classid = 'pg_catalog.pg_proc'::regclass::pg_catalog.oid AND d.objid = p.oid
	                    AND d.deptype = 'e');
	IF foreign_fn IS NOT NULL THEN
		RAISE EXCEPTION 'schema dealrisk holds functions that are not part of the extension: %', foreign_fn
			USING ERRCODE = '42501',
			      DETAIL = 'A function created in schema dealrisk can take the place of the extension''s own and run with the privileges of its callers.',
			      HINT = 'Drop them, and revoke CREATE on schema dealrisk from every role but its owner (docs/security.md).';
	END IF;
	PERFORM dealrisk._check_relation_trust(source);
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_trust(regclass) IS
	'Raises an error when reading a source could run code of a role the caller does not trust, or schema dealrisk holds functions that are not the extension''s (internal)';

-- What type a column of the contract needs, when its type is not one the
-- functions can read: 'a date' and 'a number' for the columns every reader
-- casts, 'text' for outcome and deal_stage, which the model reads as text
-- (the diagnostics cast them); NULL when the type is fine or the column is
-- not the contract's.  The one statement of these rules: _check_source()
-- raises on the first two, check_source() reports all three.
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

CREATE FUNCTION dealrisk._check_source(source regclass, columns text[])
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
COMMENT ON FUNCTION dealrisk._check_source(regclass, text[]) IS
	'Raises an error unless source is a table or view with the given columns (date and number columns of a castable type) (internal)';

CREATE FUNCTION dealrisk._check_period(period text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := pg_catalog.lower(pg_catalog.btrim(period));
BEGIN
	IF p IN ('week', 'month', 'quarter', 'year') THEN
		RETURN p;
	END IF;
	IF period IS NULL THEN
		RAISE EXCEPTION 'period must not be NULL'
			USING ERRCODE = '22023', HINT = 'Use one of week, month, quarter, year.';
	END IF;
	RAISE EXCEPTION 'invalid period "%"', period
		USING ERRCODE = '22023', HINT = 'Use one of week, month, quarter, year.';
END
$fn$;
COMMENT ON FUNCTION dealrisk._check_period(text) IS
	'The period name lower-cased (week, month, quarter or year); any other value is an error (internal)';

-- The columns named by a dimension string: names separated by commas, each
-- either plain (matched exactly, else in lower case like an unquoted SQL
-- identifier) or double-quoted (matched exactly, "" for a quote).
CREATE FUNCTION dealrisk._dimension_columns(source regclass, dimension text)
RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	parts		text[] := '{}';
	quoted		boolean[] := '{}';
	cols		text[] := '{}';
	cur			text := '';
	is_quoted	boolean := false;
	in_quote	boolean := false;
	after_quote boolean := false;
	c			text;
	i			int := 1;
	n			int;
	name		text;
	found_name	text;
	valid		text;
BEGIN
	IF dimension IS NULL OR pg_catalog.btrim(dimension) = '' THEN
		RAISE EXCEPTION 'dimension must name at least one column'
			USING ERRCODE = '22023',
				  HINT = 'Pass a column name, or several separated by commas, e.g. ''region,lead_source''.';
	END IF;
	n := pg_catalog.length(dimension);
	WHILE i <= n + 1 LOOP
		c := CASE WHEN i <= n THEN pg_catalog.substr(dimension, i, 1) END;
		IF in_quote THEN
			IF c IS NULL THEN
				RAISE EXCEPTION 'unterminated quoted column name in dimension "%"', dimension
					USING ERRCODE = '42601';
			ELSIF c = '"' AND pg_catalog.substr(dimension, i + 1, 1) = '"' THEN
				cur := cur || '"';
				i := i + 1;
			ELSIF c = '"' THEN
				in_quote := false;
				after_quote := true;
			ELSE
				cur := cur || c;
			END IF;
		ELSIF c IS NULL OR c = ',' THEN
			IF NOT is_quoted THEN
				cur := pg_catalog.btrim(cur);
			END IF;
			IF cur = '' THEN
				RAISE EXCEPTION 'empty column name in dimension "%"', dimension
					USING ERRCODE = '22023',
						  HINT = 'Separate column names with single commas, e.g. ''region,lead_source''.';
			END IF;
			parts := parts || cur;
			quoted := quoted || is_quoted;
			cur := '';
			is_quoted := false;
			after_quote := false;
		ELSIF after_quote THEN
			IF c !~ '^\s$' THEN
				RAISE EXCEPTION 'unexpected text after quoted column name in dimension "%"', dimension
					USING ERRCODE = '42601',
						  HINT = 'Separate column names with commas.';
			END IF;
		ELSIF c = '"' AND pg_catalog.btrim(cur) = '' THEN
			in_quote := true;
			is_quoted := true;
			cur := '';
		ELSE
			cur := cur || c;
		END IF;
		i := i + 1;
	END LOOP;

	FOR i IN 1 .. pg_catalog.array_length(parts, 1) LOOP
		name := parts[i];
		SELECT a.attname INTO found_name
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
			AND (a.attname = name OR (NOT quoted[i] AND a.attname = pg_catalog.lower(name)))
		ORDER BY a.attname = name DESC
		LIMIT 1;
		IF NOT FOUND THEN
			SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
				INTO valid
			FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped;
			RAISE EXCEPTION 'column "%" does not exist in source "%"', name, dealrisk._source_name(source)
				USING ERRCODE = '42703',
					  HINT = pg_catalog.format('Valid columns are: %s.', valid);
		END IF;
		IF found_name = ANY (cols) THEN
			RAISE EXCEPTION 'column "%" appears twice in dimension "%"', found_name, dimension
				USING ERRCODE = '22023';
		END IF;
		cols := cols || found_name;
	END LOOP;
	PERFORM dealrisk._check_column_types(source, cols);
	RETURN cols;
END
$fn$;
COMMENT ON FUNCTION dealrisk._dimension_columns(regclass, text) IS
	'Parses a comma-separated list of column names and checks each exists in source (internal)';

-- Default comparison windows: the last complete calendar quarter of the
-- closed deals (complete when the last closed_date is on or after its last
-- day) and the quarter before it.
CREATE FUNCTION dealrisk._default_windows(source regclass,
	OUT recent daterange, OUT baseline daterange, OUT last_closed date)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	EXECUTE pg_catalog.format(
		$q$SELECT pg_catalog.max(d.closed_date::date)
		   FROM %s AS d
		   WHERE dealrisk.outcome_class(d.outcome::text) IN ('won', 'lost')
			 AND pg_catalog.isfinite(d.closed_date::date)$q$,
		source::text)
		INTO last_closed;
	IF last_closed IS NULL THEN
		RAISE EXCEPTION 'source "%" has no closed deal with a closed_date', dealrisk._source_name(source)
			USING ERRCODE = '22023',
				  HINT = 'Windows default to the last complete quarter of the closed deals.';
	END IF;
	SELECT w.recent, w.baseline INTO recent, baseline FROM dealrisk._windows_of(last_closed) w;
END
$fn$;
COMMENT ON FUNCTION dealrisk._default_windows(regclass) IS
	'The last complete calendar quarter of closed deals in source, the quarter before it, and the last closed_date (internal)';

-- Trends --------------------------------------------------------------------

-- The windows a comparison defaults to, given the newest close date of the
-- closed deals: the last complete calendar quarter and the one before it.
CREATE FUNCTION dealrisk._windows_of(last_closed date, OUT recent daterange, OUT baseline daterange)
RETURNS record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT pg_catalog.daterange(q, (q + interval '3 months')::date),
		   pg_catalog.daterange((q - interval '3 months')::date, q)
	FROM (SELECT (pg_catalog.date_trunc('quarter', (last_closed + 1)::timestamp) - interval '3 months')::date AS q) x
	WHERE last_closed IS NOT NULL
$fn$;
COMMENT ON FUNCTION dealrisk._windows_of(date) IS
	'The last complete calendar quarter before the day after last_closed, and the quarter before it (internal)';

-- The closed deals of a source per period of closed_date, in one read:
-- the win-rate trend (win_rate_trend's columns) and, with cycles, the cycle
-- trend (cycle_trend's), and the newest close date.  win_rate_trend,
-- cycle_trend and diagnose are built on it.  The cycle is
-- sales_cycle_days, else closed_date - created_date.  A period is partial
-- when it ends after the newest closed_date of the closed deals the trend
-- counts: the data cannot hold all of it (its last day is after that date).
-- Only the last period can be partial.
CREATE FUNCTION dealrisk._trends(source regclass, period text, cycles boolean)
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean, median_days float8, p75_days float8, mean_days float8,
			  change_median float8, cycle_p_value float8, last_closed date)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			text := dealrisk._check_period(period);
	has_days	boolean := false;
	has_created	boolean := false;
	cyc			text := 'NULL::float8';
BEGIN
	IF cycles THEN
		has_days := coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false);
		has_created := coalesce(dealrisk._has_column(source, 'created_date'), false);
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']
		|| CASE WHEN has_days THEN ARRAY['sales_cycle_days'] ELSE '{}' END
		|| CASE WHEN has_created THEN ARRAY['created_date'] ELSE '{}' END);
	IF has_created THEN
		cyc := 'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN (d.closed_date::date - d.created_date::date)::float8 END';
	END IF;
	IF has_days THEN
		cyc := pg_catalog.format('coalesce(d.sales_cycle_days::float8, %s)', cyc);
	END IF;
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$WITH g AS (
			SELECT pg_catalog.date_trunc($1, x.closed_date::timestamp)::date AS ps,
				   pg_catalog.count(*) AS n,
				   pg_catalog.count(*) FILTER (WHERE x.won) AS w,
				   pg_catalog.max(x.closed_date) AS last_cl,
				   pg_catalog.count(x.cyc) AS nc,
				   pg_catalog.percentile_cont(0.5) WITHIN GROUP (ORDER BY x.cyc) AS med,
				   pg_catalog.percentile_cont(0.75) WITHIN GROUP (ORDER BY x.cyc) AS p75,
				   pg_catalog.avg(x.cyc) AS mean,
				   pg_catalog.stddev_samp(x.cyc) AS sd
			FROM (SELECT d.closed_date::date AS closed_date,
						 dealrisk.is_won(d.outcome::text) AS won,
						 %s AS cyc
				  FROM %s AS d) x
			WHERE x.won IS NOT NULL AND pg_catalog.isfinite(x.closed_date)
			GROUP BY 1
		), l AS (
			SELECT g.*, g.w::float8 / g.n AS r,
				   pg_catalog.lag(g.ps) OVER o = (g.ps - $2)::date AS adjacent,
				   pg_catalog.lag(g.n) OVER o AS prev_n,
				   pg_catalog.lag(g.w) OVER o AS prev_w,
				   pg_catalog.lag(g.med) OVER o AS prev_med,
				   pg_catalog.lag(g.mean) OVER o AS prev_mean,
				   pg_catalog.lag(g.sd) OVER o AS prev_sd,
				   pg_catalog.lag(g.nc) OVER o AS prev_nc,
				   pg_catalog.max(g.last_cl) OVER () AS all_last_cl
			FROM g
			WINDOW o AS (ORDER BY g.ps)
		)
		SELECT l.ps, l.n, l.w, l.r, ci.ci_low, ci.ci_high,
			   CASE WHEN l.adjacent THEN l.r - l.prev_w::float8 / l.prev_n END,
			   CASE WHEN l.adjacent THEN dealrisk.two_proportion_p(l.w, l.n, l.prev_w, l.prev_n) END,
			   (l.ps + $2)::date > l.all_last_cl + 1,
			   l.med, l.p75, l.mean,
			   CASE WHEN l.adjacent THEN l.med - l.prev_med END,
			   CASE WHEN l.adjacent THEN dealrisk.welch_p(l.mean, l.sd, l.nc, l.prev_mean, l.prev_sd, l.prev_nc) END,
			   l.all_last_cl
		FROM l, LATERAL dealrisk.wilson_interval(l.w, l.n) ci
		ORDER BY l.ps$q$,
		cyc, source::text)
		USING p, CASE p WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || p)::interval END;
END
$fn$;
COMMENT ON FUNCTION dealrisk._trends(regclass, text, boolean) IS
	'Closed deals per period of closed_date in one read of the source: the columns of win_rate_trend and, with cycles, of cycle_trend, and the newest closed_date (internal)';

CREATE FUNCTION dealrisk.win_rate_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, won bigint, win_rate float8,
			  ci_low float8, ci_high float8, change float8, p_value float8,
			  is_partial boolean)
LANGUAGE sql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT t.period_start, t.closed, t.won, t.win_rate, t.ci_low, t.ci_high, t.change, t.p_value, t.is_partial
	FROM dealrisk._trends(source, period, false) t
$fn$;
COMMENT ON FUNCTION dealrisk.win_rate_trend(regclass, text) IS
	'Win rate of closed deals per week, month, quarter or year of closed_date, with a 95% Wilson interval, the change from the previous period, the two-proportion p-value of that change, and is_partial for a period that ends after the newest closed_date';

-- The cycle is sales_cycle_days, else closed_date - created_date: a source
-- needs one of the two columns.  is_partial as in win_rate_trend.
CREATE FUNCTION dealrisk.cycle_trend(source regclass, period text DEFAULT 'quarter')
RETURNS TABLE(period_start date, closed bigint, median_days float8, p75_days float8,
			  mean_days float8, change_median float8, p_value float8, significant boolean,
			  is_partial boolean)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 20
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM dealrisk._check_period(period);
	PERFORM dealrisk._check_source(source, ARRAY['closed_date', 'outcome']);
	IF NOT coalesce(dealrisk._has_column(source, 'sales_cycle_days'), false)
	   AND NOT coalesce(dealrisk._has_column(source, 'created_date'), false) THEN
		RAISE EXCEPTION 'source "%" has neither a sales_cycle_days nor a created_date column', dealrisk._source_name(source)
			USING ERRCODE = '42703',
				  DETAIL = 'A sales cycle is sales_cycle_days, or closed_date - created_date.',
				  HINT = 'Map your CRM''s columns with a view, see docs/data-contract.md.';
	END IF;
	RETURN QUERY
	SELECT t.period_start, t.closed, t.median_days, t.p75_days, t.mean_days, t.change_median,
		   t.cycle_p_value, t.cycle_p_value < 0.05, t.is_partial
	FROM dealrisk._trends(source, period, true) t;
END
$fn$;
COMMENT ON FUNCTION dealrisk.cycle_trend(regclass, text) IS
	'Sales cycle length (sales_cycle_days, else closed_date - created_date; a source needs one of them) of closed deals per week, month, quarter or year of closed_date: median, 75th percentile, mean, change of the median from the previous period, Welch''s t-test p-value of the change of the mean, and is_partial for a period that ends after the newest closed_date';

-- Multiple testing ----------------------------------------------------------

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

-- Drivers -------------------------------------------------------------------

-- The segments of one dimension, with the one-at-a-time decomposition
-- (rate and mix effects, two-proportion p and BH q over the call) and the
-- adjusted columns of the joint analysis (src/drivers.sql), which holds the
-- contract dimensions the source has fixed besides this one.
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

-- Funnel --------------------------------------------------------------------

-- The funnel's rows, with caveat = note (the stage verdict is the
-- caller's: funnel() reads it, diagnose() has it from the preflight).
CREATE FUNCTION dealrisk._funnel_rows(source regclass, since date, note text)
RETURNS TABLE(stage text, "position" int, is_late boolean, reached bigint, won bigint,
			  lost_here bigint, open_here bigint, conversion_to_next float8,
			  cumulative_conversion float8, win_rate float8, caveat text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 10
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	-- created_date only filters (since)
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']
		|| CASE WHEN since IS NOT NULL THEN ARRAY['created_date'] ELSE '{}' END);
	RETURN QUERY EXECUTE pg_catalog.format(
		$q$SELECT f.stage, f."position", f.is_late, f.reached, f.won, f.lost_here,
				  f.open_here,
				  -- from the last stage any closed deal reached, the next
				  -- step is the win (a stage after it that no deal uses,
				  -- such as an unused Closed, is not a step to fail)
				  CASE WHEN f.won > 0 AND pg_catalog.max(f.reached) OVER (ORDER BY f."position"
				                          ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) = 0
				       THEN f.won::float8 / NULLIF(f.reached, 0) ELSE f.conversion_to_next END,
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
		USING since, note;
END
$fn$;
COMMENT ON FUNCTION dealrisk._funnel_rows(regclass, date, text) IS
	'The rows of funnel() in one read of the source, with caveat = note (internal)';

-- funnel() itself is in src/history.sql: with a stage history it reads the
-- funnel from the history.

-- Data quality --------------------------------------------------------------

CREATE FUNCTION dealrisk.data_quality(source regclass)
RETURNS TABLE(check_name text, description text, "rows" bigint, example_deal_id text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 15
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			record;
BEGIN
	-- deal_id and outcome are needed; a check on any other column the
	-- source lacks is not run (its rows are NULL)
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	PERFORM dealrisk._check_source(source,
		ARRAY(SELECT c FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
		      WHERE dealrisk._has_column(source, c)));
	-- one read of the source for every test, one more for duplicate ids
	-- (none under a unique index on deal_id)
	SELECT * INTO p FROM dealrisk._source_profile(source, true, NULL, false);
	RETURN QUERY SELECT * FROM dealrisk._quality_rows(source, p.dq_n, p.dq_ex);
END
$fn$;
COMMENT ON FUNCTION dealrisk.data_quality(regclass) IS
	'Data-quality checks of a deal source, one row per check in a fixed order (all checks, zero counts included): rows failing it and the smallest failing deal_id; a check needing a column the source lacks has NULL rows; never raises an error on bad data';

-- The report ----------------------------------------------------------------

CREATE FUNCTION dealrisk._pct(x float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(pg_catalog.to_char(pg_catalog.round((x * 100)::numeric, 1), 'FM990.0') || '%', 'n/a');
COMMENT ON FUNCTION dealrisk._pct(float8) IS 'A share as a percentage with one decimal (internal)';

CREATE FUNCTION dealrisk._pts(x float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(pg_catalog.to_char(pg_catalog.round((x * 100)::numeric, 1), 'FMS990.0'), 'n/a');
COMMENT ON FUNCTION dealrisk._pts(float8) IS 'A difference of shares in percentage points, signed, one decimal (internal)';

CREATE FUNCTION dealrisk._pval(p float8)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN p IS NULL THEN 'p n/a'
			WHEN p < 0.001 THEN 'p < 0.001'
			ELSE 'p = ' || pg_catalog.to_char(p, 'FM0.000') END;
COMMENT ON FUNCTION dealrisk._pval(float8) IS 'A p-value for the report (internal)';

CREATE FUNCTION dealrisk._num(n bigint)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.to_char(n, 'FM999,999,999,999,990');
COMMENT ON FUNCTION dealrisk._num(bigint) IS 'A count with thousands separators (internal)';

CREATE FUNCTION dealrisk._quarter_label(d date)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.to_char(d, '"Q"Q-YYYY');
COMMENT ON FUNCTION dealrisk._quarter_label(date) IS 'Q1-2024 style label of the quarter holding d (internal)';

-- The report reads only outcome for sure: each section checks the columns it
-- needs and, when one is missing, says so on its line instead of failing.
-- Quarters are compared only when complete (_default_windows); the partial
-- quarter after them is named as such, never as the latest change.  The
-- segments of all dimensions are one family of tests: their q-values are
-- adjusted over all of them (Benjamini-Hochberg), not per dimension.
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
