"""Consent: the purposes a host declares, frequency caps, ledger entries and the state
in force per channel and purpose.

Everything here is pure: it builds ledger entries and reads them; the
:class:`~crmkit.crm.CRM` stores them. The ledger is append-only: granting, withdrawing
and requesting each add an entry, so the history of a person's decisions stays whole.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from uuid import uuid4

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import UndeclaredPurpose, ValidationError
from crmkit.models import (
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    LegalBasis,
    current_consent,
    is_expired,
)
from crmkit.models import contact_point as point_of
from crmkit.models._fields import expect, expect_items, is_key, member_of
from crmkit.models.rules import Reachable

__all__ = [
    "ConsentPolicy",
    "ConsentState",
    "Evidence",
    "FrequencyCap",
    "check_channel",
    "consent_entry",
    "consent_states",
]


def check_channel(channel: object) -> ConsentChannel:
    """``channel`` as a :class:`~crmkit.models.ConsentChannel` (its value is accepted),
    or :class:`~crmkit.errors.ValidationError` naming field ``channel``."""
    if isinstance(channel, ConsentChannel):
        return channel
    if isinstance(channel, str):
        for member in ConsentChannel:
            if member.value == channel:
                return member
    choices = ", ".join(c.value for c in ConsentChannel)
    raise ValidationError("channel", channel, f"expected a channel: {choices}")


@attrs.frozen
class FrequencyCap:
    """At most ``max_messages`` messages on a channel in any ``days`` days (counted from
    the message activities of :data:`~crmkit.models.rules.MESSAGE_KINDS`)."""

    max_messages: int = attrs.field()
    days: int = attrs.field()

    @max_messages.validator
    def _check_max(self, _: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise ValidationError("max_messages", value, "expected a whole number from 1 to 1e6")

    @days.validator
    def _check_days(self, _: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 36_500:
            raise ValidationError("days", value, "expected a whole number of days from 1 to 36500")


def _purposes(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValidationError("purposes", value, "expected a collection of purpose keys")
    found = frozenset(value)
    for purpose in sorted(found, key=repr):
        try:
            is_key(purpose)
        except ValidationError as error:
            raise ValidationError("purposes", purpose, error.reason) from None
    if not found:
        raise ValidationError("purposes", value, "declare at least one purpose")
    return found


def _caps(value: Mapping[Any, FrequencyCap]) -> Mapping[ConsentChannel, FrequencyCap]:
    if not isinstance(value, Mapping):
        raise ValidationError("caps", value, "expected a mapping of channel to FrequencyCap")
    found: dict[ConsentChannel, FrequencyCap] = {}
    for channel, cap in value.items():
        try:
            key = check_channel(channel)
        except ValidationError as error:
            raise error.within("caps") from None
        if not isinstance(cap, FrequencyCap):
            raise ValidationError(f"caps.{key.value}", cap, "expected a FrequencyCap")
        found[key] = cap
    return MappingProxyType(found)


@attrs.frozen
class ConsentPolicy:
    """What a host declares: the purposes it asks consent for (``newsletter``,
    ``marketing``, ``sales``, ``support``, ...) and a frequency cap per channel.

    >>> policy = ConsentPolicy({"newsletter"}, caps={"email": FrequencyCap(2, 7)})
    >>> policy.check_purpose("ads")
    Traceback (most recent call last):
    ...
    crmkit.errors.UndeclaredPurpose: purpose: not a declared purpose (newsletter) (got 'ads')
    """

    purposes: frozenset[str] = attrs.field(converter=_purposes)
    caps: Mapping[ConsentChannel, FrequencyCap] = attrs.field(
        factory=dict, converter=_caps, eq=False
    )

    def check_purpose(self, purpose: object) -> str:
        """``purpose`` if the host declared it, else :class:`UndeclaredPurpose`."""
        if isinstance(purpose, str) and purpose in self.purposes:
            return purpose
        declared = ", ".join(sorted(self.purposes))
        raise UndeclaredPurpose("purpose", purpose, f"not a declared purpose ({declared})")

    def reachable(self, channel: ConsentChannel, purpose: str) -> Reachable:
        """The rule condition "reachable on ``channel`` for ``purpose``", with the
        channel's frequency cap; the purpose must be declared."""
        channel = check_channel(channel)
        purpose = self.check_purpose(purpose)
        cap = self.caps.get(channel)
        if cap is None:
            return Reachable(channel, purpose)
        return Reachable(channel, purpose, cap.max_messages, cap.days)


