"""Neural networks of Values, in the shape of micrograd's ``nn`` module.

``Neuron(nin, nonlin=True)``, ``Layer(nin, nout, **kwargs)`` and
``MLP(nin, nouts)`` take micrograd's arguments, are called as micrograd's
are (a neuron and a one-neuron layer return a Value, a wider layer a list),
print as micrograd's do (``MLP of [Layer of [ReLUNeuron(2), ...], ...]``) and
draw their starting weights in micrograd's order: each neuron's weights
``uniform(-1, 1)`` one after the other, its bias the int 0, neurons and
layers in order.  They draw from the module-level :mod:`random`, as
micrograd does, so a script that seeds ``random`` and builds
``MLP(2, [16, 16, 1])`` starts from the weights micrograd would give it; or
from the ``rng`` given, a ``random.Random(seed)`` giving the same weights
without touching the global state.

What micrograd lacks, as keyword-only arguments:

* ``activation``: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"linear"`` for a
  neuron or a layer; for an ``MLP``, one name for its hidden layers (the last
  stays linear, as in micrograd) or a sequence with one name per layer.
* ``value_class``: the engine (default ``agrad.Value``; ``agrad.pure.Value``
  runs the same model in pure Python).
* ``fused``: a neuron's sum as one ``agrad.dot`` node (the default on
  ``agrad.Value``) or as a chain of ``+`` (the default elsewhere).  Both give
  the same data and gradients, bit for bit.
* ``rng``: where the starting weights are drawn from (the ``random`` module,
  the default, or a ``random.Random``).

The losses the demo and the chapter use are here too: ``mse``,
``hinge_loss`` (micrograd's max-margin loss with L2 regularisation),
``binary_cross_entropy`` and ``accuracy``.
"""

from __future__ import annotations

import builtins
import itertools
import random
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import agrad
from agrad import _core
from agrad._checks import checked_rng, fused_sums

# bound once: the forward pass calls it for every neuron
_dot = agrad.dot

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "accuracy",
    "binary_cross_entropy",
    "hinge_loss",
    "mse",
]

#: The activations by name, and the word a neuron's repr starts with.
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "linear": "Linear"}


class Module:
    """What every model has: its parameters, and a way to zero their gradients.

    >>> import random
    >>> from agrad import nn
    >>> random.seed(0)
    >>> neuron = nn.Neuron(2)
    >>> neuron([1.0, 2.0]).backward()
    >>> [p.grad for p in neuron.parameters()]
    [1.0, 2.0, 1.0]
    >>> neuron.zero_grad()
    >>> [p.grad for p in neuron.parameters()]
    [0.0, 0.0, 0.0]
    """

    def zero_grad(self) -> None:
        """Set every parameter's gradient to 0 (``backward()`` also zeroes the
        gradients of the graph it runs on; this is for parameters the last
        loss did not reach, and for code written for micrograd)."""
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self) -> list:
        """The Values that training changes, in a fixed order."""
        return []


