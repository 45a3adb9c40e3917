"""A static graph of about 10,000 scalar operations, evaluated forward and
backward many times: nanoseconds per node on every engine, and what
recording it for ``agrad.compile`` costs.

Usage: ``python benchmarks/static_graph.py [--nodes N] [--evaluations E]
[--repeat R] [--seed S] [--output DIR | --update] [--instructions REPLAYS]``.
It prints the tables and writes them to ``STATIC.md`` in DIR (default:
``build/benchmarks/`` of the checkout); ``--update`` rewrites the tracked one
in this ``benchmarks/`` folder.  A hand-written section at the end of the file
it replaces is kept.
``--instructions`` adds callgrind's count of a replay's instructions per
node, by function (valgrind and cmake needed; about ten minutes).

The graph is one Python function of straight-line code, generated from a
seeded ``random.Random``: products of two earlier values, 4-term sums written
``a + b + c + d`` (what a user writes, and what runs on every number type;
``agrad.sum`` would be one node, but floats and ``agrad.pure`` have no such
thing), softplus ``log(1 + exp(x))`` and 4-way softmax ``e1 / (e1 + e2 + e3
+ e4)`` from ``exp``.  The same source runs on every engine: it takes its
``exp`` and ``log`` (the Value class's methods, or ``math``'s) and its
parameters from the caller.  The function takes the inputs as a list of
numbers, which ``agrad.compile`` turns into leaves; the eager engines get
them as Values, so that they build the graph the compiled function replays.

Times are medians over ``--repeat`` rounds, the engines interleaved in one
process: each round times ``E / R`` compiled evaluations (``E`` = 10,000
unless told) and one sample of each slow engine.  The run fails if a
compiled replay's data or gradients differ from eager agrad's by one bit.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import re
import site
import sys
import tempfile
from argparse import SUPPRESS
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import output
import profile_native
from measure import interleaved_medians, per_call_seconds
from report import environment, fmt_ratio, markdown_table, text_table

import agrad
import agrad.pure
from agrad import _core

HERE = Path(__file__).resolve().parent
PROG = "python benchmarks/static_graph.py"
OUTPUT = "STATIC.md"

KINDS = ("product", "sum4", "softplus", "softmax")
# each kind's share of the operations drawn (the sinks' final sum adds sums),
# and how many operations as written one of it is
SHARES = (0.3, 0.2, 0.25, 0.25)
OPERATIONS = (1, 3, 3, 11)
# Every value of the graph stays in [LOW, HIGH] for any inputs in DOMAIN (the
# generator tracks each value's interval and draws again when an operation
# would leave it): no overflow, no underflow, and no subnormal numbers, whose
# arithmetic is tens of times slower on x86 and would time the FPU, not agrad.
DOMAIN = (0.5, 2.0)
LOW, HIGH = 1e-3, 1e3
EXP_HIGH = 20.0  # exp's argument stays below this: e**20 is far from overflow
RECENT = 32  # one operand of each operation is one of the last RECENT values: depth


@dataclass(frozen=True)
class StaticGraph:
    """The generated function: Python source of ``make(ws, exp, log)``, which
    returns ``f(xs)``."""

    source: str
    inputs: int  # numbers in f's argument
    params: int  # Values f reads from ws
    written: Counter[str]  # operations as the source writes them, by kind

    def function(self, params: Sequence[Any], exp: Callable, log: Callable) -> Callable:
        namespace: dict[str, Any] = {}
        exec(compile(self.source, "<static graph>", "exec"), namespace)
        return namespace["make"](list(params), exp, log)


def interval_exp(interval: tuple[float, float]) -> tuple[float, float]:
    return math.exp(interval[0]), math.exp(interval[1])


def generate(nodes: int, seed: int, kinds: Sequence[str] = KINDS) -> StaticGraph:
    """A graph of about `nodes` operations as written (``a / b`` one of them),
    drawing from `kinds` in their SHARES; its sinks are summed four at a
    time into one root, so that backward reaches every node."""
    rng = random.Random(seed)
    weights = [SHARES[KINDS.index(k)] / OPERATIONS[KINDS.index(k)] for k in kinds]
    n_inputs = n_params = max(2, nodes // 200)
    leaves = [f"x{i}" for i in range(n_inputs)] + [f"w{i}" for i in range(n_params)]
    names = list(leaves)
    bounds = [DOMAIN] * len(leaves)  # each value's interval; all are positive
    used = [True] * len(leaves)  # leaves are never sinks
    lines: list[str] = []
    written: Counter[str] = Counter()
    unused = 0  # values no operation reads yet: the sinks

    def new(interval: tuple[float, float]) -> int:
        nonlocal unused
        names.append(f"v{len(names) - len(leaves)}")
        bounds.append(interval)
        used.append(False)
        unused += 1
        return len(names) - 1

    def use(i: int) -> None:
        nonlocal unused
        unused -= not used[i]
        used[i] = True

    def operands(k: int, ok: Callable[[list[tuple[float, float]]], bool]) -> list[int]:
        for _ in range(20):
            picked = [rng.randrange(max(0, len(names) - RECENT), len(names))]
            picked += [rng.randrange(len(names)) for _ in range(k - 1)]
            if ok([bounds[i] for i in picked]):
                break
        else:  # leaves lie in DOMAIN, where every kind of operation is safe
            picked = rng.sample(range(len(leaves)), k)
        for i in picked:
            use(i)
        return picked

    def inside(lo: float, hi: float) -> bool:
        return lo >= LOW and hi <= HIGH

    def sum_terms(terms: list[int]) -> int:
        lo = sum(bounds[i][0] for i in terms)
        hi = sum(bounds[i][1] for i in terms)
        out = new((lo, hi))
        lines.append(f"{names[out]} = {' + '.join(names[i] for i in terms)}")
        written["sum4"] += len(terms) - 1
        return out

    # the sinks' final sum costs one addition per sink but one
    while sum(written.values()) + unused - 1 < nodes:
        kind = rng.choices(kinds, weights)[0]
        if kind == "product":
            a, b = operands(2, lambda bs: inside(bs[0][0] * bs[1][0], bs[0][1] * bs[1][1]))
            out = new((bounds[a][0] * bounds[b][0], bounds[a][1] * bounds[b][1]))
            lines.append(f"{names[out]} = {names[a]} * {names[b]}")
            written["product"] += OPERATIONS[0]
        elif kind == "sum4":
            sum_terms(operands(4, lambda bs: sum(b[1] for b in bs) <= HIGH))
        elif kind == "softplus":
            (a,) = operands(1, lambda bs: bs[0][1] <= EXP_HIGH)
            lo, hi = (math.log(1 + e) for e in interval_exp(bounds[a]))
            out = new((lo, hi))
            lines.append(f"{names[out]} = log(1 + exp({names[a]}))")
            written["softplus"] += OPERATIONS[2]
        else:
            picked = operands(4, lambda bs: all(b[1] <= EXP_HIGH for b in bs))
            es = [interval_exp(bounds[i]) for i in picked]
            exps = [new(e) for e in es]  # read by the softmax alone: not sinks
            for e, i in zip(exps, picked, strict=True):
                lines.append(f"{names[e]} = exp({names[i]})")
                use(e)
            total = f"s{len(names)}"
            lines.append(f"{total} = {' + '.join(names[e] for e in exps)}")
            for j, e in enumerate(exps):
                # e_j / sum is increasing in e_j and decreasing in the others
                others_lo = sum(x[0] for k, x in enumerate(es) if k != j)
                others_hi = sum(x[1] for k, x in enumerate(es) if k != j)
                lo = es[j][0] / (es[j][0] + others_hi)
                hi = es[j][1] / (es[j][1] + others_lo)
                lines.append(f"{names[new((lo, hi))]} = {names[e]} / {total}")
            written["softmax"] += OPERATIONS[3]
    level = [i for i, u in enumerate(used) if not u]
    while len(level) > 1:
        for i in level:
            use(i)
        level = [sum_terms(level[i : i + 4]) for i in range(0, len(level), 4)]
    body = [
        f"{', '.join(leaves[:n_inputs])}, = xs",
        f"{', '.join(leaves[n_inputs:])}, = ws",
        *lines,
        f"return {names[level[0]]}",
    ]
    source = "def make(ws, exp, log):\n    def f(xs):\n"
    source += "".join(f"        {line}\n" for line in body) + "    return f\n"
    return StaticGraph(source, n_inputs, n_params, written)


# ---------------------------------------------------------------------------
# The engines

SAMPLE_SECONDS = 0.02  # each sample of a slow engine lasts about this long


@dataclass(frozen=True)
class Setup:
    """The graph's function on each engine, its parameters' data, and the
    numbers it is evaluated on."""

    graph: StaticGraph
    param_data: list[float]
    recorded_on: list[float]  # what the compiled function is recorded with
    xs: list[float]  # what every engine is timed and checked on

    def on(self, value_class: type) -> tuple[Callable, list]:
        """(f, its parameters) on a Value class, with parameters of its own."""
        params = [value_class(w) for w in self.param_data]
        return self.graph.function(params, value_class.exp, value_class.log), params

    def on_floats(self) -> Callable:
        return self.graph.function(self.param_data, math.exp, math.log)


def setup(graph: StaticGraph, seed: int) -> Setup:
    rng = random.Random(seed)

    def draw(n: int) -> list[float]:
        return [rng.uniform(*DOMAIN) for _ in range(n)]

    return Setup(graph, draw(graph.params), draw(graph.inputs), draw(graph.inputs))


class Disagreement(Exception):
    """Two engines gave different numbers: a bug to fix, not a timing."""


def gradients(root: Any, params: list) -> list[float]:
    for p in params:
        p.grad = 0
    root.backward()
    return [p.grad for p in params]


def compiled_replay(s: Setup) -> tuple[Callable, Any, list]:
    """(the compiled function, its result replayed on s.xs, its parameters),
    recorded on other numbers."""
    fn, params = s.on(agrad.Value)
    compiled = agrad.compile(fn)
    compiled(s.recorded_on)
    return compiled, compiled(s.xs), params


@dataclass
class Evaluations:
    """The graph evaluated once on each engine, on s.xs; the eager engines'
    inputs are Values made beforehand, so that they build the very graph the
    compiled function replays."""

    compiled: Callable
    replayed: Any
    compiled_params: list
    eager_fn: Callable
    inputs: list
    eager: Any
    eager_params: list
    eager_nodes: int  # the engine's live nodes that the eager evaluation added
    pure_fn: Callable
    pure_inputs: list
    pure: Any
    pure_params: list
    floats_fn: Callable

    @staticmethod
    def of(s: Setup) -> Evaluations:
        compiled, replayed, compiled_params = compiled_replay(s)
        eager_fn, eager_params = s.on(agrad.Value)
        inputs = [agrad.Value(x) for x in s.xs]
        gc.collect()
        before = _core._live_nodes()
        eager = eager_fn(inputs)
        eager_nodes = _core._live_nodes() - before
        pure_fn, pure_params = s.on(agrad.pure.Value)
        pure_inputs = [agrad.pure.Value(x) for x in s.xs]
        pure = pure_fn(pure_inputs)
        return Evaluations(
            compiled, replayed, compiled_params, eager_fn, inputs, eager, eager_params,
            eager_nodes, pure_fn, pure_inputs, pure, pure_params, s.on_floats(),
        )  # fmt: skip


def check_agreement(s: Setup) -> dict[str, int]:
    """Compare a replay (recorded on other numbers) with eager agrad, bit for
    bit, and eager agrad with agrad.pure and plain floats; raise Disagreement
    if they differ.  Returns the graph's node counts."""
    e = Evaluations.of(s)
    floats = e.floats_fn(s.xs)
    grads = gradients(e.eager, e.eager_params)
    if (e.replayed.data, gradients(e.replayed, e.compiled_params)) != (e.eager.data, grads):
        raise Disagreement("agrad.compile's replay differs from eager agrad")
    if (e.pure.data, gradients(e.pure, e.pure_params)) != (e.eager.data, grads):
        raise Disagreement("agrad.pure differs from agrad")
    if not math.isclose(floats, e.eager.data, rel_tol=1e-12):
        raise Disagreement(f"plain floats give {floats!r}, agrad {e.eager.data!r}")
    operations = e.compiled.program(s.xs).operations
    if e.eager_nodes != operations:
        raise Disagreement(f"eager agrad made {e.eager_nodes} nodes, the replay {operations}")
    leaves = {id(v) for v in e.pure_inputs + e.pure_params}
    pure_nodes = sum(id(v) not in leaves for v in agrad.pure.topological_order(e.pure))
    return {"agrad": operations, "pure": pure_nodes}


