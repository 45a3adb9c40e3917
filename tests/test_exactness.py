"""The two engines agree bit for bit: the same data and gradients (type and
IEEE bits, as ``engines.exact`` compares them), or the same exception (type
and message).

First by hand: each op, every node of a graph, fused sums and dots against the
builtin chain, every operand kind on either side of every operator, the
setters, a diverging training run.  Then by hypothesis, on random programs.

Hypothesis draws a small program: leaves, then steps that each apply one op
(``+ - * / **``, unary ``-``, ``exp log tanh relu sigmoid``, a sum, a dot) to
earlier results and constants on either side, so results are shared by later
steps.  Numbers come from the awkward corners (0.0, -0.0, nan, inf, the
largest and smallest floats, 64-bit int limits, numpy scalars).  The program
runs on both engines; every step must give the same data or raise the same
exception, then ``backward()`` from one or two roots must give the same
gradients or the same exception.  On the native engine, a step that raises
must leave no node behind, and once the program's Values are dropped every
node must be freed at once (the garbage collector is off while a program
runs).  ``agrad.sum`` and ``agrad.dot`` on the native engine are compared with
the builtin chain on the pure one.

The number of examples is set by a profile, chosen with the environment
variable ``AGRAD_FUZZ_PROFILE``: ``ci`` (the default, about a minute on a
2-core machine) or ``long`` (a thorough run; see docs/reliability.md).
"""

import builtins
import gc
import math
import os
import random
from fractions import Fraction

import numpy as np
import pytest
from engines import ENGINES, OPS, exact, outcome
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import agrad
import agrad.pure
from agrad import _core
from agrad.datasets import univariate_data
from agrad.linreg import LinReg, train

# -- by hand --------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("x, y", [(0.7, 1.3), (2.0, -0.4), (1.25, 3.0)])
def test_each_op_matches_pure_bit_for_bit(op, x, y):
    results = []
    for V in ENGINES:
        a, b = V(x), V(y)
        out = OPS[op](a, b)
        out.backward()
        results.append((exact(out.data), exact(a.grad), exact(b.grad)))
    assert results[0] == results[1]


def every_node(root):
    """Every node reachable from root, depth first over _children, in order."""
    seen, order, stack = set(), [], [root]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        order.append(v)
        stack.extend(reversed(v._children))
    return order


def test_every_node_including_constants_matches_pure_after_backward():
    graphs = []
    for V in ENGINES:
        a, b = V(1.5, label="a"), V(-2, label="b")
        out = ((a * 2.5 + 1) * -1 - b / 3 + 2 / a - 4) ** 2 + (7 - b).tanh()
        out.backward()
        graphs.append([(v._op, v.label, exact(v.data), exact(v.grad)) for v in every_node(out)])
    assert graphs[0] == graphs[1]


def test_fused_sum_and_dot_match_the_chain_bit_for_bit():
    random.seed(3)
    ws = [random.uniform(-1, 1) for _ in range(20)]
    xs = [random.uniform(-5, 5) for _ in range(20)]
    results = []
    for fused in (False, True):
        weights = [agrad.Value(w) for w in ws]
        b = agrad.Value(0.3)
        if fused:
            terms = [(agrad.dot(weights, xs) + b - y) ** 2 for y in xs]
            loss = agrad.sum(terms) / len(terms)
        else:
            terms = [
                (sum(w * x for w, x in zip(weights, xs, strict=True)) + b - y) ** 2 for y in xs
            ]
            loss = sum(terms) / len(terms)
        loss.backward()
        results.append([exact(loss.data)] + [exact(w.grad) for w in weights] + [exact(b.grad)])
    assert results[0] == results[1]
    assert math.isfinite(loss.data)


def test_fused_nodes_match_the_chain_when_terms_share_subexpressions():
    # a term reached again through another term: the fused node must hand out
    # its gradients at the moments the chain of additions would, or a third
    # contribution lands in another order and the rounding differs
    results = []
    for fused in (False, True):
        a, b = agrad.Value(9e15), agrad.Value(0.3)
        c = a * b - a
        terms = [a, c, c * 1e-16, a * a * 1e-30, b]
        pairs = ([a, c, b], [c, 1.5, a])
        if fused:
            out = agrad.sum(terms) + agrad.dot(*pairs)
        else:
            out = sum(terms) + sum(w * x for w, x in zip(*pairs, strict=True))
        out.backward()
        results.append([exact(v) for v in (out.data, a.grad, b.grad, c.grad)])
    assert results[0] == results[1]


