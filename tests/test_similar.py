"""Similar customers by product sets: Jaccard and cosine, one contact or a segment."""

import math
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmkit.clock import FixedClock
from crmkit.errors import ValidationError
from crmkit.models import Activity, ActivityKind, JSONScalar, Money
from crmkit.segmentation import SimilarContact, Similarity, similar_contacts

CLOCK = FixedClock(datetime(2026, 3, 1, tzinfo=UTC))
ADA, BOB, CY, DEE, EVE, FAY = (UUID(int=i) for i in range(1, 7))


def buy(
    contact: UUID,
    product: JSONScalar,
    key: str = "product",
    kind: ActivityKind = ActivityKind.PURCHASE,
) -> Activity:
    return Activity.new(contact_id=contact, kind=kind, properties={key: product}, clock=CLOCK)


def history(**bought: list[JSONScalar]) -> list[Activity]:
    names = {"ada": ADA, "bob": BOB, "cy": CY, "dee": DEE, "eve": EVE, "fay": FAY}
    return [buy(names[who], product) for who, products in bought.items() for product in products]


SHOP = history(
    ada=["tea", "mug", "pot"],
    bob=["tea", "mug", "pot"],  # identical to ada
    cy=["tea", "mug", "cake", "cake"],  # bought cake twice: counts once
    dee=["coffee"],  # nothing in common with ada
    eve=["tea"],
)


def pairs(found: list[SimilarContact]) -> list[tuple[UUID, float]]:
    return [(s.contact_id, s.score) for s in found]


def test_jaccard_by_hand() -> None:
    found = similar_contacts(SHOP, to=ADA)
    # bob 3/3; cy {tea, mug} / {tea, mug, pot, cake} = 2/4; eve 1/3; dee 0 (left out)
    assert pairs(found) == [(BOB, 1.0), (CY, 0.5), (EVE, pytest.approx(1 / 3))]


def test_cosine_by_hand() -> None:
    found = similar_contacts(SHOP, to=ADA, metric=Similarity.COSINE)
    # bob 3/sqrt(3*3); cy 2/sqrt(3*3); eve 1/sqrt(3*1)
    assert pairs(found) == [
        (BOB, 1.0),
        (CY, pytest.approx(2 / 3)),
        (EVE, pytest.approx(1 / math.sqrt(3))),
    ]


def test_a_segment_profile_is_the_union_for_jaccard_and_the_sum_for_cosine() -> None:
    purchases = history(
        ada=["tea", "mug"],
        bob=["tea", "cake"],
        cy=["tea"],
        dee=["cake"],
        eve=["tea", "mug", "cake"],
    )
    jaccard = similar_contacts(purchases, to=[ADA, BOB])
    # union {tea, mug, cake}: eve 3/3, cy 1/3, dee 1/3 (tie: by contact id)
    assert pairs(jaccard) == [(EVE, 1.0), (CY, pytest.approx(1 / 3)), (DEE, pytest.approx(1 / 3))]
    cosine = similar_contacts(purchases, to={ADA, BOB}, metric="cosine")  # type: ignore[arg-type]
    # profile tea 2, mug 1, cake 1 (|p| = sqrt(6)): eve 4/sqrt(6*3), cy 2/sqrt(6), dee 1/sqrt(6)
    assert [s.contact_id for s in cosine] == [EVE, CY, DEE]
    assert [s.score for s in cosine] == pytest.approx(
        [4 / math.sqrt(18), 2 / math.sqrt(6), 1 / math.sqrt(6)]
    )


def test_top_k_and_ties_by_contact_id() -> None:
    purchases = history(ada=["x"], fay=["x"], eve=["x"], dee=["x"], cy=["x", "y"])
    assert [s.contact_id for s in similar_contacts(purchases, to=ADA, k=2)] == [DEE, EVE]
    assert [s.contact_id for s in similar_contacts(purchases, to=ADA)] == [DEE, EVE, FAY, CY]
    assert similar_contacts(purchases, to=ADA, k=0) == []


def test_purchases_without_the_product_key_are_skipped() -> None:
    purchases = [
        buy(ADA, "tea"),
        buy(ADA, "cake", key="item"),
        buy(BOB, "tea"),
        buy(BOB, None),
        buy(CY, "cake", key="item"),
    ]
    assert pairs(similar_contacts(purchases, to=ADA)) == [(BOB, 1.0)]
    assert pairs(similar_contacts(purchases, to=ADA, product_key="item")) == [(CY, 1.0)]


def test_integer_and_string_products_differ() -> None:
    purchases = [buy(ADA, 1), buy(BOB, "1"), buy(CY, 1)]
    assert pairs(similar_contacts(purchases, to=ADA)) == [(CY, 1.0)]


def test_targets_without_history_find_nobody() -> None:
    assert similar_contacts(SHOP, to=FAY) == []
    assert similar_contacts(SHOP, to=[]) == []
    assert similar_contacts([], to=ADA) == []


