"""Send the gateway's per-variant windows to the registry every few seconds (the rollout
judge reads them there, summed over every gateway replica)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Final, Protocol

import httpx
import msgspec

from contract.windows import WindowReport
from gateway.errors import FeedUnavailable
from gateway.metrics import GatewayMetrics

log = logging.getLogger("modelyard.gateway.report")

REPORT_S: Final = 2.0
_encode = msgspec.json.Encoder()


class WindowSink(Protocol):
    """Where windows go: the registry over HTTP (`HttpSink`), or in `modelyard serve` the
    registry in the same process (`modelyard.bridges`). Raises `FeedUnavailable` (or an HTTP
    or OS error) when the registry cannot take them."""

    async def send(self, report: WindowReport) -> None: ...


class HttpSink:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(self, report: WindowReport) -> None:
        r = await self.client.post(
            "/api/v1/windows",
            content=_encode.encode(report),
            headers={"content-type": "application/json"},
        )
        r.raise_for_status()


class Reporter:
    def __init__(
        self, metrics: GatewayMetrics, sink: WindowSink, every_s: float = REPORT_S
    ) -> None:
        self.metrics = metrics
        self.sink = sink
        self.every_s = every_s
        self.source = f"{socket.gethostname()}:{id(self):x}"
        self.lost = 0  # windows that could not be delivered
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        windows = self.metrics.take_windows()
        if not windows:
            return
        try:
            await self.sink.send(WindowReport(self.source, windows))
        except (httpx.HTTPError, OSError, FeedUnavailable) as exc:
            self.lost += len(windows)
            log.warning("could not report %d traffic windows: %s", len(windows), exc)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            await self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
