#!/usr/bin/env bash
# Report test (TAP, issue #12): dealrisk.report() writes one self-contained
# HTML page; headless Chromium renders it as a person would see it.  The
# page must render (a non-blank screenshot), every chart's SVG must be there
# and draw something, no text may overflow its chart's box (measured after
# layout by test/report/check.js, injected into a copy of the page), a
# source that cannot fill every section must say why instead, and text from
# the data must not become markup.  Run by the harness (run.sh test) with
# PGHOST/PGPORT/PGUSER set; it uses the database ${DBNAME}_report.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
db=${DEALRISK_DB:-dealrisk}_report
work=$(mktemp -d)
chmod 755 "$work"
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1' EXIT
. "$TOP/test/harness/tap.sh"
charts="trend funnel drivers cycle risk forecast calibration"

echo "1..16"
fresh_databases "$db"
q -d "$db" >/dev/null 2>"$work/fill.log" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION dealrisk;
SET dealrisk.as_of_date = '2024-12-31';
CREATE TABLE public.deals AS SELECT * FROM dealrisk.sample_deals(5000, 42);
ALTER TABLE public.deals ADD PRIMARY KEY (deal_id);
SELECT dealrisk.train('public.deals');
-- an export with one status column and a close date, nothing else
CREATE TABLE public.thin AS SELECT deal_id, outcome, closed_date FROM public.deals;
-- segment values that are markup
CREATE TABLE public.hostile AS SELECT * FROM public.deals;
UPDATE public.hostile SET industry = '<script>alert(''x'')</script>' WHERE industry = 'FinTech';
SQL
ok $? "a database with the sample, a model, a thin export and one whose values are markup"
[ -s "$work/fill.log" ] && sed 's/^/# /' "$work/fill.log"

report() { # SOURCE FILE
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" -c "SET dealrisk.as_of_date = '2024-12-31'" \
		-c "SELECT dealrisk.report('$1')" >"$2" 2>"$work/report.log"
}
chrome() { # chromium with a profile of its own; as root it needs --no-sandbox
	timeout 180 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --mute-audio \
		--user-data-dir="$work/profile" "$@" 2>>"$work/chromium.log"
}
# the verdict of check.js on a copy of the page: one line per chart
layout() { # HTML -> lines "name shapes=N texts=N overflowing=N"
	cp "$TOP/test/report/check.js" "$work/check.js"
	sed 's#</body>#<script src="check.js"></script></body>#' "$1" >"$work/checked.html"
	chrome --virtual-time-budget=5000 --dump-dom "file://$work/checked.html" |
		sed -n '/<pre id="verdict">/,/<\/pre>/p' | sed 's#<pre id="verdict">##; s#</pre>.*##'
}

report public.deals "$work/report.html"
ok $? "report() writes the page of the sample"
head -c 15 "$work/report.html" | grep -q '^<!DOCTYPE html>' && tail -c 8 "$work/report.html" | grep -q '</html>'
ok $? "... one HTML document"
! grep -qiE '<script|<link|<img|<iframe|src=|url\(|https?://' "$work/report.html"
ok $? "... with no scripts and nothing to fetch"
missing=
for c in $charts; do grep -q "<svg class=\"chart\" data-chart=\"$c\"" "$work/report.html" || missing="$missing $c"; done
[ -z "$missing" ]
ok $? "... with every chart:$missing"
! grep -q 'class="why"' "$work/report.html"
ok $? "... and no section that could not be computed"

command -v chromium >/dev/null
ok $? "headless Chromium is installed (make deps installs it)"
chrome --window-size=960,4200 --screenshot="$work/report.png" "file://$work/report.html" >/dev/null
read -r width height share < <(python3 "$TOP/test/report/png_check.py" "$work/report.png" 2>&1 || echo 0 0 0)
[ "$width" = 960 ] && awk -v s="$share" 'BEGIN { exit !(s > 0.03) }'
ok $? "Chromium renders it: $width x $height pixels, $share of them not white"
layout "$work/report.html" >"$work/verdict"
[ "$(grep -c 'shapes=[1-9]' "$work/verdict")" = 7 ]
ok $? "after layout each of the 7 charts draws something"
! grep -q 'overflowing=[1-9]' "$work/verdict"
ok $? "... and no text overflows its chart"
sed 's/^/# /' "$work/verdict"
# keep the screenshot when asked (docs/report.png is made this way)
[ -n "${DEALRISK_REPORT_PNG:-}" ] && cp "$work/report.png" "$DEALRISK_REPORT_PNG"

report public.thin "$work/thin.html"
ok $? "report() writes the page of an export without dates, stages or amounts"
for s in funnel cycle drivers; do
	grep -q "<section id=\"$s\"><h2>[^<]*</h2><p class=\"why\">" "$work/thin.html" || echo "# no reason in section $s"
done
[ "$(grep -o '<section id="\(funnel\|cycle\|drivers\)"><h2>[^<]*</h2><p class="why">' "$work/thin.html" | wc -l)" = 3 ]
ok $? "... and its funnel, cycle and drivers say why they are not there"
grep -q 'data-chart="trend"' "$work/thin.html"
ok $? "... while its win-rate trend is drawn"
layout "$work/thin.html" >"$work/verdict"
! grep -q 'overflowing=[1-9]' "$work/verdict" && [ -s "$work/verdict" ]
ok $? "... and no text of it overflows"

report public.hostile "$work/hostile.html"
ok $? "report() writes the page of a source whose values are markup"
! grep -q '<script' "$work/hostile.html" && grep -q '&lt;script&gt;' "$work/hostile.html"
ok $? "... where they appear as text, not markup"
