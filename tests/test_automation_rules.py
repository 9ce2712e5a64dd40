"""Automation rules as data: JSON in and out, typed errors with JSON paths, checks
against the configuration, cycles, compiled sequences and the times waits end."""

import json
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmkit.automation import (
    AddTag,
    AssignByCapacity,
    AssignByTerritory,
    AssignRoundRobin,
    Automation,
    AutomationRule,
    Branch,
    CallHook,
    Check,
    CreateTask,
    MoveStage,
    OnEvent,
    OnSchedule,
    Rescore,
    Seat,
    SendMessage,
    Territory,
    Wait,
    WaitUntil,
    chain_depth,
    compile_steps,
    follow_up_after_no_reply,
    next_time_of_day,
    quarterly_check_in,
    rules_from_json,
    rules_to_json,
    sla_escalation,
    speed_to_lead,
    wait_until,
)
from crmkit.errors import (
    AutomationLoop,
    InvalidAutomation,
    UnknownAction,
    UnknownEventType,
    UnknownReference,
    ValidationError,
)
from crmkit.lifecycle import BusinessCalendar, Pipeline, Stage, StageKind
from crmkit.models import ConsentChannel, SubjectKind
from crmkit.models.rules import Compare, Op, Rule, RuleEntity

OFFICE = BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="proposal", label="Proposal", probability=Decimal("0.5")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)
GERMANS = Rule(RuleEntity.CONTACT, Compare("country", Op.EQ, "DE"))
BIG = Rule(RuleEntity.DEAL, Compare("owner", Op.EQ, "ann"))


def every_step_rule() -> AutomationRule:
    """A rule with every kind of step, for round trips."""
    return AutomationRule(
        name="everything",
        trigger=OnEvent("deal.won"),
        condition=BIG,
        actions=(
            AssignRoundRobin(("ann", "bob")),
            AssignByCapacity((Seat("ann", 3), Seat("bob", 5)), overflow="lead"),
            AssignByTerritory((Territory(GERMANS, "dach"),), otherwise="rest"),
            AddTag("hot"),
            CreateTask("Call", due_in=timedelta(hours=2), calendar="office"),
            Wait(timedelta(hours=2), calendar="office"),
            WaitUntil(time(9)),
            Check(GERMANS),
            Branch(BIG, (Rescore(),), (MoveStage("proposal", "sales"),)),
            SendMessage("mail", ConsentChannel.EMAIL, "newsletter", "welcome"),
            CallHook("notify", params={"level": 2}, emits={"task.created"}),
        ),
        description="All of it.",
    )


def everything() -> Automation:
    return Automation(
        [every_step_rule()],
        calendars={"office": OFFICE},
        senders={"mail": lambda message: None},
        hooks={"notify": lambda crm, call: None},
        pipelines=[SALES],
    )


# ------------------------------------------------------------------ JSON


def test_rules_round_trip_through_json_text() -> None:
    rules = (
        every_step_rule(),
        speed_to_lead(["ann", "bob"], calendar="office"),
        follow_up_after_no_reply(calendar="office"),
        quarterly_check_in(),
        *sla_escalation(["escalations"]),
    )
    text = json.dumps(rules_to_json(rules))
    assert rules_from_json(json.loads(text)) == rules
    assert json.loads(text)[0]["actions"][0] == {
        "type": "assign_round_robin",
        "team": ["ann", "bob"],
    }


