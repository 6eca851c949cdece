-- ops.sql: operations (watch, refresh, schedule, history, alerts, digest,
-- track) and the privileges of the whole extension; see docs/operations.md
-- and docs/security.md.
--
-- The daily loop: watch() configures which deals are watched and the alert
-- policy (which open deals are high-risk: by default the riskiest 10%, at
-- risk 50 or more) and builds the materialized view
-- dealrisk_watch.high_risk_deals; refresh() (scheduled by pg_cron through
-- schedule()) rescores the open deals, appends the scores to
-- dealrisk.score_history, turns the policy into a cutoff, refreshes the view
-- concurrently and writes one alert per deal that became high-risk (or
-- whose risk rose sharply) into the outbox dealrisk.alerts, from which
-- mailers claim, render and acknowledge them.
--
-- Source names are spliced into SQL only as the regclass's own text (quoted
-- by PostgreSQL), column names only through format('%I'), literals through
-- format('%L') or parameters.  No function here is SECURITY DEFINER: each
-- runs with the caller's privileges, and the grants of docs/security.md say
-- who may call what.  This file is the last part of the install script: the
-- REVOKEs at its end cover the functions of the earlier parts too (src/citus.sql,
-- after it, revokes its own).

-- The schema of what watch() creates ------------------------------------
-- The materialized view dealrisk_watch.high_risk_deals is created by the role
-- that calls watch() (and refreshed by it: REFRESH needs the owner).  It
-- lives in a schema of its own so that an operator can be given CREATE there
-- without CREATE on dealrisk: a role that could create objects in dealrisk
-- could plant a function or an overload that other roles' calls resolve to
-- (docs/security.md).  Nothing in dealrisk resolves names in dealrisk_watch.
CREATE SCHEMA dealrisk_watch;
COMMENT ON SCHEMA dealrisk_watch IS
	'Objects dealrisk.watch() creates for the role that runs the daily loop: the materialized view high_risk_deals';

-- Configuration, history, outbox ----------------------------------------

CREATE TABLE dealrisk.watch_config (
	singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	source          regclass NOT NULL,
	threshold       float8 NOT NULL CHECK (threshold >= 0 AND threshold <= 100),
	model           text NOT NULL CHECK (pg_catalog.btrim(model) <> ''),
	configured_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
	configured_by   text NOT NULL DEFAULT CURRENT_USER,
	scored_at       timestamptz,
	view_definition text,
	top_fraction    float8 NOT NULL CHECK (top_fraction > 0 AND top_fraction <= 1),
	rise            float8 CHECK (rise > 0 AND rise <= 100),
	max_per_rep     int CHECK (max_per_rep >= 1),
	cutoff          float8
);
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
COMMENT ON COLUMN dealrisk.watch_config.scored_at IS
	'Time of the latest scoring (watch() or refresh()): the scored_at of the view and of the latest score_history entries';
COMMENT ON COLUMN dealrisk.watch_config.view_definition IS
	'The CREATE MATERIALIZED VIEW statement of dealrisk_watch.high_risk_deals; watch() replaces the view only for another source or when the source gained or lost stage_entered_date';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.watch_config', '');

CREATE TABLE dealrisk.score_history (
	deal_id    text NOT NULL,
	scored_at  timestamptz NOT NULL,
	model_id   bigint,
	risk       float8 NOT NULL,
	PRIMARY KEY (deal_id, scored_at)
);
CREATE INDEX score_history_scored_at ON dealrisk.score_history (scored_at);
COMMENT ON TABLE dealrisk.score_history IS
	'Every open deal''s risk at every dealrisk.refresh(): deal_id, time, model id (dealrisk.models.id), risk 0-100';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.score_history', '');

CREATE TABLE dealrisk.alerts (
	id             bigserial PRIMARY KEY,
	deal_id        text NOT NULL,
	created_at     timestamptz NOT NULL,
	source         text NOT NULL,
	model_id       bigint,
	risk           float8 NOT NULL,
	previous_risk  float8,
	band           text NOT NULL,
	reason         text,
	action         text,
	industry       text,
	deal_amount    numeric,
	sales_rep_id   text,
	deal_stage     text,
	days_in_stage  int,
	payload        jsonb NOT NULL DEFAULT '{}',
	claimed_at     timestamptz,
	claimed_by     text,
	claims         int NOT NULL DEFAULT 0,
	acked_at       timestamptz,
	UNIQUE (deal_id, created_at)
);
CREATE INDEX alerts_unacked ON dealrisk.alerts (id) WHERE acked_at IS NULL;
COMMENT ON TABLE dealrisk.alerts IS
	'Outbox of risk alerts: one row per deal that became high-risk at a dealrisk.refresh() (or, already high-risk, whose risk rose sharply); mailers take rows with dealrisk.claim_alerts(), render them with dealrisk.alert_text() and confirm them with dealrisk.ack_alert()';
COMMENT ON COLUMN dealrisk.alerts.created_at IS 'The refresh that raised the alert (= score_history.scored_at)';
COMMENT ON COLUMN dealrisk.alerts.previous_risk IS 'The deal''s risk at its previous scoring; NULL when it was scored for the first time';
COMMENT ON COLUMN dealrisk.alerts.reason IS 'The top reason: the first row of dealrisk.deal_risk_explain()';
COMMENT ON COLUMN dealrisk.alerts.action IS
	'What to do: the recommended_action() of a factor rule, else the rule of the factor that adds the most risk, else a review naming that factor (dealrisk._alert_action); never the "On track" fallback';
COMMENT ON COLUMN dealrisk.alerts.payload IS
	'{"threshold", "top_fraction", "cutoff", "cause" (became high-risk / risk rose), "model", "explain": [{factor, value, effect, reason}, ...]}: everything a message needs';
COMMENT ON COLUMN dealrisk.alerts.claimed_at IS 'When a worker last claimed the alert; claimable again after the reclaim timeout unless acknowledged';
COMMENT ON COLUMN dealrisk.alerts.claims IS 'How many times the alert was claimed (more than one: a worker died or timed out)';
COMMENT ON COLUMN dealrisk.alerts.acked_at IS 'When delivery was confirmed (dealrisk.ack_alert()); acknowledged alerts are never claimed again';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.alerts_id_seq', '');

-- The record of refreshes and of the pg_cron job ----------------------------
-- refresh() appends a row in its own transaction: a row is a refresh that
-- committed (a failed one rolls back with its row; pg_cron's
-- cron.job_run_details says that it failed).  Dumped like the history and
-- the alerts it describes, so that after a restore dealrisk.refresh_status
-- tells the true age of the restored scores.  One row per refresh: 365 a
-- year for a daily job.
CREATE TABLE dealrisk.refresh_log (
	id              bigserial PRIMARY KEY,
	started_at      timestamptz NOT NULL,
	finished_at     timestamptz NOT NULL,
	scored_at       timestamptz NOT NULL,
	deals_scored    bigint NOT NULL,
	alerts_written  bigint NOT NULL,
	model_id        bigint,
	model           text,
	source          text,
	run_by          text NOT NULL DEFAULT CURRENT_USER,
	pid             int,
	cutoff          float8
);
CREATE INDEX refresh_log_finished_at ON dealrisk.refresh_log (finished_at);
COMMENT ON TABLE dealrisk.refresh_log IS
	'One row per dealrisk.refresh() that committed: when it started and finished, the scoring time, how many open deals it scored and alerts it wrote, the model, the source, the role and the backend (a failed refresh leaves no row: see dealrisk.refresh_status)';
