"""agrad.studies: the chapter's runs as functions that return results, quiet
and deterministic given their seed."""

import random

import pytest
from chapter import BOOK_TRAIN_LINES

import agrad
import agrad.pure
from agrad import studies
from agrad.linreg import least_squares

# The four studies that train, each small enough for a test.
TRAINING_STUDIES = [
    (studies.univariate, {"epochs": 50}),
    (studies.batch, {"epochs": 30, "samples": 100}),
    (studies.multivariate, {"epochs": 30, "samples": 100}),
    (studies.bodyfat, {"epochs": 30}),
]


def test_univariate_is_the_books_session(capsys):
    lines = []
    result = studies.univariate(log=lines.append)
    assert repr(result.initial_model) == "LinReg(w=0.011, b=0.000)"
    assert repr(result.initial_loss) == "Value(: 78.49574710788079)"
    assert "\n".join(lines) + "\n" == BOOK_TRAIN_LINES
    assert repr(result.run.model) == "LinReg(w=2.556, b=-0.892)"
    assert len(result.run.history) == 500
    assert result.run.fit.mse == pytest.approx(result.least_squares.mse, rel=1e-5)
    assert 0 <= result.gap < 1e-5
    assert capsys.readouterr().out == ""  # a study prints nothing


@pytest.mark.parametrize("study, kwargs", TRAINING_STUDIES)
def test_same_seed_same_result_and_the_callers_random_state_is_kept(study, kwargs, capsys):
    random.seed(1234)
    before = random.getstate()
    first = study(seed=7, **kwargs)
    assert random.getstate() == before
    second = study(seed=7, **kwargs)
    other = study(seed=8, **kwargs)
    runs = [r.run for r in (first, second, other)]  # every study returns a StudyResult
    assert runs[0].history == runs[1].history
    assert [p.data for p in runs[0].model.parameters()] == [
        p.data for p in runs[1].model.parameters()
    ]
    assert runs[0].history != runs[2].history
    assert capsys.readouterr().out == ""


def test_the_engines_agree_and_a_value_class_is_an_engine():
    native = studies.bodyfat(epochs=20, engine="native")
    pure = studies.bodyfat(epochs=20, engine=agrad.pure.Value)
    assert native.run.history == pure.run.history
    assert isinstance(pure.run.model.b, agrad.pure.Value)


def test_batch_runs_mini_batch_then_full_batch_from_the_same_data():
    lines = []
    result = studies.batch(epochs=20, samples=50, batch_size=5, log=lines.append, log_every=10)
    assert [line for line in lines if line.endswith(":")] == ["mini-batch of 5:", "full batch:"]
    assert len(lines) == 2 + 2 * 2
    assert len(result.xs) == 50
    assert result.least_squares.mse == least_squares(result.xs, result.ys).mse
    assert result.full_batch.history[-1] < result.full_batch.history[0]


def test_bodyfat_reads_the_data_once_for_many_runs(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "x,y,z\n" + "".join(f"{i},{3 * i + 1 + (i % 3)},{i * i % 7}\n" for i in range(30))
    )
    data = studies.load_regression_data(path, target="y")
    assert data.target == "y" and data.feature_names == ("x", "z") and data.source == str(path)
    path.unlink()  # the runs below do not read the file again
    runs = [studies.bodyfat(data=data, seed=seed, epochs=50, batch_size=10) for seed in (1, 2)]
    assert runs[0].run.history != runs[1].run.history
    assert runs[0].least_squares.mse == runs[1].least_squares.mse
    with pytest.raises(ValueError, match="differs from the data's target"):
        studies.bodyfat(data=data, target="x")


def test_bodyfat_on_another_target_of_the_bundled_data():
    data = studies.load_regression_data(target="age")
    assert data.target == "age" and "age" not in data.feature_names
    assert data.feature_names[0] == "body fat brozek" and data.ys[:2] == (23.0, 22.0)
    with pytest.raises(ValueError, match="no column 'nope'"):
        studies.load_regression_data(target="nope")


def test_bodyfat_raw_exercise():
    result = studies.bodyfat(epochs=50, raw=True)
    book_rate, small_rate = result.raw_runs
    assert book_rate.fit is None and "training diverged at epoch" in book_rate.error
    assert small_rate.learning_rate == 1e-5 and small_rate.error is None
    assert small_rate.fit.mse > result.raw_least_squares.mse


def test_graph_is_the_books_loss_backpropagated():
    loss = studies.graph(engine="pure").loss
    assert repr(loss) == "Value(: 78.49574710788079)" and loss.grad == 1.0


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"engine": "gpu"}, ValueError),
        ({"engine": 3}, TypeError),
        ({"seed": "42"}, TypeError),
        ({"seed": None}, TypeError),
        ({"epochs": -1}, ValueError),
        ({"samples": 0}, ValueError),
        ({"batch_size": 1001}, ValueError),
        ({"batch_size": 2.5}, TypeError),
        ({"learning_rate": float("inf")}, ValueError),
    ],
)
def test_bad_arguments(kwargs, error):
    random.seed(5)
    before = random.getstate()
    with pytest.raises(error):
        studies.batch(**{"epochs": 1, **kwargs})
    assert random.getstate() == before


def test_the_native_engine_is_the_default():
    assert type(studies.graph().loss) is agrad.Value


def test_the_gap_to_an_exact_least_squares_fit_is_none():
    assert studies.gap_to_least_squares(2.0, 1.0, [3.0, 4.0]) == 1.0
    assert studies.gap_to_least_squares(1e-3, 0.0, [3.0, 4.0]) is None
    assert studies.gap_to_least_squares(1e-3, 1e-30, [3.0, 4.0]) is None
    assert studies.gap_to_least_squares(0.0, 0.0, [0.0, 0.0]) is None


@pytest.mark.parametrize("study, kwargs", TRAINING_STUDIES)
def test_every_training_study_returns_one_shape_that_prints_briefly(study, kwargs):
    result = study(**kwargs)
    assert isinstance(result, studies.StudyResult)
    assert len(result.run.history) == kwargs["epochs"]
    gap = studies.gap_to_least_squares(
        result.run.fit.mse,
        result.least_squares.mse,
        result.ys if hasattr(result, "ys") else result.data.ys,
    )
    assert result.gap == gap
    # in a REPL: the models and fits, not every epoch's loss or every data point
    assert len(repr(result)) < 1500
    assert repr(result.run.history[0]) not in repr(result)


def test_a_study_setting_is_one_training_configuration():
    rng = random.Random(42)
    from agrad.datasets import univariate_data
    from agrad.linreg import LinReg

    xs, ys = univariate_data(rng=rng)
    LinReg(rng=rng)  # the study's inspected model, drawn before the trained one
    run = studies.Training(epochs=500, learning_rate=0.01).run(LinReg(rng=rng), xs, ys, rng)
    assert run.history == studies.univariate().run.history
