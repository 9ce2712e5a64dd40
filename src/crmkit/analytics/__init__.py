"""KPIs over the customer lifecycle: pure functions over models and query results.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` reads
the store (grouping in the database through the port where it can) and hands the rows
to these functions.
"""

# -- funnel, pipeline KPIs, forecast (issue 13 parts 1-3) --------------------------
from crmkit.analytics._forecast import (
    Backtest,
    BacktestRow,
    Forecast,
    ForecastCategory,
    ForecastRow,
    ReliabilityBin,
    backtest_rows,
    brier,
    category_of,
    forecast_rows,
    reliability,
)
from crmkit.analytics._funnel import (
    Funnel,
    FunnelRow,
    entry_durations,
    funnel_rows,
    lifecycle_stages,
    nearest_rank,
)
from crmkit.analytics._periods import Granularity, Period, period_of, periods
from crmkit.analytics._pipeline import (
    LostReason,
    PipelineKpis,
    PipelineRow,
    StageFacts,
    check_periods,
    convert,
    group_label,
    pipeline_rows,
)
from crmkit.analytics._replay import (
    REPLAYED,
    Reach,
    Standing,
    check_ranks,
    check_replay,
    check_stages,
    replay_reach,
    replay_standing,
)

__all__ = ["Granularity", "Period", "period_of", "periods"]

# -- funnel, pipeline KPIs, forecast (issue 13 parts 1-3) --------------------------
__all__ += [
    "REPLAYED",
    "Backtest",
    "BacktestRow",
    "Forecast",
    "ForecastCategory",
    "ForecastRow",
    "Funnel",
    "FunnelRow",
    "LostReason",
    "PipelineKpis",
    "PipelineRow",
    "Reach",
    "ReliabilityBin",
    "StageFacts",
    "Standing",
    "backtest_rows",
    "brier",
    "category_of",
    "check_periods",
    "check_ranks",
    "check_replay",
    "check_stages",
    "convert",
    "entry_durations",
    "forecast_rows",
    "funnel_rows",
    "group_label",
    "lifecycle_stages",
    "nearest_rank",
    "pipeline_rows",
    "reliability",
    "replay_reach",
    "replay_standing",
]
