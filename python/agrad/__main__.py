"""``python -m agrad``: the runs of the chapter "Linear Regression the Autograd Way".

With no arguments it runs the body-fat study on the bundled data.  Each
subcommand is one run of the chapter; ``python -m agrad SUBCOMMAND --help``
says what it does and which knobs it has.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agrad import linreg, studies, sweep, viz

DESCRIPTION = """\
The runs of the chapter "Linear Regression the Autograd Way", on agrad.

With no command: the body-fat study (`python -m agrad --seed 9` is
`python -m agrad bodyfat --seed 9`).
Every run is seeded (default --seed 42) so it prints the same numbers each
time; --engine pure runs the same code on the pure-Python engine."""


def _number_argument(convert, kind: str, accept, requirement: str):
    """An argparse type: ``convert`` the text, then insist on ``accept``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, not {text}")
        return value

    return parse


positive_int = _number_argument(int, "a whole number", lambda v: v >= 1, "at least 1")
non_negative_int = _number_argument(int, "a whole number", lambda v: v >= 0, "0 or more")

MAX_SAMPLES, MAX_EPOCHS = studies.MAX_SAMPLES, studies.MAX_EPOCHS
# A graph of more points is unreadable, and dot's layout time grows steeply
# with it (40 points take a second, 80 more than a minute).
MAX_GRAPH_SAMPLES = 40
samples_count = _number_argument(
    int, "a whole number", lambda v: 1 <= v <= MAX_SAMPLES, f"between 1 and {MAX_SAMPLES}"
)
epochs_count = _number_argument(
    int, "a whole number", lambda v: 0 <= v <= MAX_EPOCHS, f"between 0 and {MAX_EPOCHS}"
)
graph_samples = _number_argument(
    int,
    "a whole number",
    lambda v: 1 <= v <= MAX_GRAPH_SAMPLES,
    f"between 1 and {MAX_GRAPH_SAMPLES}",
)


def seed_range(text: str) -> list[int]:
    """An argparse type: a seed or an inclusive range of them (0-31)."""
    try:
        return sweep.parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def learning_rates(text: str) -> list[float]:
    """An argparse type: a learning rate or a log-spaced range of them (0.001:0.1:5)."""
    try:
        return sweep.parse_learning_rates(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def existing_file(text: str) -> str:
    """An argparse type: a file to read, which must be there."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"no file {text!r}")
    return text


def plot_directory(text: str) -> str:
    """An argparse type: a directory the figures can be written into (made if missing)."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a directory")
    existing = os.path.abspath(text)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError(f"cannot make {text!r}: {existing!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {existing!r}")
    return text


positive_float = _number_argument(
    float, "a number", lambda v: 0 < v < float("inf"), "a positive number"
)


def _format_of(path: str) -> str:
    return os.path.splitext(path)[1].lstrip(".").lower()


def graph_output(text: str) -> str:
    """An argparse type: a file Graphviz can write, in a directory that exists."""
    extension = _format_of(text)
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    if not extension:
        raise argparse.ArgumentTypeError(
            f"{text!r} needs an extension that names the format, e.g. .svg or .png"
        )
    try:
        formats = viz.graphviz_formats()
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if extension not in formats:
        raise argparse.ArgumentTypeError(
            f"Graphviz cannot write {extension!r} files; it writes {', '.join(sorted(formats))}"
        )
    directory = os.path.dirname(text) or "."
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"no directory {directory!r} to write {text!r} in")
    return text


# The options several commands share, each declared once: its flags' name
# (--learning-rate for learning_rate), argparse's settings and its help.  A
# command's default is its study function's, so the two cannot drift apart.
SHARED_OPTIONS: dict[str, dict] = {
    "engine": {
        "choices": sorted(linreg.ENGINES),
        "help": "native: the compiled engine; pure: the pure-Python one (default: %(default)s)",
    },
    "seed": {
        "type": int,
        "help": "the seed of the run's random numbers (default: %(default)s)",
    },
    "epochs": {"type": epochs_count, "metavar": "N", "help": "training epochs"},
    "learning_rate": {
        "type": positive_float,
        "metavar": "LR",
        "help": "gradient descent's step size",
    },
    "batch_size": {"type": positive_int, "metavar": "N", "help": "examples per mini-batch"},
    "log_every": {
        "type": non_negative_int,
        "metavar": "N",
        "help": "print the book's loss line every N epochs, 0 for never (default: %(default)s)",
    },
    "progress": {"action": "store_true", "help": "show a progress bar while training"},
    "compile": {
        "action": "store_true",
        "help": "record the loss's graph once and replay it in C++ (agrad.compile; same numbers)",
    },
    "samples": {"type": samples_count, "metavar": "N", "help": "number of points"},
    "data": {
        "metavar": "CSV",
        "type": existing_file,
        "help": "a CSV file with a header row (default: the bundled body-fat data)",
    },
    "target": {"help": "the column of --data to predict (default: its first column)"},
    "plot": {
        "metavar": "DIR",
        "type": plot_directory,
        "help": "also write the figures as PNG files into DIR (made if missing)",
    },
}
# Of those, the ones a sweep takes several values of, one run per combination.
GRID_OPTIONS = ["learning_rate", "batch_size", "epochs"]
TRAINING_OPTIONS = ["epochs", "learning_rate", "log_every", "progress", "compile"]


