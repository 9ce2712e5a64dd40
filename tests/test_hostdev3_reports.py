"""Regression tests for the report findings of the hostdev3 evaluation, on memory,
SQLite and PostgreSQL: funnel times over skipped stages (#5), money at the currency's
exponent on every store (#12, #22), forecast categories naming unknown stages (#11),
rate tables in any case (#20)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from crmkit.crm import CRM
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import LeadChannel, Money, SubjectKind
from crmkit.storage import Store
from tests.storage_support import STORES, stepping_store

START = datetime(2026, 1, 5, 9, tzinfo=UTC)
SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="D", probability=Decimal("0.2")),
        Stage(key="proposal", label="P", probability=Decimal("0.5")),
        Stage(key="won", label="W", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="L", kind=StageKind.LOST),
    ),
)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, START, "hostdev3")


def _deals(crm: CRM, amounts: tuple[str, ...]) -> list[object]:
    ids = []
    for n, amount in enumerate(amounts):
        touch = Touchpoint(email=f"d{n}@x.org", source="web", channel=LeadChannel.FORM)
        lead = crm.capture_lead(touch).lead
        deal = crm.convert_lead(
            lead.id, pipeline="sales", title=f"d{n}", amount=Money(amount, "EUR")
        ).deal
        ids.append(deal.id)
    return ids


def _advance(store: Store, days: int) -> None:
    store.clock.advance(timedelta(days=days))  # type: ignore[attr-defined]


def test_funnel_times_leave_out_subjects_that_skipped_a_stage(store: Store) -> None:
    """#5: a deal won straight from discovery is no 0-day proposal -> won step."""
    crm = CRM(store, pipelines=[SALES])
    a, b, c = _deals(crm, ("1000", "2000", "1500.5"))
    _advance(store, 10)
    crm.move_deal(a, "proposal", by="x")
    _advance(store, 20)
    for deal in (a, b, c):
        crm.win_deal(deal, by="x")
    rows = {r.stage: r for r in crm.funnel("sales").rows}
    assert rows["proposal"].reached == rows["won"].reached == 3
    assert (rows["proposal"].timed, rows["won"].timed) == (1, 1)
    assert rows["proposal"].median_time is not None
    assert abs(rows["proposal"].median_time - timedelta(days=10)) < timedelta(minutes=1)
    assert rows["won"].median_time is not None
    assert abs(rows["won"].median_time - timedelta(days=20)) < timedelta(minutes=1)
