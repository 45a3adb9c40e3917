"""agrad beside what it is measured against: a hand-written C tape
interpreter (the floor for a scalar autograd), NumPy with gradients written
by hand, and ``jax.jit``.

Three workloads, each timed the way a user writes it (the graph built or the
step taken, with its optimizer update, the loss read back as a float):

* the "Fastest Autograd in the West" graph: 100 inputs, then operation i by
  i mod 4 appends softplus of n[-10], the sum of n[-30:-10:5], n[-20] *
  n[-10], or the 4 outputs of a softmax of n[-4:] (written without the max
  shift); forward, then backward from the last node.  The C floor is
  ``tape_floor.c``, built here with the system compiler (``$CC``, else
  ``cc``) at ``-O3`` and no fast-math, and called through ctypes; agrad builds
  the same graph eagerly, and through ``agrad.compile``;
* the chapter's full-batch step: the univariate model on 1000 points (the
  suite's workload 2), the book's code on agrad, eager and compiled, beside
  NumPy and ``jax.jit`` (float64, one thread);
* micrograd's demo step (MLP 2-16-16-1 on 100 points, max-margin loss with
  L2, SGD): ``agrad.nn`` and micrograd's own neuron code over agrad.Value,
  eager and compiled, beside NumPy and ``jax.jit``.

Every time is the least of interleaved repetitions in one process: each
repetition times one block of calls of every implementation in turn (each
block about ``peer_block_seconds`` long), so a busy patch of a shared machine
hits all alike, and the least sample is the one it disturbed least.  The
peers run on one thread (``single_thread.py``, imported before numpy and jax).

Before anything is timed the implementations are checked against each other:
agrad eager and compiled equal bit for bit; NumPy, jax and the C floor agree
with agrad to 1e-12 relative (their sums run in another order, and the C
floor divides where agrad, as micrograd, multiplies by ``x**-1``).

Run alone it prints its tables: ``python benchmarks/peers.py [--quick]``;
``benchmarks/run.py`` puts them in ``RESULTS.md``.
"""

from __future__ import annotations

import single_thread  # first: the peers read their thread counts when imported

# isort: split
import argparse
import ctypes
import dataclasses
import importlib
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import micrograd_demo
import numpy as np
from measure import FULL, QUICK, Settings, interleaved_minima, per_call_seconds
from workloads import AGRAD, COMPILED, Run, workload

import agrad
from agrad import nn

HERE = Path(__file__).resolve().parent
PROG = "python benchmarks/peers.py"

# How close a peer's loss must be to agrad's, relative: the same arithmetic
# in another order of summation differs by a few units in the last place.
CLOSE = 1e-12

# The graph's inputs.  The original takes 0, 1, ..., 99, whose products grow
# to thousands: exp of them overflows a double (float32 there, where exp
# saturates, and agrad raises OverflowError as math.exp does).  k / 100 keeps
# every node's value in [0, 4] over any number of operations.
INPUTS = [k / 100 for k in range(100)]

FLOOR = "C tape interpreter (-O3)"
GRAPH_EAGER = "agrad eager"
GRAPH_COMPILED = "agrad compiled"
GRAPH_ROWS = (FLOOR, GRAPH_COMPILED, GRAPH_EAGER)

BOOK_EAGER = "agrad eager (the book's code)"
BOOK_COMPILED = "agrad compiled (the book's code)"
FUSED_COMPILED = "agrad compiled (fused sums)"
NUMPY = "NumPy, hand-written gradients"
JAX = "jax.jit (float64, one thread)"
CHAPTER_ROWS = (BOOK_EAGER, BOOK_COMPILED, FUSED_COMPILED, NUMPY, JAX)
DEMO_ROWS = (
    micrograd_demo.AGRAD_NN,
    micrograd_demo.AGRAD_NN_COMPILED,
    micrograd_demo.CHAIN,
    micrograd_demo.CHAIN_COMPILED,
    micrograd_demo.NUMPY,
    JAX,
)