def _check_count(name: str, n: object, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, not {type(n).__name__!r}")
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {n}")
    return n


def _check_activation(activation: object) -> str:
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, not {type(activation).__name__!r}"
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    return activation


def _check_value_class(value_class: object) -> type:
    if not isinstance(value_class, type) or not hasattr(value_class, "relu"):
        raise TypeError(
            f"value_class must be a Value class such as agrad.Value, not {value_class!r}"
        )
    return value_class


def _values(value_class: type, numbers: list) -> list:
    """``[value_class(x) for x in numbers]``; for agrad.Value, made at once
    at consecutive ids of the engine's arena (``_core._leaves``), so that a
    compiled step reads a neuron's weights as one array however scattered
    the arena's free ids were."""
    if value_class is agrad.Value:
        return _core._leaves(numbers)
    return [value_class(x) for x in numbers]


class Neuron(Module):
    """``activation(b + w0*x0 + w1*x1 + ...)``: ``nin`` weights drawn from
    ``rng.uniform(-1, 1)`` (``rng``: the ``random`` module unless given) and
    a bias starting at 0.

    ``nonlin`` is micrograd's switch (ReLU or linear); ``activation`` names
    any of :data:`ACTIVATIONS` instead and must agree with it.

    >>> import random
    >>> from agrad import nn
    >>> random.seed(0)
    >>> neuron = nn.Neuron(2, activation="sigmoid")
    >>> neuron, neuron([1.0, 2.0])
    (SigmoidNeuron(2), Value(: 0.8482139982568058))
    >>> nn.Neuron(2, activation="sigmoid", rng=random.Random(0))([1.0, 2.0])
    Value(: 0.8482139982568058)
    """

    def __init__(
        self,
        nin: int,
        nonlin: bool = True,
        *,
        activation: str | None = None,
        value_class: type | None = None,
        fused: bool | None = None,
        rng: random.Random | ModuleType = random,
    ):
        _check_count("nin", nin)
        if not isinstance(nonlin, bool):
            raise TypeError(f"nonlin must be True or False, not {nonlin!r}")
        if activation is None:
            activation = "relu" if nonlin else "linear"
        elif _check_activation(activation) != "linear" and not nonlin:
            raise ValueError(
                f"nonlin=False is a linear neuron; it cannot have activation {activation!r}"
            )
        value_class = _check_value_class(agrad.Value if value_class is None else value_class)
        self.fused = fused_sums(fused, value_class)
        rng = checked_rng(rng)
        # micrograd's draws, in its order: the weights one by one, then the bias (no draw)
        self.w = _values(value_class, [rng.uniform(-1, 1) for _ in range(nin)])
        self.b = value_class(0)
        self.activation = activation

    @property
    def nonlin(self) -> bool:
        """micrograd's name for "has an activation"."""
        return self.activation != "linear"

    def __call__(self, x: Sequence[Any]) -> Any:
        x = list(x) if not isinstance(x, list) else x
        return self._output(x, [1, *x])

    def _output(self, x: list, ones_x: list) -> Any:
        # ones_x is [1, *x], made by the caller: a layer makes it once for
        # all its neurons instead of once per neuron.  w, b, activation and
        # fused are read at every call, as micrograd reads w and b, so a
        # model changed between calls computes with what it holds now.
        w = self.w
        if len(x) != len(w):
            raise ValueError(f"{self!r} takes {len(w)} inputs, not {len(x)}")
        # The bias goes first, as micrograd's sum(..., self.b) adds it: the
        # same forward bits.  As a term b*1 of the dot product (exact), the
        # chain below is the one agrad.dot is defined to equal bit for bit.
        if self.fused:
            act = _dot([self.b, *w], ones_x)
        else:
            act = builtins.sum(wi * xi for wi, xi in zip([self.b, *w], ones_x, strict=True))
        activation = self.activation
        if activation == "relu":
            return act.relu()
        if activation == "tanh":
            return act.tanh()
        if activation == "sigmoid":
            return act.sigmoid()
        return act

    def parameters(self) -> list:
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{ACTIVATIONS[self.activation]}Neuron({len(self.w)})"


class Layer(Module):
    """``nout`` neurons of ``nin`` inputs each; ``kwargs`` go to every ``Neuron``.

    Called on ``nin`` inputs it returns the neurons' outputs as a list, or the
    one Value when ``nout`` is 1, as micrograd's does.

    >>> import random
    >>> from agrad import nn
    >>> random.seed(0)
    >>> layer = nn.Layer(3, 2, activation="tanh")
    >>> layer
    Layer of [TanhNeuron(3), TanhNeuron(3)]
    >>> len(layer([1.0, 2.0, 3.0]))
    2
    """

    def __init__(self, nin: int, nout: int, **kwargs: Any):
        _check_count("nin", nin)
        _check_count("nout", nout)
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Any]) -> Any:
        x = list(x) if not isinstance(x, list) else x
        # one [1, *x] for every neuron (see Neuron._output)
        ones_x = [1, *x]
        out = [n._output(x, ones_x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """Layers of ``nouts[0]``, ``nouts[1]``, ... neurons on ``nin`` inputs.

    ``activation`` is the hidden layers' (default ``"relu"``; the last layer
    is linear, as in micrograd), or a sequence naming each layer's, the last
    included.

    >>> import random
    >>> from agrad import nn
    >>> random.seed(1337)
    >>> model = nn.MLP(2, [4, 1])
    >>> model
    MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(4)]]
    >>> model([1.0, -1.0]), len(model.parameters())
    (Value(: 0.14252210854529238), 17)
    >>> nn.MLP(2, [4, 1], rng=random.Random(1337))([1.0, -1.0])
    Value(: 0.14252210854529238)
    """

    def __init__(
        self,
        nin: int,
        nouts: Sequence[int],
        *,
        activation: str | Sequence[str] = "relu",
        value_class: type | None = None,
        fused: bool | None = None,
        rng: random.Random | ModuleType = random,
    ):
        _check_count("nin", nin)
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Sequence):
            raise TypeError(f"nouts must be a list of layer sizes, not {type(nouts).__name__!r}")
        if not nouts:
            raise ValueError("nouts must name at least one layer")
        for n in nouts:
            _check_count("every layer size in nouts", n)
        if isinstance(activation, str):
            hidden = _check_activation(activation)
            activations = [hidden] * (len(nouts) - 1) + ["linear"]
        elif isinstance(activation, Sequence):
            activations = [_check_activation(a) for a in activation]
            if len(activations) != len(nouts):
                raise ValueError(
                    f"activation names {len(activations)} layers, but nouts has {len(nouts)}"
                )
        else:
            raise TypeError(
                f"activation must be a name or a sequence of names, not {type(activation).__name__!r}"
            )
        sizes = [nin, *nouts]
        self.layers = [
            Layer(
                sizes[i],
                sizes[i + 1],
                activation=activations[i],
                value_class=value_class,
                fused=fused,
                rng=rng,
            )
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Any]) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"


