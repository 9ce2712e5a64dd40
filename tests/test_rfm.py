"""RFM scores and groups: BTYD measures, quantile scores and the 5 x 5 segment map."""

import math
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import CurrencyMismatch, ValidationError
from crmkit.models import Activity, ActivityKind, Money
from crmkit.segmentation import (
    RfmGroup,
    RfmScore,
    rfm_group,
    rfm_scores,
)

AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CLOCK = FixedClock(datetime(2026, 3, 2, tzinfo=UTC))
ADA, BOB, CY, DEE, EVE = (UUID(int=i) for i in range(1, 6))


def buy(
    contact: UUID,
    when: datetime,
    amount: str | int | Decimal = 10,
    currency: str = "EUR",
    kind: ActivityKind = ActivityKind.PURCHASE,
) -> Activity:
    return Activity.new(
        contact_id=contact,
        kind=kind,
        occurred_at=when,
        amount=Money(Decimal(amount), currency),
        clock=CLOCK,
    )


def day(n: int, hour: int = 10) -> datetime:
    """``n`` days before the day of AS_OF, at ``hour`` UTC."""
    return datetime(2026, 3, 1, hour, tzinfo=UTC) - timedelta(days=n)


def scores(purchases: list[Activity], bins: int = 5) -> dict[UUID, RfmScore]:
    return rfm_scores(purchases, as_of=AS_OF, currency="EUR", bins=bins)


# ---------------------------------------------------------------------------- measures


def test_measures_follow_the_btyd_convention() -> None:
    result = scores(
        [
            buy(ADA, day(30), "5"),
            buy(ADA, day(30, hour=18), "7"),  # same day as the first: one period
            buy(ADA, day(10), "20"),
            buy(ADA, day(10, hour=11), "10"),  # the repeat day totals 30
            buy(ADA, day(3), "15"),
        ]
    )
    ada = result[ADA]
    assert ada.frequency == 2  # three purchase days, two of them repeats
    assert ada.recency_days == 3
    assert ada.monetary == Money("22.50", "EUR")  # (30 + 15) / 2; the first day left out
    assert ada.total == Money("57", "EUR")
    assert ada.first_purchase == day(30)
    assert ada.last_purchase == day(3)


def test_periods_are_utc_calendar_days() -> None:
    late = datetime(2026, 2, 27, 23, 30, tzinfo=UTC)
    early = datetime(2026, 2, 28, 0, 30, tzinfo=UTC)  # one hour later, but the next day
    berlin = timezone(timedelta(hours=1))
    same_utc_day = datetime(2026, 2, 28, 0, 45, tzinfo=berlin)  # 2026-02-27 23:45 UTC
    result = scores([buy(ADA, late), buy(ADA, early), buy(BOB, late), buy(BOB, same_utc_day)])
    assert result[ADA].frequency == 1
    assert result[ADA].recency_days == 1
    assert result[BOB].frequency == 0
    assert result[BOB].recency_days == 2


def test_one_day_buyers_have_frequency_and_monetary_zero() -> None:
    result = scores([buy(ADA, day(5), "80"), buy(ADA, day(5, hour=12), "20")])
    ada = result[ADA]
    assert (ada.frequency, ada.recency_days) == (0, 5)
    assert ada.monetary == Money("0.00", "EUR")
    assert ada.total == Money("100", "EUR")


def test_purchases_after_as_of_are_ignored() -> None:
    at_as_of = buy(ADA, AS_OF, "1")
    result = scores([buy(ADA, day(4), "10"), at_as_of, buy(ADA, AS_OF + timedelta(seconds=1))])
    assert result[ADA].frequency == 1
    assert result[ADA].recency_days == 0
    assert result[ADA].total == Money("11", "EUR")
    assert result[ADA].last_purchase == AS_OF
    only_later = scores([buy(BOB, AS_OF + timedelta(days=1))])
    assert only_later == {}


