-- pgTAP: refresh() and watch() score every open deal once (issue #10, item
-- 7).  deal_risk is C and cannot be wrapped, so the deals are watched
-- through a view whose lead_source column (a feature of the model that no
-- statement of watch() or refresh() reads by name) goes through a counting
-- function: every time a deal's row is read with its features, for a score,
-- an explanation or an action, a sequence advances (sequences are not
-- rolled back and need no setting).  With a policy that makes no deal
-- high-risk nothing is explained, so the count is the number of scorings;
-- with high-risk deals each of them is read once more for the view's
-- reason and action, and once more for its alert's explanation.
\ir harness/pgtap_setup.psql
SELECT plan(32);

SET LOCAL dealrisk.as_of_date = '2024-12-31';
CREATE SCHEMA so_t;
CREATE TABLE so_t.base AS SELECT * FROM dealrisk.sample_deals(2000, 11);
ALTER TABLE so_t.base ADD PRIMARY KEY (deal_id);
SET LOCAL client_min_messages = error;
SELECT dealrisk.train('so_t.base') AS model_id \gset
SET LOCAL client_min_messages = warning;

-- the counter: last_value of a sequence that every read of lead_source
-- advances (STABLE, so that the view is inlined and the column is read
-- only where a statement uses it)
CREATE SEQUENCE so_t.reads;
SELECT nextval('so_t.reads') IS NOT NULL AS started \gset
CREATE FUNCTION so_t.counted(v text) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL UNSAFE AS $$
BEGIN
	PERFORM pg_catalog.nextval('so_t.reads');
	RETURN v;
END
$$;
CREATE VIEW so_t.deals AS
	SELECT b.deal_id, b.created_date, b.closed_date, b.sales_rep_id, b.industry, b.region, b.product_type,
	       so_t.counted(b.lead_source) AS lead_source, b.deal_stage, b.deal_amount, b.sales_cycle_days,
	       b.outcome, b.last_activity_date, b.stage_entered_date
	FROM so_t.base b;
-- reads since the previous call
CREATE TABLE so_t.mark (n bigint);
INSERT INTO so_t.mark SELECT last_value FROM so_t.reads;
CREATE FUNCTION pg_temp.reads() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	before bigint;
	now_at bigint;
BEGIN
	SELECT m.n INTO before FROM so_t.mark m;
	SELECT s.last_value INTO now_at FROM so_t.reads s;
	UPDATE so_t.mark SET n = now_at;
	RETURN now_at - before;
END
$$;
CREATE TEMP TABLE open_scores AS
	SELECT d.deal_id, dealrisk.deal_risk(d.*) AS risk FROM so_t.base d WHERE d.outcome IS NULL;
SELECT count(*) AS n_open FROM open_scores \gset

-- the counter counts what it should
SELECT ok(EXISTS (SELECT 1 FROM so_t.base d, dealrisk.deal_risk_explain(d.*) e WHERE e.factor = 'lead_source'),
	'precondition: the model uses lead_source');
SELECT is(pg_temp.reads(), 0::bigint, 'the counter starts at 0');
SELECT is((SELECT count(*) FROM so_t.deals WHERE deal_amount > 0 AND outcome IS NULL), (SELECT count(*) FROM so_t.base
	WHERE deal_amount > 0 AND outcome IS NULL), 'precondition: reading the view''s other columns...');
SELECT is(pg_temp.reads(), 0::bigint, '... reads no lead_source');
SELECT is((SELECT count(dealrisk.deal_risk(d, 'default')) FROM so_t.deals d WHERE d.outcome IS NULL), :n_open::bigint,
	'scoring every open deal of the view...');
SELECT is(pg_temp.reads(), :n_open::bigint, '... reads lead_source once per deal');
SELECT is((SELECT count(*) FROM open_scores WHERE risk >= 100), 0::bigint, 'precondition: no deal is at risk 100');

-- no high-risk deal: only scores ------------------------------------------------

SELECT is(dealrisk.watch('so_t.deals', 100), 0::bigint, 'watch() at threshold 100: no high-risk deal');
SELECT is(pg_temp.reads(), :n_open::bigint, '... scored every open deal once');
SELECT ok(EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
                  AND l.relation = 'dealrisk.models'::regclass AND l.mode = 'ShareLock'),
	'... holding dealrisk.models in SHARE mode (no model is activated between its scores and its explanations)');
