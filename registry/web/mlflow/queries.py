"""MLflow's reads over modelyard's Registry: latest versions per stage, and the two searches.

The searches run in the store as one keyset-paged query each (adapters/sql/search.py), sorted by
`order_by` with MLflow's tie-breakers (name ascending, then version descending). Their page
tokens carry the last row's keyset, sealed (a keyed hash: garbage and edits are refused with 400
INVALID_PARAMETER_VALUE) and bound to the search's filter and order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any, Final

import msgspec

from registry.catalog.domain import ModelVersion, Stage
from registry.catalog.service import Registry
from registry.errors import InvalidInput
from registry.ports import Filter, OrderBy, Search
from registry.web.mlflow.messages import MlflowModel, MlflowVersion, to_model, to_version

#: Seals page tokens against edits. Not a secret: a token only says where a page starts.
_TOKEN_KEY: Final = b"modelyard mlflow page token v1"


async def latest_versions(
    registry: Registry, name: str, stages: list[Stage] | None = None
) -> list[ModelVersion]:
    """The newest version in each stage (every stage when `stages` is empty), as MLflow."""
    found = await registry.store.latest_versions([name], stages or list(Stage))
    if name not in found:
        await registry.get_model(name)  # a model that does not exist is a 404
    return found.get(name, [])


def _fingerprint(where: Filter, order: list[OrderBy]) -> str:
    return hashlib.blake2b(msgspec.json.encode((where, order)), digest_size=6).hexdigest()


def page_token(where: Filter, order: list[OrderBy], last: tuple[Any, ...] | None) -> str:
    """An opaque token for the page after the row `last` of this search ('' when none)."""
    if last is None:
        return ""
    payload = msgspec.json.encode([_fingerprint(where, order), list(last)])
    seal = hashlib.blake2b(payload, key=_TOKEN_KEY, digest_size=10).hexdigest()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + seal


def page_after(where: Filter, order: list[OrderBy], token: str | None) -> tuple[Any, ...] | None:
    """The keyset a token carries; a token this server did not give for this search is a 400."""
    if not token:
        return None
    body, _, seal = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        expected = hashlib.blake2b(payload, key=_TOKEN_KEY, digest_size=10).hexdigest()
        if not hmac.compare_digest(seal, expected):
            raise ValueError("seal")
        fingerprint, last = msgspec.json.decode(payload, type=tuple[str, list[str | int]])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidInput(
            "invalid page_token: not one this server returned", field="page_token"
        ) from None
    if fingerprint != _fingerprint(where, order):
        raise InvalidInput(
            "invalid page_token: it belongs to a search with another filter or order_by",
            field="page_token",
        )
    return tuple(last)


async def search_models(
    registry: Registry, where: Filter, order: list[OrderBy], token: str | None, limit: int
) -> tuple[list[MlflowModel], str]:
    query = Search(where, tuple(order), limit, page_after(where, order, token))
    page = await registry.store.search_models(query)
    # one query for the page's latest versions (aliases and tags came with the models)
    latest = await registry.store.latest_versions([m.name for m in page.items], list(Stage))
    out = [to_model(m, latest.get(m.name, [])) for m in page.items]
    return out, page_token(where, order, page.last)


async def search_versions(
    registry: Registry, where: Filter, order: list[OrderBy], token: str | None, limit: int
) -> tuple[list[MlflowVersion], str]:
    query = Search(where, tuple(order), limit, page_after(where, order, token))
    page = await registry.store.search_versions(query)
    return [to_version(v) for v in page.items], page_token(where, order, page.last)
