"""KServe v2 gRPC (``inference.GRPCInferenceService``, protocols.md §2.7, §2.8) over the same
inference service as REST: ``raw_input_contents`` or typed ``contents`` in,
``raw_output_contents`` out (tritonclient can read nothing else for numbers), errors as gRPC
status codes; Triton's bidirectional ``ModelStreamInfer`` answers each request of the stream,
an error as the response's ``error_message``.

Authentication as on REST (``auth.mode``): the ``authorization`` metadata carries
``Bearer <token>`` (an HMAC signature cannot cover a gRPC message, so it is refused);
``ServerLive`` and ``ServerReady`` are public, like REST's health.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final

import grpc

from ai.backend.common import tensors
from ai.backend.common.auth.hmac_signing import SignedParts
from ai.backend.common.errors import BackendError
from ai.backend.common.tensors import TensorError

from ...errors import InferenceFailed, InvalidArgument, Unauthorized
from ...services.inference import EXTENSIONS, SERVER_NAME
from ...services.kserve_codec import (
    BINARY_DATA_SIZE,
    BadModelResponse,
    parse_request_object,
    response_outputs,
    split_outputs,
)
from ..context import GatewayContext
from ..kserve import PLATFORM
from . import grpc_predict_v2_pb2 as pb
from . import grpc_predict_v2_pb2_grpc as pb_grpc

MAX_MESSAGE: Final = 64 * 1024 * 1024
# typed contents field of each datatype (FP16, BF16: raw contents only)
CONTENTS_FIELDS: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
STATUS_BY_HTTP: Final = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def parameter_value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def set_parameter(parameter: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


def request_object(request: pb.ModelInferRequest) -> tuple[dict[str, Any], bytes]:
    """The v2 request object of a gRPC request, and the binary data its inputs refer to (raw
    contents, and typed ``BYTES`` contents in their binary layout)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    inputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for index, tensor in enumerate(request.inputs):
        parameters = {k: parameter_value(v) for k, v in tensor.parameters.items()}
        parameters.pop(BINARY_DATA_SIZE, None)  # kserve's client sends it over gRPC too
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
            "parameters": parameters,
        }
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(f"input {tensor.name!r}: both raw and typed contents")
            blob = raw[index]
        else:
            field = CONTENTS_FIELDS.get(tensor.datatype)
            if field is None:
                raise InvalidArgument(
                    f"input {tensor.name!r}: {tensor.datatype} data must be sent as raw contents"
                )
            values = list(getattr(tensor.contents, field))
            if tensor.datatype != tensors.BYTES:
                entry["data"] = values
                inputs.append(entry)
                continue
            blob = tensors.pack(tensors.BYTES, values)
        entry["parameters"] = {**parameters, BINARY_DATA_SIZE: len(blob)}
        blobs.append(blob)
        inputs.append(entry)
    outputs = [
        {"name": o.name, "parameters": {k: parameter_value(v) for k, v in o.parameters.items()}}
        for o in request.outputs
    ]
    body: dict[str, Any] = {
        "inputs": inputs,
        "parameters": {k: parameter_value(v) for k, v in request.parameters.items()},
    }
    if request.id:
        body["id"] = request.id
    if outputs:
        body["outputs"] = outputs
    return body, b"".join(blobs)


def grpc_status(error: BackendError) -> grpc.StatusCode:
    return STATUS_BY_HTTP.get(error.http_status, grpc.StatusCode.INTERNAL)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, ctx: GatewayContext) -> None:
        self._ctx = ctx
        self._inference = ctx.inference

    async def _authenticate(self, context: grpc.aio.ServicerContext, method: str) -> None:
        """Abort the call unless its ``authorization`` metadata is accepted."""
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        parts = SignedParts(
            "POST", f"/inference.GRPCInferenceService/{method}", "", "", "", "", b""
        )
        try:
            if authorization and not authorization.lower().startswith("bearer "):
                raise Unauthorized("gRPC calls authenticate with 'Bearer <token>'")
            await self._ctx.auth.authenticate(
                authorization=authorization, parts=parts, now=datetime.now(UTC)
            )
        except BackendError as e:
            await context.abort(grpc_status(e), e.message)

    async def ServerLive(  # noqa: N802 - the RPC's name
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._inference.ready)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        await self._authenticate(context, "ServerMetadata")
        return pb.ServerMetadataResponse(
            name=SERVER_NAME, version=self._ctx.version, extensions=list(EXTENSIONS)
        )

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        await self._authenticate(context, "ModelReady")
        try:
            await self._inference.model(request.name, request.version or None)
        except BackendError as e:
            await context.abort(grpc_status(e), e.message)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        await self._authenticate(context, "ModelMetadata")
        try:
            model = await self._inference.model(request.name, request.version or None)
        except BackendError as e:
            await context.abort(grpc_status(e), e.message)
        versions = [m.version for m in self._inference.registry.versions(model.name)]
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=versions or [model.version],
            platform=PLATFORM,
            inputs=[tensor(**_metadata(t)) for t in model.inputs],
            outputs=[tensor(**_metadata(t)) for t in model.outputs],
        )

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        await self._authenticate(context, "ModelInfer")
        try:
            return await self.infer(request)
        except BackendError as e:
            await context.abort(grpc_status(e), e.message)
            raise  # abort raises; this line is never reached

    async def ModelStreamInfer(  # noqa: N802
        self,
        requests: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        await self._authenticate(context, "ModelStreamInfer")
        async for request in requests:
            try:
                response = await self.infer(request)
            except BackendError as e:
                yield pb.ModelStreamInferResponse(error_message=e.message)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)

    async def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        version = request.model_version or None
        await self._inference.model(request.model_name, version)
        try:
            body, binary = request_object(request)
        except TensorError as e:
            raise InvalidArgument(str(e)) from None
        call = parse_request_object(body, binary)
        outcome = await self._inference.infer(request.model_name, version, call.payload)
        try:
            outputs = split_outputs(response_outputs(outcome.result, call.outputs))
        except BadModelResponse as e:
            raise InferenceFailed(f"model {request.model_name}: {e}") from None
        response = pb.ModelInferResponse(
            model_name=outcome.model.name,
            model_version=outcome.model.version,
            id=call.request_id if call.request_id is not None else outcome.request_id,
        )
        result_parameters = outcome.result.get("parameters")
        if isinstance(result_parameters, dict):
            for key, value in result_parameters.items():
                set_parameter(response.parameters[key], value)
        for metadata, raw in outputs:
            tensor = response.outputs.add(
                name=metadata["name"], datatype=metadata["datatype"], shape=metadata["shape"]
            )
            for key, value in metadata["parameters"].items():
                set_parameter(tensor.parameters[key], value)
            response.raw_output_contents.append(raw)
        return response


def _metadata(tensor: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(tensor.get("name", "")),
        "datatype": str(tensor.get("datatype", "")),
        "shape": [int(d) for d in tensor.get("shape") or []],
    }


async def start_grpc_server(ctx: GatewayContext, host: str, port: int) -> grpc.aio.Server:
    """Serve ``inference.GRPCInferenceService`` on ``host:port`` (insecure); stop it with
    ``await server.stop(grace)``."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    server = grpc.aio.server(options=options)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(ctx), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
