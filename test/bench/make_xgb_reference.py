#!/usr/bin/python3
"""make_xgb_reference.py: the small xgboost model and the cases that the
interop tests of issue #10 (import_model of an xgboost JSON model, scoring
and TreeSHAP in dealrisk's own C) compare against.

    /usr/bin/python3 test/bench/make_xgb_reference.py [--out-dir test/data]

Connection: psql's environment (PGHOST, PGPORT, PGUSER, PGDATABASE), a
database with the extension: the training rows are the closed deals of
dealrisk.sample_deals(20000, 42), so the files are the same on every run
(xgboost 1.7.4 of Debian bookworm, nthread 1, fixed seeds).

Writes
  xgb_small.json       Booster.save_model(): 20 trees of depth <= 3 on five
                       numeric features, with feature names, base_score
                       set to the training win rate (not xgboost's 0.5, so
                       that an importer must turn it into log-odds)
  xgb_small_cases.csv  50 rows: case, the five features (empty = missing),
                       xgboost's margin (output_margin=True) and probability,
                       and its pred_contribs (path-dependent TreeSHAP): one
                       column per feature plus bias; the contributions add
                       up to the margin

Features (numeric, NULL = missing; about 5% of training values are blanked
at random so that the trees learn a default direction for missing values):
deal_amount; cycle_days (sales_cycle_days, else closed - created);
activity_gap (closed - last_activity_date); created_month (1-12);
amount_per_day (deal_amount / cycle_days, at least 1 day: not an integer,
so its thresholds are not either).

Cases: 32 deals spread over the rows (every k-th by deal_id), 10 of them
again with one feature missing, and 8 with a feature put on a split
threshold of a node their path reaches (the tree's split on a feature that
no node above it on the path uses, so the path up to it stays): 4 exactly
on it (xgboost goes right when x < threshold is false) and 4 a quarter of a
float32 step below it in double, which rounds to the threshold in float32
(xgboost compares float32 values, so these go right too; a reader that
compares doubles without rounding the value to float32 first goes left).  Numbers are written with 17 significant digits (exact for the
float32 values xgboost computes in).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import xgboost as xgb

FEATURES = ["deal_amount", "cycle_days", "activity_gap", "created_month", "amount_per_day"]
SQL = """
COPY (SELECT d.deal_id, d.deal_amount,
             coalesce(d.sales_cycle_days, d.closed_date - d.created_date),
             d.closed_date - d.last_activity_date, extract(month FROM d.created_date)::int,
             d.deal_amount::float8 / greatest(coalesce(d.sales_cycle_days, d.closed_date - d.created_date), 1),
             dealrisk.is_won(d.outcome)::int
      FROM dealrisk.sample_deals(20000, 42) d
      WHERE dealrisk.is_won(d.outcome) IS NOT NULL ORDER BY d.deal_id) TO STDOUT WITH (FORMAT csv)
"""


def g(v):
    """A number with 17 significant digits, empty when missing."""
    return "" if np.isnan(v) else repr(float(v))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=os.path.relpath(os.path.join(os.path.dirname(__file__), "..", "data")))
    args = ap.parse_args()

    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], input=SQL,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make_xgb_reference: psql failed: " + r.stderr.strip())
    rows = [line.split(",") for line in r.stdout.splitlines()]
    ids = [row[0] for row in rows]
    X = np.array([[float(v) if v != "" else np.nan for v in row[1:6]] for row in rows], dtype=np.float64)
    y = np.array([int(row[6]) for row in rows], dtype=np.float64)

    rng = np.random.default_rng(20240101)
    Xt = X.copy()
    Xt[rng.random(Xt.shape) < 0.05] = np.nan
    base = float(y.mean())
    dtrain = xgb.DMatrix(Xt, label=y, feature_names=FEATURES, nthread=1)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 3, "eta": 0.3,
              "base_score": base, "nthread": 1, "seed": 0, "validate_parameters": 1}
    bst = xgb.train(params, dtrain, num_boost_round=20)

    os.makedirs(args.out_dir, exist_ok=True)
    model_path = os.path.join(args.out_dir, "xgb_small.json")
    bst.save_model(model_path)

    # the cases
    picks = list(range(0, len(X), len(X) // 32))[:32]
    cases = [(ids[i], X[i].copy()) for i in picks]
    for k, i in enumerate(picks[:10]):
        x = X[i].copy()
        x[k % len(FEATURES)] = np.nan
        cases.append((ids[i] + "/missing:" + FEATURES[k % len(FEATURES)], x))
    model = json.load(open(model_path))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    for k in range(8):
        i = picks[10 + k]
        x = X[i].copy()
        t = trees[k]
        node, used, last = 0, set(), None
        while t["left_children"][node] != -1:
            f = t["split_indices"][node]
            thr = np.float32(t["split_conditions"][node])
            if f not in used:
                last = (f, thr)
            used.add(f)
            v = np.float32(x[f])
            if np.isnan(v):
                go_left = bool(t["default_left"][node])
            else:
                go_left = bool(v < thr)
            node = t["left_children"][node] if go_left else t["right_children"][node]
        f, thr = last
        if k < 4:
            x[f] = float(thr)
            tag = "at_split"
        else:
            x[f] = float(thr) - float(np.spacing(thr)) / 4
            if np.float32(x[f]) != thr or not x[f] < float(thr):
                sys.exit("make_xgb_reference: the value below the threshold does not round to it")
            tag = "below_split_f32"
        cases.append((f"{ids[i]}/{tag}:{FEATURES[f]}", x))
    C = np.array([c[1] for c in cases])
    dcases = xgb.DMatrix(C, feature_names=FEATURES, nthread=1)
    margin = bst.predict(dcases, output_margin=True)
    prob = bst.predict(dcases)
    contribs = bst.predict(dcases, pred_contribs=True)
    worst = float(np.max(np.abs(contribs.sum(axis=1, dtype=np.float64) - margin)))
    if worst > 1e-5:
        sys.exit(f"make_xgb_reference: contributions do not add up to the margin (off by {worst})")

    cases_path = os.path.join(args.out_dir, "xgb_small_cases.csv")
    with open(cases_path, "w") as f:
        f.write(",".join(["case"] + FEATURES + ["margin", "prob"] + ["contrib_" + n for n in FEATURES]
                         + ["contrib_bias"]) + "\n")
        for (name, x), m, p, c in zip(cases, margin, prob, contribs):
            f.write(",".join([name] + [g(v) for v in x] + [g(m), g(p)] + [g(v) for v in c]) + "\n")
    print(f"{model_path}: {len(trees)} trees, base_score {base!r}, {os.path.getsize(model_path)} bytes")
    print(f"{cases_path}: {len(cases)} cases, {os.path.getsize(cases_path)} bytes; "
          f"largest |sum(contribs) - margin| {worst:.2e}")


if __name__ == "__main__":
    main()
