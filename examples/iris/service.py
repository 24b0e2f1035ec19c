"""The iris example served by BentoML: one `classify` API over a scikit-learn model.

The same file serves both versions. The build step (`build.py`) writes `model.json` next to this
file, naming the model by its exact tag (never `:latest`) and the variant. Both versions are
logistic regressions (v2 less regularised) and answer the same fields at the same cost, only
the values differ: `{"predictions": [...], "model_version": "v1"}` (or `"v2"`).

Fault switch, read from the environment when the service starts (bad values stop the start):

- `IRIS_FAULT_LATENCY_MS`: milliseconds added to every request (>= 0);
- `IRIS_FAULT_ERROR_RATE`: probability in [0, 1] that a request fails with HTTP 500.
"""

import json
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

import bentoml
import numpy as np
from bentoml.exceptions import InternalServerError, InvalidArgument
from bentoml.validators import DType, Shape
from pydantic import BaseModel

MODEL_INFO_FILE = Path(__file__).resolve().parent / "model.json"
N_FEATURES = 4
LATENCY_ENV = "IRIS_FAULT_LATENCY_MS"
ERROR_RATE_ENV = "IRIS_FAULT_ERROR_RATE"


class ConfigError(RuntimeError):
    """model.json or a fault variable is wrong. Not a ValueError: `bentoml serve TAG` takes a
    ValueError raised while loading a bento for "not a tag" and reports an unrelated error."""


@dataclass(frozen=True)
class ModelInfo:
    """What `model.json` says: the exact model tag and the variant (v1 or v2)."""

    model_tag: str
    variant: str

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{path} is missing: it is written by examples/iris/build.py; "
                "serve a built bento, not the source folder"
            ) from None
        tag, variant = raw.get("model_tag"), raw.get("variant")
        if not isinstance(tag, str) or ":" not in tag or tag.endswith(":latest"):
            raise ConfigError(f"{path}: model_tag must be an exact tag name:version, got {tag!r}")
        if variant not in ("v1", "v2"):
            raise ConfigError(f"{path}: variant must be 'v1' or 'v2', got {variant!r}")
        return cls(model_tag=tag, variant=variant)


@dataclass(frozen=True)
class Faults:
    """Injected latency and errors, so tests and load tests can make a version slow or broken."""

    latency_s: float = 0.0
    error_rate: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        latency_ms = _env_number(env, LATENCY_ENV, low=0.0, high=600_000.0)
        error_rate = _env_number(env, ERROR_RATE_ENV, low=0.0, high=1.0)
        return cls(latency_s=latency_ms / 1000.0, error_rate=error_rate)

    def apply(self, rng: random.Random) -> None:
        """Sleep the added latency, then fail with the configured probability."""
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        if self.error_rate > 0 and rng.random() < self.error_rate:
            raise InternalServerError(f"injected fault ({ERROR_RATE_ENV}={self.error_rate})")


def _env_number(env: Mapping[str, str], name: str, *, low: float, high: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name}={text!r} must be between {low:g} and {high:g}")
    return value


class Classes(BaseModel):
    """The answer; declared (not a bare dict) so the bento's schema names its outputs."""

    predictions: list[int]
    model_version: str


# Read at import, so a bad model.json or fault variable fails `bentoml serve` before any worker.
MODEL_INFO = ModelInfo.load(MODEL_INFO_FILE)
FAULTS = Faults.from_env(os.environ)


# The name is the bento's name; a hyphen keeps `bentoml serve iris-classifier:v1` from first
# trying to import a Python module named like the bento.
@bentoml.service(name="iris-classifier", traffic={"timeout": 30})
class IrisClassifier:
    """Classifies iris flowers from 4 measurements per row (sepal and petal length and width)."""

    bento_model = bentoml.models.BentoModel(MODEL_INFO.model_tag)

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.bento_model)
        self.faults = FAULTS
        self.rng = random.Random()

    @bentoml.api
    def classify(
        self, input_series: Annotated[np.ndarray, DType("float64"), Shape((-1, N_FEATURES))]
    ) -> Classes:
        """Class ids for each row of `input_series` (an N x 4 array of floats)."""
        self.faults.apply(self.rng)
        if input_series.ndim != 2 or input_series.shape[0] == 0:
            raise InvalidArgument(f"input_series must be a non-empty list of rows of {N_FEATURES}")
        if input_series.shape[1] != N_FEATURES:
            raise InvalidArgument(f"each row of input_series must hold {N_FEATURES} numbers")
        if not np.isfinite(input_series).all():
            raise InvalidArgument("input_series must hold finite numbers")
        predictions = self.model.predict(input_series)
        return Classes(predictions=[int(p) for p in predictions], model_version=MODEL_INFO.variant)
