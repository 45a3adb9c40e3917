"""agrad's benchmark suite: the chapter's workloads on every number type,
and agrad beside a C floor, NumPy and jax.jit.

Usage: ``python benchmarks/run.py [--quick] [--output DIR | --update]``.  It
prints the tables and writes ``RESULTS.md`` and ``results.png`` into DIR
(default: ``build/benchmarks/`` of the checkout, which git ignores); only
``--update`` rewrites the tracked ones in this ``benchmarks/`` folder
(``output.py``).
``--quick`` runs everything small enough for CI.  torch's column and jax's
rows need the ``bench`` extra (``pip install 'agrad[bench]'``); the C floor
needs a C compiler (``cc``, or ``$CC``).

``workloads.py`` holds what is run, ``measure.py`` how it is measured,
``peers.py`` the comparison with the C floor and the vectorised libraries,
``report.py`` how it is shown.
"""

from __future__ import annotations

import single_thread  # noqa: F401  (first: the peers read their thread counts when imported)

# isort: split
import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import micrograd_demo
import output
import peers
from measure import (
    FULL,
    QUICK,
    Settings,
    bench_workload,
    loss_graph_memory,
    memory_soak,
    micro_benchmarks,
    time_split,
)
from report import PROFILE_FILE, Report, draw_chart, render_markdown, render_text
from workloads import WORKLOADS, available_engines

HERE = Path(__file__).resolve().parent
PROG = "python benchmarks/run.py"
TRACKED = ("RESULTS.md", "results.png")

# Exit statuses (2 is argparse's, for a bad command line)
DIFFER = 1  # two engines or a peer computed different numbers: a bug
MISSED = 3  # a goal was missed (never for --quick, whose times are rough)
EXIT_STATUSES = f"""exit status:
  0  every check held and every goal was met
  {DIFFER}  engines or peers computed different numbers (a bug, whatever the timings),
     or the output could not be written
  2  a bad command line
  {MISSED}  a goal was missed (the summary table says which); --quick judges no goal,
     its times are too rough
"""


def run_suite(
    settings: Settings, settings_name: str, log: Callable[[str], None], judged: bool
) -> Report:
    engines = available_engines()
    if "torch" not in [e.key for e in engines]:
        log("torch is not installed: its column is skipped (pip install 'agrad[bench]')")
    # The objects imported so far (torch alone has ~10^5) would make every
    # full garbage collection, ours and the interpreter's, cost ~75 ms for
    # every engine: a cost of this process, not of the engines.
    gc.collect()
    gc.freeze()
    results = []
    for workload in WORKLOADS:
        t0 = time.perf_counter()
        results.append(bench_workload(workload, engines, settings))
        log(f"  {workload.title}: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    micro = micro_benchmarks(engines, settings)
    log(f"  operations: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    graph_memory = loss_graph_memory()
    soak = memory_soak(settings.soak_epochs)
    log(f"  memory: {time.perf_counter() - t0:.1f} s")
    split = time_split(settings)
    demo = None
    if importlib.util.find_spec("micrograd") is None:
        log("micrograd is not installed: its demo is skipped (pip install 'agrad[bench]')")
    else:
        t0 = time.perf_counter()
        times = micrograd_demo.step_seconds(settings.demo_steps, log=log)
        demo = {name: statistics.median(ts) for name, ts in times.items()}
        log(f"  micrograd's demo: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    beside = peers.measure(settings, log)
    log(f"  beside the C floor, NumPy and jax: {time.perf_counter() - t0:.1f} s")
    return Report(
        settings_name,
        results,
        micro,
        graph_memory,
        soak,
        split,
        [e.key for e in engines],
        demo,
        beside,
        judged,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds' run for CI: proves it works and checks the results; its times "
        "are rough, so no goal is judged",
    )
    output.add_options(parser, TRACKED)
    args = parser.parse_args(argv)
    if args.update and args.quick:
        parser.error("--update publishes the results: not with --quick, whose times are rough")
    return args


def profile_text(results_folder: Path) -> str | None:
    """PROFILE.md to quote (written by profile_native.py): the results
    folder's, else the tracked one."""
    for folder in (results_folder, HERE):
        profile = folder / PROFILE_FILE
        if profile.exists():
            return profile.read_text(encoding="utf-8")
    return None


def exit_status(report: Report, log: Callable[[str], None]) -> int:
    differ = report.disagreements()
    for line in differ:
        log(f"error: {line.what}: {line.value}")
    if differ:
        return DIFFER
    missed = report.missed_goals()
    for line in missed:
        log(f"goal missed: {line.what}: {line.value} (goal {line.goal})")
    return MISSED if missed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folder = output.folder(args)
    settings, name = (QUICK, "--quick") if args.quick else (FULL, "full")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    log(f"agrad benchmarks ({name})")
    report = run_suite(settings, name, log, judged=not args.quick)
    print(render_text(report))
    chart = folder / "results.png"
    draw_chart(report, chart)
    quoted = profile_text(folder)
    results = folder / "RESULTS.md"
    results.write_text(render_markdown(report, chart.name, quoted), encoding="utf-8")
    log(f"wrote {results} and {chart} in {time.perf_counter() - started:.1f} s")
    return exit_status(report, log)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as error:  # a bad --output, a full disk: one line, not a traceback
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(DIFFER)
