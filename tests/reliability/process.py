"""A paylink process started behind a command prefix: ``env LD_PRELOAD=…libfaketime… FAKETIME=+90s
paylink relay`` runs one relay with its clock 90 s ahead; ``env`` execs, so the pid the suite signals is
paylink's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.processes import ROOT, PaylinkProcess, environment

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")  # Debian's faketime package


def faketime_available() -> bool:
    return LIBFAKETIME.exists()


def skewed(offset_s: float) -> list[str]:
    """The prefix for a clock ``offset_s`` seconds off (negative: behind), running at normal speed.

    libfaketime is preloaded through ``env`` (which execs), not through the ``faketime`` program: that one
    runs the command as its child, so a SIGKILL or SIGTERM meant for paylink would end ``faketime`` and
    orphan paylink. Monotonic clocks are left alone: a skewed host's wall clock is wrong, its monotonic
    clock still measures intervals."""
    return [
        "env",
        f"LD_PRELOAD={LIBFAKETIME}",
        f"FAKETIME={offset_s:+.0f}s",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
    ]


class WrappedProcess(PaylinkProcess):
    def __init__(self, prefix: list[str], command: str, *args: object) -> None:
        super().__init__(command, *args)  # type: ignore[arg-type]
        self.prefix = prefix

    def start(self) -> PaylinkProcess:
        self.starts += 1
        with (self._log_dir / f"{self.command}-{id(self)}-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "consumer.cli", self.command, *self._extra],
                env=environment(self._settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self
