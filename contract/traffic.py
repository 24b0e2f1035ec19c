"""How a model's live traffic is split: the traffic policy the registry sets and every gateway
follows, the sticky buckets and the headers that pin a request. Pure.

(The registry's checks of a policy live in `registry.catalog.traffic`.)"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Final

import msgspec

BUCKETS: Final = 10_000  # sticky buckets: candidate iff bucket < weight * 100
DEFAULT_DEADLINE_MS: Final = 10_000
VERSION_HEADER: Final = "x-modelyard-version"  # pin a request to a version number...
ALIAS_HEADER: Final = "x-modelyard-alias"  # ...or to whatever an alias points at

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Version = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]  # a BIGINT
Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
#: Variant names the gateway reports traffic under (and the rollout judge reads).
STABLE_VARIANT: Final = "stable"  # the Production version, by default
CANARY_VARIANT: Final = "canary"  # a split's version, unless the split names its variant
SHADOW_VARIANT: Final = "shadow"  # copies sent to a shadow version

HeaderName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]{1,64}$")]


class _In(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Split(_In, frozen=True):
    """`weight` percent of the traffic to `version`, reported under `variant`."""

    version: Version
    weight: Percent
    variant: Name | None = None


class StickyKey(_In, frozen=True):
    """Where the key that keeps a user on one variant comes from (exactly one of these)."""

    header: HeaderName | None = None
    cookie: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    json_field: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class HeaderRule(_In, frozen=True):
    """Requests whose header `header` equals `value` go to `version`, whatever the weights."""

    header: HeaderName
    value: Annotated[str, msgspec.Meta(max_length=256)]
    version: Version


#: A field of a JSON answer: a top-level key, or a dotted path into nested objects (`a.b`).
AnswerField = Annotated[str, msgspec.Meta(pattern=r"^[^.]+(\.[^.]+)*$", max_length=256)]


class Shadow(_In, frozen=True):
    """A sampled copy of the traffic to `version`; its answers are compared, never returned.
    `compare_field` names the part of the answers compared (None: the whole answer)."""

    version: Version
    sample_percent: Percent = 100.0
    tolerance: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # 0: exact; else numeric |a-b|
    compare_field: AnswerField | None = None


class TrafficPolicy(_In, frozen=True):
    """Empty `splits` means everything to the Production version (variant `stable`)."""

    splits: Annotated[list[Split], msgspec.Meta(max_length=16)] = []
    sticky: StickyKey | None = None
    rules: Annotated[list[HeaderRule], msgspec.Meta(max_length=32)] = []
    shadow: Shadow | None = None
    salt: Annotated[str, msgspec.Meta(max_length=64)] = ""
    deadline_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] = DEFAULT_DEADLINE_MS
    #: The rollout (`ro-…`) or experiment (`ex-…`) that set this policy; empty when a person
    #: did. Set by the registry only; the gateway puts it on its spans.
    steered_by: Annotated[str, msgspec.Meta(max_length=64)] = ""


#: BLAKE2b's state after `salt NUL`, per salt: a copy of it fed the key hashes the same bytes
#: as hashing `salt NUL key` from scratch, for 5.7k instructions instead of 7.9k (setting a
#: hash up is dearer than copying one; every sticky request of the gateway hashes its key).
_SALTED: dict[str, Any] = {}
_MAX_SALTS: Final = 4096


def bucket(salt: str, key: str) -> int:
    """A sticky key's bucket in [0, BUCKETS): the same for the same salt and key, everywhere:
    the first 8 bytes of BLAKE2b(`salt NUL key`, UTF-8), big-endian, mod BUCKETS."""
    salted = _SALTED.get(salt)
    if salted is None:
        if len(_SALTED) >= _MAX_SALTS:
            _SALTED.clear()
        salted = _SALTED[salt] = hashlib.blake2b(f"{salt}\x00".encode(), digest_size=8)
    state = salted.copy()
    state.update(key.encode())
    return int.from_bytes(state.digest(), "big") % BUCKETS


def split_at(splits: list[Split], point: int, stable: int | None) -> Split | None:
    """The split owning bucket `point` (splits take consecutive ranges in their order; the
    stable version's own split, if listed, takes none), or None: the stable version."""
    upper = 0
    for split in splits:
        if split.version == stable:
            continue
        upper += round(split.weight * (BUCKETS // 100))
        if point < upper:
            return split
    return None


def references(policy: TrafficPolicy) -> list[tuple[str, int]]:
    """Every version the policy names, with the field that names it, in the policy's order."""
    named = [(f"splits[{i}].version", s.version) for i, s in enumerate(policy.splits)]
    named += [(f"rules[{i}].version", r.version) for i, r in enumerate(policy.rules)]
    if policy.shadow is not None:
        named.append(("shadow.version", policy.shadow.version))
    return named
