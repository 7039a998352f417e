"""Processes start honestly: with a dependency down, a worker/relay/webhooks process serves /healthz at
once, answers /readyz with what it waits for, logs a "waiting for X" line every
PAYLINK_START_LOG_INTERVAL_S, and past PAYLINK_START_WAIT_S exits 3 naming the dependency and the
setting (not after PyMongo's 30 s server selection or a hard-coded Kafka window)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumer.runtime.settings import Settings
from tests.conftest import StackFactory
from tests.e2e.processes import PaylinkProcess, logs_of, wait_until
from tests.integration.cli_helpers import free_port

START_WAIT_S = 4.0
LOG_INTERVAL_S = 1.0
# Generous: the bound under test is the process's own (PAYLINK_START_WAIT_S); this only keeps a broken
# build from hanging the suite. 30 s, PyMongo's default server selection, would show as a failure here.
EXIT_DEADLINE_S = 25.0


async def probe(port: int, path: str) -> tuple[int, str]:
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}{path}", timeout=2)
            return response.status_code, response.text
    except httpx.HTTPError:
        return 0, ""


async def answers(port: int, path: str, status: int, text: str) -> bool:
    got = await probe(port, path)
    return got[0] == status and text in got[1]


async def exited(process: PaylinkProcess) -> bool:
    return not process.alive


def waiting_lines(log_dir: Path, what: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs_of(log_dir).splitlines() if line.startswith("{")]
    return [line for line in lines if line["message"] == f"waiting for {what}"]


def start_settings(base: Settings, **overrides: Any) -> Settings:
    return base.model_copy(update={"start_wait_s": START_WAIT_S, "start_log_interval_s": LOG_INTERVAL_S, **overrides})


@pytest.mark.parametrize("command", ["worker", "relay"])
async def test_mongodb_down_health_served_waiting_logged_then_exit_3(command: str, tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    settings = start_settings(Settings(), mongodb_uri=f"mongodb://127.0.0.1:{dead}/paylink")
    port = free_port()
    process = PaylinkProcess(command, settings, tmp_path, "--metrics-port", str(port)).start()
    try:
        await wait_until(functools.partial(answers, port, "/healthz", 200, "ok"), 15, "/healthz while waiting")
        assert await answers(port, "/readyz", 503, "waiting for MongoDB")
        await wait_until(functools.partial(exited, process), EXIT_DEADLINE_S, "the process to give up")
    finally:
        process.kill()
    assert process.process is not None and process.process.returncode == 3
    output = logs_of(tmp_path)
    assert f"MongoDB did not answer within {START_WAIT_S:g} s (PAYLINK_START_WAIT_S)" in output
    waits = waiting_lines(tmp_path, "MongoDB")
    assert len(waits) >= 2, "a line every PAYLINK_START_LOG_INTERVAL_S"
    assert all(line["waiting_for"] == "MongoDB" and line["gives_up_in_s"] <= START_WAIT_S for line in waits)


async def test_kafka_down_waits_for_kafka_then_exit_3(pipeline_stack: StackFactory, tmp_path: Path) -> None:
    stack = await pipeline_stack(with_topics=False)
    settings = start_settings(stack, kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    port = free_port()
    process = PaylinkProcess("worker", settings, tmp_path, "--metrics-port", str(port)).start()
    try:
        await wait_until(
            functools.partial(answers, port, "/readyz", 503, "waiting for Kafka"), 15, "/readyz naming Kafka"
        )
        await wait_until(functools.partial(exited, process), EXIT_DEADLINE_S, "the process to give up")
    finally:
        process.kill()
    assert process.process is not None and process.process.returncode == 3
    assert "Kafka did not answer within" in logs_of(tmp_path)
    assert len(waiting_lines(tmp_path, "Kafka")) >= 2


async def test_webhooks_serve_health_on_their_port_while_mongodb_is_down(tmp_path: Path) -> None:
    port = free_port()
    settings = start_settings(
        Settings(),
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/paylink",
        webhooks_port=port,
        webhooks_host="127.0.0.1",
        stripe_webhook_secrets="whsec_start_test",
    )
    process = PaylinkProcess("webhooks", settings, tmp_path).start()
    try:
        await wait_until(functools.partial(answers, port, "/healthz", 200, "ok"), 15, "/healthz while waiting")
        assert await answers(port, "/readyz", 503, "waiting for MongoDB")
        async with httpx.AsyncClient() as http:
            delivery = await http.post(f"http://127.0.0.1:{port}/stripe/webhooks", content=b"{}", timeout=2)
        assert delivery.status_code == 503, "Stripe retries a delivery the process cannot record yet"
        await wait_until(functools.partial(exited, process), EXIT_DEADLINE_S, "the process to give up")
    finally:
        process.kill()
    assert process.process is not None and process.process.returncode == 3
    assert len(waiting_lines(tmp_path, "MongoDB")) >= 2


async def test_a_started_worker_becomes_ready(pipeline_stack: StackFactory, tmp_path: Path) -> None:
    settings = start_settings(await pipeline_stack())
    port = free_port()
    process = PaylinkProcess("worker", settings, tmp_path, "--metrics-port", str(port)).start()
    try:
        await wait_until(functools.partial(answers, port, "/readyz", 200, "ready"), 60, "the worker ready")
    finally:
        assert process.terminate() == 0
    assert waiting_lines(tmp_path, "MongoDB") == [] and waiting_lines(tmp_path, "Kafka") == []
