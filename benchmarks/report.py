"""The suite's results as tables (Markdown for RESULTS.md, text for the
terminal) and as a chart of each engine's time relative to agrad's."""

from __future__ import annotations

import datetime
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import peers
from measure import Soak, WorkloadResult
from micrograd_demo import AGRAD_NN, AGRAD_NN_COMPILED, CHAIN, CHAIN_COMPILED, MICROGRAD, NUMPY
from peers import PeersResult
from workloads import TITLES

import agrad
from agrad import _core

COLUMNS = list(TITLES)  # engine keys, in table order
PROFILE_FILE = "PROFILE.md"  # written by profile_native.py, quoted in RESULTS.md


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    # two significant digits below 0.1x, where one decimal would read 0.0x
    return f"{r:.2g}x" if r < 0.1 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


class Line(NamedTuple):
    """A line of the summary: a goal or a check, and what was measured."""

    what: str
    value: str  # the measurement
    goal: str
    met: bool | None  # None: not measured (a library not installed)
    # a check of results (two engines equal, a peer within rounding), which no
    # noise can excuse, rather than a goal for a time
    exact: bool = False


@dataclass
class Report:
    settings_name: str
    workloads: list[WorkloadResult]
    micro: dict[str, dict[str, float]]
    graph_memory: dict[str, tuple[int, int]]
    soak: Soak
    split: dict[str, float]
    engines: list[str]
    # micrograd's demo: CPU seconds per step by implementation (None: micrograd not installed)
    demo: dict[str, float] | None = None
    peers: PeersResult | None = None
    # whether the times are good enough to judge the speed goals by (--quick's are not)
    judged: bool = True

    def seconds(self, key: int) -> dict[str, float]:
        return next(r.seconds for r in self.workloads if r.workload.key == key)

    def timing_rows(self) -> list[list[str]]:
        rows = []
        for r in self.workloads:
            s = r.seconds
            rows.append(
                [
                    r.workload.title,
                    *[fmt_time(s.get(k)) for k in COLUMNS],
                    fmt_ratio(ratio(s.get("pure"), s["agrad"])),
                    fmt_ratio(ratio(s["agrad"], s["floats"])),
                    fmt_ratio(ratio(s.get("torch"), s["agrad"])),
                    fmt_ratio(ratio(s["agrad"], s.get("fused"))),
                    fmt_ratio(ratio(s.get("compiled"), s["floats"])),
                ]
            )
        return rows

    def micro_rows(self) -> list[list[str]]:
        rows = []
        for op, by_engine in self.micro.items():
            compiled = by_engine.get("agrad")
            rows.append(
                [
                    op,
                    *[fmt_time(by_engine.get(k)) for k in MICRO_COLUMNS],
                    fmt_ratio(ratio(by_engine.get("pure"), compiled)),
                    fmt_ratio(ratio(compiled, by_engine.get("floats"))),
                    fmt_ratio(ratio(by_engine.get("torch"), compiled)),
                ]
            )
        return rows

    def memory_rows(self) -> list[list[str]]:
        rows = []
        for r in self.workloads:
            cells = []
            for k in COLUMNS:
                if k not in r.memory:
                    cells.append("-")
                    continue
                python_bytes, engine_bytes = r.memory[k]
                text = f"{python_bytes / 1024:.0f} KiB"
                if k in ("agrad", "fused", "compiled"):
                    text += f" + {engine_bytes / 1024:.0f} KiB arena"
                cells.append(text)
            rows.append([r.workload.title, *cells])
        return rows

    def demo_rows(self) -> list[list[str]]:
        if self.demo is None:
            return []
        base = self.demo[MICROGRAD]
        return [
            [name, fmt_time(seconds), fmt_ratio(ratio(base, seconds))]
            for name, seconds in self.demo.items()
        ]

    def summary(self) -> list[Line]:
        """Each goal and check, measured."""
        out: list[Line] = []
        for key in (2, 4):
            s = self.seconds(key)
            r = s["pure"] / s["agrad"]
            # no engine can beat the loop itself: pure/floats bounds this ratio
            measured = (
                f"{fmt_ratio(r)} (ceiling: pure/floats = {fmt_ratio(s['pure'] / s['floats'])})"
            )
            out.append(
                Line(f"workload {key}: agrad.pure time / agrad time", measured, ">= 30x", r >= 30)
            )
        for key in (2, 4):
            s = self.seconds(key)
            r = s["agrad"] / s["floats"]
            out.append(
                Line(
                    f"workload {key}: agrad time / plain floats time", fmt_ratio(r), "<= 3x", r <= 3
                )
            )
        b = self.micro["backward per node"]
        r = b["pure"] / b["agrad"]
        out.append(
            Line(
                "backward per node: agrad.pure time / agrad time",
                f"{fmt_ratio(r)} (100x needs {fmt_time(b['pure'] / 100)} per node)",
                ">= 100x",
                r >= 100,
            )
        )
        out.append(
            Line(
                f"agrad's live nodes over {self.soak.epochs} epochs of workload 4",
                f"{self.soak.nodes_start} -> {self.soak.nodes_end}",
                "unchanged",
                self.soak.nodes_end == self.soak.nodes_start,
                exact=True,  # a count, not a time: a leak whatever the machine
            )
        )
        demo = self.demo
        demo_goals = [
            ("micrograd step time / agrad.nn step time", MICROGRAD, AGRAD_NN, ">= 200x", 200),
            ("micrograd / agrad.nn compiled", MICROGRAD, AGRAD_NN_COMPILED, ">= 2000x", 2000),
            ("micrograd-style eager / compiled", CHAIN, CHAIN_COMPILED, ">= 30x", 30),
            (
                "NumPy vectorised / micrograd-style compiled",
                NUMPY,
                CHAIN_COMPILED,
                ">= 1/3x",
                1 / 3,
            ),
            ("NumPy vectorised / agrad.nn compiled", NUMPY, AGRAD_NN_COMPILED, ">= 1/3x", 1 / 3),
        ]
        for measure, slow, fast, goal, at_least in demo_goals:
            measure = f"micrograd's demo: {measure}"
            if demo is None:
                out.append(Line(measure, "micrograd not installed", goal, None))
                continue
            r = demo[slow] / demo[fast]
            out.append(Line(measure, fmt_ratio(r), goal, r >= at_least))
        torch_measure = "torch scalars time / agrad time, smallest over the workloads"
        if "torch" in self.engines:
            slower = [
                str(r.workload.key)
                for r in self.workloads
                if r.seconds["agrad"] >= r.seconds["torch"]
            ]
            smallest = min(r.seconds["torch"] / r.seconds["agrad"] for r in self.workloads)
            measured = fmt_ratio(smallest) + (f"; slower on {', '.join(slower)}" if slower else "")
            out.append(Line(torch_measure, measured, "> 1x", not slower))
        else:
            out.append(Line(torch_measure, "torch not installed", "> 1x", None))
        if self.peers is not None:
            out += peer_lines(self.peers)
        for result in self.workloads:
            for check, ok in result.checks.items():
                out.append(
                    Line(
                        f"workload {result.workload.key}: losses {check}, bit for bit",
                        "same" if ok else "DIFFER",
                        "same",
                        ok,
                        exact=True,
                    )
                )
        return out

    def summary_notes(self) -> list[str]:
        """By how much the speed goals are missed, and what bounds them."""
        notes = []
        for key in (2, 4):
            s = self.seconds(key)
            floor_share = s["floats"] / s["agrad"]
            bound = s["pure"] / s["floats"]
            notes.append(
                f"Workload {key}: the plain-float loop is {100 * floor_share:.0f}% of agrad's "
                f"epoch; the autograd on top of it costs {fmt_time(s['agrad'] - s['floats'])} "
                f"per epoch. An autograd that cost nothing would be pure/floats = "
                f"{fmt_ratio(bound)} faster than agrad.pure: "
                + (
                    "a 30x speed-up is out of reach of any engine on this loop, whose own cost "
                    "(batch sampling, list building, the interpreter) dominates."
                    if bound < 30
                    else f"30x needs an agrad epoch of at most {fmt_time(s['pure'] / 30)}."
                )
            )
        b = self.micro["backward per node"]
        notes.append(
            f"backward: {fmt_time(b['agrad'])} per node of the chapter's graph against "
            f"agrad.pure's {fmt_time(b['pure'])}; 100x needs {fmt_time(b['pure'] / 100)}. "
            "Where the engine's instructions go is in the last section."
        )
        return notes

    def disagreements(self) -> list[Line]:
        """The checks of results that failed: bugs, whatever the machine."""
        return [line for line in self.summary() if line.exact and line.met is False]

    def missed_goals(self) -> list[Line]:
        """The goals missed, when the times are good enough to judge them."""
        if not self.judged:
            return []
        return [line for line in self.summary() if not line.exact and line.met is False]


