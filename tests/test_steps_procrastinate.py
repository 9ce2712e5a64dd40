"""procrastinate runs crmkit's due steps: its workers call the same claim-and-run code
as :meth:`CRM.run_due` (PostgreSQL: procrastinate's queue and crmkit's store in the same
database)."""

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa

from crmkit.automation import Step, StepStatus
from crmkit.crm import CRM, procrastinate_tasks
from crmkit.errors import MissingExtra, ValidationError
from crmkit.storage import MemoryStore
from crmkit.storage.sql import SqlStore, open_store
from tests.storage_support import postgres_url

procrastinate = pytest.importorskip("procrastinate")
InMemoryConnector = pytest.importorskip("procrastinate.testing").InMemoryConnector


def _conninfo(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


@pytest.fixture
def app() -> Iterator[Any]:
    url = postgres_url()
    made = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo(url)))
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        present = sa.inspect(connection).has_table("procrastinate_jobs")
    engine.dispose()
    with made.open():
        if not present:
            made.schema_manager.apply_schema()
        yield made


@pytest.fixture
def store() -> Iterator[SqlStore]:
    made = open_store(postgres_url(), tenant=f"pq-{uuid4().hex[:8]}")
    yield made
    made.close()


def _work(app: Any, queue: str) -> None:
    """One procrastinate worker that runs the queue's ready jobs, then stops."""
    app.run_worker(queues=[queue], wait=False, install_signal_handlers=False)


def test_procrastinate_workers_run_the_due_steps_once(app: Any, store: SqlStore) -> None:
    queue = f"q{uuid4().hex[:8]}"
    crm = CRM(store)
    runs: list[int] = []
    crm.register_runner("hello", lambda c, s: runs.append(s.payload["n"]))
    procrastinate_tasks(app, crm, name=f"{queue}.run_due", queue=queue, cron=None)
    now = datetime.now(UTC)
    due = [
        crm.schedule_step("hello", {"n": n}, due_at=now - timedelta(seconds=1)) for n in range(5)
    ]
    later = crm.schedule_step("hello", {"n": 99}, due_at=now + timedelta(hours=1))

    _work(app, queue)  # five jobs were deferred: the first runs every due step

    assert sorted(runs) == [0, 1, 2, 3, 4]
    assert {crm.step(s.id).status for s in due} == {StepStatus.DONE}
    assert crm.step(later.id).status is StepStatus.PENDING  # its job waits for due_at
    _work(app, queue)
    assert sorted(runs) == [0, 1, 2, 3, 4]  # nothing runs twice


def test_the_sweep_runs_what_no_job_was_deferred_for(app: Any, store: SqlStore) -> None:
    """A retry that became due has no job of its own: the periodic sweep runs it, and
    crmkit's own workers may run steps beside procrastinate's."""
    queue = f"q{uuid4().hex[:8]}"
    crm = CRM(store)
    attempts: list[int] = []

    def flaky(crm: CRM, step: Step) -> None:
        attempts.append(step.attempts)
        if step.attempts == 1:
            raise RuntimeError("first try fails")

    crm.register_runner("flaky", flaky, retry_after=timedelta(milliseconds=1))
    name = f"{queue}.run_due"
    procrastinate_tasks(app, crm, name=name, queue=queue, defer_on_schedule=False)
    step = crm.schedule_step("flaky", {}, due_at=datetime.now(UTC) - timedelta(seconds=1))
    assert crm.run_due().failed == (step.id,)  # a crmkit worker, beside the queue

    app.tasks[f"{name}.sweep"].defer(timestamp=0)  # what the periodic deferrer does
    _work(app, queue)

    assert attempts == [1, 2]
    assert crm.step(step.id).status is StepStatus.DONE
    assert app.periodic_registry.periodic_tasks, "the sweep is a periodic task"


def test_procrastinate_is_an_extra_and_its_arguments_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm = CRM(MemoryStore())
    with pytest.raises(ValidationError) as refused:
        procrastinate_tasks("not an app", crm)
    assert refused.value.field == "app"
    app = procrastinate.App(connector=InMemoryConnector())
    with pytest.raises(ValidationError) as refused:
        procrastinate_tasks(app, crm, limit=0)
    assert refused.value.field == "limit"
    monkeypatch.setitem(sys.modules, "procrastinate", None)
    with pytest.raises(MissingExtra) as missing:
        procrastinate_tasks(app, crm)
    assert missing.value.extra == "automation-pg"
