"""The URL shortener over HTTP: ``POST {url: …}`` with a bearer token, answering ``{short_url: …}``.

Shortening is a nicety: any failure (timeout, refusal, bad answer) yields None, is logged without the
token, and the saga falls back to the long URL.

The worker passes an ``aiohttp.ClientSession`` (``make_shortener_session``), as for Stripe (ADR 0010):
httpx's pool cost a tenth of the worker's CPU for this one call per saga at 128 in flight (py-spy, issue
16). An ``httpx.AsyncClient`` is still accepted (tests, tools).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import httpx

log = logging.getLogger("paylink.shortener")


def make_shortener_session(
    max_connections: int, middlewares: Sequence[aiohttp.ClientMiddlewareType] = ()
) -> aiohttp.ClientSession:
    """The HTTP session for ``HttpShortener`` (the caller closes it); ``middlewares``: tracing's."""
    connector = aiohttp.TCPConnector(limit=max_connections)
    return aiohttp.ClientSession(connector=connector, middlewares=tuple(middlewares))


class HttpShortener:
    def __init__(
        self, client: httpx.AsyncClient | aiohttp.ClientSession, endpoint: str, token: str, timeout_s: float = 2.0
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout_s

    async def shorten(self, url: str) -> str | None:
        try:
            answer = await self._post(url)
            short = answer.get("short_url")
        except (httpx.HTTPError, aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as error:
            log.warning("shortener failed; using the long URL", extra={"error": type(error).__name__})
            return None
        if not isinstance(short, str) or not short.startswith(("http://", "https://")):
            log.warning("shortener answered without a usable short_url; using the long URL")
            return None
        return short

    async def _post(self, url: str) -> Any:
        if isinstance(self._client, httpx.AsyncClient):
            answer = await self._client.post(
                self._endpoint, json={"url": url}, headers=self._headers, timeout=self._timeout
            )
            answer.raise_for_status()
            return answer.json()
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with self._client.post(self._endpoint, json={"url": url}, headers=self._headers, timeout=timeout) as got:
            got.raise_for_status()
            return json.loads(await got.read())
