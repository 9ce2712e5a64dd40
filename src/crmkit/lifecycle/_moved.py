"""What every state machine of crmkit returns and reports: a move, or what blocks it."""

from typing import Generic, TypeVar

import attrs

from crmkit.models import Entity, StageChange

__all__ = ["Moved", "Unmet"]

_E = TypeVar("_E", bound=Entity)


@attrs.frozen
class Unmet:
    """One requirement a move does not meet.

    ``code`` names the requirement for programs (``"transition"``, ``"lost_reason"``,
    ``"required_field:amount"``, ``"minimum_amount"``, ``"approval"``,
    ``"guard:credit_check"``, ...); ``message`` says it for people.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@attrs.frozen
class Moved(Generic[_E]):
    """The result of a move: the entity in its new stage and the change to store as history."""

    entity: _E
    change: StageChange
