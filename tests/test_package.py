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
    "crmkit.serialization",
    "crmkit.testing",
    "crmkit.testing.strategies",
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
