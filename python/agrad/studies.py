"""The chapter's studies as functions that return their results.

``python -m agrad`` is these functions with a command line around them: it
parses the options, calls one, prints and plots what it returns.  Each study
takes plain keyword arguments and returns a frozen dataclass:

- ``univariate()``: the book's 5-point fit, and the untrained model and loss
  the book shows first;
- ``batch()``: 1000 points, mini-batch against full-batch gradient descent;
- ``multivariate()``: three features beside the least-squares solution;
- ``bodyfat()``: the body-fat study, or the same on a CSV of your own
  (``load_regression_data`` reads it once for many runs), and the book's
  exercise on unnormalised data with ``raw=True``;
- ``graph()``: the book's 5-point loss, backpropagated, ready for ``draw_dot``;
- ``moons()``: micrograd's demo, a 2-16-16-1 ``agrad.nn.MLP`` classifying
  two moons.

A study is meant to be called many times (a sweep over seeds or learning
rates), so it is deterministic and quiet: it draws and trains as the book
does, from a ``random.Random(seed)`` of its own, which gives the very numbers
the book's code draws after ``random.seed(seed)``.  It never touches the
global ``random``, so nothing else in the process (a thread, a cluster
worker's event loop) can change a run, or be changed by it.  It prints
nothing; ``log`` receives the book's training lines every ``log_every``
epochs if you want them.  The bundled body-fat table is read once per process.
Only ``seconds`` differs between two calls with the same arguments.

The four training studies share one shape: their settings become one
``Training``, and each returns a ``StudyResult`` (its trained ``run``, the
``least_squares`` fit of the same data and the ``gap`` between them) with the
study's own extras beside.  So a sweep reads any of them the same way.

This module and ``agrad.sweep`` and ``python -m agrad`` are the chapter's
application; they use the library (``agrad.linreg``, ``agrad.nn``, ...)
through its public names, and the library imports none of them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agrad import datasets, linreg, nn, optim
from agrad.linreg import Fit, LinReg, Uncertainty

__all__ = [
    "BODYFAT_SETTINGS",
    "MAX_EPOCHS",
    "MAX_SAMPLES",
    "BatchResult",
    "BodyFatResult",
    "GraphResult",
    "MoonsResult",
    "MultivariateResult",
    "RawRun",
    "RegressionData",
    "Run",
    "StudyResult",
    "Training",
    "UnivariateResult",
    "batch",
    "bodyfat",
    "gap_to_least_squares",
    "graph",
    "load_regression_data",
    "moons",
    "multivariate",
    "univariate",
]

Log = Callable[[str], object]

# Limits that keep a run within a machine's memory and a person's patience:
# every epoch builds a graph of all the points it sees (about 400 bytes a
# point on the compiled engine, 3 KB on the pure one), and the loss of every
# epoch is kept for the plots.  The command line and the sweeps hold to them.
#: The most points a study's synthetic data may have.
MAX_SAMPLES = 100_000
#: The most epochs a study may train for.
MAX_EPOCHS = 1_000_000
#: ``bodyfat``'s training settings where its arguments are None, per method:
#: gradient descent's are the book's; Newton's method takes full steps on the
#: full batch (``batch_size`` None), and its first lands on least squares.
BODYFAT_SETTINGS: dict[str, dict] = {
    "gd": {"epochs": 1000, "learning_rate": 0.05, "batch_size": 20},
    "newton": {"epochs": 2, "learning_rate": 1.0, "batch_size": None},
}


@dataclass(frozen=True)
class Run:
    """One training run: the trained model, its loss at each epoch, its fit
    on all the data, and how long training took.

    >>> from agrad import studies
    >>> run = studies.univariate().run
    >>> run.model, len(run.history), round(run.fit.mse, 3)
    (LinReg(w=2.556, b=-0.892), 500, 16.774)
    """

    model: LinReg
    history: tuple[float, ...] = field(repr=False)  # an epoch's loss each: long
    fit: Fit
    seconds: float


@dataclass(frozen=True)
class Training:
    """How a study trains a model: ``linreg.train``'s settings, mini-batches
    of ``batch_size`` (None: the full batch), the book's lines to ``log``
    every ``log_every`` epochs (no ``log``: none), a progress bar,
    ``compile`` (the loss through ``agrad.compile``: the same bits, faster)
    and the ``method`` (``"gd"`` gradient descent, ``"newton"`` Newton's).

    >>> import random
    >>> from agrad.datasets import univariate_data
    >>> from agrad.linreg import LinReg
    >>> from agrad.studies import Training
    >>> rng = random.Random(42)
    >>> xs, ys = univariate_data(rng=rng)
    >>> run = Training(epochs=500, learning_rate=0.01).run(LinReg(rng=rng), xs, ys, rng)
    >>> run.model, len(run.history)
    (LinReg(w=2.556, b=-0.892), 500)
    """

    epochs: int
    learning_rate: float
    batch_size: int | None = None
    log: Log | None = None
    log_every: int | None = None
    progress: bool = False
    compile: bool = False
    method: str = "gd"

    def run(self, model: LinReg, xs: Sequence, ys: Sequence, rng: random.Random) -> Run:
        """Train ``model`` on ``xs``, ``ys`` (mini-batches drawn from ``rng``)
        and return the run, its fit measured on all of ``xs``, ``ys``."""
        history: list[float] = []
        start = time.perf_counter()
        linreg.train(
            model,
            xs,
            ys,
            learning_rate=self.learning_rate,
            n_epochs=self.epochs,
            batch_size=self.batch_size,
            log_every=self.log_every if self.log is not None else None,
            log=self.log,
            history=history,
            progress=self.progress,
            rng=rng,
            compile=self.compile,
            method=self.method,
        )
        seconds = time.perf_counter() - start
        return Run(model, tuple(history), linreg.model_fit(model, xs, ys), seconds)


@dataclass(frozen=True)
class StudyResult:
    """What every training study returns (``univariate``, ``batch``,
    ``multivariate``, ``bodyfat``): its trained ``run``, the closed-form
    ``least_squares`` fit of the same data, the ``gap`` of the run's mean
    squared error above it (``gap_to_least_squares``), and the
    ``stability_limit``: the largest learning rate at which full-batch
    gradient descent converges on the data, 2 / the largest eigenvalue of the
    loss's Hessian (``linreg.stability_limit``; None when the study was told
    ``second_order=False``).  Each study's result adds its own extras.

    >>> from agrad import studies
    >>> results = [studies.univariate(epochs=20), studies.bodyfat(epochs=20)]
    >>> [(type(r).__name__, round(r.run.fit.mse, 1), round(r.least_squares.mse, 1)) for r in results]
    [('UnivariateResult', 16.9, 16.8), ('BodyFatResult', 27.0, 15.0)]
    """

    run: Run
    least_squares: Fit
    gap: float | None
    stability_limit: float | None


def _compared(run: Run, X: Sequence, ys: Sequence, second_order: bool) -> dict:
    # the fields every StudyResult shares: the run beside the least-squares
    # fit, and the learning rate where gradient descent on all of X stops converging
    best = linreg.least_squares(X, ys)
    return {
        "run": run,
        "least_squares": best,
        "gap": gap_to_least_squares(run.fit.mse, best.mse, ys),
        "stability_limit": linreg.stability_limit(run.model, X, ys) if second_order else None,
    }


def _check_second_order(second_order: bool) -> None:
    if not isinstance(second_order, bool):
        raise TypeError(f"second_order must be a bool, not {type(second_order).__name__!r}")


@dataclass(frozen=True)
class UnivariateResult(StudyResult):
    """The book's first session: its points, the ``LinReg()`` it inspects
    first and that model's loss, then the trained model.

    >>> from agrad import studies
    >>> result = studies.univariate()
    >>> result.initial_model, result.initial_loss
    (LinReg(w=0.011, b=0.000), Value(: 78.49574710788079))
    """

    xs: tuple[float, ...] = field(repr=False)
    ys: tuple[float, ...] = field(repr=False)
    initial_model: LinReg
    initial_loss: object  # a Value of the study's engine


@dataclass(frozen=True)
class BatchResult(StudyResult):
    """The same model trained with mini-batches (``run``) and with the full
    batch (``full_batch``), from the same start.

    >>> from agrad import studies
    >>> result = studies.batch(epochs=20, samples=100)
    >>> len(result.run.history), len(result.full_batch.history)
    (20, 20)
    """

    xs: tuple[float, ...] = field(repr=False)
    ys: tuple[float, ...] = field(repr=False)
    full_batch: Run


@dataclass(frozen=True)
class MultivariateResult(StudyResult):
    """Three features: the trained model beside the least-squares solution.

    >>> from agrad import studies
    >>> result = studies.multivariate(epochs=100, log=None)
    >>> result.least_squares.weights.round(1).tolist()
    [2.0, 3.0, -1.0]
    """

    X: tuple[tuple[float, ...], ...] = field(repr=False)
    ys: tuple[float, ...] = field(repr=False)


@dataclass(frozen=True)
class RegressionData:
    """A table for ``bodyfat``: rows of features, targets, and where they came from.

    ``file_columns`` is the file's header, so that an error can name a column
    by its place there.

    >>> from agrad import studies
    >>> data = studies.load_regression_data()
    >>> data.target, len(data.X), data.feature_names[:2]
    ('body fat brozek', 252, ('age', 'weight'))
    """

    X: tuple[tuple[float, ...], ...] = field(repr=False)
    ys: tuple[float, ...] = field(repr=False)
    feature_names: tuple[str, ...]
    target: str
    source: str
    file_columns: tuple[str, ...]


@dataclass(frozen=True)
class RawRun:
    """One learning rate tried on the unnormalised data: its fit, or why it failed.

    ``stability_limit`` is the largest stable learning rate on the
    unnormalised data (None with ``second_order=False``).

    >>> from agrad import studies
    >>> result = studies.bodyfat(epochs=20, raw=True)
    >>> [(run.learning_rate, run.error) for run in result.raw_runs]
    [(0.05, None), (1e-05, None)]
    >>> f"{result.raw_runs[0].stability_limit:.3g}"
    '1.28e-05'
    """

    learning_rate: float
    fit: Fit | None
    error: str | None
    stability_limit: float | None = None


@dataclass(frozen=True)
class BodyFatResult(StudyResult):
    """The body-fat study: the model trained on z-scores, the least-squares
    fit of the same, and the least-squares fit of the unnormalised data; with
    ``raw=True`` also the book's exercise of training on those.

    ``uncertainty`` says how well the data determine each least-squares
    weight on the z-scores (``linreg.uncertainty``: standard errors, t-values,
    95% intervals from the Hessian of the Gaussian negative log-likelihood);
    ``standard_errors`` and ``intervals`` are its, the features' weights in
    order and the bias last.  None with ``second_order=False``, or when the
    data cannot give them (an exact fit, no more rows than parameters).

    >>> from agrad import studies
    >>> result = studies.bodyfat(epochs=50)
    >>> result.data.target, round(result.least_squares.mse, 3), result.gap > 0
    ('body fat brozek', 15.017, True)
    >>> result.standard_errors[:2].round(3).tolist(), result.intervals[0].round(3).tolist()
    ([0.378, 1.463], [-0.029, 1.459])
    """

    data: RegressionData = field(repr=False)
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)
    raw_runs: tuple[RawRun, ...]
    raw_least_squares: Fit
    uncertainty: Uncertainty | None = field(repr=False)

    @property
    def standard_errors(self) -> np.ndarray | None:
        """Each weight's standard error (features in order, the bias last)."""
        return None if self.uncertainty is None else self.uncertainty.standard_errors

    @property
    def intervals(self) -> np.ndarray | None:
        """Each weight's 95% interval, a row ``(low, high)`` each (the bias last)."""
        return None if self.uncertainty is None else self.uncertainty.intervals


