"""Linear regression the autograd way: the chapter's model, training loop and
the tools to interpret what it learned.

Everything random is drawn from the module-level :mod:`random` in the order
the book draws it, so ``random.seed(42)`` reproduces the book's printed runs::

    >>> import random
    >>> from agrad.datasets import univariate_data
    >>> from agrad.linreg import LinReg, train
    >>> random.seed(42)
    >>> xs, ys = univariate_data()
    >>> LinReg()
    LinReg(w=0.011, b=0.000)

The model and the training loop work on either engine: pass
``value_class=agrad.pure.Value`` for the pure-Python one.  ``train`` works on
any model that has ``parameters()`` and ``loss(xs, ys)``.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

import agrad
import agrad.pure
from agrad import nn, optim
from agrad._checks import checked_rng, fused_sums

__all__ = [
    "ENGINES",
    "Fit",
    "LinReg",
    "compare_fits",
    "format_comparison",
    "gaussian_log_likelihood",
    "least_squares",
    "model_fit",
    "print_weights",
    "sample_batch",
    "standardize",
    "train",
]

#: The engines by the names the command line uses.
ENGINES = {"native": agrad.Value, "pure": agrad.pure.Value}


def _chain_dot(weights, x):
    return sum(w * xi for w, xi in zip(weights, x, strict=True))


def sample_batch(
    xs: Sequence, ys: Sequence, m: int, rng: random.Random | ModuleType = random
) -> tuple[list, list]:
    """``m`` examples drawn without replacement, with ``random.sample`` as in
    the book (``rng``: the ``random`` module or a ``random.Random``).

    >>> import random
    >>> from agrad.linreg import sample_batch
    >>> rng = random.Random(0)
    >>> sample_batch([1, 2, 3, 4], ["a", "b", "c", "d"], 2, rng)
    ([4, 2], ['d', 'b'])
    """
    _check_batch(xs, ys, m)
    indices = rng.sample(range(len(xs)), m)
    return [xs[i] for i in indices], [ys[i] for i in indices]


def _check_batch(xs: Sequence, ys: Sequence, m: int) -> None:
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length: {len(xs)} inputs, {len(ys)} targets")
    if isinstance(m, bool) or not isinstance(m, int):
        raise TypeError(f"batch size must be an int, not {type(m).__name__!r}")
    if not 1 <= m <= len(xs):
        raise ValueError(
            f"batch size must be between 1 and the number of examples ({len(xs)}), not {m}"
        )


class LinReg:
    """The book's linear model.

    ``LinReg()`` is univariate (parameters ``w`` and ``b``, a number as input);
    ``LinReg(n_inputs=k)`` is multivariate (``weights`` and ``b``, a sequence
    of ``k`` numbers as input).  Each weight starts at ``random.uniform(-1, 1)``
    and the bias at 0.0, drawn in the book's order.  ``feature_names`` names
    the weights (they become the Values' labels, and ``print_weights`` and the
    plots use them); ``value_class`` is the engine's Value class (default
    ``agrad.Value``).

    The keyword-only arguments run the same model outside the book's setting,
    as the benchmarks do:

    * ``number`` makes each parameter from its starting value, in place of
      ``value_class``, for a number type that takes no label: ``float``, or a
      function returning a torch tensor.  Give one or the other.
    * ``rng`` is what the starting weights are drawn from: the ``random``
      module (the default, as in the book) or a ``random.Random`` of your own.
    * ``fused`` chooses how the sums are written: ``True`` as one
      ``agrad.sum`` / ``agrad.dot`` node (``agrad.Value`` only), ``False`` as
      the book's chain of ``+``.  By default they are fused on ``agrad.Value``
      and chained on anything else; both give the same bits.

    >>> import random
    >>> from agrad.linreg import LinReg
    >>> random.seed(42)
    >>> model = LinReg()
    >>> model
    LinReg(w=0.279, b=0.000)
    >>> model(2.0)
    Value(: 0.557707193831535)
    >>> LinReg(n_inputs=2, feature_names=["height", "weight"]).parameters()
    [Value(height: -0.9499784895546661), Value(weight: -0.4499413632617615), Value(b: 0.0)]
    """

    def __init__(
        self,
        n_inputs: int | None = None,
        feature_names: Sequence[str] | None = None,
        value_class: type | None = None,
        *,
        number: Callable[[float], Any] | None = None,
        rng: random.Random | ModuleType = random,
        fused: bool | None = None,
    ):
        if n_inputs is not None and (isinstance(n_inputs, bool) or not isinstance(n_inputs, int)):
            raise TypeError(f"n_inputs must be an int or None, not {type(n_inputs).__name__!r}")
        if n_inputs is not None and n_inputs < 1:
            raise ValueError(f"n_inputs must be at least 1, not {n_inputs}")
        if value_class is not None and not isinstance(value_class, type):
            raise TypeError(
                f"value_class must be a Value class such as agrad.Value, not {value_class!r}"
            )
        if number is not None and not callable(number):
            raise TypeError(f"number must be callable, not {type(number).__name__!r}")
        if number is not None and value_class is not None:
            raise ValueError("give value_class or number, not both")
        rng = checked_rng(rng)
        engine = None if number is not None else agrad.Value if value_class is None else value_class
        # On the compiled engine the sums are fused nodes (agrad.sum, agrad.dot):
        # the same bits as the book's chain of additions, with a fraction of the nodes.
        self._fused = fused_sums(fused, engine)
        n_weights = 1 if n_inputs is None else n_inputs
        if feature_names is not None:
            feature_names = [str(name) for name in feature_names]
            if len(feature_names) != n_weights:
                raise ValueError(f"{len(feature_names)} feature names for {n_weights} weights")
        self.n_inputs = n_inputs
        self.feature_names = feature_names
        weight_labels = feature_names or (
            ["w"] if n_inputs is None else [f"w{i}" for i in range(n_inputs)]
        )
        starts = [*(rng.uniform(-1, 1) for _ in weight_labels), 0.0]
        self.value_class: type | None = engine
        if number is not None:
            parameters = [number(x) for x in starts]
        else:
            assert engine is not None
            labels = [*weight_labels, "b"]
            parameters = [engine(x, label=label) for x, label in zip(starts, labels, strict=True)]
        *weights, self.b = parameters
        if n_inputs is None:
            self.w = weights[0]
        else:
            self.weights = weights

    @property
    def univariate(self) -> bool:
        return self.n_inputs is None

    def weight_values(self) -> list:
        """The weight Values in input order (``[w]`` for the univariate model)."""
        return [self.w] if self.univariate else list(self.weights)

    def __call__(self, x):
        if self.univariate:
            return self.w * x + self.b
        if len(x) != self.n_inputs:
            raise ValueError(f"the model takes {self.n_inputs} inputs, got {len(x)}")
        dot = agrad.dot if self._fused else _chain_dot
        return dot(self.weights, x) + self.b

    def parameters(self) -> list:
        return [*self.weight_values(), self.b]

    def loss(self, xs: Sequence, ys: Sequence):
        """The mean squared error of the model on ``xs``, ``ys`` (a Value)."""
        if len(xs) != len(ys):
            raise ValueError(f"xs and ys differ in length: {len(xs)} inputs, {len(ys)} targets")
        if len(xs) == 0:
            raise ValueError("the loss needs at least one example")
        return nn.mse([self(x) for x in xs], ys, fused=self._fused)

    def batch_loss(self, xs: Sequence, ys: Sequence, m: int = 10):
        """The loss on ``m`` examples drawn at random, as in the book."""
        return self.loss(*sample_batch(xs, ys, m))

    def __repr__(self) -> str:
        def shown(p):  # a Value's data; a plain number (number=float) as it is
            return format(getattr(p, "data", p), ".3f")

        if self.univariate:
            return f"LinReg(w={shown(self.w)}, b={shown(self.b)})"
        weights_str = ", ".join(f"w{i}={shown(w)}" for i, w in enumerate(self.weights))
        return f"LinReg({weights_str}, b={shown(self.b)})"


def train(
    model,
    xs: Sequence,
    ys: Sequence,
    learning_rate: float = 0.001,
    n_epochs: int = 1000,
    batch_size: int | None = None,
    *,
    log_every: int | None = 50,
    log: Callable[[str], object] | None = None,
    history: list | None = None,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - the name agrad.compile has
    rng: random.Random | ModuleType = random,
):
    """Gradient descent as in the book; returns ``model``.

    Each epoch computes the loss (on the whole data when ``batch_size`` is
    None, else on ``batch_size`` examples drawn with ``random.sample``), zeroes
    the parameters' gradients, backpropagates and steps against the gradient
    with ``agrad.optim.SGD``: the book's ``p.data -= learning_rate * p.grad``,
    to the bit.

    Every ``log_every`` epochs (None or 0: never) it logs the book's line
    ``f"{k:3} Loss: {loss.data:5.3f} {model}"`` through ``log`` (default:
    print to stdout).  If ``history`` is a list, the loss of every epoch is
    appended to it as a float.  ``progress=True`` shows a tqdm progress bar on
    stderr.  Mini-batches are drawn from ``rng``: the ``random`` module (as
    the book does) or a ``random.Random`` of your own.

    A learning rate too large for the data makes the parameters blow up: that
    raises OverflowError (from the arithmetic itself, from a step that would
    make a parameter infinite, or here when the loss stops being finite)
    naming the epoch, rather than training on ``inf``.

    ``compile=True`` (compiled engine only) computes the loss with
    ``agrad.compile(model.loss)``: its graph is recorded once per batch shape
    and replayed in C++, with the same numbers bit for bit; batches are still
    drawn here, in Python.

    >>> import random
    >>> from agrad.datasets import univariate_data
    >>> from agrad.linreg import LinReg, train
    >>> random.seed(42)
    >>> xs, ys = univariate_data()
    >>> model = train(LinReg(), xs, ys, learning_rate=0.01, n_epochs=101, log_every=50)
      0 Loss: 78.496 LinReg(w=0.468, b=-0.079)
     50 Loss: 16.812 LinReg(w=2.588, b=-0.682)
    100 Loss: 16.782 LinReg(w=2.570, b=-0.800)
    """
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int):
        raise TypeError(f"n_epochs must be an int, not {type(n_epochs).__name__!r}")
    if n_epochs < 0:
        raise ValueError(f"n_epochs must not be negative, not {n_epochs}")
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not 0 <= learning_rate < math.inf
    ):
        raise ValueError(f"learning_rate must be a finite number, 0 or more, not {learning_rate!r}")
    if log_every is not None and (
        isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 0
    ):
        raise ValueError(f"log_every must be a non-negative int or None, not {log_every!r}")
    if batch_size is not None:
        _check_batch(xs, ys, batch_size)  # before any training, and drawing nothing
    parameters = list(model.parameters())
    optimizer = optim.SGD(parameters, lr=learning_rate)
    loss_of = model.loss
    if compile:
        if not all(isinstance(p, agrad.Value) for p in parameters):
            raise ValueError(
                "train(compile=True) needs a model on the compiled engine (agrad.Value)"
            )
        loss_of = agrad.compile(model.loss)

    epochs = range(n_epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="training", unit="epoch", file=sys.stderr, leave=False)
        if log is None:
            log = epochs.write  # keeps the bar intact under the log lines
    if log is None:
        log = print

    for k in epochs:
        try:
            loss = (
                loss_of(xs, ys)
                if batch_size is None
                else loss_of(*sample_batch(xs, ys, batch_size, rng))
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        except OverflowError as error:
            raise OverflowError(
                f"training diverged at epoch {k} (learning rate {learning_rate} "
                f"too large for this data?): {_in_words(error)}"
            ) from error
        if not math.isfinite(loss.data):
            raise OverflowError(
                f"training diverged at epoch {k}: the loss is {loss.data} "
                f"(learning rate {learning_rate} too large for this data?)"
            )
        if history is not None:
            history.append(float(loss.data))
        if log_every and k % log_every == 0:
            log(f"{k:3} Loss: {loss.data:5.3f} {model}")
    return model


def _in_words(error: OverflowError) -> str:
    # Python's float arithmetic raises OverflowError(errno, text), whose str is
    # the tuple "(34, 'Numerical result out of range')": keep the words
    if len(error.args) == 2 and isinstance(error.args[0], int) and isinstance(error.args[1], str):
        return f"a number grew beyond the float range ({error.args[1].lower()})"
    return str(error)


def standardize(
    X: Sequence[Sequence[float]], feature_names: Sequence[str] | None = None
) -> tuple[list[list[float]], np.ndarray, np.ndarray]:
    """Z-scores of each column, as the book normalises: ``(X - mean) / std``
    with the population standard deviation (numpy's default).

    Returns the normalised rows as lists of floats, and the means and standard
    deviations used.  A constant column cannot be normalised: ValueError
    naming it by ``feature_names`` (or its index in a row of ``X``).

    >>> from agrad.linreg import standardize
    >>> rows, mean, std = standardize([[1.0, 10.0], [3.0, 30.0]])
    >>> rows, mean.tolist(), std.tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [2.0, 20.0], [1.0, 10.0])
    """
    X_arr = np.asarray(X, dtype=float)
    if X_arr.ndim != 2 or X_arr.shape[0] == 0:
        raise ValueError(f"standardize needs a non-empty table of rows, got shape {X_arr.shape}")
    mean = X_arr.mean(axis=0)
    std = X_arr.std(axis=0)
    constant = np.flatnonzero(std == 0)
    if constant.size:
        i = int(constant[0])
        name = f"feature {feature_names[i]!r}" if feature_names is not None else f"column {i} of X"
        raise ValueError(f"{name} is constant: it cannot be normalised")
    return ((X_arr - mean) / std).tolist(), mean, std


def _model_feature_names(model, feature_names):
    names = feature_names if feature_names is not None else getattr(model, "feature_names", None)
    weights = model.weight_values()
    if names is None:
        names = ["w"] if model.univariate else [f"w{i}" for i in range(len(weights))]
    names = list(names)
    if len(names) != len(weights):
        raise ValueError(f"{len(names)} feature names for {len(weights)} weights")
    return names, [w.data for w in weights]


def print_weights(model, feature_names: Sequence[str] | None = None, file=None) -> None:
    """The book's table: ``f"{w:6.3f} {name}"``, largest absolute weight first.

    ``feature_names`` defaults to the model's own.

    >>> from agrad.linreg import LinReg, print_weights
    >>> model = LinReg(n_inputs=2, feature_names=["age", "abdomen"])
    >>> model.weights[0].data, model.weights[1].data = 0.1, 5.0
    >>> print_weights(model)
     5.000 abdomen
     0.100 age
    """
    names, weights = _model_feature_names(model, feature_names)
    pairs = sorted(zip(names, weights, strict=True), key=lambda p: abs(p[1]), reverse=True)
    for name, w in pairs:
        print(f"{w:6.3f} {name}", file=file)


@dataclass(frozen=True)
class Fit:
    """A linear fit's weights, bias and how well it explains the data.

    >>> from agrad.linreg import least_squares
    >>> fit = least_squares([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    >>> fit.weights.round(6).tolist(), round(fit.bias, 6), round(fit.sigma, 6)
    ([2.0], 1.0, 0.0)
    """

    weights: np.ndarray
    bias: float
    mse: float
    sigma: float
    log_likelihood: float


def gaussian_log_likelihood(residuals: Sequence[float]) -> tuple[float, float]:
    """The chapter's log-likelihood of residuals under i.i.d. N(0, sigma^2)
    noise, with sigma estimated by maximum likelihood (sigma^2 = mean squared
    residual).  Returns ``(log_likelihood, sigma)``.

    With that sigma, ``-n/2 log(2 pi sigma^2) - SSE / (2 sigma^2)`` is
    ``-n/2 (log(2 pi sigma^2) + 1)``.

    >>> from agrad.linreg import gaussian_log_likelihood
    >>> log_likelihood, sigma = gaussian_log_likelihood([1.0, -1.0, 1.0, -1.0])
    >>> round(log_likelihood, 4), sigma
    (-5.6758, 1.0)
    """
    r = np.asarray(residuals, dtype=float)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("the log-likelihood needs a non-empty sequence of residuals")
    variance = float(np.mean(r**2))
    if variance == 0.0:
        raise ValueError("the residuals are all zero: sigma is 0 and the likelihood is unbounded")
    return -r.size / 2 * (math.log(2 * math.pi * variance) + 1), math.sqrt(variance)


def _fit(weights: np.ndarray, bias: float, X: np.ndarray, y: np.ndarray) -> Fit:
    residuals = y - (X @ weights + bias)
    if not residuals.any():
        # an exact fit: sigma is 0 and the likelihood grows without bound as it shrinks
        log_likelihood, sigma = math.inf, 0.0
    else:
        log_likelihood, sigma = gaussian_log_likelihood(residuals)
    return Fit(
        weights=weights,
        bias=float(bias),
        mse=float(np.mean(residuals**2)),
        sigma=sigma,
        log_likelihood=log_likelihood,
    )


def _as_table(X, ys) -> tuple[np.ndarray, np.ndarray]:
    X_arr = np.asarray(X, dtype=float)
    if X_arr.ndim == 1:
        X_arr = X_arr[:, None]  # univariate inputs
    y = np.asarray(ys, dtype=float)
    if X_arr.ndim != 2 or y.ndim != 1 or X_arr.shape[0] != y.shape[0] or y.size == 0:
        raise ValueError(
            f"need n rows of inputs and n targets, got shapes {X_arr.shape} and {y.shape}"
        )
    return X_arr, y


def least_squares(X, ys) -> Fit:
    """The closed-form least-squares fit (numpy's lstsq with an intercept):
    the minimum that gradient descent is heading for.

    >>> from agrad.linreg import least_squares
    >>> fit = least_squares([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])
    >>> fit.weights.round(6).tolist(), round(fit.bias, 6), round(fit.mse, 6)
    ([2.0], 1.0, 0.0)
    """
    X_arr, y = _as_table(X, ys)
    design = np.column_stack([X_arr, np.ones(len(y))])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return _fit(solution[:-1], float(solution[-1]), X_arr, y)


def model_fit(model, X, ys) -> Fit:
    """The trained model's fit statistics, computed in plain floats.

    >>> from agrad.linreg import LinReg, model_fit
    >>> model = LinReg(n_inputs=1)
    >>> model.weights[0].data, model.b.data = 2.0, 1.0
    >>> fit = model_fit(model, [[0.0], [1.0]], [1.0, 3.0])
    >>> fit.mse, fit.weights.tolist(), fit.bias
    (0.0, [2.0], 1.0)
    """
    X_arr, y = _as_table(X, ys)
    weights = np.array([w.data for w in model.weight_values()], dtype=float)
    if weights.size != X_arr.shape[1]:
        raise ValueError(
            f"the model has {weights.size} weights but the data has {X_arr.shape[1]} columns"
        )
    return _fit(weights, float(model.b.data), X_arr, y)


def compare_fits(model, X, ys) -> tuple[Fit, Fit]:
    """``(trained, least_squares)`` fits of ``model`` on the same data.

    >>> import random
    >>> from agrad.linreg import LinReg, compare_fits, train
    >>> random.seed(0)
    >>> xs, ys = [[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0]
    >>> model = train(LinReg(n_inputs=1), xs, ys, learning_rate=0.1, n_epochs=500, log_every=None)
    >>> trained, exact = compare_fits(model, xs, ys)
    >>> round(trained.mse, 6), round(exact.mse, 6)
    (0.0, 0.0)
    """
    return model_fit(model, X, ys), least_squares(X, ys)


def format_comparison(feature_names: Sequence[str], fits: dict[str, Fit]) -> str:
    """A table of weights, one column per fit (sorted by the first fit's
    absolute weights), then bias, MSE, sigma and log-likelihood rows.

    >>> from agrad.linreg import format_comparison, least_squares
    >>> X, ys = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]], [2.0, 3.0, 8.0, 8.0]
    >>> print(format_comparison(["a", "b"], {"least squares": least_squares(X, ys)}))
                     least squares
    a                        2.000
    b                        1.500
    bias                     0.750
    MSE                      0.062
    sigma                    0.250
    log-likelihood          -0.131
    """
    if not fits:
        raise ValueError("format_comparison needs at least one fit")
    titles = list(fits)
    first = fits[titles[0]]
    names = list(feature_names)
    if any(len(f.weights) != len(names) for f in fits.values()):
        raise ValueError("every fit needs one weight per feature name")
    name_width = max(len(n) for n in [*names, "log-likelihood"])
    col = max(12, *(len(t) for t in titles))
    # columns three spaces apart: a title with spaces of its own ("raw GD, lr 1e-05")
    # must not read as part of its neighbour's
    gap = "   "
    lines = [" " * name_width + "".join(f"{gap}{t:>{col}}" for t in titles)]
    for i in sorted(range(len(names)), key=lambda i: abs(first.weights[i]), reverse=True):
        lines.append(
            f"{names[i]:<{name_width}}"
            + "".join(f"{gap}{f.weights[i]:>{col}.3f}" for f in fits.values())
        )
    for label, attr in [
        ("bias", "bias"),
        ("MSE", "mse"),
        ("sigma", "sigma"),
        ("log-likelihood", "log_likelihood"),
    ]:
        lines.append(
            f"{label:<{name_width}}"
            + "".join(f"{gap}{getattr(f, attr):>{col}.3f}" for f in fits.values())
        )
    return "\n".join(lines)
