"""agrad.grad, agrad.hessian, agrad.hvp: second derivatives on both engines.

Each operation's second derivative is checked against a central finite
difference of the gradient and, where torch is installed, against
``torch.autograd.functional.hessian`` in float64 (CI installs torch in its
step 1b and sets AGRAD_REQUIRE_TORCH, when a missing torch fails them, as
for tests/test_optim.py).  Exactness: ``grad`` equals ``backward()`` bit for
bit, and both engines agree bit for bit on gradients and Hessians.
"""

import builtins
import math
import os
import random

import numpy as np
import pytest
from engines import ENGINES, exact
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import agrad
import agrad.pure
from agrad.datasets import load_body_fat, to_xy
from agrad.linreg import LinReg, standardize


def _torch():
    if os.environ.get("AGRAD_REQUIRE_TORCH"):
        import torch

        return torch
    return pytest.importorskip("torch")


class Ops:
    """The operations of an expression, on agrad's Values (either engine)."""

    def __init__(self, V):
        self.V = V

    exp = staticmethod(lambda v: v.exp())
    log = staticmethod(lambda v: v.log())
    tanh = staticmethod(lambda v: v.tanh())
    relu = staticmethod(lambda v: v.relu())
    sigmoid = staticmethod(lambda v: v.sigmoid())

    def sum(self, values):  # agrad.sum is the compiled engine's; the pure one chains
        return agrad.sum(values) if self.V is agrad.Value else builtins.sum(values)

    def dot(self, w, x):
        if self.V is agrad.Value:
            return agrad.dot(w, x)
        return builtins.sum(a * b for a, b in zip(w, x, strict=True))


class TorchOps:
    def __init__(self, torch):
        self.exp, self.log, self.tanh = torch.exp, torch.log, torch.tanh
        self.relu, self.sigmoid = torch.relu, torch.sigmoid

    def sum(self, values):
        return builtins.sum(values)

    def dot(self, w, x):
        return builtins.sum(a * b for a, b in zip(w, x, strict=True))


# Each operation inside an expression of two inputs whose Hessian it shapes.
EXPRESSIONS = {
    "add": lambda o, x, y: (x + y) * (x + 2.0) + (3.0 + y) * y,
    "mul": lambda o, x, y: x * y * x + 2.5 * y * y,
    "sub": lambda o, x, y: (x - y) * (y - 3.0) * (2.0 - x),
    "div": lambda o, x, y: x / y + 1.0 / x + (x * y) / 3.0,
    "neg": lambda o, x, y: -(x * y) * -x,
    "pow2": lambda o, x, y: (x * y) ** 2,
    "pow3": lambda o, x, y: (x + y) ** 3,
    "pow-1": lambda o, x, y: (x * y) ** -1,
    "pow-2": lambda o, x, y: (x + y) ** -2,
    "pow0.5": lambda o, x, y: (x * y) ** 0.5,
    "pow2.5": lambda o, x, y: (x + y) ** 2.5,
    "pow1": lambda o, x, y: (x * y) ** 1 * x,
    "exp": lambda o, x, y: o.exp(x * y),
    "log": lambda o, x, y: o.log(x * y + x),
    "tanh": lambda o, x, y: o.tanh(x * y),
    "relu": lambda o, x, y: o.relu(x * y) * x + o.relu(x - y - 5.0) * y,
    "sigmoid": lambda o, x, y: o.sigmoid(x * y - 1.0),
    "sum": lambda o, x, y: o.sum([x * y, x, y * y, x * x * y]) * x,
    "dot": lambda o, x, y: o.dot([x, y, x * y], [y, x * x, 2.0]),
}
POINT = (0.7, 1.3)


