"""Rule scoring: criteria, decay, caps, bands, compiled totals and bad input."""

import math
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import CrmkitError, MissingExtra, NotFound, ValidationError
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    DealStatus,
    Lead,
    LeadChannel,
    LeadStatus,
    LifecycleStage,
    Money,
    Segment,
)
from crmkit.models.rules import (
    FIELDS,
    Compare,
    FieldType,
    Not,
    Op,
    Or,
    Rule,
    RuleEntity,
    field_spec,
)
from crmkit.scoring import (
    Band,
    Criterion,
    Decay,
    DecayKind,
    Group,
    ScoringModel,
    score,
)
from crmkit.segmentation import (
    Context,
    activity,
    compile_keyed,
    compile_sum,
    contacts_where,
    custom,
    evaluate,
    field,
    has_tag,
    in_segment,
    leads_where,
    prop,
)
from crmkit.serialization import make_converter
from crmkit.testing import strategies as cst

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
ADA = attrs.evolve(
    Contact.new(first_name="Ada", country="GB", tags=["vip"], clock=CLOCK), id=UUID(int=1)
)
LEAD = Lead.new(
    contact_id=ADA.id, source="webinar", channel=LeadChannel.FORM, custom={"budget": 5000}
)
PRICING = activity(ActivityKind.PAGE_VIEW, where=prop("url").contains("/pricing"))


def view(days_ago: float, url: str = "/pricing", contact: Contact = ADA) -> Activity:
    return Activity.new(
        contact_id=contact.id,
        kind=ActivityKind.PAGE_VIEW,
        properties={"url": url},
        occurred_at=NOW - timedelta(days=days_ago),
        clock=CLOCK,
    )


def model(**options: object) -> ScoringModel:
    criteria = (
        Criterion("form", leads_where(field("channel") == "form"), 10),
        Criterion("budget", leads_where(custom("budget") >= 1000), 15),
        Criterion("uk", contacts_where(field("country") == "GB"), 20),
        Criterion("no vip", contacts_where(~has_tag("vip")), -5),
        Criterion("pricing", leads_where(PRICING.count() >= 1), 40, Group.ENGAGEMENT),
    )
    return ScoringModel(name="leads", criteria=criteria, **options)  # type: ignore[arg-type]


def test_a_card_lists_every_true_criterion_with_decay_and_caps() -> None:
    scoring = model(
        decay=Decay(DecayKind.HALF_LIFE, 7),
        fit_cap=30,
        bands=(Band("cold", 0), Band("warm", 30), Band("hot", 50)),
        mql_at=40,
    )
    context = Context(now=NOW, activities={ADA.id: [view(7), view(20)]})
    card = score(scoring, LEAD, context, contact=ADA)
    assert [c.criterion for c in card.contributions] == ["form", "budget", "uk", "pricing"]
    assert card.fit == 30.0  # 45 capped at 30: the positives scaled by 2/3
    assert card.points()["uk"] == pytest.approx(20 * 30 / 45)
    pricing = card.contributions[-1]
    assert (pricing.decay, pricing.points, pricing.anchor) == (0.5, 20.0, NOW - timedelta(days=7))
    assert (card.engagement, card.total, card.band, card.mql) == (20.0, 50.0, "hot", True)


def test_linear_decay_reaches_zero_at_the_horizon_and_other_pages_do_not_anchor() -> None:
    scoring = model(decay=Decay(DecayKind.LINEAR, 10))
    late = Context(now=NOW, activities={ADA.id: [view(10), view(0, "/careers")]})
    assert score(scoring, LEAD, late, contact=ADA).points()["pricing"] == 0.0
    early = Context(now=NOW, activities={ADA.id: [view(2.5)]})
    assert score(scoring, LEAD, early, contact=ADA).points()["pricing"] == 30.0


def test_an_activity_after_now_neither_counts_nor_anchors() -> None:
    context = Context(now=NOW, activities={ADA.id: [view(-1)]})
    card = score(model(decay=Decay(DecayKind.HALF_LIFE, 7)), LEAD, context, contact=ADA)
    assert "pricing" not in card.points()


def test_compiled_totals_equal_the_cards_and_need_the_contacts() -> None:
    scoring = model(fit_cap=25, total_cap=60, decay=Decay(DecayKind.HALF_LIFE, 3))
    bob = Contact.new(first_name="Bob", country="DE", clock=CLOCK)
    leads = [LEAD, attrs.evolve(LEAD, contact_id=bob.id, channel=LeadChannel.CHAT)]
    context = Context(now=NOW, activities={ADA.id: [view(1)]})
    compiled = scoring.compile(context)
    people = {ADA.id: ADA, bob.id: bob}
    cards = [compiled.score(lead, contact=people[lead.contact_id]) for lead in leads]
    assert compiled.totals(leads, contacts=people) == [card.total for card in cards]
    assert compiled.totals(leads, contacts=[ADA, bob]) == [card.total for card in cards]
    with pytest.raises(NotFound):
        compiled.totals(leads, contacts={ADA.id: ADA})
    with pytest.raises(ValidationError) as error:
        compiled.totals(leads)
    assert error.value.field == "contacts"
    with pytest.raises(NotFound):
        compiled.score(LEAD)


