"""What every ``crmkit`` command shares: the database options, opening the store and the
host's CRM, JSON output, and the exit codes.

Exit codes: 0 when the command did its work, 1 when the data stopped it (a
:class:`~crmkit.errors.CrmkitError`: a contact not found, a locked database, invalid
data), 2 when the command line is wrong (argparse's own errors and :class:`UsageError`:
an unreadable rule, a database file that does not exist, an output path that cannot be
written). Messages go to stderr, results to stdout.
"""

import argparse
import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, TypeVar
from uuid import UUID

from crmkit.crm import CRM
from crmkit.errors import CrmkitError, NotFound, ValidationError
from crmkit.lifecycle import Pipeline, Stage, StageKind
from crmkit.models import Contact, DealStatus, EmailAddress, SubjectKind
from crmkit.segmentation import deals_where, field
from crmkit.serialization import make_converter
from crmkit.storage import Order, Store
from crmkit.storage.sql import open_store

__all__ = [
    "EXIT_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_database_options",
    "add_json_option",
    "add_person_options",
    "command_parser",
    "database_url",
    "dump_json",
    "find_person",
    "host_crm",
    "opened_store",
    "read_json_file",
    "read_text_file",
    "structured",
    "write_atomically",
]

EXIT_OK: Final = 0
EXIT_DATA: Final = 1
EXIT_USAGE: Final = 2

_T = TypeVar("_T")


class UsageError(Exception):
    """The command line cannot be carried out as written (exit status 2)."""