def samplers(s: Setup, batch: int) -> dict[str, Callable[[], float]]:
    """Samplers of seconds per evaluation: the compiled function `batch`
    times a sample, the others as often as fill SAMPLE_SECONDS."""
    e = Evaluations.of(s)

    def slow(fn: Callable[[], object]) -> Callable[[], float]:
        return per_call_seconds(fn, seconds=SAMPLE_SECONDS)

    return {
        "compiled forward": per_call_seconds(lambda: e.compiled(s.xs), number=batch),
        "compiled backward": per_call_seconds(e.replayed.backward, number=batch),
        "agrad forward": slow(lambda: e.eager_fn(e.inputs)),
        "agrad backward": slow(e.eager.backward),
        # a fresh compiled function records at its first call
        "recording": slow(lambda: agrad.compile(e.eager_fn)(s.xs)),
        "pure forward": slow(lambda: e.pure_fn(e.pure_inputs)),
        "pure backward": slow(e.pure.backward),
        "floats forward": slow(lambda: e.floats_fn(s.xs)),
    }


def replay(s: Setup) -> dict[str, Callable[[], object]]:
    """One compiled evaluation's phases, recorded on other numbers: the call
    that replays forward, and backward on its result."""
    compiled, replayed, _ = compiled_replay(s)
    return {"forward": lambda: compiled(s.xs), "backward": replayed.backward}


