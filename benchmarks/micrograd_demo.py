"""micrograd's demo, one training step timed on each implementation, as ratios.

One step of the demo: 100 two-moons points through MLP(2, [16, 16, 1]),
micrograd's max-margin loss with L2 regularisation, backward, SGD update.

- micrograd: the PyPI package itself (pip install "agrad[bench]");
- agrad.Value, micrograd-style: micrograd's neurons written over agrad.Value
  (a chain of + per neuron, inputs wrapped in Values), as a reader ports them;
- agrad.nn: agrad.nn.MLP, whose neurons are one fused agrad.dot node each,
  with nn.hinge_loss and optim.SGD (the same operations as the demo's step,
  so the same losses bit for bit as the demo's code on the same model);
- compiled: the micrograd-style step and the agrad.nn step, each with its
  loss built by an agrad.compile'd function (recorded at the untimed first
  step, replayed after: the same bits as eager, checked here);
- NumPy, vectorised: the same model, loss and SGD step written on arrays
  (matrix products, the backward pass by hand), the yardstick for a
  vectorised library; its losses agree with agrad's to rounding (checked).

Rounds alternate between the implementations, and each time is the median of
--repeat rounds' timed step (each after an untimed one of its own, as in a
training loop).  Times are the process's CPU time (time.process_time): the
step is single-threaded, and on a shared machine wall-clock time also counts
the turns of other processes, which made a 4 ms step read anywhere from 4 to
9 ms.  Run: python benchmarks/micrograd_demo.py [--repeat N]

benchmarks/run.py puts the same figures in RESULTS.md through step_seconds().
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

import agrad
from agrad import nn, optim
from agrad.datasets import moons_data


class ChainNeuron:
    """micrograd's neuron over agrad.Value: sum((w*x ...), b).relu()."""

    def __init__(self, nin, nonlin=True):
        self.w = [agrad.Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = agrad.Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
        return act.relu() if self.nonlin else act


class ChainMLP:
    def __init__(self, nin, nouts):
        sizes = [nin, *nouts]
        self.layers = [
            [ChainNeuron(sizes[i], nonlin=i != len(nouts) - 1) for _ in range(sizes[i + 1])]
            for i in range(len(nouts))
        ]

    def __call__(self, x):
        for layer in self.layers:
            out = [n(x) for n in layer]
            x = out[0] if len(out) == 1 else out
        return x

    def parameters(self):
        return [p for layer in self.layers for n in layer for p in [*n.w, n.b]]


def demo_loss(model, inputs, y):
    """micrograd's demo loss: max-margin, and L2 regularisation."""
    scores = [model(x) for x in inputs]
    losses = [(1 + -yi * s).relu() for yi, s in zip(y, scores, strict=True)]
    return sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())


def demo_step(model, X, y, value=None, loss=None):
    """micrograd's demo step; `loss(X)` instead of demo_loss when given."""
    if loss is None:
        inputs = [list(map(value, row)) for row in X] if value else X
        total = demo_loss(model, inputs, y)
    else:
        total = loss(X)
    for p in model.parameters():
        p.grad = 0.0
    total.backward()
    for p in model.parameters():
        p.data -= 0.1 * p.grad
    return total.data


def nn_step(model, optimizer, X, y):
    """The same step as demo_step, written with agrad.nn's loss and agrad.optim."""
    scores = [model(x) for x in X]
    total = nn.hinge_loss(scores, y, model.parameters(), alpha=1e-4)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    return total.data


class NumpyMLP:
    """MLP(2, [16, 16, 1]) on arrays, from an agrad.nn.MLP's weights: the
    demo's step vectorised (relu hidden layers, linear output)."""

    def __init__(self, model):
        self.layers = [
            (
                np.array([[w.data for w in n.w] for n in layer.neurons], dtype=float),
                np.array([n.b.data for n in layer.neurons], dtype=float),
            )
            for layer in model.layers
        ]

    def step(self, X, y, alpha=1e-4, lr=0.1):
        activations = [X]
        for i, (W, b) in enumerate(self.layers):
            z = activations[-1] @ W.T + b
            activations.append(np.maximum(z, 0.0) if i < len(self.layers) - 1 else z)
        scores = activations[-1][:, 0]
        margins = 1.0 - y * scores
        n = len(y)
        squares = sum(float((W * W).sum() + (b * b).sum()) for W, b in self.layers)
        loss = np.maximum(margins, 0.0).sum() / n + alpha * squares
        # backward: d loss / d scores, then through each layer
        delta = (-(margins > 0.0).astype(float) * y / n)[:, None]
        for i in range(len(self.layers) - 1, -1, -1):
            W, b = self.layers[i]
            gW = delta.T @ activations[i] + 2 * alpha * W
            gb = delta.sum(axis=0) + 2 * alpha * b
            if i:
                delta = (delta @ W) * (activations[i] > 0)
            W -= lr * gW
            b -= lr * gb
        return loss


