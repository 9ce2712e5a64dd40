"""Clusters: duplicate pairs joined transitively, with a size cap and a report of chains."""

from collections.abc import Iterable
from typing import Any

import attrs

from crmkit.errors import ValidationError
from crmkit.quality._match import DuplicatePair, Verdict

__all__ = ["Cluster", "clusters"]


@attrs.frozen
class Cluster:
    """Records that duplicate pairs join, directly or through others.

    ``chained`` lists the member pairs that no duplicate pair joins directly (A-B and
    B-C are duplicates, A-C is not): a person should look at those before a merge.
    ``too_large`` is set when the cluster has more members than the cap, which usually
    means a blocking key or a threshold is too loose; such a cluster is reported, not
    to be merged blindly.
    """

    members: tuple[Any, ...]
    pairs: tuple[DuplicatePair, ...]
    chained: tuple[tuple[Any, Any], ...]
    too_large: bool


def clusters(pairs: Iterable[DuplicatePair], *, max_size: int = 10) -> list[Cluster]:
    """Join the pairs whose verdict is "duplicate" into clusters, largest first.

    >>> from crmkit.quality import Contribution, DuplicatePair, Verdict
    >>> p = lambda a, b: DuplicatePair(a, b, 9.0, 0.998, Verdict.DUPLICATE, ())
    >>> [c.chained for c in clusters([p(1, 2), p(2, 3)])]
    [((1, 3),)]
    """
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2:
        raise ValidationError("max_size", max_size, "expected a whole number of 2 or more")
    parent: dict[Any, Any] = {}

    def root(x: Any) -> Any:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    given: object = pairs
    if isinstance(given, str | bytes) or not isinstance(given, Iterable):
        raise ValidationError("pairs", pairs, "expected a collection of duplicate pairs")
    listed: list[object] = list(given)
    for index, pair in enumerate(listed):
        if not isinstance(pair, DuplicatePair):
            raise ValidationError(f"pairs[{index}]", pair, "expected a DuplicatePair")
    kept = [p for p in listed if isinstance(p, DuplicatePair) and p.verdict is Verdict.DUPLICATE]
    for pair in kept:
        a, b = root(pair.left), root(pair.right)
        if a != b:
            parent[max(a, b, key=str)] = min(a, b, key=str)
    groups: dict[Any, list[DuplicatePair]] = {}
    for pair in kept:
        groups.setdefault(root(pair.left), []).append(pair)
    found = []
    for group in groups.values():
        members = sorted({x for p in group for x in (p.left, p.right)}, key=str)
        direct = {frozenset((p.left, p.right)) for p in group}
        chained = tuple(
            (a, b)
            for i, a in enumerate(members)
            for b in members[i + 1 :]
            if frozenset((a, b)) not in direct
        )
        found.append(Cluster(tuple(members), tuple(group), chained, len(members) > max_size))
    found.sort(key=lambda c: (-len(c.members), str(c.members[0])))
    return found
