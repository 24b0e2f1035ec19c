"""A minimal keep-alive HTTP/1.1 client for benchmarks (stdlib http.client).

httpx costs about a millisecond of client CPU per request here, which on a two-core machine
lands in the server's latency figures; this client costs a small fraction of that.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlencode, urlsplit


class LightResponse:
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.method, self.path, self.status_code, self.body = method, path, status, body

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class LightClient:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=timeout
        )
        self._headers = {**headers, "Content-Type": "application/json"}

    def request(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> LightResponse:
        url = f"{path}?{urlencode(params)}" if params else path
        body = None if json_body is None else json.dumps(json_body).encode()
        self._conn.request(method, url, body=body, headers=self._headers)
        answer = self._conn.getresponse()
        return LightResponse(method, path, answer.status, answer.read())

    def get(self, path: str, params: dict[str, Any] | None = None) -> LightResponse:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any) -> LightResponse:
        return self.request("POST", path, json_body=json)

    def put(self, path: str, json: Any) -> LightResponse:
        return self.request("PUT", path, json_body=json)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
