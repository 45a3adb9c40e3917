"""Sweeps: one of the chapter's training studies over a grid of seeds,
learning rates, batch sizes and epoch counts, on local cores or a cluster.

Design
------
- **A run seeds itself.**  A run is a ``RunSpec`` handed to ``run_one``,
  which calls the study function of ``agrad.studies`` with the spec's seed.
  The studies seed Python's ``random`` themselves and the engine
  is deterministic, so a row is the same bits on any backend, in any order, on
  any number of workers, and equals the single run with the same options.
  The studies draw from a ``random.Random(seed)`` of their own, never the
  global ``random``: a Dask worker's event loop draws from that one (its
  timers' jitter) while tasks run, and would change a run's mini-batches.
- **Backends are other people's schedulers.**  joblib's loky processes on one
  machine (the default, all cores), a running ``dask.distributed`` scheduler,
  or Ray.  A task is several runs (``runs_per_task``; by default about four
  tasks a worker), and the data they share go to each worker once (Dask's
  ``scatter``, Ray's object store): a study's run is tens of milliseconds, so
  what a task costs the scheduler would otherwise be a good part of it.  A
  worker that dies takes its task with it: Dask and Ray run it again on
  another worker (their own retry machinery); joblib ends the whole pool, so
  the runs that had not finished go to a fresh pool.  A run that keeps killing
  its workers (``RETRIES`` times; on Dask, its scheduler's
  ``allowed-failures``) becomes a row whose error starts with ``lost:``, and
  a resume runs it again.  A local worker ends when the sweep that started it
  does, even when that sweep is killed.
- **A cluster is checked before it is used.**  A Dask address is asked what
  it is (Dask's ``identity`` message), and Ray connects to a Ray address in a
  child process first, each with a deadline: a web server, a Dask worker or
  a Ray port given for Dask is an error within seconds, never a wait.
- **The record is an SQLite database.**  ``DIR/runs.sqlite`` (the standard
  library's ``sqlite3``) holds one row per run and what every row shares
  (study, engine, the data's content hash): a task's rows go in as one
  transaction, so a crash leaves every finished row and no torn one, and a
  run done again replaces its ``lost:`` row.  ``DIR/runs.csv`` is written
  from it, whole, when the sweep ends or is interrupted: the export people
  open in a spreadsheet, never read back while the database is there.  One
  sweep at a time writes to a directory: it holds a lock on
  ``DIR/sweep.lock`` that the system drops when its process ends, however it
  ends.  A directory of an earlier agrad (``runs.csv`` and ``sweep.json``,
  no database) is imported; its CSV is read as a spreadsheet may have saved
  it (other line endings, a byte-order mark) and a cell that is not what a
  sweep writes is refused with its file, line and column.  Floats are kept
  with ``repr``: the record holds the exact bits.
- **A run that raises is a result.**  A diverging learning rate's
  ``OverflowError`` (or any ``ArithmeticError``/``ValueError`` of the study)
  is a row with the error, not the end of the sweep.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import inspect
import io
import json
import math
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from agrad import linreg, studies, viz

__all__ = [
    "BOOTSTRAP_FIT",
    "BOOTSTRAP_STUDIES",
    "LOST",
    "MAX_RUNS",
    "RETRIES",
    "STUDIES",
    "Bootstrap",
    "BootstrapResult",
    "Resample",
    "RunSpec",
    "Sweep",
    "bootstrap",
    "parse_learning_rates",
    "parse_seeds",
    "plot",
    "plot_bootstrap",
    "read_runs",
    "resample_rows",
    "run_one",
    "run_resample",
    "run_task",
    "summarize",
    "summarize_bootstrap",
    "sweep",
]

#: The chapter's training studies, by name.
STUDIES: dict[str, Callable[..., Any]] = {
    "univariate": studies.univariate,
    "batch": studies.batch,
    "multivariate": studies.multivariate,
    "bodyfat": studies.bodyfat,
}
#: A grid larger than this is almost surely a typo (``--seeds 0-1000000000``).
MAX_RUNS = 1_000_000
#: How many times a run may take its worker down before it is given up as lost.
RETRIES = 3

# The columns every row has, before the study's weights and after them.
_KEY = ["seed", "learning_rate", "batch_size", "epochs"]
# a bootstrap's rows are known by the seed of their generator and their index
_RESAMPLE_KEY = ["seed", "resample"]
_HEAD = ["study", *_KEY, "mse", "least_squares_mse", "gap_to_least_squares", "seconds", "bias"]
_TAIL = ["worker", "error"]
#: How the error of a run given up as lost starts (a resume runs it again).
LOST = "lost: "


def _default(study: str, option: str) -> Any:
    # the single-run command's defaults are the study function's: one source;
    # where bodyfat's is None (the method's own), gradient descent's, which sweeps use
    default = inspect.signature(STUDIES[study]).parameters[option].default
    if default is None and study == "bodyfat" and option in studies.BODYFAT_SETTINGS["gd"]:
        return studies.BODYFAT_SETTINGS["gd"][option]
    return default


def _takes(study: str, option: str) -> bool:
    return option in inspect.signature(STUDIES[study]).parameters


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: everything ``run_one`` needs, picklable, so it can
    travel to any worker.

    >>> from agrad.sweep import RunSpec, run_one
    >>> spec = RunSpec("univariate", seed=0, learning_rate=0.01, batch_size=5, epochs=100,
    ...                engine="native", samples=5, data=None)
    >>> row = run_one(spec)
    >>> row["study"], row["seed"], round(row["mse"], 3)
    ('univariate', 0, 21.571)
    """

    study: str
    seed: int
    learning_rate: float
    batch_size: int  # univariate trains on the full batch: its number of points
    epochs: int
    engine: str
    samples: int | None  # None for bodyfat, whose rows are its data's
    data: studies.RegressionData | None  # bodyfat only

    #: the columns that name a run in the record
    KEY: ClassVar[list[str]] = _KEY

    @property
    def key(self) -> tuple[int, float, int, int]:
        return (self.seed, self.learning_rate, self.batch_size, self.epochs)

    def run(self) -> dict[str, Any]:
        return run_one(self)


def _weight_names(study: str, data: studies.RegressionData | None) -> list[str]:
    if study == "bodyfat":
        assert data is not None
        return list(data.feature_names)
    if study == "multivariate":
        return ["x0", "x1", "x2"]
    return ["x"]


