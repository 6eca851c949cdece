#!/usr/bin/python3
"""gbm_reference.py: holdout quality and time of the route a data scientist
takes (export, pandas, scikit-learn's LogisticRegression, xgboost) on the
same closed deals, split and columns as dealrisk.train(), and optionally
dealrisk.train() itself.  The reference numbers of issue #10.

    /usr/bin/python3 test/bench/gbm_reference.py --source deals [--train]
        [--cutoff 2024-08-14] [--holdout 0.2] [--halflife-days 365]
        [--rounds 300] [--depth 6] [--eta 0.1] [--threads 1,2]
        [--variants native,onehot] [--matrix-out m.csv]
    /usr/bin/python3 test/bench/gbm_reference.py --csv export.csv ...

Connection: psql's environment (PGHOST, PGPORT, PGUSER, PGDATABASE).
--source exports the closed deals (dealrisk.is_won(outcome) not NULL) of a
table or view with COPY ... TO STDOUT; --csv reads such an export (or any
CSV with the data contract's columns, won = outcome in --won).

Columns: those of dealrisk's default model on the same source
(docs/model.md, Features): industry, region, product_type, lead_source and
sales_rep_id (categorical; dealrisk turns the rep into a shrunk win rate,
here the rep is a categorical column), deal_amount, cycle_days
(sales_cycle_days, else closed - created) and activity_gap (closed -
last_activity_date).  LogisticRegression gets them the way dealrisk's
model does: one-hot levels and quantile bins of the numbers (edges from
the training split), C = 1 (dealrisk's l2 = 1).  xgboost gets the numbers
raw (missing = NaN) and the categories either natively ("native":
pandas categories, enable_categorical) or one-hot ("onehot": the dense
float matrix that --matrix-out writes for test/bench/xgb_capi_probe.c).

Split as train(): the holdout is the closed deals with closed_date on or
after percentile_disc(1 - holdout) of closed_date (or --cutoff; --train
takes the cutoff train() chose, which on more than 50,000 closed deals
comes from its sample).  Training rows are weighted 0.5^(age / halflife)
with age the days before the newest close, as train() does (0 = off);
holdout metrics are unweighted.

Prints tab-separated "key<TAB>value" lines.  Run it with Debian's
/usr/bin/python3 (make bench-deps installs python3-xgboost, python3-sklearn).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.preprocessing import OneHotEncoder

CATEGORICAL = ["industry", "region", "product_type", "lead_source", "sales_rep_id"]
NUMERIC = ["deal_amount", "cycle_days", "activity_gap"]
# the quantiles dealrisk's default model bins the same numbers at
BINS = {
    "deal_amount": [0.2, 0.4, 0.6, 0.8],
    "cycle_days": [0.1, 0.25, 0.5, 0.75, 0.9],
    "activity_gap": [0.25, 0.5, 0.75, 0.9],
}
EXPORT_SQL = r"""
SELECT :'src'::regclass AS rel \gset
COPY (SELECT d.deal_id, d.created_date, d.closed_date, d.sales_rep_id, d.industry, d.region,
             d.product_type, d.lead_source, d.deal_amount, d.sales_cycle_days,
             d.last_activity_date, dealrisk.is_won(d.outcome)::int AS won
      FROM :rel d WHERE dealrisk.is_won(d.outcome) IS NOT NULL) TO STDOUT WITH (FORMAT csv, HEADER)