OPERAND_KINDS = {
    "int": 3,
    "zero": 0,
    "float": 2.5,
    "zero float": 0.0,
    "bool": True,
    "numpy float": np.float64(1.5),
    "numpy int": np.int64(-2),
    "huge int": 2**63,
    "str": "2",
    "None": None,
    "list": [1.0],
    "complex": 1j,
}
BINARY_OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}
LEFT_DATA = [2.0, 0.0, -8.0, 10.0, 3, 0, 2**62, -(2**63)]


@pytest.mark.parametrize("op", list(BINARY_OPS))
@pytest.mark.parametrize("kind", ["Value", *OPERAND_KINDS])
def test_binary_ops_raise_what_pure_raises(op, kind):
    for data in LEFT_DATA:
        for value_on_left in (True, False):
            results = []
            for V in ENGINES:
                v = V(data)
                other = V(-1.5) if kind == "Value" else OPERAND_KINDS[kind]
                args = (v, other) if value_on_left else (other, v)
                results.append(outcome(lambda args=args: exact(BINARY_OPS[op](*args).data)))
            assert results[0] == results[1], (data, op, kind, value_on_left)


@pytest.mark.parametrize("method", ["exp", "log", "tanh", "relu", "sigmoid", "__neg__"])
def test_unary_ops_raise_what_pure_raises(method):
    special = [0, -1, 1, 0.0, -0.0, -1.0, 1000.0, -1000.0, 709.8, 1e-320, 2**62, -(2**63), True]
    special += [math.inf, -math.inf, math.nan]
    for data in special:
        results = [
            outcome(lambda V=V, x=data: exact(getattr(V(x), method)().data)) for V in ENGINES
        ]
        assert results[0] == results[1], (method, data)


@pytest.mark.parametrize("attribute", ["data", "grad"])
@pytest.mark.parametrize("kind", list(OPERAND_KINDS))
def test_setters_accept_numbers_and_refuse_the_rest_as_pure_does(attribute, kind):
    results = []
    for V in ENGINES:
        v = V(1.0)
        unchanged = exact(getattr(v, attribute))
        done = outcome(lambda v=v: setattr(v, attribute, OPERAND_KINDS[kind]))
        now = exact(getattr(v, attribute))
        if done[0] == "raised":
            assert now == unchanged  # a refused value leaves the old one
        results.append((done, now))
    assert results[0] == results[1]


def test_a_diverging_training_run_overflows_on_both_engines():
    random.seed(42)
    xs, ys = univariate_data(20)
    messages = []
    for V in ENGINES:
        random.seed(1)
        model = LinReg(value_class=V)
        with pytest.raises(OverflowError) as info:
            train(model, xs, ys, learning_rate=1.0, n_epochs=10_000, log_every=None)
        messages.append(str(info.value))
    assert "training diverged at epoch" in messages[0]
    assert messages[0] == messages[1]


def squares_and_reciprocals_to_try(count: int) -> list[float]:
    """Doubles where x ** 2 and x ** -1 are hardest to get right: squares and
    quotients that fall on a tie between two doubles or near one (an odd
    27-bit integer's square needs 54 bits), across the whole exponent range,
    the subnormals and the edges of the range where the engine computes them
    as a product and a quotient, with both signs."""
    rng = random.Random(20261206)
    values = [0.0, 5e-324, 2.0**-450, 2.0**450, 2.0**-450 * (1 + 2**-52), 2.0**450 * (1 - 2**-53)]
    values += [2.0**-450 * (1 - 2**-53), 2.0**450 * (1 + 2**-52), 1.0, 3.0, 2.0**511, 2.0**512]
    for _ in range(count):
        odd = rng.randrange(2**26 + 1, 2**27, 2)
        scale = 2.0 ** rng.randint(-520, 520)
        near_tie = odd + rng.uniform(-1e-3, 1e-3)
        anywhere = math.ldexp(rng.random() + 0.5, rng.randint(-1074, 1023))
        values += [odd * scale, near_tie * scale, anywhere, rng.uniform(-1e10, 1e10)]
    # where the engine's tolerance decides: x ** k within 0.1 of a spacing of
    # a tie, for k = 2, -1, -2, inside [2^-32, 2^32] and beyond it
    for k in (2, -1, -2):
        near: list[float] = []
        while len(near) < count // 10:
            x = math.ldexp(1.0 + rng.random(), rng.choice((-31, 0, 31, -190, 190)))
            r = x * x if k == 2 else 1.0 / x if k == -1 else 1.0 / (x * x)
            if abs(Fraction(x) ** k - Fraction(r)) >= Fraction(2, 5) * Fraction(math.ulp(r)):
                near.append(x)
        values += near
    return [v if i % 2 else -v for i, v in enumerate(values)]


