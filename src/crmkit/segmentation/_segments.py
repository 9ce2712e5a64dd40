"""Segments: who is in them, how many, and how two segments overlap."""

from collections.abc import Iterable, Mapping
from typing import Final, TypeVar
from uuid import UUID

import attrs

from crmkit.errors import InvalidRule, ValidationError, short_repr
from crmkit.models import Contact, Deal, Lead, Segment, Ticket
from crmkit.models._fields import expect, expect_items
from crmkit.models.rules import MAX_SEGMENT_DEPTH, InSegment, Rule, RuleEntity
from crmkit.segmentation._compile import compile_selector
from crmkit.segmentation._semantics import Context

__all__ = ["Overlap", "check_segments", "members", "overlap", "segment_size", "select"]

_E = TypeVar("_E")


_ENTITY_TYPES: Final[Mapping[RuleEntity, type]] = {
    RuleEntity.CONTACT: Contact,
    RuleEntity.LEAD: Lead,
    RuleEntity.DEAL: Deal,
    RuleEntity.TICKET: Ticket,
}


def select(rule: Rule, entities: Iterable[_E], context: Context) -> list[_E]:
    """The entities for which ``rule`` is TRUE, in their order (the rule compiled once).

    Raises :class:`~crmkit.errors.ValidationError` when the entities are not of the kind
    the rule selects (a deal rule over contacts), naming the first such ``entities[i]``.
    """
    expect(rule, Rule, "rule", "a Rule")
    expect(context, Context, "context", "a Context")
    expected = _ENTITY_TYPES[rule.entity]
    items = expect_items(entities, object, "entities", f"{expected.__name__} objects")
    for index, item in enumerate(items):
        if not isinstance(item, expected):
            raise ValidationError(
                f"entities[{index}]",
                item,
                f"a {rule.entity} rule selects {expected.__name__} objects",
            )
    return compile_selector(rule, context)(items)


def members(segment: Segment, contacts: Iterable[Contact], context: Context) -> list[Contact]:
    """The contacts of ``contacts`` that belong to ``segment``.

    A dynamic segment re-evaluates its rule (as of ``context.now``); a static segment
    keeps the contacts on its member list.
    """
    expect(segment, Segment, "segment", "a Segment")
    expect(context, Context, "context", "a Context")
    if segment.rule is None:
        found = expect_items(contacts, Contact, "contacts", "Contact")
        return [c for c in found if c.id in segment.members]
    catalogue = {**context.segments, segment.id: segment}
    return select(segment.rule, contacts, attrs.evolve(context, segments=catalogue))


def segment_size(segment: Segment, contacts: Iterable[Contact], context: Context) -> int:
    """The number of contacts of ``contacts`` in ``segment``."""
    expect(segment, Segment, "segment", "a Segment")
    expect(context, Context, "context", "a Context")
    return len(members(segment, contacts, context))


@attrs.frozen
class Overlap:
    """How two segments share contacts."""

    only_a: int
    only_b: int
    both: int

    @property
    def union(self) -> int:
        return self.only_a + self.only_b + self.both

    @property
    def jaccard(self) -> float:
        """Shared contacts over all contacts of either segment (0.0 when both are empty)."""
        return self.both / self.union if self.union else 0.0


def overlap(a: Segment, b: Segment, contacts: Iterable[Contact], context: Context) -> Overlap:
    """Counts of contacts in ``a`` only, ``b`` only and both."""
    expect(a, Segment, "a", "a Segment")
    expect(b, Segment, "b", "a Segment")
    expect(context, Context, "context", "a Context")
    pool = list(contacts)
    in_a = {c.id for c in members(a, pool, context)}
    in_b = {c.id for c in members(b, pool, context)}
    return Overlap(len(in_a - in_b), len(in_b - in_a), len(in_a & in_b))


def check_segments(segments: Mapping[UUID, Segment]) -> None:
    """Raise :class:`~crmkit.errors.InvalidRule` if segment rules name a missing segment,
    refer to each other in a cycle (``A`` is "in segment ``B``", ``B`` "in ``A``") or nest
    more than :data:`~crmkit.models.rules.MAX_SEGMENT_DEPTH` segments deep."""
    if not isinstance(segments, Mapping):
        raise ValidationError("segments", segments, "expected a mapping of ids to Segments")
    for key, value in segments.items():
        expect(value, Segment, f"segments[{short_repr(key)}]", "a Segment")
    heights: dict[UUID, int] = {}

    def height(segment_id: UUID, path: tuple[UUID, ...]) -> int:
        """How many segments deep a rule naming ``segment_id`` nests (1: no others)."""
        if segment_id in path:
            raise InvalidRule("segment_id", segment_id, "segment rules refer to each other")
        known = heights.get(segment_id)
        if known is not None:
            return known
        chain = (*path, segment_id)
        if len(chain) > MAX_SEGMENT_DEPTH:
            names = " > ".join(map(str, chain))
            reason = f"segments nest deeper than {MAX_SEGMENT_DEPTH} (MAX_SEGMENT_DEPTH): {names}"
            raise InvalidRule("segment_id", segment_id, reason)
        segment = segments.get(segment_id)
        if segment is None:
            raise InvalidRule("segment_id", segment_id, "no such segment")
        below = [
            height(node.segment_id, chain)
            for node in (segment.rule.walk() if segment.rule is not None else ())
            if isinstance(node, InSegment)
        ]
        found = heights[segment_id] = 1 + max(below, default=0)
        if found > MAX_SEGMENT_DEPTH:
            reason = (
                f"segments nest deeper than {MAX_SEGMENT_DEPTH} (MAX_SEGMENT_DEPTH) "
                f"below {segment_id}"
            )
            raise InvalidRule("segment_id", segment_id, reason)
        return found

    for segment_id in segments:
        height(segment_id, ())
