"""agrad's benchmark suite: the chapter's workloads on every engine.

The chapter's model (``LinReg``) and its training step are written once here,
as the book writes them, and run unchanged on four number types:

* ``agrad.Value`` (the compiled engine), and the same model written with the
  fused ``agrad.dot`` / ``agrad.sum`` ("native fused");
* ``agrad.pure.Value`` (the pure-Python engine);
* PyTorch scalar tensors (float64, ``requires_grad=True``), if torch is
  installed;
* plain floats with no gradients: the same Python loop at zero autograd
  cost, the floor for any drop-in ``Value``.

Every figure is the median over repeats, engines interleaved in one process,
and is reported as a ratio to the native engine: these machines are noisy and
shared, so absolute times are context only.  A figure is the time of one
epoch: the graph build, ``backward`` and the parameter update.

Run ``python -m agrad.bench`` (or ``python -m agrad bench``); ``--quick``
runs everything small enough for CI, ``--output DIR`` says where
``RESULTS.md`` and ``results.png`` go (default: ``benchmarks/`` of the
repository).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import math
import os
import platform
import random
import statistics
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agrad
import agrad.pure
from agrad import _core

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks"
PROFILE_FILE = "PROFILE.md"  # written by benchmarks/profile_native.py, quoted in RESULTS.md


# ---------------------------------------------------------------------------
# The chapter's model, written once for every number type.  `number` makes a
# parameter from a float: agrad.Value, agrad.pure.Value, a torch tensor, float.


class LinReg:
    """The chapter's univariate model, y = w*x + b, with its squared-error loss."""

    def __init__(self, number: Callable[[float], Any], rng: random.Random):
        self.w = number(rng.uniform(-1, 1))
        self.b = number(0.0)

    def __call__(self, x):
        return self.w * x + self.b

    def parameters(self):
        return [self.w, self.b]

    def loss(self, xs, ys):
        yhats = [self(x) for x in xs]
        return sum([(y - yhat) ** 2 for y, yhat in zip(ys, yhats)])  # noqa: B905 - the book's code

    def batch_loss(self, xs, ys, m, rng: random.Random):
        indices = rng.sample(range(len(xs)), m)
        batch_xs = [xs[idx] for idx in indices]
        batch_ys = [ys[idx] for idx in indices]
        return self.loss(batch_xs, batch_ys)


class MultiLinReg(LinReg):
    """The chapter's multivariate model: a weight per feature, and a bias."""

    def __init__(self, n_inputs: int, number: Callable[[float], Any], rng: random.Random):
        self.weights = [number(rng.uniform(-1, 1)) for _ in range(n_inputs)]
        self.b = number(0.0)

    def __call__(self, x):
        return sum(w * xi for w, xi in zip(self.weights, x)) + self.b  # noqa: B905 - the book's

    def parameters(self):
        return self.weights + [self.b]  # noqa: RUF005 - the book's code


class FusedLinReg(LinReg):
    """LinReg with the loss summed by one fused ``agrad.sum`` node."""

    def loss(self, xs, ys):
        yhats = [self(x) for x in xs]
        return agrad.sum([(y - yhat) ** 2 for y, yhat in zip(ys, yhats, strict=True)])


class FusedMultiLinReg(MultiLinReg):
    """MultiLinReg with ``agrad.dot`` for the prediction and ``agrad.sum`` for the loss."""

    def __call__(self, x):
        return agrad.dot(self.weights, x) + self.b

    def loss(self, xs, ys):
        yhats = [self(x) for x in xs]
        return agrad.sum([(y - yhat) ** 2 for y, yhat in zip(ys, yhats, strict=True)])


def autograd_step(loss, params, lr: float) -> None:
    """The chapter's train loop body, for agrad's engines."""
    for p in params:
        p.grad = 0
    loss.backward()
    for p in params:
        p.data -= lr * p.grad


def float_step(loss, params, lr: float) -> None:
    """Plain floats have no gradients: the loss is built, nothing is learned."""


