#!/usr/bin/env bash
# dealrisk on a sharded cluster (issue #11): a Citus coordinator and two
# workers on loopback, built from ../shared/vendor when Citus is missing.
#   citus.sh test    build and install, start the three nodes, create the
#                    extensions, run test/citus/*.sql on the coordinator,
#                    stop the nodes (make test-citus)
#   citus.sh start   start them and leave them running (prints how to connect)
#   citus.sh stop    stop them
# Ports: DEALRISK_PGPORT + 10 (coordinator), + 11 and + 12 (workers); the
# data directories are under the scratch directory of `make test`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mode=${1:-test}
CPORT=$((PORT + 10))
WPORTS="$((PORT + 11)) $((PORT + 12))"
CBASE=$BASE/citus
CDB=${DEALRISK_CITUS_DB:-dealrisk_citus}

MAJOR=$(pg_major)
stop_nodes() {
	local p
	for p in $CPORT $WPORTS; do
		if [ -f "$CBASE/n$p/postmaster.pid" ]; then
			as_owner "/usr/lib/postgresql/$MAJOR/bin/pg_ctl" -D "$CBASE/n$p" -m fast stop >/dev/null || true
		fi
	done
}
if [ "$mode" = stop ]; then
	stop_nodes
	exit 0
fi
case "$mode" in test|start) ;; *) echo "usage: citus.sh test|start|stop" >&2; exit 2 ;; esac

MAJOR=$(bash "$TOP/test/harness/deps.sh" | tail -n 1)
PGBIN=/usr/lib/postgresql/$MAJOR/bin
export PG_CONFIG=$PGBIN/pg_config
export PATH=$PGBIN:$PATH

# Citus is not packaged for Debian 12: the project's shared tools build it
# from the source tarball beside the checkout (it returns at once when it is
# installed already).
if [ ! -f "$("$PG_CONFIG" --pkglibdir)/citus.so" ]; then
	builder=$TOP/../shared/tools/build-citus.sh
	if [ ! -f "$builder" ]; then
		echo "dealrisk: Citus is not installed and $builder is missing: the sharded tests need ../shared beside the checkout" >&2
		exit 1
	fi
	echo "dealrisk: building Citus 13.2.2 from ../shared/vendor (6-8 minutes on 2 cores)..." >&2
	bash "$builder"
fi

# One checkout at a time installs and tests (as in run.sh).
exec 9>"${TMPDIR:-/tmp}/dealrisk-harness.lock"
if ! flock -n 9; then
	echo "dealrisk: another checkout is installing or testing dealrisk; waiting for it..." >&2
	flock 9
fi
make -s -C "$TOP" PG_CONFIG="$PG_CONFIG" >/dev/null
make -s -C "$TOP" PG_CONFIG="$PG_CONFIG" install >/dev/null

# A node: its own data directory, loopback only, Citus preloaded.
start_node() {
	local p=$1 d=$CBASE/n$1
	mkdir -p "$CBASE"
	[ -n "$RUN_AS" ] && chown "$RUN_AS" "$BASE" "$CBASE"
	if [ ! -f "$d/PG_VERSION" ]; then
		as_owner "$PGBIN/initdb" -D "$d" -U postgres --auth=trust --encoding=UTF8 --locale=C \
			>"$CBASE/initdb.$p.log" 2>&1 || { cat "$CBASE/initdb.$p.log" >&2; exit 1; }
		cat >>"$d/postgresql.conf" <<CONF
# dealrisk Citus test node
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$CBASE'
shared_preload_libraries = 'citus'
max_worker_processes = 16
max_connections = 100
shared_buffers = 256MB
work_mem = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
citus.log_remote_commands = off
CONF
	fi
	if ! as_owner "$PGBIN/pg_ctl" -D "$d" status >/dev/null 2>&1; then
		if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$p" >/dev/null 2>&1; then
			echo "dealrisk: port $p is taken by another server; choose other ports with DEALRISK_PGPORT" >&2
			exit 1
		fi
		as_owner "$PGBIN/pg_ctl" -D "$d" -l "$CBASE/n$p.log" -o "-p $p" -w -t 60 start >/dev/null 9>&- ||
			{ tail -n 30 "$CBASE/n$p.log" >&2; exit 1; }
	fi
}
[ "$mode" = test ] && trap stop_nodes EXIT
for p in $CPORT $WPORTS; do start_node "$p"; done
cq() { psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres "$@"; }

# A fresh database on every node; Citus propagates CREATE EXTENSION of the
# coordinator to the workers it knows.
for p in $CPORT $WPORTS; do
	cq -p "$p" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $CDB WITH (FORCE)" -c "CREATE DATABASE $CDB"
	cq -p "$p" -d "$CDB" -c "CREATE EXTENSION citus"
done
cq -p "$CPORT" -d "$CDB" -c "SELECT citus_set_coordinator_host('127.0.0.1', $CPORT)" >/dev/null
for p in $WPORTS; do
	cq -p "$CPORT" -d "$CDB" -c "SELECT citus_add_node('127.0.0.1', $p)" >/dev/null
done
cq -p "$CPORT" -d "$CDB" -c "CREATE EXTENSION dealrisk" -c "CREATE EXTENSION pgtap"

if [ "$mode" = start ]; then
	echo "dealrisk: Citus coordinator: psql -h 127.0.0.1 -p $CPORT -U postgres -d $CDB (workers on $WPORTS); stop: bash test/harness/citus.sh stop"
	exit 0
fi
cd "$TOP"
rc=0
# parity.sql first: it checks what distribute() does on a fresh database
# (the other files call it too, so that each can run alone)
PGHOST=127.0.0.1 PGPORT=$CPORT PGUSER=postgres pg_prove -d "$CDB" --failures test/citus/parity.sql \
	$(ls test/citus/*.sql | grep -v '/parity\.sql$') || rc=1
PGHOST=127.0.0.1 PGPORT=$CPORT PGUSER=postgres PGDATABASE=$CDB prove --exec bash test/citus/*.sh || rc=1
if [ $rc = 0 ]; then echo "dealrisk: all Citus tests passed"; else echo "dealrisk: CITUS TESTS FAILED" >&2; fi
exit $rc
