"""agrad.optim: SGD and Adam against PyTorch's optimizers on the same
gradients, plain SGD against micrograd's update to the bit, and the errors.

PyTorch is large and optional: its tests run where torch is installed (.ci/run
installs it for this file alone) and are skipped elsewhere, unless
AGRAD_REQUIRE_TORCH is set, when a missing torch fails them.
"""

import math
import os
import random

import numpy as np
import pytest
from engines import exact
from hypothesis import given, settings
from hypothesis import strategies as st

import agrad
import agrad.pure
from agrad import optim


def _torch():
    if os.environ.get("AGRAD_REQUIRE_TORCH"):
        import torch

        return torch
    return pytest.importorskip("torch")


def _gradient_sequence(n_params, steps, seed):
    rng = random.Random(seed)
    return [[rng.gauss(0, 1) for _ in range(n_params)] for _ in range(steps)]


# PyTorch writes the same updates with other groupings (Adam's moments with
# lerp, for one), so results agree to rounding, not to the bit.
RELATIVE = 1e-12


def _run_both(make_ours, make_theirs, steps=25, n_params=6, seed=0, lr_schedule=None):
    torch = _torch()
    start = [random.Random(seed + 1).uniform(-1, 1) for _ in range(n_params)]
    ours = [agrad.Value(x) for x in start]
    theirs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in start]
    opt, topt = make_ours(ours), make_theirs(torch, theirs)
    for k, grads in enumerate(_gradient_sequence(n_params, steps, seed)):
        if lr_schedule:
            opt.lr = lr_schedule(k)
            for group in topt.param_groups:
                group["lr"] = lr_schedule(k)
        for p, t, g in zip(ours, theirs, grads, strict=True):
            p.grad = g
            t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        topt.step()
        for p, t in zip(ours, theirs, strict=True):
            assert p.data == pytest.approx(t.item(), rel=RELATIVE, abs=1e-15)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "dampening": 0.1},
        {"momentum": 0.8, "nesterov": True},
        {"momentum": 0.5, "weight_decay": 0.01},
        {"weight_decay": 0.1},
    ],
)
def test_sgd_against_pytorch(options):
    _run_both(
        lambda ps: optim.SGD(ps, lr=0.05, **options),
        lambda torch, ts: torch.optim.SGD(ts, lr=0.05, **options),
        lr_schedule=lambda k: 0.1 - 0.003 * k,
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"betas": (0.8, 0.99)}, {"eps": 1e-3}, {"weight_decay": 0.05}],
)
def test_adam_against_pytorch(options):
    _run_both(
        lambda ps: optim.Adam(ps, lr=0.01, **options),
        lambda torch, ts: torch.optim.Adam(ts, lr=0.01, **options),
    )


def mixed(x):
    """Every other parameter on the other engine: the optimizer's Python path."""
    mixed.flip = not getattr(mixed, "flip", False)
    return (agrad.Value if mixed.flip else agrad.pure.Value)(x)


@pytest.mark.parametrize(
    "value_class", [agrad.Value, agrad.pure.Value, mixed], ids=["native", "pure", "mixed"]
)
def test_plain_sgd_is_micrograds_update_to_the_bit(value_class):
    rng = random.Random(4)
    params = [value_class(rng.uniform(-1, 1)) for _ in range(5)]
    params.append(value_class(3))  # an int's data: Python's 3 - lr * g
    copies = [p.data for p in params]
    opt = optim.SGD(params, lr=0.37)
    for p in params:
        p.grad = rng.gauss(0, 1)
    expected = [x - 0.37 * p.grad for x, p in zip(copies, params, strict=True)]
    opt.step()
    assert [exact(p.data) for p in params] == [exact(x) for x in expected]
    opt.zero_grad()
    assert all(p.grad == 0.0 for p in params)


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.5, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.1),
    ],
    ids=["sgd-momentum", "sgd-nesterov", "adam"],
)
def test_both_engines_step_to_the_same_bits(make):
    """The compiled engine's parameters move through _core._Parameters in one
    call, the pure engine's through Python: the same steps, bit for bit."""
    rng = random.Random(7)
    start = [rng.uniform(-1, 1) for _ in range(6)] + [2]
    runs = []
    for value_class in (agrad.Value, agrad.pure.Value):
        params = [value_class(x) for x in start]
        opt = make(params)
        grads = random.Random(8)
        for _ in range(4):
            for p in params:
                p.grad = grads.gauss(0, 1)
            opt.step()
        runs.append([exact(p.data) for p in params])
    assert runs[0] == runs[1]


def test_the_parameters_are_fixed_when_the_optimizer_is_made():
    """The step's state and the compiled engine's bulk transfer are made for
    the parameters given: a list changed afterwards must not be moved
    (nor the wrong Value), so the optimizer keeps its own tuple."""
    given = [agrad.Value(1.0), agrad.Value(2.0)]
    opt = optim.SGD(given, lr=0.5)
    given.append(agrad.Value(3.0))
    given[0] = agrad.Value(9.0)
    with pytest.raises(AttributeError):
        opt.params = given
    with pytest.raises(AttributeError):
        opt.params.append(agrad.Value(4.0))  # type: ignore[attr-defined]
    first, second = opt.params
    first.grad, second.grad = 1.0, 1.0
    opt.step()
    assert (first.data, second.data, given[0].data, given[2].data) == (0.5, 1.5, 9.0, 3.0)


