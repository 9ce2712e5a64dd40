"""Fuzzing: no public entry point lets an exception other than a crmkit error escape.

Every public constructor (of :mod:`crmkit.models`, its rules and the domain packages),
every public function of the domain packages, the converter's ``structure`` for every
model type and every public method of :class:`crmkit.crm.CRM` and of a unit of work's
repositories (on the memory store; a smaller pass on SQLite) is called with arguments
drawn from its signature: plausible values of the annotated type mixed with hostile
ones (wrong types, huge integers, NaN and sNaN, non-ASCII digits, empty and control
text, nested containers, extreme and naive datetimes, bools where numbers belong). The
surface is found by introspection, so a new public name or method is fuzzed without
anyone editing this file.

A call may succeed or raise :class:`crmkit.errors.CrmkitError`; anything else fails the
test. CI runs a bounded, derandomised number of examples (about 90 s in all); to look
for new failures run more, randomised, and collect every failure in a file instead of
stopping at the first::

    CRMKIT_FUZZ_EXAMPLES=200 CRMKIT_FUZZ_LOG=/tmp/fuzz.tsv pytest tests/test_fuzz.py
"""

import contextlib
import enum
import inspect
import io
import math
import os
import reprlib
import traceback
import types
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import crmkit.analytics
import crmkit.automation
import crmkit.lifecycle
import crmkit.models
import crmkit.models.rules
import crmkit.privacy
import crmkit.quality
import crmkit.scoring
import crmkit.segmentation
import crmkit.storage
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.errors import CrmkitError
from crmkit.lifecycle import CheckInPlan, Pipeline, SlaPolicy, Stage, StageKind, Touchpoint
from crmkit.models import (
    ConsentChannel,
    LeadChannel,
    Money,
    SubjectKind,
    Task,
    TaskKind,
    TicketChannel,
)
from crmkit.models.rules import Rule, RuleEntity
from crmkit.privacy import ConsentPolicy, FrequencyCap
from crmkit.serialization import make_converter
from crmkit.storage import MemoryStore, Store
from crmkit.storage.sql import open_store
from crmkit.testing import strategies as cst

# Hostile values make long reprs on purpose; hypothesis warns about printing them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

_EXAMPLES = int(os.environ.get("CRMKIT_FUZZ_EXAMPLES", "0"))
_LOG = os.environ.get("CRMKIT_FUZZ_LOG")
_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _fuzz(examples: int) -> settings:
    """Derandomised (the same examples on every run) and bounded, unless asked for more."""
    return settings(
        max_examples=_EXAMPLES or examples,
        derandomize=not _EXAMPLES,
        # A long local run looks for failures; shrinking each would take most of its time.
        phases=[Phase.explicit, Phase.generate] if _EXAMPLES else list(Phase),
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# ------------------------------------------------------------------ hostile values

_DIGITS = "0123456789" + "".join(  # and digits of other scripts, which int() would read
    map(chr, [*range(0x0660, 0x066A), 0x06F3, 0x07C3, 0x0966, 0x09E7, 0x0BEA, 0x0E58, 0x1D7D7])
)
_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\ud800",
            "a\nb",
            "PT\u0661H",
            "\u0661\u0662\u0663",
            "1E+6",
            "sNaN",
            "NaN",
            "-Infinity",
            "ab",
            "true",
            "0001-01-01T00:00:00+00:00",
            "9999-12-31T23:59:59.999999+00:00",
            "2026-03-02T09:30:00",
            "P999999999DT1H",
            "PT1H",
            "P1D",
            "12:30",
            "24:00",
            "EUR",
            "eur",
            "a@b.co",
            "@",
            "x" * 5000,
            "1" * 5000,
            "6f1c1e8e-3f5b-4f7e-9a53-2a0f4c6d8b11",
        ]
    ),
    st.text(max_size=20),
    st.text(alphabet=_DIGITS + ".,-+eE:PTHMSD ", max_size=12),
)
_INTS = st.one_of(
    st.integers(-3, 3),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**16, 10**18, 10**400, -(10**400)]),
    st.just(None).map(lambda _: 10**5000),  # over int-to-str's 4,300 digit limit
)
_FLOATS = st.one_of(
    st.floats(),
    st.sampled_from([1e154, -1e154, 1e308, 5e-324, math.nan, math.inf, -math.inf, -0.0]),
)
_DECIMALS = st.one_of(
    st.decimals(),
    st.sampled_from(
        [
            Decimal("sNaN"),
            Decimal("NaN"),
            Decimal("-Infinity"),
            Decimal("1E+6"),
            Decimal("1E+16"),
            Decimal("-1E+16"),
            Decimal("12345678901234567.5"),
            Decimal("1E+999999"),
            Decimal("1E-999999"),
            Decimal("0.0000000000001"),
            Decimal("-0"),
        ]
    ),
)
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-59))]
)
_DATETIMES = st.one_of(
    st.datetimes(timezones=_ZONES),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime.min,
            datetime.max,
            datetime.min.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=UTC),
            datetime(1, 1, 1, 5, tzinfo=timezone(timedelta(hours=14))),
            datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-12))),
        ]
    ),
)
_TIMEDELTAS = st.one_of(
    st.timedeltas(),
    st.sampled_from([timedelta.max, timedelta.min, timedelta(0), -timedelta(seconds=1)]),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    _FLOATS,
    _DECIMALS,
    _TEXT,
    st.binary(max_size=8),
    _DATETIMES,
    st.dates(),
    st.times(),
    _TIMEDELTAS,
    st.uuids(),
    st.sampled_from([object(), type, len, Ellipsis, NotImplemented, 1j]),
)


