"""The ``crmkit`` command: the demo's story and its report (opened in a real browser),
and the conventions every command keeps (help with examples, exit codes, stderr)."""

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crmkit.cli import main
from crmkit.storage.sql import open_store

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CRMKIT_ARTIFACTS", ROOT / "artifacts"))
"""Where the browser test leaves its screenshot (CI keeps the folder as an artifact)."""
REPORT_CHARTS = {
    "funnel", "funnel-sales", "pipeline-sales-EUR", "forecast-sales-EUR", "calibration",
    "win-rate", "cycle-length", "retention", "sla", "csat", "nps", "clv", "quality",
}  # fmt: skip
"""Every chart the demo's report draws: each section of the report has data."""


def cells(section: str, first: str) -> list[str]:
    """The cells of the table row of ``section`` that starts with ``first``."""
    row = next(line for line in section.splitlines() if line.startswith(first))
    return re.split(r"\s{2,}", row.strip())


def crmkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed command as a user would (``python -m crmkit``)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "crmkit", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """One run of ``crmkit demo --db ... --report ...``: its output, database and report."""
    folder = tmp_path_factory.mktemp("demo")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--db", str(folder / "demo.db"), "--report", str(folder / "d.html")])
    assert status == 0
    return out.getvalue(), folder / "demo.db", folder / "d.html"


def test_demo_tells_step_1_reach(demo: tuple[str, Path, Path]) -> None:
    out = demo[0].split("\nStep 1: reach the audience\n")[1].split("\nStep 2")[0]
    found = re.search(r"Nordics': (\d+) contacts; (\d+) may .* \(left out: (\d+) consent", out)
    assert found is not None
    size, reachable, left_out = map(int, found.groups())
    assert size == reachable + left_out
    assert left_out > 0  # consent respected
    a, b = cells(out, "A "), cells(out, "B ")
    assert int(a[2]) + int(b[2]) == reachable  # every reachable contact got one variant
    assert "p = 0.001: significant at 95%: B goes to the rest of the list" in out


def test_demo_tells_steps_2_to_4(
    capsys: pytest.CaptureFixture[str], demo: tuple[str, Path, Path]
) -> None:
    out, db, _ = demo
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
    assert cells(deals, "Lovelace Analytics: 10")[2:6] == ["won", "won", "13500.00 EUR", "100%"]
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
        assert unit.contacts.count() == 123  # the year before, and Ada, Linus and Sara
        assert unit.segments.count() == 1
    store.close()


def test_demo_tells_step_5_grow_and_the_kpis(demo: tuple[str, Path, Path]) -> None:
    out = demo[0].split("\nStep 5: grow and upsell\n")[1]
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if "RFM groups of the" in line)
    found = re.search(r"RFM groups of the (\d+) customers", lines[first])
    assert found is not None
    counted = []
    for line in lines[first + 3 :]:  # under the table's header and rule
        if line.startswith("Mon "):
            break
        counted.append(int(line.split()[-1]))
    assert sum(counted) == int(found.group(1))  # every customer who bought is in one group
    assert len(counted) >= 5
    assert "customers whose purchases are most like Ada's: " in out
    assert re.search(r"check-ins every 90 days: \d+ tasks for Carla, Ada's due Sun 31 May", out)
    assert re.search(r"customer lifetime value over 12 months .*: Ada's is \d+\.\d\d EUR", out)
    assert "upsell deal 'Lovelace Analytics: 15 more seats' (9000.00 EUR) in stage discovery" in out
    kpis = out.split("\nThe KPIs\n")[1]
    assert cells(kpis, "lifecycle     customer")[0] == "lifecycle"
    assert "Win rate and cycle length" in kpis
    assert "CSAT and NPS" in kpis


# ---------------------------------------------------------------------- the report


def test_the_demo_report_is_one_offline_file_with_every_chart(demo: tuple[str, Path, Path]) -> None:
    page = demo[2].read_text(encoding="utf-8")
    charts = set(re.findall(r'<svg class="chart" data-chart="([^"]+)"', page))
    assert charts == REPORT_CHARTS
    # Nothing is fetched: no external script, style, image or font; no CDN.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert not re.search(r"<link|@import|url\(", page)
    assert set(re.findall(r"https?://[^\"' )]+", page)) == {"http://www.w3.org/2000/svg"}
    # Each chart comes with its table.
    for key in ("funnel", "pipeline", "forecast", "calibration", "win-rate", "retention",
                "sla", "csat", "clv", "quality"):  # fmt: skip
        section = page.split(f'<section id="{key}">')[1].split("</section>")[0]
        assert "<table>" in section
        assert "<svg" in section, key