def test_squares_and_reciprocals_are_pythons_pow_bits():
    """The engine squares and inverts (x ** 2, x ** -1, and x ** -2, the
    gradient of a division) by a product and a quotient where it can
    prove those are pow's bits, and calls pow elsewhere: either way it must
    give exactly what CPython's float ** gives, near ties included."""

    def power(base, k):
        return base**k

    for x in squares_and_reciprocals_to_try(25_000):
        for k in (2, 2.0, -1, -1.0, -2, -2.0):
            native = outcome(lambda x=x, k=k: exact(power(agrad.Value(x), k).data))
            assert native == outcome(lambda x=x, k=k: exact(power(x, k))), (x, k)


# -- by hypothesis ----------------------------------------------------------------------

settings.register_profile(
    "ci",
    max_examples=2500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=50_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile(os.environ.get("AGRAD_FUZZ_PROFILE", "ci"))

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SPECIAL_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 2.0, math.nan, -math.nan, math.inf, -math.inf,
    1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-300, 709.78, 710.0,
    -745.2, 2.0**53, 1e16, 3.5,
]  # fmt: skip
SPECIAL_INTS = [
    0, 1, -1, 2, -2, 3, 63, 64, 2**31, 2**53 + 1, 3037000499, 3037000500, 2**62,
    INT64_MAX, INT64_MIN, INT64_MIN + 1,
]  # fmt: skip

plain_numbers = st.one_of(
    st.sampled_from(SPECIAL_FLOATS),
    st.sampled_from(SPECIAL_INTS),
    st.floats(),
    st.floats(-10, 10),
    st.integers(-10, 10),
    st.integers(INT64_MIN, INT64_MAX),
    st.booleans(),
)
# What a user may mix in as a constant: numpy's scalars too.
constants = st.one_of(
    plain_numbers,
    st.floats().map(np.float64),
    st.integers(INT64_MIN, INT64_MAX).map(np.int64),
)
exponents = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, -0.5, 2.0, -0.0, 1.5, 63, 64]),
    constants,
)
register = st.integers(0, 63)  # taken modulo the number of results so far


a_result = st.tuples(st.just("reg"), register)


def sum_terms(numbers):
    """A sum's terms: results and constants drawn from numbers.

    The builtin chain does plain arithmetic on constants until it meets a
    Value (unbounded Python ints, wrapping numpy ints) where agrad.sum and
    agrad.dot check 64-bit ranges: so a sum starts with a result, and each
    product of a dot has one, and both sides do Value arithmetic throughout.
    """
    operand = st.one_of(a_result, st.tuples(st.just("const"), numbers))
    return st.tuples(a_result, st.lists(operand, max_size=5)).map(lambda t: [t[0], *t[1]])


def dot_pairs(numbers):
    operand = st.one_of(a_result, st.tuples(st.just("const"), numbers))
    pair = st.one_of(st.tuples(a_result, operand), st.tuples(operand, a_result))
    return st.lists(pair, min_size=1, max_size=4)


steps = st.one_of(
    st.tuples(st.just("binary"), st.sampled_from("+-*/"), register, register),
    st.tuples(st.just("right"), st.sampled_from("+-*/"), register, constants),
    st.tuples(st.just("left"), st.sampled_from("+-*/"), constants, register),
    st.tuples(st.just("pow"), register, exponents),
    st.tuples(st.just("neg"), register),
    st.tuples(
        st.just("unary"), st.sampled_from(["exp", "log", "tanh", "relu", "sigmoid"]), register
    ),
    st.tuples(st.just("sum"), sum_terms(constants), st.one_of(st.just(0), constants)),
    st.tuples(st.just("dot"), dot_pairs(constants)),
)
programs = st.tuples(
    st.lists(plain_numbers, min_size=1, max_size=4),  # leaves
    st.lists(steps, min_size=1, max_size=14),
    st.lists(register, min_size=1, max_size=2),  # roots of backward()
)


