"""The reduced reliability set, in ``make test``: the scenarios that restart no service, at a small size,
on the stack the other tests use (found the same way: ``PAYLINK_*`` variables, see tests/conftest.py).
The full suite is ``make reliability`` (``tests/reliability/run.py``), on a private stack."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from tests.reliability.report import write_report
from tests.reliability.runner import Scenario, ScenarioRun
from tests.reliability.scenarios import scenarios
from tests.reliability.stack import Services

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("scenario", scenarios(reduced=True), ids=lambda s: s.name)
async def test_reduced_scenario_holds_every_invariant(
    scenario: Scenario,
    kafka_bootstrap: str,
    mongodb_uri: str,
    stripe_api_base: str,
    shortener_base: str,
    tmp_path: Path,
) -> None:
    base_uri = mongodb_uri.rsplit("/", 1)[0] if mongodb_uri.count("/") > 2 else mongodb_uri
    services = Services(kafka_bootstrap, base_uri, stripe_api_base, shortener_base)
    started = time.monotonic()
    result = await ScenarioRun(scenario, services, None, tmp_path, seed=7).execute()
    report = io.StringIO()
    violations = write_report([result], report, time.monotonic() - started)
    print(report.getvalue())
    assert violations == 0, report.getvalue()
