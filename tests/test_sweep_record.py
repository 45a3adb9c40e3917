"""A sweep's record: what it has finished is never truncated, rewritten or
mixed, whoever touched its files, and a resume compares the data's content.

The directories "of an earlier agrad" are written here byte for byte as
agrad 0.x's sweep wrote them (``runs.csv`` appended a line a run, and
``sweep.json``), so that they are what a user has on disk.
"""

import csv
import itertools
import json
import re
import subprocess
import sys

import pandas as pd
import pytest

from agrad import sweep

# short body-fat runs; 5.0 diverges, so every directory has a row with an error
GRID = {"seeds": range(3), "learning_rates": [0.05, 5.0], "batch_sizes": [20], "epochs": 30}
BUNDLED = {"study": "bodyfat", "engine": "native", "samples": None}
BUNDLED |= {"data": "the bundled body-fat data (252 men)", "target": "body fat brozek"}


@pytest.fixture(scope="module")
def reference():
    return sweep.sweep("bodyfat", jobs=1, **GRID)


def exact(frame: pd.DataFrame) -> pd.DataFrame:
    key = ["learning_rate", "batch_size", "epochs", "seed"]
    return frame.drop(columns=["seconds", "worker"]).sort_values(key).reset_index(drop=True)


def assert_same_runs(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(exact(a), exact(b), check_exact=True)


def earlier_directory(directory, runs: pd.DataFrame, settings=BUNDLED, extra_rows=()) -> bytes:
    """``runs`` filed as the earlier version filed them; returns runs.csv's bytes."""
    directory.mkdir(exist_ok=True)
    (directory / "sweep.json").write_text(json.dumps(settings, indent=1) + "\n")
    rows = runs.astype(object).where(runs.notna(), None).to_dict("records")
    with open(directory / "runs.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, list(runs.columns), lineterminator="\n")
        writer.writeheader()
        for row in [*rows, *extra_rows]:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return (directory / "runs.csv").read_bytes()


def test_a_sweep_directory_of_the_earlier_version_is_resumed(tmp_path, reference):
    earlier_directory(tmp_path, reference[reference.seed < 2])
    plan = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    assert sorted((s.seed, s.learning_rate) for s in plan.todo) == [(2, 0.05), (2, 5.0)]
    assert_same_runs(plan.run(), reference)
    assert_same_runs(sweep.read_runs(tmp_path), reference)
    assert_same_runs(sweep.read_runs(tmp_path / "runs.csv"), reference)


@pytest.mark.parametrize(
    "resave",
    [
        pytest.param(lambda b: b.replace(b"\n", b"\r"), id="CR-only"),
        pytest.param(lambda b: b.replace(b"\n", b"\r").rstrip(b"\r"), id="CR-only-no-last"),
        pytest.param(lambda b: b.replace(b"\n", b"\r\n"), id="CRLF"),
        pytest.param(lambda b: b"\xef\xbb\xbf" + b, id="BOM"),
        pytest.param(lambda b: b"\xef\xbb\xbf" + b.replace(b"\n", b"\r\n"), id="BOM-CRLF"),
        pytest.param(lambda b: b.rstrip(b"\n").replace(b"\n", b"\r\n"), id="CRLF-no-last"),
    ],
)
def test_a_runs_csv_saved_back_by_a_spreadsheet_keeps_every_row(tmp_path, reference, resave):
    written = earlier_directory(tmp_path, reference)
    (tmp_path / "runs.csv").write_bytes(resave(written))
    assert_same_runs(sweep.read_runs(tmp_path / "runs.csv"), reference)
    plan = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    assert plan.todo == []
    assert_same_runs(plan.run(), reference)


def test_the_record_ignores_what_a_spreadsheet_did_to_the_export(tmp_path, reference):
    sweep.sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    export = tmp_path / "runs.csv"
    export.write_bytes(b"\xef\xbb\xbf" + export.read_bytes().replace(b"\n", b"\r")[:-200])
    plan = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    assert plan.todo == []
    plan.run()
    assert_same_runs(sweep.read_runs(export), reference)  # exported again from the record


def test_a_torn_last_line_of_the_earlier_version_is_run_again(tmp_path, reference):
    written = earlier_directory(tmp_path, reference)
    (tmp_path / "runs.csv").write_bytes(written[:-30])  # killed in the middle of a row
    plan = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    assert len(plan.todo) == 1
    assert_same_runs(plan.run(), reference)


@pytest.mark.parametrize(
    "column, cell, complaint",
    [
        ("seed", "1_000", "'1_000' is not a whole number"),
        ("seed", " 1", "' 1' is not a whole number"),
        ("epochs", "30.0", "'30.0' is not a whole number"),
        ("mse", "1_0.5", "'1_0.5' is not a number"),
        ("mse", "abc", "'abc' is not a number"),
        ("learning_rate", "", "no learning_rate"),
        ("learning_rate", "nan", "'nan' is not a learning rate"),
        ("bias", "0,5", "cells, the header has"),
    ],
)
def test_an_edited_cell_is_refused_with_its_file_line_and_column(
    tmp_path, reference, column, cell, complaint
):
    earlier_directory(tmp_path, reference)
    path = tmp_path / "runs.csv"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[3].rstrip("\n").split(",")
    cells[header.index(column)] = cell
    lines[3] = ",".join(cells) + "\n"
    path.write_text("".join(lines))
    where = f"{path}, line 4" + ("" if "cells" in complaint else f", column {column!r}")
    for read in (
        lambda: sweep.read_runs(path),
        lambda: sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID),
    ):
        with pytest.raises(ValueError, match=re.escape(where)) as error:
            read()
        assert complaint in str(error.value)


def test_a_short_row_and_a_foreign_header_are_refused_by_name(tmp_path, reference):
    earlier_directory(tmp_path, reference)
    path = tmp_path / "runs.csv"
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + ",".join(lines[2].split(",")[:5]) + "\n")
    with pytest.raises(ValueError, match=r"line 3: 5 cells, the header has 2\d"):
        sweep.read_runs(path)
    path.write_text(text.replace("learning_rate", "lr", 1))
    with pytest.raises(ValueError, match=r"column 3 is 'lr' there, 'learning_rate' in this sweep"):
        sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    with pytest.raises(ValueError, match=r"not a sweep's runs: it has no column 'learning_rate'"):
        sweep.read_runs(path)


