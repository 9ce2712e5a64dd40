"""The audit trail: field-level change history of contacts and deals."""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from uuid import uuid4

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import AuditAction, AuditEntry, Contact, Deal, Entity, SubjectKind
from crmkit.serialization import make_converter

__all__ = ["AUDITED", "audit_changes", "audit_event"]

AUDITED: Final = (Contact, Deal)
"""The entities whose field changes the audit trail records."""

_converter: Final = make_converter()
_SKIPPED: Final = frozenset({"id", "version", "created_at", "updated_at"})


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _subject(item: Entity) -> SubjectKind:
    if not isinstance(item, AUDITED):
        raise ValidationError("item", item, "the audit trail records contacts and deals")
    return SubjectKind(item.entity_name)


def _who(by: object) -> str | None:
    if by is not None and not isinstance(by, str):
        raise ValidationError("by", by, "expected the host's user id or None")
    return by


def _entry(
    item: Entity, action: AuditAction, at: datetime, by: str | None, **values: Any
) -> AuditEntry:
    return AuditEntry(
        id=uuid4(),
        version=1,
        created_at=at,
        updated_at=at,
        subject=_subject(item),
        subject_id=item.id,
        action=action,
        at=at,
        by=by,
        **values,
    )


def audit_changes(
    before: Entity, after: Entity, *, at: datetime, by: str | None
) -> list[AuditEntry]:
    """One ``changed`` entry per field whose value differs between ``before`` and
    ``after`` (two versions of one contact or deal), in field order; values are the
    JSON of the serialised field (``None``: no value).

    >>> from crmkit.clock import FixedClock
    >>> from datetime import datetime, UTC
    >>> import attrs
    >>> now = datetime(2026, 3, 1, tzinfo=UTC)
    >>> ada = Contact.new(email="ada@example.com", first_name="Ada", clock=FixedClock(now))
    >>> [(e.field, e.before, e.after) for e in audit_changes(
    ...     ada, attrs.evolve(ada, first_name="Ada L."), at=now, by="sam")]
    [('first_name', '"Ada"', '"Ada L."')]
    """
    _subject(before)
    at, by = ensure_utc(at, "at"), _who(by)
    if type(before) is not type(after) or before.id != after.id:
        raise ValidationError("after", after, "expected another version of the same entity")
    old: Mapping[str, Any] = _converter.unstructure(before)
    new: Mapping[str, Any] = _converter.unstructure(after)
    return [
        _entry(
            after,
            AuditAction.CHANGED,
            at,
            by,
            field=name,
            before=_json(old[name]),
            after=_json(new[name]),
        )
        for name in old
        if name not in _SKIPPED and old[name] != new[name]
    ]


def audit_event(item: Entity, action: AuditAction, *, at: datetime, by: str | None) -> AuditEntry:
    """An entry saying that ``item`` was created, exported or erased ``at`` by ``by``."""
    at, by = ensure_utc(at, "at"), _who(by)
    if not isinstance(action, AuditAction) or action is AuditAction.CHANGED:
        raise ValidationError("action", action, "a change is recorded by audit_changes")
    return _entry(item, action, at, by)