def apply(step, regs, fused):
    def r(i):
        return regs[i % len(regs)]

    def resolve(item):
        kind, x = item
        return r(x) if kind == "reg" else x

    kind = step[0]
    if kind == "binary":
        return BINARY_OPS[step[1]](r(step[2]), r(step[3]))
    if kind == "right":
        return BINARY_OPS[step[1]](r(step[2]), step[3])
    if kind == "left":
        return BINARY_OPS[step[1]](step[2], r(step[3]))
    if kind == "pow":
        return r(step[1]) ** step[2]
    if kind == "neg":
        return -r(step[1])
    if kind == "unary":
        return getattr(r(step[2]), step[1])()
    if kind == "sum":
        terms = [resolve(item) for item in step[1]]
        return agrad.sum(terms, step[2]) if fused else builtins.sum(terms, step[2])
    if kind == "dot":
        weights = [resolve(w) for w, _ in step[1]]
        inputs = [resolve(x) for _, x in step[1]]
        if fused:
            return agrad.dot(weights, inputs)
        return builtins.sum(w * x for w, x in zip(weights, inputs, strict=True))
    raise AssertionError(f"unknown step {kind}")


def run(program, V, fused=False):
    """Runs the program; returns its trace (comparable between engines) and
    the Values it made, so the caller can drop them.  fused: sums and dots
    through agrad.sum and agrad.dot (native only), else the builtin chain."""
    native = V is agrad.Value
    leaves, program_steps, roots = program
    regs = [V(x) for x in leaves]
    trace = [("leaf", exact(v.data)) for v in regs]
    for step in program_steps:
        before = _core._live_nodes() if native else None
        result = outcome(lambda step=step: apply(step, regs, fused))
        if result[0] == "ok":
            value = result[1]
            assert isinstance(value, V), f"{step} gave {value!r}"
            regs.append(value)
            trace.append(("ok", exact(value.data), repr(value)))
        else:
            if native:  # nothing half-done: the failed op left no node
                assert _core._live_nodes() == before, step
            trace.append(result)
    for root in roots:
        done = outcome(regs[root % len(regs)].backward)
        trace.append(("backward", done))
        trace.append(("grads", [exact(v.grad) for v in regs]))
    return trace, regs


def run_both(program, fused):
    gc.disable()  # every node must go by reference counting alone
    try:
        baseline = _core._live_nodes()
        native, regs = run(program, agrad.Value, fused)
        del regs
        assert _core._live_nodes() == baseline, "nodes outlived their Values"
        pure, _ = run(program, agrad.pure.Value)
    finally:
        gc.enable()
    return native, pure


@settings(PROFILE)
@given(programs)
# a negative base to a fractional power is a ValueError, even where the
# complex power Python would compute overflows
@example(([-(2**63)], [("pow", 0, 709.78)], [0]))
# v / c is v * c**-1 with c**-1 from libm's pow, as Python computes it, not
# the 1.0 / c an optimiser makes of pow(c, -1.0): they differ by an ulp here
@example(([1.0], [("right", "/", 0, 4.919506574957375e16)], [1]))
def test_native_and_pure_engines_agree(program):
    native, pure = run_both(program, fused=False)
    assert native == pure


@settings(PROFILE)
@given(programs)
# a term also reached through another term, with contributions that cancel
# (9e15 - 9e15): the fused node must hand out each term's gradient where the
# chain's addition of that term would, or the sums round differently
@example(
    (
        [1.5],
        [("binary", "-", 0, 0), ("dot", [(("reg", 0), ("reg", 0)), (("const", 4.0), ("reg", 1))])],
        [2],
    )
)
@example(([2], [("unary", "exp", 0), ("sum", [("reg", 0), ("reg", 0), ("reg", 1)], 0)], [2]))
def test_fused_sum_and_dot_agree_with_the_builtin_chain(program):
    """agrad.sum and agrad.dot on the native engine give the builtin chain's
    data, gradients and exceptions (on the pure engine) bit for bit."""
    native, pure = run_both(program, fused=True)
    assert native == pure