def test_read_runs_returns_one_row_per_run(tmp_path, reference):
    lost = {**reference.iloc[0].to_dict(), "mse": None, "error": "lost: KilledWorker"}
    lost = {k: None if v is None or v != v else v for k, v in lost.items()}
    earlier_directory(tmp_path, reference.iloc[1:], extra_rows=[lost])
    # the lost row was filed, then its run again: the redo is what counts, in any order
    with open(tmp_path / "runs.csv", "a", newline="") as stream:
        first = reference.iloc[[0]].astype(object).where(reference.iloc[[0]].notna(), "")
        csv.writer(stream, lineterminator="\n").writerows(first.to_numpy().tolist())
        csv.writer(stream, lineterminator="\n").writerow(
            ["" if v is None else v for v in lost.values()]
        )
    runs = sweep.read_runs(tmp_path / "runs.csv")
    assert len(runs) == len(reference)
    assert_same_runs(runs, reference)
    assert sweep.summarize(runs)["failed"].tolist() == sweep.summarize(reference)["failed"].tolist()


def write_data(path, scale: float = 1.0) -> None:
    path.write_text(
        "y,a,b\n" + "".join(f"{scale * (3 * i + i % 7)},{i},{i * i % 11}\n" for i in range(40))
    )


def test_the_data_content_is_part_of_what_a_resume_compares(tmp_path):
    data = tmp_path / "mine.csv"
    write_data(data)
    output = tmp_path / "out"
    options = {"data": data, "target": "y", "batch_sizes": [10], "epochs": 20, "jobs": 1}
    sweep.sweep("bodyfat", seeds=[0, 1], output=output, **options)
    write_data(data, scale=2.0)  # the file fixed in place, under the same name
    with pytest.raises(ValueError, match=r"other data.*mine\.csv.*give another output directory"):
        sweep.Sweep("bodyfat", seeds=[0, 1, 2], output=output, **options)
    write_data(data)  # the same content again: the same experiment
    assert [
        s.seed for s in sweep.Sweep("bodyfat", seeds=[0, 1, 2], output=output, **options).todo
    ] == [2]
    moved = tmp_path / "moved.csv"
    data.rename(moved)  # the same content under another name is still the same data
    assert (
        len(sweep.Sweep("bodyfat", seeds=[0, 1], output=output, **{**options, "data": moved}).todo)
        == 0
    )


def test_an_earlier_sweep_of_a_data_file_is_refused_not_trusted(tmp_path):
    data = tmp_path / "mine.csv"
    write_data(data)
    runs = sweep.sweep(
        "bodyfat", seeds=[0], data=data, target="y", batch_sizes=[10], epochs=5, jobs=1
    )
    output = tmp_path / "out"
    settings = {**BUNDLED, "data": str(data), "target": "y"}
    earlier_directory(output, runs, settings=settings)
    with pytest.raises(ValueError, match="not their content"):
        sweep.Sweep(
            "bodyfat",
            seeds=[0, 1],
            data=data,
            target="y",
            batch_sizes=[10],
            epochs=5,
            output=output,
        )


def test_learning_rates_take_log_spaced_ranges():
    assert sweep.parse_learning_rates("0.001:0.1:3") == [0.001, 0.01, 0.1]
    assert sweep.parse_learning_rates("0.05") == [0.05]
    rates = sweep.parse_learning_rates("1e-4:1e-1:7")
    assert rates[0] == 1e-4 and rates[-1] == 1e-1 and len(rates) == 7
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert max(ratios) - min(ratios) < 1e-12
    for text, message in [
        ("0.1:0.001:3", "goes down"),
        ("0:0.1:3", "positive"),
        ("0.001:0.1:1", "at least 2"),
        ("0.001:0.1", "LOW:HIGH:N"),
        ("1_0", "not a learning rate"),
    ]:
        with pytest.raises(ValueError, match=message):
            sweep.parse_learning_rates(text)


def test_the_command_takes_learning_rate_ranges(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agrad",
            "sweep",
            "univariate",
            "--seeds",
            "0",
            "--epochs",
            "5",
            "--learning-rate",
            "0.001:0.1:3",
            "0.05",
            "--jobs",
            "1",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(sweep.read_runs(tmp_path)["learning_rate"]) == [0.001, 0.01, 0.05, 0.1]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "agrad",
            "sweep",
            "univariate",
            "--learning-rate",
            "0.1:0.01:3",
            "--output",
            str(tmp_path / "other"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "goes down" in bad.stderr.splitlines()[-1]
    assert "Traceback" not in bad.stderr