def _columns(study: str, data: studies.RegressionData | None) -> list[str]:
    return [*_HEAD, *(f"w_{name}" for name in _weight_names(study, data)), *_TAIL]


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Run one spec where this is called (any worker) and return its row.

    The study's own errors of arithmetic or value (a diverging learning rate)
    become the row's ``error``; anything else is a bug and propagates.

    >>> from agrad.sweep import RunSpec, run_one
    >>> diverging = RunSpec("univariate", seed=0, learning_rate=10.0, batch_size=5, epochs=100,
    ...                     engine="native", samples=5, data=None)
    >>> run_one(diverging)["error"].split(":")[:2]
    ['OverflowError', ' training diverged at epoch 77']
    """
    names = _weight_names(spec.study, spec.data)
    row: dict[str, Any] = {
        "study": spec.study,
        **dict(zip(_KEY, spec.key, strict=True)),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    # on the compiled engine each run's loss is replayed (agrad.compile): the
    # same bits as eager training, faster
    options: dict[str, Any] = {
        "seed": spec.seed,
        "engine": spec.engine,
        "epochs": spec.epochs,
        "learning_rate": spec.learning_rate,
        "compile": spec.engine == "native",
        # a run's row needs no Hessian: the stability limit and standard errors
        # are the data's, the same for every run, and would cost more than the run
        "second_order": False,
    }
    if _takes(spec.study, "batch_size"):  # univariate's batch is all its points
        options["batch_size"] = spec.batch_size
    if spec.samples is not None:
        options["samples"] = spec.samples
    if spec.data is not None:
        options["data"] = spec.data
    start = time.perf_counter()
    try:
        result: studies.StudyResult = STUDIES[spec.study](**options)
    except (ArithmeticError, ValueError) as error:
        row["seconds"] = time.perf_counter() - start
        row["error"] = f"{type(error).__name__}: {error}"
        return row
    row["seconds"] = time.perf_counter() - start
    fit = result.run.fit
    row["mse"] = float(fit.mse)
    row["least_squares_mse"] = float(result.least_squares.mse)
    row["gap_to_least_squares"] = None if result.gap is None else 100 * result.gap
    row["bias"] = float(fit.bias)
    for name, weight in zip(names, fit.weights, strict=True):
        row[f"w_{name}"] = float(weight)
    return row


# ---------------------------------------------------------------- the grid


def parse_seeds(text: str) -> list[int]:
    """``"7"`` or an inclusive range ``"0-31"``: the seeds it names.

    >>> from agrad.sweep import parse_seeds
    >>> parse_seeds("7"), parse_seeds("0-3")
    ([7], [0, 1, 2, 3])
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match:
        raise ValueError(f"{text!r} is not a seed (a whole number 0 or more) or a range like 0-31")
    first = int(match[1])
    last = first if match[2] is None else int(match[2])
    if last < first:
        raise ValueError(f"the range {text.strip()} goes down: write it as {last}-{first}")
    if last - first >= MAX_RUNS:
        raise ValueError(f"the range {text.strip()} has more than {MAX_RUNS} seeds")
    return list(range(first, last + 1))


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def parse_learning_rates(text: str) -> list[float]:
    """``"0.05"``, or ``"LOW:HIGH:N"``: N learning rates from LOW to HIGH,
    evenly spaced on a log scale (each the one before times the same factor).

    >>> from agrad.sweep import parse_learning_rates
    >>> parse_learning_rates("0.05"), parse_learning_rates("0.001:0.1:3")
    ([0.05], [0.001, 0.01, 0.1])
    """
    parts = text.strip().split(":")
    if len(parts) == 1:
        (first,) = parts
        if not re.fullmatch(_NUMBER, first):
            raise ValueError(
                f"{text!r} is not a learning rate (a positive number) or a range LOW:HIGH:N"
            )
        if not 0 < float(first) < math.inf:
            raise ValueError(f"a learning rate must be a positive number, not {first}")
        return [float(first)]
    if len(parts) != 3 or not all(re.fullmatch(_NUMBER, part) for part in parts[:2]):
        raise ValueError(f"{text!r} is not a range of learning rates LOW:HIGH:N, like 0.001:0.1:5")
    if not re.fullmatch(r"\d+", parts[2]):
        raise ValueError(f"the range {text}: N must be a whole number, not {parts[2]!r}")
    low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
    if not (0 < low < math.inf and 0 < high < math.inf):
        raise ValueError(f"the range {text}: learning rates must be positive and finite")
    if high <= low:
        raise ValueError(
            f"the range {text} goes down or stays: write it as {parts[1]}:{parts[0]}:N"
        )
    if not 2 <= count <= MAX_RUNS:
        raise ValueError(f"the range {text}: N must be at least 2 and at most {MAX_RUNS}")
    # the ends exactly as written; between them low * (high/low)**(i/(N-1))
    inner = [low * (high / low) ** (i / (count - 1)) for i in range(1, count - 1)]
    return [low, *inner, high]


def _ints(values: Iterable[int], what: str, low: int, high: int) -> list[int]:
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be whole numbers, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{what} must be between {low} and {high}, not {value}")
        out.append(value)
    return _distinct(out, what)


def _floats(values: Iterable[float], what: str) -> list[float]:
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what} must be numbers, not {value!r}")
        if not 0 < value < math.inf:
            raise ValueError(f"{what} must be positive and finite, not {value}")
        out.append(float(value))
    return _distinct(out, what)


def _distinct(values: list, what: str) -> list:
    if not values:
        raise ValueError(f"{what}: give at least one value")
    return list(dict.fromkeys(values))  # a value given twice is one run, not two


def _as_list(value: Any) -> list:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected numbers, not the string {value!r}")
    return list(value) if isinstance(value, Iterable) else [value]


# ---------------------------------------------------------------- the record

_DATABASE = "runs.sqlite"
_EXPORT = "runs.csv"
_LOCK = "sweep.lock"
# what an earlier agrad wrote instead of the database
_EARLIER_SETTINGS = "sweep.json"


def _data_hash(data: studies.RegressionData) -> str:
    """The data's content, whatever file they came from: a fixed file under
    the same name is other data, the same numbers under another name are not."""
    content = [data.target, list(data.feature_names), [list(row) for row in data.X], list(data.ys)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def _kind(settings: dict) -> str:
    return "a bootstrap" if settings.get("kind") == "bootstrap" else "a sweep"


def _differences(before: dict, now: dict) -> str:
    return ", ".join(
        f"{k} {before.get(k)!r} there, {now.get(k)!r} now"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    )


class _Lock:
    """This process's claim on a sweep directory: an exclusive lock on a file
    in it, which the system drops when the process ends, however it ends."""

    def __init__(self, directory: str) -> None:
        path = os.path.join(directory, _LOCK)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":  # the test mypy knows: msvcrt exists only there
                import msvcrt

                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(self.fd, 200).decode(errors="replace").strip()
            except OSError:  # Windows: the holder's byte is locked for reading too
                holder = ""
            os.close(self.fd)
            raise RuntimeError(
                f"{directory} is in use by another sweep ({holder or 'its process is running'}): "
                f"wait for it to end, or give another output directory"
            ) from None
        # who holds it, for the message of the sweep that finds it taken
        os.ftruncate(self.fd, 0)
        os.write(
            self.fd,
            f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}".encode(),
        )

    def release(self) -> None:
        os.close(self.fd)  # closing the file drops the lock


def _connect(path: str) -> sqlite3.Connection:
    # check_same_thread=False: a notebook may make a Sweep in one thread and
    # run it in another; the Sweep never uses its connection from two at once
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    # WAL: readers (read_runs while a sweep runs) never wait for the writer, and
    # a commit is an append; synchronous=NORMAL does not wait for the disk at
    # each commit, and still loses nothing when the process dies (only the last
    # commits on a power cut, leaving the database consistent)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _read_database(path: str) -> tuple[dict, list[str], list[dict[str, Any]]]:
    """The settings, columns and rows of a sweep's database."""
    db = _connect(path)
    try:
        meta = dict(db.execute("SELECT name, value FROM sweep").fetchall())
        rows = [json.loads(row) for (row,) in db.execute("SELECT row FROM runs")]
        return json.loads(meta["settings"]), json.loads(meta["columns"]), rows
    except (sqlite3.DatabaseError, KeyError) as error:
        raise ValueError(f"{path} is not a sweep's record: {error}") from None
    finally:
        db.close()


