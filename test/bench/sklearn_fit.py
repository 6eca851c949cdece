#!/usr/bin/python3
"""sklearn_fit.py: the route a user would take instead of dealrisk.train().

Reads closed deals exported with psql's \\copy (CSV with a header: the data
contract's columns), builds the same kind of features as the deal risk model
(one-hot of industry, region, product_type, lead_source and sales_rep_id;
quantile bins of deal_amount, of the cycle days and of the days from the
last activity to the close) and fits sklearn's LogisticRegression.

Called by test/bench/model_bench.sh; run it with Debian's /usr/bin/python3
(python3-sklearn, python3-pandas), not a pyenv python without them.

    /usr/bin/python3 test/bench/sklearn_fit.py deals.csv [--won Won]
        [--C 1.0] [--max-iter 1000] [--halflife-days 365]

Prints tab-separated "key<TAB>value" lines: the time of each part (load,
features, fit, in seconds), the in-sample AUC, the model size and the
numpy / sklearn versions and thread pools.
"""
import argparse
import os
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

T_IMPORTED = time.perf_counter()

CATEGORICAL = ["industry", "region", "product_type", "lead_source", "sales_rep_id"]
# the quantiles dealrisk._build_spec uses for the same features
BINS = {
    "deal_amount": [0.2, 0.4, 0.6, 0.8],
    "cycle_days": [0.1, 0.25, 0.5, 0.75, 0.9],
    "activity_gap": [0.25, 0.5, 0.75, 0.9],
}


def out(key, value):
    print(f"{key}\t{value}", flush=True)


def quantile_bins(x, probs):
    """Bin codes of x at its (linear-interpolated) quantiles, -1 for missing:
    bin b holds edges[b-1] <= x < edges[b], as in dealrisk's bins."""
    finite = x[np.isfinite(x)]
    edges = np.unique(np.quantile(finite, probs)) if finite.size else np.array([])
    codes = np.searchsorted(edges, x, side="right")
    return np.where(np.isfinite(x), codes, -1), edges


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--won", default="Won",
                    help="comma-separated outcome values that mean won (default Won)")
    ap.add_argument("--C", type=float, default=1.0,
                    help="inverse L2 strength; 1/C equals dealrisk.train's l2 (default 1.0)")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--halflife-days", type=float, default=0,
                    help="recency weights 0.5^(age/halflife) as dealrisk.train uses; 0 = unweighted")
    args = ap.parse_args()

    # 1. load the export
    t0 = time.perf_counter()
    df = pd.read_csv(args.csv, parse_dates=["created_date", "closed_date", "last_activity_date"],
                     dtype={c: "string" for c in CATEGORICAL + ["outcome"]})
    t1 = time.perf_counter()

    # 2. features: the labels, derived numbers, bins, one-hot encoding
    won = set(v for v in args.won.split(",") if v)
    y = df["outcome"].isin(won).to_numpy(dtype=np.int8)
    cycle = df["sales_cycle_days"].astype("float64")
    cycle = cycle.fillna((df["closed_date"] - df["created_date"]).dt.days).to_numpy()
    gap = (df["closed_date"] - df["last_activity_date"]).dt.days.astype("float64").to_numpy()
    amount = df["deal_amount"].astype("float64").to_numpy()
    coded = pd.DataFrame({c: df[c].fillna("(missing)") for c in CATEGORICAL})
    nedges = {}
    for name, x in (("deal_amount", amount), ("cycle_days", cycle), ("activity_gap", gap)):
        coded[name], edges = quantile_bins(x, BINS[name])
        nedges[name] = len(edges)
    X = OneHotEncoder(handle_unknown="ignore", dtype=np.float64).fit_transform(coded)
    weight = None
    if args.halflife_days > 0:
        ref = df["closed_date"].max()
        age = (ref - df["closed_date"]).dt.days.fillna(0).to_numpy(dtype=np.float64)
        weight = np.power(0.5, age / args.halflife_days)
    t2 = time.perf_counter()

    # 3. fit
    model = LogisticRegression(C=args.C, max_iter=args.max_iter)
    model.fit(X, y, sample_weight=weight)
    t3 = time.perf_counter()

    # in-sample AUC (not timed): sanity check that the two models compare
    auc = roc_auc_score(y, model.predict_proba(X)[:, 1])

    out("imports_s", f"{T_IMPORTED - T_START:.3f}")
    out("load_s", f"{t1 - t0:.3f}")
    out("features_s", f"{t2 - t1:.3f}")
    out("fit_s", f"{t3 - t2:.3f}")
    out("rows", len(df))
    out("won", int(y.sum()))
    out("columns", X.shape[1] + 1)
    out("bin_edges", ", ".join(f"{k} {v}" for k, v in nedges.items()))
    out("weighted", "recency half-life %g days" % args.halflife_days if weight is not None else "no")
    out("n_iter", int(np.max(model.n_iter_)))
    out("auc", f"{auc:.6f}")
    out("python", sys.version.split()[0] + " (" + sys.executable + ")")
    out("numpy", np.__version__)
    out("pandas", pd.__version__)
    out("sklearn", sklearn.__version__)
    out("solver", f"{model.solver}, C={args.C}, max_iter={args.max_iter}")
    out("blas_env", " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                              if any(s in k for s in ("BLAS", "OMP", "MKL"))) or "(none set)")
    try:
        from threadpoolctl import threadpool_info
        pools = threadpool_info()
        out("threadpools", "; ".join(
            "%s %s %s threads=%s%s" % (p.get("internal_api"), p.get("version") or "",
                                       os.path.basename(p.get("filepath", "")), p.get("num_threads"),
                                       (" arch=" + p["architecture"]) if p.get("architecture") else "")
            for p in pools) or "(none loaded)")
    except ImportError:
        out("threadpools", "(threadpoolctl not installed)")
    # threadpoolctl does not see the reference (netlib) BLAS: name what is mapped
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if any(s in line.rsplit("/", 1)[-1] for s in ("libblas", "libopenblas", "liblapack",
                                                                 "libmkl", "libblis", "libgomp"))})
    out("blas_libs", ", ".join(os.path.realpath(lib) for lib in libs) or "(none mapped)")


if __name__ == "__main__":
    main()
