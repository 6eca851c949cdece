-- pgTAP: a role with CREATE on public plants functions and operators that
-- shadow the built-ins dealrisk uses, then a superuser runs the daily loop,
-- training and the reports.  None of the planted objects may run: dealrisk's
-- SQL and PL/pgSQL functions pin search_path, SQL-standard bodies are bound
-- when the extension is created, and the C code qualifies its SPI queries.
-- The trap is checked to work (a positive control) before it is trusted.
\ir harness/pgtap_setup.psql
SELECT plan(17);

-- Every SQL or PL/pgSQL function pins search_path, or has a SQL-standard
-- body (bound at CREATE EXTENSION).
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
	FROM pg_catalog.pg_proc p
	WHERE p.pronamespace = 'dealrisk'::regnamespace
	  AND p.prolang IN (SELECT l.oid FROM pg_catalog.pg_language l WHERE l.lanname IN ('sql', 'plpgsql'))
	  AND NOT (coalesce(p.proconfig, '{}') @> ARRAY['search_path=pg_catalog, pg_temp']
	           OR p.prosqlbody IS NOT NULL)),
	NULL, 'every SQL and PL/pgSQL function pins search_path or is bound at creation');
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_catalog.pg_proc p
	WHERE p.pronamespace = 'dealrisk'::regnamespace AND p.prosecdef), NULL, 'no function is SECURITY DEFINER');

-- The data: a table, a model, a watched view, a tracked table.
SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(2000, 11);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SELECT dealrisk.train('public.deals') AS model_id \gset
SELECT dealrisk.watch('public.deals', 50) IS NOT NULL AS watched \gset
SELECT dealrisk.track('public.deals');

-- The hostile role and its traps.  Each planted object notes its call in
-- public.trojan_calls and, when a superuser runs it, makes the role a
-- superuser.
CREATE ROLE dealrisk_t_hostile NOLOGIN;
GRANT CREATE ON SCHEMA public TO dealrisk_t_hostile;
CREATE TABLE public.trojan_calls (what text, by_user name);
GRANT INSERT ON public.trojan_calls TO PUBLIC;
SET LOCAL ROLE dealrisk_t_hostile;
CREATE FUNCTION public.trojan_note(what text) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO public.trojan_calls VALUES (what, CURRENT_USER);
	IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		EXECUTE 'ALTER ROLE dealrisk_t_hostile SUPERUSER';
	END IF;
END
$$;
-- the reproduction of issue #8: oid = regclass
CREATE FUNCTION public.pwn(oid, regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM public.trojan_note('=(oid,regclass)');
	RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;
END
$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.pwn);
-- operators for the types dealrisk compares, and functions it calls
DO $$
DECLARE
	o record;
	n int := 0;