def add_options(parser: argparse.ArgumentParser, study, names, **changes: dict) -> None:
    """Add the shared options ``names`` to ``parser``, with ``study``'s
    defaults; ``changes`` replaces settings of some (``seed={"help": ...}``).
    A sweep's grid options take several values and default to the study's."""
    defaults = inspect.signature(study).parameters
    for name in names:
        settings = {**SHARED_OPTIONS[name], **changes.get(name, {})}
        if "default" not in settings and name in defaults and "action" not in settings:
            settings["default"] = defaults[name].default
            if "(default" not in settings["help"]:
                settings["help"] += " (default: %(default)s)"
        parser.add_argument("--" + name.replace("_", "-"), **settings)


def add_grid_options(parser: argparse.ArgumentParser, **changes: dict) -> None:
    """A sweep's grid: several values of each, the study's own by default;
    ``changes`` replaces settings of some, as for ``add_options``."""
    for name in GRID_OPTIONS:
        settings = {**SHARED_OPTIONS[name], "nargs": "+", **changes.get(name, {})}
        settings["help"] += ": one or more values, a run for each (default: the study's)"
        parser.add_argument("--" + name.replace("_", "-"), **settings)


def _log(args):
    """Where training lines go: stdout, through tqdm when a progress bar is showing."""
    if args.progress:
        from tqdm import tqdm

        return tqdm.write  # keeps the bar intact under the log lines
    return print


def _options(args, names: tuple[str, ...]) -> dict:
    """The parsed options of these names, as keyword arguments of the same names."""
    return {name: getattr(args, name) for name in names}


#: what every study takes from its command line
_STUDY = ("seed", "engine", "epochs", "learning_rate", "log_every", "progress", "compile")
#: what a sweep and a bootstrap share: the data, the record, the backend
_PLAN = ("data", "target", "output", "jobs", "dask", "ray", "runs_per_task")


def _plot_path(args, name: str) -> str:
    return os.path.join(args.plot, name)


def _stability(limit: float | None, learning_rate: float) -> str:
    """The stability limit beside the learning rate used, and which side it is on."""
    assert limit is not None  # a command's study runs with second_order
    side = "below" if learning_rate < limit else "above"
    return (
        f"Largest stable learning rate, 2/lambda_max of the full-batch loss's Hessian: "
        f"{limit:.4g} (this run's {learning_rate:g} is {side} it)."
    )


def run_univariate(args) -> None:
    # the book shows the untrained model and its loss before the training
    # lines, and both come from the study's result: collect the lines first
    lines: list[str] = []
    result = studies.univariate(log=lines.append, **_options(args, _STUDY))
    print(f">>> LinReg()\n{result.initial_model}")
    print(f">>> loss\n{result.initial_loss}")
    print(">>> train(LinReg(), xs, ys, ...)")
    for line in lines:
        print(line)
    run = result.run
    print(
        f"trained: {run.model}, loss {run.history[-1]:.3f}"
        if run.history
        else f"untrained: {run.model}"
    )
    print(_stability(result.stability_limit, args.learning_rate))
    if args.plot and run.history:
        print(
            "wrote",
            viz.plot_loss_curves(
                {"full batch": run.history},
                _plot_path(args, "univariate-loss.png"),
                title="Univariate fit to 5 points",
                references={"least-squares MSE": result.least_squares.mse},
            ),
        )


def _check_batch_size(args, rows: int, what: str) -> None:
    if args.batch_size > rows:
        args.parser.error(f"--batch-size {args.batch_size} is larger than {what}")


