"""In-process engine measurements for onnxruntime, PyTorch, XGBoost or LightGBM, the same method
as the Rust side (`maas-bench`): single-row latency (p50, p99) after a warm-up, then rows per
second at each batch size (median of several runs of at least MIN_SECONDS). Prints one JSON
object.

Usage: engine.py ort|torch|xgboost|lightgbm MODEL --threads N [--width 1000]
       [--latency-iterations 3000] [--batches 1,32,256,4096] [--runs 3] [--min-seconds 1.0]
"""

import argparse
import json
import statistics
import time

import numpy as np


def inputs(rows, width):
    rng = np.random.default_rng(7)
    return rng.uniform(-1.0, 1.0, size=(rows, width)).astype(np.float32)


def ort_predictor(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Errors only: onnxmltools' LightGBM export declares a label of shape [1], and onnxruntime
    # would write a warning to stderr on every call, which is not its prediction's cost.
    options.log_severity_level = 3
    started = time.perf_counter()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    build_ms = (time.perf_counter() - started) * 1e3
    name = session.get_inputs()[0].name
    return (lambda x: session.run(None, {name: x})[0]), build_ms, f"onnxruntime {ort.__version__}"


def xgboost_predictor(path, threads):
    """The booster's own fastest path for arrays: `inplace_predict` (no DMatrix per call)."""
    import xgboost

    started = time.perf_counter()
    booster = xgboost.Booster(model_file=path)
    booster.set_param({"nthread": threads})
    build_ms = (time.perf_counter() - started) * 1e3
    return (lambda x: booster.inplace_predict(x)), build_ms, f"xgboost {xgboost.__version__}"


def lightgbm_predictor(path, threads):
    import lightgbm

    started = time.perf_counter()
    booster = lightgbm.Booster(model_file=path)
    build_ms = (time.perf_counter() - started) * 1e3
    return (lambda x: booster.predict(x, num_threads=threads)), build_ms, f"lightgbm {lightgbm.__version__}"


def torch_predictor(path, threads):
    import torch

    from seed_model import load_state_dict

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = load_state_dict(path)
    build_ms = (time.perf_counter() - started) * 1e3

    def predict(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return predict, build_ms, f"torch {torch.__version__}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["ort", "torch", "xgboost", "lightgbm"])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=1000, help="features per row")
    parser.add_argument("--latency-iterations", type=int, default=3000)
    parser.add_argument("--batches", default="1,32,256,4096")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    make = {"ort": ort_predictor, "torch": torch_predictor, "xgboost": xgboost_predictor,
            "lightgbm": lightgbm_predictor}[args.engine]
    predict, build_ms, version = make(args.model, args.threads)

    row = inputs(1, args.width)
    for _ in range(min(args.latency_iterations, 500)):
        predict(row.copy())
    samples = []
    for _ in range(args.latency_iterations):
        x = row.copy()  # a fresh array each call, as a request would bring
        started = time.perf_counter()
        predict(x)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()

    def quantile(q):
        return samples[min(len(samples) - 1, round((len(samples) - 1) * q))]

    throughput = []
    for batch in [int(b) for b in args.batches.split(",")]:
        x = inputs(batch, args.width)
        predict(x)
        runs = []
        for _ in range(max(1, args.runs)):
            # Only the prediction is timed, as on the Rust side.
            started = time.perf_counter()
            busy = 0.0
            rows = 0
            while time.perf_counter() - started < args.min_seconds:
                call = time.perf_counter()
                predict(x)
                busy += time.perf_counter() - call
                rows += batch
            runs.append(rows / busy)
        throughput.append(
            {"batch": batch, "rows_per_second": statistics.median(runs), "runs": runs}
        )
    print(
        json.dumps(
            {
                "engine": args.engine,
                "version": version,
                "threads": args.threads,
                "build_ms": build_ms,
                "latency": {
                    "iterations": len(samples),
                    "p50_us": quantile(0.5),
                    "p99_us": quantile(0.99),
                },
                "throughput": throughput,
            }
        )
    )


if __name__ == "__main__":
    main()
