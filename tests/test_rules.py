"""The rule language as data: building, validation against the field registry, JSON."""

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given

from crmkit.errors import InvalidRule, ValidationError
from crmkit.models import ActivityKind, ConsentChannel, LifecycleStage, Money
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Between,
    Compare,
    Condition,
    DateWindow,
    HasTag,
    In,
    IsNull,
    Measure,
    Not,
    Op,
    Or,
    Reachable,
    RelativeDate,
    Rule,
    RuleEntity,
    TextMatch,
    TextOp,
)
from crmkit.segmentation import (
    activity,
    contacts_where,
    custom,
    deals_where,
    field,
    has_tag,
    in_segment,
    leads_where,
    prop,
    tickets_where,
)
from crmkit.serialization import make_converter
from crmkit.testing import strategies as cst

CONVERTER = make_converter()


def contact_rule(condition: Condition) -> Rule:
    return Rule(RuleEntity.CONTACT, condition)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("condition", "field_name", "reason"),
    [
        (Compare("colour", Op.EQ, "red"), "colour", "unknown field"),
        (Compare("custom.Plan", Op.EQ, "pro"), "custom.Plan", "not a valid custom"),
        (Compare("first_name", Op.EQ, 5), "first_name", "compares with a string"),
        (Compare("first_name", Op.LT, "m"), "first_name", "cannot be ordered"),
        (Compare("country", Op.EQ, "Germany"), "country", "3166"),
        (Compare("language", Op.EQ, "klingon"), "language", "639"),
        (Compare("lifecycle_stage", Op.EQ, "prospect"), "lifecycle_stage", "expected one of"),
        (Compare("do_not_contact", Op.EQ, 1), "do_not_contact", "True or False"),
        (Compare("do_not_contact", Op.GT, False), "do_not_contact", "cannot be ordered"),
        (Compare("created_at", Op.GT, datetime(2026, 1, 1)), "created_at", "naive"),
        (Compare("created_at", Op.GT, date(2026, 1, 1)), "created_at", "timezone-aware"),
        (Compare("account_id", Op.LT, uuid4()), "account_id", "cannot be ordered"),
        (Compare("account_id", Op.EQ, "abc"), "account_id", "UUID"),
        (Compare("custom.plan", Op.LT, "pro"), "custom.plan", "numbers only"),
        (Compare("custom.plan", Op.EQ, Decimal("1")), "custom.plan", "not Decimals"),
        (Compare("tags", Op.EQ, "vip"), "tags", "has_tag"),
        (In("tags", ("vip",)), "tags", "no IN"),
        (Between("first_name", "a", "b"), "first_name", "no BETWEEN"),
        (
            Between(
                "created_at", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
            ),
            "created_at",
            "low is greater than high",
        ),
        (TextMatch("country", TextOp.CONTAINS, "D"), "country", "no text matches"),
        (RelativeDate("first_name", DateWindow.WITHIN_LAST, 3), "first_name", "no date windows"),
        (IsNull("colour"), "colour", "unknown field"),
    ],
)
def test_invalid_conditions_name_field_and_value(
    condition: Condition, field_name: str, reason: str
) -> None:
    with pytest.raises(InvalidRule, match=reason) as caught:
        contact_rule(condition)
    assert caught.value.field == field_name
    assert isinstance(caught.value, ValidationError)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: Compare("country", Op.EQ, None), "use is_null"),
        (lambda: Compare("country", "eq", "DE"), "expected one of"),
        (lambda: Compare("country", Op.EQ, ["DE"]), "literal"),
        (lambda: In("country", ()), "non-empty"),
        (lambda: In("country", ("DE", object())), "literal"),
        (lambda: TextMatch("email", TextOp.CONTAINS, ""), "non-empty"),
        (lambda: HasTag(""), "1 to 64"),
        (lambda: RelativeDate("created_at", DateWindow.THIS_MONTH, 3), "no number of days"),
        (lambda: RelativeDate("created_at", DateWindow.WITHIN_LAST, -1), "0 to 36500"),
        (lambda: RelativeDate("created_at", DateWindow.WITHIN_LAST), "0 to 36500"),
        (
            lambda: ActivityCondition(ActivityKind.CALL, Measure.COUNT, Op.GE, Money("1", "EUR")),
            "int",
        ),
        (lambda: ActivityCondition(ActivityKind.PURCHASE, Measure.SUM, Op.GE, 5), "Money"),
        (
            lambda: ActivityCondition(ActivityKind.CALL, Measure.COUNT, Op.GE, 1, within_days=0),
            "1 to 36500",
        ),
        (lambda: And(()), "non-empty"),
        (lambda: Or(("x",)), "condition"),
    ],
)
def test_malformed_nodes_are_rejected_when_built(build: Any, reason: str) -> None:
    with pytest.raises(InvalidRule, match=reason):
        build()