def agrad_hessian(V, name, point=POINT):
    x, y = V(point[0]), V(point[1])
    return agrad.hessian(EXPRESSIONS[name](Ops(V), x, y), [x, y])


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_each_operation_against_a_finite_difference(name):
    h = 1e-5
    fd = np.zeros((2, 2))
    for i in range(2):
        up, down = list(POINT), list(POINT)
        up[i] += h
        down[i] -= h
        gradients = []
        for p in (up, down):
            x, y = agrad.Value(p[0]), agrad.Value(p[1])
            gradients.append(agrad.grad(EXPRESSIONS[name](Ops(agrad.Value), x, y), [x, y]))
        fd[i] = (np.array(gradients[0]) - np.array(gradients[1])) / (2 * h)
    np.testing.assert_allclose(agrad_hessian(agrad.Value, name), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_each_operation_against_pytorch(name):
    torch = _torch()

    def f(t):
        return EXPRESSIONS[name](TorchOps(torch), t[0], t[1])

    theirs = torch.autograd.functional.hessian(f, torch.tensor(POINT, dtype=torch.float64))
    for V in ENGINES:
        np.testing.assert_allclose(agrad_hessian(V, name), theirs.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", EXPRESSIONS)
def test_both_engines_give_the_same_bits(name):
    native, pure = (agrad_hessian(V, name) for V in ENGINES)
    assert [exact(float(h)) for h in native.flat] == [exact(float(h)) for h in pure.flat]


@pytest.mark.parametrize("V", ENGINES, ids=["native", "pure"])
@pytest.mark.parametrize("name", EXPRESSIONS)
def test_the_gradient_as_values_is_backwards_gradient(V, name):
    x, y = V(POINT[0]), V(POINT[1])
    out = EXPRESSIONS[name](Ops(V), x, y)
    as_values = [g.data for g in agrad.grad(out, [x, y], create_graph=True)]
    out.backward()
    if name == "log":
        # Value has no division: 1.0 / x is x ** -1, which may differ in the
        # last bit (higher.py's docstring); here it does not, at this point
        assert as_values == pytest.approx([x.grad, y.grad], rel=4e-16, abs=0)
    else:
        assert list(map(exact, as_values)) == [exact(x.grad), exact(y.grad)]


def test_log_differs_from_the_division_by_at_most_an_ulp():
    # the x where pow(x, -1) and 1.0 / x differ: one in a thousand or so
    rng = random.Random(3)
    differ = 0
    for _ in range(3000):
        a = rng.uniform(0.5, 1.0) * 2.0 ** rng.randint(-100, 100)
        x = agrad.Value(a)
        (g,) = agrad.grad(x.log(), [x], create_graph=True)
        (exact_g,) = agrad.grad(x.log(), [x])
        assert exact_g == 1.0 / a
        assert abs(g.data - exact_g) <= math.ulp(exact_g)
        differ += g.data != exact_g
    assert differ < 30


def test_relu_has_second_derivative_zero():
    for V in ENGINES:
        x = V(2.0)
        assert agrad.hessian(x.relu(), [x]).tolist() == [[0.0]]
        assert agrad.hessian((x * x).relu(), [x]).tolist() == [[2.0]]


# -- random graphs: grad is backward's, and the engines agree


def build(program, V, xs):
    """Runs a program of operations on leaves xs; fused sums and dots on the
    compiled engine, the builtin chain on the pure one (the same bits)."""
    ops = Ops(V)
    regs = list(xs)
    for step in program:
        kind, i, j, c = step
        a, b = regs[i % len(regs)], regs[j % len(regs)]
        if kind == "+":
            r = a + b
        elif kind == "-":
            r = a - b
        elif kind == "*":
            r = a * b
        elif kind == "/":
            r = a / b
        elif kind == "k":
            r = a * c
        elif kind == "**":
            r = a**c
        elif kind in ("exp", "log", "tanh", "relu", "sigmoid"):
            r = getattr(a, kind)()
        elif kind == "sum":
            r = ops.sum([a, b, c, a * b])
        else:
            r = ops.dot([a, b, c], [b, 2.0, a])
        regs.append(r)
    return regs[-1]


operation = st.tuples(
    st.sampled_from(["+", "-", "*", "/", "k", "**", "exp", "log", "tanh", "relu", "sigmoid"] * 2)
    | st.sampled_from(["sum", "dot"]),
    st.integers(0, 20),
    st.integers(0, 20),
    st.sampled_from([2, 3, -1, 0.5, -0.5, 1.5, 2.0, -2.0, 0.0]),
)
leaves = st.lists(st.floats(-3.0, 3.0, allow_subnormal=False), min_size=1, max_size=3)


def _build_or_none(program, V, numbers):
    xs = [V(n) for n in numbers]
    try:
        out = build(program, V, xs)
        if not math.isfinite(float(out.data)) or abs(out.data) > 1e100:
            return None
        return xs, out
    except (ArithmeticError, ValueError):
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=12), leaves)
def test_random_graphs_grad_is_backward_and_engines_agree(program, numbers):
    built = [_build_or_none(program, V, numbers) for V in ENGINES]
    assume(all(b is not None for b in built))
    results = []
    for xs, out in built:
        try:
            h = agrad.hessian(out, xs)
            created = [g.data for g in agrad.grad(out, xs, create_graph=True)]
        except (ArithmeticError, ValueError) as error:
            results.append(("raised", type(error)))
            continue
        floats = agrad.grad(out, xs)
        out.backward()
        assert list(map(exact, floats)) == [exact(x.grad) for x in xs]
        results.append(
            (list(map(exact, floats)), list(map(exact, created)), [exact(float(v)) for v in h.flat])
        )
    assert results[0] == results[1]


