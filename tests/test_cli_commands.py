"""``crmkit segment``, ``score``, ``dedupe``, ``export``, ``erase`` and ``report`` through
the entry point (``crmkit.cli.main``, what the installed ``crmkit`` runs) on SQLite and
PostgreSQL, and the bad input they meet: a database that does not exist or is locked,
an output path that cannot be written, a rule that is not JSON."""

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

import pytest

from crmkit.cli import main
from crmkit.cli._demo import SCORING
from crmkit.clock import FixedClock
from crmkit.crm import CRM
from crmkit.lifecycle import Pipeline, Stage, StageKind, Touchpoint
from crmkit.models import Activity, ActivityKind, LeadChannel, Money, SubjectKind
from crmkit.segmentation import contacts_where, field
from crmkit.serialization import make_converter
from crmkit.storage.sql import open_store
from tests.storage_support import postgres_url
from tests.test_cli import crmkit

HOSTILE = "<script>alert('x')</script>"
SECRET = "a secret of the host, 32 bytes.."
SALES = Pipeline(
    key="sales",
    label="Sales & <b>more</b>",
    subject=SubjectKind.DEAL,
    stages=(
        Stage(key="discovery", label="Discovery", probability=Decimal("0.2")),
        Stage(key="proposal", label="Proposal", probability=Decimal("0.5")),
        Stage(key="won", label="Won", probability=Decimal(1), kind=StageKind.WON),
        Stage(key="lost", label="Lost", kind=StageKind.LOST),
    ),
)


def seed(url: str, tenant: str) -> dict[str, str]:
    """A small store: five people (one with a hostile name, two that are one person),
    their leads, three deals and a purchase; returns the ids by name."""
    clock = FixedClock(datetime(2026, 1, 5, 9, tzinfo=UTC), step=timedelta(seconds=1))
    store = open_store(url, tenant=tenant, clock=clock)
    crm = CRM(store, pipelines=[SALES])
    ids = {}
    people = [
        ("ada", "Ada", "Lovelace", "DE", "ada@example.com", "+49 30 901820"),
        ("ada2", "Ada", "Lovelace", "DE", "ada.lovelace@work.example", "+49 30 901820"),
        ("bruno", "Bruno", "Keller", "AT", "bruno@example.at", None),
        ("chloe", "Chloé", "Martin", "FR", "chloe@example.fr", None),
        ("evil", HOSTILE, "</table>", "SE", "evil@example.se", None),
    ]
    for key, first, last, country, email, phone in people:
        touch = Touchpoint(
            email=email,
            source="web",
            channel=LeadChannel.FORM,
            first_name=first,
            last_name=last,
            country=country,
            phone=phone,
        )
        captured = crm.capture_lead(touch)
        ids[key] = str(captured.contact.id)
        ids[f"{key}-lead"] = str(captured.lead.id)
    for key, amount, fate in (("ada", 9000, "won"), ("bruno", 4000, "lost"), ("evil", 500, "")):
        deal = crm.convert_lead(
            uuid(ids[f"{key}-lead"]),
            pipeline="sales",
            title=f"{HOSTILE} deal" if key == "evil" else f"{key} deal",
            amount=Money(Decimal(amount), "EUR"),
            expected_close=date(2026, 2, 15),
        ).deal
        clock.advance(timedelta(days=3))
        if fate == "won":
            crm.win_deal(deal.id, by="ben")
        elif fate == "lost":
            crm.lose_deal(deal.id, by="ben", reason=HOSTILE)
    for key in ("ada", "evil"):
        crm.record_activity(
            Activity.new(
                contact_id=uuid(ids[key]),
                kind=ActivityKind.PURCHASE,
                amount=Money("120.00", "EUR"),
                properties={"product": HOSTILE},
                clock=clock,
            )
        )
    store.close()
    return ids


