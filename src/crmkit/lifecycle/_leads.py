"""Lead capture, qualification and conversion into a deal.

A lead points at a contact and never copies person data: capturing a lead matches the
contact by its normalised e-mail address (the caller looks it up and passes it in) or
creates one. Data from the touchpoint and from the host's enrichment hook fills only
fields the contact does not have yet; nothing a person or an earlier import entered is
overwritten.
"""

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any, Final

import attrs

from crmkit.clock import FixedClock, ensure_utc
from crmkit.errors import Problem, TransitionNotAllowed, ValidationError
from crmkit.lifecycle._contacts import LifecycleEvent, advance_contact
from crmkit.lifecycle._machine import PipelineMachine
from crmkit.lifecycle._moved import Moved
from crmkit.lifecycle._pipeline import Pipeline
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    CountryCode,
    CustomFields,
    Deal,
    EmailAddress,
    JSONScalar,
    Lead,
    LeadChannel,
    LeadStatus,
    Money,
    PhoneNumber,
    StageChange,
    SubjectKind,
    normalise_tags,
)
from crmkit.models._fields import finite, member_of

__all__ = [
    "Captured",
    "Converted",
    "Enrichment",
    "Qualified",
    "Touchpoint",
    "accept_lead",
    "capture_lead",
    "convert_lead",
    "disqualify_lead",
    "score_lead",
]

Enrichment = Callable[[EmailAddress], Mapping[str, Any]]
"""The host's enrichment hook: an e-mail address in, contact attributes out
(``first_name``, ``last_name``, ``phone``, ``country``, ``language``, ``owner``,
``tags``, ``custom``); what it does not know it leaves out."""

_PERSON: Final = ("first_name", "last_name", "phone", "country", "language", "owner")
_ENRICHABLE: Final = frozenset({*_PERSON, "tags", "custom"})
_KIND: Final = {
    LeadChannel.FORM: ActivityKind.FORM_SUBMITTED,
    LeadChannel.NEWSLETTER: ActivityKind.FORM_SUBMITTED,
    LeadChannel.EVENT: ActivityKind.EVENT_SIGNUP,
}


def _tags(value: Iterable[str]) -> frozenset[str]:
    try:
        return normalise_tags(value)
    except ValidationError as error:
        raise error.within("tags") from None


def _custom(value: Mapping[str, JSONScalar]) -> CustomFields:
    try:
        return CustomFields(value)
    except ValidationError as error:
        raise error.within("custom") from None


def _email(value: str | None) -> EmailAddress | None:
    if value is None:
        return None
    try:
        return EmailAddress(value)
    except ValidationError as error:
        raise error.within("email") from None


@attrs.frozen(kw_only=True)
class Touchpoint:
    """An inbound touch: a form, a newsletter sign-up, a chat, a call, an import row.

    It needs an ``email`` or a ``phone`` (or both): the contact is matched by the e-mail
    address when there is one, else by the phone number. ``email`` is normalised on
    construction (:class:`~crmkit.models.EmailAddress`), ``phone`` read as E.164
    (:meth:`~crmkit.models.PhoneNumber.parse`, with ``country`` as the region of a
    national number); ``source`` says where it came from (``"pricing-page"``,
    ``"webinar-2026-03"``).
    """

    email: EmailAddress | None = attrs.field(default=None, converter=_email)
    source: str
    channel: LeadChannel
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    country: str | None = None
    language: str | None = None
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=_tags)
    custom: Mapping[str, JSONScalar] = attrs.field(factory=CustomFields, converter=_custom)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValidationError("source", self.source, "a lead needs its source")
        object.__setattr__(self, "channel", member_of(LeadChannel, self.channel, "channel"))
        if self.phone is not None and not isinstance(self.phone, PhoneNumber):
            region = self.country if isinstance(self.country, str) else None
            try:
                region = CountryCode(region) if region is not None else None
            except ValidationError:
                region = None  # the contact's own check names a wrong country
            try:
                parsed = PhoneNumber.parse(self.phone, region)
            except ValidationError as error:
                raise error.within("phone") from None
            object.__setattr__(self, "phone", parsed)  # frozen: set once, normalised
        if self.email is None and self.phone is None:
            raise ValidationError(
                "email", None, "a touchpoint needs an e-mail address or a phone number"
            )


