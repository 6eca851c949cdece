-- pgTAP: how many times the preflight reads its source (issue #13, cost).
-- check_source() counts every row-level check in one pass over the source
-- (_source_profile), plus one for duplicate deal ids unless a unique index
-- on deal_id rules them out; data_quality() alone the same, and
-- _stage_semantics() one.  The reads are the scans PostgreSQL counts for
-- the table in this transaction (pg_stat_get_xact_numscans); parallel
-- workers would count apart, so there are none.
\ir harness/pgtap_setup.psql
SELECT plan(14);
SET LOCAL max_parallel_workers_per_gather = 0;
SET LOCAL dealrisk.as_of_date = '2024-12-31';

-- The scans of rel that running stmt (a query, run to its last row)
-- started.
CREATE FUNCTION pg_temp.reads(rel regclass, stmt text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	before bigint := pg_catalog.pg_stat_get_xact_numscans(rel);
BEGIN
	EXECUTE stmt;
	RETURN pg_catalog.pg_stat_get_xact_numscans(rel) - before;
END
$$;

CREATE TABLE scan_deals AS SELECT * FROM dealrisk.sample_deals(20000, 42);
CREATE VIEW scan_view AS SELECT * FROM scan_deals;
-- (the counter itself: a plain count is one scan)
SELECT is(pg_temp.reads('scan_deals', 'SELECT * FROM scan_deals'), 1::bigint, 'a query over the table is one read of it');

-- 1. A table without an index: one pass and the duplicate ids.
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.check_source('scan_deals')$$), 2::bigint,
	'check_source reads a table without a unique index on deal_id twice');
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.data_quality('scan_deals')$$), 2::bigint,
	'... and data_quality too');
SELECT is(pg_temp.reads('scan_deals', $$SELECT dealrisk._stage_semantics('scan_deals')$$), 1::bigint,
	'_stage_semantics reads it once');
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk._feature_leaks('scan_deals')$$), 2::bigint,
	'_feature_leaks alone reads it twice (deciles, then levels), in one statement');
-- 2. A view over it: the same reads of the table beneath.
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.check_source('scan_view')$$), 2::bigint,
	'check_source reads the table under a view twice');
-- 3. A source with stale open deals, unknown labels and stages, a status
-- column and row-level problems: still one pass (and the ids).
CREATE TABLE scan_messy AS SELECT * FROM scan_deals;
UPDATE scan_messy SET outcome = 'Gewonnen' WHERE deal_id IN ('D0000001', 'D0000002');
UPDATE scan_messy SET deal_stage = 'Won' WHERE outcome = 'Won' AND deal_id < 'D0000100';
UPDATE scan_messy SET deal_stage = 'Scoping' WHERE deal_id IN ('D0000003', 'D0000004');
UPDATE scan_messy SET deal_amount = 'NaN' WHERE deal_id = 'D0000005';
UPDATE scan_messy SET deal_id = 'D0000007' WHERE deal_id = 'D0000008';
INSERT INTO scan_messy (deal_id, outcome, created_date) VALUES ('X1', NULL, date '2019-01-01');
SELECT is(pg_temp.reads('scan_messy', $$SELECT * FROM dealrisk.check_source('scan_messy')$$), 2::bigint,
	'check_source reads a source with every kind of finding twice');
SELECT is((SELECT string_agg(DISTINCT "check", ', ' ORDER BY "check") FROM dealrisk.check_source('scan_messy')),
	'duplicate_deal_id, invalid_amount, null_amount, null_stage, outcome_labels, outcomes, stale_open_deals, status_column, unknown_stages',
	'... and finds them all');
-- 4. Sources lacking optional columns: no dates, no stage.
CREATE TABLE scan_bare AS SELECT deal_id, outcome, industry FROM scan_deals;
SELECT is(pg_temp.reads('scan_bare', $$SELECT * FROM dealrisk.check_source('scan_bare')$$), 2::bigint,
	'check_source reads a source without dates or stages twice');
-- 5. Under a unique index on deal_id there are no duplicates to count.
ALTER TABLE scan_deals ADD PRIMARY KEY (deal_id);
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.check_source('scan_deals')$$), 1::bigint,
	'check_source reads a table with a unique index on deal_id once');
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.data_quality('scan_deals')$$), 1::bigint,
	'... and data_quality too');

-- The leak check in check_source's pass (over the rows it holds) and on
-- its own (over the source) are one piece of code with one answer.
CREATE VIEW scan_leaky AS
SELECT deal_id, outcome, created_date, closed_date, deal_stage,
       CASE WHEN outcome = 'Won' THEN 'yes' ELSE 'no' END AS lead_source,
       CASE WHEN outcome = 'Won' THEN 10000000 + deal_amount ELSE deal_amount END AS deal_amount,
       CASE WHEN outcome IS NOT NULL THEN industry END AS industry
FROM scan_deals;
SELECT results_eq(
	$$SELECT finding FROM dealrisk.check_source('scan_leaky') WHERE "check" = 'outcome_leaks'$$,
	$$SELECT format('column %s leaks the outcome: %s', feature, reason) FROM dealrisk._feature_leaks('scan_leaky')$$,
	'check_source names the leaks _feature_leaks finds, in its order');
SELECT is((SELECT count(*) FROM dealrisk._feature_leaks('scan_leaky')), 3::bigint,
	'... a label and a number that tell won from lost, and a column filled at close');
SELECT is(pg_temp.reads('scan_deals', $$SELECT * FROM dealrisk.check_source('scan_leaky')$$), 2::bigint,
	'... in the pass: check_source reads the table under the view twice, the leak check included');

SELECT * FROM finish();
ROLLBACK;