def peer_lines(result: PeersResult) -> list[Line]:
    """The goals for agrad beside the C floor and the vectorised peers, and
    the checks that they computed the same numbers."""
    out = []
    for graph in result.graphs:
        what = f"graph of {graph.operations} operations: agrad compiled / C floor, per operation"
        floor = graph.seconds.get(peers.FLOOR)
        if floor is None:
            out.append(Line(what, "no C compiler", "<= 2x", None))
            continue
        r = graph.seconds[peers.GRAPH_COMPILED] / floor
        out.append(Line(what, fmt_ratio(r), "<= 2x", r <= 2))
    goals = [
        ("chapter, full batch", result.chapter, peers.BOOK_COMPILED, peers.NUMPY, 2),
        ("micrograd's demo", result.demo, AGRAD_NN_COMPILED, peers.JAX, 1.2),
        ("micrograd's demo", result.demo, CHAIN_COMPILED, peers.JAX, 2),
    ]
    for part, seconds, ours, theirs, at_most in goals:
        what = f"{part}: {ours} / {theirs}"
        if theirs not in seconds:
            out.append(Line(what, f"{theirs.split(',')[0]} not installed", f"<= {at_most}x", None))
            continue
        r = seconds[ours] / seconds[theirs]
        out.append(Line(what, fmt_ratio(r), f"<= {at_most}x", r <= at_most))
    for check, ok in result.checks.items():
        out.append(Line(f"{check}, bit for bit", "same" if ok else "DIFFER", "same", ok, True))
    for what, difference in result.differences.items():
        ok = difference <= peers.CLOSE
        out.append(Line(what, f"{difference:.1e}", f"<= {peers.CLOSE:.0e}", ok, True))
    return out


