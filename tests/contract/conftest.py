"""Contract suites: each port's tests run on its in-memory fake and on its real adapter (real stack).

The concurrency cases (one saga version saved by six writers, one contact linked by eight) hold on the
local FerretDB only because its build makes single-document updates atomic, as MongoDB's are
(``deploy/local/ferretdb/build.sh``, patch 3); against an unpatched FerretDB 1.24 they fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.contract.test_billing_contract import BillingHarness

HERE = Path(__file__).parent
# The fixtures of tests/conftest.py that reach the real stack.
REAL_STACK = {"kafka_bootstrap", "mongodb_uri", "mongo_client", "mongo_db", "stripe_api_base", "shortener_base"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-adapter half of every suite is marked ``integration`` (so ``-m "not integration"`` runs the
    fake half offline): refuse a contract test that needs the stack through its fixtures without the mark.
    A real adapter fetched with ``getfixturevalue`` is invisible here: its fixture param carries the mark."""
    unmarked = [
        item.nodeid
        for item in items
        if HERE in item.path.parents
        and REAL_STACK & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"contract tests on the real stack without @pytest.mark.integration: {unmarked}")


# The harness of the Billing contract (test_billing_contract, test_billing_resume_contract).


@pytest.fixture
async def emulator(stripe_api_base: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        httpx.AsyncClient(base_url=stripe_api_base, timeout=10) as control,
    ):
        yield http, control


@pytest.fixture(params=["fake", pytest.param("stripe", marks=pytest.mark.integration)])
def stripe(request: pytest.FixtureRequest) -> BillingHarness:
    from tests.contract.test_billing_contract import FakeHarness, StripeHarness  # a test module: imported late

    if request.param == "fake":
        return FakeHarness()
    http, control = request.getfixturevalue("emulator")
    return StripeHarness(http, control)
