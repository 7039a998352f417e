"""Each process exports only its own metrics, and no counter exports a ``_created`` series."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer import metrics
from consumer.runtime.bootstrap import metrics_registry


def names(process: str) -> set[str]:
    return {family.name for family in metrics_registry(process).collect()}


def test_the_relay_exports_no_worker_metric_and_the_worker_no_relay_metric() -> None:
    assert "paylink_in_flight_sagas" not in names("relay") | names("webhooks")
    assert "paylink_consumer_lag" not in names("relay")
    assert "paylink_relay_lease_active" not in names("worker") | names("webhooks")
    assert "paylink_webhooks" not in names("worker") | names("relay")
    assert {"paylink_in_flight_sagas", "paylink_sagas", "paylink_stripe_requests"} <= names("worker")


def test_every_metric_is_exported_by_some_process() -> None:
    everywhere = names("worker") | names("relay") | names("webhooks")
    assert everywhere == {family.name for metric in metrics.ALL for family in metric.describe()}


def test_no_created_series() -> None:
    metrics.DEAD_LETTERS.labels("invalid_event").inc(0)
    metrics.STRIPE_SECONDS.labels("invoices.create").observe(0.01)
    text = generate_latest(metrics_registry("worker")).decode()
    series = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    assert "paylink_dead_letters_total" in series
    assert not [name for name in series if name.endswith("_created")]  # (a label value may say not_created)
