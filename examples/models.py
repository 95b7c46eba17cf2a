"""A KServe-style model registry served by one runtime (``examples.models:app``)."""

from __future__ import annotations

from dataclasses import dataclass

from ai.backend.runtime import App

app = App()


@dataclass
class ScaleRequest:
    values: list[float]
    factor: float = 2.0


@dataclass
class ScaleResponse:
    values: list[float]


@app.model(
    "scaler",
    version="1",
    inputs=[{"name": "values", "datatype": "FP32", "shape": [-1]}],
    outputs=[{"name": "values", "datatype": "FP32", "shape": [-1]}],
)
def scale(request: ScaleRequest) -> ScaleResponse:
    return ScaleResponse(values=[v * request.factor for v in request.values])


@app.model("scaler", version="2")
def scale_v2(request: ScaleRequest) -> ScaleResponse:
    return ScaleResponse(values=[v * request.factor * 10 for v in request.values])