def run_batch(args) -> None:
    _check_batch_size(args, args.samples, f"--samples {args.samples}")
    result = studies.batch(
        batch_size=args.batch_size, samples=args.samples, log=_log(args), **_options(args, _STUDY)
    )
    runs = {f"mini-batch of {args.batch_size}": result.run, "full batch": result.full_batch}
    print()
    fit = result.least_squares
    print(f"least squares: w={fit.weights[0]:.3f}, b={fit.bias:.3f}, MSE {fit.mse:.3f}")
    for name, run in runs.items():
        print(
            f"{name}: {run.model}, MSE on all {args.samples} points {run.fit.mse:.3f}, "
            f"{run.seconds:.2f} s"
        )
    print(_stability(result.stability_limit, args.learning_rate))
    if args.plot and args.epochs:
        print(
            "wrote",
            viz.plot_loss_curves(
                {name: run.history for name, run in runs.items()},
                _plot_path(args, "batch-loss.png"),
                title=f"Loss on {args.samples} points: mini-batch (batch loss) against full batch",
                references={"least-squares MSE": fit.mse},
            ),
        )


def run_multivariate(args) -> None:
    _check_batch_size(args, args.samples, f"--samples {args.samples}")
    result = studies.multivariate(
        batch_size=args.batch_size, samples=args.samples, log=_log(args), **_options(args, _STUDY)
    )
    print()
    names = ["w0 (true 2)", "w1 (true 3)", "w2 (true -1)"]
    print(
        linreg.format_comparison(
            names, {"gradient descent": result.run.fit, "least squares": result.least_squares}
        )
    )
    if args.plot and result.run.history:
        print(
            "wrote",
            viz.plot_loss_curves(
                {f"mini-batch of {args.batch_size}": result.run.history},
                _plot_path(args, "multivariate-loss.png"),
                title="Multivariate fit: loss per mini-batch",
                references={"least-squares MSE": result.least_squares.mse},
            ),
        )


def _bodyfat_settings(args) -> None:
    # the method's own settings where none were given (studies.BODYFAT_SETTINGS)
    for name, value in studies.BODYFAT_SETTINGS[args.method].items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def run_bodyfat(args) -> None:
    _bodyfat_settings(args)
    data = studies.load_regression_data(args.data, args.target)
    if args.batch_size is not None:
        _check_batch_size(args, len(data.ys), f"the {len(data.ys)} rows of {data.source}")
    names = list(data.feature_names)
    print(
        f"Predicting {data.target!r} from {len(names)} features of {data.source}, "
        f"features as z-scores."
    )
    batches = "the full batch" if args.batch_size is None else f"mini-batches of {args.batch_size}"
    how = (
        f"Newton's method, {args.epochs} steps of {args.learning_rate:g} on {batches}"
        if args.method == "newton"
        else f"{args.epochs} epochs, {batches}, learning rate {args.learning_rate}"
    )
    print(f"Training on the {args.engine} engine: {how}, seed {args.seed}.")
    result = studies.bodyfat(
        data=data,
        method=args.method,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        raw=args.raw,
        raw_learning_rate=args.raw_learning_rate,
        log=_log(args),
        **_options(args, tuple(n for n in _STUDY if n not in ("epochs", "learning_rate"))),
    )
    trained, best = result.run.fit, result.least_squares
    print(f"Trained in {result.run.seconds:.2f} s.\n")
    print("Weights, largest first:")
    linreg.print_weights(result.run.model)
    print(
        "\nBeside the closed-form least-squares fit (weights per standard deviation of a feature):"
    )
    method = "Newton's method" if args.method == "newton" else "gradient descent"
    print(linreg.format_comparison(names, {method: trained, "least squares": best}))
    if result.gap is None:
        comparison = (
            f"is {trained.mse:.3g}, and the least-squares fit is exact (its error is 0 to "
            f"rounding: the data lie on a plane), so there is no percentage to give"
        )
    elif abs(result.gap) < 1e-9:  # Newton's landing: the gap is rounding, of either sign
        comparison = f"equals the least-squares minimum to rounding ({result.gap:+.1e})"
    else:
        comparison = f"is {100 * result.gap:.1f}% above the least-squares minimum"
    print(
        f"\n{method[0].upper() + method[1:]}'s mean squared error {comparison}; sigma is the "
        f"estimated noise, the log-likelihood the chapter's Gaussian one."
    )
    if args.method == "gd":
        print(_stability(result.stability_limit, args.learning_rate))
    u = result.uncertainty
    if u is not None:
        print(
            f"\nHow well the data determine each least-squares weight, on the z-scores (a "
            f"weight is the change in {data.target!r} per standard deviation of its feature): "
            f"standard errors from the Hessian of the Gaussian negative log-likelihood, "
            f"sigma^2 = RSS/(n - p - 1) = {u.sigma:.3f}^2, t with {u.dof} degrees of freedom. "
            f"An interval that holds 0 leaves the weight's sign undecided."
        )
        print(linreg.format_uncertainty(u))
    else:
        print(
            "\nNo standard errors: the fit is exact or there are no more rows than "
            "parameters, so the noise cannot be estimated."
        )
    if args.raw:
        _print_raw(result, names, trained, best)
    # last, as the closing line: where this run falls among other seeds
    if result.gap is not None and args.seed_spread and args.method == "gd":
        print(_seed_spread(args, data, 100 * result.gap))
    if args.plot:
        print(
            "wrote",
            viz.plot_weights(
                names,
                {method: trained.weights, "least squares": best.weights},
                _plot_path(args, "bodyfat-weights.png"),
                title=f"Weights for {data.target!r} (features as z-scores)",
            ),
        )
        if u is not None:
            print(
                "wrote",
                viz.plot_intervals(
                    names,
                    u.estimates[:-1],
                    {f"{100 * u.confidence:g}% interval (Hessian)": u.intervals[:-1]},
                    _plot_path(args, "bodyfat-intervals.png"),
                    title=f"Least-squares weights for {data.target!r} (features as z-scores)",
                ),
            )
        if result.run.history:
            print(
                "wrote",
                viz.plot_loss_curves(
                    {batches: result.run.history},
                    _plot_path(args, "bodyfat-loss.png"),
                    title=f"Body-fat model: loss per epoch ({method})",
                    references={"least-squares MSE": best.mse},
                ),
            )