@dataclass(frozen=True)
class GraphResult:
    """The loss of an untrained ``LinReg()`` on the book's points, backpropagated.

    >>> from agrad import studies
    >>> result = studies.graph()
    >>> result.loss, len(result.xs)
    (Value(: 78.49574710788079), 5)
    """

    xs: tuple[float, ...] = field(repr=False)
    ys: tuple[float, ...] = field(repr=False)
    loss: object  # a Value of the study's engine


def gap_to_least_squares(mse: float, minimum: float, ys: Sequence[float]) -> float | None:
    """How far ``mse`` lies above the least-squares ``minimum``, as a fraction
    of it (0.02 is 2% above), or None when the minimum is 0 to rounding: the
    data lie exactly on a plane and no ratio to it means anything.

    >>> from agrad.studies import gap_to_least_squares
    >>> gap_to_least_squares(10.2, 10.0, [1.0, 2.0, 3.0])
    0.020000000000000018
    >>> gap_to_least_squares(0.5, 0.0, [1.0, 2.0, 3.0]) is None
    True
    """
    scale = float(np.mean(np.square(np.asarray(ys, dtype=float))))
    # lstsq leaves residuals of rounding size (relative 1e-16 or so, more for
    # ill-conditioned data) where the exact ones are 0: count a minimum whose
    # residuals are below 1e-10 of the targets' size as 0
    if minimum <= 1e-20 * scale:
        return None
    return mse / minimum - 1