def kind_samplers(s: Setup, batch: int) -> dict[str, Callable[[], float]]:
    return {phase: per_call_seconds(fn, number=batch) for phase, fn in replay(s).items()}


# ---------------------------------------------------------------------------
# Instructions (valgrind's callgrind), per node of a replay

PHASES = ("forward", "backward")


def graph_of(kind: str, nodes: int, seed: int) -> Setup:
    """The mixed graph, or the graph of one kind of operation."""
    return setup(generate(nodes, seed, KINDS if kind == "mixed" else (kind,)), seed)


def child(kind: str, phase: str, count: int, nodes: int, seed: int) -> None:
    """What callgrind runs: `count` replays of one phase, after one of each."""
    phases = replay(graph_of(kind, nodes, seed))
    for fn in phases.values():
        fn()
    # a collection in one run and not the other would count as the replays'
    gc.disable()
    for _ in range(count):
        phases[phase]()


# libstdc++'s inline code (a vector's indexing) is listed under its header and
# the agrad function it was inlined into: it counts for that function
LIBSTDCXX = re.compile(r"^/usr/include/c\+\+/[^:]*:(?=.*(agrad|anonymous namespace))")


def where(location: str) -> str:
    """An agrad function (of the build with symbols), or the part of the
    system the location's object is."""
    location = LIBSTDCXX.sub("cpp/inlined.hpp:", location)
    return profile_native.core_function(location) or profile_native.object_group(location)


