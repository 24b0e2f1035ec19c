"""Hostile input gets a 4xx naming the field, never a 500 (issue 18): YAML alias bombs and
oversized strings in bento.yaml and in a JSON version's API declarations, version numbers and
cursors out of range, windows with out-of-range numbers."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import msgspec
import pytest
import yaml

from adapters.bento_archive import read_bento
from registry.errors import BadArtifact
from tests.integration.bentos import manifest, write_bento
from tests.integration.test_api import VERSION, Client, client, error, model_with_versions

__all__ = ["client"]

HUGE = 2**63


def alias_bomb(depth: int = 8) -> bytes:
    """A "billion laughs" bento.yaml: 2 KB that expands 10**depth-fold."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, depth + 1):
        refs = ",".join([f"*a{n - 1}"] * 10)
        lines.append(f"a{n}: &a{n} [{refs}]")
    lines += [f"name: *a{depth}", "version: v1"]
    return "\n".join(lines).encode()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_an_alias_bomb_is_refused_fast_without_memory(tmp_path: Path) -> None:
    path = write_bento(tmp_path / "bomb.bento", bento_yaml=alias_bomb())
    before = rss_kib()
    started = time.perf_counter()
    with pytest.raises(BadArtifact, match="anchors or aliases"):
        read_bento(path)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1, f"{elapsed * 1000:.0f} ms"
    assert rss_kib() - before < 5 * 1024


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"name": "n" * 10_000}, "name must have 1 to 500"),
        ({"version": ["a", "list"]}, "version must be a string"),
        ({"schema": {"routes": [{"route": "/classify"}]}}, "needs a name"),
        ({"schema": {"routes": [{"name": "x" * 300}]}}, "1 to 256"),
        ({"schema": {"routes": [{"name": f"r{n}"} for n in range(101)]}}, "at most 100"),
        ({"apis": [{"input": "x"}], "schema": {}}, "needs a name"),
        ({"services": [{"models": [{"tag": "t" * 600}]}]}, "a model tag"),
        ({"schema": {"routes": [{"name": "a\x00b"}]}}, "NUL character"),
        ({"services": [{"models": [{"tag": "a\x00b"}]}]}, "NUL character"),
    ],
)
def test_manifest_strings_are_held_to_the_api_limits(
    tmp_path: Path, change: dict[str, object], match: str
) -> None:
    doc = {**manifest(), **change}
    path = write_bento(tmp_path / "m.bento", bento_yaml=yaml.safe_dump(doc).encode())
    with pytest.raises(BadArtifact, match=match):
        read_bento(path)


async def test_an_alias_bomb_upload_is_422(client: Client, tmp_path: Path) -> None:
    assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
    path = write_bento(tmp_path / "bomb.bento", bento_yaml=alias_bomb())
    r = await client.post(
        "/api/v1/models/iris/versions/bento",
        content=path.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    error(r, 422, "INVALID_ARTIFACT", "bento")
    assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0


@pytest.mark.parametrize("number", [HUGE, 10**30])
async def test_huge_version_numbers_are_400_on_every_route(client: Client, number: int) -> None:
    await model_with_versions(client, 1)
    base = f"/api/v1/models/iris/versions/{number}"
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"description": "x"}),
        ("DELETE", base, None),
        ("POST", f"{base}/stage", {"stage": "Staging"}),
        ("PUT", f"{base}/tags/k", {"value": "v"}),
        ("DELETE", f"{base}/tags/k", None),
        ("GET", f"{base}/audit", None),
        ("GET", f"{base}/download-uri", None),
        ("GET", f"{base}/deployment", None),
        ("PUT", "/api/v1/models/iris/aliases/champion", {"version": number}),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == 400, (method, path, r.status_code, r.text)
        assert r.json()["error_code"], r.text
    mlflow = "/api/2.0/mlflow"
    for method, path, body in [
        ("GET", f"{mlflow}/model-versions/get", {"name": "iris", "version": str(number)}),
        ("PATCH", f"{mlflow}/model-versions/update", {"name": "iris", "version": str(number)}),
        ("DELETE", f"{mlflow}/model-versions/delete", {"name": "iris", "version": str(number)}),
        (
            "POST",
            f"{mlflow}/model-versions/transition-stage",
            {"name": "iris", "version": str(number), "stage": "Staging"},
        ),
        (
            "POST",
            f"{mlflow}/registered-models/alias",
            {"name": "iris", "alias": "champion", "version": str(number)},
        ),
    ]:
        if method == "GET":
            r = await client.get(path, params=body)
        else:
            r = await client.request(method, path, json=body)
        error(r, 400, "INVALID_PARAMETER_VALUE")  # MLflow's error body: the field in the text
        assert r.json()["message"].startswith("version must be"), r.text


