"""``crmkit report``: the KPIs of a store as one self-contained HTML file.

The file opens offline: the charts are inline SVG drawn here in Python, the style is
inline CSS, and the only script is a few lines that mark each drawn chart (for the
browser test). Every number comes from the analytics and quality use cases of
:class:`crmkit.crm.CRM`; every text taken from the store is escaped.
"""

import argparse
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final
from uuid import UUID

import attrs

from crmkit import __version__
from crmkit.analytics import (
    ForecastRow,
    Granularity,
    Period,
    ReliabilityBin,
    csat_report,
    customer_lifetime_value,
    fit_bg_nbd,
    fit_gamma_gamma,
    nps,
    period_of,
    periods,
    ratings_from_tickets,
    retention_matrix,
    rfm_summary,
    spans_from_purchases,
)
from crmkit.cli import _svg
from crmkit.cli._common import (
    EXIT_OK,
    UsageError,
    add_database_options,
    command_parser,
    host_crm,
    opened_store,
    writable,
    write_atomically,
)
from crmkit.cli._svg import esc
from crmkit.crm import CRM
from crmkit.errors import CrmkitError
from crmkit.lifecycle import Pipeline, StageKind
from crmkit.models import ActivityKind, LifecycleStage, SubjectKind
from crmkit.segmentation import field, tickets_where

__all__ = [
    "AUDIT_SAMPLE",
    "INACTIVE_AFTER",
    "NPS_PROPERTY",
    "SLA_MONTHS",
    "Section",
    "build_report",
    "kpi_sections",
    "register",
    "run",
]

SLA_MONTHS: Final = 3
"""SLA compliance covers the tickets of the last three months (each ticket's clocks are
replayed from its history)."""
AUDIT_SAMPLE: Final = 20_000
"""Invalid values are looked for in this many contacts and accounts (each) at most."""
INACTIVE_AFTER: Final = timedelta(days=90)
"""In the retention heatmap, a customer has left this long after their last purchase."""
NPS_PROPERTY: Final = "nps"
"""NPS answers are ``form_submitted`` activities with this property, an int 0 to 10."""

_TICK: Final = timedelta(microseconds=1)
_EXAMPLES = """\
  crmkit report --db crm.db --out report.html
  crmkit report --db postgresql+psycopg://crm@db/crm --months 24 --out report.html
  crmkit report --db demo.db --tenant demo --setup myapp.crm:setup --out report.html"""


@attrs.frozen
class Section:
    """One part of the report: a title, what it shows, its charts and its table."""

    key: str
    title: str
    intro: str
    charts: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    note: str | None = None
    more: tuple[tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]], ...] = ()
    """Further tables: (summary, headers, rows)."""


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``crmkit report`` to the command line."""
    parser = command_parser(
        subparsers,
        "report",
        summary="write the KPI report: one self-contained HTML file",
        description="Write the KPIs of the store as one HTML file that opens offline (no "
        "CDN, no server): the funnel, the open pipeline by stage (weighted), the forecast "
        "by category and its calibration, win rate and cycle length over time, cohort "
        "retention, SLA compliance, CSAT and NPS, the distribution of customer lifetime "
        "value and a data-quality summary, each chart with its table. Deal pipelines come "
        "from the host's CRM (--setup) or are read off the stored deals; SLA compliance "
        "needs the host's SLA policies (--setup).",
        examples=_EXAMPLES,
    )
    add_database_options(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="the HTML file to write")
    parser.add_argument(
        "--months",
        type=int,
        default=12,
        metavar="N",
        help="how many months of history the charts over time show (12)",
    )
    parser.add_argument("--title", default="crmkit report", help="the report's heading")


def run(args: argparse.Namespace) -> int:
    """Carry out ``crmkit report``."""
    if not 1 <= args.months <= 120:
        raise UsageError(f"--months {args.months}: expected 1 to 120")
    writable(args.out, "--out")
    started = time.perf_counter()
    with opened_store(args) as store:
        crm = host_crm(args, store)
        page = build_report(crm, months=args.months, title=args.title)
    target = write_atomically(args.out, page, "--out")
    print(f"wrote {target} ({len(page.encode()) // 1024} KiB) in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    return EXIT_OK


def _months(now: datetime, months: int) -> tuple[Period, ...]:
    current = period_of(now, Granularity.MONTH)
    start = current.start
    for _ in range(months - 1):
        start = period_of(start - _TICK, Granularity.MONTH).start
    return periods(start, current.end, Granularity.MONTH)


def kpi_sections(crm: CRM, *, months: int = 6) -> list[Section]:
    """The funnel, win rate and CSAT sections of the report (their tables), for a text
    summary such as the demo's."""
    history = _months(crm.clock.now(), months)
    deal_pipelines = [p for p in crm.pipelines.values() if p.subject is SubjectKind.DEAL]
    tiles: list[tuple[str, str]] = []
    return [
        _funnel(crm, deal_pipelines, tiles),
        _win_rate(crm, deal_pipelines, history, tiles),
        _csat(crm, history, tiles),
    ]


