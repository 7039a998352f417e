"""A Jaeger v2 of one's own (``.local/bin/jaeger``, built by ``make go-tools``) on free ports, for the
tracing test and the tracing benchmark: started on the repository's config (deploy/local/jaeger), waited
for (its query API answers), stopped by its pid."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.local.stack import LOCAL, jaeger_command

JAEGER = LOCAL / "bin" / "jaeger"


@dataclass(frozen=True)
class Jaeger:
    otlp: str  # OTLP/HTTP base URL: OTEL_EXPORTER_OTLP_ENDPOINT
    query: str  # query API base URL (/api/traces/{trace_id})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_jaeger(log_path: Path, timeout_s: float = 30) -> Iterator[Jaeger]:
    """Raises ``FileNotFoundError`` when the binary is missing, ``RuntimeError`` when it does not start."""
    if not JAEGER.exists():
        raise FileNotFoundError(f"{JAEGER} is missing: `make go-tools` builds it (`make test` does)")
    otlp_port, query_port = _free_port(), _free_port()
    while query_port - 1 == otlp_port:  # the query gRPC port is query_port - 1
        query_port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(jaeger_command(otlp_port, query_port), stdout=log, stderr=subprocess.STDOUT)
    query = f"http://127.0.0.1:{query_port}"
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(f"{query}/api/services"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Jaeger did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield Jaeger(f"http://127.0.0.1:{otlp_port}", query)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
