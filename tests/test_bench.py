"""The benchmark suite runs end to end (--quick) and writes what it promises.

No assertion is made on times: the machine is shared and noisy.  What is
checked is what cannot be noise: the outputs exist and say what they should,
and the engines agree bit for bit.
"""

import pytest

import agrad
import agrad.pure
from agrad import bench


def test_quick_suite_writes_results_and_chart(tmp_path, capsys):
    assert bench.main(["--quick", "--output", str(tmp_path)]) == 0
    results = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in (
        "## Targets (issue 4)",
        "## Time per epoch",
        "## Operations",
        "## Memory",
        "## Where the native time goes",
    ):
        assert heading in results
    for workload in bench.WORKLOADS:
        assert workload.title in results
    assert "DIFFER" not in results
    png = (tmp_path / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    printed = capsys.readouterr().out
    assert "pure/native" in printed and "backward per node" in printed


def test_output_must_be_a_directory(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(NotADirectoryError):
        bench.main(["--quick", "--output", str(not_a_dir)])


def test_unknown_option_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        bench.main(["--no-such-option"])
    assert exc.value.code == 2


@pytest.mark.parametrize("workload", bench.WORKLOADS, ids=lambda w: w.key)
def test_engines_train_identically(workload):
    """The same model code gives the same losses on native, fused and pure."""
    data = workload.data()
    runs = [
        bench.Run(workload, e, data)
        for e in (bench.NATIVE, bench.PURE, bench.FUSED)
        if workload.fused or not e.fused
    ]
    for run in runs:
        run.epochs(3)
    for run in runs[1:]:
        assert bench.same_losses(runs[0], run)
    assert all(isinstance(p, agrad.pure.Value) for p in runs[1].params)


def test_same_losses_sees_one_bit():
    workload = bench.WORKLOADS[0]
    a = bench.Run(workload, bench.NATIVE, workload.data())
    b = bench.Run(workload, bench.NATIVE, workload.data())
    a.epochs(2)
    b.epochs(2)
    assert bench.same_losses(a, b)
    b.losses[1] = b.losses[1] + b.losses[1] * 2**-52
    assert not bench.same_losses(a, b)


def test_torch_engine_when_installed():
    torch = pytest.importorskip("torch")
    workload = bench.WORKLOADS[0]
    engine = bench.torch_engine()
    assert engine is not None
    run = bench.Run(workload, engine, workload.data())
    before = [p.item() for p in run.params]
    run.epochs(2)
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float64 for p in run.params)
    assert [p.item() for p in run.params] != before  # it trained