def test_monetary_is_rounded_half_to_even_to_the_minor_unit() -> None:
    purchases = [buy(ADA, day(9)), buy(ADA, day(6), "0.01"), buy(ADA, day(3), "0.02")]
    assert scores(purchases)[ADA].monetary == Money("0.02", "EUR")  # 0.015 -> 0.02
    thirds = [buy(BOB, day(9)), buy(BOB, day(6), "10"), buy(BOB, day(3), "10"), buy(BOB, day(1))]
    assert scores(thirds)[BOB].monetary == Money("10.00", "EUR")
    yen = rfm_scores(
        [buy(CY, day(3), 100, "JPY"), buy(CY, day(2), 101, "JPY"), buy(CY, day(1), 102, "JPY")],
        as_of=AS_OF,
        currency="jpy",
    )
    assert yen[CY].monetary == Money("102", "JPY")  # 101.5 -> 102 (half to even)


# ---------------------------------------------------------------------------- scores


def test_five_distinct_contacts_get_the_five_scores() -> None:
    purchases = []
    for rank, contact in enumerate((ADA, BOB, CY, DEE, EVE), start=1):
        # contact of rank k: last purchase 10 - k days ago, k purchase days, repeat days of k
        purchases += [buy(contact, day(60 + i), rank) for i in range(rank)]
        purchases.append(buy(contact, day(10 - rank), rank))
    result = scores(purchases)
    assert [result[c].r for c in (ADA, BOB, CY, DEE, EVE)] == [1, 2, 3, 4, 5]
    assert [result[c].f for c in (ADA, BOB, CY, DEE, EVE)] == [1, 2, 3, 4, 5]
    assert [result[c].m for c in (ADA, BOB, CY, DEE, EVE)] == [1, 2, 3, 4, 5]
    assert result[EVE].group is RfmGroup.CHAMPIONS
    assert result[ADA].group is RfmGroup.HIBERNATING
    assert list(result) == [ADA, BOB, CY, DEE, EVE]


def test_ties_share_the_score_of_their_percentile_rank() -> None:
    # recency days: ADA 1, BOB 1, CY 5, DEE 9; frequency: 0, 0, 0, 2
    purchases = [
        buy(ADA, day(1)),
        buy(BOB, day(1)),
        buy(CY, day(5)),
        buy(DEE, day(20)),
        buy(DEE, day(15)),
        buy(DEE, day(9)),
    ]
    result = scores(purchases)
    # r: DEE is worst (PR 1/8 -> 1), CY PR 3/8 -> 2, ADA and BOB tie: PR (2 + 1) / 4 -> 4
    assert [result[c].r for c in (ADA, BOB, CY, DEE)] == [4, 4, 2, 1]
    # f: three tie at 0: PR 1.5 / 4 -> 2; DEE PR 3.5 / 4 -> 5
    assert [result[c].f for c in (ADA, BOB, CY, DEE)] == [2, 2, 2, 5]
    assert [result[c].m for c in (ADA, BOB, CY, DEE)] == [2, 2, 2, 5]
    assert result[ADA].group is RfmGroup.POTENTIAL_LOYALISTS
    assert result[CY].group is RfmGroup.HIBERNATING
    assert result[DEE].group is RfmGroup.CANNOT_LOSE_THEM


def test_a_single_contact_gets_the_middle_scores() -> None:
    result = scores([buy(ADA, day(1)), buy(ADA, day(0))])
    ada = result[ADA]
    assert (ada.r, ada.f, ada.m, ada.group) == (3, 3, 3, RfmGroup.NEED_ATTENTION)
    assert scores([buy(ADA, day(1))], bins=4)[ADA].r == 2


def test_scores_with_other_bins() -> None:
    purchases = [buy(c, day(i)) for i, c in enumerate((ADA, BOB, CY, DEE))]
    two = scores(purchases, bins=2)
    assert [two[c].r for c in (ADA, BOB, CY, DEE)] == [2, 2, 1, 1]
    assert two[ADA].group is RfmGroup.POTENTIAL_LOYALISTS  # (2, 1) on 1..2 -> (4, 2)
    ten = scores(purchases, bins=10)
    assert [ten[c].r for c in (ADA, BOB, CY, DEE)] == [9, 7, 4, 2]


def test_scores_do_not_depend_on_input_order() -> None:
    purchases = [buy(c, day(3 * i + j)) for i, c in enumerate((ADA, BOB, CY)) for j in range(i + 1)]
    assert scores(purchases) == scores(purchases[::-1])