def _print_raw(result: studies.BodyFatResult, names: list[str], trained, best) -> None:
    """The book's exercise: the same training on the unnormalised data, and why it diverges."""
    print("\nThe same training on the unnormalised data (the book's exercise):")
    side_by_side = {"z-score GD": trained, "z-score LS": best}
    for raw in result.raw_runs:
        if raw.fit is None:
            print(f"  learning rate {raw.learning_rate}: {raw.error}")
            continue
        print(f"  learning rate {raw.learning_rate}: trained, mean squared error {raw.fit.mse:.3f}")
        side_by_side[f"raw GD, lr {raw.learning_rate:g}"] = raw.fit
    side_by_side["raw LS"] = result.raw_least_squares
    print(linreg.format_comparison(names, side_by_side))
    raw_limit = result.raw_runs[0].stability_limit if result.raw_runs else None
    if raw_limit is not None and result.stability_limit is not None:
        spread = np.asarray(result.data.X).std(axis=0)
        widest = result.data.feature_names[int(spread.argmax())]
        print(
            f"Why: gradient descent converges only below 2/lambda_max, lambda_max the largest "
            f"eigenvalue of the loss's Hessian (2/n X^T X with a column of ones). On z-scores "
            f"every feature has spread 1 and the limit is {result.stability_limit:.4g}; "
            f"unnormalised, {widest!r} spreads {spread.max():.3g} and the squared scales make "
            f"lambda_max {result.stability_limit / raw_limit:.3g} times larger: the limit falls "
            f"to {raw_limit:.3g}, below the book's rate and just above "
            f"{result.raw_runs[-1].learning_rate:g}."
            if result.raw_runs[-1].learning_rate < raw_limit
            else f"Why: gradient descent converges only below 2/lambda_max; on z-scores that "
            f"is {result.stability_limit:.4g}, unnormalised {raw_limit:.3g}."
        )


def _seed_spread(args, data: studies.RegressionData, gap: float) -> str:
    """Where this run's gap falls among those of seeds 0 to N-1 with its settings."""
    # in this process, one run after another: seconds, and no worker processes
    # for a printout; on the compiled engine, whose results are the pure one's bits
    runs = sweep.sweep(
        "bodyfat",
        seeds=range(args.seed_spread),
        learning_rates=args.learning_rate,
        batch_sizes=args.batch_size,
        epochs=args.epochs,
        data=data,
        jobs=1,
    )
    gaps = runs["gap_to_least_squares"].dropna()
    failed = len(runs) - len(gaps)
    seeds = "seed 0" if args.seed_spread == 1 else f"seeds 0 to {args.seed_spread - 1}"
    if gaps.empty:
        return f"With {seeds} and the same settings every run diverged."
    low, median, high = gaps.min(), gaps.median(), gaps.max()
    below = int((gaps < gap).sum())
    if below == len(gaps):
        place = f"higher than all {len(gaps)} of them"
    elif below == 0 and (gaps > gap).all():
        place = f"lower than all {len(gaps)} of them"
    else:
        place = f"higher than {below} of the {len(gaps)}"
    diverged = f" ({failed} diverged)" if failed else ""
    return (
        f"With {seeds} and the same settings it lands {low:.1f}% to {high:.1f}% above "
        f"(median {median:.1f}%){diverged}: seed {args.seed}'s {gap:.1f}% is {place}. "
        f"The last mini-batch steps are noisy: a larger --batch-size or a smaller "
        f"--learning-rate lands closer."
    )


