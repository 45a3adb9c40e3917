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
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

import agrad
import agrad.pure
from agrad import nn, optim
from agrad._checks import checked_rng, fused_sums

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "ENGINES",
    "METHODS",
    "Fit",
    "LinReg",
    "Uncertainty",
    "compare_fits",
    "format_comparison",
    "format_uncertainty",
    "gaussian_log_likelihood",
    "least_squares",
    "model_fit",
    "print_weights",
    "sample_batch",
    "stability_limit",
    "standardize",
    "student_t_quantile",
    "train",
    "uncertainty",
]

#: The engines by the names the command line uses.
ENGINES = {"native": agrad.Value, "pure": agrad.pure.Value}
#: How ``train`` steps: ``"gd"`` gradient descent (the book's), ``"newton"``
#: Newton's method (solves H d = g, the Hessian from ``agrad.hessian``).
METHODS = ("gd", "newton")
#: ``train``'s learning rate when none is given, per method: the full Newton step is 1.
DEFAULT_LEARNING_RATES = {"gd": 0.001, "newton": 1.0}


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
    learning_rate: float | None = None,
    n_epochs: int = 1000,
    batch_size: int | None = None,
    *,
    log_every: int | None = 50,
    log: Callable[[str], object] | None = None,
    history: list | None = None,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - the name agrad.compile has
    rng: random.Random | ModuleType = random,
    method: str = "gd",
):
    """Gradient descent as in the book, or Newton's method; returns ``model``.

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

    ``method="newton"`` steps by Newton's method instead: each epoch solves
    ``H d = g`` for the loss's gradient ``g`` and Hessian ``H``
    (``agrad.hessian``; through ``agrad.compile`` with ``compile=True``, the
    same bits) and moves the parameters by ``learning_rate * d``.  Its
    learning rate defaults to 1, the full step, which lands on the minimum of
    a quadratic loss (least squares) in one epoch; gradient descent's to
    0.001.  A singular Hessian (fewer examples than parameters, a feature
    that is another's multiple) is a ValueError.

    Gradient descent on a quadratic loss converges only below
    ``stability_limit(model, xs, ys)`` (2 / the Hessian's largest
    eigenvalue): a diverging run's OverflowError says that limit, computed at
    the starting weights.

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
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__!r}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; the methods are {', '.join(METHODS)}")
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES[method]
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
    # the starting weights: a diverging run's stability limit is computed there
    start = [p.data for p in parameters]
    newton = method == "newton"
    loss_of = model.loss
    loss_and_hessian = _loss_and_hessian(model, parameters) if newton else None
    if compile:
        if not all(isinstance(p, agrad.Value) for p in parameters):
            raise ValueError(
                "train(compile=True) needs a model on the compiled engine (agrad.Value)"
            )
        loss_of = agrad.compile(model.loss)
        if newton:
            loss_and_hessian = _compiled_loss_and_hessian(model, parameters)

    epochs = range(n_epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="training", unit="epoch", file=sys.stderr, leave=False)
        if log is None:
            log = epochs.write  # keeps the bar intact under the log lines
    if log is None:
        log = print

    def diverged(k: int, what: str) -> OverflowError:
        if newton:
            why = f"Newton's method with step {learning_rate} does not converge on this loss"
        else:
            why = _too_large(model, parameters, start, xs, ys, learning_rate)
        return OverflowError(f"training diverged at epoch {k}{what} ({why})")

    for k in epochs:
        try:
            batch = (xs, ys) if batch_size is None else sample_batch(xs, ys, batch_size, rng)
            if newton:
                assert loss_and_hessian is not None
                loss, hessian = loss_and_hessian(*batch)
                optimizer.zero_grad()
                loss.backward()
                _newton_step(parameters, hessian, learning_rate)
            else:
                loss = loss_of(*batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        except OverflowError as error:
            raise diverged(k, f": {_in_words(error)}") from error
        if not math.isfinite(loss.data):
            raise diverged(k, f": the loss is {loss.data}")
        if history is not None:
            history.append(float(loss.data))
        if log_every and k % log_every == 0:
            log(f"{k:3} Loss: {loss.data:5.3f} {model}")
    return model


def _loss_and_hessian(model, parameters: list) -> Callable:
    def loss_and_hessian(xs: Sequence, ys: Sequence) -> tuple[Any, np.ndarray]:
        loss = model.loss(xs, ys)
        return loss, agrad.hessian(loss, parameters)

    return loss_and_hessian


def _compiled_loss_and_hessian(model, parameters: list) -> Callable:
    # agrad.compile records a function returning Values, never numbers: the
    # loss and the Hessian's entries, read back into an array after each replay
    @agrad.compile
    def values(xs: Sequence, ys: Sequence) -> list:
        loss = model.loss(xs, ys)
        return [loss, *agrad.hessian(loss, parameters, create_graph=True).flat]

    n = len(parameters)

    def loss_and_hessian(xs: Sequence, ys: Sequence) -> tuple[Any, np.ndarray]:
        loss, *entries = values(xs, ys)
        return loss, np.array([h.data for h in entries], dtype=np.float64).reshape(n, n)

    return loss_and_hessian


def _newton_step(parameters: list, hessian: np.ndarray, learning_rate: float) -> None:
    """Solve H d = g and move each parameter by ``learning_rate * d``."""
    gradient = np.array([p.grad for p in parameters], dtype=np.float64)
    if not np.isfinite(hessian).all():
        raise OverflowError("the Hessian is not finite")
    try:
        step = np.linalg.solve(hessian, gradient)
    except np.linalg.LinAlgError:
        raise ValueError(
            "Newton's method needs an invertible Hessian, and this loss's is singular "
            "(fewer examples than parameters, or a feature that is a multiple of another?)"
        ) from None
    for p, d in zip(parameters, step.tolist(), strict=True):
        moved = p.data - learning_rate * d
        if not math.isfinite(moved):
            raise OverflowError(f"a Newton step would make {p.label or 'a parameter'} {moved}")
        p.data = moved


def stability_limit(model, xs: Sequence, ys: Sequence) -> float:
    """The largest learning rate at which full-batch gradient descent on
    ``model.loss(xs, ys)`` converges: 2 / the largest eigenvalue of the
    loss's Hessian at the model's parameters (``agrad.hessian``).  On the
    chapter's linear models the loss is quadratic, its Hessian the same
    everywhere, and the limit exact: a step of ``lr`` multiplies the error
    along the top eigenvector by ``1 - lr * lambda_max``, whose size passes 1
    at ``lr = 2 / lambda_max``.  ``inf`` when no eigenvalue is positive.

    >>> from agrad.linreg import LinReg, stability_limit
    >>> model = LinReg(n_inputs=1)
    >>> stability_limit(model, [[1.0], [-1.0]], [0.0, 0.0])  # Hessian [[2, 0], [0, 2]]
    1.0
    """
    parameters = list(model.parameters())
    h = agrad.hessian(model.loss(xs, ys), parameters)
    largest = float(np.linalg.eigvalsh((h + h.T) / 2)[-1])
    return 2.0 / largest if largest > 0 else math.inf


def _too_large(model, parameters: list, start: list, xs, ys, learning_rate: float) -> str:
    """Why a gradient-descent run diverged: its learning rate beside the
    stability limit of the full-batch loss at the starting weights."""
    now = [p.data for p in parameters]
    try:
        for p, x in zip(parameters, start, strict=True):
            p.data = x
        limit = stability_limit(model, xs, ys)
    except (ArithmeticError, ValueError, TypeError):
        # a model the Hessian cannot be taken of (plain floats, tensors), or a
        # loss that overflows already at the start
        return f"learning rate {learning_rate} too large for this data?"
    finally:
        for p, x in zip(parameters, now, strict=True):
            p.data = x
    if learning_rate > limit:
        return (
            f"learning rate {learning_rate} is above {limit:.4g}, the largest stable one: "
            f"2 / the largest eigenvalue of the full-batch loss's Hessian"
        )
    return (
        f"learning rate {learning_rate}; the full-batch loss's largest stable one is "
        f"{limit:.4g} (2 / the largest eigenvalue of its Hessian), and a mini-batch's "
        f"Hessian can have a larger eigenvalue"
    )


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


def _log_beta(a: float, b: float) -> float:
    """log B(a, b); for b = 1/2 and a large, where lgamma's large values would
    cancel, by the asymptotic series of log Gamma(a + 1/2) - log Gamma(a)."""
    if b == 0.5 and a >= 20:
        ratio = (
            0.5 * math.log(a)
            - 1 / (8 * a)
            + 1 / (192 * a**3)
            + 1 / (640 * a**5)
            - 17 / (14336 * a**7)
        )
        return math.lgamma(0.5) - ratio
    if a == 0.5 and b >= 20:
        return _log_beta(b, a)
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _regularized_incomplete_beta(x: float, y: float, a: float, b: float) -> float:
    """I_x(a, b), ``y`` = 1 - x given apart (it may be far more exact than
    1 - x computed), by its continued fraction (modified Lentz) in the half
    where it converges fast; the other by the symmetry I_x(a, b) = 1 - I_y(b, a)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _regularized_incomplete_beta(y, x, b, a)
    front = math.exp(a * math.log(x) + b * math.log(y) - _log_beta(a, b))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return front * fraction / a