def autograd_loss_value(loss) -> float:
    return loss.data


def float_loss_value(loss) -> float:
    return loss


@dataclass(frozen=True)
class Engine:
    key: str
    title: str
    number: Callable[[float], Any]
    step: Callable[[Any, list, float], None]
    loss_value: Callable[[Any], float]
    fused: bool = False


NATIVE = Engine("native", "agrad (native)", agrad.Value, autograd_step, autograd_loss_value)
FUSED = Engine("fused", "native fused", agrad.Value, autograd_step, autograd_loss_value, fused=True)
PURE = Engine("pure", "agrad.pure", agrad.pure.Value, autograd_step, autograd_loss_value)
FLOATS = Engine("floats", "plain floats", float, float_step, float_loss_value)


def torch_engine() -> Engine | None:
    """PyTorch scalar tensors as an engine, or None if torch is not installed.

    torch is imported here, by name, so that importing this module (as the
    profiler does, under valgrind) and type checking need no torch."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    torch.set_num_threads(1)  # scalar ops: threads only add overhead, and the machine is shared

    def number(x: float):
        return torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def step(loss, params, lr: float) -> None:
        # the chapter's step in torch's idiom: grads are tensors or None
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad

    def loss_value(loss) -> float:
        return loss.item()

    return Engine("torch", "torch scalars", number, step, loss_value)


def available_engines() -> list[Engine]:
    torch = torch_engine()
    return [FLOATS, NATIVE, FUSED, PURE] + ([torch] if torch else [])


# ---------------------------------------------------------------------------
# The workloads


def univariate_data(n: int, slope: float, intercept: float, noise: float):
    """The chapter's synthetic data, drawn as the book draws it (seed 42)."""
    rng = random.Random(42)
    xs = [rng.uniform(-5, 5) if n == 5 else rng.uniform(-10, 10) for _ in range(n)]
    ys = [slope * x + intercept + rng.gauss(0, noise) for x in xs]
    return xs, ys


def book_five_points():
    return univariate_data(5, 2, -1, 4)


def book_thousand_points():
    return univariate_data(1000, 2, 1, 5)


def book_three_features():
    rng = random.Random(42)
    X = [[rng.uniform(-10, 10) for _ in range(3)] for _ in range(1000)]
    ys = [2 * x[0] + 3 * x[1] - x[2] + 1 + rng.gauss(0, 5) for x in X]
    return X, ys


def body_fat_normalised():
    """The chapter's body-fat study: 14 features normalised as the book does."""
    from agrad.datasets import load_body_fat  # imports pandas: only when asked

    df = load_body_fat()
    ys = df.iloc[:, 0].tolist()
    X_arr = df.iloc[:, 1:].to_numpy(dtype=float)
    X_norm = ((X_arr - X_arr.mean(axis=0)) / X_arr.std(axis=0)).tolist()
    return X_norm, ys


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    data: Callable[[], tuple[list, list]]
    n_inputs: int | None  # None: the univariate model
    batch: int | None  # None: full batch
    lr: float
    fused: bool  # also run the fused native model


# Learning rates: the book's where its loss stays finite on the sum of squared
# errors over tens of thousands of epochs (the full suite runs that many);
# full batches and wider mini-batches need a smaller step or the weights
# overflow.  The time of an epoch does not depend on the rate.
WORKLOADS = [
    Workload(
        "w1", "1: univariate, 5 points, full batch", book_five_points, None, None, 0.01, False
    ),
    Workload(
        "w2", "2: univariate, 1000 points, full batch", book_thousand_points, None, None, 1e-5, True
    ),
    Workload(
        "w3", "3: univariate, 1000 points, batch 10", book_thousand_points, None, 10, 1e-3, False
    ),
    Workload("w4", "4: 3 features, 1000 points, batch 50", book_three_features, 3, 50, 1e-4, True),
    Workload(
        "w5",
        "5: body fat, 14 features, 252 rows, batch 20",
        body_fat_normalised,
        14,
        20,
        1e-3,
        True,
    ),
]


