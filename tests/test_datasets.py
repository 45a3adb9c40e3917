"""agrad.datasets: the bundled body-fat table and the loader for a user's CSV."""

from importlib import resources

import pandas as pd
import pytest

from agrad.datasets import BODY_FAT_TARGET, load_body_fat, load_csv, to_xy

BODY_FAT_COLUMNS = [
    "body fat brozek",
    "age",
    "weight",
    "height",
    "adiposity",
    "neck",
    "chest",
    "abdomen",
    "hip",
    "tight",
    "knee",
    "ankle",
    "biceps",
    "forearm",
    "wrist",
]


def test_body_fat_table():
    df = load_body_fat()
    assert df.shape == (252, 15)
    assert df.columns.tolist() == BODY_FAT_COLUMNS
    assert df.columns[0] == BODY_FAT_TARGET
    # the chapter's Table 1: the first five examples
    preview = df[["body fat brozek", "age", "weight", "ankle"]].head()
    assert preview.values.tolist() == [
        [12.6, 23, 154.25, 21.9],
        [6.9, 22, 173.25, 23.4],
        [24.6, 22, 154.00, 24.0],
        [10.9, 26, 184.75, 22.8],
        [27.8, 24, 184.25, 24.0],
    ]
    # the same frame the book gets from pandas.read_csv, dtypes included
    with (resources.files("agrad.datasets") / "body-fat-brozek.csv").open() as stream:
        pd.testing.assert_frame_equal(df, pd.read_csv(stream))


def test_source_note_ships_beside_the_data():
    note = (resources.files("agrad.datasets") / "body-fat-brozek.SOURCE.md").read_text(
        encoding="utf-8"
    )
    assert "252 men" in note


def test_to_xy_as_the_book():
    df = load_body_fat()
    X, ys, names = to_xy(df)
    assert names == BODY_FAT_COLUMNS[1:]
    assert ys == df.iloc[:, 0].tolist()
    assert df.iloc[:, 1:].values.tolist() == X
    assert all(type(v) is float for v in X[0])
    _, ys2, names2 = to_xy(df, target="age")
    assert names2[0] == "body fat brozek" and "age" not in names2
    assert ys2[:2] == [23.0, 22.0]


def test_to_xy_rejects_bad_tables():
    with pytest.raises(ValueError, match="no column 'nope'"):
        to_xy(load_body_fat(), target="nope")
    with pytest.raises(ValueError, match="column 'name' is not numeric"):
        to_xy(pd.DataFrame({"y": [1.0, 2.0], "name": ["a", "b"]}))
    with pytest.raises(ValueError, match="no feature columns"):
        to_xy(pd.DataFrame({"y": [1.0]}))
    with pytest.raises(TypeError):
        to_xy([[1.0, 2.0]])


def write(tmp_path, text):
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_csv_orders_target_first(tmp_path):
    path = write(tmp_path, "a,b,y,c\n1,2.5,3,x\n4,5,6,y\n\n")
    df = load_csv(path, target="y", features=["b", "a"])
    assert df.columns.tolist() == ["y", "b", "a"]
    assert df.values.tolist() == [[3, 2.5, 1], [6, 5, 4]]
    assert df["a"].dtype.kind == "i" and df["b"].dtype.kind == "f"
    assert load_csv(write(tmp_path, " y , x \n1, 2\n")).columns.tolist() == ["y", "x"]


def test_load_csv_names_the_missing_column(tmp_path):
    path = write(tmp_path, "y,x\n1,2\n")
    with pytest.raises(ValueError, match=r"no column 'z'; the columns are 'y', 'x'"):
        load_csv(path, target="z")
    with pytest.raises(ValueError, match="no column 'w'"):
        load_csv(path, features=["x", "w"])


@pytest.mark.parametrize(
    "row, message",
    [
        ("1,abc", r"line 3, column 'x': 'abc' is not a number"),
        ("1,", r"line 3, column 'x': the value is missing"),
        ("nan,2", r"line 3, column 'y': 'nan' is not a finite number"),
        ("1,2,3", r"line 3: 3 fields, but the header has 2"),
    ],
)
def test_load_csv_names_column_and_line_of_a_bad_value(tmp_path, row, message):
    path = write(tmp_path, f"y,x\n1,2\n{row}\n")
    with pytest.raises(ValueError, match=message):
        load_csv(path)


def test_load_csv_ignores_bad_values_in_columns_not_used(tmp_path):
    df = load_csv(write(tmp_path, "y,x,name\n1,2,Ann\n3,4,Bob\n"), features=["x"])
    assert df.values.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ("y,x\n", "no rows"),
        ("y,y\n1,2\n", "'y' appears more than once"),
        ("y\n1\n", "no feature columns"),
    ],
)
def test_load_csv_rejects_degenerate_files(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_csv(write(tmp_path, text))


def test_load_csv_target_cannot_be_a_feature(tmp_path):
    with pytest.raises(ValueError, match="cannot also be a feature"):
        load_csv(write(tmp_path, "y,x\n1,2\n"), target="y", features=["y", "x"])


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "absent.csv")


def test_load_csv_reads_past_a_byte_order_mark(tmp_path):
    # spreadsheet programs save "CSV UTF-8" with one
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfy,x\r\n1,2\r\n3,5\r\n")
    assert load_csv(path).columns.tolist() == ["y", "x"]
    assert load_csv(path, target="y").columns.tolist() == ["y", "x"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("y,x\n1,2\n".encode("utf-16"), "line 1 is not UTF-8 text.*UTF-16"),
        (b"y,x\n1,\xe92\n", r"line 2 is not UTF-8 text \(byte 0xe9\)"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1 is not UTF-8 text"),
        # Python 3.10's csv refuses a NUL itself; later ones read it into the field
        (b"y,x\n1,2\x00\n", r"line 2(: line contains NUL|, column 'x': '2\\x00' is not a number)"),
        (b'y,x\n1,"' + b"9" * 200_000 + b'"\n', "line 2: field larger than field limit"),
    ],
)
def test_load_csv_refuses_what_is_not_a_utf8_csv(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_csv(path)


def test_load_csv_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(IsADirectoryError):
        load_csv(tmp_path)
