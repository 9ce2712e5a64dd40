"""The stage-history replays of the KPIs (``reach`` and ``standing``) as one grouped SQL
query each: the database reads the history and returns a row per group, never a row per
subject."""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from crmkit.analytics import REPLAYED, Reach, Standing
from crmkit.models import Contact, StageChange, SubjectKind
from crmkit.storage._columns import columns
from crmkit.storage.sql._schema import HISTORY_SNAPSHOT, Schema

__all__ = [
    "customer_spans_queries",
    "reach_query",
    "read_reach",
    "read_standing",
    "standing_query",
    "standing_reader",
    "standings_query",
]


def _rank(column: Any, ranks: Mapping[str, int]) -> Any:
    return sa.case(ranks, value=column, else_=None) if ranks else sa.null()


def _greatest(dialect: str, *values: Any) -> Any:
    """The greatest of ``values``, ``-1`` standing for none (ranks start at 0)."""
    present = [sa.func.coalesce(v, -1) for v in values]
    return sa.func.max(*present) if dialect == "sqlite" else sa.func.greatest(*present)


def _group_column(table: sa.Table, group: str | None) -> Any:
    return sa.null() if group is None else table.c[group]


def _stage_column(table: sa.Table, subject: SubjectKind) -> Any:
    return table.c.lifecycle_stage if subject is SubjectKind.CONTACT else table.c.stage


def reach_query(
    tables: Schema,
    dialect: str,
    tenant: str,
    *,
    subject: SubjectKind,
    ranks: Mapping[str, int],
    until: datetime,
    pipeline: str | None,
    where: list[Any],
    group: str | None,
) -> sa.Select[Any]:
    """``SELECT group, reached, entered, count(*)`` over the subjects and their moves;
    ``where`` holds the conditions on the subject table (tenant, rule)."""
    changes = tables.table(StageChange)
    subjects = tables.table(REPLAYED[subject])
    on_changes = [changes.c.tenant == tenant, changes.c.subject == subject.value]
    if pipeline is not None:
        on_changes.append(changes.c.pipeline == pipeline)
    before = changes.c.at < until
    per_subject = (
        sa.select(
            changes.c.subject_id.label("subject_id"),
            sa.func.max(sa.case((before, _rank(changes.c.to_stage, ranks)))).label("entered"),
            sa.func.max(sa.case((before, _rank(changes.c.from_stage, ranks)))).label("passed"),
            # only read when no move came before until: the moves after it suffice, and
            # the rank is computed for those alone
            sa.func.min(sa.case((~before, _rank(changes.c.from_stage, ranks)))).label("lowest"),
            sa.func.count(sa.case((before, 1))).label("before"),
        )
        .where(*on_changes)
        .group_by(changes.c.subject_id)
        .subquery("per_subject")
    )
    start = sa.case(
        (per_subject.c.subject_id.is_(None), _rank(_stage_column(subjects, subject), ranks)),
        (per_subject.c.before == 0, per_subject.c.lowest),
        else_=None,
    )
    reached = _greatest(dialect, per_subject.c.entered, per_subject.c.passed, start)
    key = _group_column(subjects, group)
    conditions = [*where, _unindexed(dialect, subjects.c.created_at) < until, reached >= 0]
    if pipeline is not None:
        conditions.append(subjects.c.pipeline == pipeline)
    joined = subjects.outerjoin(per_subject, per_subject.c.subject_id == subjects.c.id)
    rows = (
        sa.select(key.label("key"), reached.label("reached"), per_subject.c.entered)
        .select_from(joined)
        .where(*conditions)
        .subquery("reach")
    )
    keys = [rows.c.reached, rows.c.entered]
    if group is not None:
        keys.insert(0, rows.c.key)
    return sa.select(
        rows.c.key if group is not None else sa.null(), *keys[-2:], sa.func.count()
    ).group_by(*keys)


def _unindexed(dialect: str, column: Any) -> Any:
    """``column`` as SQLite's planner must not choose an index for (``+column``): "created
    before until" holds for nearly every subject, and reading the whole table in order
    costs a fraction of reading it row by row in the order of a created_at index (measured
    a quarter of the contacts' share of the lifecycle funnel)."""
    if dialect != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"), type_=column.type)


def _decoder(subject: SubjectKind, group: str | None) -> Any:
    if group is None:
        return lambda value: None
    enum = columns(REPLAYED[subject])[group].enum
    if enum is None:
        return lambda value: value
    return lambda value: None if value is None else enum(value)


