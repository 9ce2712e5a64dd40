"""Evaluating rules: SQL's three-valued logic, the compiled fast path, segments."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import Activity, ActivityKind, Contact, Deal, Money, Segment
from crmkit.models.rules import And, Condition, Not, Or, Rule, RuleEntity
from crmkit.segmentation import (
    Context,
    activity,
    check_segments,
    compile_rule,
    compile_selector,
    contacts_where,
    custom,
    deals_where,
    evaluate,
    field,
    has_tag,
    in_segment,
    members,
    overlap,
    prop,
    segment_size,
    select,
)
from crmkit.testing import strategies as cst

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
CONTEXT = Context(now=NOW)
CLOCK = FixedClock(NOW - timedelta(days=400))


def contact(**fields: Any) -> Contact:
    return Contact.new(clock=CLOCK, **fields)


def truth(condition: Condition, entity: Contact, context: Context = CONTEXT) -> bool | None:
    """The reference truth, checked against the compiled predicate on the way."""
    rule = contacts_where(condition)
    value = evaluate(rule, entity, context)
    assert compile_rule(rule, context)(entity) is (value is True)
    return value


ADA = contact(first_name="Ada", email="ada@example.com", country="GB", tags=["VIP"])
NOBODY = contact()  # every optional field missing


# ---------------------------------------------------------------------------- NULL


def test_comparisons_with_a_missing_value_are_unknown() -> None:
    assert truth(field("country") == "DE", NOBODY) is None
    assert truth(field("country") != "DE", NOBODY) is None
    assert truth(~(field("country") == "DE"), NOBODY) is None
    assert truth(field("country") == "GB", ADA) is True
    assert truth(field("country") != "GB", ADA) is False


def test_kleene_and_or() -> None:
    unknown, true, false = field("country") == "DE", has_tag("x") | ~has_tag("x"), has_tag("x")
    assert truth(unknown & false, NOBODY) is False
    assert truth(unknown & true, NOBODY) is None
    assert truth(unknown | true, NOBODY) is True
    assert truth(unknown | false, NOBODY) is None


def test_in_and_not_in_follow_sql_with_null_in_the_list() -> None:
    assert truth(field("country").is_in("GB", "DE"), ADA) is True
    assert truth(field("country").is_in("SE", "DE"), ADA) is False
    assert truth(field("country").is_in("SE", None), ADA) is None  # GB = NULL is UNKNOWN
    assert truth(field("country").is_in("GB", None), ADA) is True
    assert truth(field("country").not_in("SE", "DE"), ADA) is True
    assert truth(field("country").not_in("SE", None), ADA) is None  # never TRUE with a NULL
    assert truth(field("country").not_in("GB", None), ADA) is False
    assert truth(field("country").is_in("GB"), NOBODY) is None


def test_between_is_inclusive_and_unknown_for_missing() -> None:
    lead_score = contact(custom={"score": 10})
    assert truth(custom("score").between(10, 20), lead_score) is True
    assert truth(custom("score").between(11, 20), lead_score) is False
    assert truth(custom("score").between(1, 10), lead_score) is True
    assert truth(custom("score").between(1, 10), NOBODY) is None


def test_is_null_is_never_unknown() -> None:
    assert truth(field("email").is_null(), NOBODY) is True
    assert truth(field("email").is_not_null(), NOBODY) is False
    assert truth(custom("plan").is_null(), contact(custom={"plan": None})) is True
    assert truth(custom("plan").is_null(), contact(custom={"plan": "pro"})) is False


def test_custom_fields_of_another_json_type_are_unknown() -> None:
    seats = contact(custom={"seats": "12", "trial": True, "mrr": 9.5})
    assert truth(custom("seats") == 12, seats) is None  # text "12" is not the number 12
    assert truth(custom("seats") == "12", seats) is True
    assert truth(custom("trial") == 1, seats) is None  # true is not 1
    assert truth(custom("trial") == True, seats) is True  # noqa: E712
    assert truth(custom("mrr") > 9, seats) is True  # ints and floats are both numbers
    assert truth(custom("missing") == "x", seats) is None


def test_money_compares_within_one_currency() -> None:
    deal = Deal.new(title="x", pipeline="p", stage="s", amount=Money("100", "EUR"), clock=CLOCK)
    rule_eur = deals_where(field("amount") > Money("50", "EUR"))
    rule_usd = deals_where(field("amount") > Money("50", "USD"))
    assert evaluate(rule_eur, deal, CONTEXT) is True
    assert evaluate(rule_usd, deal, CONTEXT) is None
    assert compile_rule(rule_usd, CONTEXT)(deal) is False


def test_text_and_tags_match_case_insensitively() -> None:
    strasse = contact(last_name="STRASSE", tags=["Newsletter"])
    assert truth(field("last_name").contains("straße"), strasse) is True  # casefold: ß = ss
    assert truth(field("last_name").startswith("str"), strasse) is True
    assert truth(field("last_name").endswith("SSE"), strasse) is True
    assert truth(field("last_name").contains("x"), strasse) is False
    assert truth(field("last_name").contains("x"), NOBODY) is None
    assert truth(has_tag("newsletter"), strasse) is True
    assert truth(has_tag("vip"), strasse) is False
    assert truth(custom("plan").contains("p"), contact(custom={"plan": 5})) is None


# ---------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("age", "within_30", "older_than_30"),
    [
        (timedelta(0), True, False),
        (timedelta(days=30), True, False),  # the window includes its start
        (timedelta(days=30, seconds=1), False, True),
        (timedelta(days=-1), False, False),  # in the future: not within the last 30 days
    ],
)
def test_relative_windows(age: timedelta, within_30: bool, older_than_30: bool) -> None:
    when = NOW - age
    entity = attrs.evolve(NOBODY, created_at=when - timedelta(days=1), updated_at=when)
    assert truth(field("updated_at").within_last(30), entity) is within_30
    assert truth(field("updated_at").more_than_days_ago(30), entity) is older_than_30


@pytest.mark.parametrize(
    ("now", "inside", "outside"),
    [
        (datetime(2026, 3, 15, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC),
         datetime(2026, 2, 28, 23, 59, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
         datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_this_month(now: datetime, inside: datetime, outside: datetime) -> None:
    context = Context(now=now)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for when, expected in ((inside, True), (outside, False)):
        entity = attrs.evolve(NOBODY, created_at=start, updated_at=when)
        assert truth(field("updated_at").this_month(), entity, context) is expected


def test_date_fields_use_calendar_days() -> None:
    deal = Deal.new(
        title="x", pipeline="p", stage="s", expected_close=date(2026, 3, 1), clock=CLOCK
    )
    assert evaluate(deals_where(field("expected_close").within_last(14)), deal, CONTEXT) is True
    assert evaluate(deals_where(field("expected_close").within_last(13)), deal, CONTEXT) is False
    assert evaluate(deals_where(field("expected_close").this_month()), deal, CONTEXT) is True
    undated = attrs.evolve(deal, expected_close=None)
    assert evaluate(deals_where(field("expected_close").this_month()), undated, CONTEXT) is None


# ---------------------------------------------------------------------------- activities


def visit(who: Contact, url: str, days_ago: float) -> Activity:
    return Activity.new(
        contact_id=who.id,
        kind=ActivityKind.PAGE_VIEW,
        occurred_at=NOW - timedelta(days=days_ago),
        properties={"url": url},
        clock=CLOCK,
    )


def purchase(who: Contact, amount: str, currency: str, days_ago: float) -> Activity:
    return Activity.new(
        contact_id=who.id,
        kind=ActivityKind.PURCHASE,
        occurred_at=NOW - timedelta(days=days_ago),
        amount=Money(amount, currency),
        properties={"product": "seats"},
        clock=CLOCK,
    )


def test_activity_counts_with_filter_and_window() -> None:
    index = {
        ADA.id: [
            visit(ADA, "https://x.io/PRICING", 2),
            visit(ADA, "https://x.io/pricing/teams", 29),
            visit(ADA, "https://x.io/pricing", 31),  # outside the window
            visit(ADA, "https://x.io/blog", 1),
        ]
    }
    context = Context(now=NOW, activities=index)
    pricing = activity(
        ActivityKind.PAGE_VIEW, within_days=30, where=prop("url").contains("/pricing")
    )
    assert truth(pricing.count() >= 2, ADA, context) is True
    assert truth(pricing.count() >= 3, ADA, context) is False
    assert truth(pricing.count() == 0, NOBODY, context) is True  # no activities: count 0
    everything = activity(ActivityKind.PAGE_VIEW)
    assert truth(everything.count() == 4, ADA, context) is True
    replay = Context(now=NOW - timedelta(days=30), activities=index)  # as known 30 days ago
    assert truth(everything.count() == 1, ADA, replay) is True
    assert truth(activity(ActivityKind.CALL).exists(), ADA, context) is False


def test_activity_sums_add_one_currency() -> None:
    index = {
        ADA.id: [
            purchase(ADA, "300", "EUR", 10),
            purchase(ADA, "250.50", "EUR", 200),
            purchase(ADA, "9000", "USD", 5),  # another currency: not added
            purchase(ADA, "1000", "EUR", 400),  # older than a year
        ]
    }
    context = Context(now=NOW, activities=index)
    spend = activity(ActivityKind.PURCHASE, within_days=365).total()
    assert truth(spend > Money("500", "EUR"), ADA, context) is True
    assert truth(spend > Money("550.50", "EUR"), ADA, context) is False
    assert truth(spend == Money("9000", "USD"), ADA, context) is True
    assert truth(spend == Money("0", "EUR"), NOBODY, context) is True


def test_activity_conditions_of_deals_read_their_contact() -> None:
    index = {ADA.id: [visit(ADA, "/pricing", 1)]}
    deal = Deal.new(title="x", pipeline="p", stage="s", contact_id=ADA.id, clock=CLOCK)
    orphan = attrs.evolve(deal, contact_id=None)
    rule = deals_where(activity(ActivityKind.PAGE_VIEW).exists())
    context = Context(now=NOW, activities=index)
    assert evaluate(rule, deal, context) is True
    assert evaluate(rule, orphan, context) is False
    assert compile_rule(rule, context)(orphan) is False


# ---------------------------------------------------------------------------- segments


def test_segment_membership_static_dynamic_and_nested() -> None:
    gb = Segment.new(name="GB", rule=contacts_where(field("country") == "GB"), clock=CLOCK)
    listed = Segment.new(name="Fair", members=[NOBODY.id], clock=CLOCK)
    vip_gb = Segment.new(
        name="VIP in GB", rule=contacts_where(in_segment(gb) & has_tag("vip")), clock=CLOCK
    )
    catalogue = {s.id: s for s in (gb, listed, vip_gb)}
    context = Context(now=NOW, segments=catalogue)
    people = [ADA, NOBODY, contact(country="GB")]
    assert members(gb, people, context) == [ADA, people[2]]
    assert segment_size(gb, people, context) == 2
    assert members(listed, people, context) == [NOBODY]
    assert members(vip_gb, people, context) == [ADA]
    assert truth(~in_segment(listed), NOBODY, context) is False
    assert overlap(gb, vip_gb, people, context) == overlap(gb, vip_gb, iter(people), context)
    shared = overlap(gb, vip_gb, people, context)
    assert (shared.only_a, shared.only_b, shared.both, shared.union) == (1, 0, 1, 2)
    assert shared.jaccard == 0.5


def test_segment_cycles_and_unknown_segments_are_rejected() -> None:
    a_id, b_id = uuid4(), uuid4()
    a = attrs.evolve(
        Segment.new(name="A", rule=contacts_where(in_segment(b_id)), clock=CLOCK), id=a_id
    )
    b = attrs.evolve(
        Segment.new(name="B", rule=contacts_where(in_segment(a_id) | has_tag("x")), clock=CLOCK),
        id=b_id,
    )
    catalogue = {a_id: a, b_id: b}
    context = Context(now=NOW, segments=catalogue)
    with pytest.raises(InvalidRule, match="refer to each other"):
        check_segments(catalogue)
    with pytest.raises(InvalidRule, match="refer to each other"):
        members(a, [ADA], context)
    with pytest.raises(InvalidRule, match="refer to each other"):
        evaluate(a.rule, ADA, context)  # type: ignore[arg-type]
    with pytest.raises(InvalidRule, match="no such segment") as caught:
        compile_rule(contacts_where(in_segment(uuid4())), CONTEXT)
    assert caught.value.field == "segment_id"
    with pytest.raises(InvalidRule, match="no such segment"):
        check_segments({a_id: a})


def test_check_segments_accepts_a_shared_dependency() -> None:
    base = Segment.new(name="base", rule=contacts_where(has_tag("x")), clock=CLOCK)
    left = Segment.new(name="left", rule=contacts_where(in_segment(base)), clock=CLOCK)
    right = Segment.new(name="right", rule=contacts_where(in_segment(base)), clock=CLOCK)
    both = Segment.new(
        name="both", rule=contacts_where(in_segment(left) & in_segment(right)), clock=CLOCK
    )
    check_segments({s.id: s for s in (base, left, right, both)})


def test_select_refuses_entities_of_another_kind() -> None:
    with pytest.raises(ValidationError, match="selects Deal objects") as caught:
        select(deals_where(field("owner") == "x"), [ADA], CONTEXT)
    assert caught.value.field == "entities[0]"
    assert select(deals_where(field("owner") == "x"), [], CONTEXT) == []


def test_select_keeps_order_and_compiles_once() -> None:
    people = [contact(country=c) for c in ("DE", "SE", "DE", "GB", "DE")]
    rule = contacts_where(field("country") == "DE")
    assert select(rule, people, CONTEXT) == [people[0], people[2], people[4]]
    assert compile_selector(rule, CONTEXT)(iter(people)) == [people[0], people[2], people[4]]


# ---------------------------------------------------------------------------- properties


@given(st.data())
def test_compiled_rules_agree_with_the_interpreter(data: st.DataObject) -> None:
    people = data.draw(st.lists(cst.rule_contacts(), min_size=1, max_size=5))
    listed = Segment.new(
        name="listed", members=[p.id for p in people if data.draw(st.booleans())], clock=CLOCK
    )
    ruled = Segment.new(name="ruled", rule=data.draw(cst.rules(max_leaves=3)), clock=CLOCK)
    segments = {listed.id: listed, ruled.id: ruled}
    context = Context(
        now=NOW, activities=data.draw(cst.activity_indexes(people, now=NOW)), segments=segments
    )
    rule = data.draw(cst.rules(RuleEntity.CONTACT, segment_ids=list(segments)))
    matches = compile_rule(rule, context)
    expected = [p for p in people if evaluate(rule, p, context) is True]
    assert [p for p in people if matches(p)] == expected
    assert select(rule, people, context) == expected


@pytest.mark.parametrize("entity", list(RuleEntity))
@given(data=st.data())
def test_random_rules_over_random_entities_never_raise(entity: RuleEntity, data: Any) -> None:
    rule = data.draw(cst.rules(entity))
    target = {
        RuleEntity.CONTACT: cst.contacts(),
        RuleEntity.LEAD: cst.leads(),
        RuleEntity.DEAL: cst.deals(),
        RuleEntity.TICKET: cst.tickets(),
    }[entity]
    item = data.draw(target)
    value = evaluate(rule, item, CONTEXT)
    assert value in (True, False, None)
    assert compile_rule(rule, CONTEXT)(item) is (value is True)


def rule_truth(condition: Condition, person: Contact, context: Context) -> bool | None:
    return evaluate(Rule(RuleEntity.CONTACT, condition), person, context)


@given(cst.conditions(max_leaves=3), cst.conditions(max_leaves=3), cst.rule_contacts())
def test_de_morgan_laws_hold_in_three_valued_logic(
    a: Condition, b: Condition, who: Contact
) -> None:
    for left, right in (
        (Not(And((a, b))), Or((Not(a), Not(b)))),
        (Not(Or((a, b))), And((Not(a), Not(b)))),
        (Not(Not(a)), a),
    ):
        assert rule_truth(left, who, CONTEXT) == rule_truth(right, who, CONTEXT)
        assert truth(left, who) == truth(right, who)


@given(cst.conditions(), cst.rule_contacts())
def test_not_unknown_is_unknown(a: Condition, who: Contact) -> None:
    value = rule_truth(a, who, CONTEXT)
    negated = rule_truth(Not(a), who, CONTEXT)
    assert negated is (None if value is None else not value)


def test_decimal_fields_read_float_literals_as_written() -> None:
    deal = Deal.new(title="x", pipeline="p", stage="s", probability=Decimal("0.10"), clock=CLOCK)
    assert evaluate(deals_where(field("probability") == 0.1), deal, CONTEXT) is True
    assert evaluate(deals_where(field("probability") < Decimal("0.75")), deal, CONTEXT) is True


def test_email_literals_match_the_stored_address() -> None:
    ada = contact(email="Ada@Example.com")
    assert truth(field("email") == "Ada@Example.com", ada) is True
    assert truth(field("email") == "ada@example.com", ada) is False  # the local part keeps case
    assert truth(field("email").contains("ADA@"), ada) is True


def test_now_is_read_in_utc() -> None:
    from datetime import timezone  # noqa: PLC0415

    with pytest.raises(ValidationError, match="naive"):
        Context(now=datetime(2026, 3, 1))
    east = Context(now=datetime(2026, 4, 1, 3, tzinfo=timezone(timedelta(hours=5))))
    assert east.now == datetime(2026, 3, 31, 22, tzinfo=UTC)
    march = attrs.evolve(NOBODY, created_at=datetime(2020, 1, 1, tzinfo=UTC),
                         updated_at=datetime(2026, 3, 31, 12, tzinfo=UTC))  # fmt: skip
    assert truth(field("updated_at").this_month(), march, east) is True


@st.composite
def segment_graphs(draw: st.DrawFn) -> dict[UUID, Segment]:
    """Segments whose rules name each other at random (cycles included)."""
    ids = [UUID(int=i + 1) for i in range(draw(st.integers(1, 6)))]
    catalogue = {}
    for segment_id in ids:
        named = draw(st.lists(st.sampled_from(ids), max_size=3, unique=True))
        if named:
            condition: Condition = Or(tuple(in_segment(n) for n in named))
            segment = Segment.new(name="s", rule=contacts_where(condition), clock=CLOCK)
        else:
            segment = Segment.new(name="s", members=[ADA.id], clock=CLOCK)
        catalogue[segment_id] = attrs.evolve(segment, id=segment_id)
    return catalogue


def has_cycle(catalogue: dict[UUID, Segment]) -> bool:
    """Kahn's algorithm: a graph has a cycle when peeling off sinks leaves nodes behind."""
    edges = {
        s: {n.segment_id for n in seg.rule.walk() if hasattr(n, "segment_id")}
        if seg.rule
        else set()
        for s, seg in catalogue.items()
    }
    while True:
        sinks = {s for s, out in edges.items() if not out}
        if not sinks:
            return bool(edges)
        edges = {s: out - sinks for s, out in edges.items() if s not in sinks}


@given(segment_graphs())
def test_segment_cycles_are_rejected_exactly_when_there_is_one(
    catalogue: dict[UUID, Segment],
) -> None:
    context = Context(now=NOW, segments=catalogue)
    if has_cycle(catalogue):
        with pytest.raises(InvalidRule, match="refer to each other"):
            check_segments(catalogue)
    else:
        check_segments(catalogue)
        for segment in catalogue.values():
            members(segment, [ADA, NOBODY], context)  # evaluates without error
