"""Where the benchmark scripts write: a folder given on the command line, by
default ``build/benchmarks/`` of the checkout (which git ignores), and the
tracked results in this ``benchmarks/`` folder only when asked with
``--update``, so that trying a benchmark never changes what is published."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent / "build" / "benchmarks"


def add_options(parser: argparse.ArgumentParser, files: Sequence[str]) -> None:
    """--output DIR and --update, one or the other, for a script that writes `files`."""
    names = " and ".join(files)
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"directory for {names}, made if missing (default: {DEFAULT})",
    )
    where.add_argument(
        "--update",
        action="store_true",
        help=f"rewrite the tracked {names} in {HERE} instead",
    )


def folder(args: argparse.Namespace) -> Path:
    """The folder the options chose, made if missing."""
    path: Path = HERE if args.update else args.output or DEFAULT
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--output {path}: not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path
