"""Import a CSV file of contacts, accounts, leads, deals or activities through a CRM.

:func:`import_csv` reads the file, maps its columns (:class:`~crmkit.quality.ColumnMapping`),
reads every row (:func:`~crmkit.quality.read_cells`, :func:`~crmkit.quality.build_record`),
matches contacts and accounts against the store by their e-mail, phone, domain and company
keys (:func:`~crmkit.quality.match_keys`), and stores the rows in batches, one unit of
work each. It returns an :class:`ImportReport` whose counts add up to the rows of the
file: every row is stored, merged, or written to the rejects with its line and problems.
"""

import codecs
import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any, Final
from uuid import NAMESPACE_URL, UUID, uuid5

import attrs

from crmkit.crm._service import CRM
from crmkit.errors import (
    CrmkitError,
    Duplicate,
    ImportFileError,
    NotFound,
    Problem,
    Suppressed,
    ValidationError,
)
from crmkit.models import Account, Contact, EmailAddress, Entity, Suppression
from crmkit.privacy import identifier_digest
from crmkit.quality import (
    ACCOUNT_KEYS,
    CONTACT_KEYS,
    BlockingKey,
    ColumnMapping,
    MergePolicy,
    RecordKind,
    build_record,
    email_key,
    match_keys,
    merge,
    read_cells,
)
from crmkit.storage import Repository, UnitOfWork

__all__ = ["DuplicateAction", "ImportReport", "RejectedRow", "import_csv", "read_mapping"]

_CHUNK: Final = 1 << 20
_FIELD_LIMIT: Final = 64 << 20
"""The longest CSV field the reader takes (64 MiB); a longer one makes the file unreadable.
Cells up to this size are read, and a cell over :data:`~crmkit.quality.MAX_CELL` is a
problem of its row."""
_MATCH_KEYS: Final = {
    RecordKind.CONTACTS: tuple(k for k in CONTACT_KEYS if k.name in ("email", "phone")),
    RecordKind.ACCOUNTS: tuple(k for k in ACCOUNT_KEYS if k.name in ("domain", "company")),
}
"""The keys that make a row a duplicate: the same person or organisation for sure, not
only a similar name."""
_DELIMITERS: Final = (",", ";", "\t", "|")


class DuplicateAction(StrEnum):
    """What an import does with a row that is a duplicate of a stored contact or account
    (or of an earlier row of the file)."""

    SKIP = "skip"
    """Store nothing: the row goes to the rejects, naming the record it duplicates."""
    MERGE = "merge"
    """Fill what the stored record lacks from the row (tags and custom fields united)."""
    CREATE = "create"
    """Store the row as a new record anyway (refused, to the rejects, where the store
    keeps one contact per e-mail address and the address is the same)."""


@attrs.frozen
class RejectedRow:
    """A row that was not stored: its line in the file, every problem, and its cells."""

    line: int
    problems: tuple[Problem, ...]
    cells: tuple[str, ...]
    skipped: bool = False
    """A duplicate skipped as asked (``on_duplicate="skip"``), not a wrong row."""


