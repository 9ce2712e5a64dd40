"""Importing CSV files: crmkit.crm.import_csv and the column mapping of crmkit.quality."""

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmkit.crm import CRM, DuplicateAction, ImportReport, import_csv
from crmkit.errors import ImportFileError, ValidationError
from crmkit.models import Contact, DealStatus, LeadChannel
from crmkit.quality import ColumnMapping, RecordKind, read_cells
from crmkit.storage import MemoryStore, Store
from tests.storage_support import STORES, stepping_store

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store(request.param, tmp_path, NOW, "import")


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def contacts_of(store: Store) -> dict[str, Contact]:
    with store.unit_of_work() as unit:
        return {str(c.email): c for c in unit.contacts.iterate()}


def adds_up(report: ImportReport) -> bool:
    done = report.created + report.merged + report.skipped + report.rejected
    return done + report.already_imported == report.rows


def rejects(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


# ---------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("header", "fields"),
    [
        (["E-Mail", "Vorname", "Nachname", "Land", "Telefon", "Erstellt am"],
         ["email", "first_name", "last_name", "country", "phone", "created_at"]),
        (["E-post", "Förnamn", "Efternamn", "Land", "Mobilnummer", "Skapad"],
         ["email", "first_name", "last_name", "country", "phone", "created_at"]),
        (["Email Address", "First Name", "Last Name", "Country", "Created", "Tags"],
         ["email", "first_name", "last_name", "country", "created_at", "tags"]),
        (["email", "custom.plan", "Shoe size"], ["email", "custom.plan", None]),
    ],
)  # fmt: skip
def test_headers_are_guessed_in_english_german_and_swedish(
    header: list[str], fields: list[str | None]
) -> None:
    mapping = ColumnMapping.guess(RecordKind.CONTACTS, header)
    assert [field for _, field in mapping.columns] == fields
    assert mapping.ignored == tuple(h for h, f in zip(header, fields, strict=True) if f is None)


def test_a_given_mapping_wins_and_its_mistakes_are_named() -> None:
    header = ["Mail", "Seats", "Land"]
    mapping = ColumnMapping.given(
        "contacts", header, {"Mail": "email", "Seats": "custom.seats:int", "Land": None}
    )
    assert mapping.columns == (("Mail", "email"), ("Seats", "custom.seats:int"), ("Land", None))
    with pytest.raises(ImportFileError) as raised:
        ColumnMapping.given("contacts", header, {"Mail": "e_mail", "Nope": "email"})
    assert [p.field for p in raised.value.problems] == ["mapping['Mail']", "mapping['Nope']"]
    with pytest.raises(ImportFileError, match="fills email as column 'E-Mail' does"):
        ColumnMapping.guess("contacts", ["E-Mail", "Mail"])
    with pytest.raises(ImportFileError, match="leads need a column for source"):
        ColumnMapping.guess("leads", ["email", "channel"])
    with pytest.raises(ImportFileError, match="expected one of: contacts"):
        ColumnMapping.guess("people", ["email"])


def test_cells_are_read_as_their_field_types_with_every_problem() -> None:
    mapping = ColumnMapping.guess(
        "deals", ["Title", "Pipeline", "Stage", "Betrag", "Probability", "Status", "Closed"]
    )
    values, problems = read_cells(
        mapping, ["Big one", "sales", "won", "1.234,50 EUR", "25%", "Won", "31.01.2026 14:30"]
    )
    assert problems == []
    assert values["amount"][0] == pytest.approx(1234.5)
    assert values["amount"][1] == "EUR"
    assert str(values["probability"]) == "0.25"
    assert values["status"] is DealStatus.WON
    assert values["closed_at"] == datetime(2026, 1, 31, 14, 30, tzinfo=UTC)
    values, problems = read_cells(mapping, ["x", "sales", "won", "lots", "?", "Gewonnen", "later"])
    assert [p.field for p in problems] == ["Betrag", "Probability", "Status", "Closed"]


# ---------------------------------------------------------------------------- contacts

CONTACTS = """\
E-Mail;Vorname;Nachname;Land;Telefon;Erstellt am;Tags
ada@example.com;Ada;Lovelace;Deutschland;030 901820;2021-03-04 10:00;vip, newsletter
bo@example.com;Bo;Berg;Sverige;;01.02.2020;
not-an-email;X;Y;Atlantis;;2099-01-01;
"ca@example.com";"Carl";"Ceder;sund";SE;;;
"""