def test_interior_inputs_get_their_backward_gradient():
    for V in ENGINES:
        x = V(0.3)
        m = (x * 2.0).tanh()
        out = m * m + m.exp() * x
        got = agrad.grad(out, [m, x])
        out.backward()
        assert list(map(exact, got)) == [exact(m.grad), exact(x.grad)]


def test_grads_are_left_alone():
    for V in ENGINES:
        x, y = V(1.5), V(-0.5)
        out = (x * y).tanh() + x**3
        out.backward()
        before = [x.grad, y.grad, out.grad]
        agrad.grad(out, [x, y])
        agrad.grad(out, [x, y], create_graph=True)
        agrad.hessian(out, [x, y])
        agrad.hvp(out, [x, y], [1.0, 2.0])
        assert [x.grad, y.grad, out.grad] == before


def test_unused_inputs_and_the_output_itself():
    for V in ENGINES:
        x, y, z = V(2.0), V(3.0), V(4.0)
        out = x * x
        assert agrad.grad(out, [x, z, out]) == [4.0, 0.0, 1.0]
        assert agrad.hessian(out, [x, z]).tolist() == [[2.0, 0.0], [0.0, 0.0]]
        assert agrad.grad(y, [y]) == [1.0]


def test_hvp_is_the_hessian_times_the_vector():
    rng = np.random.default_rng(0)
    numbers, v = rng.normal(size=4).tolist(), rng.normal(size=4)
    results = []
    for V in ENGINES:
        xs = [V(n) for n in numbers]
        ops = Ops(V)
        out = ops.sum([(xs[i] * xs[i + 1]).tanh() for i in range(3)]) + xs[0].exp() * xs[3]
        got = agrad.hvp(out, xs, v)
        np.testing.assert_allclose(got, agrad.hessian(out, xs) @ v, rtol=1e-12, atol=1e-15)
        results.append(list(map(exact, got)))
    assert results[0] == results[1]


def test_the_body_fat_mse_hessian_is_the_closed_form():
    X, ys, names = to_xy(load_body_fat())
    X_norm, _, _ = standardize(X)
    n = len(ys)
    A = np.hstack([np.asarray(X_norm), np.ones((n, 1))])  # parameters: weights, then b
    closed_form = 2 / n * A.T @ A
    hessians = []
    for V in ENGINES:
        random.seed(0)
        model = LinReg(n_inputs=len(names), value_class=V)
        h = agrad.hessian(model.loss(X_norm, ys), model.parameters())
        np.testing.assert_allclose(h, closed_form, rtol=1e-12, atol=1e-12 * abs(closed_form).max())
        hessians.append([exact(float(v)) for v in h.flat])
    assert hessians[0] == hessians[1]


def test_a_graph_of_a_hundred_thousand_nodes():
    for V in ENGINES:
        x = V(0.5)
        v = x
        for _ in range(50_000):
            v = v * 0.9999 + x * 1e-5
        (g,) = agrad.grad(v, [x], create_graph=True)
        assert agrad.grad(g, [x]) == [0.0]  # linear in x
        (h,) = agrad.hessian(v * x, [x])
        assert h[0] == pytest.approx(2 * g.data, rel=1e-12)


# -- agrad.compile


def test_compiled_gradients_replay_exactly():
    w = [agrad.Value(0.5), agrad.Value(-1.5)]

    def loss(xs):
        return agrad.sum([(w[0] * x + w[1]).relu() ** 2 + (w[0] * x).tanh() for x in xs])

    f = agrad.compile(lambda xs: agrad.grad(loss(xs), w, create_graph=True))
    for xs in ([1.0, 2.0, 3.0], [4.0, 5.0, -1.0], [-3.0, 0.1, 2.0], [1.0, 2.0, 3.0]):
        compiled = [g.data for g in f(xs)]
        eager = agrad.grad(loss(xs), w)
        assert list(map(exact, compiled)) == list(map(exact, eager))
    assert f.recordings >= 2  # relu's slope is a guard: its pattern flipped


