"""Sweeps: one of the chapter's training studies over a grid of seeds,
learning rates, batch sizes and epoch counts, on local cores or a cluster.

Design
------
- **A run is one task, and it seeds itself.**  A task is a ``RunSpec`` handed
  to ``run_one``, which calls the study function of ``agrad.studies`` with the
  spec's seed.  The studies seed Python's ``random`` themselves and the engine
  is deterministic, so a row is the same bits on any backend, in any order, on
  any number of workers, and equals the single run with the same options.
  The studies draw from a ``random.Random(seed)`` of their own, never the
  global ``random``: a Dask worker's event loop draws from that one (its
  timers' jitter) while tasks run, and would change a run's mini-batches.
- **Backends are other people's schedulers.**  joblib's loky processes on one
  machine (the default, all cores), a running ``dask.distributed`` scheduler,
  or Ray.  Each yields rows as runs finish; this module only files them.  A
  worker that dies takes its run with it: Dask and Ray run it again on another
  worker (their own retry machinery); joblib ends the whole pool, so the runs
  that had not finished go to a fresh pool.  A run that keeps killing its
  workers (``RETRIES`` times; on Dask, its scheduler's ``allowed-failures``)
  becomes a row whose error starts with ``lost:``, and a resume runs it again.
- **The file is the state.**  ``DIR/runs.csv`` gets one line per finished run,
  written by the main process alone, as one write, flushed at once; nothing
  ever rewrites it, so an interrupted or failed sweep keeps every finished row.
  Re-running with the same ``DIR`` reads it and does only the runs it lacks.
  ``DIR/sweep.json`` holds what every row shares (study, engine, data), so a
  resume with other settings is refused instead of mixing two experiments.
  Floats are written with ``repr`` and read back with round-trip precision:
  the file holds the exact bits.
- **A run that raises is a result.**  A diverging learning rate's
  ``OverflowError`` (or any ``ArithmeticError``/``ValueError`` of the study)
  is a row with the error, not the end of the sweep.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from agrad import linreg, studies, viz

__all__ = [
    "LOST",
    "MAX_RUNS",
    "RETRIES",
    "STUDIES",
    "RunSpec",
    "Sweep",
    "parse_seeds",
    "plot",
    "read_runs",
    "run_one",
    "summarize",
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
_HEAD = ["study", *_KEY, "mse", "least_squares_mse", "gap_to_least_squares", "seconds", "bias"]
_TAIL = ["worker", "error"]
#: How the error of a run given up as lost starts (a resume runs it again).
LOST = "lost: "


def _default(study: str, option: str) -> Any:
    # the single-run command's defaults are the study function's: one source
    return inspect.signature(STUDIES[study]).parameters[option].default


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

    @property
    def key(self) -> tuple[int, float, int, int]:
        return (self.seed, self.learning_rate, self.batch_size, self.epochs)


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
    >>> run_one(diverging)["error"].split(" (")[0]
    'OverflowError: training diverged at epoch 77'
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


# ------------------------------------------------------------------ the file


class _Store:
    """``DIR/runs.csv`` and ``DIR/sweep.json``, or rows in memory when there is no DIR."""

    def __init__(
        self, directory: str | os.PathLike | None, settings: dict, columns: list[str]
    ) -> None:
        self.columns = columns
        self.rows: dict[tuple, dict[str, Any]] = {}
        self.path: str | None = None
        self._stream: Any = None
        self._writer: Any = None
        if directory is None:
            return
        directory = os.fspath(directory)
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ValueError(f"{directory!r} is a file, not a directory for the sweep's results")
        self.directory = directory
        self.path = os.path.join(directory, "runs.csv")
        self.settings = settings
        self.settings_path = os.path.join(directory, "sweep.json")
        if os.path.exists(self.settings_path):
            with open(self.settings_path, encoding="utf-8") as stream:
                before = json.load(stream)
            if before != settings:
                differ = ", ".join(
                    f"{k} {before.get(k)!r} there, {settings.get(k)!r} now"
                    for k in sorted(set(before) | set(settings))
                    if before.get(k) != settings.get(k)
                )
                raise ValueError(
                    f"{directory} holds a sweep with other settings ({differ}); "
                    f"give another output directory"
                )
        if os.path.exists(self.path):
            self._read()

    def _read(self) -> None:
        assert self.path is not None
        with open(self.path, "rb+") as stream:
            data = stream.read()
            # A process killed in the middle of writing a row leaves a line
            # without its newline: that run never finished, so the partial
            # line goes and the run is done again.
            if data and not data.endswith(b"\n"):
                stream.truncate(data.rfind(b"\n") + 1)
        with open(self.path, newline="", encoding="utf-8") as stream:
            header = next(csv.reader(stream), None)
        if header is None:
            return
        if header != self.columns:
            raise ValueError(
                f"{self.path} has the columns {', '.join(header)}, not those of this sweep "
                f"({', '.join(self.columns)}); give another output directory"
            )
        for row in _read_rows(self.path):
            self.rows[_key(row)] = row  # a later row for the same run replaces an earlier one

    def add(self, row: dict[str, Any]) -> None:
        self.rows[_key(row)] = row
        if self.path is None:
            return
        if self._stream is None:
            self._open()
        assert self._stream is not None and self._writer is not None
        # one write of a whole line, flushed at once: a crash leaves at most a
        # torn last line, which the next sweep cuts off (_read)
        self._writer.writerow({k: "" if row.get(k) is None else row[k] for k in self.columns})
        self._stream.flush()

    def _open(self) -> None:
        assert self.path is not None
        if not os.path.exists(self.settings_path):
            # only once a run has finished: a sweep refused at the start leaves nothing
            os.makedirs(self.directory, exist_ok=True)
            # complete or absent: written beside, then put in place
            partial = f"{self.settings_path}.part"
            with open(partial, "w", encoding="utf-8") as stream:
                stream.write(json.dumps(self.settings, indent=1) + "\n")
            os.replace(partial, self.settings_path)
        # kept open for the whole sweep: opening the file for each row would
        # cost more than the row (~0.1 ms), and limit a large cluster
        self._stream = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.DictWriter(self._stream, self.columns, lineterminator="\n")
        if self._stream.tell() == 0:
            self._writer.writeheader()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = self._writer = None


_TEXT = {"study", "worker", "error"}
_INTS = {"seed", "batch_size", "epochs"}


def _read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    # Python's float() reads back the exact bits repr wrote, whatever pandas'
    # parser of the day does; an empty cell is a failed run's number, or no error
    rows = []
    with open(path, newline="", encoding="utf-8") as stream:
        for record in csv.DictReader(stream):
            rows.append(
                {
                    name: None
                    if text == ""
                    else text
                    if name in _TEXT
                    else int(text)
                    if name in _INTS
                    else float(text)
                    for name, text in record.items()
                }
            )
    return rows


def read_runs(path: str | os.PathLike) -> Any:
    """A sweep's ``runs.csv`` as a pandas DataFrame, floats to the bit.

    >>> import os, tempfile
    >>> from agrad.sweep import read_runs, sweep
    >>> output = tempfile.mkdtemp()
    >>> runs = sweep("univariate", seeds=[0, 1], jobs=1, output=output)
    >>> filed = read_runs(os.path.join(output, "runs.csv"))
    >>> bool((filed.sort_values("seed")["mse"].to_numpy() == runs.sort_values("seed")["mse"].to_numpy()).all())
    True
    """
    with open(path, newline="", encoding="utf-8") as stream:
        header = next(csv.reader(stream), [])
    return _frame(_read_rows(path), header)


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


def _key(row: dict[str, Any]) -> tuple:
    return (
        int(row["seed"]),
        float(row["learning_rate"]),
        int(row["batch_size"]),
        int(row["epochs"]),
    )


def _finished(row: dict[str, Any]) -> bool:
    return not (row.get("error") or "").startswith(LOST)


# -------------------------------------------------------------- the backends


def _lost_row(spec: RunSpec, why: str) -> dict[str, Any]:
    return {
        "study": spec.study,
        **dict(zip(_KEY, spec.key, strict=True)),
        "error": f"{LOST}{why}",
    }


class _Local:
    """joblib's loky processes on this machine."""

    name = "local"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        pending = {spec.key: spec for spec in specs}
        deaths = dict.fromkeys(pending, 0)
        while pending:
            try:
                # n_jobs=1 runs in this process, no pool: the quick sweeps of the CLI
                with Parallel(
                    n_jobs=self.jobs, backend="loky", return_as="generator_unordered"
                ) as parallel:
                    for row in parallel(delayed(run_one)(spec) for spec in list(pending.values())):
                        del pending[_key(row)]
                        yield row
            except TerminatedWorkerError as error:
                # loky cannot say which run a dead worker held: every unfinished
                # one counts a death, and goes to the fresh pool of the next round
                for key in list(pending):
                    deaths[key] += 1
                    if deaths[key] > RETRIES:
                        why = f"a worker died {deaths[key]} times running it ({error})"
                        yield _lost_row(pending.pop(key), why.splitlines()[0])

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


