-- Alerts a manager can act on (issue #9, section 3): the alert policy.
-- watch_config gains the policy (top_fraction, rise, max_per_rep) and the
-- cutoff it gave; refresh_log remembers each refresh's cutoff; watch() takes
-- the policy (a new signature); the view, refresh() and digest() keep to
-- the cutoff; alerts never carry a "*" fallback action such as "On track".

-- The configuration row of 0.2.0 becomes what watch(source, threshold,
-- model) writes in 0.3.0: a threshold alone keeps its meaning (every open
-- deal at or above it, top_fraction 1), and a high-risk deal whose risk
-- rises 15 points is alerted again.  No deal that was not alerted before is
-- left out, and no policy changes behind the user's back.  (0.2.0's
-- default threshold, 60, alerts on about half the open deals of a typical
-- pipeline: docs/operations.md says how to move to the new default.  A
-- NOTICE here would not be seen: extension scripts run with
-- client_min_messages at WARNING.)
-- (columns without a default, so that no "missing value" stays behind in
-- the catalog: an upgraded table dumps like a fresh one)
ALTER TABLE dealrisk.watch_config
	ADD COLUMN top_fraction float8 CHECK (top_fraction > 0 AND top_fraction <= 1),
	ADD COLUMN rise float8 CHECK (rise > 0 AND rise <= 100),
	ADD COLUMN max_per_rep int CHECK (max_per_rep >= 1),
	ADD COLUMN cutoff float8;
UPDATE dealrisk.watch_config SET top_fraction = 1, rise = 15;
ALTER TABLE dealrisk.watch_config ALTER COLUMN top_fraction SET NOT NULL;
COMMENT ON TABLE dealrisk.watch_config IS
	'What dealrisk.refresh() watches (one row, set by dealrisk.watch()): the deal source, the model name, the alert policy (threshold, top_fraction, rise, max_per_rep), the cutoff it gave at the latest scoring, when the deals were last scored and the SQL of dealrisk_watch.high_risk_deals';
COMMENT ON COLUMN dealrisk.watch_config.threshold IS
	'The lowest risk (0-100) of a high-risk deal';
COMMENT ON COLUMN dealrisk.watch_config.top_fraction IS
	'At most this share of the open deals is high-risk: the riskiest ones (1: every open deal at or above the threshold)';
COMMENT ON COLUMN dealrisk.watch_config.rise IS
	'A high-risk deal whose risk rose at least this many points since its previous scoring is alerted again; NULL: never';
COMMENT ON COLUMN dealrisk.watch_config.max_per_rep IS
	'At most this many alerts per sales rep per refresh, the riskiest first; NULL: no cap';
COMMENT ON COLUMN dealrisk.watch_config.cutoff IS
	'The risk at or above which an open deal was high-risk at the latest scoring (watch() or refresh()): the threshold, or higher to keep to top_fraction; Infinity when no deal qualified';

-- Each refresh's cutoff (unknown for the refreshes before 0.3.0: NULL).
ALTER TABLE dealrisk.refresh_log ADD COLUMN cutoff float8;
COMMENT ON COLUMN dealrisk.refresh_log.cutoff IS
	'The risk at or above which an open deal was high-risk at this refresh (dealrisk.watch_config.cutoff then); NULL for refreshes before dealrisk 0.3.0';

COMMENT ON TABLE dealrisk.alerts IS
	'Outbox of risk alerts: one row per deal that became high-risk at a dealrisk.refresh() (or, already high-risk, whose risk rose sharply); mailers take rows with dealrisk.claim_alerts(), render them with dealrisk.alert_text() and confirm them with dealrisk.ack_alert()';
COMMENT ON COLUMN dealrisk.alerts.payload IS
	'{"threshold", "top_fraction", "cutoff", "cause" (became high-risk / risk rose), "model", "explain": [{factor, value, effect, reason}, ...]}: everything a message needs';
