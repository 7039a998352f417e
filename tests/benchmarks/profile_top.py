"""Top self-time functions of a py-spy ``--format raw`` profile (collapsed stacks), and time by library.

    python -m tests.benchmarks.profile_top FILE [N]

Each line of the file is ``frame;frame;...;leaf COUNT``, a frame being ``function (file:line)``: the
leaf is where the sample was taken, so summing counts by leaf function (lines merged) gives each
function's self time as a share of all samples. "By library" charges each sample to the innermost frame
of a library of interest (stripe, pydantic, pymongo, aiokafka, aiohttp, json, our own packages), i.e.
the time spent inside that library and below it, up to the next library of interest; asyncio only
when no other library is on the stack (a socket write called by pymongo is pymongo's).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
LIBRARIES = ("stripe", "pydantic", "pymongo", "bson", "aiokafka", "aiohttp", "httpx", "json", "logging",
             "domain", "adapters", "consumer", "asyncio")  # fmt: skip


def _parse(path: Path) -> list[tuple[list[str], int]]:
    samples = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples.append((stack.split(";"), int(count)))
    return samples


def _function(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    return (match["function"], match["file"]) if match else (frame, "")


def top(path: Path, n: int = 10) -> list[tuple[str, float]]:
    leaves: Counter[str] = Counter()
    samples = _parse(path)
    for frames, count in samples:
        function, file = _function(frames[-1])
        leaves[f"{function} ({file})"] += count
    total = sum(leaves.values()) or 1
    return [(frame, 100 * samples / total) for frame, samples in leaves.most_common(n)]


def by_library(path: Path) -> list[tuple[str, float]]:
    charged: Counter[str] = Counter()
    samples = _parse(path)
    for frames, count in samples:
        owner = "other"
        for frame in reversed(frames):
            file = _function(frame)[1]
            library = next((lib for lib in LIBRARIES if file.startswith((f"{lib}/", f"{lib}.py"))), None)
            if library == "asyncio" and owner == "other":
                owner = library  # unless a caller below is a library of interest
            elif library is not None and library != "asyncio":
                owner = library
                break
        charged[owner] += count
    total = sum(charged.values()) or 1
    return [(library, 100 * n / total) for library, n in charged.most_common()]


def main() -> None:
    path = Path(sys.argv[1])
    for frame, share in top(path, int(sys.argv[2]) if len(sys.argv) > 2 else 10):
        print(f"{share:5.1f} %  {frame}")
    print("by library (innermost):", ", ".join(f"{lib} {share:.1f} %" for lib, share in by_library(path)))


if __name__ == "__main__":
    main()
