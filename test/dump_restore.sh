#!/usr/bin/env bash
# Dump and restore test (TAP): a database where a user trained models,
# watched and refreshed deals, and edited every configuration table (the
# edits of issue #8: a changed and an added stage, a changed and a removed
# action rule) goes through pg_dump -Fc and pg_restore into a new database;
# everything must come back exactly, and the daily loop must run there.
# Run by the harness (run.sh test) with PGHOST/PGPORT/PGUSER set; it uses
# the databases ${DBNAME}_dump and ${DBNAME}_restored and drops them at the end.
set -u
db=${DEALRISK_DB:-dealrisk}_dump
db2=${DEALRISK_DB:-dealrisk}_restored
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP DATABASE IF EXISTS $db2 WITH (FORCE)" >/dev/null 2>&1' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/harness/tap.sh"

echo "1..9"
fresh_databases "$db" "$db2"
q -d "$db" >/dev/null 2>"$work/fill.log" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION dealrisk;
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(3000, 9);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SELECT dealrisk.train('public.deals');
SELECT dealrisk.train('public.deals', 'second', activate => false);
SELECT dealrisk.watch('public.deals', 65);
SELECT dealrisk.refresh();
SELECT count(*) FROM dealrisk.claim_alerts(3, 'mailer-1');
-- the edits of the issue, and one more of each kind
UPDATE dealrisk.stages SET is_late = false WHERE stage = 'Proposal';
INSERT INTO dealrisk.stages VALUES ('Discovery', 6, false);
UPDATE dealrisk.action_rules SET action = 'CUSTOM' WHERE id = 3;
DELETE FROM dealrisk.action_rules WHERE id = 9;
DELETE FROM dealrisk.stages WHERE stage = 'Demo';
INSERT INTO dealrisk.action_rules (factor, action) VALUES ('region', 'Ask the regional lead');
SQL
ok $? "a database with models, a watched view, history, alerts and edited configuration"

# What must come back, as text.
state="SELECT concat_ws(E'\n',
	(SELECT string_agg(concat_ws(':', stage, position, is_late), ',' ORDER BY position) FROM dealrisk.stages),
	(SELECT string_agg(concat_ws(':', id, priority, factor, min_effect, min_risk, action), ',' ORDER BY id) FROM dealrisk.action_rules),
	(SELECT concat_ws(':', source, threshold, model, scored_at) FROM dealrisk.watch_config),
	(SELECT string_agg(concat_ws(':', id, name, active, md5(coefficients::text), md5(feature_spec::text)), ',' ORDER BY id) FROM dealrisk.models),
	(SELECT string_agg(concat_ws(':', name, model_id, forced), ',' ORDER BY activated_at) FROM dealrisk.model_activations),
	(SELECT count(*) || ' scores ' || md5(string_agg(deal_id || risk, ',' ORDER BY deal_id, scored_at)) FROM dealrisk.score_history),
	(SELECT count(*) || ' alerts, claimed by ' || string_agg(DISTINCT claimed_by, ',') FROM dealrisk.alerts),
	(SELECT 'rule ids up to ' || last_value || ' ' || is_called FROM dealrisk.action_rules_id_seq))"
before=$(q -d "$db" -c "$state")

pg_dump -Fc -d "$db" -f "$work/db.dump" 2>"$work/dump.log"
ok $? "pg_dump -Fc"
pg_restore -d "$db2" "$work/db.dump" >"$work/restore.log" 2>&1
ok $? "pg_restore into a new database, without errors"

after=$(q -d "$db2" -c "$state")
[ -n "$before" ] && [ "$before" = "$after" ]
ok $? "stages, action rules, watch configuration, models, activations, history, alerts and rule ids come back exactly"
[ "$before" = "$after" ] || { echo "# before:"; echo "$before" | sed 's/^/#   /'; echo "# after:"; echo "$after" | sed 's/^/#   /'; }

[ "$(q -d "$db2" -c "SELECT string_agg(stage, ',' ORDER BY position) FROM dealrisk.stages")" = "Qualified,Proposal,Negotiation,Closed,Discovery" ]
ok $? "the removed stage stays removed and the added one is there"
[ "$(q -d "$db2" -c "SELECT (SELECT action FROM dealrisk.action_rules WHERE id = 3) || '|' || (SELECT count(*) FROM dealrisk.action_rules WHERE id = 9)")" = "CUSTOM|0" ]
ok $? "the changed action rule is changed and the removed one stays removed"

q -d "$db2" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "SELECT dealrisk.refresh()" >/dev/null 2>"$work/refresh.log"
ok $? "refresh() runs in the restored database"
[ "$(q -d "$db2" -c "SELECT count(*) > 0 FROM dealrisk_watch.high_risk_deals")" = t ]
ok $? "the watched view is restored and refreshed"
# a user who edits again after the restore
q -d "$db2" -c "UPDATE dealrisk.stages SET position = position + 10" -c "DELETE FROM dealrisk.action_rules WHERE factor = 'region'" >/dev/null 2>&1 &&
	[ "$(q -d "$db2" -c "SELECT min(position) || ':' || (SELECT count(*) FROM dealrisk.action_rules) FROM dealrisk.stages")" = "11:8" ]
ok $? "the restored configuration can be edited as before"

if [ "$failed" != 0 ]; then
	for f in fill dump restore refresh; do echo "# $f:"; sed 's/^/#   /' "$work/$f.log"; done
	exit 1
fi
exit 0
