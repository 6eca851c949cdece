#!/usr/bin/env python3
"""test/harness/sync_upgrade.py PART NAME...: replace the definition of each function NAME in
upgrade part PART with the one in src/*.sql (run from the top of a
checkout): CREATE ... through its COMMENT ON FUNCTION when the part has the
comment right after the body, else through the end of the body.  Keeps OR
REPLACE as in PART."""
import glob, re, sys
def body_end(text, start):
    # a dollar-quoted body only if it starts before the statement's first
    # ';' at the end of a line (a C function's AS 'MODULE_PATHNAME' has none)
    m = re.compile(r"\bAS (\$\w*\$)").search(text, start)
    if m and m.start() > text.index(';\n', start):
        m = None
    if m:
        tag = m.group(1)
        e = text.index(tag + ';', m.end()) + len(tag) + 1
    else:
        e = text.index(';\n', start) + 1
    return e + 1 if text[e:e+1] == '\n' else e
def first_line(text, start):
    # a definition's first line, without OR REPLACE
    return text[start:text.index('\n', start)].replace('CREATE OR REPLACE FUNCTION', 'CREATE FUNCTION')
def find(text, name, pos=0):
    m = re.compile(r'CREATE (OR REPLACE )?FUNCTION dealrisk\.%s\(' % re.escape(name)).search(text, pos)
    if not m: return None
    e = body_end(text, m.end())
    c = re.compile(r"COMMENT ON FUNCTION dealrisk\.%s\([^)]*\) IS\s*\n?\s*'(?:[^']|'')*';\n" % re.escape(name))
    cm = c.match(text, e)
    return m.start(), e, (cm.end() if cm else None), m.group(1)
part = sys.argv[1]
ptext = open(part).read()
for name in sys.argv[2:]:
    r = find(ptext, name)
    if r is None: sys.exit('%s not in %s' % (name, part))
    # the definition in src/ with the part's first line (its signature): an
    # overload of the same name elsewhere must not replace it
    want = first_line(ptext, r[0])
    srcs = []
    for f in sorted(glob.glob('src/*.sql')):
        t = open(f).read(); sr = find(t, name)
        while sr:
            srcs.append((f, t, sr))
            sr = find(t, name, sr[1])
    match = [x for x in srcs if first_line(x[1], x[2][0]) == want]
    if len(match) != 1:
        sys.exit('%s: %d definitions in src/ start like the one in %s (%s)' % (name, len(match), part, want))
    _, t, sr = match[0]
    if r[2] is not None:
        if sr[2] is None: sys.exit('src has no COMMENT for %s' % name)
        new, end = t[sr[0]:sr[2]], r[2]
    else:
        new, end = t[sr[0]:sr[1]], r[1]
    if r[3]: new = new.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION', 1)
    ptext = ptext[:r[0]] + new + ptext[end:]
    print('synced', name, 'with comment' if r[2] is not None else 'body only')
open(part, 'w').write(ptext)
