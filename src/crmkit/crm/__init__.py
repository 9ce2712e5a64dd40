"""The application service: :class:`CRM` wires a store, a clock and the configured
pipelines, and runs each use case of the customer lifecycle in one unit of work."""

from crmkit.crm._consent import ConsentRequest
from crmkit.crm._import import (
    DuplicateAction,
    ImportReport,
    RejectedRow,
    import_csv,
    read_mapping,
)
from crmkit.crm._service import CRM, REPLY_LIMIT

__all__ = [
    "CRM",
    "REPLY_LIMIT",
    "ConsentRequest",
    "DuplicateAction",
    "ImportReport",
    "RejectedRow",
    "import_csv",
    "read_mapping",
]
