"""Inference and registry traffic at once: the paced users (locustfiles/paced.py) and the registry
scenario's, four to one (their `weight`s), on one modelyard process.

    python -m loadtests.loadrun mixed
"""

from __future__ import annotations

from loadtests.locustfiles.paced import DirectToBentoML, Inference
from loadtests.locustfiles.registry import RegistryUser

__all__ = ["DirectToBentoML", "Inference", "RegistryUser"]