MICRO_COLUMNS = ["floats", "agrad", "pure", "torch"]
TIMING_HEADER = [
    "workload (time per epoch)",
    *TITLES.values(),
    "pure/agrad",
    "agrad/floats",
    "torch/agrad",
    "fused gain",
    "compiled/floats",
]
MICRO_HEADER = [
    "operation",
    *[TITLES[k] for k in MICRO_COLUMNS],
    "pure/agrad",
    "agrad/floats",
    "torch/agrad",
]
MEMORY_HEADER = ["workload (peak memory of one epoch)", *TITLES.values()]
DEMO_HEADER = ["implementation (micrograd's demo)", "CPU time per step", "micrograd / this"]
SUMMARY_HEADER = ["measured", "value", "goal", "met"]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
        + [fmt.format(*r) for r in rows]
    )


def summary_rows(report: Report, missed: str) -> list[list[str]]:
    def verdict(line: Line) -> str:
        if line.met is None:
            return "not measured"
        if not line.exact and not report.judged:
            return "not judged (times too rough)"
        return "yes" if line.met else missed

    return [[line.what, line.value, line.goal, verdict(line)] for line in report.summary()]


def graph_table(result: PeersResult) -> tuple[list[str], list[list[str]]]:
    """Rows: the C floor and agrad; per graph size, the time an operation and
    its ratio to the floor's."""
    header = ["implementation"]
    for graph in result.graphs:
        header += [f"{graph.operations} ops: per op", f"{graph.operations} ops: / C floor"]
    rows = []
    for name in peers.GRAPH_ROWS:
        row = [name]
        for graph in result.graphs:
            seconds = graph.seconds.get(name)
            per_op = None if seconds is None else seconds / graph.operations
            row += [fmt_time(per_op), fmt_ratio(ratio(seconds, graph.seconds.get(peers.FLOOR)))]
        rows.append(row)
    return header, rows