def instructions(
    kinds: Sequence[str], counts: dict[str, int], args: argparse.Namespace
) -> dict[tuple[str, str], dict[str, float]]:
    """Instructions per node of each phase of a replay, by function: the
    difference of two callgrind runs, of 0 and `args.instructions` replays
    after one of each phase (as profile_native.py counts, with its build of
    agrad with symbols)."""
    me = str(Path(__file__).resolve())
    n = args.instructions
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # the build with symbols first; site-packages after it for numpy
        path = [str(profile_native.debug_package(workdir)), *site.getsitepackages()]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *path])}

        def by_function(rows: list[tuple[int, str]]) -> dict[str, int]:
            found: dict[str, int] = Counter()
            for count, location in rows:
                found[where(location)] += count
            return dict(found)

        for kind in kinds:
            for phase in PHASES:
                common = ["--nodes", str(args.nodes), "--seed", str(args.seed), "--child"]
                per = profile_native.per_unit(
                    [me, *common, kind, phase, "0"],
                    [me, *common, kind, phase, str(n)],
                    n * counts[kind],
                    workdir,
                    by_function,
                    env,
                )
                result[kind, phase] = per
                print(f"  {kind} {phase}: {sum(per.values()):.0f} per node", file=sys.stderr)
    return result


# ---------------------------------------------------------------------------
# The report

