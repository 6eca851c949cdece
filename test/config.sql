-- pgTAP: the configuration views dealrisk.stages and dealrisk.action_rules:
-- they read like tables, take INSERT, UPDATE and DELETE, keep only the
-- user's edits in the edits tables (what pg_dump keeps; test/dump_restore.sh
-- runs the real dump), check keys and positions, and let a role with grants
-- edit them.
\ir harness/pgtap_setup.psql
SELECT plan(29);

SELECT is((SELECT string_agg(stage || ':' || position || ':' || is_late, ',' ORDER BY position) FROM dealrisk.stages),
	'Qualified:1:false,Demo:2:false,Proposal:3:true,Negotiation:4:true,Closed:5:true', 'the shipped stages');
SELECT is((SELECT count(*) FROM dealrisk.stage_edits), 0::bigint, 'no edits after CREATE EXTENSION');
SELECT is((SELECT count(*) FROM dealrisk.action_rules), 9::bigint, 'the shipped action rules');

-- the edits of issue #8
UPDATE dealrisk.stages SET is_late = false WHERE stage = 'Proposal';
INSERT INTO dealrisk.stages VALUES ('Discovery', 6, false);
UPDATE dealrisk.action_rules SET action = 'CUSTOM' WHERE id = 3;
DELETE FROM dealrisk.action_rules WHERE id = 9;
SELECT is((SELECT string_agg(stage || ':' || position || ':' || is_late, ',' ORDER BY position) FROM dealrisk.stages),
	'Qualified:1:false,Demo:2:false,Proposal:3:false,Negotiation:4:true,Closed:5:true,Discovery:6:false',
	'a changed and an added stage');
SELECT is((SELECT string_agg(stage || ':' || coalesce(position::text, '-') || ':' || coalesce(is_late::text, '-') || ':' || removed, ',' ORDER BY stage)
	FROM dealrisk.stage_edits), 'Discovery:6:false:false,Proposal:3:false:false', '... are the only stage edits');
SELECT is((SELECT (action, (SELECT count(*) FROM dealrisk.action_rules WHERE id = 9)) FROM dealrisk.action_rules WHERE id = 3),
	('CUSTOM'::text, 0::bigint), 'a changed and a removed action rule');
SELECT is((SELECT string_agg(id || ':' || removed, ',' ORDER BY id) FROM dealrisk.action_rule_edits), '3:false,9:true',
	'... are the only rule edits (a removed shipped rule is marked removed)');
SELECT is(dealrisk.stage_position('discovery'), 6, 'the C code reads the edited stages');

-- changing a row back to what was shipped drops its edit
UPDATE dealrisk.stages SET is_late = true WHERE stage = 'Proposal';
SELECT is((SELECT string_agg(stage, ',') FROM dealrisk.stage_edits), 'Discovery', 'an edit undone leaves no edit');
INSERT INTO dealrisk.action_rules (id, priority, factor, min_effect, min_risk, action)
	VALUES (9, 1000, '*', -1e300, 0, 'On track: keep the next step on the calendar');
SELECT is((SELECT count(*) FROM dealrisk.action_rule_edits WHERE id = 9), 0::bigint, 'a removed rule put back as shipped leaves no edit');

-- renames, renumbering in one statement, deletes of added rows
UPDATE dealrisk.stages SET stage = 'Qualification' WHERE stage = 'Qualified';
SELECT is((SELECT string_agg(stage, ',' ORDER BY position) FROM dealrisk.stages),
	'Qualification,Demo,Proposal,Negotiation,Closed,Discovery', 'a stage is renamed');
SELECT is((SELECT removed FROM dealrisk.stage_edits WHERE stage = 'Qualified'), true, '... the shipped name is marked removed');
UPDATE dealrisk.stages SET position = position + 1;
UPDATE dealrisk.stages SET position = 1 WHERE stage = 'Discovery';
SELECT is((SELECT string_agg(stage, ',' ORDER BY position) FROM dealrisk.stages),
	'Discovery,Qualification,Demo,Proposal,Negotiation,Closed', 'a stage goes first after renumbering in one UPDATE');
