#!/usr/bin/python3
"""gbm_route.py: the route a user takes instead of dealrisk.train(method =>
'gbm'): read the CSV of closed deals that gbm_speed.sh exported with psql's
\\copy, encode, fit xgboost as train() fits its trees, predict.  Every stage
is timed (wall seconds, time.perf_counter).

    /usr/bin/python3 test/bench/gbm_route.py deals.csv --cutoff 2024-08-15
        [--halflife-days 365] [--nthread 1] [--rounds 300] [--depth 6]
        [--eta 0.1] [--early-stopping 30]

The CSV: created_date, closed_date, industry, region, product_type,
lead_source, sales_rep_id, deal_amount, sales_cycle_days, won (0/1).

Encoding: the five categories as pandas categories (xgboost's native
categorical splits, enable_categorical), deal_amount and the cycle
(sales_cycle_days, else closed - created) as float; training rows weighted
0.5 ^ (days before the newest close / halflife) as train() weighs them.

The fits are the work train(method => 'gbm') does: (1) fit on the deals
closed before --cutoff with early stopping on the newer ones (xgboost's
early_stopping_rounds on the holdout's log loss, up to --rounds), (2)
predict the holdout (its AUC and log loss), (3) refit on every closed deal
for the rounds (1) kept.  hist, max_depth, eta, lambda 1,
min_child_weight 1, max_bin 256, nthread.

Prints tab-separated "key<TAB>value" lines.
"""
import time

T0 = time.perf_counter()
import argparse  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xgboost as xgb  # noqa: E402
from sklearn.metrics import log_loss, roc_auc_score  # noqa: E402

T_IMPORT = time.perf_counter() - T0
CATEGORICAL = ["industry", "region", "product_type", "lead_source", "sales_rep_id"]


def out(key, value):
    print(f"{key}\t{value}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--cutoff", required=True)
    ap.add_argument("--halflife-days", type=float, default=365)
    ap.add_argument("--nthread", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--early-stopping", type=int, default=30)
    args = ap.parse_args()
    out("import_s", f"{T_IMPORT:.3f}")

    t = time.perf_counter()
    df = pd.read_csv(args.csv, parse_dates=["created_date", "closed_date"],
                     dtype={c: "string" for c in CATEGORICAL})
    out("read_s", f"{time.perf_counter() - t:.3f}")

    t = time.perf_counter()
    y = df["won"].to_numpy(dtype=np.float32)
    X = pd.DataFrame({c: df[c].astype("category") for c in CATEGORICAL})
    X["deal_amount"] = df["deal_amount"].astype("float32")
    X["cycle_days"] = df["sales_cycle_days"].astype("float64").fillna(
        (df["closed_date"] - df["created_date"]).dt.days.astype("float64")).astype("float32")
    closed = df["closed_date"]
    hold = (closed >= pd.Timestamp(args.cutoff)).to_numpy()
    train = (closed < pd.Timestamp(args.cutoff)).to_numpy()
    dated = closed.notna().to_numpy()
    w = np.power(0.5, (closed.max() - closed).dt.days.fillna(0).to_numpy(dtype=np.float64)
                 / args.halflife_days) if args.halflife_days > 0 else np.ones(len(df))
    out("encode_s", f"{time.perf_counter() - t:.3f}")
    out("rows", f"{len(df)} (train {int(train.sum())}, holdout {int(hold.sum())})")

    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.depth,
              "eta": args.eta, "lambda": 1.0, "min_child_weight": 1.0, "max_bin": 256,
              "eval_metric": "logloss", "nthread": args.nthread, "seed": 0}
    t = time.perf_counter()
    dtrain = xgb.DMatrix(X[train], label=y[train], weight=w[train], enable_categorical=True, nthread=args.nthread)
    dhold = xgb.DMatrix(X[hold], label=y[hold], enable_categorical=True, nthread=args.nthread)
    dall = xgb.DMatrix(X[dated], label=y[dated], weight=w[dated], enable_categorical=True, nthread=args.nthread)
    out("dmatrix_s", f"{time.perf_counter() - t:.3f}")

    t = time.perf_counter()
    bst = xgb.train(params, dtrain, num_boost_round=args.rounds, evals=[(dhold, "holdout")],
                    early_stopping_rounds=args.early_stopping, verbose_eval=False)
    kept = bst.best_iteration + 1
    out("fit_s", f"{time.perf_counter() - t:.3f}")
    out("rounds", f"{bst.num_boosted_rounds()} run, {kept} kept")

    t = time.perf_counter()
    p = bst.predict(dhold, iteration_range=(0, kept))
    out("predict_s", f"{time.perf_counter() - t:.3f}")
    yh = y[hold]
    out("holdout", f"AUC {roc_auc_score(yh, p):.4f} log_loss {log_loss(yh, np.clip(p, 1e-15, 1 - 1e-15)):.4f}")

    t = time.perf_counter()
    xgb.train(params, dall, num_boost_round=kept)
    out("refit_s", f"{time.perf_counter() - t:.3f}")
    out("python_total_s", f"{time.perf_counter() - T0:.3f}")


if __name__ == "__main__":
    main()