def build_report(
    crm: CRM,
    *,
    months: int = 12,
    title: str = "crmkit report",
    timings: dict[str, float] | None = None,
) -> str:
    """The report of ``crm``'s store as one HTML document, as of the CRM clock's now,
    over the last ``months`` months; ``timings`` (when given) receives the seconds each
    section took, by its key."""
    now = crm.clock.now()
    history = _months(now, months)
    current = history[-1]
    deal_pipelines = [p for p in crm.pipelines.values() if p.subject is SubjectKind.DEAL]
    tiles: list[tuple[str, str]] = []
    makers: list[Callable[[], Section]] = [
        lambda: _funnel(crm, deal_pipelines, tiles),
        lambda: _pipeline(crm, deal_pipelines, now, tiles),
        lambda: _forecast(crm, deal_pipelines, current),
        lambda: _calibration(crm, deal_pipelines, history),
        lambda: _win_rate(crm, deal_pipelines, history, tiles),
        lambda: _retention(crm, history),
        lambda: _sla(crm, history[-SLA_MONTHS:]),
        lambda: _csat(crm, history, tiles),
        lambda: _clv(crm, tiles),
        lambda: _quality(crm, tiles),
    ]
    sections = []
    for make in makers:
        started = time.perf_counter()
        section = make()
        if timings is not None:
            timings[section.key] = time.perf_counter() - started
        sections.append(section)
    return _page(
        title, now=now, history=history, tiles=tiles, sections=sections, tenant=crm.store.tenant
    )


# ---------------------------------------------------------------------- sections


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _money(value: Decimal | float) -> str:
    return f"{value:,.0f}"