# The book's model and loss as the chapter writes them (the builtin sum's
# chain of +), recorded once by agrad.compile and replayed.
BOOK_COMPILED_ENGINE = dataclasses.replace(AGRAD, compiled=True)


class Disagreement(Exception):
    """Two implementations gave different numbers: a bug, not a timing."""


# ---------------------------------------------------------------------------
# The "Fastest Autograd in the West" graph


def graph_root(inputs: Sequence[agrad.Value], operations: int) -> agrad.Value:
    """The graph on agrad.Value, as tape_floor.c's comment describes it: its
    last node."""
    nodes = list(inputs)
    for op in range(operations):
        kind = op % 4
        if kind == 0:  # softplus
            nodes.append((nodes[-10].exp() + 1).log())
        elif kind == 1:
            nodes.append(agrad.sum(nodes[-30:-10:5]))
        elif kind == 2:
            nodes.append(nodes[-20] * nodes[-10])
        else:  # softmax, without the max shift
            exps = [v.exp() for v in nodes[-4:]]
            total = agrad.sum(exps)
            nodes.extend(e / total for e in exps)
    return nodes[-1]


class Floor:
    """tape_floor.c, compiled into a shared library in a directory of its own
    that lives as long as this object."""

    def __init__(self, compiler: str):
        self._dir = tempfile.TemporaryDirectory(prefix="agrad-floor-")
        library = Path(self._dir.name) / "tape_floor.so"
        command = [compiler, "-O3", "-std=c99", "-shared", "-fPIC"]
        command += ["-o", str(library), str(HERE / "tape_floor.c"), "-lm"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True)
        self.compiler = version.stdout.splitlines()[0] if version.stdout else compiler
        self.command = " ".join([Path(compiler).name, *command[1:5]])
        lib = ctypes.CDLL(str(library))
        lib.tape_new.argtypes = [ctypes.c_int32, ctypes.POINTER(ctypes.c_double)]
        lib.tape_new.restype = ctypes.c_void_p
        lib.tape_run.argtypes = [ctypes.c_void_p, ctypes.c_int32]
        lib.tape_run.restype = None
        lib.tape_free.argtypes = [ctypes.c_void_p]
        lib.tape_free.restype = None
        lib.tape_nodes.argtypes = [ctypes.c_void_p]
        lib.tape_nodes.restype = ctypes.c_int32
        for name in ("tape_value", "tape_grad"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int32]
            getattr(lib, name).restype = ctypes.c_double
        self.lib = lib

    def tape(self, operations: int) -> Tape:
        inputs = (ctypes.c_double * len(INPUTS))(*INPUTS)
        handle = self.lib.tape_new(operations, inputs)
        if not handle:
            raise MemoryError(f"the C floor's tape of {operations} operations")
        return Tape(self.lib, handle)


class Tape:
    """One graph on the C floor."""

    def __init__(self, lib: ctypes.CDLL, handle: int):
        self.lib, self.handle = lib, handle

    def __del__(self) -> None:
        self.lib.tape_free(self.handle)

    def run(self, count: int = 1) -> None:
        self.lib.tape_run(self.handle, count)

    def root(self) -> float:
        return self.lib.tape_value(self.handle, self.lib.tape_nodes(self.handle) - 1)

    def input_grads(self) -> list[float]:
        return [self.lib.tape_grad(self.handle, k) for k in range(len(INPUTS))]


def find_compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def relative_difference(a: float, b: float) -> float:
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def bits(values: Sequence[float]) -> list[str]:
    return [float(v).hex() for v in values]


@dataclass
class GraphResult:
    operations: int
    nodes: int  # agrad's nodes for the graph (what a replay recomputes)
    seconds: dict[str, float]  # one evaluation, forward and backward, by row
    eager_equals_compiled: bool  # data and the inputs' gradients, bit for bit
    root_difference: float | None  # agrad's last node against the C floor's, relative
    grad_difference: float | None  # the largest over the inputs' gradients