BEGIN
	FOR o IN
		SELECT op, l, r, res
		FROM (VALUES ('='), ('<>'), ('<'), ('>'), ('<='), ('>=')) ops(op),
		     (VALUES ('text', 'text'), ('oid', 'oid'), ('name', 'text'), ('name', 'name'), ('bigint', 'bigint'),
		             ('integer', 'integer'), ('bigint', 'integer'), ('integer', 'bigint'),
		             ('double precision', 'double precision'), ('numeric', 'numeric'), ('date', 'date'),
		             ('boolean', 'boolean'), ('timestamp with time zone', 'timestamp with time zone'),
		             ('jsonb', 'jsonb'), ('"char"', '"char"')) t(l, r),
		     (VALUES ('boolean')) x(res)
		UNION ALL
		SELECT * FROM (VALUES ('||', 'text', 'text', 'text'), ('-', 'date', 'date', 'integer'),
		                      ('+', 'date', 'integer', 'date'), ('-', 'date', 'integer', 'date'),
		                      ('+', 'double precision', 'double precision', 'double precision'),
		                      ('*', 'double precision', 'double precision', 'double precision'),
		                      ('/', 'double precision', 'double precision', 'double precision'),
		                      ('->>', 'jsonb', 'text', 'text'), ('->', 'jsonb', 'text', 'jsonb'),
		                      ('->', 'jsonb', 'integer', 'jsonb'), ('~~', 'text', 'text', 'boolean'),
		                      ('~', 'text', 'text', 'boolean'), ('@>', 'jsonb', 'jsonb', 'boolean')) v
	LOOP
		n := n + 1;
		EXECUTE format('CREATE FUNCTION public.trojan_op_%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql VOLATILE AS %L',
			n, o.l, o.r, o.res,
			format('BEGIN PERFORM public.trojan_note(%L); RETURN a OPERATOR(pg_catalog.%s) b; END',
			       format('%s(%s,%s)', o.op, o.l, o.r), o.op));
		EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.trojan_op_%s)',
			o.op, o.l, o.r, n);
	END LOOP;
	FOR o IN
		SELECT * FROM (VALUES ('lower', 'text', 'text'), ('upper', 'text', 'text'), ('btrim', 'text', 'text'),
		                      ('length', 'text', 'integer'), ('abs', 'integer', 'integer'), ('abs', 'bigint', 'bigint'),
		                      ('abs', 'double precision', 'double precision'), ('round', 'numeric', 'numeric'),
		                      ('hashtext', 'text', 'integer'), ('isfinite', 'date', 'boolean'),
		                      ('quote_ident', 'text', 'text'), ('quote_literal', 'text', 'text'),
		                      ('current_setting', 'text', 'text'), ('ln', 'double precision', 'double precision'),
		                      ('sqrt', 'double precision', 'double precision'), ('exp', 'double precision', 'double precision'),
		                      ('jsonb_typeof', 'jsonb', 'text'), ('jsonb_array_length', 'jsonb', 'integer'),
		                      ('cardinality', 'anyarray', 'integer'), ('to_regclass', 'text', 'regclass')) f(fn, arg, res)
	LOOP
		n := n + 1;
		EXECUTE format('CREATE FUNCTION public.%I(a %s) RETURNS %s LANGUAGE plpgsql VOLATILE AS %L',
			o.fn, o.arg, o.res,
			format('BEGIN PERFORM public.trojan_note(%L); RETURN pg_catalog.%I(a); END', o.fn || '(' || o.arg || ')', o.fn));
	END LOOP;
	EXECUTE format('CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''now()''); RETURN pg_catalog.now(); END');
	EXECUTE format('CREATE FUNCTION public.current_setting(a text, b boolean) RETURNS text LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''current_setting(text,boolean)''); RETURN pg_catalog.current_setting(a, b); END');
	-- aggregates: count(*) and count(x), sum, max
	EXECUTE format('CREATE FUNCTION public.trojan_count(s bigint) RETURNS bigint LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''count''); RETURN s OPERATOR(pg_catalog.+) 1; END');
	EXECUTE 'CREATE AGGREGATE public.count(*) (SFUNC = public.trojan_count, STYPE = bigint, INITCOND = ''0'')';
	EXECUTE format('CREATE FUNCTION public.trojan_count_any(s bigint, x anyelement) RETURNS bigint LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''count(any)''); RETURN s OPERATOR(pg_catalog.+) 1; END');
	EXECUTE 'CREATE AGGREGATE public.count(anyelement) (SFUNC = public.trojan_count_any, STYPE = bigint, INITCOND = ''0'')';
	EXECUTE format('CREATE FUNCTION public.trojan_sum(s double precision, x double precision) RETURNS double precision LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''sum''); RETURN s OPERATOR(pg_catalog.+) x; END');
	EXECUTE 'CREATE AGGREGATE public.sum(double precision) (SFUNC = public.trojan_sum, STYPE = double precision)';
	EXECUTE format('CREATE FUNCTION public.trojan_max(s date, x date) RETURNS date LANGUAGE plpgsql VOLATILE AS %L',
		'BEGIN PERFORM public.trojan_note(''max''); RETURN greatest(s, x); END');
	EXECUTE 'CREATE AGGREGATE public.max(date) (SFUNC = public.trojan_max, STYPE = date)';
END
$$;
RESET ROLE;
SELECT cmp_ok((SELECT count(*) FROM pg_catalog.pg_operator o WHERE o.oprnamespace = 'public'::regnamespace), '>', 100::bigint,
	'the hostile role planted over a hundred operators');

-- Positive control: the traps fire for code that does not pin search_path.
SET LOCAL search_path = public, pg_catalog;
SELECT lower('X') AS control_lower, count(*) AS control_count FROM (VALUES (1)) v(x) \gset
RESET search_path;
SELECT ok((SELECT pg_catalog.count(*) FROM public.trojan_calls) >= 2, 'positive control: the traps fire for unpinned SQL');
SELECT ok((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = 'dealrisk_t_hostile'),
	'positive control: a superuser running a trap makes the hostile role superuser');
ALTER ROLE dealrisk_t_hostile NOSUPERUSER;
TRUNCATE public.trojan_calls;

