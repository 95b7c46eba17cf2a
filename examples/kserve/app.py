"""A KServe v2 (Open Inference Protocol) model: ``@app.model`` registers a function as model
``echo`` version ``1``, which answers with its inputs (each input comes back as the output of the
same name, datatype, shape and data). The replica announces its models when it starts; the
gateway then serves them at ``/v2/models/echo`` over REST (JSON or binary tensors) and gRPC::

    ./backend.ai actor apply -f examples/kserve/kserve-echo.yaml
    ./backend.ai model ls
    ./backend.ai model infer echo --input 'INPUT0:FP32:3:[1, 2, 3]'

or with the SDK's ``session.models.infer`` or any KServe / Triton client (docs/kserve.md). The
actor is also reachable as a tool (``tools.yaml``).

One ``App`` may register several models and versions; a request without a version goes to the
highest. ``tensor.data`` is a flat list, or ``bytes`` when the client sent binary tensors;
``tensor.as_numpy()`` gives an array when numpy is installed. Standard library only; ``async``
so that a call needs no worker thread.
"""

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