class _Store:
    """The sweep's record (``DIR/runs.sqlite``, exported to ``DIR/runs.csv``),
    or rows in memory when there is no DIR.

    Made, it has read what the directory holds and checked that it is this
    sweep's, writing nothing; ``open`` claims the directory for this process
    and creates the record; ``add`` files rows; ``close`` writes the export and
    lets the directory go."""

    def __init__(
        self, directory: str | os.PathLike | None, settings: dict, columns: list[str]
    ) -> None:
        self.columns = columns
        self.settings = settings
        self.key = _key_columns(columns)
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.directory = None if directory is None else os.fspath(directory)
        self._db: sqlite3.Connection | None = None
        self._lock: _Lock | None = None
        if self.directory is None:
            return
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(
                f"{self.directory!r} is a file, not a directory for the sweep's results"
            )
        self._load()

    @property
    def path(self) -> str | None:
        """The record's file."""
        return None if self.directory is None else os.path.join(self.directory, _DATABASE)

    def _load(self) -> None:
        assert self.directory is not None and self.path is not None
        self.rows = {}
        if os.path.exists(self.path):
            settings, columns, rows = _read_database(self.path)
            self._check(settings, columns)
        elif os.path.exists(os.path.join(self.directory, _EXPORT)):
            rows = self._read_earlier()
        else:
            return
        for row in rows:
            _keep_current(self.rows, row)

    def _check(self, settings: dict, columns: list[str]) -> None:
        # the data's path is where they were, not what they are: only the
        # content (data_sha256) has to match
        before = {k: v for k, v in settings.items() if k != "data"}
        now = {k: v for k, v in self.settings.items() if k != "data"}
        if before.get("kind") != now.get("kind"):
            raise ValueError(
                f"{self.directory} holds the runs of {_kind(before)}, not of {_kind(now)}; "
                f"give another output directory"
            )
        if before != now:
            what = (
                f"other data (they were {settings.get('data')}; their content differs now)"
                if {k for k in set(before) | set(now) if before.get(k) != now.get(k)}
                == {"data_sha256"}
                else f"other settings ({_differences(before, now)})"
            )
            raise ValueError(
                f"{self.directory} holds {_kind(before)} of {what}; give another output directory"
            )
        if columns != self.columns:
            raise ValueError(
                f"{self.path} holds other columns ({_header_difference(columns, self.columns)}); "
                f"give another output directory"
            )

    def _read_earlier(self) -> list[dict[str, Any]]:
        """The rows of a directory an earlier agrad wrote (runs.csv, sweep.json)."""
        assert self.directory is not None
        settings_path = os.path.join(self.directory, _EARLIER_SETTINGS)
        if not os.path.exists(settings_path):
            raise ValueError(
                f"{self.directory} has a {_EXPORT} but no record of the sweep that wrote it "
                f"({_DATABASE}, or an earlier agrad's {_EARLIER_SETTINGS}); "
                f"give another output directory"
            )
        try:
            with open(settings_path, encoding="utf-8") as stream:
                before = json.load(stream)
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{settings_path} is not a sweep's settings: {error}") from None
        now = {k: v for k, v in self.settings.items() if k != "data_sha256"}
        differ = _differences(
            {k: v for k, v in before.items() if k != "data"},
            {k: v for k, v in now.items() if k != "data"},
        )
        if differ:
            raise ValueError(
                f"{self.directory} holds a sweep with other settings ({differ}); "
                f"give another output directory"
            )
        # only the bundled data are known to be what they were: a file may have
        # been changed under its name since
        bundled = studies.load_regression_data().source
        if now.get("data") is not None and not before.get("data") == now["data"] == bundled:
            raise ValueError(
                f"{self.directory} holds a sweep of an earlier agrad, which kept where its "
                f"data were ({before.get('data')}) but not their content, so it cannot tell "
                f"whether they changed since; give another output directory"
            )
        return _read_csv(os.path.join(self.directory, _EXPORT), self.columns)[1]

    def open(self) -> None:
        """Claim the directory (RuntimeError when another sweep holds it), read
        what it holds now, and make the record if there is none."""
        if self.directory is None or self._db is not None:
            return
        os.makedirs(self.directory, exist_ok=True)
        self._lock = _Lock(self.directory)
        try:
            self._load()  # another sweep may have filed rows since this one was made
            assert self.path is not None
            if not os.path.exists(self.path):
                self._create()
            self._db = _connect(self.path)
        except BaseException:
            self.close()
            raise

    def _create(self) -> None:
        # made whole beside its place and moved there: a reader (read_runs while
        # the sweep runs) finds no record or a complete one, never its tables
        # half made, and an earlier agrad's rows are all in it or none
        assert self.path is not None
        part = self.path + ".part"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)  # left by a sweep killed while making it
        db = _connect(part)
        # a column for each part of a run's name (a sweep's seed, learning_rate,
        # batch_size, epochs; a bootstrap's seed, resample), which is the key
        key = ", ".join(self.key)
        named = ", ".join(
            f"{name} {'INTEGER' if name in _INTS else 'REAL'} NOT NULL" for name in self.key
        )
        try:
            db.executescript(
                f"""
                BEGIN;
                CREATE TABLE sweep (name TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE runs (
                    {named}, lost INTEGER NOT NULL, row TEXT NOT NULL, PRIMARY KEY ({key}));
                """
            )
            db.executemany(
                "INSERT INTO sweep VALUES (?, ?)",
                [("settings", json.dumps(self.settings)), ("columns", json.dumps(self.columns))],
            )
            self._insert(db, list(self.rows.values()))  # an earlier agrad's, if any
            db.execute("COMMIT")
        finally:
            db.close()
        os.replace(part, self.path)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _insert(self, db: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        # a row for a run already there replaces it only if that one was lost
        db.executemany(
            f"INSERT INTO runs VALUES ({', '.join('?' * (len(self.key) + 2))}) "
            f"ON CONFLICT ({', '.join(self.key)}) "
            "DO UPDATE SET lost = excluded.lost, row = excluded.row WHERE runs.lost",
            [(*_key(row), not _finished(row), json.dumps(row)) for row in rows],
        )

    def add(self, rows: list[dict[str, Any]]) -> None:
        """File a task's rows, as one transaction."""
        for row in rows:
            _keep_current(self.rows, row)
        if self.directory is None:
            return
        self.open()
        with self._transaction() as db:
            self._insert(db, rows)

    def close(self) -> None:
        """Write the export from the record, and let the directory go."""
        try:
            if self._db is not None:
                assert self.directory is not None
                # a sweep's by configuration, then seed
                order = ", ".join(self.key if self.key is _RESAMPLE_KEY else [*_KEY[1:], "seed"])
                rows = [
                    json.loads(row)
                    for (row,) in self._db.execute(f"SELECT row FROM runs ORDER BY {order}")
                ]
                self._db.close()
                self._db = None
                viz.write_atomically(
                    os.path.join(self.directory, _EXPORT),
                    lambda s: _write_csv(s, self.columns, rows),
                )
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


def _write_csv(stream: Any, columns: list[str], rows: list[dict[str, Any]]) -> None:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    text.flush()
    text.detach()


def _keep_current(rows: dict[tuple, dict[str, Any]], row: dict[str, Any]) -> None:
    """File ``row`` in ``rows`` by its run: a later row replaces an earlier
    one, except that a lost run never replaces a finished one."""
    key = _key(row)
    if key not in rows or not _finished(rows[key]) or _finished(row):
        rows[key] = row


def _header_difference(found: list[str], expected: list[str]) -> str:
    for i, (there, here) in enumerate(zip(found, expected, strict=False), start=1):
        if there != here:
            return f"column {i} is {there!r} there, {here!r} in this sweep"
    return f"{len(found)} columns there, {len(expected)} in this sweep"


_TEXT = {"study", "worker", "error"}
_INTS = {"seed", "batch_size", "epochs", "resample"}
_BOM = b"\xef\xbb\xbf"


def _read_csv(
    path: str | os.PathLike, columns: list[str] | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """A runs.csv's header and rows, as a sweep wrote it or as a spreadsheet
    saved it back; a cell a sweep would not have written is a ValueError
    naming the file, line and column, and so is a header other than
    ``columns`` (when given)."""
    with open(path, "rb") as stream:
        data = stream.read()
    # A sweep of an earlier agrad, killed in the middle of writing a row, left
    # a last line without its newline: that run never finished, and is done
    # again.  Only a file in the sweep's own form ("\n", no byte-order mark)
    # can be torn so; a spreadsheet writes its files whole, with or without a
    # last line ending.
    if data and not data.endswith(b"\n") and b"\r" not in data and not data.startswith(_BOM):
        data = data[: data.rfind(b"\n") + 1]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    if header and columns is not None and header != columns:
        raise ValueError(
            f"{path} has the columns of another sweep ({_header_difference(header, columns)}); "
            f"give another output directory"
        )
    head = ["study", *_RESAMPLE_KEY] if "resample" in header else _HEAD
    missing = [name for name in (*head, *_TAIL) if name not in header]
    if header and missing:
        raise ValueError(f"{path} is not a sweep's runs: it has no column {missing[0]!r}")
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: a column name comes twice in its header")
    rows = []
    for cells in reader:
        if not cells:
            continue  # a blank line
        if len(cells) != len(header):
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(cells)} cells, the header has {len(header)}"
            )
        rows.append(
            {
                name: _cell(text, name, f"{path}, line {reader.line_num}, column {name!r}")
                for name, text in zip(header, cells, strict=True)
            }
        )
    return header, rows


