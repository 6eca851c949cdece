#!/usr/bin/python3
"""xgb_walk_check.py: scores test/data/xgb_small_cases.csv by walking the
trees of test/data/xgb_small.json by hand (no xgboost), the way dealrisk's
own C would, and compares with xgboost's margins in the file: once
comparing each value with its threshold in float32 (as xgboost does), once
in double (to show which cases catch a reader that does not round).

    python3 test/bench/xgb_walk_check.py [model.json cases.csv]
"""
import csv
import json
import math
import os
import struct
import sys


def f32(x):
    """x rounded to the nearest float32 (as a Python float)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def leaf(tree, x, in_float32):
    node = 0
    while tree["left_children"][node] != -1:
        v = x[tree["split_indices"][node]]
        if math.isnan(v):
            left = bool(tree["default_left"][node])
        else:
            thr = tree["split_conditions"][node]
            left = (f32(v) < f32(thr)) if in_float32 else (v < thr)
        node = tree["left_children"][node] if left else tree["right_children"][node]
    return tree["split_conditions"][node]


def main():
    here = os.path.join(os.path.dirname(__file__), "..", "data")
    model_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "xgb_small.json")
    cases_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "xgb_small_cases.csv")
    learner = json.load(open(model_path))["learner"]
    trees = learner["gradient_booster"]["model"]["trees"]
    names = learner["feature_names"]
    p = float(learner["learner_model_param"]["base_score"])
    base = math.log(p / (1 - p))    # binary:logistic keeps base_score as a probability
    rows = list(csv.DictReader(open(cases_path)))
    for in_float32 in (True, False):
        worst, off = 0.0, []
        for r in rows:
            x = [float(r[n]) if r[n] != "" else math.nan for n in names]
            margin = base + sum(leaf(t, x, in_float32) for t in trees)
            d = abs(margin - float(r["margin"]))
            worst = max(worst, d)
            if d > 1e-6:
                off.append(r["case"])
        print(f"{'float32' if in_float32 else 'double '} comparisons: {len(rows)} cases, "
              f"largest |margin - xgboost's| {worst:.3g}; off by more than 1e-6: {', '.join(off) or 'none'}")


if __name__ == "__main__":
    main()
