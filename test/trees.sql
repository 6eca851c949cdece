-- pgTAP: tree ensembles (src/trees.c, issue #10): margins, missing values,
-- path-dependent TreeSHAP (contributions that add up to the margin, and
-- the values of a hand-worked example), and the checks of a bad ensemble.
\ir harness/pgtap_setup.psql
SELECT plan(18);

\ir harness/error_of.psql

-- Tree 1 (root splits x0 < 0.5, its right child x1 < 2, missing right at
-- the root and left below); tree 2 a single split on x1 < 1.
--   tree 1: node 0 x0<0.5 -> 1 | 2;  node 1 leaf 1.0 (cover 4);  node 2 x1<2 -> 3 | 4;
--           node 3 leaf -2.0 (cover 3);  node 4 leaf 0.5 (cover 1)
--   tree 2: node 0 x1<1 -> 1 | 2;  node 1 leaf 0.25 (cover 2);  node 2 leaf -0.75 (cover 6)
CREATE TEMP TABLE ens AS SELECT
	'{0,5}'::int4[] AS start,
	'{1,-1,3,-1,-1, 1,-1,-1}'::int4[] AS l,
	'{2,-1,4,-1,-1, 2,-1,-1}'::int4[] AS r,
	'{0,0,1,0,0, 1,0,0}'::int4[] AS f,
	'{0.5,0,2,0,0, 1,0,0}'::float8[] AS th,
	'{f,f,t,f,f, f,f,f}'::boolean[] AS dl,
	'{0,1.0,0,-2.0,0.5, 0,0.25,-0.75}'::float8[] AS v,
	'{8,4,4,3,1, 8,2,6}'::float8[] AS c,
	0.1::float8 AS base;
CREATE FUNCTION pg_temp.m(x float8[]) RETURNS float8 LANGUAGE sql AS
	$$SELECT dealrisk._trees_predict(start, l, r, f, th, dl, v, c, base, x) FROM ens$$;
CREATE FUNCTION pg_temp.s(x float8[]) RETURNS float8[] LANGUAGE sql AS
	$$SELECT dealrisk._trees_shap(start, l, r, f, th, dl, v, c, base, x) FROM ens$$;

SELECT is(round(pg_temp.m('{0,0}')::numeric, 12), round((0.1::float8 + 1.0 + 0.25)::numeric, 12), 'x = (0, 0): leaves 1.0 and 0.25 over the base');
SELECT is(round(pg_temp.m('{1,3}')::numeric, 12), round((0.1::float8 + 0.5 - 0.75)::numeric, 12), 'x = (1, 3): leaves 0.5 and -0.75');
SELECT is(round(pg_temp.m('{1,1.5}')::numeric, 12), round((0.1::float8 - 2.0 - 0.75)::numeric, 12), 'a threshold is strict: 1.5 < 2 goes left, 1 < 1 does not');
SELECT is(round(pg_temp.m(ARRAY[NULL, NULL]::float8[])::numeric, 12), round((0.1::float8 - 2.0 - 0.75)::numeric, 12), 'missing values follow default_left (tree 1: right, then left; tree 2: right)');
SELECT is(round(pg_temp.m(ARRAY['-Infinity', 'Infinity']::float8[])::numeric, 12), round((0.1::float8 + 1.0 - 0.75)::numeric, 12), 'infinities compare like numbers');

-- TreeSHAP by hand for x = (0, 0).  Tree 2 (x1 only): phi1 = 0.25 - E2,
-- E2 = (2 * 0.25 + 6 * -0.75) / 8 = -0.5, so phi1 += 0.75.  Tree 1: with S
-- the features known, an unknown split weighs its children by cover:
-- v({}) = (4 * 1 + 3 * -2 + 1 * 0.5) / 8 = -0.1875, v({x0}) = 1 (x0 < 0.5),
-- v({x1}) = 4/8 * 1 + 4/8 * -2 = -0.5 (x1 < 2 known), v({x0, x1}) = 1.
-- phi0 = ((1 + 0.1875) + (1 + 0.5)) / 2 = 1.34375 and, from tree 1,
-- phi1 = ((-0.5 + 0.1875) + (1 - 1)) / 2 = -0.15625: x1 = 0.75 - 0.15625.
SELECT is((SELECT array_agg(round(u::numeric, 12)) FROM unnest(pg_temp.s('{0,0}')) u),
	'{1.343750000000,0.593750000000,-0.587500000000}'::numeric[],
	'contributions by hand: x0 1.34375, x1 0.59375, expectation 0.1 - 0.1875 - 0.5');
SELECT is((SELECT round(sum(u)::numeric, 12) FROM unnest(pg_temp.s('{0,0}')) u), round(pg_temp.m('{0,0}')::numeric, 12),
	'they add up to the margin');

-- additivity on random trees: 200 vectors, 30 trees of depth up to 6 over 5
-- features, thresholds and leaves from hash_uniform
CREATE TEMP TABLE rnd AS
WITH RECURSIVE t(k) AS (SELECT generate_series(0, 29)),
-- a full tree of depth 6 per k, nodes in breadth-first order: node i has
-- children 2i+1, 2i+2; nodes 63..126 are leaves
n AS (SELECT k, i FROM t, generate_series(0, 126) i)
SELECT array_agg(k * 127 ORDER BY k) FILTER (WHERE i = 0) AS start,
	   array_agg(CASE WHEN i < 63 THEN 2 * i + 1 ELSE -1 END ORDER BY k, i) AS l,
	   array_agg(CASE WHEN i < 63 THEN 2 * i + 2 ELSE -1 END ORDER BY k, i) AS r,
	   array_agg(CASE WHEN i < 63 THEN floor(5 * dealrisk.hash_uniform(k, i, 1))::int ELSE 0 END ORDER BY k, i) AS f,
	   array_agg(dealrisk.hash_uniform(k, i, 2) ORDER BY k, i) AS th,
	   array_agg(dealrisk.hash_uniform(k, i, 3) < 0.5 ORDER BY k, i) AS dl,
	   array_agg(dealrisk.hash_uniform(k, i, 4) - 0.5 ORDER BY k, i) AS v,
	   -- covers: a leaf 1..5, an inner node the sum of its children (filled below)
	   array_agg(1 + floor(5 * dealrisk.hash_uniform(k, i, 5)) ORDER BY k, i) AS c
FROM n;
-- inner covers = sum of the two children, bottom up
DO $$
DECLARE cv float8[]; k int; i int;
BEGIN
	SELECT c INTO cv FROM rnd;
	FOR k IN 0 .. 29 LOOP
		FOR i IN REVERSE 62 .. 0 LOOP
			cv[k * 127 + i + 1] := cv[k * 127 + 2 * i + 2] + cv[k * 127 + 2 * i + 3];
		END LOOP;
	END LOOP;
	UPDATE rnd SET c = cv;
END $$;
CREATE TEMP TABLE xs AS
	SELECT j, ARRAY(SELECT CASE WHEN dealrisk.hash_uniform(99, j * 10 + q, 6) < 0.1 THEN NULL
								ELSE dealrisk.hash_uniform(99, j * 10 + q, 7) END
					FROM generate_series(1, 5) q) AS x
	FROM generate_series(1, 200) j;
SELECT is((SELECT count(*) FROM xs, rnd,
			LATERAL (SELECT dealrisk._trees_predict(rnd.start, rnd.l, rnd.r, rnd.f, rnd.th, rnd.dl, rnd.v, rnd.c, -0.3, xs.x) AS m,
							(SELECT sum(u) FROM unnest(dealrisk._trees_shap(rnd.start, rnd.l, rnd.r, rnd.f, rnd.th, rnd.dl, rnd.v, rnd.c, -0.3, xs.x)) u) AS s) z
		   WHERE abs(z.m - z.s) > 1e-9), 0::bigint,
	'30 random trees of depth 6, 200 vectors with missing values: the contributions add up to the margin on every row');
SELECT is((SELECT count(*) FROM xs, rnd
		   WHERE (dealrisk._trees_shap(rnd.start, rnd.l, rnd.r, rnd.f, rnd.th, rnd.dl, rnd.v, rnd.c, -0.3, xs.x))[6]
				 IS DISTINCT FROM (SELECT (dealrisk._trees_shap(rnd.start, rnd.l, rnd.r, rnd.f, rnd.th, rnd.dl, rnd.v, rnd.c, -0.3, x2.x))[6] FROM xs x2 WHERE x2.j = 1)),
	0::bigint, 'the expectation (last element) does not depend on the vector');

-- The complete form the margin is walked in (trees.c, fast_build): trees
-- of uneven depth (leaves above the block's depth are padded), blocks of
-- four deeper than it holds (walked by pointers), thresholds shared by
-- several nodes, values equal to a threshold, missing values sent either
-- way, infinities: the margin of a walk of the arrays in PL/pgSQL (trees.c
-- adds the leaves block by block, so only rounding may differ).
CREATE TEMP TABLE irr (start int4[], l int4[], r int4[], f int4[], th float8[], dl boolean[], v float8[], c float8[], md int[]);
DO $$
DECLARE
	st int4[] := '{}'; l int4[] := '{}'; r int4[] := '{}'; f int4[] := '{}';
	th float8[] := '{}'; dl boolean[] := '{}'; v float8[] := '{}'; c float8[] := '{}';
	depth int[]; md int[] := '{}'; k int; i int; n int; base int; lim int;
	cuts float8[] := '{-1,0,0.5,1,2}';
BEGIN
	FOR k IN 0 .. 10 LOOP
		base := cardinality(l);
		st := st || base;
		-- the depth tree k may grow to: the first block deeper than 10, the
		-- second as deep as 7, the third short of a block
		lim := (ARRAY[3, 7, 13, 3, 3, 7, 7, 5, 13, 3, 7])[k + 1];
		depth := '{0}';
		n := 1;
		i := 0;
		WHILE i < n LOOP
			IF depth[i + 1] < lim AND (depth[i + 1] < 2 OR dealrisk.hash_uniform(k, i, 11) < 0.72) THEN
				l := l || (n); r := r || (n + 1);
				f := f || floor(4 * dealrisk.hash_uniform(k, i, 12))::int;
				th := th || cuts[1 + floor(5 * dealrisk.hash_uniform(k, i, 13))::int];
				dl := dl || (dealrisk.hash_uniform(k, i, 14) < 0.5);
				v := v || 0::float8;
				depth := depth || (depth[i + 1] + 1) || (depth[i + 1] + 1);
				n := n + 2;
			ELSE
				l := l || -1; r := r || -1; f := f || 0; th := th || 0::float8; dl := dl || false;
				v := v || (dealrisk.hash_uniform(k, i, 15) - 0.5);
			END IF;
			c := c || 1::float8;
			i := i + 1;
		END LOOP;
		md := md || (SELECT max(d) FROM unnest(depth) d);
	END LOOP;
	INSERT INTO irr VALUES (st, l, r, f, th, dl, v, c, md);
END $$;
CREATE FUNCTION pg_temp.walk(x float8[]) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE e irr; m float8 := 0.125; k int; n int; g int; xv float8;
BEGIN
	SELECT * INTO e FROM irr;
	FOR k IN 1 .. cardinality(e.start) LOOP
		n := 0;
		LOOP
			g := e.start[k] + n + 1;
			EXIT WHEN e.l[g] < 0;
			xv := x[e.f[g] + 1];
			IF xv IS NULL THEN
				n := CASE WHEN e.dl[g] THEN e.l[g] ELSE e.r[g] END;
			ELSIF xv::float4 < e.th[g]::float4 THEN
				n := e.l[g];
			ELSE
				n := e.r[g];
			END IF;
		END LOOP;
		m := m + e.v[g];
	END LOOP;
	RETURN m;
END $$;
CREATE TEMP TABLE ixs AS
	SELECT j, ARRAY(SELECT (ARRAY[-2, -1, 0, 0.25, 0.5, 1, 2, 3, NULL, 'Infinity', '-Infinity']::float8[])
							 [1 + floor(11 * dealrisk.hash_uniform(98, j * 10 + q, 16))::int]
					FROM generate_series(1, 4) q) AS x
	FROM generate_series(1, 300) j;
SELECT ok((SELECT md[3] > 10 AND md[4] < 10 AND md[5] < 7 AND md[6] = 7 AND md[7] = 7 AND md[8] < 7 FROM irr),
	'the uneven ensemble has a block deeper than 10 (trees 1-4) and one padded to depth 7 (trees 5-8)');
SELECT is((SELECT count(*) FROM ixs, irr
		   WHERE NOT abs(dealrisk._trees_predict(irr.start, irr.l, irr.r, irr.f, irr.th, irr.dl, irr.v, irr.c, 0.125, ixs.x)
						 - pg_temp.walk(ixs.x)) < 1e-12), 0::bigint,
	'11 trees of depth 3 to 13, 300 vectors with missing values, ties and infinities: the margin of a plain walk (up to the rounding of the order of the sum)');

-- bad ensembles are errors naming the node, never a crash
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{1,-1}', '{0,-1}', '{0,0}', '{0,0}', '{f,f}', '{0,0}', '{1,1}', 0, '{1}')$$)).msg,
	'tree 1 is invalid at node 0: children must be distinct nodes after their parent in the same tree', 'a cycle back to the root');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{1,-1,-1}', '{2,-1,-1}', '{7,0,0}', '{0,0,0}', '{f,f,f}', '{0,0,0}', '{2,1,1}', 0, '{1}')$$)).msg,
	'tree 1 is invalid at node 0: its feature is out of range', 'a feature beyond the vector');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{1,-1,-1}', '{5,-1,-1}', '{0,0,0}', '{0,0,0}', '{f,f,f}', '{0,0,0}', '{2,1,1}', 0, '{1}')$$)).msg,
	'tree 1 is invalid at node 0: children must be distinct nodes after their parent in the same tree', 'a child beyond the tree');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{-1}', '{-1}', '{0}', '{0}', '{f}', '{NaN}', '{1}', 0, '{1}')$$)).msg,
	'tree 1 is invalid at node 0: a leaf value must be finite', 'a NaN leaf');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{-1}', '{-1,-1}', '{0}', '{0}', '{f}', '{0}', '{1}', 0, '{1}')$$)).msg,
	'tree array "right" must have 1 elements and no NULL', 'arrays of different lengths');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0,1}', '{-1}', '{-1}', '{0}', '{0}', '{f}', '{0}', '{1}', 0, '{1}')$$)).msg,
	'tree 2 is invalid at node 0: its node range is empty or out of bounds', 'a tree starting beyond the nodes');
SELECT is((pg_temp.error_of($$SELECT dealrisk._trees_predict('{0}', '{-1}', '{-1}', '{0}', '{0}', '{f}', '{0}', '{1}', 'Infinity', '{1}')$$)).state,
	'22023', 'an infinite base');

SELECT * FROM finish();
