"""Infer with the ``echo`` model (``examples/kserve_echo.py``) through the gateway, with the
unmodified Triton clients: ``tritonclient.http`` (binary tensors, the client's default) and
``tritonclient.grpc`` (``raw_input_contents``):

    python examples/clients/triton_infer.py --http 127.0.0.1:8090 --grpc 127.0.0.1:8091

``BACKEND_GATEWAY_TOKEN`` (an API token, ``mgr token create``) goes in the Authorization header.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def headers() -> dict[str, str]:
    token = os.environ.get("BACKEND_GATEWAY_TOKEN")
    return {"authorization": f"Bearer {token}"} if token else {}


def infer_http(url: str, data: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url)
    print("http: server live", client.is_server_live(headers=headers()))
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)  # binary_data=True: the binary tensor extension
    result = client.infer("echo", [tensor], headers=headers())
    return result.as_numpy("INPUT0")


def infer_grpc(url: str, data: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    print("grpc: server live", client.is_server_live(headers=headers()))
    tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("echo", [tensor], headers=headers())
    return result.as_numpy("INPUT0")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", default="127.0.0.1:8090")
    parser.add_argument("--grpc", default="127.0.0.1:8091")
    options = parser.parse_args()
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    print("http echo:", infer_http(options.http, data).tolist())
    print("grpc echo:", infer_grpc(options.grpc, data).tolist())
