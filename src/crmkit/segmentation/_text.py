"""Rules written as text: :func:`parse_rule` reads the text syntax into the rule AST of
:mod:`crmkit.models.rules`, :func:`format_rule` writes any rule back as text.

>>> from crmkit.segmentation import format_rule, parse_rule
>>> rule = parse_rule('country in ("DE", "AT", "CH") and not tag("churned")')
>>> format_rule(rule)
'country in ("DE", "AT", "CH") and not tag("churned")'
>>> parse_rule(format_rule(rule)) == rule
True

The syntax (every node type of the rule language has one form)::

    a and b, a or b, not a, (a), all(a, b, ...), any(a, b, ...)
    field = value     (also !=, <, <=, >, >=; == is read as =)
    field in (v, ...)   field not in (v, ...)   (null may be one of the values)
    field between low and high
    field is null   field is not null
    field contains "x"   field startswith "x"   field endswith "x"
    field within last 30d   field more than 30d ago   field in this month
    tag("vip")   contact.tag("vip")
    segment("6f1c...-uuid")
    reachable(email, "newsletter")   reachable(sms, "sales", max 3 per 30d, checks (consent))
    activity(page_view, within 30d, url contains "/pricing").count >= 2
    activity(purchase).sum >= 100.00 EUR

Values: ``"text"`` (JSON string escapes), ``12``, ``1.5``, ``-3e2``, ``true``,
``false``, ``null``, ``2026-01-31``, ``2026-01-31T12:00:00+00:00``, ``19.99 EUR``;
ids are written as strings. Field names are those of :data:`crmkit.models.rules.FIELDS`
(``custom.<key>``, ``contact.<field>`` for a lead's, deal's or ticket's contact); inside
an activity filter a bare name that is not an activity field is a property
(``url`` is ``properties.url``). ``and`` binds tighter than ``or``; ``not`` tighter
than both. A problem raises :class:`~crmkit.errors.RuleSyntaxError` with the line and
column and the line with a caret under the place.
"""

import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Final, NoReturn
from uuid import UUID

from crmkit.errors import InvalidRule, RuleSyntaxError, ValidationError
from crmkit.models import ActivityKind, ConsentChannel, Money
from crmkit.models.rules import (
    ACTIVITY_FIELDS,
    CONTACT_FIELDS_OF,
    FIELDS,
    MAX_RULE_DEPTH,
    ActivityCondition,
    And,
    Between,
    Compare,
    Condition,
    DateWindow,
    FieldSpec,
    FieldType,
    HasTag,
    In,
    InSegment,
    IsNull,
    Measure,
    Not,
    Op,
    Or,
    Reachable,
    ReachCheck,
    RelativeDate,
    Rule,
    RuleEntity,
    Scalar,
    TextMatch,
    TextOp,
    field_spec,
)

__all__ = ["MAX_RULE_TEXT", "format_condition", "format_rule", "parse_rule"]

MAX_RULE_TEXT: Final = 1_000_000
"""The longest rule text :func:`parse_rule` reads, in characters."""

