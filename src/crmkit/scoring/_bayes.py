"""Naive Bayes scoring in the spirit of Odoo's predictive lead scoring.

For every feature value the model counts how many won and how many lost examples had
it. A record's log-odds of winning is the prior log-odds plus, for every feature, the
log of ``P(value | won) / P(value | lost)`` with Laplace smoothing
(``(count + alpha) / (examples with the feature + alpha * number of values)``). Missing
values and values never seen in training are ignored, as in Odoo. Numbers with more
distinct values than ``bins`` are cut into quantile bins first; true/false and text are
categories.

The stage counts as "reached at least this stage": with ``stage_field`` and
``stage_order`` (the ordered stage keys), an example in stage ``s`` counts for ``s`` and
every earlier stage, so a lead lost in "proposal" also counts as having reached
"qualified".

What Odoo gets wrong and this model does not:

* Odoo writes a lead's probability *before* the frequency tables include the lead's own
  outcome, so stored probabilities lag the tables. Here a model is a pure function of
  the examples it was fitted on: fit, then predict, nothing is stale.
* Odoo combines team-specific frequencies with priors counted over another team. Here,
  with ``team_field``, both the priors and the frequencies of a record come from the
  examples of its own team; a team without examples falls back to all examples, priors
  and frequencies together.
"""

import bisect
import math
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from crmkit.errors import Problem, ValidationError
from crmkit.models._fields import finite
from crmkit.models._shape import shape_problems, to_tuple
from crmkit.scoring._data import (
    BOOL,
    NUMBER,
    TEXT,
    Example,
    FeatureValue,
    Record,
    check_record,
    checked_examples,
    field_kinds,
    kind_of,
)
from crmkit.scoring._explain import Explanation, FeatureContribution, explanation, sigmoid

__all__ = ["FieldCounts", "LevelCounts", "NaiveBayesScorer", "NumericBins", "TeamCounts"]

_ALL: Final = ""


@attrs.frozen
class LevelCounts:
    """How many won and lost examples had one value (or reached one stage)."""

    level: str
    won: int
    lost: int


@attrs.frozen
class FieldCounts:
    """The counts of every value of one feature, of ``kind`` ``"number"``, ``"bool"`` or
    ``"text"`` (``None``: not recorded, values of any type are looked up)."""

    name: str
    levels: tuple[LevelCounts, ...]
    kind: str | None = None


@attrs.frozen
class TeamCounts:
    """Priors and frequencies of one team (``team == ""``: all examples)."""

    team: str
    won: int
    lost: int
    fields: tuple[FieldCounts, ...]


@attrs.frozen
class NumericBins:
    """Quantile bin edges of a number feature: bin ``i`` is ``[edges[i-1], edges[i])``."""

    name: str
    edges: tuple[float, ...]