COMMENT ON COLUMN dealrisk.alerts.action IS
	'What to do: the recommended_action() of a factor rule, else the rule of the factor that adds the most risk, else a review naming that factor (dealrisk._alert_action); never the "On track" fallback';

-- New helpers (not PUBLIC, like the helpers of refresh() and watch()).
CREATE FUNCTION dealrisk._high_risk_cutoff(risks float8[], threshold float8, top_fraction float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN top_fraction >= 1 THEN threshold
	       ELSE greatest(threshold, coalesce(
	            (SELECT pg_catalog.min(x.r)
	             FROM (SELECT u.r, pg_catalog.count(*) OVER (ORDER BY u.r DESC) AS taken
	                   FROM pg_catalog.unnest(risks) u(r) WHERE u.r IS NOT NULL) x
	             WHERE x.taken <= pg_catalog.floor(top_fraction::numeric
	                        * (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(risks) v(r) WHERE v.r IS NOT NULL))),
	            'Infinity'::float8)) END
$$;
COMMENT ON FUNCTION dealrisk._high_risk_cutoff(float8[], float8, float8) IS
	'The risk at or above which open deals are high-risk: the threshold, raised so that at most top_fraction of the deals qualify; Infinity when none may (internal)';

CREATE FUNCTION dealrisk._alert_action(rule_action text, top_factor text, top_effect float8, top_reason text,
	factors text[], actions text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF rule_action OPERATOR(pg_catalog.=) ANY (actions) THEN
		RETURN rule_action;
	ELSIF top_effect > 0 THEN
		RETURN coalesce(actions[pg_catalog.array_position(factors, top_factor)],
		                'Review the deal with the sales manager this week, starting with what adds the most risk: ' || top_reason);
	END IF;
	RETURN 'Review the deal with the sales manager this week: no single factor adds to its risk, which is the model''s base risk for any deal';
END
$$;
COMMENT ON FUNCTION dealrisk._alert_action(text, text, float8, text, text[], text[]) IS
	'The action of an alert: a factor rule''s recommended action, else the rule of the factor that adds the most risk, else a review naming it; never a "*" fallback such as "On track"; factors and actions: the factor rules, best first (internal)';

CREATE FUNCTION dealrisk._policy_words(threshold float8, top_fraction float8)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN top_fraction >= 1 THEN pg_catalog.format('risk at least %s', threshold)
            ELSE pg_catalog.format('the riskiest %s%% of the open deals, at risk %s or more',
                                   pg_catalog.round((100 * top_fraction)::numeric, 2)::float8, threshold) END;
COMMENT ON FUNCTION dealrisk._policy_words(float8, float8) IS
	'The alert policy in words, e.g. ''the riskiest 10% of the open deals, at risk 50 or more'' (internal)';

REVOKE EXECUTE ON FUNCTION
	dealrisk._high_risk_cutoff(float8[], float8, float8),
	dealrisk._alert_action(text, text, float8, text, text[], text[]),
	dealrisk._policy_words(float8, float8)
FROM PUBLIC;

-- The view's statement, its comment and the configuration's error hint.
CREATE OR REPLACE FUNCTION dealrisk._view_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format($v$CREATE MATERIALIZED VIEW dealrisk_watch.high_risk_deals AS
SELECT s.deal_id, s.risk, dealrisk.risk_band(s.risk) AS band, t.reason AS top_reason,
       dealrisk._alert_action(dealrisk.recommended_action(s.deal, s.model), t.factor,
                              pg_catalog.round(t.effect::numeric, 2)::float8, t.reason,
                              r.factors, r.actions) AS recommended_action,
       s.deal_amount, s.sales_rep_id, s.deal_stage, s.days_in_stage, s.scored_at
FROM (
	SELECT d.deal_id::text AS deal_id, d AS deal, w.model, w.cutoff, w.scored_at,
	       dealrisk.deal_risk(d, w.model) AS risk,
	       d.deal_amount::numeric AS deal_amount, d.sales_rep_id::text AS sales_rep_id,
	       d.deal_stage::text AS deal_stage,
	       (SELECT dealrisk._as_of()) - %s AS days_in_stage
	FROM %s d CROSS JOIN dealrisk.watch_config w
	WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
	OFFSET 0
) s
CROSS JOIN (SELECT pg_catalog.array_agg(a.factor ORDER BY a.priority, a.id) AS factors,
                   pg_catalog.array_agg(a.action ORDER BY a.priority, a.id) AS actions
            FROM dealrisk.action_rules a WHERE a.factor <> '*') r
LEFT JOIN LATERAL (SELECT e.factor, e.effect, e.reason FROM dealrisk.deal_risk_explain(s.deal, s.model) e LIMIT 1) t ON true
WHERE s.risk >= s.cutoff$v$,
	dealrisk._stage_start_sql(source),
	dealrisk._qualified_name(source));
COMMENT ON FUNCTION dealrisk._view_sql(regclass) IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals over a source (internal)';

CREATE OR REPLACE FUNCTION dealrisk._describe_view()
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO STRICT cfg FROM dealrisk.watch_config;
	EXECUTE pg_catalog.format('COMMENT ON MATERIALIZED VIEW dealrisk_watch.high_risk_deals IS %L',
		pg_catalog.format('High-risk open deals of %s under the active "%s" model: %s (dealrisk.watch_config.cutoff is the risk this took at the latest scoring), with their top reason and action; set up by dealrisk.watch(), refreshed by dealrisk.refresh() (docs/operations.md)',
		                  dealrisk._qualified_name(cfg.source), cfg.model, dealrisk._policy_words(cfg.threshold, cfg.top_fraction)));
END
$$;
COMMENT ON FUNCTION dealrisk._describe_view() IS
	'Sets the comment of dealrisk_watch.high_risk_deals from dealrisk.watch_config (internal)';

CREATE OR REPLACE FUNCTION dealrisk._watch_config()
RETURNS dealrisk.watch_config
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
BEGIN
	SELECT * INTO cfg FROM dealrisk.watch_config;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no deal source is watched yet'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Call dealrisk.watch() first, e.g. SELECT dealrisk.watch(''public.deals'');';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = cfg.source::pg_catalog.oid) THEN
		RAISE EXCEPTION 'the watched deal source (OID %) no longer exists', cfg.source::oid
			USING ERRCODE = 'undefined_table',
			      HINT = 'Watch another source: SELECT dealrisk.watch(''public.deals'');';
	END IF;
	RETURN cfg;
END
$$;
COMMENT ON FUNCTION dealrisk._watch_config() IS
	'The dealrisk.watch_config row; an error when nothing is watched or the source is gone (internal)';

-- watch() takes the policy: a new signature.  The roles that could call
-- the old one may call the new one (made first, so that the old one's
-- grants can be read), then the old one goes.
CREATE FUNCTION dealrisk.watch(source regclass, threshold float8 DEFAULT NULL, model text DEFAULT 'default',
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
	SELECT * INTO old FROM dealrisk.watch_config;
	-- the cutoff over the open deals' scores of the moment
	IF top < 1 THEN
		EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(dealrisk.deal_risk(d, $1)) FROM %s d'
			' WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL', source)
			INTO risks USING model;
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
	-- the view belongs to its creator: count it only when that role's code
	-- may run as the caller (its indexes, say)
	PERFORM dealrisk._check_relation_trust('dealrisk_watch.high_risk_deals');
	SELECT count(*) INTO n FROM dealrisk_watch.high_risk_deals;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) IS
	'Watches the open deals of a source: remembers source, model and alert policy in dealrisk.watch_config and (re)builds the materialized view dealrisk_watch.high_risk_deals of the high-risk open deals (risk at least threshold, default 50, and among the riskiest top_fraction, default 0.1, or 1 when a threshold is given); rise re-alerts a high-risk deal whose risk rose that many points (default 15, NULL never), max_per_rep caps the alerts per rep and refresh (NULL: no cap); returns how many deals the view holds';