@dataclass
class BuiltGraph:
    """The graph built eagerly and through agrad.compile (recorded, then
    replayed once), backward on both."""

    eager: agrad.Value
    eager_inputs: list[agrad.Value]
    compiled: Any  # the compiled function
    replayed: agrad.Value
    compiled_inputs: list[agrad.Value]
    same: bool  # data and the inputs' gradients, bit for bit


def build_graph(operations: int) -> BuiltGraph:
    eager_inputs = [agrad.Value(x) for x in INPUTS]
    eager = graph_root(eager_inputs, operations)
    eager.backward()
    compiled_inputs = [agrad.Value(x) for x in INPUTS]
    compiled = agrad.compile(lambda: graph_root(compiled_inputs, operations))
    compiled()  # records
    replayed = compiled()
    for v in compiled_inputs:
        v.grad = 0
    replayed.backward()
    same = bits([replayed.data]) == bits([eager.data]) and bits(
        [v.grad for v in compiled_inputs]
    ) == bits([v.grad for v in eager_inputs])
    return BuiltGraph(eager, eager_inputs, compiled, replayed, compiled_inputs, same)


def measure_graph(
    operations: int, floor: Floor | None, settings: Settings, repeats: int
) -> GraphResult:
    built = build_graph(operations)
    eager_inputs, compiled, same = built.eager_inputs, built.compiled, built.same
    program = compiled.program()
    nodes = program.operations if program is not None else 0
    root_difference = grad_difference = None
    tape = None
    if floor is not None:
        tape = floor.tape(operations)
        tape.run()
        root_difference = relative_difference(tape.root(), built.eager.data)
        grad_difference = max(
            relative_difference(c, v.grad)
            for c, v in zip(tape.input_grads(), eager_inputs, strict=True)
        )
    del built  # the eager graph's memory back before the timing

    def evaluate_eager() -> None:
        graph_root(eager_inputs, operations).backward()

    def evaluate_compiled() -> None:
        compiled().backward()

    samplers: dict[str, Callable[[], float]] = {}
    block = settings.peer_block_seconds
    if tape is not None:
        samplers[FLOOR] = per_call_seconds(tape.run, seconds=block)
    samplers[GRAPH_COMPILED] = per_call_seconds(evaluate_compiled, seconds=block)
    samplers[GRAPH_EAGER] = per_call_seconds(evaluate_eager, seconds=block)
    seconds = interleaved_minima(samplers, repeats)
    return GraphResult(operations, nodes, seconds, same, root_difference, grad_difference)


# ---------------------------------------------------------------------------
# jax, when installed


def import_jax() -> Any | None:
    """jax with float64 on, or None when it is not installed."""
    if importlib.util.find_spec("jax") is None:
        return None
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def jax_sgd_step(
    jax: Any, loss: Callable, params: Any, data: tuple, lr: float
) -> Callable[[], float]:
    """A training step with jax.jit as its documentation writes one: the loss
    and its gradient by value_and_grad, the SGD update inside the compiled
    function, the new parameters handed back.  Returns the step; it reads the
    loss back as a float, as agrad's steps do."""

    @jax.jit
    def update(params, *data):
        value, grads = jax.value_and_grad(loss)(params, *data)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), value

    state = [params]

    def step() -> float:
        state[0], value = update(state[0], *data)
        return float(value)

    return step


# ---------------------------------------------------------------------------
# The chapter's full-batch step


class NumpyLinReg:
    """The chapter's univariate model, its mean squared error and full-batch
    SGD step on arrays, the gradients written by hand."""

    def __init__(self, w: float, b: float, xs: Sequence[float], ys: Sequence[float], lr: float):
        self.w, self.b, self.lr = w, b, lr
        self.x, self.y = np.array(xs, dtype=float), np.array(ys, dtype=float)

    def step(self) -> float:
        residuals = self.y - (self.w * self.x + self.b)
        n = len(residuals)
        loss = float(residuals @ residuals) / n
        # J = mean((y - w x - b)^2): dJ/dw = -2 mean(r x), dJ/db = -2 mean(r)
        grad_w = -2.0 * float(residuals @ self.x) / n
        grad_b = -2.0 * float(residuals.sum()) / n
        self.w -= self.lr * grad_w
        self.b -= self.lr * grad_b
        return loss


