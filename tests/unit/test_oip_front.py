"""The gateway's OIP calls through the whole front over a MockTransport (no socket): server
metadata, versions that are not served (404 with OIP's `error` everywhere), model metadata
from the API's declared tensors, and the binary tensor data extension both ways."""

from __future__ import annotations

import array
import json
from typing import Any

import msgspec
import pytest

from contract.routes import ApiSpec, ModelRoute, RouteTable, TensorSpec, VersionRoute
from contract.traffic import TrafficPolicy
from gateway.transport import UpstreamRequest, UpstreamResponse
from tests.unit.test_gateway_front import gateway

IRIS_API = ApiSpec(
    "classify",
    ["input_series"],
    [TensorSpec("input_series", "FP64", [-1, 4])],
    [TensorSpec("predictions", "INT64", [-1])],
)
V1 = VersionRoute(1, "http://v1:3000", "bentoml", [IRIS_API])
V2 = VersionRoute(2, "http://v2:3000", "oip")  # speaks OIP itself; nothing declared
ANSWER = UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"predictions":[0,2]}')
LENGTH = b"inference-header-content-length"


def table() -> RouteTable:
    iris = ModelRoute("iris", 1, {1: V1, 2: V2}, {}, TrafficPolicy())
    return RouteTable(7, {"iris": iris})


def answer(request: UpstreamRequest) -> UpstreamResponse:
    return ANSWER


def rows(data: Any = None, **extra: Any) -> dict[str, Any]:
    flat = [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3] if data is None else data
    return {"name": "input_series", "shape": [2, 4], "datatype": "FP64", "data": flat, **extra}


async def test_server_metadata_names_modelyard_and_the_binary_extension() -> None:
    gw, _ = gateway(answer, table())
    reply = await gw.handle("GET", "/v2", [], b"")
    got = json.loads(reply.body)
    assert reply.status == 200 and got["name"] == "modelyard" and got["version"]
    assert got["extensions"] == ["binary_tensor_data"]
    refused = await gw.handle("POST", "/v2", [], b"")
    assert refused.status == 404 and "error" in json.loads(refused.body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/iris/versions/999"),
        ("GET", "/v2/models/iris/versions/999/ready"),
        ("POST", "/v2/models/iris/versions/999/infer"),
        ("GET", "/v2/models/wine"),
        ("GET", "/v2/models/wine/ready"),
        ("POST", "/v2/models/wine/infer"),
    ],
)
async def test_a_model_or_version_not_served_is_a_404_with_an_error(method: str, path: str) -> None:
    gw, transport = gateway(answer, table())
    body = msgspec.json.encode({"inputs": [rows()]})
    reply = await gw.handle(method, path, [], body)
    assert reply.status == 404, reply.body
    error = json.loads(reply.body)["error"]
    assert ("999" in error) if "999" in path else ("wine" in error)
    assert transport.requests == []


async def test_a_version_not_served_is_a_404_before_the_body_is_read() -> None:
    gw, _ = gateway(answer, table())
    reply = await gw.handle("POST", "/v2/models/iris/versions/999/infer", [], b"{not json")
    assert reply.status == 404 and "999" in json.loads(reply.body)["error"]


async def test_a_version_pinned_by_header_that_is_not_served_is_a_404() -> None:
    gw, transport = gateway(answer, table())
    body = msgspec.json.encode({"inputs": [rows()]})
    reply = await gw.handle("POST", "/v2/models/iris/infer", [(b"x-modelyard-version", b"9")], body)
    assert reply.status == 404 and "9" in json.loads(reply.body)["error"]
    assert transport.requests == []


async def test_model_metadata_is_what_the_api_declares() -> None:
    gw, _ = gateway(answer, table())
    got = json.loads((await gw.handle("GET", "/v2/models/iris", [], b"")).body)
    assert got == {
        "name": "iris",
        "versions": ["1", "2"],
        "platform": "bentoml",
        "inputs": [{"name": "input_series", "datatype": "FP64", "shape": [-1, 4]}],
        "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [-1]}],
    }
    v2 = json.loads((await gw.handle("GET", "/v2/models/iris/versions/2", [], b"")).body)
    assert v2["versions"] == ["2"] and v2["platform"] == "oip"
    assert v2["inputs"] == [] and v2["outputs"] == []  # nothing known of it