def student_t_quantile(probability: float, dof: int) -> float:
    """The ``probability`` quantile of Student's t with ``dof`` degrees of
    freedom (``scipy.stats.t.ppf``, without SciPy): the distribution
    function from the regularized incomplete beta function, inverted by
    bisection: to 1e-12 relative up to 10,000 degrees of freedom, 1e-10 at a million.

    >>> from agrad.linreg import student_t_quantile
    >>> round(student_t_quantile(0.975, 10), 6), round(student_t_quantile(0.975, 10**9), 6)
    (2.228139, 1.959964)
    """
    if isinstance(dof, bool) or not isinstance(dof, int):
        raise TypeError(f"dof must be an int, not {type(dof).__name__!r}")
    if dof < 1:
        raise ValueError(f"dof must be at least 1, not {dof}")
    if isinstance(probability, bool) or not isinstance(probability, (int, float)):
        raise TypeError(f"probability must be a number, not {type(probability).__name__!r}")
    if not 0 < probability < 1:
        raise ValueError(f"probability must be between 0 and 1, not {probability!r}")
    if probability < 0.5:
        return -student_t_quantile(1.0 - probability, dof)
    tail = 1.0 - probability  # P(T > t) = I_{dof / (dof + t^2)}(dof / 2, 1 / 2) / 2

    def upper_tail(t: float) -> float:
        x, y = dof / (dof + t * t), t * t / (dof + t * t)
        return 0.5 * _regularized_incomplete_beta(x, y, dof / 2, 0.5)

    low, high = 0.0, 1.0
    while upper_tail(high) > tail:
        low, high = high, 2 * high
    while True:
        middle = (low + high) / 2
        if middle in (low, high):
            return middle
        if upper_tail(middle) > tail:
            low = middle
        else:
            high = middle


