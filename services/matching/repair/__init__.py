"""Rebuilding the catalogue index from the listing service (`rebuild`) and checking it against
the source (`check`, with `repair`), beside a live indexer: both take the indexer's lease for
their last step and never race it. How, and why so: docs/DECISIONS.md, Matching, "Index rebuild
and check"."""

from services.matching.repair.check import check
from services.matching.repair.lease import Lease, hold_lease
from services.matching.repair.rebuild import rebuild
from services.matching.repair.reports import (
    CheckReport,
    LeaseBusy,
    LeaseTimeout,
    Progress,
    RebuildReport,
    RepairError,
)

__all__ = [
    "CheckReport",
    "Lease",
    "LeaseBusy",
    "LeaseTimeout",
    "Progress",
    "RebuildReport",
    "RepairError",
    "check",
    "hold_lease",
    "rebuild",
]
