"""Stand-ins for what generated entities refer to (see :func:`store_referents`)."""

from collections.abc import Iterable
from typing import TypeVar, cast

import attrs

from crmkit.models import (
    Account,
    Contact,
    Deal,
    Entity,
    Lead,
    LeadChannel,
    Ticket,
    TicketChannel,
)
from crmkit.storage import REFERENCES, REPOSITORIES, Repository, UnitOfWork

__all__ = ["repository_of", "store_referents"]

_E = TypeVar("_E", bound=Entity)


def repository_of(unit: UnitOfWork, entity: type[_E]) -> Repository[_E]:
    """The repository of ``unit`` that stores ``entity``."""
    return cast(Repository[_E], getattr(unit, REPOSITORIES[entity]))


def store_referents(unit: UnitOfWork, items: Iterable[Entity]) -> list[Entity]:
    """Add to ``unit`` a stand-in for every entity that ``items`` refer to and the
    unit's tenant does not hold yet, with the id the reference names (a contact for a
    lead's ``contact_id``, an account for a contact's ``account_id``, ...), and return
    what it added, in order.

    A store refuses an entity whose reference names nothing
    (:class:`~crmkit.errors.DanglingReference`); tests that generate entities with
    random references (:func:`crmkit.testing.strategies.for_type`) store their
    referents first with this. A stand-in refers to nothing it does not need: a lead or
    ticket stand-in gets a new contact of its own.
    """
    added: list[Entity] = []
    for item in items:
        for name, target in REFERENCES.get(type(item), ()):
            wanted = getattr(item, name)
            repository = repository_of(unit, target)
            if wanted is None or repository.get_many([wanted]):
                continue
            stand_in = attrs.evolve(_stand_in(unit, target, added), id=wanted)
            repository.add(stand_in)
            added.append(stand_in)
    return added


def _stand_in(unit: UnitOfWork, entity: type[Entity], added: list[Entity]) -> Entity:
    """A minimal valid ``entity``, its required contact (if any) added to ``unit``."""
    if entity is Contact:
        return Contact.new()
    if entity is Account:
        return Account.new(name="stand-in")
    if entity is Deal:
        return Deal.new(title="stand-in", pipeline="sales", stage="new")
    contact = Contact.new()
    unit.contacts.add(contact)
    added.append(contact)
    if entity is Lead:
        return Lead.new(contact_id=contact.id, source="stand-in", channel=LeadChannel.IMPORT)
    assert entity is Ticket, entity
    return Ticket.new(subject="stand-in", contact_id=contact.id, channel=TicketChannel.EMAIL)
