"""Input for web APIs (issue 11): "new" and "patch" payloads, read strictly, with JSON
paths; a stale patch stored through the CRM is a ConcurrencyConflict on every store."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import attrs
import pytest
from hypothesis import given, settings

from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import MISSING, ConcurrencyConflict, ValidationError
from crmkit.models import (
    Account,
    Contact,
    Deal,
    Entity,
    Erasure,
    Lead,
    LeadChannel,
    LeadStatus,
    Suppression,
)
from crmkit.serialization import (
    Patch,
    apply_patch,
    make_converter,
    structure_new,
    structure_patch,
)
from crmkit.storage import ENTITIES, Store
from crmkit.testing import strategies as cst
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)


def problems(error: ValidationError) -> dict[str, tuple[object, str]]:
    return {p.field: (p.value, p.reason) for p in error.problems}


def test_a_new_payload_gets_id_version_and_time_from_crmkit() -> None:
    ada = structure_new(
        Contact,
        {"email": "Ada@Example.com", "first_name": "Ada", "tags": ["vip"], "custom": {"n": 1}},
        clock=CLOCK,
    )
    assert (ada.version, ada.created_at, ada.updated_at) == (1, NOW, NOW)
    assert (ada.email, ada.tags, dict(ada.custom)) == ("Ada@example.com", {"vip"}, {"n": 1})
    assert structure_new(Contact, {}, clock=CLOCK).id != ada.id
    acme = structure_new(Account, {"name": "Acme"}, clock=CLOCK, converter=make_converter())
    assert acme.name == "Acme"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"id": str(uuid4()), "version": 3, "created_at": "2026-01-01T00:00:00Z"},
            {"$.id", "$.version", "$.created_at"},
        ),
        ({"email": 5, "nick": "Al", "tags": ["ok", 3]}, {"$.email", "$.nick", "$.tags[1]"}),
        ({"do_not_contact": "yes", "first name": "Ada"}, {"$.do_not_contact", "$['first name']"}),
        ({"email": "not an address", "phone": 4930901820}, {"$.email", "$.phone"}),
        ({"custom": {"Bad Key": 1}, "lifecycle_stage": "king"}, {"$.custom", "$.lifecycle_stage"}),
    ],
)
def test_a_hostile_new_payload_is_refused_with_every_path(
    payload: dict[str, Any], expected: set[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        structure_new(Contact, payload, clock=CLOCK)
    found = [p.field for p in caught.value.problems]
    assert all(any(f.startswith(path) for f in found) for path in expected), found


def test_a_new_payload_needs_its_required_fields_and_no_nulls_for_them() -> None:
    with pytest.raises(ValidationError) as caught:
        structure_new(Deal, {"title": None, "stage": "new"}, clock=CLOCK)
    assert problems(caught.value) == {
        "$.title": (None, "expected a string"),
        "$.pipeline": (MISSING, "required field is missing"),
    }
    with pytest.raises(ValidationError) as invariant:  # the entity's own cross-field rules
        structure_new(
            Lead,
            {
                "contact_id": str(uuid4()),
                "source": "x",
                "channel": "form",
                "status": "disqualified",
            },
            clock=CLOCK,
            trusted=True,
        )
    assert invariant.value.field == "$.disqualified_reason"
    for root in (None, [1], "contact"):
        with pytest.raises(ValidationError) as not_object:
            structure_new(Contact, root, clock=CLOCK)
        assert not_object.value.field == "$"
    with pytest.raises(ValidationError) as not_entity:
        structure_new(dict, {}, clock=CLOCK)  # type: ignore[type-var]
    assert not_entity.value.field == "cls"


def test_a_patch_changes_only_the_given_fields() -> None:
    ada = Contact.new(email="ada@example.com", first_name="Ada", custom={"a": 1}, clock=CLOCK)
    patch = structure_patch(Contact, {"version": 1, "last_name": "Lovelace", "first_name": None})
    assert patch == Patch(Contact, 1, {"last_name": "Lovelace", "first_name": None})
    later = FixedClock(NOW + timedelta(hours=1))
    changed = apply_patch(
        ada, {"version": 1, "phone": "+442079460958", "custom": {"b": 2}}, clock=later
    )
    assert (changed.phone, dict(changed.custom)) == ("+442079460958", {"a": 1, "b": 2})
    assert (changed.first_name, changed.email, changed.id) == ("Ada", ada.email, ada.id)
    assert (changed.version, changed.updated_at) == (1, NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"first_name": "Ada"}, {"$.version": (MISSING, "required field is missing")}),
        ({"version": "1"}, {"$.version": ("1", "expected the version (an int >= 1)")}),
        ({"version": True}, {"$.version": (True, "expected the version (an int >= 1)")}),
        ({"version": 0}, {"$.version": (0, "expected the version (an int >= 1)")}),
        (
            {"version": 1, "id": "x", "created_at": "y", "updated_at": "z"},
            {
                "$.id": ("x", "is read-only: crmkit makes it when the entity is created"),
                "$.created_at": (
                    "y",
                    "is read-only: set from the clock when the entity is created",
                ),
                "$.updated_at": ("z", "is read-only: set from the clock on every change"),
            },
        ),
        (
            {"version": 1, "nickname": "Al", "tags": "vip", "do_not_contact": 1},
            {
                "$.nickname": ("Al", "unknown field"),
                "$.tags": ("vip", "expected a list"),
                "$.do_not_contact": (1, "expected true or false"),
            },
        ),
        ({"version": 1, "tags": ["ok", None]}, {"$.tags[1]": (None, "expected a string")}),
    ],
)
def test_a_hostile_patch_is_refused_with_every_path(
    payload: dict[str, Any], expected: dict[str, tuple[object, str]]
) -> None:
    with pytest.raises(ValidationError) as caught:
        structure_patch(Contact, payload)
    assert problems(caught.value) == expected


def test_a_patch_refuses_null_for_required_fields_and_checks_the_whole_entity() -> None:
    with pytest.raises(ValidationError) as caught:
        structure_patch(Deal, {"version": 2, "title": None, "amount": {"amount": 1.5}})
    assert set(problems(caught.value)) == {"$.title", "$.amount.amount", "$.amount.currency"}
    lead = Lead.new(contact_id=uuid4(), source="form", channel=LeadChannel.FORM, clock=CLOCK)
    with pytest.raises(ValidationError) as whole:
        apply_patch(lead, {"version": 1, "status": LeadStatus.DISQUALIFIED.value}, clock=CLOCK)
    assert whole.value.field == "$.disqualified_reason"
    with pytest.raises(ValidationError) as other:
        structure_patch(Contact, {"version": 1}).apply(lead, clock=CLOCK)  # type: ignore[arg-type]
    assert other.value.field == "item"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "pay")


def test_json_in_json_out_through_the_crm_with_a_stale_version(store: Store) -> None:
    crm = CRM(store)
    created = crm.create_contact(
        structure_new(Contact, {"email": "ada@example.com", "country": "GB"}, clock=crm.clock)
    )
    first = structure_patch(Contact, {"version": created.version, "first_name": "Ada"})
    updated = crm.update_contact(created.id, version=first.version, **first.changes)
    assert (updated.first_name, updated.version) == ("Ada", created.version + 1)
    stale = structure_patch(Contact, {"version": created.version, "first_name": "Augusta"})
    with pytest.raises(ConcurrencyConflict) as conflict:
        crm.update_contact(created.id, version=stale.version, **stale.changes)
    assert (conflict.value.expected_version, conflict.value.actual_version) == (1, 2)
    # A patch applied to an entity and stored through the repository is checked the same.
    with store.unit_of_work() as unit:
        stored = unit.contacts.get(created.id)
        with pytest.raises(ConcurrencyConflict):
            unit.contacts.update(apply_patch(stored, {"version": 1, "last_name": "L"}))
        fresh = unit.contacts.update(apply_patch(stored, {"version": 2, "last_name": "L"}))
        unit.commit()
    assert (fresh.last_name, fresh.first_name, fresh.version) == ("L", "Ada", 3)


_STAMPS = ("id", "version", "created_at", "updated_at")


def _fields(item: Any) -> dict[str, Any]:
    return {
        a.name: getattr(item, a.name) for a in attrs.fields(type(item)) if a.name not in _STAMPS
    }


# A suppression's id is its digest's, an erasure's the erased contact's: the privacy use
# cases make them, never a payload of fields.
_FROM_PAYLOADS = [e for e in ENTITIES if e not in (Suppression, Erasure)]


@pytest.mark.parametrize("entity", _FROM_PAYLOADS, ids=lambda e: e.entity_name)
def test_every_entity_reads_back_from_its_new_and_patch_payloads(entity: type[Entity]) -> None:
    converter = make_converter()

    @settings(max_examples=25, deadline=None)
    @given(cst.for_type(entity), cst.for_type(entity))
    def check(item: Entity, other: Entity) -> None:
        payload = {k: v for k, v in converter.unstructure(item).items() if k not in _STAMPS}
        made = structure_new(entity, payload, clock=FixedClock(item.created_at), trusted=True)
        assert _fields(made) == _fields(item)
        assert (made.version, made.created_at) == (1, item.created_at)
        patched = apply_patch(
            other, {**payload, "version": other.version}, clock=FixedClock(other.updated_at)
        )
        expected = _fields(item)
        if "custom" in expected:  # custom fields are merged into the patched entity's
            expected["custom"] = {**other.custom, **item.custom}  # type: ignore[attr-defined]
        assert _fields(patched) == expected
        assert (patched.id, patched.version) == (other.id, other.version)

    check()


def test_a_form_cannot_set_what_use_cases_own() -> None:
    posted = {"email": "eve@example.com", "lifecycle_stage": "customer"}
    with pytest.raises(ValidationError) as caught:
        structure_new(Contact, posted, clock=CLOCK)
    assert caught.value.field == "$.lifecycle_stage"
    deal = {"title": "Free", "pipeline": "sales", "stage": "won", "status": "won"}
    with pytest.raises(ValidationError) as won:
        structure_new(Deal, deal, clock=CLOCK)
    assert {p.field for p in won.value.problems} == {"$.status"}
    imported = structure_new(Contact, posted, clock=CLOCK, trusted=True)
    assert imported.lifecycle_stage.value == "customer"
    with pytest.raises(ValidationError) as flag:
        structure_new(Contact, posted, clock=CLOCK, trusted="yes")  # type: ignore[arg-type]
    assert flag.value.field == "trusted"
