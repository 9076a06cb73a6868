"""What a rebuild or a check reports, and why one could not be carried out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "CheckReport",
    "LeaseBusy",
    "LeaseTimeout",
    "Progress",
    "RebuildReport",
    "RepairError",
]

# Documents indexed so far, and how many there will be (None while unknown).
Progress = Callable[[int, int | None], None]


class RepairError(RuntimeError):
    """A rebuild or a check could not be carried out (nothing was swapped or repaired)."""


class LeaseBusy(RepairError):
    """Another rebuild or repair of this index holds the lease."""


class LeaseTimeout(RepairError):
    """The running indexer could not be made to release the lease in time."""


@dataclass
class RebuildReport:
    index_uid: str
    temporary_uid: str
    listings: int = 0  # listings read from the source (every status)
    documents: int = 0  # searchable documents in the index that was swapped in
    caught_up_events: int = 0  # feed events applied after the snapshot
    pending: int = 0  # listings the live indexer still has events of (it replays them)
    records_fixed: int = 0
    preempted: bool = False  # a running indexer was made to hand over its lease
    seconds: float = 0.0


@dataclass
class CheckReport:
    index_uid: str
    listings: int = 0  # listings in the source (every status)
    searchable: int = 0  # of which searchable
    documents: int = 0  # documents in the index
    pending: int = 0  # listings with changes the indexer has not applied yet (not compared)
    missing: list[str] = field(default_factory=list)  # searchable, absent from the index
    stale: list[str] = field(default_factory=list)  # indexed with another version
    extra: list[str] = field(default_factory=list)  # indexed, not searchable (or unknown)
    records: list[str] = field(default_factory=list)  # idempotency records that disagree
    repaired: bool = False
    preempted: bool = False
    seconds: float = 0.0

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.stale or self.extra or self.records)
