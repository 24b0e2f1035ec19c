"""What /api/v1 and the MLflow dialect refuse before any handler reads a request:

- JSON bodies nested deeper than MAX_JSON_DEPTH, before anything decodes them (a body nested
  100,000 deep would otherwise end in RecursionError, a 500);
- NUL characters (U+0000) in a JSON body, a query parameter or a path parameter: PostgreSQL's
  text cannot hold them (a 500 there, found by the API fuzz), so neither store takes them.

Each is a 400 INVALID_PARAMETER_VALUE naming the field (issue 18)."""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

import msgspec
from litestar import Request

from contract.json_depth import MAX_JSON_DEPTH, too_deep
from registry.errors import InvalidInput

NUL: Final = "\x00"
_NUL_ESCAPE: Final = b"\\u0000"  # how a JSON text writes U+0000 (a raw one is malformed JSON)


def _refuse_nul(field: str) -> InvalidInput:
    shown = field.replace(NUL, "\\u0000")
    return InvalidInput(f"`{shown}` holds a NUL character (U+0000)", field=shown)


def has_nul_escape(body: bytes) -> bool:
    """Whether the JSON text `body` writes a NUL character (`\\u0000`, not `\\\\u0000`)."""
    return _NUL_ESCAPE in body and _NUL_ESCAPE in body.replace(b"\\\\", b"")


def nul_field(value: Any, path: str = "") -> str | None:
    """Where in a decoded JSON document a string (or an object's key) holds a NUL character:
    `description`, `apis[0].name`, `tags` for a key of `tags`; "body" for the document itself."""
    if isinstance(value, str):
        return (path or "body") if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if NUL in key:
                return path or "body"
            found = nul_field(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_field(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


class DepthCheckedRequest(Request[Any, Any, Any]):
    """A request whose JSON body is checked before it is decoded: depth, then NUL characters."""

    async def body(self) -> bytes:
        data = await super().body()
        if too_deep(data):
            raise InvalidInput(
                f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", field="body"
            )
        if has_nul_escape(data):
            try:
                decoded = msgspec.json.decode(data)
            except msgspec.DecodeError:
                return data  # malformed: the decoder's own 400 says where
            raise _refuse_nul(nul_field(decoded) or "body")
        return data


async def refuse_nul_in_url(request: Request[Any, Any, Any]) -> None:
    """`before_request` of the API routers: a NUL character in a path or query parameter."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise _refuse_nul(name)
    query: bytes = request.scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        pairs = urllib.parse.parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        for name, value in pairs:
            if NUL in name or NUL in value:
                raise _refuse_nul(name)