def run_sweep(args) -> None:
    seeds = list(dict.fromkeys(seed for group in args.seeds for seed in group))
    rates = (
        None if args.learning_rate is None else [r for group in args.learning_rate for r in group]
    )
    try:
        plan = sweep.Sweep(
            args.study,
            seeds=seeds,
            learning_rates=rates,
            batch_sizes=args.batch_size,
            epochs=args.epochs,
            engine=args.engine,
            samples=args.samples,
            **_options(args, _PLAN),
        )
    except (ValueError, TypeError, ImportError) as error:
        args.parser.error(str(error))
    runs = _run_plan(args, plan, f"{args.study}: {len(plan.specs)} runs")
    table = sweep.summarize(runs)
    measure = table.attrs["measure"]
    print(
        "\nOver seeds, per configuration: "
        + ("the gap to least squares (% above)" if measure != "mse" else "the MSE")
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    failed = runs[runs["error"].notna()]
    if len(failed):
        print(f"\n{len(failed)} runs failed; the first: {failed['error'].iloc[0]}")
    if args.plot:
        for written in sweep.plot(runs, args.plot):
            print("wrote", written)
    lost = sum(error.startswith(sweep.LOST) for error in failed["error"])
    if lost:
        raise RuntimeError(
            f"{lost} runs kept killing their workers and were given up; "
            f"the same command tries them again"
        )


def _run_plan(args, plan, what: str) -> Any:
    """Run a sweep's or a bootstrap's ``plan`` as the command line does: the
    backend reached and the output claimed before any run (a bad address, a
    directory in use: an error), a line saying what is to run, a progress
    bar, and on Ctrl-C where the finished runs are."""
    try:
        if plan.todo:
            plan.connect()  # an address that is not a scheduler is an error before any run
        plan.open()  # RuntimeError while another sweep writes to the directory
    except BaseException as error:
        plan.close()
        if isinstance(error, (ValueError, TypeError, ConnectionError, ImportError)):
            args.parser.error(str(error))
        raise
    todo = plan.todo
    path = os.path.join(args.output, "runs.csv")
    on = (
        f"the Dask scheduler at {args.dask}"
        if args.dask
        else f"Ray ({args.ray})"
        if args.ray
        else f"{args.jobs or os.cpu_count()} local processes"
    )
    done = len(plan.specs) - len(todo)
    print(
        f"{what}, {done} already in {path}; "
        + (f"running {len(todo)} on {on}." if todo else "nothing to run.")
    )
    try:
        return plan.run(progress=False if args.no_progress else None)
    except KeyboardInterrupt:
        print(
            f"{len(plan.store.rows)} finished runs are in {args.output} (runs.sqlite, and "
            f"{path}); the same command goes on from there.",
            file=sys.stderr,
        )
        raise
    finally:
        plan.close()


def run_bootstrap(args) -> None:
    try:
        plan = sweep.Bootstrap(
            args.study,
            resamples=args.resamples,
            seed=args.seed,
            engine=args.engine,
            **_options(args, _PLAN),
        )
    except (ValueError, TypeError, ImportError) as error:
        args.parser.error(str(error))
    data = plan.data
    assert data is not None
    rows = _run_plan(
        args,
        plan,
        f"{args.study}: {len(plan.specs)} resamples of the {len(data.ys)} rows of "
        f"{data.source}, seed {args.seed}",
    )
    u = plan.uncertainty
    result = sweep.BootstrapResult(rows, u, sweep.summarize_bootstrap(rows, u))
    print(_format_bootstrap(result, data.target))
    failed = rows[rows["error"].notna()]
    if len(failed):
        print(f"\n{len(failed)} resamples failed; the first: {failed['error'].iloc[0]}")
    if args.plot:
        print("wrote", sweep.plot_bootstrap(result, args.plot))
    lost = sum(error.startswith(sweep.LOST) for error in failed["error"])
    if lost:
        raise RuntimeError(
            f"{lost} resamples kept killing their workers and were given up; "
            f"the same command tries them again"
        )


def _format_bootstrap(result: sweep.BootstrapResult, target: str) -> str:
    """The bootstrap's intervals and standard errors beside the Hessian's, per
    weight in the order of ``linreg.format_uncertainty`` (clearest first)."""
    table, u = result.summary, result.uncertainty
    level = f"{100 * u.confidence:g}%"
    names = list(table.index)
    width = max(len(name) for name in names)
    lines = [
        f"\nEach least-squares weight on the z-scores (the change in {target!r} per standard "
        f"deviation of its feature): over {table.attrs['resamples']} resamples, the "
        f"bootstrap's standard error and percentile {level} interval, beside the Hessian's "
        f"(t with {u.dof} degrees of freedom, as statsmodels gives them).",
        f"{'':<{width}}   {'weight':>7}   {'bootstrap SE':>12}   {'Hessian SE':>10}   "
        f"{'bootstrap ' + level:<20}   Hessian {level}",
    ]
    *weights, bias = range(len(names))
    for i in [*sorted(weights, key=lambda i: abs(u.t_values[i]), reverse=True), bias]:
        row = table.iloc[i]
        lines.append(
            f"{names[i]:<{width}}   {row.estimate:7.3f}   {row.bootstrap_se:12.3f}   "
            f"{row.hessian_se:10.3f}   [{row.bootstrap_low:7.3f}, {row.bootstrap_high:7.3f}]"
            f"   [{row.hessian_low:7.3f}, {row.hessian_high:7.3f}]"
        )
    ratio = (table["bootstrap_se"] / table["hessian_se"]).to_numpy()
    lines.append(
        f"The bootstrap's standard errors are {ratio.min():.2f} to {ratio.max():.2f} times the "
        f"Hessian's (the Hessian's rest on the model's assumptions, linear with noise of one "
        f"size; the bootstrap's on the rows alone)."
    )
    return "\n".join(lines)


def run_graph(args) -> None:
    loss = studies.graph(seed=args.seed, engine=args.engine, samples=args.samples).loss
    dot = viz.draw_dot(
        loss, format=_format_of(args.output), rankdir=args.rankdir, show_grads=args.show_grads
    )
    print("wrote", viz.write_graph(dot, args.output))


def run_moons(args) -> None:
    result = studies.moons(
        seed=args.seed,
        engine=args.engine,
        steps=args.steps,
        samples=args.samples,
        noise=args.noise,
        log=print,
        log_every=args.log_every,
    )
    print(result.model)
    print(
        f"{args.steps} steps in {result.seconds:.2f} s on the {args.engine} engine; "
        f"accuracy {100 * result.accuracy:.1f}% on the {args.samples} points"
        + (f", loss {result.losses[-1]:.6f} before the last step" if result.losses else "")
    )
    if args.plot:
        print(
            "wrote",
            viz.plot_decision_boundary(
                result.model,
                result.X,
                result.y,
                _plot_path(args, "moons-boundary.png"),
                title=f"Two moons: MLP(2, [16, 16, 1]) after {args.steps} steps",
            ),
        )


def _bodyfat_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=list(studies.BODYFAT_SETTINGS),
        default="gd",
        help="gd: gradient descent, the book's; newton: Newton's method, whose first step "
        "lands on least squares (default: %(default)s)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="the book's exercise: also train on the data without normalising it",
    )
    p.add_argument(
        "--raw-learning-rate",
        type=positive_float,
        default=inspect.signature(studies.bodyfat).parameters["raw_learning_rate"].default,
        metavar="LR",
        help="learning rate for the unnormalised run (default: %(default)s; the normalised "
        "run's rate is tried first and diverges)",
    )
    p.add_argument(
        "--seed-spread",
        type=non_negative_int,
        default=12,
        metavar="N",
        help="also train with seeds 0 to N-1 (same settings) and say where this run falls "
        "among them, 0 for not (default: %(default)s, a few seconds)",
    )


