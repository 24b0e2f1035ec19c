"""A canary rollout under load: the paced users (locustfiles/paced.py); `loadrun.py canary`
starts a rollout of the candidate (healthy, or with `--faulty` its fault switch on) mid-run
over REST and records every phase and weight change for the report.

    python -m loadtests.loadrun canary [--faulty]
"""

from __future__ import annotations

from loadtests.locustfiles.paced import Inference

__all__ = ["Inference"]