@dataclass(frozen=True)
class Uncertainty:
    """How well the data determine each weight of a least-squares fit.

    ``names`` are the features' and then ``"bias"``; ``estimates`` the
    least-squares weights and bias; ``standard_errors`` the square roots of
    the diagonal of the inverse ``hessian`` (the Hessian of the Gaussian
    negative log-likelihood at the fit, with ``sigma`` the noise estimated as
    sqrt(RSS / (n - p - 1))); ``t_values`` the estimates over their standard
    errors; ``intervals`` a row ``(low, high)`` each, at ``confidence``, from
    Student's t with ``dof`` = n - p - 1 degrees of freedom.  These are
    statsmodels' OLS ``params``, ``bse``, ``tvalues`` and ``conf_int()``.

    >>> from agrad.linreg import uncertainty
    >>> u = uncertainty([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.2, 4.8, 7.1])
    >>> u.dof, round(u.sigma, 4), u.intervals.round(3).tolist()
    (2, 0.2086, [[1.589, 2.391], [0.289, 1.791]])
    """

    names: tuple[str, ...]
    estimates: np.ndarray
    standard_errors: np.ndarray
    t_values: np.ndarray
    intervals: np.ndarray
    confidence: float
    sigma: float
    dof: int
    hessian: np.ndarray = field(repr=False)