class Run:
    """One engine training one workload's model: its own model, its own
    random stream (the same seed for every engine, so all see the same
    batches), and the loss of every epoch it ran."""

    def __init__(self, workload: Workload, engine: Engine, data):
        self.workload = workload
        self.engine = engine
        self.xs, self.ys = data
        self.rng = random.Random(7)
        if workload.n_inputs is None:
            model = FusedLinReg if engine.fused else LinReg
            self.model: LinReg = model(engine.number, self.rng)
        else:
            multi = FusedMultiLinReg if engine.fused else MultiLinReg
            self.model = multi(workload.n_inputs, engine.number, self.rng)
        self.params = self.model.parameters()
        self.losses: list[float] = []

    def build_loss(self):
        w = self.workload
        if w.batch is None:
            return self.model.loss(self.xs, self.ys)
        return self.model.batch_loss(self.xs, self.ys, w.batch, self.rng)

    def epochs(self, n: int) -> None:
        step, value, lr, params = (
            self.engine.step,
            self.engine.loss_value,
            self.workload.lr,
            self.params,
        )
        for _ in range(n):
            loss = self.build_loss()
            step(loss, params, lr)
            self.losses.append(value(loss))


@dataclass
class Settings:
    repeats: int
    block_seconds: float  # each timed block of epochs lasts about this long
    max_block_epochs: int
    soak_epochs: int  # the memory-flatness run of workload 4
    micro_seconds: float  # each micro-benchmark sample lasts about this long
    micro_sum_terms: int = 1000


FULL = Settings(
    repeats=9, block_seconds=0.2, max_block_epochs=20000, soak_epochs=10000, micro_seconds=0.05
)
QUICK = Settings(
    repeats=3, block_seconds=0.01, max_block_epochs=500, soak_epochs=300, micro_seconds=0.005
)


def median_epoch_seconds(runs: Sequence[Run], settings: Settings) -> dict[str, float]:
    """Median seconds per epoch of each run, timing blocks of epochs with the
    runs interleaved, so that a slow patch of the machine hits every engine."""
    block = {}
    for run in runs:  # one warm-up epoch sizes each engine's block
        gc.collect()
        t0 = time.perf_counter()
        run.epochs(1)
        elapsed = time.perf_counter() - t0
        block[run.engine.key] = max(
            1, min(settings.max_block_epochs, round(settings.block_seconds / elapsed))
        )
    samples: dict[str, list[float]] = {run.engine.key: [] for run in runs}
    for _ in range(settings.repeats):
        for run in runs:
            n = block[run.engine.key]
            gc.collect()
            t0 = time.perf_counter()
            run.epochs(n)
            samples[run.engine.key].append((time.perf_counter() - t0) / n)
    return {key: statistics.median(s) for key, s in samples.items()}


def same_losses(a: Run, b: Run) -> bool:
    """Whether two runs' losses agree bit for bit over the epochs both ran."""
    n = min(len(a.losses), len(b.losses))
    return n > 0 and all(
        x == y and type(x) is type(y) for x, y in zip(a.losses[:n], b.losses[:n], strict=True)
    )


def peak_memory(run: Run) -> tuple[int, int]:
    """(peak Python-side bytes, peak engine-arena bytes) of one epoch.

    tracemalloc sees every Python object; the native engine's arena is C++
    memory it cannot see, so that is the peak live node count times the
    node's size.  torch's own C++ allocations are seen by neither."""
    native = run.engine.key in ("native", "fused")
    gc.collect()
    nodes_before = _core._live_nodes()
    tracemalloc.start()
    try:
        loss = run.build_loss()
        nodes_peak = _core._live_nodes()
        run.engine.step(loss, run.params, run.workload.lr)
        del loss
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    engine_bytes = (nodes_peak - nodes_before) * _core._node_bytes() if native else 0
    return python_peak, engine_bytes


