"""The ``crmkit`` command: ``crmkit COMMAND [options]``; ``crmkit COMMAND --help`` shows a
command's options and examples.

Each command lives in its own module ``crmkit.cli._<command>`` with two functions:
``register(subparsers)`` adds its parser and ``run(args) -> int`` carries it out. The
commands are thin layers over :class:`crmkit.crm.CRM` and the library's packages.
Exit status: 0 ok, 1 a data problem, 2 a usage error (see ``crmkit.cli._common``).
"""

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

from crmkit import __version__
from crmkit.cli._common import run_safely

__all__ = ["COMMANDS", "main"]

COMMANDS: Final = ("demo", "import", "segment", "score", "dedupe", "export", "erase", "report")
"""The commands, in the order ``crmkit --help`` lists them; ``crmkit.cli._<name>`` holds
each."""

_EXAMPLES = """\
examples:
  crmkit demo                                   the customer lifecycle, told on SQLite
  crmkit demo --db demo.db --report demo.html   keep the data and write its report
  export CRMKIT_DB=crm.db                       --db of every command, from now on
  crmkit segment --rule rule.json --count       how many contacts a rule selects
  crmkit report --out report.html               the KPI report, one offline HTML file

exit status: 0 ok, 1 a data problem, 2 a usage error; messages go to stderr.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmkit",
        description="crmkit: an embeddable, typed CRM library, and its command line.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"crmkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"crmkit.cli._{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    command = importlib.import_module(f"crmkit.cli._{args.command}")
    try:
        return run_safely(args.command, lambda: int(command.run(args)))
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print(f"crmkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