def _sum(values: list, fused: bool | None = None) -> Any:
    # agrad.sum is the builtin's chain as one node, with the same bits: the
    # rule of fused_sums, for terms that are all agrad.Values.  The check is a
    # loop in C: a generator of isinstance calls cost more than the fused sum
    # of the demo's 337 squared parameters itself.
    if fused is None:
        every_term_native = all(map(isinstance, values, itertools.repeat(agrad.Value)))
        fused = fused_sums(None, agrad.Value if values and every_term_native else None)
    return agrad.sum(values) if fused else builtins.sum(values)


def _is_value(x: object) -> bool:
    return isinstance(x, (agrad.Value, agrad.pure.Value))


def _pairs(predictions: Sequence[Any], targets: Sequence[Any]) -> list[tuple[Any, Any]]:
    predictions, targets = list(predictions), list(targets)
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions and targets differ in length: {len(predictions)} and {len(targets)}"
        )
    if not predictions:
        raise ValueError("a loss needs at least one prediction")
    return list(zip(predictions, targets, strict=True))


def mse(predictions: Sequence[Any], targets: Sequence[Any], *, fused: bool | None = None) -> Any:
    """The mean squared error, the book's J(w, b), written as the chapter
    writes it: ``sum((y - yhat)**2) / n``.

    The sum is one ``agrad.sum`` node when every term is an ``agrad.Value``
    (the same data and gradients as the chain of ``+``, bit for bit), unless
    ``fused=False`` asks for the chain.

    >>> import agrad
    >>> from agrad import nn
    >>> nn.mse([agrad.Value(1.0), agrad.Value(3.0)], [0.0, 3.0])
    Value(: 0.5)
    >>> nn.mse([agrad.Value(1.0), agrad.Value(3.0)], [0.0, 3.0], fused=False)
    Value(: 0.5)
    """
    pairs = _pairs(predictions, targets)
    return _sum([(y - yhat) ** 2 for yhat, y in pairs], fused) / len(pairs)