MICROGRAD = "micrograd"
CHAIN = "agrad.Value, micrograd-style neurons"
CHAIN_COMPILED = "agrad.Value, micrograd-style neurons, compiled"
AGRAD_NN = "agrad.nn (fused)"
AGRAD_NN_COMPILED = "agrad.nn (fused), compiled"
NUMPY = "NumPy, vectorised"


def demo_data() -> tuple[list[list[float]], list[int]]:
    """The demo's 100 two-moons points and their labels, -1 and 1."""
    X, labels = moons_data(100, 0.1, np.random.RandomState(1337))
    return X.tolist(), [2 * int(label) - 1 for label in labels]


def make_steps(X, y, log=print, micrograd: bool = True) -> dict[str, Callable[[], float]]:
    """One step of the demo on each implementation, by name (micrograd's
    first, when asked and installed), each with a model of its own drawn
    from the same seed: every step returns its loss as a float."""
    steps: dict[str, Callable[[], float]] = {}
    if micrograd:
        try:
            from micrograd.engine import Value as MicrogradValue
            from micrograd.nn import MLP as MicrogradMLP

            random.seed(1337)
            micrograd_model = MicrogradMLP(2, [16, 16, 1])
            steps[MICROGRAD] = lambda: demo_step(micrograd_model, X, y, MicrogradValue)
        except ImportError:
            log("micrograd is not installed (pip install micrograd): its row is left out")
    random.seed(1337)
    chain_model = ChainMLP(2, [16, 16, 1])
    steps[CHAIN] = lambda: demo_step(chain_model, X, y, agrad.Value)
    random.seed(1337)
    compiled_chain_model = ChainMLP(2, [16, 16, 1])
    chain_loss = agrad.compile(lambda points: demo_loss(compiled_chain_model, points, y))
    steps[CHAIN_COMPILED] = lambda: demo_step(compiled_chain_model, X, y, loss=chain_loss)
    random.seed(1337)
    nn_model = nn.MLP(2, [16, 16, 1])
    optimizer = optim.SGD(nn_model.parameters(), lr=0.1)
    steps[AGRAD_NN] = lambda: nn_step(nn_model, optimizer, X, y)
    random.seed(1337)
    compiled_model = nn.MLP(2, [16, 16, 1])
    parameters = compiled_model.parameters()
    compiled_optimizer = optim.SGD(parameters, lr=0.1)
    # the labels are constants of the loss, the points its inputs
    loss = agrad.compile(
        lambda points: nn.hinge_loss([compiled_model(x) for x in points], y, parameters)
    )

    def compiled_step():
        total = loss(X)
        compiled_optimizer.zero_grad()
        total.backward()
        compiled_optimizer.step()
        return total.data

    steps[AGRAD_NN_COMPILED] = compiled_step
    random.seed(1337)
    numpy_model = NumpyMLP(nn.MLP(2, [16, 16, 1]))
    X_array, y_array = np.array(X), np.array(y, dtype=float)
    steps[NUMPY] = lambda: float(numpy_model.step(X_array, y_array))
    return steps


def check_first_steps(steps: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each implementation's first step (untimed: a first step is not a
    training loop's step: micrograd's graphs are reference cycles, so from the
    second step on its steps also pay for collecting the previous graph;
    agrad's caches are cold; compiled functions record) and check that the
    same model from the same weights gave the same loss: agrad's engines to
    the bit, NumPy's sums, in another order, to rounding."""
    first = {name: step() for name, step in steps.items()}
    assert first[AGRAD_NN_COMPILED] == first[AGRAD_NN], first
    assert first[CHAIN_COMPILED] == first[CHAIN], first
    assert abs(first[NUMPY] - first[AGRAD_NN]) <= 1e-12 * abs(first[AGRAD_NN]), first
    return first


def step_seconds(repeat: int, log=print) -> dict[str, list[float]]:
    """CPU seconds of each of `repeat` steps, by implementation, micrograd's
    first (left out, with a line to `log`, when micrograd is not installed)."""
    X, y = demo_data()
    steps = make_steps(X, y, log)
    check_first_steps(steps)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeat):
        for name, step in steps.items():
            # a step untimed first: in a training loop the step before is the
            # same step, not another implementation's that took the caches
            step()
            start = time.process_time()
            step()
            times[name].append(time.process_time() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/micrograd_demo.py",
        description=__doc__.splitlines()[0] + " It prints a table and writes nothing.",
    )
    parser.add_argument("--repeat", type=int, default=5, help="steps timed per implementation")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    times = step_seconds(args.repeat)
    base = statistics.median(times[next(iter(times))])
    print(f"{'implementation (CPU time)':48} {'per step':>10} {'speed-up':>9} {'spread':>14}")
    for name, ts in times.items():
        t = statistics.median(ts)
        spread = f"{min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f}"
        print(f"{name:48} {t * 1e3:8.2f} ms {base / t:8.0f}x {spread:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