def _all_enum_members() -> list[enum.Enum]:
    found: list[enum.Enum] = []
    modules = (
        crmkit.models,
        crmkit.lifecycle,
        crmkit.scoring,
        crmkit.segmentation,
        crmkit.quality,
        crmkit.privacy,
        crmkit.analytics,
        crmkit.automation,
    )
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, enum.Enum):
                found.extend(obj)
    return found


HOSTILE: st.SearchStrategy[Any] = st.recursive(
    st.one_of(_SCALARS, st.sampled_from(_all_enum_members())),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(_TEXT, _INTS), inner, max_size=4),
        st.frozensets(st.one_of(_TEXT, _INTS, st.uuids()), max_size=3),
    ),
    max_leaves=8,
)
"""Any value at all, most of them wrong for whatever receives them."""


# ------------------------------------------------------------------ plausible values


@st.composite
def _attempt(
    draw: st.DrawFn,
    make: Callable[..., Any],
    *parts: st.SearchStrategy[Any],
    **named: st.SearchStrategy[Any],
) -> Any:
    """``make(*drawn parts, **drawn named)``, or, when ``make`` refuses them, something
    hostile in its place."""
    args = [draw(part) for part in parts]
    kwargs = {name: draw(part) for name, part in named.items()}
    try:
        return make(*args, **kwargs)
    except CrmkitError:
        return draw(HOSTILE)


def _leaf_of(tp: Any) -> st.SearchStrategy[Any] | None:  # noqa: PLR0912
    """A strategy for plain values of type ``tp``, or ``None`` when ``tp`` is not plain."""
    if tp is Any or tp is object:
        return HOSTILE
    if tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return _INTS
    if tp is float:
        return st.one_of(_FLOATS, _INTS)
    if tp is Decimal:
        return st.one_of(_DECIMALS, _INTS, _TEXT)
    if tp is UUID:
        return st.uuids()
    if tp is datetime:
        return _DATETIMES
    if tp is date:
        return st.one_of(st.dates(), st.sampled_from([date.min, date.max]))
    if tp is time:
        return st.times()
    if tp is timedelta:
        return _TIMEDELTAS
    if tp is Money:
        return st.one_of(
            cst.money(),
            _attempt(Money, _DECIMALS, st.sampled_from(["EUR", "JPY"])),
        )
    if tp is Rule:
        return st.one_of(cst.rules(entity) for entity in RuleEntity)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.one_of(st.sampled_from(list(tp)), st.sampled_from([m.value for m in tp]))
    if isinstance(tp, type) and issubclass(tp, str):
        return st.one_of(cst.texts(), cst.keys(), _TEXT, cst.emails())
    if isinstance(tp, type) and tp in cst._BY_TYPE:
        return cst.for_type(tp)
    return None


