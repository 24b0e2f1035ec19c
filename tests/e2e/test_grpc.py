"""The gateway's gRPC front (KServe v2 GRPCInferenceService) driven by Triton's own client,
`tritonclient.grpc`, at its default settings, against `modelyard serve` in front of a real
`bentoml serve` of the iris example and of a cheap fixed OIP upstream (for the 10,000-request
split: the routing is the gateway's, the upstream only has to answer)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Final

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from adapters.net import free_port
from gateway.grpc import grpc_predict_v2_pb2 as pb
from modelyard.processes import ModelyardProcess
from tests.e2e.bento import V1, BentoServer, make_bento_home, serve
from tests.http_threads import serving

pytestmark = pytest.mark.e2e

TOKEN: Final = "grpc-e2e-admin-token-0123456789"
ROWS: Final = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]  # a setosa, a virginica
APIS: Final = [{"name": "classify", "inputs": ["input_series"]}]
MAX_MESSAGE: Final = 256 * 1024  # the gateway's body limit here, and so its gRPC message limit
FIXED_ANSWER: Final = json.dumps(
    {
        "model_name": "echo",
        "outputs": [{"name": "y", "shape": [1], "datatype": "FP64", "data": [1]}],
    }
).encode()
FIXED_HEAD: Final = (
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    f"content-length: {len(FIXED_ANSWER)}\r\n\r\n"
).encode()
REQUESTS: Final = 10_000
USERS: Final = 1_000
THREADS: Final = 4


class FixedOip(BaseHTTPRequestHandler):
    """An OIP model server that answers every inference with the same small tensor, in one
    write (headers and body apart would meet Nagle and delayed ACKs: 40 ms a request)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.wfile.write(FIXED_HEAD + FIXED_ANSWER)

    def do_GET(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def iris(
    iris_bentos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BentoServer]:
    home = make_bento_home(iris_bentos, tmp_path_factory.mktemp("home"))
    with serve(home, V1, tmp_path_factory.mktemp("logs"), {}) as server:
        yield server


@pytest.fixture(scope="module")
def fixed() -> Iterator[str]:
    with serving(FixedOip) as url:
        yield url


@pytest.fixture(scope="module")
def yard(
    iris: BentoServer, fixed: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelyardProcess]:
    """`modelyard serve` with gRPC: iris v1 (the BentoML server, Production); echo v1 and v2
    (the fixed OIP upstream; v1 Production, v2 Staging)."""
    proc = ModelyardProcess(
        "serve",
        tmp_path_factory.mktemp("yard"),
        TOKEN,
        grpc_port=free_port(),
        extra_env={"MODELYARD_GATEWAY_MAX_BODY_BYTES": str(MAX_MESSAGE)},
    )
    proc.start()
    try:
        with api(proc) as c:
            for name in ("iris", "echo"):
                assert c.post("/models", json={"name": name}).status_code == 201
            for name, body in (
                ("iris", {"endpoint": iris.url, "apis": APIS}),
                ("echo", {"endpoint": fixed, "format": "oip"}),
                ("echo", {"endpoint": fixed, "format": "oip"}),
            ):
                assert c.post(f"/models/{name}/versions", json=body).status_code == 201
            for name, version, stage in (("iris", 1, "Production"), ("echo", 1, "Production")):
                r = c.post(f"/models/{name}/versions/{version}/stage", json={"stage": stage})
                assert r.is_success, r.text
            r = c.post("/models/echo/versions/2/stage", json={"stage": "Staging"})
            assert r.is_success, r.text
        set_traffic(proc, "echo", {})
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(yard: ModelyardProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(yard.grpc_target) as c:  # its defaults
        yield c


def api(proc: ModelyardProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{proc.url}/api/v1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


def set_traffic(proc: ModelyardProcess, model: str, policy: dict[str, Any]) -> None:
    """Apply a policy and wait until the gateway serves its route revision."""
    with api(proc) as c:
        assert c.put(f"/models/{model}/traffic", json=policy).status_code == 200, policy
        revision = c.get("/routes").json()["revision"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if httpx.get(f"{proc.url}/v2/health/ready").json()["revision"] >= revision:
            return
        time.sleep(0.01)
    pytest.fail(f"the gateway never reached route revision {revision}")


def tensor(datatype: str, rows: list[list[float]], numpy_type: str) -> triton.InferInput:
    found = triton.InferInput("input_series", [len(rows), len(rows[0])], datatype)
    found.set_data_from_numpy(np.array(rows, dtype=numpy_type))
    return found


def refused(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def metric(proc: ModelyardProcess, name: str, **labels: str) -> float:
    text = httpx.get(f"{proc.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return 0.0


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "modelyard" and metadata.version
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")


def test_model_metadata_names_what_infer_takes(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("iris")
    assert (metadata.name, list(metadata.versions)) == ("iris", ["1"])
    names = [t.name for t in metadata.inputs]
    assert names == ["input_series"]
    inputs = [tensor("FP64", ROWS, "float64")]
    assert [t.name() for t in inputs] == names
    assert client.infer("iris", inputs).as_numpy("predictions").tolist() == [0, 2]


@pytest.mark.parametrize(("datatype", "numpy_type"), [("FP64", "float64"), ("FP32", "float32")])
def test_inference_with_raw_tensors(
    client: triton.InferenceServerClient, datatype: str, numpy_type: str
) -> None:
    result = client.infer("iris", [tensor(datatype, ROWS, numpy_type)], request_id="r-1")
    assert result.as_numpy("predictions").tolist() == [0, 2]
    assert result.as_numpy("predictions").dtype == np.int64
    assert result.as_numpy("model_version").tolist() == b"v1"  # BentoML's own field, shape []
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "r-1")
    pinned = client.infer("iris", [tensor(datatype, ROWS, numpy_type)], model_version="1")
    assert pinned.get_response().model_version == "1"


def test_typed_contents_and_the_gateways_trailing_metadata(yard: ModelyardProcess) -> None:
    """The other way to send tensors (typed contents, not raw bytes), with grpcio's own stub;
    the answer's trailing metadata names what the HTTP headers name."""
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="input_series", datatype="FP64", shape=[2, 4])
    request.inputs[0].contents.fp64_contents.extend([x for row in ROWS for x in row])
    with grpc.insecure_channel(yard.grpc_target) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response, outcome = call.with_call(request, timeout=30)
    assert np.frombuffer(response.raw_output_contents[0], "<i8").tolist() == [0, 2]
    trailing = dict(outcome.trailing_metadata())
    assert trailing["x-modelyard-model"] == "iris"
    assert trailing["x-modelyard-version"] == "1"
    assert trailing["x-modelyard-variant"] == "stable"


def test_a_bad_shape_is_invalid_argument_with_the_models_message(
    client: triton.InferenceServerClient,
) -> None:
    three = [row[:3] for row in ROWS]
    error = refused(lambda: client.infer("iris", [tensor("FP64", three, "float64")]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    # the model's own refusal (iris declares input_series as shape (-1, 4)), passed on
    assert "input_series" in error.message() and "shape" in error.message(), error.message()
    wrong_name = triton.InferInput("features", [2, 4], "FP64")
    wrong_name.set_data_from_numpy(np.array(ROWS))
    error = refused(lambda: client.infer("iris", [wrong_name]))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert "missing input(s) 'input_series'" in error.message()


def test_unknown_models_and_versions_are_not_found(client: triton.InferenceServerClient) -> None:
    inputs = [tensor("FP64", ROWS, "float64")]
    for call in (
        lambda: client.infer("nope", inputs),
        lambda: client.infer("iris", inputs, model_version="999"),
        lambda: client.get_model_metadata("nope"),
        lambda: client.get_model_metadata("iris", "999"),
        lambda: client.is_model_ready("iris", "999"),
    ):
        error = refused(call)
        assert error.status() == "StatusCode.NOT_FOUND", error
        assert "nope" in error.message() or "999" in error.message()
    error = refused(lambda: client.infer("iris", inputs, model_version="latest"))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"


def test_a_message_over_the_limit_is_refused_before_it_is_read(
    client: triton.InferenceServerClient,
) -> None:
    rows = [[1.0] * 4] * (MAX_MESSAGE // 32 + 1)  # 32 bytes a row: just over the limit
    error = refused(lambda: client.infer("iris", [tensor("FP64", rows, "float64")]))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"


def served_versions(target: str, jobs: list[dict[str, str]]) -> list[str]:
    """The version that served each job's request (its metadata as gRPC metadata), on
    `THREADS` clients at once."""
    found: list[str] = [""] * len(jobs)
    x = triton.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([ROWS[0]], dtype=np.float32))
    local = threading.local()

    def one(index: int) -> None:
        if not hasattr(local, "client"):
            local.client = triton.InferenceServerClient(target)
        result = local.client.infer("echo", [x], headers=jobs[index])
        found[index] = result.get_response().model_version

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(len(jobs))))
    return found


def windows_until(proc: ModelyardProcess, since: str, total: int) -> dict[str, int]:
    """The gateway's windows of echo since `since`, once they hold `total` requests."""
    deadline = time.monotonic() + 60
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        with api(proc) as c:
            rows = c.get("/models/echo/windows", params={"since": since}).json()
        counts = {f"{r['version']}/{r['variant']}": r["requests"] for r in rows}
        if sum(counts.values()) >= total:
            return counts
        time.sleep(0.2)
    pytest.fail(f"windows never reached {total} requests: {counts}")


def test_a_canary_split_over_grpc_holds_its_weight_and_sticky_users_never_flip(
    yard: ModelyardProcess,
) -> None:
    since = datetime.now(UTC).isoformat()
    canary_requests = {"model": "echo", "version": "2", "variant": "canary"}
    before = metric(yard, "modelyard_gateway_requests_total", **canary_requests)
    policy = {
        "splits": [{"version": 2, "weight": 20}],
        "sticky": {"header": "x-user"},
        "rules": [{"header": "x-tier", "value": "gold", "version": 2}],
    }
    set_traffic(yard, "echo", policy)
    started = time.perf_counter()
    keyless = Counter(served_versions(yard.grpc_target, [{}] * REQUESTS))
    seconds = time.perf_counter() - started
    assert sum(keyless.values()) == REQUESTS
    assert abs(keyless["2"] / REQUESTS - 0.20) <= 0.02, keyless
    print(f"\n{REQUESTS} gRPC requests on {THREADS} clients: {seconds:.1f}s, {dict(keyless)}")

    jobs = [{"x-user": f"user-{i % USERS}"} for i in range(5 * USERS)]
    seen: dict[str, set[str]] = {}
    for job, version in zip(jobs, served_versions(yard.grpc_target, jobs), strict=True):
        seen.setdefault(job["x-user"], set()).add(version)
    flipped = [user for user, versions in seen.items() if len(versions) > 1]
    assert not flipped, flipped[:5]
    on_canary = sum(versions == {"2"} for versions in seen.values())
    assert abs(on_canary / USERS - 0.20) <= 0.04, on_canary  # a hash of 1,000 keys
    print(f"sticky: {on_canary} of {USERS} users on the canary, none flipped")

    assert set(served_versions(yard.grpc_target, [{"x-tier": "gold"}] * 50)) == {"2"}
    pinned = served_versions(yard.grpc_target, [{"x-modelyard-version": "1", "x-tier": "gold"}])
    assert pinned == ["1"]

    # measured, and reported to the registry, as HTTP traffic is
    total = REQUESTS + 5 * USERS + 51
    canary = keyless["2"] + 5 * on_canary
    after = metric(yard, "modelyard_gateway_requests_total", **canary_requests)
    assert after - before == canary
    counts = windows_until(yard, since, total)
    assert counts.get("2/canary") == canary, counts
    assert sum(counts.values()) == total, counts


def test_a_grpc_port_in_use_stops_the_start_naming_the_setting(tmp_path: Path) -> None:
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = ModelyardProcess("serve", tmp_path, TOKEN, grpc_port=port)
        try:
            with pytest.raises(RuntimeError, match="exited") as stopped:
                proc.start()
        finally:
            proc.stop()
    finally:
        taken.close()
    message = str(stopped.value)
    assert "grpc_port (MODELYARD_GRPC_PORT)" in message
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in message
