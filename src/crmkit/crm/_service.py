"""The CRM service: one object that runs every use case in one unit of work."""

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import partial
from types import MappingProxyType
from typing import Any, Final, TypeVar, cast
from uuid import UUID

import attrs

from crmkit.analytics import (
    Backtest,
    CustomerReport,
    CustomerSpan,
    Forecast,
    ForecastCategory,
    Funnel,
    Granularity,
    Period,
    PipelineKpis,
    Rating,
    RfmSummary,
    ServiceReport,
    SlaOutcome,
    SlaVerdict,
    Transaction,
    csat_report,
    customer_flows,
    retention_matrix,
    revenue_report,
    rfm_summary,
    service_times,
    sla_compliance,
    spans_from_purchases,
    transactions_from_deals,
)
from crmkit.clock import Clock, FixedClock, ensure_utc
from crmkit.crm import _kpis, _merge
from crmkit.crm._audited import AuditedUnit
from crmkit.crm._automation import AutomationUseCases
from crmkit.crm._consent import ConsentUseCases, check_secret, refuse_erased
from crmkit.crm._events import EventUseCases
from crmkit.crm._privacy import PrivacyCases, delete_history, forget_merges, privacy_options
from crmkit.crm._steps import StepUseCases
from crmkit.errors import (
    ClosedRecord,
    ConcurrencyConflict,
    Duplicate,
    NotFound,
    Problem,
    Suppressed,
    TransitionNotAllowed,
    ValidationError,
)
from crmkit.lifecycle import (
    AGENT_REPLY_KINDS,
    CUSTOMER_REPLY_KINDS,
    Captured,
    CheckInPlan,
    Converted,
    Enrichment,
    FollowUps,
    Guards,
    LifecycleEvent,
    Moved,
    Pipeline,
    PipelineMachine,
    Qualified,
    SlaPolicies,
    SlaPolicy,
    SlaReport,
    SlaState,
    StageKind,
    TimelineEntry,
    Touchpoint,
    accept_lead,
    advance_contact,
    cancel_task,
    capture_lead,
    check_ins_due,
    closed_state,
    complete_task,
    convert_lead,
    disqualify_lead,
    follow_ups,
    move_ticket,
    record_csat,
    reset_contact,
    score_lead,
    sla_status,
    ticket_events,
    timeline,
)
from crmkit.models import (
    Account,
    Activity,
    ActivityKind,
    Contact,
    CountryCode,
    Deal,
    DealStatus,
    EmailAddress,
    Entity,
    JSONScalar,
    Lead,
    LeadStatus,
    LifecycleStage,
    Money,
    PhoneNumber,
    Segment,
    StageChange,
    SubjectKind,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.models._fields import member_of, to_member
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Compare,
    DateWindow,
    InSegment,
    IsNull,
    Measure,
    Op,
    Or,
    RelativeDate,
    Rule,
    RuleEntity,
)
from crmkit.privacy import ConsentPolicy
from crmkit.quality import (
    ACCOUNT_KEYS,
    CONTACT_KEYS,
    AuditReport,
    BatchResult,
    DuplicateModel,
    DuplicatePair,
    DuplicateSpec,
    FieldFill,
    MergeKind,
    MergePlan,
    MergePolicy,
    MergeRecord,
    Weights,
    default_model,
    email_key,
    invalid_values,
    match_keys,
)
from crmkit.quality import duplicate_pairs as _duplicate_pairs
from crmkit.scoring import Predictor, ScoreCard, ScoringModel, score
from crmkit.segmentation import (
    Context,
    contacts_where,
    deals_where,
    field,
    leads_where,
    tickets_where,
)
from crmkit.storage import Order, Repository, Store, UnitOfWork

__all__ = ["CRM", "REPLY_LIMIT"]

_AUDITED_CONTACT_FIELDS: Final = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "country",
    "language",
    "account_id",
    "owner",
)
_AUDITED_ACCOUNT_FIELDS: Final = ("domain", "country", "industry", "employees", "owner")


def _model_of(model: object, entity: type[Contact] | type[Account]) -> DuplicateModel:
    if model is None:
        return default_model(entity)
    if not isinstance(model, DuplicateModel):
        raise ValidationError("model", model, "expected a DuplicateModel")
    return model


REPLY_LIMIT: Final = 100_000
"""The longest ticket reply, in characters (an activity's ``body``)."""
_SUMMARY: Final = 200

_E = TypeVar("_E", bound=Entity)
_DONE: Final = frozenset({TicketStatus.SOLVED, TicketStatus.CLOSED})
_OPENED_BY_AGENT: Final = frozenset({TicketStatus.NEW})
_REOPENED_BY_CUSTOMER: Final = frozenset(
    {TicketStatus.PENDING, TicketStatus.ON_HOLD, TicketStatus.SOLVED}
)
_REPEAT_TOUCH: Final = ("attach", "new_lead")
_OPEN_LEAD_STATUSES: Final = tuple(s.value for s in LeadStatus if s is not LeadStatus.DISQUALIFIED)
_READ_ONLY: Final = {
    "id": "is made when the entity is created",
    "version": "is counted by the store: pass the version you read as version=",
    "created_at": "is set when the entity is created",
    "updated_at": "is set from the CRM's clock on every update",
}
# What an update method may change, per entity; the rest changes through use cases.
_EDITABLE: Final[dict[type[Entity], frozenset[str]]] = {
    Contact: frozenset(
        {
            "first_name",
            "last_name",
            "email",
            "phone",
            "country",
            "language",
            "account_id",
            "owner",
            "do_not_contact",
            "tags",
            "custom",
        }
    ),
    Account: frozenset(
        {
            "name",
            "domain",
            "country",
            "industry",
            "employees",
            "annual_revenue",
            "owner",
            "tags",
            "custom",
        }
    ),
    Lead: frozenset({"source", "channel", "owner", "custom"}),
}
_MANAGED: Final = {
    "lifecycle_stage": "changes through advance_contact or reset_contact",
    "contact_id": "a lead stays with its contact",
    "status": "changes through the lead's use cases (accept, disqualify, moves)",
    "score": "changes through score_lead or rescore_lead(s)",
    "pipeline": "changes through moves",
    "stage": "changes through moves",
    "disqualified_reason": "is set by disqualify_lead",
    "deal_id": "is set by convert_lead",
}


def _update_snapshot(deal: Deal, by: str | None, at: datetime) -> StageChange:
    """The history entry of an update of a deal's amount, probability or expected
    close: it stays in the deal's stage and snapshots the new values."""
    return StageChange.new(
        subject=SubjectKind.DEAL,
        subject_id=deal.id,
        pipeline=deal.pipeline,
        from_stage=deal.stage,
        to_stage=deal.stage,
        at=at,
        by=by,
        reason="updated",
        amount=deal.amount,
        probability=deal.probability,
        expected_close=deal.expected_close,
        clock=FixedClock(at),
    )


def _within_batch(clash: Duplicate, items: Sequence[Contact]) -> Duplicate:
    """``clash`` naming the earlier item of ``items`` with the same address, if one has
    it (the store only knows the item it refused)."""
    if clash.field != "email" or clash.index is None or not 0 <= clash.index < len(items):
        return clash
    address = items[clash.index].email
    if address is None:
        return clash
    folded = address.casefold()
    for index, contact in enumerate(items[: clash.index]):
        if contact.email is not None and contact.email.casefold() == folded:
            return Duplicate(
                clash.entity, clash.id, index=clash.index, field="email", other_index=index
            )
    return clash


