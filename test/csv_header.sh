#!/usr/bin/env bash
# CSV header test (TAP): `make demo DEALS_CSV=file` checks the file's header
# with check_csv_header (test/harness/common.sh) before any database is
# touched.  Runs without a database: run by the harness (run.sh test).
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$TOP/test/harness/common.sh"
. "$TOP/test/harness/tap.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# check FILE: its exit status in status, its messages in $work/err, the
# column list for \copy in $work/cols (check_csv_header exits on a refusal:
# it runs in a subshell)
check() {
	rm -f "$work/cols"
	( check_csv_header "$1" 2>"$work/err" >/dev/null && echo "$csv_columns" >"$work/cols" )
	status=$?
}

echo "1..11"
printf '\xEF\xBB\xBF"Deal_ID", outcome ,created_date,deal_stage\r\nD1,Won,2024-01-01,Qualified\r\n' >"$work/ok.csv"
check "$work/ok.csv"
[ "$status" = 0 ] && [ "$(cat "$work/cols")" = deal_id,outcome,created_date,deal_stage ]
ok $? "a header with a byte-order mark, quotes, spaces, CRLF and upper case is accepted, in its order"
grep -q "has no column closed_date, sales_rep_id, .*stage_entered_date: the analyses that need them will say so" "$work/err"
ok $? "... and the contract columns it lacks are listed"

printf 'Deal_ID,Outcome,close_value,Account,deal_id\n' >"$work/bad.csv"
check "$work/bad.csv"
[ "$status" = 1 ]
ok $? "a header with columns outside the contract is refused"
grep -q "does not follow the data contract (docs/data-contract.md); no database was touched" "$work/err" &&
	grep -q "columns not in the contract: 'close_value', 'Account'" "$work/err"
ok $? "... naming each of them as written"
grep -q "columns named twice: deal_id" "$work/err"
ok $? "... and the columns named twice"

printf 'created_date,region\n' >"$work/missing.csv"
check "$work/missing.csv"
[ "$status" = 1 ] && grep -q "missing columns: deal_id, outcome" "$work/err"
ok $? "a header without deal_id and outcome is refused, naming them"

: >"$work/empty.csv"
check "$work/empty.csv"
[ "$status" = 1 ] && grep -q "has no header line" "$work/err"
ok $? "an empty file is refused"

check "$work/nope.csv"
[ "$status" = 1 ] && grep -q "cannot read DEALS_CSV=$work/nope.csv" "$work/err"
ok $? "a missing file is refused"

printf 'deal_id;outcome\n' >"$work/semicolon.csv"
check "$work/semicolon.csv"
[ "$status" = 1 ] && grep -q "columns not in the contract: 'deal_id;outcome'" "$work/err"
ok $? "a header separated by semicolons is refused, not misread"

# the header is the export's: its bytes are not sent to the terminal as
# they are (an escape sequence would drive it), and no name is taken for an
# option of a command
printf 'deal_id,outcome,\033]0;pwned\007\033[2J,-n,-e\n' >"$work/escape.csv"
check "$work/escape.csv"
[ "$status" = 1 ] && ! LC_ALL=C grep -q "$(printf '\033')" "$work/err" && grep -q "'?\]0;pwned??\[2J'" "$work/err"
ok $? "a header's control characters are shown as '?', not sent to the terminal"
grep -q "columns not in the contract: '?\]0;pwned??\[2J', '-n', '-e'" "$work/err"
ok $? "... and names that look like options are named as written"

[ "$failed" = 0 ]
