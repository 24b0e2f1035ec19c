"""A/B experiments, the package's public face: sticky arms over versions (fixed weights, or
moved by Thompson sampling in bandit mode), outcomes fed back per key (or per served
version), per-arm results that are safe to read at any time. Pure.

    domain.py      the types: spec, experiment, outcomes, tallies, results
    assignment.py  start, the arms as a traffic policy, a key's arm, tallying outcomes
    sequential.py  always-valid p-values and confidence sequences (normal-mixture SPRT)
    fixed.py       the fixed-horizon tests, kept as the results' secondary view
    cuped.py       variance reduction with a pre-experiment covariate
    readout.py     the results and their verdict
    bandit.py      adaptive allocation that never moves an enrolled key
    rules.py       start, stop (restoring the traffic policy), rebalance, under a model's lock
"""

from __future__ import annotations

from registry.experiments.assignment import arm_of, assign, policy, start, tally, variant
from registry.experiments.domain import (
    Allocation,
    Arm,
    ArmResult,
    ArmSpan,
    Before,
    Cuped,
    Experiment,
    ExperimentMode,
    ExperimentSpec,
    Feedback,
    FixedArm,
    FixedHorizon,
    Metric,
    Outcome,
    Phase,
    Read,
    Results,
    Tally,
)
from registry.experiments.fixed import Z95
from registry.experiments.readout import results

__all__ = [
    "Z95",
    "Allocation",
    "Arm",
    "ArmResult",
    "ArmSpan",
    "Before",
    "Cuped",
    "Experiment",
    "ExperimentMode",
    "ExperimentSpec",
    "Feedback",
    "FixedArm",
    "FixedHorizon",
    "Metric",
    "Outcome",
    "Phase",
    "Read",
    "Results",
    "Tally",
    "arm_of",
    "assign",
    "policy",
    "results",
    "start",
    "tally",
    "variant",
]
