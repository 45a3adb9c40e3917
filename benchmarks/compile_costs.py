"""Where a compiled call of the 1000-point loss spends its time: recording
against one eager evaluation, replay forward, backward, the argument
flattening.

Usage: ``python benchmarks/compile_costs.py``: it prints medians of 30 timings
in one process, then a whole training step as a user writes it and its parts
(the least of 10 blocks of 2000 calls each, caches warm as in a training
loop), and writes nothing; ``COMPILE.md`` is written by hand from its output.
``--micrograd`` times micrograd's demo step instead (micrograd-style neurons,
the loss compiled) and its parts, in a fresh arena and then with a model made
after the benchmark suite's graphs were built and freed.
"""

import argparse
import random
import statistics
import time

import micrograd_demo
import numpy as np
import peers

import agrad
from agrad import _core
from agrad.datasets import batch_data
from agrad.linreg import LinReg


def med(f, n=30):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/compile_costs.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--micrograd",
        action="store_true",
        help="micrograd's demo step (micrograd-style neurons, compiled) and its parts",
    )
    if parser.parse_args(argv).micrograd:
        micrograd_parts("fresh arena")
        for operations in (10_000, 100_000):  # the suite's graphs, built and freed
            peers.build_graph(operations)
        micrograd_parts("after the suite's graphs")
        return 0
    xs, ys = batch_data(1000, random.Random(42))
    m = LinReg()
    eager = med(lambda: m.loss(xs, ys))
    rec = med(lambda: agrad.compile(m.loss)(xs, ys))

    def first_replay() -> None:  # a fresh function's second call: decoding, laying out
        g = agrad.compile(m.loss)
        g(xs, ys)
        start = time.perf_counter()
        g(xs, ys)
        firsts.append(time.perf_counter() - start)

    firsts: list[float] = []
    for _ in range(30):
        first_replay()
    first = statistics.median(firsts)
    f = agrad.compile(m.loss)
    L = f(xs, ys)
    rep = med(lambda: f(xs, ys))
    bw = med(lambda: L.backward())
    le = m.loss(xs, ys)
    bwe = med(lambda: le.backward())
    fl = med(lambda: LinReg(number=float).loss(xs, ys))
    print(
        f"eager forward {eager * 1e6:.0f}us  record {rec * 1e6:.0f}us ({rec / eager:.2f}x)  first replay {first * 1e6:.0f}us  replay forward {rep * 1e6:.0f}us  backward(replayed) {bw * 1e6:.0f}us  backward(eager) {bwe * 1e6:.0f}us  float loss {fl * 1e6:.0f}us  ops={f.program(xs, ys).operations}"
    )

    flat = med(lambda: _core._flatten((xs, ys), {}, np.ndarray))
    nums = _core._flatten((xs, ys), {}, np.ndarray)[1]
    prog = f.program(xs, ys)
    run = med(lambda: prog.run(nums))
    print(f"flatten arguments {flat * 1e6:.0f}us  Program.run (recompute) {run * 1e6:.0f}us")

    params = m.parameters()

    def update():
        for p in params:
            p.grad = 0
        for p in params:
            p.data -= 0.001 * p.grad

    def step():
        loss = f(xs, ys)
        update_grads_then_data(loss)

    def update_grads_then_data(loss):  # the chapter's loop: zero, backward, update
        for p in params:
            p.grad = 0
        loss.backward()
        for p in params:
            p.data -= 0.001 * p.grad

    parts = {
        "step": step,
        "the call f(xs, ys)": lambda: f(xs, ys),
        "of which flattening": lambda: _core._flatten((xs, ys), {}, np.ndarray),
        "of which Program.run": lambda: prog.run(nums),
        "backward()": L.backward,
        "the update": update,
    }
    print("  ".join(f"{name} {least(fn) * 1e6:.1f}us" for name, fn in parts.items()))
    return 0


def micrograd_parts(arena: str) -> None:
    """micrograd's demo step as micrograd_demo.demo_step writes it, with a
    model made now (its weights take whatever ids the arena has free), and
    its parts: the compiled call, its argument flattening and replay, the
    backward pass, and the demo's own Python loops over the parameters."""
    X, y = micrograd_demo.demo_data()
    random.seed(1337)
    model = micrograd_demo.ChainMLP(2, [16, 16, 1])
    loss = agrad.compile(lambda points: micrograd_demo.demo_loss(model, points, y))
    for _ in range(3):  # records, lays out, replays
        micrograd_demo.demo_step(model, X, y, loss=loss)
    total = loss(X)
    nums = _core._flatten((X,), {}, np.ndarray)[1]
    prog = loss.program(X)

    def zero():
        for p in model.parameters():
            p.grad = 0.0

    def update():
        for p in model.parameters():
            p.data -= 0.1 * p.grad

    parts = {
        "step": lambda: micrograd_demo.demo_step(model, X, y, loss=loss),
        "the call loss(X)": lambda: loss(X),
        "of which flattening": lambda: _core._flatten((X,), {}, np.ndarray),
        "of which Program.run": lambda: prog.run(nums),
        "backward()": total.backward,
        "zeroing (p.grad = 0.0)": zero,
        "the update (p.data -= ...)": update,
    }
    timed = "  ".join(f"{name} {least(fn, 200, 15) * 1e6:.1f}us" for name, fn in parts.items())
    print(f"micrograd's demo, {arena}: {timed}")


def least(f, number=2000, blocks=10):
    """Seconds a call: the least over blocks of back-to-back calls."""
    f()
    best = float("inf")
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(number):
            f()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


if __name__ == "__main__":
    raise SystemExit(main())
