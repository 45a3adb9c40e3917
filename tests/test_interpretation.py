"""What second derivatives tell the chapter's reader.
The standard errors of the body-fat weights (the Hessian of the Gaussian
negative log-likelihood) against statsmodels' OLS, Newton's method landing on
least squares in one step, and the stability limit 2/lambda_max against the
learning rate where the book's runs start to diverge."""

import math
import random

import numpy as np
import pytest

import agrad
import agrad.pure
from agrad import studies
from agrad.__main__ import main
from agrad.datasets import univariate_data
from agrad.linreg import (
    LinReg,
    format_uncertainty,
    least_squares,
    stability_limit,
    standardize,
    student_t_quantile,
    train,
    uncertainty,
)

sm = pytest.importorskip("statsmodels.api")


@pytest.fixture(scope="module")
def body_fat():
    data = studies.load_regression_data()
    X_norm, _, _ = standardize(data.X)
    return data, X_norm, list(data.ys)


@pytest.mark.parametrize("engine", [agrad.Value, agrad.pure.Value])
def test_standard_errors_are_statsmodels_ols(body_fat, engine):
    data, X, ys = body_fat
    ols = sm.OLS(np.array(ys), sm.add_constant(np.array(X), prepend=False)).fit()
    u = uncertainty(X, ys, data.feature_names, value_class=engine)
    assert u.names == (*data.feature_names, "bias")
    np.testing.assert_allclose(u.estimates, ols.params, rtol=1e-8)
    np.testing.assert_allclose(u.standard_errors, ols.bse, rtol=1e-8)
    np.testing.assert_allclose(u.t_values, ols.tvalues, rtol=1e-8)
    np.testing.assert_allclose(u.intervals, ols.conf_int(0.05), rtol=1e-8)
    assert u.dof == ols.df_resid == len(ys) - 15
    assert u.sigma**2 == pytest.approx(ols.scale, rel=1e-12)
    # the Hessian of the negative log-likelihood is X^T X / sigma^2 (with the column of ones)
    design = np.column_stack([X, np.ones(len(ys))])
    # (the intercept's row against a z-score column is 0 up to rounding: compare to the scale)
    expected = design.T @ design / u.sigma**2
    np.testing.assert_allclose(u.hessian, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


def test_both_engines_give_the_same_bits(body_fat):
    _, X, ys = body_fat
    native = uncertainty(X, ys, value_class=agrad.Value)
    pure = uncertainty(X, ys, value_class=agrad.pure.Value)
    assert np.array_equal(native.hessian, pure.hessian)
    assert np.array_equal(native.standard_errors, pure.standard_errors)


def test_other_confidence_levels_are_statsmodels_too(body_fat):
    _, X, ys = body_fat
    ols = sm.OLS(np.array(ys), sm.add_constant(np.array(X), prepend=False)).fit()
    np.testing.assert_allclose(
        uncertainty(X, ys, confidence=0.9).intervals, ols.conf_int(0.1), rtol=1e-8
    )


@pytest.mark.parametrize("dof", [1, 2, 5, 30, 237, 10**4, 10**6])
@pytest.mark.parametrize("probability", [0.5, 0.6, 0.9, 0.975, 0.995, 1 - 1e-9, 0.025])
def test_student_t_quantile_is_scipys(probability, dof):
    stats = pytest.importorskip("scipy.stats")
    # SciPy's own quantile is the reference to about 1e-11 relative (older
    # releases, those on CPython 3.10, are off by 2e-11 at one degree of
    # freedom: see the exact test below); at a million degrees of freedom
    # log(x) of an x within 1e-6 of 1 costs our formula digits.
    rel = 1e-10 if dof <= 10**4 else 1e-9
    assert student_t_quantile(probability, dof) == pytest.approx(
        stats.t.ppf(probability, dof), rel=rel, abs=1e-15
    )


@pytest.mark.parametrize("probability", [0.5, 0.6, 0.9, 0.975, 0.995, 0.025])
def test_student_t_quantile_is_exact_where_it_has_a_closed_form(probability):
    # one degree of freedom: Cauchy, tan(pi (p - 1/2)); two: (2p - 1) / sqrt(2 p (1 - p))
    assert student_t_quantile(probability, 1) == pytest.approx(
        math.tan(math.pi * (probability - 0.5)), rel=1e-13, abs=1e-15
    )
    assert student_t_quantile(probability, 2) == pytest.approx(
        (2 * probability - 1) / math.sqrt(2 * probability * (1 - probability)),
        rel=1e-13,
        abs=1e-15,
    )


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: uncertainty([[0.0], [1.0]], [1.0, 2.0]), ValueError, "more rows than parameters"),
        (lambda: uncertainty([[0.0], [1.0], [2.0]], [1.0, 2.0, 3.0]), ValueError, "exact"),
        (
            lambda: uncertainty([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], [1, 3, 2, 5]),
            ValueError,
            "singular",
        ),
        (
            lambda: uncertainty([[0.0], [1.0], [2.0], [3.0]], [1, 3, 2, 5], ["a", "b"]),
            ValueError,
            "2 feature names",
        ),
        (
            lambda: uncertainty([[0.0], [1.0], [2.0], [3.0]], [1, 3, 2, 5], confidence=1.0),
            ValueError,
            "between 0 and 1",
        ),
        (
            lambda: uncertainty([[0.0], [1.0], [2.0], [3.0]], [1, 3, 2, 5], confidence="95%"),
            TypeError,
            "number",
        ),
        (lambda: student_t_quantile(0.975, 0), ValueError, "at least 1"),
        (lambda: student_t_quantile(0.975, 2.5), TypeError, "int"),
        (lambda: student_t_quantile(1.0, 3), ValueError, "between 0 and 1"),
    ],
)
def test_what_cannot_be_estimated_says_why(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_table_puts_the_clearest_weights_first_and_the_bias_last(body_fat):
    data, X, ys = body_fat
    lines = format_uncertainty(uncertainty(X, ys, data.feature_names)).splitlines()
    assert "std. error" in lines[0] and "95% interval" in lines[0]
    assert lines[1].split()[0] == "abdomen" and lines[-1].split()[0] == "bias"
    assert len(lines) == 1 + 15


# ------------------------------------------------------------------ Newton


@pytest.mark.parametrize(
    "engine, compiled",
    [(agrad.Value, False), (agrad.Value, True), (agrad.pure.Value, False)],
)
def test_newton_lands_on_least_squares_in_one_step(body_fat, engine, compiled):
    _, X, ys = body_fat
    best = least_squares(X, ys)
    model = LinReg(n_inputs=14, value_class=engine, rng=random.Random(3))
    lines = []
    train(
        model, X, ys, n_epochs=1, method="newton", compile=compiled, log=lines.append, log_every=1
    )
    weights = np.array([w.data for w in model.weights])
    np.testing.assert_allclose(weights, best.weights, rtol=0, atol=1e-10)
    assert model.b.data == pytest.approx(best.bias, abs=1e-10)
    assert (
        lines[0].startswith("  0 Loss: ") and "LinReg(w0=" in lines[0]
    )  # gradient descent's lines


def test_newton_gives_the_same_bits_on_every_engine_and_compiled(body_fat):
    _, X, ys = body_fat
    results = []
    for engine, compiled in [(agrad.Value, False), (agrad.Value, True), (agrad.pure.Value, False)]:
        model = LinReg(n_inputs=14, value_class=engine, rng=random.Random(5))
        history = []
        train(
            model,
            X[:60],
            ys[:60],
            n_epochs=2,
            method="newton",
            compile=compiled,
            history=history,
            log_every=None,
        )
        results.append((history, [p.data for p in model.parameters()]))
    assert results[0] == results[1] == results[2]


def test_newton_with_a_step_size_takes_that_fraction():
    xs, ys = [[0.0], [1.0], [2.0], [3.0]], [1.0, 3.2, 4.8, 7.1]
    model = LinReg(n_inputs=1, rng=random.Random(0))
    start = np.array([p.data for p in model.parameters()])
    train(model, xs, ys, learning_rate=0.5, n_epochs=1, method="newton", log_every=None)
    best = least_squares(xs, ys)
    target = np.array([*best.weights, best.bias])
    np.testing.assert_allclose([p.data for p in model.parameters()], (start + target) / 2)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"method": "bfgs"}, ValueError, "unknown method 'bfgs'"),
        ({"method": None}, TypeError, "method must be a str"),
        ({"method": "newton", "batch_size": 1}, ValueError, "singular"),
    ],
)
def test_newton_refuses_what_it_cannot_do(kwargs, error, message):
    xs, ys = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]], [2.0, 3.0, 8.0, 8.0]
    with pytest.raises(error, match=message):
        train(
            LinReg(n_inputs=2, rng=random.Random(0)), xs, ys, n_epochs=3, log_every=None, **kwargs
        )


