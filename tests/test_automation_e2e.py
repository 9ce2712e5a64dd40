"""Automation end to end, on memory, SQLite and PostgreSQL: an installed automation's
handler gets the events a use case recorded (dispatch), schedules durable steps, and
workers run them (run_due); a redelivered event schedules nothing new; rules that
trigger each other are stopped by the chain bound while the use cases stay committed;
and each action records only event types its rule table declares (the cycle check
reads that table)."""

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from crmkit.automation import (
    ACTION_EMITS,
    EVENT_SUBJECTS,
    EVENT_TYPES,
    AddTag,
    Automation,
    AutomationRule,
    DeliveryStatus,
    OnEvent,
    RemoveTag,
    speed_to_lead,
)
from crmkit.crm import CRM
from crmkit.lifecycle import BusinessCalendar, Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import LeadChannel, SubjectKind, TaskKind
from crmkit.models.rules import Not
from crmkit.segmentation import contacts_where, has_tag
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Berlin
OFFICE = BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "automation_e2e")


def capture(crm: CRM, email: str) -> object:
    touch = Touchpoint(email=email, source="web", channel=LeadChannel.FORM)
    return crm.capture_lead(touch).lead


def work(crm: CRM, rounds: int = 20) -> None:
    """Dispatch and run due steps until nothing is left (a worker's loop)."""
    for _ in range(rounds):
        delivered = crm.dispatch(limit=100).calls
        ran = len(crm.run_due(limit=100).claimed)
        if not delivered and not ran:
            return
    raise AssertionError("work never ran out")


def test_speed_to_lead_runs_from_the_event_to_the_task(store: Store) -> None:
    crm = CRM(store, pipelines=[SALES])
    automation = Automation(
        [speed_to_lead(["ann", "bob"], within=timedelta(minutes=5), calendar="office")],
        calendars={"office": OFFICE},
    )
    automation.install(crm)
    leads = [capture(crm, f"{name}@example.com") for name in ("ada", "bo", "cy")]
    work(crm)
    with store.unit_of_work() as unit:
        owners = [unit.leads.get(lead.id).owner for lead in leads]  # type: ignore[attr-defined]
        tasks = unit.tasks.select()
    assert owners == ["ann", "bob", "ann"]
    assert len(tasks) == 3
    assert {t.kind for t in tasks} == {TaskKind.CALL}
    assert sorted(t.assignee for t in tasks) == ["ann", "ann", "bob"]
    # Everything ran once: a second worker pass finds nothing, a redelivery of the
    # events (the handler called again) schedules no new step.
    work(crm)
    steps_before = len(crm.steps())
    for recorded in crm.events(types=["lead.captured"]):
        automation.handle(crm, recorded.event)
    assert len(crm.steps()) == steps_before
    work(crm)
    with store.unit_of_work() as unit:
        assert len(unit.tasks.select()) == 3


def test_an_automation_installed_on_a_store_with_history_acts_on_later_events(
    store: Store,
) -> None:
    crm = CRM(store, pipelines=[SALES])
    old = capture(crm, "old@example.com")  # before the automation existed
    automation = Automation([speed_to_lead(["ann"])], name="sales")
    automation.install(crm)
    new = capture(crm, "new@example.com")
    work(crm)
    with store.unit_of_work() as unit:
        owners = {lead.id: unit.leads.get(lead.id).owner for lead in (old, new)}  # type: ignore[attr-defined]
        assert len(unit.tasks.select()) == 1
    assert owners == {old.id: None, new.id: "ann"}  # type: ignore[attr-defined]
    # Installed again (a restart) while a lead came in: that lead is not skipped.
    later = capture(crm, "later@example.com")
    restarted = CRM(store, pipelines=[SALES])
    automation.install(restarted)
    work(restarted)
    with store.unit_of_work() as unit:
        assert unit.leads.get(later.id).owner == "ann"  # type: ignore[attr-defined]
        assert unit.leads.get(old.id).owner is None  # type: ignore[attr-defined]


def test_rules_that_trigger_each_other_are_stopped_and_nothing_is_undone(store: Store) -> None:
    crm = CRM(store, pipelines=[SALES])
    flip = AutomationRule(
        name="tag",
        trigger=OnEvent("contact.changed"),
        condition=contacts_where(Not(has_tag("vip"))),
        actions=(AddTag("vip"),),
        allow_cycle=True,
    )
    flop = AutomationRule(
        name="untag",
        trigger=OnEvent("contact.changed"),
        condition=contacts_where(has_tag("vip")),
        actions=(RemoveTag("vip"),),
        allow_cycle=True,
    )
    automation = Automation([flip, flop], max_depth=4)
    automation.install(crm)
    lead = capture(crm, "ada@example.com")
    contact_id = lead.contact_id  # type: ignore[attr-defined]
    crm.update_contact(contact_id, first_name="Ada")  # the first contact.changed
    work(crm, rounds=60)
    stopped = [d for d in crm.deliveries(limit=1000) if "AutomationLoop" in (d.error or "")]
    assert stopped, "the chain was stopped by its bound"
    assert all(d.status is not DeliveryStatus.DONE for d in stopped)  # retried, then dead
    changes = crm.events(types=["contact.changed"], subject_id=contact_id, limit=1000)
    assert 2 <= len(changes) <= 2 * (automation.max_depth + 2)  # bounded, not endless
    assert crm.find_contact("ada@example.com") is not None  # the use cases stayed


def test_the_rule_tables_name_only_recorded_event_types() -> None:
    assert set(EVENT_SUBJECTS) <= set(EVENT_TYPES)
    for action, types in ACTION_EMITS.items():
        assert types <= set(EVENT_TYPES), action


def test_actions_record_only_the_event_types_their_table_declares(store: Store) -> None:
    crm = CRM(store, pipelines=[SALES])
    rule = AutomationRule(
        name="welcome",
        trigger=OnEvent("lead.captured"),
        actions=(*speed_to_lead(["ann"], calendar="office").actions, AddTag("new")),
    )
    automation = Automation([rule], calendars={"office": OFFICE})
    automation.install(crm)
    capture(crm, "ada@example.com")
    crm.dispatch()
    last = max((r.position for r in crm.events(limit=1000)), default=0)
    work(crm)
    recorded = {r.event.type for r in crm.events(after=last, limit=1000)}
    declared = set().union(*(ACTION_EMITS[type(a)] for a in rule.actions))
    assert recorded, "the actions recorded events"
    assert recorded <= declared
