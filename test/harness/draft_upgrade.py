#!/usr/bin/env python3
"""Regenerate src/versions/dealrisk--0.1.0--0.2.0.sql while 0.2.0 is not
released: the hand-written steps at its head and tail, and between them every
statement of the current install script (src/*.sql, in the Makefile's
order) that is new or differs from the released 0.1.0 script, functions as
CREATE OR REPLACE.  test/upgrade.sh checks the result against a fresh
install.  Once 0.2.0 is released this tool goes: later upgrade scripts are
written by hand.  Usage: python3 test/harness/draft_upgrade.py
"""
import os
import re
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
def split(sql):
    """Split SQL text into statements (with their leading comments)."""
    out=[];cur=[];i=0;n=len(sql);depth_atomic=0
    buf=''
    while i<n:
        c=sql[i]
        if sql.startswith('--',i):
            j=sql.find('\n',i); j=n if j<0 else j+1
            buf+=sql[i:j]; i=j; continue
        if c=="'":
            j=i+1
            while True:
                k=sql.find("'",j)
                if k+1<n and sql[k+1]=="'": j=k+2; continue
                break
            buf+=sql[i:k+1]; i=k+1; continue
        m=re.match(r'\$([A-Za-z_]*)\$',sql[i:])
        if m:
            tag=m.group(0); k=sql.find(tag,i+len(tag))
            buf+=sql[i:k+len(tag)]; i=k+len(tag); continue
        m=re.match(r'BEGIN\s+ATOMIC\b',sql[i:],re.I)
        if m and re.search(r'\)\s*$|SAFE\s*$|IMMUTABLE\s*$|STABLE\s*$|\n$',buf):
            depth_atomic=1; buf+=m.group(0); i+=len(m.group(0)); continue
        if depth_atomic and re.match(r'END\s*;',sql[i:],re.I) and re.search(r';\s*$',buf):
            m=re.match(r'END\s*;',sql[i:],re.I); buf+=m.group(0); i+=len(m.group(0)); depth_atomic=0
            out.append(buf); buf=''; continue
        if c==';' and not depth_atomic:
            buf+=c; out.append(buf); buf=''; i+=1; continue
        buf+=c; i+=1
    if buf.strip(): out.append(buf)
    return out
def body(stmt):
    # statement without leading comment lines
    lines=stmt.strip('\n').split('\n')
    while lines and (lines[0].strip().startswith('--') or not lines[0].strip()): lines.pop(0)
    return '\n'.join(lines)
def key(stmt):
    b=body(stmt)
    m=re.match(r'CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|AGGREGATE)\s+([\w."]+)\s*\(',b)
    if m:
        # args up to matching paren
        j=m.end(); d=1; k=j
        while d:
            if b[k]=='(': d+=1
            elif b[k]==')': d-=1
            k+=1
        args=b[j:k-1]
        # drop defaults and names roughly: keep raw normalized whitespace
        return (m.group(1).upper(), m.group(2), re.sub(r'\s+',' ',args).strip())
    m=re.match(r'COMMENT ON (FUNCTION|AGGREGATE)\s+([\w."]+)\s*\((.*?)\)\s+IS',b,re.S)
    if m: return ('COMMENT '+m.group(1), m.group(2), re.sub(r'\s+',' ',m.group(3)).strip())
    return ('OTHER', re.sub(r'\s+',' ',b))
old=open(os.path.join(TOP, 'src/versions/dealrisk--0.1.0.sql')).read()
new=''.join(open(os.path.join(TOP, 'src', f + '.sql')).read()+'\n' for f in 'header stats outcome winrate funnel sample diagnostics model ops'.split())
os_=split(old); ns=split(new)
od={key(s):body(s) for s in os_}
parts=[]
for s in ns:
    k=key(s); b=body(s)
    if k[0]=='OTHER':
        if k not in od and not b.startswith('CREATE SCHEMA dealrisk_watch') and not b.startswith('CREATE SEQUENCE dealrisk.action_rules_id_seq') and not b.startswith('COMMENT ON SCHEMA dealrisk_watch') and not b.startswith('\\echo'):
            parts.append(s.strip('\n'))
        continue
    if k in od and od[k]==b: continue
    if k[0]=='FUNCTION':
        if k in od: parts.append(s.strip('\n').replace('CREATE FUNCTION','CREATE OR REPLACE FUNCTION',1))
        else: parts.append(s.strip('\n'))
    elif k[0].startswith('COMMENT'):
        parts.append(s.strip('\n'))
    else:
        raise SystemExit('unhandled '+str(k))