def chapter_steps(jax: Any | None) -> dict[str, Callable[[], float]]:
    """One full-batch step of workload 2 on each implementation, all from
    the same starting weights."""
    full_batch = workload(2)
    data = full_batch.data()
    runs = {
        BOOK_EAGER: Run(full_batch, AGRAD, data),
        BOOK_COMPILED: Run(full_batch, BOOK_COMPILED_ENGINE, data),
        FUSED_COMPILED: Run(full_batch, COMPILED, data),
    }
    w, b = (p.data for p in runs[BOOK_EAGER].params)
    xs, ys = data

    def run_step(run: Run) -> Callable[[], float]:
        def step() -> float:
            run.epochs(1)
            return run.losses.pop()  # not kept: millions of steps are timed

        return step

    steps = {name: run_step(run) for name, run in runs.items()}
    steps[NUMPY] = NumpyLinReg(w, b, xs, ys, full_batch.lr).step
    if jax is not None:
        jnp = jax.numpy

        def loss(params, x, y):
            w, b = params
            return jnp.sum((y - (w * x + b)) ** 2) / x.shape[0]

        params = (jnp.asarray(w), jnp.asarray(b))
        steps[JAX] = jax_sgd_step(
            jax, loss, params, (jnp.asarray(xs), jnp.asarray(ys)), full_batch.lr
        )
    return steps


# ---------------------------------------------------------------------------
# micrograd's demo step


def demo_steps(jax: Any | None) -> dict[str, Callable[[], float]]:
    X, y = micrograd_demo.demo_data()
    steps = micrograd_demo.make_steps(X, y, micrograd=False)
    if jax is not None:
        jnp = jax.numpy
        random.seed(1337)  # the other implementations' weights
        start = micrograd_demo.NumpyMLP(nn.MLP(2, [16, 16, 1]))
        params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in start.layers]

        def loss(params, X, y):
            activations = X
            for i, (W, b) in enumerate(params):
                z = activations @ W.T + b
                activations = jnp.maximum(z, 0.0) if i < len(params) - 1 else z
            margins = jnp.maximum(1.0 - y * activations[:, 0], 0.0)
            squares = sum(jnp.sum(W * W) + jnp.sum(b * b) for W, b in params)
            return jnp.sum(margins) * (1.0 / y.shape[0]) + 1e-4 * squares

        data = (jnp.asarray(X), jnp.asarray(y, dtype=jnp.float64))
        steps[JAX] = jax_sgd_step(jax, loss, params, data, 0.1)
    return steps


# ---------------------------------------------------------------------------
# Checks, then times


def first_steps_agree(
    steps: dict[str, Callable[[], float]],
    exact: Sequence[tuple[str, str]],
    reference: str,
    peers: Sequence[str],
) -> tuple[dict[str, bool], dict[str, float]]:
    """Three steps of each implementation from the same weights (the first
    records, the rest replay): the pairs in `exact` must give the same losses
    bit for bit, the `peers` (those measured) the reference's to CLOSE.
    Returns (check: whether it held, peer: its largest relative difference
    from the reference)."""
    losses = {name: [step() for _ in range(3)] for name, step in steps.items()}
    checks = {f"{a} == {b}": bits(losses[a]) == bits(losses[b]) for a, b in exact}
    differences = {
        name: max(
            relative_difference(x, y) for x, y in zip(losses[name], losses[reference], strict=True)
        )
        for name in peers
        if name in losses
    }
    return checks, differences


@dataclass
class PeersResult:
    graphs: list[GraphResult]
    chapter: dict[str, float]  # seconds per step, by row
    demo: dict[str, float]
    checks: dict[str, bool]  # what must hold exactly: whether it did
    differences: dict[str, float]  # what must agree to CLOSE: the relative difference
    missing: list[str] = field(default_factory=list)  # why a row is not measured
    compiler: str | None = None  # the C floor's compiler, as --version names it
    compile_command: str | None = None
    threads: dict[str, str] = field(default_factory=single_thread.settings)
    repeats: int = 0
    block_seconds: float = 0.0
    jax_version: str | None = None

    def all_agree(self) -> bool:
        return all(self.checks.values()) and all(d <= CLOSE for d in self.differences.values())


