"""``crmkit import`` through the real entry point, on SQLite and PostgreSQL."""

import csv
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import pytest

from crmkit.cli import main
from crmkit.storage.sql import open_store
from tests.storage_support import postgres_url

PEOPLE = """\
E-Mail;Vorname;Nachname;Land;Erstellt am
ada@example.com;Ada;Lovelace;Deutschland;2021-03-04
bo@example.com;Bo;Berg;Sverige;2020-02-01
ADA@example.com;;King;;
nope;X;Y;Atlantis;
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A database URL and a tenant of its own."""
    url = f"sqlite:///{tmp_path / 'crm.db'}" if request.param == "sqlite" else postgres_url()
    return url, f"cli-{uuid4().hex[:10]}"


def emails(url: str, tenant: str) -> list[str]:
    store = open_store(url, tenant=tenant)
    try:
        with store.unit_of_work() as unit:
            return sorted(str(c.email) for c in unit.contacts.iterate())
    finally:
        store.close()


def test_import_contacts_prints_a_json_summary_and_writes_the_rejects(
    db: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, tenant = db
    source = tmp_path / "people.csv"
    source.write_text(PEOPLE, encoding="utf-8")
    argv = ["import", "contacts", str(source), "--db", url, "--tenant", tenant, "--json"]
    assert main(argv) == 1  # one row has problems
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert {k: summary[k] for k in ("rows", "created", "skipped", "rejected")} == {
        "rows": 4, "created": 2, "skipped": 1, "rejected": 1,
    }  # fmt: skip
    assert summary["columns"]["Vorname"] == "first_name"
    assert captured.err == ""
    rejects = tmp_path / "people.rejects.csv"
    assert summary["rejects_file"] == str(rejects)
    with rejects.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["line"], r["E-Mail"]) for r in rows] == [("4", "ADA@example.com"), ("5", "nope")]
    assert "(skipped)" in rows[0]["problems"]
    assert "Land: not a country code" in rows[1]["problems"]
    assert emails(url, tenant) == ["ada@example.com", "bo@example.com"]
    # Merging instead: the same file again fills Ada's missing fields, nothing is created.
    assert main([*argv, "--on-duplicate", "merge"]) == 1
    again = json.loads(capsys.readouterr().out)
    assert (again["already_imported"], again["merged"], again["created"]) == (2, 1, 0)


def test_the_command_runs_as_a_program_with_the_database_from_crmkit_db(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    source.write_text("email,first_name\nada@example.com,Ada\nbo@example.com,Bo\n")
    db = tmp_path / "crm.db"
    env = {**os.environ, "CRMKIT_DB": f"sqlite:///{db}"}
    done = subprocess.run(
        [sys.executable, "-m", "crmkit", "import", "contacts", str(source)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Not a terminal: plain progress lines, then the summary.
    assert "imported 2/2 rows (" in done.stdout
    assert "rows/s, about 0 s left)" in done.stdout
    assert f"{source}: 2 rows: 2 created, 0 merged, 0 skipped, 0 rejected" in done.stdout
    assert not (tmp_path / "people.rejects.csv").exists()
    assert emails(f"sqlite:///{db}", "default") == ["ada@example.com", "bo@example.com"]
    helped = subprocess.run(
        [sys.executable, "-m", "crmkit", "import", "--help"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert helped.returncode == 0
    assert "examples:" in helped.stdout
    assert "crmkit import contacts people.csv --db sqlite:///crm.db" in helped.stdout
    assert "exit status: 0" in helped.stdout


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["import", "contacts", "{dir}/people.csv"], "no database: give --db URL or set CRMKIT_DB"),
        (["import", "contacts", "{dir}/missing.csv", "--db", "{db}"], "missing.csv does not exist"),
        (["import", "contacts", "{dir}", "--db", "{db}"], "is not a file"),
        (["import", "contacts", "{dir}/people.csv", "--db", "{db}", "--batch-size", "0"],
         "batch_size"),
        (["import", "contacts", "{dir}/people.csv", "--db", "{db}", "--encoding", "nope"],
         "encoding"),
        (["import", "contacts", "{dir}/people.csv", "--db", "{db}", "--mapping", "{dir}/m.json"],
         "--mapping: mapping: no such file"),
        (["import", "contacts", "{dir}/people.csv", "--db", "{db}", "--timezone", "Mars/Base"],
         "unknown --timezone"),
    ],
)  # fmt: skip
def test_wrong_usage_exits_2_with_the_reason_on_stderr(
    argv: list[str],
    says: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CRMKIT_DB", raising=False)
    (tmp_path / "people.csv").write_text("email\nada@example.com\n")
    db = tmp_path / "crm.db"
    args = [a.format(dir=tmp_path, db=f"sqlite:///{db}") for a in argv]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("crmkit import: ")
    assert says in captured.err
    assert not db.exists() or emails(f"sqlite:///{db}", "default") == []


def test_an_unknown_kind_or_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["import", "people", "x.csv", "--db", "crm.db"])
    assert raised.value.code == 2
    assert "invalid choice: 'people'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["import", "contacts", "x.csv", "--on-duplicate", "overwrite"])
    assert raised.value.code == 2


BAD = [
    ("latin1", "E-Mail,Name\nada@example.com,Jürgen\n".encode("latin-1"),
     "is not utf-8 text"),
    ("empty", b"", "the file is empty"),
    ("no-header", b"ada@example.com,Ada\n", "contacts need a column for email"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_exits_1_and_stores_nothing(
    db: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad: tuple[str, bytes, str],
) -> None:
    url, tenant = db
    name, data, says = bad
    source = tmp_path / f"{name}.csv"
    source.write_bytes(data)
    assert main(["import", "contacts", str(source), "--db", url, "--tenant", tenant]) == 1
    captured = capsys.readouterr()
    assert says in captured.err
    assert captured.err.startswith("crmkit import: ")
    assert emails(url, tenant) == []
    assert not (tmp_path / f"{name}.rejects.csv").exists()


def test_a_latin1_file_imports_with_its_encoding(
    db: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, tenant = db
    source = tmp_path / "latin1.csv"
    source.write_bytes("E-Mail\tVorname\nj@example.com\tJürgen\n".encode("latin-1"))
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({"Vorname": "first_name"}))
    argv = ["import", "contacts", str(source), "--db", url, "--tenant", tenant, "--json"]
    assert main([*argv, "--encoding", "latin-1", "--mapping", str(mapping)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["created"], summary["encoding"], summary["delimiter"]) == (
        1, "iso8859-1", "\t",
    )  # fmt: skip


def test_a_locked_database_exits_1_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "crm.db"
    open_store(f"sqlite:///{db}").close()
    source = tmp_path / "people.csv"
    source.write_text(PEOPLE)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program writes, for longer than the timeout
    try:
        assert main(["import", "contacts", str(source), "--db", str(db)]) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert "the database is locked by another program" in err
    assert emails(f"sqlite:///{db}", "default") == []


def test_on_a_terminal_a_rich_bar_shows_rows_per_second(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from crmkit.cli._import import _Plain, _Progress  # noqa: PLC0415

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with _Progress(show=True) as update:
        assert update is not None
        assert not isinstance(update, _Plain)
        update(500, 1000)
        update(1000, 1000)
    assert "1000/1000" in capsys.readouterr().out
    # Without the cli extra (no rich), plain lines; with --json, nothing.
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    with _Progress(show=True) as update:
        assert isinstance(update, _Plain)
    with _Progress(show=False) as update:
        assert update is None
