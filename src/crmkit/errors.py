"""The one error hierarchy of crmkit.

Every error crmkit raises on purpose derives from :class:`CrmkitError` and also from the
builtin exception it resembles, so host code may catch either::

    try:
        contact = Contact.new(email="not an address")
    except ValueError as exc:        # or crmkit.errors.ValidationError
        print(exc.field, exc.value)  # -> email not an address

Validation errors name the field (a dotted path, relative to the object being validated)
and the rejected value, and carry every problem found, not only the first.
"""

import reprlib
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Final, Self
from uuid import UUID

__all__ = [
    "MISSING",
    "AlreadyMerged",
    "AutomationLoop",
    "ClosedRecord",
    "ConcurrencyConflict",
    "CrmkitError",
    "CurrencyMismatch",
    "DanglingReference",
    "DanglingReferences",
    "Duplicate",
    "DuplicateEmails",
    "Erased",
    "ImportFileError",
    "InvalidAutomation",
    "InvalidPipeline",
    "InvalidRule",
    "InvalidToken",
    "MissingExtra",
    "NotFound",
    "Problem",
    "RuleSyntaxError",
    "SchemaOutdated",
    "StillReferenced",
    "StorageError",
    "Suppressed",
    "TokenExpired",
    "TransitionNotAllowed",
    "UndeclaredPurpose",
    "UnknownAction",
    "UnknownCountry",
    "UnknownEventType",
    "UnknownReference",
    "UnmergeConflict",
    "ValidationError",
    "short_repr",
]


