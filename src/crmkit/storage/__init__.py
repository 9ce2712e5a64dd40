"""Storage: the port every store implements, and the memory adapter.

* :class:`Store`, :class:`UnitOfWork`, :class:`Repository`, :class:`ContactRepository`,
  :class:`TaskRepository`, :class:`ActivityRepository`, :class:`ConsentRepository`,
  :class:`DoNotContactRepository` and :class:`StageHistoryRepository` are the port (Protocols);
* :class:`Order`, :class:`Cursor` and :class:`Page` shape queries;
* :class:`MemoryStore` (:mod:`crmkit.storage.memory`) is the reference adapter;
* :mod:`crmkit.storage.sql` stores in SQLite (the embedded default) or PostgreSQL.

A store is opened for one tenant and never reads or writes another tenant's rows;
:func:`validate_tenant` says what a tenant key may be::

    with store.unit_of_work() as uow:
        uow.contacts.add(contact)
        uow.commit()
"""

from crmkit.storage._base import validate_tenant
from crmkit.storage._columns import ENTITIES, REFERRERS
from crmkit.storage._columns import groupable as groupable_fields
from crmkit.storage._columns import sortable as sortable_fields
from crmkit.storage._port import (
    ActivityRepository,
    ConsentRepository,
    ContactRepository,
    DoNotContactRepository,
    Repository,
    StageHistoryRepository,
    Store,
    TaskRepository,
    UnitOfWork,
)
from crmkit.storage._query import Cursor, Order, Page
from crmkit.storage.memory import MemoryStore

__all__ = [
    "ENTITIES",
    "REFERRERS",
    "ActivityRepository",
    "ConsentRepository",
    "ContactRepository",
    "Cursor",
    "DoNotContactRepository",
    "MemoryStore",
    "Order",
    "Page",
    "Repository",
    "StageHistoryRepository",
    "Store",
    "TaskRepository",
    "UnitOfWork",
    "groupable_fields",
    "sortable_fields",
    "validate_tenant",
]
