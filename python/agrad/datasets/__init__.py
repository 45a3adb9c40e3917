"""Data for the chapter's regression studies.

``load_body_fat()`` is the chapter's body-fat table (252 men, the target
``body fat brozek`` first, then 14 measurements), shipped inside the package;
its provenance is in ``body-fat-brozek.SOURCE.md`` beside it.
``univariate_data``, ``batch_data`` and ``multivariate_data`` draw the
chapter's synthetic data exactly as the book does, from the ``random``
module's global generator unless given another: after ``random.seed(42)``,
``univariate_data()`` is the book's five points, and the ``LinReg()`` made
next draws the book's first weight.
``load_csv(path, target)`` reads a table of your own into the same shape, and
``to_xy`` turns either into the book's ``X``, ``ys`` and ``feature_names``.
``moons_data`` is the two interleaved half circles of micrograd's demo, drawn
with NumPy as scikit-learn's ``make_moons`` draws them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
from collections.abc import Sequence
from importlib import resources

import numpy as np
import pandas as pd

__all__ = [
    "BODY_FAT_TARGET",
    "batch_data",
    "csv_columns",
    "load_body_fat",
    "load_csv",
    "moons_data",
    "multivariate_data",
    "to_xy",
    "univariate_data",
]

#: The column of the bundled body-fat table that the chapter predicts.
BODY_FAT_TARGET = "body fat brozek"
_BODY_FAT_FILE = "body-fat-brozek.csv"


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"the number of points is an int, not {type(n).__name__!r}")
    if n < 1:
        raise ValueError(f"the number of points must be at least 1, not {n}")
    return n


def _line(n: int, low: float, high: float, slope: float, intercept: float, noise: float, rng):
    # all xs first, then all ys: the order in which the book draws them
    xs = [rng.uniform(low, high) for _ in range(_check_count(n))]
    return xs, [slope * x + intercept + rng.gauss(0, noise) for x in xs]


def univariate_data(n: int = 5, rng=random) -> tuple[list[float], list[float]]:
    """The chapter's first data: ``x`` uniform in [-5, 5], ``y = 2x - 1 + gauss(0, 4)``.

    ``rng`` is the ``random`` module (its global state, as the book uses it)
    or a ``random.Random``.

    >>> import random
    >>> from agrad.datasets import univariate_data
    >>> random.seed(42)
    >>> xs, ys = univariate_data()
    >>> round(xs[0], 4), round(ys[0], 4)
    (1.3943, -1.9637)
    """
    return _line(n, -5, 5, 2, -1, 4, rng)


def batch_data(n: int = 1000, rng=random) -> tuple[list[float], list[float]]:
    """The mini-batch study's data: ``x`` uniform in [-10, 10], ``y = 2x + 1 + gauss(0, 5)``.

    >>> import random
    >>> from agrad.datasets import batch_data
    >>> xs, ys = batch_data(1000, random.Random(0))
    >>> len(xs), min(xs) >= -10, max(xs) <= 10
    (1000, True, True)
    """
    return _line(n, -10, 10, 2, 1, 5, rng)


def multivariate_data(n: int = 1000, rng=random) -> tuple[list[list[float]], list[float]]:
    """Three features uniform in [-10, 10], ``y = 2x0 + 3x1 - x2 + 1 + gauss(0, 5)``.

    >>> import random
    >>> from agrad.datasets import multivariate_data
    >>> X, ys = multivariate_data(1000, random.Random(0))
    >>> len(X), len(X[0]), len(ys)
    (1000, 3, 1000)
    """
    X = [[rng.uniform(-10, 10) for _ in range(3)] for _ in range(_check_count(n))]
    return X, [2 * x[0] + 3 * x[1] - x[2] + 1 + rng.gauss(0, 5) for x in X]


def moons_data(
    n: int = 100, noise: float = 0.1, rng: np.random.RandomState | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles: ``X`` (``n`` points, 2 columns) and the
    labels ``y`` (0 for the upper moon, 1 for the lower), as scikit-learn's
    ``make_moons(n, noise=noise)`` makes them: the points in order, shuffled,
    then Gaussian noise of standard deviation ``noise`` added to each coordinate.

    ``rng`` is a ``numpy.random.RandomState``; by default NumPy's global one,
    so ``np.random.seed(1337)`` first gives micrograd's demo its data.

    >>> import numpy as np
    >>> from agrad.datasets import moons_data
    >>> X, y = moons_data(100, noise=0.1, rng=np.random.RandomState(1337))
    >>> X.shape, y[:8].tolist()
    ((100, 2), [0, 0, 1, 0, 1, 1, 1, 1])
    """
    n = _check_count(n)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)):
        raise TypeError(f"noise must be a number, not {type(noise).__name__!r}")
    if not 0 <= noise < math.inf:
        raise ValueError(f"noise must be 0 or more, not {noise}")
    if rng is None:
        draw: object = np.random  # the module's functions draw from the global RandomState
    elif isinstance(rng, np.random.RandomState):
        draw = rng
    else:
        raise TypeError(
            f"rng must be a numpy.random.RandomState or None, not {type(rng).__name__!r}"
        )
    outer, inner = n // 2, n - n // 2
    outer_angles = np.linspace(0, np.pi, outer)
    inner_angles = np.linspace(0, np.pi, inner)
    X = np.vstack(
        [
            np.append(np.cos(outer_angles), 1 - np.cos(inner_angles)),
            np.append(np.sin(outer_angles), 1 - np.sin(inner_angles) - 0.5),
        ]
    ).T
    y = np.hstack([np.zeros(outer, dtype=np.intp), np.ones(inner, dtype=np.intp)])
    # one permutation of the indices, then one normal draw per coordinate
    order = np.arange(n)
    draw.shuffle(order)  # type: ignore[attr-defined]
    X, y = X[order], y[order]
    X += draw.normal(scale=noise, size=X.shape)  # type: ignore[attr-defined]
    return X, y