def _cursor(kind: str, key: object) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([kind, key])).decode().rstrip("=")


async def test_bad_cursors_are_400(client: Client) -> None:
    await model_with_versions(client, 2)
    for path, kind in [
        ("/api/v1/models/iris/versions", "versions"),
        ("/api/v1/models/iris/audit", "audit"),
        ("/api/v1/models/iris/versions/1/audit", "audit"),
    ]:
        for cursor in ["not-a-cursor", _cursor(kind, "abc"), _cursor(kind, 10**30), "AAAA"]:
            r = await client.get(path, params={"cursor": cursor})
            error(r, 400, "INVALID_PARAMETER_VALUE", "cursor")


@pytest.mark.parametrize(
    "change",
    [
        {"requests": HUGE},
        {"errors": HUGE},
        {"compared": 10**30},
        {"version": HUGE},
        {"latencies_ms": [-1.0]},
        {"latencies_ms": [1e300]},
    ],
)
async def test_windows_with_out_of_range_numbers_are_400(
    client: Client, change: dict[str, object]
) -> None:
    window = {
        "model": "iris",
        "version": 1,
        "variant": "stable",
        "requests": 1,
        "errors": 0,
        "latencies_ms": [1.0],
        **change,
    }
    r = await client.post("/api/v1/windows", json={"source": "gw", "windows": [window]})
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"


async def test_deeply_nested_json_is_400(client: Client) -> None:
    # this client's body limit is 64 KiB; 10,000 levels are ten times what decoders survive
    deep = b"[" * 30_000 + b"]" * 30_000
    obj = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    for path in ["/api/v1/models", "/api/2.0/mlflow/registered-models/create"]:
        for body in (deep, obj):
            r = await client.post(path, content=body, headers={"Content-Type": "application/json"})
            error(r, 400, "INVALID_PARAMETER_VALUE")
            assert "nests deeper" in r.json()["message"], r.text


@pytest.mark.parametrize(
    "apis",
    [
        [{"name": "x" * 257}],
        [{"name": ""}],
        [{"name": "classify", "inputs": ["i" * 257]}],
        [{"name": "classify", "inputs": [""]}],
        [{"name": "classify", "inputs": [f"i{n}" for n in range(101)]}],
        [{"name": f"a{n}"} for n in range(101)],
    ],
    ids=["long-name", "empty-name", "long-input", "empty-input", "101-inputs", "101-apis"],
)
async def test_json_api_declarations_are_held_to_the_bento_limits(
    client: Client, apis: list[dict[str, object]]
) -> None:
    """The JSON create-version path holds the APIs to what a Bento's manifest may say."""
    assert (await client.post("/api/v1/models", json={"name": "iris"})).status_code == 201
    body = {"endpoint": "http://127.0.0.1:9", "apis": apis}
    r = await client.post("/api/v1/models/iris/versions", json=body)
    error(r, 400, "INVALID_PARAMETER_VALUE")
    assert r.json()["field"].startswith("apis"), r.text
    assert (await client.get("/api/v1/models/iris")).json()["latest_version"] == 0
    # at the limits it is taken
    fits = [{"name": "x" * 256, "inputs": [f"i{n}" for n in range(100)]}]
    r = await client.post("/api/v1/models/iris/versions", json={**body, "apis": fits})
    assert r.status_code == 201, r.text
    assert r.json()["apis"] == fits


NUL = "a\u0000b"


