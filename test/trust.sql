-- pgTAP: code that another role controls must not run with the caller's
-- privileges when dealrisk reads what that role owns (the security review
-- of issue #8).  test/hostile.sql covers objects planted in public; this
-- file covers the deal source and the watched view themselves:
--   R1 a column of a type the source's owner created (its casts run as the reader)
--   R2 a view of another role as the source (its functions run as the reader)
--   R3 a row-level security policy of another role (runs as the reader)
--   R4 functions created in schema dealrisk (an overload beats the extension's)
--   R5 a plain view put in place of dealrisk_watch.high_risk_deals
--   R6 an operator who points the watch configuration at its own view
--   R8 a hand-made call of _deal_risk_row with a row type OID that names nothing
-- Every planted function calls nextval() on public.rv_seq, which no rollback
-- undoes: its value says whether any planted code ran, even in a statement
-- that then failed.
\ir harness/pgtap_setup.psql
SELECT plan(40);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
SET LOCAL client_min_messages = error;

-- 'ok', or the SQLSTATE and message of the error a statement raises.
CREATE FUNCTION pg_temp.try(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- The same as another role.
CREATE FUNCTION pg_temp.try_as(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	res text;
BEGIN
	EXECUTE format('SET LOCAL ROLE %I', r);
	res := pg_temp.try(q);
	RESET ROLE;
	RETURN res;
END
$$;

CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(2000, 11);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SELECT dealrisk.train('public.deals') AS model_id \gset

-- the planted code's counter
CREATE SEQUENCE public.rv_seq;
GRANT USAGE ON SEQUENCE public.rv_seq TO PUBLIC;
CREATE FUNCTION pg_temp.ran() RETURNS bigint LANGUAGE sql AS
	$$ SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.rv_seq $$;

-- A role with CREATE on public and its sources.
CREATE ROLE trust_t_mallory NOLOGIN;
GRANT CREATE ON SCHEMA public TO trust_t_mallory;
GRANT USAGE ON SCHEMA dealrisk TO trust_t_mallory;
GRANT SELECT ON public.deals TO trust_t_mallory;
SET LOCAL ROLE trust_t_mallory;
CREATE FUNCTION public.rv_note() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
	PERFORM pg_catalog.nextval('public.rv_seq');
	RETURN true;
END $f$;
-- R1: deal_id of a type of hers, with a cast to text
CREATE TYPE public.rv_id AS (v text);
CREATE FUNCTION public.rv_id_text(public.rv_id) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
BEGIN PERFORM public.rv_note(); RETURN ($1).v; END $f$;
CREATE CAST (public.rv_id AS text) WITH FUNCTION public.rv_id_text(public.rv_id);
CREATE TABLE public.m_typed AS
	SELECT ROW(d.deal_id)::public.rv_id AS deal_id, d.created_date, d.closed_date, d.sales_rep_id, d.industry,
	       d.region, d.product_type, d.lead_source, d.deal_stage, d.deal_amount, d.sales_cycle_days, d.outcome
	FROM public.deals d;
-- R2: a view that calls a function
CREATE VIEW public.m_view AS SELECT d.* FROM public.deals d WHERE public.rv_note();
-- R3: a table with a row-level security policy that calls a function
CREATE TABLE public.m_rls AS SELECT * FROM public.deals;
ALTER TABLE public.m_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY m_rls_all ON public.m_rls USING (public.rv_note());
-- and a plain table of hers: reading it runs nothing of hers
CREATE TABLE public.m_plain AS SELECT * FROM public.deals;
RESET ROLE;
SELECT is(pg_temp.ran(), 0::bigint, 'nothing planted has run yet');

-- F1: another role's relation, whatever it is --------------------------------
-- (the planner runs immutable functions of a table's index and statistics
-- expressions and of its children's constraints in the reader's session)
SET LOCAL ROLE trust_t_mallory;
CREATE FUNCTION public.rv_imm() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $f$
BEGIN PERFORM public.rv_note(); RETURN 1; END $f$;
CREATE INDEX ON public.m_plain ((deal_id || public.rv_imm()::text));
CREATE TABLE public.m_child (CHECK (public.rv_imm() = 1)) INHERITS (public.m_plain);
RESET ROLE;
SELECT is(pg_temp.try($$SELECT dealrisk.diagnose('public.m_plain')$$),
	'42501: relation public.m_plain, read for source "m_plain", belongs to role "trust_t_mallory", whose code would run with the privileges of role "postgres"',
	'F1 a superuser''s diagnose() refuses a table of another role (an index expression of hers would run)');
SELECT alike(pg_temp.try($$SELECT dealrisk.watch('public.m_plain', 50)$$), '42501:%', '... and so does watch()');
SELECT alike(pg_temp.try($$SELECT dealrisk.train('public.m_plain')$$), '42501:%', '... and train()');
SELECT alike(pg_temp.try($$SELECT dealrisk.diagnose('public.m_typed')$$), '42501:%', '... whatever its columns');
SELECT is(pg_temp.try($$SELECT dealrisk.diagnose('public.m_view')$$),
	'42501: relation public.m_view, read for source "m_view", belongs to role "trust_t_mallory", whose code would run with the privileges of role "postgres"',
	'R2 ... or a view of hers');
SELECT is(pg_temp.try_as('trust_t_mallory', $$SELECT * FROM dealrisk.win_rate_trend('public.m_view')$$), 'ok',
	'her own call reads her view');
SELECT ok(pg_temp.ran() > 0, '... and ran her function (the counter moved): the counter works');
SELECT setval('public.rv_seq', 1, false) IS NOT NULL AS reset1 \gset
-- a superuser's view over her table, and one calling her function
CREATE VIEW public.su_over_m WITH (security_invoker) AS SELECT * FROM public.m_rls;
CREATE VIEW public.su_calls_m AS SELECT d.* FROM public.deals d WHERE public.rv_note();
SELECT alike(pg_temp.try($$SELECT dealrisk.diagnose('public.su_over_m')$$),
	'42501: relation public.m_rls, read for source "su_over_m", belongs to role "trust_t_mallory"%',
	'F3 a trusted view over her table is refused for what it reads');
SELECT alike(pg_temp.try($$SELECT dealrisk.diagnose('public.su_calls_m')$$),
	'42501: function public.rv_note(), read for source "su_calls_m", belongs to role "trust_t_mallory"%',
	'... and a trusted view calling her function for that function');
-- a superuser trusts her explicitly
SET LOCAL dealrisk.trusted_owners = 'trust_t_mallory';
SELECT alike(pg_temp.try($$SELECT dealrisk.diagnose('public.deals')$$), 'ok', 'dealrisk.trusted_owners ...');
SELECT alike(pg_temp.try($$SELECT count(*) FROM dealrisk.win_rate_trend('public.m_plain')$$), 'ok',
	'... lets a superuser read her table');
RESET dealrisk.trusted_owners;
SELECT setval('public.rv_seq', 1, false) IS NOT NULL AS reset2 \gset
SELECT alike(pg_temp.try_as('trust_t_mallory', $$SET dealrisk.trusted_owners = 'trust_t_mallory'$$), '42501:%',
	'... and only a superuser may set it');

-- R1: a column of her type in a table a trusted role owns ---------------------
CREATE TABLE public.su_typed AS SELECT ROW(d.deal_id)::public.rv_id AS deal_id, d.created_date, d.closed_date,
	d.sales_rep_id, d.outcome FROM public.deals d;
SELECT is(pg_temp.try($$SELECT * FROM dealrisk.win_rate_trend('public.su_typed')$$),
	'42804: column "deal_id" of "public.su_typed" has type public.rv_id, which belongs to role "trust_t_mallory"',
	'R1 a column of a type of hers is refused (its casts are her code)');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.win_rate_drivers('public.deals', 'region')$$), 'ok',
	'a dimension column of a built-in type is fine');
CREATE TABLE public.odd_dim AS SELECT d.*, ROW(d.region)::public.rv_id AS odd FROM public.deals d;
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.win_rate_drivers('public.odd_dim', 'odd')$$), '42804:%column "odd"%',
	'... and one of her type is refused');
