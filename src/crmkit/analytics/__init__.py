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
from crmkit.analytics._customers import (
    CohortRow,
    CustomerFlowRow,
    CustomerFlows,
    CustomerSpan,
    RetentionMatrix,
    RevenueReport,
    RevenueRow,
    customer_flows,
    retention_matrix,
    revenue_report,
    spans_from_purchases,
    spans_from_stage_changes,
    transactions_from_deals,
)
from crmkit.analytics._periods import Granularity, Period, period_of, periods
from crmkit.analytics._service import (
    CsatReport,
    CsatRow,
    Distribution,
    Nps,
    Rating,
    ServiceTimes,
    SlaCompliance,
    SlaComplianceRow,
    SlaOutcome,
    SlaVerdict,
    csat_report,
    distribution,
    nps,
    ratings_from_tickets,
    service_times,
    sla_compliance,
)

__all__ = ["Granularity", "Period", "period_of", "periods"]

# --- customers, service and customer lifetime value (issue 13, parts 4 to 6) ---
__all__ += [
    "BgNbdFit",
    "ClvReport",
    "ClvRow",
    "CohortRow",
    "CsatReport",
    "CsatRow",
    "CustomerFlowRow",
    "CustomerFlows",
    "CustomerSpan",
    "Distribution",
    "Estimate",
    "GammaGammaFit",
    "HoldoutCheck",
    "Nps",
    "Rating",
    "RetentionMatrix",
    "RevenueReport",
    "RevenueRow",
    "RfmRow",
    "RfmSummary",
    "ServiceTimes",
    "SlaCompliance",
    "SlaComplianceRow",
    "SlaOutcome",
    "SlaVerdict",
    "Transaction",
    "csat_report",
    "customer_flows",
    "customer_lifetime_value",
    "distribution",
    "fit_bg_nbd",
    "fit_gamma_gamma",
    "holdout_check",
    "nps",
    "ratings_from_tickets",
    "retention_matrix",
    "revenue_report",
    "rfm_summary",
    "service_times",
    "sla_compliance",
    "spans_from_purchases",
    "spans_from_stage_changes",
    "transactions_from_activities",
    "transactions_from_deals",
]
