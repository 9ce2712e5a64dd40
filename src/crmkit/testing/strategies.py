"""Hypothesis strategies for every crmkit model and value type.

Shipped in the wheel (extra ``test``) for crmkit's own tests and for host applications
and adapter authors::

    from hypothesis import given
    from crmkit.testing import strategies as cst

    @given(cst.contacts())
    def test_my_export_keeps_every_contact(contact): ...

Every strategy generates valid values only: they satisfy each field check and
cross-field invariant of the models (a closed deal has ``closed_at``, a done task has
``completed_at``, ...). Entity timestamps lie between 1970 and 2100, in UTC.
"""

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, cast
from uuid import UUID

import attrs

from crmkit.automation import EVENT_TYPES, Event
from crmkit.errors import MissingExtra
from crmkit.models.rules import (
    ACTIVITY_FIELDS,
    FIELDS,
    MESSAGE_KINDS,
    ActivityCondition,
    And,
    Between,
    Compare,
    Condition,
    DateWindow,
    FieldSpec,
    FieldType,
    HasTag,
    In,
    InSegment,
    IsNull,
    Measure,
    Not,
    Op,
    Or,
    Reachable,
    ReachCheck,
    RelativeDate,
    Rule,
    RuleEntity,
    TextMatch,
    TextOp,
    field_spec,
)

try:
    from hypothesis import strategies as st
except ImportError as _exc:  # pragma: no cover - exercised without the extra only
    raise MissingExtra("test", "hypothesis", "crmkit.testing.strategies") from _exc

from crmkit.models import (
    COUNTRIES,
    CURRENCIES,
    LANGUAGES,
    Account,
    Activity,
    ActivityKind,
    AuditAction,
    AuditEntry,
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    CountryCode,
    CustomFields,
    Deal,
    DealStatus,
    DoNotContact,
    DoNotContactReason,
    EmailAddress,
    Entity,
    Erasure,
    ForecastCategory,
    JSONScalar,
    LanguageCode,
    Lead,
    LeadChannel,
    LeadStatus,
    LegalBasis,
    LifecycleStage,
    Money,
    PhoneNumber,
    Segment,
    SegmentKind,
    StageChange,
    SubjectKind,
    Suppression,
    Task,
    TaskKind,
    TaskStatus,
    Ticket,
    TicketChannel,
    TicketPriority,
    TicketStatus,
    contact_point,
)

__all__ = [
    "COUNTRY_SAMPLE",
    "CUSTOM_KEYS",
    "EMAIL_SAMPLE",
    "LANGUAGE_SAMPLE",
    "PHONE_SAMPLE",
    "REACH_CHANNELS",
    "REACH_PURPOSES",
    "TAG_SAMPLE",
    "WORDS",
    "Ledgers",
    "accounts",
    "activities",
    "activity_indexes",
    "audit_entries",
    "aware_datetimes",
    "conditions",
    "consents",
    "contacts",
    "country_codes",
    "currencies",
    "custom_fields",
    "deals",
    "do_not_contacts",
    "emails",
    "entities",
    "erasures",
    "events",
    "for_type",
    "keys",
    "language_codes",
    "leads",
    "ledgers",
    "money",
    "phone_numbers",
    "reachable_atoms",
    "rule_contacts",
    "rules",
    "segments",
    "stage_changes",
    "suppressions",
    "tags",
    "tags_of_one",
    "tasks",
    "texts",
    "tickets",
    "users",
]

_E = TypeVar("_E", bound=Entity)
_MIN_TIME = datetime(1970, 1, 1)
_MAX_TIME = datetime(2100, 1, 1)

# ---------------------------------------------------------------------------- scalars


def aware_datetimes(
    min_value: datetime = _MIN_TIME, max_value: datetime = _MAX_TIME
) -> st.SearchStrategy[datetime]:
    """Aware datetimes in UTC between ``min_value`` and ``max_value`` (naive bounds)."""
    return st.datetimes(min_value=min_value, max_value=max_value, timezones=st.just(UTC))


def texts(max_size: int = 60) -> st.SearchStrategy[str]:
    """One-line text as the models store it: trimmed, non-empty, printable, no NUL."""
    alphabet = st.characters(codec="utf-8", exclude_categories=("C", "Zl", "Zp"))
    return (
        st.text(alphabet, min_size=1, max_size=max_size)
        .map(str.strip)
        .filter(lambda s: bool(s) and s.isprintable())
    )


