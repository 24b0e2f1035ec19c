"""The routing decision, the breaker and shadow agreement: pure, no IO."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable

import msgspec
import pytest

from contract.routes import ModelRoute, VersionRoute
from contract.traffic import (
    BUCKETS,
    HeaderRule,
    Shadow,
    Split,
    StickyKey,
    TrafficPolicy,
    split_at,
)
from gateway.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from gateway.buckets import StickyBuckets
from gateway.errors import NoHealthyUpstream, UnknownModel
from gateway.routing import (
    CANARY,
    PINNED,
    RULE,
    STABLE,
    bucket,
    choose,
    next_draw,
    shadow_target,
)
from gateway.shadow import agree


def route(policy: TrafficPolicy | None = None, served: tuple[int, ...] = (1, 2, 3)) -> ModelRoute:
    versions = {v: VersionRoute(v, f"http://127.0.0.1:{9000 + v}", "bentoml") for v in served}
    return ModelRoute(
        "iris", 1, versions, {"champion": 1, "challenger": 2}, policy or TrafficPolicy()
    )


def canary(weight: float, salt: str = "s") -> TrafficPolicy:
    return TrafficPolicy(
        splits=[Split(version=2, weight=weight)], sticky=StickyKey(header="x-user"), salt=salt
    )


KEYS = [f"user-{i}" for i in range(10_000)]


def test_without_a_policy_everything_goes_to_production() -> None:
    assert choose(route()).version == 1
    assert choose(route()).variant == STABLE


def test_pins_by_version_and_alias() -> None:
    assert choose(route(canary(100)), version=3)[:2] == (3, PINNED)
    assert choose(route(canary(100)), alias="challenger")[:2] == (2, PINNED)
    with pytest.raises(UnknownModel):
        choose(route(), alias="nobody")
    with pytest.raises(NoHealthyUpstream):
        choose(route(), version=9)


def test_header_rules_force_a_version() -> None:
    policy = TrafficPolicy(rules=[HeaderRule(header="x-tester", value="yes", version=3)])
    assert choose(route(policy), headers={"x-tester": "yes"})[:2] == (3, RULE)
    assert choose(route(policy), headers={"x-tester": "no"}).version == 1


def test_buckets_are_stable_and_spread() -> None:
    assert bucket("s", "alice") == bucket("s", "alice")
    assert bucket("s", "alice") != bucket("t", "alice")
    counts = [0] * 10
    for key in KEYS:
        counts[bucket("s", key) // 1000] += 1
    assert max(counts) - min(counts) < 250  # ~1000 each


@pytest.mark.parametrize("weight", [1.0, 5.0, 25.0, 50.0])
def test_sticky_split_matches_the_weight(weight: float) -> None:
    r = route(canary(weight))
    share = sum(choose(r, key=k).version == 2 for k in KEYS) / len(KEYS)
    assert abs(share - weight / 100) < 0.015
    assert all(choose(r, key=k) == choose(r, key=k) for k in KEYS[:500])


def test_raising_the_weight_only_moves_users_to_the_candidate() -> None:
    before = {k: choose(route(canary(10)), key=k).version for k in KEYS}
    after = {k: choose(route(canary(30)), key=k).version for k in KEYS}
    back = [k for k in KEYS if before[k] == 2 and after[k] == 1]
    moved = [k for k in KEYS if before[k] == 1 and after[k] == 2]
    assert back == []
    assert 1500 < len(moved) < 2500


def test_random_split_without_a_key_uses_the_draw() -> None:
    r = route(TrafficPolicy(splits=[Split(version=2, weight=20)]))
    assert choose(r, draw=lambda _: 1999)[:2] == (2, CANARY)
    assert choose(r, draw=lambda _: 2000)[:2] == (1, STABLE)


def test_a_draw_is_asked_for_only_when_the_splits_decide() -> None:
    asked: list[str] = []

    def draw(model: str) -> int:
        asked.append(model)
        return 0

    rule = HeaderRule(header="x-tester", value="yes", version=3)
    r = route(TrafficPolicy(splits=[Split(version=2, weight=10)], rules=[rule]))
    assert choose(r, version=1, draw=draw).variant == PINNED
    assert choose(r, alias="champion", draw=draw).variant == PINNED
    assert choose(r, headers={"x-tester": "yes"}, draw=draw).variant == RULE
    assert choose(r, key="user-1", draw=draw).version in (1, 2)
    assert choose(route(), draw=draw).variant == STABLE
    assert asked == []
    assert choose(r, draw=draw)[:2] == (2, CANARY) and asked == ["iris"]


def test_draws_visit_every_bucket_once_per_cycle() -> None:
    draws, draw = [], 4321
    for _ in range(BUCKETS):
        draw = next_draw(draw)
        draws.append(draw)
    assert sorted(draws) == list(range(BUCKETS))


@pytest.mark.parametrize("weights", [(1,), (10,), (25,), (50,), (10, 30)])
def test_any_run_of_draws_splits_within_three_requests_of_the_weights(
    weights: tuple[float, ...],
) -> None:
    """Random draws would stray by sqrt(n * w): +-7 requests at one sigma for 10 % of 500."""
    splits = [Split(version=2 + i, weight=w) for i, w in enumerate(weights)]
    r = route(TrafficPolicy(splits=splits), served=(1, *range(2, 2 + len(weights))))
    for start in range(0, BUCKETS, 997):
        served, draw = [], start
        for _ in range(3000):
            draw = next_draw(draw)
            served.append(choose(r, draw=lambda _, at=draw: at).version)
        for n in (40, 500, 3000):
            for at in range(0, len(served) - n + 1, 97):
                window = Counter(served[at : at + n])
                for split in splits:
                    assert abs(window[split.version] - n * split.weight / 100) <= 3, (start, at)


def test_a_split_to_a_version_not_served_stays_on_stable() -> None:
    assert choose(route(canary(100), served=(1,)), key="a").version == 1
    with pytest.raises(NoHealthyUpstream):
        choose(route(served=(2,)))


def test_shadow_sampling() -> None:
    r = route(TrafficPolicy(shadow=Shadow(version=3, sample_percent=10)))
    assert shadow_target(r, 1, draw=999) is not None
    assert shadow_target(r, 1, draw=1000) is None
    assert shadow_target(r, 3, draw=0) is None  # never a copy to itself


def test_breaker_ejects_then_tries_one_request() -> None:
    b = Breaker(threshold=3, cooldown_s=5)
    for _ in range(2):
        b.failure(now=0)
    assert b.state(0) == CLOSED and b.allow(0)
    b.failure(now=1)
    assert b.state(2) == OPEN and not b.allow(2)
    assert b.state(6) == HALF_OPEN and b.allow(6) and not b.allow(6)
    b.failure(now=6)
    assert b.state(7) == OPEN
    assert b.allow(11.5)
    b.success()
    assert b.state(12) == CLOSED


@pytest.mark.parametrize(
    ("a", "b", "tol", "same"),
    [
        (b'{"p":[0,2]}', b'{"p":[0,2]}', 0.0, True),
        (b'{"p":[0,2]}', b'{"p":[0,1]}', 0.0, False),
        (b'{"p":[0.5]}', b'{"p":[0.51]}', 0.02, True),
        (b'{"p":[0.5]}', b'{"p":[0.6]}', 0.02, False),
        (b'{"p":[0.5]}', b'{"q":[0.5]}', 0.5, False),
        (b'{"p":true}', b'{"p":1}', 0.5, False),
        (b"not json", b"not json!", 1.0, False),
    ],
)
def test_shadow_agreement(a: bytes, b: bytes, tol: float, same: bool) -> None:
    assert agree(a, b, tol) is same


V1 = b'{"predictions":[0,2],"model_version":"v1"}'
V2 = b'{"model_version":"v2","predictions":[0,2]}'


@pytest.mark.parametrize(
    ("a", "b", "tol", "field", "same"),
    [
        # the whole answer (no field): another model_version is a disagreement, as before
        (V1, V2, 0.0, None, False),
        (V1, V2, 0.5, None, False),
        # a top-level field: only it counts, whatever the key order and the other fields
        (V1, V2, 0.0, "predictions", True),
        (V1, b'{"predictions":[0,1],"model_version":"v1"}', 0.0, "predictions", False),
        (V1, V2, 0.0, "model_version", False),
        (b'{"p":[1]}', b'{"p":[1.0]}', 0.0, "p", True),  # JSON values, not bytes
        (b'{"p":[true]}', b'{"p":[1]}', 0.0, "p", False),
        (b'{"p":"setosa"}', b'{"p":"setosa","extra":1}', 0.0, "p", True),
        (b'{"p":0.5}', b'{"p":0.51}', 0.0, "p", False),
        (b'{"p":0.5}', b'{"p":0.51}', 0.02, "p", True),  # the tolerance still applies
        # a dotted path into nested objects
        (b'{"out":{"label":2,"s":0.9}}', b'{"out":{"label":2,"s":0.7}}', 0, "out.label", True),
        (b'{"out":{"label":2}}', b'{"out":{"label":1}}', 0.0, "out.label", False),
        # a missing field disagrees, on either side and even on both
        (V1, b'{"model_version":"v2"}', 0.0, "predictions", False),
        (b'{"model_version":"v2"}', V1, 0.0, "predictions", False),
        (b'{"a":1}', b'{"a":1}', 0.0, "predictions", False),
        (b'{"out":[{"label":2}]}', b'{"out":[{"label":2}]}', 0.0, "out.label", False),
        (b'{"out":3}', b'{"out":3}', 0.0, "out.label", False),
        (b"[1, 2]", b"[1, 2]", 0.0, "predictions", False),
        (b"not json", b"not json", 0.0, "predictions", False),
    ],
)
def test_shadow_agreement_on_a_named_field(
    a: bytes, b: bytes, tol: float, field: str | None, same: bool
) -> None:
    assert agree(a, b, tol, field) is same


@pytest.mark.parametrize("field", ["", ".predictions", "predictions.", "a..b", "x" * 257])
def test_a_compare_field_must_be_a_dotted_path(field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="compare_field"):
        msgspec.convert({"version": 2, "compare_field": field}, Shadow)
    ok = msgspec.convert({"version": 2, "compare_field": "result.label"}, Shadow)
    assert ok.compare_field == "result.label"


def test_choices_are_cheap_enough_to_make_per_request() -> None:
    """Not a timing assertion (the machine is noisy): a smoke run of the benchmark's loop."""
    r = route(canary(25))
    rng = random.Random(1)
    versions = {choose(r, key=f"k{rng.randrange(10**6)}").version for _ in range(2000)}
    assert versions == {1, 2}


