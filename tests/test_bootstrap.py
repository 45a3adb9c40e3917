"""``agrad.sweep.bootstrap`` and ``python -m agrad bootstrap``: resamples of
the body-fat rows, each refitted by agrad, on the sweep's backends and record.

A resample's rows depend only on the seed and its index, so its row is the
same bits in this process, on two local workers and alone (Dask and Ray are
checked in test_sweep.py, on the clusters started there for the sweeps); a
resumed bootstrap runs nothing twice; its standard errors approach the
Hessian's on data that meet the Hessian's assumptions; a bad input is refused
before any run, the record untouched.
"""

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_sweep import RESAMPLES, assert_same_resamples, unused_port

from agrad import linreg, studies, sweep


@pytest.fixture(scope="module")
def reference():
    return sweep.bootstrap(jobs=1, **RESAMPLES)


def test_each_resample_is_the_least_squares_fit_of_its_rows_alone(reference):
    data = studies.load_regression_data()
    X_norm, _, _ = linreg.standardize(data.X)
    names = [f"w_{name}" for name in data.feature_names]
    for row in reference.rows.itertuples(index=False):
        rows = np.random.default_rng([RESAMPLES["seed"], row.resample]).integers(0, 252, 252)
        assert (sweep.resample_rows(RESAMPLES["seed"], row.resample, 252) == rows).all()
        alone = sweep.Resample("bodyfat", RESAMPLES["seed"], row.resample, "native", data).run()
        assert [getattr(row, c) for c in [*names, "bias"]] == [alone[c] for c in [*names, "bias"]]
        # one Newton step lands on the least-squares weights of those rows
        fit = linreg.least_squares(np.asarray(X_norm)[rows], np.asarray(data.ys)[rows])
        weights = np.array([getattr(row, c) for c in names])
        np.testing.assert_allclose(weights, fit.weights, rtol=1e-8, atol=1e-8)
    # the resamples differ from each other, and from the fit on all the data
    assert reference.rows["w_abdomen"].nunique() == len(reference.rows)
    assert not (reference.rows["w_abdomen"] == reference.summary.loc["abdomen", "estimate"]).any()


def test_two_local_workers_and_the_pure_engine_give_the_same_bits(reference):
    assert_same_resamples(
        sweep.bootstrap(jobs=2, runs_per_task=1, **RESAMPLES).rows, reference.rows
    )
    # the engines agree bit for bit (on small data: the pure engine is slow)
    native, pure = (
        sweep.Resample("bodyfat", 5, 1, engine, synthetic()).run() for engine in ("native", "pure")
    )
    assert [pure[c] for c in ("w_a", "w_b", "bias", "mse")] == [
        native[c] for c in ("w_a", "w_b", "bias", "mse")
    ]


def test_the_summary_puts_the_bootstrap_beside_the_hessian(reference):
    table = reference.summary
    u = studies.bodyfat(method="newton", epochs=0).uncertainty
    assert list(table.index) == list(u.names)
    assert (table["hessian_se"].to_numpy() == u.standard_errors).all()
    assert (table[["hessian_low", "hessian_high"]].to_numpy() == u.intervals).all()
    weights = reference.rows[[f"w_{n}" for n in u.names[:-1]] + ["bias"]].to_numpy()
    assert (table["bootstrap_se"].to_numpy() == weights.std(axis=0, ddof=1)).all()
    assert (table["bootstrap_low"] <= table["bootstrap_high"]).all()
    assert table.attrs == {"resamples": 4, "failed": 0, "confidence": 0.95}


