-- Score once per refresh (issue #10, item 7): dealrisk_watch.high_risk_deals
-- reads the scores that refresh() (or watch()) has just written to
-- dealrisk.score_history for watch_config.scored_at instead of scoring every
-- open deal again; watch() scores the open deals once (into the history,
-- removed again before it returns) for both its cutoff and its view, and
-- locks dealrisk.models like refresh().  A view of the old statement is
-- rebuilt by the next refresh() or watch() (its shape differs), or kept
-- and refreshed with a warning while other views depend on it.

CREATE OR REPLACE FUNCTION dealrisk._view_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format($v$CREATE MATERIALIZED VIEW dealrisk_watch.high_risk_deals AS
SELECT s.deal_id, s.risk, dealrisk.risk_band(s.risk) AS band, t.reason AS top_reason,
       dealrisk._alert_action(dealrisk.recommended_action(s.deal, s.model), t.factor,
                              pg_catalog.round(t.effect::numeric, 2)::float8, t.reason,
                              (SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id)
                               FROM dealrisk.action_rules a WHERE a.factor <> '*'),
                              (SELECT pg_catalog.array_agg(a.action ORDER BY a.priority, a.id)
                               FROM dealrisk.action_rules a WHERE a.factor <> '*')) AS recommended_action,
       s.deal_amount, s.sales_rep_id, s.deal_stage, s.days_in_stage, s.scored_at
FROM (
	SELECT h.deal_id, d AS deal, (SELECT w.model FROM dealrisk.watch_config w) AS model, h.scored_at, h.risk,
	       d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
	       d.deal_stage::text AS deal_stage,
	       (SELECT dealrisk._as_of()) - %s AS days_in_stage
	FROM dealrisk.score_history h
	JOIN %s d ON d.deal_id::text = h.deal_id
	WHERE h.scored_at = (SELECT w.scored_at FROM dealrisk.watch_config w)
	  AND h.risk >= (SELECT w.cutoff FROM dealrisk.watch_config w)
	  AND dealrisk.is_won(d.outcome) IS NULL
	OFFSET 0
) s
LEFT JOIN LATERAL (SELECT e.factor, e.effect, e.reason FROM dealrisk.deal_risk_explain(s.deal, s.model) e LIMIT 1) t ON true$v$,
	dealrisk._stage_start_sql(source),
	dealrisk._qualified_name(source));
COMMENT ON FUNCTION dealrisk._view_sql(regclass) IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals over a source: the high-risk deals of the scores in dealrisk.score_history at watch_config.scored_at, explained (internal)';