class CRM(ConsentUseCases, PrivacyCases, EventUseCases, StepUseCases, AutomationUseCases):
    """A store, a clock and the configured pipelines, wired: the friendly entry point.

    Every method is one use case and runs in one unit of work: either everything it
    changes is stored, with its stage history and timeline activity, or nothing is.
    Invalid input raises a :mod:`crmkit.errors` exception before anything is written.

    ``mql_threshold`` is the lead score at which marketing has qualified a lead (a
    ``scoring`` model's own ``mql_at`` takes its place when set); ``enrich`` is the
    host's enrichment hook for captured leads; ``guards`` holds the guard callables the
    pipelines' stages name; ``scoring`` is the rule scoring model of
    :meth:`rescore_lead`; ``lead_pipeline`` names the lead pipeline that captured leads
    start in; ``sla_policies`` are the ticket SLA policies, the first that matches a ticket
    applies; ``repeat_touch`` says what a touch from a contact with an open lead does:
    ``"attach"`` (the default) records it on that lead, ``"new_lead"`` opens another.
    ``consent_policy`` declares the consent purposes and frequency caps (the consent use
    cases and :meth:`audience` need it); ``token_secret`` (at least 32 bytes) signs
    double opt-in tokens.
    ``privacy_secret`` (random bytes, 16 or more, kept by the host) keys the hashes of
    the suppression list: :meth:`erase_person` needs it, and with it capture, new
    contacts and imports refuse an erased person (:class:`~crmkit.errors.Suppressed`);
    ``four_eyes`` names the privacy use cases (``"export"``, ``"erasure"``) that need
    the approval of a second person.

    The CRM reads its clock once per use case and passes that time to the domain
    functions, so everything one call records carries the same time. Units of work do
    not nest: calling a method while a unit of work of the same store
    is open in the same thread raises :class:`~crmkit.errors.StorageError` at once.
    Closed deals and leads are records: changing them raises
    :class:`~crmkit.errors.ClosedRecord`; :meth:`reopen_deal` and :meth:`reopen_lead`
    are the way back.
    """

    def __init__(  # noqa: PLR0912 - one check per option
        self,
        store: Store,
        *,
        pipelines: Iterable[Pipeline] = (),
        guards: Guards | None = None,
        mql_threshold: float = 50.0,
        enrich: Enrichment | None = None,
        scoring: ScoringModel | None = None,
        lead_pipeline: str | None = None,
        sla_policies: Iterable[SlaPolicy] = (),
        repeat_touch: str = "attach",
        consent_policy: ConsentPolicy | None = None,
        token_secret: bytes | None = None,
        clock: Clock | None = None,
        privacy_secret: bytes | None = None,
        four_eyes: Iterable[str] = (),
    ) -> None:
        self.store = store
        self.clock: Clock = store.clock if clock is None else clock
        if not isinstance(self.clock, Clock):
            raise ValidationError("clock", clock, "expected a Clock (an object with now())")
        if isinstance(pipelines, Pipeline) or not isinstance(pipelines, Iterable):
            raise ValidationError("pipelines", pipelines, "expected a collection of Pipelines")
        if enrich is not None and not callable(enrich):
            raise ValidationError("enrich", enrich, "expected a callable or None")
        machines: dict[str, PipelineMachine[Deal] | PipelineMachine[Lead]] = {}
        for index, pipeline in enumerate(pipelines):
            if not isinstance(pipeline, Pipeline):
                raise ValidationError(f"pipelines[{index}]", pipeline, "expected a Pipeline")
            if pipeline.key in machines:
                raise ValidationError(f"pipelines[{index}].key", pipeline.key, "is used twice")
            machines[pipeline.key] = PipelineMachine(pipeline, guards=guards)
        if (
            isinstance(mql_threshold, bool)
            or not isinstance(mql_threshold, int | float)
            or not math.isfinite(mql_threshold)
        ):
            raise ValidationError("mql_threshold", mql_threshold, "expected a finite number")
        self._machines = machines
        self.mql_threshold = float(mql_threshold)
        self.enrich = enrich
        if scoring is not None and not isinstance(scoring, ScoringModel):
            raise ValidationError("scoring", scoring, "expected a ScoringModel")
        self.scoring = scoring
        self.lead_pipeline: Pipeline | None = None
        if lead_pipeline is not None:
            found = machines.get(lead_pipeline) if isinstance(lead_pipeline, str) else None
            if found is None:
                raise ValidationError("lead_pipeline", lead_pipeline, "no such pipeline")
            pipeline = found.pipeline
            if pipeline.subject is not SubjectKind.LEAD:
                raise ValidationError("lead_pipeline", lead_pipeline, "is not a lead pipeline")
            self.lead_pipeline = pipeline
        self.sla_policies = (
            sla_policies if isinstance(sla_policies, SlaPolicies) else SlaPolicies(sla_policies)
        )
        if repeat_touch not in _REPEAT_TOUCH:
            raise ValidationError("repeat_touch", repeat_touch, "expected 'attach' or 'new_lead'")
        self.repeat_touch = repeat_touch
        if consent_policy is not None and not isinstance(consent_policy, ConsentPolicy):
            raise ValidationError("consent_policy", consent_policy, "expected a ConsentPolicy")
        self.consent_policy = consent_policy
        self._token_secret = check_secret(token_secret)
        self.privacy_secret, self.four_eyes = privacy_options(privacy_secret, four_eyes)

    @property
    def pipelines(self) -> Mapping[str, Pipeline]:
        """The configured pipelines by key."""
        return MappingProxyType({k: m.pipeline for k, m in self._machines.items()})

    def machine(self, pipeline: str) -> PipelineMachine[Deal] | PipelineMachine[Lead]:
        """The state machine of pipeline ``pipeline``."""
        try:
            return self._machines[pipeline]
        except (KeyError, TypeError):
            raise ValidationError("pipeline", pipeline, "no such pipeline is configured") from None

    def _deal_machine(self, pipeline: str) -> PipelineMachine[Deal]:
        machine = self.machine(pipeline)
        if machine.pipeline.subject is not SubjectKind.DEAL:
            raise ValidationError("pipeline", pipeline, "is not a deal pipeline")
        return machine  # type: ignore[return-value]

    @contextmanager
    def _unit(self, by: str | None = None, *, audits: bool = True) -> Iterator[UnitOfWork]:
        """A unit of work that commits when the block ends without an exception and
        writes the audit trail of the contacts and deals it stores (``by``: who acts;
        ``audits=False``: no audit entries) and the domain events of all it writes."""
        with self.store.unit_of_work() as unit:
            audited = AuditedUnit(
                unit,
                by if isinstance(by, str) else None,
                clock=self.clock.now,
                audits=audits,
                events=self._records_events,
            )
            yield audited
            audited.commit()

    @staticmethod
    def _record(unit: UnitOfWork, changes: Iterable[StageChange]) -> None:
        for change in changes:
            unit.stage_history.add(change)

    # ------------------------------------------------------------------ step 2: acquire

    def find_contact(self, email: str) -> Contact | None:
        """The contact with this e-mail address (normalised first), if there is one: a
        contact merged into another is found as the one it was merged into."""
        with self.store.unit_of_work() as unit:
            try:
                address = EmailAddress(email)
            except ValidationError as error:
                raise error.within("email") from None
            return self._contact_by_email(unit, address)

    @staticmethod
    def _contact_by_email(unit: UnitOfWork, email: EmailAddress) -> Contact | None:
        """The (oldest) contact with ``email``, compared without case: an index look-up;
        when none has it but a merge took it, the contact it was merged into (see
        :meth:`merge_contacts`)."""
        found = unit.contacts.with_email(email)
        return found[0] if found else _merge.survivor_of(unit, email)

    def _merged_into(
        self, unit: UnitOfWork, touch: Touchpoint
    ) -> tuple[Touchpoint, Contact | None]:
        """For a touch whose address no contact has: the contact a merge folded the
        address into (the survivor, given the address if it has none), else the one
        contact with the same mailbox (:func:`crmkit.quality.email_key`:
        ``AdaLovelace+news@gmail.com`` is ``ada.lovelace@gmail.com``), and the touch as
        that contact's; else the touch and ``None``."""
        email = cast(EmailAddress, touch.email)
        survivor = _merge.survivor_of(unit, email)
        if survivor is None:
            # the same mailbox by its provider's rules (Gmail ignores dots and +tags):
            # the one contact whose e-mail key it is
            key = email_key(email)
            same = unit.contacts.with_match_keys([("email", key)], limit=2) if key else []
            if len(same) == 1 and same[0].email is not None:
                return attrs.evolve(touch, email=same[0].email), same[0]
            return touch, None
        if survivor.email is None:
            changed = attrs.evolve(survivor, email=email, updated_at=self.clock.now())
            return touch, unit.contacts.update(changed)
        return attrs.evolve(touch, email=survivor.email), survivor

    @staticmethod
    def _contact_by_phone(unit: UnitOfWork, phone: PhoneNumber) -> Contact | None:
        """The first contact with this E.164 phone number, if there is one."""
        found = unit.contacts.find(contacts_where(field("phone") == phone), limit=1).items
        return found[0] if found else None

    def _open_lead_of(self, unit: UnitOfWork, contact_id: UUID) -> Lead | None:
        """The contact's newest open lead (not disqualified, converted or won)."""
        rule = leads_where(
            (field("contact_id") == contact_id) & field("status").is_in(*_OPEN_LEAD_STATUSES)
        )
        newest = Order("created_at", descending=True)
        for lead in unit.leads.find(rule, order=newest, limit=20).items:
            if self._closed_lead(lead) is None:
                return lead
        return None

    def _closed_lead(self, lead: Lead) -> str | None:
        machine = self._machines.get(lead.pipeline) if lead.pipeline is not None else None
        return closed_state(lead, None if machine is None else machine.pipeline)

    def _refuse_closed_lead(self, lead: Lead) -> Lead:
        state = self._closed_lead(lead)
        if state is not None:
            how = "no reopen (it has a deal)" if state == "converted" else "reopen_lead"
            raise ClosedRecord("lead", lead.id, lead.stage, state, how)
        return lead

    def capture_lead(self, touch: Touchpoint, *, owner: str | None = None) -> Captured:
        """Capture a lead from an inbound touchpoint: match the contact by e-mail (the
        address itself, an address a merge took, else the one contact with the same
        mailbox by :func:`crmkit.quality.email_key`: ``AdaLovelace+news@gmail.com``
        finds ``ada.lovelace@gmail.com``, whose address stays as it is; or, for a touch
        without one, by E.164 phone number) or create it, fill what it lacks
        (touchpoint, then enrichment), add the lead and the timeline activity, and
        advance the contact to ``lead``.

        A repeat touch from a contact with an open lead is attached to that lead by
        default (``repeat_touch="attach"``): the activity is recorded and the existing
        lead is returned, with ``lead_created`` ``False``."""
        if not isinstance(touch, Touchpoint):
            raise ValidationError("touch", touch, "expected a Touchpoint")
        enrich: Enrichment | None = None
        if self.enrich is not None and touch.email is not None:  # outside the unit of
            extra = self.enrich(touch.email)  # work: it may be a slow call

            def enrich(_: EmailAddress) -> Mapping[str, Any]:
                return extra

        for attempt in range(2):
            try:
                with self._unit() as unit:
                    return self._capture(unit, touch, enrich, owner)
            except Duplicate as error:
                # Another unit of work stored a contact with this address after ours
                # looked: the second attempt finds it (one contact per address).
                if error.field != "email" or attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _capture(
        self,
        unit: UnitOfWork,
        touch: Touchpoint,
        enrich: Enrichment | None,
        owner: str | None,
    ) -> Captured:
        if touch.email is not None:
            found = unit.contacts.with_email(touch.email)
            existing = found[0] if found else None
            if existing is None:
                touch, existing = self._merged_into(unit, touch)
        else:
            existing = self._contact_by_phone(unit, cast(PhoneNumber, touch.phone))
        if existing is not None and unit.erasures.get_many([existing.id]):
            # Found by an address kept for a merge into a person erased since.
            raise Suppressed("email" if touch.email is not None else "phone")
        open_lead = None
        if existing is not None and self.repeat_touch == "attach":
            open_lead = self._open_lead_of(unit, existing.id)
        captured = capture_lead(
            touch,
            existing,
            enrich=enrich,
            owner=owner,
            pipeline=self.lead_pipeline,
            open_lead=open_lead,
            at=self.clock.now(),
        )
        contact = captured.contact
        if captured.contact_created:
            self._refuse_suppressed(unit, contact.email, contact.phone)
            unit.contacts.add(contact)
        elif captured.contact_changed:
            contact = unit.contacts.update(contact)
        if captured.lead_created:
            unit.leads.add(captured.lead)
        unit.activities.append(captured.activity)
        self._record(unit, captured.changes)
        return attrs.evolve(captured, contact=contact)

    # ------------------------------------------------------------------ step 3: convert

    def score_lead(self, lead_id: UUID, score: float) -> Qualified:
        """Record a lead's score; at ``mql_threshold`` or above its contact becomes an MQL."""
        with self._unit() as unit:
            lead = self._refuse_closed_lead(unit.leads.get(lead_id))
            contact = unit.contacts.get(lead.contact_id)
            qualified = score_lead(
                lead, contact, score, threshold=self.mql_threshold, at=self.clock.now()
            )
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved)

    @staticmethod
    def _stored_move(unit: UnitOfWork, moved: Moved[Contact] | None) -> Moved[Contact] | None:
        if moved is None:
            return None
        contact = unit.contacts.update(moved.entity)
        unit.stage_history.add(moved.change)
        return Moved(contact, moved.change)

    def rescore_lead(self, lead_id: UUID) -> tuple[Qualified, ScoreCard]:
        """Score a lead with the ``scoring`` model, from its contact and the contact's
        activities as stored now, and record the score as :meth:`score_lead` does.

        Returns the outcome and the score card that explains the score.
        """
        model = self.scoring
        if model is None:
            raise ValidationError("scoring", None, "this CRM has no scoring model")
        with self._unit() as unit:
            lead = self._refuse_closed_lead(unit.leads.get(lead_id))
            contact = unit.contacts.get(lead.contact_id)
            context = Context(
                now=self.clock.now(),
                activities={contact.id: unit.activities.for_contact(contact.id)},
                segments=_segments_named(unit, [c.rule for c in model.criteria]),
            )
            card = score(model, lead, context, contact=contact)
            threshold = self.mql_threshold if model.mql_at is None else model.mql_at
            qualified = score_lead(lead, contact, card.total, threshold=threshold, at=context.now)
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved), card

    def _close_lead(
        self,
        unit: UnitOfWork,
        lead: Lead,
        kind: StageKind,
        by: str | None,
        reason: str | None,
        *,
        at: datetime,
    ) -> Lead:
        """Move a lead that is in a lead pipeline to the pipeline's won or lost stage, with
        its history entry, so that its stage and its status agree."""
        if lead.pipeline is None:
            return lead
        machine = cast(PipelineMachine[Lead], self.machine(lead.pipeline))
        pipeline = machine.pipeline
        target = pipeline.won() if kind is StageKind.WON else pipeline.lost()
        if target is None or lead.stage == target.key:
            return lead
        moved = machine.move(lead, target.key, by=by, reason=reason, at=at)
        unit.stage_history.add(moved.change)
        return moved.entity

    def accept_lead(self, lead_id: UUID, *, by: str) -> Qualified:
        """Sales accepts a lead: it is qualified and its contact becomes an SQL."""
        with self._unit(by) as unit:
            now = self.clock.now()
            lead = unit.leads.get(lead_id)
            qualified = accept_lead(lead, unit.contacts.get(lead.contact_id), by=by, at=now)
            accepted = self._close_lead(
                unit, qualified.lead, StageKind.WON, by, "accepted by sales", at=now
            )
            qualified = Qualified(accepted, qualified.contact)
            stored = unit.leads.update(qualified.lead)
            moved = self._stored_move(unit, qualified.contact)
        return Qualified(stored, moved)

    def disqualify_lead(self, lead_id: UUID, *, reason: str) -> Lead:
        """Disqualify an open lead, with the reason."""
        with self._unit() as unit:
            now = self.clock.now()
            gone = disqualify_lead(unit.leads.get(lead_id), reason=reason, at=now)
            closed = self._close_lead(unit, gone, StageKind.LOST, None, reason, at=now)
            return unit.leads.update(closed)

    def convert_lead(
        self,
        lead_id: UUID,
        *,
        pipeline: str,
        title: str,
        amount: Money | None = None,
        expected_close: date | None = None,
        by: str | None = None,
    ) -> Converted:
        """Convert a lead into a deal in the first stage of ``pipeline``, atomically: the
        deal, its stage history, the converted lead and the contact's move to
        opportunity are stored together."""
        machine = self._deal_machine(pipeline)
        with self._unit(by) as unit:
            now = self.clock.now()
            lead = unit.leads.get(lead_id)
            contact = unit.contacts.get(lead.contact_id)
            lead = self._close_lead(unit, lead, StageKind.WON, by, "converted into a deal", at=now)
            converted = convert_lead(
                lead,
                contact,
                machine,
                title=title,
                amount=amount,
                expected_close=expected_close,
                by=by,
                at=now,
            )
            unit.deals.add(converted.deal)
            stored_lead = unit.leads.update(converted.lead)
            stored_contact = converted.contact
            if converted.contact_changed:
                stored_contact = unit.contacts.update(converted.contact)
            self._record(unit, converted.changes)
        return Converted(
            stored_lead,
            converted.deal,
            converted.changes,
            stored_contact,
            converted.contact_changed,
        )

    def update_deal(
        self,
        deal_id: UUID,
        *,
        title: str | None = None,
        amount: Money | None = None,
        probability: Decimal | None = None,
        expected_close: date | None = None,
        owner: str | None = None,
        custom: Mapping[str, JSONScalar] | None = None,
        version: int | None = None,
        by: str | None = None,
    ) -> Deal:
        """Change a deal's details; what is not given stays as it is. The audit trail
        records each changed field, with ``by`` (who changes it) when given.

        Stage, status and the closing fields change only through moves. A probability
        given here is kept from then on (``probability_manual``); ``custom`` adds to
        and replaces the deal's custom fields (a value of ``None`` is stored as null).
        ``version``, when given, is the version the change was based on: another
        version stored raises :class:`~crmkit.errors.ConcurrencyConflict`.

        A change of the amount, probability or expected close is recorded in the
        deal's stage history as an entry that stays in its stage (``from_stage ==
        to_stage``, reason ``"updated"``) with the new values, so that the funnel,
        pipeline KPIs, forecast and backtest, which replay the history as of their
        time, read the values the deal had then: the new ones from the update on.

        A won or lost deal is a record: any change raises
        :class:`~crmkit.errors.ClosedRecord` (reopen it first, :meth:`reopen_deal`). An
        open deal's change must not break its stage's requirements (a required field
        emptied, the amount below the stage's minimum): that raises
        :class:`~crmkit.errors.TransitionNotAllowed` naming the requirement.
        """
        with self._unit(by) as unit:
            deal = self._expect(unit.deals.get(deal_id), version)
            changes: dict[str, Any] = {
                name: value
                for name, value in (
                    ("title", title),
                    ("amount", amount),
                    ("expected_close", expected_close),
                    ("owner", owner),
                )
                if value is not None
            }
            if probability is not None:
                changes |= {"probability": probability, "probability_manual": True}
            if custom is not None:
                if not isinstance(custom, Mapping):
                    raise ValidationError("custom", custom, "expected a mapping")
                changes["custom"] = {**deal.custom, **custom}
            if not changes:
                return self._check_deal_update(deal, deal)
            now = self.clock.now()
            updated = attrs.evolve(deal, **changes, updated_at=now)
            stored = unit.deals.update(self._check_deal_update(deal, updated))
            snapshot = (stored.amount, stored.probability, stored.expected_close)
            if snapshot != (deal.amount, deal.probability, deal.expected_close):
                unit.stage_history.add(_update_snapshot(stored, by, now))
            return stored

    def _check_deal_update(self, before: Deal, after: Deal) -> Deal:
        machine = self._machines.get(before.pipeline)
        if machine is None or machine.pipeline.subject is not SubjectKind.DEAL:
            state = closed_state(before)  # a pipeline this CRM does not know: status only
            if state is not None:
                raise ClosedRecord("deal", before.id, before.stage, state, "reopen_deal")
            return after
        return cast(PipelineMachine[Deal], machine).check_update(before, after)

    @staticmethod
    def _expect(item: _E, version: int | None) -> _E:
        """``item`` if ``version`` is ``None`` or its version; else the conflict."""
        if version is None:
            return item
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError("version", version, "expected the version (an int >= 1)")
        if version != item.version:
            raise ConcurrencyConflict(item.entity_name, item.id, version, item.version)
        return item

    def reopen_deal(
        self,
        deal_id: UUID,
        *,
        to: str,
        by: str,
        reason: str,
        approved_by: str | None = None,
    ) -> Moved[Deal]:
        """Move a won or lost deal back to the open stage ``to``: the one way a closed
        deal changes again, recorded in its stage history.

        It needs who reopens and why; the pipeline must allow leaving closed stages
        (``Pipeline(reopen=True)``, or the pair in mode ``explicit``); and when the
        stage the deal leaves required approval to enter (a four-eyes win), a second
        person must approve the reopen too (``approved_by``). The target stage's own
        requirements apply as for every move.

        A deal reopened from won was the contact's purchase no more: when it was the
        contact's only won deal and the contact is a customer (the stage winning it
        gave), the contact goes back to ``opportunity`` (it has an open deal again), a
        reset recorded in its stage history with the same ``by`` and ``reason``. A
        contact with another won deal stays a customer, and an evangelist stays one.
        """
        with self._unit(by) as unit:
            deal = unit.deals.get(deal_id)
            machine = self._deal_machine(deal.pipeline)
            now = self.clock.now()
            moved = machine.reopen(deal, to, by=by, reason=reason, approved_by=approved_by, at=now)
            stored = unit.deals.update(moved.entity)
            unit.stage_history.add(moved.change)
            if deal.status is DealStatus.WON and deal.contact_id is not None:
                self._unwin_contact(unit, deal.contact_id, by=by, reason=reason, at=now)
        return Moved(stored, moved.change)

    def _unwin_contact(
        self, unit: UnitOfWork, contact_id: UUID, *, by: str, reason: str, at: datetime
    ) -> None:
        """Put a customer whose only won deal was reopened back to ``opportunity``."""
        contact = unit.contacts.get(contact_id)
        if contact.lifecycle_stage is not LifecycleStage.CUSTOMER:
            return
        won = (field("contact_id") == contact_id) & (field("status") == DealStatus.WON.value)
        if unit.deals.count(deals_where(won)):
            return
        moved = reset_contact(
            contact, LifecycleStage.OPPORTUNITY, by=by, reason=f"deal reopened: {reason}", at=at
        )
        self._stored_move(unit, moved)

    def reopen_lead(
        self,
        lead_id: UUID,
        *,
        to: str,
        by: str,
        reason: str,
        approved_by: str | None = None,
    ) -> Moved[Lead]:
        """Move a disqualified or qualified lead of a lead pipeline back to the open stage
        ``to`` (see :meth:`reopen_deal`); its status becomes ``working``. A converted
        lead is never reopened: its deal goes on."""
        with self._unit(by) as unit:
            lead = unit.leads.get(lead_id)
            machine = self._lead_machine(lead)
            moved = machine.reopen(
                lead, to, by=by, reason=reason, approved_by=approved_by, at=self.clock.now()
            )
            stored = unit.leads.update(moved.entity)
            unit.stage_history.add(moved.change)
        return Moved(stored, moved.change)

    def _lead_machine(self, lead: Lead) -> PipelineMachine[Lead]:
        if lead.pipeline is None:
            raise ValidationError("pipeline", None, "the lead is in no pipeline")
        machine = self.machine(lead.pipeline)
        if machine.pipeline.subject is not SubjectKind.LEAD:
            raise ValidationError("pipeline", lead.pipeline, "is not a lead pipeline")
        return cast(PipelineMachine[Lead], machine)

    def move_deal(
        self,
        deal_id: UUID,
        to: str,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Deal]:
        """Move a deal to stage ``to`` of its pipeline (see :class:`PipelineMachine`).

        Winning a deal makes its contact a customer, in the same unit of work.
        """
        return self._move_deal(deal_id, to, by, reason, approved_by)

    def win_deal(
        self,
        deal_id: UUID,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Deal]:
        """Move a deal to the (first) won stage of its pipeline."""
        return self._move_deal(deal_id, StageKind.WON, by, reason, approved_by)

    def lose_deal(
        self, deal_id: UUID, *, by: str, reason: str, approved_by: str | None = None
    ) -> Moved[Deal]:
        """Move a deal to the (first) lost stage of its pipeline, with the reason."""
        return self._move_deal(deal_id, StageKind.LOST, by, reason, approved_by)

    def _move_deal(
        self,
        deal_id: UUID,
        to: str | StageKind,
        by: str,
        reason: str | None,
        approved_by: str | None,
    ) -> Moved[Deal]:
        """The deal's move to stage ``to``, or to the first won or lost stage of its
        pipeline when ``to`` is a kind, read and written in one unit of work."""
        with self._unit(by) as unit:
            deal = unit.deals.get(deal_id)
            machine = self._deal_machine(deal.pipeline)
            state = closed_state(deal)
            if state is not None:
                raise ClosedRecord("deal", deal.id, deal.stage, state, "reopen_deal")
            if isinstance(to, StageKind):
                target = machine.pipeline.won() if to is StageKind.WON else machine.pipeline.lost()
                if target is None:
                    raise ValidationError("pipeline", deal.pipeline, "has no lost stage")
                to = target.key
            now = self.clock.now()
            moved = machine.move(deal, to, by=by, reason=reason, approved_by=approved_by, at=now)
            stored = unit.deals.update(moved.entity)
            unit.stage_history.add(moved.change)
            if stored.status is DealStatus.WON and stored.contact_id is not None:
                contact = unit.contacts.get(stored.contact_id)
                won = advance_contact(contact, LifecycleEvent.DEAL_WON, by=by, at=now)
                self._stored_move(unit, won)
        return Moved(stored, moved.change)

    def move_lead(
        self,
        lead_id: UUID,
        to: str,
        *,
        by: str,
        reason: str | None = None,
        approved_by: str | None = None,
    ) -> Moved[Lead]:
        """Move a lead through its lead pipeline (``lead.pipeline``); a closed lead moves
        only through :meth:`reopen_lead`."""
        with self._unit(by) as unit:
            lead = unit.leads.get(lead_id)
            machine = self._lead_machine(lead)
            self._refuse_closed_lead(lead)
            moved = machine.move(
                lead, to, by=by, reason=reason, approved_by=approved_by, at=self.clock.now()
            )
            stored = unit.leads.update(moved.entity)
            unit.stage_history.add(moved.change)
        return Moved(stored, moved.change)

    def advance_contact(
        self, contact_id: UUID, event: LifecycleEvent, *, by: str | None = None
    ) -> Moved[Contact] | None:
        """Advance a contact for a domain event the host observed (a referral, promoter
        feedback, ...); ``None`` when the contact is already as far."""
        with self._unit(by) as unit:
            contact = unit.contacts.get(contact_id)
            moved = advance_contact(contact, event, by=by, at=self.clock.now())
            return self._stored_move(unit, moved)

    def reset_contact(
        self, contact_id: UUID, to: LifecycleStage, *, by: str, reason: str
    ) -> Moved[Contact]:
        """Put a contact back (or anywhere) in the lifecycle, saying who and why."""
        with self._unit(by) as unit:
            contact = unit.contacts.get(contact_id)
            moved = reset_contact(contact, to, by=by, reason=reason, at=self.clock.now())
            stored = self._stored_move(unit, moved)
        assert stored is not None
        return stored

    def history(self, subject: SubjectKind, subject_id: UUID) -> list[StageChange]:
        """The stage history of one contact, lead, deal or ticket, oldest first
        (``subject`` a :class:`~crmkit.models.SubjectKind` or its value)."""
        subject = member_of(SubjectKind, subject, "subject")
        with self.store.unit_of_work() as unit:
            return unit.stage_history.for_subject(subject, subject_id)

    # ------------------------------------------------------------------ step 4: serve

    def open_ticket(
        self,
        contact_id: UUID,
        *,
        subject: str,
        channel: TicketChannel,
        priority: TicketPriority = TicketPriority.NORMAL,
        description: str | None = None,
        assignee: str | None = None,
        tags: Iterable[str] = frozenset(),
    ) -> Ticket:
        """Open a support ticket for a contact, on any channel (status ``new``), with
        ``tags`` if given (normalised as every entity's tags)."""
        with self._unit() as unit:
            contact = unit.contacts.get(contact_id)
            refuse_erased(unit, contact.id)
            ticket = Ticket.new(
                subject=subject,
                contact_id=contact.id,
                channel=channel,
                priority=priority,
                description=description,
                account_id=contact.account_id,
                assignee=assignee,
                tags=tags,
                clock=FixedClock(self.clock.now()),
            )
            return unit.tickets.add(ticket)

    def _move_ticket(
        self,
        unit: UnitOfWork,
        ticket: Ticket,
        to: TicketStatus,
        by: str | None,
        reason: str | None,
        *,
        at: datetime,
    ) -> Moved[Ticket]:
        moved = move_ticket(ticket, to, by=by, at=at, reason=reason)
        stored = unit.tickets.update(moved.entity)
        unit.stage_history.add(moved.change)
        return Moved(stored, moved.change)

    def reply_to_ticket(
        self,
        ticket_id: UUID,
        *,
        by: str | None,
        text: str,
        kind: ActivityKind = ActivityKind.EMAIL_SENT,
    ) -> tuple[Ticket, Activity]:
        """Record a reply on a ticket's timeline: by an agent (``by`` names them) or by the
        customer (``by=None``).

        An agent's reply opens a new ticket; a customer's reply brings a pending,
        on-hold or solved ticket back to open (the move is recorded just before the
        reply). Either way the SLA clocks see the reply.

        ``text`` (up to :data:`REPLY_LIMIT` characters, any number of lines) is stored
        as the activity's ``body``; its first line, shortened to 200 characters, is
        the ``subject`` that timelines show.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValidationError("text", text, "a reply needs its text")
        if len(text) > REPLY_LIMIT:
            raise ValidationError("text", text, f"at most {REPLY_LIMIT:,} characters")
        replies = CUSTOMER_REPLY_KINDS if by is None else AGENT_REPLY_KINDS
        kind = to_member(ActivityKind)(kind)
        if not isinstance(kind, ActivityKind) or kind not in replies:
            who = "a customer's" if by is None else "an agent's"
            allowed = ", ".join(sorted(k.value for k in replies))
            raise ValidationError("kind", kind, f"{who} reply is one of: {allowed}")
        with self._unit(by) as unit:
            now = self.clock.now()
            ticket = unit.tickets.get(ticket_id)
            refuse_erased(unit, ticket.contact_id)
            if ticket.status is TicketStatus.CLOSED:
                raise TransitionNotAllowed(
                    "ticket", ticket.status.value, "reply", ["a closed ticket takes no replies"]
                )
            reopen = _REOPENED_BY_CUSTOMER if by is None else _OPENED_BY_AGENT
            if ticket.status in reopen:
                why = "customer replied" if by is None else "first reply"
                ticket = self._move_ticket(unit, ticket, TicketStatus.OPEN, by, why, at=now).entity
            reply = Activity.new(
                contact_id=ticket.contact_id,
                kind=kind,
                subject=_summary(text),
                body=text,
                ticket_id=ticket.id,
                actor=by,
                clock=FixedClock(now),
            )
            unit.activities.append(reply)
        return ticket, reply

    def move_ticket(
        self, ticket_id: UUID, to: TicketStatus, *, by: str, reason: str | None = None
    ) -> Moved[Ticket]:
        """Move a ticket through the ticket workflow (see ``TICKET_TRANSITIONS``)."""
        with self._unit(by) as unit:
            ticket = unit.tickets.get(ticket_id)
            return self._move_ticket(unit, ticket, to, by, reason, at=self.clock.now())

    def solve_ticket(self, ticket_id: UUID, *, by: str) -> Moved[Ticket]:
        """Mark a ticket solved: its SLA clocks stop."""
        return self.move_ticket(ticket_id, TicketStatus.SOLVED, by=by)

    def close_ticket(self, ticket_id: UUID, *, by: str) -> Moved[Ticket]:
        """Close a solved ticket; closed is final."""
        return self.move_ticket(ticket_id, TicketStatus.CLOSED, by=by)

    def record_csat(self, ticket_id: UUID, score: int) -> Ticket:
        """Record the customer's satisfaction (1 to 5) with a solved ticket."""
        with self._unit() as unit:
            ticket = unit.tickets.get(ticket_id)
            return unit.tickets.update(record_csat(ticket, score, at=self.clock.now()))

    def sla_status(self, ticket_id: UUID) -> SlaReport:
        """The SLA timers of one ticket now, computed from its stored events."""
        with self.store.unit_of_work() as unit:
            return self._sla(unit, unit.tickets.get(ticket_id), self.clock.now())

    def _sla(self, unit: UnitOfWork, ticket: Ticket, now: datetime) -> SlaReport:
        return self._slas(unit, [ticket], now)[0]

    def _slas(self, unit: UnitOfWork, tickets: Sequence[Ticket], now: datetime) -> list[SlaReport]:
        """The SLA reports of ``tickets`` at ``now``: each from its stage history and its
        contact's activities since its creation, read for all of them in one query each
        (by batches of ids), not two queries per ticket."""
        if not tickets:
            return []
        histories: dict[UUID, list[StageChange]] = {}
        for change in unit.stage_history.for_subjects(SubjectKind.TICKET, [t.id for t in tickets]):
            histories.setdefault(change.subject_id, []).append(change)
        timelines: dict[UUID, list[Activity]] = {}
        since = min(t.created_at for t in tickets)
        for activity in unit.activities.for_contacts({t.contact_id for t in tickets}, since=since):
            timelines.setdefault(activity.contact_id, []).append(activity)
        return [
            sla_status(
                ticket,
                ticket_events(
                    ticket,
                    histories.get(ticket.id, []),
                    [
                        a
                        for a in timelines.get(ticket.contact_id, ())
                        if a.occurred_at >= ticket.created_at
                    ],
                ),
                self.sla_policies,
                now,
            )
            for ticket in tickets
        ]

    def sla_reports(self) -> list[SlaReport]:
        """The SLA reports of every unsolved ticket (feed them to ``breached`` or
        ``due_within`` of :mod:`crmkit.lifecycle`)."""
        unsolved = [s.value for s in TicketStatus if s not in _DONE]
        with self.store.unit_of_work() as unit:
            tickets = list(unit.tickets.iterate(tickets_where(field("status").is_in(*unsolved))))
            now = self.clock.now()
            return self._slas(unit, tickets, now)

    # ------------------------------------------------------------------ activities, tasks

    def record_activity(self, activity: Activity) -> Activity:
        """Add an activity to its contact's timeline."""
        if not isinstance(activity, Activity):
            raise ValidationError("activity", activity, "expected an Activity")
        with self._unit() as unit:
            unit.contacts.get(activity.contact_id)  # NotFound for an unknown contact
            refuse_erased(unit, activity.contact_id)
            return unit.activities.append(activity)

    def create_task(self, task: Task) -> Task:
        """Store a new task (a follow-up, a call, a check-in)."""
        if not isinstance(task, Task):
            raise ValidationError("task", task, "expected a Task")
        with self._unit() as unit:
            if task.contact_id is not None:
                unit.contacts.get(task.contact_id)
                refuse_erased(unit, task.contact_id)
            if task.deal_id is not None:
                unit.deals.get(task.deal_id)
            if task.ticket_id is not None:
                unit.tickets.get(task.ticket_id)
            return unit.tasks.add(task)

    def complete_task(self, task_id: UUID) -> Task:
        """Mark an open task done now."""
        with self._unit() as unit:
            done = complete_task(unit.tasks.get(task_id), at=self.clock.now())
            return unit.tasks.update(done)

    def cancel_task(self, task_id: UUID) -> Task:
        """Cancel an open task."""
        with self._unit() as unit:
            cancelled = cancel_task(unit.tasks.get(task_id), at=self.clock.now())
            return unit.tasks.update(cancelled)

    def follow_ups(
        self, *, within: timedelta = timedelta(days=1), assignee: str | None = None
    ) -> FollowUps:
        """The follow-up dashboard: open tasks overdue and due within ``within``
        (of one ``assignee``, if given)."""
        now = self.clock.now()
        if not isinstance(within, timedelta) or within < timedelta(0):
            raise ValidationError("within", within, "expected a timedelta >= 0")
        try:
            until = now + within
        except OverflowError:
            until = datetime.max.replace(tzinfo=UTC)
        with self.store.unit_of_work() as unit:
            tasks = unit.tasks.select(status=TaskStatus.OPEN, assignee=assignee, due_until=until)
        return follow_ups(tasks, now=now, within=within)

    def schedule_check_ins(self, plan: CheckInPlan) -> list[Task]:
        """Create the recurring check-in tasks ``plan`` asks for; returns the new tasks."""
        if not isinstance(plan, CheckInPlan):
            raise ValidationError("plan", plan, "expected a CheckInPlan")
        stages = sorted(s.value for s in plan.stages)
        with self._unit() as unit:
            customers = list(
                unit.contacts.iterate(contacts_where(field("lifecycle_stage").is_in(*stages)))
            )
            tasks = unit.tasks.select(kind=TaskKind.CHECK_IN)
            made = check_ins_due(customers, tasks, plan, now=self.clock.now())
            unit.tasks.add_many(made)
        return made

    # ------------------------------------------------------------------ one view

    def timeline(self, contact_id: UUID) -> list[TimelineEntry]:
        """Everything about one contact, oldest first: activities, stage changes (of the
        contact, its leads, deals and tickets), deals, tickets and tasks."""
        with self.store.unit_of_work() as unit:
            contact = unit.contacts.get(contact_id)
            leads = list(unit.leads.iterate(leads_where(field("contact_id") == contact.id)))
            deals = list(unit.deals.iterate(deals_where(field("contact_id") == contact.id)))
            tickets = list(unit.tickets.iterate(tickets_where(field("contact_id") == contact.id)))
            changes = unit.stage_history.for_subject(SubjectKind.CONTACT, contact.id)
            for kind, items in (
                (SubjectKind.LEAD, leads),
                (SubjectKind.DEAL, deals),
                (SubjectKind.TICKET, tickets),
            ):
                if items:
                    changes.extend(unit.stage_history.for_subjects(kind, [i.id for i in items]))
            tasks = unit.tasks.select(contact_id=contact.id)
            return timeline(
                activities=unit.activities.for_contact(contact.id),
                stage_changes=changes,
                deals=deals,
                tickets=tickets,
                tasks=tasks,
            )

    def customers(self) -> list[Contact]:
        """Every contact in stage customer or evangelist."""
        stages = (LifecycleStage.CUSTOMER.value, LifecycleStage.EVANGELIST.value)
        with self.store.unit_of_work() as unit:
            return list(
                unit.contacts.iterate(contacts_where(field("lifecycle_stage").is_in(*stages)))
            )

    # ------------------------------------------------------------------ leads, in bulk

    def update_lead(self, lead_id: UUID, /, *, version: int | None = None, **changes: Any) -> Lead:
        """Change a lead's ``source``, ``channel``, ``owner`` or ``custom`` fields (custom
        fields are added to and replaced, as in :meth:`update_deal`); what is not given
        stays as it is. Status, score, pipeline and stage change through the lead's use
        cases, and naming them here raises :class:`~crmkit.errors.ValidationError`.

        A converted, disqualified or won lead is a record: a change raises
        :class:`~crmkit.errors.ClosedRecord`. ``version`` is the version the change was
        based on (see :meth:`update_deal`).
        """
        fields = _editable(Lead, changes)
        with self._unit() as unit:
            lead = self._refuse_closed_lead(self._expect(unit.leads.get(lead_id), version))
            if not fields:
                return lead
            updated = self._evolve(lead, fields)
            if lead.pipeline is not None and lead.pipeline in self._machines:
                self._lead_machine(lead).check_update(lead, updated)
            return unit.leads.update(updated)

    def rescore_leads(self, lead_ids: Iterable[UUID]) -> list[tuple[Qualified, ScoreCard]]:
        """Rescore many leads in one call and one unit of work, as :meth:`rescore_lead`
        does each: its own score card, its stored score and its contact's move to MQL
        (with history) when it reaches the threshold.

        Returns the outcomes in the order of ``lead_ids``. Every id must name a stored,
        open lead, each once; otherwise nothing is stored (:class:`~crmkit.errors.NotFound`,
        :class:`~crmkit.errors.ClosedRecord`, :class:`~crmkit.errors.ValidationError`).
        """
        model = self.scoring
        if model is None:
            raise ValidationError("scoring", None, "this CRM has no scoring model")
        given: object = lead_ids
        if isinstance(given, str | bytes) or not isinstance(given, Iterable):
            raise ValidationError("lead_ids", lead_ids, "expected a collection of lead ids")
        ids: list[UUID] = []
        for index, lead_id in enumerate(lead_ids):
            if not isinstance(lead_id, UUID):
                raise ValidationError(f"lead_ids[{index}]", lead_id, "expected a UUID")
            if lead_id in ids:
                raise ValidationError(f"lead_ids[{index}]", lead_id, "is listed twice")
            ids.append(lead_id)
        threshold = self.mql_threshold if model.mql_at is None else model.mql_at
        results: list[tuple[Qualified, ScoreCard]] = []
        with self._unit() as unit:
            leads = unit.leads.get_many(ids)
            for lead_id in ids:
                if lead_id not in leads:
                    raise NotFound("lead", lead_id)
                self._refuse_closed_lead(leads[lead_id])
            contacts = dict(unit.contacts.get_many({lead.contact_id for lead in leads.values()}))
            context = Context(
                now=self.clock.now(),
                activities={c: unit.activities.for_contact(c) for c in contacts},
                segments=_segments_named(unit, [c.rule for c in model.criteria]),
            )
            for lead_id in ids:
                lead = leads[lead_id]
                contact = contacts.get(lead.contact_id)
                if contact is None:
                    raise NotFound("contact", lead.contact_id)
                card = score(model, lead, context, contact=contact)
                qualified = score_lead(
                    lead, contact, card.total, threshold=threshold, at=context.now
                )
                stored = unit.leads.update(qualified.lead)
                moved = self._stored_move(unit, qualified.contact)
                if moved is not None:  # the next lead of this contact sees it moved
                    contacts[contact.id] = moved.entity
                results.append((Qualified(stored, moved), card))
        return results

    # ------------------------------------------------------------------ data quality

    def find_duplicates(
        self, candidate: Contact | Account, /, *, model: DuplicateModel | None = None
    ) -> list[DuplicatePair]:
        """The stored contacts (or accounts) that ``candidate`` may duplicate, most likely
        first: call it before :meth:`create_contact`.

        The store is asked for the entities that share a blocking key of ``model`` (the
        default model of the candidate's entity, :func:`crmkit.quality.default_model`)
        with the candidate, by index (no scan, at most ``spec.max_candidates`` per key); each is
        scored, and those at or above the review threshold come back, each pair
        explaining itself (``left`` is the candidate's id). A model must block on keys
        the store indexes (:data:`crmkit.quality.CONTACT_KEYS`, ``ACCOUNT_KEYS``).
        """
        if not isinstance(candidate, Contact | Account):
            raise ValidationError("candidate", candidate, "expected a Contact or an Account")
        entity = type(candidate)
        model = _model_of(model, entity)
        indexed = ACCOUNT_KEYS if entity is Account else CONTACT_KEYS
        unknown = [k.name for k in model.spec.blocking if k not in indexed]
        if unknown:
            raise ValidationError(
                "model",
                unknown,
                "find_duplicates blocks on the keys every store indexes "
                f"({', '.join(k.name for k in indexed)}); use them, or duplicate_pairs",
            )
        keys = match_keys(candidate, model.spec.blocking)
        if not keys:
            return []
        with self._unit() as unit:
            repository = unit.accounts if entity is Account else unit.contacts
            found = repository.with_match_keys(keys, limit=model.spec.max_candidates)
        return model.duplicates_of(candidate, found)

    def duplicate_pairs(
        self,
        entity: type[Contact] | type[Account] = Contact,
        /,
        *,
        spec: DuplicateSpec | None = None,
        weights: Weights | None = None,
    ) -> BatchResult:
        """The duplicate pairs among all stored contacts (or accounts), for a batch
        review: :func:`crmkit.quality.duplicate_pairs` over the store's entities, read a
        batch at a time in one unit of work.

        ``spec`` defaults to the entity's default specification; without ``weights`` they
        are estimated from the data by EM (no labels needed; a store with fewer than two
        candidate pairs raises :class:`~crmkit.errors.ValidationError`, field
        ``records``: pass weights, such as :data:`crmkit.quality.CONTACT_WEIGHTS`).
        """
        if entity is not Contact and entity is not Account:
            raise ValidationError("entity", entity, "expected Contact or Account")
        if spec is None:
            spec = default_model(entity).spec
        if not isinstance(spec, DuplicateSpec):
            raise ValidationError("spec", spec, "expected a DuplicateSpec")
        if weights is not None and not isinstance(weights, Weights):
            raise ValidationError("weights", weights, "expected Weights")
        with self._unit() as unit:
            repository = unit.accounts if entity is Account else unit.contacts
            records: list[Contact | Account] = list(repository.iterate())
        return _duplicate_pairs(records, spec, weights=weights)

    def audit(self, *, stale_after_days: int = 180, sample: int | None = None) -> AuditReport:
        """How complete and current the data is, at the CRM clock's now.

        Fill rates per field of contacts and accounts, stale contacts (created more than
        ``stale_after_days`` days ago, without an activity since then), unreachable
        contacts (no e-mail and no phone, or do-not-contact) are counted by the store; the
        invalid values (:func:`crmkit.quality.invalid_values`) need the values and are
        checked a batch at a time: of every contact and account, or with ``sample`` of the
        first ``sample`` of each by id (ids are random, so a uniform sample), which
        bounds the time a large store takes.
        """
        if sample is not None and (
            isinstance(sample, bool) or not isinstance(sample, int) or sample < 1
        ):
            raise ValidationError("sample", sample, "expected a whole number of records >= 1")
        if (
            isinstance(stale_after_days, bool)
            or not isinstance(stale_after_days, int)
            or not 1 <= stale_after_days <= 36_500
        ):
            raise ValidationError(
                "stale_after_days", stale_after_days, "expected a number of days from 1 to 36500"
            )
        now = self.clock.now()
        contact_rule = partial(Rule, RuleEntity.CONTACT)
        with self._unit() as unit:
            contacts = unit.contacts.count(now=now)
            fills = [
                FieldFill(
                    "contact",
                    name,
                    unit.contacts.count(contact_rule(IsNull(name, negated=True)), now=now),
                    contacts,
                )
                for name in _AUDITED_CONTACT_FIELDS
            ]
            accounts = unit.accounts.count(now=now)
            for name in _AUDITED_ACCOUNT_FIELDS:
                empty = unit.accounts.count_by(name, now=now).get(None, 0)
                fills.append(FieldFill("account", name, accounts - empty, accounts))
            quiet = [
                ActivityCondition(kind, Measure.COUNT, Op.EQ, 0, within_days=stale_after_days)
                for kind in ActivityKind
            ]
            old = RelativeDate("created_at", DateWindow.MORE_THAN_AGO, stale_after_days)
            stale = unit.contacts.count(contact_rule(And((old, *quiet))), now=now)
            unreachable = unit.contacts.count(
                contact_rule(
                    Or(
                        (
                            Compare("do_not_contact", Op.EQ, True),
                            And((IsNull("email"), IsNull("phone"))),
                        )
                    )
                ),
                now=now,
            )
            checked: list[Iterable[Contact | Account]] = [
                repository.iterate(now=now)
                if sample is None
                else repository.find(order=Order("id"), limit=sample, now=now).items
                for repository in (unit.contacts, unit.accounts)
            ]
            invalid = [
                found for items in checked for item in items for found in invalid_values(item)
            ]
        return AuditReport(
            at=now,
            contacts=contacts,
            accounts=accounts,
            fills=tuple(fills),
            invalid=tuple(invalid),
            stale_after_days=stale_after_days,
            stale=stale,
            unreachable=unreachable,
        )

    # ------------------------------------------------------------------ contacts, accounts

    def create_contact(self, contact: Contact) -> Contact:
        """Store a new contact (made with :meth:`Contact.new <crmkit.models.Contact.new>`
        or :func:`~crmkit.serialization.structure_new`); its account must exist."""
        if not isinstance(contact, Contact):
            raise ValidationError("contact", contact, "expected a Contact")
        with self._unit() as unit:
            if contact.account_id is not None:
                unit.accounts.get(contact.account_id)  # NotFound for an unknown account
            self._refuse_suppressed(unit, contact.email, contact.phone)
            return unit.contacts.add(contact)

    def import_contacts(self, contacts: Iterable[Contact], /) -> int:
        """Store many new contacts, all or none (as ``add_many``); returns how many.

        A contact of a person who asked to be forgotten refuses the whole import with
        :class:`~crmkit.errors.Suppressed` (its field says which identifier matched),
        and a wrong item with a :class:`~crmkit.errors.ValidationError` naming its
        index; nothing is stored then. Two items with one address (compared without
        case, as the store compares them) raise :class:`~crmkit.errors.Duplicate` naming
        both (``index`` and ``other_index``); drop or merge one and import again. Empty
        strings are not read as missing values: :meth:`Contact.new
        <crmkit.models.Contact.new>` refuses an empty or blank field, naming it, so map
        a CSV's empty cells to ``None`` when you build the contacts.
        """
        if isinstance(contacts, str | bytes | Mapping) or not isinstance(contacts, Iterable):
            raise ValidationError("contacts", contacts, "expected a collection of Contacts")
        items = list(contacts)
        for index, contact in enumerate(items):
            if not isinstance(contact, Contact):
                raise ValidationError(f"[{index}]", contact, "expected a Contact")
        try:
            with self._unit() as unit:
                # Checked before the store reads the items: a bulk add may stream them
                # (COPY on PostgreSQL), and no other query can run on its connection.
                for contact in items:
                    self._refuse_suppressed(unit, contact.email, contact.phone)
                return unit.contacts.add_many(items)
        except Duplicate as clash:
            raise _within_batch(clash, items) from None

    def update_contact(
        self,
        contact_id: UUID,
        /,
        *,
        version: int | None = None,
        by: str | None = None,
        **changes: Any,
    ) -> Contact:
        """Change a contact's fields; what is not given stays as it is, ``None`` clears
        an optional field.

        ``phone`` is read as :meth:`Contact.new <crmkit.models.Contact.new>` reads it
        (national numbers in the contact's country); ``custom`` fields are added to and
        replaced; ``account_id`` must name a stored account. The lifecycle stage changes
        through :meth:`advance_contact` and :meth:`reset_contact`; ``id``, ``version`` and
        the timestamps are crmkit's. ``version`` is the version the change was based on:
        another version stored raises :class:`~crmkit.errors.ConcurrencyConflict`. The
        change is one unit of work; the stored version goes up by one and
        ``updated_at`` is the CRM clock's now. The audit trail records each changed
        field, with ``by`` (who changes it) when given. A new e-mail address or phone
        number of a person who asked to be forgotten raises
        :class:`~crmkit.errors.Suppressed`.
        """
        fields = _editable(Contact, changes)
        with self._unit(by) as unit:
            contact = self._expect(unit.contacts.get(contact_id), version)
            refuse_erased(unit, contact.id)
            if not fields:
                return contact
            phone = fields.get("phone")
            if isinstance(phone, str) and not isinstance(phone, PhoneNumber):
                fields["phone"] = _phone(phone, fields.get("country", contact.country))
            account_id = fields.get("account_id")
            if account_id is not None:
                if not isinstance(account_id, UUID):
                    raise ValidationError("account_id", account_id, "expected a UUID")
                unit.accounts.get(account_id)
            updated = self._evolve(contact, fields)
            self._refuse_suppressed(
                unit,
                None if updated.email == contact.email else updated.email,
                None if updated.phone == contact.phone else updated.phone,
            )
            return unit.contacts.update(updated)

    def delete_contact(
        self, contact_id: UUID, /, *, version: int | None = None, cascade: bool = False
    ) -> None:
        """Delete a contact, its own stage history, its audit trail, the records of
        merges into it (with the history and audit trail of the contacts merged) and
        its places in static segments; its rows in an account merge are anonymised.

        Refused with :class:`~crmkit.errors.StillReferenced` while leads, deals, tickets,
        activities, tasks or consents refer to it, unless ``cascade=True``: then those
        are deleted first, in the same unit of work (with their history, and the tasks of
        the deleted deals and tickets).
        """
        with self._unit() as unit:
            contact = self._expect(unit.contacts.get(contact_id), version)
            if not isinstance(cascade, bool):
                raise ValidationError("cascade", cascade, "expected True or False")
            if cascade:
                self._cascade(unit, "contact", contact.id)
            self._delete_contact(unit, contact)  # the store refuses it while referred to

    def create_account(self, account: Account) -> Account:
        """Store a new account (an organisation contacts belong to)."""
        if not isinstance(account, Account):
            raise ValidationError("account", account, "expected an Account")
        with self._unit() as unit:
            return unit.accounts.add(account)

    def update_account(
        self, account_id: UUID, /, *, version: int | None = None, **changes: Any
    ) -> Account:
        """Change an account's fields, as :meth:`update_contact` changes a contact's."""
        fields = _editable(Account, changes)
        with self._unit() as unit:
            account = self._expect(unit.accounts.get(account_id), version)
            if not fields:
                return account
            return unit.accounts.update(self._evolve(account, fields))

    def delete_account(
        self, account_id: UUID, /, *, version: int | None = None, cascade: bool = False
    ) -> None:
        """Delete an account. Refused with :class:`~crmkit.errors.StillReferenced` while
        contacts, deals or tickets refer to it, unless ``cascade=True``: then its contacts
        (each as :meth:`delete_contact` with ``cascade=True``), deals and tickets are
        deleted first, in the same unit of work."""
        with self._unit() as unit:
            account = self._expect(unit.accounts.get(account_id), version)
            if not isinstance(cascade, bool):
                raise ValidationError("cascade", cascade, "expected True or False")
            if cascade:
                self._cascade(unit, "account", account.id)
            unit.accounts.delete(account.id, version=account.version)  # or StillReferenced

    # ------------------------------------------------------------------ merge, unmerge

    def merge_contacts(
        self,
        survivor_id: UUID,
        others: Iterable[UUID],
        /,
        *,
        policy: MergePolicy | None = None,
        versions: Mapping[UUID, int] | None = None,
        dry_run: bool = False,
        by: str | None = None,
    ) -> MergePlan[Contact]:
        """Merge the contacts ``others`` into the contact ``survivor_id``, in one unit of
        work, and store the :class:`~crmkit.quality.MergeRecord` that :meth:`unmerge`
        undoes; with ``dry_run=True`` write nothing and return the same plan.

        ``policy`` (default ``MergePolicy.of(Contact)``) merges the fields; every lead,
        deal, ticket, activity, task, consent, stage change and static segment place of
        the others moves to the survivor; a withdrawn consent of any of them stays
        withdrawn (:func:`~crmkit.quality.restrictive_consents`); ``do_not_contact`` is
        kept if any has it. The others are deleted: their e-mail addresses lead to the
        survivor in :meth:`find_contact` and :meth:`capture_lead`. ``versions`` (id ->
        version, as a dry run showed them) makes the merge refuse with
        :class:`~crmkit.errors.ConcurrencyConflict` if one changed since, as it does if
        a record changes while it runs. A record merged already raises
        :class:`~crmkit.errors.AlreadyMerged`; the survivor among the others, an id
        given twice, or a policy of accounts, :class:`~crmkit.errors.ValidationError`.
        Whatever fails changes nothing.
        """
        return self._merge(
            MergeKind.CONTACT,
            survivor_id,
            others,
            policy=policy,
            versions=versions,
            dry_run=dry_run,
            by=by,
        )

    def merge_accounts(
        self,
        survivor_id: UUID,
        others: Iterable[UUID],
        /,
        *,
        policy: MergePolicy | None = None,
        versions: Mapping[UUID, int] | None = None,
        dry_run: bool = False,
        by: str | None = None,
    ) -> MergePlan[Account]:
        """Merge accounts as :meth:`merge_contacts` merges contacts: their contacts,
        deals and tickets move to the survivor."""
        return self._merge(
            MergeKind.ACCOUNT,
            survivor_id,
            others,
            policy=policy,
            versions=versions,
            dry_run=dry_run,
            by=by,
        )

    def _merge(
        self,
        kind: MergeKind,
        survivor_id: UUID,
        others: Iterable[UUID],
        *,
        policy: MergePolicy | None,
        versions: Mapping[UUID, int] | None,
        dry_run: bool,
        by: str | None,
    ) -> MergePlan[Any]:
        if not isinstance(dry_run, bool):
            raise ValidationError("dry_run", dry_run, "expected True or False")
        if by is not None and not isinstance(by, str):
            raise ValidationError("by", by, "expected a user name or None")
        if policy is None:
            policy = MergePolicy.of(Contact if kind is MergeKind.CONTACT else Account)
        now = self.clock.now()
        with self._unit(audits=False) as unit:
            plan, writes = _merge.plan_merge(
                unit,
                kind=kind,
                survivor_id=survivor_id,
                other_ids=others,
                policy=policy,
                versions=versions,
                at=now,
            )
            if kind is MergeKind.CONTACT:  # a tombstone takes no one's personal data
                for record in (plan.survivor, *plan.merged):
                    refuse_erased(unit, record.id)
            if dry_run:
                return plan
            survivor = _merge.repository(unit, kind).get(plan.survivor.id)
            done = _merge.apply_merge(
                unit, plan=plan, writes=writes, survivor_before=survivor, at=now, by=by
            )
            unit.commit()
            return done

    def unmerge(self, merge_id: UUID, /) -> MergeRecord:
        """Undo a merge exactly: the merged records come back, every moved reference
        and every survivor field is as it was (versions included), the rows the merge
        added go, and so does its record; returns the record.

        Refused with :class:`~crmkit.errors.UnmergeConflict`, changing nothing, when a
        row the merge wrote has changed since (a later edit of the survivor, of a moved
        lead, a later merge): undoing would lose that edit. The error names each row.
        Refused with :class:`~crmkit.errors.Erased` when a person whose data the merge
        record held was erased since (erasure anonymised the record: undoing it would
        bring back no one, and never the erased data).
        """
        with self._unit() as unit:
            return _merge.unmerge(unit, merge_id)

    def merges_of(self, record_id: UUID, /) -> list[MergeRecord]:
        """The merges that removed the contact or account ``record_id``, oldest first."""
        with self.store.unit_of_work() as unit:
            return unit.merges.merging(record_id)

    def _evolve(self, item: _E, fields: Mapping[str, Any]) -> _E:
        """``item`` with ``fields`` changed (custom fields merged), stamped now."""
        changes = dict(fields)
        custom = changes.get("custom")
        if custom is not None:
            if not isinstance(custom, Mapping):
                raise ValidationError("custom", custom, "expected a mapping")
            changes["custom"] = {**item.custom, **custom}  # type: ignore[attr-defined]
        return attrs.evolve(item, **changes, updated_at=self.clock.now())

    def _referrers(
        self, unit: UnitOfWork, kind: str, id: UUID, *, first: bool
    ) -> list[tuple[str, list[Entity]]]:
        """The entities that refer to ``kind`` ``id``, by entity name (only the first of
        each when ``first``): what a cascade deletes."""
        limit = 1 if first else None
        by = field(f"{kind}_id") == id
        if kind == "account":
            ruled: list[tuple[str, Repository[Any], Any]] = [
                ("contact", unit.contacts, contacts_where(by)),
                ("deal", unit.deals, deals_where(by)),
                ("ticket", unit.tickets, tickets_where(by)),
            ]
        else:
            ruled = [
                ("lead", unit.leads, leads_where(by)),
                ("deal", unit.deals, deals_where(by)),
                ("ticket", unit.tickets, tickets_where(by)),
            ]
        found: list[tuple[str, list[Entity]]] = [
            (name, list(repository.find(rule, limit=limit).items))
            for name, repository, rule in ruled
        ]
        if kind != "account":
            found.append(("activity", list(unit.activities.for_contact(id))))
            found.append(("task", list[Entity](unit.tasks.select(contact_id=id))))
            found.append(("consent", list[Entity](unit.consents.for_contact(id))))
            found.append(("do_not_contact", list[Entity](unit.do_not_contact.for_contact(id))))
        return [(name, items) for name, items in found if items]

    def _cascade(self, unit: UnitOfWork, kind: str, id: UUID) -> None:
        """Delete what refers to ``kind`` ``id`` (see :meth:`delete_contact`)."""
        referrers = dict(self._referrers(unit, kind, id, first=False))
        for contact in referrers.get("contact", []):
            self._cascade(unit, "contact", contact.id)
            self._delete_contact(unit, cast(Contact, contact))
        deals = {d.id for d in self._fresh(unit, "deal", referrers)}
        tickets = {t.id for t in self._fresh(unit, "ticket", referrers)}
        doomed = {t.id: t for t in referrers.get("task", [])}
        for deal_id in deals:
            doomed.update((t.id, t) for t in unit.tasks.select(deal_id=deal_id))
        for ticket_id in tickets:
            doomed.update((t.id, t) for t in unit.tasks.select(ticket_id=ticket_id))
        for task_id in sorted(doomed):
            unit.tasks.delete(task_id)
        for activity in referrers.get("activity", []):
            unit.activities.delete(activity.id)
        for consent in referrers.get("consent", []):
            unit.consents.delete(consent.id)
        for block in referrers.get("do_not_contact", []):
            unit.do_not_contact.delete(block.id)
        leads = [cast(Lead, lead) for lead in referrers.get("lead", [])]
        for lead in leads:  # a lead and its deal refer to each other: cut one link first
            if lead.deal_id is not None:
                unit.leads.update(attrs.evolve(lead, deal_id=None))
        for subject, ids, repository in (
            (SubjectKind.TICKET, tickets, cast(Repository[Any], unit.tickets)),
            (SubjectKind.DEAL, deals, cast(Repository[Any], unit.deals)),
            (SubjectKind.LEAD, {lead.id for lead in leads}, cast(Repository[Any], unit.leads)),
        ):
            for item_id in sorted(ids):
                delete_history(unit, subject, item_id)
                repository.delete(item_id)

    @staticmethod
    def _fresh(unit: UnitOfWork, name: str, referrers: Mapping[str, list[Entity]]) -> list[Entity]:
        """The referrers called ``name`` that are still stored (a contact's cascade may
        have deleted an account's deal already)."""
        items = referrers.get(name, [])
        repository: Repository[Any] = unit.deals if name == "deal" else unit.tickets
        stored = repository.get_many([item.id for item in items])
        return [item for item in items if item.id in stored]

    def _delete_contact(self, unit: UnitOfWork, contact: Contact) -> None:
        """Delete ``contact`` with what is its own: its stage history, its audit trail,
        the records of merges into it (anonymised where they hold others' data too) and
        its places in static segments (the segments stay, without it)."""
        now = self.clock.now()
        delete_history(unit, SubjectKind.CONTACT, contact.id)
        forget_merges(unit, contact, now)
        for segment in list(unit.segments.iterate()):
            if contact.id in segment.members:
                left = attrs.evolve(segment, members=segment.members - {contact.id}, updated_at=now)
                unit.segments.update(left)
        unit.contacts.delete(contact.id, version=contact.version)

    # ------------------------------------------------------------------ KPIs: funnel,
    # pipeline KPIs, forecast (issue 13 parts 1-3; the code is in crmkit.crm._kpis)

    def funnel(
        self,
        pipeline: str | None = None,
        *,
        by: str | None = None,
        created: Sequence[Period] = (),
        segments: Sequence[Segment] = (),
        rule: Rule | None = None,
        at: datetime | None = None,
        times: bool = True,
    ) -> Funnel:
        """The funnel of the contact lifecycle (``pipeline`` ``None``) or of a lead or
        deal pipeline as of ``at`` (default: now), counted by the store.

        Cohorts: one per value of the subject's field ``by`` (owner, source, channel,
        ...; ``(none)`` for subjects without one), one per creation period of
        ``created`` (contacts created in March), one per contact segment of
        ``segments``, or one (``all``); ``rule`` narrows every cohort. A pipeline's
        steps are its open stages, then its won stages. With ``times``, the median and
        p90 time between stages are measured from the cohort's history, read a thousand
        subjects at a time (cohorts of ``by`` give counts only); ``times=False`` asks
        the store for counts alone.
        """
        return _kpis.funnel(
            self.store,
            self.pipelines,
            self.clock.now(),
            pipeline,
            by=by,
            created=created,
            segments=segments,
            rule=rule,
            at=at,
            times=times,
        )

    def pipeline_kpis(
        self,
        pipeline: str | None = None,
        *,
        periods: Sequence[Period],
        by: str | None = None,
        rule: Rule | None = None,
        at: datetime | None = None,
        quota: Money | None = None,
        rates: Mapping[str, Decimal] | None = None,
        currency: str | None = None,
    ) -> PipelineKpis:
        """Win rate, deal size, cycle length, lost reasons, open and weighted pipeline,
        velocity, coverage (against ``quota``) and new revenue of the deals of
        ``pipeline`` (all deal pipelines when ``None``) per period, per value of the deal
        field ``by`` (owner, pipeline, ...) and per currency, as of ``at``: replayed
        from the stage history's snapshots. ``rates`` (units of ``currency`` per unit of
        another) converts every amount into ``currency``; without them amounts in
        different currencies are never added."""
        return _kpis.pipeline_kpis(
            self.store,
            self.pipelines,
            self.clock.now(),
            pipeline,
            periods=periods,
            by=by,
            rule=rule,
            at=at,
            quota=quota,
            rates=rates,
            currency=currency,
        )

    def forecast(
        self,
        pipeline: str,
        *,
        periods: Sequence[Period],
        at: datetime | None = None,
        categories: Mapping[str, ForecastCategory] | None = None,
        rates: Mapping[str, Decimal] | None = None,
        currency: str | None = None,
        scorer: Predictor | None = None,
    ) -> Forecast:
        """The forecast of a deal pipeline per period as of ``at``: closed (won within
        the period), commit, best case, pipeline and omitted (open deals expected to
        close within it, by category: a deal's own ``forecast_category`` (see
        :meth:`set_forecast_category`) first, then ``categories`` maps open stages, else
        the stage's probability decides), and the expected revenue from stage
        probabilities, or with ``scorer`` (a fitted
        :class:`~crmkit.scoring.LogisticScorer` or
        :class:`~crmkit.scoring.NaiveBayesScorer`, trained on
        :func:`~crmkit.scoring.deal_examples`) from the probability it gives each open
        deal's :func:`~crmkit.scoring.deal_record` (the deal as stored now).
        ``categories`` values are :class:`~crmkit.models.ForecastCategory` members
        or their values (``"commit"``); a key that is no open stage of the pipeline (a
        typo, a won or lost stage) raises :class:`~crmkit.errors.ValidationError`
        naming ``categories['key']``."""
        return _kpis.forecast(
            self.store,
            self.pipelines,
            self.clock.now(),
            pipeline,
            periods=periods,
            at=at,
            categories=categories,
            rates=rates,
            currency=currency,
            scorer=scorer,
        )

    def set_forecast_category(
        self,
        deal_id: UUID,
        category: ForecastCategory | None,
        /,
        *,
        version: int | None = None,
        by: str | None = None,
    ) -> Deal:
        """Put an open deal in a forecast ``category`` whatever its stage (Salesforce's
        per-opportunity override), or back to its stage's category with ``None``.
        ``version`` and ``by`` as in :meth:`update_deal`; a closed deal raises
        :class:`~crmkit.errors.ClosedRecord`."""
        if category is not None:
            category = member_of(ForecastCategory, category, "category")
        with self._unit(by) as unit:
            deal = self._expect(unit.deals.get(deal_id), version)
            if deal.forecast_category is category:
                return self._check_deal_update(deal, deal)
            changed = attrs.evolve(deal, forecast_category=category, updated_at=self.clock.now())
            return unit.deals.update(self._check_deal_update(deal, changed))

    def forecast_backtest(
        self,
        pipeline: str,
        *,
        periods: Sequence[Period],
        at: datetime | None = None,
        rates: Mapping[str, Decimal] | None = None,
        currency: str | None = None,
    ) -> Backtest:
        """Replay the forecast of a deal pipeline as of each period's start and score it
        by the period's end: Brier score and reliability table of the stage
        probabilities, and the expected revenue against what was actually won."""
        return _kpis.backtest(
            self.store,
            self.pipelines,
            self.clock.now(),
            pipeline,
            periods=periods,
            at=at,
            rates=rates,
            currency=currency,
        )

    # ------------------------------------------------------------------ analytics:
    # customers, service and customer lifetime value (issue 13, parts 4 to 6)

    def purchases(self) -> list[Transaction]:
        """Every stored purchase activity up to now, as CLV and revenue transactions."""
        until = self.clock.now() + timedelta(microseconds=1)  # up to now, inclusive
        with self.store.unit_of_work() as unit:  # the store reads the purchases' amounts
            return unit.activities.purchases(until=until)

    def customer_report(
        self,
        *,
        start: datetime,
        end: datetime,
        granularity: Granularity = Granularity.MONTH,
        tz: tzinfo = UTC,
        inactive_after: timedelta | None = None,
        revenue_from: str = "purchases",
    ) -> CustomerReport:
        """New and churned customers, churn rate, cohort retention and revenue movement per
        period from ``start`` to ``end`` (exclusive) on the calendar of ``tz``.

        A customer churns by lifecycle (``inactive_after=None``: leaving the customer and
        evangelist stages; a contact imported at those stages is a customer since its
        creation) or by inactivity: ``inactive_after`` after the last purchase before
        a longer gap (a purchase after the gap makes it a customer again, counted as
        new: a reactivation). Revenue comes from purchase
        activities (``revenue_from="purchases"``) or won deals (``"deals"``: by account,
        else contact), per currency.
        """
        if revenue_from not in ("purchases", "deals"):
            raise ValidationError("revenue_from", revenue_from, "expected purchases or deals")
        if inactive_after is not None and (
            not isinstance(inactive_after, timedelta) or inactive_after <= timedelta(0)
        ):
            raise ValidationError("inactive_after", inactive_after, "expected a positive timedelta")
        now = self.clock.now()
        needs_purchases = revenue_from == "purchases" or inactive_after is not None
        bought = self.purchases() if needs_purchases else []
        with self.store.unit_of_work() as unit:
            if revenue_from == "deals":
                won = deals_where(field("status") == DealStatus.WON.value)
                revenue = transactions_from_deals(unit.deals.iterate(won))
            else:
                revenue = bought
            if inactive_after is None:
                spans = self._lifecycle_spans(unit)
            else:
                spans = spans_from_purchases(bought, inactive_after=inactive_after, now=now)
        return CustomerReport(
            flows=customer_flows(spans, start=start, end=end, granularity=granularity, tz=tz),
            retention=retention_matrix(spans, start=start, end=end, granularity=granularity, tz=tz),
            revenue=revenue_report(revenue, start=start, end=end, granularity=granularity, tz=tz),
        )

    @staticmethod
    def _lifecycle_spans(unit: UnitOfWork) -> list[CustomerSpan]:
        # one row per customer, grouped by the store (never every stage change)
        return unit.stage_history.customer_spans()

    def service_report(
        self,
        *,
        start: datetime,
        end: datetime,
        granularity: Granularity = Granularity.MONTH,
        tz: tzinfo = UTC,
    ) -> ServiceReport:
        """CSAT per period and agent of the tickets solved from ``start`` to ``end``
        (exclusive), and first-response and resolution times and SLA compliance per
        policy and target of the tickets created in that window, their SLA clocks read
        now.

        A rating belongs to the period in which its ticket was (last) solved, whatever
        the ticket's creation: a ticket created on 28 February and solved and rated on
        1 March counts in March, so monthly reports add up to the quarter's. The solve
        time comes from the ticket's stage history and stays put when the ticket is
        closed or touched later."""
        first = ensure_utc(start, "start")
        last = ensure_utc(end, "end")
        now = self.clock.now()
        created = (field("created_at") >= first) & (field("created_at") < last)
        # a ticket solved in the window was created before its end and changed after its
        # start; its solve time is in its history
        rated = (
            field("csat").is_not_null()
            & (field("created_at") < last)
            & (field("updated_at") >= first)
        )
        with self.store.unit_of_work() as unit:
            reports = self._slas(unit, list(unit.tickets.iterate(tickets_where(created))), now)
            rated_tickets = [
                t for t in unit.tickets.iterate(tickets_where(rated)) if t.csat is not None
            ]
            solved_at = _solved_at(unit, rated_tickets)
            ratings = [
                Rating(solved, ticket.csat, ticket.assignee)
                for ticket in rated_tickets
                if ticket.csat is not None
                and (solved := solved_at[ticket.id]) is not None
                and first <= solved < last
            ]
        outcomes = [outcome for report in reports for outcome in _outcomes(report)]
        return ServiceReport(
            csat=csat_report(ratings, start=first, end=last, granularity=granularity, tz=tz),
            times=service_times(outcomes),
            compliance=sla_compliance(outcomes),
        )

    def clv_summary(
        self,
        *,
        calibration_end: datetime | None = None,
        unit: timedelta = timedelta(days=1),
        currency: str | None = None,
        rates: Mapping[str, Decimal] | None = None,
    ) -> RfmSummary:
        """The RFM summary of the stored purchases up to now, the input of
        :func:`crmkit.analytics.fit_bg_nbd` and :func:`crmkit.analytics.fit_gamma_gamma`;
        arguments as :func:`crmkit.analytics.rfm_summary`."""
        return rfm_summary(
            self.purchases(),
            observation_end=self.clock.now(),
            calibration_end=calibration_end,
            unit=unit,
            currency=currency,
            rates=rates,
        )


