"""Training data for the learned scorers: plain records and their won/lost outcome.

A record maps a feature name to a JSON scalar: text and true/false are categories (text
is one-hot encoded, true/false counts as 1/0), numbers are numbers, ``None`` or a missing
key is a missing value. :func:`lead_record` and :func:`deal_record` turn entities into
records with the same names that rules use (``source``, ``custom.plan``, and
``contact.country`` or ``contact.tag.vip`` for the contact), so that the records of
past leads and of new ones are built alike.
"""

from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import Any, Final, TypeAlias
from uuid import UUID

import attrs

from crmkit.errors import NotFound, Problem, ValidationError
from crmkit.models import Contact, Deal, DealStatus, Lead, LeadStatus
from crmkit.models._fields import expect_items, finite

__all__ = [
    "Example",
    "FeatureValue",
    "Record",
    "deal_examples",
    "deal_record",
    "lead_examples",
    "lead_record",
]

FeatureValue: TypeAlias = str | int | float | bool | None
"""The value of one feature in a record."""

Record: TypeAlias = Mapping[str, FeatureValue]
"""A plain record: feature name -> value."""

_MAX_NAME: Final = 200


def check_record(record: object, where: str = "record") -> list[Problem]:
    """The problems of a record: not a mapping, bad names, values of other types."""
    if not isinstance(record, Mapping):
        return [Problem(where, record, "expected a mapping of feature names to values")]
    problems = []
    for name, value in record.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
            problems.append(Problem(where, name, "a feature name is a non-empty string"))
        elif value is not None and not isinstance(value, str | int | float):
            problems.append(Problem(f"{where}.{name}", value, "expected text, a number or bool"))
        elif isinstance(value, int | float) and not isinstance(value, bool) and not finite(value):
            # NaN, infinity and ints beyond a float's range (10**400)
            problems.append(Problem(f"{where}.{name}", value, "expected a finite number"))
    return problems


def _frozen_record(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, MappingProxyType):
        return MappingProxyType(dict(value))
    return value


@attrs.frozen
class Example:
    """One past case: its record and whether it was won."""

    record: Record = attrs.field(converter=_frozen_record)
    won: bool

    def __attrs_post_init__(self) -> None:
        problems = check_record(self.record)
        won: object = self.won
        if not isinstance(won, bool):
            problems.append(Problem("won", won, "expected True or False"))
        if problems:
            raise ValidationError.of(problems)


def _scalar(value: object) -> FeatureValue:
    if isinstance(value, Enum):
        return str(value.value)
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


def _contact_features(record: dict[str, FeatureValue], contact: Contact) -> None:
    record["contact.country"] = _scalar(contact.country)
    record["contact.language"] = _scalar(contact.language)
    for tag in contact.tags:
        record[f"contact.tag.{tag.casefold()}"] = True
    for key, value in contact.custom.items():
        record[f"contact.custom.{key}"] = value


def _contact(entity: Lead | Deal, contact: Contact | None) -> Contact | None:
    if contact is not None and (
        not isinstance(contact, Contact) or contact.id != entity.contact_id
    ):
        raise ValidationError("contact", contact, f"expected contact {entity.contact_id}")
    return contact


def lead_record(lead: Lead, contact: Contact | None = None) -> dict[str, FeatureValue]:
    """The record of a lead (and of its contact, when given).

    Names: ``source``, ``channel``, ``owner``, ``pipeline``, ``stage``,
    ``custom.<key>``; from the contact ``contact.country``, ``contact.language``,
    ``contact.tag.<tag>`` (``True`` when tagged) and ``contact.custom.<key>``.
    """
    if not isinstance(lead, Lead):
        raise ValidationError("lead", lead, "expected a Lead")
    record: dict[str, FeatureValue] = {
        "source": lead.source,
        "channel": str(lead.channel.value),
        "owner": lead.owner,
        "pipeline": lead.pipeline,
        "stage": lead.stage,
    }
    for key, value in lead.custom.items():
        record[f"custom.{key}"] = value
    found = _contact(lead, contact)
    if found is not None:
        _contact_features(record, found)
    return record