@dataclass
class WorkloadResult:
    workload: Workload
    seconds: dict[str, float]
    epochs: dict[str, int]
    memory: dict[str, tuple[int, int]]
    checks: dict[str, bool] = field(default_factory=dict)


def bench_workload(
    workload: Workload, engines: Sequence[Engine], settings: Settings
) -> WorkloadResult:
    data = workload.data()
    runs = [Run(workload, e, data) for e in engines if workload.fused or not e.fused]
    seconds = median_epoch_seconds(runs, settings)
    by_key = {r.engine.key: r for r in runs}
    checks = {"native == pure": same_losses(by_key["native"], by_key["pure"])}
    if "fused" in by_key:
        checks["fused == native"] = same_losses(by_key["fused"], by_key["native"])
    memory = {r.engine.key: peak_memory(r) for r in runs}
    return WorkloadResult(
        workload, seconds, {r.engine.key: len(r.losses) for r in runs}, memory, checks
    )


# ---------------------------------------------------------------------------
# Micro-benchmarks: one operation, many times


def per_call_seconds(stmt: str, namespace: dict, seconds: float) -> Callable[[], float]:
    """A sampler: each call times `stmt` for about `seconds`, per execution."""
    timer = timeit.Timer(stmt, globals=namespace)
    once = timer.timeit(1) or 1e-9
    number = max(1, round(seconds / once))

    def sample() -> float:
        return timer.timeit(number) / number

    return sample


def chain_graph(number, rng: random.Random, n_points: int):
    """The workload-2 loss graph: what backward is timed on."""
    xs, ys = book_thousand_points()
    return LinReg(number, rng).loss(xs[:n_points], ys[:n_points])


def micro_benchmarks(engines: Sequence[Engine], settings: Settings) -> dict[str, dict[str, float]]:
    """Seconds per operation: {op: {engine: s}}; `backward` is per node."""
    number_engines = [e for e in engines if not e.fused]
    samplers: dict[str, dict[str, Callable[[], float]]] = {}
    n_terms = settings.micro_sum_terms
    for e in number_engines:
        ns = {
            "a": e.number(1.5),
            "b": e.number(-0.25),
            "vs": [e.number(float(i)) for i in range(n_terms)],
        }
        ops = {
            "Value*Value": "a * b",
            "Value*float": "a * 2.5",
            "float*Value": "2.5 * a",
            "Value+Value": "a + b",
            f"sum of {n_terms}": "sum(vs)",
        }
        for op, stmt in ops.items():
            samplers.setdefault(op, {})[e.key] = per_call_seconds(stmt, ns, settings.micro_seconds)
        if e.key == "native":
            ns["fused_sum"] = agrad.sum
            samplers.setdefault(f"agrad.sum of {n_terms}", {})[e.key] = per_call_seconds(
                "fused_sum(vs)", ns, settings.micro_seconds
            )
        if e is FLOATS:
            continue
        ns["loss"] = chain_graph(e.number, random.Random(3), 1000)
        stmt = "loss.backward(retain_graph=True)" if e.key == "torch" else "loss.backward()"
        samplers.setdefault("backward per node", {})[e.key] = per_call_seconds(
            stmt, ns, settings.micro_seconds
        )
    # per node of the graph as the chapter's Value builds it, which agrad.pure
    # does node for node (the native engine keeps constants inside their parents)
    n_nodes = chapter_graph_nodes()
    samples: dict[str, dict[str, list[float]]] = {
        op: {k: [] for k in s} for op, s in samplers.items()
    }
    for _ in range(settings.repeats):
        for op, by_engine in samplers.items():
            for key, sample in by_engine.items():
                gc.collect()
                samples[op][key].append(sample())
    result = {
        op: {k: statistics.median(v) for k, v in by_engine.items()}
        for op, by_engine in samples.items()
    }
    result["backward per node"] = {k: v / n_nodes for k, v in result["backward per node"].items()}
    return result


