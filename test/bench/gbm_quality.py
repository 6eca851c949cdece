#!/usr/bin/python3
"""gbm_quality.py: holdout AUC and log loss of scikit-learn's
LogisticRegression and xgboost on the split and columns that
dealrisk.train() used (issue #10, "Measure"; run by gbm_quality.sh).

    /usr/bin/python3 test/bench/gbm_quality.py --source ix_50k --cutoff 2024-08-19
        [--halflife-days 365] [--rounds 300] [--depth 6] [--eta 0.1]
        [--early-stopping 30] [--nthread 1]

Connection: psql's environment (PGHOST, PGPORT, PGUSER, PGDATABASE).

Rows: the closed deals of --source (dealrisk.is_won(outcome) not NULL,
the label won = is_won), exported with COPY ... TO STDOUT.  Split as
train(): holdout = closed_date >= --cutoff (train()'s
metrics->>'holdout_from'), training = closed_date < cutoff; a closed deal
without a closed_date is in neither.  Training rows weigh
0.5 ^ (days before the newest close / halflife), as train() weighs them
(dealrisk.recency_halflife_days, 365 by default; 0 = unweighted); holdout
metrics are unweighted.

Columns: industry, region, product_type, lead_source, sales_rep_id
(categorical; missing = its own level "(missing)"), deal_amount and the
cycle (sales_cycle_days, else closed_date - created_date, as dealrisk's
cycle_days of a closed deal).
  LogisticRegression (C = 1, lbfgs, max_iter 1000): the five categories
    one-hot (levels of the training split), each number one-hot in
    quantile bins whose edges come from the training split (deal_amount at
    0.2/0.4/0.6/0.8, cycle at 0.1/0.25/0.5/0.75/0.9: the bins of
    dealrisk's logistic model), missing its own bin.
  xgboost (binary:logistic, tree_method hist, max_depth, eta, lambda 1,
    min_child_weight 1, max_bin 256): the numbers raw (float32, missing NaN);
    the categories either "native" (pandas category dtype,
    enable_categorical) or "onehot" (dense 0/1 columns of the training
    levels).  Fixed: --rounds rounds.  Early-stopped: up to --rounds, stopped
    when the holdout log loss has not improved for --early-stopping rounds,
    scored at the best round (selection on the holdout itself, as train()'s
    early stopping does).

Prints tab-separated "key<TAB>value" lines; model lines are
"model<TAB>name<TAB>auc<TAB>log_loss<TAB>note".
"""
import argparse
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.preprocessing import OneHotEncoder

CATEGORICAL = ["industry", "region", "product_type", "lead_source", "sales_rep_id"]
NUMERIC = ["deal_amount", "cycle_days"]
BINS = {"deal_amount": [0.2, 0.4, 0.6, 0.8], "cycle_days": [0.1, 0.25, 0.5, 0.75, 0.9]}
EXPORT_SQL = r"""
SELECT :'src'::regclass AS rel \gset
COPY (SELECT d.deal_id, d.created_date, d.closed_date, d.industry, d.region, d.product_type,
             d.lead_source, d.sales_rep_id, d.deal_amount, d.sales_cycle_days,
             dealrisk.is_won(d.outcome)::int AS won
      FROM :rel d WHERE dealrisk.is_won(d.outcome) IS NOT NULL) TO STDOUT WITH (FORMAT csv, HEADER)
"""


def out(*fields):
    print("\t".join(str(f) for f in fields), flush=True)


def export(source, path):
    with open(path, "w") as f:
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"src={source}"],
                           input=EXPORT_SQL, stdout=f, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("gbm_quality: psql failed: " + r.stderr.strip())


