"""The URL shortener over HTTP: ``POST {url: …}`` with a bearer token, answering ``{short_url: …}``.

Shortening is a nicety: any failure (timeout, refusal, bad answer) yields None, is logged without the
token, and the saga falls back to the long URL.
"""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger("paylink.shortener")


class HttpShortener:
    def __init__(self, client: httpx.AsyncClient, endpoint: str, token: str, timeout_s: float = 2.0) -> None:
        self._client = client
        self._endpoint = endpoint
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout_s

    async def shorten(self, url: str) -> str | None:
        try:
            response = await self._client.post(
                self._endpoint, json={"url": url}, headers=self._headers, timeout=self._timeout
            )
            response.raise_for_status()
            short = response.json().get("short_url")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            log.warning("shortener failed; using the long URL", extra={"error": type(error).__name__})
            return None
        if not isinstance(short, str) or not short.startswith(("http://", "https://")):
            log.warning("shortener answered without a usable short_url; using the long URL")
            return None
        return short