_INT = re.compile(r"-?\d+")
# what repr writes, and a spreadsheet's capital E
_FLOAT = re.compile(rf"{_NUMBER}|[+-]?inf|nan", re.IGNORECASE)


def _cell(text: str, name: str, where: str) -> Any:
    # Python's float() reads back the exact bits repr wrote; the patterns keep
    # out what float() and int() would also take but a sweep never writes
    # ("1_000", " 1"); an empty cell is a failed run's number, or no error
    if text == "":
        if name in _KEY or name in _RESAMPLE_KEY:
            raise ValueError(f"{where}: no {name}, and a run is known by it")
        return None
    if name in _TEXT:
        return text
    if name in _INTS:
        if not _INT.fullmatch(text):
            raise ValueError(f"{where}: {text!r} is not a whole number")
        return int(text)
    if not _FLOAT.fullmatch(text):
        raise ValueError(f"{where}: {text!r} is not a number")
    value = float(text)
    if name == "learning_rate" and not 0 < value < math.inf:
        raise ValueError(f"{where}: {text!r} is not a learning rate (positive and finite)")
    return value


def read_runs(path: str | os.PathLike) -> Any:
    """A sweep's runs as a pandas DataFrame, one row per run (a run done again
    after it was lost is its new row), floats to the bit: ``path`` is the
    sweep's directory (its record, also while the sweep runs) or a
    ``runs.csv`` (as written, or saved back by a spreadsheet).

    >>> import os, tempfile
    >>> from agrad.sweep import read_runs, sweep
    >>> output = tempfile.mkdtemp()
    >>> runs = sweep("univariate", seeds=[0, 1], jobs=1, output=output)
    >>> filed = read_runs(output)
    >>> bool((filed.sort_values("seed")["mse"].to_numpy() == runs.sort_values("seed")["mse"].to_numpy()).all())
    True
    >>> len(read_runs(os.path.join(output, "runs.csv")))
    2
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        database = os.path.join(path, _DATABASE)
        if os.path.exists(database):
            _settings, header, rows = _read_database(database)
        elif os.path.exists(os.path.join(path, _EXPORT)):
            header, rows = _read_csv(os.path.join(path, _EXPORT))
        else:
            raise FileNotFoundError(f"no sweep in {path}: it has no {_DATABASE} or {_EXPORT}")
    else:
        header, rows = _read_csv(path)
    current: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        _keep_current(current, row)
    return _frame(list(current.values()), header)


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    # the same dtypes however the rows came (run here, read from a file, all
    # failed): text as objects (None when empty), counts as int64, numbers as
    # float64 (NaN when empty)
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    for name in columns:
        kind = object if name in _TEXT else "int64" if name in _INTS else "float64"
        frame[name] = frame[name].astype(kind)
    return frame


def _key_columns(columns: Iterable[str]) -> list[str]:
    """The columns that name a run: a bootstrap's (it has a resample) or a sweep's."""
    return _RESAMPLE_KEY if "resample" in columns else _KEY


def _key(row: dict[str, Any]) -> tuple:
    return tuple(
        int(row[name]) if name in _INTS else float(row[name]) for name in _key_columns(row)
    )


def _finished(row: dict[str, Any]) -> bool:
    return not (row.get("error") or "").startswith(LOST)


# -------------------------------------------------------------- the backends

#: A task's runs when ``runs_per_task`` is not given: about this many tasks a
#: worker, so a slow task or a lost worker delays the end by a fraction of a
#: worker's share, and at most ``MAX_RUNS_PER_TASK`` runs.
TASKS_PER_WORKER = 4
MAX_RUNS_PER_TASK = 100
#: Seconds a scheduler has to say what it is, and a cluster to show a worker.
CONNECT_TIMEOUT = 10
#: Seconds Ray has to connect to a cluster (a child process that imports Ray
#: and connects: about 2 s to a cluster that is there).
RAY_CONNECT_TIMEOUT = 15
_RAY_PROBE = (
    "import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, "
    "log_to_driver=False, logging_level='ERROR'); ray.shutdown()"
)


def _tasks(specs: list[RunSpec], workers: int, runs_per_task: int | None) -> list[list[RunSpec]]:
    """The runs in tasks of ``runs_per_task`` (default: see TASKS_PER_WORKER),
    in grid order, each without the data (sent to the workers apart)."""
    size = runs_per_task or max(
        1, min(MAX_RUNS_PER_TASK, math.ceil(len(specs) / (TASKS_PER_WORKER * workers)))
    )
    bare = [replace(spec, data=None) for spec in specs]
    return [bare[i : i + size] for i in range(0, len(bare), size)]


def run_task(specs: list[RunSpec], data: studies.RegressionData | None) -> list[dict[str, Any]]:
    """Run a task, several runs that share ``data`` (given once for them all),
    where this is called; return their rows.

    >>> from agrad.sweep import RunSpec, run_task
    >>> specs = [RunSpec("univariate", seed, 0.01, 5, 100, "native", 5, None) for seed in (0, 1)]
    >>> [row["seed"] for row in run_task(specs, None)]
    [0, 1]
    """
    return [replace(spec, data=data).run() for spec in specs]


_watching_parent = False


def _run_local_task(
    sweep_pid: int, specs: list[RunSpec], data: studies.RegressionData | None
) -> list[dict[str, Any]]:
    # A loky worker outlives a sweep that is killed (SIGKILL: nothing of the
    # sweep runs to stop it) by minutes, running and holding the sweep's output
    # pipe.  Its parent is the sweep; when that changes, the sweep is gone.
    global _watching_parent
    if os.getpid() != sweep_pid and not _watching_parent:
        _watching_parent = True
        parent = os.getppid()

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.2)
            os._exit(1)

        threading.Thread(target=watch, name="agrad-sweep-parent", daemon=True).start()
    return run_task(specs, data)


def _lost_rows(specs: list[Any], why: str) -> list[dict[str, Any]]:
    return [
        {"study": spec.study, **dict(zip(spec.KEY, spec.key, strict=True)), "error": f"{LOST}{why}"}
        for spec in specs
    ]


class _Local:
    """joblib's loky processes on this machine."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(
        self, specs: list[RunSpec], data: Any, runs_per_task: int | None
    ) -> Iterator[list[dict[str, Any]]]:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        pending = {spec.key: spec for spec in specs}
        deaths = dict.fromkeys(pending, 0)
        while pending:
            tasks = _tasks(list(pending.values()), self.jobs, runs_per_task)
            try:
                # n_jobs=1 runs in this process, no pool: the quick sweeps of the CLI
                with Parallel(
                    n_jobs=self.jobs, backend="loky", return_as="generator_unordered"
                ) as parallel:
                    for rows in parallel(
                        delayed(_run_local_task)(os.getpid(), task, data) for task in tasks
                    ):
                        for row in rows:
                            del pending[_key(row)]
                        yield rows
            except TerminatedWorkerError as error:
                # loky cannot say which task a dead worker held: every unfinished
                # run counts a death, and goes to the fresh pool of the next round
                lost = []
                for key in list(pending):
                    deaths[key] += 1
                    if deaths[key] > RETRIES:
                        lost.append(pending.pop(key))
                if lost:
                    why = f"a worker died {RETRIES + 1} times running it ({error})"
                    yield _lost_rows(lost, why.splitlines()[0])

    def close(self) -> None:
        pass


