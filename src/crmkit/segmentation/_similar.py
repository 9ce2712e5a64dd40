"""Similar customers: contacts whose purchase history resembles a contact's or a segment's.

For upsell lists ("customers like these also bought ..."), each contact's purchase
history is reduced to the **set of products** it bought: the value of
``properties[product_key]`` (default ``"product"``) of its purchase activities.
Purchases without that property, or with ``None`` there, are skipped; a product is named
by a string or an integer (``1`` and ``"1"`` are different products). How often a
contact bought a product does not count, only whether it did.

Two measures, :class:`Similarity`:

* **Jaccard**: ``|A & B| / |A | B|``, shared products over all products of the two.
* **Cosine**: the cosine of the angle between product vectors,
  ``a . b / (|a| |b|)``. A contact's vector has a 1 for each product it bought (so for
  two contacts this is ``|A & B| / sqrt(|A| |B|)``, the Ochiai coefficient).

The **target** is a contact or a set of contacts (a segment). Its profile is, for
Jaccard, the union of the targets' product sets; for cosine, the sum of their product
vectors, so that each product counts as many times as there are targets that bought it
(products popular in the segment weigh more). With one target both reduce to the
contact's own product set.

Scores lie in ``[0, 1]``; identical product sets score 1. Contacts with a score of 0
(nothing in common with the target) are left out, and the targets themselves are never
returned.
"""

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from enum import StrEnum
from fractions import Fraction
from typing import Final, TypeAlias
from uuid import UUID

import attrs

from crmkit.errors import ValidationError
from crmkit.models import Activity, ActivityKind

__all__ = ["SimilarContact", "Similarity", "similar_contacts"]

_Product: TypeAlias = str | int
"""A product as named in a purchase's properties: a string or an integer."""

_KEY: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")


class Similarity(StrEnum):
    """How two purchase histories are compared (module documentation)."""

    JACCARD = "jaccard"
    COSINE = "cosine"


@attrs.frozen(kw_only=True)
class SimilarContact:
    """A contact similar to the target, with its ``score`` in ``(0, 1]``."""

    contact_id: UUID
    score: float


def similar_contacts(
    purchases: Iterable[Activity],
    *,
    to: UUID | Iterable[UUID],
    k: int = 10,
    metric: Similarity = Similarity.JACCARD,
    product_key: str = "product",
) -> list[SimilarContact]:
    """The ``k`` contacts whose product sets are most similar to those of ``to``.

    ``purchases`` are activities of kind ``purchase`` (any other kind is rejected with
    :class:`~crmkit.errors.ValidationError` naming ``purchases[i].kind``); ``to`` is one
    contact id or a collection of them (a segment). The result is ordered by score,
    highest first, then by contact id, holds at most ``k`` contacts, none of the targets
    and none with a score of 0. Targets without purchases (or an empty collection of
    targets) have nothing to compare with: the result is empty.

    >>> from datetime import UTC, datetime
    >>> from uuid import UUID
    >>> from crmkit.clock import FixedClock
    >>> clock = FixedClock(datetime(2026, 3, 1, tzinfo=UTC))
    >>> ada, bob, cy, dee = (UUID(int=i) for i in range(1, 5))
    >>> def buy(who, product):
    ...     return Activity.new(contact_id=who, kind=ActivityKind.PURCHASE, clock=clock,
    ...                         properties={"product": product})
    >>> history = [buy(ada, "tea"), buy(ada, "mug"), buy(bob, "tea"), buy(bob, "mug"),
    ...            buy(bob, "pot"), buy(cy, "tea"), buy(dee, "coffee")]
    >>> [(s.contact_id.int, round(s.score, 3)) for s in similar_contacts(history, to=ada)]
    [(2, 0.667), (3, 0.5)]
    >>> [(s.contact_id.int, round(s.score, 3))
    ...  for s in similar_contacts(history, to=ada, metric=Similarity.COSINE)]
    [(2, 0.816), (3, 0.707)]
    """
    metric = _check_metric(metric)
    _check_k(k)
    _check_product_key(product_key)
    targets = _targets(to)
    products = _product_sets(purchases, product_key)
    if not targets or k == 0:
        return []

    profile: Counter[_Product] = Counter()
    for target in targets:
        profile.update(products.get(target, frozenset()))
    if not profile:
        return []

    # Ranked by an exact key (a fraction), so that equal similarities tie exactly and are
    # ordered by contact id, whatever the float rounding of the reported score.
    exact = _jaccard if metric is Similarity.JACCARD else _cosine_squared
    ranked = [
        (key, contact)
        for contact, bought in products.items()
        if contact not in targets and (key := exact(profile, bought)) > 0
    ]
    ranked.sort(key=lambda pair: (-pair[0], pair[1].int))
    as_float = float if metric is Similarity.JACCARD else _root
    return [SimilarContact(contact_id=c, score=as_float(key)) for key, c in ranked[:k]]


def _jaccard(profile: Mapping[_Product, int], bought: Set[_Product]) -> Fraction:
    shared = sum(1 for product in bought if product in profile)
    return Fraction(shared, len(profile) + len(bought) - shared)


def _cosine_squared(profile: Mapping[_Product, int], bought: Set[_Product]) -> Fraction:
    """The square of the cosine (exact; it orders like the cosine, which is never negative)."""
    dot = sum(profile.get(product, 0) for product in bought)
    norms = sum(count * count for count in profile.values()) * len(bought)
    return Fraction(dot * dot, norms)


def _root(square: Fraction) -> float:
    return min(1.0, math.sqrt(square))


def _product_sets(purchases: object, product_key: str) -> dict[UUID, frozenset[_Product]]:
    if isinstance(purchases, str | bytes) or not isinstance(purchases, Iterable):
        raise ValidationError("purchases", purchases, "expected a collection of activities")
    sets: dict[UUID, set[_Product]] = {}
    for index, item in enumerate(purchases):
        where = f"purchases[{index}]"
        if not isinstance(item, Activity):
            raise ValidationError(where, item, "expected an Activity")
        if item.kind is not ActivityKind.PURCHASE:
            raise ValidationError(f"{where}.kind", item.kind, "expected a purchase activity")
        product = item.properties.get(product_key)
        if product is None:
            continue
        if isinstance(product, bool) or not isinstance(product, str | int):
            raise ValidationError(
                f"{where}.properties.{product_key}",
                product,
                "a product is named by a string or an integer",
            )
        sets.setdefault(item.contact_id, set()).add(product)
    return {contact: frozenset(bought) for contact, bought in sets.items()}


def _targets(to: object) -> frozenset[UUID]:
    if isinstance(to, UUID):
        return frozenset((to,))
    if isinstance(to, str | bytes) or not isinstance(to, Iterable):
        raise ValidationError("to", to, "expected a contact id (UUID) or a collection of them")
    targets: set[UUID] = set()
    for index, item in enumerate(to):
        if not isinstance(item, UUID):
            raise ValidationError(f"to[{index}]", item, "expected a contact id (UUID)")
        targets.add(item)
    return frozenset(targets)


def _check_metric(metric: str) -> Similarity:
    try:
        return Similarity(metric)
    except ValueError:
        names = ", ".join(m.value for m in Similarity)
        raise ValidationError("metric", metric, f"expected one of {names}") from None


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValidationError("k", k, "the number of contacts is an integer of at least 0")


def _check_product_key(product_key: object) -> None:
    if not isinstance(product_key, str) or not _KEY.fullmatch(product_key):
        raise ValidationError(
            "product_key",
            product_key,
            "a property name is a lower-case identifier: [a-z][a-z0-9_]*, at most 63 characters",
        )
