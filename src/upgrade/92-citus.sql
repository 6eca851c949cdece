-- Issue #11 (Citus): no trigger on dealrisk.models (a scoring call checks
-- the model's row under its snapshot; Citus cannot make a table with
-- triggers a reference table), dealrisk.distribute() to make the
-- configuration and model tables reference tables, and train() reading a
-- distributed source once into a temporary table (its body is in
-- 86-gbm-train.sql); _feature_leak_sql without GROUPING SETS (in
-- 72-preflight-scans.sql).
DROP TRIGGER models_changed ON dealrisk.models;
DROP FUNCTION dealrisk._models_changed();

-- Whether a relation is, or reads (through views, to any depth), a Citus
-- table that is split over shards (hash, range or append distributed):
-- false without Citus.  Reference tables and single-shard tables are read
-- on one node, where every query runs as on one PostgreSQL.
CREATE FUNCTION dealrisk._distributed(source regclass)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found boolean;
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RETURN false;
	END IF;
	EXECUTE $q$
		WITH RECURSIVE rel(oid) AS (
			SELECT $1::pg_catalog.oid
			UNION
			SELECT d.refobjid FROM rel
			JOIN pg_catalog.pg_rewrite r ON r.ev_class OPERATOR(pg_catalog.=) rel.oid
			JOIN pg_catalog.pg_depend d
			  ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
			 AND d.objid OPERATOR(pg_catalog.=) r.oid
			 AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
			 AND d.refobjid OPERATOR(pg_catalog.<>) rel.oid)
		SELECT EXISTS (
			SELECT 1 FROM rel JOIN pg_catalog.pg_dist_partition p
			  ON p.logicalrelid::pg_catalog.oid OPERATOR(pg_catalog.=) rel.oid
			WHERE p.partmethod OPERATOR(pg_catalog.<>) 'n')$q$
	INTO found USING source;
	RETURN found;
END
$$;
COMMENT ON FUNCTION dealrisk._distributed(regclass) IS
	'Whether a relation is or reads a Citus table split over shards; false without Citus (internal)';

-- How a statement reads a source's rows: the source itself, or, when it is
-- distributed (_distributed), a subquery that Citus reads into the
-- coordinator first, for an aggregate that Citus cannot split over shards
-- (the passes that take a deal's columns as VARIADIC "any").
CREATE FUNCTION dealrisk._scan(source regclass)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT CASE WHEN dealrisk._distributed(source)
	            THEN pg_catalog.format('(SELECT * FROM %s OFFSET 0)', source)
	            ELSE source::pg_catalog.text END
$$;
COMMENT ON FUNCTION dealrisk._scan(regclass) IS
	'The FROM item that reads a source: itself, or a subquery that gathers a Citus distributed source on the coordinator (internal)';

-- Make the extension's configuration and model tables Citus reference
-- tables (a copy on every node), so that what deal_risk() reads on a worker
-- is what was trained, activated and configured on the coordinator.  The
-- operations tables (watch_config, score_history, alerts, refresh_log,
-- refresh_job) stay on the coordinator, where refresh() writes them.
CREATE FUNCTION dealrisk.distribute()
RETURNS TABLE (table_name text, action text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text;
	fk text;
	kind "char";
BEGIN
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
		RAISE EXCEPTION 'dealrisk.distribute() needs Citus, which is not installed in database %', pg_catalog.current_database()
			USING ERRCODE = 'feature_not_supported',
			      HINT = 'Add citus to shared_preload_libraries, CREATE EXTENSION citus, add the workers, then call dealrisk.distribute() on the coordinator (docs/scaling.md).';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node n WHERE n.noderole OPERATOR(pg_catalog.=) 'primary'
	                 AND n.groupid OPERATOR(pg_catalog.<>) 0) THEN
		RAISE EXCEPTION 'this Citus cluster has no worker node'
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      HINT = 'Add the workers first: SELECT citus_add_node(''worker-host'', 5432) on the coordinator.';
	END IF;
	-- The one foreign key between these tables (activations -> models) is
	-- dropped on every node: Citus would turn the tables it joins into Citus
	-- tables on its own, creating the extension's tables on the workers a
	-- second time, and with it every transaction that read a distributed
	-- table in parallel (train() does) could not then write a model.
	-- rollback() skips activations of deleted models instead.
	fk := 'model_activations_model_id_fkey';
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c
	           WHERE c.conrelid OPERATOR(pg_catalog.=) 'dealrisk.model_activations'::pg_catalog.regclass
	             AND c.conname OPERATOR(pg_catalog.=) fk) THEN
		PERFORM pg_catalog.run_command_on_workers(
			pg_catalog.format('ALTER TABLE dealrisk.model_activations DROP CONSTRAINT IF EXISTS %I', fk));
		EXECUTE pg_catalog.format('ALTER TABLE dealrisk.model_activations DROP CONSTRAINT %I', fk);
		table_name := 'dealrisk.model_activations';
		action := 'dropped its foreign key to dealrisk.models';
		RETURN NEXT;
	END IF;
	FOREACH t IN ARRAY ARRAY['stage_defaults', 'stage_edits', 'action_rule_defaults', 'action_rule_edits',
	                         'models', 'model_activations'] LOOP
		SELECT p.partmethod INTO kind FROM pg_catalog.pg_dist_partition p
		WHERE p.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.format('dealrisk.%I', t)::pg_catalog.regclass;
		IF FOUND THEN
			table_name := 'dealrisk.' || t;
			action := 'already a Citus table';
			RETURN NEXT;
			CONTINUE;
		END IF;
		PERFORM pg_catalog.create_reference_table(pg_catalog.format('dealrisk.%I', t)::pg_catalog.regclass);
		-- the rows copied to the shards stay in the coordinator's own table,
		-- unseen; drop them so that they do not take space
		PERFORM pg_catalog.truncate_local_data_after_distributing_table(pg_catalog.format('dealrisk.%I', t)::pg_catalog.regclass);
		table_name := 'dealrisk.' || t;
		action := 'made a reference table';
		RETURN NEXT;
	END LOOP;