def test_compile_sum_adds_the_weights_of_true_rules_in_order() -> None:
    terms = [(leads_where(field("channel") == "form"), 0.1), (leads_where(field("score") > 1), 2)]
    sums = compile_sum(terms, Context(now=NOW))
    assert sums([LEAD, attrs.evolve(LEAD, score=3.0)]) == [0.1, 0.0 + 0.1 + 2.0]
    with pytest.raises(ValidationError):
        compile_sum([(leads_where(field("score") > 1), math.inf)], Context(now=NOW))


# ---------------------------------------------------------------------------- properties

POINTS = st.floats(-50, 50, allow_nan=False).map(lambda p: round(p, 2))


@st.composite
def models(draw: st.DrawFn) -> ScoringModel:
    pool = [
        leads_where(field("channel") == "form"),
        leads_where(field("status") == "working"),
        leads_where(field("score") >= 50),
        leads_where(custom("budget") >= 1000),
        contacts_where(field("country") == "GB"),
        contacts_where(has_tag("vip")),
    ]
    size = draw(st.integers(1, len(pool)))
    chosen = draw(st.permutations(pool))[:size]
    criteria = [Criterion(f"c{i}", rule, draw(POINTS)) for i, rule in enumerate(chosen)]
    for i in range(draw(st.integers(0, 2))):
        within = draw(st.sampled_from([None, 30]))
        rule = leads_where(activity(ActivityKind.PAGE_VIEW, within_days=within).count() >= 1)
        criteria.append(Criterion(f"e{i}", rule, draw(POINTS), Group.ENGAGEMENT))
    caps = st.none() | st.floats(0, 80, allow_nan=False)
    return ScoringModel(
        name="random",
        criteria=tuple(criteria),
        decay=draw(
            st.sampled_from([Decay(), Decay(DecayKind.HALF_LIFE, 10), Decay(DecayKind.LINEAR, 45)])
        ),
        fit_cap=draw(caps),
        engagement_cap=draw(caps),
        total_cap=draw(caps),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Lead, Contact, Context]:
    contact = draw(cst.contacts())
    contact = attrs.evolve(
        contact,
        country=draw(st.sampled_from(["GB", "DE", None])),
        tags=draw(st.sampled_from([frozenset(), frozenset({"vip"})])),
    )
    lead = attrs.evolve(
        draw(cst.leads()),
        contact_id=contact.id,
        channel=draw(st.sampled_from(list(LeadChannel))),
        status=draw(st.sampled_from([LeadStatus.NEW, LeadStatus.WORKING])),
        disqualified_reason=None,
        score=draw(st.none() | st.floats(0, 100)),
        custom={"budget": draw(st.integers(0, 5000))},
    )
    ages = draw(st.lists(st.floats(0, 120), max_size=3))
    return (
        lead,
        contact,
        Context(now=NOW, activities={contact.id: [view(a, contact=contact) for a in ages]}),
    )


@settings(max_examples=60, deadline=None)
@given(models(), scenarios())
def test_scores_are_deterministic_add_up_and_respect_caps(
    scoring: ScoringModel, scenario: tuple[Lead, Contact, Context]
) -> None:
    lead, contact, context = scenario
    compiled = scoring.compile(context)
    card = compiled.score(lead, contact=contact)
    assert card == score(scoring, lead, context, contact=contact)
    assert compiled.total(lead, contact=contact) == card.total
    added = math.fsum(c.points for c in card.contributions)
    assert added == pytest.approx(card.total, rel=1e-9, abs=1e-9)
    assert card.total == pytest.approx(card.fit + card.engagement) or (
        scoring.total_cap is not None and card.total == scoring.total_cap
    )
    for cap, value in (
        (scoring.fit_cap, card.fit),
        (scoring.engagement_cap, card.engagement),
        (scoring.total_cap, card.total),
    ):
        assert cap is None or value <= cap
    for contribution in card.contributions:
        assert 0.0 <= contribution.decay <= 1.0
        assert 0.0 <= contribution.cap <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0.1, 400), st.floats(0, 500), st.floats(0, 500))
def test_decay_never_grows_with_age(days: float, younger: float, older: float) -> None:
    younger, older = sorted((younger, older))
    for kind in (DecayKind.HALF_LIFE, DecayKind.LINEAR):
        decay = Decay(kind, days)
        assert 0.0 <= decay.factor(older) <= decay.factor(younger) <= 1.0


