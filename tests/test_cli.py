"""python -m agrad: each subcommand runs, prints what the chapter prints, and
fails with one line and a non-zero exit on bad input."""

import subprocess
import sys

import pytest
from chapter import BOOK_TRAIN_LINES

from agrad.__main__ import MAX_GRAPH_SAMPLES, main


def test_default_is_the_body_fat_study_as_a_real_process():
    done = subprocess.run(
        [sys.executable, "-m", "agrad"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Weights, largest first:" in out
    weights_table = out.split("Weights, largest first:\n")[1].splitlines()
    assert weights_table[0].split()[1] == "abdomen"
    assert "least squares" in out and "log-likelihood" in out
    assert "% above the least-squares minimum" in out


@pytest.mark.parametrize("engine", ["native", "pure"])
def test_univariate_prints_the_books_lines(engine, capsys):
    assert main(["univariate", "--engine", engine]) == 0
    out = capsys.readouterr().out
    assert "LinReg(w=0.011, b=0.000)" in out and "Value(: 78.49574710788079)" in out
    assert BOOK_TRAIN_LINES in out


def test_bodyfat_options_plots_and_raw_exercise(tmp_path, capsys):
    assert (
        main(["bodyfat", "--engine", "pure", "--epochs", "60", "--raw", "--plot", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "Training on the pure engine: 60 epochs" in out
    assert "learning rate 0.05: training diverged at epoch" in out  # the book's rate, unnormalised
    assert "raw LS" in out
    for name in ("bodyfat-weights.png", "bodyfat-loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_command_takes_its_options_without_its_name(capsys):
    assert main(["--epochs", "5", "--seed", "1"]) == 0
    assert "5 epochs, mini-batches of 20, learning rate 0.05, seed 1" in capsys.readouterr().out


def test_bodyfat_on_a_users_csv(tmp_path, capsys):
    data = tmp_path / "mine.csv"
    data.write_text(
        "x1,x2,y\n"
        + "".join(f"{i},{(i * 7) % 5},{2 * i + 3 * ((i * 7) % 5) + 1}\n" for i in range(40))
    )
    assert (
        main(
            [
                "bodyfat",
                "--data",
                str(data),
                "--target",
                "y",
                "--epochs",
                "300",
                "--batch-size",
                "40",
                "--learning-rate",
                "0.1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Predicting 'y' from 2 features" in out
    data.write_text("x1,y\n1,2\n3,oops\n")
    assert main(["bodyfat", "--data", str(data), "--target", "y"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"python -m agrad: error: {data}, line 3, column 'y': 'oops' is not a number"
    )


def test_batch_and_multivariate(tmp_path, capsys):
    assert main(["batch", "--samples", "200", "--epochs", "60", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mini-batch of 10:" in out and "full batch:" in out and "least squares: w=" in out
    assert (tmp_path / "batch-loss.png").exists()
    assert main(["multivariate", "--epochs", "300", "--log-every", "100"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if "Loss:" in line] == ["0", "100", "200"]
    assert "w1 (true 3)" in out


def test_graph_renders(tmp_path):
    output = tmp_path / "graph.svg"
    assert main(["graph", "--output", str(output), "--show-grads", "--engine", "pure"]) == 0
    assert "<svg" in output.read_text()
    assert not (tmp_path / "graph.gv").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["nonsense"],
        ["bodyfat", "--epochs", "-1"],
        ["batch", "--learning-rate", "fast"],
        ["univariate", "--engine", "gpu"],
        ["graph", "--samples", "0"],
        ["batch", "--samples", str(10**12)],
        ["batch", "--samples", "1e3"],
        ["multivariate", "--samples", "100001"],
        ["graph", "--samples", "41"],
        ["univariate", "--epochs", str(10**9)],
        ["univariate", "--epochs", "nan"],
        ["univariate", "--learning-rate", "nan"],
        ["univariate", "--learning-rate", "inf"],
        ["univariate", "--learning-rate", "1e999"],
        ["univariate", "--learning-rate", "-0.1"],
        ["univariate", "--log-every", "-5"],
        ["bodyfat", "--raw-learning-rate", "0"],
        ["bodyfat", "--batch-size", "0"],
        ["bodyfat", "--batch-size", "253"],
        ["batch", "--samples", "5", "--batch-size", "10"],
        ["bodyfat", "--seed", "4.5"],
        ["bodyfat", "--data", "/no/such/file.csv"],
        ["bodyfat", "--data", "/"],
        ["bodyfat", "--plot", "/dev/null"],
        ["bodyfat", "--plot", "/dev/null/figures"],
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("python -m agrad")
    assert "error:" in err.splitlines()[-1]


def test_errors_found_while_running_are_one_line(capsys):
    assert main(["univariate", "--learning-rate", "1.0", "--log-every", "0"]) == 1
    assert "training diverged at epoch" in capsys.readouterr().err


def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("univariate", "batch", "multivariate", "bodyfat", "graph"):
        assert command in out


@pytest.mark.parametrize(
    "command", ["univariate", "batch", "multivariate", "bodyfat", "graph", "sweep", "moons"]
)
def test_each_commands_help_prints_its_text_as_written(command, capsys):
    """argparse formats help strings with %, not descriptions: a "%%" in a
    description is printed doubled."""
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "%%" not in out and "usage:" in out


def test_bodyfat_data_with_a_byte_order_mark(tmp_path, capsys):
    data = tmp_path / "excel.csv"
    data.write_bytes(
        b"\xef\xbb\xbfy,x\r\n" + b"".join(b"%d,%d\r\n" % (2 * i + i % 3, i) for i in range(10))
    )
    assert (
        main(
            ["bodyfat", "--data", str(data), "--target", "y", "--epochs", "5", "--batch-size", "5"]
        )
        == 0
    )
    assert "Predicting 'y' from 1 features" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["loss.gv", "loss.dot", "loss.png", "loss.pdf"])
def test_graph_in_every_format_dot_writes(tmp_path, name, capsys):
    assert main(["graph", "--output", str(tmp_path / name)]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / name}\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # and nothing beside it
    assert (tmp_path / name).stat().st_size > 100


@pytest.mark.parametrize(
    "output, message",
    [
        ("loss.docx", "Graphviz cannot write 'docx'"),
        ("loss.x11", "Graphviz cannot write 'x11'"),
        ("loss", "needs an extension"),
        ("missing-dir/loss.svg", "no directory"),
        (".", "is a directory"),
    ],
)
def test_graph_output_is_checked_before_anything_is_written(tmp_path, output, message, capsys):
    existing = tmp_path / "loss.docx"
    existing.write_text("the user's own file")
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", "--output", str(tmp_path / output)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert existing.read_text() == "the user's own file"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.docx"]


def test_a_failed_render_leaves_the_old_file(tmp_path, monkeypatch, capsys):
    output = tmp_path / "loss.svg"
    output.write_text("the user's own file")
    monkeypatch.setenv("PATH", str(tmp_path))  # dot cannot be found once parsing is done
    monkeypatch.setattr("agrad.viz.graphviz_formats", lambda: {"svg"})
    assert main(["graph", "--output", str(output)]) == 1
    assert "dot" in capsys.readouterr().err
    assert output.read_text() == "the user's own file"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.svg"]


@pytest.mark.parametrize(
    "rows",
    [
        [(i, (i * 7) % 5, 2 * i + 3 * ((i * 7) % 5) + 1) for i in range(40)],
        [(0, 1, 2), (1, 0, 1), (2, 2, 6), (3, 1, 5)],
    ],
)
def test_data_that_fit_exactly_print_no_percentage(tmp_path, rows, capsys):
    data = tmp_path / "exact.csv"
    data.write_text("x1,x2,y\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    argv = ["bodyfat", "--data", str(data), "--target", "y", "--batch-size", "4"]
    assert main([*argv, "--epochs", "300", "--learning-rate", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "% above" not in out
    assert "the least-squares fit is exact" in out


def test_a_constant_column_is_named_with_its_place_in_the_file(tmp_path, capsys):
    data = tmp_path / "const.csv"
    data.write_text("y,x,unit,z\n1,5,2,7\n2,6,2,9\n3,4,2,8\n")
    assert main(["bodyfat", "--data", str(data), "--batch-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "column 'unit' (column 3 of the file) has the same value 2 in every row" in err
    assert main(["bodyfat", "--data", str(data), "--target", "x", "--batch-size", "2"]) == 1
    assert "column 'unit' (column 3 of the file)" in capsys.readouterr().err


def test_the_largest_graph_allowed_is_drawn(tmp_path):
    output = tmp_path / "largest.svg"
    argv = ["graph", "--samples", str(MAX_GRAPH_SAMPLES), "--engine", "pure", "--output"]
    assert main([*argv, str(output)]) == 0
    assert output.exists()


def test_empty_and_headless_csv_files_are_one_line_errors(tmp_path, capsys):
    for text in ["", "\n\n", "y,x\n"]:
        data = tmp_path / "empty.csv"
        data.write_text(text)
        assert main(["bodyfat", "--data", str(data)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("python -m agrad: error: ")


def test_plot_directory_is_made_when_missing(tmp_path, capsys):
    figures = tmp_path / "new" / "figures"
    assert main(["univariate", "--epochs", "5", "--plot", str(figures)]) == 0
    assert (figures / "univariate-loss.png").exists()


def test_every_option_of_every_command_has_help():
    import argparse

    from agrad.__main__ import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {action.dest}"
        for name, command in subparsers.choices.items()
        for action in command._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []
    plots = {
        name: [a.metavar for a in command._actions if "--plot" in a.option_strings]
        for name, command in subparsers.choices.items()
    }
    assert {name: metavar for name, metavar in plots.items() if metavar} == {
        name: ["DIR"]
        for name in (
            "univariate",
            "batch",
            "multivariate",
            "bodyfat",
            "moons",
            "sweep",
            "bootstrap",
        )
    }


def test_sweep_writes_its_figures_into_the_plot_directory(tmp_path, capsys):
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    argv = ["sweep", "univariate", "--seeds", "0-1", "--learning-rate", "0.01", "0.02"]
    assert (
        main(
            [*argv, "--epochs", "20", "--jobs", "1", "--output", str(runs), "--plot", str(figures)]
        )
        == 0
    )
    assert sorted(p.name for p in figures.iterdir()) == [
        "sweep-univariate-heatmap.png",
        "sweep-univariate-spread.png",
    ]
    assert not list(runs.glob("*.png"))


def test_the_raw_exercise_says_its_divergence_in_words_and_keeps_its_columns_apart(capsys):
    assert main(["bodyfat", "--raw", "--seed-spread", "0", "--epochs", "60"]) == 0
    out = capsys.readouterr().out
    diverged = next(line for line in out.splitlines() if "diverged" in line)
    assert "(34," not in diverged and "out of range" in diverged
    header = next(line for line in out.splitlines() if "raw LS" in line)
    assert "z-score LS   raw GD" in header


def test_a_system_error_is_said_in_words(monkeypatch, tmp_path, capsys):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "univariate-loss.png"))

    monkeypatch.setattr("agrad.viz.plot_loss_curves", refused)
    assert main(["univariate", "--epochs", "5", "--plot", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"python -m agrad: error: {tmp_path / 'univariate-loss.png'}: Permission denied\n"
