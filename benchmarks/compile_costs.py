"""Where a compiled call of the 1000-point loss spends its time: recording
against one eager evaluation, replay forward, backward, the argument
flattening.

Usage: ``python benchmarks/compile_costs.py``: it prints medians of 30 timings
in one process, then a whole training step as a user writes it and its parts
(the least of 10 blocks of 2000 calls each, caches warm as in a training
loop), and writes nothing; ``COMPILE.md`` is written by hand from its output.
"""

import argparse
import random
import statistics
import time

import numpy as np

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
    argparse.ArgumentParser(
        prog="python benchmarks/compile_costs.py", description=__doc__.split("\n\n")[0]
    ).parse_args(argv)
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
