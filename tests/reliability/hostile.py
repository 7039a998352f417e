"""``hostile_10k``: ten thousand hostile messages through Kafka in one scenario (issue #17).

The mix (of ``count``): hypothesis-generated near-valid requests (fields dropped, replaced, added),
random bytes, valid JSON cut inside a multi-byte UTF-8 character, nesting from 64 to 200,000 levels,
JSON objects with duplicate keys (two ``event_id``s, two ``account_id``s…), numbers at and beyond every
limit (0, -1, 2**31, 2**53 + 1, 2**63, 10**400, 1e308, NaN and Infinity literals, -0.0, 5e-324) in every
numeric field, and a few 1 MiB values. Every one must end as a result or a dead letter, the worker must
never stop, and the valid requests interleaved with them keep a stated share of their throughput
(``throughput_kept``: the valid requests of the stream's hostile part against those of its clean start).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime

from tests.reliability.invariants import Observation
from tests.reliability.runner import Scenario, ScenarioRun
from tests.reliability.workload import (
    ONE_MIB,
    Sent,
    World,
    _template,
    classify,
    hostile_random_bytes,
    hypothesis_messages,
)

MIN_THROUGHPUT_KEPT = 0.25  # valid requests among hostile ones run at least at a quarter of their clean rate
LIMITS: list[str] = [
    "0",
    "-1",
    "-0.0",
    "2147483647",
    "2147483648",
    "9007199254740993",
    "9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 400,
    "1e308",
    "1e309",
    "5e-324",
    "1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "99999999999999999999.5",
]
NUMERIC_FIELDS = ["amount", "quantity", "days_until_due", "schema_version"]


def truncated_utf8(world: World, rng: random.Random) -> bytes:
    """Valid JSON with non-ASCII text, cut inside one of its multi-byte characters."""
    body = {**_template(world), "description": "Zahlung für Größe " + "€😀" * rng.randint(1, 40)}
    raw = json.dumps(body, ensure_ascii=False).encode()
    starts = [i for i, byte in enumerate(raw) if byte >= 0xC0]  # the lead byte of a multi-byte character
    return raw[: rng.choice(starts) + 1]


def deep(rng: random.Random) -> bytes:
    depth = rng.choice([64, 500, 1000, 5000, 50_000, 200_000])
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"event_id": "e", "metadata": ' + inner + b"}"


def duplicate_keys(world: World, rng: random.Random) -> bytes:
    """An object whose keys repeat: parsers disagree on which wins (Python's json: the last)."""
    body = _template(world)
    text = json.dumps(body)[:-1]
    name = rng.choice(["event_id", "account_id", "contact_id", "currency", "line_items", "event_type"])
    other = rng.choice(['"other"', "null", "[]", '{"x": 1}', '"' + world.neighbour.account_id + '"'])
    return f'{text}, "{name}": {other}}}'.encode()


def number_at_limit(world: World, rng: random.Random) -> bytes:
    body = _template(world)
    field = rng.choice(NUMERIC_FIELDS)
    marker = "__LIMIT__"
    if field in ("amount", "quantity"):
        body["line_items"] = [{"description": "x", "amount": 100, field: marker}]
    else:
        body[field] = marker
    return json.dumps(body).replace(f'"{marker}"', rng.choice(LIMITS)).encode()


def huge_value(world: World, rng: random.Random) -> bytes:
    field = rng.choice(["description", "note_id", "contact_id", "correlation_id"])
    return json.dumps({**_template(world), field: rng.choice("xyé") * ONE_MIB}).encode()[: ONE_MIB + 512]


def hostile_10k(world: World, rng: random.Random, count: int) -> list[Sent]:
    near_valid = count * 3 // 10
    out = hypothesis_messages(world, near_valid, rng.randrange(1 << 30))
    out += hostile_random_bytes(rng, count // 5)
    makers: list[tuple[str, Callable[[], bytes], int]] = [
        ("truncated_utf8", lambda: truncated_utf8(world, rng), 10),
        ("deep_nesting", lambda: deep(rng), 6),
        ("duplicate_keys", lambda: duplicate_keys(world, rng), 12),
        ("number_limits", lambda: number_at_limit(world, rng), 20),
    ]
    huge = 20
    total_weight = sum(weight for _, _, weight in makers)
    left = count - len(out) - huge
    for label, make, weight in makers:
        out += [classify(label, make(), None) for _ in range(left * weight // total_weight)]
    while len(out) < count - huge:
        out.append(classify("number_limits", number_at_limit(world, rng), None))
    out += [classify("one_mib_value", huge_value(world, rng), None) for _ in range(huge)]
    return out


def _moment(value: object) -> datetime | None:
    """A saga's ``updated_at``: stored as an ISO string (``...Z``), a datetime on other stores."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _rate(moments: list[datetime]) -> float:
    if len(moments) < 5:
        return 0.0
    span = (max(moments) - min(moments)).total_seconds()
    return len(moments) / span if span > 0 else float("inf")


def throughput_kept(run: ScenarioRun, obs: Observation) -> list[str]:
    """Valid requests per second while hostile ones are interleaved, against the clean start's."""
    clean_ids: set[str | None] = run.state.get("clean_ids", set())
    mixed_ids = {s.event_id for s in run.sent if s.valid and not s.duplicate} - clean_ids
    moments: dict[str, list[datetime]] = {"clean": [], "mixed": []}
    for saga_id, saga in obs.sagas.items():
        phase = "clean" if saga_id in clean_ids else "mixed" if saga_id in mixed_ids else None
        moment = _moment(saga.get("updated_at"))
        if phase is not None and moment is not None:
            moments[phase].append(moment)
    clean, mixed = _rate(moments["clean"]), _rate(moments["mixed"])
    invalid = sum(1 for s in run.sent if not s.valid)
    labels = sorted({s.label for s in run.sent if not s.valid})
    run.notes.append(
        f"{invalid} hostile messages ({', '.join(labels)}); valid requests {clean:.1f}/s clean, "
        f"{mixed:.1f}/s among hostile ones (kept {mixed / clean if clean else 0:.2f}, "
        f"floor {MIN_THROUGHPUT_KEPT}; {len(moments['clean'])} and {len(moments['mixed'])} sagas)"
    )
    run.chaos["hostile inputs"] += invalid
    problems = []
    if invalid < 9_000:
        problems.append(f"only {invalid} hostile messages were sent")
    if clean and mixed < MIN_THROUGHPUT_KEPT * clean:
        problems.append(f"valid throughput fell to {mixed:.1f}/s among hostile messages ({clean:.1f}/s clean)")
    return problems


def hostile_scenario() -> Scenario:
    return Scenario(
        "hostile_10k",
        "10,000 hostile messages (near-valid, random bytes, cut UTF-8, deep nesting, duplicate keys, numbers "
        "at every limit, 1 MiB values) among 400 valid requests",
        requests=400,
        produce_s=30,
        hostile=hostile_10k,
        hostile_count=10_000,
        hostile_after=0.3,
        # ~11 messages/s on the loaded 2-core machine (load average 23: the dead letters' writes to FerretDB):
        # 10,400 messages take ~16 min there, a few on a quiet machine
        settle_timeout_s=1500.0,
        goal=throughput_kept,
    )
