"""The KPI use cases of :class:`~crmkit.crm.CRM` (funnel, pipeline KPIs, forecast and
its backtest): each reads the store's grouped replays in one unit of work and hands the
rows to :mod:`crmkit.analytics`."""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

from crmkit.analytics import (
    REPLAYED,
    Backtest,
    Forecast,
    ForecastCategory,
    Funnel,
    FunnelRow,
    Period,
    PipelineKpis,
    PipelineRow,
    StageFacts,
    Standing,
    StandingWindow,
    backtest_rows,
    brier,
    check_periods,
    entry_durations,
    forecast_rows,
    funnel_rows,
    group_label,
    lifecycle_stages,
    pipeline_rows,
    reliability,
    stage_durations,
)
from crmkit.analytics._forecast import BacktestRow, ForecastRow, Outcome
from crmkit.analytics._pipeline import check_quota, check_rates
from crmkit.clock import ensure_utc
from crmkit.errors import CrmkitError, ValidationError
from crmkit.lifecycle import Pipeline, StageKind
from crmkit.models import CURRENCIES, DealStatus, Money, Segment, StageChange, SubjectKind
from crmkit.models.rules import And, Compare, InSegment, Op, Rule, RuleEntity
from crmkit.scoring import Predictor, deal_record
from crmkit.storage import Store, UnitOfWork

__all__ = ["backtest", "forecast", "funnel", "pipeline_kpis"]

_TICK = timedelta(microseconds=1)
_BATCH = 1000
_NONE = "(none)"
"""The cohort label of subjects without a value in the field grouped by."""
_STATUS = {StageKind.OPEN: DealStatus.OPEN, StageKind.WON: DealStatus.WON}


def _as_of(at: datetime | None, now: datetime) -> datetime:
    """The exclusive bound of "as of ``at``" (inclusive): one microsecond later."""
    return (now if at is None else ensure_utc(at, "at")) + _TICK


def _stages(pipeline: Pipeline) -> tuple[str, ...]:
    """A pipeline's funnel stages: open stages in order, then won stages (lost ones are
    an exit, not a step)."""
    open_ = [s.key for s in pipeline.stages if s.kind is StageKind.OPEN]
    return (*open_, *(s.key for s in pipeline.stages if s.kind is StageKind.WON))


def facts_of(pipelines: Iterable[Pipeline]) -> dict[tuple[str | None, str], StageFacts]:
    """Every deal pipeline's stages as (pipeline, stage) -> facts."""
    return {
        (p.key, s.key): StageFacts(_STATUS.get(s.kind, DealStatus.LOST), s.probability)
        for p in pipelines
        if p.subject is SubjectKind.DEAL
        for s in p.stages
    }


def stages_of(
    facts: Mapping[tuple[str | None, str], StageFacts], *statuses: DealStatus
) -> frozenset[str]:
    """The stage keys of these kinds, for the store to filter the last moves by."""
    return frozenset(stage for (_, stage), known in facts.items() if known.status in statuses)


def _both(rule: Rule | None, where: Compare | InSegment | And, entity: RuleEntity) -> Rule:
    if rule is None:
        return Rule(entity, where)
    return Rule(entity, And((rule.where, where)))


def _cohorts(
    entity: RuleEntity,
    rule: Rule | None,
    by: str | None,
    created: Sequence[Period],
    segments: Sequence[Segment],
) -> list[tuple[str, Rule | None, str | None]]:
    """``(label, rule, group)`` per query: one grouped query for ``by``, one query per
    creation period or segment, or one for all."""
    if rule is not None and (not isinstance(rule, Rule) or rule.entity is not entity):
        raise ValidationError("rule", rule, f"expected a rule over {entity.value}s")
    chosen = sum(1 for option in (by, created, segments) if option)
    if chosen > 1:
        raise ValidationError("by", by, "cohorts come from one of by, created or segments")
    if created:
        periods = check_periods(created)
        return [
            (
                p.label,
                _both(
                    rule,
                    And(
                        (
                            Compare("created_at", Op.GE, p.start),
                            Compare("created_at", Op.LT, p.end),
                        )
                    ),
                    entity,
                ),
                None,
            )
            for p in periods
        ]
    if segments:
        if entity is not RuleEntity.CONTACT:
            raise ValidationError(
                "segments",
                segments,
                f"segment cohorts apply to the lifecycle funnel only (no pipeline): a "
                f"{entity.value} funnel cohorts by a field (by=...) or by creation periods "
                f"(created=...), or takes a rule over {entity.value}s (rule=...)",
            )
        found: list[tuple[str, Rule | None, str | None]] = []
        for index, segment in enumerate(segments):
            if not isinstance(segment, Segment):
                raise ValidationError(f"segments[{index}]", segment, "expected a Segment")
            found.append((segment.name, _both(rule, InSegment(segment.id), entity), None))
        return found
    if by is not None:
        return [("", rule, by)]
    return [("all", rule, None)]


