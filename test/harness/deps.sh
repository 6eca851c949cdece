#!/usr/bin/env bash
# Make sure what dealrisk builds and tests with is installed: the PostgreSQL
# server and its dev headers, pgTAP, pg_cron and pg_prove, and Chromium with
# a font for the report's rendering test.  As root it
# installs the missing Debian packages; otherwise it says what to install.
#   deps.sh          what `make test` and `make demo` need
#   deps.sh bench    that, and the extras of the benchmarks and interop
#                    checks (`make bench-deps`): Debian's python3 with
#                    scikit-learn, pandas and xgboost, and libxgboost's C
#                    headers and library (test/bench/gbm_reference.py,
#                    test/bench/xgb_capi_probe.c); the extension never
#                    builds or loads against them
set -euo pipefail
extras=${1:-}
case "$extras" in
''|bench) ;;
*) echo "usage: deps.sh [bench]" >&2; exit 2 ;;
esac
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	echo "dealrisk: installing $*" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

is_root=
[ "$(id -u)" = 0 ] && is_root=1

missing=()
command -v make >/dev/null || missing+=(make)
command -v gcc >/dev/null || missing+=(gcc)
MAJOR=$(pg_major)
if [ -z "$MAJOR" ]; then
	if [ -n "$is_root" ] && command -v apt-get >/dev/null; then
		# Debian's default PostgreSQL; no cluster is created or started.
		mkdir -p /etc/postgresql-common/createcluster.d
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/dealrisk.conf
		apt_install postgresql
		MAJOR=$(pg_major)
	else
		missing+=(postgresql)
	fi
fi
if [ -n "$MAJOR" ]; then
	PGBIN=/usr/lib/postgresql/$MAJOR/bin
	# pgxs.mk alone is not enough: some Debian builds ship it with the
	# client package, while the server headers come only with -dev.
	if [ ! -f "/usr/lib/postgresql/$MAJOR/lib/pgxs/src/makefiles/pgxs.mk" ] ||
		[ ! -f "/usr/include/postgresql/$MAJOR/server/postgres.h" ]; then
		missing+=("postgresql-server-dev-$MAJOR")
	fi
	SHARE=/usr/share/postgresql/$MAJOR
	[ -f "$SHARE/extension/pgtap.control" ] || missing+=("postgresql-$MAJOR-pgtap")
	[ -f "/usr/lib/postgresql/$MAJOR/lib/pg_cron.so" ] || missing+=("postgresql-$MAJOR-cron")
fi
command -v pg_prove >/dev/null || missing+=(libtap-parser-sourcehandler-pgtap-perl)
# the report is checked as a person sees it: rendered by headless Chromium
# (test/report.sh), with a font to lay its text out in
command -v chromium >/dev/null || missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v python3 >/dev/null || missing+=(python3)
if [ "$extras" = bench ]; then
	# Debian's own python3 (not whatever python3 comes first in PATH): the
	# packages below install their modules for it
	for pkg in sklearn:python3-sklearn pandas:python3-pandas xgboost:python3-xgboost; do
		/usr/bin/python3 -c "import ${pkg%%:*}" 2>/dev/null || missing+=("${pkg#*:}")
	done
	[ -f /usr/include/xgboost/c_api.h ] || missing+=(libxgboost-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
	if [ -n "$is_root" ] && command -v apt-get >/dev/null; then
		apt_install "${missing[@]}"
	else
		echo "dealrisk: missing build/test dependencies. Install them with:" >&2
		echo "    sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
fi
echo "$MAJOR"
