"""The sticky keys' buckets a gateway process has hashed, remembered: state behind the routing
decision, kept out of the pure `gateway.routing.choose` (as `gateway.draws` keeps the draws)."""

from __future__ import annotations

import functools

from contract.traffic import bucket


class StickyBuckets:
    """`contract.traffic.bucket`, remembered: users come back (a gateway's sticky requests
    repeat a bounded crowd of keys), and hashing a key again costs about 3k instructions a
    request where finding it costs a few hundred (loadtests/hotpath_profile.py --callgrind,
    leg `routed`). The buckets are `bucket`'s, always: this only saves recomputing them.

    `of(salt, key)` is `bucket` behind a `functools.lru_cache` of its own (C: a key seen
    before is found with no Python frame; a new one costs a few hundred instructions more
    than `bucket`, leg `routed-fresh`). Bounded: the `capacity` (salt, key) pairs used last,
    the least recently used forgotten one at a time (no pause to clear a full memo), and
    only for keys of at most `longest` characters (`gateway.routing.choose` hashes a longer
    one every time): at most about `capacity` x (`longest` + 200) bytes (65,536 keys of 128
    characters: ~21 MB; of 36: ~15 MB)."""

    __slots__ = ("capacity", "longest", "of")

    def __init__(self, capacity: int = 65_536, longest: int = 128) -> None:
        self.capacity = capacity
        self.longest = longest
        self.of: functools._lru_cache_wrapper[int] = functools.lru_cache(maxsize=capacity)(bucket)

    def __len__(self) -> int:
        return self.of.cache_info().currsize
