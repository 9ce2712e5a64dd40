"""Sphinx configuration of the crmkit documentation (DESIGN.md decision 12).

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``; warnings
are errors (``tests/test_docs_build.py`` runs exactly that). Nothing here needs the
network: there is deliberately no intersphinx.
"""

from typing import Any

from sphinx.application import Sphinx

import crmkit

project = "crmkit"
author = "The crmkit developers"
copyright = "The crmkit developers"
release = crmkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Every reference to a public crmkit object must resolve. References to the standard
# library and third-party packages cannot (no intersphinx), nor can references to private
# names such as type variables (``crmkit.testing.strategies._E``); they are not checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!crmkit\b).*"),
    (r"py:.*", r"crmkit\..*\._\w*"),
]

myst_enable_extensions = ["deflist"]
myst_heading_anchors = 3

# Types go into the signatures, one parameter per line once a signature is long. (With
# "description", every attrs class would list its fields twice: as constructor parameters
# and as attributes.)
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
python_maximum_signature_line_length = 88

html_theme = "furo"
html_title = f"crmkit {release}"


def _protocol_signature(  # noqa: PLR0917 - the signature of Sphinx's event
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """Show protocols without the ``(*args, **kwargs)`` that ``typing.Protocol`` adds."""
    if what == "class" and getattr(obj, "_is_protocol", False):
        return "", return_annotation
    return None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _protocol_signature)
    return {"parallel_read_safe": True}
