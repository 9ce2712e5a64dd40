"""Data quality: normalisation, audits, duplicates and their reversible merge.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` loads
the records, asks these functions what to write, and writes it in one unit of work.
"""

# Merge and unmerge (issue 14, part 4).
from crmkit.quality._merge import (
    FieldChange,
    HostPolicy,
    Merged,
    MergeKind,
    MergePlan,
    MergePolicy,
    MergeRecord,
    Repointed,
    Strategy,
    merge,
    repoint,
    restrictive_consents,
)

__all__ = [
    # Merge and unmerge (issue 14, part 4).
    "FieldChange",
    "HostPolicy",
    "MergeKind",
    "MergePlan",
    "MergePolicy",
    "MergeRecord",
    "Merged",
    "Repointed",
    "Strategy",
    "merge",
    "repoint",
    "restrictive_consents",
]