def _histories(
    unit: UnitOfWork,
    subject: SubjectKind,
    rule: Rule | None,
    pipeline: str | None,
    until: datetime,
    *,
    group: str | None = None,
) -> Iterator[tuple[str, list[StageChange]]]:
    """The moves of each subject ``rule`` selects, with its cohort label (the value of
    ``group``, ``""`` without one), read ``_BATCH`` subjects at a time (only one batch is
    held)."""
    repository: Any = getattr(unit, f"{REPLAYED[subject].entity_name}s")
    if group is None:
        ids = repository.ids(rule, now=until)
        batches: Iterator[dict[UUID, str]] = (
            dict.fromkeys(ids[start : start + _BATCH], "") for start in range(0, len(ids), _BATCH)
        )
    else:
        batches = _labelled(repository.iterate(rule, batch_size=_BATCH, now=until), group)
    for labels in batches:
        by_subject: dict[UUID, list[StageChange]] = {}
        for change in unit.stage_history.for_subjects(subject, list(labels)):
            if pipeline is None or change.pipeline == pipeline:
                by_subject.setdefault(change.subject_id, []).append(change)
        for subject_id, history in by_subject.items():
            yield labels[subject_id], history


def _labelled(subjects: Iterator[Any], group: str) -> Iterator[dict[UUID, str]]:
    """The ids of ``subjects`` with their cohort labels, ``_BATCH`` at a time."""
    batch: dict[UUID, str] = {}
    for item in subjects:
        batch[item.id] = group_label(getattr(item, group)) or _NONE
        if len(batch) >= _BATCH:
            yield batch
            batch = {}
    if batch:
        yield batch


def _times(
    histories: Iterator[tuple[str, list[StageChange]]],
    ranks: Mapping[str, int],
    stages: Sequence[str],
    until: datetime,
) -> dict[str, tuple[dict[int, list[timedelta]], dict[str, list[timedelta]]]]:
    """Per cohort label, the time between stages and the time in each stage, computed a
    batch of histories at a time."""
    found: dict[str, tuple[dict[int, list[timedelta]], dict[str, list[timedelta]]]] = {}
    while batch := list(islice(histories, _BATCH)):
        by_label: dict[str, list[list[StageChange]]] = {}
        for label, history in batch:
            by_label.setdefault(label, []).append(history)
        for label, group in by_label.items():
            between, inside = found.setdefault(label, ({}, {}))
            for k, taken in entry_durations(group, ranks, until).items():
                between.setdefault(k, []).extend(taken)
            for stage, taken in stage_durations(group, stages, until).items():
                inside.setdefault(stage, []).extend(taken)
    return found


