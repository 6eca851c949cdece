-- citus.sql: dealrisk on a Citus cluster (docs/scaling.md).
--
-- Deal sources may be Citus distributed tables: the aggregates are split
-- over the shards (their states are arrays that Citus combines), deal_risk()
-- and the other per-row functions run on the workers, the diagnostics'
-- queries are planned by Citus, and train() reads a distributed source once
-- into a temporary table of the coordinator.  The configuration and the
-- models must then be readable on every node: distribute() makes them
-- reference tables, and the C code reads a reference table from its
-- placement on the node it runs on (dr_config_table in src/model.c).

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
