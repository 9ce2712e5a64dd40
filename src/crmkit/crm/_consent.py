"""The consent use cases of :class:`~crmkit.crm.CRM`: the ledger, double opt-in,
do-not-contact and audiences that leave out whoever may not be contacted."""

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Final
from uuid import UUID, uuid4

import attrs

from crmkit.clock import Clock, ensure_utc
from crmkit.errors import Erased, InvalidToken, NotFound, ValidationError
from crmkit.models import (
    Consent,
    ConsentChannel,
    ConsentStatus,
    DoNotContact,
    DoNotContactReason,
    LegalBasis,
    Segment,
)
from crmkit.models._fields import member_of
from crmkit.models.rules import And, Condition, InSegment, ReachCheck, Rule, RuleEntity
from crmkit.privacy import (
    MIN_SECRET_BYTES,
    Audience,
    ConsentPolicy,
    ConsentState,
    Evidence,
    block_entry,
    check_channel,
    consent_entry,
    consent_states,
    issue_token,
    verify_token,
)
from crmkit.privacy._secrets import check_key
from crmkit.storage import Store, UnitOfWork
from crmkit.storage._base import check_id

__all__ = ["ConsentRequest", "ConsentUseCases", "check_secret"]

_NO_EVIDENCE: Final = Evidence()


@attrs.frozen
class ConsentRequest:
    """A pending consent (double opt-in) and the token that confirms it: put the token
    in the link of the confirmation message, and pass it to
    :meth:`~crmkit.crm.CRM.confirm_consent` when the person follows it."""

    consent: Consent
    token: str
    expires_at: datetime


def check_secret(secret: object) -> bytes | None:
    """``secret`` (``None`` or at least :data:`MIN_SECRET_BYTES` bytes), else an error."""
    if secret is None:
        return None
    return check_key(secret, "token_secret", MIN_SECRET_BYTES)


def refuse_erased(unit: UnitOfWork, contact_id: UUID) -> None:
    """:class:`~crmkit.errors.Erased` when ``contact_id`` is an erased person's tombstone:
    no use case writes personal data to it again (a primary-key look-up)."""
    if unit.erasures.get_many([contact_id]):
        raise Erased("contact", contact_id)


def _merged_into(unit: UnitOfWork, signed: UUID, holder: UUID) -> bool:
    """Whether the contact a token was signed for, ``signed``, is the contact whose
    ledger now holds the request, ``holder``: the same, or merged into it (a merge moves
    the ledger to the survivor, perhaps in several steps)."""
    seen = {signed}
    current = signed
    while current != holder:
        merges = unit.merges.merging(current)
        if not merges or merges[-1].survivor_id in seen:
            return False
        current = merges[-1].survivor_id
        seen.add(current)
    return True