@attrs.frozen
class Captured:
    """What capturing a lead made: store all of it in one unit of work."""

    contact: Contact
    contact_created: bool
    """Whether ``contact`` is new (add it) or an existing one (update it if changed)."""
    contact_changed: bool
    lead: Lead
    activity: Activity
    changes: tuple[StageChange, ...]
    """The lead's entry into its pipeline (if any) and the contact's lifecycle move to
    ``lead`` (if it moved)."""
    lead_created: bool = True
    """Whether ``lead`` is new (add it) or the contact's open lead the touch was
    attached to (store it as it is; only the activity and the contact are new)."""


def _attributes(touch: Touchpoint, enrich: Enrichment | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if enrich is not None and touch.email is not None:
        extra = enrich(touch.email)
        if not isinstance(extra, Mapping):
            raise ValidationError("enrichment", extra, "an enrichment hook returns a mapping")
        unknown = [
            Problem(f"enrichment.{key}", value, "is not a contact attribute enrichment can set")
            for key, value in extra.items()
            if key not in _ENRICHABLE
        ]
        if unknown:
            raise ValidationError.of(unknown)
        found.update(extra)
        if "tags" in extra:
            try:
                found["tags"] = normalise_tags(extra["tags"])
            except ValidationError as error:
                raise error.within("enrichment.tags") from None
    given = {name: getattr(touch, name) for name in _PERSON if getattr(touch, name, None)}
    found.update(given)  # what the person typed wins over what enrichment guessed
    found["tags"] = frozenset(found.get("tags", ())) | touch.tags
    found["custom"] = {**dict(found.get("custom", {})), **touch.custom}
    return found


def _fill(contact: Contact, found: Mapping[str, Any], now: Any) -> Contact:
    changes: dict[str, Any] = {}
    for name in _PERSON:
        if getattr(contact, name) is None and found.get(name) is not None:
            changes[name] = found[name]
    tags = contact.tags | frozenset(found["tags"])
    if tags != contact.tags:
        changes["tags"] = tags
    custom = dict(contact.custom)
    for key, value in found["custom"].items():
        custom.setdefault(key, value)
    if custom != dict(contact.custom):
        changes["custom"] = CustomFields(custom)
    if not changes:
        return contact
    return attrs.evolve(contact, **changes, updated_at=now)


def _check_capture(touch: object, existing: object, pipeline: object, open_lead: object) -> None:
    """The arguments of :func:`capture_lead`, or the error naming the wrong one."""
    if not isinstance(touch, Touchpoint):
        raise ValidationError("touch", touch, "expected a Touchpoint")
    if pipeline is not None and (
        not isinstance(pipeline, Pipeline) or pipeline.subject is not SubjectKind.LEAD
    ):
        raise ValidationError("pipeline", pipeline, "expected a lead pipeline")
    if existing is not None:
        if not isinstance(existing, Contact):
            raise ValidationError("existing", existing, "expected a Contact or None")
        if touch.email is not None:
            if existing.email is None or existing.email.casefold() != touch.email.casefold():
                raise ValidationError("existing", existing.email, f"does not match {touch.email}")
        elif existing.phone != touch.phone:
            raise ValidationError("existing", existing.phone, f"does not match {touch.phone}")
    if open_lead is not None and (
        not isinstance(open_lead, Lead)
        or existing is None
        or open_lead.contact_id != existing.id
        or open_lead.status is LeadStatus.DISQUALIFIED
        or open_lead.deal_id is not None
    ):
        raise ValidationError("open_lead", open_lead, "expected an open lead of the contact")


def capture_lead(
    touch: Touchpoint,
    existing: Contact | None,
    *,
    enrich: Enrichment | None = None,
    owner: str | None = None,
    pipeline: Pipeline | None = None,
    open_lead: Lead | None = None,
    at: datetime,
) -> Captured:
    """Capture a lead from ``touch`` for the contact ``existing`` (matched by the caller
    on ``touch.email``, or on ``touch.phone`` when the touch has no e-mail address), or
    for a new contact if ``None``.

    With a lead ``pipeline``, the lead starts in its first stage (recorded as history).
    With ``open_lead`` (an open lead of ``existing``, found by the caller), the touch is
    attached to it instead: no new lead, only the activity (naming that lead) and what
    the touch adds to the contact; ``lead_created`` is then ``False``. Enrichment needs
    an e-mail address: a touch without one is not enriched.
    """
    _check_capture(touch, existing, pipeline, open_lead)
    found = _attributes(touch, enrich)
    now = ensure_utc(at, "at")
    clock = FixedClock(now)  # one moment: the entities and their history agree
    if existing is None:
        contact = Contact.new(
            email=touch.email,
            first_name=found.get("first_name"),
            last_name=found.get("last_name"),
            phone=found.get("phone"),
            country=found.get("country"),
            language=found.get("language"),
            owner=owner if owner is not None else found.get("owner"),
            tags=found["tags"],
            custom=found["custom"],
            clock=clock,
        )
        created, changed = True, True
    else:
        contact = _fill(existing, found, now)
        created, changed = False, contact is not existing
    if open_lead is not None:
        activity = Activity.new(
            contact_id=contact.id,
            kind=_KIND.get(touch.channel, ActivityKind.NOTE),
            occurred_at=now,
            subject=f"repeat touch: {touch.source} ({touch.channel.value})",
            properties={"lead_id": str(open_lead.id), "source": touch.source},
            clock=clock,
        )
        moved = advance_contact(contact, LifecycleEvent.LEAD_CAPTURED, at=now)
        if moved is None:
            return Captured(contact, created, changed, open_lead, activity, (), False)
        return Captured(moved.entity, created, True, open_lead, activity, (moved.change,), False)
    lead = Lead.new(
        contact_id=contact.id,
        source=touch.source,
        channel=touch.channel,
        owner=owner if owner is not None else contact.owner,
        pipeline=None if pipeline is None else pipeline.key,
        stage=None if pipeline is None else pipeline.first.key,
        clock=clock,
    )
    entered: tuple[StageChange, ...] = ()
    if pipeline is not None:
        entered = (
            StageChange.new(
                subject=SubjectKind.LEAD,
                subject_id=lead.id,
                pipeline=pipeline.key,
                to_stage=pipeline.first.key,
                at=now,
                reason=f"captured from {touch.source}",
                probability=pipeline.first.probability,
                clock=clock,
            ),
        )
    activity = Activity.new(
        contact_id=contact.id,
        kind=_KIND.get(touch.channel, ActivityKind.NOTE),
        occurred_at=now,
        subject=f"lead captured: {touch.source} ({touch.channel.value})",
        properties={"lead_id": str(lead.id), "source": touch.source},
        clock=clock,
    )
    moved = advance_contact(contact, LifecycleEvent.LEAD_CAPTURED, at=now)
    changes = entered
    if moved is not None:
        contact, changes, changed = moved.entity, (*entered, moved.change), True
    return Captured(contact, created, changed, lead, activity, changes)


@attrs.frozen
class Qualified:
    """A lead after scoring or acceptance, and the contact's lifecycle move if any."""

    lead: Lead
    contact: Moved[Contact] | None


def _check_lead(lead: object, contact: object) -> tuple[Lead, Contact]:
    if not isinstance(lead, Lead):
        raise ValidationError("lead", lead, "expected a Lead")
    if not isinstance(contact, Contact) or contact.id != lead.contact_id:
        raise ValidationError("contact", contact, "expected the lead's contact")
    return lead, contact


def _open(lead: Lead, to: str) -> None:
    if lead.status is LeadStatus.DISQUALIFIED or lead.deal_id is not None:
        why = "the lead is disqualified" if lead.deal_id is None else "the lead is converted"
        raise TransitionNotAllowed("lead", lead.status.value, to, [why])


def score_lead(
    lead: Lead, contact: Contact, score: float, *, threshold: float, at: datetime
) -> Qualified:
    """Record ``score`` on the lead; at or above ``threshold`` marketing has qualified it
    and the contact becomes an MQL."""
    lead, contact = _check_lead(lead, contact)
    for name, value in (("score", score), ("threshold", threshold)):
        if not finite(value):
            raise ValidationError(name, value, "expected a finite number")
    now = ensure_utc(at, "at")
    updated = attrs.evolve(lead, score=float(score), updated_at=now)
    moved = None
    if score >= threshold and lead.status is not LeadStatus.DISQUALIFIED:
        moved = advance_contact(contact, LifecycleEvent.MARKETING_QUALIFIED, at=now)
    return Qualified(updated, moved)


def _check_user(name: str, value: object) -> None:
    """A user id (who did it): text that is not blank."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(name, value, "expected a user id (non-blank text)")


def accept_lead(lead: Lead, contact: Contact, *, by: str, at: datetime) -> Qualified:
    """Sales accepts the lead: it is qualified and its contact becomes an SQL."""
    lead, contact = _check_lead(lead, contact)
    _check_user("by", by)
    _open(lead, LeadStatus.QUALIFIED.value)
    now = ensure_utc(at, "at")
    updated = attrs.evolve(
        lead, status=LeadStatus.QUALIFIED, owner=lead.owner or by, updated_at=now
    )
    moved = advance_contact(contact, LifecycleEvent.SALES_ACCEPTED, by=by, at=now)
    return Qualified(updated, moved)


def disqualify_lead(lead: Lead, *, reason: str, at: datetime) -> Lead:
    """Disqualify an open lead, with the reason."""
    if not isinstance(lead, Lead):
        raise ValidationError("lead", lead, "expected a Lead")
    _open(lead, LeadStatus.DISQUALIFIED.value)
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("reason", reason, "a disqualified lead needs a reason")
    return attrs.evolve(
        lead,
        status=LeadStatus.DISQUALIFIED,
        disqualified_reason=reason,
        updated_at=ensure_utc(at, "at"),
    )


@attrs.frozen
class Converted:
    """A lead converted into a deal: store all of it in one unit of work."""

    lead: Lead
    deal: Deal
    changes: tuple[StageChange, ...]
    """The deal's entry into its first stage, and the contact's move to opportunity."""
    contact: Contact
    contact_changed: bool


def convert_lead(
    lead: Lead,
    contact: Contact,
    machine: PipelineMachine[Deal],
    *,
    title: str,
    amount: Money | None = None,
    expected_close: date | None = None,
    by: str | None = None,
    at: datetime,
) -> Converted:
    """Turn ``lead`` into a deal in the first stage of ``machine``'s pipeline."""
    lead, contact = _check_lead(lead, contact)
    if by is not None:
        _check_user("by", by)
    if not isinstance(machine, PipelineMachine) or machine.pipeline.subject is not SubjectKind.DEAL:
        raise ValidationError("machine", machine, "expected the machine of a deal pipeline")
    _open(lead, "converted")
    pipeline = machine.pipeline
    now = ensure_utc(at, "at")
    clock = FixedClock(now)  # one moment: the entities and their history agree
    first = pipeline.first
    deal = Deal.new(
        title=title,
        pipeline=pipeline.key,
        stage=first.key,
        amount=amount,
        probability=first.probability,
        contact_id=contact.id,
        account_id=contact.account_id,
        lead_id=lead.id,
        expected_close=expected_close,
        owner=by or lead.owner,
        clock=clock,
    )
    entered = StageChange.new(
        subject=SubjectKind.DEAL,
        subject_id=deal.id,
        pipeline=pipeline.key,
        to_stage=first.key,
        at=now,
        by=by,
        reason=f"converted from lead {lead.id}",
        amount=deal.amount,
        probability=deal.probability,
        expected_close=deal.expected_close,
        clock=clock,
    )
    converted = attrs.evolve(lead, status=LeadStatus.QUALIFIED, deal_id=deal.id, updated_at=now)
    moved = advance_contact(contact, LifecycleEvent.DEAL_OPENED, by=by, at=now)
    changes = (entered,) if moved is None else (entered, moved.change)
    new_contact = contact if moved is None else moved.entity
    return Converted(converted, deal, changes, new_contact, moved is not None)
