"""Writes deploy/k8s/monitoring/prometheusrule.yaml from deploy/alerts/paylink-rules.yaml.

The rules file is the one source (Prometheus ``rule_files``, tested by ``promtool test rules``); the
Kubernetes ``PrometheusRule`` (Prometheus Operator) carries the same groups. ``python -m
deploy.alerts.generate`` rewrites it; ``tests/unit/test_alert_rules.py`` fails when it is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts" / "paylink-rules.yaml"
PROMETHEUS_RULE = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/alerts/paylink-rules.yaml by `python -m deploy.alerts.generate`: edit that file.\n"
    "# Needs the Prometheus Operator (kind PrometheusRule), hence not in deploy/k8s/kustomization.yaml:\n"
    "#   kubectl apply -n paylink -f deploy/k8s/monitoring/prometheusrule.yaml\n"
    "# Your Prometheus' ruleSelector may require a label of its own (e.g. release: prometheus): add it.\n"
)


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def prometheus_rule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "paylink", "labels": {"app.kubernetes.io/part-of": "paylink"}},
        "spec": {"groups": rules()["groups"]},
    }


def render() -> str:
    return HEADER + yaml.safe_dump(prometheus_rule(), sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
