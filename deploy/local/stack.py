"""The no-Docker local stack: Kafka 4 (KRaft), FerretDB (SQLite), the Stripe and shortener emulators.

    python deploy/local/stack.py up|down|status [--only NAME ...]

Every part is idempotent: `up` starts only what does not already answer, `down` stops only the
processes this script started (by the pid files under `.local/run/`, never by name), `status`
prints each service and whether it answers. State and logs live under the git-ignored `.local/`.
Addresses default to those in docs/contract.md and can be moved with `--kafka-port`, `--mongo-port`,
`--stripe-port`, `--shortener-port`. `--with-jaeger` adds Jaeger v2 (`.local/bin/jaeger`, config in
deploy/local/jaeger/config.yaml: OTLP/HTTP on `--jaeger-otlp-port`, query API and UI on `--jaeger-port`).

The prerequisites (Kafka's jars, the FerretDB binary, the venv) are built by the Makefile.
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"  # downloads and builds (Kafka's jars, the FerretDB binary) live here
PYTHON = sys.executable
# State (data, logs, pid files) lives under STATE: `.local` by default, elsewhere with `--state-dir`, so a
# second, private stack (the reliability suite restarts its broker and store) can run beside the dev one.
STATE = LOCAL
RUN = STATE / "run"
LOGS = STATE / "log"
KAFKA_DATA = STATE / "kafka" / "data"
FERRETDB_DATA = STATE / "ferretdb" / "data"


@dataclass
class Service:
    name: str
    port: int
    command: Callable[[], list[str]]
    answers: Callable[[int], bool]
    prepare: Callable[[int], None] = lambda port: None
    start_timeout_s: float = 60.0

    @property
    def pid_file(self) -> Path:
        return RUN / f"{self.name}.pid"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def kafka_answers(port: int) -> bool:
    """A real client request (metadata), not just an open port: the broker may listen before it serves."""
    if not port_open(port):
        return False
    probe = (
        "import asyncio, aiokafka\n"
        "async def main():\n"
        f"    c = aiokafka.AIOKafkaProducer(bootstrap_servers='localhost:{port}', request_timeout_ms=3000)\n"
        "    await c.start()\n"
        "    await c.stop()\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def mongo_answers(port: int) -> bool:
    if not port_open(port):
        return False
    probe = (
        "import pymongo\n"
        f"pymongo.MongoClient('mongodb://127.0.0.1:{port}/', serverSelectionTimeoutMS=2000)"
        ".admin.command('ping')\n"
    )
    result = subprocess.run([PYTHON, "-c", probe], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


KAFKA_LIBS = LOCAL / "kafka" / "libs"


# A third listener whose advertised address is a proxy's (the reliability suite's Toxiproxy): a client
# bootstrapping through the proxy is told to reach the broker at the proxy again, so every byte of its
# connections passes the proxy (with one listener, it would bypass the proxy after the bootstrap).
# (listen port, advertised port), set by `--kafka-proxied-listener LISTEN:ADVERTISED`; None: no such listener.
KAFKA_PROXIED: tuple[int, int] | None = None


def kafka_properties(port: int) -> Path:
    controller = port + 1
    listeners = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"
    advertised = f"PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if KAFKA_PROXIED is not None:
        listen, proxy = KAFKA_PROXIED
        listeners += f",PROXIED://127.0.0.1:{listen}"
        advertised += f",PROXIED://localhost:{proxy}"
        protocols += ",PROXIED:PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"localhost:{controller}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(KAFKA_DATA),
        "num.partitions": "6",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests join groups constantly; the default 3 s delay would slow every one of them.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    path = KAFKA_DATA.parent / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def kafka_classpath() -> str:
    return str(KAFKA_LIBS / "*")


def prepare_kafka(port: int) -> None:
    props = kafka_properties(port)
    if (KAFKA_DATA / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    storage_tool = ["java", "-cp", kafka_classpath(), "kafka.tools.StorageTool"]
    result = subprocess.run(
        [*storage_tool, "format", "--standalone", f"--cluster-id={cluster_id}", "-c", str(props)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"kafka storage format failed:\n{result.stdout}{result.stderr}")


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A Kafka cluster id: base64url of 16 random bytes, redrawn (as Kafka's Uuid.randomUuid does) while its
    text starts with '-', which the storage tool's argument parser would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_command(port: int) -> list[str]:
    jvm = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn"]
    return ["java", *jvm, "-cp", kafka_classpath(), "kafka.Kafka", str(KAFKA_DATA.parent / "server.properties")]


def ferretdb_command(port: int) -> list[str]:
    return [str(LOCAL / "bin" / "ferretdb"), "--listen", f"127.0.0.1:{port}", "--state-dir", str(FERRETDB_DATA)]


JAEGER_CONFIG = ROOT / "deploy" / "local" / "jaeger" / "config.yaml"


def jaeger_command(otlp_port: int, query_port: int) -> list[str]:
    """Jaeger v2 on its config, ports set through the variables it reads (query gRPC: query port - 1)."""
    ports = {"OTLP": otlp_port, "QUERY": query_port, "QUERY_GRPC": query_port - 1}
    env = [f"PAYLINK_JAEGER_{name}_PORT={port}" for name, port in ports.items()]
    env.append("OTEL_TRACES_EXPORTER=none")  # Jaeger's own spans: it would dial localhost:4317 forever
    return ["env", *env, str(LOCAL / "bin" / "jaeger"), "--config", f"file:{JAEGER_CONFIG}"]


def jaeger_answers(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/api/services")


def emulator_command(module: str, port: int) -> list[str]:
    """The emulators are the package ``deploy.local.emulators``, run as modules: the services start with
    the repository root as their working directory, which ``python -m`` puts on ``sys.path``."""
    return [PYTHON, "-m", f"deploy.local.emulators.{module}", "--host", "127.0.0.1", "--port", str(port)]


def emulator_answers(port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{port}/_emulator/health")


def services(args: argparse.Namespace) -> list[Service]:
    return [
        Service(
            "kafka",
            args.kafka_port,
            lambda: kafka_command(args.kafka_port),
            kafka_answers,
            prepare=prepare_kafka,
            start_timeout_s=90,
        ),
        Service("ferretdb", args.mongo_port, lambda: ferretdb_command(args.mongo_port), mongo_answers),
        Service(
            "stripe-emulator",
            args.stripe_port,
            lambda: emulator_command("stripe_emulator", args.stripe_port),
            emulator_answers,
        ),
        Service(
            "shortener-emulator",
            args.shortener_port,
            lambda: emulator_command("shortener_emulator", args.shortener_port),
            emulator_answers,
        ),
        *(
            [
                Service(
                    "jaeger",
                    args.jaeger_port,
                    lambda: jaeger_command(args.jaeger_otlp_port, args.jaeger_port),
                    jaeger_answers,
                )
            ]
            if args.with_jaeger or args.action == "down"  # down stops a Jaeger started earlier
            else []
        ),
    ]


def read_pid(service: Service) -> int | None:
    try:
        pid = int(service.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def start(service: Service) -> None:
    if service.answers(service.port):
        print(f"{service.name:<20} already answers on :{service.port}")
        return
    if read_pid(service) is None:
        service.prepare(service.port)
        with (LOGS / f"{service.name}.log").open("ab") as log:  # the service keeps its own descriptor
            process = subprocess.Popen(
                service.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                start_new_session=True,
            )
        service.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + service.start_timeout_s
    while time.monotonic() < deadline:
        if service.answers(service.port):
            print(f"{service.name:<20} up on :{service.port} (pid {read_pid(service)})")
            return
        if read_pid(service) is None:
            break
        time.sleep(0.3)
    tail = (LOGS / f"{service.name}.log").read_text(errors="replace")[-3000:]
    raise SystemExit(f"{service.name} did not come up on :{service.port}; log tail:\n{tail}")


def stop(service: Service) -> None:
    pid = read_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        print(f"{service.name:<20} not running (started by this stack)")
        return
    # The service runs in its own session, so its pid is also its process group.
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and read_pid(service) is not None:
        time.sleep(0.2)
    if read_pid(service) is not None:
        os.killpg(pid, signal.SIGKILL)
    service.pid_file.unlink(missing_ok=True)
    print(f"{service.name:<20} stopped (pid {pid})")


def status(service: Service) -> bool:
    ok = service.answers(service.port)
    pid = read_pid(service)
    owner = f"pid {pid}" if pid else "not started by this stack"
    print(f"{service.name:<20} :{service.port:<6} {'answers' if ok else 'DOWN':<8} ({owner})")
    return ok


def use_state_dir(state: Path) -> None:
    global STATE, RUN, LOGS, KAFKA_DATA, FERRETDB_DATA
    STATE, RUN, LOGS = state, state / "run", state / "log"
    KAFKA_DATA, FERRETDB_DATA = state / "kafka" / "data", state / "ferretdb" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--only", action="append", help="act on this service only (repeatable)")
    parser.add_argument("--kafka-port", type=int, default=9092)
    parser.add_argument("--mongo-port", type=int, default=27017)
    parser.add_argument("--stripe-port", type=int, default=12111)
    parser.add_argument("--shortener-port", type=int, default=12180)
    parser.add_argument(
        "--with-jaeger", action="store_true", help="also Jaeger v2 (tracing; `make services-up TRACING=1`)"
    )
    parser.add_argument("--jaeger-port", type=int, default=16686, help="Jaeger query API and UI")
    parser.add_argument("--jaeger-otlp-port", type=int, default=4318, help="Jaeger's OTLP/HTTP receiver")
    parser.add_argument("--state-dir", type=Path, default=LOCAL, help="where data, logs and pid files live")
    parser.add_argument(
        "--kafka-proxied-listener", metavar="LISTEN:ADVERTISED", help="a third Kafka listener advertised at a proxy"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=0.0, metavar="S", help="wait at least S seconds for each to answer"
    )
    args = parser.parse_args()
    if args.kafka_proxied_listener:
        global KAFKA_PROXIED
        listen, advertised = args.kafka_proxied_listener.split(":")
        KAFKA_PROXIED = (int(listen), int(advertised))
    use_state_dir(args.state_dir.resolve())
    for directory in (RUN, LOGS, KAFKA_DATA, FERRETDB_DATA):
        directory.mkdir(parents=True, exist_ok=True)
    chosen = [
        replace(s, start_timeout_s=max(s.start_timeout_s, args.start_timeout))
        for s in services(args)
        if not args.only or s.name in args.only
    ]
    if args.action == "up":
        for service in chosen:
            start(service)
    elif args.action == "down":
        for service in reversed(chosen):
            stop(service)
    else:
        answering = [status(service) for service in chosen]
        sys.exit(0 if all(answering) else 1)


if __name__ == "__main__":
    main()