@settings(max_examples=40, deadline=None)
@given(models())
def test_models_round_trip_through_json(scoring: ScoringModel) -> None:
    converter = make_converter()
    assert converter.structure(converter.unstructure(scoring), ScoringModel) == scoring


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("build", "field_name", "value"),
    [
        (lambda: Criterion("", leads_where(field("score") > 1), 1), "name", ""),
        (lambda: Criterion("x", leads_where(field("score") > 1), math.nan), "points", math.nan),
        (lambda: Criterion("x", "score > 1", 1), "rule", "score > 1"),  # type: ignore[arg-type]
        (
            lambda: Criterion("x", leads_where(field("score") > 1), 1, Group.ENGAGEMENT),
            "rule",
            None,
        ),
        (lambda: Decay(DecayKind.HALF_LIFE, 0), "days", 0.0),
        (lambda: Decay(DecayKind.NONE, 3), "days", 3.0),
        (lambda: Band("hot", math.inf), "min_score", math.inf),
        (lambda: model(fit_cap=-1), "fit_cap", -1.0),
        (lambda: model(bands=(Band("a", 5), Band("b", 5))), "bands[1].min_score", 5.0),
        (
            lambda: ScoringModel(
                name="x", criteria=(Criterion("a", leads_where(field("score") > 1), 1),) * 2
            ),
            "criteria[1].name",
            "a",
        ),
        (
            lambda: ScoringModel(
                name="x",
                entity=field("x"),  # type: ignore[arg-type]
                criteria=(),
            ),
            "entity",
            None,
        ),
    ],
)
def test_bad_models_are_rejected_naming_field_and_value(
    build: object, field_name: str, value: object
) -> None:
    with pytest.raises(ValidationError) as error:
        build()  # type: ignore[operator]
    assert error.value.field == field_name
    if value is not None:
        assert repr(error.value.value) == repr(value)


def test_scoring_the_wrong_entity_is_rejected() -> None:
    compiled = model().compile(Context(now=NOW))
    with pytest.raises(ValidationError) as error:
        compiled.score(ADA)
    assert (error.value.field, error.value.value) == ("entity", ADA)
    with pytest.raises(ValidationError) as error:
        compiled.totals([LEAD, "lead"], contacts=[ADA, ADA])
    assert error.value.field == "entities[1]"
    with pytest.raises(CrmkitError):
        score(model(), LEAD, "now", contact=ADA)  # type: ignore[arg-type]


def test_bad_json_names_its_path() -> None:
    converter = make_converter()
    data = converter.unstructure(model())
    data["criteria"][0]["points"] = "ten"
    with pytest.raises(ValidationError) as error:
        converter.structure(data, ScoringModel)
    assert error.value.field == "$.criteria[0].points"


# ------------------------------------------------------------------ batch == one by one

FLAGS = [None, True, False, 0, 1, 1.0, "1", "yes"]  # JSON values that compare equal across types
LEAD_POOL = [
    leads_where(field("channel") == "form"),
    leads_where(field("channel").is_in("referral", "chat")),
    leads_where(~(field("status") == "working")),
    leads_where((field("score") >= 50) | field("owner").is_null()),
    leads_where(field("score").is_in(10.0, None)),
    leads_where(field("source").contains("web") & ~field("channel").not_in("form", None)),
    leads_where(custom("flag") == 1),
    leads_where(~(custom("flag") == True)),  # noqa: E712 - a rule, not a comparison
    leads_where(custom("flag").is_null()),
    leads_where(field("created_at").within_last(30)),
    leads_where(field("score").between(20, 60)),
]
CONTACT_POOL = [
    contacts_where(field("country") == "GB"),
    contacts_where(~has_tag("vip")),
    contacts_where(field("country").is_in("DE", None) | has_tag("vip")),
    contacts_where(custom("flag") == "1"),
]