def keys() -> st.SearchStrategy[str]:
    """Machine keys for pipelines, stages and consent purposes (``"sales"``, ``"won"``)."""
    return st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True)


def users() -> st.SearchStrategy[str]:
    """User ids of the host application, as owners, assignees and actors hold them."""
    return st.from_regex(r"user-[0-9]{1,4}", fullmatch=True)


# ---------------------------------------------------------------------------- value types

_ATOM = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}", fullmatch=True)
_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_TLD = st.sampled_from(["com", "org", "net", "de", "se", "co", "io", "shop", "xn--p1ai"])


@st.composite
def emails(draw: st.DrawFn) -> EmailAddress:
    """E-mail addresses: dot-atom local parts, host-name domains."""
    local = ".".join(draw(st.lists(_ATOM, min_size=1, max_size=3)))
    labels = draw(st.lists(_LABEL, min_size=1, max_size=3))
    return EmailAddress(f"{local}@{'.'.join([*labels, draw(_TLD)])}")


def phone_numbers() -> st.SearchStrategy[PhoneNumber]:
    """Numbers in E.164 form (accepted by the constructor's basic check)."""
    return st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True).map(PhoneNumber)


def country_codes() -> st.SearchStrategy[CountryCode]:
    return st.sampled_from(sorted(COUNTRIES)).map(CountryCode)


def language_codes() -> st.SearchStrategy[LanguageCode]:
    """ISO 639-1 languages, some with a region (``"de"``, ``"en-GB"``)."""
    bare = st.sampled_from(sorted(LANGUAGES))
    regional = st.tuples(bare, st.sampled_from(sorted(COUNTRIES))).map("-".join)
    return st.one_of(bare, regional).map(LanguageCode)


def currencies() -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(CURRENCIES))


@st.composite
def money(draw: st.DrawFn, currency: str | None = None, *, negative: bool = True) -> Money:
    """Amounts of up to 12 integer digits with the currency's minor units (or fewer).

    ``negative=False`` draws no amount below zero (deal amounts, revenue).
    """
    code = Money.zero(currency).currency if currency is not None else draw(currencies())
    places = draw(st.integers(0, CURRENCIES[code]))
    amount = draw(
        st.decimals(
            min_value=Decimal(-(10**12)) if negative else Decimal(0),
            max_value=Decimal(10**12),
            places=places,
            allow_nan=False,
            allow_infinity=False,
        )
    )
    return Money(amount, code)


def tags() -> st.SearchStrategy[frozenset[str]]:
    tag = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}(?: [A-Za-z0-9_-]{1,8})?", fullmatch=True)
    return st.frozensets(tag, max_size=4)


def _json_scalars() -> st.SearchStrategy[JSONScalar]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    )


def custom_fields() -> st.SearchStrategy[CustomFields]:
    names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
    return st.dictionaries(names, _json_scalars(), max_size=4).map(CustomFields)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _probabilities() -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=0, max_value=1, places=2)


# ---------------------------------------------------------------------------- entities


