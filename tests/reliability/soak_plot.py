"""The soak's arithmetic and picture: least-squares slopes over the steady part, and a PNG of the series."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt

WARM_UP = 0.2  # the first fifth of the run (imports, caches, pools filling) is left out of the slopes


def steady(points: list[tuple[object, object]]) -> list[tuple[float, float]]:
    numeric = [(float(str(t)), float(str(v))) for t, v in points]
    if not numeric:
        return []
    start = numeric[0][0] + WARM_UP * (numeric[-1][0] - numeric[0][0])
    return [(t, v) for t, v in numeric if t >= start]


def slope_per_minute(points: list[tuple[object, object]]) -> float:
    """The least-squares slope of value over time, per minute, over the steady part."""
    data = steady(points)
    if len(data) < 2:
        return 0.0
    mean_t = sum(t for t, _ in data) / len(data)
    mean_v = sum(v for _, v in data) / len(data)
    var = sum((t - mean_t) ** 2 for t, _ in data)
    if var == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in data) / var


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    panels = [("rss_mib", "RSS (MiB)"), ("fds", "open FDs"), ("tasks", "asyncio tasks")]
    figure, axes = plt.subplots(5, 1, figsize=(11, 15), sharex=True)
    roles = sorted({str(r["process"]) for r in rows})
    for axis, (name, label) in zip(axes[:3], panels, strict=True):
        for role in roles:
            mine = [r for r in rows if r["process"] == role]
            axis.plot([float(str(r["t_s"])) for r in mine], [float(str(r[name])) for r in mine], label=role)
        axis.set_ylabel(label)
        axis.legend(loc="upper left")
    worker = [r for r in rows if r["process"] == "worker"]
    times = [float(str(r["t_s"])) for r in worker]
    for name in ("outbox", "sagas", "dead_letters"):
        axes[3].plot(times, [float(str(r[name])) for r in worker], label=name)
    axes[3].set_ylabel("documents")
    axes[3].legend(loc="upper left")
    for name in ("unpublished", "lag"):
        axes[4].plot(times, [float(str(r[name])) for r in worker], label=name)
    axes[4].set_ylabel("backlog (outbox) / lag (Kafka)")
    axes[4].legend(loc="upper left")
    axes[4].set_xlabel("seconds")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