def uncertainty(
    X,
    ys,
    feature_names: Sequence[str] | None = None,
    *,
    confidence: float = 0.95,
    value_class: type | None = None,
) -> Uncertainty:
    """Standard errors, t-values and intervals of the least-squares weights
    and bias, from the Hessian of the Gaussian negative log-likelihood.

    The negative log-likelihood of the targets under the linear model with
    noise N(0, sigma^2) is ``n/2 log(2 pi sigma^2) + SSE / (2 sigma^2)``.
    Its Hessian in the weights and bias, taken by ``agrad.hessian`` at the
    least-squares fit with sigma^2 = RSS / (n - p - 1), is the Fisher
    information; its inverse is the weights' covariance, whose diagonal's
    square roots are the standard errors.  ``value_class`` is the engine
    that takes the Hessian (default ``agrad.Value``; both give the same bits).

    ValueError when the data do not determine it: no more rows than
    parameters, a fit that is exact (sigma is 0), or a singular Hessian.

    >>> from agrad.linreg import uncertainty
    >>> u = uncertainty([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.2, 4.8, 7.1], ["x"])
    >>> u.names, u.estimates.round(3).tolist(), u.standard_errors.round(3).tolist()
    (('x', 'bias'), [1.99, 1.04], [0.093, 0.174])
    """
    X_arr, y = _as_table(X, ys)
    n, p = X_arr.shape
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise TypeError(f"confidence must be a number, not {type(confidence).__name__!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")
    names = (
        [f"w{i}" for i in range(p)] if feature_names is None else [str(f) for f in feature_names]
    )
    if len(names) != p:
        raise ValueError(f"{len(names)} feature names for {p} weights")
    dof = n - p - 1
    if dof < 1:
        raise ValueError(
            f"standard errors need more rows than parameters: {n} rows, {p + 1} parameters"
        )
    fit = least_squares(X_arr, y)
    residuals = y - (X_arr @ fit.weights + fit.bias)
    variance = float(residuals @ residuals) / dof
    # lstsq leaves residuals of rounding size where the exact ones are 0 (the
    # threshold studies.gap_to_least_squares uses): no noise to estimate
    if float(residuals @ residuals) / n <= 1e-20 * float(np.mean(y**2)):
        raise ValueError("the fit is exact (every residual is 0): sigma is 0 and so is every error")
    # the model at the least-squares fit; its own generator, so the caller's
    # random state is left as it was (the starting weights are overwritten)
    model = LinReg(n_inputs=p, value_class=value_class, rng=random.Random(0))
    parameters = model.parameters()
    for parameter, estimate in zip(parameters, [*fit.weights.tolist(), fit.bias], strict=True):
        parameter.data = estimate
    # SSE / (2 sigma^2) is the mean squared error times n / (2 sigma^2)
    nll = model.loss(X_arr.tolist(), y.tolist()) * (n / (2 * variance)) + n / 2 * math.log(
        2 * math.pi * variance
    )
    hessian = agrad.hessian(nll, parameters)
    try:
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the likelihood's Hessian is singular: a feature is a combination of others"
        ) from None
    standard_errors = np.sqrt(np.diag(covariance))
    estimates = np.array([*fit.weights, fit.bias])
    half_width = student_t_quantile((1 + confidence) / 2, dof) * standard_errors
    return Uncertainty(
        names=(*names, "bias"),
        estimates=estimates,
        standard_errors=standard_errors,
        t_values=estimates / standard_errors,
        intervals=np.column_stack([estimates - half_width, estimates + half_width]),
        confidence=float(confidence),
        sigma=math.sqrt(variance),
        dof=dof,
        hessian=hessian,
    )


def format_uncertainty(u: Uncertainty) -> str:
    """A table of ``u``: each weight (largest absolute t-value first, the bias
    last) with its standard error, t-value and interval.

    >>> from agrad.linreg import format_uncertainty, uncertainty
    >>> print(format_uncertainty(uncertainty([[0.0], [1.0], [2.0], [3.0]], [1.0, 3.2, 4.8, 7.1])))
            weight   std. error   t-value   95% interval
    w0       1.990        0.093     21.34   [ 1.589,  2.391]
    bias     1.040        0.174      5.96   [ 0.289,  1.791]
    """
    width = max(len(name) for name in u.names)
    level = f"{100 * u.confidence:g}% interval"
    lines = [f"{'':<{width}}   {'weight':>7}   {'std. error':>10}   {'t-value':>7}   {level}"]
    *weights, bias = range(len(u.names))
    for i in [*sorted(weights, key=lambda i: abs(u.t_values[i]), reverse=True), bias]:
        low, high = u.intervals[i]
        lines.append(
            f"{u.names[i]:<{width}}   {u.estimates[i]:7.3f}   {u.standard_errors[i]:10.3f}   "
            f"{u.t_values[i]:7.2f}   [{low:6.3f}, {high:6.3f}]"
        )
    return "\n".join(lines)