def _extra(module: str, option: str, extra: str) -> Any:
    """Import ``module`` of an optional backend, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f'{option} needs the {module} package: pip install "agrad[{extra}]" '
            f'(in a checkout of agrad: pip install ".[{extra}]")'
        ) from error


def _reachable(
    address: str, what: str, schemes: tuple[str, ...], default_port: int, form: str
) -> tuple[str, int]:
    """``address`` as host and port (the backend's default if none is given),
    once something there has accepted a connection."""
    match = re.fullmatch(
        r"(?:([a-z][a-z0-9+.-]*)://)?(\[[^\]]+\]|[^:/\[\]]+)(?::(\d+))?/?", address.strip()
    )
    if match is None or (match[1] is not None and match[1] not in schemes):
        raise ValueError(f"{address!r} is not the address of {what}: give {form}")
    host = match[2].strip("[]")
    port = default_port if match[3] is None else int(match[3])
    if not 0 < port < 65536:
        raise ValueError(f"{address!r}: {port} is not a port (1 to 65535)")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ConnectionError(f"cannot resolve {host!r} for {what}: {error}") from None
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        default = "" if match[3] else f" (port {port}, the default)"
        raise ConnectionError(f"cannot reach {what} at {address!r}{default}: {error}") from None
    return host, port


def _within(seconds: float, coroutine: Any) -> Any:
    """Run ``coroutine`` to its end or for ``seconds``, in a thread of its own
    (so it works where an event loop is already running, as in Jupyter)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, seconds)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result()


class _Dask:
    """A running dask.distributed scheduler."""

    name = "dask"

    def __init__(self, address: str) -> None:
        distributed = _extra("distributed", "--dask", "dask")
        form = "tcp://HOST:PORT or HOST:PORT (the scheduler's; port 8786 if none)"
        host, port = _reachable(address, "a Dask scheduler", ("tcp",), 8786, form)
        self.address = address = f"tcp://{f'[{host}]' if ':' in host else host}:{port}"
        kind = self._identify(distributed, address)
        if kind != "Scheduler":
            raise ConnectionError(f"{address} is a Dask {kind.lower()}, not a scheduler")
        self.distributed = distributed
        try:
            self.client = distributed.Client(
                address, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False
            )
        except (OSError, ValueError) as error:
            raise ConnectionError(
                f"cannot reach a Dask scheduler at {address!r}: {error}"
            ) from None
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except (TimeoutError, OSError):
            self.client.close()
            raise ConnectionError(
                f"the Dask scheduler at {address} has no workers (none came within "
                f"{CONNECT_TIMEOUT} s)"
            ) from None
        self.workers = sum(self.client.nthreads().values())

    @staticmethod
    def _identify(distributed: Any, address: str) -> str:
        """What answers at ``address``, as Dask's servers name themselves."""

        async def ask() -> Any:
            comm = await distributed.comm.connect(address, timeout=CONNECT_TIMEOUT)
            try:
                await comm.write({"op": "identity", "reply": True})
                return await comm.read()
            finally:
                comm.abort()

        # something listens there (_reachable): whatever fails now is that it
        # does not speak as a Dask server.  A web server closes the connection
        # or waits for a request and times out; its bytes read as a frame
        # length make some releases of distributed try to allocate exabytes
        # (MemoryError); others fail decoding them.  Any error of the probe
        # is the same answer.
        try:
            reply = _within(CONNECT_TIMEOUT, ask())
        except Exception:  # (see above: every failure of the probe means "not Dask")
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("type"), str):
            raise ConnectionError(
                f"{address} answers, but is not a Dask scheduler (no reply as one within "
                f"{CONNECT_TIMEOUT} s): is it the dashboard's port, or another service?"
            )
        return reply["type"]

    def run(
        self, specs: list[RunSpec], data: Any, runs_per_task: int | None
    ) -> Iterator[list[dict[str, Any]]]:
        tasks = _tasks(specs, self.workers, runs_per_task)
        # the data go to every worker once, and each task refers to them
        shared = None if data is None else self.client.scatter(data, broadcast=True, hash=False)
        # pure=False: two equal tasks are still two (Dask would merge them)
        futures = self.client.map(run_task, tasks, data=shared, pure=False)
        task_of = dict(zip((f.key for f in futures), tasks, strict=True))
        try:
            for future in self.distributed.as_completed(futures, loop=self.client.loop):
                try:
                    yield future.result()
                except self.distributed.KilledWorker as error:
                    # the scheduler already retried it on other workers
                    yield _lost_rows(task_of[future.key], f"{type(error).__name__}: {error}")
        finally:
            self.client.cancel(futures)
            if shared is not None:
                self.client.cancel(shared)

    def close(self) -> None:
        self.client.close()


