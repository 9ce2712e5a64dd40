"""Privacy: consent per channel and purpose, double opt-in, do-not-contact, audiences
that respect them; export, erasure, suppression, retention and the audit trail.

Pure domain logic: it builds ledger entries, tokens, rules, bundles and anonymised
copies and reads them; the :class:`~crmkit.crm.CRM` runs them against a store
(``audience``, ``export_person``, ``erase_person``, ``apply_retention``,
``audit_trail``, ...).

* :class:`ConsentPolicy` declares the purposes a host asks consent for and the
  frequency caps per channel; an undeclared purpose raises
  :class:`~crmkit.errors.UndeclaredPurpose`;
* :func:`consent_entry`, :func:`block_entry` build ledger entries;
  :func:`consent_states` derives the state in force per channel and purpose;
* :func:`issue_token`, :func:`verify_token` sign and check double opt-in tokens;
* :class:`Audience`, :func:`exclusion_steps`: who of a segment may be contacted, and
  why the others may not;
* :func:`bundle_of`, :func:`anonymise`, :class:`RetentionPolicy` and
  :func:`audit_changes`: export, erasure, retention and the audit trail.
"""

# Consent, double opt-in, do-not-contact, audiences.
# Export, erasure, retention and audit (issue 15, parts 5-8).
from crmkit.privacy._audit import AUDITED, audit_changes, audit_event
from crmkit.privacy._consent import (
    ConsentPolicy,
    ConsentState,
    Evidence,
    FrequencyCap,
    check_channel,
    consent_entry,
    consent_states,
)
from crmkit.privacy._contactability import Audience, block_entry, exclusion_steps
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
from crmkit.privacy._tokens import MIN_SECRET_BYTES, TokenClaims, issue_token, verify_token

__all__ = [
    "AUDITED",
    "ERASED_TEXT",
    "EXPORT_FORMAT",
    "KEPT_FIELDS",
    "MIN_SECRET_BYTES",
    "PERSONAL_FIELDS",
    "Audience",
    "Bundle",
    "ConsentPolicy",
    "ConsentState",
    "Evidence",
    "FrequencyCap",
    "Manifest",
    "RetentionAction",
    "RetentionPlan",
    "RetentionPolicy",
    "RetentionRules",
    "TokenClaims",
    "anonymise",
    "audit_changes",
    "audit_event",
    "block_entry",
    "bundle_of",
    "check_channel",
    "check_secret",
    "consent_entry",
    "consent_states",
    "exclusion_steps",
    "identifier_digest",
    "issue_token",
    "suppressions_of",
    "verify_token",
]
