import json
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any
from uuid import uuid4

import attrs
import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import MISSING, Problem, ValidationError
from crmkit.models import (
    ENTITY_TYPES,
    Contact,
    CountryCode,
    Deal,
    DealStatus,
    EmailAddress,
    Entity,
    Money,
    Segment,
)
from crmkit.models.rules import Compare, Op, Rule, RuleEntity
from crmkit.serialization import CrmkitConverter, make_converter
from crmkit.testing import strategies as cst

CONVERTER = make_converter()
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def is_plain_json(value: object) -> bool:
    if isinstance(value, dict):
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(is_plain_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


@pytest.fixture
def deal() -> Deal:
    return Deal.new(
        title="Seats",
        pipeline="sales",
        stage="proposal",
        amount=Money("1200.50", "EUR"),
        probability="0.4",
        tags=["b", "a"],
        clock=FixedClock(T0),
    )


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("entity_type", ENTITY_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_every_model_round_trips_through_json(
    entity_type: type[Entity], data: st.DataObject
) -> None:
    entity = data.draw(cst.for_type(entity_type))
    plain = CONVERTER.unstructure(entity)
    assert is_plain_json(plain)
    restored = CONVERTER.structure(json.loads(json.dumps(plain)), entity_type)
    assert restored == entity
    assert CONVERTER.unstructure(restored) == plain  # the same notation, not just equal


def test_formats(deal: Deal) -> None:
    plain = CONVERTER.unstructure(deal)
    assert plain["id"] == str(deal.id)
    assert plain["created_at"] == "2026-03-02T09:30:00+00:00"
    assert plain["amount"] == {"amount": "1200.50", "currency": "EUR"}
    assert plain["probability"] == "0.4"
    assert plain["status"] == "open"
    assert plain["tags"] == ["a", "b"]
    assert plain["custom"] == {}
    assert plain["closed_at"] is None


def test_value_types_come_back_as_their_types() -> None:
    contact = Contact.new(email="ada@example.com", country="SE", clock=FixedClock(T0))
    restored = CONVERTER.structure(CONVERTER.unstructure(contact), Contact)
    assert type(restored.email) is EmailAddress
    assert type(restored.country) is CountryCode


def test_the_rule_of_a_segment_round_trips() -> None:
    rule = Rule(RuleEntity.CONTACT, Compare("country", Op.EQ, "DE"))
    segment = Segment.new(name="DE", rule=rule, clock=FixedClock(T0))
    plain = CONVERTER.unstructure(segment)
    assert plain["rule"] == {
        "entity": "contact",
        "where": {"node": "compare", "field": "country", "op": "eq", "value": "DE"},
    }
    assert CONVERTER.structure(plain, Segment) == segment


def test_offsets_are_read_as_the_same_instant(deal: Deal) -> None:
    plain = CONVERTER.unstructure(deal) | {"created_at": "2026-03-02T10:30:00+01:00"}
    assert CONVERTER.structure(plain, Deal).created_at == T0


def test_collections_of_models(deal: Deal) -> None:
    plain = CONVERTER.unstructure([deal, deal])
    assert CONVERTER.structure(plain, list[Deal]) == [deal, deal]


def test_converters_are_independent_and_leave_cattrs_alone() -> None:
    assert make_converter() is not make_converter()
    assert isinstance(make_converter(), CrmkitConverter)
    # cattrs' global converter still coerces: crmkit never configures it.
    assert cattrs.structure("12", int) == 12
    with pytest.raises(ValidationError):
        CONVERTER.structure("12", int)


# ---------------------------------------------------------------------------- bad input


def test_errors_carry_json_paths_and_values(deal: Deal) -> None:
    plain = CONVERTER.unstructure(deal)
    bad = plain | {
        "amount": {"amount": 1.5, "currency": "EURO"},
        "version": "2",
        "tags": ["ok", 5],
        "nickname": "Al",
    }
    del bad["title"]
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure({"deal": bad}, dict[str, Deal])
    found = {p.field: p.value for p in caught.value.problems}
    assert found == {
        "$.deal.title": MISSING,
        "$.deal.amount.amount": 1.5,
        "$.deal.version": "2",
        "$.deal.tags[1]": 5,
        "$.deal.nickname": "Al",
    }
    reasons = {p.field: p.reason for p in caught.value.problems}
    assert reasons["$.deal.nickname"] == "unknown field"
    assert reasons["$.deal.title"] == "required field is missing"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("id", "not-a-uuid", "not a UUID"),
        ("id", 7, "UUID string"),
        ("version", 1.0, "integer"),
        ("version", True, "integer"),
        ("version", 0, "versions run from 1"),
        ("created_at", "2026-03-02T09:30:00", "naive"),
        ("created_at", "yesterday", "ISO 8601"),
        ("created_at", 1767225600, "timezone-aware"),
        ("title", None, "string"),
        ("title", ["Seats"], "string"),
        ("probability", 0.4, "floats are not exact"),
        ("probability", "0,4", "decimal"),
        ("probability", "2", "between 0 and 1"),
        ("probability_manual", "false", "true or false"),
        ("status", "Open", "one of: open, won, lost"),
        ("status", 1, "one of"),
        ("expected_close", "2026-13-01", "date"),
        ("expected_close", "2026-06-30T00:00:00+00:00", "date"),
        ("tags", "vip", "expected a list"),
        ("tags", ["", "x"], "1 to 64 characters"),
        ("tags", {"vip": True}, "expected a list"),
        ("id", "urn:uuid:6f1c1e8e-3f5b-4f7e-9a53-2a0f4c6d8b11", "8-4-4-4-12"),
        ("id", "6f1c1e8e3f5b4f7e9a532a0f4c6d8b11", "8-4-4-4-12"),
        ("probability", "1_0", "not a decimal"),
        ("probability", " 0.5 ", "not a decimal"),
        ("probability", "NaN", "not a decimal"),
        ("probability", "\u0660.\u0665", "not a decimal"),
        ("custom", ["plan"], "object"),
        ("custom", {"Plan": 1}, "identifier"),
        ("amount", "12 EUR", "object for Money"),
        ("amount", {"amount": "12"}, "required"),
        ("contact_id", "", "not a UUID"),
    ],
)
def test_wrong_values_are_rejected_not_coerced(
    deal: Deal, field: str, value: object, reason: str
) -> None:
    plain = CONVERTER.unstructure(deal) | {field: value}
    with pytest.raises(ValidationError, match=reason) as caught:
        CONVERTER.structure(plain, Deal)
    assert caught.value.field.startswith(f"$.{field}")