def test_no_purchases_no_scores() -> None:
    assert scores([]) == {}
    assert rfm_scores(iter(()), as_of=AS_OF, currency="EUR") == {}


# ---------------------------------------------------------------------------- groups


# The documented segment map, R score down the rows (5 first), F score across (1 to 5).
SEGMENT_MAP = """
new_customers potential_loyalists potential_loyalists champions champions
promising potential_loyalists potential_loyalists loyal loyal
about_to_sleep about_to_sleep need_attention loyal loyal
hibernating hibernating at_risk at_risk cannot_lose_them
hibernating hibernating at_risk at_risk cannot_lose_them
"""


def test_the_segment_map_names_every_cell() -> None:
    rows = [line.split() for line in SEGMENT_MAP.strip().splitlines()]
    for r, row in zip(range(5, 0, -1), rows, strict=True):
        for f, group in enumerate(row, start=1):
            assert rfm_group(r, f) == group, (r, f)
    assert {g for row in rows for g in row} == {g.value for g in RfmGroup}


@pytest.mark.parametrize(
    ("r", "f", "group"),
    [
        (1, 1, "hibernating"),
        (2, 2, "hibernating"),
        (1, 3, "at_risk"),
        (2, 4, "at_risk"),
        (2, 5, "cannot_lose_them"),
        (3, 2, "about_to_sleep"),
        (3, 3, "need_attention"),
        (3, 5, "loyal"),
        (4, 4, "loyal"),
        (4, 1, "promising"),
        (5, 1, "new_customers"),
        (4, 3, "potential_loyalists"),
        (5, 2, "potential_loyalists"),
        (5, 4, "champions"),
        (5, 5, "champions"),
    ],
)
def test_named_groups_of_the_segment_map(r: int, f: int, group: str) -> None:
    assert rfm_group(r, f) == group