@st.composite
def batch_models(draw: st.DrawFn) -> ScoringModel:
    rules = draw(st.lists(st.sampled_from(LEAD_POOL + CONTACT_POOL), min_size=1, max_size=8))
    criteria = [Criterion(f"c{i}", rule, draw(POINTS)) for i, rule in enumerate(rules)]
    for i in range(draw(st.integers(0, 2))):
        rule = leads_where(
            (activity(ActivityKind.PAGE_VIEW, within_days=30).count() >= 1)
            | (field("channel") == "chat")
        )
        criteria.append(Criterion(f"e{i}", rule, draw(POINTS), Group.ENGAGEMENT))
    caps = st.none() | st.floats(0, 80, allow_nan=False)
    return ScoringModel(
        name="batch",
        criteria=tuple(criteria),
        decay=draw(st.sampled_from([Decay(), Decay(DecayKind.HALF_LIFE, 10)])),
        fit_cap=draw(caps),
        engagement_cap=draw(caps),
        total_cap=draw(caps),
    )


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Lead], list[Contact], Context]:
    people = [
        attrs.evolve(
            ADA,
            id=UUID(int=100 + i),
            country=draw(st.sampled_from(["GB", "DE", None])),
            tags=draw(st.sampled_from([frozenset(), frozenset({"vip"})])),
            custom={"flag": draw(st.sampled_from(FLAGS))},
        )
        for i in range(draw(st.integers(1, 4)))
    ]
    leads = [
        attrs.evolve(
            LEAD,
            contact_id=draw(st.sampled_from(people)).id,
            channel=draw(st.sampled_from(list(LeadChannel))),
            status=draw(st.sampled_from([LeadStatus.NEW, LeadStatus.WORKING])),
            source=draw(st.sampled_from(["webinar", "Web shop", "fair"])),
            owner=draw(st.sampled_from([None, "ana"])),
            score=draw(st.sampled_from([None, 10.0, 50.0]) | st.floats(0, 100)),
            created_at=NOW - timedelta(days=draw(st.integers(0, 60))),
            custom={"flag": draw(st.sampled_from(FLAGS))},
        )
        for _ in range(draw(st.integers(0, 40)))
    ]
    activities = {
        p.id: [view(a, contact=p) for a in draw(st.lists(st.floats(0, 60), max_size=2))]
        for p in people
    }
    return leads, people, Context(now=NOW, activities=activities)


@settings(max_examples=80, deadline=None)
@given(batch_models(), batches())
def test_batch_totals_equal_the_cards_one_by_one(
    scoring: ScoringModel, batch: tuple[list[Lead], list[Contact], Context]
) -> None:
    leads, people, context = batch
    compiled = scoring.compile(context)
    by_id = {p.id: p for p in people}
    aligned = [by_id[lead.contact_id] for lead in leads]
    cards = [compiled.score(lead, contact=by_id[lead.contact_id]).total for lead in leads]
    assert compiled.totals(leads, contacts=by_id) == cards
    assert compiled.totals(iter(leads), contacts=aligned) == cards
    assert compiled.totals(leads, contacts=by_id, keyed=False) == cards
    assert [compiled.total(lead, contact=by_id[lead.contact_id]) for lead in leads] == cards


def test_keyed_evaluation_calls_the_function_once_per_distinct_key() -> None:
    rules = [leads_where(field("channel") == "form"), leads_where(custom("budget") >= 1000)]
    calls: list[Lead] = []
    keyed = compile_keyed(rules, Context(now=NOW), lambda lead: calls.append(lead) or 1.0)
    leads = [LEAD, attrs.evolve(LEAD, custom={"budget": 5}), LEAD, attrs.evolve(LEAD, score=1.0)]
    assert keyed(leads) == [1.0] * 4
    assert calls == leads[:2]  # the score is not read: the last lead has the first's key
    assert compile_keyed([], Context(now=NOW), lambda lead: 2.0)(leads) == [2.0] * 4
    with pytest.raises(ValidationError):
        compile_keyed([contacts_where(has_tag("vip")), *rules], Context(now=NOW), len)


def test_a_criterion_of_four_thousand_terms_scores_like_the_interpreter() -> None:
    # Compiling keyed evaluation compared every leaf with every other (quadratic: 20 s
    # for a 4,000-term OR); leaves are now looked up by key. Behaviour only here: the
    # duplicated terms (1, 1.0 and True are different literals) keep their meaning.
    terms = [custom("budget") == i for i in range(4000)]
    terms += [custom("budget") == 1, custom("budget") == 1.0, custom("budget") == True]  # noqa: E712
    where = terms[0]
    for term in terms[1:]:
        where = where | term
    assert isinstance(where, Or)
    assert len(where.items) == 4003
    rule = leads_where(where)
    scoring = ScoringModel(name="wide", criteria=(Criterion("wide", rule, 10),))
    compiled = scoring.compile(Context(now=NOW))
    budgets: list[object] = [5, 3999, 4000, 1.0, True, "1", None, 2.5]
    leads = [attrs.evolve(LEAD, custom={} if b is None else {"budget": b}) for b in budgets]
    expected = [10.0 if evaluate(rule, lead, Context(now=NOW)) else 0.0 for lead in leads]
    assert expected == [10.0, 10.0, 0.0, 10.0, 10.0, 0.0, 0.0, 0.0]
    assert compiled.totals(leads) == expected
    assert compiled.totals(leads, keyed=False) == expected
    assert [compiled.score(lead).total for lead in leads] == expected


