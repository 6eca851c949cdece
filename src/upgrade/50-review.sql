-- Security and robustness review of 0.3.0 (issue #9): what the review
-- changed, in the order of the findings.

-- 1. The survivor-curve helpers that train() calls are new and not
-- executable by PUBLIC: the roles that may train (EXECUTE on train(), as
-- GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dealrisk gave the operator the
-- other helpers, docs/security.md) get them, else their train() fails after
-- the upgrade with "permission denied for function _open_knots".
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT DISTINCT a.grantee
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.train(regclass, text, text[], float8, float8, boolean)'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		  AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk._open_knots(regclass, regclass, text, text),'
			' dealrisk._open_pass(jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any"),'
			' dealrisk._open_step(jsonb, float8[], float8[], boolean),'
			' dealrisk._open_terms(regclass, text, jsonb, float8[], date, float8),'
			' dealrisk._open_accum(float8[], jsonb, float8[], int, date, date, float8, float8[], regtype, text[], "any") TO %I',
			pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;
