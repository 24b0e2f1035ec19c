"""Requests whose JSON bodies are refused above a nesting depth before anything decodes them
(a body nested 100,000 deep would otherwise end in RecursionError, a 500)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from contract.json_depth import MAX_JSON_DEPTH, too_deep
from registry.errors import InvalidInput


class DepthCheckedRequest(Request[Any, Any, Any]):
    async def body(self) -> bytes:
        data = await super().body()
        if too_deep(data):
            raise InvalidInput(
                f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", field="body"
            )
        return data