SELECT is(pg_temp.ran(), 0::bigint, 'F1, R1, R2, F3: none of her code ran as the superuser');
-- a type of one's own passes the checks, and train() says what the model reads
CREATE TYPE public.my_outcome AS ENUM ('Won', 'Lost');
CREATE TABLE public.enum_deals AS SELECT d.deal_id, d.created_date, d.closed_date, d.sales_rep_id, d.industry,
	d.deal_amount, d.outcome::public.my_outcome AS outcome FROM public.deals d;
SELECT alike(pg_temp.try($$SELECT count(*) FROM dealrisk.win_rate_trend('public.enum_deals')$$), 'ok',
	'an enum of one''s own is read by the diagnostics');
SELECT is(pg_temp.try($$SELECT dealrisk.train('public.enum_deals')$$),
	'42804: column "outcome" of source public.enum_deals has type public.my_outcome, which the model cannot read',
	'... and train() says the model reads text');

-- F2: the check locks what it checked, so it cannot be swapped before the read
SELECT dealrisk._check_relation_trust('public.deals') IS NULL AS locked \gset
SELECT ok(EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.granted
	AND l.relation = 'public.deals'::regclass AND l.mode = 'AccessShareLock'),
	'F2 the trust check holds a lock on the source until the transaction ends');