@pytest.mark.parametrize(
    ("bins", "scores_to_quintiles"),
    [
        (2, [2, 4]),
        (3, [1, 3, 5]),
        (4, [1, 2, 4, 5]),
        (10, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
    ],
)
def test_other_bins_are_rescaled_to_quintiles(bins: int, scores_to_quintiles: list[int]) -> None:
    for s, q in enumerate(scores_to_quintiles, start=1):
        assert rfm_group(s, s, bins=bins) is rfm_group(q, q)
        assert rfm_group(s, 1, bins=bins) is rfm_group(q, scores_to_quintiles[0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bins", [1, 0, -3, True, 2.5, "5"])
def test_bins_below_two_or_not_an_integer_are_rejected(bins: object) -> None:
    with pytest.raises(ValidationError) as caught:
        rfm_scores([], as_of=AS_OF, currency="EUR", bins=bins)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("bins", bins)


def test_naive_as_of_is_rejected() -> None:
    naive = datetime(2026, 3, 1)
    with pytest.raises(ValidationError) as caught:
        rfm_scores([], as_of=naive, currency="EUR")
    assert (caught.value.field, caught.value.value) == ("as_of", naive)


def test_as_of_in_another_zone_is_read_as_its_utc_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    as_of = datetime(2026, 3, 1, 2, 0, tzinfo=tokyo)  # 2026-02-28 17:00 UTC
    result = rfm_scores([buy(ADA, day(1))], as_of=as_of, currency="EUR")
    assert result[ADA].recency_days == 0


def test_unknown_currency_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        rfm_scores([], as_of=AS_OF, currency="EURO")
    assert (caught.value.field, caught.value.value) == ("currency", "EURO")


def test_a_purchase_in_another_currency_is_rejected() -> None:
    purchases = [buy(ADA, day(2)), buy(BOB, day(1), currency="USD")]
    with pytest.raises(CurrencyMismatch) as caught:
        scores(purchases)
    assert (caught.value.field, caught.value.value) == ("purchases[1].amount.currency", "USD")


def test_a_non_purchase_activity_is_rejected() -> None:
    purchases = [buy(ADA, day(2)), buy(ADA, day(1), kind=ActivityKind.PAGE_VIEW)]
    with pytest.raises(ValidationError) as caught:
        scores(purchases)
    assert (caught.value.field, caught.value.value) == ("purchases[1].kind", "page_view")


def test_a_purchase_without_amount_or_a_non_activity_is_rejected() -> None:
    free = Activity.new(contact_id=ADA, kind=ActivityKind.PURCHASE, occurred_at=day(1), clock=CLOCK)
    with pytest.raises(ValidationError) as caught:
        scores([free])
    assert (caught.value.field, caught.value.value) == ("purchases[0].amount", None)
    with pytest.raises(ValidationError) as caught:
        scores(["purchase"])  # type: ignore[list-item]
    assert (caught.value.field, caught.value.value) == ("purchases[0]", "purchase")


@pytest.mark.parametrize(("r", "f"), [(0, 1), (1, 6), (True, 1), (3, 2.0)])
def test_rfm_group_rejects_scores_outside_the_bins(r: object, f: object) -> None:
    with pytest.raises(ValidationError) as caught:
        rfm_group(r, f)  # type: ignore[arg-type]
    assert caught.value.field in {"r", "f"}


# ---------------------------------------------------------------------------- properties

CONTACTS = [UUID(int=i) for i in range(1, 9)]
purchase_rows = st.lists(
    st.tuples(
        st.sampled_from(CONTACTS),
        st.integers(min_value=-3, max_value=90),  # days before AS_OF; negative: after it
        st.integers(min_value=0, max_value=23),
        st.integers(min_value=0, max_value=50_000),  # cents
    ),
    max_size=40,
)


def build(rows: list[tuple[UUID, int, int, int]]) -> list[Activity]:
    return [buy(c, day(d, hour), Decimal(cents).scaleb(-2)) for c, d, hour, cents in rows]


@given(purchase_rows, st.integers(min_value=2, max_value=10))
def test_scores_lie_within_the_bins(rows: list[tuple[UUID, int, int, int]], bins: int) -> None:
    result = scores(build(rows), bins=bins)
    assert set(result) == {c for c, d, hour, _ in rows if day(d, hour) <= AS_OF}
    for score in result.values():
        assert 1 <= score.r <= bins
        assert 1 <= score.f <= bins
        assert 1 <= score.m <= bins
        assert score.group is rfm_group(score.r, score.f, bins=bins)
        assert score.recency_days >= 0
        assert score.first_purchase <= score.last_purchase <= AS_OF


@given(purchase_rows, st.integers(min_value=2, max_value=10))
def test_scores_are_monotone_in_the_measures(
    rows: list[tuple[UUID, int, int, int]], bins: int
) -> None:
    result = list(scores(build(rows), bins=bins).values())
    for a in result:
        for b in result:
            if a.frequency > b.frequency:
                assert a.f >= b.f
            if a.recency_days < b.recency_days:
                assert a.r >= b.r
            if a.monetary > b.monetary:
                assert a.m >= b.m
            if a.frequency == b.frequency:
                assert a.f == b.f


@given(purchase_rows)
def test_frequency_counts_repeat_days_and_totals_add_up(
    rows: list[tuple[UUID, int, int, int]],
) -> None:
    result = scores(build(rows))
    for contact, score in result.items():
        kept = [(d, cents) for c, d, hour, cents in rows if c == contact and day(d, hour) <= AS_OF]
        assert score.frequency == len({d for d, _ in kept}) - 1
        assert score.recency_days == min(d for d, _ in kept)
        assert score.total.amount == Decimal(sum(cents for _, cents in kept)).scaleb(-2)


def to_quintile(score: int, bins: int) -> int:
    """The documented rescaling of a score out of ``bins`` to 1..5."""
    return math.ceil(5 * (2 * score - 1) / (2 * bins))


@given(st.integers(min_value=2, max_value=40), st.data())
def test_rescaling_to_quintiles_is_monotone_and_symmetric(bins: int, data: st.DataObject) -> None:
    score = data.draw(st.integers(min_value=1, max_value=bins))
    q = to_quintile(score, bins)
    assert 1 <= q <= 5
    assert to_quintile(bins + 1 - score, bins) == 6 - q  # the best and the worst mirror
    if score < bins:
        assert to_quintile(score + 1, bins) >= q
    r, f = data.draw(st.integers(1, bins)), data.draw(st.integers(1, bins))
    assert rfm_group(r, f, bins=bins) is rfm_group(to_quintile(r, bins), to_quintile(f, bins))