def test_invariant_errors_carry_the_path(deal: Deal) -> None:
    plain = CONVERTER.unstructure(deal) | {"status": "won"}
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure({"deals": [plain]}, dict[str, list[Deal]])
    assert caught.value.field == "$.deals[0].closed_at"


def test_the_root_must_be_an_object() -> None:
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure(["not", "a", "deal"], Deal)
    assert (caught.value.field, caught.value.value) == ("$", ["not", "a", "deal"])


def test_unknown_target_types_are_a_validation_error() -> None:
    class Opaque:
        pass

    with pytest.raises(ValidationError, match="cannot read"):
        CONVERTER.structure({}, Opaque)


def structure_or_problems(data: Any, cl: type[Any]) -> list[Problem]:
    """Structure ``data``; return the problems of the ValidationError, if one is raised.

    Any other exception (a bare cattrs error, a TypeError, ...) fails the test.
    """
    try:
        CONVERTER.structure(data, cl)
    except ValidationError as error:
        return list(error.problems)
    return []


@given(JSON)
def test_any_json_gives_a_model_or_a_validation_error(data: Any) -> None:
    problems = structure_or_problems(data, Contact)
    assert all(p.field.startswith("$") for p in problems)


@given(cst.deals(), st.sampled_from([a.name for a in attrs.fields(Deal)]), JSON)
def test_replacing_any_field_gives_a_model_or_a_validation_error(
    deal: Deal, field: str, value: Any
) -> None:
    plain = CONVERTER.unstructure(deal) | {field: value}
    problems = structure_or_problems(plain, Deal)
    if problems:
        # The replaced field is named, or the invariant it broke (a closed deal's closed_at).
        assert any(
            p.field.startswith(f"$.{field}") or p.field in {"$.closed_at", "$.lost_reason"}
            for p in problems
        )
    else:
        # What was accepted is stable: written and read again, it is the same data, and
        # only strings may have been put in canonical notation, never other JSON types.
        written = CONVERTER.unstructure(CONVERTER.structure(plain, Deal))
        assert CONVERTER.unstructure(CONVERTER.structure(written, Deal)) == written
        if not isinstance(value, str | list | dict) and field != "probability":
            assert written[field] == value
            assert type(written[field]) is type(value)


def test_closed_deal_round_trip() -> None:
    deal = Deal.new(title="x", pipeline="p", stage="s", clock=FixedClock(T0))
    won = attrs.evolve(deal, status=DealStatus.WON, closed_at=T0, contact_id=uuid4())
    assert CONVERTER.structure(CONVERTER.unstructure(won), Deal) == won


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


def test_host_enumerations_are_read_by_value_strictly() -> None:
    assert CONVERTER.structure("pro", Plan) is Plan.PRO
    assert CONVERTER.structure(2, Level) is Level.HIGH
    assert type(CONVERTER.unstructure(Plan.PRO)) is str
    assert type(CONVERTER.unstructure(Level.HIGH)) is int
    for bad, cl in [("PRO", Plan), ("2", Level), (True, Level), ([1], Level)]:
        with pytest.raises(ValidationError, match="expected one of"):
            CONVERTER.structure(bad, cl)


@pytest.mark.parametrize(
    ("data", "target", "field"),
    [
        (None, list[Deal], "$"),
        ([1], dict[str, Deal], "$"),
        ("abc", set[str], "$"),
        ("abc", list[str], "$"),
        ({"a": "b"}, list[str], "$"),
        ([1, "x"], list[int], "$[1]"),
        ({"a": 1, "b": "x"}, dict[str, int], "$.b"),
        ({"x": 1}, Contact | Deal, "$"),
    ],
)
def test_collection_targets_give_validation_errors(data: object, target: Any, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure(data, target)
    assert caught.value.field == field


def test_collections_of_scalars() -> None:
    assert CONVERTER.structure([3, 1], list[int]) == [3, 1]
    assert CONVERTER.structure([3, 1], tuple[int, ...]) == (3, 1)
    assert CONVERTER.structure(["a", "a"], frozenset[str]) == frozenset({"a"})
    assert CONVERTER.structure({"a": 1}, dict[str, int]) == {"a": 1}
