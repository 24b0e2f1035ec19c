"""Starting an experiment, its arms as a traffic policy, which arm a key is on, and tallying
fed-back outcomes. Pure.

Arms are a traffic policy: every arm but the Production version's is a split (variant
`arm-v<N>`), the Production version's arm takes the rest, and assignment is sticky by a key
with the same buckets the gateway uses (`contract.traffic.bucket` / `split_at`), so the
registry can tell which arm a key was on from the key alone. In bandit mode the splits follow
the allocation's served ranges instead of the spec's weights, and only enrolled keys count
(`bandit`).
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

from contract.traffic import Split, TrafficPolicy, bucket, split_at
from registry.errors import InvalidInput, NotFound
from registry.experiments import bandit
from registry.experiments.domain import (
    Before,
    Experiment,
    ExperimentMode,
    ExperimentSpec,
    Metric,
    Outcome,
    Phase,
    Tally,
)


def start(
    spec: ExperimentSpec,
    *,
    id: str,
    model: str,
    production: int | None,
    actor: str,
    now: datetime,
    known: set[int],
    traffic: TrafficPolicy | None = None,
) -> Experiment:
    """A new experiment (`traffic`: the model's policy now, restored when it stops)."""
    versions = [a.version for a in spec.arms]
    if len(set(versions)) != len(versions):
        raise InvalidInput("an arm's version is listed twice", field="arms")
    for i, number in enumerate(versions):
        if number not in known:
            raise NotFound(f"version {number} of {model!r} does not exist", field=f"arms[{i}]")
    total = sum(a.weight for a in spec.arms)
    if abs(total - 100.0) > 1e-6:
        raise InvalidInput(f"arm weights add up to {total:g}%, not 100%", field="arms")
    sources = [spec.sticky.header, spec.sticky.cookie, spec.sticky.json_field]
    if sum(s is not None for s in sources) != 1:
        raise InvalidInput("sticky needs exactly one of header, cookie, json_field", field="sticky")
    control = production if production in versions else versions[0]
    started = Experiment(
        id,
        model,
        spec,
        control,
        salt=id,
        phase=Phase.RUNNING,
        created_by=actor,
        created_at=now,
        updated_at=now,
        before=Before(traffic),
    )
    if spec.mode == ExperimentMode.BANDIT:
        return msgspec.structs.replace(started, allocation=bandit.initial(started, production))
    return started


def variant(version: int) -> str:
    return f"arm-v{version}"


def _weights(experiment: Experiment) -> list[tuple[int, float]]:
    """Each arm's traffic weight, in the order the splits take their ranges."""
    if experiment.allocation is None:
        return [(a.version, a.weight) for a in experiment.spec.arms]
    return [(s.version, s.served / 100) for s in experiment.allocation.arms]


def policy(experiment: Experiment, base: TrafficPolicy, production: int | None) -> TrafficPolicy:
    """The traffic policy that holds the arms (the Production version's arm is the rest)."""
    splits = [
        Split(version=v, weight=w, variant=variant(v))
        for v, w in _weights(experiment)
        if v != production
    ]
    return msgspec.structs.replace(
        base,
        splits=splits,
        sticky=experiment.spec.sticky,
        salt=experiment.salt,
        steered_by=experiment.id,
    )


def assign(experiment: Experiment, production: int | None, key: str) -> int:
    """The version the gateway serves `key` under the experiment's policy."""
    splits = policy(experiment, TrafficPolicy(), production).splits
    found = split_at(splits, bucket(experiment.salt, key), production)
    if found is not None:
        return found.version
    if production is None:  # every arm is a split and their weights add up to 100
        return _weights(experiment)[-1][0]
    return production


def arm_of(experiment: Experiment, production: int | None, key: str) -> int | None:
    """The arm whose outcomes `key`'s outcomes count in: the version that serves it, or in
    bandit mode the arm that enrolled its bucket (None: not enrolled yet, not counted)."""
    if experiment.allocation is None:
        return assign(experiment, production, key)
    point = bucket(experiment.salt, key)
    for span in experiment.allocation.arms:
        if span.start <= point < span.end:
            return span.version
    return None


def tally(
    experiment: Experiment, production: int | None, outcomes: list[Outcome]
) -> dict[int, Tally]:
    """Each arm's increments from a batch of outcomes; names the first bad one."""
    arms = {a.version for a in experiment.spec.arms}
    bandit_mode = experiment.allocation is not None
    sums: dict[int, list[float]] = {v: [0, 0.0, 0.0, 0, 0.0, 0.0, 0.0] for v in arms}
    for i, outcome in enumerate(outcomes):
        if (outcome.key is None) == (outcome.version is None):
            raise InvalidInput(
                "an outcome needs exactly one of key, version", field=f"outcomes[{i}]"
            )
        if not math.isfinite(outcome.value):
            raise InvalidInput("value must be a finite number", field=f"outcomes[{i}].value")
        if experiment.spec.metric == Metric.CONVERSION and outcome.value not in (0.0, 1.0):
            raise InvalidInput("a conversion is 0 or 1", field=f"outcomes[{i}].value")
        if outcome.covariate is not None and not math.isfinite(outcome.covariate):
            raise InvalidInput(
                "covariate must be a finite number", field=f"outcomes[{i}].covariate"
            )
        if outcome.version is not None:
            if outcome.version not in arms:
                raise InvalidInput(
                    f"version {outcome.version} is not an arm", field=f"outcomes[{i}].version"
                )
            if bandit_mode:
                raise InvalidInput(
                    "a bandit experiment counts outcomes by key only: a version also serves"
                    " keys not enrolled yet",
                    field=f"outcomes[{i}].version",
                )
            arm: int | None = outcome.version
        else:
            arm = arm_of(experiment, production, outcome.key or "")
        if arm is None:  # a key not enrolled yet: served, not counted
            continue
        acc = sums[arm]
        acc[0] += 1
        acc[1] += outcome.value
        acc[2] += outcome.value * outcome.value
        x = outcome.covariate
        if x is not None:
            acc[3] += 1
            acc[4] += x
            acc[5] += x * x
            acc[6] += x * outcome.value
    return {
        v: Tally(v, int(a[0]), a[1], a[2], int(a[3]), a[4], a[5], a[6])
        for v, a in sums.items()
        if a[0]
    }
