#!/usr/bin/env bash
# perf profile of one backend running an SQL file (docs/benchmarks.md,
# "Tree models (issue #10)"): starts a session (JIT off, serial, as-of
# 2024-12-31), attaches `perf record -g` to its backend, runs the file and
# prints the top symbols (self time).  psql's environment (PG*) names the
# database; run as root (perf attaches to the server's process).
#   bash test/bench/gbm_perf.sh file.sql
set -e
sql=$1
psql -X -q -At -c "SET jit = off" -c "SET dealrisk.as_of_date = '2024-12-31'" -c "SET max_parallel_workers_per_gather = 0" -c "SELECT dealrisk.outcome_class('') IS NULL" -c "SELECT pg_backend_pid()" -c "SELECT pg_sleep(2)" -f "$sql" > /tmp/gb_perf.res &
sleep 1
pid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" | head -1)
perf record -F 499 -g -o /tmp/gb_perf.data -p "$pid" 2>/dev/null &
ppid=$!
wait %1 || true
kill -INT $ppid; wait $ppid || true
perf report -i /tmp/gb_perf.data --no-children --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -15
