"""agrad.sweep and ``python -m agrad sweep``: against the real engines.

Every backend must give the rows the study gives when called on its own,
bit for bit; a resumed sweep runs nothing twice; a killed worker costs no
row; and a bad grid is refused before any run.  The Dask cluster is a
scheduler and two workers started here with Dask's own command-line tools,
on 127.0.0.1 only; Ray is a local instance.
"""

import contextlib
import http.server
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from agrad import studies, sweep

# what a run computed: everything but how long it took and where it ran
RESULT = ["study", "seed", "learning_rate", "batch_size", "epochs", "mse", "least_squares_mse"]
RESULT += ["gap_to_least_squares", "bias", "error"]
# body-fat runs short enough for many tests, with one learning rate that diverges
GRID = {"seeds": range(4), "learning_rates": [0.05, 5.0], "batch_sizes": [10, 50], "epochs": 150}


def results(runs: pd.DataFrame) -> pd.DataFrame:
    columns = RESULT + [c for c in runs.columns if c.startswith("w_")]
    return runs[columns].reset_index(drop=True)


def assert_same_bits(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(results(a), results(b), check_exact=True)


@pytest.fixture(scope="module")
def local_rows():
    """The grid run in this process, one run after another: the reference."""
    return sweep.sweep("bodyfat", jobs=1, **GRID)


# a bootstrap small enough for the backends' tests: its resamples take a
# quarter of a second each (an eager Hessian of the 252-row loss)
RESAMPLES = {"resamples": 4, "seed": 7}


def assert_same_resamples(a: pd.DataFrame, b: pd.DataFrame) -> None:
    columns = [c for c in a.columns if c not in ("seconds", "worker")]
    pd.testing.assert_frame_equal(a[columns], b[columns], check_exact=True)


@pytest.fixture(scope="module")
def local_resamples():
    """The bootstrap run in this process, one resample after another: the reference."""
    return sweep.bootstrap(jobs=1, **RESAMPLES)


def test_each_row_is_the_study_run_on_its_own(local_rows):
    assert len(local_rows) == 4 * 2 * 2
    for row in local_rows.itertuples():
        if row.learning_rate == 5.0:
            assert row.error.startswith("OverflowError: training diverged at epoch")
            assert pd.isna(row.mse)
            continue
        assert pd.isna(row.error)
        alone = studies.bodyfat(
            seed=row.seed, learning_rate=row.learning_rate, batch_size=row.batch_size, epochs=150
        )
        assert row.mse == alone.run.fit.mse
        assert row.gap_to_least_squares == 100 * alone.gap
        assert (
            row.w_abdomen == alone.run.fit.weights[list(alone.data.feature_names).index("abdomen")]
        )
        assert row.bias == alone.run.fit.bias


def test_the_cli_row_is_the_single_run_command(tmp_path):
    """``python -m agrad bodyfat --seed 3 ...`` prints the MSE of the sweep's row for seed 3."""
    options = ["--learning-rate", "0.05", "--batch-size", "10", "--epochs", "150"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agrad",
            "sweep",
            "bodyfat",
            "--seeds",
            "2-3",
            "--jobs",
            "1",
            "--output",
            str(tmp_path),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = sweep.read_runs(tmp_path / "runs.csv")
    single = subprocess.run(
        [sys.executable, "-m", "agrad", "bodyfat", "--seed", "3", "--seed-spread", "0", *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr
    mse = float(re.search(r"^MSE +(\S+)", single.stdout, re.MULTILINE)[1])
    (row,) = rows[rows.seed == 3].itertuples()
    assert mse == round(row.mse, 3)
    gap = re.search(r"is ([\d.]+)% above the least-squares minimum", single.stdout)[1]
    assert gap == f"{row.gap_to_least_squares:.1f}"


def test_two_local_processes_give_the_same_bits(local_rows):
    assert_same_bits(sweep.sweep("bodyfat", jobs=2, **GRID), local_rows)
    assert_same_bits(sweep.sweep("bodyfat", jobs=2, runs_per_task=3, **GRID), local_rows)


def test_every_study_sweeps():
    for study, grid in [
        ("univariate", {"epochs": [10, 20]}),
        ("batch", {"batch_sizes": [5, 10], "epochs": 5, "samples": 50}),
        ("multivariate", {"batch_sizes": [10], "epochs": 20, "samples": 40}),
    ]:
        runs = sweep.sweep(study, seeds=[0, 1], jobs=1, **grid)
        assert runs["error"].isna().all(), runs["error"]
        assert (runs["gap_to_least_squares"] > 0).all()
    alone = studies.multivariate(seed=1, batch_size=10, epochs=20, samples=40)
    assert runs.loc[1, "mse"] == alone.run.fit.mse
    assert runs.loc[1, "w_x2"] == alone.run.fit.weights[2]


def test_the_record_holds_the_exact_rows_and_a_resume_runs_nothing_twice(tmp_path, local_rows):
    first = sweep.sweep("bodyfat", jobs=1, output=tmp_path, **{**GRID, "seeds": range(2)})
    assert_same_bits(sweep.read_runs(tmp_path), first)
    assert_same_bits(sweep.read_runs(tmp_path / "runs.csv"), first)  # the export, to the bit

    plan = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID)
    assert sorted(spec.seed for spec in plan.todo) == [2, 2, 2, 2, 3, 3, 3, 3]
    resumed = plan.run()
    # the finished rows were read, not run again: their timings are the first sweep's
    again = resumed[resumed.seed < 2].reset_index(drop=True)
    pd.testing.assert_series_equal(again["seconds"], first["seconds"])
    assert_same_bits(resumed, local_rows)
    assert len(sweep.read_runs(tmp_path / "runs.csv")) == 16
    assert sweep.Sweep("bodyfat", jobs=1, output=tmp_path, **GRID).todo == []


def test_a_directory_of_another_sweep_is_refused_untouched(tmp_path):
    sweep.sweep("bodyfat", jobs=1, output=tmp_path, seeds=[0], epochs=5)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=r"other settings.*engine 'native' there, 'pure' now"):
        sweep.Sweep("bodyfat", engine="pure", output=tmp_path, seeds=[0], epochs=5)
    with pytest.raises(ValueError, match=r"other settings.*study 'bodyfat' there"):
        sweep.Sweep("univariate", output=tmp_path, seeds=[0], epochs=5)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_summary_and_figures(tmp_path, local_rows):
    table = sweep.summarize(local_rows)
    assert list(table.columns) == [*sweep._CONFIG, "runs", "failed", "median", "q1", "q3", "worst"]
    good = table[table.learning_rate == 0.05].set_index("batch_size")
    gaps = local_rows[(local_rows.learning_rate == 0.05) & (local_rows.batch_size == 10)]
    gaps = gaps["gap_to_least_squares"]
    assert good.loc[10, "median"] == gaps.median() and good.loc[10, "worst"] == gaps.max()
    assert table[table.learning_rate == 5.0]["failed"].tolist() == [4, 4]
    for path in sweep.plot(local_rows, tmp_path):
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def unused_port() -> int:
    # a port on 127.0.0.1 that nothing listens on: bound, then let go
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["bodyfat", "--seeds", "5-2"], "the range 5-2 goes down"),
        (["bodyfat", "--learning-rate", "0.1", "-0.1"], "must be a positive number, not -0.1"),
        (["bodyfat", "--batch-size", "253"], "batch size 253 is larger than the 252 rows"),
        (["univariate", "--batch-size", "2"], "univariate trains on the full batch"),
        (["bodyfat", "--samples", "9"], "bodyfat trains on its data's rows"),
        (["nope"], "invalid choice: 'nope'"),
        (["bodyfat", "--jobs", "2", "--ray", "local"], "not allowed with argument --jobs"),
        (["bodyfat", "--ray", "127.0.0.1:{port}"], "cannot reach a Ray cluster at '127.0.0.1:"),
    ],
)
def test_a_bad_grid_is_refused_before_any_work(tmp_path, arguments, message):
    output = tmp_path / "out"
    arguments = [a.format(port=unused_port()) for a in arguments]
    done = subprocess.run(
        [sys.executable, "-m", "agrad", "sweep", *arguments, "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr.splitlines()[-1]
    assert not output.exists()


def test_the_python_api_raises_the_right_types(tmp_path):
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        sweep.Sweep("nope")
    with pytest.raises(ValueError, match="seeds must be between 0"):
        sweep.Sweep("bodyfat", seeds=[-1])
    with pytest.raises(TypeError, match="seeds must be whole numbers"):
        sweep.Sweep("bodyfat", seeds=[1.5])
    with pytest.raises(ValueError, match="learning rates must be positive"):
        sweep.Sweep("bodyfat", learning_rates=[0.1, float("nan")])
    with pytest.raises(ValueError, match="give one of jobs, dask and ray"):
        sweep.Sweep("bodyfat", jobs=2, dask="127.0.0.1:1")
    with pytest.raises(ValueError, match="runs per task must be between 1"):
        sweep.Sweep("bodyfat", runs_per_task=0)
    with pytest.raises(TypeError, match="dask is an address"):
        sweep.Sweep("bodyfat", dask=8786)
    with pytest.raises(FileNotFoundError, match="no sweep in"):
        sweep.read_runs(tmp_path)
    with pytest.raises(ValueError, match="the range 5-2 goes down"):
        sweep.parse_seeds("5-2")
    assert sweep.parse_seeds("3-5") == [3, 4, 5]


def test_ctrl_c_keeps_every_finished_row_and_the_same_command_goes_on(tmp_path):
    command, process = start_sweep("0-11", epochs=600, jobs=1, output=tmp_path)
    try:
        wait_for_rows(tmp_path, 3, process)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "finished runs are in" in err
    kept = sweep.read_runs(tmp_path)
    assert 3 <= len(kept) < 12 and kept["error"].isna().all()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} already in" in done.stdout
    every = sweep.read_runs(tmp_path / "runs.csv")
    assert sorted(every.seed) == list(range(12))
    reference = sweep.sweep("bodyfat", seeds=range(12), epochs=600, jobs=1)
    assert_same_bits(every.sort_values("seed"), reference)


def start_sweep(seeds: str, epochs: int, jobs: int, output: Path):
    """`python -m agrad sweep bodyfat ...` started in a child process: the
    command (to run again) and the process."""
    command = [sys.executable, "-m", "agrad", "sweep", "bodyfat", "--seeds", seeds]
    command += ["--epochs", str(epochs), "--jobs", str(jobs), "--output", str(output)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    return command, process


def interruptible() -> None:
    """In the child, before it runs Python: SIGINT back to its default, which
    Python then turns into KeyboardInterrupt.  A suite started in the
    background by a shell without job control (`pytest &` in a script) has
    SIGINT ignored, and a child inherits that: its sweep would never see
    the test's ctrl-C, and end with 0."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_rows(directory: Path, count: int, process=None, timeout: float = 240) -> None:
    """Until the sweep filing into ``directory`` has ``count`` rows in its record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (directory / "runs.sqlite").exists() and len(sweep.read_runs(directory)) >= count:
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended first: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} rows in {directory} within {timeout} s")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the workers")
def test_a_killed_local_worker_costs_no_row(tmp_path):
    _command, process = start_sweep("0-15", epochs=1500, jobs=2, output=tmp_path)
    try:
        wait_for_rows(tmp_path, 2, process)
        workers = [
            pid
            for pid in children(process.pid)
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        _out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    rows = sweep.read_runs(tmp_path / "runs.csv")
    assert sorted(rows.seed) == list(range(16)) and rows["error"].isna().all()
    assert_same_bits(
        rows.sort_values("seed"), sweep.sweep("bodyfat", seeds=range(16), epochs=1500, jobs=1)
    )


def test_two_sweeps_on_one_output_never_file_a_run_twice(tmp_path):
    command, first = start_sweep("0-63", epochs=3000, jobs=1, output=tmp_path)
    try:
        wait_for_rows(tmp_path, 1, first)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        _out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 1
    assert "is in use by another sweep (pid" in second.stderr.splitlines()[-1]
    assert "Traceback" not in second.stderr
    rows = sweep.read_runs(tmp_path)
    assert sorted(rows.seed) == list(range(64))
    with open(tmp_path / "runs.csv", newline="") as stream:
        assert len(stream.read().splitlines()) == 1 + 64


def test_python_sweeps_on_one_output_take_turns(tmp_path):
    first = sweep.Sweep("bodyfat", jobs=1, output=tmp_path, seeds=[0], epochs=5)
    first.open()
    with pytest.raises(RuntimeError, match="in use by another sweep"):
        sweep.sweep("bodyfat", jobs=1, output=tmp_path, seeds=[0, 1], epochs=5)
    first.run()
    first.close()
    assert len(sweep.sweep("bodyfat", jobs=1, output=tmp_path, seeds=[0, 1], epochs=5)) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for the workers")
def test_a_killed_sweep_takes_its_workers_and_its_lock_with_it(tmp_path):
    command, process = start_sweep("0-31", epochs=3000, jobs=2, output=tmp_path)
    try:
        wait_for_rows(tmp_path, 1, process)
        workers = children(process.pid)
        assert workers
        process.kill()
        start = time.monotonic()
        process.communicate(timeout=60)  # its output pipe closes: no worker holds it
        assert time.monotonic() - start < 15
        deadline = time.monotonic() + 15
        while [w for w in workers if alive(w)] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [w for w in workers if alive(w)] == []
    finally:
        process.kill()
    kept = len(sweep.read_runs(tmp_path))
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{kept} already in" in done.stdout
    assert sorted(sweep.read_runs(tmp_path).seed) == list(range(32))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


@contextlib.contextmanager
def web_server():
    """A port on 127.0.0.1 that answers, as a web server: not a scheduler."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def refused_in_time(*arguments: str) -> str:
    """`python -m agrad sweep bodyfat ARGUMENTS`: refused within 30 s, one
    line and no traceback; returns that line."""
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agrad",
            "sweep",
            "bodyfat",
            "--seeds",
            "0",
            "--epochs",
            "5",
            "--output",
            tempfile.mkdtemp(),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 30, done.stderr
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    return done.stderr.splitlines()[-1]


@pytest.mark.parametrize("option", ["--dask", "--ray"])
def test_a_port_that_answers_but_is_not_a_scheduler_is_refused_in_time(option):
    pytest.importorskip("distributed" if option == "--dask" else "ray")
    with web_server() as port:
        line = refused_in_time(option, f"127.0.0.1:{port}")
    kind = "a Dask scheduler" if option == "--dask" else "a Ray cluster"
    assert f"127.0.0.1:{port}" in line and f"is not {kind}" in line


@pytest.mark.parametrize(
    "option, address, message",
    [
        (
            "--dask",
            "127.0.0.1",
            "cannot reach a Dask scheduler at '127.0.0.1' (port 8786, the default)",
        ),
        ("--dask", "nosuchhost.invalid:8786", "cannot resolve 'nosuchhost.invalid'"),
        ("--ray", "nosuchhost.invalid", "cannot resolve 'nosuchhost.invalid'"),
        ("--dask", "tls://127.0.0.1:8786", "tcp://HOST:PORT"),
        ("--ray", "ray://127.0.0.1:10001", "HOST:PORT of its head node"),
        ("--dask", "127.0.0.1:99999", "not a port"),
    ],
)
def test_a_wrong_address_is_refused_in_time(option, address, message):
    pytest.importorskip("distributed" if option == "--dask" else "ray")
    if address == "127.0.0.1":
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", 8786)) == 0:
                pytest.skip("something listens on Dask's default port here")
    assert message in refused_in_time(option, address)


# ------------------------------------------------------------------ Dask


@contextlib.contextmanager
def dask_cluster(workers: int = 2):
    """A scheduler and ``workers`` worker processes on 127.0.0.1, started with
    Dask's command-line tools and stopped at the end; yields the address and
    the worker processes."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from distributed import Client

    with tempfile.TemporaryDirectory() as directory:
        file = os.path.join(directory, "scheduler.json")
        dask = [sys.executable, "-m", "dask"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        processes = [
            subprocess.Popen(
                [
                    *dask,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    file,
                ],
                **quiet,
            )
        ]
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(file):
                assert time.monotonic() < deadline, "the Dask scheduler did not start"
                assert processes[0].poll() is None, "the Dask scheduler exited"
                time.sleep(0.1)
            for _ in range(workers):
                processes.append(
                    subprocess.Popen(
                        [
                            *dask,
                            "worker",
                            "--scheduler-file",
                            file,
                            "--host",
                            "127.0.0.1",
                            "--nthreads",
                            "1",
                            "--no-nanny",
                            "--no-dashboard",
                            "--death-timeout",
                            "60",
                        ],
                        **quiet,
                    )
                )
            with Client(scheduler_file=file, timeout="60s") as client:
                client.wait_for_workers(workers, timeout=120)
                address = client.scheduler.address
            assert address.startswith("tcp://127.0.0.1:")
            yield address, processes[1:]
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def test_dask_rows_are_the_local_rows_and_survive_a_killed_worker(tmp_path, local_rows):
    with dask_cluster() as (address, workers):
        assert_same_bits(sweep.sweep("bodyfat", dask=address, **GRID), local_rows)

        grid = {"seeds": range(16), "epochs": 1500}
        finished: list = []
        thread = threading.Thread(
            target=lambda: finished.append(
                sweep.sweep("bodyfat", dask=address, output=tmp_path, **grid)
            )
        )
        thread.start()
        try:
            wait_for_rows(tmp_path, 2)
            # the worker that filed the first row (--no-nanny: the process is the worker)
            pid = int(sweep.read_runs(tmp_path)["worker"][0].rsplit(":", 1)[1])
            (killed,) = [worker for worker in workers if worker.pid == pid]
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
        finally:
            thread.join(timeout=600)
        assert not thread.is_alive()
    (rows,) = finished
    assert rows["error"].isna().all()
    # the dead worker's rows end before it died; the other worker did the rest
    assert rows["worker"].nunique() == 2
    assert_same_bits(rows, sweep.sweep("bodyfat", jobs=1, **grid))


def test_dask_and_ray_refuse_each_others_and_a_workers_address(local_rows, local_resamples):
    with dask_cluster(workers=1) as (address, _workers):
        from distributed import Client

        with Client(address, timeout="30s") as client:
            (worker,) = client.scheduler_info()["workers"]
        assert "is a Dask worker, not a scheduler" in refused_in_time("--dask", worker)
        if importlib.util.find_spec("ray") is not None:
            assert "is not a Ray cluster" in refused_in_time(
                "--ray", address.removeprefix("tcp://")
            )
        # several runs a task, the data sent once: the same bits
        for runs_per_task in (1, 3):
            assert_same_bits(
                sweep.sweep("bodyfat", dask=address, runs_per_task=runs_per_task, **GRID),
                local_rows,
            )
        # and a bootstrap's resamples, one a task
        assert_same_resamples(
            sweep.bootstrap(dask=address, runs_per_task=1, **RESAMPLES).rows,
            local_resamples.rows,
        )


def test_an_unreachable_dask_scheduler_is_a_connection_error():
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    with pytest.raises(ConnectionError, match="cannot reach a Dask scheduler"):
        sweep.Sweep("bodyfat", dask=f"tcp://127.0.0.1:{unused_port()}").connect()


# ------------------------------------------------------------------- Ray


@contextlib.contextmanager
def ray_cluster():
    """A local Ray instance of two CPUs, stopped at the end; yields the
    address of its GCS on 127.0.0.1 (Ray's local instance listens on every
    interface and names itself by the machine's address; the tests connect
    through 127.0.0.1).  A sweep given ``ray="local"`` or that address joins
    it: it is started here so that a test can outlive the sweep."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield "127.0.0.1:" + ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    finally:
        ray.shutdown()


def test_ray_rows_are_the_local_rows(local_rows, local_resamples):
    with ray_cluster() as address:
        assert_same_bits(sweep.sweep("bodyfat", ray="local", **GRID), local_rows)
        # several runs a task, the data in the object store once; by its address
        assert_same_bits(sweep.sweep("bodyfat", ray=address, runs_per_task=5, **GRID), local_rows)
        assert_same_resamples(
            sweep.bootstrap(ray=address, runs_per_task=2, **RESAMPLES).rows, local_resamples.rows
        )


def test_the_body_fat_commands_closing_line_places_the_run_among_seeds(capsys):
    from agrad.__main__ import main

    assert main(["bodyfat", "--seed", "9", "--epochs", "200", "--seed-spread", "4"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    gaps = sorted(100 * studies.bodyfat(seed=s, epochs=200).gap for s in range(4))
    own = 100 * studies.bodyfat(seed=9, epochs=200).gap
    below = sum(g < own for g in gaps)
    place = {4: "higher than all 4 of them", 0: "lower than all 4 of them"}.get(
        below, f"higher than {below} of the 4"
    )
    assert line.startswith(
        f"With seeds 0 to 3 and the same settings it lands {gaps[0]:.1f}% to {gaps[-1]:.1f}% "
        f"above (median {(gaps[1] + gaps[2]) / 2:.1f}%): seed 9's {own:.1f}% is {place}."
    )


def test_ray_retries_the_run_of_a_killed_worker(tmp_path):
    with ray_cluster():
        grid = {"seeds": range(16), "epochs": 1500}
        finished: list = []
        thread = threading.Thread(
            target=lambda: finished.append(
                sweep.sweep("bodyfat", ray="local", output=tmp_path, **grid)
            )
        )
        thread.start()
        try:
            wait_for_rows(tmp_path, 2)
            # a worker that has finished a run is busy with the next one
            pid = int(sweep.read_runs(tmp_path)["worker"][0].rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
        finally:
            thread.join(timeout=600)
        assert not thread.is_alive()
    (rows,) = finished
    assert rows["error"].isna().all()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker is gone: every row came from the others or before
    assert_same_bits(rows, sweep.sweep("bodyfat", jobs=1, **grid))