def test_a_compiled_hessian():
    w = [agrad.Value(0.3), agrad.Value(0.7)]
    f = agrad.compile(
        lambda xs: list(
            agrad.hessian(
                agrad.sum([(w[0] * x * w[1]).tanh() for x in xs]), w, create_graph=True
            ).flat
        )
    )
    for xs in ([1.0, 2.0], [0.5, -1.5]):
        got = [h.data for h in f(xs)]
        eager = agrad.hessian(agrad.sum([(w[0] * x * w[1]).tanh() for x in xs]), w)
        assert list(map(exact, got)) == [exact(float(h)) for h in eager.flat]


def test_numbers_inside_a_compiled_function_are_refused_clearly():
    w = agrad.Value(0.3)
    for fn in (
        lambda xs: agrad.hessian(w * xs[0] * w, [w]),
        lambda xs: agrad.grad(w * xs[0] * w, [w]),
        lambda xs: agrad.hvp(w * xs[0] * w, [w], [1.0]),
    ):
        with pytest.raises(agrad.RecordingError, match="create_graph=True"):
            agrad.compile(fn)([1.0])


# -- errors


def test_bad_arguments():
    x, y = agrad.Value(1.0), agrad.Value(2.0)
    out = x * y
    with pytest.raises(TypeError, match="output must be an agrad Value"):
        agrad.grad(1.0, [x])
    with pytest.raises(TypeError, match="list of Values"):
        agrad.grad(out, x)
    with pytest.raises(TypeError, match="output's engine"):
        agrad.grad(out, [agrad.pure.Value(1.0)])
    with pytest.raises(TypeError, match="output's engine"):
        agrad.hessian(out, [x, 2.0])
    with pytest.raises(TypeError, match="create_graph must be a bool"):
        agrad.grad(out, [x], create_graph=1)
    with pytest.raises(ValueError, match="1 entries for 2 inputs"):
        agrad.hvp(out, [x, y], [1.0])
    with pytest.raises(ValueError, match="finite"):
        agrad.hvp(out, [x, y], [1.0, math.nan])
    with pytest.raises(TypeError, match="real numbers"):
        agrad.hvp(out, [x, y], [1.0, "a"])
    with pytest.raises(TypeError, match="real numbers"):
        agrad.hvp(out, [x, y], [1.0, y])
    with pytest.raises(TypeError, match="sequence of numbers"):
        agrad.hvp(out, [x, y], 1.0)


def test_a_node_made_by_hand_has_no_local_gradient():
    for V in ENGINES:
        a, b = V(1.0), V(2.0)
        hand = V(3.0, (a, b), "+")  # named like an addition, made by hand
        out = hand * a
        got = agrad.grad(out, [a, b])
        out.backward()
        assert got == [a.grad, b.grad] == [3.0, 0.0]
        with pytest.raises(ValueError, match="made by hand"):
            agrad.grad(out, [a, b], create_graph=True)


def test_a_pure_node_with_its_own_backward_is_refused():
    a = agrad.pure.Value(2.0)
    out = agrad.pure.Value(4.0, (a,), "square")

    def _backward(out):
        a.grad += 2 * a.data * out.grad

    out._backward = _backward
    with pytest.raises(ValueError, match="_backward of its own"):
        agrad.grad(out, [a])


def test_nan_gradients_have_backwards_bits():
    # two NaN operands give the left one's NaN (pure._fadd, _fmul): grad keeps the rule
    results = []
    for V in ENGINES:
        x, y = V(math.inf), V(-math.inf)
        out = (x + y) * (y + x) + (x * 0.0).tanh() * (y - x)
        got = agrad.grad(out, [x, y])
        created = [g.data for g in agrad.grad(out, [x, y], create_graph=True)]
        out.backward()
        assert list(map(exact, got)) == [exact(x.grad), exact(y.grad)]
        results.append((list(map(exact, got)), list(map(exact, created))))
    assert results[0] == results[1]


# -- the compiled engine's sweeps (C++) against agrad.pure's (the Python specification)

