"""The gRPC server of our own (gateway/grpc/server.py, h2conn) on a socket, in this test's event
loop, over the whole gateway front and a MockTransport upstream: a real `grpc.aio` client at its
defaults (64 calls at once on one channel, messages larger than the default flow-control
window), hostile bytes on raw sockets (each answered with the right GOAWAY, RST_STREAM or
status, and the server still answers a real call afterwards), `grpc-timeout` against a slow
upstream, and the gRPC spec's refusals."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import grpc
import hpack
import numpy as np
import pytest

from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc import h2conn
from gateway.grpc import h2frames as f
from gateway.grpc.server import running_grpc
from gateway.transport import UpstreamRequest, UpstreamResponse
from tests.unit.test_gateway_front import gateway, table

MAX_MESSAGE: Final = 1 << 20
METHOD: Final = "/inference.GRPCInferenceService/"
BIG: Final = 40_000  # elements: 160 KB FP32 in, 320 KB INT64 out; the default window is 64 KiB
READ_TIMEOUT_S: Final = 10.0

Frame = tuple[int, int, int, bytes]


class Upstream:
    """The model server: echoes the sum of `x` as `label`, or `size` labels; `hold` makes it
    wait for ever (a slow upstream)."""

    def __init__(self) -> None:
        self.hold = False
        self.never = asyncio.Event()

    async def __call__(self, request: UpstreamRequest) -> UpstreamResponse:
        if self.hold:
            await self.never.wait()
        data = json.loads(request.body)["x"]
        labels = list(range(len(data))) if len(data) > 100 else [int(sum(data))]
        body = json.dumps({"label": labels}).encode()
        return UpstreamResponse(200, [(b"content-type", b"application/json")], body)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def port(upstream: Upstream) -> AsyncIterator[int]:
    gw, _ = gateway(upstream, table(), max_inflight=256)
    async with running_grpc(
        gw, "127.0.0.1", 0, max_message=MAX_MESSAGE, name="modelyard", version="9.9"
    ) as bound:
        yield bound


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(h2conn, "HEAD_TIMEOUT_S", 0.3)
    yield


def infer_request(values: list[float]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", id="r-1")
    request.inputs.add(name="x", datatype="FP32", shape=[len(values)])
    request.raw_input_contents.append(np.array(values, "<f4").tobytes())
    return request


async def infer(channel: grpc.aio.Channel, values: list[float], **kwargs: Any) -> Any:
    call = channel.unary_unary(
        METHOD + "ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    return await call(infer_request(values), **kwargs)


async def still_serving(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        live = channel.unary_unary(
            METHOD + "ServerLive",
            request_serializer=pb.ServerLiveRequest.SerializeToString,
            response_deserializer=pb.ServerLiveResponse.FromString,
        )
        assert (await live(pb.ServerLiveRequest(), timeout=5)).live
        answer = await infer(channel, [1.0, 2.0], timeout=5)
        assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [3]


# --- a real client --------------------------------------------------------------------------


async def test_64_calls_at_once_on_one_channel(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answers = await asyncio.gather(
            *(infer(channel, [float(n), 1.0], timeout=10) for n in range(64))
        )
    sums = [np.frombuffer(a.raw_output_contents[0], "<i8").tolist() for a in answers]
    assert sums == [[n + 1] for n in range(64)]


async def test_a_request_and_an_answer_larger_than_the_window(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        values = [float(n % 7) for n in range(BIG)]
        answers = await asyncio.gather(*(call(infer_request(values), timeout=10) for _ in range(4)))
    for answer in answers:
        assert len(answer.raw_output_contents[0]) == BIG * 8
        assert np.frombuffer(answer.raw_output_contents[0], "<i8")[-1] == BIG - 1


async def test_trailing_metadata_names_the_version(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            METHOD + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )(infer_request([1.0]), metadata=[("x-modelyard-version", "2")], timeout=5)
        answer = await call
        trailing = dict(await call.trailing_metadata())
    assert answer.model_version == "2"
    assert trailing["x-modelyard-version"] == "2"
    assert trailing["x-modelyard-model"] == "iris"


async def test_a_message_over_the_limit_is_resource_exhausted(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await infer(channel, [1.0] * (MAX_MESSAGE // 4 + 10), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await still_serving(port)


async def test_grpc_timeout_is_the_calls_deadline(port: int, upstream: Upstream) -> None:
    upstream.hold = True
    async with raw_connection(port) as raw:
        raw.request(
            1, "ModelInfer", infer_request([1.0]).SerializeToString(), [("grpc-timeout", "200m")]
        )
        frames = await raw.until(lambda got: any(k == f.HEADERS and s == 1 for k, _, s, _ in got))
        found = raw.status(frames, 1)
        assert {"grpc-status": "4", "grpc-message": "Deadline Exceeded"}.items() <= found.items()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await infer(channel, [1.0], timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    upstream.hold = False
    await still_serving(port)


async def test_answers_wait_for_the_clients_window(port: int) -> None:
    """A client with a 1,000-byte stream window gets 1,000 bytes of the answer, the rest only
    as it sends WINDOW_UPDATEs; and our window for its large request is replenished."""
    async with raw_connection(port, [(f.INITIAL_WINDOW_SIZE, 1000)]) as raw:
        request = infer_request([float(n % 7) for n in range(200_000)]).SerializeToString()
        raw.request(1, "ModelInfer", request, [])  # 800 KB: over half our 1 MiB window

        def data(frames: list[Frame]) -> int:
            return sum(len(p) for k, _, s, p in frames if k == f.DATA and s == 1)

        frames = await raw.until(lambda got: data(got) >= 1000)
        raw.writer.write(f.frame(f.PING, 0, 0, b"12345678"))
        frames += await raw.until(lambda got: any(k == f.PING for k, *_ in got))
        assert data(frames) == 1000  # not a byte more before the PING's answer
        updates = [s for k, _, s, _ in frames if k == f.WINDOW_UPDATE]
        assert 1 in updates  # the stream's receive window was given back
        raw.writer.write(f.window_update(1, 1 << 24) + f.window_update(0, 1 << 24))
        frames += await raw.until(
            lambda got: any(k == f.HEADERS and fl & f.END_STREAM for k, fl, _, _ in got)
        )
        assert raw.status(frames, 1).get("grpc-status") == "0"
        message = b"".join(p for k, _, s, p in frames if k == f.DATA and s == 1)
        answer = pb.ModelInferResponse.FromString(message[5:])
        assert len(answer.raw_output_contents[0]) == 200_000 * 8


# --- the gRPC spec's refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "extra", "body", "expected"),
    [
        ("Nope", [], b"", {"grpc-status": "12"}),
        ("ModelInfer", [("grpc-encoding", "gzip")], b"", {"grpc-status": "12"}),
        ("ModelInfer", [], b"\xff\xff\xff", {"grpc-status": "13"}),
        ("ModelInfer", [("content-type", "text/plain")], b"", {":status": "415"}),
    ],
)
async def test_refusals(
    port: int, path: str, extra: list[tuple[str, str]], body: bytes, expected: dict[str, str]
) -> None:
    async with raw_connection(port) as raw:
        raw.request(1, path, body, extra)
        frames = await raw.until(lambda got: any(k == f.HEADERS and s == 1 for k, _, s, _ in got))
        found = raw.status(frames, 1)
        assert expected.items() <= found.items(), found


# --- hostile bytes --------------------------------------------------------------------------


async def test_a_garbage_preface(port: int) -> None:
    frames = await sent_to_eof(port, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert goaway_code(frames) == f.PROTOCOL_ERROR
    await still_serving(port)


def oversized() -> bytes:
    """A DATA frame header announcing 20,480 bytes (our limit: 16,384)."""
    return bytes((0, 0x50, 0, f.DATA, 0, 0, 0, 0, 1))


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (lambda: oversized(), f.FRAME_SIZE_ERROR),
        (lambda: f.frame(f.HEADERS, f.END_HEADERS, 0, b"\x83"), f.PROTOCOL_ERROR),
        (lambda: f.frame(f.DATA, 0, 7, b"x"), f.PROTOCOL_ERROR),
        (lambda: f.frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff"), f.COMPRESSION_ERROR),
        (lambda: f.frame(f.PING, 0, 0, b"short"), f.PROTOCOL_ERROR),
        (lambda: f.frame(f.SETTINGS, 0, 0, b"\x00\x05\x00\x00\x00\x01"), f.PROTOCOL_ERROR),
        (lambda: f.frame(f.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x00"), f.PROTOCOL_ERROR),
        (
            lambda: f.frame(f.HEADERS, 0, 1, b"\x83") + f.frame(f.PING, 0, 0, b"12345678"),
            f.PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "oversized-frame",
        "headers-on-stream-0",
        "data-on-idle-stream",
        "not-hpack",
        "bad-ping",
        "bad-max-frame-size",
        "zero-window-update",
        "frame-inside-a-header-block",
    ],
)
async def test_protocol_errors_are_goaway_and_close(port: int, frames: Any, code: int) -> None:
    found = await sent_to_eof(port, f.PREFACE + f.settings([]) + frames())
    assert goaway_code(found) == code
    await still_serving(port)


async def test_a_thousand_streams_at_once_are_refused_past_the_limit(port: int) -> None:
    async with raw_connection(port) as raw:
        for n in range(1000):  # none ends: each stays open, waiting for its body
            raw.request(2 * n + 1, "ModelInfer", None, [])
        frames = await raw.until(lambda got: sum(1 for k, *_ in got if k == f.RST_STREAM) >= 872)
        refused = [s for k, _, s, p in frames if k == f.RST_STREAM and p == b"\x00\x00\x00\x07"]
        assert len(refused) == 1000 - 128
        assert min(refused) == 2 * 128 + 1
        assert not any(k == f.GOAWAY for k, *_ in frames)
    await still_serving(port)


async def test_a_client_that_never_sends_the_preface_is_closed(
    short_timeouts: None, port: int
) -> None:
    found = await sent_to_eof(port, f.PREFACE[:10])
    assert goaway_code(found) == f.PROTOCOL_ERROR
    await still_serving(port)


async def test_a_request_never_finished_is_reset(short_timeouts: None, port: int) -> None:
    async with raw_connection(port) as raw:
        raw.request(1, "ModelInfer", None, [])
        frames = await raw.until(lambda got: any(k == f.RST_STREAM for k, *_ in got))
        assert [(s, p) for k, _, s, p in frames if k == f.RST_STREAM] == [(1, b"\x00\x00\x00\x08")]


async def test_a_header_block_never_finished_closes_the_connection(
    short_timeouts: None, port: int
) -> None:
    found = await sent_to_eof(port, f.PREFACE + f.settings([]) + f.frame(f.HEADERS, 0, 1, b"\x83"))
    assert goaway_code(found) == f.ENHANCE_YOUR_CALM
    await still_serving(port)


async def test_shutdown_finishes_the_calls_in_flight() -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: UpstreamRequest) -> UpstreamResponse:
        arrived.set()
        await release.wait()
        return UpstreamResponse(200, [(b"content-type", b"application/json")], b'{"label":[5]}')

    gw, _ = gateway(slow, table())
    server = running_grpc(gw, "127.0.0.1", 0, max_message=MAX_MESSAGE, name="m", version="1")
    bound = await server.__aenter__()
    stopping: asyncio.Future[Any] | None = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{bound}") as channel:
            pending = asyncio.ensure_future(infer(channel, [1.0], timeout=10))
            await asyncio.wait_for(arrived.wait(), READ_TIMEOUT_S)
            stopping = asyncio.ensure_future(server.__aexit__(None, None, None))
            await refused_from_now_on(bound)  # the stop has begun: no new connection
            release.set()
            answer = await pending
            await asyncio.wait_for(stopping, READ_TIMEOUT_S)
        assert np.frombuffer(answer.raw_output_contents[0], "<i8").tolist() == [5]
    finally:
        release.set()
        if stopping is None:
            await server.__aexit__(None, None, None)


async def refused_from_now_on(port: int) -> None:
    async with asyncio.timeout(READ_TIMEOUT_S):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionError:  # refused (or reset: it was in the closed socket's backlog)
                return
            writer.close()
            await asyncio.sleep(0.01)  # the server has not stopped listening yet: ask again


# --- a raw HTTP/2 client --------------------------------------------------------------------


class Raw:
    """An HTTP/2 client of our own making: what it sends is exactly what a test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""

    @classmethod
    async def open(cls, port: int, settings: list[tuple[int, int]]) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f.PREFACE + f.settings(settings))
        if not settings:
            writer.write(f.window_update(0, 1 << 24))
        return cls(reader, writer)

    def request(
        self, stream: int, method: str, body: bytes | None, extra: list[tuple[str, str]]
    ) -> None:
        headers = {
            ":method": "POST",
            ":scheme": "http",
            ":path": METHOD + method,
            ":authority": "localhost",
            "content-type": "application/grpc",
            "te": "trailers",
        }
        headers.update(extra)
        block = self.encoder.encode(list(headers.items()))
        end = f.END_STREAM if body == b"" else 0
        data = f.frame(f.HEADERS, f.END_HEADERS | end, stream, block)
        if body:
            message = b"\x00" + len(body).to_bytes(4, "big") + body
            pieces = range(0, len(message), f.DEFAULT_FRAME_SIZE)
            for at in pieces:
                last = at + f.DEFAULT_FRAME_SIZE >= len(message)
                piece = message[at : at + f.DEFAULT_FRAME_SIZE]
                data += f.frame(f.DATA, f.END_STREAM if last else 0, stream, piece)
        self.writer.write(data)

    async def until(self, done: Any) -> list[Frame]:
        frames: list[Frame] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not done(frames):
                chunk = await self.reader.read(65536)
                assert chunk, f"closed; frames so far: {[k for k, *_ in frames]}"
                self.buffer += chunk
                at = 0
                while (found := f.parse_frame(self.buffer, at, 1 << 24)) is not None:
                    kind, flags, stream, payload, at = found
                    frames.append((kind, flags, stream, payload))
                self.buffer = self.buffer[at:]
        return frames

    def status(self, frames: list[Frame], stream: int) -> dict[str, str]:
        found: dict[str, str] = {}
        for kind, _, ident, payload in frames:
            if kind == f.HEADERS and ident == stream:
                for name, value in self.decoder.decode(payload):
                    found[name] = value
        return found


@contextlib.asynccontextmanager
async def raw_connection(port: int, settings: Any = ()) -> AsyncIterator[Raw]:
    raw = await Raw.open(port, list(settings))
    try:
        yield raw
    finally:
        raw.writer.close()
        with contextlib.suppress(ConnectionError):
            await raw.writer.wait_closed()


async def sent_to_eof(port: int, sent: bytes) -> list[Frame]:
    """The frames the server answers `sent` with, until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b""
    try:
        writer.write(sent)
        async with asyncio.timeout(READ_TIMEOUT_S):
            while chunk := await reader.read(65536):
                data += chunk
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    frames, at = [], 0
    while (found := f.parse_frame(data, at, 1 << 24)) is not None:
        kind, flags, stream, payload, at = found
        frames.append((kind, flags, stream, payload))
    return frames


def goaway_code(frames: list[Frame]) -> int | None:
    codes = [int.from_bytes(p[4:8], "big") for k, _, _, p in frames if k == f.GOAWAY]
    return codes[-1] if codes else None