def _graph_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--output",
        type=graph_output,
        default="loss-graph.svg",
        help="file to write; its extension picks the format (default: %(default)s)",
    )
    p.add_argument(
        "--rankdir",
        choices=["LR", "TB", "RL", "BT"],
        default="LR",
        help="layout direction: left to right, top to bottom, ... (default: %(default)s)",
    )
    p.add_argument("--show-grads", action="store_true", help="show each value's gradient")


def _moons_options(p: argparse.ArgumentParser) -> None:
    defaults = inspect.signature(studies.moons).parameters
    p.add_argument(
        "--steps",
        type=epochs_count,
        default=defaults["steps"].default,
        metavar="N",
        help="training steps (default: %(default)s)",
    )
    p.add_argument(
        "--noise",
        type=_number_argument(float, "a number", lambda v: 0 <= v < 10, "between 0 and 10"),
        default=defaults["noise"].default,
        help="standard deviation of the noise added to the points (default: %(default)s)",
    )


def _sweep_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "study",
        choices=list(sweep.STUDIES),
        metavar="STUDY",
        help=f"the study to run: {', '.join(sweep.STUDIES)}",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=seed_range,
        default=[range(10)],
        metavar="SEEDS",
        help="seeds and inclusive ranges, e.g. 0-31 40 41 (default: 0-9)",
    )
    add_grid_options(
        p,
        learning_rate={
            "type": learning_rates,
            "help": "gradient descent's step size, and log-spaced ranges LOW:HIGH:N (N rates "
            "from LOW to HIGH, e.g. 0.001:0.1:5)",
        },
    )
    _backend_options(p, "sweep")


