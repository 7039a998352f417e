"""Whole paylink processes for end-to-end tests: started with PAYLINK_* settings, killed by pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from consumer.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYLINK_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        env[f"PAYLINK_{name.upper()}"] = str(raw)
    env["PAYLINK_LOG_FORMAT"] = "json"
    return env


class PaylinkProcess:
    """One ``paylink <command>`` subprocess, its output kept in a log file for assertions."""

    def __init__(self, command: str, settings: Settings, log_dir: Path, *extra: str) -> None:
        self.command = command
        self._settings = settings
        self._log_dir = log_dir
        self._extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> PaylinkProcess:
        self.starts += 1
        # The child writes to its own copy of the descriptor; ours is closed at once (left open, it would
        # leak until garbage collection: a ResourceWarning, an error under filterwarnings=error).
        with (self._log_dir / f"{self.command}-{id(self)}-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer.cli", self.command, *self._extra],
                env=environment(self._settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no lease release — a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 30) -> int | None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Polls ``condition`` until true; fails with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def logs_of(log_dir: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log")))
