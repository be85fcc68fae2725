"""What teams deploy today: a FastAPI app on uvicorn running the seed model with onnxruntime,
answering the same Open Inference Protocol route as `maas serve` (`POST
/v2/models/{model}/infer`, JSON tensors), so one load generator and one request body drive both.

Usage: uvicorn --app-dir bench/python serve_fastapi:app --workers N  (MODEL_PATH=model.onnx)
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(
    os.environ["MODEL_PATH"], options, providers=["CPUExecutionProvider"]
)
input_name = session.get_inputs()[0].name
app = FastAPI()


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list


class InferRequest(BaseModel):
    inputs: list[InferInput]


@app.post("/v2/models/{model}/infer")
def infer(model: str, request: InferRequest):
    if not request.inputs:
        raise HTTPException(400, "no inputs")
    first = request.inputs[0]
    x = np.asarray(first.data, dtype=np.float32).reshape(first.shape)
    out = session.run(None, {input_name: x})[0]
    return {
        "model_name": model,
        "outputs": [
            {
                "name": "output",
                "shape": list(out.shape),
                "datatype": "FP32",
                "data": out.reshape(-1).tolist(),
            }
        ],
    }
