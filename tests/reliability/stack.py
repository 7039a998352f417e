"""The services a reliability run talks to: a private local stack it may restart, or the shared one.

``PrivateStack`` drives ``deploy/local/stack.py`` with its own state directory and ports, so the suite
can SIGTERM and restart the broker and the store without disturbing the development stack (or other
engineers' tests) on the default ports. ``Services`` is just the addresses; the reduced set in
``make test`` uses the shared stack's, found like every other test finds them, and restarts nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = ROOT / "deploy" / "local" / "stack.py"
START_TIMEOUT_S = 240.0  # as long as the runner waits for a restarted dependency to be usable (READY_TIMEOUT_S)


@dataclass(frozen=True)
class Services:
    kafka: str
    mongodb_uri: str  # base URI, without a database (each scenario uses its own database)
    stripe_base: str
    shortener_base: str
    webhooks_port: int = 19388  # where a scenario's `paylink webhooks` listens (below the ephemeral range)


class PrivateStack:
    """Kafka, FerretDB and both emulators on their own ports and state directory.

    The ports stay below Linux's ephemeral range (``ip_local_port_range``, 32768-60999 by default): while
    a service is down for a restart, a client reconnecting to a port inside that range can be handed that
    very port as its own source port and connect to itself (TCP simultaneous open), and the restarted
    service then fails with "Address already in use".
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        kafka_port: int = 19392,
        mongo_port: int = 19317,
        stripe_port: int = 19311,
        shortener_port: int = 19380,
        webhooks_port: int = 19388,
        kafka_proxied: tuple[int, int] | None = None,
        toxiproxy_port: int = 18474,  # the API of the Toxiproxy the proxied scenarios use
        metrics_shift: int = 0,  # added to a scenario's fixed /metrics ports (Scenario.metrics_port)
    ) -> None:
        self.state_dir = state_dir
        self.kafka_port = kafka_port
        self.mongo_port = mongo_port
        self.stripe_port = stripe_port
        self.shortener_port = shortener_port
        self.webhooks_port = webhooks_port  # not a service of the stack: the port scenarios' webhooks use
        # Kafka's third listener (listen, advertised): the advertised port is Toxiproxy's Kafka proxy
        # (tests/reliability/toxiproxy.py), so that a process bootstrapping there stays behind the proxy.
        # By default derived from the Kafka port (19392 → 19394 and 19492), so a stack on other ports
        # never shares them.
        self.kafka_proxied = kafka_proxied or (kafka_port + 2, kafka_port + 100)
        self.toxiproxy_port = toxiproxy_port
        self.metrics_shift = metrics_shift
        self.restarts: dict[str, int] = {}

    @property
    def services(self) -> Services:
        return Services(
            kafka=f"localhost:{self.kafka_port}",
            mongodb_uri=f"mongodb://127.0.0.1:{self.mongo_port}",
            stripe_base=f"http://127.0.0.1:{self.stripe_port}",
            shortener_base=f"http://127.0.0.1:{self.shortener_port}",
            webhooks_port=self.webhooks_port,
        )

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    def _stack(self, action: str, *only: str) -> None:
        command = [
            sys.executable,
            str(STACK_SCRIPT),
            action,
            "--state-dir",
            str(self.state_dir),
            "--kafka-port",
            str(self.kafka_port),
            "--mongo-port",
            str(self.mongo_port),
            "--stripe-port",
            str(self.stripe_port),
            "--shortener-port",
            str(self.shortener_port),
        ]
        if self.kafka_proxied is not None:
            command += ["--kafka-proxied-listener", "{}:{}".format(*self.kafka_proxied)]
        for name in only:
            command += ["--only", name]
        # A restarted Kafka once needed more than its usual 90 s on a loaded machine (one KRaft commit took
        # 52.7 s; reliability run C of session 5): the suite waits as long as for a dependency's readiness.
        command += ["--start-timeout", str(START_TIMEOUT_S)]
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=2 * START_TIMEOUT_S, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"stack {action} {' '.join(only)} failed:\n{result.stdout}\n{result.stderr}")

    def up(self, *only: str) -> None:
        self._stack("up", *only)

    def down(self, *only: str) -> None:
        self._stack("down", *only)

    def restart(self, service: str, downtime_s: float = 0.0) -> float:
        """Stops ``service`` (SIGTERM by pid file), waits ``downtime_s``, starts it again; returns seconds."""
        started = time.monotonic()
        self.down(service)
        time.sleep(downtime_s)
        self.up(service)
        self.restarts[service] = self.restarts.get(service, 0) + 1
        return time.monotonic() - started
