"""The ticket workflow: allowed moves, history entries, refusals and the CSAT score."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from crmkit.clock import FixedClock
from crmkit.errors import TransitionNotAllowed, ValidationError
from crmkit.lifecycle import (
    TICKET_TRANSITIONS,
    SlaPolicy,
    can_move_ticket,
    move_ticket,
    record_csat,
    sla_status,
    ticket_events,
)
from crmkit.models import StageChange, SubjectKind, Ticket, TicketChannel, TicketStatus

S = TicketStatus
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONTACT = UUID(int=7)


def new_ticket(at: datetime = T0) -> Ticket:
    return Ticket.new(
        subject="Invoice shows the wrong VAT",
        contact_id=CONTACT,
        channel=TicketChannel.EMAIL,
        clock=FixedClock(at),
    )


def ticket_in(status: TicketStatus, at: datetime = T0) -> Ticket:
    return attrs.evolve(new_ticket(at), status=status)


EXPECTED = {
    (S.NEW, S.OPEN),
    (S.NEW, S.PENDING),
    (S.NEW, S.ON_HOLD),
    (S.NEW, S.SOLVED),
    (S.OPEN, S.PENDING),
    (S.OPEN, S.ON_HOLD),
    (S.OPEN, S.SOLVED),
    (S.PENDING, S.OPEN),
    (S.PENDING, S.ON_HOLD),
    (S.PENDING, S.SOLVED),
    (S.ON_HOLD, S.OPEN),
    (S.ON_HOLD, S.PENDING),
    (S.ON_HOLD, S.SOLVED),
    (S.SOLVED, S.OPEN),
    (S.SOLVED, S.CLOSED),
}


def test_the_transition_table_is_the_documented_workflow() -> None:
    table = {(a, b) for a, targets in TICKET_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED
    assert set(TICKET_TRANSITIONS) == set(TicketStatus)


@pytest.mark.parametrize("source", list(TicketStatus))
@pytest.mark.parametrize("target", list(TicketStatus))
def test_every_pair_of_statuses_is_allowed_exactly_by_the_table(
    source: TicketStatus, target: TicketStatus
) -> None:
    ticket = ticket_in(source)
    at = T0 + timedelta(minutes=5)
    if (source, target) in EXPECTED:
        assert can_move_ticket(ticket, target) == ()
        moved = move_ticket(ticket, target, by="ana", at=at)
        assert moved.entity.status is target
    else:
        unmet = can_move_ticket(ticket, target)
        assert unmet
        with pytest.raises(TransitionNotAllowed) as caught:
            move_ticket(ticket, target, by="ana", at=at)
        assert caught.value.entity == "ticket"
        assert caught.value.from_stage == source.value
        assert caught.value.to_stage == target.value
        assert caught.value.unmet == tuple(u.message for u in unmet)


def test_a_move_returns_the_new_version_and_its_history_entry() -> None:
    ticket = new_ticket()
    at = T0 + timedelta(hours=1)
    moved = move_ticket(ticket, "open", by="ana", at=at, reason="triaged")
    assert moved.entity == attrs.evolve(ticket, status=S.OPEN, updated_at=at)
    assert moved.entity.version == ticket.version  # the store raises it
    assert ticket.status is S.NEW  # the given version is unchanged
    change = moved.change
    assert isinstance(change, StageChange)
    assert (change.subject, change.subject_id, change.pipeline) == (
        SubjectKind.TICKET,
        ticket.id,
        None,
    )
    assert (change.from_stage, change.to_stage) == ("new", "open")
    assert (change.at, change.by, change.reason) == (at, "ana", "triaged")
    assert change.created_at == at
    assert change.version == 1


def test_moving_to_the_current_status_is_refused() -> None:
    ticket = ticket_in(S.OPEN)
    assert [u.code for u in can_move_ticket(ticket, S.OPEN)] == ["unchanged"]
    with pytest.raises(TransitionNotAllowed, match="already open"):
        move_ticket(ticket, S.OPEN, by="ana", at=T0)


def test_a_refusal_lists_every_unmet_requirement() -> None:
    closed = ticket_in(S.CLOSED)
    assert [u.code for u in can_move_ticket(closed, S.NEW)] == [
        "closed_is_final",
        "new_not_reentered",
    ]
    with pytest.raises(TransitionNotAllowed) as caught:
        move_ticket(closed, S.NEW, by="ana", at=T0)
    assert len(caught.value.unmet) == 2
    assert "closed ticket is final" in str(caught.value)
    assert [u.code for u in can_move_ticket(ticket_in(S.OPEN), S.CLOSED)] == ["transition"]
    assert "moves only to: on_hold, pending, solved" in str(
        can_move_ticket(ticket_in(S.OPEN), S.CLOSED)[0]
    )


@pytest.mark.parametrize("bad", ["reopened", "", None, 3, "OPEN"])
def test_an_unknown_target_status_is_a_validation_error(bad: object) -> None:
    with pytest.raises(ValidationError) as caught:
        move_ticket(new_ticket(), bad, by="ana", at=T0)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("to", bad)
    with pytest.raises(ValidationError):
        can_move_ticket(new_ticket(), bad)  # type: ignore[arg-type]


def test_the_time_of_a_move_must_be_aware_and_not_before_the_last_update() -> None:
    ticket = new_ticket()
    naive = datetime(2026, 3, 2, 10, 0)
    with pytest.raises(ValidationError) as caught:
        move_ticket(ticket, S.OPEN, by="ana", at=naive)
    assert (caught.value.field, caught.value.value) == ("at", naive)
    earlier = T0 - timedelta(seconds=1)
    with pytest.raises(ValidationError) as caught:
        move_ticket(ticket, S.OPEN, by="ana", at=earlier)
    assert (caught.value.field, caught.value.value) == ("at", earlier)


def test_invalid_actor_or_reason_are_rejected_by_the_history_entry() -> None:
    with pytest.raises(ValidationError) as caught:
        move_ticket(new_ticket(), S.OPEN, by="ana\nbob", at=T0)
    assert caught.value.field == "by"


def test_csat_is_recorded_on_a_solved_ticket_and_reopening_clears_it() -> None:
    solved = ticket_in(S.SOLVED)
    at = T0 + timedelta(days=1)
    rated = record_csat(solved, 4, at=at)
    assert (rated.csat, rated.updated_at) == (4, at)
    rerated = record_csat(rated, 5, at=at)
    assert rerated.csat == 5
    closed = move_ticket(rerated, S.CLOSED, by=None, at=at).entity
    assert closed.csat == 5  # closing keeps the rating
    reopened = move_ticket(rerated, S.OPEN, by="ana", at=at).entity
    assert reopened.csat is None


@pytest.mark.parametrize("status", [S.NEW, S.OPEN, S.PENDING, S.ON_HOLD, S.CLOSED])
def test_csat_is_refused_unless_the_ticket_is_solved(status: TicketStatus) -> None:
    with pytest.raises(ValidationError) as caught:
        record_csat(ticket_in(status), 5, at=T0)
    assert (caught.value.field, caught.value.value) == ("status", status.value)


@pytest.mark.parametrize("score", [0, 6, -1, True, 4.0, "5", None])
def test_csat_scores_outside_one_to_five_are_refused(score: object) -> None:
    with pytest.raises(ValidationError) as caught:
        record_csat(ticket_in(S.SOLVED), score, at=T0)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("score", score)


def test_csat_time_must_not_precede_the_last_update() -> None:
    with pytest.raises(ValidationError) as caught:
        record_csat(ticket_in(S.SOLVED), 3, at=T0 - timedelta(days=1))
    assert caught.value.field == "at"


# ---------------------------------------------------------------------------- stateful

ANY_TARGET = st.sampled_from(list(TicketStatus)) | st.sampled_from([s.value for s in S])


class TicketWorkflow(RuleBasedStateMachine):
    """Random moves, allowed or not, on one ticket; the history must tell its story."""

    @initialize()
    def open_a_ticket(self) -> None:
        self.now = T0
        self.ticket = new_ticket(T0)
        self.history: list[StageChange] = []
        self.refused = 0

    @rule(to=ANY_TARGET, gap=st.integers(min_value=0, max_value=3 * 3600))
    def move(self, to: TicketStatus | str, gap: int) -> None:
        self.now += timedelta(seconds=gap)
        before = self.ticket
        target = TicketStatus(to)
        allowed = target in TICKET_TRANSITIONS[before.status]
        assert (can_move_ticket(before, to) == ()) is allowed
        if allowed:
            moved = move_ticket(before, to, by="agent", at=self.now)
            assert moved.entity.status is target
            assert moved.change.from_stage == before.status.value
            self.ticket = moved.entity
            self.history.append(moved.change)
        else:
            with pytest.raises(TransitionNotAllowed) as caught:
                move_ticket(before, to, by="agent", at=self.now)
            assert caught.value.unmet, "a refusal names its reasons"
            self.refused += 1
            assert self.ticket is before

    @precondition(lambda self: self.ticket.status is S.SOLVED)
    @rule(score=st.integers(min_value=1, max_value=5))
    def rate(self, score: int) -> None:
        self.ticket = record_csat(self.ticket, score, at=self.now)
        assert self.ticket.csat == score

    @invariant()
    def history_replays_to_the_current_status(self) -> None:
        status = S.NEW
        for change in self.history:
            assert change.from_stage == status.value
            assert change.to_stage != change.from_stage  # no event without a change
            status = S(change.to_stage)
        assert status is self.ticket.status

    @invariant()
    def new_is_never_reentered_and_closed_is_terminal(self) -> None:
        targets = [c.to_stage for c in self.history]
        assert "new" not in targets
        if "closed" in targets:
            assert targets.index("closed") == len(targets) - 1

    @invariant()
    def history_is_in_time_order_and_the_ticket_was_updated_last(self) -> None:
        times = [c.at for c in self.history]
        assert times == sorted(times)
        if self.history:
            assert self.ticket.updated_at >= self.history[-1].at

    @invariant()
    def the_sla_clocks_replay_the_same_history(self) -> None:
        events = ticket_events(self.ticket, reversed(self.history), [])
        assert [e.status for e in events[1:]] == [S(c.to_stage) for c in self.history]
        policy = SlaPolicy(name="all", resolution=timedelta(hours=8))
        report = sla_status(self.ticket, events, [policy], self.now)
        timer = report.timer("resolution")
        assert timer is not None
        assert timer.elapsed <= self.now - T0
        assert (timer.stopped_at is not None) is (self.ticket.status in (S.SOLVED, S.CLOSED))


TicketWorkflow.TestCase.settings = settings(max_examples=60, stateful_step_count=25)
test_ticket_workflow = TicketWorkflow.TestCase