CREATE OR REPLACE FUNCTION dealrisk._view_shape(view_sql text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.regexp_replace(view_sql, '\n\tJOIN .* d ON d\.deal_id::text = h\.deal_id\n',
                                 E'\n\tJOIN <source> d ON d.deal_id::text = h.deal_id\n');
COMMENT ON FUNCTION dealrisk._view_shape(text) IS
	'A statement of _view_sql without the source''s name, to compare views across renames (internal)';

CREATE OR REPLACE FUNCTION dealrisk.watch(source regclass, threshold float8 DEFAULT NULL, model text DEFAULT 'default',
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
	detail text;
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
	-- and no model is activated meanwhile: the view explains the deals with
	-- the model that scored them
	LOCK TABLE dealrisk.models IN SHARE MODE;
	SELECT * INTO old FROM dealrisk.watch_config;
	-- a scoring time after every one in the history (the rows written
	-- below are removed again by that time alone)
	ts := greatest(ts, (SELECT pg_catalog.max(h.scored_at) FROM dealrisk.score_history h) + interval '1 microsecond');
	-- every open deal scored once, as refresh() does, into the history at
	-- ts: the cutoff and the view read these scores, and they are removed
	-- before watch() returns (watch() writes no history; no other
	-- transaction ever sees them)
	BEGIN
		EXECUTE pg_catalog.format(
			'INSERT INTO dealrisk.score_history (deal_id, scored_at, model_id, risk)'
			' SELECT d.deal_id::text, $1, dealrisk._scoring_model($2), dealrisk.deal_risk(d, $2) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', source)
			USING ts, model;
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		PERFORM dealrisk._duplicate_deals(source, detail);
	END;
	-- the cutoff over these scores
	IF top < 1 THEN
		SELECT pg_catalog.array_agg(h.risk) INTO risks FROM dealrisk.score_history h WHERE h.scored_at = ts;
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
	DELETE FROM dealrisk.score_history h WHERE h.scored_at = ts;
	-- the view belongs to its creator: count it only when that role's code
	-- may run as the caller (its indexes, say)
	PERFORM dealrisk._check_relation_trust('dealrisk_watch.high_risk_deals');
	SELECT count(*) INTO n FROM dealrisk_watch.high_risk_deals;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) IS
	'Watches the open deals of a source: remembers source, model and alert policy in dealrisk.watch_config and (re)builds the materialized view dealrisk_watch.high_risk_deals of the high-risk open deals (risk at least threshold, default 50, and among the riskiest top_fraction, default 0.1, or 1 when a threshold is given); rise re-alerts a high-risk deal whose risk rose that many points (default 15, NULL never), max_per_rep caps the alerts per rep and refresh (NULL: no cap); returns how many deals the view holds';

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
	src_rows text;
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

	-- 1. every open deal's score: the only time this refresh scores the
	-- deals (the cutoff, the view and the alerts read these rows; only the
	-- high-risk ones are explained, with the same model)
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

	-- 3. the view of these scores, concurrently (readers keep reading the
	-- old rows); rebuilt when missing (dropped, or not restored).  A change in the source's
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
	-- A Citus distributed source: its high-risk deals of this refresh,
	-- picked on the workers by the ids of their scores, are read into a
	-- temporary table of the coordinator, where the history is (Citus does
	-- not join a distributed table with the coordinator's own tables in
	-- this statement's LATERAL joins).
	src_rows := cfg.source::pg_catalog.text;
	IF dealrisk._distributed(cfg.source) THEN
		IF pg_catalog.to_regclass('pg_temp.dealrisk_refresh_rows') IS NOT NULL THEN
			DROP TABLE pg_temp.dealrisk_refresh_rows;
		END IF;
		EXECUTE pg_catalog.format(
			'CREATE TEMP TABLE dealrisk_refresh_rows ON COMMIT DROP AS SELECT * FROM %s s'
			' WHERE s.deal_id::pg_catalog.text IN (SELECT h.deal_id FROM dealrisk.score_history h'
			' WHERE h.scored_at OPERATOR(pg_catalog.=) %L::pg_catalog.timestamptz'
			' AND h.risk OPERATOR(pg_catalog.>=) %L::pg_catalog.float8)', cfg.source, ts, cut);
		src_rows := 'pg_temp.dealrisk_refresh_rows';
	END IF;
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
		src_rows)
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

	-- 7. the views of dealrisk_bi, once set_source() chose what they report
	-- on (src/bi.sql): each section is computed on its own and a failing one
	-- is left empty with its reason in dealrisk_bi.status; when the whole
	-- build fails (its source is gone, say), the refresh above still
	-- commits and a warning says why
	IF EXISTS (SELECT 1 FROM dealrisk.bi_config) THEN
		BEGIN
			PERFORM dealrisk._bi_build();
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS detail = MESSAGE_TEXT;
			RAISE WARNING 'dealrisk.refresh(): the views of dealrisk_bi keep their previous numbers: %', detail
				USING HINT = 'See SELECT * FROM dealrisk_bi.status; call dealrisk.set_source() with the deal source.';
		END;
	END IF;
	RETURN scored;
END
$$;
COMMENT ON FUNCTION dealrisk.refresh() IS
	'Rescores the watched open deals: appends every score to dealrisk.score_history, applies the alert policy of dealrisk.watch_config (the cutoff), refreshes dealrisk_watch.high_risk_deals concurrently, writes an alert per deal that became high-risk (or whose risk rose sharply), sends NOTIFY dealrisk_alerts and records the run in dealrisk.refresh_log; all in the caller''s transaction; returns the number of open deals scored';