def metrics(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return roc_auc_score(y, p), log_loss(y, p)


def row_loss(y, p):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--cutoff", required=True, help="holdout = closed on or after this date")
    ap.add_argument("--halflife-days", type=float, default=365)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--early-stopping", type=int, default=30)
    ap.add_argument("--nthread", type=int, default=1)
    ap.add_argument("--csv", default="/tmp/gbm_quality_export.csv")
    args = ap.parse_args()

    out("versions", f"numpy {np.__version__}, pandas {pd.__version__}, sklearn {sklearn.__version__}, "
        f"xgboost {xgb.__version__}")
    export(args.source, args.csv)
    df = pd.read_csv(args.csv, parse_dates=["created_date", "closed_date"],
                     dtype={c: "string" for c in CATEGORICAL})
    y = df["won"].to_numpy(dtype=np.int8)
    num = pd.DataFrame({
        "deal_amount": df["deal_amount"].astype("float64"),
        "cycle_days": df["sales_cycle_days"].astype("float64").fillna(
            (df["closed_date"] - df["created_date"]).dt.days.astype("float64")),
    })
    cutoff = pd.Timestamp(args.cutoff)
    closed = df["closed_date"]
    test = (closed >= cutoff).to_numpy()
    train = (closed < cutoff).to_numpy()
    ref = closed.max()
    if args.halflife_days > 0:
        weight = np.power(0.5, (ref - closed).dt.days.to_numpy(dtype=np.float64) / args.halflife_days)
    else:
        weight = np.ones(len(df))
    cats = pd.DataFrame({c: df[c].fillna("(missing)") for c in CATEGORICAL})
    yt, yh = y[train], y[test]
    out("rows", f"{len(df)} closed: train {int(train.sum())}, holdout {int(test.sum())} "
        f"(closed_date >= {cutoff.date()}), no closed_date {int((~train & ~test).sum())}; "
        f"won {int(y.sum())}, holdout base rate {yh.mean():.4f}")
    out("weights", f"0.5^(days before {ref.date()} / {args.halflife_days:g})" if args.halflife_days > 0 else "none")
    base = np.full(len(yh), np.average(yt, weights=weight[train]))
    out("model", "constant (weighted training base rate)", "0.5", f"{log_loss(yh, base):.4f}", "")

    # LogisticRegression on one-hot levels and one-hot quantile bins
    parts = cats.copy()
    for name in NUMERIC:
        x = num[name].to_numpy()
        fin = x[train][np.isfinite(x[train])]
        edges = np.unique(np.quantile(fin, BINS[name])) if fin.size else np.array([])
        parts[name] = np.where(np.isfinite(x), np.searchsorted(edges, x, side="right"), -1)
    enc = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit(parts[train])
    X_lr = enc.transform(parts)
    t0 = time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=1000).fit(X_lr[train], yt, sample_weight=weight[train])
    p_lr = lr.predict_proba(X_lr[test])[:, 1]
    auc, ll = metrics(yh, p_lr)
    out("model", "sklearn LogisticRegression", f"{auc:.4f}", f"{ll:.4f}",
        f"{X_lr.shape[1]} one-hot columns, {int(np.max(lr.n_iter_))} lbfgs iterations, "
        f"{time.perf_counter() - t0:.2f} s")

    # xgboost
    oh = OneHotEncoder(handle_unknown="ignore", dtype=np.float32, sparse_output=False).fit(cats[train])
    X = {"native": pd.concat([cats.astype("category"), num], axis=1),
         "onehot": np.hstack([oh.transform(cats), num.to_numpy(dtype=np.float32)])}
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.depth,
              "eta": args.eta, "lambda": 1.0, "min_child_weight": 1.0, "max_bin": 256,
              "eval_metric": "logloss", "nthread": args.nthread, "seed": 0}
    preds = {}
    for variant in ("native", "onehot"):
        Xv = X[variant]
        sub = (lambda m: Xv[m]) if variant == "onehot" else (lambda m: Xv.loc[m])
        cat = variant == "native"
        dtrain = xgb.DMatrix(sub(train), label=yt, weight=weight[train], enable_categorical=cat)
        dtest = xgb.DMatrix(sub(test), label=yh, enable_categorical=cat)
        t0 = time.perf_counter()
        bst = xgb.train(params, dtrain, num_boost_round=args.rounds)
        p = bst.predict(dtest)
        auc, ll = metrics(yh, p)
        out("model", f"xgboost {variant}, {args.rounds} rounds", f"{auc:.4f}", f"{ll:.4f}",
            f"{Xv.shape[1]} columns, {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        bst = xgb.train(params, dtrain, num_boost_round=args.rounds, evals=[(dtest, "holdout")],
                        early_stopping_rounds=args.early_stopping, verbose_eval=False)
        kept = bst.best_iteration + 1
        p = bst.predict(dtest, iteration_range=(0, kept))
        preds[variant] = p
        auc, ll = metrics(yh, p)
        out("model", f"xgboost {variant}, early stopping {args.early_stopping} on the holdout", f"{auc:.4f}",
            f"{ll:.4f}", f"{kept} rounds kept, {time.perf_counter() - t0:.2f} s")

    # a noise scale: the standard error of a holdout log loss, and of the
    # paired difference of two models' log losses (per-row losses)
    l_lr = row_loss(yh, p_lr)
    l_x = row_loss(yh, preds["native"])
    n = len(yh)
    out("noise", f"standard error of the holdout log loss: {np.std(l_lr, ddof=1) / np.sqrt(n):.4f} "
        f"(LogisticRegression), {np.std(l_x, ddof=1) / np.sqrt(n):.4f} (xgboost native, early-stopped); "
        f"of their paired difference: {np.std(l_lr - l_x, ddof=1) / np.sqrt(n):.4f}")
    rng = np.random.default_rng(1)
    aucs = []
    for _ in range(200):
        i = rng.integers(0, n, n)
        if yh[i].min() != yh[i].max():
            aucs.append(roc_auc_score(yh[i], preds["native"][i]) - roc_auc_score(yh[i], p_lr[i]))
    out("noise_auc", f"bootstrap (200 resamples of the holdout) sd of AUC(xgboost native) - AUC(LogisticRegression): "
        f"{np.std(aucs, ddof=1):.4f}")


if __name__ == "__main__":
    main()
