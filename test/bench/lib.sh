#!/usr/bin/env bash
# Shared parts of the dealrisk benchmark scripts (sourced, not run):
# the sample table, and timing queries the same way everywhere.
# Uses RUNS (rounds per query) and, optionally, BENCH_SET (extra SET
# statements for the timed session, e.g. the as-of date).

# Create TABLE with N sample deals unless it already has N rows; extra
# arguments are further statements to run after it is made.
ensure_table() {
	local table=$1 n=$2 have
	shift 2
	local -a extra=()
	local stmt
	for stmt in "$@"; do extra+=(-c "$stmt"); done
	have=$(psql -X -At -c "SELECT count(*) FROM $table" 2>/dev/null || echo 0)
	if [ "$have" != "$n" ]; then
		echo "bench: generating $n deals into $table..." >&2
		psql -X -q -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
			-c "DROP TABLE IF EXISTS $table CASCADE" \
			-c "CREATE TABLE $table AS SELECT * FROM dealrisk.sample_deals($n, 42)" \
			-c "ALTER TABLE $table SET (parallel_workers = 2)" \
			"${extra[@]}" \
			-c "VACUUM ANALYZE $table"
	fi
}

# Median of a list of numbers on stdin, printed with format $1 (default %.1f).
median() {
	sort -g | awk -v f="${1:-%.1f}" '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf f, m}'
}

# Time the queries (arguments) with a number of parallel workers, all in one
# session (a new backend pays page faults on shared buffers that would blur
# the comparison): one warm-up round, then RUNS rounds in which every query
# runs once, so drift on the machine touches them alike.  Times are the
# executor's (EXPLAIN ANALYZE, no client transfer).  JIT is off: its compile
# time would swamp the serial plans only.  With workers > 0 the plan is made
# for 2 workers and max_parallel_workers caps how many start, and the leader
# does not scan, so "2 workers" is two processes on a 2-core machine (with
# the leader off and max_parallel_workers_per_gather = 1 the planner never
# picks a parallel plan: its cost divisor is 1).  Prints one median (ms) per
# query, in order.
medians() {
	local workers=$1 r i script out times
	shift
	local -a q=("$@")
	script=$(mktemp)
	times=$(mktemp)
	{
		echo "SET jit = off;"
		[ -n "${BENCH_SET:-}" ] && echo "$BENCH_SET"
		if [ "$workers" -gt 0 ]; then
			echo "SET max_parallel_workers_per_gather = 2;"
			echo "SET max_parallel_workers = $workers;"
			echo "SET parallel_leader_participation = off;"
			# a parallel plan even for a small table (it changes the plan's cost, not its run)
			echo "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
		else
			echo "SET max_parallel_workers_per_gather = 0;"
		fi
		for r in $(seq 0 "$RUNS"); do
			for i in "${!q[@]}"; do echo "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) ${q[$i]};"; done
		done
	} >"$script"
	out=$(psql -X -At -v ON_ERROR_STOP=1 -f "$script")
	if [ "$workers" -gt 0 ] && echo "$out" | grep -q "Workers Launched: [0-$((workers - 1))]$"; then
		echo "bench: warning: a Gather launched fewer than $workers workers" >&2
	fi
	# the k-th "Execution Time" is query (k-1) mod n of round (k-1) div n
	echo "$out" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' |
		awk -v n="${#q[@]}" 'NR > n {print (NR - 1) % n, $1}' >"$times"
	for i in "${!q[@]}"; do
		awk -v i="$i" '$1 == i {print $2}' "$times" | median
		echo
	done
	rm -f "$script" "$times"
}
