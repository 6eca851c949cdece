#!/usr/bin/env bash
# dealrisk on Citus (issue #11): a dealrisk setting changed by a plain SET
# in the coordinator's session does not reach the workers, where is_won(),
# deal_risk() and risk_band() of a pushed-down query run; the coordinator
# warns when it plans such a query, and stays quiet where the workers do
# see the value (SET LOCAL propagated by Citus, database defaults) or where
# no worker is involved.  Run by test/harness/citus.sh with PG* set to the
# coordinator; TAP.
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../harness/tap.sh"
echo "1..7"
warns() { psql -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" "$@" 2>&1 >/dev/null | grep -c 'in this session only: the Citus workers'; }

q -c "SET client_min_messages = warning" -c "SELECT count(*) FROM dealrisk.distribute()" \
	-c "DROP TABLE IF EXISTS s_deals, s_local" \
	-c "CREATE TABLE s_deals AS SELECT * FROM dealrisk.sample_deals(2000, 3)" \
	-c "CREATE TABLE s_local AS SELECT * FROM s_deals" \
	-c "SELECT create_distributed_table('s_deals', 'deal_id')" >/dev/null
ok $? "a distributed table and a local copy"

[ "$(warns -c "SET dealrisk.won_labels = 'Won,Closed Won'" -c "SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM s_deals")" = 1 ]
ok $? "a session SET of the outcome labels, then is_won() over a distributed table: one warning"
[ "$(warns -c "SET dealrisk.as_of_date = '2024-06-30'" -c "SELECT count(dealrisk.risk_band(d.planted_win_prob * 100)) FROM s_deals d")" = 1 ]
ok $? "a session SET of the as-of date, then risk_band() over it: one warning"
[ "$(warns -c "SET dealrisk.won_labels = 'Won,Closed Won'" -c "SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM s_local")" = 0 ]
ok $? "no warning for a table of the coordinator"
[ "$(warns -c "SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM s_deals")" = 0 ]
ok $? "no warning while the settings are the database's"
[ "$(warns -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL dealrisk.won_labels = 'Won,Closed Won'" \
	-c "SELECT dealrisk.win_rate(dealrisk.is_won(outcome)) FROM s_deals" -c "COMMIT")" = 0 ]
ok $? "no warning for a SET LOCAL that Citus sends the workers"
q -c "DROP TABLE s_deals, s_local"
ok $? "cleaned up"
[ "$failed" = 0 ]