STEP_HEADER = ["implementation", "time per step", "/ NumPy", "/ jax.jit"]


def step_rows(seconds: dict[str, float], names: Sequence[str], numpy: str) -> list[list[str]]:
    return [
        [
            name,
            fmt_time(seconds.get(name)),
            fmt_ratio(ratio(seconds.get(name), seconds.get(numpy))),
            fmt_ratio(ratio(seconds.get(name), seconds.get(peers.JAX))),
        ]
        for name in names
    ]


def peers_text(result: PeersResult) -> str:
    """The tables of peers.py, for the terminal."""
    return "\n\n".join(
        [
            text_table(*graph_table(result)),
            text_table(STEP_HEADER, step_rows(result.chapter, peers.CHAPTER_ROWS, peers.NUMPY)),
            text_table(STEP_HEADER, step_rows(result.demo, peers.DEMO_ROWS, NUMPY)),
        ]
    )


def peers_markdown(result: PeersResult) -> list[str]:
    """The section of RESULTS.md beside the C floor and the vectorised peers."""
    threads = ", ".join(f"`{k}={v}`" for k, v in result.threads.items())
    nodes = ", ".join(f"{g.nodes / g.operations:.1f} at {g.operations}" for g in result.graphs)
    parts = [
        "## Beside a C floor, NumPy and jax.jit",
        "",
        "By `benchmarks/peers.py`. Every time is the least of "
        f"{result.repeats} interleaved repetitions in one process, each a block of calls of about "
        f"{result.block_seconds * 1e3:.0f} ms (wall clock): on a shared machine other work only "
        "adds time. Each step is timed as a user writes it: the graph or loss built, backward, "
        "the optimizer's update, the loss read back as a float. The peers run on one thread "
        f"(set before numpy and jax are imported: {threads}); jax "
        f"{result.jax_version or 'is not installed'} with float64 on.",
        "",
        "### The Fastest Autograd in the West graph, forward and backward",
        "",
        markdown_table(*graph_table(result)),
        "",
        "100 inputs (k/100 for k = 0..99: the original's 0..99 overflow `exp` in float64), then "
        "operation i by i mod 4 appends softplus of n[-10], the sum of n[-30:-10:5], "
        "n[-20] * n[-10], or the 4 outputs of a softmax of n[-4:] (no max shift); backward from "
        "the last node. The floor is `benchmarks/tape_floor.c`, a hand-written tape interpreter "
        "(flat arrays, one `switch` loop each way), built at run time by "
        f"{result.compiler or 'no compiler: not measured'}"
        + (f" with `{result.compile_command}` (no fast-math)" if result.compile_command else "")
        + " and called through ctypes. agrad builds the same graph with `Value` "
        "(`agrad.sum` for the sums, `e / s` for the softmax, as micrograd writes it), eagerly and "
        f"through `agrad.compile`: agrad nodes an operation: {nodes}.",
        "",
        "### The chapter's step, 1000 points, full batch",
        "",
        markdown_table(STEP_HEADER, step_rows(result.chapter, peers.CHAPTER_ROWS, peers.NUMPY)),
        "",
        "The suite's workload 2: *the book's code* is `LinReg` with the builtin `sum`, eager or "
        "through `agrad.compile`; *fused sums* the same loss with `agrad.sum`. NumPy computes the "
        "residuals, the loss and both gradients in a few array operations; jax takes "
        "`value_and_grad` of the same loss inside one `jax.jit` step with the update.",
        "",
        "### micrograd's demo step (MLP 2-16-16-1, 100 points)",
        "",
        markdown_table(STEP_HEADER, step_rows(result.demo, peers.DEMO_ROWS, NUMPY)),
        "",
        "The implementations of the section *micrograd's demo* above, timed here as the rest of "
        "this section (the least of blocks of steps, not medians of single steps), and "
        "`jax.jit` with the same model, loss and SGD step.",
        "",
    ]
    if result.missing:
        parts += [*(f"- Not measured: {line}" for line in result.missing), ""]
    return parts


