"""MLflow's searches in SQL (adapters/sql/search.py), on both stores, against the reference: the
parsed filter evaluated in Python on every entity (search_filter.matches) and sorted by the keys
with MLflow's tie-breakers. Every page size walks the same rows in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.sql.store import SqlStore
from registry.catalog.changes import Caller, ModelFilter, VersionFilter
from registry.catalog.commands import ModelCreate, VersionCreate
from registry.catalog.domain import Principal, Role
from registry.catalog.service import Registry
from registry.errors import InvalidInput
from registry.ports import Search
from registry.web.mlflow.messages import (
    model_attributes,
    to_model,
    to_version,
    version_attributes,
)
from registry.web.mlflow.queries import page_after, page_token, search_versions
from registry.web.mlflow.search_filter import Target, matches, parse_filter, parse_order_by

ALICE = Caller(principal=Principal(1, "alice", Role.DEPLOYER), request_id="req-1")
NAMES = ["alpha", "Beta", "beta_2", "gam.ma", "delta", "Epsilon"]

VERSION_FILTERS = [
    None,
    "name = 'beta_2'",
    "name != 'alpha'",
    "name LIKE 'beta%'",
    "name LIKE 'b%'",
    "name ILIKE 'b%'",
    "name LIKE 'gam_ma'",
    "name LIKE 'beta_2'",
    "name IN ('alpha', 'delta', 'nope')",
    "name NOT IN ('alpha', 'delta')",
    "run_id = 'run-1'",
    "run_id IN ('run-0', 'run-2')",
    "run_id != 'run-0'",
    "source_path LIKE 's3://b/alpha/%'",
    "source_path = 's3://b/delta/3'",
    "version_number >= 3",
    "version_number != 2 AND name ILIKE '%A'",
    "tags.parity = 'even'",
    "tags.parity LIKE 'o%'",
    "tags.`mlflow.prompt.is_prompt` != 'true'",
    "tags.`mlflow.prompt.is_prompt` = 'true'",
]
VERSION_ORDERS = [
    [],
    ["name DESC"],
    ["version_number ASC"],
    ["timestamp DESC"],
    ["creation_timestamp ASC", "name DESC"],
    ["last_updated_timestamp"],
]


def ticking_clock() -> Any:
    """A clock that moves 1 ms per reading: the store orders times by the microsecond, MLflow
    (and this test's reference, which reads what clients see) by the millisecond, so two writes
    in one millisecond would be ordered differently (docs/mlflow.md lists it)."""
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def read() -> datetime:
        nonlocal now
        now += timedelta(milliseconds=1)
        return now

    return read


@pytest.fixture
async def registry(store: SqlStore) -> Registry:
    registry = Registry(store, clock=ticking_clock())
    for i, name in enumerate(NAMES):
        tags = {"mlflow.prompt.is_prompt": "true"} if i == 4 else {}
        await registry.create_model(ALICE, ModelCreate(name=name, tags={"n": str(i), **tags}))
        for v in range(1 + i % 4):
            tags = {"parity": "even" if v % 2 == 0 else "odd"} if v < 3 else {}
            cmd = VersionCreate(
                endpoint=f"http://svc-{i}-{v}:3000",
                source=f"s3://b/{name}/{v + 1}" if v != 1 else None,
                run_id=f"run-{v}" if v < 3 else None,
                tags=tags,
            )
            await registry.create_version(ALICE, name, cmd)
    await registry.set_version_tag(ALICE, "alpha", 1, "touched", "yes", None)
    return registry


async def _everything(registry: Registry) -> tuple[list[Any], list[Any]]:
    models = await registry.list_models(ModelFilter(), None, 1000)
    versions = [
        v for m in models for v in await registry.list_versions(m.name, VersionFilter(), None, 99)
    ]
    return models, versions


def _reference(items: list[Any], order: list[Any], key_of: Any, ties: list[Any]) -> list[Any]:
    keys = list(order)
    for tie in ties:
        if not any(k.key == tie.key for k in keys):
            keys.append(tie)
    out = list(items)
    for o in reversed(keys):
        out.sort(key=lambda x, k=o.key: key_of(x)[k], reverse=not o.ascending)  # type: ignore[misc]
    return out


@pytest.mark.parametrize("order_text", VERSION_ORDERS, ids=str)
async def test_version_search_matches_the_reference_on_every_page_size(
    registry: Registry, order_text: list[str]
) -> None:
    _, versions = await _everything(registry)
    order = parse_order_by(order_text, Target.VERSIONS)
    ties = parse_order_by(["name ASC", "version_number DESC"], Target.VERSIONS)
    for text in VERSION_FILTERS:
        where = parse_filter(text, Target.VERSIONS)
        mapped = [to_version(v) for v in versions]
        kept = [
            m
            for m, v in zip(mapped, versions, strict=True)
            if matches(where, version_attributes(m), v.tags)
        ]
        expected = [(v.name, v.version) for v in _reference(kept, order, version_attributes, ties)]
        for size in (1, 2, 5, 100):
            got: list[tuple[str, str]] = []
            token: str | None = None
            while True:
                page, token = await search_versions(registry, where, order, token, size)
                assert len(page) <= size
                got += [(v.name, v.version) for v in page]
                if not token:
                    break
            assert got == expected, (text, order_text, size)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "name LIKE '%a'",
        "name ILIKE 'B%'",
        "tags.`mlflow.prompt.is_prompt` != 'true'",
        "tags.n = '3'",
        "name = 'nope'",
    ],
)
async def test_model_search_matches_the_reference(registry: Registry, text: str | None) -> None:
    models, _ = await _everything(registry)
    where = parse_filter(text, Target.MODELS)
    ties = parse_order_by(["name ASC"], Target.MODELS)
    for order_text in (["name DESC"], ["timestamp DESC"], ["creation_timestamp"], []):
        order = parse_order_by(order_text, Target.MODELS)
        kept = [m for m in models if matches(where, model_attributes(to_model(m)), m.tags)]
        by = _reference([to_model(m) for m in kept], order, model_attributes, ties)
        got: list[str] = []
        after = None
        while True:
            page = await registry.store.search_models(Search(where, tuple(order), 2, after))
            got += [m.name for m in page.items]
            if page.last is None:
                break
            after = page.last
        assert got == [m.name for m in by], (text, order_text)


def test_page_tokens_are_sealed_and_bound_to_their_search() -> None:
    where = parse_filter("name = 'a'", Target.VERSIONS)
    order = parse_order_by(["name DESC"], Target.VERSIONS)
    token = page_token(where, order, ("a", 3))
    assert page_after(where, order, token) == ("a", 3)
    assert page_token(where, order, None) == ""
    assert page_after(where, order, None) is None and page_after(where, order, "") is None
    body, _, seal = token.partition(".")
    forged = page_token(where, order, ("a", 4)).partition(".")[0] + "." + seal
    other = parse_filter("name = 'b'", Target.VERSIONS)
    for bad in ("garbage", "eyJvZmZzZXQiOiAyfQ==", forged, body, token + "x", "...."):
        with pytest.raises(InvalidInput):
            page_after(where, order, bad)
    with pytest.raises(InvalidInput, match="another filter"):
        page_after(other, order, token)
