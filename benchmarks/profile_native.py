"""Where the native engine's time goes on workload 2, in instructions.

Runs the benchmark suite's workload 2 (univariate, 1000 points, full batch:
the run the chapter calls slow) under ``valgrind --tool=callgrind`` and counts
instructions, which unlike times repeat exactly from run to run.  Each
measurement is the difference of two runs of the same child process that
differ only in how many epochs they run, so interpreter start-up and imports
cancel out.  Instructions are attributed to the object they execute in: the
interpreter (which holds CPython's allocator and float arithmetic), agrad's
compiled module (binding and engine), the C library (malloc) and libm.

Usage: ``python benchmarks/profile_native.py`` writes ``benchmarks/PROFILE.md``,
which ``python -m agrad bench`` quotes in ``RESULTS.md``.  Needs valgrind
(``apt-get install valgrind``).  ``perf stat`` would give cycles too, but
this machine's virtual CPU exposes no hardware counters to it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ("build", "epoch")  # build: the loss graph, made and dropped; epoch: build + step
ENGINES = ("floats", "native", "pure")
OPS = ("Value*Value", "Value*float", "Value+Value")


def child(engine_key: str, phase: str, count: int) -> None:
    """What valgrind runs: `count` epochs (or operations) and nothing else."""
    from agrad import bench

    engine = {"floats": bench.FLOATS, "native": bench.NATIVE, "pure": bench.PURE}[engine_key]
    workload = next(w for w in bench.WORKLOADS if w.key == "w2")
    run = bench.Run(workload, engine, workload.data())
    if phase == "build":
        for _ in range(count):
            run.build_loss()
    else:
        run.epochs(count)


def op_child(engine_key: str, op: str, count: int) -> None:
    """`count` executions of one operation, as a for loop would run them."""
    from agrad import bench

    number = float if engine_key == "floats" else bench.NATIVE.number
    a, b = number(1.5), number(-0.25)
    if op == "Value*Value":
        for _ in range(count):
            a * b
    elif op == "Value*float":
        for _ in range(count):
            a * 2.5
    elif op == "Value+Value":
        for _ in range(count):
            a + b
    else:
        raise ValueError(f"unknown operation {op!r}; one of {', '.join(OPS)}")


def loss_graph_nodes() -> int:
    """Nodes in workload 2's loss graph (the same on every engine)."""
    from agrad import bench, pure

    workload = next(w for w in bench.WORKLOADS if w.key == "w2")
    return len(
        pure.topological_order(bench.Run(workload, bench.PURE, workload.data()).build_loss())
    )