def _stamp(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(aware_datetimes())
    updated = created + draw(st.timedeltas(timedelta(0), timedelta(days=400)))
    return {
        "id": draw(st.uuids()),
        "version": draw(st.integers(1, 1000)),
        "created_at": created,
        "updated_at": updated,
    }


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    return Contact(
        **_stamp(draw),
        first_name=draw(_optional(texts(30))),
        last_name=draw(_optional(texts(30))),
        email=draw(_optional(emails())),
        phone=draw(_optional(phone_numbers())),
        country=draw(_optional(country_codes())),
        language=draw(_optional(language_codes())),
        account_id=draw(_optional(st.uuids())),
        lifecycle_stage=draw(st.sampled_from(LifecycleStage)),
        owner=draw(_optional(users())),
        do_not_contact=draw(st.booleans()),
        tags=draw(tags()),
        custom=draw(custom_fields()),
    )


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    domain = draw(_optional(emails()))
    return Account(
        **_stamp(draw),
        name=draw(texts()),
        domain=None if domain is None else domain.domain,
        country=draw(_optional(country_codes())),
        industry=draw(_optional(texts(30))),
        employees=draw(_optional(st.integers(0, 10**6))),
        annual_revenue=draw(_optional(money(negative=False))),
        owner=draw(_optional(users())),
        tags=draw(tags()),
        custom=draw(custom_fields()),
    )


@st.composite
def leads(draw: st.DrawFn) -> Lead:
    status = draw(st.sampled_from(LeadStatus))
    in_pipeline = draw(st.booleans())
    return Lead(
        **_stamp(draw),
        contact_id=draw(st.uuids()),
        source=draw(texts(30)),
        channel=draw(st.sampled_from(LeadChannel)),
        status=status,
        score=draw(_optional(st.floats(-1000, 1000, allow_nan=False))),
        owner=draw(_optional(users())),
        pipeline=draw(keys()) if in_pipeline else None,
        stage=draw(keys()) if in_pipeline else None,
        disqualified_reason=draw(texts()) if status is LeadStatus.DISQUALIFIED else None,
        deal_id=draw(_optional(st.uuids())),
        custom=draw(custom_fields()),
    )


@st.composite
def deals(draw: st.DrawFn) -> Deal:
    status = draw(st.sampled_from(DealStatus))
    closed = status is not DealStatus.OPEN
    return Deal(
        **_stamp(draw),
        title=draw(texts()),
        pipeline=draw(keys()),
        stage=draw(keys()),
        amount=draw(_optional(money(negative=False))),
        probability=draw(_probabilities()),
        probability_manual=draw(st.booleans()),
        status=status,
        contact_id=draw(_optional(st.uuids())),
        account_id=draw(_optional(st.uuids())),
        lead_id=draw(_optional(st.uuids())),
        expected_close=draw(_optional(st.dates(date(1970, 1, 1), date(2100, 1, 1)))),
        closed_at=draw(aware_datetimes()) if closed else None,
        lost_reason=draw(_optional(texts())) if status is DealStatus.LOST else None,
        owner=draw(_optional(users())),
        tags=draw(tags()),
        custom=draw(custom_fields()),
        forecast_category=draw(_optional(st.sampled_from(ForecastCategory))),
    )


@st.composite
def tickets(draw: st.DrawFn) -> Ticket:
    status = draw(st.sampled_from(TicketStatus))
    rated = status in (TicketStatus.SOLVED, TicketStatus.CLOSED)
    return Ticket(
        **_stamp(draw),
        subject=draw(texts()),
        contact_id=draw(st.uuids()),
        channel=draw(st.sampled_from(TicketChannel)),
        status=status,
        priority=draw(st.sampled_from(TicketPriority)),
        description=draw(_optional(texts(200))),
        account_id=draw(_optional(st.uuids())),
        assignee=draw(_optional(users())),
        csat=draw(_optional(st.integers(1, 5))) if rated else None,
        tags=draw(tags()),
        custom=draw(custom_fields()),
    )


@st.composite
def activities(draw: st.DrawFn) -> Activity:
    return Activity(
        **_stamp(draw),
        contact_id=draw(st.uuids()),
        kind=draw(st.sampled_from(ActivityKind)),
        occurred_at=draw(aware_datetimes()),
        subject=draw(_optional(texts())),
        amount=draw(_optional(money())),
        properties=draw(custom_fields()),
        deal_id=draw(_optional(st.uuids())),
        ticket_id=draw(_optional(st.uuids())),
        actor=draw(_optional(users())),
    )


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    status = draw(st.sampled_from(TaskStatus))
    due = draw(aware_datetimes())
    remind = draw(_optional(st.timedeltas(timedelta(0), timedelta(days=30))))
    return Task(
        **_stamp(draw),
        title=draw(texts()),
        due_at=due,
        kind=draw(st.sampled_from(TaskKind)),
        status=status,
        assignee=draw(_optional(users())),
        contact_id=draw(_optional(st.uuids())),
        deal_id=draw(_optional(st.uuids())),
        ticket_id=draw(_optional(st.uuids())),
        remind_at=None if remind is None else due - remind,
        completed_at=draw(aware_datetimes()) if status is TaskStatus.DONE else None,
        notes=draw(_optional(texts(200))),
    )


@st.composite
def segments(draw: st.DrawFn) -> Segment:
    kind = draw(st.sampled_from(SegmentKind))
    dynamic = kind is SegmentKind.DYNAMIC
    return Segment(
        **_stamp(draw),
        name=draw(texts()),
        kind=kind,
        rule=draw(rules(RuleEntity.CONTACT)) if dynamic else None,
        members=frozenset() if dynamic else draw(st.frozensets(st.uuids(), max_size=5)),
        description=draw(_optional(texts(200))),
    )


@st.composite
def consents(draw: st.DrawFn) -> Consent:
    decided = draw(aware_datetimes(max_value=datetime(2090, 1, 1)))
    lasts = draw(_optional(st.timedeltas(timedelta(seconds=1), timedelta(days=3650))))
    return Consent(
        **_stamp(draw),
        contact_id=draw(st.uuids()),
        channel=draw(st.sampled_from(ConsentChannel)),
        purpose=draw(keys()),
        status=draw(st.sampled_from(ConsentStatus)),
        source=draw(texts(30)),
        decided_at=decided,
        expires_at=None if lasts is None else decided + lasts,
        legal_basis=draw(st.sampled_from(LegalBasis)),
        contact_point=draw(_optional(st.one_of(st.sampled_from(EMAIL_SAMPLE), texts(40)))),
        evidence_form=draw(_optional(texts(30))),
        evidence_text=draw(_optional(texts(30))),
        evidence_ip=draw(_optional(st.ip_addresses().map(str))),
    )


@st.composite
def do_not_contacts(draw: st.DrawFn) -> DoNotContact:
    return DoNotContact(
        **_stamp(draw),
        contact_id=draw(st.uuids()),
        channel=draw(st.sampled_from(ConsentChannel)),
        reason=draw(st.sampled_from(DoNotContactReason)),
        source=draw(texts(30)),
        decided_at=draw(aware_datetimes(max_value=datetime(2090, 1, 1))),
        lifted=draw(st.booleans()),
    )


@st.composite
def stage_changes(draw: st.DrawFn) -> StageChange:
    subject = draw(st.sampled_from(SubjectKind))
    stages = st.sampled_from([s.value for s in LifecycleStage])
    stage = stages if subject is SubjectKind.CONTACT else keys()
    to_stage = draw(stage)
    from_stage = draw(_optional(stage.filter(lambda k: k != to_stage)))
    return StageChange(
        **_stamp(draw),
        subject=subject,
        subject_id=draw(st.uuids()),
        pipeline=None if subject is SubjectKind.CONTACT else draw(_optional(keys())),
        from_stage=from_stage,
        to_stage=to_stage,
        at=draw(aware_datetimes()),
        by=draw(_optional(users())),
        reason=draw(_optional(texts())),
        amount=draw(_optional(money(negative=False))),
        probability=draw(_optional(_probabilities())),
    )


@st.composite
def suppressions(draw: st.DrawFn) -> Suppression:
    digest = draw(st.binary(min_size=32, max_size=32)).hex()
    return Suppression(
        **{**_stamp(draw), "id": Suppression.id_for(digest)},
        kind=draw(st.sampled_from(["email", "phone"])),
        digest=digest,
        erasure_id=draw(_optional(st.uuids())),
    )


@st.composite
def erasures(draw: st.DrawFn) -> Erasure:
    contact_id = draw(st.uuids())
    return Erasure(
        **{**_stamp(draw), "id": contact_id},
        contact_id=contact_id,
        by=draw(users()),
        reason=draw(texts()),
        at=draw(aware_datetimes()),
        approved_by=draw(_optional(users())),
        records=draw(st.integers(0, 10**6)),
    )


@st.composite
def audit_entries(draw: st.DrawFn) -> AuditEntry:
    return AuditEntry(
        **_stamp(draw),
        subject=draw(st.sampled_from(SubjectKind)),
        subject_id=draw(st.uuids()),
        action=draw(st.sampled_from(AuditAction)),
        at=draw(aware_datetimes()),
        field=draw(_optional(keys())),
        before=draw(_optional(texts())),
        after=draw(_optional(texts())),
        by=draw(_optional(users())),
    )


# ---------------------------------------------------------------------------- rules

CUSTOM_KEYS = ("plan", "seats", "trial", "score")
"""The custom field names :func:`conditions` refers to (and test data should use)."""

WORDS = ("ada", "Ada", "ADA", "berg", "straße", "STRASSE", "/pricing", "pro", "x")
"""Texts that :func:`conditions` compares with: some match each other case-insensitively."""

COUNTRY_SAMPLE = ("DE", "SE", "GB", "US", "FR")
"""Countries that :func:`conditions` compares with."""
EMAIL_SAMPLE = ("ada@example.com", "Ada@Example.com", "bo@x.io")
"""E-mail addresses that :func:`conditions` compares with (two spell one address)."""
PHONE_SAMPLE = ("+4930901820", "+46 8 123 456 78")
"""Phone numbers that :func:`conditions` compares with."""
LANGUAGE_SAMPLE = ("de", "en", "sv", "en-GB")
"""Languages that :func:`conditions` compares with."""


def _words() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(WORDS), texts(8))