END
$$;
COMMENT ON FUNCTION dealrisk.distribute() IS
	'On a Citus coordinator: makes the configuration and model tables of dealrisk (stages, action rules, models, activations) reference tables, so that every node scores with the same models and settings; idempotent; see docs/scaling.md';
REVOKE EXECUTE ON FUNCTION dealrisk.distribute() FROM PUBLIC;

-- rollback() skips activations of models deleted since (no foreign key on
-- Citus).
CREATE OR REPLACE FUNCTION dealrisk.rollback(name text DEFAULT 'default')
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur bigint;
	prev bigint;
BEGIN
	SELECT id INTO cur FROM dealrisk.models m WHERE m.name = rollback.name AND m.active;
	SELECT a.model_id INTO prev FROM dealrisk.model_activations a
	WHERE a.name = rollback.name AND a.model_id IS DISTINCT FROM cur
	  -- (on Citus the activations keep no foreign key: see distribute())
	  AND EXISTS (SELECT 1 FROM dealrisk.models x WHERE x.id = a.model_id)
	  AND a.activated_at < coalesce((SELECT max(b.activated_at) FROM dealrisk.model_activations b
	                                 WHERE b.name = rollback.name AND b.model_id = cur), 'infinity')
	ORDER BY a.activated_at DESC LIMIT 1;
	IF prev IS NULL THEN
		RAISE EXCEPTION 'model name "%" has no previously active model to return to', rollback.name
			USING ERRCODE = 'no_data_found';
	END IF;
	UPDATE dealrisk.models SET active = false WHERE models.name = rollback.name AND active;
	UPDATE dealrisk.models SET active = true, activated_at = pg_catalog.now() WHERE id = prev;
	INSERT INTO dealrisk.model_activations (name, model_id, forced) VALUES (rollback.name, prev, true);
	RETURN prev;
END
$$;
COMMENT ON FUNCTION dealrisk.rollback(text) IS
	'Re-activates the model that was active before the current one of this name; returns its id';

-- evaluate() gathers a distributed source on the coordinator (_scan).
CREATE OR REPLACE FUNCTION dealrisk.evaluate(model_id bigint, source regclass,
	OUT auc float8, OUT log_loss float8, OUT brier float8, OUT brier_base float8,
	OUT accuracy float8, OUT base_rate float8, OUT n bigint, OUT calibration jsonb)
RETURNS record
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m dealrisk.models%ROWTYPE;
	r jsonb;
BEGIN
	SELECT * INTO m FROM dealrisk.models WHERE id = model_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model % does not exist', model_id USING ERRCODE = 'no_data_found';
	END IF;
	PERFORM dealrisk._check_source(source, ARRAY['outcome']);
	EXECUTE pg_catalog.format('SELECT dealrisk._evaluate($1, $2, 0, NULL, %s) FROM %s d',
	                          dealrisk._row_args(source, m.feature_spec), dealrisk._scan(source))
		INTO r USING m.feature_spec, m.coefficients;
	IF r IS NULL THEN
		RAISE EXCEPTION 'source % has no closed deal to evaluate on', source USING ERRCODE = 'no_data_found';
	END IF;
	auc := (r->>'auc')::float8;
	log_loss := (r->>'log_loss')::float8;
	brier := (r->>'brier')::float8;
	brier_base := (r->>'brier_base')::float8;
	accuracy := (r->>'accuracy')::float8;
	base_rate := (r->>'base_rate')::float8;
	n := (r->>'n')::bigint;
	calibration := r->'calibration';
END
$$;

-- track() refuses Citus distributed and reference tables
CREATE OR REPLACE FUNCTION dealrisk.track(source regclass, model text DEFAULT 'default')
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

-- The functions that take a deal's row keep a view's row type in the text
-- of the queries Citus sends the workers (dr_row_arg_support)
CREATE FUNCTION dealrisk._row_arg_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_row_arg_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._row_arg_support(internal) IS
	'Planner support for the functions that take a deal''s row: a view''s row keeps its type in the text of the query that Citus sends a worker (internal)';
REVOKE EXECUTE ON FUNCTION dealrisk._row_arg_support(internal) FROM PUBLIC;
ALTER FUNCTION dealrisk.deal_risk_explain(record, text) SUPPORT dealrisk._row_arg_support;
ALTER FUNCTION dealrisk.deal_risk_contributions(record, text) SUPPORT dealrisk._row_arg_support;
ALTER FUNCTION dealrisk.recommended_action(record, text) SUPPORT dealrisk._row_arg_support;

-- On a Citus coordinator, a warning when a dealrisk setting of the session
-- would not reach the workers that run is_won(), risk_band() and the
-- scoring functions (src/citus.c)
CREATE FUNCTION dealrisk._settings_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_settings_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._settings_support(internal) IS
	'Planner support of is_won and risk_band: on a Citus coordinator, warns when a dealrisk setting of the session would not reach the workers (internal)';
REVOKE EXECUTE ON FUNCTION dealrisk._settings_support(internal) FROM PUBLIC;
ALTER FUNCTION dealrisk.is_won(text) SUPPORT dealrisk._settings_support;
ALTER FUNCTION dealrisk.risk_band(float8) SUPPORT dealrisk._settings_support;
