"""``paylink status``'s human form: the verdict first, then one block per part; ``--watch`` frames."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from consumer.cli.output import iso, print_table

Report = dict[str, Any]
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: a --watch frame replaces the previous one


def print_status(report: Report) -> None:
    print(render_status(report), end="")


def watch_frame(report: Report, interval_s: float, tty: bool) -> str:
    """One ``--watch`` refresh: on a terminal the screen is cleared first; piped, frames follow each other."""
    header = f"paylink status, every {interval_s:g} s (Ctrl-C to stop), {iso(datetime.now(UTC))}\n"
    return (CLEAR if tty else "") + header + render_status(report) + ("" if tty else "\n")


def render_status(report: Report) -> str:
    out = io.StringIO()
    verdict = report.get("verdict")
    if verdict is not None:
        print(f"VERDICT {verdict['health'].upper()}", file=out)
        for reason in verdict["reasons"]:
            print(f"  {reason}", file=out)
    _kafka(report["kafka"], out)
    _sagas(report["sagas"], report.get("failures", {}), out)
    _outbox(report["outbox"], out)
    _relay(report["relay"], out)
    if "dead_letters" in report:
        _dead_letters(report["dead_letters"], out)
    if "lifecycle" in report:
        lifecycle = report["lifecycle"]
        print("LIFECYCLE", file=out)
        if "error" in lifecycle:
            print(f"  {lifecycle['error']}", file=out)
        else:
            print(f"  links: {_counts(lifecycle['by_status'])}", file=out)
    return out.getvalue()


def _kafka(kafka: Report, out: io.StringIO) -> None:
    print("KAFKA", file=out)
    if "group" in kafka:
        print(
            f"  topic {kafka['topic']}, group {kafka['group']} ({kafka['group_state']}, {kafka['members']} member(s))",
            file=out,
        )
        for member in kafka.get("member_list", []):
            print(f"    {member['client_id']} on {member['host']}", file=out)
        if kafka["partitions"]:
            print_table(
                ["  PARTITION", "COMMITTED", "END", "LAG"],
                [[f"  {p['partition']}", p["committed"], p["end"], p["lag"]] for p in kafka["partitions"]],
                out,
            )
            print(f"  total lag {kafka['total_lag']}", file=out)
    if "error" in kafka:
        print(f"  {kafka['error']}", file=out)


def _sagas(sagas: Report, failures: Report, out: io.StringIO) -> None:
    print("SAGAS", file=out)
    if "error" in sagas:
        print(f"  {sagas['error']}", file=out)
        return
    print(f"  in flight (running): {sagas['in_flight']}", file=out)
    print(f"  updated in the last {span(sagas['window_s'])}: {_counts(sagas['by_status'])}", file=out)
    rows = failures.get("rows", [])
    if rows:
        print_table(
            ["  FAILED_REASON", "RETRYABLE", "COUNT"],
            [[f"  {r['reason']}", str(r["retryable"]).lower(), r["count"]] for r in rows],
            out,
        )


def _outbox(outbox: Report, out: io.StringIO) -> None:
    print("OUTBOX", file=out)
    if "error" in outbox:
        print(f"  {outbox['error']}", file=out)
    else:
        age = f", oldest {outbox['oldest_age_s']} s old ({outbox['oldest_created_at']})" if outbox["backlog"] else ""
        print(f"  backlog {outbox['backlog']}{age}", file=out)


def _relay(relay: Report, out: io.StringIO) -> None:
    print("RELAY", file=out)
    if "error" in relay:
        print(f"  {relay['error']}", file=out)
    elif relay["owner"] is None:
        print(f"  no relay has ever held the lease {relay['lease']}", file=out)
    else:
        state = f"held, expires in {relay['expires_in_s']} s" if relay["held"] else "lapsed: no active relay"
        print(f"  lease {relay['lease']}: {relay['owner']} ({state}; expires_at {relay['expires_at']})", file=out)


def _dead_letters(letters: Report, out: io.StringIO) -> None:
    print("DEAD LETTERS", file=out)
    if "error" in letters:
        print(f"  {letters['error']}", file=out)
        return
    newest = letters["newest"]
    latest = f"; newest {newest['id']} ({newest['reason']}, {newest['failed_at']})" if newest else ""
    print(f"  {letters['in_window']} in the window, {letters['total']} in all{latest}", file=out)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {number}" for name, number in counts.items()) or "none"


def span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