def document() -> list[dict[str, Any]]:
    return rules_to_json([every_step_rule()])


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        (lambda d: d[0]["actions"][3].update(type="fly"), UnknownAction, "$[0].actions[3].type"),
        (
            lambda d: d[0]["actions"][8]["then"][0].update(type="teleport"),
            UnknownAction,
            "$[0].actions[8].then[0].type",
        ),
        (
            lambda d: d[0]["trigger"].update(event="deal.nope"),
            UnknownEventType,
            "$[0].trigger.event",
        ),
        (
            lambda d: d[0]["actions"][10].update(emits=["x.y"]),
            UnknownEventType,
            "$[0].actions[10].emits",
        ),
        (
            lambda d: d[0]["actions"][4].update(due_in="PT-2H"),
            InvalidAutomation,
            "$[0].actions[4].due_in",
        ),
        (
            lambda d: d[0]["actions"][4].update(due_in=7200),
            InvalidAutomation,
            "$[0].actions[4].due_in",
        ),
        (lambda d: d[0]["actions"][0].update(team=[]), InvalidAutomation, "$[0].actions[0].team"),
        (
            lambda d: d[0]["actions"][0].update(team=["a", "a"]),
            InvalidAutomation,
            "$[0].actions[0].team[1]",
        ),
        (lambda d: d[0]["actions"][6].update(at="25:00"), InvalidAutomation, "$[0].actions[6].at"),
        (
            lambda d: d[0]["actions"][4].update(colour="red"),
            InvalidAutomation,
            "$[0].actions[4].colour",
        ),
        (lambda d: d[0]["actions"][4].pop("title"), InvalidAutomation, "$[0].actions[4].title"),
        (lambda d: d[0].update(name="Not A Key"), InvalidAutomation, "$[0].name"),
        (lambda d: d[0].update(actions=[]), InvalidAutomation, "$[0].actions"),
        (
            lambda d: d[0]["condition"]["where"].update(field="no_such_field"),
            InvalidAutomation,
            "$[0].condition.no_such_field",
        ),
        (lambda d: d[0]["trigger"].update(type="cron"), InvalidAutomation, "$[0].trigger.type"),
        (lambda d: d.append(dict(d[0])), InvalidAutomation, "$[1].name"),
    ],
)
def test_bad_rules_raise_typed_errors_naming_the_json_path(
    change: Any, error: type[Exception], field: str
) -> None:
    data = document()
    change(data)
    with pytest.raises(error) as raised:
        rules_from_json(data)
    assert isinstance(raised.value, InvalidAutomation)
    assert field in [p.field for p in raised.value.problems]


def test_every_problem_is_reported_at_once() -> None:
    data = document()
    data[0]["actions"][3]["type"] = "fly"
    data[0]["actions"][4]["due_in"] = "soon"
    with pytest.raises(InvalidAutomation) as raised:
        rules_from_json(data)
    assert {p.field for p in raised.value.problems} == {
        "$[0].actions[3].type",
        "$[0].actions[4].due_in",
    }


def test_a_condition_on_another_entity_than_the_subject_is_refused() -> None:
    with pytest.raises(InvalidAutomation) as raised:
        AutomationRule("r", OnEvent("lead.captured"), [Check(BIG)])
    assert raised.value.field == "actions[0].rule.entity"
    # a contact rule is read on the subject's contact: fine for every subject
    AutomationRule("r", OnEvent("task.overdue"), [Check(GERMANS)], condition=GERMANS)
    with pytest.raises(InvalidAutomation, match="no owner"):
        AutomationRule("r", OnEvent("task.overdue"), [AssignRoundRobin(("a",))])


# ------------------------------------------------------------------ the configuration


def test_references_are_checked_against_the_configuration() -> None:
    everything()  # all present: fine
    rule = every_step_rule()
    with pytest.raises(UnknownReference) as raised:
        Automation([rule], pipelines=[SALES])
    assert [p.field for p in raised.value.problems] == [
        "rules[0].actions[4].calendar",
        "rules[0].actions[5].calendar",
        "rules[0].actions[9].sender",
        "rules[0].actions[10].hook",
    ]
    missing_stage = attrs.evolve(rule, actions=(MoveStage("signed", "sales"),))
    with pytest.raises(UnknownReference) as stage:
        Automation([missing_stage], pipelines=[SALES])
    assert stage.value.field == "rules[0].actions[0].stage"
    with pytest.raises(UnknownReference) as pipeline:
        Automation([attrs.evolve(rule, actions=(MoveStage("won", "renewals"),))], pipelines=[SALES])
    assert pipeline.value.field == "rules[0].actions[0].pipeline"
    lead_rule = AutomationRule("l", OnEvent("lead.captured"), [MoveStage("won", "sales")])
    with pytest.raises(InvalidAutomation, match="is a deal pipeline"):
        Automation([lead_rule], pipelines=[SALES])
    with pytest.raises(UnknownReference, match="lifecycle stage"):
        Automation([AutomationRule("c", OnEvent("contact.created"), [MoveStage("vip")])])


def test_from_json_checks_the_configuration_too() -> None:
    data = document()
    data[0]["actions"][4]["calendar"] = "night_shift"
    with pytest.raises(UnknownReference) as raised:
        Automation.from_json(
            data,
            calendars={"office": OFFICE},
            senders={"mail": print},
            hooks={"notify": print},
            pipelines=[SALES],
        )
    assert raised.value.field == "rules[0].actions[4].calendar"
    assert raised.value.value == "night_shift"


# ------------------------------------------------------------------ cycles


