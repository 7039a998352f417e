"""Contract suites: each port's tests run on its in-memory fake and on its real adapter (real stack).

The concurrency cases (one saga version saved by six writers, one contact linked by eight) hold on the
local FerretDB only because its build makes single-document updates atomic, as MongoDB's are
(``deploy/local/ferretdb/build.sh``, patch 3); against an unpatched FerretDB 1.24 they fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
