"""Grades a ``mutmut run`` of ``domain/`` (``make mutation``): killed / non-equivalent mutants per module.

Reads mutmut's results (``mutants/domain/*.py.meta``), drops the mutants listed in
``tests/mutation/equivalent.txt`` (``<mutant name> | <mutated code> | why it cannot change behaviour``),
prints a table and the surviving mutants, and exits 1 when the total is below 95% or any module below 90%.
Killed means detected: a failing test, a timeout or a type-check error. mutmut renumbers a function's
mutants when the function changes, so a listed mutant is only dropped while its mutated code is the one
listed; entries that are gone, now another mutation, or killed anyway are reported.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "mutants" / "domain"
EQUIVALENT = Path(__file__).with_name("equivalent.txt")
MIN_TOTAL = 95.0
MIN_MODULE = 90.0
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}


def equivalent_mutants(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant name → its mutated code as listed (blank lines and ``#`` comment lines ignored)."""
    listed: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, code, why = (part.strip() for part in line.split(" | ", 2))
            assert why, f"equivalent.txt: say why {name} is equivalent"
            listed[name] = code
    return listed


def mutated_code(name: str) -> str:
    """The lines ``mutmut show <name>`` prints with "+", stripped and joined with " / "."""
    from mutmut.__main__ import find_mutant, get_diff_for_mutant  # type: ignore[attr-defined]

    diff = get_diff_for_mutant(name, path=find_mutant(name).path)
    return " / ".join(line[1:].strip() for line in diff.splitlines() if line.startswith("+") and line[:3] != "+++")


def statuses(results: Path = RESULTS) -> dict[str, str]:
    """Mutant name → mutmut's status ("killed", "survived", "no tests", "timeout"…)."""
    found: dict[str, str] = {}
    for meta in sorted(results.glob("*.py.meta")):
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            found[name] = status_by_exit_code[exit_code]
    return found


def module_of(mutant: str) -> str:
    """``domain.saga_steps.xǁSagaRunǁshorten__mutmut_3`` → ``saga_steps``."""
    return mutant.split(".")[1]


def percent(killed: int, counted: int) -> float:
    return 100.0 * killed / counted if counted else 100.0


def main() -> int:
    os.chdir(ROOT)  # mutmut reads its configuration and mutants/ from the working directory
    found = statuses()
    if not found:
        print(f"no mutmut results under {RESULTS}: run `mutmut run` first", file=sys.stderr)
        return 2
    listed = equivalent_mutants()
    equivalent = {name: code for name, code in listed.items() if name in found and mutated_code(name) == code}
    killed: dict[str, int] = defaultdict(int)
    counted: dict[str, int] = defaultdict(int)
    excluded: dict[str, int] = defaultdict(int)
    survivors: list[tuple[str, str]] = []
    for name, status in sorted(found.items()):
        module = module_of(name)
        if name in equivalent:
            excluded[module] += 1
            continue
        counted[module] += 1
        if status in DETECTED:
            killed[module] += 1
        else:
            survivors.append((name, status))
    print(f"{'module':<14}{'killed':>8}{'counted':>9}{'equiv.':>8}{'score':>9}")
    failing = []
    for module in sorted(counted.keys() | excluded.keys()):
        score = percent(killed[module], counted[module])
        print(f"{module:<14}{killed[module]:>8}{counted[module]:>9}{excluded[module]:>8}{score:>8.1f}%")
        if score < MIN_MODULE:
            failing.append(f"{module} {score:.1f}% < {MIN_MODULE}%")
    total = percent(sum(killed.values()), sum(counted.values()))
    print(f"{'total':<14}{sum(killed.values()):>8}{sum(counted.values()):>9}{sum(excluded.values()):>8}{total:>8.1f}%")
    if total < MIN_TOTAL:
        failing.append(f"total {total:.1f}% < {MIN_TOTAL}%")
    for name, status in survivors:
        print(f"  {status}: {name}  (mutmut show {name})")
    for name in sorted(listed.keys() & found.keys() - equivalent.keys()):
        print(f"  listed as equivalent but now another mutation (counted; review it): {name}")
    stale = sorted(set(listed) - set(found))
    detected_anyway = sorted(name for name in equivalent.keys() & found.keys() if found[name] in DETECTED)
    for name in stale:
        print(f"  listed as equivalent but no longer generated: {name}")
    for name in detected_anyway:
        print(f"  listed as equivalent but killed (drop it from equivalent.txt): {name}")
    if failing:
        print("mutation score too low: " + "; ".join(failing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
