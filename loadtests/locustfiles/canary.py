"""A canary rollout under load: the steady scenario's users; `loadtests/loadrun.py canary`
starts a rollout of the candidate (healthy, or with `--faulty` its fault switch on) mid-run
over REST and records every phase and weight change for the report.

    python -m loadtests.loadrun canary [--faulty]
"""

from __future__ import annotations

from loadtests.locustfiles.steady import Inference

__all__ = ["Inference"]