def _check_reachable(address: str, what: str) -> None:
    """Fail at once on a host:port nobody answers at (Ray would wait a minute)."""
    match = re.fullmatch(r"(?:[a-z]+://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if match is None:
        return  # "local", "auto": the engine knows what they mean
    try:
        socket.create_connection((match[1], int(match[2])), timeout=10).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach {what} at {address!r}: {error}") from None


class _Dask:
    """A running dask.distributed scheduler."""

    name = "dask"

    def __init__(self, address: str) -> None:
        distributed = _extra("distributed", "--dask", "dask")
        _check_reachable(address, "a Dask scheduler")
        self.distributed = distributed
        try:
            self.client = distributed.Client(address, timeout="10s", set_as_default=False)
        except (OSError, ValueError) as error:
            raise ConnectionError(
                f"cannot reach a Dask scheduler at {address!r}: {error}"
            ) from None

    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]:
        # pure=False: two equal specs are still two tasks (Dask would merge them)
        futures = self.client.map(run_one, specs, pure=False)
        spec_of = dict(zip((f.key for f in futures), specs, strict=True))
        try:
            for future in self.distributed.as_completed(futures, loop=self.client.loop):
                try:
                    yield future.result()
                except self.distributed.KilledWorker as error:
                    # the scheduler already retried it on other workers
                    yield _lost_row(spec_of[future.key], f"{type(error).__name__}: {error}")
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()


