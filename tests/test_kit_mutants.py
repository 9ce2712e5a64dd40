"""The conformance kit fails on every broken adapter of tests/kit_mutants.py.

One in-process pytest run collects, for each mutant, a subclass of the kit's
:class:`~crmkit.testing.storage.StoreContract` over the mutant's store and runs the kit
tests named for it, plus the same tests over the real memory store. Every one must fail on
the mutant, with a message that names the broken contract ("contract: ..."), and pass on
the memory store. The tests named are fixed tables, not hypothesis draws, so the outcome is
the same on every seed.
"""

import inspect
import time
from pathlib import Path
from typing import Any

import pytest

from crmkit.testing.storage import StoreContract
from tests.kit_mutants import MUTANTS

_MODULE = """
import pytest
from crmkit.storage import MemoryStore
from crmkit.testing.storage import Capabilities, StoreContract
from tests.kit_mutants import MUTANTS


def _contract(store_class):
    class Contract(StoreContract):
        capabilities = Capabilities(examples=5)

        @pytest.fixture
        def store(self):
            return store_class(tenant="kit")

    return Contract


TestMemory = _contract(MemoryStore)
{classes}
"""


class _Reports:
    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[str, str]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":  # errors in setup count
            self.outcomes[report.nodeid] = (report.outcome, report.longreprtext)


def _class_name(number: int) -> str:
    return f"TestMutant{number:02d}"


@pytest.fixture(scope="module")
def kit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, tuple[str, str]], float]:
    folder = tmp_path_factory.mktemp("mutants")
    names = list(MUTANTS)
    classes = "\n".join(
        f"{_class_name(n)} = _contract(MUTANTS[{name!r}][0])" for n, name in enumerate(names)
    )
    module = folder / "test_generated_kit_run.py"
    module.write_text(_MODULE.format(classes=classes))
    targets = {test for _, tests in MUTANTS.values() for test in tests}
    nodes = [f"{module}::TestMemory::{test}" for test in sorted(targets)]
    for n, name in enumerate(names):
        nodes += [f"{module}::{_class_name(n)}::{test}" for test in MUTANTS[name][1]]
    reports = _Reports()
    started = time.perf_counter()
    pytest.main(
        [*nodes, "-q", "-p", "no:cacheprovider", "-p", "no:randomly", f"--rootdir={folder}"],
        plugins=[reports],
    )
    elapsed = time.perf_counter() - started
    return {k.rpartition("/")[2]: v for k, v in reports.outcomes.items()}, elapsed


def _outcome(results: dict[str, tuple[str, str]], cls: str, test: str) -> tuple[str, str]:
    return results.get(f"test_generated_kit_run.py::{cls}::{test}", ("not run", ""))


@pytest.mark.parametrize("number", range(len(MUTANTS)), ids=list(MUTANTS))
def test_the_kit_fails_on_the_mutant(
    kit_run: tuple[dict[str, tuple[str, str]], float], number: int
) -> None:
    results, _ = kit_run
    name = list(MUTANTS)[number]
    for test in MUTANTS[name][1]:
        outcome, text = _outcome(results, _class_name(number), test)
        assert outcome == "failed", f"{test} did not fail on the mutant {name!r}: {outcome}"
        assert "contract: " in text, f"{test} failed on {name!r} without naming a contract:\n{text}"


def test_the_same_kit_tests_pass_on_the_memory_store(
    kit_run: tuple[dict[str, tuple[str, str]], float],
) -> None:
    results, elapsed = kit_run
    targets = sorted({test for _, tests in MUTANTS.values() for test in tests})
    for test in targets:
        assert _outcome(results, "TestMemory", test)[0] == "passed", test
    assert elapsed < 300, f"the mutation run took {elapsed:.0f} s"


def test_every_mutant_names_fixed_kit_tests_that_exist() -> None:
    for name, (store_class, tests) in MUTANTS.items():
        assert store_class.__doc__, name
        for test in tests:
            method = getattr(StoreContract, test, None)
            assert callable(method), (name, test)
            # Fixed data, no hypothesis: the test fails the same way on every seed.
            assert "@given" not in inspect.getsource(method), (name, test)


def test_the_mutants_live_beside_this_module() -> None:
    assert (Path(__file__).parent / "kit_mutants.py").is_file()