def command_parser(
    subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows ``description`` and then ``examples``."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n{examples.rstrip()}\n\n"
        "exit status: 0 ok, 1 a data problem, 2 a usage error; messages go to stderr.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_database_options(parser: argparse.ArgumentParser) -> None:
    """``--db`` (default ``$CRMKIT_DB``), ``--tenant`` (default ``$CRMKIT_TENANT`` or
    ``default``) and ``--setup`` (default ``$CRMKIT_SETUP``)."""
    group = parser.add_argument_group("database")
    group.add_argument(
        "--db",
        metavar="URL",
        default=os.environ.get("CRMKIT_DB") or None,
        help="a database URL (sqlite:///crm.db, postgresql+psycopg://...) or the path of a "
        "SQLite file (default: $CRMKIT_DB)",
    )
    group.add_argument(
        "--tenant",
        default=os.environ.get("CRMKIT_TENANT") or "default",
        help="the tenant whose data to use (default: $CRMKIT_TENANT or 'default')",
    )
    group.add_argument(
        "--setup",
        metavar="MODULE:FUNCTION",
        default=os.environ.get("CRMKIT_SETUP") or None,
        help="the host's function that takes the opened store and returns its configured "
        "crmkit.crm.CRM (pipelines, SLA policies, scoring model, secrets; default: "
        "$CRMKIT_SETUP); without it the command uses a plain CRM",
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """``--json``: one JSON document on stdout instead of text."""
    parser.add_argument(
        "--json", action="store_true", help="write one JSON document to stdout, for scripts"
    )


def add_person_options(parser: argparse.ArgumentParser) -> None:
    """``--contact ID`` or ``--email ADDRESS``: the person a privacy command is about."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--contact", metavar="ID", help="the contact's id (a UUID)")
    who.add_argument("--email", metavar="ADDRESS", help="the contact's e-mail address")


def database_url(db: str | None, *, must_exist: bool = True) -> str:
    """The SQLAlchemy URL of ``--db``; a SQLite file must exist unless ``must_exist`` is
    false (a command that creates a database: the demo, an import)."""
    if not db:
        raise UsageError("no database: pass --db URL or set CRMKIT_DB")
    if "://" in db:
        if must_exist and db.startswith("sqlite:///") and db != "sqlite:///:memory:":
            _existing(Path(db.removeprefix("sqlite:///")), db)
        return db
    path = Path(db).expanduser()
    if must_exist:
        _existing(path, db)
    return f"sqlite:///{path.resolve()}"


def _existing(path: Path, given: str) -> None:
    if not path.is_file():
        raise UsageError(
            f"no database at {given!r}: the SQLite file does not exist (crmkit demo --db "
            "PATH writes one with the demo's data)"
        )


@contextlib.contextmanager
def opened_store(args: argparse.Namespace) -> Iterator[Store]:
    """The store of ``--db`` and ``--tenant``, closed afterwards; the tables must exist."""
    store = open_store(database_url(args.db), tenant=args.tenant, create=False)
    try:
        yield store
    finally:
        store.close()


def host_crm(args: argparse.Namespace, store: Store) -> CRM:
    """The host's CRM from ``--setup``, or a plain CRM whose deal pipelines are read off
    the stored deals (see :func:`inferred_pipelines`)."""
    if args.setup:
        return _setup(args.setup)(store)
    secret = os.environ.get("CRMKIT_PRIVACY_SECRET")
    return CRM(
        store,
        pipelines=inferred_pipelines(store),
        privacy_secret=secret.encode() if secret else None,
    )


def _setup(spec: str) -> Callable[[Store], CRM]:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UsageError(f"--setup {spec!r}: expected MODULE:FUNCTION, such as myapp.crm:setup")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"--setup {spec!r}: cannot import {module_name}: {error}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise UsageError(f"--setup {spec!r}: {module_name} has no function {name}")

    def made(store: Store) -> CRM:
        try:
            crm = function(store)
        except CrmkitError:
            raise
        except Exception as error:  # the host's code: say what it raised, where
            raise UsageError(f"--setup {spec!r} raised {error!r}") from error
        if not isinstance(crm, CRM):
            raise UsageError(f"--setup {spec!r} returned {type(crm).__name__}, not a CRM")
        return crm

    return made


def inferred_pipelines(store: Store) -> list[Pipeline]:
    """The deal pipelines the stored deals imply, for a CRM without the host's setup:
    per pipeline key, the stages its deals stand in, each with the probability and kind
    (open, won, lost) of a deal standing there; open stages ordered by probability."""
    found: list[Pipeline] = []
    with store.unit_of_work() as unit:
        keys = sorted(k for k in unit.deals.count_by("pipeline") if isinstance(k, str))
        for key in keys:
            of_pipeline = field("pipeline") == key
            stages: dict[str, Stage] = {}
            for stage in sorted(unit.deals.count_by("stage", deals_where(of_pipeline))):
                (deal,) = unit.deals.find(
                    deals_where(of_pipeline & (field("stage") == stage)),
                    order=Order("updated_at", descending=True),
                    limit=1,
                ).items
                kind = {DealStatus.WON: StageKind.WON, DealStatus.LOST: StageKind.LOST}.get(
                    deal.status, StageKind.OPEN
                )
                probability = {StageKind.WON: Decimal(1), StageKind.LOST: Decimal(0)}.get(
                    kind, deal.probability
                )
                stages[stage] = Stage(key=stage, label=stage, probability=probability, kind=kind)
            rank = {StageKind.OPEN: 0, StageKind.WON: 1, StageKind.LOST: 2}
            ordered = sorted(stages.values(), key=lambda s: (rank[s.kind], s.probability, s.key))
            if not any(s.kind is StageKind.OPEN for s in ordered):
                continue  # a pipeline of closed deals only has no funnel to draw
            if not any(s.kind is StageKind.LOST for s in ordered):
                ordered.append(Stage(key="lost", label="lost", kind=StageKind.LOST))
            found.append(
                Pipeline(
                    key=key,
                    label=key,
                    subject=SubjectKind.DEAL,
                    stages=tuple(ordered),
                    lost_reason_required=False,
                )
            )
    return found


def find_person(crm: CRM, args: argparse.Namespace) -> Contact:
    """The contact of ``--contact`` or ``--email``."""
    if args.contact is not None:
        try:
            contact_id = UUID(args.contact)
        except ValueError:
            raise UsageError(f"--contact {args.contact!r} is not a contact id (a UUID)") from None
        with crm.store.unit_of_work() as unit:
            return unit.contacts.get(contact_id)
    contact = crm.find_contact(args.email)
    if contact is None:
        raise NotFound("contact", EmailAddress(args.email))
    return contact


def read_text_file(path: str, what: str) -> str:
    """The text of ``path`` (``-`` reads stdin), or a usage error saying why not."""
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {what} {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{what} {path!r} is not UTF-8 text: {error.reason}") from None


def read_json_file(path: str, what: str) -> Any:
    """The JSON document of ``path`` (``-`` reads stdin)."""
    return parse_json(read_text_file(path, what), f"{what} {path!r}")


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a usage error saying where it is wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{what} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None


def structured(data: Any, cls: type[_T], what: str) -> _T:
    """``data`` as ``cls`` through crmkit's converter; wrong data is a usage error
    naming the JSON path."""
    try:
        return make_converter().structure(data, cls)
    except ValidationError as error:
        raise UsageError(f"{what}: {error}") from None


def dump_json(data: Any) -> None:
    """Write ``data`` (JSON-ready, or crmkit results) to stdout as one JSON document."""
    plain = make_converter().unstructure(data)
    sys.stdout.write(json.dumps(plain, ensure_ascii=False, indent=2, default=str) + "\n")


def write_atomically(path: str, text: str, what: str) -> Path:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it,
    renamed over it. A folder that does not exist or cannot be written is a usage
    error, checked before the caller does any work (call :func:`writable` first)."""
    target = writable(path, what)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, _file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


def _file_mode(target: Path) -> int:
    """The mode of the file being replaced, else what the umask gives a new file."""
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def writable(path: str, what: str) -> Path:
    """``path`` if a file can be written there, else a :class:`UsageError` saying why."""
    target = Path(path).expanduser()
    if not path or target.is_dir():
        raise UsageError(f"{what} {path!r} is a folder: name a file")
    folder = target.parent.resolve()
    if not folder.is_dir():
        raise UsageError(f"{what} {path!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path!r}: the folder {str(folder)!r} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"{what} {path!r}: the file is not writable")
    return folder / target.name


def run_safely(name: str, run: Callable[[], int]) -> int:
    """Run a command: its exit status, or 1 (a data problem) / 2 (a usage error) with
    the message on stderr."""
    try:
        return run()
    except UsageError as error:
        print(f"crmkit {name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CrmkitError as error:
        print(f"crmkit {name}: {error}", file=sys.stderr)
        return EXIT_DATA


def contact_label(contact: Contact) -> str:
    """A contact as people read it: name and e-mail address."""
    name = contact.display_name
    return f"{name} <{contact.email}>" if contact.email and name != contact.email else name
