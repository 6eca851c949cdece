-- dealrisk.stages refuses two names that match as one stage ('DEMO' beside
-- 'Demo'), which every reader would count at two positions (issue #14,
-- the review of the stage-history code).
CREATE OR REPLACE FUNCTION dealrisk._stages_check()
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
