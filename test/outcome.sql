-- pgTAP: outcome labels, stage table, and their errors.
\ir harness/pgtap_setup.psql
SELECT plan(24);

SELECT is(dealrisk.is_won('Won'), true, 'Won is won');
SELECT is(dealrisk.is_won('  closed WON '), true, 'labels are trimmed and case-insensitive');
SELECT is(dealrisk.is_won('Lost'), false, 'Lost is lost');
SELECT is(dealrisk.is_won('Closed Lost'), false, 'Closed Lost is lost');
SELECT is(dealrisk.is_won('Open'), NULL, 'Open is NULL');
SELECT is(dealrisk.is_won(''), NULL, 'empty outcome is NULL');
SELECT is(dealrisk.is_won(NULL), NULL, 'NULL outcome is NULL');
SELECT throws_ok($$SELECT dealrisk.is_won('Maybe')$$, '22023',
	'unknown outcome label "Maybe"', 'an unknown label is an error naming it');
SELECT is(dealrisk.outcome_class('Maybe'), 'unknown', 'outcome_class never raises');
SELECT is(dealrisk.outcome_class('won'), 'won', 'outcome_class won');

SET LOCAL dealrisk.won_labels = 'Booked, won';
SELECT is(dealrisk.is_won('booked'), true, 'won_labels can be configured');
SET LOCAL dealrisk.lost_labels = 'Dead';
SELECT is(dealrisk.is_won('dead'), false, 'lost_labels can be configured');
SELECT throws_ok($$SELECT dealrisk.is_won('Lost')$$, '22023',
	'unknown outcome label "Lost"', 'labels not listed any more are unknown');
RESET dealrisk.won_labels;
RESET dealrisk.lost_labels;
SELECT is(ARRAY[dealrisk.is_won('Lost'), dealrisk.is_won('Lost'), dealrisk.is_won('Won '), dealrisk.is_won('won ')],
	ARRAY[false, false, true, true], 'labels listed again are known again, however often and however spelt');

SELECT is(dealrisk.stage_position('negotiation'), 4, 'stages match without case');
SELECT throws_ok($$SELECT dealrisk.stage_position('Limbo')$$, '22023',
	'unknown deal stage "Limbo"', 'an unknown stage is an error naming it');
UPDATE dealrisk.stages SET position = position + 1 WHERE position >= 2;
INSERT INTO dealrisk.stages VALUES ('Discovery', 2, false);
SELECT is(dealrisk.stage_position('Demo'), 3, 'stages can be renumbered in one statement');
DELETE FROM dealrisk.stages WHERE stage = 'Discovery';
UPDATE dealrisk.stages SET position = position - 1 WHERE position >= 3;
SELECT throws_ok($$SELECT dealrisk.stage_position('x'';DROP TABLE dealrisk.stages;--')$$, '22023',
	'unknown deal stage "x'';DROP TABLE dealrisk.stages;--"', 'a hostile stage name is just an unknown stage');
SELECT has_view('dealrisk', 'stages', 'the stages are a view (over defaults and edits)');
SELECT results_eq($$SELECT stage, position, is_late FROM dealrisk.stages ORDER BY position$$,
	$$VALUES ('Qualified'::text, 1, false), ('Demo', 2, false), ('Proposal', 3, true), ('Negotiation', 4, true), ('Closed', 5, true)$$,
	'stage table is seeded');
INSERT INTO dealrisk.stages VALUES ('Discovery', 6, false);
SELECT is(dealrisk.stage_position('discovery'), 6, 'new stages are picked up');
SELECT ok(EXISTS (SELECT 1 FROM pg_extension e WHERE e.extname = 'dealrisk'
	AND 'dealrisk.stage_edits'::regclass = ANY (e.extconfig)), 'the stage edits are kept by pg_dump');
SELECT throws_ok($$INSERT INTO dealrisk.stages VALUES ('Dup', 1, false)$$, '23505', NULL,
	'stage positions are unique');
SELECT throws_ok($$SET dealrisk.bogus = 1$$, '42602', NULL, 'the dealrisk GUC prefix is reserved');

SELECT * FROM finish();
ROLLBACK;