def funnel(
    store: Store,
    pipelines: Mapping[str, Pipeline],
    now: datetime,
    pipeline: str | None,
    *,
    by: str | None,
    created: Sequence[Period],
    segments: Sequence[Segment],
    rule: Rule | None,
    at: datetime | None,
    times: bool,
) -> Funnel:
    """See :meth:`crmkit.crm.CRM.funnel`."""
    until = _as_of(at, now)
    if pipeline is None:
        subject, stages = SubjectKind.CONTACT, lifecycle_stages()
    else:
        found = pipelines.get(pipeline) if isinstance(pipeline, str) else None
        if found is None or found.subject not in REPLAYED:
            raise ValidationError("pipeline", pipeline, "no such lead or deal pipeline")
        subject, stages = found.subject, _stages(found)
    entity = RuleEntity(REPLAYED[subject].entity_name)
    ranks = {stage: rank for rank, stage in enumerate(stages)}
    if not isinstance(times, bool):
        raise ValidationError("times", times, "expected True or False")
    rows: list[FunnelRow] = []
    with store.unit_of_work() as unit:
        cohorts = _cohorts(entity, rule, by, created, segments)
        for index, segment in enumerate(segments or ()):
            if isinstance(segment, Segment) and not unit.segments.get_many([segment.id]):
                raise ValidationError(
                    f"segments[{index}]",
                    segment.name,
                    "not stored: a segment cohort reads the members of a stored segment "
                    "(add it to the store first: unit.segments.add)",
                )
        for label, cohort_rule, group in cohorts:
            reach = unit.stage_history.reach(
                subject, ranks, until=until, pipeline=pipeline, rule=cohort_rule, group=group
            )
            measured = {}
            if times:
                histories = _histories(unit, subject, cohort_rule, pipeline, until, group=group)
                measured = _times(histories, ranks, stages, until)
            if group is None:
                between, inside = measured.get("", (None, None))
                rows.extend(funnel_rows(label, reach, stages, between, inside))
                continue
            keys = sorted({group_label(r.group) or _NONE for r in reach})
            for key in keys:
                mine = [r for r in reach if (group_label(r.group) or _NONE) == key]
                between, inside = measured.get(key, (None, None))
                rows.extend(funnel_rows(key, mine, stages, between, inside))
    return Funnel(subject, pipeline, until - _TICK, stages, tuple(rows))


def _deal_pipeline(pipelines: Mapping[str, Pipeline], pipeline: str | None) -> None:
    if pipeline is None:
        return
    found = pipelines.get(pipeline) if isinstance(pipeline, str) else None
    if found is None or found.subject is not SubjectKind.DEAL:
        raise ValidationError("pipeline", pipeline, "no such deal pipeline")


def _money_options(
    quota: Money | None, rates: Mapping[str, Decimal] | None, currency: str | None
) -> tuple[dict[str, Decimal] | None, str | None]:
    """``quota``, ``rates`` and ``currency`` checked (as the analytics functions check
    them), the codes normalised as :class:`Money` normalises them (``"eur"`` is
    ``EUR``; ``"EURO"`` is no ISO 4217 code)."""
    check_quota(quota)
    given, target = check_rates(rates, currency)
    if given is None:
        return None, None
    checked: dict[str, Decimal] = {}
    for code, rate in given.items():
        name = f"rates[{code!r}]"
        normal = _currency_code(name, code)
        if normal in checked:
            raise ValidationError(name, code, f"a second rate for {normal}")
        checked[normal] = rate
    return checked, _currency_code("currency", target)


def _currency_code(name: str, code: object) -> str:
    normal = code.strip().upper() if isinstance(code, str) else None
    if normal is None or not normal.isascii() or normal not in CURRENCIES:
        raise ValidationError(name, code, "not an ISO 4217 currency code")
    return normal


def _deal_rule(rule: Rule | None) -> Rule | None:
    if rule is not None and (not isinstance(rule, Rule) or rule.entity is not RuleEntity.DEAL):
        raise ValidationError("rule", rule, "expected a rule over deals")
    return rule