@attrs.frozen
class ImportReport:
    """What an import did. ``rows`` (data rows of the file, blank lines not counted) is
    ``created + merged + skipped + rejected + already_imported``.

    ``already_imported`` counts rows that an earlier, interrupted run of the same file
    stored (each row's id is derived from the file's digest and its line, so a run
    again resumes). ``committed_through`` is the last line stored in a committed batch.
    The rejects (rejected and skipped rows) are in ``rejects_file`` when one was given,
    else in ``rejects``.
    """

    kind: RecordKind
    file: str
    digest: str
    rows: int
    created: int
    merged: int
    skipped: int
    rejected: int
    already_imported: int
    batches: int
    committed_through: int
    mapping: ColumnMapping
    encoding: str
    delimiter: str
    rejects_file: str | None
    rejects: tuple[RejectedRow, ...]

    @property
    def ok(self) -> bool:
        """No row was rejected (skipped duplicates are no problem)."""
        return self.rejected == 0

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``crmkit import --json`` prints)."""
        return {
            "kind": self.kind.value,
            "file": self.file,
            "sha256": self.digest,
            "rows": self.rows,
            "created": self.created,
            "merged": self.merged,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "already_imported": self.already_imported,
            "batches": self.batches,
            "committed_through_line": self.committed_through,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "columns": dict(self.mapping.columns),
            "rejects_file": self.rejects_file,
        }


Progress = Callable[[int, int], None]
"""Called after every batch with the rows done so far and the rows of the file."""


def _fill(name: str, records: Sequence[Any]) -> Any:
    """The first value of ``records`` that is not missing (the stored record first)."""
    for record in records:
        value = getattr(record, name)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return getattr(records[0], name)


def _fill_policy(entity: type[Contact] | type[Account]) -> MergePolicy:
    names = [
        a.name
        for a in attrs.fields(entity)
        if a.name not in {"id", "version", "created_at", "updated_at", "tags", "custom"}
        and a.name != "do_not_contact"
    ]
    return MergePolicy.of(entity, dict.fromkeys(names, _fill))


def _check_options(
    kind: object, on_duplicate: object, batch_size: object, encoding: object, delimiter: object
) -> tuple[RecordKind, DuplicateAction, str]:
    try:
        record_kind = RecordKind(kind)  # type: ignore[arg-type]
    except ValueError:
        allowed = ", ".join(k.value for k in RecordKind)
        raise ValidationError("kind", kind, f"expected one of: {allowed}") from None
    try:
        action = DuplicateAction(on_duplicate)  # type: ignore[arg-type]
    except ValueError:
        raise ValidationError(
            "on_duplicate", on_duplicate, "expected skip, merge or create"
        ) from None
    if type(batch_size) is not int or not 1 <= batch_size <= 100_000:
        raise ValidationError("batch_size", batch_size, "expected an int from 1 to 100000")
    if not isinstance(encoding, str):
        raise ValidationError("encoding", encoding, "expected the name of an encoding")
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValidationError("encoding", encoding, "not an encoding Python knows") from None
    if delimiter is not None and delimiter not in _DELIMITERS:
        raise ValidationError("delimiter", delimiter, "expected None (guess), ',', ';', tab or '|'")
    return record_kind, action, "utf-8-sig" if name == "utf-8" else name


def _path(value: object, field: str) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise ValidationError(field, value, "expected a path")
    text = os.fspath(value)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ValidationError(field, value, "expected a path")
    return Path(text)


def _digest(path: Path, encoding: str) -> str:
    """The SHA-256 of the file; reading it checks that it is text in ``encoding``, so
    that a wrong byte anywhere fails before anything is stored."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    lines = 0
    try:
        with path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                held = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    at = max(error.start - held, 0)  # in this chunk
                    line = lines + chunk.count(b"\n", 0, at) + 1
                    raise _encoding_error(path, encoding, error, line) from None
                lines += chunk.count(b"\n")
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as error:
                raise _encoding_error(path, encoding, error, lines + 1) from None
    except FileNotFoundError:
        raise ImportFileError("file", str(path), "no such file") from None
    except IsADirectoryError:
        raise ImportFileError("file", str(path), "is a directory, not a file") from None
    except PermissionError:
        raise ImportFileError("file", str(path), "cannot be read (permission denied)") from None
    except OSError as error:
        raise ImportFileError("file", str(path), f"cannot be read: {error.strerror}") from None
    return digest.hexdigest()


def _open(path: Path, encoding: str) -> Any:
    return path.open(encoding=encoding, errors="strict", newline="")


