-- pgTAP: dealrisk._quality_flags (src/checks.c), the row tests of the
-- preflight in C, gives every row the bits the SQL CASE tests it replaced
-- gave: rows of NULLs, blank and padded ids and stages, stage names in
-- another case, NaN and infinite amounts and cycles, infinite and future
-- dates.
\ir harness/pgtap_setup.psql
SELECT plan(3);

CREATE TEMP TABLE qf (id text, cr date, cl date, stage text, amount numeric, cyc numeric, cls text, inf_date boolean);
INSERT INTO qf
SELECT id, cr, cl, stage, amount, cyc, cls, coalesce(NOT isfinite(cr) OR NOT isfinite(cl), false)
FROM (VALUES (NULL), (''), ('   '), (' D1 '), (E'\tD2')) i(id),
     (VALUES (NULL::date, NULL::date), ('2024-01-10', '2024-01-01'), ('2024-01-01', '2024-02-01'),
             ('-infinity', '2024-01-01'), ('2024-01-01', 'infinity'), ('2999-01-01', NULL),
             ('infinity', NULL), (current_date + 1, NULL)) d(cr, cl),
     (VALUES (NULL), (''), ('   '), ('Qualified'), (' qualified '), ('QUALIFIED'), ('Nowhere'), (E'\tClosed\n')) s(stage),
     (VALUES (NULL::numeric), ('NaN'), ('Infinity'), ('-Infinity'), (-5), (0), (12.5)) a(amount),
     (VALUES (NULL::numeric), ('NaN'), ('Infinity'), ('-Infinity'), (-1), (31), (31.5), (0)) c(cyc),
     (VALUES ('won'), ('lost'), ('open'), ('unknown')) o(cls)
WHERE (hashtext(coalesce(id, '~') || cr::text || coalesce(cl::text, '~') || coalesce(stage, '~')
       || coalesce(amount::text, '~') || coalesce(cyc::text, '~') || cls) % 7) = 0;

-- the SQL tests as _source_profile ran them before src/checks.c
CREATE TEMP TABLE flags AS
SELECT c.*,
       CASE WHEN c.id IS NULL OR pg_catalog.btrim(c.id) = '' THEN 1 ELSE 0 END
       | CASE WHEN c.cl < c.cr THEN 4 ELSE 0 END
       | CASE WHEN c.cls IN ('won', 'lost') AND c.cl IS NULL THEN 8 ELSE 0 END
       | CASE WHEN c.cls = 'open' AND c.cl IS NOT NULL THEN 16 ELSE 0 END
       | CASE WHEN c.amount IS NULL THEN 32 ELSE 0 END
       | CASE WHEN c.amount IS NOT NULL
               AND (c.amount = 'NaN'::numeric OR c.amount = 'Infinity'::numeric
                    OR c.amount = '-Infinity'::numeric) THEN 64 ELSE 0 END
       | CASE WHEN c.amount < 0 AND c.amount <> '-Infinity'::numeric THEN 128 ELSE 0 END
       | CASE WHEN c.cls = 'unknown' THEN 256 ELSE 0 END
       | CASE WHEN c.st IS NULL OR c.st = '' THEN 512 ELSE 0 END
       | CASE WHEN c.st <> '' AND dealrisk._stage_key(c.st) <> ALL (k.keys) THEN 1024 ELSE 0 END
       | CASE WHEN c.both_dates AND c.cyc IS NOT NULL AND c.cyc <> (c.cl - c.cr) THEN 2048 ELSE 0 END
       | CASE WHEN c.cyc < 0 THEN 4096 ELSE 0 END
       | CASE WHEN c.cr > CURRENT_DATE AND c.cr <> 'infinity'::date THEN 8192 ELSE 0 END
       | CASE WHEN c.inf_date THEN 16384 ELSE 0 END AS sql_f,
       dealrisk._quality_flags(c.id, c.cr, c.cl, c.st, c.amount, c.cyc, c.cls, c.both_dates, c.inf_date, k.keys) AS c_f
FROM (SELECT q.*, pg_catalog.btrim(q.stage, E' \t\n\r\f\013') AS st,
             q.cr IS NOT NULL AND q.cl IS NOT NULL AND isfinite(q.cr) AND isfinite(q.cl) AS both_dates
      FROM qf q) c,
     (SELECT coalesce(array_agg(dealrisk._stage_key(s.stage)), '{}') AS keys FROM dealrisk.stages s) k;

SELECT ok((SELECT count(*) > 2000 AND count(DISTINCT sql_f) > 100 FROM flags),
	'the rows cover many combinations of the tests');
SELECT is((SELECT count(*)::int FROM flags WHERE sql_f IS DISTINCT FROM c_f), 0,
	'every row fails the same tests in C as in SQL');
SELECT is((SELECT bit_or(c_f) FROM flags), 1 | 4 | 8 | 16 | 32 | 64 | 128 | 256 | 512 | 1024 | 2048 | 4096 | 8192 | 16384,
	'... and every test is failed by some row');

SELECT * FROM finish();
ROLLBACK;