def _value_class(engine: str | type) -> type:
    if isinstance(engine, str):
        if engine not in linreg.ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; the engines are {', '.join(sorted(linreg.ENGINES))}"
            )
        return linreg.ENGINES[engine]
    if isinstance(engine, type):
        return engine
    raise TypeError(f"engine is a name ('native', 'pure') or a Value class, not {engine!r}")


def _seeded(seed: int) -> random.Random:
    """The study's generator: the stream ``random.seed(seed)`` would give."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__!r}")
    return random.Random(seed)


def _check_batch_size(batch_size: int, rows: int, what: str) -> None:
    # before any training: the full-batch run must not come after a failure
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__!r}")
    if not 1 <= batch_size <= rows:
        raise ValueError(f"batch_size must be between 1 and the {rows} {what}, not {batch_size}")


def univariate(
    *,
    seed: int = 42,
    engine: str | type = "native",
    epochs: int = 500,
    learning_rate: float = 0.01,
    samples: int = 5,
    log: Log | None = None,
    log_every: int | None = 50,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - train's option of that name
    second_order: bool = True,
) -> UnivariateResult:
    """The book's first fit: ``univariate_data(samples)``, then the
    ``LinReg()`` the book inspects (w = 0.011 with the defaults) and its loss,
    then a second ``LinReg()`` trained by full-batch gradient descent.  With
    the defaults, ``log=print`` prints the book's lines digit for digit.
    ``second_order=False`` leaves out the stability limit (a Hessian), as a
    sweep's runs do.

    >>> from agrad import studies
    >>> result = studies.univariate(epochs=101, log=print, log_every=100)
      0 Loss: 130.147 LinReg(w=-0.326, b=-0.102)
    100 Loss: 16.778 LinReg(w=2.566, b=-0.827)
    """
    value_class = _value_class(engine)
    _check_second_order(second_order)
    training = Training(epochs, learning_rate, None, log, log_every, progress, compile)
    rng = _seeded(seed)
    xs, ys = datasets.univariate_data(samples, rng=rng)
    initial_model = LinReg(value_class=value_class, rng=rng)
    initial_loss = initial_model.loss(xs, ys)
    run = training.run(LinReg(value_class=value_class, rng=rng), xs, ys, rng)
    return UnivariateResult(
        **_compared(run, xs, ys, second_order),
        xs=tuple(xs),
        ys=tuple(ys),
        initial_model=initial_model,
        initial_loss=initial_loss,
    )


def batch(
    *,
    seed: int = 42,
    engine: str | type = "native",
    epochs: int = 500,
    learning_rate: float = 0.01,
    batch_size: int = 10,
    samples: int = 1000,
    log: Log | None = None,
    log_every: int | None = 50,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - train's option of that name
    second_order: bool = True,
) -> BatchResult:
    """``batch_data(samples)`` fitted twice from the same start: with
    mini-batches of ``batch_size`` (the result's ``run``), then with the full
    batch (its ``full_batch``).  ``log`` gets each run's name (``"mini-batch
    of 10:"``, ``"full batch:"``) before its training lines.

    >>> from agrad import studies
    >>> result = studies.batch(epochs=100)
    >>> round(result.full_batch.fit.mse, 2), round(result.least_squares.mse, 2)
    (24.52, 24.51)
    """
    value_class = _value_class(engine)
    _check_second_order(second_order)
    mini_batch = Training(epochs, learning_rate, batch_size, log, log_every, progress, compile)
    rng = _seeded(seed)
    xs, ys = datasets.batch_data(samples, rng=rng)
    _check_batch_size(batch_size, len(ys), "points")
    runs = []
    for name, training in [
        (f"mini-batch of {batch_size}", mini_batch),
        ("full batch", dataclasses.replace(mini_batch, batch_size=None)),
    ]:
        if log is not None:
            log(f"{name}:")
        runs.append(training.run(LinReg(value_class=value_class, rng=rng), xs, ys, rng))
    return BatchResult(
        **_compared(runs[0], xs, ys, second_order),
        xs=tuple(xs),
        ys=tuple(ys),
        full_batch=runs[1],
    )


def multivariate(
    *,
    seed: int = 42,
    engine: str | type = "native",
    epochs: int = 10000,
    learning_rate: float = 0.01,
    batch_size: int = 50,
    samples: int = 1000,
    log: Log | None = None,
    log_every: int | None = 500,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - train's option of that name
    second_order: bool = True,
) -> MultivariateResult:
    """``multivariate_data(samples)`` (true weights 2, 3, -1, bias 1) fitted
    by mini-batch gradient descent.

    >>> from agrad import studies
    >>> result = studies.multivariate(epochs=2000, log=None)
    >>> result.run.model
    LinReg(w0=2.068, w1=2.880, w2=-1.006, b=0.709)
    """
    value_class = _value_class(engine)
    _check_second_order(second_order)
    training = Training(epochs, learning_rate, batch_size, log, log_every, progress, compile)
    rng = _seeded(seed)
    X, ys = datasets.multivariate_data(samples, rng=rng)
    _check_batch_size(batch_size, len(ys), "points")
    run = training.run(LinReg(n_inputs=3, value_class=value_class, rng=rng), X, ys, rng)
    return MultivariateResult(
        **_compared(run, X, ys, second_order), X=tuple(map(tuple, X)), ys=tuple(ys)
    )


@functools.lru_cache(maxsize=1)
def _bundled_body_fat() -> RegressionData:
    df = datasets.load_body_fat()
    X, ys, names = datasets.to_xy(df)
    return RegressionData(
        tuple(map(tuple, X)),
        tuple(ys),
        tuple(names),
        str(df.columns[0]),
        "the bundled body-fat data (252 men)",
        tuple(map(str, df.columns)),
    )


def load_regression_data(
    path: str | os.PathLike | None = None, target: str | None = None
) -> RegressionData:
    """The table for ``bodyfat``: the bundled body-fat data (``path`` None),
    or a CSV file read by ``agrad.datasets.load_csv``, predicting ``target``
    (default: the first column) from every other column.

    A constant feature cannot be normalised: ValueError naming the column and
    its place in the file.

    >>> from agrad import studies
    >>> data = studies.load_regression_data()
    >>> runs = [studies.bodyfat(data=data, seed=seed, epochs=20) for seed in (0, 1)]
    >>> [round(run.run.fit.mse, 2) for run in runs]
    [25.07, 26.64]
    """
    if path is None:
        data = _bundled_body_fat()
        if target is not None and target != data.target:
            if target not in data.feature_names:
                raise ValueError(f"no column {target!r} in {data.source}")
            data = _with_target(data, target)
    else:
        df = datasets.load_csv(path, target=target)
        X, ys, names = datasets.to_xy(df)
        data = RegressionData(
            tuple(map(tuple, X)),
            tuple(ys),
            tuple(names),
            str(df.columns[0]),
            os.fspath(path),
            tuple(datasets.csv_columns(path)),
        )
    _check_no_constant_feature(data)
    return data


def _with_target(data: RegressionData, target: str) -> RegressionData:
    # the bundled table with another of its columns as the target
    rows = [(y, *x) for x, y in zip(data.X, data.ys, strict=True)]
    columns = (data.target, *data.feature_names)
    position = columns.index(target)
    return RegressionData(
        tuple(row[:position] + row[position + 1 :] for row in rows),
        tuple(row[position] for row in rows),
        columns[:position] + columns[position + 1 :],
        target,
        data.source,
        data.file_columns,
    )


def _check_no_constant_feature(data: RegressionData) -> None:
    for i, name in enumerate(data.feature_names):
        first = data.X[0][i]
        if all(row[i] == first for row in data.X):
            position = data.file_columns.index(name) + 1
            raise ValueError(
                f"{data.source}: column {name!r} (column {position} of the file) has the same "
                f"value {first:g} in every row: a constant feature cannot be normalised "
                f"(leave it out of the file)"
            )


def bodyfat(
    *,
    data: RegressionData | str | os.PathLike | None = None,
    target: str | None = None,
    seed: int = 42,
    engine: str | type = "native",
    method: str = "gd",
    epochs: int | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    raw: bool = False,
    raw_learning_rate: float = 1e-5,
    log: Log | None = None,
    log_every: int | None = 0,
    progress: bool = False,
    compile: bool = False,  # noqa: A002 - train's option of that name
    second_order: bool = True,
) -> BodyFatResult:
    """The body-fat study: features as z-scores (population std), trained
    with mini-batches as the book does, beside the least-squares fit, with
    each least-squares weight's standard error and interval.

    ``data`` is a ``RegressionData`` (``load_regression_data``: read a file
    once for many runs), a CSV path, or None for the bundled body-fat data;
    ``target`` picks the column to predict when the study reads the data.
    ``method`` is ``"gd"`` (gradient descent, the book's) or ``"newton"``;
    ``epochs``, ``learning_rate`` and ``batch_size`` left None are the
    method's (``BODYFAT_SETTINGS``: the book's 1000 epochs at 0.05 on
    mini-batches of 20; for Newton 2 full steps on the full batch).
    With ``raw=True`` it also trains on the unnormalised data with the same
    seed, first at ``learning_rate`` (which diverges on the body-fat data, as
    the book says: it is far above the stability limit there) and then at
    ``raw_learning_rate``.  ``second_order=False`` leaves out what takes the
    loss's Hessian (the stability limits, the standard errors), as a sweep's
    runs do.

    >>> from agrad import studies
    >>> result = studies.bodyfat(epochs=100)
    >>> result.run.model.feature_names[:2], f"{100 * result.gap:.1f}% above least squares"
    (['age', 'weight'], '13.8% above least squares')
    >>> newton = studies.bodyfat(method="newton")
    >>> [round(loss, 9) for loss in newton.run.history], round(newton.least_squares.mse, 9)
    ([455.178256086, 15.017327734], 15.017327734)
    """
    value_class = _value_class(engine)
    _check_second_order(second_order)
    if not isinstance(method, str) or method not in BODYFAT_SETTINGS:
        raise ValueError(
            f"unknown method {method!r}; the methods are {', '.join(BODYFAT_SETTINGS)}"
        )
    settings = BODYFAT_SETTINGS[method]
    epochs = settings["epochs"] if epochs is None else epochs
    learning_rate = settings["learning_rate"] if learning_rate is None else learning_rate
    if batch_size is None:
        batch_size = settings["batch_size"]
    training = Training(
        epochs, learning_rate, batch_size, log, log_every, progress, compile, method
    )
    if not isinstance(data, RegressionData):
        data = load_regression_data(data, target)
    elif target is not None and target != data.target:
        raise ValueError(f"target {target!r} differs from the data's target {data.target!r}")
    if batch_size is not None:
        _check_batch_size(batch_size, len(data.ys), f"rows of {data.source}")
    X_norm, mean, std = linreg.standardize(data.X, data.feature_names)
    names = list(data.feature_names)

    def model(rng: random.Random) -> LinReg:
        return LinReg(n_inputs=len(names), feature_names=names, value_class=value_class, rng=rng)

    rng = _seeded(seed)
    run = training.run(model(rng), X_norm, data.ys, rng)
    raw_runs: list[RawRun] = []
    if raw:
        raw_limit = (
            linreg.stability_limit(model(_seeded(seed)), data.X, data.ys) if second_order else None
        )
        for rate in dict.fromkeys([learning_rate, raw_learning_rate]):
            rng = _seeded(seed)
            raw_training = dataclasses.replace(training, learning_rate=rate, log=None)
            try:
                raw_run = raw_training.run(model(rng), data.X, data.ys, rng)
            except OverflowError as error:
                raw_runs.append(RawRun(rate, None, str(error), raw_limit))
                continue
            raw_runs.append(RawRun(rate, raw_run.fit, None, raw_limit))
    compared = _compared(run, X_norm, data.ys, second_order)
    interpretation = None
    if second_order and compared["gap"] is not None and len(data.ys) > len(names) + 1:
        # an exact fit (no gap to speak of) has no noise to estimate, so no errors
        interpretation = linreg.uncertainty(X_norm, data.ys, names, value_class=value_class)
    return BodyFatResult(
        **compared,
        data=data,
        mean=mean,
        std=std,
        raw_runs=tuple(raw_runs),
        raw_least_squares=linreg.least_squares(data.X, data.ys),
        uncertainty=interpretation,
    )


def graph(*, seed: int = 42, engine: str | type = "native", samples: int = 5) -> GraphResult:
    """The loss of an untrained ``LinReg()`` on ``univariate_data(samples)``,
    backpropagated so that every value in its graph has its gradient.

    >>> from agrad import studies
    >>> loss = studies.graph(samples=2).loss
    >>> loss, len(loss._prev)
    (Value(: 15.060158058610101), 2)
    """
    value_class = _value_class(engine)
    rng = _seeded(seed)
    xs, ys = datasets.univariate_data(samples, rng=rng)
    loss = LinReg(value_class=value_class, rng=rng).loss(xs, ys)
    loss.backward()
    return GraphResult(tuple(xs), tuple(ys), loss)


@dataclass(frozen=True)
class MoonsResult:
    """micrograd's demo: the data (labels -1 and 1), the trained MLP, and
    its loss and accuracy before each step.

    >>> from agrad import studies
    >>> result = studies.moons(steps=2, log=None)
    >>> result.losses
    (0.8958441028683222, 1.723590533697202)
    """

    X: tuple[tuple[float, float], ...] = field(repr=False)
    y: tuple[int, ...] = field(repr=False)
    model: nn.MLP
    losses: tuple[float, ...] = field(repr=False)
    accuracies: tuple[float, ...] = field(repr=False)
    accuracy: float  # after the last step
    seconds: float


def moons(
    *,
    seed: int = 1337,
    engine: str | type = "native",
    steps: int = 100,
    samples: int = 100,
    noise: float = 0.1,
    alpha: float = 1e-4,
    log: Log | None = None,
    log_every: int | None = 10,
) -> MoonsResult:
    """micrograd's demo: ``moons_data(samples, noise)`` after
    ``np.random.seed(seed)``, ``MLP(2, [16, 16, 1])`` after
    ``random.seed(seed)``, then ``steps`` steps of full-batch SGD on
    ``hinge_loss`` with L2 weight ``alpha``, the learning rate falling from
    1.0 to 0.1 as in the demo.  NumPy's global random state is not touched.

    >>> from agrad import studies
    >>> result = studies.moons(steps=3, log=print, log_every=1)
    step 0 loss 0.8958441028683222, accuracy 50.0%
    step 1 loss 1.723590533697202, accuracy 81.0%
    step 2 loss 0.4807298435719949, accuracy 84.0%
    """
    value_class = _value_class(engine)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int, 0 or more, not {steps!r}")
    rng = _seeded(seed)
    # the same stream as the demo's np.random.seed(seed), without touching NumPy's global state
    X_array, labels = datasets.moons_data(samples, noise, np.random.RandomState(seed))
    # the weights the demo's random.seed(seed) gives, from the study's own generator
    model = nn.MLP(2, [16, 16, 1], value_class=value_class, rng=rng)
    X = [tuple(row) for row in X_array.tolist()]
    y = [2 * int(label) - 1 for label in labels]
    optimizer = optim.SGD(model.parameters(), lr=1.0)
    losses: list[float] = []
    accuracies: list[float] = []
    start = time.perf_counter()
    for k in range(steps):
        scores = [model(x) for x in X]
        loss = nn.hinge_loss(scores, y, model.parameters(), alpha)
        losses.append(loss.data)
        accuracies.append(nn.accuracy(scores, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.lr = 1.0 - 0.9 * k / steps  # the demo's 1.0 - 0.9*k/100
        optimizer.step()
        if log is not None and log_every and k % log_every == 0:
            log(f"step {k} loss {loss.data}, accuracy {accuracies[-1] * 100}%")
    seconds = time.perf_counter() - start
    final = nn.accuracy([model(x) for x in X], y)
    return MoonsResult(tuple(X), tuple(y), model, tuple(losses), tuple(accuracies), final, seconds)