def synthetic(rows: int = 80) -> studies.RegressionData:
    """Data as the Hessian's standard errors assume them: linear, with
    Gaussian noise of one size."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, 2)) * [1.0, 3.0]
    y = 1.0 + 2.0 * X[:, 0] - 0.5 * X[:, 1] + rng.normal(scale=1.5, size=rows)
    return studies.RegressionData(
        tuple(map(tuple, X.tolist())),
        tuple(y.tolist()),
        ("a", "b"),
        "y",
        "synthetic",
        ("y", "a", "b"),
    )


def test_the_bootstrap_standard_errors_approach_the_hessians():
    result = sweep.bootstrap(data=synthetic(), resamples=200, seed=1, jobs=1)
    table = result.summary
    ratio = table["bootstrap_se"] / table["hessian_se"]
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), ratio
    # the percentile interval's ends within half a standard error of the t interval's
    for end in ("low", "high"):
        gap = (table[f"bootstrap_{end}"] - table[f"hessian_{end}"]).abs() / table["hessian_se"]
        assert (gap < 0.5).all(), gap


def bootstrap_command(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agrad", "bootstrap", "bodyfat", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_command_prints_both_intervals_draws_them_and_resumes(tmp_path, reference):
    out = str(tmp_path / "boot")
    options = ["--seed", str(RESAMPLES["seed"]), "--jobs", "1", "--output", out]
    done = bootstrap_command("--resamples", "2", *options, "--plot", out)
    assert done.returncode == 0, done.stderr
    assert "2 resamples of the 252 rows" in done.stdout and "0 already in" in done.stdout
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("abdomen ")]
    summary = sweep.summarize_bootstrap(reference.rows[:2], reference.uncertainty)
    row = summary.loc["abdomen"]
    columns = ["estimate", "bootstrap_se", "hessian_se", "bootstrap_low", "bootstrap_high"]
    columns += ["hessian_low", "hessian_high"]
    assert re.findall(r"-?\d+\.\d+", line) == [f"{row[c]:.3f}" for c in columns]
    assert (tmp_path / "boot" / "bootstrap-bodyfat-intervals.png").read_bytes()[:4] == b"\x89PNG"
    first = sweep.read_runs(out)

    # more resamples: only the missing one runs; the first two are the same rows
    done = bootstrap_command("--resamples", "3", *options)
    assert done.returncode == 0, done.stderr
    assert "2 already in" in done.stdout and "running 1 on" in done.stdout
    rows = sweep.read_runs(tmp_path / "boot" / "runs.csv")
    pd.testing.assert_frame_equal(rows[:2], first, check_exact=True)  # timings included
    assert_same_resamples(rows, reference.rows[:3])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--resamples", "0"], "argument --resamples: must be between 1 and"),
        (["--resamples", "1.5"], "argument --resamples: '1.5' is not a whole number"),
        (["--ray", "127.0.0.1:{port}"], "cannot reach a Ray cluster at '127.0.0.1:"),
        (["--target", "nope"], "no column 'nope'"),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, arguments, message):
    output = tmp_path / "out"
    arguments = [a.format(port=unused_port()) for a in arguments]
    done = bootstrap_command(*arguments, "--output", str(output))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[-1]
    assert not output.exists()


def test_other_settings_or_a_sweep_are_refused_and_the_record_kept(tmp_path):
    sweep.bootstrap(resamples=1, jobs=1, output=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(
        ValueError, match=r"holds a bootstrap of other settings.*engine 'native' there, 'pure' now"
    ):
        sweep.Bootstrap(resamples=2, engine="pure", output=tmp_path)
    with pytest.raises(ValueError, match="holds the runs of a bootstrap, not of a sweep"):
        sweep.Sweep("bodyfat", seeds=[0], output=tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    sweep_dir = tmp_path / "sweep"
    sweep.sweep("bodyfat", seeds=[0], epochs=5, jobs=1, output=sweep_dir)
    with pytest.raises(ValueError, match="holds the runs of a sweep, not of a bootstrap"):
        sweep.Bootstrap(resamples=2, output=sweep_dir)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"resamples": 0}, ValueError),
        ({"resamples": -3}, ValueError),
        ({"resamples": 2.0}, TypeError),
        ({"resamples": True}, TypeError),
        ({"resamples": "10"}, TypeError),
        ({"seed": -1}, ValueError),
        ({"seed": 1.5}, TypeError),
        ({"engine": "gpu"}, ValueError),
        ({"jobs": 2, "dask": "tcp://127.0.0.1:1"}, ValueError),
        ({"dask": 8786}, TypeError),
        ({"jobs": 0}, ValueError),
    ],
)
def test_the_python_api_raises_the_right_types(options, error):
    with pytest.raises(error):
        sweep.Bootstrap(**options)


def test_only_bodyfat_is_bootstrapped():
    with pytest.raises(ValueError, match="resamples bodyfat, not 'univariate'"):
        sweep.Bootstrap("univariate")