async def test_infer_refuses_what_the_metadata_does_not_say_before_any_upstream() -> None:
    gw, transport = gateway(answer, table())
    wrong = rows([1.0] * 6, shape=[2, 3])
    reply = await gw.handle(
        "POST", "/v2/models/iris/infer", [], msgspec.json.encode({"inputs": [wrong]})
    )
    assert reply.status == 400
    got = json.loads(reply.body)
    assert got["field"] == "inputs[0].shape" and "[-1, 4]" in got["error"]
    assert transport.requests == []


async def test_binary_tensors_in_and_out_through_the_front() -> None:
    gw, transport = gateway(answer, table())
    data = array.array("d", [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]).tobytes()
    tensor = rows(None, parameters={"binary_data_size": len(data)})
    del tensor["data"]
    header = msgspec.json.encode({"inputs": [tensor], "parameters": {"binary_data_output": True}})
    headers = [(LENGTH, str(len(header)).encode())]
    reply = await gw.handle("POST", "/v2/models/iris/infer", headers, header + data)
    assert reply.status == 200, reply.body
    (sent,) = transport.requests
    assert json.loads(sent.body) == {"input_series": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}
    replied = dict(reply.headers)
    length = int(replied[LENGTH])
    assert replied[b"content-type"] == b"application/octet-stream"
    (output,) = json.loads(reply.body[:length])["outputs"]
    assert output == {
        "name": "predictions",
        "shape": [2],
        "datatype": "INT64",
        "parameters": {"binary_data_size": 16},
    }
    assert array.array("q", reply.body[length:]).tolist() == [0, 2]


async def test_a_bad_header_length_is_a_400_naming_it() -> None:
    gw, _ = gateway(answer, table())
    body = msgspec.json.encode({"inputs": [rows()]})
    for value in (b"x", b"-3", b"99999999"):
        reply = await gw.handle("POST", "/v2/models/iris/infer", [(LENGTH, value)], body)
        got = json.loads(reply.body)
        assert reply.status == 400 and got["field"] == "Inference-Header-Content-Length", got


async def test_an_oip_upstream_gets_the_binary_body_and_its_header_length_as_they_came() -> None:
    upstream_answer = UpstreamResponse(
        200, [(b"content-type", b"application/octet-stream"), (LENGTH, b"5")], b'{"a":1}\x01\x02'
    )
    gw, transport = gateway(lambda request: upstream_answer, table())
    tensor = {"name": "x", "shape": [1], "datatype": "INT8", "parameters": {"binary_data_size": 1}}
    header = msgspec.json.encode({"inputs": [tensor]})
    headers = [(LENGTH, str(len(header)).encode())]
    reply = await gw.handle("POST", "/v2/models/iris/versions/2/infer", headers, header + b"\x07")
    (sent,) = transport.requests
    assert sent.body == header + b"\x07" and sent.path == b"/v2/models/iris/infer"
    assert dict(sent.headers)[LENGTH] == str(len(header)).encode()
    assert reply.body == upstream_answer.body and dict(reply.headers)[LENGTH] == b"5"


async def test_readiness_that_is_not_there_says_so_in_error() -> None:
    gw, _ = gateway(answer, table())
    gw.follower.table = None
    reply = await gw.handle("GET", "/v2/health/ready", [], b"")
    assert reply.status == 503 and "error" in json.loads(reply.body)
    nostable = RouteTable(8, {"iris": ModelRoute("iris", None, {2: V2}, {}, TrafficPolicy())})
    gw.follower.table = nostable
    reply = await gw.handle("GET", "/v2/models/iris/ready", [], b"")
    assert reply.status == 503 and "error" in json.loads(reply.body)