def test_the_bulk_transfer_refuses_what_it_cannot_read():
    params = [agrad.Value(1.0), agrad.Value(2.0)]
    bulk = agrad._core._Parameters(params)
    with pytest.raises(TypeError, match="float64 buffer"):
        bulk.grads(np.zeros(2, dtype=np.float32))
    with pytest.raises(TypeError, match="float64 buffer"):
        bulk.assign(np.zeros(4)[::2])
    with pytest.raises(ValueError, match="3 numbers for 2 parameters"):
        bulk.data(np.zeros(3))
    with pytest.raises(TypeError, match=r"must be agrad\.Values"):
        agrad._core._Parameters([agrad.Value(1.0), 2.0])
    assert [p.data for p in params] == [1.0, 2.0]


def test_adam_takes_lr_sized_first_steps():
    # Adam's first step is lr * g / (|g| + eps): about lr, against the gradient
    params = [agrad.Value(1.0), agrad.Value(-2.0)]
    params[0].grad, params[1].grad = 3.0, -0.5
    optim.Adam(params, lr=0.1).step()
    assert params[0].data == pytest.approx(0.9) and params[1].data == pytest.approx(-1.9)


def test_a_diverging_step_raises_and_changes_nothing():
    params = [agrad.Value(1.0), agrad.Value(1e308)]
    params[0].grad, params[1].grad = 1.0, -1e308
    opt = optim.SGD(params, lr=10.0, momentum=0.9)
    with pytest.raises(OverflowError, match="diverges"):
        opt.step()
    assert [p.data for p in params] == [1.0, 1e308]
    assert opt._buffers is None  # no half-taken step in the state either
    adam = optim.Adam([agrad.Value(1.0)])
    adam.params[0].grad = math.inf
    with pytest.raises(OverflowError):
        adam.step()
    assert adam.t == 0


def _plain_sgd_step(value_class, data, grads, lr):
    """Plain SGD on one engine: each parameter's new data (exact), or the
    error's type and text, with the data then (nothing may have moved)."""
    params = [value_class(x) for x in data]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    try:
        optim.SGD(params, lr=lr).step()
        outcome = None
    except OverflowError as e:
        outcome = str(e)
    return outcome, [exact(p.data) for p in params]


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(numbers, numbers), min_size=1, max_size=8),
    st.one_of(st.floats(0, 1e300), st.sampled_from([0.0, -0.0, 0.1, 1e308])),
)
def test_plain_sgd_steps_as_the_arrays_do(pairs, lr):
    """The compiled engine's plain SGD step is one call (_Parameters.descend);
    the pure engine's goes through NumPy arrays: the same new data, bit for
    bit (ints, signed zeros, subnormals), and where a result is not finite
    the same OverflowError, naming the same parameter, with nothing moved."""
    data = [d for d, _ in pairs]
    grads = [float(g) for _, g in pairs]
    native = _plain_sgd_step(agrad.Value, data, grads, lr)
    pure = _plain_sgd_step(agrad.pure.Value, data, grads, lr)
    assert native == pure
    if native[0] is not None:  # nothing moved
        assert native[1] == [exact(x) for x in data]


def test_a_diverging_plain_sgd_step_raises_and_changes_nothing():
    params = [agrad.Value(1.0), agrad.Value(1e308), agrad.Value(2.0)]
    params[0].grad, params[1].grad, params[2].grad = 1.0, -1e308, math.nan
    with pytest.raises(OverflowError, match=r"makes Value\(: 1e\+308\) inf: the run diverges"):
        optim.SGD(params, lr=10.0).step()
    assert [p.data for p in params] == [1.0, 1e308, 2.0]
    params[1].grad = 0.0
    with pytest.raises(OverflowError, match=r"makes Value\(: 2.0\) nan"):
        optim.SGD(params, lr=10.0).step()
    assert [p.data for p in params] == [1.0, 1e308, 2.0]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda ps: optim.SGD([]), ValueError, "no parameters"),
        (lambda ps: optim.SGD(ps[0]), TypeError, "params must be a list"),
        (lambda ps: optim.SGD([1.0]), TypeError, "must be a Value"),
        (lambda ps: optim.SGD([ps[0], ps[0]]), ValueError, "twice"),
        (lambda ps: optim.SGD(ps, lr=-1), ValueError, "lr must be"),
        (lambda ps: optim.SGD(ps, lr="0.1"), TypeError, "lr must be a number"),
        (lambda ps: optim.SGD(ps, lr=math.nan), ValueError, "lr must be"),
        (lambda ps: optim.SGD(ps, momentum=True), TypeError, "momentum must be a number"),
        (lambda ps: optim.SGD(ps, nesterov=True), ValueError, "nesterov=True needs"),
        (lambda ps: optim.SGD(ps, nesterov=1), TypeError, "nesterov must be"),
        (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in"),
        (lambda ps: optim.Adam(ps, betas=0.9), TypeError, "betas must be a pair"),
        (lambda ps: optim.Adam(ps, eps=-1e-8), ValueError, "eps must be"),
    ],
)
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make([agrad.Value(1.0), agrad.Value(2.0)])


def test_lr_set_between_steps_is_checked():
    opt = optim.Adam([agrad.Value(1.0)])
    with pytest.raises(ValueError, match="lr must be"):
        opt.lr = -0.5
    assert repr(opt).startswith("Adam(1 parameters, lr=0.001")
