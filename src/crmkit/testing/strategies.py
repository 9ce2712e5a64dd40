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

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from crmkit.errors import MissingExtra

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
    Consent,
    ConsentChannel,
    ConsentStatus,
    Contact,
    CountryCode,
    CustomFields,
    Deal,
    DealStatus,
    EmailAddress,
    Entity,
    JSONScalar,
    LanguageCode,
    Lead,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    PhoneNumber,
    RuleText,
    Segment,
    SegmentKind,
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

__all__ = [
    "accounts",
    "activities",
    "aware_datetimes",
    "consents",
    "contacts",
    "country_codes",
    "currencies",
    "custom_fields",
    "deals",
    "emails",
    "entities",
    "for_type",
    "keys",
    "language_codes",
    "leads",
    "money",
    "phone_numbers",
    "segments",
    "stage_changes",
    "tags",
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
        rule=RuleText(draw(texts(100))) if dynamic else None,
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
    StageChange: stage_changes,
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
