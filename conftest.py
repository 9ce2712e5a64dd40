"""Run every Python example in README.md and docs/ as a test (DESIGN.md decision 12).

Sybil collects each ```python block (and each MyST ``{code-block} python`` or
``{doctest}`` block) as one test. The blocks of one file share a namespace and run in
order, top to bottom. A block whose first line starts with ``>>>`` is a doctest: its
output must match. Any other block just runs, so it should assert what it shows.
``% skip: next`` (MyST) or ``<!-- skip: next -->`` before a block skips it.
"""

from doctest import ELLIPSIS

from sybil import Sybil
from sybil.parsers import markdown, myst

# docs/conf.py is Sphinx configuration, not a test module; docs/_build holds build output.
collect_ignore = ["docs/conf.py"]
collect_ignore_glob = ["docs/_build/*"]

_DOCTEST_FLAGS = ELLIPSIS

# Sybil matches file paths relative to ``path`` with PurePath.match, which compares from
# the right and has no recursive "**" before Python 3.13: "*.md" below docs/ therefore
# means every Markdown file in docs/ and all its subdirectories.
_docs = Sybil(
    parsers=[
        myst.PythonCodeBlockParser(doctest_optionflags=_DOCTEST_FLAGS),
        myst.DocTestDirectiveParser(optionflags=_DOCTEST_FLAGS),
        myst.SkipParser(),
    ],
    path="docs",
    patterns=["*.md"],
    name="docs",
)

# README.md is plain (GitHub) Markdown. "*/*" excludes README.md files in subdirectories.
_readme = Sybil(
    parsers=[
        markdown.PythonCodeBlockParser(doctest_optionflags=_DOCTEST_FLAGS),
        markdown.SkipParser(),
    ],
    patterns=["README.md"],
    excludes=["*/*"],
    name="readme",
)

pytest_collect_file = (_docs + _readme).pytest()