def _solved_at(unit: UnitOfWork, tickets: Sequence[Ticket]) -> dict[UUID, datetime | None]:
    """When each of ``tickets`` was last moved to solved, by id, from their histories
    read in one query (``None``: its history has no such move, as for a ticket stored
    solved by an import: then its ``updated_at`` if it is solved or closed)."""
    solved: dict[UUID, datetime] = {}
    for change in unit.stage_history.for_subjects(SubjectKind.TICKET, [t.id for t in tickets]):
        if change.to_stage == TicketStatus.SOLVED.value:
            solved[change.subject_id] = max(solved.get(change.subject_id, change.at), change.at)
    return {t.id: solved.get(t.id, t.updated_at if t.status in _DONE else None) for t in tickets}


_VERDICTS: Final = {
    SlaState.MET: SlaVerdict.MET,
    SlaState.BREACHED: SlaVerdict.BREACHED,
    SlaState.ACTIVE: SlaVerdict.RUNNING,
    SlaState.AT_RISK: SlaVerdict.RUNNING,
    SlaState.IDLE: SlaVerdict.IDLE,
}


def _outcomes(report: SlaReport) -> list[SlaOutcome]:
    """The timers of one SLA report as analytics outcomes (a timer with a breached cycle
    counts as breached)."""
    if report.policy is None:
        return []
    return [
        SlaOutcome(
            ticket=str(report.ticket_id),
            policy=report.policy,
            metric=timer.metric.value,
            target=timer.target,
            elapsed=timer.elapsed,
            stopped=timer.stopped_at is not None,
            verdict=SlaVerdict.BREACHED if timer.breaches else _VERDICTS[timer.state],
        )
        for timer in report.timers
    ]