def deal_record(
    deal: Deal, contact: Contact | None = None, *, stage: bool = False
) -> dict[str, FeatureValue]:
    """The record of a deal (and of its contact, when given).

    Names: ``pipeline``, ``owner``, ``amount`` (a number), ``currency``, ``tag.<tag>``,
    ``custom.<key>``, the contact's as in :func:`lead_record`, and ``stage`` only when
    ``stage`` is true: the stage of a closed deal tells its outcome, so a learned model
    must not see it (except as "reached at least this stage", see
    :class:`~crmkit.scoring.NaiveBayesScorer`).
    """
    if not isinstance(deal, Deal):
        raise ValidationError("deal", deal, "expected a Deal")
    record: dict[str, FeatureValue] = {
        "pipeline": deal.pipeline,
        "owner": deal.owner,
        "amount": None if deal.amount is None else float(deal.amount.amount),
        "currency": None if deal.amount is None else deal.amount.currency,
    }
    if stage:
        record["stage"] = deal.stage
    for tag in deal.tags:
        record[f"tag.{tag.casefold()}"] = True
    for key, value in deal.custom.items():
        record[f"custom.{key}"] = value
    found = _contact(deal, contact) if deal.contact_id is not None else None
    if found is not None:
        _contact_features(record, found)
    return record


def _lookup(
    contacts: Mapping[UUID, Contact] | None, contact_id: UUID | None, where: str
) -> Contact | None:
    if contacts is None or contact_id is None:
        return None
    if not isinstance(contacts, Mapping):
        raise ValidationError("contacts", contacts, "expected a mapping of ids to Contacts")
    found = contacts.get(contact_id)
    if found is None:
        raise NotFound("contact", str(contact_id))
    return found


def lead_examples(
    leads: Iterable[Lead], contacts: Mapping[UUID, Contact] | None = None
) -> list[Example]:
    """Examples from closed leads: won when qualified or converted into a deal, lost
    when disqualified; open leads are skipped.

    ``leads`` may be any iterable, such as a store's ``uow.leads.iterate()``;
    ``contacts`` maps contact ids to contacts to add the contact's features (every lead's
    contact must be there).
    """
    leads = expect_items(leads, Lead, "leads", "Lead")
    found = []
    for index, lead in enumerate(leads):
        if not isinstance(lead, Lead):
            raise ValidationError(f"leads[{index}]", lead, "expected a Lead")
        if lead.status is LeadStatus.DISQUALIFIED:
            won = False
        elif lead.status is LeadStatus.QUALIFIED or lead.deal_id is not None:
            won = True
        else:
            continue
        contact = _lookup(contacts, lead.contact_id, f"leads[{index}]")
        found.append(Example(lead_record(lead, contact), won))
    return found


def deal_examples(
    deals: Iterable[Deal],
    contacts: Mapping[UUID, Contact] | None = None,
    *,
    stage: bool = False,
) -> list[Example]:
    """Examples from won and lost deals (open deals are skipped); see :func:`deal_record`."""
    deals = expect_items(deals, Deal, "deals", "Deal")
    found = []
    for index, deal in enumerate(deals):
        if not isinstance(deal, Deal):
            raise ValidationError(f"deals[{index}]", deal, "expected a Deal")
        if deal.status is DealStatus.OPEN:
            continue
        contact = _lookup(contacts, deal.contact_id, f"deals[{index}]")
        found.append(
            Example(deal_record(deal, contact, stage=stage), deal.status is DealStatus.WON)
        )
    return found


def checked_examples(examples: Iterable[Example], *, minimum: int = 2) -> list[Example]:
    """``examples`` as a list; every item an :class:`Example`, both outcomes present."""
    if isinstance(examples, str | bytes | Mapping) or not isinstance(examples, Iterable):
        raise ValidationError("examples", examples, "expected an iterable of Example")
    found = list(examples)
    for index, example in enumerate(found):
        if not isinstance(example, Example):
            raise ValidationError(f"examples[{index}]", example, "expected an Example")
    won = sum(1 for e in found if e.won)
    if len(found) < minimum or won == 0 or won == len(found):
        raise ValidationError(
            "examples",
            f"{len(found)} examples, {won} won",
            "needs won and lost examples to learn from",
        )
    return found


Kind: TypeAlias = str
NUMBER: Final = "number"
BOOL: Final = "bool"
TEXT: Final = "text"


def kind_of(value: FeatureValue) -> Kind:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, str):
        return TEXT
    return NUMBER


def field_kinds(records: Sequence[Record]) -> dict[str, Kind]:
    """The kind of every field (number, bool or text); a field of two kinds is an error."""
    kinds: dict[str, Kind] = {}
    problems: list[Problem] = []
    for index, record in enumerate(records):
        for name, value in record.items():
            if value is None:
                kinds.setdefault(name, "")
                continue
            kind = kind_of(value)
            known = kinds.get(name)
            if not known:
                kinds[name] = kind
            elif known != kind:
                problems.append(
                    Problem(
                        f"examples[{index}].record.{name}",
                        value,
                        f"the field holds {known} values in other examples",
                    )
                )
    if problems:
        raise ValidationError.of(problems[:20])
    return {name: kind for name, kind in kinds.items() if kind}
