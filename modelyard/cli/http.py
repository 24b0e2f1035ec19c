"""A thin synchronous client for the registry's REST API (`/api/v1`)."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, BinaryIO, Final
from urllib.parse import quote

import httpx

from modelyard import __version__

API_PREFIX: Final = "/api/v1"
TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)

Params = Mapping[str, str | int | list[str] | None]


class ApiError(Exception):
    """The server answered with an error body `{"error_code", "message", "field"}`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"


class Unreachable(Exception):
    """No HTTP answer at all: refused, timed out, bad URL."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the registry at {url}: {reason}")
        self.url = url
        self.reason = reason


def path(*segments: str | int) -> str:
    """`/a/b` from segments, each percent-encoded (and never a `.`/`..` the URL would drop)."""
    parts = [quote(str(s), safe="") for s in segments]
    return "/" + "/".join(p.replace(".", "%2E") if set(p) == {"."} else p for p in parts)


def _error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body:
        return ApiError(
            response.status_code,
            str(body["error_code"]),
            str(body.get("message", "")),
            body.get("field"),
        )
    text = response.text.strip()[:200] or response.reason_phrase
    return ApiError(response.status_code, f"HTTP_{response.status_code}", text)


class RegistryClient:
    """One httpx client per CLI invocation; the token only ever goes in the Authorization header."""

    def __init__(self, url: str, token: str | None, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": f"modelyard-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, follow_redirects=False
        )

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        url: str,
        params: Params | None = None,
        body: Any = None,
        content: BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; the decoded JSON body (None for an empty one) or ApiError.
        `body` is JSON: a value to encode, or bytes already encoded (sent as they are).
        `content` is streamed as the raw body (a file is never read whole into memory)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        sent = dict(headers or {})
        raw: bytes | BinaryIO | None = content
        if content is not None:
            sent["Content-Type"] = "application/octet-stream"
        elif isinstance(body, bytes):
            raw, body = body, None
            sent["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method, url, params=query, json=body, content=raw, headers=sent or None
            )
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise Unreachable(self.url, str(exc) or type(exc).__name__) from None
        if not response.is_success:
            raise _error_of(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "INVALID_RESPONSE", "the body is not JSON"
            ) from None

    def get(self, url: str, params: Params | None = None) -> Any:
        return self.call("GET", url, params)

    def post(self, url: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        return self.call("POST", url, body=body, headers=headers)

    def upload(self, url: str, source: BinaryIO, params: Params) -> Any:
        return self.call("POST", url, params, content=source)

    def put(self, url: str, body: Any) -> Any:
        return self.call("PUT", url, body=body)

    def delete(self, url: str) -> Any:
        return self.call("DELETE", url)
