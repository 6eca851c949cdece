#!/usr/bin/env bash
# Upgrade test (TAP): installs a released version of dealrisk (the oldest,
# or DEALRISK_UPGRADE_FROM),
# fills it as a user would (a model, a watched view, score history, alerts,
# edited stages and action rules), runs ALTER EXTENSION dealrisk UPDATE and
# checks that
#   - the extension's schema equals a fresh install's (pg_dump
#     --binary-upgrade, which dumps an extension's own objects, compared
#     text for text, and the configuration tables pg_dump keeps);
#   - the data is still there and scores the same;
#   - the daily loop runs on the upgraded database.
# Run by the harness (run.sh test) with PGHOST/PGPORT/PGUSER set; it uses
# the databases ${DBNAME}_upgrade and ${DBNAME}_fresh and drops them at the end.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
db_up=${DEALRISK_DB:-dealrisk}_upgrade
db_new=${DEALRISK_DB:-dealrisk}_fresh
db_op=${DEALRISK_DB:-dealrisk}_upgrade_operator
op=dealrisk_upgrade_t_operator
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db_up WITH (FORCE)" -c "DROP DATABASE IF EXISTS $db_new WITH (FORCE)" -c "DROP DATABASE IF EXISTS $db_op WITH (FORCE)" -c "DROP ROLE IF EXISTS $op" >/dev/null 2>&1' EXIT

current=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$TOP/dealrisk.control")
oldest=$(ls "$TOP"/src/versions/dealrisk--*.sql | sed -n 's#.*/dealrisk--\([^-]*\)\.sql$#\1#p' | sort -V | head -n 1)
# the released version the main scenario upgrades from (run.sh runs it from
# each); the operator scenario below always starts from the oldest
from=${DEALRISK_UPGRADE_FROM:-$oldest}
. "$(dirname "${BASH_SOURCE[0]}")/harness/tap.sh"

echo "1..16"
fresh_databases "$db_up" "$db_new"

# What a user of the old version has: the same steps in both databases
# (the fresh one to compare schemas with), the edits only in the old one.
fill=$(cat <<'SQL'
SET client_min_messages = warning;
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(3000, 5);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SELECT dealrisk.train('public.deals') IS NOT NULL;
SELECT dealrisk.watch('public.deals', 60) IS NOT NULL;
SELECT dealrisk.refresh() IS NOT NULL;
SQL
)
q -d "$db_up" -c "CREATE EXTENSION dealrisk VERSION '$from'" >/dev/null &&
	q -d "$db_up" -c "$fill" >/dev/null &&
	q -d "$db_up" >/dev/null <<'SQL'
UPDATE dealrisk.stages SET is_late = false WHERE stage = 'Proposal';
INSERT INTO dealrisk.stages VALUES ('Discovery', 6, false);
INSERT INTO dealrisk.action_rules (priority, factor, min_effect, min_risk, action) VALUES (5, 'industry', 1, 20, 'Custom rule');
SELECT count(*) FROM dealrisk.claim_alerts(2);
SQL
ok $? "version $from installs and holds a model, a watched view, history, alerts and edited configuration"

facts="SELECT (SELECT count(*) FROM dealrisk.models) || ' models, ' || (SELECT count(*) FROM dealrisk.score_history)
	|| ' scores, ' || (SELECT count(*) FROM dealrisk.alerts) || ' alerts (' || (SELECT count(*) FROM dealrisk.alerts WHERE claimed_at IS NOT NULL)
	|| ' claimed), stages ' || (SELECT string_agg(stage || ':' || position || ':' || is_late, ',' ORDER BY position) FROM dealrisk.stages)
	|| ', rules ' || (SELECT string_agg(id || ':' || action, ',' ORDER BY id) FROM dealrisk.action_rules)
	|| ', risk sum ' || (SELECT round(sum(dealrisk.deal_risk(d))::numeric, 6) FROM public.deals d WHERE d.outcome IS NULL)"
before=$(q -d "$db_up" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "$facts")

q -d "$db_up" -c "ALTER EXTENSION dealrisk UPDATE" >"$work/update.log" 2>&1
ok $? "ALTER EXTENSION dealrisk UPDATE from $from to $current"
[ "$(q -d "$db_up" -c "SELECT extversion FROM pg_extension WHERE extname = 'dealrisk'")" = "$current" ]
ok $? "the upgraded extension is at version $current"

after=$(q -d "$db_up" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "$facts")
[ -n "$before" ] && [ "$before" = "$after" ]
ok $? "models, history, alerts and edited configuration are kept, and deals score the same"
[ "$before" = "$after" ] || { echo "# before: $before"; echo "# after:  $after"; }

# the watch configuration is what watch(source, 60) writes now: the
# threshold alone keeps its meaning (issue #9: the alert policy)
[ "$(q -d "$db_up" -c "SELECT concat_ws(':', threshold, top_fraction, rise, coalesce(max_per_rep::text, 'no cap')) FROM dealrisk.watch_config")" = "60:1:15:no cap" ]
ok $? "the watch configuration keeps its threshold alone (top_fraction 1), with rises of 15 points alerted again"

# the daily loop on the upgraded database: refresh() rebuilds the view of
# the old definition (it moved to dealrisk_watch with the upgrade)
q -d "$db_up" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "SELECT dealrisk.refresh()" >/dev/null 2>"$work/refresh.log"
ok $? "refresh() runs after the upgrade"
[ "$(q -d "$db_up" -c "SELECT count(*) > 0 FROM dealrisk_watch.high_risk_deals")" = t ]
ok $? "the watched view is dealrisk_watch.high_risk_deals and holds deals"

