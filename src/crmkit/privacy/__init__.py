"""Privacy: export, erasure, suppression, retention and the audit trail.

Pure domain logic over models; the use cases are :class:`crmkit.crm.CRM`'s
(``export_person``, ``erase_person``, ``apply_retention``, ``audit_trail``).
"""

# Export, erasure, retention and audit (issue 15, parts 5-8).
from crmkit.privacy._audit import AUDITED, audit_changes, audit_event
from crmkit.privacy._erasure import (
    ERASED_TEXT,
    KEPT_FIELDS,
    PERSONAL_FIELDS,
    anonymise,
    check_secret,
    identifier_digest,
    suppressions_of,
)
from crmkit.privacy._export import EXPORT_FORMAT, Bundle, Manifest, bundle_of
from crmkit.privacy._retention import (
    RetentionAction,
    RetentionPlan,
    RetentionPolicy,
    RetentionRules,
)

__all__ = [
    "AUDITED",
    "ERASED_TEXT",
    "EXPORT_FORMAT",
    "KEPT_FIELDS",
    "PERSONAL_FIELDS",
    "Bundle",
    "Manifest",
    "RetentionAction",
    "RetentionPlan",
    "RetentionPolicy",
    "RetentionRules",
    "anonymise",
    "audit_changes",
    "audit_event",
    "bundle_of",
    "check_secret",
    "identifier_digest",
    "suppressions_of",
]
