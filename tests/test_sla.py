"""SLA clocks: business calendars, ticket events, policies, timers and the queue queries."""

import json
import random
import sys
from datetime import UTC, date, datetime, time, timedelta
from uuid import UUID

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import MissingExtra, ValidationError
from crmkit.lifecycle import (
    BusinessCalendar,
    SlaMetric,
    SlaPolicies,
    SlaPolicy,
    SlaReport,
    SlaState,
    TicketEvent,
    TicketEventKind,
    WorkingHours,
    add_business_time,
    breached,
    business_time_between,
    due_within,
    move_ticket,
    sla_status,
    ticket_events,
)
from crmkit.models import (
    Activity,
    ActivityKind,
    StageChange,
    SubjectKind,
    Ticket,
    TicketChannel,
    TicketPriority,
    TicketStatus,
)
from crmkit.segmentation import contacts_where, field, has_tag, tickets_where
from crmkit.serialization import make_converter

S = TicketStatus
M = SlaMetric
H = timedelta(hours=1)
CONTACT = UUID(int=42)
CONVERTER = make_converter()
OFFICE = BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# ---------------------------------------------------------------------------- calendars


def test_business_time_skips_nights_and_weekends() -> None:
    office = BusinessCalendar.workdays("UTC", time(9), time(17))
    friday = utc(6, 15)
    assert add_business_time(office, friday, 3 * H) == utc(9, 10)
    assert business_time_between(office, friday, utc(9, 10)) == 3 * H
    assert business_time_between(office, utc(7, 0), utc(8, 23, 59)) == timedelta(0)
    # Outside working hours the clock starts with the next working interval.
    assert add_business_time(office, utc(7, 12), 30 * timedelta(minutes=1)) == utc(9, 9, 30)
    assert add_business_time(office, utc(7, 12), timedelta(0)) == utc(7, 12)


def test_holidays_have_no_working_time() -> None:
    office = BusinessCalendar.workdays("UTC", time(9), time(17), holidays=[date(2026, 3, 9)])
    assert add_business_time(office, utc(6, 16), 2 * H) == utc(10, 10)


def test_public_holidays_come_from_the_holidays_package() -> None:
    # Good Friday (3 April) and Easter Monday (6 April 2026) are public holidays in Germany.
    easter = OFFICE.with_public_holidays("DE", [2026])
    assert {date(2026, 4, 3), date(2026, 4, 6)} <= easter.holidays
    thursday_4pm = datetime(2026, 4, 2, 14, 0, tzinfo=UTC)  # 16:00 in Berlin (CEST)
    assert add_business_time(easter, thursday_4pm, 2 * H) == datetime(2026, 4, 7, 8, 0, tzinfo=UTC)
    bavaria = OFFICE.with_public_holidays("DE", range(2026, 2027), subdivision="BY")
    assert date(2026, 1, 6) in bavaria.holidays  # Epiphany, in Bavaria only
    assert date(2026, 1, 6) not in easter.holidays


@pytest.mark.parametrize(
    ("arguments", "field_name", "value"),
    [
        ({"country": "XX", "years": [2026]}, "country", "XX"),
        ({"country": "DE", "years": [2026], "subdivision": "ZZ"}, "subdivision", "ZZ"),
        ({"country": "DE", "years": [0]}, "years", 0),
        ({"country": "DE", "years": ["2026"]}, "years", "2026"),
    ],
)
def test_public_holidays_reject_unknown_places_and_years(
    arguments: dict[str, object], field_name: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        OFFICE.with_public_holidays(**arguments)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == (field_name, value)


def test_public_holidays_without_the_extra_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "holidays", None)
    with pytest.raises(MissingExtra) as caught:
        OFFICE.with_public_holidays("DE", [2026])
    assert (caught.value.extra, caught.value.package) == ("holidays", "holidays")
    assert "crmkit[holidays]" in str(caught.value)