_TOKEN: Final = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
    |(?P<days>\d+d(?![\w.]))
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.]))
    |(?P<string>"(?:[^"\\\x00-\x1f]|\\.)*")
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|!=|==|=|<|>)
    |(?P<punct>[(),.])
    """,
    re.VERBOSE,
)

_OPS: Final = {"=": Op.EQ, "==": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT}
_OPS[">="] = Op.GE
_OP_TEXT: Final = {Op.EQ: "=", Op.NE: "!=", Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_KEYWORDS: Final = frozenset(
    {
        "and", "or", "not", "in", "is", "null", "true", "false", "between", "contains",
        "startswith", "endswith", "within", "last", "more", "than", "ago", "this", "month",
        "all", "any", "tag", "segment", "reachable", "activity", "contact", "custom",
        "properties", "max", "per", "checks", "count", "sum",
    }
)  # fmt: skip
_CURRENCY: Final = re.compile(r"[A-Z]{3}\Z")
_PROPERTIES: Final = "properties"
_MAX_NESTING: Final = 2 * MAX_RULE_DEPTH + 2
"""Groups in parentheses add no level to a rule; this bounds them too (and recursion)."""


class _Token:
    __slots__ = ("kind", "start", "text")

    def __init__(self, kind: str, text: str, start: int) -> None:
        self.kind = kind
        self.text = text
        self.start = start


def _tokens(text: str) -> list[_Token]:
    found: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _error(text, position, "rule", text[position], "unexpected character")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append(_Token(kind, match.group(), position))
        position = match.end()
    found.append(_Token("end", "", len(text)))
    return found


def _error(text: str, offset: int, field: str, value: object, reason: str) -> RuleSyntaxError:
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    if line_end < 0:
        line_end = len(text)
    line = text.count("\n", 0, offset) + 1
    column = offset - line_start + 1
    shown = text[line_start:line_end]
    caret = column - 1
    if len(shown) > 120:  # a window of the long line around the place
        begin = max(0, caret - 60)
        shown = shown[begin : begin + 120]
        caret -= begin
    excerpt = f"  {shown}\n  {' ' * caret}^"
    return RuleSyntaxError(field, value, reason, line=line, column=column, excerpt=excerpt)


class _Literal:
    """A value as written, typed once the field it is compared with is known."""

    __slots__ = ("kind", "start", "text", "value")

    def __init__(self, kind: str, text: str, start: int, value: object = None) -> None:
        self.kind = kind
        self.text = text
        self.start = start
        self.value = value


class _Parser:
    def __init__(self, text: str, entity: RuleEntity) -> None:
        self.text = text
        self.entity = entity
        self.tokens = _tokens(text)
        self.index = 0
        self.depth = 0
        self.literals: list[tuple[object, int]] = []
        """The values of the condition being read, with where each was written."""

    # -------------------------------------------------------------- tokens

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.token
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, *texts: str) -> bool:
        token = self.token
        return token.kind in ("name", "op", "punct") and token.text in texts

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.index += 1
            return True
        return False

    def fail(self, reason: str, token: _Token | None = None, field: str = "rule") -> NoReturn:
        token = token or self.token
        value = token.text or "end of text"
        raise _error(self.text, token.start, field, value, reason)

    def expect(self, text: str, what: str | None = None) -> _Token:
        if not self.at(text):
            self.fail(f"expected {what or repr(text)}")
        return self.advance()

    def name(self, what: str) -> _Token:
        if self.token.kind != "name":
            self.fail(f"expected {what}")
        return self.advance()

    # -------------------------------------------------------------- grammar

    def rule(self) -> Rule:
        start = self.token
        if start.kind == "end":
            self.fail("the rule is empty: expected a condition")
        where = self.expression(activity=False)
        if self.token.kind != "end":
            self.fail("expected 'and', 'or' or the end of the rule")
        try:
            return Rule(self.entity, where)
        except InvalidRule as error:  # the bounds: depth, number of conditions
            raise _error(self.text, start.start, error.field, error.value, error.reason) from None

    def expression(self, *, activity: bool) -> Condition:
        items = [self.conjunction(activity=activity)]
        while self.accept("or"):
            items.append(self.conjunction(activity=activity))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self, *, activity: bool) -> Condition:
        items = [self.unary(activity=activity)]
        while self.accept("and"):
            items.append(self.unary(activity=activity))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, *, activity: bool) -> Condition:
        start = self.token
        self.depth += 1
        if self.depth > _MAX_NESTING:
            self.fail(f"conditions nest deeper than {MAX_RULE_DEPTH} levels (MAX_RULE_DEPTH)")
        try:
            if self.accept("not"):
                return Not(self.unary(activity=activity))
            if self.accept("("):
                inner = self.expression(activity=activity)
                self.expect(")", "')' to close the group")
                return inner
            if self.at("all", "any") and self.peek().text == "(":
                kind = And if self.advance().text == "all" else Or
                self.advance()
                items = [self.expression(activity=activity)]
                while self.accept(","):
                    items.append(self.expression(activity=activity))
                self.expect(")", "',' or ')'")
                return kind(tuple(items))
            self.literals.clear()
            node = self.atom(activity=activity)
            self.check(node, start, activity=activity)
            return node
        finally:
            self.depth -= 1

    def check(self, node: Condition, start: _Token, *, activity: bool) -> None:
        """Check a leaf as a rule of the entity would, to point at it on a problem."""
        try:
            if activity:
                Rule(
                    self.entity, ActivityCondition(ActivityKind.NOTE, Measure.COUNT, Op.GE, 0, node)
                )
            else:
                Rule(self.entity, node)
        except InvalidRule as error:
            raise self.located(error, start) from None

    def located(self, error: InvalidRule, start: _Token) -> RuleSyntaxError:
        """``error`` pointing at the value it names when that was written in the
        condition, else at the condition's start."""
        offset = start.start
        for value, at in self.literals:
            if _same(value, error.value):
                offset = at
                break
        return _error(self.text, offset, error.field, error.value, error.reason)

    def atom(self, *, activity: bool) -> Condition:
        token = self.token
        following = self.peek()
        if token.kind == "name" and following.text == "(" and following.kind == "punct":
            if token.text == "tag":
                return self.tag("tags")
            if not activity and token.text == "segment":
                return self.segment()
            if not activity and token.text == "reachable":
                return self.reachable()
            if not activity and token.text == "activity":
                return self.activity()
        if (
            token.text == "contact"
            and following.text == "."
            and self.peek(2).text == "tag"
            and self.peek(3).text == "("
        ):
            self.index += 2
            return self.tag("contact.tags")
        if token.kind != "name":
            self.fail("expected a condition (a field name, tag(...), activity(...), ...)")
        name = self.field_name(activity=activity)
        return self.field_condition(name, token, activity=activity)

    def field_name(self, *, activity: bool) -> str:
        parts = [self.advance().text]
        while self.at(".") and self.peek().kind == "name":
            self.advance()
            parts.append(self.advance().text)
        name = ".".join(parts)
        if activity and name not in ACTIVITY_FIELDS and "." not in name:
            return f"{_PROPERTIES}.{name}"
        return name

    def spec(self, name: str, *, activity: bool) -> FieldSpec | None:
        try:
            if activity:
                return field_spec(name, ACTIVITY_FIELDS, _PROPERTIES)
            if self.entity in CONTACT_FIELDS_OF and name.startswith("contact."):
                return field_spec(
                    name.removeprefix("contact."), FIELDS[RuleEntity.CONTACT], "custom"
                )
            return field_spec(name, FIELDS[self.entity], "custom")
        except InvalidRule:
            return None  # the check of the whole condition names the field

    def field_condition(self, name: str, start: _Token, *, activity: bool) -> Condition:
        spec = self.spec(name, activity=activity)
        token = self.token
        if token.kind == "op":
            self.advance()
            return Compare(name, _OPS[token.text], self.typed(self.literal(), spec))
        if self.accept("in"):
            if self.accept("this"):
                self.expect("month")
                return RelativeDate(name, DateWindow.THIS_MONTH)
            return In(name, self.values(spec))
        if self.accept("not"):
            self.expect("in", "'in' after 'not'")
            return In(name, self.values(spec), negated=True)
        if self.accept("is"):
            negated = self.accept("not")
            self.expect("null", "'null'")
            return IsNull(name, negated)
        if self.accept("between"):
            low = self.typed(self.literal(), spec)
            self.expect("and", "'and' between the low and the high value")
            return Between(name, low, self.typed(self.literal(), spec))
        if self.at("contains", "startswith", "endswith"):
            op = TextOp(self.advance().text)
            literal = self.literal()
            if literal.kind != "string":
                self.fail("a text match takes a string", self.tokens[self.index - 1])
            return TextMatch(name, op, str(literal.value))
        if self.accept("within"):
            self.expect("last", "'last' (within last 30d)")
            return RelativeDate(name, DateWindow.WITHIN_LAST, self.days())
        if self.accept("more"):
            self.expect("than", "'than' (more than 30d ago)")
            days = self.days()
            self.expect("ago", "'ago' (more than 30d ago)")
            return RelativeDate(name, DateWindow.MORE_THAN_AGO, days)
        self.fail(
            "expected an operator (=, !=, <, <=, >, >=, in, not in, is, between, contains, "
            "startswith, endswith, within last, more than, in this month)",
            field=name,
        )
        raise AssertionError(start)  # pragma: no cover

    def days(self) -> int:
        token = self.token
        if token.kind != "days":
            self.fail("expected a number of days such as 30d")
        self.advance()
        return _int(token.text[:-1])

    def values(self, spec: FieldSpec | None) -> tuple[Scalar | None, ...]:
        self.expect("(", "'(' to start the list of values")
        values = [self.typed(self.literal(), spec, none=True)]
        while self.accept(","):
            values.append(self.typed(self.literal(), spec, none=True))
        self.expect(")", "',' or ')'")
        return tuple(values)

    def literal(self) -> _Literal:
        token = self.advance()
        kind, text = token.kind, token.text
        if kind == "string":
            try:
                value = json.loads(text)
            except ValueError:
                self.fail('not a valid string (JSON escapes: \\" \\\\ \\n \\uXXXX)', token)
            return _Literal("string", text, token.start, value)
        if kind == "number":
            if self.token.kind == "name" and _CURRENCY.match(self.token.text):
                currency = self.advance().text
                try:
                    money = Money(Decimal(text), currency)
                except (ValidationError, InvalidOperation) as error:
                    self.fail(f"not an amount of money: {error}", token)
                return _Literal("money", text, token.start, money)
            return _Literal("number", text, token.start)
        if kind == "date":
            try:
                return _Literal("date", text, token.start, date.fromisoformat(text))
            except ValueError:
                self.fail("not a date (YYYY-MM-DD)", token)
        if kind == "datetime":
            try:
                return _Literal("datetime", text, token.start, datetime.fromisoformat(text))
            except ValueError:
                self.fail("not a date and time (ISO 8601 with a UTC offset)", token)
        if kind == "name" and text in ("true", "false", "null"):
            value = None if text == "null" else text == "true"
            return _Literal(text, text, token.start, value)
        self.fail('expected a value: "text", a number, true, false, a date, an amount', token)
        raise AssertionError  # pragma: no cover

    def typed(self, literal: _Literal, spec: FieldSpec | None, *, none: bool = False) -> Scalar:
        """The literal as the type the field compares with (see :func:`_literal` in the
        model); a mismatch is left for the rule's check to name."""
        value = self.convert(literal, spec, none=none)
        self.literals.append((value, literal.start))
        return value

    def convert(self, literal: _Literal, spec: FieldSpec | None, *, none: bool) -> Scalar:
        kind = None if spec is None else spec.kind
        if literal.kind == "null" and not none:
            self.fail(
                "comparing with null is never TRUE: use 'is null'", self.tokens[self.index - 1]
            )
        if literal.kind == "number":
            text = literal.text
            if kind is FieldType.DECIMAL:
                return Decimal(text)
            if re.fullmatch(r"-?\d+", text):
                return _int(text)
            return float(text)
        if literal.kind == "string" and isinstance(literal.value, str):
            converted = _from_string(literal.value, kind)
            if converted is not None:
                return converted
        return literal.value  # type: ignore[return-value]

    # -------------------------------------------------------------- function forms

    def tag(self, field: str) -> HasTag:
        self.advance()
        self.expect("(")
        literal = self.literal()
        if literal.kind != "string":
            self.fail("tag(...) takes a string", self.tokens[self.index - 1])
        self.expect(")", "')'")
        return HasTag(str(literal.value), field)

    def segment(self) -> InSegment:
        self.advance()
        self.expect("(")
        literal = self.literal()
        token = self.tokens[self.index - 1]
        try:
            segment_id = UUID(str(literal.value)) if literal.kind == "string" else None
        except ValueError:
            segment_id = None
        if segment_id is None:
            self.fail("segment(...) takes a segment id as a string", token, "segment_id")
        self.expect(")", "')'")
        return InSegment(segment_id)

    def reachable(self) -> Reachable:
        self.advance()
        self.expect("(")
        channel_token = self.name("a channel (" + ", ".join(c.value for c in ConsentChannel) + ")")
        try:
            channel = ConsentChannel(channel_token.text)
        except ValueError:
            allowed = ", ".join(c.value for c in ConsentChannel)
            self.fail(f"expected a channel: {allowed}", channel_token, "channel")
        self.expect(",", "',' and the purpose")
        purpose = self.literal()
        if purpose.kind != "string":
            self.fail("the purpose is a string", self.tokens[self.index - 1], "purpose")
        max_messages = within = None
        checks: frozenset[ReachCheck] = frozenset(ReachCheck)
        while self.accept(","):
            if self.accept("max"):
                max_messages = _int(self.expect_number())
                self.expect("per", "'per' (max 3 per 30d)")
                within = self.days()
            elif self.accept("checks"):
                checks = self.reach_checks()
            else:
                self.fail("expected 'max N per Nd' or 'checks (...)'")
        self.expect(")", "',' or ')'")
        return Reachable(channel, str(purpose.value), max_messages, within, checks)

    def expect_number(self) -> str:
        token = self.token
        if token.kind != "number" or not re.fullmatch(r"\d+", token.text):
            self.fail("expected a whole number")
        return self.advance().text

    def reach_checks(self) -> frozenset[ReachCheck]:
        self.expect("(", "'(' to start the checks")
        found: set[ReachCheck] = set()
        if self.accept(")"):
            return frozenset()
        while True:
            token = self.name("a check")
            try:
                found.add(ReachCheck(token.text))
            except ValueError:
                allowed = ", ".join(c.value for c in ReachCheck)
                self.fail(f"expected a check: {allowed}", token, "checks")
            if not self.accept(","):
                break
        self.expect(")", "',' or ')'")
        return frozenset(found)

    def activity(self) -> ActivityCondition:
        start = self.advance()
        self.expect("(")
        kind_token = self.name("an activity kind")
        try:
            kind = ActivityKind(kind_token.text)
        except ValueError:
            allowed = ", ".join(k.value for k in ActivityKind)
            self.fail(f"expected an activity kind: {allowed}", kind_token, "kind")
        within = None
        where = None
        while self.accept(","):
            if self.at("within") and self.peek().kind == "days":
                self.advance()
                within = self.days()
            elif where is None:
                where = self.expression(activity=True)
            else:
                self.fail("the activity filter is given already: join conditions with 'and'")
        self.expect(")", "',' or ')'")
        self.expect(".", "'.count' or '.sum' after activity(...)")
        measure_token = self.name("count or sum")
        if measure_token.text not in ("count", "sum"):
            self.fail("expected count or sum", measure_token, "measure")
        measure = Measure(measure_token.text)
        op_token = self.token
        if op_token.kind != "op":
            self.fail("expected a comparison (=, !=, <, <=, >, >=)")
        self.advance()
        literal = self.literal()
        value = self.typed(literal, None)
        try:
            return ActivityCondition(kind, measure, _OPS[op_token.text], value, where, within)  # type: ignore[arg-type]
        except InvalidRule as error:
            raise self.located(error, start) from None


