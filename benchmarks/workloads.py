"""The chapter's workloads, and the number types they run on.

The model is the chapter's own, ``agrad.linreg.LinReg``, run unchanged on
each number type (an *engine* here):

* ``agrad.Value`` (the compiled engine) with the book's chain of ``+``
  ("agrad"), and with the fused ``agrad.sum`` / ``agrad.dot`` ("agrad fused");
* ``agrad.pure.Value`` (the pure-Python engine);
* PyTorch scalar tensors (float64, ``requires_grad=True``), if torch is
  installed;
* plain floats with no gradients: the same Python loop at zero autograd
  cost, the floor for any drop-in ``Value``.

The data are the chapter's, drawn by ``agrad.datasets`` from
``random.Random(42)``; the body-fat table is normalised with
``agrad.linreg.standardize`` as the book normalises it.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import agrad
import agrad.pure
from agrad.datasets import batch_data, load_body_fat, multivariate_data, to_xy, univariate_data
from agrad.linreg import LinReg, standardize

#: Column titles of the engines, in the order the tables show them.
TITLES = {
    "floats": "plain floats",
    "agrad": "agrad",
    "fused": "agrad fused",
    "compiled": "agrad compiled",
    "pure": "agrad.pure",
    "torch": "torch scalars",
}


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
    """A number type, and how the chapter's model and step run on it."""

    key: str  # one of TITLES
    number: Callable[[float], Any]  # an operand or parameter from a float
    model: Callable[[int | None, random.Random], LinReg]  # (n_inputs, rng) -> a fresh model
    step: Callable[[Any, list, float], None]  # (loss, parameters, learning rate)
    loss_value: Callable[[Any], float]
    compiled: bool = False  # the loss through agrad.compile: recorded once, replayed in C++

    @property
    def title(self) -> str:
        return TITLES[self.key]


def value_engine(key: str, value_class: type, fused: bool) -> Engine:
    def model(n_inputs: int | None, rng: random.Random) -> LinReg:
        return LinReg(n_inputs, value_class=value_class, rng=rng, fused=fused)

    return Engine(key, value_class, model, autograd_step, autograd_loss_value)


def float_model(n_inputs: int | None, rng: random.Random) -> LinReg:
    return LinReg(n_inputs, number=float, rng=rng)


AGRAD = value_engine("agrad", agrad.Value, fused=False)
FUSED = value_engine("fused", agrad.Value, fused=True)
PURE = value_engine("pure", agrad.pure.Value, fused=False)
# the fused model's loss recorded once per batch shape by agrad.compile and
# replayed in C++; batches are still drawn in Python, as the chapter does
COMPILED = Engine(
    "compiled", agrad.Value, FUSED.model, autograd_step, autograd_loss_value, compiled=True
)
FLOATS = Engine("floats", float, float_model, float_step, float_loss_value)


def torch_engine() -> Engine | None:
    """PyTorch scalar tensors as an engine, or None if torch is not installed.

    torch is imported here, by name, so that importing this module (as the
    profiler does, under valgrind) needs no torch."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return None
    torch.set_num_threads(1)  # scalar ops: threads only add overhead, and the machine is shared

    def number(x: float):
        return torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def model(n_inputs: int | None, rng: random.Random) -> LinReg:
        return LinReg(n_inputs, number=number, rng=rng)

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

    return Engine("torch", number, model, step, loss_value)


def available_engines() -> list[Engine]:
    torch = torch_engine()
    return [FLOATS, AGRAD, FUSED, COMPILED, PURE] + ([torch] if torch else [])


# ---------------------------------------------------------------------------
# The workloads


def five_points():
    return univariate_data(5, random.Random(42))


def thousand_points():
    return batch_data(1000, random.Random(42))


def three_features():
    return multivariate_data(1000, random.Random(42))


def body_fat_normalised():
    X, ys, _names = to_xy(load_body_fat())
    X_norm, _mean, _std = standardize(X)
    return X_norm, ys


@dataclass(frozen=True)
class Workload:
    key: int
    title: str
    data: Callable[[], tuple[list, list]]
    n_inputs: int | None  # None: the univariate model
    batch: int | None  # None: full batch
    lr: float


# The book's learning rates: the loss is the chapter's mean squared error, and
# each rate keeps it finite over the hundreds of thousands of epochs the full
# suite runs.  The time of an epoch does not depend on the rate.
WORKLOADS = [
    Workload(1, "1: univariate, 5 points, full batch", five_points, None, None, 0.01),
    Workload(2, "2: univariate, 1000 points, full batch", thousand_points, None, None, 0.01),
    Workload(3, "3: univariate, 1000 points, batch 10", thousand_points, None, 10, 0.01),
    Workload(4, "4: 3 features, 1000 points, batch 50", three_features, 3, 50, 0.01),
    Workload(5, "5: body fat, 14 features, 252 rows, batch 20", body_fat_normalised, 14, 20, 0.05),
]


def workload(key: int) -> Workload:
    return next(w for w in WORKLOADS if w.key == key)


class Run:
    """One engine training one workload's model: its own model, its own
    random stream (the same seed for every engine, so all draw the same
    weights and the same batches), and the loss of every epoch it ran."""

    def __init__(self, workload: Workload, engine: Engine, data):
        self.workload = workload
        self.engine = engine
        self.xs, self.ys = data
        self.rng = random.Random(7)
        self.model = engine.model(workload.n_inputs, self.rng)
        self.params = self.model.parameters()
        self.loss_of = agrad.compile(self.model.loss) if engine.compiled else self.model.loss
        self.losses: list[float] = []

    def build_loss(self):
        batch = self.workload.batch
        if batch is None:
            return self.loss_of(self.xs, self.ys)
        # the book's batch_loss, drawing from this run's own stream
        indices = self.rng.sample(range(len(self.xs)), batch)
        return self.loss_of([self.xs[i] for i in indices], [self.ys[i] for i in indices])

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
