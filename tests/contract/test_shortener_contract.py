"""Contract of ``Shortener`` (domain/ports.py): a short URL, or None on any failure, never an exception.

Runs on ``FakeShortener`` and on ``HttpShortener`` over the shortener emulator. The emulator's faults are
scoped to a bearer token of the test's own, so they never touch another test. The fake's only failure
answer is ``mode="none"``: every failure scenario maps to it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest

from adapters.shortener import HttpShortener, make_shortener_session
from domain.ports import Shortener
from tests.fakes.basics import FakeShortener

LONG_URL = "https://invoice.stripe.com/i/acct_1/test_{}?s=ap"
TIMEOUT_S = 0.3

Factory = Callable[[str], Awaitable[Shortener]]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the probe is closed


class HttpScenarios:
    def __init__(self, base: str, http: httpx.AsyncClient, client: aiohttp.ClientSession | None = None) -> None:
        self.base = base
        self.http = http
        self.client: aiohttp.ClientSession | None = client  # the shortener's transport when not httpx
        self.token = f"contract-{uuid.uuid4().hex}"
        self.fault_ids: list[str] = []

    async def fault(self, **spec: Any) -> None:
        response = await self.http.post(
            f"{self.base}/_emulator/faults", json={"path": "/shorten", "account": self.token, "count": 1, **spec}
        )
        response.raise_for_status()
        self.fault_ids.append(response.json()["id"])

    async def fired(self) -> int:
        faults = (await self.http.get(f"{self.base}/_emulator/faults")).json()["data"]
        return sum(f["fired"] for f in faults if f["id"] in self.fault_ids)

    async def make(self, scenario: str) -> Shortener:
        endpoint, token = f"{self.base}/shorten", self.token
        if scenario == "server-error":
            await self.fault(status=503)
        elif scenario == "rejected-token":
            await self.fault(status=401)
        elif scenario == "missing-token":
            token = ""
        elif scenario == "timeout":
            await self.fault(latency_ms=int(TIMEOUT_S * 1000) + 1500)
        elif scenario == "connection-reset":
            await self.fault(status=0)
        elif scenario == "unreachable":
            endpoint = f"http://127.0.0.1:{_closed_port()}/shorten"
        elif scenario == "bad-answer":
            endpoint = f"{self.base}/_emulator/health"  # 200, JSON, but no short_url
        return HttpShortener(self.client or self.http, endpoint, token, timeout_s=TIMEOUT_S)

    async def cleanup(self) -> None:
        for fault_id in self.fault_ids:
            await self.http.delete(f"{self.base}/_emulator/faults/{fault_id}")


@pytest.fixture
async def http_scenarios(shortener_base: str) -> AsyncIterator[HttpScenarios]:
    async with httpx.AsyncClient() as http, make_shortener_session(8) as session:
        scenarios = HttpScenarios(shortener_base, http, session)
        try:
            yield scenarios
        finally:
            await scenarios.cleanup()


class FakeScenarios:
    async def make(self, scenario: str) -> Shortener:
        return FakeShortener("ok" if scenario == "ok" else "none")


@pytest.fixture(
    params=[
        "fake",
        pytest.param("http", marks=pytest.mark.integration),
        pytest.param("aiohttp", marks=pytest.mark.integration),
    ]
)
def scenarios(request: pytest.FixtureRequest) -> HttpScenarios | FakeScenarios:
    if request.param == "fake":
        return FakeScenarios()
    scenarios: HttpScenarios = request.getfixturevalue("http_scenarios")
    if request.param == "http":
        scenarios.client = None  # HttpShortener over httpx; "aiohttp": over the worker's kind of session
    return scenarios


def long_url() -> str:
    return LONG_URL.format(uuid.uuid4().hex)


async def test_returns_a_short_url(scenarios: HttpScenarios | FakeScenarios) -> None:
    shortener = await scenarios.make("ok")
    url = long_url()

    short = await shortener.shorten(url)

    assert isinstance(short, str) and short.startswith(("https://", "http://"))
    assert short != url and len(short) < len(url)
    other = await shortener.shorten(long_url())
    assert other is not None and other != short  # distinct URLs, distinct links


@pytest.mark.integration
async def test_the_short_url_leads_to_the_long_one(http_scenarios: HttpScenarios) -> None:
    shortener = await http_scenarios.make("ok")
    url = long_url()

    short = await shortener.shorten(url)

    assert short is not None
    followed = await http_scenarios.http.get(short, follow_redirects=False)
    assert followed.status_code in (301, 302, 303, 307, 308)
    assert followed.headers["location"] == url


@pytest.mark.parametrize(
    "scenario",
    ["server-error", "rejected-token", "missing-token", "timeout", "connection-reset", "unreachable", "bad-answer"],
)
async def test_any_failure_is_none_never_an_exception(scenarios: HttpScenarios | FakeScenarios, scenario: str) -> None:
    shortener = await scenarios.make(scenario)

    assert await shortener.shorten(long_url()) is None

    if isinstance(scenarios, HttpScenarios) and scenarios.fault_ids:
        assert await scenarios.fired() == 1  # the failure really happened on the wire


@pytest.mark.integration
async def test_a_timeout_is_bounded_by_the_configured_timeout(http_scenarios: HttpScenarios) -> None:
    shortener = await http_scenarios.make("timeout")

    # The emulator holds the answer ~1.5 s longer than the timeout; the shortener must give up first.
    started = time.perf_counter()
    assert await shortener.shorten(long_url()) is None
    assert time.perf_counter() - started < TIMEOUT_S + 1.0
