
-- The preflight in one read of the source (issue #13, cost):
-- _source_profile counts every row-level check of check_source() in one
-- pass, with the outcome-leak check in the same statement; data_quality(),
-- _stage_semantics() and _feature_leaks() share its code.

-- The bits of data_quality()'s tests one row fails, as _source_profile
-- counts them (src/checks.c has the list): in C, because fifteen CASE
-- tests per row cost seconds on a million deals.
CREATE FUNCTION dealrisk._quality_flags(id text, cr date, cl date, st text, amount numeric, cyc numeric,
	cls text, both_dates boolean, inf_date boolean, stage_keys text[])
RETURNS int AS 'MODULE_PATHNAME', 'dr_quality_flags'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._quality_flags(text, date, date, text, numeric, numeric, text, boolean, boolean, text[]) IS
	'The data_quality() tests a row of a deal source fails, as bits (internal)';
CREATE FUNCTION dealrisk._source_profile(source regclass, "rows" boolean, as_of date, leaks boolean,
	OUT n_total bigint, OUT n_won bigint, OUT n_lost bigint, OUT n_open bigint,
	OUT newest date, OUT newest_created date, OUT max_cycle int, OUT oldest_open date,
	OUT n_open_dated bigint, OUT n_older bigint,
	OUT labels text[], OUT label_n bigint[],
	OUT stages text[], OUT stage_n bigint[], OUT stage_won bigint[], OUT stage_lost bigint[],
	OUT dq_n bigint[], OUT dq_ex text[],
	OUT leak_feature text[], OUT leak_reason text[])
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
-- (the planner cannot know that the key of the pass has few values: it
-- would sort every row by it, where hashing them costs a fraction of that,
-- and compile the many expressions of the pass, which on 1M deals took
-- seconds more than running them: docs/benchmarks.md)
SET enable_sort = off
SET jit = off
AS $fn$
DECLARE
	has			text[];
	e			text[];
	dates		text;
	both_dates	boolean;
	leak		record;
	rel			text := source::text;
	x			text := '';
	lk			text := 'SELECT NULL::text[], NULL::text[]';
	counts		text;
	examples	text;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	SELECT pg_catalog.array_agg(a.attname::text) INTO has
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = source::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname::text IN ('deal_id', 'created_date', 'closed_date', 'sales_rep_id', 'industry', 'region', 'product_type',
	                          'lead_source', 'deal_stage', 'deal_amount', 'sales_cycle_days', 'outcome', 'last_activity_date',
	                          'stage_entered_date');
	-- the columns read beyond outcome are of a type their casts accept
	PERFORM dealrisk._check_source(source, ARRAY(
		SELECT c FROM pg_catalog.unnest(CASE WHEN "rows" THEN ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']
		                                     ELSE ARRAY['deal_stage'] END) c
		WHERE c = ANY (has)));
	-- each column as the tests read it (NULL when absent or not asked for)
	SELECT pg_catalog.array_agg(CASE WHEN u.c = ANY (has) AND ("rows" OR u.c = 'deal_stage')
	                                 THEN pg_catalog.format('d.%I::%s', u.c, u.t) ELSE 'NULL::' || u.t END ORDER BY u.o)
		INTO e
	FROM ROWS FROM (pg_catalog.unnest(ARRAY['deal_id', 'created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days',
	                                        'last_activity_date', 'stage_entered_date']),
	                pg_catalog.unnest(ARRAY['text', 'date', 'date', 'text', 'numeric', 'numeric', 'date', 'date'])) WITH ORDINALITY u(c, t, o);
	-- an infinite date in any date column of the contract the source has
	SELECT pg_catalog.string_agg(pg_catalog.format('NOT pg_catalog.isfinite(d.%I::date)', c), ' OR ')
		INTO dates
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'stage_entered_date', 'last_activity_date']) c
	WHERE "rows" AND c = ANY (has);
	-- (the cycles of closed deals and the ages of open ones: both dates)
	both_dates := "rows" AND 'created_date' = ANY (has) AND 'closed_date' = ANY (has);

	IF leaks THEN
		SELECT * INTO leak FROM dealrisk._feature_leak_sql(source, NULL, true);
		IF leak.query IS NOT NULL THEN
			lk := pg_catalog.format('SELECT pg_catalog.array_agg(l.feature ORDER BY l.k), pg_catalog.array_agg(l.reason ORDER BY l.k) FROM (%s) l',
			                        leak.query);
			IF NOT leak.sampled THEN
				-- the leak check reads the rows again: read them once
				x := pg_catalog.format('src AS MATERIALIZED (SELECT %s FROM %s AS d), ',
				                       (SELECT pg_catalog.string_agg(pg_catalog.format('d.%I', c), ', ') FROM pg_catalog.unnest(has) c),
				                       source::text);
				rel := 'src';
			END IF;
		END IF;
	END IF;

	-- per test (numbered as in data_quality()), its rows and smallest id
	SELECT pg_catalog.string_agg(pg_catalog.format('coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.f & %s <> 0), 0)::bigint', 1 << (i - 1)), ', ' ORDER BY i),
	       pg_catalog.string_agg(CASE WHEN i = 1 THEN 'NULL::text' ELSE pg_catalog.format('pg_catalog.min(g.ex) FILTER (WHERE g.f & %s <> 0)', 1 << (i - 1)) END, ', ' ORDER BY i)
		INTO counts, examples
	FROM pg_catalog.generate_series(1, 15) i;

	-- Every test below is written so that no value can make it raise.
	EXECUTE pg_catalog.format(
		$q$WITH %s g AS (
			SELECT t.cls, t.label, t.st, t.oc, t.f, pg_catalog.count(*) AS n,
			       pg_catalog.min(t.id) FILTER (WHERE t.f <> 0) AS ex,
			       pg_catalog.max(t.cr) FILTER (WHERE pg_catalog.isfinite(t.cr)) AS cr,
			       pg_catalog.max(t.cl) FILTER (WHERE pg_catalog.isfinite(t.cl)) AS cl,
			       pg_catalog.max(t.la) FILTER (WHERE pg_catalog.isfinite(t.la)) AS la,
			       pg_catalog.max(t.se) FILTER (WHERE pg_catalog.isfinite(t.se)) AS se,
			       pg_catalog.max(t.cl - t.cr) FILTER (WHERE %2$s AND t.cls IN ('won', 'lost') AND pg_catalog.isfinite(t.cr)
			                                             AND pg_catalog.isfinite(t.cl) AND t.cl >= t.cr) AS cyc
			FROM (SELECT c.id, c.cls, c.cr, c.cl, c.la, c.se, c.st,
			             CASE WHEN %3$s AND c.cls = 'unknown' THEN pg_catalog.btrim(c.outcome) END AS label,
			             CASE WHEN %2$s AND c.cls = 'open' AND pg_catalog.isfinite(c.cr) THEN c.cr END AS oc,
			             dealrisk._quality_flags(c.id, c.cr, c.cl, c.st, c.amount, c.cyc, c.cls, c.both_dates, c.inf_date, $2) AS f
			      FROM (SELECT x.*,
			                   pg_catalog.btrim(x.stage, E' \t\n\r\f\013') AS st,
			                   x.cr IS NOT NULL AND x.cl IS NOT NULL
			                     AND pg_catalog.isfinite(x.cr) AND pg_catalog.isfinite(x.cl) AS both_dates
			            FROM (SELECT %4$s AS id, %5$s AS cr, %6$s AS cl, %7$s AS stage, %8$s AS amount, %9$s AS cyc,
			                         %10$s AS la, %11$s AS se, d.outcome::text AS outcome,
			                         coalesce(dealrisk.outcome_class(d.outcome::text), 'open') AS cls,
			                         coalesce(%12$s, false) AS inf_date
			                  FROM %13$s AS d) x) c) t
			GROUP BY 1, 2, 3, 4, 5
		), a AS (
			SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint AS total,
			       coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.cls = 'won'), 0)::bigint AS won,
			       coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.cls = 'lost'), 0)::bigint AS lost,
			       coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.cls = 'open'), 0)::bigint AS open,
			       greatest(pg_catalog.max(g.cr), pg_catalog.max(g.cl), pg_catalog.max(g.la), pg_catalog.max(g.se)) AS newest,
			       pg_catalog.max(g.cr) AS newest_created, pg_catalog.max(g.cyc) AS max_cycle, pg_catalog.min(g.oc) AS oldest_open,
			       coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.oc IS NOT NULL), 0)::bigint AS open_dated,
			       ARRAY[%14$s] AS dq_n, ARRAY[%15$s] AS dq_ex
			FROM g
		)
		SELECT a.total, a.won, a.lost, a.open, a.newest, a.newest_created, a.max_cycle, a.oldest_open, a.open_dated,
		       (SELECT coalesce(pg_catalog.sum(g.n), 0)::bigint FROM g WHERE $1 - g.oc > a.max_cycle),
		       l.labels, l.label_n, s.stages, s.stage_n, s.stage_won, s.stage_lost, a.dq_n, a.dq_ex, k.feature, k.reason
		FROM a,
		LATERAL (SELECT pg_catalog.array_agg(y.label ORDER BY y.n DESC, y.label), pg_catalog.array_agg(y.n ORDER BY y.n DESC, y.label)
		         FROM (SELECT g.label, pg_catalog.sum(g.n)::bigint AS n FROM g WHERE g.label IS NOT NULL GROUP BY 1) y) l(labels, label_n),
		LATERAL (SELECT pg_catalog.array_agg(y.st ORDER BY y.st), pg_catalog.array_agg(y.n ORDER BY y.st),
		                pg_catalog.array_agg(y.won ORDER BY y.st), pg_catalog.array_agg(y.lost ORDER BY y.st)
		         FROM (SELECT g.st, pg_catalog.sum(g.n)::bigint AS n,
		                      coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.cls = 'won'), 0)::bigint AS won,
		                      coalesce(pg_catalog.sum(g.n) FILTER (WHERE g.cls = 'lost'), 0)::bigint AS lost
		               FROM g GROUP BY 1) y) s(stages, stage_n, stage_won, stage_lost),
		LATERAL (%16$s) k(feature, reason)$q$,
		x, both_dates::text, "rows"::text, e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8], coalesce(dates, 'false'), rel,
		counts, examples, lk)
		INTO n_total, n_won, n_lost, n_open, newest, newest_created, max_cycle, oldest_open, n_open_dated, n_older,
		     labels, label_n, stages, stage_n, stage_won, stage_lost, dq_n, dq_ex, leak_feature, leak_reason
		USING as_of, (SELECT coalesce(pg_catalog.array_agg(dealrisk._stage_key(s.stage)), '{}') FROM dealrisk.stages s);
