"""Calls a running `maas serve` with NVIDIA's tritonclient[http], in JSON mode and in the default
binary mode, and checks the seed model's predictions against PyTorch's reference outputs.

Usage: python triton_client.py HOST:PORT MODEL REFERENCE_JSON
Exits non-zero (with the reason) on any mismatch.
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main() -> None:
    url, model, reference_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(reference_path) as f:
        reference = json.load(f)
    inputs = np.asarray(reference["inputs"], dtype=np.float32)
    expected = np.asarray(reference["outputs"], dtype=np.float32).reshape(-1, 1)

    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(model), "model not ready"
    metadata = client.get_model_metadata(model)
    assert metadata["inputs"][0]["shape"] == [-1, 1000], metadata

    for binary in (False, True):
        tensor = httpclient.InferInput("input", list(inputs.shape), "FP32")
        tensor.set_data_from_numpy(inputs, binary_data=binary)
        wanted = httpclient.InferRequestedOutput("output", binary_data=binary)
        result = client.infer(model, inputs=[tensor], outputs=[wanted], request_id="triton-1")
        got = result.as_numpy("output")
        assert got is not None, f"no output (binary={binary})"
        assert got.shape == (8, 1), got.shape
        worst = float(np.max(np.abs(got - expected)))
        assert worst <= 1e-4, f"binary={binary}: max difference {worst}"
        response = result.get_response()
        assert response["id"] == "triton-1", response
        assert response["model_version"] == "1", response
        print(f"binary_data={binary}: 8 rows, max |maas - PyTorch| = {worst:.2e}")


if __name__ == "__main__":
    main()
