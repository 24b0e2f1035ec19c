"""Registering versions from Bento archives over REST, on the local and the S3 artifact store
(moto in its own process): what is stored and recorded, and that failures leave nothing."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from adapters.local_artifacts import LINK_PATH
from modelyard.app import create_app
from modelyard.settings import load_settings
from registry.catalog.domain import MAX_NAME
from tests.integration.bentos import write_bento
from tests.s3 import (
    S3_ACCESS_KEY,
    S3_REGION,
    S3_SECRET_KEY,
    create_bucket,
    running_moto_server,
    s3_client,
)

ADMIN = "admin-token-for-upload-tests-0123456789"
UPLOAD = "/api/v1/models/iris/versions/bento"
MAX_ARTIFACT = 2_000_000

Client = AsyncTestClient[Any]


class Stores:
    """Counts what each artifact store holds, to prove nothing is left behind."""

    def __init__(self, kind: str, data: Path, endpoint: str | None, bucket: str | None) -> None:
        self.kind, self.data, self.endpoint, self.bucket = kind, data, endpoint, bucket

    async def objects(self) -> int:
        if self.kind == "local":
            return sum(1 for p in (self.data / "artifacts").rglob("*") if p.is_file())
        assert self.endpoint is not None
        async with s3_client(self.endpoint) as s3:
            listed = await s3.list_objects_v2(Bucket=self.bucket)
        return int(listed.get("KeyCount", 0))


@pytest.fixture(params=["local", "s3"])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Client, Stores]]:
    extra: dict[str, Any] = {}
    endpoint = bucket = None
    if request.param == "s3":
        endpoint = request.getfixturevalue("moto_s3")
        bucket = await create_bucket(endpoint)
        extra = {
            "artifact_url": f"s3://{bucket}/team-a",
            "s3_endpoint_url": endpoint,
            "s3_region": S3_REGION,
            "s3_access_key_id": S3_ACCESS_KEY,
            "s3_secret_access_key": S3_SECRET_KEY,
        }
    settings = load_settings(
        {}, data_dir=str(tmp_path), admin_token=ADMIN, max_artifact_bytes=MAX_ARTIFACT, **extra
    )
    async with AsyncTestClient(app=create_app(settings, "registry")) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
        yield client, Stores(request.param, tmp_path, endpoint, bucket)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def upload(client: Client, data: bytes, **kw: Any) -> Any:
    headers = {"Content-Type": "application/octet-stream", **kw.pop("headers", {})}
    return client.post(UPLOAD, content=data, headers=headers, **kw)


async def test_a_bento_is_stored_read_and_recorded(
    env: tuple[Client, Stores], tmp_path: Path
) -> None:
    client, stores = env
    data = write_bento(tmp_path / "iris.bento").read_bytes()
    r = await upload(
        client, data, params={"metric": "accuracy=0.97", "tag": "team=ml", "run_id": "r1"}
    )
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["version"] == 1 and v["format"] == "bento" and v["status"] == "READY"
    assert v["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert v["size_bytes"] == len(data)
    assert v["bento_tag"] == "iris_classifier:abc123"
    assert v["apis"] == [{"name": "classify", "inputs": ["input_series"]}]
    assert (v["metrics"], v["tags"], v["run_id"]) == ({"accuracy": 0.97}, {"team": "ml"}, "r1")
    assert v["artifact_uri"].startswith("file://" if stores.kind == "local" else "s3://")
    assert await stores.objects() == 1

    r = await client.get("/api/v1/models/iris/versions/1/download-uri")
    assert r.status_code == 200, r.text
    link = r.json()
    assert link["digest"] == v["digest"] and link["artifact_uri"] == v["artifact_uri"]
    if stores.kind == "local":
        url = httpx.URL(link["download_url"])
        got = await client.get(url.raw_path.decode(), headers={"Authorization": ""})
        assert got.status_code == 200 and got.content == data
        forged = url.copy_set_param("signature", "0" * 64)
        bad = await client.get(forged.raw_path.decode(), headers={"Authorization": ""})
        assert bad.status_code == 403 and bad.json()["error_code"] == "PERMISSION_DENIED"
    else:
        async with httpx.AsyncClient() as plain:
            got = await plain.get(link["download_url"])
        assert got.status_code == 200 and got.content == data


@pytest.mark.parametrize("env", ["local"], indirect=True)
async def test_a_local_download_link_names_no_server_path(
    env: tuple[Client, Stores], tmp_path: Path
) -> None:
    client, _ = env
    data = write_bento(tmp_path / "iris.bento").read_bytes()
    assert (await upload(client, data)).status_code == 201
    version = (await client.get("/api/v1/models/iris/versions/1")).json()
    stored = Path(unquote(urlsplit(version["artifact_uri"]).path))
    assert stored.is_file()  # where the server keeps it: none of it may show in the link
    link = (await client.get("/api/v1/models/iris/versions/1/download-uri")).json()
    url = httpx.URL(link["download_url"])
    ident = unquote(url.path).removeprefix(LINK_PATH)
    assert re.fullmatch(r"[0-9a-f]{32}", ident), url  # an opaque id, resolved by the server
    for part in (str(tmp_path), str(stored), stored.name, "artifacts/iris", ".bento"):
        assert part not in unquote(str(url)), (part, url)
    got = await client.get(url.raw_path.decode(), headers={"Authorization": ""})
    assert got.status_code == 200 and got.content == data


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: _write(p, b"definitely not a tar"), "not a Bento archive"),
        (lambda p: write_bento(p, models=()), "iris_clf:v1"),
        (lambda p: write_bento(p, bento_yaml=b"service: x\n"), "not a valid Bento manifest"),
    ],
)
async def test_bad_archives_are_refused_and_leave_nothing(
    env: tuple[Client, Stores], tmp_path: Path, make: Any, match: str
) -> None:
    client, stores = env
    path = make(tmp_path / "bad.bento")
    r = await upload(client, path.read_bytes())
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error_code"] == "INVALID_ARTIFACT" and body["field"] == "bento"
    assert match in body["message"]
    assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0
    assert await stores.objects() == 0
    assert not list((tmp_path / "uploads").glob("*")), "spooled upload left behind"


async def test_too_large_is_413_and_leaves_nothing(
    env: tuple[Client, Stores], tmp_path: Path
) -> None:
    client, stores = env
    big = write_bento(tmp_path / "big.bento", padding=5_000_000, compression="")
    r = await upload(client, big.read_bytes())
    assert r.status_code == 413 and r.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert await stores.objects() == 0
    assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0


async def test_missing_model_is_404(env: tuple[Client, Stores], tmp_path: Path) -> None:
    client, stores = env
    data = write_bento(tmp_path / "a.bento").read_bytes()
    r = await client.post(
        "/api/v1/models/nope/versions/bento",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert await stores.objects() == 0


async def test_an_idempotent_retry_keeps_one_version_and_one_object(
    env: tuple[Client, Stores], tmp_path: Path
) -> None:
    client, stores = env
    data = write_bento(tmp_path / "a.bento").read_bytes()
    key = {"Idempotency-Key": "upload-1"}
    first = await upload(client, data, headers=key)
    again = await upload(client, data, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert await stores.objects() == 1
    other = write_bento(tmp_path / "b.bento", padding=10).read_bytes()
    r = await upload(client, other, headers=key)
    assert r.status_code == 422 and r.json()["error_code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await stores.objects() == 1


async def test_metadata_and_roles_are_checked(env: tuple[Client, Stores], tmp_path: Path) -> None:
    client, _ = env
    data = write_bento(tmp_path / "a.bento").read_bytes()
    r = await upload(client, data, params={"metric": "accuracy=high"})
    assert r.status_code == 400 and r.json()["field"] == "metric"
    r = await upload(client, data, params={"tag": "novalue"})
    assert r.status_code == 400 and r.json()["field"] == "tag"
    made = await client.post("/api/v1/tokens", json={"name": "viewer", "role": "reader"})
    reader = made.json()["token"]
    r = await upload(client, data, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403


async def test_a_full_disk_is_507_and_leaves_nothing(tiny_disk: Path, tmp_path: Path) -> None:
    settings = load_settings({}, data_dir=str(tiny_disk / "data"), admin_token=ADMIN)
    big = write_bento(tmp_path / "big.bento", padding=3_000_000, compression="")
    async with AsyncTestClient(app=create_app(settings, "registry")) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
        r = await upload(client, big.read_bytes())
        assert r.status_code == 507, r.text
        assert r.json()["error_code"] == "INSUFFICIENT_STORAGE"
        assert "no space" in r.json()["message"].lower()
        assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0
    assert not list((tiny_disk / "data" / "uploads").glob("*"))


async def test_an_unreachable_s3_is_503_and_registers_nothing(tmp_path: Path) -> None:
    with running_moto_server(tmp_path / "moto.log") as endpoint:
        bucket = await create_bucket(endpoint)
        settings = load_settings(
            {},
            data_dir=str(tmp_path / "data"),
            admin_token=ADMIN,
            artifact_url=f"s3://{bucket}/m",
            s3_endpoint_url=endpoint,
            s3_region=S3_REGION,
            s3_access_key_id=S3_ACCESS_KEY,
            s3_secret_access_key=S3_SECRET_KEY,
        )
        client = AsyncTestClient(app=create_app(settings, "registry"))
        await client.__aenter__()
    try:  # moto is gone now
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
        r = await upload(client, write_bento(tmp_path / "a.bento").read_bytes())
        assert r.status_code == 503, r.text
        assert r.json()["error_code"] == "STORE_UNAVAILABLE" and endpoint in r.json()["message"]
        assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0
    finally:
        await client.__aexit__(None, None, None)


LONGEST = [
    "m" * MAX_NAME,  # 256 bytes: over a file name's 255
    "модель " * (MAX_NAME // 7) + "м" * (MAX_NAME % 7),  # 256 characters, 476 bytes
    "team forecasting - " + "x" * 46,  # 65 characters, with spaces (issue 18: refused)
]


@pytest.mark.parametrize("name", LONGEST, ids=["256-ascii", "256-cyrillic", "65-spaces"])
async def test_any_valid_name_up_to_the_limit_takes_a_bento(
    env: tuple[Client, Stores], tmp_path: Path, name: str
) -> None:
    """The name limit of the catalog (MAX_NAME) is the upload's: every valid name is stored on
    either artifact store (issue 18: names of 65-128 characters were refused there)."""
    client, stores = env
    path = "/api/v1/models/" + quote(name, safe="")
    assert (await client.post("/api/v1/models", json={"name": name})).status_code == 201
    data = write_bento(tmp_path / "a.bento").read_bytes()
    r = await client.post(
        f"{path}/versions/bento",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["model"] == name and r.json()["version"] == 1
    assert await stores.objects() == 1
    link = await client.get(f"{path}/versions/1/download-uri")
    assert link.status_code == 200, link.text


async def test_a_name_over_the_limit_is_refused_before_the_upload(
    env: tuple[Client, Stores], tmp_path: Path
) -> None:
    client, stores = env
    name = "m" * (MAX_NAME + 1)
    made = await client.post("/api/v1/models", json={"name": name})
    assert made.status_code == 400 and made.json()["field"] == "name"
    r = await client.post(
        f"/api/v1/models/{name}/versions/bento",
        content=write_bento(tmp_path / "a.bento").read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 400 and r.json()["field"] == "name", r.text
    assert await stores.objects() == 0
    assert not list((tmp_path / "uploads").glob("*")), "spooled upload left behind"