-- 1. The reproduction of the issue, under the default search_path: a
-- superuser refreshes (as pg_cron would).
SELECT dealrisk.refresh() IS NOT NULL AS refreshed \gset
SELECT coalesce(string_agg(DISTINCT what, ', '), 'none') AS calls1 FROM public.trojan_calls \gset
SELECT ok(:'refreshed', 'refresh() under the default search_path');
SELECT is(:'calls1'::text, 'none', '... runs no planted object');
SELECT ok(NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = 'dealrisk_t_hostile'),
	'... and the hostile role is no superuser');

-- 2. The worst case: a search_path that puts public before pg_catalog, so
-- a planted object wins even over an exact built-in match.  Results are
-- kept in temporary tables and checked after the search_path is reset
-- (pgTAP itself does not pin its search_path).
SET LOCAL search_path = public, pg_catalog;
-- a new active model and touched configuration: every cache of the C code
-- is loaded again under this search_path
CREATE TEMP TABLE r_train AS SELECT dealrisk.train('public.deals', l2 => 2) AS id;
UPDATE dealrisk.stages SET is_late = is_late;
UPDATE dealrisk.action_rules SET priority = priority;
-- the C functions called straight from this search_path come first (called
-- from dealrisk's SQL functions, they would run under the pinned one)
CREATE TEMP TABLE r_scores AS SELECT dealrisk.deal_risk(d) AS risk, dealrisk.recommended_action(d) AS action,
	(SELECT e.reason FROM dealrisk.deal_risk_explain(d) e LIMIT 1) AS reason
	FROM public.deals d WHERE d.outcome IS NULL;
CREATE TEMP TABLE r_watch AS SELECT dealrisk.watch('public.deals', 40) AS n;
CREATE TEMP TABLE r_refresh AS SELECT dealrisk.refresh() AS n;
CREATE TEMP TABLE r_diagnose AS SELECT dealrisk.diagnose('public.deals') AS report;
CREATE TEMP TABLE r_digest AS SELECT * FROM dealrisk.digest();
CREATE TEMP TABLE r_other AS SELECT (dealrisk.evaluate(:model_id, 'public.deals')).auc,
	(SELECT pg_catalog.count(*) FROM dealrisk.lost_lookalikes('public.deals')) AS lookalikes,
	(SELECT pg_catalog.count(*) FROM dealrisk.claim_alerts(5)) AS claimed,
	dealrisk.import_model(dealrisk.export_model(:model_id), 'hostile_copy') AS imported;
-- the BI views, the forecast and the report (issue #12)
CREATE TEMP TABLE r_bi AS SELECT (SELECT pg_catalog.count(*) FROM dealrisk.set_source('public.deals')) AS sections,
	(SELECT f.expected_won_value FROM dealrisk.forecast('public.deals', 'region') f WHERE f.is_total) AS forecast,
	pg_catalog.length(dealrisk.report('public.deals')) AS report;
-- the track() trigger, fired by a write (its errors would be warnings)
UPDATE public.deals SET deal_amount = deal_amount OPERATOR(pg_catalog.+) 1
	WHERE deal_id OPERATOR(pg_catalog.=) (SELECT pg_catalog.min(x.deal_id) FROM public.deals x WHERE x.outcome IS NULL);
RESET search_path;
SELECT coalesce(string_agg(DISTINCT what, ', ' ORDER BY what), 'none') AS calls2 FROM public.trojan_calls \gset

SELECT ok((SELECT id FROM r_train) IS NOT NULL, 'train() under a hostile search_path');
SELECT ok((SELECT n FROM r_watch) IS NOT NULL AND (SELECT n FROM r_refresh) > 0, 'watch() and refresh()');
SELECT ok((SELECT report FROM r_diagnose) LIKE 'Win-rate diagnosis of public.deals:%', 'diagnose()');
SELECT ok((SELECT pg_catalog.count(*) FROM r_digest) > 0, 'digest()');
SELECT ok((SELECT pg_catalog.bool_and(risk BETWEEN 0 AND 100 AND action IS NOT NULL AND reason IS NOT NULL) FROM r_scores),
	'scoring, explanation and actions');
SELECT ok((SELECT auc > 0.5 AND imported IS NOT NULL FROM r_other), 'evaluate, lookalikes, alerts, export and import');
SELECT ok((SELECT sections = 10 AND forecast > 0 AND report > 1000 FROM r_bi), 'set_source(), forecast() and report()');
SELECT is(:'calls2'::text, 'none', 'none of it ran a planted function or operator');
SELECT ok(NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = 'dealrisk_t_hostile'),
	'the hostile role is still no superuser');

SELECT * FROM finish();
ROLLBACK;
