"""`modelyard audit ... | head`: a reader that stops early ends the real CLI quietly, with no
traceback, as any Unix filter would."""

from __future__ import annotations

import fcntl
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelyard.cli.main import EXIT_BROKEN_PIPE
from modelyard.processes import ModelyardProcess

pytestmark = pytest.mark.e2e

ADMIN = "myd_test_" + secrets.token_urlsafe(32)
MODELYARD = str(Path(sys.executable).parent / "modelyard")
PIPE_BYTES = 4096  # the smallest pipe Linux makes (one page)
REASON = "r" * 900  # each audit row is about 1 kB wide


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelyardProcess]:
    proc = ModelyardProcess("registry", tmp_path_factory.mktemp("pipe") / "data", ADMIN)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def read_line(fd: int) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        assert byte, f"the output ended before a whole line: {line!r}"
        line += byte
    return line


def test_audit_into_a_pipe_closed_after_the_first_line_exits_quietly(
    registry: ModelyardProcess,
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=f"{registry.url}/api/v1", headers=headers, timeout=30) as c:
        assert c.post("/models", json={"name": "piped"}).status_code == 201
        version = {"artifact_uri": "s3://b/m.bento", "digest": "sha256:" + "ab" * 32}
        assert c.post("/models/piped/versions", json={**version, "size_bytes": 7}).is_success
        for i in range(30):
            put = c.put(f"/models/piped/aliases/a{i}", json={"version": 1, "reason": REASON})
            assert put.status_code == 200, put.text
    # About 30 kB of table into a one-page pipe: the CLI is still writing (blocked) when the
    # reader closes after the header, as `| head -n 1` does, whatever the machine's speed.
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    env = {**os.environ, "MODELYARD_URL": registry.url, "MODELYARD_TOKEN": ADMIN}
    proc = subprocess.Popen(
        [MODELYARD, "audit", "piped", "--all"], stdout=write_end, stderr=subprocess.PIPE, env=env
    )
    os.close(write_end)
    try:
        first = read_line(read_end)
    finally:
        os.close(read_end)
    _, err = proc.communicate(timeout=60)
    assert first.split() == [b"SEQ", b"AT", b"ACTOR", b"ACTION", b"VERSION", b"ALIAS", b"REASON"]
    assert err.decode() == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    assert proc.returncode == EXIT_BROKEN_PIPE  # the pipe did break: the case was exercised
