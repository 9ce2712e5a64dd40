"""crmkit: an embeddable, typed customer relationship management library.

The public API lives in the subpackages: :mod:`crmkit.models`, :mod:`crmkit.errors`,
:mod:`crmkit.clock`, :mod:`crmkit.serialization` and :mod:`crmkit.testing`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crmkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
