"""Export (access and portability): one person's records as a bundle with a manifest,
written as one JSON document or as CSV files."""

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from uuid import UUID

import attrs

from crmkit.clock import ensure_utc
from crmkit.errors import ValidationError
from crmkit.models import Entity, Segment
from crmkit.serialization import CrmkitConverter, make_converter

__all__ = ["EXPORT_FORMAT", "Bundle", "Manifest", "bundle_of"]

EXPORT_FORMAT: Final = 1
"""The version of the bundle's layout, in its manifest."""

_converter: Final = make_converter()
Document = Mapping[str, Any]


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@attrs.frozen
class Manifest:
    """What a bundle holds: per section (repository) how many records and the SHA-256
    of their canonical JSON, for whom, from which tenant, when and by whom."""

    tenant: str
    contact_id: UUID
    exported_at: datetime
    by: str | None
    counts: Mapping[str, int]
    checksums: Mapping[str, str]
    format: int = EXPORT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-compatible data."""
        return {
            "format": self.format,
            "tenant": self.tenant,
            "contact_id": str(self.contact_id),
            "exported_at": self.exported_at.isoformat(),
            "by": self.by,
            "counts": dict(self.counts),
            "checksums": dict(self.checksums),
        }


@attrs.frozen
class Bundle:
    """Everything stored about one person: ``sections`` maps a repository's name
    (``"contacts"``, ``"leads"``, ``"activities"``, ...) to its records as JSON
    documents, in the form :func:`~crmkit.serialization.make_converter` writes;
    ``"segments"`` lists the segments the person is a member of (id, name, kind: never
    the other members); ``"merges"`` the merges of the person's records, with the
    images of the person's rows only."""

    manifest: Manifest
    sections: Mapping[str, tuple[Document, ...]]

    def to_json(self) -> str:
        """The bundle as one JSON document: ``{"manifest": ..., "data": {...}}``."""
        data = {name: list(docs) for name, docs in self.sections.items()}
        return json.dumps(
            {"manifest": self.manifest.to_dict(), "data": data}, ensure_ascii=False, indent=1
        )

    def to_csv(self, *, spreadsheet_safe: bool = True) -> dict[str, str]:
        """The bundle as CSV files by name: ``<section>.csv`` for each section (one row
        per record, one column per field; values that are not text are JSON) and
        ``manifest.json``.

        CSV files are opened in spreadsheets, which run a cell that starts with ``=``,
        ``+``, ``-``, ``@``, a tab or a carriage return as a formula (CSV injection): with
        ``spreadsheet_safe`` (the default) such a text cell is written with a leading
        ``'``, which spreadsheets show as text. ``spreadsheet_safe=False`` writes every
        value as stored (the JSON of :meth:`to_json` always does)."""
        files = {"manifest.json": json.dumps(self.manifest.to_dict(), indent=1)}
        for name, docs in self.sections.items():
            columns = sorted({key for doc in docs for key in doc})
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            for doc in docs:
                writer.writerow([_cell(doc.get(column), spreadsheet_safe) for column in columns])
            files[f"{name}.csv"] = out.getvalue()
        return files

    def verify(self) -> bool:
        """Whether every section still has the count and checksum of the manifest."""
        return all(
            self.manifest.counts.get(name) == len(docs)
            and self.manifest.checksums.get(name) == _checksum(docs)
            for name, docs in self.sections.items()
        ) and set(self.manifest.counts) == set(self.sections)

    def texts(self) -> Iterator[str]:
        """Every text value in the bundle's records (for checks such as "no personal
        value is left")."""
        for docs in self.sections.values():
            for doc in docs:
                yield from _texts(doc)


def _texts(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object, spreadsheet_safe: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        if spreadsheet_safe and value.startswith(_FORMULA_STARTS):
            return "'" + value
        return value
    return _canonical(value)


def _checksum(docs: Iterable[Document]) -> str:
    return hashlib.sha256(_canonical(list(docs)).encode()).hexdigest()


def bundle_of(
    *,
    tenant: str,
    contact_id: UUID,
    records: Mapping[str, Iterable[Entity | Document]],
    segments: Iterable[Segment],
    at: datetime,
    by: str | None = None,
    converter: CrmkitConverter | None = None,
    merges: Iterable[Document] = (),
) -> Bundle:
    """The bundle of a person's ``records`` (by repository name, each section in the
    order given; each an entity, or the JSON document ``converter`` makes of it, as
    ``Repository.referring_documents`` reads it), the ``segments`` they are a member
    of and the ``merges`` of their records (JSON documents, as
    :func:`crmkit.storage.merge_to_json` writes them; the section ``"merges"``),
    exported ``at``."""
    convert = _converter if converter is None else converter
    if not isinstance(convert, CrmkitConverter):
        raise ValidationError("converter", converter, "expected a CrmkitConverter or None")
    if not isinstance(tenant, str):
        raise ValidationError("tenant", tenant, "expected a tenant key")
    if not isinstance(contact_id, UUID):
        raise ValidationError("contact_id", contact_id, "expected a UUID")
    at = ensure_utc(at, "at")
    if by is not None and not isinstance(by, str):
        raise ValidationError("by", by, "expected the host's user id or None")
    sections = _sections(records, convert)
    sections["segments"] = _segments(segments)
    sections["merges"] = _documents(merges, "merges")
    manifest = Manifest(
        tenant=tenant,
        contact_id=contact_id,
        exported_at=at,
        by=by,
        counts=MappingProxyType({name: len(docs) for name, docs in sections.items()}),
        checksums=MappingProxyType({name: _checksum(docs) for name, docs in sections.items()}),
    )
    return Bundle(manifest, MappingProxyType(sections))


def _sections(records: object, convert: CrmkitConverter) -> dict[str, tuple[Document, ...]]:
    if not isinstance(records, Mapping):
        raise ValidationError("records", records, "expected a mapping of sections to entities")
    sections: dict[str, tuple[Document, ...]] = {}
    for name, items in records.items():
        if not isinstance(name, str) or isinstance(items, str | bytes | Mapping):
            raise ValidationError("records", name, "expected entities by section name")
        if not isinstance(items, Iterable):
            raise ValidationError(f"records.{name}", items, "expected entities")
        checked = []
        for index, item in enumerate(items):
            if isinstance(item, Entity):
                checked.append(convert.unstructure(item))
            elif isinstance(item, Mapping):
                checked.append(item)
            else:
                raise ValidationError(
                    f"records.{name}[{index}]", item, "expected an entity or its document"
                )
        sections[name] = tuple(checked)
    return sections


def _documents(documents: object, name: str) -> tuple[Document, ...]:
    if isinstance(documents, str | bytes | Mapping) or not isinstance(documents, Iterable):
        raise ValidationError(name, documents, "expected JSON documents")
    found = []
    for index, document in enumerate(documents):
        if not isinstance(document, Mapping):
            raise ValidationError(f"{name}[{index}]", document, "expected a JSON document")
        found.append(document)
    return tuple(found)


def _segments(segments: object) -> tuple[Document, ...]:
    if isinstance(segments, str | bytes | Mapping) or not isinstance(segments, Iterable):
        raise ValidationError("segments", segments, "expected segments")
    found = []
    for index, segment in enumerate(segments):
        if not isinstance(segment, Segment):
            raise ValidationError(f"segments[{index}]", segment, "expected a Segment")
        found.append({"id": str(segment.id), "name": segment.name, "kind": segment.kind.value})
    return tuple(found)
