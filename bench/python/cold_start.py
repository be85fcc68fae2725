"""Cold start on the Python side: process start → first prediction, the way a Python Lambda
handler or server would begin. `ort` loads model.onnx into an onnxruntime session; `torch` does
what the seed does, `torch.load` of the state dict into the SeedMLP; `xgboost` and `lightgbm`
load the booster's own file. Prints the prediction.

Usage: cold_start.py ort|torch|xgboost|lightgbm MODEL ROWS.json
"""

import json
import sys

engine, model_path, rows_path = sys.argv[1:4]
import numpy as np  # noqa: E402  (imports are part of the cold start)

with open(rows_path) as f:
    rows = np.asarray(json.load(f), dtype=np.float32)
    rows = rows.reshape(len(rows), -1)
if engine == "xgboost":
    import xgboost

    booster = xgboost.Booster(model_file=model_path)
    booster.set_param({"nthread": 1})
    out = booster.inplace_predict(rows)
elif engine == "lightgbm":
    import lightgbm

    out = lightgbm.Booster(model_file=model_path).predict(rows, num_threads=1)
elif engine == "ort":
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: rows})[0]
else:
    import torch

    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from seed_model import load_state_dict

    torch.set_num_threads(1)
    model = load_state_dict(model_path)
    with torch.inference_mode():
        out = model(torch.from_numpy(rows)).numpy()
print(json.dumps({"predictions": out.reshape(-1).tolist()}))
