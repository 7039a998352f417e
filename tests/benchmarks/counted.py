"""A paylink command with every MongoDB round trip counted (bench only): ``store_ops_per_saga``.

    python -m tests.benchmarks.counted COUNTS_FILE worker|relay ...

Registers a PyMongo command-monitoring listener before paylink builds its clients (a listener registered
globally applies to every client created afterwards), then runs ``consumer.cli`` unchanged. A daemon
thread writes the counts by command name to ``COUNTS_FILE`` every 50 ms (and at exit), with the wall time
of the write, so the benchmark can take a snapshot after a given moment without stopping the worker.
Production code is untouched: the switch is choosing this module instead of ``consumer.cli``.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def _write(counter: CommandCounter, path: Path) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"written_at": time.time(), "counts": counter.snapshot()}))
    temporary.replace(path)  # atomic: the benchmark never reads half a file


def _keep_writing(counter: CommandCounter, path: Path) -> None:
    while True:
        _write(counter, path)
        time.sleep(0.05)


def main() -> None:
    path = Path(sys.argv[1])
    counter = CommandCounter()
    monitoring.register(counter)
    atexit.register(_write, counter, path)
    threading.Thread(target=_keep_writing, args=(counter, path), daemon=True).start()
    from consumer.cli.main import main as paylink

    sys.exit(paylink(sys.argv[2:]))


def read_after(path: Path, moment: float, timeout_s: float = 10) -> dict[str, int]:
    """The counts written after ``moment`` (wall clock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            body = {"written_at": 0}
        if body["written_at"] > moment:
            return dict(body["counts"])
        time.sleep(0.02)
    raise TimeoutError(f"no command counts written to {path} after {moment}")


if __name__ == "__main__":
    main()