def test_contacts_are_stored_normalised_with_their_history(store: Store, tmp_path: Path) -> None:
    source = write(tmp_path / "people.csv", CONTACTS)
    report = import_csv(CRM(store), "contacts", source, rejects=tmp_path / "rejects.csv")
    assert (report.rows, report.created, report.rejected) == (4, 3, 1)
    assert adds_up(report)
    assert report.delimiter == ";"
    people = contacts_of(store)
    ada = people["ada@example.com"]
    assert (ada.country, ada.phone, ada.tags) == ("DE", "+4930901820", {"vip", "newsletter"})
    assert ada.created_at == datetime(2021, 3, 4, 10, tzinfo=UTC)  # the history is kept
    assert people["bo@example.com"].created_at == datetime(2020, 2, 1, tzinfo=UTC)
    assert people["ca@example.com"].last_name == "Ceder;sund"  # a quoted delimiter
    # The rejected row: its line, every problem (named by its column), its cells.
    (row,) = rejects(tmp_path / "rejects.csv")
    assert row["line"] == "4"
    assert "Land: not a country code" in row["problems"]
    assert "Erstellt am (created_at): lies in the future" in row["problems"]
    assert "E-Mail (email):" in row["problems"]
    assert row["E-Mail"] == "not-an-email"
    assert report.rejects_file == str(tmp_path / "rejects.csv")


def test_a_second_run_resumes_without_duplicates(store: Store, tmp_path: Path) -> None:
    lines = ["email,first_name"] + [f"p{i}@example.com,P{i}" for i in range(25)]
    source = write(tmp_path / "many.csv", "\n".join(lines) + "\n")
    crm = CRM(store)
    seen: list[int] = []

    def interrupt(done: int, total: int) -> None:
        seen.append(done)
        if done >= 20:
            raise KeyboardInterrupt  # the user presses Ctrl-C after two batches

    target = tmp_path / "rejects.csv"
    with pytest.raises(KeyboardInterrupt):
        import_csv(crm, "contacts", source, batch_size=10, progress=interrupt, rejects=target)
    assert seen == [10, 20]
    assert len(contacts_of(store)) == 20  # the committed batches are the checkpoint
    assert not target.exists()
    assert not (tmp_path / "rejects.csv.part").exists()  # nothing half-written
    report = import_csv(crm, "contacts", source, batch_size=10)
    assert (report.already_imported, report.created, report.skipped) == (20, 5, 0)
    assert report.committed_through == 26
    assert len(contacts_of(store)) == 25
    again = import_csv(crm, "contacts", source, batch_size=7)
    assert (again.already_imported, again.created) == (25, 0)


@pytest.mark.parametrize("kind", ["contacts", "leads"])
def test_rows_without_match_keys_resume_by_their_ids(
    store: Store, tmp_path: Path, kind: str
) -> None:
    crm = CRM(store)
    crm.create_contact(Contact.new(email="ada@example.com"))
    if kind == "contacts":  # names only: nothing to match them by but their id
        lines = ["first_name"] + [f"P{i}" for i in range(12)]
    else:
        lines = ["email,source,channel"] + [f"ada@example.com,s{i},form" for i in range(12)]
    source = write(tmp_path / "rows.csv", "\n".join(lines) + "\n")

    def interrupt(done: int, total: int) -> None:
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_csv(crm, kind, source, batch_size=4, progress=interrupt)
    report = import_csv(crm, kind, source, batch_size=5)  # other batches than before
    assert (report.already_imported, report.created, report.rejected) == (8, 4, 0)
    with store.unit_of_work() as unit:
        stored = unit.contacts.count() - 1 if kind == "contacts" else unit.leads.count()
    assert stored == 12


DUPLICATES = """\
email,first_name,last_name,phone,tags
ADA@example.com,Ada,King,+49 30 901821,new
a.da@gmail.com,,Other,,
ada@example.com,,,,
"""