def test_the_newton_study_and_command(capsys):
    result = studies.bodyfat(method="newton", epochs=1)
    np.testing.assert_allclose(result.run.fit.weights, result.least_squares.weights, atol=1e-10)
    assert main(["bodyfat", "--method", "newton", "--log-every", "1", "--seed-spread", "0"]) == 0
    out = capsys.readouterr().out
    assert "Newton's method, 2 steps of 1 on the full batch" in out
    assert "  1 Loss: 15.017 LinReg(" in out
    assert (
        "Newton's method's mean squared error equals the least-squares minimum to rounding" in out
    )


# ---------------------------------------------------------- stability limit


def _book_points():
    rng = random.Random(42)
    xs, ys = univariate_data(rng=rng)
    return xs, ys


def test_the_limit_is_two_over_the_largest_eigenvalue_of_the_mse_hessian():
    xs, ys = _book_points()
    n = len(xs)
    design = np.column_stack([xs, np.ones(n)])
    expected = 2 / np.linalg.eigvalsh(2 / n * design.T @ design)[-1]
    assert stability_limit(LinReg(rng=random.Random(0)), xs, ys) == pytest.approx(
        expected, rel=1e-12
    )


def test_the_books_univariate_run_diverges_just_above_the_limit_and_not_below():
    xs, ys = _book_points()
    limit = stability_limit(LinReg(rng=random.Random(0)), xs, ys)
    best = least_squares(xs, ys).mse
    below, above = [], []
    train(LinReg(rng=random.Random(1)), xs, ys, 0.99 * limit, 3000, history=below, log_every=None)
    train(LinReg(rng=random.Random(1)), xs, ys, 1.01 * limit, 3000, history=above, log_every=None)
    assert below[-1] == pytest.approx(best, rel=1e-9)
    assert above[-1] > 1e10 * above[0]
    with pytest.raises(OverflowError, match=f"above {limit:.4g}, the largest stable one"):
        train(LinReg(rng=random.Random(1)), xs, ys, 1.2 * limit, 10_000, log_every=None)