# ------------------------------------------------------------------ columns (numpy)

COLUMN_NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
_TEXTUAL = {
    FieldType.TEXT,
    FieldType.EMAIL,
    FieldType.PHONE,
    FieldType.COUNTRY,
    FieldType.LANGUAGE,
    FieldType.ENUM,
}
_SCALARS = st.one_of(
    st.sampled_from(cst.WORDS),
    st.integers(-10, 100),
    st.floats(-10, 100),
    st.booleans(),
    st.none(),
)


def _customs(draw: st.DrawFn) -> dict[str, object]:
    return draw(st.dictionaries(st.sampled_from(cst.CUSTOM_KEYS), _SCALARS, max_size=4))


def _optional(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


_WORD = st.sampled_from(cst.WORDS)
_TIMES = cst.aware_datetimes(datetime(2025, 1, 1), datetime(2026, 6, 1))


def _stamp(draw: st.DrawFn, number: int) -> dict[str, Any]:
    created = draw(_TIMES)
    updated = created + timedelta(days=draw(st.integers(0, 30)))
    return {"id": UUID(int=number), "version": 1, "created_at": created, "updated_at": updated}


@st.composite
def column_contacts(draw: st.DrawFn, number: int) -> Contact:
    """Contacts with values from the pools of the rules of ``cst.rules`` (drawn fast)."""
    return Contact(
        **_stamp(draw, number),
        first_name=draw(_optional(_WORD)),
        email=draw(_optional(st.sampled_from(cst.EMAIL_SAMPLE))),
        phone=draw(_optional(st.sampled_from(cst.PHONE_SAMPLE))),
        country=draw(_optional(st.sampled_from(cst.COUNTRY_SAMPLE))),
        language=draw(_optional(st.sampled_from(cst.LANGUAGE_SAMPLE))),
        lifecycle_stage=draw(st.sampled_from(LifecycleStage)),
        owner=draw(_optional(st.sampled_from(["user-1", "user-2"]))),
        do_not_contact=draw(st.booleans()),
        tags=draw(st.frozensets(st.sampled_from(cst.TAG_SAMPLE))),
        custom=_customs(draw),
    )


@st.composite
def column_leads(draw: st.DrawFn, contact: Contact, number: int) -> Lead:
    status = draw(st.sampled_from(LeadStatus))
    pipeline = draw(_optional(st.sampled_from(["sales", "pro"])))
    return Lead(
        **_stamp(draw, number),
        contact_id=contact.id,
        source=draw(_WORD),
        channel=draw(st.sampled_from(LeadChannel)),
        status=status,
        score=draw(_optional(st.integers(-10, 100).map(float) | st.floats(-10, 100))),
        owner=draw(_optional(st.sampled_from(["user-1", "user-2"]))),
        pipeline=pipeline,
        stage=None if pipeline is None else draw(st.sampled_from(["x", "won"])),
        disqualified_reason="no fit" if status is LeadStatus.DISQUALIFIED else None,
        custom=_customs(draw),
    )


@st.composite
def column_deals(draw: st.DrawFn, contact: Contact, number: int) -> Deal:
    money = st.builds(Money, st.decimals(0, 500, places=2), st.sampled_from(["EUR", "USD", "SEK"]))
    stamp = _stamp(draw, number)
    status = draw(st.sampled_from(DealStatus))
    closed = None
    if status is not DealStatus.OPEN:
        closed = max(stamp["created_at"], draw(cst.aware_datetimes(datetime(2020, 1, 1))))
    return Deal(
        **stamp,
        title=draw(_WORD),
        pipeline=draw(st.sampled_from(["sales", "pro"])),
        stage=draw(st.sampled_from(["x", "won"])),
        amount=draw(_optional(money)),
        probability=draw(st.decimals(0, 1, places=2)),
        status=status,
        contact_id=contact.id,
        account_id=draw(st.sampled_from([None, UUID(int=7)])),
        expected_close=draw(_optional(st.dates(date(2020, 1, 1), date(2030, 1, 1)))),
        closed_at=closed,
        lost_reason=draw(_optional(_WORD)) if status is DealStatus.LOST else None,
        owner=draw(_optional(st.sampled_from(["user-1", "user-2"]))),
        tags=draw(st.frozensets(st.sampled_from(cst.TAG_SAMPLE))),
        custom=_customs(draw),
    )


@st.composite
def column_models(draw: st.DrawFn) -> ScoringModel:
    entity = draw(st.sampled_from([RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.CONTACT]))
    criteria = []
    for i in range(draw(st.integers(1, 6))):
        on_contact = entity is RuleEntity.CONTACT or draw(st.booleans())
        over = RuleEntity.CONTACT if on_contact else entity
        rule = draw(cst.rules(over, activities=False, max_leaves=4))
        criteria.append(Criterion(f"c{i}", rule, draw(POINTS)))
    caps = st.none() | st.floats(0, 80, allow_nan=False)
    return ScoringModel(
        name="columns",
        criteria=tuple(criteria),
        entity=entity,
        fit_cap=draw(caps),
        total_cap=draw(caps),
    )


def object_columns(items: list[Any], entity: RuleEntity) -> dict[str, list[Any]]:
    """Every field as a list of the values the entities hold."""
    found = {name: [getattr(x, name) for x in items] for name in FIELDS[entity]}
    for key in cst.CUSTOM_KEYS:
        found[f"custom.{key}"] = [x.custom.get(key) for x in items]
    return found


def _masked(np: Any, values: list[Any], dtype: object, blank: object) -> Any:
    data = np.array([blank if v is None else v for v in values], dtype=dtype)
    return np.ma.masked_array(data, mask=[v is None for v in values])


def native_column(np: Any, kind: FieldType, values: list[Any]) -> Any:
    """The column as a numpy array of a native type where the field's type has one."""
    present = [v for v in values if v is not None]
    if kind in _TEXTUAL:
        return _masked(np, [None if v is None else str(v) for v in values], str, "")
    if kind is FieldType.NUMBER:
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    if kind is FieldType.BOOL:
        return np.array(values, dtype=bool)
    if kind in (FieldType.DATETIME, FieldType.DATE):
        unit = "D" if kind is FieldType.DATE else "us"
        naive = [None if v is None or unit == "D" else v.replace(tzinfo=None) for v in values]
        plain = values if unit == "D" else naive
        return np.array(plain, dtype=f"datetime64[{unit}]")
    if kind is FieldType.JSON:
        types = {type(v) for v in present}
        if types == {str}:
            return _masked(np, values, str, "")
        if types == {bool}:
            return _masked(np, values, bool, False)
        if types == {int}:
            return _masked(np, values, np.int64, 0)
        if types == {float}:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)
        return np.array(values, dtype=object)
    return values


