# dealrisk: PGXS build, scratch-cluster demo and tests.
EXTENSION  = dealrisk
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" dealrisk.control)

MODULE_big = dealrisk
OBJS = src/dealrisk.o src/stats.o src/outcome.o src/winrate.o src/funnel.o src/drivers.o src/trees.o src/gbm.o \
	src/features.o src/model.o src/train.o src/score.o src/trust.o src/checks.o src/citus.o src/forecast.o src/history.o

# The install script of the current version is assembled from the SQL beside
# each C file, in dependency order (a file may use objects of the files
# before it).
SQL_PARTS = src/header.sql src/stats.sql src/outcome.sql src/winrate.sql \
	src/funnel.sql src/sample.sql src/diagnostics.sql src/drivers.sql src/checks.sql src/model.sql src/trees.sql src/ops.sql src/forecast.sql src/bi.sql src/report.sql \
	src/citus.sql src/history.sql
DATA_built = $(EXTENSION)--$(EXTVERSION).sql
# Released install scripts and the upgrade scripts between versions: frozen
# once released; every change to SQL objects ships dealrisk--A--B.sql.
DATA = $(wildcard src/versions/$(EXTENSION)--*.sql)
# The upgrade script to the version under development, assembled from one
# part per change (src/upgrade/NN-topic.sql, name order) so that changes made
# side by side do not collide; frozen into src/versions/ at release.
PREV_VERSION = 0.3.0
UPGRADE_PARTS = $(sort $(wildcard src/upgrade/*.sql))
ifneq ($(UPGRADE_PARTS),)
DATA_built += $(EXTENSION)--$(PREV_VERSION)--$(EXTVERSION).sql
endif

TESTS      = $(wildcard sql/*.sql)
REGRESS    = $(patsubst sql/%.sql,%,$(TESTS))
REGRESS_OPTS = --inputdir=.
CONTRIB_TESTDB = dealrisk_regress

# -Wno-sign-compare: PostgreSQL's own array.h macros trip it under -Wextra.
PG_CFLAGS += -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare
SHLIB_LINK += -lm

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# Without pg_config only the harness targets work: they install it.
all:
	@echo "pg_config not found: run 'make test' or 'make demo' (they install the build dependencies when run as root)"; exit 1
else
include $(PGXS)
endif

$(OBJS): src/dealrisk.h src/model.h src/trees.h

# (the Makefile and the folder of parts are prerequisites too: a part added,
# removed or renamed, or a change of the lists, rebuilds the scripts)
$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) Makefile
	cat $(SQL_PARTS) > $@

$(EXTENSION)--$(PREV_VERSION)--$(EXTVERSION).sql: $(UPGRADE_PARTS) src/upgrade Makefile
	cat $(UPGRADE_PARTS) > $@

.PHONY: demo test report test-citus citus-start citus-stop bench cluster-start cluster-stop deps bench-deps
deps:
	@bash test/harness/deps.sh

# bench-deps: the extras of test/bench/ (python3-xgboost, libxgboost-dev,
# python3-sklearn, python3-pandas); `make test` does not need them.
bench-deps:
	@bash test/harness/deps.sh bench

# demo: (re)creates the database $(DEALRISK_DB) (default dealrisk) with the
# sample or DEALS_CSV=file (its header is checked before any database is
# touched).  test: works in its own databases (dealrisk_test, ...) and never
# drops the demo database; see README.md, "Two commands".
demo:
	@bash test/harness/run.sh demo

test:
	@bash test/harness/run.sh test

# test-citus: a Citus coordinator and two workers on loopback (ports
# DEALRISK_PGPORT + 10, 11, 12), Citus built from ../shared/vendor when it is
# missing, test/citus/*.sql run on the coordinator; see docs/scaling.md.
test-citus:
	@bash test/harness/citus.sh test

citus-start:
	@bash test/harness/citus.sh start

citus-stop:
	@bash test/harness/citus.sh stop

# report: report.html, dealrisk.report() of the demo database (made first
# when missing); see docs/bi.md.
report:
	@bash test/harness/run.sh report

bench:
	@bash test/harness/run.sh bench

cluster-start:
	@bash test/harness/run.sh start

cluster-stop:
	@bash test/harness/run.sh stop

# test/bench/xgb_capi_probe: libxgboost's C API measured in a process of its
# own (make bench-deps first; docs/model.md, "Gradient-boosted trees: library
# or our own"); never part of the extension's build.
test/bench/xgb_capi_probe: test/bench/xgb_capi_probe.c
	gcc -O2 -Wall -Wextra -Werror -o $@ $< -lxgboost -lm
