"""What the suite measures: time per epoch, operations, memory, and where the
compiled engine's time goes.

Every time is a median over repeats with the engines interleaved in one
process, so that a slow patch of a shared, noisy machine hits every engine
alike.  A time per epoch covers the graph build, ``backward`` and the
parameter update.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from workloads import AGRAD, FLOATS, PURE, Engine, Run, Workload, thousand_points, workload

import agrad.pure
from agrad import _core

#: The compiled engine's keys: their graphs live in its C++ arena.
COMPILED = ("agrad", "fused", "compiled")

K = TypeVar("K")


@dataclass(frozen=True)
class Settings:
    repeats: int
    block_seconds: float  # each timed block of epochs lasts about this long
    max_block_epochs: int
    soak_epochs: int  # the memory-flatness run of workload 4
    micro_seconds: float  # each micro-benchmark sample lasts about this long
    micro_sum_terms: int = 1000
    demo_steps: int = 5  # micrograd's demo: steps timed per implementation (~1 s each)
    # beside the peers (peers.py): sizes of the "Fastest Autograd in the West"
    # graph, in operations, and how long each timed block of calls lasts
    graph_operations: tuple[int, ...] = (10_000, 100_000)
    peer_block_seconds: float = 0.05


FULL = Settings(
    repeats=9, block_seconds=0.2, max_block_epochs=20000, soak_epochs=10000, micro_seconds=0.05
)
QUICK = Settings(
    repeats=3,
    block_seconds=0.01,
    max_block_epochs=500,
    soak_epochs=300,
    micro_seconds=0.005,
    demo_steps=1,
    graph_operations=(1_000, 3_000),
    peer_block_seconds=0.005,
)


def median_epoch_seconds(runs: Sequence[Run], settings: Settings) -> dict[str, float]:
    """Median seconds per epoch of each run, timing blocks of epochs with the
    runs interleaved."""
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

    tracemalloc sees every Python object; the compiled engine's arena is C++
    memory it cannot see, so that is the peak live node count times the
    node's size.  torch's own C++ allocations are seen by neither."""
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
    compiled = run.engine.key in COMPILED
    engine_bytes = (nodes_peak - nodes_before) * _core._node_bytes() if compiled else 0
    return python_peak, engine_bytes


@dataclass
class WorkloadResult:
    workload: Workload
    seconds: dict[str, float]  # per epoch, by engine key
    memory: dict[str, tuple[int, int]]  # peak_memory, by engine key
    checks: dict[str, bool] = field(default_factory=dict)  # "x == y": same losses


def bench_workload(
    workload: Workload, engines: Sequence[Engine], settings: Settings
) -> WorkloadResult:
    data = workload.data()
    runs = [Run(workload, e, data) for e in engines]
    seconds = median_epoch_seconds(runs, settings)
    by_key = {r.engine.key: r for r in runs}
    checks = {
        "agrad == agrad.pure": same_losses(by_key["agrad"], by_key["pure"]),
        "agrad fused == agrad": same_losses(by_key["fused"], by_key["agrad"]),
        "agrad compiled == agrad fused": same_losses(by_key["compiled"], by_key["fused"]),
    }
    memory = {r.engine.key: peak_memory(r) for r in runs}
    return WorkloadResult(workload, seconds, memory, checks)


# ---------------------------------------------------------------------------
# Operations, one at a time


def per_call_seconds(
    stmt: str | Callable[[], object],
    namespace: dict | None = None,
    seconds: float | None = None,
    number: int | None = None,
) -> Callable[[], float]:
    """A sampler: each call times `stmt` (a statement, or a function of no
    arguments) run `number` times, or as many times as last about `seconds`,
    per execution."""
    timer = timeit.Timer(stmt, globals=namespace)
    if number is None:
        if seconds is None:
            raise TypeError("per_call_seconds needs seconds or number")
        # A first call may do one-time work (a compiled function decodes its
        # program at its second call: 24 ms against 0.13 ms a step after, on
        # micrograd's demo), and a block sized by it held 2 calls, not the
        # 50 ms asked: each sample was then a cold call or two, not a block.
        timer.timeit(1)
        once = min(timer.timeit(1) for _ in range(3)) or 1e-9
        number = max(1, round(seconds / once))

    def sample() -> float:
        return timer.timeit(number) / number

    return sample


def interleaved_samples(
    samplers: dict[K, Callable[[], float]], repeats: int
) -> dict[K, list[float]]:
    """`repeats` samples of each sampler, taking one sample of each in turn,
    so that a slow patch of the machine falls on all alike."""
    samples: dict[K, list[float]] = {key: [] for key in samplers}
    for _ in range(repeats):
        for key, sample in samplers.items():
            gc.collect()
            samples[key].append(sample())
    return samples