COMMENT ON COLUMN dealrisk.refresh_log.scored_at IS 'The scoring time of the refresh (= score_history.scored_at and alerts.created_at)';
COMMENT ON COLUMN dealrisk.refresh_log.run_by IS 'current_user of the refresh (the pg_cron job''s role when pg_cron ran it)';
COMMENT ON COLUMN dealrisk.refresh_log.cutoff IS
	'The risk at or above which an open deal was high-risk at this refresh (dealrisk.watch_config.cutoff then); NULL for refreshes before dealrisk 0.3.0';
COMMENT ON COLUMN dealrisk.refresh_log.pid IS 'The backend''s process id (cron.job_run_details.job_pid when pg_cron ran it)';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_log', '');
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_log_id_seq', '');

-- The pg_cron job of dealrisk.schedule() in this database, whoever owns it:
-- pg_cron shows a non-superuser only its own jobs (row-level security on
-- cron.job), so this row is how schedule() and unschedule() of one role know
-- about another role's job.  Dumped like cron.job, which pg_cron dumps.
CREATE TABLE dealrisk.refresh_job (
	singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	job_id        bigint NOT NULL,
	username      text NOT NULL,
	schedule      text NOT NULL,
	scheduled_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
	scheduled_by  text NOT NULL DEFAULT SESSION_USER
);
COMMENT ON TABLE dealrisk.refresh_job IS
	'The pg_cron job ''dealrisk-refresh'' of this database (one row, kept by dealrisk.schedule() and dealrisk.unschedule()): its id, the role it runs as, its schedule, when and by which session user it was scheduled';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.refresh_job', '');

-- Helpers ---------------------------------------------------------------

-- The id of the active model of a name, or an error naming the name.
CREATE FUNCTION dealrisk._active_model(model text)
RETURNS bigint
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	mid bigint;
BEGIN
	IF model IS NULL THEN
		RAISE EXCEPTION 'model name must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'The default model is named ''default''.';
	END IF;
	SELECT m.id INTO mid FROM dealrisk.models m WHERE m.name = model AND m.active;
	IF mid IS NULL THEN
		RAISE EXCEPTION 'no active deal risk model named "%"', model
			USING ERRCODE = 'no_data_found',
			      HINT = pg_catalog.format('Train one first: SELECT dealrisk.train(''public.deals'', name => %L);', model);
	END IF;
	RETURN mid;
END
$$;
COMMENT ON FUNCTION dealrisk._active_model(text) IS
	'The id of the active model of a name; an error when there is none (internal)';

-- A relation's schema-qualified, quoted name, whatever the search_path.
CREATE FUNCTION dealrisk._qualified_name(rel regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = rel::pg_catalog.oid);
COMMENT ON FUNCTION dealrisk._qualified_name(regclass) IS
	'A relation''s schema-qualified name, quoted where needed (internal)';

