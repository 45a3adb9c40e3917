"""Where the native engine's time goes on workload 2, in instructions.

Runs the benchmark suite's workload 2 (univariate, 1000 points, full batch:
the run the chapter calls slow) under ``valgrind --tool=callgrind`` and counts
instructions, which unlike times repeat exactly from run to run.  Each
measurement is the difference of two runs of the same child process that
differ only in how many epochs they run, so interpreter start-up and imports
cancel out.  Instructions are attributed to the object they execute in: the
interpreter (which holds CPython's allocator and float arithmetic), agrad's
compiled module (binding and engine), the C library (malloc) and libm.
Last, the compiled module is rebuilt with symbols (cmake, in a temporary
directory; the installed one is stripped) to split its share by function.

Usage: ``python benchmarks/profile_native.py [--output DIR | --update]``
writes ``PROFILE.md`` into DIR (default: ``build/benchmarks/`` of the
checkout), or with ``--update`` rewrites the tracked ``benchmarks/PROFILE.md``;
``python benchmarks/run.py`` quotes the one in its own output folder, else the
tracked one, in ``RESULTS.md``.  Needs valgrind
(``apt-get install valgrind``).  ``perf stat`` would give cycles too, but
this machine's virtual CPU exposes no hardware counters to it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import output

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHASES = ("build", "epoch")  # build: the loss graph, made and dropped; epoch: build + step
ENGINES = ("floats", "native", "pure")
OPS = ("Value*Value", "Value*float", "Value+Value")


def child(engine_key: str, phase: str, count: int) -> None:
    """What valgrind runs: `count` epochs (or operations) and nothing else."""
    import workloads

    engine = {"floats": workloads.FLOATS, "native": workloads.AGRAD, "pure": workloads.PURE}
    profiled = workloads.workload(2)
    run = workloads.Run(profiled, engine[engine_key], profiled.data())
    if phase == "build":
        for _ in range(count):
            run.build_loss()
    else:
        run.epochs(count)


def op_child(engine_key: str, op: str, count: int) -> None:
    """`count` executions of one operation, as a for loop would run them."""
    import workloads

    number = float if engine_key == "floats" else workloads.AGRAD.number
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


def loss_graph_nodes() -> tuple[int, int]:
    """Nodes of workload 2's loss graph: as the chapter's Value (agrad.pure)
    builds it, and as the native engine holds it."""
    import workloads

    from agrad import _core, pure

    profiled = workloads.workload(2)
    data = profiled.data()
    chapter = len(
        pure.topological_order(workloads.Run(profiled, workloads.PURE, data).build_loss())
    )
    before = _core._live_nodes()
    loss = workloads.Run(profiled, workloads.AGRAD, data).build_loss()
    held = _core._live_nodes() - before
    del loss
    return chapter, held


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
    # glibc's inlined helpers are listed by source path without their object
    if "libc" in obj or "ld-linux" in obj or location.startswith("./"):
        return "libc"
    return "other"


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def self_instructions(callgrind_out: Path) -> list[tuple[int, str]]:
    """(self instructions, `file:function [object]`) of every function."""
    text = subprocess.run(
        # --auto=no: with the sources at hand (the build with symbols) the
        # annotated source lines would follow, and count a second time
        [
            "callgrind_annotate",
            "--inclusive=no",
            "--auto=no",
            "--threshold=100",
            str(callgrind_out),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line and "=>" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    return rows


def instructions_by_object(rows: list[tuple[int, str]]) -> dict[str, int]:
    groups: dict[str, int] = defaultdict(int)
    for count, location in rows:
        groups[object_group(location)] += count
    return dict(groups)


SOURCE = re.compile(r"(?:cpp|src)/[\w/]+\.(?:cpp|hpp):")


def core_function(location: str) -> str | None:
    """The agrad function a location of the debug build belongs to, or None.

    Inlined code is listed under the function it was inlined into; the
    binding's number slots are wrapped in a template, named here by the slot."""
    if not SOURCE.search(location):
        return None
    name = SOURCE.split(location, maxsplit=1)[1]
    slot = re.search(r"no_throw<&\(anonymous namespace\)::(\w+)", name)
    if slot:
        return f"slot {slot.group(1)}"
    name = name.replace("(anonymous namespace)::", "")
    return name.split("(", 1)[0]


def instructions_by_core_function(rows: list[tuple[int, str]]) -> dict[str, int]:
    functions: dict[str, int] = defaultdict(int)
    for count, location in rows:
        name = core_function(location)
        if name is not None:
            functions[name] += count
    return dict(functions)


Grouping = Callable[[list[tuple[int, str]]], dict[str, int]]