"""


def out(key, value):
    print(f"{key}\t{value}", flush=True)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def psql(sql, variables=(), stdout=subprocess.PIPE):
    """Runs sql (from stdin, so that psql variables are interpolated)."""
    cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    for k, v in variables:
        cmd += ["-v", f"{k}={v}"]
    r = subprocess.run(cmd, input=sql, stdout=stdout, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("gbm_reference: psql failed: " + r.stderr.strip())
    return r.stdout


def dealrisk_train(source, as_of):
    """dealrisk.train(source, 'gbm_reference', activate => false): its wall
    time and holdout metrics."""
    sql = (f"SET client_min_messages = warning;\nSET dealrisk.as_of_date = :'asof';\n"
           "SELECT dealrisk.train(:'src', 'gbm_reference', activate => false) AS id \\gset\n"
           "SELECT metrics->>'auc', metrics->>'log_loss', metrics->>'holdout_from', metrics->>'n_train',"
           " metrics->>'n_test' FROM dealrisk.models WHERE id = :id;\n")
    t0 = time.perf_counter()
    res = psql(sql, [("src", source), ("asof", as_of)])
    t1 = time.perf_counter()
    auc, ll, cutoff, n_train, n_test = res.strip().splitlines()[-1].split("|")
    return t1 - t0, float(auc), float(ll), cutoff, int(n_train), int(n_test)


def quantile_edges(x, probs):
    finite = x[np.isfinite(x)]
    return np.unique(np.quantile(finite, probs)) if finite.size else np.array([])


def metrics(y, p):
    return roc_auc_score(y, p), log_loss(y, np.clip(p, 1e-15, 1 - 1e-15))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="table or view to export (psql's connection environment)")
    src.add_argument("--csv", help="read this export instead")
    ap.add_argument("--won", default="Won", help="--csv without a won column: outcomes meaning won")
    ap.add_argument("--train", action="store_true", help="also time dealrisk.train() on --source")
    ap.add_argument("--as-of", default="2024-12-31", help="dealrisk.as_of_date for --train")
    ap.add_argument("--cutoff", help="holdout = closed on or after this date")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--halflife-days", type=float, default=365)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--threads", default="1,2", help="xgboost nthread values, each fitted once")
    ap.add_argument("--variants", default="native,onehot")
    ap.add_argument("--matrix-out", help="write the one-hot float matrix (won, train, weight, features) here")
    args = ap.parse_args()

    out("python", sys.version.split()[0] + " (" + sys.executable + ")")
    out("versions", f"numpy {np.__version__}, pandas {pd.__version__}, sklearn {sklearn.__version__}, "
        f"xgboost {xgb.__version__}")
    out("cpus", os.cpu_count())

    cutoff = args.cutoff
    if args.train:
        if not args.source:
            sys.exit("gbm_reference: --train needs --source")
        secs, auc, ll, train_cutoff, n_train, n_test = dealrisk_train(args.source, args.as_of)
        out("dealrisk_train_s", f"{secs:.2f}")
        out("dealrisk_holdout", f"AUC {auc:.4f} log_loss {ll:.4f} (n_train {n_train}, n_test {n_test}, "
            f"holdout from {train_cutoff})")
        cutoff = cutoff or train_cutoff

    # 1. export
    tmpdir = None
    if args.source:
        tmpdir = tempfile.TemporaryDirectory(prefix="gbm_reference.")
        path = os.path.join(tmpdir.name, "deals.csv")
        t0 = time.perf_counter()
        with open(path, "w") as f:
            psql(EXPORT_SQL, [("src", args.source)], stdout=f)
        out("export_s", f"{time.perf_counter() - t0:.2f}")
        out("export_mb", f"{os.path.getsize(path) / 1e6:.1f}")
    else:
        path = args.csv

    # 2. load
    t0 = time.perf_counter()
    df = pd.read_csv(path, parse_dates=["created_date", "closed_date", "last_activity_date"],
                     dtype={c: "string" for c in CATEGORICAL + ["outcome"]})
    out("load_s", f"{time.perf_counter() - t0:.2f}")
    if "won" not in df.columns:
        df = df[df["outcome"].notna()]
        df["won"] = df["outcome"].isin(set(args.won.split(","))).astype(int)

    # 3. features and split
    t0 = time.perf_counter()
    y = df["won"].to_numpy(dtype=np.int8)
    num = pd.DataFrame({
        "deal_amount": df["deal_amount"].astype("float64"),
        "cycle_days": df["sales_cycle_days"].astype("float64").fillna(
            (df["closed_date"] - df["created_date"]).dt.days),
        "activity_gap": (df["closed_date"] - df["last_activity_date"]).dt.days.astype("float64"),
    })
    closed = df["closed_date"]
    if cutoff is None and closed.notna().any():
        # percentile_disc(1 - holdout): the first date whose cumulative share reaches it
        dates = np.sort(closed.dropna().to_numpy())
        cutoff = pd.Timestamp(dates[max(int(np.ceil((1 - args.holdout) * len(dates))) - 1, 0)]).date()
    if cutoff is None:
        sys.exit("gbm_reference: no closed_date: this script only does the time split")
    cutoff = pd.Timestamp(cutoff)
    test = (closed >= cutoff).to_numpy()
    train = ~test
    ref = closed.max()
    if args.halflife_days > 0:
        weight = np.power(0.5, (ref - closed).dt.days.fillna(0).to_numpy(dtype=np.float64) / args.halflife_days)
    else:
        weight = np.ones(len(df))
    cats = pd.DataFrame({c: df[c].fillna("(missing)") for c in CATEGORICAL})
    out("rows", f"{len(df)} closed (train {int(train.sum())}, holdout {int(test.sum())} from {cutoff.date()}), "
        f"won {int(y.sum())}")
    out("weights", f"recency half-life {args.halflife_days:g} days" if args.halflife_days > 0 else "none")

    # logistic regression: one-hot levels and bins, as dealrisk's model
    lr_parts = cats.copy()
    for name in NUMERIC:
        x = num[name].to_numpy()
        edges = quantile_edges(x[train], BINS[name])
        lr_parts[name] = np.where(np.isfinite(x), np.searchsorted(edges, x, side="right"), -1)
    enc = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit(lr_parts[train])
    X_lr = enc.transform(lr_parts)
    # xgboost, one-hot: dense float32, levels seen in training
    oh = OneHotEncoder(handle_unknown="ignore", dtype=np.float32, sparse_output=False)
    oh.fit(cats[train])
    oh_names = list(oh.get_feature_names_out())
    X_oh = np.hstack([oh.transform(cats), num.to_numpy(dtype=np.float32)])
    feat_oh = [n.replace(",", "_").replace(" ", "_") for n in oh_names] + NUMERIC
    # xgboost, native categories
    X_nat = pd.concat([cats.astype("category"), num], axis=1)
    out("features_s", f"{time.perf_counter() - t0:.2f}")
    out("columns", f"logistic {X_lr.shape[1]} one-hot, xgboost one-hot {X_oh.shape[1]}, "
        f"xgboost native {X_nat.shape[1]} ({len(CATEGORICAL)} categorical)")

    if args.matrix_out:
        t0 = time.perf_counter()
        m = np.column_stack([y, train.astype(np.int8), weight, X_oh])
        with open(args.matrix_out, "w") as f:
            f.write(",".join(["won", "train", "weight"] + feat_oh) + "\n")
            np.savetxt(f, m, delimiter=",", fmt="%.9g")
        out("matrix_out", f"{args.matrix_out} ({m.shape[0]} x {m.shape[1]}, {time.perf_counter() - t0:.1f} s, not timed)")

    # 4. fits
    t0 = time.perf_counter()
    lr = LogisticRegression(C=1.0, max_iter=1000)
    lr.fit(X_lr[train], y[train], sample_weight=weight[train])
    fit_s = time.perf_counter() - t0
    auc, ll = metrics(y[test], lr.predict_proba(X_lr[test])[:, 1])
    out("logistic", f"fit_s {fit_s:.2f} holdout AUC {auc:.4f} log_loss {ll:.4f} (lbfgs, {int(np.max(lr.n_iter_))} iterations)")

    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.depth,
              "eta": args.eta, "eval_metric": "logloss"}
    for variant in args.variants.split(","):
        X = {"native": X_nat, "onehot": X_oh}[variant]
        for nthread in [int(t) for t in args.threads.split(",")]:
            t0 = time.perf_counter()
            dtrain = xgb.DMatrix(X[train], label=y[train],
                                 weight=weight[train], enable_categorical=(variant == "native"),
                                 nthread=nthread)
            t1 = time.perf_counter()
            bst = xgb.train(dict(params, nthread=nthread), dtrain, num_boost_round=args.rounds)
            t2 = time.perf_counter()
            dtest = xgb.DMatrix(X[test], enable_categorical=(variant == "native"), nthread=nthread)
            p = bst.predict(dtest)
            t3 = time.perf_counter()
            auc, ll = metrics(y[test], p)
            out(f"xgboost_{variant}_nthread{nthread}",
                f"dmatrix_s {t1 - t0:.2f} fit_s {t2 - t1:.2f} predict_s {t3 - t2:.2f} "
                f"holdout AUC {auc:.4f} log_loss {ll:.4f}")
            if nthread == int(args.threads.split(",")[0]):
                # the same fit cut at fewer rounds: is 300 x depth 6 too many here?
                curve = []
                for r in (25, 50, 100, 200, args.rounds):
                    if r <= args.rounds:
                        a, l = metrics(y[test], bst.predict(dtest, iteration_range=(0, r)))
                        curve.append(f"{r}: {a:.4f}/{l:.4f}")
                out(f"xgboost_{variant}_rounds_auc/logloss", ", ".join(curve))
    out("peak_rss_mb", f"{peak_rss_mb():.0f}")


if __name__ == "__main__":
    main()
