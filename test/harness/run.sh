#!/usr/bin/env bash
# dealrisk harness: build and install the extension, run a scratch
# PostgreSQL cluster (loopback only, pg_cron preloaded) and run the demo,
# the tests or the benchmark against it.
#   run.sh demo | test | report | bench | start | stop
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mode=${1:-test}

if [ "$TEST_DB" = "$DEMO_DB" ]; then
	echo "dealrisk: the test database must not be the demo database ($DEMO_DB): set DEALRISK_TEST_DB to another name" >&2
	exit 2
fi

if [ "$mode" = demo ] && [ -n "${DEALS_CSV:-}" ]; then
	csv_dir=$(CDPATH= cd -- "$(dirname -- "$DEALS_CSV")" 2>/dev/null && pwd) ||
		{ echo "dealrisk: cannot read DEALS_CSV=$DEALS_CSV" >&2; exit 1; }
	csv=$csv_dir/$(basename "$DEALS_CSV")
	check_csv_header "$csv"
fi

if [ "$mode" = stop ]; then
	MAJOR=$(pg_major)
	if [ -n "$MAJOR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
		as_owner "/usr/lib/postgresql/$MAJOR/bin/pg_ctl" -D "$PGDATA_DIR" -m fast stop
	else
		echo "dealrisk: no scratch cluster is running in $PGDATA_DIR"
	fi
	exit 0
fi

MAJOR=$(bash "$TOP/test/harness/deps.sh" | tail -n 1)
PGBIN=/usr/lib/postgresql/$MAJOR/bin
export PG_CONFIG=$PGBIN/pg_config
export PATH=$PGBIN:$PATH

# One checkout at a time installs and tests: every checkout installs into
# the same server directories, so two at once would test each other's build.
# (the server is started with the lock closed: it must not hold it)
exec 9>"${TMPDIR:-/tmp}/dealrisk-harness.lock"
if ! flock -n 9; then
	echo "dealrisk: another checkout is installing or testing dealrisk; waiting for it..." >&2
	flock 9
fi

# Build as the caller; install where the server looks for extensions.
make -s -C "$TOP" PG_CONFIG="$PG_CONFIG" ${DEALRISK_CFLAGS:+PG_CFLAGS+="$DEALRISK_CFLAGS"} >/dev/null
pkglib=$("$PG_CONFIG" --pkglibdir)
if [ -w "$pkglib" ]; then
	make -s -C "$TOP" PG_CONFIG="$PG_CONFIG" install >/dev/null
elif ! cmp -s "$TOP/dealrisk.so" "$pkglib/dealrisk.so"; then
	echo "dealrisk: cannot write to $pkglib. Install the extension with:" >&2
	echo "    sudo make -C $TOP install PG_CONFIG=$PG_CONFIG" >&2
	echo "and run this command again." >&2
	exit 1
fi

# The scratch cluster: created once, reused while it runs.
start_cluster() {
	mkdir -p "$BASE"
	[ -n "$RUN_AS" ] && chown "$RUN_AS" "$BASE"
	if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
		as_owner "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust \
			--encoding=UTF8 --locale=C >"$BASE/initdb.log" 2>&1 ||
			{ cat "$BASE/initdb.log" >&2; exit 1; }
		cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
# dealrisk scratch cluster
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$DEMO_DB'
cron.use_background_workers = on
max_worker_processes = 16
max_parallel_workers_per_gather = 2
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
log_min_messages = warning
CONF
	fi
	if ! as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1; then
			echo "dealrisk: port $PORT is taken by another server (a scratch cluster of another checkout?)." >&2
			echo "Stop it (make cluster-stop in that checkout) or choose a port: DEALRISK_PGPORT=54330 make ..." >&2
			exit 1
		fi
		as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOGFILE" -o "-p $PORT" -w -t 60 start >/dev/null 9>&- ||
			{ tail -n 30 "$LOGFILE" >&2; exit 1; }
	fi
}
start_cluster
export PGHOST=$SOCKDIR PGPORT=$PORT PGUSER=postgres
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# pg_cron works in one database of the server (cron.database_name, read at
# start): the demo database, or the test database while `make test` runs.
# Pointing it elsewhere restarts the scratch server (sessions are cut).
# Dropping the database pg_cron works in stops its launcher for good: a
# restart brings it back too.
restart_server() {
	as_owner "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOGFILE" -o "-p $PORT" -w -t 60 -m fast restart >/dev/null 9>&- ||
		{ tail -n 30 "$LOGFILE" >&2; exit 1; }
}
cron_database() {
	psql -X -At -d postgres -c "SELECT current_setting('cron.database_name', true)"
}
point_cron_at() {
	local restart=
	if [ "$(cron_database)" != "$1" ]; then
		psql_q -d postgres -c "ALTER SYSTEM SET cron.database_name = '$1'"
		restart=1
	elif [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'")" = 0 ] &&
	     [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$1'")" = 1 ]; then
		restart=1
	fi
	[ -n "$restart" ] && restart_server
	return 0
}

# pg_cron back in the database it worked in before the tests, if it exists.
restore_cron() {
	if [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$cron_before'")" = 1 ]; then
		point_cron_at "$cron_before"
	fi
}

# A fresh database with the extension and pg_cron (which then runs in it).
fresh_db() {
	psql_q -d postgres -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
	point_cron_at "$1"
	psql_q -d "$1" -c "CREATE EXTENSION dealrisk" -c "CREATE EXTENSION pg_cron"
}

# Load a CRM export whose header check_csv_header accepted into public.deals.
load_csv() {
	local q="'"
	psql_q -d "$DBNAME" -f "$TOP/test/fixtures/deals_table.sql"
	# the path in a psql quoted string: a quote doubled ("Bob's export.csv")
	psql_q -d "$DBNAME" -c "\\copy public.deals($csv_columns) FROM '${1//$q/$q$q}' WITH (FORMAT csv, HEADER true)"
}

# The demo database: the sample (or DEALS_CSV) in public.deals.
make_demo_db() {
	fresh_db "$DBNAME"
	if [ -n "${DEALS_CSV:-}" ]; then
		load_csv "$csv"
	else
		psql_q -d "$DBNAME" -c "CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(20000, 42)"
	fi
	psql_q -d "$DBNAME" -c "ANALYZE public.deals"
	if [ -z "${DEALS_CSV:-}" ]; then
		# the sample's data ends on 2024-12-31: score its open deals as of
		# then (before the diagnosis, whose preflight checks the scoring date)
		psql_q -d postgres -c "ALTER DATABASE $DBNAME SET dealrisk.as_of_date = '2024-12-31'"
	fi
}

case "$mode" in
start)
	echo "dealrisk: scratch cluster running: psql -h $SOCKDIR -p $PORT -U postgres"
	;;
demo)
	DBNAME=$DEMO_DB
	make_demo_db
	psql -X -d "$DBNAME" -At -c "SELECT dealrisk.diagnose('public.deals')"
	echo
	echo "Deal risk model (dealrisk.train('public.deals')):"
	psql -X -q -d "$DBNAME" -c "SET client_min_messages = warning" -f - <<'SQL' || true
SELECT dealrisk.train('public.deals') AS model_id \gset
SELECT id AS model_id, active, round((metrics->>'auc')::numeric, 3) AS holdout_auc,
       round((metrics->>'brier')::numeric, 3) AS brier, round((metrics->>'brier_base')::numeric, 3) AS brier_base_rate,
       coalesce(dealrisk._quality_problem(metrics), 'good enough to use') AS verdict
FROM dealrisk.models WHERE id = :model_id;
SELECT d.deal_id, round(dealrisk.deal_risk(d.*)::numeric, 1) AS risk, dealrisk.risk_band(dealrisk.deal_risk(d.*)) AS band,
       (SELECT e.reason FROM dealrisk.deal_risk_explain(d.*) e LIMIT 1) AS main_reason,
       dealrisk.recommended_action(d.*) AS action
FROM public.deals d
WHERE dealrisk.is_won(d.outcome) IS NULL AND EXISTS (SELECT 1 FROM dealrisk.models WHERE name = 'default' AND active)
ORDER BY dealrisk.deal_risk(d.*) DESC LIMIT 5;
SQL
	cat <<MSG

Connect:  psql -h $SOCKDIR -p $PORT -U postgres -d $DBNAME
Stop:     make cluster-stop
MSG
	;;
test)
	DBNAME=$TEST_DB
	export DEALRISK_DB=$TEST_DB	# the test scripts name their databases after it
	# pg_cron works in the test database while the tests run, then goes back
	# to the database it worked in (if that one exists), whatever happens
	cron_before=$(cron_database)
	if [ -n "$cron_before" ] && [ "$cron_before" != "$TEST_DB" ]; then
		trap restore_cron EXIT
	fi
	fresh_db "$DBNAME"
	psql_q -d "$DBNAME" -c "CREATE EXTENSION pgtap"
	rc=0
	cd "$TOP"
	if ! make -s PG_CONFIG="$PG_CONFIG" installcheck; then
		rc=1
		[ -f regression.diffs ] && head -n 200 regression.diffs
	fi
	pg_prove -d "$DBNAME" --failures test/*.sql || rc=1
	# the upgrade from each released version (its own databases)
	for v in $(ls src/versions/dealrisk--*.sql | sed -n 's#.*/dealrisk--\([^-]*\)\.sql$#\1#p' | sort -V); do
		echo "# upgrade from $v"
		DEALRISK_UPGRADE_FROM=$v prove --exec bash test/upgrade.sh || rc=1
	done
	prove --exec bash test/dump_restore.sh || rc=1
	prove --exec bash test/csv_header.sh || rc=1
	prove --exec bash test/report.sh || rc=1
	if [ $rc = 0 ]; then echo "dealrisk: all tests passed"; else echo "dealrisk: TESTS FAILED" >&2; fi
	exit $rc
	;;
report)
	# report.html of the demo database (made as `make demo` makes it when
	# missing), with its model (trained when it has none)
	DBNAME=$DEMO_DB
	if [ "$(psql -X -At -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = '$DBNAME'")" != 1 ]; then
		DEALS_CSV= make_demo_db
	fi
	psql_q -d "$DBNAME" -c "SET client_min_messages = warning" \
		-c "SELECT dealrisk.train('public.deals') FROM (SELECT 1) x WHERE NOT EXISTS (SELECT 1 FROM dealrisk.models WHERE name = 'default' AND active)" >/dev/null
	psql_q -At -d "$DBNAME" -c "SELECT dealrisk.report('public.deals')" >"$TOP/report.html"
	echo "dealrisk: wrote $TOP/report.html (open it in a browser; it prints too)"
	;;
bench)
	DBNAME=$DEMO_DB
	psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DBNAME}_bench'" | grep -q 1 ||
		psql_q -d postgres -c "CREATE DATABASE ${DBNAME}_bench"
	psql_q -d "${DBNAME}_bench" -c "DROP EXTENSION IF EXISTS dealrisk CASCADE" -c "CREATE EXTENSION dealrisk"
	for script in bench.sh model_bench.sh ops_bench.sh; do
		[ -f "$TOP/test/bench/$script" ] || continue
		echo "== test/bench/$script" >&2
		PGDATABASE=${DBNAME}_bench bash "$TOP/test/bench/$script"
	done
	;;
*)
	echo "usage: run.sh demo|test|report|bench|start|stop" >&2
	exit 2
	;;
esac
