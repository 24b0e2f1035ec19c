"""The routing decision: which version serves a request, under which variant name. Pure.

Order: an explicit pin (version number or alias, from the path or a header) wins; then the
policy's header rules; then the weighted splits; the rest goes to the stable (Production)
version. With a sticky key, `bucket = hash(salt, key) mod 10000` and a split takes the buckets
below its cumulative weight * 100, so raising a single canary's weight only ever moves users
from the stable version to the canary, never back.

Without a key the bucket is a draw, and draws step through the buckets by a golden-ratio
stride (a Weyl sequence, `next_draw`, kept per model by `gateway.draws.Draws`) instead of at
random; `choose` asks for one only when the splits decide the request. Any run of n requests
to a model then splits within two or three requests of the weights, where random draws stray
by about sqrt(n * w) (a 10 % canary over 500 requests: +-7 at one sigma). A canary at 10 %
serves 10 % of requests, not 10 % give or take a few points, which is what the share of
requests a bad candidate can reach is judged against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import (
    BUCKETS,
    CANARY_VARIANT,
    STABLE_VARIANT,
    bucket,
)
from gateway.buckets import StickyBuckets
from gateway.errors import NoHealthyUpstream, UnknownModel

__all__ = [
    "CANARY",
    "PINNED",
    "RULE",
    "STABLE",
    "STRIDE",
    "Choice",
    "Draw",
    "bucket",
    "choose",
    "next_draw",
    "shadow_target",
]

STABLE: Final = STABLE_VARIANT
CANARY: Final = CANARY_VARIANT
PINNED: Final = "pinned"
RULE: Final = "rule"
#: ~ BUCKETS / golden ratio, and coprime with BUCKETS: 10,000 draws visit every bucket once.
STRIDE: Final = 6181
#: A model's name -> its next draw in [0, BUCKETS).
Draw = Callable[[str], int]


class Choice(NamedTuple):
    version: int
    variant: str
    route: VersionRoute


class _Plan:
    """What `choose` reads of one route, read once: a `ModelRoute` and its policy are msgspec
    Structs, whose fields compiled code (mypyc) reads by generic attribute lookups (0.16k
    instructions each; `choose` read 8 to 10 a request); here they are a native class's
    (loadtests/hotpath_profile.py --callgrind: compiled pinned -0.4k, routed -1.9k instructions
    a request; interpreted +0.7k, -0.45k). A route is frozen: one read is good for as long as it is
    served.

    `ranges`: each split that takes buckets, as (end of its bucket range, version, variant),
    as `split_at` adds them up (its frame and a `round` per split a request: 0.85k)."""

    __slots__ = ("name", "ranges", "route", "rules", "salt", "splits", "stable", "versions")

    def __init__(self, route: ModelRoute) -> None:
        policy = route.policy
        self.route = route  # kept: its id cannot be reused while it is remembered
        self.name = route.name
        self.stable = route.stable
        self.versions = route.versions
        self.rules = policy.rules
        self.splits = bool(policy.splits)
        self.salt = policy.salt or route.name
        upper, ranges = 0, []
        for split in policy.splits:  # (as `split_at` walks them)
            if split.version == route.stable:
                continue
            upper += round(split.weight * (BUCKETS // 100))
            ranges.append((upper, split.version, split.variant or CANARY))
        self.ranges = ranges


#: Per route (by id, checked by identity), its `_Plan`. Up to this many.
_PLANS: dict[int, _Plan] = {}
_MAX_PLANS: Final = 4096


def _plan(route: ModelRoute) -> _Plan:
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    found = _PLANS[id(route)] = _Plan(route)
    return found


def next_draw(draw: int) -> int:
    """The draw after `draw` in a model's sequence (see the module's docstring)."""
    return (draw + STRIDE) % BUCKETS


def _served(route: ModelRoute, version: int, variant: str) -> Choice:
    found = route.versions.get(version)
    if found is None:
        raise NoHealthyUpstream(f"version {version} of {route.name!r} is not being served now")
    # tuple.__new__: a NamedTuple's own __new__ is a Python function (one frame a request)
    return tuple.__new__(Choice, (version, variant, found))


def choose(
    route: ModelRoute,
    version: int | None = None,
    alias: str | None = None,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    draw: Draw | None = None,
    buckets: StickyBuckets | None = None,
) -> Choice:
    """`draw` is called (once) only when the splits decide a request without a sticky key, so
    pinned, ruled and keyed requests leave the model's sequence unbroken; `headers` has
    lower-case names (HTTP header names are case-insensitive); `buckets` remembers sticky
    keys' buckets (None: each key is hashed; the same buckets either way)."""
    if alias is not None:
        pinned = route.aliases.get(alias)
        if pinned is None:
            raise UnknownModel(f"model {route.name!r} has no alias {alias!r}", field="alias")
        return _served(route, pinned, PINNED)
    if version is not None:
        return _served(route, version, PINNED)
    plan = _PLANS.get(id(route))
    if plan is None or plan.route is not route:
        plan = _plan(route)
    versions = plan.versions
    if plan.rules and headers:
        for rule in plan.rules:
            if headers.get(rule.header.lower()) == rule.value and rule.version in versions:
                return Choice(rule.version, RULE, versions[rule.version])
    if plan.splits:
        if key is not None:
            if buckets is not None and len(key) <= buckets.longest:
                point = buckets.of(plan.salt, key)
            else:
                point = bucket(plan.salt, key)
        else:
            point = draw(plan.name) if draw is not None else 0
        for upper, split_version, variant in plan.ranges:  # `split_at`, from the ranges
            if point < upper:
                target = versions.get(split_version)
                if target is not None:
                    return tuple.__new__(Choice, (split_version, variant, target))
                break  # its version is not served: this user stays on stable
    stable = plan.stable
    if stable is None:
        raise NoHealthyUpstream(f"model {route.name!r} has no Production version to serve")
    found = versions.get(stable)  # `_served`, inlined for the most common answer
    if found is None:
        return _served(route, stable, STABLE)  # (raises)
    return tuple.__new__(Choice, (stable, STABLE, found))


def shadow_target(route: ModelRoute, chosen: int, draw: int) -> VersionRoute | None:
    """The version a sampled copy goes to, if this request is sampled."""
    shadow = route.policy.shadow
    if shadow is None or shadow.version == chosen or draw >= shadow.sample_percent * 100:
        return None
    return route.versions.get(shadow.version)