@attrs.frozen
class Evidence:
    """How a consent was given: the form, the version of the text agreed to, the IP
    address it came from (each optional)."""

    form: str | None = None
    text: str | None = None
    ip: str | None = None


_NO_EVIDENCE: Final = Evidence()


def consent_entry(
    contact: Contact,
    channel: ConsentChannel,
    purpose: str,
    status: ConsentStatus,
    *,
    source: str,
    at: datetime,
    legal_basis: LegalBasis = LegalBasis.CONSENT,
    evidence: Evidence = _NO_EVIDENCE,
    expires_at: datetime | None = None,
    decided_at: datetime | None = None,
) -> Consent:
    """A new ledger entry for ``contact``, recorded at ``at`` (decided then unless
    ``decided_at`` says when), covering the contact's current address for the channel
    (none for post)."""
    expect(contact, Contact, "contact", "a Contact")
    channel = check_channel(channel)
    expect(status, ConsentStatus, "status", "a ConsentStatus")
    if not isinstance(evidence, Evidence):
        raise ValidationError("evidence", evidence, "expected an Evidence")
    legal_basis = member_of(LegalBasis, legal_basis, "legal_basis")
    at = ensure_utc(at, "at")
    point = None if channel is ConsentChannel.POST else point_of(contact, channel)
    return Consent(
        id=uuid4(),
        version=1,
        created_at=at,
        updated_at=at,
        contact_id=contact.id,
        channel=channel,
        purpose=purpose,
        status=status,
        source=source,
        decided_at=at if decided_at is None else decided_at,
        expires_at=expires_at,
        legal_basis=legal_basis,
        contact_point=point,
        evidence_form=evidence.form,
        evidence_text=evidence.text,
        evidence_ip=evidence.ip,
    )


@attrs.frozen
class ConsentState:
    """The state in force for one channel and purpose at ``now``.

    ``decision`` is the latest grant or withdrawal (``None``: never decided); ``pending``
    the latest request awaiting confirmation after it, if any. ``granted`` is whether
    the person may be contacted for the purpose as far as consent goes (a do-not-contact
    block or a frequency cap may still stop a message).
    """

    channel: ConsentChannel
    purpose: str
    decision: Consent | None
    pending: Consent | None
    now: datetime

    @property
    def status(self) -> ConsentStatus | None:
        """Granted or withdrawn, pending when only a request is open, else ``None``."""
        if self.decision is not None:
            return self.decision.status
        return None if self.pending is None else ConsentStatus.PENDING

    @property
    def expired(self) -> bool:
        """Whether the grant in force has expired at ``now``."""
        decision = self.decision
        return (
            decision is not None
            and decision.status is ConsentStatus.GRANTED
            and is_expired(decision, self.now)
        )

    @property
    def granted(self) -> bool:
        """A grant in force that has not expired."""
        return self.status is ConsentStatus.GRANTED and not self.expired


def consent_states(entries: Iterable[Consent], now: datetime) -> list[ConsentState]:
    """The state in force of every channel and purpose that ``entries`` (one contact's
    ledger) mention, ordered by channel and purpose."""
    now = ensure_utc(now, "now")
    ledger: list[Consent] = expect_items(entries, Consent, "entries", "Consent entries")
    pairs = sorted({(e.channel, e.purpose) for e in ledger}, key=lambda p: (p[0].value, p[1]))
    states = []
    for channel, purpose in pairs:
        decision = current_consent(ledger, channel, purpose)
        requests = [
            e
            for e in ledger
            if e.channel is channel
            and e.purpose == purpose
            and e.status is ConsentStatus.PENDING
            and (decision is None or e.decided_at > decision.decided_at)
        ]
        pending = max(requests, key=lambda e: (e.decided_at, e.id.int), default=None)
        states.append(ConsentState(channel, purpose, decision, pending, now))
    return states
