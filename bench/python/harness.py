"""The benchmark harness behind `bench/run`: measures maas and the tools teams use instead
(onnxruntime and PyTorch in Python, a FastAPI + uvicorn server, a pandas script) on the seed
model, side by side in one run, the sides interleaved run by run, and writes BENCHMARKS.md with
the medians and the ratios maas / anchor against the targets.

Every figure is the median of several runs; each run is a fresh process. Peak RSS comes from
wait4(2) of that process (children included for the servers).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = Path(sys.executable)
HERE = Path(__file__).resolve().parent
FIXTURES = ROOT / "tests" / "fixtures" / "seed-mlp"
MAAS = ROOT / "target" / "release" / "maas"
MAAS_BENCH = ROOT / "target" / "release" / "maas-bench"


def log(message):
    print(f"[bench {datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run_measured(cmd, env=None, timeout=7200):
    """Runs `cmd` to completion; returns (wall seconds, stdout text)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        env={**os.environ, **(env or {})},
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout


def run_with_rss(cmd, env=None, timeout=7200):
    """Runs `cmd` and returns (wall seconds, peak RSS in MiB, stdout) using wait4 on the child."""
    started = time.perf_counter()
    out_file = tempfile.TemporaryFile(mode="w+")
    err_file = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=out_file,
        stderr=err_file,
        env={**os.environ, **(env or {})},
        text=True,
    )
    deadline = time.time() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"{cmd} timed out")
        time.sleep(0.0005)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1:3]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, out


