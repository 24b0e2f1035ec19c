"""The hot operations, one keep-alive client, sequential requests: the baseline (`/livez`),
promote, set-alias and get-by-alias on a model of a few versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loadtests.light_http import LightClient, LightResponse
from loadtests.registry_bench.common import (
    ALIAS,
    HOT_MODEL,
    Config,
    checked,
    expect,
    timed_loop,
)

# --- the measured operations ----------------------------------------------------------------


def bench_livez(client: LightClient, cfg: Config) -> list[float]:
    def check(_: int, body: Any) -> None:
        expect(body.get("status") == "ok", f"/livez said {body}")

    return timed_loop(lambda _: client.get("/livez"), check, cfg.iterations, cfg.warmup)


def bench_promote(client: LightClient, cfg: Config, versions: Sequence[int]) -> list[float]:
    """Promote versions[i % len] each time: every call archives the previous holder."""
    model = HOT_MODEL

    def call(i: int) -> LightResponse:
        body = {"stage": "Production", "archive_existing": True}
        return client.post(
            f"/api/v1/models/{model}/versions/{versions[i % len(versions)]}/stage", json=body
        )

    def check(i: int, body: Any) -> None:
        wanted = versions[i % len(versions)]
        expect(
            body["version"] == wanted and body["stage"] == "Production",
            f"promote {wanted} returned {body.get('version')} in {body.get('stage')}",
        )

    samples = timed_loop(call, check, cfg.iterations, cfg.warmup)
    last = cfg.warmup + cfg.iterations - 1
    previous = versions[(last - 1) % len(versions)]
    moved = checked(client.get(f"/api/v1/models/{model}/versions/{previous}"))
    expect(moved["stage"] == "Archived", f"version {previous} was not archived: {moved['stage']}")
    return samples


def bench_set_alias(client: LightClient, cfg: Config, versions: Sequence[int]) -> list[float]:
    """Point the alias at versions[i % len] each time: every call moves it."""

    def call(i: int) -> LightResponse:
        body = {"version": versions[i % len(versions)]}
        return client.put(f"/api/v1/models/{HOT_MODEL}/aliases/{ALIAS}", json=body)

    def check(i: int, body: Any) -> None:
        wanted = versions[i % len(versions)]
        expect(
            body["version"] == wanted and ALIAS in body["aliases"],
            f"set-alias to {wanted} returned {body.get('version')}",
        )

    return timed_loop(call, check, cfg.iterations, cfg.warmup)


def bench_get_by_alias(client: LightClient, cfg: Config) -> list[float]:
    url = f"/api/v1/models/{HOT_MODEL}/aliases/{ALIAS}"
    holder = checked(client.get(url))["version"]

    def check(_: int, body: Any) -> None:
        expect(body["version"] == holder, f"alias resolved to {body['version']}, not {holder}")

    return timed_loop(lambda _: client.get(url), check, cfg.iterations, cfg.warmup)
