"""The consent decisions in force (``<prefix>consent_states``), derived from the ledger.

The consent ledger is append-only and authoritative; reachability needs only the
decision in force per ``(contact, channel, purpose)``
(:func:`~crmkit.models.current_consent`), which SQL would otherwise find as "an entry
with no later one" over the whole ledger on every audience. The SQL adapter keeps that
decision in a table of its own: every write of consent entries (add, bulk add, update,
restore, delete, erasure) rewrites the rows of the contacts it touched from their
ledger, in the same transaction, and the upgrade to schema 13 fills it from the stored
ledgers. The rewrite reads the ledger, so the table never disagrees with it.
"""

from collections.abc import Iterable
from typing import Any, Final
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmkit.models import ConsentStatus

__all__ = ["refill_consent_states", "settle_consent_states"]

_CHUNK: Final = 500  # contact ids per statement

_PENDING: Final = ConsentStatus.PENDING.value
_GRANTED: Final = ConsentStatus.GRANTED.value
_WITHDRAWN: Final = ConsentStatus.WITHDRAWN.value

_STATE_COLUMNS: Final = (
    "tenant",
    "contact_id",
    "channel",
    "purpose",
    "status",
    "expires_at",
    "contact_point",
    "consent_id",
    "decided_at",
)


def in_force(ledger: sa.FromClause, *filters: Any) -> sa.Select[Any]:
    """The entries of ``ledger`` (meeting ``filters``) that are the decision in force of
    their ``(tenant, contact_id, channel, purpose)``, as rows of the states table: a
    granted or withdrawn entry with no later one, later meaning a later ``decided_at``,
    or the same one and a withdrawal over a grant, or the same status and a greater id
    (the order of :func:`~crmkit.models.current_consent`)."""
    entry, later = ledger.alias("entry"), ledger.alias("later")
    same_time = sa.and_(
        later.c.decided_at == entry.c.decided_at,
        sa.or_(
            sa.and_(later.c.status == _WITHDRAWN, entry.c.status == _GRANTED),
            sa.and_(later.c.status == entry.c.status, later.c.id > entry.c.id),
        ),
    )
    superseded = sa.exists(
        sa.select(sa.literal(1))
        .select_from(later)
        .where(
            later.c.tenant == entry.c.tenant,
            later.c.contact_id == entry.c.contact_id,
            later.c.channel == entry.c.channel,
            later.c.purpose == entry.c.purpose,
            later.c.status != _PENDING,
            sa.or_(later.c.decided_at > entry.c.decided_at, same_time),
        )
    )
    columns = [entry.c[name] for name in _STATE_COLUMNS if name != "consent_id"]
    columns.insert(_STATE_COLUMNS.index("consent_id"), entry.c.id.label("consent_id"))
    conditions = [f(entry) for f in filters]
    return sa.select(*columns).where(*conditions, entry.c.status != _PENDING, sa.not_(superseded))


def refill_consent_states(connection: Connection, ledger: sa.FromClause, states: sa.Table) -> None:
    """Fill the (empty) ``states`` from every tenant's ``ledger`` (the upgrade to 13)."""
    connection.execute(sa.insert(states).from_select(_STATE_COLUMNS, in_force(ledger)))


def settle_consent_states(
    connection: Connection,
    ledger: sa.FromClause,
    states: sa.Table,
    tenant: str,
    contact_ids: Iterable[UUID],
) -> None:
    """Rewrite the tenant's states of ``contact_ids`` from their ledger entries, after a
    write of those entries (in the same transaction)."""
    wanted = sorted(set(contact_ids))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        connection.execute(
            sa.delete(states).where(states.c.tenant == tenant, states.c.contact_id.in_(chunk))
        )
        fresh = in_force(
            ledger,
            lambda entry: entry.c.tenant == tenant,
            lambda entry, chunk=chunk: entry.c.contact_id.in_(chunk),
        )
        connection.execute(sa.insert(states).from_select(_STATE_COLUMNS, fresh))