def _editable(entity: type[Entity], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` if an update may make each of them, else every refusal at once."""
    allowed = _EDITABLE[entity]
    names = {a.name for a in attrs.fields(entity)}
    problems = []
    for name, value in changes.items():
        if name in allowed:
            continue
        if name in _READ_ONLY:
            reason = _READ_ONLY[name]
        elif name in names and name in _MANAGED:
            reason = _MANAGED[name]
        else:
            reason = f"a {entity.entity_name} has no field an update can set by this name"
        problems.append(Problem(name, value, reason))
    if problems:
        raise ValidationError.of(problems)
    return dict(changes)


def _phone(value: str, country: object) -> PhoneNumber:
    try:
        region = CountryCode(country) if isinstance(country, str) else None
    except ValidationError:
        region = None  # the contact's own check names the wrong country
    try:
        return PhoneNumber.parse(value, region)
    except ValidationError as error:
        raise error.within("phone") from None


def _summary(text: str) -> str:
    """The first non-blank line of ``text``, at most 200 characters (with an ellipsis)."""
    line = next(line.strip() for line in text.splitlines() if line.strip())
    return line if len(line) <= _SUMMARY else f"{line[: _SUMMARY - 1].rstrip()}\u2026"


def _segments_named(unit: UnitOfWork, rules: Iterable[Rule]) -> dict[UUID, Segment]:
    """The segments that ``rules`` name, and the segments their rules name in turn:
    read by id, a few at a time, not the whole table."""
    found: dict[UUID, Segment] = {}
    wanted = {n.segment_id for r in rules for n in r.walk() if isinstance(n, InSegment)}
    while wanted:
        batch = unit.segments.get_many(sorted(wanted))
        found.update(batch)
        wanted = {
            n.segment_id
            for s in batch.values()
            if s.rule is not None
            for n in s.rule.walk()
            if isinstance(n, InSegment)
        } - found.keys()
    return found
