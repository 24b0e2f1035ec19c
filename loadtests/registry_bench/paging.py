"""The first page of a long list: the native API's and MLflow's `search_model_versions`, with
a name and without one, in the two shapes of a registry (one model of 100,000 versions; 1,000
models of 100)."""

from __future__ import annotations

from typing import Any

from loadtests.light_http import LightClient, LightResponse
from loadtests.registry_bench.common import (
    HOT_MODEL,
    HOT_VERSIONS,
    MANY_PREFIX,
    MLFLOW_SEARCH,
    PAGE_MODEL,
    PAGE_SIZE,
    Config,
    expect,
    timed_loop,
)


def bench_first_page(client: LightClient, cfg: Config, total: int) -> list[float]:
    url = f"/api/v1/models/{PAGE_MODEL}/versions"
    wanted = list(range(total, total - PAGE_SIZE, -1))

    def check(_: int, body: Any) -> None:
        got = [item["version"] for item in body["items"]]
        expect(got == wanted, f"first page holds {len(got)} items from {got[:1]} to {got[-1:]}")
        expect(body["next_cursor"] is not None, "first page has no next_cursor")

    def call(_: int) -> LightResponse:
        return client.get(url, params={"limit": PAGE_SIZE})

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


def bench_mlflow_first_page(client: LightClient, cfg: Config, total: int) -> list[float]:
    params = {"filter": f"name = '{PAGE_MODEL}'", "max_results": str(PAGE_SIZE)}
    wanted = [str(n) for n in range(total, total - PAGE_SIZE, -1)]

    def check(_: int, body: Any) -> None:
        got = [item["version"] for item in body["model_versions"]]
        expect(got == wanted, f"MLflow first page holds {len(got)} items from {got[:1]}")
        expect(bool(body.get("next_page_token")), "MLflow first page has no next_page_token")

    def call(_: int) -> LightResponse:
        return client.get(MLFLOW_SEARCH, params=params)

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


def bench_mlflow_all_one_model(client: LightClient, cfg: Config, total: int) -> list[float]:
    """No name filter while one model holds `total` versions: the page is the hot model's few
    versions, then the newest of that one model (PostgreSQL must not sort all of them)."""
    params = {"max_results": str(PAGE_SIZE)}
    wanted = [(HOT_MODEL, n) for n in range(HOT_VERSIONS, 0, -1)]
    wanted += [(PAGE_MODEL, n) for n in range(total, total - PAGE_SIZE + HOT_VERSIONS, -1)]

    def check(_: int, body: Any) -> None:
        got = [(item["name"], int(item["version"])) for item in body["model_versions"]]
        expect(got == wanted, f"MLflow page holds {len(got)} items from {got[:1]} to {got[-1:]}")
        expect(bool(body.get("next_page_token")), "MLflow page has no next_page_token")

    def call(_: int) -> LightResponse:
        return client.get(MLFLOW_SEARCH, params=params)

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))


def bench_mlflow_all_models(client: LightClient, cfg: Config) -> list[float]:
    """No name filter: the registry's first 100 versions, by name then newest version."""
    params = {"max_results": str(PAGE_SIZE)}

    def check(_: int, body: Any) -> None:
        got = [(item["name"], -int(item["version"])) for item in body["model_versions"]]
        expect(len(got) == PAGE_SIZE and got == sorted(got), "MLflow page out of order")
        expect(any(n.startswith(MANY_PREFIX) for n, _ in got), "no seeded model on the page")
        expect(bool(body.get("next_page_token")), "MLflow page has no next_page_token")

    def call(_: int) -> LightResponse:
        return client.get(MLFLOW_SEARCH, params=params)

    return timed_loop(call, check, cfg.page_iterations, min(cfg.warmup, 10))
