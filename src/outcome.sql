-- outcome.sql: outcome labels and the stage table (src/outcome.c).

CREATE FUNCTION dealrisk.is_won(outcome text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'dr_is_won'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.is_won(text) IS
	'true for a won label, false for a lost label, NULL for an open or empty outcome (labels from dealrisk.won_labels / lost_labels / open_labels, case-insensitive); an unknown label is an error';

CREATE FUNCTION dealrisk.outcome_class(outcome text)
RETURNS text
AS 'MODULE_PATHNAME', 'dr_outcome_class'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.outcome_class(text) IS
	'won, lost, open (also for an empty label) or unknown: like is_won but never raises an error';

CREATE TABLE dealrisk.stages (
	stage    text PRIMARY KEY CHECK (btrim(stage) <> ''),
	position int NOT NULL CHECK (position > 0),
	is_late  boolean NOT NULL DEFAULT false,
	-- checked at the end of each statement, so stages can be renumbered in one UPDATE
	CONSTRAINT stages_position_key UNIQUE (position) DEFERRABLE INITIALLY IMMEDIATE
);
COMMENT ON TABLE dealrisk.stages IS
	'Pipeline stages in order (position) and whether each is a late stage; edit it to match your CRM. deal_stage is matched without case.';

INSERT INTO dealrisk.stages (stage, position, is_late) VALUES
	('Qualified', 1, false),
	('Demo', 2, false),
	('Proposal', 3, true),
	('Negotiation', 4, true),
	('Closed', 5, true);

-- pg_dump keeps the stages you added or changed; unchanged seed rows are
-- recreated by CREATE EXTENSION.
SELECT pg_catalog.pg_extension_config_dump('dealrisk.stages',
	$$WHERE (stage, position, is_late) NOT IN (('Qualified', 1, false), ('Demo', 2, false), ('Proposal', 3, true), ('Negotiation', 4, true), ('Closed', 5, true))$$);

CREATE FUNCTION dealrisk.stage_position(stage text)
RETURNS int
AS 'MODULE_PATHNAME', 'dr_stage_position'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION dealrisk.stage_position(text) IS
	'Position of a stage in dealrisk.stages (matched without case); an unknown stage is an error';
