"""Optimizers: ``SGD`` (with momentum) and ``Adam``, over any list of Values.

They follow PyTorch's ``torch.optim.SGD`` and ``torch.optim.Adam`` as their
documentation writes the update (the tests check them against PyTorch on the
same gradients), and are used the same way::

    opt = agrad.optim.Adam(model.parameters(), lr=0.01)
    for step in range(100):
        loss = ...
        opt.zero_grad()
        loss.backward()
        opt.step()

``lr`` is an attribute: set it between steps for a schedule.  Plain ``SGD``
(no momentum, no weight decay) is exactly micrograd's update
``p.data -= lr * p.grad``.  A step that would make a parameter infinite or
nan raises ``OverflowError`` and changes no parameter, as a diverging run
does on agrad's Values.

A step is computed on float64 NumPy arrays, one operation over all the
parameters at a time: element by element the same IEEE operations, in the same
order, as the update written per parameter in Python, so the same bits.  On
the compiled engine the parameters' data and gradients move between the
Values and those arrays in one call each (``agrad._core._Parameters``), and
plain SGD's step is one call that computes and writes them
(``_Parameters.descend``, the same operations); on ``agrad.pure`` through
Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from agrad import _core

__all__ = ["SGD", "Adam", "Optimizer"]


# An infinite or nan step is reported by Optimizer._write, naming the
# parameter, with an OverflowError; NumPy's own warning on the way is noise.
def _overflow_checked_by_write() -> np.errstate:
    return np.errstate(over="ignore", invalid="ignore")


def _number(name: str, x: object, *, low: float = 0.0, below: float | None = None) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(x).__name__!r}")
    if not (low <= x < math.inf) or (below is not None and not x < below):
        bound = f"in [{low}, {below})" if below is not None else f"{low} or more and finite"
        raise ValueError(f"{name} must be {bound}, not {x}")
    return float(x)


class Optimizer:
    """What both optimizers share: the parameters, ``zero_grad`` and the
    all-or-nothing write of a step.

    >>> import agrad
    >>> from agrad import optim
    >>> a, b = agrad.Value(1.0), agrad.Value(2.0)
    >>> opt = optim.SGD([a, b], lr=0.5)
    >>> (a * b).backward()
    >>> opt.step()
    >>> a, b
    (Value(: 0.0), Value(: 1.5))
    >>> opt.zero_grad()
    >>> a.grad, b.grad
    (0.0, 0.0)
    """

    def __init__(self, params: Iterable[Any], lr: float):
        if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
            raise TypeError(f"params must be a list of Values, not {type(params).__name__!r}")
        # a tuple, fixed here: the step's state (momentum, Adam's moments) and
        # the compiled engine's bulk transfer are made for these parameters
        self._params = tuple(params)
        if not self._params:
            raise ValueError("the optimizer got no parameters")
        seen: set[int] = set()
        for p in self._params:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"a parameter must be a Value, not {type(p).__name__!r}")
            if id(p) in seen:
                raise ValueError(f"{p!r} is in params twice: a step would move it twice")
            seen.add(id(p))
        self.lr = lr
        native = all(type(p) is _core.Value for p in self._params)
        self._bulk = _core._Parameters(list(self._params)) if native else None

    @property
    def params(self) -> tuple[Any, ...]:
        """The parameters, as given (read-only: make a new optimizer for others)."""
        return self._params

    @property
    def lr(self) -> float:
        """The learning rate (settable between steps)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _number("lr", value)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0."""
        if self._bulk is not None:
            self._bulk.zero_grad()
            return
        for p in self.params:
            p.grad = 0.0

    def _data(self) -> np.ndarray:
        if self._bulk is None:
            return np.array([p.data for p in self.params], dtype=np.float64)
        out = np.empty(len(self.params))
        self._bulk.data(out)
        return out

    def _write(self, new_data: np.ndarray) -> None:
        finite = np.isfinite(new_data)
        if not finite.all():
            i = int(np.argmin(finite))
            raise self._diverges(i, new_data[i])
        if self._bulk is not None:
            self._bulk.assign(new_data)
            return
        for p, x in zip(self.params, new_data.tolist(), strict=True):
            p.data = x

    def _diverges(self, i: int, new_data: float) -> OverflowError:
        return OverflowError(
            f"the step makes {self.params[i]!r} {new_data}: the run diverges (a smaller lr may not)"
        )

    def _gradients(self, weight_decay: float, data: np.ndarray) -> np.ndarray:
        if self._bulk is None:
            grads = np.array([float(p.grad) for p in self.params], dtype=np.float64)
        else:
            grads = np.empty(len(self.params))
            self._bulk.grads(grads)
        if not weight_decay:
            return grads
        with _overflow_checked_by_write():
            return grads + weight_decay * data


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's ``SGD``: with ``momentum`` m the
    step is along ``buf = m * buf + (1 - dampening) * g`` (``buf = g`` on the
    first step), or along ``g + m * buf`` with ``nesterov=True``;
    ``weight_decay`` adds ``weight_decay * p`` to each gradient ``g`` first.

    >>> import agrad
    >>> from agrad import optim
    >>> w = agrad.Value(1.0)
    >>> opt = optim.SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w * w).backward(); opt.step()
    ...
    >>> w
    Value(: 0.45999999999999996)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.001,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        self.momentum = _number("momentum", momentum)
        self.dampening = _number("dampening", dampening)
        self.weight_decay = _number("weight_decay", weight_decay)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, not {nesterov!r}")
        if nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs a momentum above 0 and no dampening")
        self.nesterov = nesterov
        self._buffers: np.ndarray | None = None

    def step(self) -> None:
        """Move every parameter one step against its gradient."""
        if self._bulk is not None and not (self.momentum or self.weight_decay):
            # the arrays' p.data - lr * g below, in one call
            i = self._bulk.descend(self.lr)
            if i >= 0:
                p = self.params[i]
                raise self._diverges(i, float(p.data) - self.lr * p.grad)
            return
        data = self._data()
        grads = self._gradients(self.weight_decay, data)
        buffers = None
        with _overflow_checked_by_write():
            if self.momentum:
                if self._buffers is None:
                    buffers = grads
                else:
                    buffers = self.momentum * self._buffers + (1 - self.dampening) * grads
                grads = grads + self.momentum * buffers if self.nesterov else buffers
            # p.data - lr * g: micrograd's p.data -= lr * p.grad, to the bit
            new_data = data - self.lr * grads
        self._write(new_data)
        if buffers is not None:
            self._buffers = buffers

    def __repr__(self) -> str:
        return (
            f"SGD({len(self.params)} parameters, lr={self.lr}, momentum={self.momentum}, "
            f"dampening={self.dampening}, weight_decay={self.weight_decay}, nesterov={self.nesterov})"
        )


class Adam(Optimizer):
    """Adam, PyTorch's ``Adam``: at step t, ``m = b1*m + (1-b1)*g`` and
    ``v = b2*v + (1-b2)*g*g``, then ``p -= lr / (1 - b1**t) * m /
    (sqrt(v) / sqrt(1 - b2**t) + eps)``; ``weight_decay`` adds
    ``weight_decay * p`` to each gradient ``g`` first (L2, not AdamW's decay).

    >>> import agrad
    >>> from agrad import optim
    >>> w = agrad.Value(1.0)
    >>> opt = optim.Adam([w], lr=0.1)
    >>> opt.zero_grad()
    >>> (w * w).backward()
    >>> opt.step()
    >>> w
    Value(: 0.9000000005)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.001,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, lr)
        if not isinstance(betas, tuple) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, not {betas!r}")
        self.betas = (
            _number("betas[0]", betas[0], below=1.0),
            _number("betas[1]", betas[1], below=1.0),
        )
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)
        self.t = 0
        self._m = np.zeros(len(self.params))
        self._v = np.zeros(len(self.params))

    def step(self) -> None:
        """Move every parameter one Adam step."""
        b1, b2 = self.betas
        t = self.t + 1
        data = self._data()
        grads = self._gradients(self.weight_decay, data)
        step_size = self.lr / (1 - b1**t)
        root_correction = math.sqrt(1 - b2**t)
        with _overflow_checked_by_write():
            m = b1 * self._m + (1 - b1) * grads
            v = b2 * self._v + (1 - b2) * grads * grads
            new_data = data - step_size * m / (np.sqrt(v) / root_correction + self.eps)
        self._write(new_data)
        # only a step that was taken moves the state on
        self.t, self._m, self._v = t, m, v

    def __repr__(self) -> str:
        return (
            f"Adam({len(self.params)} parameters, lr={self.lr}, betas={self.betas}, "
            f"eps={self.eps}, weight_decay={self.weight_decay})"
        )