def _rule_money() -> st.SearchStrategy[Money]:
    return st.builds(
        Money,
        st.decimals(min_value=0, max_value=500, places=2),
        st.sampled_from(["EUR", "USD"]),
    )


def _literals(spec: FieldSpec) -> st.SearchStrategy[Any]:  # noqa: PLR0912
    kind = spec.kind
    if kind is FieldType.TEXT:
        return _words()
    if kind is FieldType.EMAIL:
        return st.sampled_from(EMAIL_SAMPLE)
    if kind is FieldType.PHONE:
        return st.sampled_from(PHONE_SAMPLE)
    if kind is FieldType.DECIMAL:
        return _numbers()
    if kind is FieldType.COUNTRY:
        return st.sampled_from(COUNTRY_SAMPLE)
    if kind is FieldType.LANGUAGE:
        return st.sampled_from(LANGUAGE_SAMPLE)
    if kind is FieldType.ENUM:
        assert spec.enum is not None
        return st.sampled_from([str(m.value) for m in spec.enum])
    if kind is FieldType.NUMBER:
        return _numbers()
    if kind is FieldType.BOOL:
        return st.booleans()
    if kind is FieldType.DATETIME:
        return aware_datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1))
    if kind is FieldType.DATE:
        return st.dates(date(2020, 1, 1), date(2030, 1, 1))
    if kind is FieldType.UUID:
        return st.uuids()
    if kind is FieldType.MONEY:
        return _rule_money()
    if kind is FieldType.JSON:
        return st.one_of(_words(), _numbers(decimals=False), st.booleans())
    raise TypeError(kind)  # pragma: no cover - tags have no literals


