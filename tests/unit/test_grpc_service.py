"""The gRPC service over the whole gateway front and a MockTransport (no socket, no gRPC
server): what each method answers, what the upstream gets, and which gRPC code each failure
becomes."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from contract.routes import RouteTable
from contract.traffic import HeaderRule, TrafficPolicy
from gateway.errors import (
    BadRequest,
    ConnectFailed,
    GatewayError,
    NoHealthyUpstream,
    NoRouteTable,
    PayloadTooLarge,
    UnknownModel,
    UpstreamTimeout,
)
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.service import InferenceService, RpcError
from gateway.transport import UpstreamRequest, UpstreamResponse
from gateway.transport.base import Headers
from tests.unit.test_gateway_front import gateway, table

INVALID_ARGUMENT, NOT_FOUND, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED = 3, 5, 13, 14, 4
ANSWER = UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"label": [0, 1]}')


def service(handler: object = None, routes: RouteTable | None = None) -> InferenceService:
    gw, _ = gateway(handler or (lambda request: ANSWER), routes or table())
    return InferenceService(gw, "modelyard", "9.9")


def infer_request(version: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", model_version=version, id="r-1")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.raw_input_contents.append(np.array([1.5, 2.5], "<f4").tobytes())
    return request


async def infer(
    service: InferenceService, request: pb.ModelInferRequest, metadata: Headers
) -> tuple[pb.ModelInferResponse, Headers]:
    """`model_infer`'s answer (the serialized message, written straight from a BentoML
    model's answer) parsed as a client would."""
    message, said = await service.model_infer(request, metadata)
    return pb.ModelInferResponse.FromString(message), said


async def refused(service: InferenceService, request: pb.ModelInferRequest) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await service.model_infer(request, [])
    return caught.value


async def test_an_inference_reaches_the_bentoml_api_and_comes_back_as_raw_outputs() -> None:
    sent: list[UpstreamRequest] = []

    def upstream(request: UpstreamRequest) -> UpstreamResponse:
        sent.append(request)
        return ANSWER

    answer, said = await infer(service(upstream), infer_request("2"), [])
    (request,) = sent
    assert request.endpoint == "http://v2:3000" and request.path == b"/classify"
    assert msgspec.json.decode(request.body) == {"x": [1.5, 2.5]}
    assert (answer.model_name, answer.model_version, answer.id) == ("iris", "2", "r-1")
    (output,) = answer.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("label", "INT64", [2])
    assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [0, 1]
    assert dict(said) == {
        b"x-modelyard-model": b"iris",
        b"x-modelyard-version": b"2",
        b"x-modelyard-variant": b"pinned",
        b"x-modelyard-route-revision": b"41",
    }


async def test_metadata_is_read_as_headers_by_the_policys_rules() -> None:
    routes = table(TrafficPolicy(rules=[HeaderRule(header="x-tier", value="gold", version=2)]))
    grpc = service(routes=routes)
    answer, _ = await infer(grpc, infer_request(), [(b"x-tier", b"gold")])
    assert answer.model_version == "2"
    answer, _ = await infer(grpc, infer_request(), [(b"x-modelyard-version", b"2")])
    assert answer.model_version == "2"
    answer, _ = await infer(grpc, infer_request(), [])
    assert answer.model_version == "1"


@pytest.mark.parametrize(
    ("version", "code", "words"),
    [
        ("3", NOT_FOUND, "has no version 3 served here"),
        ("abc", INVALID_ARGUMENT, "version must be a positive number"),
    ],
)
async def test_a_version_not_served_is_not_found_and_a_bad_one_invalid(
    version: str, code: int, words: str
) -> None:
    error = await refused(service(), infer_request(version))
    assert error.code == code and words in error.message


async def test_without_a_route_table_every_model_call_is_unavailable() -> None:
    grpc = service(routes=table())
    grpc.gateway.follower.table = None
    error = await refused(grpc, infer_request())
    assert error.code == UNAVAILABLE and "no route table" in error.message
    with pytest.raises(RpcError) as caught:
        grpc.model_metadata(pb.ModelMetadataRequest(name="iris"))
    assert caught.value.code == UNAVAILABLE
    assert grpc.server_ready().ready is False
    assert grpc.server_live().live is True


async def test_upstream_answers_and_failures_become_grpc_codes() -> None:
    def failing(request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(500, [], b'{"error": "model exploded"}')

    error = await refused(service(failing), infer_request())
    assert error.code == INTERNAL and "version 1 answered 500" in error.message
    assert "model exploded" in error.message

    def refusing(request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(400, [], b"each row must hold 4 numbers")

    error = await refused(service(refusing), infer_request())
    assert error.code == INVALID_ARGUMENT and "each row must hold 4 numbers" in error.message

    def unreachable(request: UpstreamRequest) -> UpstreamResponse:
        raise ConnectFailed("connection refused")

    error = await refused(service(unreachable), infer_request())
    assert error.code == UNAVAILABLE


def test_metadata_and_readiness_of_a_model() -> None:
    grpc = service()
    found = grpc.model_metadata(pb.ModelMetadataRequest(name="iris"))
    assert (found.name, list(found.versions)) == ("iris", ["1", "2"])
    assert [t.name for t in found.inputs] == ["x"]
    assert grpc.model_ready(pb.ModelReadyRequest(name="iris", version="2")).ready is True
    with pytest.raises(RpcError) as caught:
        grpc.model_ready(pb.ModelReadyRequest(name="nope"))
    assert caught.value.code == NOT_FOUND and "nope" in caught.value.message
    metadata = grpc.server_metadata()
    assert (metadata.name, metadata.version, list(metadata.extensions)) == ("modelyard", "9.9", [])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BadRequest("x"), INVALID_ARGUMENT),
        (UnknownModel("x"), NOT_FOUND),
        (PayloadTooLarge("x"), 8),
        (NoRouteTable("x"), UNAVAILABLE),
        (NoHealthyUpstream("x"), UNAVAILABLE),
        (UpstreamTimeout("x"), DEADLINE_EXCEEDED),
        (ConnectFailed("x"), UNAVAILABLE),
    ],
)
def test_each_gateway_error_has_the_code_of_its_http_status(error: GatewayError, code: int) -> None:
    assert RpcError.of(error).code == code
    assert RpcError.of(error).message == "x"