def load_body_fat() -> pd.DataFrame:
    """The body-fat table as a 252 x 15 DataFrame, ``body fat brozek`` first.

    >>> from agrad.datasets import load_body_fat
    >>> table = load_body_fat()
    >>> table.shape, list(table.columns[:3])
    ((252, 15), ['body fat brozek', 'age', 'weight'])
    """
    text = (resources.files(__name__) / _BODY_FAT_FILE).read_text(encoding="utf-8")
    return _read_table(io.StringIO(text, newline=""), _BODY_FAT_FILE, BODY_FAT_TARGET, None)


def csv_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a CSV file's header row, as ``load_csv`` reads them.

    >>> import os, tempfile
    >>> from agrad.datasets import csv_columns
    >>> path = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> with open(path, "w") as file:
    ...     _ = file.write("y,x1,x2\\n1,2,3\\n")
    ...
    >>> csv_columns(path)
    ['y', 'x1', 'x2']
    """
    return _header(csv.reader(_utf8_text(path)), os.fspath(path))


def load_csv(
    path: str | os.PathLike, target: str | None = None, features: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a CSV with a header row into a DataFrame for the regression workflow.

    The result has the ``target`` column first (default: the file's first
    column), then ``features`` in the order given (default: every other
    column).  Every selected cell must be a finite number: a missing column,
    an empty cell or text where a number belongs raises ValueError naming the
    column (and the line of the file, counting the header as line 1).  The
    file is UTF-8, with or without the byte-order mark spreadsheet programs
    write; anything else raises ValueError naming the line.

    >>> import os, tempfile
    >>> from agrad.datasets import load_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> with open(path, "w") as file:
    ...     _ = file.write("x1,y,x2\\n1,10,2\\n3,20,4\\n")
    ...
    >>> load_csv(path, target="y")
        y  x1  x2
    0  10   1   2
    1  20   3   4
    """
    return _read_table(_utf8_text(path), os.fspath(path), target, features)


