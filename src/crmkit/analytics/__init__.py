"""KPIs over the customer lifecycle: pure functions over models and query results.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` reads
the store (grouping in the database through the port where it can) and hands the rows
to these functions.
"""

# --- customers, service and customer lifetime value (issue 13, parts 4 to 6) ---
from crmkit.analytics._clv import (
    BgNbdFit,
    ClvReport,
    ClvRow,
    Estimate,
    GammaGammaFit,
    HoldoutCheck,
    RfmRow,
    RfmSummary,
    Transaction,
    customer_lifetime_value,
    fit_bg_nbd,
    fit_gamma_gamma,
    holdout_check,
    rfm_summary,
    transactions_from_activities,
)
from crmkit.analytics._periods import Granularity, Period, period_of, periods

__all__ = ["Granularity", "Period", "period_of", "periods"]

# --- customers, service and customer lifetime value (issue 13, parts 4 to 6) ---
__all__ += [
    "BgNbdFit",
    "ClvReport",
    "ClvRow",
    "Estimate",
    "GammaGammaFit",
    "HoldoutCheck",
    "RfmRow",
    "RfmSummary",
    "Transaction",
    "customer_lifetime_value",
    "fit_bg_nbd",
    "fit_gamma_gamma",
    "holdout_check",
    "rfm_summary",
    "transactions_from_activities",
]
