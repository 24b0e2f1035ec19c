"""A 64 MiB+ Bento uploaded over HTTP to a real `modelyard registry` process: the process's
peak memory grows by far less than the archive (the body is streamed, never held whole)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from modelyard.processes import ModelyardProcess
from tests.integration.bentos import write_bento
from tests.s3 import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, create_bucket

pytestmark = pytest.mark.e2e

PAYLOAD = 64 * 1024 * 1024 + 4321
GROWTH_LIMIT = 48 * 1024 * 1024  # an 8 MiB S3 part and its copies in flight, plus slack


def peak_rss(pid: int) -> int:
    """VmHWM: the process's high-water mark of resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def big_bento(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bento"
    return write_bento(path, padding=PAYLOAD, compression="")


@pytest.mark.parametrize("store", ["local", "s3"])
async def test_a_64_mib_upload_keeps_the_registry_small(
    store: str, big_bento: Path, tmp_path: Path, admin_token: str, moto_s3: str
) -> None:
    env: dict[str, str] = {}
    if store == "s3":
        env = {
            "MODELYARD_ARTIFACT_URL": f"s3://{await create_bucket(moto_s3)}/big",
            "MODELYARD_S3_ENDPOINT_URL": moto_s3,
            "MODELYARD_S3_REGION": S3_REGION,
            "MODELYARD_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "MODELYARD_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }
    proc = ModelyardProcess("registry", tmp_path / "data", admin_token, extra_env=env)
    proc.start()
    try:
        assert proc.proc is not None
        headers = {"Authorization": f"Bearer {admin_token}"}
        with httpx.Client(base_url=f"{proc.url}/api/v1", headers=headers, timeout=120) as c:
            assert c.post("/models", json={"name": "big"}).status_code == 201
            # warm the upload path with a small archive so imports and pools are counted before
            small = write_bento(tmp_path / "small.bento").read_bytes()
            octet = {"Content-Type": "application/octet-stream"}
            assert c.post("/models/big/versions/bento", content=small, headers=octet).is_success
            before = peak_rss(proc.proc.pid)
            with big_bento.open("rb") as body:
                r = c.post("/models/big/versions/bento", content=body, headers=octet)
            after = peak_rss(proc.proc.pid)
        assert r.status_code == 201, r.text
        expected = hashlib.sha256(big_bento.read_bytes()).hexdigest()
        assert r.json()["digest"] == f"sha256:{expected}"
        assert r.json()["size_bytes"] == big_bento.stat().st_size > PAYLOAD
        growth = after - before
        print(f"\n{store}: peak RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
        assert growth < GROWTH_LIMIT, f"peak RSS grew {growth / 2**20:.1f} MiB during the upload"
    finally:
        proc.stop()