def _same(a: object, b: object) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):  # pragma: no cover - values that refuse comparing
        return False


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than int() reads
        return 2**64


def _from_string(value: str, kind: FieldType | None) -> Scalar | None:
    """A string literal given for an id, date or time field, as that type."""
    try:
        if kind is FieldType.UUID:
            return UUID(value)
        if kind is FieldType.DATE:
            return date.fromisoformat(value)
        if kind is FieldType.DATETIME:
            return datetime.fromisoformat(value)
    except ValueError:
        return None
    return None


def parse_rule(text: str, entity: RuleEntity | str = RuleEntity.CONTACT) -> Rule:
    """The rule that ``text`` writes, over ``entity`` (contacts by default).

    Raises :class:`~crmkit.errors.RuleSyntaxError` (an
    :class:`~crmkit.errors.InvalidRule`) with ``line``, ``column`` and an ``excerpt``
    pointing at the first problem: a syntax error, an unknown field, or a value of the
    wrong type for its field.
    """
    if not isinstance(text, str):
        raise InvalidRule("text", text, "expected the rule as a string")
    try:
        kind = RuleEntity(entity)
    except ValueError:
        allowed = ", ".join(e.value for e in RuleEntity)
        raise InvalidRule("entity", entity, f"expected one of: {allowed}") from None
    if len(text) > MAX_RULE_TEXT:
        raise InvalidRule("text", len(text), f"a rule text has at most {MAX_RULE_TEXT} characters")
    return _Parser(text, kind).rule()