-- an operator (docs/security.md)
SELECT dealrisk.watch('public.deals', 50) IS NOT NULL AS w0 \gset
CREATE ROLE trust_t_op NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO trust_t_op;
GRANT USAGE, CREATE ON SCHEMA dealrisk_watch TO trust_t_op;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk TO trust_t_op;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dealrisk TO trust_t_op;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dealrisk TO trust_t_op;
GRANT SELECT ON public.deals, public.m_rls TO trust_t_op;
GRANT EXECUTE ON FUNCTION public.rv_note() TO trust_t_op;
SELECT alike(pg_temp.try_as('trust_t_op', $$SELECT dealrisk.watch('public.m_rls', 50)$$),
	'42501: relation public.m_rls, read for source "m_rls", belongs to role "trust_t_mallory"%',
	'R3 the operator''s watch() refuses her table (and its policies)');
ALTER MATERIALIZED VIEW dealrisk_watch.high_risk_deals OWNER TO trust_t_op;
SELECT is(pg_temp.try_as('trust_t_op', $$SELECT dealrisk.watch('public.deals', 50)$$), 'ok', 'the operator watches public.deals');
SELECT alike(pg_temp.try($$SELECT dealrisk.watch('public.deals', 50)$$),
	'42501: relation dealrisk_watch.high_risk_deals, read for source "high_risk_deals", belongs to role "trust_t_op"%',
	'a superuser''s watch() does not read the operator''s view (its indexes would be the operator''s code)');
SELECT alike(pg_temp.try($$SELECT count(*) FROM dealrisk.digest()$$), 'ok', '... while digest() does not read it at all');

-- R5 -----------------------------------------------------------------------
SET LOCAL ROLE trust_t_op;
DROP MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
CREATE VIEW dealrisk_watch.high_risk_deals AS
	SELECT d.deal_id, 99::float8 AS risk, 'high'::text AS band, NULL::text AS top_reason,
	       NULL::text AS recommended_action, d.deal_amount, d.sales_rep_id, d.deal_stage,
	       0 AS days_in_stage, pg_catalog.now() AS scored_at
	FROM public.deals d WHERE public.rv_note();
RESET ROLE;
SELECT alike(pg_temp.try($$SELECT count(*) FROM dealrisk.digest()$$), 'ok',
	'R5 digest() does not read a plain view put in place of the watched view');
SELECT is(pg_temp.try($$SELECT dealrisk.refresh()$$),
	'42809: dealrisk_watch.high_risk_deals is not the materialized view dealrisk.watch() creates',
	'... and refresh() refuses it');
DROP VIEW dealrisk_watch.high_risk_deals;
SELECT is(pg_temp.try_as('trust_t_op', $$SELECT dealrisk.watch('public.deals', 50)$$), 'ok', 'the operator watches again');