def read_reach(rows: Sequence[Any], subject: SubjectKind, group: str | None) -> list[Reach]:
    decode = _decoder(subject, group)
    return [Reach(decode(g), int(r), None if e is None else int(e), int(n)) for g, r, e, n in rows]


def _last_moves(
    dialect: str,
    changes: sa.Table,
    on_changes: list[Any],
    span: tuple[datetime | None, datetime],
    name: str,
    *,
    row: str | None,
) -> sa.Subquery:
    """Each subject's moves in ``span`` (``(since, before)``; ``since`` ``None``: from
    the first) ranked, ``place`` 1 the last, with the columns of the stage-history index
    (subject, pipeline, stage, time) and, by ``row``, the rest of a move's snapshot
    (:data:`~crmkit.storage.sql._schema.HISTORY_SNAPSHOT`): ``"rowid"`` SQLite's rowid,
    to read it for the last moves alone; ``"snapshot"`` the snapshot's columns, which
    PostgreSQL's index carries (schema 15), so that the ranking reads the index alone
    and no table row."""
    # at one instant, a move after an update snapshot (from_stage = to_stage), as in
    # crmkit.analytics.replay_standing
    snapshot = sa.case((changes.c.from_stage == changes.c.to_stage, 0), else_=1)
    order = sa.func.row_number().over(
        partition_by=changes.c.subject_id,
        order_by=(changes.c.at.desc(), snapshot.desc(), changes.c.id.desc()),
    )
    c = changes.c
    wanted: list[Any] = [c.subject_id, c.pipeline, c.to_stage, c.at]
    if row == "rowid":
        wanted.append(sa.literal_column("rowid", sa.Integer).label("row"))
    elif row == "snapshot":
        wanted.extend(c[column] for column in HISTORY_SNAPSHOT)
    # The time bounds are no index seek (SQLite's +at): the ranking reads the index in
    # subject order; with the planner's priors (before ANALYZE) SQLite would otherwise
    # skip-scan on the time range and sort every move (measured 2.5 -> 7 s at 3M moves).
    at = _unindexed(dialect, changes.c.at)
    since, before = span
    within = [at < before]
    if since is not None:
        within.append(at >= since)
    return sa.select(*wanted, order.label("place")).where(*on_changes, *within).subquery(name)


def _seconds(dialect: str, later: Any, earlier: Any) -> Any:
    if dialect == "sqlite":
        return (sa.func.julianday(later) - sa.func.julianday(earlier)) * 86400.0
    stamp = sa.DateTime(timezone=True)
    return sa.extract("epoch", sa.type_coerce(later, stamp) - sa.type_coerce(earlier, stamp))


def standing_query(
    tables: Schema,
    dialect: str,
    tenant: str,
    *,
    subject: SubjectKind,
    until: datetime,
    since: datetime | None,
    then: datetime | None,
    pipeline: str | None,
    where: list[Any],
    group: str | None,
    stages: frozenset[str] | None = None,
) -> sa.Select[Any]:
    """``SELECT group, pipeline, stage, reason, currency, expected_close, later, count,
    sum(units), sum(nanos), sum(age)`` over each subject's last move before ``until``."""
    changes = tables.table(StageChange)
    subjects = tables.table(REPLAYED[subject])
    on_changes = [changes.c.tenant == tenant, changes.c.subject == subject.value]
    if pipeline is not None:
        on_changes.append(changes.c.pipeline == pipeline)
    rowid = dialect == "sqlite"  # else the ranking reads the snapshots off the index
    # A subject's last move before until is at or after since if and only if it moved
    # between them, and then it is its last move between them (and its last before
    # then, too): the moves before since need no ranking.
    last = _last_moves(
        dialect,
        changes,
        on_changes,
        (since, until),
        "last_move",
        row="rowid" if rowid else "snapshot",
    )
    joined = subjects.join(last, sa.and_(last.c.subject_id == subjects.c.id, last.c.place == 1))
    snapshot = last.c
    if rowid:  # each last move's snapshot, read by rowid
        move = changes.alias("move")
        joined = joined.join(move, sa.literal_column("move.rowid", sa.Integer) == last.c.row)
        snapshot = move.c
    later: Any = sa.null()
    if then is not None:
        after = _last_moves(dialect, changes, on_changes, (since, then), "later_move", row=None)
        joined = joined.join(
            after, sa.and_(after.c.subject_id == subjects.c.id, after.c.place == 1)
        )
        later = after.c.to_stage
    conditions = [*where, subjects.c.created_at < until]
    if since is not None:
        conditions.append(last.c.at >= since)
    if stages is not None:
        conditions.append(last.c.to_stage.in_(sorted(stages)) if stages else sa.false())
    if pipeline is not None:
        conditions.append(subjects.c.pipeline == pipeline)
    keys = (
        _group_column(subjects, group),
        last.c.pipeline,
        last.c.to_stage,
        snapshot.reason,
        snapshot.amount_currency,
        snapshot.expected_close,
        later,
    )
    return (
        sa.select(
            *keys,
            sa.func.count(),
            sa.func.sum(snapshot.amount_units),
            sa.func.sum(snapshot.amount_nanos),
            sa.func.sum(_seconds(dialect, last.c.at, subjects.c.created_at)),
        )
        .select_from(joined)
        .where(*conditions)
        .group_by(*(k for k in keys if not isinstance(k, sa.Null)))
    )