END
$fn$;
COMMENT ON FUNCTION dealrisk._source_profile(regclass, boolean, date, boolean) IS
	'What the row-level checks of a source need, in one read of it: deals by outcome class, newest dates, the longest closed cycle and the open deals older than it on as_of, unknown labels, deals per stage, the failing rows of each data_quality() test and, with leaks, the outcome-leak findings (internal)';

CREATE FUNCTION dealrisk._stage_semantics_of(stages text[], won bigint[], lost bigint[])
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
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
	WITH g AS (
		SELECT dealrisk._stage_key(u.st) AS st, u.won, u.lost
		FROM ROWS FROM (pg_catalog.unnest(stages), pg_catalog.unnest(won), pg_catalog.unnest(lost)) AS u(st, won, lost)
	), w AS (
		SELECT s.stage, s."position", coalesce(pg_catalog.sum(g.won), 0)::bigint AS n
		FROM dealrisk.stages s
		LEFT JOIN g ON g.st OPERATOR(pg_catalog.=) dealrisk._stage_key(s.stage)
		GROUP BY s.stage, s."position"
	)
	SELECT (SELECT pg_catalog.sum(w.n)::bigint FROM w),
	       (SELECT w.stage FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
	       (SELECT w.n FROM w WHERE w.n > 0 ORDER BY w."position" DESC LIMIT 1),
	       (SELECT w.stage FROM w ORDER BY w."position" LIMIT 1),
	       (SELECT w.n FROM w ORDER BY w."position" LIMIT 1),
	       (SELECT pg_catalog.count(*)::int FROM w),
	       (SELECT pg_catalog.count(*)::int FROM w WHERE w.n > 0),
	       (SELECT coalesce(pg_catalog.sum(g.won + g.lost), 0)::bigint FROM g),
	       (SELECT coalesce(pg_catalog.sum(g.won + g.lost), 0)::bigint FROM g WHERE g.st <> '')
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
COMMENT ON FUNCTION dealrisk._stage_semantics_of(text[], bigint[], bigint[]) IS
	'NULL when the won deals per stage value say deal_stage is the stage each closed deal reached, else why not (internal)';

CREATE FUNCTION dealrisk._quality_rows(source regclass, n bigint[], ex text[])
RETURNS TABLE(check_name text, description text, "rows" bigint, example_deal_id text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED ROWS 15
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	absent		text[];
	skipped		int[] := '{}';
	dup_rows	bigint;
	dup_example text;
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	SELECT coalesce(pg_catalog.array_agg(c), '{}') INTO absent
	FROM pg_catalog.unnest(ARRAY['created_date', 'closed_date', 'deal_stage', 'deal_amount', 'sales_cycle_days']) c
	WHERE NOT dealrisk._has_column(source, c);
	-- the checks (numbered as in the list at the end) each absent column
	-- rules out
	IF 'created_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 12, 14]; END IF;
	IF 'closed_date' = ANY (absent) THEN skipped := skipped || ARRAY[3, 4, 5, 12]; END IF;
	IF 'deal_stage' = ANY (absent) THEN skipped := skipped || ARRAY[10, 11]; END IF;
	IF 'deal_amount' = ANY (absent) THEN skipped := skipped || ARRAY[6, 7, 8]; END IF;
	IF 'sales_cycle_days' = ANY (absent) THEN skipped := skipped || ARRAY[12, 13]; END IF;
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
COMMENT ON FUNCTION dealrisk._quality_rows(regclass, bigint[], text[]) IS
	'The rows of data_quality() from the per-test counts of _source_profile, with the duplicate deal ids counted unless a unique index on deal_id rules them out (internal)';

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

CREATE OR REPLACE FUNCTION dealrisk._stage_semantics(source regclass)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p			record;
BEGIN
	IF NOT dealrisk._has_column(source, 'deal_stage') OR NOT dealrisk._has_column(source, 'outcome') THEN
		RETURN NULL;
	END IF;
	-- callable by anyone, so it checks what it reads like every reader
	PERFORM dealrisk._check_source(source, ARRAY['deal_stage', 'outcome']);
	SELECT * INTO p FROM dealrisk._source_profile(source, false, NULL, false);
	RETURN dealrisk._stage_semantics_of(p.stages, p.stage_won, p.stage_lost);
END
$fn$;
COMMENT ON FUNCTION dealrisk._stage_semantics(regclass) IS
	'NULL when deal_stage can be read as the stage each closed deal reached (the funnel''s assumption), else why not: too many won deals sit at early stages (internal)';

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
	status_labels text;
	status_in	text;
	semantics	text;
	min_n		int;
	as_of_set	text;
	as_of		date;
	dq			record;
	p			record;
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

	-- Every row-level check below reads what one pass over the source
	-- counted (_source_profile; the outcome leaks in the same statement).
	as_of_set := NULLIF(pg_catalog.current_setting('dealrisk.as_of_date', true), '');
	as_of := coalesce(as_of_set::date, CURRENT_DATE);
	SELECT * INTO p FROM dealrisk._source_profile(source, true, as_of, true);
	n_total := p.n_total; n_won := p.n_won; n_lost := p.n_lost; n_open := p.n_open;
	newest := p.newest; newest_created := p.newest_created; max_cycle := p.max_cycle;
	oldest_open := p.oldest_open; n_open_dated := p.n_open_dated; n_older := p.n_older;

	-- Outcomes: counts, and unknown labels by what they look like.
	FOR unknown IN
		SELECT dealrisk._label_guess(u.label) AS guess,
		       pg_catalog.array_agg(u.label ORDER BY u.o) AS labels,
		       pg_catalog.string_agg(pg_catalog.format('%L (%s)', u.label, dealrisk._num(u.n)), ', ' ORDER BY u.o) AS listed,
		       pg_catalog.sum(u.n)::bigint AS n, pg_catalog.count(*) AS k
		FROM ROWS FROM (pg_catalog.unnest(p.labels), pg_catalog.unnest(p.label_n)) WITH ORDINALITY AS u(label, n, o)
		GROUP BY 1
		ORDER BY pg_catalog.array_position(ARRAY['open', 'won', 'lost', 'unknown'], dealrisk._label_guess(u.label))
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
		SELECT pg_catalog.string_agg(pg_catalog.format('(%L, %s, false)', x.st, x.base + x.k), ', ' ORDER BY x.k)
		           FILTER (WHERE NOT x.is_outcome),
		       pg_catalog.string_agg(pg_catalog.format('%L (%s)', x.st, dealrisk._num(x.n)), ', ' ORDER BY x.n DESC, x.o)
		           FILTER (WHERE x.is_outcome),
		       pg_catalog.string_agg(pg_catalog.quote_literal(x.st), ', ' ORDER BY x.n DESC, x.o)
		           FILTER (WHERE x.is_outcome)
			INTO stage_fix, status_labels, status_in
		FROM (SELECT y.st, y.n, y.o, y.is_outcome,
		             pg_catalog.row_number() OVER (PARTITION BY y.is_outcome ORDER BY y.o) AS k,
		             coalesce((SELECT pg_catalog.max(s."position") FROM dealrisk.stages s), 0) AS base
		      FROM (SELECT u.st, u.n, u.o, dealrisk.outcome_class(u.st) IN ('won', 'lost') AS is_outcome
		            FROM ROWS FROM (pg_catalog.unnest(p.stages), pg_catalog.unnest(p.stage_n)) WITH ORDINALITY AS u(st, n, o)
		            WHERE u.st <> ''
		              AND NOT EXISTS (SELECT 1 FROM dealrisk.stages s
		                              WHERE dealrisk._stage_key(s.stage) OPERATOR(pg_catalog.=) dealrisk._stage_key(u.st))) y) x;
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
		-- (the rows of a point-in-time source hold each deal's stage on a
		-- day it was open, dealrisk_as_of: not the stage it closed at)
		IF NOT dealrisk._has_column(source, 'dealrisk_as_of') THEN
			semantics := dealrisk._stage_semantics_of(p.stages, p.stage_won, p.stage_lost);
		END IF;
		IF semantics IS NOT NULL THEN
			c_check := c_check || 'stage_semantics'::text; c_sev := c_sev || 'warning'::text;
			c_find := c_find || semantics;
			c_hint := c_hint || dealrisk._stage_semantics_hint();
		END IF;
	END IF;

	-- Columns that record the outcome instead of predicting it.
	FOR r IN SELECT u.feature, u.reason FROM ROWS FROM (pg_catalog.unnest(p.leak_feature), pg_catalog.unnest(p.leak_reason)) WITH ORDINALITY AS u(feature, reason, o)
	         ORDER BY u.o LOOP
		c_check := c_check || 'outcome_leaks'::text; c_sev := c_sev || 'warning'::text;
		c_find := c_find || pg_catalog.format('column %s leaks the outcome: %s', r.feature, r.reason);
		c_hint := c_hint || 'Map only what is known while a deal is open (docs/data-contract.md); train() leaves such a column out.'::text;
	END LOOP;

	-- Dates: the day open deals are scored at, against the data.
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
		-- (n_older: counted in the pass, as of as_of)
		IF max_cycle IS NOT NULL AND n_open_dated > 0 AND as_of - oldest_open > max_cycle THEN
			IF n_older > 0 THEN
				c_check := c_check || 'stale_open_deals'::text; c_sev := c_sev || 'warning'::text;
				c_find := c_find || pg_catalog.format('%s of %s open deals are older on %s than every closed deal was when it closed (longest cycle %s days; the oldest open deal was created on %s): they may be dead deals never closed in the CRM',
					dealrisk._num(n_older), dealrisk._num(n_open_dated), as_of, dealrisk._num(max_cycle::bigint), oldest_open);
				c_hint := c_hint || 'Close or remove them in the CRM, or leave them out of the source; if the data is an older export, set dealrisk.as_of_date to its date.'::text;
			END IF;
		END IF;
	END IF;

	-- Row-level problems, from data_quality()'s tests (the checks it can run
	-- on the columns the source has).
	FOR dq IN SELECT * FROM dealrisk._quality_rows(source, p.dq_n, p.dq_ex) q
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

CREATE OR REPLACE FUNCTION dealrisk.data_quality(source regclass)
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

CREATE OR REPLACE FUNCTION dealrisk._feature_leaks(source regclass, features text[] DEFAULT NULL)
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