def interleaved_medians(samplers: dict[K, Callable[[], float]], repeats: int) -> dict[K, float]:
    """The median of `repeats` interleaved samples of each sampler."""
    samples = interleaved_samples(samplers, repeats)
    return {key: statistics.median(s) for key, s in samples.items()}


def interleaved_minima(samplers: dict[K, Callable[[], float]], repeats: int) -> dict[K, float]:
    """The least of `repeats` interleaved samples of each sampler: on a shared
    machine other work only ever adds time, so the least is the closest to
    the cost of the code itself."""
    samples = interleaved_samples(samplers, repeats)
    return {key: min(s) for key, s in samples.items()}


def per_call_minima(
    cases: dict[K, Callable[[], object]], rounds: int, calls: int
) -> dict[K, float]:
    """The least, over `rounds` interleaved samples, of each case's mean time
    per call over `calls` calls (interleaved_minima of such samples)."""

    def sampler(fn: Callable[[], object]) -> Callable[[], float]:
        def sample() -> float:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            return (time.perf_counter() - start) / calls

        return sample

    return interleaved_minima({key: sampler(fn) for key, fn in cases.items()}, rounds)


def chain_graph(engine: Engine):
    """The workload-2 loss graph, the chapter's chain of ``+``: what backward
    is timed on."""
    xs, ys = thousand_points()
    return engine.model(None, random.Random(3)).loss(xs, ys)


def chapter_graph_nodes() -> int:
    """Nodes of the workload-2 loss graph as the chapter's Value (agrad.pure) builds it."""
    return len(agrad.pure.topological_order(chain_graph(PURE)))


def micro_benchmarks(engines: Sequence[Engine], settings: Settings) -> dict[str, dict[str, float]]:
    """Seconds per operation: {operation: {engine key: s}}; `backward` is per node."""
    number_engines = [
        e for e in engines if e.key not in ("fused", "compiled")
    ]  # models, not numbers
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
        if e is AGRAD:
            ns["fused_sum"] = agrad.sum
            samplers.setdefault(f"agrad.sum of {n_terms}", {})[e.key] = per_call_seconds(
                "fused_sum(vs)", ns, settings.micro_seconds
            )
        if e is FLOATS:
            continue
        ns["loss"] = chain_graph(e)
        stmt = "loss.backward(retain_graph=True)" if e.key == "torch" else "loss.backward()"
        samplers.setdefault("backward per node", {})[e.key] = per_call_seconds(
            stmt, ns, settings.micro_seconds
        )
    # per node of the graph as the chapter's Value builds it, which agrad.pure
    # does node for node (the compiled engine keeps constants inside their parents)
    n_nodes = chapter_graph_nodes()
    flat = {(op, key): s for op, by_engine in samplers.items() for key, s in by_engine.items()}
    result: dict[str, dict[str, float]] = {}
    for (op, key), seconds in interleaved_medians(flat, settings.repeats).items():
        result.setdefault(op, {})[key] = seconds
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


def loss_graph_memory() -> dict[str, tuple[int, int]]:
    """(bytes, nodes) of the workload-2 loss graph held by its root, for agrad
    and agrad.pure.

    Python-side bytes are tracemalloc's; the compiled engine adds its arena,
    live nodes times the node size."""
    result = {}
    for engine in (AGRAD, PURE):
        gc.collect()
        nodes_before = _core._live_nodes()
        tracemalloc.start()
        try:
            loss = chain_graph(engine)
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


@dataclass(frozen=True)
class Soak:
    epochs: int
    nodes_start: int
    nodes_end: int
    rss_start: int | None
    rss_end: int | None
    rss_peak_growth: int | None


def memory_soak(epochs: int) -> Soak:
    """Train workload 4 on agrad for `epochs` epochs and report live nodes and
    RSS after the first and the last epoch (loss dropped)."""
    soaked = workload(4)
    run = Run(soaked, AGRAD, soaked.data())
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
# Where agrad's time goes, on workload 2

SPLIT_PARTS = ("floats loop", "graph build", "backward", "update", "free graph")


def time_split(settings: Settings) -> dict[str, float]:
    """Seconds per epoch of workload 2, taken apart: the Python loop on floats
    (the interpreter), building agrad's graph (interpreter + binding + engine
    forward + node allocation), backward, the update, and freeing the graph.
    Medians over interleaved repeats."""
    split = workload(2)
    data = split.data()
    floats, compiled = Run(split, FLOATS, data), Run(split, AGRAD, data)
    parts: dict[str, list[float]] = {k: [] for k in SPLIT_PARTS}
    for _ in range(settings.repeats * 3):
        gc.collect()
        t0 = time.perf_counter()
        floats.build_loss()
        t1 = time.perf_counter()
        loss = compiled.build_loss()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        for p in compiled.params:
            p.data -= split.lr * p.grad
        t4 = time.perf_counter()
        del loss
        t5 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[key].append(seconds)
    return {k: statistics.median(v) for k, v in parts.items()}
