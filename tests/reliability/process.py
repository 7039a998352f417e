"""A paylink process started behind a command prefix: ``faketime -f +90s paylink relay`` runs one relay
with its clock 90 s ahead (Debian's ``faketime`` preloads libfaketime and execs the command, so the pid
the suite signals is paylink's own)."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.e2e.processes import ROOT, PaylinkProcess, environment


def faketime_available() -> bool:
    return shutil.which("faketime") is not None


def skewed(offset_s: float) -> list[str]:
    """The prefix for a clock ``offset_s`` seconds off (negative: behind). ``-f`` keeps the clock
    running at normal speed from the offset. Monotonic clocks are left alone: a skewed host's wall clock
    is wrong, its monotonic clock still measures intervals."""
    return ["env", "FAKETIME_DONT_FAKE_MONOTONIC=1", "faketime", "-f", f"{offset_s:+.0f}s"]


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