SELECT is((SELECT count(*) FROM dealrisk.score_history), 0::bigint, '... and leaving no history');
SELECT is(dealrisk.refresh(), :n_open::bigint, 'refresh()');
SELECT is(pg_temp.reads(), :n_open::bigint, '... scored every open deal once');
SELECT lives_ok($$SELECT dealrisk.watch('so_t.deals', 100, top_fraction => 0.5)$$, 'watch() with a share (a cutoff over the scores)');
SELECT is(pg_temp.reads(), :n_open::bigint, '... scored every open deal once');

-- the default policy: scores, and the high-risk deals explained -------------------

DELETE FROM dealrisk.score_history;
SELECT count(*) AS n_high FROM open_scores
	WHERE risk >= dealrisk._high_risk_cutoff((SELECT array_agg(risk) FROM open_scores), 50, 0.1) \gset
SELECT is(dealrisk.watch('so_t.deals'), :n_high::bigint, 'watch() with the default policy');
SELECT is(pg_temp.reads(), :n_open + :n_high::bigint,
	'... scored every open deal once, and read each high-risk deal once more for its reason and action');
SELECT is(dealrisk.refresh(), :n_open::bigint, 'a first refresh (every high-risk deal is alerted)');
SELECT is(pg_temp.reads(), :n_open + 2 * :n_high::bigint,
	'... scored every open deal once, read each high-risk deal once for the view and once for its alert');
SELECT is((SELECT count(*) FROM dealrisk.alerts), :n_high::bigint, '... (an alert per high-risk deal)');
SELECT is(dealrisk.refresh(), :n_open::bigint, 'a second refresh (no alert)');
SELECT is(pg_temp.reads(), :n_open + :n_high::bigint, '... scored every open deal once, explained the high-risk ones');

-- the view's risks are the history's, and watch() left no history behind
SELECT set_eq($$SELECT deal_id, risk FROM dealrisk_watch.high_risk_deals$$,
	$$SELECT h.deal_id, h.risk FROM dealrisk.score_history h, dealrisk.watch_config w
	  WHERE h.scored_at = w.scored_at AND h.risk >= w.cutoff$$, 'the view holds the refresh''s scores at or above the cutoff');
SELECT is((SELECT count(DISTINCT scored_at) FROM dealrisk.score_history), 2::bigint, 'the history holds the two refreshes only');

-- a REFRESH by hand shows the latest scoring again: it explains, scores nothing
SELECT count(*) AS n_view FROM dealrisk_watch.high_risk_deals \gset
REFRESH MATERIALIZED VIEW CONCURRENTLY dealrisk_watch.high_risk_deals;
SELECT is(pg_temp.reads(), :n_view::bigint, 'a REFRESH by hand reads only the high-risk deals, to explain them');
SELECT set_eq($$SELECT deal_id, risk FROM dealrisk_watch.high_risk_deals$$,
	$$SELECT h.deal_id, h.risk FROM dealrisk.score_history h, dealrisk.watch_config w
	  WHERE h.scored_at = w.scored_at AND h.risk >= w.cutoff$$, '... and holds the same scores');
-- between watch() and the first refresh() there are no scores to show
SELECT lives_ok($$SELECT dealrisk.watch('so_t.deals', 60)$$, 'watch() again');
REFRESH MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
SELECT is((SELECT count(*) FROM dealrisk_watch.high_risk_deals), 0::bigint,
	'a REFRESH by hand after watch() finds no scores of its time: empty until the next refresh()');
SELECT is(dealrisk.refresh(), :n_open::bigint, 'refresh()');
SELECT is((SELECT count(*) FROM dealrisk_watch.high_risk_deals), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'... fills it again');

-- a history entry dated after the clock (a clock set back): watch() scores
-- after it, and removes only its own scores
UPDATE dealrisk.score_history SET scored_at = scored_at + interval '1 day'
	WHERE scored_at = (SELECT max(scored_at) FROM dealrisk.score_history);
SELECT count(*) AS hist_n FROM dealrisk.score_history \gset
SELECT is(dealrisk.watch('so_t.deals', 60), (SELECT count(*) FROM open_scores WHERE risk >= 60),
	'watch() after a history entry dated tomorrow');
SELECT is((SELECT count(*) FROM dealrisk.score_history), :hist_n::bigint, '... leaves the history as it was');

SELECT * FROM finish();
ROLLBACK;
