"""Service KPIs: CSAT per period and agent, NPS with its confidence interval, response
and resolution time distributions, SLA compliance per policy and target.

Definitions (the usual help desk ones):

* **CSAT** is the share of ratings of 4 or 5 on the 1 to 5 scale (``satisfied /
  responses``), with the mean score next to it.
* **NPS** is ``100 * (promoters - detractors) / responses`` of answers on the 0 to 10
  scale: promoters answer 9 or 10, passives 7 or 8, detractors 0 to 6. The interval is
  the Wald interval of a difference of two multinomial proportions: the variance of the
  score on the -1/0/+1 scale is ``(p + d - (p - d)**2) / n``, and the interval is the
  score plus or minus ``z`` standard errors (``z`` the normal quantile of the
  confidence), clipped to -100 and 100. With every answer of one kind its width is 0;
  read it as "too few answers" rather than as certainty.
* **Distributions** of durations give the count, mean, median and 90th percentile
  (nearest rank: the smallest value with at least that share of values at or below it),
  minimum and maximum.
* **SLA compliance** of a policy's target is ``met / (met + breached)`` over the tickets
  whose timer has a verdict; running timers within target are counted apart.

Every ratio of nothing is ``None``, never a division by zero or NaN.
"""

import enum
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from statistics import NormalDist
from typing import Final

import attrs

from crmkit.analytics._periods import Granularity
from crmkit.analytics._range import period_at, report_periods
from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Ticket
from crmkit.models._fields import expect_items

__all__ = [
    "CsatReport",
    "CsatRow",
    "Distribution",
    "Nps",
    "Rating",
    "ServiceReport",
    "ServiceTimes",
    "SlaCompliance",
    "SlaComplianceRow",
    "SlaOutcome",
    "SlaVerdict",
    "csat_report",
    "distribution",
    "nps",
    "ratings_from_tickets",
    "service_times",
    "sla_compliance",
]

_SATISFIED: Final = 4


def _score(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(field, value, f"expected an int from {low} to {high}")
    return value


@attrs.frozen
class Rating:
    """One CSAT answer (1 to 5) given at ``at``, about the work of ``agent`` (if known)."""

    at: datetime
    score: int
    agent: str | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "at", ensure_utc(self.at, "at"))
        _score(self.score, "score", 1, 5)
        if self.agent is not None and not isinstance(self.agent, str):
            raise ValidationError("agent", self.agent, "expected a name or None")


def ratings_from_tickets(tickets: Iterable[Ticket]) -> list[Rating]:
    """The CSAT ratings of ``tickets`` (those with a score), dated by the ticket's
    ``updated_at`` (which :func:`crmkit.lifecycle.record_csat` sets) and attributed to its
    assignee."""
    found = []
    for index, ticket in enumerate(expect_items(tickets, Ticket, "tickets", "Tickets")):
        if not isinstance(ticket, Ticket):
            raise ValidationError(f"tickets[{index}]", ticket, "expected a Ticket")
        if ticket.csat is not None:
            found.append(Rating(ticket.updated_at, ticket.csat, ticket.assignee))
    return found


@attrs.frozen(kw_only=True)
class CsatRow:
    """CSAT of one period, of one ``agent`` (``None``: the row of all agents together)."""

    period: str
    start: datetime
    agent: str | None
    responses: int
    satisfied: int
    csat: float | None
    mean_score: float | None


@attrs.frozen(kw_only=True)
class CsatReport:
    """CSAT per period (every period of the range, also those without answers), first the
    row of all agents, then one row per agent with answers in that period, by name."""

    granularity: Granularity
    rows: tuple[CsatRow, ...]


