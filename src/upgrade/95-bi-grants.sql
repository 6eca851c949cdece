-- Issue #12 (the views of dealrisk_bi, 94-bi.sql): the roles that could
-- refresh can set the source of the views and have refresh() recompute
-- them; the roles that could write the score history (an operator given
-- DML on every table of dealrisk, as docs/security.md says) can write
-- their snapshot tables, and those that could read the models can read
-- them.  Nothing is granted to a role that had none of these.
DO $$
DECLARE
	g record;
	t text;
BEGIN
	FOR g IN
		SELECT a.grantee, a.is_grantable
		FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		WHERE p.oid OPERATOR(pg_catalog.=) 'dealrisk.refresh()'::regprocedure::oid
		  AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
		  AND a.grantee OPERATOR(pg_catalog.<>) 0
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION dealrisk.set_source(regclass, text), dealrisk._bi_build(),'
			' dealrisk._bi_fill(text, text, text, text, regclass, text, bigint, date, timestamptz),'
			' dealrisk._bi_section(text, regclass, bigint, date, timestamptz, bigint, text), dealrisk._bi_target() TO %I%s',
			pg_catalog.pg_get_userbyid(g.grantee),
			CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
	END LOOP;
	FOR g IN
		SELECT a.grantee, pg_catalog.array_agg(DISTINCT a.privilege_type) AS privs
		FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid OPERATOR(pg_catalog.=) 'dealrisk.score_history'::regclass::oid
		  AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
		  AND a.grantee OPERATOR(pg_catalog.<>) c.relowner AND a.grantee OPERATOR(pg_catalog.<>) 0
		GROUP BY a.grantee
	LOOP
		FOREACH t IN ARRAY ARRAY['bi_config', 'bi_sections', 'bi_headline', 'bi_win_rate', 'bi_cycle', 'bi_funnel',
		                         'bi_drivers', 'bi_open_deals', 'bi_checks', 'bi_diagnosis'] LOOP
			EXECUTE pg_catalog.format('GRANT %s ON TABLE dealrisk.%I TO %I',
				pg_catalog.array_to_string(g.privs, ', '), t, pg_catalog.pg_get_userbyid(g.grantee));
		END LOOP;
	END LOOP;
END
$$;
