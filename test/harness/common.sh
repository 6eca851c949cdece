#!/usr/bin/env bash
# Shared settings for the dealrisk harness: which PostgreSQL, where the
# scratch cluster lives, how to run commands as the server's user.
# Sourced by deps.sh and run.sh; sets variables only.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORT=${DEALRISK_PGPORT:-54329}
# `make demo` builds its database, `make test` works in another one (and in
# databases named after it), so that running the tests never drops what was
# built in the demo database.
DEMO_DB=${DEALRISK_DB:-dealrisk}
TEST_DB=${DEALRISK_TEST_DB:-${DEMO_DB}_test}

# The PostgreSQL major version: the one whose pg_config is given, else the
# newest server installed, else Debian's default (installed by deps.sh).
pg_major() {
	local v
	if [ -n "${PG_CONFIG:-}" ] && [ -x "$PG_CONFIG" ]; then
		"$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'
		return
	fi
	v=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null |
		sed -E 's#/usr/lib/postgresql/([0-9]+)/.*#\1#' | sort -n | tail -n 1)
	echo "$v"
}

if [ "$(id -u)" = 0 ]; then
	# The server refuses to run as root: run it as 'postgres', in /tmp.
	RUN_AS=postgres
	BASE=${DEALRISK_PGBASE:-/tmp/dealrisk-pg-$(printf '%s' "$TOP" | md5sum | cut -c1-8)}
else
	RUN_AS=
	BASE=${DEALRISK_PGBASE:-$TOP/.pgdata}
fi
PGDATA_DIR=$BASE/data
SOCKDIR=$BASE
LOGFILE=$BASE/server.log

# Run a server-side command as the cluster's owner.
as_owner() {
	if [ -n "$RUN_AS" ]; then
		runuser -u "$RUN_AS" -- "$@"
	else
		"$@"
	fi
}
