"""The suite's report: violations in detail, then the table (scenario x invariant), then the summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TextIO

from tests.reliability.invariants import INVARIANTS
from tests.reliability.runner import ScenarioResult

SHORT = {
    "terminal_saga": "saga",
    "result_published": "result",
    "results_ordered": "order",
    "expected_outcome": "outcome",
    "consumed_accounted": "consumed",
    "offsets_committed": "offsets",
    "one_invoice": "invoice",
    "one_customer": "customer",
    "no_orphans": "orphans",
    "tenant_isolation": "tenant",
    "no_secrets": "secrets",
    "lifecycle_once": "once",
    "lifecycle_forward": "forward",
    "lifecycle_owner": "owner",
    "lifecycle_final": "final",
    "cancel_answered": "c-ans",
    "cancel_outcome": "c-out",
    "void_once": "void1",
    "no_crash": "crash",
    "goal_met": "goal",
}


# Webhook delivery faults that fired (drop, duplicate, delay, hold): the "w" of the chaos cell.
WEBHOOK_FAULTS = {"webhook drop", "webhook duplicate", "webhook delay", "webhook hold"}
# What the webhook scenario saw happen (not chaos it caused): reported in the "exercised" line only.
WEBHOOK_SEEN = {
    "webhook deliveries reordered",
    "webhook deliveries retried",
    "webhook deliveries answered 503",
    "forged webhooks ignored",
    "reconcile recovered",
    "webhook attempts timed out",  # webhook_network: what its toxics did to the deliveries
    "webhook attempts reset or cut",
    "webhook deliveries failed",
    "webhook deliveries handled twice",
}
CANCEL_SEEN = {"links paid", "cancels replayed"}
NOT_EVENTS = {
    "faults fired",
    "429 rate-limited",
    "worker SIGKILL mid-saga",
    *WEBHOOK_FAULTS,
    *WEBHOOK_SEEN,
    *CANCEL_SEEN,
}


def _cell(violations: int) -> str:
    return "ok" if violations == 0 else f"FAIL {violations}"


def write_report(results: Sequence[ScenarioResult], out: TextIO, seconds: float) -> int:
    """Writes the report; returns the number of violations."""
    for result in results:
        chaos = ", ".join(f"{n} x {what}" for what, n in sorted(result.chaos.items())) or "none"
        outcomes = ", ".join(f"{n} {what}" for what, n in sorted(result.outcomes.items()))
        print(
            f"\n[{result.scenario.name}] {result.scenario.summary}\n"
            f"  {result.sent} messages in {result.seconds:.0f}s; {outcomes}; {result.duplicates} duplicate "
            f"deliveries; {result.replayed} replayed after the faults\n  chaos: {chaos}",
            file=out,
        )
        for note in result.notes:
            print(f"  note: {note}", file=out)
        for check in result.checks.values():
            if not check.held:
                print(f"  VIOLATED {check.name} ({check.violations}):", file=out)
                for detail in check.details:
                    print(f"    - {detail}", file=out)

    headers = ["scenario", "msgs", *[SHORT[name] for name in INVARIANTS], "dup", "replay", "chaos"]
    rows: list[list[str]] = []
    totals: Counter[str] = Counter()
    for result in results:
        done = result.chaos
        events = sum(n for what, n in done.items() if what not in NOT_EVENTS)
        cell = f"{events}" + (f"+{done['faults fired']}f" if done["faults fired"] else "")
        cell += f"+{done['429 rate-limited']}r" if done["429 rate-limited"] else ""
        webhook_faults = sum(done[what] for what in WEBHOOK_FAULTS)
        cell += f"+{webhook_faults}w" if webhook_faults else ""
        rows.append(
            [
                result.scenario.name,
                str(result.sent),
                *[_cell(result.checks[name].violations) for name in INVARIANTS],
                str(result.duplicates),
                str(result.replayed),
                cell,
            ]
        )
        totals.update(result.chaos)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    legend = ", ".join(f"{short} = {name}" for name, short in SHORT.items())
    print(
        f"\ncolumns: {legend}; chaos = kills, stops, joins, restarts, outages + faults fired (f) + 429s (r)"
        " + webhook delivery faults fired (w)",
        file=out,
    )
    exercised = ", ".join(f"{n} x {what}" for what, n in sorted(totals.items()))
    print(f"exercised: {exercised or 'nothing'}; wall time {seconds:.0f}s", file=out)
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print("\n" + line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)), file=out)
    print("-" * len(line), file=out)
    requests = sum(r.sent for r in results)
    violations = sum(r.violations for r in results)
    print(f"reliability: {len(results)} scenarios, {requests} requests, {violations} violations", file=out)
    return violations