head='''-- dealrisk 0.1.0 -> 0.2.0: hardening (issue #8).
\\echo Use "ALTER EXTENSION dealrisk UPDATE TO '0.2.0'" to load this file. \\quit

-- The watched view moves to a schema of its own (no role needs CREATE on
-- dealrisk any more; docs/security.md).  An existing view keeps its OID,
-- grants, index and dependent views; the next refresh() rebuilds it with
-- the new definition when nothing depends on it.
CREATE SCHEMA dealrisk_watch;
COMMENT ON SCHEMA dealrisk_watch IS
	'Objects dealrisk.watch() creates for the role that runs the daily loop: the materialized view high_risk_deals';
DO $$
BEGIN
	IF pg_catalog.to_regclass('dealrisk.high_risk_deals') IS NOT NULL THEN
		ALTER MATERIALIZED VIEW dealrisk.high_risk_deals SET SCHEMA dealrisk_watch;
		UPDATE dealrisk.watch_config
		SET view_definition = pg_catalog.replace(view_definition, 'dealrisk.high_risk_deals', 'dealrisk_watch.high_risk_deals');
	END IF;
END
$$;

-- The stages and the action rules become views over the shipped defaults
-- and the user's edits, so that pg_dump keeps every edit exactly.  The old
-- tables step aside here and are turned into edits at the end.
-- 0.1.0's docs/security.md had the operator GRANT CREATE ON SCHEMA
-- dealrisk: a role holding it can create overloads of the extension's
-- functions that run with every caller's privileges.  Nobody but the
-- schema's owner keeps it (the operator gets CREATE on dealrisk_watch
-- below, which is all watch() needs).
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
		            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
		FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
		WHERE n.nspname OPERATOR(pg_catalog.=) 'dealrisk' AND a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
		  AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner
	LOOP
		EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA dealrisk FROM %s', g.grantee);
		RAISE NOTICE 'dealrisk: revoked CREATE on schema dealrisk from %: a role that can create objects there can run code as every caller of dealrisk (docs/security.md)', g.grantee;
	END LOOP;
END
$$;

-- functions whose result columns changed
DROP FUNCTION dealrisk.digest(interval, float8);

ALTER SEQUENCE dealrisk.action_rules_id_seq OWNED BY NONE;
ALTER SEQUENCE dealrisk.action_rules_id_seq START WITH 101;
ALTER TABLE dealrisk.stages RENAME TO stages_0_1_0;
ALTER TABLE dealrisk.action_rules RENAME TO action_rules_0_1_0;

-- Every SQL and PL/pgSQL function pins search_path; the objects below are
-- those of 0.2.0 that are new or differ from 0.1.0, in the order of the
-- install script.
'''
tail='''

-- The old configuration tables as edits: every row that differs from the
-- shipped one, and the shipped rows that were deleted.  Their grants go to
-- the views (and, for writers, to the edits tables the views' triggers
-- write as the writing role).
INSERT INTO dealrisk.stage_edits (stage, position, is_late)
	SELECT o.stage, o.position, o.is_late FROM dealrisk.stages_0_1_0 o
	EXCEPT SELECT d.stage, d.position, d.is_late FROM dealrisk.stage_defaults d;
INSERT INTO dealrisk.stage_edits (stage, removed)
	SELECT d.stage, true FROM dealrisk.stage_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.stages_0_1_0 o WHERE o.stage OPERATOR(pg_catalog.=) d.stage);
INSERT INTO dealrisk.action_rule_edits (id, priority, factor, min_effect, min_risk, action)
	SELECT o.id, o.priority, o.factor, o.min_effect, o.min_risk, o.action FROM dealrisk.action_rules_0_1_0 o
	EXCEPT SELECT d.id, d.priority, d.factor, d.min_effect, d.min_risk, d.action FROM dealrisk.action_rule_defaults d;
INSERT INTO dealrisk.action_rule_edits (id, removed)
	SELECT d.id, true FROM dealrisk.action_rule_defaults d
	WHERE NOT EXISTS (SELECT 1 FROM dealrisk.action_rules_0_1_0 o WHERE o.id OPERATOR(pg_catalog.=) d.id);
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT v.new_name, v.edits, a.privilege_type,
		       CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
		            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
		FROM (VALUES ('dealrisk.stages_0_1_0', 'dealrisk.stages', 'dealrisk.stage_edits'),
		             ('dealrisk.action_rules_0_1_0', 'dealrisk.action_rules', 'dealrisk.action_rule_edits')) v(old_name, new_name, edits),
		     pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid OPERATOR(pg_catalog.=) v.old_name::regclass::oid AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
	LOOP
		EXECUTE pg_catalog.format('GRANT %s ON %s TO %s', g.privilege_type, g.new_name, g.grantee);
		IF g.privilege_type IN ('INSERT', 'UPDATE', 'DELETE') THEN
			EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s', g.edits, g.grantee);
		END IF;
	END LOOP;
END
$$;
DROP TABLE dealrisk.stages_0_1_0;
DROP TABLE dealrisk.action_rules_0_1_0;

-- The record of refreshes starts with the refreshes in the score history
-- (so that refresh_status does not call an upgraded database "never
-- refreshed"), and the job of record is this database's dealrisk-refresh
-- job.  Roles that write the history and the configuration (the operator of
-- docs/security.md, granted ALL TABLES before these tables existed) may
-- write the new tables: refresh() and schedule() write them; readers of the
-- history may read refresh_status.
INSERT INTO dealrisk.refresh_log (started_at, finished_at, scored_at, deals_scored, alerts_written, model_id, run_by)
	SELECT h.scored_at, h.scored_at, h.scored_at, pg_catalog.count(*),
	       (SELECT pg_catalog.count(*) FROM dealrisk.alerts a WHERE a.created_at OPERATOR(pg_catalog.=) h.scored_at),
	       pg_catalog.max(h.model_id), '(before dealrisk 0.2.0)'
	FROM dealrisk.score_history h GROUP BY h.scored_at ORDER BY h.scored_at;
DO $$
DECLARE
	g record;
BEGIN
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
		EXECUTE 'INSERT INTO dealrisk.refresh_job (job_id, username, schedule)'
			' SELECT j.jobid, j.username, j.schedule FROM cron.job j'
			' WHERE j.jobname OPERATOR(pg_catalog.=) ''dealrisk-refresh''::pg_catalog.name'
			' AND j.database::pg_catalog.text OPERATOR(pg_catalog.=) pg_catalog.current_database()::pg_catalog.text'
			' ORDER BY j.jobid DESC LIMIT 1';
	END IF;
	FOR g IN
		SELECT v.kind, v.new_name, a.privilege_type,
		       CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
		            ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
		FROM (VALUES ('dealrisk.score_history', 'TABLE', 'dealrisk.refresh_log'),
		             ('dealrisk.score_history', 'TABLE', 'dealrisk.refresh_status'),
		             ('dealrisk.alerts_id_seq', 'SEQUENCE', 'dealrisk.refresh_log_id_seq'),
		             ('dealrisk.watch_config', 'TABLE', 'dealrisk.refresh_job')) v(old_name, kind, new_name),
		     pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid OPERATOR(pg_catalog.=) v.old_name::regclass::oid AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
	LOOP
		EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %s', g.privilege_type, g.kind, g.new_name, g.grantee);
	END LOOP;
END
$$;

-- The internal helpers were executable by PUBLIC in 0.1.0 and are not any
-- more: a role granted EXECUTE on an entry point (refresh(), train(), ...)
-- keeps working, also as the role of a pg_cron job, because it is granted
-- the helpers (they run with the caller's privileges: docs/security.md).
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT r.grantee, f.fn
		FROM (SELECT DISTINCT a.grantee
		      FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		      WHERE p.pronamespace OPERATOR(pg_catalog.=) 'dealrisk'::regnamespace AND p.proname !~ '^_'
		        AND a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE' AND a.grantee OPERATOR(pg_catalog.<>) 0
		        AND a.grantee OPERATOR(pg_catalog.<>) p.proowner) r,
		     (SELECT p.oid::regprocedure AS fn
		      FROM pg_catalog.pg_proc p
		      WHERE p.pronamespace OPERATOR(pg_catalog.=) 'dealrisk'::regnamespace AND p.proname ~ '^_'
		        AND NOT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) x
		                        WHERE x.grantee OPERATOR(pg_catalog.=) 0 AND x.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE')) f
	LOOP
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', g.fn, pg_catalog.pg_get_userbyid(g.grantee));
	END LOOP;
END
$$;

-- The watched view moved to dealrisk_watch: its owner may still refresh it
-- (and rebuild it there: USAGE and CREATE, as it had CREATE on dealrisk to
-- build it), and the roles it was granted to may still read it.
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN
		SELECT c.relowner AS grantee, 'USAGE, CREATE' AS privs FROM pg_catalog.pg_class c
		WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::oid
		UNION
		SELECT a.grantee, 'USAGE' FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
		WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('dealrisk_watch.high_risk_deals')::oid
		  AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
	LOOP
		IF g.grantee OPERATOR(pg_catalog.=) 0 THEN
			EXECUTE pg_catalog.format('GRANT %s ON SCHEMA dealrisk_watch TO PUBLIC', g.privs);
		ELSIF NOT pg_catalog.has_schema_privilege(g.grantee, 'dealrisk_watch', g.privs) THEN
			EXECUTE pg_catalog.format('GRANT %s ON SCHEMA dealrisk_watch TO %I', g.privs, pg_catalog.pg_get_userbyid(g.grantee));
		END IF;
	END LOOP;
END
$$;
'''
open(os.path.join(TOP, 'src/versions/dealrisk--0.1.0--0.2.0.sql'), 'w').write(head+'\n\n'.join(parts)+tail)
