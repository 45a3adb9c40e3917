"""python -m agrad moons: the demo runs, its exit codes, and its figure."""

import subprocess
import sys

import pytest

from agrad.__main__ import main


def test_moons_runs_and_draws_the_boundary(tmp_path, capsys):
    assert main(["moons", "--steps", "5", "--samples", "30", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("step 0 loss ")
    assert "MLP of [Layer of [ReLUNeuron(2)" in out
    assert "5 steps in " in out and "on the 30 points" in out
    figure = tmp_path / "moons-boundary.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = pytest.importorskip("matplotlib.image").imread(figure)
    assert image.shape[0] > 100 and image.shape[1] > 100
    # two regions and two classes of points: more than a handful of colours
    assert len({tuple(px) for px in image.reshape(-1, image.shape[2])[::97].tolist()}) > 10


def test_moons_is_deterministic_and_as_a_real_process():
    argv = [sys.executable, "-m", "agrad", "moons", "--steps", "3", "--samples", "20"]
    runs = [subprocess.run(argv, capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    strip = [[line for line in r.stdout.splitlines() if " s on the " not in line] for r in runs]
    assert strip[0] == strip[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["moons", "--steps", "-1"], "--steps"),
        (["moons", "--samples", "0"], "--samples"),
        (["moons", "--noise", "nan"], "--noise"),
        (["moons", "--engine", "gpu"], "--engine"),
        (["moons", "--log-every", "x"], "--log-every"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_plot_directory_that_is_a_file_exits_2(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("")
    with pytest.raises(SystemExit) as stop:
        main(["moons", "--steps", "1", "--plot", str(target)])
    assert stop.value.code == 2
    assert "is a file, not a directory" in capsys.readouterr().err