def _backend_options(p: argparse.ArgumentParser, kind: str) -> None:
    """The options of where a sweep's or a bootstrap's runs go and run."""
    p.add_argument(
        "--output",
        metavar="DIR",
        type=plot_directory,
        required=True,
        help=f"where the {kind}'s record runs.sqlite and its export runs.csv go; made if missing",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs",
        type=positive_int,
        metavar="N",
        help="local worker processes (default: one per core)",
    )
    where.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="a running Dask scheduler, tcp://HOST:PORT (port 8786 if none; agrad[dask])",
    )
    where.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="a running Ray cluster, HOST:PORT of its head node (port 6379 if none), "
        "or local (agrad[ray])",
    )
    p.add_argument(
        "--runs-per-task",
        type=positive_int,
        metavar="N",
        help="runs each task does (default: about four tasks a worker, at most "
        f"{sweep.MAX_RUNS_PER_TASK} runs each)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _bootstrap_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "study",
        choices=list(sweep.BOOTSTRAP_STUDIES),
        metavar="STUDY",
        help=f"the study whose data are resampled: {', '.join(sweep.BOOTSTRAP_STUDIES)}",
    )
    p.add_argument(
        "--resamples",
        type=_number_argument(
            int,
            "a whole number",
            lambda v: 1 <= v <= sweep.MAX_RUNS,
            f"between 1 and {sweep.MAX_RUNS}",
        ),
        default=inspect.signature(sweep.Bootstrap).parameters["resamples"].default,
        metavar="N",
        help="how many resamples of the data's rows, each refitted (default: %(default)s)",
    )
    _backend_options(p, "bootstrap")


@dataclass(frozen=True)
class Command:
    """A subcommand: what runs it, the study whose defaults its options take,
    the shared options it has (and changes to them), and its own."""

    run: Callable[[argparse.Namespace], None]
    study: Callable
    help: str
    description: str
    shared: list[str]
    changes: dict = field(default_factory=dict)
    own_options: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS = {
    "univariate": Command(
        run_univariate,
        studies.univariate,
        "the book's first fit: 5 points, y = 2x - 1 + noise",
        "Fit LinReg() to the chapter's 5 points (x uniform in [-5, 5], y = 2x - 1 + gauss(0, 4)) "
        "by full-batch gradient descent. With the defaults it prints the book's lines digit "
        "for digit.",
        ["engine", "seed", *TRAINING_OPTIONS, "plot"],
    ),
    "batch": Command(
        run_batch,
        studies.batch,
        "1000 points: mini-batch against full-batch gradient descent",
        "Fit LinReg() to 1000 points (x uniform in [-10, 10], y = 2x + 1 + gauss(0, 5)) with "
        "mini-batches, then with the full batch, and compare time and result. --plot draws "
        "both loss curves: the mini-batch one is noisy.",
        ["engine", "seed", *TRAINING_OPTIONS, "batch_size", "samples", "plot"],
    ),
    "multivariate": Command(
        run_multivariate,
        studies.multivariate,
        "3 features: y = 2x0 + 3x1 - x2 + 1 + noise",
        "Fit LinReg(n_inputs=3) to 1000 points by mini-batch gradient descent, then compare "
        "the weights with the closed-form least-squares solution.",
        ["engine", "seed", *TRAINING_OPTIONS, "batch_size", "samples", "plot"],
    ),
    "bodyfat": Command(
        run_bodyfat,
        studies.bodyfat,
        "the body-fat study: which measurements predict body fat (the default)",
        "Predict body fat (Brozek formula, %) from 14 body measurements of 252 men: normalise "
        "the features to z-scores, train as the book does, print the weights largest first "
        "and compare them with the closed-form least-squares fit. --data and --target run the "
        "same study on a CSV file of your own.",
        ["engine", "seed", *TRAINING_OPTIONS, "batch_size", "data", "target", "plot"],
        {
            # None: the method's own (studies.BODYFAT_SETTINGS)
            "epochs": {
                "help": "training epochs (default: {gd[epochs]}; Newton: {newton[epochs]})".format(
                    **studies.BODYFAT_SETTINGS
                )
            },
            "learning_rate": {
                "help": "the step size (default: {gd[learning_rate]}; Newton: {newton[learning_rate]:g}, "
                "the full step)".format(**studies.BODYFAT_SETTINGS)
            },
            "batch_size": {
                "help": "examples per mini-batch (default: {gd[batch_size]}; Newton: all)".format(
                    **studies.BODYFAT_SETTINGS
                )
            },
        },
        own_options=_bodyfat_options,
    ),
    "graph": Command(
        run_graph,
        studies.graph,
        "draw the computational graph of the book's 5-point loss",
        "Build the loss of an untrained LinReg() on the chapter's points, backpropagate, and "
        "render its computational graph with Graphviz (needs the `dot` program).",
        ["engine", "seed", "samples"],
        {"samples": {"type": graph_samples}},
        _graph_options,
    ),
    "moons": Command(
        run_moons,
        studies.moons,
        "micrograd's demo: a 2-16-16-1 MLP (agrad.nn) classifies two moons",
        "Draw two interleaved half circles (as scikit-learn's make_moons, in NumPy), build "
        "MLP(2, [16, 16, 1]) and train it for --steps steps of full-batch SGD on micrograd's "
        "max-margin loss with L2 regularisation, as micrograd's demo does; print the loss and "
        "accuracy. --plot draws the decision boundary.",
        ["engine", "seed", "samples", "log_every", "plot"],
        {
            "engine": {
                "help": "native: the compiled engine; pure: the pure-Python one, which takes "
                "minutes (default: %(default)s)"
            },
            "seed": {
                "help": "the seed of the data and starting weights (default: %(default)s, "
                "the demo's)"
            },
            "log_every": {
                "help": "print the loss every N steps, 0 for never (default: %(default)s)"
            },
        },
        _moons_options,
    ),
    "sweep": Command(
        run_sweep,
        studies.batch,  # the defaults of engine and samples are every study's
        "one study over a grid of seeds, learning rates, batch sizes, epochs",
        "Run STUDY for every combination of the given seeds, learning rates, batch sizes and "
        "epoch counts (the defaults are the study's own), on all local cores, a Dask scheduler "
        "or a Ray cluster. Each finished run is a row of the sweep's record, DIR/runs.sqlite, "
        "written out as DIR/runs.csv when the sweep ends or is interrupted; running the same "
        "command again does only the runs it lacks. One sweep at a time writes to a DIR. At the "
        "end: the spread over seeds of each configuration (median, quartiles, worst of the gap "
        "to least squares, in %).",
        ["engine", "samples", "data", "target", "plot"],
        {
            "samples": {
                "help": "number of points, for the studies of synthetic data (default: the "
                "study's)",
                "default": None,
            },
            "data": {
                "help": "bodyfat: a CSV file of your own (default: the bundled body-fat data)"
            },
        },
        _sweep_options,
    ),
}


