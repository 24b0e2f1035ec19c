"""MLflow's reads over modelyard's Registry: latest versions per stage, and the two searches.

Searches page with MLflow's offset tokens. Candidates come from the store (narrowed by an exact
`name =`/`name IN` or a `name LIKE 'prefix%'`), the parsed filter is evaluated on each, then
the result is sorted by `order_by` with MLflow's tie-breakers (name ascending, then version
descending).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Final, TypeVar

from registry.catalog.changes import ModelFilter, VersionFilter
from registry.catalog.domain import Model, ModelVersion, Stage
from registry.catalog.service import Registry
from registry.errors import InvalidInput, NotFound
from registry.web.mlflow.messages import (
    MlflowModel,
    MlflowVersion,
    model_attributes,
    to_model,
    to_version,
    version_attributes,
)
from registry.web.mlflow.search_filter import (
    Filter,
    OrderBy,
    exact_names,
    matches,
    name_prefix,
)

PAGE: Final = 1000
T = TypeVar("T")


async def latest_versions(
    registry: Registry, name: str, stages: list[Stage] | None = None
) -> list[ModelVersion]:
    """The newest version in each stage (every stage when `stages` is empty), as MLflow."""
    found: list[ModelVersion] = []
    for stage in stages or list(Stage):
        page = await registry.list_versions(name, VersionFilter(stage=stage), None, 1)
        found += page
    return sorted(found, key=lambda v: v.version)


async def _models(registry: Registry, where: Filter) -> AsyncIterator[Model]:
    names = exact_names(where)
    if names is not None:
        for name in dict.fromkeys(names):
            try:
                yield await registry.get_model(name)
            except (NotFound, InvalidInput):  # an unknown or impossible name matches nothing
                continue
        return
    after: str | None = None
    prefix = name_prefix(where)
    while True:
        page = await registry.list_models(ModelFilter(prefix=prefix), after, PAGE)
        for model in page:
            yield model
        if len(page) < PAGE:
            return
        after = page[-1].name


async def _versions(registry: Registry, name: str) -> list[ModelVersion]:
    out: list[ModelVersion] = []
    before: int | None = None
    while True:
        page = await registry.list_versions(name, VersionFilter(), before, PAGE)
        out += page
        if len(page) < PAGE:
            return out
        before = page[-1].version


def _sorted(items: list[T], order: list[OrderBy], key_of: Callable[[T, str], Any]) -> list[T]:
    out = list(items)
    for o in reversed(order):  # stable sorts, least significant key first
        out.sort(key=lambda item, key=o.key: key_of(item, key), reverse=not o.ascending)  # type: ignore[misc]
    return out


def _model_key(m: MlflowModel, key: str) -> Any:
    return model_attributes(m)[key]


def _version_key(v: MlflowVersion, key: str) -> Any:
    return version_attributes(v)[key]


async def search_models(
    registry: Registry, where: Filter, order: list[OrderBy], offset: int, limit: int
) -> tuple[list[MlflowModel], int | None]:
    found: list[tuple[MlflowModel, Model]] = []
    async for model in _models(registry, where):
        mapped = to_model(model)
        if matches(where, model_attributes(mapped), model.tags):
            found.append((mapped, model))
    if not any(o.key == "name" for o in order):
        order = [*order, OrderBy("name")]
    ranked = _sorted(found, order, lambda pair, key: _model_key(pair[0], key))
    page = ranked[offset : offset + limit]
    out = [to_model(m, await latest_versions(registry, m.name)) for _, m in page]
    return out, (offset + limit if len(ranked) > offset + limit else None)


async def search_versions(
    registry: Registry, where: Filter, order: list[OrderBy], offset: int, limit: int
) -> tuple[list[MlflowVersion], int | None]:
    found: list[MlflowVersion] = []
    async for model in _models(registry, where):
        for version in await _versions(registry, model.name):
            mapped = to_version(version)
            if matches(where, version_attributes(mapped), version.tags):
                found.append(mapped)
    if not any(o.key == "name" for o in order):
        order = [*order, OrderBy("name")]
    if not any(o.key == "version_number" for o in order):
        order = [*order, OrderBy("version_number", ascending=False)]
    ranked = _sorted(found, order, _version_key)
    page = ranked[offset : offset + limit]
    return page, (offset + limit if len(ranked) > offset + limit else None)
