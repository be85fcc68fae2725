"""Makes the tree models of the `trees` benchmark into a folder (once; kept between runs):

- `xgboost.json` / `xgboost.onnx`: an XGBoost binary classifier, 500 trees of depth 8 on 20
  features (`binary:logistic`), and its onnxmltools export;
- `lightgbm.txt` / `lightgbm.onnx`: a LightGBM binary classifier, 500 trees of depth ≤ 8
  (255 leaves at most) on the same data, and its onnxmltools export;
- `forest.onnx`: a scikit-learn random forest classifier (100 trees, depth ≤ 12) through
  skl2onnx (`zipmap=False`, so onnxruntime returns arrays as maas does);
- `row.json`: one row, for the cold starts.

Usage: tree_models.py FOLDER
"""

import json
import os
import sys

import numpy as np

FEATURES = 20
ROWS = 20_000


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    done = os.path.join(out, "done")
    if os.path.exists(done):
        return
    import lightgbm
    import onnxmltools
    import xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MlFloat
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=ROWS, n_features=FEATURES, n_informative=12,
                               n_redundant=4, random_state=3)
    x = x.astype(np.float32)

    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 8, "eta": 0.05, "nthread": 2},
        xgboost.DMatrix(x, label=y), num_boost_round=500)
    booster.save_model(os.path.join(out, "xgboost.json"))
    onnx_model = onnxmltools.convert_xgboost(booster, initial_types=[("input", MlFloat([None, FEATURES]))])
    with open(os.path.join(out, "xgboost.onnx"), "wb") as f:
        f.write(onnx_model.SerializeToString())

    lgbm = lightgbm.train(
        {"objective": "binary", "max_depth": 8, "num_leaves": 255, "learning_rate": 0.05,
         "num_threads": 2, "verbose": -1},
        lightgbm.Dataset(x, label=y), num_boost_round=500)
    lgbm.save_model(os.path.join(out, "lightgbm.txt"))
    onnx_model = onnxmltools.convert_lightgbm(lgbm, initial_types=[("input", MlFloat([None, FEATURES]))],
                                              zipmap=False)
    with open(os.path.join(out, "lightgbm.onnx"), "wb") as f:
        f.write(onnx_model.SerializeToString())

    forest = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0, n_jobs=2).fit(x, y)
    onnx_model = to_onnx(forest, x[:1], options={"zipmap": False})
    with open(os.path.join(out, "forest.onnx"), "wb") as f:
        f.write(onnx_model.SerializeToString())

    with open(os.path.join(out, "row.json"), "w") as f:
        json.dump([x[0].tolist()], f)
    open(done, "w").close()


if __name__ == "__main__":
    main()