def native_columns(items: list[Any], entity: RuleEntity) -> dict[str, Any]:
    np = pytest.importorskip("numpy")
    fields = FIELDS[entity]
    found = object_columns(items, entity)
    return {
        name: native_column(np, field_spec(name, fields, "custom").kind, values)
        for name, values in found.items()
    }


@settings(max_examples=50, deadline=None)
@given(column_models(), st.data())
def test_columns_give_the_totals_of_the_cards_bit_for_bit(
    scoring: ScoringModel, data: st.DataObject
) -> None:
    compiled = scoring.compile(Context(now=COLUMN_NOW))
    entity = scoring.entity
    items, rows = _draw_rows(data, entity, 12)
    if entity is RuleEntity.CONTACT:
        cards = [compiled.score(x).total for x in items]
    else:
        cards = [compiled.score(x, contact=c).total for x, c in zip(items, rows, strict=True)]
    for columns in (object_columns, native_columns):
        found = compiled.totals_columns(
            columns(items, entity),
            contact_columns=None
            if entity is RuleEntity.CONTACT
            else columns(rows, RuleEntity.CONTACT),
        )
        assert found.tolist() == cards  # exact: the same additions in the same order


@st.composite
def truth_models(draw: st.DrawFn) -> ScoringModel:
    """Per drawn rule, a criterion on its TRUE (points 4**i) and one on its FALSE (2 * 4**i):
    the total spells out every rule's three-valued truth."""
    entity = draw(st.sampled_from([RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.CONTACT]))
    criteria = []
    for i in range(draw(st.integers(2, 8))):
        over = entity if entity is RuleEntity.CONTACT or draw(st.booleans()) else RuleEntity.CONTACT
        rule = draw(cst.rules(over, activities=False, max_leaves=5))
        criteria.append(Criterion(f"t{i}", rule, 4.0**i))
        criteria.append(Criterion(f"f{i}", Rule(over, Not(rule.where)), 2 * 4.0**i))
    return ScoringModel(name="truths", criteria=tuple(criteria), entity=entity)


def _draw_rows(
    data: st.DataObject, entity: RuleEntity, size: int
) -> tuple[list[Any], list[Contact]]:
    people = [data.draw(column_contacts(i + 1)) for i in range(data.draw(st.integers(1, 4)))]
    rows = data.draw(st.lists(st.sampled_from(people), min_size=2, max_size=size))
    if entity is RuleEntity.CONTACT:
        return rows, rows
    make = column_leads if entity is RuleEntity.LEAD else column_deals
    return [data.draw(make(person, 100 + i)) for i, person in enumerate(rows)], rows


