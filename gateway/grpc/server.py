"""The gRPC server of `InferenceService`: HTTP/2 of our own (h2conn) in the gateway's event loop.

Hand-written because grpcio's Python server was the cost of the gRPC path, not the handler:
every call crossed from grpcio's completion-queue thread into the event loop, and a `grpc.aio`
server whose handler returns a fixed message answered ~4,300 req/s at 16 connections on one
core, while the gateway's HTTP JSON path, doing the whole OIP translation and an upstream call,
served about twice that. The measured gain that pays for this module and h2conn, h2frames,
hpack_decode and calls (`python -m loadtests.grpc_servers`, one run, both servers answering a
fixed `ModelInfer` message, uvloop, one core, h2load with 16 connections, 3 rounds in turn):
`grpc.aio` 5,064-5,397 req/s, this server 29,884-30,169 req/s, 5.7x. Through the whole
gateway, see docs/grpc.md, "What it costs".

`running_grpc` listens with `loop.create_server` (no SO_REUSEPORT: a port in use is an error,
`GrpcBindError`) and on exit stops accepting, sends every connection GOAWAY, lets the calls in
flight finish for up to `STOP_GRACE_S`, then closes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from gateway.front import Gateway
from gateway.grpc.calls import SERVICE, GrpcCalls
from gateway.grpc.h2conn import H2Connection
from gateway.grpc.service import InferenceService

__all__ = ["SERVICE", "STOP_GRACE_S", "GrpcBindError", "running_grpc"]

STOP_GRACE_S: Final = 5.0


class GrpcBindError(RuntimeError):
    """The gRPC port could not be bound (in use, or not allowed)."""


@contextlib.asynccontextmanager
async def running_grpc(
    gateway: Gateway, host: str, port: int, *, max_message: int, name: str, version: str
) -> AsyncIterator[int]:
    """The gRPC server on `host:port` for as long as the context lasts; yields the bound port.
    `name`/`version`: what ServerMetadata answers."""
    calls = GrpcCalls(InferenceService(gateway, name, version), max_message)
    connections: set[H2Connection] = set()

    def connection() -> H2Connection:
        conn = H2Connection(calls, max_body=max_message + 5, on_close=connections.discard)
        connections.add(conn)
        return conn

    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(connection, host, port, reuse_port=False)
    except OSError as exc:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise GrpcBindError(f"cannot listen for gRPC on {address}: {exc}") from None
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for conn in list(connections):
            conn.shutdown()
        if connections:
            closed = [asyncio.ensure_future(conn.closed.wait()) for conn in connections]
            _, pending = await asyncio.wait(closed, timeout=STOP_GRACE_S)
            for waiter in pending:
                waiter.cancel()
            for conn in list(connections):
                if conn.transport is not None:
                    conn.transport.abort()
        await server.wait_closed()