def callgrind(
    args: list[str], workdir: Path, by: Grouping, env: dict[str, str] | None
) -> dict[str, int]:
    out = workdir / f"callgrind.{len(list(workdir.iterdir()))}"
    python = [sys.executable, "-S"] if env else [sys.executable]  # -S: no editable-install hook
    # a fixed hash seed: str hashes, and so dict probing, repeat from run to
    # run; numpy's OpenBLAS threads spin while they wait for work, a different
    # number of instructions in every run: one thread has none
    env = {**(env or os.environ), "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *python, *args],
        check=True,
        capture_output=True,
        env=env,
    )
    return by(self_instructions(out))


def debug_package(workdir: Path) -> Path:
    """agrad with its compiled module rebuilt with symbols (-g, not stripped),
    the Release flags otherwise, in a directory to put on PYTHONPATH."""
    import pybind11

    build = workdir / "debug-build"
    configure = [
        "cmake", "-S", str(REPO), "-B", str(build), "-DSKBUILD=ON", "-DCMAKE_BUILD_TYPE=Release",
        "-DCMAKE_CXX_FLAGS=-g", "-DCMAKE_STRIP=/bin/true", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
    ]  # fmt: skip
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    package = workdir / "debug-package"
    shutil.copytree(
        REPO / "python" / "agrad",
        package / "agrad",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    shutil.copy(next(build.glob("_core*.so")), package / "agrad")
    return package


def per_unit(
    args_small: list[str],
    args_big: list[str],
    units: int,
    workdir: Path,
    by: Grouping = instructions_by_object,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    """Instructions per unit of work: (big run - small run) / units, by group."""
    small = callgrind(args_small, workdir, by, env)
    big = callgrind(args_big, workdir, by, env)
    keys = set(small) | set(big)
    per = {k: (big.get(k, 0) - small.get(k, 0)) / units for k in keys}
    return {k: v for k, v in per.items() if abs(v) >= 1}


def fmt(n: float) -> str:
    return f"{n / 1e6:.2f} M" if abs(n) >= 1e6 else f"{n:,.0f}"


def render(
    epochs: dict[tuple[str, str], dict[str, float]],
    ops: dict[tuple[str, str], float],
    functions: dict[str, float],
    nodes: int,
    native_nodes: int,
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
    interpreter = {e: epochs[e, "build"].get("interpreter", 0) for e in ("floats", "native")}
    allocator = {e: epochs[e, "build"].get("CPython allocator", 0) for e in ("floats", "native")}
    lines += [
        "",
        f"The loss graph has {nodes} nodes. The interpreter executes "
        f"{fmt(interpreter['floats'])} instructions per build on floats and "
        f"{fmt(interpreter['native'])} on Values: dispatching to agrad's number slots costs it "
        "nothing more than float arithmetic. The build's excess is agrad._core's own "
        f"{fmt(core_build)} instructions ({fmt(core_build / 1000)} per point: binding, engine "
        "forward, node and object allocation, freeing), less the "
        f"{fmt(allocator['floats'] - allocator['native'])} that CPython's allocator spends on "
        "float objects and not on Values (they come from agrad's free list).",
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
    core = sum(functions.values())
    lines += [
        "",
        "Inside agrad._core, per native epoch, by function (built with symbols from the "
        "cpp/ and src/ of this tree, which the installed module may predate; inlined code counts for the function it was inlined into; the native engine "
        f"holds {native_nodes} of the graph's {nodes} nodes, its constants live inside their "
        "parents):",
        "",
        "| function | instructions per epoch | share | per native node |",
        "|---|---|---|---|",
    ]
    for name, n in sorted(functions.items(), key=lambda item: -item[1]):
        if n >= core / 200:
            lines.append(
                f"| `{name}` | {fmt(n)} | {100 * n / core:.0f}% | {n / native_nodes:.1f} |"
            )
    lines.append(f"| all of agrad._core | {fmt(core)} | 100% | {core / native_nodes:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/profile_native.py",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Exit status: 0, or 1 when valgrind is missing.",
    )
    output.add_options(parser, ["PROFILE.md"])
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
        # the debug agrad first; site-packages after it for numpy and pandas,
        # which the workloads import and `python -S` would not find
        path = [str(debug_package(workdir)), *site.getsitepackages()]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        functions = per_unit(
            [me, "--child", "native", "epoch", "1"],
            [me, "--child", "native", "epoch", str(1 + args.epochs)],
            args.epochs,
            workdir,
            instructions_by_core_function,
            env,
        )
    nodes, native_nodes = loss_graph_nodes()
    written = output.folder(args) / "PROFILE.md"
    written.write_text(render(epochs, ops, functions, nodes, native_nodes), encoding="utf-8")
    print(f"wrote {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
