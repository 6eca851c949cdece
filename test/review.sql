-- pgTAP: the security and robustness review of what 0.3.0 added (issue
-- #9).  Each finding's reproduction, and the checks of what was found
-- sound:
--   F2 the hint of is_won()'s unknown-label error holds a SET statement
--      built from the label: run as written, a label with a quote must not
--      end the literal (and run what follows), one with a comma must not be
--      split, an empty list must not give a leading comma; the label in
--      the message is cut at a character, not inside one
--   F3 check_source()'s label hints: a comma, more labels than a list holds
--   F4 check_source()'s scoring-date hint means the same date under any
--      DateStyle
--   F5 _stage_semantics(), executable by anyone, checks what it reads
--   F6 counts near the largest double in an imported survivor curve
--   S1 refresh() turns JIT and nested loops off for one statement: they
--      come back after an error inside it, as after a success
--   S2 the survivor-curve keys of an imported model: every malformed one
--      is refused, and extreme knots score finite risks
\ir harness/pgtap_setup.psql
SELECT plan(27);

SET LOCAL dealrisk.as_of_date = '2024-12-31';

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
-- The message and hint of the error a statement raises.
CREATE FUNCTION pg_temp.error_of(stmt text, OUT msg text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
END
$$;
-- Whether a text is valid in the server encoding (convert_from checks it).
CREATE FUNCTION pg_temp.valid_text(t text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	RETURN pg_catalog.convert_from(pg_catalog.convert_to(t, 'UTF8'), 'UTF8') = t;
EXCEPTION WHEN OTHERS THEN
	RETURN false;
END
$$;

-- F2. A CRM label that ends the literal of the hint's SET statement.
CREATE TABLE public.review_deals (deal_id text, outcome text);
INSERT INTO public.review_deals VALUES ('D1', 'x''; DROP TABLE public.review_deals; --');
SELECT hint AS f2_hint FROM pg_temp.error_of($$SELECT dealrisk.is_won(outcome) FROM public.review_deals$$) \gset
SELECT matches(:'f2_hint'::text, '^"x''; DROP TABLE public.review_deals; --" looks like an open deal: SET dealrisk.open_labels = ''open,pending,in progress,in_progress,active,x''''; DROP TABLE public.review_deals; --'' \(or ALTER DATABASE',
	'F2: the hint''s SET statement quotes a label holding a quote');
-- run as a user would: the statement between "deal: " and " (or ALTER"
SELECT substring(:'f2_hint' FROM 'deal: (.*) \(or ALTER DATABASE') AS f2_stmt \gset
SELECT is(pg_temp.try(:'f2_stmt'), 'ok', '... and runs as written');
SELECT ok(to_regclass('public.review_deals') IS NOT NULL, '... running nothing else');
SELECT is(pg_temp.try($q$DO $d$ BEGIN
	IF (SELECT dealrisk.outcome_class(outcome) FROM public.review_deals) <> 'open' THEN RAISE EXCEPTION 'not open'; END IF;
END $d$$q$), 'ok',
	'... and the label is then known (open)');
RESET dealrisk.open_labels;

SELECT hint AS f2_comma FROM pg_temp.error_of($$SELECT dealrisk.is_won('Closed, lost')$$) \gset
SELECT ok(:'f2_comma' NOT LIKE '%SET dealrisk%' AND :'f2_comma' LIKE '%a label holding a comma cannot be listed%',
	'F2: a label holding a comma gets no SET that would split it, but what to do instead');

SET LOCAL dealrisk.open_labels = '';
SELECT hint AS f2_empty FROM pg_temp.error_of($$SELECT dealrisk.is_won('Engaging')$$) \gset
SELECT matches(:'f2_empty'::text, 'SET dealrisk.open_labels = ''Engaging'' \(or ALTER', 'F2: an empty list gets the label alone, no leading comma');
RESET dealrisk.open_labels;

CREATE TEMP TABLE f2_long AS SELECT e.* FROM pg_temp.error_of(
	format('SELECT dealrisk.is_won(%L)', 'Verhandlung läuft!' || repeat('ä', 150))) e;
SELECT ok(current_setting('server_encoding') <> 'UTF8' OR (SELECT pg_temp.valid_text(msg) AND pg_temp.valid_text(hint) FROM f2_long),
	'F2: a long label is cut in the message at a character, not inside one');
SELECT ok((SELECT hint NOT LIKE '%SET dealrisk%' FROM f2_long), '... and no SET statement repeats a cut label');

SELECT hint AS f2_stage FROM pg_temp.error_of($$SELECT dealrisk.stage_position('Buyer''s review')$$) \gset
SELECT matches(:'f2_stage'::text, 'VALUES \(''Buyer''''s review'', <position>, <is_late>\)',
	'F2: the unknown-stage hint quotes a stage name holding a quote');

-- F3. check_source()'s hints for labels a list cannot hold.
CREATE TABLE public.review_labels (deal_id text, outcome text);
INSERT INTO public.review_labels
	SELECT 'W' || g, 'won' FROM generate_series(1, 50) g
	UNION ALL SELECT 'L' || g, 'lost' FROM generate_series(1, 50) g
	UNION ALL VALUES ('C1', 'Closed, lost'), ('C2', 'it''s lost'), ('C3', 'Won\');
SELECT string_agg(hint, E'\n' ORDER BY hint) AS f3_hints FROM dealrisk.check_source('public.review_labels') WHERE "check" = 'outcome_labels' \gset
SELECT ok(:'f3_hints' LIKE '%''Closed, lost'' cannot be listed: dealrisk.lost_labels is comma-separated%'
	AND :'f3_hints' NOT LIKE '%Closed, lost,%' AND :'f3_hints' NOT LIKE '%,Closed, lost''%',
	'F3: a label holding a comma is named as one a list cannot hold, not added to a SET that splits it');
CREATE FUNCTION pg_temp.run_label_hints(src regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	FOR h IN SELECT substring(c.hint FROM 'SET [^;]*') FROM dealrisk.check_source(src) c
	         WHERE c."check" = 'outcome_labels' AND c.hint LIKE '%SET %' LOOP
		EXECUTE h;
	END LOOP;
END
$$;
SELECT is(pg_temp.try($$SELECT pg_temp.run_label_hints('public.review_labels')$$), 'ok', '... the other SET lines run as written');
SELECT is((SELECT string_agg(dealrisk.outcome_class(outcome), ',' ORDER BY deal_id) FROM public.review_labels WHERE deal_id LIKE 'C%'),
	'unknown,lost,won', '... and make the labels with a quote and a backslash known');
RESET dealrisk.won_labels;
RESET dealrisk.lost_labels;

-- more unknown labels than a list can hold
INSERT INTO public.review_labels SELECT 'S' || g, 'Stage ' || g FROM generate_series(1, 70) g;
SET LOCAL dealrisk.open_labels = 'open,pending,in progress,in_progress,active,e1,e2,e3,e4,e5,e6,e7,e8,e9,e10,e11,e12,e13,e14,e15';
SELECT hint AS f3_many FROM dealrisk.check_source('public.review_labels') WHERE "check" = 'outcome_labels' AND hint LIKE '%open_labels%' \gset
SELECT matches(:'f3_many'::text, '26 more cannot be added: dealrisk.open_labels holds at most 64 labels',
	'F3: labels past the 64th of a list are named, not put in a SET that the list refuses');
SELECT is(pg_temp.try($$SELECT pg_temp.run_label_hints('public.review_labels')$$), 'ok', '... and the SET line runs as written');
SELECT is((SELECT count(*) FROM public.review_labels WHERE deal_id LIKE 'S%' AND dealrisk.outcome_class(outcome) = 'open'), 44::bigint,
	'... filling the list to 64 labels');
RESET dealrisk.open_labels;

-- F4. The scoring date of the hint, written under a day-first DateStyle,
-- read under a month-first one.
CREATE TABLE public.review_dates (deal_id text, outcome text, created_date date);
INSERT INTO public.review_dates
	SELECT 'A' || g, CASE g % 3 WHEN 0 THEN 'won' WHEN 1 THEN 'lost' END, date '2020-01-13' - g FROM generate_series(1, 150) g;
RESET dealrisk.as_of_date;
SET LOCAL datestyle = 'SQL, DMY';
SELECT substring(hint FROM 'SET dealrisk.as_of_date = [^;]*') AS f4_set
FROM dealrisk.check_source('public.review_dates') WHERE "check" = 'scoring_date' \gset
SET LOCAL datestyle = 'ISO, MDY';
SELECT is(pg_temp.try(:'f4_set'), 'ok', 'F4: the scoring-date hint runs as written');
SELECT is(current_setting('dealrisk.as_of_date')::date, date '2020-01-12',
	'... and sets the newest date of the data under another DateStyle');
SET LOCAL dealrisk.as_of_date = '2024-12-31';

-- F5. _stage_semantics() reads a source: another role's view may not run
-- its functions as the caller.
CREATE ROLE review_t_mallory NOLOGIN;
CREATE SEQUENCE public.review_seq;
GRANT USAGE ON SEQUENCE public.review_seq TO PUBLIC;
GRANT CREATE ON SCHEMA public TO review_t_mallory;
SET LOCAL ROLE review_t_mallory;
CREATE FUNCTION public.review_spy(t text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM nextval('public.review_seq');
	RETURN t;
END
$$;
CREATE VIEW public.review_m_view AS
	SELECT 'D' || g AS deal_id, public.review_spy(CASE WHEN g % 2 = 0 THEN 'won' ELSE 'lost' END) AS outcome,
	       'Qualified'::text AS deal_stage
	FROM generate_series(1, 40) g;
RESET ROLE;
SELECT alike(pg_temp.try($$SELECT dealrisk._stage_semantics('public.review_m_view')$$), '42501:%review_t_mallory%',
	'F5: _stage_semantics() refuses a view of a role the caller does not trust');
SELECT ok(NOT (SELECT is_called FROM public.review_seq), '... without running its functions');

-- S1. refresh() after an error in its alert statement: JIT and nested
-- loops as they were.
CREATE TABLE public.review_watch AS SELECT * FROM dealrisk.sample_deals(1500, 5);
SELECT dealrisk.train('public.review_watch') IS NOT NULL AS trained \gset
SELECT dealrisk.watch('public.review_watch', 0, top_fraction => 1) IS NOT NULL AS watched \gset
CREATE FUNCTION pg_temp.no_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'review: the alert outbox refuses rows' USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER review_no_alerts BEFORE INSERT ON dealrisk.alerts FOR EACH ROW EXECUTE FUNCTION pg_temp.no_alerts();
SET LOCAL jit = on;
SET LOCAL enable_nestloop = on;
SELECT alike(pg_temp.try($$SELECT dealrisk.refresh()$$), 'P0001: review: the alert outbox refuses rows%',
	'S1: refresh() fails in its alert statement');
SELECT is(current_setting('enable_nestloop') || ',' || current_setting('jit'), 'on,on',
	'... and enable_nestloop and jit are as they were');
DROP TRIGGER review_no_alerts ON dealrisk.alerts;
SET LOCAL jit = off;
SELECT ok(dealrisk.refresh() > 0, 'S1: refresh() succeeds');
SELECT is(current_setting('enable_nestloop') || ',' || current_setting('jit'), 'on,off',
	'... and leaves enable_nestloop and jit as they were');

-- S2 and F6. The survivor-curve keys of an imported model.
SELECT dealrisk.export_model(dealrisk._active_model('default')) AS base \gset
CREATE FUNCTION pg_temp.with_curve(base jsonb, curve jsonb) RETURNS jsonb
LANGUAGE sql AS $$
	SELECT jsonb_set(base, '{spec,features}', (
		SELECT jsonb_agg(CASE WHEN f->>'name' = 'cycle_days'
		                      THEN (f - '{open_knots,open_terms,open_closed,open_won,longest,quantiles}'::text[]) || curve
		                      ELSE f END ORDER BY o)
		FROM jsonb_array_elements(base->'spec'->'features') WITH ORDINALITY x(f, o)))
$$;
CREATE TEMP TABLE bad_curves (curve jsonb);
INSERT INTO bad_curves VALUES
	('{"open_knots": [0, "NaN"], "open_terms": [0, 0]}'), ('{"open_knots": [0, "Infinity"]}'),
	('{"open_knots": [0, null], "open_terms": [0, 0]}'), ('{"open_knots": [5, 1]}'), ('{"open_knots": [1, 1]}'),
	('{"open_knots": []}'), ('{"open_knots": {"a": 1}, "open_terms": [0]}'),
	('{"open_knots": [1, 5], "open_terms": [0, "NaN"]}'), ('{"open_knots": [1, 5], "open_terms": [0, 2e6]}'),
	('{"open_knots": [1, 5], "open_terms": [0, 1]}'), ('{"open_knots": [1, 5], "open_terms": [0]}'),
	('{"open_knots": [1, 5], "open_terms": [0, 0, 0]}'), ('{"open_knots": [1, 5], "open_terms": "x"}'),
	('{"open_knots": [1, 5], "open_closed": [5, 4]}'), ('{"open_knots": [1, 5], "open_closed": [5], "open_won": [1]}'),
	('{"open_knots": [1, 5], "open_closed": [5, 4], "open_won": [6, 2]}'),
	('{"open_knots": [1, 5], "open_closed": [5, "Infinity"], "open_won": [1, 2]}'),
	('{"open_knots": [1, 5], "longest": 2}'), ('{"open_knots": [1, 5], "longest": "Infinity"}'),
	('{"open_terms": [0]}'), ('{"quantiles": [0.5]}'), ('{"quantiles": [0.1, 0.2, 0.3, 0.4, 1]}'),
	('{"quantiles": [0.5, 0.4, 0.6, 0.7, 0.8]}');
INSERT INTO bad_curves SELECT jsonb_build_object('open_knots', (SELECT jsonb_agg(g) FROM generate_series(1, 1001) g));
SELECT is((SELECT string_agg(b.curve::text, '; ') FROM bad_curves b
           WHERE pg_temp.try(format('SELECT dealrisk.import_model(%L, %L)', pg_temp.with_curve(:'base', b.curve), 'bad'))
                 NOT SIMILAR TO '(22023|22P02): %'),
	NULL, 'S2: every malformed survivor curve of an imported model is refused (22023, or 22P02 for no number)');
SELECT dealrisk.import_model(pg_temp.with_curve(:'base',
	'{"open_knots": [-1.7e308, 1.7e308], "open_terms": [1, -1], "open_closed": [1.7e308, 1.6e308], "open_won": [1.6e308, 1e308], "longest": 1.79e308}'),
	'review_extreme') AS xid \gset
SELECT ok(dealrisk.activate(:xid, force => true), 'S2: extreme knots and counts are a valid curve');
SELECT ok((SELECT bool_and(dealrisk.deal_risk(d, 'review_extreme') BETWEEN 0 AND 100) FROM public.review_watch d WHERE d.outcome IS NULL),
	'... and open deals score finite risks with it');
SELECT is((SELECT string_agg(e.reason, ' | ') FROM public.review_watch d, dealrisk.deal_risk_explain(d, 'review_extreme') e
           WHERE d.outcome IS NULL AND e.factor = 'cycle_days' AND e.reason ~* '(inf|nan)'),
	NULL, 'F6: ... explained with numbers, no infinite or NaN percentage');

SELECT * FROM finish();
ROLLBACK;
