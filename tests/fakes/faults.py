"""Fault injection shared by the fakes: fail a named call once, N times or always."""

from __future__ import annotations

from dataclasses import dataclass, field


class SimulatedCrash(Exception):
    """The process "died" here: tests catch it and run the saga again on the same stores."""


@dataclass
class Fault:
    error: BaseException
    remaining: int | None  # None: forever
    after_effect: bool  # the call takes effect, then the error is raised (a lost response)
    skip: int = 0  # matching calls let through first (fail the 3rd: skip=2)


@dataclass
class FaultPlan:
    faults: dict[str, list[Fault]] = field(default_factory=dict)

    def add(
        self,
        call: str,
        error: BaseException,
        *,
        times: int | None = 1,
        after_effect: bool = False,
        skip: int = 0,
    ) -> None:
        self.faults.setdefault(call, []).append(Fault(error, times, after_effect, skip))

    def check(self, call: str, *, after_effect: bool = False) -> None:
        """Raises the first armed fault of ``call`` for this phase (before or after the effect)."""
        for fault in self.faults.get(call, []):
            if fault.after_effect != after_effect or fault.remaining == 0:
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
            raise fault.error

    def clear(self) -> None:
        self.faults.clear()