# ---------------------------------------------------------------------------- printing


def format_rule(rule: Rule) -> str:
    """``rule`` as text: :func:`parse_rule` of it, over ``rule.entity``, gives ``rule``."""
    if not isinstance(rule, Rule):
        raise InvalidRule("rule", rule, "expected a Rule")
    return format_condition(rule.where)


def format_condition(condition: Condition) -> str:
    """One condition (of a rule's tree) as text, as :func:`format_rule` writes it."""
    if not isinstance(condition, Condition):
        raise InvalidRule("condition", condition, "expected a condition")
    return _format(condition, activity=False)


def _format(node: Condition, *, activity: bool) -> str:  # noqa: PLR0912
    match node:
        case And(items=items) | Or(items=items):
            word = "and" if isinstance(node, And) else "or"
            if len(items) == 1:
                name = "all" if isinstance(node, And) else "any"
                return f"{name}({_format(items[0], activity=activity)})"
            return f" {word} ".join(_grouped(i, activity) for i in items)
        case Not(item=item):
            return f"not {_grouped(item, activity)}"
        case Compare(field=name, op=op, value=value):
            return f"{_name(name, activity)} {_OP_TEXT[op]} {_value(value)}"
        case In(field=name, values=values, negated=negated):
            listed = ", ".join(_value(v) for v in values)
            word = "not in" if negated else "in"
            return f"{_name(name, activity)} {word} ({listed})"
        case Between(field=name, low=low, high=high):
            return f"{_name(name, activity)} between {_value(low)} and {_value(high)}"
        case IsNull(field=name, negated=negated):
            return f"{_name(name, activity)} is {'not ' if negated else ''}null"
        case TextMatch(field=name, op=op, value=value):
            return f"{_name(name, activity)} {op.value} {_string(value)}"
        case HasTag(tag=tag, field=name):
            return f"{'contact.' if name != 'tags' else ''}tag({_string(tag)})"
        case RelativeDate(field=name, window=window, days=days):
            shown = _name(name, activity)
            if window is DateWindow.THIS_MONTH:
                return f"{shown} in this month"
            if window is DateWindow.WITHIN_LAST:
                return f"{shown} within last {days}d"
            return f"{shown} more than {days}d ago"
        case InSegment(segment_id=segment_id):
            return f'segment("{segment_id}")'
        case Reachable():
            return _reachable(node)
        case ActivityCondition():
            parts = [node.kind.value]
            if node.within_days is not None:
                parts.append(f"within {node.within_days}d")
            if node.where is not None:
                parts.append(_format(node.where, activity=True))
            args = ", ".join(parts)
            return f"activity({args}).{node.measure.value} {_OP_TEXT[node.op]} {_value(node.value)}"
    raise InvalidRule("condition", node, "not a condition of the rule language")


def _grouped(node: Condition, activity: bool) -> str:
    text = _format(node, activity=activity)
    multiple = isinstance(node, And | Or) and len(node.items) > 1
    return f"({text})" if multiple else text


def _reachable(node: Reachable) -> str:
    parts = [node.channel.value, _string(node.purpose)]
    if node.max_messages is not None:
        parts.append(f"max {node.max_messages} per {node.within_days}d")
    if node.checks != frozenset(ReachCheck):
        order = [c for c in ReachCheck if c in node.checks]
        parts.append(f"checks ({', '.join(c.value for c in order)})")
    return f"reachable({', '.join(parts)})"


def _name(name: str, activity: bool) -> str:
    if activity and name.startswith(f"{_PROPERTIES}."):
        key = name.removeprefix(f"{_PROPERTIES}.")
        if key not in ACTIVITY_FIELDS and key not in _KEYWORDS:
            return key
    return name


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Money):
        return f"{_decimal(value.amount)} {value.currency}"
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID):
        return f'"{value}"'
    raise InvalidRule("value", value, "not a literal of the rule language")


def _decimal(value: Decimal) -> str:
    # str() may write an exponent (1E+2, 1E-7): the number syntax reads it back exactly.
    return str(value)
