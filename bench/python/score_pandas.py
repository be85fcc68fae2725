"""Batch scoring the way a pandas user writes it: read_csv → onnxruntime → to_csv, the input
columns plus a `prediction` column. In chunks of CHUNK rows (default 100,000): all at once, a
1,000,000 × 1000 CSV needs more than 24 GB in pandas and is killed for lack of memory.

Usage: score_pandas.py MODEL.onnx IN.csv OUT.csv [CHUNK]
"""

import sys

import numpy as np
import onnxruntime as ort
import pandas as pd

model_path, in_path, out_path = sys.argv[1:4]
chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name
first = True
for frame in pd.read_csv(in_path, chunksize=chunk):
    features = [c for c in frame.columns if c.startswith("f")]
    x = frame[features].to_numpy(dtype=np.float32)
    frame["prediction"] = session.run(None, {input_name: x})[0].reshape(-1)
    frame.to_csv(out_path, index=False, mode="w" if first else "a", header=first)
    first = False