def test_working_hours_follow_the_wall_clock_across_daylight_saving_changes() -> None:
    # Berlin moves from CET (UTC+1) to CEST (UTC+2) on Sunday 29 March 2026.
    friday_5pm = utc(27, 16)
    assert add_business_time(OFFICE, friday_5pm, H) == utc(30, 8)  # Monday 10:00 CEST
    assert business_time_between(OFFICE, utc(27, 8), utc(30, 15)) == 16 * H
    # A whole-day calendar: that Sunday has 23 hours, 25 October 2026 has 25.
    always = BusinessCalendar("Europe/Berlin", ((WorkingHours(time(0), time(0)),),) * 7)
    spring, autumn = date(2026, 3, 29), date(2026, 10, 25)
    for day, hours in ((spring, 23), (autumn, 25)):
        start = datetime.combine(day, time(0), tzinfo=always.zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=always.zone)
        assert business_time_between(always, start, end) == hours * H
    # Working hours partly skipped by the change count only from the change on.
    night = BusinessCalendar.weekly("Europe/Berlin", {6: [(time(2, 30), time(4))]})
    assert business_time_between(night, utc(28, 0), utc(30, 0)) == H
    # New York changes on 8 March 2026: 9-17 local is 14-22 UTC, then 13-21 UTC.
    new_york = BusinessCalendar.workdays("America/New_York", time(9), time(17))
    assert add_business_time(new_york, utc(6, 21), 2 * H) == utc(9, 14)


