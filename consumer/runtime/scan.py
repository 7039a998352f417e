"""The overdue scan's loop, inside the relay process: one active scanner among the relays, by a lease.

Every ``interval_s`` the relay holding the ``overdue-scan`` lease runs one pass of
``consumer.app.reconcile.OverdueScan``; the lease lasts three intervals and is renewed at each pass,
so a standby relay takes the scan over within about three intervals of the active one dying (at once
when it stops gracefully). A failed pass is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from consumer.app.reconcile import OverdueScan
from consumer.ports import Lease
from domain.errors import RetryableError

log = logging.getLogger("paylink.scan")
LEASE_INTERVALS = 3  # the scan lease outlives this many intervals without renewal


class ScanLoop:
    def __init__(self, scan: OverdueScan, lease: Lease, interval_s: float) -> None:
        self._scan = scan
        self._lease = lease
        self._interval_s = interval_s
        self.active = False
        self.passes = 0

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.run_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
        finally:
            if self.active:
                with contextlib.suppress(RetryableError):
                    await self._lease.release()

    async def run_once(self) -> None:
        try:
            active = await self._lease.acquire()
            if active != self.active:
                log.info("overdue scan lease %s", "acquired" if active else "lost", extra={"owner": self._lease.owner})
            self.active = active
            if active:
                await self._scan.run_once()
                self.passes += 1
        except Exception as error:  # one failed pass must not stop the relay
            log.warning("overdue scan pass failed; next pass in %.0f s", self._interval_s, extra={"error": repr(error)})