class ConsentUseCases:
    """Mixed into :class:`~crmkit.crm.CRM`: every method is one use case in one unit
    of work; bad input raises a :mod:`crmkit.errors` exception and changes nothing."""

    store: Store
    clock: Clock
    consent_policy: ConsentPolicy | None
    _token_secret: bytes | None

    def _unit(self) -> AbstractContextManager[UnitOfWork]:  # pragma: no cover - CRM's
        raise NotImplementedError

    def _policy(self) -> ConsentPolicy:
        if self.consent_policy is None:
            raise ValidationError(
                "consent_policy", None, "declare the purposes: CRM(..., consent_policy=...)"
            )
        return self.consent_policy

    def _checked(self, channel: object, purpose: object) -> tuple[ConsentChannel, str]:
        return check_channel(channel), self._policy().check_purpose(purpose)

    # ------------------------------------------------------------------ the ledger

    def record_consent(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        purpose: str,
        *,
        source: str,
        legal_basis: LegalBasis = LegalBasis.CONSENT,
        evidence: Evidence = _NO_EVIDENCE,
        expires_at: datetime | None = None,
        decided_at: datetime | None = None,
    ) -> Consent:
        """Add a grant to the contact's consent ledger (``decided_at``, default now, is
        when the person decided: earlier for an imported record, never later than now)."""
        return self._decide(
            contact_id,
            channel,
            purpose,
            ConsentStatus.GRANTED,
            source=source,
            legal_basis=legal_basis,
            evidence=evidence,
            expires_at=expires_at,
            decided_at=decided_at,
        )

    def withdraw_consent(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        purpose: str,
        *,
        source: str,
        evidence: Evidence = _NO_EVIDENCE,
        decided_at: datetime | None = None,
    ) -> Consent:
        """Add a withdrawal to the contact's consent ledger: every audience built after
        this call returns leaves the contact out for the channel and purpose."""
        return self._decide(
            contact_id,
            channel,
            purpose,
            ConsentStatus.WITHDRAWN,
            source=source,
            evidence=evidence,
            decided_at=decided_at,
        )

    def _decide(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        purpose: str,
        status: ConsentStatus,
        *,
        source: str,
        legal_basis: LegalBasis = LegalBasis.CONSENT,
        evidence: Evidence = _NO_EVIDENCE,
        expires_at: datetime | None = None,
        decided_at: datetime | None = None,
    ) -> Consent:
        channel, purpose = self._checked(channel, purpose)
        now = self.clock.now()
        if decided_at is not None and ensure_utc(decided_at, "decided_at") > now:
            raise ValidationError("decided_at", decided_at, "is later than now")
        with self._unit() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            if status is not ConsentStatus.WITHDRAWN:  # a withdrawal only protects
                refuse_erased(unit, contact.id)
            entry = consent_entry(
                contact,
                channel,
                purpose,
                status,
                source=source,
                at=now,
                legal_basis=legal_basis,
                evidence=evidence,
                expires_at=expires_at,
                decided_at=decided_at,
            )
            return unit.consents.add(entry)

    def consents(self, contact_id: UUID, *, now: datetime | None = None) -> list[ConsentState]:
        """The consent in force for every channel and purpose in the contact's ledger."""
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        with self.store.unit_of_work() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            return consent_states(unit.consents.for_contact(contact.id), at)

    def consent_history(self, contact_id: UUID) -> list[Consent]:
        """The contact's whole consent ledger, oldest decision first."""
        with self.store.unit_of_work() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            return unit.consents.for_contact(contact.id)

    # ------------------------------------------------------------------ double opt-in

    def request_consent(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        purpose: str,
        *,
        source: str,
        evidence: Evidence = _NO_EVIDENCE,
        valid_for: timedelta = timedelta(days=2),
    ) -> ConsentRequest:
        """Record a pending consent (it grants nothing yet) and sign a token that
        confirms it within ``valid_for``; needs ``CRM(..., token_secret=...)``. The
        contact needs an address on the channel to receive the confirmation."""
        channel, purpose = self._checked(channel, purpose)
        secret = self._token_secret
        if secret is None:
            raise ValidationError("token_secret", None, "double opt-in needs a token secret")
        if not isinstance(valid_for, timedelta) or not timedelta(0) < valid_for <= _LONGEST:
            raise ValidationError("valid_for", valid_for, "expected a timedelta up to 90 days")
        now = self.clock.now()
        with self._unit() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            refuse_erased(unit, contact.id)
            entry = consent_entry(
                contact, channel, purpose, ConsentStatus.PENDING, source=source, at=now,
                evidence=evidence,
            )  # fmt: skip
            if channel is not ConsentChannel.POST and entry.contact_point is None:
                raise ValidationError(
                    "contact_id", contact.id, f"the contact has no address for {channel.value}"
                )
            until = now + valid_for
            token = issue_token(entry, secret=secret, expires_at=until)
            unit.consents.add(entry)
        return ConsentRequest(entry, token, until)

    def confirm_consent(self, token: str) -> Consent:
        """Confirm the request a token names: add a grant with the request's evidence
        and contact point (source ``double_opt_in``).

        Raises :class:`~crmkit.errors.InvalidToken` for a token changed in any byte or
        signed with another secret, or whose request was decided since (a later grant
        or withdrawal: an old link cannot undo a withdrawal), and
        :class:`~crmkit.errors.TokenExpired` when its time ran out.
        """
        secret = self._token_secret
        if secret is None:
            raise ValidationError("token_secret", None, "double opt-in needs a token secret")
        now = self.clock.now()
        claims = verify_token(token, secret=secret, now=now)
        with self._unit() as unit:
            try:
                request = unit.consents.get(claims.consent_id)
            except NotFound:
                raise InvalidToken("token", token, "its request is no longer stored") from None
            if request.status is not ConsentStatus.PENDING or not _merged_into(
                unit, claims.contact_id, request.contact_id
            ):
                raise InvalidToken("token", token, "it names no pending request")
            refuse_erased(unit, request.contact_id)
            later = [
                e
                for e in unit.consents.for_contact(request.contact_id)
                if e.channel is request.channel
                and e.purpose == request.purpose
                and e.status is not ConsentStatus.PENDING
                and (e.decided_at, e.id.int) > (request.decided_at, request.id.int)
            ]
            if later:
                raise InvalidToken("token", token, "its request was decided since")
            grant = attrs.evolve(
                request,
                id=uuid4(),
                created_at=now,
                updated_at=now,
                status=ConsentStatus.GRANTED,
                source="double_opt_in",
                decided_at=now,
            )
            return unit.consents.add(grant)

    # ------------------------------------------------------------------ do not contact

    def set_do_not_contact(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        reason: DoNotContactReason,
        *,
        source: str,
    ) -> DoNotContact:
        """Block the channel for the contact (a bounce, a complaint, the person asked, a
        legal reason): every audience built afterwards leaves the contact out on it,
        whatever consent says."""
        return self._block(contact_id, channel, reason, source=source, lifted=False)

    def lift_do_not_contact(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        *,
        source: str,
        reason: DoNotContactReason = DoNotContactReason.ASKED,
    ) -> DoNotContact:
        """End the blocks of the channel for the contact (the entries stay as history)."""
        return self._block(contact_id, channel, reason, source=source, lifted=True)

    def _block(
        self,
        contact_id: UUID,
        channel: ConsentChannel,
        reason: DoNotContactReason,
        *,
        source: str,
        lifted: bool,
    ) -> DoNotContact:
        channel = check_channel(channel)
        reason = member_of(DoNotContactReason, reason, "reason")
        now = self.clock.now()
        with self._unit() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            entry = block_entry(contact, channel, reason, source=source, at=now, lifted=lifted)
            return unit.do_not_contact.add(entry)

    def do_not_contact_history(self, contact_id: UUID) -> list[DoNotContact]:
        """The contact's do-not-contact ledger, oldest first."""
        with self.store.unit_of_work() as unit:
            contact = unit.contacts.get(check_id(contact_id, "contact_id"))
            return unit.do_not_contact.for_contact(contact.id)

    # ------------------------------------------------------------------ audiences

    def audience(
        self,
        segment: UUID | Segment | Rule,
        channel: ConsentChannel,
        purpose: str,
        *,
        now: datetime | None = None,
    ) -> Audience:
        """The contacts of ``segment`` (a stored segment, by id or itself, or a contact
        rule) that may be sent a message on ``channel`` for ``purpose`` at ``now``
        (default: the clock), and how many were left out by the first check they failed:
        no address for the channel, do-not-contact, no decision, withdrawn, expired, over
        the channel's frequency cap. Filtering and counting run in the store."""
        channel, purpose = self._checked(channel, purpose)
        at = self.clock.now() if now is None else ensure_utc(now, "now")
        where = _segment_condition(segment)
        reachable = self._policy().reachable(channel, purpose)
        with self.store.unit_of_work() as unit:
            # The exclusions counted by reason (by the store), then the ids.
            counts = unit.contacts.reach_counts(Rule(RuleEntity.CONTACT, where), reachable, now=at)
            members = unit.contacts.ids(Rule(RuleEntity.CONTACT, And((where, reachable))), now=at)
        excluded = dict.fromkeys(ReachCheck, 0)
        excluded.update({check: n for check, n in counts.items() if check is not None})
        size = len(members) + sum(excluded.values())
        return Audience(channel, purpose, at, tuple(members), size, excluded)


_LONGEST: Final = timedelta(days=90)


def _segment_condition(segment: object) -> Condition:
    if isinstance(segment, Segment):
        return InSegment(segment.id)
    if isinstance(segment, Rule):
        if segment.entity is not RuleEntity.CONTACT:
            raise ValidationError("segment", segment, "expected a contact rule")
        return segment.where
    if isinstance(segment, UUID):
        return InSegment(segment)
    raise ValidationError("segment", segment, "expected a segment, its id or a contact rule")
