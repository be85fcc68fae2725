"""Trains a churn classifier three ways — a scikit-learn pipeline, XGBoost, LightGBM — on one
generated customer table, and writes what `maas push` takes, plus a CSV to score:

    OUT/churn-sklearn.onnx     the pipeline (scaler + logistic regression) through skl2onnx,
                               exported from the DataFrame: one input per column
    OUT/churn-xgboost.json     the XGBoost booster's own file (feature names inside)
    OUT/churn-lightgbm.txt     the LightGBM booster's own text model (feature names inside)
    OUT/customers.csv          customers to score (an id column, the features, gaps included)

Needs: pip install pandas scikit-learn skl2onnx xgboost lightgbm
Usage: python examples/tabular/export.py OUT
"""

import os
import sys

import lightgbm
import numpy as np
import pandas as pd
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["tenure_months", "monthly_spend", "support_calls", "late_payments"]


def customers(n, rng):
    frame = pd.DataFrame({
        "tenure_months": rng.integers(1, 72, n).astype(np.float32),
        "monthly_spend": rng.gamma(4.0, 15.0, n).astype(np.float32),
        "support_calls": rng.poisson(1.5, n).astype(np.float32),
        "late_payments": rng.poisson(0.5, n).astype(np.float32),
    })
    risk = (-0.05 * frame.tenure_months + 0.01 * frame.monthly_spend
            + 0.6 * frame.support_calls + 0.9 * frame.late_payments - 0.5)
    churned = rng.random(n) < 1 / (1 + np.exp(-risk))
    return frame, np.where(churned, "churn", "stay")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "out"
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(11)
    frame, labels = customers(5000, rng)

    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, labels)
    onnx_model = to_onnx(pipeline, frame[:1])  # a DataFrame: one input per column
    with open(os.path.join(out, "churn-sklearn.onnx"), "wb") as f:
        f.write(onnx_model.SerializeToString())

    target = (labels == "churn").astype(int)  # the boosters' classes are 0 (stay) and 1 (churn)
    booster = xgboost.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1)
    booster.fit(frame, target)
    booster.save_model(os.path.join(out, "churn-xgboost.json"))

    lgbm = lightgbm.LGBMClassifier(n_estimators=200, num_leaves=15, learning_rate=0.1, verbose=-1)
    lgbm.fit(frame, target)
    lgbm.booster_.save_model(os.path.join(out, "churn-lightgbm.txt"))

    to_score, _ = customers(1000, np.random.default_rng(12))
    to_score.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(to_score))])
    to_score.loc[3, "monthly_spend"] = np.nan  # a gap: the trees take it as missing
    to_score.to_csv(os.path.join(out, "customers.csv"), index=False)
    print(f"wrote {out}/churn-sklearn.onnx, churn-xgboost.json, churn-lightgbm.txt, customers.csv")


if __name__ == "__main__":
    main()
