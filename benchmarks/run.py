"""agrad's benchmark suite: the chapter's workloads on every number type.

Usage: ``python benchmarks/run.py [--quick] [--output DIR]``.  It prints the
tables and writes ``RESULTS.md`` and ``results.png`` into DIR (default: this
``benchmarks/`` folder).  ``--quick`` runs everything small enough for CI.
torch's column needs the ``bench`` extra (``pip install 'agrad[bench]'``).

``workloads.py`` holds what is run, ``measure.py`` how it is measured,
``report.py`` how it is shown.  The run fails (exit status 1) if the engines'
losses differ: that is a bug, not a timing.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import micrograd_demo
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


def run_suite(settings: Settings, settings_name: str, log: Callable[[str], None]) -> Report:
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
    return Report(
        settings_name, results, micro, graph_memory, soak, split, [e.key for e in engines], demo
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds' run for CI: proves it works, times are rough",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE,
        help="directory for RESULTS.md and results.png (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.output.exists() and not args.output.is_dir():
        raise NotADirectoryError(f"--output {args.output}: not a directory")
    args.output.mkdir(parents=True, exist_ok=True)
    settings, name = (QUICK, "--quick") if args.quick else (FULL, "full")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    log(f"agrad benchmarks ({name})")
    report = run_suite(settings, name, log)
    print(render_text(report))
    chart = args.output / "results.png"
    draw_chart(report, chart)
    profile = args.output / PROFILE_FILE
    profile_text = profile.read_text(encoding="utf-8") if profile.exists() else None
    results = args.output / "RESULTS.md"
    results.write_text(render_markdown(report, chart.name, profile_text), encoding="utf-8")
    log(f"wrote {results} and {chart} in {time.perf_counter() - started:.1f} s")
    if not report.all_losses_agree():
        log("error: the engines' losses differ (see the summary table)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OSError as error:  # a bad --output, a full disk: one line, not a traceback
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(1)