def object_group(location: str) -> str:
    """The part of the system a function (`file:function [object]`) belongs to."""
    obj = location.rsplit("[", 1)[-1]
    if "_core" in obj:
        return "agrad._core"
    if "python" in obj:  # CPython has symbols and file names: split off its allocator and gc
        if "obmalloc.c" in location:
            return "CPython allocator"
        if "gcmodule.c" in location:
            return "CPython gc"
        return "interpreter"
    if "libm" in obj:
        return "libm"
    if "libc" in obj or "ld-linux" in obj:
        return "libc"
    return "other"


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def instructions_by_object(callgrind_out: Path) -> dict[str, int]:
    """Self instructions per object group, from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(callgrind_out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    groups: dict[str, int] = defaultdict(int)
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        groups[object_group(m.group(2))] += int(m.group(1).replace(",", ""))
    return dict(groups)


def callgrind(args: list[str], workdir: Path) -> dict[str, int]:
    out = workdir / f"callgrind.{len(list(workdir.iterdir()))}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *args],
        check=True,
        capture_output=True,
    )
    return instructions_by_object(out)


def per_unit(
    args_small: list[str], args_big: list[str], units: int, workdir: Path
) -> dict[str, float]:
    """Instructions per unit of work: (big run - small run) / units, by group."""
    small, big = callgrind(args_small, workdir), callgrind(args_big, workdir)
    keys = set(small) | set(big)
    per = {k: (big.get(k, 0) - small.get(k, 0)) / units for k in keys}
    return {k: v for k, v in per.items() if abs(v) >= 1}


def fmt(n: float) -> str:
    return f"{n / 1e6:.2f} M" if abs(n) >= 1e6 else f"{n:,.0f}"


def render(
    epochs: dict[tuple[str, str], dict[str, float]], ops: dict[tuple[str, str], float], nodes: int
) -> str:
    groups = sorted({g for per in epochs.values() for g in per})
    total = {k: sum(v.values()) for k, v in epochs.items()}
    lines = [
        "## Instruction counts (callgrind, workload 2, per epoch)",
        "",
        "Written by `python benchmarks/profile_native.py`: each figure is the difference of two "
        "`valgrind --tool=callgrind` runs that differ only in the number of epochs, divided by "
        "that number, so start-up cancels out; instructions repeat exactly between runs, "
        "times do not. *build* makes the loss graph and drops it (so it includes freeing it); "
        "*epoch* is build + `backward` + update, the figure the suite times.",
        "",
        "| engine, phase | total | " + " | ".join(groups) + " |",
        "|---|---|" + "---|" * len(groups),
    ]
    for (engine, phase), per in epochs.items():
        cells = [fmt(per.get(g, 0)) for g in groups]
        lines.append(
            f"| {engine}, {phase} | {fmt(total[engine, phase])} | " + " | ".join(cells) + " |"
        )
    floor = total["floats", "epoch"]
    build = total["native", "build"]
    step = total["native", "epoch"] - build
    lines += [
        "",
        "The native epoch, taken apart:",
        "",
        "| part | instructions per epoch | share | per node or point |",
        "|---|---|---|---|",
    ]
    native = total["native", "epoch"]
    parts = [
        (
            "the Python loop itself (plain floats, same code)",
            floor,
            f"{fmt(floor / 1000)} per point",
        ),
        (
            "graph build over the floor: binding, engine forward, allocation, freeing",
            build - floor,
            f"{fmt((build - floor) / 1000)} per point",
        ),
        ("backward + update", step, f"{fmt(step / nodes)} per node"),
    ]
    for name, n, unit in parts:
        lines.append(f"| {name} | {fmt(n)} | {100 * n / native:.0f}% | {unit} |")
    core_build = epochs["native", "build"].get("agrad._core", 0)
    lines += [
        "",
        f"The loss graph has {nodes} nodes. "
        f"In the build, agrad's compiled module (binding and engine) executes {fmt(core_build)} instructions "
        f"({fmt(core_build / 1000)} per point); the rest of the build's excess over the floor "
        "is the interpreter dispatching to the number slots and allocating, and freeing, "
        "the Python objects of the intermediate results.",
        f"pure / native instructions per epoch: {total['pure', 'epoch'] / native:.1f}x; "
        f"native / floats: {native / floor:.2f}x.",
        "",
        "Instructions per operation (a `for` loop of one operation, the loop's own cost included):",
        "",
        "| operation | floats | native | native - floats |",
        "|---|---|---|---|",
    ]
    for op in OPS:
        f, n = ops["floats", op], ops["native", op]
        lines.append(f"| {op} | {f:.0f} | {n:.0f} | {n - f:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=HERE / "PROFILE.md")
    parser.add_argument("--epochs", type=int, default=10, help="epochs between the two runs")
    parser.add_argument(
        "--child", nargs=3, metavar=("ENGINE", "PHASE", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        engine, phase, count = args.child
        if phase in OPS:
            op_child(engine, phase, int(count))
        else:
            child(engine, phase, int(count))
        return 0
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    me = str(Path(__file__).resolve())
    epochs: dict[tuple[str, str], dict[str, float]] = {}
    ops: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for engine in ENGINES:
            for phase in PHASES:
                if engine == "pure" and phase == "build":
                    continue
                n = args.epochs if engine != "pure" else max(1, args.epochs // 5)
                epochs[engine, phase] = per_unit(
                    [me, "--child", engine, phase, "1"],
                    [me, "--child", engine, phase, str(1 + n)],
                    n,
                    workdir,
                )
                print(
                    f"{engine} {phase}: {fmt(sum(epochs[engine, phase].values()))} per epoch",
                    file=sys.stderr,
                )
        count = 100_000
        for engine in ("floats", "native"):
            for op in OPS:
                per = per_unit(
                    [me, "--child", engine, op, "1"],
                    [me, "--child", engine, op, str(1 + count)],
                    count,
                    workdir,
                )
                ops[engine, op] = sum(per.values())
    args.output.write_text(render(epochs, ops, loss_graph_nodes()), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
