"""Rule scoring: criteria, decay, caps, bands, compiled totals and bad input."""

import math
from datetime import UTC, datetime, timedelta
from uuid import UUID

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import CrmkitError, NotFound, ValidationError
from crmkit.models import Activity, ActivityKind, Contact, Lead, LeadChannel, LeadStatus
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
    field,
    has_tag,
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
