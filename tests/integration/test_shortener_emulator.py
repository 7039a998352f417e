"""The URL shortener emulator, over HTTP like paylink's shortener adapter. Every test resets it first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

AUTH = {"Authorization": "Bearer paylink-local"}
LONG = "https://invoice.stripe.com/i/acct_1Example/test_abc?s=ap"


@pytest.fixture
async def http(shortener_base: str) -> AsyncIterator[httpx.AsyncClient]:
    """Client of the emulator, reset before the test and after it (no faults leak into other tests)."""
    async with httpx.AsyncClient(base_url=shortener_base, timeout=10) as client:
        (await client.post("/_emulator/reset")).raise_for_status()
        yield client
        (await client.post("/_emulator/reset")).raise_for_status()


async def shorten(http: httpx.AsyncClient, url: Any = LONG, headers: dict[str, str] = AUTH) -> httpx.Response:
    return await http.post("/shorten", json={"url": url}, headers=headers)


async def links(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    return list((await http.get("/_emulator/objects")).json()["data"])


async def test_shorten_then_follow_the_redirect(http: httpx.AsyncClient) -> None:
    created = await shorten(http)
    assert created.status_code == 201
    body = created.json()
    assert body["url"] == LONG
    path = urlsplit(body["short_url"]).path
    assert path == f"/s/{body['code']}" and body["short_url"].startswith("http")
    redirect = await http.get(path)
    assert redirect.status_code == 302 and redirect.headers["location"] == LONG
    assert [(link["url"], link["hits"]) for link in await links(http)] == [(LONG, 1)]


async def test_same_url_same_code_other_url_other_code(http: httpx.AsyncClient) -> None:
    first, again = (await shorten(http)).json(), (await shorten(http)).json()
    other = (await shorten(http, LONG + "&x=1")).json()
    assert first["short_url"] == again["short_url"]
    assert other["short_url"] != first["short_url"]
    assert len(await links(http)) == 2


async def test_a_bearer_token_is_required(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = await shorten(http, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
    assert await links(http) == []


async def test_bad_requests_are_rejected(http: httpx.AsyncClient) -> None:
    for url in (None, "", 42, "not a url", "ftp://example.com/x", "https://", "https://example.com/" + "a" * 2048):
        response = await shorten(http, url)
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "invalid_url"
    not_json = await http.post("/shorten", content=b"{nope", headers=AUTH)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    assert (await http.get("/s/unknown")).status_code == 404
    assert await links(http) == []


async def test_error_faults_and_phase_after(http: httpx.AsyncClient) -> None:
    fault = await http.post("/_emulator/faults", json={"path": "/shorten", "status": 503, "count": 1})
    assert fault.status_code == 201 and fault.json()["id"]
    failed = await shorten(http)
    assert failed.status_code == 503 and failed.json()["error"]["code"] == "server_error"
    assert await links(http) == [], "a fault before execution creates nothing"
    assert (await shorten(http)).status_code == 201

    await http.post("/_emulator/faults", json={"path": "/shorten", "status": 500, "phase": "after", "count": 1})
    lost = await shorten(http, LONG + "#lost")
    assert lost.status_code == 500
    assert LONG + "#lost" in [link["url"] for link in await links(http)], "phase=after executes first"

    await http.post("/_emulator/faults", json={"path": "/s/{code}", "method": "GET", "status": 502})
    code = (await shorten(http)).json()["code"]
    assert (await http.get(f"/s/{code}")).status_code == 502
    assert (await http.delete("/_emulator/faults")).json() == {"deleted": 3}
    assert (await http.get(f"/s/{code}")).status_code == 302


async def test_connection_reset_fault(http: httpx.AsyncClient, shortener_base: str) -> None:
    await http.post("/_emulator/faults", json={"path": "/shorten", "status": 0, "count": 1})
    async with httpx.AsyncClient(base_url=shortener_base) as fresh:
        with pytest.raises(httpx.TransportError):
            await shorten(fresh)
    assert await links(http) == []
    assert (await shorten(http)).status_code == 201


async def test_latency_and_rate_limit(http: httpx.AsyncClient) -> None:
    (await http.post("/_emulator/config", json={"latency_ms": 150})).raise_for_status()
    started = time.monotonic()
    assert (await shorten(http)).status_code == 201
    assert time.monotonic() - started >= 0.15
    (await http.post("/_emulator/config", json={"latency_ms": None, "rate_limit_per_account": 3})).raise_for_status()
    statuses = await asyncio.gather(*(shorten(http, f"{LONG}&n={i}") for i in range(5)))
    assert sorted(r.status_code for r in statuses) == [201, 201, 201, 429, 429]
    assert (await shorten(http, headers={"Authorization": "Bearer another-client"})).status_code == 201
    bad = await http.post("/_emulator/config", json={"latency": 5})
    assert bad.status_code == 400


async def test_stats_and_reset(http: httpx.AsyncClient) -> None:
    code = (await shorten(http)).json()["code"]
    await http.get(f"/s/{code}")
    await shorten(http, headers={})
    body = (await http.get("/_emulator/stats")).json()
    assert body["requests"] == {"POST /shorten 201": 1, "GET /s/{id} 302": 1, "POST /shorten 401": 1}
    assert body["total"] == 3
    (await http.post("/_emulator/reset")).raise_for_status()
    assert (await http.get("/_emulator/stats")).json()["total"] == 0
    assert await links(http) == [] and (await http.get(f"/s/{code}")).status_code == 404
    assert (await http.get("/_emulator/health")).json() == {"status": "ok", "emulator": "shortener"}
