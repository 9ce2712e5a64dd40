"""KPIs over the customer lifecycle: pure functions over models and query results.

The domain layer of DESIGN.md: nothing here does I/O; :class:`crmkit.crm.CRM` reads
the store (grouping in the database through the port where it can) and hands the rows
to these functions.
"""

from crmkit.analytics._periods import Granularity, Period, period_of, periods

__all__ = ["Granularity", "Period", "period_of", "periods"]
