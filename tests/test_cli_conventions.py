"""The conventions every ``crmkit`` command keeps: help with examples, exit codes,
messages on stderr; and the demo without any optional dependency."""

import sys
from pathlib import Path

import pytest

from crmkit import __version__
from crmkit.cli import COMMANDS, main
from tests.test_cli import crmkit


def test_demo_needs_no_optional_dependency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's first command installs crmkit without extras and runs the demo.
    monkeypatch.setitem(sys.modules, "phonenumbers", None)
    monkeypatch.setitem(sys.modules, "numpy", None)
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "the deal is won: Ada is a customer" in out
    assert "customer lifetime value: " in out
    assert "pip install 'crmkit[analytics]'" in out


def test_the_command_is_installed() -> None:
    result = crmkit("--version")
    assert result.stdout.strip() == f"crmkit {__version__}"


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert f"crmkit {command}" in text.split("examples:")[1]
    assert "exit status: 0 ok, 1 a data problem, 2 a usage error" in text


def test_usage_errors_exit_2_on_stderr(tmp_path: Path) -> None:
    missing = crmkit("report", "--out", str(tmp_path / "r.html"), env={"CRMKIT_DB": ""})
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == "crmkit report: no database: pass --db URL or set CRMKIT_DB\n"
    unknown = crmkit("segment", "--db", "x.db", "--list", "--colour", "red")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --colour" in unknown.stderr
    nowhere = crmkit("report", "--db", str(tmp_path / "none.db"), "--out", "r.html")
    assert nowhere.returncode == 2
    assert "no database at" in nowhere.stderr
    assert "does not exist" in nowhere.stderr
    assert not (tmp_path / "none.db").exists()  # nothing created on the way
