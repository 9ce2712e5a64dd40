"""Privacy: consent per channel and purpose, double opt-in, do-not-contact, audiences
that respect them.

Pure domain logic: it builds ledger entries, tokens and rules and reads them; the
:class:`~crmkit.crm.CRM` runs them against a store.

* :class:`ConsentPolicy` declares the purposes a host asks consent for and the
  frequency caps per channel; an undeclared purpose raises
  :class:`~crmkit.errors.UndeclaredPurpose`;
* :func:`consent_entry`, :func:`block_entry` build ledger entries;
  :func:`consent_states` derives the state in force per channel and purpose;
* :func:`issue_token`, :func:`verify_token` sign and check double opt-in tokens;
* :class:`Audience`, :func:`exclusion_steps`: who of a segment may be contacted, and
  why the others may not.
"""

# Consent, double opt-in, do-not-contact, audiences.
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
from crmkit.privacy._tokens import MIN_SECRET_BYTES, TokenClaims, issue_token, verify_token

__all__ = [
    # Consent, double opt-in, do-not-contact, audiences.
    "MIN_SECRET_BYTES",
    "Audience",
    "ConsentPolicy",
    "ConsentState",
    "Evidence",
    "FrequencyCap",
    "TokenClaims",
    "block_entry",
    "check_channel",
    "consent_entry",
    "consent_states",
    "exclusion_steps",
    "issue_token",
    "verify_token",
]
