"""The tables: SQLAlchemy Core, one per entity, on a :class:`~sqlalchemy.MetaData`.

Every table starts with ``tenant`` and its primary key is ``(tenant, id)``. Fields map
to columns by their storage kind (:mod:`crmkit.storage._columns`), with extra columns
that let SQL answer rules exactly as Python does:

* ``<field>_fold``: the ``str.casefold()`` of a text field (of tags, of the string
  values of custom fields), stored only when it differs from the value, because SQL's
  ``lower()`` folds ASCII alone in SQLite and differs from ``casefold`` everywhere;
* money and decimals as exact text plus ``<field>_units`` (the floor) and
  ``<field>_nanos`` (the fraction in 10^-12), integers that compare and add exactly in
  every database; money also has ``<field>_currency``.
"""

import re
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Final

import attrs
import sqlalchemy as sa

from crmkit.errors import ValidationError
from crmkit.models import Activity, Entity, Segment
from crmkit.models.rules import ACTIVITY_FIELDS, FIELDS, FieldType, RuleEntity
from crmkit.storage._columns import ENTITIES, Kind, columns, memo
from crmkit.storage.sql.types import JSONText, TagList, Timestamp, UUIDType

__all__ = ["DEFAULT_PREFIX", "Schema", "fold_fields", "metadata", "schema"]

DEFAULT_PREFIX: Final = "crm_"
"""The table name prefix of :func:`schema` and :func:`~crmkit.storage.sql.open_store`."""

_TABLE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "contact": "contacts",
        "account": "accounts",
        "lead": "leads",
        "deal": "deals",
        "ticket": "tickets",
        "activity": "activities",
        "task": "tasks",
        "segment": "segments",
        "consent": "consents",
        "stage_change": "stage_changes",
    }
)

# Indexes that serve the common queries and segment shapes; the tenant always leads.
_INDEXES: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = MappingProxyType(
    {
        "contact": (
            ("lifecycle_stage",),
            ("country",),
            ("created_at",),
            ("email",),
            ("account_id",),
        ),
        "account": (("domain",), ("created_at",)),
        "lead": (("status", "score"), ("score",), ("contact_id",), ("created_at",)),
        "deal": (("pipeline", "stage"), ("status",), ("contact_id",), ("created_at",)),
        "ticket": (("status", "priority"), ("contact_id",), ("created_at",)),
        "activity": (("contact_id", "kind", "occurred_at"), ("occurred_at",)),
        "task": (("status", "due_at"), ("contact_id",)),
        "segment": (("name",),),
        "consent": (("contact_id", "channel", "purpose"),),
        "stage_change": (("subject", "subject_id", "at"),),
    }
)

_TEXTUAL: Final = frozenset({FieldType.TEXT, FieldType.EMAIL})


@memo
def fold_fields(entity: type[Entity]) -> tuple[str, ...]:
    """The text fields of ``entity`` that rules can match, which get a casefold shadow."""
    if entity is Activity:
        specs = ACTIVITY_FIELDS
    else:
        rule_entity = {e.value: e for e in RuleEntity}.get(entity.entity_name)
        if rule_entity is None:
            return ()
        specs = FIELDS[rule_entity]
    return tuple(name for name, spec in specs.items() if spec.kind in _TEXTUAL)


@attrs.frozen
class Schema:
    """crmkit's tables on one :class:`~sqlalchemy.MetaData`, by entity class."""

    metadata: sa.MetaData
    tables: Mapping[type[Entity], sa.Table]
    members: sa.Table
    """The table of static segments' members, keyed ``(tenant, segment_id, member_id)``."""

    def table(self, entity: type[Entity]) -> sa.Table:
        """The table of ``entity``."""
        return self.tables[entity]


def _text(length: int | None = None) -> sa.types.TypeEngine[str]:
    """Text compared by code point everywhere, as Python compares ``str``: SQLite's
    default; on PostgreSQL the ``C`` collation."""
    plain = sa.String(length) if length else sa.Text()
    exact = sa.String(length, collation="C") if length else sa.Text(collation="C")
    return plain.with_variant(exact, "postgresql")