def test_every_target_is_left_out() -> None:
    found = similar_contacts(SHOP, to=iter([ADA, BOB, ADA]))
    assert [s.contact_id for s in found] == [CY, EVE]


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("k", [-1, True, 1.5])
def test_negative_or_non_integer_k_is_rejected(k: object) -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts(SHOP, to=ADA, k=k)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("k", k)


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts(SHOP, to=ADA, metric="euclid")  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("metric", "euclid")


@pytest.mark.parametrize("key", ["", "Product", "1st", 7])
def test_invalid_product_key_is_rejected(key: object) -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts(SHOP, to=ADA, product_key=key)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == ("product_key", key)


@pytest.mark.parametrize(
    ("to", "field", "value"),
    [(str(ADA), "to", str(ADA)), ([ADA, 7], "to[1]", 7), (None, "to", None)],
)
def test_targets_that_are_not_contact_ids_are_rejected(
    to: object, field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts(SHOP, to=to)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.value) == (field, value)


def test_non_purchase_activities_are_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts(
            [buy(ADA, "tea"), buy(BOB, "/pricing", kind=ActivityKind.PAGE_VIEW)], to=ADA
        )
    assert (caught.value.field, caught.value.value) == ("purchases[1].kind", "page_view")


@pytest.mark.parametrize("product", [True, 1.5])
def test_products_that_are_not_strings_or_integers_are_rejected(product: JSONScalar) -> None:
    with pytest.raises(ValidationError) as caught:
        similar_contacts([buy(ADA, product)], to=ADA)
    assert (caught.value.field, caught.value.value) == ("purchases[0].properties.product", product)


# ---------------------------------------------------------------------------- properties

CONTACTS = [UUID(int=i) for i in range(1, 9)]
rows = st.lists(
    st.tuples(st.sampled_from(CONTACTS), st.sampled_from(["a", "b", "c", "d", "e", 1, 2])),
    max_size=40,
)
metrics = st.sampled_from(list(Similarity))


@given(
    rows,
    st.sets(st.sampled_from(CONTACTS), max_size=3),
    st.integers(min_value=0, max_value=10),
    metrics,
)
def test_results_are_sorted_bounded_and_never_hold_targets(
    rows: list[tuple[UUID, str | int]], targets: set[UUID], k: int, metric: Similarity
) -> None:
    found = similar_contacts([buy(c, p) for c, p in rows], to=targets, k=k, metric=metric)
    assert len(found) <= k
    assert all(0 < s.score <= 1 for s in found)
    assert not {s.contact_id for s in found} & targets
    assert len({s.contact_id for s in found}) == len(found)
    keys = [(-s.score, s.contact_id.int) for s in found]
    assert keys == sorted(keys)


@given(rows, st.sampled_from(CONTACTS), metrics)
def test_identical_product_sets_score_one(
    rows: list[tuple[UUID, str | int]], target: UUID, metric: Similarity
) -> None:
    twin = UUID(int=99)
    purchases = [buy(c, p) for c, p in rows]
    copied = [buy(twin, p) for c, p in rows if c == target]
    found = similar_contacts(purchases + copied, to=target, k=20, metric=metric)
    if copied:
        assert (twin, 1.0) in pairs(found)
        assert found[0].score == 1.0
    else:
        assert found == []


@given(rows, st.sampled_from(CONTACTS), metrics)
def test_similarity_of_two_contacts_is_symmetric(
    rows: list[tuple[UUID, str | int]], target: UUID, metric: Similarity
) -> None:
    purchases = [buy(c, p) for c, p in rows]
    for found in similar_contacts(purchases, to=target, k=20, metric=metric):
        back = similar_contacts(purchases, to=found.contact_id, k=20, metric=metric)
        assert dict(pairs(back))[target] == pytest.approx(found.score)


def test_equal_cosine_scores_tie_exactly_and_order_by_contact_id() -> None:
    target, low_id, high_id = UUID(int=1), UUID(int=2), UUID(int=3)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def bought(who: UUID, product: str) -> Activity:
        return Activity.new(
            contact_id=who,
            kind=ActivityKind.PURCHASE,
            occurred_at=at,
            amount=Money("1", "EUR"),
            properties={"product": product},
        )

    # 3 shared of 9 products (3/sqrt(27)) and 1 shared of 1 (1/sqrt(3)): the same cosine,
    # which floating point computes as two different numbers.
    purchases = [bought(target, p) for p in ("a", "b", "c")]
    purchases += [bought(low_id, p) for p in "abcdefghi"]
    purchases += [bought(high_id, "a")]
    found = similar_contacts(purchases, to=target, metric=Similarity.COSINE)
    assert [s.contact_id for s in found] == [low_id, high_id]
    assert found[0].score == found[1].score == pytest.approx(1 / math.sqrt(3))
