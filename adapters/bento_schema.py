"""A BentoML API's input and output schema (the JSON schemas `bento.yaml` keeps under
`schema.routes[].input` / `.output`) as OIP tensors. Pure.

BentoML writes a JSON schema per API: an object whose properties are the API's arguments. Each
property becomes a `TensorSpec` when it describes an array of one type:

* ``{"type": "tensor", "dtype": "float64", "shape": [-1, 4]}`` (a numpy, torch or tensorflow
  argument) → FP64 ``[-1, 4]``; without ``shape`` the rank is unknown (shape ``None``);
* ``number`` → FP64 (FP32 when its ``format`` says ``float``), ``integer`` → INT64, ``string`` →
  BYTES, ``boolean`` → BOOL, each of shape ``[]``;
* ``{"type": "array", "items": ...}`` → the items' tensor with one more leading dimension, of
  ``minItems`` when ``maxItems`` equals it, else -1.

Anything else (objects, dataframes, files, unions) is a tensor of unknown datatype and shape,
left out of the list (the API's input names still name it).
An output schema with ``properties`` gives one output per property; any other output schema
(e.g. ``{"type": "object", "additionalProperties": true}``) declares no outputs.
"""

from __future__ import annotations

from typing import Any, Final

from contract.routes import MAX_API_NAME, MAX_DIMS, MAX_TENSORS, TensorSpec

#: numpy/torch/tensorflow dtype names → OIP datatypes.
DTYPES: Final[dict[str, str]] = {
    "bool": "BOOL",
    "bool_": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "half": "FP16",
    "float32": "FP32",
    "float": "FP32",
    "float64": "FP64",
    "double": "FP64",
    "str": "BYTES",
    "str_": "BYTES",
    "object": "BYTES",
    "object_": "BYTES",
}
_SCALARS: Final = {"integer": "INT64", "string": "BYTES", "boolean": "BOOL"}
_FLOAT32_FORMATS: Final = frozenset({"float", "float32"})
_MAX_DIM: Final = 2**62


def _scalar(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind == "number":
        return "FP32" if schema.get("format") in _FLOAT32_FORMATS else "FP64"
    return _SCALARS.get(kind) if isinstance(kind, str) else None


def _dims(value: Any) -> list[int] | None:
    if not isinstance(value, list) or len(value) > MAX_DIMS:
        return None
    if not all(type(d) is int and -1 <= d <= _MAX_DIM for d in value):
        return None
    return list(value)


def _tensor(schema: Any, depth: int = 0) -> tuple[str | None, list[int] | None]:
    """(datatype, shape) of one property's schema; None where it is not known."""
    if not isinstance(schema, dict) or depth > MAX_DIMS:
        return None, None
    kind = schema.get("type")
    if kind == "tensor":
        dtype = schema.get("dtype")
        datatype = DTYPES.get(dtype) if isinstance(dtype, str) else None
        return datatype, _dims(schema.get("shape"))
    if kind == "array":
        datatype, inner = _tensor(schema.get("items"), depth + 1)
        if datatype is None or inner is None or len(inner) >= MAX_DIMS:
            return None, None
        low, high = schema.get("minItems"), schema.get("maxItems")
        first = low if type(low) is int and low == high and 0 <= low <= _MAX_DIM else -1
        return datatype, [first, *inner]
    datatype = _scalar(schema)
    return (datatype, []) if datatype is not None else (None, None)


def tensors(schema: Any) -> list[TensorSpec]:
    """One `TensorSpec` per property of an object schema that says something of it (at most
    `MAX_TENSORS`, by name); none when the schema lists no properties."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return []
    specs = []
    for name, prop in sorted(properties.items())[:MAX_TENSORS]:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_API_NAME:
            continue
        datatype, shape = _tensor(prop)
        if datatype is not None or shape is not None:  # an unknown tensor is said by omission
            specs.append(TensorSpec(name=name, datatype=datatype, shape=shape))
    return specs
