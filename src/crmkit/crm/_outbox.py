"""The events of a unit of work, derived from what it writes.

:class:`~crmkit.crm._audited.AuditedUnit` sees every write of a use case (adds, updates,
deletes of every repository); :func:`events_of` turns one write into its domain events.
Deriving the events from the writes, rather than listing them in each use case, is what
makes every use case record them, including use cases added later.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from uuid import UUID, uuid4

import attrs

from crmkit.automation import (
    AccountChanged,
    AccountCreated,
    AccountDeleted,
    AccountMerged,
    AccountUnmerged,
    ActivityChanged,
    ActivityDeleted,
    ActivityRecorded,
    BlockChanged,
    ConsentChanged,
    ContactChanged,
    ContactCreated,
    ContactDeleted,
    ContactMerged,
    ContactStageChanged,
    ContactUnmerged,
    DealChanged,
    DealCreated,
    DealDeleted,
    DealLost,
    DealMoved,
    DealReopened,
    DealWon,
    Event,
    LeadCaptured,
    LeadChanged,
    LeadConverted,
    LeadDeleted,
    LeadMoved,
    LeadScored,
    LeadStatusChanged,
    PersonErased,
    SegmentChanged,
    SegmentCreated,
    SegmentDeleted,
    TaskCancelled,
    TaskChanged,
    TaskCompleted,
    TaskCreated,
    TaskDeleted,
    TicketChanged,
    TicketClosed,
    TicketDeleted,
    TicketMoved,
    TicketOpened,
    TicketReplied,
    TicketSolved,
)
from crmkit.models import (
    Account,
    Activity,
    Consent,
    Contact,
    Deal,
    DealStatus,
    DoNotContact,
    Entity,
    Erasure,
    Lead,
    Segment,
    StageChange,
    SubjectKind,
    Task,
    TaskStatus,
    Ticket,
    TicketStatus,
)
from crmkit.quality import MergeKind, MergeRecord

__all__ = ["added", "changed", "deleted", "merged", "unmerged"]

_Made = Callable[..., Event]
_UNTRACKED: Final = frozenset({"version", "updated_at", "created_at"})


def _base(subject: str, subject_id: UUID, at: datetime, cause: UUID | None) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "occurred_at": at,
        "subject": subject,
        "subject_id": subject_id,
        "caused_by": cause,
    }


def _ticket_status(value: str | None) -> TicketStatus | None:
    try:
        return None if value is None else TicketStatus(value)
    except ValueError:
        return None


def added(item: Entity, cause: UUID | None) -> list[Event]:
    """The events of storing the new ``item``."""
    at = item.updated_at
    if isinstance(item, Contact):
        return [ContactCreated(**_base("contact", item.id, at, cause), account_id=item.account_id)]
    if isinstance(item, Lead):
        return [
            LeadCaptured(
                **_base("lead", item.id, at, cause),
                contact_id=item.contact_id,
                channel=item.channel,
                pipeline=item.pipeline,
                stage=item.stage,
            )
        ]
    if isinstance(item, Deal):
        return [
            DealCreated(
                **_base("deal", item.id, at, cause),
                pipeline=item.pipeline,
                stage=item.stage,
                contact_id=item.contact_id,
                lead_id=item.lead_id,
            )
        ]
    if isinstance(item, Activity):
        return _activity(item, cause)
    if isinstance(item, StageChange):
        return [_moved(item, cause)]
    if isinstance(item, Ticket):
        return [
            TicketOpened(
                **_base("ticket", item.id, at, cause),
                contact_id=item.contact_id,
                channel=item.channel,
                priority=item.priority,
            )
        ]
    if isinstance(item, Task):
        return [
            TaskCreated(
                **_base("task", item.id, at, cause),
                kind=item.kind,
                due_at=item.due_at,
                contact_id=item.contact_id,
                deal_id=item.deal_id,
                ticket_id=item.ticket_id,
            )
        ]
    return _added_record(item, cause)


def _added_record(item: Entity, cause: UUID | None) -> list[Event]:
    at = item.updated_at
    if isinstance(item, Consent):
        return [
            ConsentChanged(
                **_base("contact", item.contact_id, at, cause),
                consent_id=item.id,
                channel=item.channel,
                purpose=item.purpose,
                status=item.status,
            )
        ]
    if isinstance(item, DoNotContact):
        return [
            BlockChanged(
                **_base("contact", item.contact_id, at, cause),
                channel=item.channel,
                reason=item.reason,
                lifted=item.lifted,
            )
        ]
    if isinstance(item, Account):
        return [AccountCreated(**_base("account", item.id, at, cause))]
    if isinstance(item, Segment):
        return [SegmentCreated(**_base("segment", item.id, at, cause))]
    if isinstance(item, Erasure):
        return [PersonErased(**_base("contact", item.contact_id, item.at, cause))]
    return []  # suppressions and audit entries: bookkeeping, no events


def _activity(item: Activity, cause: UUID | None) -> list[Event]:
    at = item.updated_at
    found: list[Event] = [
        ActivityRecorded(
            **_base("contact", item.contact_id, at, cause),
            activity_id=item.id,
            kind=item.kind,
            deal_id=item.deal_id,
            ticket_id=item.ticket_id,
        )
    ]
    if item.ticket_id is not None:
        found.append(
            TicketReplied(
                **_base("ticket", item.ticket_id, at, cause),
                activity_id=item.id,
                kind=item.kind,
                by_customer=item.actor is None,
            )
        )
    return found


_MOVES: Final[dict[SubjectKind, str]] = {
    SubjectKind.CONTACT: "contact",
    SubjectKind.LEAD: "lead",
    SubjectKind.DEAL: "deal",
    SubjectKind.TICKET: "ticket",
}


def _moved(change: StageChange, cause: UUID | None) -> Event:
    base = _base(_MOVES[change.subject], change.subject_id, change.at, cause)
    if change.subject is SubjectKind.CONTACT:
        return ContactStageChanged(**base, from_stage=change.from_stage, to_stage=change.to_stage)
    if change.subject is SubjectKind.TICKET:
        to = _ticket_status(change.to_stage)
        if to is not None:
            return TicketMoved(**base, from_status=_ticket_status(change.from_stage), to_status=to)
    kind = LeadMoved if change.subject is SubjectKind.LEAD else DealMoved
    return kind(
        **base, pipeline=change.pipeline, from_stage=change.from_stage, to_stage=change.to_stage
    )


_CHANGED: Final[dict[type[Entity], tuple[str, _Made]]] = {
    Contact: ("contact", ContactChanged),
    Account: ("account", AccountChanged),
    Lead: ("lead", LeadChanged),
    Deal: ("deal", DealChanged),
    Ticket: ("ticket", TicketChanged),
    Task: ("task", TaskChanged),
    Segment: ("segment", SegmentChanged),
}


def changed(before: Entity | None, after: Entity, cause: UUID | None) -> list[Event]:
    """The events of replacing ``before`` (the stored entity, if read) by ``after``."""
    if before is None:
        return []
    fields = tuple(
        sorted(
            a.name
            for a in attrs.fields(type(after))
            if a.name not in _UNTRACKED and getattr(before, a.name) != getattr(after, a.name)
        )
    )
    if not fields and before.version == after.version:
        return []  # nothing was written (an update always counts a version)
    at = after.updated_at
    if isinstance(after, Activity):
        return [
            ActivityChanged(
                **_base("contact", after.contact_id, at, cause), activity_id=after.id, fields=fields
            )
        ]
    known = _CHANGED.get(type(after))
    if known is None:
        return []
    subject, kind = known
    found: list[Event] = [kind(**_base(subject, after.id, at, cause), fields=fields)]
    base = _base(subject, after.id, at, cause)
    if isinstance(after, Deal) and isinstance(before, Deal):
        found.extend(_deal_status(before, after, base))
    elif isinstance(after, Lead) and isinstance(before, Lead):
        found.extend(_lead_changes(before, after, base))
    elif isinstance(after, Ticket) and isinstance(before, Ticket):
        if after.status is not before.status and after.status is TicketStatus.SOLVED:
            found.append(TicketSolved(**base, contact_id=after.contact_id))
        elif after.status is not before.status and after.status is TicketStatus.CLOSED:
            found.append(TicketClosed(**base, contact_id=after.contact_id))
    elif isinstance(after, Task) and isinstance(before, Task) and after.status is not before.status:
        if after.status is TaskStatus.DONE:
            found.append(TaskCompleted(**base))
        elif after.status is TaskStatus.CANCELLED:
            found.append(TaskCancelled(**base, from_status=before.status))
    return found


def _deal_status(before: Deal, after: Deal, base: dict[str, Any]) -> list[Event]:
    if after.status is before.status:
        return []
    if after.status is DealStatus.WON:
        return [DealWon(**base, contact_id=after.contact_id)]
    if after.status is DealStatus.LOST:
        return [DealLost(**base, contact_id=after.contact_id)]
    return [DealReopened(**base, from_status=before.status)]


def _lead_changes(before: Lead, after: Lead, base: dict[str, Any]) -> list[Event]:
    found: list[Event] = []
    if after.score != before.score:
        found.append(LeadScored(**{**base, "id": uuid4()}, score=after.score))
    if after.status is not before.status:
        found.append(
            LeadStatusChanged(
                **{**base, "id": uuid4()}, from_status=before.status, to_status=after.status
            )
        )
    if after.deal_id is not None and before.deal_id != after.deal_id:
        found.append(
            LeadConverted(
                **{**base, "id": uuid4()}, contact_id=after.contact_id, deal_id=after.deal_id
            )
        )
    return found


_DELETED: Final[dict[type[Entity], tuple[str, _Made]]] = {
    Contact: ("contact", ContactDeleted),
    Account: ("account", AccountDeleted),
    Lead: ("lead", LeadDeleted),
    Deal: ("deal", DealDeleted),
    Ticket: ("ticket", TicketDeleted),
    Task: ("task", TaskDeleted),
    Segment: ("segment", SegmentDeleted),
}


def deleted(item: Entity | None, at: datetime, cause: UUID | None) -> list[Event]:
    """The events of deleting ``item`` (the stored entity, if read) at ``at``."""
    if isinstance(item, Activity):
        return [
            ActivityDeleted(**_base("contact", item.contact_id, at, cause), activity_id=item.id)
        ]
    known = None if item is None else _DELETED.get(type(item))
    if item is None or known is None:
        return []
    subject, kind = known
    return [kind(**_base(subject, item.id, at, cause))]


def merged(record: MergeRecord, cause: UUID | None) -> list[Event]:
    """The event of the merge ``record``."""
    contact = record.kind is MergeKind.CONTACT
    kind = ContactMerged if contact else AccountMerged
    subject = "contact" if contact else "account"
    return [
        kind(
            **_base(subject, record.survivor_id, record.at, cause),
            merge_id=record.id,
            merged_ids=record.merged_ids,
        )
    ]


def unmerged(record: MergeRecord, at: datetime, cause: UUID | None) -> list[Event]:
    """The event of undoing the merge ``record`` at ``at``."""
    contact = record.kind is MergeKind.CONTACT
    kind = ContactUnmerged if contact else AccountUnmerged
    subject = "contact" if contact else "account"
    return [kind(**_base(subject, record.survivor_id, at, cause), merge_id=record.id)]
