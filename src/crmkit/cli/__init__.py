"""The ``crmkit`` command: ``crmkit demo`` (more commands arrive with later issues)."""

import argparse
import sys
from collections.abc import Sequence

from crmkit import __version__
from crmkit.cli._demo import run_demo
from crmkit.clock import SYSTEM_CLOCK

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crmkit", description="crmkit: an embeddable, typed CRM library."
    )
    parser.add_argument("--version", action="version", version=f"crmkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="create a few contacts, a lead and a deal and show them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        run_demo(SYSTEM_CLOCK, print)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