def test_rules_that_trigger_each_other_are_refused_naming_the_cycle() -> None:
    tasks_make_deals_move = AutomationRule(
        "on_task", OnEvent("task.created"), [CallHook("move", emits={"deal.moved"})]
    )
    moves_make_tasks = AutomationRule("on_move", OnEvent("deal.moved"), [CreateTask("Review")])
    unrelated = AutomationRule("on_lead", OnEvent("lead.captured"), [CreateTask("Call")])
    hooks = {"move": print}
    with pytest.raises(InvalidAutomation, match="cycle") as raised:
        Automation([unrelated, tasks_make_deals_move, moves_make_tasks], hooks=hooks)
    assert raised.value.value == "on_task -> on_move -> on_task"
    assert raised.value.field == "rules[1].trigger"
    # a rule triggering itself through a stage move of a pipeline
    mover = AutomationRule("mover", OnEvent("deal.moved"), [MoveStage("proposal", "sales")])
    with pytest.raises(InvalidAutomation, match="cycle"):
        Automation([mover], pipelines=[SALES])
    # without the pipeline the move's events are unknown; install checks again with it
    Automation([mover])
    # allowed on every rule of the cycle: accepted (max_depth bounds it at run time)
    allowed = [attrs.evolve(r, allow_cycle=True) for r in (tasks_make_deals_move, moves_make_tasks)]
    Automation([unrelated, *allowed], hooks=hooks)
    with pytest.raises(InvalidAutomation, match="cycle"):
        Automation([allowed[0], moves_make_tasks], hooks=hooks)


def test_chain_depth_follows_causes_and_stops_at_the_limit() -> None:
    ids = [uuid4() for _ in range(30)]
    causes = {ids[i]: ids[i + 1] for i in range(29)}
    assert chain_depth(None, causes.get, limit=5) == 0
    assert chain_depth(ids[27], causes.get, limit=5) == 3
    assert chain_depth(ids[0], causes.get, limit=5) == 6
    looped = {ids[0]: ids[1], ids[1]: ids[0]}
    assert chain_depth(ids[0], looped.get, limit=100) == 101


def test_the_handler_refuses_an_event_deeper_than_max_depth() -> None:
    ids = [uuid4() for _ in range(12)]
    causes = {ids[i]: ids[i + 1] for i in range(11)}

    @attrs.frozen
    class Deep:
        id: Any
        caused_by: Any
        type = "deal.moved"

    class Host:
        def cause_of(self, id: Any) -> Any:
            return causes.get(id)

    automation = Automation(
        [AutomationRule("a", OnEvent("deal.moved"), [AddTag("x")])], max_depth=4
    )
    with pytest.raises(AutomationLoop) as raised:
        automation.handle(Host(), Deep(uuid4(), ids[0]))  # type: ignore[arg-type]
    assert (raised.value.depth, raised.value.limit) == (5, 4)


# ------------------------------------------------------------------ sequences


def test_branches_compile_to_forward_jumps() -> None:
    program = compile_steps(
        [
            Branch(GERMANS, [AddTag("de")], [AddTag("world"), AddTag("far")]),
            Branch(GERMANS, [AddTag("only_then")]),
            AddTag("end"),
        ]
    )
    assert [(i.path, i.jump) for i in program] == [
        ("actions[0]", 3),
        ("actions[0].then[0]", None),
        ("actions[0].then", 5),
        ("actions[0].otherwise[0]", None),
        ("actions[0].otherwise[1]", None),
        ("actions[1]", 7),
        ("actions[1].then[0]", None),
        ("actions[2]", None),
    ]
    assert all(i.jump is None or i.jump > n for n, i in enumerate(program))


def run(program: Any, truths: dict[int, bool]) -> list[str]:
    """The tags a program adds when the branch at each index holds as ``truths`` say."""
    added, index = [], 0
    while index < len(program):
        instruction = program[index]
        if instruction.action is None:
            index = instruction.jump
        elif isinstance(instruction.action, Branch):
            index = index + 1 if truths[index] else instruction.jump
        else:
            added.append(instruction.action.name)
            index += 1
    return added


def test_a_compiled_branch_runs_then_or_otherwise_and_goes_on() -> None:
    program = compile_steps(
        [Branch(GERMANS, [AddTag("de")], [AddTag("world"), AddTag("far")]), AddTag("end")]
    )
    assert run(program, {0: True}) == ["de", "end"]
    assert run(program, {0: False}) == ["world", "far", "end"]


def test_nesting_is_bounded() -> None:
    steps: Any = [AddTag("x")]
    for _ in range(9):
        steps = [Branch(GERMANS, steps)]
    with pytest.raises(InvalidAutomation, match="nest"):
        AutomationRule("deep", OnEvent("contact.created"), steps)


