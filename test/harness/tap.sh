# TAP helpers of the shell tests (test/*.sh), sourced by them; sets
# variables and functions only.
#   ok STATUS DESCRIPTION   prints "ok N - ..." when STATUS is 0, else "not ok"
#   q PSQL-ARGS...          psql, quiet, unaligned, stopping at the first error
#   fresh_databases DB...   drops and creates each database
n=0
failed=0
ok() {
	n=$((n + 1))
	if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
fresh_databases() {
	local d
	for d in "$@"; do
		q -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" -c "CREATE DATABASE $d" || exit 1
	done
}