def values_of(tp: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values for a parameter annotated ``tp``: mostly plausible, some hostile."""
    return st.one_of(_plausible(tp, depth), _plausible(tp, depth), HOSTILE)


def _plausible(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    leaf = _leaf_of(tp)
    if leaf is not None:
        return leaf
    if isinstance(tp, typing.TypeVar):
        return HOSTILE
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_plausible(arg, depth) for arg in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if depth > 3:
        return HOSTILE
    if origin in (list, tuple, set, frozenset) or _is_abc(origin, "Iterable", "Sequence", "Set"):
        item = args[0] if args else Any
        items = st.lists(values_of(item, depth + 1), max_size=4)
        return st.one_of(items, items.map(tuple), items.map(iter))
    if _is_abc(origin, "Mapping") or origin is dict:
        key, value = args or (str, Any)
        keys = values_of(key, depth + 1).filter(_hashable)
        return st.dictionaries(keys, values_of(value, depth + 1), max_size=4)
    if _is_abc(origin, "Callable"):
        return st.builds(lambda result: lambda *_, **__: result, HOSTILE)
    if inspect.isclass(tp) and attrs.has(tp):
        return _built(tp, depth + 1)
    if inspect.isclass(tp) and tp.__module__.startswith("crmkit"):
        return _built(tp, depth + 1)
    return HOSTILE


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _is_abc(origin: Any, *names: str) -> bool:
    return getattr(origin, "__module__", "") == "collections.abc" and origin.__name__ in names


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # a hint that does not resolve: fuzz that parameter with anything
        return {}


def _parameters(function: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [
        p
        for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


@st.composite
def arguments(
    draw: st.DrawFn,
    function: Callable[..., Any],
    known: dict[str, st.SearchStrategy[Any]] | None = None,
    depth: int = 0,
) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``function``, drawn from its signature:
    every required parameter, and each optional one half of the time. ``known`` gives
    the strategies of parameters by name (ids of stored entities, for example)."""
    hints = _hints(function)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for parameter in _parameters(function):
        required = parameter.default is parameter.empty
        if not required and not draw(st.booleans()):
            if parameter.kind is parameter.POSITIONAL_ONLY:
                break
            continue
        if known and parameter.name in known:
            strategy = st.one_of(known[parameter.name], known[parameter.name], HOSTILE)
        else:
            strategy = values_of(hints.get(parameter.name, Any), depth)
        value = draw(strategy)
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[parameter.name] = value
    return args, kwargs


_BUILT: dict[type, st.SearchStrategy[Any]] = {}


def _built(cls: type, depth: int) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` made by calling it with drawn arguments (or anything at all
    when that call is refused)."""
    if cls not in _BUILT:
        _BUILT[cls] = st.deferred(lambda: _constructed(cls, depth))
    return _BUILT[cls]


@st.composite
def _constructed(draw: st.DrawFn, cls: type, depth: int) -> Any:
    maker = getattr(cls, "new", cls)
    args, kwargs = draw(arguments(maker, depth=depth))
    try:
        return maker(*args, **kwargs)
    except Exception:  # only a valid instance is wanted here; the target test reports
        return draw(HOSTILE)


# ------------------------------------------------------------------ the calls


def call(function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """``function(*args, **kwargs)``; anything it raises that is not a crmkit error fails
    the test, with the call that raised it."""
    try:
        result = function(*args, **kwargs)
        if isinstance(result, Iterator):  # lazy results fail when read
            result = list(result)
    except CrmkitError:
        return None
    except Exception as error:
        where = getattr(function, "__qualname__", repr(function))
        frames = traceback.extract_tb(error.__traceback__)
        origin = next((f for f in reversed(frames) if "/crmkit/" in f.filename), frames[-1])
        if _LOG:  # a long local run collects every failure instead of stopping
            with Path(_LOG).open("a") as log:
                log.write(
                    f"{where}\t{type(error).__name__}\t{Path(origin.filename).name}:"
                    f"{origin.lineno}\t{str(error)[:120]!r}\t{_show(kwargs)[:300]}\n"
                )
            return None
        raise AssertionError(
            f"{where}(*{_show(args)}, **{_show(kwargs)}) raised {type(error).__name__} "
            f"at {Path(origin.filename).name}:{origin.lineno}: {error!s:.300}"
        ) from error
    return result


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # beyond int-to-str's digit limit
            return f"<int of {x.bit_length()} bits>"


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 4, 200, 200, 60


def _show(value: object) -> str:
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _public_classes() -> list[type]:
    found = []
    modules = (
        crmkit.models,
        crmkit.models.rules,
        crmkit.lifecycle,
        crmkit.scoring,
        crmkit.segmentation,
        crmkit.quality,
        crmkit.privacy,
        crmkit.analytics,
        crmkit.automation,
    )
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and not issubclass(obj, enum.Enum)
                and not getattr(obj, "_is_protocol", False)
                and obj.__module__.startswith("crmkit")
            ):
                found.append(obj)
    found.extend([crmkit.storage.Order, crmkit.storage.Cursor])
    return found


CONSTRUCTORS: list[Callable[..., Any]] = []
for _cls in _public_classes():
    CONSTRUCTORS.append(_cls)
    for _name, _member in vars(_cls).items():
        if isinstance(_member, classmethod) and not _name.startswith("_"):
            CONSTRUCTORS.append(getattr(_cls, _name))


def _name_of(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", repr(function))


@pytest.mark.parametrize("constructor", CONSTRUCTORS, ids=_name_of)
@_fuzz(20)
@given(data=st.data())
def test_constructors_raise_only_crmkit_errors(constructor: Callable[..., Any], data: Any) -> None:
    args, kwargs = data.draw(arguments(constructor), label="arguments")
    call(constructor, args, kwargs)


def _public_functions() -> list[Any]:
    found: list[Any] = []
    for module in (
        crmkit.lifecycle,
        crmkit.scoring,
        crmkit.segmentation,
        crmkit.quality,
        crmkit.privacy,
        crmkit.analytics,
        crmkit.automation,
    ):
        for name in module.__all__:
            obj = getattr(module, name)
            if not inspect.isfunction(obj):
                continue
            found.append(obj)
    return found


@pytest.mark.parametrize("function", _public_functions(), ids=_name_of)
@_fuzz(10)
@given(data=st.data())
def test_domain_functions_raise_only_crmkit_errors(function: Callable[..., Any], data: Any) -> None:
    """The pure functions of the domain packages, which the CRM methods build on."""
    args, kwargs = data.draw(arguments(function), label="arguments")
    call(function, args, kwargs)


# ------------------------------------------------------------------ structure


def _structured_types() -> list[Any]:
    found: list[Any] = [
        cls for cls in _public_classes() if attrs.has(cls) and cls is not crmkit.storage.Cursor
    ]
    return [*found, Rule, Money, timedelta, Decimal, datetime, date, UUID]


_CONVERTER = make_converter()


def _mutated(data: Any, draw: st.DrawFn) -> Any:
    """``data`` (unstructured JSON) with one leaf or key swapped for something hostile."""
    if isinstance(data, dict) and data and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(data, key=_show)))
        return {**data, key: _mutated(data[key], draw)}
    if isinstance(data, list) and data and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(data) - 1))
        return [*data[:index], _mutated(data[index], draw), *data[index + 1 :]]
    return draw(st.one_of(_TEXT, _INTS, _FLOATS, st.none(), st.booleans(), HOSTILE))


@pytest.mark.parametrize("cls", _structured_types(), ids=lambda c: getattr(c, "__name__", str(c)))
@_fuzz(20)
@given(data=st.data())
def test_structure_raises_only_crmkit_errors(cls: Any, data: Any) -> None:
    value = data.draw(_plausible(cls, 0), label="value")
    try:
        document = _CONVERTER.unstructure(value)
    except Exception:
        document = value
    hostile = _mutated(document, data.draw) if data.draw(st.booleans()) else data.draw(HOSTILE)
    call(_CONVERTER.structure, [hostile, cls], {})
    if attrs.has(type(value)) or isinstance(value, Money):
        call(_CONVERTER.structure, [document, cls], {})


# ------------------------------------------------------------------ CRM and repositories

SALES = Pipeline(
    key="sales",
    label="Sales",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)
INBOUND = Pipeline(
    key="inbound",
    label="Inbound",
    subject=SubjectKind.LEAD,
    stages=(
        Stage(key="new", label="New"),
        Stage(key="qualified", label="Qualified", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="junk", label="Junk", kind=StageKind.LOST),
    ),
)


# ------------------------------------------------------------------ automation

_AUTOMATION = crmkit.automation.Automation(
    [
        crmkit.automation.speed_to_lead(["ada", "bob"], calendar="office"),
        crmkit.automation.follow_up_after_no_reply(calendar="office"),
        crmkit.automation.quarterly_check_in(),
        *crmkit.automation.sla_escalation(["esc"]),
        crmkit.automation.AutomationRule(
            "everything",
            crmkit.automation.OnEvent("contact.created"),
            [
                crmkit.automation.AddTag("x"),
                crmkit.automation.WaitUntil(time(9)),
                crmkit.automation.SendMessage("mail", ConsentChannel.EMAIL, "newsletter", "hi"),
                crmkit.automation.MoveStage("mql"),
                crmkit.automation.CallHook("hook"),
            ],
        ),
    ],
    calendars={
        "office": crmkit.lifecycle.BusinessCalendar.workdays("Europe/Berlin", time(9), time(17))
    },
    senders={"mail": lambda message: None},
    hooks={"hook": lambda crm, call: None},
)


@attrs.frozen
class _Event:
    id: Any
    type: Any
    subject: Any
    subject_id: Any
    caused_by: Any = None


@attrs.frozen
class _Step:
    id: Any
    kind: Any
    payload: Any


_EVENT_TYPES = st.sampled_from(sorted(crmkit.automation.EVENT_SUBJECTS))
_SUBJECTS = st.sampled_from(["contact", "lead", "deal", "ticket", "task", "activity", "x"])


def _automation_known(ids: st.SearchStrategy[UUID]) -> dict[str, st.SearchStrategy[Any]]:
    """Events and steps for the automation use cases: plausible ones (a rule's real
    step, of a stored subject) with a field swapped for something hostile now and then."""
    payloads = st.fixed_dictionaries(
        {
            "rule": st.sampled_from([r.name for r in _AUTOMATION.rules]) | HOSTILE,
            "index": st.integers(-1, 6) | HOSTILE,
            "origin": st.uuids().map(str) | HOSTILE,
            "subject": _SUBJECTS,
            "subject_id": ids.map(str) | HOSTILE,
            "period": st.integers(-5, 10**6) | HOSTILE,
        }
    )

    def real_id(payload: dict[str, Any]) -> Any:
        try:
            origin = UUID(payload["origin"])
            return crmkit.automation.Automation.step_id(origin, payload["rule"], payload["index"])
        except Exception:
            return uuid4()

    steps = payloads.flatmap(
        lambda p: st.builds(
            _Step,
            st.just(real_id(p)) | st.uuids(),
            st.sampled_from([crmkit.automation.ACTION_STEP, crmkit.automation.SWEEP_STEP])
            | HOSTILE,
            st.just(p) | HOSTILE,
        )
    )
    events = st.builds(
        _Event, st.uuids() | HOSTILE, _EVENT_TYPES | HOSTILE, _SUBJECTS, ids | HOSTILE
    )
    return {"automation": st.just(_AUTOMATION), "event": events, "step": steps}


@pytest.mark.parametrize("rule", _AUTOMATION.rules, ids=lambda r: r.name)
@_fuzz(30)
@given(data=st.data())
def test_rules_from_json_raise_only_crmkit_errors(rule: Any, data: Any) -> None:
    """Rule building from JSON: a valid document with one part swapped for something
    hostile raises an automation error, never anything else."""
    document = crmkit.automation.rules_to_json([rule])
    hostile = _mutated(document, data.draw)
    call(crmkit.automation.rules_from_json, [hostile], {})
    call(crmkit.automation.Automation.from_json, [hostile], {})


@attrs.define
class World:
    """A CRM over a store with one of each entity, and what a call may name."""

    crm: CRM
    ids: dict[str, list[UUID]]

    def known(self) -> dict[str, st.SearchStrategy[Any]]:
        def ids(*kinds: str) -> st.SearchStrategy[UUID]:
            found = [i for kind in kinds for i in self.ids[kind]]
            return st.sampled_from(found) if found else st.uuids()

        every = ids("contact", "lead", "deal", "ticket", "task", "activity")
        return {
            "contact_id": ids("contact"),
            "lead_id": ids("lead"),
            "deal_id": ids("deal"),
            "ticket_id": ids("ticket"),
            "task_id": ids("task"),
            "subject_id": every,
            "survivor_id": ids("contact"),
            "others": st.lists(ids("contact", "lead"), max_size=3),
            "record_id": ids("contact"),
            "id": every,
            "ids": st.lists(every, max_size=3),
            "pipeline": st.sampled_from(["sales", "inbound"]),
            "to": st.sampled_from(["discovery", "won", "lost", "new", "qualified", "junk", "open"]),
            "by": st.sampled_from(["ada", "bob", None]),
            "touch": _attempt(
                Touchpoint,
                email=st.sampled_from(["jo@example.com", "JO@example.com", "x@y.org"]),
                source=cst.texts(),
                channel=st.sampled_from(LeadChannel),
                custom=values_of(dict[str, Any]),
            ),
            "plan": _attempt(CheckInPlan, every=st.timedeltas(min_value=timedelta(seconds=1))),
            "task": _attempt(
                lambda contact, due, kind: Task.new(
                    title="Call", kind=kind, contact_id=contact, due_at=due
                ),
                ids("contact"),
                _DATETIMES.filter(lambda d: d.tzinfo is not None),
                st.sampled_from(TaskKind),
            ),
            "activity": cst.activities().map(
                lambda a: attrs.evolve(a, contact_id=self.ids["contact"][0])
            ),
            "channel": st.one_of(st.sampled_from(TicketChannel), st.sampled_from(ConsentChannel)),
            "purpose": st.sampled_from(["newsletter", "sales", "ads"]),
            "policy": st.builds(
                crmkit.privacy.RetentionPolicy,
                st.none() | st.integers(1, 40),
                st.none() | st.integers(1, 400),
                st.none() | st.integers(1, 5),
                st.sampled_from(crmkit.privacy.RetentionAction),
            ),
            "approved_by": st.sampled_from(["legal", "ada", None]),
            "dry_run": st.booleans(),
            "event_type": st.sampled_from([*crmkit.automation.EVENT_TYPES, "*", "lead.sneezed"]),
            "handler": st.sampled_from(_HANDLERS),
            "name": st.sampled_from(["speed-to-lead", "", " ", "x" * 300]),
            "handlers": st.lists(st.sampled_from(["speed-to-lead", "h"]), max_size=2),
            "events": st.lists(cst.events(), max_size=3),
            "event_id": st.uuids(),
        } | _automation_known(every)


def _quiet(_: CRM, __: Any) -> None:
    return None


def _raising(_: CRM, __: Any) -> None:
    raise RuntimeError("the host's handler fails")


def _busy(crm: CRM, event: Any) -> None:
    crm.record_activity(
        crmkit.models.Activity.new(
            contact_id=event.subject_id, kind=crmkit.models.ActivityKind.NOTE
        )
    )


_HANDLERS = (_quiet, _raising, _busy)


def _outbox_methods() -> list[str]:
    with MemoryStore().unit_of_work() as unit:
        return [n for n, _ in inspect.getmembers(unit.outbox, inspect.ismethod) if n[0] != "_"]


@pytest.mark.parametrize("method", _outbox_methods())
@_fuzz(12)
@given(data=st.data())
def test_outbox_methods_raise_only_crmkit_errors(method: str, data: Any) -> None:
    world = _world(MemoryStore(tenant="fuzz", clock=FixedClock(_NOW)))
    world.crm.subscribe("*", _quiet, name="h")
    world.crm.dispatch()
    with world.crm.store.unit_of_work() as unit:
        function = getattr(unit.outbox, method)
        args, kwargs = data.draw(arguments(function, world.known()), label="arguments")
        call(function, args, kwargs)
        unit.rollback()


def _world(store: Store) -> World:
    crm = CRM(
        store,
        pipelines=[SALES, INBOUND],
        lead_pipeline="inbound",
        sla_policies=[SlaPolicy(name="all", first_response=timedelta(hours=4))],
        consent_policy=ConsentPolicy({"newsletter", "sales"}, caps={"email": FrequencyCap(2, 7)}),
        token_secret=b"fuzz" * 8,
        clock=FixedClock(_NOW, step=timedelta(seconds=1)),
        privacy_secret=b"fuzz-secret-0123456789",
    )
    touch = Touchpoint(
        email=f"{uuid4().hex[:8]}@example.com", source="form", channel=LeadChannel.FORM
    )
    captured = crm.capture_lead(touch)
    contact = captured.contact
    converted = crm.convert_lead(captured.lead.id, pipeline="sales", title="Engine")
    ticket = crm.open_ticket(contact.id, subject="Help", channel=TicketChannel.EMAIL)
    task = crm.create_task(
        Task.new(title="Call", kind=TaskKind.CALL, contact_id=contact.id, due_at=_NOW)
    )
    other = crm.capture_lead(
        Touchpoint(email=f"{uuid4().hex[:8]}@example.com", source="chat", channel=LeadChannel.CHAT)
    )
    return World(
        crm,
        {
            "contact": [contact.id, other.contact.id],
            "lead": [captured.lead.id, other.lead.id],
            "deal": [converted.deal.id],
            "ticket": [ticket.id],
            "task": [task.id],
            "activity": [captured.activity.id],
        },
    )


CRM_METHODS = [
    name for name, member in inspect.getmembers(CRM, inspect.isfunction) if not name.startswith("_")
]


@pytest.mark.parametrize("method", CRM_METHODS)
@_fuzz(12)
@given(data=st.data())
def test_crm_methods_raise_only_crmkit_errors(method: str, data: Any) -> None:
    world = _world(MemoryStore(tenant="fuzz", clock=FixedClock(_NOW)))
    function = getattr(world.crm, method)
    for _ in range(2):  # twice: the second call meets what the first one changed
        args, kwargs = data.draw(arguments(function, world.known()), label="arguments")
        call(function, args, kwargs)


REPOSITORIES = (*crmkit.storage.REPOSITORIES.values(), "steps")
"""Every repository of a unit of work: one per entity, and the steps (durable timers)."""


def _repository_methods() -> list[tuple[str, str]]:
    store = MemoryStore()
    with store.unit_of_work() as unit:
        return [
            (repository, name)
            for repository in REPOSITORIES
            for name, member in inspect.getmembers(getattr(unit, repository), inspect.ismethod)
            if not name.startswith("_")
        ]


def _step_known(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """What the steps repository's methods may be called with: steps and their times."""
    known = world.known()
    step = _attempt(
        crmkit.automation.new_step,
        st.sampled_from(["fuzz", ""]) | cst.texts(),
        values_of(dict[str, Any]),
        due_at=_DATETIMES,
        now=_DATETIMES,
    )
    known.update(
        step=step,
        steps=st.lists(step, max_size=3),
        now=_DATETIMES,
        until=_DATETIMES,
        lease=st.uuids(),
        limit=st.integers(-1, 20),
        kinds=st.none() | st.lists(cst.texts(), max_size=2),
    )
    return known


def _repository_known(world: World, repository: Any) -> dict[str, st.SearchStrategy[Any]]:
    if not hasattr(repository, "entity"):
        return _step_known(world)
    entity = repository.entity
    known = world.known()
    fields = sorted(crmkit.storage.sortable_fields(entity))
    orders = st.builds(crmkit.storage.Order, st.sampled_from(fields), st.booleans())
    entity_rule = {e.value: e for e in RuleEntity}.get(entity.entity_name)
    rules = cst.rules(entity_rule) if entity_rule is not None else HOSTILE
    known.update(
        item=cst.for_type(entity),
        items=st.lists(cst.for_type(entity), max_size=3),
        activity=cst.for_type(entity),
        order=orders,
        rule=rules,
        now=_DATETIMES,
        after=st.tuples(orders, HOSTILE, st.uuids()).map(lambda t: crmkit.storage.Cursor(*t)),
    )
    return known


@pytest.mark.parametrize(("repository", "method"), _repository_methods())
@_fuzz(8)
@given(data=st.data())
def test_repository_methods_raise_only_crmkit_errors(
    repository: str, method: str, data: Any
) -> None:
    world = _world(MemoryStore(tenant="fuzz", clock=FixedClock(_NOW)))
    _repository_calls(world, repository, method, data)


def _repository_calls(world: World, repository: str, method: str, data: Any) -> None:
    with world.crm.store.unit_of_work() as unit:
        repo = getattr(unit, repository)
        function = getattr(repo, method)
        known = _repository_known(world, repo)
        args, kwargs = data.draw(arguments(function, known), label="arguments")
        call(function, args, kwargs)
        # A second page, ordered by any field: its cursor came from the first.
        if method == "find" and data.draw(st.booleans()):
            order = data.draw(known["order"], label="order")
            first = call(repo.find, [], {"order": order, "limit": 1})
            if first is not None and first.next is not None:
                call(repo.find, [], {"order": order, "limit": 1, "after": first.next})
                call(crmkit.storage.Cursor.from_token, [first.next.token(), repo.entity], {})
        unit.rollback()


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    store = open_store(f"sqlite:///{path}", tenant="fuzz", clock=FixedClock(_NOW))
    yield _world(store)
    store.close()


@_fuzz(40)
@given(data=st.data())
def test_sqlite_crm_and_repositories_raise_only_crmkit_errors(
    sqlite_world: World, data: Any
) -> None:
    """A smaller pass over the SQL adapter: the same calls, on SQLite."""
    if data.draw(st.booleans()):
        method = data.draw(st.sampled_from(CRM_METHODS), label="method")
        function = getattr(sqlite_world.crm, method)
        args, kwargs = data.draw(arguments(function, sqlite_world.known()), label="arguments")
        call(function, args, kwargs)
    else:
        repository, method = data.draw(st.sampled_from(_repository_methods()), label="method")
        _repository_calls(sqlite_world, repository, method, data)


# ------------------------------------------------------------------ the command line

_CLI_OPTIONS = (
    "--db", "--tenant", "--setup", "--rule", "--rule-file", "--name", "--list", "--save",
    "--count", "--limit", "--json", "--model", "--lead", "--accounts", "--estimate",
    "--contact", "--email", "--by", "--reason", "--yes", "--approved-by", "--out", "--csv",
    "--months", "--title", "--help",
)  # fmt: skip


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A small SQLite store for the commands, and the values worth passing them."""
    folder = tmp_path_factory.mktemp("cli-fuzz")
    store = open_store(f"sqlite:///{folder / 'crm.db'}", clock=FixedClock(_NOW))
    crm = CRM(store)
    captured = crm.capture_lead(
        Touchpoint(email="ada@example.com", source="web", channel=LeadChannel.FORM)
    )
    store.close()
    rule = '{"entity": "contact", "where": {"node": "compare", "field": "country", "op": "eq", "value": "DE"}}'  # noqa: E501
    values = [
        str(folder / "crm.db"), f"sqlite:///{folder / 'crm.db'}", str(folder / "none.db"),
        "sqlite:///:memory:", "postgresql+psycopg://nobody@127.0.0.1:1/none", "",
        "-1", "0", "3", "1e9", "x", "\x00", "é" * 3, "{}", '{"entity":', rule, "[]",
        str(captured.contact.id), str(captured.lead.id), str(uuid4()), "ada@example.com",
        "not-an-email", str(folder / "out.html"), str(folder / "no" / "out.html"),
        str(folder), str(folder / "export"), "os:getcwd", "json:loads", "no.such:thing",
        "crmkit.cli:main", "default", "other tenant",
    ]  # fmt: skip
    return folder, values


@_fuzz(60)
@given(data=st.data())
def test_the_command_line_exits_cleanly(cli_world: tuple[Path, list[str]], data: Any) -> None:
    """Any command line: an exit status of 0, 1 or 2 and never a traceback."""
    folder, values = cli_world
    from crmkit.cli import main  # noqa: PLC0415

    command = data.draw(st.sampled_from(["import", "segment", "score", "dedupe", "export", "erase",
                                         "report"]), label="command")  # fmt: skip
    words = data.draw(
        st.lists(st.one_of(st.sampled_from(_CLI_OPTIONS), st.sampled_from(values),
                           st.text(max_size=8)), max_size=8),
        label="words",
    )  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status: object = main([command, *words])
        except SystemExit as stopped:  # argparse: --help (0) or a usage error (2)
            status = stopped.code
    assert status in (0, 1, 2), (command, words, status, err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".part") == []


# ------------------------------------------------------------------ import of CSV files

_HEADERS = ["email", "E-Mail", "Vorname", "Land", "phone", "created_at", "tags", "custom.plan",
            "Förnamn", "", "name", "do_not_contact", "lifecycle_stage", "x"]  # fmt: skip
_CELLS = st.one_of(
    st.sampled_from(["ada@example.com", "ADA@example.com", "DE", "Sverige", "yes", "customer",
                     "2021-03-04", "31.12.2020", "+49 30 901820", "a;b", '"', "\r\n", ""]),
    st.text(max_size=12),
)  # fmt: skip


@st.composite
def _csv_files(draw: st.DrawFn) -> bytes:
    """CSV files of contacts: a header of known and unknown names, rows of plausible and
    hostile cells (quotes, line breaks, wrong counts), in one of several encodings and
    separators; or bytes of any kind."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    separator = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.lists(st.sampled_from(_HEADERS), min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(_CELLS, max_size=len(header) + 1), max_size=6))
    lines = [separator.join(header)]
    lines += [separator.join(row) for row in rows]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
    return text.encode(encoding, errors="replace")


@_fuzz(60)
@given(data=_csv_files(), on_duplicate=st.sampled_from(["skip", "merge", "create"]))
def test_import_csv_raises_only_crmkit_errors_and_counts_every_row(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, on_duplicate: str
) -> None:
    from crmkit.crm import import_csv  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("import")
    source = folder / "in.csv"
    source.write_bytes(data)
    crm = CRM(MemoryStore("fuzz", clock=FixedClock(_NOW)))
    report = call(import_csv, [crm, "contacts", source], {"on_duplicate": on_duplicate})
    if report is not None:
        done = report.created + report.merged + report.skipped + report.rejected
        assert done + report.already_imported == report.rows
        with crm.store.unit_of_work() as unit:
            assert unit.contacts.count() == report.created