# the fresh install, filled the same way
q -d "$db_new" -c "CREATE EXTENSION dealrisk" >/dev/null && q -d "$db_new" -c "$fill" >/dev/null
ok $? "version $current installs fresh"

# the extension's own objects, as pg_dump --binary-upgrade writes them:
# OIDs, transaction ids, sequence positions (data) and the restrict key
# differ between databases and are left out, and the configuration tables
# are compared as a set below (an upgrade appends them in another order)
dump() {
	pg_dump --schema-only --binary-upgrade -n dealrisk -n dealrisk_watch -n dealrisk_bi -d "$1" |
		grep -v -e 'binary_upgrade_set_next_' -e 'binary_upgrade_create_empty_extension' \
			-e '^SET relfrozenxid' -e "^WHERE oid = '[0-9]*';" -e '^SELECT pg_catalog.setval(' \
			-e '^\\restrict' -e '^\\unrestrict' -e '^--' -e '^$'
}
dump "$db_up" >"$work/upgraded.sql"
dump "$db_new" >"$work/fresh.sql"
diff -u "$work/fresh.sql" "$work/upgraded.sql" >"$work/schema.diff"
ok $? "the upgraded schema equals a fresh install's"
[ -s "$work/schema.diff" ] && sed 's/^/# /' "$work/schema.diff" | head -n 80

config="SELECT string_agg(c.oid::regclass::text || ' ' || coalesce(x.cond, ''), E'\n' ORDER BY c.oid::regclass::text)
	FROM pg_extension e, unnest(e.extconfig, e.extcondition) x(rel, cond) JOIN pg_class c ON c.oid = x.rel
	WHERE e.extname = 'dealrisk'"
[ "$(q -d "$db_up" -c "$config")" = "$(q -d "$db_new" -c "$config")" ]
ok $? "pg_dump keeps the same configuration tables, with the same conditions"

# An operator set up as 0.1.0's docs/security.md said (CREATE on schema
# dealrisk, EXECUTE on the entry points, the view its own) keeps running the
# daily loop after the upgrade, and loses CREATE on dealrisk.
fresh_databases "$db_op"
q -d postgres -c "DROP ROLE IF EXISTS $op" -c "CREATE ROLE $op LOGIN" >/dev/null
q -d "$db_op" >/dev/null 2>"$work/op.log" <<SQL
SET client_min_messages = warning;
CREATE EXTENSION dealrisk VERSION '$oldest';
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(2000, 3);
GRANT USAGE, CREATE ON SCHEMA dealrisk TO $op;
GRANT EXECUTE ON FUNCTION dealrisk.train(regclass, text, text[], float8, float8, boolean),
	dealrisk.activate(bigint, boolean), dealrisk.rollback(text), dealrisk.import_model(jsonb, text),
	dealrisk.watch(regclass, float8, text), dealrisk.refresh(), dealrisk.prune_history(interval),
	dealrisk.schedule(text), dealrisk.unschedule(), dealrisk.track(regclass, text), dealrisk.untrack(regclass),
	dealrisk.claim_alerts(int, text, interval), dealrisk.ack_alert(bigint) TO $op;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dealrisk TO $op;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA dealrisk TO $op;
GRANT SELECT ON public.deals TO $op;
SET ROLE $op;
SELECT dealrisk.train('public.deals');
SELECT dealrisk.watch('public.deals', 60);
SQL
ok $? "version $oldest with an operator set up as its docs said"
q -d "$db_op" -c "ALTER EXTENSION dealrisk UPDATE" >>"$work/op.log" 2>&1
ok $? "... updates"
[ "$(q -d "$db_op" -c "SELECT has_schema_privilege('$op', 'dealrisk', 'CREATE')")" = f ]
ok $? "... and the operator no longer has CREATE on schema dealrisk"
q -d "$db_op" -c "SET ROLE $op" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "SELECT dealrisk.refresh()" >>"$work/op.log" 2>&1 &&
	[ "$(q -d "$db_op" -c "SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = 'dealrisk_watch.high_risk_deals'::regclass")" = "$op" ]
ok $? "... and the operator's refresh() runs after the upgrade, on its view in dealrisk_watch"
# train() calls helpers new in this version (the survivor curves): the
# upgrade grants them to the roles that may train
q -d "$db_op" -c "SET ROLE $op" -c "SET client_min_messages = warning" -c "SET dealrisk.as_of_date = '2024-12-31'" \
	-c "SELECT dealrisk.train('public.deals', activate => false)" >>"$work/op.log" 2>&1
ok $? "... and the operator's train() runs after the upgrade"
# the views of dealrisk_bi (0.4.0): the upgrade gives the operator what
# set_source() and the refresh that recomputes them need
q -d "$db_op" -c "SET ROLE $op" -c "SET client_min_messages = warning" -c "SET dealrisk.as_of_date = '2024-12-31'" \
	-c "SELECT count(*) FROM dealrisk.set_source()" -c "SELECT dealrisk.refresh()" >>"$work/op.log" 2>&1 &&
	[ "$(q -d "$db_op" -c "SELECT count(*) FROM dealrisk_bi.open_pipeline")" = "$(q -d "$db_op" -c "SELECT count(*) FROM public.deals WHERE outcome IS NULL")" ]
ok $? "... and the operator's set_source() and refresh() fill the views of dealrisk_bi after the upgrade"

if [ "$failed" != 0 ]; then
	echo "# the operator's database said:"; sed 's/^/# /' "$work/op.log"
	echo "# ALTER EXTENSION said:"; sed 's/^/# /' "$work/update.log"
	echo "# refresh() said:"; sed 's/^/# /' "$work/refresh.log"
	exit 1
fi
exit 0
