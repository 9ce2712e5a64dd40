"""The application service: :class:`CRM` wires a store, a clock and the configured
pipelines, and runs each use case of the customer lifecycle in one unit of work.

:func:`procrastinate_tasks` hands the CRM's due steps to a procrastinate app (extra
``automation-pg``); :data:`RUNNING_STEP` holds the step whose runner runs."""

from crmkit.crm._consent import ConsentRequest
from crmkit.crm._import import (
    DuplicateAction,
    ImportReport,
    RejectedRow,
    import_csv,
    read_mapping,
)
from crmkit.crm._procrastinate import procrastinate_tasks
from crmkit.crm._service import CRM, REPLY_LIMIT
from crmkit.crm._steps import RUNNING_STEP, StepRunner

__all__ = [
    "CRM",
    "REPLY_LIMIT",
    "RUNNING_STEP",
    "ConsentRequest",
    "DuplicateAction",
    "ImportReport",
    "RejectedRow",
    "StepRunner",
    "import_csv",
    "procrastinate_tasks",
    "read_mapping",
]
