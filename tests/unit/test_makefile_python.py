"""`make` makes the venv from the first Python 3.11+ on the PATH (python3.14 … python3.11, python3), skips
an older one, and takes `PYTHON=` when given; `make -n` shows the commands without running them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def venv_command(path: str, *overrides: str) -> str:
    ran = subprocess.run(
        ["make", "-s", "-n", "-B", ".venv/.installed", *overrides],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in ran.stdout.splitlines() if line.endswith("-m venv .venv"))


def test_an_older_python_is_skipped_for_the_next_one(tmp_path: Path) -> None:
    pythons, tools = tmp_path / "pythons", tmp_path / "tools"
    pythons.mkdir()
    tools.mkdir()
    old = pythons / "python3.14"
    old.write_text("#!/bin/sh\nexit 1\n")  # answers the version check as a 3.10 would: false
    old.chmod(0o755)
    (pythons / "python3").symlink_to(sys.executable)
    (tools / "make").symlink_to(shutil.which("make") or "make")  # only make, no system Python
    assert venv_command(f"{pythons}:{tools}") == f"{pythons / 'python3'} -m venv .venv"


def test_python_can_be_chosen() -> None:
    assert venv_command(os.environ["PATH"], f"PYTHON={sys.executable}") == f"{sys.executable} -m venv .venv"