class _Ray:
    """A running Ray cluster, or a local one started for the sweep."""

    name = "ray"

    def __init__(self, address: str) -> None:
        ray = _extra("ray", "--ray", "ray")
        _check_reachable(address, "a Ray cluster")
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
        # Ray runs a task again on another worker when its worker dies (max_retries)
        self.remote = ray.remote(num_cpus=1, max_retries=RETRIES)(run_one)

    def run(self, specs: list[RunSpec]) -> Iterator[dict[str, Any]]:
        ray = self.ray
        pending = {self.remote.remote(spec): spec for spec in specs}
        try:
            while pending:
                # everything finished within a short wait, so each round is one
                # pass over the pending list rather than one per result
                done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.2)
                for ref in done:
                    spec = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except (
                        ray.exceptions.WorkerCrashedError,
                        ray.exceptions.NodeDiedError,
                    ) as error:
                        yield _lost_row(spec, f"{type(error).__name__}: {error}".splitlines()[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


# ----------------------------------------------------------------- the sweep


class Sweep:
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
        settings = {"study": study, "engine": engine, "samples": samples}
        if self.data is not None:
            settings["data"] = self.data.source
            settings["target"] = self.data.target
        self.store = _Store(output, settings, _columns(study, self.data))
        if sum(x is not None for x in (jobs, dask, ray)) > 1:
            raise ValueError("give one of jobs, dask and ray")
        if jobs is not None:
            (jobs,) = _ints([jobs], "jobs", 1, 10_000)
        self._backend_args = (jobs, dask, ray)
        self.backend: _Local | _Dask | _Ray | None = None

    @property
    def todo(self) -> list[RunSpec]:
        """The runs of the grid without a finished row."""
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

    def close(self) -> None:
        """Stop what ``connect`` started and close the results file."""
        self.store.close()
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def run(self, progress: bool | None = False) -> Any:
        """Do the runs the results lack, filing each row as it comes; return
        the grid's rows as a pandas DataFrame, in grid order.  ``progress``:
        a progress bar on stderr (None: when stderr is a terminal)."""

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
                for row in self.backend.run(todo):
                    self.store.add(row)
                    failed += row.get("error") is not None
                    bar.update()
                    if failed:
                        bar.set_postfix(failed=failed)
            finally:
                bar.close()
                self.store.close()
        return _frame([self.store.rows[spec.key] for spec in self.specs], self.store.columns)


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
