-- outcome.sql: outcome labels and the stage table (src/outcome.c).

-- (planner support: on a Citus coordinator, the warning for a setting that
-- the workers would not see; src/citus.c)
CREATE FUNCTION dealrisk._settings_support(internal)
RETURNS internal AS 'MODULE_PATHNAME', 'dr_settings_support'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._settings_support(internal) IS
	'Planner support of is_won and risk_band: on a Citus coordinator, warns when a dealrisk setting of the session would not reach the workers (internal)';

CREATE FUNCTION dealrisk.is_won(outcome text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dr_is_won'
LANGUAGE C STABLE STRICT PARALLEL SAFE SUPPORT dealrisk._settings_support;
COMMENT ON FUNCTION dealrisk.is_won(text) IS
	'true for a won label, false for a lost label, NULL for an open or empty outcome (labels from dealrisk.won_labels / lost_labels / open_labels, case-insensitive); an unknown label is an error';

CREATE FUNCTION dealrisk.outcome_class(outcome text)
RETURNS text
AS 'MODULE_PATHNAME', 'dr_outcome_class'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.outcome_class(text) IS
	'won, lost, open (also for an empty label) or unknown: like is_won but never raises an error';

-- Configuration tables (the stages here, the action rules in model.sql) are
-- views over two tables: the extension's defaults, which CREATE EXTENSION
-- fills and pg_dump leaves out, and the user's edits (added, changed and
-- removed rows), which start empty and pg_dump keeps whole.  A dump and
-- restore therefore gives back exactly what the user had: restoring the
-- edits never collides with the defaults a new CREATE EXTENSION inserts.
-- INSERT, UPDATE and DELETE on the views write the edits (_config_edit).

-- The INSTEAD OF trigger of a configuration view: TG_ARGV are the defaults
-- table, the edits table and the key column.  An edit that gives a default
-- row back its default values is dropped, so the edits stay minimal.
CREATE FUNCTION dealrisk._config_edit()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	defaults regclass := TG_ARGV[0]::regclass;
	edits regclass := TG_ARGV[1]::regclass;
	key text := TG_ARGV[2];
	view_name text := pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
	old_key text;
	new_key text;
	found_row boolean;
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		old_key := pg_catalog.to_jsonb(OLD) ->> key;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		new_key := pg_catalog.to_jsonb(NEW) ->> key;
		IF new_key IS NULL THEN
			RAISE EXCEPTION 'null value in column "%" of %', key, view_name
				USING ERRCODE = 'not_null_violation';
		END IF;
		IF old_key IS DISTINCT FROM new_key THEN
			EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s v WHERE v.%I::text = $1)', view_name, key)
				INTO found_row USING new_key;
			IF found_row THEN
				RAISE EXCEPTION 'duplicate key value violates the key of %', view_name
					USING ERRCODE = 'unique_violation',
					      DETAIL = pg_catalog.format('Key (%s)=(%s) already exists.', key, new_key),
					      HINT = pg_catalog.format('Change that row with UPDATE %s instead.', view_name);
			END IF;
		END IF;
	END IF;
	IF old_key IS NOT NULL THEN
		-- the old row goes: its edit is dropped, and a default is marked removed
		EXECUTE pg_catalog.format('DELETE FROM %s e WHERE e.%I::text = $1', edits, key) USING old_key;
		IF old_key IS DISTINCT FROM new_key THEN
			EXECUTE pg_catalog.format(
				'INSERT INTO %s SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r'
				' WHERE EXISTS (SELECT 1 FROM %s d WHERE d.%I::text = $2)', edits, edits, defaults, key)
				USING pg_catalog.jsonb_build_object(key, old_key, 'removed', true), old_key;
		END IF;
	END IF;
	IF new_key IS NOT NULL THEN
		-- the new row replaces the mark of a removed default of its key, and
		-- is an edit unless it is that default as it was shipped
		EXECUTE pg_catalog.format('DELETE FROM %s e WHERE e.%I::text = $1', edits, key) USING new_key;
		EXECUTE pg_catalog.format(
			'INSERT INTO %s SELECT r.* FROM pg_catalog.jsonb_populate_record(NULL::%s, $1) r'
			' WHERE NOT EXISTS (SELECT 1 FROM %s d WHERE pg_catalog.to_jsonb(d) OPERATOR(pg_catalog.=) $1 - ''removed'')',
			edits, edits, defaults)
			USING pg_catalog.to_jsonb(NEW) || '{"removed": false}';
		RETURN NEW;
	END IF;
	RETURN OLD;
END
$$;
COMMENT ON FUNCTION dealrisk._config_edit() IS
	'INSTEAD OF trigger of the configuration views (stages, action_rules): records added, changed and removed rows in the edits table (internal)';

