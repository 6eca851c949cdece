#!/usr/bin/env bash
# Shared settings for the dealrisk harness: which PostgreSQL, where the
# scratch cluster lives, how to run commands as the server's user.
# Sourced by deps.sh, run.sh and test/csv_header.sh; sets variables and
# functions only.

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

# The columns of the data contract (docs/data-contract.md): deal_id and
# outcome are needed for anything; the others are used when present.
CONTRACT_NEEDED="deal_id outcome"
CONTRACT_COLUMNS="deal_id created_date closed_date sales_rep_id industry region product_type lead_source deal_stage deal_amount sales_cycle_days outcome last_activity_date stage_entered_date"

# A header name as the messages show it: the header is the export's, not
# ours, so its control characters (a terminal escape sequence, say) are
# shown as '?' rather than sent to the user's terminal.
shown_name() {
	printf '%s' "$1" | LC_ALL=C tr '\000-\037\177' '?'
}

# Check the header of a CRM export before any database is touched: every
# column must be one of the data contract (any order, no repeats), and
# deal_id and outcome must be there.  Sets csv_columns to the list for
# \copy (contract names only: nothing of the header itself reaches SQL).
# Names are compared in lower case, without quotes, spaces or a byte-order
# mark.
check_csv_header() {
	local file=$1 header name col unexpected= repeated= missing= absent= seen=" "
	if [ ! -r "$file" ] || [ -d "$file" ]; then
		echo "dealrisk: cannot read DEALS_CSV=$file" >&2
		exit 1
	fi
	header=$(head -n 1 "$file" | sed -e '1s/^\xEF\xBB\xBF//' | tr -d '\r"')
	if [ -z "$(printf '%s' "$header" | tr -d ' ,')" ]; then
		echo "dealrisk: $file has no header line: its first line must name the columns (docs/data-contract.md)" >&2
		exit 1
	fi
	csv_columns=
	IFS=, read -r -a names <<<"$header"
	for name in "${names[@]}"; do
		name=$(printf '%s' "$name" | tr -d ' \t')
		col=$(printf '%s' "$name" | tr 'A-Z' 'a-z')
		case " $CONTRACT_COLUMNS " in
		*" $col "*)
			case "$seen" in
			*" $col "*) repeated="${repeated:+$repeated, }$col" ;;
			*) seen="$seen$col "; csv_columns="${csv_columns:+$csv_columns,}$col" ;;
			esac ;;
		*) unexpected="${unexpected:+$unexpected, }'$(shown_name "$name")'" ;;
		esac
	done
	for col in $CONTRACT_NEEDED; do
		case "$seen" in *" $col "*) ;; *) missing="${missing:+$missing, }$col" ;; esac
	done
	for col in $CONTRACT_COLUMNS; do
		case "$seen" in *" $col "*) ;; *) absent="${absent:+$absent, }$col" ;; esac
	done
	if [ -n "$unexpected$repeated$missing" ]; then
		echo "dealrisk: $file does not follow the data contract (docs/data-contract.md); no database was touched:" >&2
		[ -n "$unexpected" ] && echo "  columns not in the contract: $unexpected (rename them to contract names, or drop them)" >&2
		[ -n "$repeated" ] && echo "  columns named twice: $repeated" >&2
		[ -n "$missing" ] && echo "  missing columns: $missing (every export needs them)" >&2
		echo "  the contract's columns: ${CONTRACT_COLUMNS// /, }" >&2
		exit 1
	fi
	if [ -n "$absent" ]; then
		echo "dealrisk: $file has no column $absent: the analyses that need them will say so" >&2
	fi
}
