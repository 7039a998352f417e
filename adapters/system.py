"""The system's clock and id generator: the one ``Clock`` and the one ``IdGenerator`` paylink runs on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class SystemClock:
    """``domain.ports.Clock`` on the system's wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIds:
    """``domain.ports.IdGenerator`` of random (version 4) UUIDs."""

    def new_id(self) -> str:
        return str(uuid.uuid4())
