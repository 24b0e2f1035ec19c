"""The gateway benchmark's Open Inference Protocol legs: HTTP JSON, HTTP binary and gRPC.

All three call `POST /v2/models/bench/infer` (gRPC: `ModelInfer` of model `bench`) on the same
`modelyard serve`, whose version `bench` is a BentoML-protocol endpoint: the fixed-response
nginx of the other legs, answering `{"predictions":[0]}`. So each request is translated by the
gateway from OIP to BentoML JSON (`{"input_series": [[...], ...]}` to `/predict`) and the answer
back to OIP (one INT64 output `predictions` of shape [1]): the legs measure the gateway's OIP
fronts and their translation, not an upstream's. The tensor is the one the other legs send: 3
iris rows, FP32 [3, 4].

- http_json:   wrk, the OIP JSON request (`data` a flat list), a JSON answer;
- http_binary: wrk, the binary tensor extension both ways, as tritonclient sends by default:
  `Inference-Header-Content-Length`, the input as 48 raw bytes (`binary_data_size`) and
  `binary_data_output: true`;
- grpc:        h2load (nghttp2's HTTP/2 load generator, C like wrk; Debian's nghttp2-client),
  POSTing one gRPC frame (a serialized `ModelInferRequest`, `raw_input_contents` as tritonclient
  sends) to `/inference.GRPCInferenceService/ModelInfer` with `content-type: application/grpc`,
  one stream per connection, as many connections as wrk's. No gRPC load generator is packaged
  (`ghz` is neither in Debian nor on PyPI; on npm `ghz` is an empty 0.0.0 name), and a Python client
  would cost more CPU per call than the server. h2load cannot read a gRPC status (it travels in
  trailers), so each run is checked otherwise: every answer is HTTP 200 and the DATA bytes add up
  to one whole answer message per request (a gRPC error has no message), and one call with a
  real gRPC client (grpcio) before the runs must decode to the expected answer.

p50 and p99 of h2load come from its per-request log (`--log-file`), wrk's from `--latency`.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from gateway.grpc import grpc_predict_v2_pb2 as pb
from loadtests.benchkit import (
    WRK_GRACE_S,
    BenchError,
    NoRequestCompleted,
    Pinning,
    Tools,
    WrkResult,
    interleaved,
    say,
    wrk,
)

LEGS: Final = ("http_json", "http_binary", "grpc")
PACKAGE: Final = "nghttp2-client"  # Debian: h2load
INPUT: Final = "input_series"
ROWS: Final = ((5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3), (5.9, 3.0, 4.2, 1.5))
GRPC_METHOD: Final = "/inference.GRPCInferenceService/ModelInfer"
REQUEST_ID: Final = "bench-0001"


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def _flat() -> list[float]:
    return [value for row in ROWS for value in row]


def _input_header(binary: bool) -> dict[str, object]:
    tensor: dict[str, object] = {"name": INPUT, "shape": [len(ROWS), 4], "datatype": "FP32"}
    if binary:
        tensor["parameters"] = {"binary_data_size": 4 * len(_flat())}
    else:
        tensor["data"] = _flat()
    return tensor


def json_body() -> str:
    """The OIP JSON request: one FP32 [3, 4] input, its data a flat list."""
    return json.dumps({"id": REQUEST_ID, "inputs": [_input_header(binary=False)]})


def binary_body() -> tuple[bytes, int]:
    """The binary extension's request (the JSON, then the tensor's raw little-endian bytes) and
    the JSON's length (the `Inference-Header-Content-Length`)."""
    header = json.dumps(
        {
            "id": REQUEST_ID,
            "inputs": [_input_header(binary=True)],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + struct.pack(f"<{len(_flat())}f", *_flat()), len(header)


def grpc_request(model: str) -> bytes:
    """A serialized `ModelInferRequest`, the tensor in `raw_input_contents`."""
    message = pb.ModelInferRequest(
        model_name=model,
        id=REQUEST_ID,
        inputs=[pb.ModelInferRequest.InferInputTensor(name=INPUT, datatype="FP32", shape=[3, 4])],
        raw_input_contents=[struct.pack(f"<{len(_flat())}f", *_flat())],
    )
    return message.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def lua_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """POST `body` (any bytes: each written as a Lua decimal escape) with `headers`."""
    escaped = "".join(f"\\{byte}" for byte in body)
    lines = ["-- written by loadtests/oip_legs.py", 'wrk.method = "POST"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    lines.append(f'wrk.body = "{escaped}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def wrk_scripts(work: Path) -> dict[str, Path]:
    """The wrk scripts of the two HTTP legs."""
    body, length = binary_body()
    return {
        "http_json": lua_script(
            work / "oip-json.lua", json_body().encode(), {"Content-Type": "application/json"}
        ),
        "http_binary": lua_script(
            work / "oip-binary.lua",
            body,
            {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(length),
            },
        ),
    }


# --- gRPC: one real call, then h2load -------------------------------------------------------


def check_grpc(target: str, model: str) -> int:
    """One `ModelInfer` with grpcio; the answer must be the fixed upstream's, translated.
    Returns the answer's size on the wire (a gRPC frame: 5 bytes and the message)."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(GRPC_METHOD, None, None)  # bytes in, bytes out
        try:
            answer = call(grpc_request(model), timeout=10.0)
        except grpc.RpcError as exc:
            raise BenchError(f"gRPC ModelInfer on {target} failed: {exc}") from exc
    message = pb.ModelInferResponse.FromString(answer)
    outputs = [(o.name, o.datatype, list(o.shape)) for o in message.outputs]
    raw = list(message.raw_output_contents)
    if (
        not message.model_version
        or outputs != [("predictions", "INT64", [1])]
        or raw != [struct.pack("<q", 0)]
    ):
        raise BenchError(f"gRPC ModelInfer answered {message}, not the upstream's prediction")
    return 5 + len(answer)


def find_h2load() -> str | None:
    return shutil.which("h2load")


@dataclass(frozen=True)
class H2Target:
    h2load: str
    url: str  # http://host:port of the gRPC server
    frame: Path  # the request, one gRPC frame
    answer_bytes: int  # one whole answer on the wire (check_grpc)


_FINISHED: Final = re.compile(r"^finished in [\d.]+\w*s, ([\d.]+) req/s", re.M)
_REQUESTS: Final = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed,"
    r" (\d+) errored, (\d+) timeout",
    re.M,
)
_STATUS: Final = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.M)
_DATA: Final = re.compile(r"^traffic: .*?, [\d.]+\w*B \((\d+)\) data", re.M)


def parse_h2load(output: str, durations_us: list[int], answer_bytes: int) -> WrkResult:
    """req/s from h2load's summary, p50/p99 from its per-request log; failures raise."""
    finished, requests = _FINISHED.search(output), _REQUESTS.search(output)
    status, data = _STATUS.search(output), _DATA.search(output)
    if finished is None or requests is None or status is None or data is None:
        raise BenchError(f"could not read h2load's output:\n{output}")
    done, succeeded = int(requests.group(3)), int(requests.group(4))
    failed, errored, timeout = (int(requests.group(i)) for i in (5, 6, 7))
    if done == 0 and not (failed or errored or timeout):
        raise NoRequestCompleted(f"h2load completed no request:\n{output}")
    if done == 0 or failed or errored or timeout or int(status.group(1)) != done:
        raise BenchError(f"h2load counted failures:\n{output}")
    if int(data.group(1)) < succeeded * answer_bytes:  # a gRPC error carries no message
        raise BenchError(
            f"h2load read {data.group(1)} bytes of data for {succeeded} answers of"
            f" {answer_bytes} bytes: some were gRPC errors\n{output}"
        )
    if not durations_us:
        raise BenchError(f"h2load logged no request:\n{output}")
    cuts = statistics.quantiles(durations_us, n=100, method="inclusive")
    return WrkResult(done, float(finished.group(1)), cuts[49] / 1e3, cuts[98] / 1e3)


def h2load(target: H2Target, pin: Pinning, log: Path, connections: int, seconds: int) -> WrkResult:
    """One h2load run on the client CPU: `connections` connections, one stream each, for
    `seconds` (no warm-up of its own: like wrk's, the leg's warm-up is a run before). A run in
    which no request finished is run once more, five times as long (as `benchkit.wrk`)."""
    try:
        return _h2load_once(target, pin, log, connections, seconds)
    except NoRequestCompleted:
        say(f"{target.url}: no request finished in {seconds} s; once more for {5 * seconds} s")
        return _h2load_once(target, pin, log, connections, 5 * seconds)


def _h2load_once(
    target: H2Target, pin: Pinning, log: Path, connections: int, seconds: int
) -> WrkResult:
    command = pin.client_command(
        [
            target.h2load,
            "-t1",
            f"-c{connections}",
            "-m1",
            f"-D{seconds}",
            "-d",
            str(target.frame),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log}",
            target.url + GRPC_METHOD,
        ]
    )
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"h2load against {target.url} ran too long") from exc
    if done.returncode != 0:
        raise BenchError(f"h2load exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    durations = []
    for line in log.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] == "200":
            durations.append(int(fields[2]))
    try:
        return parse_h2load(done.stdout, durations, target.answer_bytes)
    except NoRequestCompleted as exc:
        raise NoRequestCompleted(f"gRPC {target.url}, {connections} connections: {exc}") from exc
    except BenchError as exc:
        raise BenchError(f"gRPC {target.url}, {connections} connections: {exc}") from exc


# --- the run --------------------------------------------------------------------------------


def measure(
    tools: Tools,
    pin: Pinning,
    http_url: str,
    grpc_target: H2Target | None,
    work: Path,
    plan: tuple[tuple[int, ...], int, int, int, int],
) -> dict[str, dict[str, Any]]:
    """Every leg warmed up, then for each concurrency every leg in turn, round after round
    (as the other legs are measured). `plan`: (concurrencies, seconds a round, warm-up
    seconds, wrk threads, rounds). A leg that fails gets {"error": ...} and is not measured
    again; the others go on."""
    concurrencies, seconds, warmup_s, threads, rounds = plan
    scripts = wrk_scripts(work)
    live = [leg for leg in LEGS if leg != "grpc" or grpc_target is not None]

    def run(leg: str, connections: int, duration: int) -> WrkResult:
        if leg == "grpc":
            assert grpc_target is not None
            log = work / f"h2load-c{connections}.log"
            return h2load(grpc_target, pin, log, connections, duration)
        return wrk(tools, pin, http_url, scripts[leg], connections, duration, threads)

    runs = interleaved(live, run, concurrencies, seconds, warmup_s, prefix="oip ", rounds=rounds)
    return {leg: runs.get(leg, {}) for leg in LEGS}