def hinge_loss(
    scores: Sequence[Any],
    targets: Sequence[Any],
    parameters: Sequence[Any] = (),
    alpha: float = 1e-4,
) -> Any:
    """micrograd's demo loss: the mean of ``relu(1 - y*score)`` for labels y of
    -1 and 1, plus ``alpha`` times the sum of the squared ``parameters``
    (L2 regularisation), in the demo's order of operations.

    >>> import agrad
    >>> from agrad import nn
    >>> scores, w = [agrad.Value(0.5), agrad.Value(-2.0)], agrad.Value(1.0)
    >>> nn.hinge_loss(scores, [1, -1], [w], alpha=0.1)
    Value(: 0.35)
    """
    pairs = _pairs(scores, targets)
    for _, y in pairs:
        # A label that is a Value (agrad.compile makes numeric arguments input
        # Values) is used as the number it holds, unchecked: checking it would
        # make the graph depend on the labels, which it does not otherwise.
        if not _is_value(y) and (y not in (-1, 1) or isinstance(y, bool)):
            raise ValueError(f"hinge_loss takes labels -1 and 1, not {y!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number, not {type(alpha).__name__!r}")
    losses = [(1 + -y * score).relu() for score, y in pairs]
    data_loss = _sum(losses) * (1.0 / len(losses))
    parameters = list(parameters)
    if not parameters:
        return data_loss
    return data_loss + alpha * _sum([p * p for p in parameters])


def binary_cross_entropy(logits: Sequence[Any], targets: Sequence[Any]) -> Any:
    """The mean of ``-log(sigmoid(z))`` for label 1 and ``-log(sigmoid(-z))``
    (that is ``-log(1 - sigmoid(z))``) for label 0, from the logits ``z``.
    Written with ``sigmoid(-z)`` so a confident right answer does not take the
    log of 1 - 1.0 = 0.

    >>> import agrad
    >>> from agrad import nn
    >>> logit = agrad.Value(0.0)
    >>> loss = nn.binary_cross_entropy([logit], [1])
    >>> loss.backward()
    >>> loss, logit.grad
    (Value(: 0.6931471805599453), -0.5)
    """
    pairs = _pairs(logits, targets)
    terms = []
    for z, y in pairs:
        if _is_value(y):  # (an input of agrad.compile): compared, so a guard there
            one, zero = y >= 1 and y <= 1, y >= 0 and y <= 0
        else:
            one, zero = y == 1 and not isinstance(y, bool), y == 0 and not isinstance(y, bool)
        if not (one or zero):
            # (a Value's repr would read its data, which agrad.compile refuses)
            shown = "a Value holding another number" if _is_value(y) else repr(y)
            raise ValueError(f"binary_cross_entropy takes labels 0 and 1, not {shown}")
        terms.append((z if one else -z).sigmoid().log())
    return -_sum(terms) / len(terms)


def accuracy(scores: Sequence[Any], targets: Sequence[Any], threshold: float = 0.0) -> float:
    """The fraction of ``scores`` on the same side of ``threshold`` as their
    ``targets``: with the default 0, scores or logits against labels -1 and 1
    (micrograd's demo) or 0 and 1; pass 0.5 for probabilities.

    >>> from agrad import nn
    >>> nn.accuracy([0.5, -2.0, 1.0], [1, -1, -1])
    0.6666666666666666
    """
    pairs = _pairs(scores, targets)
    right = 0
    for score, y in pairs:
        s = score.data if hasattr(score, "data") else score
        right += (y > threshold) == (s > threshold)
    return right / len(pairs)
