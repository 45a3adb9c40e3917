"""The benchmark suite (benchmarks/run.py) runs end to end in its --quick mode
and writes what it promises.

The suite is a set of scripts in the repository, not part of the package, so
it is run as a user runs it: a subprocess of this Python.  No assertion is
made on times, the machine is shared and noisy; what is checked is what
cannot be noise: every table has a measurement for every engine, the chart
is a PNG, and the engines agree bit for bit.
"""

import importlib.util
import itertools
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
RUN = BENCHMARKS / "run.py"
ENGINES = ["plain floats", "agrad", "agrad fused", "agrad.pure", "torch scalars"]
WORKLOADS = [
    "1: univariate, 5 points, full batch",
    "2: univariate, 1000 points, full batch",
    "3: univariate, 1000 points, batch 10",
    "4: 3 features, 1000 points, batch 50",
    "5: body fat, 14 features, 252 rows, batch 20",
]
TIME = re.compile(r"\d+(\.\d+)? (ns|us|ms)")
KIB = re.compile(r"\d+ KiB( \+ \d+ KiB arena)?")
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None

# Runs run.py with `import torch` failing, as it does where torch is not installed.
WITHOUT_TORCH = f"""
import runpy, sys
sys.modules["torch"] = None
sys.path.insert(0, {str(BENCHMARKS)!r})
sys.argv = [{str(RUN)!r}, *sys.argv[1:]]
runpy.run_path({str(RUN)!r}, run_name="__main__")
"""


def run_suite(*args: str, torch: bool = True) -> subprocess.CompletedProcess:
    script = [str(RUN)] if torch else ["-c", WITHOUT_TORCH]
    return subprocess.run(
        [sys.executable, *script, *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(True, id="torch-as-installed"),
        pytest.param(
            False,
            id="without-torch",
            marks=pytest.mark.skipif(
                not TORCH_INSTALLED, reason="torch is not installed: the other run is this one"
            ),
        ),
    ],
)
def quick_run(request, tmp_path_factory):
    """(whether torch was measured, the completed run, its output directory)."""
    output = tmp_path_factory.mktemp("benchmarks")
    done = run_suite("--quick", "--output", str(output), torch=request.param)
    assert done.returncode == 0, done.stderr
    return request.param and TORCH_INSTALLED, done, output


def markdown_table(text: str, heading: str) -> dict[str, dict[str, str]]:
    """The first table after `heading`, as {first cell: {column: cell}}."""
    section = text.split(f"\n{heading}\n\n", 1)[1]
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), section.splitlines()))
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_every_workload_is_timed_on_every_engine(quick_run):
    torch, _, output = quick_run
    results = (output / "RESULTS.md").read_text(encoding="utf-8")
    table = markdown_table(results, "## Time per epoch")
    assert list(table) == WORKLOADS
    for row in table.values():
        for engine in ENGINES:
            if engine == "torch scalars" and not torch:
                assert row[engine] == "-"
            else:
                assert TIME.fullmatch(row[engine]), (engine, row)
        for column in ("pure/agrad", "agrad/floats", "fused gain"):
            assert re.fullmatch(r"\d+(\.\d+)?x", row[column]), (column, row)


def test_memory_and_operations_are_measured(quick_run):
    torch, _, output = quick_run
    results = (output / "RESULTS.md").read_text(encoding="utf-8")
    memory = markdown_table(results, "## Memory")
    assert list(memory) == WORKLOADS
    for row in memory.values():
        for engine in ENGINES:
            if engine == "torch scalars" and not torch:
                assert row[engine] == "-"
            else:
                assert KIB.fullmatch(row[engine]), (engine, row)
    operations = markdown_table(results, "## Operations")
    for op in ("Value*Value", "Value*float", "float*Value", "Value+Value", "backward per node"):
        assert TIME.fullmatch(operations[op]["agrad"]) and TIME.fullmatch(
            operations[op]["agrad.pure"]
        )
        assert TIME.fullmatch(operations[op]["torch scalars"]) or not torch
    assert TIME.fullmatch(operations["agrad.sum of 1000"]["agrad"])
    split = markdown_table(results, "## Where agrad's time goes (workload 2, one epoch)")
    assert TIME.fullmatch(split["agrad epoch"]["time"])
    assert re.search(r"Workload 4 on agrad for \d+ epochs: live nodes \d+", results)


def test_engines_agree_bit_for_bit(quick_run):
    torch, done, output = quick_run
    results = (output / "RESULTS.md").read_text(encoding="utf-8")
    summary = markdown_table(results, "## Summary")
    checks = {what: row for what, row in summary.items() if what.endswith("bit for bit")}
    workloads = [what for what in checks if what.startswith("workload ")]
    assert len(workloads) == 3 * len(WORKLOADS)  # pure, fused and compiled against agrad
    # beside the peers: eager == compiled on the graph (two sizes), the
    # chapter's step (the book's code and fused sums) and the demo (two models)
    assert len(checks) - len(workloads) == 6
    assert all(row["value"] == "same" and row["met"] == "yes" for row in checks.values())
    torch_row = next(row for what, row in summary.items() if what.startswith("torch scalars"))
    assert (torch_row["met"] == "not measured") == (not torch)
    assert ("torch is not installed" in done.stderr) == (not torch)


