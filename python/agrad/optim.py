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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["SGD", "Adam", "Optimizer"]


def _number(name: str, x: object, *, low: float = 0.0, below: float | None = None) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(x).__name__!r}")
    if not (low <= x < math.inf) or (below is not None and not x < below):
        bound = f"in [{low}, {below})" if below is not None else f"{low} or more and finite"
        raise ValueError(f"{name} must be {bound}, not {x}")
    return float(x)


class Optimizer:
    """What both optimizers share: the parameters, ``zero_grad`` and the
    all-or-nothing write of a step."""

    def __init__(self, params: Iterable[Any], lr: float):
        if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
            raise TypeError(f"params must be a list of Values, not {type(params).__name__!r}")
        self.params = list(params)
        if not self.params:
            raise ValueError("the optimizer got no parameters")
        seen: set[int] = set()
        for p in self.params:
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(f"a parameter must be a Value, not {type(p).__name__!r}")
            if id(p) in seen:
                raise ValueError(f"{p!r} is in params twice: a step would move it twice")
            seen.add(id(p))
        self.lr = lr

    @property
    def lr(self) -> float:
        """The learning rate (settable between steps)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _number("lr", value)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0."""
        for p in self.params:
            p.grad = 0.0

    def _write(self, new_data: list[float]) -> None:
        params = self.params
        # one pass in C over the numbers; the loop that names the parameter
        # runs only when some number is not finite
        if not all(map(math.isfinite, new_data)):
            for p, x in zip(params, new_data, strict=True):
                if not math.isfinite(x):
                    raise OverflowError(
                        f"the step makes {p!r} {x}: the run diverges (a smaller lr may not)"
                    )
        for p, x in zip(params, new_data, strict=True):
            p.data = x

    def _gradients(self, weight_decay: float) -> list[float]:
        if not weight_decay:
            return [float(p.grad) for p in self.params]
        return [float(p.grad) + weight_decay * p.data for p in self.params]


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's ``SGD``: with ``momentum`` m the
    step is along ``buf = m * buf + (1 - dampening) * g`` (``buf = g`` on the
    first step), or along ``g + m * buf`` with ``nesterov=True``;
    ``weight_decay`` adds ``weight_decay * p`` to each gradient ``g`` first."""

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
        self._buffers: list[float] | None = None

    def step(self) -> None:
        """Move every parameter one step against its gradient."""
        grads = self._gradients(self.weight_decay)
        if self.momentum:
            if self._buffers is None:
                buffers = grads
            else:
                buffers = [
                    self.momentum * b + (1 - self.dampening) * g
                    for b, g in zip(self._buffers, grads, strict=True)
                ]
            if self.nesterov:
                grads = [g + self.momentum * b for g, b in zip(grads, buffers, strict=True)]
            else:
                grads = buffers
        else:
            buffers = None
        # p.data - lr * g: micrograd's p.data -= lr * p.grad, to the bit (lr is
        # a property: read once, not once per parameter)
        lr = self.lr
        self._write([p.data - lr * g for p, g in zip(self.params, grads, strict=True)])
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
    ``weight_decay * p`` to each gradient ``g`` first (L2, not AdamW's decay)."""

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
        self._m = [0.0] * len(self.params)
        self._v = [0.0] * len(self.params)

    def step(self) -> None:
        """Move every parameter one Adam step."""
        b1, b2 = self.betas
        t = self.t + 1
        grads = self._gradients(self.weight_decay)
        m = [b1 * m + (1 - b1) * g for m, g in zip(self._m, grads, strict=True)]
        v = [b2 * v + (1 - b2) * g * g for v, g in zip(self._v, grads, strict=True)]
        step_size = self.lr / (1 - b1**t)
        root_correction = math.sqrt(1 - b2**t)
        self._write(
            [
                p.data - step_size * mi / (math.sqrt(vi) / root_correction + self.eps)
                for p, mi, vi in zip(self.params, m, v, strict=True)
            ]
        )
        # only a step that was taken moves the state on
        self.t, self._m, self._v = t, m, v

    def __repr__(self) -> str:
        return (
            f"Adam({len(self.params)} parameters, lr={self.lr}, betas={self.betas}, "
            f"eps={self.eps}, weight_decay={self.weight_decay})"
        )
