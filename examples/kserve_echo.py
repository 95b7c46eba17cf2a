"""A KServe v2 model that answers with its inputs (``examples.kserve_echo:app``): each input
comes back as the output of the same name, datatype, shape and data (a list, or binary data as
it came). Standard library only; ``async`` so that a call takes no hop to a worker thread (the
no-op model of the KServe benchmark). Deploy it with ``examples/specs/kserve-echo.yaml``."""

from __future__ import annotations

from ai.backend.runtime import App, InferOutput, InferRequest, InferResponse

app = App()


@app.model(
    "echo",
    version="1",
    inputs=[{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
    outputs=[{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
)
async def echo(request: InferRequest) -> InferResponse:
    outputs = [
        InferOutput(tensor.name, tensor.datatype, tensor.shape, tensor.data)
        for tensor in request.inputs
    ]
    return InferResponse(outputs=outputs, id=request.id)
