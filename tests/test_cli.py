import re
import subprocess
import sys
from pathlib import Path

import pytest

from crmkit import __version__
from crmkit.cli import main
from crmkit.storage.sql import open_store


def cells(section: str, first: str) -> list[str]:
    """The cells of the table row of ``section`` that starts with ``first``."""
    row = next(line for line in section.splitlines() if line.startswith(first))
    return re.split(r"\s{2,}", row.strip())


def test_demo_tells_steps_2_to_4_on_sqlite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "matched to the same contact" in out
    assert "moving to proposal is refused: amount is required in stage 'proposal'" in out
    assert "the approver must be a second person" in out
    assert "25% discount is more than the 20%" in out
    sla = out.split("SLA report, policy 'priority'")[1].split("Sam sends")[0]
    assert cells(sla, "next_response")[:4] == ["next_response", "2h00", "1h35", "at_risk"]
    assert "solves the ticket: first_response met, next_response met, resolution met" in out
    contacts = out.split("\nContacts (read back from the store)\n")[1].split("\nDeals\n")[0]
    assert cells(contacts, "Ada Lovelace") == [
        "Ada Lovelace", "Ada.Lovelace@example.com", "DE", "customer",
    ]  # fmt: skip
    assert cells(contacts, "sara@kund.se")[2:] == ["SE", "lead"]
    deals = out.split("\nDeals\n")[1].split("\nTimeline")[0]
    assert cells(deals, "Lovelace")[2:6] == ["won", "won", "13500.00 EUR", "100%"]
    assert cells(deals, "Acme")[-1] == "no budget this year"
    timeline = out.split("\nTimeline of Ada Lovelace\n")[1].splitlines()
    stages = [line.split("contact: ")[1].split(" ")[2] for line in timeline if "contact: " in line]
    assert stages == ["lead", "mql", "sql", "opportunity", "customer"]
    # Running it again on the same file would tell the story twice: refused.
    assert main(["demo", "--db", str(db)]) == 1
    assert "already holds the demo's data" in capsys.readouterr().err
    # The data is in the SQLite file, for the reader to look at.
    store = open_store(f"sqlite:///{db}", tenant="demo")
    with store.unit_of_work() as unit:
        assert unit.contacts.count() == 3
        assert unit.deals.count() == 2
    store.close()


def test_demo_needs_no_optional_dependency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's first command installs crmkit without extras and runs the demo.
    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    monkeypatch.setitem(sys.modules, "numpy", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert main(["demo"]) == 0
    assert "the deal is won: Ada is a customer" in capsys.readouterr().out


def test_the_command_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "crmkit", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"crmkit {__version__}"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