def render_text(report: Report) -> str:
    """What the runner prints: the time, operation and summary tables."""
    tables = [
        text_table(TIMING_HEADER, report.timing_rows()),
        text_table(MICRO_HEADER, report.micro_rows()),
    ]
    if report.demo is not None:
        tables.append(text_table(DEMO_HEADER, report.demo_rows()))
    if report.peers is not None:
        tables.append(peers_text(report.peers))
    return "\n\n".join([*tables, text_table(SUMMARY_HEADER, summary_rows(report, "NO"))])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # not on every system
        return "unknown"


def environment() -> list[tuple[str, str]]:
    import numpy

    # imported by the suite if it is installed; None in sys.modules also means absent
    torch = sys.modules.get("torch")
    jax = sys.modules.get("jax")
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        (
            "machine",
            f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        ),
        ("CPU", cpu_model()),
        # the machine is shared: how busy it was when the tables were written
        ("load average (1, 5, 15 min)", load_average()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("agrad", agrad.__version__),
        ("torch", torch.__version__ if torch is not None else "not installed"),
        ("jax", jax.__version__ if jax is not None else "not installed"),
        ("numpy", numpy.__version__),
    ]


def render_markdown(report: Report, chart_name: str | None, profile_text: str | None) -> str:
    parts = [
        "# agrad benchmarks",
        "",
        "Written by `python benchmarks/run.py`; do not edit by hand. "
        f"Settings: `{report.settings_name}`.",
        "",
        "Each figure is the median time of one training epoch (graph build, `backward`, "
        "parameter update) over repeats, the engines interleaved in one process. The model is the "
        "chapter's `agrad.linreg.LinReg`, run unchanged on each number type; *plain floats* run "
        "the same Python loop with no gradients (the floor for any drop-in `Value`); *agrad* "
        "sums with the book's chain of `+`, *agrad fused* with `agrad.dot` and `agrad.sum`. The "
        "machine is shared and noisy: read the ratios, the absolute times are context.",
        "",
        markdown_table(["", ""], environment()),
        "",
        "## Summary",
        "",
        markdown_table(SUMMARY_HEADER, summary_rows(report, "**no**")),
        "",
        *[f"- {line}" for line in report.summary_notes()],
        "",
        "## Time per epoch",
        "",
        markdown_table(TIMING_HEADER, report.timing_rows()),
        "",
        "*pure/agrad* and *torch/agrad*: how many times faster agrad's compiled engine is; "
        "*agrad/floats*: how many times the plain-float loop it costs; "
        "*fused gain*: agrad / agrad fused. *agrad compiled* is the fused model's loss "
        "through `agrad.compile` (recorded once, replayed in C++; batches drawn in Python); "
        "*compiled/floats* its time over the plain-float loop's.",
        "",
    ]
    if chart_name:
        parts += [f"![time per epoch relative to agrad]({chart_name})", ""]
    parts += [
        "## Operations",
        "",
        markdown_table(MICRO_HEADER, report.micro_rows()),
        "",
        "`backward per node` is `loss.backward()` on the workload-2 loss graph "
        "(torch with `retain_graph=True`) divided by its node count as the chapter's `Value` "
        f"builds it ({report.graph_memory['pure'][1]} nodes, as in agrad.pure; the compiled "
        f"engine keeps constants inside their parents and holds {report.graph_memory['agrad'][1]}).",
        "",
        "## micrograd's demo",
        "",
        *(
            [
                markdown_table(DEMO_HEADER, report.demo_rows()),
                "",
                "One step of micrograd's demo (100 two-moons points, MLP 2-16-16-1, max-margin "
                "loss with L2, backward, SGD) by `benchmarks/micrograd_demo.py`: micrograd is the "
                "PyPI package; *micrograd-style neurons* are micrograd's `nn.py` written over "
                "`agrad.Value`; *agrad.nn* is `agrad.nn.MLP` (each neuron one `agrad.dot` node) "
                "with `nn.hinge_loss` and `optim.SGD`; *compiled* is the same step with its loss "
                "through `agrad.compile` (the same bits); *NumPy* the same model vectorised, "
                "backward written by hand. Medians of CPU time (`time.process_time`), "
                f"{report.settings_name} settings, the implementations interleaved, each timed "
                "step after an untimed one of its own.",
            ]
            if report.demo is not None
            else ["micrograd is not installed (`pip install 'agrad[bench]'`): not measured."]
        ),
        "",
        *(peers_markdown(report.peers) if report.peers is not None else []),
        "## Memory",
        "",
        markdown_table(MEMORY_HEADER, report.memory_rows()),
        "",
        "Python-side peaks are tracemalloc's; the compiled engine's arena is C++ memory, counted "
        f"as peak live nodes x {_core._node_bytes()} bytes. torch's own C++ memory is not counted.",
        "",
        graph_memory_text(report.graph_memory),
        "",
        soak_text(report.soak),
        "",
        "## Where agrad's time goes (workload 2, one epoch)",
        "",
        markdown_table(["part", "time", "share of agrad's epoch"], split_rows(report.split)),
        "",
        "Each part timed on its own (medians of interleaved repeats), so the total differs a "
        "little from the epoch timed above.",
        "",
    ]
    if profile_text:
        parts += [profile_text.strip(), ""]
    else:
        parts += [
            "Instruction counts: run `python benchmarks/profile_native.py` to add them "
            f"(it writes `{PROFILE_FILE}` beside this file, which is quoted here).",
            "",
        ]
    return "\n".join(parts)


