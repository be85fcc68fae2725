"""Batch scoring the way a pandas user writes it: read_csv → onnxruntime → to_csv, the input
columns plus a `prediction` column.

Usage: score_pandas.py MODEL.onnx IN.csv OUT.csv
"""

import sys

import numpy as np
import onnxruntime as ort
import pandas as pd

model_path, in_path, out_path = sys.argv[1:4]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
frame = pd.read_csv(in_path)
features = [c for c in frame.columns if c.startswith("f")]
x = frame[features].to_numpy(dtype=np.float32)
frame["prediction"] = session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)
frame.to_csv(out_path, index=False)