class _Ray:
    """A running Ray cluster, or a local one started for the sweep."""

    name = "ray"

    def __init__(self, address: str) -> None:
        ray = _extra("ray", "--ray", "ray")
        if address != "local":
            form = "local, or HOST:PORT of its head node (the GCS; port 6379 if none)"
            host, port = _reachable(address, "a Ray cluster", (), 6379, form)
            address = f"{host}:{port}"
            self._check_gcs(address)
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            import logging

            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise ConnectionError(
                    f"cannot reach a Ray cluster at {address!r}: {error}"
                ) from None
        self.workers = int(ray.cluster_resources().get("CPU", 0))
        if self.workers < 1:
            self.close()
            raise ConnectionError(f"the Ray cluster at {address} has no CPUs for the runs")
        # Ray runs a task again on another worker when its worker dies (max_retries)
        self.remote = ray.remote(num_cpus=1, max_retries=RETRIES)(run_task)

    @staticmethod
    def _check_gcs(address: str) -> None:
        """Connect to ``address`` as Ray itself does, in a child process that
        is killed if it is still waiting after RAY_CONNECT_TIMEOUT seconds:
        ``ray.init`` waits for ever on a port that answers but is not a Ray
        cluster's, and its checks (the cluster's id, its token) are its own."""
        try:
            done = subprocess.run(
                [sys.executable, "-c", _RAY_PROBE, address],
                capture_output=True,
                text=True,
                timeout=RAY_CONNECT_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise ConnectionError(
                f"{address} answers, but is not a Ray cluster: Ray did not connect to it within "
                f"{RAY_CONNECT_TIMEOUT} s (give its head node's GCS port, 6379 unless set "
                f"otherwise)"
            ) from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise ConnectionError(f"cannot connect to a Ray cluster at {address!r}: {lines[-1]}")

    def run(
        self, specs: list[RunSpec], data: Any, runs_per_task: int | None
    ) -> Iterator[list[dict[str, Any]]]:
        ray = self.ray
        # the data go to the object store once, and each worker's node fetches them once
        shared = None if data is None else ray.put(data)
        pending = {
            self.remote.remote(task, shared): task
            for task in _tasks(specs, self.workers, runs_per_task)
        }
        try:
            while pending:
                # everything finished within a short wait, so each round is one
                # pass over the pending list rather than one per result
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except (
                        ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError,
                    ) as error:
                        yield _lost_rows(task, f"{type(error).__name__}: {error}".splitlines()[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


# ----------------------------------------------------------------- the sweep


class _Plan:
    """What a sweep and a bootstrap share: runs (``specs``, each with a
    ``key`` and a ``run()``), their record (``store``) and a backend.
    A subclass's ``__init__`` sets ``specs``, ``data``, ``store`` and
    ``study``, and calls ``_where`` with the backend's arguments."""

    specs: list[Any]
    data: studies.RegressionData | None
    store: _Store
    study: str

    def _where(
        self, jobs: int | None, dask: str | None, ray: str | None, runs_per_task: int | None
    ) -> None:
        if sum(x is not None for x in (jobs, dask, ray)) > 1:
            raise ValueError("give one of jobs, dask and ray")
        if jobs is not None:
            (jobs,) = _ints([jobs], "jobs", 1, 10_000)
        if runs_per_task is not None:
            (runs_per_task,) = _ints([runs_per_task], "runs per task", 1, MAX_RUNS)
        for address, option in ((dask, "dask"), (ray, "ray")):
            if address is not None and not isinstance(address, str):
                raise TypeError(f"{option} is an address (a str), not {address!r}")
        self._backend_args = (jobs, dask, ray)
        self.runs_per_task = runs_per_task
        self.backend: _Local | _Dask | _Ray | None = None

    @property
    def todo(self) -> list[Any]:
        """The runs without a finished row."""
        return [
            spec
            for spec in self.specs
            if spec.key not in self.store.rows or not _finished(self.store.rows[spec.key])
        ]

    def connect(self) -> None:
        """Start or reach the backend (before any run: an address that does
        not answer is an error here)."""
        if self.backend is not None:
            return
        jobs, dask, ray = self._backend_args
        if dask is not None:
            self.backend = _Dask(dask)
        elif ray is not None:
            self.backend = _Ray(ray)
        else:
            self.backend = _Local(jobs or os.cpu_count() or 1)

    def open(self) -> None:
        """Claim ``output`` until ``close`` (``RuntimeError`` while another
        sweep or bootstrap holds it) and read what it holds now."""
        self.store.open()

    def close(self) -> None:
        """Stop what ``connect`` started, write ``runs.csv`` from the record
        and let ``output`` go."""
        try:
            self.store.close()
        finally:
            if self.backend is not None:
                self.backend.close()
                self.backend = None

    def run(self, progress: bool | None = False) -> Any:
        """Do the runs the results lack, filing each task's rows as it ends;
        return the rows as a pandas DataFrame, in the order of ``specs``.
        ``progress``: a progress bar on stderr (None: when stderr is a terminal)."""
        self.open()
        try:
            todo = self.todo
            if todo:
                self.connect()
                assert self.backend is not None
                from tqdm import tqdm

                bar = tqdm(
                    total=len(todo),
                    unit="run",
                    disable=None if progress is None else not progress,
                    desc=self.study,
                )
                failed = 0
                try:
                    for rows in self.backend.run(todo, self.data, self.runs_per_task):
                        self.store.add(rows)
                        failed += sum(row.get("error") is not None for row in rows)
                        bar.update(len(rows))
                        if failed:
                            bar.set_postfix(failed=failed)
                finally:
                    bar.close()
        finally:
            self.store.close()
        return _frame([self.store.rows[spec.key] for spec in self.specs], self.store.columns)


class Sweep(_Plan):
    """A sweep checked and ready: the grid, the results so far, a backend.

    Everything that can be wrong with the arguments is raised here, before
    any run (``ValueError``, ``TypeError``; ``ConnectionError`` for a
    scheduler that cannot be reached, ``ImportError`` for a missing extra).
    ``run()`` does the runs ``output`` lacks and returns the grid's rows.

    >>> from agrad.sweep import Sweep
    >>> plan = Sweep("univariate", seeds=range(3), learning_rates=[0.01, 0.02], jobs=1)
    >>> len(plan.todo)
    6
    >>> runs = plan.run()
    >>> plan.close()
    >>> runs[["seed", "learning_rate", "epochs"]].head(3)
       seed  learning_rate  epochs
    0     0           0.01     500
    1     1           0.01     500
    2     2           0.01     500
    """

    def __init__(
        self,
        study: str,
        *,
        seeds: Iterable[int] | int = range(10),
        learning_rates: Iterable[float] | float | None = None,
        batch_sizes: Iterable[int] | int | None = None,
        epochs: Iterable[int] | int | None = None,
        engine: str = "native",
        samples: int | None = None,
        data: studies.RegressionData | str | os.PathLike | None = None,
        target: str | None = None,
        output: str | os.PathLike | None = None,
        jobs: int | None = None,
        dask: str | None = None,
        ray: str | None = None,
        runs_per_task: int | None = None,
    ) -> None:
        if study not in STUDIES:
            raise ValueError(f"unknown study {study!r}; the studies are {', '.join(STUDIES)}")
        if engine not in linreg.ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; the engines are {', '.join(sorted(linreg.ENGINES))}"
            )

        seeds = _ints(_as_list(seeds), "seeds", 0, 2**63 - 1)
        rates = _floats(
            _as_list(
                _default(study, "learning_rate") if learning_rates is None else learning_rates
            ),
            "learning rates",
        )
        epoch_counts = _ints(
            _as_list(_default(study, "epochs") if epochs is None else epochs),
            "epochs",
            0,
            studies.MAX_EPOCHS,
        )
        if study == "bodyfat":
            if samples is not None:
                raise ValueError("bodyfat trains on its data's rows: it takes no samples")
            if not isinstance(data, studies.RegressionData):
                data = studies.load_regression_data(data, target)
            rows, what = len(data.ys), f"the {len(data.ys)} rows of {data.source}"
        else:
            if data is not None or target is not None:
                raise ValueError(f"only bodyfat takes data and target, not {study}")
            if samples is None:
                samples = _default(study, "samples")
            (samples,) = _ints([samples], "samples", 1, studies.MAX_SAMPLES)
            rows, what = samples, f"the {samples} points"
        if study == "univariate":
            if batch_sizes is not None:
                raise ValueError("univariate trains on the full batch: it takes no batch size")
            sizes = [rows]
        else:
            given = _default(study, "batch_size") if batch_sizes is None else batch_sizes
            sizes = _ints(_as_list(given), "batch sizes", 1, 2**63 - 1)
            too_big = [size for size in sizes if size > rows]
            if too_big:
                raise ValueError(
                    f"batch size {too_big[0]} is larger than {what}: a batch is at most all of them"
                )
        total = len(seeds) * len(rates) * len(sizes) * len(epoch_counts)
        if total > MAX_RUNS:
            raise ValueError(f"the grid has {total} runs, more than {MAX_RUNS}")
        self.study = study
        self.data = data if study == "bodyfat" else None
        # seeds innermost: the first runs to finish cover a configuration's spread
        self.specs = [
            RunSpec(study, seed, rate, size, count, engine, samples, self.data)
            for rate in rates
            for size in sizes
            for count in epoch_counts
            for seed in seeds
        ]
        self._where(jobs, dask, ray, runs_per_task)
        settings = {"study": study, "engine": engine, "samples": samples}
        if self.data is not None:
            settings["data"] = self.data.source
            settings["target"] = self.data.target
            settings["data_sha256"] = _data_hash(self.data)
        self.store = _Store(output, settings, _columns(study, self.data))


def sweep(study: str, *, progress: bool = False, **options: Any) -> Any:
    """Run ``study`` over the grid and return one row per run as a pandas
    DataFrame (see ``Sweep`` for the options; ``output=DIR`` files the rows
    in ``DIR/runs.csv`` as they finish and resumes from it).

    >>> from agrad.sweep import sweep
    >>> runs = sweep("univariate", seeds=range(3), learning_rates=[0.01, 0.02], jobs=1)
    >>> len(runs), sorted(set(runs["learning_rate"]))
    (6, [0.01, 0.02])
    """
    plan = Sweep(study, **options)
    try:
        return plan.run(progress=progress)
    finally:
        plan.close()


# ---------------------------------------------------------- summary, figures

_CONFIG = ["learning_rate", "batch_size", "epochs"]


def _measure(runs: Any) -> str:
    # the gap when there is one; data that a plane fits exactly have none
    return "gap_to_least_squares" if runs["gap_to_least_squares"].notna().any() else "mse"


def summarize(runs: Any) -> Any:
    """Per configuration, over its seeds: how many runs, how many failed, and
    the median, quartiles and worst of the gap to least squares (percent; the
    MSE if the data have no gap).

    >>> from agrad.sweep import summarize, sweep
    >>> runs = sweep("univariate", seeds=range(4), learning_rates=[0.01, 0.02], jobs=1)
    >>> summarize(runs)[["learning_rate", "runs", "failed"]]
       learning_rate  runs  failed
    0           0.01     4       0
    1           0.02     4       0
    """
    import pandas as pd

    measure = _measure(runs)
    groups = runs.groupby(_CONFIG, sort=True)
    values = groups[measure]
    table = pd.DataFrame(
        {
            "runs": groups.size(),
            "failed": groups["error"].apply(lambda e: int(e.notna().sum())),
            "median": values.median(),
            "q1": values.quantile(0.25),
            "q3": values.quantile(0.75),
            "worst": values.max(),
        }
    )
    table.attrs["measure"] = measure
    return table.reset_index()


def plot(runs: Any, directory: str | os.PathLike) -> list[str]:
    """The sweep's figures as PNG files in ``directory``: the median gap over
    learning rate x batch size (one panel per epoch count; left out when the
    grid has one learning rate and one batch size, a map of one cell), and
    the spread over seeds of each configuration.  Returns their paths.

    >>> import os, tempfile
    >>> from agrad.sweep import plot, sweep
    >>> runs = sweep("univariate", seeds=range(4), learning_rates=[0.01, 0.02], jobs=1)
    >>> [os.path.basename(path) for path in plot(runs, tempfile.mkdtemp())]
    ['sweep-univariate-heatmap.png', 'sweep-univariate-spread.png']
    """
    ok = runs[runs["error"].isna()]
    if ok.empty:
        raise ValueError("no run finished without an error: nothing to plot")
    measure = _measure(ok)
    label = "gap to least squares (%)" if measure == "gap_to_least_squares" else "MSE"
    study = str(runs["study"].iloc[0])
    written = []
    if ok["learning_rate"].nunique() * ok["batch_size"].nunique() > 1:
        panels = {
            f"{count} epochs": ok[ok["epochs"] == count].pivot_table(
                index="learning_rate", columns="batch_size", values=measure, aggfunc="median"
            )
            for count in sorted(ok["epochs"].unique())
        }
        written.append(
            viz.plot_heatmap(
                panels,
                os.path.join(directory, f"sweep-{study}-heatmap.png"),
                row_label="learning rate",
                column_label="batch size",
                value_label=f"median {label}",
                title=f"{study}: median over seeds",
            )
        )
    groups = {
        f"lr {lr:g}, batch {b}, {e} ep": group[measure].to_numpy()
        for (lr, b, e), group in ok.groupby(_CONFIG, sort=True)
    }
    written.append(
        viz.plot_spread(
            groups,
            os.path.join(directory, f"sweep-{study}-spread.png"),
            value_label=label,
            title=f"{study}: spread over seeds per configuration",
        )
    )
    return written


# ------------------------------------------------------------- the bootstrap

#: The studies a bootstrap resamples: body fat (the bundled data or a CSV).
BOOTSTRAP_STUDIES = ("bodyfat",)
#: How a resample is fitted: one full step of Newton's method on all its
#: rows, which lands on their least-squares weights (to about 1e-10).
BOOTSTRAP_FIT: dict[str, Any] = {"method": "newton", "epochs": 1, "learning_rate": 1.0}


@dataclass(frozen=True)
class Resample:
    """One resample of a bootstrap, picklable like a ``RunSpec``: the data's
    rows drawn with replacement by ``resample_rows(seed, resample, n)``, and
    the least-squares weights of the study's model on them, fitted by agrad.

    >>> from agrad import studies
    >>> from agrad.sweep import Resample
    >>> spec = Resample("bodyfat", 42, 0, "native", studies.load_regression_data())
    >>> spec.key, round(spec.run()["w_abdomen"], 3)
    ((42, 0), 11.173)
    """

    study: str
    seed: int
    resample: int
    engine: str
    data: studies.RegressionData | None  # sent to a worker once for all its resamples

    KEY: ClassVar[list[str]] = _RESAMPLE_KEY

    @property
    def key(self) -> tuple[int, int]:
        return (self.seed, self.resample)

    def run(self) -> dict[str, Any]:
        return run_resample(self)


def resample_rows(seed: int, resample: int, n: int) -> Any:
    """The rows of resample ``resample``: ``n`` indices of ``range(n)`` drawn
    with replacement from ``numpy.random.default_rng([seed, resample])``, so
    they depend on the seed and the resample's index alone.

    >>> from agrad.sweep import resample_rows
    >>> resample_rows(42, 0, 5).tolist()
    [0, 3, 3, 2, 2]
    """
    import numpy as np

    return np.random.default_rng([seed, resample]).integers(0, n, size=n)


def run_resample(spec: Resample) -> dict[str, Any]:
    """Fit one resample where this is called (any worker) and return its row:
    the weights on the features as z-scores of all the data (the study's
    scale, so they compare with its weights and standard errors), by
    ``linreg.train(..., method="newton")``.  A fit that fails (a singular
    Hessian: a resample of too few distinct rows) is a row with its error.

    >>> from agrad import studies
    >>> from agrad.sweep import Resample, run_resample
    >>> row = run_resample(Resample("bodyfat", 42, 1, "pure", studies.load_regression_data()))
    >>> row["resample"], round(row["w_abdomen"], 3), "error" in row
    (1, 8.177, False)
    """
    data = spec.data
    assert data is not None
    names = list(data.feature_names)
    row: dict[str, Any] = {
        "study": spec.study,
        "seed": spec.seed,
        "resample": spec.resample,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    start = time.perf_counter()
    X_norm, _mean, _std = linreg.standardize(data.X, names)
    rows = resample_rows(spec.seed, spec.resample, len(data.ys)).tolist()
    xs, ys = [X_norm[i] for i in rows], [data.ys[i] for i in rows]
    # the starting weights (which Newton's step leaves) from the seed alone
    model = linreg.LinReg(
        n_inputs=len(names),
        feature_names=names,
        value_class=linreg.ENGINES[spec.engine],
        rng=random.Random(spec.seed),
    )
    try:
        linreg.train(
            model,
            xs,
            ys,
            BOOTSTRAP_FIT["learning_rate"],
            BOOTSTRAP_FIT["epochs"],
            method=BOOTSTRAP_FIT["method"],
            log_every=None,
        )
    except (ArithmeticError, ValueError) as error:
        row["seconds"] = time.perf_counter() - start
        row["error"] = f"{type(error).__name__}: {error}"
        return row
    fit = linreg.model_fit(model, xs, ys)
    row["seconds"] = time.perf_counter() - start
    row["mse"] = float(fit.mse)
    row["bias"] = float(fit.bias)
    for name, weight in zip(names, fit.weights, strict=True):
        row[f"w_{name}"] = float(weight)
    return row


def _bootstrap_columns(data: studies.RegressionData) -> list[str]:
    weights = [f"w_{name}" for name in data.feature_names]
    return ["study", *_RESAMPLE_KEY, "mse", "seconds", "bias", *weights, *_TAIL]


class Bootstrap(_Plan):
    """A bootstrap checked and ready: ``resamples`` resamples of the study's
    data, each a run on a backend as a sweep's are (``jobs``, ``dask``,
    ``ray``, ``runs_per_task``), filed in ``output`` and resumed from it.

    Also holds the Hessian's answer on all the data (``uncertainty``, from
    ``linreg.uncertainty``: statsmodels' standard errors and intervals at
    ``confidence``), computed here, before any run.  Bad arguments raise
    here: ``TypeError``, ``ValueError``, ``ConnectionError`` (at ``connect``),
    ``ImportError`` for a missing extra.

    >>> from agrad.sweep import Bootstrap
    >>> plan = Bootstrap(resamples=3, jobs=1)
    >>> [spec.key for spec in plan.todo]
    [(42, 0), (42, 1), (42, 2)]
    >>> rows = plan.run()
    >>> plan.close()
    >>> rows[["seed", "resample"]].values.tolist()
    [[42, 0], [42, 1], [42, 2]]
    """

    def __init__(
        self,
        study: str = "bodyfat",
        *,
        resamples: int = 1000,
        seed: int = 42,
        engine: str = "native",
        data: studies.RegressionData | str | os.PathLike | None = None,
        target: str | None = None,
        confidence: float = 0.95,
        output: str | os.PathLike | None = None,
        jobs: int | None = None,
        dask: str | None = None,
        ray: str | None = None,
        runs_per_task: int | None = None,
    ) -> None:
        if study not in BOOTSTRAP_STUDIES:
            raise ValueError(
                f"the bootstrap resamples {', '.join(BOOTSTRAP_STUDIES)}, not {study!r}"
            )
        for value, what in ((resamples, "resamples"), (seed, "seed")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be a whole number (an int), not {value!r}")
        if not 1 <= resamples <= MAX_RUNS:
            raise ValueError(f"resamples must be between 1 and {MAX_RUNS}, not {resamples}")
        if not 0 <= seed < 2**63:
            raise ValueError(f"seed must be a whole number 0 or more, not {seed}")
        if engine not in linreg.ENGINES:
            raise ValueError(
                f"unknown engine {engine!r}; the engines are {', '.join(sorted(linreg.ENGINES))}"
            )
        if not isinstance(data, studies.RegressionData):
            data = studies.load_regression_data(data, target)
        elif target is not None and target != data.target:
            raise ValueError(f"target {target!r} differs from the data's target {data.target!r}")
        X_norm, _mean, _std = linreg.standardize(data.X, data.feature_names)
        #: the Hessian's standard errors and intervals on all the data
        self.uncertainty = linreg.uncertainty(
            X_norm,
            data.ys,
            data.feature_names,
            confidence=confidence,
            value_class=linreg.ENGINES[engine],
        )
        self.study = study
        self.data = data
        self.seed = seed
        self.specs = [Resample(study, seed, i, engine, data) for i in range(resamples)]
        self._where(jobs, dask, ray, runs_per_task)
        settings = {
            "kind": "bootstrap",
            "study": study,
            "engine": engine,
            "fit": BOOTSTRAP_FIT,
            "data": data.source,
            "target": data.target,
            "data_sha256": _data_hash(data),
        }
        self.store = _Store(output, settings, _bootstrap_columns(data))


def summarize_bootstrap(rows: Any, u: linreg.Uncertainty) -> Any:
    """Per weight (the features', then the bias): the least-squares
    ``estimate`` on all the data; over the finished resamples the bootstrap
    standard error (their standard deviation) and percentile interval at
    ``u.confidence``; beside them the Hessian's standard error and interval
    (``u``).  A pandas DataFrame indexed by the weights' names; its
    ``attrs`` say how many resamples were used and how many failed.

    >>> from agrad.sweep import Bootstrap, summarize_bootstrap
    >>> plan = Bootstrap(resamples=4, jobs=1)
    >>> table = summarize_bootstrap(plan.run(), plan.uncertainty)
    >>> list(table.columns)[:4], table.attrs["resamples"]
    (['estimate', 'bootstrap_se', 'bootstrap_low', 'bootstrap_high'], 4)
    """
    import numpy as np
    import pandas as pd

    columns = [f"w_{name}" for name in u.names[:-1]] + ["bias"]
    finished = rows[rows["error"].isna()]
    if finished.empty:
        raise ValueError("no resample was fitted: there is no bootstrap to summarize")
    weights = finished[columns].to_numpy(dtype=float)
    tail = (1 - u.confidence) / 2
    low, high = np.quantile(weights, [tail, 1 - tail], axis=0)
    table = pd.DataFrame(
        {
            "estimate": u.estimates,
            "bootstrap_se": weights.std(axis=0, ddof=1) if len(weights) > 1 else np.nan,
            "bootstrap_low": low,
            "bootstrap_high": high,
            "hessian_se": u.standard_errors,
            "hessian_low": u.intervals[:, 0],
            "hessian_high": u.intervals[:, 1],
        },
        index=pd.Index(u.names, name="weight"),
    )
    table.attrs.update(
        resamples=len(finished), failed=len(rows) - len(finished), confidence=u.confidence
    )
    return table


@dataclass(frozen=True)
class BootstrapResult:
    """A bootstrap's resamples (``rows``, one per resample: the weights and
    bias fitted on it), the Hessian's ``uncertainty`` on all the data, and
    the two side by side per weight (``summary``, see ``summarize_bootstrap``).

    >>> from agrad.sweep import bootstrap
    >>> result = bootstrap(resamples=3, jobs=1)
    >>> len(result.rows), result.uncertainty.names[-1], result.summary.attrs["failed"]
    (3, 'bias', 0)
    """

    rows: Any = field(repr=False)
    uncertainty: linreg.Uncertainty = field(repr=False)
    summary: Any


def bootstrap(study: str = "bodyfat", *, progress: bool = False, **options: Any) -> BootstrapResult:
    """Resample the study's data ``resamples`` times with replacement, fit
    each resample's least-squares weights by agrad (a run each, on the
    backend given as for ``sweep``), and compare the spread of the weights
    with the Hessian's standard errors and intervals.  See ``Bootstrap`` for
    the options; ``output=DIR`` files the resamples and resumes from them.

    >>> from agrad.sweep import bootstrap
    >>> result = bootstrap(resamples=4, jobs=1)
    >>> len(result.rows), round(float(result.summary.loc["abdomen", "estimate"]), 3)
    (4, 9.459)
    """
    plan = Bootstrap(study, **options)
    try:
        rows = plan.run(progress=progress)
    finally:
        plan.close()
    return BootstrapResult(rows, plan.uncertainty, summarize_bootstrap(rows, plan.uncertainty))


def plot_bootstrap(result: BootstrapResult, directory: str | os.PathLike) -> str:
    """Each weight's bootstrap interval and Hessian interval side by side
    (horizontal error bars around the least-squares weight), as
    ``DIR/bootstrap-bodyfat-intervals.png``; returns its path.

    >>> import os, tempfile
    >>> from agrad.sweep import bootstrap, plot_bootstrap
    >>> result = bootstrap(resamples=4, jobs=1)
    >>> os.path.basename(plot_bootstrap(result, tempfile.mkdtemp()))
    'bootstrap-bodyfat-intervals.png'
    """
    table = result.summary.drop(index="bias")  # on another scale: the mean of the target
    level = f"{100 * table.attrs['confidence']:g}%"
    study = str(result.rows["study"].iloc[0])
    return viz.plot_intervals(
        list(table.index),
        table["estimate"].to_numpy(),
        {
            f"{level} bootstrap percentile interval ({table.attrs['resamples']} resamples)": table[
                ["bootstrap_low", "bootstrap_high"]
            ].to_numpy(),
            f"{level} interval from the Hessian (t)": table[
                ["hessian_low", "hessian_high"]
            ].to_numpy(),
        },
        os.path.join(directory, f"bootstrap-{study}-intervals.png"),
        title="Least-squares weights (features as z-scores): bootstrap against Hessian",
    )
