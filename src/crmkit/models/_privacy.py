"""The records privacy keeps: suppressions, erasures and the audit trail.

They hold no personal value in the clear: a :class:`Suppression` holds a keyed hash, an
:class:`Erasure` the id the erased person keeps (the tombstone), an :class:`AuditEntry`
values that erasure anonymises with the rest of the person's data.
"""

import re
from collections.abc import Iterator
from datetime import datetime
from typing import ClassVar, Final, Self
from uuid import UUID, uuid4

import attrs

from crmkit.clock import SYSTEM_CLOCK, Clock, clock_now
from crmkit.errors import Problem, ValidationError
from crmkit.models import _fields as f
from crmkit.models._entities import Entity
from crmkit.models._enums import AuditAction, SubjectKind

__all__ = ["AuditEntry", "Erasure", "Suppression"]

_USER: Final = f.text(200)
_REASON: Final = f.text(500)
_VALUE: Final = f.text(100_000, single_line=False)
_DIGEST: Final = re.compile(r"[0-9a-f]{64}\Z")
_KINDS: Final = frozenset({"email", "phone"})


def _is_digest(value: object) -> None:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise ValidationError("", value, "expected 64 lower-case hex digits (an HMAC-SHA256)")


def _is_identifier_kind(value: object) -> None:
    if value not in _KINDS:
        raise ValidationError("", value, "expected 'email' or 'phone'")


@attrs.frozen(kw_only=True)
class Suppression(Entity):
    """A person who asked to be forgotten: the keyed hash of one of their identifiers.

    ``kind`` says which (``"email"`` or ``"phone"``); ``digest`` is the HMAC-SHA256 of
    the normalised identifier under the host's secret, in hex. The id is derived from
    the digest (:meth:`id_for`), so a look-up is a look-up by id.
    ``erasure_id`` is the erasure that made it (``None``: added by the host).
    """

    entity_name: ClassVar[str] = "suppression"

    kind: str = attrs.field(metadata=f.check(_is_identifier_kind))
    digest: str = attrs.field(metadata=f.check(_is_digest))
    erasure_id: UUID | None = attrs.field(default=None, metadata=f.check(f.optional(f.is_uuid)))

    @staticmethod
    def id_for(digest: str) -> UUID:
        """The id of the suppression of ``digest``: its first 128 bits."""
        _is_digest(digest)
        return UUID(hex=digest[:32])

    def _invariants(self) -> Iterator[Problem]:
        yield from super()._invariants()
        if self.id != self.id_for(self.digest):
            yield Problem("id", self.id, "is not the id of the digest (Suppression.id_for)")

    @classmethod
    def new(
        cls, *, kind: str, digest: str, erasure_id: UUID | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> Self:
        """A new suppression; its id is :meth:`id_for` of ``digest``."""
        try:
            id = cls.id_for(digest)
        except ValidationError as error:
            raise error.within("digest") from None
        now = clock_now(clock)
        return cls(
            id=id,
            version=1,
            created_at=now,
            updated_at=now,
            kind=kind,
            digest=digest,
            erasure_id=erasure_id,
        )


@attrs.frozen(kw_only=True)
class Erasure(Entity):
    """The record that a person was erased: who erased, who approved, when and why.

    Its id is the erased contact's id, which the anonymised records keep (the tombstone
    id), so a person is erased at most once. ``records`` counts the stored records that
    were anonymised.
    """

    entity_name: ClassVar[str] = "erasure"

    contact_id: UUID = attrs.field(metadata=f.check(f.is_uuid))
    by: str = attrs.field(converter=f.to_text, metadata=f.check(_USER))
    reason: str = attrs.field(converter=f.to_text, metadata=f.check(_REASON))
    at: datetime = attrs.field(converter=f.to_utc, metadata=f.check(f.is_utc))
    approved_by: str | None = attrs.field(
        default=None, converter=f.to_text_opt, metadata=f.check(f.optional(_USER))
    )
    records: int = attrs.field(default=0, metadata=f.check(f.int_between(0)))

    def _invariants(self) -> Iterator[Problem]:
        yield from super()._invariants()
        if self.id != self.contact_id:
            yield Problem("id", self.id, "an erasure's id is the erased contact's id")

    @classmethod
    def new(
        cls,
        *,
        contact_id: UUID,
        by: str,
        reason: str,
        at: datetime | None = None,
        approved_by: str | None = None,
        records: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Self:
        """The erasure of ``contact_id`` (which is also its id); ``at`` defaults to now."""
        now = clock_now(clock)
        return cls(
            id=contact_id,
            version=1,
            created_at=now,
            updated_at=now,
            contact_id=contact_id,
            by=by,
            reason=reason,
            at=now if at is None else at,
            approved_by=approved_by,
            records=records,
        )


@attrs.frozen(kw_only=True)
class AuditEntry(Entity):
    """One line of the audit trail of a contact or deal.

    ``action`` ``changed``: ``field`` went from ``before`` to ``after`` (JSON texts of
    the values; ``None`` when the field had no value); ``created``: the entity was
    stored; ``exported`` and ``erased``: the person's data was exported or erased
    (``field``, ``before`` and ``after`` are ``None``). ``by`` is the host's user id of who did it.
    """

    entity_name: ClassVar[str] = "audit_entry"

    subject: SubjectKind = attrs.field(metadata=f.check(f.member(SubjectKind)))
    subject_id: UUID = attrs.field(metadata=f.check(f.is_uuid))
    action: AuditAction = attrs.field(metadata=f.check(f.member(AuditAction)))
    at: datetime = attrs.field(converter=f.to_utc, metadata=f.check(f.is_utc))
    field: str | None = attrs.field(default=None, metadata=f.check(f.optional(f.is_key)))
    before: str | None = attrs.field(
        default=None, converter=f.to_text_opt, metadata=f.check(f.optional(_VALUE))
    )
    after: str | None = attrs.field(
        default=None, converter=f.to_text_opt, metadata=f.check(f.optional(_VALUE))
    )
    by: str | None = attrs.field(
        default=None, converter=f.to_text_opt, metadata=f.check(f.optional(_USER))
    )

    @classmethod
    def new(
        cls,
        *,
        subject: SubjectKind,
        subject_id: UUID,
        action: AuditAction,
        at: datetime | None = None,
        field: str | None = None,
        before: str | None = None,
        after: str | None = None,
        by: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> Self:
        """A new audit entry; ``at`` defaults to the clock's now."""
        now = clock_now(clock)
        return cls(
            id=uuid4(),
            version=1,
            created_at=now,
            updated_at=now,
            subject=subject,
            subject_id=subject_id,
            action=action,
            at=now if at is None else at,
            field=field,
            before=before,
            after=after,
            by=by,
        )