def graph_memory_text(graph_memory: dict[str, tuple[int, int]]) -> str:
    parts = [
        f"{TITLES[key]} {total / 1024:.0f} KiB for {nodes} live nodes ({total / nodes:.0f} bytes each)"
        for key, (total, nodes) in graph_memory.items()
    ]
    compiled, pure = graph_memory["agrad"][0], graph_memory["pure"][0]
    return (
        f"The workload-2 loss graph, held by its root: {'; '.join(parts)}; "
        f"pure / agrad: {pure / compiled:.1f}x."
    )


def soak_text(soak: Soak) -> str:
    text = (
        f"Workload 4 on agrad for {soak.epochs} epochs: live nodes "
        f"{soak.nodes_start} after the first epoch, {soak.nodes_end} after the last; RSS "
    )
    if soak.rss_start is None or soak.rss_end is None or soak.rss_peak_growth is None:
        return text + "not available on this system."
    return text + (
        f"{soak.rss_start / 2**20:.1f} MiB -> {soak.rss_end / 2**20:.1f} MiB "
        f"(at most {soak.rss_peak_growth / 2**10:.0f} KiB above the start)."
    )


def split_rows(split: dict[str, float]) -> list[list[str]]:
    """agrad's epoch as parts that add up to it: the floor, the build's
    excess over it, and what follows the build."""
    floor = split["floats loop"]
    parts = [
        ("the Python loop itself (plain floats, same code)", floor),
        (
            "binding + engine forward + allocation (graph build - floor)",
            split["graph build"] - floor,
        ),
        ("backward", split["backward"]),
        ("update", split["update"]),
        ("free graph", split["free graph"]),
    ]
    total = sum(seconds for _, seconds in parts)
    rows = [[name, fmt_time(seconds), f"{100 * seconds / total:.0f}%"] for name, seconds in parts]
    return [*rows, ["agrad epoch", fmt_time(total), "100%"]]


def draw_chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r.workload.key) for r in report.workloads]
    keys = [k for k in COLUMNS if any(k in r.seconds for r in report.workloads)]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, key in enumerate(keys):
        heights = [ratio(r.seconds.get(key), r.seconds["agrad"]) or 0 for r in report.workloads]
        positions = [x + (i - (len(keys) - 1) / 2) * width for x in range(len(labels))]
        bars = ax.bar(positions, heights, width, label=TITLES[key])
        for bar, h in zip(bars, heights, strict=True):
            if h:
                ax.annotate(
                    f"{h:.2g}" if h < 10 else f"{h:.0f}",
                    (bar.get_x() + bar.get_width() / 2, h),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), [f"workload {x}" for x in labels])
    ax.set_ylabel("time per epoch / agrad's (log)")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_title("agrad: time per training epoch relative to agrad's chain (lower is faster)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
