"""Posts webhook deliveries over HTTP with httpx (the WebhookSender port)."""

from __future__ import annotations

from typing import Final

import httpx

TIMEOUT_S: Final = 10.0


class HttpWebhookSender:
    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, trust_env=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise OSError(f"cannot deliver to {url}: {type(exc).__name__}: {exc}") from exc
        return response.status_code

    async def close(self) -> None:
        await self._client.aclose()