def _days(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _funnel(crm: CRM, pipelines: Sequence[Pipeline], tiles: list[tuple[str, str]]) -> Section:
    lifecycle = crm.funnel(times=False)
    charts = [
        _svg.bars(
            "funnel",
            [(r.stage, float(r.reached)) for r in lifecycle.rows],
            label="contacts that reached each lifecycle stage",
        )
    ]
    rows = [
        ("lifecycle", r.stage, str(r.reached), _pct(r.step_conversion), _pct(r.overall_conversion))
        for r in lifecycle.rows
    ]
    for pipeline in pipelines:
        deals = crm.funnel(pipeline.key, times=False)
        if not any(r.reached for r in deals.rows):
            continue
        charts.append(
            _svg.bars(
                f"funnel-{pipeline.key}",
                [(r.stage, float(r.reached)) for r in deals.rows],
                label=f"deals of {pipeline.label} that reached each stage",
                color=_svg.PALETTE[2],
            )
        )
        rows += [
            (pipeline.label, r.stage, str(r.reached), _pct(r.step_conversion),
             _pct(r.overall_conversion))
            for r in deals.rows
        ]  # fmt: skip
    customers = {r.stage: r.reached for r in lifecycle.rows}.get(LifecycleStage.CUSTOMER.value)
    tiles.append(("contacts", f"{lifecycle.rows[0].reached:,}" if lifecycle.rows else "0"))
    tiles.append(("reached customer", f"{customers or 0:,}"))
    return Section(
        "funnel",
        "Funnel",
        "How many contacts reached at least each lifecycle stage, and how many deals "
        "reached each stage of their pipeline; conversion from the step before and "
        "from the first step.",
        tuple(charts),
        ("funnel", "stage", "reached", "step conversion", "overall conversion"),
        tuple(rows),
    )


def _stages(pipeline: Pipeline, *kinds: StageKind) -> list[str]:
    return [s.key for s in pipeline.stages if s.kind in kinds]


def _pipeline(
    crm: CRM, pipelines: Sequence[Pipeline], now: datetime, tiles: list[tuple[str, str]]
) -> Section:
    rows = []
    totals: Counter[str] = Counter()
    charts = []
    with crm.store.unit_of_work() as unit:
        for pipeline in pipelines:
            opened = _stages(pipeline, StageKind.OPEN)
            probability = {s.key: s.probability for s in pipeline.stages}
            found = unit.stage_history.standing(
                SubjectKind.DEAL, until=now + _TICK, pipeline=pipeline.key, stages=opened
            )
            amounts: dict[tuple[str, str], list[Decimal]] = {}
            for standing in found:
                currency = standing.currency or "(no amount)"
                cell = amounts.setdefault((standing.stage, currency), [Decimal(0), Decimal(0)])
                cell[0] += standing.count
                cell[1] += standing.amount
            currencies = sorted({c for _, c in amounts})
            for currency in currencies:
                open_amount, weighted = [], []
                for stage in opened:
                    count, amount = amounts.get((stage, currency), [Decimal(0), Decimal(0)])
                    weight = amount * probability[stage]
                    open_amount.append(float(amount))
                    weighted.append(float(weight))
                    totals[currency] += int(weight)
                    rows.append(
                        (pipeline.label, stage, currency, str(int(count)), _money(amount),
                         f"{probability[stage]:.0%}", _money(weight))
                    )  # fmt: skip
                if currency == "(no amount)":
                    continue
                charts.append(
                    _svg.columns(
                        f"pipeline-{pipeline.key}-{currency}",
                        opened,
                        [(f"open ({currency})", open_amount), (f"weighted ({currency})", weighted)],
                        label=f"open pipeline of {pipeline.label} by stage in {currency}",
                        fmt=_money,
                    )
                )
    for currency, total in sorted(totals.items()):
        if currency != "(no amount)":
            tiles.append((f"weighted pipeline, {currency}", f"{total:,}"))
    return Section(
        "pipeline",
        "Pipeline by stage",
        "The open deals by stage as of now: their amounts, and weighted by the stage's "
        "probability (amounts are never added across currencies).",
        tuple(charts),
        ("pipeline", "stage", "currency", "deals", "open amount", "probability", "weighted"),
        tuple(rows),
        None if pipelines else "No deal pipelines: there are no open deals to show.",
    )


def _forecast(crm: CRM, pipelines: Sequence[Pipeline], current: Period) -> Section:
    ahead = [current, current.next(), current.next().next()]
    rows = []
    charts = []
    for pipeline in pipelines:
        forecast = crm.forecast(pipeline.key, periods=ahead)
        # a month without deals has one row without a currency: zeros in every currency
        currencies: list[str | None] = [
            *sorted({r.currency for r in forecast.rows if r.currency})
        ] or [None]
        for currency in currencies:
            mine = [
                next((r for r in forecast.rows if r.period == p.label and r.currency == currency),
                     _empty_forecast(p.label, currency))
                for p in ahead
            ]  # fmt: skip
            labels = [r.period for r in mine]
            charts.append(
                _svg.columns(
                    f"forecast-{pipeline.key}-{currency or 'none'}",
                    labels,
                    [
                        ("closed", [float(r.closed) for r in mine]),
                        ("commit", [float(r.commit) for r in mine]),
                        ("best case", [float(r.best_case) for r in mine]),
                        ("pipeline", [float(r.pipeline) for r in mine]),
                    ],
                    label=f"forecast of {pipeline.label} by category in {currency or '-'}",
                    stacked=True,
                    fmt=_money,
                )
            )
            rows += [
                (pipeline.label, r.period, currency or "", _money(r.closed), _money(r.commit),
                 _money(r.best_case), _money(r.pipeline), _money(r.omitted), _money(r.expected),
                 str(r.deals))
                for r in mine
            ]  # fmt: skip
    return Section(
        "forecast",
        "Forecast by category",
        "This month and the next two: won so far (closed), and the open deals expected "
        "to close in the month by forecast category; expected is the probability-weighted "
        "revenue.",
        tuple(charts),
        ("pipeline", "month", "currency", "closed", "commit", "best case", "pipeline",
         "omitted", "expected", "deals"),
        tuple(rows),
        None if charts else "No deal pipelines to forecast.",
    )  # fmt: skip


def _empty_forecast(period: str, currency: str | None) -> ForecastRow:
    zero = Decimal(0)
    return ForecastRow(
        period=period,
        currency=currency,
        closed=zero,
        commit=zero,
        best_case=zero,
        pipeline=zero,
        omitted=zero,
        expected=zero,
        deals=0,
    )


def _calibration(crm: CRM, pipelines: Sequence[Pipeline], history: Sequence[Period]) -> Section:
    bins: dict[tuple[float, float], list[float]] = {}
    rows = []
    scored = []
    # Whole quarters of the history before this one: each is one replay of the pipeline.
    current = period_of(history[-1].start, Granularity.QUARTER)
    quarters = [
        q for q in periods(history[0].start, current.start, Granularity.QUARTER)
        if q.start >= history[0].start
    ] or [current]  # fmt: skip
    for pipeline in pipelines:
        backtest = crm.forecast_backtest(pipeline.key, periods=quarters)
        if backtest.brier is not None:
            scored.append((pipeline.label, backtest.brier, backtest.deals))
        for b in backtest.reliability:
            _merge_bin(bins, b)
    points = []
    for (low, high), (deals, mean_p, won) in sorted(bins.items()):
        if not deals:
            continue
        points.append((mean_p / deals, won / deals, int(deals)))
        rows.append((f"{low:.0%}-{high:.0%}", str(int(deals)), _pct(mean_p / deals),
                     _pct(won / deals)))  # fmt: skip
    charts = (
        (_svg.reliability("calibration", points, label="stage probability against share won"),)
        if points
        else ()
    )
    brier = "; ".join(f"{name}: Brier score {b:.3f} over {n} deals" for name, b, n in scored)
    return Section(
        "calibration",
        "Forecast calibration",
        "Each past quarter's forecast replayed as of its first day and scored at its end: "
        "per probability bin, the stage probability against the share actually won (the "
        "dashed diagonal is a perfect forecast). "
        + (brier + " (0 is perfect, 0.25 a coin toss)." if brier else ""),
        charts,
        ("probability bin", "deals", "mean probability", "won"),
        tuple(rows),
        None if charts else "No deal was open and due in a past month: nothing to score yet.",
    )


def _merge_bin(bins: dict[tuple[float, float], list[float]], b: ReliabilityBin) -> None:
    cell = bins.setdefault((b.low, b.high), [0.0, 0.0, 0.0])
    if b.deals and b.mean_probability is not None and b.won_rate is not None:
        cell[0] += b.deals
        cell[1] += b.mean_probability * b.deals
        cell[2] += b.won_rate * b.deals


def _win_rate(
    crm: CRM,
    pipelines: Sequence[Pipeline],
    history: Sequence[Period],
    tiles: list[tuple[str, str]],
) -> Section:
    if not pipelines:
        return Section("win-rate", "Win rate and cycle length", "", note="No deal pipelines.")
    kpis = crm.pipeline_kpis(periods=history)
    per: dict[str, list[float]] = {p.label: [0, 0, 0.0, 0] for p in history}
    for row in kpis.rows:
        cell = per[row.period]
        cell[0] += row.won
        cell[1] += row.lost
        if row.cycle_days is not None:
            closed = row.won + row.lost
            cell[2] += row.cycle_days * closed
            cell[3] += closed
    labels = [p.label for p in history]
    rates = [(w / (w + lost) if w + lost else None) for w, lost, _, _ in per.values()]
    cycles = [(c / n if n else None) for _, _, c, n in per.values()]
    won = sum(v[0] for v in per.values())
    lost = sum(v[1] for v in per.values())
    if won + lost:
        tiles.append(("win rate", f"{won / (won + lost):.0%}"))
    return Section(
        "win-rate",
        "Win rate and cycle length",
        "Per month, the share of the deals closed in it that were won, and the mean days "
        "from a closed deal's creation to its close.",
        (
            _svg.lines("win-rate", labels, [("win rate", rates)], label="win rate per month",
                       fmt=lambda v: f"{v:.0%}", top_value=1.0),
            _svg.lines("cycle-length", labels, [("cycle length (days)", cycles)],
                       label="sales cycle length per month in days", fmt=_days),
        ),
        ("month", "won", "lost", "win rate", "cycle length (days)"),
        tuple(
            (label, str(int(v[0])), str(int(v[1])), _pct(rate), _days(cycle))
            for label, v, rate, cycle in zip(labels, per.values(), rates, cycles, strict=True)
        ),
    )  # fmt: skip


def _retention(crm: CRM, history: Sequence[Period]) -> Section:
    # crm.customer_report's retention matrix alone (its flows and revenue are not shown)
    spans = spans_from_purchases(
        crm.purchases(), inactive_after=INACTIVE_AFTER, now=crm.clock.now()
    )
    matrix = retention_matrix(spans, start=history[0].start, end=history[-1].end)
    cohorts = [r for r in matrix.rows if r.size]
    width = max((len(r.rates) for r in cohorts), default=0)
    charts = (
        (
            _svg.heatmap(
                "retention",
                [f"{r.cohort} ({r.size})" for r in cohorts],
                [f"+{i}" for i in range(width)],
                [[*r.rates, *([None] * (width - len(r.rates)))] for r in cohorts],
                label="share of each monthly cohort of new customers still a customer",
                fmt=lambda v: f"{v:.0%}",
            ),
        )
        if cohorts
        else ()
    )
    return Section(
        "retention",
        "Cohort retention",
        "Customers grouped by the month of their first purchase; each cell is the share "
        f"still a customer that many months later (a customer leaves {INACTIVE_AFTER.days} "
        "days after the last purchase).",
        charts,
        ("cohort", "customers", *(f"+{i}" for i in range(width))),
        tuple((r.cohort, str(r.size), *(_pct(x) for x in r.rates)) for r in cohorts),
        None if charts else "No customer started in this time.",
    )


def _sla(crm: CRM, history: Sequence[Period]) -> Section:
    report = crm.service_report(start=history[0].start, end=history[-1].end)
    rows = report.compliance.rows
    charts = (
        (
            _svg.bars(
                "sla",
                [(f"{r.policy}: {r.metric}", r.compliance or 0.0) for r in rows],
                label="share of SLA targets met per policy and target",
                fmt=lambda v: f"{v:.0%}",
                color=_svg.PALETTE[2],
                top=1.0,
            ),
        )
        if rows
        else ()
    )
    times = report.times
    return Section(
        "sla",
        "SLA compliance",
        f"Per SLA policy and target, the share of the tickets created in the last "
        f"{len(history)} months ({history[0].label} to {history[-1].label}) whose "
        "target was met (tickets still running are counted apart). Median first response "
        f"{_duration(times.first_response.median)}, median resolution "
        f"{_duration(times.resolution.median)}.",
        charts,
        ("policy", "target", "limit", "tickets", "met", "breached", "running", "compliance"),
        tuple(
            (
                r.policy,
                r.metric,
                _duration(r.target),
                str(r.tickets),
                str(r.met),
                str(r.breached),
                str(r.running),
                _pct(r.compliance),
            )
            for r in rows
        ),
        None
        if charts
        else "No ticket under an SLA policy in this time (the policies come "
        "from the host's CRM: --setup).",
    )


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "-"
    minutes = round(value.total_seconds() / 60)
    if minutes >= 48 * 60:
        return f"{minutes / 1440:.1f} d"
    return f"{minutes // 60}h{minutes % 60:02d}"


def _csat(crm: CRM, history: Sequence[Period], tiles: list[tuple[str, str]]) -> Section:
    start, end = history[0].start, history[-1].end
    rated = tickets_where(
        (field("created_at") >= start) & (field("created_at") < end) & field("csat").is_not_null()
    )
    with crm.store.unit_of_work() as unit:  # the store picks the rated tickets
        ratings = ratings_from_tickets(unit.tickets.iterate(rated))
    report = csat_report(ratings, start=start, end=end)
    overall = [r for r in report.rows if r.agent is None]
    answers = _nps_answers(crm, history[0].start, history[-1].end)
    score = nps(answers)
    responses = sum(r.responses for r in overall)
    satisfied = sum(r.satisfied for r in overall)
    if responses:
        tiles.append(("CSAT", f"{satisfied / responses:.0%}"))
    if score.score is not None:
        tiles.append(("NPS", f"{score.score:+.0f}"))
    charts = []
    if responses:
        charts.append(
            _svg.lines(
                "csat",
                [r.period for r in overall],
                [("CSAT", [r.csat for r in overall])],
                label="CSAT per month: share of ratings of 4 or 5",
                fmt=lambda v: f"{v:.0%}",
                top_value=1.0,
            )
        )
    if score.responses:
        charts.append(
            _svg.bars(
                "nps",
                [("promoters (9-10)", float(score.promoters)),
                 ("passives (7-8)", float(score.passives)),
                 ("detractors (0-6)", float(score.detractors))],
                label="NPS answers by group",
                color=_svg.PALETTE[4],
            )
        )  # fmt: skip
    nps_text = (
        f"NPS {score.score:+.0f} from {score.responses} answers ({score.confidence:.0%} "
        f"interval {score.low:+.0f} to {score.high:+.0f})."
        if score.score is not None and score.low is not None and score.high is not None
        else "No NPS answers in this time."
    )
    return Section(
        "csat",
        "CSAT and NPS",
        "CSAT: per month, the share of ticket ratings (1 to 5) that are 4 or 5. NPS: the "
        "share of promoters minus the share of detractors among the survey answers (0 to "
        f"10; form_submitted activities with the property '{NPS_PROPERTY}'). {nps_text}",
        tuple(charts),
        ("month", "ratings", "satisfied", "CSAT", "mean rating"),
        tuple(
            (
                r.period,
                str(r.responses),
                str(r.satisfied),
                _pct(r.csat),
                "" if r.mean_score is None else f"{r.mean_score:.2f}",
            )
            for r in overall
        ),
        None if charts else "No ratings and no NPS answers in this time.",
    )


def _nps_answers(crm: CRM, start: datetime, end: datetime) -> list[int]:
    with crm.store.unit_of_work() as unit:
        forms = unit.activities.of_kinds([ActivityKind.FORM_SUBMITTED], since=start, until=end)
    return [
        value
        for a in forms
        if isinstance(value := a.properties.get(NPS_PROPERTY), int)
        and not isinstance(value, bool)
        and 0 <= value <= 10
    ]


def _clv(crm: CRM, tiles: list[tuple[str, str]]) -> Section:
    purchases = crm.purchases()
    if not purchases:
        return Section("clv", "Customer lifetime value", "", note="No purchases stored yet.")
    currency = Counter(t.amount.currency for t in purchases).most_common(1)[0][0]
    by_customer: dict[str, float]
    try:
        # crm.clv_summary's summary, of the purchases read once above
        summary = rfm_summary(purchases, observation_end=crm.clock.now(), currency=currency)
        bg = fit_bg_nbd(summary)
        gg = fit_gamma_gamma(summary)
        report = customer_lifetime_value(summary, bg, gg)
        by_customer = {r.customer: float(r.clv.amount) for r in report.rows}
        what = (
            f"The predicted value of each customer over the next 12 months in {currency} "
            f"(BG/NBD and Gamma-Gamma fitted on {len(summary.rows)} customers' purchases, "
            "1% discount a month)."
        )
        note = None
    except CrmkitError as error:
        by_customer = {}
        for t in purchases:
            if t.amount.currency == currency:
                by_customer[t.customer] = by_customer.get(t.customer, 0.0) + float(t.amount.amount)
        what = f"What each customer has spent so far in {currency}."
        note = f"No lifetime value predicted ({error}); the chart shows the spend so far."
    values = list(by_customer.values())
    top = sorted(by_customer.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    names = _names(crm, [key for key, _ in top])
    edges, counts = _histogram(values)
    labels = [f"{_money(low)}-{_money(high)}" for low, high in edges]
    if values:
        tiles.append((f"median CLV, {currency}", _money(statistics.median(values))))
    return Section(
        "clv",
        "Customer lifetime value",
        what + f" {len(values)} customers, median {_money(statistics.median(values))}, "
        f"mean {_money(statistics.fmean(values))}.",
        (
            _svg.columns(
                "clv",
                labels,
                [("customers", [float(c) for c in counts])],
                label=f"customers by lifetime value in {currency}",
            ),
        ),
        ("value", "customers"),
        tuple((label, str(c)) for label, c in zip(labels, counts, strict=True)),
        note,
        (
            (
                "the ten most valuable customers",
                ("customer", f"value ({currency})"),
                tuple((names.get(key, key), _money(value)) for key, value in top),
            ),
        ),
    )


def _names(crm: CRM, keys: Sequence[str]) -> dict[str, str]:
    """The display names of the contacts whose ids ``keys`` spell."""
    ids = {}
    for key in keys:
        with contextlib.suppress(ValueError):
            ids[UUID(key)] = key
    with crm.store.unit_of_work() as unit:
        found = unit.contacts.get_many(list(ids))
    return {ids[i]: c.display_name for i, c in found.items()}


def _histogram(
    values: Sequence[float], bins: int = 10
) -> tuple[list[tuple[float, float]], list[int]]:
    low, high = min(values), max(values)
    if high <= low:
        return [(low, high)], [len(values)]
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [(low + i * width, low + (i + 1) * width) for i in range(bins)], counts


def _quality(crm: CRM, tiles: list[tuple[str, str]]) -> Section:
    audit = crm.audit(sample=AUDIT_SAMPLE)
    sampled = audit.contacts > AUDIT_SAMPLE or audit.accounts > AUDIT_SAMPLE
    fills = [f for f in audit.fills if f.total]
    share = 1 - audit.unreachable / audit.contacts if audit.contacts else None
    if share is not None:
        tiles.append(("reachable", f"{share:.0%}"))
    invalid = Counter(f"{v.entity}.{v.field}" for v in audit.invalid)
    return Section(
        "quality",
        "Data quality",
        f"{audit.contacts:,} contacts and {audit.accounts:,} accounts: the share of each "
        f"that has a value in each field. {audit.stale:,} contacts are stale (no activity "
        f"for {audit.stale_after_days} days), {audit.unreachable:,} unreachable (no e-mail "
        f"and no phone, or do-not-contact), {len(audit.invalid):,} values invalid"
        + (f" among the first {AUDIT_SAMPLE:,} records by id (a uniform sample)" if sampled
           else "")
        + (": " + ", ".join(f"{name} {n}" for name, n in invalid.most_common(5)) if invalid
           else "") + ".",
        (
            _svg.bars("quality", [(f"{f.entity}.{f.field}", f.filled / f.total) for f in fills],
                      label="share of records with a value per field", top=1.0,
                      fmt=lambda v: f"{v:.0%}", color=_svg.PALETTE[4]),
        ) if fills else (),
        ("entity", "field", "filled", "records", "fill rate"),
        tuple((f.entity, f.field, f"{f.filled:,}", f"{f.total:,}", _pct(f.filled / f.total))
              for f in fills),
        None if fills else "No contacts or accounts stored yet.",
    )  # fmt: skip


# ---------------------------------------------------------------------- the page

_CSS: Final = """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #ffffff;
  --bg: #f4f6fa; --accent: #2f6fde; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { background: #172033; color: #fff; padding: 24px 32px 20px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #c7cfdd; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 10px 32px;
  background: #fff; border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 40px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 12px; margin-bottom: 20px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 14px; }
.tile b { display: block; font-size: 22px; font-weight: 600; }
.tile span { color: var(--muted); font-size: 12px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 22px; margin-bottom: 18px; }
section h2 { margin: 0 0 4px; font-size: 17px; }
section > p { margin: 0 0 12px; color: var(--muted); max-width: 880px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
  gap: 16px; align-items: start; }
.charts svg { max-width: 640px; }
.note { background: #fff8e6; border: 1px solid #f5d98c; border-radius: 6px;
  padding: 8px 12px; color: #7a5a00; }
details { margin-top: 10px; }
summary { cursor: pointer; color: var(--accent); font-size: 13px; }
table { border-collapse: collapse; margin-top: 8px; font-size: 12.5px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; }
th { background: #f8fafc; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
footer { color: var(--muted); text-align: center; font-size: 12px; padding-bottom: 24px; }
"""

# Marks every chart that drew something (a mark with a size), so that a test can check
# the rendering; nothing else depends on it.
_SCRIPT: Final = """
window.addEventListener("load", function () {
  var charts = document.querySelectorAll("svg.chart"), drawn = 0;
  charts.forEach(function (svg) {
    var marks = Array.prototype.filter.call(svg.querySelectorAll(".mark"), function (m) {
      var box = m.getBBox(); return box.width > 0 && box.height > 0;
    });
    svg.setAttribute("data-rendered", marks.length ? "yes" : "no");
    svg.setAttribute("data-marks", String(marks.length));
    if (marks.length) { drawn += 1; }
  });
  document.body.setAttribute("data-charts", charts.length + " " + drawn);
});
"""


def _page(
    title: str,
    *,
    now: datetime,
    history: Sequence[Period],
    tiles: Sequence[tuple[str, str]],
    sections: Sequence[Section],
    tenant: str,
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>tenant {esc(tenant)} &middot; as of "
        f"{now:%Y-%m-%d %H:%M} UTC &middot; {esc(history[0].label)} to "
        f"{esc(history[-1].label)}</p></header>",
        "<nav>"
        + "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
        + "</nav><main>",
        '<div class="tiles">'
        + "".join(
            f'<div class="tile"><b>{esc(value)}</b><span>{esc(name)}</span></div>'
            for name, value in tiles
        )
        + "</div>",
    ]
    for section in sections:
        parts.append(f'<section id="{esc(section.key)}"><h2>{esc(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{esc(section.intro)}</p>")
        # A chart without a mark (every value zero or missing) is left out, and said so.
        charts = [chart for chart in section.charts if 'class="mark"' in chart]
        note = section.note
        if note is None and len(charts) < len(section.charts):
            note = "Nothing to draw for this time: every value is zero or missing."
        if note:
            parts.append(f'<p class="note">{esc(note)}</p>')
        if charts:
            parts.append('<div class="charts">' + "".join(charts) + "</div>")
        if section.rows:
            parts.append(_table(section.headers, section.rows, open_=not charts))
        for summary, headers, rows in section.more:
            parts.append(_table(headers, rows, open_=False, summary=summary))
        parts.append("</section>")
    parts.append(
        f"</main><footer>made by crmkit {esc(__version__)}; opens offline, no data leaves "
        f"this file</footer><script>{_SCRIPT}</script></body></html>"
    )
    return "\n".join(parts)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    open_: bool,
    summary: str = "the table",
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<details{' open' if open_ else ''}><summary>{esc(summary)} ({len(rows)} rows)</summary>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>"
    )