# ---------------------------------------------------------------------------
# Memory


def rss_bytes() -> int | None:
    """The resident set size of this process now (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def chapter_graph_nodes() -> int:
    """Nodes of the workload-2 loss graph as the chapter's Value (agrad.pure) builds it."""
    return len(agrad.pure.topological_order(chain_graph(PURE.number, random.Random(3), 1000)))


def loss_graph_memory() -> dict[str, tuple[int, int]]:
    """(bytes, nodes) of the workload-2 loss graph held by its root, per engine.

    Python-side bytes are tracemalloc's; the native engine adds its arena,
    live nodes times the node size."""
    result = {}
    for engine in (NATIVE, PURE):
        gc.collect()
        nodes_before = _core._live_nodes()
        tracemalloc.start()
        try:
            loss = chain_graph(engine.number, random.Random(3), 1000)
            python_bytes = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        if engine is PURE:
            n_nodes = len(agrad.pure.topological_order(loss))
            result[engine.key] = (python_bytes, n_nodes)
        else:
            n_nodes = _core._live_nodes() - nodes_before
            result[engine.key] = (python_bytes + n_nodes * _core._node_bytes(), n_nodes)
        del loss
    return result


@dataclass
class Soak:
    epochs: int
    nodes_start: int
    nodes_end: int
    rss_start: int | None
    rss_end: int | None
    rss_peak_growth: int | None


def memory_soak(epochs: int) -> Soak:
    """Train workload 4 on the native engine for `epochs` epochs and report
    live nodes and RSS after the first and the last epoch (loss dropped)."""
    workload = next(w for w in WORKLOADS if w.key == "w4")
    run = Run(workload, NATIVE, workload.data())
    run.epochs(1)
    gc.collect()
    nodes_start, rss_start = _core._live_nodes(), rss_bytes()
    rss_samples = []
    remaining = epochs - 1
    for chunk in range(100, 0, -1):  # 100 RSS samples along the way
        n = remaining // chunk
        run.epochs(n)
        remaining -= n
        rss_samples.append(rss_bytes())
    gc.collect()
    nodes_end, rss_end = _core._live_nodes(), rss_bytes()
    growth = None
    if rss_start is not None:
        growth = max(r for r in rss_samples if r is not None) - rss_start
    return Soak(len(run.losses), nodes_start, nodes_end, rss_start, rss_end, growth)


# ---------------------------------------------------------------------------
# Where the native engine's time goes, on workload 2


def time_split(settings: Settings) -> dict[str, float]:
    """Seconds per epoch of workload 2, taken apart: the Python loop on floats
    (the interpreter), building the native graph (interpreter + binding +
    engine forward + node allocation), backward, the update, and freeing
    the graph.  Medians over interleaved repeats."""
    workload = next(w for w in WORKLOADS if w.key == "w2")
    data = workload.data()
    floats, native = Run(workload, FLOATS, data), Run(workload, NATIVE, data)
    parts: dict[str, list[float]] = {
        k: [] for k in ("floats loop", "graph build", "backward", "update", "free graph")
    }
    n = max(1, settings.repeats * 3)
    for _ in range(n):
        gc.collect()
        t0 = time.perf_counter()
        floats.build_loss()
        t1 = time.perf_counter()
        loss = native.build_loss()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        for p in native.params:
            p.data -= workload.lr * p.grad
        t4 = time.perf_counter()
        del loss
        t5 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[key].append(seconds)
    return {k: statistics.median(v) for k, v in parts.items()}


# ---------------------------------------------------------------------------
# Reporting

COLUMNS = ["floats", "native", "fused", "pure", "torch"]


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None or not math.isfinite(r) else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or den is None or den == 0 else num / den