async def test_nul_characters_are_400_naming_the_field_on_both_stores(client: Client) -> None:
    """PostgreSQL's text cannot hold U+0000 (a 500 there, found by the API fuzz): refused in
    bodies, query and path parameters, on /api/v1 and the MLflow dialect, on both stores."""
    await model_with_versions(client, 1)
    v1 = "/api/v1/models/iris"
    for method, path, body, field in [
        ("POST", "/api/v1/models", {"name": "m", "description": NUL}, "description"),
        ("POST", "/api/v1/models", {"name": "m", "tags": {NUL: "v"}}, "tags"),
        ("PATCH", v1, {"description": NUL}, "description"),
        ("PUT", f"{v1}/tags/k", {"value": NUL}, "value"),
        ("PUT", f"{v1}/tags/a%00b", {"value": "v"}, "key"),
        ("POST", f"{v1}/versions", {**VERSION, "metrics": {"ok": 1, NUL: 2}}, "metrics"),
        ("POST", f"{v1}/versions", {**VERSION, "apis": [{"name": NUL}]}, "apis[0].name"),
        ("PATCH", f"{v1}/versions/1", {"description": NUL}, "description"),
        ("POST", f"{v1}/versions/1/stage", {"stage": "Staging", "reason": NUL}, "reason"),
        ("PUT", f"{v1}/aliases/champion", {"version": 1, "reason": NUL}, "reason"),
        ("GET", "/api/v1/models?prefix=a%00b", None, "prefix"),
        ("GET", f"{v1}/versions?tag=k%3Da%00b", None, "tag"),
        ("GET", f"{v1}/audit?since=a%00b", None, "since"),
    ]:
        r = await client.request(method, path, json=body)
        error(r, 400, "INVALID_PARAMETER_VALUE", field)
    mlflow = "/api/2.0/mlflow"
    for method, path, body in [
        ("POST", f"{mlflow}/registered-models/create", {"name": "m", "description": NUL}),
        ("PATCH", f"{mlflow}/registered-models/update", {"name": "iris", "description": NUL}),
        ("POST", f"{mlflow}/model-versions/create", {"name": "iris", "source": f"s3://b/{NUL}"}),
        ("GET", f"{mlflow}/registered-models/search?filter=name%3D%27a%00b%27", None),
        ("GET", f"{mlflow}/registered-models/get?name=a%00b", None),
    ]:
        r = await client.request(method, path, json=body)
        error(r, 400, "INVALID_PARAMETER_VALUE")
        assert "NUL character" in r.json()["message"], r.text
    # nothing was written; an escaped backslash before `u0000` is no NUL and is taken
    models = (await client.get("/api/v1/models")).json()["items"]
    assert [m["name"] for m in models] == ["iris"]
    got = (await client.get(v1)).json()
    assert (got["description"], got["tags"], got["latest_version"]) == ("", {}, 1)
    r = await client.patch(v1, content=b'{"description": "a\\\\u0000b"}')
    assert r.status_code == 200 and r.json()["description"] == "a\\u0000b", r.text


async def test_ids_and_versions_of_2_63_or_more_are_400_on_every_other_route(
    client: Client,
) -> None:
    """Found by the API fuzz on PostgreSQL (a token id of 2^64 was a 500): every integer that
    reaches a BIGINT column is bounded before it does."""
    await model_with_versions(client, 1)
    arms = [{"version": 1, "weight": 50}, {"version": HUGE, "weight": 50}]
    for method, path, body, field in [
        ("DELETE", f"/api/v1/tokens/{HUGE}", None, "token_id"),
        ("DELETE", f"/api/v1/tokens/{2**64}", None, "token_id"),
        ("DELETE", f"/api/v1/tokens/{-(2**63) - 1}", None, "token_id"),
        ("GET", f"/api/v1/routes?after={HUGE}", None, "after"),
        ("GET", f"/api/v1/rollouts/ro-x?after={HUGE}", None, "after"),
        ("POST", "/api/v1/models/iris/rollouts", {"candidate": HUGE}, "candidate"),
        (
            "POST",
            "/api/v1/models/iris/experiments",
            {"arms": arms, "sticky": {"header": "x-user"}},
            "arms[1].version",
        ),
        ("POST", "/api/v1/experiments/ex-x/stop", {"promote": HUGE}, "promote"),
        (
            "POST",
            "/api/v1/experiments/ex-x/feedback",
            {"outcomes": [{"value": 1, "version": HUGE}]},
            "outcomes[0].version",
        ),
    ]:
        r = await client.request(method, path, json=body)
        error(r, 400, "INVALID_PARAMETER_VALUE", field)
    assert (await client.get("/api/v1/tokens")).json()["items"][0]["revoked_at"] is None