@pytest.mark.parametrize("raw", [False, True])
def test_the_body_fat_runs_diverge_just_above_the_limit(body_fat, raw):
    data, X, ys = body_fat
    X = [list(row) for row in data.X] if raw else X
    limit = stability_limit(LinReg(n_inputs=14, rng=random.Random(0)), X, ys)
    below, above = [], []

    def run(rate, epochs, history):  # the same model and start for both rates
        model = LinReg(n_inputs=14, rng=random.Random(1))
        train(model, X, ys, rate, epochs, history=history, log_every=None, compile=True)

    run(0.97 * limit, 400, below)
    assert below[-1] < below[0]
    with pytest.raises(OverflowError, match=f"above {limit:.4g}"):
        run(1.1 * limit, 20_000, above)
    # the loss grew from the start: not a late accident
    assert above[200] > above[0]


def test_the_book_exercise_explains_itself(capsys):
    result = studies.bodyfat(epochs=60, raw=True)
    raw_limit = result.raw_runs[0].stability_limit
    assert raw_limit < 0.05 < result.stability_limit  # the book's rate: fine on z-scores only
    assert result.raw_runs[0].error is not None and f"{raw_limit:.4g}" in result.raw_runs[0].error
    assert main(["bodyfat", "--raw", "--epochs", "60", "--seed-spread", "0"]) == 0
    out = capsys.readouterr().out
    assert "Why: gradient descent converges only below 2/lambda_max" in out
    assert "is below it" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["univariate"],
        ["batch", "--epochs", "20"],
        ["bodyfat", "--epochs", "20", "--seed-spread", "0"],
    ],
)
def test_the_commands_print_the_limit_beside_the_rate_used(argv, capsys):
    assert main(argv) == 0
    line = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("Largest stable")
    )
    assert "2/lambda_max" in line and "is below it" in line


def test_a_diverging_command_says_the_limit(capsys):
    assert main(["univariate", "--learning-rate", "1.0", "--log-every", "0"]) == 1
    assert "the largest stable one" in capsys.readouterr().err


# ------------------------------------------------------------- the study


def test_the_study_carries_standard_errors_and_intervals(body_fat, tmp_path, capsys):
    result = studies.bodyfat(epochs=20)
    assert result.standard_errors.shape == (15,) and result.intervals.shape == (15, 2)
    assert (
        result.intervals[:, 0] < [*result.least_squares.weights.tolist(), result.least_squares.bias]
    ).all()
    quick = studies.bodyfat(epochs=20, second_order=False)
    assert quick.uncertainty is None and quick.standard_errors is None
    assert quick.stability_limit is None
    with pytest.raises(TypeError, match="second_order"):
        studies.univariate(second_order="yes")
    assert main(["bodyfat", "--epochs", "20", "--seed-spread", "0", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "on the z-scores" in out and "std. error" in out
    assert (tmp_path / "bodyfat-intervals.png").read_bytes()[:4] == b"\x89PNG"
