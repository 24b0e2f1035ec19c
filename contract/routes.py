"""The route table the registry publishes and every gateway follows: for each model, the
versions that can take traffic now, where each answers, its aliases and its traffic policy.
Pure data; the registry builds it (`registry.serving.routes`), the gateway routes by it."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from contract.traffic import TrafficPolicy

#: What a version may say of its APIs, on every way in (the JSON create-version request and a
#: Bento's manifest): at most MAX_APIS APIs, each named in 1 to MAX_API_NAME characters, with at
#: most MAX_INPUTS inputs (and as many tensors and outputs), each named likewise.
MAX_APIS: Final = 100
MAX_API_NAME: Final = 256
MAX_INPUTS: Final = 100
MAX_TENSORS: Final = MAX_INPUTS
MAX_DIMS: Final = 32
#: The Open Inference Protocol's datatypes (BF16 aside: BentoML JSON has no such number).
TENSOR_DATATYPE: Final = r"^(BOOL|BYTES|U?INT(8|16|32|64)|FP(16|32|64))$"

ApiName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_API_NAME)]
Dimension = Annotated[int, msgspec.Meta(ge=-1, le=2**62)]


class TensorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One input or output of an API as a tensor: its OIP datatype and shape (-1: a dimension
    of any size). `None` says it is not known (an API argument that is not an array of one
    type): the gateway then accepts any datatype, or any shape, for it."""

    name: ApiName
    datatype: Annotated[str, msgspec.Meta(pattern=TENSOR_DATATYPE)] | None = None
    shape: Annotated[list[Dimension], msgspec.Meta(max_length=MAX_DIMS)] | None = None


class ApiSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One BentoML API of a version: its name, the names of its inputs (its arguments), and
    what is known of them and of its outputs as tensors (read from the Bento's API schema;
    `tensors` describes inputs by name, and may leave some out)."""

    name: ApiName
    inputs: Annotated[list[ApiName], msgspec.Meta(max_length=MAX_TENSORS)] = []
    tensors: Annotated[list[TensorSpec], msgspec.Meta(max_length=MAX_TENSORS)] = []
    outputs: Annotated[list[TensorSpec], msgspec.Meta(max_length=MAX_TENSORS)] = []


class VersionRoute(msgspec.Struct, frozen=True):
    version: int
    endpoint: str
    protocol: str  # "bentoml" (JSON APIs) or "oip" (speaks the Open Inference Protocol itself)
    apis: list[ApiSpec] = []


class ModelRoute(msgspec.Struct, frozen=True):
    name: str
    stable: int | None  # the Production version
    versions: dict[int, VersionRoute]  # every version that can take traffic now
    aliases: dict[str, int]
    policy: TrafficPolicy
    staging: list[int] = []  # the Staging versions (served, so readiness waits for them)


class RouteTable(msgspec.Struct, frozen=True):
    revision: int
    models: dict[str, ModelRoute]


class RouteChanges(msgspec.Struct, frozen=True):
    """One answer of the route feed: the models that changed since the revision the gateway
    had (`full`: every model, to replace its table), and the names of those that went."""

    revision: int
    models: dict[str, ModelRoute]
    removed: list[str] = []
    full: bool = True


def apply_changes(table: RouteTable | None, changes: RouteChanges) -> RouteTable:
    """The table after `changes`: a new table object (the old one is left as it was, so a
    reader holding it, or a thread saving it, sees one consistent table)."""
    if changes.full or table is None:
        return RouteTable(revision=changes.revision, models=dict(changes.models))
    models = dict(table.models)
    for name in changes.removed:
        models.pop(name, None)
    models.update(changes.models)
    return RouteTable(revision=changes.revision, models=models)