def test_rule_header_names_match_in_any_case() -> None:
    policy = TrafficPolicy(rules=[HeaderRule(header="X-Tester", value="yes", version=3)])
    assert choose(route(policy), headers={"x-tester": "yes"})[:2] == (3, RULE)


def _blake2b_bucket(salt: str, key: str) -> int:
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def test_buckets_are_blake2b_of_salt_nul_key_whatever_the_salt_or_key() -> None:
    """The sticky buckets are a contract between gateways and the registry's experiments:
    however `bucket` computes them, they are the first 8 bytes of BLAKE2b(salt NUL key)."""
    reference = _blake2b_bucket

    keys = ["", "alice", "ü-user", "x" * 300, "a\x00b", "user-17"]
    for salt in ("", "s", "ß", "bench", "y" * 64):
        for key in keys:
            assert bucket(salt, key) == reference(salt, key), (salt, key)
    assert bucket("s", "alice") == reference("s", "alice")  # again, from the salted state kept


def test_remembered_buckets_are_blake2bs_for_each_salt_and_stay_bounded() -> None:
    buckets = StickyBuckets(capacity=50)
    keys = [f"user-{n}" for n in range(200)] + ["", "ü-user", "a\x00b", "x" * 300]
    for _ in range(2):
        for salt in ("", "s", "bench"):
            for key in keys:
                assert buckets.of(salt, key) == bucket(salt, key), (salt, key)
                assert buckets.of(salt, key) == _blake2b_bucket(salt, key), (salt, key)
                assert len(buckets) <= 50
    assert len(buckets) == 50


