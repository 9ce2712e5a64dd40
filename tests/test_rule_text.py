"""The text syntax of rules: parse_rule reads it, format_rule writes every rule back."""

import pickle
from datetime import UTC, date, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmkit.errors import InvalidRule, RuleSyntaxError
from crmkit.models import ActivityKind, ConsentChannel, Money
from crmkit.models.rules import (
    ActivityCondition,
    And,
    Between,
    Compare,
    DateWindow,
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
    on_contact,
)
from crmkit.segmentation import format_rule, parse_rule
from crmkit.testing import strategies as cst

SEGMENTS = (UUID("6f1c2b1e-0000-4000-8000-000000000001"), UUID(int=7, version=4))


def test_the_example_of_the_issue_parses_into_the_ast() -> None:
    text = (
        'country in ("DE","AT","CH") and activity(page_view, within 30d, '
        'url contains "/pricing").count >= 2 and not tag("churned")'
    )
    expected = Rule(
        RuleEntity.CONTACT,
        And(
            (
                In("country", ("DE", "AT", "CH")),
                ActivityCondition(
                    ActivityKind.PAGE_VIEW,
                    Measure.COUNT,
                    Op.GE,
                    2,
                    where=TextMatch("properties.url", TextOp.CONTAINS, "/pricing"),
                    within_days=30,
                ),
                Not(HasTag("churned")),
            )
        ),
    )
    assert parse_rule(text) == expected
    assert format_rule(expected) == (
        'country in ("DE", "AT", "CH") and activity(page_view, within 30d, '
        'url contains "/pricing").count >= 2 and not tag("churned")'
    )


EVERY_NODE = [
    ('first_name = "Ada"', Compare("first_name", Op.EQ, "Ada")),
    ("custom.seats >= 3", Compare("custom.seats", Op.GE, 3)),
    ("custom.ratio < 0.5", Compare("custom.ratio", Op.LT, 0.5)),
    ("custom.trial != true", Compare("custom.trial", Op.NE, True)),
    ('email = "Ada@Example.com"', Compare("email", Op.EQ, "Ada@example.com")),
    ("created_at > 2026-01-31T12:00:00+01:00", Compare(
        "created_at", Op.GT, datetime(2026, 1, 31, 11, tzinfo=UTC))),
    ('account_id = "00000000-0000-4000-8000-000000000007"', Compare(
        "account_id", Op.EQ, UUID(int=7, version=4))),
    ('lifecycle_stage not in ("customer", null)', In(
        "lifecycle_stage", ("customer", None), negated=True)),
    ("custom.seats between 1 and 2.5", Between("custom.seats", 1, 2.5)),
    ("phone is null", IsNull("phone")),
    ("phone is not null", IsNull("phone", negated=True)),
    ('last_name startswith "Love"', TextMatch("last_name", TextOp.STARTSWITH, "Love")),
    ('tag("VIP")', HasTag("VIP")),
    ("created_at within last 30d", RelativeDate("created_at", DateWindow.WITHIN_LAST, 30)),
    ("updated_at more than 90d ago", RelativeDate("updated_at", DateWindow.MORE_THAN_AGO, 90)),
    ("created_at in this month", RelativeDate("created_at", DateWindow.THIS_MONTH)),
    (f'segment("{SEGMENTS[0]}")', InSegment(SEGMENTS[0])),
    ('reachable(email, "newsletter")', Reachable(ConsentChannel.EMAIL, "newsletter")),
    ('reachable(sms, "sales", max 3 per 30d, checks (consent, withdrawn))', Reachable(
        ConsentChannel.SMS, "sales", 3, 30, frozenset({ReachCheck.CONSENT, ReachCheck.WITHDRAWN}))),
    ("activity(purchase).sum >= 100.00 EUR", ActivityCondition(
        ActivityKind.PURCHASE, Measure.SUM, Op.GE, Money("100.00", "EUR"))),
    ("all(x.y = 1)".replace("x.y", "custom.plan"), And((Compare("custom.plan", Op.EQ, 1),))),
    ('any(tag("a"))', Or((HasTag("a"),))),
    ('(tag("a") and tag("b")) and tag("c")', And((And((HasTag("a"), HasTag("b"))), HasTag("c")))),
    ('tag("a") or tag("b") and not not tag("c")', Or(
        (HasTag("a"), And((HasTag("b"), Not(Not(HasTag("c")))))))),
]  # fmt: skip


@pytest.mark.parametrize(("text", "node"), EVERY_NODE, ids=[t for t, _ in EVERY_NODE])
def test_every_node_type_has_a_text_form(text: str, node: object) -> None:
    rule = parse_rule(text)
    assert rule == Rule(RuleEntity.CONTACT, node)  # type: ignore[arg-type]
    assert parse_rule(format_rule(rule)) == rule


def test_entities_name_their_own_fields_and_their_contacts() -> None:
    rule = parse_rule(
        "amount >= 5000 EUR and probability > 0.25 and expected_close < 2027-01-01 "
        'and contact.country = "se" and contact.tag("vip")',
        "deal",
    )
    assert rule == Rule(
        RuleEntity.DEAL,
        And(
            (
                Compare("amount", Op.GE, Money("5000", "EUR")),
                Compare("probability", Op.GT, Decimal("0.25")),
                Compare("expected_close", Op.LT, date(2027, 1, 1)),
                on_contact(Compare("country", Op.EQ, "SE")),
                HasTag("vip", "contact.tags"),
            )
        ),
    )
    assert parse_rule(format_rule(rule), rule.entity) == rule


