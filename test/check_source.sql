-- pgTAP: dealrisk.check_source(), the preflight of a deal source (issue #9,
-- section 1), on small fixtures built for each check: a Maven-style single
-- status column, won deals at early stages, no date columns, open deals
-- older than every closed one, unknown labels and stages (whose hints are
-- run as written), row-level problems, and a role that is not superuser.
\ir harness/pgtap_setup.psql
SELECT plan(55);

-- The finding rows of a check, as 'severity: finding | hint'.
CREATE FUNCTION pg_temp.found(src regclass, chk text) RETURNS text
LANGUAGE sql AS $$
	SELECT string_agg(c.severity || ': ' || c.finding || ' | ' || coalesce(c.hint, ''), E'\n')
	FROM dealrisk.check_source(src) c WHERE c."check" = chk
$$;
-- The hint of the error a statement raises.
CREATE FUNCTION pg_temp.error_hint(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	EXECUTE stmt;
	RETURN NULL;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
	RETURN h;
END
$$;
-- The first statement of a hint (up to its first ';'), run as written.
CREATE FUNCTION pg_temp.run_hint(src regclass, chk text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN
	SELECT c.hint INTO STRICT h FROM dealrisk.check_source(src) c WHERE c."check" = chk;
	h := substring(h from '(?:SET|INSERT) [^;]*');
	EXECUTE h;
END
$$;

SELECT has_function('dealrisk', 'check_source', ARRAY['regclass'], 'check_source(regclass) exists');

-- 1. A clean source: the bundled generator, scored as of its export date.
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE clean AS SELECT * FROM dealrisk.sample_deals(1500, 7);
-- (the generator leaves one open deal older than every closed deal: see 6.)
DELETE FROM clean WHERE outcome IS NULL AND created_date < '2024-03-01';
SELECT is((SELECT count(*) FROM dealrisk.check_source('clean') WHERE severity IN ('error', 'warning')), 0::bigint,
	'a clean source has no error or warning');
SELECT is((SELECT severity FROM dealrisk.check_source('clean') WHERE "check" = 'summary'), 'info',
	'... and says that everything can run');
SELECT matches(pg_temp.found('clean', 'outcomes'), '^info: [0-9,]+ won, [0-9,]+ lost \(win rate [0-9.]+%\) and [0-9,]+ open deals',
	'... with the counts of won, lost and open deals');

-- 2. A Maven-style CRM: one status column holds Prospecting / Engaging /
-- Won / Lost; close_value is 0 on lost deals and empty on open ones.
CREATE TABLE maven AS
SELECT 'M' || g AS id,
       (ARRAY['Prospecting', 'Engaging', 'Won', 'Lost', 'Won', 'Lost', 'Lost'])[1 + g % 7] AS status,
       date '2017-01-01' + (g % 300) AS engage_date,
       CASE WHEN g % 7 >= 2 THEN date '2017-01-01' + (g % 300) + 30 + g % 50 END AS close_date,
       CASE WHEN g % 7 IN (2, 4) THEN 1000 + g % 5000 WHEN g % 7 IN (3, 5, 6) THEN 0 END AS close_value,
       (ARRAY['GTX', 'MG', 'GTK'])[1 + g % 3] AS product
FROM generate_series(1, 2100) g;
-- mapped naively: the status column as outcome
CREATE VIEW maven_naive AS
	SELECT id AS deal_id, status AS deal_stage, status AS outcome, engage_date AS created_date,
	       close_date AS closed_date, close_value AS deal_amount, product AS product_type
	FROM maven;
SELECT matches(pg_temp.found('maven_naive', 'outcome_labels'),
	'^error: 2 outcome labels of \S*maven_naive are not known \(600 of 2,100 deals\): ''Engaging'' \(300\), ''Prospecting'' \(300\); they look like stages of open deals',
	'unknown labels are named with their counts, and those that look like stages are called open');
SELECT matches(pg_temp.found('maven_naive', 'outcome_labels'),
	'\| SET dealrisk.open_labels = ''open,pending,in progress,in_progress,active,Engaging,Prospecting''; to keep it: ALTER DATABASE \S+ SET dealrisk.open_labels = ',
	'... the hint adds them to dealrisk.open_labels (not won_labels), keeping the labels it holds');
SELECT matches(pg_temp.found('maven_naive', 'status_column'), '^warning: deal_stage holds outcome labels',
	'... and the other checks still run, reading unknown labels as neither won, lost nor open');
SELECT matches(pg_temp.error_hint($$SELECT dealrisk.is_won('Engaging')$$), '"Engaging" looks like an open deal: SET dealrisk.open_labels = ',
	'is_won()''s error on an unknown label points at the list it probably belongs to');
SELECT matches(pg_temp.error_hint($$SELECT dealrisk.is_won('Disqualified')$$), 'looks like a lost deal: SET dealrisk.lost_labels = ',
	'... a lost-looking label at lost_labels');
SELECT matches(pg_temp.error_hint($$SELECT dealrisk.is_won('Closed - Booked')$$), 'looks like a won deal: SET dealrisk.won_labels = ',
	'... a won-looking label at won_labels');
SELECT matches(pg_temp.error_hint($$SELECT dealrisk.is_won('Closed')$$), 'dealrisk.won_labels, dealrisk.lost_labels or dealrisk.open_labels',
	'... and an ambiguous one ("Closed") at all three');
SELECT is(ARRAY[dealrisk._label_guess('Engaging'), dealrisk._label_guess('Closed Won'), dealrisk._label_guess('closed/lost'),
                dealrisk._label_guess('Won or lost'), dealrisk._label_guess('Winter pipeline'), dealrisk._label_guess('')],
	ARRAY['open', 'won', 'lost', 'unknown', 'open', 'open'], 'label guesses go by whole words');
SAVEPOINT labels;
SELECT lives_ok($$SELECT pg_temp.run_hint('maven_naive', 'outcome_labels')$$, 'the hint''s SET runs as written');
SELECT is(pg_temp.found('maven_naive', 'outcome_labels'), NULL, '... and the labels are known after it');
SELECT matches(pg_temp.found('maven_naive', 'status_column'), '^warning: deal_stage holds outcome labels: ''Lost'' \(900\), ''Won'' \(600\)',
	'a status column holding stages and outcomes is recognised');
ROLLBACK TO SAVEPOINT labels;

-- mapped as docs/data-contract.md says: outcome only on closed deals
CREATE VIEW maven_split AS
	SELECT id AS deal_id, CASE WHEN status NOT IN ('Won', 'Lost') THEN status END AS deal_stage,
	       CASE WHEN status IN ('Won', 'Lost') THEN status END AS outcome, engage_date AS created_date,
	       close_date AS closed_date, product AS product_type
	FROM maven;
SET dealrisk.as_of_date = '2018-03-31';
SELECT is(pg_temp.found('maven_split', 'status_column'), NULL, 'split in a view, the status column is no longer flagged');
SELECT matches(pg_temp.found('maven_split', 'unknown_stages'),
	'^warning: .* \| Add them in pipeline order, e.g. INSERT INTO dealrisk.stages \(stage, position, is_late\) VALUES \(''Engaging'', 6, false\), \(''Prospecting'', 7, false\);',
	'unknown stages come with the INSERT that adds them');
SAVEPOINT stages;
SELECT lives_ok($$SELECT pg_temp.run_hint('maven_split', 'unknown_stages')$$, '... which runs as written');
SELECT is(pg_temp.found('maven_split', 'unknown_stages'), NULL, '... and the stages are known after it');
SELECT lives_ok($$SELECT * FROM dealrisk.funnel('maven_split')$$, '... so the funnel runs');
ROLLBACK TO SAVEPOINT stages;
SELECT throws_ok($$SELECT * FROM dealrisk.funnel('maven_split')$$, '22023', NULL, 'before it, the funnel cannot run');
SELECT matches(pg_temp.found('maven_split', 'stage_semantics'), '^warning: none of the 1,500 closed deals has a deal_stage, so there is no funnel to read',
	'closed deals without a stage: no funnel either');

-- 3. Won deals at every stage (deal_stage is the stage at export), and a
-- real funnel (won deals at the last stage).
CREATE TABLE spread AS
SELECT g::text AS deal_id, (ARRAY['Qualified', 'Demo', 'Proposal', 'Negotiation', 'Closed'])[1 + g % 5] AS deal_stage,
       CASE WHEN g % 9 < 4 THEN 'Won' ELSE 'Lost' END AS outcome,
       date '2024-01-01' + g % 200 AS created_date, date '2024-01-01' + g % 200 + 40 AS closed_date
FROM generate_series(1, 1000) g;
CREATE TABLE real_funnel AS
SELECT deal_id, CASE WHEN outcome = 'Won' THEN 'Closed' ELSE deal_stage END AS deal_stage, outcome, created_date, closed_date
FROM spread;
SELECT matches(pg_temp.found('spread', 'stage_semantics'),
	'^warning: 3[0-9]{2} of 4[0-9]{2} won deals \([0-9.]+%\) sit at stages before Closed, [0-9]+ at Qualified, the first stage; won deals are found at 5 of 5 stages\. deal_stage does not hold the stage a deal reached',
	'won deals spread over the stages: deal_stage cannot support a funnel');
SELECT matches(pg_temp.found('spread', 'stage_semantics'), 'stage history', '... and the hint says what data would');
SELECT is((SELECT count(*) FROM dealrisk.funnel('spread') f WHERE f.caveat LIKE 'not a funnel: %'), 5::bigint,
	'funnel() says on every row that it is not a funnel');
SELECT is(pg_temp.found('real_funnel', 'stage_semantics'), NULL, 'won deals at the last stage: a funnel');
SELECT is((SELECT count(*) FROM dealrisk.funnel('real_funnel') f WHERE f.caveat IS NULL), 5::bigint,
	'... and funnel() has no caveat');

-- 4. No date columns at all (an IBM-style export).
CREATE TABLE dateless AS SELECT deal_id, outcome, deal_stage FROM real_funnel;
SELECT matches(pg_temp.found('dateless', 'columns'), 'warning: column closed_date is missing: no win-rate or cycle trends',
	'a missing closed_date says what it takes away');
SELECT matches(pg_temp.found('dateless', 'columns'), 'warning: column created_date is missing: no deal age',
	'... and so does a missing created_date');
SELECT is((SELECT count(*) FROM dealrisk.check_source('dateless') WHERE severity = 'error'), 0::bigint, '... neither is an error');
SELECT is((SELECT string_agg(check_name, ',' ORDER BY check_name) FROM dealrisk.data_quality('dateless') WHERE "rows" IS NULL),
	'closed_before_created,closed_without_closed_date,cycle_days_mismatch,future_created_date,invalid_amount,negative_amount,negative_cycle_days,null_amount,open_with_closed_date',
	'data_quality() runs without the optional columns and leaves the checks that need them unset');

-- 5. Missing and mistyped columns.
CREATE TABLE no_id AS SELECT outcome, deal_stage FROM real_funnel;
CREATE TABLE text_dates AS SELECT deal_id, outcome, closed_date::text AS closed_date FROM real_funnel;
SELECT matches(pg_temp.found('no_id', 'columns'), '^error: column deal_id is missing', 'a missing deal_id is an error');
SELECT is((SELECT count(*) FROM dealrisk.check_source('no_id') WHERE "check" <> 'columns'), 0::bigint, '... and stops the checks');
CREATE TYPE pg_temp.result AS ENUM ('Won', 'Lost');
CREATE TABLE enum_outcome AS SELECT deal_id, outcome::pg_temp.result AS outcome, deal_stage, created_date, closed_date FROM real_funnel;
SELECT matches(pg_temp.found('enum_outcome', 'column_types'),
	'^warning: column outcome has type result, not text: the diagnostics read it, train\(\) and scoring cannot \| Cast it in a view: outcome::text AS outcome',
	'an outcome of another type than text is a warning: the diagnostics cast it, the model cannot read it');
SELECT matches(pg_temp.found('enum_outcome', 'outcomes'), '^info: ', '... and the checks after it still run');
SELECT matches(pg_temp.found('text_dates', 'column_types'), '^error: column closed_date has type text, not a date \| Cast it in a view: closed_date::date AS closed_date',
	'a date column of another type is an error with the cast that fixes it');

-- 6. The scoring date against the data, and open deals older than every
-- closed one.
CREATE TABLE aging AS
SELECT g::text AS deal_id, CASE WHEN g <= 900 THEN (CASE WHEN g % 2 = 0 THEN 'Won' ELSE 'Lost' END) END AS outcome,
       CASE WHEN g <= 900 THEN date '2023-01-01' + g % 300 ELSE date '2022-01-01' + g % 30 END AS created_date,
       CASE WHEN g <= 900 THEN date '2023-01-01' + g % 300 + 20 + g % 60 END AS closed_date
FROM generate_series(1, 1000) g;
RESET dealrisk.as_of_date;
SELECT matches(pg_temp.found('aging', 'scoring_date'),
	'^warning: open deals are scored as of today, [0-9-]+, [0-9,]+ days after the newest date in the source \(2024-01-14\).*\| If the data is an export from 2024-01-14, score as of then: SET dealrisk.as_of_date = ''2024-01-14'';',
	'open deals scored long after the data: said, with the SET that fixes it');
SELECT lives_ok($$SELECT pg_temp.run_hint('aging', 'scoring_date')$$, '... which runs as written');
SELECT is(current_setting('dealrisk.as_of_date'), '2024-01-14', '... and sets the scoring date');
SELECT matches(pg_temp.found('aging', 'stale_open_deals'),
	'^warning: 100 of 100 open deals are older on 2024-01-14 than every closed deal was when it closed \(longest cycle 79 days; the oldest open deal was created on 2022-01-01\)',
	'open deals older than every closed deal are counted');
SET dealrisk.as_of_date = '2023-06-30';
SELECT matches(pg_temp.found('aging', 'scoring_date'), '^warning: dealrisk.as_of_date \(2023-06-30\) is before the newest created_date',
	'a scoring date before deals were created is flagged');
SET dealrisk.as_of_date = '2024-12-31';

-- 7. Row-level problems, and no closed deal.
CREATE TABLE messy AS SELECT * FROM clean;
INSERT INTO messy SELECT * FROM clean WHERE deal_id IN (SELECT deal_id FROM clean ORDER BY deal_id LIMIT 2);
UPDATE messy SET deal_amount = 'NaN' WHERE deal_id = (SELECT min(deal_id) FROM clean WHERE outcome IS NOT NULL);
UPDATE messy SET closed_date = created_date - 5 WHERE deal_id = (SELECT max(deal_id) FROM clean WHERE outcome IS NOT NULL);
UPDATE messy SET created_date = 'infinity' WHERE deal_id = (SELECT max(deal_id) FROM clean WHERE outcome IS NULL);
SELECT is((SELECT string_agg("check" || ':' || severity, ',' ORDER BY "check") FROM dealrisk.check_source('messy') WHERE severity = 'warning'),
	'closed_before_created:warning,duplicate_deal_id:warning,infinite_date:warning,invalid_amount:warning',
	'duplicate ids, dates out of order, NaN amounts and infinite dates are warnings');
SELECT matches(pg_temp.found('messy', 'duplicate_deal_id'), '^warning: 4 rows: deal_id shared with another row .*\(e\.g\. deal_id \S+\) \| Keep one row per deal',
	'... each with its count, an example and a hint');
-- duplicates are not counted under a unique index on deal_id alone, but an
-- inheritance child is not covered by its parent's index
CREATE TABLE pk_src AS SELECT * FROM clean;
ALTER TABLE pk_src ADD PRIMARY KEY (deal_id);
SELECT is((SELECT "rows" FROM dealrisk.data_quality('pk_src') WHERE check_name = 'duplicate_deal_id'), 0::bigint,
	'a source with a primary key on deal_id has no duplicate ids');
CREATE TABLE pk_child () INHERITS (pk_src);
INSERT INTO pk_child SELECT * FROM clean ORDER BY deal_id LIMIT 1;
SELECT is((SELECT ("rows", example_deal_id) FROM dealrisk.data_quality('pk_src') WHERE check_name = 'duplicate_deal_id'),
	(2::bigint, (SELECT min(deal_id) FROM clean)), '... but a child repeating a parent''s deal_id is counted');
CREATE TABLE all_open AS SELECT deal_id, NULL::text AS outcome FROM clean;
SELECT matches(pg_temp.found('all_open', 'outcomes'), '^error: no closed deal among 1,[0-9]{3} deals', 'no closed deal is an error');
CREATE TABLE empty_src AS SELECT * FROM clean WHERE false;
SELECT matches(pg_temp.found('empty_src', 'outcomes'), '^error: no closed deal among 0 deals', '... also in an empty source');
CREATE TABLE few AS SELECT * FROM clean ORDER BY deal_id LIMIT 60;
SELECT matches(pg_temp.found('few', 'outcomes'), '^warning: .* train\(\) needs at least 40 won and 40 lost', 'too few closed deals to train: a warning');

-- 8. A column that leaks the outcome, and the preflight in train().
CREATE VIEW maven_leaky AS SELECT m.*, c.close_value AS deal_amount FROM maven_split m JOIN maven c ON c.id = m.deal_id;
SELECT matches(pg_temp.found('maven_leaky', 'outcome_leaks'), '^warning: column deal_amount leaks the outcome: .*\| Map only what is known while a deal is open',
	'a close value mapped as deal_amount is flagged as an outcome leak');
SELECT is(pg_temp.found('maven_split', 'outcome_leaks'), NULL, '... and without it nothing is');
SELECT throws_like($$SELECT dealrisk.train('maven_naive', activate => false)$$,
	'cannot train on %maven_naive: 2 outcome labels of % are not known%', 'train() stops on a preflight error');
SELECT is(pg_temp.error_hint($$SELECT dealrisk.train('maven_naive', activate => false)$$),
	(SELECT hint FROM dealrisk.check_source('maven_naive') WHERE "check" = 'outcome_labels'), '... with the preflight''s hint');
SELECT dealrisk.train('spread', name => 'preflight_t', activate => false) AS pf_model \gset
SELECT is((SELECT metrics->'preflight' @> '[{"check": "stage_semantics"}]' FROM dealrisk.models WHERE id = :pf_model),
	true, 'train() keeps the preflight''s warnings in the model''s metrics');

-- 9. A hostile name, and a role that is not superuser.
CREATE TABLE "Deals; DROP TABLE clean" AS SELECT * FROM clean;
SELECT is((SELECT count(*) FROM dealrisk.check_source('"Deals; DROP TABLE clean"') WHERE severity IN ('error', 'warning')), 0::bigint,
	'a hostile table name is only a name');
CREATE ROLE dealrisk_t_checker;
-- the analyst of docs/security.md
GRANT USAGE ON SCHEMA dealrisk TO dealrisk_t_checker;
GRANT SELECT ON ALL TABLES IN SCHEMA dealrisk TO dealrisk_t_checker;
GRANT SELECT ON maven_split, maven TO dealrisk_t_checker;
SET ROLE dealrisk_t_checker;
SELECT matches(pg_temp.found('maven_split', 'unknown_stages'), '^warning: ', 'a role that is not superuser runs check_source()');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
