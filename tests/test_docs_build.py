"""The documentation builds without a single warning and documents every public name."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="building the docs needs the 'docs' extra")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The modules of the reference section; each documents every name in its __all__.
REFERENCE_MODULES = [
    "crmkit.models",
    "crmkit.models.rules",
    "crmkit.crm",
    "crmkit.lifecycle",
    "crmkit.scoring",
    "crmkit.segmentation",
    "crmkit.privacy",
    "crmkit.automation",
    "crmkit.storage",
    "crmkit.storage.memory",
    "crmkit.storage.sql",
    "crmkit.storage.sql.types",
    "crmkit.privacy",
    "crmkit.errors",
    "crmkit.clock",
    "crmkit.serialization",
    "crmkit.testing.strategies",
    "crmkit.testing.storage",
]


@pytest.fixture(scope="module")
def html_build(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Build the HTML documentation once: the output directory and the finished process.

    With ``--keep-going`` the pages are written even when there are warnings, so the other
    tests of this module report their own findings.
    """
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return out, result


def test_docs_build_without_warnings(
    html_build: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, result = html_build
    if result.returncode != 0:
        pytest.fail(
            f"sphinx-build exited with {result.returncode}; stderr:\n{result.stderr}",
            pytrace=False,
        )
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("module_name", REFERENCE_MODULES)
def test_reference_documents_every_public_name(
    html_build: tuple[Path, subprocess.CompletedProcess[str]], module_name: str
) -> None:
    out, _ = html_build
    html = "\n".join(p.read_text(encoding="utf-8") for p in (out / "reference").glob("*.html"))
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if f'id="{module_name}.{name}"' not in html]
    assert not missing, f"{module_name}: not in the reference: {missing}"