COMMANDS["bootstrap"] = Command(
    run_bootstrap,
    sweep.Bootstrap,
    "bootstrap intervals of the body-fat weights, beside the Hessian's",
    "Resample the study's rows with replacement N times (--resamples), refit the "
    "least-squares weights of each resample with agrad (one step of Newton's method, on the "
    "features as z-scores of all the data), and print each weight's bootstrap standard error "
    "and percentile 95% interval beside the Hessian's. Each resample is a run, on all local "
    "cores, a Dask scheduler or a Ray cluster, filed in DIR/runs.sqlite (exported to "
    "DIR/runs.csv) as sweeps' are: the same command again, or with more resamples, does only "
    "the ones it lacks; its rows depend only on --seed and the resample's index.",
    ["engine", "seed", "data", "target", "plot"],
    {"seed": {"help": "the seed of the resamples' rows (default: %(default)s)"}},
    _bootstrap_options,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agrad",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = subparsers.add_parser(name, help=command.help, description=command.description)
        p.set_defaults(run=command.run, parser=p)
        add_options(p, command.study, command.shared, **command.changes)
        if command.own_options is not None:
            command.own_options(p)
    return parser


def _in_words(error: Exception) -> str:
    # an OSError's str leads with its errno ("[Errno 13] Permission denied: 'f'"):
    # a reader wants the words and the file
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if error.filename is None else f"{error.filename}: {error.strerror}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "python -m agrad"
    try:
        if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
            argv = ["bodyfat", *argv]  # the default command takes its options without its name
        args = build_parser().parse_args(argv)
        if getattr(args, "compile", False) and args.engine == "pure":
            args.parser.error("--compile needs the compiled engine (--engine native)")
        args.run(args)
    except BrokenPipeError:
        # the reader went away (python -m agrad | head): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    # the errors a user's input or machine can cause; anything else is a bug and keeps its traceback
    except (ValueError, OverflowError, OSError, RuntimeError, ImportError) as error:
        print(f"{prog}: error: {_in_words(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