REVOKE EXECUTE ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) FROM PUBLIC;
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.watch(regclass, float8, text)'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk.watch(regclass, float8, text, float8, float8, int) TO %s%s',
			CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
END
$$;
DROP FUNCTION dealrisk.watch(regclass, float8, text);

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

	-- 1. every open deal's score
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

	-- 3. the view, concurrently (readers keep reading the old rows); rebuilt
	-- when missing (dropped, or not restored).  A change in the source's
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
		cfg.source)
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
	RETURN scored;
END
$$;
COMMENT ON FUNCTION dealrisk.refresh() IS
	'Rescores the watched open deals: appends every score to dealrisk.score_history, applies the alert policy of dealrisk.watch_config (the cutoff), refreshes dealrisk_watch.high_risk_deals concurrently, writes an alert per deal that became high-risk (or whose risk rose sharply), sends NOTIFY dealrisk_alerts and records the run in dealrisk.refresh_log; all in the caller''s transaction; returns the number of open deals scored';

CREATE OR REPLACE FUNCTION dealrisk.digest(period interval DEFAULT '7 days', min_change float8 DEFAULT 5)
RETURNS TABLE (sales_rep_id text, is_total boolean, open_deals bigint, pipeline_value numeric,
	high_risk_deals bigint, value_at_risk numeric, share_at_risk float8,
	became_high_risk bigint, risk_fell bigint, amounts_not_finite bigint)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cfg dealrisk.watch_config;
	cut float8;