ENGINE_ROWS = (("agrad compiled (replay)", "compiled"), ("agrad eager", "agrad"))
ENGINE_ROWS += (("agrad.pure", "pure"), ("plain floats", "floats"))
INSTRUCTION_COLUMNS = 7
ANALYSIS = "## What bounds a replay"
HEADER = ["engine", "forward", "backward", "total", "total / compiled"]
KIND_HEADER = ["graph of", "operations", "of its kind", "forward", "backward", "total"]


def ns(seconds: float, nodes: int) -> str:
    return f"{seconds / nodes * 1e9:.1f}"


def engine_rows(t: dict[str, float], nodes: int) -> list[list[str]]:
    rows = []
    compiled = t["compiled forward"] + t["compiled backward"]
    for title, key in ENGINE_ROWS:
        forward, backward = t[f"{key} forward"], t.get(f"{key} backward")
        if backward is None:  # floats: no gradients
            rows.append([title, ns(forward, nodes), "-", "-", fmt_ratio(forward / compiled)])
            continue
        total = forward + backward
        rows.append(
            [
                title,
                *(ns(t, nodes) for t in (forward, backward, total)),
                fmt_ratio(total / compiled),
            ]
        )
    return rows


def kind_rows(kinds: dict[str, tuple[StaticGraph, int, dict[str, float]]]) -> list[list[str]]:
    rows = []
    for kind, (graph, nodes, t) in kinds.items():
        share = graph.written[kind] / sum(graph.written.values())
        rows.append(
            [kind, str(nodes), f"{share:.0%}"]
            + [ns(x, nodes) for x in (t["forward"], t["backward"], t["forward"] + t["backward"])]
        )
    return rows


def describe(graph: StaticGraph, counts: dict[str, int]) -> str:
    written = sum(graph.written.values())
    mix = ", ".join(f"{graph.written[k]} {k}" for k in KINDS)
    return (
        f"The graph: {written} operations as its source writes them ({mix}; a 4-term sum "
        f"is 3 additions, softplus 3 operations, a softmax 11), over {graph.inputs} inputs "
        f"and {graph.params} parameters. agrad's engine makes {counts['agrad']} nodes for "
        "it (a division is two, a power and a product, as micrograd's), the nodes a replay "
        f"recomputes; agrad.pure makes {counts['pure']} (its constants are nodes too). "
        f"Every time per node here is divided by {counts['agrad']}."
    )


def render(
    args: argparse.Namespace,
    graph: StaticGraph,
    counts: dict[str, int],
    times: dict[str, float],
    kinds: dict[str, tuple[StaticGraph, int, dict[str, float]]],
    counted: dict[tuple[str, str], dict[str, float]] | None,
    markdown: bool,
) -> str:
    table = markdown_table if markdown else text_table
    nodes = counts["agrad"]
    recording = times["recording"] / times["agrad forward"]
    parts = [
        "Nanoseconds per node, one evaluation of the graph:",
        table(HEADER, engine_rows(times, nodes)),
        f"Recording (the compiled function's first call): {times['recording'] * 1e3:.2f} ms, "
        f"{recording:.2f}x one eager evaluation ({times['agrad forward'] * 1e3:.2f} ms).",
        describe(graph, counts),
        "The compiled engine on graphs of one kind of operation (and the sums that join "
        "their sinks into one root), nanoseconds per node:",
        table(KIND_HEADER, kind_rows(kinds)),
    ]
    if counted is not None:
        header, rows = instruction_table(counted)
        parts += [
            "Instructions per node of a replay (valgrind's callgrind, the difference of "
            f"runs of 0 and {args.instructions} replays after one of each phase; agrad "
            "rebuilt with symbols, as `profile_native.py` does; inlined code counts for "
            "the function it was inlined into), by where they execute:",
            table(header, rows),
        ]
    if markdown:
        env = "\n".join(f"- {k}: {v}" for k, v in environment())
        command = " ".join([PROG, *args.argv])
        parts = [
            "# A static graph, forward and backward",
            f"Written by `{command}`: medians of {args.repeat} rounds in one process, the "
            "engines interleaved; each round times "
            f"{args.evaluations // args.repeat} compiled evaluations (forward and backward) "
            "and about "
            f"{SAMPLE_SECONDS * 1e3:.0f} ms of each other engine. The machine has 2 cores "
            "shared with other work: read the ratios, the absolute times are context. "
            "Replays and eager agrad agree bit for bit (checked by the run), agrad.pure too.",
            env,
            *parts,
        ]
    return "\n\n".join(parts) + "\n"