def median(values):
    return statistics.median(values) if values else float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.store = self.work / "store"
        self.results = {"sections": {}}
        self.onnx = FIXTURES / "model.onnx"
        self.safetensors = FIXTURES / "model.safetensors"
        self.pt = FIXTURES / "model.pt"

    # ---------------------------------------------------------------- setup
    def maas(self, *args, env=None):
        return subprocess.run(
            [str(MAAS), "--store", str(self.store), *map(str, args)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "MAAS_ACTOR": "bench", **(env or {})},
        ).stdout

    def setup(self):
        if self.store.exists():
            shutil.rmtree(self.store)
        manifest = self.work / "features.json"
        manifest.write_text(json.dumps({"features": [f"f{i}" for i in range(1000)]}))
        self.maas("push", "seed-onnx", self.onnx, "--manifest", manifest)
        self.maas("push", "seed-st", self.safetensors, "--manifest", manifest)
        reference = json.loads((FIXTURES / "reference.json").read_text())
        self.row = self.work / "row.json"
        self.row.write_text(json.dumps([reference["inputs"][0]]))

    # ---------------------------------------------------------------- cold start
    def cold_start(self):
        runs = self.args.cold_runs
        sides = {
            "maas (ONNX)": [MAAS, "--store", self.store, "predict", "seed-onnx", "-i", self.row],
            "maas (safetensors)": [MAAS, "--store", self.store, "predict", "seed-st", "-i", self.row],
            "Python + onnxruntime": [PY, HERE / "cold_start.py", "ort", self.onnx, self.row],
            "Python + PyTorch": [PY, HERE / "cold_start.py", "torch", self.pt, self.row],
        }
        env = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        walls = {k: [] for k in sides}
        rss = {k: [] for k in sides}
        for r in range(runs):
            for name, cmd in sides.items():
                wall, peak, _ = run_with_rss(cmd, env=env)
                walls[name].append(wall * 1e3)
                rss[name].append(peak)
            log(f"cold start run {r + 1}/{runs}")
        self.results["sections"]["cold_start"] = {
            name: {"wall_ms": median(walls[name]), "peak_rss_mib": median(rss[name]),
                   "runs_ms": walls[name]}
            for name in sides
        }

    # ---------------------------------------------------------------- engines
    def engines(self):
        batches = ",".join(str(b) for b in self.args.batches)
        reps = self.args.engine_runs
        out = {}
        for threads in self.args.threads:
            common = ["--latency-iterations", self.args.latency_iterations, "--batches", batches,
                      "--runs", "1", "--min-seconds", self.args.min_seconds]
            env = {"RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
            # maas as it serves (the dense kernels for this MLP), then the engines' own paths.
            engines_only = {"MAAS_DENSE_KERNELS": "off"}
            sides = {
                "maas (ONNX)": ([MAAS_BENCH, self.onnx, "--threads", threads, *common], {}),
                "maas (safetensors)": ([MAAS_BENCH, self.safetensors, "--threads", threads,
                                        *common], {}),
                "tract": ([MAAS_BENCH, self.onnx, "--threads", threads, *common], engines_only),
                "candle": ([MAAS_BENCH, self.safetensors, "--threads", threads, *common],
                           engines_only),
                "onnxruntime": ([PY, HERE / "engine.py", "ort", self.onnx, "--threads", threads,
                                 *common], {}),
                "PyTorch": ([PY, HERE / "engine.py", "torch", self.pt, "--threads", threads,
                             *common], {}),
            }
            reports = {k: [] for k in sides}
            for r in range(reps):
                for name, (cmd, extra) in sides.items():
                    _, _, text = run_with_rss(cmd, env={**env, **extra})
                    reports[name].append(json.loads(text))
                log(f"engines, {threads} thread(s), run {r + 1}/{reps}")
            out[str(threads)] = {
                name: {
                    "p50_us": median([x["latency"]["p50_us"] for x in rs]),
                    "p99_us": median([x["latency"]["p99_us"] for x in rs]),
                    "rows_per_second": {
                        str(b): median([
                            t["rows_per_second"] for x in rs for t in x["throughput"]
                            if t["batch"] == b
                        ])
                        for b in self.args.batches
                    },
                    "version": rs[0].get("version", ""),
                }
                for name, rs in reports.items()
            }
        self.results["sections"]["engines"] = out

    # ---------------------------------------------------------------- trees
    def trees(self):
        """Tree ensembles: XGBoost and LightGBM boosters (500 trees of depth 8 on 20 features)
        and a scikit-learn random forest, each served by maas from its own file and from its
        ONNX export, against onnxruntime on that ONNX file and the library's own predict."""
        folder = self.work / "trees"
        run_measured([PY, HERE / "tree_models.py", folder])
        models = {
            "XGBoost": {"native": folder / "xgboost.json", "onnx": folder / "xgboost.onnx",
                        "library": "xgboost"},
            "LightGBM": {"native": folder / "lightgbm.txt", "onnx": folder / "lightgbm.onnx",
                         "library": "lightgbm"},
            "random forest": {"onnx": folder / "forest.onnx"},
        }
        row = folder / "row.json"
        store = self.work / "tree-store"
        if store.exists():
            shutil.rmtree(store)
        batches = ",".join(str(b) for b in TREE_BATCHES)
        common = ["--latency-iterations", self.args.latency_iterations, "--batches", batches,
                  "--runs", "1", "--min-seconds", self.args.min_seconds]
        env = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        out = {}
        for model, files in models.items():
            slug = re.sub(r"[^a-z]+", "-", model.lower())
            engines = {}
            cold = {}
            if "native" in files:
                subprocess.run([MAAS, "--store", store, "push", f"{slug}-native", files["native"]],
                               check=True, capture_output=True)
                engines["maas (native file)"] = [MAAS_BENCH, files["native"], *common]
                cold["maas (native file)"] = [MAAS, "--store", store, "predict", f"{slug}-native",
                                              "-i", row]
            subprocess.run([MAAS, "--store", store, "push", f"{slug}-onnx", files["onnx"]],
                           check=True, capture_output=True)
            engines["maas (ONNX)"] = [MAAS_BENCH, files["onnx"], *common]
            cold["maas (ONNX)"] = [MAAS, "--store", store, "predict", f"{slug}-onnx", "-i", row]
            engines["onnxruntime"] = [PY, HERE / "engine.py", "ort", files["onnx"], "--width", "20",
                                      *common]
            cold["Python + onnxruntime"] = [PY, HERE / "cold_start.py", "ort", files["onnx"], row]
            if "library" in files:
                lib = files["library"]
                engines[lib] = [PY, HERE / "engine.py", lib, files["native"], "--width", "20", *common]
                cold[f"Python + {lib}"] = [PY, HERE / "cold_start.py", lib, files["native"], row]
            reports = {k: [] for k in engines}
            for r in range(self.args.engine_runs):
                for name, cmd in engines.items():
                    _, _, text = run_with_rss(cmd, env=env)
                    reports[name].append(json.loads(text))
                log(f"trees, {model}, engines run {r + 1}/{self.args.engine_runs}")
            walls = {k: [] for k in cold}
            rss = {k: [] for k in cold}
            for r in range(self.args.cold_runs):
                for name, cmd in cold.items():
                    wall, peak, _ = run_with_rss(cmd, env=env)
                    walls[name].append(wall * 1e3)
                    rss[name].append(peak)
            log(f"trees, {model}, {self.args.cold_runs} cold starts")
            out[model] = {
                "library": files.get("library"),
                "engines": {
                    name: {
                        "p50_us": median([x["latency"]["p50_us"] for x in rs]),
                        "p99_us": median([x["latency"]["p99_us"] for x in rs]),
                        "build_ms": median([x["build_ms"] for x in rs]),
                        "rows_per_second": {
                            str(b): median([t["rows_per_second"] for x in rs
                                            for t in x["throughput"] if t["batch"] == b])
                            for b in TREE_BATCHES
                        },
                        "engine": rs[0].get("version", rs[0].get("engine", "")),
                    }
                    for name, rs in reports.items()
                },
                "cold_start": {
                    name: {"wall_ms": median(walls[name]), "peak_rss_mib": median(rss[name])}
                    for name in cold
                },
            }
        self.results["sections"]["trees"] = out

    # ---------------------------------------------------------------- HTTP
    def http(self):
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1000], "datatype": "FP32",
                                        "data": json.loads(self.row.read_text())[0]}]})
        lua = self.work / "post.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n"
        )
        conc, secs, reps = self.args.http_connections, self.args.http_seconds, self.args.http_runs
        results = {"maas serve": [], "FastAPI + uvicorn + onnxruntime": []}

        def start(name):
            port = free_port()
            if name == "maas serve":
                cmd = [MAAS, "--store", self.store, "serve", "--addr", f"127.0.0.1:{port}",
                       "--preload", "seed-onnx", "--batch-watch", "never"]
                env = {"RUST_LOG": "warn", "RAYON_NUM_THREADS": "1"}
            else:
                cmd = [PY, "-m", "uvicorn", "--app-dir", HERE, "serve_fastapi:app", "--host",
                       "127.0.0.1", "--port", port, "--workers", self.args.uvicorn_workers,
                       "--log-level", "warning", "--no-access-log"]
                env = {"MODEL_PATH": str(self.onnx), "OMP_NUM_THREADS": "1"}
            proc = subprocess.Popen([str(c) for c in cmd], env={**os.environ, **env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            wait_for_port(port)
            return proc, port

        for r in range(reps):
            for name in results:
                proc, port = start(name)
                try:
                    url = f"http://127.0.0.1:{port}/v2/models/seed-onnx/infer"
                    # warm-up, then the measured run
                    subprocess.run(["wrk", "-t2", f"-c{conc}", "-d2s", "-s", lua, url],
                                   check=True, capture_output=True)
                    text = subprocess.run(
                        ["wrk", "-t2", f"-c{conc}", f"-d{secs}s", "--latency", "-s", lua, url],
                        check=True, capture_output=True, text=True).stdout
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                results[name].append(parse_wrk(text))
            log(f"http run {r + 1}/{reps}")
        self.results["sections"]["http"] = {
            name: {
                "requests_per_second": median([x["rps"] for x in rs]),
                "p50_ms": median([x["p50_ms"] for x in rs]),
                "p99_ms": median([x["p99_ms"] for x in rs]),
                "errors": sum(x["errors"] for x in rs),
                "connections": conc,
            }
            for name, rs in results.items()
        }

    # ---------------------------------------------------------------- batch scoring
    def scoring(self):
        rows = self.args.score_rows
        data = self.work / f"score-{rows}.csv"
        if not data.exists():
            log(f"generating {rows} rows to score")
            self.maas("generate-dataset", "regression", data, "--rows", rows, "--features", 1000)
        sides = {
            "maas score": [MAAS, "--store", self.store, "score", "seed-onnx", data,
                           self.work / "scored-maas.csv"],
            "pandas + onnxruntime": [PY, HERE / "score_pandas.py", self.onnx, data,
                                     self.work / "scored-pandas.csv"],
        }
        env = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        walls = {k: [] for k in sides}
        rss = {k: [] for k in sides}
        for r in range(self.args.score_runs):
            for name, cmd in sides.items():
                wall, peak, _ = run_with_rss(cmd, env=env)
                walls[name].append(wall)
                rss[name].append(peak)
            log(f"scoring run {r + 1}/{self.args.score_runs}")
        self.results["sections"]["scoring"] = {
            name: {"rows": rows, "wall_s": median(walls[name]),
                   "rows_per_second": rows / median(walls[name]),
                   "peak_rss_mib": median(rss[name]), "runs_s": walls[name]}
            for name in sides
        }
        self.results["sections"]["scoring"]["maas score"]["executor"] = self.maas_executor()

    def maas_executor(self):
        """What serves the ONNX seed model in this build (`dense-avx512`, `tract`, …)."""
        text = subprocess.run([str(MAAS_BENCH), str(self.onnx), "--latency-iterations", "1",
                               "--batches", "1", "--runs", "1", "--min-seconds", "0"],
                              check=True, capture_output=True, text=True).stdout
        return json.loads(text)["engine"]

    # ---------------------------------------------------------------- training
    def training(self):
        rows, epochs = self.args.train_rows, self.args.train_epochs
        data = self.work / f"train-{rows}.csv"
        if not data.exists():
            self.maas("generate-dataset", "regression", data, "--rows", rows, "--features", 1000,
                      "--seed", 3)
        out = {}
        for threads in self.args.threads:
            for batch in self.args.train_batches:
                spec = self.work / f"train-{batch}.json"
                spec.write_text(json.dumps({
                    "model": "seed-bench",
                    "dataset": {"key": "datasets/bench.csv", "format": "csv", "target": "y"},
                    "task": "regression",
                    "architecture": {"hidden": [500, 100], "activation": "relu"},
                    "training": {"optimizer": "adam", "learning_rate": 0.001, "epochs": epochs,
                                 "batch_size": batch, "seed": 42, "validation_fraction": 0.2},
                }))
                env = {"RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
                maas_runs, torch_runs = [], []
                for r in range(self.args.train_runs):
                    _, text = run_measured([MAAS, "--store", self.work / "train-store", "--json",
                                            "train", spec, "--dataset", data], env=env)
                    metrics = json.loads(text)["metrics"]
                    maas_runs.append({"samples_per_second": metrics["samples_per_second"],
                                      "val_mse": metrics["val_mse"]})
                    _, text = run_measured([PY, HERE / "train_torch.py", data, "--batch", batch,
                                            "--epochs", epochs, "--threads", threads], env=env)
                    torch_runs.append(json.loads(text))
                    log(f"training batch {batch}, {threads} thread(s), run {r + 1}")
                out[f"{threads}/{batch}"] = {
                    "threads": threads, "batch": batch, "rows": rows, "epochs": epochs,
                    "maas": {"samples_per_second": median([x["samples_per_second"] for x in maas_runs]),
                             "val_mse": median([x["val_mse"] for x in maas_runs])},
                    "PyTorch": {"samples_per_second": median([x["samples_per_second"] for x in torch_runs]),
                                "val_mse": median([x["val_mse"] for x in torch_runs])},
                }
        self.results["sections"]["training"] = out


def parse_wrk(text):
    def to_ms(value):
        number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
    p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
    errors = 0
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        errors += int(m.group(1))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


# -------------------------------------------------------------------- report
def machine_facts():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = open("/proc/cpuinfo").read()
    lock = (ROOT / "Cargo.lock").read_text()

    def crate(name):
        m = re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock)
        return m.group(1) if m else "?"

    def py_version(module):
        try:
            return __import__(module).__version__
        except Exception:  # noqa: BLE001
            return "?"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip(),
        "python": platform.python_version(),
        "tract": crate("tract-onnx"),
        "candle": crate("candle-core"),
        "onnxruntime": py_version("onnxruntime"),
        "torch": py_version("torch"),
        "pandas": py_version("pandas"),
        "fastapi": py_version("fastapi"),
        "uvicorn": py_version("uvicorn"),
        "xgboost": py_version("xgboost"),
        "lightgbm": py_version("lightgbm"),
        "sklearn": py_version("sklearn"),
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("\n")[0].strip()
        if shutil.which("wrk") else "?",
    }


def verdict(ok):
    return "✅" if ok else "❌"


def render(results, args):
    s = results["sections"]
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run` — do not edit by hand; rerun it. maas is measured side by side "
        "with the tools teams deploy instead, on the seed model (MLP 1000→500→100→1, "
        "`tests/fixtures/seed-mlp`), the sides interleaved run by run; every figure is the median "
        f"of the runs. Ratios are maas / anchor.",
        "",
        f"- **Run**: {results['started']} → {results['finished']}, `bench/run {' '.join(results['argv'])}`",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores{' (AVX-512)' if m['avx512'] else ''}, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}",
        f"- **Versions**: {m['rustc']}; tract {m['tract']}, candle {m['candle']}; Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, pandas {m['pandas']}, "
        f"FastAPI {m['fastapi']}, uvicorn {m['uvicorn']}, xgboost {m.get('xgboost', '-')}, "
        f"lightgbm {m.get('lightgbm', '-')}, scikit-learn {m.get('sklearn', '-')}; {m['wrk']}",
        "- **Reproduce**: `bench/run` (everything, ~1.5 h; `--score-runs 1` saves 35 min) or `bench/run --quick` (smaller, ~10 min); "
        "it installs the Python side into `bench/.venv` and wrk from Debian if missing.",
        "",
    ]
    summary = []

    if "cold_start" in s:
        c = s["cold_start"]
        ort, pt = c["Python + onnxruntime"], c["Python + PyTorch"]
        lines += ["## Cold start: process start → first prediction", "",
                  "The model is read from the embedded store (maas) or the file (Python), one row "
                  "predicted, the process exits. Wall time and peak RSS.", "",
                  "| side | wall | peak RSS | wall vs onnxruntime | wall vs PyTorch | RSS vs onnxruntime |",
                  "|---|---|---|---|---|---|"]
        for name, v in c.items():
            lines.append(f"| {name} | {v['wall_ms']:.1f} ms | {v['peak_rss_mib']:.0f} MiB | "
                         f"{v['wall_ms'] / ort['wall_ms']:.3f} | {v['wall_ms'] / pt['wall_ms']:.4f} | "
                         f"{v['peak_rss_mib'] / ort['peak_rss_mib']:.2f} |")
        lines.append("")
        for engine in MAAS_PATHS:
            v = c[engine]
            summary.append((f"cold start {engine} ≤ 1/15 of Python + onnxruntime",
                            f"{v['wall_ms'] / ort['wall_ms']:.3f} (1/{ort['wall_ms'] / v['wall_ms']:.0f})",
                            v["wall_ms"] * 15 <= ort["wall_ms"]))
            summary.append((f"cold start {engine} ≤ 1/100 of Python + PyTorch",
                            f"{v['wall_ms'] / pt['wall_ms']:.4f} (1/{pt['wall_ms'] / v['wall_ms']:.0f})",
                            v["wall_ms"] * 100 <= pt["wall_ms"]))
            summary.append((f"peak RSS {engine} ≤ 1/2 of Python + onnxruntime",
                            f"{v['peak_rss_mib'] / ort['peak_rss_mib']:.2f}",
                            v["peak_rss_mib"] * 2 <= ort["peak_rss_mib"]))

    if "engines" in s:
        e = s["engines"]
        lines += ["## Engines in-process", "",
                  "Single-row latency (a fresh input each call, after a warm-up) and rows/s at each "
                  "batch size. maas goes through its serving path (`LoadedModel::predict`: input "
                  "checks, the engine, postprocessing); onnxruntime and PyTorch call the session / "
                  "module directly. **maas (ONNX)** and **maas (safetensors)** are what `maas serve` "
                  "runs: this MLP is a chain of dense layers, so both formats run on maas's "
                  "packed-weight kernels (`shared/dense`). **tract** and **candle** are the same "
                  "files on the engines' own paths (`MAAS_DENSE_KERNELS=off`), which serve every "
                  "other graph.", ""]
        for threads, sides in e.items():
            ort = sides["onnxruntime"]
            lines += [f"### {threads} thread{'s' if threads != '1' else ''}", "",
                      "| engine | p50 | p99 | " + " | ".join(f"batch {b}" for b in args.batches) + " |",
                      "|---|---|---|" + "---|" * len(args.batches)]
            for name, v in sides.items():
                cells = []
                for b in args.batches:
                    rps = v["rows_per_second"][str(b)]
                    cells.append(f"{rps / 1e3:.1f}k ({rps / ort['rows_per_second'][str(b)]:.2f}×)")
                lines.append(f"| {name} | {v['p50_us']:.1f} µs ({v['p50_us'] / ort['p50_us']:.2f}×) | "
                             f"{v['p99_us']:.1f} µs | " + " | ".join(cells) + " |")
            lines += ["", "Ratios in brackets are against onnxruntime (latency: lower is better; "
                      "rows/s: higher is better).", ""]
            if threads == "1":
                for engine in MAAS_PATHS:
                    v = sides[engine]
                    summary.append((f"{engine} single-row p50 ≤ onnxruntime's (1 thread)",
                                    f"{v['p50_us']:.1f} vs {ort['p50_us']:.1f} µs",
                                    v["p50_us"] <= ort["p50_us"]))
        for threads, sides in e.items():
            ort = sides["onnxruntime"]
            for engine in MAAS_PATHS:
                worst = min(args.batches, key=lambda b: sides[engine]["rows_per_second"][str(b)]
                            / ort["rows_per_second"][str(b)])
                ratio = sides[engine]["rows_per_second"][str(worst)] / ort["rows_per_second"][str(worst)]
                summary.append((f"{engine} throughput ≥ 1.0× onnxruntime at every batch ({threads} thread(s))",
                                f"lowest {ratio:.2f}× (batch {worst})", ratio >= 1.0))
        if "1" in e and "2" in e:
            lines += ["### Scaling 1 → 2 threads (rows/s)", "",
                      "| engine | " + " | ".join(f"batch {b}" for b in args.batches) + " |",
                      "|---|" + "---|" * len(args.batches)]
            for name in e["1"]:
                cells = [f"{e['2'][name]['rows_per_second'][str(b)] / e['1'][name]['rows_per_second'][str(b)]:.2f}×"
                         for b in args.batches]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
            for engine in MAAS_PATHS:
                big = [b for b in args.batches if b >= 256]
                if not big:
                    continue
                worst = min(e["2"][engine]["rows_per_second"][str(b)] / e["1"][engine]["rows_per_second"][str(b)]
                            for b in big)
                summary.append((f"{engine} inference at batch ≥ 256: 2 threads ≥ 1.6× 1 thread",
                                f"lowest {worst:.2f}×", worst >= 1.6))

    if "trees" in s:
        lines += ["## Tree ensembles", "",
                  "Gradient-boosted trees and a random forest on 20 features, one thread: an XGBoost "
                  "and a LightGBM binary classifier (500 trees of depth 8, `bench/python/tree_models.py`) "
                  "and a scikit-learn random forest classifier (100 trees, depth ≤ 12). maas serves each "
                  "booster from its own file (`model.json`, `model.txt`) and from its ONNX export "
                  "(onnxmltools; skl2onnx for the forest); onnxruntime runs that same ONNX file; the "
                  "library runs its own `predict` (XGBoost `inplace_predict`, LightGBM `Booster.predict`). "
                  "Single-row latency and rows/s as for the engines above (maas through "
                  "`LoadedModel::predict`, every output: label and probabilities). Ratios are against "
                  "onnxruntime.", ""]
        for model, v in s["trees"].items():
            e = v["engines"]
            ort = e["onnxruntime"]
            lines += [f"### {model}", "",
                      "| side | p50 | p99 | " + " | ".join(f"batch {b}" for b in TREE_BATCHES)
                      + " | build |",
                      "|---|---|---|" + "---|" * len(TREE_BATCHES) + "---|"]
            for name, x in e.items():
                cells = [f"{x['rows_per_second'][str(b)] / 1e3:,.1f}k "
                         f"({x['rows_per_second'][str(b)] / ort['rows_per_second'][str(b)]:.2f}×)"
                         for b in TREE_BATCHES]
                lines.append(f"| {name} | {x['p50_us']:.1f} µs ({x['p50_us'] / ort['p50_us']:.2f}×) | "
                             f"{x['p99_us']:.1f} µs | " + " | ".join(cells) + f" | {x['build_ms']:.0f} ms |")
            lines += ["", "| cold start | wall | peak RSS |", "|---|---|---|"]
            for name, c in v["cold_start"].items():
                lines.append(f"| {name} | {c['wall_ms']:.1f} ms | {c['peak_rss_mib']:.0f} MiB |")
            lines.append("")
            m = e["maas (ONNX)"]
            summary.append((f"{model}: single-row p50 ≤ 1/2 of onnxruntime's (same ONNX file)",
                            f"{m['p50_us']:.1f} vs {ort['p50_us']:.1f} µs",
                            m["p50_us"] * 2 <= ort["p50_us"]))
            worst = min(TREE_BATCHES, key=lambda b: m["rows_per_second"][str(b)]
                        / ort["rows_per_second"][str(b)])
            r = m["rows_per_second"][str(worst)] / ort["rows_per_second"][str(worst)]
            summary.append((f"{model}: rows/s ≥ 2× onnxruntime at batch 1, 64, 4096",
                            f"lowest {r:.2f}× (batch {worst})", r >= 2.0))
            lib = v["library"]
            if lib:
                native = e["maas (native file)"]
                worst = min(TREE_BATCHES, key=lambda b: native["rows_per_second"][str(b)]
                            / e[lib]["rows_per_second"][str(b)])
                r = native["rows_per_second"][str(worst)] / e[lib]["rows_per_second"][str(worst)]
                summary.append((f"{model}: rows/s ≥ 1× {lib}'s own predict at batch 1, 64, 4096",
                                f"lowest {r:.2f}× (batch {worst})", r >= 1.0))
            cold = v["cold_start"]
            maas_cold = max(c["wall_ms"] for name, c in cold.items() if name.startswith("maas"))
            ort_cold = cold["Python + onnxruntime"]["wall_ms"]
            summary.append((f"{model}: cold start ≤ 1/10 of Python + onnxruntime",
                            f"{maas_cold:.0f} vs {ort_cold:.0f} ms (1/{ort_cold / maas_cold:.0f})",
                            maas_cold * 10 <= ort_cold))

    if "http" in s:
        h = s["http"]
        fa = h["FastAPI + uvicorn + onnxruntime"]
        mh = h["maas serve"]
        conc = mh["connections"]
        lines += ["## HTTP serving", "",
                  f"`wrk -t2 -c{conc} -d{args.http_seconds}s` posting one Open Inference Protocol V2 "
                  "JSON request of one row to `/v2/models/seed-onnx/infer`, against `maas serve` (the "
                  f"ONNX model on the dense kernels, one thread) and a FastAPI app on uvicorn with {args.uvicorn_workers} workers "
                  "running onnxruntime (one thread each) — the same route, body and load generator, "
                  "on the same 2 cores as the load generator.", "",
                  "| server | req/s | p50 | p99 | errors |", "|---|---|---|---|---|"]
        for name, v in h.items():
            lines.append(f"| {name} | {v['requests_per_second']:.0f} | {v['p50_ms']:.2f} ms | "
                         f"{v['p99_ms']:.2f} ms | {v['errors']} |")
        lines.append("")
        r = mh["requests_per_second"] / fa["requests_per_second"]
        summary.append(("HTTP req/s ≥ 5× FastAPI", f"{r:.1f}×", r >= 5))
        p = mh["p99_ms"] / fa["p99_ms"]
        summary.append(("HTTP p99 ≤ 1/5 of FastAPI's", f"{p:.2f} (1/{1 / p:.1f})", p <= 0.2))

    if "scoring" in s:
        b = s["scoring"]
        ms, pd_ = b["maas score"], b["pandas + onnxruntime"]
        # Runs before the dense kernels recorded no executor: they were served by tract.
        executor = ms.get("executor", "tract, in a run before the dense kernels existed; "
                                      "`bench/run --only scoring` refreshes it")
        lines += ["## Batch scoring", "",
                  f"A CSV of {ms['rows']:,} rows × 1000 features (+ target) in, the rows with a "
                  f"prediction column out: `maas score` (streaming; the ONNX model on {executor}) vs a pandas script "
                  "(`read_csv` → onnxruntime `run` → `to_csv`, in chunks of 100,000 rows: read "
                  "whole, 1,000,000 rows need more than this machine's 24 GB and pandas is "
                  "killed).", "",
                  "| side | wall | rows/s | peak RSS |", "|---|---|---|---|"]
        for name, v in b.items():
            lines.append(f"| {name} | {v['wall_s']:.1f} s | {v['rows_per_second']:,.0f} | "
                         f"{v['peak_rss_mib']:.0f} MiB |")
        lines.append("")
        r = pd_["wall_s"] / ms["wall_s"]
        summary.append(("batch scoring ≥ 3× the pandas script", f"{r:.2f}×", r >= 3))

    if "training" in s:
        t = s["training"]
        lines += ["## Training", "",
                  "The seed workload (MLP 1000→500→100→1, ReLU, MSE, Adam lr 0.001) on the same "
                  "generated CSV, the same split fraction, epochs and batch size: `maas train` "
                  "(candle tensors, the backward pass written out, the products on the dense kernels, "
                  "in-place Adam) vs a PyTorch loop. samples/s is the median epoch; "
                  "validation MSE after the last epoch.", "",
                  "| threads | batch | maas samples/s | PyTorch samples/s | ratio | maas val MSE | PyTorch val MSE |",
                  "|---|---|---|---|---|---|---|"]
        for key, v in t.items():
            r = v["maas"]["samples_per_second"] / v["PyTorch"]["samples_per_second"]
            lines.append(f"| {v['threads']} | {v['batch']} | {v['maas']['samples_per_second']:,.0f} | "
                         f"{v['PyTorch']['samples_per_second']:,.0f} | {r:.2f}× | "
                         f"{v['maas']['val_mse']:.4f} | {v['PyTorch']['val_mse']:.4f} |")
            if v["threads"] == 1:
                summary.append((f"training samples/s ≥ 1.0× PyTorch (batch {v['batch']}, 1 thread)",
                                f"{r:.2f}×", r >= 1.0))
                dv = v["maas"]["val_mse"] / v["PyTorch"]["val_mse"]
                summary.append((f"final val MSE within 5% of PyTorch's (batch {v['batch']})",
                                f"{dv:.3f}", abs(dv - 1) <= 0.05 or dv < 1))
        lines.append("")
        scaling = []
        for batch in args.train_batches:
            one, two = t.get(f"1/{batch}"), t.get(f"2/{batch}")
            if one and two:
                ratios = {side: two[side]["samples_per_second"] / one[side]["samples_per_second"]
                          for side in ("maas", "PyTorch")}
                scaling.append(f"| {batch} | {ratios['maas']:.2f}× | {ratios['PyTorch']:.2f}× |")
                # The scaling target is set for batches of 256 and more, as for inference.
                if int(batch) >= 256:
                    summary.append((f"training batch {batch}: 2 threads ≥ 1.6× 1 thread",
                                    f"{ratios['maas']:.2f}×", ratios["maas"] >= 1.6))
        if scaling:
            lines += ["### Scaling 1 → 2 threads (samples/s)", "",
                      "| batch | maas | PyTorch |", "|---|---|---|", *scaling, ""]

    for name, error in results.get("errors", {}).items():
        lines += [f"## {name}: did not complete", "", "```", error, "```", ""]
        summary.append((f"{name}", "did not complete", False))
    head = ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    head += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in summary]
    head.append("")
    intro_end = next(i for i, line in enumerate(lines) if line.startswith("## "))
    return "\n".join(lines[:intro_end] + head + lines[intro_end:]) + "\n"


# The rows the engine targets are judged on: what maas serves the seed model with.
MAAS_PATHS = ["maas (ONNX)", "maas (safetensors)"]
# Batch sizes of the tree benchmarks.
TREE_BATCHES = [1, 64, 4096]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs and rows (~10 min)")
    parser.add_argument("--only", default="cold,engines,trees,http,scoring,training")
    parser.add_argument("--work", default=str(ROOT / "target" / "bench"))
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,32,256,4096")
    parser.add_argument("--score-rows", type=int, help="rows of the scoring CSV (default 1,000,000)")
    parser.add_argument("--score-runs", type=int, help="scoring runs (default 3)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sections of an earlier run's results.json")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    quick = args.quick
    args.cold_runs = 5 if quick else 9
    args.engine_runs = 3 if quick else 5
    args.latency_iterations = 2000 if quick else 5000
    args.min_seconds = 0.5 if quick else 1.0
    args.http_connections = 16
    args.http_seconds = 5 if quick else 10
    args.http_runs = 2 if quick else 3
    args.uvicorn_workers = 2
    args.score_rows = args.score_rows or (100_000 if quick else 1_000_000)
    args.score_runs = args.score_runs or (2 if quick else 3)
    args.train_rows = 5_000 if quick else 10_000
    args.train_epochs = 3 if quick else 5
    args.train_batches = [64, 256]
    args.train_runs = 2 if quick else 3

    bench = Bench(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    earlier = Path(args.work) / "results.json"
    if args.merge and earlier.exists():
        bench.results = json.loads(earlier.read_text())
        bench.results.pop("errors", None)
        bench.results["argv"] = bench.results.get("argv", []) + ["+", *sys.argv[1:]]
    else:
        bench.results["started"] = f"{started:%Y-%m-%d %H:%M} UTC"
        bench.results["argv"] = sys.argv[1:]
    bench.setup()
    sections = args.only.split(",")
    for name, step in [("cold", bench.cold_start), ("engines", bench.engines),
                       ("trees", bench.trees), ("http", bench.http), ("scoring", bench.scoring),
                       ("training", bench.training)]:
        if name in sections:
            log(f"== {name}")
            try:
                step()
            except Exception as e:  # noqa: BLE001  (one failed comparison must not lose the rest)
                log(f"{name} failed: {e}")
                bench.results.setdefault("errors", {})[name] = str(e)[-500:]
            (Path(args.work) / "results.json").write_text(json.dumps(bench.results, indent=2))
    bench.results["finished"] = f"{datetime.datetime.now(datetime.timezone.utc):%H:%M} UTC"
    bench.results["machine"] = machine_facts()
    (Path(args.work) / "results.json").write_text(json.dumps(bench.results, indent=2))
    Path(args.output).write_text(render(bench.results, args))
    log(f"wrote {args.output} and {Path(args.work) / 'results.json'}")


if __name__ == "__main__":
    main()