def measure(settings: Settings, log: Callable[[str], None]) -> PeersResult:
    repeats = max(settings.repeats, 3)
    missing = []
    compiler = find_compiler()
    floor = None
    if compiler is None:
        missing.append("no C compiler (cc, or $CC): the C floor is not measured")
    else:
        try:
            floor = Floor(compiler)
        except (OSError, subprocess.CalledProcessError) as error:
            detail = getattr(error, "stderr", "") or error
            missing.append(f"the C floor did not build: {detail}")
    jax = import_jax()
    if jax is None:
        missing.append("jax is not installed (pip install 'agrad[bench]'): its rows are skipped")
    for line in missing:
        log(line)
    checks: dict[str, bool] = {}
    differences: dict[str, float] = {}
    graphs = []
    for operations in settings.graph_operations:
        graph = measure_graph(operations, floor, settings, repeats)
        graphs.append(graph)
        what = f"graph of {operations} operations"
        checks[f"{what}: {GRAPH_EAGER} == {GRAPH_COMPILED}"] = graph.eager_equals_compiled
        if graph.root_difference is not None and graph.grad_difference is not None:
            differences[f"{what}: last node, {FLOOR} against agrad"] = graph.root_difference
            # reported, not held to CLOSE: a gradient through thousands of
            # operations carries each one's rounding
            log(
                f"  {what}: the inputs' gradients differ from the C floor's by at most "
                f"{graph.grad_difference:.1e} relative"
            )
    chapter = chapter_steps(jax)
    exact = [(BOOK_COMPILED, BOOK_EAGER), (FUSED_COMPILED, BOOK_EAGER)]
    held, apart = first_steps_agree(chapter, exact, BOOK_EAGER, [NUMPY, JAX])
    checks.update({f"chapter, full batch: {k}": v for k, v in held.items()})
    differences.update({f"chapter, full batch: {k} against agrad": v for k, v in apart.items()})
    demo = demo_steps(jax)
    exact = [
        (micrograd_demo.AGRAD_NN_COMPILED, micrograd_demo.AGRAD_NN),
        (micrograd_demo.CHAIN_COMPILED, micrograd_demo.CHAIN),
    ]
    peers = [micrograd_demo.CHAIN, micrograd_demo.NUMPY, JAX]
    held, apart = first_steps_agree(demo, exact, micrograd_demo.AGRAD_NN, peers)
    checks.update({f"micrograd's demo: {k}": v for k, v in held.items()})
    differences.update({f"micrograd's demo: {k} against agrad.nn": v for k, v in apart.items()})
    block = settings.peer_block_seconds
    samplers = {
        ("chapter", name): per_call_seconds(step, seconds=block) for name, step in chapter.items()
    }
    samplers.update(
        {("demo", name): per_call_seconds(step, seconds=block) for name, step in demo.items()}
    )
    seconds = interleaved_minima(samplers, repeats)
    return PeersResult(
        graphs,
        {name: s for (part, name), s in seconds.items() if part == "chapter"},
        {name: s for (part, name), s in seconds.items() if part == "demo"},
        checks,
        differences,
        missing,
        floor.compiler if floor else None,
        floor.command if floor else None,
        repeats=repeats,
        block_seconds=block,
        jax_version=jax.__version__ if jax is not None else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 when the implementations agree, 1 when they differ.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small graphs and short blocks: seconds, rough times"
    )
    args = parser.parse_args(argv)
    # report imports this module for its names: imported here, not at the top
    import report

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = measure(QUICK if args.quick else FULL, log)
    print(report.peers_text(result))
    return 0 if result.all_agree() else 1


if __name__ == "__main__":
    sys.exit(main())