def instruction_table(
    counted: dict[tuple[str, str], dict[str, float]],
) -> tuple[list[str], list[list[str]]]:
    """Columns: the places that execute the most instructions, then the rest."""
    totals: Counter[str] = Counter()
    for per in counted.values():
        totals.update(per)
    top = [name for name, _ in totals.most_common(INSTRUCTION_COLUMNS)]
    header = ["graph, phase", "all", *(f"`{name}`" for name in top), "other"]
    rows = []
    for (kind, phase), per in counted.items():
        rest = sum(v for k, v in per.items() if k not in top)
        cells = [f"{sum(per.values()):.0f}", *(f"{per.get(k, 0):.0f}" for k in top)]
        rows.append([f"{kind}, {phase}", *cells, f"{rest:.0f}"])
    return header, rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Exit status: 0, or 1 when a replay differs from eager agrad.",
    )
    parser.add_argument("--nodes", type=int, default=10_000, help="operations, about")
    parser.add_argument(
        "--evaluations", type=int, default=10_000, help="compiled evaluations timed"
    )
    parser.add_argument(
        "--repeat", type=int, default=20, help="rounds: samples of each slow engine"
    )
    parser.add_argument("--seed", type=int, default=10, help="seed of the graph's generator")
    output.add_options(parser, [OUTPUT])
    parser.add_argument(
        "--instructions",
        type=int,
        metavar="REPLAYS",
        help="also count a replay's instructions per node with callgrind, over this many "
        "replays (needs valgrind and cmake; 10 is plenty: counts repeat exactly)",
    )
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PHASE", "COUNT"), help=SUPPRESS)
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.repeat < 1 or args.evaluations < args.repeat:
        parser.error("--nodes and --repeat must be positive, --evaluations at least --repeat")
    if args.instructions is not None and args.instructions < 1:
        parser.error("--instructions must be at least 1")
    args.argv = sys.argv[1:] if argv is None else argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        kind, phase, count = args.child
        child(kind, phase, int(count), args.nodes, args.seed)
        return 0
    s = graph_of("mixed", args.nodes, args.seed)
    graph = s.graph
    try:
        counts = check_agreement(s)
        kind_setups = {k: graph_of(k, args.nodes, args.seed) for k in KINDS}
        kind_counts = {k: check_agreement(ks)["agrad"] for k, ks in kind_setups.items()}
    except Disagreement as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    batch = args.evaluations // args.repeat
    times = interleaved_medians(samplers(s, batch), args.repeat)
    kinds = {}
    for k, ks in kind_setups.items():
        # a quarter of the evaluations each: the four take what the mixed graph took
        kind_times = interleaved_medians(kind_samplers(ks, max(1, batch // 4)), args.repeat)
        kinds[k] = (ks.graph, kind_counts[k], kind_times)
    counted = None
    if args.instructions:
        counted = instructions(["mixed", *KINDS], {"mixed": counts["agrad"], **kind_counts}, args)
    print(render(args, graph, counts, times, kinds, counted, markdown=False))
    text = render(args, graph, counts, times, kinds, counted, markdown=True)
    written = output.folder(args) / OUTPUT
    # the reading of the numbers is written by hand, below its heading: kept
    old = written.read_text(encoding="utf-8") if written.exists() else ""
    if ANALYSIS in old:
        text += "\n" + old[old.index(ANALYSIS) :]
    written.write_text(text, encoding="utf-8")
    print(f"wrote {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