def csat_report(
    ratings: Iterable[Rating],
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity = Granularity.MONTH,
    tz: tzinfo = UTC,
) -> CsatReport:
    """CSAT per period of ``granularity`` from ``start`` to ``end`` (exclusive), in total
    and per agent; ratings outside the range are left out."""
    spans = report_periods(start, end, granularity, tz)
    tally: dict[tuple[datetime, str | None], list[int]] = {}
    for index, rating in enumerate(expect_items(ratings, Rating, "ratings", "Ratings")):
        if not isinstance(rating, Rating):
            raise ValidationError(f"ratings[{index}]", rating, "expected a Rating")
        if not spans or not spans[0].start <= rating.at < end:
            continue
        key = period_at(rating.at, spans[0].granularity, tz).start
        tally.setdefault((key, None), []).append(rating.score)
        if rating.agent is not None:
            tally.setdefault((key, rating.agent), []).append(rating.score)
    rows = []
    for period in spans:
        agents = sorted(a for (s, a) in tally if s == period.start and a is not None)
        for agent in [None, *agents]:
            scores = tally.get((period.start, agent), [])
            satisfied = sum(1 for s in scores if s >= _SATISFIED)
            rows.append(
                CsatRow(
                    period=period.label,
                    start=period.start,
                    agent=agent,
                    responses=len(scores),
                    satisfied=satisfied,
                    csat=satisfied / len(scores) if scores else None,
                    mean_score=sum(scores) / len(scores) if scores else None,
                )
            )
    return CsatReport(granularity=Granularity(granularity), rows=tuple(rows))


@attrs.frozen(kw_only=True)
class Nps:
    """The Net Promoter Score of some answers, with its Wald confidence interval (see
    the module documentation); ``score``, ``low`` and ``high`` are ``None`` without
    answers."""

    responses: int
    promoters: int
    passives: int
    detractors: int
    score: float | None
    low: float | None
    high: float | None
    confidence: float


def nps(answers: Iterable[int], *, confidence: float = 0.95) -> Nps:
    """The NPS of survey ``answers`` (ints from 0 to 10) with a ``confidence`` interval.

    >>> result = nps([10] * 50 + [8] * 30 + [3] * 20)
    >>> result.score, round(result.low, 2), round(result.high, 2)
    (30.0, 14.69, 45.31)
    """
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, float | int)
        or not 0 < confidence < 1
    ):
        raise ValidationError("confidence", confidence, "expected a number between 0 and 1")
    counts = [0, 0, 0]  # detractors, passives, promoters
    for index, answer in enumerate(expect_items(answers, object, "answers", "answers")):
        value = _score(answer, f"answers[{index}]", 0, 10)
        counts[0 if value <= 6 else 1 if value <= 8 else 2] += 1
    detractors, passives, promoters = counts
    n = sum(counts)
    if n == 0:
        return Nps(
            responses=0,
            promoters=0,
            passives=0,
            detractors=0,
            score=None,
            low=None,
            high=None,
            confidence=float(confidence),
        )
    p, d = promoters / n, detractors / n
    score = p - d
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(max(p + d - score * score, 0.0) / n)
    return Nps(
        responses=n,
        promoters=promoters,
        passives=passives,
        detractors=detractors,
        score=100 * score,
        low=100 * max(score - half, -1.0),
        high=100 * min(score + half, 1.0),
        confidence=float(confidence),
    )


@attrs.frozen(kw_only=True)
class Distribution:
    """How durations spread: ``count`` values; the rest is ``None`` when there are none."""

    count: int
    mean: timedelta | None
    median: timedelta | None
    p90: timedelta | None
    minimum: timedelta | None
    maximum: timedelta | None


def _rank(ordered: Sequence[timedelta], share: float) -> timedelta:
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def distribution(durations: Iterable[timedelta]) -> Distribution:
    """The distribution of ``durations`` (negative ones are refused)."""
    values = []
    for index, value in enumerate(expect_items(durations, object, "durations", "durations")):
        if not isinstance(value, timedelta) or value < timedelta(0):
            raise ValidationError(f"durations[{index}]", value, "expected a timedelta >= 0")
        values.append(value)
    if not values:
        return Distribution(count=0, mean=None, median=None, p90=None, minimum=None, maximum=None)
    values.sort()
    return Distribution(
        count=len(values),
        mean=sum(values, timedelta(0)) / len(values),
        median=_rank(values, 0.5),
        p90=_rank(values, 0.9),
        minimum=values[0],
        maximum=values[-1],
    )


@attrs.frozen(kw_only=True)
class ServiceTimes:
    """First-response and resolution times of the tickets whose clock has stopped
    (business time under each ticket's SLA policy, pauses excluded)."""

    first_response: Distribution
    resolution: Distribution