@settings(max_examples=80, deadline=None)
@given(truth_models(), st.data())
def test_columns_give_every_rule_the_truth_of_the_interpreter(
    scoring: ScoringModel, data: st.DataObject
) -> None:
    items, rows = _draw_rows(data, scoring.entity, 16)
    context = Context(now=COLUMN_NOW)
    expected = []
    for item, person in zip(items, rows, strict=True):
        total = 0.0
        for i, criterion in enumerate(scoring.criteria[::2]):
            target = person if criterion.rule.entity is not scoring.entity else item
            truth = evaluate(criterion.rule, target, context)
            total += 0.0 if truth is None else 4.0**i * (1 if truth else 2)
        expected.append(total)
    compiled = scoring.compile(context)
    for columns in (object_columns, native_columns):
        found = compiled.totals_columns(
            columns(items, scoring.entity), contact_columns=columns(rows, RuleEntity.CONTACT)
        )
        assert found.tolist() == expected


def _flags(values: list[object]) -> list[Contact]:
    return [attrs.evolve(ADA, id=UUID(int=500 + i), custom={"n": v}) for i, v in enumerate(values)]


BIG = 2**53


@pytest.mark.parametrize(
    "values",
    [
        [BIG - 1, BIG, BIG + 1, BIG + 2, -(2**63), 2**63 - 1, 0, None],
        [float(BIG), float(BIG + 2), 1e300, -1e300, -0.0, 0.5, None],
    ],
)
def test_columns_compare_big_numbers_exactly_as_python(values: list[object]) -> None:
    np = pytest.importorskip("numpy")
    literals = [BIG + 1, float(BIG), BIG - 1, 0.5, -0.5, 9.3e18, -9.3e18, 2**63 - 1, 0]
    criteria = tuple(
        Criterion(f"{op}{i}", contacts_where(Compare("custom.n", op, lit)), 2.0 ** (i % 20))
        for i, (op, lit) in enumerate((op, lit) for op in Op for lit in literals)
    )
    for chunk in range(0, len(criteria), 9):
        scoring = ScoringModel(
            name="big", criteria=criteria[chunk : chunk + 9], entity=RuleEntity.CONTACT
        )
        compiled = scoring.compile(Context(now=COLUMN_NOW))
        people = _flags(values)
        column = native_column(np, FieldType.JSON, values)
        assert column.dtype.kind in "if"
        found = compiled.totals_columns({"custom.n": column}).tolist()
        assert found == [compiled.score(p).total for p in people]
        assert compiled.totals_columns({"custom.n": values}).tolist() == found


def test_columns_tell_json_types_apart() -> None:
    np = pytest.importorskip("numpy")
    one = contacts_where(custom("n") == 1)
    criteria = (
        Criterion("is 1", one, 10),
        Criterion("not 1", contacts_where(~(custom("n") == 1)), 1),
        Criterion("in", contacts_where(custom("n").is_in(True, "1")), 100),
    )
    scoring = ScoringModel(name="json", criteria=criteria, entity=RuleEntity.CONTACT)
    compiled = scoring.compile(Context(now=COLUMN_NOW))
    values: list[object] = [True, 1, 1.0, False, 0, "1", None]
    expected = [100.0, 10.0, 10.0, 0.0, 1.0, 100.0, 0.0]
    assert [compiled.score(p).total for p in _flags(values)] == expected
    assert compiled.totals_columns({"custom.n": values}).tolist() == expected
    by_type = [
        (np.array([True, False]), [100.0, 0.0]),
        (np.array([1, 0]), [10.0, 1.0]),
        (np.array([1.0, math.nan]), [10.0, 0.0]),
        (np.array(["1", "x"]), [100.0, 0.0]),
    ]
    for column, wanted in by_type:
        assert compiled.totals_columns({"custom.n": column}).tolist() == wanted


def _lead_model() -> ScoringModel:
    return ScoringModel(
        name="leads",
        criteria=(
            Criterion("form", leads_where(field("channel") == "form"), 10),
            Criterion("uk", contacts_where(field("country") == "GB"), 20),
        ),
    )


@pytest.mark.parametrize(
    ("columns", "contact_columns", "where"),
    [
        ({"source": ["x"]}, {"country": ["GB"]}, "columns['channel']"),
        ({"channel": ["form"]}, {"language": ["en"]}, "contact_columns['country']"),
        ({"channel": ["form"]}, None, "contact_columns"),
        ({"channel": ["form", "chat"]}, {"country": ["GB"]}, "columns"),
        ({"channel": ["form"], "score": [1.0, 2.0]}, {"country": ["GB"]}, "columns"),
        (["form"], {"country": ["GB"]}, "columns"),
        ({"channel": "form"}, {"country": ["GB"]}, "columns['channel']"),
        ({"channel": None}, {"country": ["GB"]}, "columns['channel']"),
    ],
)
def test_bad_columns_are_rejected_naming_the_column(
    columns: Any, contact_columns: Any, where: str
) -> None:
    pytest.importorskip("numpy")
    compiled = _lead_model().compile(Context(now=COLUMN_NOW))
    with pytest.raises(ValidationError) as error:
        compiled.totals_columns(columns, contact_columns=contact_columns)
    assert error.value.field == where