def _contact_conditions(entity: RuleEntity) -> st.SearchStrategy[Rule]:
    """Rules of a lead, deal or ticket that also name their contact's fields."""
    own = cst.conditions(entity, max_leaves=3)
    contact = cst.conditions(RuleEntity.CONTACT, max_leaves=3, activities=False).map(on_contact)
    return st.tuples(own, contact).map(lambda pair: Rule(entity, And(pair)))


ANY_RULE = st.one_of(
    cst.rules(RuleEntity.CONTACT, segment_ids=SEGMENTS, reachability=True),
    *(cst.rules(entity) for entity in (RuleEntity.LEAD, RuleEntity.DEAL, RuleEntity.TICKET)),
    *(_contact_conditions(entity) for entity in (RuleEntity.LEAD, RuleEntity.DEAL)),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ANY_RULE)
def test_every_rule_prints_to_text_that_parses_to_the_same_rule(rule: Rule) -> None:
    text = format_rule(rule)
    assert parse_rule(text, rule.entity) == rule
    # Printing is stable: the text of the parsed rule is the same text.
    assert format_rule(parse_rule(text, rule.entity)) == text


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(ANY_RULE, st.data())
def test_white_space_and_line_breaks_between_tokens_change_nothing(
    rule: Rule, data: st.DataObject
) -> None:
    text = format_rule(rule)
    # Around the separators that are never inside a string: break lines, add spaces.
    if '"' not in text:
        spaced = text.replace(
            " and ", data.draw(st.sampled_from(["\n and ", " and\n\t", "  and  "]))
        )
        assert parse_rule(spaced, rule.entity) == rule


ERRORS = [
    # text, line, column, field, what the message says
    ('country in ("DE", "XX")', 1, 19, "country", "country code"),
    ("country = ", 1, 11, "rule", "expected a value"),
    ('country in ("DE"\n  and x', 2, 3, "rule", "expected ',' or ')'"),
    ("foo = 1", 1, 1, "foo", "unknown field"),
    ('tag("a") tag("b")', 1, 10, "rule", "expected 'and', 'or'"),
    ('activity(page_view).count >= "x"', 1, 30, "value", "a count is compared"),
    ("activity(visit).count >= 1", 1, 10, "kind", "expected an activity kind"),
    ("first_name = 3", 1, 14, "first_name", "compares with a string"),
    ("custom.plan = null", 1, 15, "rule", "use 'is null'"),
    ('reachable(fax, "x")', 1, 11, "channel", "expected a channel"),
    ("created_at within last 30", 1, 24, "rule", "number of days"),
    ("country = 'DE'", 1, 11, "rule", "unexpected character"),
    ("", 1, 1, "rule", "the rule is empty"),
    ("(" * 200 + 'tag("a")' + ")" * 200, 1, 131, "rule", "nest deeper"),
    ('segment("nope")', 1, 9, "segment_id", "segment id"),
    ("amount > 10 EUR", 1, 1, "amount", "unknown field"),
]


@pytest.mark.parametrize(("text", "line", "column", "field", "says"), ERRORS)
def test_errors_point_at_line_and_column(
    text: str, line: int, column: int, field: str, says: str
) -> None:
    with pytest.raises(RuleSyntaxError) as raised:
        parse_rule(text)
    error = raised.value
    assert isinstance(error, InvalidRule)
    assert (error.line, error.column, error.field) == (line, column, field), str(error)
    assert says in error.reason
    message = str(error)
    assert message.startswith(f"line {line}, column {column}: ")
    # The excerpt shows the line with a caret under the column.
    shown, caret = message.splitlines()[-2:]
    assert caret.index("^") - 2 == min(column - 1, 60) or len(text) > 120
    assert shown.strip() in (text.splitlines() or [""])[line - 1]
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.line, copy.column) == (
        RuleSyntaxError, message, line, column,
    )  # fmt: skip


def test_wrong_arguments_are_named() -> None:
    with pytest.raises(InvalidRule) as raised:
        parse_rule(b"country = 1")  # type: ignore[arg-type]
    assert raised.value.field == "text"
    with pytest.raises(InvalidRule) as raised:
        parse_rule('tag("a")', "person")
    assert raised.value.field == "entity"
    with pytest.raises(InvalidRule):
        format_rule('tag("a")')  # type: ignore[arg-type]


TOKENS = st.sampled_from(
    ["and", "or", "not", "(", ")", ",", ".", "=", ">=", "in", "is", "null", "between",
     "tag", "activity", "reachable", "segment", "country", "custom", "plan", '"DE"', "30d",
     "1.5", "-3", "2026-01-01", "EUR", "count", "within", "last", "page_view", "\n", '"\\q"',
     "contains", "all", "any", "this", "month", "more", "than", "ago", "1e999", "9" * 30]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(TOKENS, max_size=14).map(" ".join), st.text(max_size=40)))
def test_any_text_parses_or_raises_a_rule_syntax_error(text: str) -> None:
    try:
        rule = parse_rule(text)
    except RuleSyntaxError as error:
        where = (error.line, error.column)
    else:
        assert parse_rule(format_rule(rule)) == rule
        return
    assert where >= (1, 1)
    assert where[0] <= text.count("\n") + 1
