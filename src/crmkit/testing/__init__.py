"""crmkit's shipped test kit (extra ``test``).

* :mod:`crmkit.testing.strategies`: hypothesis strategies for every model and value type;
* :mod:`crmkit.testing.storage`: the storage conformance contracts, which an adapter's
  test suite subclasses.

Nothing in crmkit's library code imports this package.
"""

try:  # pytest rewrites the kit's asserts, so a failing contract shows the values
    import pytest
except ImportError:  # pragma: no cover - the kit then cannot run anyway
    pass
else:
    pytest.register_assert_rewrite(
        "crmkit.testing.storage",
        "crmkit.testing._queries",
        "crmkit.testing._privacy",
        "crmkit.testing._outbox",
        "crmkit.testing._steps",
    )

__all__: list[str] = []