def standing_reader(subject: SubjectKind, group: str | None) -> Callable[[Sequence[Any]], Standing]:
    """The :class:`Standing` of one row of :func:`standing_query` (without the window
    index of :func:`standings_query`), so that rows become standings as they are fetched
    instead of all rows being held first."""
    decode = _decoder(subject, group)

    def read(row: Sequence[Any]) -> Standing:
        g, pipeline, stage, reason, currency, close, later, n, units, nanos, age = row
        amount = Decimal(int(units or 0)) + Decimal(int(nanos or 0)).scaleb(-12)
        return Standing(
            decode(g),
            pipeline,
            stage,
            reason,
            currency,
            close,
            later,
            int(n),
            amount,
            float(age or 0.0),
        )

    return read


def read_standing(rows: Sequence[Any], subject: SubjectKind, group: str | None) -> list[Standing]:
    read = standing_reader(subject, group)
    return [read(row) for row in rows]


def customer_spans_queries(
    tables: Schema, tenant: str, stages: frozenset[str]
) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The two queries of ``customer_spans``: ``(contact id, first move into stages,
    time of the last move if it left them)`` per contact a move took into ``stages``,
    and ``(contact id, created_at)`` of the contacts now in ``stages`` that no move took
    there (imported); one row per customer, grouped by the database."""
    changes = tables.table(StageChange)
    contacts = tables.table(Contact)
    inside = changes.c.to_stage.in_(sorted(stages))
    mine = [changes.c.tenant == tenant, changes.c.subject == SubjectKind.CONTACT.value]
    place = sa.func.row_number().over(
        partition_by=changes.c.subject_id, order_by=(changes.c.at.desc(), changes.c.id.desc())
    )
    # One pass in the order of the covering index: each contact's moves with the time of
    # its first move into stages (over the whole contact) and their rank. (A grouping for
    # the first moves joined to a ranking for the last made SQLite scan one of them for
    # each row of the other once the index covered both: minutes at 3M moves.)
    ranked = (
        sa.select(
            changes.c.subject_id.label("subject_id"),
            sa.func.min(sa.case((inside, changes.c.at)))
            .over(partition_by=changes.c.subject_id)
            .label("first_in"),
            changes.c.to_stage,
            changes.c.at,
            place.label("place"),
        )
        .where(*mine)
        .subquery("ranked")
    )
    moved = sa.select(
        ranked.c.subject_id,
        ranked.c.first_in,
        sa.case((ranked.c.to_stage.in_(sorted(stages)), sa.null()), else_=ranked.c.at),
    ).where(ranked.c.place == 1, ranked.c.first_in.is_not(None))
    return moved, _imported(changes, contacts, tenant, stages)


def _imported(
    changes: sa.Table, contacts: sa.Table, tenant: str, stages: frozenset[str]
) -> sa.Select[Any]:
    """``(contact id, created_at)`` of the contacts now in ``stages`` that no move took
    there (imported at their stage)."""
    entered = sa.exists().where(
        changes.c.tenant == tenant,
        changes.c.subject == SubjectKind.CONTACT.value,
        changes.c.subject_id == contacts.c.id,
        changes.c.to_stage.in_(sorted(stages)),
    )
    return sa.select(contacts.c.id, contacts.c.created_at).where(
        contacts.c.tenant == tenant,
        contacts.c.lifecycle_stage.in_(sorted(stages)),
        ~entered,
    )


def standings_query(
    tables: Schema,
    dialect: str,
    tenant: str,
    *,
    subject: SubjectKind,
    windows: Sequence[tuple[datetime, datetime | None, datetime | None]],
    pipeline: str | None,
    where: list[Any],
    group: str | None,
    stages: frozenset[str] | None,
) -> sa.Select[Any]:
    """The rows of :func:`standing_query` for many ``(until, since, then)`` windows in
    one query, each row led by its window's index: the stage history is ordered once
    (each move with the time of the subject's next one) instead of once per window.
    ``stages`` (``None``: all) is the union of the windows' stages; the caller keeps
    each window's own (the stage is a key of the rows)."""
    changes = tables.table(StageChange)
    subjects = tables.table(REPLAYED[subject])
    c = changes.c
    on_changes = [c.tenant == tenant, c.subject == subject.value]
    if pipeline is not None:
        on_changes.append(c.pipeline == pipeline)
    snapshot = sa.case((c.from_stage == c.to_stage, 0), else_=1)
    following = sa.func.lead(c.at).over(partition_by=c.subject_id, order_by=(c.at, snapshot, c.id))
    moves = (
        sa.select(
            c.subject_id,
            c.pipeline,
            c.to_stage,
            c.reason,
            c.at,
            c.expected_close,
            c.amount_currency,
            c.amount_units,
            c.amount_nanos,
            following.label("next_at"),
        )
        .where(*on_changes)
        .cte("moves")
    )
    stamp = c.at.type

    def rows(values: Sequence[tuple[int, int, Sequence[datetime | None]]]) -> Any:
        # a constant table (i, u, t0, t1...): a SELECT of literals per row, the times
        # typed as the history's
        return sa.union_all(
            *(
                sa.select(
                    sa.literal(i, sa.Integer).label("i"),
                    sa.literal(u, sa.Integer).label("u"),
                    *(
                        sa.cast(sa.literal(t, stamp), stamp).label(f"t{n}")
                        for n, t in enumerate(ts)
                    ),
                )
                for i, u, ts in values
            )
        )

    # Windows share their untils (a period's end is the next one's start): each move is
    # matched to the distinct untils (a range join), then to the windows by equality.
    untils = sorted({until for until, _, _ in windows})
    place = {until: n for n, until in enumerate(untils)}
    bounds = rows([(n, n, (until,)) for n, until in enumerate(untils)]).cte("bounds")
    asked = rows(
        [(k, place[until], (since, then)) for k, (until, since, then) in enumerate(windows)]
    ).cte("windows")
    last = moves.alias("last_move")
    joined = (
        bounds.join(
            last,
            sa.and_(
                last.c.at < bounds.c.t0,
                sa.or_(last.c.next_at.is_(None), last.c.next_at >= bounds.c.t0),
            ),
        )
        .join(asked, asked.c.u == bounds.c.u)
        .join(subjects, subjects.c.id == last.c.subject_id)
    )
    later: Any = sa.null()
    if any(then is not None for _, _, then in windows):  # a backtest: the stage at then
        after = moves.alias("later_move")
        joined = joined.outerjoin(
            after,
            sa.and_(
                after.c.subject_id == last.c.subject_id,
                after.c.at < asked.c.t1,
                sa.or_(after.c.next_at.is_(None), after.c.next_at >= asked.c.t1),
            ),
        )
        later = after.c.to_stage
    conditions = [
        *where,
        subjects.c.created_at < bounds.c.t0,
        sa.or_(asked.c.t0.is_(None), last.c.at >= asked.c.t0),
    ]
    if stages is not None:
        conditions.append(last.c.to_stage.in_(sorted(stages)) if stages else sa.false())
    if pipeline is not None:
        conditions.append(subjects.c.pipeline == pipeline)
    keys = (
        asked.c.i,
        _group_column(subjects, group),
        last.c.pipeline,
        last.c.to_stage,
        last.c.reason,
        last.c.amount_currency,
        last.c.expected_close,
        later,
    )
    return (
        sa.select(
            *keys,
            sa.func.count(),
            sa.func.sum(last.c.amount_units),
            sa.func.sum(last.c.amount_nanos),
            sa.func.sum(_seconds(dialect, last.c.at, subjects.c.created_at)),
        )
        .select_from(joined)
        .where(*conditions)
        .group_by(*(k for k in keys if not isinstance(k, sa.Null)))
    )
