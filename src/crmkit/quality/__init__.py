"""Data quality: normalisation, the completeness audit, duplicate detection and the
reversible merge of duplicates.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` loads the
records, asks these functions what to write, and writes it in one unit of work.
Normalisation gives *match keys* and never changes stored data; empty and blank values
have no key and never match each other.
"""

# --- normalisation, audit and duplicate detection
from crmkit.quality._audit import AuditReport, FieldFill, InvalidValue, invalid_values
from crmkit.quality._blocking import ACCOUNT_KEYS, CONTACT_KEYS, BlockingKey, match_keys
from crmkit.quality._cluster import Cluster, clusters
from crmkit.quality._compare import (
    Comparison,
    Method,
    Normaliser,
    jaro_winkler,
    levenshtein,
    token_set,
)
from crmkit.quality._match import (
    ACCOUNT_SPEC,
    ACCOUNT_WEIGHTS,
    CONTACT_SPEC,
    CONTACT_WEIGHTS,
    BatchResult,
    Contribution,
    DuplicateModel,
    DuplicatePair,
    DuplicateSpec,
    FitDiagnostic,
    FitProblem,
    Verdict,
    Weights,
    default_model,
    duplicate_pairs,
    estimate_weights,
)

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
from crmkit.quality._normalise import (
    company_key,
    email_key,
    name_key,
    parse_country,
    parse_phone,
    text_key,
)
from crmkit.quality._rows import (
    FIELD_TYPES,
    MAX_CELL,
    ColumnMapping,
    RecordKind,
    build_record,
    read_cells,
)
from crmkit.quality._splink import splink_pairs, splink_weights

__all__ = [
    "ACCOUNT_KEYS",
    "ACCOUNT_SPEC",
    "ACCOUNT_WEIGHTS",
    "CONTACT_KEYS",
    "CONTACT_SPEC",
    "CONTACT_WEIGHTS",
    "FIELD_TYPES",
    "MAX_CELL",
    "AuditReport",
    "BatchResult",
    "BlockingKey",
    "Cluster",
    "ColumnMapping",
    "Comparison",
    "Contribution",
    "DuplicateModel",
    "DuplicatePair",
    "DuplicateSpec",
    "FieldChange",
    "FieldFill",
    "FitDiagnostic",
    "FitProblem",
    "HostPolicy",
    "InvalidValue",
    "MergeKind",
    "MergePlan",
    "MergePolicy",
    "MergeRecord",
    "Merged",
    "Method",
    "Normaliser",
    "RecordKind",
    "Repointed",
    "Strategy",
    "Verdict",
    "Weights",
    "build_record",
    "clusters",
    "company_key",
    "default_model",
    "duplicate_pairs",
    "email_key",
    "estimate_weights",
    "invalid_values",
    "jaro_winkler",
    "levenshtein",
    "match_keys",
    "merge",
    "name_key",
    "parse_country",
    "parse_phone",
    "read_cells",
    "repoint",
    "restrictive_consents",
    "splink_pairs",
    "splink_weights",
    "text_key",
    "token_set",
]
