"""The multi-process bar of durable timers: 10,000 steps run by worker processes
(4 on PostgreSQL, 2 on SQLite) of which some are killed with ``kill -9`` mid-run and
restarted. At the end every step is done, its effect (an activity whose id derives from
the step's) is stored exactly once, and the run logs show that no step ran twice except
where a killed worker had claimed it first."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4, uuid5

import sqlalchemy as sa

from crmkit.automation import StepStatus, new_step
from crmkit.models import Activity, ActivityKind, Contact
from crmkit.storage.sql import SqlStore, open_store, schema
from tests.storage_support import postgres_url

STEPS = 10_000
LEASE_SECONDS = 5.0
"""Short, for a quick recovery after a kill, yet far longer than a claim of 5 steps runs
(under heavy load too): a live worker never loses its lease mid-run."""
ROOT = Path(__file__).parent.parent


def _schedule(store: SqlStore) -> tuple[Contact, list[UUID]]:
    now = datetime.now(UTC)
    contact = Contact.new(email="bar@example.org")
    with store.unit_of_work() as unit:
        unit.contacts.add(contact)
        ids = []
        for n in range(STEPS):
            step = new_step("bar", {"contact": str(contact.id), "n": n}, due_at=now, now=now)
            unit.steps.schedule(step)
            ids.append(step.id)
        unit.commit()
    return contact, ids


def _count_done(engine: sa.Engine, tenant: str) -> int:
    steps = schema().steps
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count())
                .select_from(steps)
                .where(steps.c.tenant == tenant, steps.c.status == StepStatus.DONE.value)
            ).scalar_one()
        )


def _run_bar(url: str, workers: int, kills: int, tmp_path: Path) -> None:
    tenant = f"bar-{uuid4().hex[:8]}"
    store = open_store(url, tenant=tenant)
    contact, ids = _schedule(store)
    engine = sa.create_engine(url)
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    logs: list[Path] = []
    killed: set[Path] = set()

    def start() -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"worker-{len(logs)}.log"
        logs.append(log)
        command = [sys.executable, "-m", "tests.step_worker", url, tenant, str(log), str(stop)]
        process = subprocess.Popen([*command, str(LEASE_SECONDS)], cwd=ROOT, env=env)
        return process, log

    running = [start() for _ in range(workers)]
    pick = random.Random(16)
    deadline = time.monotonic() + 900  # generous: a loaded CI machine
    try:
        done = 0
        while done < STEPS:
            assert time.monotonic() < deadline, f"only {done} of {STEPS} steps done"
            time.sleep(pick.uniform(0.3, 0.8))
            done = _count_done(engine, tenant)
            if kills and STEPS // 10 < done < STEPS * 8 // 10:
                index = pick.randrange(len(running))
                process, log = running[index]
                os.kill(process.pid, signal.SIGKILL)  # mid-run, leases held
                process.wait()
                killed.add(log)
                running[index] = start()
                kills -= 1
        assert kills == 0, "the workers finished before every kill was made"
    finally:
        stop.touch()
        for process, _ in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung worker
                process.kill()

    with store.unit_of_work() as unit:
        steps = unit.steps.select()
        effects = unit.activities.for_contact(contact.id, kinds=[ActivityKind.NOTE])
    store.close()
    engine.dispose()
    assert len(steps) == STEPS
    assert {s.status for s in steps} == {StepStatus.DONE}  # none lost, none dead
    # Every step's effect exactly once: one activity per step, with the step's id.
    assert sorted(a.id for a in effects) == sorted(uuid5(i, "effect") for i in ids)
    assert all(isinstance(a, Activity) for a in effects)
    # No step ran twice, except where a killed worker had started it first.
    starts: defaultdict[UUID, list[Path]] = defaultdict(list)
    for log in logs:
        if not log.exists():  # killed before it started: it ran nothing
            assert log in killed
            continue
        for line in log.read_text().splitlines():
            word, _, value = line.partition(" ")
            if word == "start":
                starts[UUID(value)].append(log)
    assert set(starts) == set(ids)
    twice = {step: runs for step, runs in starts.items() if len(runs) > 1}
    for step, runs in twice.items():
        survivors = [log for log in runs if log not in killed]
        assert len(survivors) <= 1, f"{step} ran in {len(survivors)} live workers"
    assert killed, "no worker was killed"
    retried = sum(1 for s in steps if s.attempts > 1)
    assert len(twice) <= retried  # a rerun is always a claim after a lease ran out


def test_postgresql_workers_killed_mid_run_lose_and_repeat_nothing(tmp_path: Path) -> None:
    _run_bar(postgres_url(), workers=4, kills=3, tmp_path=tmp_path)


def test_sqlite_workers_killed_mid_run_lose_and_repeat_nothing(tmp_path: Path) -> None:
    _run_bar(f"sqlite:///{tmp_path / 'bar.db'}", workers=2, kills=2, tmp_path=tmp_path)
