"""Regression tests of issue 12, section 1: inputs that once raised errors that were not
crmkit errors (found by fuzzing, see tests/test_fuzz.py), and the smaller findings.

Each either gets a correct answer or a typed crmkit error naming the field.
"""

import base64
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import numpy as np
import pytest

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import InvalidRule, ValidationError
from crmkit.lifecycle import (
    BusinessCalendar,
    CheckInPlan,
    Pipeline,
    Stage,
    StageKind,
    StageRequirements,
    Touchpoint,
    TransitionMode,
    add_business_time,
    breached,
    check_ins_due,
    due_within,
    follow_ups,
    record_csat,
    ticket_events,
    timeline,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    Contact,
    Deal,
    Lead,
    LeadChannel,
    LifecycleStage,
    Money,
    Segment,
    SubjectKind,
    Task,
    TaskKind,
    TicketChannel,
)
from crmkit.models.rules import (
    DateWindow,
    InSegment,
    IsNull,
    Not,
    RelativeDate,
    Rule,
    RuleEntity,
)
from crmkit.scoring import (
    Example,
    LogisticScorer,
    NaiveBayesScorer,
    brier_score,
    calibration_table,
    cross_validate,
    lead_examples,
    lift_by_decile,
    log_loss,
    pr_auc,
    roc_auc,
    stratified_folds,
    wilson_interval,
)
from crmkit.segmentation import (
    Context,
    activity,
    assign_variant,
    check_segments,
    compile_rule,
    compile_sum,
    contacts_where,
    custom,
    deals_where,
    evaluate,
    field,
    members,
    rfm_group,
    select,
    two_proportion_test,
)
from crmkit.serialization import make_converter
from crmkit.storage import Cursor, MemoryStore, Order, Store
from crmkit.storage.sql import open_store
from tests.storage_support import postgres_url

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    clock = FixedClock(NOW, step=timedelta(seconds=1))
    tenant = f"input-{uuid4().hex[:12]}"  # a tenant of its own: the server is shared
    if request.param == "memory":
        yield MemoryStore(tenant=tenant, clock=clock)
        return
    url = f"sqlite:///{tmp_path / 'input.db'}" if request.param == "sqlite" else postgres_url()
    made = open_store(url, tenant=tenant, clock=clock)
    yield made
    made.close()