CREATE TABLE dealrisk.stage_defaults (
	stage    text PRIMARY KEY,
	position int NOT NULL,
	is_late  boolean NOT NULL
);
GRANT SELECT ON dealrisk.stage_defaults TO PUBLIC;
COMMENT ON TABLE dealrisk.stage_defaults IS
	'The stages dealrisk ships with (read dealrisk.stages, which applies your edits)';
INSERT INTO dealrisk.stage_defaults (stage, position, is_late) VALUES
	('Qualified', 1, false),
	('Demo', 2, false),
	('Proposal', 3, true),
	('Negotiation', 4, true),
	('Closed', 5, true);

CREATE TABLE dealrisk.stage_edits (
	stage    text PRIMARY KEY CHECK (pg_catalog.btrim(stage) <> ''),
	position int,
	is_late  boolean,
	removed  boolean NOT NULL DEFAULT false,
	CHECK (removed OR (position IS NOT NULL AND is_late IS NOT NULL))
);
COMMENT ON TABLE dealrisk.stage_edits IS
	'Your edits of dealrisk.stages: stages added or changed, and shipped stages removed (removed = true); kept by pg_dump. Edit dealrisk.stages, not this table.';
SELECT pg_catalog.pg_extension_config_dump('dealrisk.stage_edits', '');

CREATE VIEW dealrisk.stages AS
	SELECT e.stage, e.position, e.is_late FROM dealrisk.stage_edits e WHERE NOT e.removed
	UNION ALL
	SELECT d.stage, d.position, d.is_late FROM dealrisk.stage_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stage_edits e WHERE e.stage OPERATOR(pg_catalog.=) d.stage);
ALTER VIEW dealrisk.stages ALTER COLUMN is_late SET DEFAULT false;
COMMENT ON VIEW dealrisk.stages IS
	'Pipeline stages in order (position) and whether each is a late stage; edit it (INSERT, UPDATE, DELETE) to match your CRM; positions are any integers (a stage before the first takes 0 or below) and are checked at the end of each statement, so stages can be renumbered in one UPDATE. deal_stage is matched without case. Your edits are kept in dealrisk.stage_edits and survive pg_dump/pg_restore.';
CREATE TRIGGER stages_edit INSTEAD OF INSERT OR UPDATE OR DELETE ON dealrisk.stages
	FOR EACH ROW EXECUTE FUNCTION dealrisk._config_edit('dealrisk.stage_defaults', 'dealrisk.stage_edits', 'stage');

-- After each statement that changes dealrisk.stages: no two stages share a
-- position.
CREATE FUNCTION dealrisk._stages_check()
RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pos int;
	names text;
BEGIN
	SELECT s.position, pg_catalog.string_agg(s.stage, ', ' ORDER BY s.stage) INTO pos, names
	FROM dealrisk.stages s GROUP BY s.position HAVING pg_catalog.count(*) > 1
	ORDER BY s.position LIMIT 1;
	IF pos IS NOT NULL THEN
		RAISE EXCEPTION 'stages % share position %', names, pos
			USING ERRCODE = 'unique_violation',
			      HINT = 'Each stage needs its own position; renumber several stages in one UPDATE.';
	END IF;
	-- stage names are matched without case or surrounding blanks: 'DEMO'
	-- beside 'Demo' would be one stage at two positions
	SELECT pg_catalog.string_agg(pg_catalog.quote_literal(s.stage), ', ' ORDER BY s.stage) INTO names
	FROM dealrisk.stages s GROUP BY dealrisk._stage_key(s.stage) HAVING pg_catalog.count(*) > 1
	ORDER BY 1 LIMIT 1;
	IF names IS NOT NULL THEN
		RAISE EXCEPTION 'stages % are one stage: names are matched without case or surrounding blanks', names
			USING ERRCODE = 'unique_violation',
			      HINT = 'Keep one of them (rename or delete the other).';
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION dealrisk._stages_check() IS
	'Statement trigger of dealrisk.stages: no two stages share a position, nor a name up to case and surrounding blanks (internal)';
CREATE TRIGGER stages_check AFTER INSERT OR UPDATE OR DELETE ON dealrisk.stages
	FOR EACH STATEMENT EXECUTE FUNCTION dealrisk._stages_check();

CREATE FUNCTION dealrisk._stage_key(stage text)
RETURNS text
AS 'MODULE_PATHNAME', 'dr_stage_key'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk._stage_key(text) IS
	'A stage name as stages are matched everywhere: surrounding white space trimmed, ASCII letters in lower case; NULL when blank (internal)';

CREATE FUNCTION dealrisk.stage_position(stage text)
RETURNS int
AS 'MODULE_PATHNAME', 'dr_stage_position'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.stage_position(text) IS
	'Position of a stage in dealrisk.stages (matched as _stage_key says: trimmed, ASCII case folded); an unknown stage is an error';
