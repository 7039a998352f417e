"""The Grafana dashboard is generated from code (deploy/grafana/dashboard.py): the committed JSON is the
generated one, and every panel queries only metrics paylink exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from consumer import metrics
from deploy.grafana import dashboard


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels") or []  # a collapsed row holds its panels


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert dashboard.OUTPUT.read_text() == dashboard.render(), "run `python -m deploy.grafana.dashboard`"


def test_every_panel_queries_metrics_that_exist() -> None:
    board = json.loads(dashboard.render())
    exported = metrics.exported_names()
    graphs = [panel for panel in panels(board) if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            named = set(re.findall(r"\bpaylink_[a-z_]+\b", target["expr"]))
            assert named, f"{panel['title']}: {target['expr']}"
            assert named <= exported, f"{panel['title']}: {named - exported}"
            assert target["refId"] and target["datasource"]["uid"] == "${datasource}"


def test_the_dashboard_shows_what_the_alerts_watch() -> None:
    queried = " ".join(
        target["expr"] for panel in panels(json.loads(dashboard.render())) for target in panel.get("targets", [])
    )
    for metric in (
        "paylink_consumer_lag",
        "paylink_outbox_oldest_age_seconds",
        "paylink_relay_lease_active",
        "paylink_retryable_failures_total",
        "paylink_dead_letters_total",
        "paylink_stripe_requests_total",
        "paylink_webhooks_total",
    ):
        assert metric in queried, metric