def _delimiter(path: Path, encoding: str, given: str | None) -> str:
    """The delimiter given, or the one the header line holds most of."""
    if given is not None:
        return given
    with _open(path, encoding) as file:
        try:
            first = file.readline(_FIELD_LIMIT)
        except UnicodeDecodeError as error:
            raise _encoding_error(path, encoding, error, 1) from None
    counts = {d: first.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _encoding_error(
    path: Path, encoding: str, error: UnicodeDecodeError, line: int
) -> ImportFileError:
    byte = error.object[error.start : error.start + 1]
    shown = "utf-8" if encoding == "utf-8-sig" else encoding
    return ImportFileError(
        "encoding",
        f"byte 0x{byte.hex()} near line {line}",
        f"{path} is not {shown} text: give its encoding (encoding='cp1252', "
        "'latin-1', ...; --encoding on the command line)",
    )


def _records(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """``(line where the record starts, cells)`` of every non-blank record, the header
    first; unreadable text raises :class:`~crmkit.errors.ImportFileError`."""
    if csv.field_size_limit() < _FIELD_LIMIT:
        csv.field_size_limit(_FIELD_LIMIT)
    with _open(path, encoding) as file:
        reader = csv.reader(file, delimiter=delimiter, strict=False)
        line = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as error:
                raise _encoding_error(path, encoding, error, reader.line_num + 1) from None
            except csv.Error as error:
                raise ImportFileError(
                    "file", f"line {reader.line_num}", f"{path} is not a readable CSV file: {error}"
                ) from None
            start, line = line, reader.line_num + 1
            if cells and any(cells):
                yield start, cells


def _scan(path: Path, encoding: str, delimiter: str) -> tuple[list[str], int]:
    """The header and the number of data rows; reads the whole file, so that a file that
    cannot be read fails before anything is stored."""
    records = _records(path, encoding, delimiter)
    header = next(records, None)
    if header is None:
        raise ImportFileError("file", str(path), "the file is empty: expected a header row")
    count = sum(1 for _ in records)
    return header[1], count


@attrs.define
class _Row:
    line: int
    cells: list[str]
    id: UUID
    values: dict[str, Any] = attrs.field(factory=dict)
    problems: list[Problem] = attrs.field(factory=list)
    record: Entity | None = None
    outcome: str = ""
    """created, merged, skipped, rejected or already."""


@attrs.define
class _Counts:
    created: int = 0
    merged: int = 0
    skipped: int = 0
    rejected: int = 0
    already: int = 0
    batches: int = 0
    committed: int = 0


class _Importer:
    def __init__(
        self,
        *,
        crm: CRM,
        kind: RecordKind,
        mapping: ColumnMapping,
        action: DuplicateAction,
        namespace: UUID,
        zone: tzinfo,
        by: str | None,
        policy: MergePolicy | None,
    ) -> None:
        self.crm = crm
        self.kind = kind
        self.mapping = mapping
        self.action = action
        self.namespace = namespace
        self.zone = zone
        self.by = by
        self.headers = {field.partition(":")[0]: h for h, field in mapping.columns if field}
        self.resuming = False
        """Whether rows of an earlier run of the file were met."""
        entity = kind.entity
        self.policy = policy
        if policy is None and entity in (Contact, Account):
            self.policy = _fill_policy(entity)

    def repository(self, unit: UnitOfWork) -> Repository[Any]:
        match self.kind:
            case RecordKind.CONTACTS:
                return unit.contacts
            case RecordKind.ACCOUNTS:
                return unit.accounts
            case RecordKind.LEADS:
                return unit.leads
            case RecordKind.DEALS:
                return unit.deals
        return unit.activities

    def batch(self, rows: list[_Row]) -> None:
        """Store one batch in one unit of work; a row the store refuses sends the batch
        through one unit per row, so that the refused row alone is rejected."""
        try:
            with self.crm._unit(self.by) as unit:
                self.plan(unit, rows)
                self.write(unit, [r for r in rows if r.outcome in ("created", "merged")])
        except (ValidationError, Duplicate, NotFound, Suppressed):
            self.resuming = True
            for row in rows:
                row.outcome, row.record = "", None
                row.problems = []
            for row in rows:
                try:
                    with self.crm._unit(self.by) as unit:
                        self.plan(unit, [row])
                        if row.outcome in ("created", "merged"):
                            self.write(unit, [row])
                except (ValidationError, Duplicate, NotFound, Suppressed) as error:
                    row.outcome = "rejected"
                    row.problems = _problems(error)

    def plan(self, unit: UnitOfWork, rows: list[_Row]) -> None:
        repository = self.repository(unit)
        # Rows of an earlier run of this file are looked up by id once one was met (or
        # row by row); until then they show as a duplicate of themselves (match) or as
        # a taken id, which sends the batch row by row through this look-up.
        ids = [row.id for row in rows]
        stored = repository.get_many(ids) if self.resuming or len(rows) == 1 else {}
        now = self.crm.clock.now()
        pending = []
        for row in rows:
            if row.id in stored:
                row.outcome = "already"
                continue
            row.values, row.problems = read_cells(self.mapping, row.cells, zone=self.zone)
            pending.append(row)  # built even with problems, to name every problem of the row
        contacts = self.contacts_of(unit, pending)
        for row in pending:
            if row.outcome == "rejected":  # its contact's address is wrong
                continue
            email = row.values.get("contact_email")
            contact_id = row.values.get("contact_id")
            if email is not None and contact_id is None:
                contact_id = contacts.get(_folded(email))
                if contact_id is None:
                    header = self.headers.get("contact_email", "contact_email")
                    row.problems.append(
                        Problem(header, email, "no stored contact has this e-mail address")
                    )
                    row.outcome = "rejected"
                    continue
            try:
                record = build_record(
                    self.kind, row.values, id=row.id, now=now, contact_id=contact_id,
                    headers=self.headers,
                )  # fmt: skip
            except ValidationError as error:
                row.problems.extend(error.problems)
            else:
                row.record = None if row.problems else record
            if row.problems:
                row.outcome = "rejected"
        built = [row for row in pending if row.record is not None]
        if self.kind is RecordKind.CONTACTS:
            self.refuse_suppressed(unit, built)
        if self.kind in _MATCH_KEYS:
            self.match(unit, [r for r in built if not r.outcome], now)
        for row in built:
            row.outcome = row.outcome or "created"

    def contacts_of(self, unit: UnitOfWork, rows: list[_Row]) -> dict[str, UUID]:
        """The stored contact of each ``contact_email`` of ``rows``, by folded address."""
        emails = {}
        for row in rows:
            email = row.values.get("contact_email")
            if email is not None and row.values.get("contact_id") is None:
                try:
                    emails[_folded(email)] = email_key(EmailAddress(email))
                except ValidationError as error:
                    header = self.headers["contact_email"]
                    row.problems.extend(Problem(header, email, p.reason) for p in error.problems)
                    row.outcome = "rejected"
        if not emails:
            return {}
        found = unit.contacts.with_match_keys(
            [("email", key) for key in set(emails.values()) if key]
        )
        by_address: dict[str, UUID] = {}
        for contact in found:  # oldest first: the first keeps the address
            if contact.email is not None:
                by_address.setdefault(_folded(contact.email), contact.id)
        return by_address

    def refuse_suppressed(self, unit: UnitOfWork, rows: list[_Row]) -> None:
        secret = self.crm.privacy_secret
        if secret is None:
            return
        wanted: dict[UUID, list[tuple[_Row, str]]] = {}
        for row in rows:
            contact = row.record
            assert isinstance(contact, Contact)
            for name, value in (("email", contact.email), ("phone", contact.phone)):
                if value is not None:
                    key = Suppression.id_for(identifier_digest(secret, name, value))
                    wanted.setdefault(key, []).append((row, name))
        if not wanted:
            return
        for key in unit.suppressions.get_many(list(wanted)):
            for row, name in wanted[key]:
                if not row.outcome:
                    error = Suppressed(name)
                    row.problems, row.outcome = (
                        [Problem(name, "<suppressed>", str(error))],
                        "rejected",
                    )

    def match(self, unit: UnitOfWork, rows: list[_Row], now: datetime) -> None:
        """Decide each row that matches a stored record, or an earlier row, by its keys."""
        names = _MATCH_KEYS[self.kind]
        keys_of = {row.line: _keys(row.record, names) for row in rows}
        wanted = {key for keys in keys_of.values() for key in keys}
        if not wanted:
            return
        repository = unit.contacts if self.kind is RecordKind.CONTACTS else unit.accounts
        known: dict[tuple[str, str], Entity] = {}
        for record in repository.with_match_keys(wanted, limit=1):
            for key in match_keys(record, names):
                if key in wanted:
                    known.setdefault(key, record)
        owners: dict[UUID, _Row] = {}  # the row of this batch that writes each record
        for row in rows:
            keys = keys_of[row.line]
            found = next((known[k] for k in keys if k in known), None)
            if found is not None and found.id == row.id:  # stored by an earlier run
                row.record, row.outcome = None, "already"
                self.resuming = True
                continue
            if found is None or self.action is DuplicateAction.CREATE:
                for key in keys:
                    known.setdefault(key, row.record)  # type: ignore[arg-type]
                owners[row.id] = row
                continue
            if self.action is DuplicateAction.SKIP:
                what = "an earlier row's" if found.id in owners else "stored"
                row.problems = [
                    Problem("row", str(found.id), f"a duplicate of {what} {found.entity_name} "
                            f"{found.id} (skipped)")
                ]  # fmt: skip
                row.outcome = "skipped"
                continue
            assert self.policy is not None
            assert row.record is not None
            merged: Entity = merge(found, [row.record], self.policy, at=now).survivor  # type: ignore[type-var]
            owner = owners.get(found.id)
            if owner is not None:  # an earlier row of the batch writes that record: it
                owner.record, row.record = merged, None  # writes the merged one instead
            else:  # a stored record, first merged by this row
                row.record = merged
                owners[found.id] = row
            row.outcome = "merged"
            for key in match_keys(merged, names):
                known[key] = merged

    def write(self, unit: UnitOfWork, rows: list[_Row]) -> None:
        repository = self.repository(unit)
        new: dict[UUID, Entity] = {}
        updated: dict[UUID, Entity] = {}
        for row in rows:
            record = row.record
            if record is None:
                continue
            if row.outcome == "created" or record.id in new:
                new[record.id] = record
            else:
                updated[record.id] = record
        for record in updated.values():
            repository.update(record)
        repository.add_many(new.values())


def _keys(record: object, keys: tuple[BlockingKey, ...]) -> list[tuple[str, str]]:
    """The values of ``keys`` that ``record`` has (what :func:`match_keys` gives for
    them, without checking the keys again for every row)."""
    found = []
    for key in keys:
        value = key.value(record)
        if value is not None:
            found.append((key.name, value))
    return found


def _folded(email: object) -> str:
    return str(email).strip().casefold()


def _problems(error: CrmkitError) -> list[Problem]:
    if isinstance(error, ValidationError):
        return list(error.problems)
    if isinstance(error, Duplicate) and error.field is not None:
        return [Problem(error.field, str(error.id), str(error))]
    if isinstance(error, Suppressed):
        return [Problem(error.field, "<suppressed>", str(error))]
    return [Problem("row", "", str(error))]


def import_csv(  # noqa: PLR0912, PLR0915
    crm: CRM,
    kind: RecordKind | str,
    path: str | os.PathLike[str],
    *,
    mapping: Mapping[str, str | None] | None = None,
    on_duplicate: DuplicateAction | str = DuplicateAction.SKIP,
    rejects: str | os.PathLike[str] | None = None,
    batch_size: int = 2000,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    zone: tzinfo = UTC,
    merge_policy: MergePolicy | None = None,
    by: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import the CSV file ``path`` of ``kind`` records (contacts, accounts, leads, deals,
    activities) into ``crm``'s store; returns the :class:`ImportReport`.

    The header row names the columns: ``mapping`` (header -> field, ``None`` to leave a
    column out) says which fills which field, the rest is guessed from common headers
    in English, German and Swedish (:meth:`ColumnMapping.guess
    <crmkit.quality.ColumnMapping.guess>`). The file is UTF-8 (a BOM is skipped) unless
    ``encoding`` says otherwise; ``delimiter`` (``,``, ``;``, tab, ``|``) is guessed
    from the header line when not given; quoted cells may hold line breaks. Times
    without an offset are read in ``zone``; a ``created_at`` column keeps each record's
    history.

    Contacts and accounts are matched against the store (and earlier rows) by e-mail and
    phone, or domain and company name (:data:`~crmkit.quality.CONTACT_KEYS`);
    ``on_duplicate`` says what a match does (:class:`DuplicateAction`): ``merge`` fills
    the stored record's missing fields (``merge_policy`` to choose otherwise). Leads,
    deals and activities name their contact by ``contact_email`` (or ``contact_id``).
    With the CRM's ``privacy_secret``, a contact of an erased person is rejected.

    Rows are stored ``batch_size`` at a time, each batch in one unit of work (audited as
    ``by``). Each row's id is derived from the file's SHA-256 and its line, so running
    the same import again after an interruption skips what was stored (counted as
    ``already_imported``) and stores the rest: committed batches are the checkpoint.
    Rejected and skipped rows, with their line and every problem, are written to the CSV
    file ``rejects`` (columns ``line``, ``problems`` and the file's own, written when the
    import ends; an existing file is replaced), else kept in the report.

    A file that does not exist, is empty, is not text in ``encoding`` or is not readable
    CSV, or a header that cannot be mapped, raises
    :class:`~crmkit.errors.ImportFileError` before anything is stored. A failure of the
    store (:class:`~crmkit.errors.StorageError`) keeps the batches committed before it.
    """
    if not isinstance(crm, CRM):
        raise ValidationError("crm", crm, "expected a CRM")
    record_kind, action, codec = _check_options(kind, on_duplicate, batch_size, encoding, delimiter)
    source = _path(path, "path")
    target = None if rejects is None else _path(rejects, "rejects")
    if not isinstance(zone, tzinfo):
        raise ValidationError("zone", zone, "expected a tzinfo (datetime.UTC, a ZoneInfo)")
    if merge_policy is not None and (
        not isinstance(merge_policy, MergePolicy) or merge_policy.entity is not record_kind.entity
    ):
        raise ValidationError(
            "merge_policy", merge_policy, f"expected a MergePolicy of {record_kind}"
        )
    if progress is not None and not callable(progress):
        raise ValidationError("progress", progress, "expected a callable or None")
    if by is not None and not isinstance(by, str):
        raise ValidationError("by", by, "expected a user id (str) or None")

    digest = _digest(source, codec)
    separator = _delimiter(source, codec, delimiter)
    header, total = _scan(source, codec, separator)
    if mapping is None:
        columns = ColumnMapping.guess(record_kind, header)
    else:
        columns = ColumnMapping.given(record_kind, header, mapping)
    namespace = uuid5(NAMESPACE_URL, f"crmkit-import:{record_kind.value}:{digest}")
    importer = _Importer(
        crm=crm, kind=record_kind, mapping=columns, action=action, namespace=namespace,
        zone=zone, by=by, policy=merge_policy,
    )  # fmt: skip
    counts = _Counts()
    kept: list[RejectedRow] = []
    partial = None if target is None else target.with_name(target.name + ".part")
    writer = None
    handle = None
    try:
        if partial is not None:
            try:
                handle = partial.open("w", encoding="utf-8", newline="")
            except OSError as error:
                raise ImportFileError(
                    "rejects", str(target), f"cannot be written: {error.strerror}"
                ) from None
            writer = csv.writer(handle)
            writer.writerow(["line", "problems", *header])
        records = _records(source, codec, separator)
        next(records)
        batch: list[_Row] = []
        done = 0

        def flush() -> None:
            nonlocal done
            importer.batch(batch)
            counts.batches += 1
            counts.committed = batch[-1].line
            for row in batch:
                match row.outcome:
                    case "created":
                        counts.created += 1
                    case "merged":
                        counts.merged += 1
                    case "already":
                        counts.already += 1
                    case "skipped" | "rejected":
                        skipped = row.outcome == "skipped"
                        counts.skipped += skipped
                        counts.rejected += not skipped
                        problems = tuple(row.problems)
                        if writer is not None:
                            text = "; ".join(str(p) for p in problems)
                            writer.writerow([row.line, text, *row.cells])
                        else:
                            kept.append(RejectedRow(row.line, problems, tuple(row.cells), skipped))
                    case other:  # pragma: no cover - every row gets an outcome
                        raise AssertionError(other)
            done += len(batch)
            batch.clear()
            if progress is not None:
                progress(done, total)

        for line, cells in records:
            batch.append(_Row(line, cells, uuid5(namespace, str(line))))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        if handle is not None:
            handle.close()
            handle = None
        written = counts.rejected + counts.skipped
        if partial is not None and target is not None:
            if written:
                os.replace(partial, target)
            else:
                partial.unlink()
    finally:
        if handle is not None:
            handle.close()
        if partial is not None and partial.exists():
            partial.unlink()
    return ImportReport(
        kind=record_kind,
        file=str(source),
        digest=digest,
        rows=total,
        created=counts.created,
        merged=counts.merged,
        skipped=counts.skipped,
        rejected=counts.rejected,
        already_imported=counts.already,
        batches=counts.batches,
        committed_through=counts.committed,
        mapping=columns,
        encoding="utf-8" if codec == "utf-8-sig" else codec,
        delimiter=separator,
        rejects_file=str(target)
        if target is not None and (counts.rejected + counts.skipped)
        else None,
        rejects=tuple(kept),
    )


def read_mapping(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """A column mapping from a JSON file: an object of header -> field (or ``null``)."""
    source = _path(path, "mapping")
    try:
        data = json.loads(source.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ImportFileError("mapping", str(source), "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFileError("mapping", str(source), f"cannot be read: {error}") from None
    except ValueError as error:
        raise ImportFileError("mapping", str(source), f"not JSON: {error}") from None
    if not isinstance(data, dict) or not all(
        isinstance(v, str) or v is None for v in data.values()
    ):
        raise ImportFileError(
            "mapping", str(source), 'expected a JSON object of "header": "field" (or null)'
        )
    return data