def _numbers(*, decimals: bool = True) -> st.SearchStrategy[Any]:
    choices: list[st.SearchStrategy[Any]] = [
        st.integers(-10, 100),
        st.floats(-10, 100, allow_nan=False),
    ]
    if decimals:
        choices.append(st.decimals(min_value=-10, max_value=100, places=2))
    return st.one_of(choices)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


@st.composite
def _field_atom(  # noqa: PLR0912 - one shape per node type
    draw: st.DrawFn, fields: Mapping[str, FieldSpec], prefix: str
) -> Condition:
    names = [n for n, spec in fields.items() if spec.kind is not FieldType.TAGS]
    names += [f"{prefix}.{key}" for key in CUSTOM_KEYS]
    spec = field_spec(draw(st.sampled_from(names)), fields, prefix)
    name, kind = spec.name, spec.kind
    shapes = ["compare", "is_null"] if kind is not FieldType.TAGS else ["compare"]
    if kind not in (FieldType.MONEY,):
        shapes.append("in")
    if kind.ordered:
        shapes.append("between")
    if kind.textual:
        shapes.append("text")
    if kind in (FieldType.DATETIME, FieldType.DATE):
        shapes.append("window")
    shape = draw(st.sampled_from(shapes))
    if shape == "is_null":
        return IsNull(name, draw(st.booleans()))
    if shape == "in":
        values = draw(st.lists(_optional(_literals(spec)), min_size=1, max_size=4))
        if all(v is None for v in values):
            values.append(draw(_literals(spec)))
        return In(name, tuple(values), draw(st.booleans()))
    if shape == "text":
        return TextMatch(name, draw(st.sampled_from(TextOp)), draw(_words()))
    if shape == "window":
        window = draw(st.sampled_from(DateWindow))
        days = None if window is DateWindow.THIS_MONTH else draw(st.integers(0, 400))
        return RelativeDate(name, window, days)
    if shape == "between":
        if kind is FieldType.MONEY:
            currency = draw(st.sampled_from(["EUR", "USD"]))
            amounts = sorted(
                m.amount for m in draw(st.lists(_rule_money(), min_size=2, max_size=2))
            )
            low, high = Money(amounts[0], currency), Money(amounts[1], currency)
        else:
            literals = _numbers(decimals=False) if kind is FieldType.JSON else _literals(spec)
            low, high = sorted(draw(st.lists(literals, min_size=2, max_size=2)))
        return Between(name, low, high)
    literal = draw(_literals(spec))
    ops = list(Op) if kind.ordered else [Op.EQ, Op.NE]
    if kind is FieldType.JSON and not _is_number(literal):
        ops = [Op.EQ, Op.NE]
    return Compare(name, draw(st.sampled_from(ops)), literal)


