import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import crmkit
from crmkit import models

PUBLIC_MODULES = [
    "crmkit",
    "crmkit.clock",
    "crmkit.cli",
    "crmkit.errors",
    "crmkit.models",
    "crmkit.lifecycle",
    "crmkit.models.rules",
    "crmkit.crm",
    "crmkit.lifecycle",
    "crmkit.scoring",
    "crmkit.segmentation",
    "crmkit.serialization",
    "crmkit.storage",
    "crmkit.storage.memory",
    "crmkit.storage.sql",
    "crmkit.storage.sql.types",
    "crmkit.testing",
    "crmkit.testing.strategies",
    "crmkit.testing.storage",
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_names_are_listed_and_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for public in exported:
        assert hasattr(module, public), f"{name}.{public}"
    assert all(not n.startswith("_") or n == "__version__" for n in exported)


def test_models_export_every_public_model_name() -> None:
    defined = {
        n
        for n, v in vars(models).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith("crmkit.models.")
    }
    assert defined <= set(models.__all__)


def test_the_package_is_typed() -> None:
    assert (Path(crmkit.__file__).parent / "py.typed").is_file()


def test_importing_crmkit_needs_no_optional_dependency() -> None:
    code = (
        "import sys\n"
        "for name in ('phonenumbers', 'hypothesis', 'psycopg', 'pytest'):\n"
        "    sys.modules[name] = None\n"
        "import crmkit.models, crmkit.serialization, crmkit.cli, crmkit.errors, crmkit.clock\n"
        "from crmkit.models import PhoneNumber\n"
        "assert PhoneNumber.parse('+49 30 901820') == '+4930901820'\n"
        "try:\n"
        "    import crmkit.testing.strategies\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == (
        "MissingExtra crmkit.testing.strategies needs the 'hypothesis' package: "
        "install it with pip install 'crmkit[test]'"
    )


ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_has_exactly_two_commands() -> None:
    demo, tests = quick_start_commands()
    assert demo.endswith("crmkit demo")
    assert tests == "bash scripts/test"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.lstrip().startswith("#")]
    assert quick_start_commands()[1] in commands
