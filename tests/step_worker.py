"""A worker process of the multi-process bar (tests/test_step_workers.py): runs the due
steps of one tenant until told to stop, logging each run it starts and ends.

``python -m tests.step_worker URL TENANT LOG STOP LEASE_SECONDS``: the log gets
``start <step id>`` before a runner's effect and ``end <step id>`` after it, flushed at
once, so that a ``kill -9`` loses nothing written before it.
"""

import os
import sys
import time
from contextlib import suppress
from datetime import timedelta
from uuid import UUID, uuid5

import attrs

from crmkit.automation import Step
from crmkit.crm import CRM
from crmkit.errors import Duplicate
from crmkit.models import Activity, ActivityKind
from crmkit.storage.sql import open_store


def main() -> None:
    url, tenant, log_path, stop_path, lease_seconds = sys.argv[1:6]
    store = open_store(url, tenant=tenant, create=False)
    crm = CRM(store)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life

    def effect(crm: CRM, step: Step) -> None:
        log.write(f"start {step.id}\n")
        activity = Activity.new(
            contact_id=UUID(step.payload["contact"]), kind=ActivityKind.NOTE, clock=crm.clock
        )
        with suppress(Duplicate), crm.store.unit_of_work() as unit:  # its own unit
            unit.activities.add(attrs.evolve(activity, id=uuid5(step.id, "effect")))
            unit.commit()  # a rerun after a killed worker finds it stored: Duplicate
        log.write(f"end {step.id}\n")

    crm.register_runner("bar", effect)
    lease = timedelta(seconds=float(lease_seconds))
    log.write(f"pid {os.getpid()}\n")
    while not os.path.exists(stop_path):
        if not crm.run_due(limit=5, lease=lease).ran:
            time.sleep(0.05)
    store.close()


if __name__ == "__main__":
    main()