-- The day an open deal of source (alias d) entered its current stage, as SQL:
-- stage_entered_date when the source has it, else created_date; an infinite
-- or missing date is NULL (the deal's days in stage are then unknown, and
-- never an error that stops a refresh).
CREATE FUNCTION dealrisk._stage_start_sql(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.format('coalesce(%s%s)',
	CASE WHEN dealrisk._has_column(source, 'stage_entered_date')
	     THEN 'CASE WHEN pg_catalog.isfinite(d.stage_entered_date::date) THEN d.stage_entered_date::date END, ' ELSE '' END,
	'CASE WHEN pg_catalog.isfinite(d.created_date::date) THEN d.created_date::date END');
COMMENT ON FUNCTION dealrisk._stage_start_sql(regclass) IS
	'SQL for the day an open deal entered its stage (stage_entered_date, else created_date; NULL when infinite) (internal)';

-- The cutoff of the alert policy over the risks of every open deal: the
-- threshold, raised when needed so that at most top_fraction of the open
-- deals (rounded down) are at or above it.  Deals that tie at the boundary
-- are all in or all out (out when taking them would pass the share), so the
-- share is a promise.  Infinity when no deal may be taken (e.g. 10% of nine
-- deals).  top_fraction 1 keeps the threshold itself.
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

-- The action an alert carries.  An alert says a deal needs attention, so
-- the playbook's "*" fallbacks (the shipped rule 9 says "On track") are
-- not enough: an action of a factor rule, from recommended_action(), is
-- kept; else the rule of the factor that adds the most risk is taken even
-- below its min_effect and min_risk (the alert policy, not the rule, judged
-- the deal risky); else a review that names that factor, or says that no
-- factor adds risk.  top_* are the first row of deal_risk_explain();
-- factors and actions are the factor rules of dealrisk.action_rules (not
-- "*"), best first (priority, id), read once per statement by the caller:
-- looking the rules up per deal cost seven times as much.
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

-- The statement that creates dealrisk_watch.high_risk_deals over a source, named
-- schema-qualified (the statement is stored and may run again under another
-- search_path).  The scoring time, the cutoff of the alert policy and the
-- model name are read from dealrisk.watch_config at each refresh, and the
-- factor rules from dealrisk.action_rules (each once per refresh: InitPlans,
-- whatever the join order), so watch() replaces the view only for another
-- source (compared by OID: a rename keeps it) or when this statement
-- changed (the source gained or lost stage_entered_date, or an upgrade of
-- the extension changed the view).  The view scores nothing: its risks are
-- the ones refresh() (or watch()) has just written to dealrisk.score_history
-- for watch_config.scored_at, so that a refresh scores each open deal once;
-- the source is read for the deal's row and its segment columns, and
-- explained (reason, action) only for the deals kept, with the model of the
-- same name, which refresh() and watch() keep from changing meanwhile.
CREATE FUNCTION dealrisk._view_sql(source regclass)
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

-- A view statement of _view_sql with the source's name taken out, so that
-- statements for a renamed source compare equal (the view follows the
-- source by OID).
CREATE FUNCTION dealrisk._view_shape(view_sql text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN pg_catalog.regexp_replace(view_sql, '\n\tJOIN .* d ON d\.deal_id::text = h\.deal_id\n',
                                 E'\n\tJOIN <source> d ON d.deal_id::text = h.deal_id\n');
COMMENT ON FUNCTION dealrisk._view_shape(text) IS
	'A statement of _view_sql without the source''s name, to compare views across renames (internal)';

-- The error for open deals of a watched source that share a deal_id.
CREATE FUNCTION dealrisk._duplicate_deals(source regclass, detail text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'source "%" has open deals that share a deal_id', dealrisk._source_name(source)
		USING ERRCODE = 'unique_violation', DETAIL = coalesce(detail, ''),
		      HINT = 'deal_id must identify a deal: remove the duplicates, or watch a view that keeps one row per deal.';
END
$$;
COMMENT ON FUNCTION dealrisk._duplicate_deals(regclass, text) IS
	'Raises the error for a watched source whose open deals share a deal_id (internal)';

-- The alert policy of a watch configuration in words, e.g. "the riskiest
-- 10% of the open deals, at risk 50 or more".
CREATE FUNCTION dealrisk._policy_words(threshold float8, top_fraction float8)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN CASE WHEN top_fraction >= 1 THEN pg_catalog.format('risk at least %s', threshold)
            ELSE pg_catalog.format('the riskiest %s%% of the open deals, at risk %s or more',
                                   pg_catalog.round((100 * top_fraction)::numeric, 2)::float8, threshold) END;
COMMENT ON FUNCTION dealrisk._policy_words(float8, float8) IS
	'The alert policy in words, e.g. ''the riskiest 10% of the open deals, at risk 50 or more'' (internal)';

-- Comments dealrisk_watch.high_risk_deals with what dealrisk.watch_config
-- says it holds (source, policy, model).
CREATE FUNCTION dealrisk._describe_view()
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

-- (Re)creates dealrisk_watch.high_risk_deals over a source, keeping the grants of
-- the view it replaces, with its unique index (for REFRESH CONCURRENTLY);
-- returns the statement, which watch_config keeps.
CREATE FUNCTION dealrisk._create_view(source regclass)
RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text := dealrisk._view_sql(source);
	old regclass := pg_catalog.to_regclass('dealrisk_watch.high_risk_deals');
	grants text[] := '{}';
	g text;
	detail text;
BEGIN
	IF old IS NOT NULL THEN
		SELECT coalesce(pg_catalog.array_agg(pg_catalog.format('GRANT %s ON dealrisk_watch.high_risk_deals TO %s%s',
			a.privilege_type,
			CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END,
			CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)), '{}')
		INTO grants
		FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid = old::pg_catalog.oid AND a.grantee <> c.relowner;
		BEGIN
			DROP MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
		EXCEPTION WHEN dependent_objects_still_exist THEN
			GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
			RAISE EXCEPTION 'cannot replace dealrisk_watch.high_risk_deals for source "%": other objects depend on it',
				dealrisk._source_name(source)
				USING ERRCODE = 'dependent_objects_still_exist', DETAIL = detail,
				      HINT = 'Drop them, call dealrisk.watch() again and recreate them (watching the same source again keeps the view and its dependents).';
		END;
	END IF;
	EXECUTE view_sql;
	BEGIN
		CREATE UNIQUE INDEX high_risk_deals_deal_id ON dealrisk_watch.high_risk_deals (deal_id);
	EXCEPTION WHEN unique_violation THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		PERFORM dealrisk._duplicate_deals(source, detail);
	END;
	FOREACH g IN ARRAY grants LOOP
		EXECUTE g;
	END LOOP;
	PERFORM dealrisk._describe_view();
	RETURN view_sql;
END
$$;
COMMENT ON FUNCTION dealrisk._create_view(regclass) IS
	'(Re)creates dealrisk_watch.high_risk_deals with its unique index, keeping the grants of the view it replaces (internal)';

-- Refreshes dealrisk_watch.high_risk_deals: concurrently when it holds rows (its
-- readers keep reading the old rows meanwhile), fully when not populated.
CREATE FUNCTION dealrisk._refresh_view(source regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	detail text;
BEGIN
	IF NOT (SELECT c.relispopulated FROM pg_catalog.pg_class c WHERE c.oid = 'dealrisk_watch.high_risk_deals'::regclass::pg_catalog.oid) THEN
		REFRESH MATERIALIZED VIEW dealrisk_watch.high_risk_deals;
	ELSE
		REFRESH MATERIALIZED VIEW CONCURRENTLY dealrisk_watch.high_risk_deals;
	END IF;
EXCEPTION WHEN unique_violation OR cardinality_violation THEN
	GET STACKED DIAGNOSTICS detail = MESSAGE_TEXT;
	PERFORM dealrisk._duplicate_deals(source, detail);
END
$$;
COMMENT ON FUNCTION dealrisk._refresh_view(regclass) IS
	'Refreshes dealrisk_watch.high_risk_deals, concurrently when it is populated (internal)';

-- Rebuilds dealrisk_watch.high_risk_deals of the same source with the
-- current statement (its old one came from an older version of dealrisk or
-- from the source's columns then).  When other objects depend on the view
-- it cannot be replaced: the old view is refreshed instead, the watch
-- configuration keeps its old statement, and a warning says how to move on.
CREATE FUNCTION dealrisk._rebuild_view(source regclass, old_definition text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	view_sql text;
	detail text;
BEGIN
	BEGIN
		view_sql := dealrisk._create_view(source);
		UPDATE dealrisk.watch_config SET view_definition = view_sql;
	EXCEPTION WHEN dependent_objects_still_exist THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RAISE WARNING 'dealrisk_watch.high_risk_deals keeps its old definition: other objects depend on it'
			USING DETAIL = detail,
			      HINT = 'The view is refreshed as before. To get the new definition (infinite dates are read as missing), drop the objects that depend on it, call dealrisk.watch() again and recreate them.';
		UPDATE dealrisk.watch_config SET view_definition = old_definition;
		PERFORM dealrisk._refresh_view(source);
		PERFORM dealrisk._describe_view();
	END;
END
$$;
COMMENT ON FUNCTION dealrisk._rebuild_view(regclass, text) IS
	'Rebuilds dealrisk_watch.high_risk_deals with the current statement, or refreshes the old view with a warning while other objects depend on it (internal)';

-- The configuration row, or an error saying that watch() comes first.
CREATE FUNCTION dealrisk._watch_config()
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

-- An error unless dealrisk_watch.high_risk_deals is a materialized view
-- whose columns are of built-in types: it belongs to the role that called
-- watch(), and digest() and other readers must not run that role's code
-- (a plain view of the same name, or a column type with its own casts).
CREATE FUNCTION dealrisk._check_watch_view()
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	v regclass := pg_catalog.to_regclass('dealrisk_watch.high_risk_deals');
BEGIN
	IF v IS NULL THEN
		RETURN;
	END IF;
	IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = v::pg_catalog.oid) <> 'm' THEN
		RAISE EXCEPTION 'dealrisk_watch.high_risk_deals is not the materialized view dealrisk.watch() creates'
			USING ERRCODE = '42809',
			      HINT = 'Drop it and call dealrisk.watch() again.';
	END IF;
	PERFORM dealrisk._check_column_types(v, ARRAY(
		SELECT a.attname::text FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = v::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped));
END
$$;
COMMENT ON FUNCTION dealrisk._check_watch_view() IS
	'Raises an error when dealrisk_watch.high_risk_deals is not a materialized view of built-in column types (internal)';

-- Watch and refresh -----------------------------------------------------

-- The alert policy (docs/operations.md): an open deal is high-risk when its
-- risk is at least the threshold and it is among the riskiest top_fraction
-- of the open deals.  With neither given: at least 50, the riskiest 10%.
-- A threshold alone keeps the meaning it had before 0.3.0 (every open deal
-- at or above it); top_fraction alone keeps the threshold 50.
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

CREATE FUNCTION dealrisk.refresh()
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

CREATE FUNCTION dealrisk.prune_history(older_than interval DEFAULT '13 months')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '1 day' THEN
		RAISE EXCEPTION 'older_than must be at least 1 day, got %', coalesce(older_than::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	DELETE FROM dealrisk.score_history h WHERE h.scored_at < pg_catalog.now() - older_than;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;
COMMENT ON FUNCTION dealrisk.prune_history(interval) IS
	'Deletes score_history entries older than an interval (default 13 months); returns how many';

-- Scheduling with pg_cron -----------------------------------------------

-- Where pg_cron runs: cron.database_name (NULL when the library is not
-- loaded).  Only superusers and pg_read_all_settings may read it; for other
-- roles readable is false.
CREATE FUNCTION dealrisk._cron_database(OUT db text, OUT readable boolean)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	db := pg_catalog.current_setting('cron.database_name', true);
	readable := true;
EXCEPTION WHEN insufficient_privilege THEN
	db := NULL;
	readable := false;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_database() IS
	'cron.database_name, NULL when pg_cron is not loaded, and whether this role may read it (internal)';

-- The error raised when pg_cron is not in this database: how to enable it,
-- or, when it runs in another database, the call to make there.
CREATE FUNCTION dealrisk._cron_missing(call_there text, cron_db text, this_db text, readable boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT readable THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'This role may not read cron.database_name (that needs superuser or pg_read_all_settings), so where pg_cron runs is not known.',
			      HINT = pg_catalog.format('If pg_cron runs in another database, run there: %s Otherwise set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L in postgresql.conf, restart the server and run CREATE EXTENSION pg_cron; in database "%s".',
			                               call_there, this_db, this_db);
	ELSIF cron_db IS NOT NULL AND cron_db <> this_db THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%": it runs in database "%"', this_db, cron_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = pg_catalog.format('cron.database_name is "%s"; pg_cron schedules jobs for every database from there.', cron_db),
			      HINT = pg_catalog.format('Connect to database "%s" as a superuser (pg_cron lets only superusers act for another database) and run: %s', cron_db, call_there);
	ELSIF cron_db IS NOT NULL THEN
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'The pg_cron library is loaded and cron.database_name names this database.',
			      HINT = 'Run CREATE EXTENSION pg_cron; in this database (as a superuser), then call this function again.';
	ELSE
		RAISE EXCEPTION 'pg_cron is not installed in database "%"', this_db
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'The pg_cron library is not loaded (cron.database_name is not set).',
			      HINT = pg_catalog.format('In postgresql.conf set shared_preload_libraries = ''pg_cron'' and cron.database_name = %L, restart the server, run CREATE EXTENSION pg_cron; in database "%s", then call this function again.',
			                               this_db, this_db);
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_missing(text, text, text, boolean) IS
	'Raises the error that explains how to enable pg_cron for dealrisk.schedule() (internal)';

-- The pg_cron job runs as the role that calls schedule() (cron.job.username
-- = current_user), connected to this database.  The error when that role
-- cannot log in, is past its VALID UNTIL or may not connect here, with the
-- statements of a working setup: the session's own LOGIN role when it has
-- this role's rights (and is no superuser: the job would run as one), else
-- a LOGIN member made for the job.
CREATE FUNCTION dealrisk._check_job_role(cron text)
RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me name := CURRENT_USER;
	sess name := SESSION_USER;
	r record;
	via text := '';
	how text;
BEGIN
	SELECT a.rolcanlogin, a.rolvaliduntil INTO STRICT r FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	IF sess <> me THEN
		via := pg_catalog.format(' (set by SET ROLE in a session of "%s")', sess);
	END IF;
	IF sess <> me
	   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles s WHERE s.rolname = sess AND s.rolcanlogin AND NOT s.rolsuper
	               AND (s.rolvaliduntil IS NULL OR s.rolvaliduntil > pg_catalog.now()))
	   AND pg_catalog.pg_has_role(sess, me, 'USAGE')
	   AND pg_catalog.has_database_privilege(sess, pg_catalog.current_database(), 'CONNECT') THEN
		how := pg_catalog.format('Schedule as "%s", which can log in and has the rights of "%s": RESET ROLE; SELECT dealrisk.schedule(%L);',
		                         sess, me, cron);
	ELSE
		how := pg_catalog.format('Schedule as a LOGIN role with the rights of "%s": CREATE ROLE %I LOGIN IN ROLE %I; SET ROLE %I; SELECT dealrisk.schedule(%L);',
		                         me, me::text || '_cron', me, me::text || '_cron', cron);
	END IF;
	IF NOT r.rolcanlogin THEN
		RAISE EXCEPTION 'role "%" cannot log in: a pg_cron job running as it would fail every time', me
			USING ERRCODE = 'invalid_authorization_specification',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s, which is NOLOGIN: each run would fail with "role "%s" is not permitted to log in".',
			                                 me, via, me),
			      HINT = how || pg_catalog.format(' Or let the role log in: ALTER ROLE %I LOGIN;', me);
	END IF;
	IF r.rolvaliduntil < pg_catalog.now() THEN
		RAISE EXCEPTION 'role "%" is past its VALID UNTIL time (%): a pg_cron job must not run as it', me, r.rolvaliduntil
			USING ERRCODE = 'invalid_authorization_specification',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s. Its password has expired: where pg_cron connects with password authentication every run would fail.',
			                                 me, via),
			      HINT = how || pg_catalog.format(' Or renew the role: ALTER ROLE %I VALID UNTIL ''infinity'';', me);
	END IF;
	IF NOT pg_catalog.has_database_privilege(me, pg_catalog.current_database(), 'CONNECT') THEN
		RAISE EXCEPTION 'role "%" may not connect to database "%": a pg_cron job running as it would fail every time',
			me, pg_catalog.current_database()
			USING ERRCODE = 'insufficient_privilege',
			      DETAIL = pg_catalog.format('pg_cron runs the job as the role that calls dealrisk.schedule(), here "%s"%s, connected to this database: each run would fail with "permission denied for database "%s"".',
			                                 me, via, pg_catalog.current_database()),
			      HINT = pg_catalog.format('Grant it: GRANT CONNECT ON DATABASE %I TO %I;', pg_catalog.current_database(), me);
	END IF;
END
$$;
COMMENT ON FUNCTION dealrisk._check_job_role(text) IS
	'Raises an error with a working setup when the current role cannot run a pg_cron job here: NOLOGIN, past VALID UNTIL, no CONNECT (internal)';

-- Whether the pg_cron job of an id exists, for a role that cannot see it:
-- pg_cron hides other roles' jobs from non-superusers (row-level security
-- on cron.job), but its cron.unschedule(id) refuses another role's job with
-- 42501 and reports a missing one as another error.  The call runs in a
-- subtransaction that is always rolled back: it never removes a job.
CREATE FUNCTION dealrisk._cron_job_exists(job bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_it boolean := false;
BEGIN
	IF job IS NULL THEN
		RETURN false;
	END IF;
	BEGIN
		EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' INTO found_it USING job;
		found_it := coalesce(found_it, false);
		RAISE EXCEPTION 'dealrisk: undo the probe of pg_cron job %', job;
	EXCEPTION
		WHEN insufficient_privilege THEN
			found_it := true;
		WHEN OTHERS THEN
			NULL;
	END;
	RETURN found_it;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_job_exists(bigint) IS
	'Whether a pg_cron job exists, also when it is another role''s (probes cron.unschedule in a subtransaction that is rolled back) (internal)';

-- The 'dealrisk-refresh' jobs of this database that the caller sees in
-- cron.job: every role's for a superuser, its own for another role.
CREATE FUNCTION dealrisk._refresh_jobs(OUT job_id bigint, OUT username text, OUT schedule text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN QUERY EXECUTE
		'SELECT j.jobid, j.username::pg_catalog.text, j.schedule::pg_catalog.text FROM cron.job j'
		' WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name AND j.database::pg_catalog.text OPERATOR(pg_catalog.=) $2'
		' ORDER BY j.jobid'
		USING 'dealrisk-refresh', pg_catalog.current_database()::text;
END
$$;
COMMENT ON FUNCTION dealrisk._refresh_jobs() IS
	'The pg_cron jobs ''dealrisk-refresh'' of this database that the caller sees (internal)';

CREATE FUNCTION dealrisk.schedule(cron text DEFAULT '0 6 * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	job bigint;
	cron_db record := dealrisk._cron_database();
	me name := CURRENT_USER;
	su boolean;
	rec dealrisk.refresh_job;
	other record;
BEGIN
	IF cron IS NULL OR pg_catalog.btrim(cron) = '' THEN
		RAISE EXCEPTION 'cron schedule must not be %', CASE WHEN cron IS NULL THEN 'NULL' ELSE 'empty' END
			USING ERRCODE = CASE WHEN cron IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      HINT = 'A cron expression, e.g. ''0 6 * * *'' for 06:00 every day (pg_cron reads it in GMT unless cron.timezone, pg_cron 1.5 or later, says otherwise).';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dealrisk._cron_missing(
			-- pg_cron lets one role have one job of a name: a job for another
			-- database gets that database's name, and runs as this role
			pg_catalog.format('SELECT cron.schedule_in_database(%L, %L, %L, %L, %L);',
			                  'dealrisk-refresh-' || pg_catalog.current_database(), cron, 'SELECT dealrisk.refresh()',
			                  pg_catalog.current_database(), CURRENT_USER),
			cron_db.db, pg_catalog.current_database(), cron_db.readable);
	END IF;
	PERFORM dealrisk._watch_config();
	PERFORM dealrisk._check_job_role(cron);
	IF cron_db.readable AND cron_db.db IS NULL THEN
		RAISE WARNING 'pg_cron is installed in this database but its library is not loaded: the job will not run'
			USING HINT = 'Add pg_cron to shared_preload_libraries and restart the server.';
	END IF;

	-- one schedule() or unschedule() at a time
	LOCK TABLE dealrisk.refresh_job IN EXCLUSIVE MODE;
	SELECT a.rolsuper INTO su FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	-- pg_cron names jobs per role, across databases: the caller's job of
	-- that name for another database would get this schedule and keep
	-- running there
	EXECUTE 'SELECT j.jobid, j.database FROM cron.job j WHERE j.jobname OPERATOR(pg_catalog.=) $1::pg_catalog.name'
		' AND j.username::pg_catalog.text OPERATOR(pg_catalog.=) $2 AND j.database::pg_catalog.text OPERATOR(pg_catalog.<>) $3'
		' ORDER BY j.jobid LIMIT 1'
		INTO other USING 'dealrisk-refresh', me::text, pg_catalog.current_database()::text;
	IF other.jobid IS NOT NULL THEN
		RAISE EXCEPTION 'role "%" already has the pg_cron job "dealrisk-refresh" for database "%" (job %)', me, other.database, other.jobid
			USING ERRCODE = 'duplicate_object',
			      DETAIL = pg_catalog.format('pg_cron names jobs per role: scheduling here would give that job the new schedule and leave it running in database "%s".',
			                                 other.database),
			      HINT = pg_catalog.format('Rename that job as a superuser (UPDATE cron.job SET jobname = %L WHERE jobid = %s;) or schedule here as another role.',
			                               'dealrisk-refresh ' || other.database, other.jobid);
	END IF;

	-- one refresh job per database, whoever owns it
	IF su THEN
		-- a superuser sees (and may remove) every role's job
		FOR other IN SELECT j.job_id, j.username FROM dealrisk._refresh_jobs() j WHERE j.username <> me::text LOOP
			EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' USING other.job_id;
			RAISE NOTICE 'removed the pg_cron job % of role "%": one dealrisk refresh job per database', other.job_id, other.username;
		END LOOP;
	ELSE
		-- another role sees only its own jobs: the job of record tells
		SELECT * INTO rec FROM dealrisk.refresh_job;
		IF rec.username <> me::text
		   AND NOT EXISTS (SELECT 1 FROM dealrisk._refresh_jobs() j WHERE j.job_id = rec.job_id)
		   AND dealrisk._cron_job_exists(rec.job_id) THEN
			RAISE EXCEPTION 'database "%" already has a dealrisk refresh job: pg_cron job % of role "%"',
				pg_catalog.current_database(), rec.job_id, rec.username
				USING ERRCODE = 'duplicate_object',
				      DETAIL = pg_catalog.format('One refresh job per database. pg_cron lets only the job''s role or a superuser change or remove it (scheduled %s by "%s", schedule %s).',
				                                 rec.scheduled_at, rec.scheduled_by, rec.schedule),
				      HINT = pg_catalog.format('As "%s" or as a superuser run SELECT dealrisk.unschedule(); then call dealrisk.schedule() again.', rec.username);
		END IF;
	END IF;

	-- pg_cron replaces a job of the same name and role
	EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
		USING 'dealrisk-refresh', cron, 'SELECT dealrisk.refresh()';
	INSERT INTO dealrisk.refresh_job AS r (singleton, job_id, username, schedule, scheduled_at, scheduled_by)
	VALUES (true, job, me, cron, pg_catalog.now(), SESSION_USER)
	ON CONFLICT (singleton) DO UPDATE SET job_id = EXCLUDED.job_id, username = EXCLUDED.username,
		schedule = EXCLUDED.schedule, scheduled_at = EXCLUDED.scheduled_at, scheduled_by = EXCLUDED.scheduled_by;
	RETURN job;
END
$$;
COMMENT ON FUNCTION dealrisk.schedule(text) IS
	'Schedules SELECT dealrisk.refresh() with pg_cron as job ''dealrisk-refresh'' of this database, run as the current role, which must be able to log in and connect (default 06:00 GMT daily); one job per database: scheduling again replaces it, a superuser replaces another role''s job, another role is refused; returns the pg_cron job id';

CREATE FUNCTION dealrisk.unschedule()
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	me name := CURRENT_USER;
	su boolean;
	rec dealrisk.refresh_job;
	j record;
	removed boolean := false;
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_cron') THEN
		PERFORM dealrisk._cron_missing(pg_catalog.format('SELECT cron.unschedule(j.jobid) FROM cron.job j WHERE j.jobname = %L;',
		                                                 'dealrisk-refresh-' || pg_catalog.current_database()),
			(dealrisk._cron_database()).db, pg_catalog.current_database(), (dealrisk._cron_database()).readable);
	END IF;
	LOCK TABLE dealrisk.refresh_job IN EXCLUSIVE MODE;
	SELECT a.rolsuper INTO su FROM pg_catalog.pg_roles a WHERE a.rolname = me;
	-- a superuser sees every role's job of this database, another role its own
	FOR j IN SELECT r.job_id FROM dealrisk._refresh_jobs() r LOOP
		EXECUTE 'SELECT cron.unschedule($1::pg_catalog.int8)' USING j.job_id;
		removed := true;
	END LOOP;
	SELECT * INTO rec FROM dealrisk.refresh_job;
	IF FOUND THEN
		IF su OR rec.username = me::text OR NOT dealrisk._cron_job_exists(rec.job_id) THEN
			DELETE FROM dealrisk.refresh_job;
		ELSIF NOT removed THEN
			RAISE EXCEPTION 'the dealrisk refresh job of database "%" belongs to role "%" (pg_cron job %)',
				pg_catalog.current_database(), rec.username, rec.job_id
				USING ERRCODE = 'insufficient_privilege',
				      DETAIL = 'pg_cron lets only the job''s role or a superuser remove it.',
				      HINT = pg_catalog.format('Run SELECT dealrisk.unschedule(); as "%s" or as a superuser.', rec.username);
		END IF;
	END IF;
	RETURN removed;
END
$$;
COMMENT ON FUNCTION dealrisk.unschedule() IS
	'Removes the pg_cron job ''dealrisk-refresh'' of this database: a superuser''s call removes it whichever role owns it, another role''s call its own (and is refused for another role''s job); false when there was none';

-- Health ------------------------------------------------------------------

-- The latest run of this database's 'dealrisk-refresh' job in pg_cron's
-- cron.job_run_details and the job itself, as far as the caller may read
-- them (pg_cron shows each role its own jobs and runs, a superuser all);
-- NULLs when pg_cron is not in this database or the caller may not read it.
-- pg_cron's tables are read by dynamic SQL: the cron schema need not exist.
CREATE FUNCTION dealrisk._cron_status(OUT job_id bigint, OUT job_owner text, OUT job_schedule text,
	OUT run_status text, OUT run_message text, OUT run_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF pg_catalog.to_regnamespace('cron') IS NULL OR NOT pg_catalog.has_schema_privilege('cron', 'USAGE')
	   OR pg_catalog.to_regclass('cron.job') IS NULL OR pg_catalog.to_regclass('cron.job_run_details') IS NULL THEN
		RETURN;
	END IF;
	SELECT j.job_id, j.username, j.schedule INTO job_id, job_owner, job_schedule
	FROM dealrisk._refresh_jobs() j ORDER BY j.job_id DESC LIMIT 1;
	EXECUTE 'SELECT r.status::pg_catalog.text, r.return_message::pg_catalog.text, r.start_time FROM cron.job_run_details r'
		' WHERE r.jobid OPERATOR(pg_catalog.=) ANY ($1) ORDER BY r.runid DESC LIMIT 1'
		INTO run_status, run_message, run_at
		USING ARRAY(SELECT j.job_id FROM dealrisk._refresh_jobs() j);
EXCEPTION WHEN insufficient_privilege OR undefined_table OR undefined_column OR undefined_function THEN
	job_id := NULL; job_owner := NULL; job_schedule := NULL;
	run_status := NULL; run_message := NULL; run_at := NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._cron_status() IS
	'The dealrisk-refresh job of this database and its latest pg_cron run, as far as the caller may read them; NULLs without pg_cron here (internal)';

-- A duration in plain words: whole minutes under an hour, hours under
-- three days, days beyond.
CREATE FUNCTION dealrisk._duration_words(d interval)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT n || ' ' || u || CASE WHEN n = 1 THEN '' ELSE 's' END
        FROM (SELECT pg_catalog.floor(pg_catalog.date_part('epoch', d) / x.secs)::bigint AS n, x.u
              FROM (SELECT CASE WHEN d < interval '1 hour' THEN 60 WHEN d < interval '72 hours' THEN 3600 ELSE 86400 END AS secs,
                           CASE WHEN d < interval '1 hour' THEN 'minute' WHEN d < interval '72 hours' THEN 'hour' ELSE 'day' END AS u) x) y);
COMMENT ON FUNCTION dealrisk._duration_words(interval) IS
	'A duration in whole minutes (under an hour), hours (under three days) or days, e.g. ''27 hours'' (internal)';

CREATE VIEW dealrisk.refresh_status AS
SELECT s.last_refresh_at, s.last_refresh_succeeded, l.finished_at AS last_success_at, s.age,
       l.deals_scored, l.alerts_written, l.model_id, l.run_by,
       c.run_status AS last_cron_status, c.run_message AS last_cron_message, c.run_at AS last_cron_run_at,
       coalesce(c.job_id, j.job_id) AS job_id, coalesce(c.job_owner, j.username) AS job_owner,
       coalesce(c.job_schedule, j.schedule) AS job_schedule,
       CASE WHEN NOT s.last_refresh_succeeded
            THEN pg_catalog.format('failing: the pg_cron run at %s failed: %s (%s)',
                                   pg_catalog.date_trunc('second', c.run_at),
                                   coalesce(nullif(pg_catalog.btrim(pg_catalog.split_part(c.run_message, E'\n', 1)), ''), 'no message'),
                                   CASE WHEN l.id IS NULL THEN 'no successful refresh yet'
                                        ELSE 'last success ' || dealrisk._duration_words(s.age) || ' ago' END)
            WHEN l.id IS NULL THEN 'never refreshed'
            WHEN s.age OPERATOR(pg_catalog.>) interval '26 hours'
            THEN 'stale: no successful refresh for ' || dealrisk._duration_words(s.age)
            ELSE 'ok' END AS health
FROM (SELECT 1) one
LEFT JOIN LATERAL (SELECT r.* FROM dealrisk.refresh_log r ORDER BY r.finished_at DESC, r.id DESC LIMIT 1) l ON true
LEFT JOIN dealrisk.refresh_job j ON true
CROSS JOIN dealrisk._cron_status() c
CROSS JOIN LATERAL (
	SELECT greatest(l.started_at, c.run_at) AS last_refresh_at,
	       pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) l.finished_at AS age,
	       -- a pg_cron run after the latest success tells how the last refresh went
	       CASE WHEN c.run_at OPERATOR(pg_catalog.>) coalesce(l.started_at, '-infinity')
	            THEN CASE c.run_status WHEN 'failed' THEN false WHEN 'succeeded' THEN true END
	            WHEN l.id IS NOT NULL THEN true END AS last_refresh_succeeded) s;
COMMENT ON VIEW dealrisk.refresh_status IS
	'One row on the health of the daily refresh: when the last refresh ran and whether it succeeded, the last success (from dealrisk.refresh_log) and its age, deals scored and alerts written, the latest pg_cron run of the job (NULL without pg_cron here or when this role may not read it), the job, and health: ok, stale (no success for 26 hours), failing, never refreshed';
COMMENT ON COLUMN dealrisk.refresh_status.age IS 'clock_timestamp() - last_success_at: alert on it (e.g. age > interval ''26 hours'') or on health <> ''ok''';
COMMENT ON COLUMN dealrisk.refresh_status.last_refresh_succeeded IS
	'false when a pg_cron run after the last success failed; NULL while such a run is under way or when nothing ran yet';

-- The alert outbox --------------------------------------------------------

CREATE FUNCTION dealrisk.claim_alerts(max int DEFAULT 100, worker text DEFAULT NULL,
	reclaim_after interval DEFAULT '15 minutes')
RETURNS SETOF dealrisk.alerts
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE ROWS 100
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF claim_alerts.max IS NULL OR claim_alerts.max < 1 THEN
		RAISE EXCEPTION 'max must be at least 1, got %', coalesce(claim_alerts.max::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF reclaim_after IS NULL OR reclaim_after < interval '0' THEN
		RAISE EXCEPTION 'reclaim_after must be an interval of at least 0, got %', coalesce(reclaim_after::text, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      HINT = 'How long a claimed alert waits for its acknowledgement before another worker may take it, e.g. ''15 minutes''.';
	END IF;
	-- SKIP LOCKED: alerts another worker is claiming right now are left to it
	RETURN QUERY
	WITH c AS (
		UPDATE dealrisk.alerts a
		SET claimed_at = pg_catalog.clock_timestamp(),
		    claimed_by = coalesce(nullif(pg_catalog.btrim(worker), ''),
		                          pg_catalog.format('%s/%s', SESSION_USER, pg_catalog.pg_backend_pid())),
		    claims = a.claims + 1
		FROM (SELECT f.id FROM dealrisk.alerts f
		      WHERE f.acked_at IS NULL
		        AND (f.claimed_at IS NULL OR f.claimed_at <= pg_catalog.clock_timestamp() - reclaim_after)
		      ORDER BY f.id
		      LIMIT claim_alerts.max
		      FOR UPDATE SKIP LOCKED) free
		WHERE a.id = free.id
		RETURNING a.*)
	SELECT * FROM c ORDER BY c.id;
END
$$;
COMMENT ON FUNCTION dealrisk.claim_alerts(int, text, interval) IS
	'Takes up to max unacknowledged alerts that nobody holds (never claimed, or claimed longer than reclaim_after ago and not acknowledged) and marks them claimed by worker (default: session user/pid); FOR UPDATE SKIP LOCKED, so concurrent workers get disjoint alerts';

CREATE FUNCTION dealrisk.ack_alert(id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	was timestamptz;
BEGIN
	IF ack_alert.id IS NULL THEN
		RAISE EXCEPTION 'alert id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT a.acked_at INTO was FROM dealrisk.alerts a WHERE a.id = ack_alert.id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert % does not exist', ack_alert.id USING ERRCODE = 'no_data_found';
	END IF;
	IF was IS NOT NULL THEN
		RETURN false;
	END IF;
	UPDATE dealrisk.alerts a SET acked_at = pg_catalog.clock_timestamp() WHERE a.id = ack_alert.id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.ack_alert(bigint) IS
	'Confirms that an alert was delivered, so it is never claimed again; false when it already was';

CREATE FUNCTION dealrisk.alert_text(alert_id bigint)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a dealrisk.alerts;
	reasons text;
BEGIN
	IF alert_id IS NULL THEN
		RAISE EXCEPTION 'alert id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	SELECT * INTO a FROM dealrisk.alerts x WHERE x.id = alert_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'alert % does not exist', alert_id USING ERRCODE = 'no_data_found';
	END IF;
	-- the factors that add risk, biggest first (at most three), else the top one
	SELECT pg_catalog.string_agg('  - ' || r.reason, E'\n' ORDER BY r.n) INTO reasons
	FROM (SELECT e.value ->> 'reason' AS reason, e.n
	      FROM pg_catalog.jsonb_array_elements(a.payload -> 'explain') WITH ORDINALITY e(value, n)
	      WHERE (e.value ->> 'effect')::float8 > 0 OR e.n = 1
	      ORDER BY e.n LIMIT 3) r;
	RETURN pg_catalog.concat_ws(E'\n',
		'Risk Alert: Deal ' || a.deal_id || coalesce(' (' || a.industry || ')', ''),
		pg_catalog.format('Risk score: %s%% (%s)%s', pg_catalog.round(a.risk::numeric, 1), pg_catalog.initcap(a.band),
			CASE WHEN a.previous_risk IS NOT NULL
			     THEN pg_catalog.format(', up from %s%%', pg_catalog.round(a.previous_risk::numeric, 1)) ELSE '' END),
		CASE WHEN reasons IS NOT NULL THEN E'Reasons:\n' || reasons
		     WHEN a.reason IS NOT NULL THEN 'Reason: ' || a.reason END,
		'Recommended action: ' || coalesce(a.action, 'review the deal'),
		pg_catalog.concat_ws(' · ',
			'Rep ' || a.sales_rep_id,
			a.deal_stage || coalesce(' for ' || a.days_in_stage || ' days', ''),
			'Amount ' || pg_catalog.to_char(a.deal_amount, 'FM999,999,999,999,990'),
			'Alert ' || a.id || ' of ' || pg_catalog.to_char(a.created_at, 'YYYY-MM-DD')));
END
$$;
COMMENT ON FUNCTION dealrisk.alert_text(bigint) IS
	'The manager''s message for an alert, as plain text: deal and industry, risk score and band, the reasons, the recommended action, rep, stage and amount';

-- Digest and history ------------------------------------------------------

CREATE FUNCTION dealrisk.digest(period interval DEFAULT '7 days', min_change float8 DEFAULT 5)
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

CREATE FUNCTION dealrisk.risk_changes(since timestamptz)
RETURNS TABLE (deal_id text, old_risk float8, new_risk float8, change float8,
	old_scored_at timestamptz, new_scored_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF since IS NULL THEN
		RAISE EXCEPTION 'since must not be NULL'
			USING ERRCODE = 'null_value_not_allowed', HINT = 'E.g. now() - interval ''7 days''.';
	END IF;
	-- the score at since is the last one before it, else the first one after
	-- (two probes of the primary key per deal)
	RETURN QUERY
	SELECT l.deal_id, coalesce(b.risk, f.risk), l.risk, l.risk - coalesce(b.risk, f.risk),
	       coalesce(b.scored_at, f.scored_at), l.scored_at
	FROM (SELECT DISTINCT ON (h.deal_id) h.deal_id, h.risk, h.scored_at
	      FROM dealrisk.score_history h WHERE h.scored_at > since
	      ORDER BY h.deal_id, h.scored_at DESC) l
	LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
	                   WHERE p.deal_id = l.deal_id AND p.scored_at <= since
	                   ORDER BY p.scored_at DESC LIMIT 1) b ON true
	LEFT JOIN LATERAL (SELECT p.risk, p.scored_at FROM dealrisk.score_history p
	                   WHERE p.deal_id = l.deal_id AND p.scored_at > since
	                   ORDER BY p.scored_at LIMIT 1) f ON true
	ORDER BY abs(l.risk - coalesce(b.risk, f.risk)) DESC, l.deal_id;
END
$$;
COMMENT ON FUNCTION dealrisk.risk_changes(timestamptz) IS
	'Deals scored since a time, with their risk then (the last score before it, else the first after it) and now (the latest score), biggest move first';

-- Live feedback -----------------------------------------------------------

-- The NOTIFY payload for a deal whose risk was (re)computed, or NULL when it
-- is closed or its risk did not change.
CREATE FUNCTION dealrisk._risk_change(deal record, old_risk float8, is_new boolean, model text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	new_risk float8;
	reason text;
BEGIN
	IF dealrisk.is_won(deal.outcome) IS NOT NULL THEN
		RETURN NULL;
	END IF;
	new_risk := dealrisk.deal_risk(deal, model);
	IF NOT is_new AND pg_catalog.round(new_risk::numeric, 2) = pg_catalog.round(old_risk::numeric, 2) THEN
		RETURN NULL;
	END IF;
	SELECT e.reason INTO reason FROM dealrisk.deal_risk_explain(deal, model) e LIMIT 1;
	RETURN pg_catalog.jsonb_build_object(
		'deal_id', deal.deal_id::text,
		'old_risk', pg_catalog.round(old_risk::numeric, 2),
		'new_risk', pg_catalog.round(new_risk::numeric, 2),
		'change', pg_catalog.round((new_risk - old_risk)::numeric, 2),
		'band', dealrisk.risk_band(new_risk),
		'reason', reason);
END
$$;
COMMENT ON FUNCTION dealrisk._risk_change(record, float8, boolean, text) IS
	'The dealrisk_risk_changes notification of a deal row: deal_id, old and new risk, change, band, top reason; NULL for closed deals and unchanged risks (internal)';

CREATE FUNCTION dealrisk._track_trigger()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	model text := coalesce(TG_ARGV[0], 'default');
	payload jsonb;
BEGIN
	-- the write must never fail because of scoring
	BEGIN
		payload := dealrisk._risk_change(NEW,
			CASE WHEN TG_OP = 'UPDATE' AND dealrisk.is_won(OLD.outcome) IS NULL THEN dealrisk.deal_risk(OLD, model) END,
			TG_OP = 'INSERT', model);
		IF payload IS NOT NULL THEN
			PERFORM pg_catalog.pg_notify('dealrisk_risk_changes', payload::text);
		END IF;
	EXCEPTION WHEN OTHERS THEN
		RAISE WARNING 'dealrisk: the risk of a deal written to % was not computed: %',
			pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), SQLERRM
			USING HINT = 'The write went through; fix the model or the row, or stop tracking with dealrisk.untrack().';
	END;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._track_trigger() IS
	'Row trigger of dealrisk.track(): sends NOTIFY dealrisk_risk_changes with the new risk of an open deal; scoring errors become warnings (internal)';

CREATE FUNCTION dealrisk.track(source regclass, model text DEFAULT 'default')
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kind "char";
BEGIN
	PERFORM dealrisk._check_source(source, ARRAY['deal_id', 'outcome']);
	SELECT c.relkind INTO kind FROM pg_catalog.pg_class c WHERE c.oid = source::pg_catalog.oid;
	IF kind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION 'source "%" is a %, not a table: live risk feedback needs a trigger on the table that is written',
			dealrisk._source_name(source),
			CASE kind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' ELSE 'relation' END
			USING ERRCODE = 'wrong_object_type',
			      HINT = 'Track the table the view reads from (with the data contract''s columns).';
	END IF;
	-- A Citus table split over shards, or a reference table, is written on
	-- the workers: the trigger would run there, its notifications would
	-- reach only the workers' listeners, and Citus commits a write of
	-- several shards with two-phase commit, which a transaction that sent
	-- NOTIFY cannot take part in: the write itself would fail.
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
		EXECUTE 'SELECT p.partmethod FROM pg_catalog.pg_dist_partition p'
			' WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1 AND (p.partmethod OPERATOR(pg_catalog.<>) ''n'''
			' OR p.repmodel OPERATOR(pg_catalog.=) ''t'')'
		INTO kind USING source;
		IF kind IS NOT NULL THEN
			RAISE EXCEPTION 'source "%" is a Citus % table: live risk feedback cannot be tracked on it',
				dealrisk._source_name(source), CASE kind WHEN 'n' THEN 'reference' ELSE 'distributed' END
				USING ERRCODE = 'feature_not_supported',
				      DETAIL = 'Its rows are written on the workers, where the trigger''s notifications would not reach listeners of the coordinator, and Citus commits a write of several shards with two-phase commit, which a transaction that sent NOTIFY cannot join.',
				      HINT = 'Schedule dealrisk.refresh() (dealrisk.schedule()) and read dealrisk.risk_changes(since) or the alerts outbox instead (docs/scaling.md).';
		END IF;
	END IF;
	PERFORM dealrisk._active_model(model);
	EXECUTE pg_catalog.format(
		'CREATE OR REPLACE TRIGGER dealrisk_track AFTER INSERT OR UPDATE ON %s'
		' FOR EACH ROW EXECUTE FUNCTION dealrisk._track_trigger(%L)', source, model);
END
$$;
COMMENT ON FUNCTION dealrisk.track(regclass, text) IS
	'Installs the row trigger dealrisk_track on a deal table: each insert or update of an open deal sends NOTIFY dealrisk_risk_changes with deal_id, old and new risk and the top reason; a scoring error is a WARNING, never a failed write';

CREATE FUNCTION dealrisk.untrack(source regclass)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF source IS NULL THEN
		RAISE EXCEPTION 'source must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = source::pg_catalog.oid AND t.tgname = 'dealrisk_track') THEN
		RETURN false;
	END IF;
	EXECUTE pg_catalog.format('DROP TRIGGER dealrisk_track ON %s', source);
	RETURN true;
END
$$;
COMMENT ON FUNCTION dealrisk.untrack(regclass) IS
	'Removes the dealrisk_track trigger of dealrisk.track() from a table; false when there was none';

-- Privileges ----------------------------------------------------------------
-- No function is SECURITY DEFINER: each runs with its caller's privileges,
-- so calling one gives nobody more than the SQL it runs would.  Three kinds
-- of function are not executable by PUBLIC:
-- 1. what trains, activates, imports, watches, refreshes, schedules, tracks
--    or writes alerts: docs/security.md grants it to the roles that operate
--    dealrisk;
-- 2. the internal helpers only those functions call (an operator role gets
--    them with GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk);
-- 3. the support functions of aggregates, the planner and triggers, which
--    nobody calls directly: PostgreSQL checks the aggregate's owner, not its
--    caller, for an aggregate's support functions, and calls planner
--    support and trigger functions without a check.
-- Scoring, diagnostics and reading functions stay executable, and so do the
-- internal helpers they call (diagnostics helpers, _watch_config for
-- digest(), _row_args/_model_columns/_evaluate for evaluate(), _as_of,
-- _deal_risk_row into which the planner rewrites deal_risk(), _risk_change
-- for the track() trigger, which runs as whoever writes the deal table;
-- _cron_status, _refresh_jobs and _duration_words for the view
-- refresh_status, whose functions run as its reader).
-- These REVOKEs are at the end of the install script because they cover
-- functions of every part.
REVOKE EXECUTE ON FUNCTION
	dealrisk.train(regclass, text, text[], float8, float8, boolean, text, jsonb),
	dealrisk.activate(bigint, boolean),
	dealrisk.rollback(text),
	dealrisk.import_model(jsonb, text),
	dealrisk.watch(regclass, float8, text, float8, float8, int),
	dealrisk.refresh(),
	dealrisk.prune_history(interval),
	dealrisk.schedule(text),
	dealrisk.unschedule(),
	dealrisk.track(regclass, text),
	dealrisk.untrack(regclass),
	dealrisk.claim_alerts(int, text, interval),
	dealrisk.ack_alert(bigint)
FROM PUBLIC;
-- 2. helpers of the functions above
REVOKE EXECUTE ON FUNCTION
	dealrisk._validate_model(jsonb, float8[]),
	dealrisk._xgboost_spec(jsonb, jsonb),
	dealrisk._irls_pass(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._irls_solve(float8[], float8[], float8),
	dealrisk._irls_decrement(float8[], float8[], float8[], float8),
	dealrisk._quantile_edges(regclass, text, text, float8[]),
	dealrisk._open_knots(regclass, regclass, text, text),
	dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_step(jsonb, float8[], float8[], boolean),
	dealrisk._open_fit(jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),
	dealrisk._census(regclass, text, text, boolean),
	dealrisk._raw_expr(regclass, text, jsonb),
	dealrisk._feature_raw(jsonb, regtype, text[], "any"),
	dealrisk._build_spec(regclass, text[], text, regclass),
	dealrisk._fit(regclass, jsonb, text, int, date, date, float8, float8, float8[], float8, jsonb, date, float8),
	dealrisk._quality_problem(jsonb),
	dealrisk._active_model(text),
	dealrisk._scoring_model(text),
	dealrisk._qualified_name(regclass),
	dealrisk._stage_start_sql(regclass),
	dealrisk._high_risk_cutoff(float8[], float8, float8),
	dealrisk._alert_action(text, text, float8, text, text[], text[]),
	dealrisk._policy_words(float8, float8),
	dealrisk._view_sql(regclass),
	dealrisk._view_shape(text),
	dealrisk._duplicate_deals(regclass, text),
	dealrisk._describe_view(),
	dealrisk._rebuild_view(regclass, text),
	dealrisk._create_view(regclass),
	dealrisk._refresh_view(regclass),
	dealrisk._cron_database(),
	dealrisk._cron_missing(text, text, text, boolean),
	dealrisk._check_job_role(text),
	dealrisk._cron_job_exists(bigint)
FROM PUBLIC;
-- 3. support functions
REVOKE EXECUTE ON FUNCTION
	dealrisk._win_rate_accum(bigint[], boolean),
	dealrisk._win_rate_inv(bigint[], boolean),
	dealrisk._int8_state_combine(bigint[], bigint[]),
	dealrisk._win_rate_final(bigint[]),
	dealrisk._win_rate_ci_final(bigint[]),
	dealrisk._win_rate_ci_level_accum(float8[], boolean, float8),
	dealrisk._win_rate_ci_level_combine(float8[], float8[]),
	dealrisk._win_rate_ci_level_final(float8[]),
	dealrisk._win_rate_amount_accum(float8[], boolean, numeric),
	dealrisk._float8_state_combine(float8[], float8[]),
	dealrisk._win_rate_amount_final(float8[]),
	dealrisk._stage_funnel_accum(bigint[], text, boolean),
	dealrisk._stage_funnel_final(bigint[]),
	dealrisk._late_stage_loss_accum(bigint[], text, boolean),
	dealrisk._late_stage_loss_final(bigint[]),
	dealrisk._irls_accum(float8[], jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._eval_accum(float8[], jsonb, float8[], int, date, regtype, text[], "any"),
	dealrisk._eval_final(float8[]),
	dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),
	dealrisk._open_rows(internal, jsonb, float8[], int, date, date, float8, regtype, text[], "any"),
	dealrisk._open_rows_combine(internal, internal),
	dealrisk._open_rows_serial(internal),
	dealrisk._open_rows_deserial(bytea, internal),
	dealrisk._open_fit_final(internal),
	dealrisk._deal_risk_support(internal),
	dealrisk._row_arg_support(internal),
	dealrisk._settings_support(internal),
	dealrisk._track_trigger(),
	dealrisk._config_edit(),
	dealrisk._stages_check()
FROM PUBLIC;
