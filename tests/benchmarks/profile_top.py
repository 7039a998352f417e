"""Top self-time functions of a py-spy ``--format raw`` profile (collapsed stacks).

    python -m tests.benchmarks.profile_top FILE [N]

Each line of the file is ``frame;frame;...;leaf COUNT``: the leaf is where the sample was taken, so
summing counts by leaf gives each function's self time as a share of all samples.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def top(path: Path, n: int = 10) -> list[tuple[str, float]]:
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            leaves[stack.rsplit(";", 1)[-1]] += int(count)
    total = sum(leaves.values()) or 1
    return [(frame, 100 * samples / total) for frame, samples in leaves.most_common(n)]


def main() -> None:
    for frame, share in top(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 10):
        print(f"{share:5.1f} %  {frame}")


if __name__ == "__main__":
    main()
