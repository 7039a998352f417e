"""The alert rules are files that cannot drift: every metric a rule names exists in paylink's registry,
the Kubernetes PrometheusRule is the generated one, every rule is documented, and every rule has a
promtool case where it fires and one where it stays quiet (run in tests/integration/test_alert_rules_promtool.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from consumer import metrics
from deploy.alerts import generate

ROOT = Path(__file__).resolve().parents[2]
TESTS = sorted((ROOT / "deploy" / "alerts" / "tests").glob("*.yaml"))
RULES: list[dict[str, Any]] = [rule for group in generate.rules()["groups"] for rule in group["rules"]]
WANTED = {  # issue 14: lag, outbox age, lapsed lease / no relay, retryable failures, dead letters, Stripe, webhooks
    "PaylinkConsumerLagHigh",
    "PaylinkOutboxStale",
    "PaylinkNoActiveRelay",
    "PaylinkRelayAbsent",
    "PaylinkRetryableFailures",
    "PaylinkDeadLetters",
    "PaylinkStripeRateLimited",
    "PaylinkStripeErrors",
    "PaylinkWebhookBadSignatures",
}


def test_the_wanted_alerts_exist_each_with_a_severity_and_a_runbook() -> None:
    assert {rule["alert"] for rule in RULES} == WANTED
    for rule in RULES:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]


def test_every_metric_a_rule_names_exists() -> None:
    exported = metrics.exported_names()
    for rule in RULES:
        named = set(re.findall(r"\bpaylink_[a-z_]+\b", rule["expr"]))
        assert named, rule["alert"]
        assert named <= exported, f"{rule['alert']}: {named - exported}"


def test_the_prometheus_rule_is_the_generated_one() -> None:
    assert generate.PROMETHEUS_RULE.read_text() == generate.render(), "run `python -m deploy.alerts.generate`"
    assert yaml.safe_load(generate.render())["spec"]["groups"] == generate.rules()["groups"]


def test_every_rule_fires_in_one_promtool_case_and_stays_quiet_in_another() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test["alert_rule_test"]:
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == WANTED and quiet == WANTED


def test_every_alert_is_documented() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    for name in WANTED:
        assert f"`{name}`" in doc, name
