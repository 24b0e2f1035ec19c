"""The real transport: pooled keep-alive HTTP/1.1 connections to the model servers.

Why our own: every inference call crosses it, and DESIGN.md ("How to measure") found httpx and
aiohttp far too slow for that hot path (`loadtests/upstream_bench.py` keeps the comparison). The
wire work sits in `gateway.transport.http1`; this module owns the connections:

- One `UpstreamPool` per upstream base URL; `Http1Transport` keeps them and is the gateway's
  `Transport` (gateway.transport.base). Idle connections sit on a LIFO
  stack: the warmest connection is reused, the cold ones at the bottom age out (`idle_timeout_s`).
- `max_connections` counts slots, taken before connecting and freed when a connection is dropped.
  Waiters queue; a released connection or a freed slot goes straight to the first waiter.
- Stale keep-alive: a server may close an idle connection just as we reuse it. If a reused
  connection fails before any byte of the answer arrived, the server never read the request, so it
  is sent once more on a fresh connection. Anything else after sending is `UpstreamBroken`.
- One deadline bounds the whole request: `asyncio.timeout_at` while queueing or connecting (rare
  once warm), the connection's re-armed timer while awaiting the answer (measured cheaper than a
  timeout per request). On timeout, cancellation or error the connection is aborted, not reused.

The gateway's callback lane (gateway.lane) uses the same pool without a coroutine: `lendable`
says whether a warm idle connection is there, `lend` lends it, `Http1Connection.start` sends,
`release` or `failed` end the request, and a stale connection's retry continues as the
coroutine `resend`. What a failure means (`failed`) is the one mapping both paths use.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConnectFailed, UpstreamBroken, UpstreamTimeout
from gateway.transport.base import Headers, UpstreamRequest, UpstreamResponse
from gateway.transport.http1 import (
    ConnectionLost,
    DeadlineExceeded,
    Http1Connection,
    InvalidResponse,
    encode_request,
    head_middle,
)

__all__ = ["Http1Transport", "UpstreamPool"]

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_CONNECT_TIMEOUT_S = 1.0
DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_HTTP_PORT = 80
CLOSE_WAIT_S = 1.0  # how long close() waits for aborted sockets to report themselves closed
_HEAD = b"HEAD"

# What a queued request receives: a warm connection, or None for "a slot is yours, connect".
_Handoff = asyncio.Future[Http1Connection | None]


class UpstreamPool:
    """Keep-alive connections to one upstream (`http://host:port`), at most `max_connections`."""

    __slots__ = (
        "_base_url",
        "_closed",
        "_connect_timeout_s",
        "_conns",
        "_host",
        "_idle",
        "_idle_timeout_s",
        "_loop",
        "_max",
        "_port",
        "_reused",
        "_slots",
        "_waiters",
        "head_middle",
    )

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        parts = urlsplit(base_url)
        if (
            parts.scheme != "http"
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ValueError(f"upstream base URL must be http://host[:port], got {base_url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or DEFAULT_HTTP_PORT
        #: What `encode_request` puts between the path and the body length (the `host` line).
        self.head_middle = head_middle(parts.netloc)
        self._max = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._idle: list[Http1Connection] = []
        self._conns: set[Http1Connection] = set()
        self._waiters: deque[_Handoff] = deque()
        self._slots = 0
        self._reused = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, looked up once: `asyncio.get_running_loop()` costs a getpid() syscall."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    @property
    def open_connections(self) -> int:
        """Connections open or being opened (each holds a slot)."""
        return self._slots

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    @property
    def reused(self) -> int:
        """Requests sent on a connection that had served an earlier request."""
        return self._reused

    def request(
        self, method: bytes, path: bytes, headers: Headers, body: bytes, timeout_s: float
    ) -> Coroutine[Any, Any, UpstreamResponse]:
        """Send one request and return the whole answer, or raise an `UpstreamError`.

        `timeout_s` bounds the whole request: waiting for a connection, connecting, the answer.
        Not a coroutine itself: with a warm idle connection, the coroutine returned is the
        exchange on it (`_exchange`), with no frame of this method's around it.
        """
        data = encode_request(method, path, self.head_middle, headers, body)
        if timeout_s <= 0:  # a spent budget: do not make the upstream work for nothing
            raise self._timed_out(timeout_s)
        loop = self._loop or self._running_loop()
        deadline = loop.time() + timeout_s
        idle = self._idle
        if idle and loop.time() - idle[0].idle_since <= self._idle_timeout_s:
            conn = idle.pop()  # the hot path, `_pop_idle` inlined: none expired, no await
            conn.idle = False
            self._reused += 1
            return self._exchange(conn, data, method == _HEAD, deadline, timeout_s)
        return self._queued(data, method == _HEAD, deadline, timeout_s)

    async def _queued(
        self, data: bytes, head_only: bool, deadline: float, timeout_s: float
    ) -> UpstreamResponse:
        """`request` without a warm connection: an idle one after expiring the cold ones, or a
        new one, or one handed over in turn (all under the deadline)."""
        conn = self._pop_idle(self._running_loop()) if self._idle else None
        if conn is None:
            conn = await self._before(deadline, timeout_s, self._acquire())
        return await self._exchange(conn, data, head_only, deadline, timeout_s)

    async def resend(self, data: bytes, deadline: float, timeout_s: float) -> UpstreamResponse:
        """The stale keep-alive retry of a request sent by the callback lane: on a fresh
        connection, in the slot `failed` kept, under the same deadline."""
        conn = await self._before(deadline, timeout_s, self._connect())
        return await self._exchange(conn, data, False, deadline, timeout_s)

    async def _exchange(
        self,
        conn: Http1Connection,
        data: bytes,
        head_only: bool,
        deadline: float,
        timeout_s: float,
    ) -> UpstreamResponse:
        while True:
            try:
                response = await conn.send(data, head_only=head_only, deadline=deadline)
            except BaseException as exc:
                error = self.failed(conn, exc, timeout_s)
                if error is None:  # stale: the server never read this request
                    conn = await self._before(deadline, timeout_s, self._connect())
                    continue
                if error is exc:
                    raise
                raise error from None
            self.release(conn)
            return response

    # -- the callback lane's side (gateway.lane) ------------------------------------------------

    def lendable(self, now: float) -> bool:
        """Whether a warm idle connection is there for the callback lane (`lend`): False when
        none is idle, the oldest has expired, or the pool was never used yet (`request` deals
        with those). `now`: the loop's time (the lane's, read once for this and the
        deadline). Asked before the lane does any work for the request (its head, a sampled
        request's span), so none is done for a request the lane leaves to `request`."""
        idle = self._idle
        return (
            len(idle) > 0
            and self._loop is not None
            and now - idle[0].idle_since <= self._idle_timeout_s
        )

    def lend(self) -> Http1Connection:
        """The warm connection `lendable` has just found (nothing may run in between)."""
        conn = self._idle.pop()
        conn.idle = False
        self._reused += 1
        return conn

    def failed(
        self, conn: Http1Connection, exc: BaseException, timeout_s: float
    ) -> BaseException | None:
        """What a failed exchange on `conn` means, for both paths; `conn` is dropped. None: a
        stale keep-alive connection (reused, lost before any answer byte: the server never
        read the request), whose slot is kept for the retry on a fresh connection. Otherwise
        the `UpstreamError` to raise, or `exc` itself (cancelled: the answer may still come,
        so the connection goes too)."""
        if isinstance(exc, ConnectionLost):
            stale = conn.reused and not exc.received
            self._drop(conn, keep_slot=stale)
            if stale:
                return None
            if not exc.sent:
                return ConnectFailed(
                    f"upstream {self._base_url}: connection closed before sending ({exc})"
                )
            return UpstreamBroken(
                f"upstream {self._base_url}: connection lost before a complete answer ({exc})"
            )
        self._drop(conn)
        if isinstance(exc, DeadlineExceeded):
            return self._timed_out(timeout_s)
        if isinstance(exc, InvalidResponse):
            return UpstreamBroken(f"upstream {self._base_url}: {exc}")
        return exc

    async def close(self) -> None:
        """Close every connection, fail queued requests, and wait until the sockets are closed."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectFailed(f"upstream {self._base_url}: pool closed"))
        for conn in self._idle:
            conn.idle = False
            self._slots -= 1
        self._idle.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.close(graceful=False)
        if conns:  # aborted sockets close on the next loop turn; the bound only guards bugs
            await asyncio.wait([conn.lost for conn in conns], timeout=CLOSE_WAIT_S)

    # -- the slow paths: queueing and connecting, under the request's deadline -------------------

    async def _before(
        self, deadline: float, timeout_s: float, step: Coroutine[Any, Any, Http1Connection]
    ) -> Http1Connection:
        try:
            async with asyncio.timeout_at(deadline):
                return await step
        except TimeoutError:
            raise self._timed_out(timeout_s) from None

    def _timed_out(self, timeout_s: float) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"upstream {self._base_url}: no complete answer within {timeout_s:g} s"
        )

    # -- connections and slots --------------------------------------------------------------------

    async def _acquire(self) -> Http1Connection:
        if self._closed:
            raise ConnectFailed(f"upstream {self._base_url}: pool closed")
        conn = self._pop_idle(self._running_loop())
        if conn is not None:
            return conn
        if self._slots < self._max:
            self._slots += 1
            return await self._connect()
        waiter: _Handoff = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()  # handed over just as we were cancelled: pass it on
                if handed is None:
                    self._free_slot()
                else:
                    self.release(handed)
            raise
        if handed is None:
            return await self._connect()
        self._reused += 1
        return handed

    def _pop_idle(self, loop: asyncio.AbstractEventLoop) -> Http1Connection | None:
        """The most recently used idle connection, after closing the expired ones. The stack is
        ordered by age, so those are a run at the bottom: usually one comparison."""
        idle, now, limit = self._idle, loop.time(), self._idle_timeout_s
        cut = 0
        while cut < len(idle) and now - idle[cut].idle_since > limit:
            cut += 1
        for old in idle[:cut]:
            old.idle = False
            self._drop(old)
        del idle[:cut]
        if not idle:
            return None
        conn = idle.pop()
        conn.idle = False
        self._reused += 1
        return conn

    async def _connect(self) -> Http1Connection:
        """Open a connection in a slot the caller already holds; the slot is freed on failure."""
        loop = asyncio.get_running_loop()
        conn = Http1Connection(loop, self._on_lost)
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await loop.create_connection(lambda: conn, self._host, self._port)
        except TimeoutError:
            self._free_slot()
            raise ConnectFailed(
                f"upstream {self._base_url}: connect timed out after {self._connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            self._free_slot()
            raise ConnectFailed(f"upstream {self._base_url}: cannot connect ({exc})") from None
        except BaseException:
            self._free_slot()
            raise
        if self._closed:  # closed while we were connecting
            self._drop(conn)
            raise ConnectFailed(f"upstream {self._base_url}: pool closed")
        self._conns.add(conn)
        return conn

    def release(self, conn: Http1Connection) -> None:
        """Return a connection after a complete answer: to a waiter, the idle stack, or closed.
        Also the callback lane's, for a connection `lend` lent it."""
        if not conn.finish() or self._closed:
            self._drop(conn, graceful=True)
            return
        conn.reused = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle = True
        conn.idle_since = (self._loop or self._running_loop()).time()
        self._idle.append(conn)

    def _drop(
        self, conn: Http1Connection, *, keep_slot: bool = False, graceful: bool = False
    ) -> None:
        conn.close(graceful=graceful)
        if not keep_slot:
            self._free_slot()

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, who connects
                return
        self._slots -= 1

    def _on_lost(self, conn: Http1Connection) -> None:
        """The transport closed. A connection lost while idle leaves the stack and frees its slot;
        one in use is dealt with by the request that holds it."""
        self._conns.discard(conn)
        if conn.idle:
            conn.idle = False
            self._idle.remove(conn)
            self._free_slot()


class Http1Transport:
    """The gateway's `Transport`: one `UpstreamPool` per base URL, created on first use and
    shared by every request."""

    __slots__ = ("_options", "_pools")

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self._options = (max_connections, connect_timeout_s, idle_timeout_s)
        self._pools: dict[str, UpstreamPool] = {}

    @property
    def pools(self) -> dict[str, UpstreamPool]:
        """The pools made so far, by base URL (the callback lane looks its pool up here)."""
        return self._pools

    def handle(self, request: UpstreamRequest) -> Coroutine[Any, Any, UpstreamResponse]:
        """The pool's own coroutine, returned as is: no frame of this method's on the hot path."""
        pool = self._pools.get(request.endpoint) or self.pool(request.endpoint)
        return pool.request(
            request.method, request.path, request.headers, request.body, request.timeout_s
        )

    def pool(self, base_url: str) -> UpstreamPool:
        found = self._pools.get(base_url)
        if found is None:
            limit, connect_s, idle_s = self._options
            found = UpstreamPool(
                base_url, max_connections=limit, connect_timeout_s=connect_s, idle_timeout_s=idle_s
            )
            self._pools[base_url] = found
        return found

    async def close(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(p.close() for p in pools))
