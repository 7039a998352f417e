"""Running ``paylink`` commands as subprocesses (exit codes and output are what scripts see), and
scoped emulator faults that never touch other tests' Stripe accounts."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from consumer.runtime.settings import Settings
from tests.e2e.processes import ROOT, environment


@dataclass
class Ran:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode()

    @property
    def err(self) -> str:
        return self.stderr.decode()


async def paylink(settings: Settings, *args: str, stdin: bytes | None = None, timeout_s: float = 60) -> Ran:
    """``python -m consumer.cli ARGS`` with ``settings`` as PAYLINK_* variables; never blocks the loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer.cli",
        *args,
        env=environment(settings),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout, stderr)


@contextlib.asynccontextmanager
async def stripe_fault(stripe_base: str, account: str, **fault: Any) -> AsyncIterator[dict[str, Any]]:
    """One emulator fault limited to ``account`` (other tests share the emulator), removed on exit."""
    async with httpx.AsyncClient(base_url=stripe_base) as control:
        response = await control.post("/_emulator/faults", json={**fault, "account": account})
        response.raise_for_status()
        registered = response.json()
        try:
            yield registered
        finally:
            await control.delete(f"/_emulator/faults/{registered['id']}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
