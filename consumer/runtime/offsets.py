"""Which offset of a partition may be committed, when its messages finish out of order.

Messages of one partition are processed concurrently (different contacts), so they finish in any
order. Kafka's committed offset means "everything before this is done", so it may only advance over
a contiguous run of finished messages: a finished message behind an unfinished one waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PartitionProgress:
    """Offsets started and finished on one partition, in the order Kafka delivered them."""

    pending: dict[int, bool] = field(default_factory=dict)  # offset -> finished; insertion = delivery order
    committable: int | None = None  # next offset to commit (last contiguous finished + 1)

    def started(self, offset: int) -> None:
        self.pending[offset] = False

    def finished(self, offset: int) -> None:
        if offset not in self.pending:
            return  # abandoned by a revocation: its partition is no longer ours
        self.pending[offset] = True
        # Advance over the contiguous finished prefix; dicts keep delivery order, so the first key is oldest.
        while self.pending:
            oldest = next(iter(self.pending))
            if not self.pending[oldest]:
                break
            del self.pending[oldest]
            self.committable = oldest + 1

    @property
    def in_flight(self) -> int:
        return sum(1 for done in self.pending.values() if not done)


class OffsetTracker:
    """Per-partition progress; partitions are opaque hashable keys (aiokafka's ``TopicPartition``)."""

    def __init__(self) -> None:
        self._partitions: dict[object, PartitionProgress] = {}
        self._committed: dict[object, int] = {}

    def started(self, partition: object, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionProgress()).started(offset)

    def finished(self, partition: object, offset: int) -> None:
        progress = self._partitions.get(partition)
        if progress is not None:
            progress.finished(offset)

    def to_commit(self, partitions: set[object] | None = None) -> dict[object, int]:
        """Offsets that advanced since the last ``committed`` call (optionally only for ``partitions``)."""
        result: dict[object, int] = {}
        for partition, progress in self._partitions.items():
            if partitions is not None and partition not in partitions:
                continue
            offset = progress.committable
            if offset is not None and offset != self._committed.get(partition):
                result[partition] = offset
        return result

    def committed(self, offsets: dict[object, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: set[object]) -> None:
        """Drops revoked partitions: late completions of their messages are ignored."""
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)

    def in_flight(self, partition: object) -> int:
        progress = self._partitions.get(partition)
        return progress.in_flight if progress else 0