# ------------------------------------------------------------------ time


def test_wait_two_business_hours_and_until_nine_in_the_contacts_zone() -> None:
    friday_4pm_berlin = datetime(2026, 3, 6, 15, tzinfo=UTC)
    two_hours = Wait(timedelta(hours=2), "office")
    waited = wait_until(
        two_hours, friday_4pm_berlin, calendars={"office": OFFICE}, zone=ZoneInfo("UTC")
    )
    assert waited == datetime(2026, 3, 9, 9, tzinfo=UTC)  # Monday 10:00 in Berlin
    nine = WaitUntil(time(9))
    tokyo = wait_until(nine, friday_4pm_berlin, calendars={}, zone=ZoneInfo("Asia/Tokyo"))
    assert tokyo == datetime(2026, 3, 7, 0, tzinfo=UTC)  # Saturday 09:00 in Tokyo
    fixed = WaitUntil(time(9), timezone="America/New_York")
    friday_noon = datetime(2026, 3, 6, 12, tzinfo=UTC)
    assert wait_until(fixed, friday_noon, calendars={}, zone=ZoneInfo("Asia/Tokyo")) == (
        datetime(2026, 3, 6, 14, tzinfo=UTC)  # 09:00 in New York, later the same day
    )


def test_next_time_of_day_across_daylight_saving_changes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks jump from 02:00 to 03:00; 02:30 does not exist
    before = datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert next_time_of_day(before, time(2, 30), berlin) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    # 2026-10-25: 02:30 happens twice; the first counts
    autumn = datetime(2026, 10, 24, 23, tzinfo=UTC)
    assert next_time_of_day(autumn, time(2, 30), berlin) == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.times(),
    st.sampled_from(
        ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
    ),
)
@settings(max_examples=200, deadline=None)
def test_next_time_of_day_is_the_first_such_instant(at: datetime, wall: time, name: str) -> None:
    zone = ZoneInfo(name)
    found = next_time_of_day(at, wall, zone)
    assert at <= found <= at + timedelta(days=1, hours=1)
    assert next_time_of_day(found, wall, zone) == found  # a time already reached stays
    local = found.astimezone(zone).replace(tzinfo=None)
    if local.time() != wall:  # only when the clock skipped ``wall`` that day
        assert local.time() > wall
        assert (found - timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None).time() < wall
    # nothing earlier after ``at`` shows ``wall``: a minute earlier is before ``at`` or
    # another wall time, and a day earlier is before ``at``
    earlier = found - timedelta(days=1)
    assert earlier < at or earlier.astimezone(zone).time() != wall


# ------------------------------------------------------------------ ready-made rules


def test_ready_made_rules() -> None:
    fast = speed_to_lead(["ann", "bob"], within=timedelta(minutes=5), calendar="office")
    assert fast.trigger == OnEvent("lead.captured")
    assert fast.actions[0] == AssignRoundRobin(("ann", "bob"))
    assert fast.actions[1].due_in == timedelta(minutes=5)  # type: ignore[attr-defined]
    follow = follow_up_after_no_reply(timedelta(days=3))
    assert [a.tag for a in follow.actions] == ["wait", "check", "create_task"]
    check = follow.actions[1]
    assert isinstance(check, Check)
    assert {node.within_days for node in check.rule.walk() if hasattr(node, "within_days")} == {3}
    quarterly = quarterly_check_in()
    assert isinstance(quarterly.trigger, OnSchedule)
    assert quarterly.trigger.every == timedelta(days=91)
    warn, breach = sla_escalation(["esc1", "esc2"])
    assert (warn.trigger, breach.trigger) == (OnEvent("sla.at_risk"), OnEvent("sla.breached"))
    assert breach.actions[0] == AssignRoundRobin(("esc1", "esc2"))
    Automation([fast, follow, quarterly, warn, breach], calendars={"office": OFFICE})
    with pytest.raises(UnknownEventType):
        follow_up_after_no_reply(trigger="email.bounced")


def test_schedules_count_periods_from_the_anchor() -> None:
    daily = OnSchedule(timedelta(days=1))
    at = datetime(2026, 3, 6, 15, tzinfo=UTC)
    period = daily.period(at)
    assert daily.starts(period) <= at < daily.starts(period + 1)
    assert daily.starts(period + 1) == datetime(2026, 3, 7, tzinfo=UTC)
    with pytest.raises(ValidationError):
        OnSchedule(timedelta(seconds=5))