def pipeline_kpis(
    store: Store,
    pipelines: Mapping[str, Pipeline],
    now: datetime,
    pipeline: str | None,
    *,
    periods: Sequence[Period],
    by: str | None,
    rule: Rule | None,
    at: datetime | None,
    quota: Money | None,
    rates: Mapping[str, Decimal] | None,
    currency: str | None,
) -> PipelineKpis:
    """See :meth:`crmkit.crm.CRM.pipeline_kpis`."""
    until = _as_of(at, now)
    chosen = check_periods(periods)
    _deal_pipeline(pipelines, pipeline)
    rates, currency = _money_options(quota, rates, currency)
    rule = _deal_rule(rule)
    facts = facts_of(pipelines.values())
    ended = stages_of(facts, DealStatus.WON, DealStatus.LOST)
    open_ = stages_of(facts, DealStatus.OPEN)
    rows: list[PipelineRow] = []
    windows = []
    for period in chosen:
        end = min(period.end, until)
        start = min(period.start, end)
        windows += [
            StandingWindow(end, since=start, stages=ended),  # closed in the period
            StandingWindow(end, stages=open_),  # open at its end
            StandingWindow(start, stages=open_),  # open at its start
        ]
    with store.unit_of_work() as unit:
        # one replay of the history for every period (not three per period)
        found = unit.stage_history.standings(
            SubjectKind.DEAL, windows, pipeline=pipeline, rule=rule, group=by
        )
    for index, period in enumerate(chosen):
        closed, at_end, at_start = found[3 * index : 3 * index + 3]
        rows.extend(
            pipeline_rows(
                period,
                closed,
                at_end,
                at_start,
                facts,
                quota=quota,
                rates=rates,
                currency=currency,
            )
        )
    return PipelineKpis(pipeline, by, until - _TICK, tuple(rows))


def _categories(
    chosen: Pipeline, categories: Mapping[str, ForecastCategory] | None
) -> dict[str, ForecastCategory] | None:
    """``categories`` checked against the pipeline: each key an open stage of it, each
    value a :class:`ForecastCategory` or its value (``"commit"``)."""
    if categories is None:
        return None
    if not isinstance(categories, Mapping):
        raise ValidationError("categories", categories, "expected stage -> category")
    kinds = {stage.key: stage.kind for stage in chosen.stages}
    checked: dict[str, ForecastCategory] = {}
    given: Mapping[Any, object] = categories  # checked as the object a host may pass
    for stage, category in given.items():
        name = f"categories[{stage!r}]"
        if stage not in kinds:
            raise ValidationError(name, stage, f"no such stage in pipeline {chosen.key!r}")
        if not isinstance(stage, str) or kinds[stage] is not StageKind.OPEN:
            raise ValidationError(
                name, stage, "a won or lost stage is always closed or omitted, never mapped"
            )
        if isinstance(category, ForecastCategory):
            checked[stage] = category
        elif isinstance(category, str) and category in {c.value for c in ForecastCategory}:
            checked[stage] = ForecastCategory(category)
        else:
            raise ValidationError(
                name, category, f"not a category (one of {[c.value for c in ForecastCategory]})"
            )
    return checked


def forecast(
    store: Store,
    pipelines: Mapping[str, Pipeline],
    now: datetime,
    pipeline: str,
    *,
    periods: Sequence[Period],
    at: datetime | None,
    categories: Mapping[str, ForecastCategory] | None,
    rates: Mapping[str, Decimal] | None,
    currency: str | None,
    scorer: Predictor | None = None,
) -> Forecast:
    """See :meth:`crmkit.crm.CRM.forecast`."""
    if scorer is not None and not callable(getattr(scorer, "predict_many", None)):
        raise ValidationError("scorer", scorer, "expected a fitted scorer with predict_many")
    until = _as_of(at, now)
    chosen = check_periods(periods)
    if pipeline is None:
        raise ValidationError("pipeline", pipeline, "no such deal pipeline")
    _deal_pipeline(pipelines, pipeline)
    rates, currency = _money_options(None, rates, currency)
    categories = _categories(pipelines[pipeline], categories)
    facts = facts_of(pipelines.values())
    won_stages = stages_of(facts, DealStatus.WON)
    rows: list[ForecastRow] = []
    deal = SubjectKind.DEAL
    with store.unit_of_work() as unit:
        history = unit.stage_history
        open_ = stages_of(facts, DealStatus.OPEN)
        # Grouped by the per-deal category (few rows); with a scorer, one row per deal.
        group = "forecast_category" if scorer is None else "id"
        open_now = history.standing(deal, until=until, pipeline=pipeline, stages=open_, group=group)
        overrides: dict[Any, ForecastCategory] = {c: c for c in ForecastCategory}
        scores: dict[Any, float] = {}
        if scorer is not None:
            overrides, scores = _scored(unit, scorer, open_now, chosen)
        won_in = history.standings(
            deal,
            [
                StandingWindow(end, since=min(p.start, end), stages=won_stages)
                for p in chosen
                for end in [min(p.end, until)]
            ],
            pipeline=pipeline,
        )
        for period, won in zip(chosen, won_in, strict=True):
            rows.extend(
                forecast_rows(
                    period,
                    won,
                    open_now,
                    facts,
                    mapping=categories,
                    rates=rates,
                    currency=currency,
                    overrides=overrides,
                    scores=scores,
                )
            )
    unscheduled = sum(
        r.count
        for r in open_now
        if r.expected_close is None
        and (known := facts.get((r.pipeline, r.stage))) is not None
        and known.status is DealStatus.OPEN
    )
    expected_from = "stage" if scorer is None else "scorer"
    return Forecast(pipeline, until - _TICK, tuple(rows), unscheduled, expected_from)