class SlaVerdict(enum.StrEnum):
    """Where one SLA timer of one ticket ended up (or stands)."""

    MET = "met"  # stopped no later than its due time
    BREACHED = "breached"  # ran past its due time (in any cycle)
    RUNNING = "running"  # counting (or paused) within target
    IDLE = "idle"  # nothing to measure (no reply awaits an answer)


def _metric(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("metric", value, "expected a metric name")
    return str(value)


@attrs.frozen(kw_only=True)
class SlaOutcome:
    """One SLA timer of one ticket, as :class:`crmkit.crm.CRM` reads it from an
    :class:`crmkit.lifecycle.SlaReport`: the ``policy`` and ``metric`` (``first_response``,
    ``next_response``, ``resolution``), its ``target``, the business time ``elapsed`` and
    whether the clock has ``stopped``."""

    ticket: str
    policy: str
    metric: str = attrs.field(converter=_metric)
    target: timedelta
    elapsed: timedelta
    stopped: bool
    verdict: SlaVerdict

    def __attrs_post_init__(self) -> None:
        for name in ("target", "elapsed"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise ValidationError(name, value, "expected a timedelta >= 0")
        if not isinstance(self.verdict, SlaVerdict):
            raise ValidationError("verdict", self.verdict, "expected an SlaVerdict")


def _outcomes(outcomes: Iterable[SlaOutcome]) -> list[SlaOutcome]:
    found = []
    for index, outcome in enumerate(expect_items(outcomes, SlaOutcome, "outcomes", "SlaOutcomes")):
        if not isinstance(outcome, SlaOutcome):
            raise ValidationError(f"outcomes[{index}]", outcome, "expected an SlaOutcome")
        found.append(outcome)
    return found


def service_times(outcomes: Iterable[SlaOutcome]) -> ServiceTimes:
    """The distributions of first-response and resolution times of the stopped timers."""
    stopped: dict[str, list[timedelta]] = {"first_response": [], "resolution": []}
    for outcome in _outcomes(outcomes):
        if outcome.stopped and outcome.metric in stopped:
            stopped[outcome.metric].append(outcome.elapsed)
    return ServiceTimes(
        first_response=distribution(stopped["first_response"]),
        resolution=distribution(stopped["resolution"]),
    )


@attrs.frozen(kw_only=True)
class SlaComplianceRow:
    """One target of one policy: the tickets it timed, how many met and breached it (a
    next-response timer counts as breached when any cycle breached), how many still run
    within target, and ``compliance = met / (met + breached)``."""

    policy: str
    metric: str
    target: timedelta
    tickets: int
    met: int
    breached: int
    running: int
    compliance: float | None


@attrs.frozen(kw_only=True)
class SlaCompliance:
    """SLA compliance per policy and target, by policy name, metric and target."""

    rows: tuple[SlaComplianceRow, ...]


_ORDER: Final = {"first_response": 0, "next_response": 1, "resolution": 2}


def sla_compliance(outcomes: Iterable[SlaOutcome]) -> SlaCompliance:
    """SLA compliance per policy and target from the timers' ``outcomes``."""
    tally: dict[tuple[str, str, timedelta], dict[SlaVerdict, int]] = {}
    for outcome in _outcomes(outcomes):
        key = (outcome.policy, outcome.metric, outcome.target)
        counts = tally.setdefault(key, dict.fromkeys(SlaVerdict, 0))
        counts[outcome.verdict] += 1
    rows = []
    for (policy, metric, target), counts in sorted(
        tally.items(), key=lambda item: (item[0][0], _ORDER.get(item[0][1], 3), item[0][1:])
    ):
        met, breached = counts[SlaVerdict.MET], counts[SlaVerdict.BREACHED]
        rows.append(
            SlaComplianceRow(
                policy=policy,
                metric=metric,
                target=target,
                tickets=sum(counts.values()),
                met=met,
                breached=breached,
                running=counts[SlaVerdict.RUNNING],
                compliance=met / (met + breached) if met + breached else None,
            )
        )
    return SlaCompliance(rows=tuple(rows))


@attrs.frozen(kw_only=True)
class ServiceReport:
    """The service KPIs of the tickets created in one range of periods, as
    :meth:`crmkit.crm.CRM.service_report` computes them from the store."""

    csat: CsatReport
    times: ServiceTimes
    compliance: SlaCompliance
