"""Lazy imports of optional dependencies, with an error that names the extra to install."""

import importlib
from types import ModuleType

from crmkit.errors import MissingExtra

__all__ = ["import_extra"]


def import_extra(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`~crmkit.errors.MissingExtra` naming ``extra``.

    Imported on every call (a dictionary look-up once loaded), so a test that hides the
    package through ``sys.modules`` sees the same behaviour as a user without the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra, module.partition(".")[0], feature) from exc
