"""String similarities, and comparisons that sort a pair of values into levels.

The similarities use ``rapidfuzz`` when it is installed (extra ``quality``) and a
pure-Python implementation of the same definitions otherwise; both give the same scores
(the test suite proves it on random text). Every similarity is a float from 0 (nothing
in common) to 1 (equal).
"""

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import attrs

from crmkit._extras import import_extra
from crmkit.errors import MissingExtra, ValidationError
from crmkit.quality._normalise import as_text, company_key, email_key, name_key, text_key

__all__ = [
    "Comparison",
    "Method",
    "Normaliser",
    "jaro_winkler",
    "levenshtein",
    "token_set",
]

# ----------------------------------------------------------------------- pure Python


def _jaro(a: str, b: str) -> float:
    la, lb = len(a), len(b)
    if not la and not lb:
        return 1.0
    if not la or not lb:
        return 0.0
    window = max(0, max(la, lb) // 2 - 1)
    taken = [False] * lb
    matched_a: list[str] = []
    for i, char in enumerate(a):
        for j in range(max(0, i - window), min(lb, i + window + 1)):
            if not taken[j] and b[j] == char:
                taken[j] = True
                matched_a.append(char)
                break
    matches = len(matched_a)
    if not matches:
        return 0.0
    matched_b = [b[j] for j in range(lb) if taken[j]]
    transpositions = sum(x != y for x, y in zip(matched_a, matched_b, strict=True)) // 2
    return (matches / la + matches / lb + (matches - transpositions) / matches) / 3


def _pure_jaro_winkler(a: str, b: str) -> float:
    sim = _jaro(a, b)
    if sim > 0.7:
        prefix = 0
        for x, y in zip(a[:4], b[:4], strict=False):
            if x != y:
                break
            prefix += 1
        sim += prefix * 0.1 * (1.0 - sim)
    return sim


def _levenshtein_distance(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _pure_levenshtein(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    if not longest:
        return 1.0
    return 1.0 - _levenshtein_distance(a, b) / longest


def _indel_distance(a: str, b: str) -> int:
    """Insertions and deletions that turn ``a`` into ``b``: len(a) + len(b) - 2 * LCS."""
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if ca == cb else max(previous[j], current[j - 1]))
        previous = current
    return len(a) + len(b) - 2 * previous[-1]


def _norm(distance: int, total: int) -> float:
    return 100 - 100 * distance / total if total else 100.0


def _pure_token_set(a: str, b: str) -> float:
    """rapidfuzz's ``fuzz.token_set_ratio`` / 100, step by step."""
    tokens_a, tokens_b = set(a.split()), set(b.split())
    if not tokens_a or not tokens_b:
        return 0.0
    common = tokens_a & tokens_b
    only_a, only_b = tokens_a - tokens_b, tokens_b - tokens_a
    if common and (not only_a or not only_b):
        return 1.0
    joined_a, joined_b = " ".join(sorted(only_a)), " ".join(sorted(only_b))
    common_len = len(" ".join(common))
    gap = 1 if common_len else 0
    with_a = common_len + gap + len(joined_a)
    with_b = common_len + gap + len(joined_b)
    result = _norm(_indel_distance(joined_a, joined_b), with_a + with_b)
    if not common_len:
        return result / 100
    ratio_a = _norm(gap + len(joined_a), common_len + with_a)
    ratio_b = _norm(gap + len(joined_b), common_len + with_b)
    return max(result, ratio_a, ratio_b) / 100


# ----------------------------------------------------------------------- dispatch


def _check_texts(a: object, b: object) -> None:
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, str):
            raise ValidationError(name, value, "expected text")


def _rapidfuzz() -> Any | None:
    loaded = sys.modules.get("rapidfuzz")
    if loaded is not None:
        return loaded
    try:
        return import_extra("rapidfuzz", extra="quality", feature="fast string similarity")
    except MissingExtra:
        return None


def jaro_winkler(a: str, b: str) -> float:
    """The Jaro-Winkler similarity of ``a`` and ``b`` (prefix weight 0.1, up to four
    characters, applied above 0.7), as ``rapidfuzz.distance.JaroWinkler.similarity``.

    >>> round(jaro_winkler("martha", "marhta"), 4)
    0.9611
    """
    _check_texts(a, b)
    fast = _rapidfuzz()
    if fast is None:
        return _pure_jaro_winkler(a, b)
    return float(fast.distance.JaroWinkler.similarity(a, b))


def levenshtein(a: str, b: str) -> float:
    """1 minus the Levenshtein distance divided by the longer length.

    >>> levenshtein("kitten", "sitting")
    0.5714285714285714
    """
    _check_texts(a, b)
    fast = _rapidfuzz()
    if fast is None:
        return _pure_levenshtein(a, b)
    return float(fast.distance.Levenshtein.normalized_similarity(a, b))


def token_set(a: str, b: str) -> float:
    """The token-set ratio / 100: words in common count, word order and repeats do not.

    >>> token_set("ada king lovelace", "lovelace ada")
    1.0
    """
    _check_texts(a, b)
    fast = _rapidfuzz()
    if fast is None:
        return _pure_token_set(a, b)
    return float(fast.fuzz.token_set_ratio(a, b)) / 100


# ----------------------------------------------------------------------- comparisons


class Method(StrEnum):
    """How a :class:`Comparison` compares two values."""

    EXACT = "exact"
    JARO_WINKLER = "jaro_winkler"
    LEVENSHTEIN = "levenshtein"
    TOKEN_SET = "token_set"
    DATE = "date"
    """Days between two dates: ``thresholds`` are the largest differences of each level."""
    NUMBER = "number"
    """Relative difference ``|a - b| / max(|a|, |b|)``: ``thresholds`` as for dates."""


class Normaliser(StrEnum):
    """The key a text value is compared by (see :mod:`crmkit.quality._normalise`)."""

    TEXT = "text"
    NAME = "name"
    EMAIL = "email"
    COMPANY = "company"
    RAW = "raw"
    """The value as stored (for codes such as E.164 phone numbers and countries)."""


_SIMILARITY: Final[Mapping[Method, Callable[[str, str], float]]] = {
    Method.JARO_WINKLER: jaro_winkler,
    Method.LEVENSHTEIN: levenshtein,
    Method.TOKEN_SET: token_set,
}
_PURE: Final[Mapping[Method, Callable[[str, str], float]]] = {
    Method.JARO_WINKLER: _pure_jaro_winkler,
    Method.LEVENSHTEIN: _pure_levenshtein,
    Method.TOKEN_SET: _pure_token_set,
}


def _email_or_blank(value: str) -> str:
    try:
        return email_key(value)
    except ValidationError:
        return ""


_NORMALISE: Final[Mapping[Normaliser, Callable[[str], str]]] = {
    Normaliser.TEXT: text_key,
    Normaliser.NAME: name_key,
    Normaliser.EMAIL: _email_or_blank,
    Normaliser.COMPANY: company_key,
    Normaliser.RAW: lambda v: v.strip(),
}


def to_method(value: object) -> Method:
    """``value`` as a :class:`Method`, or a ValidationError naming ``method``."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return Method(value)
    known = ", ".join(m.value for m in Method)
    raise ValidationError("method", value, f"expected one of {known}")


def to_normaliser(value: object) -> Normaliser:
    """``value`` as a :class:`Normaliser`, or a ValidationError naming ``normaliser``."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return Normaliser(value)
    known = ", ".join(m.value for m in Normaliser)
    raise ValidationError("normaliser", value, f"expected one of {known}")


def field_value(record: object, field: str) -> object:
    """The value of ``field`` in ``record``: a key of a mapping, ``custom.<key>`` of an
    entity's custom fields, or an attribute."""
    if type(record) is dict or isinstance(record, Mapping):
        return record.get(field)
    if field.startswith("custom."):
        custom = getattr(record, "custom", None)
        return None if custom is None else custom.get(field[7:])
    return getattr(record, field, None)


def _check_name(_i: object, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(attribute.name, value, "expected a non-empty name")


def _check_thresholds(instance: "Comparison", _a: object, value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ValidationError("thresholds", value, "expected a tuple of finite numbers")
    if instance.method is Method.EXACT:
        if value:
            raise ValidationError("thresholds", value, "an exact comparison has no thresholds")
        return
    if instance.method in _SIMILARITY:
        if not all(0 < v < 1 for v in value) or list(value) != sorted(value, reverse=True):
            raise ValidationError(
                "thresholds", value, "similarities between 0 and 1, highest first"
            )
    elif not all(v >= 0 for v in value) or list(value) != sorted(value):
        raise ValidationError("thresholds", value, "differences of 0 or more, smallest first")


@attrs.frozen
class Comparison:
    """Compares one field of two records and sorts the pair into a level.

    Level 0 is "different"; the highest level is "equal" (after normalisation); the
    levels between are the ``thresholds`` from the loosest up: for similarities, a
    level holds pairs at or above its threshold (highest first in ``thresholds``); for
    dates and numbers, pairs at or below a difference (smallest first). A value that is
    missing, empty or blank on either side gives no level (``None``): it counts neither
    for nor against a match, and two empty values never match.

    >>> c = Comparison("first_name", "first_name", Method.JARO_WINKLER, (0.92, 0.8))
    >>> c.level({"first_name": "Ada"}, {"first_name": "ADA"}), c.labels
    (3, ('different', 'jaro_winkler >= 0.8', 'jaro_winkler >= 0.92', 'equal'))
    """

    name: str = attrs.field(validator=_check_name)
    field: str = attrs.field(validator=_check_name)
    method: Method = attrs.field(default=Method.EXACT, converter=to_method)
    thresholds: tuple[float, ...] = attrs.field(default=(), validator=_check_thresholds)
    normaliser: Normaliser = attrs.field(default=Normaliser.TEXT, converter=to_normaliser)

    @property
    def levels(self) -> int:
        """How many levels this comparison has (at least two)."""
        return len(self.thresholds) + 2

    @property
    def labels(self) -> tuple[str, ...]:
        """A label per level, from "different" to "equal"."""
        return _labels(self.method, self.thresholds)

    def prepare(self, record: object) -> object:
        """The value this comparison compares of ``record`` (``None`` when there is none):
        normalised text, a date or a number."""
        return self._prepare_value(field_value(record, self.field))

    def prepare_many(self, records: Sequence[object]) -> list[object]:
        """:meth:`prepare` of each record, normalising each distinct value once."""
        done: dict[object, object] = {}
        found = []
        field, prepare = self.field, self._prepare_value
        for record in records:
            value = record.get(field) if type(record) is dict else field_value(record, field)
            try:
                prepared = done[value]
            except KeyError:
                prepared = done[value] = prepare(value)
            except TypeError:  # a value that is no dictionary key
                prepared = prepare(value)
            found.append(prepared)
        return found

    def _prepare_value(self, value: object) -> object:
        if value is None or isinstance(value, bool):
            return None
        if self.method is Method.DATE:
            return _as_date(value)
        if self.method is Method.NUMBER:
            return _as_number(value)
        text = _NORMALISE[self.normaliser](as_text(value, self.field))
        return text or None

    def level(self, left: object, right: object) -> int | None:
        """The level of two records (``None`` when a value is missing)."""
        return self.level_of(self.prepare(left), self.prepare(right))

    def level_of(self, a: object, b: object) -> int | None:
        """The level of two values that :meth:`prepare` gave."""
        return self.leveller()(a, b)

    def leveller(self) -> Callable[[object, object], int | None]:
        """:meth:`level_of` with the similarity function chosen once (rapidfuzz when it
        is installed), for comparing many pairs."""
        similarity = _raw_similarity(self.method)
        compare = self._level
        return lambda a, b: compare(a, b, similarity)

    def _level(
        self, a: object, b: object, similarity: Callable[[str, str], float] | None
    ) -> int | None:
        if a is None or b is None:
            return None
        top = len(self.thresholds) + 1
        if a == b:
            return top
        if similarity is not None:
            score = similarity(str(a), str(b))
            for index, threshold in enumerate(self.thresholds):
                if score >= threshold:
                    return top - 1 - index
            return 0
        if self.method is Method.EXACT:
            return 0
        if self.method is Method.DATE:
            assert isinstance(a, date)
            assert isinstance(b, date)
            difference = float(abs((a - b).days))
        else:
            assert isinstance(a, float)
            assert isinstance(b, float)
            difference = abs(a - b) / max(abs(a), abs(b))
        for index, threshold in enumerate(self.thresholds):
            if difference <= threshold:
                return top - 1 - index
        return 0


@functools.cache
def _labels(method: Method, thresholds: tuple[float, ...]) -> tuple[str, ...]:
    if method in (Method.DATE, Method.NUMBER):
        unit = "days" if method is Method.DATE else "relative"
        middle = [f"{method} within {t} {unit}" for t in reversed(thresholds)]
    else:
        middle = [f"{method} >= {t}" for t in reversed(thresholds)]
    return ("different", *middle, "equal")


def _raw_similarity(method: Method) -> Callable[[str, str], float] | None:
    """The similarity function of ``method`` without argument checks, from rapidfuzz
    when it is installed; ``None`` for methods that are not similarities."""
    if method not in _SIMILARITY:
        return None
    fast = _rapidfuzz()
    if fast is None:
        return _PURE[method]
    if method is Method.JARO_WINKLER:
        return fast.distance.JaroWinkler.similarity  # type: ignore[no-any-return]
    if method is Method.LEVENSHTEIN:
        return fast.distance.Levenshtein.normalized_similarity  # type: ignore[no-any-return]
    ratio = fast.fuzz.token_set_ratio
    return lambda a, b: float(ratio(a, b)) / 100


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    for parse in (date.fromisoformat, lambda t: datetime.strptime(t, "%Y%m%d").date()):
        try:
            return parse(text)
        except ValueError:
            continue
    return None


def _as_number(value: object) -> float | None:
    if isinstance(value, int | float | Decimal):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None