def test_columns_of_the_wrong_type_are_rejected_naming_the_column() -> None:
    np = pytest.importorskip("numpy")
    compiled = _lead_model().compile(Context(now=COLUMN_NOW))
    contact = {"country": ["GB", None]}
    bad: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"channel": np.array([1.0, 2.0])}, contact),  # numbers for an enumeration
        ({"channel": np.zeros((2, 1))}, contact),  # two-dimensional
        ({"channel": ["form", "chat"]}, {"country": np.array(["2020-01-01"] * 2, "M8[D]")}),
    ]
    for columns, contact_columns in bad:
        with pytest.raises(ValidationError) as error:
            compiled.totals_columns(columns, contact_columns=contact_columns)
        assert error.value.field in ("columns['channel']", "contact_columns['country']")
    timed = ScoringModel(
        name="recent",
        criteria=(Criterion("recent", leads_where(field("created_at").within_last(30)), 5),),
    ).compile(Context(now=COLUMN_NOW))
    naive = [datetime(2026, 5, 1)]  # a naive time: not a value of the field
    for column in (naive, np.array(naive, dtype="datetime64[ns]")):
        with pytest.raises(ValidationError) as error:
            timed.totals_columns({"created_at": column})
        assert error.value.field == "columns['created_at']"
    assert timed.totals_columns({"created_at": np.array(naive, "M8[us]")}).tolist() == [5.0]
    tagged = ScoringModel(
        name="vip",
        criteria=(Criterion("vip", contacts_where(has_tag("vip")), 5),),
        entity=RuleEntity.CONTACT,
    ).compile(Context(now=COLUMN_NOW))
    with pytest.raises(ValidationError) as error:
        tagged.totals_columns({"tags": ["vip"]})  # a string, not a set of tags
    assert error.value.field == "columns['tags']"
    assert tagged.totals_columns({"tags": [["VIP"], {"x"}, frozenset()]}).tolist() == [5, 0, 0]


def test_criteria_that_need_the_entities_are_rejected_naming_the_criterion() -> None:
    pytest.importorskip("numpy")
    with pytest.raises(ValidationError) as error:
        model().compile(Context(now=NOW)).totals_columns({})
    assert (error.value.field, error.value.value) == ("criteria[4]", "pricing")
    assert "activity" in error.value.reason
    vip = Segment.new(name="VIP", members=[ADA.id], clock=CLOCK)
    in_vip = ScoringModel(
        name="segment",
        criteria=(
            Criterion("uk", contacts_where(field("country") == "GB"), 1),
            Criterion("in vip", contacts_where(in_segment(vip) | has_tag("x")), 5),
        ),
        entity=RuleEntity.CONTACT,
    )
    compiled = in_vip.compile(Context(now=NOW, segments={vip.id: vip}))
    with pytest.raises(ValidationError) as error:
        compiled.totals_columns({"country": ["GB"], "tags": [frozenset()]})
    assert (error.value.field, error.value.value) == ("criteria[1]", "in vip")
    assert "segment" in error.value.reason


def test_columns_without_numpy_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = _lead_model().compile(Context(now=COLUMN_NOW))
    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(MissingExtra) as error:
        compiled.totals_columns({"channel": ["form"]}, contact_columns={"country": ["GB"]})
    assert (error.value.extra, error.value.package) == ("fast", "numpy")


def test_long_in_lists_on_text_arrays_agree_with_the_cards() -> None:
    np = pytest.importorskip("numpy")
    many = ("DE", "AT", "CH", "GB", "IE", "FR", "BE", "NL", "LU", "IT")
    scoring = ScoringModel(
        name="countries",
        criteria=(
            Criterion("in", contacts_where(field("country").is_in(*many)), 1),
            Criterion("not in", contacts_where(field("country").not_in(*many)), 2),
        ),
        entity=RuleEntity.CONTACT,
    )
    compiled = scoring.compile(Context(now=COLUMN_NOW))
    people = [
        attrs.evolve(ADA, id=UUID(int=900 + i), country=c)
        for i, c in enumerate(["LU", "SE", None, "DE"])
    ]
    column = native_column(np, FieldType.COUNTRY, [p.country for p in people])
    found = compiled.totals_columns({"country": column}).tolist()
    assert found == [compiled.score(p).total for p in people] == [1.0, 2.0, 0.0, 1.0]