@pytest.mark.parametrize(
    ("action", "counts", "ada"),
    [
        ("skip", (0, 0, 3, 0), (None, "Lovelace", None, {"old"})),
        ("merge", (0, 3, 0, 0), ("Ada", "Lovelace", "+4930901821", {"old", "new"})),
        # The store keeps one contact per address: the same address again is refused,
        # a.da@gmail.com is another address (its e-mail key is ada@gmail.com's).
        ("create", (1, 0, 0, 2), (None, "Lovelace", None, {"old"})),
    ],
)
def test_duplicates_are_skipped_merged_or_created(
    store: Store,
    tmp_path: Path,
    action: str,
    counts: tuple[int, int, int, int],
    ada: tuple[Any, ...],
) -> None:
    crm = CRM(store)
    crm.create_contact(Contact.new(email="ada@example.com", last_name="Lovelace", tags={"old"}))
    crm.create_contact(Contact.new(email="ada@gmail.com", first_name="Ada"))
    source = write(tmp_path / "dups.csv", DUPLICATES)
    report = import_csv(crm, "contacts", source, on_duplicate=action)
    assert (report.created, report.merged, report.skipped, report.rejected) == counts
    assert adds_up(report)
    people = contacts_of(store)
    stored = people["ada@example.com"]
    assert (stored.first_name, stored.last_name, stored.phone, stored.tags) == ada
    if action == "merge":
        assert people["ada@gmail.com"].last_name == "Other"
    if action == "skip":
        assert [r.line for r in report.rejects] == [2, 3, 4]
        assert all(r.skipped for r in report.rejects)
        assert "a duplicate of stored contact" in str(report.rejects[0].problems[0])
    if action == "create":
        assert [r.line for r in report.rejects] == [2, 4]
        assert "already exists" in str(report.rejects[0].problems[0])
    assert report.ok is (action != "create")


def test_an_erased_person_is_rejected_with_the_reason(store: Store, tmp_path: Path) -> None:
    crm = CRM(store, privacy_secret=SECRET)
    gone = crm.create_contact(Contact.new(email="gone@example.com"))
    crm.erase_person(gone.id, by="dpo", reason="asked")
    source = write(tmp_path / "back.csv", "email\nGone@Example.com\nnew@example.com\n")
    report = import_csv(crm, "contacts", source)
    assert (report.created, report.rejected) == (1, 1)
    (row,) = report.rejects
    assert row.line == 2
    assert "asked to be forgotten" in row.problems[0].reason


def test_accounts_leads_deals_and_activities_name_their_contact(
    store: Store, tmp_path: Path
) -> None:
    crm = CRM(store)
    crm.create_contact(Contact.new(email="ada@example.com"))
    accounts = write(
        tmp_path / "a.csv",
        "Firma,Webseite,Land,Mitarbeiter\nAcme GmbH,acme.de,DE,12\nACME,ACME.de,,\n",
    )
    report = import_csv(crm, "accounts", accounts, on_duplicate="merge")
    assert (report.created, report.merged) == (1, 1)
    leads = write(
        tmp_path / "l.csv",
        "Email,Source,Channel,Score\nada@example.com,webinar,Form,40\nnobody@x.io,fair,event,\n",
    )
    report = import_csv(crm, "leads", leads)
    assert (report.created, report.rejected) == (1, 1)
    assert "no stored contact has this e-mail address" in str(report.rejects[0].problems[0])
    deals = write(
        tmp_path / "d.csv",
        "Title;Pipeline;Stage;Amount;Currency;Status;Closed at;Email\n"
        "Big;sales;won;13500;EUR;won;2026-05-01;ada@example.com\n"
        "Bad;sales;won;10;EUR;won;;ada@example.com\n",
    )
    report = import_csv(crm, "deals", deals)
    assert (report.created, report.rejected) == (1, 1)
    assert report.rejects[0].problems[0].field == "Closed at (closed_at)"
    activities = write(
        tmp_path / "e.csv",
        "email,type,date,subject,properties.url\n"
        "ada@example.com,page_view,2026-10-01T12:00:00+02:00,Pricing,/pricing\n",
    )
    report = import_csv(crm, "activities", activities)
    assert report.created == 1
    with store.unit_of_work() as unit:
        (lead,) = unit.leads.iterate()
        (deal,) = unit.deals.iterate()
        (event,) = unit.activities.iterate()
        (account,) = unit.accounts.iterate()
    assert (lead.channel, lead.score) == (LeadChannel.FORM, 40.0)
    assert (deal.status, str(deal.amount.amount) if deal.amount else None) == ("won", "13500")
    assert event.occurred_at == datetime(2026, 10, 1, 10, tzinfo=UTC)
    assert event.properties == {"url": "/pricing"}
    assert (account.name, account.employees) == ("Acme GmbH", 12)