def _utf8_text(path: str | os.PathLike) -> io.StringIO:
    # the whole file, decoded: a bad byte is reported with its line
    source = os.fspath(path)
    with open(path, "rb") as stream:
        content = stream.read()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        utf16 = " (it looks like UTF-16)" if content[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ValueError(
            f"{source}: line {line} is not UTF-8 text (byte 0x{content[error.start]:02x}){utf16}; "
            f"save the file as CSV in UTF-8"
        ) from None
    return io.StringIO(text, newline="")


def _read_table(
    stream: io.TextIOBase, source: str, target: str | None, features: Sequence[str] | None
) -> pd.DataFrame:
    reader = csv.reader(stream)
    try:
        return _parse_table(reader, source, target, features)
    except csv.Error as error:  # a NUL byte, a field longer than the csv module's limit
        raise ValueError(f"{source}, line {reader.line_num}: {error}") from None


def _parse_table(
    reader, source: str, target: str | None, features: Sequence[str] | None
) -> pd.DataFrame:
    header = _header(reader, source)
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ValueError(f"{source}: column {duplicated[0]!r} appears more than once in the header")
    if target is None:
        target = header[0]
    features = [name for name in header if name != target] if features is None else list(features)
    if target in features:
        raise ValueError(f"{source}: the target {target!r} cannot also be a feature")
    if not features:
        raise ValueError(f"{source}: no feature columns besides the target {target!r}")
    columns = [target, *features]
    for name in columns:
        if not isinstance(name, str):
            raise TypeError(f"column names are strings, not {type(name).__name__!r}")
        if name not in header:
            raise ValueError(
                f"{source}: no column {name!r}; the columns are {', '.join(map(repr, header))}"
            )
    positions = [header.index(name) for name in columns]

    cells: list[list[str]] = [[] for _ in columns]
    for row in reader:
        if not any(field.strip() for field in row):
            continue  # a blank line
        if len(row) != len(header):
            raise ValueError(
                f"{source}, line {reader.line_num}: {len(row)} fields, "
                f"but the header has {len(header)}"
            )
        for values, name, position in zip(cells, columns, positions, strict=True):
            text = row[position].strip()
            values.append(text)
            _check_number(text, source, reader.line_num, name)
    if not cells[0]:
        raise ValueError(f"{source}: the file has a header but no rows")
    # to_numeric keeps whole-number columns as ints, as pandas.read_csv does
    return pd.DataFrame(
        {
            name: pd.to_numeric(pd.Series(values, dtype=str))
            for name, values in zip(columns, cells, strict=True)
        }
    )


def _header(reader, source: str) -> list[str]:
    for row in reader:
        if any(field.strip() for field in row):  # blank lines before the header are skipped
            return [name.strip() for name in row]
    raise ValueError(f"{source}: the file is empty (expected a header row)")


def _check_number(text: str, source: str, line: int, column: str) -> None:
    where = f"{source}, line {line}, column {column!r}"
    if not text:
        raise ValueError(f"{where}: the value is missing")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: {text!r} is not a finite number")


def to_xy(
    df: pd.DataFrame, target: str | None = None
) -> tuple[list[list[float]], list[float], list[str]]:
    """The book's ``X`` (rows of features), ``ys`` and ``feature_names`` from a
    table: the target is ``target`` (default: the first column), the features
    every other column, in order.

    >>> from agrad.datasets import load_body_fat, to_xy
    >>> X, ys, names = to_xy(load_body_fat())
    >>> len(X), len(X[0]), names[:3], ys[0]
    (252, 14, ['age', 'weight', 'height'], 12.6)
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"to_xy takes a pandas DataFrame, not {type(df).__name__!r}")
    if target is None:
        target = df.columns[0]
    if target not in df.columns:
        raise ValueError(
            f"no column {target!r}; the columns are {', '.join(map(repr, df.columns))}"
        )
    feature_names = [name for name in df.columns if name != target]
    if not feature_names:
        raise ValueError("the table has no feature columns besides the target")
    for name in df.columns:
        if not pd.api.types.is_numeric_dtype(df[name]) or pd.api.types.is_bool_dtype(df[name]):
            raise ValueError(f"column {name!r} is not numeric (dtype {df[name].dtype})")
    return (
        df[feature_names].astype(float).values.tolist(),
        df[target].astype(float).tolist(),
        [str(name) for name in feature_names],
    )
