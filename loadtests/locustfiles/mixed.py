"""Inference and registry traffic at once: the steady scenario's users and the registry
scenario's, four to one (their `weight`s), on one modelyard process.

    python -m loadtests.loadrun mixed
"""

from __future__ import annotations

from loadtests.locustfiles.registry import RegistryUser
from loadtests.locustfiles.steady import DirectToBentoML, Inference

__all__ = ["DirectToBentoML", "Inference", "RegistryUser"]