-- R6 -----------------------------------------------------------------------
SET LOCAL ROLE trust_t_op;
CREATE VIEW dealrisk_watch.op_deals AS SELECT d.* FROM public.deals d WHERE public.rv_note();
UPDATE dealrisk.watch_config SET source = 'dealrisk_watch.op_deals'::regclass;
RESET ROLE;
SELECT alike(pg_temp.try($$SELECT dealrisk.refresh()$$),
	'42501: relation dealrisk_watch.op_deals, read for source "op_deals", belongs to role "trust_t_op"%',
	'R6 a superuser''s refresh() refuses a source the operator pointed the configuration at');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.digest()$$), '42501:%', '... and so does digest()');
SELECT is(pg_temp.ran(), 0::bigint, 'R2, R3, R5, R6 none of the planted functions ran as another role');

-- R4 -----------------------------------------------------------------------
GRANT CREATE ON SCHEMA dealrisk TO trust_t_op;
SET LOCAL ROLE trust_t_op;
UPDATE dealrisk.watch_config SET source = 'public.deals'::regclass;
CREATE FUNCTION dealrisk.deal_risk(deal public.deals, model text) RETURNS float8
LANGUAGE plpgsql STABLE AS $f$ BEGIN PERFORM public.rv_note(); RETURN 99; END $f$;
RESET ROLE;
REVOKE CREATE ON SCHEMA dealrisk FROM trust_t_op;
SELECT is(pg_temp.try($$SELECT dealrisk.refresh()$$),
	'42501: schema dealrisk holds functions that are not part of the extension: dealrisk.deal_risk(public.deals,text)',
	'R4 refresh() refuses to run while schema dealrisk holds a function that is not the extension''s');
SELECT is(pg_temp.ran(), 0::bigint, '... and the planted overload did not run');
DROP FUNCTION dealrisk.deal_risk(public.deals, text);

-- R8 -----------------------------------------------------------------------
SELECT alike(pg_temp.try($$SELECT dealrisk._deal_risk_row('default', 12345::oid::regtype, ARRAY['x'], 1)$$),
	'42704: type with OID 12345 does not exist', 'R8 a row type OID that names nothing is a user error');

-- R9: a stage history of hers (issue #14) ------------------------------------
SELECT setval('public.rv_seq', 1, false) IS NOT NULL AS reset9 \gset
SET LOCAL ROLE trust_t_mallory;
CREATE VIEW public.m_history AS
	SELECT d.deal_id, d.deal_stage AS stage, d.created_date AS entered_at FROM public.deals d WHERE public.rv_note();
RESET ROLE;
CREATE TABLE public.su_history_typed AS
	SELECT ROW(d.deal_id)::public.rv_id AS deal_id, d.deal_stage AS stage, d.created_date AS entered_at FROM public.deals d;
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.funnel('public.deals', history => 'public.m_history')$$),
	'42501: relation public.m_history, read for source "m_history", belongs to role "trust_t_mallory"%',
	'R9 funnel() refuses a history view of hers');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.stage_conversion_trend('public.deals', 'public.m_history')$$), '42501:%',
	'... and so does stage_conversion_trend()');
SELECT is((SELECT "check" || ' ' || severity FROM dealrisk.check_source('public.deals', 'public.m_history') WHERE "check" LIKE 'history%'),
	'history_columns error', '... and check_source() reports it without reading it');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.funnel('public.deals', history => 'public.su_history_typed')$$),
	'42804: column "deal_id" of "public.su_history_typed" has type public.rv_id, which belongs to role "trust_t_mallory"%',
	'... and a history whose deal_id is of her type');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk.check_source('public.m_view', 'public.su_history_typed')$$),
	'42501: relation public.m_view, read for source "m_view", belongs to role "trust_t_mallory"%',
	'... check_source(source, history) refuses a source view of hers before reading it');
SELECT alike(pg_temp.try($$SELECT * FROM dealrisk._history_unknown_stages('public.m_history')$$), '42501:%',
	'... and so does the helper that lists a history''s unknown stages');
SELECT is(pg_temp.ran(), 0::bigint, '... and nothing of hers ran');

SELECT * FROM finish();
ROLLBACK;
