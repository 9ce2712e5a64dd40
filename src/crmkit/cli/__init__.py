"""The ``crmkit`` command: ``crmkit demo [--db PATH]`` (more commands arrive with later issues)."""

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from crmkit import __version__
from crmkit.cli import _import
from crmkit.cli._demo import run_demo
from crmkit.errors import CrmkitError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmkit", description="crmkit: an embeddable, typed CRM library."
    )
    parser.add_argument("--version", action="version", version=f"crmkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run steps 2 to 4 of the customer lifecycle on SQLite and show them"
    )
    demo.add_argument(
        "--db",
        metavar="PATH",
        help="the SQLite file to keep the demo's data in (default: a temporary file)",
    )
    _import.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "import":
        return _import.run(args)
    if args.command == "demo":
        if args.db:
            try:
                run_demo(print, url=f"sqlite:///{Path(args.db).resolve()}")
            except CrmkitError as error:
                print(f"crmkit demo: {error}", file=sys.stderr)
                return 1
        else:
            with tempfile.TemporaryDirectory(prefix="crmkit-demo-") as folder:
                run_demo(print, url=f"sqlite:///{Path(folder) / 'demo.db'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