@dataclass
class Report:
    settings_name: str
    workloads: list[WorkloadResult]
    micro: dict[str, dict[str, float]]
    graph_memory: dict[str, tuple[int, int]]
    soak: Soak
    split: dict[str, float]
    engines: list[str]

    def timing_rows(self) -> list[list[str]]:
        rows = []
        for r in self.workloads:
            s = r.seconds
            rows.append(
                [
                    r.workload.title,
                    *[fmt_time(s.get(k)) for k in COLUMNS],
                    fmt_ratio(ratio(s.get("pure"), s["native"])),
                    fmt_ratio(ratio(s["native"], s["floats"])),
                    fmt_ratio(ratio(s.get("torch"), s["native"])),
                    fmt_ratio(ratio(s["native"], s.get("fused"))),
                ]
            )
        return rows

    def micro_rows(self) -> list[list[str]]:
        rows = []
        for op, by_engine in self.micro.items():
            native = by_engine.get("native")
            rows.append(
                [
                    op,
                    *[fmt_time(by_engine.get(k)) for k in ("floats", "native", "pure", "torch")],
                    fmt_ratio(ratio(by_engine.get("pure"), native)),
                    fmt_ratio(ratio(native, by_engine.get("floats"))),
                    fmt_ratio(ratio(by_engine.get("torch"), native)),
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
                if k in ("native", "fused"):
                    text += f" + {engine_bytes / 1024:.0f} KiB arena"
                cells.append(text)
            rows.append([r.workload.title, *cells])
        return rows

    def target_notes(self) -> list[str]:
        """By how much the speed targets are missed, and what bounds them."""
        return _speed_notes(self)

    def targets(self) -> list[tuple[str, str, bool | None]]:
        """(target, measured, met) for each target of issue 4."""
        by_key = {r.workload.key: r.seconds for r in self.workloads}
        out: list[tuple[str, str, bool | None]] = []
        for key in ("w2", "w4"):
            s = by_key[key]
            r = s["pure"] / s["native"]
            # no engine can beat the loop itself: pure/floats bounds this ratio
            ceiling = (
                f"{fmt_ratio(r)} (ceiling: pure/floats = {fmt_ratio(s['pure'] / s['floats'])})"
            )
            out.append((f"workload {key[1]}: native >= 30x faster than pure", ceiling, r >= 30))
        for key in ("w2", "w4"):
            s = by_key[key]
            r = s["native"] / s["floats"]
            out.append(
                (f"workload {key[1]}: native within 3x of plain floats", fmt_ratio(r), r <= 3)
            )
        b = self.micro["backward per node"]
        r = b["pure"] / b["native"]
        needed = f"{fmt_ratio(r)} (100x needs {fmt_time(b['pure'] / 100)} per node)"
        out.append(("backward >= 100x faster per node than pure", needed, r >= 100))
        flat = self.soak.nodes_end == self.soak.nodes_start
        out.append(
            (
                f"memory flat over {self.soak.epochs} epochs of workload 4",
                f"live nodes {self.soak.nodes_start} -> {self.soak.nodes_end}",
                flat,
            )
        )
        if "torch" in self.engines:
            slower = [
                r.workload.key[1]
                for r in self.workloads
                if r.seconds["native"] >= r.seconds["torch"]
            ]
            slowest = min(r.seconds["torch"] / r.seconds["native"] for r in self.workloads)
            out.append(
                (
                    "faster than torch scalars on every workload",
                    f"min {fmt_ratio(slowest)}"
                    + (f"; slower on {', '.join(slower)}" if slower else ""),
                    not slower,
                )
            )
        else:
            out.append(("faster than torch scalars on every workload", "torch not installed", None))
        for result in self.workloads:
            for check, ok in result.checks.items():
                out.append(
                    (
                        f"workload {result.workload.key[1]}: losses {check}, bit for bit",
                        "same" if ok else "DIFFER",
                        ok,
                    )
                )
        return out


def _speed_notes(report: Report) -> list[str]:
    notes = []
    for r in report.workloads:
        if r.workload.key not in ("w2", "w4"):
            continue
        s = r.seconds
        floor_share = s["floats"] / s["native"]
        notes.append(
            f"Workload {r.workload.key[1]}: the plain-float loop is {100 * floor_share:.0f}% of "
            f"the native epoch; the autograd on top of it costs {fmt_time(s['native'] - s['floats'])}"
            f" per epoch. An autograd that cost nothing would be pure/floats = "
            f"{fmt_ratio(s['pure'] / s['floats'])} faster than pure: "
            + (
                "the 30x target is out of reach of any engine on this loop, whose own cost "
                "(batch sampling, list building, the interpreter) dominates."
                if s["pure"] / s["floats"] < 30
                else f"30x needs a native epoch of at most {fmt_time(s['pure'] / 30)}."
            )
        )
    b = report.micro["backward per node"]
    notes.append(
        f"backward: {fmt_time(b['native'])} per node of the chapter's graph against pure's "
        f"{fmt_time(b['pure'])}; 100x needs {fmt_time(b['pure'] / 100)}. Where the engine's "
        "instructions go is in the last section."
    )
    return notes


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


TIMING_HEADER = [
    "workload (time per epoch)",
    *COLUMNS,
    "pure/native",
    "native/floats",
    "torch/native",
    "fused gain",
]
MICRO_HEADER = [
    "operation",
    "floats",
    "native",
    "pure",
    "torch",
    "pure/native",
    "native/floats",
    "torch/native",
]
MEMORY_HEADER = ["workload (peak memory of one epoch)", *COLUMNS]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> list[tuple[str, str]]:
    import numpy

    return [
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        (
            "machine",
            f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        ),
        ("CPU", cpu_model()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("agrad", agrad.__version__),
        ("torch", sys.modules["torch"].__version__ if "torch" in sys.modules else "not installed"),
        ("numpy", numpy.__version__),
    ]


def render_markdown(report: Report, chart_name: str | None, profile_text: str | None) -> str:
    parts = [
        "# agrad benchmarks",
        "",
        "Written by `python -m agrad bench` (`python/agrad/bench.py`); do not edit by hand. "
        f"Settings: `{report.settings_name}`.",
        "",
        "Each figure is the median time of one training epoch (graph build, `backward`, "
        "parameter update) over repeats, the engines interleaved in one process. The model is the "
        "chapter's `LinReg`, written once and run on each number type; *plain floats* run the same "
        "Python loop with no gradients (the floor for any drop-in `Value`); *native fused* writes "
        "the model with `agrad.dot` and `agrad.sum`. The machine is shared and noisy: read the "
        "ratios, the absolute times are context.",
        "",
        markdown_table(["", ""], environment()),
        "",
        "## Targets (issue 4)",
        "",
        markdown_table(
            ["target", "measured", "met"],
            [
                [t, m, {True: "met", False: "**missed**", None: "not measured"}[ok]]
                for t, m, ok in report.targets()
            ],
        ),
        "",
        *[f"- {line}" for line in report.target_notes()],
        "",
        "## Time per epoch",
        "",
        markdown_table(TIMING_HEADER, report.timing_rows()),
        "",
        "*pure/native* and *torch/native*: how many times faster agrad's native engine is; "
        "*native/floats*: how many times the plain-float loop it costs; "
        "*fused gain*: native / native fused.",
        "",
    ]
    if chart_name:
        parts += [f"![time per epoch relative to the native engine]({chart_name})", ""]
    parts += [
        "## Operations",
        "",
        markdown_table(MICRO_HEADER, report.micro_rows()),
        "",
        "`backward per node` is `loss.backward()` on the workload-2 loss graph "
        "(torch with `retain_graph=True`) divided by its node count as the chapter's `Value` "
        f"builds it ({report.graph_memory['pure'][1]} nodes, as in agrad.pure; the native engine "
        f"keeps constants inside their parents and holds {report.graph_memory['native'][1]}).",
        "",
        "## Memory",
        "",
        markdown_table(MEMORY_HEADER, report.memory_rows()),
        "",
        "Python-side peaks are tracemalloc's; the native engine's arena is C++ memory, counted as "
        f"peak live nodes x {_core._node_bytes()} bytes. torch's own C++ memory is not counted.",
        "",
        graph_memory_text(report.graph_memory),
        "",
        soak_text(report.soak),
        "",
        "## Where the native time goes (workload 2, one epoch)",
        "",
    ]
    split = report.split
    parts += [
        markdown_table(["part", "time", "share of the native epoch"], _split_rows(split)),
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
        f"{key} {total / 1024:.0f} KiB for {nodes} live nodes ({total / nodes:.0f} bytes each)"
        for key, (total, nodes) in graph_memory.items()
    ]
    native, pure = graph_memory["native"][0], graph_memory["pure"][0]
    return (
        f"The workload-2 loss graph, held by its root: {'; '.join(parts)}; "
        f"pure / native: {pure / native:.1f}x."
    )


def soak_text(soak: Soak) -> str:
    text = (
        f"Workload 4 on the native engine for {soak.epochs} epochs: live nodes "
        f"{soak.nodes_start} after the first epoch, {soak.nodes_end} after the last; RSS "
    )
    if soak.rss_start is None or soak.rss_end is None or soak.rss_peak_growth is None:
        return text + "not available on this system."
    return text + (
        f"{soak.rss_start / 2**20:.1f} MiB -> {soak.rss_end / 2**20:.1f} MiB "
        f"(at most {soak.rss_peak_growth / 2**10:.0f} KiB above the start)."
    )


def _split_rows(split: dict[str, float]) -> list[list[str]]:
    """The native epoch as parts that add up to it: the floor, the build's
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
    return [*rows, ["native epoch", fmt_time(total), "100%"]]


def draw_chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.workload.title.split(":")[0] for r in report.workloads]
    keys = [k for k in COLUMNS if any(k in r.seconds for r in report.workloads)]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for i, key in enumerate(keys):
        heights = [ratio(r.seconds.get(key), r.seconds["native"]) or 0 for r in report.workloads]
        positions = [x + (i - (len(keys) - 1) / 2) * width for x in range(len(labels))]
        bars = ax.bar(positions, heights, width, label=key)
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
    ax.set_ylabel("time per epoch / native engine's (log)")
    ax.axhline(1.0, color="black", linewidth=0.6)
    ax.set_title("agrad: time per training epoch relative to the native engine (lower is faster)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------


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
    log(f"  micro-benchmarks: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    graph_memory = loss_graph_memory()
    soak = memory_soak(settings.soak_epochs)
    log(f"  memory: {time.perf_counter() - t0:.1f} s")
    split = time_split(settings)
    return Report(
        settings_name, results, micro, graph_memory, soak, split, [e.key for e in engines]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agrad bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds' run for CI: proves it works, times are rough",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
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
    log(f"agrad bench ({name})")
    report = run_suite(settings, name, log)
    print(text_table(TIMING_HEADER, report.timing_rows()))
    print()
    print(text_table(MICRO_HEADER, report.micro_rows()))
    print()
    print(
        text_table(
            ["target", "measured", "met"],
            [
                [t, m, {True: "met", False: "MISSED", None: "-"}[ok]]
                for t, m, ok in report.targets()
            ],
        )
    )
    chart = args.output / "results.png"
    draw_chart(report, chart)
    profile = args.output / PROFILE_FILE
    profile_text = profile.read_text(encoding="utf-8") if profile.exists() else None
    results = args.output / "RESULTS.md"
    results.write_text(render_markdown(report, chart.name, profile_text), encoding="utf-8")
    log(f"wrote {results} and {chart} in {time.perf_counter() - started:.1f} s")
    # a fused or native run that differs from its reference is a bug, not a timing
    bit_exact = all(ok for r in report.workloads for ok in r.checks.values())
    if not bit_exact:
        log("error: the engines' losses differ (see the targets table)")
    return 0 if bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
