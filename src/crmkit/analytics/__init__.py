"""KPIs over the customer lifecycle: pure functions over models and query results.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` reads
the store (grouping in the database through the port where it can) and hands the rows
to these functions.
"""

from crmkit.analytics._periods import Granularity, Period, period_of, periods

# -- funnel, pipeline KPIs, forecast (issue 13 parts 1-3) --------------------------
from crmkit.analytics._replay import (
    REPLAYED,
    Reach,
    Standing,
    check_ranks,
    check_replay,
    replay_reach,
    replay_standing,
)

__all__ = ["Granularity", "Period", "period_of", "periods"]

# -- funnel, pipeline KPIs, forecast (issue 13 parts 1-3) --------------------------
__all__ += [
    "REPLAYED",
    "Reach",
    "Standing",
    "check_ranks",
    "check_replay",
    "replay_reach",
    "replay_standing",
]