def _columns_of(entity: type[Entity]) -> list[sa.Column[object]]:  # noqa: PLR0912
    made: list[sa.Column[object]] = [sa.Column("tenant", _text(64), primary_key=True)]
    folded = fold_fields(entity)
    for column in columns(entity).values():
        name, nullable = column.name, column.optional
        match column.kind:
            case Kind.UUID:
                made.append(
                    sa.Column(name, UUIDType(), primary_key=name == "id", nullable=nullable)
                )
            case Kind.INT:
                kind = sa.Integer() if name == "version" else sa.BigInteger()
                made.append(sa.Column(name, kind, nullable=nullable))
            case Kind.FLOAT:
                made.append(sa.Column(name, sa.Double(), nullable=nullable))
            case Kind.BOOL:
                made.append(sa.Column(name, sa.Boolean(create_constraint=False), nullable=nullable))
            case Kind.TEXT:
                made.append(sa.Column(name, _text(), nullable=nullable))
                if name in folded:
                    made.append(sa.Column(f"{name}_fold", _text(), nullable=True))
            case Kind.ENUM:
                made.append(sa.Column(name, _text(32), nullable=nullable))
            case Kind.DATETIME:
                made.append(sa.Column(name, Timestamp(), nullable=nullable))
            case Kind.DATE:
                made.append(sa.Column(name, sa.Date(), nullable=nullable))
            case Kind.DECIMAL | Kind.MONEY:
                made.append(sa.Column(name, sa.String(40), nullable=nullable))
                if column.kind is Kind.MONEY:
                    made.append(sa.Column(f"{name}_currency", sa.CHAR(3), nullable=nullable))
                made.append(sa.Column(f"{name}_units", sa.BigInteger(), nullable=nullable))
                made.append(sa.Column(f"{name}_nanos", sa.BigInteger(), nullable=nullable))
            case Kind.TAGS:
                made.append(sa.Column(name, TagList(), nullable=False))
                made.append(sa.Column(f"{name}_fold", TagList(), nullable=True))
            case Kind.JSON:
                made.append(sa.Column(name, JSONText(), nullable=False))
                made.append(sa.Column(f"{name}_fold", JSONText(), nullable=True))
            case Kind.RULE:
                made.append(sa.Column(name, JSONText(), nullable=nullable))
            case Kind.UUID_SET:
                pass  # rows of the members table
    return made


_PREFIX: Final = re.compile(r"[a-z][a-z0-9_]{0,30}\Z")


def schema(prefix: str = DEFAULT_PREFIX) -> Schema:
    """crmkit's tables, named ``<prefix><entity>s`` (``crm_contacts``), on a MetaData.

    The same prefix always gives the same :class:`Schema` object, so a host application
    can add ``schema(prefix).metadata`` to its Alembic ``target_metadata``. A prefix is
    1 to 31 lower-case ASCII letters, digits and ``_``, starting with a letter.
    """
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValidationError(
            "prefix", prefix, "a table prefix is lower-case ASCII letters, digits and '_'"
        )
    return _schema(prefix)


@cache
def _schema(prefix: str) -> Schema:
    meta = sa.MetaData()
    tables: dict[type[Entity], sa.Table] = {}
    for entity in ENTITIES:
        name = f"{prefix}{_TABLE_NAMES[entity.entity_name]}"
        indexes = [
            sa.Index(f"ix_{name}_{'_'.join(cols)}", "tenant", *cols)
            for cols in _INDEXES.get(entity.entity_name, ())
        ]
        tables[entity] = sa.Table(name, meta, *_columns_of(entity), *indexes)
    segments = tables[Segment]
    members = sa.Table(
        f"{prefix}segment_members",
        meta,
        sa.Column("tenant", _text(64), primary_key=True),
        sa.Column("segment_id", UUIDType(), primary_key=True),
        sa.Column("member_id", UUIDType(), primary_key=True),
        sa.ForeignKeyConstraint(
            ["tenant", "segment_id"],
            [segments.c.tenant, segments.c.id],
            ondelete="CASCADE",
        ),
    )
    return Schema(meta, MappingProxyType(tables), members)


metadata: Final = schema().metadata
"""The MetaData of crmkit's tables with the default prefix ``crm_``."""