DELETE FROM dealrisk.stages WHERE stage = 'Discovery';
SELECT is((SELECT count(*) FROM dealrisk.stage_edits WHERE stage = 'Discovery'), 0::bigint, 'an added stage deleted leaves no edit');
SELECT is((SELECT count(*) FROM dealrisk.stages), 5::bigint, 'five stages left');

-- checks
SELECT throws_ok($$INSERT INTO dealrisk.stages VALUES ('Demo', 9, false)$$, '23505',
	'duplicate key value violates the key of dealrisk.stages', 'a stage name is a key');
SELECT throws_ok($$UPDATE dealrisk.stages SET stage = 'Demo' WHERE stage = 'Proposal'$$, '23505',
	'duplicate key value violates the key of dealrisk.stages', '... also when renaming');
SELECT throws_like($$INSERT INTO dealrisk.stages VALUES ('Review', 3, false)$$, 'stages % share position 3',
	'two stages cannot share a position');
SAVEPOINT before_lead;
INSERT INTO dealrisk.stages VALUES ('Lead', 0, false);
SELECT is((SELECT stage || ':' || position FROM dealrisk.stages ORDER BY position LIMIT 1), 'Lead:0',
	'a stage goes before the first one in one statement (position 0; issue #9)');
ROLLBACK TO SAVEPOINT before_lead;
SELECT throws_ok($$INSERT INTO dealrisk.stages VALUES ('  ', 9, false)$$, '23514', NULL, 'a stage name is not blank');
SELECT throws_ok($$INSERT INTO dealrisk.stages (stage, position) VALUES (NULL, 9)$$, '23502', NULL, 'a stage name is not NULL');
SELECT lives_ok($$INSERT INTO dealrisk.stages (stage, position) VALUES ('Review', 9)$$, 'is_late defaults to false');
SELECT is((SELECT is_late FROM dealrisk.stages WHERE stage = 'Review'), false, '... as before');
SELECT throws_ok($$INSERT INTO dealrisk.action_rules (factor, action) VALUES ('industry', ' ')$$, '23514', NULL,
	'an action is not blank');
INSERT INTO dealrisk.action_rules (factor, action) VALUES ('region', 'Ask the regional lead');
SELECT is((SELECT (id > 100, priority, min_effect, min_risk) FROM dealrisk.action_rules WHERE factor = 'region'),
	(true, 100, 0::float8, 0::float8), 'an added rule takes an id above the shipped ones, and the defaults');
UPDATE dealrisk.action_rules SET action = 'Call the regional lead' WHERE factor = 'region';
SELECT is((SELECT action FROM dealrisk.action_rules WHERE factor = 'region'), 'Call the regional lead', 'an added rule is changed');
SELECT throws_ok($$INSERT INTO dealrisk.action_rules (id, factor, action) VALUES (1, 'x', 'y')$$, '23505',
	'duplicate key value violates the key of dealrisk.action_rules', 'a rule id is a key');

-- a role with grants on the view and the edits table edits it
CREATE ROLE cfg_t_editor NOLOGIN;
GRANT USAGE ON SCHEMA dealrisk TO cfg_t_editor;
GRANT SELECT, INSERT, UPDATE, DELETE ON dealrisk.stages, dealrisk.stage_edits TO cfg_t_editor;
SET LOCAL ROLE cfg_t_editor;
UPDATE dealrisk.stages SET is_late = true WHERE stage = 'Demo';
RESET ROLE;
SELECT is((SELECT is_late FROM dealrisk.stages WHERE stage = 'Demo'), true, 'a granted role edits the stages');
SELECT is((SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
	WHERE p.proname IN ('_config_edit', '_stages_check') AND has_function_privilege('public', p.oid, 'EXECUTE')), NULL,
	'the trigger functions are not PUBLIC');

SELECT * FROM finish();
ROLLBACK;
