"""crmkit's shipped test kit (extra ``test``).

* :mod:`crmkit.testing.strategies`: hypothesis strategies for every model and value type.

The storage conformance contracts join this package with the storage port. Nothing in
crmkit's library code imports this package.
"""

__all__: list[str] = []
