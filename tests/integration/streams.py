"""A long-running command (``paylink results --follow``, an example consumer) whose stdout lines a test
reads as they come, waiting on a condition with a deadline, then stops with a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

from tests.e2e.processes import ROOT


class Streaming:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self._closed = 0  # output streams at their end (the process exited)
        self._readers = [
            asyncio.create_task(self._collect(process.stdout, self.lines)),
            asyncio.create_task(self._collect(process.stderr, self.errors)),
        ]

    async def _collect(self, stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        async for raw in stream:
            async with self._changed:
                into.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._closed += 1
            self._changed.notify_all()

    async def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        """Until ``condition()`` holds on what was read so far; fails naming ``what`` (and the output)."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait_for(lambda: condition() or self._closed == 2)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}: {self.output()}") from None
        assert condition(), f"exited before {what}: {self.output()}"

    def output(self) -> str:
        return "\n".join([*self.lines, "--- stderr ---", *self.errors[-20:]])

    async def stop(self, sig: int = signal.SIGINT, timeout_s: float = 30) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        await asyncio.gather(*self._readers)
        return code


@contextlib.asynccontextmanager
async def streaming(argv: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT) -> AsyncIterator[Streaming]:
    """``argv`` running while inside; interrupted (SIGINT) on the way out if still running."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stream = Streaming(process)
    try:
        yield stream
    finally:
        await stream.stop()
