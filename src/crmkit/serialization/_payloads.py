"""Input from web APIs: a "new" payload (no id, version or timestamps) and a partial
"patch" payload (the fields to change and the version the change is based on)."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar
from uuid import uuid4

import attrs
from cattrs.errors import ClassValidationError, IterableValidationError

from crmkit.clock import SYSTEM_CLOCK, Clock
from crmkit.errors import MISSING, Problem, ValidationError
from crmkit.models import Contact, Deal, Entity, Lead, Task, Ticket

if TYPE_CHECKING:
    from crmkit.serialization import CrmkitConverter

__all__ = ["Patch", "apply_patch", "structure_new", "structure_patch"]

_E = TypeVar("_E", bound=Entity)
_ROOT: Final = "$"
_STAMPS: Final = {
    "id": "is read-only: crmkit makes it when the entity is created",
    "version": "is read-only in a new entity: it starts at 1",
    "created_at": "is read-only: set from the clock when the entity is created",
    "updated_at": "is read-only: set from the clock on every change",
}
_MANAGED: Final[Mapping[type[Entity], Mapping[str, str]]] = {
    Contact: {"lifecycle_stage": "moves through the contact lifecycle's use cases"},
    Lead: {
        "status": "changes through the lead's use cases",
        "score": "is set by scoring",
        "pipeline": "is set when a lead enters a pipeline",
        "stage": "changes through moves",
        "disqualified_reason": "is set by disqualify_lead",
        "deal_id": "is set by convert_lead",
    },
    Deal: {
        "status": "changes through moves",
        "closed_at": "is set when the deal closes",
        "lost_reason": "is set when the deal is lost",
    },
    Ticket: {"status": "changes through the ticket workflow", "csat": "is set by record_csat"},
    Task: {"status": "changes through complete_task and cancel_task", "completed_at": "likewise"},
}
"""The fields a use case owns, per entity: :func:`structure_new` refuses them in
payloads from outside (a web form must not create a customer or a won deal)."""
_PATCH_READ_ONLY: Final = {name: _STAMPS[name] for name in ("id", "created_at", "updated_at")}
_default: list["CrmkitConverter"] = []


def _converter(converter: "CrmkitConverter | None") -> "CrmkitConverter":
    if converter is not None:
        return converter
    if not _default:
        from crmkit.serialization import make_converter  # noqa: PLC0415 - import cycle

        _default.append(make_converter())
    return _default[0]


def _entity_class(cls: object) -> type[Entity]:
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise ValidationError("cls", cls, "expected an entity class (Contact, Deal, ...)")
    return cls


def _object(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise ValidationError(_ROOT, payload, "expected an object")
    return payload


def _path(name: object) -> str:
    from crmkit.serialization import _child  # noqa: PLC0415 - import cycle

    return _child(_ROOT, name)


def structure_new(
    cls: type[_E],
    payload: object,
    *,
    clock: Clock = SYSTEM_CLOCK,
    converter: "CrmkitConverter | None" = None,
    trusted: bool = False,
) -> _E:
    """A new entity of ``cls`` from a JSON payload of its fields, as ``cls.new()`` makes
    one: ``id``, ``version`` and the timestamps come from crmkit and ``clock`` and are
    refused in the payload.

    The fields that use cases own (a contact's ``lifecycle_stage``, a deal's ``status``,
    a lead's ``status`` and ``score``, a ticket's ``status``, ...) are
    refused too, so that a public form cannot create a customer or a won deal. Pass
    ``trusted=True`` for data you trust, such as an import from your own system.

    Fields with defaults may be left out. Reading is as strict as
    :meth:`CrmkitConverter.structure`: unknown fields, wrongly typed values and missing
    required fields are all reported in one :class:`~crmkit.errors.ValidationError`,
    each problem with its JSON path (``$.email``, ``$.tags[1]``).
    """
    cls = _entity_class(cls)  # type: ignore[assignment]
    fields = _object(payload)
    if not isinstance(trusted, bool):
        raise ValidationError("trusted", trusted, "expected True or False")
    owned = {} if trusted else _MANAGED.get(cls, {})
    problems = [
        Problem(_path(name), fields[name], reason)
        for name, reason in {**_STAMPS, **owned}.items()
        if name in fields
    ]
    now = clock.now()
    stamps = {
        "id": str(uuid4()),
        "version": 1,
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }
    given = {k: v for k, v in fields.items() if k not in _STAMPS and k not in owned}
    try:
        made = _converter(converter).structure({**given, **stamps}, cls)
    except ValidationError as error:
        raise ValidationError.of([*problems, *error.problems]) from None
    if problems:
        raise ValidationError.of(problems)
    return made


@attrs.frozen
class Patch(Generic[_E]):
    """A partial change of an entity read from JSON (see :func:`structure_patch`).

    ``changes`` holds the typed values of the fields to change, and only those;
    ``version`` is the version of the entity the change was based on.
    """

    entity: type[_E]
    version: int
    changes: Mapping[str, Any]

    def apply(self, item: _E, *, clock: Clock = SYSTEM_CLOCK) -> _E:
        """``item`` with the changes made, carrying the patch's ``version`` (so that the
        store refuses it with :class:`~crmkit.errors.ConcurrencyConflict` when the stored
        version is another) and ``updated_at`` from ``clock``.

        ``custom`` fields are added to and replaced, as the ``CRM`` update methods do.
        Problems the changed entity has as a whole (a cross-field rule) are reported
        with JSON paths too.
        """
        if not isinstance(item, self.entity):
            raise ValidationError("item", item, f"expected a {self.entity.__name__}")
        changes = dict(self.changes)
        if isinstance(changes.get("custom"), Mapping):
            changes["custom"] = {**getattr(item, "custom", {}), **changes["custom"]}
        now = max(clock.now(), item.created_at)
        try:
            return attrs.evolve(item, **changes, version=self.version, updated_at=now)
        except ValidationError as error:
            raise error.within(_ROOT) from None


def structure_patch(
    cls: type[_E], payload: object, *, converter: "CrmkitConverter | None" = None
) -> Patch[_E]:
    """A :class:`Patch` of ``cls`` from a JSON payload: ``version`` (required, the
    version the client read) and any of the fields to change.

    Only the given fields change; ``null`` clears an optional field and is refused for a
    required one. Unknown fields and the read-only ``id``, ``created_at`` and
    ``updated_at`` are refused. Every problem is reported at once, with its JSON path,
    in one :class:`~crmkit.errors.ValidationError`.
    """
    cls = _entity_class(cls)  # type: ignore[assignment]
    fields = _object(payload)
    converter = _converter(converter)
    types = {a.name: a.type for a in attrs.fields(attrs.resolve_types(cls))}
    problems: list[Problem] = []
    version = fields.get("version", MISSING)
    if version is MISSING:
        problems.append(Problem(_path("version"), MISSING, "required field is missing"))
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        problems.append(Problem(_path("version"), version, "expected the version (an int >= 1)"))
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "version":
            continue
        if name in _PATCH_READ_ONLY:
            problems.append(Problem(_path(name), value, _PATCH_READ_ONLY[name]))
        elif name not in types:
            problems.append(Problem(_path(name), value, "unknown field"))
        else:
            try:
                changes[name] = _read(converter, value, types[name])
            except ValidationError as error:
                problems.extend(error.within(_path(name)).problems)
    if problems:
        raise ValidationError.of(problems)
    return Patch(cls, version, changes)


def _read(converter: "CrmkitConverter", value: object, type_: Any) -> Any:
    """``value`` read as ``type_`` with the converter's hook; errors relative to it."""
    from crmkit.serialization import _error_of  # noqa: PLC0415 - import cycle

    try:
        return converter.get_structure_hook(type_)(value, type_)
    except ValidationError:
        raise
    except (ClassValidationError, IterableValidationError) as group:
        raise _error_of(group, value, "") from None
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        raise ValidationError("", value, f"cannot read as {type_!r}: {error}") from error


def apply_patch(
    item: _E,
    payload: object,
    *,
    clock: Clock = SYSTEM_CLOCK,
    converter: "CrmkitConverter | None" = None,
) -> _E:
    """``item`` changed by the JSON patch ``payload``: :func:`structure_patch` for
    ``item``'s class, then :meth:`Patch.apply`."""
    if not isinstance(item, Entity):
        raise ValidationError("item", item, "expected an entity")
    patch = structure_patch(type(item), payload, converter=converter)
    return patch.apply(item, clock=clock)