@st.composite
def _activity_atom(draw: st.DrawFn) -> ActivityCondition:
    measure = draw(st.sampled_from(Measure))
    value: int | Money = (
        draw(st.integers(0, 4)) if measure is Measure.COUNT else draw(_rule_money())
    )
    where = draw(_optional(_field_atom(ACTIVITY_FIELDS, "properties")))
    return ActivityCondition(
        draw(st.sampled_from([ActivityKind.PAGE_VIEW, ActivityKind.PURCHASE])),
        measure,
        draw(st.sampled_from(Op)),
        value,
        where=where,
        within_days=draw(_optional(st.integers(1, 60))),
    )


REACH_PURPOSES = ("newsletter", "sales")
"""The purposes of :func:`reachable_atoms` and :func:`ledgers`."""
REACH_CHANNELS = (ConsentChannel.EMAIL, ConsentChannel.SMS, ConsentChannel.POST)
"""The channels of :func:`reachable_atoms` and :func:`ledgers`."""


@st.composite
def reachable_atoms(draw: st.DrawFn) -> Reachable:
    """``reachable`` conditions over :data:`REACH_CHANNELS` and :data:`REACH_PURPOSES`,
    with or without a frequency cap, checking all or a random part of the checks."""
    capped = draw(st.booleans())
    every = draw(st.booleans())
    checks = frozenset(ReachCheck) if every else draw(st.frozensets(st.sampled_from(ReachCheck)))
    return Reachable(
        draw(st.sampled_from(REACH_CHANNELS)),
        draw(st.sampled_from(REACH_PURPOSES)),
        draw(st.integers(1, 3)) if capped else None,
        draw(st.integers(1, 30)) if capped else None,
        checks,
    )


@attrs.frozen
class Ledgers:
    """Consent and do-not-contact entries and messages drawn by :func:`ledgers`."""

    consents: list[Consent]
    blocks: list[DoNotContact]
    messages: list[Activity]


@st.composite
def ledgers(draw: st.DrawFn, people: Sequence[Contact], *, now: datetime) -> Ledgers:
    """Up to four consent entries, two do-not-contact entries and three messages per
    contact, over :data:`REACH_CHANNELS` and :data:`REACH_PURPOSES`, decided at a few
    shared times around ``now`` (so that ties and expiries at ``now`` happen); a consent
    names no address, the contact's current one or another."""
    times = [now - timedelta(days=d) for d in (40, 10, 1)] + [now, now + timedelta(days=1)]
    consents: list[Consent] = []
    blocks: list[DoNotContact] = []
    messages: list[Activity] = []
    for person in people:
        for _ in range(draw(st.integers(0, 4))):
            decided = draw(st.sampled_from(times[:3]))
            expiry = draw(st.sampled_from([None, *(t for t in times if t > decided)]))
            channel = draw(st.sampled_from(REACH_CHANNELS))
            other = "old@example.org" if channel is ConsentChannel.EMAIL else "+4930900001"
            consents.append(
                Consent(
                    **_stamp(draw),
                    contact_id=person.id,
                    channel=channel,
                    purpose=draw(st.sampled_from(REACH_PURPOSES)),
                    status=draw(st.sampled_from(ConsentStatus)),
                    source="form",
                    decided_at=decided,
                    expires_at=expiry,
                    # none, the current address, or one the contact had before
                    contact_point=draw(
                        st.sampled_from([None, contact_point(person, channel), other])
                    ),
                )
            )
        for _ in range(draw(st.integers(0, 2))):
            blocks.append(  # noqa: PERF401 - one draw after another
                DoNotContact(
                    **_stamp(draw),
                    contact_id=person.id,
                    channel=draw(st.sampled_from(REACH_CHANNELS)),
                    reason=draw(st.sampled_from(DoNotContactReason)),
                    source="bounces",
                    decided_at=draw(st.sampled_from(times[:3])),
                    lifted=draw(st.booleans()),
                )
            )
        for _ in range(draw(st.integers(0, 3))):
            channel = draw(st.sampled_from(REACH_CHANNELS))
            messages.append(
                Activity(
                    **_stamp(draw),
                    contact_id=person.id,
                    kind=MESSAGE_KINDS[channel],
                    occurred_at=draw(st.sampled_from(times)),
                )
            )
    return Ledgers(consents, blocks, messages)


