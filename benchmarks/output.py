"""Where the benchmark scripts write: a folder given on the command line, by
default ``build/benchmarks/`` of the checkout (which git ignores), and the
tracked results in this ``benchmarks/`` folder only when asked with
``--update``, so that trying a benchmark never changes what is published."""

from __future__ import annotations

import argparse
import os
import platform
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


def rounds_arguments(
    script: str, description: str, files: Sequence[str], rounds: int, argv: list[str] | None
) -> argparse.Namespace:
    """The command line of a script that times interleaved rounds and writes
    `files`: --rounds, --output DIR or --update."""
    parser = argparse.ArgumentParser(prog=f"python benchmarks/{script}", description=description)
    parser.add_argument(
        "--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})"
    )
    add_options(parser, files)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def conditions(script: str, rounds: int) -> str:
    """The line a results file opens with: what ran, where, how measured."""
    return (
        f"`python benchmarks/{script}`, {platform.machine()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores shared with other jobs; "
        f"minimum of {rounds} interleaved rounds."
    )