BEGIN
	IF period IS NULL OR period <= interval '0' THEN
		RAISE EXCEPTION 'period must be a positive interval, got %', coalesce(period::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value', HINT = 'E.g. ''7 days'' for a weekly digest.';
	END IF;
	IF min_change IS NULL OR NOT (min_change > 0 AND min_change <= 100) THEN
		RAISE EXCEPTION 'min_change must be between 0 (exclusive) and 100 risk points, got %', coalesce(min_change::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	cfg := dealrisk._watch_config();
	-- reading the source must run no code of a role the caller does not
	-- trust (docs/security.md); the high-risk deals come from the latest
	-- refresh's scores in dealrisk.score_history, not from the view, which
	-- belongs to the operator
	PERFORM dealrisk._check_source(cfg.source, ARRAY['deal_id', 'outcome', 'sales_rep_id', 'deal_amount']);
	-- high-risk: at least the cutoff of the alert policy at the latest
	-- refresh (refresh_log; for scores without a log row, the configuration's)
	SELECT l.cutoff INTO cut FROM dealrisk.refresh_log l
	WHERE l.scored_at = (SELECT pg_catalog.max(x.scored_at) FROM dealrisk.score_history x)
	ORDER BY l.id DESC LIMIT 1;
	cut := coalesce(cut, cfg.cutoff, cfg.threshold);
	RETURN QUERY EXECUTE pg_catalog.format($q$
		WITH r AS (
			SELECT d.deal_id::text AS deal_id, d.sales_rep_id::text AS rep, d.deal_amount::numeric AS raw_amount
			FROM %s d WHERE dealrisk.is_won(d.outcome) IS NULL AND d.deal_id IS NOT NULL
		),
		o AS (
			-- a NaN or infinite amount is counted, and left out of the sums
			SELECT r.deal_id, r.rep,
			       CASE WHEN r.raw_amount NOT IN ('NaN', 'Infinity', '-Infinity') THEN r.raw_amount END AS amount,
			       (r.raw_amount IN ('NaN', 'Infinity', '-Infinity'))::int AS bad_amount
			FROM r
		),
		latest AS (
			SELECT DISTINCT ON (h.deal_id) h.deal_id, h.risk, h.scored_at
			FROM dealrisk.score_history h WHERE h.scored_at > pg_catalog.now() - $1
			ORDER BY h.deal_id, h.scored_at DESC
		),
		moved AS (
			-- the risk at the start of the period (the last score before it,
			-- else the first score in it) against the latest
			SELECT l.deal_id, coalesce(b.risk, f.risk) - l.risk AS fall
			FROM latest l
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at <= pg_catalog.now() - $1 ORDER BY p.scored_at DESC LIMIT 1) b ON true
			LEFT JOIN LATERAL (SELECT p.risk FROM dealrisk.score_history p WHERE p.deal_id = l.deal_id
			                   AND p.scored_at > pg_catalog.now() - $1 ORDER BY p.scored_at LIMIT 1) f ON true
		),
		became AS (
			SELECT DISTINCT ON (a.deal_id) a.deal_id, a.sales_rep_id AS rep
			FROM dealrisk.alerts a WHERE a.created_at > pg_catalog.now() - $1
			  AND coalesce(a.payload ->> 'cause', 'became high-risk') = 'became high-risk'
			ORDER BY a.deal_id, a.created_at DESC
		),
		per_deal AS (
			SELECT o.rep, 1 AS open_deal, o.amount, (v.deal_id IS NOT NULL)::int AS high,
			       CASE WHEN v.deal_id IS NOT NULL THEN o.amount END AS amount_high, 0 AS became,
			       (m.fall >= $2)::int AS fell, o.bad_amount
			FROM o
			LEFT JOIN (SELECT h.deal_id FROM dealrisk.score_history h
			           WHERE h.scored_at = (SELECT max(x.scored_at) FROM dealrisk.score_history x)
			             AND h.risk >= $3) v ON v.deal_id = o.deal_id
			LEFT JOIN moved m ON m.deal_id = o.deal_id
			UNION ALL
			SELECT b.rep, 0, NULL, 0, NULL, 1, 0, 0 FROM became b
		)
		SELECT r.rep, GROUPING(r.rep) = 1, sum(r.open_deal)::bigint, coalesce(sum(r.amount), 0),
		       sum(r.high)::bigint, coalesce(sum(r.amount_high), 0),
		       CASE WHEN sum(r.amount) > 0 THEN (coalesce(sum(r.amount_high), 0) / sum(r.amount))::float8 END,
		       sum(r.became)::bigint, coalesce(sum(r.fell), 0)::bigint, sum(r.bad_amount)::bigint
		FROM per_deal r
		GROUP BY GROUPING SETS ((r.rep), ())
		ORDER BY GROUPING(r.rep), 6 DESC, 1 NULLS LAST$q$, cfg.source)
		USING period, min_change, cut;
END
$$;
COMMENT ON FUNCTION dealrisk.digest(interval, float8) IS
	'Weekly digest per sales rep and in total (is_total): open deals and pipeline value, high-risk deals (risk at least the cutoff of the alert policy at the latest refresh) and the value at risk and its share, deals that became high-risk in the period (their alerts; not the re-alerts of a risk that rose), open deals whose risk fell by at least min_change points over the period (score history), and open deals whose deal_amount is NaN or infinite (counted, left out of the sums)';

-- The roles that may run the daily loop (EXECUTE on refresh() or on
-- watch()) get the new helpers that refresh() and the rebuilt view call,
-- as GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk gave them the others
-- (docs/security.md).
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT a.grantee
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) ANY (ARRAY['dealrisk.refresh()'::regprocedure::oid,
		          'dealrisk.watch(regclass, float8, text, float8, float8, int)'::regprocedure::oid])
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._high_risk_cutoff(float8[], float8, float8),'
			' dealrisk._alert_action(text, text, float8, text, text[], text[]), dealrisk._policy_words(float8, float8) TO %I',
			pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;
