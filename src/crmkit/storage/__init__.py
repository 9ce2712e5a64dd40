"""Storage: the port every store implements, and the memory adapter.

* :class:`Store`, :class:`UnitOfWork`, :class:`Repository`, :class:`ContactRepository`,
  :class:`TaskRepository`, :class:`ActivityRepository`, :class:`StageHistoryRepository`
  and :class:`AuditRepository` are the port (Protocols); :data:`REPOSITORIES` names the
  repository of each entity;
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
from crmkit.storage._columns import ENTITIES, REFERRERS, REPOSITORIES, references
from crmkit.storage._columns import groupable as groupable_fields
from crmkit.storage._columns import sortable as sortable_fields
from crmkit.storage._port import (
    ActivityRepository,
    AuditRepository,
    ContactRepository,
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
    "REPOSITORIES",
    "ActivityRepository",
    "AuditRepository",
    "ContactRepository",
    "Cursor",
    "MemoryStore",
    "Order",
    "Page",
    "Repository",
    "StageHistoryRepository",
    "Store",
    "TaskRepository",
    "UnitOfWork",
    "groupable_fields",
    "references",
    "sortable_fields",
    "validate_tenant",
]