def test_the_chart_and_the_printed_tables(quick_run):
    _, done, output = quick_run
    assert (output / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "pure/agrad" in done.stdout and "backward per node" in done.stdout
    for title in WORKLOADS:
        assert title in done.stdout
    assert not re.search(r"issue\s*#?\d", done.stdout + (output / "RESULTS.md").read_text())


def test_output_must_be_a_directory(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    done = run_suite("--quick", "--output", str(not_a_dir))
    assert done.returncode == 1
    assert (
        done.stderr == f"python benchmarks/run.py: error: --output {not_a_dir}: not a directory\n"
    )


def test_unknown_option_is_a_usage_error():
    done = run_suite("--no-such-option")
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_same_losses_sees_one_bit(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from measure import same_losses
    from workloads import AGRAD, Run, workload

    five = workload(1)
    a, b = Run(five, AGRAD, five.data()), Run(five, AGRAD, five.data())
    a.epochs(2)
    b.epochs(2)
    assert same_losses(a, b)
    b.losses[1] = b.losses[1] + b.losses[1] * 2**-52
    assert not same_losses(a, b)


STATIC = BENCHMARKS / "static_graph.py"


def test_static_graph_runs_small_and_its_engines_agree(tmp_path):
    """benchmarks/static_graph.py on a small graph: it checks that replays
    equal eager agrad bit for bit before timing (exit status 1 otherwise) and
    writes its tables."""
    output = tmp_path / "STATIC.md"
    small = ["--nodes", "200", "--repeat", "2", "--evaluations", "4", "--output", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, str(STATIC), *small],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text(encoding="utf-8")
    table = markdown_table(text, "Nanoseconds per node, one evaluation of the graph:")
    assert list(table) == ["agrad compiled (replay)", "agrad eager", "agrad.pure", "plain floats"]
    number = re.compile(r"\d+(\.\d+)?")
    for engine, row in table.items():
        assert number.fullmatch(row["forward"]), row
        assert number.fullmatch(row["backward"]) or engine == "plain floats", row
    assert re.search(r"Recording .*: \d+\.\d\d ms, \d+\.\d\dx one eager evaluation", text)
    assert re.search(r"agrad's engine makes \d+ nodes", text)
    assert "Nanoseconds per node" in done.stdout


def test_static_graph_generator_is_deterministic_and_bounded(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import static_graph

    a, b = static_graph.generate(500, 3), static_graph.generate(500, 3)
    assert a == b and a != static_graph.generate(500, 4)
    assert sum(a.written.values()) >= 500 and set(a.written) == set(static_graph.KINDS)
    # the function on floats, at the corners of the inputs' domain: finite, not tiny
    lo, hi = static_graph.DOMAIN
    for x in (lo, hi):
        f = a.function([x] * a.params, math.exp, math.log)
        assert static_graph.LOW <= f([x] * a.inputs) < math.inf


JAX_INSTALLED = importlib.util.find_spec("jax") is not None
C_COMPILER = shutil.which(os.environ.get("CC", "cc"))


def test_agrad_beside_the_c_floor_numpy_and_jax(quick_run):
    """The section beside the peers: every row timed (jax's when installed,
    the C floor's when there is a compiler), agrad's results equal to the
    peers' to 1e-12."""
    _, done, output = quick_run
    results = (output / "RESULTS.md").read_text(encoding="utf-8")
    graph = markdown_table(
        results, "### The Fastest Autograd in the West graph, forward and backward"
    )
    assert list(graph) == ["C tape interpreter (-O3)", "agrad compiled", "agrad eager"]
    for name, row in graph.items():
        per_op = [cell for column, cell in row.items() if column.endswith("per op")]
        assert len(per_op) == 2
        for cell in per_op:
            assert TIME.fullmatch(cell) or (name.startswith("C ") and not C_COMPILER), row
    chapter = markdown_table(results, "### The chapter's step, 1000 points, full batch")
    demo = markdown_table(results, "### micrograd's demo step (MLP 2-16-16-1, 100 points)")
    assert "agrad compiled (the book's code)" in chapter and "agrad.nn (fused), compiled" in demo
    for table in (chapter, demo):
        for name, row in table.items():
            if name.startswith("jax") and not JAX_INSTALLED:
                assert row["time per step"] == "-"
            else:
                assert TIME.fullmatch(row["time per step"]), row
    summary = markdown_table(results, "## Summary")
    close = {what: row for what, row in summary.items() if row["goal"] == "<= 1e-12"}
    # the graph's last node against the C floor (two sizes), NumPy (and jax)
    # on the chapter, micrograd-style neurons and NumPy (and jax) on the demo
    expected = 2 * bool(C_COMPILER) + 3 + 2 * JAX_INSTALLED
    assert len(close) == expected, close
    assert all(row["met"] == "yes" for row in close.values()), close
    assert ("jax is not installed" in done.stderr) == (not JAX_INSTALLED)


def test_quick_judges_results_not_times(quick_run):
    """--quick's times are rough: it judges no speed goal (so it exits 0
    with goals missed), but every check of results."""
    _, _, output = quick_run
    summary = markdown_table((output / "RESULTS.md").read_text(encoding="utf-8"), "## Summary")
    goal = summary["micrograd's demo: agrad.nn (fused), compiled / jax.jit (float64, one thread)"]
    assert goal["met"] in ("not judged (times too rough)", "not measured")
    for what, row in summary.items():
        if row["goal"] not in ("same", "unchanged", "<= 1e-12"):
            assert row["met"] in ("not judged (times too rough)", "not measured"), what


@pytest.fixture
def benchmarks_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def summary_report(lines, judged):
    """A Report whose summary is `lines`, for the verdicts built on it."""
    from report import Report

    class Summarised(Report):
        def summary(self):
            return lines

    return Summarised("test", [], {}, {}, None, {}, [], judged=judged)


def test_exit_status_tells_a_difference_from_a_missed_goal(benchmarks_path):
    import run
    from report import Line, summary_rows

    fast = Line("time", "1.5x", "<= 2x", True)
    slow = Line("time", "3.0x", "<= 2x", False)
    same = Line("engines", "same", "same", True, exact=True)
    differ = Line("engines", "DIFFER", "same", False, exact=True)
    unmeasured = Line("jax", "jax not installed", "<= 2x", None)
    log = []
    assert run.exit_status(summary_report([fast, same, unmeasured], True), log.append) == 0
    assert run.exit_status(summary_report([slow, same], True), log.append) == run.MISSED
    assert log == ["goal missed: time: 3.0x (goal <= 2x)"]
    assert run.exit_status(summary_report([slow, differ], True), log.append) == run.DIFFER
    assert run.exit_status(summary_report([slow, same], False), log.append) == 0
    assert run.exit_status(summary_report([differ], False), log.append) == run.DIFFER
    rows = summary_rows(summary_report([slow, differ, unmeasured], False), "no")
    assert [row[-1] for row in rows] == ["not judged (times too rough)", "no", "not measured"]


def test_results_go_to_the_output_folder_not_the_tracked_files(
    benchmarks_path, monkeypatch, tmp_path
):
    import output
    import run

    monkeypatch.setattr(output, "DEFAULT", tmp_path / "default")
    assert output.folder(run.parse_args([])) == tmp_path / "default"
    assert (tmp_path / "default").is_dir()
    assert output.folder(run.parse_args(["--output", str(tmp_path / "a")])) == tmp_path / "a"
    assert output.folder(run.parse_args(["--update"])) == BENCHMARKS


@pytest.mark.parametrize("args", [["--update", "--quick"], ["--update", "--output", "somewhere"]])
def test_update_is_its_own_choice(args):
    done = run_suite(*args)
    assert done.returncode == 2
    assert "usage:" in done.stderr


@pytest.mark.parametrize(
    "script",
    [
        "run.py",
        "peers.py",
        "static_graph.py",
        "profile_native.py",
        "micrograd_demo.py",
        "compile_costs.py",
        "compile_guards.py",
        "higher.py",
        "pow_vs_multiply.py",
        "large_graph.py",
        "sweep.py",
        "bootstrap.py",
    ],
)
def test_every_script_has_help(script):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python benchmarks/{script}")
    # the description is whole: it ends a sentence
    description = done.stdout.split("\n\n")[1]
    assert description.rstrip().endswith("."), description


@pytest.mark.skipif(C_COMPILER is None, reason="no C compiler (cc, or $CC)")
def test_the_c_floor_computes_agrads_graph(benchmarks_path):
    """tape_floor.c, built as the suite builds it, gives agrad's last node
    and the inputs' gradients to rounding."""
    import peers

    import agrad

    tape = peers.Floor(C_COMPILER).tape(402)
    tape.run()
    inputs = [agrad.Value(x) for x in peers.INPUTS]
    root = peers.graph_root(inputs, 402)
    root.backward()
    assert math.isclose(tape.root(), root.data, rel_tol=1e-13)
    for c, v in zip(tape.input_grads(), inputs, strict=True):
        assert math.isclose(c, v.grad, rel_tol=1e-12, abs_tol=1e-300)
    assert any(v.grad != 0 for v in inputs)


def test_a_samplers_block_is_sized_by_a_call_after_the_first(monkeypatch):
    """A compiled step's first timed call decodes its program (milliseconds,
    against microseconds a step after): a block sized by that call would hold
    a call or two, each cold, not the block of calls asked for."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from measure import per_call_seconds

    calls = []

    def step():
        if not calls:
            time.sleep(0.05)  # the one-time work
        calls.append(None)

    sample = per_call_seconds(step, seconds=0.01)
    before = len(calls)
    sample()
    assert len(calls) - before >= 100  # a step costs well under 100 us