def _token(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


# ------------------------------------------------------------------ stores


def test_rules_compare_money_and_decimals_of_ten_to_the_sixteen_and_more(store: Store) -> None:
    """SQL once failed with decimal.InvalidOperation quantising such literals to 12 places
    (the default context holds 28 digits); every store now gives the interpreter's answer."""
    amounts = [Decimal(0), Decimal(10) ** 16, Decimal("12345678901234567.5"), Decimal(10) ** 17]
    deals = [
        Deal.new(title=f"d{i}", pipeline="sales", stage="new", amount=Money(amount, "EUR"))
        for i, amount in enumerate(amounts)
    ]
    with store.unit_of_work() as unit:
        unit.deals.add_many(deals)
        unit.commit()
    literals = ["1E+16", "12345678901234567.5", "12345678901234567.25", "99999999999999999.9"]
    with store.unit_of_work() as unit:
        for text in literals:
            literal = Decimal(text)
            for rule in (
                deals_where(field("amount") >= Money(literal, "EUR")),
                deals_where(field("amount") == Money(literal, "EUR")),
                deals_where(field("amount") < Money(literal, "EUR")),
                deals_where(field("probability") < literal),
            ):
                expected = {d.id for d in deals if evaluate(rule, d, Context(NOW)) is True}
                assert set(unit.deals.ids(rule)) == expected, (text, rule)
        big = deals_where(field("amount") >= Money(Decimal(10) ** 16, "EUR"))
        assert unit.deals.count(big) == 3


def test_a_second_page_ordered_by_a_boolean_field(store: Store) -> None:
    """SQLAlchemy refused ``column > True`` (ArgumentError) when the cursor held a bool."""
    deals = [
        Deal.new(title=f"d{i}", pipeline="sales", stage="new", probability_manual=i % 2 == 0)
        for i in range(5)
    ]
    with store.unit_of_work() as unit:
        unit.deals.add_many(deals)
        unit.commit()
    for descending in (False, True):
        order = Order("probability_manual", descending)
        seen: list[UUID] = []
        after = None
        with store.unit_of_work() as unit:
            while True:
                page = unit.deals.find(order=order, limit=2, after=after)
                seen.extend(d.id for d in page)
                if page.next is None:
                    break
                after = Cursor.from_token(page.next.token(), Deal)
        expected = sorted(deals, key=lambda d: (d.probability_manual, d.id), reverse=descending)
        assert seen == [d.id for d in expected]


@pytest.mark.parametrize(
    "now",
    [
        datetime.min.replace(tzinfo=UTC),
        datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime.max.replace(tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC),
    ],
    ids=["year-1", "year-1-in-a-zone", "year-9999-end", "year-9999"],
)
def test_queries_at_the_ends_of_time(store: Store, now: datetime) -> None:
    """Windows reaching before year 1 or after 9999 once raised OverflowError; they are
    now cut at the first or last representable time, which gives the same answers."""
    contact = Contact.new(email="ada@example.com", clock=FixedClock(NOW))
    view = Activity.new(contact_id=contact.id, kind=ActivityKind.PAGE_VIEW, clock=FixedClock(NOW))
    with store.unit_of_work() as unit:
        unit.contacts.add(contact)
        unit.activities.append(view)
        unit.commit()
    rules = [
        contacts_where(activity(ActivityKind.PAGE_VIEW, within_days=30).count() >= 1),
        contacts_where(activity(ActivityKind.PAGE_VIEW, within_days=36500).count() >= 1),
        Rule(RuleEntity.CONTACT, RelativeDate("created_at", DateWindow.WITHIN_LAST, 36500)),
        Rule(RuleEntity.CONTACT, RelativeDate("created_at", DateWindow.MORE_THAN_AGO, 36500)),
        Rule(RuleEntity.CONTACT, RelativeDate("created_at", DateWindow.THIS_MONTH)),
    ]
    with store.unit_of_work() as unit:
        for rule in rules:
            expected = evaluate(rule, contact, Context(now, activities={contact.id: [view]}))
            found = unit.contacts.ids(rule, now=now)
            assert found == ([contact.id] if expected is True else []), rule


# ------------------------------------------------------------------ cursors


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),  # RecursionError in json
        _token(["score", False, 10**400, str(uuid4())]),  # OverflowError in float()
        _token(["score", False, float("inf"), str(uuid4())]),
        _token(["created_at", False, "0001-01-01T00:00:00+05:00", str(uuid4())]),
        "not base64 at all!",
    ],
    ids=["nested", "huge-int", "infinity", "before-year-1", "garbage"],
)
def test_cursor_tokens_that_are_not_cursors(token: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Cursor.from_token(token, Lead)
    assert caught.value.field == "cursor"


def test_a_cursor_token_must_be_a_string() -> None:
    with pytest.raises(ValidationError) as caught:
        Cursor.from_token(["score"], Lead)  # type: ignore[arg-type]
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("probability_manual", [1]),
        ("probability_manual", "x"),
        ("title", 5),
        ("created_at", "x"),
        ("created_at", datetime(2026, 1, 1)),  # naive
        ("id", "x"),
        ("status", 3),
        ("title", 10**5000),
        ("expected_close", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
    ids=lambda value: type(value).__name__,
)
def test_a_cursor_whose_value_is_not_one_of_its_field(
    store: Store, field_name: str, value: object
) -> None:
    """Made by hand rather than read from a token: once a TypeError (memory) or a driver
    error (SQL) on comparing the value."""
    order = Order(field_name)
    with store.unit_of_work() as unit:
        unit.deals.add(Deal.new(title="Engine", pipeline="sales", stage="new"))
        with pytest.raises(ValidationError) as caught:
            unit.deals.find(order=order, after=Cursor(order, value, uuid4()))
    assert caught.value.field == "after.value"


# ------------------------------------------------------------------ numbers


def test_an_int_too_long_to_print_is_named_by_its_size() -> None:
    """Formatting the message once raised ValueError (int-to-str's 4,300 digit limit)."""
    huge = 10**5000
    task = Task.new(title="Call", kind=TaskKind.CALL, due_at=NOW, clock=FixedClock(NOW))
    with pytest.raises(ValidationError) as caught:
        attrs.evolve(task, version=huge)
    assert caught.value.field == "version"
    assert caught.value.value == huge
    assert "<int of 16610 bits>" in str(caught.value)
    assert "<int of 16610 bits>" in repr(caught.value.problems[0])
    with pytest.raises(ValidationError) as caught:
        Contact.new(email="jo@example.com", custom={"n": [huge]})  # type: ignore[dict-item]
    assert "<int of 16610 bits>" in str(caught.value)


@pytest.mark.parametrize("score", [10**400, -(10**400), Decimal("sNaN"), math.nan, True])
def test_lead_scores_beyond_a_float(score: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Lead.new(contact_id=uuid4(), source="form", channel=LeadChannel.FORM, score=score)  # type: ignore[arg-type]
    assert caught.value.field == "score"


@pytest.mark.parametrize("score", [Decimal("sNaN"), Decimal("NaN"), 10**400, "50", [1]])
def test_crm_score_lead_refuses_what_is_not_a_finite_number(score: object) -> None:
    crm = CRM(MemoryStore(clock=FixedClock(NOW)))
    lead = crm.capture_lead(
        Touchpoint(email="jo@example.com", source="form", channel=LeadChannel.FORM)
    ).lead
    with pytest.raises(ValidationError) as caught:
        crm.score_lead(lead.id, score)  # type: ignore[arg-type]
    assert caught.value.field == "score"


def test_logistic_regression_fits_values_near_the_end_of_floats() -> None:
    """Squaring values near 1e154 once raised OverflowError while standardising."""
    examples = [
        Example({"x": value}, won)
        for value, won in [(1e154, True), (-1e154, False), (3e154, True), (1e308, False)]
    ]
    for backend in ("python", "numpy"):
        model = LogisticScorer.fit(examples, backend=backend)  # type: ignore[arg-type]
        assert math.isfinite(model.numeric[0].scale)
        assert 0.0 <= model.predict({"x": 2e154}) <= 1.0
    with pytest.raises(ValidationError) as caught:
        LogisticScorer.fit([Example({"x": 10**400}, True), Example({"x": 1}, False)])
    assert caught.value.field.endswith("x")


# ------------------------------------------------------------------ collections


def test_unhashable_members_of_a_segment() -> None:
    with pytest.raises(ValidationError) as caught:
        Segment.new(name="VIP", members=[uuid4(), [1]])  # type: ignore[list-item]
    assert caught.value.field == "members[1]"
    with pytest.raises(ValidationError) as caught:
        Segment.new(name="VIP", members="not ids")  # type: ignore[arg-type]
    assert caught.value.field == "members"
    ids = [uuid4(), uuid4()]
    assert Segment.new(name="VIP", members=iter(ids)).members == frozenset(ids)


def test_unhashable_stage_requirements() -> None:
    with pytest.raises(ValidationError) as caught:
        StageRequirements(required_fields=["amount", [1]])  # type: ignore[list-item]
    assert caught.value.field == "required_fields"
    assert caught.value.value == [1]
    with pytest.raises(ValidationError) as caught:
        StageRequirements(guards=[{"a": 1}, "in_stock"])  # type: ignore[list-item]
    assert caught.value.field == "guards[0]"


def test_unhashable_transitions() -> None:
    with pytest.raises(ValidationError) as caught:
        Pipeline(
            key="p",
            label="P",
            subject=SubjectKind.DEAL,
            stages=(
                Stage(key="a", label="A"),
                Stage(key="won", label="Won", kind=StageKind.WON, probability=Decimal(1)),
            ),
            mode=TransitionMode.EXPLICIT,
            transitions=[["a", ["won"]], ("a", "won")],  # type: ignore[list-item]
        )
    assert [(p.field, p.value) for p in caught.value.problems] == [("transitions", ("a", ["won"]))]


# ------------------------------------------------------------------ CRM and lifecycle


@pytest.mark.parametrize("kind", [[], {}, "e-mail", None])
def test_reply_to_ticket_with_a_kind_that_is_no_activity_kind(kind: object) -> None:
    crm = CRM(MemoryStore(clock=FixedClock(NOW)))
    contact = crm.capture_lead(
        Touchpoint(email="jo@example.com", source="form", channel=LeadChannel.FORM)
    ).contact
    ticket = crm.open_ticket(contact.id, subject="Help", channel=TicketChannel.EMAIL)
    with pytest.raises(ValidationError) as caught:
        crm.reply_to_ticket(ticket.id, by="ada", text="Hi", kind=kind)  # type: ignore[arg-type]
    assert caught.value.field == "kind"


@pytest.mark.parametrize("custom", [[1], "ab", {"Bad Key": 1}, {"x": math.nan}])
def test_touchpoint_custom_fields_are_checked(custom: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Touchpoint(email="jo@example.com", source="form", channel=LeadChannel.FORM, custom=custom)  # type: ignore[arg-type]
    assert caught.value.field.startswith("custom")


def test_follow_ups_within_a_huge_interval() -> None:
    task = Task.new(title="Call", kind=TaskKind.CALL, due_at=NOW + timedelta(days=400))
    found = follow_ups([task], now=NOW, within=timedelta.max)
    assert found.due_soon == (task,)
    crm = CRM(MemoryStore(clock=FixedClock(NOW)))
    crm.create_task(task)
    assert crm.follow_ups(within=timedelta.max).due_soon == (task,)


def test_check_ins_past_year_9999_are_refused() -> None:
    customer = Contact.new(
        email="jo@example.com", lifecycle_stage=LifecycleStage.CUSTOMER, clock=FixedClock(NOW)
    )
    plan = CheckInPlan(every=timedelta.max)
    with pytest.raises(ValidationError) as caught:
        check_ins_due([customer], [], plan, now=NOW)
    assert caught.value.field == "plan.every"
    crm = CRM(MemoryStore(clock=FixedClock(NOW)))
    with crm.store.unit_of_work() as unit:
        unit.contacts.add(customer)
        unit.commit()
    with pytest.raises(ValidationError):
        crm.schedule_check_ins(plan)


def test_a_clock_that_is_no_clock() -> None:
    with pytest.raises(ValidationError) as caught:
        Contact.new(email="jo@example.com", clock={})  # type: ignore[arg-type]
    assert caught.value.field == "clock"


# ------------------------------------------------------------------ JSON


def test_json_reading_does_not_split_a_string_into_a_transition_pair() -> None:
    converter = make_converter()
    document = {
        "key": "p",
        "label": "P",
        "subject": "deal",
        "stages": [
            {"key": "a", "label": "A"},
            {"key": "b", "label": "B", "kind": "won", "probability": "1"},
        ],
        "mode": "explicit",
        "transitions": ["ab", ["a"], ["a", 1]],
    }
    with pytest.raises(ValidationError) as caught:
        converter.structure(document, Pipeline)
    found = {p.field: p.reason for p in caught.value.problems}
    assert found == {
        "$.transitions[0]": "expected a list of 2 items",
        "$.transitions[1]": "expected a list of 2 items",
        "$.transitions[2][1]": "expected a string",
    }
    document["transitions"] = [["a", "b"]]
    assert converter.structure(document, Pipeline).transitions == (("a", "b"),)


@pytest.mark.parametrize("text", ["PT\u0661H", "P\u0663D", "PT1\u0661M"])
def test_json_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValidationError):
        make_converter().structure(text, timedelta)


def test_money_is_written_in_plain_notation() -> None:
    converter = make_converter()
    million = Money(Decimal("1E+6"), "EUR")
    assert converter.unstructure(million) == {"amount": "1000000", "currency": "EUR"}
    assert str(million) == "1000000 EUR"
    assert converter.structure(converter.unstructure(million), Money) == million
    small = Money(Decimal("1.50E-3"), "EUR")
    assert converter.unstructure(small)["amount"] == "0.00150"
    deal = Deal.new(title="Engine", pipeline="sales", stage="new", amount=million)
    assert converter.unstructure(deal)["amount"] == {"amount": "1000000", "currency": "EUR"}


def test_money_literals_of_rules_are_written_in_plain_notation() -> None:
    rule = deals_where(field("amount") >= Money(Decimal("1E+6"), "EUR"))
    document = make_converter().unstructure(rule)
    assert "1E+6" not in json.dumps(document)
    assert "1000000" in json.dumps(document)


# ------------------------------------------------------------------ scoring (smaller)


def test_metrics_accept_numpy_scalars_and_arrays() -> None:
    labels = [True, False, True, False, True]
    scores = [0.9, 0.2, 0.6, 0.4, 0.7]
    for measure in (roc_auc, pr_auc, log_loss, brier_score):
        plain = measure(labels, scores)
        assert measure(np.array(labels), np.array(scores)) == pytest.approx(plain)
        assert measure(
            [np.bool_(y) for y in labels], [np.float32(x) for x in scores]
        ) == pytest.approx(plain, rel=1e-6)
    assert roc_auc(np.array(labels), np.array([3, 1, 2, 1, 5], dtype=np.int64)) == 1.0
    with pytest.raises(ValidationError) as caught:
        roc_auc(labels, [0.9, 0.2, "0.6", 0.4, 0.7])
    assert caught.value.field == "scores[2]"
    with pytest.raises(ValidationError) as caught:
        roc_auc(labels, [0.9, 0.2, 10**400, 0.4, 0.7])
    assert caught.value.field == "scores[2]"
    with pytest.raises(ValidationError) as caught:
        roc_auc(labels, np.array([[0.9], [0.2], [0.6], [0.4], [0.7]]))
    assert caught.value.field == "scores[0]"
    with pytest.raises(ValidationError) as caught:
        roc_auc(labels, 0.5)  # type: ignore[arg-type]
    assert caught.value.field == "scores"


def test_lift_by_decile_shares_tied_scores_evenly() -> None:
    labels = [True, False] * 10
    scores = [1.0] * 20  # one tie: every decile holds the overall rate
    forward = lift_by_decile(labels, scores)
    backward = lift_by_decile(labels[::-1], scores)
    assert forward == backward
    assert {d.lift for d in forward} == {1.0}
    assert {d.won for d in forward} == {1}
    shuffled = [(True, 0.5), (False, 0.9), (False, 0.5), (True, 0.9), (False, 0.5)] * 2
    a = lift_by_decile([y for y, _ in shuffled], [x for _, x in shuffled])
    b = lift_by_decile([y for y, _ in shuffled[::-1]], [x for _, x in shuffled[::-1]])
    assert a == b
    assert a[0].won == 0.5


def test_calibration_bins_are_low_inclusive_high_exclusive() -> None:
    below = math.nextafter(0.9, 0)  # 0.8999999999999999: its product with 10 rounds to 9
    table = calibration_table([True, False, True], [below, 0.9, 1.0], bins=10)
    assert [(b.low, b.high, b.count) for b in table] == [(0.8, 0.9, 1), (0.9, 1.0, 2)]
    for bins in (6, 7, 10, 12, 49):
        for k in range(bins + 1):
            for p in (k / bins, math.nextafter(k / bins, 0)):
                if not 0 <= p <= 1:
                    continue
                (found,) = calibration_table([True], [p], bins=bins)
                assert found.low <= p < found.high or p == found.high == 1.0, (bins, k, p)


def test_cross_validate_with_fewer_won_examples_than_folds() -> None:
    examples = [Example({"x": i}, i < 3) for i in range(20)]
    with pytest.raises(ValidationError) as caught:
        cross_validate(LogisticScorer.fit, examples, folds=5)
    assert caught.value.field == "folds"
    assert "only 3 won examples" in caught.value.reason
    assert len(cross_validate(LogisticScorer.fit, examples, folds=3).folds) == 3


def test_naive_bayes_rejects_values_of_another_type_than_in_training() -> None:
    examples = [
        Example({"vip": True, "source": "web", "visits": 3}, True),
        Example({"vip": False, "source": "ads", "visits": 1}, False),
    ]
    model = NaiveBayesScorer.fit(examples)
    for record, name in [
        ({"vip": 1}, "vip"),
        ({"vip": "true"}, "vip"),
        ({"source": 2}, "source"),
        ({"visits": "3"}, "visits"),
        ({"visits": True}, "visits"),
    ]:
        with pytest.raises(ValidationError) as caught:
            model.predict(record)
        assert caught.value.field == name, record
    assert model.log_odds({"vip": True, "visits": 3.0}) == model.log_odds(
        {"vip": True, "visits": 3}
    )


def test_fitted_models_built_by_hand_are_type_checked() -> None:
    """Wrongly typed parts once failed as AttributeError or TypeError inside the checks."""
    with pytest.raises(ValidationError) as caught:
        LogisticScorer(intercept=0.0, numeric=[("x", 0.0, 1.0, 1.0)])  # type: ignore[list-item]
    assert caught.value.field == "numeric[0]"
    with pytest.raises(ValidationError) as caught:
        LogisticScorer(intercept=0.0, categorical=iter([]))  # type: ignore[arg-type]
    assert caught.value.field == "categorical"
    with pytest.raises(ValidationError) as caught:
        LogisticScorer(intercept=10**400)
    assert caught.value.field == "intercept"
    with pytest.raises(ValidationError) as caught:
        NaiveBayesScorer(alpha=1.0, teams=[{"team": ""}])  # type: ignore[list-item]
    assert caught.value.field == "teams[0]"
    with pytest.raises(ValidationError) as caught:
        NaiveBayesScorer(alpha=10**400, teams=())
    assert "alpha" in {p.field for p in caught.value.problems}
    for fit in (LogisticScorer.fit, NaiveBayesScorer.fit):
        with pytest.raises(ValidationError) as caught:
            fit(None)  # type: ignore[arg-type]
        assert caught.value.field == "examples"


def test_business_calendars_read_hours_and_holidays_strictly() -> None:
    with pytest.raises(ValidationError) as caught:
        BusinessCalendar.weekly("Europe/Berlin", frozenset({0}))  # type: ignore[arg-type]
    assert caught.value.field == "hours"
    with pytest.raises(ValidationError) as caught:
        BusinessCalendar.weekly("Europe/Berlin", {0: [(time(9),)]})  # type: ignore[list-item]
    assert caught.value.field == "hours[0][0]"
    with pytest.raises(ValidationError) as caught:
        BusinessCalendar.weekly("Europe/Berlin", {0: [(time(9), time(17))]}, holidays=[[1]])  # type: ignore[list-item]
    assert caught.value.field == "holidays"
    with pytest.raises(ValidationError) as caught:
        BusinessCalendar.workdays("Europe/Berlin", time(9), time(17), holidays=None)  # type: ignore[arg-type]
    assert caught.value.field == "holidays"
    calendar = BusinessCalendar.weekly("Europe/Berlin", {0: [(time(9), time(17))]})
    with pytest.raises(ValidationError) as caught:
        calendar.with_holidays([{}])  # type: ignore[list-item]
    assert caught.value.field == "days"


@pytest.mark.parametrize("values", [None, 5, "ids", {"a": 1}])
def test_bulk_calls_take_collections(store: Store, values: object) -> None:
    """``get_many(None)`` and ``add_many(5)`` once raised TypeError."""
    with store.unit_of_work() as unit:
        with pytest.raises(ValidationError) as caught:
            unit.contacts.get_many(values)  # type: ignore[arg-type]
        assert caught.value.field == "ids"
        with pytest.raises(ValidationError) as caught:
            unit.contacts.add_many(values)  # type: ignore[arg-type]
        assert caught.value.field == "items"


@pytest.mark.parametrize(
    ("make", "field_name"),
    [
        (lambda: Rule(RuleEntity.CONTACT, None), "where"),
        (lambda: Not(5), "item"),
        (lambda: InSegment("not an id"), "segment_id"),
        (lambda: IsNull("country", negated=1), "negated"),
        (lambda: contacts_where(()), "where"),
    ],
    ids=["rule", "not", "in-segment", "is-null", "builder"],
)
def test_rule_nodes_raise_invalid_rule_not_type_error(make: Any, field_name: str) -> None:
    """attrs' ``instance_of`` validators raised TypeError."""
    with pytest.raises(InvalidRule) as caught:
        make()
    assert caught.value.field == field_name


def test_sorting_rejected_values_does_not_print_them() -> None:
    """Sorting problems by ``str`` of a value once failed on an int too long to print."""
    with pytest.raises(ValidationError) as caught:
        StageRequirements(required_fields=[10**5000, "amount"])  # type: ignore[list-item]
    assert caught.value.field == "required_fields"


# ------------------------------------------------------------------ domain functions


_RULE = contacts_where(field("country") == "DE")
_CONTEXT = Context(NOW)
_SEGMENT = Segment.new(name="VIP", members=[])


@pytest.mark.parametrize(
    ("call", "field_name"),
    [
        (lambda: timeline(activities=[1]), "activities[0]"),
        (lambda: ticket_events(None, [], []), "ticket"),  # type: ignore[arg-type]
        (lambda: breached([{}]), "reports[0]"),  # type: ignore[list-item]
        (lambda: breached([], metric="soon"), "metric"),
        (lambda: due_within(None, timedelta(hours=1)), "reports"),  # type: ignore[arg-type]
        (lambda: select(_RULE, [1], _CONTEXT), "entities[0]"),
        (lambda: members(None, [], _CONTEXT), "segment"),  # type: ignore[arg-type]
        (lambda: members(_SEGMENT, [(1,)], _CONTEXT), "contacts[0]"),
        (lambda: check_segments([]), "segments"),  # type: ignore[arg-type]
        (lambda: evaluate(_RULE, [], _CONTEXT), "entity"),
        (lambda: evaluate(None, [], _CONTEXT), "rule"),  # type: ignore[arg-type]
        (lambda: compile_rule({}, _CONTEXT), "rule"),  # type: ignore[arg-type]
        (lambda: compile_sum([("x", 1)], _CONTEXT), "terms[0]"),  # type: ignore[list-item]
        (lambda: Context(NOW, activities=[]), "activities"),  # type: ignore[arg-type]
        (lambda: custom(10**5000), "key"),  # type: ignore[arg-type]
        (lambda: wilson_interval(10**400, 10**400), "count"),
        (lambda: two_proportion_test(10**400, 10**400, 1, 2), "n_a"),
        (lambda: assign_variant("exp", uuid4(), {"a": 10**400}), "variants['a']"),
        (lambda: rfm_group(1, 1, bins=10**5000), "bins"),
        (lambda: stratified_folds(None), "labels"),  # type: ignore[arg-type]
        (lambda: lead_examples(None), "leads"),  # type: ignore[arg-type]
        (lambda: record_csat([], 5, at=NOW), "ticket"),  # type: ignore[arg-type]
        (lambda: add_business_time([], NOW, timedelta(hours=1)), "calendar"),  # type: ignore[arg-type]
        (
            lambda: check_ins_due([1], [], CheckInPlan(every=timedelta(days=1)), now=NOW),  # type: ignore[list-item]
            "contacts[0]",
        ),
    ],
    ids=lambda value: "" if callable(value) else str(value),
)
def test_domain_functions_name_the_wrong_argument(call: Any, field_name: str) -> None:
    """Each raised AttributeError, TypeError, OverflowError or ValueError before."""
    with pytest.raises(ValidationError) as caught:
        call()
    assert caught.value.field == field_name


@pytest.mark.parametrize("kinds", [NOW, NOW.date(), [[1]], "page_view"], ids=str)
def test_activity_kinds_of_a_timeline_query(store: Store, kinds: object) -> None:
    """A date, a datetime or an unhashable item once raised TypeError."""
    with store.unit_of_work() as unit, pytest.raises(ValidationError) as caught:
        unit.activities.for_contact(uuid4(), kinds=kinds)  # type: ignore[arg-type]
    assert caught.value.field == "kinds"
