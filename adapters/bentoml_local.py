"""The local deployer: each wanted version runs as its own `bentoml serve` process.

For a version it fetches the archive from the artifact store (digest verified), imports it into
an isolated BENTOML_HOME, starts `bentoml serve <tag>` on a free loopback port, waits for
`/readyz`, and watches the process: a crash marks it unhealthy and it is started again with
exponential backoff. Stopping sends SIGTERM to the server's parent process (BentoML stops its
workers), then SIGKILL to its whole process group if it lingers. Children are asked to die
with modelyard too (PR_SET_PDEATHSIG), so a killed modelyard leaves no orphans behind.

Environment for one version's server comes from its tags `serving.env.<NAME>` (e.g. the
example's fault switch, `serving.env.IRIS_FAULT_LATENCY_MS=300`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import msgspec

from adapters.bento_archive import sniff
from adapters.model_folder import model_folder
from adapters.net import free_port
from adapters.process_tree import descendants, kill_all
from registry.catalog.domain import ModelVersion
from registry.errors import DeployError, RegistryError
from registry.ports import ArtifactStore, ServerState

READY_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 15.0
BACKOFF_START_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
ENV_TAG_PREFIX: Final = "serving.env."
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Server:
    version: ModelVersion
    workdir: Path
    state: ServerState
    changed: Callable[[], None]
    proc: asyncio.subprocess.Process | None = None
    workers: tuple[int, ...] = ()  # the server's worker processes, seen once it was ready
    task: asyncio.Task[None] | None = None
    stopping: bool = False

    def update(self, **changes: object) -> None:
        self.state = msgspec.structs.replace(self.state, **changes)
        self.changed()


class LocalBentoServers:
    def __init__(
        self,
        root: Path,
        artifacts: ArtifactStore,
        *,
        python: str = sys.executable,
        base_env: Mapping[str, str] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        """`host`/`port`: where each server listens (default: loopback, a free port each); a
        fixed port is for one version per process (`modelyard serve-version` in a pod)."""
        self.root = root.resolve()  # bentoml resolves relative paths against /, not cwd
        self.artifacts = artifacts
        self.python = python
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.ready_timeout_s = ready_timeout_s
        self.host = host
        self.port = port
        self._servers: dict[tuple[str, int], _Server] = {}
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    # --- the port ---------------------------------------------------------------------------

    def ensure(self, version: ModelVersion) -> None:
        key = (version.model, version.version)
        if key in self._servers:
            return
        if version.artifact_uri is None or version.digest is None or version.bento_tag is None:
            raise DeployError(
                f"version {version.version} of {version.model!r} has no Bento archive to serve",
                field="version",
            )
        server = _Server(
            version=version,
            workdir=self.root / model_folder(version.model) / str(version.version),
            state=ServerState(model=version.model, version=version.version, status="preparing"),
            changed=self._changed,
        )
        self._servers[key] = server
        server.task = asyncio.get_running_loop().create_task(self._supervise(server))

    async def stop(self, model: str, version: int) -> None:
        server = self._servers.pop((model, version), None)
        if server is None:
            return
        server.stopping = True
        self._changed()
        await self._terminate(server)
        if server.task is not None:
            server.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server.task
        await asyncio.to_thread(shutil.rmtree, server.workdir, True)

    def states(self) -> list[ServerState]:
        return [s.state for _, s in sorted(self._servers.items())]

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(m, v) for m, v in list(self._servers)))

    # --- one server's life --------------------------------------------------------------------

    async def _supervise(self, server: _Server) -> None:
        backoff = BACKOFF_START_S
        while not server.stopping:
            try:
                if server.state.status in ("preparing", "failed"):
                    await self._prepare(server)
                await self._run_once(server)
                backoff = BACKOFF_START_S  # it had become ready: a later crash starts afresh
            except RegistryError as exc:  # a bad archive, a store down, a server that won't start
                server.update(status="failed", endpoint=None, pid=None, detail=exc.message)
            if server.stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            server.update(restarts=server.state.restarts + 1)

    async def _prepare(self, server: _Server) -> None:
        """Fetch and verify the archive, import it into this server's own BENTOML_HOME."""
        server.update(status="preparing", detail=None)
        version = server.version
        await asyncio.to_thread(shutil.rmtree, server.workdir, True)
        await asyncio.to_thread(server.workdir.mkdir, parents=True)
        fetched = server.workdir / "archive.download"
        assert version.artifact_uri is not None and version.digest is not None
        out = await asyncio.to_thread(fetched.open, "wb")
        try:
            async for chunk in self.artifacts.get(version.artifact_uri, version.digest):
                await asyncio.to_thread(out.write, chunk)
        finally:
            out.close()
        fmt = await asyncio.to_thread(sniff, fetched)
        if fmt is None:  # the registry accepts none such: an archive stored before the check
            raise DeployError("the archive is in none of the accepted formats")
        archive = fetched.with_name(f"archive{fmt.suffix}")  # bentoml reads it by its suffix
        await asyncio.to_thread(fetched.rename, archive)
        code, output = await self._bentoml(server, "import", str(archive))
        if code != 0:
            raise DeployError(f"`bentoml import` failed: {output[-800:]}")

    def _env(self, server: _Server) -> dict[str, str]:
        extra = {
            key[len(ENV_TAG_PREFIX) :]: value
            for key, value in server.version.tags.items()
            if key.startswith(ENV_TAG_PREFIX)
        }
        return {
            **self.base_env,
            "BENTOML_HOME": str(server.workdir / "home"),
            "BENTOML_DO_NOT_TRACK": "true",
            **extra,
        }

    async def _bentoml(self, server: _Server, *args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "bentoml",
            *args,
            env=self._env(server),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode(errors="replace")

    async def _run_once(self, server: _Server) -> None:
        """Start the server, wait for ready, then wait for it to exit."""
        port = free_port() if self.port is None else self.port
        reached_at = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        endpoint = f"http://{reached_at}:{port}"
        server.update(status="starting", endpoint=None, detail=None)
        log = (server.workdir / "server.log").open("ab")
        try:
            server.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "bentoml",
                "serve",
                str(server.version.bento_tag),
                "--host",
                self.host,
                "--port",
                str(port),
                env=self._env(server),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        server.update(pid=server.proc.pid)
        await self._wait_ready(server, endpoint)
        server.workers = tuple(descendants(server.proc.pid))
        server.update(status="ready", endpoint=endpoint)
        code = await server.proc.wait()
        kill_all(list(server.workers))  # a crashed parent leaves its workers serving: end them
        if not server.stopping:
            server.update(
                status="unhealthy", endpoint=None, pid=None, detail=f"server exited with {code}"
            )

    async def _wait_ready(self, server: _Server, endpoint: str) -> None:
        assert server.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while loop.time() < deadline:
                if server.proc.returncode is not None:
                    raise DeployError(
                        f"`bentoml serve` exited with {server.proc.returncode} before ready:"
                        f" {self._log_tail(server)}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{endpoint}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        await self._terminate(server)
        raise DeployError(f"not ready after {self.ready_timeout_s:.0f}s: {self._log_tail(server)}")

    def _log_tail(self, server: _Server) -> str:
        path = server.workdir / "server.log"
        return path.read_text(errors="replace")[-800:] if path.exists() else ""

    async def _terminate(self, server: _Server) -> None:
        proc = server.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the process group
            os.killpg(proc.pid, signal.SIGKILL)
        kill_all(list(server.workers))  # workers live in sessions of their own
        await proc.wait()
        server.update(status="stopped", endpoint=None, pid=None)