def conditions(
    entity: RuleEntity = RuleEntity.CONTACT,
    *,
    segment_ids: Sequence[UUID] = (),
    max_leaves: int = 6,
    activities: bool = True,
    reachability: bool = False,
) -> st.SearchStrategy[Condition]:
    """Valid conditions for ``entity``: every node type, nested ``And``/``Or``/``Not``.

    Literals come from small pools (:data:`WORDS`, a few countries, :data:`CUSTOM_KEYS`)
    so that they meet data drawn from the same pools. ``in segment`` conditions appear
    only when ``segment_ids`` names segments to refer to; activity conditions only when
    ``activities`` (the default); ``reachable`` conditions (:func:`reachable_atoms`) of
    contact rules only with ``reachability``.
    """
    fields = FIELDS[entity]
    leaves = [_field_atom(fields, "custom")]
    if activities:
        leaves.append(_activity_atom())
    if "tags" in fields:
        tag_words = st.sampled_from(["ada", "ADA", "berg", "STRASSE", "straße", "ss"])
        leaves.append(st.one_of(tag_words, tags_of_one()).map(HasTag))
    if segment_ids and entity is RuleEntity.CONTACT:
        leaves.append(st.sampled_from(list(segment_ids)).map(InSegment))
    if reachability and entity is RuleEntity.CONTACT:
        leaves.append(reachable_atoms())
    return st.recursive(
        st.one_of(leaves),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: Or(tuple(xs))),
            inner.map(Not),
        ),
        max_leaves=max_leaves,
    )


def tags_of_one() -> st.SearchStrategy[str]:
    return tags().filter(bool).map(lambda found: sorted(found)[0])


def rules(
    entity: RuleEntity = RuleEntity.CONTACT,
    *,
    segment_ids: Sequence[UUID] = (),
    max_leaves: int = 6,
    activities: bool = True,
    reachability: bool = False,
) -> st.SearchStrategy[Rule]:
    """Valid rules over ``entity`` (see :func:`conditions`)."""
    found = conditions(
        entity,
        segment_ids=segment_ids,
        max_leaves=max_leaves,
        activities=activities,
        reachability=reachability,
    )
    return found.map(lambda c: Rule(entity, c))


TAG_SAMPLE = ("ada", "ADA", "berg", "STRASSE", "straße")
"""Tags of :func:`rule_contacts`; some are equal when case is ignored (casefold)."""


@st.composite
def rule_contacts(draw: st.DrawFn) -> Contact:
    """Contacts whose values come from the pools :func:`conditions` draws literals from.

    Rules drawn from :func:`rules` select a fair share of them (and leave some fields
    missing), which is what tests of rule evaluation need, in Python or in a database.
    """
    base = draw(contacts())
    words = st.sampled_from(WORDS)
    scalars = st.one_of(words, st.integers(-10, 100), st.floats(-10, 100), st.booleans(), st.none())
    return attrs.evolve(
        base,
        first_name=draw(_optional(words)),
        email=draw(_optional(st.sampled_from(EMAIL_SAMPLE))),
        phone=draw(_optional(st.sampled_from(PHONE_SAMPLE))),
        country=draw(_optional(st.sampled_from(COUNTRY_SAMPLE))),
        language=draw(_optional(st.sampled_from(LANGUAGE_SAMPLE))),
        lifecycle_stage=draw(st.sampled_from(LifecycleStage)),
        tags=draw(st.frozensets(st.sampled_from(TAG_SAMPLE))),
        custom=draw(st.dictionaries(st.sampled_from(CUSTOM_KEYS), scalars, max_size=4)),
        created_at=datetime(2025, 6, 1, tzinfo=UTC),
        updated_at=draw(aware_datetimes(datetime(2025, 6, 1), datetime(2026, 6, 1))),
    )


