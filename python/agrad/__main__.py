"""``python -m agrad``: the runs of the chapter "Linear Regression the Autograd Way".

With no arguments it runs the body-fat study on the bundled data.  Each
subcommand is one run of the chapter; ``python -m agrad SUBCOMMAND --help``
says what it does and which knobs it has.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence

from agrad import linreg, viz

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
positive_float = _number_argument(
    float, "a number", lambda v: 0 < v < float("inf"), "a positive number"
)


def add_common(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    learning_rate: float,
    log_every: int,
    batch_size: int | None = None,
    samples: int | None = None,
    plot: bool = True,
) -> None:
    parser.add_argument(
        "--engine",
        choices=sorted(linreg.ENGINES),
        default="native",
        help="native: the compiled engine (default); pure: the pure-Python one",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=42,
        help="seed of Python's random (default: %(default)s, the book's)",
    )
    parser.add_argument(
        "--epochs",
        type=non_negative_int,
        default=epochs,
        help="training epochs (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=learning_rate,
        help="gradient descent step size (default: %(default)s)",
    )
    if batch_size is not None:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_size,
            help="examples per mini-batch (default: %(default)s)",
        )
    parser.add_argument(
        "--log-every",
        type=non_negative_int,
        default=log_every,
        metavar="N",
        help="print the book's loss line every N epochs, 0 for never (default: %(default)s)",
    )
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar while training"
    )
    if samples is not None:
        parser.add_argument(
            "--samples",
            type=positive_int,
            default=samples,
            help="number of points (default: %(default)s)",
        )
    if plot:
        parser.add_argument(
            "--plot", metavar="DIR", help="also write the run's figures as PNG files into DIR"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agrad",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser(
        "univariate",
        help="the book's first fit: 5 points, y = 2x - 1 + noise",
        description="Fit LinReg() to the chapter's 5 points (x uniform in [-5, 5], y = 2x - 1 + "
        "gauss(0, 4)) by full-batch gradient descent. With the defaults it prints the "
        "book's lines digit for digit.",
    )
    add_common(p, epochs=500, learning_rate=0.01, log_every=50)
    p.set_defaults(run=run_univariate)

    p = commands.add_parser(
        "batch",
        help="1000 points: mini-batch against full-batch gradient descent",
        description="Fit LinReg() to 1000 points (x uniform in [-10, 10], y = 2x + 1 + gauss(0, 5)) "
        "with mini-batches, then with the full batch, and compare time and result. "
        "--plot draws both loss curves: the mini-batch one is noisy.",
    )
    add_common(p, epochs=500, learning_rate=0.01, log_every=50, batch_size=10, samples=1000)
    p.set_defaults(run=run_batch)

    p = commands.add_parser(
        "multivariate",
        help="3 features: y = 2x0 + 3x1 - x2 + 1 + noise",
        description="Fit LinReg(n_inputs=3) to 1000 points by mini-batch gradient descent, then "
        "compare the weights with the closed-form least-squares solution.",
    )
    add_common(p, epochs=10000, learning_rate=0.01, log_every=500, batch_size=50, samples=1000)
    p.set_defaults(run=run_multivariate)

    p = commands.add_parser(
        "bodyfat",
        help="the body-fat study: which measurements predict body fat (the default)",
        description="Predict body fat (Brozek formula, %%) from 14 body measurements of 252 men: "
        "normalise the features to z-scores, train as the book does, print the weights "
        "largest first and compare them with the closed-form least-squares fit. "
        "--data and --target run the same study on a CSV file of your own.",
    )
    add_common(p, epochs=1000, learning_rate=0.05, log_every=0, batch_size=20)
    p.add_argument(
        "--data",
        metavar="CSV",
        help="a CSV file with a header row (default: the bundled body-fat data)",
    )
    p.add_argument("--target", help="the column to predict (default: the first column)")
    p.add_argument(
        "--raw",
        action="store_true",
        help="the book's exercise: also train on the data without normalising it",
    )
    p.add_argument(
        "--raw-learning-rate",
        type=positive_float,
        default=1e-5,
        help="learning rate for the unnormalised run (default: %(default)s; the "
        "normalised run's rate is tried first and diverges)",
    )
    p.set_defaults(run=run_bodyfat)

    p = commands.add_parser(
        "graph",
        help="draw the computational graph of the book's 5-point loss",
        description="Build the loss of an untrained LinReg() on the chapter's points, backpropagate, "
        "and render its computational graph with Graphviz (needs the `dot` program).",
    )
    p.add_argument(
        "--engine",
        choices=sorted(linreg.ENGINES),
        default="native",
        help="native: the compiled engine (default); pure: the pure-Python one",
    )
    p.add_argument(
        "--seed", type=int, default=42, help="seed of Python's random (default: %(default)s)"
    )
    p.add_argument(
        "--samples", type=positive_int, default=5, help="number of points (default: %(default)s)"
    )
    p.add_argument(
        "--output",
        default="loss-graph.svg",
        help="file to write; its extension picks the format (default: %(default)s)",
    )
    p.add_argument(
        "--rankdir", choices=["LR", "TB", "RL", "BT"], default="LR", help="layout direction"
    )
    p.add_argument("--show-grads", action="store_true", help="show each value's gradient")
    p.set_defaults(run=run_graph)
    return parser


def _seed_and_engine(args) -> type:
    random.seed(args.seed)
    return linreg.ENGINES[args.engine]


def _train(model, xs, ys, args, batch_size, history=None, log_every=None):
    return linreg.train(
        model,
        xs,
        ys,
        learning_rate=args.learning_rate,
        n_epochs=args.epochs,
        batch_size=batch_size,
        log_every=args.log_every if log_every is None else log_every,
        history=history,
        progress=args.progress,
    )


def _plot_path(args, name: str) -> str:
    return os.path.join(args.plot, name)


def run_univariate(args) -> None:
    value_class = _seed_and_engine(args)
    # the book's data and call sequence: the first LinReg() draws w = 0.011,
    # and the model that is trained is the second one
    xs = [random.uniform(-5, 5) for _ in range(5)]
    ys = [2 * x - 1 + random.gauss(0, 4) for x in xs]
    model = linreg.LinReg(value_class=value_class)
    print(f">>> LinReg()\n{model}")
    print(f">>> loss\n{model.loss(xs, ys)}")
    print(">>> train(LinReg(), xs, ys, ...)")
    history: list[float] = []
    model = _train(linreg.LinReg(value_class=value_class), xs, ys, args, None, history)
    print(f"trained: {model}, loss {history[-1]:.3f}" if history else f"untrained: {model}")
    if args.plot and history:
        print(
            "wrote",
            viz.plot_loss_curves(
                {"full batch": history},
                _plot_path(args, "univariate-loss.png"),
                title="Univariate fit to 5 points",
                references={"least-squares MSE": linreg.least_squares(xs, ys).mse},
            ),
        )


def run_batch(args) -> None:
    value_class = _seed_and_engine(args)
    xs = [random.uniform(-10, 10) for _ in range(args.samples)]
    ys = [2 * x + 1 + random.gauss(0, 5) for x in xs]
    if args.batch_size > args.samples:
        raise ValueError(f"--batch-size {args.batch_size} is larger than --samples {args.samples}")
    runs = {}
    for name, batch_size in [
        (f"mini-batch of {args.batch_size}", args.batch_size),
        ("full batch", None),
    ]:
        print(f"{name}:")
        history: list[float] = []
        start = time.perf_counter()
        model = _train(linreg.LinReg(value_class=value_class), xs, ys, args, batch_size, history)
        runs[name] = (model, history, time.perf_counter() - start)
    print()
    fit = linreg.least_squares(xs, ys)
    print(f"least squares: w={fit.weights[0]:.3f}, b={fit.bias:.3f}, MSE {fit.mse:.3f}")
    for name, (model, _, seconds) in runs.items():
        mse = linreg.model_fit(model, xs, ys).mse
        print(f"{name}: {model}, MSE on all {args.samples} points {mse:.3f}, {seconds:.2f} s")
    if args.plot and args.epochs:
        print(
            "wrote",
            viz.plot_loss_curves(
                {name: history for name, (_, history, _) in runs.items()},
                _plot_path(args, "batch-loss.png"),
                title=f"Loss on {args.samples} points: mini-batch (batch loss) against full batch",
                references={"least-squares MSE": fit.mse},
            ),
        )


def run_multivariate(args) -> None:
    value_class = _seed_and_engine(args)
    X = [[random.uniform(-10, 10) for _ in range(3)] for _ in range(args.samples)]
    ys = [2 * x[0] + 3 * x[1] - x[2] + 1 + random.gauss(0, 5) for x in X]
    if args.batch_size > args.samples:
        raise ValueError(f"--batch-size {args.batch_size} is larger than --samples {args.samples}")
    history: list[float] = []
    model = _train(
        linreg.LinReg(n_inputs=3, value_class=value_class), X, ys, args, args.batch_size, history
    )
    print()
    names = ["w0 (true 2)", "w1 (true 3)", "w2 (true -1)"]
    print(
        linreg.format_comparison(
            names,
            dict(
                zip(
                    ["gradient descent", "least squares"],
                    linreg.compare_fits(model, X, ys),
                    strict=True,
                )
            ),
        )
    )
    if args.plot and history:
        print(
            "wrote",
            viz.plot_loss_curves(
                {f"mini-batch of {args.batch_size}": history},
                _plot_path(args, "multivariate-loss.png"),
                title="Multivariate fit: loss per mini-batch",
                references={"least-squares MSE": linreg.least_squares(X, ys).mse},
            ),
        )


def run_bodyfat(args) -> None:
    from agrad import datasets

    value_class = _seed_and_engine(args)
    if args.data is None:
        df = datasets.load_body_fat()
        source = "the bundled body-fat data (252 men)"
        if args.target is not None and args.target not in df.columns:
            raise ValueError(f"no column {args.target!r} in the body-fat data")
    else:
        df = datasets.load_csv(args.data, target=args.target)
        source = args.data
    X, ys, names = datasets.to_xy(df, target=args.target)
    if args.batch_size > len(ys):
        raise ValueError(
            f"--batch-size {args.batch_size} is larger than the {len(ys)} rows of {source}"
        )
    X_norm, _, _ = linreg.standardize(X)
    target = args.target or df.columns[0]
    print(f"Predicting {target!r} from {len(names)} features of {source}, features as z-scores.")
    print(
        f"Training on the {args.engine} engine: {args.epochs} epochs, mini-batches of {args.batch_size}, "
        f"learning rate {args.learning_rate}, seed {args.seed}."
    )
    history: list[float] = []
    start = time.perf_counter()
    model = _train(
        linreg.LinReg(n_inputs=len(names), feature_names=names, value_class=value_class),
        X_norm,
        ys,
        args,
        args.batch_size,
        history,
    )
    print(f"Trained in {time.perf_counter() - start:.2f} s.\n")
    print("Weights, largest first:")
    linreg.print_weights(model)
    trained, best = linreg.compare_fits(model, X_norm, ys)
    print(
        "\nBeside the closed-form least-squares fit (weights per standard deviation of a feature):"
    )
    print(linreg.format_comparison(names, {"gradient descent": trained, "least squares": best}))
    print(
        f"\nGradient descent's mean squared error is {100 * (trained.mse / best.mse - 1):.1f}% above "
        f"the least-squares minimum; sigma is the estimated noise, the log-likelihood the chapter's "
        f"Gaussian one. (The last mini-batch steps are noisy: a larger --batch-size or a smaller "
        f"--learning-rate lands closer.)"
    )
    if args.raw:
        print("\nThe same training on the unnormalised data (the book's exercise):")
        side_by_side = {"z-score GD": trained, "z-score LS": best}
        side_by_side.update(_raw_runs(args, value_class, X, ys, names))
        print(linreg.format_comparison(names, side_by_side))
    if args.plot:
        print(
            "wrote",
            viz.plot_weights(
                names,
                {"gradient descent": trained.weights, "least squares": best.weights},
                _plot_path(args, "bodyfat-weights.png"),
                title=f"Weights for {target!r} (features as z-scores)",
            ),
        )
        if history:
            print(
                "wrote",
                viz.plot_loss_curves(
                    {f"mini-batch of {args.batch_size}": history},
                    _plot_path(args, "bodyfat-loss.png"),
                    title="Body-fat model: loss per mini-batch",
                    references={"least-squares MSE": best.mse},
                ),
            )


def _raw_runs(args, value_class, X, ys, names) -> dict:
    fits = {}
    for learning_rate in dict.fromkeys([args.learning_rate, args.raw_learning_rate]):
        random.seed(args.seed)
        model = linreg.LinReg(n_inputs=len(names), feature_names=names, value_class=value_class)
        try:
            linreg.train(
                model,
                X,
                ys,
                learning_rate=learning_rate,
                n_epochs=args.epochs,
                batch_size=args.batch_size,
                log_every=0,
                progress=args.progress,
            )
        except OverflowError as error:
            print(f"  learning rate {learning_rate}: {error}")
            continue
        fit = linreg.model_fit(model, X, ys)
        print(f"  learning rate {learning_rate}: trained, mean squared error {fit.mse:.3f}")
        fits[f"raw GD, lr {learning_rate:g}"] = fit
    fits["raw LS"] = linreg.least_squares(X, ys)
    return fits


def run_graph(args) -> None:
    value_class = _seed_and_engine(args)
    xs = [random.uniform(-5, 5) for _ in range(args.samples)]
    ys = [2 * x - 1 + random.gauss(0, 4) for x in xs]
    loss = linreg.LinReg(value_class=value_class).loss(xs, ys)
    loss.backward()
    extension = os.path.splitext(args.output)[1].lstrip(".").lower()
    if not extension:
        raise ValueError(
            f"--output {args.output!r} needs an extension that names the format, e.g. .svg or .png"
        )
    dot = viz.draw_dot(loss, format=extension, rankdir=args.rankdir, show_grads=args.show_grads)
    print("wrote", dot.render(outfile=args.output, cleanup=True))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "python -m agrad"
    try:
        if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
            argv = ["bodyfat", *argv]  # the default command takes its options without its name
        args = build_parser().parse_args(argv)
        args.run(args)
    except BrokenPipeError:
        # the reader went away (python -m agrad | head): stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    # the errors a user's input or machine can cause; anything else is a bug and keeps its traceback
    except (ValueError, OverflowError, OSError, RuntimeError, ImportError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