class _Missing:
    """The value of a field that was not given at all (as opposed to ``None``)."""

    _instance: "_Missing | None" = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""Stands for the rejected value when a required field was absent from the input."""


class _BoundedRepr(reprlib.Repr):
    """Reprs of rejected values, bounded: a huge or deeply nested input stays a short
    message, and an int too long for ``repr`` (over ``sys.get_int_max_str_digits()``
    digits) is named by its size instead of failing the message."""

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:
            return f"<int of {x.bit_length()} bits>"


_REPR = _BoundedRepr()  # Python 3.11 takes no keyword arguments here
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 4, 120, 120, 120
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def short_repr(value: object) -> str:
    """The bounded repr that messages show of a rejected value (never raises for an int
    too long to print, a deep nesting or a huge collection)."""
    return _REPR.repr(value)


class CrmkitError(Exception):
    """Base of every error crmkit raises on purpose."""


class Problem:
    """One rejected value: where it was, what it was and why it was rejected.

    ``field`` is a dotted path relative to the validated object (``"amount.currency"``);
    the empty string means the validated value itself.
    """

    __slots__ = ("field", "reason", "value")

    def __init__(self, field: str, value: object, reason: str) -> None:
        # A caller's field name that is not text (a wrong argument) must not break the
        # message: it is shown by its type.
        self.field = field if isinstance(field, str) else f"<{type(field).__name__}>"
        self.value = value
        self.reason = reason

    def within(self, name: str) -> "Problem":
        """The same problem seen from the object that holds it under ``name``."""
        return Problem(_join(name, self.field), self.value, self.reason)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return (self.field, self.reason) == (other.field, other.reason) and _same(
            self.value, other.value
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        value = _REPR.repr(self.value)
        return f"Problem(field={self.field!r}, value={value}, reason={self.reason!r})"

    def __str__(self) -> str:
        where = self.field or "value"
        return f"{where}: {self.reason} (got {_REPR.repr(self.value)})"


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - values whose == raises are compared by identity
        return a is b


def _join(prefix: str, field: str) -> str:
    if not prefix:
        return field
    if not field:
        return prefix
    if field.startswith("["):
        return prefix + field
    return f"{prefix}.{field}"


class ValidationError(CrmkitError, ValueError):
    """Input was rejected. Names the field, the rejected value and the reason.

    ``field``, ``value`` and ``reason`` describe the first problem; ``problems`` lists
    all of them (at least one).
    """

    problems: tuple[Problem, ...]

    def __init__(
        self,
        field: str,
        value: object,
        reason: str,
        *,
        more: Iterable[Problem] = (),
    ) -> None:
        self.problems = (Problem(field, value, reason), *more)
        super().__init__(self._message())

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> Self:
        """Build one error from several problems (the first names ``field``)."""
        if not problems:
            raise ValueError("ValidationError.of() needs at least one problem")
        first, *rest = problems
        return cls(first.field, first.value, first.reason, more=rest)

    @property
    def field(self) -> str:
        return self.problems[0].field

    @property
    def value(self) -> object:
        return self.problems[0].value

    @property
    def reason(self) -> str:
        return self.problems[0].reason

    def within(self, name: str) -> Self:
        """The same error seen from the object that holds the value under ``name``."""
        return type(self).of([p.within(name) for p in self.problems])

    def _message(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{len(self.problems)} problems:\n{lines}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_validation_error, (type(self), self.problems))


def _rebuild_validation_error(
    cls: type[ValidationError], problems: tuple[Problem, ...]
) -> ValidationError:
    return cls.of(problems)


class CurrencyMismatch(ValidationError):
    """Money of two different currencies met in one calculation or comparison."""


class InvalidRule(ValidationError):
    """A rule names an unknown field, or compares a field with a wrongly typed value."""


class RuleSyntaxError(InvalidRule):
    """A rule written as text (:func:`crmkit.segmentation.parse_rule`) could not be read,
    or names a field or value the rule language refuses.

    ``line`` and ``column`` (both from 1) point at where the problem starts; ``excerpt``
    is that line with a caret (``^``) under the column. ``field`` names the rule field
    when the problem is about one (``"country"``), else ``"rule"``; ``value`` is the text
    found there.
    """

    def __init__(
        self, field: str, value: object, reason: str, *, line: int, column: int, excerpt: str
    ) -> None:
        self.line = line
        self.column = column
        self.excerpt = excerpt
        super().__init__(field, value, reason)

    def _message(self) -> str:
        return f"line {self.line}, column {self.column}: {super()._message()}\n{self.excerpt}"

    def within(self, name: str) -> Self:
        problem = self.problems[0].within(name)
        return type(self)(
            problem.field,
            problem.value,
            problem.reason,
            line=self.line,
            column=self.column,
            excerpt=self.excerpt,
        )

    def __reduce__(self) -> tuple[object, ...]:
        where = (self.line, self.column, self.excerpt)
        return (_rebuild_syntax_error, (type(self), self.field, self.value, self.reason, where))


def _rebuild_syntax_error(
    cls: type[RuleSyntaxError],
    field: str,
    value: object,
    reason: str,
    where: tuple[int, int, str],
) -> RuleSyntaxError:
    line, column, excerpt = where
    return cls(field, value, reason, line=line, column=column, excerpt=excerpt)


class ImportFileError(ValidationError):
    """A file given to an import cannot be read as a whole (it does not exist, is not
    text in the expected encoding, has no header row, or its columns cannot be mapped).
    ``field`` names what is wrong (``"file"``, ``"encoding"``, ``"header"``,
    ``"mapping"``) and ``value`` the path, column or byte found. Nothing was stored.
    Problems of single rows are no error: they go to the import's rejects.
    """


class DanglingReference(ValidationError):
    """A written entity refers to one that its tenant does not have (a lead whose
    ``contact_id`` names no stored contact). ``field`` names the reference, with the
    item's position in a bulk import (``[3].contact_id``) where the store knows it
    (PostgreSQL checks a bulk ``COPY`` after its last row, and the field comes alone),
    and ``value`` its id; nothing was written. Write the referred entity first, in the
    same unit of work or before.
    """


class UnknownCountry(ValidationError):
    """A country name, alias or code that :func:`crmkit.quality.parse_country` does not
    know; ``field`` names where it was given, ``value`` the text."""


class InvalidPipeline(ValidationError):
    """A pipeline definition is inconsistent (duplicate, unknown or unreachable stages)."""


# ---------------------------------------------------------------------------- automation


class InvalidAutomation(ValidationError):
    """An automation rule is inconsistent: a wrong field, rules that trigger each other
    in a cycle, a condition on the wrong entity. ``field`` is the JSON path of the
    problem (``$[0].actions[2].due_in``) when the rules were read from JSON."""


class UnknownAction(InvalidAutomation):
    """An automation rule names an action type crmkit does not have (field ``...type``)."""


class UnknownEventType(InvalidAutomation):
    """An automation rule is triggered by, or declares, an event type crmkit does not
    record (field ``...trigger.event`` or ``...emits``)."""


class UnknownReference(InvalidAutomation):
    """An automation rule names what the CRM or the automation is not configured with: a
    pipeline, a stage of it, a business calendar, a message sender or a host hook."""


class AutomationLoop(CrmkitError, RuntimeError):
    """Rules triggered each other deeper than the automation's ``max_depth``: the chain
    of causes of ``event_id`` is ``depth`` long. Raised by the automation's event
    handler, so the dispatcher records it as a failed delivery (and, after its
    attempts, a dead letter): the loop is reported and ends, never runs on."""

    def __init__(self, event_id: UUID, depth: int, limit: int) -> None:
        self.event_id, self.depth, self.limit = event_id, depth, limit
        super().__init__(event_id, depth, limit)

    def __str__(self) -> str:
        return (
            f"automation loop: event {self.event_id} has a chain of causes {self.depth} "
            f"long, more than the automation's max_depth ({self.limit})"
        )


# ---------------------------------------------------------------------------- consent


class UndeclaredPurpose(ValidationError):
    """A consent, request or audience names a purpose the host did not declare in its
    :class:`~crmkit.privacy.ConsentPolicy` (field ``purpose``)."""


class InvalidToken(ValidationError):
    """A double opt-in confirmation token is malformed, was not signed with the host's
    secret (tampered), or its request was decided since (field ``token``)."""


class TokenExpired(InvalidToken):
    """A double opt-in confirmation token is genuine but its time ran out (field
    ``token``; the request stays pending, a new request sends a new token)."""


class _EntityError(CrmkitError):
    """An error about one entity, named by its kind and id."""

    _what: ClassVar[str]

    def __init__(self, entity: str, id: UUID | str) -> None:
        self.entity = entity
        self.id = id
        super().__init__(entity, id)

    def __str__(self) -> str:
        return f"{self.entity} {self.id} {self._what}"


class NotFound(_EntityError, KeyError):
    """No entity of this kind has this id (in the store's tenant)."""

    _what = "not found"


class Duplicate(_EntityError, ValueError):
    """An entity with this id (or this unique key) already exists.

    ``index`` is the position of the offending item when it came from a bulk import;
    ``field`` names the unique key when it is not the id (``"email"``: one contact per
    address), and ``id`` is then the key's value; ``other_index`` is the position of the
    earlier item of the same import that has the key (``None``: a stored entity has it).
    """

    _what = "already exists"

    def __init__(
        self,
        entity: str,
        id: UUID | str,
        *,
        index: int | None = None,
        field: str | None = None,
        other_index: int | None = None,
    ) -> None:
        super().__init__(entity, id)
        self.index = index
        self.field = field
        self.other_index = other_index

    def __reduce__(self) -> tuple[Any, ...]:
        return _duplicate, (self.entity, self.id, self.index, self.field, self.other_index)

    def __str__(self) -> str:
        where = "" if self.index is None else f" (item [{self.index}])"
        if self.other_index is not None:
            where = f" (item [{self.index}] has the address of item [{self.other_index}])"
        if self.field is None:
            return f"{super().__str__()}{where}"
        return f"a {self.entity} with {self.field} {self.id!r} already exists{where}"


def _duplicate(
    entity: str,
    id: UUID | str,
    index: int | None,
    field: str | None = None,
    other_index: int | None = None,
) -> "Duplicate":
    return Duplicate(entity, id, index=index, field=field, other_index=other_index)


class ConcurrencyConflict(CrmkitError, RuntimeError):
    """An update was based on a version that is no longer the stored one.

    ``actual_version`` is ``None`` when the entity was deleted meanwhile.
    """

    def __init__(
        self, entity: str, id: UUID, expected_version: int, actual_version: int | None
    ) -> None:
        self.entity = entity
        self.id = id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(entity, id, expected_version, actual_version)

    def __str__(self) -> str:
        now = "deleted" if self.actual_version is None else f"at version {self.actual_version}"
        return (
            f"{self.entity} {self.id} was changed concurrently: "
            f"expected version {self.expected_version}, stored one is {now}"
        )


class TransitionNotAllowed(CrmkitError, ValueError):
    """A stage move was refused; ``unmet`` lists every requirement that is not met."""

    def __init__(
        self,
        entity: str,
        from_stage: str | None,
        to_stage: str,
        unmet: Sequence[str],
        *,
        codes: Sequence[str] = (),
    ):
        self.entity = entity
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.unmet = tuple(unmet)
        self.codes = tuple(codes)
        """The requirements' codes for programs, in the order of ``unmet`` (when known):
        ``"transition"``, ``"approval"``, ``"guard:<name>"``, ..."""
        super().__init__(entity, from_stage, to_stage, self.unmet)

    def __str__(self) -> str:
        reasons = "; ".join(self.unmet) or "not allowed"
        return f"{self.entity} cannot move from {self.from_stage!r} to {self.to_stage!r}: {reasons}"


class ClosedRecord(TransitionNotAllowed):
    """A change to a closed deal or lead (won, lost, disqualified, converted) was refused:
    it is a record now, and changes only through a reopen move.

    A :class:`TransitionNotAllowed` whose ``codes`` are ``("closed",)``; ``id`` names the
    entity and ``state`` what closed it (``"won"``, ``"converted"``, ...).
    """

    def __init__(self, entity: str, id: UUID, stage: str | None, state: str, how: str) -> None:
        self.id = id
        self.state = state
        self.how = how
        super().__init__(
            entity,
            stage,
            stage or state,
            [f"the {entity} is {state}: it is a record and changes only through {how}"],
            codes=["closed"],
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return ClosedRecord, (self.entity, self.id, self.from_stage, self.state, self.how)

    def __str__(self) -> str:
        return f"{self.entity} {self.id} cannot change: {self.unmet[0]}"


class StillReferenced(_EntityError, ValueError):
    """A delete was refused because other entities of the tenant still refer to this
    one (a contact's leads, a deal's tasks: see :data:`crmkit.storage.REFERRERS`).

    ``referrers`` names them as ``(entity name, id)`` pairs: one for every kind of entity
    that refers to it, in the order of ``REFERRERS``. Delete those first, or ask the
    service for the cascade.
    """

    _what = "is still referred to"

    def __init__(self, entity: str, id: UUID | str, referrers: Sequence[tuple[str, UUID]]) -> None:
        super().__init__(entity, id)
        self.referrers = tuple(referrers)

    def __reduce__(self) -> tuple[Any, ...]:
        return StillReferenced, (self.entity, self.id, self.referrers)

    def __str__(self) -> str:
        by = ", ".join(f"{name} {ref}" for name, ref in self.referrers)
        return f"{super().__str__()} by {by}: delete those first, or delete with cascade=True"


class AlreadyMerged(_EntityError, ValueError):
    """A merge named a record that an earlier merge removed: ``merge_id`` is that merge,
    ``survivor_id`` the record it was merged into."""

    _what = "was merged already"

    def __init__(self, entity: str, id: UUID, merge_id: UUID, survivor_id: UUID) -> None:
        super().__init__(entity, id)
        self.merge_id = merge_id
        self.survivor_id = survivor_id

    def __reduce__(self) -> tuple[Any, ...]:
        return AlreadyMerged, (self.entity, self.id, self.merge_id, self.survivor_id)

    def __str__(self) -> str:
        return (
            f"{super().__str__()} (merge {self.merge_id}) into {self.survivor_id}: "
            "merge the survivor instead, or undo that merge first"
        )


class UnmergeConflict(CrmkitError, RuntimeError):
    """An unmerge was refused because rows the merge wrote changed afterwards; undoing
    it would lose those later edits. Nothing was changed.

    ``changed`` lists ``(entity name, id, what happened)`` for every such row.
    """

    def __init__(self, merge_id: UUID, changed: Sequence[tuple[str, UUID, str]]) -> None:
        self.merge_id = merge_id
        self.changed = tuple(changed)
        super().__init__(merge_id, self.changed)

    def __str__(self) -> str:
        rows = "; ".join(f"{name} {id} {what}" for name, id, what in self.changed)
        return (
            f"merge {self.merge_id} cannot be undone without losing later edits: {rows}. "
            "Undo those edits (or the later merge) first, or leave the merge in place"
        )


class Erased(_EntityError, ValueError):
    """The person was erased already: their records hold no personal data to export or
    erase again. ``id`` is the erased contact's id (the tombstone id)."""

    _what = "was erased (asked to be forgotten): nothing personal is left"


class Suppressed(CrmkitError, ValueError):
    """A capture, import or new contact matches a person who asked to be forgotten.

    ``field`` names what matched (``"email"`` or ``"phone"``); the value is not kept in
    the error, as it is not kept in the store. Show the host's user the message: the
    person can be added again only after they opt in again
    (:meth:`crmkit.crm.CRM.lift_suppression`).
    """

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(field)

    def __str__(self) -> str:
        return (
            f"this person asked to be forgotten (their {self.field} is on the suppression "
            "list): they can be added again only after they opt in again"
        )


class StorageError(CrmkitError, RuntimeError):
    """The store failed for a reason that is not the caller's input (I/O, driver, schema)."""


class SchemaOutdated(StorageError):
    """The database's tables are of another schema version than this crmkit's.

    ``found`` is the database's version (``1`` for crmkit 0.1, which recorded none),
    ``expected`` this crmkit's. An older database is upgraded in place by
    :func:`crmkit.storage.sql.upgrade` (extra ``migrate``); a newer one needs a newer
    crmkit. Nothing is read or written until then.
    """

    def __init__(self, found: int, expected: int, target: str) -> None:
        self.found = found
        self.expected = expected
        self.target = target
        if found < expected:
            advice = (
                f"upgrade it first: crmkit.storage.sql.upgrade({target!r}) "
                "(pip install 'crmkit[migrate]')"
            )
        else:
            advice = "it was written by a newer crmkit: upgrade crmkit"
        super().__init__(
            f"the database has crmkit schema version {found}, this crmkit reads version "
            f"{expected}: {advice}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.found, self.expected, self.target))


class DuplicateEmails(StorageError):
    """The upgrade would enforce one contact per e-mail address, and some share one.

    ``groups`` holds, for each shared address, the tenant, the folded address and the
    ids of its contacts (oldest first). Merge them (or delete the extra ones) and run
    the upgrade again (:func:`crmkit.storage.sql.upgrade`), or upgrade with
    ``unique_emails=False`` to let contacts share
    addresses. Nothing was changed.
    """

    def __init__(self, groups: tuple[tuple[str, str, tuple[UUID, ...]], ...]) -> None:
        self.groups = groups
        shown = "; ".join(f"{t}: {e} ({len(ids)} contacts)" for t, e, ids in groups[:5])
        more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
        super().__init__(
            f"{len(groups)} e-mail addresses belong to more than one contact ({shown}{more}): "
            "merge them, or upgrade with unique_emails=False"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.groups,))


class DanglingReferences(StorageError):
    """The upgrade would declare the references as foreign keys, and stored rows refer
    to entities that are gone (deleted by a crmkit that did not refuse it).

    ``rows`` holds, for each such reference, the tenant, the referring entity's name and
    id, the field and the id it names. Delete or repair those rows (or restore what they
    name) and run the upgrade again (:func:`crmkit.storage.sql.upgrade`). Nothing was
    changed.
    """

    def __init__(self, rows: tuple[tuple[str, str, UUID, str, UUID], ...]) -> None:
        self.rows = rows
        shown = "; ".join(f"{t}: {e} {i} {f}={m}" for t, e, i, f, m in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        super().__init__(
            f"{len(rows)} stored references name entities that are gone ({shown}{more}): "
            "delete or repair them, then upgrade"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.rows,))


class MissingExtra(CrmkitError, ImportError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, extra: str, package: str, feature: str) -> None:
        self.extra = extra
        self.package = package
        self.feature = feature
        super().__init__(
            f"{feature} needs the {package!r} package: install it with "
            f"pip install 'crmkit[{extra}]'",
            name=package,
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.extra, self.package, self.feature))