def _scored(
    unit: UnitOfWork, scorer: Predictor, open_now: Sequence[Standing], periods: Sequence[Period]
) -> tuple[dict[Any, ForecastCategory], dict[Any, float]]:
    """The per-deal categories and the scorer's probabilities of the open deals (rows
    grouped by deal id) expected to close within one of ``periods``, read and scored a
    batch at a time."""
    first, last = min(p.start for p in periods).date(), max(p.end for p in periods).date()
    wanted = [
        r.group
        for r in open_now
        if r.expected_close is not None and first <= r.expected_close < last
    ]
    overrides: dict[Any, ForecastCategory] = {}
    scores: dict[Any, float] = {}
    for start in range(0, len(wanted), _BATCH):
        deals = list(unit.deals.get_many(wanted[start : start + _BATCH]).values())
        try:
            found = scorer.predict_many([deal_record(d) for d in deals])
        except CrmkitError:
            raise
        except Exception as error:  # a host's scorer: its failure is named, not leaked
            raise ValidationError("scorer", scorer, f"predict_many failed: {error!r}") from None
        if not isinstance(found, Sequence) or len(found) != len(deals):
            raise ValidationError("scorer", scorer, "predict_many gave not one score per deal")
        for deal, score in zip(deals, found, strict=True):
            scores[deal.id] = score
            if deal.forecast_category is not None:
                overrides[deal.id] = deal.forecast_category
    return overrides, scores


def backtest(
    store: Store,
    pipelines: Mapping[str, Pipeline],
    now: datetime,
    pipeline: str,
    *,
    periods: Sequence[Period],
    at: datetime | None,
    rates: Mapping[str, Decimal] | None,
    currency: str | None,
) -> Backtest:
    """See :meth:`crmkit.crm.CRM.forecast_backtest`."""
    until = _as_of(at, now)
    chosen = check_periods(periods)
    if pipeline is None:
        raise ValidationError("pipeline", pipeline, "no such deal pipeline")
    _deal_pipeline(pipelines, pipeline)
    rates, currency = _money_options(None, rates, currency)
    facts = facts_of(pipelines.values())
    open_, won_stages = stages_of(facts, DealStatus.OPEN), stages_of(facts, DealStatus.WON)
    rows: list[BacktestRow] = []
    outcomes: list[Outcome] = []
    deal = SubjectKind.DEAL
    with store.unit_of_work() as unit:
        history = unit.stage_history
        windows = []
        for period in chosen:
            end = min(period.end, until)
            start = min(period.start, end)
            windows += [
                StandingWindow(start, then=end, stages=open_),  # open at the start
                StandingWindow(end, since=start, stages=won_stages),  # won in the period
            ]
        found = history.standings(deal, windows, pipeline=pipeline)
        for index, period in enumerate(chosen):
            replayed, won = found[2 * index : 2 * index + 2]
            rows.extend(
                backtest_rows(
                    period, replayed, won, facts, outcomes, rates=rates, currency=currency
                )
            )
    return Backtest(
        pipeline,
        until - _TICK,
        tuple(rows),
        brier(outcomes),
        sum(n for _, _, n in outcomes),
        reliability(outcomes),
    )
