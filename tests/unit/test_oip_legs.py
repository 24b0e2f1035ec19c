"""The gateway benchmark's OIP legs (loadtests/oip_legs.py): pure parts. The bodies are the
ones the gateway's own decoders accept, the wrk script carries any bytes unchanged, and h2load's
output is read, or refused when it hides failures."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.oip import decode_request
from loadtests import oip_legs
from loadtests.benchkit import BenchError

FLAT = [value for row in oip_legs.ROWS for value in row]

H2LOAD = """\
finished in 1.00s, 2000.00 req/s, 440.00KB/s
requests: 2000 total, 2001 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 450.00KB (460800) total, 100.00KB (102400) headers (space savings 90.00%), {data} data
"""


def test_the_json_and_binary_bodies_decode_to_the_same_tensor() -> None:
    as_json = decode_request(oip_legs.json_body().encode())
    body, header_length = oip_legs.binary_body()
    as_binary = decode_request(body, header_length)
    for request in (as_json, as_binary):
        (tensor,) = request.inputs
        assert (tensor.name, tensor.datatype, tensor.shape) == (oip_legs.INPUT, "FP32", [3, 4])
        assert tensor.data == pytest.approx(FLAT)
    assert len(body) == header_length + 4 * len(FLAT)


def test_the_grpc_frame_holds_one_infer_request() -> None:
    frame = oip_legs.grpc_frame(oip_legs.grpc_request("bench"))
    assert frame[0] == 0 and struct.unpack(">I", frame[1:5])[0] == len(frame) - 5
    message = pb.ModelInferRequest.FromString(frame[5:])
    assert message.model_name == "bench" and list(message.inputs[0].shape) == [3, 4]
    assert list(struct.unpack("<12f", message.raw_input_contents[0])) == pytest.approx(FLAT)


def test_the_wrk_script_carries_every_byte(tmp_path: Path) -> None:
    body = bytes(range(256)) + b']==]"\\\r\n'
    script = oip_legs.lua_script(tmp_path / "s.lua", body, {"X-Length": "7"}).read_text()
    assert 'wrk.headers["X-Length"] = "7"' in script
    found = re.search(r'^wrk\.body = "(.*)"$', script, re.M)
    assert found is not None
    assert bytes(int(n) for n in found.group(1).split("\\")[1:]) == body


def test_h2load_figures_and_percentiles() -> None:
    durations = list(range(1, 2001))  # µs
    result = oip_legs.parse_h2load(H2LOAD.format(data="40.00KB (40000)"), durations, 20)
    assert (result.requests, result.rps) == (2000, 2000.0)
    assert result.p50_ms == pytest.approx(1.0, abs=0.002)
    assert result.p99_ms == pytest.approx(1.98, abs=0.002)


def test_h2load_answers_without_a_message_are_grpc_errors() -> None:
    with pytest.raises(BenchError, match="gRPC errors"):
        oip_legs.parse_h2load(H2LOAD.format(data="39.00KB (39980)"), [100] * 2000, 20)


def test_h2load_failures_and_unreadable_output_raise() -> None:
    failed = H2LOAD.replace("0 failed", "3 failed").format(data="40.00KB (40000)")
    with pytest.raises(BenchError, match="failures"):
        oip_legs.parse_h2load(failed, [100] * 2000, 20)
    with pytest.raises(BenchError, match="could not read"):
        oip_legs.parse_h2load("nothing", [100], 20)
    with pytest.raises(BenchError, match="logged no request"):
        oip_legs.parse_h2load(H2LOAD.format(data="40.00KB (40000)"), [], 20)
