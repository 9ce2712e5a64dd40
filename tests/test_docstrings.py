"""The examples in crmkit's docstrings run, as the reference pages show them."""

import doctest
import importlib
import pkgutil

import pytest

import crmkit

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(crmkit.__path__, "crmkit.")
    if name != "crmkit.__main__"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