def uuid(text: str) -> object:
    from uuid import UUID  # noqa: PLC0415

    return UUID(text)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The ``--db`` and ``--tenant`` options of a seeded store, and its ids."""
    url = f"sqlite:///{tmp_path / 'crm.db'}" if request.param == "sqlite" else postgres_url()
    tenant = f"cli-{uuid4().hex[:10]}"
    ids = seed(url, tenant)
    return ["--db", url, "--tenant", tenant], ids


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def as_json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    status, out, err = run(capsys, *args, "--json")
    assert (status, err) == (0, "")
    return json.loads(out)


RULE = json.dumps(make_converter().unstructure(contacts_where(field("country").is_in("DE", "AT"))))


def test_segment_counts_lists_saves_and_reads_back(
    capsys: pytest.CaptureFixture[str], db: tuple[list[str], dict[str, str]]
) -> None:
    options, ids = db
    listed = as_json(capsys, "segment", *options, "--rule", RULE)
    assert isinstance(listed, dict)
    assert listed["count"] == 3
    assert {c["id"] for c in listed["contacts"]} == {ids["ada"], ids["ada2"], ids["bruno"]}
    assert run(capsys, "segment", *options, "--rule", RULE, "--count")[1] == "3\n"
    status, out, _ = run(capsys, "segment", *options, "--rule", RULE, "--save", "DACH")
    assert status == 0
    assert out.startswith("saved the segment 'DACH'")
    assert "Bruno Keller <bruno@example.at>" in out
    named = as_json(capsys, "segment", *options, "--name", "DACH")
    assert isinstance(named, dict)
    assert named["count"] == 3
    stored = as_json(capsys, "segment", *options, "--list")
    assert stored == [{"id": stored[0]["id"], "name": "DACH", "kind": "dynamic", "contacts": 3}]  # type: ignore[index]
    again = run(capsys, "segment", *options, "--rule", RULE, "--save", "DACH")
    assert again[0] == 2
    assert "a segment of that name exists" in again[2]


def test_score_rescores_open_leads_and_explains(
    capsys: pytest.CaptureFixture[str],
    db: tuple[list[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    options, ids = db
    model = tmp_path / "model.json"
    model.write_text(json.dumps(make_converter().unstructure(SCORING)))
    scored = as_json(capsys, "score", *options, "--model", str(model))
    assert isinstance(scored, dict)
    by_lead = {row["lead"]: row for row in scored["leads"]}
    # The converted leads are closed: only Ada's second address and Chloé's are open.
    assert set(by_lead) == {ids["ada2-lead"], ids["chloe-lead"]}
    ada2 = by_lead[ids["ada2-lead"]]
    assert ada2["score"] == 30.0  # in DACH or Nordics (20) and came via a form (10)
    assert [c["criterion"] for c in ada2["contributions"]] == [
        "in DACH or Nordics",
        "came via a form",
    ]
    assert by_lead[ids["chloe-lead"]]["score"] == 10.0
    status, out, _ = run(
        capsys, "score", *options, "--model", str(model), "--lead", ids["chloe-lead"]
    )
    assert status == 0
    assert out.startswith("1 lead scored with 'Inbound leads'; 0 contacts became MQL")
    missing = run(capsys, "score", *options)
    assert missing[0] == 2
    assert "no scoring model" in missing[2]
    closed = run(capsys, "score", *options, "--model", str(model), "--lead", ids["ada-lead"])
    assert closed[0] == 1  # a closed lead is a data problem


def test_dedupe_finds_the_person_stored_twice(
    capsys: pytest.CaptureFixture[str], db: tuple[list[str], dict[str, str]]
) -> None:
    options, ids = db
    found = as_json(capsys, "dedupe", *options)
    assert isinstance(found, dict)
    pairs = {(p["left"], p["right"]) for p in found["shown"]}
    assert tuple(sorted((ids["ada"], ids["ada2"]))) in pairs
    top = found["shown"][0]
    assert top["verdict"] in ("duplicate", "review")
    assert any(c["comparison"] == "phone" and c["weight"] > 0 for c in top["contributions"])
    status, out, _ = run(capsys, "dedupe", *options)
    assert status == 0
    assert "Ada Lovelace <ada@example.com>" in out


def test_export_and_erase_a_person(
    capsys: pytest.CaptureFixture[str],
    db: tuple[list[str], dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options, ids = db
    bundle = as_json(capsys, "export", *options, "--email", "bruno@example.at", "--by", "dpo")
    assert isinstance(bundle, dict)
    assert bundle["manifest"]["contact_id"] == ids["bruno"]
    assert bundle["data"]["contacts"][0]["email"] == "bruno@example.at"
    status, _, _ = run(capsys, "export", *options, "--contact", ids["bruno"], "--by", "dpo",
                       "--out", str(tmp_path / "bruno.json"))  # fmt: skip
    assert status == 0
    assert (
        json.loads((tmp_path / "bruno.json").read_text())["manifest"]["contact_id"] == ids["bruno"]
    )
    status, _, _ = run(capsys, "export", *options, "--contact", ids["bruno"], "--by", "dpo",
                       "--csv", str(tmp_path / "bruno"))  # fmt: skip
    assert status == 0
    assert (tmp_path / "bruno" / "contacts.csv").read_text().count("bruno@example.at") == 1
    # Erasing needs confirmation and the host's secret.
    refused = run(
        capsys, "erase", *options, "--contact", ids["bruno"], "--by", "dpo", "--reason", "asked"
    )
    assert refused[0] == 2
    assert "--yes" in refused[2]
    monkeypatch.delenv("CRMKIT_PRIVACY_SECRET", raising=False)
    no_secret = run(capsys, "erase", *options, "--contact", ids["bruno"], "--by", "dpo",
                    "--reason", "asked", "--yes")  # fmt: skip
    assert no_secret[0] == 2
    assert "CRMKIT_PRIVACY_SECRET" in no_secret[2]
    monkeypatch.setenv("CRMKIT_PRIVACY_SECRET", SECRET)
    erased = as_json(capsys, "erase", *options, "--email", "bruno@example.at", "--by", "dpo",
                     "--reason", "asked", "--yes")  # fmt: skip
    assert isinstance(erased, dict)
    assert erased["contact_id"] == ids["bruno"]
    assert erased["records"] >= 2  # the contact and its lead, at least
    gone = run(capsys, "export", *options, "--email", "bruno@example.at", "--by", "dpo")
    assert gone[0] == 1
    assert "not found" in gone[2]
    twice = run(capsys, "erase", *options, "--contact", ids["bruno"], "--by", "dpo",
                "--reason", "asked", "--yes")  # fmt: skip
    assert twice[0] == 1


def test_report_escapes_what_the_store_holds(
    capsys: pytest.CaptureFixture[str], db: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    options, _ = db
    out = tmp_path / "report.html"
    status, said, err = run(capsys, "report", *options, "--out", str(out), "--title", HOSTILE)
    assert (status, err) == (0, "")
    assert said.startswith(f"wrote {out}")
    page = out.read_text(encoding="utf-8")
    # The hostile contact name, lost reason, product and title never reach the markup raw.
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page  # the title
    assert page.count("<script>") == 1  # the report's own marker, nothing else
    clv = page.split('<section id="clv">')[1].split("</section>")[0]
    assert "<td>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &lt;/table&gt;</td>" in clv
    # The pipelines were read off the stored deals (no --setup): a funnel of deals.
    assert 'data-chart="funnel-sales"' in page


def test_env_gives_the_database(
    capsys: pytest.CaptureFixture[str],
    db: tuple[list[str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options, _ = db
    monkeypatch.setenv("CRMKIT_DB", options[1])
    monkeypatch.setenv("CRMKIT_TENANT", options[3])
    assert run(capsys, "segment", "--rule", RULE, "--count")[1] == "3\n"


# ---------------------------------------------------------------------- bad input


def test_a_bad_out_path_writes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed(url, "default")
    for bad, reason in (
        (tmp_path / "no" / "such" / "report.html", "does not exist"),
        (tmp_path, "is a folder"),
    ):
        status, out, err = run(capsys, "report", "--db", url, "--out", str(bad))
        assert (status, out) == (2, "")
        assert reason in err
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("crm.db")] == []


def test_bad_rules_and_models_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed(url, "default")
    status, _, err = run(capsys, "segment", "--db", url, "--rule", '{"entity": "contact", "where"')
    assert status == 2
    assert "--rule is not JSON: Expecting ':' delimiter at line 1, column 30" in err
    status, _, err = run(capsys, "segment", "--db", url, "--rule", '{"entity": "deal", "where": 1}')
    assert status == 2
    assert "$.where" in err
    (tmp_path / "model.json").write_bytes(b"\xff\xfe")
    status, _, err = run(capsys, "score", "--db", url, "--model", str(tmp_path / "model.json"))
    assert status == 2
    assert "is not UTF-8 text" in err
    status, _, err = run(capsys, "score", "--db", url, "--model", str(tmp_path / "none.json"))
    assert status == 2
    assert "No such file or directory" in err
    status, _, err = run(capsys, "export", "--db", url, "--contact", "ada", "--by", "dpo")
    assert status == 2
    assert "--contact 'ada' is not a contact id" in err


def test_a_locked_database_is_a_clear_data_problem(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    seed(f"sqlite:///{path}", "default")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program is writing
    try:
        done = crmkit("segment", "--db", str(path), "--rule", RULE, "--save", "DACH")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (done.returncode, done.stdout) == (1, "")
    assert "database is locked" in done.stderr
    assert "Traceback" not in done.stderr
    store = open_store(f"sqlite:///{path}")
    with store.unit_of_work() as unit:
        assert unit.segments.count() == 0  # nothing half-written
    store.close()


def test_a_file_that_is_not_a_crmkit_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    done = crmkit("segment", "--db", str(path), "--list")
    assert done.returncode == 1
    assert done.stderr.startswith("crmkit segment: ")
    assert "Traceback" not in done.stderr


def test_a_command_that_creates_its_database_may_name_a_new_file(tmp_path: Path) -> None:
    from crmkit.cli._common import UsageError, database_url  # noqa: PLC0415

    new = tmp_path / "new.db"
    assert database_url(str(new), must_exist=False) == f"sqlite:///{new}"
    assert database_url(f"sqlite:///{new}", must_exist=False) == f"sqlite:///{new}"
    with pytest.raises(UsageError, match="does not exist"):
        database_url(str(new))
    assert not new.exists()


def test_a_chart_with_nothing_to_draw_is_left_out_and_said_so(tmp_path: Path) -> None:
    from crmkit.cli._report import build_report  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    seed(url, "default")
    later = FixedClock(datetime(2030, 6, 1, tzinfo=UTC))  # no deal is due then
    store = open_store(url, clock=later)
    page = build_report(CRM(store, pipelines=[SALES]))
    store.close()
    forecast = page.split('<section id="forecast">')[1].split("</section>")[0]
    assert "<svg" not in forecast
    assert "Nothing to draw for this time" in forecast
    assert "<td>2030-06</td>" in forecast  # the table is still there, with its zeros
    assert 'data-chart="funnel"' in page