# Numbers of every kind the sweeps meet: ints, floats, signed zeros, NaNs of
# both signs, infinities.
special = st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 0, 1, -2])
number = st.floats(-3.0, 3.0, allow_subnormal=False) | st.integers(-3, 3) | special
constant = st.sampled_from([2, 3, -1, 0, 0.5, -0.5, 1.5, 2.0, -2.0, 0.0, math.nan, math.inf])
# Each operation on registers a and b and a constant c; ops: sum and dot.
OPERATIONS = {
    "+": lambda ops, a, b, c: a + b,
    "-": lambda ops, a, b, c: a - b,
    "*": lambda ops, a, b, c: a * b,
    "/": lambda ops, a, b, c: a / b,
    "k": lambda ops, a, b, c: c * a,
    "k-": lambda ops, a, b, c: c - a,
    "k/": lambda ops, a, b, c: c / a,
    "neg": lambda ops, a, b, c: -a,
    "**": lambda ops, a, b, c: a**c,
    "exp": lambda ops, a, b, c: a.exp(),
    "log": lambda ops, a, b, c: a.log(),
    "tanh": lambda ops, a, b, c: a.tanh(),
    "relu": lambda ops, a, b, c: a.relu(),
    "sigmoid": lambda ops, a, b, c: a.sigmoid(),
    "sum": lambda ops, a, b, c: ops.sum([a, b, a * b]),
    "sum-k": lambda ops, a, b, c: ops.sum([c, a, 1.5, b]),  # constants ahead of the first Value
    "dot": lambda ops, a, b, c: ops.dot([a, b, a], [b, a, a]),
    "dot-k": lambda ops, a, b, c: ops.dot([a, c, b], [2.0, b, a]),  # constants on either side
}
every_operation = st.tuples(
    st.sampled_from(sorted(OPERATIONS)), st.integers(0, 30), st.integers(0, 30), constant
)


def build_registers(program, V, xs):
    """Every node a program makes, in order: operations on the leaves xs and on
    earlier results (so operands are shared), constants on either side, and
    fused sums and dots (the builtin chain on the pure engine)."""
    ops = Ops(V)
    regs = list(xs)
    for kind, i, j, c in program:
        regs.append(OPERATIONS[kind](ops, regs[i % len(regs)], regs[j % len(regs)], c))
    return regs


def bits(x):
    """Nested results as exact bits: a Value by its data."""
    if isinstance(x, (list, tuple)):
        return [bits(y) for y in x]
    if isinstance(x, (agrad.Value, agrad.pure.Value)):
        return exact(x.data)
    return exact(x)


def everything_grad_gives(out, inputs):
    """Each of agrad.grad's results, first and second order, as bits, or the
    type of what it raised."""
    steps = (
        lambda: agrad.grad(out, inputs),
        lambda: agrad.grad(out, inputs, create_graph=True),
        lambda: [agrad.grad(g, inputs) for g in agrad.grad(out, inputs, create_graph=True)],
        lambda: [
            agrad.grad(g, inputs, create_graph=True)
            for g in agrad.grad(out, inputs, create_graph=True)
        ],
    )
    results = []
    for step in steps:
        try:
            results.append(bits(step()))
        except (ArithmeticError, ValueError) as error:
            results.append(("raised", type(error)))
    return results


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(every_operation, min_size=1, max_size=14),
    st.lists(number, min_size=1, max_size=3),
    st.lists(st.integers(0, 40), max_size=3),
)
def test_the_compiled_engines_sweeps_are_the_pure_specifications_bits(program, numbers, interior):
    results = []
    for V in ENGINES:
        xs = [V(n) for n in numbers]
        try:
            regs = build_registers(program, V, xs)
        except (ArithmeticError, ValueError) as error:
            results.append(("build raised", type(error)))
            continue
        # leaves and interior nodes, one of them maybe twice
        inputs = xs + [regs[k % len(regs)] for k in interior]
        results.append(everything_grad_gives(regs[-1], inputs))
    assert results[0] == results[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(every_operation, min_size=1, max_size=10),
    st.lists(st.tuples(number, number), min_size=1, max_size=3),
    st.lists(st.integers(0, 40), max_size=2),
)
def test_compiled_second_derivatives_replay_eagers_bits(program, pairs, interior):
    def gradients(xs):
        regs = build_registers(program, agrad.Value, xs)
        inputs = list(xs) + [regs[k % len(regs)] for k in interior]
        first = agrad.grad(regs[-1], inputs, create_graph=True)
        return first + [h for g in first for h in agrad.grad(g, inputs, create_graph=True)]

    def eager(numbers):
        return gradients([agrad.Value(float(n)) for n in numbers])

    compiled = agrad.compile(gradients)
    calls = [[float(a) for a, _ in pairs], [float(b) for _, b in pairs]]
    for numbers in calls + calls[:1]:
        got = []
        for f in (eager, compiled):
            try:
                got.append(bits(f(numbers)))
            except (ArithmeticError, ValueError) as error:
                got.append(("raised", type(error)))
        assert got[0] == got[1]