# ---------------------------------------------------------------------------- bad input


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Store]:
    yield from stepping_store("sqlite", tmp_path, NOW, "import")


def test_a_bom_semicolons_and_quoted_line_breaks_are_read(sqlite: Store, tmp_path: Path) -> None:
    store = sqlite
    source = tmp_path / "bom.csv"
    source.write_bytes(b'\xef\xbb\xbfE-Mail;Notiz\r\nada@example.com;"two\r\nlines"\r\n')
    report = import_csv(CRM(store), "contacts", source, mapping={"Notiz": "custom.note"})
    assert (report.created, report.delimiter, report.encoding) == (1, ";", "utf-8")
    assert contacts_of(store)["ada@example.com"].custom == {"note": "two\r\nlines"}


BAD_FILES = [  # name, content, the field the error names, what it says
    ("latin1.csv", "E-Mail,Vorname\nada@example.com,Jürgen\n".encode("latin-1"), "encoding",
     "is not utf-8 text"),
    ("empty.csv", b"", "file", "the file is empty"),
    ("blank.csv", b"\n\n", "file", "the file is empty"),
    ("noheader.csv", b"ada@example.com,Ada\nbo@example.com,Bo\n", "header",
     "contacts need a column for email"),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_an_unreadable_file_is_refused_before_anything_is_stored(
    store: Store, tmp_path: Path, bad: tuple[str, bytes, str, str]
) -> None:
    name, data, field, says = bad
    crm = CRM(store)
    crm.create_contact(Contact.new(email="kept@example.com"))
    source = tmp_path / name
    source.write_bytes(data)
    target = tmp_path / "rejects.csv"
    with pytest.raises(ImportFileError) as raised:
        import_csv(crm, "contacts", source, rejects=target)
    assert raised.value.field == field
    assert says in str(raised.value)
    assert list(contacts_of(store)) == ["kept@example.com"]
    assert not target.exists()


def test_a_wrong_byte_late_in_the_file_stores_nothing(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"p{i}@example.com\n" for i in range(1000))
    source = tmp_path / "late.csv"
    source.write_bytes(b"email\n" + rows.encode() + "jürgen@example.com\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match="near line 1002") as raised:
        import_csv(CRM(store), "contacts", source, batch_size=100)
    assert raised.value.field == "encoding"
    assert contacts_of(store) == {}
    report = import_csv(CRM(store), "contacts", source, encoding="latin-1", batch_size=1000)
    assert report.created == 1001


def test_a_huge_cell_rejects_its_row_only(sqlite: Store, tmp_path: Path) -> None:
    store = sqlite
    source = tmp_path / "huge.csv"
    huge = "x" * (10 * 1024 * 1024)
    source.write_text(f"email,first_name\nada@example.com,{huge}\nbo@example.com,Bo\n")
    report = import_csv(CRM(store), "contacts", source, rejects=tmp_path / "r.csv")
    assert (report.created, report.rejected) == (1, 1)
    (row,) = rejects(tmp_path / "r.csv")
    assert "first_name: longer than 100000 characters" in row["problems"]
    assert len(row["first_name"]) == len(huge)  # nothing is lost


def test_a_missing_file_and_wrong_options_are_named(tmp_path: Path) -> None:
    crm = CRM(MemoryStore("opts"))
    with pytest.raises(ImportFileError, match="no such file"):
        import_csv(crm, "contacts", tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match="is a directory"):
        import_csv(crm, "contacts", tmp_path)
    source = write(tmp_path / "ok.csv", "email\nada@example.com\n")
    for option, value in [
        ("on_duplicate", "overwrite"),
        ("batch_size", 0),
        ("encoding", "klingon"),
        ("delimiter", "::"),
    ]:
        with pytest.raises(ValidationError) as raised:
            import_csv(crm, "contacts", source, **{option: value})
        assert raised.value.field == option
    assert DuplicateAction("merge") is DuplicateAction.MERGE
