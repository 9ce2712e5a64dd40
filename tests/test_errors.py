import pickle
from uuid import uuid4

import pytest

from crmkit.errors import (
    MISSING,
    ClosedRecord,
    ConcurrencyConflict,
    CrmkitError,
    CurrencyMismatch,
    Duplicate,
    Erased,
    InvalidPipeline,
    InvalidRule,
    MissingExtra,
    NotFound,
    Problem,
    StillReferenced,
    StorageError,
    Suppressed,
    TransitionNotAllowed,
    ValidationError,
)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ValidationError("email", "x", "bad"), ValueError),
        (CurrencyMismatch("currency", "USD", "cannot add"), ValueError),
        (InvalidRule("field", "x", "unknown field"), ValueError),
        (InvalidPipeline("stages", "x", "unreachable"), ValueError),
        (NotFound("contact", uuid4()), KeyError),
        (Duplicate("contact", uuid4()), ValueError),
        (ConcurrencyConflict("deal", uuid4(), 3, 4), RuntimeError),
        (TransitionNotAllowed("deal", "new", "won", ["amount is required"]), ValueError),
        (StorageError("disk full"), RuntimeError),
        (ClosedRecord("deal", uuid4(), "won", "won", "CRM.reopen_deal"), ValueError),
        (StillReferenced("contact", uuid4(), [("lead", uuid4())]), ValueError),
        (MissingExtra("quality", "phonenumbers", "phone validation"), ImportError),
        (Erased("contact", uuid4()), ValueError),
        (Suppressed("email"), ValueError),
    ],
)
def test_every_error_is_a_crmkit_error_and_its_builtin(error: Exception, builtin: type) -> None:
    assert isinstance(error, CrmkitError)
    assert isinstance(error, builtin)
    # Every error survives pickling (multiprocessing, task queues) with its message.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)


def test_validation_error_names_field_value_and_reason() -> None:
    error = ValidationError("email", "ada@", "the domain needs a dot")
    assert (error.field, error.value, error.reason) == ("email", "ada@", "the domain needs a dot")
    assert str(error) == "email: the domain needs a dot (got 'ada@')"


def test_validation_error_keeps_every_problem() -> None:
    error = ValidationError.of(
        [Problem("email", "x", "no @"), Problem("country", "XX", "not a country")]
    )
    assert error.field == "email"
    assert [p.field for p in error.problems] == ["email", "country"]
    assert "2 problems" in str(error)
    assert "country: not a country (got 'XX')" in str(error)


def test_validation_error_needs_a_problem() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ValidationError.of([])


@pytest.mark.parametrize(
    ("prefix", "field", "expected"),
    [
        ("amount", "currency", "amount.currency"),
        ("amount", "", "amount"),
        ("", "currency", "currency"),
        ("$", "tags[2]", "$.tags[2]"),
        ("tags", "[2]", "tags[2]"),
    ],
)
def test_within_builds_paths(prefix: str, field: str, expected: str) -> None:
    assert ValidationError(field, 1, "bad").within(prefix).field == expected


def test_within_keeps_the_error_type() -> None:
    assert type(InvalidRule("x", 1, "bad").within("rule")) is InvalidRule


def test_messages_name_what_went_wrong() -> None:
    contact_id = uuid4()
    assert str(NotFound("contact", contact_id)) == f"contact {contact_id} not found"
    assert str(Duplicate("contact", contact_id)) == f"contact {contact_id} already exists"
    assert "expected version 3, stored one is at version 4" in str(
        ConcurrencyConflict("deal", contact_id, 3, 4)
    )
    assert "deleted" in str(ConcurrencyConflict("deal", contact_id, 3, None))
    message = str(TransitionNotAllowed("deal", "new", "won", ["amount missing", "no approval"]))
    assert message == "deal cannot move from 'new' to 'won': amount missing; no approval"
    extra = MissingExtra("quality", "phonenumbers", "phone validation")
    assert "pip install 'crmkit[quality]'" in str(extra)
    assert extra.name == "phonenumbers"


def test_missing_is_a_singleton_that_pickles() -> None:
    assert repr(MISSING) == "<missing>"
    assert pickle.loads(pickle.dumps(MISSING)) is MISSING


def test_a_field_name_that_is_not_text_does_not_break_the_message() -> None:
    # A host passing a wrong value as a field name (found by the fuzz test: a huge int
    # whose str() raises) still gets the typed error with a readable message.
    error = ValidationError(10**5000, "xx", "not a country")  # type: ignore[arg-type]
    assert error.field == "<int>"
    assert str(error) == "<int>: not a country (got 'xx')"