def test_rules_check_what_their_entity_has() -> None:
    with pytest.raises(InvalidRule, match="no tags"):
        leads_where(has_tag("vip"))
    with pytest.raises(InvalidRule, match="only contacts"):
        deals_where(in_segment(uuid4()))
    with pytest.raises(InvalidRule, match="unknown field"):
        tickets_where(field("amount") > Money("1", "EUR"))
    assert deals_where(field("amount") > Money("1", "EUR")).entity is RuleEntity.DEAL


def test_activity_filters_name_activity_fields() -> None:
    pricing = activity(ActivityKind.PAGE_VIEW, where=prop("url").contains("/pricing"))
    assert contacts_where(pricing.count() >= 2).where == (pricing.count() >= 2)
    with pytest.raises(InvalidRule, match="unknown field") as caught:
        contacts_where(activity(ActivityKind.PAGE_VIEW, where=field("country") == "DE").exists())
    assert caught.value.field == "country"
    nested = activity(ActivityKind.CALL, where=activity(ActivityKind.NOTE).exists()).exists()
    with pytest.raises(InvalidRule, match="do not nest"):
        contacts_where(nested)


def test_literals_are_normalised_to_the_field() -> None:
    berlin = datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=1)))
    rule = contacts_where(
        (field("country") == " de ")
        & (field("lifecycle_stage") == LifecycleStage.CUSTOMER)
        & (field("created_at") > berlin)
        & field("language").is_in("EN_gb", None)
    )
    assert isinstance(rule.where, And)
    country, stage, created, language = rule.where.items
    assert country == Compare("country", Op.EQ, "DE")
    assert stage == Compare("lifecycle_stage", Op.EQ, "customer")
    assert created == Compare("created_at", Op.GT, datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert language == In("language", ("en-GB", None))


def test_literal_types_are_kept_apart() -> None:
    assert Compare("custom.x", Op.EQ, 1) != Compare("custom.x", Op.EQ, True)
    assert Compare("custom.x", Op.EQ, 1) != Compare("custom.x", Op.EQ, 1.0)
    assert In("custom.x", (1,)) != In("custom.x", (True,))
    assert Compare("custom.x", Op.EQ, 1) == Compare("custom.x", Op.EQ, 1)


# ---------------------------------------------------------------------------- builder


def test_builder_reads_like_the_rule() -> None:
    assert (field("score") >= 50) == Compare("score", Op.GE, 50)
    assert (field("score") != 50) == Compare("score", Op.NE, 50)
    assert field("country").not_in("DE", "AT") == In("country", ("DE", "AT"), negated=True)
    assert field("score").between(1, 9) == Between("score", 1, 9)
    assert field("email").is_null() == IsNull("email")
    assert field("email").is_not_null() == IsNull("email", negated=True)
    assert field("email").endswith(".se") == TextMatch("email", TextOp.ENDSWITH, ".se")
    assert field("created_at").more_than_days_ago(90) == RelativeDate(
        "created_at", DateWindow.MORE_THAN_AGO, 90
    )
    assert custom("plan").name == field("custom.plan").name == "custom.plan"
    assert has_tag(" VIP ") == HasTag("VIP")
    spend = activity(ActivityKind.PURCHASE, within_days=365).total() > Money("500", "EUR")
    assert spend == ActivityCondition(
        ActivityKind.PURCHASE, Measure.SUM, Op.GT, Money("500", "EUR"), within_days=365
    )
    assert activity(ActivityKind.CALL).exists() == ActivityCondition(
        ActivityKind.CALL, Measure.COUNT, Op.GE, 1
    )


def test_and_or_flatten_and_not_wraps() -> None:
    a, b, c = has_tag("a"), has_tag("b"), has_tag("c")
    assert a & b & c == And((a, b, c))
    assert a | b | c == Or((a, b, c))
    assert (a & b) | c == Or((And((a, b)), c))
    assert ~~a == Not(Not(a))
    with pytest.raises(TypeError):
        a & True  # type: ignore[operator]


@pytest.mark.parametrize(
    "misuse",
    [
        lambda a, b: a and b,
        lambda a, b: a or b,
        lambda a, b: not a,
        lambda a, b: bool(a),
        lambda a, b: 1 if a else 0,
        lambda a, b: any([a, b]),
    ],
    ids=["and", "or", "not", "bool", "if", "any"],
)
def test_conditions_refuse_truthiness(misuse: Any) -> None:
    # `a and b` would silently keep only b: every node refuses to be a truth value and
    # names the operators to use instead (as SQLAlchemy and numpy do).
    a, b = field("country") == "DE", has_tag("vip")
    for node in (a, b, a & b, a | b, ~a, field("x").is_in(1, 2), contacts_where(a).where):
        with pytest.raises(TypeError, match=r"& \(and\), \| \(or\) and ~ \(not\)"):
            misuse(node, b)
    assert (a & b) == And((a, b))  # equality still answers a plain bool


def test_field_refs_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(field("country"))


def test_walk_visits_every_node() -> None:
    segment = uuid4()
    url = prop("url").contains("/pricing")
    rule = contacts_where(
        has_tag("a") & ~in_segment(segment) & activity(ActivityKind.PAGE_VIEW, where=url).exists()
    )
    kinds = [type(node).__name__ for node in rule.walk()]
    assert kinds == ["And", "HasTag", "Not", "InSegment", "ActivityCondition", "TextMatch"]


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("entity", list(RuleEntity))
@given(data=cst.st.data())
def test_rules_round_trip_through_json(entity: RuleEntity, data: Any) -> None:
    rule = data.draw(cst.rules(entity, segment_ids=[uuid4()]))
    plain = CONVERTER.unstructure(rule)
    restored = CONVERTER.structure(json.loads(json.dumps(plain)), Rule)
    assert restored == rule
    assert CONVERTER.unstructure(restored) == plain


def test_rule_json_is_a_tagged_union() -> None:
    rule = contacts_where(
        (field("created_at") > datetime(2026, 1, 1, tzinfo=UTC))
        | ~has_tag("vip")
        | (activity(ActivityKind.PURCHASE).total() >= Money("500", "EUR"))
    )
    assert CONVERTER.unstructure(rule) == {
        "entity": "contact",
        "where": {
            "node": "or",
            "items": [
                {
                    "node": "compare",
                    "field": "created_at",
                    "op": "gt",
                    "value": {"datetime": "2026-01-01T00:00:00+00:00"},
                },
                {"node": "not", "item": {"node": "has_tag", "tag": "vip"}},
                {
                    "node": "activity",
                    "kind": "purchase",
                    "measure": "sum",
                    "op": "ge",
                    "value": {"money": {"amount": "500", "currency": "EUR"}},
                    "where": None,
                    "within_days": None,
                },
            ],
        },
    }


def test_an_invalid_rule_read_from_json_is_an_invalid_rule() -> None:
    where = {"node": "compare", "field": "colour", "op": "eq", "value": 1}
    with pytest.raises(InvalidRule, match="unknown field"):
        CONVERTER.structure({"entity": "contact", "where": where}, Rule)


@pytest.mark.parametrize(
    ("where", "path", "reason"),
    [
        ({"node": "like", "field": "email"}, "$.where.node", "expected one of"),
        ({"node": "has_tag"}, "$.where.tag", "required"),
        ({"node": "has_tag", "tag": "x", "colour": 1}, "$.where.colour", "unknown field"),
        (
            {"node": "compare", "field": "score", "op": "eq", "value": {"decimal": "1,5"}},
            "$.where.value.decimal",
            "not a decimal",
        ),
        (
            {"node": "compare", "field": "score", "op": "eq", "value": [1]},
            "$.where.value",
            "typed literal",
        ),
        (
            {"node": "and", "items": [{"node": "has_tag", "tag": 3}]},
            "$.where.items[0].tag",
            "string",
        ),
        (
            {"node": "compare", "field": "colour", "op": "eq", "value": 1},
            "$.colour",
            "unknown field",
        ),
        ("has_tag", "$.where", "'node' key"),
    ],
)
def test_bad_rule_json_names_the_path(where: object, path: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as caught:
        CONVERTER.structure({"entity": "contact", "where": where}, Rule)
    assert caught.value.field == path


# ---------------------------------------------------------------------------- review findings


@pytest.mark.parametrize(
    "build",
    [
        lambda: Compare("custom.score", Op.LT, float("nan")),
        lambda: Compare("probability", Op.LT, Decimal("NaN")),
        lambda: Compare("score", Op.GT, float("inf")),
        lambda: In("score", (Decimal("sNaN"),)),
        lambda: Between("score", Decimal("NaN"), 1),
        lambda: In("country", (None,)),
        lambda: In("country", (None, None), negated=True),
    ],
)
def test_non_finite_or_empty_literals_are_rejected(build: Any) -> None:
    with pytest.raises(InvalidRule):
        build()


@pytest.mark.parametrize(
    ("condition", "field_name"),
    [
        (Compare("custom.n", Op.EQ, 2**80), "custom.n"),
        (Compare("first_name", Op.EQ, "a\x00b"), "first_name"),
        (Compare("custom.note", Op.EQ, "a\ud800"), "custom.note"),
        (TextMatch("email", TextOp.CONTAINS, "\x00"), "email"),
        (IsNull("tags"), "tags"),
        (Compare("email", Op.EQ, "not an address"), "email"),
    ],
)
def test_literals_a_database_cannot_hold_are_rejected(
    condition: Condition, field_name: str
) -> None:
    with pytest.raises(InvalidRule) as caught:
        contact_rule(condition)
    assert caught.value.field == field_name


def test_counts_fit_in_64_bits() -> None:
    with pytest.raises(InvalidRule):
        ActivityCondition(ActivityKind.CALL, Measure.COUNT, Op.GE, 2**63)


def test_money_between_needs_one_currency() -> None:
    with pytest.raises(InvalidRule, match="differ in currency"):
        deals_where(field("amount").between(Money("1", "EUR"), Money("1000", "USD")))


def test_deep_nesting_is_rejected_not_crashed() -> None:
    condition: Condition = has_tag("x")
    for _ in range(100):
        condition = Not(condition)
    with pytest.raises(InvalidRule, match="nest deeper"):
        contact_rule(condition)
    data: Any = {"node": "has_tag", "tag": "x"}
    for _ in range(1000):
        data = {"node": "not", "item": data}
    with pytest.raises(ValidationError, match="nest deeper"):
        CONVERTER.structure({"entity": "contact", "where": data}, Rule)


def test_email_and_phone_literals_are_normalised_like_the_model() -> None:
    rule = contacts_where(
        (field("email") == " Ada@Example.COM ") & (field("phone") == "+49 30 901820")
    )
    assert isinstance(rule.where, And)
    assert rule.where.items == (
        Compare("email", Op.EQ, "Ada@example.com"),
        Compare("phone", Op.EQ, "+4930901820"),
    )


def test_numbers_are_compared_in_the_field_s_own_type() -> None:
    decimal = deals_where(field("probability") == 0.1).where
    assert decimal == Compare("probability", Op.EQ, Decimal("0.1"))
    floating = leads_where(field("score") >= Decimal("0.5")).where
    assert floating == Compare("score", Op.GE, 0.5)


def test_the_reference_table_lists_the_registry() -> None:
    from pathlib import Path  # noqa: PLC0415

    from crmkit.models.rules import ACTIVITY_FIELDS, FIELDS  # noqa: PLC0415

    page = (Path(__file__).parent.parent / "docs" / "reference" / "rules.md").read_text()
    section = page.split("## Fields a rule may name", 1)[1].split("\n## ", 1)[0]
    rows = {line for line in section.splitlines() if line.startswith("| `")}
    expected = set()
    for specs in [*FIELDS.values(), ACTIVITY_FIELDS]:
        for name, spec in specs.items():
            kind = spec.kind.value + (f" ({spec.enum.__name__})" if spec.enum else "")
            expected.add(f"| `{name}` | {kind} | {'yes' if spec.required else ''} |")
    assert rows == expected


def test_reachable_refuses_unhashable_checks_naming_the_field() -> None:
    with pytest.raises(InvalidRule) as caught:
        Reachable(channel=ConsentChannel.EMAIL, purpose="news", checks=[[1]])  # type: ignore[arg-type]
    assert caught.value.field == "checks"
