import re
import subprocess
import sys

import pytest

from crmkit import __version__
from crmkit.cli import main


def cells(section: str, first: str) -> list[str]:
    """The cells of the table row of ``section`` that starts with ``first``."""
    row = next(line for line in section.splitlines() if line.startswith(first))
    return re.split(r"\s{2,}", row.strip())


def test_demo_prints_contacts_a_lead_and_a_deal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    contacts, rest = out.split("\nLeads\n")
    leads, deals = rest.split("\nDeals\n")
    assert cells(contacts, "Ada Lovelace")[:3] == [
        "Ada Lovelace", "Ada.Lovelace@example.com", "+442079460958",
    ]  # fmt: skip
    assert "Linus Berg" in contacts
    assert "+4930901820" in contacts
    assert "sara@kund.se" in contacts
    # title, section, header, rule and three rows
    assert len([line for line in contacts.splitlines() if line]) == 7
    assert cells(leads, "Ada Lovelace") == ["Ada Lovelace", "pricing-page", "form", "working", "42"]
    assert cells(deals, "Acme") == [
        "Acme: 12 team seats", "Linus Berg", "sales", "proposal", "14400.00 EUR", "60%",
        "8640.00 EUR",
    ]  # fmt: skip


def test_demo_needs_no_optional_dependency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's first command installs crmkit without extras and runs the demo.
    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    assert main(["demo"]) == 0
    assert "+4930901820" in capsys.readouterr().out


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