@st.composite
def activity_indexes(
    draw: st.DrawFn, people: Sequence[Contact], *, now: datetime
) -> dict[UUID, list[Activity]]:
    """Up to three page views or purchases per contact in the 90 days before ``now``.

    Page views carry ``properties={"url": ...}`` from :data:`WORDS`; purchases an
    amount in EUR or USD and ``properties={"product": ...}``: what the activity
    conditions of :func:`conditions` look at.
    """
    index: dict[UUID, list[Activity]] = {}
    for person in people:
        found = []
        for _ in range(draw(st.integers(0, 3))):
            stamp = _stamp(draw)
            occurred = now - draw(st.timedeltas(timedelta(0), timedelta(days=90)))
            if draw(st.booleans()):
                kind, amount = ActivityKind.PAGE_VIEW, None
                properties: dict[str, JSONScalar] = {"url": draw(st.sampled_from(WORDS))}
            else:
                kind = ActivityKind.PURCHASE
                amount = Money(
                    draw(st.decimals(0, 400, places=2)), draw(st.sampled_from(["EUR", "USD"]))
                )
                properties = {"product": draw(st.sampled_from(WORDS))}
            found.append(
                Activity(
                    **stamp,
                    contact_id=person.id,
                    kind=kind,
                    occurred_at=occurred,
                    amount=amount,
                    properties=properties,
                )
            )
        index[person.id] = found
    return index


_BY_TYPE: dict[type[Entity], Callable[[], st.SearchStrategy[Any]]] = {
    Contact: contacts,
    Account: accounts,
    Lead: leads,
    Deal: deals,
    Ticket: tickets,
    Activity: activities,
    Task: tasks,
    Segment: segments,
    Consent: consents,
    DoNotContact: do_not_contacts,
    StageChange: stage_changes,
    Suppression: suppressions,
    Erasure: erasures,
    AuditEntry: audit_entries,
}


def for_type(cls: type[_E]) -> st.SearchStrategy[_E]:
    """The strategy for the entity class ``cls`` (``for_type(Deal)`` is ``deals()``)."""
    try:
        return cast(st.SearchStrategy[_E], _BY_TYPE[cls]())
    except KeyError:
        raise TypeError(f"no strategy for {cls!r}") from None


def entities() -> st.SearchStrategy[Entity]:
    """Any entity of any type."""
    return st.one_of([make() for make in _BY_TYPE.values()])


# ---------------------------------------------------------------------------- events


def _event_value(hint: Any) -> st.SearchStrategy[Any]:
    """Values of one annotated event field (the few shapes events use)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _optional(_event_value(inner))
    if typing.get_origin(hint) is tuple:
        return st.lists(_event_value(args[0]), max_size=3).map(tuple)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        UUID: st.uuids(),
        datetime: aware_datetimes(),
        str: keys(),
        bool: st.booleans(),
        float: st.floats(allow_nan=False, allow_infinity=False),
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, Enum):
        return st.sampled_from(list(hint))
    raise TypeError(f"no strategy for an event field of type {hint!r}")  # pragma: no cover


def _event_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    hints = typing.get_type_hints(cls)
    fields = {a.name: _event_value(hints[a.name]) for a in attrs.fields(cls)}
    fields["subject"] = st.sampled_from(["contact", "lead", "deal", "ticket", "task", "account"])
    return st.builds(cls, **fields)


def events() -> st.SearchStrategy[Event]:
    """Any domain event of :data:`crmkit.automation.EVENT_TYPES`, every field drawn."""
    classes = sorted(EVENT_TYPES.values(), key=lambda c: c.type)
    return st.sampled_from(classes).flatmap(_event_of)