def test_remembered_buckets_forget_the_least_recently_used_first() -> None:
    buckets = StickyBuckets(capacity=3)
    for key in ("a", "b", "a", "c"):  # a, b, c remembered: "a" hashed once
        buckets.of("s", key)
    assert buckets.of.cache_info()[:2] == (1, 3)  # hits, misses
    buckets.of("t", "a")  # another salt is another pair; ("s", "b"), used least lately, goes
    buckets.of("s", "a")
    buckets.of("s", "c")
    assert buckets.of.cache_info()[:2] == (3, 4)
    buckets.of("s", "b")
    assert buckets.of.cache_info()[:2] == (3, 5)
    assert len(buckets) == 3


def test_choose_takes_its_buckets_from_the_memo_it_is_given_but_for_long_keys() -> None:
    r = route(canary(10))
    buckets = StickyBuckets(longest=8)
    for n in range(500):
        key = f"user-{n}"
        assert choose(r, key=key, buckets=buckets) == choose(r, key=key)
    assert len(buckets) == 500
    for _ in range(2):
        assert choose(r, key="user-1", buckets=buckets) == choose(r, key="user-1")
    assert buckets.of.cache_info()[:2] == (2, 500)
    assert choose(r, key="x" * 9, buckets=buckets) == choose(r, key="x" * 9)
    assert len(buckets) == 500  # longer than `longest`: hashed, not remembered


def _at(point: int) -> Callable[[str], int]:
    """A draw that is always `point`."""
    return lambda name: point


@pytest.mark.parametrize(
    ("splits", "stable"),
    [
        ([Split(version=2, weight=10.0)], 1),
        ([Split(version=2, weight=12.5), Split(version=3, weight=33.3, variant="b")], 1),
        ([Split(version=1, weight=40.0), Split(version=2, weight=25.0)], 1),  # stable listed
        ([Split(version=2, weight=0.0), Split(version=3, weight=100.0)], 1),
        ([Split(version=2, weight=50.0)], 2),  # the stable version's own split takes none
    ],
)
def test_choose_splits_every_bucket_as_split_at_does(splits: list[Split], stable: int) -> None:
    """`choose` reads the splits' bucket ranges worked out once per policy and stable
    version; every bucket goes where `contract.traffic.split_at` sends it, and a new stable
    version is not served from ranges worked out for the old one."""
    versions = {v: VersionRoute(v, f"http://v{v}", "bentoml") for v in (1, 2, 3)}
    policy = TrafficPolicy(splits=splits)
    for production in (stable, 3 if stable != 3 else 1):
        served = ModelRoute("m", production, versions, {}, policy)
        for point in range(BUCKETS):
            chosen = choose(served, draw=_at(point))
            split = split_at(splits, point, production)
            if split is None:
                assert (chosen.version, chosen.variant) == (production, STABLE)
            else:
                assert (chosen.version, chosen.variant) == (split.version, split.variant or CANARY)