@pytest.mark.parametrize(
    ("build", "field_name"),
    [
        (lambda: BusinessCalendar("Mars/Olympus", OFFICE.week), "timezone"),
        (lambda: BusinessCalendar("", OFFICE.week), "timezone"),
        (lambda: BusinessCalendar("UTC", OFFICE.week[:6]), "week"),
        (lambda: BusinessCalendar("UTC", ((),) * 7), "week"),
        (
            lambda: BusinessCalendar.weekly(
                "UTC", {0: [(time(9), time(12)), (time(11), time(13))]}
            ),
            "week[0][1]",
        ),
        (
            lambda: BusinessCalendar.weekly(
                "UTC", {2: [(time(13), time(17)), (time(9), time(12))]}
            ),
            "week[2][1]",
        ),
        (lambda: BusinessCalendar.weekly("UTC", {7: [(time(9), time(12))]}), "hours"),
        (lambda: WorkingHours(time(17), time(9)), "end"),
        (lambda: WorkingHours(time(9, tzinfo=UTC), time(17)), "start"),
        (lambda: OFFICE.with_holidays([datetime(2026, 1, 1, tzinfo=UTC)]), "holidays"),
    ],
)
def test_invalid_calendars_name_the_field(build: object, field_name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        build()  # type: ignore[operator]
    assert caught.value.field == field_name


def test_calendar_arguments_are_checked() -> None:
    naive = datetime(2026, 3, 2, 9)
    for call, name in (
        (lambda: add_business_time(OFFICE, naive, H), "start"),
        (lambda: add_business_time(OFFICE, utc(2, 9), -H), "duration"),
        (lambda: business_time_between(OFFICE, utc(2, 9), naive), "end"),
        (lambda: business_time_between(OFFICE, utc(2, 9), utc(2, 8)), "end"),
    ):
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.field == name
    assert add_business_time(None, utc(7, 3), H) == utc(7, 4)
    assert business_time_between(None, utc(7, 3), utc(8, 3)) == 24 * H


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    week = []
    for _ in range(7):
        marks = sorted(draw(st.sets(st.integers(0, 48), max_size=4)))
        pairs = list(zip(marks[::2], marks[1::2], strict=False))
        week.append(
            tuple(
                WorkingHours(
                    time(a // 2, 30 * (a % 2)),
                    time((b // 2) % 24, 30 * (b % 2)) if b < 48 else time(0),
                )
                for a, b in pairs
            )
        )
    if not any(week):
        week[0] = (WorkingHours(time(9), time(17)),)
    holidays = draw(st.frozensets(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=20))
    return BusinessCalendar(draw(st.sampled_from(ZONES)), tuple(week), holidays)


instants = st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
durations = st.timedeltas(timedelta(0), timedelta(days=5))


@settings(max_examples=80)
@given(calendars(), instants, durations)
def test_adding_business_time_and_measuring_it_are_inverse(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    end = add_business_time(calendar, start, duration)
    assert end >= start
    assert business_time_between(calendar, start, end) == duration
    assert end - start >= duration


@settings(max_examples=80)
@given(calendars(), instants, instants, instants)
def test_business_time_is_monotone_additive_and_never_exceeds_calendar_time(
    calendar: BusinessCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    start, middle, end = sorted((a, b, c))
    total = business_time_between(calendar, start, end)
    first = business_time_between(calendar, start, middle)
    assert timedelta(0) <= first <= total <= end - start
    assert first + business_time_between(calendar, middle, end) == total
    # The earliest instant with that much business time lies no later than end.
    reached = add_business_time(calendar, start, total)
    assert reached <= end
    assert business_time_between(calendar, reached, end) == timedelta(0)


@settings(max_examples=50)
@given(calendars())
def test_calendars_round_trip_through_json(calendar: BusinessCalendar) -> None:
    data = json.loads(json.dumps(CONVERTER.unstructure(calendar)))
    assert CONVERTER.structure(data, BusinessCalendar) == calendar


@given(st.timedeltas())
def test_durations_round_trip_as_iso_8601(value: timedelta) -> None:
    text = CONVERTER.unstructure(value)
    assert CONVERTER.structure(text, timedelta) == value


def test_durations_and_times_are_written_readably_and_read_strictly() -> None:
    assert CONVERTER.unstructure(timedelta(days=1, hours=2, minutes=30)) == "P1DT2H30M"
    assert CONVERTER.unstructure(timedelta(0)) == "PT0S"
    assert CONVERTER.unstructure(-H) == "-PT1H"
    assert CONVERTER.structure("P2W", timedelta) == timedelta(days=14)
    assert CONVERTER.unstructure(time(9, 30)) == "09:30"
    for bad in ("P1Y", "PT", "P", "1h", 3600, "PT1.5H"):
        with pytest.raises(ValidationError):
            CONVERTER.structure(bad, timedelta)
    for bad in ("25:00", "09:00+01:00", 9):
        with pytest.raises(ValidationError):
            CONVERTER.structure(bad, time)
    data = CONVERTER.unstructure(OFFICE)
    data["week"][0][0]["end"] = "08:00"
    data["timezone"] = "Nowhere/Town"
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure(data, BusinessCalendar)
    assert caught.value.field == "$.week[0][0].end"


# ---------------------------------------------------------------------------- a help desk


class Desk:
    """One ticket worked through the real workflow: moves, replies and notes."""

    def __init__(
        self,
        at: datetime,
        *,
        priority: TicketPriority = TicketPriority.NORMAL,
        tags: tuple[str, ...] = (),
    ) -> None:
        self.ticket = Ticket.new(
            subject="The export hangs",
            contact_id=CONTACT,
            channel=TicketChannel.EMAIL,
            priority=priority,
            tags=tags,
            clock=FixedClock(at),
        )
        self.history: list[StageChange] = []
        self.activities: list[Activity] = []

    def move(self, to: TicketStatus, at: datetime) -> "Desk":
        moved = move_ticket(self.ticket, to, by="ana", at=at)
        self.ticket = moved.entity
        self.history.append(moved.change)
        return self

    def _activity(self, kind: ActivityKind, at: datetime, actor: str | None) -> None:
        self.activities.append(
            Activity.new(
                contact_id=CONTACT,
                kind=kind,
                occurred_at=at,
                ticket_id=self.ticket.id,
                actor=actor,
                clock=FixedClock(at),
            )
        )

    def agent(self, at: datetime, kind: ActivityKind = ActivityKind.EMAIL_SENT) -> "Desk":
        self._activity(kind, at, "ana")
        return self

    def customer(self, at: datetime) -> "Desk":
        self._activity(ActivityKind.EMAIL_SENT, at, None)
        return self

    def note(self, at: datetime) -> "Desk":
        self._activity(ActivityKind.NOTE, at, "ana")
        return self

    def events(self) -> list[TicketEvent]:
        return ticket_events(self.ticket, self.history, self.activities)

    def report(self, policies: object, now: datetime) -> SlaReport:
        return sla_status(self.ticket, self.events(), policies, now)  # type: ignore[arg-type]


def timer_of(report: SlaReport, metric: SlaMetric):  # type: ignore[no-untyped-def]
    found = report.timer(metric)
    assert found is not None
    return found


FOUR_HOURS = SlaPolicy(name="standard", first_response=H, next_response=2 * H, resolution=4 * H)


def test_events_come_from_history_and_replies_in_a_fixed_order() -> None:
    desk = Desk(utc(2, 9)).customer(utc(2, 9)).note(utc(2, 9, 5)).agent(utc(2, 9, 30))
    desk.move(S.PENDING, utc(2, 9, 30)).customer(utc(2, 11)).move(S.OPEN, utc(2, 11))
    desk.agent(utc(2, 12), ActivityKind.CALL).move(S.SOLVED, utc(2, 12))
    other = Activity.new(
        contact_id=CONTACT, kind=ActivityKind.EMAIL_SENT, occurred_at=utc(2, 10), actor="ana"
    )
    opened = Activity.new(
        contact_id=CONTACT,
        kind=ActivityKind.EMAIL_OPENED,
        occurred_at=utc(2, 10),
        ticket_id=desk.ticket.id,
    )
    desk.activities += [other, opened]
    k = TicketEventKind
    expected = [
        (utc(2, 9), k.CREATED, S.NEW),
        (utc(2, 9), k.CUSTOMER_REPLY, None),
        (utc(2, 9, 30), k.STATUS, S.PENDING),
        (utc(2, 9, 30), k.AGENT_REPLY, None),
        (utc(2, 11), k.STATUS, S.OPEN),
        (utc(2, 11), k.CUSTOMER_REPLY, None),
        (utc(2, 12), k.STATUS, S.SOLVED),
        (utc(2, 12), k.AGENT_REPLY, None),
    ]
    events = desk.events()
    assert [(e.at, e.kind, e.status) for e in events] == expected
    shuffled = ticket_events(
        desk.ticket,
        random.Random(1).sample(desk.history, len(desk.history)),
        reversed(desk.activities),
    )
    assert shuffled == events


def test_simultaneous_status_changes_keep_their_order_whatever_the_store_returns() -> None:
    desk = Desk(utc(2, 9))
    at = utc(2, 10)
    desk.move(S.OPEN, at).move(S.PENDING, at).move(S.ON_HOLD, at).move(S.OPEN, at)
    for order in range(5):
        history = random.Random(order).sample(desk.history, 4)
        events = ticket_events(desk.ticket, history, [])
        assert [e.status for e in events] == [S.NEW, S.OPEN, S.PENDING, S.ON_HOLD, S.OPEN]


def test_history_of_another_subject_is_refused() -> None:
    desk = Desk(utc(2, 9))
    stray = StageChange.new(
        subject=SubjectKind.TICKET, subject_id=UUID(int=1), to_stage="open", from_stage="new"
    )
    deal = StageChange.new(subject=SubjectKind.DEAL, subject_id=desk.ticket.id, to_stage="won")
    with pytest.raises(ValidationError) as caught:
        ticket_events(desk.ticket, [stray, deal], [])
    assert [p.field for p in caught.value.problems] == ["history[0]", "history[1]"]


def test_a_creation_entry_sets_the_first_status_and_is_no_move() -> None:
    desk = Desk(utc(2, 9))
    created = StageChange.new(
        subject=SubjectKind.TICKET, subject_id=desk.ticket.id, to_stage="new", at=utc(2, 9)
    )
    desk.history.append(created)
    desk.move(S.OPEN, utc(2, 10))
    events = desk.events()
    assert [(e.kind, e.status) for e in events] == [
        (TicketEventKind.CREATED, S.NEW),
        (TicketEventKind.STATUS, S.OPEN),
    ]


@pytest.mark.parametrize(
    ("arguments", "field_name"),
    [
        ({"at": datetime(2026, 3, 2), "kind": TicketEventKind.CREATED, "status": S.NEW}, "at"),
        ({"at": utc(2, 9), "kind": "created", "status": S.NEW}, "kind"),
        ({"at": utc(2, 9), "kind": TicketEventKind.STATUS}, "status"),
        ({"at": utc(2, 9), "kind": TicketEventKind.AGENT_REPLY, "status": S.OPEN}, "status"),
        ({"at": utc(2, 9), "kind": TicketEventKind.STATUS, "status": "shelved"}, "status"),
    ],
)
def test_invalid_events_name_the_field(arguments: dict[str, object], field_name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TicketEvent(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field_name


def test_first_response_met_and_breached_in_calendar_hours() -> None:
    quick = Desk(utc(2, 9)).agent(utc(2, 9, 45)).move(S.OPEN, utc(2, 9, 45))
    report = quick.report([FOUR_HOURS], utc(2, 10))
    first = timer_of(report, M.FIRST_RESPONSE)
    assert (first.state, first.elapsed, first.stopped_at) == (
        SlaState.MET,
        timedelta(minutes=45),
        utc(2, 9, 45),
    )
    assert (first.due_at, first.time_to_breach, first.breaches) == (None, None, 0)
    # A reply exactly at the due time meets the target.
    exact = Desk(utc(2, 9)).agent(utc(2, 10))
    assert timer_of(exact.report([FOUR_HOURS], utc(2, 11)), M.FIRST_RESPONSE).state is (
        SlaState.MET
    )
    slow = Desk(utc(2, 9)).agent(utc(2, 10, 30))
    late = timer_of(slow.report([FOUR_HOURS], utc(2, 11)), M.FIRST_RESPONSE)
    assert (late.state, late.breached_at, late.remaining) == (
        SlaState.BREACHED,
        utc(2, 10),
        timedelta(minutes=-30),
    )
    waiting = Desk(utc(2, 9))
    running = timer_of(waiting.report([FOUR_HOURS], utc(2, 9, 30)), M.FIRST_RESPONSE)
    assert (running.state, running.due_at, running.time_to_breach) == (
        SlaState.ACTIVE,
        utc(2, 10),
        timedelta(minutes=30),
    )
    assert running.running
    risky = timer_of(waiting.report([FOUR_HOURS], utc(2, 9, 50)), M.FIRST_RESPONSE)
    assert risky.state is SlaState.AT_RISK
    overdue = timer_of(waiting.report([FOUR_HOURS], utc(2, 10, 20)), M.FIRST_RESPONSE)
    assert (overdue.state, overdue.due_at, overdue.time_to_breach) == (
        SlaState.BREACHED,
        utc(2, 10),
        timedelta(minutes=-20),
    )


def test_pending_and_on_hold_pause_the_clocks() -> None:
    desk = Desk(utc(2, 9)).agent(utc(2, 9, 30)).move(S.PENDING, utc(2, 9, 30))
    desk.customer(utc(2, 14)).move(S.OPEN, utc(2, 14)).move(S.ON_HOLD, utc(2, 15))
    paused = desk.report([FOUR_HOURS], utc(2, 18))
    resolution = timer_of(paused, M.RESOLUTION)
    # Counted: 9:00-9:30 (new) and 14:00-15:00 (open); not pending, not on hold.
    assert resolution.elapsed == timedelta(hours=1, minutes=30)
    assert resolution.paused
    assert (resolution.due_at, resolution.time_to_breach) == (None, None)
    assert resolution.state is SlaState.ACTIVE
    reply = timer_of(paused, M.NEXT_RESPONSE)
    assert (reply.started_at, reply.elapsed, reply.paused) == (utc(2, 14), H, True)
    desk.move(S.OPEN, utc(2, 20))
    resumed = timer_of(desk.report([FOUR_HOURS], utc(2, 20, 30)), M.RESOLUTION)
    assert resumed.elapsed == 2 * H
    assert resumed.due_at == utc(2, 22, 30)
    assert not resumed.paused


def test_reopening_resumes_resolution_and_closing_keeps_the_solve_time() -> None:
    desk = Desk(utc(2, 9)).agent(utc(2, 10)).move(S.SOLVED, utc(2, 11))
    solved = timer_of(desk.report([FOUR_HOURS], utc(2, 12)), M.RESOLUTION)
    assert (solved.state, solved.elapsed, solved.stopped_at) == (SlaState.MET, 2 * H, utc(2, 11))
    desk.move(S.OPEN, utc(3, 9)).customer(utc(3, 9))
    reopened = desk.report([FOUR_HOURS], utc(3, 10))
    resolution = timer_of(reopened, M.RESOLUTION)
    assert (resolution.elapsed, resolution.stopped_at, resolution.due_at) == (
        3 * H,
        None,
        utc(3, 11),
    )
    assert timer_of(reopened, M.FIRST_RESPONSE).state is SlaState.MET
    assert timer_of(reopened, M.NEXT_RESPONSE).started_at == utc(3, 9)
    desk.move(S.SOLVED, utc(3, 12)).move(S.CLOSED, utc(6, 12))
    closed = timer_of(desk.report([FOUR_HOURS], utc(9, 12)), M.RESOLUTION)
    assert (closed.state, closed.elapsed, closed.stopped_at, closed.breached_at) == (
        SlaState.BREACHED,
        5 * H,
        utc(3, 12),
        utc(3, 11),
    )


def test_next_response_measures_each_unanswered_customer_reply() -> None:
    desk = Desk(utc(2, 9)).agent(utc(2, 9, 10)).move(S.OPEN, utc(2, 9, 10))
    desk.customer(utc(2, 10)).customer(utc(2, 10, 30)).agent(utc(2, 13))  # 3 h: breached
    desk.customer(utc(2, 14)).agent(utc(2, 14, 20))  # met
    report = desk.report([FOUR_HOURS], utc(2, 15))
    reply = timer_of(report, M.NEXT_RESPONSE)
    assert (reply.state, reply.started_at, reply.elapsed, reply.breaches) == (
        SlaState.MET,
        utc(2, 14),
        timedelta(minutes=20),
        1,
    )
    assert report.breached
    desk.customer(utc(2, 16))
    waiting = timer_of(desk.report([FOUR_HOURS], utc(2, 16, 30)), M.NEXT_RESPONSE)
    assert (waiting.state, waiting.due_at) == (SlaState.ACTIVE, utc(2, 18))
    idle = Desk(utc(2, 9)).customer(utc(2, 9, 5))
    timer = timer_of(idle.report([FOUR_HOURS], utc(2, 9, 30)), M.NEXT_RESPONSE)
    assert (timer.state, timer.due_at, timer.started_at) == (SlaState.IDLE, None, None)


def test_solving_fulfils_running_targets() -> None:
    desk = Desk(utc(2, 9)).move(S.SOLVED, utc(2, 9, 20))
    report = desk.report([FOUR_HOURS], utc(2, 12))
    assert [t.state for t in report.timers] == [SlaState.MET, SlaState.IDLE, SlaState.MET]


def test_business_hours_policies_count_only_working_time() -> None:
    policy = SlaPolicy(
        name="office",
        first_response=2 * H,
        resolution=8 * H,
        calendar=OFFICE.with_public_holidays("DE", [2026]),
    )
    # Friday 27 March, 16:00 in Berlin; the clocks go forward on Sunday.
    desk = Desk(utc(27, 15))
    friday = desk.report([policy], utc(27, 20))
    first = timer_of(friday, M.FIRST_RESPONSE)
    assert (first.elapsed, first.due_at) == (H, utc(30, 8))  # Monday 10:00 CEST
    assert first.time_to_breach == utc(30, 8) - utc(27, 20)
    assert timer_of(friday, M.RESOLUTION).due_at == utc(30, 14)
    monday = timer_of(desk.report([policy], utc(30, 9)), M.FIRST_RESPONSE)
    assert (monday.state, monday.breached_at) == (SlaState.BREACHED, utc(30, 8))
    # Holy Thursday 16:00 CEST: Good Friday and Easter Monday are holidays.
    easter = Desk(datetime(2026, 4, 2, 14, tzinfo=UTC))
    due = timer_of(easter.report([policy], datetime(2026, 4, 2, 18, tzinfo=UTC)), M.RESOLUTION)
    assert due.due_at == datetime(2026, 4, 7, 14, tzinfo=UTC)


def test_the_first_matching_policy_applies() -> None:
    vip = SlaPolicy(
        name="vip", condition=tickets_where(has_tag("vip")), first_response=timedelta(minutes=15)
    )
    urgent = SlaPolicy(
        name="urgent", priorities={"urgent", "high"}, first_response=30 * timedelta(minutes=1)
    )
    email = SlaPolicy(
        name="email",
        condition=tickets_where(field("channel") == "email"),
        first_response=4 * H,
    )
    now = utc(2, 9, 5)
    both = Desk(utc(2, 9), priority=TicketPriority.URGENT, tags=("vip",))
    assert both.report([vip, urgent, email], now).policy == "vip"
    assert both.report([urgent, vip, email], now).policy == "urgent"
    assert Desk(utc(2, 9), priority=TicketPriority.HIGH).report(
        [vip, urgent, email], now
    ).policy == ("urgent")
    plain = Desk(utc(2, 9))
    assert plain.report(SlaPolicies([vip, urgent, email]), now).policy == "email"
    none = plain.report([vip, urgent], now)
    assert (none.policy, none.timers, none.breached, none.next_due_at) == (None, (), False, None)
    assert SlaPolicies([vip, urgent]).match(plain.ticket, now) is None


def test_policies_are_validated() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"name": "", "resolution": H}, "name"),
        ({"name": "x"}, "resolution"),
        ({"name": "x", "first_response": timedelta(0)}, "first_response"),
        ({"name": "x", "next_response": -H}, "next_response"),
        ({"name": "x", "resolution": 3600}, "resolution"),
        ({"name": "x", "resolution": H, "priorities": {"asap"}}, "priorities"),
        (
            {"name": "x", "resolution": H, "condition": tickets_where(has_tag("a")).where},
            "condition",
        ),
        ({"name": "x", "resolution": H, "at_risk_after": 1.5}, "at_risk_after"),
        ({"name": "x", "resolution": H, "calendar": "Europe/Berlin"}, "calendar"),
    ]
    for arguments, field_name in cases:
        with pytest.raises(ValidationError) as caught:
            SlaPolicy(**arguments)  # type: ignore[arg-type]
        assert caught.value.field == field_name, arguments
    with pytest.raises(ValidationError) as caught:
        SlaPolicy(name="x", resolution=H, condition=contacts_where(has_tag("a")))
    assert caught.value.field == "condition"
    with pytest.raises(ValidationError) as caught:
        SlaPolicies([FOUR_HOURS, attrs.evolve(FOUR_HOURS, first_response=None)])
    assert (caught.value.field, caught.value.value) == ("policies[1].name", "standard")


def test_policies_round_trip_through_json() -> None:
    policies = SlaPolicies(
        [
            SlaPolicy(
                name="vip",
                priorities={"urgent", "high"},
                condition=tickets_where(has_tag("vip") & (field("channel") == "chat")),
                first_response=timedelta(minutes=15),
                next_response=H,
                resolution=timedelta(days=1, hours=4),
                calendar=OFFICE.with_public_holidays("DE", [2026, 2027]),
                at_risk_after=0.5,
            ),
            FOUR_HOURS,
        ]
    )
    text = json.dumps(CONVERTER.unstructure(policies))
    assert CONVERTER.structure(json.loads(text), SlaPolicies) == policies
    data = json.loads(text)
    data["policies"][1]["resolution"] = "PT0S"
    data["policies"][0]["priorities"] = ["soon"]
    with pytest.raises(ValidationError) as caught:
        CONVERTER.structure(data, SlaPolicies)
    assert {p.field for p in caught.value.problems} == {
        "$.policies[0].priorities[0]",
        "$.policies[1].resolution",
    }


def test_sla_status_checks_its_inputs() -> None:
    desk = Desk(utc(2, 9)).move(S.OPEN, utc(2, 10))
    events = desk.events()
    with pytest.raises(ValidationError) as caught:
        sla_status(desk.ticket, events, [FOUR_HOURS], datetime(2026, 3, 2, 11))
    assert caught.value.field == "now"
    with pytest.raises(ValidationError) as caught:
        sla_status(desk.ticket, events, [FOUR_HOURS], utc(2, 8))
    assert caught.value.field == "now"
    with pytest.raises(ValidationError) as caught:
        sla_status(desk.ticket, events[1:], [FOUR_HOURS], utc(2, 11))
    assert caught.value.field == "events"
    with pytest.raises(ValidationError) as caught:  # stale: the ticket moved on
        sla_status(desk.ticket, events[:1], [FOUR_HOURS], utc(2, 11))
    assert (caught.value.field, caught.value.value) == ("events", "new")
    # A past now replays the clocks as they stood then.
    past = sla_status(desk.ticket, events, [FOUR_HOURS], utc(2, 9, 30))
    assert timer_of(past, M.RESOLUTION).elapsed == timedelta(minutes=30)


def test_breach_and_time_to_breach_queries() -> None:
    now = utc(2, 12)
    late = Desk(utc(2, 9)).report([FOUR_HOURS], now)  # first response due 10:00
    soon = Desk(utc(2, 11, 30)).report([FOUR_HOURS], now)  # due 12:30
    later = Desk(utc(2, 11, 50)).report([FOUR_HOURS], now)  # due 12:50
    answered = Desk(utc(2, 9, 30)).agent(utc(2, 9, 40)).move(S.OPEN, utc(2, 9, 40))
    done = answered.report([FOUR_HOURS], now)  # resolution due 13:30
    reports = [later, done, late, soon]
    assert breached(reports) == [late]
    assert breached(reports, "resolution") == []
    queue = due_within(reports, 45 * timedelta(minutes=1))
    assert [(r, t.metric, t.due_at) for r, t in queue] == [
        (soon, M.FIRST_RESPONSE, utc(2, 12, 30)),
    ]
    queue = due_within(reports, 2 * H)
    assert [(r.ticket_id, t.due_at) for r, t in queue] == [
        (soon.ticket_id, utc(2, 12, 30)),
        (later.ticket_id, utc(2, 12, 50)),
        (late.ticket_id, utc(2, 13)),  # its resolution; its first response breached already
        (done.ticket_id, utc(2, 13, 30)),
    ]
    resolutions = due_within(reports, 2 * H, M.RESOLUTION)
    assert [(r, t.metric) for r, t in resolutions] == [(late, M.RESOLUTION), (done, M.RESOLUTION)]
    with pytest.raises(ValidationError) as caught:
        due_within(reports, -H)
    assert caught.value.field == "within"


# ---------------------------------------------------------------------------- properties

GAPS = st.lists(st.integers(min_value=0, max_value=6 * 3600), min_size=1, max_size=8)
STEPS = st.lists(
    st.sampled_from(["open", "pending", "on_hold", "solved", "agent", "customer"]),
    min_size=1,
    max_size=8,
)


def _walk(steps: list[str], gaps: list[int]) -> Desk:
    at = utc(2, 8)
    desk = Desk(at)
    for index, step in enumerate(steps):
        at += timedelta(seconds=gaps[index % len(gaps)])
        if step == "agent":
            desk.agent(at)
        elif step == "customer":
            desk.customer(at)
        elif desk.ticket.status is not S(step) and S(step) in (
            {S.OPEN, S.PENDING, S.ON_HOLD, S.SOLVED}
            if desk.ticket.status is not S.SOLVED
            else {S.OPEN}
        ):
            desk.move(S(step), at)
    return desk


POLICIES = st.sampled_from(
    [
        FOUR_HOURS,
        attrs.evolve(FOUR_HOURS, name="office", calendar=OFFICE),
    ]
)


@settings(max_examples=60)
@given(STEPS, GAPS, POLICIES, st.integers(0, 100), st.integers(1, 3 * 3600))
def test_a_pause_never_increases_elapsed_time(
    steps: list[str], gaps: list[int], policy: SlaPolicy, where: int, length: int
) -> None:
    desk = _walk(steps, gaps)
    events = desk.events()
    now = max(events[-1].at, desk.ticket.created_at) + H
    base = sla_status(desk.ticket, events, [policy], now)
    # Pause somewhere in an open stretch: pending from t1 to t2, then open again.
    open_spans = []
    status = S.NEW
    for event, following in zip(events, [*events[1:], None], strict=True):
        if event.status is not None:
            status = event.status
        end = now if following is None else following.at
        if status is S.OPEN and end > event.at:
            open_spans.append((event.at, end))
    if not open_spans:
        # Events at one instant have random ids, and so a random order among them: a
        # walk may have an open stretch in one run and none in the next. Nothing to pause
        # then (an assume() here made hypothesis report the example as flaky).
        return
    start, end = open_spans[where % len(open_spans)]
    t1 = start + (end - start) * (where / 100)
    t2 = min(end - timedelta(microseconds=1), t1 + timedelta(seconds=length))
    assume(t2 >= t1)
    paused = sorted(
        [
            *events,
            TicketEvent(at=t1, kind=TicketEventKind.STATUS, status=S.PENDING, seq=10_000),
            TicketEvent(at=t2, kind=TicketEventKind.STATUS, status=S.OPEN, seq=10_001),
        ],
        key=TicketEvent.sort_key,
    )
    report = sla_status(desk.ticket, paused, [policy], now)
    for before, after in zip(base.timers, report.timers, strict=True):
        assert after.elapsed <= before.elapsed
        assert after.elapsed <= business_time_between(policy.calendar, desk.ticket.created_at, now)
    resolution_before = timer_of(base, M.RESOLUTION)
    resolution_after = timer_of(report, M.RESOLUTION)
    assert resolution_before.elapsed - resolution_after.elapsed == business_time_between(
        policy.calendar, t1, t2
    )


def test_reports_round_trip_through_json() -> None:
    desk = Desk(utc(2, 9)).agent(utc(2, 9, 30)).move(S.PENDING, utc(2, 9, 30))
    desk.customer(utc(2, 11)).move(S.OPEN, utc(2, 11))
    report = desk.report([FOUR_HOURS], utc(2, 14))
    data = json.loads(json.dumps(CONVERTER.unstructure(report)))
    assert CONVERTER.structure(data, SlaReport) == report
    events = desk.events()
    assert CONVERTER.structure(CONVERTER.unstructure(events), list[TicketEvent]) == events


def test_working_hours_know_their_length() -> None:
    assert WorkingHours(time(9), time(17, 30)).length == timedelta(hours=8, minutes=30)
    assert WorkingHours(time(22), time(0)).length == 2 * H
    assert WorkingHours(time(0), time(0)).length == 24 * H