def _level(value: FeatureValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _bin_label(edges: Sequence[float], value: float) -> str:
    index = bisect.bisect_right(edges, value)
    low = f"{edges[index - 1]:g}" if index else "-inf"
    high = f"{edges[index]:g}" if index < len(edges) else "inf"
    return f"[{low}, {high})"


def _check_count(name: str, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@attrs.frozen
class NaiveBayesScorer:
    """A fitted naive Bayes scorer over plain records; see the module doc.

    Build it with :meth:`fit`; ``teams[0]`` holds the counts over all examples.
    """

    alpha: float
    teams: tuple[TeamCounts, ...] = attrs.field(converter=to_tuple)
    bins: tuple[NumericBins, ...] = attrs.field(default=(), converter=to_tuple)
    team_field: str | None = None
    stage_field: str | None = None
    stage_order: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)

    def __attrs_post_init__(self) -> None:
        problems = shape_problems(self)
        if problems:  # the checks below need the types right
            raise ValidationError.of(problems)
        if not isinstance(self.alpha, float | int) or not finite(self.alpha) or self.alpha <= 0:
            problems.append(Problem("alpha", self.alpha, "expected a positive finite number"))
        if not self.teams or self.teams[0].team != _ALL:
            problems.append(Problem("teams", self.teams, "the first counts are of all examples"))
        for i, team in enumerate(self.teams):
            if not (_check_count("won", team.won) and _check_count("lost", team.lost)):
                problems.append(Problem(f"teams[{i}]", team, "counts are ints >= 0"))
            for j, counts in enumerate(team.fields):
                for k, level in enumerate(counts.levels):
                    if not (_check_count("", level.won) and _check_count("", level.lost)):
                        where = f"teams[{i}].fields[{j}].levels[{k}]"
                        problems.append(Problem(where, level, "counts are ints >= 0"))
        if (self.stage_field is None) != (not self.stage_order):
            problems.append(
                Problem("stage_order", self.stage_order, "given exactly with stage_field")
            )
        if len(set(self.stage_order)) != len(self.stage_order):
            problems.append(Problem("stage_order", self.stage_order, "a stage appears twice"))
        if problems:
            raise ValidationError.of(problems)
        tables = {
            team.team: {
                f.name: {lv.level: (lv.won, lv.lost) for lv in f.levels} for f in team.fields
            }
            for team in self.teams
        }
        object.__setattr__(self, "_tables", tables)
        kinds = {f.name: f.kind for team in self.teams for f in team.fields if f.kind}
        object.__setattr__(self, "_kinds", kinds)
        object.__setattr__(self, "_edges", {b.name: b.edges for b in self.bins})

    _tables: dict[str, dict[str, dict[str, tuple[int, int]]]] = attrs.field(
        init=False, eq=False, repr=False, hash=False
    )
    _edges: dict[str, tuple[float, ...]] = attrs.field(init=False, eq=False, repr=False, hash=False)
    _kinds: dict[str, str] = attrs.field(init=False, eq=False, repr=False, hash=False)

    @classmethod
    def fit(  # noqa: PLR0912
        cls,
        examples: Iterable[Example],
        *,
        alpha: float = 1.0,
        bins: int = 10,
        team_field: str | None = None,
        stage_field: str | None = None,
        stage_order: Sequence[str] = (),
    ) -> "NaiveBayesScorer":
        """Count won and lost examples per feature value (per team with ``team_field``)."""
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise ValidationError("alpha", alpha, "expected a positive finite number")
        if not finite(alpha) or alpha <= 0:
            raise ValidationError("alpha", alpha, "expected a positive finite number")
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 1000:
            raise ValidationError("bins", bins, "expected an int from 2 to 1000")
        order = tuple(stage_order)
        if (stage_field is None) != (not order):
            raise ValidationError("stage_order", order, "give stage_field and stage_order")
        found = checked_examples(examples)
        records = [e.record for e in found]
        kinds = field_kinds(records)
        for special in (team_field, stage_field):
            if special is not None and kinds.get(special, "text") != "text":
                raise ValidationError(special, kinds[special], "expected a text field")
        edges: dict[str, tuple[float, ...]] = {}
        for name, kind in sorted(kinds.items()):
            if kind == NUMBER and name not in (team_field, stage_field):
                cut = _quantile_edges(records, name, bins)
                if cut is not None:
                    edges[name] = cut
        position = {stage: i for i, stage in enumerate(order)}
        counted: dict[str, dict[str, dict[str, list[int]]]] = {_ALL: {}}
        priors: dict[str, list[int]] = {_ALL: [0, 0]}
        for index, example in enumerate(found):
            record = example.record
            team = record.get(team_field) if team_field is not None else None
            groups = [_ALL] if team is None else [_ALL, str(team)]
            side = 0 if example.won else 1
            for group in groups:
                priors.setdefault(group, [0, 0])[side] += 1
                table = counted.setdefault(group, {})
                for name, value in record.items():
                    if value is None or name == team_field:
                        continue
                    if name == stage_field:
                        at = position.get(str(value))
                        if at is None:
                            raise ValidationError(
                                f"examples[{index}].record.{name}", value, "not in stage_order"
                            )
                        levels = list(order[: at + 1])
                    elif name in edges:
                        levels = [_bin_label(edges[name], float(value))]
                    else:
                        levels = [_level(value)]
                    field = table.setdefault(name, {})
                    for level in levels:
                        field.setdefault(level, [0, 0])[side] += 1
        teams = tuple(
            TeamCounts(
                team,
                priors[team][0],
                priors[team][1],
                tuple(
                    FieldCounts(
                        name,
                        tuple(LevelCounts(lv, *counted[team][name][lv]) for lv in sorted(levels)),
                        kinds.get(name) or None,
                    )
                    for name, levels in sorted(counted[team].items())
                ),
            )
            for team in sorted(counted)
        )
        return cls(
            alpha=float(alpha),
            teams=teams,
            bins=tuple(NumericBins(n, e) for n, e in edges.items()),
            team_field=team_field,
            stage_field=stage_field,
            stage_order=order,
        )

    def _team(self, record: Record) -> TeamCounts:
        if self.team_field is not None:
            team = record.get(self.team_field)
            if team is not None:
                for counts in self.teams:
                    if counts.team == str(team):
                        return counts
        return self.teams[0]

    def explain(self, record: Record) -> Explanation:
        """Per-feature log-odds of ``record``; they add up to its log-odds."""
        problems = check_record(record)
        if not problems:
            problems = self._wrong_kinds(record)
        if problems:
            raise ValidationError.of(problems)
        team = self._team(record)
        tables = self._tables[team.team]
        alpha = self.alpha
        baseline = math.log((team.won + alpha) / (team.lost + alpha))
        parts = []
        for name, value in record.items():
            if value is None or name == self.team_field:
                continue
            table = tables.get(name)
            if table is None:
                continue
            edges = self._edges.get(name)
            if edges is not None:
                if isinstance(value, str | bool):
                    raise ValidationError(name, value, "expected a number")
                level = _bin_label(edges, float(value))
            else:
                level = _level(value)
            counts = table.get(level)
            if counts is None:
                continue  # a value never seen in training is ignored
            if name == self.stage_field:
                # "reached this stage" is yes or no: two outcomes per class
                won_total, lost_total, size = team.won, team.lost, 2
            else:
                won_total = sum(c[0] for c in table.values())
                lost_total = sum(c[1] for c in table.values())
                size = len(table)
            p_won = (counts[0] + alpha) / (won_total + alpha * size)
            p_lost = (counts[1] + alpha) / (lost_total + alpha * size)
            parts.append(FeatureContribution(name, value, math.log(p_won / p_lost)))
        return explanation(baseline, parts)

    def _wrong_kinds(self, record: Record) -> list[Problem]:
        """Values of another type than the feature had in training (``1`` for a
        true/false feature, the text ``"true"``, a number for a text feature), which would
        otherwise be looked up as unseen values or, worse, match a level by its text."""
        problems = []
        for name, value in record.items():
            kind = self._kinds.get(name)
            if value is None or kind is None or name == self.team_field:
                continue
            if kind_of(value) != kind:
                expected = {NUMBER: "a number", BOOL: "true or false", TEXT: "text"}[kind]
                problems.append(Problem(name, value, f"expected {expected}"))
        return problems

    def log_odds(self, record: Record) -> float:
        """The log-odds of winning for ``record``."""
        return self.explain(record).log_odds

    def predict(self, record: Record) -> float:
        """The probability of winning for ``record``."""
        return sigmoid(self.log_odds(record))

    def predict_many(self, records: Iterable[Record]) -> list[float]:
        """The probabilities of many records, in order."""
        return [self.predict(r) for r in records]


def _quantile_edges(records: Sequence[Record], name: str, bins: int) -> tuple[float, ...] | None:
    values = sorted(float(v) for r in records if (v := r.get(name)) is not None)
    if len(set(values)) <= bins:
        return None  # few distinct values: each is its own category
    edges = sorted({values[len(values) * i // bins] for i in range(1, bins)} - {values[0]})
    return tuple(edges)