def test_the_report_of_the_demo_tells_its_numbers(demo: tuple[str, Path, Path]) -> None:
    page = demo[2].read_text(encoding="utf-8")
    quality = page.split('<section id="quality">')[1]
    assert "123 contacts and 0 accounts" in quality
    retention = page.split('<section id="retention">')[1].split("</section>")[0]
    assert "<td>100%</td>" in retention  # every cohort starts whole
    # The demo's customers who left (or paused for a quarter) leave their cohorts: a
    # heatmap of 100% in every cell (as with 180 days of inactivity) tells nothing.
    cells = re.findall(r"<td>(\d+)%</td>", retention)
    assert cells
    assert min(int(c) for c in cells) < 100


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
)  # fmt: skip
# Records every uncaught error and console.error of the page on <html data-errors>,
# before the report's own markup runs; the test loads a copy of the report with it.
PROBE = """<script>
(function () {
  var seen = [];
  function note(text) {
    seen.push(String(text));
    document.documentElement.setAttribute("data-errors", JSON.stringify(seen));
  }
  window.addEventListener("error", function (e) { note(e.message || "error"); }, true);
  window.addEventListener("unhandledrejection", function (e) { note(e.reason); });
  var original = console.error;
  console.error = function () { note(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
})();
</script>"""  # noqa: E501


def browser(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         *args, page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def rendered(page: Path, profile: Path) -> tuple[str, str]:
    """The DOM of ``page`` after load (with the probe), and chromium's log."""
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", f"<head>{PROBE}", 1))
    done = browser(probe, profile, "--dump-dom", "--virtual-time-budget=10000")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.fixture
def needs_chromium() -> None:
    if CHROMIUM is None:
        if os.environ.get("CRMKIT_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium: scripts/test installs the Debian package chromium")
        pytest.skip("no chromium (scripts/test installs it)")


@pytest.mark.usefixtures("needs_chromium")
def test_the_report_renders_in_a_real_browser(demo: tuple[str, Path, Path], tmp_path: Path) -> None:
    dom, log = rendered(demo[2], tmp_path / "profile")
    errors = re.search(r"<html[^>]*data-errors=\"([^\"]*)\"", dom)
    assert errors is None, errors.group(1)
    assert not re.findall(r"CONSOLE.*(Uncaught|Error)", log)
    drawn = dict(re.findall(r'data-chart="([^"]+)"[^>]*data-rendered="(yes|no)"', dom))
    assert drawn == dict.fromkeys(REPORT_CHARTS, "yes")
    assert f'data-charts="{len(REPORT_CHARTS)} {len(REPORT_CHARTS)}"' in dom
    # The screenshot, for people: CI keeps ARTIFACTS (documented in docs/reference/cli.md).
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    done = browser(demo[2], tmp_path / "shot", "--window-size=1280,5600", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 100_000


@pytest.mark.usefixtures("needs_chromium")
def test_the_browser_check_sees_errors_and_blank_charts(tmp_path: Path) -> None:
    # The check above must be able to fail: a page with a script error and a chart
    # that draws nothing.
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head></head><body>"
        '<svg class="chart" data-chart="empty" viewBox="0 0 10 10"><rect class="mark" '
        'width="0" height="0"/></svg><script>' + _mark_script() + "</script>"
        "<script>undefined_function();</script></body></html>"
    )
    dom, _ = rendered(page, tmp_path / "profile")
    errors = re.search(r"<html[^>]*data-errors=\"([^\"]*)\"", dom)
    assert errors is not None
    assert "undefined_function is not defined" in errors.group(1)
    assert re.search(r'data-chart="empty"[^>]*data-rendered="no"', dom)


def _mark_script() -> str:
    from crmkit.cli._report import _SCRIPT  # noqa: PLC0415 - the report's own marker

    return _SCRIPT
