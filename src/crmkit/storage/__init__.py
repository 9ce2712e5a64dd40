"""Storage: the port every store implements, and the memory adapter.

* :class:`Store`, :class:`UnitOfWork`, :class:`Repository`, :class:`ContactRepository`,
  :class:`AccountRepository`, :class:`TaskRepository`, :class:`ActivityRepository`,
  :class:`ConsentRepository`, :class:`DoNotContactRepository`,
  :class:`StageHistoryRepository`, :class:`MergeRepository`, :class:`AuditRepository`,
  :class:`OutboxRepository` and :class:`StepRepository`
  are the port (Protocols); :data:`REPOSITORIES` names the repository of each entity;
* :class:`Order`, :class:`Cursor` and :class:`Page` shape queries;
* :class:`MemoryStore` (:mod:`crmkit.storage.memory`) is the reference adapter;
* :mod:`crmkit.storage.sql` stores in SQLite (the embedded default) or PostgreSQL.

A store is opened for one tenant and never reads or writes another tenant's rows;
:func:`validate_tenant` says what a tenant key may be::

    with store.unit_of_work() as uow:
        uow.contacts.add(contact)
        uow.commit()
"""

from crmkit.storage._base import (
    check_erase_values,
    check_merge_anonymised,
    erased,
    merge_contacts,
    merge_from_json,
    merge_involves,
    merge_to_json,
    reach_counts_by_steps,
    validate_tenant,
)
from crmkit.storage._columns import ENTITIES, REFERENCES, REFERRERS, REPOSITORIES, references
from crmkit.storage._columns import groupable as groupable_fields
from crmkit.storage._columns import sortable as sortable_fields
from crmkit.storage._port import (
    AccountRepository,
    ActivityRepository,
    AuditRepository,
    ConsentRepository,
    ContactRepository,
    DoNotContactRepository,
    MergeRepository,
    OutboxRepository,
    Repository,
    StageHistoryRepository,
    StepRepository,
    Store,
    TaskRepository,
    UnitOfWork,
)
from crmkit.storage._query import Cursor, Order, Page
from crmkit.storage.memory import MemoryStore

__all__ = [
    "ENTITIES",
    "REFERENCES",
    "REFERRERS",
    "REPOSITORIES",
    "AccountRepository",
    "ActivityRepository",
    "AuditRepository",
    "ConsentRepository",
    "ContactRepository",
    "Cursor",
    "DoNotContactRepository",
    "MemoryStore",
    "MergeRepository",
    "Order",
    "OutboxRepository",
    "Page",
    "Repository",
    "StageHistoryRepository",
    "StepRepository",
    "Store",
    "TaskRepository",
    "UnitOfWork",
    "check_erase_values",
    "check_merge_anonymised",
    "erased",
    "groupable_fields",
    "merge_contacts",
    "merge_from_json",
    "merge_involves",
    "merge_to_json",
    "reach_counts_by_steps",
    "references",
    "sortable_fields",
    "validate_tenant",
]
